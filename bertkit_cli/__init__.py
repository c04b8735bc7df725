"""The `bertkit` command line: thin Typer commands over the `bertkit` library.

Each command module exposes `register(app)`; this module only assembles them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from bertkit_cli._common import make_app

app = make_app(help="bertkit: prepare corpora, pretrain and evaluate BERT-family encoders.")


def _print_version(value: bool) -> None:
    if value:
        import bertkit

        typer.echo(f"bertkit {bertkit.__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """bertkit: prepare corpora, pretrain and evaluate BERT-family encoders."""


def _register() -> None:
    from bertkit_cli import dataset, encode, export, prepare, tokenizer, train
    from bertkit_cli import eval as eval_cmd

    prepare.register(app)
    dataset.register(app)
    tokenizer.register(app)
    train.register(app)
    encode.register(app)
    eval_cmd.register(app)
    export.register(app)


_register()


def main() -> None:
    app()
