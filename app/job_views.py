"""Turn job records from the job store into what the Jobs tab shows: table rows, plot data, headers, tables.

Pure functions of the job dicts, so the page shows exactly what the store holds (and survives reloads).
"""

from __future__ import annotations

import html
import math
from datetime import datetime
from pathlib import Path

import pandas as pd

from engine import methods
from engine.options import option_fields
from engine.training import TrainConfig
from worker.models import WAITING

STATES = {"queued": ("◌", "Queued"), "running": ("▶", "Running"), "succeeded": ("✔", "Succeeded"),
          "failed": ("✖", "Failed"), "cancelling": ("■", "Stopping…"), "cancelled": ("■", "Cancelled"),
          "interrupted": ("‖", "Interrupted")}
ACTIVE = ("queued", "running", "cancelling")
TABLE_COLUMNS = ["Job", "Method", "State", "Progress", "Time left", "Macro-F1", "Accuracy", "Created", "ID"]
# The data and method rows, then every hyperparameter in its words from TrainConfig (engine/options.py)
SETTING_NAMES = {"data": "Data", "validation": "Validation data", "text_column": "Text column",
                 "text_pair_column": "Second text column", "label_column": "Label column",
                 "label_names": "Labels renamed", "method": "Method", "base_model": "Base model",
                 **{f.name: spec.label for f, spec in option_fields(TrainConfig)}}

NO_WORKER = ("Jobs start in the order they were queued, one at a time on each worker. If no other job is running "
             "and this one stays queued, no worker is running: ask whoever runs AdapterLab to start one (if that "
             "is you, restart AdapterLab without the “no worker” option). More under **About jobs** below.")

UNSET = {"validation": "10% of the data, held out", "text_pair_column": "none (one text per row)",
         "base_model": "all-MiniLM-L6-v2 (bundled)", "max_train_samples": "all rows",
         "early_stopping_patience": "off", "base_dropout": "off", "label_names": "none (as in the data)"}


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


def time_left(job: dict) -> str:
    """The time left in words: a waiting job has none yet, one that has not reported a step says what it is
    setting up (tokenising, loading the base model) or that it is estimating, and one past its last step is
    still validating and saving."""
    if job["state"] in WAITING:
        return "waiting for a worker"
    if job["state"] == "cancelling":
        return "stopping…"
    if job["state"] != "running":
        return "—"
    return _eta_words(job.get("eta_seconds"), f"{job['phase']}…" if job.get("phase") else "estimating…", "{}")


def _eta_words(eta: float | None, unknown: str, known: str) -> str:
    """`unknown` before the first steps are timed, 'finishing…' past the last one, else `known` with the time."""
    return unknown if eta is None else "finishing…" if eta < 1 else known.format(duration(eta))


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
    return f"{job.get('name') or 'job'} · {method_name(job)} · {job['id']}"


SORTS = {"Newest first": lambda j: j.get("created_at") or "", "Oldest first": lambda j: j.get("created_at") or "",
         "Name": lambda j: (j.get("name") or "").lower(), "State": lambda j: j["state"],
         "Best macro-F1 first": lambda j: (j.get("metrics") or {}).get("macro_f1") or -1.0}
DESCENDING = ("Newest first", "Best macro-F1 first")


def data_name(job: dict) -> str:
    """The data set a job trained on, as the user knows it (the uploaded file's name, the hub dataset's)."""
    source = job.get("data") or {}
    return str(source.get("filename") or source.get("name") or "—")


def method_name(job: dict) -> str:
    return "Search" if job.get("kind") == "search" else methods.label(job.get("method"))


def filter_jobs(jobs: list[dict], find: str = "", states: list[str] | None = None,
                methods_shown: list[str] | None = None, data: list[str] | None = None,
                sort: str = "Newest first") -> list[dict]:
    """The jobs whose name or id contains `find` and whose state, method and data set are among those chosen
    (none chosen: any), in the chosen order."""
    words = (find or "").strip().lower()
    shown = [j for j in jobs if (not words or words in (j.get("name") or "").lower() or words in j["id"])
             and (not states or j["state"] in states) and (not methods_shown or method_name(j) in methods_shown)
             and (not data or data_name(j) in data)]
    key = SORTS.get(sort, SORTS["Newest first"])
    return sorted(shown, key=key, reverse=sort in DESCENDING)


