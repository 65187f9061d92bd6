"""Several jobs side by side: their results and the settings that differ (issue 12's comparison).

Plain functions of job records (worker.api), shared by `adapterlab compare` and the page.
"""

from __future__ import annotations

import json
from pathlib import Path

from app.job_views import settings_rows

METRICS = ("macro_f1", "accuracy", "trainable_params", "size_mb", "train_seconds", "samples_per_second")


def _trainable(job: dict) -> int | None:
    """Trainable parameters, as the adapter's metadata records them (None before it is saved)."""
    meta = Path(job["adapter_dir"]) / "adapterlab.json" if job.get("adapter_dir") else None
    return json.loads(meta.read_text()).get("trainable_params") if meta and meta.is_file() else None


def _size_mb(job: dict) -> float | None:
    folder = Path(job["adapter_dir"]) if job.get("adapter_dir") else None
    if not folder or not folder.is_dir():
        return None
    return round(sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 1e6, 3)


def summary(job: dict) -> dict:
    """One job's results: its scores, size, speed and learning curve."""
    metrics = job.get("metrics") or {}
    return {"id": job["id"], "name": job["name"], "state": job["state"], "method": job["method"],
            "macro_f1": metrics.get("macro_f1"), "accuracy": metrics.get("accuracy"),
            "trainable_params": _trainable(job), "size_mb": _size_mb(job), "train_seconds": job.get("train_seconds"),
            "samples_per_second": job.get("samples_per_second"), "history": job.get("history") or []}


def differences(jobs: list[dict]) -> dict[str, list[str]]:
    """{setting: [its value in each job]} for the settings whose values are not all the same (in words, as the
    job page shows them; a setting one method does not read is "—" for the others)."""
    rows = [dict(settings_rows(job)) for job in jobs]
    names = list(dict.fromkeys(name for row in rows for name in row))
    table = {name: [row.get(name, "—") for row in rows] for name in names}
    return {name: values for name, values in table.items() if len(set(values)) > 1}


def compare(jobs: list[dict]) -> dict:
    """The `compare --json` contract: `{"jobs": [summary, ...], "differences": {setting: [value per job]}}`."""
    return {"jobs": [summary(j) for j in jobs], "differences": differences(jobs)}
