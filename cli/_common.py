"""Shared CLI pieces: the app factory, the console, error rendering and progress bars."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)


def make_app(**kwargs) -> typer.Typer:
    return typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False, **kwargs)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn bertkit's errors (and OS errors on user files) into a one-line message and exit code 1.

    Bad input must never end in a traceback: the message already names the file and the problem.
    """
    from bertkit.exceptions import BertkitError, Cancelled

    try:
        yield
    except (Cancelled, KeyboardInterrupt) as e:
        message = str(e) if isinstance(e, Cancelled) and str(e) else "nothing incomplete was published"
        console.print(f"[yellow]interrupted[/]: {escape(message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    except (BertkitError, OSError) as e:
        console.print(f"[red]error[/]: {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def fail(message: str) -> None:
    console.print(f"[red]error[/]: {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(1)
