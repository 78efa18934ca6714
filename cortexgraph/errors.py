"""Errors that tell the user which file and section is at fault and what to do.

Every error a user can cause (bad input data, bad parameters, a stage run out of order, a busy
stage) is a :class:`CortexgraphError`; the command line prints it on one line and exits with the
class's ``exit_code``:

====  ==============================  =========================================================
code  class                           meaning
====  ==============================  =========================================================
0                                     success (outputs written or reused)
1                                     an internal error (a bug: rerun with ``--debug`` and report it)
2     CortexgraphError,               bad input data or bad parameters: fix the named file or option
      DataFormatError, ParameterError
3     StageBusyError                  the same stage runs on this brain already (a lock is held)
4     UpstreamError                   an input stage is missing, unfinished or stale: run the command
                                      named in the message first
5     ResourceError                   the stage would need more memory than the machine has
130                                   interrupted (Ctrl-C)
====  ==============================  =========================================================
"""

from __future__ import annotations

import os
from collections.abc import Iterable


class CortexgraphError(Exception):
    """A user-facing error: names the file and section concerned and the fix.

    The CLI prints ``str(error)`` and exits with ``exit_code``; tracebacks only with ``--debug``.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | os.PathLike[str] | None = None,
        section: int | None = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.file = None if file is None else os.fspath(file)
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

    def __reduce__(self):  # picklable across worker processes
        return (_rebuild, (type(self), self.message, self.file, self.section, self.fix))


def _rebuild(cls, message, file, section, fix):
    return cls(message, file=file, section=section, fix=fix)


class DataFormatError(CortexgraphError):
    """Input data does not follow docs/data-format.md."""

    #: set by readers that collect several problems of a file (all of them, this one first)
    findings: list[DataFormatError]

    @classmethod
    def unreadable(cls, path: str | os.PathLike[str], exc: OSError, what: str) -> DataFormatError:
        """The error for an input file the system cannot read (``what``: e.g. ``table``)."""
        return cls(
            f"cannot read the {what} ({exc.strerror or exc})", file=path, fix="check the file"
        )


class ParameterError(CortexgraphError):
    """A parameter (option, preset, parameters file) is out of range or of the wrong type."""

    @classmethod
    def check_ranges(cls, checks: Iterable[tuple[bool, str, object, str]]) -> None:
        """Raise for the first ``(ok, option, value, allowed)`` whose ``ok`` is False:
        ``"<option> <value!r> is out of range"``, fix ``"give <allowed>"``."""
        for ok, option, value, allowed in checks:
            if not ok:
                raise cls(f"{option} {value!r} is out of range", fix=f"give {allowed}")


class ConvergenceError(CortexgraphError):
    """An iterative solver did not reach its tolerance."""


class StageBusyError(CortexgraphError):
    """Another process holds the lock of this stage (same brain, same scope)."""

    exit_code = 3


class UpstreamError(CortexgraphError):
    """An output this stage reads is missing, being written, or stale (its inputs changed)."""

    exit_code = 4


class ResourceError(CortexgraphError):
    """The stage's estimated peak memory exceeds what the machine has."""

    exit_code = 5
