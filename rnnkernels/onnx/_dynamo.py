"""The dynamo exporter's (``torch.onnx.export(..., dynamo=True)``) translations of our ops:
onnxscript functions traced into the exported graph, registered in the exporter's own
table of translations so that every export finds them.

The exporter matches a translation's parameters to the op's schema by position, and reads
from their annotations which are attributes (``Sequence[int]``, ``bool``: Python values)
and which are inputs (unannotated or ``Value``: graph values, None when absent).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import torch

from .. import _ops, _rowwise
from ._graph import Value
from ._translations import OPS


class _OnnxscriptBuilder:
    """``_graph.Builder`` over onnxscript's default-domain opset, in trace mode."""

    def __init__(self) -> None:
        import onnx_ir as ir
        from onnxscript import opset18

        self._ir = ir
        self._opset = opset18

    def op(self, op_type: str, *inputs: Value | None, outputs: int = 1,
           **attributes: int | str | list[str]) -> Any:
        # onnxscript knows each op's outputs from its schema, so `outputs` is not needed.
        return getattr(self._opset, op_type)(*inputs, **attributes)

    def ints(self, values: Sequence[int]) -> Value:
        return self._opset.Constant(value=self._ir.tensor(np.asarray(values, dtype=np.int64)))

    def scalar(self, value: int) -> Value:
        return self._opset.Constant(value=self._ir.tensor(np.asarray(value, dtype=np.int64)))

    def static_shape(self, value: Value) -> list[int]:
        dims = list(value.shape)
        if not all(isinstance(d, int) for d in dims):
            raise torch.onnx.errors.OnnxExporterError(
                f"rnnkernels: the shape of {value.name} must be static to export, got {dims}")
        return dims

    def unsupported(self, message: str, value: Value) -> Exception:
        return torch.onnx.errors.OnnxExporterError(message)


def _layer_translation(translate: Callable, cell: str, builder: _OnnxscriptBuilder) -> Callable:
    def translation(x: Value, batch_sizes: Sequence[int], h0: Value, c0: Value | None,
                    w_ih: Value, w_hh: Value, b_ih: Value | None, b_hh: Value | None,
                    w_hr: Value | None, reverse: bool) -> tuple:
        return translate(builder, cell, x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr,
                         reverse)

    return translation


def _bidirectional_translation(translate: Callable, cell: str,
                               builder: _OnnxscriptBuilder) -> Callable:
    def translation(x: Value, batch_sizes: Sequence[int], h0_f: Value, c0_f: Value | None,
                    w_ih_f: Value, w_hh_f: Value, b_ih_f: Value | None, b_hh_f: Value | None,
                    w_hr_f: Value | None, h0_r: Value, c0_r: Value | None, w_ih_r: Value,
                    w_hh_r: Value, b_ih_r: Value | None, b_hh_r: Value | None,
                    w_hr_r: Value | None) -> tuple:
        return translate(builder, cell, x, batch_sizes, h0_f, c0_f, w_ih_f, w_hh_f, b_ih_f,
                         b_hh_f, w_hr_f, h0_r, c0_r, w_ih_r, w_hh_r, b_ih_r, b_hh_r, w_hr_r)

    return translation


def _cell_translation(translate: Callable, cell: str, builder: _OnnxscriptBuilder) -> Callable:
    def translation(x: Value, h: Value, c: Value | None, w_ih: Value, w_hh: Value,
                    b_ih: Value | None, b_hh: Value | None) -> tuple:
        return translate(builder, cell, x, h, c, w_ih, w_hh, b_ih, b_hh)

    return translation


def _rowwise_refusal(cell: str) -> Callable:
    """The rowwise ops (layer norms, zoneout) have no standard ONNX operator: their
    translation is an error that names the module."""
    def translation(x: Value, batch_sizes: Sequence[int], h0: Value, c0: Value | None,
                    w_ih: Value, w_hh: Value, b_ih: Value | None, b_hh: Value | None,
                    ln_ih: Value | None, ln_hh: Value | None, ln_cell_w: Value | None,
                    ln_cell_b: Value | None, zoneout: Value | None, reverse: bool) -> tuple:
        module = (f"LayerNorm{cell.upper()}" if ln_ih is not None
                  else f"Fused{cell.upper()} with zoneout")
        raise torch.onnx.errors.OnnxExporterError(
            f"{module} cannot be exported to ONNX: ONNX has no standard recurrent operator "
            "with layer normalisation or zoneout")

    return translation


# Per op kind: the function with the op's signature that the exporter calls.
_SIGNATURES = {
    "layer_forward": _layer_translation,
    "layer_inference": _layer_translation,
    "bidirectional_forward": _bidirectional_translation,
    "bidirectional_inference": _bidirectional_translation,
    "cell_forward": _cell_translation,
    "cell_inference": _cell_translation,
}


def translation_table() -> dict[Any, Callable]:
    """Every op's translation, keyed by the op: what ``custom_translation_table`` takes."""
    builder = _OnnxscriptBuilder()
    table = {}
    for cell in _ops.CELLS:
        for kind, signature in _SIGNATURES.items():
            function = signature(OPS[kind], cell, builder)
            function.__name__ = function.__qualname__ = f"{cell}_{kind}"
            table[_ops.library_op(cell, kind)] = function
    for cell in _rowwise.CELLS:
        table[_rowwise.forward_op(cell)] = _rowwise_refusal(cell)
    return table


def register(torchlib_registry: ModuleType) -> None:
    """Adds the translations to the exporter's table (``torchlib_registry``, the module that
    keeps the translations every export starts from)."""
    for op, function in translation_table().items():
        torchlib_registry.onnx_impl(op, trace_only=True)(function)
