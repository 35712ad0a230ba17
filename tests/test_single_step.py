"""The cells' lean call (rnnkernels/_single_step.py): one op per inference step, one autograd
node over one op each way in training, the same numbers as every other path that runs a
single step, and the full path wherever the lean call cannot see what the call needs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import rnnkernels
from rnnkernels import _single_step
from conftest import OpLog, module_pair

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
    with torch.no_grad(), OpLog() as log:
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
    return _single_step.step(module._cell, backend, x, h, c, module.weight_ih,
                             module.weight_hh, module.bias_ih, module.bias_hh)


def test_the_lean_call_takes_plain_inference_and_training() -> None:
    _, fused = module_pair(nn.GRUCell, 5, 7)
    with torch.no_grad():
        assert _lean_result(fused, torch.randn(3, 5), torch.randn(3, 7)) is not None
        assert _lean_result(fused, torch.randn(3, 5), None) is not None
        assert _lean_result(fused, torch.randn(3, 5), None, backend="cpp") is not None
    trained = _lean_result(fused, torch.randn(3, 5), torch.randn(3, 7))
    assert trained is not None and trained.grad_fn is not None


DECLINED = {  # name: (input, state, backend, context)
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


def _full_path(monkeypatch) -> None:
    """From here on the modules take their full path (the op's Python Autograd kernel)."""
    monkeypatch.setattr(_single_step, "step", lambda *args: None)


def _step_gradients(module: nn.Module, x: torch.Tensor, hx, seed: int = 1):
    """Gradients of a fixed random projection of one step's outputs, of x, the states and
    every parameter (None where one needs none)."""
    module.zero_grad(set_to_none=True)
    outputs = _as_tuple(module(x, hx))
    generator = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=generator, dtype=o.dtype)).sum()
               for o in outputs)
    loss.backward()
    states = [s.grad for s in _as_tuple(hx)]
    return [x.grad, *states, *[p.grad for p in module.parameters()]]


def _leaves(nn_class: type, batch: tuple[int, ...], x_grad: bool, dtype=torch.float32):
    x = torch.randn(*batch, 5, dtype=dtype).requires_grad_(x_grad)
    hx = tuple(s.requires_grad_() for s in _as_tuple(_state(nn_class, batch, 7, dtype)))
    return x, hx if len(hx) == 2 else hx[0]


def _clone(x: torch.Tensor, hx):
    copy = lambda t: t.detach().clone().requires_grad_(t.requires_grad)  # noqa: E731
    return copy(x), tuple(copy(s) for s in hx) if isinstance(hx, tuple) else copy(hx)


@pytest.mark.parametrize("x_grad", [True, False], ids=["x-grad", "x-no-grad"])
@pytest.mark.parametrize("batch", [(4,), ()], ids=["batched", "unbatched"])
@pytest.mark.parametrize("name", list(CELLS))
def test_a_lean_training_step_gives_the_full_paths_gradients(name, batch, x_grad,
                                                            monkeypatch) -> None:
    """The lean call's autograd node and the full path's Python autograd kernel run the
    same forward and backward kernels: bitwise equal gradients (None where the full path
    gives None, as for an x that needs none); nn's to float32 rounding."""
    nn_class, kwargs, _ = CELLS[name]
    reference, fused = module_pair(nn_class, 5, 7, **kwargs)
    x, hx = _leaves(nn_class, batch, x_grad)
    lean = _step_gradients(fused, x, hx)
    node = _as_tuple(fused(x, hx))[0].grad_fn
    if not batch:  # an unbatched step is a batch of one row, then squeezed
        node = node.next_functions[0][0]
    assert "CellStep" in node.name()  # the C++ node
    x2, hx2 = _clone(x, hx)
    want = _step_gradients(reference, x2, hx2)
    x3, hx3 = _clone(x, hx)
    _full_path(monkeypatch)
    full = _step_gradients(fused, x3, hx3)
    for got, expected, nn_grad in zip(lean, full, want, strict=True):
        assert (got is None) == (expected is None) == (nn_grad is None)
        if got is not None:
            assert torch.equal(got, expected)
            torch.testing.assert_close(got, nn_grad, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(CELLS))
