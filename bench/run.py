"""AdapterLab against AdapterHub's `adapters` + Hugging Face Trainer: one command, interleaved runs.

    python bench/run.py            # the full benchmark (4,000 SST-2 sentences, 1 epoch, 2 repeats)
    python bench/run.py --quick    # a few minutes: 800 sentences, 1 repeat

Three systems, on the same data, base model (the bundled all-MiniLM-L6-v2), method, batch size, learning
rate, warm-up, epochs and maximum length:

- `adapterlab`:  engine.training.train (bench/adapterlab_runner.py, the project's python);
- `ref-maxlen`:  the reference with AdapterHub's tutorial recipe, every example padded to max length;
- `ref-dynamic`: the reference used well, dynamic padding + `group_by_length`
  (both bench/reference_runner.py, run with the reference venv's python; the harness creates that venv
  with scripts/make_reference_venv.sh).

Every run is its own fresh process (honest load time and peak RSS). Runs are interleaved: for each repeat,
each method, the systems one after the other, in an order that alternates between repeats. End-to-end
seconds are the wall time of the whole process as this harness sees it (interpreter start, imports, data,
model load, tokenisation, training, evaluation, saving the adapter). Ratios are taken within a repeat
(neighbouring runs share the machine's load) and the median is reported.

Writes the raw and summarised results as JSON (bench/results/) and the tables into docs/benchmarks.md,
between its `bench:results` markers, with the command that produced them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
DOCS_HEADING = "## Training: AdapterLab against the reference"  # where the results go on a page without them
sys.path.insert(0, str(BENCH))
from common import loadavg, publish  # noqa: E402

SHARED_SST2 = ROOT.parent / "shared" / "data" / "sst2"
SYSTEMS = ("adapterlab", "adapterlab-fp32", "adapterlab-bf16", "ref-maxlen", "ref-dynamic")
DEFAULT_SYSTEMS = ("adapterlab", "ref-maxlen", "ref-dynamic")
AL_SYSTEMS = ("adapterlab", "adapterlab-fp32", "adapterlab-bf16")
# AdapterLab with its precision forced (engine/precision.py), to show what the measured choice is worth
FORCED = {"adapterlab-fp32": "fp32", "adapterlab-bf16": "bf16"}
METHODS = ("pfeiffer", "houlsby", "ia3", "parallel", "compacter", "lora", "prefix", "prompt", "full")
# The library each method is measured against (and whose python runs it: the reference venv for AdapterHub's)
REFERENCE = {"pfeiffer": "AdapterHub", "houlsby": "AdapterHub", "ia3": "AdapterHub", "parallel": "AdapterHub",
             "compacter": "AdapterHub", "prefix": "AdapterHub", "lora": "PEFT", "prompt": "PEFT",
             "full": "transformers"}
LABELS = {"adapterlab": "AdapterLab", "adapterlab-fp32": "AdapterLab, fp32 (ADAPTERLAB_PRECISION=fp32)",
          "adapterlab-bf16": "AdapterLab, bf16 with a small kernel cache (ADAPTERLAB_PRECISION=bf16)",
          "ref-maxlen": "reference (b) max-length padding",
          "ref-dynamic": "reference (c) dynamic padding + group_by_length"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="800 training sentences, 1 repeat (for trying things)")
    p.add_argument("--methods", default="pfeiffer,houlsby,ia3", help="comma-separated, of: " + ",".join(METHODS))
    p.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                   help="comma-separated, of: " + ",".join(SYSTEMS) + " (adapterlab-fp32: AdapterLab with CPU bf16 "
                        "autocast off, to show what it contributes)")
    p.add_argument("--repeats", type=int, help="interleaved repeats (default 2; --quick 1)")
    p.add_argument("--train-samples", type=int, help="training sentences (default 4000; --quick 800)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=80, help="truncation length on every system; (b) pads to it")
    p.add_argument("--lr-bottleneck", type=float, default=1e-3, help="learning rate for pfeiffer and houlsby")
    p.add_argument("--lr-ia3", type=float, default=8e-3, help="learning rate for ia3 (both systems)")
    p.add_argument("--lr", default="", help="learning rates of the other methods, e.g. lora=3e-3,prompt=3e-2 "
                   "(default: each method's AdapterLab default, on both systems)")
    p.add_argument("--warmup-ratio", type=float, default=0.06, help="linear warm-up share, both systems")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=0, help="torch threads in every run (0: torch's default)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--data-dir", type=Path, default=SHARED_SST2,
                   help="folder with train.csv and validation.csv (default ../shared/data/sst2; when absent, "
                        "glue/sst2 is downloaded from the Hugging Face Hub); another folder's results are named "
                        "after it and leave the docs' SST-2 tables alone unless --docs is given")
    p.add_argument("--timeout", type=int, default=1800, help="seconds allowed per run")
    p.add_argument("--results", type=Path, default=BENCH / "results", help="folder for the JSON results")
    p.add_argument("--docs", default=None,
                   help="markdown file whose results section is rewritten (default: docs/benchmarks.md for a full "
                        "run, none for --quick; 'none' to skip)")
    p.add_argument("--note", default="", help="free text recorded with the results (e.g. what else ran)")
    p.add_argument("--section", default="results", help="the docs page's marked block to write (e.g. "
                   "results-methods for the methods measured apart from the first three)")
    p.add_argument("--render", type=Path, help="only re-write the markdown from a saved results JSON (no runs); "
                   "the command recorded in it stays the one that produced the numbers")
    a = p.parse_args(argv)
    a.repeats = a.repeats or (1 if a.quick else 2)
    a.train_samples = a.train_samples or (800 if a.quick else 4000)
    if a.docs is None:
        a.docs = "none" if a.quick or a.data_dir != SHARED_SST2 else str(ROOT / "docs" / "benchmarks.md")
    a.methods = [m for m in a.methods.split(",") if m]
    a.lr = {k: float(v) for k, _, v in (x.partition("=") for x in a.lr.split(",") if x)}
    a.systems = [s for s in a.systems.split(",") if s]
    for m in a.methods:
        if m not in METHODS:
            p.error(f"unknown method {m!r}")
    for s in a.systems:
        if s not in SYSTEMS:
            p.error(f"unknown system {s!r}")
    return a


# ---------------------------------------------------------------------------------------------------- setup


def reference_python() -> str:
    """The reference venv's python, creating the venv first (idempotent, offline when it already exists)."""
    out = subprocess.run(["bash", str(ROOT / "scripts" / "make_reference_venv.sh")], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    line = next((x for x in out.splitlines() if x.startswith("python: ")), None)
    venv = os.environ.get("ADAPTERLAB_REFERENCE_VENV", ".venvs/adapterhub")
    return line.split("python: ", 1)[1].strip() if line else str(ROOT / venv / "bin" / "python")


def _read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write_rows(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for r in rows:
            w.writerow([r["text"], r["label"]])


def prepare_data(a: argparse.Namespace, work: Path) -> dict:
    """Write the benchmark's train subset and the validation split as `text,label` CSVs; describe the source."""
    if (a.data_dir / "train.csv").is_file() and (a.data_dir / "validation.csv").is_file():
        source = str(a.data_dir)
        train, valid = _read_rows(a.data_dir / "train.csv"), _read_rows(a.data_dir / "validation.csv")
    else:  # a machine without ../shared: the same GLUE export from the hub
        import datasets

        loaded = datasets.load_dataset("glue", "sst2")
        source = "hub glue/sst2"
        train = [{"text": r["sentence"], "label": r["label"]} for r in loaded["train"]]
        valid = [{"text": r["sentence"], "label": r["label"]} for r in loaded["validation"]]
    ids = {v: i for i, v in enumerate(sorted({r["label"] for r in train}, key=lambda v: (len(v), v)))}
    train = [{**r, "label": ids[r["label"]]} for r in train]  # labels 0..n-1 for every system (AG News: 1-4)
    valid = [{**r, "label": ids[r["label"]]} for r in valid]
    rng = random.Random(a.seed)
    subset = rng.sample(train, min(a.train_samples, len(train)))  # a seeded uniform sample, same for all systems
    work.mkdir(parents=True, exist_ok=True)
    stem = a.data_dir.name if source == str(a.data_dir) else "sst2"  # a long-text run keeps SST-2's files as they are
    paths = {"train": work / f"{stem}-train-{len(subset)}-seed{a.seed}.csv",
             "validation": work / f"{stem}-validation.csv"}
    _write_rows(paths["train"], subset)
    _write_rows(paths["validation"], valid)
    positive = sum(int(r["label"]) for r in subset)
    return {"name": stem, "source": source, "train_rows": len(subset), "train_positive": positive,
            "validation_rows": len(valid), "train_csv": str(paths["train"]), "validation_csv": str(paths["validation"])}


# The CPU features that decide which kernels run (bf16 and int8 matrix units): recorded with every result, as the
# same lever can win on one CPU family and lose on another
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_flags() -> set[str]:
    from engine.precision import cpuinfo

    return set(cpuinfo("flags").split())


def machine() -> dict:
    from engine.precision import cpu_model, cpuinfo

    try:
        mem = next(int(x.split()[1]) for x in open("/proc/meminfo") if x.startswith("MemTotal"))
    except (OSError, StopIteration):
        mem = 0
    flags = cpu_flags()
    numbers = {f: cpuinfo(f) for f in ("cpu family", "model")}  # AMD Zen 3: 25 / 1, Zen 4: 25 / 17
    info = {"cpu": cpu_model(), "cpu_model_numbers": ", ".join(f"{f} {n}" for f, n in numbers.items() if n),
            "cpu_flags": [f for f in SPEED_FLAGS if f in flags], "cores": os.cpu_count(),
            "memory_gib": round(mem / 2**20, 1), "os": platform.platform(), "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads_default"] = torch.get_num_threads()
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


# a family's first table was measured with these instructions; a CPU of the same name without them (a VM names
# Zen 3 and Zen 4 alike "AMD EPYC") is a family of its own, named after the widest it has
FAMILIES = {"AMD EPYC": "avx512_bf16", "Intel Xeon": "amx_tile"}
TITLES = {"amd-epyc": "AMD EPYC", "intel-xeon": "Intel Xeon with AMX", "amd-epyc-avx2": "AMD EPYC with AVX2 only",
          "intel-xeon-avx512f": "Intel Xeon with AVX-512, no bf16"}


def cpu_family(cpu: str, flags: Iterable[str] | None = None) -> str:
    """The CPU family a results table is kept for (docs/benchmarks.md has one per family); `flags`: the CPU's
    (this machine's when None)."""
    flags = cpu_flags() if flags is None else set(flags)
    for family, first in FAMILIES.items():
        if all(word in cpu for word in family.split()):
            slug = family.lower().replace(" ", "-")
            if first in flags:
                return slug
            widest = next((f for f in ("avx512_bf16", "avx512f", "avx2") if f in flags), "no-avx2")
            return f"{slug}-{widest.replace('_', '-')}"
    return "".join(c if c.isalnum() else "-" for c in cpu.lower()).strip("-")


def docs_section(section: str, methods: list[str], cpu: str, device: str,
                 flags: Iterable[str] | None = None) -> tuple[str, str]:
    """The docs block (`bench:NAME`) and its heading for a run: one per section and CPU family (or GPU)."""
    where = cpu_family(cpu, flags) if device == "cpu" else device
    title = TITLES.get(where, where)
    if section == "results":
        return f"results-{where}", f"{DOCS_HEADING}, {title}"
    return f"{section}-{where}", f"{DOCS_HEADING} ({', '.join(methods)}), {title}"


def warm_precision_probe(device: str) -> dict:
    """Run AdapterLab's precision probe (engine/precision.py) before the timed runs, as the first training on a
    CPU does once: the timed runs then read its cached choice. Returns the choice and what the probe took."""
    if device != "cpu":
        return {"chosen": "bf16 (CUDA)", "probe_seconds": 0.0}
    code = ("import json, torch; from engine.base_models import load_config, resolve_base_model; "
            "from engine.precision import choose; p = resolve_base_model(None); "
            "c = choose(torch.device('cpu'), p, load_config(p)); "
            "print(json.dumps({'chosen': c.describe(), 'probe': c.probe}))")
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {**result, "probe_seconds": round(time.perf_counter() - start, 1)}


def other_processes(limit: int = 6) -> list[str]:
    """The busiest other processes right now (what else shares the machine), as `%CPU command`."""
    try:
        out = subprocess.run(["ps", "-eo", "pid,pcpu,args", "--sort=-pcpu"], capture_output=True, text=True,
                             timeout=10).stdout.splitlines()[1:]
    except (OSError, subprocess.SubprocessError):
        return []
    rows = []
    for line in out:
        pid, _, rest = line.strip().partition(" ")
        if pid != str(os.getpid()) and "ps -eo" not in rest:
            rows.append(rest.strip()[:110])
    return rows[:limit]


def _versions(runs: list[dict]) -> dict:
    """Library versions per side: AdapterLab's, AdapterHub's venv ("reference"), and PEFT's or plain
    transformers' runs (on AdapterLab's python)."""
    versions: dict = {}
    for r in runs:
        side = "adapterlab" if r["system_key"] in AL_SYSTEMS else (
            "reference" if r.get("library", "adapterhub") == "adapterhub" else "reference-peft")
        versions.setdefault(side, {}).update(r.get("versions", {}))
    return versions


# ---------------------------------------------------------------------------------------------------- runs


def learning_rate(a: argparse.Namespace, method: str) -> float:
    """The same rate on both systems: --lr-bottleneck, --lr-ia3, or --lr's entry (default: AdapterLab's)."""
    if method in ("pfeiffer", "houlsby"):
        return a.lr_bottleneck
    if method == "ia3":
        return a.lr_ia3
    if method in getattr(a, "lr", {}):
        return a.lr[method]
    from engine import methods

    return methods.get(method).defaults["learning_rate"]


def run_command(a: argparse.Namespace, system: str, method: str, data: dict, ref_python: str, device: str,
                out: Path) -> list[str]:
    lr = learning_rate(a, method)
    common = ["--train", data["train_csv"], "--validation", data["validation_csv"], "--method", method,
              "--learning-rate", str(lr), "--epochs", str(a.epochs), "--batch-size", str(a.batch_size),
              "--max-length", str(a.max_length), "--warmup-ratio", str(a.warmup_ratio), "--seed", str(a.seed),
              "--threads", str(a.threads), "--device", device, "--out", str(out)]
    if system in AL_SYSTEMS:
        return [sys.executable, str(BENCH / "adapterlab_runner.py"), *common]
    from engine.base_models import bundled_model_dir

    recipe = "maxlen" if system == "ref-maxlen" else "dynamic"
    python = ref_python if REFERENCE[method] == "AdapterHub" else sys.executable  # PEFT runs on transformers 5
    return [python, str(BENCH / "reference_runner.py"), "--recipe", recipe,
            "--base-model", str(bundled_model_dir()), *common]


def run_one(cmd: list[str], out: Path, timeout: int, extra_env: dict | None = None) -> dict:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(ROOT), **(extra_env or {})}
    load_before = loadavg()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"run failed ({proc.returncode}): {shlex.join(cmd)}\n{proc.stderr[-3000:]}")
    result = json.loads(out.read_text())
    result["end_to_end_seconds"] = round(wall, 3)
    result["loadavg_before"], result["loadavg_after"] = load_before, loadavg()
    return result


