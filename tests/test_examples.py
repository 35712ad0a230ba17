"""Every example runs in its reduced (--quick) mode, so none of them can rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(EXAMPLES / script), "--quick", *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("rnn", ["fused-lstm", "fused-gru", "nn-lstm"])
def test_sequence_classifier(rnn) -> None:
    output = _run("sequence_classifier.py", "--rnn", rnn)
    assert output.count("test accuracy") == 2


def test_char_lm_tbptt() -> None:
    output = _run("char_lm_tbptt.py")
    assert "held-out" in output and "bits/char" in output and "sample:" in output


def test_long_memory(tmp_path) -> None:
    output = _run("long_memory.py", "--out-dir", str(tmp_path))
    assert "test accuracy" in output
    for name in ("long_memory_gradients.png", "long_memory_accuracy.png"):
        assert (tmp_path / name).stat().st_size > 0
