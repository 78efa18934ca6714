"""Cohort and brain manifests (TOML + TSV), read and written exactly as in docs/data-format.md.

A cohort root holds ``cohort.toml``, the area table ``areas.tsv``, the atlas files and one folder per
brain; each brain folder holds ``brain.toml``, ``sections.tsv`` and ``transforms.tsv`` plus the section
files they point to. Reading never loads images: :class:`Brain` only knows paths and metadata.

Reading validates every value (type, range, uniqueness, paths inside their folder or a declared data
root) and raises :class:`~cortexgraph.errors.DataFormatError` naming the file, the section (row) and
the fix. When a file has several problems, the error raised is the first one and carries all of them in
its ``findings`` attribute (``cortexgraph check`` lists them all). Manifest paths become file paths in
one place only: :meth:`Brain.path` and :meth:`Cohort.path` (:func:`~cortexgraph.data.names.
resolve_data_path`).
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import os
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from cortexgraph.data.names import (
    DATA_ROOT_PREFIX,
    NAME_RULE,
    is_name,
    resolve_data_path,
    slug,
)
from cortexgraph.data.transforms import RIGID_TOLERANCE, rigidity_error
from cortexgraph.errors import CortexgraphError, DataFormatError
from cortexgraph.outputs import write_text_atomic

FORMAT_VERSION = 1
COHORT_MANIFEST = "cohort.toml"
BRAIN_MANIFEST = "brain.toml"
SECTION_TABLE = "sections.tsv"
TRANSFORM_TABLE = "transforms.tsv"
SECTION_COLUMNS = (
    "section",
    "image",
    "mask",
    "annotation",
    "contours",
    "coords",
    "missing",
    "mirrored",
    "excluded",
)
SECTION_FILE_COLUMNS = ("image", "mask", "annotation", "contours", "coords")
SECTION_FLAG_COLUMNS = ("missing", "mirrored", "excluded")
#: the entries ``m<row><col>`` of a 3x3 homogeneous matrix, row by row (a transform row's matrix)
MATRIX_COLUMNS = ("m00", "m01", "m02", "m10", "m11", "m12", "m20", "m21", "m22")
TRANSFORM_COLUMNS = ("moving", "fixed", *MATRIX_COLUMNS)
AREA_COLUMNS = ("id", "name", "color")
DERIVATIVES = Path("derivatives") / "cortexgraph"
#: folder of a phantom cohort's ground truth, next to its brains (docs/phantom.md)
GROUND_TRUTH = "ground_truth"

MAX_AREA_ID = 65535
"""Area ids are stored in uint16 label images."""
MAX_TRANSLATION_MM = 1000.0
"""No section is a metre wide: a larger translation in transforms.tsv is a unit or sign error.
(``check`` and the stages also compare every translation with the section canvas.)"""
SHRINKAGE_RANGE = (0.1, 10.0)
"""Accepted shrinkage factors (volume correction; real brains lie between about 1.2 and 2.5)."""
MAX_SECTION_THICKNESS_UM = 1000.0
MAX_SPACING_UM = 10000.0
"""A pixel larger than 10 mm cannot show a section."""
METADATA_KEY = "metadata"
"""The table of free-form lab metadata in brain.toml and cohort.toml (kept, never interpreted)."""
DEFAULT_BOX_MIN_MM = (-90.0, -126.0, -72.0)
DEFAULT_BOX_MAX_MM = (90.0, 90.0, 108.0)

_FLAG_VALUES = {"": False, "0": False, "1": True, "false": False, "true": True}
_INTEGER = re.compile(r"[+-]?[0-9]+")
_COLOR = re.compile(r"#[0-9A-Fa-f]{6}")


# --------------------------------------------------------------------------------------------------
# Findings: every problem of one file, the first one raised
# --------------------------------------------------------------------------------------------------
class Findings:
    """Collects the problems of a file; :meth:`raise_if_any` raises the first, carrying all."""

    def __init__(self, file: str | os.PathLike | None) -> None:
        self.file = None if file is None else str(file)
        self.errors: list[DataFormatError] = []

    def add(
        self,
        message: str,
        fix: str,
        *,
        section: int | None = None,
        file: str | os.PathLike | None = None,
    ) -> None:
        where = self.file if file is None else str(file)
        self.errors.append(DataFormatError(message, file=where, section=section, fix=fix))

    def extend(self, error: DataFormatError) -> None:
        self.errors.extend(getattr(error, "findings", None) or [error])

    def __bool__(self) -> bool:
        return bool(self.errors)

    def raise_if_any(self) -> None:
        if not self.errors:
            return
        first = self.errors[0]
        more = len(self.errors) - 1
        message = first.message
        if more:
            message += f" (and {more} more problem(s): `cortexgraph check` lists them all)"
        error = DataFormatError(message, file=first.file, section=first.section, fix=first.fix)
        error.findings = list(self.errors)
        raise error



#: the largest section number sections.tsv accepts: a million physical sections (20 m of 20 µm
#: sections) is far beyond any brain; a larger number is a typo, and beyond 2^63 it would overflow
MAX_SECTION_NUMBER = 999_999

def findings_of(error: CortexgraphError) -> list[CortexgraphError]:
    """All problems an error raised by a reader stands for (itself when it carries none)."""
    return list(getattr(error, "findings", None) or [error])


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return f"a list ({value!r})"
    if isinstance(value, dict):
        return "a table"
    return f"{type(value).__name__} {value!r}"


# --------------------------------------------------------------------------------------------------
# TSV and TOML helpers
# --------------------------------------------------------------------------------------------------
def read_tsv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Read a tab-separated table with a header; check the required columns are there.

    Values are stripped of surrounding white space; blank lines are skipped. A row with more or fewer
    fields than the header, text that is not UTF-8, a missing or repeated column raise
    DataFormatError naming the file and line. A UTF-8 byte-order mark (spreadsheet exports) is
    ignored.
    """
    return [row for _, row in read_tsv_lines(path, required)]


