"""Small, deterministic corpora and vocabularies for tests (no downloads)."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np

WORDS = (
    "the of and to in a is that for it as was with be by on not he i this are or his from at which but have an they "
    "you were her she there one all we their can has been if more when will would who so no about time people year "
    "market government report children family history music science village river mountain computer language "
    "teacher student morning evening doctor policy economy election minister company research university"
).split()
NOUNS = "market government report family history music science village river mountain computer language".split()
NAMES = "Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Niaj Olivia Peggy Rupert Sybil Trent".split()


def make_documents(n_docs: int, seed: int = 0, min_sents: int = 1, max_sents: int = 12) -> list[list[str]]:
    """Documents as lists of sentences of plain English-looking prose."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        sents = []
        for _ in range(rng.randint(min_sents, max_sents)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(4, 25))]
            if rng.random() < 0.3:
                words.insert(rng.randrange(len(words)), rng.choice(NAMES))
            if rng.random() < 0.2:
                words.insert(rng.randrange(len(words)), f"{rng.randint(1, 2000)},")
            words.append(rng.choice(NOUNS))  # no single-letter word before the full stop ("a." looks like an initial)
            s = " ".join(words)
            sents.append(s[0].upper() + s[1:] + rng.choice([".", ".", ".", "?", "!"]))
        docs.append(sents)
    return docs


def write_text_corpus(path: Path, docs: list[list[str]], newline: str = "\n") -> Path:
    path.write_text((newline * 2).join(" ".join(d) for d in docs) + newline, encoding="utf-8", newline="")
    return path


def write_jsonl_corpus(path: Path, docs: list[list[str]], field: str = "text") -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({field: " ".join(d)}) + "\n")
    return path


def make_vocab(path: Path, docs: list[list[str]] | None = None, size: int = 600) -> Path:
    """A BERT-style vocab.txt trained with HF `tokenizers` on the given documents."""
    from tokenizers import BertWordPieceTokenizer

    docs = docs if docs is not None else make_documents(200, seed=123)
    tok = BertWordPieceTokenizer(lowercase=True)
    tok.train_from_iterator(
        [" ".join(d) for d in docs],
        vocab_size=size,
        min_frequency=1,
        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        show_progress=False,
    )
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    path.write_text("".join(t + "\n" for t, _ in vocab), encoding="utf-8")
    return path


def load_array(dataset: Path, rel: str) -> np.ndarray:
    return np.load(dataset / rel, mmap_mode="r")


def manifest(dataset: Path) -> dict:
    return json.loads((dataset / "manifest.json").read_text())


def corpus_arrays(dataset: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Global (tokens, sentence_offsets, document_offsets, document_sources) with numpy only."""
    m = manifest(dataset)
    toks, so, do, src = [], [0], [0], []
    for s in m["shards"]:
        if s["kind"] != "corpus":
            continue
        a = s["arrays"]
        t = np.load(dataset / a["tokens"]["path"], mmap_mode="r")
        o = np.load(dataset / a["sentence_offsets"]["path"], mmap_mode="r")
        d = np.load(dataset / a["document_offsets"]["path"], mmap_mode="r")
        base_t = sum(len(x) for x in toks)
        base_s = len(so) - 1
        toks.append(np.asarray(t))
        so.extend((o[1:] + base_t).tolist())
        do.extend((d[1:] + base_s).tolist())
        src.extend(np.load(dataset / a["document_sources"]["path"]).tolist())
    tokens = np.concatenate(toks) if toks else np.zeros(0, np.uint16)
    return tokens, np.array(so, np.uint64), np.array(do, np.uint64), np.array(src, np.uint32)


def run_cli(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run `python -m bertkit_cli ARGS` in a subprocess (a real process: exit codes, signals, no shared state)."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return subprocess.run(
        [sys.executable, "-m", "bertkit_cli", *args], capture_output=True, text=True, timeout=timeout, env=env, **kw
    )


def load_script(name: str):
    """``scripts/<name>.py`` imported as the module ``name`` (registered in ``sys.modules``: dataclasses need it)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def without_bertkit(work: Path) -> dict[str, str]:
    """The environment of a fresh process in which ``import bertkit`` fails (even with bertkit installed in the
    venv): a directory first on the path holds a ``bertkit`` package that raises ImportError. For exports that must
    load with other tools alone."""
    blocker = work / "no-bertkit"
    (blocker / "bertkit").mkdir(parents=True, exist_ok=True)
    (blocker / "bertkit" / "__init__.py").write_text('raise ImportError("bertkit is not installed here")\n')
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(blocker)
    return env
