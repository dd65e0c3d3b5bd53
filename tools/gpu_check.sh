#!/usr/bin/env bash
# GPU readiness check, on a CUDA machine that already has torch, triton, numpy,
# scipy, pytest and ninja (it installs nothing and needs no network):
#   1. builds pada_ext in place for the visible GPU(s) (build_ext --inplace),
#   2. asserts a CUDA kernel is registered for every pada:: op,
#   3. runs the GPU tests (pytest -m cuda),
#   4. runs every benchmark with --device cuda,
# and writes logs, JSON and summary.md into ${OUT:-build/gpu_check}, then
# prints the summary. Each step is time-boxed and the whole run keeps within
# GPU_CHECK_BUDGET_S (default 450 s); a failing step does not stop the others,
# but the exit status is non-zero if any failed, and the failed ones are named.
#
# Environment:
#   PYTHON               interpreter (default python3, else python)
#   OUT                  output folder (default build/gpu_check)
#   GPU_CHECK_BUDGET_S   total time budget in seconds (default 450)
#   GPU_CHECK_QUICK=1    benchmarks at their --quick sizes (a fast re-run)
#   GPU_CHECK_SKIP       step names to skip, e.g. "build tests" to re-run only
#                        the benchmarks on a machine that has the build
#   GPU_CHECK_DRY_RUN=1  on a machine without a GPU: skips the build and the
#                        GPU-only steps (uses the pada_ext/_C already built),
#                        collects the GPU tests without running them, runs the
#                        benchmarks on CPU at --quick sizes: checks the plumbing.
#   MAX_JOBS             parallel compile jobs (default: nproc)
#   TORCH_CUDA_ARCH_LIST as torch reads it (default: the visible GPUs' archs)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
PY=${PYTHON:-$(command -v python3 || command -v python)}
DRY=${GPU_CHECK_DRY_RUN:-0}
BUDGET=${GPU_CHECK_BUDGET_S:-450}
OUT_DIR=${OUT:-build/gpu_check}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
# Nothing from an earlier run may pass for this one's.
rm -rf "$OUT_DIR/json" "$OUT_DIR/logs" "$OUT_DIR/steps.tsv" "$OUT_DIR/summary.md" \
  "$OUT_DIR/env.json" "$OUT_DIR/pytest_cuda.xml"
mkdir -p "$OUT_DIR/json" "$OUT_DIR/logs"
STEPS=$OUT_DIR/steps.tsv
printf 'step\tstatus\trc\tseconds\tcommand\n' >"$STEPS"

export PYTHONPATH="$ROOT:$ROOT/python${PYTHONPATH:+:$PYTHONPATH}"
export PADA_BENCH_RESULTS=$OUT_DIR/json # where benchmarks/common.py writes JSON
export PYTHONUNBUFFERED=1
# The interpreter's scripts (pip's ninja, which torch's build looks for on PATH) first.
PATH="$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null):$PATH"
export PATH
# Triton's compiled kernels kept under build/: a re-run on the same machine skips the JIT.
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-$ROOT/build/triton_cache}
exec </dev/null # nothing may wait for input

if [[ $DRY == 1 ]]; then
  DEVICE=cpu
  QUICK=(--quick)
  echo "gpu_check: DRY RUN on CPU (GPU_CHECK_DRY_RUN=1): build and GPU steps skipped"
else
  DEVICE=cuda
  QUICK=()
  [[ ${GPU_CHECK_QUICK:-0} == 1 ]] && QUICK=(--quick)
fi

START=$(date +%s)
FAILED=()
SUMMARY_RESERVE=20 # seconds kept for the summary

# step NAME LIMIT_S CMD...: runs CMD under `timeout`, at most LIMIT_S seconds and
# never past the budget; its output goes to logs/NAME.log (the tail is shown on failure).
step() {
  local name=$1 limit=$2
  shift 2
  local log=$OUT_DIR/logs/$name.log
  if [[ " ${GPU_CHECK_SKIP:-} " == *" $name "* ]]; then
    skip "$name" "GPU_CHECK_SKIP"
    return 0
  fi
  local left=$((BUDGET - SUMMARY_RESERVE - ($(date +%s) - START)))
  ((limit > left)) && limit=$left
  if ((limit < 5)); then
    echo "-- $name: SKIPPED, the ${BUDGET}s budget is spent"
    printf '%s\tBUDGET\t-\t0\t%s\n' "$name" "$*" >>"$STEPS"
    FAILED+=("$name (budget spent)")
    return 1
  fi
  printf -- '-- %-26s (limit %3ds) ' "$name" "$limit"
  local t0 t1 rc status
  t0=$(date +%s.%N)
  # STEP_SIGNAL=INT for pytest: it then still reports (and writes its XML for) the
  # tests it ran; KILL 10 s later if the signal did nothing (e.g. SIGINT ignored).
  timeout -s "${STEP_SIGNAL:-TERM}" --kill-after=10 "$limit" "$@" >"$log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  local secs
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  if ((rc == 0)); then
    status=ok
  elif ((rc == 124 || rc == 137)); then
    status=TIMEOUT
  else
    status=FAILED
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$secs" "$*" >>"$STEPS"
  echo "$status in ${secs}s"
  if [[ $status != ok ]]; then
    FAILED+=("$name ($status, rc $rc, log $log)")
    tail -n 25 "$log" | sed 's/^/   | /'
    return 1
  fi
}

