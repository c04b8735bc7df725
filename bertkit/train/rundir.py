"""The run directory of one ``train`` session: its lock, and a start-up that leaves nothing behind.

:class:`RunSession` takes the exclusive lock of the run directory (``bertkit.locks.output_lock``; rank 0 only under
torchrun, the other ranks write nothing there) before the first byte and releases it on every exit path. Until the
training loop starts (:meth:`RunSession.started`), a failure or a Ctrl-C removes whatever this session added to the
directory (its config.json, an opened metrics.jsonl, TensorBoard events, the directory itself when it created it):
a run that never took a step leaves no run that looks started. A Ctrl-C during start-up becomes
:class:`~bertkit.exceptions.Cancelled` with a one-line message.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

from bertkit.exceptions import Cancelled, ConfigError
from bertkit.locks import is_lock_file, output_lock

__all__ = ["RunSession"]


class RunSession:
    """``with RunSession(is_main) as session: run_dir = session.open(config.out); ...; session.started()``."""

    def __init__(self, is_main: bool = True, purpose: str = "bertkit train") -> None:
        self.is_main = is_main
        self.purpose = purpose
        self.run_dir: Path | None = None
        self._stack = contextlib.ExitStack()
        self._created = False
        self._before: set[str] = set()
        self._started = False
        self._locked = False

    def __enter__(self) -> RunSession:
        return self

    def open(self, out: str) -> Path:
        """Check that ``out`` is a writable directory (created if missing) and, on rank 0, lock it: an
        OutputLockedError naming the holder's pid when another live process writes there."""
        if not out:
            raise ConfigError("no run directory: set out (--out)")
        run_dir = Path(out)
        self._created = not run_dir.exists()
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            probe = run_dir / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise ConfigError(f"{run_dir}: run directory is not writable ({e.strerror or e})") from None
        if self.is_main:
            self._stack.enter_context(output_lock(run_dir, purpose=self.purpose))
            self._before = {p.name for p in run_dir.iterdir() if not is_lock_file(p)}
            self._locked = True  # only now may a failed start-up clean up: the directory is ours
        self.run_dir = run_dir
        return run_dir

    def started(self) -> None:
        """The training loop begins: from here on, what the run wrote stays (checkpoints resume it)."""
        self._started = True

    def _undo_startup(self) -> None:
        run_dir = self.run_dir
        if run_dir is None or not self._locked:
            return
        for p in run_dir.iterdir():
            if p.name in self._before or is_lock_file(p):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        failed_early = exc_type is not None and not self._started
        try:
            if failed_early:
                self._undo_startup()
        finally:
            self._stack.close()  # releases the lock (and removes its file)
        if failed_early and self._created and self._locked and self.run_dir is not None:
            with contextlib.suppress(OSError):
                self.run_dir.rmdir()  # only when empty: never removes anything but what this session made
        if failed_early and issubclass(exc_type, KeyboardInterrupt) and not isinstance(exc, Cancelled):
            where = f"{self.run_dir}: " if self.run_dir is not None else ""
            raise Cancelled(f"{where}interrupted during start-up, before the first step; nothing was written") from None
