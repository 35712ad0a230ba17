"""Inter-layer dropout in training, against a stack built by hand from one-layer nn
modules with F.dropout between them, drawing from the same seed: the same mask, rate and
1/(1-p) scale, applied between layers only (never to the last layer's output or to h_n).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import CPU_BACKENDS, FUSED_OF

CELLS = [(nn.LSTM, {}), (nn.GRU, {}), (nn.RNN, {"nonlinearity": "relu"})]


def _hand_built(fused: nn.Module, nn_class: type, kwargs: dict) -> list[nn.Module]:
    """One nn module per layer, holding the fused stack's weights of that layer."""
    directions = 2 if fused.bidirectional else 1
    layers = []
    state = fused.state_dict()
    for layer in range(fused.num_layers):
        inputs = fused.input_size if layer == 0 else fused.hidden_size * directions
        module = nn_class(inputs, fused.hidden_size, bidirectional=fused.bidirectional, **kwargs)
        module.load_state_dict({name.replace(f"_l{layer}", "_l0"): value
                                for name, value in state.items() if f"_l{layer}" in name})
        layers.append(module.train())
    return layers


@pytest.mark.parametrize("bidirectional", [False, True], ids=["one-way", "bidirectional"])
@pytest.mark.parametrize("case", CELLS, ids=["LSTM", "GRU", "RNN-relu"])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_dropout_matches_a_hand_built_stack(backend, case, bidirectional):
    nn_class, kwargs = case
    p = 0.4
    fused = FUSED_OF[nn_class](8, 16, num_layers=3, dropout=p, bidirectional=bidirectional,
                               backend=backend, **kwargs).train()
    layers = _hand_built(fused, nn_class, kwargs)
    x = torch.randn(5, 4, 8)
    torch.manual_seed(7)
    output, state = fused(x)
    torch.manual_seed(7)
    y, finals = x, []
    for index, layer in enumerate(layers):
        y, final = layer(y)
        finals.append(final)
        if index < len(layers) - 1:
            y = F.dropout(y, p, training=True)
    torch.testing.assert_close(output, y, atol=1e-5, rtol=0)
    if nn_class is nn.LSTM:
        torch.testing.assert_close(state[0], torch.cat([h for h, _ in finals]), atol=1e-5, rtol=0)
        torch.testing.assert_close(state[1], torch.cat([c for _, c in finals]), atol=1e-5, rtol=0)
    else:
        torch.testing.assert_close(state, torch.cat(finals), atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_dropout_draws_a_fresh_mask_each_call(backend):
    """Two training calls differ (the masks are drawn anew) and each differs from eval."""
    fused = FUSED_OF[nn.GRU](8, 16, num_layers=2, dropout=0.5, backend=backend).train()
    x = torch.randn(5, 4, 8)
    first, second = fused(x)[0], fused(x)[0]
    assert not torch.equal(first, second)
    with torch.no_grad():
        evaluated = fused.eval()(x)[0]
    assert not torch.equal(first, evaluated)
