"""rnnkernels: fused LSTM, GRU and RNN kernels for PyTorch, as drop-ins for torch.nn."""

from . import _backend, _bidirectional, _ops, onnx, reference
from ._backend import BACKENDS, backend_info, empty_cache
from .modules import FusedGRU, FusedGRUCell, FusedLSTM, FusedLSTMCell, FusedRNN, FusedRNNCell

if _backend._C is not None:
    _ops.register_all()
    _bidirectional.register_all()
    onnx.install()

__all__ = [
    "BACKENDS",
    "FusedGRU",
    "FusedGRUCell",
    "FusedLSTM",
    "FusedLSTMCell",
    "FusedRNN",
    "FusedRNNCell",
    "backend_info",
    "empty_cache",
]
