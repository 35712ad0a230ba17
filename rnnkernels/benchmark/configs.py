"""What one benchmark case is, how much work it does, and the standard sweep."""

from __future__ import annotations

from dataclasses import asdict, dataclass

GATES = {"lstm": 4, "gru": 3, "rnn": 1, "ln_lstm": 4, "ln_gru": 3}
# The layer-normalised cells, timed against the same math in plain torch ops (nn has none).
LAYER_NORM_CELLS = {"ln_lstm": "lstm", "ln_gru": "gru"}


@dataclass(frozen=True)
class Shape:
    """A network and its input. ``packed``: lengths uniform in [1, T], run as a PackedSequence."""

    cell: str
    T: int
    B: int
    I: int
    H: int
    layers: int = 1
    bidirectional: bool = False
    packed: bool = False
    label: str = ""

    def key(self) -> str:
        text = f"{self.cell} T={self.T} B={self.B} I={self.I} H={self.H} L={self.layers}"
        if self.bidirectional:
            text += " bi"
        if self.packed:
            text += " packed"
        return text

    def as_dict(self) -> dict:
        return asdict(self)


def flops(shape: Shape, tokens: int, mode: str) -> float:
    """Multiply-adds x 2 of the GEMMs: per layer and direction, forward does
    2 * tokens * G * H * (I_layer + H) with G gates (4 LSTM, 3 GRU, 1 RNN) and tokens =
    T * B (or the sum of lengths when packed); a training step (forward + backward) does
    3 times that (backward: one GEMM for the input gradient, one for the weights)."""
    directions = 2 if shape.bidirectional else 1
    total = 0.0
    for layer in range(shape.layers):
        layer_input = shape.I if layer == 0 else shape.H * directions
        total += directions * 2.0 * tokens * GATES[shape.cell] * shape.H * (layer_input + shape.H)
    return total * (1.0 if mode == "fwd" else 3.0)


def standard_sweep(device: str) -> list[Shape]:
    shapes = [
        Shape("lstm", 100, 64, 512, 512, label="fastrnns default"),
        Shape("lstm", 28, 128, 28, 256, layers=2, label="tutorial classifier"),
        Shape("lstm", 100, 1, 64, 64, label="small batch"),
        Shape("lstm", 200, 32, 512, 512, label="long"),
        Shape("lstm", 500, 32, 256, 256, packed=True, label="variable length"),
        Shape("lstm", 100, 16, 128, 128, label="small"),
        Shape("lstm", 100, 16, 128, 128, bidirectional=True, label="small, bidirectional"),
        Shape("gru", 100, 64, 512, 512, label="fastrnns default"),
        Shape("gru", 100, 1, 64, 64, label="small batch"),
        Shape("rnn", 100, 64, 512, 512, label="fastrnns default"),
        Shape("rnn", 100, 1, 64, 64, label="small batch"),
        Shape("ln_lstm", 100, 32, 256, 256, label="layer norm"),
        Shape("ln_gru", 100, 32, 256, 256, label="layer norm"),
    ]
    if device == "cuda":
        shapes.append(Shape("lstm", 1024, 16, 768, 768, label="long, GPU"))
    return shapes


def parse_shape(text: str, cell: str) -> Shape:
    """'T,B,I,H[,layers[,bi]]' -> Shape, e.g. '100,64,512,512,2,bi'."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if len(parts) < 4:
        raise ValueError(f"shape {text!r}: expected T,B,I,H[,layers[,bi]]")
    bidirectional = parts[-1] == "bi"
    numbers = [int(p) for p in (parts[:-1] if bidirectional else parts)]
    if len(numbers) not in (4, 5) or min(numbers) < 1:
        raise ValueError(f"shape {text!r}: expected positive T,B,I,H[,layers[,bi]]")
    return Shape(cell, *numbers, bidirectional=bidirectional)
