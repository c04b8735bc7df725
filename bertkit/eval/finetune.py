"""Fine-tuning for ``bertkit eval glue | classify | ner``: what to fine-tune (a :class:`Backbone`), the library
trainer (:func:`finetune`), and several seeds / a small grid with medians (:func:`run_grid`).

Everything goes through the fine-tuning contract of ``bertkit.models.base``: the architecture's
``sequence_classification_class`` / ``token_classification_class`` built from the pretrained model's config, then
``load_pretrained_encoder``. Nothing here knows one architecture from another; an architecture without the head a
task needs is a ConfigError raised before any data is read (:func:`check_head`).

The trainer: AdamW (no decay on biases and norms), linear (or cosine) decay after a linear warmup, gradient clipping,
dynamic padding, an evaluation on the selection set after every epoch (or every ``eval_every`` steps), optional
early stopping (``patience``), and either the last state (``select="last"``, GLUE-sane: no choice made on the data
reported) or the best one on the selection set (``select="best"``, for tasks with a separate test split). CPU runs
in fp32; CUDA in bf16 autocast. With the same seed and device a run is repeated exactly: the seed fixes the head's
initialisation, dropout and the order of the training examples.
"""

from __future__ import annotations

import copy
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from bertkit.eval.text import Encoded, TextTokenizer, check_max_len, load_tokenizer, run_tokenizer_dir
from bertkit.exceptions import ConfigError, FormatError

__all__ = [
    "HEADS",
    "Backbone",
    "FinetuneConfig",
    "SequenceData",
    "TokenData",
    "check_config",
    "check_head",
    "encode_sequences",
    "encode_token_sentences",
    "finetune",
    "load_backbone",
    "run_grid",
    "write_text_atomic",
]

HEADS = {"sequence": "sequence_classification_class", "token": "token_classification_class"}
HEAD_NAMES = {"sequence": "sequence-classification", "token": "token-classification"}
SCHEDULES = ("linear", "cosine", "constant")
SELECT = ("last", "best")
ProgressFn = Callable[[dict[str, Any]], None]


