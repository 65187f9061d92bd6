"""The REST endpoint's adapters served from onnxruntime once their ONNX export is made.

The first request for an adapter is answered by PyTorch and starts the adapter's export (`adapterlab export`,
engine/export.py, checked against torch before it is kept) in a process of its own: one export at a time, with
one thread and at low priority, so the server keeps answering. Requests after it has finished run in
onnxruntime, whose one-sentence forward takes a fraction of PyTorch's (docs/benchmarks.md, REST endpoint).
Exports live in a folder of this server's, removed when it exits, the `KEEP` most recently asked for (about 90 MB
each for the bundled model; one asked for again after that is exported again); a retried job's new weights are
exported again. An export that fails is logged and that adapter stays on PyTorch. `ADAPTERLAB_SERVE_ONNX=0` keeps every
adapter on PyTorch.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

ENV = "ADAPTERLAB_SERVE_ONNX"
KEEP = 8  # exports kept on disk: twice the sessions the Predictor holds
log = logging.getLogger("adapterlab.serving")


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


@dataclass
class _Running:
    key: str
    process: subprocess.Popen
    folder: Path  # the export's own: `export/` and the process's `errors.log`

    @property
    def output(self) -> Path:
        return self.folder / "export"


@dataclass
class OnnxExports:
    """Each adapter version's export folder, made in the background on first `ready`; call with the services lock
    held (one caller at a time)."""

    made: OrderedDict[str, Path | None] = field(default_factory=OrderedDict)  # version -> export (None: failed)
    waiting: list[tuple[str, str]] = field(default_factory=list)  # (version, adapter folder) not started yet
    running: _Running | None = None
    _root: tempfile.TemporaryDirectory | None = None

    def ready(self, version: str, folder: str, start: bool = True) -> Path | None:
        """The export of the adapter at `folder` (`version` names its weights) when made; until then None, and
        (with `start`) its export started or queued."""
        self._collect()
        if version in self.made:
            self.made.move_to_end(version)
            return self.made[version]
        started = self.running is not None and self.running.key == version
        if start and not started and all(key != version for key, _ in self.waiting):
            self.waiting.append((version, folder))
            self._start_next()
        return None

    def _collect(self) -> None:
        """Note a finished export (made or failed) and start the next."""
        done = self.running
        if done is None or done.process.poll() is None:
            return
        self.running = None
        if done.process.returncode == 0 and (done.output / "model.onnx").is_file():
            self.made[done.key] = done.output
            log.info("serving %s from onnxruntime (%s)", done.key, done.output)
            self._prune()
        else:
            self.made[done.key] = None
            errors = done.folder / "errors.log"
            why = errors.read_text(errors="replace").strip().splitlines()[-1:] if errors.is_file() else []
            log.warning("the ONNX export of %s failed, so it stays on PyTorch: %s", done.key,
                        why[0] if why else f"exit {done.process.returncode}")
            shutil.rmtree(done.folder, ignore_errors=True)
        self._start_next()

    def _prune(self) -> None:
        """Remove the exports asked for least recently beyond `KEEP` (failures are remembered, they hold no file)."""
        kept = [key for key, folder in self.made.items() if folder is not None]
        for key in kept[: max(0, len(kept) - KEEP)]:
            shutil.rmtree(self.made.pop(key).parent, ignore_errors=True)

    def _start_next(self) -> None:
        if self.running is not None or not self.waiting:
            return
        version, folder = self.waiting.pop(0)
        if self._root is None:
            self._root = tempfile.TemporaryDirectory(prefix="adapterlab-onnx-")
            atexit.register(self.close)
        where = Path(tempfile.mkdtemp(dir=self._root.name))
        command = [sys.executable, "-m", "app.cli", "export", "--adapter", folder, "--format", "onnx",
                   "--output", str(where / "export"), "--json"]
        nice = shutil.which("nice")
        with (where / "errors.log").open("wb") as errors:
            process = subprocess.Popen([nice, "-n", "10", *command] if nice else command, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=errors,
                                       env={**os.environ, "OMP_NUM_THREADS": "1"})
        threading.Thread(target=process.wait, daemon=True).start()  # reaped when it ends, not at the next request
        self.running = _Running(version, process, where)
        log.info("exporting %s to ONNX for serving", version)

    def close(self) -> None:
        """Stop a running export and remove every export (the server is stopping)."""
        if self.running is not None:
            self.running.process.terminate()
            try:
                self.running.process.wait(10)
            except subprocess.TimeoutExpired:
                self.running.process.kill()
                self.running.process.wait()
            self.running = None
        self.waiting.clear()
        self.made.clear()
        if self._root is not None:
            self._root.cleanup()
            self._root = None
