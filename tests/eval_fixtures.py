"""Handmade fixtures for the fine-tuning evaluations: GLUE directories in the official TSV layout and as Hugging
Face parquet / save_to_disk copies, and tiny backbones (a bert model built in Python, a trained run directory)."""

from __future__ import annotations

import random
from pathlib import Path

from conftest import TINY_VOCAB

WORDS = ["the", "cat", "sat", "on", "mat", "dog", "run", "."] + [f"w{i}" for i in range(14, 40)]

# GLUE task → (TSV header or None, row builder(text, pair, label) → TSV columns, label strings)
_TSV = {
    "CoLA": (None, lambda a, b, y: ["src", y, "", a], ["0", "1"]),
    "SST-2": (["sentence", "label"], lambda a, b, y: [a, y], ["0", "1"]),
    "MRPC": (["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"], lambda a, b, y: [y, "1", "2", a, b], ["0", "1"]),
    "STS-B": (
        ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"],
        lambda a, b, y: ["0", "g", "f", "2012", "0", "s", "s", a, b, y],
        None,
    ),
    "QQP": (
        ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
        lambda a, b, y: ["0", "1", "2", a, b, y],
        ["0", "1"],
    ),
    "MNLI": (
        ["index", "promptID", "pairID", "genre", "sentence1", "sentence2", "label1", "gold_label"],
        lambda a, b, y: ["0", "1", "2", "g", a, b, y, y],
        ["entailment", "neutral", "contradiction"],
    ),
    "QNLI": (
        ["index", "question", "sentence", "label"],
        lambda a, b, y: ["0", a, b, y],
        ["entailment", "not_entailment"],
    ),
    "RTE": (
        ["index", "sentence1", "sentence2", "label"],
        lambda a, b, y: ["0", a, b, y],
        ["entailment", "not_entailment"],
    ),
    "WNLI": (["index", "sentence1", "sentence2", "label"], lambda a, b, y: ["0", a, b, y], ["0", "1"]),
}
SINGLE = {"CoLA", "SST-2"}


def sentence(rng: random.Random, label: int | float | None = None) -> str:
    """A few tiny-vocabulary words; with a label, 'cat' (label 0) or 'dog' (label > 0) marks the class."""
    words = [rng.choice(WORDS[8:]) for _ in range(rng.randint(3, 7))]
    if label is not None:
        words.insert(rng.randrange(len(words) + 1), "dog" if label else "cat")
    return " ".join(words)


def _rows(task: str, n: int, seed: int) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    labels = _TSV[task][2]
    rows = []
    for _ in range(n):
        if labels is None:
            value = round(rng.uniform(0, 5), 2)
            y, cls = f"{value}", int(value > 2.5)
        else:
            cls = rng.randrange(len(labels))
            y = labels[cls]
        rows.append((sentence(rng, cls), sentence(rng), y))
    return rows


