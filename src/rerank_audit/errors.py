"""The one error type for bad user input: it names the file, the record and the fix."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """A malformed input file.

    ``where`` is a record locator such as ``"line 12"`` or ``"row 3"``; ``fix`` tells the
    user what to change. The message reads ``path, line 12: problem. Fix: ...``.
    """

    def __init__(self, path: str | Path, problem: str, where: str | None = None, fix: str | None = None):
        self.path, self.problem, self.where, self.fix = str(path), problem, where, fix
        location = f"{path}, {where}" if where else str(path)
        message = f"{location}: {problem}"
        if fix:
            message += f". Fix: {fix}"
        super().__init__(message)
