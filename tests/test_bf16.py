"""bfloat16 inference and training on the CPU's bf16 kernels (AMX tiles or AVX512_BF16
dot products).

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
    "lstm_proj": (nn.LSTM, rnnkernels.FusedLSTM, {"proj_size": None}),  # set by proj_size()
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


def proj_size(name: str, H: int) -> int:
    """The projected LSTM's h size for hidden size H (0: no projection): H // 2, whole
    tiles and partial ones alike among the shapes."""
    return max(H // 2, 1) if name == "lstm_proj" else 0


def make(name: str, shape: str) -> tuple[nn.Module, nn.Module, nn.Module, torch.Tensor]:
    """(ours in bf16, nn in bf16, nn in float32 on the same bf16 values, x in bf16)."""
    nn_cls, ours_cls, extra = MODULES[name]
    T, B, I, H, layers, bidirectional = SHAPES[shape]
    if "proj_size" in extra:
        extra = {**extra, "proj_size": proj_size(name, H)}
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
        assert_within_bound(g, n, w)


def assert_within_bound(got: torch.Tensor, nn_got: torch.Tensor, want: torch.Tensor) -> None:
    """got (bf16) within 4 ulps of want's largest magnitude, and within 1.5x nn's error
    plus one ulp (the module docstring)."""
    assert got.dtype == torch.bfloat16
    scale = want.abs().max().item()
    error = (got.float() - want).abs().max().item()
    nn_error = (nn_got.float() - want).abs().max().item()
    assert error <= 4 * ULP * scale, (error, scale)
    assert error <= 1.5 * nn_error + ULP * scale, (error, nn_error)


@needs_bf16
@pytest.mark.parametrize("name", ["lstm", "lstm_proj"])
def test_bf16_inference_takes_the_bf16_kernels(name: str) -> None:
    """The same call capped to float32 compute gives other values (bf16 sums, h rounded per
    step), so the comparison above did exercise the bf16 kernels."""
    ours, _, reference, x = make(name, "tiles")
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
@pytest.mark.parametrize("name", ["lstm", "lstm_proj", "gru"])
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
@pytest.mark.parametrize("name", ["lstm", "lstm_proj"])
def test_bf16_deterministic_across_repeats_and_threads(name: str) -> None:
    ours, _, _, x = make(name, "tiles")
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


def grads_of(module: nn.Module, x: torch.Tensor, hx: tuple[torch.Tensor, ...],
             dtype: torch.dtype) -> list[torch.Tensor]:
    """Gradients (x, the initial states, every parameter) of a fixed random projection of
    module(x, hx)'s outputs, x and hx taken in `dtype`. The projection's weights are bf16
    values, so both dtypes differentiate the same loss."""
    x = x.detach().to(dtype).requires_grad_()
    states = [h.detach().to(dtype).requires_grad_() for h in hx]
    outputs = flatten(module(x, states[0] if len(states) == 1 else tuple(states)))
    generator = torch.Generator().manual_seed(1)
    loss = sum((o.float() * torch.randn(o.shape, generator=generator).bfloat16().float()).sum()
               for o in outputs)
    return list(torch.autograd.grad(loss, [x, *states, *module.parameters()]))


def initial_states(name: str, shape: str) -> tuple[torch.Tensor, ...]:
    _, B, _, H, layers, bidirectional = SHAPES[shape]
    generator = torch.Generator().manual_seed(2)
    size = (layers * (2 if bidirectional else 1), B, H)
    h_size = (*size[:2], proj_size(name, H) or H)
    states = [torch.randn(h_size, generator=generator).bfloat16()]
    if name.startswith("lstm"):
        states.append(torch.randn(size, generator=generator).bfloat16())
    return tuple(states)


@needs_bf16
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("name", list(MODULES))
def test_bf16_training_within_rounding_of_float32(name: str, shape: str) -> None:
    """Training runs the bf16 kernels too. The backward adds to the forward's rounding that
    of the gates' gradients to bf16 before the dh and weight GEMMs (half an ulp each, not
    grown by the contracting recurrence) and of each returned gradient: the same 4-ulp
    bound of each gradient's largest magnitude, and 1.5x nn's own bf16 error plus one ulp.
    ReLU's gradient also flips wherever a pre-activation within rounding of zero changes
    sign, so one entry may be off by its whole size in either implementation: there the
    relative L2 error (which counts the flips rather than the largest one) is held to 1.5x
    nn's plus 4 ulps (for inputs where nn's flips happen to be fewer)."""
    ours, theirs, reference, x = make(name, shape)
    hx = initial_states(name, shape)
    got = grads_of(ours, x, hx, torch.bfloat16)
    nn_got = grads_of(theirs, x, hx, torch.bfloat16)
    want = grads_of(reference, x, hx, torch.float32)
    for g, n, w in zip(got, nn_got, want, strict=True):
        if name != "rnn_relu":
            assert_within_bound(g, n, w)
            continue
        assert g.dtype == torch.bfloat16
        l2, nn_l2 = (g.float() - w).norm() / w.norm(), (n.float() - w).norm() / w.norm()
        assert l2 <= 1.5 * nn_l2 + 4 * ULP, (l2, nn_l2)


@needs_bf16
@pytest.mark.parametrize("name", ["lstm", "lstm_proj"])
def test_bf16_training_takes_the_bf16_kernels(name: str) -> None:
    """The gradients differ from the float32 computation's rounded to bf16 (as inference's
    outputs do), so the training comparison above exercised the bf16 kernels."""
    ours, _, reference, x = make(name, "tiles")
    hx = initial_states(name, "tiles")
    got = grads_of(ours, x, hx, torch.bfloat16)
    in_float32 = grads_of(reference, x, hx, torch.float32)
    assert not all(torch.equal(g, w.bfloat16()) for g, w in zip(got, in_float32, strict=True))


@needs_bf16
@pytest.mark.parametrize("name", ["lstm", "lstm_proj", "gru"])
def test_bf16_packed_training_within_rounding(name: str) -> None:
    """Packed steps of any number of rows, bidirectional: the reverse direction's backward
    sees the batch shrink."""
    ours, _, reference, x = make(name, "odd")
    T, B = x.shape[:2]
    lengths = torch.randint(1, T + 1, (B,), generator=torch.Generator().manual_seed(1))
    lengths = lengths.sort(descending=True).values
    lengths[0] = T

    def grads(module: nn.Module, dtype: torch.dtype) -> list[torch.Tensor]:
        data = x.to(dtype).requires_grad_()
        out, _ = module(nn.utils.rnn.pack_padded_sequence(data, lengths))
        weights = torch.randn(out.data.shape, generator=torch.Generator().manual_seed(3))
        loss = (out.data.float() * weights.bfloat16().float()).sum()
        return list(torch.autograd.grad(loss, [data, *module.parameters()]))

    for g, w in zip(grads(ours, torch.bfloat16), grads(reference, torch.float32), strict=True):
        torch.testing.assert_close(g.float(), w, atol=4 * ULP * w.abs().max().item(), rtol=0)


@needs_bf16
@pytest.mark.parametrize("name", ["gru", "lstm_proj"])
def test_bf16_training_deterministic_across_repeats_and_threads(name: str) -> None:
    ours, _, _, x = make(name, "tiles")
    hx = initial_states(name, "tiles")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        first, again = grads_of(ours, x, hx, torch.bfloat16), grads_of(ours, x, hx, torch.bfloat16)
        torch.set_num_threads(1)
        one_thread = grads_of(ours, x, hx, torch.bfloat16)
    finally:
        torch.set_num_threads(threads)
    for a, b, c in zip(first, again, one_thread, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)


@needs_bf16
@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_tanh"])
def test_bf16_autocast_training_within_rounding(name: str) -> None:
    """Under autocast the bf16 kernels run on float32 parameters (GRU too: nn returns it in
    float32, but its GEMMs take bf16 operands), in nn's output dtypes; the gradients come
    back float32, within the bound of the float32 ones."""
    ours, theirs, reference, x = make(name, "wide")
    ours.float()
    hx = initial_states(name, "wide")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = grads_of(ours, x, hx, torch.float32)
        outputs = flatten(ours(x.float()))
        nn_outputs = flatten(theirs.float()(x.float()))
    assert [o.dtype for o in outputs] == [o.dtype for o in nn_outputs]
    want = grads_of(reference, x, hx, torch.float32)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, w, atol=4 * ULP * w.abs().max().item(), rtol=0)


_SUBPROCESS_CHECK = """
import json, torch, rnnkernels
from rnnkernels import _backend
torch.manual_seed(0)
results = {"paths": rnnkernels.backend_info()["cpu_paths"]}
for name, cls, extra in [("lstm", torch.nn.LSTM, {}), ("gru", torch.nn.GRU, {}),
                         ("rnn", torch.nn.RNN, {"nonlinearity": "relu"}),
                         ("lstm_proj", torch.nn.LSTM, {"proj_size": 9})]:
    ours = getattr(rnnkernels, "Fused" + cls.__name__)(12, 20, num_layers=2, **extra).bfloat16()
    reference = cls(12, 20, num_layers=2, **extra)
    reference.load_state_dict({k: v.float() for k, v in ours.state_dict().items()})
    x = torch.randn(5, 4, 12).bfloat16()
    with torch.no_grad():
        got, want = ours(x)[0].float(), reference(x.float())[0]
    results[name] = {"error": (got - want).abs().max().item(), "scale": want.abs().max().item(),
                     "rounded_equal": torch.equal(got, want.bfloat16().float())}
    ours(x)[0].float().sum().backward()
    reference(x.float())[0].sum().backward()
    results[name]["grad_error"] = max((p.grad.float() - q.grad).abs().max().item() /
                                      q.grad.abs().max().item()
                                      for p, q in zip(ours.parameters(), reference.parameters()))