def read_tsv_lines(path: Path, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """:func:`read_tsv` with the line number (1 = header) of every row."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError("table not found", file=path, fix="create it (docs/data-format.md)")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            text = handle.read()
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            f"not UTF-8 text ({exc.reason} at byte {exc.start})",
            file=path,
            fix="save the table as UTF-8 tab-separated text",
        ) from None
    except OSError as exc:
        raise DataFormatError.unreadable(path, exc, "table") from None
    reader = csv.reader(io.StringIO(text), delimiter="\t")
    try:
        lines = list(reader)
    except csv.Error as exc:
        raise DataFormatError(
            f"not a valid tab-separated table ({exc})", file=path, fix="check the quoting"
        ) from None
    if not lines:
        raise DataFormatError(
            "empty table (no header)",
            file=path,
            fix=f"the first line must hold the columns: {', '.join(required)}",
        )
    header = [h.strip() for h in lines[0]]
    missing = [c for c in required if c not in header]
    if missing:
        near = [h for h in header if h not in required and h.lower() in missing]
        raise DataFormatError(
            f"missing column(s) {', '.join(missing)}"
            + (f" (found {', '.join(repr(h) for h in near)}: column names are lower case)"
               if near else ""),
            file=path,
            fix=f"the header must contain (tab-separated): {', '.join(required)}",
        )
    duplicated = sorted({h for h in header if header.count(h) > 1 and h})
    if duplicated:
        raise DataFormatError(
            f"column(s) {', '.join(duplicated)} appear more than once in the header",
            file=path,
            fix="keep one column of each name",
        )
    rows = []
    for number, fields in enumerate(lines[1:], start=2):
        if not fields or all(not f.strip() for f in fields):
            continue  # blank lines are allowed
        if len(fields) != len(header):
            raise DataFormatError(
                f"line {number} has {len(fields)} fields but the header has {len(header)}",
                file=path,
                fix="one tab-separated value per column (an empty cell is an empty string between "
                "two tabs)",
            )
        rows.append((number, {h: f.strip() for h, f in zip(header, fields, strict=True)}))
    return rows


def format_tsv(columns: Sequence[str], rows: Iterable[Sequence]) -> str:
    """Tab-separated text with a header line."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buffer.getvalue()


def _load_toml(path: Path) -> dict:
    if not path.is_file():
        raise DataFormatError(
            "manifest not found", file=path, fix="create it (docs/data-format.md)"
        )
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise DataFormatError(f"invalid TOML: {exc}", file=path, fix="correct the syntax") from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            f"not UTF-8 text ({exc.reason})", file=path, fix="save the manifest as UTF-8"
        ) from None
    except OSError as exc:
        raise DataFormatError.unreadable(path, exc, "manifest") from None


def _format_version(table: dict, found: Findings, what: str) -> None:
    version = table.get("format_version", FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int):
        found.add(
            f"format_version must be the integer {FORMAT_VERSION}, got {_describe(version)}",
            f"write format_version = {FORMAT_VERSION} (a number, no quotes)",
        )
    elif version != FORMAT_VERSION:
        found.add(
            f"format_version {version} is not supported by this cortexgraph version "
            f"(it reads format_version {FORMAT_VERSION})",
            f"convert the {what} to format_version {FORMAT_VERSION} (docs/data-format.md), or use "
            "the cortexgraph version that wrote it",
        )


def _unknown_keys(table: dict, known: Iterable[str], found: Findings, where: str = "") -> None:
    known = list(known)
    for key in table:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        found.add(
            f"unknown key '{where}{key}'",
            f"{hint}known keys: {', '.join(known)}; free-form notes go under "
            f"[{METADATA_KEY}] (docs/data-format.md)",
        )


def _number(
    table: dict,
    key: str,
    found: Findings,
    *,
    label: str | None = None,
    required: bool = True,
    default: float | None = None,
    low: float = 0.0,
    high: float | None = None,
    unit: str = "",
    low_inclusive: bool = False,
) -> float | None:
    """A finite number ``low < value <= high`` (``low <= value`` with ``low_inclusive``), not a
    string, not a boolean."""
    label = label or key
    if key not in table:
        if required:
            found.add(f"missing key '{label}'", f"add '{label} = <number>' (docs/data-format.md)")
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        found.add(
            f"{label} must be a number, got {_describe(value)}",
            f"write {label} = <number> (no quotes)",
        )
        return default
    value = float(value)
    below = value < low if low_inclusive else value <= low
    if not math.isfinite(value) or below or (high is not None and value > high):
        bound = f"{'>=' if low_inclusive else '>'} {low:g}" + (
            f" and <= {high:g}" if high is not None else ""
        )
        found.add(
            f"{label} = {value:g}{unit} is out of range (must be a finite number {bound})",
            f"correct {label}",
        )
        return default
    return value


def _integer(
    table: dict,
    key: str,
    found: Findings,
    *,
    required: bool,
    minimum: int | None = None,
) -> int | None:
    if key not in table:
        if required:
            found.add(f"missing key '{key}'", f"add '{key} = <integer>' (docs/data-format.md)")
        return None
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int):
        found.add(
            f"{key} must be an integer, got {_describe(value)}",
            f"write {key} = <integer> (no quotes, no decimal point)",
        )
        return None
    if minimum is not None and value < minimum:
        found.add(f"{key} = {value} must be >= {minimum}", f"correct {key}")
        return None
    return value


def _string(table: dict, key: str, found: Findings, default: str = "", label: str = "") -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        found.add(
            f"{label or key} must be a string, got {_describe(value)}",
            f'write {label or key} = "..." (in quotes)',
        )
        return default
    return value


def _table(table: dict, key: str, found: Findings) -> dict:
    value = table.get(key, {})
    if not isinstance(value, dict):
        found.add(
            f"'{key}' must be a table ([{key}]), got {_describe(value)}",
            f"write it as a [{key}] section (docs/data-format.md)",
        )
        return {}
    return value


def _parse_int(text: str) -> int | None:
    return int(text) if _INTEGER.fullmatch(text or "") else None


# --------------------------------------------------------------------------------------------------
# Area table
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Area:
    """One cytoarchitectonic area: integer id (> 0), name, display colour ``#rrggbb``."""

    id: int
    name: str
    color: str

    @property
    def rgb(self) -> tuple[int, int, int]:
        text = self.color.lstrip("#")
        return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)


