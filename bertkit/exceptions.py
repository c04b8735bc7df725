"""Errors raised by bertkit. The Rust core's errors arrive as these (or as builtin OSError)."""


class BertkitError(Exception):
    """Base class for bertkit errors: the message names the file and the problem."""


class InputError(BertkitError, ValueError):
    """A malformed input file (invalid UTF-8, a bad JSONL line, a binary file, ...)."""


class FormatError(BertkitError, ValueError):
    """A file that is not what it should be: a vocab without [CLS], a corrupt shard, no manifest."""


class ConfigError(BertkitError, ValueError):
    """Invalid or contradictory options."""


class DatasetExistsError(BertkitError, FileExistsError):
    """The output directory already holds a dataset (use overwrite=True / --overwrite)."""


class Cancelled(BertkitError, KeyboardInterrupt):
    """The run was interrupted (Ctrl-C); nothing incomplete was published."""
