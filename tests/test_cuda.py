"""The CUDA backend: gradcheck, opcheck, parity with nn.* (TF32 off), half types
against float32, and agreement with our own CPU kernels. Skipped without a GPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnkernels
from conftest import (FUSED_MODULES, OP_CASES, assert_parity, cell_op_backward_args,
                      cell_op_forward_args, flatten, gradcheck_inputs, module_as_function,
                      module_pair, op_backward_args, op_case_id, op_forward_args,
                      requires_cuda)
from rnnkernels import _backend, _ops

pytestmark = requires_cuda


@pytest.fixture(autouse=True)
def _no_tf32():
    previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


@pytest.mark.parametrize("cell", list(FUSED_MODULES))
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_gradcheck_cuda(cell, layers, bidirectional) -> None:
    module_class, kwargs = FUSED_MODULES[cell]
    module = module_class(3, 3, num_layers=layers, bidirectional=bidirectional, backend="cuda",
                          dtype=torch.float64, device="cuda", **kwargs)
    inputs = [t.detach().cuda().requires_grad_() for t in gradcheck_inputs(module)]
    assert torch.autograd.gradcheck(module_as_function(module), inputs, check_batched_grad=True)


@pytest.mark.parametrize("case", OP_CASES, ids=op_case_id)
def test_opcheck_cuda(case) -> None:
    cell, projects, batch_sizes = case
    args = op_forward_args(cell, projects, batch_sizes, device="cuda")
    torch.library.opcheck(_ops.forward_op(cell), args)
    torch.library.opcheck(_ops.inference_op(cell), args)
    torch.library.opcheck(_ops.backward_op(cell), op_backward_args(cell, args))
    with torch.no_grad():  # the inference op: the same kernels, nothing kept for backward
        inferred, trained = _ops.inference_op(cell)(*args), _ops.forward_op(cell)(*args)[:3]
        for got, want in zip(inferred, trained, strict=True):
            torch.testing.assert_close(got, want)  # float64


@pytest.mark.parametrize("cell", _ops.CELLS)
def test_cell_opcheck_cuda(cell) -> None:
    args = cell_op_forward_args(cell, device="cuda")
    torch.library.opcheck(_ops.cell_forward_op(cell), args)
    torch.library.opcheck(_ops.cell_backward_op(cell), cell_op_backward_args(cell, args))


PARITY = [(nn.LSTM, {}), (nn.LSTM, {"proj_size": 8}), (nn.GRU, {}),
          (nn.RNN, {"nonlinearity": "tanh"}), (nn.RNN, {"nonlinearity": "relu"})]


@pytest.fixture(params=["persistent", "steps"])
def cuda_path(request):
    """The persistent grid kernels where they fit (the default), or the per-step loop."""
    before = _backend._C.set_persistent_kernels(request.param == "persistent")
    yield request.param
    _backend._C.set_persistent_kernels(before)


@pytest.mark.parametrize("case", PARITY, ids=lambda c: c[0].__name__ + str(c[1]))
@pytest.mark.parametrize("packed", [False, True])
def test_parity_with_nn_cuda(case, packed, cuda_path) -> None:
    nn_class, kwargs = case
    reference, fused = module_pair(nn_class, 32, 64, num_layers=2, bidirectional=True,
                                   backend="cuda", **kwargs)
    reference.cuda()
    fused.cuda()
    x = torch.randn(50, 8, 32, device="cuda", requires_grad=True)
    if packed:
        lengths = torch.randint(1, 51, (8,)).sort(descending=True).values
        lengths[0] = 50
        x = nn.utils.rnn.pack_padded_sequence(x, lengths)
    assert_parity(reference, fused, [x, None])


@pytest.mark.parametrize("case", [(nn.LSTMCell, {}), (nn.GRUCell, {}), (nn.RNNCell, {})],
                         ids=lambda c: c[0].__name__)
def test_cells_cuda(case) -> None:
    nn_class, kwargs = case
    reference, fused = module_pair(nn_class, 6, 10, backend="cuda", **kwargs)
    reference.cuda()
    fused.cuda()
    assert_parity(reference, fused, [torch.randn(4, 6, device="cuda", requires_grad=True), None])


# Bound for half types: gates are computed in float32 but h and c are stored in the half
# type each step and the GEMMs read half operands, so rounding (2**-8 relative for bf16,
# 2**-11 for fp16) enters every step; the recurrence is contractive, so it does not grow
# much over T=20 steps. 8 ulps of the largest magnitude leaves room for that.
HALF_ULPS = {torch.bfloat16: 8 * 2.0**-8, torch.float16: 8 * 2.0**-11}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", ["lstm", "gru", "rnn-tanh"])
def test_half_against_float32_cuda(dtype, name, cuda_path) -> None:
    module_class, kwargs = FUSED_MODULES[name]
    module = module_class(32, 64, num_layers=2, backend="cuda", device="cuda", **kwargs).to(dtype)
    reference = module_class(32, 64, num_layers=2, backend="cuda", device="cuda", **kwargs)
    reference.load_state_dict({k: v.float() for k, v in module.state_dict().items()})
    x = torch.randn(20, 8, 32, device="cuda").to(dtype)
    got = flatten(module(x))
    want = flatten(reference(x.float()))
    for g, w in zip(got, want, strict=True):
        assert g.dtype == dtype
        torch.testing.assert_close(g.float(), w, atol=HALF_ULPS[dtype] * w.abs().max().item(),
                                   rtol=0)


@pytest.mark.parametrize("name", list(FUSED_MODULES))
def test_cuda_agrees_with_cpu_kernels(name) -> None:
    module_class, kwargs = FUSED_MODULES[name]
    cpu = module_class(8, 16, num_layers=2, bidirectional=True, backend="cpp", **kwargs)
    gpu = module_class(8, 16, num_layers=2, bidirectional=True, backend="cuda", device="cuda",
                       **kwargs)
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(12, 5, 8)
    for got, want in zip(flatten(gpu(x.cuda())), flatten(cpu(x)), strict=True):
        torch.testing.assert_close(got.cpu(), want, atol=1e-5, rtol=0)


def test_autocast_cuda() -> None:
    module = rnnkernels.FusedLSTM(16, 32, backend="cuda", device="cuda")
    with torch.autocast("cuda"):
        output, _ = module(torch.randn(5, 3, 16, device="cuda"))
    assert torch.isfinite(output).all()


def test_mixed_devices_error() -> None:
    module = rnnkernels.FusedGRU(4, 6, device="cuda")
    with pytest.raises(RuntimeError, match="not at the same device"):
        module(torch.randn(3, 2, 4))


@pytest.mark.parametrize("name", [name for name in FUSED_MODULES if name != "lstm-proj"])
def test_grid_kernels_take_small_batches(name) -> None:
    """B=8, H=64: every layer direction runs on the persistent kernels (which take no
    projection), so the per-step loop counts no launches; with them off it counts two a
    step."""
    module_class, kwargs = FUSED_MODULES[name]
    module = module_class(16, 64, bidirectional=True, backend="cuda", device="cuda", **kwargs)
    x = torch.randn(10, 8, 16, device="cuda", requires_grad=True)

    def launches() -> int:
        before = _backend._C.step_launches()
        torch.autograd.grad(module(x)[0].sum(), [x, *module.parameters()])
        return _backend._C.step_launches() - before

    assert launches() == 0
    before = _backend._C.set_persistent_kernels(False)
    try:
        assert launches() == 2 * 2 * 10 * 2  # directions x (forward, backward) x steps x 2
    finally:
        _backend._C.set_persistent_kernels(before)


def _captured_and_eager(module: nn.Module, x: torch.Tensor) -> tuple[list, list]:
    """The outputs and gradients of module(x) from a CUDA graph replayed on x, and eager."""
    params = list(module.parameters())
    static_x = torch.zeros_like(x, requires_grad=True)

    def run(inp: torch.Tensor) -> list:
        output = module(inp)[0]
        return [output, *torch.autograd.grad(output.square().sum(), [inp, *params])]

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            run(static_x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_results = run(static_x)
    with torch.no_grad():
        static_x.copy_(x)
    graph.replay()
    torch.cuda.synchronize()
    return [t.clone() for t in static_results], run(x.detach().requires_grad_())


@pytest.mark.parametrize("name", list(FUSED_MODULES))
def test_cuda_graph_capture(name, cuda_path) -> None:
    """A padded call makes no host synchronisation: forward and backward capture in a CUDA
    graph, and its replay on new input gives the eager results."""
    module_class, kwargs = FUSED_MODULES[name]
    module = module_class(16, 32, num_layers=2, backend="cuda", device="cuda", **kwargs)
    captured, eager = _captured_and_eager(module, torch.randn(12, 4, 16, device="cuda"))
    for got, want in zip(captured, eager, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_compile_reduce_overhead_cuda(cuda_path) -> None:
    lstm = rnnkernels.FusedLSTM(16, 32, num_layers=2, backend="cuda", device="cuda")
    compiled = torch.compile(lambda x: lstm(x)[0], mode="reduce-overhead", fullgraph=True)
    x = torch.randn(12, 4, 16, device="cuda")
    with torch.no_grad():
        for _ in range(3):
            got = compiled(x).clone()
        torch.testing.assert_close(got, lstm(x)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn-tanh"])
def test_tf32_tiles_against_float64_cuda(name) -> None:
    """With torch's matmul TF32 flag on, the persistent kernels' float32 products run on
    TF32 tensor cores: within the bound of 10-bit mantissas (as HALF_ULPS for fp16)."""
    module_class, kwargs = FUSED_MODULES[name]
    module = module_class(32, 64, num_layers=2, backend="cuda", device="cuda", **kwargs)
    reference = module_class(32, 64, num_layers=2, backend="cuda", device="cuda",
                             dtype=torch.float64, **kwargs)
    reference.load_state_dict({k: v.double() for k, v in module.state_dict().items()})
    x = torch.randn(20, 8, 32, device="cuda")
    torch.backends.cuda.matmul.allow_tf32 = True  # restored by _no_tf32
    got = flatten(module(x))
    want = flatten(reference(x.double()))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g.double(), w, atol=HALF_ULPS[torch.float16] * w.abs().max().item(),
                                   rtol=0)


ROWWISE_MODULES = {"ln-lstm": (rnnkernels.LayerNormLSTM, {}), "ln-gru": (rnnkernels.LayerNormGRU, {}),
                   "lstm-zoneout": (rnnkernels.FusedLSTM, {"zoneout": 0.3}),
                   "gru-zoneout": (rnnkernels.FusedGRU, {"zoneout": 0.3})}


@pytest.mark.parametrize("name", list(ROWWISE_MODULES))
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_rowwise_gradcheck_cuda(name, bidirectional) -> None:
    """The rowwise kernels (layer norms, zoneout; one block per row) in float64, with the
    zoneout mask's seed fixed for every evaluation."""
    module_class, kwargs = ROWWISE_MODULES[name]
    module = module_class(3, 5, num_layers=2, bidirectional=bidirectional, backend="cuda",
                          dtype=torch.float64, device="cuda", **kwargs)
    run = module_as_function(module)

    def seeded(*args):
        torch.manual_seed(0)
        return run(*args)

    inputs = [t.detach().cuda().requires_grad_() for t in gradcheck_inputs(module)]
    assert torch.autograd.gradcheck(seeded, inputs)