# ------------------------------------------------------------------------------------------------ config


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of one fine-tuning run (validated on construction)."""

    lr: float = 4e-5
    batch_size: int = 16
    epochs: int = 3
    warmup: float = 0.1
    """Warmup: < 1 a fraction of the steps, >= 1 a number of steps."""
    weight_decay: float = 0.01
    max_len: int = 128
    dropout: float | None = 0.1
    """Sets every ``*dropout*`` field of the model config (hidden, attention, classifier); None keeps the model's."""
    seed: int = 0
    schedule: str = "linear"
    grad_clip: float = 1.0
    select: str = "last"
    eval_every: int = 0
    """Evaluate on the selection set every N steps; 0 = after every epoch."""
    patience: int = 0
    """Stop after this many evaluations without improvement; 0 = never stop early."""
    max_steps: int = 0
    """Cap on the optimiser steps (0 = epochs decide); quick runs."""
    truncation: str = "head"
    eval_batch_size: int = 64
    device: str = "auto"

    def __post_init__(self) -> None:
        def positive(name: str, integer: bool) -> None:
            v = getattr(self, name)
            ok = isinstance(v, int) if integer else isinstance(v, (int, float))
            if isinstance(v, bool) or not ok or not v > 0:
                raise ConfigError(
                    f"fine-tuning {name} must be a positive {'integer' if integer else 'number'}, got {v!r}"
                )

        for name in ("batch_size", "epochs", "max_len", "eval_batch_size"):
            positive(name, True)
        positive("lr", False)
        for name in ("warmup", "weight_decay", "grad_clip"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"fine-tuning {name} must be >= 0, got {v!r}")
        for name in ("seed", "eval_every", "patience", "max_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"fine-tuning {name} must be a non-negative integer, got {v!r}")
        if self.dropout is not None and (
            isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1
        ):
            raise ConfigError(f"fine-tuning dropout must be in [0, 1), got {self.dropout!r}")
        from bertkit.eval.text import TRUNCATIONS

        for name, valid in (("schedule", SCHEDULES), ("select", SELECT), ("truncation", TRUNCATIONS)):
            if getattr(self, name) not in valid:
                raise ConfigError(f"fine-tuning {name} must be one of {', '.join(valid)}, got {getattr(self, name)!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **changes: Any) -> FinetuneConfig:
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ConfigError(f"unknown fine-tuning option(s) {', '.join(unknown)}")
        return replace(self, **changes)


# ------------------------------------------------------------------------------------------------ backbone


@dataclass
class Backbone:
    """A pretrained encoder to fine-tune: its architecture, pretraining model (CPU), tokenizer and origin."""

    arch: Any
    """The :class:`~bertkit.models.base.Architecture`."""
    model: Any
    tokenizer: TextTokenizer
    source: str
    kind: str
    """``run`` (a bertkit run directory), ``hf`` (a Hugging Face BERT directory) or ``model`` (built in Python)."""
    step: int | None = None

    @property
    def config(self) -> Any:
        return self.model.config

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "arch": self.arch.name,
            "step": self.step,
            "tokenizer": self.tokenizer.source,
        }


def _is_hf_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and not (path / "checkpoints").is_dir()


def load_backbone(
    source: str | os.PathLike[str],
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
) -> Backbone:
    """A bertkit run directory (its newest complete checkpoint, or ``checkpoint``) or a Hugging Face BERT directory
    (``config.json`` + weights). The tokenizer is ``tokenizer`` when given, else the run's dataset ``tokenizer/``
    (or its ``init_from`` directory), else the HF directory's own files."""
    from bertkit.models import get_architecture

    path = Path(source)
    if not path.is_dir():
        raise ConfigError(f"{path}: neither a run directory nor a Hugging Face model directory (not found)")
    if _is_hf_dir(path):
        from bertkit.export.hf import init_from_hf

        if checkpoint is not None:
            raise ConfigError(f"{path}: --checkpoint applies to run directories, not to a Hugging Face directory")
        model = init_from_hf(path)
        tok_path = Path(tokenizer) if tokenizer is not None else path
        backbone = Backbone(get_architecture("bert"), model.eval(), load_tokenizer(tok_path), str(path), "hf")
    else:
        from bertkit.eval.mlm import load_run

        loaded = load_run(path, checkpoint, device="cpu")
        arch = get_architecture(loaded.arch)
        if arch.data_kind != "tokens":
            raise ConfigError(
                f"{path}: a {arch.name!r} run reads {arch.data_kind}, not token ids, and has no fine-tuning heads; "
                f"probe its document embeddings with `bertkit eval classify --embeddings {path}` or "
                f"`bertkit eval retrieval {path} --data DOCS`"
            )
        tok_path = Path(tokenizer) if tokenizer is not None else run_tokenizer_dir(loaded.config)
        if tok_path is None:
            raise ConfigError(
                f"{path}: cannot find the run's tokenizer (its dataset {loaded.config.data or '(none)'} has no "
                "tokenizer/ directory any more); pass --tokenizer DIR_OR_FILE"
            )
        backbone = Backbone(arch, loaded.model, load_tokenizer(tok_path), str(path), "run", loaded.step)
    model_vocab = getattr(backbone.config, "vocab_size", None)
    if model_vocab is not None and backbone.tokenizer.vocab_size > model_vocab:
        raise FormatError(
            f"{backbone.tokenizer.source}: {backbone.tokenizer.vocab_size} tokens but the model of {path} has "
            f"vocab_size {model_vocab}; this is not the model's tokenizer"
        )
    return backbone


def check_head(backbone: Backbone, head: str) -> None:
    """ConfigError when the backbone's architecture has no head of kind ``head`` (``sequence`` / ``token``)."""
    if getattr(backbone.arch, HEADS[head]) is None:
        have = [HEAD_NAMES[k] for k, attr in HEADS.items() if getattr(backbone.arch, attr) is not None]
        raise ConfigError(
            f"{backbone.source}: architecture {backbone.arch.name!r} has no {HEAD_NAMES[head]} head "
            f"(Architecture.{HEADS[head]} is None); it offers: {', '.join(have) or 'no fine-tuning heads'}"
        )


def check_config(backbone: Backbone, config: FinetuneConfig, head: str) -> None:
    """The checks a run would fail on, made before any data is read: the head exists, the sequence length fits the
    model's positions, the device exists."""
    check_head(backbone, head)
    check_max_len(config.max_len, getattr(backbone.config, "max_position_embeddings", None), backbone.source)
    _device(config.device)


def _head_config(backbone: Backbone, dropout: float | None) -> Any:
    config = backbone.config
    if dropout is None:
        return config
    changes = {
        f.name: float(dropout)
        for f in fields(config)
        if "dropout" in f.name
        and isinstance(getattr(config, f.name), float | int)
        and not isinstance(getattr(config, f.name), bool)
    }
    return type(config).from_dict({**config.to_dict(), **changes}) if changes else config


def build_head(backbone: Backbone, head: str, num_labels: int, dropout: float | None) -> Any:
    """A fresh head model of the backbone's architecture with the pretrained encoder copied in."""
    check_head(backbone, head)
    cls = getattr(backbone.arch, HEADS[head])
    model = cls(_head_config(backbone, dropout), num_labels)
    model.load_pretrained_encoder(backbone.model)
    return model


# ------------------------------------------------------------------------------------------------ data


@dataclass
class SequenceData:
    """Encoded rows of a sequence task with label ids (classification) or floats (regression); None = unlabelled."""

    rows: list[Encoded]
    labels: list[Any] | None

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class TokenData:
    """Encoded rows of a token task. A sentence longer than the budget is cut into several rows at word
    boundaries; every row lists its sentence, the word index of each query position, and those positions."""

    rows: list[Encoded]
    sentence: list[int]
    words: list[list[int]]
    positions: list[list[int]]
    tags: list[list[int]] | None
    """Gold tag id of every word of every sentence."""
    sentence_lengths: list[int]
    untokenized_words: int = 0
    """Words that produced no token (they are predicted ``O``)."""

    def __len__(self) -> int:
        return len(self.rows)


def encode_sequences(
    tokenizer: TextTokenizer,
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    labels: Sequence[Any] | None,
    max_len: int,
    truncation: str = "head",
) -> SequenceData:
    a = tokenizer.encode(texts)
    b = tokenizer.encode(pairs) if pairs is not None else [None] * len(a)
    rows = [tokenizer.sequence(x, y, max_len, truncation) for x, y in zip(a, b, strict=True)]
    return SequenceData(rows, list(labels) if labels is not None else None)


def encode_token_sentences(
    tokenizer: TextTokenizer, sentences: Sequence[Sequence[str]], tags: Sequence[Sequence[int]] | None, max_len: int
) -> TokenData:
    budget = max_len - 2
    data = TokenData([], [], [], [], [list(t) for t in tags] if tags is not None else None, [len(s) for s in sentences])
    for s, (ids, word_ids) in enumerate(tokenizer.encode_words(sentences)):
        pieces: list[list[int]] = [[] for _ in sentences[s]]
        for token, w in zip(ids, word_ids, strict=True):
            if w is not None:
                pieces[w].append(token)
        rows: list[tuple[list[int], list[int], list[int]]] = [([], [], [])]  # (token ids, words, positions)
        for w, piece in enumerate(pieces):
            if not piece:
                data.untokenized_words += 1
                continue
            piece = piece[:budget]  # a word longer than a whole row keeps its first pieces
            if len(rows[-1][0]) + len(piece) > budget:
                rows.append(([], [], []))
            row_ids, row_words, row_pos = rows[-1]
            row_pos.append(1 + len(row_ids))
            row_words.append(w)
            row_ids.extend(piece)
        for row_ids, row_words, row_pos in rows:
            if row_words:
                data.rows.append(Encoded([tokenizer.cls_id, *row_ids, tokenizer.sep_id], [0] * (len(row_ids) + 2)))
                data.sentence.append(s)
                data.words.append(row_words)
                data.positions.append(row_pos)
    return data


def _pad(rows: Sequence[Encoded], pad_id: int, device: Any) -> dict[str, Any]:
    import torch

    T = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    types = torch.zeros((len(rows), T), dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r.input_ids)
        ids[i, :n] = torch.tensor(r.input_ids)
        types[i, :n] = torch.tensor(r.token_type_ids)
        mask[i, :n] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "token_type_ids": types.to(device)}


