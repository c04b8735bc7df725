"""``bertkit eval blimp``: zero-shot minimal pairs scored by masked-LM pseudo-log-likelihood.

Data: BLiMP (Warstadt et al., 2020; github.com/alexwarstadt/blimp, the ``data/`` folder): one JSONL file per
paradigm, one pair per line with ``sentence_good``, ``sentence_bad``, ``field``, ``linguistics_term`` (the
phenomenon) and ``UID`` (the paradigm); other fields are ignored. Every file is read and every sentence tokenized and
checked before anything is scored: a line that is not a JSON object, a missing field, an empty sentence or a
sentence longer than the model's positions is a FormatError naming the file and line.

Scores (sums of log-probabilities in nats, the special tokens ``[CLS]`` / ``[SEP]`` not scored):

- ``pll``: the pseudo-log-likelihood of Salazar et al. (2020, "Masked Language Model Scoring"): every token masked in
  turn, the log-softmax of the original token at the masked position summed over the sentence (what minicons'
  ``MaskedLMScorer`` computes with ``PLL_metric="original"``).
- ``pll-word-l2r``: Kauf & Ivanova (2023, "A Better Way to Do Masked Language Model Scoring"): when token ``i`` is
  scored, the later sub-tokens of the same word are masked too (minicons' ``PLL_metric="within_word_l2r"``), so a
  word split into pieces is not scored by peeking at its own continuation. Words are the tokenizer's pre-tokenized
  words (``word_ids``); a one-piece word is scored as in ``pll``, so copies the two variants share are computed once.

A pair counts as right when the good sentence scores strictly higher (a tie counts as wrong).

Speed: the masked copies of many sentences are one forward (``batch_size`` copies; copies of equal length batch
together, so nothing is padded and attention needs no mask), and only the scored rows go through the MLM head
(``mlm_logits(..., positions)``; NarrowBERT computes just those query rows), instead of one full-vocabulary forward
per masked copy.

Results: ``RUN/eval/blimp.json`` and ``blimp.md`` (or ``out``): accuracy per paradigm (UID), per phenomenon
(``linguistics_term``: the mean of its paradigms) and two macro averages: ``average`` over paradigms (BLiMP's overall
figure; its 67 paradigms have 1,000 pairs each) and ``phenomenon_average`` over phenomena. The files are rewritten
atomically after every paradigm, so an interrupted evaluation resumes: paradigms already scored with the same model,
variants and sentences are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertkit.exceptions import ConfigError, FormatError

__all__ = [
    "FIELDS",
    "VARIANTS",
    "MaskedLMScorer",
    "MinimalPair",
    "check_batch_size",
    "check_variants",
    "evaluate_blimp",
    "format_blimp_table",
    "load_scorer",
    "masked_copies",
    "read_blimp",
    "read_blimp_file",
    "score_sentences",
]

VARIANTS = ("pll", "pll-word-l2r")
FIELDS = ("sentence_good", "sentence_bad", "field", "linguistics_term", "UID")
DEFAULT_BATCH_SIZE = 256
"""Masked copies per forward."""
ProgressFn = Callable[[dict[str, Any]], None]


# ------------------------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class MinimalPair:
    good: str
    bad: str
    field: str
    phenomenon: str
    """BLiMP's ``linguistics_term``."""
    uid: str
    """The paradigm."""
    path: str
    line: int


