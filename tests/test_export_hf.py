"""Hugging Face export / import of bertkit's BERT: transformers loads the export with equal outputs, and back."""

from __future__ import annotations

import json
import logging
import os

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from bertkit.exceptions import FormatError  # noqa: E402
from bertkit.export import export_hf, init_from_hf, load_hf_bert  # noqa: E402
from bertkit.models.bert import BertConfig, BertForPreTraining  # noqa: E402

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "dog", "##s", "."]
VOCAB += [f"w{i}" for i in range(len(VOCAB), 60)]
SMALL = dict(
    vocab_size=64,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=48,
    max_position_embeddings=32,
)
ATOL = 1e-5


def trained_like(seed: int = 0, **overrides) -> BertForPreTraining:
    model = BertForPreTraining(BertConfig(**{**SMALL, **overrides}))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_((1.0 if name.endswith("LayerNorm.weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.fixture
def tokenizer_dir(tmp_path):
    d = tmp_path / "tok"
    d.mkdir()
    (d / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return d


def inputs(B: int = 2, T: int = 9, padding: bool = True):
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(5, len(VOCAB), (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    if padding:
        mask[1, T - 3 :] = 0
        ids[1, T - 3 :] = 0
    types = torch.zeros(B, T, dtype=torch.long)
    types[:, T // 2 :] = 1
    return ids, mask, types


def test_export_loads_in_transformers_with_equal_outputs(tmp_path, tokenizer_dir):
    model = trained_like()
    out = export_hf(model, model.config, tmp_path / "hf", tokenizer_dir)
    assert sorted(os.listdir(out)) == [
        "bertkit_export.json",
        "config.json",
        "model.safetensors",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    ids, mask, types = inputs()
    B, T = ids.shape
    with torch.no_grad():
        logits = model.mlm_logits(ids, mask, types).view(B, T, -1)
        nsp = model.nsp_logits(ids, mask, types)
        hidden = model.encode(ids, mask, types)
        pre = transformers.BertForPreTraining.from_pretrained(out).eval()
        ref = pre(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        torch.testing.assert_close(ref.prediction_logits, logits, atol=ATOL, rtol=0)
        torch.testing.assert_close(ref.seq_relationship_logits, nsp, atol=ATOL, rtol=0)
        torch.testing.assert_close(ref.hidden_states[-1], hidden, atol=ATOL, rtol=0)
        mlm = transformers.BertForMaskedLM.from_pretrained(out).eval()
        torch.testing.assert_close(
            mlm(input_ids=ids, attention_mask=mask, token_type_ids=types).logits, logits, atol=ATOL, rtol=0
        )
    # The loaded decoder is tied, and no tensor came from fresh init (its bias equals ours, not zeros).
    assert pre.cls.predictions.decoder.weight.data_ptr() == pre.bert.embeddings.word_embeddings.weight.data_ptr()
    torch.testing.assert_close(pre.cls.predictions.bias, model.cls.predictions.bias)


def test_export_files(tmp_path, tokenizer_dir):
    model = trained_like()
    out = export_hf(model, None, tmp_path / "hf", tokenizer_dir)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["BertForPreTraining"] and cfg["model_type"] == "bert"
    assert {k: cfg[k] for k in SMALL} == SMALL
    hf_cfg = transformers.BertConfig.from_pretrained(out)
    assert hf_cfg.hidden_act == "gelu" and hf_cfg.layer_norm_eps == 1e-12 and hf_cfg.tie_word_embeddings
    with safe_open(out / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert "cls.predictions.decoder.weight" not in keys and "cls.predictions.decoder.bias" not in keys
    assert keys == set(model.state_dict()) - {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
    assert (out / "vocab.txt").read_text().splitlines() == VOCAB
    tok_cfg = json.loads((out / "tokenizer_config.json").read_text())
    assert tok_cfg["do_lower_case"] is True and tok_cfg["model_max_length"] == SMALL["max_position_embeddings"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    enc = tokenizer("The cats sat")
    assert enc["input_ids"] == [2, 5, 6, 11, 7, 3]
    assert tokenizer.mask_token_id == 4 and tokenizer.pad_token_id == 0
    assert not list(tmp_path.glob("hf.tmp-*"))


def test_tokenizer_json_is_copied_without_baked_padding(tmp_path, tokenizer_dir):
    from tokenizers import Tokenizer
    from tokenizers.models import WordPiece
    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer

    tok = Tokenizer(WordPiece({t: i for i, t in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.normalizer = BertNormalizer(lowercase=True)
    tok.pre_tokenizer = BertPreTokenizer()
    tok.enable_padding(length=16)
    tok.enable_truncation(max_length=16)
    tok.save(str(tokenizer_dir / "tokenizer.json"))
    # bertkit matches only the tokenizer.json's added tokens in text, transformers always its special tokens
    with pytest.raises(
        FormatError, match=r"tokenizer.json: cannot be expressed as a transformers tokenizer: on '\[CLS\]"
    ):
        export_hf(trained_like(), None, tmp_path / "hf", tokenizer_dir)
    assert not (tmp_path / "hf").exists()
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.save(str(tokenizer_dir / "tokenizer.json"))
    out = export_hf(trained_like(), None, tmp_path / "hf", tokenizer_dir)
    spec = json.loads((out / "tokenizer.json").read_text())
    assert spec["padding"] is None and spec["truncation"] is None
    assert Tokenizer.from_file(str(out / "tokenizer.json")).encode("the cat", add_special_tokens=False).ids == [5, 6]
    assert Tokenizer.from_file(str(out / "tokenizer.json")).encode("the cat").ids == [2, 5, 6, 3]


def test_init_from_hf_round_trip(tmp_path, tokenizer_dir):
    model = trained_like(seed=2)
    out = export_hf(model, None, tmp_path / "hf", tokenizer_dir)
    config, state = load_hf_bert(out)
    assert config == model.config
    back = init_from_hf(out).eval()
    assert back.load_report.missing == [] and back.load_report.unexpected == []
    ours = model.state_dict()
    for key, value in back.state_dict().items():
        torch.testing.assert_close(value, ours[key], atol=0, rtol=0, msg=key)
    assert back.cls.predictions.decoder.weight is back.bert.embeddings.word_embeddings.weight
    dropped = init_from_hf(out, hidden_dropout_prob=0.0)
    assert dropped.config.hidden_dropout_prob == 0.0 and dropped.config.hidden_size == SMALL["hidden_size"]


def test_init_from_transformers_checkpoints(tmp_path):
    """Checkpoints written by transformers itself: save_pretrained and a legacy pytorch_model.bin."""
    torch.manual_seed(0)
    hf = transformers.BertForPreTraining(transformers.BertConfig(**SMALL)).eval()
    hf.save_pretrained(tmp_path / "st")
    ids, mask, types = inputs()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types)
        ours = init_from_hf(tmp_path / "st").eval()
        B, T = ids.shape
        torch.testing.assert_close(
            ours.mlm_logits(ids, mask, types).view(B, T, -1), ref.prediction_logits, atol=ATOL, rtol=0
        )
    legacy = tmp_path / "bin"
    legacy.mkdir()
    (legacy / "config.json").write_text((tmp_path / "st" / "config.json").read_text())
    state = {k: v for k, v in hf.state_dict().items()}
    state["bert.embeddings.position_ids"] = torch.arange(SMALL["max_position_embeddings"])[None]  # old buffer
    torch.save(state, legacy / "pytorch_model.bin")
    with torch.no_grad():
        again = init_from_hf(legacy).eval()
        torch.testing.assert_close(again.nsp_logits(ids, mask, types), ref.seq_relationship_logits, atol=ATOL, rtol=0)
    assert again.load_report.unexpected == []


def test_bare_bert_model_checkpoint_keeps_fresh_heads(tmp_path, caplog):
    torch.manual_seed(1)
    hf = transformers.BertModel(transformers.BertConfig(**SMALL)).eval()
    hf.save_pretrained(tmp_path / "encoder")
    ids, mask, types = inputs()
    with caplog.at_level(logging.WARNING, logger="bertkit.export"):
        model = init_from_hf(tmp_path / "encoder").eval()
    assert model.load_report.missing and all(k.startswith("cls.") for k in model.load_report.missing)
    assert "cls.seq_relationship.weight" in model.load_report.missing
    assert "cls.predictions.bias" in caplog.text
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types)
        torch.testing.assert_close(model.encode(ids, mask, types), ref.last_hidden_state, atol=ATOL, rtol=0)
        out = model(ids, mask, types, torch.tensor([1, 2, 3]), torch.tensor([5, 6, 7]), torch.tensor([0, 1]))
    assert torch.isfinite(out.loss)


def test_unexpected_keys_are_reported(tmp_path):
    model = trained_like()
    out = export_hf(model, None, tmp_path / "hf")
    state = {}
    with safe_open(out / "model.safetensors", "pt") as f:
        for k in f.keys():
            state[k] = f.get_tensor(k)
    state["cls.extra_head.weight"] = torch.zeros(3)
    save_file(state, str(out / "model.safetensors"))
    loaded = init_from_hf(out)
    assert loaded.load_report.unexpected == ["cls.extra_head.weight"]


def test_export_refuses_a_non_empty_directory_unless_overwrite(tmp_path):
    model = trained_like()
    target = tmp_path / "hf"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="already exists and is not empty"):
        export_hf(model, None, target)
    with pytest.raises(FileExistsError, match=f"{target}: not a bertkit export"):
        export_hf(model, None, target, overwrite=True)  # --overwrite only replaces what bertkit wrote
    assert sorted(os.listdir(target)) == ["notes.txt"] and (target / "notes.txt").read_text() == "keep me"
    (target / "notes.txt").unlink()
    export_hf(model, None, target)
    export_hf(trained_like(seed=5), None, target, overwrite=True)  # a previous export is replaced
    assert sorted(os.listdir(target)) == ["bertkit_export.json", "config.json", "model.safetensors"]
    assert sorted(os.listdir(tmp_path)) == ["hf"]  # no temporary or old directories left behind
    (target / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"holds files bertkit did not write \(notes.txt\)"):
        export_hf(model, None, target, overwrite=True)
    (target / "notes.txt").unlink()
    (target / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match=r"changed since bertkit wrote them \(config.json\)"):
        export_hf(model, None, target, overwrite=True)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(FileExistsError, match="exists and is not a directory"):
        export_hf(model, None, a_file, overwrite=True)  # a file is never replaced by a folder
    assert a_file.read_text() == "x"


def test_export_errors_leave_nothing_behind(tmp_path, tokenizer_dir):
    model = trained_like()
    with pytest.raises(FormatError, match="tokenizer directory does not exist"):
        export_hf(model, None, tmp_path / "a", tmp_path / "nope")
    (tokenizer_dir / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    with pytest.raises(FormatError, match=r"vocab.txt: missing special tokens \[CLS\], \[SEP\], \[MASK\]"):
        export_hf(model, None, tmp_path / "a", tokenizer_dir)
    (tokenizer_dir / "vocab.txt").write_text("\n".join(VOCAB + [f"x{i}" for i in range(10)]) + "\n")
    with pytest.raises(FormatError, match="70 tokens but the model has vocab_size 64"):
        export_hf(model, None, tmp_path / "a", tokenizer_dir)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]


def test_import_errors_name_the_path(tmp_path):
    with pytest.raises(FormatError, match=f"{tmp_path / 'missing'}: checkpoint directory does not exist"):
        init_from_hf(tmp_path / "missing")
    model = trained_like()
    out = export_hf(model, None, tmp_path / "hf")
    (out / "model.safetensors").rename(tmp_path / "weights.safetensors")
    with pytest.raises(FormatError, match=f"{out}: no weights file"):
        init_from_hf(out)
    (tmp_path / "weights.safetensors").rename(out / "model.safetensors")

    cfg = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**cfg, "model_type": "roberta"}))
    with pytest.raises(FormatError, match=r"config.json: model_type is 'roberta', not 'bert'"):
        init_from_hf(out)
    (out / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 40}))
    with pytest.raises(
        FormatError,
        match=r"tensor bert.encoder.layer.0.intermediate.dense.\w+ has shape \(48.*config.json implies \(40",
    ):
        init_from_hf(out)
    (out / "config.json").write_text(json.dumps({**cfg, "position_embedding_type": "relative_key"}))
    with pytest.raises(FormatError, match="position_embedding_type"):
        init_from_hf(out)
    (out / "config.json").write_text("{not json")
    with pytest.raises(FormatError, match="config.json: not valid JSON"):
        init_from_hf(out)
    (out / "config.json").write_text(json.dumps(cfg))
    (out / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(FormatError, match=str(out)):
        init_from_hf(out)
    (out / "model.safetensors").unlink()
    (out / "pytorch_model.bin").write_bytes(b"not a pickle")
    with pytest.raises(FormatError, match=f"{out}: unreadable weights"):
        init_from_hf(out)
    (out / "pytorch_model.bin").unlink()
    # An encoder tensor missing from the checkpoint is an error (only heads may be missing).
    state = {k: v for k, v in model.state_dict().items() if "decoder" not in k and "layer.1.output.dense" not in k}
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"))
    with pytest.raises(FormatError, match=r"lacks encoder tensor\(s\) bert.encoder.layer.1.output.dense"):
        init_from_hf(out)


@pytest.mark.slow
def test_minilm_sentence_transformers_encoder_loads(data_dir):
    path = data_dir / "minilm"
    if not (path / "model.safetensors").is_file():
        pytest.skip(f"{path} is missing (scripts/fetch_data.py)")
    model = init_from_hf(path).eval()
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    assert all(k.startswith("cls.") for k in model.load_report.missing) and model.load_report.missing
    assert model.load_report.unexpected == []
    encoder_params = sum(p.numel() for p in model.bert.parameters())
    assert encoder_params == 22_713_216
    ref_model = transformers.BertModel.from_pretrained(path).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    enc = tokenizer(["The cat sat on the mat.", "A short one"], padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = ref_model(**enc).last_hidden_state
        ours = model.encode(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    # Real weights give hidden values up to ~5: float32 rounding between the two attention paths reaches ~2e-5.
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=ATOL)


def test_an_export_that_fails_midway_leaves_nothing_that_looks_complete(tmp_path):
    from bertkit.export.output import publish

    def broken(path):
        path.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    out = tmp_path / "hf"
    with pytest.raises(OSError, match="No space left"):
        publish(out, {"config.json": b"{}", "model.safetensors": broken})
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither OUT nor a hidden temporary sibling
    export_hf(trained_like(), None, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(OSError, match="No space left"):
        publish(out, {"config.json": b"{}", "model.safetensors": broken}, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the previous export is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
