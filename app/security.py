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

DEFAULT_PORT = 7860
DEFAULT_MAX_UPLOAD_MB = 1024  # a 1M-row CSV is ~240 MB
USERNAME_ENV = "ADAPTERLAB_USERNAME"
PASSWORD_ENV = "ADAPTERLAB_PASSWORD"
ALLOW_ANONYMOUS_ENV = "ADAPTERLAB_ALLOW_ANONYMOUS"
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


def exposure_refusal(host: str, has_login: object, port: int = DEFAULT_PORT,
                     container: bool = False) -> str | None:
    """Why `serve` must not start: other machines could reach it and no login is set. Serving them anonymously
    has to be asked for (--allow-anonymous), never happen by a mistyped --host. In a container, which listens on
    every interface so that its port can be published, the advice is in `docker run` options."""
    if is_loopback(host) or has_login:
        return None
    if container:
        return (f"No login is set, and this container listens on {host} so that its port can be published. Publish "
                f"the port on this machine only and say so: docker run -p 127.0.0.1:{port}:{port} -e "
                f"{ALLOW_ANONYMOUS_ENV}=1 ...; or require a login: -e {USERNAME_ENV}=... -e {PASSWORD_ENV}=...")
    return (f"--host {host} makes AdapterLab reachable from other machines, and no login is set: anyone who can reach "
            f"it could upload data, train and delete jobs. Add accounts (`adapterlab users add NAME --admin`) or set "
            f"{USERNAME_ENV} and {PASSWORD_ENV} to require a login, or pass --allow-anonymous (or set "
            f"{ALLOW_ANONYMOUS_ENV}=1) to serve without one on purpose.")


def exposure_warning(host: str, has_login: object, port: int = DEFAULT_PORT,
                     container: bool = False) -> str | None:
    """What `serve` says when it was asked to start without a login where other machines could reach it: a
    warning; in a container, where that address is needed to publish the port, a note on how to publish it."""
    if is_loopback(host) or has_login:
        return None
    if container:
        return (f"note: no login is set ({ALLOW_ANONYMOUS_ENV}): publish this container's port on this machine only, "
                f"e.g. docker run -p 127.0.0.1:{port}:{port}; set {USERNAME_ENV} and {PASSWORD_ENV} before "
                "publishing it further.")
    return (f"warning: AdapterLab is listening on {host}, reachable from other machines, without a password: anyone "
            f"who can reach it can upload data, train and delete jobs. Set {USERNAME_ENV} and {PASSWORD_ENV} to "
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
