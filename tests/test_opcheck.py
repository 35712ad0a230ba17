"""torch.library.opcheck for every registered op: schema, fake kernel, autograd
registration and AOT dispatch (what torch.compile relies on)."""

from __future__ import annotations

import pytest
import torch

import rnnkernels
from conftest import (OP_CASES, cell_op_backward_args, cell_op_forward_args,
                      op_backward_args, op_case_id, op_forward_args)
from rnnkernels import _ops

pytestmark = pytest.mark.skipif(not rnnkernels.backend_info()["compiled"]["cpp"],
                                reason="the C++ extension is not built")

@pytest.mark.parametrize("op_of", [_ops.forward_op, _ops.inference_op],
                         ids=["forward", "inference"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("case", OP_CASES, ids=op_case_id)
def test_forward_op(case, reverse, op_of) -> None:
    cell, projects, batch_sizes = case
    torch.library.opcheck(op_of(cell),
                          op_forward_args(cell, projects, batch_sizes, reverse=reverse))


@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.parametrize("case", OP_CASES, ids=op_case_id)
def test_backward_op(case, input_grad) -> None:
    cell, projects, batch_sizes = case
    args = op_backward_args(cell, op_forward_args(cell, projects, batch_sizes))
    torch.library.opcheck(_ops.backward_op(cell), args, {"input_grad": input_grad})


@pytest.mark.parametrize("case", OP_CASES, ids=op_case_id)
def test_backward_op_without_input_grad(case) -> None:
    """input_grad=False skips x's gradient (empty) and leaves the others as they were."""
    cell, projects, batch_sizes = case
    args = op_backward_args(cell, op_forward_args(cell, projects, batch_sizes))
    full = _ops.backward_op(cell)(*args)
    partial = _ops.backward_op(cell)(*args, input_grad=False)
    assert full[0].shape == args[3].shape and partial[0].shape == (0,)
    for got, want in zip(partial[1:], full[1:], strict=True):
        assert torch.equal(got, want)


def test_fused_backward_matches_reference() -> None:
    """The fused backward op (first order) against autograd through the reference math."""
    for cell, projects, batch_sizes in OP_CASES:
        for reverse in (False, True):
            args = op_forward_args(cell, projects, batch_sizes, reverse=reverse)
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            fused = _ops.fused_layer(cell, *args)
            expected = rnnkernels.reference.layer(cell, *args)
            grads = [torch.randn_like(t) for t in fused if t is not None]
            got = torch.autograd.grad([t for t in fused if t is not None], tensors, grads)
            want = torch.autograd.grad([t for t in expected if t is not None], tensors, grads)
            for g, w in zip(got, want, strict=True):
                torch.testing.assert_close(g, w, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cell", _ops.CELLS)
def test_cell_ops(cell, bias) -> None:
    args = cell_op_forward_args(cell, bias=bias)
    torch.library.opcheck(_ops.cell_forward_op(cell), args)
    torch.library.opcheck(_ops.cell_backward_op(cell), cell_op_backward_args(cell, args))


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("cell", _ops.CELLS)
def test_cell_inference_op(cell, batched) -> None:
    """The op the cells' inference steps run; its gradient (should one be asked for) comes
    from the reference math."""
    args = cell_op_forward_args(cell)
    if not batched:  # x [I] with h, c [H]
        args = tuple(t[0] if i < 3 and t is not None else t for i, t in enumerate(args))
    torch.library.opcheck(_ops.cell_inference_op(cell), args)


@pytest.mark.parametrize("cell", _ops.CELLS)
def test_cell_op_gradcheck_and_gradgradcheck(cell) -> None:
    args = cell_op_forward_args(cell)
    tensors = [a for a in args if a is not None]

    def run(*values):
        it = iter(values)
        full = [None if a is None else next(it) for a in args]
        return tuple(t for t in _ops.fused_cell(cell, *full) if t is not None)

    assert torch.autograd.gradcheck(run, tensors, check_batched_grad=True)
    assert torch.autograd.gradgradcheck(run, tensors, check_batched_grad=True)
