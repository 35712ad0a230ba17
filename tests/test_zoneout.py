"""Zoneout (FusedLSTM, FusedGRU, LayerNormLSTM, LayerNormGRU): p = 0 changes nothing, eval
is the expectation, training masks follow torch's RNG at the rate p, per step and unit,
and the fused kernels' gradients hold (gradcheck with the mask's seed fixed)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import rnnkernels
from conftest import CPU_BACKENDS, gradcheck_inputs, module_as_function
from rnnkernels import FusedGRU, FusedLSTM, LayerNormGRU, LayerNormLSTM

ZONEOUT_MODULES = {"lstm": FusedLSTM, "gru": FusedGRU, "ln-lstm": LayerNormLSTM,
                   "ln-gru": LayerNormGRU}


def _hidden_sequence(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """h_0, h_1, ..., h_T of a one-layer module on x [T, B, I], h_0 = 0."""
    output, _ = module(x)
    return torch.cat([torch.zeros_like(output[:1]), output])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_zero_zoneout_is_no_zoneout(kind, backend) -> None:
    torch.manual_seed(0)
    plain = ZONEOUT_MODULES[kind](4, 8, num_layers=2, backend=backend)
    zoned = ZONEOUT_MODULES[kind](4, 8, num_layers=2, zoneout=0.0, backend=backend)
    zoned.load_state_dict(plain.state_dict())
    x = torch.randn(5, 3, 4)
    for a, b in zip(plain(x)[1], zoned(x)[1]) if kind == "lstm" else [(plain(x)[0], zoned(x)[0])]:
        assert torch.equal(a, b)
    nn_twin = plain.to_torch()
    torch.testing.assert_close(zoned(x)[0], nn_twin(x)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("kind", ZONEOUT_MODULES)
def test_eval_is_the_expectation(kind, backend) -> None:
    """In eval h_t = p * h_(t-1) + (1 - p) * h_t: each step of the zoned module equals that
    mix of its previous state and the plain cell's step from it (float64, rounding only)."""
    p = 0.3
    zoned = ZONEOUT_MODULES[kind](3, 5, zoneout=p, dtype=torch.float64, backend=backend).eval()
    plain = ZONEOUT_MODULES[kind](3, 5, dtype=torch.float64, backend=backend).eval()
    plain.load_state_dict(zoned.state_dict())
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    output, hidden = zoned(x)
    h = torch.zeros(1, 2, 5, dtype=torch.float64)
    c = torch.zeros(1, 2, 5, dtype=torch.float64)
    for t in range(x.shape[0]):
        if isinstance(hidden, tuple):
            stepped, (_, c) = plain(x[t : t + 1], (h, c))
        else:
            stepped, _ = plain(x[t : t + 1], h)
        h = p * h + (1 - p) * stepped
        torch.testing.assert_close(output[t], h[0], rtol=0, atol=1e-14)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("kind", ZONEOUT_MODULES)
def test_training_keeps_units_at_rate_p_per_step_and_unit(kind, backend) -> None:
    """A kept unit repeats h_(t-1) exactly (m = 0: 0 * h' + 1 * h); an updated one takes a
    new continuous value, equal to the old with probability zero. Over n = T*B*H draws the
    kept fraction is p within 6 standard deviations, sqrt(p (1 - p) / n) (a false failure
    about once in 10^9 runs); the same for agreement between consecutive steps' masks
    (p^2 + (1 - p)^2 for independent draws) and between neighbouring units."""
    p = 0.3
    torch.manual_seed(0)
    module = ZONEOUT_MODULES[kind](4, 64, zoneout=p, backend=backend)
    h = _hidden_sequence(module, torch.randn(50, 32, 4))
    kept = (h[1:] == h[:-1]).double()  # [T, B, H]
    n = kept.numel()
    assert abs(kept.mean().item() - p) <= 6 * math.sqrt(p * (1 - p) / n)
    agree = p * p + (1 - p) * (1 - p)
    across_steps = (kept[1:] == kept[:-1]).double()
    sigma = math.sqrt(agree * (1 - agree) / across_steps.numel())
    assert abs(across_steps.mean().item() - agree) <= 6 * sigma
    across_units = (kept[..., 1:] == kept[..., :-1]).double()
    sigma = math.sqrt(agree * (1 - agree) / across_units.numel())
    assert abs(across_units.mean().item() - agree) <= 6 * sigma


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("kind", ZONEOUT_MODULES)
def test_seeded_runs_are_bitwise_equal(kind, backend) -> None:
    module = ZONEOUT_MODULES[kind](4, 16, num_layers=2, bidirectional=True, zoneout=0.5,
                                   backend=backend)
    x = torch.randn(7, 3, 4)
    torch.manual_seed(123)
    first = module(x)[0]
    torch.manual_seed(123)
    second = module(x)[0]
    third = module(x)[0]  # the RNG moved on: another mask
    assert torch.equal(first, second)
    assert not torch.equal(first, third)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("kind", ZONEOUT_MODULES)
