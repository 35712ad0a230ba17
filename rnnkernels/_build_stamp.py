"""Whether the compiled kernels in a source checkout were built from its current sources
and for the torch installed now, so that ``benchmarks/run.sh`` can skip the rebuild.

setup.py writes ``fingerprint()`` next to ``_C`` after a successful build (it loads this
file by path: nothing here imports the package). ``python -m rnnkernels._build_stamp``
exits 0 when the build is current and says why not otherwise.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

STAMP_FILE = "_build_stamp.txt"


def fingerprint(root: Path, torch_version: str) -> str:
    """A hash of every file the build reads (csrc/ and setup.py), torch's version and
    Python's: a change to any of them changes what would be compiled."""
    digest = hashlib.sha256()
    for path in sorted(p for p in (root / "csrc").rglob("*") if p.is_file()) + [root / "setup.py"]:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(f"torch {torch_version}; python {sys.version}".encode())
    return digest.hexdigest()


def stale_reason() -> str | None:
    """Why the package's in-place build is not current, or None when it is."""
    import torch

    from rnnkernels import _backend

    if _backend._C is None:
        return "the extension is not built or does not load"
    root = Path(_backend.__file__).resolve().parent.parent
    if not (root / "csrc").is_dir():
        return f"{root} is not a source checkout"
    stamp = Path(_backend._C.__file__).with_name(STAMP_FILE)
    if not stamp.exists():
        return "the build left no stamp"
    if stamp.read_text().strip() != fingerprint(root, torch.__version__):
        return "the sources or torch changed since the build"
    return None


if __name__ == "__main__":
    reason = stale_reason()
    if reason is not None:
        print(f"rnnkernels: the built kernels are not current: {reason}")
    sys.exit(0 if reason is None else 1)
