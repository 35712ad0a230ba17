"""Builds rnnkernels._C: the C++ (CPU) kernels always, the CUDA kernels when a CUDA
build of torch and nvcc are both found.

torch must be importable where this runs: install torch first, then this package with
`pip install --no-build-isolation ...` (an isolated build environment has no torch, and
building against another torch than the one installed would not load). Without torch the
build stops, unless RNNKERNELS_PYTHON_ONLY=1 asks for the Python backend alone.

Environment:
  RNNKERNELS_PYTHON_ONLY=1   install no kernels, only the Python backend.
  RNNKERNELS_CUDA=1|0        force the CUDA kernels on or off (default: auto).
  TORCH_CUDA_ARCH_LIST       CUDA archs (default: 8.0;8.6;9.0;10.0;12.0+PTX).
  RNNKERNELS_STRICT_BUILD=1  a compile error fails the install (CI sets it); otherwise the
                             package installs without _C and falls back to Python, warning
                             with the compiler's message.
"""

import contextlib
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

from setuptools import find_packages, setup

DEFAULT_CUDA_ARCHS = "8.0;8.6;9.0;10.0;12.0+PTX"
BUILD_ERROR_FILE = "_build_error.txt"
ROOT = Path(__file__).resolve().parent


def find_cuda_home() -> str | None:
    """The toolkit folder: linking needs its lib64 (a wrapper nvcc on PATH misleads torch)."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(os.path.realpath(nvcc)).parent.parent))
    for folder in candidates:
        if folder and (Path(folder) / "bin" / "nvcc").exists():
            return folder
    return None


def want_cuda(torch_module) -> bool:
    forced = os.environ.get("RNNKERNELS_CUDA")
    if forced is not None:
        return forced == "1"
    return torch_module.version.cuda is not None and find_cuda_home() is not None


NO_TORCH_MESSAGE = """rnnkernels: torch cannot be imported in this build environment, so the
kernels cannot be built. Install torch first, then build against it:
    pip install --no-build-isolation .        (or -e . for an editable install)
For the Python backend alone, without kernels, set RNNKERNELS_PYTHON_ONLY=1."""


def extension_modules() -> tuple[list, dict]:
    if os.environ.get("RNNKERNELS_PYTHON_ONLY") == "1":
        print("rnnkernels: RNNKERNELS_PYTHON_ONLY=1: building no kernels", file=sys.stderr)
        return [], {}
    try:
        import torch
    except ImportError:
        sys.exit(NO_TORCH_MESSAGE)
    use_cuda = want_cuda(torch)
    if use_cuda:
        cuda_home = find_cuda_home()
        if cuda_home:
            os.environ["CUDA_HOME"] = cuda_home
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)
    from torch.utils import cpp_extension

    # The per-instruction-set kernels go last: the linker keeps the first copy of any
    # inline function, which must be the one compiled for the baseline target.
    sources = ["csrc/module.cpp", "csrc/ops.cpp", "csrc/layer.cpp", "csrc/directions.cpp",
               "csrc/step_ops.cpp", "csrc/workspace.cpp", "csrc/scratch_cache.cpp",
               "csrc/cell_call.cpp", "csrc/layer_path.cpp", "csrc/operands.cpp",
               "csrc/cell_step.cpp", "csrc/stream_call.cpp", "csrc/schedule.cpp",
               "csrc/rowwise_layer.cpp", "csrc/rowwise_ops.cpp",
               "csrc/cpu/pointwise.cpp", "csrc/cpu/persistent.cpp",
               "csrc/cpu/single_step.cpp", "csrc/cpu/dot_gemm.cpp", "csrc/cpu/bf16_layer.cpp",
               "csrc/cpu/huge_pages.cpp", "csrc/cpu/step_device.cpp",
               "csrc/grid/grid_layer.cpp", "csrc/grid/grid_simulator.cpp",
               "csrc/grid/grid_barrier_check.cpp"]
    cpu_capability_sources = ["csrc/cpu/isa_default.cpp", "csrc/cpu/isa_avx2.cpp",
                              "csrc/cpu/isa_avx512.cpp", "csrc/cpu/isa_avx512_bf16.cpp",
                              "csrc/cpu/isa_amx.cpp"]
    cxx_flags = ["-O3", "-fopenmp"]
    macros = []
    include_dirs = [str(ROOT / "csrc")]
    kwargs = dict(extra_link_args=["-fopenmp"])
    if use_cuda:
        archs = os.environ["TORCH_CUDA_ARCH_LIST"]
        sources += ["csrc/cuda/pointwise.cu", "csrc/cuda/step_device.cpp",
                    "csrc/cuda/grid_kernels.cu", "csrc/cuda/grid_glue.cpp",
                    "csrc/cuda/rowwise.cu", "csrc/cuda/rowwise_glue.cpp"]
        macros += [("RNNK_WITH_CUDA", None), ("RNNK_CUDA_ARCHS", f'"{archs}"')]
        wheel_cuda_include = Path(torch.__file__).parent.parent / "nvidia" / "cu13" / "include"
        if wheel_cuda_include.exists():
            include_dirs.append(str(wheel_cuda_include))
        ext = cpp_extension.CUDAExtension(
            "rnnkernels._C",
            sources + cpu_capability_sources,
            define_macros=macros,
            include_dirs=include_dirs,
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3"]},
            **kwargs,
        )
    else:
        ext = cpp_extension.CppExtension(
            "rnnkernels._C",
            sources + cpu_capability_sources,
            define_macros=macros,
            include_dirs=include_dirs,
            extra_compile_args={"cxx": cxx_flags},
            **kwargs,
        )
    print(f"rnnkernels: building C++{' and CUDA' if use_cuda else ''} kernels", file=sys.stderr)
    return [ext], {"build_ext": optional_build_ext(cpp_extension.BuildExtension)}


@contextlib.contextmanager
def _tee_output():
    """Copies what the compiler subprocesses print (file descriptors 1 and 2) into a file,
    still showing it, so that a failed build can name the compiler's error."""
    log = tempfile.TemporaryFile(mode="w+")
    saved = [os.dup(1), os.dup(2)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    try:
        yield log
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        log.seek(0)
        sys.stdout.write(log.read())
        log.seek(0)


def build_stamp(torch_version: str) -> tuple[str, str]:
    """(file name, content) of the note saying what the kernels were built from
    (rnnkernels/_build_stamp.py, loaded by path: the package itself needs _C)."""
    spec = importlib.util.spec_from_file_location("_build_stamp", ROOT / "rnnkernels" / "_build_stamp.py")
    stamp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stamp)
    return stamp.STAMP_FILE, stamp.fingerprint(ROOT, torch_version) + "\n"