def test_backends_draw_the_same_masks(kind, backend) -> None:
    """The mask comes from torch's RNG before either backend runs: with one seed, the fused
    kernels and the reference zone out the same units."""
    module = ZONEOUT_MODULES[kind](4, 16, zoneout=0.5, backend=backend)
    x = torch.randn(7, 3, 4)
    torch.manual_seed(5)
    ours = module(x)[0]
    module.backend = "python"
    torch.manual_seed(5)
    torch.testing.assert_close(ours, module(x)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", ZONEOUT_MODULES)
def test_gradcheck_with_zoneout(kind, bidirectional, backend) -> None:
    module = ZONEOUT_MODULES[kind](3, 4, num_layers=2, bidirectional=bidirectional,
                                   zoneout=0.4, dtype=torch.float64, backend=backend)
    run = module_as_function(module)

    def seeded(*args):
        torch.manual_seed(0)  # the same masks at every evaluation
        return run(*args)

    assert torch.autograd.gradcheck(seeded, gradcheck_inputs(module))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("kind", ["lstm", "ln-gru"])
def test_gradgradcheck_with_zoneout(kind, backend) -> None:
    """Double backward comes from the reference math: it must see the same mask."""
    module = ZONEOUT_MODULES[kind](2, 3, zoneout=0.5, dtype=torch.float64, backend=backend)
    run = module_as_function(module)

    def seeded(*args):
        torch.manual_seed(1)
        return run(*args)

    assert torch.autograd.gradgradcheck(seeded, gradcheck_inputs(module, steps=3))


@pytest.mark.skipif(not rnnkernels.backend_info()["compiled"]["cpp"],
                    reason="the C++ extension is not built")
@pytest.mark.parametrize("kind", ["lstm", "ln-gru"])
def test_gradients_with_a_graph_see_the_mask(kind) -> None:
    """With create_graph the op's gradient comes from the reference math (differentiable):
    it must equal the fused backward's, mask included (gradgradcheck alone would not see a
    lost mask: it differentiates that same first-order path)."""
    module = ZONEOUT_MODULES[kind](2, 3, zoneout=0.5, dtype=torch.float64, backend="cpp")
    x = torch.randn(5, 2, 2, dtype=torch.float64, requires_grad=True)
    results = []
    for create_graph in (False, True):
        torch.manual_seed(4)
        output = module(x)[0]
        results.append(torch.autograd.grad(output.pow(2).sum(), [x, *module.parameters()],
                                           create_graph=create_graph))
    for got, want in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_forward_mode_with_zoneout(backend) -> None:
    """Forward mode through the op (its jvp: the reference math on the op's mask) equals the
    python backend's on the same seed. (forward_ad, not torch.func: under torch.func the
    module runs the reference math itself.)"""
    from torch.autograd import forward_ad

    module = FusedGRU(2, 3, zoneout=0.5, dtype=torch.float64)
    x, t = torch.randn(4, 2, 2, dtype=torch.float64), torch.randn(4, 2, 2, dtype=torch.float64)
    results = []
    for name in (backend, "python"):
        module.backend = name
        torch.manual_seed(2)
        with forward_ad.dual_level():
            output = module(forward_ad.make_dual(x, t))[0]
            results.append(forward_ad.unpack_dual(output))
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("zoneout", [-0.1, 1.5, "0.2", True])
def test_bad_zoneout_is_an_error(zoneout) -> None:
    with pytest.raises(ValueError, match="zoneout should be a number in the range"):
        FusedGRU(3, 4, zoneout=zoneout)


def test_zoneout_with_projection_is_an_error() -> None:
    with pytest.raises(ValueError, match="zoneout is not supported together with proj_size"):
        FusedLSTM(3, 4, proj_size=2, zoneout=0.1)


def test_to_torch_refuses_zoneout() -> None:
    with pytest.raises(ValueError, match="nn has no zoneout"):
        FusedLSTM(3, 4, zoneout=0.1).to_torch()


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_onnx_export_is_a_clear_error(dynamo, tmp_path) -> None:
    if dynamo:
        pytest.importorskip("onnxscript")
        if not rnnkernels.backend_info()["compiled"]["cpp"]:
            pytest.skip("the dynamo exporter traces the python backend's plain ops through")
    with pytest.raises(Exception, match="FusedGRU (with zoneout )?cannot be exported to ONNX"):
        torch.onnx.export(FusedGRU(3, 4, zoneout=0.2).eval(), (torch.randn(2, 1, 3),),
                          str(tmp_path / "m.onnx"), dynamo=dynamo)


def test_repr_names_zoneout() -> None:
    assert "zoneout=0.2" in repr(FusedLSTM(3, 4, zoneout=0.2))
    assert "zoneout" not in repr(FusedLSTM(3, 4))


@pytest.mark.skipif(not rnnkernels.backend_info()["compiled"]["cpp"],
                    reason="the C++ extension is not built")
def test_torch_compile_fullgraph_in_training() -> None:
    """The mask is drawn inside the compiled graph: with one seed, eager and compiled zone
    out the same units."""
    torch._dynamo.reset()
    module = FusedLSTM(4, 8, zoneout=0.3)
    x = torch.randn(5, 3, 4)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    torch.manual_seed(9)
    eager = module(x)[0]
    torch.manual_seed(9)
    traced = compiled(x)[0]
    torch.testing.assert_close(traced, eager)
    traced.sum().backward()
    assert module.weight_hh_l0.grad is not None