skip() { # skip NAME WHY
  echo "-- $1: skipped ($2)"
  printf '%s\tskipped\t-\t0\t%s\n' "$1" "$2" >>"$STEPS"
}

# 1. What is there. Without a GPU (and no dry run) the other steps cannot mean anything.
step env 60 "$PY" - "$OUT_DIR/env.json" "$DRY" <<'EOF'
import importlib, json, os, platform, shutil, subprocess, sys
import torch
info = {"python": platform.python_version(), "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        "cpu_count": os.cpu_count()}
for mod in ("triton", "numpy", "scipy", "pytest", "ninja", "setuptools", "wheel"):
    try:
        info[mod] = getattr(importlib.import_module(mod), "__version__", "present")
    except Exception:
        info[mod] = None
if torch.cuda.is_available():
    info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    info["capability"] = "%d.%d" % torch.cuda.get_device_capability()
from torch.utils.cpp_extension import CUDA_HOME
info["cuda_home"] = CUDA_HOME
nvcc = os.path.join(CUDA_HOME, "bin", "nvcc") if CUDA_HOME else shutil.which("nvcc")
try:
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=30).stdout
    info["nvcc"] = out.strip().splitlines()[-1]
except Exception:
    info["nvcc"] = None
info["ninja_on_path"] = shutil.which("ninja")
info["TORCH_CUDA_ARCH_LIST"] = os.environ.get("TORCH_CUDA_ARCH_LIST")
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps(info, indent=2))
if sys.argv[2] != "1" and not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA GPU (set GPU_CHECK_DRY_RUN=1 for a CPU dry run)")
EOF
env_rc=$?
if [[ $env_rc != 0 && $DRY != 1 ]]; then
  echo "gpu_check: no usable CUDA: stopping here"
  "$PY" tools/gpu_summary.py "$OUT_DIR"
  echo "gpu_check: FAILED steps: env"
  exit 1
fi

# 2. Build for the visible GPU. --force: setuptools' own up-to-date test ignores
# headers and would keep a stale (or CPU-only) _C; ninja still compiles only what changed.
if [[ $DRY == 1 ]]; then
  skip build "dry run: uses the pada_ext/_C already built"
else
  step build 240 env MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$PY" setup.py build_ext --inplace --force
fi
step import 60 "$PY" -c "import pada_ext, torch; print(pada_ext.__file__, torch.__version__)"

# 3. Every pada:: op has a CUDA kernel in this build.
if [[ $DRY == 1 ]]; then
  skip kernels "dry run: no CUDA build"
else
  step kernels 60 "$PY" tools/check_kernels.py --cuda
fi

# 4. The GPU tests (conftest marks every test with a cuda parameter `cuda`).
PYTEST=("$PY" -m pytest -q -m cuda tests -p no:cacheprovider -rfE --durations=15
  "--junitxml=$OUT_DIR/pytest_cuda.xml")
if [[ $DRY == 1 ]]; then
  # No GPU: collect them only (exit 5, "none collected", is fine here).
  # shellcheck disable=SC2016 # $@ and $rc are the inner shell's
  STEP_SIGNAL=INT step tests 120 bash -c '"$@"; rc=$?; ((rc == 5)) && rc=0; exit $rc' _ \
    "${PYTEST[@]}" --collect-only
else
  STEP_SIGNAL=INT step tests 165 "${PYTEST[@]}"
fi

# 5. Every benchmark on the device, at sizes that fit the budget (each prints its table).
D=(--device "$DEVICE" "${QUICK[@]}")
step bench_sample 60 "$PY" benchmarks/bench_sample_with_replacement.py "${D[@]}"
step bench_xent 90 "$PY" benchmarks/bench_cross_entropy_with_grad_norm.py "${D[@]}"
step bench_gnorm_f32 45 "$PY" benchmarks/bench_grouped_grad_norm.py "${D[@]}"
# bfloat16, and 4x the channels (16x the elements) where the default is launch-bound.
step bench_gnorm_bf16_w4 45 "$PY" benchmarks/bench_grouped_grad_norm.py "${D[@]}" \
  --dtype bfloat16 --width 4
step bench_path 60 "$PY" benchmarks/bench_path_sampler.py "${D[@]}"
step bench_importance 90 "$PY" benchmarks/bench_importance_sampler.py "${D[@]}"
if [[ $DRY == 1 ]]; then
  step bench_overhead 120 "$PY" benchmarks/bench_overhead.py "${D[@]}"
elif ((${#QUICK[@]})); then
  step bench_overhead 120 "$PY" benchmarks/bench_overhead.py "${D[@]}" --shape authors
else
  # The authors' run (batch 256, CIFAR-10-shaped data), 40 steps per epoch.
  step bench_overhead 120 "$PY" benchmarks/bench_overhead.py "${D[@]}" --shape authors \
    --steps 40 --repeats 3
fi

# 6. The summary (markdown), printed and kept in $OUT_DIR/summary.md.
echo
timeout 60 "$PY" tools/gpu_summary.py "$OUT_DIR" || FAILED+=("summary")
echo
echo "gpu_check: $(($(date +%s) - START))s in all; output in $OUT_DIR"
if ((${#FAILED[@]})); then
  echo "gpu_check: FAILED steps:"
  printf '  %s\n' "${FAILED[@]}"
  exit 1
fi
echo "gpu_check: all steps passed"
