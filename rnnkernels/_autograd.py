"""Autograd kernels for the C++ ops that torch.func can enter.

``torch.library.register_autograd`` (torch 2.14) wraps the formula in an autograd.Function
whose forward takes ``ctx``; torch.func refuses such Functions, so ``grad``/``jacrev`` of
the ops failed (pytorch#170834), and forward mode silently saw zero tangents (the kernel
only looked at requires_grad). Here each op gets an Autograd-key kernel built on a
single-level Function, the form PyTorch uses for its own ops' autograd: it records one node
at the current torch.func level, and lower levels see the redispatched op. It has a
``jvp`` too. torch.compile and opcheck see an ordinary Autograd kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch._functorch.utils import enable_single_level_autograd_function
from torch.autograd import forward_ad
from torch.autograd.function import _SingleLevelFunction

_LIB = torch.library.Library("rnnkernels", "IMPL")  # kept alive: it owns the registrations


def _forward_mode_open() -> bool:
    """Whether a dual level is open (torch.autograd.forward_ad or torch.func.jvp): then a
    call's inputs may carry tangents."""
    return torch._C._is_fwd_grad_enabled() and forward_ad._current_level >= 0


def _wants_autograd(args: tuple) -> bool:
    """Whether a backward graph or forward-mode tangents may be needed for this call."""
    if torch.is_grad_enabled() and torch._C._any_requires_grad(*args):
        return True
    # With a dual level open, let the Function look for tangents; it runs the plain
    # forward when there are none.
    return _forward_mode_open()


def call_inference(op: Any, *args: Any) -> Any:
    """``op(*args)`` for a call no gradient can flow through (the caller checked grad mode
    and requires_grad). In eager mode, with no forward-mode level open, the Autograd kernel
    registered below would only pass the call on, in Python, at a cost comparable to a
    small layer's whole inference: it is skipped. While torch.compile traces, the call goes through
    the dispatcher as usual."""
    if torch.compiler.is_compiling() or _forward_mode_open():
        return op(*args)
    with torch._C._AutoDispatchBelowAutograd():
        return op(*args)


def register(op: Any, setup_context: Callable, backward: Callable, jvp: Callable) -> None:
    """Registers ``op``'s Autograd kernel: ``setup_context(ctx, inputs, output)`` saves what
    ``backward(ctx, *grads)`` needs (it must also save the inputs for forward mode with
    ``ctx.save_for_forward``); ``jvp(ctx, *tangents)`` returns the output tangents."""

    def below_autograd(keyset: torch._C.DispatchKeySet, args: tuple) -> Any:
        with torch._C._AutoDispatchBelowAutograd():
            return op.redispatch(keyset & torch._C._after_autograd_keyset, *args)

    # A single-level Function: this kernel runs inside whatever torch.func level is current
    # (as the autograd of any built-in op does), so it must not re-enter torch.func's
    # Function machinery (custom_function_call), which torch.autograd.Function would do.
    # The dispatch key set rides along as a last, non-tensor argument.
    class Function(_SingleLevelFunction):
        @staticmethod
        def forward(*args: Any) -> Any:
            # apply() turned grad mode off for this level; outer torch.func levels below
            # the redispatch must still record the op, so it is turned back on.
            with torch.enable_grad():
                return below_autograd(args[-1], args[:-1])

        @staticmethod
        def setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
            # The forward ops return what their backward reads (non-differentiable, never
            # given a gradient); zeros materialised for those would fill tensors as large
            # as the saved gate values at every backward. Every backward formula here
            # takes None for a gradient that is missing.
            ctx.set_materialize_grads(False)
            setup_context(ctx, inputs[:-1], output)

        @staticmethod
        def backward(ctx: Any, *grads: Any) -> Any:
            return (*backward(ctx, *grads), None)

        @staticmethod
        def jvp(ctx: Any, *tangents: Any) -> Any:
            return jvp(ctx, *tangents[:-1])

    Function.__name__ = Function.__qualname__ = f"{op._opname}_autograd"

    def kernel(keyset: torch._C.DispatchKeySet, *args: Any) -> Any:
        if _wants_autograd(args):
            with enable_single_level_autograd_function():
                return Function.apply(*args, keyset)
        return below_autograd(keyset, args)

    _LIB.impl(op._opname, kernel, "Autograd", with_keyset=True)
