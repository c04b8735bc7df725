"""The share of real tokens masked on device equals mask_rate on every view (padding, [CLS]/[SEP] not counted),
Google's max_predictions_per_seq per NSP sequence, and `mask_fraction` in every train record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bertkit._core")

from helpers import make_documents, make_vocab, write_text_corpus  # noqa: E402

from bertkit.data.loader import PretrainingData, StreamState  # noqa: E402
from bertkit.data.prepare import PrepareConfig, prepare  # noqa: E402
from bertkit.exceptions import ConfigError  # noqa: E402
from bertkit.train.config import TrainConfig  # noqa: E402
from bertkit.train.trainer import _Batcher, train  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("share")
    docs = make_documents(500, seed=4, min_sents=4, max_sents=40)
    vocab = make_vocab(root / "vocab.txt", docs[:200])
    src = write_text_corpus(root / "c.txt", docs)
    out = {}
    for L in (128, 512):
        ds = root / f"ds{L}"
        prepare(
            PrepareConfig(
                inputs=[str(src)],
                out=ds,
                tokenizer=vocab,
                instances=["nsp"],
                max_seq_length=L,
                max_predictions_per_seq=round(20 * L / 128),
                dupe_factor=1,
                threads=1,
            )
        )
        out[L] = ds
    return out


def measured_share(dataset: Path, view: str, seq_len: int, batches: int, **cfg) -> tuple[float, int]:
    """Masked real tokens / real tokens over `batches` batches of the view, masked as the trainer masks them."""
    c = TrainConfig(data=str(dataset), out="unused", view=view, seq_len=seq_len, batch_size=32, device="cpu", **cfg)
    data = PretrainingData(dataset, view=view, seq_len=seq_len, batch_size=32, seed=1)
    batcher = _Batcher(c, data, torch.device("cpu"))
    masked = real = 0
    for i, (batch, _) in enumerate(data.batches(StreamState())):
        if i == batches:
            break
        inputs = batcher(batch, seed=100 + i)
        m, r = batcher.last_mask_counts
        masked, real = masked + int(m), real + int(r)
        labels = inputs["mlm_labels"]
        cap = c.max_predictions(seq_len)
        if cap is not None and view != "static-nsp":
            per_row = torch.bincount(inputs["mlm_positions"][labels != -100] // seq_len, minlength=32)
            assert int(per_row.max()) <= cap
    return masked / real, real


@pytest.mark.slow
@pytest.mark.parametrize("seq_len", [128, 512])
@pytest.mark.parametrize("view", ["nsp", "mlm", "static-nsp"])
def test_share_of_real_tokens_masked_is_the_rate(corpus, seq_len, view):
    share, real = measured_share(corpus[seq_len], view, seq_len, batches=12 if seq_len == 128 else 4)
    assert real > 30000
    assert abs(share - 0.15) < 0.005, f"{view} at {seq_len}: {share:.4f} of {real} real tokens masked"


def test_wwm_and_span_shares_on_the_nsp_view(corpus):
    for masking in ("wwm", "span"):
        share, _ = measured_share(corpus[128], "nsp", 128, batches=12, masking=masking)
        assert abs(share - 0.15) < 0.005, (masking, share)


def test_nsp_view_caps_at_google_max_predictions(corpus):
    c = TrainConfig(view="nsp", seq_len=128)
    assert c.max_predictions(128) == 20 and c.max_predictions(512) == 80
    assert TrainConfig(view="mlm").max_predictions(128) is None
    assert TrainConfig(view="mlm", max_predictions_per_seq=7).max_predictions(512) == 7
    # A cap below 15 % of a row binds every full row: at most 10 per sequence (asserted inside).
    share, _ = measured_share(corpus[128], "nsp", 128, batches=4, max_predictions_per_seq=10)
    assert share < 0.1


@pytest.mark.parametrize(
    "kw, needle",
    [
        ({"max_predictions_per_seq": 0}, "max_predictions_per_seq = 0 must be an integer >= 1"),
        ({"max_predictions_per_seq": 129}, "above seq_len 128"),
        ({"max_predictions_per_seq": 200, "phases": [{"fraction": 0.5, "seq_len": 128, "batch_size": 8},
                                                    {"fraction": 0.5, "seq_len": 512, "batch_size": 2}]},
         "above seq_len 128"),
        ({"max_predictions_per_seq": 20, "view": "static-nsp"}, "static-nsp view comes masked by prepare"),
    ],
)  # fmt: skip
def test_bad_max_predictions_is_refused_before_any_work(tmp_path, kw, needle):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=needle):
        TrainConfig(data=str(tmp_path / "missing"), out=str(out), seq_len=128, **kw)
    assert not out.exists()


def test_mask_fraction_in_every_train_record(corpus, tmp_path):
    run = tmp_path / "run"
    cfg = TrainConfig(data=str(corpus[128]), out=str(run), preset="tiny", view="nsp", seq_len=128, batch_size=16,
                      max_steps=4, grad_accum=2, log_every=1, eval_every=0, checkpoint_every=0, tensorboard=False,
                      plot=False, device="cpu", lr=1e-3, warmup=1)  # fmt: skip
    train(cfg)
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train_recs = [r for r in recs if r["kind"] == "train"]
    assert len(train_recs) == 4
    assert all(abs(r["mask_fraction"] - 0.15) < 0.02 for r in train_recs), [r["mask_fraction"] for r in train_recs]
