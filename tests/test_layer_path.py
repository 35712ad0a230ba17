"""One place decides which implementation runs a layer direction's call
(csrc/layer_path.cpp, reported by _C.layer_path): what it says for each kind of call on
the CPU, and that the path it names is the one that runs (each path leaves its own trace:
the persistent kernels count rows, the step loop its launches, the simulated grid its
programs)."""

from __future__ import annotations

import pytest
import torch

import rnnkernels
from conftest import CPU_BACKENDS
from rnnkernels import _backend

pytestmark = pytest.mark.skipif("cpp" not in CPU_BACKENDS, reason="needs the C++ build")


def reported(cell: str, x: torch.Tensor, steps: int, backward: bool, projects: bool = False,
             packed: bool = False) -> str:
    kind = _backend._C.cell_kinds()[cell]
    return _backend._C.layer_path(kind, x, packed, steps, x.shape[-2], 8, projects, backward)


def traces(run) -> dict[str, int]:
    """What each path counted while run() ran."""
    C = _backend._C
    before = (C.step_rows(), C.step_launches(), C.grid_report()["launches"])
    run()
    after = (C.step_rows(), C.step_launches(), C.grid_report()["launches"])
    names = ("persistent_cpu", "step_loop", "grid")
    return {name: a - b for name, a, b in zip(names, after, before, strict=True)}


def ran(module: torch.nn.Module, x: torch.Tensor, backward: bool) -> str:
    """The one path that left a trace, for the forward or for the backward alone."""
    output = module(x)[0]
    if backward:
        counted = traces(lambda: torch.autograd.grad(output.sum(), [x]))
    else:
        counted = traces(lambda: module(x))
    paths = [name for name, count in counted.items() if count > 0]
    return paths[0] if len(paths) == 1 else f"traces of {paths}"


@pytest.fixture
def switches():
    """Restores the persistent kernels and switches the grid simulator off after a test."""
    yield
    _backend._C.set_persistent_kernels(True)
    _backend._C.simulate_grid(0)


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
@pytest.mark.parametrize("setting", ["default", "no-persistent", "simulated-grid", "projected"])
def test_reported_path_is_the_one_that_runs(setting, backward, switches) -> None:
    _backend._C.simulate_grid(0)
    if setting == "no-persistent":
        _backend._C.set_persistent_kernels(False)
    if setting == "simulated-grid":
        _backend._C.simulate_grid(4)
    projects = setting == "projected"
    module = rnnkernels.FusedLSTM(3, 8, proj_size=4 if projects else 0, backend="cpp")
    x = torch.randn(5, 2, 3, requires_grad=True)
    expected = {"default": "persistent_cpu", "no-persistent": "step_loop",
                "simulated-grid": "grid", "projected": "step_loop"}[setting]
    assert reported("lstm", x, 5, backward, projects=projects) == expected
    assert ran(module, x, backward) == expected


def test_single_step_and_bf16_paths() -> None:
    x = torch.randn(1, 2, 3)
    assert reported("gru", x, 1, backward=False) == "single_step_cpu"
    # Its backward is a one-step sequence's: the persistent kernels take more than one step.
    assert reported("gru", x, 1, backward=True) == "step_loop"
    assert reported("gru", x, 1, backward=False, packed=True) == "step_loop"
    if _backend.cpu_bf16_isa() is not None:
        for backward in (False, True):
            assert reported("lstm", x.bfloat16(), 4, backward) == "bf16_cpu"


def test_unknown_kind_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="unknown cell kind 9"):
        _backend._C.layer_path(9, torch.randn(2, 2, 3), False, 2, 2, 8, False, False)
