"""torch.library.opcheck for every registered op: schema, fake kernel, autograd
registration and AOT dispatch (what torch.compile relies on)."""

from __future__ import annotations

import pytest
import torch

import rnnkernels
from rnnkernels import _ops

pytestmark = pytest.mark.skipif(not rnnkernels.backend_info()["compiled"]["cpp"],
                                reason="the C++ extension is not built")

CASES = [  # (cell, with projection, packed batch sizes or [] for padded)
    ("lstm", False, []),
    ("lstm", True, []),
    ("lstm", False, [3, 2, 2, 1]),
    ("gru", False, []),
    ("gru", False, [3, 2, 2, 1]),
    ("rnn_tanh", False, []),
    ("rnn_relu", False, [3, 2, 2, 1]),
]


def _forward_args(cell: str, projects: bool, batch_sizes: list[int], device: str = "cpu",
                  dtype: torch.dtype = torch.float64, reverse: bool = False) -> tuple:
    hidden, inputs, proj = 4, 3, 2
    out_size = proj if projects else hidden
    gates = _ops.GATES[cell] * hidden

    def make(*shape):
        return torch.randn(*shape, dtype=dtype, device=device, requires_grad=True)

    x = make(sum(batch_sizes), inputs) if batch_sizes else make(4, 3, inputs)
    batch = batch_sizes[0] if batch_sizes else 3
    c0 = make(batch, hidden) if cell == "lstm" else None
    w_hr = make(proj, hidden) if projects else None
    return (x, batch_sizes, make(batch, out_size), c0, make(gates, inputs), make(gates, out_size),
            make(gates), make(gates), w_hr, reverse)


def _backward_args(cell: str, forward_args: tuple) -> tuple:
    x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse = forward_args
    with torch.no_grad():
        output, h_n, c_n, saved, h_prev, c_prev, r_seq = _ops.forward_op(cell)(*forward_args)
    grad_c_n = torch.randn_like(c_n) if cell == "lstm" else None
    return (torch.randn_like(output), torch.randn_like(h_n), grad_c_n, x.detach(), batch_sizes,
            w_ih.detach(), w_hh.detach(), True, None if w_hr is None else w_hr.detach(), saved,
            h_prev, c_prev, r_seq, reverse)


@pytest.mark.parametrize("op_of", [_ops.forward_op, _ops.inference_op],
                         ids=["forward", "inference"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-proj{int(c[1])}-packed{int(bool(c[2]))}")
def test_forward_op(case, reverse, op_of) -> None:
    cell, projects, batch_sizes = case
    torch.library.opcheck(op_of(cell), _forward_args(cell, projects, batch_sizes, reverse=reverse))


@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-proj{int(c[1])}-packed{int(bool(c[2]))}")
def test_backward_op(case, input_grad) -> None:
    cell, projects, batch_sizes = case
    args = _backward_args(cell, _forward_args(cell, projects, batch_sizes))
    torch.library.opcheck(_ops.backward_op(cell), args, {"input_grad": input_grad})


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-proj{int(c[1])}-packed{int(bool(c[2]))}")
def test_backward_op_without_input_grad(case) -> None:
    """input_grad=False skips x's gradient (empty) and leaves the others as they were."""
    cell, projects, batch_sizes = case
    args = _backward_args(cell, _forward_args(cell, projects, batch_sizes))
    full = _ops.backward_op(cell)(*args)
    partial = _ops.backward_op(cell)(*args, input_grad=False)
    assert full[0].shape == args[3].shape and partial[0].shape == (0,)
    for got, want in zip(partial[1:], full[1:], strict=True):
        assert torch.equal(got, want)


def test_fused_backward_matches_reference() -> None:
    """The fused backward op (first order) against autograd through the reference math."""
    for cell, projects, batch_sizes in CASES:
        for reverse in (False, True):
            args = _forward_args(cell, projects, batch_sizes, reverse=reverse)
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            fused = _ops.fused_layer(cell, *args)
            expected = rnnkernels.reference.layer(cell, *args)
            grads = [torch.randn_like(t) for t in fused if t is not None]
            got = torch.autograd.grad([t for t in fused if t is not None], tensors, grads)
            want = torch.autograd.grad([t for t in expected if t is not None], tensors, grads)
            for g, w in zip(got, want, strict=True):
                torch.testing.assert_close(g, w, atol=1e-10, rtol=1e-10)


def _cell_forward_args(cell: str, device: str = "cpu", bias: bool = True) -> tuple:
    hidden, inputs = 4, 3
    gates = _ops.GATES[cell] * hidden

    def make(*shape):
        return torch.randn(*shape, dtype=torch.float64, device=device, requires_grad=True)

    c = make(2, hidden) if cell == "lstm" else None
    return (make(2, inputs), make(2, hidden), c, make(gates, inputs), make(gates, hidden),
            make(gates) if bias else None, make(gates) if bias else None)


def _cell_backward_args(cell: str, forward_args: tuple) -> tuple:
    x, h, c, w_ih, w_hh, b_ih, b_hh = forward_args
    with torch.no_grad():
        h_new, c_new, saved, c_prev = _ops.cell_forward_op(cell)(*forward_args)
    return (torch.randn_like(h_new), torch.randn_like(c_new) if cell == "lstm" else None,
            x.detach(), h.detach(), w_ih.detach(), w_hh.detach(), b_ih is not None, saved, c_prev)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cell", _ops.CELLS)
def test_cell_ops(cell, bias) -> None:
    args = _cell_forward_args(cell, bias=bias)
    torch.library.opcheck(_ops.cell_forward_op(cell), args)
    torch.library.opcheck(_ops.cell_backward_op(cell), _cell_backward_args(cell, args))


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("cell", _ops.CELLS)
def test_cell_inference_op(cell, batched) -> None:
    """The op the cells' inference steps run; its gradient (should one be asked for) comes
    from the reference math."""
    args = _cell_forward_args(cell)
    if not batched:  # x [I] with h, c [H]
        args = tuple(t[0] if i < 3 and t is not None else t for i, t in enumerate(args))
    torch.library.opcheck(_ops.cell_inference_op(cell), args)


@pytest.mark.parametrize("cell", _ops.CELLS)
def test_cell_op_gradcheck_and_gradgradcheck(cell) -> None:
    args = _cell_forward_args(cell)
    tensors = [a for a in args if a is not None]

    def run(*values):
        it = iter(values)
        full = [None if a is None else next(it) for a in args]
        return tuple(t for t in _ops.fused_cell(cell, *full) if t is not None)

    assert torch.autograd.gradcheck(run, tensors, check_batched_grad=True)
    assert torch.autograd.gradgradcheck(run, tensors, check_batched_grad=True)
