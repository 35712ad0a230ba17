"""The benchmark's command line, FLOP formula and output files (not its timings)."""

from __future__ import annotations

import json

import pytest
import torch

import rnnkernels
from rnnkernels import _backend
from rnnkernels.benchmark import cli, implementations, report
from rnnkernels.benchmark.configs import Shape, flops, parse_shape, standard_sweep
from rnnkernels.benchmark.single_step import USES


def test_defaults() -> None:
    args = cli.parse_args([])
    assert args.modes is None and args.dtypes is None
    assert args.shape == [] and args.compare is None


def test_default_dtypes_add_bf16_where_our_kernels_compute_it() -> None:
    """bf16 rows would otherwise time our float32 compute against nn's bf16."""
    bf16 = ["bfloat16"] if _backend.cpu_bf16_isa() is not None else []
    assert cli.default_dtypes("cpu") == ["float32", *bf16]
    assert cli.default_dtypes("cuda") == ["float32"]


def test_default_modes_add_autocast_where_it_runs_our_bf16_kernels() -> None:
    autocast = ["autocast"] if _backend.cpu_bf16_isa() is not None else []
    assert cli.default_modes("cpu") == ["fwd", "train", *autocast]
    assert cli.default_modes("cuda") == ["fwd", "train"]


def test_options_parse() -> None:
    args = cli.parse_args(["--cells", "gru", "rnn", "--impls", "nn", "cpp", "--dtypes", "bfloat16",
                           "--modes", "train", "--shape", "10,2,3,4,2,bi", "--repeats", "7",
                           "--devices", "cpu", "--threads", "1"])
    assert args.cells == ["gru", "rnn"] and args.impls == ["nn", "cpp"]
    assert args.repeats == 7 and args.threads == 1 and args.devices == ["cpu"]
    shapes = cli.cases(args, "cpu")
    assert [s.cell for s in shapes] == ["gru", "rnn"]
    assert shapes[0] == Shape("gru", 10, 2, 3, 4, 2, bidirectional=True)


@pytest.mark.parametrize("argv", [["--repeats", "0"], ["--packed"], ["--cells", "tcn"],
                                  ["--modes", "both"]])
def test_bad_options_exit(argv) -> None:
    with pytest.raises(SystemExit):
        cli.parse_args(argv)


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "1,2,3,0", "1,2,3,4,5,6"])
def test_bad_shape_strings(text) -> None:
    with pytest.raises(ValueError):
        parse_shape(text, "lstm")


def test_flop_formula() -> None:
    lstm = Shape("lstm", T=100, B=64, I=512, H=512)
    assert flops(lstm, 6400, "fwd") == 2 * 6400 * 4 * 512 * (512 + 512)
    assert flops(lstm, 6400, "train") == 3 * flops(lstm, 6400, "fwd")
    assert flops(lstm, 6400, "autocast") == flops(lstm, 6400, "train")
    gru2 = Shape("gru", T=5, B=2, I=3, H=4, layers=2, bidirectional=True)
    # layer 0: 2 directions x 2*10*3*4*(3+4); layer 1 reads both directions: I = 8
    assert flops(gru2, 10, "fwd") == 2 * (2 * 10 * 3 * 4 * 7) + 2 * (2 * 10 * 3 * 4 * 12)
    assert flops(Shape("rnn", 1, 1, 2, 3), 1, "fwd") == 2 * 1 * 3 * 5


def test_standard_sweep_has_the_issue_shapes() -> None:
    keys = {s.key() for s in standard_sweep("cpu")}
    assert "lstm T=100 B=64 I=512 H=512 L=1" in keys
    assert "lstm T=28 B=128 I=28 H=256 L=2" in keys
    assert "lstm T=500 B=32 I=256 H=256 L=1 packed" in keys
    assert {s.cell for s in standard_sweep("cpu")} == {"lstm", "gru", "rnn", "ln_lstm", "ln_gru"}
    assert "ln_lstm T=100 B=32 I=256 H=256 L=1" in keys
    assert "lstm T=100 B=16 I=128 H=128 L=1 bi" in keys
    assert "lstm T=1024 B=16 I=768 H=768 L=1" in {s.key() for s in standard_sweep("cuda")}


