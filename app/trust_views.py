"""What the job page's "Can I trust it?" section shows, as plain functions of stored data (tested without a page).

Rows come from the job's review files (engine/review.py) and are scored with the adapter's temperature and
threshold as saved now, so the error browser always agrees with what predict says.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from engine.adapter_io import read_metadata
from engine.calibration import temperature_in_use
from engine.inference import spreadsheet_safe
from engine.review import scored
from engine.thresholds import curve
from worker import evaluations
from worker.access import Actor

PAGE_ROWS = 50
SORTS = ("least confident first", "most confident first", "file order")
ISSUE_ROWS = 100


def sources(job_id: str, actor: Actor) -> list[tuple[str, str]]:
    """The row sets of a job: its validation split, then each test evaluation `actor` may see (newest last)."""
    out = [("Validation split (best epoch)", "validation")] if evaluations.rows_path(job_id, "validation") else []
    for e in evaluations.list_for(job_id, actor):
        out.append((f"Test file {e['file_name']} · {when(e['created_at'])}", e["id"]))
    return out


def rows(job_id: str, source: str, adapter_dir: str, actor: Actor) -> tuple[pd.DataFrame, list[str]]:
    """Every stored row of a source `actor` may see, with what predict says now; and the adapter's labels."""
    allowed = source in {value for _, value in sources(job_id, actor)}
    frame = evaluations.stored_rows(job_id, source) if allowed else pd.DataFrame()
    meta = read_metadata(adapter_dir)
    if frame.empty:
        return frame, meta["labels"]
    return scored(frame, meta["labels"], temperature_in_use(meta), meta.get("threshold")), meta["labels"]


def when(iso: str) -> str:
    """'2026-12-02 01:15 UTC' from a stored ISO time."""
    return iso.replace("T", " ")[:16] + " UTC"


