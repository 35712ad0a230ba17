"""Which implementation runs: load the extension, choose a backend, report it.

Backends: ``cuda`` (fused CUDA kernels), ``cpp`` (fused C++ CPU kernels) and ``python``
(plain torch ops: the fallback and the test reference). The choice is, in order: the
``backend=`` argument, the ``RNNKERNELS_BACKEND`` environment variable, then automatic by
the input's device. A backend asked for by name that cannot run is an error; an automatic
fallback to ``python`` warns once, with the reason.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import ModuleType

import torch

BACKENDS = ("cuda", "cpp", "python")
ENV_VAR = "RNNKERNELS_BACKEND"
_NATIVE_DEVICE = {"cuda": "cuda", "cpp": "cpu"}


def _load_extension() -> tuple[ModuleType | None, str | None]:
    try:
        from rnnkernels import _C
    except (ImportError, OSError) as exc:
        note = Path(__file__).with_name("_build_error.txt")
        if note.exists():
            return None, f"the extension failed to build: {note.read_text().strip()}"
        return None, f"{type(exc).__name__}: {exc}"
    return _C, None


_C, _LOAD_ERROR = _load_extension()
_warned: set[str] = set()


def unavailable_reason(backend: str) -> str | None:
    """Why ``backend`` cannot run in this process, or None when it can."""
    if backend == "python":
        return None
    if _C is None:
        return f"the C++ extension rnnkernels._C could not be loaded ({_LOAD_ERROR})"
    if backend == "cuda":
        if not _C.with_cuda:
            return "this build of rnnkernels has no CUDA kernels (no nvcc or a CPU-only torch at build time)"
        if not torch.cuda.is_available():
            return "torch.cuda.is_available() is False"
    return None


def named_backend(requested: str | None) -> str | None:
    """The backend asked for by name: the argument, else the environment variable; None
    for the automatic choice."""
    return requested if requested is not None else os.environ.get(ENV_VAR) or None


def resolve_backend(requested: str | None, device: torch.device) -> str:
    """The backend that runs for tensors on ``device``."""
    name = named_backend(requested)
    if name is not None:
        if name not in BACKENDS:
            raise ValueError(f"unknown rnnkernels backend {name!r}; expected one of {BACKENDS}")
        reason = unavailable_reason(name)
        if reason is not None:
            raise RuntimeError(f"rnnkernels backend {name!r} is not available: {reason}")
        native = _NATIVE_DEVICE.get(name)
        if native is not None and device.type not in (native, "meta"):
            raise RuntimeError(
                f"rnnkernels backend {name!r} runs on {native} tensors, but the input is on {device}"
            )
        return name
    native_backend = {"cuda": "cuda", "cpu": "cpp", "meta": "cpp"}.get(device.type)
    if native_backend is None:
        return "python"
    reason = unavailable_reason(native_backend)
    if reason is None:
        return native_backend
    if native_backend not in _warned:
        _warned.add(native_backend)
        warnings.warn(
            f"rnnkernels: falling back to the slow Python backend on {device.type}: {reason}",
            RuntimeWarning,
            stacklevel=3,
        )
    return "python"


def cpu_bf16_isa() -> str | None:
    """The instruction set the CPU's bfloat16 kernels run (amx, avx512_bf16), or None where
    bf16 is computed in float32."""
    return _C.cpu_bf16_isa() if _C is not None else None


def cpu_paths() -> dict:
    """The CPU kernels' instruction set per dtype: float32/64 (default, avx2, avx512) and
    bfloat16 (amx, avx512_bf16, or "float32": computed in float32, ``bfloat16_note`` says
    why)."""
    if _C is None:
        return {}
    isa = _C.cpu_isa()
    paths = {"float32": isa, "float64": isa, "bfloat16": cpu_bf16_isa() or "float32"}
    if _C.cpu_bf16_note():
        paths["bfloat16_note"] = _C.cpu_bf16_note()
    return paths


def empty_cache() -> int:
    """Frees the memory our CPU kernels keep between calls (each thread's scratch buffers,
    up to 1 GiB apiece, kept so that the next call does not fault in fresh pages), of every
    thread, except what a running call holds; returns the bytes freed. Calls after it
    work as before, allocating again. (CUDA memory goes through torch's caching allocator:
    ``torch.cuda.empty_cache()``.)"""
    return 0 if _C is None else int(_C.empty_cache())


def backend_info() -> dict:
    """What this installation can run: torch version, compiled and available backends, CUDA
    archs, the instruction set the CPU kernels run (``cpu_isa``: default, avx2, avx512) and
    per dtype (``cpu_paths``, see there)."""
    archs = _C.cuda_archs if _C is not None else ""
    return {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "compiled": {"cpp": _C is not None, "cuda": bool(_C is not None and _C.with_cuda)},
        "available": {name: unavailable_reason(name) is None for name in BACKENDS},
        "unavailable_reasons": {
            name: reason for name in BACKENDS if (reason := unavailable_reason(name)) is not None
        },
        "cuda_archs": [arch for arch in archs.replace(" ", ";").split(";") if arch],
        "cpu_isa": _C.cpu_isa() if _C is not None else None,
        "cpu_paths": cpu_paths(),
        "default": {
            "cpu": "cpp" if _C is not None else "python",
            "cuda": "cuda" if unavailable_reason("cuda") is None else "python",
        },
    }
