"""The rowwise layer ops (csrc/rowwise_ops.cpp): the layer-normalised LSTM and GRU, and the
LSTM and GRU with zoneout. Python-side registrations (fake kernels, autograd) and the call.

``rnnkernels::<cell>_rowwise_forward`` (and ``_rowwise_inference``, which keeps nothing for
backward) takes a layer's usual operands, then the cell's layer-norm weights
(``ln_ih_weight``, ``ln_hh_weight`` and, for the LSTM, ``ln_cell_weight`` and
``ln_cell_bias``; all None for the plain cell) and a zoneout mask (None: no zoneout), and
returns (output, h_n, c_n) and what ``<cell>_rowwise_backward`` reads. As for the other
layer ops (_ops.py), a backward asked for with a graph (double backward, torch.func) and
forward mode come from the reference math.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from . import _autograd, reference
from ._cells import GATES, HAS_CELL_STATE, SAVED
from ._cells import ROWWISE_CELLS as CELLS
from ._ops import _reference_gradients, _reference_jvp, fake_inference_of, wants_grad
# How many tensors the forward returns besides (output, h_n, c_n): what backward reads.
_KEPT = 8
# The layer-norm weights of a layer-normalised cell, in the ops' order: the cell-state pair
# only for a cell with a cell state (LayerNormLSTM).
PROJECTION_NORMS = ("ln_ih_weight", "ln_hh_weight")
CELL_STATE_NORMS = ("ln_cell_weight", "ln_cell_bias")


def forward_op(cell: str) -> Any:
    return getattr(torch.ops.rnnkernels, f"{cell}_rowwise_forward").default


def inference_op(cell: str) -> Any:
    return getattr(torch.ops.rnnkernels, f"{cell}_rowwise_inference").default


def backward_op(cell: str) -> Any:
    return getattr(torch.ops.rnnkernels, f"{cell}_rowwise_backward").default


def _norm_slots(cell: str, norm_weights: Sequence[Tensor]) -> list[Tensor | None]:
    """The four layer-norm operands of the ops from a cell's (possibly empty) list."""
    wanted = len(PROJECTION_NORMS) + (len(CELL_STATE_NORMS) if HAS_CELL_STATE[cell] else 0)
    if norm_weights and len(norm_weights) != wanted:
        raise ValueError(f"rnnkernels: a layer-normalised {cell} takes {wanted} layer-norm "
                         f"weights, got {len(norm_weights)}")
    slots: list[Tensor | None] = list(norm_weights)
    return slots + [None] * (4 - len(slots))


def _make_fake_forward(cell: str) -> Callable:
    def fake(x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, ln_ih, ln_hh, ln_cell_w, ln_cell_b,
             zoneout, reverse):
        hidden = w_hh.shape[0] // GATES[cell]
        gh = w_hh.shape[0]
        lead = x.shape[:-1]
        rows = x.shape[:-1].numel()
        normed = ln_ih is not None
        has_c = c0 is not None
        return (
            x.new_empty(*lead, hidden),
            h0.new_empty(h0.shape),
            c0.new_empty(c0.shape) if has_c else x.new_empty(0),
            x.new_empty(*lead, SAVED[cell] * hidden),
            x.new_empty(*lead, hidden),
            x.new_empty(*lead, hidden) if has_c else x.new_empty(0),
            x.new_empty(rows, gh) if normed else x.new_empty(0),
            x.new_empty(rows, 2) if normed else x.new_empty(0),
            x.new_empty(rows, gh) if normed else x.new_empty(0),
            x.new_empty(rows, hidden) if normed and has_c else x.new_empty(0),
            x.new_empty(rows, 2) if normed else x.new_empty(0),
        )

    return fake


def _fake_backward(grad_output, grad_h_n, grad_c_n, x, batch_sizes, w_ih, w_hh, has_bias, ln_ih,
                   ln_hh, ln_cell_w, ln_cell_b, zoneout, saved, h_prev, c_prev, xg_raw, x_stats,
                   h_hat, c_hat, h_stats, reverse, *, input_grad=True):
    bias_shape = (w_hh.shape[0],) if has_bias else (0,)

    def like(t: Tensor | None) -> Tensor:
        return x.new_empty(0) if t is None else t.new_empty(t.shape)

    return (x.new_empty(x.shape if input_grad else (0,)), like(grad_h_n), like(grad_c_n),
            like(w_ih), like(w_hh), x.new_empty(bias_shape), x.new_empty(bias_shape),
            like(ln_ih), like(ln_hh), like(ln_cell_w), like(ln_cell_b))


# The forward's tensor inputs, in order: x, h0, c0, w_ih, w_hh, b_ih, b_hh, the four
# layer-norm weights, the zoneout mask.
def _tensor_inputs(inputs: tuple) -> list:
    x, _batch_sizes, *rest, _reverse = inputs
    return [x, *rest]


def _setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
    tensors = _tensor_inputs(inputs)
    ctx.save_for_backward(*tensors, *output[3:])
    ctx.save_for_forward(*tensors)
    ctx.mark_non_differentiable(*output[3:], *([output[2]] if inputs[3] is None else []))
    ctx.batch_sizes = list(inputs[1])
    ctx.reverse = inputs[-1]


def _inference_setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
    tensors = _tensor_inputs(inputs)
    ctx.save_for_backward(*tensors)
    ctx.save_for_forward(*tensors)
    if inputs[3] is None:
        ctx.mark_non_differentiable(output[2])
    ctx.batch_sizes = list(inputs[1])
    ctx.reverse = inputs[-1]


