"""`bertkit.load_run(RUN)`: any run as a model in eval mode whose `mlm_logits(input_ids, attention_mask=None)` gives
[B, T, V] logits at every position (NarrowBERT: every position queried, each row as if it were the only query)."""

from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bertkit._core")

from conftest import random_docs, tiny_train_config, write_fixture_dataset  # noqa: E402

import bertkit  # noqa: E402
from bertkit.exceptions import ConfigError  # noqa: E402
from bertkit.train.trainer import train  # noqa: E402

pytest_plugins = ["nextlevel_fixtures"]  # the nl_world / nl_run fixtures


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_fixture_dataset(tmp_path_factory.mktemp("load") / "ds", random_docs(40, seed=1), docs_per_shard=20)


def run_of(dataset, out, arch, **model):
    train(tiny_train_config(dataset, out, arch=arch, model=model, batch_size=8, max_steps=2, warmup=1, eval_every=0,
                            checkpoint_every=2, log_every=1))  # fmt: skip
    return out


@pytest.mark.parametrize("arch", ["bert", "narrowbert", "ltg-bert", "elc-bert"])
def test_load_run_gives_logits_at_every_position(dataset, tmp_path, arch):
    run = run_of(dataset, tmp_path / "run", arch)
    model = bertkit.load_run(run)
    assert isinstance(model, bertkit.RunModel) and not model.training and not model.model.training
    assert model.arch == arch and model.step == 2 and model.checkpoint.name == "ckpt-000002"
    assert model.tokenizer_dir == dataset / "tokenizer"
    ids = torch.randint(5, 64, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.no_grad():
        logits = model.mlm_logits(ids, mask)
        assert logits.shape == (2, 9, model.config.vocab_size)
        assert torch.equal(model(ids, mask), logits)
        torch.testing.assert_close(model.mlm_logits(ids[0]), model.mlm_logits(ids[:1]))  # one sequence, 1-D
        # each position equals asking for that position alone (for NarrowBERT: the narrow query of that row)
        for t in (0, 4, 8):
            alone = model.model.mlm_logits(ids, None, None, torch.tensor([t]))
            torch.testing.assert_close(model.mlm_logits(ids)[0, t], alone[0], atol=1e-5, rtol=0)


def test_load_run_errors_name_the_run(tmp_path, nl_run):
    with pytest.raises(ConfigError, match=f"{tmp_path / 'missing'}: run directory not found"):
        bertkit.load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=f"{tmp_path / 'empty'}: no complete checkpoint"):
        bertkit.load_run(tmp_path / "empty")
    nextlevel = bertkit.load_run(nl_run)
    with pytest.raises(ConfigError, match="predicts chunk vectors, not tokens; use bertkit.NextLevelBERT"):
        nextlevel.mlm_logits(torch.zeros(1, 4, dtype=torch.long))


def test_import_bertkit_stays_light():
    code = "import sys, bertkit; assert callable(bertkit.__getattr__); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