def test_tiny_run_writes_table_json_plot_and_compares(tmp_path, capsys) -> None:
    argv = ["--shape", "3,2,4,5", "--cells", "lstm", "gru", "--repeats", "5", "--budget", "0.01",
            "--impls", "nn", "cpp", "python", "--out-dir", str(tmp_path), "--name", "run"]
    assert cli.main(argv) == 0
    output = capsys.readouterr().out
    assert "median ms" in output and "vs nn" in output
    document = json.loads((tmp_path / "run.json").read_text())
    assert document["schema"] == report.SCHEMA_VERSION
    assert {"torch", "threads", "cpu", "git_commit", "device"} <= set(document["environment"])
    assert document["gemm_ceiling_gflops"]["float32"] > 0
    # The marginal cost of a step is a time difference (noise may make it negative), and
    # absent only without the C++ backend.
    step_us = document["per_step_us_b1_h64"]
    if rnnkernels.backend_info()["available"]["cpp"]:
        assert set(step_us) == {"lstm", "gru", "rnn_tanh"}
        assert all(isinstance(us, float) for us in step_us.values())
    else:
        assert step_us is None
    single = document["single_step"]
    if rnnkernels.backend_info()["available"]["cpp"]:
        assert "One step at a time" in output
        assert [r["use"] for r in single] == [use.label for use in USES]
        for row in single:
            assert row["speedup"] == pytest.approx(row["nn_us"] / row["ours_us"])
            assert row["nn_us_range"][0] <= row["nn_us"] <= row["nn_us_range"][1]
    else:
        assert single is None
    rows = document["results"]
    assert {r["mode"] for r in rows} == set(cli.default_modes("cpu"))
    # autocast rows are float32 modules under autocast, timed against the bf16 ceiling
    assert all(r["dtype"] == "float32" for r in rows if r["mode"] == "autocast")
    for row in rows:
        assert {"case", "impl", "median_ms", "iqr_ms", "samples_ms", "speedup_vs_nn", "gflops",
                "pct_of_gemm_ceiling", "gemm_ceiling_gflops", "memory_bytes", "flop",
                "tokens"} <= set(row)
        assert row["pct_of_gemm_ceiling"] == pytest.approx(
            100 * row["gflops"] / row["gemm_ceiling_gflops"])
        assert len(row["samples_ms"]) == row["rounds"] >= 5
    assert (tmp_path / "run.png").stat().st_size > 0
    assert cli.main(["--compare", str(tmp_path / "run.json"), str(tmp_path / "run.json")]) == 0
    assert "+0.0%" in capsys.readouterr().out


