"""`adapterlab serve`: the web app plus, unless --no-worker, an embedded worker process that it stops on exit."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from app.security import (
    ALLOW_ANONYMOUS_ENV,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_PORT,
    auth_from_env,
    exposure_refusal,
    exposure_warning,
    is_loopback,
)
from engine.errors import ConfigError
from worker import settings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="start the web app (and a training worker) on http://127.0.0.1:7860")
    p.add_argument("--host", default=os.environ.get("ADAPTERLAB_HOST", "127.0.0.1"),
                   help="interface to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=int(os.environ.get("ADAPTERLAB_PORT", DEFAULT_PORT)))
    p.add_argument("--no-worker", action="store_true",
                   help="do not start a worker here (jobs wait for `adapterlab worker` elsewhere)")
    p.add_argument("--max-upload-mb", type=int,
                   default=int(os.environ.get("ADAPTERLAB_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB)),
                   help="largest file a browser may upload, in MB (default 200)")
    p.add_argument("--allow-anonymous", action="store_true", default=settings.flag(ALLOW_ANONYMOUS_ENV),
                   help=f"serve other machines without a login, on purpose (or set {ALLOW_ANONYMOUS_ENV}=1); "
                        "without it, a --host other than this machine needs ADAPTERLAB_USERNAME/PASSWORD")
    p.set_defaults(func=cmd_serve)


def _stop_on_sigterm() -> threading.Event:
    """SIGTERM (docker stop, systemd) ends the server like Ctrl+C, so the worker is stopped too."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _has_login() -> bool:
    from worker import users

    return auth_from_env() is not None or users.accounts_enabled()


def refuse_if_exposed(host: str, port: int = DEFAULT_PORT, allow_anonymous: bool = False) -> None:
    """Stop before listening when other machines could reach the app without a login and no one asked for that."""
    if allow_anonymous or is_loopback(host):
        return
    refusal = exposure_refusal(host, _has_login(), port, settings.in_container())
    if refusal:
        raise ConfigError(refusal)


def warn_if_exposed(host: str, port: int = DEFAULT_PORT) -> None:
    """Say so on stderr when other machines can reach the app and no login is set."""
    warning = None if is_loopback(host) else exposure_warning(host, _has_login(), port, settings.in_container())
    if warning:
        print(f"adapterlab: {warning}", file=sys.stderr, flush=True)


def _address(host: str, port: int) -> str:
    if is_loopback(host):
        return f"http://{host}:{port}"
    return f"http://{'localhost' if host in ('0.0.0.0', '::') else host}:{port} (listening on {host})"


def cmd_serve(args: argparse.Namespace) -> int:
    settings.check_data_dir()  # both before the slow imports and the worker
    refuse_if_exposed(args.host, args.port, args.allow_anonymous)
    from app.main import launch
    from worker.embedded import start_embedded_worker, stop_embedded_worker

    warn_if_exposed(args.host, args.port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    for noisy in ("httpx", "alembic", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stop = _stop_on_sigterm()
    worker = None if args.no_worker else start_embedded_worker()
    try:
        try:
            demo = launch(args.host, args.port, args.max_upload_mb)
        except OSError as exc:
            raise ConfigError(f"Cannot listen on {args.host}:{args.port}: another program is probably using that "
                              "port. Pick another with --port.") from exc
        print(f"AdapterLab is running on {_address(args.host, args.port)}; press Ctrl+C to stop.", file=sys.stderr,
              flush=True)
        stop.wait()
        demo.close()
    finally:
        if worker is not None:
            stop_embedded_worker(worker)
    return 0
