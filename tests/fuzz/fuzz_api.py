"""Random shapes, strides, dtypes and states thrown at every module and op. Run by
tests/test_fuzz.py in a subprocess, so that a crash fails that test instead of killing
the test run. Every case must either match torch.nn (the modules) or raise a Python
exception (modules: the same type nn raises)."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import rnnkernels
from rnnkernels import _ops
from conftest import flatten  # tests/conftest.py, loaded by pytest as this file's parent's

BACKENDS = [b for b in ("cpp", "python") if rnnkernels.backend_info()["available"][b]]
NN_CLASSES = [nn.LSTM, nn.GRU, nn.RNN]
FUSED = {nn.LSTM: rnnkernels.FusedLSTM, nn.GRU: rnnkernels.FusedGRU, nn.RNN: rnnkernels.FusedRNN}
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64]
TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-9, torch.float16: 2e-2, torch.bfloat16: 8e-2}
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


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


@FUZZ
@given(st.data())
def test_modules_match_nn_or_raise_the_same(data) -> None:
    nn_class = data.draw(st.sampled_from(NN_CLASSES))
    I, H = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    kwargs = dict(num_layers=data.draw(st.integers(1, 2)), bias=data.draw(st.booleans()),
                  batch_first=data.draw(st.booleans()), bidirectional=data.draw(st.booleans()))
    if nn_class is nn.LSTM and H > 1 and data.draw(st.booleans()):
        kwargs["proj_size"] = data.draw(st.integers(1, H - 1))
    torch.manual_seed(0)
    reference = nn_class(I, H, **kwargs)
    fused = FUSED[nn_class](I, H, backend=data.draw(st.sampled_from(BACKENDS)), **kwargs)
    fused.load_state_dict(reference.state_dict())
    dtype = data.draw(st.sampled_from(DTYPES))
    if dtype not in (torch.float32, torch.int64):
        reference.to(dtype)
        fused.to(dtype)
    rank = data.draw(st.sampled_from([1, 2, 3, 3, 3, 4]))
    dims = [data.draw(st.integers(0, 4)) for _ in range(rank - 1)] + \
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
    want, nn_error = _outcome(lambda: reference(x, hx))
    got, error = _outcome(lambda: fused(x, hx))
    if nn_error is not None:
        assert error is not None, f"nn raised {nn_error!r}, rnnkernels returned normally"
        assert isinstance(error, (type(nn_error), RuntimeError, ValueError, TypeError)), (error, nn_error)
        return
    assert error is None, f"nn worked, rnnkernels raised {error!r}"
    for g, w in zip(flatten(got), flatten(want), strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        torch.testing.assert_close(g.double(), w.double(), atol=TOLERANCE[dtype], rtol=0,
                                   equal_nan=True)


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
    batch = batch_sizes[0] if packed and batch_sizes else B
    args = [x, batch_sizes, pick([batch, H]), pick([batch, H]) if cell == "lstm" else None,
            pick([G * H, I]), pick([G * H, H]), pick([G * H]), pick([G * H]), None,
            data.draw(st.booleans())]
    result, error = _outcome(lambda: _ops.forward_op(cell)(*args))
    if error is not None:
        assert isinstance(error, RuntimeError), repr(error)
        return
    expected = rnnkernels.reference.layer(cell, *args)
    torch.testing.assert_close(result[0].double(), expected[0].double(), atol=2e-2, rtol=0)
