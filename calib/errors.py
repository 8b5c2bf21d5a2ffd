"""Project errors.

Commands raise :class:`CalibError` (or a subclass) with a message that says what is wrong and what
to do; the CLI entry point turns it into one red line and an exit code, never a traceback
(``CALIB_DEBUG=1`` shows the traceback), following huggingface_hub's ``cli/_errors.py``.
"""

from __future__ import annotations


class CalibError(Exception):
    """A user-facing error. ``exit_code`` is what the CLI exits with."""

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(CalibError):
    """Bad arguments or options (exit code 2, as click does)."""

    exit_code = 2


class StoreError(CalibError):
    """The store directory is missing, locked, or corrupt."""


class SpecError(CalibError):
    """A reward spec failed validation; the message names the field."""

    exit_code = 2
