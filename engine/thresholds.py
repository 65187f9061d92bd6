"""Saved decision settings of an adapter: its binary threshold and whether predict uses the fitted temperature.

A threshold is a probability of the label it is for, as predict computes it (with the temperature when that is
on). Switching the temperature moves the value so that the same rows stay on the same side: for two labels
p = sigmoid(margin / T), so a threshold keeps its logit margin.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import torch

from engine.adapter_io import read_metadata, update_metadata
from engine.calibration import choose_threshold, pr_curve, temperature_in_use
from engine.errors import ConfigError, DataError
from engine.review import logits_of


def curve(frame: pd.DataFrame, labels: list[str], label: str, temperature: float) -> list[dict]:
    """The precision/recall curve of `label` over stored rows (engine/review.py), at this temperature."""
    probs = (logits_of(frame, len(labels)) / temperature).softmax(-1)[:, labels.index(label)]
    return pr_curve(probs, (frame["label"] == label).tolist())


def positive_label(meta: dict, label: str | None) -> str:
    """The label a threshold is for: the one named, else the second (as scikit-learn's pos_label=1)."""
    labels = meta["labels"]
    if len(labels) != 2:
        raise ConfigError(f"A decision threshold is for adapters with two labels; this one has {len(labels)}.")
    if label is not None and label not in labels:
        raise ConfigError(f"No label {label!r}; the adapter's labels are {labels[0]!r} and {labels[1]!r}.")
    return label or labels[1]


def pick(frame: pd.DataFrame, meta: dict, rule: str, target: float | None, label: str | None) -> dict:
    """The threshold a rule picks on these rows: {label, value, rule, target, precision, recall, f1}."""
    label = positive_label(meta, label)
    if target is not None and not 0 < target <= 1:
        raise ConfigError(f"The target {rule} must be between 0 and 1 (for example 0.9), not {target:g}.")
    points = curve(frame, meta["labels"], label, temperature_in_use(meta))
    try:
        point = choose_threshold(points, rule, target)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    # halfway to the next lower score: no stored row sits on the threshold, so rounding never moves one across
    lower = [p["threshold"] for p in points if p["threshold"] < point["threshold"]]
    value = (point["threshold"] + (max(lower) if lower else 0.0)) / 2
    return {"label": label, "value": value, "rule": rule, "target": target,
            **{k: round(point[k], 4) for k in ("precision", "recall", "f1")}}


def set_threshold(folder: str | Path, data: str | Path | None, rule: str = "max_f1", target: float | None = None,
                  label: str | None = None, text_column: str | None = None, text_pair_column: str | None = None,
                  label_column: str | None = None) -> dict | None:
    """Choose the threshold on a labelled file and save it with the adapter; `data=None` removes it."""
    if data is None:
        update_metadata(folder, threshold=None)
        return None
    from engine.inference import Predictor

    meta = read_metadata(folder)
    positive_label(meta, label)
    frame = Predictor().evaluate(folder, data, text_column, text_pair_column, label_column).frame
    chosen = pick(frame, meta, rule, target, label)
    update_metadata(folder, threshold=chosen)
    return chosen


def set_temperature_use(folder: str | Path, on: bool) -> dict:
    """Use the fitted temperature (or not); a threshold keeps its operating point."""
    meta = read_metadata(folder)
    if "temperature" not in meta:
        raise ConfigError(f"{folder}: this adapter has no fitted temperature (it was trained before AdapterLab "
                          "calibrated adapters, or elsewhere).")
    threshold = meta.get("threshold")
    if threshold and meta.get("apply_temperature", True) != on:
        old, new = temperature_in_use(meta), float(meta["temperature"]) if on else 1.0
        v = min(max(threshold["value"], 1e-12), 1 - 1e-12)
        margin = math.log(v / (1 - v)) * old
        threshold = {**threshold, "value": float(torch.sigmoid(torch.tensor(margin / new, dtype=torch.float64)))}
    return update_metadata(folder, apply_temperature=on, threshold=threshold)
