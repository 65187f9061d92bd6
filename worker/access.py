"""Who may see and change which job: the rules every jobs API call applies, and the log of refusals.

An `Actor` is who asks: a user (by name), an admin, or the machine itself (the command line without a token,
the worker). A user sees their own jobs and the shared ones; only a job's owner or an admin changes it (cancel,
retry, delete, share, threshold). A job the actor may not see reads as one that does not exist, so guessed ids
tell nothing. Every refusal is logged on `adapterlab.access`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import ColumnElement, false, or_, true

from engine.errors import AdapterLabError
from worker.models import Job

log = logging.getLogger("adapterlab.access")


class AccessDenied(AdapterLabError):
    """The actor sees the job (it is shared) but may not change it."""

    kind = "not allowed"


@dataclass(frozen=True)
class Actor:
    """Who asks. `name` None with `admin`: the machine itself or the single-login admin (ADAPTERLAB_USERNAME)."""

    name: str | None
    admin: bool = False

    @property
    def owner(self) -> str | None:
        """What a job this actor creates records as its owner: a user's name (the machine's jobs have none)."""
        return self.name

    def __str__(self) -> str:
        return self.name or ("the machine" if self.admin else "nobody")


MACHINE = Actor(None, admin=True)
NOBODY = Actor(None)  # a login whose account was removed, or a request with none where one is needed


def visible(actor: Actor) -> ColumnElement[bool]:
    """The jobs `actor` may see, as a WHERE clause."""
    if actor.admin:
        return true()
    if actor.name is None:
        return false()
    return or_(Job.owner == actor.name, Job.shared.is_(True))


def may_see(actor: Actor, owner: str | None, shared: bool) -> bool:
    return actor.admin or (actor.name is not None and (owner == actor.name or shared))


def may_change(actor: Actor, owner: str | None) -> bool:
    return actor.admin or (actor.name is not None and owner == actor.name)


def refused(actor: Actor, action: str, job_id: str, owner: str | None) -> None:
    log.warning("refused: %s tried to %s job %s (owner: %s)", actor, action, job_id, owner or "admin")


def check_change(actor: Actor, action: str, job_id: str, owner: str | None) -> None:
    """Raise AccessDenied (logged) unless `actor` may change a job it can see."""
    if not may_change(actor, owner):
        refused(actor, action, job_id, owner)
        raise AccessDenied(f"Job {job_id} belongs to {owner or 'an admin'}: only its owner or an admin can "
                           f"{action} it.")
