"""Cohort and brain manifests (TOML + TSV), read and written exactly as in docs/data-format.md.

A cohort root holds ``cohort.toml``, the area table ``areas.tsv``, the atlas files and one folder per
brain; each brain folder holds ``brain.toml``, ``sections.tsv`` and ``transforms.tsv`` plus the section
files they point to. Reading never loads images: :class:`Brain` only knows paths and metadata.
"""

from __future__ import annotations

import csv
import io
import os
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tomli_w

from cortexgraph.errors import DataFormatError
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
TRANSFORM_COLUMNS = (
    "moving",
    "fixed",
    "m00",
    "m01",
    "m02",
    "m10",
    "m11",
    "m12",
    "m20",
    "m21",
    "m22",
)
AREA_COLUMNS = ("id", "name", "color")
DERIVATIVES = Path("derivatives") / "cortexgraph"


# --------------------------------------------------------------------------------------------------
# TSV helpers
# --------------------------------------------------------------------------------------------------
def read_tsv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Read a tab-separated table with a header; check the required columns are there."""
    if not path.is_file():
        raise DataFormatError("table not found", file=path, fix="create it (docs/data-format.md)")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DataFormatError(
                f"missing column(s) {', '.join(missing)}",
                file=path,
                fix=f"the header must contain: {', '.join(required)}",
            )
        return [dict(row) for row in reader]


def format_tsv(columns: Sequence[str], rows: Iterable[Sequence]) -> str:
    """Tab-separated text with a header line."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buffer.getvalue()


def _flag(value: str | None) -> bool:
    return str(value or "0").strip().lower() in ("1", "true", "yes", "y")


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


def _need(table: dict, key: str, path: Path):
    if key not in table:
        raise DataFormatError(f"missing key '{key}'", file=path, fix=f"add '{key} = ...'")
    return table[key]


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

    def resolve(self, key: str | int) -> Area:
        """An area by id (int or digits) or by name."""
        if isinstance(key, int) or str(key).isdigit():
            area = self.by_id.get(int(key))
        else:
            area = self.by_name.get(str(key))
        if area is None:
            raise DataFormatError(f"unknown area {key!r}", fix="use a name or id from areas.tsv")
        return area

    @classmethod
    def read(cls, path: Path) -> AreaTable:
        rows = read_tsv(path, AREA_COLUMNS)
        areas = []
        for line, row in enumerate(rows, start=2):
            try:
                area = Area(int(row["id"]), row["name"].strip(), row["color"].strip())
                area.rgb  # noqa: B018 - validates the colour
            except (ValueError, IndexError):
                raise DataFormatError(
                    f"line {line}: bad area row {row}",
                    file=path,
                    fix="id must be an integer > 0, color like #a1b2c3",
                ) from None
            if area.id <= 0:
                raise DataFormatError(
                    f"line {line}: area id {area.id} must be > 0 (0 means unlabelled)",
                    file=path,
                    fix="renumber the area",
                )
            areas.append(area)
        ids = [a.id for a in areas]
        if len(set(ids)) != len(ids):
            raise DataFormatError("duplicated area ids", file=path, fix="make ids unique")
        return cls(areas)

    def write(self, path: Path) -> Path:
        rows = [(a.id, a.name, a.color) for a in self.areas]
        return write_text_atomic(path, format_tsv(AREA_COLUMNS, rows))


