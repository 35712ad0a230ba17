"""The per-step sequence loop (csrc/layer.cpp), run on CPU tensors with the persistent
kernels switched off: the same loop a GPU runs. A step takes two device calls, each one
launch on a GPU (the recurrent GEMM and one pointwise pass that writes the state, the
output rows and what backward keeps), forward and backward alike, and no dispatcher call
(no ATen op per step, so a step's host time is its launches'); its results match nn."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from conftest import CPU_BACKENDS, assert_parity, module_pair
from rnnkernels import _backend

pytestmark = pytest.mark.skipif("cpp" not in CPU_BACKENDS, reason="needs the C++ build")

CELLS = [(nn.LSTM, {}), (nn.GRU, {}), (nn.RNN, {"nonlinearity": "tanh"}),
         (nn.RNN, {"nonlinearity": "relu"}), (nn.LSTM, {"proj_size": 5})]
# Device calls a step for (training forward, inference forward, backward): the projected
# LSTM adds the projection's GEMM and the copy of its result into the state (a copy of
# the incoming state for backward too), and backward's sum of the two gradients of h.
LAUNCHES = {"proj": (5, 4, 4), "plain": (2, 2, 2)}


def case_id(case) -> str:
    return case[0].__name__ + "-".join(str(v) for v in case[1].values())


@pytest.fixture
def step_loop():
    """The per-step loop for every layer while the test runs."""
    before = _backend._C.set_persistent_kernels(False)
    yield
    _backend._C.set_persistent_kernels(before)


def launches(run) -> int:
    before = _backend._C.step_launches()
    run()
    return _backend._C.step_launches() - before


def per_step(make_run) -> int:
    """Device calls per step: the difference between 9 and 5 steps, over 4 steps."""
    counts = [launches(make_run(steps)) for steps in (5, 9)]
    assert (counts[1] - counts[0]) % 4 == 0
    return (counts[1] - counts[0]) // 4


@pytest.mark.parametrize("case", CELLS, ids=case_id)
def test_two_launches_a_step(case, step_loop) -> None:
    nn_class, kwargs = case
    _, fused = module_pair(nn_class, 6, 12, backend="cpp", **kwargs)
    expected = LAUNCHES["proj" if kwargs.get("proj_size") else "plain"]

    def training(steps: int):
        x = torch.randn(steps, 3, 6, requires_grad=True)
        return lambda: fused(x)

    def inference(steps: int):
        x = torch.randn(steps, 3, 6)
        return lambda: torch.no_grad()(fused)(x)

    def backward(steps: int):
        x = torch.randn(steps, 3, 6, requires_grad=True)
        output = fused(x)[0]
        grad = torch.randn_like(output)
        return lambda: output.backward(grad)

    assert (per_step(training), per_step(inference), per_step(backward)) == expected


@pytest.mark.parametrize("case", CELLS, ids=case_id)
def test_no_dispatcher_call_a_step(case, step_loop) -> None:
    """Every ATen op a call makes is per call: as many at 5 steps as at 9."""
    nn_class, kwargs = case
    _, fused = module_pair(nn_class, 6, 12, backend="cpp", **kwargs)

    def ops(steps: int) -> list[str]:
        x = torch.randn(steps, 3, 6, requires_grad=True)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            torch.autograd.grad(fused(x)[0].sum(), [x, *fused.parameters()])
        return sorted(event.name for event in prof.events())

    assert ops(5) == ops(9)


@pytest.mark.parametrize("case", CELLS, ids=case_id)
def test_step_loop_matches_nn(case, step_loop) -> None:
    nn_class, kwargs = case
    reference, fused = module_pair(nn_class, 7, 12, num_layers=2, bidirectional=True,
                                   backend="cpp", **kwargs)
    x = torch.randn(6, 5, 7, requires_grad=True)
    assert_parity(reference, fused, [x])
    # Packed: the forward direction's rows shrink, the reverse one's grow.
    lengths = torch.tensor([6, 3, 6, 1, 4])
    packed = pack_padded_sequence(torch.randn(6, 5, 7, requires_grad=True), lengths,
                                  enforce_sorted=False)
    assert_parity(reference, fused, [packed])
