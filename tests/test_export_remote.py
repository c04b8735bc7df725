"""`bertkit export hf` of narrowbert, ltg-bert and every elc-bert variant: a tiny trained run, exported, loaded by
`transformers` in a fresh process without bertkit importable (AutoModel, AutoModelForMaskedLM,
AutoModelForSequenceClassification, AutoModelForTokenClassification with trust_remote_code=True, and
pipeline("fill-mask")), gives bertkit's outputs within 1e-5 in fp32; `--init-from` the export rebuilds the model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("bertkit._core")

from conftest import random_docs, tiny_train_config, write_fixture_dataset  # noqa: E402
from helpers import without_bertkit  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import bertkit  # noqa: E402
from bertkit.export import export_run  # noqa: E402
from bertkit.export.run import resolve  # noqa: E402
from bertkit.models import get_architecture  # noqa: E402
from bertkit.train.trainer import train  # noqa: E402

CASES = [
    ("narrowbert", {}),
    ("narrowbert", {"variant": "context-first"}),
    ("ltg-bert", {}),
    ("elc-bert", {"variant": "base"}),
    ("elc-bert", {"variant": "zero"}),
    ("elc-bert", {"variant": "normalized"}),
    ("elc-bert", {"variant": "weighted_output"}),
]
IDS = [f"{arch}-{model.get('variant', 'default')}" for arch, model in CASES]
ATOL = 1e-5

# Runs in a fresh interpreter in which bertkit cannot be imported: only torch + transformers.
LOADER = textwrap.dedent(
    """
    import json, sys
    import torch
    import transformers
    from safetensors.torch import load_file, save_file

    out, inputs, result = sys.argv[1:4]
    batch = load_file(inputs)
    kw = dict(trust_remote_code=True)
    saved = {}
    with torch.no_grad():
        base = transformers.AutoModel.from_pretrained(out, **kw).eval()
        saved["hidden"] = base(**batch).last_hidden_state
        mlm = transformers.AutoModelForMaskedLM.from_pretrained(out, **kw).eval()
        saved["logits"] = mlm(**batch).logits
        seq = transformers.AutoModelForSequenceClassification.from_pretrained(out, num_labels=3, **kw).eval()
        saved["seq_logits"] = seq(**batch).logits
        tok = transformers.AutoModelForTokenClassification.from_pretrained(out, num_labels=4, **kw).eval()
        saved["tok_logits"] = tok(**batch).logits
    pretrained = set(load_file(out + "/model.safetensors"))
    for prefix, model in (("seq.", seq), ("tok.", tok)):
        for key, value in model.state_dict().items():
            if key not in pretrained:
                saved[prefix + key] = value.contiguous()
    fill = transformers.pipeline("fill-mask", model=out, trust_remote_code=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out, trust_remote_code=True)
    text = "the cat " + tokenizer.mask_token + " on the mat"
    enc = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        saved["fill_logits"] = mlm(**enc).logits
    saved["fill_ids"] = enc["input_ids"]
    save_file({k: v.contiguous() for k, v in saved.items()}, result)
    info = {
        "fill": fill(text)[0],
        "modules": sorted(m for m in sys.modules if m.split(".")[0] == "bertkit"),
        "base": type(base).__name__,
        "mlm": type(mlm).__name__,
    }
    print(json.dumps(info))
    """
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote")
    return write_fixture_dataset(root / "ds", random_docs(60, seed=3), docs_per_shard=30)


def train_run(dataset: Path, out: Path, arch: str, model: dict) -> Path:
    config = tiny_train_config(
        dataset, out, arch=arch, model=model, batch_size=8, max_steps=2, lr=5e-3, warmup=1, eval_every=0,
        checkpoint_every=2, log_every=1,
    )  # fmt: skip
    train(config)
    return out


def batch(vocab_size: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab_size, (3, 14), generator=g)
    ids[:, 0], ids[:, -1] = 2, 3
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0  # padding in one row
    ids[1, 10:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def load_in_transformers(out: Path, inputs: dict[str, torch.Tensor], work: Path) -> tuple[dict, dict]:
    save_file(inputs, str(work / "inputs.safetensors"))
    script = work / "load.py"
    script.write_text(LOADER)
    env = without_bertkit(work)
    env["HF_MODULES_CACHE"] = str(work / "modules")
    proc = subprocess.run(
        [sys.executable, str(script), str(out), str(work / "inputs.safetensors"), str(work / "result.safetensors")],
        capture_output=True, text=True, timeout=300, env=env, cwd=work,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return load_file(str(work / "result.safetensors")), json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "model"), CASES, ids=IDS)
def test_export_loads_in_transformers_with_equal_outputs(dataset, tmp_path, arch, model):
    run = train_run(dataset, tmp_path / "run", arch, model)
    result = export_run(run, tmp_path / "hf")
    out = result.out
    assert result.arch == arch and result.step == 2
    modeling = {"narrowbert": "modeling_narrowbert.py"}.get(arch, "modeling_ltgbert.py")
    for name in ("config.json", "model.safetensors", modeling, "tokenizer.json", "vocab.txt", "bertkit_export.json"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert set(config["auto_map"]) == {
        "AutoConfig",
        "AutoModel",
        "AutoModelForMaskedLM",
        "AutoModelForSequenceClassification",
        "AutoModelForTokenClassification",
    }
    ours = bertkit.load_run(run)
    assert not ours.training
    inputs = batch(ours.config.vocab_size)
    got, info = load_in_transformers(out, inputs, tmp_path)
    assert info["modules"] == [], "the modeling file must not need bertkit"
    keep = inputs["attention_mask"].bool()  # padded positions are not compared (their states are arbitrary)
    with torch.no_grad():
        logits = ours.mlm_logits(**inputs)
        hidden = ours.encode(**inputs)
    assert logits.shape == got["logits"].shape == (3, 14, ours.config.vocab_size)
    torch.testing.assert_close(got["logits"][keep], logits[keep], atol=ATOL, rtol=0)
    torch.testing.assert_close(got["hidden"][keep], hidden[keep], atol=ATOL, rtol=0)

    # The fine-tuning heads: bertkit's classifiers with the encoder of the run and the heads transformers initialised
    entry = get_architecture(arch)
    for prefix, cls, key in (("seq.", entry.sequence_classification_class, "seq_logits"),
                             ("tok.", entry.token_classification_class, "tok_logits")):  # fmt: skip
        head = {k.removeprefix(prefix): v for k, v in got.items() if k.startswith(prefix)}
        assert head, f"{prefix} no freshly initialised head"
        clf = cls(ours.config, num_labels=3 if prefix == "seq." else 4)
        clf.load_pretrained_encoder(ours.model)
        missing, unexpected = clf.load_state_dict(head, strict=False)
        assert unexpected == []
        clf.eval()
        with torch.no_grad():
            if prefix == "seq.":
                expected = clf(**inputs).logits
                torch.testing.assert_close(got[key], expected, atol=ATOL, rtol=0)
            else:
                flat = torch.nonzero(keep.flatten()).flatten()
                expected = clf(**inputs, positions=flat).logits
                torch.testing.assert_close(got[key].flatten(0, 1)[flat], expected, atol=ATOL, rtol=0)

    # pipeline("fill-mask") runs on the exported tokenizer; its logits are bertkit's for the same ids
    assert info["fill"]["token_str"] and 0 < info["fill"]["score"] <= 1
    with torch.no_grad():
        torch.testing.assert_close(got["fill_logits"], ours.mlm_logits(got["fill_ids"]), atol=ATOL, rtol=0)

    # --init-from the export: the same model again (round trip)
    back = resolve(entry.importer)(out, arch).eval()
    assert back.config == ours.config
    with torch.no_grad():
        torch.testing.assert_close(back.mlm_logits(**inputs).view(3, 14, -1), logits, atol=0, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "model"), [CASES[0], CASES[2], CASES[6]], ids=[IDS[0], IDS[2], IDS[6]])
def test_train_init_from_an_export_starts_from_its_weights(dataset, tmp_path, arch, model):
    """export → `train --init-from OUT` (lr 1e-9: the weights stay) → the new run's outputs are the old run's."""
    run = train_run(dataset, tmp_path / "run", arch, model)
    out = export_run(run, tmp_path / "hf").out
    config = tiny_train_config(
        dataset, tmp_path / "again", arch=arch, init_from=str(out), batch_size=8, max_steps=1, lr=1e-9, warmup=0,
        eval_every=0, checkpoint_every=1, log_every=1, weight_decay=0.0,
    )  # fmt: skip
    train(config)
    first, second = bertkit.load_run(run), bertkit.load_run(tmp_path / "again")
    assert second.config == first.config
    inputs = batch(first.config.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(second.mlm_logits(**inputs), first.mlm_logits(**inputs), atol=ATOL, rtol=0)


def test_init_from_refuses_an_export_of_another_architecture(dataset, tmp_path):
    from bertkit.exceptions import ConfigError

    run = train_run(dataset, tmp_path / "run", "ltg-bert", {})
    out = export_run(run, tmp_path / "hf").out
    with pytest.raises(ConfigError, match=r"config.json: an export of a 'ltg-bert' model, but this run is 'elc-bert'"):
        resolve(get_architecture("elc-bert").importer)(out, "elc-bert")


@pytest.mark.parametrize("arch", ["ltg-bert", "elc-bert"])
def test_init_from_a_release_with_the_authors_parameter_names(tmp_path, arch):
    """A directory laid out like the authors' Hugging Face releases (their config.json fields, no bertkit record,
    pytorch_model.bin with the tied decoder weight and a position_indices buffer per layer) loads into bertkit."""
    from bertkit.models import build_model

    variant = {"variant": "normalized"} if arch == "elc-bert" else {}
    ours = build_model(arch, "tiny", vocab_size=64, max_position_embeddings=64, **variant).eval()
    state = {k: v.clone() for k, v in ours.state_dict().items()}
    index = torch.zeros(64, 64, dtype=torch.long)
    for i in range(ours.config.num_hidden_layers):
        state[f"transformer.layers.{i}.attention.position_indices"] = index
    release = tmp_path / "release"
    release.mkdir()
    torch.save(state, release / "pytorch_model.bin")
    fields = {k: v for k, v in ours.config.to_dict().items() if k != "variant"}
    (release / "config.json").write_text(json.dumps({"model_type": "ltgbert", "architectures": ["LtgBertForMaskedLM"],
                                                     **fields}))  # fmt: skip
    back = resolve(get_architecture(arch).importer)(release, arch, **variant).eval()
    assert back.load_report.unexpected == [] and back.load_report.missing == []
    ids = torch.randint(5, 64, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(back.mlm_logits(ids), ours.mlm_logits(ids), atol=0, rtol=0)
    (release / "config.json").write_text(json.dumps({"model_type": "roberta", **fields}))
    from bertkit.exceptions import ConfigError

    with pytest.raises(ConfigError, match=rf"{release / 'config.json'}: model_type 'roberta' is not a {arch} model"):
        resolve(get_architecture(arch).importer)(release, arch)
