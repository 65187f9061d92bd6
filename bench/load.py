"""One server under load: 50 concurrent clients, 2,000 predictions, while one job trains and 10 wait.

    python bench/load.py            # ~5 minutes: trains one adapter, queues 11 jobs, then two rounds of load

Starts `adapterlab serve` on loopback on a fresh data directory, trains a Pfeiffer adapter on 200 SST-2 sentences
(`../shared/data/sst2`), then submits a long job (2,000 sentences, 50 epochs: it trains through the whole
measurement) and 10 more that wait behind it (the embedded worker trains one job at a time). Then, three times, 50
clients (threads, each with its own keep-alive connection) share 2,000 `POST /v1/classify` requests of one SST-2
validation sentence each, a bounded loop that stops by itself. Every answer must equal the one the server gave
for that sentence alone before the load (label, and probabilities within 1e-4): concurrent requests share
forward passes (app/coalescing.py), so a mix-up between them would show here. The server's and the worker's
resident memory is sampled every 0.2 s. The server stops at the end, its worker and jobs with it.
Writes bench/results/load-<cpu>.json and the `bench:load` block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from common import publish  # noqa: E402
from rest import sentences, serve, serve_from_onnx, train_adapter, training_file  # noqa: E402
from run import cpu_family  # noqa: E402

CLIENTS, PREDICTIONS, ROUNDS, QUEUED = 50, 2000, 3, 10
TOLERANCE = 1e-4  # a row's probabilities in a shared batch against alone: float sums in another order, no more


class Memory(threading.Thread):
    """Resident memory (MiB) of the server and of each process it started, sampled until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.server = psutil.Process(pid)
        self.samples: list[tuple[float, float, float]] = []  # (seconds, server MiB, worker MiB)
        self.done = threading.Event()

    def sample(self) -> tuple[float, float]:
        children = sum(c.memory_info().rss for c in self.server.children(recursive=True))
        return self.server.memory_info().rss / 2**20, children / 2**20

    def run(self) -> None:
        start = time.monotonic()
        while not self.done.wait(0.2):
            self.samples.append((time.monotonic() - start, *self.sample()))


def _submit_jobs(url: str, home: Path) -> list[str]:
    """A long job that trains through the measurement, and QUEUED short ones behind it."""
    from gradio_client import Client, handle_file

    data = training_file(home, 2000)
    client = Client(url, verbose=False, download_files=False)

    def submit(name: str, epochs: int) -> str:
        return client.predict(data_file=handle_file(str(data)), text_column="text", label_column="label",
                              method="pfeiffer", epochs=epochs, name=name, api_name="/submit_job")

    jobs = [submit("trains through the load", 50)] + [submit(f"waits {i + 1}", 1) for i in range(QUEUED)]
    for _ in range(600):
        if client.predict(job_id=jobs[0], api_name="/job_status")["state"] == "running":
            return jobs
        time.sleep(0.5)
    raise SystemExit("the long job did not start training in 5 minutes")


def _states(url: str, jobs: list[str]) -> list[str]:
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=False)
    return [client.predict(job_id=job_id, api_name="/job_status")["state"] for job_id in jobs]


def _expected(http: httpx.Client, adapter: str, texts: list[str]) -> dict[str, dict]:
    """Each sentence's answer when it is the only request in flight."""
    return {t: http.post("/v1/classify", json={"adapter": adapter, "texts": [t]}).raise_for_status()
            .json()["results"][0] for t in dict.fromkeys(texts)}


