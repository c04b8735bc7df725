"""layer_mix: the reference against an explicit loop (ELC-BERT's eager form); the torch and Triton kernels against the
reference; LayerOutputs' buffer path against its list-based reference path, gradients of whole toy networks included.

CPU tests always run. Triton tests run on CUDA or with TRITON_INTERPRET=1 (fp32 only):
    TRITON_INTERPRET=1 python -m pytest -m triton tests/ops -q
GPU tests (bf16 tolerances, base-width shapes, memory) need CUDA.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from bertkit.ops.layer_mix import (  # noqa: E402
    LayerOutputs,
    default_impl,
    layer_mix,
    layer_mix_reference,
    torch_mix_backward,
    torch_mix_forward,
)
from bertkit.ops.triton import triton_importable  # noqa: E402

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
CUDA = torch.cuda.is_available()
RUN_TRITON = triton_importable() and (CUDA or INTERPRET)
TRITON_DEVICE = "cuda" if CUDA else "cpu"
needs_triton = pytest.mark.skipif(not RUN_TRITON, reason="needs triton with CUDA or TRITON_INTERPRET=1")
needs_gpu = pytest.mark.skipif(not (CUDA and triton_importable()), reason="needs CUDA and triton")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)


def _loop(outputs: list[torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
    weights = torch.softmax(logits.double(), dim=0)
    total = torch.zeros_like(outputs[0], dtype=torch.float64)
    for w, h in zip(weights, outputs, strict=False):
        total = total + w * h.double()
    return total


def close(got: torch.Tensor, want: torch.Tensor, *, rtol: float = 1e-5, atol_frac: float = 1e-6, what: str = ""):
    assert got.shape == want.shape and got.dtype == want.dtype, (what, got.shape, want.shape, got.dtype, want.dtype)
    atol = atol_frac * max(float(want.abs().max()) if want.numel() else 0.0, 1.0)
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


# ----------------------------------------------------------------------------------------------- reference


@pytest.mark.parametrize("n", [1, 2, 5])
def test_reference_equals_the_eager_loop_with_gradients(n: int):
    g = torch.Generator().manual_seed(n)
    outputs = [torch.randn(3, 7, 11, generator=g, requires_grad=True) for _ in range(n + 1)]
    logits = torch.randn(n, generator=g, requires_grad=True)
    mixed = layer_mix_reference(torch.stack(outputs), logits)
    expected = _loop(outputs[:n], logits)
    torch.testing.assert_close(mixed.double(), expected, atol=1e-6, rtol=1e-6)
    upstream = torch.randn(3, 7, 11, generator=g)
    got = torch.autograd.grad(mixed, [*outputs[:n], logits], upstream)
    want = torch.autograd.grad(expected, [*outputs[:n], logits], upstream.double())
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a.double(), b.double(), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------- functional implementations


def run_functional(impl: str, outputs: torch.Tensor, logits: torch.Tensor, upstream: torch.Tensor):
    """Mixed output and gradients (outputs, logits) of one implementation on fresh leaves."""
    o = outputs.detach().clone().requires_grad_()
    w = logits.detach().clone().requires_grad_()
    mixed = layer_mix(o, w, impl=impl) if impl != "reference" else layer_mix_reference(o, w)
    grad_o, grad_w = torch.autograd.grad(mixed, (o, w), upstream)
    return mixed.detach(), grad_o, grad_w


def check_functional(impl: str, layers: int, n: int, shape: tuple[int, ...], device: str = "cpu", *, rtol=1e-5):
    outputs = torch.randn(layers, *shape, device=device)
    logits = torch.randn(n, device=device) * 2
    upstream = torch.randn(shape, device=device)
    got = run_functional(impl, outputs, logits, upstream)
    want = run_functional("reference", outputs, logits, upstream)
    for name, a, b in zip(("mixed", "grad outputs", "grad logits"), got, want, strict=True):
        close(a, b, rtol=rtol, atol_frac=10 * rtol, what=f"{impl} {name}")
    assert torch.count_nonzero(got[1][n:]) == 0  # outputs past n get no gradient


ODD_SHAPES = [
    (1, 1, (1,)),
    (3, 3, (1, 1023)),
    (5, 2, (3, 1023)),
    (13, 12, (37, 65)),
    (2, 1, (4, 5, 6)),
    (40, 33, (3, 17)),
    (3, 2, (0, 8)),
]
ODD_IDS = ["1token-n1", "d1023-n3", "3x1023-n2", "L13-n12", "3d", "n33", "0tokens"]


@pytest.mark.parametrize(("layers", "n", "shape"), ODD_SHAPES, ids=ODD_IDS)
def test_torch_impl_matches_reference(layers, n, shape):
    check_functional("torch", layers, n, shape)


@pytest.mark.parametrize("impl", ["torch", pytest.param("triton", marks=[pytest.mark.triton, needs_triton])])
def test_non_contiguous_inputs(impl):
    device = TRITON_DEVICE if impl == "triton" else "cpu"
    wide = torch.randn(8, 9, 2 * 33, device=device)
    cases = [wide[:, :, ::2], wide[::2], wide.transpose(1, 2)]  # strided rows; every other layer; transposed S
    logits = torch.randn(6, device=device)[::2]
    for outputs in cases:
        upstream = torch.randn(outputs.shape[1:][::-1], device=device).T  # a non-contiguous gradient too
        assert not outputs.is_contiguous() and not logits.is_contiguous() and not upstream.is_contiguous()
        got = run_functional(impl, outputs, logits, upstream)
        want = run_functional("reference", outputs, logits, upstream)
        for a, b in zip(got, want, strict=True):
            close(a, b, what=f"{impl} {tuple(outputs.stride())}")


@pytest.mark.parametrize("impl", ["torch", "reference"])
def test_only_requested_gradients(impl):
    outputs = torch.randn(4, 3, 5, requires_grad=True)
    logits = torch.randn(3)
    mixed = layer_mix(outputs, logits, impl=impl)
    mixed.sum().backward()
    close(outputs.grad[:3], torch.softmax(logits, 0)[:, None, None].expand(3, 3, 5).contiguous())
    outputs = torch.randn(4, 3, 5)
    logits.requires_grad_()
    layer_mix(outputs, logits, impl=impl).square().sum().backward()
    assert logits.grad is not None and logits.grad.shape == (3,)


def test_half_precision_torch_kernels_accumulate_in_fp32():
    outputs = torch.randn(6, 4, 257).bfloat16()
    logits = torch.randn(5)
    upstream = torch.randn(4, 257).bfloat16()
    mixed, grad_o, grad_w = run_functional("torch", outputs, logits, upstream)
    ref, ref_o, ref_w = run_functional("reference", outputs, logits, upstream)
    assert mixed.dtype == grad_o.dtype == torch.bfloat16 and grad_w.dtype == torch.float32
    torch.testing.assert_close(mixed, ref, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(grad_o, ref_o, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(grad_w, ref_w, rtol=1e-3, atol=1e-3)


def launcher_contract(forward, backward, device: str, **kwargs):
    """Forward is Σ wᵢ hᵢ (w = softmax(logits)); backward writes rows ≥ accumulate_below, adds to the rows below,
    and returns the logits' gradient w ⊙ (dw − ⟨w, dw⟩) with dwᵢ = Σ g·hᵢ."""
    layers = torch.randn(5, 3000, device=device)
    logits = torch.randn(5, device=device)
    weights = torch.softmax(logits, 0)
    close(forward(layers, logits, **kwargs), weights @ layers, what="forward")
    grad = torch.randn(3000, device=device)
    dw = layers @ grad
    grad_logits = weights * (dw - (weights * dw).sum())
    grad_layers = torch.randn(5, 3000, device=device)
    before = grad_layers.clone()
    close(backward(grad, layers, logits, grad_layers, accumulate_below=2, **kwargs), grad_logits, what="grad logits")
    close(grad_layers[:2], before[:2] + weights[:2, None] * grad, what="accumulated rows")
    close(grad_layers[2:], weights[2:, None] * grad.expand(3, -1), what="written rows")
    assert backward(grad, None, logits, grad_layers, accumulate_below=5, **kwargs) is None
    close(grad_layers[:2], before[:2] + 2 * weights[:2, None] * grad, what="second accumulation")
    close(backward(grad, layers, logits, None, **kwargs), grad_logits, what="grad logits only")
    # rows of a wider buffer (a row stride larger than N), as LayerOutputs passes them; strided logits
    buffer = torch.randn(5, 4000, device=device)
    rows = buffer[:, :3000]
    strided = torch.stack([logits, logits], 1)[:, 0]
    close(forward(rows, strided, **kwargs), weights @ rows, what="strided rows")
    dw = rows @ grad
    close(backward(grad, rows, strided, None, **kwargs), weights * (dw - (weights * dw).sum()), what="strided")
    # bf16 logits: the gradient comes back in their dtype
    assert backward(grad, layers, logits.bfloat16(), None, **kwargs).dtype == torch.bfloat16


