"""The Docker image as a user builds and runs it: the documented commands, and, where a Docker engine answers, a
real CPU build whose command line runs and whose `serve` explains what it needs (a login, a writable /data)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

IMAGE = "adapterlab:test-cpu"
CPU_TORCH = "https://download.pytorch.org/whl/cpu"
BUILD_TIMEOUT = 3600
RUN_TIMEOUT = 120


def _documented_commands() -> list[str]:
    """Every `docker ...` command in the Dockerfile's header and docs/webapp.md, continuation lines joined."""
    header = "\n".join(line.lstrip("# ") for line in (ROOT / "Dockerfile").read_text().splitlines()
                       if line.startswith("#"))
    text = (header + "\n" + (ROOT / "docs" / "webapp.md").read_text()).replace("\\\n", " ")
    return [re.sub(r"\s+#.*$|\s+", " ", line).strip() for line in text.splitlines() if line.startswith("docker ")]


def test_documented_serve_commands_start():
    """A container listens on 0.0.0.0, so `serve` refuses to start without a login or the explicit setting; every
    documented `docker run` of the web app must carry one of them, and CPU-only machines get a line that works."""
    runs = [c for c in _documented_commands() if c.startswith("docker run") and not c.endswith(" worker")]
    assert runs
    for command in runs:
        assert "-e ADAPTERLAB_ALLOW_ANONYMOUS=1" in command or "-e ADAPTERLAB_USERNAME=" in command, command
        if "ADAPTERLAB_USERNAME" not in command:
            assert "-p 127.0.0.1:" in command, command
    cpu_builds = [c for c in _documented_commands() if c.startswith("docker build -t adapterlab:cpu ")]
    assert cpu_builds and all(CPU_TORCH in c for c in cpu_builds)
    assert any("--gpus" not in c and c.endswith(" adapterlab:cpu") for c in runs)


def test_dockerfile_layers_and_index():
    """Dependencies install before the code is copied (a code change reuses their layer); pip's own index, or the
    user's mirror, is not overridden; the image tells the app that it runs in a container."""
    text = (ROOT / "Dockerfile").read_text()
    assert text.index("pip install -r") < text.index("COPY app app") < text.index("pip install --no-deps .")
    assert "pypi.org/simple" not in text and "ARG PIP_INDEX_URL" in text
    assert "ADAPTERLAB_CONTAINER=1" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"build", "*.egg-info", ".venvs", "tests"} <= set(ignored)


def _engine_missing() -> str | None:
    """Why the image cannot be built here, or None when a Docker engine answers."""
    if shutil.which("docker") is None:
        return "docker is not installed"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        last = (info.stderr.strip().splitlines() or ["no output"])[-1]
        return f"docker is installed but no Docker engine answers (`docker info` failed: {last})"
    return None


@pytest.fixture(scope="module")
def image() -> str:
    """The documented CPU build; a pip mirror set in the environment is passed on to it."""
    reason = _engine_missing()
    if reason:
        pytest.skip(reason)
    mirror = [arg for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST") if name in os.environ
              for arg in ("--build-arg", name)]
    build = subprocess.run(["docker", "build", "-t", IMAGE, "--build-arg", f"TORCH_INDEX_URL={CPU_TORCH}", *mirror,
                            str(ROOT)], capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    return IMAGE


def _docker_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "run", "--rm", *args], capture_output=True, text=True, timeout=RUN_TIMEOUT)


def test_image_runs_the_command_line(image):
    done = _docker_run(image, "--help")
    assert done.returncode == 0, done.stderr
    assert "serve" in done.stdout and "worker" in done.stdout


def test_image_has_no_build_leftovers(image):
    done = _docker_run("--entrypoint", "sh", image, "-c", "ls -A /opt/adapterlab")
    assert done.returncode == 0, done.stderr
    assert "build" not in done.stdout.split() and ".egg-info" not in done.stdout


def test_image_refuses_to_serve_anonymously_by_default(image):
    done = _docker_run(image)
    assert done.returncode == 2, done.stderr
    assert "-p 127.0.0.1:7860:7860 -e ADAPTERLAB_ALLOW_ANONYMOUS=1" in done.stderr
    assert "Traceback" not in done.stderr


def test_image_explains_an_unwritable_bind_mount(image, tmp_path):
    """A host folder the container's user cannot write (as one Docker creates for -v, owned by root)."""
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o555)
    try:
        done = _docker_run("-e", "ADAPTERLAB_ALLOW_ANONYMOUS=1", "-v", f"{data}:/data", image)
    finally:
        data.chmod(0o755)
    assert done.returncode == 2, done.stderr
    assert "data directory /data as uid 1000" in done.stderr
    assert "sudo chown -R 1000:1000 HOSTDIR" in done.stderr and "-v adapterlab-data:/data" in done.stderr
    assert "Traceback" not in done.stderr