# --------------------------------------------------------------------------------------------------
# Sections and brains
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SectionRecord:
    """One row of ``sections.tsv``. File paths are relative to the brain folder ("" = none)."""

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
    """A brain folder: manifest, section table and transform table (paths only, nothing loaded)."""

    id: str
    root: Path
    cohort: Cohort | None
    shrinkage_factor: float
    digitization_step: int
    image_spacing_um: float
    mask_spacing_um: float
    annotation_spacing_um: float
    coords_spacing_um: float
    base_section: int | None = None
    exclusion_mask: str = ""
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

    @property
    def thickness_um(self) -> float:
        return self.cohort.section_thickness_um if self.cohort is not None else 20.0

    @property
    def derivatives(self) -> Path:
        """Output folder of this brain: ``<cohort>/derivatives/cortexgraph/<brain>``."""
        base = self.cohort.root if self.cohort is not None else self.root.parent
        return base / DERIVATIVES / self.id

    def path(self, relative: str) -> Path:
        return self.root / relative

    @classmethod
    def read(cls, root: str | os.PathLike, cohort: Cohort | None = None) -> Brain:
        root = Path(root)
        path = root / BRAIN_MANIFEST
        table = _load_toml(path)
        version = table.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise DataFormatError(
                f"format_version {version} is not supported (expected {FORMAT_VERSION})",
                file=path,
                fix="convert the brain with this cortexgraph version",
            )
        spacing = _need(table, "spacing_um", path)
        try:
            return cls(
                id=str(_need(table, "id", path)),
                root=root,
                cohort=cohort,
                shrinkage_factor=float(table.get("shrinkage_factor", 1.0)),
                digitization_step=int(_need(table, "digitization_step", path)),
                image_spacing_um=float(_need(spacing, "image", path)),
                mask_spacing_um=float(_need(spacing, "mask", path)),
                annotation_spacing_um=float(_need(spacing, "annotation", path)),
                coords_spacing_um=float(_need(spacing, "coords", path)),
                base_section=table.get("base_section"),
                exclusion_mask=str(table.get("exclusion_mask", "")),
                extra={k: v for k, v in table.items() if k not in _BRAIN_KEYS},
            )
        except (TypeError, ValueError) as exc:
            raise DataFormatError(
                f"bad value: {exc}", file=path, fix="see docs/data-format.md"
            ) from None

    def write_manifest(self) -> Path:
        table = {
            "format_version": FORMAT_VERSION,
            "id": self.id,
            "shrinkage_factor": self.shrinkage_factor,
            "digitization_step": self.digitization_step,
            "spacing_um": {
                "image": self.image_spacing_um,
                "mask": self.mask_spacing_um,
                "annotation": self.annotation_spacing_um,
                "coords": self.coords_spacing_um,
            },
        }
        if self.base_section is not None:
            table["base_section"] = int(self.base_section)
        if self.exclusion_mask:
            table["exclusion_mask"] = self.exclusion_mask
        table.update(self.extra)
        return write_text_atomic(self.manifest_path, tomli_w.dumps(table))

    # -- section table ----------------------------------------------------------------------------
    @property
    def sections(self) -> list[SectionRecord]:
        """All rows of sections.tsv in file order (check validates the order)."""
        if self._sections is None:
            rows = read_tsv(self.section_table_path, SECTION_COLUMNS)
            records = []
            for line, row in enumerate(rows, start=2):
                try:
                    number = int(row["section"])
                except ValueError:
                    raise DataFormatError(
                        f"line {line}: section number {row['section']!r} is not an integer",
                        file=self.section_table_path,
                        fix="use integer section numbers",
                    ) from None
                records.append(
                    SectionRecord(
                        section=number,
                        image=(row.get("image") or "").strip(),
                        mask=(row.get("mask") or "").strip(),
                        annotation=(row.get("annotation") or "").strip(),
                        contours=(row.get("contours") or "").strip(),
                        coords=(row.get("coords") or "").strip(),
                        missing=_flag(row.get("missing")),
                        mirrored=_flag(row.get("mirrored")),
                        excluded=_flag(row.get("excluded")),
                    )
                )
            self._sections = records
        return self._sections

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
        """``{(moving, fixed): 3x3}`` from transforms.tsv (values as written, not validated)."""
        if self._transforms is None:
            rows = read_tsv(self.transform_table_path, TRANSFORM_COLUMNS)
            out = {}
            for line, row in enumerate(rows, start=2):
                try:
                    key = (int(row["moving"]), int(row["fixed"]))
                    values = [float(row[c]) for c in TRANSFORM_COLUMNS[2:]]
                except (TypeError, ValueError):
                    raise DataFormatError(
                        f"line {line}: unreadable transform row",
                        file=self.transform_table_path,
                        fix="nine numbers m00..m22 per row",
                    ) from None
                out[key] = np.array(values, dtype=np.float64).reshape(3, 3)
            self._transforms = out
        return self._transforms

    def write_transforms(self, transforms: dict[tuple[int, int], np.ndarray]) -> Path:
        self._transforms = dict(transforms)
        rows = [
            (m, f, *[repr(float(v)) for v in np.asarray(t).ravel()])
            for (m, f), t in sorted(transforms.items())
        ]
        return write_text_atomic(self.transform_table_path, format_tsv(TRANSFORM_COLUMNS, rows))


_BRAIN_KEYS = {
    "format_version",
    "id",
    "shrinkage_factor",
    "digitization_step",
    "spacing_um",
    "base_section",
    "exclusion_mask",
}


