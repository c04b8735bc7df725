"""Exported tokenizers round-trip: `transformers.AutoTokenizer` (in a fresh process) gives bertkit's ids on every
held-out real document, for WordPiece vocab.txt, BERT tokenizer.json and ELC-style byte-level tokenizer.json, with
the right special tokens and model_max_length; tokenizers transformers cannot reproduce are refused by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("bertkit._core")

from helpers import without_bertkit  # noqa: E402

from bertkit._core import WordPieceTokenizer  # noqa: E402
from bertkit.exceptions import FormatError  # noqa: E402
from bertkit.export.tokenizer import tokenizer_files  # noqa: E402

LOADER = textwrap.dedent(
    """
    import json, sys
    import transformers

    out, docs_path = sys.argv[1:3]
    docs = json.load(open(docs_path, encoding="utf-8"))
    tok = transformers.AutoTokenizer.from_pretrained(out)
    plain = [tok(d, add_special_tokens=False)["input_ids"] for d in docs]
    pair = tok("first part", "second part")
    print(json.dumps({
        "class": type(tok).__name__,
        "plain": plain,
        "with_specials": tok(docs[0])["input_ids"],
        "pair": pair["input_ids"],
        "pair_types": pair.get("token_type_ids"),
        "max_len": tok.model_max_length,
        "specials": {k: getattr(tok, k + "_id") for k in ("cls_token", "sep_token", "pad_token", "mask_token",
                                                          "unk_token")},
    }))
    """
)


def held_out_documents(data_dir: Path, n: int = 250) -> list[str]:
    """Real documents the tokenizers were not trained on (news; the tokenizers are trained on wiki)."""
    docs = []
    with open(data_dir / "news.jsonl", encoding="utf-8") as f:
        for line in f:
            docs.append(json.loads(line)["text"])
            if len(docs) == n:
                break
    bbc = (data_dir / "bbc.txt").read_text(encoding="utf-8").split("\n\n")
    return docs + [d for d in bbc[:: max(1, len(bbc) // 50)] if d.strip()][:50]


def export_and_load(src: Path, out: Path, docs: list[str], max_len: int = 128) -> dict:
    out.mkdir()
    for name, data in tokenizer_files(src, model_max_length=max_len).items():
        (out / name).write_bytes(data)
    (out.parent / "docs.json").write_text(json.dumps(docs), encoding="utf-8")
    env = without_bertkit(out.parent)
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, str(out), str(out.parent / "docs.json")],
        capture_output=True, text=True, timeout=300, env=env, cwd=out.parent,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_round_trip(src: Path, tmp_path: Path, docs: list[str], lowercase: bool | None = None) -> dict:
    got = export_and_load(src, tmp_path / "out", docs)
    source = src / "tokenizer.json" if (src / "tokenizer.json").is_file() else src / "vocab.txt"
    ours = WordPieceTokenizer(source, lowercase=lowercase)
    expected = ours.encode_batch(docs)
    differ = [i for i, (a, b) in enumerate(zip(expected, got["plain"], strict=True)) if a != b]
    assert not differ, f"{len(differ)} of {len(docs)} documents differ, first: {docs[differ[0]][:200]!r}"
    ids = ours.info()["special_ids"]
    assert got["specials"] == {
        "cls_token": ids["cls"], "sep_token": ids["sep"], "pad_token": ids["pad"], "mask_token": ids["mask"],
        "unk_token": ids["unk"],
    }  # fmt: skip
    assert got["with_specials"] == [ids["cls"], *expected[0], ids["sep"]]
    first, second = ours.encode("first part"), ours.encode("second part")
    assert got["pair"] == [ids["cls"], *first, ids["sep"], *second, ids["sep"]]
    assert got["pair_types"] == [0] * (len(first) + 2) + [1] * (len(second) + 1)
    assert got["max_len"] == 128
    return got


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from bertkit.tokenizers import train_tokenizer

    if not os.environ.get("BERTKIT_DATA"):
        pytest.skip("BERTKIT_DATA is not set (run scripts/fetch_data.py)")
    data_dir = Path(os.environ["BERTKIT_DATA"])
    root = tmp_path_factory.mktemp("tok")
    train_tokenizer([data_dir / "wiki.txt"], root / "bert", 3000, style="bert")
    train_tokenizer([data_dir / "wiki.txt"], root / "elc", 3000, style="elc")
    return root


@pytest.mark.slow
def test_bert_vocab_txt_round_trips_on_real_documents(data_dir, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "vocab.txt").write_bytes((data_dir / "vocab.txt").read_bytes())
    got = check_round_trip(src, tmp_path, held_out_documents(data_dir))
    assert got["class"] == "BertTokenizer"


@pytest.mark.slow
def test_trained_bert_tokenizer_json_round_trips_on_real_documents(trained, data_dir, tmp_path):
    check_round_trip(trained / "bert", tmp_path, held_out_documents(data_dir))


@pytest.mark.slow
def test_trained_elc_tokenizer_round_trips_on_real_documents(trained, data_dir, tmp_path):
    got = check_round_trip(trained / "elc", tmp_path, held_out_documents(data_dir))
    assert got["class"] != "BertTokenizer"  # a BERT pipeline would rebuild [UNK]s out of byte-level pieces
    config = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast" and "do_lower_case" not in config


@pytest.mark.slow
def test_recorded_lowercase_of_a_dataset_is_exported(data_dir, tmp_path):
    """A dataset prepared with lowercase = false over an uncased vocab: the export keeps the case as prepare did."""
    ds = tmp_path / "ds"
    (ds / "tokenizer").mkdir(parents=True)
    (ds / "tokenizer" / "vocab.txt").write_bytes((data_dir / "vocab.txt").read_bytes())
    (ds / "manifest.json").write_text(json.dumps({"tokenizer": {"lowercase": False}}))
    docs = held_out_documents(data_dir, 60)
    check_round_trip(ds / "tokenizer", tmp_path, docs, lowercase=False)
    config = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    assert config["do_lower_case"] is False


def test_a_vocabulary_transformers_cannot_express_is_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "cat", "dog", "cat"]) + "\n"
    )
    with pytest.raises(FormatError, match=rf"{src / 'vocab.txt'}: token 'cat' appears at ids 5 and 7"):
        tokenizer_files(src, model_max_length=32)
    with pytest.raises(FormatError, match=f"{tmp_path / 'none'}: tokenizer directory does not exist"):
        tokenizer_files(tmp_path / "none", model_max_length=32)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FormatError, match=f"{empty}: no tokenizer.json or vocab.txt"):
        tokenizer_files(empty, model_max_length=32)


@pytest.mark.slow
def test_an_elc_style_run_exports_its_byte_level_tokenizer(trained, data_dir, tmp_path):
    """prepare (ELC tokenizer, one sentence per line) → train ltg-bert → `bertkit export hf`: AutoTokenizer of the
    export (fresh process) gives exactly the token ids prepare stored for every held-out sentence."""
    from helpers import corpus_arrays
    from typer.testing import CliRunner

    from bertkit.data.prepare import PrepareConfig, prepare
    from bertkit_cli import app

    docs = held_out_documents(data_dir, 80)
    lines = [line.strip() for d in docs for line in d.splitlines() if line.strip()]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join("\n".join(lines[i : i + 5]) for i in range(0, len(lines), 5)))  # 5-line documents
    ds = tmp_path / "ds"
    prepare(PrepareConfig(inputs=[str(corpus)], out=ds, tokenizer=trained / "elc" / "tokenizer.json", splitter="lines"))
    tokens, so, _, _ = corpus_arrays(ds)
    stored = [tokens[so[i] : so[i + 1]].tolist() for i in range(len(so) - 1)]
    assert len(stored) == len(lines)
    from conftest import tiny_train_config

    from bertkit.train.trainer import train

    train(tiny_train_config(ds, tmp_path / "run", arch="ltg-bert", max_steps=1, batch_size=4, warmup=0, eval_every=0,
                            checkpoint_every=1))  # fmt: skip
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["export", "hf", str(tmp_path / "run"), str(out)])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast" and config["model_max_length"] == 512
    (tmp_path / "lines.json").write_text(json.dumps(lines), encoding="utf-8")
    code = (
        "import json, sys, transformers\n"
        "tok = transformers.AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
        "lines = json.load(open(sys.argv[2], encoding='utf-8'))\n"
        "print(json.dumps([tok(x, add_special_tokens=False)['input_ids'] for x in lines]))\n"
    )
    env = without_bertkit(tmp_path)
    proc = subprocess.run([sys.executable, "-c", code, str(out), str(tmp_path / "lines.json")], capture_output=True,
                          text=True, timeout=300, env=env, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    differ = [i for i, (a, b) in enumerate(zip(stored, theirs, strict=True)) if a != b]
    assert not differ, f"{len(differ)} of {len(lines)} sentences differ, first: {lines[differ[0]][:200]!r}"
