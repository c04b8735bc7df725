"""`bertkit encode` (chunks → embedding store) and `bertkit embed` (files → document embeddings): NextLevelBERT's
encoding side, thin wrappers over `bertkit.encode`."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from bertkit_cli._common import PlainLines, console, interactive, user_errors


def register(app: typer.Typer) -> None:
    app.command(
        "encode",
        epilog=(
            "Examples:\n\n"
            "  bertkit prepare books.jsonl --tokenizer data/minilm/tokenizer.json --out data/books "
            "--instances chunks --chunk-size 256\n\n"
            "  bertkit encode data/books --encoder all-MiniLM-L6-v2 --out data/books-emb\n\n"
            "  bertkit encode data/books --out data/books-emb --compile   # long CPU jobs: torch.compile, ~1.2x\n\n"
            "  for i in 0 1 2 3; do CUDA_VISIBLE_DEVICES=$i bertkit encode data/books --out data/books-emb "
            "--shard $i/4 & done; wait   # 4 GPUs; the last one to finish writes the manifest\n\n"
            "  torchrun --nproc-per-node 8 -m bertkit_cli encode data/books --out data/books-emb  # RANK/WORLD_SIZE"
        ),
    )(encode)
    app.command(
        "embed",
        epilog=(
            "Examples:\n\n"
            "  bertkit embed runs/nextlevel chapters/*.txt --out chapters.npy          # one document per file\n\n"
            "  bertkit embed runs/nextlevel data/bbc.jsonl --out bbc.npy               # one document per line\n\n"
            "  bertkit embed all-MiniLM-L6-v2 notes.txt --doc-mode blank-line --out notes.npy   # the encoder baseline"
        ),
    )(embed)


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    """``I/N`` → (I, N); without --shard, torchrun's RANK / WORLD_SIZE when set."""
    from bertkit.exceptions import ConfigError

    if text is None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return (int(os.environ.get("RANK", "0")), world) if world > 1 else None
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None
    return index, count


