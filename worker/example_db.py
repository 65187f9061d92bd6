"""`python -m worker.example_db [PATH]` rebuilds `jobs.db.example`: a job store made by the real models and
migrations, holding one succeeded job (metrics and curves), one failed job (its error) and one queued job.

The contents are fixed, so the file only changes when the models, the migrations or this module do; a test
rebuilds it and fails when the committed file differs.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from engine import methods
from worker import db
from worker.models import Job, JobEpoch, JobState, JobStep

EXAMPLE = Path(__file__).resolve().parents[1] / "jobs.db.example"
LABELS = ["account", "billing", "delivery", "technical"]
T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
TICKETS_SHA256 = "c5f3eb4a57db64746a5761842462622a3d8fcb12d7781277560c8e77fdeffdda"
TICKETS = {"kind": "file", "filename": "support_tickets.csv", "path": f"uploads/{TICKETS_SHA256}.csv",
           "sha256": TICKETS_SHA256}
STEPS_PER_EPOCH, EPOCHS = 23, 3


def _spec(method: str, learning_rate: float, batch_size: int = 16) -> dict:
    options = dataclasses.asdict(methods.get(method).options())  # as a job stores them: every option's value
    return {"data": TICKETS["path"], "validation": None, "method": method, "text_column": "text",
            "text_pair_column": None, "label_column": "label", "method_options": options, "base_model": None,
            "epochs": EPOCHS, "learning_rate": learning_rate, "batch_size": batch_size, "max_length": 128,
            "max_train_samples": None, "seed": 42, "warmup_ratio": 0.06, "weight_decay": 0.0, "max_grad_norm": 1.0,
            "early_stopping_patience": None, "validation_fraction": 0.1}


def _metrics(epoch: int, correct: list[int]) -> dict:
    """Validation metrics over 10 examples per class, `correct[i]` of class i right (the rest go to the next)."""
    matrix = [[0] * 4 for _ in LABELS]
    for i, right in enumerate(correct):
        matrix[i][i], matrix[i][(i + 1) % 4] = right, 10 - right
    per_class = {}
    for i, label in enumerate(LABELS):
        predicted = sum(row[i] for row in matrix)
        precision, recall = matrix[i][i] / predicted, matrix[i][i] / 10
        per_class[label] = {"precision": precision, "recall": recall, "support": 10,
                            "f1": 2 * precision * recall / (precision + recall)}
    return {"accuracy": sum(correct) / 40, "macro_f1": sum(c["f1"] for c in per_class.values()) / 4,
            "per_class": per_class, "confusion_matrix": matrix, "labels": LABELS, "epoch": epoch,
            "loss": round(1.2 / epoch, 4), "train_loss": round(1.35 / epoch, 4)}


def _succeeded() -> Job:
    started = T0 + timedelta(seconds=5)
    epochs = [_metrics(1, [8, 7, 8, 8]), _metrics(2, [9, 9, 9, 9]), _metrics(3, [10, 9, 9, 9])]
    job = Job(id="exsucceeded1", name="support tickets · pfeiffer", state=JobState.SUCCEEDED,
              spec=_spec("pfeiffer", 1e-3), data_source=TICKETS, validation_source=None, method="pfeiffer",
              base_model="sentence-transformers/all-MiniLM-L6-v2", batch_size=16, created_at=T0,
              started_at=started, finished_at=started + timedelta(seconds=42), attempts=1, worker_id="gpu-box:4242",
              device="cuda:0", heartbeat_at=started + timedelta(seconds=41), progress=1.0,
              adapter_dir="adapters/exsucceeded1", labels=LABELS, metrics=epochs[-1], best_epoch=3,
              train_seconds=38.5, samples_per_second=28.05,
              data_report=["support_tickets.csv: 400 rows, 360 for training, 40 for validation (split)",
                           "labels: account 90, billing 90, delivery 90, technical 90"])
    total = STEPS_PER_EPOCH * EPOCHS
    for step in sorted({*range(10, total + 1, 10), *range(STEPS_PER_EPOCH, total + 1, STEPS_PER_EPOCH)}):
        seconds = step * 38.5 / total
        job.steps.append(JobStep(attempt=1, step=step, total_steps=total, epoch=step / STEPS_PER_EPOCH,
                                 loss=round(1.4 * 0.97 ** step, 4), learning_rate=1e-3 * (total - step) / total,
                                 samples_per_second=28.05, eta_seconds=round(38.5 - seconds, 2),
                                 created_at=started + timedelta(seconds=round(seconds))))
    for m in epochs:
        job.epochs.append(JobEpoch(epoch=m["epoch"], train_loss=m["train_loss"], loss=m["loss"],
                                   accuracy=m["accuracy"], macro_f1=m["macro_f1"], metrics=m,
                                   created_at=started + timedelta(seconds=13 * m["epoch"])))
    return job


def _failed() -> Job:
    started = T0 + timedelta(minutes=5)
    return Job(id="exfailed0001", name="support tickets · houlsby (large batch)", state=JobState.FAILED,
               spec=_spec("houlsby", 1e-3, batch_size=512), data_source=TICKETS, validation_source=None,
               method="houlsby", base_model="sentence-transformers/all-MiniLM-L6-v2", batch_size=256,
               created_at=T0 + timedelta(minutes=4), started_at=started, finished_at=started + timedelta(seconds=9),
               attempts=1, worker_id="gpu-box:4242", device="cuda:0", heartbeat_at=started + timedelta(seconds=8),
               progress=0.0, error_kind="out of memory",
               error="Out of GPU memory at batch size 256 (retried after running out at 512). Lower the batch size "
                     "or max length, or train on a GPU with more memory.",
               traceback="Traceback (most recent call last):\n  ...\ntorch.OutOfMemoryError: CUDA out of memory. "
                         "Tried to allocate 1.50 GiB.\n")


def _queued() -> Job:
    return Job(id="exqueued0001", name="support tickets · ia3", state=JobState.QUEUED, spec=_spec("ia3", 8e-3),
               data_source=TICKETS, validation_source=None, method="ia3",
               base_model="sentence-transformers/all-MiniLM-L6-v2", batch_size=16,
               created_at=T0 + timedelta(minutes=10), attempts=0, progress=0.0)


def build(path: Path) -> None:
    """Write the example job store to `path` (replacing it) as one self-contained SQLite file."""
    path.unlink(missing_ok=True)
    engine = db.make_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    with Session(engine) as s, s.begin():
        s.add_all([_succeeded(), _failed(), _queued()])
    engine.dispose()
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal beside it
    connection.execute("VACUUM")
    connection.close()


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else EXAMPLE
    build(target)
    print(f"wrote {target}")
