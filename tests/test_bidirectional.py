"""Both directions in one call (``<cell>_bidirectional_inference``): the same results as two
inference calls, with the directions on two threads or one after the other; errors raised
inside a direction reach the caller; opcheck; gradients (reference math) if asked; and the
modules use it exactly for bidirectional layers no gradient can flow through."""

from __future__ import annotations

import pytest
import torch

import rnnkernels
from rnnkernels import _bidirectional, _ops

from test_inference import _RecordOps, _float32_args
from test_opcheck import CASES, _forward_args

pytestmark = pytest.mark.skipif(not rnnkernels.backend_info()["compiled"]["cpp"],
                                reason="the C++ extension is not built")

CASE_IDS = [f"{c[0]}-proj{int(c[1])}-packed{int(bool(c[2]))}" for c in CASES]


def _both(make_args) -> tuple:
    """Two directions' arguments from a forward-args maker: (x, batch_sizes, ahead, back)."""
    x, batch_sizes, *ahead, _ = make_args(False)
    back = make_args(True)[2:9]
    return x, batch_sizes, tuple(ahead), tuple(back)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_two_inference_calls(case, threads) -> None:
    cell, projects, batch_sizes = case
    torch.manual_seed(0)
    x, sizes, ahead, back = _both(lambda rev: _float32_args(cell, projects, batch_sizes, rev))
    with torch.no_grad():
        got = _bidirectional.bidirectional_op(cell)(x, sizes, *ahead, *back)
        want = (*_ops.inference_op(cell)(x, sizes, *ahead, False),
                *_ops.inference_op(cell)(x, sizes, *back, True))
    # One thread per direction runs the same tile per hidden block; only the input
    # projection's GEMM may split its work differently.
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_opcheck(case) -> None:
    cell, projects, batch_sizes = case
    x, sizes, ahead, back = _both(lambda rev: _forward_args(cell, projects, batch_sizes,
                                                            reverse=rev))
    torch.library.opcheck(_bidirectional.bidirectional_op(cell), (x, sizes, *ahead, *back))


@pytest.mark.parametrize("cell", _ops.CELLS)
def test_gradient_through_the_op(cell) -> None:
    x, sizes, ahead, back = _both(lambda rev: _forward_args(cell, False, [3, 2, 2, 1],
                                                            reverse=rev))
    tensors = [t for t in (x, *ahead, *back) if t is not None]

    def run(*values):
        it = iter(values)
        x_, *rest = [None if t is None else next(it) for t in (x, *ahead, *back)]
        outputs = _bidirectional.bidirectional_op(cell)(x_, sizes, *rest)
        return tuple(t for t in outputs if t.numel() > 0)

    assert torch.autograd.gradcheck(run, tensors)


def test_an_error_in_one_direction_reaches_the_caller(threads) -> None:
    x, sizes, ahead, back = _both(lambda rev: _float32_args("lstm", False, [], rev))
    bad_back = (back[0], back[1], back[2], back[3][:, :-1], *back[4:])
    with pytest.raises(RuntimeError, match="w_hh must have shape"):
        with torch.no_grad():
            _bidirectional.bidirectional_op("lstm")(x, sizes, *ahead, *bad_back)


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_modules_use_it_for_bidirectional_inference_only(name) -> None:
    model = getattr(rnnkernels, f"Fused{name}")(8, 16, num_layers=2, bidirectional=True,
                                               backend="cpp")
    op = {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn_tanh"}[name]
    x = torch.randn(5, 3, 8)

    def ops_called() -> set[str]:
        with _RecordOps() as recorder:
            model(x)
        return {n for n in recorder.names if n.startswith("rnnkernels.")}

    with torch.no_grad():
        assert ops_called() == {f"rnnkernels.{op}_bidirectional_inference"}
    assert ops_called() == {f"rnnkernels.{op}_layer_forward"}
