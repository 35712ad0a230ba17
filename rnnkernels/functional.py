"""Multi-layer, bidirectional recurrent networks on top of the one-layer ops.

Inputs are time-major: ``[T, B, I]`` with ``batch_sizes`` None, or the packed ``[N, I]``
data of a PackedSequence with its ``batch_sizes``. States are ``[layers * directions, B, *]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _backend, _fork, reference
from ._bidirectional import fused_both_directions
from ._ops import fused_cell, fused_layer
from ._rowwise import fused_rowwise_layer

# On CPU half types are computed in float32 (the fused kernels take float32/float64),
# but for bfloat16 on a CPU with bf16 dot products (AMX, AVX512_BF16).
_CPU_NATIVE_DTYPES = (torch.float32, torch.float64)

# Under autocast nn.* runs these cells in the autocast dtype (the rest in float32): on CPU
# the oneDNN LSTM and the RNN ops are on autocast's lower-precision list, GRU is not; on
# CUDA cuDNN runs every cell in half precision.
_AUTOCAST_LOWER = {"cpu": {"lstm", "rnn_tanh", "rnn_relu"},
                   "cuda": {"lstm", "gru", "rnn_tanh", "rnn_relu"}}

# Per layer and direction: (w_ih, w_hh, b_ih, b_hh, w_hr), absent ones None, and after them
# a layer-normalised cell's layer-norm weights (reference.layer's norm_weights).
LayerWeights = tuple[Tensor | None, ...]


def _runs_reference(backend: str) -> bool:
    """Whether the math runs as plain torch ops rather than the fused ops.

    Under a torch.func transform the reference math runs: the ops work there too
    (_autograd.py), but vmap runs them once per batch entry and their derivatives past
    the first come from the reference anyway, so plain torch ops are the faster and
    simpler path. (While torch.compile traces, that stack can hold its own entries: trust
    the ops there.)"""
    in_func_transform = not torch.compiler.is_compiling() and \
        torch._C._functorch.peek_interpreter_stack() is not None
    return backend == "python" or in_func_transform


def rnn(
    cell: str,
    input: Tensor,
    batch_sizes: Tensor | None,
    hx: Tensor,
    cx: Tensor | None,
    weights: list[LayerWeights],
    num_layers: int,
    dropout: float,
    training: bool,
    bidirectional: bool,
    backend: str | None = None,
    zoneout: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Runs the stack; returns (output, h_n, c_n) with c_n None unless cell is 'lstm'.

    zoneout: in training each unit of h keeps its previous value with this probability at
    each step (a mask from torch's RNG); in eval h_t is p * h_(t-1) + (1 - p) * h_t."""
    rowwise = zoneout > 0 or any(len(ws) > 5 for ws in weights)
    chosen = _backend.resolve_backend(backend, input.device)
    _fork.state.ran_kernels = True

    def run(x: Tensor, h: Tensor, c: Tensor | None, ws: list[LayerWeights]):
        if rowwise:
            return _run_rowwise_stack(chosen, cell, x, batch_sizes, h, c, ws, num_layers,
                                      dropout, training, bidirectional, zoneout)
        return _run_stack(chosen, cell, x, batch_sizes, h, c, ws, num_layers, dropout, training,
                          bidirectional)

    return _in_compute_dtype(cell, chosen, input, hx, cx, weights, run, bf16_kernels=not rowwise)


def cell_step(cell: str, input: Tensor, hx: Tensor, cx: Tensor | None, weights: LayerWeights,
              backend: str | None = None) -> tuple[Tensor, Tensor | None]:
    """One step of a cell on a batched input [B, I]; returns (h', c'), c' None but for LSTM."""
    chosen = _backend.resolve_backend(backend, input.device)
    _fork.state.ran_kernels = True

    def run(x: Tensor, h: Tensor, c: Tensor | None, ws: list[LayerWeights]):
        if _runs_reference(chosen):
            return reference.layer(cell, x.unsqueeze(0), [], h, c, *ws[0], False)
        h_new, c_new = fused_cell(cell, x, h, c, *ws[0][:4])
        return h_new, h_new, c_new

    _, h_new, c_new = _in_compute_dtype(cell, chosen, input, hx, cx, [weights], run)
    return h_new, c_new


def _in_compute_dtype(cell: str, backend: str, input: Tensor, hx: Tensor, cx: Tensor | None,
                      weights: list[LayerWeights], run, bf16_kernels: bool = True,
                      ) -> tuple[Tensor, Tensor, Tensor | None]:
    """run(input, hx, cx, weights) in the dtype the kernels compute in (autocast's choice,
    on CPU float32 for half types unless the bf16 kernels take the call: bf16_kernels says
    whether they could; where not, half types compute in float32 on every device), with
    the results in the dtypes nn.* returns."""
    device_type = input.device.type
    result_dtype = cell_dtype = input.dtype
    autocasting = device_type in _AUTOCAST_LOWER and torch.is_autocast_enabled(device_type)
    if autocasting:
        lower = cell in _AUTOCAST_LOWER[device_type]
        result_dtype = cell_dtype = torch.get_autocast_dtype(device_type) if lower else torch.float32
        if device_type == "cpu" and any(ws[4] is not None for ws in weights):
            cell_dtype = torch.float32  # nn's projected CPU LSTM keeps c in float32 there
    compute_dtype = result_dtype
    if not bf16_kernels and compute_dtype not in _CPU_NATIVE_DTYPES:
        compute_dtype = torch.float32  # the rowwise kernels compute float32 and float64 only
    elif device_type == "cpu":
        # nn's GEMMs take autocast's dtype even where its results are float32 (the CPU
        # GRU's composite calls autocast's linear): the bf16 kernels then run too.
        gemm_dtype = torch.get_autocast_dtype("cpu") if autocasting else result_dtype
        if gemm_dtype == torch.bfloat16 and bf16_kernels and _bf16_kernels_take(backend):
            compute_dtype = torch.bfloat16
        elif result_dtype not in _CPU_NATIVE_DTYPES:
            compute_dtype = torch.float32
    tensors = [input, hx, cx, *(w for ws in weights for w in ws)]
    if not autocasting and all(t is None or t.dtype == compute_dtype for t in tensors):
        return run(input, hx, cx, weights)
    # Autocast off inside: the ops' own GEMMs must run in the dtype chosen here.
    with torch.autocast(device_type, enabled=False):
        output, h_n, c_n = run(
            input.to(compute_dtype), hx.to(compute_dtype),
            None if cx is None else cx.to(compute_dtype),
            [tuple(None if w is None else w.to(compute_dtype) for w in ws) for ws in weights])
    return (output.to(result_dtype), h_n.to(result_dtype),
            None if c_n is None else c_n.to(cell_dtype))


