"""Our ops' ONNX translations, for any exporter's builder (``_graph.Builder``).

Each op kind maps to a translation that takes the op's arguments in schema order (graph
values for tensors, None for absent optional ones, Python values for the rest) and returns
the op's results in schema order. The forward ops' kept-for-backward results become empty
tensors: an exported graph runs no backward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .._bidirectional import _FORWARD_OUTPUTS, _INFERENCE_OUTPUTS, _PER_DIRECTION
from ._graph import Builder, Direction, Value, empty_like, layer

# saved, h_prev, c_prev, r_seq: the training ops' results past (output, h_n, c_n).
KEPT_FOR_BACKWARD = _FORWARD_OUTPUTS - _INFERENCE_OUTPUTS


def _results(b: Builder, x: Value, per_direction: list, kept: int) -> tuple:
    empty = empty_like(b, x)
    results: list[Value] = []
    for output, h_n, c_n in per_direction:
        results += [output, h_n, empty if c_n is None else c_n, *[empty] * kept]
    return tuple(results)


def _check_padded(b: Builder, batch_sizes: Sequence[int], x: Value) -> None:
    """A packed input's batch sizes reach the ops as constants of the traced input, wrong
    for any other lengths (the modules route packed input around the ops when the
    TorchScript exporter traces them: onnx/_packed.py)."""
    if len(batch_sizes) > 0:
        raise b.unsupported(
            "rnnkernels: a PackedSequence reached an rnnkernels op with its batch sizes fixed "
            "at export time, which would be wrong for other lengths; export the Fused "
            "module with the TorchScript exporter (dynamo=False), or a padded input", x)


def layer_op(kept: int) -> Callable:
    """``<cell>_layer_forward`` (kept=4) or ``<cell>_layer_inference`` (kept=0)."""
    def translate(b: Builder, cell: str, x: Value, batch_sizes: Sequence[int], h0: Value,
                  c0: Value | None, w_ih: Value, w_hh: Value, b_ih: Value | None,
                  b_hh: Value | None, w_hr: Value | None, reverse: bool) -> tuple:
        _check_padded(b, batch_sizes, x)
        direction = Direction(h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
        return _results(b, x, layer(b, cell, x, [direction], reverse), kept)

    return translate


def bidirectional_op(kept: int) -> Callable:
    """``<cell>_bidirectional_forward`` (kept=4) or ``_inference`` (kept=0): one
    bidirectional node."""
    def translate(b: Builder, cell: str, x: Value, batch_sizes: Sequence[int],
                  *directions: Value | None) -> tuple:
        _check_padded(b, batch_sizes, x)
        ahead = Direction(*directions[:_PER_DIRECTION])
        back = Direction(*directions[_PER_DIRECTION:])
        return _results(b, x, layer(b, cell, x, [ahead, back], False), kept)

    return translate


def _step(b: Builder, cell: str, x: Value, h: Value, c: Value | None, w_ih: Value,
          w_hh: Value, b_ih: Value | None, b_hh: Value | None) -> tuple[Value, Value | None]:
    """(h', c' or None) of one step as a one-step recurrent node: x [B, I] or [I], with
    h, c [B, H] or [H]; h' and c' come as [B, H]."""
    steps = b.op("Reshape", x, b.ints([1, -1, b.static_shape(w_ih)[1]]))
    [(_, h_new, c_new)] = layer(b, cell, steps, [Direction(h, c, w_ih, w_hh, b_ih, b_hh, None)],
                                False)
    return h_new, c_new


def cell_op(b: Builder, cell: str, x: Value, h: Value, c: Value | None, w_ih: Value,
            w_hh: Value, b_ih: Value | None, b_hh: Value | None) -> tuple:
    """``<cell>_cell_forward``: one step of a batch."""
    h_new, c_new = _step(b, cell, x, h, c, w_ih, w_hh, b_ih, b_hh)
    empty = empty_like(b, x)
    return (h_new, empty if c_new is None else c_new, empty, empty)


def cell_inference_op(b: Builder, cell: str, x: Value, h: Value, c: Value | None, w_ih: Value,
                      w_hh: Value, b_ih: Value | None, b_hh: Value | None) -> tuple:
    """``<cell>_cell_inference``: one step, batched or unbatched (results shaped as h, c)."""
    h_new, c_new = _step(b, cell, x, h, c, w_ih, w_hh, b_ih, b_hh)
    h_new = b.op("Reshape", h_new, b.op("Shape", h))
    return (h_new, empty_like(b, x) if c_new is None else b.op("Reshape", c_new, b.op("Shape", c)))


# Per op kind (the part of the op's name after the cell's): its translation.
OPS: dict[str, Callable] = {
    "layer_forward": layer_op(KEPT_FOR_BACKWARD),
    "layer_inference": layer_op(0),
    "bidirectional_forward": bidirectional_op(KEPT_FOR_BACKWARD),
    "bidirectional_inference": bidirectional_op(0),
    "cell_forward": cell_op,
    "cell_inference": cell_inference_op,
}