def optional_build_ext(base):
    class OptionalBuildExt(base):
        """Leaves a note beside _C: the build stamp after a build, or, after a compile error
        (which does not fail the install unless RNNKERNELS_STRICT_BUILD=1), the error for
        the runtime warning."""

        def run(self):
            self._notes: dict[str, str | None] = {}  # file name -> content, None: remove it
            self._failed = False
            super().run()
            # An in-place (editable) build compiles into a temporary folder, then copies _C
            # into the sources: the notes must follow it there.
            if self.inplace and self._notes:
                self._write_notes(ROOT / "rnnkernels")

        def copy_extensions_to_source(self):
            # After a compile failure there is no _C to copy into the sources.
            if not self._failed:
                super().copy_extensions_to_source()

        def _write_notes(self, folder: Path) -> None:
            folder.mkdir(parents=True, exist_ok=True)
            for name, content in self._notes.items():
                if content is None:
                    (folder / name).unlink(missing_ok=True)
                else:
                    (folder / name).write_text(content)

        def build_extension(self, ext):
            import torch

            stamp_file, stamp = build_stamp(torch.__version__)
            if os.environ.get("RNNKERNELS_STRICT_BUILD") == "1":
                super().build_extension(ext)
                self._notes = {stamp_file: stamp, BUILD_ERROR_FILE: None}
            else:
                try:
                    with _tee_output() as output:
                        super().build_extension(ext)
                except Exception as exc:  # noqa: BLE001 - any compiler failure is reported the same way
                    errors = [line for line in output.read().splitlines() if "error" in line.lower()]
                    reason = "\n".join(errors[:5]) or f"{type(exc).__name__}: {exc}"
                    self._notes = {BUILD_ERROR_FILE: reason + "\n", stamp_file: None}
                    self._failed = True
                    print(f"rnnkernels: WARNING: the extension failed to build:\n{reason}\n"
                          "the Python backend will be used", file=sys.stderr)
                else:
                    self._notes = {stamp_file: stamp, BUILD_ERROR_FILE: None}
            self._write_notes(Path(self.get_ext_fullpath(ext.name)).parent)

    return OptionalBuildExt.with_options(use_ninja=True)


ext_modules, cmdclass = extension_modules()

# Name, version and dependencies are in pyproject.toml.
setup(
    packages=find_packages(include=["rnnkernels", "rnnkernels.*"]),
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