def confusion_frame(frame: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Counts of true (rows) x predicted (columns) labels; the first column names the true label."""
    counts = pd.crosstab(frame["label"], frame["predicted"]) if len(frame) else pd.DataFrame()
    counts = counts.reindex(index=labels, columns=labels, fill_value=0)
    return pd.DataFrame({"true ↓ / predicted →": labels, **{p: counts[p].astype(int).tolist() for p in labels}})


def filtered(frame: pd.DataFrame, cell: tuple[str, str] | None, search: str, only_errors: bool,
             sort: str) -> pd.DataFrame:
    """The rows of one confusion cell (true, predicted), containing the search text, errors only, sorted."""
    if frame.empty:
        return frame
    keep = pd.Series(True, index=frame.index)
    if cell:
        keep &= (frame["label"] == cell[0]) & (frame["predicted"] == cell[1])
    if only_errors:
        keep &= ~frame["correct"]
    if (search or "").strip():
        needle = search.strip()
        hit = frame["text"].str.contains(needle, case=False, regex=False)
        if "text_pair" in frame:
            hit |= frame["text_pair"].str.contains(needle, case=False, regex=False)
        keep &= hit
    out = frame[keep]
    if sort == SORTS[0]:
        out = out.sort_values(["confidence", "row"], ascending=[True, True], kind="stable")
    elif sort == SORTS[1]:
        out = out.sort_values(["confidence", "row"], ascending=[False, True], kind="stable")
    return out


def page(frame: pd.DataFrame, number: int) -> tuple[pd.DataFrame, str, int]:
    """One page of rows, the words above it, and the page number actually shown (clamped to the pages)."""
    pages = max(1, -(-len(frame) // PAGE_ROWS))
    number = min(max(1, int(number or 1)), pages)
    start = (number - 1) * PAGE_ROWS
    shown = frame.iloc[start:start + PAGE_ROWS].drop(columns=["correct"], errors="ignore")
    texts = [c for c in ("text", "text_pair") if c in shown]
    probabilities = [c for c in shown.columns if c.startswith("p(")]
    first = [c for c in shown.columns if c not in texts and c not in probabilities]
    shown = shown[first + texts + probabilities]  # what was said about which text, then the detail
    if frame.empty:
        return shown, "No rows match.", 1
    return shown, (f"Rows {start + 1:,}–{start + len(shown):,} of {len(frame):,} · page {number} of {pages}"), number


def csv_file(frame: pd.DataFrame, folder: Path, name: str) -> Path:
    """The rows as a CSV a spreadsheet opens safely (no cell runs as a formula)."""
    path = folder / name
    frame.drop(columns=["correct"], errors="ignore").map(spreadsheet_safe).to_csv(path, index=False)
    return path


def cell_words(cell: tuple[str, str] | None) -> str:
    if not cell:
        return "All cells. Click a cell of the matrix to see its rows."
    true, predicted = (html.escape(x) for x in cell)
    kind = "correct" if cell[0] == cell[1] else "errors"
    return f"Showing true **{true}**, predicted **{predicted}** ({kind}). Click the label column to show all."


def reliability_frame(calibration: dict | None) -> pd.DataFrame:
    """Accuracy against mean confidence per bin, before and after temperature scaling, and the diagonal."""
    points = [{"confidence": x, "accuracy": x, "curve": "perfectly calibrated"} for x in (0.0, 1.0)]
    for key, name in (("reliability_before", "before"), ("reliability", "after temperature scaling")):
        for b in (calibration or {}).get(key) or []:
            if b["count"]:
                points.append({"confidence": round(b["confidence"], 4), "accuracy": round(b["accuracy"], 4),
                               "curve": name})
    return pd.DataFrame(points, columns=["confidence", "accuracy", "curve"])


def calibration_words(meta: dict) -> str:
    c = meta.get("calibration")
    if not c:
        return "This adapter has no calibration (it was trained before AdapterLab calibrated adapters)."
    if c["temperature"] == 1.0 and c["nll"] == c["nll_before"]:
        return (f"Temperature **1** (no change): the adapter made no error on the {c['rows']:,} validation rows, "
                "so there is nothing to calibrate against. Expected calibration error (10 bins) "
                f"**{c['ece']:.4f}**; judge its confidence on a test file.")
    return (f"Fitted on the {c['rows']:,} validation rows: temperature **{c['temperature']:.3f}**. Expected "
            f"calibration error (10 bins) **{c['ece_before']:.4f} → {c['ece']:.4f}**; negative log-likelihood "
            f"**{c['nll_before']:.4f} → {c['nll']:.4f}**. Accuracy is unchanged: the temperature divides every "
            "score by one number, so the most probable label stays the same. A point below the diagonal is "
            "over-confident.")


def pr_frame(frame: pd.DataFrame, meta: dict, label: str) -> pd.DataFrame:
    """Precision and recall of `label` against the threshold, for the validation rows, and the saved threshold
    (or 0.5, the most probable label) as a vertical line."""
    points = curve(frame, meta["labels"], label, temperature_in_use(meta))
    long = [{"threshold": round(p["threshold"], 4), "score": round(p[k], 4), "measure": k}
            for p in points for k in ("precision", "recall")]
    saved = meta.get("threshold") or {}
    at = saved["value"] if saved.get("label") == label else 0.5
    long += [{"threshold": round(at, 4), "score": y, "measure": "threshold now"} for y in (0.0, 1.0)]
    return pd.DataFrame(long, columns=["threshold", "score", "measure"])


def widths(frame: pd.DataFrame) -> list[str | int]:
    """Column widths (px, or a share for the texts) for the rows table: narrow numbers and labels, wide text."""
    texts = sum(c in ("text", "text_pair") for c in frame.columns)
    return [f"{max(20, 60 // max(1, texts))}%" if c in ("text", "text_pair") else 80 if c == "row" else 100
            for c in frame.columns]


def threshold_words(meta: dict) -> str:
    t = meta.get("threshold")
    if not t:
        return "No threshold: predict takes the most probable label (a threshold of 0.5)."
    how = {"max_f1": "the best F1", "precision": f"a precision of at least {t.get('target')}",
           "recall": f"a recall of at least {t.get('target')}"}.get(t.get("rule"), t.get("rule"))
    return (f"Predict says **{html.escape(t['label'])}** when its probability is at least **{t['value']:.3f}** "
            f"(chosen for {how}: precision {t['precision']:.3f}, recall {t['recall']:.3f} on validation).")


def evaluations_frame(job_id: str, actor: Actor) -> pd.DataFrame:
    columns = ["file", "rows", "accuracy", "macro-F1", "ECE", "evaluated", "fingerprint"]
    return pd.DataFrame([[e["file_name"], e["rows"], round(e["accuracy"], 4), round(e["macro_f1"], 4),
                          round(e["calibration"]["ece"], 4), when(e["created_at"]),
                          e["fingerprint"].split(":")[-1][:12]]
                         for e in evaluations.list_for(job_id, actor)], columns=columns)


def issues_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The first rows of the list for the page: short columns first, in words."""
    if frame.empty:
        return frame
    texts = [c for c in ("text", "text_pair") if c in frame]
    out = frame.head(ISSUE_ROWS)[[c for c in frame.columns if c not in texts] + texts]
    return out.rename(columns={"given_label": "given label", "suggested_label": "suggested label",
                               "text_pair": "second text"})


def issues_words(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "No suspicious labels: the adapter agrees with every label it is confident about."
    by = frame["split"].value_counts()
    return (f"**{len(frame):,} rows** have a label the adapter confidently disagrees with ({by.get('validation', 0)}"
            f" validation, {by.get('training', 0)} training), most suspicious first; the first {ISSUE_ROWS} are "
            "shown. *Row* is the row in your file (1 = the first row under the header). Validation rows were not "
            "trained on, so their doubts are the more reliable; training rows are judged by the same per-label "
            "thresholds.")