def schedule(a: argparse.Namespace) -> list[tuple[int, str, str]]:
    """(repeat, method, system) in run order: systems interleaved, their order reversed every other repeat."""
    order = []
    for r in range(a.repeats):
        for m in a.methods:
            systems = a.systems if r % 2 == 0 else list(reversed(a.systems))
            order += [(r, m, s) for s in systems]
    return order


# ---------------------------------------------------------------------------------------------------- summary


def _median(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 4) if xs else None


def _ratios(pairs: list[tuple[dict, dict]]) -> dict:
    """Median over repeats of AdapterLab run x against reference run y of the same repeat."""
    return {
        "end_to_end_speedup": _median([y["end_to_end_seconds"] / x["end_to_end_seconds"] for x, y in pairs]),
        "train_throughput_ratio": _median([x["train_samples_per_second"] / y["train_samples_per_second"]
                                           for x, y in pairs]),
        "peak_rss_ratio": _median([x["peak_rss_mb"] / y["peak_rss_mb"] for x, y in pairs]),
        "accuracy_delta_points": _median([100 * (x["accuracy"] - y["accuracy"]) for x, y in pairs]),
    }


def summarise(runs: list[dict], a: argparse.Namespace) -> dict:
    """Medians per (method, system), per-repeat ratios AdapterLab / reference, and the targets."""
    table: dict = {}
    for m in a.methods:
        table[m] = {}
        for s in a.systems:
            rs = [r for r in runs if r["method"] == m and r["system_key"] == s]
            if not rs:
                continue
            table[m][s] = {
                "runs": len(rs),
                "end_to_end_seconds": _median([r["end_to_end_seconds"] for r in rs]),
                "train_seconds": _median([r["train_seconds"] for r in rs]),
                "train_samples_per_second": _median([r["train_samples_per_second"] for r in rs]),
                "peak_rss_mb": _median([r["peak_rss_mb"] for r in rs]),
                "accuracy": _median([r["accuracy"] for r in rs]),
                "macro_f1": _median([r["macro_f1"] for r in rs]),
                "phases": {k: _median([r["phases"].get(k) for r in rs]) for k in rs[0]["phases"]},
                "rss_after_phase_mb": {k: _median([r.get("rss_after_phase_mb", {}).get(k) for r in rs])
                                       for k in rs[0].get("rss_after_phase_mb", {})},
                "trainable_params": rs[0].get("trainable_params"),
                "peak_gpu_mb": _median([r.get("peak_gpu_mb") for r in rs]),
            }
        for al_key in AL_SYSTEMS:
            for ref in ("ref-maxlen", "ref-dynamic"):
                if al_key not in table[m] or ref not in table[m]:
                    continue
                pairs = [(x, y) for x in runs for y in runs if x["method"] == y["method"] == m
                         and x["repeat"] == y["repeat"] and x["system_key"] == al_key and y["system_key"] == ref]
                table[m][f"vs_{ref}" if al_key == "adapterlab" else f"{al_key}_vs_{ref}"] = _ratios(pairs)
        al = table[m].get("adapterlab")
        if not al:
            continue
        refs = [table[m][r] for r in ("ref-maxlen", "ref-dynamic") if r in table[m]]
        targets = {}
        if "vs_ref-dynamic" in table[m]:
            targets["end_to_end >= 2x (c)"] = table[m]["vs_ref-dynamic"]["end_to_end_speedup"] >= 2
        if "vs_ref-maxlen" in table[m]:
            targets["end_to_end >= 8x (b)"] = table[m]["vs_ref-maxlen"]["end_to_end_speedup"] >= 8
        if refs:
            best = max(r["accuracy"] for r in refs)
            targets["accuracy >= best reference - 1 point"] = al["accuracy"] >= best - 0.01
            targets["peak RSS <= every reference"] = all(al["peak_rss_mb"] <= r["peak_rss_mb"] for r in refs)
        table[m]["targets"] = targets
    return table


