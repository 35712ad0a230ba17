"""ONNX export of models holding Fused modules, under both exporters: the graph holds only
default-domain nodes (the standard recurrent operators where nn's export has them), and
onnxruntime gives eager's outputs at the export shape and at another (T, B)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkernels
from conftest import flatten, module_pair

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

pytestmark = pytest.mark.skipif(not rnnkernels.backend_info()["available"]["cpp"],
                                reason="exports the fused ops, which need the C++ extension")

EXPORTERS = ["dynamo", "torchscript"]
RECURRENT = {"LSTM", "GRU", "RNN"}
SHAPES = [(5, 3), (7, 2)]  # (T, B): the export shape, then another


class Recurrent(nn.Module):
    """A recurrent module with fixed inputs (x, then each given state), as exporters want."""

    def __init__(self, rnn: nn.Module, states: int) -> None:
        super().__init__()
        self.rnn = rnn
        self.states = states

    def forward(self, x: torch.Tensor, *state: torch.Tensor):
        if self.states == 0:
            return self.rnn(x)
        return self.rnn(x, state[0] if self.states == 1 else tuple(state))


class WithState(Recurrent):
    def forward(self, x: torch.Tensor, h0: torch.Tensor):
        return super().forward(x, h0)


class WithStates(Recurrent):
    def forward(self, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor):
        return super().forward(x, h0, c0)


WRAPPERS = {0: Recurrent, 1: WithState, 2: WithStates}


def export(model: nn.Module, args: tuple, path: Path, exporter: str,
           dynamic: dict[str, dict[int, str]], **options) -> onnx.ModelProto:
    """torch.onnx.export with the axes in ``dynamic`` (per input name, in the order of
    ``args``) symbolic, as each exporter spells them."""
    names = list(dynamic)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        if exporter == "dynamo":
            dims = {name: torch.export.Dim(name) for axes in dynamic.values()
                    for name in axes.values()}
            shapes = tuple({axis: dims[name] for axis, name in axes.items()}
                           for axes in dynamic.values())
            torch.onnx.export(model, args, str(path), dynamo=True, dynamic_shapes=shapes,
                              input_names=names, verbose=False, **options)
        else:
            torch.onnx.export(model, args, str(path), dynamo=False, input_names=names,
                              dynamic_axes=dynamic, **options)
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    return graph


def run(path: Path, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    options = ort.SessionOptions()
    # onnxruntime's pool would spin after the run and take the cores torch uses next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert len(names) == len(inputs)
    feeds = dict(zip(names, (i.numpy() for i in inputs), strict=True))
    return [torch.from_numpy(o) for o in session.run(None, feeds)]


def recurrent_nodes(graph: onnx.ModelProto) -> list[tuple[str, str]]:
    """(op type, direction) of each recurrent node, in graph order."""
    found = []
    for node in graph.graph.node:
        if node.op_type in RECURRENT:
            direction = [a.s.decode() for a in node.attribute if a.name == "direction"]
            found.append((node.op_type, direction[0] if direction else "forward"))
    return found


def assert_default_domain(graph: onnx.ModelProto) -> None:
    """Nothing in the graph needs rnnkernels (or anything but onnx's own operators)."""
    assert {n.domain for n in graph.graph.node} <= {""}
    assert {o.domain for o in graph.opset_import} <= {"", "ai.onnx"}
    assert not graph.functions


def assert_runs_as_eager(path: Path, model: nn.Module, make_inputs: Callable[[int, int], list]) -> None:
    for steps, batch in SHAPES:
        inputs = make_inputs(steps, batch)
        with torch.no_grad():
            want = flatten(model(*inputs))
        got = run(path, inputs)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape
            torch.testing.assert_close(g, w, atol=1e-5, rtol=0)


# (nn class, constructor kwargs, given states): multi-layer, bidirectional, batch_first,
# bias=False and given states, for every cell.
LAYER_CASES = [
    (nn.LSTM, dict(num_layers=2, batch_first=True), 0),
    (nn.LSTM, dict(num_layers=2, bidirectional=True), 2),
    (nn.LSTM, dict(bias=False, bidirectional=True, batch_first=True), 0),
    (nn.GRU, dict(num_layers=2, batch_first=True), 0),
    (nn.GRU, dict(num_layers=2, bidirectional=True, bias=False), 1),
    (nn.RNN, dict(num_layers=2, nonlinearity="tanh", bidirectional=True, batch_first=True), 1),
    (nn.RNN, dict(nonlinearity="relu", bias=False), 0),
    (nn.RNN, dict(num_layers=2, nonlinearity="relu"), 1),
]


def _case_id(case: tuple) -> str:
    nn_class, kwargs, states = case
    flags = "-".join(f"{k}={v}" for k, v in kwargs.items())
    return f"{nn_class.__name__}-{flags}-states={states}"


def _layer_models(nn_class: type, kwargs: dict, states: int) -> tuple[nn.Module, nn.Module]:
    reference, ours = module_pair(nn_class, 4, 6, **kwargs)
    return WRAPPERS[states](reference, states).eval(), WRAPPERS[states](ours, states).eval()


def _layer_inputs(rnn: nn.Module, states: int) -> Callable[[int, int], list]:
    layers = rnn.num_layers * (2 if rnn.bidirectional else 1)

    def make(steps: int, batch: int) -> list[torch.Tensor]:
        x = torch.randn(batch, steps, 4) if rnn.batch_first else torch.randn(steps, batch, 4)
        return [x] + [torch.randn(layers, batch, 6) for _ in range(states)]

    return make


def _layer_axes(rnn: nn.Module, states: int) -> dict[str, dict[int, str]]:
    axes = {"x": {0: "B", 1: "T"} if rnn.batch_first else {0: "T", 1: "B"}}
    for name in ["h0", "c0"][:states]:
        axes[name] = {1: "B"}
    return axes


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("case", LAYER_CASES, ids=_case_id)
def test_layers_export_as_standard_nodes(case, exporter, tmp_path):
    """Under no_grad the modules trace the inference ops."""
    nn_class, kwargs, states = case
    reference, ours = _layer_models(nn_class, kwargs, states)
    make_inputs = _layer_inputs(ours.rnn, states)
    axes = _layer_axes(ours.rnn, states)
    with torch.no_grad():
        graph = export(ours, tuple(make_inputs(*SHAPES[0])), tmp_path / "ours.onnx", exporter, axes)
    assert_default_domain(graph)
    # One node per layer, bidirectional where the layer is: what nn's TorchScript export
    # gives (its dynamo export of several of these cases fails or freezes their shapes).
    nn_graph = export(reference, tuple(make_inputs(*SHAPES[0])), tmp_path / "nn.onnx",
                      "torchscript", axes)
    assert recurrent_nodes(graph) == recurrent_nodes(nn_graph)
    assert len(recurrent_nodes(graph)) == ours.rnn.num_layers
    assert_runs_as_eager(tmp_path / "ours.onnx", ours, make_inputs)


GRAD_CASES = [(nn.LSTM, dict(num_layers=2), 2, "lstm_layer_forward"),
              (nn.GRU, dict(num_layers=2, bidirectional=True), 1, "gru_bidirectional_forward")]


@pytest.mark.parametrize("route", ["dynamo", "torchscript", "exported-program"])
@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda case: case[3])
def test_export_while_gradients_are_on(case, route, tmp_path):
    """Parameters that need grad make the modules trace the training ops (their kept
    tensors unused): they export too, and so does a torch.export program holding them."""
    nn_class, kwargs, states, op_name = case
    _, ours = _layer_models(nn_class, kwargs, states)
    make_inputs = _layer_inputs(ours.rnn, states)
    axes = _layer_axes(ours.rnn, states)
    args = tuple(make_inputs(*SHAPES[0]))
    path = tmp_path / "ours.onnx"
    if route == "exported-program":
        dims = {name: torch.export.Dim(name) for name in ("T", "B")}
        program = torch.export.export(ours, args, dynamic_shapes=tuple(
            {axis: dims[name] for axis, name in a.items()} for a in axes.values()))
        ops = {str(n.target) for n in program.graph.nodes if "rnnkernels" in str(n.target)}
        assert ops == {f"rnnkernels.{op_name}.default"}
        torch.onnx.export(program, args, str(path), dynamo=True, input_names=list(axes),
                          verbose=False)
        graph = onnx.load(str(path))
    else:
        graph = export(ours, args, path, route, axes)
    assert_default_domain(graph)
    assert recurrent_nodes(graph) == [(nn_class.__name__, "bidirectional" if ours.rnn.bidirectional
                                       else "forward")] * 2
    assert_runs_as_eager(path, ours, make_inputs)


