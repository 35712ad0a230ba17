"""The CPU kernels on two threads against independent references: nn.* (float32) for the
modules, the plain-torch math of ``rnnkernels.reference`` for the ops.

One-way layers, so that one direction's persistent kernel runs a team of two threads that
meet at a barrier each step (a bidirectional layer gives each direction one thread), at
hidden sizes chosen from the lane width of the instruction set the kernels run: a partial
last SIMD block, a number of blocks that two threads split unevenly, H = 256 and the
README's B = 1, H = 64; batches of 1-3 (where the tile GEMM splits K) and 16; bias on and
off; packed batches that shrink; and the layer op in reverse, which the modules only run
inside a bidirectional layer. ``test_under_every_isa`` runs this file again under each
ATEN_CPU_CAPABILITY the CPU can execute.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkernels
from rnnkernels import _ops, reference
from conftest import CPU_BACKENDS, assert_parity, module_pair

pytestmark = pytest.mark.skipif("cpp" not in CPU_BACKENDS, reason="needs the C++ build")

ISA = rnnkernels.backend_info()["cpu_isa"]
LANES = 16 if ISA == "avx512" else 8  # float32 units per SIMD block (at::vec's width)
# 2 blocks and a half; 6 blocks and 4 units (two threads: 4 and 3 blocks); 256; 64.
HIDDEN = [2 * LANES + LANES // 2, 6 * LANES + 4, 256, 64]
CELLS = [(nn.LSTM, {}), (nn.GRU, {}), (nn.RNN, {"nonlinearity": "tanh"}),
         (nn.RNN, {"nonlinearity": "relu"})]
CELL_IDS = ["LSTM", "GRU", "RNN-tanh", "RNN-relu"]


@pytest.fixture(autouse=True)
def _two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("batch", [1, 2, 3, 16])
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("case", CELLS, ids=CELL_IDS)
def test_one_way_layer_matches_nn(case, hidden, batch, bias, fused_backward_calls):
    nn_class, kwargs = case
    reference_module, fused = module_pair(nn_class, 24, hidden, bias=bias, backend="cpp", **kwargs)
    x = torch.randn(6, batch, 24, requires_grad=True)
    h0 = torch.randn(1, batch, hidden, requires_grad=True)
    state = (h0, torch.randn(1, batch, hidden, requires_grad=True)) if nn_class is nn.LSTM else h0
    assert_parity(reference_module, fused, [x, state])
    assert len(fused_backward_calls) == 1 and fused_backward_calls[0].endswith("_layer_backward")


@pytest.mark.parametrize("hidden", HIDDEN[:3])
@pytest.mark.parametrize("case", CELLS, ids=CELL_IDS)
def test_packed_shrinking_batch_matches_nn(case, hidden, fused_backward_calls):
    nn_class, kwargs = case
    reference_module, fused = module_pair(nn_class, 12, hidden, num_layers=2, backend="cpp",
                                          **kwargs)
    lengths = torch.tensor([7, 7, 6, 4, 4, 3, 2, 1] * 2)  # 16 rows a step down to 2
    x = torch.randn(7, 16, 12, requires_grad=True)
    assert_parity(reference_module, fused, [pack_padded_sequence(x, lengths, enforce_sorted=False)])
    assert len(fused_backward_calls) == 2  # one a layer


def _layer_inputs(cell: str, hidden: int, batch: int, packed: bool) -> tuple[list, list[int]]:
    """(x, h0, c0, w_ih, w_hh, b_ih, b_hh) needing grad, and the batch sizes (packed: a
    batch that shrinks forward, so grows in reverse)."""
    gates = _ops.GATES[cell]
    sizes = [batch, batch, batch - 1, batch - 1, 1] if packed else []
    rows = sum(sizes) if packed else None
    x = torch.randn(rows, 10) if packed else torch.randn(5, batch, 10)
    c0 = torch.randn(batch, hidden) if cell == "lstm" else None
    tensors = [x, torch.randn(batch, hidden), c0, torch.randn(gates * hidden, 10) / 3,
               torch.randn(gates * hidden, hidden) / hidden ** 0.5, torch.randn(gates * hidden),
               torch.randn(gates * hidden)]
    return [t.requires_grad_() if t is not None else None for t in tensors], sizes


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("batch", [3, 16])
@pytest.mark.parametrize("hidden", HIDDEN[1:3])
@pytest.mark.parametrize("cell", _ops.CELLS)
def test_layer_op_in_reverse_matches_reference(cell, hidden, batch, packed, fused_backward_calls):
    """The reverse direction with a team of two: outputs, states and every gradient (the
    op's backward is the fused one) against autograd through the reference math."""
    tensors, sizes = _layer_inputs(cell, hidden, batch, packed)
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = tensors
    got = list(_ops.forward_op(cell)(x, sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, None, True)[:3])
    want = list(reference.layer(cell, x, sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, None, True))
    if c0 is None:
        got, want = got[:2], want[:2]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=0)
    wrt = [t for t in tensors if t is not None]
    projections = [torch.randn(w.shape, generator=torch.Generator().manual_seed(i))
                   for i, w in enumerate(want)]

    def loss(results: list[torch.Tensor]) -> torch.Tensor:
        return sum((r * p).sum() for r, p in zip(results, projections, strict=True))

    grads = torch.autograd.grad(loss(got), wrt)
    expected = torch.autograd.grad(loss(want), wrt)
    assert fused_backward_calls == [f"{cell}_layer_backward"]
    assert len(grads) == len(expected) == len(wrt)
    for g, w in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, w, atol=1e-5 * max(w.abs().max().item(), 1e-30), rtol=0)


