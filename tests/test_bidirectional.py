"""Both directions in one call (``<cell>_bidirectional_{forward,inference,backward}``): the
same results as a layer op call per direction, with the directions on two threads or one
after the other; errors raised inside a direction reach the caller; opcheck; gradients
(the fused backward op, or the reference math where a graph or the inference op's is
asked); and the modules use them for every bidirectional layer."""

from __future__ import annotations

import pytest
import torch

import rnnkernels
from rnnkernels import _bidirectional, _ops

from conftest import OP_CASES, OpLog, float32_op_args, op_forward_args

pytestmark = pytest.mark.skipif(not rnnkernels.backend_info()["compiled"]["cpp"],
                                reason="the C++ extension is not built")

CASE_IDS = [f"{c[0]}-proj{int(c[1])}-packed{int(bool(c[2]))}" for c in OP_CASES]


def _both(make_args) -> tuple:
    """Two directions' arguments from a forward-args maker: (x, batch_sizes, ahead, back)."""
    x, batch_sizes, *ahead, _ = make_args(False)
    back = make_args(True)[2:9]
    return x, batch_sizes, tuple(ahead), tuple(back)


# (the two-direction op, the layer op it runs per direction)
OP_PAIRS = {"forward": (_bidirectional.forward_op, _ops.forward_op),
            "inference": (_bidirectional.inference_op, _ops.inference_op)}


@pytest.mark.parametrize("kind", OP_PAIRS)
@pytest.mark.parametrize("case", OP_CASES, ids=CASE_IDS)
def test_matches_a_layer_call_per_direction(case, kind, threads) -> None:
    cell, projects, batch_sizes = case
    both_op, layer_op = (make(cell) for make in OP_PAIRS[kind])
    torch.manual_seed(0)
    x, sizes, ahead, back = _both(lambda rev: float32_op_args(cell, projects, batch_sizes, rev))
    with torch.no_grad():
        got = both_op(x, sizes, *ahead, *back)
        want = (*layer_op(x, sizes, *ahead, False), *layer_op(x, sizes, *back, True))
    # One thread per direction runs the same tile per hidden block; only the input
    # projection's GEMM may split its work differently.
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6)


def _backward_args(cell: str, x, sizes, ahead, back) -> tuple:
    """The backward op's arguments after a forward op call on these inputs."""
    with torch.no_grad():
        outputs = _bidirectional.forward_op(cell)(x, sizes, *ahead, *back)
    per_direction = []
    for d, args in enumerate((ahead, back)):
        output, h_n, c_n, *kept = outputs[7 * d:7 * d + 7]
        w_ih, w_hh, w_hr = args[2].detach(), args[3].detach(), args[6]
        per_direction += [torch.randn_like(output), torch.randn_like(h_n),
                          torch.randn_like(c_n) if cell == "lstm" else None, w_ih, w_hh,
                          None if w_hr is None else w_hr.detach(), *kept]
    return (x.detach(), sizes, True, *per_direction)


