"""What a user sees when the kernels are missing, end to end, in subprocesses on a copy of
the package: the test command stops unless a Python-only run is meant, and a build that
fails to compile installs a package whose warning names the compiler's error.

The copies run in venvs of their own that reach this Python's packages (torch, pip)
through a path entry, which loads none of their .pth files: the editable install of this
checkout (a .pth file there) would otherwise answer ``import rnnkernels._C``, and a pip
run outside the venv would install over it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLANTED_ERROR = "rnnkernels_test_planted_compile_error"


def _copy_without_kernels(destination: Path) -> Path:
    """The package and tests, without the compiled _C or the notes of a build."""
    ignore = shutil.ignore_patterns("*.so", "_build_*.txt", "__pycache__")
    for folder in ("rnnkernels", "tests", "csrc"):
        shutil.copytree(ROOT / folder, destination / folder, ignore=ignore)
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, destination / name)
    return destination


def _venv(folder: Path) -> str:
    """A venv's python that sees this Python's packages but not their .pth files."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = str(folder / "bin" / "python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "host_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _host_rnnkernels() -> str:
    """Where this Python imports rnnkernels from, outside any source folder."""
    return subprocess.run([sys.executable, "-c", "import rnnkernels; print(rnnkernels.__file__)"],
                          cwd="/", capture_output=True, text=True, check=True).stdout.strip()


def _run(python: str, args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``python args`` in ``cwd`` (first on the path), without this run's rnnkernels settings."""
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("RNNKERNELS_PYTHON_ONLY", "RNNKERNELS_STRICT_BUILD", "PYTHONPATH")}
    environment.update(PYTHONPATH=str(cwd), **env)
    return subprocess.run([python, *args], cwd=cwd, env=environment, capture_output=True,
                          text=True, timeout=600)


def test_test_command_stops_without_the_kernels(tmp_path):
    copy = _copy_without_kernels(tmp_path / "src")
    python = _venv(tmp_path / "venv")
    test_file = "tests/test_build_stamp.py"
    stopped = _run(python, ["-m", "pytest", "-q", "-p", "no:cacheprovider", test_file], copy)
    assert stopped.returncode == 4, stopped.stdout + stopped.stderr  # pytest's usage error
    assert "RNNKERNELS_PYTHON_ONLY=1" in stopped.stderr
    meant = _run(python, ["-m", "pytest", "-q", "-p", "no:cacheprovider", test_file], copy,
                 RNNKERNELS_PYTHON_ONLY="1")
    assert meant.returncode == 0, meant.stdout + meant.stderr
    assert "1 passed, 1 skipped" in meant.stdout


def test_a_failed_compile_installs_a_warning_that_names_the_error(tmp_path):
    """``pip install --no-build-isolation -e .`` of sources that do not compile, in a venv
    of its own: the install succeeds, and the first use warns with the compiler's error."""
    copy = _copy_without_kernels(tmp_path / "src")
    header = copy / "csrc" / "cells" / "common.h"
    header.write_text(f"#error {PLANTED_ERROR}\n" + header.read_text())
    python = _venv(tmp_path / "venv")
    host = _host_rnnkernels()
    build = _run(python, ["-m", "pip", "install", "--no-build-isolation", "--no-deps",
                          "--no-index", "-e", "."], copy, RNNKERNELS_CUDA="0", MAX_JOBS="2")
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert PLANTED_ERROR in (copy / "rnnkernels" / "_build_error.txt").read_text()
    use = _run(python, ["-W", "always", "-c",
                "import torch, rnnkernels\n"
                "print(rnnkernels.backend_info()['compiled']['cpp'])\n"
                "rnnkernels.FusedLSTM(3, 4)(torch.randn(2, 1, 3))\n"], copy)
    assert use.returncode == 0, use.stderr
    assert use.stdout.split() == ["False"]
    assert "falling back to the slow Python backend" in use.stderr
    assert PLANTED_ERROR in use.stderr
    assert _host_rnnkernels() == host  # the venv's install left this Python's alone
