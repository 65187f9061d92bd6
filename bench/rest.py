"""The REST endpoint over HTTP on loopback: one-sentence latency and throughput with concurrent clients.

    python bench/rest.py            # ~3 minutes: trains one adapter, then measures

Starts `adapterlab serve` on a fresh data directory, trains a Pfeiffer adapter on 200 SST-2 sentences through
its embedded worker (`../shared/data/sst2`; elsewhere `datasets.load_dataset("glue", "sst2")`), then:
- p50 / p95 of `POST /v1/classify` with one SST-2 validation sentence, one keep-alive client, served by PyTorch
  (a server with `ADAPTERLAB_SERVE_ONNX=0`), then by onnxruntime (a server on the same data directory, once the
  adapter's export, started by its first request, is made), and of the Gradio API's `/predict` (gradio_client,
  PyTorch) on the same sentences, side by side;
- throughput with 1, 8 and 32 concurrent clients, each sending one sentence per request (600 requests in all).
Writes bench/results/rest-<cpu>.json and the `bench:rest` block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from common import latency, publish  # noqa: E402
from run import cpu_family  # noqa: E402

SST2 = ROOT.parent / "shared" / "data" / "sst2"
REQUESTS = 600
CLIENTS = (1, 8, 32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sentences(name: str, n: int) -> list[dict]:
    with (SST2 / name).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))[:n]


def serve(home: Path, onnx: bool = True) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "ADAPTERLAB_HOME": str(home), "HF_HUB_OFFLINE": "1", "ADAPTERLAB_SERVE_ONNX": str(int(onnx))}
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=(home / "serve.log").open("ab"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if httpx.get(f"{url}/v1/adapters", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit(f"adapterlab serve did not start:\n{(home / 'serve.log').read_text()[-3000:]}")


def training_file(home: Path, n: int) -> Path:
    """The first `n` SST-2 training sentences as a CSV to upload."""
    path = home / f"sst2-{n}.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["text", "label"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "label": r["label"]} for r in sentences("train.csv", n))
    return path


def train_adapter(url: str, home: Path) -> str:
    from gradio_client import Client, handle_file

    train = training_file(home, 200)
    client = Client(url, verbose=False, download_files=False)
    job_id = client.predict(data_file=handle_file(str(train)), text_column="text", label_column="label",
                            method="pfeiffer", epochs=1, api_name="/submit_job")
    for _ in range(600):
        job = client.predict(job_id=job_id, api_name="/job_status")
        if job["state"] in ("succeeded", "failed", "cancelled"):
            if job["state"] != "succeeded":
                raise SystemExit(f"training failed: {job.get('error')}")
            return job_id
        time.sleep(1)
    raise SystemExit("training did not finish in 10 minutes")


def serve_from_onnx(url: str, adapter: str) -> float:
    """Ask once (which starts the adapter's export), then wait until onnxruntime serves it: the seconds taken."""
    start = time.perf_counter()
    httpx.post(f"{url}/v1/classify", json={"adapter": adapter, "texts": ["warm up"]}, timeout=120).raise_for_status()
    while time.perf_counter() - start < 600:
        listed = {a["id"]: a for a in httpx.get(f"{url}/v1/adapters", timeout=30).json()}
        if listed[adapter]["runtime"] == "onnxruntime":
            return round(time.perf_counter() - start, 1)
        time.sleep(0.5)
    raise SystemExit("the adapter's ONNX export did not finish in 10 minutes (see the server's log)")


def one_sentence(url: str, adapter: str, texts: list[str]) -> dict:
    with httpx.Client(base_url=url) as http:
        return latency(lambda t: http.post("/v1/classify", json={"adapter": adapter, "texts": [t]})
                       .raise_for_status(), texts, warm=20)


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(60)


def _throughput(url: str, adapter: str, texts: list[str], clients: int) -> dict:
    """`clients` threads, each with its own keep-alive connection, share REQUESTS one-sentence requests."""
    per_client = REQUESTS // clients
    errors: list[str] = []

    def run(offset: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            for i in range(per_client):
                text = texts[(offset + i) % len(texts)]
                answer = http.post("/v1/classify", json={"adapter": adapter, "texts": [text]})
                if answer.status_code != 200:
                    errors.append(answer.text[:200])

    threads = [threading.Thread(target=run, args=(c * per_client,)) for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    done = per_client * clients
    return {"clients": clients, "requests": done, "per_second": round(done / seconds, 1), "errors": len(errors)}


def markdown(report: dict) -> str:
    rest, torch_rest, page = report["rest"], report["rest_pytorch"], report["gradio_api"]
    lines = [f"{report['date']}, CPU: {report['cpu']}, {report['cores']} cores, bundled model, one Pfeiffer adapter. "
             f"`{report['command']}`", "",
             "| one sentence over HTTP on loopback | p50 | p95 |", "|---|---:|---:|",
             f"| `POST /v1/classify`, onnxruntime (the adapter's export made, in {report['export_seconds']} s, after "
             f"its first request) | {rest['p50_ms']:.1f} ms | {rest['p95_ms']:.1f} ms |",
             f"| `POST /v1/classify`, PyTorch (`ADAPTERLAB_SERVE_ONNX=0`) | {torch_rest['p50_ms']:.1f} ms | "
             f"{torch_rest['p95_ms']:.1f} ms |",
             f"| Gradio API `/predict` (gradio_client, PyTorch) | {page['p50_ms']:.1f} ms | {page['p95_ms']:.1f} ms |",
             "", "| concurrent clients (onnxruntime) | requests | sentences/s | errors |", "|---:|---:|---:|---:|"]
    lines += [f"| {t['clients']} | {t['requests']} | {t['per_second']:.1f} | {t['errors']} |"
              for t in report["throughput"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"), help="docs page to update, or 'none'")
    a = p.parse_args(argv)
    if not SST2.is_dir():
        raise SystemExit(f"{SST2} is missing: see the docstring for where SST-2 comes from.")
    from gradio_client import Client

    from engine.precision import cpu_model

    texts = [r["text"] for r in sentences("validation.csv", 320)]
    with tempfile.TemporaryDirectory(prefix="adapterlab-rest-") as tmp:
        home = Path(tmp)
        server, url = serve(home, onnx=False)
        try:
            adapter = train_adapter(url, home)
            rest_pytorch = one_sentence(url, adapter, texts)
        finally:
            stop(server)
        server, url = serve(home)
        try:
            export_seconds = serve_from_onnx(url, adapter)
            rest = one_sentence(url, adapter, texts)
            page = Client(url, verbose=False, download_files=False)
            gradio_api = latency(lambda t: page.predict(adapter=adapter, text=t, api_name="/predict"), texts[:120],
                                 warm=20)
            throughput = [_throughput(url, adapter, texts, n) for n in CLIENTS]
        finally:
            stop(server)
    report = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "cpu": cpu_model(), "cores": os.cpu_count(),
              "command": "python bench/rest.py", "rest": rest, "rest_pytorch": rest_pytorch,
              "export_seconds": export_seconds, "gradio_api": gradio_api, "throughput": throughput}
    results = ROOT / "bench" / "results" / f"rest-{cpu_family(report['cpu'])}.json"
    publish(report, [results], markdown(report), a.docs, "rest", "## REST endpoint")
    return 0


if __name__ == "__main__":
    sys.exit(main())
