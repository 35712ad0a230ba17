"""Python-side registrations for the C++ ops: fake (shape) kernels for torch.compile,
autograd, and a vmap rule.

Each cell has ``rnnkernels::<cell>_layer_forward`` / ``<cell>_layer_backward`` (a layer
over a sequence), ``<cell>_layer_inference`` (the forward without what backward needs, for
calls no gradient flows through) and ``<cell>_cell_forward`` / ``<cell>_cell_inference`` /
``<cell>_cell_backward`` (one step, for the *Cell modules), with schemas shared by all
cells (see csrc/ops.cpp).
Should a gradient be asked of the inference op after all, it comes from the reference
math (correct, not fast); ``fused_layer`` picks it only when none can be. The first-order
backward runs the fused backward op; when a graph of the backward is wanted
(``create_graph=True``, or any torch.func grad level), the gradient comes from
differentiating the reference implementation instead, so double backward works; forward
mode (jvp) also runs the reference math. The autograd kernels are registered by
``_autograd.register`` so that torch.func can enter them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor
from torch.autograd import forward_ad

from . import _autograd, _backend, reference
from ._cells import CELLS, GATES, HAS_CELL_STATE, SAVED


def library_op(cell: str, kind: str) -> Any:
    """The op ``rnnkernels::<cell>_<kind>`` (its default overload)."""
    return getattr(torch.ops.rnnkernels, f"{cell}_{kind}").default


def forward_op(cell: str) -> Any:
    return library_op(cell, "layer_forward")


def inference_op(cell: str) -> Any:
    return library_op(cell, "layer_inference")


def backward_op(cell: str) -> Any:
    return library_op(cell, "layer_backward")


def cell_forward_op(cell: str) -> Any:
    return library_op(cell, "cell_forward")


def cell_inference_op(cell: str) -> Any:
    return library_op(cell, "cell_inference")


def cell_backward_op(cell: str) -> Any:
    return library_op(cell, "cell_backward")


def _kept_dtype(x: Tensor) -> torch.dtype:
    """The dtype of the gate values and cell states a forward keeps for backward: float32
    where the CPU's bf16 kernels run (csrc/bf16_layer.h), else x's."""
    bf16_kernels = (x.device.type == "cpu" and x.dtype == torch.bfloat16
                    and _backend.cpu_bf16_isa() is not None)
    return torch.float32 if bf16_kernels else x.dtype


def _make_fake_forward(cell: str) -> Callable:
    def fake(x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse):
        hidden = w_hh.shape[0] // GATES[cell]
        out_size = w_hr.shape[0] if w_hr is not None else hidden
        lead = x.shape[:-1]
        kept = _kept_dtype(x)
        return (
            x.new_empty(*lead, out_size),
            h0.new_empty(h0.shape),
            c0.new_empty(c0.shape) if c0 is not None else x.new_empty(0),
            x.new_empty(*lead, SAVED[cell] * hidden, dtype=kept),
            x.new_empty(*lead, out_size),
            x.new_empty(*lead, hidden, dtype=kept) if HAS_CELL_STATE[cell] else x.new_empty(0),
            x.new_empty(*lead, hidden) if w_hr is not None else x.new_empty(0),
        )

    return fake


def fake_inference_of(fake_forward: Callable) -> Callable:
    """The fake kernel of an inference op from its forward op's: (output, h_n, c_n) only."""
    def fake(*args):
        return fake_forward(*args)[:3]

    return fake


def _fake_backward(grad_output, grad_h_n, grad_c_n, x, batch_sizes, w_ih, w_hh, has_bias, w_hr,
                   saved, h_prev, c_prev, r_seq, reverse, *, input_grad=True):
    bias_shape = (w_hh.shape[0],) if has_bias else (0,)
    return (
        x.new_empty(x.shape if input_grad else (0,)),
        grad_h_n.new_empty(grad_h_n.shape),
        grad_c_n.new_empty(grad_c_n.shape) if grad_c_n is not None else x.new_empty(0),
        w_ih.new_empty(w_ih.shape),
        w_hh.new_empty(w_hh.shape),
        x.new_empty(bias_shape),
        x.new_empty(bias_shape),
        w_hr.new_empty(w_hr.shape) if w_hr is not None else x.new_empty(0),
    )


