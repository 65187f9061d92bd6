"""Helpers shared by the benchmark runners: standard library only, so both venvs can import this file.

The AdapterLab runner runs in the project's environment (transformers 5); the reference runner runs in
`.venvs/adapterhub` (transformers 4.57, `adapters` 1.3). Neither can import the other's packages, so
everything they must do the same way (read the CSV, score predictions, measure memory, write the result)
lives here.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import sys
import time

PROCESS_START = time.perf_counter()


def read_csv(path: str, text_column: str = "text", label_column: str = "label") -> tuple[list[str], list[int]]:
    """Texts and integer labels of a benchmark CSV (written by bench/run.py: header `text,label`)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r[text_column] for r in rows], [int(r[label_column]) for r in rows]


def scores(labels: list[int], predictions: list[int]) -> dict[str, float]:
    """Accuracy and macro-F1 (mean of per-class F1 over the classes present in labels or predictions)."""
    classes = sorted(set(labels) | set(predictions))
    f1s = []
    for c in classes:
        tp = sum(1 for y, p in zip(labels, predictions, strict=True) if y == c and p == c)
        fp = sum(1 for y, p in zip(labels, predictions, strict=True) if y != c and p == c)
        fn = sum(1 for y, p in zip(labels, predictions, strict=True) if y == c and p != c)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    accuracy = sum(1 for y, p in zip(labels, predictions, strict=True) if y == p) / len(labels)
    return {"accuracy": accuracy, "macro_f1": sum(f1s) / len(f1s)}


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (Linux reports ru_maxrss in KiB, macOS in bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> float:
    """Resident set size now, in MiB (Linux /proc; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except OSError:
        return peak_rss_mb()


class Phases:
    """Wall-clock seconds per phase, measured from the end of the previous one (the first from process start)."""

    def __init__(self) -> None:
        self.last = PROCESS_START
        self.seconds: dict[str, float] = {}
        self.rss_mb: dict[str, float] = {}  # resident memory when each phase ended

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self.last, 3)
        self.rss_mb[name] = round(current_rss_mb(), 1)
        self.last = now

    def total(self) -> float:
        return round(time.perf_counter() - PROCESS_START, 3)


def write_result(path: str, result: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)


def set_threads(torch_module, threads: int | None) -> int:
    """Use `threads` intra-op threads when given (both systems get the same value); return the count in use."""
    if threads:
        torch_module.set_num_threads(threads)
    return torch_module.get_num_threads()


def add_shared_args(p) -> None:
    """The flags both runners take, with the same defaults, so the harness passes one set to either."""
    p.add_argument("--train", required=True)
    p.add_argument("--validation", required=True)
    p.add_argument("--learning-rate", type=float, required=True)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=80)
    p.add_argument("--warmup-ratio", type=float, default=0.06)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--device", default="", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--out", required=True)
