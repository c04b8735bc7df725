"""`bertkit inspect`, `bertkit verify` and `bertkit merge`: thin commands over `bertkit.data`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bertkit_cli._common import console, user_errors

out = Console(highlight=False)  # results go to stdout; errors and progress to stderr (cli._common.console)

DirArg = Annotated[Path, typer.Argument(help="A dataset directory (holding manifest.json).", show_default=False)]


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _kv_table(title: str, rows: dict[str, Any]) -> Table:
    t = Table(title=title, show_header=False, title_justify="left", title_style="bold")
    t.add_column(style="cyan")
    t.add_column()
    for k, v in rows.items():
        t.add_row(escape(str(k)), escape(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)))
    return t


def _decode(ds: Any, ids: Any) -> str:
    from bertkit.exceptions import FormatError

    try:
        return ds.decode(ids)
    except (OSError, FormatError) as e:
        return f"<cannot decode: {e}> ids: {[int(i) for i in ids][:64]}"


def _samples(ds: Any, n: int, max_chars: int = 600) -> dict[str, Any]:
    """n documents spread over the dataset and the first instance of each kind, decoded."""
    import numpy as np

    docs = []
    total = len(ds.documents)
    if n > 0 and total:
        for i in sorted({int(x) for x in np.linspace(0, total - 1, min(n, total))}):
            d = ds.documents[i]
            text = _decode(ds, d.tokens)
            docs.append(
                {
                    "index": i,
                    "source": d.source,
                    "sentences": len(d.sentences),
                    "tokens": len(d.tokens),
                    "text": text if len(text) <= max_chars else text[:max_chars] + " …",
                }
            )
    instances: dict[str, Any] = {}
    for kind in ds.instance_kinds if n > 0 else []:
        view = ds.instances(kind)
        if not len(view):
            continue
        item = view[0]
        if kind == "nsp":
            instances[kind] = {
                "text": _decode(ds, item["input_ids"]),
                "next_sentence_label": item["next_sentence_label"],
                "masked_lm_positions": [int(p) for p in item["masked_lm_positions"]],
                "masked_lm_tokens": _decode(ds, item["masked_lm_ids"]),
            }
        elif kind == "mlm":
            instances[kind] = {"text": _decode(ds, item), "seq_len": len(item)}
        else:
            instances[kind] = {"chunks": len(item), "text": [_decode(ds, c) for c in item[:3]]}
    return {"documents": docs, "instances": instances}


def inspect(
    path: DirArg,
    sample: Annotated[int, typer.Option("--sample", min=0, help="How many decoded documents to show.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Show a dataset: totals, tokenizer, shards, configuration and decoded samples."""
    with user_errors():
        from bertkit.data import open_dataset

        ds = open_dataset(path)
        summary = ds.summary()
        samples = _samples(ds, sample)
    if as_json:
        print(json.dumps(summary | {"samples": samples}, indent=2, ensure_ascii=False))
        return
    s = summary
    out.print(
        f"[bold]{escape(s['path'])}[/]: {s['kind']} dataset ({s['format']}, {escape(s['created_by'])}), "
        f"tokens {s['token_dtype']}, {s['shards']['count']} shards, {_human_bytes(s['bytes'])}",
        soft_wrap=True,
    )
    totals = s["totals"]
    rows = {k: f"{totals[k]:,}" for k in ("documents", "sentences", "tokens")}
    rows |= {f"instances.{k}": f"{v:,}" for k, v in totals["instances"].items()}
    rows |= {f"skipped.{k}": f"{v:,}" for k, v in totals["skipped"].items()}
    out.print(_kv_table("Totals", rows))
    out.print(_kv_table("Tokenizer", s["tokenizer"] | {"splitter": s["splitter"]}))
    shards = Table(title="Shards", title_justify="left", title_style="bold")
    for col in ("kind", "shards", "rows", "tokens", "size"):
        shards.add_column(col, justify="left" if col == "kind" else "right")
    for kind, e in s["shards"]["by_kind"].items():
        shards.add_row(kind, f"{e['shards']:,}", f"{e['rows']:,}", f"{e['tokens']:,}", _human_bytes(e["bytes"]))
    out.print(shards)
    config = dict(s["config"])
    if isinstance(config.get("merged_from"), list):  # whole source manifests: show one line per source
        config["merged_from"] = "\n".join(
            f"{x.get('path')}: {x.get('totals', {}).get('documents', '?'):,} documents, "
            f"{x.get('totals', {}).get('tokens', '?'):,} tokens, {x.get('shards', '?')} shards"
            for x in config["merged_from"]
        )
    out.print(_kv_table("Config", config))
    for d in samples["documents"]:
        out.print(
            f"[bold]document {d['index']}[/] ({escape(d['source'])}, {d['sentences']} sentences, {d['tokens']} tokens)"
        )
        out.print(escape(d["text"]), soft_wrap=True)
    for kind, inst in samples["instances"].items():
        out.print(f"[bold]{kind} instance 0[/]")
        out.print(escape(json.dumps(inst, ensure_ascii=False)), soft_wrap=True)


def verify(path: DirArg) -> None:
    """Re-hash every shard file against the manifest's xxh3 checksums."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with user_errors():
        from bertkit.data.dataset import count_files, verify_dataset

        n_files = count_files(path)
        with Progress(
            TextColumn("verifying"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("verify", total=None)

            def on_progress(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            problems = verify_dataset(path, on_progress=on_progress)
    if problems:
        for p in problems:
            console.print(f"[red]FAILED[/]: {escape(p)}", soft_wrap=True)
        console.print(f"{len(problems)} problem(s) in {n_files} files", soft_wrap=True)
        raise typer.Exit(1)
    out.print(f"OK: {n_files} files verified", soft_wrap=True)


def merge(
    dirs: Annotated[list[Path], typer.Argument(help="Dataset directories to merge, in order.", show_default=False)],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the merged manifest.", show_default=False)],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a dataset already in --out.")] = False,
) -> None:
    """Merge datasets into one manifest (no shard data is copied; the inputs must stay in place)."""
    with user_errors():
        from bertkit.data import merge_datasets

        m = merge_datasets(dirs, out_dir, overwrite=overwrite)
    t = m.totals
    out.print(
        f"merged {len(dirs)} datasets into {escape(str(out_dir))}: {len(m.shards)} shards, "
        f"{t.documents:,} documents, {t.tokens:,} tokens",
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command("inspect", epilog="Examples:\n\n  bertkit inspect data/ds\n\n  bertkit inspect data/ds --sample 2")(
        inspect
    )
    app.command("verify", epilog="Examples:\n\n  bertkit verify data/ds")(verify)
    app.command("merge", epilog="Examples:\n\n  bertkit merge data/part1 data/part2 --out data/all")(merge)