def _make_fake_cell_forward(cell: str) -> Callable:
    def fake(x, h, c, w_ih, w_hh, b_ih, b_hh):
        hidden = w_hh.shape[0] // GATES[cell]
        kept = _kept_dtype(x)
        return (h.new_empty(h.shape), c.new_empty(c.shape) if c is not None else x.new_empty(0),
                x.new_empty(x.shape[0], SAVED[cell] * hidden, dtype=kept),
                x.new_empty(x.shape[0], hidden, dtype=kept) if HAS_CELL_STATE[cell]
                else x.new_empty(0))

    return fake


def _fake_cell_inference(x, h, c, w_ih, w_hh, b_ih, b_hh):
    return h.new_empty(h.shape), c.new_empty(c.shape) if c is not None else x.new_empty(0)


def _fake_cell_backward(grad_h, grad_c, x, h, w_ih, w_hh, has_bias, saved, c_prev, *,
                        input_grad=True, hidden_grad=True):
    bias_shape = (w_hh.shape[0],) if has_bias else (0,)
    return (x.new_empty(x.shape if input_grad else (0,)),
            h.new_empty(h.shape if hidden_grad else (0,)),
            grad_c.new_empty(grad_c.shape) if grad_c is not None else x.new_empty(0),
            w_ih.new_empty(w_ih.shape), w_hh.new_empty(w_hh.shape), x.new_empty(bias_shape),
            x.new_empty(bias_shape))


def _setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
    x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse = inputs
    ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, *output[3:])
    ctx.save_for_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    # What the backward kernel saves, and the empty c_n of cells without a cell state.
    ctx.mark_non_differentiable(*output[3:], *([output[2]] if c0 is None else []))
    ctx.batch_sizes = list(batch_sizes)
    ctx.reverse = reverse


def _inference_setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
    x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse = inputs
    ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    ctx.save_for_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    if c0 is None:
        ctx.mark_non_differentiable(output[2])
    ctx.batch_sizes = list(batch_sizes)
    ctx.reverse = reverse


def _reference_gradients(run: Callable, inputs: list, grads: list) -> list:
    """Gradients of run(*inputs) (None for None inputs) from the reference math, by
    torch.func.vjp, which keeps them differentiable at every autograd and torch.func level
    (a plain autograd.grad here loses the graph inside jacrev's vmap over cotangents)."""
    present = [t for t in inputs if t is not None]
    kept: list[bool] = []

    def run_present(*values: Tensor) -> tuple:
        it = iter(values)
        outputs = run(*[None if t is None else next(it) for t in inputs])
        kept[:] = [o is not None for o in outputs]
        return tuple(o for o in outputs if o is not None)

    outputs, vjp_fn = torch.func.vjp(run_present, *present)
    cotangents = [g for g, k in zip(grads, kept) if k]
    found = iter(vjp_fn(tuple(torch.zeros_like(o) if g is None else g
                              for o, g in zip(outputs, cotangents))))
    return [None if t is None else next(found) for t in inputs]


def _reference_jvp(run: Callable, inputs: list, tangents: list) -> list:
    """Output tangents of run(*inputs) (None where an output is None): the reference math
    runs on dual tensors of the forward-mode level that is already open."""
    with forward_ad._set_fwd_grad_enabled(True):  # the Function's jvp runs with it off
        # The saved inputs may be dual tensors of this level already: start from primals.
        duals = [t if t is None or dt is None else
                 forward_ad.make_dual(forward_ad.unpack_dual(t).primal, dt)
                 for t, dt in zip(inputs, tangents)]
        outputs = run(*duals)
        return [None if o is None else forward_ad.unpack_dual(o).tangent for o in outputs]


def _reference_layer(cell: str, ctx: Any) -> Callable:
    """The layer's reference math over its tensor inputs, with ctx's non-tensor ones."""
    def run(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr):
        return reference.layer(cell, x, ctx.batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr,
                               ctx.reverse)

    return run


def _make_backward(cell: str) -> Callable:
    def backward(ctx: Any, grad_output, grad_h_n, grad_c_n, *_saved_grads):
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, saved, h_prev, c_prev, r_seq = ctx.saved_tensors
        inputs = [x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr]
        if torch.is_grad_enabled():
            grads = _reference_gradients(_reference_layer(cell, ctx), inputs,
                                         [grad_output, grad_h_n, grad_c_n])
        else:
            grad_output = grad_output if grad_output is not None else torch.zeros_like(h_prev)
            grad_h_n = grad_h_n if grad_h_n is not None else torch.zeros_like(h0)
            if c0 is not None and grad_c_n is None:
                grad_c_n = torch.zeros_like(c0)
            input_grad = ctx.needs_input_grad[0]
            grads = backward_op(cell)(
                grad_output, grad_h_n, grad_c_n if c0 is not None else None, x, ctx.batch_sizes,
                w_ih, w_hh, b_ih is not None, w_hr, saved, h_prev, c_prev, r_seq, ctx.reverse,
                input_grad=input_grad)
            grads = [None if t is None else g for t, g in zip(inputs, grads)]
            grads[0] = grads[0] if input_grad else None
        return _layer_op_gradients(grads)

    return backward


