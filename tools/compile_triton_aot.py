"""Compiles every Triton kernel of pada_ext ahead of time for a GPU target,
with no GPU: a real check that each kernel lowers to PTX and a cubin.

Convention: each module ``pada_ext/triton/<op>.py`` that holds kernels defines

    def aot_specs():
        return [
            {
                "name": "swr_draw_fp32",        # what this script reports
                "kernel": _draw_kernel,         # the @triton.jit function
                "signature": {"w_ptr": "*fp32", "n": "i64", "out_ptr": "*i64"},
                "constexprs": {"BLOCK": 1024},  # every tl.constexpr argument
                "options": {"num_warps": 4},    # optional: triton.compile options
            },
        ]

``signature`` gives the Triton type of every runtime argument by name (``*fp32``,
``*i64``, ``i32``, ``i64``, ``fp32``, ...) and ``constexprs`` the value of every
``tl.constexpr`` argument; together they must name each kernel argument once.
List one spec per specialisation that the launcher really uses (dtypes, block
sizes). ``kernel`` may also be an ``@triton.autotune``/``@triton.heuristics``
wrapper; the underlying function is compiled.

Usage:
    python tools/compile_triton_aot.py                  # all of pada_ext/triton/
    python tools/compile_triton_aot.py --module my.mod  # or a path to a .py file
    python tools/compile_triton_aot.py --arch 80

Modules are imported as part of the package, so build pada_ext._C first
(``python setup.py build_ext --inplace`` or an editable install). The kernels
must be defined with TRITON_INTERPRET unset: interpreted kernels cannot be
compiled, so this script drops the variable before anything imports triton.
Triton's cache goes to a fresh temporary directory unless TRITON_CACHE_DIR is
set, so that each run compiles for real.

Works with the ASTSource API of triton >= 3.3 (``constexprs=``, names as keys,
constexpr arguments typed "constexpr" in the signature) and, where a release
spells the keyword ``constants=``, passes the same dict that way.
Exit status: 0 if every spec compiled (or none exists), 1 otherwise.
"""

import argparse
import atexit
import importlib
import importlib.util
import inspect
import os
import pkgutil
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "pada_ext.triton"


def _prepare_environment():
    if os.environ.pop("TRITON_INTERPRET", None) not in (None, "0"):
        print("compile_triton_aot: ignoring TRITON_INTERPRET (kernels must be compiled)")
    if "TRITON_CACHE_DIR" not in os.environ:
        cache = tempfile.mkdtemp(prefix="pada-triton-aot-")
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
        os.environ["TRITON_CACHE_DIR"] = cache


def _package_modules():
    """The modules of pada_ext/triton/, imported from this checkout."""
    sys.path.insert(0, str(ROOT))
    package = importlib.import_module(PACKAGE)
    names = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.ispkg)
    return [importlib.import_module(f"{PACKAGE}.{name}") for name in names]


def _load_module(target):
    """A module given by dotted name or by the path of a .py file."""
    if target.endswith(".py") or os.sep in target:
        path = Path(target).resolve()
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        return module
    sys.path.insert(0, str(ROOT))  # this checkout's package, not an installed one
    return importlib.import_module(target)


def _jit_function(kernel):
    """The JITFunction under autotune/heuristics wrappers."""
    from triton.runtime.jit import JITFunction

    fn = kernel
    while not isinstance(fn, JITFunction) and hasattr(fn, "fn"):
        fn = fn.fn
    if not isinstance(fn, JITFunction):
        raise TypeError(
            f"{kernel!r} is not a @triton.jit function (was it defined under TRITON_INTERPRET=1?)"
        )
    return fn


def _ast_source(fn, signature, constexprs):
    """triton.compiler.ASTSource for fn, in the spelling this triton expects."""
    from triton.compiler import ASTSource

    unknown = (set(signature) | set(constexprs)) - set(fn.arg_names)
    if unknown:
        raise ValueError(f"not arguments of {fn.__name__}: {sorted(unknown)}")
    # A constexpr may also stand in the signature, typed "constexpr" (triton
    # 3.3+ spells it so); any other type there contradicts the constexpr.
    clash = [a for a in set(signature) & set(constexprs) if signature[a] != "constexpr"]
    if clash:
        raise ValueError(f"typed in the signature but given as constexprs: {sorted(clash)}")
    missing = [a for a in fn.arg_names if a not in signature and a not in constexprs]
    if missing:
        raise ValueError(f"arguments with neither a type nor a constexpr value: {missing}")
    # Every argument in order, constexpr ones typed as such (triton >= 3.3).
    full = {a: ("constexpr" if a in constexprs else signature[a]) for a in fn.arg_names}
    params = inspect.signature(ASTSource.__init__).parameters
    if "constexprs" in params:
        return ASTSource(fn=fn, signature=full, constexprs=dict(constexprs))
    if "constants" in params:
        return ASTSource(fn=fn, signature=full, constants=dict(constexprs))
    raise RuntimeError(f"unsupported triton ASTSource{inspect.signature(ASTSource.__init__)}")


def compile_spec(spec, arch):
    """Compiles one spec; returns (PTX characters, cubin bytes)."""
    import triton
    from triton.backends.compiler import GPUTarget

    fn = _jit_function(spec["kernel"])
    src = _ast_source(fn, spec.get("signature", {}), spec.get("constexprs", {}))
    target = GPUTarget("cuda", arch, 32)
    compiled = triton.compile(src, target=target, options=spec.get("options"))
    return len(compiled.asm["ptx"]), len(compiled.asm.get("cubin", b""))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--module",
        action="append",
        help="module (dotted name or .py path) to take aot_specs() from, instead of "
        f"every module of {PACKAGE}; repeatable",
    )
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability (90)")
    args = parser.parse_args(argv)

    _prepare_environment()
    import triton

    modules = [_load_module(m) for m in args.module] if args.module else _package_modules()
    specs = []
    for module in modules:
        if not hasattr(module, "aot_specs"):
            print(f"compile_triton_aot: {module.__name__} defines no aot_specs(), skipped")
            continue
        specs += [(module.__name__, s) for s in module.aot_specs()]
    if not specs:
        print("compile_triton_aot: no module defines aot_specs(); nothing to compile")
        return 0

    print(f"compile_triton_aot: triton {triton.__version__}, target sm_{args.arch}")
    failed = []
    for module_name, spec in specs:
        name = spec.get("name", "?")
        start = time.perf_counter()
        try:
            ptx, cubin = compile_spec(spec, args.arch)
        except Exception:
            failed.append(name)
            print(f"compile_triton_aot: FAILED {module_name}:{name}", file=sys.stderr)
            traceback.print_exc()
            continue
        seconds = time.perf_counter() - start
        print(
            f"compile_triton_aot: ok {module_name}:{name}  PTX {ptx} chars, "
            f"cubin {cubin} bytes, {seconds:.1f} s"
        )
    if failed:
        print(f"compile_triton_aot: {len(failed)} of {len(specs)} failed: {', '.join(failed)}")
        return 1
    print(f"compile_triton_aot: {len(specs)} kernel(s) compiled for sm_{args.arch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
