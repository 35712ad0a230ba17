"""The per-step cost of our LSTM at B=1, H=64, the shape of the CPU-speed issue's per-step
target: a module's inference over 2T steps minus over T steps, divided by T. What a call
costs once (Python, checks, packing the weights) cancels out; what is left is the
recurrence's own cost per step, its arithmetic included (a few hundred cycles here)."""

from __future__ import annotations

import statistics

import torch

import rnnkernels

from .timing import time_interleaved

HIDDEN = 64


def per_step_us(device: str, repeats: int, budget_s: float, steps: int = 100) -> float | None:
    """Microseconds per step at B=1, H=I=64 on our backend for ``device``; None where that
    backend is not available."""
    backend = "cuda" if device == "cuda" else "cpp"
    if not rnnkernels.backend_info()["available"].get(backend, False):
        return None
    torch.manual_seed(0)
    module = rnnkernels.FusedLSTM(HIDDEN, HIDDEN, backend=backend, device=device)
    short = torch.randn(steps, 1, HIDDEN, device=device)
    long = torch.randn(2 * steps, 1, HIDDEN, device=device)

    def run(x: torch.Tensor) -> object:
        with torch.no_grad():
            return module(x)

    samples = time_interleaved({"short": lambda: run(short), "long": lambda: run(long)},
                               device, repeats, budget_s)
    extra = statistics.median(samples["long"]) - statistics.median(samples["short"])
    return extra / steps * 1e6
