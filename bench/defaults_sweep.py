"""Choose per-method defaults (learning rate, epochs) by measurement on real data sets.

Trains every method at a few learning rates for up to 3 epochs on a sample of each data set in
../shared/data (or ADAPTERLAB_SHARED_DATA), and writes the per-epoch validation accuracy to JSON and
a markdown summary. Usage: python bench/defaults_sweep.py [--train-samples 1500] [--out docs/defaults.md]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from engine.training import TrainConfig, train

DATA = Path(os.environ.get("ADAPTERLAB_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SETS = {  # name: (train, validation, text, pair)
    "sst2": ("sst2/train.csv", "sst2/validation.csv", "text", None),
    "trec": ("trec/train.csv", "trec/test.csv", "text", None),
    "mrpc": ("mrpc/train.csv", "mrpc/validation.csv", "text_a", "text_b"),
}
GRID = {"pfeiffer": [3e-4, 1e-3, 3e-3], "houlsby": [3e-4, 1e-3, 3e-3], "ia3": [3e-3, 8e-3, 2e-2]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-samples", type=int, default=1500)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--out", default="docs/defaults.md")
    args = p.parse_args()
    results = []
    for set_name, (train_file, valid_file, text, pair) in SETS.items():
        for method, rates in GRID.items():
            for lr in rates:
                start = time.perf_counter()
                config = TrainConfig(data=str(DATA / train_file), validation=str(DATA / valid_file), method=method,
                                     text_column=text, text_pair_column=pair, learning_rate=lr, epochs=args.epochs,
                                     max_train_samples=args.train_samples,
                                     output=str(Path(tempfile.gettempdir()) / "sweep" / f"{set_name}-{method}-{lr}"))
                r = train(config)
                results.append({"data": set_name, "method": method, "learning_rate": lr,
                                "accuracy_by_epoch": [round(h["accuracy"], 4) for h in r.history],
                                "macro_f1_by_epoch": [round(h["macro_f1"], 4) for h in r.history],
                                "seconds": round(time.perf_counter() - start, 1)})
                print(json.dumps(results[-1]), flush=True)
    Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    lines = ["| data | method | lr | " + " | ".join(f"acc e{i + 1}" for i in range(args.epochs)) + " |",
             "|---|---|---|" + "---|" * args.epochs]
    for r in results:
        lines.append(f"| {r['data']} | {r['method']} | {r['learning_rate']:g} | "
                     + " | ".join(f"{a:.3f}" for a in r["accuracy_by_epoch"]) + " |")
    Path(args.out).with_suffix(".table.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
