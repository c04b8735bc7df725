"""Masked-LM evaluation of a training run: ``bertkit eval mlm RUN --data DIR``.

``evaluate_mlm(run, data)`` loads the run's newest complete checkpoint (or a given one), opens the dataset's
held-out split with the run's view, sequence length, batch size and ``eval_fraction``, and evaluates with the
trainer's own :func:`bertkit.train.trainer.evaluate` (same masking strategy and rates as training; eval batch ``i``
is masked with the key ``(seed, i)``, so with the run's seed the figures equal the trainer's last evaluation over
the same batches). It returns (and writes to ``RUN/eval_mlm.json``) loss, perplexity, MLM accuracy and, when the
model has an NSP head and the view has labels, NSP accuracy; with ``show=N`` it also keeps the first N evaluated
rows rendered by :func:`format_predictions`::

    the [MASK→cat ✓] sat on the [MASK→rug ✗ mat]

(``[shown input→prediction ✓]`` when the prediction is the original token, ``[shown input→prediction ✗ original]``
otherwise; the shown input is ``[MASK]``, a random token or the kept original, as the 80/10/10 rule chose.)

The dataset must be tokenized like the run's training data: the vocabulary sha256 of both manifests must agree
(when the training dataset is no longer there, the vocabulary size must fit the model's embeddings).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertkit.exceptions import ConfigError, FormatError

__all__ = ["LoadedRun", "evaluate_mlm", "format_predictions", "load_run"]

SPLITS = ("eval", "train")
RESULT_FILE = "eval_mlm.json"


@dataclass
class LoadedRun:
    """A checkpoint's model with what it was trained with."""

    run_dir: Path
    checkpoint: Path
    step: int
    arch: str
    model: Any
    """The architecture's pretraining model (eval mode, on the requested device)."""
    model_config: Any
    config: Any
    """The checkpoint's resolved :class:`~bertkit.train.config.TrainConfig`."""


def _find_checkpoint(run: Path, checkpoint: str | os.PathLike[str] | None) -> Path:
    from bertkit.train import checkpoint as ckpt_lib

    if checkpoint is not None:
        ckpt = Path(checkpoint)
        if not ckpt.is_dir():
            raise ConfigError(f"{ckpt}: checkpoint directory not found")
        if not (ckpt / ckpt_lib.COMPLETE).is_file():
            raise ConfigError(f"{ckpt}: not a complete checkpoint (no {ckpt_lib.COMPLETE} marker)")
        return ckpt
    if not run.is_dir():
        raise ConfigError(f"{run}: run directory not found")
    ckpt = ckpt_lib.latest(run)
    if ckpt is None:
        where = run / ckpt_lib.CHECKPOINT_DIR
        raise ConfigError(
            f"{run}: no complete checkpoint (nothing like {where}/ckpt-NNNNNN/{ckpt_lib.COMPLETE}); "
            "train the run first or pass --checkpoint"
        )
    return ckpt


def load_run(
    run: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    device: str = "cpu",
) -> LoadedRun:
    """The model of ``checkpoint`` (default: the run's newest complete one), its architecture, model config and
    training config. A run without a complete checkpoint is a ConfigError naming the run directory; unreadable
    checkpoint files are FormatErrors naming the file."""
    import torch

    from bertkit.models import get_architecture
    from bertkit.train import checkpoint as ckpt_lib
    from bertkit.train.config import TrainConfig

    run_dir = Path(run)
    ckpt = _find_checkpoint(run_dir, checkpoint)
    meta = ckpt_lib.read_meta(ckpt)
    saved = ckpt_lib.read_config(ckpt)
    try:
        config = TrainConfig.from_dict(saved, source=str(ckpt / "config.json"))
        arch = get_architecture(meta["arch"])
        model_config = arch.config_class.from_dict(meta["model_config"])
    except KeyError as e:
        raise FormatError(f"{ckpt / 'meta.json'}: missing {e}") from None
    except ConfigError as e:
        raise FormatError(f"{ckpt}: {e}") from None
    model = arch.pretraining_class(model_config)
    try:
        state = ckpt_lib.load_checkpoint(ckpt, model=model, restore_rng_state=False)
    except RuntimeError as e:  # state-dict keys / shapes do not fit the architecture
        raise FormatError(f"{ckpt_lib.model_file(ckpt)}: does not fit {arch.name} ({e})") from None
    model.to(torch.device(device)).eval()
    return LoadedRun(
        run_dir=run_dir,
        checkpoint=ckpt,
        step=int(state.get("step", meta.get("step", 0))),
        arch=arch.name,
        model=model,
        model_config=model_config,
        config=config,
    )


