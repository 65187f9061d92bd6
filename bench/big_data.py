"""Big files: time and peak memory per phase for 10k, 100k and 1M rows, the same job on each.

    python bench/big_data.py                  # 10k, 100k and 1M rows (~230 MB), about 3 minutes
    python bench/big_data.py --rows 10000     # one size

The files are AG News descriptions (`../shared/data/ag_news/test.csv`, 7,600 rows, 4 labels; elsewhere:
`datasets.load_dataset("ag_news", split="test")` written as text,label) repeated to the size, in a temporary
folder. The job is the issue's: IA3, 1 epoch, `--max-train-samples 1000`, validation capped at its default.

Two fresh processes per size, as the product runs them:
- web: what the web server does with an uploaded file: the Data tab's preview and column guesses (its head),
  its summary (every row, `prepare` as the tab calls it), then `worker.api.submit` (checks, snapshot, queue;
  after one submit of the demo data, as a running server has loaded the tokenizer already);
- worker: `engine.training.train` on the submitted snapshot, as the worker runs it: reading the data, the first
  training step (from process start), the whole run.
Peak memory is each process's own (VmHWM). Writes bench/results/big-data-<cpu>.json and the `bench:big-data`
block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from common import peak_rss_mb, publish  # noqa: E402
from run import cpu_family, warm_precision_probe  # noqa: E402

STARTED = time.time()  # a phase process's start: its first training step is timed from here

AG_NEWS = ROOT.parent / "shared" / "data" / "ag_news" / "test.csv"
SIZES = (10_000, 100_000, 1_000_000)
JOB = {"method": "ia3", "epochs": 1, "max_train_samples": 1000, "text_column": "text", "label_column": "label"}


def write_file(rows: int, folder: Path) -> Path:
    with AG_NEWS.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header, body = next(reader), list(reader)
    path = folder / f"ag-news-{rows}.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(body[i % len(body)] for i in range(rows))
    return path


def web_phase(path: str) -> dict:
    """The web server's work on an upload: preview, summary, submit."""
    from app.tabs.data import GUESS_ROWS, MAX_EVAL_SAMPLES
    from engine.data import DEMO_DATA, guess_columns, prepare, read_head, remember_last_file
    from worker import api

    remember_last_file()  # as `adapterlab serve` does
    api.submit({"data": str(DEMO_DATA), **JOB})  # a server's first submit loads the tokenizer: not the file's cost
    out: dict[str, float] = {}
    t = time.perf_counter()
    head, _ = read_head(path, GUESS_ROWS)
    guess = guess_columns(list(head), head)
    out["preview_s"] = time.perf_counter() - t
    t = time.perf_counter()
    prepare(path, text_column=guess["text"], label_column=guess["label"], max_eval_samples=MAX_EVAL_SAMPLES)
    out["summary_s"] = time.perf_counter() - t
    t = time.perf_counter()
    job = api.get_job(api.submit({"data": path, **JOB}))
    out["submit_s"] = time.perf_counter() - t
    out["snapshot"] = str(Path(job["spec"]["data"]))
    return out


def worker_phase(snapshot: str, output: str) -> dict:
    """The worker's run of that job: reading the data, then training."""
    from engine.training import TrainConfig, train

    phases: dict[str, float] = {}  # each set-up phase's start, in order
    first_step: list[float] = []
    config = TrainConfig(data=snapshot, output=output, **JOB)
    train(config, on_phase=lambda what, done, total: phases.setdefault(what, time.time()),
          on_progress=lambda p: first_step or first_step.append(time.time()), progress_every=1)
    starts = list(phases.values())
    return {"prepare_s": starts[1] - starts[0], "first_step_s": first_step[0] - STARTED}


def run_phase(args: list[str]) -> dict:
    """One phase in a fresh process; its JSON line, with its wall time and its own peak memory."""
    t = time.time()
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"{args[0]} phase failed:\n{out.stderr[-3000:]}")
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "process_s": time.time() - t}


def measure(rows: int, folder: Path) -> dict:
    path = write_file(rows, folder)
    print(f"{rows:,} rows ({path.stat().st_size / 2**20:.1f} MB)…", flush=True)
    web = run_phase(["--phase", "web", str(path)])
    worker = run_phase(["--phase", "worker", web["snapshot"], str(folder / f"adapter-{rows}")])
    return {"rows": rows, "file_mb": round(path.stat().st_size / 2**20, 1), "web": web, "worker": worker}


def markdown(report: dict) -> str:
    lines = [f"{report['date']}, CPU: {report['cpu']}, {report['cores']} cores. `{report['command']}`", "",
             "| rows | file | preview + column guesses | summary (every row) | submit (check, snapshot, queue) | "
             "web process peak | worker: read + split | worker: first step | worker: end to end | "
             "worker peak |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["sizes"]:
        w, k = r["web"], r["worker"]
        lines.append(f"| {r['rows']:,} | {r['file_mb']:.1f} MB | {w['preview_s']:.2f} s | {w['summary_s']:.2f} s | "
                     f"{w['submit_s']:.2f} s | {w['peak_rss_mb']:,.0f} MiB | {k['prepare_s']:.2f} s | "
                     f"{k['first_step_s']:.1f} s | {k['process_s']:.1f} s | {k['peak_rss_mb']:,.0f} MiB |")
    sizes = {r["rows"]: r for r in report["sizes"]}
    if 10_000 in sizes and 1_000_000 in sizes:
        ratio = sizes[1_000_000]["worker"]["process_s"] / sizes[10_000]["worker"]["process_s"]
        lines += ["", f"1M rows against 10k, end to end: **{ratio:.2f}x** (target <= 2x); worker peak "
                      f"{sizes[1_000_000]['worker']['peak_rss_mb'] / 1024:.2f} GiB (target <= 2.5 GB)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, action="append", help="a file size in rows (repeatable; default: all)")
    p.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"), help="docs page to update, or 'none'")
    p.add_argument("--phase", choices=["web", "worker"], help=argparse.SUPPRESS)
    p.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.phase == "web":
        print(json.dumps({**web_phase(a.paths[0]), "peak_rss_mb": round(peak_rss_mb(), 1)}))
        return 0
    if a.phase == "worker":
        print(json.dumps({**worker_phase(a.paths[0], a.paths[1]), "peak_rss_mb": round(peak_rss_mb(), 1)}))
        return 0
    if not AG_NEWS.is_file():
        raise SystemExit(f"{AG_NEWS} is missing: see the docstring for where AG News comes from.")
    from engine.precision import cpu_model

    with tempfile.TemporaryDirectory(prefix="adapterlab-big-") as tmp:
        os.environ["ADAPTERLAB_HOME"] = str(Path(tmp) / "home")
        precision = warm_precision_probe("cpu")  # once, before any timed run, as run.py does
        sizes = [measure(rows, Path(tmp)) for rows in (a.rows or SIZES)]
    report = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "cpu": cpu_model(), "cores": os.cpu_count(),
              "command": "python bench/big_data.py" + "".join(f" --rows {r}" for r in a.rows or []),
              "job": JOB, "precision": precision["chosen"], "sizes": sizes}
    results = ROOT / "bench" / "results" / f"big-data-{cpu_family(report['cpu'])}.json"
    publish(report, [results], markdown(report), a.docs, "big-data", "## Big files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