def test_torch_launchers_contract():
    launcher_contract(torch_mix_forward, torch_mix_backward, "cpu")


# ------------------------------------------------------------------------------------------------ dispatch


def test_default_impl(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert default_impl(torch.empty(2, 3)) == "torch"
    assert LayerOutputs(2, shape=(3,)).impl == "torch"
    if triton_importable():
        assert default_impl(torch.empty(2, 3, device="meta")) == "torch"
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        assert default_impl(torch.empty(2, 3)) == "triton"
        assert LayerOutputs(2, shape=(3,)).impl == "triton"


def test_dispatch_runs_the_chosen_impl(monkeypatch):
    module = importlib.import_module("bertkit.ops.layer_mix")
    calls = []
    for name in ("reference", "torch"):
        original = module._IMPLEMENTATIONS[name]
        monkeypatch.setitem(module._IMPLEMENTATIONS, name, lambda *a, _n=name, _f=original: calls.append(_n) or _f(*a))
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    outputs, logits = torch.randn(3, 4), torch.randn(2)
    a = layer_mix(outputs, logits)
    b = layer_mix(outputs, logits, impl="reference")
    assert calls == ["torch", "reference"]
    close(a, b)


def test_bad_inputs_raise_clearly():
    outputs, logits = torch.randn(3, 4, 5), torch.randn(2)
    with pytest.raises(ValueError, match="unknown impl"):
        layer_mix(outputs, logits, impl="cuda")
    with pytest.raises(ValueError, match="4 mixing logits but only 3 layer outputs"):
        layer_mix(outputs, torch.randn(4))
    with pytest.raises(ValueError, match="non-empty vector"):
        layer_mix(outputs, torch.randn(2, 1))
    with pytest.raises(ValueError, match="non-empty vector"):
        layer_mix(outputs, torch.randn(0))
    with pytest.raises(ValueError, match="floating point"):
        layer_mix(outputs, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="floating point"):
        layer_mix(outputs.long(), logits)
    with pytest.raises(ValueError, match="scalar"):
        layer_mix(torch.tensor(1.0), logits)
    with pytest.raises(ValueError, match="logits on meta"):
        layer_mix(outputs, logits.to("meta"))


def test_triton_impl_refuses_cpu_tensors_without_the_interpreter(monkeypatch):
    if not triton_importable():
        pytest.skip("needs triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        layer_mix(torch.randn(3, 4), torch.randn(2), impl="triton")
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        LayerOutputs(3, impl="triton").append(torch.randn(4))


def test_import_without_triton():
    """`bertkit.ops.layer_mix` and LayerOutputs work (torch path) when `import triton` fails."""
    code = (
        "import sys\n"
        "import torch\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'triton' or name.startswith('triton.'):\n"
        "            raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from bertkit.ops.layer_mix import LayerOutputs, layer_mix\n"
        "outs = LayerOutputs(2)\n"
        "outs.append(torch.ones(3)); outs.append(torch.zeros(3))\n"
        "mixed = layer_mix(torch.ones(2, 3), torch.zeros(1))\n"
        "print(outs.impl, float(outs.mix(torch.zeros(2)).sum()), float(mixed.sum()))\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["torch", "1.5", "3.0"]


# -------------------------------------------------------------------------------------------- LayerOutputs

BUFFER_IMPLS = ["torch", pytest.param("triton", marks=[pytest.mark.triton, needs_triton])]


def _device(impl: str) -> str:
    return TRITON_DEVICE if impl == "triton" else "cpu"


@pytest.mark.parametrize("impl", ["reference", *BUFFER_IMPLS])
def test_layer_outputs_mix_the_first_len_logits_entries(impl):
    device = _device(impl)
    outputs = LayerOutputs(capacity=3, impl=impl)
    hs = [torch.full((2, 4), float(i), device=device) for i in range(3)]
    for h in hs:
        outputs.append(h)
    assert len(outputs) == 3 and outputs.impl == impl
    zeros = torch.zeros(2, device=device)
    torch.testing.assert_close(outputs.mix(zeros), torch.full((2, 4), 0.5, device=device))
    torch.testing.assert_close(outputs.mix(torch.tensor([0.0, 0.0, 50.0], device=device)), hs[2])
    torch.testing.assert_close(outputs[1], hs[1])
    torch.testing.assert_close(outputs[-1], hs[2])
    with pytest.raises(ValueError, match="full"):
        outputs.append(hs[0])
    with pytest.raises(ValueError, match="4 mixing logits but only 3"):
        outputs.mix(torch.zeros(4, device=device))
    with pytest.raises(IndexError, match="out of range"):
        outputs[3]
    other = LayerOutputs(capacity=2, impl=impl)
    other.append(hs[0])
    with pytest.raises(ValueError, match="layer output 1"):
        other.append(torch.zeros(3, 4, device=device))


@pytest.mark.parametrize("impl", ["reference", "torch"])
def test_layer_outputs_bad_inputs(impl):
    with pytest.raises(ValueError, match="capacity"):
        LayerOutputs(0)
    with pytest.raises(ValueError, match="unknown impl"):
        LayerOutputs(2, impl="cuda")
    with pytest.raises(ValueError, match="with shape"):
        LayerOutputs(2, dtype=torch.float32)
    with pytest.raises(ValueError, match="floating point"):
        LayerOutputs(2, shape=(3,), dtype=torch.int64, impl=impl)
    outputs = LayerOutputs(3, shape=(2, 4), impl=impl)
    with pytest.raises(ValueError, match=r"layer output 0 is \(2, 4\) torch.float64"):
        outputs.append(torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="on meta"):
        outputs.append(torch.zeros(2, 4, device="meta"))
    with pytest.raises(ValueError, match="must be a tensor"):
        outputs.append([0.0] * 8)
    outputs.append(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="2 mixing logits but only 1"):
        outputs.mix(torch.zeros(2))
    with pytest.raises(ValueError, match="non-empty vector"):
        outputs.mix(torch.zeros(1, 1))
    with pytest.raises(ValueError, match="floating point"):
        outputs.mix(torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="logits are on meta"):
        outputs.mix(torch.zeros(1, device="meta"))


def test_layer_outputs_preallocated_from_shape():
    outputs = LayerOutputs(4, shape=(3, 5), dtype=torch.float64)
    buffer = outputs._buffer
    assert buffer.shape == (4, 3, 5) and buffer.dtype == torch.float64
    hs = [torch.randn(3, 5, dtype=torch.float64) for _ in range(3)]
    for h in hs:
        outputs.append(h)
    assert outputs._buffer is buffer and torch.equal(buffer[:3], torch.stack(hs))


def toy_network(impl: str, h0, weights, logits, final, *, device="cpu", reads=True):
    """ELC-style: layer n mixes the first n outputs, applies a nonlinear layer and appends; the last outputs are
    also read directly (out of order: output 0 last), and a final mix over all outputs feeds the loss."""
    outputs = LayerOutputs(len(weights) + 1, impl=impl)
    outputs.append(h0)
    for n, (w, lg) in enumerate(zip(weights, logits, strict=True), start=1):
        x = outputs.mix(lg)
        h = torch.tanh(x @ w) + x
        if reads and n >= 2:
            h = h + 0.5 * outputs[n - 2] * outputs[n - 1]  # reused outputs
        outputs.append(h)
    loss = (outputs.mix(final) ** 2).sum()
    if reads:
        loss = loss + (outputs[-1] * torch.arange(h0.shape[-1], device=device)).sum() + outputs[0].sin().sum()
    return loss


def toy_parameters(layers: int, tokens: int, width: int, device: str = "cpu", dtype=torch.float32):
    h0 = torch.randn(tokens, width, device=device, dtype=dtype, requires_grad=True)
    weights = [
        (torch.randn(width, width, device=device) / width**0.5).to(dtype).requires_grad_() for _ in range(layers)
    ]
    logits = [torch.randn(n, device=device, requires_grad=True) for n in range(1, layers + 1)]
    final = torch.randn(layers + 1, device=device, requires_grad=True)
    return h0, weights, logits, final


def network_grads(impl, params, **kwargs):
    h0, weights, logits, final = params
    loss = toy_network(impl, h0, weights, logits, final, **kwargs)
    leaves = [h0, *weights, *logits, final]
    return loss.detach(), torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("impl", BUFFER_IMPLS)
@pytest.mark.parametrize("reads", [True, False])
def test_network_gradients_equal_the_list_path(impl, reads):
    device = _device(impl)
    params = toy_parameters(5, 7, 33, device=device)
    loss, grads = network_grads(impl, params, device=device, reads=reads)
    ref_loss, ref_grads = network_grads("reference", params, device=device, reads=reads)
    close(loss, ref_loss, what="loss")
    names = ["h0"] + [f"W{i}" for i in range(5)] + [f"logits{n}" for n in range(1, 6)] + ["final logits"]
    for name, g, ref in zip(names, grads, ref_grads, strict=True):
        close(g, ref, rtol=1e-5, atol_frac=1e-5, what=name)


def test_network_outputs_without_grad_and_partial_grads():
    """Only the logits need gradients (frozen h0 and layers); then only some outputs require grad (h0 frozen)."""
    h0, weights, logits, final = toy_parameters(4, 5, 16)
    frozen = [w.detach() for w in weights]
    got = torch.autograd.grad(toy_network("torch", h0.detach(), frozen, logits, final), [*logits, final])
    want = torch.autograd.grad(toy_network("reference", h0.detach(), frozen, logits, final), [*logits, final])
    for a, b in zip(got, want, strict=True):
        close(a, b, what="logits only")
    got = torch.autograd.grad(toy_network("torch", h0.detach(), weights, logits, final), weights)
    want = torch.autograd.grad(toy_network("reference", h0.detach(), weights, logits, final), weights)
    for a, b in zip(got, want, strict=True):
        close(a, b, what="h0 frozen")


def test_gradients_gather_in_one_buffer_and_it_is_released():
    """Every append's backward hands h a row of one shared gradient buffer, dropped when the pass is done."""
    h0, weights, logits, final = toy_parameters(4, 6, 8)
    outputs = LayerOutputs(5)
    seen = []
    h = h0 * 1.0
    h.register_hook(seen.append)
    outputs.append(h)
    for w, lg in zip(weights, logits, strict=True):
        h = torch.tanh(outputs.mix(lg) @ w)
        h.register_hook(seen.append)
        outputs.append(h)
    outputs.mix(final).sum().backward()
    assert len(seen) == 5
    assert len({g.untyped_storage().data_ptr() for g in seen}) == 1  # rows of one buffer, not 5 tensors
    assert outputs._slots.grad is None
    # a leaf gets a copy: its .grad must not keep the whole gradient buffer alive
    leaf = torch.randn(6, 8, requires_grad=True)
    outputs = LayerOutputs(3)
    outputs.append(leaf)
    outputs.append(leaf.detach() * 2)
    outputs.mix(torch.zeros(2)).sum().backward()
    assert leaf.grad.untyped_storage().nbytes() == leaf.numel() * 4
    torch.testing.assert_close(leaf.grad, torch.full((6, 8), 0.5))


def test_no_stack_copies(monkeypatch):
    """The buffer path never stacks the outputs (forward or backward); the list path does."""
    params = toy_parameters(3, 4, 8)
    calls = []
    original = torch.stack
    monkeypatch.setattr(torch, "stack", lambda *a, **k: calls.append(1) or original(*a, **k))
    network_grads("torch", params)
    assert calls == []
    network_grads("reference", params)
    assert calls


@pytest.mark.parametrize("impl", ["torch", "reference"])
def test_no_grad_and_inference_mode(impl):
    h0, weights, logits, final = toy_parameters(3, 4, 8)
    want = toy_network("reference", h0, weights, logits, final).detach()
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            loss = toy_network(impl, h0, weights, logits, final)
        assert not loss.requires_grad
        close(loss, want, what=context.__name__)


def test_backward_twice_with_retain_graph_and_without():
    params = toy_parameters(3, 4, 8)
    h0, weights, logits, final = params
    loss = toy_network("torch", *params)
    loss.backward(retain_graph=True)
    first = [p.grad.clone() for p in (h0, *weights, *logits, final)]
    loss.backward()
    for p, g in zip((h0, *weights, *logits, final), first, strict=True):
        close(p.grad, 2 * g, what="second backward")
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_a_partial_backward_leaves_no_stale_gradients():
    """grad w.r.t. one logits vector only (append nodes pruned), then a full backward: still exact."""
    params = toy_parameters(3, 4, 8)
    h0, weights, logits, final = params
    loss = toy_network("torch", *params)
    torch.autograd.grad(loss, [final], retain_graph=True)
    got = torch.autograd.grad(loss, [h0, *weights, *logits, final])
    _, want = network_grads("reference", params)
    for a, b in zip(got, want, strict=True):
        close(a, b, atol_frac=1e-5, what="after a partial pass")


def test_torch_compile_leaves_layer_outputs_eager():
    """Under torch.compile the model graph-breaks around LayerOutputs (traced, its buffer writes lost gradients)."""
    params = toy_parameters(3, 4, 8)
    compiled = torch.compile(lambda *a: toy_network("torch", *a), backend="aot_eager")
    h0, weights, logits, final = params
    loss = compiled(*params)
    got = torch.autograd.grad(loss, [h0, *weights, *logits, final])
    ref_loss, want = network_grads("reference", params)
    close(loss.detach(), ref_loss, what="loss")
    for a, b in zip(got, want, strict=True):
        close(a, b, atol_frac=1e-5, what="compiled")


def test_appended_h_is_copied_and_mix_ignores_autocast():
    outputs = LayerOutputs(2)
    h = torch.ones(3, 4)
    outputs.append(h)
    h.zero_()  # the buffer holds a copy
    outputs.append(torch.zeros(3, 4))
    logits = torch.tensor([0.0, 0.0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = outputs.mix(logits)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, torch.full((3, 4), 0.5))


# -------------------------------------------------------------------------------------- Triton (fp32 here)


@pytest.mark.parametrize(("layers", "n", "shape"), ODD_SHAPES, ids=ODD_IDS)
@pytest.mark.triton
@needs_triton
def test_triton_impl_matches_reference(layers, n, shape):
    check_functional("triton", layers, n, shape, TRITON_DEVICE)


@pytest.mark.triton
@needs_triton
@pytest.mark.parametrize("block_size", [128, 1024])
def test_triton_launchers_contract(block_size):
    """Small blocks: several programs, N = 3000 not a multiple of the block (masked tails, partial sums)."""
    from bertkit.ops.triton.layer_mix import layer_mix_backward, layer_mix_forward

    launcher_contract(layer_mix_forward, layer_mix_backward, TRITON_DEVICE, block_size=block_size)


@pytest.mark.triton
@needs_triton
def test_triton_launchers_reject_bad_rows():
    from bertkit.ops.triton.layer_mix import layer_mix_backward, layer_mix_forward

    logits = torch.randn(3, device=TRITON_DEVICE)
    with pytest.raises(ValueError, match="contiguous rows"):
        layer_mix_forward(torch.randn(6, 3, device=TRITON_DEVICE).T, logits)
    with pytest.raises(ValueError, match="rows for 3 logits"):
        layer_mix_backward(torch.randn(6, device=TRITON_DEVICE), torch.randn(2, 6, device=TRITON_DEVICE), logits, None)
    with pytest.raises(ValueError, match="power of two"):
        layer_mix_forward(torch.randn(3, 6, device=TRITON_DEVICE), logits, block_size=100)


@pytest.mark.triton
@pytest.mark.skipif(not (RUN_TRITON and INTERPRET and not CUDA), reason="the default dispatch under the interpreter")
def test_interpreter_default_is_triton():
    outputs = LayerOutputs(3)
    outputs.append(torch.randn(4, 5))
    assert outputs.impl == "triton" and default_impl(torch.empty(1)) == "triton"


# --------------------------------------------------------------------------------------------- GPU only


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize(("layers", "n", "shape"), [(13, 12, (4096, 768)), (3, 1, (1, 1023)), (5, 5, (999, 65))])
def test_gpu_bf16_matches_reference(layers, n, shape):
    outputs = torch.randn(layers, *shape, device="cuda").bfloat16()
    logits = torch.randn(n, device="cuda")
    upstream = torch.randn(shape, device="cuda").bfloat16()
    mixed, grad_o, grad_w = run_functional("triton", outputs, logits, upstream)
    ref, ref_o, ref_w = run_functional("reference", outputs, logits, upstream)
    assert mixed.dtype == grad_o.dtype == torch.bfloat16
    torch.testing.assert_close(mixed, ref, rtol=1.6e-2, atol=1e-2)
    torch.testing.assert_close(grad_o, ref_o, rtol=1.6e-2, atol=1e-2)
    # logits: fp32 sums of bf16 products in a different order; relative to the largest entry
    assert float((grad_w - ref_w).abs().max()) <= 1e-3 * max(float(ref_w.abs().max()), 1.0)


@pytest.mark.gpu
@needs_gpu
def test_gpu_bf16_network_matches_the_list_path():
    params = toy_parameters(6, 2048, 256, device="cuda", dtype=torch.bfloat16)
    loss, grads = network_grads("triton", params, device="cuda")
    ref_loss, ref_grads = network_grads("reference", params, device="cuda")
    torch.testing.assert_close(loss.float(), ref_loss.float(), rtol=2e-2, atol=0)
    for g, ref in zip(grads, ref_grads, strict=True):
        err = float((g.float() - ref.float()).abs().max()) / max(float(ref.float().abs().max()), 1e-6)
        assert err < 3e-2


@pytest.mark.gpu
@needs_gpu
def test_gpu_memory_of_a_mixing_pass():
    """12 mixes + appends at base width: the extra memory is the buffer and one gradient buffer (+ the graph's own)."""
    layers, tokens, width = 12, 8192, 768
    slot = tokens * width * 2
    h0 = torch.randn(tokens, width, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    logits = [torch.zeros(n, device="cuda", requires_grad=True) for n in range(1, layers + 1)]
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    outputs = LayerOutputs(layers + 1)
    outputs.append(h0)
    for lg in logits:
        outputs.append(outputs.mix(lg) * 1.5)  # each layer's output: a new tensor, as a real layer makes
    outputs.mix(torch.zeros(layers + 1, device="cuda", requires_grad=True)).float().sum().backward()
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    # buffer + gradient buffer (13 rows each) + the layers' own outputs/grads in flight (a few rows) + slack
    assert extra < (2 * (layers + 1) + 8) * slot, extra / slot
    assert outputs._slots.grad is None
