"""`python -m worker`: a worker process on its own, as `adapterlab serve` starts it beside the web app (the worker
floor does not reach up to the app's command line). Problems end as one line and exit status 2."""

from __future__ import annotations

import argparse
import sys

from engine.errors import AdapterLabError
from worker import settings
from worker.flags import add_worker_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description="run AdapterLab jobs from the queue")
    add_worker_args(parser)
    args = parser.parse_args(argv)
    try:
        settings.check_data_dir()
        from worker.consumer import run_worker

        run_worker(gpu=args.gpu, cpu=args.cpu, parent_pid=args.exit_with_parent)
    except AdapterLabError as exc:
        print(f"adapterlab worker: {exc.kind}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
