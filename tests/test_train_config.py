"""TrainConfig: TOML loading, unknown keys, precedence CLI > TOML > preset, validation, phases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bertkit.exceptions import ConfigError
from bertkit.train.config import TrainConfig, config_diff

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_from_toml_reads_fields_model_table_and_phases(tmp_path):
    path = write(
        tmp_path,
        """
arch = "bert"
preset = "tiny"
optimizer = "lamb"
lr = 1e-2
warmup = 100
max_steps = 1000
betas = [0.9, 0.98]
[model]
hidden_dropout_prob = 0.0
[[phases]]
fraction = 0.9
seq_len = 128
batch_size = 256
[[phases]]
fraction = 0.1
seq_len = 512
batch_size = 64
""",
    )
    c = TrainConfig.from_toml(path)
    assert (c.optimizer, c.lr, c.betas, c.model) == ("lamb", 1e-2, [0.9, 0.98], {"hidden_dropout_prob": 0.0})
    assert [(p.seq_len, p.batch_size) for p in c.resolved_phases()] == [(128, 256), (512, 64)]
    assert c.phase_starts() == [0, 900]
    assert c.warmup_steps() == 100 and c.max_seq_len() == 512


def test_unknown_key_names_the_key_and_the_file(tmp_path):
    path = write(tmp_path, 'preset = "tiny"\nlearning_rate = 0.1\n')
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_toml(path)
    assert "learning_rate" in str(e.value) and str(path) in str(e.value)


def test_unknown_phase_key_and_bad_fractions(tmp_path):
    with pytest.raises(ConfigError, match="seqlen"):
        TrainConfig(phases=[{"fraction": 1.0, "seqlen": 128, "batch_size": 8}])
    with pytest.raises(ConfigError, match="sum to"):
        TrainConfig(phases=[{"fraction": 0.5, "seq_len": 128, "batch_size": 8}])


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="invalid TOML"):
        TrainConfig.from_toml(write(tmp_path, "lr = = 1"))
    with pytest.raises(ConfigError, match="not found"):
        TrainConfig.from_toml(tmp_path / "nope.toml")


def test_precedence_cli_over_toml_over_defaults(tmp_path):
    path = write(tmp_path, "lr = 0.5\nmax_steps = 10\n[model]\nhidden_size = 64\nnum_attention_heads = 2\n")
    c = TrainConfig.from_toml(path, {"lr": 0.25, "max_steps": None, "model": {"num_attention_heads": 4}})
    assert c.lr == 0.25  # CLI beats TOML
    assert c.max_steps == 10  # None = flag not given
    assert c.model == {"hidden_size": 64, "num_attention_heads": 4}  # merged key by key
    assert c.seed == TrainConfig().seed  # default


def test_cli_seq_len_replaces_the_phases(tmp_path):
    c = TrainConfig(
        phases=[{"fraction": 0.5, "seq_len": 64, "batch_size": 8}, {"fraction": 0.5, "seq_len": 128, "batch_size": 4}]
    )
    d = c.with_overrides({"seq_len": 32})
    assert d.phases == [] and d.resolved_phases()[0].seq_len == 32 and d.resolved_phases()[0].batch_size == 8


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"view": "xyz"}, "view"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"schedule": "step"}, "schedule"),
        ({"mask_p": 0.9, "random_p": 0.2}, "mask_p"),
        ({"seq_len": 4}, "seq_len"),
        ({"warmup": 2.5}, "warmup"),
        ({"warmup": 2000, "max_steps": 1000}, "warmup"),
        ({"betas": [0.9]}, "betas"),
        ({"lr": 0.0}, "lr"),
        ({"grad_accum": 0}, "grad_accum"),
        ({"nan_policy": "ignore"}, "nan_policy"),
        ({"compile": "yes"}, "compile"),
        ({"lamb_trust_ratio": "elc"}, "lamb_trust_ratio"),
    ],
)
def test_validation_errors(changes, needle):
    with pytest.raises(ConfigError, match=needle):
        TrainConfig(**changes)


def test_automatic_adam_eps():
    assert TrainConfig().eps is None and TrainConfig().resolved_eps() == 1e-6  # BERT's
    assert TrainConfig(arch="nextlevel").resolved_eps() == 1e-8  # NextLevelBERT's (torch AdamW default)
    assert TrainConfig(arch="nextlevel", eps=1e-6).resolved_eps() == 1e-6
    assert TrainConfig(eps=0.0).resolved_eps() == 0.0
    with pytest.raises(ConfigError, match="eps"):
        TrainConfig(eps=-1e-8)


def test_warmup_fraction_and_to_dict_round_trip(tmp_path):
    c = TrainConfig(warmup=0.016, max_steps=15625, model={"a": 1})
    assert c.warmup_steps() == 250
    d = c.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert TrainConfig.from_dict(d) == c
    c.save_json(tmp_path / "c.json")
    assert TrainConfig.from_dict(json.loads((tmp_path / "c.json").read_text())) == c


def test_config_diff_lists_keys_outside_the_mutable_set():
    a, b = TrainConfig(lr=1e-3).to_dict(), TrainConfig(lr=2e-3, log_every=5).to_dict()
    diff = config_diff(a, b)
    assert len(diff) == 1 and diff[0].startswith("lr:")


def test_config_diff_compares_automatic_values_by_what_they_resolve_to():
    auto, same = TrainConfig(arch="nextlevel").to_dict(), TrainConfig(arch="nextlevel", eps=1e-8).to_dict()
    assert config_diff(auto, same) == []
    assert config_diff(auto, TrainConfig(arch="nextlevel", eps=1e-6).to_dict()) == ["eps: 1e-08 → 1e-06"]
    assert config_diff(TrainConfig().to_dict(), TrainConfig(mix_lr_scale=10.0).to_dict()) == []
    older = {k: v for k, v in auto.items() if k != "eps"}  # a run from before the key existed stays different
    assert config_diff(older, auto) == ["eps: '<absent>' → 1e-08"]


def test_config_module_does_not_import_torch():
    code = "import sys, bertkit.train.config, bertkit.train; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_example_configs_load():
    files = sorted((REPO / "configs").glob("*.toml"))
    assert files, "configs/*.toml examples are missing"
    for f in files:
        TrainConfig.from_toml(f)
