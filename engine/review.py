"""What an analyst reviews after training or a test evaluation: every row's prediction (the error browser) and the
rows whose given label looks wrong (engine/label_issues.py).

Rows are stored with their logits, not probabilities, so that switching the temperature or moving the threshold
re-reads them without predicting again.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from engine.calibration import decide
from engine.data import PreparedData, Split
from engine.disk import written_whole
from engine.label_issues import class_thresholds, find_label_issues

VALIDATION = "validation.parquet"
LABEL_ISSUES = "label_issues.parquet"


def rows_frame(split: Split, logits: torch.Tensor, names: list[str]) -> pd.DataFrame:
    """One row per example: its row in the file, text (and pair), true label and the logits (`logit_<j>`)."""
    frame = pd.DataFrame({"row": split.rows or list(range(1, len(split) + 1)), "text": split.texts})
    if split.pairs is not None:
        frame["text_pair"] = split.pairs
    frame["label"] = [names[y] for y in split.labels]
    for j in range(len(names)):
        frame[f"logit_{j}"] = logits[:, j].float().numpy()
    return frame


def logits_of(frame: pd.DataFrame, n: int) -> torch.Tensor:
    return torch.tensor(frame[[f"logit_{j}" for j in range(n)]].to_numpy(), dtype=torch.float32)


def scored(frame: pd.DataFrame, names: list[str], temperature: float = 1.0,
           threshold: dict | None = None) -> pd.DataFrame:
    """The rows with what predict would say now: `predicted`, `confidence` (the predicted label's probability),
    `correct` and one probability column per label, under the label's name."""
    probs = (logits_of(frame, len(names)) / temperature).softmax(-1).double()  # rounds to short decimals
    predicted = decide(probs, names, threshold)
    out = frame.drop(columns=[f"logit_{j}" for j in range(len(names))])
    out["predicted"] = [names[p] for p in predicted]
    out["confidence"] = probs[torch.arange(len(out)), torch.tensor(predicted, dtype=torch.long)].numpy().round(4)
    out["correct"] = out["predicted"] == out["label"]
    for j, name in enumerate(names):
        out[f"p({name})"] = probs[:, j].numpy().round(4)
    return out


def issues_frame(split: Split, probs: torch.Tensor, names: list[str], thresholds: torch.Tensor | None = None,
                 origin: str | None = None) -> pd.DataFrame:
    """The label issues among these rows, most suspicious first: row, text, given and suggested label, score."""
    found = find_label_issues(probs, split.labels, thresholds)
    frame = pd.DataFrame({
        "row": [(split.rows or list(range(1, len(split) + 1)))[i["row"]] for i in found],
        "text": [split.texts[i["row"]] for i in found],
        **({"text_pair": [split.pairs[i["row"]] for i in found]} if split.pairs is not None else {}),
        "given_label": [names[i["given"]] for i in found],
        "suggested_label": [names[i["suggested"]] for i in found],
        "score": [round(i["score"], 4) for i in found]})
    if origin:
        frame.insert(0, "split", origin)
    return frame


def write_training_review(folder: str | Path, data: PreparedData, validation_logits: torch.Tensor,
                          train_logits: torch.Tensor) -> dict:
    """Store the validation rows (for the error browser) and the label issues of both splits; return the counts.

    Validation probabilities are out-of-sample and set the per-label thresholds; training rows are judged by the
    same thresholds, though their probabilities come from a model that saw them (so it finds fewer of them)."""
    with written_whole(Path(folder)) as staging:
        return _write_review(staging, data, validation_logits, train_logits)


def _write_review(folder: Path, data: PreparedData, validation_logits: torch.Tensor,
                  train_logits: torch.Tensor) -> dict:
    rows_frame(data.validation, validation_logits, data.labels).to_parquet(folder / VALIDATION, index=False)
    val_probs, train_probs = validation_logits.softmax(-1), train_logits.softmax(-1)
    thresholds = class_thresholds(val_probs.double(), data.validation.labels)
    issues = pd.concat([issues_frame(data.validation, val_probs, data.labels, origin="validation"),
                        issues_frame(data.train, train_probs, data.labels, thresholds, origin="training")])
    issues = issues.sort_values("score", ascending=False, kind="stable")
    issues.to_parquet(folder / LABEL_ISSUES, index=False)
    return {"validation": int((issues["split"] == "validation").sum()),
            "training": int((issues["split"] == "training").sum())}
