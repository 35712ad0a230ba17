"""PyTorch's own ModuleInfo samples for nn.RNN/GRU/LSTM and the cells (the inputs and
error cases its test_modules.py runs), replayed on the Fused classes."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence
from torch.testing._internal.common_modules import ModuleErrorEnum, module_db

from conftest import CPU_BACKENDS, FUSED_OF, flatten

INFOS = [info for info in module_db if info.module_cls in FUSED_OF]


def _samples(info, dtype: torch.dtype, requires_grad: bool):
    kwargs = {"with_packed_sequence": True} if info.module_cls in (torch.nn.RNN, torch.nn.GRU) else {}
    return info.module_inputs_func(info, device="cpu", dtype=dtype, requires_grad=requires_grad,
                                   training=True, **kwargs)


def _build_pair(info, sample, dtype: torch.dtype, backend: str):
    args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
    torch.manual_seed(0)
    reference = info.module_cls(*args, **kwargs).to(dtype)
    torch.manual_seed(0)
    fused = FUSED_OF[info.module_cls](*args, backend=backend, **kwargs).to(dtype)
    return reference, fused


def _noncontiguous(value):
    """The same values in a tensor with a stride-2 last dimension."""
    if isinstance(value, torch.Tensor):
        wide = torch.stack([value.detach(), value.detach()], -1).flatten(-2)
        return wide[..., ::2].requires_grad_(value.requires_grad)
    if isinstance(value, PackedSequence):
        return value._replace(data=_noncontiguous(value.data))
    if isinstance(value, tuple):
        return tuple(_noncontiguous(v) for v in value)
    return value


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("info", INFOS, ids=lambda i: i.module_cls.__name__)
def test_module_inputs_match_nn(info, backend) -> None:
    for sample in _samples(info, torch.float32, requires_grad=True):
        reference, fused = _build_pair(info, sample, torch.float32, backend)
        for p, q in zip(fused.parameters(), reference.parameters(), strict=True):
            assert torch.equal(p, q)
        inputs = sample.forward_input.args
        for variant in (inputs, tuple(_noncontiguous(v) for v in inputs)):
            got, want = flatten(fused(*variant)), flatten(reference(*variant))
            for g, w in zip(got, want, strict=True):
                assert g.shape == w.shape
                torch.testing.assert_close(g, w, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("info", INFOS, ids=lambda i: i.module_cls.__name__)
def test_module_inputs_gradcheck(info, backend) -> None:
    for sample in _samples(info, torch.float64, requires_grad=True)[:6]:
        _, fused = _build_pair(info, sample, torch.float64, backend)
        inputs = [t for t in flatten(sample.forward_input.args)]
        params = list(fused.parameters())
        names = [n for n, _ in fused.named_parameters()]
        structure = sample.forward_input.args

        def run(*tensors):
            values = dict(zip(names, tensors[len(inputs):], strict=True))
            it = iter(tensors[:len(inputs)])
            rebuilt = tuple(a._replace(data=next(it)) if isinstance(a, PackedSequence)
                            else tuple(next(it) for _ in a) if isinstance(a, tuple)
                            else next(it) for a in structure)
            return tuple(flatten(torch.func.functional_call(fused, values, rebuilt)))

        leaves = [t.detach().requires_grad_() for t in inputs] + \
                 [p.detach().requires_grad_() for p in params]
        assert torch.autograd.gradcheck(run, leaves, check_batched_grad=True)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("info", INFOS, ids=lambda i: i.module_cls.__name__)
def test_module_error_inputs(info, backend) -> None:
    fused_class = FUSED_OF[info.module_cls]
    errors = info.module_error_inputs_func(info, device="cpu", dtype=torch.float32,
                                           requires_grad=False, training=True)
    assert errors
    for error in errors:
        sample = error.module_error_input
        args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
        with pytest.raises(error.error_type, match=error.error_regex):
            module = fused_class(*args, backend=backend, **kwargs)
            if error.error_on == ModuleErrorEnum.FORWARD_ERROR:
                module(*sample.forward_input.args, **sample.forward_input.kwargs)
