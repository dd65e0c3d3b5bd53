"""The markdown summary of a tools/gpu_check.sh run: machine, steps, tests, benchmarks.

    python tools/gpu_summary.py OUT_DIR

Reads what gpu_check.sh left in OUT_DIR (steps.tsv, env.json, logs/*.log,
json/*.json, pytest_cuda.xml), writes OUT_DIR/summary.md and prints it.
"""

import csv
import json
import os
import sys
import xml.etree.ElementTree as ET

LOG_LINES = 80  # of a benchmark's printed tables
TAIL_LINES = 30  # of a failed step's log


def read_steps(out):
    path = os.path.join(out, "steps.tsv")
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def read_log(out, name):
    path = os.path.join(out, "logs", f"{name}.log")
    if not os.path.exists(path):
        return []
    with open(path, errors="replace") as f:
        return f.read().splitlines()


def cell(text):
    return str(text).replace("|", "\\|")


def machine_lines(out):
    path = os.path.join(out, "env.json")
    if not os.path.exists(path):
        return ["(no env.json: the env step did not run)"]
    with open(path) as f:
        env = json.load(f)
    gpus = ", ".join(env.get("gpus") or []) or "none visible"
    cap = f" (sm {env['capability']})" if env.get("capability") else ""
    return [
        f"- GPU: {gpus}{cap}",
        f"- torch {env.get('torch')} (CUDA {env.get('torch_cuda')}), triton {env.get('triton')}, "
        f"python {env.get('python')}, {env.get('cpu_count')} CPUs",
        f"- nvcc: {env.get('nvcc') or 'not found'}; CUDA_HOME {env.get('cuda_home')}",
        f"- numpy {env.get('numpy')}, scipy {env.get('scipy')}, pytest {env.get('pytest')}, "
        f"ninja {env.get('ninja')}, setuptools {env.get('setuptools')}, wheel {env.get('wheel')}",
    ]


def test_lines(out):
    path = os.path.join(out, "pytest_cuda.xml")
    if not os.path.exists(path):
        return ["(no pytest_cuda.xml)"]
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:  # a run killed while writing it
        return [f"(pytest_cuda.xml unreadable: {e})"]
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {k: 0 for k in ("tests", "failures", "errors", "skipped")}
    seconds = 0.0
    for s in suites:
        for k in total:
            total[k] += int(s.get(k, 0))
        seconds += float(s.get("time", 0))
    passed = total["tests"] - total["failures"] - total["errors"] - total["skipped"]
    lines = [
        f"{total['tests']} tests: {passed} passed, {total['failures']} failed, "
        f"{total['errors']} errors, {total['skipped']} skipped in {seconds:.1f}s"
    ]
    bad = [
        f"{c.get('classname')}::{c.get('name')}"
        for c in root.iter("testcase")
        if c.find("failure") is not None or c.find("error") is not None
    ]
    if bad:
        lines += ["", "Failed:"] + [f"- `{b}`" for b in bad[:40]]
        if len(bad) > 40:
            lines.append(f"- ... and {len(bad) - 40} more")
    return lines


def summary(out):
    steps = read_steps(out)
    failed = [s for s in steps if s["status"] not in ("ok", "skipped")]
    total_s = sum(float(s["seconds"]) for s in steps)
    md = ["# GPU check", ""]
    md += machine_lines(out)
    verdict = (
        "all steps passed"
        if not failed
        else "FAILED: " + ", ".join(f"{s['step']} ({s['status']})" for s in failed)
    )
    md += ["", f"**{verdict}** ({len(steps)} steps, {total_s:.0f}s)", "", "## Steps", ""]
    md += ["| step | status | seconds | command |", "|---|---|---|---|"]
    for s in steps:
        command = s["command"].replace(out, "$OUT")
        md.append(f"| {s['step']} | {s['status']} | {s['seconds']} | `{cell(command)}` |")
    md += ["", "## GPU tests (pytest -m cuda)", ""] + test_lines(out)
    log = read_log(out, "tests")
    if log:  # pytest's short summary and slowest durations
        md += ["", "<details><summary>end of the pytest log</summary>", "", "```"]
        md += log[-TAIL_LINES:] + ["```", "", "</details>"]

    md += ["", "## Benchmarks", ""]
    for s in steps:
        if not s["step"].startswith("bench_"):
            continue
        md += [f"### {s['step']} ({s['status']}, {s['seconds']}s)", ""]
        log = read_log(out, s["step"])
        if not log:
            md += ["(no output)", ""]
            continue
        md += ["```"] + log[:LOG_LINES]
        if len(log) > LOG_LINES:
            md.append(f"... ({len(log) - LOG_LINES} more lines in logs/{s['step']}.log)")
        md += ["```", ""]
    json_dir = os.path.join(out, "json")
    files = sorted(os.listdir(json_dir)) if os.path.isdir(json_dir) else []
    md += ["JSON: " + (", ".join(f"`json/{f}`" for f in files) or "none"), ""]

    for s in failed:
        if s["step"].startswith("bench_"):
            continue  # its whole log is above
        md += [f"## Failed: {s['step']} ({s['status']}, rc {s['rc']})", "", "```"]
        md += read_log(out, s["step"])[-TAIL_LINES:] + ["```", ""]
    return "\n".join(md).rstrip() + "\n"


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__)
    out = os.path.abspath(argv[1])
    text = summary(out)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
