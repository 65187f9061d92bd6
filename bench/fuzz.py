"""Fuzz the data readers and the job-spec validation with atheris (coverage-guided, libFuzzer) for a fixed time.

    pip install atheris
    python bench/fuzz.py --seconds 300          # each target 300 s; ~25 minutes for the five
    python bench/fuzz.py --target spec --seconds 60

Targets: `csv`, `tsv`, `jsonl` and `parquet` write the fuzzer's bytes as an upload of that type and read it as
the page and the worker do (preview, columns, column guess, the full clean and split); `spec` builds a job spec
from the bytes (known and unknown keys, values of every JSON type) and validates it as a submit does, on a tiny
model. A target may raise only AdapterLabError (the user's words); anything else is a crash: libFuzzer saves
the input under bench/results/fuzz/<target>/ and it becomes a test in tests/test_hostile_input.py. Each run
starts from small valid files (seeds) and from the inputs earlier runs kept (~/.cache/adapterlab-fuzz). Writes
bench/results/fuzz-<cpu>.json and the `bench:fuzz` block of docs/fuzzing.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from common import publish  # noqa: E402
from run import cpu_family  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "fuzz"  # what libFuzzer found, per target
CORPUS = Path.home() / ".cache" / "adapterlab-fuzz"  # the inputs worth keeping between runs (not committed)
TARGETS = ("csv", "tsv", "jsonl", "parquet", "spec")
SEED_ROWS = [{"text": "great product, works well", "label": "pos"}, {"text": "i hate it", "label": "neg"},
             {"text": 'she said "fine", then left', "label": "neg"}, {"text": "wonderful; buy it", "label": "pos"}]


def seeds(target: str) -> list[bytes]:
    """Small valid inputs the fuzzer starts from."""
    if target in ("csv", "tsv"):
        sep = "," if target == "csv" else "\t"
        text = "text" + sep + "label\n" + "".join(f'"{r["text"]}"{sep}{r["label"]}\n' for r in SEED_ROWS)
        return [text.encode(), text.encode("utf-16"), ("\ufeff" + text).encode()]
    if target == "jsonl":
        return ["".join(json.dumps(r) + "\n" for r in SEED_ROWS).encode()]
    if target == "parquet":
        import pandas as pd

        buffer = io.BytesIO()
        pd.DataFrame(SEED_ROWS).to_parquet(buffer, index=False)
        return [buffer.getvalue()]
    return [json.dumps({"method": m, "epochs": 1, "max_length": 16}).encode() for m in ("pfeiffer", "ia3", "lora")]


def _read_target(suffix: str, folder: Path):
    from engine.data import guess_columns, prepare, read_columns, read_head
    from engine.errors import AdapterLabError

    path = folder / f"upload{suffix}"

    def target(data: bytes) -> None:
        path.write_bytes(data)
        try:
            read_head(path, 20)
            columns = read_columns(path)
            guess = guess_columns(list(columns), columns)
            if guess.get("text") and guess.get("label"):
                prepare(path, text_column=guess["text"], label_column=guess["label"])
        except AdapterLabError:
            pass

    return target


def _spec_target(folder: Path):
    import atheris
    from conftest import NEGATIVE, POSITIVE, make_tiny_model, write_csv

    from engine.errors import AdapterLabError
    from engine.methods import all_options
    from worker.spec import SPEC_FIELDS, check_method, normalise

    keys = [k for k in (*SPEC_FIELDS, *all_options(), "method_options") if k not in ("data", "base_model")]

    model = make_tiny_model(folder / "tiny")
    rows = [{"text": t, "label": "pos"} for t in POSITIVE] + [{"text": t, "label": "neg"} for t in NEGATIVE]
    data = write_csv(folder / "data.csv", rows)

    def value(fdp) -> object:
        kind = fdp.ConsumeIntInRange(0, 8)
        if kind == 0:
            return None
        if kind == 1:
            return fdp.ConsumeBool()
        if kind == 2:
            return fdp.ConsumeInt(8)
        if kind == 3:
            return fdp.ConsumeRegularFloat() if fdp.ConsumeBool() else fdp.ConsumeFloat()  # nan, inf too
        if kind == 4:
            return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40))
        if kind == 5:
            return [value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 3))]
        if kind == 6:
            return {fdp.ConsumeUnicodeNoSurrogates(8): value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 3))}
        return str(fdp.ConsumeInt(4))  # a number typed into a form

    def target(raw: bytes) -> None:
        from engine.training import TrainConfig

        fdp = atheris.FuzzedDataProvider(raw)
        spec: dict = {"data": str(data), "method": "pfeiffer", "base_model": str(model)}
        for _ in range(fdp.ConsumeIntInRange(0, 8)):
            key = keys[fdp.ConsumeIntInRange(0, len(keys) - 1)] if fdp.ConsumeProbability() < 0.9 \
                else fdp.ConsumeUnicodeNoSurrogates(12)  # other files and models: the readers' targets
            spec[key] = value(fdp)
        try:
            check_method(TrainConfig(output="", **normalise(spec)).resolved())
        except AdapterLabError:
            pass

    return target


def run_target(target: str, extra: list[str]) -> None:
    """In this process: fuzz one target until libFuzzer's -max_total_time (atheris never returns)."""
    import atheris

    folder = Path(tempfile.mkdtemp(prefix=f"adapterlab-fuzz-{target}-"))
    with atheris.instrument_imports(include=["engine", "worker"]):
        import engine.data  # noqa: F401
        import worker.spec  # noqa: F401
    fuzz = _spec_target(folder) if target == "spec" else _read_target(f".{target}", folder)
    atheris.Setup([sys.argv[0], *extra], fuzz)
    atheris.Fuzz()


