"""FusedLSTM, FusedGRU, FusedRNN and their cells: torch.nn's classes with the forward
replaced by the fused kernels.

Each builds on nn's own base class (nn.RNNBase, nn.LSTMCell, ...), so constructor
arguments, validation, parameter names, initialization, state_dict keys, ``all_weights``,
pickling and ``.to()`` are nn's own.
The forward re-reads the weights by attribute on every call (never a cached copy), so
``weight_norm``, ``functional_call`` and in-place changes work as with nn.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from . import _single_step, functional
from .functional import LayerWeights
from .onnx import _packed

_Self = TypeVar("_Self", bound="_FusedSequence")

_CELL_OF_MODE = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu"}


def _check_same_device(input: Tensor, hidden: list[Tensor], weights: list[Tensor]) -> None:
    """Device errors worded as nn's own, before any kernel sees the tensors."""
    for weight in weights:
        if weight.device != input.device:
            raise RuntimeError(
                "Input and parameter tensors are not at the same device, found input tensor at "
                f"{input.device} and parameter tensor at {weight.device}")
    for h in hidden:
        if h.device != input.device:
            raise RuntimeError(
                "Input and hidden tensors are not at the same device, found input tensor at "
                f"{input.device} and hidden tensor at {h.device}")


def _check_hidden_dtype(input: Tensor, hidden: list[Tensor]) -> None:
    if torch.is_autocast_enabled(input.device.type):
        return  # autocast casts them, as nn.* lets it
    for h in hidden:
        if h.dtype != input.dtype:
            raise RuntimeError(
                f"RNN hidden state dtype ({h.dtype}) does not match input dtype ({input.dtype})")


