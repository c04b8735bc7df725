"""The GPU code paths exercised on the CPU: every architecture's whole training step (the shared trainer: masking,
forward, loss, backward, clipping, AdamW, schedule) under bf16 autocast and under torch.compile (inductor, bf16
autocast: the CUDA recipe), for a few steps, finite and within tolerance of fp32 eager; the same for ``encode`` (each
pretraining model's ``encode`` and the sentence encoder of ``bertkit encode``). What breaks here (a dtype mismatch
under autocast, a graph break that fails, an op without a bf16 kernel) would break on CUDA too."""

from __future__ import annotations

import json
import math
import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bertkit._core")

from conftest import random_docs, tiny_train_config, write_fixture_dataset  # noqa: E402

pytest_plugins = ["nextlevel_fixtures"]  # nl_world: an embedding store for NextLevel

from bertkit.models import build_model  # noqa: E402
from bertkit.models.elcbert import VARIANTS  # noqa: E402
from bertkit.train.trainer import train  # noqa: E402

HAVE_CXX = shutil.which("c++") is not None or shutil.which("g++") is not None
needs_cxx = pytest.mark.skipif(not HAVE_CXX, reason="inductor on CPU needs a C++ compiler")

# (arch, model overrides): every architecture, every ELC-BERT variant.
ARCHS = [
    ("bert", {}),
    ("narrowbert", {}),
    *[("elc-bert", {"variant": v}) for v in VARIANTS],
    ("ltg-bert", {}),
    ("nextlevel", {}),
]
IDS = [a if not kw else f"{a}-{kw['variant']}" for a, kw in ARCHS]
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
STEPS = 3
# bf16 keeps 8 mantissa bits: a relative error of 2^-8 per rounding, a few percent over a tiny model's step.
BF16_REL = 3e-2


@pytest.fixture(scope="module")
def tokens_dataset(tmp_path_factory):
    return write_fixture_dataset(tmp_path_factory.mktemp("gpu-paths") / "ds", random_docs(200, seed=3))


def _data(arch, tokens_dataset, nl_world):
    return nl_world[2] if arch == "nextlevel" else tokens_dataset


def _run(arch, model_kw, data, out, **kw) -> list[dict]:
    shape = dict(seq_len=16, batch_size=4) if arch == "nextlevel" else dict(seq_len=32, batch_size=8)
    cfg = tiny_train_config(
        data,
        out,
        arch=arch,
        max_steps=STEPS,
        lr=1e-3,
        warmup=0,
        eval_every=0,
        checkpoint_every=0,
        log_every=1,
        model={**NO_DROPOUT, **model_kw},
        **shape,
        **kw,
    )
    summary = train(cfg)
    assert summary.step == STEPS and summary.skipped_steps == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r.get("kind") == "train"]
    assert [r["step"] for r in steps] == list(range(1, STEPS + 1))
    for r in steps:
        assert math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]), r
    return steps


def _close(ours: list[dict], reference: list[dict], rel: float) -> None:
    for a, b in zip(ours, reference, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=rel), (a, b)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=5 * rel, abs=1e-3), (a, b)


@pytest.fixture(scope="module")
def fp32_runs(tokens_dataset, nl_world, tmp_path_factory):
    """fp32 eager: the reference of each architecture (computed once per module)."""
    cache: dict[str, list[dict]] = {}

    def get(arch, model_kw, name):
        if name not in cache:
            out = tmp_path_factory.mktemp("fp32") / name
            cache[name] = _run(arch, model_kw, _data(arch, tokens_dataset, nl_world), out, precision="fp32")
        return cache[name]

    return get


@pytest.mark.parametrize(("arch", "model_kw"), ARCHS, ids=IDS)
def test_bf16_autocast_training_step(arch, model_kw, tokens_dataset, nl_world, fp32_runs, tmp_path):
    name = IDS[ARCHS.index((arch, model_kw))]
    reference = fp32_runs(arch, model_kw, name)
    bf16 = _run(arch, model_kw, _data(arch, tokens_dataset, nl_world), tmp_path / "bf16", precision="bf16")
    _close(bf16, reference, BF16_REL)
    assert bf16[-1]["loss"] != reference[-1]["loss"]  # bf16 really ran: its rounding shows


