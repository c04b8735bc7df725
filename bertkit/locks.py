"""An exclusive lock on an output directory, so that two bertkit writers never share one.

Every command that writes a directory (a dataset, an embedding store, a run, an export) holds `output_lock(dir)`
from before its first byte until it has published (or given up). The lock is a `flock` on `dir/.bertkit.lock`,
which the kernel drops when the holding process dies, so a lock left by a killed process is stale by
construction: the next writer takes it over (and is told whose it was). The file holds the holder's pid, host,
start time and command, so a second writer's error names who holds the directory.

    with output_lock("data/ds", purpose="bertkit prepare"):
        ...  # write files, publish the manifest last
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from bertkit.exceptions import BertkitError

LOCK_NAME = ".bertkit.lock"


class OutputLockedError(BertkitError, BlockingIOError):
    """Another live process holds the output directory's lock."""


def _holder(path: Path) -> dict[str, object]:
    try:
        return json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def _describe(info: dict[str, object]) -> str:
    parts = [f"pid {info['pid']}" if "pid" in info else "an unknown process"]
    if info.get("host") and info.get("host") != socket.gethostname():
        parts.append(f"on {info['host']}")
    if info.get("started"):
        parts.append(f"since {info['started']}")
    if info.get("purpose"):
        parts.append(f"running `{info['purpose']}`")
    return ", ".join(parts)


@contextlib.contextmanager
def output_lock(directory: str | os.PathLike[str], *, purpose: str | None = None) -> Iterator[Path]:
    """Hold the exclusive lock of `directory` (created if missing) for the body of the `with`.

    Raises OutputLockedError naming the holder when another live process holds it; never waits. The lock file is
    removed on every exit path (exceptions and Ctrl-C included). Re-entrant use from the same process on the same
    directory is refused like any other second writer. Yields the lock file's path.
    """
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise BertkitError(f"{root}: exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise OutputLockedError(
                f"{root}: another bertkit process is writing here ({_describe(_holder(path))}); "
                "wait for it to finish or stop it"
            ) from None
        # The holder we waited on may have unlinked the file between our open and our flock: then we hold a lock
        # on a file nobody else will see. Retry until the locked file is the one at the path.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    stale = _holder(path)
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "purpose": purpose or " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:]) or "python",
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    if stale.get("pid") not in (None, os.getpid()):
        print(
            f"note: {root}: took over a stale lock of a process that no longer runs ({_describe(stale)})",
            file=sys.stderr,
        )
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def is_lock_file(path: str | os.PathLike[str]) -> bool:
    """True for the lock file itself (readers, `verify` and `--overwrite` skip it)."""
    return Path(path).name == LOCK_NAME
