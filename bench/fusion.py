"""AdapterFusion against a single adapter on a small target set: macro-F1 and training time.

    python bench/fusion.py          # ~6 minutes on 2 cores

Target: 300 SST-2 training sentences (`../shared/data`), evaluated on SST-2's 872 validation sentences. Source
adapters (Pfeiffer, 1 epoch each, trained once, their time reported apart): sentiment on 4,000 other SST-2
sentences (a related task with more data), SMS spam (3,000 rows) and AG News topics (4,000 rows). Compared on the
300 target rows, 3 epochs each, defaults otherwise: a Pfeiffer adapter alone; Fusion of the SST-2 and SMS
adapters; Fusion of all three; and, as the ceiling of what the sources know, the SST-2 source adapter on the
target's validation set without any training on the target. Writes bench/results/fusion-<cpu>.json and the
`bench:fusion` block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import os
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

DATA = ROOT.parent / "shared" / "data"
TARGET_ROWS = 300


def _subset(source: Path, out: Path, start: int, rows: int) -> Path:
    with source.open(newline="", encoding="utf-8") as f:
        found = list(csv.DictReader(f))[start : start + rows]
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "label": r["label"]} for r in found)
    return out


def _train(data: Path, validation: Path, method: str, output: Path, epochs: int, fuse: list[str] | None = None
           ) -> dict:
    from engine.training import TrainConfig, train

    start = time.perf_counter()
    result = train(TrainConfig(data=str(data), validation=str(validation), method=method, output=str(output),
                               epochs=epochs, method_options={"fuse": fuse} if fuse else None))
    return {"adapter_dir": result.adapter_dir, "macro_f1": result.metrics["macro_f1"],
            "accuracy": result.metrics["accuracy"], "train_seconds": round(result.train_seconds, 1),
            "wall_seconds": round(time.perf_counter() - start, 1), "trainable_params": result.trainable_params}


def markdown(report: dict) -> str:
    lines = [f"{report['date']}, CPU: {report['cpu']}, {report['cores']} cores, bundled model, target: "
             f"{TARGET_ROWS} SST-2 training sentences, 3 epochs, scored on SST-2 validation (872). "
             f"`{report['command']}`", "",
             "| on the target | macro-F1 | accuracy | trainable parameters | training s | whole run s |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in report["target"].items():
        lines.append(f"| {name} | {r['macro_f1']:.4f} | {r['accuracy']:.4f} | {r['trainable_params']:,} | "
                     f"{r['train_seconds']} | {r['wall_seconds']} |")
    sst2 = report["sst2_source_alone"]
    lines += ["", "Source adapters (Pfeiffer, 1 epoch, trained once): "
              + ", ".join(f"{n} {r['train_seconds']} s (macro-F1 {r['macro_f1']:.3f} on its own validation)"
                          for n, r in report["sources"].items()) + ".",
              f"The SST-2 source adapter alone on the target's validation set: macro-F1 {sst2['macro_f1']:.4f}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"), help="docs page to update, or 'none'")
    a = p.parse_args(argv)
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} is missing: the benchmark reads SST-2, SMS spam and AG News from it.")
    from engine.inference import Predictor
    from engine.precision import cpu_model

    with tempfile.TemporaryDirectory(prefix="adapterlab-fusion-") as tmp:
        tmp = Path(tmp)
        sst2_val = DATA / "sst2" / "validation.csv"
        target = _subset(DATA / "sst2" / "train.csv", tmp / "target.csv", 0, TARGET_ROWS)
        sources = {
            "sst2": _train(_subset(DATA / "sst2" / "train.csv", tmp / "sst2.csv", 10_000, 4000), sst2_val,
                           "pfeiffer", tmp / "sst2", 1),
            "sms": _train(_subset(DATA / "sms_spam" / "train.csv", tmp / "sms.csv", 0, 3000),
                          DATA / "sms_spam" / "validation.csv", "pfeiffer", tmp / "sms", 1),
            "agnews": _train(_subset(DATA / "ag_news" / "train_from_test.csv", tmp / "ag.csv", 0, 4000),
                             DATA / "ag_news" / "validation_from_test.csv", "pfeiffer", tmp / "agnews", 1)}
        folders = {k: v["adapter_dir"] for k, v in sources.items()}
        targets = {
            "Pfeiffer alone": _train(target, sst2_val, "pfeiffer", tmp / "single", 3),
            "Fusion of SST-2 + SMS adapters": _train(target, sst2_val, "fusion", tmp / "fusion2", 3,
                                                     [folders["sst2"], folders["sms"]]),
            "Fusion of SST-2 + SMS + AG News adapters": _train(target, sst2_val, "fusion", tmp / "fusion3", 3,
                                                               [folders["sst2"], folders["sms"], folders["agnews"]])}
        alone = Predictor().evaluate(folders["sst2"], sst2_val).metrics
    report = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "cpu": cpu_model(), "cores": os.cpu_count(),
              "command": "python bench/fusion.py", "sources": sources, "target": targets,
              "sst2_source_alone": {"macro_f1": alone["macro_f1"], "accuracy": alone["accuracy"]}}
    results = ROOT / "bench" / "results" / f"fusion-{cpu_family(report['cpu'])}.json"
    publish(report, [results], markdown(report), a.docs, "fusion", "## AdapterFusion")
    return 0


if __name__ == "__main__":
    sys.exit(main())
