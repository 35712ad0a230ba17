"""LayerNormLSTM and LayerNormGRU: the LSTM and GRU with layer-normalised projections (and
cell state), fused on the CPU, with zoneout.

Per layer and direction (gate rows as nn's), LN(v) = (v - mean(v)) / sqrt(var(v) + 1e-5)
over the last dimension with the biased variance:

- LayerNormLSTM: ``xg = LN(W_ih x_t) * ln_ih_weight``, ``hg = LN(W_hh h_(t-1)) *
  ln_hh_weight``, ``(i, f, g, o) = split(xg + hg + b_ih + b_hh)``, ``c_t = sigmoid(f) *
  c_(t-1) + sigmoid(i) * tanh(g)``, ``h_t = sigmoid(o) * tanh(LN(c_t) * ln_cell_weight +
  ln_cell_bias)``; the returned cell state is the un-normalised c_t.
- LayerNormGRU: ``xg = LN(W_ih x_t) * ln_ih_weight + b_ih``, ``hg = LN(W_hh h_(t-1)) *
  ln_hh_weight + b_hh``, then nn.GRU's gates on xg and hg.

Parameters are nn's (same names, same initialisation) plus ``ln_ih_weight_l{k}`` and
``ln_hh_weight_l{k}`` [G*H] (ones) and, for the LSTM, ``ln_cell_weight_l{k}`` [H] (ones)
and ``ln_cell_bias_l{k}`` [H] (zeros), with ``_reverse`` for the reverse direction.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ._rowwise import CELL_STATE_NORMS, PROJECTION_NORMS
from .modules import _checked_zoneout, _FusedSequence, _with_zoneout

# The initial value of each layer-norm weight.
_INIT = {"ln_ih_weight": 1.0, "ln_hh_weight": 1.0, "ln_cell_weight": 1.0, "ln_cell_bias": 0.0}


class _LayerNormSequence(_FusedSequence):
    """What LayerNormLSTM and LayerNormGRU add to the Fused modules: their layer-norm
    weights, registered per layer and direction."""

    _gates: int  # nn's gate count of the plain cell: the projections' norms are G*H wide

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, zoneout: float = 0.0, device: Any = None,
                 dtype: Any = None, *, backend: str | None = None) -> None:
        nn.RNNBase.__init__(self, mode, input_size, hidden_size, num_layers, bias, batch_first,
                            dropout, bidirectional, device=device, dtype=dtype)
        self.backend = backend
        self.zoneout = _checked_zoneout(zoneout)
        self._norm_names: list[tuple[str, ...]] = []
        factory = dict(device=device, dtype=dtype)
        for layer in range(num_layers):
            for suffix in ("", "_reverse")[: 2 if bidirectional else 1]:
                names = []
                for kind in PROJECTION_NORMS + (CELL_STATE_NORMS if mode == "LSTM" else ()):
                    size = hidden_size * (1 if kind in CELL_STATE_NORMS else self._gates)
                    name = f"{kind}_l{layer}{suffix}"
                    self.register_parameter(name, nn.Parameter(torch.empty(size, **factory)))
                    names.append(name)
                self._norm_names.append(tuple(names))
        self._reset_norms()

    def _reset_norms(self) -> None:
        with torch.no_grad():
            for names in self._norm_names:
                for name in names:
                    getattr(self, name).fill_(_INIT[name.split("_l")[0]])

    def reset_parameters(self) -> None:
        """nn's initialisation of the recurrent weights; the layer norms start as identity."""
        super().reset_parameters()
        if hasattr(self, "_norm_names"):  # nn.RNNBase.__init__ calls this before they exist
            self._reset_norms()

    def _norm_weights(self, index: int) -> tuple[Tensor, ...]:
        return tuple(getattr(self, name) for name in self._norm_names[index])

    def _rowwise(self) -> bool:
        return True

    def _constructor_kwargs(self) -> dict[str, Any]:
        kwargs = super()._constructor_kwargs()
        kwargs.pop("proj_size", None)
        return kwargs

    @classmethod
    def from_torch(cls, module: nn.RNNBase, backend: str | None = None) -> Any:
        raise TypeError(f"{cls.__name__} has no torch.nn twin to convert from")

    def to_torch(self) -> nn.RNNBase:
        raise TypeError(f"{type(self).__name__} has no torch.nn equivalent")

    def extra_repr(self) -> str:
        return _with_zoneout(super().extra_repr(), self.zoneout)


class LayerNormLSTM(_LayerNormSequence, nn.RNNBase):
    """nn.LSTM with layer-normalised projections and cell state (module docstring);
    ``zoneout`` as for FusedLSTM, ``backend`` picks 'cpp' or 'python'."""

    _nn_class = nn.LSTM
    _label = "LSTM"
    _gates = 4
    get_expected_cell_size = nn.LSTM.get_expected_cell_size
    check_forward_args = nn.LSTM.check_forward_args
    permute_hidden = nn.LSTM.permute_hidden

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, zoneout: float = 0.0, device: Any = None,
                 dtype: Any = None, *, backend: str | None = None) -> None:
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, zoneout, device, dtype, backend=backend)


class LayerNormGRU(_LayerNormSequence, nn.RNNBase):
    """nn.GRU with layer-normalised projections (module docstring); ``zoneout`` as for
    FusedGRU, ``backend`` picks 'cpp' or 'python'."""

    _nn_class = nn.GRU
    _label = "GRU"
    _gates = 3

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, zoneout: float = 0.0, device: Any = None,
                 dtype: Any = None, *, backend: str | None = None) -> None:
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, zoneout, device, dtype, backend=backend)