CELL_CASES = [(rnnkernels.FusedLSTMCell, {}), (rnnkernels.FusedGRUCell, {}),
              (rnnkernels.FusedRNNCell, dict(nonlinearity="tanh")),
              (rnnkernels.FusedRNNCell, dict(nonlinearity="relu"))]


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("given_state", [False, True], ids=["no-state", "state"])
@pytest.mark.parametrize("grad", [False, True], ids=["no-grad", "grad"])
@pytest.mark.parametrize("cell_class, kwargs", CELL_CASES,
                         ids=["LSTMCell", "GRUCell", "RNNCell-tanh", "RNNCell-relu"])
def test_cells_export(cell_class, kwargs, grad, given_state, exporter, tmp_path):
    """A cell exports as a one-step recurrent node (nn's cells export as plain math)."""
    cell = cell_class(4, 6, **kwargs).eval()
    states = (2 if cell_class is rnnkernels.FusedLSTMCell else 1) if given_state else 0
    model = WRAPPERS[states](cell, states)

    def make_inputs(_steps: int, batch: int) -> list[torch.Tensor]:
        return [torch.randn(batch, 4)] + [torch.randn(batch, 6) for _ in range(states)]

    axes = {name: {0: "B"} for name in ["x", "h0", "c0"][:1 + states]}
    path = tmp_path / "cell.onnx"
    with torch.set_grad_enabled(grad):
        graph = export(model, tuple(make_inputs(0, 3)), path, exporter, axes)
    assert_default_domain(graph)
    op_type = {"FusedLSTMCell": "LSTM", "FusedGRUCell": "GRU", "FusedRNNCell": "RNN"}
    assert recurrent_nodes(graph) == [(op_type[cell_class.__name__], "forward")]
    assert_runs_as_eager(path, model, make_inputs)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_projection_raises_a_clear_error(exporter, tmp_path):
    """ONNX's LSTM has no projection; nn's TorchScript export refuses it too (its dynamo
    export writes a graph onnxruntime cannot run)."""
    model = Recurrent(rnnkernels.FusedLSTM(4, 6, proj_size=3), 0).eval()
    with pytest.raises(torch.onnx.errors.OnnxExporterError) as caught:
        export(model, (torch.randn(5, 3, 4),), tmp_path / "p.onnx", exporter, {"x": {0: "T"}})
    messages = []
    error: BaseException | None = caught.value
    while error is not None:
        messages.append(str(error))
        error = error.__cause__ or error.__context__
    assert any("proj_size" in m for m in messages)
    if exporter == "torchscript":
        assert isinstance(caught.value, torch.onnx.errors.SymbolicValueError)
        nn_model = Recurrent(nn.LSTM(4, 6, proj_size=3), 0).eval()
        with pytest.raises(torch.onnx.errors.SymbolicValueError):
            export(nn_model, (torch.randn(5, 3, 4),), tmp_path / "n.onnx", exporter, {"x": {0: "T"}})


