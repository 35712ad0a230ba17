"""The implementations compared for one case, built on the same weights."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

import rnnkernels
from rnnkernels import _backend

from .configs import LAYER_NORM_CELLS, Shape

NN_CLASSES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
FUSED_CLASSES = {"lstm": rnnkernels.FusedLSTM, "gru": rnnkernels.FusedGRU, "rnn": rnnkernels.FusedRNN}
LAYER_NORM_CLASSES = {"ln_lstm": rnnkernels.LayerNormLSTM, "ln_gru": rnnkernels.LayerNormGRU}


@dataclass
class Implementation:
    name: str
    module: nn.Module
    # A no_grad forward on the case's input, set by the runner for the correctness gate.
    run_forward: Callable[[], object] | None = None
    context: Callable[[], object] | None = None  # e.g. cuDNN switched off around the call
    # Whether the correctness gate compares it with torch.nn: not for nn itself under
    # other numerics (TF32), timed for reference only.
    checked: bool = True
    # Whether it is the case's baseline (nn, or for cells nn lacks the same math in plain
    # torch ops): the first implementation, which the others are checked and timed against.
    baseline: bool = False
    # The baseline in float64, where the others are checked against it (check_against_nn).
    exact: Callable[[object], object] | None = None


@dataclass(frozen=True)
class GpuTraits:
    """What PyTorch's choice of cuDNN RNN algorithm reads of the GPU."""
    major: int
    minor: int
    multiprocessors: int

    @staticmethod
    def current() -> GpuTraits:
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        return GpuTraits(props.major, props.minor, props.multi_processor_count)


def _persistent_suits_device(shape: Shape, gpu: GpuTraits) -> bool:
    """PyTorch's device rule for cuDNN's persistent algorithm (float16 only): Volta except
    Turing at some batch and length combinations; sm_80+ with 98 or more SMs except sm_x6,
    where LSTM takes batches that are multiples of 8 up to 128, RNN the same but not
    B >= 96 with H >= 896, and GRU never."""
    B, T, H = shape.B, shape.T, shape.H
    if gpu.major == 7:
        if gpu.minor == 5:
            return False
        return ((B % 16 == 0 and B not in (80, 112)) or B == 8) and (
            (T >= 40 and B <= 128) or (T >= 20 and B <= 96) or (T >= 10 and B <= 32))
    if gpu.major >= 8 and gpu.multiprocessors >= 98 and gpu.minor != 6:
        if shape.cell == "gru":
            return False
        if shape.cell == "lstm":
            return B % 8 == 0 and B <= 128
        return B % 8 == 0 and B <= 128 and (B < 96 or H < 896)
    return False


def cudnn_algorithm(shape: Shape, dtype: torch.dtype, forward: bool, gpu: GpuTraits) -> str:
    """The cuDNN RNN algorithm torch.nn asks for (PyTorch's get_algo in
    aten/src/ATen/native/cudnn/RNN.cpp, a forward or a backward pass): "small-H persistent"
    for small hidden sizes on any padded input but float64, "persistent" in float16 on
    single-layer one-way networks whose sizes are multiples of 128 where the device rule
    allows, else "standard" (always for packed input)."""
    if shape.packed or dtype == torch.float64 or gpu.major < 6:
        small_h = False
    elif shape.cell == "rnn":
        small_h = shape.H <= (384 if forward else 256)
    else:
        small_h = shape.H <= (192 if forward else 128)
    if small_h:
        return "small-H persistent"
    if (dtype == torch.float16 and not shape.packed and shape.layers == 1
            and not shape.bidirectional and shape.H <= 1024 and shape.H % 128 == 0
            and shape.I % 128 == 0 and _persistent_suits_device(shape, gpu)):
        return "persistent"
    return "standard"