def read_blimp_file(path: str | os.PathLike[str]) -> list[MinimalPair]:
    """The pairs of one BLiMP JSONL file (blank lines skipped); malformed lines are FormatErrors naming the line."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise FormatError(f"{p}: not UTF-8 (byte {e.start})") from None
    except OSError as e:
        raise FormatError(f"{p}: cannot read ({e.strerror or e})") from None
    pairs = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{p}:{lineno}"
        try:
            row = json.loads(line)
        except ValueError as e:
            raise FormatError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(row, dict):
            raise FormatError(f"{where}: not a JSON object (a BLiMP line is one object per pair)")
        missing = [f for f in FIELDS if f not in row]
        if missing:
            raise FormatError(f"{where}: no {', '.join(repr(f) for f in missing)} field; not a BLiMP file")
        for f in FIELDS:
            if not isinstance(row[f], str):
                raise FormatError(f"{where}: field {f!r} is {type(row[f]).__name__}, not a string")
        for f in ("sentence_good", "sentence_bad", "UID", "linguistics_term"):
            if not row[f].strip():
                raise FormatError(f"{where}: {f} is empty")
        pairs.append(
            MinimalPair(
                row["sentence_good"].strip(),
                row["sentence_bad"].strip(),
                row["field"],
                row["linguistics_term"],
                row["UID"],
                str(p),
                lineno,
            )
        )
    if not pairs:
        raise FormatError(f"{p}: no minimal pairs (the file is empty)")
    return pairs


def read_blimp(data: str | os.PathLike[str]) -> dict[str, list[MinimalPair]]:
    """Paradigm (UID) → its pairs, from a directory of BLiMP ``*.jsonl`` files (BLiMP's ``data/``) or one file.
    A paradigm must have one phenomenon and field throughout."""
    root = Path(data)
    if root.is_dir():
        files = sorted(root.glob("*.jsonl"))
        if not files:
            raise ConfigError(f"{root}: no BLiMP files (*.jsonl) in the directory")
    elif root.is_file():
        files = [root]
    else:
        raise ConfigError(f"{root}: BLiMP data directory not found")
    paradigms: dict[str, list[MinimalPair]] = {}
    for f in files:
        for pair in read_blimp_file(f):
            group = paradigms.setdefault(pair.uid, [])
            if group and (group[0].phenomenon, group[0].field) != (pair.phenomenon, pair.field):
                first = group[0]
                raise FormatError(
                    f"{pair.path}:{pair.line}: paradigm {pair.uid!r} has linguistics_term {pair.phenomenon!r} / field "
                    f"{pair.field!r}, but {first.path}:{first.line} gave it {first.phenomenon!r} / {first.field!r}"
                )
            group.append(pair)
    return paradigms


# ------------------------------------------------------------------------------------------------ scorers


def masked_copies(word_ids: Sequence[int | None], variant: str) -> list[tuple[int, tuple[int, ...]]]:
    """The masked copies one sentence needs: ``(scored position, masked positions)`` for every non-special token
    (``word_ids[i] is None`` marks the special tokens). ``pll`` masks the scored token alone; ``pll-word-l2r`` also
    the later tokens of the same word."""
    check_variants([variant])
    out = []
    for i, w in enumerate(word_ids):
        if w is None:
            continue
        masked = [i]
        if variant == "pll-word-l2r":
            j = i + 1
            while j < len(word_ids) and word_ids[j] == w:
                masked.append(j)
                j += 1
        out.append((i, tuple(masked)))
    return out


def check_variants(variants: Sequence[str]) -> list[str]:
    if isinstance(variants, str):
        variants = [v.strip() for v in variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ConfigError(
            f"unknown PLL scoring variant(s) {', '.join(map(repr, unknown)) or '(none)'}; valid: {', '.join(VARIANTS)}"
        )
    return list(dict.fromkeys(variants))


class MaskedLMScorer:
    """A masked LM with its tokenizer: the two operations PLL scoring needs. Subclasses: a bertkit run, an HF dir."""

    source: str
    kind: str
    arch: str
    step: int | None = None
    tokenizer_source: str
    max_positions: int | None
    mask_id: int
    pad_id: int
    device: Any

    def tokenize(self, texts: Sequence[str]) -> list[tuple[list[int], list[int | None]]]:
        """Each text with its special tokens: (ids, word index of each id; None for special tokens)."""
        raise NotImplementedError

    def log_probs(self, input_ids: Any, positions: Any, targets: Any) -> Any:
        """``[R]`` log-softmax of ``targets`` at the flat ``positions`` (one per row) of the ``[R, T]`` batch (rows
        of equal length: no padding)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "arch": self.arch,
            "step": self.step,
            "tokenizer": self.tokenizer_source,
        }