class PackedModel(nn.Module):
    """Pads, packs, runs the recurrent module and unpacks: lengths are an input."""

    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        output, state = self.rnn(packed)
        return pad_packed_sequence(output)[0], state


@pytest.mark.parametrize("nn_class, kwargs", [
    (nn.LSTM, dict(num_layers=2)), (nn.GRU, dict(bidirectional=True)),
    (nn.RNN, dict(nonlinearity="relu", num_layers=2, bidirectional=True))],
    ids=["LSTM", "GRU-bidirectional", "RNN-relu-2-bidirectional"])
def test_packed_sequence_exports_as_nn_does(nn_class, kwargs, tmp_path):
    """The TorchScript exporter exports packed input as nn's: recurrent nodes with each
    entry's length, which follow the lengths given at run time."""
    reference, ours = _layer_models(nn_class, kwargs, 0)
    reference, ours = PackedModel(reference.rnn).eval(), PackedModel(ours.rnn).eval()

    def make_inputs(steps: int, batch: int) -> list[torch.Tensor]:
        lengths = torch.randint(1, steps + 1, (batch,))
        lengths[0] = steps  # the padded length is the longest one
        return [torch.randn(steps, batch, 4), lengths]

    axes = {"x": {0: "T", 1: "B"}, "lengths": {0: "B"}}
    graph = export(ours, tuple(make_inputs(*SHAPES[0])), tmp_path / "ours.onnx", "torchscript", axes)
    nn_graph = export(reference, tuple(make_inputs(*SHAPES[0])), tmp_path / "nn.onnx", "torchscript", axes)
    assert_default_domain(graph)
    assert recurrent_nodes(graph) == recurrent_nodes(nn_graph)
    assert [n.op_type for n in graph.graph.node] == [n.op_type for n in nn_graph.graph.node]
    for steps, batch in SHAPES:
        inputs = make_inputs(steps, batch)
        with torch.no_grad():
            want = flatten(ours(*inputs))
        got = run(tmp_path / "ours.onnx", inputs)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, atol=1e-5, rtol=0)


