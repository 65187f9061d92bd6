"""Which precision trains fastest on this machine: measured, not assumed from CPU flags.

bf16 autocast is faster on some CPUs (an AMD EPYC with AVX512-BF16: 1.4x), slower on others (an Intel Xeon with
AMX, unless oneDNN keeps every bf16 kernel it builds) and 16x slower on a CPU without bf16 instructions (an AMD
EPYC with AVX2 only; docs/benchmarks.md). CPU flags do not tell these apart, so the first time a base model's
shape is trained on a CPU model, a short probe times a few training steps in each candidate setting, each in a
fresh process (oneDNN reads its kernel-cache size once per process), and the fastest is kept in
`$ADAPTERLAB_HOME/precision.json` for every later run on that CPU, model shape and torch. fp32 is timed first;
a later candidate is stopped once its rounds have taken SLOWEST times the fastest one's, as it cannot win, and
bf16 with a small kernel cache is not run at all when bf16 keeping every kernel was stopped.

`ADAPTERLAB_PRECISION=fp32|bf16|bf16-keep-kernels` overrides the choice (`auto`, the default, measures);
`ONEDNN_PRIMITIVE_CACHE_CAPACITY`, when set, is left as it is.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from engine.errors import ConfigError

ENV = "ADAPTERLAB_PRECISION"
CACHE_ENV = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
# (name, bf16, oneDNN kernel cache): a small cache saves ~100-170 MB where it costs no speed (the EPYC); the
# large one keeps every shape dynamic padding makes (the Xeon with AMX, where rebuilding them is slow)
CANDIDATES = {"fp32": (False, None), "bf16": (True, 16), "bf16-keep-kernels": (True, 1024)}
# the order they are timed in, each with the candidate timed before it that it can only be slower than (bf16 with
# the small cache rebuilds kernels that bf16-keep-kernels keeps): it is not run when that one was stopped
PROBE_ORDER = {"fp32": None, "bf16-keep-kernels": None, "bf16": "bf16-keep-kernels"}
SAME_SPEED = 0.05  # within 5% of the fastest: take the one with less memory
SLOWEST = 1.5  # a candidate whose steps take this multiple of the fastest one's time so far is stopped
ROUNDS = 3  # rounds over WIDTHS per candidate: the first warms up (kernels built, memory grown), the others timed
# the batch widths (tokens) the probe cycles through: short ones most, as length-grouped batches of sentences
# make; ten distinct widths are more shapes than the small kernel cache holds, as in a real epoch
WIDTHS = (8, 12, 12, 16, 16, 16, 20, 20, 24, 24, 28, 32, 40, 48, 64)


@dataclass
class Precision:
    """How a run trains: bf16 autocast or fp32, and oneDNN's kernel cache size (None: oneDNN's default)."""

    name: str
    bf16: bool
    onednn_cache: int | None
    source: str  # "measured", "cached", "override", "cuda", "device" (neither CPU nor CUDA: fp32, not measured)
    # candidate -> {"seconds", "peak_rss_mb"} when measured; {"stopped_after_s"} for one stopped as too slow,
    # {"not_run": why} for one that could not have been faster than one stopped
    probe: dict = field(default_factory=dict)

    def describe(self) -> str:
        why = {"measured": "measured on this CPU just now", "cached": "measured on this CPU before",
               "override": f"set by {ENV}", "cuda": "on CUDA", "device": "not measured on this device"}
        return f"{self.name} ({why[self.source]})"

    def apply(self) -> None:
        """Set oneDNN's kernel cache size for this process (it is read when oneDNN first runs)."""
        if self.onednn_cache:
            os.environ.setdefault(CACHE_ENV, str(self.onednn_cache))


def cpuinfo(field: str) -> str:
    """The first value of `field` in /proc/cpuinfo ("" where there is none, or no such file)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == field:
                return value.strip()
    return ""


def cpu_model() -> str:
    return cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_has_native_bf16() -> bool:
    """x86 bf16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