def write_glue_tsv(root: Path, tasks: list[str] | None = None, n_train: int = 24, n_dev: int = 8) -> Path:
    """The official GLUE download layout for ``tasks`` (directory names, default all nine)."""
    for task in tasks or list(_TSV):
        header, build, _ = _TSV[task]
        d = root / task
        d.mkdir(parents=True, exist_ok=True)
        files = {"train.tsv": n_train}
        files.update({"dev_matched.tsv": n_dev, "dev_mismatched.tsv": n_dev} if task == "MNLI" else {"dev.tsv": n_dev})
        for seed, (name, n) in enumerate(files.items()):
            lines = ["\t".join(header)] if header else []
            lines += ["\t".join(build(a, b, y)) for a, b, y in _rows(task, n, seed)]
            (d / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        (d / "test.tsv").write_text("index\tsentence\n0\tthe cat\n", encoding="utf-8")
    return root


HF = {
    "sst2": ("sentence", None, 2),
    "rte": ("sentence1", "sentence2", 2),
    "stsb": ("sentence1", "sentence2", None),
    "mnli": ("premise", "hypothesis", 3),
}


def hf_table(task: str, n: int, seed: int, label_offset: int = 0) -> dict[str, list]:
    text, pair, classes = HF[task]
    rng = random.Random(seed)
    columns: dict[str, list] = {text: [], "label": [], "idx": []}
    if pair:
        columns[pair] = []
    for i in range(n):
        label = round(rng.uniform(0, 5), 2) if classes is None else rng.randrange(classes) + label_offset
        columns[text].append(sentence(rng, label))
        if pair:
            columns[pair].append(sentence(rng))
        columns["label"].append(label)
        columns["idx"].append(i)
    return columns


def hf_splits(task: str) -> list[str]:
    return ["train", "validation_matched", "validation_mismatched"] if task == "mnli" else ["train", "validation"]


def write_glue_parquet(root: Path, tasks: list[str], n: int = 16) -> Path:
    """The hub layout of nyu-mll/glue: ``<task>/<split>-00000-of-00001.parquet``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for task in tasks:
        (root / task).mkdir(parents=True, exist_ok=True)
        for seed, split in enumerate(hf_splits(task)):
            pq.write_table(pa.table(hf_table(task, n, seed)), root / task / f"{split}-00000-of-00001.parquet")
    return root


def tiny_backbone(seed: int = 0, vocab: list[str] | None = None, tmp: Path | None = None):
    """A freshly initialised tiny bert (dropout as the preset) with a WordPiece tokenizer over ``vocab``."""
    import torch

    from bertkit.eval.finetune import Backbone
    from bertkit.eval.text import load_tokenizer
    from bertkit.models import build_model, get_architecture

    vocab = vocab or TINY_VOCAB
    assert tmp is not None
    path = tmp / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    torch.manual_seed(seed)
    model = build_model("bert", "tiny", vocab_size=len(vocab), max_position_embeddings=64)
    return Backbone(get_architecture("bert"), model.eval(), load_tokenizer(path), "tiny-bert", "model")


# ------------------------------------------------------------------------------------------------ a fake architecture
# Not BERT in any way (a bag of position-tagged embeddings, mean-pooled): evaluation code that works with it works
# through the registry and the fine-tuning contract alone. It has a sequence head and no token head.


def fake_architecture():
    from dataclasses import dataclass

    import torch
    import torch.nn.functional as F
    from torch import nn

    from bertkit.models.base import Architecture, ModelConfig, PretrainingOutput, SequenceClassificationOutput

    @dataclass(frozen=True)
    class BagConfig(ModelConfig):
        vocab_size: int = 64
        hidden_size: int = 32
        max_position_embeddings: int = 128
        embedding_dropout: float = 0.0
        pad_token_id: int = 0

    class BagEncoder(nn.Module):
        def __init__(self, config: BagConfig) -> None:
            super().__init__()
            self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
            self.position = nn.Embedding(config.max_position_embeddings, config.hidden_size)
            self.mix = nn.Linear(config.hidden_size, config.hidden_size)
            self.dropout = nn.Dropout(config.embedding_dropout)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            return torch.tanh(self.mix(self.dropout(self.embed(input_ids) + self.position(positions))))

    class BagForPreTraining(nn.Module):
        def __init__(self, config: BagConfig) -> None:
            super().__init__()
            self.config = config
            self.encoder = BagEncoder(config)
            self.bias = nn.Parameter(torch.zeros(config.vocab_size))

        def flops_per_token(self, seq_len: int, head_fraction: float = 0.15) -> float:
            return 1.0

        def forward(
            self,
            input_ids,
            attention_mask=None,
            token_type_ids=None,
            mlm_positions=None,
            mlm_labels=None,
            next_sentence_label=None,
            *,
            return_predictions=False,
            label_smoothing=0.0,
        ):
            hidden = self.encoder(input_ids)
            rows = hidden.reshape(-1, hidden.shape[-1]).index_select(0, mlm_positions)
            logits = rows @ self.encoder.embed.weight.T + self.bias
            loss = F.cross_entropy(logits, mlm_labels, ignore_index=-100)
            valid = mlm_labels != -100
            predicted = logits.argmax(-1)
            return PretrainingOutput(
                loss,
                loss,
                ((predicted == mlm_labels) & valid).sum(),
                valid.sum(),
                mlm_predictions=predicted if return_predictions else None,
            )

    class BagForSequenceClassification(nn.Module):
        def __init__(self, config: BagConfig, num_labels: int) -> None:
            super().__init__()
            self.config = config
            self.encoder = BagEncoder(config)
            self.classifier = nn.Linear(config.hidden_size, num_labels)

        def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
            hidden = self.encoder(input_ids)
            mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            logits = self.classifier(pooled)
            loss = None
            if labels is not None:
                loss = F.mse_loss(logits[:, 0], labels) if logits.shape[1] == 1 else F.cross_entropy(logits, labels)
            return SequenceClassificationOutput(loss=loss, logits=logits)

        def load_pretrained_encoder(self, model: nn.Module) -> None:
            self.encoder.load_state_dict(model.encoder.state_dict())

    return Architecture(
        name="fakebag",
        config_class=BagConfig,
        pretraining_class=BagForPreTraining,
        presets={"tiny": {}},
        sequence_classification_class=BagForSequenceClassification,
        token_classification_class=None,
        description="test-only bag of embeddings",
    )