def _readme_tables():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "readme_tables.py"
    spec = importlib.util.spec_from_file_location("readme_tables", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_targets_follow_the_numbers() -> None:
    def row(shape: Shape, mode: str, impl: str, ms: float, speedup: float, pct: float,
            dtype: str = "float32") -> dict:
        return {"shape": shape.as_dict(), "case": shape.key(), "mode": mode, "impl": impl,
                "median_ms": ms, "iqr_ms": 0.0, "speedup_vs_nn": speedup, "gflops": 1.0,
                "pct_of_gemm_ceiling": pct, "dtype": dtype}

    big, small = Shape("lstm", 10, 64, 512, 512), Shape("lstm", 100, 1, 64, 64)
    doc = {"results": [
        row(big, "train", "nn", 4.0, 1.0, 50), row(big, "train", "ours", 2.0, 2.0, 90),
        row(small, "fwd", "nn", 0.3, 1.0, 1), row(small, "fwd", "ours", 0.05, 6.0, 1),
    ]}
    targets = _readme_tables().targets_table(doc)
    assert "| never slower than nn (every case, fwd and train) | >= 1.0x | 2.00x | yes |" in targets
    assert "| train geomean vs nn.LSTM | >= 1.3x | 2.00x | yes |" in targets
    assert "| large shapes (H = 512), worst % of the GEMM ceiling | >= 85% | 90% | yes |" in targets
    assert "per-step" not in targets  # a run without the per-step timing has no such row
    doc["per_step_us_b1_h64"] = {"lstm": 1.5, "rnn_tanh": 0.5}
    targets = _readme_tables().targets_table(doc)
    assert "| per-step overhead at B=1, H=64: LSTM | < 1 us | 1.50 us per step" in targets
    assert "| per-step overhead at B=1, H=64: RNN | < 1 us | 0.50 us per step (inference, " \
           "2T minus T steps) | yes |" in targets
    doc["results"][1]["speedup_vs_nn"] = 0.5
    assert "| >= 1.0x | 0.50x | no |" in _readme_tables().targets_table(doc)

    # bf16 and autocast rows have their own tables and leave the float32 ones alone.
    doc["results"] += [
        row(big, "fwd", "nn", 4.0, 1.0, 30, "bfloat16"), row(big, "fwd", "ours", 2.0, 2.0, 70,
                                                             "bfloat16"),
        row(big, "autocast", "nn", 4.0, 1.0, 20), row(big, "autocast", "ours", 4.0, 1.1, 25),
    ]
    tables = _readme_tables()
    assert "bfloat16" not in tables.case_table(doc) and "autocast" not in tables.case_table(doc)
    bf16 = tables.case_table(doc, bf16=True)
    assert "| fwd |" in bf16 and "| autocast |" in bf16 and "| train |" not in bf16
    targets = tables.bf16_targets_table(doc)
    assert "| never slower than nn (every bf16 and autocast case) | >= 1.0x | 1.10x | yes |" \
        in targets
    assert "| LSTM geomean, autocast | >= 1.3x | 1.10x | no |" in targets
    assert "| >= 60% | 70% | yes |" in targets


def _shape(cell: str = "lstm", T: int = 100, B: int = 64, I: int = 512, H: int = 512,
           **extra) -> Shape:
    return Shape(cell, T, B, I, H, **extra)


H200 = implementations.GpuTraits(9, 0, 132)
A40 = implementations.GpuTraits(8, 6, 84)


@pytest.mark.parametrize("shape, dtype, forward, gpu, algorithm", [
    (_shape(), torch.float32, True, H200, "standard"),
    (_shape(H=192), torch.float32, True, H200, "small-H persistent"),
    (_shape(H=192), torch.float32, False, H200, "standard"),
    (_shape(H=128), torch.bfloat16, False, H200, "small-H persistent"),
    (_shape("rnn", H=384), torch.float32, True, H200, "small-H persistent"),
    (_shape("rnn", H=384), torch.float32, False, H200, "standard"),
    (_shape(H=64, packed=True), torch.float32, True, H200, "standard"),
    (_shape(H=64), torch.float64, True, H200, "standard"),
    (_shape(), torch.float16, True, H200, "persistent"),
    (_shape(B=60), torch.float16, True, H200, "standard"),
    (_shape(layers=2), torch.float16, True, H200, "standard"),
    (_shape("gru"), torch.float16, True, H200, "standard"),
    (_shape("rnn", B=96, H=896, I=896), torch.float16, True, H200, "standard"),
    (_shape("rnn", B=88, H=896, I=896), torch.float16, True, H200, "persistent"),
    (_shape(), torch.float16, True, A40, "standard"),
    (_shape(), torch.bfloat16, True, H200, "standard"),
])
def test_cudnn_algorithm_follows_pytorch_rules(shape, dtype, forward, gpu, algorithm) -> None:
    assert implementations.cudnn_algorithm(shape, dtype, forward, gpu) == algorithm


def test_cuda_label_names_both_passes_algorithms(monkeypatch) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: True)
    label = implementations.nn_path(_shape(H=192), "cuda", torch.float32, H200)
    assert label == "cuDNN small-H persistent, backward standard"
    assert implementations.nn_path(_shape(), "cuda", torch.float32, H200) == "cuDNN standard"


