"""The cells' math in plain torch ops: the ``python`` backend and the test oracle.

Same contract as the fused layer op: one layer, one direction, over either a padded
``[T, B, I]`` input (``batch_sizes`` empty) or a packed ``[N, I]`` one. Autograd gives the
backward (and any higher order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _lstm_step(xg: Tensor, hg: Tensor, h: Tensor, c: Tensor, w_hr: Tensor | None) -> tuple[Tensor, Tensor]:
    i, f, g, o = (xg + hg).chunk(4, 1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_new = torch.sigmoid(o) * torch.tanh(c_new)
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
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Returns (output, h_n, c_n); c_n is None for cells without a cell state."""
    packed = len(batch_sizes) > 0
    rows = list(batch_sizes) if packed else [x.shape[1]] * x.shape[0]
    offsets = [sum(rows[:t]) for t in range(len(rows))]
    xg = F.linear(x, w_ih, b_ih)
    h, c = h0, c0
    outputs: list[Tensor | None] = [None] * len(rows)
    for t in reversed(range(len(rows))) if reverse else range(len(rows)):
        n = rows[t]
        xg_t = xg[offsets[t] : offsets[t] + n] if packed else xg[t]
        h_prev = h[:n]
        hg = F.linear(h_prev, w_hh, b_hh)
        if cell == "lstm":
            h_new, c_new = _lstm_step(xg_t, hg, h_prev, c[:n], w_hr)
            c = c_new if n == c.shape[0] else torch.cat([c_new, c[n:]])
        elif cell == "gru":
            h_new = _gru_step(xg_t, hg, h_prev)
        else:
            h_new = _rnn_step(xg_t, hg, relu=cell == "rnn_relu")
        h = h_new if n == h.shape[0] else torch.cat([h_new, h[n:]])
        outputs[t] = h_new
    if not outputs:
        output = x.new_empty(*x.shape[:-1], h0.shape[-1])
    else:
        output = torch.cat(outputs) if packed else torch.stack(outputs)
    return output, h, c