def _batch(data: SequenceData | TokenData, index: Sequence[int], pad_id: int, device: Any, with_labels: bool):
    import torch

    rows = [data.rows[i] for i in index]
    inputs = _pad(rows, pad_id, device)
    T = inputs["input_ids"].shape[1]
    if isinstance(data, TokenData):
        flat = [b * T + p for b, i in enumerate(index) for p in data.positions[i]]
        inputs["positions"] = torch.tensor(flat, dtype=torch.long, device=device)
        if with_labels:
            assert data.tags is not None
            labels = [data.tags[data.sentence[i]][w] for i in index for w in data.words[i]]
            inputs["labels"] = torch.tensor(labels, dtype=torch.long, device=device)
    elif with_labels:
        assert data.labels is not None
        values = [data.labels[i] for i in index]
        dtype = torch.float32 if isinstance(values[0], float) else torch.long
        inputs["labels"] = torch.tensor(values, dtype=dtype, device=device)
    return inputs


# ------------------------------------------------------------------------------------------------ the trainer


def _device(name: str) -> Any:
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device = 'cuda' but CUDA is not available")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def _autocast(device: Any) -> Any:
    import contextlib

    import torch

    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def predict(model: Any, data: SequenceData | TokenData, pad_id: int, batch_size: int, device: Any) -> list[Any]:
    """Predictions: a class id (classification), a float (regression, one label) or, for token data, the tag id of
    every word of every sentence (-1 for words that got no token)."""
    import torch

    model.eval()
    order = sorted(range(len(data)), key=lambda i: len(data.rows[i].input_ids))  # similar lengths batch together
    out: list[Any] = [None] * len(data)
    with torch.no_grad(), _autocast(device):
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            logits = model(**_batch(data, index, pad_id, device, with_labels=False)).logits.float().cpu()
            if isinstance(data, TokenData):
                ids = logits.argmax(-1).tolist()
                k = 0
                for i in index:
                    out[i] = ids[k : k + len(data.positions[i])]
                    k += len(data.positions[i])
            elif logits.shape[-1] == 1:
                for i, v in zip(index, logits[:, 0].tolist(), strict=True):
                    out[i] = v
            else:
                for i, v in zip(index, logits.argmax(-1).tolist(), strict=True):
                    out[i] = v
    if isinstance(data, TokenData):
        tags = [[-1] * n for n in data.sentence_lengths]
        for i, ids in enumerate(out):
            for w, t in zip(data.words[i], ids, strict=True):
                tags[data.sentence[i]][w] = t
        return tags
    return out