@dataclass
class Cohort:
    """A cohort root: brains, area table, section thickness, atlas files, canonical box."""

    root: Path
    name: str
    section_thickness_um: float
    brain_ids: list[str]
    area_table_file: str = "areas.tsv"
    atlas_maps: str = ""
    atlas_labels: str = ""
    canonical_space: str = "MNI152NLin2009cSym"
    canonical_box_min_mm: tuple[float, float, float] = (-90.0, -126.0, -72.0)
    canonical_box_max_mm: tuple[float, float, float] = (90.0, 90.0, 108.0)
    extra: dict = field(default_factory=dict)
    _areas: AreaTable | None = None

    @property
    def manifest_path(self) -> Path:
        return self.root / COHORT_MANIFEST

    @classmethod
    def read(cls, root: str | os.PathLike) -> Cohort:
        root = Path(root)
        path = root / COHORT_MANIFEST
        table = _load_toml(path)
        version = table.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise DataFormatError(
                f"format_version {version} is not supported (expected {FORMAT_VERSION})",
                file=path,
                fix="convert the cohort with this cortexgraph version",
            )
        atlas = table.get("atlas", {})
        canonical = table.get("canonical", {})
        return cls(
            root=root,
            name=str(table.get("name", root.name)),
            section_thickness_um=float(_need(table, "section_thickness_um", path)),
            brain_ids=[str(b) for b in _need(table, "brains", path)],
            area_table_file=str(table.get("area_table", "areas.tsv")),
            atlas_maps=str(atlas.get("maps", "")),
            atlas_labels=str(atlas.get("labels", "")),
            canonical_space=str(canonical.get("space", "MNI152NLin2009cSym")),
            canonical_box_min_mm=tuple(canonical.get("box_min_mm", (-90.0, -126.0, -72.0))),
            canonical_box_max_mm=tuple(canonical.get("box_max_mm", (90.0, 90.0, 108.0))),
            extra={k: v for k, v in table.items() if k not in _COHORT_KEYS},
        )

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
        table.update(self.extra)
        return write_text_atomic(self.manifest_path, tomli_w.dumps(table))

    @property
    def areas(self) -> AreaTable:
        if self._areas is None:
            self._areas = AreaTable.read(self.root / self.area_table_file)
        return self._areas

    def brain(self, brain_id: str) -> Brain:
        if brain_id not in self.brain_ids:
            raise DataFormatError(
                f"brain {brain_id!r} is not listed in the cohort (brains: {', '.join(self.brain_ids)})",
                file=self.manifest_path,
                fix="add it to 'brains' or pick a listed brain",
            )
        return Brain.read(self.root / brain_id, cohort=self)

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


_COHORT_KEYS = {
    "format_version",
    "name",
    "section_thickness_um",
    "brains",
    "area_table",
    "atlas",
    "canonical",
}


def find_brain(name: str | os.PathLike, root: str | os.PathLike | None = None) -> Brain:
    """Resolve a brain given by id (with ``root`` or ``$CORTEXGRAPH_ROOT``) or by folder path.

    ``cortexgraph build-graph B03`` looks for ``$CORTEXGRAPH_ROOT/B03`` (or ``--root``), then for a folder
    ``B03`` relative to the working directory whose parent is a cohort.
    """
    candidates = []
    root = root or os.environ.get("CORTEXGRAPH_ROOT")
    if root:
        candidates.append(Path(root) / str(name))
    candidates.append(Path(name))
    for folder in candidates:
        if (folder / BRAIN_MANIFEST).is_file():
            folder = folder.resolve()
            cohort = None
            if (folder.parent / COHORT_MANIFEST).is_file():
                cohort = Cohort.read(folder.parent)
            return Brain.read(folder, cohort=cohort)
    where = ", ".join(str(c) for c in candidates)
    raise DataFormatError(
        f"brain {str(name)!r} not found (looked for {BRAIN_MANIFEST} in: {where})",
        fix="pass --root <cohort folder> or set CORTEXGRAPH_ROOT, or give the brain folder's path",
    )


def find_cohort(root: str | os.PathLike | None = None) -> Cohort:
    """The cohort at ``root`` or ``$CORTEXGRAPH_ROOT`` or the working directory."""
    root = Path(root or os.environ.get("CORTEXGRAPH_ROOT") or ".")
    if not (root / COHORT_MANIFEST).is_file():
        raise DataFormatError(
            f"no {COHORT_MANIFEST} in {root}",
            fix="pass --root <cohort folder> or set CORTEXGRAPH_ROOT",
        )
    return Cohort.read(root)
