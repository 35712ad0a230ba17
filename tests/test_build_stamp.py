"""The build stamp that lets benchmarks/run.sh skip a rebuild: it changes with every file
the build reads and with torch's version, and the checkout under test is current."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnkernels import _backend, _build_stamp


def _tree(root: Path) -> Path:
    (root / "csrc" / "cells").mkdir(parents=True)
    (root / "csrc" / "cells" / "lstm.h").write_text("// math\n")
    (root / "setup.py").write_text("# build\n")
    return root


def test_fingerprint_follows_sources_and_torch(tmp_path):
    root = _tree(tmp_path)
    first = _build_stamp.fingerprint(root, "2.14.1")
    assert _build_stamp.fingerprint(root, "2.14.1") == first
    assert _build_stamp.fingerprint(root, "2.13.0") != first
    (root / "csrc" / "cells" / "lstm.h").write_text("// other math\n")
    assert _build_stamp.fingerprint(root, "2.14.1") != first
    (root / "csrc" / "cells" / "lstm.h").write_text("// math\n")
    (root / "csrc" / "new.cpp").write_text("")
    assert _build_stamp.fingerprint(root, "2.14.1") != first


@pytest.mark.skipif(_backend._C is None, reason="no extension built")
def test_the_kernels_under_test_match_their_sources():
    """A stale build would test other kernels than the sources say (and run.sh would skip
    a rebuild it needs): rebuild with `pip install --no-build-isolation -e .`."""
    root = Path(_backend.__file__).resolve().parent.parent
    if not (root / "csrc").is_dir():
        pytest.skip("rnnkernels is installed, not run from a source checkout")
    assert _build_stamp.stale_reason() is None
