"""Long runs and threads: memory stops growing in long training runs, and several Python
threads running forward/backward at once get the single-threaded results."""

from __future__ import annotations

import gc
import threading

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkernels
from conftest import CPU_BACKENDS


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


WINDOW_STEPS = 1000
# A leak of the smallest tensor a step saves (8 x 16 float32 = 512 B) adds 512 KiB over a
# window. Allocator caches fill during the warm-up and the first window: the second window
# of these runs grew by 0-24 KiB (page-sized steps of RSS).
GROWTH_BOUND = 256 * 2**10
MODULES = {"lstm": rnnkernels.FusedLSTM, "gru": rnnkernels.FusedGRU, "rnn": rnnkernels.FusedRNN}


@pytest.mark.parametrize("layout", ["one-way", "bidirectional", "packed"])
@pytest.mark.parametrize("cell", list(MODULES))
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_training_memory_stops_growing(backend, cell, layout) -> None:
    torch.manual_seed(0)
    model = MODULES[cell](4, 16, num_layers=2, bidirectional=layout == "bidirectional",
                          backend=backend)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(3, 8, 4)
    lengths = torch.tensor([3, 3, 2, 2, 2, 1, 1, 1])

    def step() -> None:
        optimizer.zero_grad()
        inputs = pack_padded_sequence(x, lengths) if layout == "packed" else x
        output, state = model(inputs)
        data = output.data if layout == "packed" else output
        last = state[1] if cell == "lstm" else state
        (data.square().mean() + last.mean()).backward()
        optimizer.step()

    growth = []
    for steps in (300, WINDOW_STEPS, WINDOW_STEPS):
        gc.collect()
        before = _rss_bytes()
        for _ in range(steps):
            step()
        gc.collect()
        growth.append(_rss_bytes() - before)
    assert growth[2] < GROWTH_BOUND, f"RSS grew {growth[2] / 2**20:.2f} MiB in the second window"


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_threads_get_the_sequential_results(backend) -> None:
    torch.manual_seed(0)
    models = [rnnkernels.FusedGRU(6, 12, num_layers=2, bidirectional=True, backend=backend)
              for _ in range(4)]
    inputs = [torch.randn(9, 5, 6) for _ in models]

    def run(index: int) -> list[torch.Tensor]:
        x = inputs[index].clone().requires_grad_()
        output, h = models[index](x)
        grads = torch.autograd.grad(output.square().sum() + h.sum(),
                                    [x, *models[index].parameters()])
        return [output.detach(), h.detach(), *grads]

    expected = [run(i) for i in range(len(models))]
    results: dict[int, list[torch.Tensor]] = {}
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            for _ in range(5):
                results[index] = run(index)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(models))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)
    for index, want in enumerate(expected):
        for got, w in zip(results[index], want, strict=True):
            assert torch.equal(got, w)


@pytest.mark.skipif(not rnnkernels.backend_info()["compiled"]["cpp"],
                    reason="the C++ extension is not built")
def test_results_outlive_the_reused_scratch_buffers() -> None:
    """Each thread reuses its scratch buffers (input projection, gate gradients) from call
    to call: what one call returned must not change when later calls, larger, smaller or of
    another cell, reuse them."""
    torch.manual_seed(0)
    x = torch.randn(5, 3, 6, requires_grad=True)
    model = rnnkernels.FusedLSTM(6, 12, backend="cpp")
    output, _ = model(x)
    output.sum().backward()
    results = [output.detach(), x.grad, *(p.grad for p in model.parameters())]
    copies = [t.clone() for t in results]
    for make, steps in ((rnnkernels.FusedGRU, 9), (rnnkernels.FusedLSTM, 2),
                        (rnnkernels.FusedLSTM, 20)):
        y = torch.randn(steps, 4, 6, requires_grad=True)
        later, _ = make(6, 12, backend="cpp")(y)
        later.sum().backward()
    for got, want in zip(results, copies, strict=True):
        assert torch.equal(got, want)


def _huge_page_eligible(address: int) -> bool | None:
    """Whether the mapping holding `address` may take transparent huge pages (smaps'
    THPeligible), or None where the kernel does not say."""
    with open("/proc/self/smaps") as smaps:
        inside = False
        for line in smaps:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                start, end = (int(part, 16) for part in head.split("-"))
                inside = start <= address < end
            elif inside and head == "THPeligible:":
                return line.split()[1] == "1"
    return None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_large_kept_tensors_are_advised_huge_pages(dtype) -> None:
    """What a training forward keeps for backward is written whole right after it is
    allocated: its memory is advised huge pages (csrc/cpu/huge_pages.h), one fault per
    2 MiB instead of per 4 KiB."""
    if not rnnkernels.backend_info()["available"]["cpp"]:
        pytest.skip("needs the C++ build")
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as mode:
            if "[never]" in mode.read():
                pytest.skip("transparent huge pages are off on this machine")
    except OSError:
        pytest.skip("no transparent huge pages here")
    from rnnkernels import _ops

    T, B, H = 50, 64, 256  # saved: [T, B, 4H], 12.5 or 25 MiB
    x = torch.randn(T, B, H, dtype=dtype)
    h0, c0 = torch.zeros(B, H, dtype=dtype), torch.zeros(B, H, dtype=dtype)
    w_ih, w_hh = torch.randn(4 * H, H, dtype=dtype), torch.randn(4 * H, H, dtype=dtype)
    saved = _ops.forward_op("lstm")(x, [], h0, c0, w_ih, w_hh, None, None, None, False)[3]
    assert saved.nbytes >= 8 * 2**20
    middle = saved.data_ptr() + saved.nbytes // 2
    eligible = _huge_page_eligible(middle)
    if eligible is None:
        pytest.skip("this kernel's smaps has no THPeligible")
    assert eligible


@pytest.mark.skipif("cpp" not in CPU_BACKENDS, reason="needs the C++ build")
def test_empty_cache_frees_every_threads_kept_memory() -> None:
    """What the kernels keep between calls (the scratch tensors, the persistent kernels'
    buffers, a single step's projections) is freed by empty_cache from any thread, the
    memory of a thread still alive included; calls after it give the same results."""
    lstm = rnnkernels.FusedLSTM(64, 128, backend="cpp")
    cell = rnnkernels.FusedGRUCell(64, 128, backend="cpp")
    x = torch.randn(20, 16, 64, requires_grad=True)

    def run() -> list[torch.Tensor]:
        output = lstm(x)[0]
        h = cell(x[0])
        return [output, h, *torch.autograd.grad(output.sum() + h.sum(), [x])]

    first = run()
    rnnkernels.empty_cache()
    ran, resume = threading.Event(), threading.Event()
    in_thread: list[list[torch.Tensor]] = []

    def worker() -> None:
        in_thread.append(run())
        ran.set()
        resume.wait()
        in_thread.append(run())

    thread = threading.Thread(target=worker)
    thread.start()
    ran.wait()
    # Only the worker ran since the last empty_cache: what is freed now is what it kept,
    # at least its input projection ([20 x 16, 4 x 128] float32).
    assert rnnkernels.empty_cache() >= 20 * 16 * 4 * 128 * 4
    assert rnnkernels.empty_cache() == 0
    resume.set()
    thread.join()
    for results in (in_thread[0], in_thread[1], run()):
        for got, want in zip(results, first, strict=True):
            torch.testing.assert_close(got, want, atol=0, rtol=0)
