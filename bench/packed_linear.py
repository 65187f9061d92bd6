"""Packed frozen linears (engine/packed_linear.py) against plain `nn.Linear`, side by side in one process.

    python bench/packed_linear.py        # ~1 minute

One Predictor on the bundled model with a fresh Pfeiffer adapter (timing needs no training); the same module
objects switch between `PackedLinear` and `nn.Linear` every round of 40 calls, 10 rounds, so both settings meet
the same machine (whose speed drifts by tens of percent within minutes on shared CPUs). Measures one SST-2
validation sentence per call (`predict_batch`, the REST endpoint's call) and 32 sentences per call, and the
largest probability difference between the two. Writes bench/results/packed-linear-<cpu>.json and the
`bench:packed-linear` block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import os
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
ROUNDS, CALLS = 10, 40


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"), help="docs page to update, or 'none'")
    a = p.parse_args(argv)
    if not SST2.is_dir():
        raise SystemExit(f"{SST2} is missing: the SST-2 validation sentences are read from there.")
    import torch
    from torch import nn

    from engine.adapter_io import save_adapter
    from engine.adapter_model import AdapterModel
    from engine.inference import Predictor
    from engine.packed_linear import PackedLinear
    from engine.precision import cpu_model

    with (SST2 / "validation.csv").open(newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    with tempfile.TemporaryDirectory(prefix="adapterlab-packed-") as tmp:
        model = AdapterModel()
        model.add_adapter("bench", "pfeiffer", ["negative", "positive"])
        folder = save_adapter(model, "bench", Path(tmp) / "pfeiffer", {"max_length": 128})
        del model
        predictor = Predictor("cpu")
        predictor.predict_batch(texts[:1], [folder])
        layers = [m for m in predictor.models[next(iter(predictor.models))].modules() if type(m) is PackedLinear]
        times: dict[tuple[str, int], list[float]] = {}
        probabilities: dict[str, torch.Tensor] = {}
        for r in range(ROUNDS):
            for setting, cls in (("packed", PackedLinear), ("plain", nn.Linear)):
                for layer in layers:
                    layer.__class__ = cls
                for rows in (1, 32):
                    for call in range(CALLS if rows == 1 else CALLS // 8):
                        start = (r * CALLS + call * rows) % (len(texts) - rows)
                        batch = texts[start : start + rows]
                        began = time.perf_counter()
                        predictor.predict_batch(batch, [folder] * rows)
                        times.setdefault((setting, rows), []).append((time.perf_counter() - began) * 1000)
                probabilities[setting] = predictor.probabilities(folder, texts[:256])
    ms = {key: statistics.median(values) for key, values in times.items()}
    report = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "cpu": cpu_model(), "cores": os.cpu_count(),
              "torch": torch.__version__, "command": "python bench/packed_linear.py",
              "one_sentence_ms": {s: round(ms[(s, 1)], 2) for s in ("packed", "plain")},
              "batch_32_ms": {s: round(ms[(s, 32)], 1) for s in ("packed", "plain")},
              "max_abs_diff": float((probabilities["packed"] - probabilities["plain"]).abs().max()),
              "layers": len(layers)}
    one, batch = report["one_sentence_ms"], report["batch_32_ms"]
    body = "\n".join([
        f"{report['date']}, CPU: {report['cpu']}, {report['cores']} cores, torch {report['torch']}, bundled model "
        f"({report['layers']} frozen linears), one Pfeiffer adapter, {ROUNDS} interleaved rounds. "
        f"`{report['command']}`", "",
        "| `predict_batch` | packed linears | plain `nn.Linear` | speed-up |", "|---|---:|---:|---:|",
        f"| one sentence | {one['packed']:.2f} ms | {one['plain']:.2f} ms | **{one['plain'] / one['packed']:.2f}x** |",
        f"| 32 sentences | {batch['packed']:.1f} ms | {batch['plain']:.1f} ms | "
        f"**{batch['plain'] / batch['packed']:.2f}x** |", "",
        f"Largest probability difference on 256 sentences: {report['max_abs_diff']:.1e}."])
    results = ROOT / "bench" / "results" / f"packed-linear-{cpu_family(report['cpu'])}.json"
    publish(report, [results], body, a.docs, "packed-linear", "## REST endpoint")
    return 0


if __name__ == "__main__":
    sys.exit(main())
