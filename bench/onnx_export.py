"""An ONNX export on onnxruntime against AdapterLab's torch predictor: one sentence's latency and batch throughput.

    python bench/onnx_export.py          # ~2 minutes

A Pfeiffer adapter and a LoRA adapter on the bundled model (weights moved off their initial values: speed does
not depend on what they learned) are exported with `engine.export.export_onnx` (its parity check on SST-2
validation sentences, `../shared/data/sst2`). Then, per adapter and interleaved: p50 / p95 of one SST-2 sentence
through the export's own `predict.py` `Classifier` (tokenizers + onnxruntime) and through `Predictor.predict`;
throughput over 512 sentences in batches of 32 both ways. Both use every core (torch's and onnxruntime's
default threads). Writes bench/results/onnx-<cpu>.json and the `bench:onnx` block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
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

from common import latency, publish  # noqa: E402
from run import cpu_family  # noqa: E402

SST2 = ROOT.parent / "shared" / "data" / "sst2"
METHODS = ("pfeiffer", "lora")


def _classifier(folder: Path):
    """The export's predict.py `Classifier`, imported from the export folder as a user would."""
    spec = importlib.util.spec_from_file_location(f"predict_{folder.name}", folder / "predict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Classifier(folder)


def _measure(method: str, work: Path, texts: list[str], sst2_csv: Path) -> dict:
    import torch

    from engine.adapter_io import save_adapter
    from engine.adapter_model import AdapterModel
    from engine.export import export_onnx
    from engine.inference import Predictor

    torch.manual_seed(0)
    model = AdapterModel()
    model.add_adapter(method, method, ["negative", "positive"])
    with torch.no_grad():
        for p in model.trainable_parameters(method):
            p.add_(torch.randn_like(p) * 0.02)
    folder = save_adapter(model, method, work / method, {"max_length": 128})
    start = time.perf_counter()
    report = export_onnx(folder, work / f"{method}-onnx", sst2_csv)
    export_seconds = time.perf_counter() - start
    onnx, predictor = _classifier(work / f"{method}-onnx"), Predictor(batch_size=32)
    one, batch = texts[:200], texts[:512]
    for text in one[:20]:  # warm both
        onnx.predict([text])
        predictor.predict(folder, text)
    blocks = {"onnxruntime": [], "torch": []}
    for k in range(0, len(one), 50):  # interleaved blocks
        blocks["onnxruntime"].append(latency(lambda t: onnx.predict([t]), one[k : k + 50]))
        blocks["torch"].append(latency(lambda t: predictor.predict(folder, t), one[k : k + 50]))
    throughput = {"onnxruntime": [], "torch": []}
    for _ in range(3):
        for how, run in (("onnxruntime", lambda: onnx.predict(batch)),
                         ("torch", lambda: predictor.probabilities(folder, batch))):
            start = time.perf_counter()
            run()
            throughput[how].append(len(batch) / (time.perf_counter() - start))
    return {"method": method, "export_seconds": round(export_seconds, 1), "onnx_mb": report.onnx_mb,
            "max_abs_diff": report.max_abs_diff, "parity_rows": report.rows_checked,
            "p50_ms": {h: statistics.median(b["p50_ms"] for b in v) for h, v in blocks.items()},
            "p95_ms": {h: statistics.median(b["p95_ms"] for b in v) for h, v in blocks.items()},
            "per_second": {h: statistics.median(v) for h, v in throughput.items()}, "batch_rows": len(batch)}


def markdown(report: dict) -> str:
    lines = [f"{report['date']}, CPU: {report['cpu']}, {report['cores']} cores, bundled model. `{report['command']}`",
             "", "| adapter | export | graph | parity (max \\|dp\\|) | one sentence p50 / p95: onnxruntime | torch "
             "| batch of 32, sentences/s: onnxruntime | torch |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["runs"]:
        lines.append(f"| {r['method']} | {r['export_seconds']} s | {r['onnx_mb']} MB | {r['max_abs_diff']:.1e} on "
                     f"{r['parity_rows']} rows | {r['p50_ms']['onnxruntime']:.1f} / {r['p95_ms']['onnxruntime']:.1f} "
                     f"ms | {r['p50_ms']['torch']:.1f} / {r['p95_ms']['torch']:.1f} ms | "
                     f"{r['per_second']['onnxruntime']:.0f} | {r['per_second']['torch']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"), help="docs page to update, or 'none'")
    a = p.parse_args(argv)
    if not SST2.is_dir():
        raise SystemExit(f"{SST2} is missing: see the docstring for where SST-2 comes from.")
    from engine.precision import cpu_model

    with (SST2 / "validation.csv").open(newline="", encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    with tempfile.TemporaryDirectory(prefix="adapterlab-onnx-") as tmp:
        runs = [_measure(method, Path(tmp), texts, SST2 / "validation.csv") for method in METHODS]
    report = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "cpu": cpu_model(), "cores": os.cpu_count(),
              "command": "python bench/onnx_export.py", "runs": runs}
    results = ROOT / "bench" / "results" / f"onnx-{cpu_family(report['cpu'])}.json"
    publish(report, [results], markdown(report), a.docs, "onnx", "## ONNX export")
    return 0


if __name__ == "__main__":
    sys.exit(main())