class AreaTable:
    """The cohort's areas; maps area ids <-> class indices 0..K-1 (sorted by id) for the learners."""

    def __init__(self, areas: Sequence[Area]) -> None:
        self.areas = sorted(areas, key=lambda a: a.id)
        self.by_id = {a.id: a for a in self.areas}
        self.by_name = {a.name: a for a in self.areas}
        self.by_slug = {slug(a.name): a for a in self.areas}  # unique: read() checks
        self.ids = np.array([a.id for a in self.areas], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.areas)

    def __contains__(self, area_id: int) -> bool:
        return int(area_id) in self.by_id

    def class_index(self, area_ids: np.ndarray) -> np.ndarray:
        """Area ids -> class indices (0..K-1); id 0 (unlabelled) and unknown ids -> -1."""
        area_ids = np.asarray(area_ids)
        lookup = np.full(int(max(self.ids.max(initial=0), area_ids.max(initial=0))) + 1, -1)
        lookup[self.ids] = np.arange(len(self.ids))
        out = lookup[np.clip(area_ids, 0, None)]
        out[area_ids <= 0] = -1
        return out.astype(np.int64)

    def resolve(self, key: object) -> Area:
        """An area by id (int or digits), by name, or by the file-name form of its name (the form
        in output paths and record scopes, :func:`~cortexgraph.data.names.slug`); DataFormatError
        for anything else."""
        if isinstance(key, (int, np.integer)) or (isinstance(key, str) and _INTEGER.fullmatch(key)):
            area = self.by_id.get(int(key))
        else:
            area = self.by_name.get(str(key)) or self.by_slug.get(str(key))
        if area is None:
            near = difflib.get_close_matches(str(key), list(self.by_name), n=3, cutoff=0.6)
            hint = f" (close: {', '.join(near)})" if near else ""
            raise DataFormatError(
                f"unknown area {key!r}{hint}", fix="use a name or id from areas.tsv"
            )
        return area

    @classmethod
    def read(cls, path: Path) -> AreaTable:
        """Read and validate ``areas.tsv``.

        Every id is an integer 1..65535, unique; every name is non-empty and unique, also after
        conversion to a file name (:func:`~cortexgraph.data.names.slug`, used for per-area output
        files); every colour is ``#rrggbb``; the table has at least one area.
        """
        path = Path(path)
        rows = read_tsv_lines(path, AREA_COLUMNS)
        found = Findings(path)
        areas = []
        ids: dict[int, int] = {}
        names: dict[str, int] = {}
        slugs: dict[str, int] = {}
        for line, row in rows:
            area_id = _parse_int(row["id"])
            if area_id is None or not 1 <= area_id <= MAX_AREA_ID:
                found.add(
                    f"line {line}: area id {row['id']!r} is not an integer in 1..{MAX_AREA_ID}",
                    f"use integer ids 1..{MAX_AREA_ID} (0 means unlabelled)",
                )
                continue
            name = row["name"]
            if not name:
                found.add(f"line {line}: area {area_id} has no name", "give every area a name")
                continue
            if not _COLOR.fullmatch(row["color"]):
                found.add(
                    f"line {line}: colour {row['color']!r} of area {area_id} is not #rrggbb",
                    "write colours as # and six hexadecimal digits, e.g. #a1b2c3",
                )
                continue
            if area_id in ids:
                found.add(
                    f"line {line}: area id {area_id} is listed twice (also line {ids[area_id]})",
                    "make area ids unique",
                )
                continue
            if name in names:
                found.add(
                    f"line {line}: area name {name!r} is listed twice (also line {names[name]})",
                    "make area names unique",
                )
                continue
            key = slug(name).lower()
            if key in slugs:
                found.add(
                    f"line {line}: area name {name!r} gives the same file name {slug(name)!r} as "
                    f"the area on line {slugs[key]}",
                    "rename one of them (names differing only in punctuation, spaces or case "
                    "collide in per-area file names)",
                )
                continue
            ids[area_id], names[name], slugs[key] = line, line, line
            areas.append(Area(area_id, name, row["color"]))
        if not rows:
            found.add("the area table has no areas", "add one row per area: id, name, color")
        found.raise_if_any()
        return cls(areas)

    def write(self, path: Path) -> Path:
        rows = [(a.id, a.name, a.color) for a in self.areas]
        return write_text_atomic(path, format_tsv(AREA_COLUMNS, rows))


# --------------------------------------------------------------------------------------------------
# Sections and brains
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SectionRecord:
    """One row of ``sections.tsv``. File paths are as written: relative to the brain folder, or
    ``@<root>/...`` in a declared data root ("" = none); :meth:`Brain.path` resolves them."""

    section: int
    image: str = ""
    mask: str = ""
    annotation: str = ""
    contours: str = ""
    coords: str = ""
    missing: bool = False
    mirrored: bool = False
    excluded: bool = False

    def as_row(self) -> tuple:
        return (
            self.section,
            self.image,
            self.mask,
            self.annotation,
            self.contours,
            self.coords,
            int(self.missing),
            int(self.mirrored),
            int(self.excluded),
        )


