"""Random shapes, strides, dtypes and states thrown at every module and op. Run by
tests/test_fuzz.py in a subprocess, so that a crash fails that test instead of killing
the test run, on two torch threads. Every module case must either match torch.nn (every
output and, for floating inputs, every gradient) or raise the exception type nn raises;
every op case must match the reference math or raise a RuntimeError.

Sizes reach a few SIMD blocks (H up to 40) and batches where two threads split the work.
The seed is RNNKERNELS_FUZZ_SEED (test_fuzz.py draws one and prints it): the same seed
replays the same cases.
"""

from __future__ import annotations

import copy
import os

import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from torch import nn

import rnnkernels
from rnnkernels import _ops
from conftest import flatten  # tests/conftest.py, loaded by pytest as this file's parent's

BACKENDS = [b for b in ("cpp", "python") if rnnkernels.backend_info()["available"][b]]
NN_CLASSES = [nn.LSTM, nn.GRU, nn.RNN]
FUSED = {nn.LSTM: rnnkernels.FusedLSTM, nn.GRU: rnnkernels.FusedGRU, nn.RNN: rnnkernels.FusedRNN}
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64]
# float32/float64 against nn in the same dtype: the same arithmetic in another order,
# relative to max(1, the largest magnitude) (relu RNNs, cell states and gradients grow).
TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-9}
# The half types: nn computes in them, its error growing with every sum. Their reference is
# nn in float32 on the same rounded values. Where ours computes in float32 and rounds once,
# it may differ by that one rounding: half an ulp of each tensor's largest magnitude
# (allowed: 2 ulps). Where our bf16 kernels run (the cpp backend on a CPU with bf16 dot
# products), h is rounded to bf16 every step, as nn's is: tests/test_bf16.py's bound, 4
# ulps.
ULP = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
BF16_KERNELS = rnnkernels.backend_info()["cpu_paths"].get("bfloat16", "float32") != "float32"
SEED = int(os.environ.get("RNNKERNELS_FUZZ_SEED", "0"))
FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
torch.set_num_threads(2)
# Small sizes most of the time; a few blocks of 16 (40 = 16 + 16 + 8) some of the time.
SIZES = st.one_of(st.integers(1, 4), st.sampled_from([17, 40]))


def _tensor(draw, shape: list[int], dtype: torch.dtype) -> torch.Tensor:
    """A tensor of `shape`, contiguous, strided, transposed or expanded at random."""
    layout = draw(st.sampled_from(["contiguous", "strided", "expanded", "transposed"]))
    if dtype == torch.int64:
        return torch.randint(-3, 3, shape)
    if layout == "strided" and shape:
        wide = torch.randn(*shape[:-1], shape[-1] * 2).to(dtype)
        return wide[..., ::2]
    if layout == "expanded" and shape:
        return torch.randn(1, *shape[1:]).to(dtype).expand(*shape)
    if layout == "transposed" and len(shape) >= 2:
        return torch.randn(*reversed(shape)).to(dtype).permute(*reversed(range(len(shape))))
    return torch.randn(*shape).to(dtype)


def _outcome(fn):
    try:
        return fn(), None
    except Exception as error:  # noqa: BLE001 - the test compares what each side raised
        return None, error


def _gradients(outputs: list[torch.Tensor], wrt: list[torch.Tensor],
               dtype: torch.dtype) -> list[torch.Tensor]:
    """Gradients of a fixed random projection of the outputs (zeros where none flows); the
    projection is exact in ``dtype``, so the output gradients are too."""
    generator = torch.Generator().manual_seed(1)
    loss = sum((o.double() * torch.randn(o.shape, generator=generator).to(dtype).double()).sum()
               for o in outputs if o.requires_grad)
    return list(torch.autograd.grad(loss, wrt, allow_unused=True, materialize_grads=True))