def test_packed_sequence_fails_under_dynamo_as_nn_does(tmp_path):
    """torch.export cannot trace the data-dependent batch sizes of a PackedSequence, for
    nn's modules and ours alike: both raise the exporter's TorchExportError."""
    for rnn in (nn.LSTM(4, 6), rnnkernels.FusedLSTM(4, 6)):
        model = PackedModel(rnn).eval()
        inputs = (torch.randn(5, 3, 4), torch.tensor([5, 2, 4]))
        with pytest.raises(torch.onnx.errors.OnnxExporterError, match="torch.export"):
            export(model, inputs, tmp_path / "p.onnx", "dynamo", {"x": {0: "T"}, "lengths": {}})


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_dropout_in_training_exports_between_layers(exporter, tmp_path):
    """In training mode the inter-layer dropout exports as a Dropout node between the two
    layers' nodes, as nn's dynamo export does (nn's TorchScript export refuses it)."""
    model = Recurrent(rnnkernels.FusedLSTM(4, 6, num_layers=2, dropout=0.5), 0).train()
    options = {} if exporter == "dynamo" else dict(training=torch.onnx.TrainingMode.TRAINING)
    graph = export(model, (torch.randn(5, 3, 4),), tmp_path / "d.onnx", exporter,
                   {"x": {0: "T", 1: "B"}}, **options)
    assert_default_domain(graph)
    kinds = [n.op_type for n in graph.graph.node if n.op_type in RECURRENT | {"Dropout"}]
    assert kinds == ["LSTM", "Dropout", "LSTM"]
    assert model.training  # the export put the module back as it was


@pytest.mark.parametrize("opset", [9, 14, 17])
def test_torchscript_exporter_takes_older_opsets(opset, tmp_path):
    _, ours = _layer_models(nn.LSTM, dict(num_layers=2, bidirectional=True), 0)
    make_inputs = _layer_inputs(ours.rnn, 0)
    path = tmp_path / "o.onnx"
    graph = export(ours, tuple(make_inputs(*SHAPES[0])), path, "torchscript",
                   _layer_axes(ours.rnn, 0), opset_version=opset)
    assert [o.version for o in graph.opset_import if o.domain == ""] == [opset]
    assert_runs_as_eager(path, ours, make_inputs)


def _python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, cwd=Path(__file__).parent)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_import_leaves_onnxscript_unloaded():
    """The dynamo translations wait for the exporter to load its table (it imports
    onnxscript, over a second): ``import rnnkernels`` does not load it."""
    out = _python("import sys, rnnkernels\nprint('onnxscript' in sys.modules)")
    assert out.split() == ["False"]


def test_translations_register_when_the_exporter_was_loaded_first(tmp_path):
    """With torch.onnx's dynamo exporter imported before rnnkernels, the translations go
    straight into its table, and an export finds them."""
    path = tmp_path / "m.onnx"
    _python(
        "import torch\n"
        "import torch.onnx._internal.exporter._registration\n"
        "import rnnkernels\n"
        "m = rnnkernels.FusedGRU(4, 6).eval()\n"
        f"torch.onnx.export(m, (torch.randn(5, 3, 4),), {str(path)!r}, dynamo=True, verbose=False)\n")
    assert recurrent_nodes(onnx.load(str(path))) == [("GRU", "forward")]


def test_an_exporter_without_the_known_table_still_imports():
    """Should a torch keep the dynamo exporter's table elsewhere, the hook warns and leaves
    the exporter's own import working (the TorchScript exporter still has our ops)."""
    from types import ModuleType

    from rnnkernels import onnx as rnnkernels_onnx

    with pytest.warns(UserWarning, match="dynamo=False"):
        rnnkernels_onnx._register_dynamo(ModuleType("registration_without_a_table"))
