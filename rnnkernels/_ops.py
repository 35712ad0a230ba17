"""Python-side registrations for the C++ ops: fake (shape) kernels for torch.compile,
autograd, and a vmap rule.

Each cell has ``rnnkernels::<cell>_layer_forward`` / ``<cell>_layer_backward`` (a layer
over a sequence) and ``<cell>_cell_forward`` / ``<cell>_cell_backward`` (one step, for the
*Cell modules), with schemas shared by all cells (see csrc/ops.cpp). The first-order
backward runs the fused backward op; when a graph of the backward is wanted
(``create_graph=True``), the gradient comes from differentiating the reference
implementation instead, so double backward works.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from . import reference

CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
SAVED = {"lstm": 4, "gru": 4, "rnn_tanh": 1, "rnn_relu": 1}


def forward_op(cell: str) -> Any:
    return getattr(torch.ops.rnnkernels, f"{cell}_layer_forward").default


def backward_op(cell: str) -> Any:
    return getattr(torch.ops.rnnkernels, f"{cell}_layer_backward").default


def cell_forward_op(cell: str) -> Any:
    return getattr(torch.ops.rnnkernels, f"{cell}_cell_forward").default


def cell_backward_op(cell: str) -> Any:
    return getattr(torch.ops.rnnkernels, f"{cell}_cell_backward").default


def _make_fake_forward(cell: str) -> Callable:
    def fake(x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse):
        hidden = w_hh.shape[0] // GATES[cell]
        out_size = w_hr.shape[0] if w_hr is not None else hidden
        lead = x.shape[:-1]
        return (
            x.new_empty(*lead, out_size),
            h0.new_empty(h0.shape),
            c0.new_empty(c0.shape) if c0 is not None else x.new_empty(0),
            x.new_empty(*lead, SAVED[cell] * hidden),
            x.new_empty(*lead, out_size),
            x.new_empty(*lead, hidden) if cell == "lstm" else x.new_empty(0),
            x.new_empty(*lead, hidden) if w_hr is not None else x.new_empty(0),
        )

    return fake


def _fake_backward(grad_output, grad_h_n, grad_c_n, x, batch_sizes, w_ih, w_hh, has_bias, w_hr,
                   saved, h_prev, c_prev, r_seq, reverse):
    bias_shape = (w_hh.shape[0],) if has_bias else (0,)
    return (
        x.new_empty(x.shape),
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
        return (h.new_empty(h.shape), c.new_empty(c.shape) if c is not None else x.new_empty(0),
                x.new_empty(x.shape[0], SAVED[cell] * hidden),
                x.new_empty(x.shape[0], hidden) if cell == "lstm" else x.new_empty(0))

    return fake


def _fake_cell_backward(grad_h, grad_c, x, h, w_ih, w_hh, has_bias, saved, c_prev):
    bias_shape = (w_hh.shape[0],) if has_bias else (0,)
    return (x.new_empty(x.shape), h.new_empty(h.shape),
            grad_c.new_empty(grad_c.shape) if grad_c is not None else x.new_empty(0),
            w_ih.new_empty(w_ih.shape), w_hh.new_empty(w_hh.shape), x.new_empty(bias_shape),
            x.new_empty(bias_shape))


def _setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
    x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse = inputs
    ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, *output[3:])
    ctx.batch_sizes = list(batch_sizes)
    ctx.reverse = reverse


def _reference_gradients(run: Callable, inputs: list, grads: list) -> list:
    """Gradients of run(*inputs) by differentiating the reference math, as a graph (for
    create_graph)."""
    leaves = [t if t is None or t.requires_grad else t.detach().requires_grad_() for t in inputs]
    with torch.enable_grad():
        outputs = run(*leaves)
    pairs = [(o, g) for o, g in zip(outputs, grads) if o is not None and g is not None]
    wanted = [t for t in leaves if t is not None]
    found = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs],
                                     create_graph=True, allow_unused=True))
    return [None if t is None else next(found) for t in leaves]


def _make_backward(cell: str) -> Callable:
    def backward(ctx: Any, grad_output, grad_h_n, grad_c_n, *_saved_grads):
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, saved, h_prev, c_prev, r_seq = ctx.saved_tensors
        inputs = [x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr]
        if torch.is_grad_enabled():
            def run(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr):
                return reference.layer(cell, x, ctx.batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh,
                                       w_hr, ctx.reverse)

            grads = _reference_gradients(run, inputs, [grad_output, grad_h_n, grad_c_n])
        else:
            grad_output = grad_output if grad_output is not None else torch.zeros_like(h_prev)
            grad_h_n = grad_h_n if grad_h_n is not None else torch.zeros_like(h0)
            if c0 is not None and grad_c_n is None:
                grad_c_n = torch.zeros_like(c0)
            grads = backward_op(cell)(
                grad_output, grad_h_n, grad_c_n if c0 is not None else None, x, ctx.batch_sizes,
                w_ih, w_hh, b_ih is not None, w_hr, saved, h_prev, c_prev, r_seq, ctx.reverse)
            grads = [None if t is None else g for t, g in zip(inputs, grads)]
        grad_x, grad_h0, grad_c0, *weight_grads = grads
        return (grad_x, None, grad_h0, grad_c0, *weight_grads, None)

    return backward


def _cell_setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
    ctx.save_for_backward(*inputs, output[2], output[3])


def _make_cell_backward(cell: str) -> Callable:
    def backward(ctx: Any, grad_h, grad_c, *_saved_grads):
        x, h, c, w_ih, w_hh, b_ih, b_hh, saved, c_prev = ctx.saved_tensors
        inputs = [x, h, c, w_ih, w_hh, b_ih, b_hh]
        if torch.is_grad_enabled():
            def run(x, h, c, w_ih, w_hh, b_ih, b_hh):
                _, h_new, c_new = reference.layer(cell, x.unsqueeze(0), [], h, c, w_ih, w_hh, b_ih,
                                                  b_hh, None, False)
                return h_new, c_new

            return tuple(_reference_gradients(run, inputs, [grad_h, grad_c]))
        grad_h = grad_h if grad_h is not None else torch.zeros_like(h)
        if c is not None and grad_c is None:
            grad_c = torch.zeros_like(c)
        grads = cell_backward_op(cell)(grad_h, grad_c if c is not None else None, x, h, w_ih, w_hh,
                                       b_ih is not None, saved, c_prev)
        return tuple(None if t is None else g for t, g in zip(inputs, grads))

    return backward


def _vmap_by_loop(op: Any) -> Callable:
    """vmap rule: run the op once per batch entry and stack (correct for any in_dims)."""

    def rule(info: Any, in_dims: Sequence[int | None], *args: Any) -> tuple[tuple, tuple]:
        results = []
        for index in range(info.batch_size):
            # in_dims holds an int for a batched tensor; None (or, for lists, a list) otherwise.
            sample = [a.select(d, index) if isinstance(d, int) else a for a, d in zip(args, in_dims)]
            results.append(op(*sample))
        stacked = tuple(torch.stack(parts) for parts in zip(*results))
        return stacked, (0,) * len(stacked)

    return rule


def register_all() -> None:
    for cell in CELLS:
        forward, backward = forward_op(cell), backward_op(cell)
        torch.library.register_fake(forward)(_make_fake_forward(cell))
        torch.library.register_fake(backward)(_fake_backward)
        torch.library.register_autograd(forward, _make_backward(cell), setup_context=_setup_context)
        torch.library.register_vmap(forward, _vmap_by_loop(forward))
        torch.library.register_vmap(backward, _vmap_by_loop(backward))
        cell_forward, cell_backward = cell_forward_op(cell), cell_backward_op(cell)
        torch.library.register_fake(cell_forward)(_make_fake_cell_forward(cell))
        torch.library.register_fake(cell_backward)(_fake_cell_backward)
        torch.library.register_autograd(cell_forward, _make_cell_backward(cell),
                                        setup_context=_cell_setup_context)
        torch.library.register_vmap(cell_forward, _vmap_by_loop(cell_forward))
        torch.library.register_vmap(cell_backward, _vmap_by_loop(cell_backward))


def fused_layer(cell: str, x: Tensor, batch_sizes: list[int], h0: Tensor, c0: Tensor | None,
                w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
                w_hr: Tensor | None, reverse: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """One layer and direction on the fused kernels; same contract as reference.layer."""
    output, h_n, c_n, *_ = forward_op(cell)(x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr,
                                            reverse)
    return output, h_n, (c_n if c0 is not None else None)


def fused_cell(cell: str, x: Tensor, h: Tensor, c: Tensor | None, w_ih: Tensor, w_hh: Tensor,
               b_ih: Tensor | None, b_hh: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """One step on the fused kernels: (h', c'), c' None for cells without a cell state."""
    h_new, c_new, *_ = cell_forward_op(cell)(x, h, c, w_ih, w_hh, b_ih, b_hh)
    return h_new, (c_new if c is not None else None)
