"""ONNX export of our ops as the standard ``LSTM``, ``GRU`` and ``RNN`` operators.

``import rnnkernels`` calls ``install()``, so ``torch.onnx.export`` of a model holding
Fused modules works under both exporters with no extra argument: one recurrent node per
layer (bidirectional layers as one ``direction="bidirectional"`` node), every node in the
default ONNX domain, so the exported model runs where rnnkernels is not installed.

- TorchScript exporter (``dynamo=False``): a symbolic function per op (``_torchscript``).
- Dynamo exporter (``dynamo=True``): an onnxscript translation per op (``_dynamo``), added
  to the table the exporter builds every export's translations from. That table's module
  imports onnxscript (over a second), so the translations are added when the exporter first
  imports it, never at ``import rnnkernels``.

Both go through one layer translation (``_graph``). The dynamo exporter's table is a
private part of torch.onnx; the tests export through it on every torch this package
supports.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Callable
from types import ModuleType

# The module that defines the dynamo exporter's translation table: once it has run, the
# table (``_torchlib_registry``, which it imports) and its entry type exist.
_REGISTRATION_MODULE = "torch.onnx._internal.exporter._registration"


_installed = False


def install() -> None:
    """Registers the translations with both exporters, once."""
    global _installed
    if _installed:
        return
    from . import _torchscript

    _torchscript.register()
    _after_import(_REGISTRATION_MODULE, _register_dynamo)
    _installed = True


def _register_dynamo(registration: ModuleType) -> None:
    """Runs inside torch.onnx's own import: whatever goes wrong here must leave that import
    working (the TorchScript exporter keeps our ops), so it becomes a warning."""
    table = getattr(registration, "_torchlib_registry", None)
    reason = None
    if table is None or not hasattr(table, "onnx_impl"):
        reason = "this torch keeps the exporter's translations where rnnkernels does not look"
    else:
        try:
            from . import _dynamo

            _dynamo.register(table)
        except Exception as error:  # noqa: BLE001 - reported, never raised into torch.onnx
            reason = f"{type(error).__name__}: {error}"
    if reason is not None:
        warnings.warn(f"rnnkernels: the dynamo ONNX exporter cannot export Fused modules ("
                      f"{reason}); use torch.onnx.export(..., dynamo=False)", stacklevel=2)


def _after_import(name: str, callback: Callable[[ModuleType], None]) -> None:
    """callback(module) once the module ``name`` has been imported: now if it has been."""
    if name in sys.modules:
        callback(sys.modules[name])
    else:
        sys.meta_path.insert(0, _CallAfterImport(name, callback))


class _CallAfterImport(importlib.abc.MetaPathFinder):
    """Finds ``name`` as the other finders would, with a loader that calls ``callback``
    on the module once it has run; then steps aside."""

    def __init__(self, name: str, callback: Callable[[ModuleType], None]) -> None:
        self.name = name
        self.callback = callback

    def find_spec(self, fullname: str, path: object,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _LoaderThen(spec.loader, self.callback)
        return spec


class _LoaderThen(importlib.abc.Loader):
    """``loader``, then ``callback(module)`` after the module's code has run."""

    def __init__(self, loader: importlib.abc.Loader,
                 callback: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._callback = callback

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._callback(module)

    def __getattr__(self, name: str) -> object:  # get_source, get_code, ... of the real one
        return getattr(self._loader, name)
