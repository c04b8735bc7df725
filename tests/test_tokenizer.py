"""bertkit._core.WordPieceTokenizer: id-for-id parity with HF `tokenizers`, errors, and the API."""

import json
import os
import random
from pathlib import Path

import pytest

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import BertWordPieceTokenizer, Tokenizer, models, pre_tokenizers, trainers  # noqa: E402

from bertkit._core import WordPieceTokenizer  # noqa: E402
from bertkit.exceptions import FormatError  # noqa: E402

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ELC_SPECIALS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "[PAR]", "[TAB]"]

WORDS = [
    "the", "a", "hello", "world", "##s", "##ed", "##ing", "cafe", "resume", "un", "##aff", "##able",
    "中", "文", "😀", "σ", "ο", "δ", "##σ", "##ο", "##δ", "i", "##i", "ß", "e", "##e", "x", "##x",
    "$", "«", "»", "—", "!", ",", ".", "'", "#", "##", "[", "]", "mask", "n", "##t", "don", "12", "##3",
    "naive", "uber", "ı", "̇", "ﬀ", "€", "°", "£", "1", "2", "3",
]  # fmt: skip

TRICKY = [
    "",
    " ",
    "Hello, World!",
    "unaffable worlds don't",
    "Café RÉSUMÉ naïve Über",
    "cafe\u0301 e\u0301\u0328",
    "ΟΔΟΣ οδος",
    "İstanbul ı I",
    "hello中文world 日本語",
    "😀👍🏽 emoji😀x",
    "tab\there\nnew\rline\x0bvt\x0cff",
    "nul\x00byte rep\ufffdlacement",
    "zero\u200bwidth soft\u00adhyphen bidi\u202etext",
    "spaces\u00a0nbsp\u2009thin\u3000ideo\u2028line\u2029para\u0085nel",
    "$«hello»—world… ¿qué? ¡sí!",
    "##hash ## a##b ###",
    "[CLS] [SEP][MASK] [mask] [PAD]x[UNK]",
    "x" * 100,
    "x" * 101,
    "é" * 101,
    "12345 1.5 ½ ² ³ ¹ ¼",
    "ﬀ ligature ① ⅷ",
    "\u1fef\u037e\u0387",
    "a\u0300\u0301\u0302\u0303 Z\u0351\u0352",
    "Ǆ ǅ ǆ ẞ",
    "\U0001d400\U0001d41a math bold",
    "  leading and trailing  ",
    "\u0e01\u0e34\u0e19 thai \u0915\u093f devanagari",
    "한국어 Hangul",
    "x\ud7a4y",
]


def write_vocab(tmp_path: Path, tokens: list[str]) -> Path:
    p = tmp_path / "vocab.txt"
    p.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return p


def random_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    pool = list("abcdefxyz ABCXYZ .,!?'#[]-") + list({c for s in TRICKY for c in s}) + WORDS
    return ["".join(rng.choice(pool) for _ in range(rng.randint(0, 40))) for _ in range(n)]


@pytest.fixture
def bert_vocab(tmp_path):
    return write_vocab(tmp_path, SPECIALS + WORDS)


@pytest.mark.parametrize("lowercase", [True, False])
def test_bert_parity_with_hf_on_tricky_strings(bert_vocab, lowercase):
    ours = WordPieceTokenizer(str(bert_vocab), lowercase=lowercase)
    hf = BertWordPieceTokenizer(str(bert_vocab), lowercase=lowercase)
    texts = TRICKY + random_texts(300, seed=1)
    expected = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    for text, want in zip(texts, expected, strict=True):
        assert ours.encode(text) == want, repr(text)
    assert ours.encode_batch(texts, threads=2) == expected


def test_bert_tokenizer_json_parity(tmp_path, bert_vocab):
    hf = BertWordPieceTokenizer(str(bert_vocab), lowercase=True, strip_accents=False)
    path = tmp_path / "tokenizer.json"
    hf.save(str(path))
    ours = WordPieceTokenizer(str(path))
    info = ours.info()
    assert info["pipeline"] == "bert" and info["lowercase"] is True and info["strip_accents"] is False
    for text in TRICKY:
        assert ours.encode(text) == hf.encode(text, add_special_tokens=False).ids, repr(text)


