"""Process guards: a job process that does not outlive its parent, and the identity of a process.

A local job's command runs as a child of the engine worker that launched it
(:mod:`cortexgraph.execution.runjob`). Should that worker die (the engine is killed, its machine runs
out of memory), the command must not run on unobserved, holding a stage lock and writing outputs
nobody will record. On Linux the kernel sends a chosen signal to a process when its parent dies
(``prctl(PR_SET_PDEATHSIG)``); :func:`parent_death_preexec` gives the ``preexec_fn`` of
``subprocess.Popen`` that asks for SIGTERM, which the command turns into a clean exit (every output
being written is a temporary file that is removed, the stage lock is released). Elsewhere the guard is
not available and :func:`pdeathsig_supported` is False.

The signal is tied to the *thread* that started the child: the launching thread must live as long as
the child (``runjob`` waits for its command in the thread that started it).

Process identity (:func:`process_identity`, :func:`same_process`): host, boot id, pid and the start
time in clock ticks after boot (``/proc/<pid>/stat``), so that a recycled pid is never taken for the
process it replaced (the engine's ``cortexgraph engine stop`` signals only its own service).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from cortexgraph.derivatives.lock import pid_alive

__all__ = [
    "PR_SET_PDEATHSIG",
    "pdeathsig_supported",
    "set_parent_death_signal",
    "parent_death_preexec",
    "boot_id",
    "start_ticks",
    "pid_alive",
    "process_identity",
    "same_process",
]

#: ``linux/prctl.h``
PR_SET_PDEATHSIG = 1


def _load_prctl():
    """libc's ``prctl``, resolved once in the parent (a forked child must not dlopen)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()


def pdeathsig_supported() -> bool:
    """True on Linux, where :func:`set_parent_death_signal` works."""
    return _PRCTL is not None


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when the thread that started it ends.
    Returns False where it is not supported (not Linux) or the call failed."""
    if _PRCTL is None:
        return False
    return _PRCTL(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def parent_death_preexec(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen`` giving the child :func:`set_parent_death_signal`
    (None where unsupported: pass it as is). If the parent has already died between the fork and
    the call, the child signals itself at once instead of running orphaned."""
    if _PRCTL is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        _PRCTL(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return preexec


# --------------------------------------------------------------------------------------------------
# process identity


def boot_id() -> str:
    """The kernel's boot id ('' where there is none): a pid means nothing across a restart."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks after boot (field 22 of ``/proc/<pid>/stat``);
    None when there is no such process."""
    try:
        text = Path(f"/proc/{int(pid)}/stat").read_text()
        return int(text.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def process_identity(pid: int | None = None) -> dict:
    """``{"host", "boot_id", "pid", "start_ticks"}`` of process ``pid`` (default: this one)."""
    pid = os.getpid() if pid is None else int(pid)
    return {"host": socket.gethostname(), "boot_id": boot_id(), "pid": pid,
            "start_ticks": start_ticks(pid)}  # fmt: skip


def same_process(identity: dict) -> bool:
    """True while the process of ``identity`` (:func:`process_identity`) still runs on this machine:
    same host and boot, alive, and started at the recorded time (so not a recycled pid)."""
    pid = identity.get("pid")
    if not isinstance(pid, int) or pid <= 1:
        return False
    if identity.get("host") != socket.gethostname() or identity.get("boot_id") != boot_id():
        return False
    return pid_alive(pid) and start_ticks(pid) == identity.get("start_ticks")
