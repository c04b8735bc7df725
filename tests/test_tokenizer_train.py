"""train_tokenizer: bert and elc styles, corpus reading, errors."""

from __future__ import annotations

import gzip
import json
import time

import numpy as np
import pytest
from conftest import write_fixture_dataset
from tokenizers import Tokenizer

from bertkit.data import open_dataset
from bertkit.exceptions import ConfigError, InputError
from bertkit.tokenizers import train_tokenizer

WORDS = (
    "the quick brown fox jumps over lazy dogs while running runner runs walked walking talks talked "
    "market markets government governments report reported reporting said says minister ministers 2024 1999"
).split()


def write_corpus(path, n_lines=400, seed=0, capitalize=True):
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n_lines):
        words = [WORDS[j] for j in rng.integers(0, len(WORDS), rng.integers(4, 12))]
        if capitalize:
            words[0] = words[0].capitalize()
        lines.append(" ".join(words) + ".")
        if i % 10 == 9:
            lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_vocab(d):
    return (d / "vocab.txt").read_text(encoding="utf-8").splitlines()


def test_bert_style(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt")
    s = train_tokenizer([corpus], tmp_path / "tok", vocab_size=150, style="bert")
    vocab = read_vocab(tmp_path / "tok")
    assert len(vocab) == s["vocab_size"] <= 150
    assert s["vocab_size"] > 100  # the corpus is rich enough to fill most of it
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert any(t.startswith("##") for t in vocab)
    assert len(set(vocab)) == len(vocab)
    tok = Tokenizer.from_file(str(tmp_path / "tok" / "tokenizer.json"))
    assert tok.get_vocab() == {t: i for i, t in enumerate(vocab)}
    enc = tok.encode("The Quick fox")
    assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]"
    assert "the" in enc.tokens and "The" not in vocab  # lower-cased
    assert tok.decode(enc.ids) == "the quick fox"
    assert s["lines"] == 400 and s["bytes"] == corpus.stat().st_size and s["min_frequency"] == 2


