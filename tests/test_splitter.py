"""bertkit._core.split_sentences: handwritten cases per phenomenon, the other splitters, errors,
and (slow) the pySBD Golden Rules and a real corpus."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from bertkit._core import split_sentences
from bertkit.exceptions import ConfigError

REPO = Path(__file__).resolve().parents[1]

CASES = [
    # plain terminals
    ("It snowed. We stayed in.", ["It snowed.", "We stayed in."]),
    ("Is it done? Not yet.", ["Is it done?", "Not yet."]),
    ("Run! The bull is loose.", ["Run!", "The bull is loose."]),
    ("Wow!! Great?! Sure.", ["Wow!!", "Great?!", "Sure."]),
    ("She won in 2019. 300 people cheered.", ["She won in 2019.", "300 people cheered."]),
    # a lower-case word after the stop continues the sentence
    ("Meet me at the Dept. of Labor or the dept. store.", ["Meet me at the Dept. of Labor or the dept. store."]),
    ("He joined Jeopardy! last year.", ["He joined Jeopardy! last year."]),
    # abbreviations
    ("Mrs. Hill and Capt. Ross sailed.", ["Mrs. Hill and Capt. Ross sailed."]),
    ("They drove to St. Paul. It snowed there.", ["They drove to St. Paul.", "It snowed there."]),
    ("Read ch. 3, Vol. 2 and pp. 10-12.", ["Read ch. 3, Vol. 2 and pp. 10-12."]),
    ("Bolt & Sons Ltd. They make nuts.", ["Bolt & Sons Ltd.", "They make nuts."]),
    ("Smith et al. Their paper was long.", ["Smith et al.", "Their paper was long."]),
    ("Ask Ed Ruiz Jr. about it.", ["Ask Ed Ruiz Jr. about it."]),
    ("Cats vs. Dogs is a game.", ["Cats vs. Dogs is a game."]),
    ("Fruit (i.e. Apples) rots.", ["Fruit (i.e. Apples) rots."]),
    # multi-period abbreviations
    ("The U.S.A. team won.", ["The U.S.A. team won."]),
    ("He left the U.S. She stayed.", ["He left the U.S.", "She stayed."]),
    ("Talks at the U.N. General Assembly ended.", ["Talks at the U.N. General Assembly ended."]),
    ("Doors open at 8 a.m. sharp.", ["Doors open at 8 a.m. sharp."]),
    # initials
    ("The poet T. S. Eliot wrote it.", ["The poet T. S. Eliot wrote it."]),
    ("Vitamin C. It helps.", ["Vitamin C.", "It helps."]),
    # numbers, money, URLs, e-mails
    ("Rates rose 0.25 points. Stocks fell 1.5%.", ["Rates rose 0.25 points.", "Stocks fell 1.5%."]),
    ("Lunch cost €12.50. Dinner was free.", ["Lunch cost €12.50.", "Dinner was free."]),
    ("Write to help.desk@uni.example.edu. They reply.", ["Write to help.desk@uni.example.edu.", "They reply."]),
    ("See www.example.co.uk/a.b. Then log in.", ["See www.example.co.uk/a.b.", "Then log in."]),
    # quotes and brackets after the stop
    ('"I quit." He meant it.', ['"I quit."', "He meant it."]),
    ('"I quit." he said.', ['"I quit." he said.']),
    ("‘Never.’ She smiled.", ["‘Never.’", "She smiled."]),
    ("He came (late, as usual.) and sat.", ["He came (late, as usual.) and sat."]),
    ("Done. (Or so we hoped.) Next.", ["Done.", "(Or so we hoped.)", "Next."]),
    # ellipses
    ("So... what now?", ["So... what now?"]),
    ("I thought so... The end.", ["I thought so...", "The end."]),
    ("It is . . . I forget.", ["It is . . . I forget."]),
    ("We waited. . . . Nobody came.", ["We waited.", ". . . Nobody came."]),
    ("Quote [...] resumes here.", ["Quote [...] resumes here."]),
    # lists
    ("1. Open the box 2. Take it out 3. Enjoy", ["1. Open the box", "2. Take it out", "3. Enjoy"]),
    ("1) Red. 2) Blue.", ["1) Red.", "2) Blue."]),
    ("x) one y) two", ["x) one", "y) two"]),
    ("• 7. First • 8. Second", ["• 7. First", "• 8. Second"]),
    ("⁃one ⁃two", ["⁃one", "⁃two"]),
    # line breaks
    ("A line that\nwraps here.", ["A line that\nwraps here."]),
    ("Heading\n\nBody starts. Ends.", ["Heading", "Body starts.", "Ends."]),
    ("To do:\n- wash\n- dry", ["To do:", "- wash", "- dry"]),
    ("Windows\r\n\r\nline ends", ["Windows", "line ends"]),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0][:30] for c in CASES])
def test_rules_cases(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected
    assert split_sentences(text, "rules") == expected


def test_lines_and_none() -> None:
    text = " one. two \r\n\r\nthree\rfour\n  \n"
    assert split_sentences(text, "lines") == ["one. two", "three", "four"]
    assert split_sentences(text, splitter="none") == ["one. two \r\n\r\nthree\rfour"]
    for name in ("rules", "lines", "none"):
        assert split_sentences("", name) == []
        assert split_sentences(" \n\t\n ", name) == []


def test_unknown_splitter_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="punkt"):
        split_sentences("A. B.", "punkt")


def _check_substrings_in_order(text: str, sentences: list[str]) -> None:
    pos = 0
    for s in sentences:
        assert s and s == s.strip()
        found = text.find(s, pos)
        assert found >= 0, f"{s!r} not found after offset {pos}"
        assert not text[pos:found].strip(), "text dropped between sentences"
        pos = found + len(s)
    assert not text[pos:].strip()


@pytest.mark.parametrize(
    "text",
    ["", "...", "?!", "• • •", "1.", "a)", "“”", "x.”’ Y", "Mr.", "Ñ. É. 日本。", "(((. A", "\u00a0.\u00a0B"],
)
def test_output_covers_the_text_in_order(text: str) -> None:
    for name in ("rules", "lines", "none"):
        _check_substrings_in_order(text, split_sentences(text, name))


def _load_bench():
    path = REPO / "benchmarks" / "splitter_bench.py"
    spec = importlib.util.spec_from_file_location("splitter_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_pysbd_golden_rules_at_least_90_percent() -> None:
    bench = _load_bench()
    try:  # pip-downloads pySBD's sdist once into ~/.cache/bertkit/splitter-bench
        cases = bench.load_golden_rules()
    except Exception as e:  # no network / no pip: nothing to check against
        pytest.skip(f"pySBD sdist unavailable: {e}")
    assert len(cases) == 48
    ok, failures = bench.evaluate(cases, lambda t: split_sentences(t, "rules"))
    assert ok / len(cases) >= 0.90, [f"#{n}: {got}" for n, _, got in failures]


@pytest.mark.slow
def test_real_corpus_is_covered_and_plausible() -> None:
    data = os.environ.get("BERTKIT_DATA")
    if not data:
        pytest.skip("BERTKIT_DATA is unset")
    text = (Path(data) / "news.txt").read_text(encoding="utf-8")
    paragraphs = [p for p in text.split("\n\n") if p.strip()][:500]
    lengths = []
    for p in paragraphs:
        sentences = split_sentences(p)
        _check_substrings_in_order(p, sentences)
        lengths += [len(s) for s in sentences]
    whole = split_sentences("\n\n".join(paragraphs))
    assert len(whole) == len(lengths)  # blank lines end sentences: same as per paragraph
    mean = sum(lengths) / len(lengths)
    assert 60 < mean < 250, mean  # news prose: about 20-25 words a sentence
    assert sum(n < 10 for n in lengths) / len(lengths) < 0.02
