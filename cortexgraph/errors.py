"""Errors that tell the user which file and section is at fault and what to do."""

from __future__ import annotations


class CortexgraphError(Exception):
    """A user-facing error: names the file and section concerned and the fix.

    The CLI prints ``str(error)`` and exits with status 2; tracebacks are shown only with ``-v``.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        section: int | None = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.file = None if file is None else str(file)
        self.section = section
        self.fix = fix
        super().__init__(self.__str__())

    def __str__(self) -> str:
        parts = []
        if self.file is not None:
            parts.append(f"{self.file}")
        if self.section is not None:
            parts.append(f"section {self.section}")
        where = (": ".join(parts) + ": ") if parts else ""
        fix = f" Fix: {self.fix}" if self.fix else ""
        return f"{where}{self.message}{fix}"


class DataFormatError(CortexgraphError):
    """Input data does not follow docs/data-format.md."""


class ConvergenceError(CortexgraphError):
    """An iterative solver did not reach its tolerance."""