print(json.dumps(results))
"""

# ReLU's gradients flip where rounding changes a pre-activation's sign (test above): the
# fixed bound on gradients is checked for the smooth cells.
SMOOTH = ("lstm", "gru", "lstm_proj")


def run_capped(isa: str, variable: str = "RNNKERNELS_CPU_ISA") -> dict:
    env = dict(os.environ, **{variable: isa})
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
    for name in ("lstm", "gru", "rnn", "lstm_proj"):
        assert results[name]["rounded_equal"], (name, results[name])
    for name in SMOOTH:  # computed in float32, rounded once: half an ulp, one allowed
        assert results[name]["grad_error"] <= ULP, (name, results[name])


@pytest.mark.parametrize("isa", ["avx512_bf16", "amx"])
@pytest.mark.skipif(_backend._C is None, reason="needs the C++ kernels")
def test_each_bf16_instruction_set_within_rounding(isa: str) -> None:
    widest = _backend.cpu_bf16_isa()
    if widest is None or (isa == "amx" and widest != "amx"):
        pytest.skip(f"this CPU does not run {isa}")
    results = run_capped(isa)
    assert results["paths"]["bfloat16"] == isa
    for name in ("lstm", "gru", "rnn", "lstm_proj"):
        assert results[name]["error"] <= 4 * ULP * results[name]["scale"], (name, results[name])
    for name in SMOOTH:
        assert results[name]["grad_error"] <= 4 * ULP, (name, results[name])


@needs_bf16
@pytest.mark.skipif(_backend._C is None, reason="needs the C++ kernels")
def test_aten_capability_caps_the_float32_kernels_only() -> None:
    """ATEN_CPU_CAPABILITY caps ATen's vectorised kernels, not oneDNN's bf16 ones (which
    nn's bf16 LSTM runs whatever it says): ours follow it in float32 alone."""
    paths = run_capped("avx2", variable="ATEN_CPU_CAPABILITY")["paths"]
    assert paths["float32"] == "avx2"
    assert paths["bfloat16"] == _backend.cpu_bf16_isa()
