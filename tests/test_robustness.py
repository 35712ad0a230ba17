"""Autocast, determinism, odd strides, non-finite values, empty and oversized inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnkernels
from conftest import CPU_BACKENDS, assert_parity, flatten, module_pair

NN_CASES = [(nn.LSTM, {}), (nn.LSTM, {"proj_size": 3}), (nn.GRU, {}),
            (nn.RNN, {"nonlinearity": "relu"})]


def _ids(case) -> str:
    return case[0].__name__ + "".join(f"-{k}" for k in case[1])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", NN_CASES, ids=_ids)
def test_autocast_cpu_gives_nn_dtypes(backend, case) -> None:
    nn_class, kwargs = case
    reference, fused = module_pair(nn_class, 4, 6, backend=backend, **kwargs)
    x = torch.randn(5, 3, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, want = flatten(fused(x)), flatten(reference(x))
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype
        # bf16 storage of the result (2**-8 relative) plus nn's own bf16 GEMMs.
        torch.testing.assert_close(g.float(), w.float(), atol=3e-2, rtol=0)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_bitwise_deterministic_with_dropout(backend) -> None:
    def run() -> list[torch.Tensor]:
        torch.manual_seed(11)
        model = rnnkernels.FusedLSTM(8, 32, num_layers=3, dropout=0.3, bidirectional=True,
                                     backend=backend)
        x = torch.randn(20, 7, 8, requires_grad=True)
        output, (h, c) = model(x)
        (output.square().sum() + h.sum() + c.sum()).backward()
        return [output, h, c, x.grad, *(p.grad for p in model.parameters())]

    for a, b in zip(run(), run(), strict=True):
        assert torch.equal(a, b)


def _strided(t: torch.Tensor) -> torch.Tensor:
    """The same values, stored with a stride of 2 in the last dimension."""
    return torch.stack([t, torch.zeros_like(t)], -1).flatten(-2)[..., ::2]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", NN_CASES, ids=_ids)
def test_non_contiguous_and_expanded_inputs(backend, case) -> None:
    nn_class, kwargs = case
    reference, fused = module_pair(nn_class, 4, 6, num_layers=2, bidirectional=True,
                                   backend=backend, **kwargs)
    base = torch.randn(3, 5, 4)
    for x in (base.transpose(0, 1), _strided(torch.randn(5, 3, 4)),
              torch.randn(5, 1, 4).expand(5, 3, 4)):
        assert_parity(reference, fused, [x.requires_grad_(), None])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", NN_CASES, ids=_ids)
def test_non_contiguous_and_expanded_weights(backend, case) -> None:
    nn_class, kwargs = case
    reference, fused = module_pair(nn_class, 4, 6, backend=backend, **kwargs)
    weights = {name: _strided(p.detach()) for name, p in reference.named_parameters()}
    weights["weight_hh_l0"] = weights["weight_hh_l0"][:1].expand_as(weights["weight_hh_l0"])
    x = torch.randn(5, 3, 4)
    got = flatten(torch.func.functional_call(fused, weights, (x,)))
    want = flatten(torch.func.functional_call(reference, weights, (x,)))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", NN_CASES, ids=_ids)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1e30, -1e30, 60.0])
@pytest.mark.parametrize("hidden", [6, 40])
def test_extreme_values_propagate_as_in_nn(backend, case, value, hidden) -> None:
    """Non-finite and saturating pre-activations, on scalar units (6) and on SIMD vectors
    and vector pairs (40), whose exp and reciprocal are approximations of their own."""
    nn_class, kwargs = case
    reference, fused = module_pair(nn_class, 4, hidden, backend=backend, **kwargs)
    x = torch.randn(5, 3, 4)
    x[2, 1, 0] = value
    for g, w in zip(flatten(fused(x)), flatten(reference(x)), strict=True):
        assert torch.equal(torch.isnan(g), torch.isnan(w))
        # Relative too: a ReLU RNN carries 1e30 through its sums unsaturated.
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5, equal_nan=True)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", NN_CASES, ids=_ids)
def test_empty_batch_matches_nn(backend, case) -> None:
    nn_class, kwargs = case
    reference, fused = module_pair(nn_class, 4, 6, num_layers=2, backend=backend, **kwargs)
    x = torch.randn(5, 0, 4, requires_grad=True)
    got, want = flatten(fused(x)), flatten(reference(x))
    assert [g.shape for g in got] == [w.shape for w in want]
    sum(g.sum() for g in got).backward()
    assert x.grad.shape == x.shape


def test_sizes_beyond_32_bit_gemm_are_refused_before_allocating() -> None:
    if not rnnkernels.backend_info()["available"]["cpp"]:
        pytest.skip("needs the C++ build")
    from rnnkernels import _ops

    steps, batch = 2**16, 2**15  # 2**31 rows, from an expanded input with no memory behind it
    x = torch.zeros(1, 1, 1).expand(steps, batch, 1)
    w_ih, w_hh, h0 = torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(batch, 1)
    with pytest.raises(RuntimeError, match="too large for 32-bit GEMM"):
        _ops.forward_op("rnn_tanh")(x, [], h0, None, w_ih, w_hh, None, None, None, False)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_backward_in_eval_mode(backend) -> None:
    reference, fused = module_pair(nn.GRU, 4, 6, num_layers=2, dropout=0.5, backend=backend)
    reference.eval()
    fused.eval()
    assert_parity(reference, fused, [torch.randn(5, 3, 4, requires_grad=True), None])