ScoreFn = Callable[[list[Any], SequenceData | TokenData], dict[str, float]]


def finetune(
    backbone: Backbone,
    head: str,
    num_labels: int,
    train: SequenceData | TokenData,
    evals: Mapping[str, SequenceData | TokenData],
    score: ScoreFn,
    primary: str,
    config: FinetuneConfig,
    *,
    select_on: str | None = None,
    on_progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Fine-tune one head on ``train`` and score it on every set of ``evals`` (labelled).

    ``score(predictions, data)`` returns the metrics of one set; ``primary`` (higher is better) selects and stops
    early on ``evals[select_on]`` (default: the first set). Returns ``{"metrics": {set: metrics}, "history": [...],
    "steps", "epochs_run", "selected_step", "seconds"}``.
    """
    import numpy as np
    import torch

    from bertkit.train.optim import build_optimizer
    from bertkit.train.schedules import make_lr_lambda

    if not len(train):
        raise ConfigError("the training set is empty")
    select_on = select_on or next(iter(evals), None)
    if select_on is not None and select_on not in evals:
        raise ConfigError(f"select_on {select_on!r} is not one of the evaluation sets ({', '.join(evals)})")
    if config.select == "best" and select_on is None:
        raise ConfigError("select = 'best' needs an evaluation set")
    check_config(backbone, config, head)
    device = _device(config.device)
    pad_id = backbone.tokenizer.pad_id
    emit = on_progress or (lambda event: None)

    torch.manual_seed(config.seed)
    model = build_head(backbone, head, num_labels, config.dropout).to(device)
    optimizer = build_optimizer(
        model, name="adamw", lr=config.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=config.weight_decay
    )
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = steps_per_epoch * config.epochs
    if config.max_steps:
        total = min(total, config.max_steps)
    warmup = int(round(config.warmup * total)) if config.warmup < 1 else int(config.warmup)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, make_lr_lambda(schedule=config.schedule, warmup=min(warmup, total), max_steps=total)
    )
    rng = np.random.default_rng(config.seed)
    history: list[dict[str, Any]] = []
    best: tuple[float, int, dict[str, Any] | None] = (-math.inf, 0, None)
    since_best = 0
    step = 0
    epoch = 0
    stopped = False
    t0 = time.perf_counter()

    def evaluate_selection() -> bool:
        """Evaluate on the selection set; True when training should stop (patience exhausted)."""
        nonlocal best, since_best
        if select_on is None:
            return False
        data = evals[select_on]
        metrics = score(predict(model, data, pad_id, config.eval_batch_size, device), data)
        history.append({"step": step, "epoch": epoch, "set": select_on, **metrics})
        emit({"event": "eval", "step": step, "total": total, "set": select_on, "metrics": metrics})
        model.train()
        value = metrics[primary]
        if value > best[0]:
            state = copy.deepcopy(model.state_dict()) if config.select == "best" else None
            best = (value, step, state)
            since_best = 0
        else:
            since_best += 1
        return bool(config.patience) and since_best >= config.patience

    model.train()
    emit({"event": "start", "total": total, "train": len(train)})
    while step < total and not stopped:
        epoch += 1
        order = rng.permutation(len(train)).tolist()
        for start in range(0, len(order), config.batch_size):
            inputs = _batch(train, order[start : start + config.batch_size], pad_id, device, with_labels=True)
            with _autocast(device):
                loss = model(**inputs).loss
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            emit({"event": "step", "step": step, "total": total, "epoch": epoch, "loss": float(loss.detach())})
            if step >= total:
                break
            if config.eval_every and step % config.eval_every == 0 and evaluate_selection():
                stopped = True
                break
        if not stopped and (step >= total or not config.eval_every):
            stopped = evaluate_selection()
    seconds = time.perf_counter() - t0

    selected_step = step
    if config.select == "best" and best[2] is not None:
        model.load_state_dict(best[2])
        selected_step = best[1]
    metrics = {}
    for name, data in evals.items():
        seen = [h for h in history if h["step"] == selected_step and h["set"] == name]
        if seen:  # the selected state was already scored on this set (prediction is deterministic)
            metrics[name] = {k: v for k, v in seen[-1].items() if k not in ("step", "epoch", "set")}
        else:
            metrics[name] = score(predict(model, data, pad_id, config.eval_batch_size, device), data)
    return {
        "metrics": metrics,
        "history": history,
        "steps": step,
        "epochs_run": epoch,
        "selected_step": selected_step,
        "seconds": round(seconds, 2),
    }


# ------------------------------------------------------------------------------------------------ seeds and grid


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write a results file atomically (temp file + rename), creating its directory; OSError → ConfigError."""
    from bertkit.data.format import write_bytes_atomic

    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(p, text.encode("utf-8"))
    except OSError as e:
        raise ConfigError(f"{p}: cannot write the results ({e.strerror or e})") from None


def results_path(out: str | os.PathLike[str] | None, source: str | os.PathLike[str], name: str) -> Path:
    """The results JSON of an evaluation: ``out``, or ``SOURCE/eval/NAME.json``; its markdown sits beside it."""
    out_path = Path(out) if out is not None else Path(source) / "eval" / f"{name}.json"
    if out_path.suffix != ".json":
        raise ConfigError(f"{out_path}: the results file must end in .json")
    return out_path


def previous_results(out_path: Path, source: str, emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """The results an earlier call wrote to ``out_path`` for the same model ``source`` (what a resumed evaluation
    keeps), or {} (announced as a restart when the file holds another model's results)."""
    if not out_path.is_file():
        return {}
    try:
        previous = json.loads(out_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise FormatError(f"{out_path}: not valid JSON (delete it to start over)") from None
    if not isinstance(previous, dict) or previous.get("source") != source:
        emit({"event": "restart", "reason": f"{out_path} holds results of another model; starting over"})
        return {}
    return previous


def _run_key(config: FinetuneConfig) -> str:
    import json

    return json.dumps(config.to_dict(), sort_keys=True)


def _median(values: Sequence[Any]) -> Any:
    """The median of numbers; of dicts, key by key (nested, e.g. NER's per-type figures); None for anything else."""
    first = values[0]
    if isinstance(first, bool) or first is None:
        return None
    if isinstance(first, (int, float)):
        return statistics.median(values)
    if isinstance(first, Mapping):
        out = {}
        for key in first:
            if all(isinstance(v, Mapping) and key in v for v in values):
                m = _median([v[key] for v in values])
                if m is not None:
                    out[key] = m
        return out
    return None


def _median_metrics(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per evaluation set, the median of every numeric metric over the runs."""
    return {name: _median([r["metrics"][name] for r in runs]) for name in runs[0]["metrics"]}


def run_grid(
    run_one: Callable[[FinetuneConfig], dict[str, Any]],
    base: FinetuneConfig,
    *,
    seeds: int = 1,
    grid: Sequence[Mapping[str, Any]] | None = None,
    select_set: str,
    primary: str,
    done: Sequence[Mapping[str, Any]] = (),
    on_run: Callable[[dict[str, Any], list[dict[str, Any]]], None] | None = None,
    on_progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Run ``run_one`` for ``seeds`` seeds (``base.seed``, ``base.seed + 1``, …) of every grid point (``grid``: a list
    of option changes; None = ``base`` only) and keep the grid point with the best median ``primary`` on
    ``select_set``. ``done`` holds runs of an earlier, interrupted call (reused when their config matches);
    ``on_run(run, runs)`` is called after each new run (to save progress). Returns ``{"config", "median", "runs",
    "grid"}`` (``median``: per set, the median of each metric over the chosen point's seeds)."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"seeds must be a positive integer, got {seeds!r}")
    points = [base.replace(**dict(p)) for p in grid] if grid else [base]
    cached = {r["key"]: r for r in done if "key" in r}
    runs: list[dict[str, Any]] = []
    total = len(points) * seeds
    summary = []
    for p_index, point in enumerate(points):
        point_runs = []
        for s in range(seeds):
            config = point.replace(seed=base.seed + s)
            key = _run_key(config)
            run = cached.get(key)
            if run is None:
                if on_progress is not None:
                    on_progress({"event": "run", "index": len(runs) + 1, "total": total, "config": config.to_dict()})
                run = {"key": key, "config": config.to_dict(), **run_one(config)}
                runs.append(run)
                if on_run is not None:
                    on_run(run, runs)
            else:
                runs.append(run)
            point_runs.append(run)
        median = _median_metrics(point_runs)
        summary.append({"point": dict(grid[p_index]) if grid else {}, "median": median, "runs": len(point_runs)})
    best = max(range(len(points)), key=lambda i: summary[i]["median"][select_set][primary])
    chosen = points[best]
    return {
        "config": {k: v for k, v in chosen.to_dict().items() if k != "seed"},
        "seeds": [base.seed + s for s in range(seeds)],
        "median": summary[best]["median"],
        "runs": runs,
        "grid": summary if grid else [],
    }
