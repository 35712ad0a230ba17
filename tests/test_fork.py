"""A process that ran Fused modules on two threads and then forks: the child's calls
finish (OpenMP's pool does not survive fork; rnnkernels/_fork.py) and give the parent's
results. Run in a subprocess with an alarm, so that a hang fails the test."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD_SCRIPT = textwrap.dedent("""
    import multiprocessing, os, signal
    import torch
    import rnnkernels

    torch.set_num_threads(2)
    torch.manual_seed(0)
    lstm = rnnkernels.FusedLSTM(256, 256, bidirectional=True)
    cell = rnnkernels.FusedGRUCell(64, 64)
    x, step = torch.randn(20, 64, 256), torch.randn(8, 64)

    def run():
        with torch.no_grad():
            output = lstm(x)[0]
        loss = lstm(x)[0].square().sum() + cell(step).sum()
        grad = torch.autograd.grad(loss, lstm.weight_hh_l0)[0]
        return output, grad

    want = run()

    def child(queue):
        signal.alarm(60)  # a hang ends the child instead of the test run
        got = run()
        queue.put(all(torch.equal(g, w) for g, w in zip(got, want, strict=True)))

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=child, args=(queue,))
    process.start()
    process.join(90)
    assert process.exitcode == 0, f"the forked child ended with {process.exitcode}"
    assert queue.get(timeout=5), "the child's results differ from the parent's"
    assert torch.get_num_threads() == 2  # the parent keeps its threads
    print("ok")
""")


def test_forked_child_runs_the_kernels():
    result = subprocess.run([sys.executable, "-c", CHILD_SCRIPT], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and result.stdout.split() == ["ok"], result.stderr[-3000:]
