"""The per-step cost of our LSTM, GRU and RNN (tanh) at B=1, H=64, the shape of the
CPU-speed issue's per-step target: a module's inference over 2T steps minus over T steps,
divided by T. What a call costs once (Python, checks, packing the weights) cancels out;
what is left is the recurrence's own cost per step, its arithmetic included (a few hundred
cycles here)."""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch

import rnnkernels

from .timing import time_interleaved

HIDDEN = 64
MODULES = {"lstm": rnnkernels.FusedLSTM, "gru": rnnkernels.FusedGRU,
           "rnn_tanh": rnnkernels.FusedRNN}


def per_step_us(device: str, repeats: int, budget_s: float,
                steps: int = 100) -> dict[str, float] | None:
    """Microseconds per step at B=1, H=I=64 on our backend for ``device``, per cell (all
    timed in the same rounds); None where that backend is not available."""
    backend = "cuda" if device == "cuda" else "cpp"
    if not rnnkernels.backend_info()["available"].get(backend, False):
        return None
    torch.manual_seed(0)
    short = torch.randn(steps, 1, HIDDEN, device=device)
    long = torch.randn(2 * steps, 1, HIDDEN, device=device)

    def inference(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad():
                return module(x)
        return run

    calls = {}
    for cell, cls in MODULES.items():
        module = cls(HIDDEN, HIDDEN, backend=backend, device=device)
        calls[f"{cell} short"] = inference(module, short)
        calls[f"{cell} long"] = inference(module, long)
    samples = time_interleaved(calls, device, repeats, budget_s)
    return {cell: (statistics.median(samples[f"{cell} long"])
                   - statistics.median(samples[f"{cell} short"])) / steps * 1e6
            for cell in MODULES}