def table(jobs: list[dict]) -> pd.DataFrame:
    """One row per job, newest first, with an HTML progress bar."""
    rows = []
    for job in jobs:
        method = method_name(job) if job.get("method") else "—"
        rows.append([str(job.get("name") or job["id"]), method,  # a "str" cell shows text as it is
                     state_text(job["state"]), progress_bar(job.get("progress")), time_left(job),
                     _score(job.get("metrics"), "macro_f1"),
                     _score(job.get("metrics"), "accuracy"), _when(job.get("created_at")), job["id"]])
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def header(job: dict) -> str:
    """Markdown summary: name, state, what is trained on what, progress and the main scores."""
    spec = job.get("spec") or {}
    kind = job.get("method") or spec.get("method")
    trained = "model from" if kind == "full" else "adapter on"  # full fine-tuning trains a whole model
    base = job.get("base_model") or spec.get("base_model") or "the bundled model"
    lines = [f"### {html.escape(str(job.get('name') or job['id']))} · {state_text(job['state'])}",
             f"{methods.label(kind)} {trained} `{base}` · job id `{job['id']}` · "
             f"created {_when(job.get('created_at'))}{_whose(job)}"]
    if job["state"] == "queued":
        lines.append(f"Waiting for a worker to start it. {NO_WORKER}")
    elif job["state"] == "interrupted":
        lines.append("Its worker stopped before it finished. It is queued again and resumes from its last "
                     "finished epoch when a worker is free.")
    elif job["state"] in ACTIVE:
        lines.append(_where(job, spec))
        if job.get("history"):
            last = job["history"][-1]
            lines.append(f"After epoch {last['epoch']}: macro-F1 {last['macro_f1']:.3f} · accuracy "
                         f"{last['accuracy']:.3f}")
    kept = kept_adapter(job)
    if kept:
        lines.append(kept)
    metrics = job.get("metrics")
    if metrics:
        lines.append(f"**Macro-F1 {metrics['macro_f1']:.3f}** · accuracy {metrics['accuracy']:.3f} "
                     "(on the held-out validation rows)")
    if job.get("attempts", 1) and job.get("attempts", 1) > 1:
        lines.append(f"Attempt {job['attempts']}.")
    return "\n\n".join(lines)


def _whose(job: dict) -> str:
    """' by ana · shared' on a team's server (jobs made by the machine or the single admin have no owner)."""
    owner = f" by {html.escape(job['owner'])}" if job.get("owner") else ""
    return owner + (" · shared with every user" if job.get("shared") else "")


def _where(job: dict, spec: dict) -> str:
    """A running job's progress bar, time left and epoch."""
    if job["state"] == "cancelling":
        return f"{progress_bar(job.get('progress'))} stopping at the next step; the best epoch so far is kept"
    step = (job.get("steps") or [{}])[-1]
    where = f" · epoch {step['epoch']:.1f} of {spec.get('epochs') or '?'}" if step.get("epoch") else ""
    before = f"{job['phase']}…" if job.get("phase") else "estimating the time left…"
    left = _eta_words(job.get("eta_seconds"), before, "{} left")
    return f"{progress_bar(job.get('progress'))} {left}{where}"


def kept_adapter(job: dict) -> str | None:
    """Which epoch the saved adapter comes from: a stopped or early-stopped job keeps its best epoch so far."""
    if job["state"] not in ("succeeded", "cancelled"):
        return None
    if not job.get("adapter_dir"):
        return "Cancelled before it trained: no adapter was saved." if job["state"] == "cancelled" else None
    best, planned, done = job.get("best_epoch"), (job.get("spec") or {}).get("epochs"), len(job.get("history") or [])
    if best is None:
        return None
    if best == 0:
        return ("Stopped during epoch 1, before any epoch finished: the adapter kept is the one trained up to "
                "that moment.")
    of = f" of {planned}" if planned else ""
    if job["state"] == "cancelled":
        return (f"Stopped after {done}{of} epochs. **The adapter kept is from epoch {best}**, the best so far on "
                "the validation rows (macro-F1).")
    if done == 1:
        return None
    stopped = f" Training stopped early after epoch {done}: no better epoch came." if planned and done < planned else ""
    return f"The adapter is from epoch {best}{of}, the best on the validation rows (macro-F1).{stopped}"