class _FusedSequence:
    """What FusedLSTM, FusedGRU and FusedRNN add to nn.RNNBase.

    They derive from nn.RNNBase rather than nn.LSTM/GRU/RNN because torch.compile refuses
    to trace those three classes (and anything that is an instance of them)."""

    _nn_class: type[nn.RNNBase]  # the torch.nn twin, for conversions
    _label: str  # the name nn's own error messages use
    zoneout: float = 0.0  # FusedLSTM and FusedGRU take it (see there)

    def flatten_parameters(self) -> None:
        """A no-op: the fused kernels read the parameters where they are."""

    def _layer_weights(self) -> list[LayerWeights]:
        weights = []
        for index, names in enumerate(self._all_weights):
            by_kind = {name.split("_l")[0]: getattr(self, name) for name in names}
            weights.append((by_kind["weight_ih"], by_kind["weight_hh"], by_kind.get("bias_ih"),
                            by_kind.get("bias_hh"), by_kind.get("weight_hr"),
                            *self._norm_weights(index)))
        return weights

    def _norm_weights(self, index: int) -> tuple[Tensor, ...]:
        """The layer-norm weights of layer and direction ``index`` (layer_norm_modules.py)."""
        return ()

    def _rowwise(self) -> bool:
        """Whether the layers run the rowwise kernels: layer norms or zoneout."""
        return self.zoneout > 0

    def _check_exportable(self) -> None:
        if self._rowwise() and torch.onnx.is_in_onnx_export():
            what = "layer normalisation" if self._norm_weights(0) else "zoneout"
            raise RuntimeError(
                f"{type(self).__name__} cannot be exported to ONNX: ONNX has no standard "
                f"recurrent operator with {what}")

    def _constructor_kwargs(self) -> dict[str, Any]:
        kwargs = dict(input_size=self.input_size, hidden_size=self.hidden_size,
                      num_layers=self.num_layers, bias=self.bias, batch_first=self.batch_first,
                      dropout=self.dropout, bidirectional=self.bidirectional)
        if self.mode == "LSTM":
            kwargs["proj_size"] = self.proj_size
        if self.mode.startswith("RNN_"):
            kwargs["nonlinearity"] = self.nonlinearity
        return kwargs

    @classmethod
    def from_torch(cls: type[_Self], module: nn.RNNBase, backend: str | None = None) -> _Self:
        """A Fused copy of an nn module, weights included."""
        if not isinstance(module, cls._nn_class):
            raise TypeError(f"{cls.__name__}.from_torch expects {cls._nn_class.__name__}, "
                            f"got {type(module).__name__}")
        weight = module.weight_ih_l0
        fused = cls(**_FusedSequence._constructor_kwargs(module), device=weight.device,
                    dtype=weight.dtype, backend=backend)
        fused.load_state_dict(module.state_dict())
        fused.train(module.training)
        return fused

    def to_torch(self) -> nn.RNNBase:
        """The equivalent nn module, weights included."""
        if self.zoneout > 0:
            raise ValueError(f"{type(self).__name__} with zoneout={self.zoneout} has no torch.nn "
                             "equivalent (nn has no zoneout)")
        weight = self.weight_ih_l0
        module = self._nn_class(**self._constructor_kwargs(), device=weight.device,
                                dtype=weight.dtype)
        module.load_state_dict(self.state_dict())
        module.train(self.training)
        return module

    def _hidden_sizes(self) -> tuple[int, int]:
        """(size of h, size of c): they differ only for an LSTM with a projection."""
        proj = getattr(self, "proj_size", 0)
        return (proj if proj > 0 else self.hidden_size), self.hidden_size

    def _prepare_unpacked(self, input: Tensor, hx: Any) -> tuple[Tensor, Any, bool]:
        """nn's checks and reshapes for a padded input; returns (input, hx, is_batched)."""
        has_cell = self.mode == "LSTM"
        if input.dim() not in (2, 3):
            noun = " tensor" if self.mode.startswith("RNN_") else ""
            raise ValueError(
                f"{self._label}: Expected input to be 2D or 3D, got {input.dim()}D{noun} instead")
        is_batched = input.dim() == 3
        if not is_batched:
            input = input.unsqueeze(0 if self.batch_first else 1)
        if hx is not None:
            want = 3 if is_batched else 2
            kind = "batched 3-D" if is_batched else "unbatched 2-D"
            if has_cell:
                if hx[0].dim() != want or hx[1].dim() != want:
                    raise RuntimeError(
                        f"For {kind} input, hx and cx should also be {want}-D but got "
                        f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors")
                if not is_batched:
                    hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
            else:
                if hx.dim() != want:
                    raise RuntimeError(
                        f"For {kind} input, hx should also be {want}-D but got {hx.dim()}-D tensor")
                if not is_batched:
                    hx = hx.unsqueeze(1)
        return input, hx, is_batched

    def _lean_stream(self, input: Tensor, hx: Any) -> tuple[Any, Any] | None:
        """One time step on the lean call (_single_step.py), or None where it does not
        apply: a projection, dropout between layers in training, an LSTM's hx not a pair."""
        has_cell = self.mode == "LSTM"
        if self._rowwise() or self.proj_size > 0 \
                or (self.training and self.dropout > 0 and self.num_layers > 1) \
                or (has_cell and hx is not None and (not isinstance(hx, tuple) or len(hx) != 2)) \
                or (not has_cell and isinstance(hx, tuple)):
            return None
        weights = [getattr(self, name) for name in self._flat_weights_names]
        result = _single_step.stream(_CELL_OF_MODE[self.mode], self.backend, input, hx, weights,
                                     self.num_layers, self.bidirectional, self.batch_first)
        if result is None:
            return None
        output, h_n, c_n = result
        return output, ((h_n, c_n) if has_cell else h_n)

    def forward(self, input: Tensor | PackedSequence, hx: Any = None) -> tuple[Any, Any]:
        self._check_exportable()
        if not isinstance(input, PackedSequence):
            result = self._lean_stream(input, hx)
            if result is not None:
                return result
        # nn's forward first refreshes _flat_weights, the list its kernels read; ours read
        # every weight by attribute (_layer_weights), so that refresh is skipped.
        has_cell = self.mode == "LSTM"
        packed = isinstance(input, PackedSequence)
        is_batched = True
        # Packed and traced for ONNX: through torch's own op (onnx/_packed.py), with the
        # batch size kept a tensor (nn's form), so that it follows the input's.
        packed_for_onnx = packed and _packed.traced_for_onnx()
        if packed:
            data, batch_sizes, sorted_indices, unsorted_indices = input
            max_batch = batch_sizes[0] if packed_for_onnx else int(batch_sizes[0])
        else:
            data, hx, is_batched = self._prepare_unpacked(input, hx)
            batch_sizes = sorted_indices = unsorted_indices = None
            max_batch = data.size(0 if self.batch_first else 1)
        directions = 2 if self.bidirectional else 1
        h_size, c_size = self._hidden_sizes()
        if hx is None:
            zeros = dict(dtype=data.dtype, device=data.device)
            h0 = torch.zeros(self.num_layers * directions, max_batch, h_size, **zeros)
            hx = (h0, torch.zeros(self.num_layers * directions, max_batch, c_size, **zeros)) \
                if has_cell else h0
        else:
            hx = self.permute_hidden(hx, sorted_indices)
        self.check_forward_args(data, hx, batch_sizes)
        weights = self._layer_weights()
        hidden_list = list(hx) if has_cell else [hx]
        _check_same_device(data, hidden_list, [w for ws in weights for w in ws if w is not None])
        _check_hidden_dtype(data, hidden_list)
        if not packed and data.size(1 if self.batch_first else 0) == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
        time_major = data.transpose(0, 1) if (self.batch_first and not packed) else data
        if packed_for_onnx:
            output, h_n, c_n = _packed.torch_rnn(
                self.mode, data, batch_sizes, hidden_list, weights, self.bias, self.num_layers,
                float(self.dropout), self.training, self.bidirectional)
        else:
            output, h_n, c_n = functional.rnn(
                _CELL_OF_MODE[self.mode], time_major, batch_sizes, hidden_list[0],
                hidden_list[1] if has_cell else None, weights, self.num_layers,
                float(self.dropout), self.training, self.bidirectional, backend=self.backend,
                zoneout=float(self.zoneout))
        if self.batch_first and not packed:
            output = output.transpose(0, 1)
        hidden = (h_n, c_n) if has_cell else h_n
        if packed:
            return (PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices),
                    self.permute_hidden(hidden, unsorted_indices))
        if not is_batched:
            output = output.squeeze(0 if self.batch_first else 1)
            hidden = (h_n.squeeze(1), c_n.squeeze(1)) if has_cell else h_n.squeeze(1)
        return output, hidden


