"""The identity of a file: what a stage record remembers of each input and output.

The rule (cheap at the sizes of the published data sets, where one brain holds terabytes of section images):

* **Files up to** :data:`SMALL_FILE_BYTES` **(64 MiB)**: ``sha256:<hex>``, the SHA-256 of the content.
  Manifests, tables, tissue masks, annotations, transforms, meshes, graphs and models are in this class,
  so their identity follows the content: a copy of a cohort (``cp -r``, ``rsync``) keeps every key, and
  an edit that restores the old content restores the old key. Digests are cached per file under the
  file's ``(size, mtime_ns, ctime_ns, inode, device)``; the cache lives in
  ``<cohort>/derivatives/cortexgraph/.cache/identity.json``, so an unchanged file is hashed once.
  ``ctime`` cannot be set by user tools, so an in-place edit that restores size and modification time
  still changes the stat key and forces a new hash.
* **Larger files** (section images of 1-2 µm/px, volumes): ``stat:<size>:<mtime_ns>:<sha256 of the
  first and last MiB>``. Reading them whole would cost minutes per file. Size and modification time
  catch every write through a normal program (HDF5 edits in place change the modification time); the
  head and tail digest catches a different file of the same size copied in with its timestamps. A copy
  that does not preserve modification times (``cp`` without ``-p``) changes the identity of large
  files, and stages depending on them recompute once; ``cp -a`` and ``rsync -a`` preserve them.

:func:`file_identity` returns ``missing`` for a path that does not exist, so a deleted input is a
change like any other.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from pathlib import Path

__all__ = ["SMALL_FILE_BYTES", "MISSING", "IdentityCache", "file_identity"]

SMALL_FILE_BYTES = 64 << 20
HEAD_TAIL_BYTES = 1 << 20
MISSING = "missing"
_CACHE_VERSION = 1


def _stat_key(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_dev}"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _head_tail_sha256(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(HEAD_TAIL_BYTES))
        handle.seek(max(size - HEAD_TAIL_BYTES, 0))
        digest.update(handle.read(HEAD_TAIL_BYTES))
    return digest.hexdigest()[:32]


class IdentityCache:
    """Content digests of small files, keyed by path and stat key; optionally kept in a JSON file.

    One instance per process and cohort (:meth:`for_folder`). :meth:`save` merges the entries with
    what other processes wrote meanwhile and replaces the file atomically; a lost entry only costs
    one more hash.
    """

    _instances: dict[str, IdentityCache] = {}
    _guard = threading.Lock()

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._entries: dict[str, tuple[str, str]] = {}
        self._dirty = False
        self._loaded = path is None

    @classmethod
    def for_folder(cls, derivatives: Path) -> IdentityCache:
        """The process-wide cache of one derivatives folder."""
        path = Path(derivatives) / ".cache" / "identity.json"
        key = str(path)
        with cls._guard:
            if key not in cls._instances:
                cls._instances[key] = cls(path)
            return cls._instances[key]

    def _read_file(self) -> dict[str, tuple[str, str]]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION:
            return {}
        entries = data.get("entries", {})
        return {
            k: (v[0], v[1])
            for k, v in entries.items()
            if isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v)
        }

    def _load(self) -> None:
        if not self._loaded:
            self._entries = {**self._read_file(), **self._entries}
            self._loaded = True

    def get(self, path: Path, stat_key: str) -> str | None:
        self._load()
        entry = self._entries.get(str(path))
        return entry[1] if entry is not None and entry[0] == stat_key else None

    def put(self, path: Path, stat_key: str, digest: str) -> None:
        self._load()
        self._entries[str(path)] = (stat_key, digest)
        self._dirty = True

    def save(self) -> None:
        """Merge with the file's current entries and write it atomically (no-op when clean)."""
        if self.path is None or not self._dirty:
            return
        from cortexgraph.outputs import write_text_atomic

        merged = {**self._read_file(), **self._entries}
        with contextlib.suppress(OSError):
            write_text_atomic(
                self.path,
                json.dumps({"version": _CACHE_VERSION, "entries": merged}, separators=(",", ":")),
            )
            self._dirty = False


def file_identity(path: str | os.PathLike, cache: IdentityCache | None = None) -> str:
    """The identity of ``path`` (module docstring): ``sha256:...``, ``stat:...`` or ``missing``.

    Symbolic links are followed; a folder is refused (stages list the files they read).
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return MISSING
    if not path.is_file():
        raise IsADirectoryError(f"{path} is not a regular file")
    if st.st_size > SMALL_FILE_BYTES:
        return f"stat:{st.st_size}:{st.st_mtime_ns}:{_head_tail_sha256(path, st.st_size)}"
    stat_key = _stat_key(st)
    resolved = path.resolve()
    if cache is not None:
        cached = cache.get(resolved, stat_key)
        if cached is not None:
            return cached
    digest = "sha256:" + _sha256_file(path)
    if cache is not None:
        cache.put(resolved, stat_key, digest)
    return digest
