"""The `adapterlab worker` process: a Huey consumer that trains one job at a time on one device."""

from __future__ import annotations

import logging
import os
import signal
import threading

from huey.consumer import Consumer

from engine.errors import ConfigError
from worker import db, recovery, runner, search, settings
from worker.job_queue import get_huey, location

log = logging.getLogger("adapterlab.worker")


class GracefulConsumer(Consumer):
    """Huey's consumer, except that stopping first asks the running training to stop at its next step.

    The job then goes back to the queue as `interrupted` and resumes from its last epoch checkpoint, instead of
    the worker either waiting for a long training to end or dropping it mid-write.
    """

    def stop(self, graceful: bool = False) -> None:
        runner.shutdown.set()
        super().stop(graceful=True)


def choose_device(gpu: int | None, cpu: bool) -> str:
    """`cpu`, `cuda:N` for `--gpu N` (refused if absent), or the engine's choice: a GPU if there is one."""
    if cpu:
        return "cpu"
    import torch

    if gpu is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not 0 <= gpu < count:
        raise ConfigError(f"GPU {gpu} is not available: this machine has {count} CUDA GPU(s).")
    torch.cuda.set_device(gpu)
    return f"cuda:{gpu}"


def _watch(me: str, parent_pid: int | None) -> None:
    """Every heartbeat: re-queue jobs of dead workers and waiting jobs the queue lost, move stalled searches on;
    stop this worker if the app that started it is gone."""
    lost = recovery.OrphanWatch()
    while not runner.shutdown.wait(settings.heartbeat_seconds()):
        if parent_pid and os.getppid() != parent_pid:
            log.warning("parent process %d is gone; stopping", parent_pid)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        try:
            recovery.recover(me)
            lost.check()
            search.resume_stalled()
        except Exception:  # the database or the queue may be briefly away; the next round tries again
            log.exception("checking for dead workers and lost queue messages failed")


def run_worker(gpu: int | None = None, cpu: bool = False, parent_pid: int | None = None) -> None:
    """Run until SIGINT/SIGTERM: recover what crashed workers left, then take jobs from the queue one by one."""
    device = choose_device(gpu, cpu)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    os.environ["ADAPTERLAB_DEVICE"] = device
    db.get_engine()
    me = runner.worker_id()
    log.info("worker %s on %s; jobs in %s, queue in %s", me, device,
             db.get_engine().url.render_as_string(hide_password=True), location())
    recovery.recover(me, starting=True)
    recovery.requeue_orphans()
    search.resume_stalled()
    threading.Thread(target=_watch, args=(me, parent_pid), name="watchdog", daemon=True).start()
    GracefulConsumer(get_huey(), workers=1, periodic=False, max_delay=1.0, shutdown_timeout=60).run()
