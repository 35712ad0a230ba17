"""Runs the property-based fuzz (tests/fuzz/fuzz_api.py) in a subprocess: a segfault or
abort there fails this test instead of killing the test run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FUZZ_FILE = Path(__file__).parent / "fuzz" / "fuzz_api.py"


def test_fuzz_in_subprocess() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(FUZZ_FILE)],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (
        f"fuzz exited with {result.returncode} (negative: killed by signal)\n"
        f"{result.stdout[-4000:]}\n{result.stderr[-2000:]}")
