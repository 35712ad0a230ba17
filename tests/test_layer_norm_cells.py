"""LayerNormLSTM and LayerNormGRU: the formulas (checked against a loop written here from
them, apart from reference.py), parameters, gradients on both backends, parity of the
fused kernels with the reference, and what they share with the other modules (compile,
torch.func, opcheck, autocast, errors)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkernels
from conftest import CPU_BACKENDS, gradcheck_inputs, module_as_function
from rnnkernels import LayerNormGRU, LayerNormLSTM, _rowwise

NORM_MODULES = {"ln-lstm": LayerNormLSTM, "ln-gru": LayerNormGRU}
needs_cpp = pytest.mark.skipif(not rnnkernels.backend_info()["compiled"]["cpp"],
                               reason="the C++ extension is not built")


def _ln(v: torch.Tensor) -> torch.Tensor:
    """(v - mean) / sqrt(biased var + 1e-5) over the last dimension, spelled out."""
    mean = v.mean(-1, keepdim=True)
    var = ((v - mean) ** 2).mean(-1, keepdim=True)
    return (v - mean) / torch.sqrt(var + 1e-5)


def _formula_layer(module, x, h, c, layer=0, suffix=""):
    """One layer and direction of the issue's formulas, by parameter name."""
    p = {name: getattr(module, f"{name}_l{layer}{suffix}") for name in
         ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "ln_ih_weight", "ln_hh_weight")}
    outputs = []
    for x_t in x:
        xg = _ln(x_t @ p["weight_ih"].T) * p["ln_ih_weight"]
        hg = _ln(h @ p["weight_hh"].T) * p["ln_hh_weight"]
        if isinstance(module, LayerNormLSTM):
            i, f, g, o = (xg + hg + p["bias_ih"] + p["bias_hh"]).chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            cell_w = getattr(module, f"ln_cell_weight_l{layer}{suffix}")
            cell_b = getattr(module, f"ln_cell_bias_l{layer}{suffix}")
            h = torch.sigmoid(o) * torch.tanh(_ln(c) * cell_w + cell_b)
        else:
            x_r, x_z, x_n = (xg + p["bias_ih"]).chunk(3, -1)
            h_r, h_z, h_n = (hg + p["bias_hh"]).chunk(3, -1)
            r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + r * h_n)
            h = (1 - z) * n + z * h
        outputs.append(h)
    return torch.stack(outputs), h, c


