"""build_config.py: the CUDA toolkit and arch choices setup.py makes, and the
installed build itself (a CUDA kernel for every pada:: op when torch has CUDA)."""

import os
import stat
import subprocess
import sys
import types

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import build_config  # noqa: E402

sys.path.remove(ROOT)


def _toolkit(path, archs=("75", "80", "90"), cudart=True, wrapper_for=None):
    """A fake toolkit: bin/nvcc answering --dryrun and --list-gpu-arch like nvcc."""
    os.makedirs(os.path.join(path, "bin"))
    if cudart:
        os.makedirs(os.path.join(path, "lib64"))
        open(os.path.join(path, "lib64", "libcudart.so.13"), "w").close()
    top = wrapper_for or path
    script = (
        "#!/bin/sh\n"
        'case "$1" in\n'
        f'  --list-gpu-arch) printf "%s\\n" {" ".join(f"compute_{a}" for a in archs)} ;;\n'
        f'  --dryrun) echo "#\\$ TOP={top}/bin/.." >&2 ;;\n'
        "esac\n"
    )
    nvcc = os.path.join(path, "bin", "nvcc")
    with open(nvcc, "w") as f:
        f.write(script)
    os.chmod(nvcc, os.stat(nvcc).st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("CUDA_HOME", "CUDA_PATH"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_wrapper_nvcc_resolves_to_the_real_toolkit(tmp_path, clean_env):
    # /usr/local/bin/nvcc exec'ing the toolkit's nvcc: torch's guess would be /usr/local.
    real = _toolkit(str(tmp_path / "cuda-13.0"))
    wrapper = _toolkit(str(tmp_path / "local"), cudart=False, wrapper_for=real)
    clean_env.setenv("PATH", os.path.join(wrapper, "bin") + os.pathsep + os.environ["PATH"])
    assert os.path.realpath(build_config.find_cuda_home()) == os.path.realpath(real)


def test_cuda_home_without_cudart_fails_at_once_naming_it(tmp_path, clean_env):
    bad = _toolkit(str(tmp_path / "notakit"), cudart=False)
    clean_env.setenv("CUDA_HOME", bad)
    with pytest.raises(RuntimeError, match=r"CUDA_HOME=.*notakit.*libcudart"):
        build_config.find_cuda_home()


def test_no_toolkit_anywhere_names_cuda_home(tmp_path, clean_env):
    clean_env.setenv("PATH", str(tmp_path))
    if os.path.exists("/usr/local/cuda/bin/nvcc"):
        pytest.skip("this machine has /usr/local/cuda, the last fallback")
    with pytest.raises(RuntimeError, match="CUDA_HOME"):
        build_config.find_cuda_home()


def _fake_torch(arch_list, gpus=0):
    cuda = types.SimpleNamespace(
        is_available=lambda: gpus > 0,
        device_count=lambda: gpus,
        get_arch_list=lambda: list(arch_list),
    )
    return types.SimpleNamespace(cuda=cuda)


def test_default_archs_without_a_gpu(tmp_path):
    # torch's archs that this nvcc supports, newest also as PTX: never an empty list.
    home = _toolkit(str(tmp_path / "cuda"), archs=("75", "80", "86", "90", "100"))
    torch_archs = ["sm_50", "sm_80", "sm_90", "sm_90a", "sm_86", "sm_120"]
    assert build_config.default_arch_list(_fake_torch(torch_archs), home) == "8.0;8.6;9.0+PTX"


def test_default_archs_fall_back_when_torch_lists_none(tmp_path):
    home = _toolkit(str(tmp_path / "cuda"), archs=("75", "80", "86", "89", "90", "120"))
    assert build_config.default_arch_list(_fake_torch([]), home) == "7.5;8.0;8.6;8.9;9.0+PTX"


def test_default_archs_defer_to_visible_gpus(tmp_path):
    home = _toolkit(str(tmp_path / "cuda"))
    assert build_config.default_arch_list(_fake_torch(["sm_90"], gpus=1), home) is None


def test_no_supported_arch_is_an_error(tmp_path):
    home = _toolkit(str(tmp_path / "cuda"), archs=("100",))
    with pytest.raises(RuntimeError, match="TORCH_CUDA_ARCH_LIST"):
        build_config.default_arch_list(_fake_torch(["sm_80"]), home)


def test_cli_prints_the_flags_setup_py_uses():
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "build_config.py"), "nvcc"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[: len(build_config.NVCC_FLAGS)] == build_config.NVCC_FLAGS
    assert "-ffp-contract=off" in build_config.CXX_FLAGS


@pytest.mark.skipif(torch.version.cuda is None, reason="a CPU build of torch")
def test_every_op_has_a_cuda_kernel():
    # A CUDA torch builds the CUDA kernels (setup.py): all of them must be registered.
    ops = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("pada::"))
    assert ops
    missing = [o for o in ops if not torch._C._dispatch_has_kernel_for_dispatch_key(o, "CUDA")]
    assert missing == []
