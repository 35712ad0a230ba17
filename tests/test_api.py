"""The Fused modules behave as their torch.nn twins outside the math: constructor,
parameters, state_dict, conversions, copying, devices, weight re-reading; and the
backend selection rules."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

import rnnkernels
from rnnkernels import _backend
from conftest import CPU_BACKENDS, FUSED_OF, module_pair

SEQUENCE_CONFIGS = [
    (nn.LSTM, dict(input_size=5, hidden_size=7, num_layers=2, bidirectional=True, proj_size=3)),
    (nn.LSTM, dict(input_size=5, hidden_size=7, bias=False, batch_first=True, dropout=0.2,
                   num_layers=2)),
    (nn.GRU, dict(input_size=5, hidden_size=7, num_layers=3, bidirectional=True)),
    (nn.RNN, dict(input_size=5, hidden_size=7, nonlinearity="relu", num_layers=2)),
]
CELL_CONFIGS = [(nn.LSTMCell, dict(input_size=5, hidden_size=7)),
                (nn.GRUCell, dict(input_size=5, hidden_size=7, bias=False)),
                (nn.RNNCell, dict(input_size=5, hidden_size=7, nonlinearity="relu"))]
ALL_CONFIGS = SEQUENCE_CONFIGS + CELL_CONFIGS


def _ids(config) -> str:
    return config[0].__name__


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=_ids)
def test_parameters_and_init_match_nn(config) -> None:
    nn_class, kwargs = config
    torch.manual_seed(3)
    reference = nn_class(**kwargs)
    torch.manual_seed(3)
    fused = FUSED_OF[nn_class](**kwargs)
    assert [n for n, _ in fused.named_parameters()] == [n for n, _ in reference.named_parameters()]
    for (name, p), q in zip(fused.named_parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q), name
    assert repr(fused).split("(", 1)[1] == repr(reference).split("(", 1)[1]


@pytest.mark.parametrize("config", SEQUENCE_CONFIGS, ids=_ids)
def test_state_dict_round_trip_strict(config) -> None:
    nn_class, kwargs = config
    reference, fused = module_pair(nn_class, **kwargs)
    nn_class(**kwargs).load_state_dict(fused.state_dict(), strict=True)
    FUSED_OF[nn_class](**kwargs).load_state_dict(reference.state_dict(), strict=True)
    assert [[p.shape for p in ws] for ws in fused.all_weights] == \
        [[p.shape for p in ws] for ws in reference.all_weights]


@pytest.mark.parametrize("config", SEQUENCE_CONFIGS, ids=_ids)
def test_from_torch_and_to_torch(config) -> None:
    nn_class, kwargs = config
    reference = nn_class(**kwargs).eval()
    fused = FUSED_OF[nn_class].from_torch(reference)
    assert not fused.training
    x = torch.randn(3, 4, 5)
    torch.testing.assert_close(fused(x)[0], reference(x)[0], atol=1e-5, rtol=0)
    back = fused.to_torch()
    assert type(back) is nn_class
    torch.testing.assert_close(back(x)[0], reference(x)[0], atol=0, rtol=0)
    with pytest.raises(TypeError, match="expects"):
        FUSED_OF[nn_class].from_torch(nn.Linear(2, 2))


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=_ids)
def test_constructor_errors_match_nn(config) -> None:
    nn_class, kwargs = config
    bad_variants = [dict(hidden_size=0), dict(hidden_size=-1), dict(input_size=2.5)]
    if nn_class in (nn.LSTM, nn.GRU, nn.RNN):
        bad_variants += [dict(dropout=1.5), dict(num_layers=0), dict(proj_size=7),
                         dict(proj_size=-1), dict(nonlinearity="sigmoid")]
    for change in bad_variants:
        args = {**kwargs, **change}
        try:
            nn_class(**args)
        except Exception as expected:  # noqa: BLE001 - compare whatever nn raises
            with pytest.raises(type(expected)) as raised:
                FUSED_OF[nn_class](**args)
            assert str(raised.value) == str(expected)
        else:
            FUSED_OF[nn_class](**args)


def test_rnn_positional_nonlinearity() -> None:
    module = rnnkernels.FusedRNN(4, 5, 2, "relu")
    assert module.nonlinearity == "relu" and module.num_layers == 2


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=_ids)
def test_pickle_deepcopy_double_and_meta(config) -> None:
    nn_class, kwargs = config
    fused = FUSED_OF[nn_class](**kwargs)
    for clone in (pickle.loads(pickle.dumps(fused)), copy.deepcopy(fused)):
        assert type(clone) is type(fused)
        for p, q in zip(clone.parameters(), fused.parameters(), strict=True):
            assert torch.equal(p, q)
    doubled = copy.deepcopy(fused).double()
    assert all(p.dtype == torch.float64 for p in doubled.parameters())
    x = torch.randn(3, 5, dtype=torch.float64) if "Cell" in nn_class.__name__ \
        else torch.randn(2, 3, 5, dtype=torch.float64)
    doubled(x)
    with torch.device("meta"):
        meta = FUSED_OF[nn_class](**kwargs)
    assert all(p.is_meta for p in meta.parameters())
    meta.to_empty(device="cpu")
    assert all(p.device.type == "cpu" for p in meta.parameters())


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_weights_are_read_on_every_call(backend) -> None:
    reference, fused = module_pair(nn.LSTM, 4, 6, backend=backend)
    x = torch.randn(3, 2, 4)
    with torch.no_grad():
        fused.weight_hh_l0.mul_(0.5)
        reference.weight_hh_l0.mul_(0.5)
    torch.testing.assert_close(fused(x)[0], reference(x)[0], atol=1e-5, rtol=0)
    torch.nn.utils.weight_norm(fused, "weight_hh_l0")
    torch.nn.utils.weight_norm(reference, "weight_hh_l0")
    torch.testing.assert_close(fused(x)[0], reference(x)[0], atol=1e-5, rtol=0)
    fused(x)[0].sum().backward()
    assert fused.weight_hh_l0_g.grad is not None


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_functional_call_uses_given_weights(backend) -> None:
    reference, fused = module_pair(nn.GRU, 4, 6, backend=backend)
    other = {name: torch.randn_like(p) for name, p in fused.named_parameters()}
    x = torch.randn(3, 2, 4)
    got = torch.func.functional_call(fused, other, (x,))[0]
    want = torch.func.functional_call(reference, other, (x,))[0]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_dropout_in_training_uses_torch_rng() -> None:
    fused = rnnkernels.FusedLSTM(4, 6, num_layers=3, dropout=0.5)
    x = torch.randn(5, 2, 4)
    torch.manual_seed(7)
    first = fused(x)[0]
    torch.manual_seed(7)
    again = fused(x)[0]
    other = fused(x)[0]
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    fused.eval()
    assert torch.equal(fused(x)[0], fused(x)[0])


def test_flatten_parameters_is_a_no_op() -> None:
    fused = rnnkernels.FusedLSTM(4, 6)
    before = [p.data_ptr() for p in fused.parameters()]
    fused.flatten_parameters()
    assert [p.data_ptr() for p in fused.parameters()] == before


def test_backend_info_reports_builds() -> None:
    info = rnnkernels.backend_info()
    assert info["torch"] == torch.__version__
    assert set(info["available"]) == {"cuda", "cpp", "python"}
    assert info["available"]["python"]
    assert info["compiled"]["cuda"] == bool(info["cuda_archs"])
    for name, available in info["available"].items():
        assert available == (name not in info["unavailable_reasons"])


def test_unknown_backend_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown rnnkernels backend 'fast'"):
        rnnkernels.FusedLSTM(2, 3, backend="fast")(torch.randn(2, 1, 2))


def test_missing_backend_is_an_error_with_reason() -> None:
    if rnnkernels.backend_info()["available"]["cuda"]:
        pytest.skip("cuda is available here")
    with pytest.raises(RuntimeError, match="backend 'cuda' is not available: "):
        rnnkernels.FusedGRU(2, 3, backend="cuda")(torch.randn(2, 1, 2))


@pytest.mark.skipif("cpp" not in CPU_BACKENDS, reason="needs the C++ build")
def test_env_var_selects_backend(monkeypatch) -> None:
    monkeypatch.setenv("RNNKERNELS_BACKEND", "python")
    assert _backend.resolve_backend(None, torch.device("cpu")) == "python"
    assert _backend.resolve_backend("cpp", torch.device("cpu")) == "cpp"
    monkeypatch.delenv("RNNKERNELS_BACKEND")
    assert _backend.resolve_backend(None, torch.device("cpu")) == "cpp"


def test_automatic_fallback_warns_once_with_reason(monkeypatch) -> None:
    monkeypatch.setattr(_backend, "_C", None)
    monkeypatch.setattr(_backend, "_LOAD_ERROR", "ImportError: broken on purpose")
    monkeypatch.setattr(_backend, "_warned", set())
    monkeypatch.delenv("RNNKERNELS_BACKEND", raising=False)
    with pytest.warns(RuntimeWarning, match="broken on purpose"):
        assert _backend.resolve_backend(None, torch.device("cpu")) == "python"
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _backend.resolve_backend(None, torch.device("cpu")) == "python"
    with pytest.raises(RuntimeError, match="broken on purpose"):
        _backend.resolve_backend("cpp", torch.device("cpu"))
