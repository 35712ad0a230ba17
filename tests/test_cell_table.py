"""The cell table the extension reports (rnnkernels._cells) against what is registered
and against torch.nn: Python's op registrations read it instead of a copy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnkernels
from rnnkernels import _cells

pytestmark = pytest.mark.skipif(not rnnkernels.backend_info()["compiled"]["cpp"],
                                reason="the C++ extension is not built")

NN_TWIN = {"lstm": nn.LSTM(2, 3), "gru": nn.GRU(2, 3), "rnn_tanh": nn.RNN(2, 3),
           "rnn_relu": nn.RNN(2, 3, nonlinearity="relu")}


def test_every_cell_has_its_ops_and_kind() -> None:
    assert set(_cells.CELLS) == set(NN_TWIN)
    kinds = rnnkernels._backend._C.cell_kinds()
    for name, row in _cells.TABLE.items():
        assert row["kind"] == kinds[name]
        for op in ("layer_forward", "layer_inference", "layer_backward", "cell_forward",
                   "cell_inference", "cell_backward", "bidirectional_forward"):
            assert hasattr(torch.ops.rnnkernels, f"{name}_{op}")
        assert hasattr(torch.ops.rnnkernels, f"{name}_rowwise_forward") == row["rowwise"]


@pytest.mark.parametrize("name", list(NN_TWIN))
def test_traits_agree_with_nn(name) -> None:
    """nn's weight shapes give the gate count; its hx form whether a cell state exists."""
    row, twin = _cells.TABLE[name], NN_TWIN[name]
    assert row["gates"] * twin.hidden_size == twin.weight_ih_l0.shape[0]
    assert row["has_cell_state"] == isinstance(twin, nn.LSTM)
    # GRU's n gate reads r * (W_hn h + b_hn): the only cell whose projections stay apart.
    assert row["sums_projections"] == (name != "gru")


def test_rowwise_cells_are_the_layer_normalised_modules_cells() -> None:
    assert set(_cells.ROWWISE_CELLS) == {"lstm", "gru"}