def test_a_training_step_dispatches_one_op_each_way(name) -> None:
    nn_class, kwargs, cell = CELLS[name]
    _, fused = module_pair(nn_class, 5, 7, **kwargs)
    x, hx = torch.randn(3, 5), _state(nn_class, (3,), 7)
    with OpLog() as log:
        out = _as_tuple(fused(x, hx))
    assert log.names == [f"rnnkernels.{cell}_cell_forward"]
    with OpLog() as log:
        sum(o.sum() for o in out).backward()
    backward_ops = [n for n in log.names if n.startswith("rnnkernels.")]
    assert backward_ops == [f"rnnkernels.{cell}_cell_backward"]


@pytest.mark.parametrize("name", list(CELLS))
def test_a_lean_training_step_differentiates_twice(name) -> None:
    """create_graph=True through the lean node: its gradient comes from the differentiable
    full path, so a gradient penalty's second backward matches nn's; float64 gradgradcheck."""
    nn_class, kwargs, _ = CELLS[name]
    reference, fused = module_pair(nn_class, 5, 7, **kwargs)
    reference, fused = reference.double(), fused.double()
    x, hx = _leaves(nn_class, (3,), True, torch.float64)
    results = []
    for module, (xs, hs) in ((fused, (x, hx)), (reference, _clone(x, hx))):
        module.zero_grad(set_to_none=True)
        out = _as_tuple(module(xs, hs))
        grads = torch.autograd.grad(sum(o.pow(2).sum() for o in out), [xs, *module.parameters()],
                                    create_graph=True)
        sum(g.pow(2).sum() for g in grads).backward()
        results.append([xs.grad, *[s.grad for s in _as_tuple(hs)],
                        *[p.grad for p in module.parameters()]])
    for ours, theirs in zip(*results, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-10, rtol=1e-10)

    def run(x_in: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return _as_tuple(fused(x_in, states if len(states) == 2 else states[0]))

    assert torch.autograd.gradgradcheck(run, (x, *_as_tuple(hx)))


def test_a_lean_training_step_saves_through_saved_tensor_hooks() -> None:
    """The node's saved tensors go through torch.autograd.graph.saved_tensors_hooks, as
    those of nn's ops do (activation offloading and checkpointing rely on it)."""
    _, fused = module_pair(nn.LSTMCell, 5, 7)
    packed = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        packed.append(t.shape)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        h, c = fused(torch.randn(3, 5), _state(nn.LSTMCell, (3,), 7))
    assert packed
    (h.sum() + c.sum()).backward()
    assert fused.weight_hh.grad is not None


def test_a_lean_training_step_sees_an_input_changed_in_place() -> None:
    _, fused = module_pair(nn.RNNCell, 5, 7)
    x = torch.randn(3, 5, requires_grad=True)
    h = torch.randn(3, 7)
    weighted = x * 2
    out = fused(weighted, h)
    weighted.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


@pytest.mark.parametrize("name", list(CELLS))
def test_a_training_step_with_no_hidden_units_gives_zero_gradients(name) -> None:
    """hidden_size=0, which nn accepts: every gradient is zero (none left unwritten)."""
    nn_class, kwargs, _ = CELLS[name]
    _, fused = module_pair(nn_class, 5, 0, **kwargs)
    x = torch.randn(3, 5, requires_grad=True)
    sum(o.sum() for o in _as_tuple(fused(x))).backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(CELLS))
