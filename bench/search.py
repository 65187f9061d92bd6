"""What a search finds within its budget, against each method at its defaults: one `adapterlab search` per data
set, run by one `adapterlab worker` on this machine, as a user would run them.

The per-method defaults are the search's own first trials, which are exactly `adapterlab train --method M` with
no other flag on the same data, validation file and seed. Data: TREC (train.csv, validated on test.csv) and SMS
spam (train.csv, validation.csv) from ../shared/data or ADAPTERLAB_SHARED_DATA; elsewhere export
`datasets.load_dataset("trec")` / `("sms_spam")` to CSV with `text,label` columns.

Prints one JSON line per set, appends it to --out, and prints the table docs/search.md shows.
Usage: python bench/search.py [--sets trec,sms] [--budget-minutes 15] [--out docs/search.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ADAPTERLAB_SHARED_DATA", ROOT.parent / "shared" / "data"))
SETS = {"trec": ("trec/train.csv", "trec/test.csv"), "sms": ("sms_spam/train.csv", "sms_spam/validation.csv")}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def run_search(name: str, budget: float, methods: str | None) -> dict:
    """A fresh data directory, one worker, one `adapterlab search --wait --json`; the worker stops after."""
    train, validation = SETS[name]
    env = {**os.environ, "ADAPTERLAB_HOME": tempfile.mkdtemp(prefix=f"search-{name}-"), "HF_HUB_OFFLINE": "1"}
    worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "--cpu"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    command = [sys.executable, "-m", "app.cli", "search", "--data", str(DATA / train), "--validation",
               str(DATA / validation), "--budget-minutes", str(budget), "--wait", "--json", "--name", name]
    if methods:
        command += ["--methods", methods]
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    finally:
        worker.send_signal(signal.SIGINT)
        worker.wait()
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["command_seconds"] = round(time.monotonic() - started, 1)
    return result


def summary(name: str, budget: float, result: dict) -> dict:
    trials = result["trials"]
    defaults = {}
    for t in trials[:len(result["methods"])]:  # the first trials: each method at its defaults
        defaults[t["method"]] = round(t["macro_f1"], 4) if t["macro_f1"] is not None else None
    best = result["best"]
    return {"set": name, "cpu": cpu_name(), "cores": os.cpu_count(), "budget_minutes": budget,
            "date": datetime.now(UTC).isoformat(timespec="seconds"), "state": result["state"],
            "trials": len(trials), "pruned": result["pruned"],
            "stopped_at_budget": sum(t["outcome"] == "budget" for t in trials),
            "search_seconds": result["seconds"], "defaults": defaults,
            "best_default": max(v for v in defaults.values() if v is not None),
            "best": {"macro_f1": round(best["macro_f1"], 4), "method": best["method"], "trial": best["number"],
                     "learning_rate": best["learning_rate"], "epochs": best["epochs"],
                     "options": {k: v for k, v in best["method_options"].items() if v not in ([], None, "")}},
            "importance": result["importance"]}


def table(rows: list[dict]) -> str:
    lines = ["| set | defaults (macro-F1) | best default | search's best | best trial | trials (pruned) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        defaults = ", ".join(f"{m} {v:.3f}" for m, v in r["defaults"].items())
        b = r["best"]
        options = "".join(f", {k} {v}" for k, v in b["options"].items())
        lines.append(f"| {r['set']} | {defaults} | {r['best_default']:.3f} | **{b['macro_f1']:.3f}** | "
                     f"#{b['trial']} {b['method']}, lr {b['learning_rate']:.3g}, {b['epochs']} epochs{options} | "
                     f"{r['trials']} ({r['pruned']}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="trec,sms")
    parser.add_argument("--budget-minutes", type=float, default=15.0)
    parser.add_argument("--methods", default=None, help="as `adapterlab search --methods` (default: its own)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "search.jsonl"))
    args = parser.parse_args()
    rows = []
    for name in args.sets.split(","):
        row = summary(name, args.budget_minutes, run_search(name, args.budget_minutes, args.methods))
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        rows.append(row)
    print(table(rows))


if __name__ == "__main__":
    main()
