"""DistributedDataParallel (gloo, 2 processes on this machine) over a model with a
FusedLSTM: both ranks end with the same parameters, equal to one process training on
the concatenated batch."""

from __future__ import annotations

import os
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import rnnkernels

STEPS, BATCH_PER_RANK, WORLD = 4, 3, 2


class Tagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn = rnnkernels.FusedLSTM(4, 8, num_layers=2, dtype=torch.float64)
        self.head = nn.Linear(8, 2, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][-1])


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(5, BATCH_PER_RANK * WORLD, 4, generator=generator, dtype=torch.float64),
             torch.randn(BATCH_PER_RANK * WORLD, 2, generator=generator, dtype=torch.float64))
            for _ in range(STEPS)]


def _train(model: nn.Module, rank: int | None) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in _batches():
        if rank is not None:
            rows = slice(rank * BATCH_PER_RANK, (rank + 1) * BATCH_PER_RANK)
            x, y = x[:, rows], y[rows]
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)
    torch.set_num_threads(1)
    model = nn.parallel.DistributedDataParallel(Tagger())
    _train(model, rank)
    torch.save([p.detach() for p in model.module.parameters()], os.path.join(out_dir, f"{rank}.pt"))
    # Both ranks done before either tears gloo down: without this, a rank destroying the
    # group while its peer still talks to it aborted the peer now and then, nn's LSTM too.
    dist.barrier()
    dist.destroy_process_group()


def test_ddp_two_processes_match_single_process() -> None:
    with tempfile.TemporaryDirectory() as out_dir:
        init_file = os.path.join(out_dir, "init")
        mp.spawn(_worker, args=(init_file, out_dir), nprocs=WORLD, join=True)
        ranks = [torch.load(os.path.join(out_dir, f"{r}.pt")) for r in range(WORLD)]
    for a, b in zip(*ranks, strict=True):
        assert torch.equal(a, b)
    single = Tagger()
    _train(single, None)
    for got, want in zip(ranks[0], single.parameters(), strict=True):
        torch.testing.assert_close(got, want.detach(), atol=1e-12, rtol=1e-10)
