"""What the web app holds while it runs: the cohort, open rasters, the tile cache, the settings.

Manifests are re-read when their files change (modification time and size), so edits made by the app
itself (a new annotation registered in ``sections.tsv``) or from the shell are seen by the next
request. Every brain, section and file a request names is resolved here, with the checks of
:mod:`cortexgraph.web.security` (names, membership, paths inside the brain folder).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cortexgraph.data.manifest import Brain, Cohort, SectionRecord
from cortexgraph.data.names import check_name, inside
from cortexgraph.errors import CortexgraphError
from cortexgraph.web.security import NotFoundError
from cortexgraph.web.tiles import RasterPool, TileCache

__all__ = ["WebSettings", "WebState"]


@dataclass
class WebSettings:
    """Settings of one app instance.

    root : the cohort folder (everything the app reads and writes lies inside it).
    token : access token (None: loopback only, no token).
    max_body_bytes : largest request body (annotation payloads are the largest: polygons).
    tile_cache_mb : memory for encoded tiles; chunk_cache_mb : per open raster, decoded HDF5 chunks.
    job_defaults : defaults of local-model jobs started from the browser (``arch``, ``preset``,
        ``iterations``, ``seed``, ``max_interval_mm``): the CLI's defaults unless the server was
        started with others.
    job_threads : threads of a job's process (``OMP_NUM_THREADS``); default: all cores but one, so
        the app stays responsive while a job trains.
    """

    root: Path
    token: str | None = None
    max_body_bytes: int = 8 * 2**20
    tile_cache_mb: float = 256.0
    chunk_cache_mb: float = 64.0
    job_defaults: dict = field(
        default_factory=lambda: {"arch": "ms", "preset": "auto", "iterations": None, "seed": 0}
    )
    job_threads: int | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        if self.job_threads is None:
            self.job_threads = max(1, (os.cpu_count() or 2) - 1)


def _stamp(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return (0, 0)
    return (stat.st_mtime_ns, stat.st_size)


class WebState:
    """The app's cohort and caches (one per app instance, shared by the worker threads)."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.root = settings.root
        self.pool = RasterPool(chunk_cache_mb=settings.chunk_cache_mb)
        self.tiles = TileCache(int(settings.tile_cache_mb * 2**20))
        self._lock = threading.Lock()
        self._cohort: tuple[tuple, Cohort] | None = None
        self._brains: dict[str, tuple[tuple, Brain]] = {}
        self.cohort()  # fail early on a folder that is not a cohort

    # -- manifests ---------------------------------------------------------------------------------
    def cohort(self) -> Cohort:
        """The cohort, re-read when cohort.toml or the area table changed."""
        manifest = self.root / "cohort.toml"
        with self._lock:
            if self._cohort is not None:
                stamp, cohort = self._cohort
                if stamp == (_stamp(manifest), _stamp(self.root / cohort.area_table_file)):
                    return cohort
            cohort = Cohort.read(self.root)
            inside(self.root, cohort.area_table_file, what="area table", file=manifest)
            cohort.areas  # noqa: B018 - read (and validate) the area table now
            self._cohort = ((_stamp(manifest), _stamp(self.root / cohort.area_table_file)), cohort)
            self._brains.clear()
            return cohort

    def brain(self, brain_id: str) -> Brain:
        """A brain listed in the cohort (404 otherwise), re-read when its manifests changed."""
        check_name(brain_id, "brain id")
        cohort = self.cohort()
        if brain_id not in cohort.brain_ids:
            raise NotFoundError(
                f"no brain {brain_id!r} in this cohort",
                fix=f"pick one of: {', '.join(cohort.brain_ids)}",
            )
        folder = inside(self.root, brain_id, what="brain folder", file=cohort.manifest_path)
        stamp = (_stamp(folder / "brain.toml"), _stamp(folder / "sections.tsv"))
        with self._lock:
            found = self._brains.get(brain_id)
            if found is not None and found[0] == stamp:
                return found[1]
        brain = Brain.read(folder, cohort=cohort)
        if brain.id != brain_id:
            raise CortexgraphError(
                f"brain folder {brain_id} says its id is {brain.id!r}",
                file=brain.manifest_path,
                fix="make the id in brain.toml equal to the folder name",
            )
        brain.sections  # noqa: B018 - parse the section table now
        with self._lock:
            self._brains[brain_id] = (stamp, brain)
        return brain

    def forget(self, brain_id: str) -> None:
        """Drop a cached brain (after the app rewrote its section table)."""
        with self._lock:
            self._brains.pop(brain_id, None)

    def section(self, brain: Brain, number: int) -> SectionRecord:
        """A section row of the brain (404 when the table does not list it)."""
        for record in brain.sections:
            if record.section == int(number):
                return record
        raise NotFoundError(
            f"brain {brain.id} has no section {number}",
            file=self.relative(brain.section_table_path),
            fix="pick a section listed in sections.tsv",
        )

    def section_file(self, brain: Brain, number: int, kind: str) -> Path:
        """The file of one kind (image, mask, annotation, contours, coords) of a section, checked to
        lie inside the brain folder; 404 when the section has none."""
        record = self.section(brain, number)
        relative = getattr(record, kind)
        if record.missing or not relative:
            raise NotFoundError(
                f"section {number} of {brain.id} has no {kind} file", section=number
            )
        path = inside(
            brain.root, relative, what=f"{kind} path", file=brain.section_table_path, section=number
        )
        if not path.is_file():
            raise NotFoundError(
                f"the {kind} file of section {number} does not exist",
                file=self.relative(path),
                section=number,
                fix="correct sections.tsv or restore the file",
            )
        return path

    def relative(self, path: Path | str) -> str:
        """A path as the user sees it in messages: relative to the cohort folder."""
        try:
            return Path(path).resolve().relative_to(self.root).as_posix()
        except ValueError:
            return Path(path).name

    def close(self) -> None:
        self.pool.close()
