"""Timing done the same way for every implementation: warm-up, then rounds in which every
implementation runs once in a shuffled order, so drift of the machine hits all alike."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

import torch


def _timer(device: str) -> Callable[[Callable[[], object]], float]:
    """Seconds one call takes: CUDA events on a GPU, a synchronised wall clock otherwise."""
    if device == "cuda":
        def cuda_time(fn: Callable[[], object]) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        return cuda_time

    def wall_time(fn: Callable[[], object]) -> float:
        begin = time.perf_counter()
        fn()
        return time.perf_counter() - begin
    return wall_time


def time_interleaved(fns: dict[str, Callable[[], object]], device: str, repeats: int,
                     budget_s: float, warmup: int = 2, seed: int = 0) -> dict[str, list[float]]:
    """Per implementation, the seconds of each timed call. Rounds stop at ``repeats`` or
    when ``budget_s`` is spent, whichever first, but never below 5 rounds."""
    timer = _timer(device)
    estimate = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            estimate[name] = timer(fn)
    per_round = max(sum(estimate.values()), 1e-9)
    rounds = max(5, min(repeats, int(budget_s / per_round)))
    order = list(fns)
    shuffle = random.Random(seed)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        shuffle.shuffle(order)
        for name in order:
            samples[name].append(timer(fns[name]))
    return samples


def summarize(samples: list[float]) -> dict[str, float]:
    """Median and interquartile range, in milliseconds."""
    ms = sorted(s * 1e3 for s in samples)
    quartiles = statistics.quantiles(ms, n=4) if len(ms) >= 2 else [ms[0]] * 3
    return {"median_ms": statistics.median(ms), "iqr_ms": quartiles[2] - quartiles[0],
            "min_ms": ms[0], "max_ms": ms[-1], "rounds": len(ms)}


def gemm_ceiling(device: str, dtype: torch.dtype, size: int = 1024, budget_s: float = 1.0) -> float:
    """GFLOP/s of one size^3 matrix product on this device and dtype: the ceiling that
    the per-case GFLOP/s are compared with."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    samples = time_interleaved({"mm": lambda: torch.mm(a, b)}, device, repeats=50,
                               budget_s=budget_s)["mm"]
    return 2.0 * size**3 / statistics.median(samples) / 1e9