def encode(
    dataset: Annotated[Path, typer.Argument(help="Prepared dataset with chunk instances (--instances chunks).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Embedding store directory.")],
    encoder: Annotated[
        str, typer.Option(help="sentence-transformers / BERT directory, or a name resolved offline.")
    ] = "all-MiniLM-L6-v2",
    batch_size: Annotated[int | None, typer.Option(help="Chunks per batch (default: 32 on CPU, 1024 on CUDA).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    precision: Annotated[str, typer.Option(help="auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16")] = "auto",
    max_seq_length: Annotated[
        int | None, typer.Option(help="Truncate chunks to this many tokens (default: the encoder's max_seq_length).")
    ] = None,
    shard: Annotated[
        str | None, typer.Option(help="I/N: encode only this process's share (default: torchrun's RANK/WORLD_SIZE).")
    ] = None,
    shard_chunks: Annotated[int, typer.Option(help="Chunks per store shard (the unit of resume).")] = 1 << 16,
    threads: Annotated[
        int | None,
        typer.Option(help="CPU threads for torch (capped to the logical CPUs).", show_default="torch's default"),
    ] = None,
    compile: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="torch.compile the encoder: ~1.2x chunks/s on CPU after a compile of ~35 s; for long jobs.",
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace what --out holds.")] = False,
    verify_data: Annotated[
        bool, typer.Option("--verify-data/--no-verify-data", help="Check each dataset shard's checksum on first read.")
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Embed every chunk of a dataset with a sentence-transformers encoder into a float16 embedding store
    (length-sorted batches, bf16 on GPU, resumable: run it again after an interruption)."""
    from bertkit.encode.store import encode_dataset
    from bertkit.resources import cap_threads

    with user_errors():
        parsed = _parse_shard(shard)
        if device == "auto" and parsed is not None and "LOCAL_RANK" in os.environ:
            import torch

            if torch.cuda.is_available():
                device = f"cuda:{os.environ['LOCAL_RANK']}"
        threads, note = cap_threads(threads)
        if note:
            console.print(f"[yellow]note[/]: {note}", highlight=False)
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        with _Progress("encode", "chunks", enabled=not quiet) as bar:
            summary = encode_dataset(
                dataset,
                encoder,
                out,
                shard=parsed,
                batch_size=batch_size,
                device=device,
                precision=precision,
                max_seq_length=max_seq_length,
                shard_chunks=shard_chunks,
                overwrite=overwrite,
                on_progress=bar.update,
                compile=compile,
                verify_data=verify_data,
            )
    rate = summary["encoded_chunks"] / max(summary["seconds"], 1e-9)
    line = (
        f"{summary['documents']:,} documents, {summary['chunks']:,} chunks x {summary['dim']} in "
        f"{summary['shards']} shards; encoded {summary['encoded_chunks']:,} chunks now ({rate:,.1f} chunks/s on "
        f"{summary['device']})"
    )
    if summary["resumed_shards"]:
        line += f", {summary['resumed_shards']} shard(s) were already done"
    if summary["complete"]:
        console.print(f"[green]wrote[/] {escape(summary['out'])}: {escape(line)}", highlight=False)
    else:
        console.print(
            f"[yellow]partial[/] {escape(summary['out'])}: {escape(line)}; the manifest is written when every shard "
            "is done (by the last --shard process, or by running bertkit encode again)",
            highlight=False,
        )


def embed(
    source: Annotated[str, typer.Argument(help="NextLevel run directory, or an encoder (the mean-pooled baseline).")],
    files: Annotated[list[Path], typer.Argument(help=".txt files (see --doc-mode) or .jsonl (a document per line).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .npy (float32 [documents, dim]); index in .json.")],
    doc_mode: Annotated[str, typer.Option(help="Text files: file (one document each) | blank-line | line.")] = "file",
    text_field: Annotated[str, typer.Option(help="JSONL field holding the text.")] = "text",
    chunk_size: Annotated[
        int | None, typer.Option(help="Encoder baseline: chunk tokens (default 256; 0 = sentences).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Chunks per encoder batch.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    compile: Annotated[
        bool, typer.Option("--compile", help="torch.compile the chunk encoder (as `bertkit encode --compile`).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """One embedding per document: chunk, encode and run a NextLevel model (or average the encoder's chunk
    embeddings), write an .npy with rows in input order (files as given, documents in file order)."""
    from bertkit.encode.documents import embed_files

    with user_errors():
        with _Progress("embed", "docs", enabled=not quiet) as bar:
            summary = embed_files(
                source,
                files,
                out,
                text_field=text_field,
                doc_mode=doc_mode,
                device=device,
                batch_size=batch_size,
                chunk_size=chunk_size,
                on_progress=bar.update,
                compile=compile,
            )
    console.print(
        f"[green]wrote[/] {escape(summary['out'])}: {summary['documents']:,} documents x {summary['dim']}",
        highlight=False,
    )


class _Progress:
    """A rich bar fed by ``on_progress(done, total)``: items/s and time left."""

    def __init__(self, label: str, unit: str, enabled: bool = True) -> None:
        self.label, self.unit, self.enabled = label, unit, enabled
        self.progress: Any = None
        self.task: Any = None
        self.plain: PlainLines | None = None
        self.first_done = 0
        self.t0 = time.perf_counter()

    def __enter__(self) -> _Progress:
        return self

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if not interactive():  # a batch job / pipe / CI log: a plain line every BERTKIT_PROGRESS_EVERY seconds
            if self.plain is None:
                self.plain, self.first_done = PlainLines(self.label), done  # a resumed job starts above 0
            if self.plain.due() or done >= total:
                new = done - self.first_done
                rate = new / max(self.plain.elapsed(), 1e-9)
                pct = f" ({100 * done / total:.0f}%)" if total else ""
                eta = self.plain.eta(new, total - self.first_done)
                self.plain.emit(f"{done:,}/{total:,} {self.unit}{pct}  {rate:,.1f} {self.unit}/s  ETA {eta}")
            return
        if self.progress is None:  # drawn from the first report on, so that bad input shows only its error
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn(f"[bold]{self.label}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=console,
            )
            self.progress.__enter__()
            self.task = self.progress.add_task(self.label, total=total, rate="")
            self.t0 = time.perf_counter()
        if done == 0:
            self.t0 = time.perf_counter()
        rate = done / max(time.perf_counter() - self.t0, 1e-9)
        self.progress.update(self.task, completed=done, total=total, rate=f"{rate:,.1f} {self.unit}/s")

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)
