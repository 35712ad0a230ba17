"""bfloat16 inference on the CPU's bf16 kernels (AMX tiles or AVX512_BF16 dot products).

Bound: the reference is the same module in float32 on the bf16-rounded weights and input.
What the bf16 kernels add to its error is rounding h to bf16 each step (where it feeds the
next step's GEMM and the output): half an ulp, 2**-9 relative, per step, which the
recurrence carries on but does not grow (its Jacobian is contracting for these
initialisations), and rounding the outputs. We allow 4 ulps (2**-6) of each result's
largest magnitude, and never more than 1.5x nn's own bf16 error on the same inputs plus
one ulp (nn's error can be near zero on some entries, where rounding alone decides).
Each capped instruction set (RNNKERNELS_CPU_ISA) runs in a subprocess, since the choice is
made once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import rnnkernels
from rnnkernels import _backend
from conftest import flatten

ULP = 2.0**-8
needs_bf16 = pytest.mark.skipif(_backend.cpu_bf16_isa() is None,
                                reason="this CPU has no bf16 kernels (no AVX512_BF16)")

MODULES = {
    "lstm": (nn.LSTM, rnnkernels.FusedLSTM, {}),
    "gru": (nn.GRU, rnnkernels.FusedGRU, {}),
    "rnn_tanh": (nn.RNN, rnnkernels.FusedRNN, {}),
    "rnn_relu": (nn.RNN, rnnkernels.FusedRNN, {"nonlinearity": "relu"}),
}
SHAPES = {  # (T, B, I, H, layers, bidirectional)
    "tiles": (6, 32, 64, 64, 1, False),
    "odd": (5, 3, 7, 9, 2, True),
    "wide": (4, 17, 33, 40, 2, False),
    "one_row": (7, 1, 16, 48, 1, True),
}


def make(name: str, shape: str) -> tuple[nn.Module, nn.Module, nn.Module, torch.Tensor]:
    """(ours in bf16, nn in bf16, nn in float32 on the same bf16 values, x in bf16)."""
    nn_cls, ours_cls, extra = MODULES[name]
    T, B, I, H, layers, bidirectional = SHAPES[shape]
    torch.manual_seed(0)
    ours = ours_cls(I, H, num_layers=layers, bidirectional=bidirectional, **extra).bfloat16()
    theirs = nn_cls(I, H, num_layers=layers, bidirectional=bidirectional, **extra).bfloat16()
    theirs.load_state_dict(ours.state_dict())
    reference = nn_cls(I, H, num_layers=layers, bidirectional=bidirectional, **extra)
    reference.load_state_dict({k: v.float() for k, v in ours.state_dict().items()})
    return ours, theirs, reference, torch.randn(T, B, I).bfloat16()


@needs_bf16
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("name", list(MODULES))
def test_bf16_inference_within_rounding_of_float32(name: str, shape: str) -> None:
    ours, theirs, reference, x = make(name, shape)
    with torch.no_grad():
        got, nn_got, want = flatten(ours(x)), flatten(theirs(x)), flatten(reference(x.float()))
    for g, n, w in zip(got, nn_got, want, strict=True):
        assert g.dtype == torch.bfloat16
        scale = w.abs().max().item()
        error = (g.float() - w).abs().max().item()
        nn_error = (n.float() - w).abs().max().item()
        assert error <= 4 * ULP * scale, (error, scale)
        assert error <= 1.5 * nn_error + ULP * scale, (error, nn_error)


@needs_bf16
def test_bf16_inference_takes_the_bf16_kernels() -> None:
    """The same call capped to float32 compute gives other values (bf16 sums, h rounded per
    step), so the comparison above did exercise the bf16 kernels."""
    ours, _, reference, x = make("lstm", "tiles")
    with torch.no_grad():
        got = ours(x)[0]
        in_float32 = reference(x.float())[0].bfloat16()
    assert not torch.equal(got, in_float32)


@needs_bf16
def test_bf16_packed_and_reverse_match_padded() -> None:
    """A packed batch of equal lengths runs the same kernel steps as the padded one."""
    ours, _, _, x = make("gru", "odd")
    packed = nn.utils.rnn.pack_padded_sequence(x, [x.shape[0]] * x.shape[1])
    with torch.no_grad():
        padded_out, padded_h = ours(x)
        packed_out, packed_h = ours(packed)
    assert torch.equal(packed_out.data.view_as(padded_out), padded_out)
    assert torch.equal(packed_h, padded_h)


@needs_bf16
@pytest.mark.parametrize("shape", ["tiles", "wide", "odd"])
@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_bf16_packed_lengths_within_rounding(name: str, shape: str) -> None:
    """Steps of a packed batch have any number of rows, whole AMX tiles or not ("tiles"
    has a batch of two whole tiles, so only its shorter steps need padding; "odd" is
    bidirectional: its reverse direction sees the batch grow)."""
    ours, _, reference, x = make(name, shape)
    T, B = x.shape[:2]
    lengths = torch.randint(1, T + 1, (B,), generator=torch.Generator().manual_seed(1))
    lengths = lengths.sort(descending=True).values
    lengths[0] = T
    for enforce_sorted in (True, False):
        order = lengths if enforce_sorted else lengths.flip(0)
        batch = x if enforce_sorted else x.flip(1)
        packed = nn.utils.rnn.pack_padded_sequence(batch, order, enforce_sorted=enforce_sorted)
        with torch.no_grad():
            got = flatten(ours(packed))
            want = flatten(reference(nn.utils.rnn.pack_padded_sequence(
                batch.float(), order, enforce_sorted=enforce_sorted)))
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g.float(), w, atol=4 * ULP * w.abs().max().item(), rtol=0)


@needs_bf16
def test_bf16_deterministic_across_repeats_and_threads() -> None:
    ours, _, _, x = make("lstm", "tiles")
    threads = torch.get_num_threads()
    try:
        with torch.no_grad():
            torch.set_num_threads(2)
            first, again = flatten(ours(x)), flatten(ours(x))
            torch.set_num_threads(1)
            one_thread = flatten(ours(x))
    finally:
        torch.set_num_threads(threads)
    for a, b, c in zip(first, again, one_thread, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)


@needs_bf16
def test_bf16_autocast_inference_returns_nn_dtypes() -> None:
    ours, theirs, _, x = make("lstm", "odd")
    ours.float()
    theirs.float()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got, want = flatten(ours(x.float())), flatten(theirs(x.float()))
    assert [g.dtype for g in got] == [w.dtype for w in want]


def test_bf16_training_gives_bf16_gradients() -> None:
    """A call a gradient flows through leaves the bf16 kernels (inference only) for the
    float32 ones, and still returns gradients in the parameters' dtype."""
    ours, _, _, x = make("rnn_tanh", "odd")
    out, _ = ours(x)
    out.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.bfloat16 for p in ours.parameters())


