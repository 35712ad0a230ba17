"""torch.compile (fullgraph, dynamic shapes) and torch.export of models containing the
Fused modules: no graph break, same outputs and gradients as eager."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch._dynamo.testing import CompileCounter

import rnnkernels
from conftest import CPU_BACKENDS

RNNS = {
    "lstm": lambda backend: rnnkernels.FusedLSTM(8, 16, num_layers=2, bidirectional=True, backend=backend),
    "lstm-proj": lambda backend: rnnkernels.FusedLSTM(8, 16, proj_size=4, backend=backend),
    "gru": lambda backend: rnnkernels.FusedGRU(8, 16, num_layers=2, backend=backend),
    "rnn": lambda backend: rnnkernels.FusedRNN(8, 16, nonlinearity="relu", backend=backend),
}


class Tagger(nn.Module):
    """Linear -> recurrent -> Linear, the shape of a typical model around an RNN."""

    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.embed = nn.Linear(5, 8)
        self.rnn = rnn
        self.head = nn.Linear(rnn.proj_size or rnn.hidden_size * (2 if rnn.bidirectional else 1), 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = self.rnn(torch.tanh(self.embed(x)))
        return self.head(output)


def _outputs_and_grads(model: nn.Module, x: torch.Tensor):
    x = x.detach().requires_grad_()
    output = model(x)
    grads = torch.autograd.grad(output.square().sum(), [x, *model.parameters()])
    return output, grads


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("name", list(RNNS))
def test_compile_fullgraph_matches_eager(name, backend) -> None:
    model = Tagger(RNNS[name](backend))
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(6, 3, 5)
    want, want_grads = _outputs_and_grads(model, x)
    got, got_grads = _outputs_and_grads(compiled, x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(RNNS))
def test_compile_fullgraph_inference(name) -> None:
    """Under no_grad the inference ops run (both directions in one op when bidirectional)."""
    model = Tagger(RNNS[name](None)).eval()
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(6, 3, 5)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_dynamic_shapes_compile_once(name) -> None:
    counter = CompileCounter()
    model = Tagger(RNNS[name](None))
    compiled = torch.compile(model, backend=counter, fullgraph=True, dynamic=True)
    # No size equal to the feature size 5: dynamo gives equal sizes one symbol.
    for steps, batch in [(6, 3), (7, 4), (9, 2), (4, 6)]:
        x = torch.randn(steps, batch, 5)
        torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=1e-5)
    assert counter.frame_count == 1


@pytest.mark.parametrize("name", list(RNNS))
def test_export_runs(name) -> None:
    model = Tagger(RNNS[name](None)).eval()
    x = torch.randn(6, 3, 5)
    program = torch.export.export(model, (x,))
    torch.testing.assert_close(program.module()(x), model(x), atol=1e-6, rtol=1e-6)
    other = torch.randn(6, 3, 5)
    torch.testing.assert_close(program.module()(other), model(other), atol=1e-6, rtol=1e-6)
