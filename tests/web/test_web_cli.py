"""``cortexgraph serve``: refuses a folder that is not a cohort; on a network address it makes a token,
prints it, and every request needs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
from typer.testing import CliRunner

from cortexgraph.cli.main import app
from tests.web.conftest import free_port


def test_serve_refuses_a_folder_without_cohort(tmp_path):
    result = CliRunner().invoke(app, ["serve", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert "cohort.toml" in result.output


def test_serve_on_a_network_address_needs_the_printed_token(web_cohort):
    port = free_port()
    command = [sys.executable, "-m", "cortexgraph.cli.main", "serve", "--root", str(web_cohort),
               "--host", "0.0.0.0", "--port", str(port)]  # fmt: skip
    env = dict(os.environ, COLUMNS="200")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=env, start_new_session=True)  # fmt: skip
    try:
        token = None
        deadline = time.monotonic() + 60
        while token is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                raise AssertionError("serve exited early")
            if "access token:" in line:
                token = line.split("access token:")[1].strip()
        assert token and len(token) >= 32
        url = f"http://127.0.0.1:{port}/api/cohort"
        for _ in range(100):
            try:
                refused = httpx.get(url)
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        assert refused.status_code == 401
        allowed = httpx.get(url, headers={"X-Cortexgraph-Token": token})
        assert allowed.status_code == 200 and allowed.json()["brains"] == ["B01", "B03", "B07"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
