"""Inference benchmark: single-text latency, batch throughput, adapter switching, memory per loaded adapter.

    python bench/inference.py            # full: 300 single-text predictions, 24 adapters
    python bench/inference.py --quick    # fewer predictions

Steps, each in its own fresh process:
1. train three small real adapters (Pfeiffer, Houlsby, IA3) on 200 SST-2 sentences with engine.training.train
   and copy each into 8 folders, so 24 distinct adapter folders exist (bench/.work/inference-adapters);
2. measure with engine.inference.Predictor, the class the CLI, web app and worker use:
   - cold start: Predictor() + loading the first adapter (reads the base model) + the first prediction;
   - single-text latency `Predictor.predict(folder, text)` over SST-2 validation sentences: p50 / p95 / mean;
   - batch throughput `Predictor.probabilities(folder, texts)` on all 872 validation sentences (texts/s);
   - switching: `AdapterModel.set_active` alone, and a prediction right after switching adapter against one
     on the adapter already active (the switch's cost as a user sees it);
   - memory: RSS after each extra adapter is loaded and has predicted once, against the adapter's weight
     size (adapter + head parameters x 4 bytes); the glibc heap is trimmed before each reading so freed
     loader buffers do not count.
Writes bench/results/inference-<device>-<stamp>.json and rewrites the `bench:inference` section of
docs/benchmarks.md (full runs only).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))
from common import current_rss_mb, loadavg, peak_rss_mb, publish  # noqa: E402

WORK = BENCH / ".work"
ADAPTERS = WORK / "inference-adapters"
METHODS = ("pfeiffer", "houlsby", "ia3")
TARGETS = {"p50_ms": 20.0, "switch_ms": 50.0, "memory_ratio": 2.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="60 single-text predictions, no docs update")
    p.add_argument("--copies", type=int, default=8, help="folders per method (adapters loaded = 3 x copies; the "
                   "first 2 per method are the warm-up, the rest are measured as one block per method)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "sst2")
    p.add_argument("--docs", default=None, help="markdown file to update (default docs/benchmarks.md for a full "
                   "run; 'none' to skip)")
    p.add_argument("--note", default="", help="free text recorded with the results")
    p.add_argument("--stage", choices=["all", "make", "measure"], default="all", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.copies < 3:
        p.error("--copies must be at least 3 (2 warm-up adapters per method, then measured ones)")
    if a.docs is None:
        a.docs = "none" if a.quick else str(ROOT / "docs" / "benchmarks.md")
    return a


def _sst2(a: argparse.Namespace) -> tuple[Path, Path]:
    """Train and validation CSVs: ../shared/data/sst2, or glue/sst2 from the hub written to bench/.work."""
    if (a.data_dir / "train.csv").is_file():
        return a.data_dir / "train.csv", a.data_dir / "validation.csv"
    import datasets

    WORK.mkdir(parents=True, exist_ok=True)
    loaded = datasets.load_dataset("glue", "sst2")
    paths = []
    for split in ("train", "validation"):
        path = WORK / f"hub-sst2-{split}.csv"
        loaded[split].rename_column("sentence", "text").select_columns(["text", "label"]).to_csv(str(path))
        paths.append(path)
    return paths[0], paths[1]


def _validation_texts(path: Path) -> list[str]:
    from common import read_csv

    return read_csv(str(path))[0]


# ---------------------------------------------------------------------------------------------- stage 1


def make_adapters(a: argparse.Namespace) -> list[dict]:
    """Train one small adapter per method; copy each to `copies` folders. Returns the folders and sizes."""
    from engine.adapter_model import AdapterModel  # noqa: F401  (import before timing-free work)
    from engine.training import TrainConfig, train

    train_csv, valid_csv = _sst2(a)
    if ADAPTERS.exists():
        shutil.rmtree(ADAPTERS)
    ADAPTERS.mkdir(parents=True)
    small_valid = WORK / "inference-validation-64.csv"
    lines = valid_csv.read_text(encoding="utf-8").splitlines(keepends=True)
    small_valid.write_text("".join(lines[:65]), encoding="utf-8")
    folders = []
    for method in METHODS:
        lr = 8e-3 if method == "ia3" else 1e-3
        first = ADAPTERS / f"{method}-0"
        result = train(TrainConfig(data=str(train_csv), validation=str(small_valid), method=method,
                                   output=str(first), epochs=1, learning_rate=lr, max_train_samples=200,
                                   max_length=80))
        for i in range(a.copies):
            folder = ADAPTERS / f"{method}-{i}"
            if i:
                shutil.copytree(first, folder)
            folders.append({"folder": str(folder), "method": method, "adapter_params": result.adapter_params,
                            "trainable_params": result.trainable_params})
    return folders


# ---------------------------------------------------------------------------------------------- stage 2


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def _stats_ms(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50_ms": round(_pct(ms, 0.5), 2), "p95_ms": round(_pct(ms, 0.95), 2),
            "mean_ms": round(statistics.mean(ms), 2), "max_ms": round(max(ms), 2)}


def measure(a: argparse.Namespace, folders: list[dict]) -> dict:
    t_start = time.perf_counter()
    import torch

    from engine.inference import Predictor

    if a.threads:
        torch.set_num_threads(a.threads)
    rss_import = current_rss_mb()
    _, valid_csv = _sst2(a)
    texts = _validation_texts(valid_csv)
    n_single = 60 if a.quick else 300
    by_method = {m: [f for f in folders if f["method"] == m] for m in METHODS}
    order = [by_method[m][i] for i in range(a.copies) for m in METHODS]  # pfeiffer, houlsby, ia3, pfeiffer, ...
    first = order[0]["folder"]

    # cold start
    t0 = time.perf_counter()
    predictor = Predictor(a.device or None)
    predictor.load(first)
    t_load = time.perf_counter() - t0
    predictor.predict(first, texts[0])
    t_first = time.perf_counter() - t0
    cuda = predictor.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    # single-text latency, one adapter
    for t in texts[1:21]:
        predictor.predict(first, t)
    single = []
    for t in texts[21 : 21 + n_single]:
        s = time.perf_counter()
        predictor.predict(first, t)
        sync()
        single.append(time.perf_counter() - s)
    tokenizer = predictor.models[next(iter(predictor.models))].tokenizer
    tokens = [len(x) for x in tokenizer(texts[21 : 21 + n_single], truncation=True, max_length=80)["input_ids"]]

    # batch throughput
    batch = []
    for _ in range(2 if a.quick else 3):
        s = time.perf_counter()
        predictor.probabilities(first, texts)
        sync()
        batch.append(time.perf_counter() - s)

    # memory per extra adapter: two adapters of each method are loaded first (one-time costs: code paths run
    # for the first time, the first wrapping of the IA3 target layers); then a block of further adapters per
    # method, each loaded and used once. The
    # growth over a block / its size is the cost per adapter: a single load moves RSS by heap noise (buffers
    # of the file read freed into a fragmented heap) larger than an IA3 adapter's 64 KiB.
    warm = 2 * len(METHODS)
    for f in order[1:warm]:
        predictor.load(f["folder"])
        predictor.predict(f["folder"], texts[0])
    _trim()
    memory = [{"adapters": warm, "method": "warm-up", "rss_mb": round(current_rss_mb(), 2)}]
    for method in METHODS:
        block = by_method[method][2:]
        for f in block:
            predictor.load(f["folder"])
            predictor.predict(f["folder"], texts[0])
        _trim()
        rss = current_rss_mb()
        weight_mb = len(block) * block[0]["trainable_params"] * 4 / 2**20
        memory.append({"adapters": memory[-1]["adapters"] + len(block), "method": method, "block": len(block),
                       "rss_mb": round(rss, 2), "delta_mb": round(rss - memory[-1]["rss_mb"], 3),
                       "weight_mb": round(weight_mb, 3), "ratio": round((rss - memory[-1]["rss_mb"]) / weight_mb, 2)})
    base_models = len(predictor.models)

    # switching
    model, _ = predictor.load(first)
    names = [predictor.load(f["folder"])[1] for f in order]
    raw = []
    for i in range(300):
        s = time.perf_counter()
        model.set_active(names[i % len(names)])
        raw.append(time.perf_counter() - s)
    same, switched = [], []
    sample = texts[21 : 21 + (40 if a.quick else 150)]
    for i, t in enumerate(sample):
        f = order[i % len(order)]["folder"]
        s = time.perf_counter()
        predictor.predict(f, t)  # the adapter changes on every call
        sync()
        switched.append(time.perf_counter() - s)
        s = time.perf_counter()
        predictor.predict(f, t)  # the same text again, adapter already active
        sync()
        same.append(time.perf_counter() - s)
    switch_cost = [x - y for x, y in zip(switched, same, strict=True)]

    growth = memory[1:]
    per_method = {g["method"]: {"adapters": g["block"], "weight_mb_each": round(g["weight_mb"] / g["block"], 3),
                                "growth_mb_each": round(g["delta_mb"] / g["block"], 3), "ratio": g["ratio"]}
                  for g in growth}
    single_stats = _stats_ms(single)
    set_active_stats = _stats_ms(raw)
    switch_stats = {"predict_after_switch": _stats_ms(switched), "predict_same_adapter": _stats_ms(same),
                    "switch_cost_p50_ms": round(_pct([x * 1000 for x in switch_cost], 0.5), 2),
                    "switch_cost_p95_ms": round(_pct([x * 1000 for x in switch_cost], 0.95), 2)}
    total_growth = memory[-1]["rss_mb"] - memory[0]["rss_mb"]
    total_weight = sum(g["weight_mb"] for g in growth)
    worst_switch = max(set_active_stats["p95_ms"], switch_stats["switch_cost_p95_ms"])
    return {
        "device": predictor.device.type,
        "threads": torch.get_num_threads(),
        "adapters_loaded": len(order),
        "base_models_held": base_models,
        "rss_after_import_mb": round(rss_import, 1),
        "cold_start": {"load_base_and_first_adapter_s": round(t_load, 3), "first_prediction_s": round(t_first, 3),
                       "imports_s": round(t0 - t_start, 3)},
        "single_text": {**single_stats, "tokens_median": statistics.median(tokens), "tokens_max": max(tokens)},
        "batch": {"texts": len(texts), "seconds_median": round(statistics.median(batch), 3),
                  "texts_per_second": round(len(texts) / statistics.median(batch), 1)},
        "set_active": set_active_stats,
        "switch": switch_stats,
        "memory": {"steps": memory, "per_method": per_method, "total_growth_mb": round(total_growth, 2),
                   "total_weight_mb": round(total_weight, 2),
                   "ratio_all": round(total_growth / total_weight, 2) if total_weight else None},
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "targets": {
            f"single-text p50 <= {TARGETS['p50_ms']:g} ms": single_stats["p50_ms"] <= TARGETS["p50_ms"],
            f"adapter switch <= {TARGETS['switch_ms']:g} ms (p95)": worst_switch <= TARGETS["switch_ms"],
            f"each extra adapter <= {TARGETS['memory_ratio']:g}x its weight size (all together, and per method)":
                total_weight > 0 and total_growth <= TARGETS["memory_ratio"] * total_weight
            and all(v["ratio"] <= TARGETS["memory_ratio"] for v in per_method.values()),
            "base model held once": base_models == 1,
        },
    }


# ---------------------------------------------------------------------------------------------- report


def markdown(r: dict) -> str:
    m, s, sw = r["measure"], r["measure"]["single_text"], r["measure"]["switch"]
    lines = [f"Recorded {r['date']} with `{r['command']}` on {r['machine']}; device `{m['device']}`, "
             f"{m['threads']} torch threads; load average {r['load_before']} before, {r['load_after']} after.", ""]
    if r.get("note"):
        lines += [f"Note: {r['note']}", ""]
    lines += ["| measure | value | target |", "|---|---:|---|",
              f"| single-text prediction p50 / p95 (`Predictor.predict`, {s['n']} SST-2 sentences, median "
              f"{s['tokens_median']:g} tokens) | {s['p50_ms']:.1f} / {s['p95_ms']:.1f} ms | p50 <= 20 ms |",
              f"| batch throughput (`Predictor.probabilities`, {m['batch']['texts']} sentences) | "
              f"{m['batch']['texts_per_second']:,.0f} texts/s | - |",
              f"| switch: `set_active` p50 / p95 | {m['set_active']['p50_ms']:.2f} / {m['set_active']['p95_ms']:.2f} "
              f"ms | <= 50 ms |",
              f"| switch: extra latency of a prediction right after switching, p50 / p95 | "
              f"{sw['switch_cost_p50_ms']:.2f} / {sw['switch_cost_p95_ms']:.2f} ms | <= 50 ms |",
              f"| cold start: base model + first adapter / + first prediction | "
              f"{m['cold_start']['load_base_and_first_adapter_s']:.2f} / {m['cold_start']['first_prediction_s']:.2f} s"
              " | - |",
              f"| memory: {m['adapters_loaded'] - m['memory']['steps'][0]['adapters']} extra adapters loaded after "
              f"{m['memory']['steps'][0]['adapters']} warm-up ones, RSS growth / their weights | "
              f"{m['memory']['total_growth_mb']:.2f} / {m['memory']['total_weight_mb']:.2f} MiB "
              f"({m['memory']['ratio_all']:.2f}x) | <= 2x |",
              f"| base models held for {m['adapters_loaded']} adapters | {m['base_models_held']} | 1 |", "",
              "Per method: a block of adapters loaded one after another (each used once), RSS growth over the block "
              "divided by its size (weights = adapter + head parameters x 4 bytes; RSS read after `malloc_trim`):", "",
              "| method | adapters in block | weights per adapter MiB | RSS growth per adapter MiB | ratio |",
              "|---|---:|---:|---:|---:|"]
    for method, v in m["memory"]["per_method"].items():
        lines.append(f"| {method} | {v['adapters']} | {v['weight_mb_each']:.3f} | {v['growth_mb_each']:.3f} | "
                     f"{v['ratio']:.2f} |")
    lines += ["", "Targets: " + "; ".join(f"{k}: {'met' if ok else '**not met**'}" for k, ok in m["targets"].items())
              + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    if a.stage == "make":
        a.out.write_text(json.dumps(make_adapters(a)))
        return 0
    if a.stage == "measure":
        a.out.write_text(json.dumps(measure(a, json.loads((WORK / "inference-adapters.json").read_text()))))
        return 0
    passthrough = (["--quick"] if a.quick else []) + ["--copies", str(a.copies), "--threads", str(a.threads),
                                                     "--data-dir", str(a.data_dir)] + (
        ["--device", a.device] if a.device else [])
    WORK.mkdir(parents=True, exist_ok=True)
    made = WORK / "inference-adapters.json"
    print("training 3 small adapters ...", flush=True)
    subprocess.run([sys.executable, __file__, "--stage", "make", "--out", str(made), *passthrough], check=True,
                   env=env, cwd=ROOT)
    print("measuring in a fresh process ...", flush=True)
    out = WORK / "inference-measure.json"
    load_before = loadavg()
    subprocess.run([sys.executable, __file__, "--stage", "measure", "--out", str(out), *passthrough], check=True,
                   env=env, cwd=ROOT)
    from run import machine  # the harness's machine description

    info = machine()
    argv_used = argv if argv is not None else sys.argv[1:]
    report = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "command": " ".join(["python bench/inference.py",
                                                                                    *argv_used]).strip(),
              "machine": f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB",
              "load_before": load_before, "load_after": loadavg(), "note": a.note,
              "measure": json.loads(out.read_text())}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"inference-{'quick' if a.quick else 'full'}-{report['measure']['device']}-{stamp}.json"
    publish(report, [BENCH / "results" / name], markdown(report), a.docs, "inference", "## Inference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
