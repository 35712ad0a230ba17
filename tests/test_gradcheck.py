"""fp64 gradcheck and gradgradcheck (with vmap over the backward, as PyTorch's own
module tests do) for every cell, backend, direction, layer count and bias setting."""

from __future__ import annotations

import pytest
import torch

from conftest import (CPU_BACKENDS, FUSED_MODULES, gradcheck_inputs,
                      module_as_function)


def _module(cell: str, backend: str, layers: int, bidirectional: bool, bias: bool):
    module_class, kwargs = FUSED_MODULES[cell]
    return module_class(3, 3, num_layers=layers, bidirectional=bidirectional, bias=bias,
                        backend=backend, dtype=torch.float64, **kwargs)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("cell", list(FUSED_MODULES))
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_gradcheck(backend, cell, layers, bidirectional, bias) -> None:
    module = _module(cell, backend, layers, bidirectional, bias)
    assert torch.autograd.gradcheck(module_as_function(module), gradcheck_inputs(module),
                                    check_batched_grad=True)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("cell", list(FUSED_MODULES))
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_gradgradcheck(backend, cell, bidirectional) -> None:
    module = _module(cell, backend, 2, bidirectional, True)
    assert torch.autograd.gradgradcheck(module_as_function(module),
                                        gradcheck_inputs(module, steps=2),
                                        check_batched_grad=True)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("cell", list(FUSED_MODULES))
def test_gradcheck_packed(backend, cell) -> None:
    module = _module(cell, backend, 1, True, True)
    lengths = torch.tensor([4, 2, 1])
    assert torch.autograd.gradcheck(module_as_function(module, lengths),
                                    gradcheck_inputs(module, steps=4, batch=3),
                                    check_batched_grad=True)