_SUBPROCESS_CHECK = """
import json, torch, rnnkernels
from rnnkernels import _backend
torch.manual_seed(0)
results = {"paths": rnnkernels.backend_info()["cpu_paths"]}
for name, cls, extra in [("lstm", torch.nn.LSTM, {}), ("gru", torch.nn.GRU, {}),
                         ("rnn", torch.nn.RNN, {"nonlinearity": "relu"})]:
    ours = getattr(rnnkernels, "Fused" + cls.__name__)(12, 20, num_layers=2, **extra).bfloat16()
    reference = cls(12, 20, num_layers=2, **extra)
    reference.load_state_dict({k: v.float() for k, v in ours.state_dict().items()})
    x = torch.randn(5, 4, 12).bfloat16()
    with torch.no_grad():
        got, want = ours(x)[0].float(), reference(x.float())[0]
    results[name] = {"error": (got - want).abs().max().item(), "scale": want.abs().max().item(),
                     "rounded_equal": torch.equal(got, want.bfloat16().float())}
print(json.dumps(results))
"""


def run_capped(isa: str) -> dict:
    env = dict(os.environ, RNNKERNELS_CPU_ISA=isa)
    done = subprocess.run([sys.executable, "-c", _SUBPROCESS_CHECK], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(_backend._C is None, reason="needs the C++ kernels")
def test_capped_below_bf16_computes_in_float32() -> None:
    """RNNKERNELS_CPU_ISA=avx512 (or lower) leaves no bf16 kernel: bf16 is computed in
    float32, equal to the float32 reference rounded once to bf16."""
    results = run_capped("avx512")
    assert results["paths"]["bfloat16"] == "float32"
    assert "environment" in results["paths"]["bfloat16_note"] or \
        "no AVX512_BF16" in results["paths"]["bfloat16_note"]
    for name in ("lstm", "gru", "rnn"):
        assert results[name]["rounded_equal"], (name, results[name])


@pytest.mark.parametrize("isa", ["avx512_bf16", "amx"])
@pytest.mark.skipif(_backend._C is None, reason="needs the C++ kernels")
def test_each_bf16_instruction_set_within_rounding(isa: str) -> None:
    widest = _backend.cpu_bf16_isa()
    if widest is None or (isa == "amx" and widest != "amx"):
        pytest.skip(f"this CPU does not run {isa}")
    results = run_capped(isa)
    assert results["paths"]["bfloat16"] == isa
    for name in ("lstm", "gru", "rnn"):
        assert results[name]["error"] <= 4 * ULP * results[name]["scale"], (name, results[name])
