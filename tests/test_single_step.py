"""The cells' lean inference call (rnnkernels/_single_step.py): one op per step, the same
numbers as every other path that runs a single step, and the full path wherever the lean
call cannot see what the call needs."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import rnnkernels
from rnnkernels import _single_step
from conftest import module_pair

pytestmark = pytest.mark.skipif(not rnnkernels.backend_info()["available"]["cpp"],
                                reason="needs the C++ build")

# (nn class, constructor kwargs, the op's cell name)
CELLS = {
    "LSTMCell": (nn.LSTMCell, {}, "lstm"),
    "GRUCell": (nn.GRUCell, {}, "gru"),
    "RNNCell-tanh": (nn.RNNCell, {}, "rnn_tanh"),
    "RNNCell-relu": (nn.RNNCell, {"nonlinearity": "relu"}, "rnn_relu"),
}
SEQUENCE_OF = {nn.LSTMCell: nn.LSTM, nn.GRUCell: nn.GRU, nn.RNNCell: nn.RNN}


class _OpLog(TorchDispatchMode):
    """Every op dispatched below autograd, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def _state(nn_class: type, batch: tuple[int, ...], hidden: int, dtype=torch.float32):
    h = torch.randn(*batch, hidden, dtype=dtype)
    return (h, torch.randn(*batch, hidden, dtype=dtype)) if nn_class is nn.LSTMCell else h


def _as_tuple(result) -> tuple[torch.Tensor, ...]:
    return result if isinstance(result, tuple) else (result,)


@pytest.mark.parametrize("batch", [(3,), ()], ids=["batched", "unbatched"])
@pytest.mark.parametrize("name", list(CELLS))
def test_an_inference_step_dispatches_one_op(name, batch) -> None:
    nn_class, kwargs, cell = CELLS[name]
    _, fused = module_pair(nn_class, 5, 7, **kwargs)
    x, hx = torch.randn(*batch, 5), _state(nn_class, batch, 7)
    with torch.no_grad(), _OpLog() as log:
        fused(x, hx)
    assert log.names == [f"rnnkernels.{cell}_cell_inference"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [(4,), ()], ids=["batched", "unbatched"])
@pytest.mark.parametrize("name", list(CELLS))
def test_every_single_step_path_gives_the_same_bits(name, batch, dtype) -> None:
    """The lean call, the training op's forward and a streaming layer call (T=1, state
    carried) all run the same single-step kernel: bitwise equal results; nn to 1e-5."""
    nn_class, kwargs, _ = CELLS[name]
    reference, fused = module_pair(nn_class, 5, 7, **kwargs)
    reference, fused = reference.to(dtype), fused.to(dtype)
    layer = rnnkernels.modules.__dict__[f"Fused{SEQUENCE_OF[nn_class].__name__}"](
        5, 7, **kwargs).to(dtype)
    layer.load_state_dict({f"{key}_l0": value for key, value in fused.state_dict().items()})
    x, hx = torch.randn(*batch, 5, dtype=dtype), _state(nn_class, batch, 7, dtype)
    with torch.no_grad():
        lean = _as_tuple(_lean_result(fused, x, hx))
        states = tuple(s.unsqueeze(0) for s in _as_tuple(hx))  # [layers, (B,) H]
        _, streamed = layer(x.unsqueeze(0), states if len(states) == 2 else states[0])
        want = _as_tuple(reference(x, hx))
    training = _as_tuple(fused(x, hx))  # the weights require grad: the cell_forward op
    for got, trained, stream, expected in zip(lean, training, _as_tuple(streamed), want,
                                              strict=True):
        assert torch.equal(got, trained.detach())
        assert torch.equal(got, stream.squeeze(0))
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(CELLS))
def test_a_cell_loop_follows_the_sequence_kernel(name) -> None:
    """Steps one at a time against the layer's whole-sequence kernel (its own tile GEMM,
    another summation order): equal to float32 rounding over 20 steps."""
    nn_class, kwargs, _ = CELLS[name]
    _, fused = module_pair(nn_class, 5, 16, **kwargs)
    layer = rnnkernels.modules.__dict__[f"Fused{SEQUENCE_OF[nn_class].__name__}"](5, 16, **kwargs)
    layer.load_state_dict({f"{key}_l0": value for key, value in fused.state_dict().items()})
    x = torch.randn(20, 3, 5)
    with torch.no_grad():
        hx = None
        outputs = []
        for step in x:
            hx = fused(step, hx)
            outputs.append(_as_tuple(hx)[0])
        sequence, _ = layer(x)
    torch.testing.assert_close(torch.stack(outputs), sequence, atol=1e-5, rtol=0)


