"""`bertkit prepare`: raw corpora → sharded dataset (tokenized corpus + optional static instances)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from bertkit_cli._common import PlainLines, console, interactive, user_errors


def register(app: typer.Typer) -> None:
    app.command(
        "prepare",
        epilog=(
            "Examples:\n\n"
            "  bertkit prepare corpus.txt --tokenizer vocab.txt --out data/ds\n\n"
            "  bertkit prepare 'wiki/*.txt.gz' --tokenizer vocab.txt --out data/nsp --instances nsp --dupe-factor 5\n\n"
            "  bertkit prepare books.jsonl --text-field body --tokenizer tokenizer.json --out data/chunks "
            "--instances chunks --chunk-size 256\n\n"
            "  bertkit prepare 'fineweb/data/*.parquet' pile.jsonl.zst hf_saved_dataset/ "
            "--tokenizer vocab.txt --out data/ds\n\n"
            "  zstdcat dump.jsonl.zst | bertkit prepare - --tokenizer vocab.txt --out data/ds\n\n"
            "  bertkit prepare '/shared/c4/*.parquet' --tokenizer vocab.txt --out /shared/c4_bert --ray auto"
        ),
    )(prepare)


def prepare(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Files, directories, globs or - (standard input): .txt, .jsonl (also .gz, .zst, .bz2, .xz), "
            ".parquet, .arrow, datasets.save_to_disk folders."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output dataset directory.")],
    tokenizer: Annotated[Path, typer.Option(help="WordPiece vocab.txt or HF tokenizer.json.")],
    one_doc_per_line: Annotated[bool, typer.Option(help="Each line is a document.")] = False,
    sentences_per_line: Annotated[
        bool, typer.Option(help="Google's format: one sentence per line, blank line between documents.")
    ] = False,
    text_field: Annotated[str, typer.Option(help="JSONL field / Parquet or Arrow column holding the text.")] = "text",
    on_invalid_utf8: Annotated[str, typer.Option(help="error | replace | skip")] = "error",
    splitter: Annotated[str, typer.Option(help="Sentence splitter: rules | lines | none.")] = "rules",
    lowercase: Annotated[
        bool | None, typer.Option("--lowercase/--no-lowercase", help="Override the tokenizer's casing.")
    ] = None,
    instances: Annotated[
        list[str] | None, typer.Option(help="Static instances: nsp | mlm | chunks (repeatable).")
    ] = None,
    max_seq_length: Annotated[int, typer.Option(help="NSP sequence length.")] = 128,
    max_predictions_per_seq: Annotated[int, typer.Option(help="NSP: masked positions per sequence.")] = 20,
    masked_lm_prob: Annotated[float, typer.Option(help="NSP: masking probability.")] = 0.15,
    short_seq_prob: Annotated[float, typer.Option(help="NSP: probability of a shorter target length.")] = 0.1,
    dupe_factor: Annotated[int, typer.Option(help="NSP: passes over the data with different masks.")] = 10,
    whole_word_mask: Annotated[bool, typer.Option(help="NSP: whole-word masking.")] = False,
    fix_quirks: Annotated[bool, typer.Option(help="Correct Google's quirks instead of reproducing them.")] = False,
    mlm_seq_len: Annotated[int, typer.Option(help="Packed MLM length (0: --max-seq-length).")] = 0,
    chunk_size: Annotated[int, typer.Option(help="NextLevelBERT chunk tokens (0: sentence chunks).")] = 256,
    paragraph_token: Annotated[
        str,
        typer.Option(
            help="Token ending every paragraph (a line of a document), e.g. [PAR] (ELC-BERT).", show_default="none"
        ),
    ] = "",
    text_filter: Annotated[
        str,
        typer.Option(
            help="nanobert: drop characters outside [a-zA-Z0-9\\s,.!?'\"-] (my-best-day/medium).", show_default="none"
        ),
    ] = "",
    seed: Annotated[int, typer.Option(help="Seed for every random choice.")] = 12345,
    threads: Annotated[
        int | None,
        typer.Option(help="Worker threads (capped to the logical CPUs).", show_default="all logical CPUs"),
    ] = None,
    shard_size_mb: Annotated[float, typer.Option(help="Input text per corpus shard, MB.")] = 64.0,
    overwrite: Annotated[bool, typer.Option(help="Replace a dataset already in --out.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its completed shards.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ray: Annotated[
        str | None,
        typer.Option(
            help="Prepare partitions as Ray tasks and merge them: a cluster address (HOST:PORT, ray://HOST:PORT, "
            "auto) or 'local' for a local runtime. Needs bertkit[ray]."
        ),
    ] = None,
    ray_partition_mb: Annotated[float, typer.Option(help="--ray: input bytes per partition, MB.")] = 256.0,
    ray_cpus_per_task: Annotated[int, typer.Option(help="--ray: CPUs (and prepare threads) per task.")] = 1,
    ray_workers: Annotated[int, typer.Option(help="--ray local: worker CPUs of the local runtime (0: all).")] = 0,
) -> None:
    """Read, split, tokenize and shard corpora (Rust, all cores); optionally build static instances."""
    from bertkit.data.prepare import PrepareConfig
    from bertkit.data.prepare import prepare as run_prepare
    from bertkit.exceptions import ConfigError
    from bertkit.resources import cap_threads

    with user_errors():
        if one_doc_per_line and sentences_per_line:
            raise ConfigError("--one-doc-per-line and --sentences-per-line exclude each other")
        threads, note = cap_threads(threads)
        if note:
            console.print(f"[yellow]note[/]: {note}", highlight=False)
        doc_mode = "blank-line"
        if one_doc_per_line:
            doc_mode = "one-doc-per-line"
        elif sentences_per_line:
            doc_mode = "sentences-per-line"
        cfg = PrepareConfig(
            inputs=inputs,
            out=out,
            tokenizer=tokenizer,
            lowercase=lowercase,
            doc_mode=doc_mode,
            text_field=text_field,
            on_invalid_utf8=on_invalid_utf8,
            splitter=splitter,
            threads=threads or 0,
            shard_size=int(shard_size_mb * (1 << 20)),
            instances=instances or [],
            seed=seed,
            max_seq_length=max_seq_length,
            max_predictions_per_seq=max_predictions_per_seq,
            masked_lm_prob=masked_lm_prob,
            short_seq_prob=short_seq_prob,
            dupe_factor=dupe_factor,
            whole_word_mask=whole_word_mask,
            fix_quirks=fix_quirks,
            mlm_seq_len=mlm_seq_len,
            chunk_size=chunk_size,
            paragraph_token=paragraph_token,
            text_filter=text_filter,
            overwrite=overwrite,
            resume=resume,
        )
        t0 = time.perf_counter()
        if ray is not None:
            from bertkit.data.ray_prepare import prepare_on_ray

            summary = prepare_on_ray(
                cfg,
                address=ray,
                partition_bytes=max(1, int(ray_partition_mb * (1 << 20))),
                cpus_per_task=ray_cpus_per_task,
                num_cpus=ray_workers or None,
            )
            t = summary["totals"]
            console.print(
                f"[green]wrote[/] {summary['out']}: {t['documents']:,} documents, {t['tokens']:,} tokens from "
                f"{summary['partitions']} Ray partitions ({summary['reused_partitions']} reused), "
                f"{summary['shards']} shards in {time.perf_counter() - t0:.1f} s",
                highlight=False,
            )
            return
        if quiet:
            summary = run_prepare(cfg)
        else:
            with _PrepareProgress() as bar:
                summary = run_prepare(cfg, bar.update)
        _print_summary(summary, time.perf_counter() - t0)


class _PrepareProgress:
    """A rich progress bar fed by the counters the Rust workers bump; in a non-terminal log, a plain line every
    ``BERTKIT_PROGRESS_EVERY`` seconds (MB read, MB/s, documents, tokens, ETA; instances built)."""

    plain: PlainLines | None = None

    def __enter__(self) -> _PrepareProgress:
        self.stage = "tokenize"
        if not interactive():
            self.plain = PlainLines("prepare")
            return self
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[detail]}"),
            console=console,
            transient=False,
        )
        self.progress.__enter__()
        self.task = self.progress.add_task("tokenize", total=None, detail="")
        self.stage = "tokenize"
        return self

    def _plain_update(self, c: dict) -> None:
        assert self.plain is not None
        changed = c["stage"] != self.stage
        self.stage = c["stage"]
        if self.stage not in ("tokenize", "instances") or not (changed or self.plain.due()):
            return  # "done": the summary line follows
        if self.stage == "tokenize":
            done, total = c["bytes"], c["total_bytes"] or None
            of = f"/{total / 1e6:,.1f}" if total else ""
            rate = done / 1e6 / max(self.plain.elapsed(), 1e-9)
            self.plain.emit(
                f"tokenize {done / 1e6:,.1f}{of} MB  {rate:,.1f} MB/s  {c['documents']:,} docs  {c['tokens']:,} tokens"
                f"  ETA {self.plain.eta(done, total)}"
            )
        else:
            self.plain.emit(f"{self.stage} {c['instances']:,} instances")

    def update(self, c: dict) -> None:
        if self.plain is not None:
            self._plain_update(c)
            return
        if c["stage"] != self.stage and c["stage"] == "instances":
            self.progress.update(self.task, completed=c["total_bytes"])
            self.stage = "instances"
            self.task = self.progress.add_task("instances", total=None, detail="")
        if self.stage == "tokenize":
            detail = f"{c['documents']:,} docs {c['tokens']:,} tokens"
            self.progress.update(self.task, completed=c["bytes"], total=c["total_bytes"] or None, detail=detail)
        else:
            self.progress.update(self.task, detail=f"{c['instances']:,} instances")

    def __exit__(self, *exc) -> None:
        if self.plain is None:
            self.progress.__exit__(*exc)


def _print_summary(summary: dict, seconds: float) -> None:
    t = summary["totals"]
    mb = summary["input_bytes"] / 1e6
    console.print(
        f"[green]wrote[/] {summary['out']}: {t['documents']:,} documents, {t['sentences']:,} sentences, "
        f"{t['tokens']:,} tokens in {summary['shards']} shards"
        + "".join(f", {n:,} {k} instances" for k, n in t.get("instances", {}).items())
        + f" ({mb:.1f} MB in {seconds:.1f} s, {mb / max(seconds, 1e-9):.1f} MB/s)",
        highlight=False,
    )
    for note in summary.get("notes", []):
        console.print(f"[yellow]note[/]: {escape(note)}", highlight=False, soft_wrap=True)
    if summary.get("resumed_shards"):
        console.print(f"resumed: {summary['resumed_shards']} shards were already complete")
    for reason, n in sorted(t.get("skipped", {}).items()):
        if n:
            console.print(f"[yellow]skipped[/] {n:,} {reason.replace('_', ' ')}", highlight=False)
