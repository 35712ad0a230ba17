"""The inference op (a layer's forward that keeps nothing for backward): the same outputs as
the training forward on every path (the CPU's persistent kernels, the ATen step loop of the
projected LSTM, packed and reversed), chosen by the modules (and by the cells, over one
step) exactly when no gradient can flow, and still correctly differentiable if a caller
asks for a gradient anyway. (Its opcheck runs with the other forward op's in
test_opcheck.py.)"""

from __future__ import annotations

import pytest
import torch

import rnnkernels
from rnnkernels import _ops

from conftest import OP_CASES, OpLog, float32_op_args, op_case_id, op_forward_args

pytestmark = pytest.mark.skipif(not rnnkernels.backend_info()["compiled"]["cpp"],
                                reason="the C++ extension is not built")


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("case", OP_CASES, ids=op_case_id)
def test_inference_matches_the_training_forward(case, reverse) -> None:
    cell, projects, batch_sizes = case
    args = float32_op_args(cell, projects, batch_sizes, reverse)
    with torch.no_grad():
        trained = _ops.forward_op(cell)(*args)
        inferred = _ops.inference_op(cell)(*args)
    # Same kernels and arithmetic; only where the saved values go differs.
    for got, want in zip(inferred, trained[:3], strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("cell", _ops.CELLS)
def test_gradient_through_the_inference_op(cell) -> None:
    """Not the modules' path, but a direct caller may still ask: reference gradients."""
    args = op_forward_args(cell, cell == "lstm", [3, 2, 2, 1])
    tensors = [a for a in args if isinstance(a, torch.Tensor)]

    def run(*values):
        it = iter(values)
        call = [next(it) if isinstance(a, torch.Tensor) else a for a in args]
        return tuple(t for t in _ops.inference_op(cell)(*call) if t.numel() > 0)

    assert torch.autograd.gradcheck(run, tensors)


@pytest.mark.parametrize("cell_name", ["LSTM", "GRU", "RNN"])
def test_modules_run_inference_exactly_when_no_gradient_can_flow(cell_name) -> None:
    model = getattr(rnnkernels, f"Fused{cell_name}")(8, 16, num_layers=2, backend="cpp")
    op = {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn_tanh"}[cell_name]
    x = torch.randn(5, 3, 8)

    def ops_called(inputs: torch.Tensor) -> set[str]:
        with OpLog() as recorder:
            model(inputs)
        return {n for n in recorder.names if n.startswith("rnnkernels.")}

    layer = f"rnnkernels.{op}_layer_"
    with torch.no_grad():
        assert ops_called(x) == {layer + "inference"}
    assert ops_called(x) == {layer + "forward"}  # the weights require grad
    model.requires_grad_(False)
    assert ops_called(x) == {layer + "inference"}
    assert ops_called(x.requires_grad_()) == {layer + "forward"}


@pytest.mark.parametrize("cell_name", ["LSTMCell", "GRUCell", "RNNCell"])
def test_cells_step_on_the_inference_op_exactly_when_no_gradient_can_flow(cell_name) -> None:
    fused = getattr(rnnkernels, f"Fused{cell_name}")(6, 10, backend="cpp")
    reference = getattr(torch.nn, cell_name)(6, 10)
    reference.load_state_dict(fused.state_dict())
    op = {"LSTMCell": "lstm", "GRUCell": "gru", "RNNCell": "rnn_tanh"}[cell_name]
    x = torch.randn(4, 6)

    def ops_called(inputs: torch.Tensor) -> set[str]:
        with OpLog() as recorder:
            fused(inputs)
        return {n for n in recorder.names if n.startswith("rnnkernels.")}

    def states(out) -> tuple:  # (h,) or LSTM's (h, c)
        return out if isinstance(out, tuple) else (out,)

    with torch.no_grad():
        assert ops_called(x) == {f"rnnkernels.{op}_cell_inference"}
        for inputs in (x, x[0]):  # batched and unbatched
            for got, want in zip(states(fused(inputs)), states(reference(inputs)), strict=True):
                assert got.shape == want.shape
                torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert ops_called(x) == {f"rnnkernels.{op}_cell_forward"}  # the weights require grad