@dataclass
class Brain:
    """A brain folder: manifest, section table and transform table (paths only, nothing loaded).

    ``root`` is the folder as the cohort names it (``<cohort>/<id>``), not resolved through symbolic
    links, so the outputs of a brain whose folder is a link stay in the cohort that was given.
    """

    id: str
    root: Path
    cohort: Cohort | None
    shrinkage_factor: float
    digitization_step: int
    image_spacing_um: float | None
    mask_spacing_um: float | None
    annotation_spacing_um: float | None
    coords_spacing_um: float | None
    base_section: int | None = None
    exclusion_mask: str = ""
    hemispheres: tuple[str, ...] | None = None
    extra: dict = field(default_factory=dict)
    _sections: list[SectionRecord] | None = None
    _transforms: dict[tuple[int, int], np.ndarray] | None = None

    @property
    def manifest_path(self) -> Path:
        return self.root / BRAIN_MANIFEST

    @property
    def section_table_path(self) -> Path:
        return self.root / SECTION_TABLE

    @property
    def transform_table_path(self) -> Path:
        return self.root / TRANSFORM_TABLE

    def spacing_of(self, role: str) -> float:
        """Pixel spacing (um) of ``role`` ("image", "mask", "annotation", "coords") from
        ``[spacing_um]`` of brain.toml; DataFormatError naming the file when it is not given."""
        value = getattr(self, f"{role}_spacing_um")
        if value is None:
            raise DataFormatError(
                f"no {role} spacing",
                file=self.manifest_path,
                fix=f"add {role} = <um> to [spacing_um]",
            )
        return float(value)

    def _own_cohort(self, what: str) -> Cohort:
        """The brain's cohort, for ``what`` it holds; DataFormatError when the brain was read
        without it (the cohort's values are never assumed)."""
        if self.cohort is None:
            raise DataFormatError(
                f"the brain was read without its cohort, so its {what} is unknown",
                file=self.manifest_path,
                fix="open the brain through its cohort (cohort.toml)",
            )
        return self.cohort

    @property
    def area_table(self) -> AreaTable:
        """The area table of the brain's cohort; DataFormatError when read without its cohort."""
        return self._own_cohort("area table").areas

    @property
    def thickness_um(self) -> float:
        """Section thickness (µm), the cohort's ``section_thickness_um``; DataFormatError for a
        brain read without its cohort (never assumed)."""
        return self._own_cohort("section thickness").section_thickness_um

    @property
    def data_roots(self) -> dict[str, Path]:
        return dict(self.cohort.data_roots) if self.cohort is not None else {}

    @property
    def derivatives(self) -> Path:
        """Output folder of this brain: ``<cohort>/derivatives/cortexgraph/<brain>``."""
        base = self.cohort.root if self.cohort is not None else self.root.parent
        return base / DERIVATIVES / self.id

    @property
    def ground_truth(self) -> Path:
        """Ground-truth folder of this brain in a phantom cohort: ``<cohort>/ground_truth/<brain>``
        (written by ``cortexgraph synth``; absent for real brains)."""
        base = self.cohort.root if self.cohort is not None else self.root.parent
        return base / GROUND_TRUTH / self.id

    def path(
        self,
        relative: str,
        *,
        what: str = "path",
        file: str | os.PathLike | None = None,
        section: int | None = None,
    ) -> Path:
        """The file a path of brain.toml or sections.tsv names (the one place where that happens).

        ``relative`` is relative to the brain folder, or ``@<root>/<path>`` in a data root declared
        in cohort.toml. Anything resolving outside (``..``, absolute paths, symbolic links out of the
        folder) raises DataFormatError naming ``file`` (default: the section table) and ``section``.
        """
        return resolve_data_path(
            relative,
            self.root,
            self.data_roots,
            what=what,
            file=self.section_table_path if file is None else file,
            section=section,
        )

    @classmethod
    def read(cls, root: str | os.PathLike, cohort: Cohort | None = None) -> Brain:
        """Read and validate ``<root>/brain.toml`` (docs/data-format.md).

        The id must be a valid name (:data:`~cortexgraph.data.names.NAME_RULE`) equal to the folder's
        name as given (a symbolic link's own name); numbers must be finite and in range, of the
        documented type (a quoted number is an error); unknown keys are errors.
        """
        root = Path(os.path.abspath(root))
        path = root / BRAIN_MANIFEST
        table = _load_toml(path)
        found = Findings(path)
        _format_version(table, found, "brain")
        _unknown_keys(table, _BRAIN_KEYS, found)
        brain_id = table.get("id")
        if brain_id is None:
            found.add("missing key 'id'", f'add id = "{root.name}" (the folder name)')
        elif not is_name(brain_id):
            found.add(
                f"brain id {brain_id!r} is not a valid name",
                f"use {NAME_RULE}; the id must equal the folder name",
            )
        elif brain_id != root.name:
            found.add(
                f"brain id {brain_id!r} differs from its folder name {root.name!r}",
                f'rename the folder to {brain_id!r} or set id = "{root.name}" (outputs are stored '
                "by id, so a mismatch would mix two brains' outputs)",
            )
        shrinkage = _number(
            table,
            "shrinkage_factor",
            found,
            required=False,
            default=1.0,
            low=SHRINKAGE_RANGE[0],
            low_inclusive=True,
            high=SHRINKAGE_RANGE[1],
        )
        step = _integer(table, "digitization_step", found, required=True, minimum=1)
        spacing = {}
        if "spacing_um" not in table:
            found.add(
                "missing table [spacing_um]",
                "add [spacing_um] with the spacing of each kind of file the brain has (mask, and "
                "image, annotation, coords where it has them; micrometres)",
            )
        else:
            spacing_table = _table(table, "spacing_um", found)
            if isinstance(table["spacing_um"], dict):
                _unknown_keys(spacing_table, _SPACING_KEYS, found, where="spacing_um.")
                for kind in _SPACING_KEYS:
                    # required only for the kinds of files the brain has (checked against
                    # sections.tsv in read_sections)
                    spacing[kind] = _number(
                        spacing_table,
                        kind,
                        found,
                        label=f"spacing_um.{kind}",
                        required=False,
                        high=MAX_SPACING_UM,
                        unit=" um",
                    )
        hemispheres = _hemispheres(table, found)
        base = _integer(table, "base_section", found, required=False, minimum=0)
        exclusion = _string(table, "exclusion_mask", found)
        metadata = _table(table, METADATA_KEY, found)
        brain = cls(
            id=str(brain_id) if is_name(brain_id) else root.name,
            root=root,
            cohort=cohort,
            shrinkage_factor=1.0 if shrinkage is None else shrinkage,
            digitization_step=step or 1,
            image_spacing_um=spacing.get("image"),
            mask_spacing_um=spacing.get("mask"),
            annotation_spacing_um=spacing.get("annotation"),
            coords_spacing_um=spacing.get("coords"),
            base_section=base,
            exclusion_mask=exclusion,
            hemispheres=hemispheres,
            extra={METADATA_KEY: metadata} if metadata else {},
        )
        if exclusion:
            try:
                brain.path(exclusion, what="exclusion_mask", file=path)
            except DataFormatError as exc:
                found.extend(exc)
        found.raise_if_any()
        return brain

    def write_manifest(self) -> Path:
        table = {
            "format_version": FORMAT_VERSION,
            "id": self.id,
            "shrinkage_factor": self.shrinkage_factor,
            "digitization_step": self.digitization_step,
            "spacing_um": {
                kind: value
                for kind, value in (
                    ("image", self.image_spacing_um),
                    ("mask", self.mask_spacing_um),
                    ("annotation", self.annotation_spacing_um),
                    ("coords", self.coords_spacing_um),
                )
                if value is not None
            },
        }
        if self.hemispheres is not None:
            table["hemispheres"] = list(self.hemispheres)
        if self.base_section is not None:
            table["base_section"] = int(self.base_section)
        if self.exclusion_mask:
            table["exclusion_mask"] = self.exclusion_mask
        table.update(self.extra)
        return write_text_atomic(self.manifest_path, tomli_w.dumps(table))

    # -- section table ----------------------------------------------------------------------------
    @property
    def sections(self) -> list[SectionRecord]:
        """All rows of sections.tsv, validated (see :meth:`read_sections`)."""
        if self._sections is None:
            self._sections = self.read_sections()
        return self._sections

    def read_sections(self) -> list[SectionRecord]:
        """Read and validate sections.tsv.

        Section numbers are integers >= 0, strictly increasing (no duplicates); flags are empty, 0, 1,
        true or false; file paths resolve inside the brain folder or a declared data root, and no file
        is listed twice; at least one section is present; ``base_section`` of brain.toml is a present
        section of the table.
        """
        path = self.section_table_path
        rows = read_tsv_lines(path, SECTION_COLUMNS)
        found = Findings(path)
        records: list[SectionRecord] = []
        previous: int | None = None
        seen_files: dict[Path, tuple[int, str]] = {}
        for line, row in rows:
            number = _parse_int(row["section"])
            if number is None or number < 0:
                found.add(
                    f"line {line}: section number {row['section']!r} is not an integer >= 0",
                    "use integer section numbers (posterior -> anterior)",
                )
                continue
            if number > MAX_SECTION_NUMBER:
                found.add(
                    f"line {line}: section number {number} is larger than any series of physical "
                    f"sections has (at most {MAX_SECTION_NUMBER}: 20 m of 20 µm sections)",
                    "correct the number (an extra digit?); section numbers count the physical "
                    "sections of the series, posterior -> anterior",
                    section=number,
                )
                continue
            if previous is not None and number == previous:
                found.add(
                    f"line {line}: section {number} is listed twice",
                    "each section may appear once in sections.tsv",
                    section=number,
                )
                continue
            if previous is not None and number < previous:
                found.add(
                    f"line {line}: section numbers are not increasing ({previous} before {number})",
                    "sort sections.tsv by section number (posterior -> anterior), no duplicates",
                    section=number,
                )
                continue
            previous = number
            flags: dict[str, Any] = {}
            for column in SECTION_FLAG_COLUMNS:
                value = row[column].lower()
                if value not in _FLAG_VALUES:
                    found.add(
                        f"line {line}: {column} flag {row[column]!r} is not 0, 1, true or false",
                        f"write 1 (or true) if the section is {column}, else 0 or leave it empty",
                        section=number,
                    )
                flags[column] = _FLAG_VALUES.get(value, False)
            files: dict[str, Any] = {}
            for column in SECTION_FILE_COLUMNS:
                text = row[column]
                files[column] = text
                if not text:
                    continue
                try:
                    target = self.path(text, what=f"{column} path", file=path, section=number)
                except DataFormatError as exc:
                    found.extend(exc)
                    continue
                key = Path(os.path.abspath(target))
                if key in seen_files:
                    other, other_column = seen_files[key]
                    found.add(
                        f"line {line}: {column} file {text!r} is also the {other_column} file of "
                        f"section {other}",
                        "give every section and kind its own file",
                        section=number,
                    )
                seen_files[key] = (number, column)
            records.append(SectionRecord(section=number, **files, **flags))
        present = [r.section for r in records if not r.missing]
        for kind, columns in _SPACING_OF_FILES.items():
            listed = [r.section for r in records if any(getattr(r, c) for c in columns)]
            if listed and getattr(self, f"{kind}_spacing_um") is None:
                found.add(
                    f"sections.tsv lists {'/'.join(columns)} files (first: section {listed[0]}) "
                    f"but brain.toml has no spacing_um.{kind}",
                    f"add '{kind} = <level-0 pixel spacing in um>' to [spacing_um] of brain.toml",
                    section=listed[0],
                    file=self.manifest_path,
                )
        if not rows:
            found.add("the section table has no rows", "list the digitized sections")
        elif not present and not found:
            found.add(
                "every section is flagged missing",
                "the table must list at least one present section",
            )
        if self.base_section is not None and not found and self.base_section not in present:
            is_listed = self.base_section in {r.section for r in records}
            found.add(
                f"base_section {self.base_section} is "
                + (
                    "flagged missing in sections.tsv" if is_listed else "not listed in sections.tsv"
                ),
                "set base_section to a present section or remove the key (central default)",
                section=self.base_section,
                file=self.manifest_path,
            )
        found.raise_if_any()
        return records

    def section(self, number: int) -> SectionRecord:
        for record in self.sections:
            if record.section == number:
                return record
        raise DataFormatError(
            f"section {number} is not in the section table",
            file=self.section_table_path,
            section=number,
            fix="pick a section listed in sections.tsv",
        )

    @property
    def available_sections(self) -> list[int]:
        """Sorted numbers of the digitized sections that are not missing."""
        return sorted(r.section for r in self.sections if not r.missing)

    @property
    def annotated_sections(self) -> list[int]:
        return sorted(
            r.section for r in self.sections if not r.missing and (r.annotation or r.contours)
        )

    def write_sections(self, records: Sequence[SectionRecord]) -> Path:
        self._sections = list(records)
        text = format_tsv(SECTION_COLUMNS, (r.as_row() for r in records))
        return write_text_atomic(self.section_table_path, text)

    # -- transform table --------------------------------------------------------------------------
    @property
    def transforms(self) -> dict[tuple[int, int], np.ndarray]:
        """``{(moving, fixed): 3x3}`` from transforms.tsv, validated (see :meth:`read_transforms`)."""
        if self._transforms is None:
            self._transforms = self.read_transforms()
        return self._transforms

    def read_transforms(self) -> dict[tuple[int, int], np.ndarray]:
        """Read and validate transforms.tsv.

        Every row holds two integer section numbers ``moving < fixed`` and nine finite numbers; no
        pair appears twice; every matrix is rigid (:data:`~cortexgraph.data.transforms.
        RIGID_TOLERANCE`) with a translation below :data:`MAX_TRANSLATION_MM`. Whether the rows link
        the consecutive available sections, and whether translations fit the section canvases, is
        checked where the canvases are known (``check``,
        :class:`~cortexgraph.data.stack.SectionStack`).
        """
        path = self.transform_table_path
        rows = read_tsv_lines(path, TRANSFORM_COLUMNS)
        found = Findings(path)
        out: dict[tuple[int, int], np.ndarray] = {}
        lines: dict[tuple[int, int], int] = {}
        for line, row in rows:
            moving, fixed = _parse_int(row["moving"]), _parse_int(row["fixed"])
            if moving is None or fixed is None:
                found.add(
                    f"line {line}: section numbers {row['moving']!r}, {row['fixed']!r} are not "
                    "integers",
                    "moving and fixed are section numbers from sections.tsv",
                )
                continue
            try:
                values = [float(row[c]) for c in MATRIX_COLUMNS]
            except ValueError:
                found.add(
                    f"line {line}: transform {moving} -> {fixed} holds a value that is not a number",
                    "nine numbers m00..m22 per row",
                    section=moving,
                )
                continue
            matrix = np.array(values, dtype=np.float64).reshape(3, 3)
            key = (moving, fixed)
            if key in out:
                found.add(
                    f"line {line}: transform {moving} -> {fixed} is listed twice (also line "
                    f"{lines[key]})",
                    "keep one row per pair of sections",
                    section=moving,
                )
                continue
            if moving >= fixed:
                found.add(
                    f"line {line}: moving section {moving} is not posterior to fixed section {fixed}",
                    "moving is the posterior (smaller) section number of the pair",
                    section=moving,
                )
                continue
            if not np.all(np.isfinite(matrix)):
                found.add(
                    f"line {line}: transform {moving} -> {fixed} is not finite",
                    "re-estimate the transform",
                    section=moving,
                )
                continue
            error = rigidity_error(matrix)
            if error > RIGID_TOLERANCE:
                found.add(
                    f"line {line}: transform {moving} -> {fixed} is not rigid (deviation "
                    f"{error:.2e} > {RIGID_TOLERANCE:g})",
                    "use rotation + translation only (no scaling or shear); mirrored scans are "
                    "flagged in sections.tsv instead",
                    section=moving,
                )
                continue
            shift = float(np.hypot(matrix[0, 2], matrix[1, 2]))
            if shift > MAX_TRANSLATION_MM:
                found.add(
                    f"line {line}: transform {moving} -> {fixed} translates by {shift:.4g} mm "
                    f"(more than {MAX_TRANSLATION_MM:g} mm)",
                    "translations are in millimetres of the section frame; re-estimate the "
                    "transform or correct its units",
                    section=moving,
                )
                continue
            out[key] = matrix
            lines[key] = line
        found.raise_if_any()
        return out

    def write_transforms(self, transforms: dict[tuple[int, int], np.ndarray]) -> Path:
        self._transforms = dict(transforms)
        rows = [
            (m, f, *[repr(float(v)) for v in np.asarray(t).ravel()])
            for (m, f), t in sorted(transforms.items())
        ]
        return write_text_atomic(self.transform_table_path, format_tsv(TRANSFORM_COLUMNS, rows))