def _requested() -> str:
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in ("auto", *CANDIDATES):
        raise ConfigError(f"{ENV}={value!r} is not a precision: set it to auto, " + ", ".join(CANDIDATES) + ".")
    return value


def cache_file() -> Path:
    """`$ADAPTERLAB_HOME/precision.json`, or `$ADAPTERLAB_PRECISION_CACHE` (the tests share one across homes)."""
    if os.environ.get("ADAPTERLAB_PRECISION_CACHE"):
        return Path(os.environ["ADAPTERLAB_PRECISION_CACHE"]).expanduser()
    return Path(os.environ.get("ADAPTERLAB_HOME") or "~/.adapterlab").expanduser() / "precision.json"


def _key(config) -> str:
    """What the choice depends on: the CPU, torch, and the model's shape (not its weights or name)."""
    shape = "-".join(str(getattr(config, k, "")) for k in ("model_type", "hidden_size", "num_hidden_layers",
                                                           "intermediate_size", "num_attention_heads"))
    # a virtual machine names different generations alike ("AMD EPYC" for Zen 3 and Zen 4): the instruction set
    # torch uses and whether it has bf16 tell them apart
    isa = f"{torch.backends.cpu.get_cpu_capability()}{', bf16' if cpu_has_native_bf16() else ''}"
    return f"{cpu_model()} ({isa}) | torch {torch.__version__} | {shape}"


def choose(device: torch.device, base_model_path: str, config,
           on_probe: Callable[[], None] | None = None) -> Precision:
    """The precision to train `base_model_path` (with its `config`) in on `device`, probing it if not known
    (`on_probe` hears that it is: the probe takes up to a minute)."""
    if device.type == "cuda":
        return Precision("bf16", True, None, "cuda")
    requested = _requested()
    if requested != "auto":
        return Precision(requested, *CANDIDATES[requested], "override")
    if device.type != "cpu":
        return Precision("fp32", False, None, "device")
    cache, key = cache_file(), _key(config)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with open(cache.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two workers starting at once: one probe, the other reads its answer
        known = _read(cache)
        if key in known:
            return Precision(**{**known[key], "source": "cached"})
        if on_probe:
            on_probe()
        chosen = _pick(probe(base_model_path))
        known[key] = asdict(chosen)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(known, indent=1))
        tmp.replace(cache)
    return chosen


def _read(cache: Path) -> dict:
    """The stored choices; a file that cannot be read counts as none (they are measured again)."""
    try:
        return json.loads(cache.read_text()) if cache.is_file() else {}
    except (OSError, ValueError):
        return {}


def _pick(timings: dict[str, dict]) -> Precision:
    """The fastest candidate; of those within SAME_SPEED of it, the one with the smallest peak memory."""
    timed = {n: t for n, t in timings.items() if "seconds" in t}
    fastest = min(t["seconds"] for t in timed.values())
    close = [n for n, t in timed.items() if t["seconds"] <= fastest * (1 + SAME_SPEED)]
    name = min(close, key=lambda n: timings[n]["peak_rss_mb"])
    return Precision(name, *CANDIDATES[name], "measured", timings)