def _perturb_norms(module: torch.nn.Module) -> None:
    """Layer-norm weights away from their identity start, so that a mix-up shows."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.startswith("ln_"):
                p.add_(0.3 * torch.randn_like(p))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("kind", NORM_MODULES)
def test_matches_the_formulas(kind, backend) -> None:
    module = NORM_MODULES[kind](5, 6, dtype=torch.float64, backend=backend)
    _perturb_norms(module)
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    h0 = torch.randn(1, 3, 6, dtype=torch.float64)
    c0 = torch.randn(1, 3, 6, dtype=torch.float64)
    expected, h_n, c_n = _formula_layer(module, x, h0[0], c0[0])
    if kind == "ln-lstm":
        output, (h, c) = module(x, (h0, c0))
        torch.testing.assert_close(c[0], c_n, rtol=0, atol=1e-12)  # un-normalised c
    else:
        output, h = module(x, h0)
    torch.testing.assert_close(output, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(h[0], h_n, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_bidirectional_two_layers_match_the_formulas(backend) -> None:
    module = LayerNormGRU(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64,
                          backend=backend)
    _perturb_norms(module)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    zeros = torch.zeros(2, 4, dtype=torch.float64)
    ahead = _formula_layer(module, x, zeros, None, 0, "")[0]
    back = _formula_layer(module, x.flip(0), zeros, None, 0, "_reverse")[0].flip(0)
    layer_1 = torch.cat([ahead, back], -1)
    ahead = _formula_layer(module, layer_1, zeros, None, 1, "")[0]
    back = _formula_layer(module, layer_1.flip(0), zeros, None, 1, "_reverse")[0].flip(0)
    torch.testing.assert_close(module(x)[0], torch.cat([ahead, back], -1), rtol=0, atol=1e-12)


def test_parameters_named_and_initialised() -> None:
    torch.manual_seed(0)
    lstm = LayerNormLSTM(3, 4, num_layers=2, bidirectional=True)
    names = dict(lstm.named_parameters())
    nn_names = {name for name, _ in torch.nn.LSTM(3, 4, num_layers=2,
                                                  bidirectional=True).named_parameters()}
    assert nn_names <= set(names)
    for layer in range(2):
        for suffix in ("", "_reverse"):
            assert torch.equal(names[f"ln_ih_weight_l{layer}{suffix}"], torch.ones(16))
            assert torch.equal(names[f"ln_hh_weight_l{layer}{suffix}"], torch.ones(16))
            assert torch.equal(names[f"ln_cell_weight_l{layer}{suffix}"], torch.ones(4))
            assert torch.equal(names[f"ln_cell_bias_l{layer}{suffix}"], torch.zeros(4))
    assert set(names) - nn_names == {f"ln_{k}_l{layer}{s}" for k in
                                     ("ih_weight", "hh_weight", "cell_weight", "cell_bias")
                                     for layer in range(2) for s in ("", "_reverse")}
    bound = 1 / 4 ** 0.5  # nn's uniform(-1/sqrt(H), 1/sqrt(H)) for the others
    assert all(names[n].abs().max() <= bound for n in nn_names)
    gru = LayerNormGRU(3, 4)
    assert {n for n, _ in gru.named_parameters() if n.startswith("ln_")} == \
        {"ln_ih_weight_l0", "ln_hh_weight_l0"}
    assert gru.ln_ih_weight_l0.shape == (12,)
    gru.reset_parameters()
    assert torch.equal(gru.ln_hh_weight_l0, torch.ones(12))
    restored = LayerNormGRU(3, 4)
    restored.load_state_dict(gru.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(restored.parameters(), gru.parameters()))


def test_constructor_matches_the_issue_signature() -> None:
    module = LayerNormLSTM(3, 4, 2, False, True, 0.5, True, 0.25, None, torch.float64)
    assert (module.num_layers, module.bias, module.batch_first, module.dropout,
            module.bidirectional, module.zoneout) == (2, False, True, 0.5, True, 0.25)
    assert module.weight_ih_l0.dtype == torch.float64
    assert "zoneout=0.25" in repr(module)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("kind", NORM_MODULES)
def test_gradcheck(kind, layers, bidirectional, backend) -> None:
    module = NORM_MODULES[kind](3, 4, num_layers=layers, bidirectional=bidirectional,
                                dtype=torch.float64, backend=backend)
    _perturb_norms(module)
    assert torch.autograd.gradcheck(module_as_function(module), gradcheck_inputs(module))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("kind", NORM_MODULES)
def test_gradgradcheck(kind, backend) -> None:
    module = NORM_MODULES[kind](2, 3, dtype=torch.float64, backend=backend)
    _perturb_norms(module)
    inputs = gradcheck_inputs(module, steps=2)
    assert torch.autograd.gradgradcheck(module_as_function(module), inputs)


def _outputs_and_grads(module, inputs, backend, seed=0):
    """(outputs and states, gradients of the parameters and the input) of one run."""
    module.backend = backend
    torch.manual_seed(seed)  # the zoneout mask
    output, hidden = module(*inputs)
    data = output.data if hasattr(output, "batch_sizes") else output
    states = list(hidden) if isinstance(hidden, tuple) else [hidden]
    loss = (data * torch.linspace(-1, 1, data.shape[-1])).sum() + \
        sum((s * (k + 2)).sum() for k, s in enumerate(states))
    x = inputs[0].data if hasattr(inputs[0], "batch_sizes") else inputs[0]
    wrt = [*module.parameters(), x]
    return [data, *states], torch.autograd.grad(loss, wrt)


@needs_cpp
@pytest.mark.parametrize("zoneout", [0.0, 0.4])
@pytest.mark.parametrize("layout", ["padded", "packed", "unbatched"])
@pytest.mark.parametrize("kind", NORM_MODULES)
def test_fused_float32_matches_reference(kind, layout, zoneout) -> None:
    """The fused kernels in float32 against the reference: outputs and states to 1e-5 of
    the reference in float32; every gradient against the reference in float64, within 1e-5
    of the tensor's scale or, where the float32 reference itself is further off, four times
    its error. The layer norms' backward subtracts row means (cancellation): float32
    gradients of either implementation sit up to about 2e-5 of their scale from the exact
    ones, the fused kernels' fast exp and tanh (within 3e-7) adding their part."""
    module = NORM_MODULES[kind](8, 32, num_layers=2, bidirectional=True, zoneout=zoneout)
    _perturb_norms(module)
    x = torch.randn(7, 5, 8)

    def inputs_of(x_any: torch.Tensor) -> list:
        x_any = x_any.detach().requires_grad_()
        if layout == "packed":
            return [pack_padded_sequence(x_any, torch.tensor([7, 6, 4, 4, 1]),
                                         enforce_sorted=False)]
        return [x_any[:, 0]] if layout == "unbatched" else [x_any]

    fused, fused_grads = _outputs_and_grads(module, inputs_of(x), "cpp")
    ref, ref_grads = _outputs_and_grads(module, inputs_of(x), "python")
    exact, exact_grads = _outputs_and_grads(copy.deepcopy(module).double(),
                                            inputs_of(x.double()), "python")
    for a, b in zip(fused, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for a, b, e in zip(fused_grads, ref_grads, exact_grads, strict=True):
        scale = e.abs().max().item()
        ref_error = (b.double() - e).abs().max().item()
        assert (a.double() - e).abs().max().item() <= max(4 * ref_error, 1e-5 * scale)


@needs_cpp
@pytest.mark.parametrize("grad", [True, False], ids=["training", "no_grad"])
def test_calls_without_gradient_run_the_inference_op(grad, monkeypatch) -> None:
    calls = []
    for name in ("forward_op", "inference_op"):
        original = getattr(_rowwise, name)
        monkeypatch.setattr(_rowwise, name,
                            lambda cell, _o=original, _n=name: (calls.append(_n), _o(cell))[1])
    module = LayerNormGRU(3, 4, zoneout=0.3, backend="cpp")
    with torch.set_grad_enabled(grad):
        module(torch.randn(2, 1, 3))
    assert calls == (["forward_op"] if grad else ["inference_op"])


@needs_cpp
def test_fused_runs_the_rowwise_op(monkeypatch) -> None:
    calls = []
    original = _rowwise.fused_rowwise_layer

    def spy(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(rnnkernels.functional, "fused_rowwise_layer", spy)
    LayerNormLSTM(3, 4, backend="cpp")(torch.randn(2, 1, 3))
    assert calls == ["lstm"]


@needs_cpp
@pytest.mark.parametrize("kind", NORM_MODULES)
def test_torch_compile_fullgraph(kind) -> None:
    torch._dynamo.reset()
    module = NORM_MODULES[kind](4, 8, num_layers=2)
    _perturb_norms(module)
    x = torch.randn(5, 3, 4)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    eager_out = module(x)[0]
    compiled_out = compiled(x)[0]
    torch.testing.assert_close(compiled_out, eager_out)
    compiled_out.sum().backward()
    assert module.ln_hh_weight_l1.grad is not None


@needs_cpp
@pytest.mark.parametrize("kind", NORM_MODULES)
def test_torch_export(kind) -> None:
    """torch.export traces the rowwise op (its fake kernel), in eval with zoneout too."""
    module = NORM_MODULES[kind](4, 8, zoneout=0.2).eval()
    _perturb_norms(module)
    program = torch.export.export(module, (torch.randn(5, 3, 4),))
    assert any("rowwise_forward" in str(node.target) for node in program.graph.nodes)
    other = torch.randn(5, 3, 4)
    torch.testing.assert_close(program.module()(other)[0], module(other)[0])


@pytest.mark.parametrize("kind", NORM_MODULES)
def test_torch_func_grad(kind) -> None:
    module = NORM_MODULES[kind](3, 4, dtype=torch.float64)
    _perturb_norms(module)
    params = {k: v.detach() for k, v in module.named_parameters()}
    x = torch.randn(3, 2, 3, dtype=torch.float64)

    def loss(p):
        return functional_call(module, p, (x,))[0].pow(2).sum()

    grads = torch.func.grad(loss)(params)
    module.zero_grad()
    loss(dict(module.named_parameters())).backward()
    for name, p in module.named_parameters():
        torch.testing.assert_close(grads[name], p.grad)


@needs_cpp
@pytest.mark.parametrize("zoneout", [False, True])
@pytest.mark.parametrize("normed", [False, True])
@pytest.mark.parametrize("batch_sizes", [[], [3, 2, 2, 1]], ids=["padded", "packed"])
@pytest.mark.parametrize("cell", _rowwise.CELLS)
def test_opcheck(cell, batch_sizes, normed, zoneout) -> None:
    gates, hidden, features = _rowwise.GATES[cell], 4, 3
    x = torch.randn(sum(batch_sizes), features) if batch_sizes else torch.randn(4, 3, features)
    batch = batch_sizes[0] if batch_sizes else 3
    grad = dict(requires_grad=True)
    norms = [torch.randn(gates * hidden, **grad), torch.randn(gates * hidden, **grad)]
    if cell == "lstm":
        norms += [torch.randn(hidden, **grad), torch.randn(hidden, **grad)]
    slots = _rowwise._norm_slots(cell, norms if normed else [])
    mask = torch.bernoulli(torch.full((*x.shape[:-1], hidden), 0.5)) if zoneout else None
    args = (x.requires_grad_(), batch_sizes, torch.randn(batch, hidden, **grad),
            torch.randn(batch, hidden, **grad) if cell == "lstm" else None,
            torch.randn(gates * hidden, features, **grad), torch.randn(gates * hidden, hidden, **grad),
            torch.randn(gates * hidden, **grad), torch.randn(gates * hidden, **grad),
            *slots, mask, False)
    torch.library.opcheck(_rowwise.forward_op(cell), args)
    torch.library.opcheck(_rowwise.inference_op(cell), args)
    with torch.no_grad():  # the inference op: the same passes, one step's rows kept
        for got, want in zip(_rowwise.inference_op(cell)(*args),
                             _rowwise.forward_op(cell)(*args)[:3], strict=True):
            assert torch.equal(got, want)
    output, h_n, c_n, *kept = _rowwise.forward_op(cell)(*args)
    backward_args = (torch.randn_like(output), torch.randn_like(h_n),
                     torch.randn_like(c_n) if cell == "lstm" else None,
                     *[a.detach() if torch.is_tensor(a) else a for a in args[:2]],
                     args[4].detach(), args[5].detach(), True,
                     *[s if s is None else s.detach() for s in slots], mask,
                     *[k.detach() for k in kept], False)
    torch.library.opcheck(_rowwise.backward_op(cell), backward_args)


@needs_cpp
@pytest.mark.parametrize("kind", NORM_MODULES)
def test_cpu_autocast_follows_the_plain_cell(kind) -> None:
    """Under CPU autocast the layer-normalised cells return what their plain cell does
    there: nn.LSTM autocast's dtype (it is on the lower-precision list), nn.GRU float32."""
    module = NORM_MODULES[kind](4, 8)
    x = torch.randn(3, 2, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output, _ = module(x)
        plain_dtype = getattr(torch.nn, kind[3:].upper())(4, 8)(x)[0].dtype
    assert output.dtype == plain_dtype
    # bf16 (8 significant bits) rounds the weights, the input and the result: a few unit
    # roundoffs 2^-8 of outputs below 1.
    torch.testing.assert_close(output.float(), module(x)[0], rtol=0, atol=16 * 2.0 ** -8)


@needs_cpp
def test_bfloat16_module_computes_in_float32() -> None:
    module = LayerNormLSTM(4, 8)
    x = torch.randn(3, 2, 4)
    reference = module(x)[0]
    output = module.to(torch.bfloat16)(x.to(torch.bfloat16))[0]
    assert output.dtype == torch.bfloat16
    # Rounding the weights and the input to bf16 (8 bits) moves the float32 result by a few
    # of bf16's unit roundoffs (2^-8) through the tanh and sigmoid's slopes below 1.
    torch.testing.assert_close(output.float(), reference, rtol=0, atol=16 * 2.0 ** -8)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("kind", NORM_MODULES)
def test_onnx_export_is_a_clear_error(kind, dynamo, tmp_path) -> None:
    """Under either exporter the error names the module (the dynamo exporter wraps it)."""
    if dynamo:
        pytest.importorskip("onnxscript")
        if not rnnkernels.backend_info()["compiled"]["cpp"]:
            pytest.skip("the dynamo exporter traces the python backend's plain ops through")
    module = NORM_MODULES[kind](3, 4)
    with pytest.raises(Exception, match=f"{NORM_MODULES[kind].__name__} cannot be exported "
                                        "to ONNX"):
        torch.onnx.export(module, (torch.randn(2, 1, 3),), str(tmp_path / "m.onnx"),
                          dynamo=dynamo)


def test_no_nn_twin() -> None:
    with pytest.raises(TypeError, match="no torch.nn equivalent"):
        LayerNormGRU(3, 4).to_torch()
    with pytest.raises(TypeError, match="no torch.nn twin"):
        LayerNormLSTM.from_torch(torch.nn.LSTM(3, 4))


@needs_cpp
def test_op_rejects_a_partial_set_of_norms() -> None:
    x, h0, c0 = torch.randn(2, 1, 3), torch.zeros(1, 4), torch.zeros(1, 4)
    w_ih, w_hh = torch.randn(16, 3), torch.randn(16, 4)
    with pytest.raises(RuntimeError, match="takes ln_ih_weight and ln_hh_weight, ln_cell_weight"):
        _rowwise.forward_op("lstm")(x, [], h0, c0, w_ih, w_hh, None, None, torch.ones(16),
                                    torch.ones(16), None, None, None, False)
    with pytest.raises(RuntimeError, match="ln_hh_weight must have shape"):
        _rowwise.forward_op("lstm")(x, [], h0, c0, w_ih, w_hh, None, None, torch.ones(16),
                                    torch.ones(12), torch.ones(4), torch.ones(4), None, False)


def test_cuda_by_name_is_an_error_on_cpu_tensors() -> None:
    with pytest.raises(RuntimeError, match="backend 'cuda'"):
        LayerNormGRU(3, 4, backend="cuda")(torch.randn(2, 1, 3))
