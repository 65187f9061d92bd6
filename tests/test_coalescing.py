"""Concurrent requests for one model merged into one run: each gets its own results, a failing request fails
alone, and a lone request runs at once."""

from __future__ import annotations

import threading

import pytest

from app.coalescing import Coalescer


def _merged(work, requests: list[list]) -> tuple[Coalescer, list]:
    """Run `requests` from as many threads; the first run waits until every other request is queued."""
    all_queued = threading.Event()
    first = threading.Event()

    def gated(rows: list) -> list:
        if not first.is_set():
            first.set()
            all_queued.wait(30)
        return work(rows)

    coalescer = Coalescer(threading.RLock(), gated)
    answers: list = [None] * len(requests)

    def call(i: int) -> None:
        try:
            answers[i] = coalescer(requests[i])
        except ValueError as exc:
            answers[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(requests))]
    threads[0].start()
    first.wait(30)
    for t in threads[1:]:
        t.start()
    while len(coalescer.queue) < len(requests) - 1:  # the others, queued behind the first run
        threading.Event().wait(0.01)
    all_queued.set()
    for t in threads:
        t.join(30)
    return coalescer, answers


def test_waiting_requests_run_together_and_each_gets_its_own_rows():
    seen: list[list] = []

    def double(rows: list) -> list:
        seen.append(list(rows))
        return [2 * r for r in rows]

    requests = [[10 * i + k for k in range(i + 1)] for i in range(8)]
    coalescer, answers = _merged(double, requests)
    assert answers == [[2 * r for r in rows] for rows in requests]
    assert coalescer.runs == 2 and len(seen[1]) == sum(len(r) for r in requests[1:])  # 7 requests, one run


def test_a_failing_request_fails_alone():
    def picky(rows: list) -> list:
        if -1 in rows:
            raise ValueError("row -1 cannot be classified")
        return rows

    requests = [[1], [2, 3], [-1], [4]]
    _, answers = _merged(picky, requests)
    assert answers[0] == [1] and answers[1] == [2, 3] and answers[3] == [4]
    assert isinstance(answers[2], ValueError) and "row -1" in str(answers[2])


def test_a_lone_request_runs_at_once_and_raises_its_own_error():
    coalescer = Coalescer(threading.RLock(), lambda rows: [r + 1 for r in rows])
    assert coalescer([1, 2]) == [2, 3] and coalescer.runs == 1
    failing = Coalescer(threading.RLock(), lambda rows: [1 / r for r in rows])
    with pytest.raises(ZeroDivisionError):
        failing([0])


def test_the_work_runs_on_one_thread_whichever_thread_asks():
    """Each thread that runs the model keeps memory of its own: the requests' threads hand it to one thread."""
    seen: set[int] = set()
    coalescer = Coalescer(threading.Lock(), lambda rows: seen.add(threading.get_ident()) or rows)
    threads = [threading.Thread(target=coalescer, args=([i],)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 1 and threading.get_ident() not in seen
