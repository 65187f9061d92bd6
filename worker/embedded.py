"""A worker started by the web app itself, so that `adapterlab serve` alone runs jobs (one command, no setup)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from worker import settings


def start_embedded_worker(gpu: int | None = None) -> subprocess.Popen:
    """Start a worker (`python -m worker`, the same as `adapterlab worker`) as a child process logging to
    `worker.log` in the data directory.

    The child gets the caller's environment (data directory, database, Redis) and stops by itself if the app
    dies without stopping it.
    """
    command = [sys.executable, "-m", "worker", "--exit-with-parent", str(os.getpid())]
    if gpu is not None:
        command += ["--gpu", str(gpu)]
    with (settings.data_dir() / "worker.log").open("ab") as log:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop_embedded_worker(process: subprocess.Popen, timeout: float = 90) -> int:
    """Stop the worker: its running job stops at the next step and is re-queued. Killed if it does not exit."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
