"""`prepare --ray`: partitions prepared as Ray tasks on a local runtime with 2 workers, merged; the result equals
preparing each partition locally and merging; failures are reported by partition and nothing looks complete."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import make_documents, make_vocab, manifest, run_cli, write_jsonl_corpus

from bertkit.data.merge import merge_datasets
from bertkit.data.prepare import PrepareConfig, prepare
from bertkit.data.ray_prepare import PartitionError, plan_partitions, prepare_on_ray
from bertkit.exceptions import ConfigError

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("ray")
    docs = make_documents(600, seed=3)
    texts = [" ".join(x) for x in docs]
    write_jsonl_corpus(d / "a.jsonl", docs[:150])
    write_jsonl_corpus(d / "b.jsonl", docs[150:300])
    pq.write_table(pa.table({"text": texts[300:]}), d / "c.parquet", row_group_size=30)  # 10 row groups
    vocab = make_vocab(d / "vocab.txt", docs)
    return d, vocab


def arrays(dataset: Path) -> list[tuple]:
    m = manifest(dataset)
    return [(name, a["xxh3"], a["shape"]) for s in m["shards"] for name, a in sorted(s["arrays"].items())]


def test_partitions_follow_files_and_parquet_row_groups(corpus):
    d, _ = corpus
    size = (d / "c.parquet").stat().st_size
    parts = plan_partitions([d / "a.jsonl", d / "b.jsonl", d / "c.parquet"], partition_bytes=size // 3)
    specs = [p.inputs for p in parts]
    assert specs[0] == [str(d / "a.jsonl")] and specs[1] == [str(d / "b.jsonl")]
    rest = [s[0] for s in specs[2:]]
    assert all("c.parquet#row_groups=" in s for s in rest) and len(rest) >= 3
    bounds = [tuple(map(int, s.rsplit("=", 1)[1].split(":"))) for s in rest]
    assert (
        bounds[0][0] == 0
        and bounds[-1][1] == 10
        and all(a[1] == b[0] for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    )
    with pytest.raises(ConfigError, match="standard input"):
        plan_partitions(["-"], 1 << 20)


@pytest.mark.slow
def test_ray_equals_local_partitions_merged_and_failures_are_reported(corpus, tmp_path):
    d, vocab = corpus
    inputs = [d / "a.jsonl", d / "b.jsonl", d / "c.parquet"]
    size = (d / "c.parquet").stat().st_size
    cfg = PrepareConfig(inputs=inputs, out=tmp_path / "ray", tokenizer=vocab, instances=["mlm"], shard_size=16 << 10)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = prepare_on_ray(cfg, partition_bytes=size // 3)
        assert summary["partitions"] >= 5 and summary["reused_partitions"] == 0

        # The same partitions prepared locally, one by one, and merged.
        parts = plan_partitions(inputs, size // 3)
        local = []
        for p in parts:
            out = tmp_path / "local" / p.name
            prepare(PrepareConfig(inputs=p.inputs, out=out, tokenizer=vocab, instances=["mlm"], shard_size=16 << 10))
            local.append(out)
        merge_datasets(local, tmp_path / "merged")
        assert arrays(tmp_path / "ray") == arrays(tmp_path / "merged")
        assert manifest(tmp_path / "ray")["totals"] == manifest(tmp_path / "merged")["totals"]
        assert manifest(tmp_path / "ray")["totals"]["documents"] == 600

        # A partition left by a killed attempt (state file, some shards, no manifest) is resumed, and until
        # then nothing looks complete.
        part = tmp_path / "ray" / "parts" / "part-00001"
        m = json.loads((part / "manifest.json").read_text())
        (tmp_path / "ray" / "manifest.json").unlink()
        (part / "manifest.json").unlink()
        state = {**m["config"], "threads": 0, "overwrite": False, "resume": False}
        prev = {"config": state, "inputs": m["inputs"], "tokenizer": m["tokenizer"]}
        (part / "prepare.json").write_text(json.dumps(prev))
        records = sorted((part / "shards").glob("*.json"))
        assert len(records) >= 2
        for r in records[len(records) // 2 :]:
            r.unlink()
        resumed = prepare_on_ray(cfg, partition_bytes=size // 3)
        assert resumed["reused_partitions"] == resumed["partitions"] - 1
        assert arrays(tmp_path / "ray") == arrays(tmp_path / "merged")
        assert not (part / "prepare.json").exists()

        # A second run reuses every complete partition; the merged manifest is the same.
        again = prepare_on_ray(dataclass_replace(cfg, overwrite=True), partition_bytes=size // 3)
        assert again["reused_partitions"] == again["partitions"]
        assert arrays(tmp_path / "ray") == arrays(tmp_path / "merged")

        # A bad partition is reported by name with its input; the others complete, no merged manifest.
        bad = d / "bad.jsonl"
        bad.write_text('{"text": "fine"}\n{"body": "no text field"}\n')
        cfg2 = PrepareConfig(inputs=[d / "a.jsonl", bad], out=tmp_path / "bad", tokenizer=vocab)
        with pytest.raises(PartitionError, match=r"partition part-00001 \(.*bad\.jsonl\): .*bad\.jsonl:2: no field"):
            prepare_on_ray(cfg2, partition_bytes=1)
        assert not (tmp_path / "bad" / "manifest.json").exists()
        assert (tmp_path / "bad" / "parts" / "part-00000" / "manifest.json").exists()
    finally:
        ray.shutdown()
    plan = json.loads((tmp_path / "ray" / "ray_plan.json").read_text())
    assert len(plan["partitions"]) == summary["partitions"]


def dataclass_replace(cfg, **kw):
    import dataclasses

    return dataclasses.replace(cfg, **kw)


def test_an_address_that_does_not_answer_is_a_clear_error(corpus, tmp_path):
    d, vocab = corpus
    res = run_cli(
        "prepare", str(d / "a.jsonl"), "--tokenizer", str(vocab), "--out", str(tmp_path / "o"),
        "--ray", "127.0.0.1:9",
    )  # fmt: skip
    assert res.returncode == 1, res.stderr
    assert "Ray address 127.0.0.1:9 does not answer" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists()