def _log_softmax_at(logits: Any, targets: Any) -> Any:
    import torch

    return torch.log_softmax(logits.float(), dim=-1).gather(1, targets[:, None])[:, 0]


class RunScorer(MaskedLMScorer):
    """A bertkit pretraining model (any token architecture): ``mlm_logits`` at the scored positions only."""

    def __init__(self, model: Any, tokenizer: Any, *, source: str, kind: str, arch: str, step: int | None) -> None:
        self.model = model
        self.tokenizer = tokenizer  # bertkit.eval.text.TextTokenizer
        self.source, self.kind, self.arch, self.step = source, kind, arch, step
        self.tokenizer_source = tokenizer.source
        self.max_positions = getattr(model.config, "max_position_embeddings", None)
        mask_id = tokenizer.tokenizer.token_to_id("[MASK]")
        if mask_id is None:
            raise FormatError(f"{tokenizer.source}: the tokenizer has no [MASK] token; it cannot mask for PLL scoring")
        self.mask_id, self.pad_id = int(mask_id), tokenizer.pad_id
        self.device = next(model.parameters()).device

    def tokenize(self, texts: Sequence[str]) -> list[tuple[list[int], list[int | None]]]:
        tok = self.tokenizer
        out = []
        for e in tok.tokenizer.encode_batch(list(texts), add_special_tokens=False):
            out.append(([tok.cls_id, *e.ids, tok.sep_id], [None, *e.word_ids, None]))
        return out

    def log_probs(self, input_ids: Any, positions: Any, targets: Any) -> Any:
        import torch

        logits = self.model.mlm_logits(input_ids, None, torch.zeros_like(input_ids), positions)
        return _log_softmax_at(logits, targets)


class HFScorer(MaskedLMScorer):
    """A Hugging Face ``AutoModelForMaskedLM`` directory with its own (fast) tokenizer. The encoder runs once on the
    batch and the MLM head (``cls`` of BERT-like models, ``lm_head`` of RoBERTa-like ones) only on the scored rows;
    other models, and remote code (``trust_remote_code``, bertkit's exports of its other architectures), run their
    own forward with logits at every position."""

    def __init__(self, model: Any, tokenizer: Any, source: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.source, self.kind, self.step = source, "hf", None
        self.arch = f"hf:{getattr(model.config, 'model_type', '?')}"
        self.tokenizer_source = source
        limits = [getattr(model.config, "max_position_embeddings", None)]
        if getattr(model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
            limits = [limits[0] - 2 if limits[0] else None]  # RoBERTa's positions start after the padding index
        model_max = getattr(tokenizer, "model_max_length", None)
        if isinstance(model_max, int) and model_max < 1_000_000:
            limits.append(model_max)
        known = [x for x in limits if isinstance(x, int)]
        self.max_positions = min(known) if known else None
        if tokenizer.mask_token_id is None:
            raise FormatError(f"{source}: the tokenizer has no mask token; it cannot mask for PLL scoring")
        self.mask_id = int(tokenizer.mask_token_id)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self.types = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
        self.device = next(model.parameters()).device
        # transformers' own classes: the encoder then the head on the scored rows; remote code (auto_map): its forward
        self.builtin = type(model).__module__.startswith("transformers.")

    def tokenize(self, texts: Sequence[str]) -> list[tuple[list[int], list[int | None]]]:
        enc = self.tokenizer(list(texts), add_special_tokens=True)
        return [(list(enc["input_ids"][i]), list(enc.word_ids(i))) for i in range(len(texts))]

    def log_probs(self, input_ids: Any, positions: Any, targets: Any) -> Any:
        import torch

        kwargs = {"input_ids": input_ids}  # no padding: no attention mask
        if self.types:
            kwargs["token_type_ids"] = torch.zeros_like(input_ids)
        head = getattr(self.model, "cls", None) or getattr(self.model, "lm_head", None)
        if head is not None and self.builtin:
            hidden = self.model.base_model(**kwargs).last_hidden_state
            logits = head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions))
        else:
            logits = self.model(**kwargs).logits
            logits = logits.reshape(-1, logits.shape[-1]).index_select(0, positions)
        return _log_softmax_at(logits, targets)


