"""The TorchScript exporter's (``torch.onnx.export(..., dynamo=False)``) symbolic functions
for our ops, registered with ``torch.onnx.register_custom_op_symbolic``.

A symbolic function gets the traced graph's values for the op's arguments: tensors, or
constants for the lists and flags, which ``_constant`` reads back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from .. import _ops
from ._graph import Value
from ._translations import OPS

# The oldest opset with every operator the translations use (LSTM, GRU and RNN: 7).
_OPSET = 7

# Attribute suffixes of GraphContext.op: _i for ints, _s for strings (and lists of them).
_SUFFIX = {int: "i", str: "s"}


def _symbolic_helper() -> Any:
    try:  # torch >= 2.9 keeps it here; torch.onnx.symbolic_helper re-exports only __all__
        from torch.onnx._internal.torchscript_exporter import symbolic_helper
    except ImportError:
        from torch.onnx import symbolic_helper
    return symbolic_helper


class _GraphBuilder:
    """``_graph.Builder`` over a TorchScript ONNX graph context."""

    def __init__(self, g: Any) -> None:
        self._g = g
        self._helper = _symbolic_helper()

    def op(self, op_type: str, *inputs: Value | None, outputs: int = 1,
           **attributes: int | str | list[str]) -> Any:
        # An omitted input before a given one is an empty optional value.
        given = [self._absent() if v is None else v for v in inputs]
        while given and inputs[len(given) - 1] is None:
            given.pop()
        named = {}
        for name, value in attributes.items():
            kind = type(value[0]) if isinstance(value, list) else type(value)
            named[f"{name}_{_SUFFIX[kind]}"] = value
        return self._g.op(op_type, *given, outputs=outputs, **named)

    def _absent(self) -> Value:
        value = self._g.op("prim::Constant")
        value.setType(torch._C.OptionalType.ofTensor())
        return value

    def ints(self, values: Sequence[int]) -> Value:
        return self._g.op("Constant", value_t=torch.tensor(list(values), dtype=torch.int64))

    def scalar(self, value: int) -> Value:
        return self._g.op("Constant", value_t=torch.tensor(value, dtype=torch.int64))

    def static_shape(self, value: Value) -> list[int]:
        dims = self._helper._get_tensor_sizes(value)
        if dims is None or not all(isinstance(d, int) for d in dims):
            raise torch.onnx.errors.SymbolicValueError(
                f"rnnkernels: the shape of this value must be static to export, got {dims}", value)
        return dims

    def unsupported(self, message: str, value: Value) -> Exception:
        return torch.onnx.errors.SymbolicValueError(message, value)

    def constant(self, value: Value, descriptor: str) -> Any:
        """A traced constant argument as a Python value ("is": int list, "b": bool)."""
        return self._helper._maybe_get_const(value, descriptor)

    def optional(self, value: Value) -> Value | None:
        return None if self._helper._is_none(value) else value


def _layer_symbolic(translate: Callable, cell: str) -> Callable:
    def symbolic(g: Any, x: Value, batch_sizes: Value, *rest: Value) -> Any:
        b = _GraphBuilder(g)
        *tensors, reverse = rest
        return translate(b, cell, x, b.constant(batch_sizes, "is"),
                         *[b.optional(t) for t in tensors], b.constant(reverse, "b"))

    return symbolic


def _bidirectional_symbolic(translate: Callable, cell: str) -> Callable:
    def symbolic(g: Any, x: Value, batch_sizes: Value, *directions: Value) -> Any:
        b = _GraphBuilder(g)
        return translate(b, cell, x, b.constant(batch_sizes, "is"),
                         *[b.optional(t) for t in directions])

    return symbolic


def _cell_symbolic(translate: Callable, cell: str) -> Callable:
    def symbolic(g: Any, x: Value, *tensors: Value) -> Any:
        b = _GraphBuilder(g)
        return translate(b, cell, x, *[b.optional(t) for t in tensors])

    return symbolic


# Per op kind: how its traced arguments are read.
_SIGNATURES = {
    "layer_forward": _layer_symbolic,
    "layer_inference": _layer_symbolic,
    "bidirectional_forward": _bidirectional_symbolic,
    "bidirectional_inference": _bidirectional_symbolic,
    "cell_forward": _cell_symbolic,
    "cell_inference": _cell_symbolic,
}


def register() -> None:
    for cell in _ops.CELLS:
        for kind, signature in _SIGNATURES.items():
            torch.onnx.register_custom_op_symbolic(f"rnnkernels::{cell}_{kind}",
                                                   signature(OPS[kind], cell), _OPSET)
