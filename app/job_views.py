"""Turn job records from the job store into what the Jobs tab shows: table rows, plot data, headers, tables.

Pure functions of the job dicts, so the page shows exactly what the store holds (and survives reloads).
"""

from __future__ import annotations

import html
from datetime import datetime

import pandas as pd

STATES = {"queued": ("◌", "Queued"), "running": ("▶", "Running"), "succeeded": ("✔", "Succeeded"),
          "failed": ("✖", "Failed"), "cancelling": ("■", "Stopping…"), "cancelled": ("■", "Cancelled"),
          "interrupted": ("‖", "Interrupted")}
ACTIVE = ("queued", "running", "cancelling")
METHOD_NAMES = {"houlsby": "Houlsby", "pfeiffer": "Pfeiffer", "ia3": "IA3"}
TABLE_COLUMNS = ["Job", "Method", "State", "Progress", "Time left", "Macro-F1", "Accuracy", "Created", "ID"]
SETTING_NAMES = {"data": "Data", "validation": "Validation data", "text_column": "Text column",
                 "text_pair_column": "Second text column", "label_column": "Label column", "method": "Method",
                 "reduction_factor": "Reduction factor", "base_model": "Base model", "epochs": "Epochs",
                 "learning_rate": "Learning rate", "batch_size": "Batch size", "max_length": "Max length (tokens)",
                 "max_train_samples": "Max training rows", "seed": "Random seed",
                 "early_stopping_patience": "Early stopping patience (epochs)",
                 "base_dropout": "Base model dropout while training"}

UNSET = {"validation": "10% of the data, held out", "text_pair_column": "none (one text per row)",
         "base_model": "all-MiniLM-L6-v2 (bundled)", "max_train_samples": "all rows",
         "early_stopping_patience": "off", "base_dropout": "off"}


def state_text(state: str) -> str:
    icon, words = STATES.get(state, ("•", state))
    return f"{icon} {words}"


def duration(seconds: float | None) -> str:
    """'45 s', 'about 3 min', 'about 1 h 20 min'; '—' when unknown."""
    if seconds is None or seconds < 0:
        return "—"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60} min"


def progress_bar(progress: float | None) -> str:
    pct = round(100 * min(1.0, max(0.0, progress or 0.0)))
    return (f'<div class="al-progress" title="{pct}%"><div class="al-progress-fill" style="width:{pct}%"></div>'
            f'</div><span class="al-progress-text">{pct}%</span>')


def _when(value: object) -> str:
    if not value:
        return "—"
    try:
        stamp = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return stamp.astimezone().strftime("%Y-%m-%d %H:%M")


def _score(metrics: dict | None, key: str) -> str:
    return f"{metrics[key]:.3f}" if metrics and metrics.get(key) is not None else "—"


def job_label(job: dict) -> str:
    """How a job appears in menus: its name and short id."""
    return f"{job.get('name') or 'job'} · {METHOD_NAMES.get(job.get('method'), job.get('method'))} · {job['id']}"


def table(jobs: list[dict]) -> pd.DataFrame:
    """One row per job, newest first, with an HTML progress bar."""
    rows = []
    for job in jobs:
        active = job["state"] in ACTIVE
        rows.append([html.escape(str(job.get("name") or job["id"])), METHOD_NAMES.get(job.get("method"), "—"),
                     state_text(job["state"]), progress_bar(job.get("progress")),
                     duration(job.get("eta_seconds")) if active else "—", _score(job.get("metrics"), "macro_f1"),
                     _score(job.get("metrics"), "accuracy"), _when(job.get("created_at")), job["id"]])
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def header(job: dict) -> str:
    """Markdown summary: name, state, what is trained on what, progress and the main scores."""
    spec = job.get("spec") or {}
    method = METHOD_NAMES.get(job.get("method") or spec.get("method"), "?")
    base = job.get("base_model") or spec.get("base_model") or "the bundled model"
    lines = [f"### {html.escape(str(job.get('name') or job['id']))} · {state_text(job['state'])}",
             f"{method} adapter on `{base}` · job id `{job['id']}` · created {_when(job.get('created_at'))}"]
    if job["state"] == "queued":
        lines.append("Waiting for a worker to start it. If it never starts, no worker is running: start one with "
                     "`adapterlab worker`.")
    elif job["state"] == "interrupted":
        lines.append("Its worker stopped before it finished. It is queued again and resumes from its last "
                     "finished epoch when a worker is free.")
    elif job["state"] in ACTIVE:
        step = (job.get("steps") or [{}])[-1]
        where = f" · epoch {step['epoch']:.1f} of {spec.get('epochs') or '?'}" if step.get("epoch") else ""
        lines.append(f"{progress_bar(job.get('progress'))} {duration(job.get('eta_seconds'))} left{where}")
        if job.get("history"):
            last = job["history"][-1]
            lines.append(f"After epoch {last['epoch']}: macro-F1 {last['macro_f1']:.3f} · accuracy "
                         f"{last['accuracy']:.3f}")
    metrics = job.get("metrics")
    if metrics:
        lines.append(f"**Macro-F1 {metrics['macro_f1']:.3f}** · accuracy {metrics['accuracy']:.3f} "
                     "(on the held-out validation rows)")
    if job.get("attempts", 1) and job.get("attempts", 1) > 1:
        lines.append(f"Attempt {job['attempts']}.")
    return "\n\n".join(lines)