@pytest.mark.parametrize("case", OP_CASES, ids=CASE_IDS)
def test_backward_matches_a_layer_backward_per_direction(case, threads) -> None:
    cell, projects, batch_sizes = case
    torch.manual_seed(0)
    x, sizes, ahead, back = _both(lambda rev: float32_op_args(cell, projects, batch_sizes, rev))
    args = _backward_args(cell, x, sizes, ahead, back)
    got = _bidirectional.backward_op(cell)(*args)
    want = [_ops.backward_op(cell)(*args[3 + 10 * d:6 + 10 * d], args[0], sizes,
                                   *args[6 + 10 * d:8 + 10 * d], True, *args[8 + 10 * d:13 + 10 * d],
                                   d == 1) for d in range(2)]
    torch.testing.assert_close(got[0], want[0][0] + want[1][0], rtol=1e-5, atol=1e-5)
    for g, w in zip(got[1:], (*want[0][1:], *want[1][1:]), strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", OP_PAIRS)
@pytest.mark.parametrize("case", OP_CASES, ids=CASE_IDS)
def test_opcheck(case, kind) -> None:
    cell, projects, batch_sizes = case
    x, sizes, ahead, back = _both(lambda rev: op_forward_args(cell, projects, batch_sizes,
                                                            reverse=rev))
    torch.library.opcheck(OP_PAIRS[kind][0](cell), (x, sizes, *ahead, *back))


@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.parametrize("case", OP_CASES, ids=CASE_IDS)
def test_opcheck_backward(case, input_grad) -> None:
    cell, projects, batch_sizes = case
    x, sizes, ahead, back = _both(lambda rev: op_forward_args(cell, projects, batch_sizes,
                                                            reverse=rev))
    torch.library.opcheck(_bidirectional.backward_op(cell),
                          _backward_args(cell, x, sizes, ahead, back), {"input_grad": input_grad})


@pytest.mark.parametrize("case", OP_CASES, ids=CASE_IDS)
def test_backward_without_input_grad(case) -> None:
    """input_grad=False skips x's gradient (empty) and leaves the others as they were."""
    cell, projects, batch_sizes = case
    x, sizes, ahead, back = _both(lambda rev: op_forward_args(cell, projects, batch_sizes,
                                                            reverse=rev))
    args = _backward_args(cell, x, sizes, ahead, back)
    full = _bidirectional.backward_op(cell)(*args)
    partial = _bidirectional.backward_op(cell)(*args, input_grad=False)
    assert full[0].shape == x.shape and partial[0].shape == (0,)
    for got, want in zip(partial[1:], full[1:], strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("kind", OP_PAIRS)
@pytest.mark.parametrize("cell", _ops.CELLS)
def test_gradient_through_the_op(cell, kind) -> None:
    """fp64 gradcheck: the fused backward op (forward op) or the reference math (inference
    op, and any graph of the backward)."""
    x, sizes, ahead, back = _both(lambda rev: op_forward_args(cell, False, [3, 2, 2, 1],
                                                            reverse=rev))
    tensors = [t for t in (x, *ahead, *back) if t is not None]
    op, outputs = OP_PAIRS[kind][0](cell), 7 if kind == "forward" else 3

    def run(*values):
        it = iter(values)
        x_, *rest = [None if t is None else next(it) for t in (x, *ahead, *back)]
        results = op(x_, sizes, *rest)
        differentiable = (*results[:3], *results[outputs:outputs + 3])
        return tuple(t for t in differentiable if t.numel() > 0)

    assert torch.autograd.gradcheck(run, tensors)
    if kind == "forward":  # a graph of the backward: the reference math's
        assert torch.autograd.gradgradcheck(run, tensors)


@pytest.mark.parametrize("kind", OP_PAIRS)
def test_an_error_in_one_direction_reaches_the_caller(kind, threads) -> None:
    x, sizes, ahead, back = _both(lambda rev: float32_op_args("lstm", False, [], rev))
    bad_back = (back[0], back[1], back[2], back[3][:, :-1], *back[4:])
    with pytest.raises(RuntimeError, match="w_hh must have shape"):
        with torch.no_grad():
            OP_PAIRS[kind][0]("lstm")(x, sizes, *ahead, *bad_back)


def test_biases_in_one_direction_only_are_refused() -> None:
    x, sizes, ahead, back = _both(lambda rev: float32_op_args("gru", False, [], rev))
    without_bias = (*back[:4], None, None, back[6])
    with pytest.raises(RuntimeError, match="biases or neither"):
        _bidirectional.forward_op("gru")(x, sizes, *ahead, *without_bias)


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_modules_use_them_for_bidirectional_layers(name) -> None:
    model = getattr(rnnkernels, f"Fused{name}")(8, 16, num_layers=2, bidirectional=True,
                                               backend="cpp")
    op = {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn_tanh"}[name]
    x = torch.randn(5, 3, 8)

    def ops_called() -> set[str]:
        with OpLog() as recorder:
            model(x)
        return {n for n in recorder.names if n.startswith("rnnkernels.")}

    with torch.no_grad():
        assert ops_called() == {f"rnnkernels.{op}_bidirectional_inference"}
    assert ops_called() == {f"rnnkernels.{op}_bidirectional_forward"}