def nn_path(shape: Shape, device: str, dtype: torch.dtype, gpu: GpuTraits | None = None) -> str:
    """Which kernel torch.nn runs for this case, as far as PyTorch's dispatch rules tell: on
    CUDA cuDNN's algorithms of the forward and the backward pass."""
    if device == "cuda":
        if not torch.backends.cudnn.is_available():
            return "aten"
        gpu = gpu or GpuTraits.current()
        forward = cudnn_algorithm(shape, dtype, True, gpu)
        backward = cudnn_algorithm(shape, dtype, False, gpu)
        return f"cuDNN {forward}" + ("" if backward == forward else f", backward {backward}")
    if shape.cell == "lstm" and torch.backends.mkldnn.is_available() and \
            dtype in (torch.float32, torch.bfloat16):
        return "oneDNN"
    return "aten"


def cudnn_tf32(allow: bool) -> contextlib.AbstractContextManager:
    """cuDNN's TF32 flag set to `allow` inside, its other flags kept: through cuDNN's
    flags() context, which torch allows where a test harness froze the global flags."""
    cudnn = torch.backends.cudnn
    return cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark,
                       deterministic=cudnn.deterministic, allow_tf32=allow)


@contextlib.contextmanager
def persistent_kernels(enabled: bool):
    """Our persistent kernels allowed where they apply, or the per-step loop everywhere."""
    before = _backend._C.set_persistent_kernels(enabled)
    try:
        yield
    finally:
        _backend._C.set_persistent_kernels(before)


def build_layer_norm(shape: Shape, names: list[str], device: str,
                     dtype: torch.dtype) -> list[Implementation]:
    """A layer-normalised cell: the same math in plain torch ops (our python backend) as
    the baseline, ours, and, unchecked, our plain cell at the same shape (what the layer
    norms cost)."""
    kwargs = dict(num_layers=shape.layers, bidirectional=shape.bidirectional, device=device,
                  dtype=dtype)
    module_class = LAYER_NORM_CLASSES[shape.cell]
    found: list[Implementation] = []
    if "nn" in names:
        reference = module_class(shape.I, shape.H, backend="python", **kwargs)
        # LayerNormLSTM at its initialisation amplifies rounding step after step (the norm
        # of the small W_hh h scales its differences up): float32 runs of the same math
        # drift apart by more than the gate's float32 tolerance over a hundred steps.
        exact = copy.deepcopy(reference).double()
        found.append(Implementation("torch ops (same math)", reference, baseline=True,
                                    exact=exact))
    if "cpp" in names and device == "cpu" and rnnkernels.backend_info()["available"]["cpp"]:
        ours = module_class(shape.I, shape.H, backend="cpp", **kwargs)
        if found:
            ours.load_state_dict(found[0].module.state_dict())
        found.append(Implementation("ours (cpp)", ours))
        plain = LAYER_NORM_CELLS[shape.cell]
        found.append(Implementation(f"ours (cpp), plain {plain.upper()}",
                                    FUSED_CLASSES[plain](shape.I, shape.H, backend="cpp", **kwargs),
                                    checked=False))
    return found


def build(shape: Shape, names: list[str], device: str, dtype: torch.dtype) -> list[Implementation]:
    if shape.cell in LAYER_NORM_CELLS:
        return build_layer_norm(shape, names, device, dtype)
    kwargs = dict(num_layers=shape.layers, bidirectional=shape.bidirectional, device=device,
                  dtype=dtype)
    reference = NN_CLASSES[shape.cell](shape.I, shape.H, **kwargs)
    found: list[Implementation] = []
    for name in names:
        if name == "nn":
            found.append(Implementation(f"nn ({nn_path(shape, device, dtype)})", reference,
                                        baseline=True))
        elif name == "nn-tf32":
            if device == "cuda":
                found.append(Implementation(f"nn ({nn_path(shape, device, dtype)}, TF32)",
                                            reference, context=lambda: cudnn_tf32(True),
                                            checked=False))
        elif name == "nn-nocudnn":
            if device == "cuda":
                found.append(Implementation("nn (cuDNN off)", reference,
                                            context=lambda: torch.backends.cudnn.flags(enabled=False)))
        elif name == "cuda-steps":
            if device == "cuda" and rnnkernels.backend_info()["available"]["cuda"]:
                found.append(Implementation(
                    "ours (cuda, per-step loop)",
                    FUSED_CLASSES[shape.cell].from_torch(reference, backend="cuda"),
                    context=lambda: persistent_kernels(False)))
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