def training_points(job: dict) -> int:
    return sum(s.get("loss") is not None for s in job.get("steps") or [])


def loss_frame(job: dict) -> pd.DataFrame:
    """Training loss per logged step and validation loss per epoch, on one epoch axis. A single validation
    point would be an invisible line, so validation joins from the second epoch (`epoch_figures` shows the first)."""
    rows = [{"epoch": s["epoch"], "loss": s["loss"], "curve": "training"} for s in job.get("steps") or []
            if s.get("loss") is not None]
    history = [h for h in job.get("history") or [] if h.get("loss") is not None]
    if len(history) >= 2:
        rows += [{"epoch": h["epoch"], "loss": h["loss"], "curve": "validation"} for h in history]
    return pd.DataFrame(rows, columns=["epoch", "loss", "curve"])


def loss_y_lim(frame: pd.DataFrame) -> list:
    """The loss axis: 0 to a round value above the highest loss (an axis fitted to the data ends at the curve,
    or labels a single value to six decimals)."""
    return [0, math.ceil(frame["loss"].max() * 11) / 10 if len(frame) else None]


def epoch_figures(job: dict) -> str:
    """A one-epoch job's validation scores as plain figures, where a chart would have a single point."""
    history = job.get("history") or []
    if len(history) != 1:
        return ""
    h = history[0]
    figures = [("Accuracy", h.get("accuracy")), ("Macro-F1", h.get("macro_f1")), ("Validation loss", h.get("loss")),
               ("Training loss", h.get("train_loss"))]
    cells = "".join(f'<div><div class="al-caption">{name}</div><div class="al-figure">{value:.3f}</div></div>'
                    for name, value in figures if value is not None)
    return (f'<div class="al-card"><div class="al-bars-title">Validation after epoch {h["epoch"]}</div>'
            f'<div class="al-figures">{cells}</div></div>')


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
        return methods.label(str(value))
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "default"
    if key == "label_names":
        return ", ".join(f"{old} → {new}" for old, new in dict(value).items())
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer() and key != "learning_rate":
        return str(int(value))
    return str(value)


def _adapters_named(method: str | None, options: dict) -> dict:
    """A fusion's adapters (stored as folders) by their jobs' names, as the page offered them."""
    if method not in methods.REGISTRY:
        return options
    lists = [f.name for f, spec in option_fields(methods.get(method).Options) if spec.adapters_of]
    if not any(options.get(name) for name in lists):
        return options
    from worker.api import finished_adapters

    names = {str(Path(a["adapter_dir"]).resolve()): f"{a['name']} ({a['id']})" for a in finished_adapters()}
    return {k: [names.get(str(Path(v).resolve()), Path(v).name) for v in value] if k in lists else value
            for k, value in options.items()}


def settings_rows(job: dict) -> list[tuple[str, str]]:
    """What the job was asked to do, in words: file names rather than stored paths, 'none' rather than null."""
    spec = dict(job.get("spec") or {})
    spec.update(data=_source_name(job.get("data")) or spec.get("data"),
                validation=_source_name(job.get("validation_data")))
    options = _adapters_named(spec.get("method"), dict(spec.get("method_options") or {}))
    if "reduction_factor" in spec:  # stored before method_options
        options.setdefault("reduction_factor", spec["reduction_factor"])
    rows = []
    for key, name in SETTING_NAMES.items():
        if key in spec:
            rows.append((name, _setting(key, spec.get(key))))
        if key == "method":
            rows += [(words, _setting(words, value)) for words, value in methods.option_rows(spec.get("method"),
                                                                                              options)]
    return rows


def settings_html(job: dict) -> str:
    """The settings as a plain read-only table, every row shown (a data grid would scroll and look editable)."""
    rows = "".join(f'<tr><th scope="row">{html.escape(name)}</th><td>{html.escape(value)}</td></tr>'
                   for name, value in settings_rows(job))
    return (f'<div class="al-card"><div class="al-bars-title">Settings</div>'
            f'<table class="al-settings"><tbody>{rows}</tbody></table></div>')
