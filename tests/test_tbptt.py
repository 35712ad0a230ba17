"""Truncated BPTT: within a chunk the gradients are full BPTT over that chunk from its
(detached) start state; nothing flows across a chunk boundary."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnkernels
from rnnkernels.tbptt import detach_state, tbptt

MODULES = {
    "FusedLSTM": lambda: rnnkernels.FusedLSTM(3, 5, num_layers=2, dtype=torch.float64),
    "FusedGRU": lambda: rnnkernels.FusedGRU(3, 5, batch_first=True, dtype=torch.float64),
    "FusedRNN": lambda: rnnkernels.FusedRNN(3, 5, dtype=torch.float64),
    "nn.LSTM": lambda: nn.LSTM(3, 5, dtype=torch.float64),
}


def _chunk_loss(output: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    return (output**2).sum() * (start + 1)


def _inputs(module: nn.Module, steps: int = 12) -> torch.Tensor:
    x = torch.randn(steps, 2, 3, dtype=torch.float64)
    return x.transpose(0, 1).contiguous() if getattr(module, "batch_first", False) else x


@pytest.mark.parametrize("name", list(MODULES))
def test_chunk_gradients_equal_bptt_within_the_chunk(name) -> None:
    module = MODULES[name]()
    x = _inputs(module)
    time_dim = 1 if getattr(module, "batch_first", False) else 0
    result = tbptt(module, x, _chunk_loss, chunk=4)
    assert len(result.losses) == 3
    got = [p.grad.clone() for p in module.parameters()]
    # The same, by hand: three independent BPTT runs from the detached chunk-start states.
    module.zero_grad()
    hx = None
    for start in range(0, 12, 4):
        output, new_hx = module(x.narrow(time_dim, start, 4), hx)
        _chunk_loss(output, start, start + 4).backward()
        hx = detach_state(new_hx)
    for g, p in zip(got, module.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad)


@pytest.mark.parametrize("name", list(MODULES))
def test_no_gradient_crosses_a_chunk_boundary(name) -> None:
    module = MODULES[name]()
    x = _inputs(module).requires_grad_()
    time_dim = 1 if getattr(module, "batch_first", False) else 0

    def last_chunk_only(output, start, stop):
        return output.sum() * 0 if start < 8 else output.sum()

    tbptt(module, x, last_chunk_only, chunk=4)
    assert x.grad.narrow(time_dim, 0, 8).abs().max() == 0
    assert x.grad.narrow(time_dim, 8, 4).abs().max() > 0


def test_backward_window_reaches_back_but_no_further() -> None:
    module = MODULES["FusedLSTM"]()
    x = _inputs(module).requires_grad_()

    def last_chunk_only(output, start, stop):
        return output.sum() * (1.0 if start == 8 else 0.0)

    tbptt(module, x, last_chunk_only, chunk=4, backward_window=8)
    assert x.grad[:4].abs().max() == 0  # older than the window
    assert x.grad[4:8].abs().max() > 0  # inside the window, before the chunk
    assert x.grad[8:].abs().max() > 0


def test_optimizer_steps_once_per_chunk() -> None:
    module = MODULES["FusedGRU"]()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01)
    before = [p.detach().clone() for p in module.parameters()]
    result = tbptt(module, _inputs(module, 10), _chunk_loss, chunk=3, optimizer=optimizer)
    assert len(result.losses) == 4 and result.hx.requires_grad is False
    assert any(not torch.equal(b, p) for b, p in zip(before, module.parameters(), strict=True))


@pytest.mark.parametrize("chunk,window", [(0, None), (4, 2), (4, 6)])
def test_bad_windows(chunk, window) -> None:
    with pytest.raises(ValueError, match="multiple"):
        tbptt(MODULES["FusedRNN"](), torch.randn(5, 1, 3), _chunk_loss, chunk, backward_window=window)
