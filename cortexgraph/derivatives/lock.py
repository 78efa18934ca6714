"""Stage locks that work on network file systems.

A lock is a file created with ``O_CREAT | O_EXCL`` (atomic on local file systems and on NFSv3+,
Lustre and GPFS, unlike ``flock``/``fcntl`` which several network file systems do not honour). It
holds JSON: host, pid, start time, the command line and a random token. While the lock is held a
background thread refreshes the file's modification time every :data:`HEARTBEAT_S` seconds.

Stale locks:

* on the **same host**, a lock whose process no longer exists is stale; it is removed with a warning
  and the lock is taken;
* on **another host** the process cannot be checked: a lock whose heartbeat is older than
  :data:`STALE_AFTER_S` is reported as stale and removed with a warning; a younger one is busy.

A second run of the same stage waits up to ``wait_s`` seconds for the lock, then refuses with
:class:`~cortexgraph.errors.StageBusyError` naming the holder and the lock file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

from cortexgraph.errors import ParameterError, StageBusyError

__all__ = ["HEARTBEAT_S", "STALE_AFTER_S", "StageLock", "read_lock", "lock_is_held"]

log = logging.getLogger(__name__)

HEARTBEAT_S = 30.0
STALE_AFTER_S = 1800.0


def pid_alive(pid: int | None) -> bool:
    """True when process ``pid`` exists on this host and is not a zombie (a finished child not yet
    reaped, which this reaps)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
    except (OSError, IndexError):
        pass
    return True


def read_lock(path: Path) -> dict | None:
    """The holder of a lock file (None when absent; ``{}`` when unreadable or being written)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        data = json.loads(text)
        return data if isinstance(data, dict) else {}
    except ValueError:
        return {}


def _stale_reason(path: Path, holder: dict) -> str | None:
    """Why the lock at ``path`` is stale, or None when it may be held."""
    try:
        age_s = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return "gone"
    if not holder:  # being written right now, or garbage left by a crash mid-write
        return "unreadable lock file" if age_s > 60 else None
    if holder.get("host") == socket.gethostname():
        if not pid_alive(int(holder.get("pid", 0))):
            return f"process {holder.get('pid')} on this host has ended"
        return None
    if age_s > STALE_AFTER_S:
        return f"no heartbeat from host {holder.get('host')} for {age_s / 60:.0f} min"
    return None


def lock_is_held(path: Path) -> dict | None:
    """The holder of a live lock at ``path``; None when there is no lock or it is stale."""
    holder = read_lock(path)
    if holder is None or _stale_reason(Path(path), holder) is not None:
        return None
    return holder


#: the longest wait for a lock (--wait), seconds: a week, as ``lsm`` allows
MAX_WAIT_S = 7 * 86400.0


def check_wait_s(wait_s: object) -> float:
    """``wait_s`` as float when it is a number of seconds in 0..:data:`MAX_WAIT_S`; else
    ParameterError (a NaN used to wait for ever and a negative number like 0)."""
    if isinstance(wait_s, int | float) and not isinstance(wait_s, bool):
        value = float(wait_s)
        if math.isfinite(value) and 0.0 <= value <= MAX_WAIT_S:
            return value
    raise ParameterError(
        f"--wait {wait_s!r}: not a number of seconds in 0..{MAX_WAIT_S:.0f}",
        fix="give --wait SECONDS with 0 <= SECONDS <= 604800 (0: refuse at once when another "
        "process runs the stage)",
    )


class StageLock:
    """An exclusive lock file (module docstring). Use as a context manager or acquire/release."""

    def __init__(self, path: Path, label: str, wait_s: float = 0.0, poll_s: float = 0.5) -> None:
        self.path = Path(path)
        self.label = label
        self.wait_s = check_wait_s(wait_s)
        self.poll_s = float(poll_s)
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.held = False

    def _try_create(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        holder = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_unix": round(time.time(), 3),
            "command": " ".join(sys.argv),
            "token": self.token,
        }
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(holder, handle)
        return True

    def _break_stale(self, reason: str) -> None:
        """Move a stale lock aside (rename is atomic: of two processes breaking it, one wins)."""
        aside = self.path.with_name(f"{self.path.name}.stale-{self.token}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        log.warning("removed the stale lock %s of %s (%s)", self.path, self.label, reason)
        with contextlib.suppress(FileNotFoundError):
            aside.unlink()

    def acquire(self) -> StageLock:
        deadline = time.monotonic() + self.wait_s
        announced = False
        while True:
            if self._try_create():
                self.held = True
                self._thread = threading.Thread(target=self._heartbeat, daemon=True)
                self._thread.start()
                return self
            holder = read_lock(self.path)
            if holder is None:
                continue  # released between our attempt and the read
            reason = _stale_reason(self.path, holder)
            if reason is not None and reason != "gone":
                self._break_stale(reason)
                continue
            if time.monotonic() >= deadline:
                raise StageBusyError(
                    f"{self.label} is running already (host {holder.get('host', '?')}, pid "
                    f"{holder.get('pid', '?')}, since "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(holder.get('started_unix', 0)))}"
                    f", command: {holder.get('command', '?')})",
                    file=str(self.path),
                    fix="wait for it to finish (or pass --wait SECONDS); if that process is gone "
                    "and the lock stayed behind, delete the lock file",
                )
            if not announced:
                log.info("%s is locked by pid %s; waiting", self.label, holder.get("pid"))
                announced = True
            time.sleep(self.poll_s)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        if not self.held:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        holder = read_lock(self.path)
        if holder is not None and holder.get("token") == self.token:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self.held = False

    def __enter__(self) -> StageLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