def _layer_op_gradients(grads: list) -> tuple:
    """Gradients of (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr) laid out as the layer ops'
    arguments: None for batch_sizes and reverse."""
    grad_x, *rest = grads
    return (grad_x, None, *rest, None)


def _make_inference_backward(cell: str) -> Callable:
    def backward(ctx: Any, grad_output, grad_h_n, grad_c_n):
        return _layer_op_gradients(_reference_gradients(
            _reference_layer(cell, ctx), list(ctx.saved_tensors),
            [grad_output, grad_h_n, grad_c_n]))

    return backward


def _make_jvp(cell: str, outputs_kept: int) -> Callable:
    """Forward mode of the layer ops: tangents of (output, h_n, c_n), and None for the
    ``outputs_kept`` tensors the forward op keeps for backward."""
    def jvp(ctx: Any, x_t, _batch_sizes, h0_t, c0_t, w_ih_t, w_hh_t, b_ih_t, b_hh_t, w_hr_t, _rev):
        tangents = [x_t, h0_t, c0_t, w_ih_t, w_hh_t, b_ih_t, b_hh_t, w_hr_t]
        output_t, h_n_t, c_n_t = _reference_jvp(_reference_layer(cell, ctx),
                                                list(ctx.saved_tensors), tangents)
        return (output_t, h_n_t, c_n_t, *[None] * outputs_kept)

    return jvp


def _cell_setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
    ctx.save_for_backward(*inputs, output[2], output[3])
    ctx.save_for_forward(*inputs)
    ctx.mark_non_differentiable(output[2], output[3], *([output[1]] if inputs[2] is None else []))


def _run_reference_cell(cell: str, x, h, c, w_ih, w_hh, b_ih, b_hh) -> tuple:
    """One step of the reference math; x [B, I] with h, c [B, H], or unbatched [I], [H]."""
    if x.dim() == 1:
        h_new, c_new = _run_reference_cell(cell, x.unsqueeze(0), h.unsqueeze(0),
                                           None if c is None else c.unsqueeze(0), w_ih, w_hh,
                                           b_ih, b_hh)
        return h_new.squeeze(0), None if c_new is None else c_new.squeeze(0)
    _, h_new, c_new = reference.layer(cell, x.unsqueeze(0), [], h, c, w_ih, w_hh, b_ih, b_hh, None,
                                      False)
    return h_new, c_new


def _cell_inference_setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
    ctx.save_for_backward(*inputs)
    ctx.save_for_forward(*inputs)
    if inputs[2] is None:
        ctx.mark_non_differentiable(output[1])


def _make_cell_inference_backward(cell: str) -> Callable:
    def backward(ctx: Any, grad_h, grad_c):
        return tuple(_reference_gradients(partial(_run_reference_cell, cell),
                                          list(ctx.saved_tensors), [grad_h, grad_c]))

    return backward


def _make_cell_backward(cell: str) -> Callable:
    def backward(ctx: Any, grad_h, grad_c, *_saved_grads):
        x, h, c, w_ih, w_hh, b_ih, b_hh, saved, c_prev = ctx.saved_tensors
        inputs = [x, h, c, w_ih, w_hh, b_ih, b_hh]
        if torch.is_grad_enabled():
            return tuple(_reference_gradients(partial(_run_reference_cell, cell), inputs,
                                              [grad_h, grad_c]))
        grad_h = grad_h if grad_h is not None else torch.zeros_like(h)
        if c is not None and grad_c is None:
            grad_c = torch.zeros_like(c)
        # dx and dh are GEMMs as large as the step's: skipped where nothing needs them.
        input_grad, hidden_grad = ctx.needs_input_grad[:2]
        grads = cell_backward_op(cell)(grad_h, grad_c if c is not None else None, x, h, w_ih, w_hh,
                                       b_ih is not None, saved, c_prev, input_grad=input_grad,
                                       hidden_grad=hidden_grad)
        wanted = [input_grad, hidden_grad] + [True] * (len(inputs) - 2)
        return tuple(None if t is None or not w else g for t, g, w in zip(inputs, grads, wanted))

    return backward


