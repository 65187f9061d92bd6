"""`adapterlab serve` refuses to serve other machines without a login unless asked to, speaks of `docker run`
options in a container, and says how to fix a data directory it cannot write, all before it listens."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app import security
from app.cli import build_parser
from tests.conftest import ROOT
from tests.test_app_server import START_TIMEOUT, free_port, server_env

NOBODY = 65534
# Runs the command line as an unprivileged user when the tests run as root (root writes anywhere). The modules,
# argparse's lazy ones too, are imported first: that user may not be allowed to read the interpreter's own files.
AS_NOBODY = f"""
import os, sys
import app.cli, app.cli_jobs, app.cli_serve, worker.settings
app.cli.build_parser().parse_args(sys.argv[1:])
if os.geteuid() == 0:
    os.setgroups([])
    os.setgid({NOBODY})
    os.setuid({NOBODY})
sys.exit(app.cli.main(sys.argv[1:]))
"""


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = server_env(home)
    for name in ("ADAPTERLAB_ALLOW_ANONYMOUS", "ADAPTERLAB_CONTAINER", "ADAPTERLAB_HOST", "ADAPTERLAB_PORT"):
        env.pop(name, None)
    return {**env, **extra}


def _serve(*args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli", "serve", *args]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_refusal_and_warning_messages():
    assert security.exposure_refusal("127.0.0.1", None) is None
    assert security.exposure_refusal("::1", None) is None
    assert security.exposure_refusal("0.0.0.0", ("ana", "secret")) is None
    assert "--allow-anonymous" in security.exposure_refusal("192.168.1.5", None)
    in_container = security.exposure_refusal("0.0.0.0", None, 8080, container=True)
    assert "-p 127.0.0.1:8080:8080" in in_container and "-e ADAPTERLAB_ALLOW_ANONYMOUS=1" in in_container
    assert security.exposure_warning("0.0.0.0", None).startswith("warning: ")
    note = security.exposure_warning("0.0.0.0", None, 7860, container=True)
    assert note.startswith("note: ") and "127.0.0.1:7860:7860" in note and "other machines" not in note


def test_allow_anonymous_flag_and_its_environment_twin(monkeypatch):
    monkeypatch.delenv("ADAPTERLAB_ALLOW_ANONYMOUS", raising=False)
    assert not build_parser().parse_args(["serve"]).allow_anonymous
    assert build_parser().parse_args(["serve", "--allow-anonymous"]).allow_anonymous
    monkeypatch.setenv("ADAPTERLAB_ALLOW_ANONYMOUS", "1")
    assert build_parser().parse_args(["serve"]).allow_anonymous
    monkeypatch.setenv("ADAPTERLAB_ALLOW_ANONYMOUS", "0")
    assert not build_parser().parse_args(["serve"]).allow_anonymous


@pytest.mark.parametrize("container", [False, True])
def test_non_loopback_without_a_login_refuses_to_start(tmp_path, container):
    port = free_port()
    env = _env(tmp_path, ADAPTERLAB_CONTAINER="1") if container else _env(tmp_path)
    done = subprocess.run(_serve("--host", "0.0.0.0", "--port", str(port)), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("adapterlab: config error: ") and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr and "ADAPTERLAB_USERNAME" in done.stderr
    if container:
        assert f"-p 127.0.0.1:{port}:{port}" in done.stderr and "-e ADAPTERLAB_ALLOW_ANONYMOUS=1" in done.stderr
    else:
        assert "--allow-anonymous" in done.stderr
    assert not _listening(port) and not (tmp_path / "worker.log").exists()


def _start_and_stop(command: list[str], env: dict[str, str], port: int) -> str:
    """Start the server, wait until its page answers, stop it with SIGTERM; its output."""
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"serve did not answer (exit status {process.poll()}):\n{process.stdout.read()}")
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return output


@pytest.mark.parametrize("case", ["allow-anonymous", "container", "login"])
def test_non_loopback_starts_when_asked_or_with_a_login(tmp_path, case):
    port = free_port()
    command = _serve("--host", "0.0.0.0", "--port", str(port), "--no-worker")
    if case == "allow-anonymous":
        output = _start_and_stop([*command, "--allow-anonymous"], _env(tmp_path), port)
        assert "warning: AdapterLab is listening on 0.0.0.0, reachable from other machines" in output
    elif case == "container":
        env = _env(tmp_path, ADAPTERLAB_CONTAINER="1", ADAPTERLAB_ALLOW_ANONYMOUS="1")
        output = _start_and_stop(command, env, port)
        assert f"note: no login is set (ADAPTERLAB_ALLOW_ANONYMOUS): publish this container's port on this machine " \
               f"only, e.g. docker run -p 127.0.0.1:{port}:{port}" in output
        assert "warning" not in output
    else:
        env = _env(tmp_path, ADAPTERLAB_USERNAME="ana", ADAPTERLAB_PASSWORD="s3cret")
        output = _start_and_stop(command, env, port)
        assert "warning" not in output and "note:" not in output
    assert "AdapterLab is running on" in output


@pytest.mark.parametrize("command, container, missing", [
    (["serve"], False, False),
    (["serve"], True, False),
    (["serve", "--no-worker"], False, True),
    (["worker"], True, False),
])
def test_unwritable_data_directory_says_how_to_fix_it(tmp_path, command, container, missing):
    """As a user who cannot write the data directory (root-owned, like a bind mount Docker created), or create it,
    `serve` and `worker` stop with the folder, the uid and the fixes, before starting anything."""
    locked = tmp_path / "data"
    locked.mkdir()
    home = locked / "home" if missing else locked
    locked.chmod(0o555)
    uid = NOBODY if os.geteuid() == 0 else os.getuid()
    env = _env(tmp_path, ADAPTERLAB_HOME=str(home), PYTHONDONTWRITEBYTECODE="1",
               **({"ADAPTERLAB_CONTAINER": "1"} if container else {}))
    try:
        done = subprocess.run([sys.executable, "-c", AS_NOBODY, *command], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)
    finally:
        locked.chmod(0o755)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("adapterlab: config error: ") and "Traceback" not in done.stderr
    assert f"data directory {home} as uid {uid}" in done.stderr
    assert f"sudo chown -R {uid}:{uid} " in done.stderr
    assert ("-v adapterlab-data:" in done.stderr) == container
    assert not (home / "worker.log").exists()
