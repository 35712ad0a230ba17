"""Both directions of a bidirectional layer in one call: the ops
``rnnkernels::<cell>_bidirectional_forward``, ``_inference`` and ``_backward`` run the two
directions at once (on the CPU each on its own thread, csrc/directions.h). The forward and
inference ops take x, batch_sizes and then each direction's (h0, c0, w_ih, w_hh, b_ih,
b_hh, w_hr); they return each direction's outputs of the layer's forward op (output, h_n,
c_n and what backward keeps) or inference op (output, h_n, c_n). The backward op is the
forward op's first-order backward; as for the layer ops (_ops.py), a graph of the
backward, forward mode and any gradient of the inference op come from the reference math.
"""

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
_FORWARD_OUTPUTS = 7  # per direction: output, h_n, c_n, saved, h_prev, c_prev, r_seq
_INFERENCE_OUTPUTS = 3  # per direction: output, h_n, c_n


def forward_op(cell: str) -> Any:
    return _ops.library_op(cell, "bidirectional_forward")


def inference_op(cell: str) -> Any:
    return _ops.library_op(cell, "bidirectional_inference")


def backward_op(cell: str) -> Any:
    return _ops.library_op(cell, "bidirectional_backward")


def _make_fake(cell: str, outputs: int) -> Callable:
    """Fake kernel of the forward (7 outputs per direction) or inference (3) op."""
    fake_forward = _ops._make_fake_forward(cell)

    def fake(x, batch_sizes, *directions):
        ahead = fake_forward(x, batch_sizes, *directions[:_PER_DIRECTION], False)[:outputs]
        back = fake_forward(x, batch_sizes, *directions[_PER_DIRECTION:], True)[:outputs]
        return (*ahead, *back)

    return fake


def _fake_backward(x, batch_sizes, has_bias, *directions, input_grad=True):
    """Per direction the layer backward's fake results; one input gradient for both."""
    per = len(directions) // 2
    results = []
    for d in range(2):
        grad_output, grad_h_n, grad_c_n, w_ih, w_hh, w_hr, *kept = directions[d * per:(d + 1) * per]
        results.append(_ops._fake_backward(grad_output, grad_h_n, grad_c_n, x, batch_sizes, w_ih,
                                           w_hh, has_bias, w_hr, *kept, d == 1,
                                           input_grad=input_grad))
    return (results[0][0], *results[0][1:], *results[1][1:])


def _setup_context(outputs: int) -> Callable:
    """What the forward (``outputs`` = 7 per direction) or inference (3) op's backward needs:
    the inputs, and the forward op's kept tensors (not differentiable)."""
    def setup(ctx: Any, inputs: tuple, output: tuple) -> None:
        x, batch_sizes, *directions = inputs
        kept = [t for d in range(2) for t in output[d * outputs + 3:(d + 1) * outputs]]
        ctx.save_for_backward(x, *directions, *kept)
        ctx.save_for_forward(x, *directions)
        without_cell_state = [output[d * outputs + 2] for d in range(2)
                              if directions[1 + _PER_DIRECTION * d] is None]
        ctx.mark_non_differentiable(*kept, *without_cell_state)
        ctx.batch_sizes = list(batch_sizes)

    return setup


def _reference(cell: str, ctx: Any) -> Callable:
    """Both directions' reference math over the ops' tensor inputs."""
    def run(x, *directions):
        ahead = reference.layer(cell, x, ctx.batch_sizes, *directions[:_PER_DIRECTION], False)
        back = reference.layer(cell, x, ctx.batch_sizes, *directions[_PER_DIRECTION:], True)
        return (*ahead, *back)

    return run


def _output_grads(grads: tuple, outputs: int) -> list:
    """Gradients of each direction's (output, h_n, c_n) out of all the op's output gradients."""
    return [g for d in range(2) for g in grads[d * outputs:d * outputs + 3]]


def _reference_backward(cell: str, ctx: Any, grads: list) -> tuple:
    inputs = list(ctx.saved_tensors[:1 + 2 * _PER_DIRECTION])
    grad_x, *rest = _ops._reference_gradients(_reference(cell, ctx), inputs, grads)
    return (grad_x, None, *rest)


