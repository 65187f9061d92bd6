"""Whether the Hugging Face Hub can be reached: checked once, in milliseconds, before any hub download.

Without it, the hub clients retry for half a minute and print each retry before failing offline.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache
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
