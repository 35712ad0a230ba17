"""Bad input raises what torch.nn raises: same exception type and message where nn's
own Python checks produce them, a clear error of the same type elsewhere."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from conftest import CPU_BACKENDS, module_pair


def _lstm_state(shape_h, shape_c=None, dtype=torch.float32):
    return (torch.zeros(shape_h, dtype=dtype), torch.zeros(shape_c or shape_h, dtype=dtype))


SEQUENCE_CASES = {  # name: (nn class, constructor kwargs, input, hx)
    "input-1d": (nn.LSTM, {}, torch.randn(4), None),
    "input-4d": (nn.GRU, {}, torch.randn(2, 3, 4, 1), None),
    "input-4d-rnn": (nn.RNN, {}, torch.randn(2, 3, 4, 1), None),
    "input-size": (nn.GRU, {}, torch.randn(2, 3, 5), None),
    "input-dtype": (nn.LSTM, {}, torch.randn(2, 3, 4, dtype=torch.float64), None),
    "hx-rank-batched": (nn.GRU, {}, torch.randn(2, 3, 4), torch.zeros(3, 6)),
    "hx-rank-unbatched": (nn.RNN, {}, torch.randn(2, 4), torch.zeros(1, 1, 6)),
    "lstm-hx-rank": (nn.LSTM, {}, torch.randn(2, 3, 4), _lstm_state((3, 6))),
    "lstm-hx-rank-unbatched": (nn.LSTM, {}, torch.randn(2, 4), _lstm_state((1, 1, 6))),
    "hx-batch": (nn.GRU, {}, torch.randn(2, 3, 4), torch.zeros(1, 2, 6)),
    "hx-layers": (nn.RNN, {"num_layers": 2}, torch.randn(2, 3, 4), torch.zeros(1, 3, 6)),
    "lstm-h-size": (nn.LSTM, {}, torch.randn(2, 3, 4), _lstm_state((1, 3, 5), (1, 3, 6))),
    "lstm-c-size": (nn.LSTM, {}, torch.randn(2, 3, 4), _lstm_state((1, 3, 6), (1, 3, 5))),
    "lstm-proj-h-size": (nn.LSTM, {"proj_size": 2}, torch.randn(2, 3, 4),
                         _lstm_state((1, 3, 6), (1, 3, 6))),
    "zero-steps": (nn.LSTM, {}, torch.randn(0, 3, 4), None),
    "zero-steps-gru": (nn.GRU, {}, torch.randn(0, 3, 4), None),
}
# nn's message for these comes from inside its C++ kernel; ours names the problem instead.
TYPE_ONLY = {"hx-dtype", "lstm-hx-dtype", "packed-hx-size"}
SEQUENCE_CASES.update({
    "hx-dtype": (nn.GRU, {}, torch.randn(2, 3, 4), torch.zeros(1, 3, 6, dtype=torch.float64)),
    "lstm-hx-dtype": (nn.LSTM, {}, torch.randn(2, 3, 4),
                      _lstm_state((1, 3, 6), dtype=torch.float64)),
})


def _raised(fn) -> BaseException:
    with pytest.raises(Exception) as info:
        fn()
    return info.value


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("name", list(SEQUENCE_CASES))
def test_sequence_errors_match_nn(backend, name) -> None:
    nn_class, kwargs, x, hx = SEQUENCE_CASES[name]
    reference, fused = module_pair(nn_class, 4, 6, backend=backend, **kwargs)
    expected = _raised(lambda: reference(x, hx))
    got = _raised(lambda: fused(x, hx))
    assert type(got) is type(expected), (got, expected)
    if name not in TYPE_ONLY:
        assert str(got) == str(expected)
    else:
        assert "dtype" in str(got)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_packed_hidden_size_error(backend) -> None:
    reference, fused = module_pair(nn.GRU, 4, 6, backend=backend)
    packed = pack_padded_sequence(torch.randn(3, 2, 4), torch.tensor([3, 2]))
    bad = torch.zeros(1, 3, 6)
    expected = _raised(lambda: reference(packed, bad))
    got = _raised(lambda: fused(packed, bad))
    assert type(got) is type(expected) and str(got) == str(expected)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_zero_batch_matches_nn(backend) -> None:
    reference, fused = module_pair(nn.LSTM, 4, 6, backend=backend, num_layers=2)
    x = torch.randn(3, 0, 4)
    out, (h, c) = fused(x)
    want, (wh, wc) = reference(x)
    assert out.shape == want.shape and h.shape == wh.shape and c.shape == wc.shape


CELL_CASES = {  # name: (nn class, input, hx)
    "input-3d": (nn.LSTMCell, torch.randn(2, 3, 4), None),
    "hidden-3d": (nn.GRUCell, torch.randn(3, 4), torch.zeros(1, 3, 6)),
    "hx-3d": (nn.LSTMCell, torch.randn(3, 4), (torch.zeros(1, 3, 6), torch.zeros(3, 6))),
    "input-size": (nn.RNNCell, torch.randn(3, 5), None),
    "batch": (nn.GRUCell, torch.randn(3, 4), torch.zeros(2, 6)),
    "hidden-size": (nn.LSTMCell, torch.randn(3, 4), (torch.zeros(3, 6), torch.zeros(3, 5))),
    "unbatched-hidden-2d": (nn.RNNCell, torch.randn(4), torch.zeros(1, 6)),
    "unbatched-hidden-size": (nn.GRUCell, torch.randn(4), torch.zeros(5)),
    "batched-hidden-1d": (nn.RNNCell, torch.randn(3, 4), torch.zeros(3)),
    "unbatched-input-size": (nn.LSTMCell, torch.randn(5), None),
    "lstm-hx-3": (nn.LSTMCell, torch.randn(3, 4), (torch.zeros(3, 6),) * 3),
    "lstm-hx-1": (nn.LSTMCell, torch.randn(3, 4), (torch.zeros(3, 6),)),
    "hidden-dtype": (nn.GRUCell, torch.randn(3, 4), torch.zeros(3, 6, dtype=torch.float64)),
}
CELL_TYPE_ONLY = {"hidden-dtype"}


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("name", list(CELL_CASES))
def test_cell_errors_match_nn(backend, name) -> None:
    nn_class, x, hx = CELL_CASES[name]
    reference, fused = module_pair(nn_class, 4, 6, backend=backend)
    expected = _raised(lambda: reference(x, hx))
    got = _raised(lambda: fused(x, hx))
    assert type(got) is type(expected)
    if name not in CELL_TYPE_ONLY:
        assert str(got) == str(expected)
    else:
        assert "dtype" in str(got)
