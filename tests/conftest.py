"""Shared test helpers: which backends run here, model pairs with equal weights, and a
spy on the fused backward ops."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import rnnkernels
from rnnkernels import _backend, _bidirectional, _ops

PYTHON_ONLY_VAR = "RNNKERNELS_PYTHON_ONLY"


def pytest_configure(config: pytest.Config) -> None:
    """Without the compiled kernels every test of them would skip and the run look green:
    that takes saying so (RNNKERNELS_PYTHON_ONLY=1, as for a Python-only install)."""
    if _backend._C is None and os.environ.get(PYTHON_ONLY_VAR) != "1":
        raise pytest.UsageError(
            f"rnnkernels._C did not load ({_backend.unavailable_reason('cpp')}), so the "
            "kernels would go untested. Build them (pip install --no-build-isolation -e .), "
            f"or set {PYTHON_ONLY_VAR}=1 to test the Python backend alone.")

CPU_BACKENDS = [b for b in ("cpp", "python") if rnnkernels.backend_info()["available"][b]]
FUSED_OF = {
    nn.LSTM: rnnkernels.FusedLSTM,
    nn.GRU: rnnkernels.FusedGRU,
    nn.RNN: rnnkernels.FusedRNN,
    nn.LSTMCell: rnnkernels.FusedLSTMCell,
    nn.GRUCell: rnnkernels.FusedGRUCell,
    nn.RNNCell: rnnkernels.FusedRNNCell,
}

requires_cuda = pytest.mark.skipif(
    not rnnkernels.backend_info()["available"]["cuda"], reason="needs a GPU and the CUDA build")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request):
    """torch's intra-op threads for the test (the CPU kernels' one- and two-thread paths)."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def module_pair(nn_class: type, *args, backend: str | None = None, **kwargs) -> tuple[nn.Module, nn.Module]:
    """(nn module, Fused module) with the same weights."""
    reference = nn_class(*args, **kwargs)
    fused = FUSED_OF[nn_class](*args, backend=backend, **kwargs)
    fused.load_state_dict(reference.state_dict())
    return reference, fused


def flatten(value) -> list[torch.Tensor]:
    """Every tensor in a (nested) module output, PackedSequence data included."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, nn.utils.rnn.PackedSequence):
        return [value.data]
    return [t for item in value for t in flatten(item)]


def outputs_and_grads(module: nn.Module, inputs: list) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Outputs of module(*inputs), and the gradients of a fixed random projection of them
    with respect to every input tensor that requires grad and every parameter."""
    outputs = flatten(module(*inputs))
    generator = torch.Generator().manual_seed(1)
    loss = sum((o * torch.randn(o.shape, generator=generator, dtype=o.dtype).to(o.device)).sum()
               for o in outputs)
    wrt = [t for t in flatten([i for i in inputs if i is not None]) if t.requires_grad]
    wrt += list(module.parameters())
    return outputs, list(torch.autograd.grad(loss, wrt))


def assert_parity(reference: nn.Module, fused: nn.Module, inputs: list, atol: float = 1e-5) -> None:
    """Outputs/states within atol; gradients within atol of their largest magnitude."""
    ref_out, ref_grads = outputs_and_grads(reference, inputs)
    out, grads = outputs_and_grads(fused, inputs)
    assert len(out) == len(ref_out)
    for got, want in zip(out, ref_out, strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype
        torch.testing.assert_close(got, want, atol=atol, rtol=0)
    assert len(grads) == len(ref_grads)
    for got, want in zip(grads, ref_grads, strict=True):
        scale = max(want.abs().max().item(), 1e-30)
        torch.testing.assert_close(got, want, atol=atol * scale, rtol=0)


@pytest.fixture
def fused_backward_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The fused backward ops run during the test, by name, in order: their autograd
    formulas look each op up by name at every call (_ops.py, _bidirectional.py)."""
    calls: list[str] = []

    def spy_on(module: object, lookup: str, kind: str) -> None:
        original: Callable = getattr(module, lookup)

        def spying_lookup(cell: str) -> Callable:
            op = original(cell)

            def run(*args, **kwargs):
                calls.append(f"{cell}_{kind}")
                return op(*args, **kwargs)

            return run

        monkeypatch.setattr(module, lookup, spying_lookup)

    spy_on(_ops, "backward_op", "layer_backward")
    spy_on(_ops, "cell_backward_op", "cell_backward")
    spy_on(_bidirectional, "backward_op", "bidirectional_backward")
    return calls


class OpLog(TorchDispatchMode):
    """Every op dispatched below autograd while it is active, in order, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))
