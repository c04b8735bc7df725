"""Resource options checked before any work: thread counts against the machine's logical CPUs.

No heavy imports (the CLI calls this before torch or the Rust core load).
"""

from __future__ import annotations

import os

from bertkit.exceptions import ConfigError

__all__ = ["THREADS_CEILING", "cap_threads", "logical_cpus"]

THREADS_CEILING = 1024
"""Thread counts above this are refused, not capped: a typo (``--threads 100000``), not a request."""


def logical_cpus() -> int:
    """The logical CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def cap_threads(requested: int | None, *, option: str = "--threads") -> tuple[int | None, str | None]:
    """``(threads, note)``: None stays None (the command's automatic choice), a count above the logical CPUs is
    capped to them with a note saying so; 0, a negative count or one above :data:`THREADS_CEILING` is a ConfigError
    naming ``option``."""
    if requested is None:
        return None, None
    if isinstance(requested, bool) or not isinstance(requested, int):
        raise ConfigError(f"{option} {requested!r}: must be a whole number of threads")
    cpus = logical_cpus()
    if requested < 1:
        raise ConfigError(f"{option} {requested}: must be >= 1 (leave it out to use all {cpus} logical CPUs)")
    if requested > THREADS_CEILING:
        raise ConfigError(
            f"{option} {requested}: above the ceiling of {THREADS_CEILING} threads (this machine has {cpus} logical "
            "CPUs)"
        )
    if requested > cpus:
        return cpus, f"{option} {requested} capped to the {cpus} logical CPUs of this machine"
    return requested, None