def probe(base_model_path: str) -> dict[str, dict]:
    """Time every candidate, each in a fresh process: {name: {"seconds", "peak_rss_mb"}}. Once one is timed, the
    others stop when their rounds, warm-up included, have taken SLOWEST times as long as its rounds would
    ({"stopped_after_s"}): without bf16 instructions bf16 trains 16x slower, and timing it in full takes minutes.
    One that could only be slower than a stopped one is not run ({"not_run"}), which shortens the probe there."""
    timings: dict[str, dict] = {}
    error = "the probe failed"
    for name, faster_one in PROBE_ORDER.items():
        if faster_one and "stopped_after_s" in timings.get(faster_one, {}):
            timings[name] = {"not_run": f"{faster_one}, the same with every kernel kept, was stopped"}
            continue
        onednn_cache = CANDIDATES[name][1]
        env = {k: v for k, v in os.environ.items() if k != CACHE_ENV}
        if onednn_cache:
            env[CACHE_ENV] = str(onednn_cache)
        timed = [t["seconds"] for t in timings.values() if "seconds" in t]
        budget = ["--budget", str(round(SLOWEST * min(timed) * ROUNDS / (ROUNDS - 1), 2))] if timed else []
        out = subprocess.run([sys.executable, "-m", "engine.precision", base_model_path, name, *budget], env=env,
                             capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        if out.returncode == 0:  # a candidate that cannot run here (out of memory, say) is not a choice
            timings[name] = json.loads(out.stdout.strip().splitlines()[-1])
        elif out.stderr.strip():
            error = out.stderr.strip().splitlines()[-1]
    if not any("seconds" in t for t in timings.values()):
        raise ConfigError(f"Training could not start on this CPU with {base_model_path}: {error}. "
                          f"Set {ENV}=fp32 to skip the probe.")
    return timings


def _time_steps(base_model_path: str, bf16: bool, budget: float | None = None,
                batch_size: int = 16) -> float | None:
    """Seconds for training steps of a Pfeiffer adapter (LoRA on a model without bottleneck sites: decoder LLMs,
    T5) over the widths of WIDTHS, after one round to warm up (both precisions pay their one-time costs there; a
    small kernel cache pays them again every round). None once `budget` seconds have passed since the first
    step: the candidate is too slow to be chosen."""
    from engine.adapter_model import AdapterModel
    from engine.base_models import architecture
    from engine.optimizer import AdamW
    from engine.training import attention_kernel

    torch.manual_seed(0)
    model = AdapterModel(base_model_path, mmap=not bf16)
    model.add_adapter("probe", "pfeiffer" if architecture(model.config) == "encoder" else "lora", ["a", "b"])
    params = model.train_adapter("probe")
    if bf16:
        model.frozen_linears_to(torch.bfloat16)
    optimizer = AdamW(params)
    vocab = model.config.vocab_size
    model.train()
    warm_up = started = time.perf_counter()
    for r in range(ROUNDS):
        if r == 1:
            started = time.perf_counter()
        for width in WIDTHS:
            if budget is not None and time.perf_counter() - warm_up > budget:
                return None
            ids = torch.randint(min(1000, vocab // 2), vocab, (batch_size, width))
            if model.config.is_encoder_decoder:  # T5's classification head reads each row's end-of-text
                ids[:, -1] = model.config.eos_token_id
            autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            with autocast, attention_kernel(model.device, width):
                logits = model(input_ids=ids, attention_mask=torch.ones_like(ids))
            torch.nn.functional.cross_entropy(logits.float(), torch.zeros(batch_size, dtype=torch.long)).backward()
            optimizer.step(1e-4)
            optimizer.zero_grad()
    return time.perf_counter() - started


def _peak_rss_mb() -> float:
    """This process's own peak memory: VmHWM starts afresh at exec, where ru_maxrss keeps the parent's peak
    (a probe started by a training holding a big file would read as large as it)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _main() -> None:
    p = argparse.ArgumentParser(description="One precision probe (run by engine.precision.probe).")
    p.add_argument("base_model")
    p.add_argument("candidate", choices=list(CANDIDATES))
    p.add_argument("--budget", type=float, help="seconds after which to stop: another candidate is faster")
    a = p.parse_args()
    seconds = _time_steps(a.base_model, CANDIDATES[a.candidate][0], a.budget)
    if seconds is None:
        print(json.dumps({"stopped_after_s": a.budget}))
    else:
        print(json.dumps({"seconds": round(seconds, 3), "peak_rss_mb": round(_peak_rss_mb(), 1)}))


if __name__ == "__main__":
    _main()
