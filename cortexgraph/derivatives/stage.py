"""Running a stage under the contract: lock, upstream checks, reuse by key, record on success.

Every stage that writes derivatives does so inside a :class:`StageRun`::

    store = Derivatives.of(brain)
    with StageRun(store, StageId("build-graph", brain.id), parameters=params,
                  inputs=files_read, upstream=[...], overwrite=overwrite) as run:
        if run.reuse:
            return run.record.measured        # outputs are current: nothing to do
        ...compute, write each output atomically...
        run.commit(outputs=files_written, measured=report)

On entry the stage's lock is taken (:mod:`~.lock`), every upstream record is required to be current
(else :class:`~cortexgraph.errors.UpstreamError` naming it and the command that updates it), and the
stage key is computed from the parameters, the identities of the inputs and the upstream keys. The
outputs are reused when the previous record has the same key and its outputs are intact; otherwise
the previous record is deleted *before* any output is replaced (so an interrupted run leaves no record
and nothing is trusted), and :attr:`StageRun.reasons` says why the stage recomputes. A recomputation
that fails or is interrupted before it changed any of the previous run's outputs (a refusal of bad
input, say) writes the previous record back, so that run stands as it was; one that changed some
deletes all of them (inside the derivatives), so the folder never holds a mix of two runs.
:meth:`StageRun.commit` checks that no input and no upstream changed while the stage ran, writes the
record, and deletes outputs of the previous run that this run did not write again.

Files that no record backs are listed, while a run is under way, in the stage's journal
``locks/<stage>[@<scope>].unrecorded.json`` beside its lock: the previous run's outputs once its
record is deleted, and every output the run declares with :meth:`StageRun.writing` before it writes
it (stages that write many files one by one, such as the predictions of every section). A run that
fails or is interrupted deletes them (keeping the previous run's outputs when it stands again, see
above); :meth:`StageRun.commit` deletes the declared files it does not record. A run killed outright
(SIGKILL, power loss) cannot clean up: the next run of the stage, holding the lock, deletes what the
journal lists before it decides anything (not the outputs of a record that stands). So a first run
that is interrupted leaves no files behind either, and nothing in the folder is half a run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Required, TypedDict, Unpack

from cortexgraph.data.manifest import DERIVATIVES
from cortexgraph.data.names import is_inside
from cortexgraph.derivatives.identity import MISSING, IdentityCache
from cortexgraph.derivatives.lock import StageLock, lock_is_held
from cortexgraph.derivatives.record import (
    PathNamer,
    StageRecord,
    describe_changes,
    identities,
    read_record,
    record_problems,
    stage_key,
    write_record,
)
from cortexgraph.derivatives.stages import STAGES, StageId
from cortexgraph.errors import UpstreamError
from cortexgraph.outputs import write_json_atomic

__all__ = ["Derivatives", "StageRun", "installing", "run_stage"]

log = logging.getLogger(__name__)


class Derivatives:
    """The derivatives folder of one cohort: where records live, how files are named in them.

    Parameters
    ----------
    cohort_root : the cohort folder; outputs go to ``<cohort_root>/derivatives/cortexgraph``.
    data_roots : folders outside the cohort declared in cohort.toml (``[data_roots]``).
    """

    def __init__(self, cohort_root: str | os.PathLike, data_roots: Mapping[str, Path] | None = None):
        self.cohort_root = Path(cohort_root)
        self.root = self.cohort_root / DERIVATIVES
        self.namer = PathNamer(self.cohort_root, data_roots)
        self.cache = IdentityCache.for_folder(self.root)

    @classmethod
    def of(cls, obj: Any) -> Derivatives:
        """The store of a :class:`~cortexgraph.data.manifest.Cohort`, a ``Brain`` (its cohort) or a
        cohort folder."""
        from cortexgraph.data.manifest import Brain, Cohort

        if isinstance(obj, Brain):
            if obj.cohort is not None:
                obj = obj.cohort
            else:
                return cls(obj.root.parent)
        if isinstance(obj, Cohort):
            return cls(obj.root, getattr(obj, "data_roots", None))
        return cls(Path(obj))

    def record_path(self, sid: StageId) -> Path:
        return sid.record_path(self.root)

    def record(self, sid: StageId) -> StageRecord | None:
        """The record of ``sid`` (None when absent or unreadable)."""
        return read_record(self.record_path(sid))

    def problems(self, record: StageRecord, memo: dict | None = None) -> list[str]:
        """Why ``record`` is not current (:func:`~.record.record_problems`)."""
        return record_problems(record, self.root, self.namer, self.cache, memo)

    def require(self, sid: StageId, memo: dict | None = None) -> StageRecord:
        """The record of ``sid`` if its outputs are current; else UpstreamError naming the fix."""
        holder = lock_is_held(sid.lock_path(self.root))
        if holder is not None:
            raise UpstreamError(
                f"{sid.label} is being computed right now (host {holder.get('host')}, pid "
                f"{holder.get('pid')})",
                file=str(sid.lock_path(self.root)),
                fix="wait for it to finish, then run this command again",
            )
        record = self.record(sid)
        if record is None:
            raise UpstreamError(
                f"{sid.label} has not been computed (or its last run did not finish)",
                file=str(self.record_path(sid)),
                fix=f"run `{sid.command()}` first",
            )
        problems = self.problems(record, memo)
        if problems:
            more = f" (and {len(problems) - 1} more change(s))" if len(problems) > 1 else ""
            raise UpstreamError(
                f"{sid.label} is stale: {problems[0]}{more}",
                file=str(self.record_path(sid)),
                fix=f"run `{sid.command()}` to bring it up to date",
            )
        return record

    def output(self, record: StageRecord, name: str) -> Path:
        """The path of an output of ``record`` given its record name."""
        return self.namer.path(name)


class StageRun:
    """One execution of a stage under the contract (module docstring).

    Parameters
    ----------
    store : the cohort's :class:`Derivatives`.
    sid : which stage, brain and scope.
    parameters : every parameter that changes the result (JSON types, tuples, paths).
    inputs : every file the stage reads, other than upstream outputs (those are covered by the
        upstream keys).
    upstream : the stage executions whose outputs this stage reads; each must be current.
    overwrite : recompute even when the key matches.
    wait_s : how long to wait for the lock before refusing.
    follower : decide like the leader but take no lock and never delete or write a record (the
        non-zero ranks of a distributed run, which compute alongside rank 0).

    After entering: ``reuse`` (bool), ``reasons`` (why it recomputes), ``record`` (the current record
    when reused), ``upstream_records`` (label -> record), ``key``.
    """

    def __init__(
        self,
        store: Derivatives,
        sid: StageId,
        *,
        parameters: Mapping[str, Any],
        inputs: Iterable[str | os.PathLike] = (),
        upstream: Iterable[StageId] = (),
        overwrite: bool = False,
        wait_s: float = 0.0,
        follower: bool = False,
    ) -> None:
        self.store = store
        self.follower = follower
        self.sid = sid
        self.parameters = dict(parameters)
        self.input_paths = sorted({Path(p) for p in inputs})
        self.upstream_ids = sorted(set(upstream))
        self.overwrite = overwrite
        self.lock = StageLock(sid.lock_path(store.root), sid.label, wait_s=wait_s)
        self.code_version = STAGES[sid.stage].version
        self.reuse = False
        self.reasons: list[str] = []
        self.record: StageRecord | None = None
        self.previous: StageRecord | None = None
        self.upstream_records: dict[str, StageRecord] = {}
        self.key = ""
        self._started = 0.0
        self._declared: set[str] = set()  # names declared with writing(), not yet recorded
        self._orphans: set[str] = set()  # the previous run's outputs once its record is deleted

    # -- entry: decide ------------------------------------------------------------------------------
    def __enter__(self) -> StageRun:
        if self.follower:
            self._decide()
            return self
        self.lock.acquire()
        try:
            self._clear_interrupted_run()
            self._decide()
        except BaseException:
            self.lock.release()
            _remove_empty_folders(self.lock.path.parent, self.store.root.parent.parent)
            raise
        return self

    def _decide(self) -> None:
        store = self.store
        memo: dict = {}
        self.upstream_records = {sid.label: store.require(sid, memo) for sid in self.upstream_ids}
        self.upstream_keys = {label: rec.key for label, rec in self.upstream_records.items()}
        self.input_ids = identities(self.input_paths, store.namer, store.cache)
        self.key = stage_key(
            self.sid.stage,
            self.sid.scope,
            self.code_version,
            self.parameters,
            self.input_ids,
            self.upstream_keys,
        )
        record_path = store.record_path(self.sid)
        previous = read_record(record_path)
        self.previous = previous
        if previous is None:
            reasons = ["no record yet (first run, or the last run did not finish)"]
        elif previous.key != self.key:
            reasons = describe_changes(
                previous,
                code_version=self.code_version,
                parameters=self.parameters,
                inputs=self.input_ids,
                upstream=self.upstream_keys,
            ) or ["stage key changed"]
        else:
            reasons = [p for p in store.problems(previous, memo) if p.startswith("output ")]
        if self.overwrite and not reasons:
            reasons = ["--overwrite"]
        self.reasons = reasons
        self.reuse = not reasons
        if self.reuse:
            self.record = previous
            log.info("%s: up to date, reused (key %s)", self.sid.label, self.key[:12])
            return
        if previous is not None and not self.follower:
            self._orphans = set(previous.outputs)
            self._write_journal()  # before the record goes: a kill from here on is cleaned up
            with contextlib.suppress(FileNotFoundError):
                record_path.unlink()  # from here on the old outputs are not trusted
        log.info("%s: computing (%s)", self.sid.label, "; ".join(reasons[:4]))
        self._started = time.time()

    # -- files that no record backs yet ------------------------------------------------------------
    @property
    def journal_path(self) -> Path:
        """The journal of unrecorded files: ``locks/<stage>[@<scope>].unrecorded.json``."""
        return self.lock.path.with_name(f"{self.sid.file_stem}.unrecorded.json")

    def writing(self, paths: Iterable[str | os.PathLike]) -> None:
        """Declare outputs before writing them (inside the derivatives; others are ignored).

        Until :meth:`commit` they are listed in the stage's journal; a run that fails or is
        interrupted deletes them, and so does the next run of the stage after a kill (module
        docstring). Declare a file before its first byte is written; declaring one twice is a
        no-op. A reused stage and a follower declare nothing."""
        if self.follower or self.reuse:
            return
        names = {
            self.store.namer.name(Path(p))
            for p in paths
            if is_inside(Path(p), self.store.root)
        }
        if names - self._declared:
            self._declared |= names
            self._write_journal()

    def _write_journal(self) -> None:
        write_json_atomic(
            self.journal_path,
            {
                "stage": self.sid.label,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started_unix": round(self._started or time.time(), 3),
                "unrecorded": sorted(self._declared | self._orphans),
            },
        )

    def _delete_unrecorded(self, names: Iterable[str]) -> int:
        """Delete the files ``names`` (inside the derivatives); returns how many were there."""
        removed = 0
        for name in sorted(set(names)):
            path = self.store.namer.path(name)
            if is_inside(path, self.store.root):
                try:
                    path.unlink()
                    removed += 1
                except FileNotFoundError:
                    pass
        return removed

    def _end_journal(self) -> None:
        self._declared, self._orphans = set(), set()
        with contextlib.suppress(FileNotFoundError):
            self.journal_path.unlink()

    def _clear_interrupted_run(self) -> None:
        """Under the lock, before deciding: delete the files a killed run listed in the journal,
        except the outputs of a record that stands."""
        path = self.journal_path
        if not path.is_file():
            return
        try:
            journal = json.loads(path.read_text(encoding="utf-8"))
            names = [str(n) for n in journal.get("unrecorded", [])]
        except (OSError, ValueError, AttributeError):
            journal, names = {}, []  # an unreadable journal: nothing can be trusted to delete
        record = read_record(self.store.record_path(self.sid))
        kept = set(record.outputs) if record is not None else set()
        removed = self._delete_unrecorded(set(names) - kept)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        if removed:
            log.warning(
                "%s: deleted %d unrecorded file(s) of an earlier run that was stopped before it "
                "finished (pid %s on %s)",
                self.sid.label,
                removed,
                journal.get("pid", "?"),
                journal.get("host", "?"),
            )

    def summary(self, measured: Mapping[str, Any] | None = None, **extra: Any) -> dict:
        """What a stage function returns: its measurements (the record's when reused) with
        ``reused``, ``why`` and ``key``, and ``extra`` entries."""
        if measured is None:
            measured = self.record.measured if self.record is not None else {}
        return {**measured, **extra, "reused": self.reuse, "why": self.why, "key": self.key}

    def reused_outputs(self) -> list[Path]:
        """The output files of the reused record, sorted by their record names (only when
        ``reuse`` is True)."""
        if not self.reuse or self.record is None:
            raise RuntimeError(f"{self.sid.label}: reused_outputs() of a run that computes")
        return [self.store.output(self.record, n) for n in sorted(self.record.outputs)]

    @property
    def why(self) -> str:
        """The reasons as one line."""
        if self.reuse:
            return "up to date"
        more = f"; and {len(self.reasons) - 4} more" if len(self.reasons) > 4 else ""
        return "; ".join(self.reasons[:4]) + more

    # -- success: record ----------------------------------------------------------------------------
    def commit(
        self, outputs: Iterable[str | os.PathLike], measured: Mapping[str, Any] | None = None
    ) -> StageRecord:
        """Write the record of this run (after every output is written). Returns it."""
        if self.reuse or self.follower:
            raise RuntimeError("commit() of a reused stage, or by a follower")
        store = self.store
        for label, key in self.upstream_keys.items():
            current = store.record(StageId.from_label(label))
            if current is None or current.key != key:
                raise UpstreamError(
                    f"{label} changed while {self.sid.label} ran; its outputs were not recorded",
                    file=str(store.record_path(StageId.from_label(label))),
                    fix=f"run `{self.sid.command()}` again",
                )
        now = identities(self.input_paths, store.namer, store.cache)
        if now != self.input_ids:
            changed = sorted(n for n in now if now[n] != self.input_ids.get(n))
            raise UpstreamError(
                f"input {changed[0]} changed while {self.sid.label} ran; its outputs were not "
                "recorded",
                file=str(store.namer.path(changed[0])),
                fix=f"run `{self.sid.command()}` again",
            )
        output_paths = sorted({Path(p) for p in outputs})
        output_ids = identities(output_paths, store.namer, store.cache)
        missing = [name for name, ident in output_ids.items() if ident == MISSING]
        if missing:
            raise RuntimeError(f"{self.sid.label} lists outputs it did not write: {missing}")
        from cortexgraph import __version__

        record = StageRecord(
            stage=self.sid.stage,
            brain=self.sid.brain,
            scope=self.sid.scope,
            key=self.key,
            code_version=self.code_version,
            parameters=self.parameters,
            inputs=self.input_ids,
            upstream=self.upstream_keys,
            outputs=output_ids,
            measured=dict(measured or {}),
            command=" ".join(sys.argv),
            host=socket.gethostname(),
            pid=os.getpid(),
            started_unix=round(self._started, 3),
            seconds=round(time.time() - self._started, 3),
            cortexgraph_version=__version__,
        )
        from cortexgraph.derivatives.record import canonical_parameters

        record.parameters = canonical_parameters(self.parameters)
        record.measured = canonical_measured(record.measured)
        write_record(store.record_path(self.sid), record)
        self._remove_leftovers(set(output_ids))
        self._delete_unrecorded(self._declared - set(output_ids))  # declared, then not recorded
        self._end_journal()
        _remove_stale_temporaries(output_paths, self._started)
        self.record = record
        store.cache.save()
        return record

    def commit_report(
        self, outputs: Mapping[str, str | os.PathLike], report: Mapping[str, Any]
    ) -> dict:
        """The end of a stage whose measurements are its JSON report: write ``report`` to
        ``outputs["report"]``, :meth:`commit` every file of ``outputs`` (``{name: path}``) with
        ``report`` as the measurements, and return its :meth:`summary`."""
        write_json_atomic(outputs["report"], report)
        self.commit(list(outputs.values()), measured=report)
        return self.summary(report)

    def _remove_leftovers(self, written: set[str]) -> None:
        """Delete outputs of the previous run that this run did not write (inside derivatives)."""
        if self.previous is None:
            return
        for name in set(self.previous.outputs) - written:
            path = self.store.namer.path(name)
            if is_inside(path, self.store.root):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def _after_failure(self) -> None:
        """A recomputation that failed, was refused or was interrupted. When it changed none of
        the previous run's outputs (e.g. refused bad input before writing), the previous record is
        written back: that run stands, as it was. Otherwise the previous outputs are deleted, also
        those already rewritten, so that no one reads a mix of two runs (the next run recomputes
        them all anyway). Either way the files this run declared (:meth:`writing`) and does not
        leave to a standing record are deleted: a failed first run leaves nothing."""
        previous = self.previous
        try:
            if previous is None:
                self._delete_unrecorded(self._declared)
                return
            store = self.store
            touched = [p for p in store.problems(previous) if p.startswith("output ")]
            if not touched:
                write_record(store.record_path(self.sid), previous)
                self._delete_unrecorded(self._declared - set(previous.outputs))
                log.info("%s: not recomputed; the previous run's outputs are untouched and its "
                         "record is kept", self.sid.label)  # fmt: skip
                return
            self._remove_leftovers(set())
            self._delete_unrecorded(self._declared)
        finally:
            self._end_journal()

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.follower:
            return
        try:
            if exc_type is not None and self.record is None and self._started:
                self._after_failure()
        finally:
            self.lock.release()
        if exc_type is None:
            self.store.cache.save()
        else:  # folders this run created and left empty (a refused or failed first run)
            _remove_empty_folders(self.lock.path.parent, self.store.root.parent.parent)


class StageOptions(TypedDict, total=False):
    """The keywords of :class:`StageRun` that :func:`run_stage` passes on."""

    parameters: Required[Mapping[str, Any]]
    inputs: Iterable[str | os.PathLike]
    upstream: Iterable[StageId]
    overwrite: bool
    wait_s: float


def run_stage(
    store: Derivatives,
    sid: StageId,
    compute: Callable[[StageRun], dict],
    **options: Unpack[StageOptions],
) -> dict:
    """The shape of a stage function that returns its summary: under a :class:`StageRun` (keywords
    as there), the summary of the current record when the outputs are reused; otherwise
    ``compute(run)``, which writes the outputs, commits and returns ``run.summary(...)``."""
    with StageRun(store, sid, **options) as run:
        if run.reuse:
            return run.summary()
        return compute(run)


def _remove_empty_folders(folder: Path, stop: Path) -> None:
    """Remove ``folder`` and its parents while they are empty, up to (not including) ``stop``."""
    folder, stop = Path(folder), Path(stop)
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _remove_stale_temporaries(outputs: list[Path], before_unix: float) -> None:
    """Delete temporary files of killed earlier runs beside ``outputs`` (``.<name>.*`` written by
    :func:`cortexgraph.outputs.atomic_path`, older than this run; the lock guarantees that no
    other process writes these files now)."""
    for path in outputs:
        for temporary in path.parent.glob(f".{path.name}.*"):
            with contextlib.suppress(OSError):
                if temporary.stat().st_mtime < before_unix:
                    temporary.unlink()


def canonical_measured(value: Any) -> Any:
    """Measurements as plain JSON (like parameters, but unknown objects become strings)."""
    from cortexgraph.derivatives.record import canonical_parameters

    if isinstance(value, Mapping):
        return {str(k): canonical_measured(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical_measured(v) for v in value]
    try:
        return canonical_parameters(value)
    except TypeError:
        if hasattr(value, "tolist"):
            return value.tolist()
        return str(value)


@contextlib.contextmanager
def installing(brain: Any, stage: str, wait_s: float = 0.0):
    """Hold what installing ``stage``'s outputs into ``brain``'s own files needs: the stage's lock
    (so that no run of the stage rewrites the outputs being copied) and the brain's install lock
    ``<derivatives>/<brain>/locks/install.lock`` (so that two installs do not rewrite sections.tsv
    at once and lose one's change). Raises StageBusyError (exit status 3) naming the holder when
    either is held after ``wait_s`` seconds."""
    store = Derivatives.of(brain)
    stage_id = StageId(stage, brain.id)
    brain_lock = StageLock(
        stage_id.folder(store.root) / "locks" / "install.lock", f"{brain.id}/install", wait_s=wait_s
    )
    stage_lock = StageLock(stage_id.lock_path(store.root), stage_id.label, wait_s=wait_s)
    with brain_lock, stage_lock:
        yield
