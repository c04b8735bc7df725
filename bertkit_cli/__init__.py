"""The `bertkit` command line: thin Typer commands over the `bertkit` library.

Each command module exposes `register(app)`; this module only assembles them.
"""

from __future__ import annotations

import signal
import sys
import threading


def _interrupted_while_loading(signum: int, frame: object) -> None:
    print("interrupted: nothing was started", file=sys.stderr)
    raise SystemExit(130)  # no traceback, unlike a KeyboardInterrupt escaping the imports below


def _catch_interrupt_while_loading() -> object:
    """Ctrl-C while the command line loads (typer, rich, the commands): a message, not a traceback. Returns the
    handler to restore once loaded (None when nothing was changed: not the main thread, or SIGINT ignored)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return None
    return signal.signal(signal.SIGINT, _interrupted_while_loading)


_previous = _catch_interrupt_while_loading()

from typing import Annotated  # noqa: E402

import typer  # noqa: E402

from bertkit_cli._common import make_app  # noqa: E402

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
if _previous is not None:
    signal.signal(signal.SIGINT, _previous)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C while the command line is being assembled, before any command runs
        print("interrupted: nothing was started", file=sys.stderr)
        raise SystemExit(130) from None