@pytest.mark.slow
@needs_cxx
@pytest.mark.parametrize(("arch", "model_kw"), ARCHS, ids=IDS)
def test_compiled_bf16_training_step(arch, model_kw, tokens_dataset, nl_world, fp32_runs, tmp_path):
    """torch.compile (inductor on CPU) + bf16 autocast, the CUDA recipe: a compile failure or graph error fails."""
    torch._dynamo.reset()
    name = IDS[ARCHS.index((arch, model_kw))]
    reference = fp32_runs(arch, model_kw, name)
    compiled = _run(
        arch, model_kw, _data(arch, tokens_dataset, nl_world), tmp_path / "c", precision="bf16", compile=True
    )
    _close(compiled, reference, BF16_REL)


# ------------------------------------------------------------------------------------------------ encode


ENCODE_ARCHS = [(a, kw) for a, kw in ARCHS if a != "nextlevel"]  # NextLevel's encode is the sentence encoder's


def _encode_inputs():
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, 64, (3, 24), generator=g)
    attention_mask = torch.ones(3, 24, dtype=torch.long)
    attention_mask[1, 17:] = 0  # padding
    attention_mask[2, 9:] = 0
    return input_ids, attention_mask, torch.zeros_like(input_ids)


def _model(arch, model_kw):
    torch.manual_seed(0)
    return build_model(arch, "tiny", vocab_size=64, **NO_DROPOUT, **model_kw).eval()


def _rel_error(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    keep = mask.bool()
    return float((a.float() - b.float())[keep].norm() / b.float()[keep].norm())


@pytest.mark.parametrize(("arch", "model_kw"), ENCODE_ARCHS, ids=[i for i in IDS if i != "nextlevel"])
def test_encode_under_bf16_autocast(arch, model_kw):
    model = _model(arch, model_kw)
    ids, mask, types = _encode_inputs()
    with torch.no_grad():
        reference = model.encode(ids, mask, types)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ours = model.encode(ids, mask, types)
    assert torch.isfinite(ours).all()
    assert _rel_error(ours, reference, mask) < BF16_REL


@pytest.mark.slow
@needs_cxx
@pytest.mark.parametrize(("arch", "model_kw"), ENCODE_ARCHS, ids=[i for i in IDS if i != "nextlevel"])
def test_encode_compiled(arch, model_kw):
    torch._dynamo.reset()
    model = _model(arch, model_kw)
    ids, mask, types = _encode_inputs()
    compiled = torch.compile(model.encode)
    with torch.no_grad():
        reference = model.encode(ids, mask, types)
        ours = compiled(ids, mask, types)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ours_bf16 = compiled(ids, mask, types)
    assert _rel_error(ours, reference, mask) < 1e-4
    assert torch.isfinite(ours_bf16).all() and _rel_error(ours_bf16, reference, mask) < BF16_REL


def test_sentence_encoder_bf16(nl_world):
    from nextlevel_fixtures import texts

    from bertkit.encode.encoder import load_encoder

    sample = texts(6, seed=5)
    reference = load_encoder(str(nl_world[0]), device="cpu", precision="fp32").encode_texts(sample)
    ours = load_encoder(str(nl_world[0]), device="cpu", precision="bf16").encode_texts(sample)
    assert ours.dtype == reference.dtype and (ours == ours).all()
    error = float(((ours - reference) ** 2).sum() ** 0.5 / (reference**2).sum() ** 0.5)
    assert 0 < error < BF16_REL


@pytest.mark.slow
@needs_cxx
def test_sentence_encoder_compiled_bf16(nl_world):
    from nextlevel_fixtures import texts

    from bertkit.encode.encoder import load_encoder

    torch._dynamo.reset()
    sample = texts(6, seed=5)
    reference = load_encoder(str(nl_world[0]), device="cpu", precision="fp32").encode_texts(sample)
    ours = load_encoder(str(nl_world[0]), device="cpu", precision="bf16", compile=True).encode_texts(sample)
    error = float(((ours - reference) ** 2).sum() ** 0.5 / (reference**2).sum() ** 0.5)
    assert error < BF16_REL