def _manifest_tokenizer(root: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((root / "manifest.json").read_text(encoding="utf-8"))["tokenizer"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if isinstance(info, dict) else None


def check_tokenizer(loaded: LoadedRun, data: Path, data_vocab_size: int) -> None:
    """FormatError unless ``data`` was tokenized with the run's vocabulary (sha256 of the two manifests; the
    vocabulary size against the model's embeddings when the training dataset is gone)."""
    trained_on = Path(loaded.config.data) if loaded.config.data else None
    ours = _manifest_tokenizer(data)
    theirs = _manifest_tokenizer(trained_on) if trained_on is not None else None
    if ours is not None and theirs is not None:
        a, b = theirs.get("vocab_sha256"), ours.get("vocab_sha256")
        if a and b and a != b:
            raise FormatError(
                f"{data}/manifest.json: the dataset's vocabulary (sha256 {b[:12]}…, {ours.get('vocab_size')} tokens) "
                f"is not the one run {loaded.run_dir} was trained with ({trained_on}/manifest.json: sha256 "
                f"{a[:12]}…, {theirs.get('vocab_size')} tokens); prepare the data with the run's tokenizer"
            )
        if ours.get("vocab_size") != theirs.get("vocab_size"):
            raise FormatError(
                f"{data}/manifest.json: vocab_size {ours.get('vocab_size')} but run {loaded.run_dir} was trained on "
                f"{trained_on} with vocab_size {theirs.get('vocab_size')}"
            )
    model_vocab = getattr(loaded.model_config, "vocab_size", None)
    if model_vocab is None:
        return
    exact = theirs is None and not loaded.config.init_from  # a fresh model's embeddings = the training vocabulary
    if data_vocab_size > model_vocab or (exact and data_vocab_size != model_vocab):
        raise FormatError(
            f"{data}/manifest.json: vocab_size {data_vocab_size} does not match the model of {loaded.checkpoint} "
            f"(vocab_size {model_vocab}); the dataset was not tokenized for this run"
        )


class _Recorder:
    """Wraps the model for ``evaluate``: asks for predictions and keeps the first ``limit`` rows (on the CPU)."""

    def __init__(self, model: Any, limit: int) -> None:
        self.model = model
        self.limit = limit
        self.rows: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:  # eval(), train(), training, ... reach the model
        return getattr(self.model, name)

    def __call__(self, **inputs: Any) -> Any:
        want = len(self.rows) < self.limit
        out = self.model(**inputs, return_predictions=want)
        if want and out.mlm_predictions is not None:
            self._keep(inputs, out.mlm_predictions)
        return out

    def _keep(self, inputs: Mapping[str, Any], predictions: Any) -> None:
        ids = inputs["input_ids"].cpu()
        B, T = ids.shape
        positions = inputs["mlm_positions"].cpu()
        labels = inputs["mlm_labels"].cpu()
        predicted = predictions.cpu()
        attention = inputs.get("attention_mask")
        attention = attention.cpu() if attention is not None else None
        for b in range(B):
            if len(self.rows) >= self.limit:
                break
            sel = (positions // T == b) & (labels != -100)
            row = ids[b] if attention is None else ids[b][attention[b].bool()]
            self.rows.append(
                {
                    "input_ids": row.tolist(),
                    "positions": (positions[sel] - b * T).tolist(),
                    "labels": labels[sel].tolist(),
                    "predictions": predicted[sel].tolist(),
                }
            )


def evaluate_mlm(
    run: str | os.PathLike[str],
    data: str | os.PathLike[str] | None = None,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    split: str = "eval",
    batches: int | None = None,
    show: int = 0,
    seed: int | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    seq_len: int | None = None,
    write: bool = True,
    on_progress: Callable[[str], None] | None = None,
    verify_data: bool = True,
) -> dict[str, Any]:
    """Evaluate the run's checkpoint on ``data`` (default: the dataset the run was trained on).

    ``split``: ``eval`` (the held-out rows, all of them unless ``batches``) or ``train`` (the first ``batches``
    training batches, default the run's ``eval_batches``). ``seed`` keys the masks (default: the run's seed, which
    reproduces the trainer's evaluations). Returns a dict with ``mlm_loss``, ``perplexity``, ``mlm_accuracy``,
    ``masked_tokens`` (+ ``nsp_loss``, ``nsp_accuracy``), the checkpoint, step, dataset, split, batches and, with
    ``show``, ``examples`` (strings from :func:`format_predictions`); also written to ``RUN/eval_mlm.json`` unless
    ``write=False``. ``verify_data=False`` skips the shard checksums (the values are validated either way).
    """

    from bertkit.train.distributed import DistInfo
    from bertkit.train.trainer import _autocast_dtype, _Batcher, _open_data, _select_device, evaluate

    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    for name, value in (("batches", batches), ("batch_size", batch_size), ("seq_len", seq_len)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(show, bool) or not isinstance(show, int) or show < 0:
        raise ConfigError(f"show must be a non-negative integer, got {show!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")

    # the device first (a bad --device fails before anything loads), then the checkpoint
    from bertkit.train.config import TrainConfig

    probe = TrainConfig(device=device)
    torch_device = _select_device(probe)
    loaded = load_run(run, checkpoint, device=str(torch_device))
    cfg = loaded.config
    data_dir = Path(data) if data is not None else Path(cfg.data)
    if not str(data_dir) or str(data_dir) == ".":
        raise ConfigError(f"{loaded.checkpoint}: the run names no dataset; pass --data")
    last = cfg.resolved_phases()[-1]
    overrides: dict[str, Any] = {"data": str(data_dir), "device": device, "verify_data": verify_data}
    cfg = cfg.with_overrides(overrides)
    info = DistInfo()
    ds = _open_data(cfg, seq_len or last.seq_len, batch_size or last.batch_size, split, info)
    check_tokenizer(loaded, data_dir, int(ds.vocab_size))

    if batches is None:
        batches = ds.num_batches() if split == "eval" else cfg.eval_batches
    if on_progress is not None:
        on_progress(f"{loaded.checkpoint} (step {loaded.step}) on {data_dir} [{split}], up to {batches} batches")
    recorder = _Recorder(loaded.model, show)
    metrics = evaluate(
        recorder,
        ds,
        _Batcher(cfg, ds, torch_device),
        max_batches=batches,
        seed=cfg.seed if seed is None else seed,
        autocast_dtype=_autocast_dtype(cfg, torch_device),
        info=info,
    )
    result: dict[str, Any] = {
        **metrics,
        "checkpoint": str(loaded.checkpoint),
        "step": loaded.step,
        "arch": loaded.arch,
        "data": str(data_dir),
        "split": split,
        "view": cfg.view,
        "seq_len": ds.seq_len,
        "batch_size": ds.batch_size,
        "batches": min(batches, ds.num_batches()) if split == "eval" else batches,
        "seed": cfg.seed if seed is None else seed,
        "masking": cfg.masking,
    }
    if show:
        from bertkit.data.dataset import open_dataset

        vocab = open_dataset(data_dir).vocab if (data_dir / "tokenizer" / "vocab.txt").is_file() else None
        tokens = vocab.tokens if vocab is not None else [str(i) for i in range(int(ds.vocab_size))]
        prefix = vocab.prefix if vocab is not None else "##"
        result["examples"] = [
            format_predictions(tokens, r["input_ids"], r["positions"], r["labels"], r["predictions"], prefix=prefix)
            for r in recorder.rows
        ]
    if write:
        out = loaded.run_dir / RESULT_FILE
        try:
            out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{out}: cannot write the result ({e.strerror or e})") from None
    return result


def _token(tokens: Sequence[str], i: int) -> str:
    return tokens[i] if 0 <= i < len(tokens) else f"<{i}>"


def format_predictions(
    tokens: Sequence[str],
    input_ids: Sequence[int],
    positions: Sequence[int],
    labels: Sequence[int],
    predictions: Sequence[int],
    *,
    prefix: str = "##",
    skip: Sequence[str] = ("[PAD]",),
    markup: bool = False,
) -> str:
    """One row as text with the predictions marked beside the original, e.g.
    ``the [MASK→cat ✓] sat on the [MASK→rug ✗ mat]``.

    ``tokens``: the vocabulary (id → token); ``input_ids``: the row as the model saw it (masked); ``positions``:
    indices into the row of the predicted tokens, ``labels`` their original ids, ``predictions`` the model's ids.
    WordPiece continuation pieces (``prefix``) are glued to the previous word; a marked continuation keeps its
    prefix inside the brackets. Tokens in ``skip`` (padding) are left out. ``markup=True`` colours hits green and
    misses red with rich markup (brackets escaped).
    """
    if not (len(positions) == len(labels) == len(predictions)):
        raise ValueError("positions, labels and predictions must have the same length")
    marks = {int(p): (int(lab), int(pred)) for p, lab, pred in zip(positions, labels, predictions, strict=True)}
    out: list[str] = []
    for t, i in enumerate(input_ids):
        shown = _token(tokens, int(i))
        if t in marks:
            if len(shown) > 2 and shown[0] == "[" and shown[-1] == "]":  # [MASK] → MASK inside the brackets
                shown = shown[1:-1]
            label, pred = marks[t]
            original = _token(tokens, label)
            glue = bool(prefix) and original.startswith(prefix) and len(original) > len(prefix)
            hit = label == pred
            body = f"{shown}→{_token(tokens, pred)} " + ("✓" if hit else f"✗ {original}")
            if markup:
                colour = "green" if hit else "red"
                piece = f"[{colour}]\\[{body}][/{colour}]"
            else:
                piece = f"[{body}]"
        else:
            if shown in skip:
                continue
            glue = bool(prefix) and shown.startswith(prefix) and len(shown) > len(prefix)
            piece = shown[len(prefix) :] if glue else shown
            if markup:
                piece = piece.replace("[", "\\[")
        if glue and out:
            out[-1] += piece
        else:
            out.append(piece)
    return " ".join(out)
