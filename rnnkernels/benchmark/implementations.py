"""The implementations compared for one case, built on the same weights."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

import rnnkernels

from .configs import Shape

NN_CLASSES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
FUSED_CLASSES = {"lstm": rnnkernels.FusedLSTM, "gru": rnnkernels.FusedGRU, "rnn": rnnkernels.FusedRNN}


@dataclass
class Implementation:
    name: str
    module: nn.Module
    # A no_grad forward on the case's input, set by the runner for the correctness gate.
    run_forward: Callable[[], object] | None = None
    context: Callable[[], object] | None = None  # e.g. cuDNN switched off around the call


def nn_path(shape: Shape, device: str, dtype: torch.dtype) -> str:
    """Which kernel torch.nn runs for this case, as far as PyTorch's dispatch rules tell."""
    if device == "cuda":
        # PyTorch's cuDNN RNN always asks for CUDNN_RNN_ALGO_STANDARD.
        return "cuDNN, standard algo" if torch.backends.cudnn.is_available() else "aten"
    if shape.cell == "lstm" and torch.backends.mkldnn.is_available() and \
            dtype in (torch.float32, torch.bfloat16):
        return "oneDNN"
    return "aten"


def build(shape: Shape, names: list[str], device: str, dtype: torch.dtype) -> list[Implementation]:
    kwargs = dict(num_layers=shape.layers, bidirectional=shape.bidirectional, device=device,
                  dtype=dtype)
    reference = NN_CLASSES[shape.cell](shape.I, shape.H, **kwargs)
    found: list[Implementation] = []
    for name in names:
        if name == "nn":
            found.append(Implementation(f"nn ({nn_path(shape, device, dtype)})", reference))
        elif name == "nn-nocudnn":
            if device == "cuda":
                found.append(Implementation("nn (cuDNN off)", reference,
                                            context=lambda: torch.backends.cudnn.flags(enabled=False)))
        elif name == "compile-python":
            fused = FUSED_CLASSES[shape.cell].from_torch(reference, backend="python")
            found.append(Implementation("python + torch.compile", torch.compile(fused)))
        else:
            if not rnnkernels.backend_info()["available"].get(name, False):
                continue
            if (name == "cuda") != (device == "cuda"):
                continue
            found.append(Implementation(f"ours ({name})",
                                        FUSED_CLASSES[shape.cell].from_torch(reference, backend=name)))
    return found
