"""Without an optional dependency every command ends in one line naming the extra to install; the bag-of-words
floor runs without torch (numpy probe) and scores like the torch probe."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from bertkit.extras import EXTRA_OF, install_hint

BLOCK = (
    "import sys\nfor m in {blocked!r}: sys.modules[m] = None\n"
    "sys.argv = ['bertkit', *{args!r}]\nfrom bertkit_cli import main\nmain()\n"
)


def run_without(blocked: list[str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``bertkit ARGS`` in a fresh process where importing any of ``blocked`` fails as if it were not installed."""
    code = BLOCK.format(blocked=blocked, args=list(args))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_install_hint_names_the_extra():
    for module, extra in EXTRA_OF.items():
        hint = install_hint(ModuleNotFoundError(f"No module named '{module}'", name=f"{module}.sub"))
        assert hint == f'{module} is not installed; this needs the {extra} extra: pip install "bertkit[{extra}]"'
    assert install_hint(ModuleNotFoundError("No module named 'bertkit.nope'", name="bertkit.nope")) is None
    extras = set(EXTRA_OF.values())
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert all(f"\n{extra} = [" in text for extra in extras)


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--data", "ds", "--out", "run"],
        ["eval", "mlm", "run"],
        ["export", "hf", "run", "out"],
    ],
)
def test_commands_without_torch_name_the_train_extra(tmp_path, args):
    result = run_without(["torch"], *args, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ['error: torch is not installed; this needs the train extra: pip install "bertkit[train]"']


def test_help_needs_no_torch():
    result = run_without(["torch"], "train", "--help")
    assert result.returncode == 0 and "--arch" in result.stdout


def _noisy_task(root: Path) -> Path:
    """Sentiment-like rows where a word's polarity decides the label 80 % of the time."""
    root.mkdir(parents=True)
    pos, neg, filler = ["good", "great", "fine"], ["bad", "poor", "awful"], "the a of movie plot and it was".split()
    for seed, (split, n) in enumerate((("train", 300), ("dev", 80), ("test", 80))):
        rng = random.Random(seed)
        rows = []
        for _ in range(n):
            y = rng.randrange(2)
            shown = y if rng.random() < 0.8 else 1 - y
            words = [rng.choice(filler) for _ in range(6)] + [rng.choice(pos if shown else neg)]
            rng.shuffle(words)
            rows.append(json.dumps({"text": " ".join(words), "label": ["neg", "pos"][y]}))
        (root / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    return root


def test_numpy_probe_matches_the_torch_probe(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from bertkit.eval import probe as probe_lib

    task = _noisy_task(tmp_path / "task")
    texts = {
        s: [json.loads(x)["text"] for x in (task / f"{s}.jsonl").read_text().splitlines()] for s in ("train", "dev")
    }
    labels = {s: [json.loads(x)["label"] == "pos" for x in (task / f"{s}.jsonl").read_text().splitlines()]
              for s in ("train", "dev")}  # fmt: skip
    vec = probe_lib.TfidfVectorizer(min_df=1).fit(texts["train"])
    with_torch = probe_lib.fit_logistic(vec.transform(texts["train"]), labels["train"], 2, l2=1e-3)
    torch_pred = with_torch.predict(vec.transform(texts["dev"]))
    monkeypatch.setattr(probe_lib, "_has_torch", lambda: False)
    features = vec.transform(texts["train"])
    assert isinstance(features, probe_lib.SparseRows)
    plain = probe_lib.fit_logistic(features, labels["train"], 2, l2=1e-3)
    assert plain.predict(vec.transform(texts["dev"])) == torch_pred
    assert plain.weight == pytest.approx(with_torch.weight.double().numpy(), abs=2e-3)
    # dense features (embeddings) too: standardised, the same optimum
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = (x[:, 0] + 0.5 * rng.normal(size=200) > 0).astype(int).tolist()
    dense = probe_lib.fit_logistic(x, y, 2, l2=1e-2)
    monkeypatch.setattr(probe_lib, "_has_torch", lambda: True)
    ref = probe_lib.fit_logistic(x.astype(np.float32), y, 2, l2=1e-2)
    assert dense.weight == pytest.approx(ref.weight.double().numpy(), abs=1e-3)


def test_bow_floor_runs_without_torch(tmp_path):
    task = _noisy_task(tmp_path / "task")
    args = ["eval", "classify", "--bow", "--data", str(task), "--json", "-q"]
    plain = run_without(["torch"], *args)
    assert plain.returncode == 0, plain.stderr
    result = json.loads(plain.stdout)
    assert 0.7 <= result["median"]["test"]["accuracy"] <= 0.95 and result["source"]["kind"] == "bow"
    pytest.importorskip("torch")
    from bertkit.eval.classify import evaluate_classify

    ref = evaluate_classify(task / "train.jsonl", dev=task / "dev.jsonl", test=task / "test.jsonl", mode="bow")
    assert result["median"] == ref["median"] and result["config"]["l2"] == ref["config"]["l2"]
