"""Word attributions: how long `Predictor.explain` takes for a 30-token sentence on the bundled model, and how far
Integrated Gradients' sum is off the logit difference (captum's delta) at each number of points.

    python bench/attribution.py                      # trains a Pfeiffer adapter on the demo tickets first (~1 min)
    python bench/attribution.py --adapter FOLDER     # an adapter already trained on the bundled model

Prints a markdown table for docs/benchmarks.md ("Word attributions").
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from engine import attribution  # noqa: E402
from engine.data import DEMO_DATA  # noqa: E402
from engine.inference import Predictor  # noqa: E402

SENTENCES = [  # 30 tokens each with [CLS] and [SEP] on the bundled tokenizer
    "I was charged twice for my subscription this month, and nobody from your support team has answered any of "
    "my three emails about the refund yet",
    "The app keeps crashing whenever I try to upload a photo from my phone, even after reinstalling it and "
    "restarting the device twice",
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--adapter", help="adapter folder (default: train a Pfeiffer one on the demo tickets)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tickets", type=int, default=40, help="demo tickets to explain once each (at least 1)")
    args = p.parse_args()
    if args.tickets < 1:
        p.error("--tickets must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = args.adapter or str(Path(tempfile.mkdtemp()) / "pfeiffer")
    if not args.adapter:
        subprocess.run([sys.executable, "-m", "app.cli", "train", "--data", str(DEMO_DATA), "--method", "pfeiffer",
                        "--output", folder, "--json"], cwd=ROOT, check=True, capture_output=True)
    predictor = Predictor()
    model, name = predictor.load(folder)
    labels = len(model.adapters[name].labels)
    print(f"{labels} labels, {torch.get_num_threads()} torch threads\n")
    print("| sentence | tokens | `Predictor.explain` median (min) | points used | worst miss / largest logit change |")
    print("|---|---:|---:|---:|---:|")
    for i, text in enumerate(SENTENCES, 1):
        predictor.explain(folder, text)  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            predictor.explain(folder, text)
            times.append(time.perf_counter() - start)
        found = attribution.explain(model, name, text)
        change = (found.token_scores.sum(-1) - found.deltas).abs().max()
        print(f"| {i} | {len(found.tokens)} | {statistics.median(times):.2f} s ({min(times):.2f}) | {found.n_steps} "
              f"| {float(found.deltas.abs().max() / change):.1%} |")
    tickets = [row["text"] for row in csv.DictReader(open(DEMO_DATA, encoding="utf-8"))][:args.tickets]
    times, points = [], []
    for text in tickets:
        start = time.perf_counter()
        found = attribution.explain(model, name, text)
        times.append(time.perf_counter() - start)
        points.append(found.n_steps)
    print(f"\n{len(tickets)} demo tickets: `attribution.explain` median {statistics.median(times):.2f} s, max "
          f"{max(times):.2f} s; {sum(p > attribution.N_STEPS for p in points)} needed more than "
          f"{attribution.N_STEPS} points for some label (most: {max(points)})")
    print("\nthe miss at fixed points (no second pass), worst label / largest logit change:\n")
    print("| points | " + " | ".join(f"sentence {i}" for i in range(1, len(SENTENCES) + 1))
          + f" | {len(tickets)} demo tickets: median / worst |")
    print("|---:|" + "---:|" * (len(SENTENCES) + 1))
    for steps in (10, 12, 16, 24, 32, 64):
        misses = [_miss(model, name, text, steps) for text in SENTENCES + tickets]
        worst = sorted(misses[len(SENTENCES):])
        print(f"| {steps} | " + " | ".join(f"{m:.1%}" for m in misses[:len(SENTENCES)])
              + f" | {statistics.median(worst):.1%} / {worst[-1]:.1%} |")


def _miss(model, name: str, text: str, steps: int) -> float:
    """How far the worst label's attributions are off its logit difference, against the largest difference."""
    found = attribution.explain(model, name, text, n_steps=steps, max_steps=steps)
    return float(found.deltas.abs().max() / (found.token_scores.sum(-1) - found.deltas).abs().max())


if __name__ == "__main__":
    main()