def _make_cell_jvp(cell: str, outputs_kept: int) -> Callable:
    """Forward mode of the cell ops: tangents of (h', c'), and None for the
    ``outputs_kept`` tensors the forward op keeps for backward."""
    def jvp(ctx: Any, *tangents):
        h_t, c_t = _reference_jvp(partial(_run_reference_cell, cell),
                                  list(ctx.saved_tensors)[:len(tangents)], list(tangents))
        return (h_t, c_t, *[None] * outputs_kept)

    return jvp


def _vmap_by_loop(op: Any) -> Callable:
    """vmap rule: run the op once per batch entry and stack (correct for any in_dims)."""

    def rule(info: Any, in_dims: Sequence[int | None], *args: Any,
             **kwargs: Any) -> tuple[tuple, tuple]:
        results = []
        for index in range(info.batch_size):
            # in_dims holds an int for a batched tensor; None (or, for lists, a list) otherwise.
            sample = [a.select(d, index) if isinstance(d, int) else a for a, d in zip(args, in_dims)]
            results.append(op(*sample, **kwargs))
        stacked = tuple(torch.stack(parts) for parts in zip(*results))
        return stacked, (0,) * len(stacked)

    return rule


def register_all() -> None:
    for cell in CELLS:
        forward, backward = forward_op(cell), backward_op(cell)
        torch.library.register_fake(forward)(_make_fake_forward(cell))
        torch.library.register_fake(backward)(_fake_backward)
        _autograd.register(forward, _setup_context, _make_backward(cell), _make_jvp(cell, 4))
        torch.library.register_vmap(forward, _vmap_by_loop(forward))
        inference = inference_op(cell)
        torch.library.register_fake(inference)(fake_inference_of(_make_fake_forward(cell)))
        _autograd.register(inference, _inference_setup_context, _make_inference_backward(cell),
                           _make_jvp(cell, 0))
        torch.library.register_vmap(inference, _vmap_by_loop(inference))
        torch.library.register_vmap(backward, _vmap_by_loop(backward))
        cell_forward, cell_backward = cell_forward_op(cell), cell_backward_op(cell)
        torch.library.register_fake(cell_forward)(_make_fake_cell_forward(cell))
        torch.library.register_fake(cell_backward)(_fake_cell_backward)
        _autograd.register(cell_forward, _cell_setup_context, _make_cell_backward(cell),
                           _make_cell_jvp(cell, 2))
        torch.library.register_vmap(cell_forward, _vmap_by_loop(cell_forward))
        cell_inference = cell_inference_op(cell)
        torch.library.register_fake(cell_inference)(_fake_cell_inference)
        _autograd.register(cell_inference, _cell_inference_setup_context,
                           _make_cell_inference_backward(cell), _make_cell_jvp(cell, 0))
        torch.library.register_vmap(cell_inference, _vmap_by_loop(cell_inference))
        torch.library.register_vmap(cell_backward, _vmap_by_loop(cell_backward))


def fused_layer(cell: str, x: Tensor, batch_sizes: list[int], h0: Tensor, c0: Tensor | None,
                w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
                w_hr: Tensor | None, reverse: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """One layer and direction on the fused kernels; same contract as reference.layer.
    Calls no gradient can flow through run the inference op, which keeps nothing for
    backward."""
    args = (x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse)
    if wants_grad(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr):
        output, h_n, c_n, *_ = forward_op(cell)(*args)
    else:
        output, h_n, c_n = _autograd.call_inference(inference_op(cell), *args)
    return output, h_n, (c_n if c0 is not None else None)


def wants_grad(*tensors: Tensor | None) -> bool:
    """Whether a gradient may flow through a call on these tensors: what decides between
    the training and inference ops (torch.compile guards on both conditions)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def fused_cell(cell: str, x: Tensor, h: Tensor, c: Tensor | None, w_ih: Tensor, w_hh: Tensor,
               b_ih: Tensor | None, b_hh: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """One step on the fused kernels: (h', c'), c' None for cells without a cell state.
    A step no gradient can flow through runs the cell inference op, which keeps nothing
    for backward and skips the Python Autograd kernel."""
    if not wants_grad(x, h, c, w_ih, w_hh, b_ih, b_hh):
        h_new, c_new = _autograd.call_inference(cell_inference_op(cell), x, h, c, w_ih, w_hh,
                                                b_ih, b_hh)
    else:
        h_new, c_new, *_ = cell_forward_op(cell)(x, h, c, w_ih, w_hh, b_ih, b_hh)
    return h_new, (c_new if c is not None else None)