@seed(SEED)
@FUZZ
@given(st.data())
def test_modules_match_nn_or_raise_the_same(data) -> None:
    nn_class = data.draw(st.sampled_from(NN_CLASSES))
    I, H = data.draw(SIZES), data.draw(SIZES)
    kwargs = dict(num_layers=data.draw(st.integers(1, 2)), bias=data.draw(st.booleans()),
                  batch_first=data.draw(st.booleans()), bidirectional=data.draw(st.booleans()))
    if nn_class is nn.LSTM and H > 1 and data.draw(st.booleans()):
        kwargs["proj_size"] = data.draw(st.integers(1, H - 1))
    torch.manual_seed(0)
    reference = nn_class(I, H, **kwargs)
    backend = data.draw(st.sampled_from(BACKENDS))
    fused = FUSED[nn_class](I, H, backend=backend, **kwargs)
    fused.load_state_dict(reference.state_dict())
    dtype = data.draw(st.sampled_from(DTYPES))
    ulps = 4 if dtype == torch.bfloat16 and backend == "cpp" and BF16_KERNELS else 2
    if dtype not in (torch.float32, torch.int64):
        reference.to(dtype)
        fused.to(dtype)
    rank = data.draw(st.sampled_from([1, 2, 3, 3, 3, 4]))
    dims = [data.draw(st.one_of(st.integers(0, 4), st.just(20))) for _ in range(rank - 1)] + \
        [data.draw(st.sampled_from([I, I, I, I + 1]))]
    x = _tensor(data.draw, dims, dtype)
    hx = None
    if data.draw(st.booleans()):
        layers = kwargs["num_layers"] * (2 if kwargs["bidirectional"] else 1)
        batch = (dims[0] if kwargs["batch_first"] else dims[1]) if rank == 3 else None
        h_size = kwargs.get("proj_size") or H
        state_shape = [layers] + ([batch] if batch is not None else []) + [h_size]
        if data.draw(st.booleans()):  # perturb one size
            where = data.draw(st.integers(0, len(state_shape) - 1))
            state_shape[where] += 1
        state_dtype = data.draw(st.sampled_from([dtype, dtype, torch.float64]))
        h = _tensor(data.draw, state_shape, state_dtype if state_dtype != torch.int64 else dtype)
        hx = (h, _tensor(data.draw, state_shape[:-1] + [H], h.dtype)) if nn_class is nn.LSTM else h
    if x.is_floating_point():
        x.requires_grad_()
    want, nn_error = _outcome(lambda: reference(x, hx))
    got, error = _outcome(lambda: fused(x, hx))
    if nn_error is not None:
        assert error is not None, f"nn raised {nn_error!r}, rnnkernels returned normally"
        assert type(error) is type(nn_error), (error, nn_error)
        return
    assert error is None, f"nn worked, rnnkernels raised {error!r}"
    got, want = flatten(got), flatten(want)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
    if not x.is_floating_point():
        return
    wrt = [x, *reference.parameters()]
    # nn's own half-type results, for the bound where our bf16 kernels run.
    nn_values = [*want, *_gradients(want, wrt, dtype)] if ulps == 4 else None
    if dtype in ULP:
        reference = copy.deepcopy(reference).float()
        x_float = x.detach().float().requires_grad_()
        states = None if hx is None else \
            tuple(h.float() for h in hx) if isinstance(hx, tuple) else hx.float()
        want = flatten(reference(x_float, states))
        wrt = [x_float, *reference.parameters()]
    ours = [*got, *_gradients(got, [x, *fused.parameters()], dtype)]
    wanted = [*want, *_gradients(want, wrt, dtype)]
    # Where our bf16 kernels run, a parameter's gradient sums bf16-rounded terms over every
    # step and row (the gates' gradients times inputs or states): their roundings do not
    # cancel as the terms may, so the bound is on the terms' scale, which the largest
    # parameter gradient stands for (a 1x1 weight's sum may cancel far below its terms).
    params_from = len(got) + 1
    terms = max((w.abs().max().item() for w in wanted[params_from:] if w.numel()), default=0.0)
    for i, (g, w) in enumerate(zip(ours, wanted, strict=True)):
        _assert_close(g, w, dtype, ulps, None if nn_values is None else nn_values[i],
                      terms if ulps == 4 and i >= params_from else 0.0)


def _assert_close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, ulps: int,
                  nn_value: torch.Tensor | None = None, terms: float = 0.0) -> None:
    """Within `ulps` of want's largest magnitude, or of `terms` where larger (the scale of
    the rounded terms a sum was made of), for half types, or TOLERANCE; where nn's own
    half-type value is given, alternatively within 1.5x nn's error plus one ulp, as
    tests/test_bf16.py allows (a small gradient summed from larger terms carries their
    roundings, in nn as in ours)."""
    magnitude = want.abs().max().item() if want.numel() else 0.0
    if dtype in ULP:
        atol = ulps * ULP[dtype] * max(magnitude, terms)
        if nn_value is not None and want.numel():
            nn_error = (nn_value.double() - want.double()).abs().max().item()
            atol = max(atol, 1.5 * nn_error + ULP[dtype] * magnitude)
        atol += 1e-6 * max(magnitude, 1.0)  # float32's own
    else:
        atol = TOLERANCE[dtype] * max(magnitude, 1.0)
    torch.testing.assert_close(got.double(), want.double(), atol=atol, rtol=0, equal_nan=True)


@seed(SEED)
@FUZZ
@given(st.data())
def test_ops_reject_bad_arguments_cleanly(data) -> None:
    """Direct op calls with inconsistent shapes, dtypes or batch sizes: a RuntimeError, or
    (when everything happens to be consistent) the reference's result."""
    cell = data.draw(st.sampled_from(_ops.CELLS))
    sizes = lambda: data.draw(st.integers(0, 3))  # noqa: E731
    G = _ops.GATES[cell]
    T, B, I, H = sizes(), sizes(), sizes(), sizes()
    dtype = data.draw(st.sampled_from([torch.float32, torch.float64, torch.float16]))
    packed = data.draw(st.booleans())
    batch_sizes = sorted((data.draw(st.integers(-1, 3)) for _ in range(T)), reverse=True) \
        if packed else []
    rows = sum(max(b, 0) for b in batch_sizes)
    x = _tensor(data.draw, [rows + data.draw(st.integers(0, 1)), I] if packed else [T, B, I], dtype)
    pick = lambda shape: _tensor(data.draw, [s + data.draw(st.sampled_from([0, 0, 0, 1])) for s in shape], dtype)  # noqa: E731
    batch = max(batch_sizes[0], 0) if packed and batch_sizes else B  # a negative one is for the op to reject
    args = [x, batch_sizes, pick([batch, H]), pick([batch, H]) if cell == "lstm" else None,
            pick([G * H, I]), pick([G * H, H]), pick([G * H]), pick([G * H]), None,
            data.draw(st.booleans())]
    result, error = _outcome(lambda: _ops.forward_op(cell)(*args))
    if error is not None:
        assert isinstance(error, RuntimeError), repr(error)
        return
    expected = rnnkernels.reference.layer(cell, *args)
    kept = [t for t in expected if t is not None]
    assert len(result) == 7 and len(kept) == (3 if cell == "lstm" else 2)
    for got, want in zip(result, kept):  # the op's first results: output, h_n (, c_n)
        # The reference computes in the op's dtype too: float16 rounds at every operation.
        atol = {torch.float16: 2e-2}.get(dtype, TOLERANCE.get(dtype))
        torch.testing.assert_close(got.double(), want.double(), atol=atol, rtol=0)
