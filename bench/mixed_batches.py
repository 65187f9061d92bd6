"""Rows of one batch on different adapters: one mixed forward pass against looping adapter by adapter.

    python bench/mixed_batches.py        # ~1 minute

Eight adapters of different methods on the bundled model (Houlsby, Pfeiffer, Parallel, Compacter, LoRA, IA3,
prefix and prompt tuning; their weights moved off their initial values, not trained: speed does not depend on
what they learned), 256 SST-2 validation sentences (`../shared/data/sst2`), each given a random adapter. Both ways
predict the same probabilities (the largest difference is reported); interleaved repeats, median of each.
Writes bench/results/mixed-batches-<cpu>.json and the `bench:mixed-batches` block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from common import publish  # noqa: E402
from run import cpu_family  # noqa: E402

SST2 = ROOT.parent / "shared" / "data" / "sst2"
METHODS = ["houlsby", "pfeiffer", "parallel", "compacter", "lora", "ia3", "prefix", "prompt"]


def _adapters(folder: Path) -> list[Path]:
    import torch

    from engine.adapter_io import save_adapter
    from engine.adapter_model import AdapterModel

    torch.manual_seed(0)
    model = AdapterModel()
    out = []
    for method in METHODS:
        model.add_adapter(method, method, ["negative", "positive"])
        with torch.no_grad():
            for p in model.trainable_parameters(method):
                p.add_(torch.randn_like(p) * 0.02)
        out.append(save_adapter(model, method, folder / method, {"max_length": 128}))
    return out


def _loop(predictor, texts: list[str], chosen: list[Path]) -> list[dict]:
    """What a caller without mixed batches does: group the rows by adapter, one batch call per adapter."""
    results: list[dict] = [{} for _ in texts]
    for folder in dict.fromkeys(chosen):
        rows = [i for i, f in enumerate(chosen) if f == folder]
        probs = predictor.probabilities(folder, [texts[i] for i in rows])
        labels = predictor.labels(folder)
        for i, p in zip(rows, probs, strict=True):
            results[i] = {lab: float(x) for lab, x in zip(labels, p, strict=True)}
    return results


def _measure(predictor, texts: list[str], chosen: list[Path], repeats: int) -> dict:
    """Both ways at one batch size: the same probabilities, then interleaved timings."""
    mixed = predictor.predict_batch(texts, chosen)  # loads every adapter, warms both paths
    looped = _loop(predictor, texts, chosen)
    diff = max(abs(m["probabilities"][k] - v) for m, row in zip(mixed, looped, strict=True) for k, v in row.items())
    times: dict[str, list[float]] = {"mixed": [], "loop": []}
    for _ in range(repeats):
        for how, run in (("mixed", lambda: predictor.predict_batch(texts, chosen)),
                         ("loop", lambda: _loop(predictor, texts, chosen))):
            start = time.perf_counter()
            run()
            times[how].append(time.perf_counter() - start)
    return {"batch_size": predictor.batch_size, "mixed": statistics.median(times["mixed"]),
            "loop": statistics.median(times["loop"]), "times": times, "max_abs_diff": diff}


def markdown(report: dict) -> str:
    lines = [f"{report['date']}, CPU: {report['cpu']}, {report['cores']} cores, bundled model, {report['rows']} SST-2 "
             f"sentences spread at random over {len(METHODS)} adapters ({', '.join(METHODS)}), median of "
             f"{report['repeats']} interleaved repeats. `{report['command']}`", "",
             "| batch size | `predict_batch` (mixed) | adapter by adapter | mixed / loop speed | largest difference |",
             "|---:|---:|---:|---:|---:|"]
    for r in report["runs"]:
        lines.append(f"| {r['batch_size']} | {r['mixed']:.3f} s ({report['rows'] / r['mixed']:.0f}/s) | "
                     f"{r['loop']:.3f} s ({report['rows'] / r['loop']:.0f}/s) | **{r['loop'] / r['mixed']:.2f}x** | "
                     f"{r['max_abs_diff']:.1e} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64], help="the Predictor's; 32 by default")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"), help="docs page to update, or 'none'")
    a = p.parse_args(argv)
    if not SST2.is_dir():
        raise SystemExit(f"{SST2} is missing: see the docstring for where SST-2 comes from.")
    from engine.inference import Predictor
    from engine.precision import cpu_model

    with (SST2 / "validation.csv").open(newline="", encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)][: a.rows]
    with tempfile.TemporaryDirectory(prefix="adapterlab-mixed-") as tmp:
        folders = _adapters(Path(tmp))
        rng = random.Random(0)
        chosen = [rng.choice(folders) for _ in texts]
        runs = [_measure(Predictor(batch_size=size), texts, chosen, a.repeats) for size in a.batch_sizes]
    report = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "cpu": cpu_model(), "cores": os.cpu_count(),
              "command": "python bench/mixed_batches.py", "rows": len(texts), "repeats": a.repeats, "runs": runs}
    results = ROOT / "bench" / "results" / f"mixed-batches-{cpu_family(report['cpu'])}.json"
    publish(report, [results], markdown(report), a.docs, "mixed-batches", "## Rows of one batch on different adapters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
