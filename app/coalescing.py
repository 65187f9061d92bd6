"""Concurrent requests for the one model, merged: whoever holds the lock hands every waiting request to the model.

A request adds its rows to the queue, then takes the lock. The thread that gets it sends all queued rows through
`work` at once (one `predict_batch`, whose batches then hold rows of several requests) and hands each request its
share; a request already answered by another thread only collects its results. A lone request waits for nothing:
there is no timer, only the lock each request would wait for anyway.

`work` itself always runs on one thread of its own: every thread that runs the model keeps memory of its own
(allocator arenas, oneDNN scratchpads), and with the web server's 40 request threads taking turns the server
grew by over a gigabyte under load (docs/benchmarks.md, One server under load).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


@dataclass
class _Waiting:
    rows: list
    results: list | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class Coalescer:
    """`work(rows) -> results` (one result per row, in order) called for the rows of every waiting request."""

    lock: threading.Lock  # held by the request whose thread hands the waiting rows to `work`
    work: Callable[[list], list]
    queue: list[_Waiting] = field(default_factory=list)
    guard: threading.Lock = field(default_factory=threading.Lock)
    runs: int = 0  # how many times `work` ran (requests merged = requests - runs)
    model_thread: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "model"))

    def __call__(self, rows: list) -> list:
        waiting = _Waiting(list(rows))
        with self.guard:
            self.queue.append(waiting)
        with self.lock:
            if not waiting.done:
                with self.guard:
                    batch, self.queue = self.queue, []
                self._run(batch)
        if waiting.error is not None:
            raise waiting.error
        return waiting.results or []

    def _run(self, batch: list[_Waiting]) -> None:
        try:
            results = self._work([row for w in batch for row in w.rows])
            start = 0
            for w in batch:
                w.results, start = results[start : start + len(w.rows)], start + len(w.rows)
        except Exception:  # noqa: BLE001 - one request's failure is that request's: run each alone
            if len(batch) == 1:
                raise
            for w in batch:
                try:
                    w.results = self._work(w.rows)
                except Exception as exc:  # noqa: BLE001 - handed to the request's own thread
                    w.error = exc
        finally:
            for w in batch:
                w.done = True

    def _work(self, rows: list) -> list:
        self.runs += 1
        return self.model_thread.submit(self.work, rows).result()