_SPACING_KEYS = ("image", "mask", "annotation", "coords")
#: the section-table columns whose files need each spacing (contours are rasterised at the
#: annotation spacing)
_SPACING_OF_FILES = {
    "image": ("image",),
    "mask": ("mask",),
    "annotation": ("annotation", "contours"),
    "coords": ("coords",),
}
HEMISPHERE_NAMES = ("lh", "rh")
_BRAIN_KEYS = (
    "format_version",
    "id",
    "shrinkage_factor",
    "digitization_step",
    "spacing_um",
    "base_section",
    "exclusion_mask",
    "hemispheres",
    METADATA_KEY,
)


def _hemispheres(table: dict, found: Findings) -> tuple[str, ...] | None:
    """``hemispheres`` of brain.toml: a non-empty list of distinct ``lh`` / ``rh`` (None if absent:
    build-graph finds them)."""
    if "hemispheres" not in table:
        return None
    value = table["hemispheres"]
    if (
        not isinstance(value, list)
        or not value
        or any(v not in HEMISPHERE_NAMES for v in value)
        or len(set(value)) != len(value)
    ):
        found.add(
            f"hemispheres = {value!r} is not a list of distinct 'lh' / 'rh'",
            'write hemispheres = ["lh"], ["rh"] or ["lh", "rh"] (or leave it out: build-graph finds '
            "them)",
        )
        return None
    return tuple(v for v in HEMISPHERE_NAMES if v in value)


