"""Whether the Hugging Face Hub can be reached (checked once, in milliseconds, before any hub download: without
it, the hub clients retry for half a minute and print each retry before failing offline), and where a model is
on this machine."""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse


def offline_forced() -> bool:
    flags = (os.environ.get(v, "0").lower() for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return any(f in ("1", "true", "yes") for f in flags)


@lru_cache(maxsize=1)
def _reachable(endpoint: str) -> bool:
    url = urlparse(endpoint)
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=3).close()
        return True
    except OSError:
        return False


def hub_available() -> bool:
    """False when offline mode is set or the hub's host cannot be connected to."""
    return not offline_forced() and _reachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))


def local_folder(name_or_path: str) -> Path | None:
    """A model folder, or the local Hugging Face cache's snapshot of a hub id (its main revision, as transformers
    reads it offline); None if neither is on this machine."""
    folder = Path(name_or_path)
    if folder.is_dir():
        return folder
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(name_or_path, "config.json")
    except ValueError:  # not a valid hub id
        return None
    return Path(found).parent if isinstance(found, str) else None
