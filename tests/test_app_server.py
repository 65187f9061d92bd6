"""`adapterlab serve` as a real subprocess, shared by the API and browser tests; and tests of the command itself.

One server (with its embedded worker, a temp ADAPTERLAB_HOME and a tiny base model) is started on first use and
stopped when the session's fixtures are torn down.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import NEGATIVE, POSITIVE, ROOT, make_tiny_model, write_csv

START_TIMEOUT = 180
JOB_TIMEOUT = 300


@dataclass
class ServedApp:
    url: str
    home: Path
    tiny_model: Path
    sentiment_csv: Path
    process: subprocess.Popen
    log: Path


_server: ServedApp | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(home: Path) -> dict[str, str]:
    env = dict(os.environ, ADAPTERLAB_HOME=str(home), GRADIO_TEMP_DIR=str(home / "gradio-tmp"),
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               GRADIO_ANALYTICS_ENABLED="False", ADAPTERLAB_DATASETS=str(home / "datasets"))
    for name in ("ADAPTERLAB_USERNAME", "ADAPTERLAB_PASSWORD", "ADAPTERLAB_DATABASE_URL", "ADAPTERLAB_REDIS_URL"):
        env.pop(name, None)
    return env


MAX_UPLOAD_MB = 3  # the test server's upload limit: far above the tests' tables, below the one that must be refused


def _spawn(home: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """Start `adapterlab serve` on a free port and wait until the page answers."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--max-upload-mb",
                                str(MAX_UPLOAD_MB)], cwd=ROOT,
                               env=server_env(home), stdout=log.open("ab"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"adapterlab serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"adapterlab serve did not answer within {START_TIMEOUT} s:\n{log.read_text()}")


def start_server(root: Path) -> ServedApp:
    """A data directory with a datasets folder, a tiny base model, a reviews CSV, and a server on them."""
    home = root / "home"
    (home / "datasets").mkdir(parents=True)
    tiny = make_tiny_model(root / "tiny-bert")
    rows = [{"review": t, "sentiment": "pos"} for t in POSITIVE * 3] + \
           [{"review": t, "sentiment": "neg"} for t in NEGATIVE * 3]
    sentiment = write_csv(root / "reviews.csv", rows)
    write_csv(home / "datasets" / "reviews-on-server.csv", rows)
    log = root / "serve.log"
    process, url = _spawn(home, log)
    return ServedApp(url, home, tiny, sentiment, process, log)


def shared_server(tmp_path_factory: pytest.TempPathFactory) -> ServedApp:
    global _server
    if _server is None or _server.process.poll() is not None:
        _server = start_server(tmp_path_factory.mktemp("served-app"))
    return _server


def _stop(process: subprocess.Popen) -> int:
    """Stop the server like Ctrl+C would; it must stop its embedded worker too."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def stop_shared_server() -> None:
    global _server
    if _server is not None:
        _stop(_server.process)
        _server = None


def restart_shared_server() -> ServedApp:
    """Stop the shared server and start a new one on the same data directory (and a new port)."""
    assert _server is not None
    assert _stop(_server.process) == 0
    _server.process, _server.url = _spawn(_server.home, _server.log)
    return _server


def wait_for_job(status, job_id: str, timeout: float = JOB_TIMEOUT) -> dict:
    """Poll `status(job_id)` until the job reaches a final state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = status(job_id)
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(1)
    raise AssertionError(f"job {job_id} did not finish within {timeout} s: {job}")


def test_serve_help_names_the_flags():
    out = subprocess.run([sys.executable, "-m", "app.cli", "serve", "--help"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    for flag in ("--host", "--port", "--no-worker", "--max-upload-mb"):
        assert flag in out


def test_login_upload_limit_no_worker_and_busy_port(tmp_path):
    """With ADAPTERLAB_USERNAME/PASSWORD the app asks for a login; --max-upload-mb caps uploads; --no-worker starts
    no worker; a second server on the same port gets a one-line error; SIGTERM stops the server cleanly."""
    from gradio_client import Client, handle_file

    port = free_port()
    env = dict(server_env(tmp_path), ADAPTERLAB_USERNAME="ana", ADAPTERLAB_PASSWORD="s3cret")
    command = [sys.executable, "-m", "app.cli", "serve", "--no-worker", "--port", str(port), "--max-upload-mb", "1"]
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert httpx.get(f"{url}config").status_code == 401
        client = Client(url, auth=("ana", "s3cret"), verbose=False)
        assert client.predict(api_name="/list_adapters") == []
        assert httpx.get(f"{url}v1/adapters").status_code == 401  # the REST endpoint asks for the same login
        assert httpx.get(f"{url}v1/adapters", auth=("ana", "wrong")).status_code == 401
        assert httpx.get(f"{url}v1/adapters", auth=("ana", "s3cret")).json() == []
        big = tmp_path / "big.csv"
        big.write_text("text,label\n" + "a long enough line of text,x\n" * 50_000)
        with pytest.raises(ValueError, match="maximum file size"):
            client.predict(data_file=handle_file(str(big)), text_column="text", label_column="label", method="ia3",
                           api_name="/submit_job")
        assert not (tmp_path / "worker.log").exists()
        second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=START_TIMEOUT)
        assert second.returncode == 2
        assert "--port" in second.stderr and "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(60) == 0