def _f(x, digits: int = 1, suffix: str = "") -> str:
    return "-" if x is None else f"{x:,.{digits}f}{suffix}"


def _probe_entry(name: str, timing: dict) -> str:
    """One candidate of the precision probe, as engine/precision.py recorded it: timed, stopped or not run."""
    if "seconds" in timing:
        return f"{name} {timing['seconds']:.2f} s, {timing['peak_rss_mb']:.0f} MiB"
    if "stopped_after_s" in timing:
        return f"{name} stopped after {timing['stopped_after_s']} s"
    return f"{name} not run ({timing['not_run']})"


def markdown(report: dict) -> str:
    a, summary, info = report["settings"], report["summary"], report["machine"]
    al_v, ref_v = report["versions"].get("adapterlab", {}), report["versions"].get("reference", {})
    peft_v = report["versions"].get("reference-peft", {})
    lines = [f"Recorded {report['date']} with `{report['command']}` "
             f"({report['wall_minutes']:.0f} minutes; {a['repeats']} interleaved repeat(s), medians shown).", ""]
    flags = ", ".join(info.get("cpu_flags") or []) or "not recorded"
    model = f"{info['cpu_model_numbers']}; " if info.get("cpu_model_numbers") else ""
    lines += [f"- Machine: {info['cpu']} ({model}flags: {flags}), {info['cores']} cores, {info['memory_gib']} GiB RAM, "
              f"{info['os']}; "
              f"device `{report['device']}`; torch threads: {a['threads'] or 'torch default'}"
              f" ({info.get('torch_threads_default')}).",
              f"- AdapterLab: torch {info.get('torch')}, transformers {al_v.get('transformers')}. "
              + (f"Reference: adapters {ref_v.get('adapters')}, transformers {ref_v.get('transformers')}, torch "
                 f"{ref_v.get('torch')}. " if ref_v else "")
              + (f"PEFT and plain-transformers references: peft {peft_v.get('peft')}, transformers "
                 f"{peft_v.get('transformers')}. " if peft_v else "")
              + "Each method against its reference library: "
              + ", ".join(f"{m} {REFERENCE[m]}" for m in summary) + ".",
              f"- Data: SST-2 from `{report['data']['source']}`, {report['data']['train_rows']:,} training sentences "
              f"(seeded sample, seed {a['seed']}), validation {report['data']['validation_rows']} rows.",
              f"- Settings (all systems): batch {a['batch_size']}, {a['epochs']} epoch(s), "
              f"max length {a['max_length']}, "
              "lr " + ", ".join(f"{m} {learning_rate(argparse.Namespace(**a), m):g}" for m in summary)
              + f", linear schedule, warm-up {a['warmup_ratio']:g}, weight decay 0, grad-norm clip 1, seed "
              f"{a['seed']}, each method's default options (reduction factor 16, parallel 2, compacter 32; LoRA r 8 "
              "on query and value; prompt tuning 20 virtual tokens; prefix length 30).",
              f"- Load average during the runs: median {report['load']['median']}, range {report['load']['min']}-"
              f"{report['load']['max']} (2 cores; a run's own 2 torch threads make ~2, so above ~2.5 other work "
              f"competed for the CPU).",
              ]
    if report.get("precision"):
        pr = report["precision"]
        probe = "; ".join(_probe_entry(k, v) for k, v in pr.get("probe", {}).items())
        when = ("read from its cache, measured earlier on this CPU" if "before" in pr["chosen"]
                else f"its probe took {pr['probe_seconds']} s, once, before the timed runs")
        took = f"; {when} ({probe})" if probe else ""
        lines.append(f"- AdapterLab's precision (engine/precision.py): {pr['chosen']}{took}.")
    if report.get("note"):
        lines.append(f"- Note: {report['note']}")
    if report.get("busy"):
        lines.append("- Busiest other processes at the start: " + "; ".join(f"`{p}`" for p in report["busy"][:4]))
    lines += ["", "| method | system | end-to-end s | train samples/s | peak RSS MiB | accuracy | macro-F1 |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for m, rows in summary.items():
        for s in SYSTEMS:
            if s in rows:
                r = rows[s]
                lines.append(f"| {m} | {LABELS[s]} | {_f(r['end_to_end_seconds'])} | "
                             f"{_f(r['train_samples_per_second'])} | {_f(r['peak_rss_mb'], 0)} | "
                             f"{_f(r['accuracy'], 4)} | {_f(r['macro_f1'], 4)} |")
    lines += ["", "Ratios, AdapterLab against each reference (median of the per-repeat ratios):", "",
              "| method | against | end-to-end speed-up | training samples/s ratio | peak RSS ratio "
              "| accuracy diff (points) |",
              "|---|---|---:|---:|---:|---:|"]
    for m, rows in summary.items():
        for al_key in AL_SYSTEMS:
            for ref in ("ref-maxlen", "ref-dynamic"):
                v = rows.get(f"vs_{ref}" if al_key == "adapterlab" else f"{al_key}_vs_{ref}")
                if v:
                    who = "" if al_key == "adapterlab" else f" (AdapterLab {FORCED[al_key]})"
                    lines.append(f"| {m} | {LABELS[ref]}{who} | {_f(v['end_to_end_speedup'], 2, 'x')} | "
                                 f"{_f(v['train_throughput_ratio'], 2, 'x')} | {_f(v['peak_rss_ratio'], 2)} | "
                                 f"{_f(v['accuracy_delta_points'], 2)} |")
    lines += ["", "Targets:", "", "| method | target | met |", "|---|---|---|"]
    for m, rows in summary.items():
        for t, ok in rows.get("targets", {}).items():
            lines.append(f"| {m} | {t} | {'yes' if ok else '**no**'} |")
    lines += ["", "Where the end-to-end seconds go: seconds per phase, and in brackets the resident memory (MiB) when "
              "the phase ended (medians; `import` counts from the interpreter's first line; AdapterLab's `setup` "
              "is everything in `train()` before the first step: reading the CSV, its deferred imports, loading "
              "the model, tokenising):", "", "| method | system | phases |", "|---|---|---|"]
    for m, rows in summary.items():
        for s in SYSTEMS:
            if s in rows:
                rss = rows[s].get("rss_after_phase_mb", {})
                ph = ", ".join(f"{k} {v:.1f}" + (f" ({rss[k]:.0f})" if rss.get(k) else "")
                               for k, v in rows[s]["phases"].items() if v is not None)
                lines.append(f"| {m} | {LABELS[s]} | {ph} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- main


def render(a: argparse.Namespace) -> int:
    """Re-summarise and re-write the docs from a saved report (after a change to the tables' layout)."""
    report = json.loads(a.render.read_text())
    saved = argparse.Namespace(**report["settings"])
    report["summary"] = summarise(report["runs"], saved)
    report["versions"] = _versions(report["runs"])
    report["busy"] = [b for b in report.get("busy", []) if "bench/run.py" not in b]
    section, heading = docs_section(getattr(saved, "section", "results"), saved.methods, report["machine"]["cpu"],
                                    report["device"], report["machine"]["cpu_flags"])
    publish(report, [a.render], markdown(report), a.docs, section, heading)
    return 0


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.render:
        return render(a)
    started = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    ref_python = reference_python() if any(s.startswith("ref") for s in a.systems) else ""
    work = BENCH / ".work"
    data = prepare_data(a, work)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    raw = work / stamp
    raw.mkdir(parents=True, exist_ok=True)
    busy = other_processes()
    precision = warm_precision_probe(device)
    print(f"precision: {precision['chosen']} (probe {precision['probe_seconds']} s)", flush=True)
    plan = schedule(a)
    runs: list[dict] = []
    print(f"{len(plan)} runs on {device}; data {data['train_rows']} train / {data['validation_rows']} validation "
          f"from {data['source']}", flush=True)
    for i, (rep, method, system) in enumerate(plan, 1):
        out = raw / f"{rep}-{method}-{system}.json"
        result = run_one(run_command(a, system, method, data, ref_python, device, out), out, a.timeout,
                         {"ADAPTERLAB_PRECISION": FORCED[system]} if system in FORCED else None)
        result.update(repeat=rep, system_key=system)
        runs.append(result)
        print(f"[{i}/{len(plan)}] repeat {rep + 1} {method:8s} {system:11s} "
              f"end-to-end {result['end_to_end_seconds']:6.1f}s"
              f"  train {result['train_samples_per_second']:6.1f}/s  acc {result['accuracy']:.4f}  "
              f"rss {result['peak_rss_mb']:.0f} MiB  load {result['loadavg_before']}", flush=True)
    loads = [x for r in runs for x in (r["loadavg_before"], r["loadavg_after"]) if x is not None]
    versions = _versions(runs)
    command = "python bench/run.py" + ("" if argv is None and len(sys.argv) == 1 else " " + shlex.join(
        argv if argv is not None else sys.argv[1:]))
    report = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "timestamp": stamp,
        "command": command,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "device": device,
        "machine": machine(),
        "versions": versions,
        "data": data,
        "load": {"median": _median(loads), "min": min(loads, default=None), "max": max(loads, default=None)},
        "busy": busy,
        "precision": precision,
        "note": a.note,
        "wall_minutes": (time.perf_counter() - started) / 60,
        "summary": summarise(runs, a),
        "runs": runs,
    }
    kind = ("quick" if a.quick else "full") + ("" if a.section == "results" else f"-{a.section}") \
        + ("" if data["name"] == "sst2" else f"-{data['name']}")
    family = cpu_family(report["machine"]["cpu"], report["machine"]["cpu_flags"]) if device == "cpu" else device
    publish(report, [a.results / f"{kind}-{device}-{family}-{stamp}.json",
                     a.results / f"latest-{kind}-{device}-{family}.json"],
            markdown(report), a.docs, *docs_section(a.section, a.methods, report["machine"]["cpu"], device,
                                                    report["machine"]["cpu_flags"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
