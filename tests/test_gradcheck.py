"""fp64 gradcheck and gradgradcheck (with vmap over the backward, as PyTorch's own
module tests do) for every cell, backend, direction, layer count and bias setting."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkernels
from conftest import CPU_BACKENDS

CELLS = {
    "lstm": (rnnkernels.FusedLSTM, {}),
    "lstm-proj": (rnnkernels.FusedLSTM, {"proj_size": 2}),
    "gru": (rnnkernels.FusedGRU, {}),
    "rnn-tanh": (rnnkernels.FusedRNN, {"nonlinearity": "tanh"}),
    "rnn-relu": (rnnkernels.FusedRNN, {"nonlinearity": "relu"}),
}


def _as_function(module: torch.nn.Module, packed_lengths: torch.Tensor | None = None):
    """f(x, h0, [c0,] *params) -> outputs, for gradcheck."""
    names = [name for name, _ in module.named_parameters()]
    has_cell = isinstance(module, rnnkernels.FusedLSTM)

    def run(x, *rest):
        states, params = (rest[:2], rest[2:]) if has_cell else (rest[:1], rest[1:])
        hx = tuple(states) if has_cell else states[0]
        inputs = pack_padded_sequence(x, packed_lengths) if packed_lengths is not None else x
        output, hidden = functional_call(module, dict(zip(names, params, strict=True)), (inputs, hx))
        data = output.data if packed_lengths is not None else output
        return (data, *hidden) if has_cell else (data, hidden)

    return run


def _inputs(module: torch.nn.Module, steps: int = 3, batch: int = 2) -> list[torch.Tensor]:
    layers = module.num_layers * (2 if module.bidirectional else 1)
    h_size = getattr(module, "proj_size", 0) or module.hidden_size
    options = dict(dtype=torch.float64, requires_grad=True)
    tensors = [torch.randn(steps, batch, module.input_size, **options),
               torch.randn(layers, batch, h_size, **options)]
    if isinstance(module, rnnkernels.FusedLSTM):
        tensors.append(torch.randn(layers, batch, module.hidden_size, **options))
    return tensors + [p.detach().clone().requires_grad_() for p in module.parameters()]


def _module(cell: str, backend: str, layers: int, bidirectional: bool, bias: bool):
    module_class, kwargs = CELLS[cell]
    return module_class(3, 3, num_layers=layers, bidirectional=bidirectional, bias=bias,
                        backend=backend, dtype=torch.float64, **kwargs)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_gradcheck(backend, cell, layers, bidirectional, bias) -> None:
    module = _module(cell, backend, layers, bidirectional, bias)
    assert torch.autograd.gradcheck(_as_function(module), _inputs(module),
                                    check_batched_grad=True)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_gradgradcheck(backend, cell, bidirectional) -> None:
    module = _module(cell, backend, 2, bidirectional, True)
    assert torch.autograd.gradgradcheck(_as_function(module), _inputs(module, steps=2),
                                        check_batched_grad=True)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("cell", list(CELLS))
def test_gradcheck_packed(backend, cell) -> None:
    module = _module(cell, backend, 1, True, True)
    lengths = torch.tensor([4, 2, 1])
    assert torch.autograd.gradcheck(_as_function(module, lengths),
                                    _inputs(module, steps=4, batch=3), check_batched_grad=True)