def _tiny(tmp_path, *extra: str) -> list[str]:
    return ["--shape", "3,2,4,5", "--repeats", "5", "--budget", "0.01", "--modes", "fwd",
            "--dtypes", "float32", "--impls", "nn", "python", "--out-dir", str(tmp_path),
            "--name", "run", "--no-plot", *extra]


def test_a_mismatch_aborts_or_is_recorded(tmp_path, monkeypatch) -> None:
    from rnnkernels.benchmark import runner

    monkeypatch.setitem(runner.CHECK_ATOL, torch.float32, -1.0)  # every comparison fails
    assert cli.main(_tiny(tmp_path)) == 1
    assert cli.main(_tiny(tmp_path, "--on-mismatch", "record")) == 0
    rows = json.loads((tmp_path / "run.json").read_text())["results"]
    assert rows and all("differs from" in r["mismatches"][0] for r in rows)


def test_the_json_is_written_after_each_case(tmp_path, monkeypatch) -> None:
    """A run cut short (a time limit's SIGINT) still leaves the cases it timed."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "per_step_us", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cli.main(_tiny(tmp_path, "--cells", "lstm", "gru"))
    rows = json.loads((tmp_path / "run.json").read_text())["results"]
    assert {r["shape"]["cell"] for r in rows} == {"lstm", "gru"}
    assert all(r["mismatches"] == [] for r in rows)


def test_tf32_flags_are_set_recorded_and_restored(tmp_path) -> None:
    """Set for the run (cuDNN's through its flags() context, which works where a test
    harness froze torch's global flags, as torch's own testing module does on import)."""
    previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    for setting in ("on", "off"):
        assert cli.main(_tiny(tmp_path, "--tf32", setting)) == 0
        env = json.loads((tmp_path / "run.json").read_text())["environment"]
        assert env["tf32"] == {"cudnn": setting == "on", "cuda_matmul": setting == "on"}
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == previous


def test_gpu_check_stops_without_the_cuda_backend(tmp_path) -> None:
    """On a machine whose build has no CUDA kernels the GPU check stops after writing the
    environment and backend_info, before any test or benchmark."""
    if rnnkernels.backend_info()["available"]["cuda"]:
        pytest.skip("the cuda backend is available here")
    import os
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OUT=str(tmp_path), RNNKERNELS_GPU_CHECK_BUILT="1"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "stopping: no CUDA kernels to test" in done.stdout
    assert json.loads((tmp_path / "backend_info.json").read_text())["available"]["cuda"] is False
    assert not (tmp_path / "cuda-tests.log").exists()


def test_layer_norm_cells_run_against_torch_ops(tmp_path) -> None:
    """The layer-normalised cases: the same math in torch ops first (checked against),
    ours, then our plain cell unchecked; float32 only, no autocast rows; their own table."""
    argv = ["--shape", "3,2,4,5", "--cells", "ln_lstm", "ln_gru", "--repeats", "5",
            "--budget", "0.01", "--dtypes", "float32", "bfloat16", "--out-dir", str(tmp_path),
            "--name", "run", "--no-plot", "--impls", "nn", "cpp"]
    assert cli.main(argv) == 0
    document = json.loads((tmp_path / "run.json").read_text())
    rows = [r for r in document["results"] if r["mode"] == "train"]
    assert {r["dtype"] for r in document["results"]} == {"float32"}
    assert "autocast" not in {r["mode"] for r in document["results"]}
    impls = [r["impl"] for r in rows if r["shape"]["cell"] == "ln_gru"]
    if rnnkernels.backend_info()["available"]["cpp"]:
        assert impls == ["torch ops (same math)", "ours (cpp)", "ours (cpp), plain GRU"]
        table = _readme_tables().layer_norm_table(document)
        assert "| ln_gru T=3 B=2 I=4 H=5 L=1 | train |" in table
        assert "ln_" not in _readme_tables().case_table(document)
    else:
        assert impls == ["torch ops (same math)"]
