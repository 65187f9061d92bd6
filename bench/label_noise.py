"""How well the suspicious-label list finds labels flipped on purpose: precision of its top 100.

A seeded sample of SST-2 (../shared/data or ADAPTERLAB_SHARED_DATA; elsewhere `datasets.load_dataset("glue",
"sst2")` exported to CSV) is split into a training file and a held-out file, and 5% of the labels of each are
flipped. An adapter trains on the training file (a job's review: its validation split and training rows), then
`adapterlab label-issues` runs on the held-out file. Prints one JSON line per list and appends it to --out.
Usage: python bench/label_noise.py [--train-rows 4000] [--holdout-rows 2000] [--method pfeiffer] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from engine.inference import Predictor
from engine.review import LABEL_ISSUES
from engine.training import TrainConfig, train

DATA = Path(os.environ.get("ADAPTERLAB_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
TOP = 100


def flipped(frame: pd.DataFrame, share: float, rng: np.random.Generator) -> pd.DataFrame:
    """A copy with `share` of the labels flipped (0 <-> 1) and a `flipped` column saying which."""
    out = frame.reset_index(drop=True).copy()
    out["flipped"] = False
    rows = rng.choice(len(out), round(share * len(out)), replace=False)
    out.loc[rows, "label"] = 1 - out.loc[rows, "label"]
    out.loc[rows, "flipped"] = True
    return out


def _score(issues: pd.DataFrame, truth: pd.DataFrame, name: str, **extra) -> dict:
    """Precision of the top 100 (and of the whole list), recall of the flipped rows."""
    is_flipped = set(truth.index[truth["flipped"]] + 1)  # file rows are 1-based
    top = issues.head(TOP)
    return {"list": name, "rows": len(truth), "flipped": len(is_flipped), "listed": len(issues),
            f"top{TOP}_flipped": int(top["row"].isin(is_flipped).sum()),
            "precision_all": round(float(issues["row"].isin(is_flipped).mean()), 4) if len(issues) else None,
            "recall": round(len(set(issues["row"]) & is_flipped) / max(1, len(is_flipped)), 4), **extra}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-rows", type=int, default=4000)
    p.add_argument("--holdout-rows", type=int, default=2000)
    p.add_argument("--share", type=float, default=0.05)
    p.add_argument("--method", default="pfeiffer")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="docs/label_noise.jsonl")
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    sample = pd.read_csv(DATA / "sst2" / "train.csv").sample(args.train_rows + args.holdout_rows,
                                                              random_state=args.seed)
    folder = Path(tempfile.mkdtemp(prefix="label-noise-"))
    train_frame = flipped(sample.iloc[:args.train_rows], args.share, rng)
    holdout = flipped(sample.iloc[args.train_rows:], args.share, rng)
    train_frame.drop(columns="flipped").to_csv(folder / "train.csv", index=False)
    holdout.drop(columns="flipped").to_csv(folder / "holdout.csv", index=False)
    result = train(TrainConfig(data=str(folder / "train.csv"), method=args.method, seed=args.seed,
                               output=str(folder / "adapter")), review_dir=str(folder / "review"))
    common = {"method": args.method, "seed": args.seed, "validation_macro_f1": round(result.metrics["macro_f1"], 4)}
    job_list = pd.read_parquet(folder / "review" / LABEL_ISSUES)
    rows = [_score(job_list, train_frame, "job review (validation split + training rows)", **common),
            _score(job_list[job_list["split"] == "validation"], train_frame, "job review, validation split only",
                   **common),
            _score(Predictor().label_issues(folder / "adapter", folder / "holdout.csv"), holdout,
                   "label-issues on the held-out file", **common)]
    for row in rows:
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
