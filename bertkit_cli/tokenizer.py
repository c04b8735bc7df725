"""`bertkit tokenizer train`: train a WordPiece vocabulary (bert or elc style)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bertkit.tokenizers import STYLES
from bertkit_cli._common import choice, console, make_app, user_errors

out = Console(highlight=False)


def train(
    corpus: Annotated[
        list[Path], typer.Argument(help="Text files (.txt, .gz, .jsonl) or directories.", show_default=False)
    ],
    vocab_size: Annotated[int, typer.Option("--vocab-size", min=1, help="Vocabulary size.", show_default=False)],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for tokenizer.json and vocab.txt.")],
    style: Annotated[
        choice(STYLES), typer.Option("--style", help="bert (## pieces) or elc (byte-level, ELC-BERT).")
    ] = "bert",
    min_frequency: Annotated[
        int | None, typer.Option("--min-frequency", min=0, help="Default: 2 (bert), 10 (elc).", show_default=False)
    ] = None,
    text_field: Annotated[str, typer.Option("--text-field", help="The text field of .jsonl files.")] = "text",
    lowercase: Annotated[bool, typer.Option("--lowercase/--cased", help="Lower-case (bert style only).")] = True,
) -> None:
    """Train a WordPiece tokenizer on a corpus."""
    with user_errors():
        from bertkit.tokenizers import train_tokenizer

        with warnings.catch_warnings(record=True), console.status("training the tokenizer"):
            summary = train_tokenizer(
                corpus,
                out_dir,
                vocab_size,
                style=style,
                min_frequency=min_frequency,
                lowercase=lowercase,
                text_field=text_field,
            )
    for path, n in summary["latin1_lines"].items():
        console.print(f"[yellow]warning[/]: {escape(path)}: {n} line(s) not UTF-8, read as latin-1", soft_wrap=True)
    t = Table(show_header=False, title=f"{style} tokenizer", title_justify="left", title_style="bold")
    t.add_column(style="cyan")
    t.add_column()
    t.add_row("vocab size", f"{summary['vocab_size']:,} (asked {summary['requested_vocab_size']:,})")
    t.add_row("min frequency", str(summary["min_frequency"]))
    t.add_row("specials", escape(" ".join(f"{k}={v}" for k, v in summary["special_tokens"].items())))
    t.add_row("read", f"{len(summary['files'])} files, {summary['lines']:,} lines, {summary['bytes']:,} bytes")
    t.add_row("time", f"{summary['seconds']:.2f} s")
    out.print(t)
    out.print(f"wrote {escape(summary['tokenizer_json'])} and {escape(summary['vocab_txt'])}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    tok_app = make_app(help="Train tokenizers.")
    tok_app.command(
        "train",
        epilog=(
            "Examples:\n\n"
            "  bertkit tokenizer train corpus.txt --vocab-size 16384 --out tok/\n\n"
            "  bertkit tokenizer train 'books/*.jsonl' --vocab-size 8192 --out tok-elc/ --style elc"
        ),
    )(train)
    app.add_typer(tok_app, name="tokenizer")
