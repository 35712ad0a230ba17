"""One recurrent layer as a standard ONNX ``LSTM``, ``GRU`` or ``RNN`` node, written once
for both exporters against a small builder interface (``Builder``).

ONNX's recurrent operators take per direction ``W [G*H, I]``, ``R [G*H, H]`` and
``B [2*G*H]`` (input then recurrent biases) stacked on a leading direction axis, with the
gate blocks in ONNX's order; PyTorch keeps them in its own order. The reordering is a
``Gather`` of constant row indices on the weights, which the exporters' constant folding
turns into reordered initializers. Only ops that every ONNX opset from 7 on defines with the
same signature are used (Gather, Reshape, Concat, Constant and the recurrent node), so the
graph is the same whatever opset the user asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Value = Any  # a graph value of the exporter at hand (onnxscript's or TorchScript's)


class Builder(Protocol):
    """What the layer translation needs from an exporter."""

    def op(self, op_type: str, *inputs: Value | None, outputs: int = 1,
           **attributes: int | str | list[str]) -> Any:
        """A default-domain node; None marks an omitted optional input."""

    def ints(self, values: Sequence[int]) -> Value:
        """A constant 1-D int64 tensor."""

    def scalar(self, value: int) -> Value:
        """A constant 0-D int64 tensor."""

    def static_shape(self, value: Value) -> list[int]:
        """The value's shape, known at export time (the weights' always is)."""

    def unsupported(self, message: str, value: Value) -> Exception:
        """The exporter's own error for a model it cannot export."""


@dataclass(frozen=True)
class OnnxCell:
    """How one of our cells maps onto an ONNX recurrent operator."""

    op_type: str
    gate_order: tuple[int, ...]  # ONNX's k-th gate block is PyTorch's gate_order[k]-th
    attributes: dict[str, int] = field(default_factory=dict)
    activation: str | None = None  # RNN's nonlinearity, one entry per direction

    @property
    def has_cell_state(self) -> bool:
        return self.op_type == "LSTM"


CELLS = {
    # PyTorch's LSTM gates are i, f, g, o; ONNX's i, o, f, c.
    "lstm": OnnxCell("LSTM", (0, 3, 1, 2)),
    # PyTorch's GRU gates are r, z, n; ONNX's z, r, h. PyTorch applies r to the recurrent
    # projection after its bias, which is ONNX's linear_before_reset=1.
    "gru": OnnxCell("GRU", (1, 0, 2), {"linear_before_reset": 1}),
    "rnn_tanh": OnnxCell("RNN", (0,), activation="Tanh"),
    "rnn_relu": OnnxCell("RNN", (0,), activation="Relu"),
}


@dataclass(frozen=True)
class Direction:
    """One direction's arguments of a layer op (``c0`` None for cells without it)."""

    h0: Value
    c0: Value | None
    w_ih: Value
    w_hh: Value
    b_ih: Value | None
    b_hh: Value | None
    w_hr: Value | None


def layer(b: Builder, cell: str, x: Value, directions: Sequence[Direction],
          reverse: bool) -> list[tuple[Value, Value, Value | None]]:
    """(output [T, B, H], h_n [B, H], c_n [B, H] or None) per direction of one layer over
    the padded input ``x [T, B, I]``: one ONNX node, bidirectional when two directions are
    given."""
    onnx_cell = CELLS[cell]
    first = directions[0]
    if any(d.w_hr is not None for d in directions):
        raise b.unsupported(
            "rnnkernels: an LSTM with proj_size has no ONNX operator (ONNX's LSTM has no "
            "projection), so it cannot be exported; torch.nn.LSTM with proj_size cannot "
            "either", first.w_hr)
    gates = len(onnx_cell.gate_order)
    hidden = b.static_shape(first.w_hh)[1]
    rows = b.ints([gate * hidden + unit for gate in onnx_cell.gate_order for unit in range(hidden)])

    def stacked(values: list[Value], shape: list[int]) -> Value:
        """The directions' tensors, each reshaped to ``shape``, on a leading axis."""
        parts = [b.op("Reshape", v, b.ints(shape)) for v in values]
        return parts[0] if len(parts) == 1 else b.op("Concat", *parts, axis=0)

    def reordered(weight: Value) -> Value:
        return b.op("Gather", weight, rows, axis=0)

    inputs = b.static_shape(first.w_ih)[1]
    w = stacked([reordered(d.w_ih) for d in directions], [1, gates * hidden, inputs])
    r = stacked([reordered(d.w_hh) for d in directions], [1, gates * hidden, hidden])
    bias = None
    if first.b_ih is not None:
        bias = stacked([b.op("Concat", reordered(d.b_ih), reordered(d.b_hh), axis=0)
                        for d in directions], [1, 2 * gates * hidden])
    initial_h = stacked([d.h0 for d in directions], [1, -1, hidden])
    state_inputs = [initial_h]
    if onnx_cell.has_cell_state:
        state_inputs.append(stacked([d.c0 for d in directions], [1, -1, hidden]))
    attributes: dict[str, Any] = dict(onnx_cell.attributes, hidden_size=hidden)
    if len(directions) == 2:
        attributes["direction"] = "bidirectional"
    elif reverse:
        attributes["direction"] = "reverse"
    if onnx_cell.activation is not None:
        attributes["activations"] = [onnx_cell.activation] * len(directions)
    results = b.op(onnx_cell.op_type, x, w, r, bias, None, *state_inputs,  # None: sequence_lens
                   outputs=3 if onnx_cell.has_cell_state else 2, **attributes)
    y, y_h = results[0], results[1]  # y: [T, directions, B, H]; y_h: [directions, B, H]
    per_direction = []
    for index in range(len(directions)):
        at = b.scalar(index)
        c_n = b.op("Gather", results[2], at, axis=0) if onnx_cell.has_cell_state else None
        per_direction.append((b.op("Gather", y, at, axis=1), b.op("Gather", y_h, at, axis=0), c_n))
    return per_direction


def empty_like(b: Builder, x: Value) -> Value:
    """An empty 1-D tensor of x's dtype: what the ops return for a state a cell lacks, and
    for the tensors the training ops keep for their backward, which no exported graph runs
    (there is no translation of the backward ops)."""
    return b.op("Gather", b.op("Reshape", x, b.ints([-1])), b.ints([]), axis=0)
