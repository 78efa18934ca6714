"""Process guards: a child started with the parent-death signal gets SIGTERM when its parent is killed
(real processes), and process identities tell a live process from a recycled pid."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from cortexgraph.execution.guard import (
    pdeathsig_supported,
    pid_alive,
    process_identity,
    same_process,
    start_ticks,
)

#: the parent: starts the child with the guard, prints the child's pid, then sleeps
PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    from cortexgraph.execution.guard import parent_death_preexec
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]],
                             preexec_fn=parent_death_preexec(), start_new_session=True)
    print(child.pid, flush=True)
    time.sleep(120)
    """
)
#: the child: on SIGTERM writes a file and exits (as the CLI unwinds and removes temporary files)
CHILD = textwrap.dedent(
    """
    import signal, sys, time
    def stop(signum, frame):
        open(sys.argv[1], "w").write(f"signal {signum}")
        sys.exit(143)
    signal.signal(signal.SIGTERM, stop)
    time.sleep(120)
    """
)


@pytest.mark.skipif(not pdeathsig_supported(), reason="PR_SET_PDEATHSIG is Linux-only")
def test_a_guarded_child_gets_sigterm_when_its_parent_is_killed(tmp_path):
    marker = tmp_path / "terminated.txt"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD, str(marker)],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    child_pid = int(parent.stdout.readline())
    try:
        time.sleep(1.0)  # the child has installed its handler
        assert pid_alive(child_pid) and not marker.exists()
        parent.kill()  # SIGKILL: the parent cannot pass anything on itself
        parent.wait()
        deadline = time.monotonic() + 10
        while pid_alive(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(child_pid), "the child outlived its parent"
        assert marker.read_text() == "signal 15"  # SIGTERM, handled: a clean exit
    finally:
        if pid_alive(child_pid):
            os.kill(child_pid, 9)


def test_process_identity_refuses_recycled_pids():
    me = process_identity()
    assert me["pid"] == os.getpid() and me["start_ticks"] == start_ticks(os.getpid())
    assert same_process(me)
    assert not same_process(me | {"start_ticks": (me["start_ticks"] or 0) + 1})  # another start
    assert not same_process(me | {"boot_id": "another-boot"})
    assert not same_process(me | {"host": "another-host"})
    assert not same_process({"pid": 999_999_999})
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    identity = process_identity(sleeper.pid)
    assert same_process(identity)
    sleeper.kill()
    sleeper.wait()
    assert not same_process(identity) and not pid_alive(sleeper.pid)