@dataclass
class Cohort:
    """A cohort root: brains, area table, section thickness, atlas files, canonical box, data roots.

    ``data_roots`` maps a name to an absolute folder outside the cohort that holds input files
    (``[data_roots]`` in cohort.toml); manifest paths ``@<name>/<path>`` point into it.
    """

    root: Path
    name: str
    section_thickness_um: float
    brain_ids: list[str]
    area_table_file: str = "areas.tsv"
    atlas_maps: str = ""
    atlas_labels: str = ""
    canonical_space: str = "MNI152NLin2009cSym"
    canonical_box_min_mm: tuple[float, float, float] = DEFAULT_BOX_MIN_MM
    canonical_box_max_mm: tuple[float, float, float] = DEFAULT_BOX_MAX_MM
    data_roots: dict[str, Path] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    _areas: AreaTable | None = None

    @property
    def manifest_path(self) -> Path:
        return self.root / COHORT_MANIFEST

    def path(self, relative: str, *, what: str = "path") -> Path:
        """The file a path of cohort.toml names: relative to the cohort folder, or
        ``@<root>/<path>`` in a declared data root; anything resolving outside raises
        DataFormatError naming cohort.toml."""
        return resolve_data_path(
            relative, self.root, self.data_roots, what=what, file=self.manifest_path
        )

    @property
    def area_table_path(self) -> Path:
        return self.path(self.area_table_file, what="area_table")

    @property
    def atlas_maps_path(self) -> Path:
        return self.path(self.atlas_maps, what="atlas maps")

    @property
    def atlas_labels_path(self) -> Path:
        return self.path(self.atlas_labels, what="atlas labels")

    @classmethod
    def read(cls, root: str | os.PathLike) -> Cohort:
        """Read and validate ``<root>/cohort.toml`` (docs/data-format.md).

        Brains: a list of unique valid names (their folders are checked by :meth:`brain` and
        ``check``); thickness: a finite number > 0; paths inside the cohort or a data root; the
        canonical box: three finite numbers per corner with min < max; data roots: valid names
        mapped to existing absolute folders; unknown keys are errors.
        """
        root = Path(os.path.abspath(root))
        path = root / COHORT_MANIFEST
        table = _load_toml(path)
        found = Findings(path)
        _format_version(table, found, "cohort")
        _unknown_keys(table, _COHORT_KEYS, found)
        name = _string(table, "name", found, default=root.name)
        thickness = _number(
            table, "section_thickness_um", found, high=MAX_SECTION_THICKNESS_UM, unit=" um"
        )
        brain_ids: list[str] = []
        if "brains" not in table:
            found.add("missing key 'brains'", 'add brains = ["B01", ...] (the brain folders)')
        elif not isinstance(table["brains"], list):
            found.add(
                f"brains must be a list of brain ids, got {_describe(table['brains'])}",
                f'write brains = ["{table["brains"]}"] (in square brackets)'
                if isinstance(table["brains"], str)
                else 'write brains = ["B01", "B03"]',
            )
        else:
            for brain_id in table["brains"]:
                if not is_name(brain_id):
                    found.add(
                        f"brain id {brain_id!r} in 'brains' is not a valid name",
                        f"use {NAME_RULE} (the brain's folder name)",
                    )
                elif brain_id in brain_ids:
                    found.add(f"brain {brain_id!r} is listed twice in 'brains'", "list it once")
                else:
                    brain_ids.append(brain_id)
            if not table["brains"]:
                found.add("'brains' is empty", "list the brain folders of the cohort")
        area_table = _string(table, "area_table", found, default="areas.tsv")
        atlas = _table(table, "atlas", found)
        _unknown_keys(atlas, ("maps", "labels"), found, where="atlas.")
        atlas_maps = _string(atlas, "maps", found, label="atlas.maps")
        atlas_labels = _string(atlas, "labels", found, label="atlas.labels")
        if atlas and (not atlas_maps or not atlas_labels):
            found.add(
                "[atlas] needs both 'maps' and 'labels'",
                "give the 4D NIfTI (maps) and its label table (labels), or remove [atlas]",
            )
        canonical = _table(table, "canonical", found)
        _unknown_keys(canonical, ("space", "box_min_mm", "box_max_mm"), found, where="canonical.")
        space = _string(canonical, "space", found, default="MNI152NLin2009cSym", label="space")
        box_min = _box(canonical, "box_min_mm", DEFAULT_BOX_MIN_MM, found)
        box_max = _box(canonical, "box_max_mm", DEFAULT_BOX_MAX_MM, found)
        if box_min is not None and box_max is not None:
            for axis, lo, hi in zip("xyz", box_min, box_max, strict=True):
                if not lo < hi:
                    found.add(
                        f"canonical box is inverted or empty on {axis}: box_min_mm {lo:g} >= "
                        f"box_max_mm {hi:g}",
                        "box_min_mm holds the smaller corner (canonical -1), box_max_mm the larger "
                        "(canonical +1)",
                    )
        data_roots = _data_roots(table, found)
        metadata = _table(table, METADATA_KEY, found)
        cohort = cls(
            root=root,
            name=name,
            section_thickness_um=thickness or 20.0,
            brain_ids=brain_ids,
            area_table_file=area_table,
            atlas_maps=atlas_maps,
            atlas_labels=atlas_labels,
            canonical_space=space,
            canonical_box_min_mm=box_min or DEFAULT_BOX_MIN_MM,
            canonical_box_max_mm=box_max or DEFAULT_BOX_MAX_MM,
            data_roots=data_roots,
            extra={METADATA_KEY: metadata} if metadata else {},
        )
        for text, what in (
            (area_table, "area_table"),
            (atlas_maps, "atlas.maps"),
            (atlas_labels, "atlas.labels"),
        ):
            if text:
                try:
                    cohort.path(text, what=what)
                except DataFormatError as exc:
                    found.extend(exc)
        found.raise_if_any()
        return cohort

    def write_manifest(self) -> Path:
        table = {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "section_thickness_um": self.section_thickness_um,
            "brains": list(self.brain_ids),
            "area_table": self.area_table_file,
            "canonical": {
                "space": self.canonical_space,
                "box_min_mm": [float(v) for v in self.canonical_box_min_mm],
                "box_max_mm": [float(v) for v in self.canonical_box_max_mm],
            },
        }
        if self.atlas_maps:
            table["atlas"] = {"maps": self.atlas_maps, "labels": self.atlas_labels}
        if self.data_roots:
            table["data_roots"] = {k: str(v) for k, v in self.data_roots.items()}
        table.update(self.extra)
        return write_text_atomic(self.manifest_path, tomli_w.dumps(table))

    @property
    def areas(self) -> AreaTable:
        if self._areas is None:
            self._areas = AreaTable.read(self.area_table_path)
        return self._areas

    def require_listed(self, brain_ids: Sequence[str]) -> None:
        """DataFormatError naming every id of ``brain_ids`` that cohort.toml does not list."""
        unknown = [b for b in brain_ids if b not in self.brain_ids]
        if unknown:
            names = ", ".join(repr(b) for b in unknown)
            raise DataFormatError(
                f"brain {names} is not listed in the cohort (brains: {', '.join(self.brain_ids)})",
                file=self.manifest_path,
                fix="add it to 'brains' or pick a listed brain",
            )

    def brain(self, brain_id: str) -> Brain:
        """The brain ``<cohort>/<brain_id>``; the id must be listed in cohort.toml."""
        self.require_listed([brain_id])
        folder = self.root / brain_id
        if not (folder / BRAIN_MANIFEST).is_file():
            raise DataFormatError(
                f"brain {brain_id!r} is listed in 'brains' but {folder} holds no {BRAIN_MANIFEST}",
                file=self.manifest_path,
                fix="restore the brain folder or remove the brain from 'brains'",
            )
        return Brain.read(folder, cohort=self)

    @property
    def brains(self) -> list[Brain]:
        return [self.brain(b) for b in self.brain_ids]

    @property
    def derivatives(self) -> Path:
        return self.root / DERIVATIVES

    def to_canonical(self, mni_mm: np.ndarray) -> np.ndarray:
        """Reference-space mm -> canonical coordinates in [-1, 1] through the cohort's box."""
        lo = np.asarray(self.canonical_box_min_mm)
        hi = np.asarray(self.canonical_box_max_mm)
        return 2.0 * (np.asarray(mni_mm) - lo) / (hi - lo) - 1.0

    def from_canonical(self, canonical: np.ndarray) -> np.ndarray:
        """Canonical coordinates in [-1, 1] -> reference-space mm (inverse of :meth:`to_canonical`)."""
        lo = np.asarray(self.canonical_box_min_mm)
        hi = np.asarray(self.canonical_box_max_mm)
        return lo + (np.asarray(canonical) + 1.0) * 0.5 * (hi - lo)