# The differentiable ones among them: all but the mask.
_DIFFERENTIABLE = 11


def _reference_rowwise(cell: str, ctx: Any) -> Callable:
    """The layer's reference math over its differentiable inputs, with the zoneout mask
    (saved last of the inputs; it gets no gradient) and ctx's non-tensor ones."""
    mask = ctx.saved_tensors[_DIFFERENTIABLE]

    def run(x, h0, c0, w_ih, w_hh, b_ih, b_hh, ln_ih, ln_hh, ln_cell_w, ln_cell_b):
        norms = [w for w in (ln_ih, ln_hh, ln_cell_w, ln_cell_b) if w is not None]
        return reference.layer(cell, x, ctx.batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, None,
                               ctx.reverse, norm_weights=norms, zoneout=mask)

    return run


def _op_gradients(grads: list) -> tuple:
    """Gradients of the tensor inputs laid out as the forward op's arguments: None for
    batch_sizes, the mask and reverse."""
    grad_x, *rest = grads
    return (grad_x, None, *rest[:-1], None, None)


def _make_backward(cell: str) -> Callable:
    def backward(ctx: Any, grad_output, grad_h_n, grad_c_n, *_kept_grads):
        saved = ctx.saved_tensors
        inputs, kept = list(saved[:_DIFFERENTIABLE + 1]), saved[_DIFFERENTIABLE + 1:]
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, ln_ih, ln_hh, ln_cell_w, ln_cell_b, zoneout = inputs
        if torch.is_grad_enabled():
            grads = _reference_gradients(_reference_rowwise(cell, ctx),
                                         inputs[:_DIFFERENTIABLE],
                                         [grad_output, grad_h_n, grad_c_n])
            return _op_gradients(grads + [None])
        grad_output = grad_output if grad_output is not None else torch.zeros_like(kept[1])
        grad_h_n = grad_h_n if grad_h_n is not None else torch.zeros_like(h0)
        if c0 is not None and grad_c_n is None:
            grad_c_n = torch.zeros_like(c0)
        input_grad = ctx.needs_input_grad[0]
        grads = backward_op(cell)(
            grad_output, grad_h_n, grad_c_n if c0 is not None else None, x, ctx.batch_sizes,
            w_ih, w_hh, b_ih is not None, ln_ih, ln_hh, ln_cell_w, ln_cell_b, zoneout, *kept,
            ctx.reverse, input_grad=input_grad)
        grads = [None if t is None else g
                 for t, g in zip(inputs[:_DIFFERENTIABLE], grads)] + [None]
        grads[0] = grads[0] if input_grad else None
        return _op_gradients(grads)

    return backward


def _make_inference_backward(cell: str) -> Callable:
    """Should a gradient be asked of the inference op after all: the reference math's."""
    def backward(ctx: Any, grad_output, grad_h_n, grad_c_n):
        grads = _reference_gradients(_reference_rowwise(cell, ctx),
                                     list(ctx.saved_tensors[:_DIFFERENTIABLE]),
                                     [grad_output, grad_h_n, grad_c_n])
        return _op_gradients(grads + [None])

    return backward


def _make_jvp(cell: str, outputs_kept: int) -> Callable:
    """Forward mode: tangents of (output, h_n, c_n), None for the ``outputs_kept`` tensors
    the op keeps for backward."""
    def jvp(ctx: Any, x_t, _batch_sizes, *tangents):
        tensor_tangents = [x_t, *tangents[:_DIFFERENTIABLE - 1]]
        output_t, h_n_t, c_n_t = _reference_jvp(_reference_rowwise(cell, ctx),
                                                list(ctx.saved_tensors[:_DIFFERENTIABLE]),
                                                tensor_tangents)
        return (output_t, h_n_t, c_n_t, *[None] * outputs_kept)

    return jvp


def register_all() -> None:
    for cell in CELLS:
        forward, backward = forward_op(cell), backward_op(cell)
        torch.library.register_fake(forward)(_make_fake_forward(cell))
        torch.library.register_fake(backward)(_fake_backward)
        _autograd.register(forward, _setup_context, _make_backward(cell), _make_jvp(cell, _KEPT))
        inference = inference_op(cell)
        torch.library.register_fake(inference)(fake_inference_of(_make_fake_forward(cell)))
        _autograd.register(inference, _inference_setup_context, _make_inference_backward(cell),
                           _make_jvp(cell, 0))


def fused_rowwise_layer(cell: str, x: Tensor, batch_sizes: list[int], h0: Tensor,
                        c0: Tensor | None, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                        b_hh: Tensor | None, w_hr: Tensor | None, reverse: bool,
                        norm_weights: Sequence[Tensor] = (),
                        zoneout: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
    """One layer and direction on the rowwise ops; the contract of reference.layer. Calls
    no gradient can flow through run the inference op, which keeps nothing for backward."""
    if w_hr is not None:
        raise ValueError("rnnkernels: layer norms and zoneout do not take an LSTM projection")
    norms = _norm_slots(cell, norm_weights)
    args = (x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, *norms, zoneout, reverse)
    if wants_grad(x, h0, c0, w_ih, w_hh, b_ih, b_hh, *norms):
        output, h_n, c_n, *_ = forward_op(cell)(*args)
    else:
        output, h_n, c_n = _autograd.call_inference(inference_op(cell), *args)
    return output, h_n, (c_n if c0 is not None else None)
