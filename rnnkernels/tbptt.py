"""Truncated backpropagation through time over a long sequence.

The sequence is cut into chunks of ``chunk`` steps. Each chunk runs from the state the
previous one ended in, detached, so no gradient crosses a chunk boundary and memory does
not grow with the sequence length. With ``backward_window`` (a multiple of ``chunk``)
the backward of each chunk reaches that many steps back (TBPTT(k1, k2)): the extra steps
are re-run from the state saved at their start, and only the newest chunk's loss counts.

Works with any module called as ``module(x, hx) -> (output, hx)``: the Fused* modules and
torch.nn's RNN, GRU and LSTM alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

# loss_fn(output of the chunk, first step, one past the last step) -> scalar loss
LossFn = Callable[[Tensor, int, int], Tensor]


@dataclass
class TbpttResult:
    losses: list[float] = field(default_factory=list)
    hx: Any = None  # the final state, detached


def detach_state(hx: Any) -> Any:
    """The state with its history cut: a tensor, or a tuple of them (LSTM's (h, c))."""
    if hx is None:
        return None
    if isinstance(hx, tuple):
        return tuple(h.detach() for h in hx)
    return hx.detach()


def tbptt(module: nn.Module, inputs: Tensor, loss_fn: LossFn, chunk: int, *,
          backward_window: int | None = None, hx: Any = None,
          optimizer: torch.optim.Optimizer | None = None) -> TbpttResult:
    """Runs ``module`` over ``inputs`` chunk by chunk, calling backward on each chunk's loss
    (and ``optimizer.step()`` after it, when given). The time axis of ``inputs`` is 1 when
    the module is ``batch_first``, else 0. Returns the per-chunk losses and final state."""
    window = backward_window or chunk
    if chunk < 1 or window < chunk or window % chunk:
        raise ValueError(f"chunk ({chunk}) must be >= 1 and backward_window ({window}) a "
                         "multiple of it")
    time_dim = 1 if getattr(module, "batch_first", False) else 0
    steps = inputs.shape[time_dim]
    result = TbpttResult(hx=detach_state(hx))
    starts_and_states: list[tuple[int, Any]] = []
    for start in range(0, steps, chunk):
        stop = min(start + chunk, steps)
        starts_and_states.append((start, result.hx))
        first, state = starts_and_states[max(0, len(starts_and_states) - window // chunk)]
        if optimizer is not None:
            optimizer.zero_grad()
        output, new_hx = module(inputs.narrow(time_dim, first, stop - first), state)
        newest = output.narrow(time_dim, start - first, stop - start)
        loss = loss_fn(newest, start, stop)
        loss.backward()
        if optimizer is not None:
            optimizer.step()
        result.losses.append(loss.item())
        result.hx = detach_state(new_hx)
    return result
