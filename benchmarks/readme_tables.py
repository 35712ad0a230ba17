"""Markdown from a benchmark JSON: the per-case table (README) and the CPU-speed targets,
each with its measured value and whether it is met (docs/benchmarks.md).

    python benchmarks/readme_tables.py benchmarks/results/cpu-<date>.json
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def _in_bf16(row: dict) -> bool:
    """Whether a row computes in bf16: bf16 modules, or float32 ones under autocast."""
    return row["dtype"] == "bfloat16" or row["mode"] == "autocast"


def _layer_norm(row: dict) -> bool:
    """Whether a row is a layer-normalised cell's, timed against torch ops, not nn."""
    return row["shape"]["cell"].startswith("ln_")


def _pairs(doc: dict, bf16: bool = False) -> list[tuple[dict, dict]]:
    """(torch.nn row, our row) per case, dtype and mode, in run order: the float32 rows,
    or (bf16) the bf16 and autocast ones."""
    by_case: dict[tuple[str, str, str], list[dict]] = {}
    for row in doc["results"]:
        if _in_bf16(row) == bf16 and not _layer_norm(row):
            by_case.setdefault((row["case"], row["dtype"], row["mode"]), []).append(row)
    return [(rows[0], rows[1]) for rows in by_case.values()]


def case_table(doc: dict, bf16: bool = False) -> str:
    kind = "bfloat16; autocast: float32 modules" if bf16 else "float32"
    lines = [f"| case ({kind}) | mode | torch.nn | nn ms (IQR) | ours ms (IQR) | speedup | "
             "ours GFLOP/s (% of ceiling) |", "|---|---|---|---|---|---|---|"]
    for nn, ours in _pairs(doc, bf16):
        lines.append(
            f"| {nn['case']} | {nn['mode']} | {nn['impl']} | {nn['median_ms']:.1f} "
            f"({nn['iqr_ms']:.1f}) | {ours['median_ms']:.1f} ({ours['iqr_ms']:.1f}) | "
            f"{ours['speedup_vs_nn']:.2f}x | {ours['gflops']:.0f} "
            f"({ours['pct_of_gemm_ceiling']:.0f}%) |")
    return "\n".join(lines)


_CELL_NAMES = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN"}


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def targets_table(doc: dict) -> str:
    pairs = _pairs(doc)
    ratio = [ours["speedup_vs_nn"] for _, ours in pairs]

    def train_geomean(cell: str, with_packed: bool = True) -> float:
        return _geomean([o["speedup_vs_nn"] for n, o in pairs
                         if n["mode"] == "train" and n["shape"]["cell"] == cell
                         and (with_packed or not n["shape"]["packed"])])

    small = [o["speedup_vs_nn"] for n, o in pairs
             if n["shape"]["B"] <= 16 or n["shape"]["H"] <= 128]
    large = [o for n, o in pairs if n["shape"]["H"] >= 512 and not n["shape"]["packed"]]
    packed = {n["mode"]: o["speedup_vs_nn"] for n, o in pairs if n["shape"]["packed"]}
    nan = float("nan")  # a target whose cases the run did not include
    rows = [
        ("never slower than nn (every case, fwd and train)", ">= 1.0x", min(ratio, default=nan), 1.0),
        ("train geomean vs nn.LSTM", ">= 1.3x", train_geomean("lstm"), 1.3),
        ("... the same without the packed case", ">= 1.3x", train_geomean("lstm", False), 1.3),
        ("train geomean vs nn.GRU", ">= 1.8x", train_geomean("gru"), 1.8),
        ("train geomean vs nn.RNN", ">= 1.8x", train_geomean("rnn"), 1.8),
        ("small shapes (B <= 16 or H <= 128), worst case", ">= 2x", min(small, default=nan), 2.0),
        ("large shapes (H = 512), worst % of the GEMM ceiling", ">= 85%",
         min((o["pct_of_gemm_ceiling"] for o in large), default=nan), 85.0),
        ("variable length (packed), fwd", ">= 5x", packed.get("fwd", nan), 5.0),
        ("variable length (packed), train", ">= 5x", packed.get("train", nan), 5.0),
    ]
    lines = _target_lines(rows)
    for cell, us in (doc.get("per_step_us_b1_h64") or {}).items():
        lines.append(f"| per-step overhead at B=1, H=64: {_CELL_NAMES[cell]} | < 1 us | "
                     f"{us:.2f} us per step (inference, 2T minus T steps) | "
                     f"{'yes' if us < 1 else 'no'} |")
    return "\n".join(lines)


