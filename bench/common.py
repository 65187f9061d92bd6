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
from pathlib import Path

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
    """This process's peak resident set size in MiB: Linux's VmHWM, which starts afresh at exec (ru_maxrss
    keeps the parent's peak when that was larger); elsewhere ru_maxrss (KiB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
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


def loadavg() -> float | None:
    """The 1-minute load average (Linux), recorded beside each run to show competing work."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except OSError:
        return None


def process_measures(phases: Phases, peak_gpu_bytes: int | None) -> dict:
    """The resource figures every runner reports, measured the same way on both sides."""
    return {"phases": phases.seconds, "rss_after_phase_mb": phases.rss_mb, "in_process_seconds": phases.total(),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "peak_gpu_mb": None if peak_gpu_bytes is None else round(peak_gpu_bytes / 2**20, 1)}


def write_docs_block(path, name: str, body: str, heading: str) -> None:
    """Replace the `bench:NAME` block of the docs page with `body`, keeping the prose around it; append the block
    under `heading` where the page has none yet."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{body}\n{end}"
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n{heading}\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def publish(report: dict, json_paths: list, body: str, docs, name: str, heading: str) -> None:
    """Write the report's JSON files, print its tables and put them into the docs page (unless docs is 'none')."""
    for path in json_paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1))
    print("\n" + body)
    if str(docs) != "none":
        write_docs_block(Path(docs), name, body, heading)
        print(f"\nwrote {json_paths[0]} and {docs}")


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


def latency(send, texts: list, warm: int = 0) -> dict:
    """p50 and p95 in ms of `send(text)` over `texts`, after `warm` untimed calls on the first ones."""
    import statistics
    import time

    for text in texts[:warm]:
        send(text)
    times = []
    for text in texts:
        start = time.perf_counter()
        send(text)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2), "p95_ms": round(times[int(len(times) * 0.95)], 2)}