class FusedLSTM(_FusedSequence, nn.RNNBase):
    """Drop-in for :class:`torch.nn.LSTM`; ``backend`` picks 'cuda', 'cpp' or 'python'."""

    _nn_class = nn.LSTM
    _label = "LSTM"
    get_expected_cell_size = nn.LSTM.get_expected_cell_size
    check_forward_args = nn.LSTM.check_forward_args
    permute_hidden = nn.LSTM.permute_hidden

    def __init__(self, *args: Any, backend: str | None = None, zoneout: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__("LSTM", *args, **kwargs)
        self.backend = backend
        self.zoneout = _checked_zoneout(zoneout)
        if self.zoneout > 0 and self.proj_size > 0:
            raise ValueError("zoneout is not supported together with proj_size")

    def extra_repr(self) -> str:
        return _with_zoneout(super().extra_repr(), self.zoneout)


class FusedGRU(_FusedSequence, nn.RNNBase):
    """Drop-in for :class:`torch.nn.GRU`; ``backend`` picks 'cuda', 'cpp' or 'python'."""

    _nn_class = nn.GRU
    _label = "GRU"

    def __init__(self, *args: Any, backend: str | None = None, zoneout: float = 0.0,
                 **kwargs: Any) -> None:
        _reject_proj_size(kwargs)
        super().__init__("GRU", *args, **kwargs)
        self.backend = backend
        self.zoneout = _checked_zoneout(zoneout)

    def extra_repr(self) -> str:
        return _with_zoneout(super().extra_repr(), self.zoneout)


class FusedRNN(_FusedSequence, nn.RNNBase):
    """Drop-in for :class:`torch.nn.RNN` (tanh or relu); ``backend`` as for FusedLSTM."""

    _nn_class = nn.RNN
    _label = "RNN"

    def __init__(self, *args: Any, backend: str | None = None, **kwargs: Any) -> None:
        _reject_proj_size(kwargs)
        # nn.RNN takes nonlinearity as the fourth positional argument or a keyword.
        if len(args) > 3:
            nonlinearity, args = args[3], args[:3] + args[4:]
        else:
            nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__(f"RNN_{nonlinearity.upper()}", *args, **kwargs)
        self.backend = backend


def _checked_zoneout(p: Any) -> float:
    """zoneout as a float in [0, 1], the probability that a unit keeps its previous state."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise ValueError(f"zoneout should be a number in the range [0, 1] representing the "
                         f"probability of a unit keeping its previous state, got {p!r}")
    return float(p)


def _with_zoneout(text: str, zoneout: float) -> str:
    return text + (f", zoneout={zoneout}" if zoneout > 0 else "")


def _reject_proj_size(kwargs: dict[str, Any]) -> None:
    if "proj_size" in kwargs:
        raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")


class _FusedCell:
    """What the Fused cells add to their nn base class: one step on the cell op."""

    _label: str
    _cell: str

    def _check_step_args(self, input: Tensor, hidden: list[Tensor]) -> None:
        """The checks (and messages) of ATen's *_cell ops."""
        if input.size(1) != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {input.size(1)} "
                               f"expected {self.input_size}")
        for index, h in enumerate(hidden):
            if input.size(0) != h.size(0):
                raise RuntimeError(f"Input batch size {input.size(0)} doesn't match "
                                   f"hidden{index} batch size {h.size(0)}")
            if h.size(1) != self.hidden_size:
                raise RuntimeError(f"hidden{index} has inconsistent hidden_size: got "
                                   f"{h.size(1)}, expected {self.hidden_size}")
        weights = [w for w in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
                   if w is not None]
        _check_same_device(input, hidden, weights)
        for tensor in [*hidden, *weights]:
            if tensor.dtype != input.dtype:
                raise RuntimeError(f"{self._label}: expected all tensors to have dtype "
                                   f"{input.dtype}, got {tensor.dtype}")

    def _step(self, input: Tensor, hidden: list[Tensor]) -> tuple[Tensor, Tensor | None]:
        """(h', c') for a batched input [B, I] and states [B, H]."""
        self._check_step_args(input, hidden)
        weights = (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, None)
        return functional.cell_step(self._cell, input, hidden[0],
                                    hidden[1] if len(hidden) > 1 else None, weights,
                                    backend=self.backend)

    def _prepare(self, input: Tensor, hx: list[Tensor] | None) -> tuple[Tensor, list[Tensor], bool]:
        is_batched = input.dim() == 2
        if not is_batched:
            input = input.unsqueeze(0)
        if hx is None:
            zeros = torch.zeros(input.size(0), self.hidden_size, dtype=input.dtype,
                                device=input.device)
            hx = [zeros] * (2 if self._cell == "lstm" else 1)
        elif not is_batched:
            hx = [h.unsqueeze(0) for h in hx]
        return input, list(hx), is_batched

    def _check_hidden_dim(self, hidden: Tensor | None) -> None:
        if hidden is not None and hidden.dim() not in (1, 2):
            raise ValueError(
                f"{self._label}: Expected hidden to be 1D or 2D, got {hidden.dim()}D instead")

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() not in (1, 2):
            raise ValueError(
                f"{self._label}: Expected input to be 1D or 2D, got {input.dim()}D instead")

    def _lean(self, input: Tensor, h: Tensor | None, c: Tensor | None) -> Any:
        """The step on the lean call (_single_step.py), or None where it does not apply."""
        return _single_step.step(self._cell, self.backend, input, h, c, self.weight_ih,
                                 self.weight_hh, self.bias_ih, self.bias_hh)

    def _single_state_forward(self, input: Tensor, hx: Tensor | None) -> Tensor:
        result = self._lean(input, hx, None)
        if result is not None:
            return result
        self._check_input_dim(input)
        self._check_hidden_dim(hx)
        input, hidden, is_batched = self._prepare(input, None if hx is None else [hx])
        h_new, _ = self._step(input, hidden)
        return h_new if is_batched else h_new.squeeze(0)


