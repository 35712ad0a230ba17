"""Runs the cases: inputs, the correctness gate, timing, memory, derived numbers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from .configs import LAYER_NORM_CELLS, Shape, flops
from .implementations import Implementation, build
from .timing import gemm_ceiling, summarize, time_interleaved

# Agreement required with nn.* before timing: outputs are at most 1 in size, and
# accumulation order differs between GEMM libraries.
CHECK_ATOL = {torch.float32: 1e-4, torch.float64: 1e-9, torch.bfloat16: 5e-2, torch.float16: 1e-2}


# Seconds of 1024^3 products timed before and after each mode's rounds.
CEILING_BUDGET_S = 0.25


class MismatchError(RuntimeError):
    """An implementation disagrees with torch.nn; the benchmark stops (unless it records
    the disagreement and goes on: run_case's on_mismatch)."""


def make_input(shape: Shape, device: str, dtype: torch.dtype, seed: int = 0):
    """(input, tokens): a [T, B, I] tensor, or a PackedSequence with lengths uniform in [1, T]."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape.T, shape.B, shape.I, generator=generator).to(device=device, dtype=dtype)
    if not shape.packed:
        return x, shape.T * shape.B
    lengths = torch.randint(1, shape.T + 1, (shape.B,), generator=generator)
    return pack_padded_sequence(x, lengths, enforce_sorted=False), int(lengths.sum())


def _output_tensors(result) -> list[torch.Tensor]:
    output, hidden = result
    data = output.data if isinstance(output, PackedSequence) else output
    return [data, *(hidden if isinstance(hidden, tuple) else (hidden,))]


# The mode whose training step runs under torch.autocast (bf16), on float32 modules.
AUTOCAST = "autocast"
TRAINING_MODES = ("train", AUTOCAST)


def _step(impl: Implementation, x, mode: str) -> Callable[[], object]:
    context = impl.context or contextlib.nullcontext
    device = x.data.device.type

    def forward() -> object:
        with context(), torch.no_grad():
            return impl.module(x)

    def train() -> object:
        autocasting = torch.autocast(device, dtype=torch.bfloat16, enabled=mode == AUTOCAST)
        with context():
            impl.module.zero_grad(set_to_none=True)
            with autocasting:  # the forward only, as autocast is meant to be used
                loss = sum(t.float().sum() for t in _output_tensors(impl.module(x)))
            loss.backward()
        return loss

    return forward if mode == "fwd" else train


def check_against_nn(impls: list[Implementation], x, dtype: torch.dtype, case: str) -> list[str]:
    """Each disagreement of an implementation with the first (torch.nn), as a message.

    Where the baseline has a float64 twin (``Implementation.exact``: cells whose dynamics
    amplify rounding, as a layer-normalised LSTM's at its initialisation), the others are
    compared with that instead, allowed twice the baseline's own distance from it (at least
    the dtype's tolerance)."""
    baseline = impls[0]
    reference = [t.float() for t in _output_tensors(baseline.run_forward())]
    allowed = CHECK_ATOL[dtype]
    if baseline.exact is not None:
        with torch.no_grad():
            exact = [t.double() for t in _output_tensors(baseline.exact(_as_double(x)))]
        allowed = max(allowed, 2 * max(_max_error(r, e) for r, e in zip(reference, exact)))
        reference = exact
    mismatches = []
    for impl in impls[1:]:
        if not impl.checked:
            continue
        got = _output_tensors(impl.run_forward())
        for index, (g, w) in enumerate(zip(got, reference)):
            error = _max_error(g, w)
            if not error <= allowed:
                mismatches.append(f"{case}: {impl.name} differs from {baseline.name} in output "
                                  f"{index} by {error:.3g} (allowed {allowed:.1g})")
    return mismatches


def _max_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return (got.to(want.dtype) - want).abs().max().item() if got.numel() else 0.0


def _as_double(x):
    """The case's input in float64 (a PackedSequence keeps its batch sizes)."""
    if isinstance(x, PackedSequence):
        return x._replace(data=x.data.double())
    return x.double()


@contextlib.contextmanager
def _count_saved_bytes(total: list[int]) -> Iterator[None]:
    """Adds to total[0] the bytes of distinct storages autograd saves for backward."""
    seen: set[int] = set()

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total[0] += storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield


def memory_bytes(fn: Callable[[], object], device: str, mode: str) -> int | None:
    """CUDA: peak allocated during one call above what was allocated before. CPU: the
    bytes saved for backward (training step only)."""
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    if mode not in TRAINING_MODES:
        return None
    total = [0]
    with _count_saved_bytes(total):
        fn()
    return total[0]


def run_case(shape: Shape, impl_names: list[str], device: str, dtype: torch.dtype, modes: list[str],
             repeats: int, budget_s: float, on_mismatch: str = "abort") -> list[dict]:
    """One row per implementation and mode. A disagreement with torch.nn raises
    MismatchError, or with on_mismatch="record" is kept in each of the case's rows
    ("mismatches") and the case is timed all the same. The GEMM ceiling of a mode is the
    faster of a 1024^3 product timed just before and just after its rounds: this machine's speed
    drifts over minutes, so a ceiling timed elsewhere in the run would compare the case
    with another state of the machine (one 235 GFLOP/s burst once made every case look
    slow); the faster of the two, since a slow moment would flatter the case."""
    torch.manual_seed(0)
    impls = build(shape, impl_names, device, dtype)
    x, tokens = make_input(shape, device, dtype)
    for impl in impls:
        impl.run_forward = _step(impl, x, "fwd")
    mismatches = []
    if impls and impls[0].baseline:
        mismatches = check_against_nn(impls, x, dtype, shape.key())
    if mismatches and on_mismatch != "record":
        raise MismatchError("; ".join(mismatches))
    rows = []
    # Autocast rows are float32 modules computing in bf16: the bf16 ceiling is theirs. The
    # layer-normalised cells compute in float32 whatever the dtype: no autocast rows.
    modes = [m for m in modes if m != AUTOCAST or (dtype == torch.float32
                                                   and shape.cell not in LAYER_NORM_CELLS)]
    ceiling_dtype = {m: torch.bfloat16 if m == AUTOCAST else dtype for m in modes}
    for mode in modes:
        before = gemm_ceiling(device, ceiling_dtype[mode], budget_s=CEILING_BUDGET_S)
        fns = {impl.name: _step(impl, x, mode) for impl in impls}
        samples = time_interleaved(fns, device, repeats, budget_s)
        ceiling = max(before, gemm_ceiling(device, ceiling_dtype[mode], budget_s=CEILING_BUDGET_S))
        work = flops(shape, tokens, mode)
        baseline = None
        for impl in impls:
            stats = summarize(samples[impl.name])
            baseline = baseline or stats["median_ms"]
            gflops = work / (stats["median_ms"] / 1e3) / 1e9
            rows.append({
                "shape": shape.as_dict(), "case": shape.key(), "mode": mode, "impl": impl.name,
                "device": device, "dtype": str(dtype).replace("torch.", ""), "tokens": tokens,
                **stats, "samples_ms": [s * 1e3 for s in samples[impl.name]],
                "speedup_vs_nn": baseline / stats["median_ms"],
                "gflops": gflops, "flop": work, "gemm_ceiling_gflops": ceiling,
                "pct_of_gemm_ceiling": 100.0 * gflops / ceiling,
                "memory_bytes": memory_bytes(fns[impl.name], device, mode),
                "mismatches": mismatches,
            })
    return rows
