"""Choose per-method defaults (learning rate, epochs) by measurement on real data sets.

Trains each method at a few learning rates for up to 3 epochs on a sample of each data set in
../shared/data (or ADAPTERLAB_SHARED_DATA; elsewhere: `datasets.load_dataset("glue", "sst2")`, `"trec"`,
`("glue", "mrpc")` exported to CSV), appending one JSON line per run to --out.
Usage: python bench/defaults_sweep.py [--sets sst2,trec,mrpc] [--methods pfeiffer,houlsby,ia3,lora,...]
                                      [--rates 1e-3,3e-3|default] [--train-samples 1000] [--base-dropout off|on|both]
                                      [--out docs/defaults.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from engine import methods
from engine.training import TrainConfig, train

DATA = Path(os.environ.get("ADAPTERLAB_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SETS = {  # name: (train, validation, text, pair)
    "sst2": ("sst2/train.csv", "sst2/validation.csv", "text", None),
    "trec": ("trec/train.csv", "trec/test.csv", "text", None),
    "mrpc": ("mrpc/train.csv", "mrpc/validation.csv", "text_a", "text_b"),
}
GRID = {"pfeiffer": [3e-4, 1e-3, 3e-3], "houlsby": [3e-4, 1e-3, 3e-3], "ia3": [3e-3, 8e-3, 2e-2],
        "parallel": [3e-4, 1e-3, 3e-3], "lora": [1e-3, 3e-3, 1e-2], "prefix": [1e-3, 3e-3, 1e-2],
        "prompt": [3e-3, 3e-2, 3e-1], "full": [2e-5, 5e-5, 1e-4], "compacter": [1e-3, 3e-3, 1e-2]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--methods", default=",".join(GRID))
    p.add_argument("--rates", help="comma-separated learning rates, or 'default' for each method's default "
                                   "(default: each method's grid)")
    p.add_argument("--train-samples", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--base-dropout", choices=["off", "on", "both"], default="off",
                   help="dropout inside the frozen base while training (off: AdapterLab's default)")
    p.add_argument("--out", default="docs/defaults.jsonl")
    args = p.parse_args()
    for set_name in args.sets.split(","):
        train_file, valid_file, text, pair = SETS[set_name]
        for method in args.methods.split(","):
            rates = ([methods.get(method).defaults["learning_rate"]] if args.rates == "default"
                     else [float(r) for r in args.rates.split(",")] if args.rates else GRID[method])
            dropouts = {"off": [False], "on": [True], "both": [False, True]}[args.base_dropout]
            for lr, base_dropout in ((lr, d) for lr in rates for d in dropouts):
                start = time.perf_counter()
                config = TrainConfig(data=str(DATA / train_file), validation=str(DATA / valid_file), method=method,
                                     text_column=text, text_pair_column=pair, learning_rate=lr, epochs=args.epochs,
                                     max_train_samples=args.train_samples, base_dropout=base_dropout,
                                     output=str(Path(tempfile.gettempdir()) / "sweep" / f"{set_name}-{method}-{lr}"))
                r = train(config)
                row = {"data": set_name, "method": method, "learning_rate": lr, "base_dropout": base_dropout,
                       "accuracy_by_epoch": [round(h["accuracy"], 4) for h in r.history],
                       "macro_f1_by_epoch": [round(h["macro_f1"], 4) for h in r.history],
                       "seconds": round(time.perf_counter() - start, 1)}
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
