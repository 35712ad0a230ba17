"""The layers' lean call for one time step (streaming: FusedLSTM/GRU/RNN called with T=1 and
their state carried, rnnkernels/_single_step.stream): the full path's numbers, nn's errors,
one cell op per layer and direction in inference, and the full path wherever the lean
call cannot see what the call needs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnkernels
from rnnkernels import _single_step
from conftest import OpLog, module_pair, outputs_and_grads

pytestmark = pytest.mark.skipif(not rnnkernels.backend_info()["available"]["cpp"],
                                reason="needs the C++ build")

# (nn class, constructor kwargs, the ops' cell name)
LAYERS = {
    "LSTM": (nn.LSTM, {}, "lstm"),
    "GRU": (nn.GRU, {}, "gru"),
    "RNN-tanh": (nn.RNN, {}, "rnn_tanh"),
    "RNN-relu": (nn.RNN, {"nonlinearity": "relu"}, "rnn_relu"),
}
# (batched, batch_first)
LAYOUTS = {"time-major": (True, False), "batch-first": (True, True), "unbatched": (False, False)}


def _full_path(monkeypatch) -> None:
    monkeypatch.setattr(_single_step, "stream", lambda *args: None)


def _step_input(layout: str, batch: int, features: int, dtype=torch.float32) -> torch.Tensor:
    batched, batch_first = LAYOUTS[layout]
    if not batched:
        return torch.randn(1, features, dtype=dtype)
    return torch.randn(batch, 1, features, dtype=dtype) if batch_first \
        else torch.randn(1, batch, features, dtype=dtype)


def _state(nn_class: type, layout: str, lead: int, batch: int, hidden: int,
           dtype=torch.float32):
    shape = (lead, batch, hidden) if LAYOUTS[layout][0] else (lead, hidden)
    h = torch.randn(shape, dtype=dtype)
    return (h, torch.randn(shape, dtype=dtype)) if nn_class is nn.LSTM else h


def _pair(name: str, layout: str, layers: int, bidirectional: bool, bias: bool = True):
    nn_class, kwargs, _ = LAYERS[name]
    return module_pair(nn_class, 5, 7, layers, bias=bias, batch_first=LAYOUTS[layout][1],
                       bidirectional=bidirectional, **kwargs)


def _flat(result) -> list[torch.Tensor]:
    """(output, h_n) or (output, (h_n, c_n)) as a flat list."""
    return [t for item in result for t in (item if isinstance(item, tuple) else (item,))]


def _graph_nodes(node) -> list[str]:
    """The names of every node of an autograd graph, from its root."""
    seen, names, todo = set(), [], [node]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.append(node.name())
        todo.extend(next_node for next_node, _ in node.next_functions)
    return names


def _clone(value):
    if isinstance(value, tuple):
        return tuple(_clone(v) for v in value)
    return value.detach().clone().requires_grad_(value.requires_grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("carried", [True, False], ids=["hx", "no-hx"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, False), (2, True)],
                         ids=["1-layer", "2-layers", "2-layers-bi"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_a_streamed_step_gives_the_full_paths_bits(name, layers, bidirectional, layout,
                                                   carried, dtype, monkeypatch) -> None:
    """Both paths run the same single-step kernel per layer and direction: bitwise equal
    outputs and states, of nn's shapes; nn's values to float32 rounding."""
    reference, fused = _pair(name, layout, layers, bidirectional)
    reference, fused = reference.to(dtype), fused.to(dtype)
    x = _step_input(layout, 3, 5, dtype)
    hx = _state(LAYERS[name][0], layout, layers * (2 if bidirectional else 1), 3, 7, dtype) \
        if carried else None
    with torch.no_grad():
        lean = fused(x, hx)
        want = reference(x, hx)
        _full_path(monkeypatch)
        full = fused(x, hx)
    for got, expected, nn_value in zip(_flat(lean), _flat(full), _flat(want), strict=True):
        assert got.shape == nn_value.shape
        assert torch.equal(got, expected)
        torch.testing.assert_close(got, nn_value, atol=1e-5, rtol=0)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("layout", ["time-major", "unbatched"])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)],
                         ids=["1-layer", "2-layers-bi"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_a_streamed_training_step_gives_nns_gradients(name, layers, bidirectional, layout, bias,
                                                      monkeypatch) -> None:
    """Training steps on the cells' autograd nodes: the gradients of x, the states and every
    weight as the full path's (its layer kernels sum in another order) and nn's."""
    reference, fused = _pair(name, layout, layers, bidirectional, bias)
    x = _step_input(layout, 3, 5).requires_grad_()
    hx = _state(LAYERS[name][0], layout, layers * (2 if bidirectional else 1), 3, 7)
    hx = tuple(h.requires_grad_() for h in hx) if isinstance(hx, tuple) else hx.requires_grad_()
    steps = [n for n in _graph_nodes(fused(x, hx)[0].grad_fn) if "CellStep" in n]
    assert len(steps) == layers * (2 if bidirectional else 1)  # the cells' C++ nodes
    _, lean = outputs_and_grads(fused, [x, hx])
    _, want = outputs_and_grads(reference, [_clone(x), _clone(hx)])
    _full_path(monkeypatch)
    _, full = outputs_and_grads(fused, [_clone(x), _clone(hx)])
    for got, expected, nn_grad in zip(lean, full, want, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
        torch.testing.assert_close(got, nn_grad, atol=1e-5, rtol=0)


@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)],
                         ids=["1-layer", "2-layers-bi"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_an_inference_step_dispatches_one_cell_op_per_layer_and_direction(
        name, layers, bidirectional) -> None:
    """Besides the cell ops only views and the gathering of the states and outputs (cat,
    stack): no copy of the weights, no layer op."""
    _, fused = _pair(name, "time-major", layers, bidirectional)
    x = _step_input("time-major", 3, 5)
    hx = _state(LAYERS[name][0], "time-major", layers * (2 if bidirectional else 1), 3, 7)
    with torch.no_grad(), OpLog() as log:
        fused(x, hx)
    cell_op = f"rnnkernels.{LAYERS[name][2]}_cell_inference"
    assert [n for n in log.names if n.startswith("rnnkernels.")] == \
        [cell_op] * (layers * (2 if bidirectional else 1))
    assert set(log.names) <= {cell_op, "aten.select", "aten.unsqueeze", "aten.cat",
                              "aten.stack"}


def _declined(name: str, **changes):
    """Whether the lean call declines a GRU step changed as given from one it takes."""
    _, fused = _pair("GRU", "time-major", 2, False)
    fused.train(changes.pop("training", False))
    fused.dropout = changes.pop("dropout", 0.0)
    call = dict(x=torch.randn(1, 3, 5), hx=torch.randn(2, 3, 7), backend=None)
    call.update(changes)
    weights = [getattr(fused, n) for n in fused._flat_weights_names]
    with torch.no_grad():
        return _single_step.stream("gru", call["backend"], call["x"], call["hx"], weights, 2,
                                   False, False) is None


DECLINED = {
    "two-steps": dict(x=torch.randn(2, 3, 5)),
    "python-backend": dict(backend="python"),
    "bfloat16": dict(x=torch.randn(1, 3, 5, dtype=torch.bfloat16), hx=None),
    "state-dtype": dict(hx=torch.randn(2, 3, 7, dtype=torch.float64)),
    "state-batch": dict(hx=torch.randn(2, 2, 7)),
    "state-layers": dict(hx=torch.randn(1, 3, 7)),
    "state-rank": dict(hx=torch.randn(2, 7)),
    "input-size": dict(x=torch.randn(1, 3, 4)),
    "input-rank": dict(x=torch.randn(3, 5)[None, None]),
}


def test_the_lean_stream_takes_a_plain_step() -> None:
    assert not _declined("plain")


@pytest.mark.parametrize("name", list(DECLINED))
def test_the_lean_stream_declines_what_the_full_path_must_handle(name) -> None:
    assert _declined(name, **DECLINED[name])


@pytest.mark.parametrize("name", ["state-batch", "state-layers", "input-size"])
def test_a_streamed_step_raises_nns_errors(name) -> None:
    changes = DECLINED[name]
    reference, fused = _pair("GRU", "time-major", 2, False)
    x, hx = changes.get("x", torch.randn(1, 3, 5)), changes.get("hx", torch.randn(2, 3, 7))
    with pytest.raises(Exception) as theirs:
        reference(x, hx)
    with pytest.raises(type(theirs.value)) as ours:
        fused(x, hx)
    assert str(ours.value) == str(theirs.value)


def test_dropout_between_layers_in_training_takes_the_full_path(monkeypatch) -> None:
    """F.dropout between the layers draws from torch's RNG on the full path; the lean call
    has no dropout, so it must not take the step."""
    calls = []
    original = _single_step.stream
    monkeypatch.setattr(_single_step, "stream", lambda *a: calls.append(a) or original(*a))
    _, fused = _pair("LSTM", "time-major", 2, False)
    fused.dropout = 0.5
    x = torch.randn(1, 3, 5)
    fused.train()
    fused(x)
    assert not calls
    fused.eval()
    fused(x)
    assert len(calls) == 1


def test_a_projected_lstm_takes_the_full_path(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(_single_step, "stream", lambda *a: calls.append(a))
    reference, fused = module_pair(nn.LSTM, 5, 7, 2, proj_size=3)
    x = torch.randn(1, 3, 5)
    with torch.no_grad():
        torch.testing.assert_close(fused(x)[0], reference(x)[0], atol=1e-5, rtol=0)
    assert not calls


def test_a_fullgraph_compiled_streaming_loop_matches_nn() -> None:
    reference, fused = _pair("GRU", "time-major", 2, False)

    def loop(module: nn.Module, xs: torch.Tensor) -> torch.Tensor:
        h, outputs = None, []
        for x in xs:
            out, h = module(x.unsqueeze(0), h)
            outputs.append(out)
        return torch.cat(outputs)

    torch._dynamo.reset()
    compiled = torch.compile(loop, fullgraph=True)
    xs = torch.randn(4, 3, 5)
    with torch.no_grad():
        torch.testing.assert_close(compiled(fused, xs), loop(reference, xs), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(LAYERS))
def test_a_streamed_training_step_differentiates_twice(name) -> None:
    """create_graph=True through the cells' nodes of a 2-layer bidirectional step: float64
    gradgradcheck of the output and states with respect to x and hx."""
    _, fused = _pair(name, "time-major", 2, True)
    fused = fused.double()
    x = _step_input("time-major", 2, 5, torch.float64).requires_grad_()
    hx = _state(LAYERS[name][0], "time-major", 4, 2, 7, torch.float64)
    states = tuple(h.requires_grad_() for h in (hx if isinstance(hx, tuple) else (hx,)))

    def run(x_in: torch.Tensor, *hidden: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out, h_n = fused(x_in, hidden if len(hidden) == 2 else hidden[0])
        return (out, *(h_n if isinstance(h_n, tuple) else (h_n,)))

    assert any("CellStep" in n for n in _graph_nodes(run(x, *states)[0].grad_fn))
    assert torch.autograd.gradgradcheck(run, (x, *states))


NOT_TENSORS = {  # name: (layer, input, hx)
    "hx-list": ("GRU", torch.randn(1, 3, 5), [torch.randn(2, 3, 7)]),
    "hx-number": ("RNN-tanh", torch.randn(1, 3, 5), 3),
    "c-string": ("LSTM", torch.randn(1, 3, 5), (torch.randn(2, 3, 7), "c")),
    "c-none": ("LSTM", torch.randn(1, 3, 5), (torch.randn(2, 3, 7), None)),
    "input-list": ("GRU", [[[1.0] * 5]], torch.randn(2, 1, 7)),
}


@pytest.mark.parametrize("name", list(NOT_TENSORS))
def test_a_streamed_step_on_what_is_not_a_tensor_fails_as_nns(name) -> None:
    layer, x, hx = NOT_TENSORS[name]
    reference, fused = _pair(layer, "time-major", 2, False)
    with pytest.raises(Exception) as theirs:
        reference(x, hx)
    with pytest.raises(type(theirs.value)) as ours:
        fused(x, hx)
    assert str(ours.value) == str(theirs.value)