def _bf16_kernels_take(backend: str) -> bool:
    """Whether the CPU's bf16 kernels run this call: the cpp backend's fused ops on a CPU
    with bf16 dot products."""
    return (backend == "cpp" and not _runs_reference(backend)
            and _backend.cpu_bf16_isa() is not None)


# One layer's directions: (layer, its input, their [(h0, c0, weights)]) -> their
# (output, h_n, c_n), each direction in order.
LayerRun = Callable[[int, Tensor, list[tuple]], list[tuple[Tensor, Tensor, Tensor | None]]]


def _stack_layers(input: Tensor, hx: Tensor, cx: Tensor | None, weights: list[LayerWeights],
                  num_layers: int, dropout: float, training: bool, bidirectional: bool,
                  run_layer: LayerRun) -> tuple[Tensor, Tensor, Tensor | None]:
    """The layers one after the other, each reading the concatenation of the previous one's
    directions (after dropout between layers in training); returns (output, h_n, c_n)."""
    directions = 2 if bidirectional else 1
    layer_input = input
    h_finals: list[Tensor] = []
    c_finals: list[Tensor] = []
    for layer in range(num_layers):
        # Per direction: (h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, *layer norms).
        args = [(hx[index], None if cx is None else cx[index], *weights[index])
                for index in range(layer * directions, (layer + 1) * directions)]
        outputs = []
        for output, h_n, c_n in run_layer(layer, layer_input, args):
            outputs.append(output)
            h_finals.append(h_n)
            if c_n is not None:
                c_finals.append(c_n)
        layer_input = outputs[0] if directions == 1 else torch.cat(outputs, -1)
        if dropout > 0 and training and layer < num_layers - 1:
            layer_input = F.dropout(layer_input, dropout, training=True)
    return layer_input, _stack(h_finals), _stack(c_finals) if c_finals else None


def _batch_size_list(batch_sizes: Tensor | None) -> list[int]:
    return [] if batch_sizes is None else [int(b) for b in batch_sizes.tolist()]


def _run_stack(backend: str, cell: str, input: Tensor, batch_sizes: Tensor | None, hx: Tensor,
               cx: Tensor | None, weights: list[LayerWeights], num_layers: int, dropout: float,
               training: bool, bidirectional: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    runs_reference = _runs_reference(backend)
    layer_fn = reference.layer if runs_reference else fused_layer
    sizes = _batch_size_list(batch_sizes)

    def run_layer(layer: int, layer_input: Tensor, args: list[tuple]) -> list:
        if len(args) == 2 and not runs_reference:
            return fused_both_directions(cell, layer_input, sizes, args[0], args[1])
        return [layer_fn(cell, layer_input, sizes, *a, d == 1) for d, a in enumerate(args)]

    return _stack_layers(input, hx, cx, weights, num_layers, dropout, training, bidirectional,
                         run_layer)


def _run_rowwise_stack(backend: str, cell: str, input: Tensor, batch_sizes: Tensor | None,
                       hx: Tensor, cx: Tensor | None, weights: list[LayerWeights],
                       num_layers: int, dropout: float, training: bool, bidirectional: bool,
                       zoneout: float) -> tuple[Tensor, Tensor, Tensor | None]:
    """_run_stack for the layer-normalised cells and zoneout: each layer and direction on the
    rowwise op (or the reference), one after the other."""
    layer_fn = reference.layer if _runs_reference(backend) else fused_rowwise_layer
    sizes = _batch_size_list(batch_sizes)

    def run_layer(layer: int, layer_input: Tensor, args: list[tuple]) -> list:
        results = []
        for d, (h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, *norms) in enumerate(args):
            mask = _zoneout_mask(layer_input, h0.shape[-1], zoneout, training)
            results.append(layer_fn(cell, layer_input, sizes, h0, c0, w_ih, w_hh, b_ih, b_hh,
                                    w_hr, d == 1, norm_weights=norms, zoneout=mask))
        return results

    return _stack_layers(input, hx, cx, weights, num_layers, dropout, training, bidirectional,
                         run_layer)


def _zoneout_mask(x: Tensor, hidden: int, p: float, training: bool) -> Tensor | None:
    """The zoneout mask of a layer on x (its rows, ``hidden`` units): in training 1 with
    probability 1 - p (torch's RNG), else 0; in eval the constant 1 - p. None for p = 0."""
    if p == 0:
        return None
    shape = (*x.shape[:-1], hidden)
    if training:
        return torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1 - p)
    return torch.full(shape, 1 - p, dtype=x.dtype, device=x.device)


def _stack(states: list[Tensor]) -> Tensor:
    """[layers * directions, B, *] from each layer and direction's [B, *] final state."""
    return states[0].unsqueeze(0) if len(states) == 1 else torch.stack(states)
