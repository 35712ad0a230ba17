"""fp32 parity of the Fused modules with torch.nn on the same weights: outputs, final
states, and the gradients of inputs, states and every parameter."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from conftest import CPU_BACKENDS, assert_parity, module_pair

SEQUENCE_CASES = [
    (nn.LSTM, {}),
    (nn.LSTM, {"proj_size": 5}),
    (nn.GRU, {}),
    (nn.RNN, {"nonlinearity": "tanh"}),
    (nn.RNN, {"nonlinearity": "relu"}),
]


def _ids(case) -> str:
    nn_class, kwargs = case
    return nn_class.__name__ + "".join(f"-{k}={v}" for k, v in kwargs.items())


def _hidden(nn_class: type, module: nn.Module, batch: int, unbatched: bool = False):
    layers = module.num_layers * (2 if module.bidirectional else 1)
    h_size = module.proj_size if getattr(module, "proj_size", 0) else module.hidden_size
    shape = (layers, batch) if not unbatched else (layers,)
    h = torch.randn(*shape, h_size, requires_grad=True)
    if nn_class is nn.LSTM:
        return (h, torch.randn(*shape, module.hidden_size, requires_grad=True))
    return h


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", SEQUENCE_CASES, ids=_ids)
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, False), (2, True)])
def test_standard_shape(backend, case, layers, bidirectional) -> None:
    nn_class, kwargs = case
    reference, fused = module_pair(nn_class, 32, 64, num_layers=layers,
                                   bidirectional=bidirectional, backend=backend, **kwargs)
    x = torch.randn(50, 8, 32, requires_grad=True)
    assert_parity(reference, fused, [x, _hidden(nn_class, reference, 8)])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", SEQUENCE_CASES, ids=_ids)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_input_without_grad(backend, case, bidirectional) -> None:
    """The usual training call: only the parameters need gradients, so the first layer's
    backward skips its input's."""
    nn_class, kwargs = case
    reference, fused = module_pair(nn_class, 6, 10, num_layers=2, bidirectional=bidirectional,
                                   backend=backend, **kwargs)
    assert_parity(reference, fused, [torch.randn(5, 3, 6), None])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", SEQUENCE_CASES, ids=_ids)
@pytest.mark.parametrize("shape", [(1, 4, 3, 5), (7, 1, 3, 5), (9, 3, 11, 13)],
                         ids=["T=1", "B=1", "odd"])
@pytest.mark.parametrize("with_hx", [True, False], ids=["hx", "no-hx"])
def test_edge_shapes(backend, case, shape, with_hx) -> None:
    nn_class, kwargs = case
    steps, batch, inputs, hidden = shape
    kwargs = {**kwargs, "proj_size": 2} if "proj_size" in kwargs else kwargs
    reference, fused = module_pair(nn_class, inputs, hidden, num_layers=2, bidirectional=True,
                                   backend=backend, **kwargs)
    x = torch.randn(steps, batch, inputs, requires_grad=True)
    hx = _hidden(nn_class, reference, batch) if with_hx else None
    assert_parity(reference, fused, [x, hx])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", SEQUENCE_CASES, ids=_ids)
def test_batch_first(backend, case) -> None:
    nn_class, kwargs = case
    reference, fused = module_pair(nn_class, 6, 10, num_layers=2, bidirectional=True,
                                   batch_first=True, backend=backend, **kwargs)
    x = torch.randn(4, 9, 6, requires_grad=True)
    assert_parity(reference, fused, [x, _hidden(nn_class, reference, 4)])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", SEQUENCE_CASES, ids=_ids)
@pytest.mark.parametrize("batch_first", [False, True])
def test_unbatched(backend, case, batch_first) -> None:
    nn_class, kwargs = case
    reference, fused = module_pair(nn_class, 6, 10, num_layers=2, bidirectional=True,
                                   batch_first=batch_first, backend=backend, **kwargs)
    x = torch.randn(9, 6, requires_grad=True)
    assert_parity(reference, fused, [x, _hidden(nn_class, reference, 0, unbatched=True)])
    assert_parity(reference, fused, [x, None])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", SEQUENCE_CASES, ids=_ids)
@pytest.mark.parametrize("enforce_sorted", [True, False], ids=["sorted", "unsorted"])
@pytest.mark.parametrize("with_hx", [True, False], ids=["hx", "no-hx"])
def test_packed(backend, case, enforce_sorted, with_hx) -> None:
    nn_class, kwargs = case
    reference, fused = module_pair(nn_class, 5, 8, num_layers=2, bidirectional=True,
                                   backend=backend, **kwargs)
    lengths = torch.tensor([9, 7, 7, 3, 1]) if enforce_sorted else torch.tensor([3, 9, 1, 7, 7])
    x = torch.randn(9, 5, 5, requires_grad=True)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
    hx = _hidden(nn_class, reference, 5) if with_hx else None
    assert_parity(reference, fused, [packed, hx])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", SEQUENCE_CASES, ids=_ids)
def test_dropout_in_eval_is_off(backend, case) -> None:
    nn_class, kwargs = case
    reference, fused = module_pair(nn_class, 6, 10, num_layers=3, dropout=0.5, backend=backend,
                                   **kwargs)
    reference.eval()
    fused.eval()
    x = torch.randn(7, 3, 6, requires_grad=True)
    assert_parity(reference, fused, [x, None])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", [(nn.LSTMCell, {}), (nn.GRUCell, {}),
                                  (nn.RNNCell, {"nonlinearity": "tanh"}),
                                  (nn.RNNCell, {"nonlinearity": "relu"})], ids=_ids)
@pytest.mark.parametrize("bias", [True, False])
def test_cells(backend, case, bias) -> None:
    nn_class, kwargs = case
    reference, fused = module_pair(nn_class, 6, 10, bias=bias, backend=backend, **kwargs)
    x = torch.randn(4, 6, requires_grad=True)
    h = torch.randn(4, 10, requires_grad=True)
    hx = (h, torch.randn(4, 10, requires_grad=True)) if nn_class is nn.LSTMCell else h
    assert_parity(reference, fused, [x, hx])
    assert_parity(reference, fused, [x, None])
    unbatched_hx = (hx[0][0], hx[1][0]) if nn_class is nn.LSTMCell else h[0]
    assert_parity(reference, fused, [x[0], unbatched_hx])