def _box(table: dict, key: str, default: tuple, found: Findings) -> tuple | None:
    value = table.get(key, default)
    ok = isinstance(value, (list, tuple)) and len(value) == 3
    ok = ok and all(
        not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) for v in value
    )
    if not ok:
        found.add(
            f"canonical.{key} must be three finite numbers (x, y, z in mm), got {_describe(value)}",
            f"write {key} = [x, y, z]",
        )
        return None
    return tuple(float(v) for v in value)


def _data_roots(table: dict, found: Findings) -> dict[str, Path]:
    roots = _table(table, "data_roots", found)
    out = {}
    for key, value in roots.items():
        if not is_name(key):
            found.add(f"data root name {key!r} is not a valid name", f"use {NAME_RULE}")
            continue
        if not isinstance(value, str) or not value:
            found.add(
                f"data root {key!r} must be a folder path in quotes, got {_describe(value)}",
                f'write {key} = "/absolute/path"',
            )
            continue
        folder = Path(value)
        if not folder.is_absolute():
            found.add(
                f"data root {key!r} = {value!r} is not an absolute path",
                "give the absolute path of the folder (files inside the cohort need no data root)",
            )
            continue
        if not folder.is_dir():
            found.add(
                f"data root {key!r} = {value!r} is not an existing folder",
                "mount or create the folder, or correct [data_roots]",
            )
            continue
        out[key] = folder
    return out


_COHORT_KEYS = (
    "format_version",
    "name",
    "section_thickness_um",
    "brains",
    "area_table",
    "atlas",
    "canonical",
    "data_roots",
    METADATA_KEY,
)


