"""torch.func transforms (vmap, grad, jacrev, jvp, jacfwd, and compositions), forward-mode
AD and double backward through the modules and the ops, against the plain-torch reference.

What each proves, since under a transform the modules run the reference math and the ops'
derivatives past the fused first-order backward come from it too (rnnkernels/_ops.py):
the modules' results under transforms are the reference's; the ops' transforms and
tangents (the ops themselves run, their derivatives from the reference math) equal the
reference's; the fused first-order backward is checked by torch.autograd.grad with a spy
that it ran (test_first_order_gradients_of_the_ops_run_the_fused_backward, and
test_kernels_vs_nn.py at kernel-sized shapes)."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import forward_ad
from torch.func import functional_call, grad, jacfwd, jacrev, jvp, vmap

import rnnkernels
from rnnkernels import _ops, reference
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
def test_modules_under_transforms_give_the_reference_results(name, backend, monkeypatch) -> None:
    """vmap, grad and jacrev of a module on a native backend run the reference math: no op
    of ours is called, and the results are the reference module's."""
    module, reference = _pair(name, backend)
    monkeypatch.setattr(_ops, "library_op", _refuse_ops)
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


def _refuse_ops(cell: str, kind: str):
    raise AssertionError(f"rnnkernels::{cell}_{kind} ran under a torch.func transform")


def _op_and_reference(cell: str, kind: str):
    """A function of (x, w_ih) through the op directly, and the same through the reference
    math; the other inputs are fixed fp64 tensors (c only for LSTM)."""
    torch.manual_seed(0)
    gates = _ops.GATES[cell] * 2
    h0 = torch.randn(3, 2, dtype=torch.float64)
    c0 = torch.randn(3, 2, dtype=torch.float64) if cell == "lstm" else None
    w_hh, b = torch.randn(gates, 2, dtype=torch.float64), torch.randn(gates, dtype=torch.float64)
    if kind in ("layer", "inference"):
        op = _ops.forward_op(cell) if kind == "layer" else _ops.inference_op(cell)

        def through_op(x, w_ih):
            return op(x, [], h0, c0, w_ih, w_hh, b, b, None, True)[0]

        def through_reference(x, w_ih):
            return reference.layer(cell, x, [], h0, c0, w_ih, w_hh, b, b, None, True)[0]
    else:
        def through_op(x, w_ih):
            return _ops.cell_forward_op(cell)(x[0], h0, c0, w_ih, w_hh, b, b)[0]

        def through_reference(x, w_ih):
            return reference.layer(cell, x[:1], [], h0, c0, w_ih, w_hh, b, b, None, False)[1]
    return through_op, through_reference


TRANSFORMS = {
    "grad": lambda f: grad(lambda x, w: f(x, w).square().sum(), argnums=(0, 1)),
    "jacrev": lambda f: jacrev(f, argnums=(0, 1)),
    "vmap_grad": lambda f: vmap(grad(lambda x, w: f(x, w).square().sum(), argnums=1),
                                in_dims=(0, None)),
    "grad_grad": lambda f: grad(lambda x, w: grad(lambda v: f(x, v).square().sum())(w).sum(),
                                argnums=(0, 1)),
    "jacfwd": lambda f: jacfwd(f, argnums=(0, 1)),
    "jvp": lambda f: lambda x, w: jvp(f, (x, w), (torch.ones_like(x), torch.ones_like(w))),
}


@pytest.mark.parametrize("transform", list(TRANSFORMS))
@pytest.mark.parametrize("kind", ["layer", "inference", "cell"])
@pytest.mark.parametrize("cell", _ops.CELLS)
def test_transforms_of_the_ops_take_the_reference_derivatives(cell, kind, transform) -> None:
    """The ops run under every transform, and their derivatives (from the reference math
    under torch.func) equal the reference's."""
    if not NATIVE:
        pytest.skip("needs the C++ build")
    through_op, through_reference = _op_and_reference(cell, kind)
    x = torch.randn(2, 3, 3, dtype=torch.float64)
    w_ih = torch.randn(_ops.GATES[cell] * 2, 3, dtype=torch.float64)
    args = (x.expand(4, *x.shape).clone(), w_ih) if transform == "vmap_grad" else (x, w_ih)
    torch.testing.assert_close(TRANSFORMS[transform](through_op)(*args),
                               TRANSFORMS[transform](through_reference)(*args))


@pytest.mark.parametrize("kind", ["layer", "inference"])
@pytest.mark.parametrize("cell", _ops.CELLS)
def test_forward_mode_of_the_op_gives_its_primal_and_the_reference_tangent(cell, kind) -> None:
    """On dual inputs the op's primal is the fused kernel's (equal to the reference's) and
    its tangent the reference math's."""
    if not NATIVE:
        pytest.skip("needs the C++ build")
    through_op, through_reference = _op_and_reference(cell, kind)
    x, tangent = (torch.randn(2, 3, 3, dtype=torch.float64) for _ in range(2))
    w_ih = torch.randn(_ops.GATES[cell] * 2, 3, dtype=torch.float64)
    with forward_ad.dual_level():
        got = forward_ad.unpack_dual(through_op(forward_ad.make_dual(x, tangent), w_ih))
        want = forward_ad.unpack_dual(through_reference(forward_ad.make_dual(x, tangent), w_ih))
    assert got.tangent is not None and got.tangent.abs().sum() > 0
    torch.testing.assert_close(got.primal, want.primal)
    torch.testing.assert_close(got.tangent, want.tangent)


@pytest.mark.parametrize("kind", ["layer", "cell"])
@pytest.mark.parametrize("cell", _ops.CELLS)
def test_first_order_gradients_of_the_ops_run_the_fused_backward(cell, kind,
                                                                 fused_backward_calls) -> None:
    if not NATIVE:
        pytest.skip("needs the C++ build")
    through_op, through_reference = _op_and_reference(cell, kind)
    x = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    w_ih = torch.randn(_ops.GATES[cell] * 2, 3, dtype=torch.float64, requires_grad=True)
    got = torch.autograd.grad(through_op(x, w_ih).square().sum(), (x, w_ih))
    assert fused_backward_calls == [f"{cell}_{kind}_backward"]
    want = torch.autograd.grad(through_reference(x, w_ih).square().sum(), (x, w_ih))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("backend", NATIVE)
@pytest.mark.parametrize("name", list(MODULES))
def test_forward_mode_through_modules_without_grad_gives_tangents(name, backend) -> None:
    """Under no_grad the modules run the inference ops without their Autograd kernel,
    except while a forward-mode level is open: primal and tangents must still come out."""
    module, reference = _pair(name, backend)
    x, tangent = (torch.randn(5, 2, 3, dtype=torch.float64) for _ in range(2))
    results = []
    for net in (module, reference):
        with torch.no_grad(), forward_ad.dual_level():
            results.append(forward_ad.unpack_dual(net(forward_ad.make_dual(x, tangent))[0]))
    assert results[0].tangent is not None and results[0].tangent.abs().sum() > 0
    torch.testing.assert_close(results[0].primal, results[1].primal)
    torch.testing.assert_close(results[0].tangent, results[1].tangent)
