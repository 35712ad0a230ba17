"""torch.func transforms (vmap, grad, jacrev) and double backward through the modules
and the ops, on every backend present, against the plain-torch reference backend."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad, jacrev, vmap

import rnnkernels
from rnnkernels import _ops
from conftest import CPU_BACKENDS

MODULES = {
    "lstm": lambda backend: rnnkernels.FusedLSTM(3, 4, num_layers=2, bidirectional=True,
                                                 backend=backend, dtype=torch.float64),
    "gru": lambda backend: rnnkernels.FusedGRU(3, 4, backend=backend, dtype=torch.float64),
    "rnn": lambda backend: rnnkernels.FusedRNN(3, 4, nonlinearity="relu", backend=backend,
                                               dtype=torch.float64),
}
NATIVE = [b for b in CPU_BACKENDS if b != "python"]


def _pair(name: str, backend: str):
    torch.manual_seed(0)
    module = MODULES[name](backend)
    reference = MODULES[name]("python")
    reference.load_state_dict(module.state_dict())
    return module, reference


@pytest.mark.parametrize("backend", NATIVE)
@pytest.mark.parametrize("name", list(MODULES))
def test_vmap_grad_jacrev_match_reference(name, backend) -> None:
    module, reference = _pair(name, backend)
    xs = torch.randn(3, 4, 2, 3, dtype=torch.float64)  # a vmapped batch of [T, B, I] inputs
    params = dict(module.named_parameters())

    def output(m, x):
        return m(x)[0]

    torch.testing.assert_close(vmap(lambda x: output(module, x))(xs),
                               vmap(lambda x: output(reference, x))(xs))

    def loss(m, p, x):
        return functional_call(m, p, (x,))[0].square().sum()

    got = grad(lambda p: loss(module, p, xs[0]))(params)
    want = grad(lambda p: loss(reference, p, xs[0]))(params)
    for key in params:
        torch.testing.assert_close(got[key], want[key])
    torch.testing.assert_close(jacrev(lambda x: output(module, x))(xs[0]),
                               jacrev(lambda x: output(reference, x))(xs[0]))


@pytest.mark.parametrize("cell", _ops.CELLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_op_gradgradcheck(cell, reverse) -> None:
    if not NATIVE:
        pytest.skip("needs the C++ build")
    make = lambda *shape: torch.randn(*shape, dtype=torch.float64, requires_grad=True)  # noqa: E731
    gates = _ops.GATES[cell] * 2
    c0 = make(3, 2) if cell == "lstm" else None
    args = [make(2, 3, 3), make(3, 2), c0, make(gates, 3), make(gates, 2), make(gates), make(gates)]
    tensors = [a for a in args if a is not None]

    def run(*values):
        it = iter(values)
        x, h0, c, w_ih, w_hh, b_ih, b_hh = [None if a is None else next(it) for a in args]
        out = _ops.fused_layer(cell, x, [], h0, c, w_ih, w_hh, b_ih, b_hh, None, reverse)
        return tuple(t for t in out if t is not None)

    assert torch.autograd.gradgradcheck(run, tensors, check_batched_grad=True)