def test_bert_style_cased(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt")
    train_tokenizer([corpus], tmp_path / "cased", vocab_size=150, lowercase=False)
    train_tokenizer([corpus], tmp_path / "uncased", vocab_size=150)
    assert any(c.isupper() for t in read_vocab(tmp_path / "cased")[5:] for c in t)
    assert not any(c.isupper() for t in read_vocab(tmp_path / "uncased")[5:] for c in t)


def test_elc_style(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt")
    s = train_tokenizer([corpus], tmp_path / "tok", vocab_size=300, style="elc", min_frequency=2)
    vocab = read_vocab(tmp_path / "tok")
    assert vocab[:7] == ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "[PAR]", "[TAB]"]
    assert len(vocab) == s["vocab_size"] <= 300
    j = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    assert j["model"]["type"] == "WordPiece" and j["model"]["continuing_subword_prefix"] == ""
    assert j["normalizer"] is None
    assert [p["type"] for p in j["pre_tokenizer"]["pretokenizers"]] == ["ByteLevel", "Digits"]
    assert j["pre_tokenizer"]["pretokenizers"][0]["add_prefix_space"] is True
    assert j["pre_tokenizer"]["pretokenizers"][1]["individual_digits"] is True
    assert j["decoder"]["type"] == "ByteLevel" and j["post_processor"]["type"] == "ByteLevel"
    tok = Tokenizer.from_file(str(tmp_path / "tok" / "tokenizer.json"))
    assert tok.get_vocab() == {t: i for i, t in enumerate(vocab)}
    enc = tok.encode("The market 2024")
    assert enc.tokens[-4:] == ["2", "0", "2", "4"]
    assert "ĠThe" in enc.tokens  # byte-level space marker, cased
    assert tok.decode(enc.ids).strip() == "The market 2024"
    assert s["min_frequency"] == 2


def test_datasets_decode_with_a_trained_tokenizer(tmp_path):
    """A dataset holding tokenizer/vocab.txt (+ tokenizer.json for byte-level vocabularies) decodes its ids."""
    corpus = write_corpus(tmp_path / "c.txt")
    text = "The lazy minister reported 1999 markets."
    for style, prefix, want in [("bert", "##", text.lower()[:-1] + " ."), ("elc", "", " " + text)]:
        train_tokenizer([corpus], tmp_path / style, vocab_size=300, style=style, min_frequency=1)
        vocab = read_vocab(tmp_path / style)
        tok = Tokenizer.from_file(str(tmp_path / style / "tokenizer.json"))
        ids = tok.encode(text, add_special_tokens=False).ids
        d = write_fixture_dataset(tmp_path / f"ds-{style}", [[ids]], vocab=vocab, prefix=prefix)
        if style == "elc":
            (d / "tokenizer" / "tokenizer.json").write_bytes((tmp_path / style / "tokenizer.json").read_bytes())
        ds = open_dataset(d)
        assert ds.decode(ds.documents[0].tokens) == want


def test_elc_default_min_frequency_is_10(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", n_lines=60)
    s10 = train_tokenizer([corpus], tmp_path / "t10", vocab_size=2000, style="elc")
    s1 = train_tokenizer([corpus], tmp_path / "t1", vocab_size=2000, style="elc", min_frequency=1)
    assert s10["min_frequency"] == 10
    assert s10["vocab_size"] < s1["vocab_size"]


def test_reads_gz_jsonl_and_directories(tmp_path):
    d = tmp_path / "corpus"
    (d / "sub").mkdir(parents=True)
    write_corpus(d / "plain.txt", n_lines=50)
    with gzip.open(d / "sub" / "z.txt.gz", "wt", encoding="utf-8") as f:
        f.write("zebra zebra\n" * 30)
    with open(d / "docs.jsonl", "w", encoding="utf-8") as f:
        for _ in range(30):
            f.write(json.dumps({"body": "quokka line one\nquokka line two", "id": 1}) + "\n")
    (d / ".hidden").write_text("never read\n")
    s = train_tokenizer([d], tmp_path / "tok", vocab_size=200, text_field="body", min_frequency=1)
    vocab = read_vocab(tmp_path / "tok")
    assert "zebra" in vocab and "quokka" in vocab and "never" not in vocab
    assert s["lines"] == 50 + 30 + 60 and len(s["files"]) == 3


def test_latin1_lines_are_counted(tmp_path):
    p = tmp_path / "mixed.txt"
    p.write_bytes("café olé\n".encode() * 5 + "garçon\n".encode("latin-1") * 3)
    with pytest.warns(UserWarning, match=r"mixed\.txt: 3 line\(s\)"):
        s = train_tokenizer([p], tmp_path / "tok", vocab_size=100, min_frequency=1, lowercase=False)
    assert s["latin1_lines"] == {str(p): 3}
    assert "garçon" in read_vocab(tmp_path / "tok") or "gar" in read_vocab(tmp_path / "tok")


def test_errors(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", n_lines=20)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        train_tokenizer([corpus, tmp_path / "missing.txt"], tmp_path / "tok", vocab_size=100)
    with pytest.raises(ConfigError, match="special tokens"):
        train_tokenizer([corpus], tmp_path / "tok", vocab_size=5)
    with pytest.raises(ConfigError, match="too small"):
        train_tokenizer([corpus], tmp_path / "tok", vocab_size=12)
    with pytest.raises(ConfigError, match="style"):
        train_tokenizer([corpus], tmp_path / "tok", vocab_size=100, style="bpe")
    (tmp_path / "empty.txt").write_text("\n\n   \n")
    with pytest.raises(InputError, match="empty corpus.*empty.txt"):
        train_tokenizer([tmp_path / "empty.txt"], tmp_path / "tok", vocab_size=100)
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(InputError, match=r"bad\.jsonl:2: invalid JSON"):
        train_tokenizer([tmp_path / "bad.jsonl"], tmp_path / "tok", vocab_size=100)
    (tmp_path / "nofield.jsonl").write_text('{"body": "ok"}\n')
    with pytest.raises(InputError, match=r"nofield\.jsonl:1: no 'text' field"):
        train_tokenizer([tmp_path / "nofield.jsonl"], tmp_path / "tok", vocab_size=100)
    assert not (tmp_path / "tok").exists()


@pytest.mark.slow
@pytest.mark.parametrize("style", ["bert", "elc"])
def test_real_corpus(tmp_path, data_dir, style):
    t0 = time.perf_counter()
    s = train_tokenizer([data_dir / "news.txt"], tmp_path / style, vocab_size=8000, style=style)
    elapsed = time.perf_counter() - t0
    assert s["vocab_size"] == 8000
    tok = Tokenizer.from_file(str(tmp_path / style / "tokenizer.json"))
    text = "The government said on Tuesday that the economy grew by 2.5 percent."
    ids = tok.encode(text, add_special_tokens=False).ids
    assert len(ids) < 25
    decoded = tok.decode(ids)
    assert decoded.strip().replace(" ", "") == (text.lower() if style == "bert" else text).replace(" ", "")
    print(f"{style}: {s['bytes'] / 1e6:.1f} MB in {elapsed:.1f} s")