def _lean_result(module: nn.Module, x: torch.Tensor, hx, backend: str | None = None):
    h, c = hx if isinstance(hx, tuple) else (hx, None)
    return _single_step.inference(module._cell, backend, x, h, c, module.weight_ih,
                                  module.weight_hh, module.bias_ih, module.bias_hh)


def test_the_lean_call_takes_plain_inference() -> None:
    _, fused = module_pair(nn.GRUCell, 5, 7)
    with torch.no_grad():
        assert _lean_result(fused, torch.randn(3, 5), torch.randn(3, 7)) is not None
        assert _lean_result(fused, torch.randn(3, 5), None) is not None
        assert _lean_result(fused, torch.randn(3, 5), None, backend="cpp") is not None


DECLINED = {  # name: (input, state, backend, context)
    "grad": (torch.randn(3, 5), torch.randn(3, 7), None, torch.enable_grad),
    "python-backend": (torch.randn(3, 5), torch.randn(3, 7), "python", torch.no_grad),
    "bfloat16": (torch.randn(3, 5, dtype=torch.bfloat16), None, None, torch.no_grad),
    "state-dtype": (torch.randn(3, 5), torch.randn(3, 7, dtype=torch.float64), None,
                    torch.no_grad),
    "state-batch": (torch.randn(3, 5), torch.randn(2, 7), None, torch.no_grad),
    "state-rank": (torch.randn(5), torch.randn(1, 7), None, torch.no_grad),
    "input-size": (torch.randn(3, 4), None, None, torch.no_grad),
    "autocast": (torch.randn(3, 5), torch.randn(3, 7), None,
                 lambda: torch.autocast("cpu", dtype=torch.bfloat16)),
}


@pytest.mark.parametrize("name", list(DECLINED))
def test_the_lean_call_declines_what_the_full_path_must_handle(name) -> None:
    x, h, backend, context = DECLINED[name]
    _, fused = module_pair(nn.GRUCell, 5, 7)
    with context():
        assert _lean_result(fused, x, h, backend) is None


def test_the_lean_call_declines_while_tracing() -> None:
    _, fused = module_pair(nn.RNNCell, 5, 7)
    fused.requires_grad_(False)  # constants of the trace
    seen = []

    def step(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        seen.append(_lean_result(fused, x, h))
        return fused(x, h)

    with torch.no_grad():
        torch.jit.trace(step, (torch.randn(2, 5), torch.randn(2, 7)), check_trace=False)
    assert seen == [None]


def test_the_lean_call_follows_the_environment_variable(monkeypatch) -> None:
    _, fused = module_pair(nn.RNNCell, 5, 7)
    x, h = torch.randn(2, 5), torch.randn(2, 7)
    with torch.no_grad():
        monkeypatch.setenv("RNNKERNELS_BACKEND", "python")
        assert _lean_result(fused, x, h) is None
        monkeypatch.setenv("RNNKERNELS_BACKEND", "cpp")
        assert _lean_result(fused, x, h) is not None


@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "RNNCell-tanh"])
def test_a_compiled_loop_over_cells_is_one_graph(name) -> None:
    """torch.compile(fullgraph=True) of a loop over a cell, in inference and training: the
    lean call steps aside while dynamo traces."""
    nn_class, kwargs, _ = CELLS[name]
    reference, fused = module_pair(nn_class, 5, 7, **kwargs)

    def loop(cell: nn.Module, x: torch.Tensor) -> torch.Tensor:
        hx, outputs = None, []
        for step in x:
            hx = cell(step, hx)
            outputs.append(_as_tuple(hx)[0])
        return torch.stack(outputs)

    torch._dynamo.reset()
    compiled = torch.compile(loop, fullgraph=True)
    x = torch.randn(4, 3, 5)
    with torch.no_grad():
        torch.testing.assert_close(compiled(fused, x), loop(reference, x), atol=1e-5, rtol=0)
    compiled(fused, x).sum().backward()
    loop(reference, x).sum().backward()
    for ours, theirs in zip(fused.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours.grad, theirs.grad, atol=1e-5, rtol=0)
