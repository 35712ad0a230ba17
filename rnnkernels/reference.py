"""The cells' math in plain torch ops: the ``python`` backend and the test oracle.

Same contract as the fused layer op: one layer, one direction, over either a padded
``[T, B, I]`` input (``batch_sizes`` empty) or a packed ``[N, I]`` one. Autograd gives the
backward (and any higher order).

The layer-normalised cells (LayerNormLSTM, LayerNormGRU) are the LSTM and GRU with their
``norm_weights``; zoneout takes a mask with x's rows (see ``layer``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


# LN(v) = (v - mean(v)) / sqrt(var(v) + eps) over the last dimension, biased variance.
LAYER_NORM_EPS = 1e-5


def layer_norm(v: Tensor) -> Tensor:
    """The normalisation of the layer-normalised cells, without weight or bias."""
    return F.layer_norm(v, v.shape[-1:], eps=LAYER_NORM_EPS)


def _lstm_step(xg: Tensor, hg: Tensor, c: Tensor, w_hr: Tensor | None,
               cell_norm: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor]:
    """cell_norm: (ln_cell_weight, ln_cell_bias) of the layer-normalised LSTM, whose output
    reads LN(c') * weight + bias where the LSTM reads c'."""
    i, f, g, o = (xg + hg).chunk(4, 1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    c_out = c_new if cell_norm is None else layer_norm(c_new) * cell_norm[0] + cell_norm[1]
    h_new = torch.sigmoid(o) * torch.tanh(c_out)
    return (h_new if w_hr is None else F.linear(h_new, w_hr)), c_new


def _gru_step(xg: Tensor, hg: Tensor, h: Tensor) -> Tensor:
    x_r, x_z, x_n = xg.chunk(3, 1)
    h_r, h_z, h_n = hg.chunk(3, 1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h


def _rnn_step(xg: Tensor, hg: Tensor, relu: bool) -> Tensor:
    pre = xg + hg
    return torch.relu(pre) if relu else torch.tanh(pre)


def layer(
    cell: str,
    x: Tensor,
    batch_sizes: list[int],
    h0: Tensor,
    c0: Tensor | None,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_hr: Tensor | None,
    reverse: bool,
    norm_weights: Sequence[Tensor] = (),
    zoneout: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Returns (output, h_n, c_n); c_n is None for cells without a cell state.

    norm_weights: empty, or the layer-normalised cell's (ln_ih_weight, ln_hh_weight) and,
    for the LSTM, (ln_cell_weight, ln_cell_bias) after them: the projections become
    LN(W_ih x) * ln_ih_weight and LN(W_hh h) * ln_hh_weight, the biases added after.
    zoneout: a mask shaped as the output (x's rows, H units): the new state is
    h_prev + m * (h_new - h_prev) written m * h_new + (1 - m) * h_prev, so that a 0/1 mask
    (training: keep h_prev where 0) yields one of the two exactly and a constant 1 - p
    mask the expectation (eval)."""
    packed = len(batch_sizes) > 0
    rows = list(batch_sizes) if packed else [x.shape[1]] * x.shape[0]
    offsets = [sum(rows[:t]) for t in range(len(rows))]
    normed = len(norm_weights) > 0
    if normed:
        xg = layer_norm(F.linear(x, w_ih)) * norm_weights[0]
        xg = xg if b_ih is None else xg + b_ih
    else:
        xg = F.linear(x, w_ih, b_ih)
    cell_norm = (norm_weights[2], norm_weights[3]) if normed and cell == "lstm" else None
    h, c = h0, c0
    outputs: list[Tensor | None] = [None] * len(rows)
    for t in reversed(range(len(rows))) if reverse else range(len(rows)):
        n = rows[t]
        xg_t = xg[offsets[t] : offsets[t] + n] if packed else xg[t]
        h_prev = h[:n]
        if normed:
            hg = layer_norm(F.linear(h_prev, w_hh)) * norm_weights[1]
            hg = hg if b_hh is None else hg + b_hh
        else:
            hg = F.linear(h_prev, w_hh, b_hh)
        if cell == "lstm":
            h_new, c_new = _lstm_step(xg_t, hg, c[:n], w_hr, cell_norm)
            c = c_new if n == c.shape[0] else torch.cat([c_new, c[n:]])
        elif cell == "gru":
            h_new = _gru_step(xg_t, hg, h_prev)
        else:
            h_new = _rnn_step(xg_t, hg, relu=cell == "rnn_relu")
        if zoneout is not None:
            m = zoneout[offsets[t] : offsets[t] + n] if packed else zoneout[t]
            h_new = m * h_new + (1 - m) * h_prev
        h = h_new if n == h.shape[0] else torch.cat([h_new, h[n:]])
        outputs[t] = h_new
    if not outputs:
        output = x.new_empty(*x.shape[:-1], h0.shape[-1])
    else:
        output = torch.cat(outputs) if packed else torch.stack(outputs)
    return output, h, c