def fuzz(target: str, seconds: int) -> dict:
    """Run one target in a child process for `seconds`; return its executions and findings."""
    corpus, findings = CORPUS / target, RESULTS / target
    corpus.mkdir(parents=True, exist_ok=True)
    findings.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds(target)):
        (corpus / f"seed-{i}").write_bytes(seed)
    before = {p.name for p in findings.glob("crash-*")} | {p.name for p in findings.glob("oom-*")} | \
        {p.name for p in findings.glob("timeout-*")}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT / "tests")}
    done = subprocess.run([sys.executable, __file__, "--run", target, "--", f"-max_total_time={seconds}",
                           "-timeout=20", "-rss_limit_mb=3072", f"-artifact_prefix={findings}/", "-max_len=65536",
                           "-print_final_stats=1", str(corpus)], env=env, capture_output=True, text=True, cwd=ROOT)
    runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", done.stderr)
    found = sorted({p.name for p in findings.iterdir() if p.name.startswith(("crash-", "oom-", "timeout-"))} - before)
    error = re.findall(r"=== Uncaught Python exception: ===\n(.+)", done.stdout + done.stderr)
    return {"target": target, "seconds": seconds, "executions": int(runs[-1]) if runs else 0,
            "corpus": len(list(corpus.iterdir())), "new_findings": found, "exit": done.returncode,
            "first_error": error[0] if error else None, "log_tail": done.stderr[-1500:] if found else ""}


def markdown(report: dict) -> str:
    lines = [f"{report['date']}, CPU: {report['cpu']}, atheris {report['atheris']}. `{report['command']}`", "",
             "| target | seconds | executions | corpus | new findings |", "|---|---:|---:|---:|---|"]
    lines += [f"| {r['target']} | {r['seconds']} | {r['executions']:,} | {r['corpus']} | "
              f"{', '.join(r['new_findings']) or 'none'}{' (' + r['first_error'] + ')' if r['first_error'] else ''} |"
              for r in report["runs"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--run"]:
        run_target(argv[1], argv[3:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=300, help="fuzzing time per target")
    p.add_argument("--target", choices=TARGETS, action="append", help="one target (repeatable; default: all)")
    p.add_argument("--docs", default=str(ROOT / "docs" / "fuzzing.md"), help="docs page to update, or 'none'")
    a = p.parse_args(argv)
    import atheris

    from engine.precision import cpu_model

    runs = []
    for target in a.target or TARGETS:
        runs.append(fuzz(target, a.seconds))
        print(json.dumps({k: v for k, v in runs[-1].items() if k != "log_tail"}), flush=True)
        if runs[-1]["log_tail"]:
            print(runs[-1]["log_tail"], file=sys.stderr)
    report = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "cpu": cpu_model(),
              "atheris": getattr(atheris, "__version__", "3"),
              "command": f"python bench/fuzz.py --seconds {a.seconds}", "runs": runs}
    results = ROOT / "bench" / "results" / f"fuzz-{cpu_family(report['cpu'])}.json"
    publish(report, [results], markdown(report), a.docs, "fuzz", "## Results")
    return 1 if any(r["new_findings"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
