"""The server's ONNX exports for serving (app/onnx_serving.py): one at a time in a process of their own, a
failed one remembered and logged, never retried, only the most recently asked for kept on disk, all removed when
the server stops. The happy path through a running server is in tests/test_gradio_api.py."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from app.onnx_serving import OnnxExports
from engine.adapter_io import save_adapter
from engine.adapter_model import AdapterModel
from tests.conftest import make_tiny_model


def _settled(exports: OnnxExports, version: str, folder: str) -> None:
    deadline = time.monotonic() + 120
    while exports.running is not None:
        assert time.monotonic() < deadline, "the export process did not end in 2 minutes"
        time.sleep(0.2)
        exports.ready(version, folder, start=False)


def test_an_export_that_fails_leaves_the_adapter_on_pytorch_and_says_why(tmp_path, caplog) -> None:
    not_an_adapter = tmp_path / "empty"
    not_an_adapter.mkdir()
    exports = OnnxExports()
    with caplog.at_level(logging.INFO, logger="adapterlab.serving"):
        assert exports.ready("job-1 v1", str(not_an_adapter)) is None
        assert exports.running is not None and exports.running.key == "job-1 v1"
        assert exports.ready("job-2 v1", str(not_an_adapter)) is None  # queued behind the first: one at a time
        assert [key for key, _ in exports.waiting] == ["job-2 v1"]
        _settled(exports, "job-1 v1", str(not_an_adapter))
        _settled(exports, "job-2 v1", str(not_an_adapter))
    assert exports.made == {"job-1 v1": None, "job-2 v1": None}
    assert exports.ready("job-1 v1", str(not_an_adapter)) is None and exports.running is None  # not tried again
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 2, failures
    assert all("stays on PyTorch" in m and "not an adapter folder" in m for m in failures), failures


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> str:
    """A Pfeiffer adapter on a tiny BERT, saved (its export checks itself on the built-in demo texts)."""
    model = AdapterModel(str(make_tiny_model(tmp_path_factory.mktemp("tiny"))))
    model.add_adapter("a", "pfeiffer", ["neg", "pos"], None)
    return str(save_adapter(model, "a", tmp_path_factory.mktemp("adapter") / "a", {"max_length": 32}))


def test_only_the_exports_asked_for_most_recently_stay_on_disk(adapter, monkeypatch) -> None:
    monkeypatch.setattr("app.onnx_serving.KEEP", 1)
    exports = OnnxExports()
    assert exports.ready("job-1 v1", adapter) is None
    _settled(exports, "job-1 v1", adapter)
    first = exports.ready("job-1 v1", adapter)
    assert first is not None and (first / "model.onnx").is_file()
    exports.ready("job-2 v1", adapter)
    _settled(exports, "job-2 v1", adapter)
    second = exports.ready("job-2 v1", adapter)
    assert second is not None and (second / "model.onnx").is_file()
    assert not first.exists() and "job-1 v1" not in exports.made  # asked for again, it is exported again
    exports.close()


def test_closing_stops_a_running_export_and_removes_every_export(adapter) -> None:
    """What the server does when it stops: no export process outlives it, no export folder is left."""
    folder = adapter
    exports = OnnxExports()
    assert exports.ready("job v1", folder) is None
    running, root = exports.running, Path(exports._root.name)
    assert running is not None and running.process.poll() is None and root.is_dir()
    exports.close()
    assert running.process.poll() is not None and exports.running is None
    assert not root.exists() and exports.made == {}
