"""A full disk while saving (issue 14): a small tmpfs as the data directory, filled up by the test.

The save that runs out of space fails with a "disk full" message; what was saved before (an adapter folder, the
job's last checkpoint) and the job store stay whole; nothing half written is left; once space is freed, retrying
the job resumes from its checkpoint and finishes. Mounting needs root (as on CI): elsewhere the tests skip.
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import NEGATIVE, POSITIVE, make_tiny_model, write_csv
from test_worker import WORKER_ENV, start_worker, stop, wait_final, wait_for

from engine.errors import DiskFull
from engine.inference import Predictor
from engine.training import TrainConfig, train
from worker import api

LEFT_FREE = 2 * 2**20  # room for the job store's writes, not for a checkpoint of the wide model's adapter


@pytest.fixture()
def small_disk(tmp_path) -> Iterator[Path]:
    """A 48 MiB tmpfs of the test's own."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs here (it needs root): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """A ballast file that leaves `leave` bytes free on `disk`."""
    ballast = disk / "ballast"
    with ballast.open("wb") as file:
        free = subprocess.run(["df", "--output=avail", "-B1", str(disk)], capture_output=True, text=True,
                              check=True).stdout.split()[-1]
        file.truncate(0)
        chunk = b"\0" * 2**20
        remaining = int(free) - leave
        while remaining > 0:
            remaining -= file.write(chunk[:remaining])
    return ballast


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory) -> Path:
    """Hidden 256: a reduction factor of 1 gives adapters and checkpoints of megabytes, so a few megabytes free
    hold the job store's writes but not a save."""
    return make_tiny_model(tmp_path_factory.mktemp("wide"), hidden_size=256, intermediate_size=256,
                           num_attention_heads=4)


def test_saving_over_an_adapter_on_a_full_disk_keeps_the_one_saved_before(small_disk, wide_model, sentiment_csv):
    out = small_disk / "adapter"
    config = TrainConfig(data=str(sentiment_csv), method="houlsby", output=str(out), base_model=str(wide_model),
                         batch_size=8, epochs=1, max_length=16, method_options={"reduction_factor": 1})
    train(config)
    before = digest(out)
    fill(small_disk, 512 * 1024)
    with pytest.raises(DiskFull, match=r"The disk holding .* is full .* Free some space, then try again"):
        train(config)
    assert digest(out) == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["adapter", "ballast"]  # no half-written staging
    assert Predictor().predict(out, "i love it")["label"] in ("pos", "neg")


def test_a_job_whose_disk_fills_fails_saying_so_and_a_retry_after_freeing_space_finishes(
        small_disk, wide_model, tmp_path, monkeypatch):
    home = small_disk / "home"
    monkeypatch.setenv("ADAPTERLAB_HOME", str(home))
    for name, value in {**WORKER_ENV, "ADAPTERLAB_HEARTBEAT_SECONDS": "1", "ADAPTERLAB_PROGRESS_SECONDS": "1"}.items():
        monkeypatch.setenv(name, value)
    rows = [{"text": t, "label": "pos"} for t in POSITIVE * 40] + [{"text": t, "label": "neg"} for t in NEGATIVE * 40]
    data = write_csv(tmp_path / "reviews.csv", rows)  # 640 rows: an epoch of batch 1 takes seconds
    job_id = api.submit({"data": str(data), "method": "houlsby", "reduction_factor": 1, "base_model": str(wide_model),
                         "epochs": 2, "batch_size": 1, "max_length": 16, "name": "fills the disk"})
    checkpoint = home / "checkpoints" / job_id / "checkpoint.pt"
    log = tmp_path / "worker.log"
    worker = start_worker(log)
    try:
        wait_for(checkpoint.is_file, "the first epoch's checkpoint", log)
        saved = checkpoint.read_bytes()
        ballast = fill(small_disk, LEFT_FREE)
        failed = wait_final(job_id, log)
        assert (failed["state"], failed["error_kind"]) == ("failed", "disk full"), failed["error"]
        assert "is full" in failed["error"] and "Free some space" in failed["error"]
        assert "Traceback" not in failed["error"]

        # what was saved before is whole: the last checkpoint, the job store; nothing half written is left
        kept = torch.load(checkpoint, weights_only=False)
        assert kept["epoch"] == 1 and kept["best"] is not None and checkpoint.read_bytes() == saved
        assert not [p for p in home.rglob("*") if ".partial" in p.name or ".saving-" in p.name]
        with sqlite3.connect(home / "jobs.db") as store:
            assert store.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert [e["epoch"] for e in failed["history"]][:1] == [1]

        ballast.unlink()
        api.retry(job_id)
        done = wait_final(job_id, log)
    finally:
        assert stop(worker) == 0
    assert done["state"] == "succeeded", done["error"]
    assert f"job {job_id}: resuming from the checkpoint" in log.read_text()
    assert [e["epoch"] for e in done["history"]] == [1, 2]  # none lost, none twice
    assert Predictor().predict(done["adapter_dir"], "i love it")["label"] in ("pos", "neg")
