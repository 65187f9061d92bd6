"""Safe defaults for the web app: who may log in, where it listens, and which names and paths it accepts.

Nothing a browser sends is used as a path as is: uploads must lie in Gradio's upload folder, job and adapter
ids are looked up in the job store, and file names are reduced to plain characters.
"""

from __future__ import annotations

import ipaddress
import os
import re
import unicodedata
from pathlib import Path

from engine.errors import DataError

DEFAULT_MAX_UPLOAD_MB = 200
USERNAME_ENV = "ADAPTERLAB_USERNAME"
PASSWORD_ENV = "ADAPTERLAB_PASSWORD"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def auth_from_env() -> tuple[str, str] | None:
    """(username, password) when both are set in the environment, else None (no login)."""
    user, password = os.environ.get(USERNAME_ENV, ""), os.environ.get(PASSWORD_ENV, "")
    return (user, password) if user and password else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, auth: tuple[str, str] | None) -> str | None:
    """A warning when the app is reachable from other machines without a password."""
    if is_loopback(host) or auth:
        return None
    return (f"AdapterLab is listening on {host}, reachable from other machines, without a password: anyone who "
            f"can reach it can upload data, train and delete jobs. Set {USERNAME_ENV} and {PASSWORD_ENV} to "
            "require a login.")


def safe_filename(name: str, default: str = "file") -> str:
    """A file name without folders, control characters or leading dots; keeps the extension."""
    base = unicodedata.normalize("NFKD", Path(str(name).replace("\\", "/")).name)
    base = base.encode("ascii", "ignore").decode()
    base = _UNSAFE.sub("_", base).strip("._-")
    return base[:120] or default


def check_job_id(job_id: str) -> str:
    """Reject anything that is not shaped like a job id before it reaches the job store."""
    job_id = (job_id or "").strip()
    if not _JOB_ID.match(job_id):
        raise DataError("That is not a valid job id.")
    return job_id


def uploaded_path(path: str | os.PathLike | None, upload_folder: str) -> Path:
    """The path of a file the browser uploaded, refusing any path outside Gradio's upload folder."""
    if not path:
        raise DataError("No file was uploaded.")
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(Path(upload_folder).resolve()) or not resolved.is_file():
        raise DataError("That file was not uploaded through this app; upload it again.")
    return resolved
