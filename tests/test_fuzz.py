"""Runs the property-based fuzz (tests/fuzz/fuzz_api.py) in a subprocess: a segfault or
abort there fails this test instead of killing the test run. Each run draws a fresh seed
(or takes RNNKERNELS_FUZZ_SEED) and names it, so that a failure can be replayed."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

FUZZ_FILE = Path(__file__).parent / "fuzz" / "fuzz_api.py"


def test_fuzz_in_subprocess() -> None:
    seed = os.environ.get("RNNKERNELS_FUZZ_SEED") or str(random.randrange(2**32))
    print(f"fuzz seed: RNNKERNELS_FUZZ_SEED={seed}")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(FUZZ_FILE)],
        capture_output=True, text=True, timeout=900,
        env=dict(os.environ, RNNKERNELS_FUZZ_SEED=seed))
    assert result.returncode == 0, (
        f"fuzz with RNNKERNELS_FUZZ_SEED={seed} exited with {result.returncode} "
        f"(negative: killed by signal)\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}")
