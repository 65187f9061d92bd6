"""Test evaluations and the review files of a job: what the job page's trust section reads and adds.

An evaluation runs in the caller's process (the web page's, or the command line's) with the engine's Predictor:
it reads an adapter, never trains, and takes seconds to a minute. Its metrics go to the job store, its rows to
the job's review folder, and a summary into the adapter's `adapterlab.json` so its model card lists it.

Whoever may see a job may evaluate its adapter (worker/access.py); an evaluation is shown to the user who ran it,
the job's owner when they ran it, and the admins.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pandas as pd
from sqlalchemy import or_, select

from engine.adapter_io import read_metadata, update_metadata
from engine.inference import Evaluation as Result
from engine.review import LABEL_ISSUES, VALIDATION
from worker import db, settings
from worker.access import MACHINE, Actor, may_see, refused
from worker.api import JobNotFound, JobStateError
from worker.models import Evaluation, Job, JobState


def review_dir(job_id: str) -> Path:
    return settings.reviews_dir() / job_id


def finished_adapter(job_id: str, actor: Actor = MACHINE) -> Path:
    """The adapter folder of a finished job `actor` may see, or a JobStateError saying why there is none."""
    with db.session() as s:
        job = s.get(Job, job_id)
        if job is not None and not may_see(actor, job.owner, job.shared):
            refused(actor, "evaluate", job_id, job.owner)
            job = None
        if job is None:
            raise JobNotFound(f"No job '{job_id}': it does not exist or was deleted.")
        if job.state not in (JobState.SUCCEEDED, JobState.CANCELLED) or not job.adapter_dir:
            raise JobStateError(f"Job {job_id} is {job.state}: it has no adapter to evaluate yet.")
        folder = settings.data_dir() / job.adapter_dir
    if not folder.is_dir():
        raise JobStateError(f"Job {job_id}'s adapter folder is missing ({folder}).")
    return folder


def record(job_id: str, result: Result, file_name: str, columns: dict, actor: Actor = MACHINE) -> dict:
    """Store `actor`'s evaluation: its metrics in the job store, its rows for the error browser, and a line in
    the adapter's metadata (the model card)."""
    finished_adapter(job_id, actor)
    eval_id = uuid.uuid4().hex[:12]
    folder = review_dir(job_id)
    folder.mkdir(parents=True, exist_ok=True)
    result.frame.to_parquet(folder / f"{eval_id}.parquet", index=False)
    m = result.metrics
    row = Evaluation(id=eval_id, job_id=job_id, file_name=file_name[:500], fingerprint=result.fingerprint,
                     rows=result.rows, accuracy=m["accuracy"], macro_f1=m["macro_f1"], metrics=m,
                     calibration=result.calibration.as_dict(), columns=columns, owner=actor.owner)
    with db.session() as s:
        if s.get(Job, job_id) is None:
            raise JobNotFound(f"No job '{job_id}': it was deleted while it was evaluated.")
        s.add(row)
    adapter = finished_adapter(job_id)
    summary = {"file_name": file_name, "fingerprint": result.fingerprint, "rows": result.rows,
               "accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4),
               "ece": round(result.calibration.ece, 4), "evaluated_at": row.created_at.isoformat(timespec="seconds")}
    previous = read_metadata(adapter).get("evaluations") or []
    update_metadata(adapter, evaluations=[*previous, summary])
    return _as_dict(row)


def _as_dict(e: Evaluation) -> dict:
    return {"id": e.id, "job_id": e.job_id, "file_name": e.file_name, "fingerprint": e.fingerprint, "rows": e.rows,
            "accuracy": e.accuracy, "macro_f1": e.macro_f1, "metrics": e.metrics, "calibration": e.calibration,
            "columns": e.columns, "created_at": e.created_at.isoformat(timespec="seconds")}


def list_for(job_id: str, actor: Actor = MACHINE) -> list[dict]:
    """The job's test evaluations that `actor` may see, oldest first."""
    with db.session() as s:
        job = s.get(Job, job_id)
        if job is None or not may_see(actor, job.owner, job.shared):
            return []
        query = select(Evaluation).where(Evaluation.job_id == job_id).order_by(Evaluation.created_at)
        if not actor.admin:
            query = query.where(or_(Evaluation.owner.is_(None), Evaluation.owner.in_({actor.name, job.owner})))
        return [_as_dict(e) for e in s.scalars(query)]


def rows_path(job_id: str, evaluation: str) -> Path | None:
    """The stored rows of an evaluation id, or of "validation" (the best epoch's validation split)."""
    if evaluation != "validation" and not re.fullmatch(r"[0-9a-f]{12}", evaluation or ""):
        return None
    path = review_dir(job_id) / (VALIDATION if evaluation == "validation" else f"{evaluation}.parquet")
    return path if path.is_file() else None


def stored_rows(job_id: str, evaluation: str) -> pd.DataFrame:
    """The rows of an evaluation id or of "validation" as stored: text, label, logits (empty if none)."""
    path = rows_path(job_id, evaluation)
    return pd.read_parquet(path) if path else pd.DataFrame()


def label_issues(job_id: str) -> pd.DataFrame:
    """The suspicious labels found when the job's training ended, most suspicious first (empty if none)."""
    path = review_dir(job_id) / LABEL_ISSUES
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame()