@pytest.fixture(scope="module")
def elc_pair(tmp_path_factory):
    """A tiny ELC-style tokenizer trained with `tokenizers`, and ours loaded from its JSON."""
    d = tmp_path_factory.mktemp("elc")
    corpus = d / "corpus.txt"
    rng = random.Random(0)
    base = [t for t in WORDS if not t.startswith("#")] + ["hello", "world", "2019", "café", "it's", "naïve"]
    lines = [" ".join(rng.choice(base) for _ in range(12)) for _ in range(400)]
    corpus.write_text("\n".join(lines + TRICKY), encoding="utf-8")
    hf = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="", max_input_chars_per_word=100))
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True), pre_tokenizers.Digits(individual_digits=True)]
    )
    trainer = trainers.WordPieceTrainer(
        vocab_size=400, min_frequency=2, special_tokens=ELC_SPECIALS, continuing_subword_prefix="", show_progress=False
    )
    hf.train([str(corpus)], trainer)
    path = d / "tokenizer.json"
    hf.save(str(path))
    return hf, WordPieceTokenizer(str(path)), path


def test_elc_parity_with_hf(elc_pair):
    hf, ours, _ = elc_pair
    texts = TRICKY + random_texts(300, seed=2) + ["it's 2019 [PAR] hello[TAB]world", "x[SEP]y"]
    expected = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    for text, want in zip(texts, expected, strict=True):
        assert ours.encode(text) == want, repr(text)
    assert ours.encode_batch(texts, threads=2) == expected


def test_elc_info_and_specials(elc_pair):
    hf, ours, _ = elc_pair
    info = ours.info()
    assert info["pipeline"] == "byte_level"
    assert info["continuing_subword_prefix"] == ""
    assert info["special_tokens"] == {t: i for i, t in enumerate(ELC_SPECIALS)}
    assert info["special_ids"] == {"unk": 0, "cls": 1, "sep": 2, "pad": 3, "mask": 4}
    assert ours.vocab_size == hf.get_vocab_size()
    assert ours.token_to_id("[PAR]") == 5
    assert ours.decode(ours.encode("hello world, café!")) == " hello world, café!"


def test_elc_lowercase_is_refused(elc_pair):
    _, _, path = elc_pair
    with pytest.raises(FormatError, match="lowercase"):
        WordPieceTokenizer(str(path), lowercase=True)


def test_api_and_info(bert_vocab):
    tok = WordPieceTokenizer(str(bert_vocab))
    assert tok.vocab_size == len(SPECIALS) + len(WORDS)
    assert tok.token_to_id("hello") == SPECIALS.__len__() + WORDS.index("hello")
    assert tok.token_to_id("nope") is None
    assert tok.id_to_token(0) == "[PAD]"
    assert tok.id_to_token(10**6) is None
    ids = tok.encode("Unaffable worlds!")
    assert [tok.id_to_token(i) for i in ids] == ["un", "##aff", "##able", "world", "##s", "!"]
    assert tok.decode(ids) == "unaffable worlds !"
    info = tok.info()
    import hashlib

    expected_sha = hashlib.sha256(("\n".join(SPECIALS + WORDS) + "\n").encode()).hexdigest()
    assert info["vocab_sha256"] == expected_sha
    assert info["kind"] == "wordpiece" and info["source"] == "vocab.txt"
    assert info["special_ids"] == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    assert info["max_input_chars_per_word"] == 100
    json.dumps(info)
    assert tok.encode_batch([], threads=1) == []
    assert tok.encode_batch(["a", "b"]) == [tok.encode("a"), tok.encode("b")]


def test_duplicate_tokens_follow_hf(tmp_path):
    path = write_vocab(tmp_path, SPECIALS + ["a", "b", "a  ", "a"])
    ours = WordPieceTokenizer(str(path))
    hf = BertWordPieceTokenizer(str(path))
    assert ours.encode("a b a") == hf.encode("a b a", add_special_tokens=False).ids == [8, 6, 8]
    assert ours.vocab_size == 9  # ids are line numbers (HF counts 7 distinct tokens)


