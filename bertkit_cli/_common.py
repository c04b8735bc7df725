"""Shared CLI pieces: the app factory, the console, error rendering and progress bars."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True, soft_wrap=True)  # a log line is one line, not wrapped at 80 columns in a pipe


class _Command(typer.core.TyperCommand):
    """A command whose ``--help`` shows a default for every option: an option without one (None: the command
    decides, the help text says how) shows ``none`` unless its help already names its default; an off switch
    ``off``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if param.param_type_name != "option" or isinstance(param.show_default, str) or param.required:
                continue
            if param.name == "help":
                continue
            if getattr(param, "is_flag", False) and not getattr(param, "secondary_opts", None) and not param.default:
                param.show_default = "off"
            elif param.default is None and "default" not in (param.help or "").lower():
                param.show_default = "none"

    def invoke(self, ctx: Any) -> Any:
        """Run the command; a missing optional dependency is one line naming the extra to install."""
        from bertkit.extras import install_hint

        try:
            return super().invoke(ctx)
        except ImportError as e:
            hint = install_hint(e)
            if hint is None:
                raise
            console.print(f"[red]error[/]: {escape(hint)}", highlight=False)
            raise typer.Exit(1) from None


class _App(typer.Typer):
    def command(self, *args: Any, cls: Any = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or _Command, **kwargs)


def make_app(**kwargs) -> typer.Typer:
    return _App(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False, **kwargs)


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


def interactive() -> bool:
    """Whether progress bars can be drawn: the console (stderr) is a terminal. A batch job, ``| tee`` or CI gets
    plain progress lines instead (:class:`PlainLines`)."""
    return console.is_terminal


def format_eta(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``12s``; ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "?"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class PlainLines:
    """Plain progress lines for a non-terminal log: at most one every ``BERTKIT_PROGRESS_EVERY`` seconds (10 by
    default; 0 = every report), and the final one."""

    def __init__(self, label: str) -> None:
        import os
        import time

        self.label = label
        self._clock = time.perf_counter
        self.t0 = self._clock()
        try:
            self.every = max(0.0, float(os.environ.get("BERTKIT_PROGRESS_EVERY", "10")))
        except ValueError:
            self.every = 10.0
        self._last: float | None = None

    def elapsed(self) -> float:
        return self._clock() - self.t0

    def due(self) -> bool:
        now = self._clock()
        return self._last is None or now - self._last >= self.every

    def emit(self, text: str) -> None:
        self._last = self._clock()
        console.print(f"{self.label}: {escape(text)}", highlight=False, soft_wrap=True)

    def eta(self, done: float, total: float | None) -> str:
        """Time left at the average rate so far."""
        if not total or done <= 0:
            return "?"
        return format_eta((total - done) * self.elapsed() / done)


def choice(options: Sequence[str]) -> Any:
    """A ``Literal`` of the library's own list of names: Typer checks the value and lists the choices in ``--help``
    (the list lives in the library, never copied here)."""
    return Literal[tuple(options)]  # type: ignore[valid-type]
