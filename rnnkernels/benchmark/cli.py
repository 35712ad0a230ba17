"""Command line of ``python -m rnnkernels.benchmark``."""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from .. import _backend
from . import report
from .configs import LAYER_NORM_CELLS, Shape, parse_shape, standard_sweep
from .implementations import cudnn_tf32
from .per_step import per_step_us
from .runner import AUTOCAST, MismatchError, run_case
from .single_step import single_step_rows
from .single_step import table as single_step_table

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
          "float16": torch.float16}
IMPLEMENTATIONS = ["nn", "nn-tf32", "nn-nocudnn", "cpp", "cuda", "cuda-steps", "python",
                   "compile-python"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m rnnkernels.benchmark",
        description="Time rnnkernels' Fused modules against torch.nn on the same weights.")
    parser.add_argument("--cells", nargs="+", choices=["lstm", "gru", "rnn", "ln_lstm", "ln_gru"],
                        help="keep only these cells (default: all in the sweep)")
    parser.add_argument("--impls", nargs="+", choices=IMPLEMENTATIONS,
                        default=["nn", "nn-nocudnn", "cpp", "cuda"],
                        help="implementations; missing backends are skipped. 'python' is our "
                             "plain-torch fallback, slow on long sequences, so not in the "
                             "default; 'nn-tf32' is nn on CUDA with cuDNN's TF32 allowed "
                             "whatever --tf32 says, timed but not checked (default: "
                             "%(default)s)")
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES),
                        help="default: float32, and bfloat16 on a CPU with bf16 kernels "
                             "(backend_info()['cpu_paths'])")
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"],
                        help="default: cuda when available, else cpu")
    parser.add_argument("--modes", nargs="+", choices=["fwd", "train", AUTOCAST],
                        help="fwd: inference under no_grad; train: forward + backward; "
                             "autocast: train of the float32 cases under torch.autocast "
                             "(bf16). Default: fwd and train, and autocast on a CPU with bf16 "
                             "kernels")
    parser.add_argument("--shape", action="append", default=[], metavar="T,B,I,H[,L[,bi]]",
                        help="run this shape instead of the standard sweep (repeatable)")
    parser.add_argument("--packed", action="store_true",
                        help="--shape inputs as PackedSequences with lengths uniform in [1, T]")
    parser.add_argument("--repeats", type=int, default=30, help="most timed rounds per case")
    parser.add_argument("--budget", type=float, default=2.0,
                        help="seconds of timed rounds per case and mode (at least 5 rounds)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--tf32", choices=["on", "off"],
                        help="set torch's TF32 flags for cuDNN and CUDA matmuls for the run "
                             "(default: as they are; cuDNN's is on, matmul's off); the JSON "
                             "records them")
    parser.add_argument("--on-mismatch", choices=["abort", "record"], default="abort",
                        help="an implementation disagreeing with nn stops the run, or is "
                             "recorded in its rows and timed all the same (default: "
                             "%(default)s)")
    parser.add_argument("--out-dir", type=Path, default=Path("benchmark-results"))
    parser.add_argument("--name", default=None, help="file stem (default: bench-<device>)")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("OLD.json", "NEW.json"),
                        help="print the change between two runs and exit")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.packed and not args.shape:
        parser.error("--packed applies to --shape")
    return args


def cases(args: argparse.Namespace, device: str) -> list[Shape]:
    if args.shape:
        cells = args.cells or ["lstm"]
        shapes = [parse_shape(text, cell) for text in args.shape for cell in cells]
        return [Shape(**{**s.as_dict(), "packed": args.packed}) for s in shapes]
    sweep = standard_sweep(device)
    return [s for s in sweep if not args.cells or s.cell in args.cells]


def default_dtypes(device: str) -> list[str]:
    """float32, plus bfloat16 where our CPU kernels compute it in bf16 (elsewhere bf16 rows
    would time float32 compute against nn's bf16)."""
    if device == "cpu" and _backend.cpu_bf16_isa() is not None:
        return ["float32", "bfloat16"]
    return ["float32"]


def default_modes(device: str) -> list[str]:
    """Inference and training; autocast training too where it runs our bf16 kernels."""
    return ["fwd", "train"] + ([AUTOCAST] if "bfloat16" in default_dtypes(device) else [])


def _ceilings(rows: list[dict], dtypes: list[str]) -> dict[str, float]:
    """Each case's ceiling is its own (runner.run_case); the run's is their median."""
    return {name: statistics.median(r["gemm_ceiling_gflops"] for r in rows if r["dtype"] == name)
            for name in dtypes if any(r["dtype"] == name for r in rows)}


@contextlib.contextmanager
def _tf32_flags(setting: str | None) -> Iterator[None]:
    """torch's TF32 flags for the run ("on", "off"; None leaves them), restored after."""
    if setting is None:
        yield
        return
    matmul = torch.backends.cuda.matmul
    previous = matmul.allow_tf32
    matmul.allow_tf32 = setting == "on"
    try:
        with cudnn_tf32(setting == "on"):
            yield
    finally:
        matmul.allow_tf32 = previous


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    devices = args.devices or (["cuda"] if torch.cuda.is_available() else ["cpu"])
    for device in devices:
        if device == "cuda" and not torch.cuda.is_available():
            print("cuda asked for but torch.cuda.is_available() is False", file=sys.stderr)
            return 2
        dtypes = args.dtypes or default_dtypes(device)
        modes = args.modes or default_modes(device)
        # The layer-normalised cells compute in float32 (or float64) only: no bf16 rows.
        todo = [(shape, name) for shape in cases(args, device) for name in dtypes
                if shape.cell not in LAYER_NORM_CELLS or name in ("float32", "float64")]
        rows: list[dict] = []
        stem = args.name or f"bench-{device}"
        json_path = args.out_dir / f"{stem}.json"
        env = report.environment(device)
        for shape, dtype_name in tqdm(todo, desc=f"benchmark on {device}", file=sys.stderr):
            try:
                rows += run_case(shape, args.impls, device, DTYPES[dtype_name], modes,
                                 args.repeats, args.budget, args.on_mismatch)
            except MismatchError as error:
                print(f"ABORTED: {error}", file=sys.stderr)
                return 1
            # After every case: a run cut short still leaves what it timed.
            report.write_json(json_path, env, _ceilings(rows, dtypes), rows, None)
        step_us = per_step_us(device, args.repeats, args.budget)
        single = single_step_rows(args.repeats, args.budget) if device == "cpu" else None
        ceilings = _ceilings(rows, dtypes)
        print(f"\n{device}: {env['gpu'] or env['cpu']}, torch {env['torch']}, "
              f"{env['threads']} threads; GEMM ceiling (median of the cases') "
              + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in ceilings.items()))
        print(report.table(rows))
        for cell, us in (step_us or {}).items():
            print(f"ours, {cell} B=1 H=64: {us:.2f} us per step (2T minus T steps, float32)")
        if single:
            print("\nOne step at a time (per step, 50-step loops):\n" + single_step_table(single))
        report.write_json(json_path, env, ceilings, rows, step_us, single)
        print(f"wrote {json_path}")
        if not args.no_plot:
            plot_path = args.out_dir / f"{stem}.png"
            report.write_plot(plot_path, rows, env)
            print(f"wrote {plot_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compare:
        print(report.compare(*args.compare))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    with _tf32_flags(args.tf32):
        return _run(args)
