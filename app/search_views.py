"""A search and its trials as plain data: what `adapterlab search --json` prints and the search page shows."""

from __future__ import annotations

import html
from datetime import datetime

import pandas as pd

from app.compare_views import summary
from app.job_views import duration, state_text
from engine.methods import label as method_label
from engine.methods import option_rows
from engine.search_space import param_label

OUTCOME_WORDS = {"complete": "complete", "pruned": "pruned", "budget": "stopped at the budget",
                 "failed": "failed", "cancelled": "cancelled"}


def _seconds(job: dict) -> float | None:
    if not (job.get("started_at") and job.get("finished_at")):
        return None
    return (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])).total_seconds()


def trial_row(job: dict) -> dict:
    """One trial: its settings, outcome and scores."""
    trial, spec = job.get("trial") or {}, job["spec"]
    outcome = trial.get("outcome") or ("running" if job["state"] in ("running", "cancelling") else job["state"])
    return {**{k: v for k, v in summary(job).items() if k != "id"}, "job_id": job["id"],
            "number": trial.get("number", 0) + 1, "outcome": outcome, "learning_rate": spec.get("learning_rate"),
            "epochs": spec.get("epochs"), "epochs_run": len(job.get("history") or []),
            "method_options": spec.get("method_options") or {}, "options": option_rows(job["method"],
                                                                                       spec.get("method_options")),
            "seconds": _seconds(job), "adapter_dir": job.get("adapter_dir"), "ended": "outcome" in trial}


def options_words(row: dict) -> str:
    """A trial's method options in the page's words ('Reduction factor 8'), the unset ones left out."""
    return ", ".join(f"{words} {value:g}" if isinstance(value, float) else f"{words} {value}"
                     for words, value in row["options"] if value not in ([], None, ""))


def search_result(search: dict, trials: list[dict]) -> dict:
    """The search's settings, state, trials, best trial (the highest validation macro-F1) and importances."""
    cfg = search.get("search") or {}
    rows = [trial_row(t) for t in sorted(trials, key=lambda t: (t.get("trial") or {}).get("number", 0))]
    best = next((r for r in rows if r["job_id"] == cfg.get("best_job")), None)
    return {"search_id": search["id"], "name": search["name"], "state": search["state"],
            "budget_minutes": cfg.get("budget_minutes"), "methods": cfg.get("methods", []),
            "max_trials": cfg.get("max_trials"), "parallel": cfg.get("parallel"),
            "started_at": search.get("started_at"), "finished_at": search.get("finished_at"),
            "seconds": _seconds(search), "best": best, "trials": rows,
            "pruned": sum(r["outcome"] == "pruned" for r in rows),
            "importance": cfg.get("importance") or {},
            "importance_labels": {name: param_label(name) for name in cfg.get("importance") or {}},
            "error": search.get("error")}


def _method_words(row: dict, best_id: str | None) -> str:
    """A trial's series in the plots: its method, or the best trial on its own (so it stands out)."""
    return "★ best" if row["job_id"] == best_id else method_label(row["method"])


def plot_frame(result: dict) -> pd.DataFrame:
    """The ended trials with a score: macro-F1 against trainable parameters (thousands) and wall time."""
    best = (result["best"] or {}).get("job_id")
    rows = [{"trial": r["number"], "method": _method_words(r, best), "macro_f1": round(r["macro_f1"], 4),
             "parameters (thousands)": round(r["trainable_params"] / 1000, 1) if r["trainable_params"] else None,
             "minutes": round(r["seconds"] / 60, 2) if r["seconds"] is not None else None,
             "outcome": OUTCOME_WORDS.get(r["outcome"], r["outcome"])}
            for r in result["trials"] if r["macro_f1"] is not None]
    return pd.DataFrame(rows, columns=["trial", "method", "macro_f1", "parameters (thousands)", "minutes",
                                       "outcome"])


TRIAL_COLUMNS = ["#", "Method", "Settings", "Learning rate", "Epochs run", "Outcome", "Macro-F1",
                 "Trainable parameters", "Time", "ID"]


def trials_frame(result: dict) -> pd.DataFrame:
    """Every trial, best marked: its settings, how it ended and its score."""
    best = (result["best"] or {}).get("job_id")
    rows = []
    for r in result["trials"]:
        options = options_words(r)
        rows.append([f"★ {r['number']}" if r["job_id"] == best else str(r["number"]), method_label(r["method"]),
                     options or "—", f"{r['learning_rate']:.2g}" if r["learning_rate"] else "—",
                     f"{r['epochs_run']} of {r['epochs']}", OUTCOME_WORDS.get(r["outcome"], r["outcome"]),
                     f"{r['macro_f1']:.3f}" if r["macro_f1"] is not None else "—",
                     f"{r['trainable_params']:,}" if r["trainable_params"] else "—", duration(r["seconds"]),
                     r["job_id"]])
    return pd.DataFrame(rows, columns=TRIAL_COLUMNS)


def importance_frame(result: dict) -> pd.DataFrame:
    labels = result["importance_labels"]
    rows = [{"setting": labels[name], "importance": value}
            for name, value in sorted(result["importance"].items(), key=lambda kv: -kv[1])]
    return pd.DataFrame(rows, columns=["setting", "importance"])


def header(result: dict, search: dict) -> str:
    """The search's state in words: budget and time used, trials run and pruned, the best so far."""
    state, trials = result["state"], result["trials"]
    methods_words = ", ".join(method_label(m) for m in result["methods"])
    lines = [f"### {html.escape(result['name'])} · {state_text(state)}",
             f"Search over {methods_words} · budget {result['budget_minutes']:g} min"
             + (f", at most {result['max_trials']} trials" if result["max_trials"] else "")
             + (f", {result['parallel']} at once" if (result["parallel"] or 1) > 1 else "")
             + f" · job id `{result['search_id']}`"]
    ended = [t for t in trials if t["ended"]]
    if state == "queued":
        lines.append("Waiting for a worker to start its first trial; the budget counts from then.")
    elif state in ("running", "cancelling"):
        lines.append(f"{len(ended)} trials ended ({result['pruned']} stopped early by pruning), "
                     f"{len(trials) - len(ended)} queued or running · about "
                     f"{duration(search.get('eta_seconds'))} of the budget left.")
    else:
        lines.append(f"{len(trials)} trials in {duration(result['seconds'])}; {result['pruned']} stopped early by "
                     "pruning.")
    best = result["best"]
    if best:
        so_far = "Best so far" if state in ("running", "cancelling") else "Best"
        lines.append(f"**{so_far}: trial {best['number']}, {method_label(best['method'])}, macro-F1 "
                     f"{best['macro_f1']:.3f}**" + (f" (accuracy {best['accuracy']:.3f})" if best["accuracy"]
                                                     is not None else ""))
    return "\n\n".join(lines)
