"""One benchmark run of AdapterLab: `engine.training.train` on a CSV, one fresh process per run.

Run by bench/run.py with the project's python. `train` itself reads the data, loads the base model, adds
the adapter, tokenises, trains, evaluates on the validation file and saves the adapter; this script only
times those phases from outside (through the progress and epoch callbacks) and writes one JSON result.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Phases, add_shared_args, current_rss_mb, process_measures, set_threads, write_result  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-model", default=None, help="default: the bundled all-MiniLM-L6-v2")
    p.add_argument("--method", required=True, help="any registered method (engine/methods)")
    p.add_argument("--reduction-factor", type=float, help="bottleneck methods (default: the method's)")
    add_shared_args(p)
    return p.parse_args()


def main() -> None:
    a = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    phases = Phases()
    import torch

    from engine.training import TrainConfig, train

    threads = set_threads(torch, a.threads)
    phases.mark("import")
    marks: dict[str, float] = {}

    def on_progress(p) -> None:  # called (with a huge progress_every) only at the last step of each epoch
        marks["loop_end"] = time.perf_counter()
        phases.rss_mb["train"] = round(current_rss_mb(), 1)

    def before_step() -> bool:  # polled before every step: the first call marks the end of set-up
        if "setup" not in phases.rss_mb:
            phases.rss_mb["setup"] = round(current_rss_mb(), 1)
        return False

    def on_epoch(epoch: int, metrics: dict) -> None:
        marks["eval_end"] = time.perf_counter()
        phases.rss_mb["evaluate"] = round(current_rss_mb(), 1)

    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(data=a.train, validation=a.validation, method=a.method, output=str(Path(tmp) / "ad"),
                             base_model=a.base_model, epochs=a.epochs,
                             method_options={"reduction_factor": a.reduction_factor} if a.reduction_factor else None,
                             learning_rate=a.learning_rate, batch_size=a.batch_size, max_length=a.max_length,
                             warmup_ratio=a.warmup_ratio, seed=a.seed, device=a.device or None)
        start = time.perf_counter()
        result = train(config, on_progress=on_progress, on_epoch=on_epoch, should_cancel=before_step,
                       progress_every=10**9)
        end = time.perf_counter()
    # train() = setup (read data, load model, add adapter, tokenise) + loop + evaluate + save
    loop_end, eval_end = marks["loop_end"], marks["eval_end"]
    phases.seconds["setup"] = round(loop_end - start - result.train_seconds, 3)
    phases.seconds["train"] = round(result.train_seconds, 3)
    phases.seconds["evaluate"] = round(eval_end - loop_end, 3)
    phases.seconds["save"] = round(end - eval_end, 3)
    phases.last = end
    cuda = torch.cuda.is_available() and (a.device or "cuda") == "cuda"
    write_result(a.out, {
        "system": "adapterlab",
        "method": a.method,
        "versions": {"transformers": metadata.version("transformers"), "torch": torch.__version__},
        "device": "cuda" if cuda else "cpu",
        "threads": threads,
        "data_report": result.data_report,
        "trainable_params": result.trainable_params,
        "train_seconds": round(result.train_seconds, 3),
        "train_samples_per_second": round(result.train_samples_per_second, 2),
        "accuracy": result.metrics["accuracy"],
        "macro_f1": result.metrics["macro_f1"],
        **process_measures(phases, torch.cuda.max_memory_allocated() if cuda else None),
    })


if __name__ == "__main__":
    main()
    gc.freeze()  # and exit as the `adapterlab` command does (app/cli.py: run)
