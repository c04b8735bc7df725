"""Publishing an export directory safely: lock, refuse what bertkit did not write, write aside, rename last.

Every export directory carries ``bertkit_export.json`` (written last) naming each file bertkit wrote with its size
and sha256. :func:`check_out_dir` runs before any work: an OUT that is a file (or a link) is refused (a file is never
replaced by a folder); an existing non-empty OUT needs ``overwrite``; and ``overwrite`` only replaces a directory that
holds nothing but a previous bertkit export's files, unmodified (anything else is refused, naming it). :func:`publish`
holds ``bertkit.locks.output_lock`` on OUT, writes every file into a hidden sibling ``.OUT.tmp-PID/``, and swaps it in
with renames: an interrupted export leaves only hidden siblings, never a directory that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bertkit.exceptions import BertkitError, ConfigError
from bertkit.locks import is_lock_file, output_lock

__all__ = ["RECORD", "ExportExistsError", "check_out_dir", "publish"]

RECORD = "bertkit_export.json"
FORMAT = "bertkit.export"


class ExportExistsError(BertkitError, FileExistsError):
    """OUT exists and may not be replaced (no overwrite, or it holds files bertkit did not write)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _record(out: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((out / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), dict):
        return None
    return data


def check_out_dir(out: str | os.PathLike[str], overwrite: bool) -> None:
    """ExportExistsError / ConfigError naming ``out`` unless it may be written (see the module docstring)."""
    out = Path(out)
    if out.is_symlink():
        raise ExportExistsError(f"{out}: is a symbolic link; export to the directory it points to, not the link")
    if out.exists() and not out.is_dir():
        raise ExportExistsError(f"{out}: exists and is not a directory; not replacing it with an export directory")
    if not out.exists():
        if out.parent.exists() and not out.parent.is_dir():
            raise ConfigError(f"{out.parent}: is not a directory")
        return
    entries = [p for p in out.iterdir() if not is_lock_file(p)]  # the lock file of an interrupted export is no content
    if not entries:
        return
    if not overwrite:
        raise ExportExistsError(f"{out}: already exists and is not empty (use --overwrite to replace a bertkit export)")
    record = _record(out)
    if record is None:
        raise ExportExistsError(
            f"{out}: not a bertkit export (no readable {RECORD}); --overwrite only replaces what bertkit wrote, "
            "remove or rename the directory yourself"
        )
    files: Mapping[str, Any] = record["files"]
    folders = {str(Path(name).parent) for name in files} - {"."}
    folders |= {str(parent) for name in folders for parent in Path(name).parents} - {"."}
    foreign = []
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out).as_posix()
        if is_lock_file(p) or rel == RECORD:
            continue
        if p.is_dir() and not p.is_symlink():
            if rel not in folders:
                foreign.append(rel + "/")
        elif rel not in files or p.is_symlink():
            foreign.append(rel)
    foreign = [f for f in foreign if not any(f.startswith(d) and f != d for d in foreign if d.endswith("/"))]
    if foreign:
        raise ExportExistsError(
            f"{out}: holds files bertkit did not write ({', '.join(foreign[:8])}"
            f"{f' and {len(foreign) - 8} more' if len(foreign) > 8 else ''}); not overwriting: move them away first"
        )
    changed = [
        name
        for name, meta in files.items()
        if (out / name).is_file()
        and (
            not isinstance(meta, dict)
            or meta.get("size") != (out / name).stat().st_size
            or meta.get("sha256") != _sha256(out / name)
        )
    ]
    if changed:
        raise ExportExistsError(
            f"{out}: file(s) changed since bertkit wrote them ({', '.join(sorted(changed))}); not overwriting"
        )


Content = bytes | Callable[[Path], None]


def publish(
    out: str | os.PathLike[str],
    files: Mapping[str, Content],
    *,
    overwrite: bool = False,
    info: Mapping[str, Any] | None = None,
    purpose: str = "bertkit export",
) -> Path:
    """Write ``files`` (name → bytes, or a function writing the file at the path it is given) as the directory
    ``out``, with the record ``bertkit_export.json`` (``info`` merged in) last. Returns ``out``."""
    out = Path(out)
    for name in files:
        parts = name.split("/")
        if name == RECORD or any(not part or part.startswith(".") for part in parts) or "\\" in name:
            raise ConfigError(f"export file name {name!r} is not allowed")
    check_out_dir(out, overwrite)
    created = not out.exists()  # output_lock creates OUT; a failed export removes it again
    try:
        return _publish_locked(out, files, overwrite, info, purpose)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def _publish_locked(
    out: Path, files: Mapping[str, Content], overwrite: bool, info: Mapping[str, Any] | None, purpose: str
) -> Path:
    with output_lock(out, purpose=purpose):
        check_out_dir(out, overwrite)  # again, now that no other bertkit writer can change it
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        for stale in (tmp, old):
            if stale.exists():
                shutil.rmtree(stale)
        try:
            tmp.mkdir()
            for name, content in files.items():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, bytes):
                    (tmp / name).write_bytes(content)
                else:
                    content(tmp / name)
            written = {
                name: {"size": (tmp / name).stat().st_size, "sha256": _sha256(tmp / name)} for name in sorted(files)
            }
            record = {
                "format": FORMAT,
                "version": 1,
                **dict(info or {}),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "files": written,
            }
            (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            for p in tmp.rglob("*"):
                if p.is_file():
                    with open(p, "rb") as f:
                        os.fsync(f.fileno())
            out.rename(old)  # the lock file travels with it; the lock stays held until the with-block ends
            tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if old.exists() and not out.exists():
                old.rename(out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    return out
