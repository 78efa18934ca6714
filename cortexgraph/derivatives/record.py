"""Stage records: what made a set of outputs, and the key that decides whether they can be reused.

A record is a JSON file (``records/<stage>[@<scope>].json``, :mod:`cortexgraph.derivatives.stages`)
written by the stage **after** all its outputs, so an interrupted stage leaves no record and its
outputs are never trusted. It holds:

========================  ============================================================================
field                     meaning
========================  ============================================================================
``stage``, ``brain``,     which execution this is
``scope``
``key``                   SHA-256 of (stage, scope, code version, parameters, input identities,
                          upstream keys): equal keys mean equal results
``code_version``          the stage's code version when it ran (:data:`~.stages.STAGES`)
``parameters``            every parameter that changes the result
``inputs``                ``{path: identity}`` of every file read (:mod:`~.identity`); paths relative to
                          the cohort, or ``@<root>/...`` inside a declared data root
``upstream``              ``{stage label: key}`` of the records of the outputs it read
``outputs``               ``{path: identity}`` of every file written
``measured``              what the stage measured (counts, residuals, scores, seconds)
``command``, ``host``,    how and when it ran
``pid``, ``started_unix``,
``seconds``,
``cortexgraph_version``
========================  ============================================================================

An output is **current** when its record exists, its code version is the stage's current one, every
input and output still has its recorded identity, and every upstream record still has its recorded
key and is itself current (:func:`record_problems`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cortexgraph.derivatives.identity import MISSING, IdentityCache, file_identity
from cortexgraph.derivatives.stages import STAGES, StageId
from cortexgraph.outputs import write_json_atomic

__all__ = [
    "RECORD_FORMAT",
    "StageRecord",
    "canonical_parameters",
    "stage_key",
    "read_record",
    "write_record",
    "PathNamer",
    "record_problems",
    "describe_changes",
]

RECORD_FORMAT = "cortexgraph-stage-record"
RECORD_VERSION = 1


def canonical_parameters(value: Any) -> Any:
    """``value`` as plain JSON types (tuples -> lists, paths -> strings, numpy scalars -> numbers),
    so equal parameters always serialise to equal text. Non-finite floats become strings."""
    if isinstance(value, Mapping):
        return {str(k): canonical_parameters(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical_parameters(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"parameter of type {type(value).__name__} cannot go into a stage key")


def stage_key(
    stage: str,
    scope: tuple[str, ...],
    code_version: int,
    parameters: Mapping[str, Any],
    inputs: Mapping[str, str],
    upstream: Mapping[str, str],
) -> str:
    """SHA-256 (hex) over everything that decides a stage's result (module docstring)."""
    payload = {
        "stage": stage,
        "scope": list(scope),
        "code_version": int(code_version),
        "parameters": canonical_parameters(parameters),
        "inputs": dict(sorted(inputs.items())),
        "upstream": dict(sorted(upstream.items())),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class StageRecord:
    """One record (module docstring)."""

    stage: str
    brain: str | None
    scope: tuple[str, ...]
    key: str
    code_version: int
    parameters: dict
    inputs: dict[str, str]
    upstream: dict[str, str]
    outputs: dict[str, str]
    measured: dict = field(default_factory=dict)
    command: str = ""
    host: str = ""
    pid: int = 0
    started_unix: float = 0.0
    seconds: float = 0.0
    cortexgraph_version: str = ""

    @property
    def id(self) -> StageId:
        return StageId(self.stage, self.brain, tuple(self.scope))

    def to_json(self) -> dict:
        data = asdict(self)
        data["scope"] = list(self.scope)
        return {"format": RECORD_FORMAT, "version": RECORD_VERSION, **data}

    @classmethod
    def from_json(cls, data: dict) -> StageRecord:
        if data.get("format") != RECORD_FORMAT or data.get("version") != RECORD_VERSION:
            raise ValueError("not a cortexgraph stage record of a known version")
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        fields["scope"] = tuple(fields.get("scope", ()))
        return cls(**fields)


def read_record(path: str | os.PathLike) -> StageRecord | None:
    """The record at ``path``; None when it does not exist or cannot be read (treated as absent)."""
    try:
        return StageRecord.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def write_record(path: str | os.PathLike, record: StageRecord) -> Path:
    """Write a record atomically."""
    return write_json_atomic(path, record.to_json())


class PathNamer:
    """Names files in records relative to the cohort (``B01/masks/s0001.h5``) or to a declared data
    root (``@scans/B01/s0001.h5``), and resolves those names back to paths.

    Parameters
    ----------
    cohort_root : the cohort folder.
    data_roots : ``{name: folder}`` declared in cohort.toml for files kept outside the cohort.
    """

    def __init__(self, cohort_root: Path, data_roots: Mapping[str, Path] | None = None) -> None:
        self.cohort_root = Path(cohort_root).resolve()
        self.data_roots = {k: Path(v).resolve() for k, v in (data_roots or {}).items()}

    def name(self, path: str | os.PathLike) -> str:
        absolute = Path(os.path.abspath(path))
        for base, prefix in [(self.cohort_root, "")] + [
            (root, f"@{key}/") for key, root in sorted(self.data_roots.items())
        ]:
            try:
                return prefix + absolute.relative_to(base).as_posix()
            except ValueError:
                pass
            try:  # the file may sit behind a symbolic link inside the cohort
                return prefix + absolute.resolve().relative_to(base).as_posix()
            except ValueError:
                continue
        return absolute.as_posix()

    def path(self, name: str) -> Path:
        if name.startswith("@"):
            key, _, rest = name[1:].partition("/")
            root = self.data_roots.get(key)
            if root is None:
                return Path("/nonexistent-data-root") / key / rest
            return root / rest
        if os.path.isabs(name):
            return Path(name)
        return self.cohort_root / name


def identities(
    paths: Mapping[str, Path] | list[Path], namer: PathNamer, cache: IdentityCache | None
) -> dict[str, str]:
    """``{name: identity}`` of files (names from ``namer`` unless given as a mapping)."""
    items = paths.items() if isinstance(paths, Mapping) else ((namer.name(p), p) for p in paths)
    return {name: file_identity(path, cache) for name, path in items}


def _changed_entries(old: Mapping[str, str], new: Mapping[str, str], what: str) -> list[str]:
    out = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if before is None:
            out.append(f"new {what} {name}")
        elif after is None:
            out.append(f"{what} {name} no longer used")
        elif after == MISSING:
            out.append(f"{what} {name} was deleted")
        else:
            out.append(f"{what} {name} changed")
    return out


def _short(value: Any) -> str:
    text = json.dumps(canonical_parameters(value))
    return text if len(text) <= 40 else text[:37] + "..."


def _changed_leaves(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted name, old, new)`` of every value that differs, descending into nested tables so a
    change in a stage's parameter dataclass names the field, not the whole table."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        changed = []
        for key in sorted(set(old) | set(new), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                changed.append((name, old.get(key), new.get(key)))
            else:
                changed += _changed_leaves(old[key], new[key], name)
        return changed
    return [] if old == new else [(prefix, old, new)]


def describe_changes(
    previous: StageRecord,
    *,
    code_version: int,
    parameters: Mapping[str, Any],
    inputs: Mapping[str, str],
    upstream: Mapping[str, str],
) -> list[str]:
    """Why a stage with these settings does not match ``previous``: one line per difference."""
    reasons = []
    if previous.code_version != code_version:
        reasons.append(f"code version changed ({previous.code_version} -> {code_version})")
    old_p = canonical_parameters(previous.parameters)
    new_p = canonical_parameters(parameters)
    for name, before, after in _changed_leaves(old_p, new_p):
        reasons.append(f"parameter {name} changed ({_short(before)} -> {_short(after)})")
    reasons += _changed_entries(previous.inputs, inputs, "input")
    for label in sorted(set(previous.upstream) | set(upstream)):
        if previous.upstream.get(label) != upstream.get(label):
            reasons.append(f"upstream {label} was recomputed")
    return reasons


def record_problems(
    record: StageRecord,
    derivatives: Path,
    namer: PathNamer,
    cache: IdentityCache | None,
    memo: dict[str, list[str]] | None = None,
) -> list[str]:
    """Why ``record``'s outputs are not current (empty list: current). See the module docstring.

    ``memo`` (label -> problems) shares the work between records that have upstream in common.
    """
    memo = {} if memo is None else memo
    label = record.id.label
    if label in memo:
        return memo[label]
    memo[label] = []  # cycles cannot happen, but never recurse forever
    problems: list[str] = []
    spec = STAGES.get(record.stage)
    if spec is None:
        problems.append(f"unknown stage {record.stage!r}")
    elif spec.version != record.code_version:
        problems.append(
            f"made by an older version of the stage (code version {record.code_version}, "
            f"now {spec.version})"
        )
    current_inputs = {name: file_identity(namer.path(name), cache) for name in record.inputs}
    problems += _changed_entries(record.inputs, current_inputs, "input")
    current_outputs = {name: file_identity(namer.path(name), cache) for name in record.outputs}
    for name in sorted(record.outputs):
        if current_outputs[name] == MISSING:
            problems.append(f"output {name} was deleted")
        elif current_outputs[name] != record.outputs[name]:
            problems.append(f"output {name} was modified after the stage wrote it")
    for up_label, up_key in sorted(record.upstream.items()):
        up_id = StageId.from_label(up_label)
        upstream = read_record(up_id.record_path(derivatives))
        if upstream is None:
            problems.append(f"upstream {up_label} is missing")
        elif upstream.key != up_key:
            problems.append(f"upstream {up_label} was recomputed")
        else:
            up_problems = record_problems(upstream, derivatives, namer, cache, memo)
            if up_problems:
                problems.append(f"upstream {up_label} is stale ({up_problems[0]})")
    memo[label] = problems
    return problems
