"""The CPU's persistent sequence kernels on the shapes that take their less common paths:
several threads meeting at a barrier each step, hidden sizes that leave a partial SIMD
block, a thread owning an odd number of blocks, packed batches that shrink (forward) and
grow (reverse direction), in float32 against nn.* and in float64 against the reference."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from conftest import CPU_BACKENDS, FUSED_OF, assert_parity, module_pair

pytestmark = pytest.mark.skipif("cpp" not in CPU_BACKENDS, reason="needs the C++ build")

CELLS = [(nn.LSTM, {}), (nn.GRU, {}), (nn.RNN, {"nonlinearity": "tanh"}),
         (nn.RNN, {"nonlinearity": "relu"})]
# Enough work per step for two threads (see csrc/cpu/persistent.cpp); 40 = 16 + 16 + 8 and
# 100 = 6 x 16 + 4 leave a partial last block of 16 float lanes (8 double lanes).
SHAPES = [(5, 48, 24, 40), (4, 40, 8, 100)]


@pytest.mark.parametrize("case", CELLS, ids=lambda c: c[0].__name__ + "-".join(c[1].values()))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_padded_bidirectional_matches_nn(case, shape, threads) -> None:
    nn_class, kwargs = case
    steps, batch, inputs, hidden = shape
    reference, fused = module_pair(nn_class, inputs, hidden, bidirectional=True, backend="cpp",
                                   **kwargs)
    x = torch.randn(steps, batch, inputs, requires_grad=True)
    assert_parity(reference, fused, [x])


@pytest.mark.parametrize("case", CELLS, ids=lambda c: c[0].__name__ + "-".join(c[1].values()))
def test_packed_bidirectional_matches_nn(case, threads) -> None:
    nn_class, kwargs = case
    reference, fused = module_pair(nn_class, 12, 40, bidirectional=True, backend="cpp", **kwargs)
    lengths = torch.tensor([9, 9, 7, 7, 7, 4, 2, 1] * 6)  # batch 48, steps of 48 down to 6 rows
    x = torch.randn(9, 48, 12, requires_grad=True)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    assert_parity(reference, fused, [packed])


@pytest.mark.parametrize("case", CELLS, ids=lambda c: c[0].__name__ + "-".join(c[1].values()))
def test_float64_matches_reference_tightly(case, threads) -> None:
    nn_class, kwargs = case
    # 20 = 8 + 8 + 4 double lanes; 48 rows x 80 gates x 20 is work for two threads.
    reference, fused = (FUSED_OF[nn_class](8, 20, bidirectional=True, backend=backend,
                                           dtype=torch.float64, **kwargs)
                        for backend in ("python", "cpp"))
    fused.load_state_dict(reference.state_dict())
    lengths = torch.tensor([6, 6, 5, 3, 3, 1] * 8)
    x = torch.randn(6, 48, 8, dtype=torch.float64, requires_grad=True)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    assert_parity(reference, fused, [packed], atol=1e-12)


@pytest.mark.parametrize("case", CELLS, ids=lambda c: c[0].__name__ + "-".join(c[1].values()))
@pytest.mark.parametrize("hidden", [40, 48, 112])
@pytest.mark.parametrize("batch", [1, 16])
def test_same_bits_on_one_and_two_threads(case, hidden, batch) -> None:
    # 40, 48 and 112 float units are 3, 3 and 7 blocks of 16: a team of two splits them
    # unevenly, and a tile of two blocks could pair different blocks on one thread than
    # on two (RNN's forward tiles and every backward tile take two, and a tile of one
    # block sums in another order at B=1); the results must not depend on the team.
    # (Where a step has too little work for two threads, e.g. RNN at B=1 H=40, both runs
    # use one: those cases hold trivially; B=16 and the larger B=1 ones take two.)
    nn_class, kwargs = case
    torch.manual_seed(0)
    fused = FUSED_OF[nn_class](20, hidden, backend="cpp", **kwargs)
    x = torch.randn(30, batch, 20, requires_grad=True)

    def run(threads: int) -> list[torch.Tensor]:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            output = fused(x)[0]
            tensors = [x, *fused.parameters()]
            return [output, *torch.autograd.grad(output.square().sum(), tensors)]
        finally:
            torch.set_num_threads(before)

    for one, two in zip(run(1), run(2), strict=True):
        assert torch.equal(one, two)


def _run_child(threads: int, sizes: tuple[int, int], bidirectional: bool,
               x_shape: tuple[int, int, int], repeats: int, **env: str) -> None:
    """In a child process (environment `env`) on at most two cores with `threads` torch
    threads: FusedLSTM and FusedGRU of `sizes` on the cpp backend against the python
    backend, outputs and input gradients, `repeats` times."""
    code = f"""
import os
if hasattr(os, "sched_setaffinity"):  # before torch starts any thread
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])
import torch
import rnnkernels
torch.set_num_threads({threads})
assert torch.get_num_threads() == {threads}, torch.get_num_threads()
torch.manual_seed(0)
for module in (rnnkernels.FusedLSTM, rnnkernels.FusedGRU):
    fused = module(*{sizes}, bidirectional={bidirectional}, backend="cpp")
    reference = module(*{sizes}, bidirectional={bidirectional}, backend="python")
    reference.load_state_dict(fused.state_dict())
    for _ in range({repeats}):
        x = torch.randn(*{x_shape}, requires_grad=True)
        got, want = fused(x)[0], reference(x)[0]
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        grads = [torch.autograd.grad(out.square().sum(), x)[0] for out in (got, want)]
        torch.testing.assert_close(grads[0], grads[1], atol=1e-4, rtol=0)
print("ok")
"""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, **env,
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.run([sys.executable, "-c", code], env=env, cwd=root,
                           capture_output=True, text=True, timeout=600)
    assert child.returncode == 0 and child.stdout.strip().endswith("ok"), child.stderr[-3000:]


def test_smaller_openmp_team_than_asked_for() -> None:
    # OMP_THREAD_LIMIT=1: torch still reports two threads, the kernels ask OpenMP for two
    # and get a team of one (as when called inside another parallel region). The
    # reference is our python backend: nn.LSTM itself (oneDNN) gives wrong bidirectional
    # outputs under OMP_THREAD_LIMIT=1 in torch 2.14.1 (off by ~0.5 here).
    _run_child(2, (24, 40), True, (5, 48, 24), 1, OMP_THREAD_LIMIT="1")


def test_more_threads_than_cores() -> None:
    # Eight threads on two cores: the barrier's waiters give up their cores and sleep most
    # steps, and are woken by the late thread's arrival. A wake lost there would hang the
    # team (the child's timeout fails the test). H=128 is 8 blocks of 16 float lanes, one
    # per thread.
    _run_child(8, (16, 128), False, (300, 4, 16), 3)
