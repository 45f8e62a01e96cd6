"""Errors a user can cause.

Everything the user can get wrong (a recipe key, a dataset path, a checkpoint file) raises
`UserError` with one line that names the file, key or image and says what is allowed. The CLI
prints that line and exits with code 2; it never shows a traceback for these.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, reported as one line and exit code 2."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # one line, always
        return " ".join(self.message.split("\n"))