def _make_inference_backward(cell: str) -> Callable:
    def backward(ctx: Any, *grads):
        return _reference_backward(cell, ctx, _output_grads(grads, _INFERENCE_OUTPUTS))

    return backward


def _make_forward_backward(cell: str) -> Callable:
    def backward(ctx: Any, *grads):
        grads = _output_grads(grads, _FORWARD_OUTPUTS)
        if torch.is_grad_enabled():
            return _reference_backward(cell, ctx, grads)
        x, *rest = ctx.saved_tensors
        directions, kept = rest[:2 * _PER_DIRECTION], rest[2 * _PER_DIRECTION:]
        args = []
        for d in range(2):
            h0, c0, w_ih, w_hh, b_ih, _b_hh, w_hr = directions[d * _PER_DIRECTION:
                                                              (d + 1) * _PER_DIRECTION]
            grad_output, grad_h_n, grad_c_n = grads[3 * d:3 * d + 3]
            saved, h_prev, c_prev, r_seq = kept[4 * d:4 * d + 4]
            args += [torch.zeros_like(h_prev) if grad_output is None else grad_output,
                     torch.zeros_like(h0) if grad_h_n is None else grad_h_n,
                     None if c0 is None else torch.zeros_like(c0) if grad_c_n is None
                     else grad_c_n,
                     w_ih, w_hh, w_hr, saved, h_prev, c_prev, r_seq]
        has_bias = directions[4] is not None
        input_grad = ctx.needs_input_grad[0]
        grad_x, *rest = backward_op(cell)(x, ctx.batch_sizes, has_bias, *args,
                                          input_grad=input_grad)
        return (grad_x if input_grad else None, None,
                *[None if t is None else g for t, g in zip(directions, rest)])

    return backward


def _make_jvp(cell: str, outputs: int) -> Callable:
    """Forward mode: tangents of each direction's (output, h_n, c_n), None for kept tensors."""
    def jvp(ctx: Any, x_t, _batch_sizes, *direction_tangents):
        tangents = _ops._reference_jvp(_reference(cell, ctx),
                                       list(ctx.saved_tensors[:1 + 2 * _PER_DIRECTION]),
                                       [x_t, *direction_tangents])
        kept = [None] * (outputs - 3)
        return (*tangents[:3], *kept, *tangents[3:], *kept)

    return jvp


def register_all() -> None:
    for cell in _ops.CELLS:
        for op, outputs, backward in (
                (forward_op(cell), _FORWARD_OUTPUTS, _make_forward_backward(cell)),
                (inference_op(cell), _INFERENCE_OUTPUTS, _make_inference_backward(cell))):
            torch.library.register_fake(op)(_make_fake(cell, outputs))
            _autograd.register(op, _setup_context(outputs), backward, _make_jvp(cell, outputs))
            torch.library.register_vmap(op, _ops._vmap_by_loop(op))
        torch.library.register_fake(backward_op(cell))(_fake_backward)
        torch.library.register_vmap(backward_op(cell), _ops._vmap_by_loop(backward_op(cell)))


def fused_both_directions(cell: str, x: Tensor, batch_sizes: list[int], ahead: DirectionArgs,
                          back: DirectionArgs) -> list[tuple[Tensor, Tensor, Tensor | None]]:
    """(output, h_n, c_n) of the forward (``ahead``) and the reverse (``back``) direction on
    the fused kernels, in one call: the forward op, whose autograd keeps what backward
    needs, where a gradient can flow, else the inference op."""
    if _ops.wants_grad(x, *ahead, *back):
        outputs = _FORWARD_OUTPUTS
        results = forward_op(cell)(x, batch_sizes, *ahead, *back)
    else:
        outputs = _INFERENCE_OUTPUTS
        results = _autograd.call_inference(inference_op(cell), x, batch_sizes, *ahead, *back)
    return [(output, h_n, c_n if args[1] is not None else None)
            for (output, h_n, c_n), args in ((results[:3], ahead),
                                             (results[outputs:outputs + 3], back))]
