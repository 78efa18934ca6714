"""Names that become parts of paths, and paths that must stay inside a folder.

Every identifier that cortexgraph turns into a file or folder name (brain ids, run names, encoder
names, job ids, area names used in file names, label sources) follows one pattern,
:data:`NAME_PATTERN`: 1-64 characters from ``A-Z a-z 0-9 . _ -``, starting with a letter or a digit.
So a name can never hold a path separator, never be ``.`` or ``..``, never start with ``-`` (which a
shell would read as an option) and never be empty. :func:`check_name` raises a
:class:`~cortexgraph.errors.DataFormatError` naming what the name is for and the rule.

:func:`inside` resolves a relative path against a folder and refuses anything that lands outside it
(``..`` components, absolute paths, symbolic links pointing elsewhere).
:func:`resolve_data_path` is the one rule for a path written in a manifest or a table: relative to its
folder (brain or cohort), or ``@<root>/<path>`` inside a data root declared in cohort.toml.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cortexgraph.errors import DataFormatError

__all__ = [
    "NAME_PATTERN",
    "NAME_RULE",
    "DATA_ROOT_PREFIX",
    "is_name",
    "check_name",
    "slug",
    "inside",
    "is_inside",
    "resolve_data_path",
]

DATA_ROOT_PREFIX = "@"
"""A manifest path ``@<root>/<path>`` lies in the data root ``<root>`` declared in cohort.toml."""

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_RULE = (
    "1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or a digit "
    "(no spaces, no slashes)"
)


def is_name(value: object) -> bool:
    """True when ``value`` is a string that matches :data:`NAME_PATTERN` in full."""
    return isinstance(value, str) and NAME_PATTERN.fullmatch(value) is not None


def check_name(
    value: object,
    what: str,
    *,
    file: str | os.PathLike | None = None,
    fix: str | None = None,
) -> str:
    """Return ``value`` if it is a valid name, else raise DataFormatError.

    Parameters
    ----------
    value : the name.
    what : what the name is for, for the message ("brain id", "run name", "job id").
    file : the file the name was read from, if any.
    fix : a specific fix; default: the rule.
    """
    if is_name(value):
        return value  # type: ignore[return-value]
    raise DataFormatError(
        f"{what} {value!r} is not a valid name",
        file=None if file is None else str(file),
        fix=fix or f"use {NAME_RULE}",
    )


def slug(text: str) -> str:
    """A file-name form of a free-text name (an area name such as ``"Area hOc1 (V1)"``).

    Runs of characters outside ``A-Z a-z 0-9 . _ -`` become one ``_``; leading characters that may
    not start a name are dropped; the result is cut to 64 characters. Two names can share a slug:
    the area table refuses that (``AreaTable.read``), so area file names stay unique.
    """
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text))
    text = re.sub(r"^[^A-Za-z0-9]+", "", text)[:64].rstrip("_")
    return text or "unnamed"


def is_inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """True when ``path`` (resolved, symbolic links followed) lies in ``folder`` (resolved)."""
    resolved = Path(path).resolve()
    base = Path(folder).resolve()
    return resolved == base or base in resolved.parents


def inside(
    folder: str | os.PathLike,
    relative: str | os.PathLike,
    *,
    what: str = "path",
    file: str | os.PathLike | None = None,
    section: int | None = None,
) -> Path:
    """``folder / relative``, refused when it resolves outside ``folder``.

    ``relative`` must be a relative path; absolute paths, ``..`` that climbs out of ``folder`` and
    symbolic links that point outside it raise DataFormatError (naming ``file`` and ``section``, the
    manifest and row the path came from). The returned path is ``folder / relative`` unresolved, so
    messages show the path as the user wrote it.
    """
    text = os.fspath(relative)
    if not text or "\x00" in text:
        raise DataFormatError(
            f"{what} is empty or holds a NUL character",
            file=None if file is None else str(file),
            section=section,
            fix="give a relative path inside the folder",
        )
    rel = Path(text)
    if rel.is_absolute():
        raise DataFormatError(
            f"{what} {text!r} is absolute; paths in manifests are relative to their folder",
            file=None if file is None else str(file),
            section=section,
            fix=f"give it relative to {folder}, or declare a data root in cohort.toml "
            "([data_roots], docs/data-format.md) and write it as '@<root>/<path>'",
        )
    candidate = Path(folder) / rel
    try:
        contained = is_inside(candidate, folder)
    except (OSError, RuntimeError) as exc:  # a loop of symbolic links
        raise DataFormatError(
            f"{what} {text!r} cannot be resolved ({exc})",
            file=None if file is None else str(file),
            section=section,
            fix="remove the loop of symbolic links",
        ) from None
    if not contained:
        real = os.path.realpath(candidate)
        via_link = real != os.path.normpath(os.path.abspath(candidate))
        raise DataFormatError(
            f"{what} {text!r} points outside {folder}: it resolves to {real}"
            + (" through a symbolic link" if via_link and ".." not in rel.parts else ""),
            file=None if file is None else str(file),
            section=section,
            fix=f"keep the file inside {folder}, or declare a data root in "
            "cohort.toml ([data_roots], docs/data-format.md) and write it as '@<root>/<path>'",
        )
    return candidate


def resolve_data_path(
    text: str,
    folder: str | os.PathLike,
    data_roots: dict[str, Path] | None = None,
    *,
    what: str = "path",
    file: str | os.PathLike | None = None,
    section: int | None = None,
) -> Path:
    """The file a manifest path names: ``folder/<text>``, or ``<data root>/<rest>`` for ``@<root>/<rest>``.

    Parameters
    ----------
    text : the path as written in the manifest or table.
    folder : the folder it is relative to (the brain folder for brain files, the cohort folder for
        cohort files).
    data_roots : ``{name: absolute folder}`` declared in cohort.toml ``[data_roots]``.
    what, file, section : for the message: what the path is for, the file and the section (row) it
        was read from.

    Returns
    -------
    The path, unresolved (messages show it as the user wrote it). Raises DataFormatError when it is
    not a string, is empty, absolute, names an undeclared data root, or resolves (``..``, symbolic
    links) outside its folder or data root. A relative path that is a symbolic link into a declared
    data root is accepted (labs link files from their storage into the brain folder).
    """
    where = None if file is None else str(file)
    if not isinstance(text, str):
        raise DataFormatError(
            f"{what} must be a string (a relative path), got {type(text).__name__} {text!r}",
            file=where,
            section=section,
            fix="write the path in quotes, relative to its folder",
        )
    if text.startswith(DATA_ROOT_PREFIX):
        key, _, rest = text[len(DATA_ROOT_PREFIX) :].partition("/")
        roots = data_roots or {}
        if key not in roots:
            declared = ", ".join(sorted(roots)) or "none"
            raise DataFormatError(
                f"{what} {text!r} names the data root {key!r}, which cohort.toml does not declare "
                f"(declared: {declared})",
                file=where,
                section=section,
                fix="declare it in cohort.toml under [data_roots] (docs/data-format.md) or give a "
                "path relative to the folder",
            )
        if not rest:
            raise DataFormatError(
                f"{what} {text!r} names a data root but no file in it",
                file=where,
                section=section,
                fix=f"write '@{key}/<path inside the root>'",
            )
        return inside(roots[key], rest, what=what, file=file, section=section)
    if data_roots and text and not os.path.isabs(text) and "\x00" not in text:
        candidate = Path(folder) / text
        try:
            if any(is_inside(candidate, r) for r in data_roots.values()):
                return candidate  # a symbolic link in the folder that leads into a data root
        except (OSError, RuntimeError):
            pass  # a loop of links: inside() below names it
    return inside(folder, text, what=what, file=file, section=section)
