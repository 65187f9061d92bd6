"""The worker's command-line flags, for `adapterlab worker` and for `python -m worker` (what `serve` starts).

Kept apart from the consumer so that building the command line imports neither torch nor the engine.
"""

from __future__ import annotations

import argparse


def add_worker_args(p: argparse.ArgumentParser) -> None:
    device = p.add_mutually_exclusive_group()
    device.add_argument("--gpu", type=int, help="GPU index to train on (default: the first GPU, else the CPU)")
    device.add_argument("--cpu", action="store_true", help="train on the CPU even if there is a GPU")
    p.add_argument("--exit-with-parent", type=int, metavar="PID", help=argparse.SUPPRESS)
