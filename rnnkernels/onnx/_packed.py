"""PackedSequence under the TorchScript exporter: through torch's own recurrent op.

A tracer records the batch sizes our ops take (``int[]``) as constants of the one input it
saw, which would be wrong for any other lengths. torch's packed ``aten::lstm`` (``gru``,
``rnn_tanh``, ``rnn_relu``) takes them as a tensor, and the exporter's packing passes turn
it, with ``pack_padded_sequence`` and ``pad_packed_sequence`` around it, into recurrent
nodes with per-entry ``sequence_lens``: the graph torch.nn's modules export to.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..functional import LayerWeights

_TORCH_OP = {"LSTM": torch._VF.lstm, "GRU": torch._VF.gru, "RNN_TANH": torch._VF.rnn_tanh,
             "RNN_RELU": torch._VF.rnn_relu}


def traced_for_onnx() -> bool:
    """Whether this call is being traced by the TorchScript ONNX exporter."""
    return torch.jit.is_tracing() and torch.onnx.is_in_onnx_export()


def torch_rnn(mode: str, data: Tensor, batch_sizes: Tensor, hidden: list[Tensor],
              weights: list[LayerWeights], has_biases: bool, num_layers: int, dropout: float,
              training: bool, bidirectional: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """(output, h_n, c_n) of torch's packed op for nn.RNNBase's ``mode``."""
    flat = [w for layer in weights for w in layer if w is not None]  # nn's _flat_weights order
    hx = hidden if mode == "LSTM" else hidden[0]
    output, *states = _TORCH_OP[mode](data, batch_sizes, hx, flat, has_biases, num_layers,
                                      dropout, training, bidirectional)
    return output, states[0], (states[1] if mode == "LSTM" else None)
