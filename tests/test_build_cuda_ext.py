"""tools/build_cuda_ext.sh: the GPU user's install that CI checks. Only its
refusal is tested here (the install itself is CI's last step)."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "build_cuda_ext.sh")


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("bash") is None, reason="bash and df"
)
def test_too_little_disk_fails_before_the_venv_naming_the_space(tmp_path):
    # A full disk used to fail pip halfway through the CUDA torch, with ENOSPC.
    venv = tmp_path / "venvs" / "cuda"
    env = dict(os.environ, CUDA_VENV=str(venv), CUDA_VENV_MIN_FREE_GB=str(10**9))
    out = subprocess.run(["bash", SCRIPT], env=env, capture_output=True, text=True)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"{venv.parent} has" in out.stderr
    assert "needs 1000000000 GB (CUDA_VENV_MIN_FREE_GB)" in out.stderr
    assert not venv.exists()