def test_large_vocab(tmp_path):
    tokens = SPECIALS + [f"w{i}" for i in range(70_000)] + ["zebra"]
    tok = WordPieceTokenizer(str(write_vocab(tmp_path, tokens)))
    assert tok.encode("Zebra") == [70_005]
    assert tok.vocab_size == 70_006


def test_missing_specials_are_named(tmp_path):
    path = write_vocab(tmp_path, ["[PAD]", "[UNK]", "[SEP]", "hello"])
    with pytest.raises(FormatError) as e:
        WordPieceTokenizer(str(path))
    message = str(e.value)
    assert "vocab.txt" in message
    assert "missing special tokens [CLS], [MASK] (" in message


def test_missing_file_is_file_not_found(tmp_path):
    missing = tmp_path / "nope" / "vocab.txt"
    with pytest.raises(FileNotFoundError, match="nope"):
        WordPieceTokenizer(str(missing))


def test_bad_json_and_unsupported_pipelines(tmp_path, bert_vocab):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(FormatError, match="bad.json"):
        WordPieceTokenizer(str(bad))

    hf = BertWordPieceTokenizer(str(bert_vocab))
    good = tmp_path / "good.json"
    hf.save(str(good))
    data = json.loads(good.read_text(encoding="utf-8"))

    nfkc = dict(data, normalizer={"type": "NFKC"})
    (tmp_path / "nfkc.json").write_text(json.dumps(nfkc), encoding="utf-8")
    with pytest.raises(FormatError, match=r"nfkc\.json.*NFKC"):
        WordPieceTokenizer(str(tmp_path / "nfkc.json"))

    meta = dict(data, pre_tokenizer={"type": "Metaspace", "replacement": "▁"})
    (tmp_path / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(FormatError, match="Metaspace"):
        WordPieceTokenizer(str(tmp_path / "meta.json"))

    bpe = dict(data, model={"type": "BPE", "vocab": {}, "merges": []})
    (tmp_path / "bpe.json").write_text(json.dumps(bpe), encoding="utf-8")
    with pytest.raises(FormatError, match="BPE"):
        WordPieceTokenizer(str(tmp_path / "bpe.json"))


@pytest.mark.slow
def test_every_code_point_parity(bert_vocab, elc_pair):
    """Each assigned-plane scalar in a few contexts: catches category-table and normalisation differences.

    Planes 4-13 are unassigned and 15-16 private use, so those are sampled."""
    cps = [c for c in range(0x40000) if not 0xD800 <= c < 0xE000]
    cps += list(range(0x40000, 0xE0000, 101)) + list(range(0xE0000, 0xE1000)) + list(range(0xF0000, 0x110000, 97))
    texts = [f"a{chr(c)}b {chr(c)}x{chr(c)}{chr(c)} 1{chr(c)}" for c in cps]
    hf_elc, ours_elc, _ = elc_pair
    pairs = [
        (WordPieceTokenizer(str(bert_vocab)), BertWordPieceTokenizer(str(bert_vocab))),
        (ours_elc, hf_elc),
    ]
    for ours, hf in pairs:
        got = ours.encode_batch(texts)
        want = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
        bad = [hex(cps[i]) for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
        assert not bad, f"{len(bad)} code points differ, first: {bad[:20]}"


@pytest.mark.slow
def test_real_corpora_parity():
    data = os.environ.get("BERTKIT_DATA")
    if not data:
        pytest.skip("BERTKIT_DATA is not set")
    root = Path(data)
    vocab = root / "vocab.txt"
    ours = WordPieceTokenizer(str(vocab))
    hf = BertWordPieceTokenizer(str(vocab), lowercase=True)
    for name in ["news.txt", "bbc.txt"]:
        lines = (root / name).read_text(encoding="utf-8").split("\n")
        got = ours.encode_batch(lines, threads=2)
        want = [e.ids for e in hf.encode_batch(lines, add_special_tokens=False)]
        bad = [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
        assert not bad, f"{name}: {len(bad)} of {len(lines)} lines differ, first: {lines[bad[0]][:200]!r}"