def _target_lines(rows: list[tuple[str, str, float, float]]) -> list[str]:
    """Markdown rows of (target, goal, measured, bound): met when measured >= bound."""
    lines = ["| target | goal | measured | met |", "|---|---|---|---|"]
    for name, goal, value, bound in rows:
        shown = f"{value:.0f}%" if goal.endswith("%") else f"{value:.2f}x"
        lines.append(f"| {name} | {goal} | {shown} | {'yes' if value >= bound else 'no'} |")
    return lines


def bf16_targets_table(doc: dict) -> str:
    """The bf16 targets: bf16 modules and autocast training against nn in the same."""
    pairs = _pairs(doc, bf16=True)
    nan = float("nan")

    def geomean(cell: str, mode: str) -> float:
        return _geomean([o["speedup_vs_nn"] for n, o in pairs
                         if n["mode"] == mode and n["shape"]["cell"] == cell])

    large_fwd = [o["pct_of_gemm_ceiling"] for n, o in pairs if n["mode"] == "fwd"
                 and n["shape"]["H"] >= 256 and n["shape"]["B"] >= 32 and not n["shape"]["packed"]]
    rows = [("never slower than nn (every bf16 and autocast case)", ">= 1.0x",
             min((o["speedup_vs_nn"] for _, o in pairs), default=nan), 1.0)]
    for mode in ("fwd", "train", "autocast"):
        rows.append((f"LSTM geomean, {mode}", ">= 1.3x", geomean("lstm", mode), 1.3))
    for cell in ("gru", "rnn"):
        for mode in ("fwd", "train", "autocast"):
            rows.append((f"{cell.upper()} geomean, {mode}", ">= 2x", geomean(cell, mode), 2.0))
    rows.append(("large shapes (H >= 256, B >= 32), fwd, worst % of the bf16 ceiling", ">= 60%",
                 min(large_fwd, default=nan), 60.0))
    return "\n".join(_target_lines(rows))


def layer_norm_table(doc: dict) -> str:
    """LayerNormLSTM/GRU: ours against the same math in torch ops, and the cost of the
    layer norms over our plain cell at the same shape (rows: torch ops, ours, plain)."""
    by_case: dict[tuple[str, str], list[dict]] = {}
    for row in doc["results"]:
        if _layer_norm(row) and row["dtype"] == "float32":
            by_case.setdefault((row["case"], row["mode"]), []).append(row)
    lines = ["| case (float32) | mode | torch ops ms | ours ms | speedup (goal >= 5x, train) | "
             "plain cell ms | ours / plain (goal <= 1.5x, train) |", "|---|---|---|---|---|---|---|"]
    for (case, mode), rows in by_case.items():
        if len(rows) < 3:
            continue
        base, ours, plain = rows[:3]
        lines.append(f"| {case} | {mode} | {base['median_ms']:.1f} | {ours['median_ms']:.1f} | "
                     f"{ours['speedup_vs_nn']:.2f}x | {plain['median_ms']:.1f} | "
                     f"{ours['median_ms'] / plain['median_ms']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    doc = json.loads(Path(sys.argv[1]).read_text())
    print(case_table(doc))
    print()
    print(targets_table(doc))
    if any(_layer_norm(row) for row in doc["results"]):
        print()
        print(layer_norm_table(doc))
    if any(_in_bf16(row) for row in doc["results"]):
        print()
        print(case_table(doc, bf16=True))
        print()
        print(bf16_targets_table(doc))


if __name__ == "__main__":
    main()
