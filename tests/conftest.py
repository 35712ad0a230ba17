"""Shared test helpers: which backends run here, model pairs with equal weights, a spy on
the fused backward ops, and the op and module cases several test files use."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence
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


# The op and module cases several test files share.
FUSED_MODULES = {
    "lstm": (rnnkernels.FusedLSTM, {}),
    "lstm-proj": (rnnkernels.FusedLSTM, {"proj_size": 2}),
    "gru": (rnnkernels.FusedGRU, {}),
    "rnn-tanh": (rnnkernels.FusedRNN, {"nonlinearity": "tanh"}),
    "rnn-relu": (rnnkernels.FusedRNN, {"nonlinearity": "relu"}),
}


def module_as_function(module: torch.nn.Module, packed_lengths: torch.Tensor | None = None):
    """f(x, h0, [c0,] *params) -> outputs, for gradcheck."""
    names = [name for name, _ in module.named_parameters()]
    has_cell = module.mode == "LSTM"

    def run(x, *rest):
        states, params = (rest[:2], rest[2:]) if has_cell else (rest[:1], rest[1:])
        hx = tuple(states) if has_cell else states[0]
        inputs = pack_padded_sequence(x, packed_lengths) if packed_lengths is not None else x
        output, hidden = functional_call(module, dict(zip(names, params, strict=True)),
                                         (inputs, hx))
        data = output.data if packed_lengths is not None else output
        return (data, *hidden) if has_cell else (data, hidden)

    return run


def gradcheck_inputs(module: torch.nn.Module, steps: int = 3, batch: int = 2) -> list[torch.Tensor]:
    layers = module.num_layers * (2 if module.bidirectional else 1)
    h_size = getattr(module, "proj_size", 0) or module.hidden_size
    options = dict(dtype=torch.float64, requires_grad=True)
    tensors = [torch.randn(steps, batch, module.input_size, **options),
               torch.randn(layers, batch, h_size, **options)]
    if module.mode == "LSTM":
        tensors.append(torch.randn(layers, batch, module.hidden_size, **options))
    return tensors + [p.detach().clone().requires_grad_() for p in module.parameters()]


OP_CASES = [  # (cell, with projection, packed batch sizes or [] for padded)
    ("lstm", False, []),
    ("lstm", True, []),
    ("lstm", False, [3, 2, 2, 1]),
    ("gru", False, []),
    ("gru", False, [3, 2, 2, 1]),
    ("rnn_tanh", False, []),
    ("rnn_relu", False, [3, 2, 2, 1]),
]


def op_case_id(case: tuple) -> str:
    return f"{case[0]}-proj{int(case[1])}-packed{int(bool(case[2]))}"


def op_forward_args(cell: str, projects: bool, batch_sizes: list[int], device: str = "cpu",
                  dtype: torch.dtype = torch.float64, reverse: bool = False) -> tuple:
    hidden, inputs, proj = 4, 3, 2
    out_size = proj if projects else hidden
    gates = _ops.GATES[cell] * hidden

    def make(*shape):
        return torch.randn(*shape, dtype=dtype, device=device, requires_grad=True)

    x = make(sum(batch_sizes), inputs) if batch_sizes else make(4, 3, inputs)
    batch = batch_sizes[0] if batch_sizes else 3
    c0 = make(batch, hidden) if cell == "lstm" else None
    w_hr = make(proj, hidden) if projects else None
    return (x, batch_sizes, make(batch, out_size), c0, make(gates, inputs), make(gates, out_size),
            make(gates), make(gates), w_hr, reverse)


def op_backward_args(cell: str, forward_args: tuple) -> tuple:
    x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse = forward_args
    with torch.no_grad():
        output, h_n, c_n, saved, h_prev, c_prev, r_seq = _ops.forward_op(cell)(*forward_args)
    grad_c_n = torch.randn_like(c_n) if cell == "lstm" else None
    return (torch.randn_like(output), torch.randn_like(h_n), grad_c_n, x.detach(), batch_sizes,
            w_ih.detach(), w_hh.detach(), True, None if w_hr is None else w_hr.detach(), saved,
            h_prev, c_prev, r_seq, reverse)


def cell_op_forward_args(cell: str, device: str = "cpu", bias: bool = True) -> tuple:
    hidden, inputs = 4, 3
    gates = _ops.GATES[cell] * hidden

    def make(*shape):
        return torch.randn(*shape, dtype=torch.float64, device=device, requires_grad=True)

    c = make(2, hidden) if cell == "lstm" else None
    return (make(2, inputs), make(2, hidden), c, make(gates, inputs), make(gates, hidden),
            make(gates) if bias else None, make(gates) if bias else None)


def cell_op_backward_args(cell: str, forward_args: tuple) -> tuple:
    x, h, c, w_ih, w_hh, b_ih, b_hh = forward_args
    with torch.no_grad():
        h_new, c_new, saved, c_prev = _ops.cell_forward_op(cell)(*forward_args)
    return (torch.randn_like(h_new), torch.randn_like(c_new) if cell == "lstm" else None,
            x.detach(), h.detach(), w_ih.detach(), w_hh.detach(), b_ih is not None, saved, c_prev)


def float32_op_args(cell: str, projects: bool, batch_sizes: list[int], reverse: bool) -> tuple:
    """Sizes that take the persistent kernels' two-thread, partial-block paths (H = 40)."""
    hidden, inputs, proj, batch = 40, 24, 16, 48
    gates = _ops.GATES[cell] * hidden
    out_size = proj if projects else hidden
    steps = [batch - 2 * t for t in range(6)] if batch_sizes else []
    x = torch.randn(sum(steps), inputs) if steps else torch.randn(6, batch, inputs)
    c0 = torch.randn(batch, hidden) if cell == "lstm" else None
    w_hr = torch.randn(proj, hidden) * 0.2 if projects else None
    return (x, steps, torch.randn(batch, out_size), c0, torch.randn(gates, inputs) * 0.2,
            torch.randn(gates, out_size) * 0.2, torch.randn(gates), torch.randn(gates), w_hr,
            reverse)
