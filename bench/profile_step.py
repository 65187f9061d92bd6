"""Where a training step's time goes on this CPU: torch.profiler over `engine.training.train`'s loop.

    python bench/profile_step.py --method pfeiffer --rows 800           # the precision the engine picks
    ADAPTERLAB_PRECISION=fp32 python bench/profile_step.py ...          # a forced precision

Prints the CPU model, the precision the run used, seconds per phase, and the ops by self CPU time over the
training loop (the first 10 steps left out: oneDNN builds its kernels there). What it showed per CPU family is
in docs/benchmarks.md ("Where the time went").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import SHARED_SST2, machine  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="pfeiffer")
    p.add_argument("--rows", type=int, default=800, help="SST-2 training rows (a seeded sample)")
    p.add_argument("--data", default=str(SHARED_SST2 / "train.csv"), help="a CSV with text and label columns")
    p.add_argument("--max-length", type=int, default=80)
    p.add_argument("--top", type=int, default=25, help="ops to list")
    a = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    import torch
    from torch.profiler import ProfilerActivity, profile

    from engine.training import TrainConfig, train

    prof = profile(activities=[ProfilerActivity.CPU])
    marks: dict[str, float] = {"import": time.perf_counter()}
    steps = {"n": 0}

    def before_step() -> bool:
        steps["n"] += 1
        if steps["n"] == 1:
            marks["setup"] = time.perf_counter()
        if steps["n"] == 11:
            prof.start()
        return False

    def on_progress(_p) -> None:  # called once, at the epoch's last step
        prof.stop()
        marks["train"] = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(data=a.data, method=a.method, output=str(Path(tmp) / "ad"), epochs=1,
                          max_length=a.max_length, max_train_samples=a.rows, max_eval_samples=200)
        result = train(cfg, on_progress=on_progress, should_cancel=before_step, progress_every=10**9,
                       progress_seconds=float("inf"))
        precision = json.loads((Path(result.adapter_dir) / "adapterlab.json").read_text())["precision"]
    done = time.perf_counter()
    print(f"CPU: {machine()['cpu']}; torch {torch.__version__}; threads {torch.get_num_threads()}")
    print(f"precision: {precision}")
    print(f"phases (s): import {marks['import'] - started:.1f}, setup {marks['setup'] - marks['import']:.1f}, "
          f"train {marks['train'] - marks['setup']:.1f} ({steps['n']} steps), "
          f"evaluate + save {done - marks['train']:.1f}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.top))


if __name__ == "__main__":
    main()
