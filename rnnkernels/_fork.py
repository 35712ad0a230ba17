"""Forked children of a process that ran our kernels: OpenMP's thread pool, which the CPU
kernels and the GEMMs they call share with torch, does not survive fork(), and a child's
next parallel region would wait forever for the parent's threads (torch.nn's modules hang
the same way). In such a child torch's intra-op threads are set to one, so no region
starts a team; the child may raise it again with torch.set_num_threads if its OpenMP
runtime is fork-safe."""

from __future__ import annotations

import os

import torch


class _State:
    ran_kernels = False  # set by every call into the kernels (an attribute store)


state = _State()


def _in_child() -> None:
    if state.ran_kernels:
        torch.set_num_threads(1)


os.register_at_fork(after_in_child=_in_child)
