"""Class-weighted loss against the plain one on strongly imbalanced real data: macro-F1 and recall per label.

Sets (from ../shared/data or ADAPTERLAB_SHARED_DATA; elsewhere: the UCI SMS Spam Collection, and AG News's test
split from `datasets.load_dataset("ag_news")`):
- sms: SMS spam as shipped (13% spam), its train/validation files;
- ag3: AG News (train_from_test/validation_from_test) with 'Business' (label 3) cut to 3% of the training rows
  (a seeded sample); validation untouched, so each label's recall is measured on its full share.
Usage: python bench/balance.py [--sets sms,ag3] [--method pfeiffer] [--seeds 42] [--out docs/balance.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
from pathlib import Path

import pandas as pd

from engine.training import TrainConfig, train

DATA = Path(os.environ.get("ADAPTERLAB_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _ag3(folder: Path, seed: int) -> tuple[str, str]:
    frame = pd.read_csv(DATA / "ag_news" / "train_from_test.csv")
    rare, rest = frame[frame.label == 3], frame[frame.label != 3]
    keep = round(0.03 * len(rest) / 0.97)  # 3% of the result
    cut = pd.concat([rest, rare.sample(keep, random_state=seed)]).sample(frac=1, random_state=seed)
    path = folder / "ag3_train.csv"
    cut.to_csv(path, index=False)
    return str(path), str(DATA / "ag_news" / "validation_from_test.csv")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default="sms,ag3")
    p.add_argument("--method", default="pfeiffer")
    p.add_argument("--seeds", default="42")
    p.add_argument("--out", default="docs/balance.jsonl")
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="balance-"))
    for set_name in args.sets.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            if set_name == "sms":
                data, validation = str(DATA / "sms_spam" / "train.csv"), str(DATA / "sms_spam" / "validation.csv")
            else:
                data, validation = _ag3(folder, seed)
            for balance in (False, True):
                random.seed(seed)
                r = train(TrainConfig(data=data, validation=validation, method=args.method, seed=seed,
                                      balance_classes=balance, output=str(folder / f"{set_name}-{seed}-{balance}")))
                row = {"data": set_name, "method": args.method, "seed": seed, "balance_classes": balance,
                       "epochs": len(r.history), "macro_f1": round(r.metrics["macro_f1"], 4),
                       "accuracy": round(r.metrics["accuracy"], 4),
                       "recall": {k: round(v["recall"], 4) for k, v in r.metrics["per_class"].items()},
                       "train_seconds": round(r.train_seconds, 1)}
                print(json.dumps(row), flush=True)
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
