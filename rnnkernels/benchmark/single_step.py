"""One step at a time, where a call's fixed cost decides: cells in a Python loop
(inference, and training with the backward of the whole loop) and layers called with one
time step and their state carried (streaming), ours against torch.nn on the same weights,
interleaved. Times are per step: a 50-step loop's median divided by 50."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

import rnnkernels

from .timing import time_interleaved

STEPS = 50


@dataclass(frozen=True)
class Use:
    label: str
    nn_class: type[nn.Module]
    batch: int
    input_size: int
    hidden: int
    training: bool = False
    layers: int = 0  # 0: a cell; otherwise a layer stack called one step at a time


USES = [
    Use("RNNCell, inference", nn.RNNCell, 1, 48, 64),
    Use("LSTMCell, inference", nn.LSTMCell, 1, 48, 64),
    Use("GRUCell, inference", nn.GRUCell, 1, 48, 64),
    Use("LSTMCell, training", nn.LSTMCell, 1, 48, 64, training=True),
    Use("GRUCell, inference", nn.GRUCell, 8, 128, 128),
    Use("LSTMCell, inference", nn.LSTMCell, 16, 256, 256),
    Use("RNNCell, training", nn.RNNCell, 64, 512, 512, training=True),
    Use("GRU layer, streaming", nn.GRU, 1, 64, 64, layers=1),
    Use("RNN layer, streaming", nn.RNN, 1, 256, 256, layers=2),
    Use("LSTM layer, streaming", nn.LSTM, 1, 256, 256, layers=2),
]

_FUSED = {nn.RNNCell: rnnkernels.FusedRNNCell, nn.LSTMCell: rnnkernels.FusedLSTMCell,
          nn.GRUCell: rnnkernels.FusedGRUCell, nn.RNN: rnnkernels.FusedRNN,
          nn.LSTM: rnnkernels.FusedLSTM, nn.GRU: rnnkernels.FusedGRU}


def _loop(module: nn.Module, use: Use, xs: torch.Tensor) -> Callable[[], object]:
    lstm = isinstance(module, (nn.LSTMCell, nn.LSTM, rnnkernels.FusedLSTMCell,
                               rnnkernels.FusedLSTM))
    lead = (use.layers,) if use.layers else ()
    h = torch.zeros(*lead, use.batch, use.hidden)
    start = (h, h) if lstm else h

    def steps() -> list[torch.Tensor]:
        state, outputs = start, []
        for x in xs:
            if use.layers:
                out, state = module(x.unsqueeze(0), state)
            else:
                out = state = module(x, state)
            outputs.append(out[0] if isinstance(out, tuple) else out)
        return outputs

    def run() -> object:
        if use.training:
            return torch.stack(steps()).sum().backward()
        with torch.no_grad():
            return steps()

    return run


def single_step_rows(repeats: int, budget_s: float) -> list[dict] | None:
    """Per use: nn's and our microseconds per step (median, and the rounds' spread); None
    where our C++ backend is not available."""
    if not rnnkernels.backend_info()["available"]["cpp"]:
        return None
    rows = []
    for use in USES:
        torch.manual_seed(0)
        args = (use.input_size, use.hidden) + ((use.layers,) if use.layers else ())
        reference = use.nn_class(*args)
        ours = _FUSED[use.nn_class](*args, backend="cpp")
        ours.load_state_dict(reference.state_dict())
        xs = torch.randn(STEPS, use.batch, use.input_size)
        samples = time_interleaved({"nn": _loop(reference, use, xs), "ours": _loop(ours, use, xs)},
                                   "cpu", repeats, budget_s)
        per_step = {name: [s / STEPS * 1e6 for s in times] for name, times in samples.items()}
        nn_us, ours_us = (statistics.median(per_step[k]) for k in ("nn", "ours"))
        rows.append({"use": use.label, "batch": use.batch, "input_size": use.input_size,
                     "hidden": use.hidden, "layers": use.layers, "training": use.training,
                     "nn_us": nn_us, "ours_us": ours_us, "speedup": nn_us / ours_us,
                     "nn_us_range": [min(per_step["nn"]), max(per_step["nn"])],
                     "ours_us_range": [min(per_step["ours"]), max(per_step["ours"])]})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| use | B | I | H | nn us/step | ours us/step | ours vs nn |", "|---" * 7 + "|"]
    for r in rows:
        shape = f"{r['hidden']}" + (f" x{r['layers']}" if r["layers"] > 1 else "")
        lines.append(f"| {r['use']} | {r['batch']} | {r['input_size']} | {shape} | "
                     f"{r['nn_us']:.1f} | {r['ours_us']:.1f} | {r['speedup']:.2f}x |")
    return "\n".join(lines)