# ------------------------------------------------------------------------------------------------ loading


def _is_hf_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and not (path / "checkpoints").is_dir()


def _device(name: str) -> Any:
    import torch

    if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device = {name!r} but CUDA is not available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _load_run_model(path: Path, checkpoint: str | os.PathLike[str] | None) -> tuple[Any, str, int, Any]:
    """(pretraining model on the CPU, architecture name, step, training config) of a run directory, through
    ``bertkit.load_run``."""
    from bertkit.run import load_run

    loaded = load_run(path, checkpoint, device="cpu")
    return loaded.model, loaded.arch, loaded.step, loaded.train_config


def _load_hf(path: Path, device: Any, trust_remote_code: bool) -> HFScorer:
    try:
        import transformers
    except ImportError:
        raise ConfigError(f"{path}: scoring an HF directory needs transformers (pip install transformers)") from None
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
        model, info = transformers.AutoModelForMaskedLM.from_pretrained(
            str(path), output_loading_info=True, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError, KeyError) as e:
        raise FormatError(f"{path}: cannot load as a Hugging Face masked LM ({str(e).splitlines()[0]})") from None
    if not getattr(tokenizer, "is_fast", False):
        raise FormatError(f"{path}: the tokenizer is not a fast tokenizer (word ids are needed); add tokenizer.json")
    missing = list(info.get("missing_keys", []))
    if missing:
        archs = getattr(model.config, "architectures", None) or ["?"]
        raise ConfigError(
            f"{path}: has no trained masked-LM head (the weights lack {', '.join(sorted(missing)[:3])}"
            f"{' …' if len(missing) > 3 else ''}; saved as {', '.join(archs)}): a fine-tuned classifier or bare "
            "encoder cannot score sentences by pseudo-log-likelihood"
        )
    return HFScorer(model.to(device).eval(), tokenizer, str(path))


def load_scorer(
    source: str | os.PathLike[str],
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
    device: str = "auto",
    trust_remote_code: bool = False,
) -> MaskedLMScorer:
    """A bertkit run directory (its newest complete checkpoint, or ``checkpoint``; any token architecture; the
    tokenizer of its dataset unless ``tokenizer``) or a Hugging Face masked-LM directory (through
    ``AutoModelForMaskedLM`` and ``AutoTokenizer``). A model without a trained MLM head is a ConfigError."""
    from bertkit.eval.text import load_tokenizer, run_tokenizer_dir
    from bertkit.models import get_architecture

    path = Path(source)
    torch_device = _device(device)
    if not path.is_dir():
        raise ConfigError(f"{path}: neither a run directory nor a Hugging Face model directory (not found)")
    if _is_hf_dir(path):
        if checkpoint is not None or tokenizer is not None:
            raise ConfigError(f"{path}: --checkpoint and --tokenizer apply to run directories, not to an HF directory")
        return _load_hf(path, torch_device, trust_remote_code)
    model, arch_name, step, config = _load_run_model(path, checkpoint)
    arch = get_architecture(arch_name)
    if arch.data_kind != "tokens" or not hasattr(model, "mlm_logits"):
        raise ConfigError(
            f"{path}: a {arch.name!r} run has no token masked-LM head (it reads {arch.data_kind}); BLiMP needs a model "
            "that predicts masked tokens"
        )
    tok_path = Path(tokenizer) if tokenizer is not None else run_tokenizer_dir(config)
    if tok_path is None:
        raise ConfigError(
            f"{path}: cannot find the run's tokenizer (its dataset {config.data or '(none)'} has no tokenizer/ "
            "directory any more); pass --tokenizer DIR_OR_FILE"
        )
    tok = load_tokenizer(tok_path)
    vocab = getattr(model.config, "vocab_size", None)
    if vocab is not None and tok.vocab_size > vocab:
        raise FormatError(
            f"{tok.source}: {tok.vocab_size} tokens but the model of {path} has vocab_size {vocab}; "
            "this is not the model's tokenizer"
        )
    return RunScorer(model.to(torch_device).eval(), tok, source=str(path), kind="run", arch=arch.name, step=step)