def _round(url: str, adapter: str, texts: list[str], expected: dict[str, dict]) -> dict:
    """CLIENTS threads share PREDICTIONS one-sentence requests; each answer checked against `expected`."""
    per_client = PREDICTIONS // CLIENTS
    times: list[float] = []
    errors: list[str] = []
    wrong: list[str] = []
    gaps: list[float] = []
    ready = threading.Barrier(CLIENTS + 1)

    def client(offset: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            http.get("/v1/adapters").raise_for_status()  # connected before the clock starts
            ready.wait()
            for i in range(per_client):
                text = texts[(offset + i) % len(texts)]
                start = time.perf_counter()
                try:
                    answer = http.post("/v1/classify", json={"adapter": adapter, "texts": [text]})
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                times.append((time.perf_counter() - start) * 1000)
                if answer.status_code != 200:
                    errors.append(f"{answer.status_code}: {answer.text[:200]}")
                    continue
                got, want = answer.json()["results"][0], expected[text]
                gaps.append(max(abs(p - want["probabilities"][k]) for k, p in got["probabilities"].items()))
                if got["label"] != want["label"] or gaps[-1] > TOLERANCE:
                    wrong.append(text)

    threads = [threading.Thread(target=client, args=(c * per_client,)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    ready.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    times.sort()
    return {"requests": per_client * CLIENTS, "answered": len(times), "errors": len(errors), "wrong": len(wrong),
            "max_abs_dp": max(gaps, default=0.0), "first_errors": errors[:3], "seconds": round(seconds, 1),
            "per_second": round(len(times) / seconds, 1), "p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(times[int(len(times) * 0.95)], 1), "max_ms": round(times[-1], 1)}


def markdown(report: dict) -> str:
    memory = report["memory_mib"]
    lines = [f"{report['date']}, CPU: {report['cpu']}, {report['cores']} cores, bundled model, one Pfeiffer adapter; "
             f"{CLIENTS} clients, {PREDICTIONS:,} one-sentence `POST /v1/classify` per round, while one job trained "
             f"and {QUEUED} waited (states after: {report['job_states_after']}). `{report['command']}`", "",
             "| round | answered | wrong | max \\|dp\\| | errors | p50 | p95 | max | sentences/s | server RSS after |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {i + 1} | {r['answered']:,} | {r['wrong']} | {r['max_abs_dp']:.1e} | {r['errors']} | "
              f"{r['p50_ms']:.0f} ms | {r['p95_ms']:.0f} ms | {r['max_ms']:.0f} ms | {r['per_second']:.1f} | "
              f"{r['server_rss_after']:.0f} MiB |"
              for i, r in enumerate(report["rounds"])]
    lines += ["", f"Resident memory: server {memory['server_before']:.0f} MiB before the load, "
                  f"{memory['server_peak']:.0f} MiB at most; the worker (training) {memory['worker_before']:.0f} "
                  f"MiB before, {memory['worker_peak']:.0f} MiB at most."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"), help="docs page to update, or 'none'")
    a = p.parse_args(argv)
    from engine.precision import cpu_model

    texts = [r["text"] for r in sentences("validation.csv", 400)]
    with tempfile.TemporaryDirectory(prefix="adapterlab-load-") as tmp:
        home = Path(tmp)
        server, url = serve(home)
        try:
            adapter = train_adapter(url, home)
            serve_from_onnx(url, adapter)  # as a served adapter is after its first request
            jobs = _submit_jobs(url, home)
            memory = Memory(server.pid)
            server_before, worker_before = memory.sample()
            memory.start()
            with httpx.Client(base_url=url, timeout=120) as http:
                expected = _expected(http, adapter, texts)
            rounds = []
            for _ in range(ROUNDS):
                result = _round(url, adapter, texts, expected)
                result["server_rss_after"] = round(memory.sample()[0], 1)
                rounds.append(result)
                print(result, flush=True)
            memory.done.set()
            states = _states(url, jobs)
        finally:
            server.terminate()
            server.wait(60)
    counts = {s: states.count(s) for s in dict.fromkeys(states)}
    report = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "cpu": cpu_model(), "cores": os.cpu_count(),
              "command": "python bench/load.py", "rounds": rounds,
              "job_states_after": ", ".join(f"{n} {s}" for s, n in counts.items()),
              "memory_mib": {"server_before": round(server_before, 1), "worker_before": round(worker_before, 1),
                             "server_peak": round(max(s[1] for s in memory.samples), 1),
                             "worker_peak": round(max(s[2] for s in memory.samples), 1),
                             "samples": [[round(x, 1) for x in s] for s in memory.samples[::10]]}}
    results = ROOT / "bench" / "results" / f"load-{cpu_family(report['cpu'])}.json"
    publish(report, [results], markdown(report), a.docs, "load", "## One server under load")
    failed = [r for r in rounds if r["errors"] or r["wrong"] or r["answered"] != r["requests"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
