"""What a run leaves behind: the table on stdout, the JSON of every raw number with the
environment, a PNG of the speedups, and the comparison of two JSON files."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

import torch

import rnnkernels

SCHEMA_VERSION = 1


def environment(device: str) -> dict:
    cpu_model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    cuda = device == "cuda"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "cpu": cpu_model,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": device,
        # Whether float32 GEMMs and cuDNN may round operands to TF32 (CUDA only).
        "tf32": {"cudnn": torch.backends.cudnn.allow_tf32,
                 "cuda_matmul": torch.backends.cuda.matmul.allow_tf32},
        "rnnkernels": rnnkernels.backend_info(),
    }


def _format_bytes(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f} MiB"


def table(rows: list[dict]) -> str:
    width = max([24, *(len(row["impl"]) for row in rows)])  # cuDNN's labels run long
    header = (f"{'case':<44} {'mode':<8} {'implementation':<{width}} {'median ms':>10} "
              f"{'IQR ms':>8} {'vs nn':>6} {'GFLOP/s':>8} {'% ceil':>6} {'memory':>11}")
    lines = [header, "-" * len(header)]
    previous = None
    for row in rows:
        case = f"{row['case']} {row['dtype']}" if (row["case"], row["mode"]) != previous else ""
        previous = (row["case"], row["mode"])
        lines.append(f"{case:<44} {row['mode']:<8} {row['impl']:<{width}} "
                     f"{row['median_ms']:>10.3f} {row['iqr_ms']:>8.3f} "
                     f"{row['speedup_vs_nn']:>5.2f}x {row['gflops']:>8.1f} "
                     f"{row['pct_of_gemm_ceiling']:>5.0f}% {_format_bytes(row['memory_bytes']):>11}")
    return "\n".join(lines)


def write_json(path: Path, env: dict, ceilings: dict, rows: list[dict],
               per_step_us: dict[str, float] | None,
               single_step: list[dict] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"schema": SCHEMA_VERSION, "environment": env, "gemm_ceiling_gflops": ceilings,
                "flop_formula": "per layer and direction: 2*tokens*G*H*(I_layer+H), G=4 LSTM, "
                                "3 GRU, 1 RNN; x3 for train (forward+backward)",
                "per_step_us_b1_h64": per_step_us,
                "single_step": single_step,
                "results": rows}
    path.write_text(json.dumps(document, indent=1))


_MODE_LABELS = {"fwd": "inference", "train": "training", "autocast": "training, autocast bf16"}


def write_plot(path: Path, rows: list[dict], env: dict) -> None:
    """Speedup over torch.nn per case: one horizontal bar per mode (and implementation of
    ours), its value written on it, the nn = 1 line, one panel per dtype."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    # The first implementation of each case is torch.nn, the baseline (1.0 by definition).
    baselines: dict[tuple, str] = {}
    for r in rows:
        baselines.setdefault((r["case"], r["dtype"], r["mode"]), r["impl"])
    ours = [r for r in rows if r["impl"] != baselines[(r["case"], r["dtype"], r["mode"])]]
    # Autocast rows (float32 modules computing in bf16) sit with the bf16 ones.
    def panel_of(r: dict) -> str:
        return "bfloat16" if r["mode"] == "autocast" else r["dtype"]

    dtypes = list(dict.fromkeys(panel_of(r) for r in ours))
    series = list(dict.fromkeys((r["mode"], r["impl"]) for r in ours))
    impls = {impl for _, impl in series}
    cases = list(dict.fromkeys(r["case"] for r in ours))
    height = 0.8 / max(len(series), 1)
    figure, panels = plt.subplots(1, len(dtypes), squeeze=False, sharey=True,
                                  figsize=(7.5 * len(dtypes), 1.2 + 0.32 * len(cases) * len(series)))
    speedups = [r["speedup_vs_nn"] for r in ours]
    limits = (min(0.5, min(speedups) / 1.3), max(2.0, max(speedups) * 1.6))
    for panel, dtype in zip(panels[0], dtypes):
        speedup = {(r["case"], r["mode"], r["impl"]): r["speedup_vs_nn"]
                   for r in ours if panel_of(r) == dtype}
        for index, (mode, impl) in enumerate(series):
            ys = [c + index * height for c in range(len(cases))]
            values = [speedup.get((case, mode, impl)) for case in cases]
            if all(v is None for v in values):
                continue
            label = _MODE_LABELS.get(mode, mode) + ("" if len(impls) == 1 else f", {impl}")
            bars = panel.barh([y for y, v in zip(ys, values) if v is not None],
                              [v for v in values if v is not None], height, label=label)
            panel.bar_label(bars, labels=[f"{v:.2f}x" for v in values if v is not None],
                            padding=2, fontsize=7)
        panel.axvline(1.0, color="black", linewidth=0.8)
        panel.set_xscale("log")
        panel.set_xlim(*limits)
        ticks = [t for t in (0.25, 0.5, 1, 2, 5, 10, 20, 50, 100) if limits[0] <= t <= limits[1]]
        panel.set_xticks(ticks, labels=[f"{t:g}x" for t in ticks])
        panel.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        panel.set_xlabel("speedup over torch.nn (nn = 1; right of the line is faster)")
        panel.set_title(dtype + (" (autocast: float32 modules)" if dtype == "bfloat16" and any(
            r["mode"] == "autocast" for r in ours) else ""), fontsize=9)
        panel.set_yticks([c + height * (len(series) - 1) / 2 for c in range(len(cases))])
        panel.set_yticklabels(cases, fontsize=7)
        panel.legend(fontsize=7, loc="lower right")
    panels[0][0].invert_yaxis()  # the first case on top (the panels share the axis)
    machine = env.get("gpu") or env.get("cpu")
    figure.suptitle(f"rnnkernels vs torch.nn: {machine}, {env.get('threads')} threads, "
                    f"{', '.join(dtypes)}, {str(env.get('date', ''))[:10]}", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def compare(old_path: Path, new_path: Path) -> str:
    """Median time per (case, mode, implementation) in both runs and the change."""
    def index(path: Path) -> dict:
        rows = json.loads(path.read_text())["results"]
        return {(r["case"], r["dtype"], r["mode"], r["impl"]): r for r in rows}

    old, new = index(old_path), index(new_path)
    lines = [f"{'case':<44} {'mode':<8} {'implementation':<24} {'old ms':>9} {'new ms':>9} {'change':>8}"]
    for key in [k for k in new if k in old]:
        before, after = old[key]["median_ms"], new[key]["median_ms"]
        lines.append(f"{key[0] + ' ' + key[1]:<44} {key[2]:<8} {key[3]:<24} {before:>9.3f} "
                     f"{after:>9.3f} {100 * (after / before - 1):>+7.1f}%")
    missing = [k for k in new if k not in old]
    if missing:
        lines.append(f"({len(missing)} rows only in {new_path.name})")
    return "\n".join(lines)