@pytest.mark.parametrize("name", ["ln-lstm", "ln-gru"])
@pytest.mark.parametrize("packed", [False, True])
def test_rowwise_cuda_agrees_with_cpu_kernels(name, packed) -> None:
    """The same module and weights on both devices' rowwise kernels, float32, H past one
    block's 256 threads: outputs and every gradient. (Zoneout masks come from each
    device's own generator: the next test compares those on one device.)"""
    module_class, kwargs = ROWWISE_MODULES[name]
    cpu = module_class(16, 300, num_layers=2, **kwargs)
    gpu = module_class(16, 300, num_layers=2, device="cuda", **kwargs)
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(9, 4, 16)
    results = []
    for module, device in ((cpu, "cpu"), (gpu, "cuda")):
        inputs = x.to(device)
        if packed:
            inputs = nn.utils.rnn.pack_padded_sequence(inputs, torch.tensor([9, 7, 4, 2]))
        output, _ = module(inputs)
        data = output.data if packed else output
        grads = torch.autograd.grad(data.pow(2).sum(), list(module.parameters()))
        results.append([data.cpu(), *(g.cpu() for g in grads)])
    for got, want in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list(ROWWISE_MODULES))
def test_rowwise_cuda_matches_reference_cuda(name) -> None:
    """Ours against the python backend on the same CUDA device and seed (the same mask)."""
    module_class, kwargs = ROWWISE_MODULES[name]
    module = module_class(8, 40, device="cuda", dtype=torch.float64, **kwargs)
    x = torch.randn(6, 3, 8, device="cuda", dtype=torch.float64)
    outputs = []
    for backend in ("cuda", "python"):
        module.backend = backend
        torch.manual_seed(3)
        output, _ = module(x)
        outputs.append([output, *torch.autograd.grad(output.sum(), list(module.parameters()))])
    for got, want in zip(*outputs, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