class FusedLSTMCell(_FusedCell, nn.LSTMCell):
    """Drop-in for :class:`torch.nn.LSTMCell`."""

    _label = "LSTMCell"
    _cell = "lstm"

    def __init__(self, *args: Any, backend: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.backend = backend

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        # A given pair must hold two tensors (a None inside is nn's error, not zeros).
        if hx is None or (len(hx) == 2 and hx[0] is not None and hx[1] is not None):
            result = self._lean(input, *((None, None) if hx is None else hx))
            if result is not None:
                return result
        self._check_input_dim(input)
        if hx is not None:
            for index, value in enumerate(hx):
                if value.dim() not in (1, 2):
                    raise ValueError(f"LSTMCell: Expected hx[{index}] to be 1D or 2D, "
                                     f"got {value.dim()}D instead")
            if len(hx) != 2:
                raise RuntimeError("lstm_cell expects two hidden states")
        input, hidden, is_batched = self._prepare(input, None if hx is None else list(hx))
        h_new, c_new = self._step(input, hidden)
        if not is_batched:
            return h_new.squeeze(0), c_new.squeeze(0)
        return h_new, c_new


class FusedGRUCell(_FusedCell, nn.GRUCell):
    """Drop-in for :class:`torch.nn.GRUCell`."""

    _label = "GRUCell"
    _cell = "gru"

    def __init__(self, *args: Any, backend: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.backend = backend

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._single_state_forward(input, hx)


class FusedRNNCell(_FusedCell, nn.RNNCell):
    """Drop-in for :class:`torch.nn.RNNCell` (tanh or relu)."""

    _label = "RNNCell"

    def __init__(self, *args: Any, backend: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.backend = backend

    @property
    def _cell(self) -> str:
        if self.nonlinearity not in ("tanh", "relu"):
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        return f"rnn_{self.nonlinearity}"

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._single_state_forward(input, hx)