def loss_frame(job: dict) -> pd.DataFrame:
    """Training loss per logged step and validation loss per epoch, on one epoch axis."""
    rows = [{"epoch": s["epoch"], "loss": s["loss"], "curve": "training"} for s in job.get("steps") or []
            if s.get("loss") is not None]
    rows += [{"epoch": h["epoch"], "loss": h["loss"], "curve": "validation"} for h in job.get("history") or []
             if h.get("loss") is not None]
    return pd.DataFrame(rows, columns=["epoch", "loss", "curve"])


def metrics_frame(job: dict) -> pd.DataFrame:
    """Validation accuracy and macro-F1 per epoch."""
    rows = [{"epoch": h["epoch"], "score": h[key], "metric": name} for h in job.get("history") or []
            for key, name in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")) if h.get(key) is not None]
    return pd.DataFrame(rows, columns=["epoch", "score", "metric"])


def confusion_html(metrics: dict | None) -> str:
    """The confusion matrix as a shaded table: rows are the true labels, columns the predicted ones."""
    if not metrics or not metrics.get("confusion_matrix"):
        return ""
    labels = [html.escape(str(x)) for x in metrics["labels"]]
    matrix = metrics["confusion_matrix"]
    head = "".join(f"<th>{x}</th>" for x in labels)
    body = []
    for i, (label, row) in enumerate(zip(labels, matrix, strict=True)):
        total = sum(row) or 1
        cells = []
        for j, n in enumerate(row):
            share = n / total
            tone = "120,190,120" if i == j else "230,110,100"
            cells.append(f'<td style="background: rgba({tone},{0.1 + 0.8 * share:.2f})">{n}</td>' if n else
                         "<td>0</td>")
        body.append(f"<tr><th>{label}</th>{''.join(cells)}</tr>")
    return ('<div class="al-confusion"><div class="al-caption">Confusion matrix: rows are the true labels, '
            'columns what the adapter predicted; the diagonal is correct.</div>'
            f'<table><tr><th>true ↓ / predicted →</th>{head}</tr>{"".join(body)}</table></div>')


def per_class_frame(metrics: dict | None) -> pd.DataFrame:
    columns = ["label", "precision", "recall", "F1", "rows"]
    if not metrics or not metrics.get("per_class"):
        return pd.DataFrame(columns=columns)
    return pd.DataFrame([[label, round(m["precision"], 3), round(m["recall"], 3), round(m["f1"], 3), m["support"]]
                         for label, m in metrics["per_class"].items()], columns=columns)


def _source_name(source: dict | None) -> str | None:
    """'tickets.csv' or 'glue:sst2' rather than the snapshot's path in the data directory."""
    if not source:
        return None
    if source.get("kind") == "hub":
        return source["name"] + (f":{source['config']}" if source.get("config") else "")
    return source.get("filename") or source.get("path")


def _setting(key: str, value: object) -> str:
    if value in (None, ""):
        return UNSET.get(key, "default")
    if key == "method":
        return METHOD_NAMES.get(str(value), str(value))
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer() and key != "learning_rate":
        return str(int(value))
    return str(value)


def settings_frame(job: dict) -> pd.DataFrame:
    """What the job was asked to do, in words: file names rather than stored paths, 'none' rather than null."""
    spec = dict(job.get("spec") or {})
    spec.update(data=_source_name(job.get("data")) or spec.get("data"),
                validation=_source_name(job.get("validation_data")))
    rows = [[name, _setting(key, spec.get(key))] for key, name in SETTING_NAMES.items() if key in spec]
    return pd.DataFrame(rows, columns=["setting", "value"])
