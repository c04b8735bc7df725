"""`benchmarks/quality.py --resume`: the finished rows of a stopped run come back only under the same settings, and a
broken or foreign partial-results file is a clear error naming it."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def quality():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("quality_bench", BENCH / "quality.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCH))


def _args(**changes) -> argparse.Namespace:
    base = {"steps": None, "seed": 0, "ft_lr": 5e-4, "out": Path("t.md"), "json": Path("r.json"), "resume": True}
    return argparse.Namespace(**{**base, **changes})


def test_settings_ignore_outputs_and_row_selection(quality):
    a = quality.run_settings(_args(archs="bert", no_control=True, no_hf=True))
    b = quality.run_settings(
        _args(out=Path("other.md"), json=Path("x.json"), resume=False, archs=None, no_control=False, no_hf=False)
    )
    assert a == b == {"steps": "None", "seed": "0", "ft_lr": "0.0005"}
    assert quality.run_settings(_args(seed=1)) != a


def test_finished_rows_come_back_under_the_same_settings(quality, tmp_path):
    settings = quality.run_settings(_args())
    partial = tmp_path / "r.partial.json"
    assert quality.load_finished_rows(partial, settings) == {}  # nothing finished yet
    rows = [{"name": "bert (tiny)", "mlm_accuracy": 0.1}, {"name": "narrowbert (tiny)", "mlm_accuracy": 0.2}]
    partial.write_text(json.dumps({"rows": rows, "budget": "b", "settings": settings}))
    done = quality.load_finished_rows(partial, settings)
    assert list(done) == ["bert (tiny)", "narrowbert (tiny)"] and done["narrowbert (tiny)"]["mlm_accuracy"] == 0.2


def test_other_settings_or_a_broken_file_is_a_clear_error(quality, tmp_path):
    settings = quality.run_settings(_args())
    partial = tmp_path / "r.partial.json"
    partial.write_text(json.dumps({"rows": [], "settings": quality.run_settings(_args(seed=3, steps=40))}))
    with pytest.raises(SystemExit, match=r"r\.partial\.json: written with other settings \(seed, steps\)"):
        quality.load_finished_rows(partial, settings)
    for text in ("{not json", json.dumps({"rows": []}), json.dumps([1, 2])):
        partial.write_text(text)
        with pytest.raises(SystemExit, match=r"r\.partial\.json: not a quality\.py partial-results file"):
            quality.load_finished_rows(partial, settings)


def test_resume_without_json_stops_before_any_work():
    import subprocess

    r = subprocess.run(
        [sys.executable, str(BENCH / "quality.py"), "--resume"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 1 and "--resume needs --json" in r.stderr and "Traceback" not in r.stderr, r.stderr