# ------------------------------------------------------------------------------------------------ scoring


def check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")


def _plan(
    sequences: Sequence[tuple[list[int], list[int | None]]], variants: Sequence[str]
) -> tuple[list[tuple[int, int, tuple[int, ...]]], list[dict[str, list[int]]]]:
    """The distinct masked copies of all sequences, ``(sequence, scored position, masked positions)``, and per
    sequence and variant the indices of its copies."""
    rows: list[tuple[int, int, tuple[int, ...]]] = []
    uses: list[dict[str, list[int]]] = []
    for s, (_, word_ids) in enumerate(sequences):
        seen: dict[tuple[int, tuple[int, ...]], int] = {}
        use: dict[str, list[int]] = {}
        for v in variants:
            index = []
            for copy in masked_copies(word_ids, v):
                if copy not in seen:
                    seen[copy] = len(rows)
                    rows.append((s, *copy))
                index.append(seen[copy])
            use[v] = index
        uses.append(use)
    return rows, uses


def score_token_ids(
    scorer: MaskedLMScorer,
    sequences: Sequence[tuple[list[int], list[int | None]]],
    variants: Sequence[str] = VARIANTS,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[dict[str, float]]:
    """Per sequence (ids with special tokens, word ids), the score of every variant (see the module doc)."""
    import numpy as np
    import torch

    variants = check_variants(variants)
    check_batch_size(batch_size)
    rows, uses = _plan(sequences, variants)
    # Copies of equal length share a batch: no padding, so attention runs without a mask (SDPA's fast path).
    length = [len(sequences[s][0]) for s, _, _ in rows]
    order = sorted(range(len(rows)), key=lambda r: (length[r], r))
    batches: list[list[int]] = []
    for r in order:
        if not batches or len(batches[-1]) == batch_size or length[batches[-1][0]] != length[r]:
            batches.append([])
        batches[-1].append(r)
    values = np.zeros(len(rows), dtype=np.float64)
    with torch.inference_mode():
        for b, index in enumerate(batches):
            T = length[index[0]]
            ids = np.empty((len(index), T), dtype=np.int64)
            targets = np.empty(len(index), dtype=np.int64)
            positions = np.empty(len(index), dtype=np.int64)
            for k, r in enumerate(index):
                s, at, masked = rows[r]
                seq = sequences[s][0]
                ids[k] = seq
                ids[k, list(masked)] = scorer.mask_id
                targets[k] = seq[at]
                positions[k] = k * T + at
            out = scorer.log_probs(
                torch.from_numpy(ids).to(scorer.device),
                torch.from_numpy(positions).to(scorer.device),
                torch.from_numpy(targets).to(scorer.device),
            )
            values[index] = out.double().cpu().numpy()
            if on_batch is not None:
                on_batch(b + 1, len(batches))
    return [{v: float(values[use[v]].sum()) for v in variants} for use in uses]


def _check_lengths(scorer: MaskedLMScorer, sequences: Sequence[tuple[list[int], Any]], where: Sequence[str]) -> None:
    for (ids, word_ids), w in zip(sequences, where, strict=True):
        if not any(x is not None for x in word_ids):
            raise FormatError(f"{w}: the sentence has no tokens to score")
        if scorer.max_positions is not None and len(ids) > scorer.max_positions:
            raise FormatError(
                f"{w}: {len(ids)} tokens with the special tokens, more than the {scorer.max_positions} positions of "
                f"the model {scorer.source}"
            )


def score_sentences(
    scorer: MaskedLMScorer,
    sentences: Sequence[str],
    variants: Sequence[str] = VARIANTS,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> list[dict[str, float]]:
    """The pseudo-log-likelihood of each sentence under every variant (``{"pll": ..., "pll-word-l2r": ...}``)."""
    variants = check_variants(variants)
    check_batch_size(batch_size)
    sequences = scorer.tokenize(sentences)
    _check_lengths(scorer, sequences, [f"sentence {i + 1}" for i in range(len(sentences))])
    return score_token_ids(scorer, sequences, variants, batch_size=batch_size)


# ------------------------------------------------------------------------------------------------ the driver


def _digest(pairs: Sequence[MinimalPair]) -> str:
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps([p.good, p.bad, p.field, p.phenomenon]).encode("utf-8"))
    return h.hexdigest()


def _summarise(result: dict[str, Any], variants: Sequence[str]) -> None:
    done = {k: v for k, v in result["paradigms"].items() if v.get("status") == "done"}
    phenomena: dict[str, dict[str, Any]] = {}
    fields: dict[str, dict[str, Any]] = {}
    for uid, entry in done.items():
        phenomena.setdefault(entry["linguistics_term"], {"paradigms": []})["paradigms"].append(uid)
        fields.setdefault(entry["field"], {"paradigms": []})["paradigms"].append(uid)
    for group in (phenomena, fields):
        for g in group.values():
            g["accuracy"] = {v: statistics.fmean(done[u]["accuracy"][v] for u in g["paradigms"]) for v in variants}
    result["phenomena"] = dict(sorted(phenomena.items()))
    result["fields"] = dict(sorted(fields.items()))
    result["average"] = {v: statistics.fmean(e["accuracy"][v] for e in done.values()) for v in variants} if done else {}
    result["phenomenon_average"] = (
        {v: statistics.fmean(p["accuracy"][v] for p in phenomena.values()) for v in variants} if phenomena else {}
    )
    result["status"] = "done" if len(done) == len(result["paradigms"]) else "partial"


def evaluate_blimp(
    scorer: MaskedLMScorer,
    data: str | os.PathLike[str],
    *,
    variants: str | Sequence[str] = VARIANTS,
    out: str | os.PathLike[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Score every minimal pair of ``data`` (a BLiMP ``data/`` directory or one file) with ``scorer`` under
    ``variants`` and write the results (see the module doc). Returns the result dict written to ``out`` (default
    ``SOURCE/eval/blimp.json``, beside it ``blimp.md``)."""
    from bertkit.eval.finetune import previous_results, results_path, write_text_atomic

    variants = check_variants(variants)
    check_batch_size(batch_size)
    out_path = results_path(out, scorer.source, "blimp")
    md_path = out_path.with_suffix(".md")
    emit = on_progress or (lambda event: None)

    # Read, tokenize and check everything before the first forward: a bad line in the last file fails now.
    paradigms = read_blimp(data)
    tokenized: dict[str, list[tuple[list[int], list[int | None]]]] = {}
    for uid, pairs in paradigms.items():
        sequences = scorer.tokenize([s for p in pairs for s in (p.good, p.bad)])
        where = [f"{p.path}:{p.line}: {name}" for p in pairs for name in ("sentence_good", "sentence_bad")]
        _check_lengths(scorer, sequences, where)
        tokenized[uid] = sequences

    source = scorer.describe()
    previous = previous_results(out_path, source, emit)
    kept = previous.get("paradigms", {}) if isinstance(previous.get("paradigms"), dict) else {}
    result: dict[str, Any] = {"source": source, "data": str(data), "variants": variants, "paradigms": {}}
    for uid, pairs in paradigms.items():
        entry = kept.get(uid)
        digest = _digest(pairs)
        ok = isinstance(entry, dict) and entry.get("status") == "done" and entry.get("sha256") == digest
        if ok and all(v in entry.get("accuracy", {}) for v in variants):
            entry = {**entry, "accuracy": {v: entry["accuracy"][v] for v in variants}}
            entry["correct"] = {v: entry["correct"][v] for v in variants}
            result["paradigms"][uid] = entry
        else:
            result["paradigms"][uid] = {
                "status": "pending",
                "sha256": digest,
                "field": pairs[0].field,
                "linguistics_term": pairs[0].phenomenon,
                "file": pairs[0].path,
                "pairs": len(pairs),
            }

    def save() -> None:
        _summarise(result, variants)
        write_text_atomic(out_path, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        write_text_atomic(md_path, format_blimp_table(result))

    total = len(paradigms)
    for index, (uid, pairs) in enumerate(paradigms.items(), 1):
        entry = result["paradigms"][uid]
        if entry["status"] == "done":
            emit({"event": "paradigm", "paradigm": uid, "index": index, "total": total, "status": "skipped"})
            continue
        emit({"event": "paradigm", "paradigm": uid, "index": index, "total": total, "status": "start"})
        scores = score_token_ids(
            scorer,
            tokenized[uid],
            variants,
            batch_size=batch_size,
            on_batch=lambda done, n, u=uid: emit({"event": "batch", "paradigm": u, "done": done, "total": n}),
        )
        correct = {v: sum(scores[2 * i][v] > scores[2 * i + 1][v] for i in range(len(pairs))) for v in variants}
        entry.update(
            status="done",
            correct=correct,
            accuracy={v: correct[v] / len(pairs) for v in variants},
        )
        save()
        emit(
            {
                "event": "paradigm",
                "paradigm": uid,
                "index": index,
                "total": total,
                "status": "done",
                "accuracy": entry["accuracy"],
            }
        )
    save()
    result["out"] = str(out_path)
    result["markdown"] = str(md_path)
    return result


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def format_blimp_table(result: Mapping[str, Any]) -> str:
    """The results as markdown: the averages and phenomena, then every paradigm (accuracy ×100 per variant)."""
    variants = list(result.get("variants", VARIANTS))
    source = result.get("source", {})
    rule = "|" + "---|" * (len(variants) + 1)
    lines = [
        f"BLiMP accuracy of `{source.get('source', '?')}` ({source.get('arch', '?')}"
        + (f", step {source['step']}" if source.get("step") is not None else "")
        + f") on `{result.get('data', '?')}`; a pair is right when the good sentence has the higher "
        "pseudo-log-likelihood.",
        "",
        "| " + " | ".join(["phenomenon (paradigms)", *variants]) + " |",
        rule,
    ]
    for name, group in result.get("phenomena", {}).items():
        n = len(group["paradigms"])
        lines.append(f"| {name} ({n}) | " + " | ".join(_pct(group["accuracy"].get(v)) for v in variants) + " |")
    avg, pavg = result.get("phenomenon_average", {}), result.get("average", {})
    lines.append("| **macro average over phenomena** | " + " | ".join(_pct(avg.get(v)) for v in variants) + " |")
    lines.append("| **macro average over paradigms** | " + " | ".join(_pct(pavg.get(v)) for v in variants) + " |")
    lines += [
        "",
        "| " + " | ".join(["paradigm (UID)", "phenomenon", "pairs", *variants]) + " |",
        "|" + "---|" * (len(variants) + 3),
    ]
    for uid, entry in result.get("paradigms", {}).items():
        acc = entry.get("accuracy", {}) if entry.get("status") == "done" else {}
        lines.append(
            f"| {uid} | {entry.get('linguistics_term', '?')} | {entry.get('pairs', '?')} | "
            + " | ".join(_pct(acc.get(v)) for v in variants)
            + " |"
        )
    if result.get("status") == "partial":
        lines += ["", "Partial: paradigms marked - are not scored yet (run again to resume)."]
    return "\n".join(lines) + "\n"
