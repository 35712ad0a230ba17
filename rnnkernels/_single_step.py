"""The lean call of one step: the *Cell modules', and FusedLSTM/GRU/RNN's called with one
time step (streaming); one crossing into C++ per step, inference and training.

A cell step at B=1, H=64 is well under a microsecond of arithmetic, so the call's fixed
cost is its speed. The full path (the module's checks in Python, backend resolution, the
dtype policy, the op's Python Autograd kernel) costs tens of microseconds; here Python only
asks what the C++ side cannot see (tracing, transforms, forward mode, autocast, the backend
choice) and ``_C.cell_step`` does the rest: it checks that the call is an ordinary one it
takes (CPU, float32/64, sizes that fit) and runs the cell's ``_cell_inference`` op below
autograd, or, where a gradient may flow, one C++ autograd node over its ``_cell_forward``
and ``_cell_backward`` ops. Anything else, errors included, goes to the full path, so that
the errors stay nn's. A layer stack's step is a cell step per layer and direction:
``_C.stream_step`` runs them in one crossing.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _autograd, _backend, _fork

_C = _backend._C

# CellKind's values (csrc/cells/cells.h), by cell name.
KINDS: dict[str, int] = _C.cell_kinds() if _C is not None else {}


def _plain_eager(*tensors: Tensor | None) -> bool:
    """Whether a call on these tensors is plain eager: no tracer, transform, forward-mode
    level, autocast or __torch_function__ override is active, none of which the C++ call
    would see (grad mode and requires_grad it reads itself)."""
    # First: while dynamo traces, nothing below may be traced (it would break the graph).
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    return not (torch._C._has_torch_function_variadic(*tensors)
                or torch._C._functorch.peek_interpreter_stack() is not None
                or _autograd._forward_mode_open() or torch.is_autocast_enabled("cpu"))


def _tensor_args(x: object, h: object, c: object) -> bool:
    """Whether x is a tensor and h and c each a tensor or None: anything else (a list, a
    number) goes to the full path, which fails on it as nn does."""
    return isinstance(x, Tensor) and (h is None or isinstance(h, Tensor)) \
        and (c is None or isinstance(c, Tensor))


def step(cell: str, backend: str | None, x: Tensor, h: Tensor | None, c: Tensor | None,
         w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
         b_hh: Tensor | None) -> Tensor | tuple[Tensor, Tensor] | None:
    """h' (LSTM: (h', c')) of one step on the lean call, or None where it does not apply."""
    if _C is None or not _tensor_args(x, h, c):
        return None
    chosen = _backend.named_backend(backend)
    if chosen not in (None, "cpp") or not _plain_eager(x, h, c, w_ih, w_hh, b_ih, b_hh):
        return None
    result = _C.cell_step(KINDS[cell], x, h, c, w_ih, w_hh, b_ih, b_hh)
    if result is not None:
        _fork.state.ran_kernels = True
    return result


def stream(cell: str, backend: str | None, x: Tensor, hx: Tensor | tuple[Tensor, Tensor] | None,
           weights: list[Tensor], num_layers: int, bidirectional: bool,
           batch_first: bool) -> tuple[Tensor, Tensor, Tensor | None] | None:
    """(output, h_n, c_n) of a stack's one time step on the lean call (c_n None but for
    LSTM), or None where it does not apply. ``weights`` as nn's _flat_weights, without a
    projection; ``hx`` (LSTM: (h, c)) as nn takes it."""
    h, c = hx if isinstance(hx, tuple) else (hx, None)
    if _C is None or not _tensor_args(x, h, c):
        return None
    chosen = _backend.named_backend(backend)
    if chosen not in (None, "cpp") or not _plain_eager(x, h, c, *weights):
        return None
    result = _C.stream_step(KINDS[cell], x, h, c, weights, num_layers, bidirectional,
                            batch_first)
    if result is not None:
        _fork.state.ran_kernels = True
    return result
