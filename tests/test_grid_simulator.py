"""The persistent GPU kernels (csrc/grid/grid_program.h) without a GPU: the CPU simulator
runs every block and thread of a small grid phase by phase, blocks in a seeded random
order between grid barriers, and checks that no block reads what another writes between
two barriers. Every cell, both directions, padded and packed batches and sizes that leave
a block fewer units, forward and backward, the FMA and the tensor-core variants (the
tiles' work split and placement; the simulator computes each lane's slots itself, so the
mma instructions' fragment layouts need the GPU), against the reference; the grid barrier
itself with host threads standing in for blocks."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from conftest import CPU_BACKENDS, FUSED_OF, flatten, outputs_and_grads

pytestmark = pytest.mark.skipif("cpp" not in CPU_BACKENDS, reason="needs the C++ build")

CELLS = [(nn.LSTM, {}), (nn.GRU, {}), (nn.RNN, {"nonlinearity": "tanh"}),
         (nn.RNN, {"nonlinearity": "relu"})]
# (blocks at most, batch, hidden): 13 units over 5 blocks leave the last one 1; 2 units
# over 2 blocks with 7 rows; a single block; 40 units, whose dot products cut in parts
# of whole tiles (16 deep) and a shorter last one.
GRIDS = [(5, 3, 13), (4, 7, 2), (1, 2, 6), (5, 3, 40)]
VARIANTS = {"fma": False, "tiles": True}


def case_id(case) -> str:
    return case[0].__name__ + "-".join(case[1].values())


@pytest.fixture
def simulator():
    """Runs CPU layers on the simulated grid: simulator(blocks, seed, state_buffers)."""
    from rnnkernels import _backend

    def start(blocks: int, seed: int = 0, state_buffers: int = 2, tiles: bool = False):
        _backend._C.simulate_grid(blocks, seed, state_buffers, tiles)
        return _backend._C.grid_report

    yield start
    _backend._C.simulate_grid(0)


def float64_pair(nn_class, kwargs, inputs: int, hidden: int, **more):
    reference, fused = (FUSED_OF[nn_class](inputs, hidden, backend=backend, dtype=torch.float64,
                                           **kwargs, **more)
                        for backend in ("python", "cpp"))
    fused.load_state_dict(reference.state_dict())
    return reference, fused


def assert_same(reference, fused, inputs: list, simulator_run) -> dict:
    want_out, want_grads = outputs_and_grads(reference, inputs)
    report = simulator_run()
    got_out, got_grads = outputs_and_grads(fused, inputs)
    for got, want in zip(got_out + got_grads, want_out + want_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)
    return report()


@pytest.mark.parametrize("case", CELLS, ids=case_id)
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: "x".join(map(str, g)))
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("variant", VARIANTS)
def test_padded_matches_reference(case, grid, seed, variant, simulator) -> None:
    blocks, batch, hidden = grid
    reference, fused = float64_pair(*case, 5, hidden, num_layers=2, bidirectional=True)
    x = torch.randn(4, batch, 5, dtype=torch.float64, requires_grad=True)
    report = assert_same(reference, fused, [x],
                         lambda: simulator(blocks, seed, tiles=VARIANTS[variant]))
    # Two layers of two directions, forward and backward each.
    assert report["launches"] == 8 and report["races"] == 0, report


@pytest.mark.parametrize("case", CELLS, ids=case_id)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("variant", VARIANTS)
def test_packed_matches_reference(case, seed, variant, simulator) -> None:
    reference, fused = float64_pair(*case, 4, 11, bidirectional=True)
    lengths = torch.tensor([5, 2, 5, 1, 3, 4])  # the forward's rows shrink, the reverse's grow
    x = torch.randn(5, 6, 4, dtype=torch.float64, requires_grad=True)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    hx = torch.randn(2, 6, 11, dtype=torch.float64, requires_grad=True)
    state = (hx, torch.randn_like(hx, requires_grad=True)) if case[0] is nn.LSTM else hx
    report = assert_same(reference, fused, [packed, state],
                         lambda: simulator(4, seed, tiles=VARIANTS[variant]))
    assert report["launches"] == 4 and report["races"] == 0, report


@pytest.mark.parametrize("case", CELLS, ids=case_id)
@pytest.mark.parametrize("variant", VARIANTS)
def test_inference_and_float32(case, variant, simulator) -> None:
    nn_class, kwargs = case
    reference = nn_class(6, 9, **kwargs)
    fused = FUSED_OF[nn_class](6, 9, backend="cpp", **kwargs)
    fused.load_state_dict(reference.state_dict())
    x = torch.randn(7, 3, 6)
    report = simulator(3, tiles=VARIANTS[variant])
    with torch.no_grad():
        for got, want in zip(flatten(fused(x)), flatten(reference(x)), strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert report()["launches"] == 1 and report()["races"] == 0


def test_gradcheck_through_the_grid(simulator) -> None:
    _, fused = float64_pair(nn.GRU, {}, 3, 5, bidirectional=True)
    simulator(2)
    x = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: fused(x)[0], (x,))


@pytest.mark.parametrize("seed", range(4))
def test_single_buffer_race_is_caught(seed, simulator) -> None:
    """The check can fail: h kept in one buffer instead of two is read by some blocks
    while others write it, in the same window."""
    _, fused = float64_pair(nn.RNN, {}, 3, 8)
    report = simulator(4, seed, state_buffers=1)
    with torch.no_grad():
        fused(torch.randn(3, 2, 3, dtype=torch.float64))
    assert report()["races"] > 0
    assert "touches in the same window" in report()["first_race"]


def test_grid_barrier_with_host_threads() -> None:
    from rnnkernels import _backend

    assert _backend._C.check_grid_barrier(blocks=4, rounds=300) == 0
    assert _backend._C.check_grid_barrier(blocks=1, rounds=10) == 0
