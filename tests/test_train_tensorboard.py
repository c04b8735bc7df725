"""TensorBoard: the resolved config as text and the hparams table, read back with TensorBoard's own reader."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("tensorboard")
pytest.importorskip("bertkit._core")


def test_hparams_and_config_are_logged(tmp_path):
    from conftest import random_docs, tiny_train_config, write_fixture_dataset
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    from bertkit.train.trainer import train

    ds = write_fixture_dataset(tmp_path / "ds", random_docs(120, seed=5), docs_per_shard=60)
    cfg = tiny_train_config(ds, tmp_path / "run", batch_size=4, max_steps=2, lr=1e-3, eval_every=0, log_every=1,
                            checkpoint_every=0, tensorboard=True)  # fmt: skip
    summary = train(cfg)
    assert not any("TensorBoard" in n for n in summary.notes)
    acc = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"tensors": 0})
    acc.Reload()
    assert "train/loss" in acc.Tags()["scalars"]
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    logged = json.loads(text.strip("`\n"))
    assert logged["config"] == json.loads((tmp_path / "run" / "config.json").read_text())
    assert logged["arch"] == "bert" and logged["model_config"]["vocab_size"] == 64
    content = acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert start.hparams["lr"].number_value == pytest.approx(1e-3)
    assert start.hparams["optimizer"].string_value == "adamw"
    assert start.hparams["model.hidden_size"].number_value == 128
    experiment = acc.SummaryMetadata("_hparams_/experiment").plugin_data.content
    tags = [m.name.tag for m in plugin_data_pb2.HParamsPluginData.FromString(experiment).experiment.metric_infos]
    assert tags == ["eval/mlm_loss", "eval/mlm_accuracy", "train/loss"]