def _runnable_isas() -> list[str]:
    """The instruction-set caps this CPU can run (each one below its own best)."""
    order = ["default", "avx2", "avx512"]
    return order[:order.index(ISA) + 1] if ISA in order else []


@pytest.mark.skipif(os.environ.get("RNNKERNELS_TEST_ISA") is not None,
                    reason="already running under an ISA cap")
@pytest.mark.parametrize("isa", ["default", "avx2", "avx512"])
def test_under_every_isa(isa):
    """This file's parity tests in a subprocess whose kernels run the ``isa`` build (the
    subprocess's shapes follow that build's lane width)."""
    if isa not in _runnable_isas():
        pytest.skip(f"this CPU cannot run the {isa} build")
    env = dict(os.environ, ATEN_CPU_CAPABILITY=isa, RNNKERNELS_TEST_ISA=isa)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__,
         "-k", "not test_under_every_isa", "-W", "ignore::pytest.PytestUnknownMarkWarning"],
        capture_output=True, text=True, timeout=900, env=env, cwd=Path(__file__).parent)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def test_the_isa_cap_is_the_one_running():
    """Under a cap, the kernels report the build the cap names (else the test above would
    run the same build three times)."""
    cap = os.environ.get("RNNKERNELS_TEST_ISA")
    if cap is None:
        pytest.skip("not running under an ISA cap")
    assert ISA == cap


@pytest.mark.parametrize("bidirectional", [False, True], ids=["one-way", "bidirectional"])
@pytest.mark.parametrize("case", CELLS, ids=CELL_IDS)
def test_packed_steps_run_only_their_active_rows(case, bidirectional):
    """Each step of a packed batch runs its own batch size's rows, forward and backward
    (the kernels count the rows their steps run), not the padded batch's."""
    nn_class, kwargs = case
    _, fused = module_pair(nn_class, 12, HIDDEN[1], num_layers=2, bidirectional=bidirectional,
                           backend="cpp", **kwargs)
    lengths = torch.tensor([9, 2, 1, 1, 1, 1, 1, 1])
    packed = pack_padded_sequence(torch.randn(9, 8, 12, requires_grad=True), lengths)
    kernels = 2 * (2 if bidirectional else 1)  # layers x directions
    active = int(lengths.sum())
    counted = rnnkernels._backend._C.step_rows
    before = counted()
    output, _ = fused(packed)
    assert counted() - before == kernels * active  # not 9 steps x 8 rows
    output.data.sum().backward()
    assert counted() - before == 2 * kernels * active