def find_brain(name: str | os.PathLike, root: str | os.PathLike | None = None) -> Brain:
    """Resolve a brain given by id (with ``root`` or ``$CORTEXGRAPH_ROOT``) or by folder path.

    * With a cohort (``root`` or ``$CORTEXGRAPH_ROOT``): ``name`` is a brain id
      (:data:`~cortexgraph.data.names.NAME_RULE`) listed in the cohort's ``brains``, found as
      ``<root>/<id>``; a folder path is accepted only when it is a folder of that cohort.
    * Without: ``name`` is the path of a brain folder; its parent is the cohort, which must hold a
      cohort.toml listing the brain (a brain is never read without its cohort: the section
      thickness, area table and atlas are the cohort's).

    The brain keeps the folder path as the cohort names it (symbolic links are not resolved), so its
    outputs go to ``<the cohort given>/derivatives/cortexgraph/<id>``.
    """
    text = os.fspath(name)
    root = root or os.environ.get("CORTEXGRAPH_ROOT") or None
    if not isinstance(text, str) or not text.strip():
        raise DataFormatError(
            f"brain {text!r} is empty", fix=f"give a brain id ({NAME_RULE}) or a brain folder"
        )
    if "\x00" in text:
        raise DataFormatError("brain name holds a NUL character", fix="give a valid brain id")
    if root:
        cohort_root = Path(os.path.abspath(root))
        if is_name(text):
            folder = cohort_root / text
        else:
            given = Path(os.path.abspath(text))
            same = given.parent == cohort_root
            if not same and given.parent.exists() and cohort_root.exists():
                same = given.parent.resolve() == cohort_root.resolve()
            if not same or not is_name(given.name):
                raise DataFormatError(
                    f"brain {text!r} is not a brain id of the cohort {root} (brain ids: {NAME_RULE})",
                    file=cohort_root / COHORT_MANIFEST,
                    fix="give the brain's id with --root, or its folder path without --root "
                    "(unset CORTEXGRAPH_ROOT)",
                )
            folder = cohort_root / given.name
    else:
        folder = Path(os.path.abspath(text))
        cohort_root = folder.parent
    manifest = folder / BRAIN_MANIFEST
    if root and not cohort_root.is_dir():
        raise DataFormatError(
            f"the cohort folder {root} "
            + ("is a file" if cohort_root.exists() else "does not exist"),
            file=cohort_root,
            fix="give --root (or CORTEXGRAPH_ROOT) the cohort folder, the one holding cohort.toml",
        )
    if not manifest.is_file() and (cohort_root / COHORT_MANIFEST).is_file():
        listed = Cohort.read(cohort_root).brain_ids
        if folder.name not in listed:
            raise DataFormatError(
                f"brain {folder.name!r} is not listed in the cohort (brains: {', '.join(listed)})",
                file=cohort_root / COHORT_MANIFEST,
                fix="pick a listed brain, give the brain's own cohort with --root (or "
                "CORTEXGRAPH_ROOT), or add the brain's folder and its id to 'brains'",
            )
    if not manifest.is_file():
        where = f"in {folder}" if root else f"at {folder}"
        raise DataFormatError(
            f"brain {text!r} not found (no {BRAIN_MANIFEST} {where})",
            file=manifest,
            fix="pass --root <cohort folder> (or set CORTEXGRAPH_ROOT) and the brain id, or give "
            "the brain folder's path",
        )
    cohort = None
    if (cohort_root / COHORT_MANIFEST).is_file():
        cohort = Cohort.read(cohort_root)
        if folder.name not in cohort.brain_ids:
            raise DataFormatError(
                f"brain {folder.name!r} is not listed in the cohort (brains: "
                f"{', '.join(cohort.brain_ids)})",
                file=cohort.manifest_path,
                fix="add it to 'brains' in cohort.toml or pick a listed brain",
            )
    elif root:
        raise DataFormatError(
            f"no {COHORT_MANIFEST} in {root}",
            file=cohort_root / COHORT_MANIFEST,
            fix="pass --root <cohort folder> or set CORTEXGRAPH_ROOT",
        )
    else:  # the section thickness, area table and atlas are the cohort's: never assumed
        raise DataFormatError(
            f"brain folder {folder.name!r} has no cohort: no {COHORT_MANIFEST} in {cohort_root}",
            file=cohort_root / COHORT_MANIFEST,
            fix="put the brain folder in a cohort folder whose cohort.toml lists it "
            "(docs/data-format.md), or pass --root <cohort folder>",
        )
    return Brain.read(folder, cohort=cohort)


def brain_in_cohort(
    brain: Brain | str | os.PathLike, root: str | os.PathLike | None = None
) -> tuple[Brain, Cohort]:
    """``(brain, its cohort)``: ``brain`` as given, or a brain id / folder resolved with
    :func:`find_brain` (``root``); CortexgraphError when the brain lies outside a cohort (it has no
    area table then)."""
    if not isinstance(brain, Brain):
        brain = find_brain(brain, root)
    if brain.cohort is None:
        raise CortexgraphError(
            "the brain is not inside a cohort (no area table)",
            file=brain.root,
            fix="keep the brain folder inside its cohort folder (cohort.toml, areas.tsv)",
        )
    return brain, brain.cohort


def find_cohort(root: str | os.PathLike | None = None) -> Cohort:
    """The cohort at ``root`` or ``$CORTEXGRAPH_ROOT`` or the working directory."""
    root = Path(root or os.environ.get("CORTEXGRAPH_ROOT") or ".")
    if not (root / COHORT_MANIFEST).is_file():
        raise DataFormatError(
            f"no {COHORT_MANIFEST} in {root}",
            file=root / COHORT_MANIFEST,
            fix="pass --root <cohort folder> or set CORTEXGRAPH_ROOT",
        )
    return Cohort.read(root)


__all__ = [
    "AREA_COLUMNS",
    "BRAIN_MANIFEST",
    "COHORT_MANIFEST",
    "DATA_ROOT_PREFIX",
    "DERIVATIVES",
    "GROUND_TRUTH",
    "FORMAT_VERSION",
    "MATRIX_COLUMNS",
    "SECTION_COLUMNS",
    "SECTION_TABLE",
    "TRANSFORM_COLUMNS",
    "TRANSFORM_TABLE",
    "Area",
    "AreaTable",
    "Brain",
    "Cohort",
    "Findings",
    "SectionRecord",
    "brain_in_cohort",
    "find_brain",
    "find_cohort",
    "findings_of",
    "format_tsv",
    "read_tsv",
    "read_tsv_lines",
]
