"""Merge datasets into one manifest without copying shard data.

The merged manifest lists every input's shards in order, with paths rewritten relative to the output
directory (e.g. `../a/shards/corpus-00000.tokens.npy`), so the inputs must stay where they are. Only the small
`tokenizer/` directory is copied, so that the merged dataset can decode on its own.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bertkit.data.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    TOKENIZER_DIR,
    ArrayFile,
    Manifest,
    Shard,
    Totals,
    read_manifest,
    write_manifest,
)
from bertkit.exceptions import ConfigError, DatasetExistsError, FormatError
from bertkit.locks import output_lock

# Tokenizer fields that must agree between merged datasets (token ids mean the same thing).
IDENTITY_KEYS = ("vocab_sha256", "vocab_size", "lowercase", "continuing_subword_prefix", "special_ids")


def _identity_difference(a: Manifest, b: Manifest) -> str | None:
    for key in IDENTITY_KEYS:
        va, vb = a.tokenizer.get(key), b.tokenizer.get(key)
        if va != vb:
            return f"tokenizer {key} differs ({va!r} vs {vb!r})"
    if a.token_dtype != b.token_dtype:
        return f"token dtype differs ({a.token_dtype} vs {b.token_dtype})"
    return None


def _mlm_seq_len(m: Manifest) -> int | None:
    for s in m.shards_of("mlm"):
        shape = s.arrays["input_ids"].shape if "input_ids" in s.arrays else []
        if len(shape) == 2:
            return shape[1]
    return None


def _prefix(d: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", d.resolve().name) or "dataset"


def merge_datasets(
    dirs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], overwrite: bool = False
) -> Manifest:
    """Merge complete datasets `dirs` (same tokenizer identity and token dtype) into `out`; returns its manifest.

    No shard data is copied. Shard names are prefixed with their input's directory name (made unique); the
    source manifests (without their shard lists) are recorded in `config.merged_from`. `out` must not hold a
    dataset already unless `overwrite` (its old manifest and `tokenizer/` are replaced; nothing else is deleted).
    """
    if not dirs:
        raise ConfigError("merge needs at least one dataset directory")
    out = Path(out)
    ins = [Path(d) for d in dirs]
    resolved = [d.resolve() for d in ins]
    if len(set(resolved)) != len(resolved):
        dup = next(d for i, d in enumerate(ins) if resolved[i] in resolved[:i])
        raise ConfigError(f"{dup}: the same dataset is given twice")
    if out.resolve() in resolved:
        raise ConfigError(f"{out}: the output directory is one of the inputs")
    manifests = [read_manifest(d) for d in ins]

    first, m0 = ins[0], manifests[0]
    seq_len0 = _mlm_seq_len(m0)
    for d, m in zip(ins[1:], manifests[1:], strict=True):
        diff = _identity_difference(m0, m)
        if diff:
            raise ConfigError(f"cannot merge {first} and {d}: {diff}")
        seq_len = _mlm_seq_len(m)
        if seq_len is not None and seq_len0 is not None and seq_len != seq_len0:
            raise ConfigError(f"cannot merge {first} and {d}: mlm sequence length differs ({seq_len0} vs {seq_len})")
        seq_len0 = seq_len0 if seq_len0 is not None else seq_len

    existed = os.path.lexists(out)
    try:
        with output_lock(out, purpose="bertkit merge"):
            return _merge_locked(ins, manifests, out, overwrite)
    finally:
        if not existed:  # a merge that failed before writing leaves no empty directory behind
            with contextlib.suppress(OSError):
                out.rmdir()


def _merge_locked(ins: list[Path], manifests: list[Manifest], out: Path, overwrite: bool) -> Manifest:
    """The part of `merge_datasets` that runs under the output lock."""
    m0 = manifests[0]
    if (out / MANIFEST).exists() and not overwrite:
        raise DatasetExistsError(f"{out}: already holds a dataset (use --overwrite to replace its manifest)")

    # Every shard file must exist with the recorded size (cheap: stat only; `verify` re-hashes).
    for d, m in zip(ins, manifests, strict=True):
        for s in m.shards:
            for a in s.arrays.values():
                p = d / a.path
                try:
                    size = p.stat().st_size
                except FileNotFoundError:
                    raise FileNotFoundError(2, f"shard {s.name!r} of {d}: array file is missing", str(p)) from None
                if size != a.size:
                    raise FormatError(f"{p}: {size} bytes, the manifest of {d} says {a.size} (shard {s.name!r})")

    out.mkdir(parents=True, exist_ok=True)
    prefixes = [_prefix(d) for d in ins]
    if len(set(prefixes)) != len(prefixes):
        prefixes = [f"{i:03d}-{p}" for i, p in enumerate(prefixes)]
    shards: list[Shard] = []
    inputs = []
    merged_from: list[dict[str, Any]] = []
    totals = Totals()
    for d, m, prefix in zip(ins, manifests, prefixes, strict=True):
        input_offset = len(inputs)
        for s in m.shards:
            arrays = {
                k: ArrayFile(
                    path=Path(os.path.relpath(d / a.path, out)).as_posix(),
                    dtype=a.dtype,
                    shape=list(a.shape),
                    size=a.size,
                    xxh3=a.xxh3,
                )
                for k, a in s.arrays.items()
            }
            shards.append(
                Shard(
                    kind=s.kind,
                    name=f"{prefix}.{s.name}",
                    rows=s.rows,
                    tokens=s.tokens,
                    arrays=arrays,
                    sentences=s.sentences,
                    chunks=s.chunks,
                    input_offset=input_offset + s.input_offset,
                )
            )
        inputs.extend(m.inputs)
        totals = totals + m.totals
        source = m.to_json()
        del source["shards"]
        merged_from.append({"path": Path(os.path.relpath(d, out)).as_posix(), "shards": len(m.shards), **source})

    splitters = [m.splitter for m in manifests]
    splitter = splitters[0] if all(s == splitters[0] for s in splitters) else {"name": "mixed", "parts": splitters}
    from bertkit import __version__

    merged = Manifest(
        format=FORMAT_NAME,
        version=FORMAT_VERSION,
        kind="merged",
        created_by=f"bertkit {__version__}",
        tokenizer=m0.tokenizer,
        splitter=splitter,
        config={"merged_from": merged_from},
        inputs=inputs,
        token_dtype=m0.token_dtype,
        totals=totals,
        shards=shards,
    )

    if overwrite:
        (out / MANIFEST).unlink(missing_ok=True)  # never leave an old manifest over a half-replaced dataset
    tok_src = next((d / TOKENIZER_DIR for d in ins if (d / TOKENIZER_DIR).is_dir()), None)
    tok_dst = out / TOKENIZER_DIR
    if tok_src is not None:
        tmp = out / f"{TOKENIZER_DIR}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(tok_src, tmp)
        if tok_dst.exists():
            shutil.rmtree(tok_dst)
        os.replace(tmp, tok_dst)
    write_manifest(out, merged)
    return merged
