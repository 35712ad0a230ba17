"""Both directions of a bidirectional layer in one call, for inference:
``rnnkernels::<cell>_bidirectional_inference`` runs the two directions at once (on the CPU
each on its own thread, csrc/directions.h). Its arguments are x, batch_sizes and then each
direction's (h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr); it returns each direction's (output,
h_n, c_n). Training keeps two calls of the layer op, whose autograd saves for backward;
a gradient asked of this op directly comes from the reference math, as for the
inference op (_ops.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from . import _autograd, _ops, reference

# One direction's arguments after x and batch_sizes: h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr.
DirectionArgs = tuple[Tensor, Tensor | None, Tensor, Tensor, Tensor | None, Tensor | None,
                      Tensor | None]
_PER_DIRECTION = 7


def bidirectional_op(cell: str) -> Any:
    return getattr(torch.ops.rnnkernels, f"{cell}_bidirectional_inference").default


def _make_fake(cell: str) -> Callable:
    fake_forward = _ops._make_fake_forward(cell)

    def fake(x, batch_sizes, *directions):
        ahead = fake_forward(x, batch_sizes, *directions[:_PER_DIRECTION], False)[:3]
        back = fake_forward(x, batch_sizes, *directions[_PER_DIRECTION:], True)[:3]
        return (*ahead, *back)

    return fake


def _setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
    x, batch_sizes, *directions = inputs
    ctx.save_for_backward(x, *directions)
    ctx.save_for_forward(x, *directions)
    without_cell_state = [output[2 + 3 * d] for d in range(2)
                          if directions[1 + _PER_DIRECTION * d] is None]
    ctx.mark_non_differentiable(*without_cell_state)
    ctx.batch_sizes = list(batch_sizes)


def _reference(cell: str, ctx: Any) -> Callable:
    """Both directions' reference math over the op's tensor inputs."""
    def run(x, *directions):
        ahead = reference.layer(cell, x, ctx.batch_sizes, *directions[:_PER_DIRECTION], False)
        back = reference.layer(cell, x, ctx.batch_sizes, *directions[_PER_DIRECTION:], True)
        return (*ahead, *back)

    return run


def _make_backward(cell: str) -> Callable:
    def backward(ctx: Any, *grads):
        grad_x, *rest = _ops._reference_gradients(_reference(cell, ctx),
                                                  list(ctx.saved_tensors), list(grads))
        return (grad_x, None, *rest)

    return backward


def _make_jvp(cell: str) -> Callable:
    def jvp(ctx: Any, x_t, _batch_sizes, *direction_tangents):
        return tuple(_ops._reference_jvp(_reference(cell, ctx), list(ctx.saved_tensors),
                                         [x_t, *direction_tangents]))

    return jvp


def register_all() -> None:
    for cell in _ops.CELLS:
        op = bidirectional_op(cell)
        torch.library.register_fake(op)(_make_fake(cell))
        _autograd.register(op, _setup_context, _make_backward(cell), _make_jvp(cell))
        torch.library.register_vmap(op, _ops._vmap_by_loop(op))


def fused_both_directions(cell: str, x: Tensor, batch_sizes: list[int], ahead: DirectionArgs,
                          back: DirectionArgs) -> list[tuple[Tensor, Tensor, Tensor | None]]:
    """(output, h_n, c_n) of the forward (``ahead``) and the reverse (``back``) direction on
    the fused kernels: one call when no gradient can flow, else a training call each."""
    if _ops.wants_grad(x, *ahead, *back):
        return [_ops.fused_layer(cell, x, batch_sizes, *args, reverse)
                for args, reverse in ((ahead, False), (back, True))]
    results = bidirectional_op(cell)(x, batch_sizes, *ahead, *back)
    return [(output, h_n, c_n if args[1] is not None else None)
            for (output, h_n, c_n), args in ((results[:3], ahead), (results[3:], back))]
