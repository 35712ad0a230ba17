"""rnnkernels: fused LSTM, GRU and RNN kernels for PyTorch, as drop-ins for torch.nn."""

from . import _backend, _bidirectional, _ops, _rowwise, onnx, reference
from ._backend import BACKENDS, backend_info, empty_cache
from .layer_norm_modules import LayerNormGRU, LayerNormLSTM
from .modules import FusedGRU, FusedGRUCell, FusedLSTM, FusedLSTMCell, FusedRNN, FusedRNNCell

if _backend._C is not None:
    _ops.register_all()
    _bidirectional.register_all()
    _rowwise.register_all()
    onnx.install()

__all__ = [
    "BACKENDS",
    "FusedGRU",
    "FusedGRUCell",
    "FusedLSTM",
    "FusedLSTMCell",
    "FusedRNN",
    "FusedRNNCell",
    "LayerNormGRU",
    "LayerNormLSTM",
    "backend_info",
    "empty_cache",
]
