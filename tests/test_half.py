"""float16 and bfloat16 inputs on CPU work as with nn.*: computed in float32 inside, the
input dtype returned, gradients in the parameters' dtype. (Where the CPU has bf16 kernels
the cpp backend computes bfloat16 in them instead: tests/test_bf16.py.)

Bound: the reference is the same module in float32 with the weights and input rounded to
the half type first, so the only difference left is rounding the outputs to the half
type: half an ulp at |value| <= 1 (h is bounded by 1, c by T in these shapes), i.e. 2**-9
for bfloat16 and 2**-12 for float16 relative to the largest magnitude. We allow 2 ulps.
Gradients likewise: the loss's output gradients (ones) are exact in every type, the
gradients are computed in float32 and rounded once to the half type, half an ulp of each
tensor's largest magnitude; 2 ulps allowed here too.
"""

from __future__ import annotations

import pytest
import torch

import rnnkernels
from rnnkernels import _backend
from conftest import CPU_BACKENDS, flatten

ULP = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}
MODULES = {
    "lstm": lambda: rnnkernels.FusedLSTM(8, 16, num_layers=2, bidirectional=True),
    "gru": lambda: rnnkernels.FusedGRU(8, 16, num_layers=2),
    "rnn": lambda: rnnkernels.FusedRNN(8, 16, nonlinearity="relu"),
}


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("name", list(MODULES))
def test_half_types_match_float32_reference(backend, dtype, name) -> None:
    if dtype == torch.bfloat16 and backend == "cpp" and _backend.cpu_bf16_isa() is not None:
        pytest.skip("the bf16 kernels compute this: tests/test_bf16.py")
    module = MODULES[name]().to(dtype)
    module.backend = backend
    reference = MODULES[name]().float()
    reference.load_state_dict({k: v.float() for k, v in module.state_dict().items()})
    x = torch.randn(10, 3, 8).to(dtype)
    x_float = x.detach().float().requires_grad_()
    got = flatten(module(x.requires_grad_()))
    want = flatten(reference(x_float))
    for g, w in zip(got, want, strict=True):
        assert g.dtype == dtype
        scale = w.abs().max().item()
        torch.testing.assert_close(g.float(), w, atol=2 * ULP[dtype] * scale, rtol=0)
    sum(g.float().sum() for g in got).backward()
    sum(w.sum() for w in want).backward()
    assert x.grad is not None and x.grad.dtype == dtype
    assert all(p.grad.dtype == dtype for p in module.parameters())
    pairs = [(x.grad, x_float.grad)] + [(p.grad, q.grad) for p, q in zip(
        module.parameters(), reference.parameters(), strict=True)]
    for g, w in pairs:
        scale = w.abs().max().item()
        torch.testing.assert_close(g.float(), w, atol=2 * ULP[dtype] * scale, rtol=0)