def test_a_steps_rows_are_the_same_bits_at_any_batch_and_thread_count(name, dtype) -> None:
    """The small-batch projection kernel (cpu/dot_gemm.h) sums each result in one order
    whatever the batch, its row tiles, the column split among threads: a batch's rows are
    bitwise the steps of each row alone, on one thread or two. Sizes straddle the SIMD width
    and the tiles (K past a vector, columns past a block, rows past a row tile); nn's values
    to the dtype's rounding."""
    nn_class, kwargs, _ = CELLS[name]
    threads = torch.get_num_threads()
    for features, hidden, batch in [(1, 1, 1), (17, 5, 7), (33, 17, 13), (259, 70, 16)]:
        reference, fused = module_pair(nn_class, features, hidden, **kwargs)
        reference, fused = reference.to(dtype), fused.to(dtype)
        x, hx = torch.randn(batch, features, dtype=dtype), _state(nn_class, (batch,), hidden, dtype)
        results = []
        try:
            for count in (1, 2):
                torch.set_num_threads(count)
                with torch.no_grad():
                    results.append(_as_tuple(fused(x, hx)))
        finally:
            torch.set_num_threads(threads)
        with torch.no_grad():
            rows = [_as_tuple(fused(x[r], tuple(s[r] for s in _as_tuple(hx)) if
                                    isinstance(hx, tuple) else hx[r])) for r in range(batch)]
            want = _as_tuple(reference(x, hx))
        for i, (one, two, expected) in enumerate(zip(*results, want, strict=True)):
            assert torch.equal(one, two)
            assert torch.equal(one, torch.stack([row[i] for row in rows]))
            tolerance = 1e-5 if dtype == torch.float32 else 1e-12
            torch.testing.assert_close(one, expected, atol=tolerance, rtol=0)


@pytest.mark.skipif(os.environ.get("RNNKERNELS_TEST_ISA") is not None,
                    reason="already running under an ISA cap")
@pytest.mark.parametrize("isa", ["default", "avx2"])
def test_a_steps_rows_are_the_same_bits_under_every_isa(isa) -> None:
    """The test above in a subprocess whose kernels run the ``isa`` build (another SIMD
    width: other tiles and lane sums)."""
    order = ["default", "avx2", "avx512"]
    if rnnkernels.backend_info()["cpu_isa"] not in order[order.index(isa):]:
        pytest.skip(f"this CPU cannot run the {isa} build")
    check = ("import rnnkernels, sys; sys.exit(rnnkernels.backend_info()['cpu_isa'] != "
             f"'{isa}')")
    env = dict(os.environ, ATEN_CPU_CAPABILITY=isa, RNNKERNELS_TEST_ISA=isa)
    assert subprocess.run([sys.executable, "-c", check], env=env).returncode == 0
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k",
         "same_bits_at_any_batch"], capture_output=True, text=True, timeout=600, env=env,
        cwd=Path(__file__).parent)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


NOT_TENSORS = {  # name: (nn class, input, hx)
    "hx-list": (nn.GRUCell, torch.randn(3, 5), [torch.randn(3, 7)]),
    "hx-number": (nn.RNNCell, torch.randn(3, 5), 3),
    "c-string": (nn.LSTMCell, torch.randn(3, 5), (torch.randn(3, 7), "c")),
    "c-none": (nn.LSTMCell, torch.randn(3, 5), (torch.randn(3, 7), None)),
    "h-none": (nn.LSTMCell, torch.randn(3, 5), (None, torch.randn(3, 7))),
    "input-list": (nn.GRUCell, [[1.0] * 5], torch.randn(1, 7)),
}


@pytest.mark.parametrize("name", list(NOT_TENSORS))
def test_a_step_on_what_is_not_a_tensor_fails_as_nns(name) -> None:
    """The lean call takes tensors only (and, for an LSTM pair, two of them): anything else
    reaches the full path, which raises nn's error, never the binding's TypeError or a
    silent zero state."""
    nn_class, x, hx = NOT_TENSORS[name]
    reference, fused = module_pair(nn_class, 5, 7)
    with pytest.raises(Exception) as theirs:
        reference(x, hx)
    with pytest.raises(type(theirs.value)) as ours:
        fused(x, hx)
    assert str(ours.value) == str(theirs.value)
