"""Errors a user can fix: each message is one line naming the file, line and field at fault.

Entry points (``train.py``, ``predict.py``, data scripts) catch :class:`BertkitError`, print it to stderr and exit 2.
"""

from __future__ import annotations

import os


class BertkitError(Exception):
    """Base class of every error caused by bad input, options or files (not by a bug)."""


class DataError(BertkitError):
    """Bad data in a file: ``DataError("corpus/train.jsonl", 12, "label", "missing")`` reads
    ``corpus/train.jsonl:12: field 'label': missing``. ``line`` is 1-based; ``None`` when not line-specific;
    ``field`` may be ``None`` when the whole line is at fault."""

    def __init__(self, path, line: int | None, field: str | None, message: str):
        self.path = os.fspath(path) if path is not None else "<input>"
        self.line = line
        self.field = field
        self.message = message
        location = self.path if line is None else f"{self.path}:{line}"
        what = f"field {field!r}: {message}" if field is not None else message
        super().__init__(f"{location}: {what}")


class ConfigError(BertkitError):
    """A bad option or configuration value (the message names the option)."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


class CheckpointError(BertkitError):
    """A missing, incomplete or inconsistent encoder/checkpoint directory."""

    def __init__(self, path, message: str):
        self.path = os.fspath(path) if path is not None else "<checkpoint>"
        self.message = message
        super().__init__(f"{self.path}: {message}")


class Interrupted(BertkitError):
    """Training stopped by Ctrl-C / SIGTERM after backing up its state; the message says how to resume.
    Entry points print it as one ``interrupted:`` line and exit with status 130."""

    exit_status = 130
