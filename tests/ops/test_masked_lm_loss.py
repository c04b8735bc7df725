"""masked_lm_loss: the reference against F.cross_entropy, the chunked and Triton variants against the reference.

CPU tests always run. Triton tests run on CUDA or with TRITON_INTERPRET=1 (fp32 only):
    TRITON_INTERPRET=1 python -m pytest -m triton tests/ops -q
GPU tests (bf16/fp16 tolerances, BERT-base shape, peak memory) need CUDA.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from bertkit.ops import masked_lm_loss, masked_lm_loss_chunked, masked_lm_loss_reference  # noqa: E402
from bertkit.ops.masked_lm_loss import REFERENCE_MAX_LOGITS, default_impl  # noqa: E402
from bertkit.ops.triton import triton_importable  # noqa: E402

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
CUDA = torch.cuda.is_available()
RUN_TRITON = triton_importable() and (CUDA or INTERPRET)
TRITON_DEVICE = "cuda" if CUDA else "cpu"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)


def make_inputs(rows, vocab, width, *, bias=True, ignored=(), dtype=torch.float32, device="cpu", scale=0.05):
    hidden = torch.randn(rows, width, device=device).to(dtype).requires_grad_()
    weight = (torch.randn(vocab, width, device=device) * scale).to(dtype).requires_grad_()
    b = (torch.randn(vocab, device=device) * 0.5).to(dtype).requires_grad_() if bias else None
    labels = torch.randint(0, vocab, (rows,), device=device)
    for i in ignored:
        labels[i] = -100
    return hidden, weight, b, labels


def run(fn, hidden, weight, bias, labels, **kwargs):
    """Loss, predictions and gradients (hidden, weight, bias) of one implementation on fresh leaves."""
    leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in (hidden, weight, bias)]
    loss, predictions = fn(*leaves, labels, return_predictions=True, **kwargs)
    loss.backward()
    return loss.detach(), predictions, [t.grad if t is not None else None for t in leaves]


def assert_matches(got, want, *, rtol=1e-4, atol_frac=1e-5):
    loss, predictions, grads = got
    ref_loss, ref_predictions, ref_grads = want
    assert loss.dtype == torch.float32 and loss.dim() == 0
    torch.testing.assert_close(loss, ref_loss.float(), rtol=rtol, atol=1e-6)
    assert predictions.dtype == torch.int64
    assert torch.equal(predictions.cpu(), ref_predictions.cpu())
    for name, g, ref in zip(("hidden", "weight", "bias"), grads, ref_grads, strict=True):
        if ref is None:
            assert g is None, name
            continue
        assert g is not None and g.dtype == ref.dtype and g.shape == ref.shape, name
        atol = atol_frac * max(float(ref.abs().max()), 1e-12)
        torch.testing.assert_close(g.float(), ref.float(), rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}")


# ----------------------------------------------------------------------------------------------- reference


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_reference_is_cross_entropy_of_the_logits(smoothing):
    hidden, weight, bias, labels = make_inputs(20, 50, 16, ignored=(3, 7))
    logits = hidden @ weight.T + bias
    want = F.cross_entropy(logits, labels, ignore_index=-100, label_smoothing=smoothing)
    # the same thing written out: per-row lse − (1−ε)·target − ε·mean logit, mean over valid rows
    valid = labels != -100
    lse = torch.logsumexp(logits, dim=1)
    target = logits.gather(1, labels.clamp(min=0)[:, None]).squeeze(1)
    by_hand = (lse - (1 - smoothing) * target - smoothing * logits.mean(dim=1))[valid].mean()
    loss, predictions = masked_lm_loss_reference(
        hidden, weight, bias, labels, label_smoothing=smoothing, return_predictions=True
    )
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(loss, by_hand)
    assert torch.equal(predictions, logits.argmax(dim=1))


@pytest.mark.parametrize("impl", ["reference", "chunked"])
def test_all_ignored_gives_zero_loss_and_zero_grads(impl):
    hidden, weight, bias, labels = make_inputs(6, 40, 8, ignored=range(6))
    assert torch.isnan(F.cross_entropy(hidden @ weight.T + bias, labels))  # what we deliberately avoid
    loss, _, grads = run(masked_lm_loss, hidden, weight, bias, labels, impl=impl)
    assert float(loss) == 0.0
    for g in grads:
        assert g is not None and torch.count_nonzero(g) == 0


# ------------------------------------------------------------------------------------------------- chunked


@pytest.mark.parametrize("rows", [1, 50])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("chunk_size", [1, 77, 4096])
def test_chunked_matches_reference(rows, bias, smoothing, chunk_size):
    hidden, weight, b, labels = make_inputs(rows, 1000, 33, bias=bias, ignored=(0,) if rows > 1 else ())
    kwargs = {"label_smoothing": smoothing}
    got = run(masked_lm_loss_chunked, hidden, weight, b, labels, chunk_size=chunk_size, **kwargs)
    assert_matches(got, run(masked_lm_loss_reference, hidden, weight, b, labels, **kwargs))


def test_chunked_non_contiguous_and_bf16():
    wide = torch.randn(30, 64)
    hidden = wide[:, ::2]  # [30, 32], stride (64, 2)
    weight = (torch.randn(32, 500) * 0.05).T  # [500, 32], stride (1, 500)
    labels = torch.randint(0, 500, (60,))[::2]
    labels[4] = -100
    assert not hidden.is_contiguous() and not weight.is_contiguous() and not labels.is_contiguous()
    want = run(masked_lm_loss_reference, hidden, weight, None, labels)
    assert_matches(run(masked_lm_loss_chunked, hidden, weight, None, labels, chunk_size=64), want)
    # bf16 inputs: fp32 loss, bf16 gradients, close to the reference on the same bf16 values
    h16, w16 = hidden.bfloat16(), weight.bfloat16()
    loss, _, (gh, gw, _) = run(masked_lm_loss_chunked, h16, w16, None, labels, chunk_size=64)
    ref_loss, _, (rh, rw, _) = run(masked_lm_loss_reference, h16, w16, None, labels)
    assert loss.dtype == torch.float32 and gh.dtype == torch.bfloat16 and gw.dtype == torch.bfloat16
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(gh, rh, rtol=2e-2, atol=1e-2 * float(rh.abs().max()))
    torch.testing.assert_close(gw, rw, rtol=2e-2, atol=1e-2 * float(rw.abs().max()))


@pytest.mark.parametrize("impl", ["reference", "chunked"])
def test_predictions_take_the_lowest_index_on_ties(impl):
    hidden, weight, bias, labels = make_inputs(4, 300, 8, bias=False)
    with torch.no_grad():
        weight[250] = hidden[0] * 10  # row 0 prefers 250 …
        weight[5] = weight[250]  # … tied with 5, in an earlier chunk
        weight[251] = hidden[1] * 10
        weight[299] = weight[251]  # row 1: tie inside one chunk
    _, predictions = masked_lm_loss(hidden, weight, None, labels, return_predictions=True, impl=impl)
    assert predictions[:2].tolist() == [5, 251]


def test_empty_batch():
    hidden, weight, bias, labels = make_inputs(0, 30, 8)
    for impl in ("reference", "chunked"):
        loss, predictions, grads = run(masked_lm_loss, hidden, weight, bias, labels, impl=impl)
        assert float(loss) == 0.0 and predictions.shape == (0,)
        assert all(torch.count_nonzero(g) == 0 for g in grads)


# ------------------------------------------------------------------------------------------------ dispatch


def test_default_impl_on_cpu(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    small = torch.empty(10, 8, device="meta"), torch.empty(100, 8, device="meta")
    big = torch.empty(REFERENCE_MAX_LOGITS // 1000 + 1, 8, device="meta"), torch.empty(1000, 8, device="meta")
    assert default_impl(*small) == "reference"
    assert default_impl(*big) == "chunked"
    if triton_importable():
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        assert default_impl(*small) == "triton"


def test_dispatch_runs_the_chosen_impl(monkeypatch):
    module = importlib.import_module("bertkit.ops.masked_lm_loss")  # the attribute is the function

    calls = []
    for name in ("reference", "chunked"):
        original = module._IMPLEMENTATIONS[name]
        monkeypatch.setitem(
            module._IMPLEMENTATIONS, name, lambda *a, _n=name, _f=original, **k: calls.append(_n) or _f(*a, **k)
        )
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    hidden, weight, bias, labels = make_inputs(5, 20, 4)
    a = masked_lm_loss(hidden, weight, bias, labels)
    b = masked_lm_loss(hidden, weight, bias, labels, impl="chunked")
    assert calls == ["reference", "chunked"]
    torch.testing.assert_close(a, b)
    assert masked_lm_loss(hidden, weight, bias, labels, return_predictions=True)[1].shape == (5,)


def test_dispatch_rejects_bad_input():
    hidden, weight, bias, labels = make_inputs(5, 20, 4)
    with pytest.raises(ValueError, match="unknown impl"):
        masked_lm_loss(hidden, weight, bias, labels, impl="cuda")
    with pytest.raises(ValueError, match="width"):
        masked_lm_loss(hidden[:, :3], weight, bias, labels)
    with pytest.raises(ValueError, match="bias"):
        masked_lm_loss(hidden, weight, bias[:5], labels)
    with pytest.raises(ValueError, match="labels"):
        masked_lm_loss(hidden, weight, bias, labels[:4])
    with pytest.raises(ValueError, match="integers"):
        masked_lm_loss(hidden, weight, bias, labels.float())
    with pytest.raises(ValueError, match="dtype"):
        masked_lm_loss(hidden.double(), weight, bias, labels)
    with pytest.raises(ValueError, match="label_smoothing"):
        masked_lm_loss(hidden, weight, bias, labels, label_smoothing=1.5)
    bad = labels.clone()
    bad[2] = 20
    with pytest.raises(ValueError, match=r"labels\[2\] = 20"):
        masked_lm_loss(hidden, weight, bias, bad, impl="chunked")


def test_autocast_casts_inputs_and_returns_param_dtype_grads():
    hidden, weight, bias, labels = make_inputs(12, 64, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = masked_lm_loss(hidden, weight, bias, labels, impl="chunked")
    loss.backward()
    assert loss.dtype == torch.float32 and weight.grad.dtype == torch.float32 and hidden.grad.dtype == torch.float32
    want = masked_lm_loss_reference(hidden.bfloat16(), weight.bfloat16(), bias.bfloat16(), labels)
    torch.testing.assert_close(loss, want)


def test_import_without_triton(tmp_path: Path):
    """`import bertkit.ops` and the CPU path work when `import triton` fails."""
    code = (
        "import sys\n"
        "import torch  # probes for triton with find_spec while importing: block after it\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'triton' or name.startswith('triton.'):\n"
        "            raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import bertkit.ops\n"
        "from bertkit.ops.triton import triton_importable\n"
        "from bertkit.ops.masked_lm_loss import default_impl\n"
        "h, w, y = torch.randn(3, 4), torch.randn(10, 4), torch.tensor([1, 2, -100])\n"
        "assert not triton_importable() and default_impl(h, w) == 'reference'\n"
        "print(float(bertkit.ops.masked_lm_loss(h, w, None, y)) > 0, 'triton' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False"]


# -------------------------------------------------------------------------------------- Triton (fp32 here)


@pytest.mark.parametrize(
    ("rows", "vocab", "width"),
    [(1, 1000, 1023), (70, 1000, 1023), (33, 4099, 64)],
    ids=["M1", "M70", "V4099"],
)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.triton
@pytest.mark.skipif(not RUN_TRITON, reason="needs triton with CUDA or TRITON_INTERPRET=1")
def test_triton_matches_reference(rows, vocab, width, bias, smoothing):
    ignored = tuple(range(0, rows, 4)) if rows > 1 else ()
    inputs = make_inputs(rows, vocab, width, bias=bias, ignored=ignored, device=TRITON_DEVICE)
    kwargs = {"label_smoothing": smoothing}
    got = run(masked_lm_loss, *inputs, impl="triton", **kwargs)
    assert_matches(got, run(masked_lm_loss_reference, *inputs, **kwargs), rtol=2e-4, atol_frac=2e-5)


@pytest.mark.triton
@pytest.mark.skipif(not RUN_TRITON, reason="needs triton with CUDA or TRITON_INTERPRET=1")
def test_triton_all_ignored_and_empty():
    inputs = make_inputs(20, 300, 40, ignored=range(20), device=TRITON_DEVICE)
    loss, _, grads = run(masked_lm_loss, *inputs, impl="triton", label_smoothing=0.1)
    assert float(loss) == 0.0
    assert all(torch.count_nonzero(g) == 0 for g in grads)
    loss, predictions, grads = run(masked_lm_loss, *make_inputs(0, 300, 40, device=TRITON_DEVICE), impl="triton")
    assert float(loss) == 0.0 and predictions.shape == (0,)
    assert all(g is not None and torch.count_nonzero(g) == 0 for g in grads)


@pytest.mark.triton
@pytest.mark.skipif(not RUN_TRITON, reason="needs triton with CUDA or TRITON_INTERPRET=1")
def test_triton_non_contiguous_inputs_and_int32_labels():
    wide = torch.randn(40, 2 * 96, device=TRITON_DEVICE)
    hidden = wide[:, 1::2]  # [40, 96], stride (192, 2), storage offset 1
    weight = (torch.randn(96, 700, device=TRITON_DEVICE) * 0.05).T  # [700, 96], stride (1, 700)
    bias = torch.randn(2 * 700, device=TRITON_DEVICE)[::2]
    labels = torch.randint(0, 700, (80,), device=TRITON_DEVICE, dtype=torch.int32)[::2]
    labels[3] = -100
    assert not any(t.is_contiguous() for t in (hidden, weight, bias, labels))
    got = run(masked_lm_loss, hidden, weight, bias, labels, impl="triton", label_smoothing=0.1)
    want = run(masked_lm_loss_reference, hidden, weight, bias, labels, label_smoothing=0.1)
    assert_matches(got, want, rtol=2e-4, atol_frac=2e-5)


@pytest.mark.triton
@pytest.mark.skipif(not RUN_TRITON, reason="needs triton with CUDA or TRITON_INTERPRET=1")
def test_triton_vocabulary_splits_agree():
    """The split-vocabulary path (used on GPU for small M) merges statistics and gradients exactly."""
    from bertkit.ops.triton.masked_lm_loss import masked_lm_loss_backward, masked_lm_loss_forward

    hidden, weight, bias, labels = make_inputs(25, 1000, 48, ignored=(2, 9), device=TRITON_DEVICE)
    with torch.no_grad():
        # Small integers: row 0's logits at columns 10 and 900 are exact in fp32 whatever the summation order.
        hidden[0] = torch.arange(48, device=TRITON_DEVICE).remainder(5).float() - 2
        weight[900] = hidden[0] * 10  # row 0's maximum in the last split …
        weight[10] = weight[900]  # … tied with the first: the lower index must win
        bias[10] = bias[900]
    kwargs = {"ignore_index": -100, "label_smoothing": 0.1}
    ref_loss, ref_pred = masked_lm_loss_reference(hidden, weight, bias, labels, return_predictions=True, **kwargs)
    ref_grads = torch.autograd.grad(ref_loss, (hidden, weight, bias))
    grad_out = torch.tensor(2.0, device=TRITON_DEVICE)
    for splits in (1, 3):
        loss, lse, predictions, n_valid = masked_lm_loss_forward(hidden, weight, bias, labels, splits=splits, **kwargs)
        torch.testing.assert_close(loss, ref_loss.detach(), rtol=2e-4, atol=1e-6)
        # Columns 10 and 900 tie on every row, exactly only on row 0: elsewhere the two columns may round differently
        # (multithreaded BLAS in the reference, tile order in the kernel), so either of them is a right answer there.
        tied = (ref_pred == 10) | (ref_pred == 900)
        assert torch.equal(predictions[~tied], ref_pred[~tied])
        assert bool(((predictions[tied] == 10) | (predictions[tied] == 900)).all())
        assert int(ref_pred[0]) == 10 and int(predictions[0]) == 10
        grads = masked_lm_loss_backward(grad_out, hidden, weight, bias, labels, lse, n_valid, splits=splits, **kwargs)
        for g, ref in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(g, 2 * ref, rtol=2e-4, atol=2e-5 * float(ref.abs().max()))


@pytest.mark.parametrize("config", ["half", "tf32", "fp32"])
@pytest.mark.triton
@pytest.mark.skipif(not (RUN_TRITON and INTERPRET), reason="the GPU tiles under the interpreter")
def test_triton_gpu_tile_configs_are_exact(config, monkeypatch):
    """The kernels at each GPU tile configuration of `launch_config` (the ones scripts/aot_kernels.py compiles for
    sm_80 / sm_90), run by the interpreter in fp32 with vocabulary splits: ragged tiles in every dimension."""
    from bertkit.ops.triton import masked_lm_loss as mod

    dtype = {"half": torch.bfloat16, "tf32": torch.float32, "fp32": torch.float32}[config]
    blocks = mod.launch_config(dtype, 70, gpu=True, tf32=config == "tf32")
    monkeypatch.setattr(mod, "_blocks", lambda hidden: blocks)
    inputs = make_inputs(70, 333, 77, ignored=(0, 5), device=TRITON_DEVICE)  # 70, 333, 77: no tile divides them
    kwargs = {"label_smoothing": 0.1}
    got = run(masked_lm_loss, *inputs, impl="triton", **kwargs)
    assert_matches(got, run(masked_lm_loss_reference, *inputs, **kwargs), rtol=2e-4, atol_frac=2e-5)
    loss, lse, predictions, n_valid = mod.masked_lm_loss_forward(*inputs, splits=3, **kwargs)
    torch.testing.assert_close(loss, got[0], rtol=2e-4, atol=1e-6)


@pytest.mark.triton
@pytest.mark.skipif(not RUN_TRITON, reason="needs triton with CUDA or TRITON_INTERPRET=1")
def test_triton_only_requested_grads():
    hidden, weight, bias, labels = make_inputs(9, 300, 32, device=TRITON_DEVICE)
    weight.requires_grad_(False)
    bias.requires_grad_(False)
    loss = masked_lm_loss(hidden, weight, bias, labels, impl="triton")
    loss.backward()
    assert weight.grad is None and bias.grad is None
    ref = masked_lm_loss_reference(hidden, weight, bias, labels)
    (ref_grad,) = torch.autograd.grad(ref, hidden)
    torch.testing.assert_close(hidden.grad, ref_grad, rtol=2e-4, atol=2e-5 * float(ref_grad.abs().max()))


@pytest.mark.triton
@pytest.mark.skipif(not (RUN_TRITON and INTERPRET and not CUDA), reason="the default dispatch under the interpreter")
def test_interpreter_default_is_triton():
    hidden, weight, bias, labels = make_inputs(3, 200, 16)
    assert default_impl(hidden, weight) == "triton"
    torch.testing.assert_close(
        masked_lm_loss(hidden, weight, bias, labels), masked_lm_loss_reference(hidden, weight, bias, labels)
    )


# --------------------------------------------------------------------------------------------- GPU only


@pytest.mark.parametrize(("dtype", "rtol"), [(torch.bfloat16, 2e-2), (torch.float16, 5e-3)])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.gpu
@pytest.mark.skipif(not (CUDA and triton_importable()), reason="needs CUDA and triton")
def test_gpu_half_precision_matches_reference(dtype, rtol, smoothing):
    inputs = make_inputs(999, 30522, 768, ignored=range(0, 999, 7), dtype=dtype, device="cuda")
    loss, predictions, grads = run(masked_lm_loss, *inputs, impl="triton", label_smoothing=smoothing)
    ref_loss, ref_predictions, ref_grads = run(masked_lm_loss_reference, *inputs, label_smoothing=smoothing)
    torch.testing.assert_close(loss, ref_loss, rtol=rtol, atol=1e-3)
    # near-ties may flip under low-precision dots: require almost all predictions equal
    assert float((predictions == ref_predictions).float().mean()) > 0.99
    for g, ref in zip(grads, ref_grads, strict=True):
        assert g.dtype == dtype
        err = float((g.float() - ref.float()).abs().max()) / float(ref.float().abs().max())
        assert err < 3e-2


@pytest.mark.gpu
@pytest.mark.skipif(not (CUDA and triton_importable()), reason="needs CUDA and triton")
def test_gpu_bert_base_shape_memory_has_no_logits_buffer():
    rows, vocab, width = 4915, 30522, 768
    hidden, weight, bias, labels = make_inputs(rows, vocab, width, dtype=torch.bfloat16, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    loss = masked_lm_loss(hidden, weight, bias, labels, impl="triton")
    loss.backward()
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    logits_bf16 = rows * vocab * 2
    # allowed: fp32 dW scratch + bf16 dW + bias grads + ≤ 4 fp32 dH partials + bf16 dH + O(M) statistics
    budget = vocab * width * (4 + 2) + vocab * 8 + rows * width * (4 * 4 + 2) + rows * 64 * 16 + (8 << 20)
    assert extra < budget < logits_bf16, (extra, budget, logits_bf16)
    ref = masked_lm_loss_reference(hidden, weight, bias, labels)
    torch.testing.assert_close(loss, ref, rtol=2e-2, atol=1e-3)


@pytest.mark.skipif(not triton_importable(), reason="needs triton")
def test_triton_refuses_tensors_beyond_32_bit_offsets():
    from bertkit.ops.triton.masked_lm_loss import _check_offsets

    weight = torch.empty(30522, 768, device="meta")
    _check_offsets(torch.empty(4915, 768, device="meta"), weight)  # BERT-base: fine
    with pytest.raises(ValueError, match="32-bit"):
        _check_offsets(torch.empty_strided((3, 768), (2**30, 1), device="meta"), weight)
    with pytest.raises(ValueError, match="32-bit"):
        _check_offsets(torch.empty(700_000, 768, device="meta"), weight)  # 4 dH splits would overflow
