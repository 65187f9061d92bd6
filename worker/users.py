"""The team's accounts in the job store: users with argon2-hashed passwords, and API tokens for scripts.

A token reads `al_<id>_<secret>`; it is shown once when created and only its secret's SHA-256 is kept. With no
user in the store, AdapterLab has no accounts (one person on their machine, or the single admin login).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update

from engine.errors import ConfigError
from worker import db
from worker.access import Actor
from worker.models import ApiToken, Evaluation, Job, User, utcnow

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TOKEN = re.compile(r"^al_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
MIN_PASSWORD = 8
_hasher = PasswordHasher()
# A password check for a name with no account costs the same as one with: no timing tells which names exist
_DUMMY_HASH = _hasher.hash("not a password of anyone")


class AccountError(ConfigError):
    kind = "account error"


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not _NAME.match(name):
        raise AccountError("A user name is 1 to 64 letters, digits, dots, dashes or underscores, starting with a "
                           "letter or digit.")
    return name


def _check_password(password: str) -> str:
    if len(password or "") < MIN_PASSWORD:
        raise AccountError(f"The password is too short: use {MIN_PASSWORD} characters or more.")
    return password


def accounts_enabled() -> bool:
    """Whether the store has any user: then the page asks for a login and scripts need a token."""
    with db.session() as s:
        return bool(s.scalar(select(func.count()).select_from(User)))


def add(name: str, password: str, admin: bool = False) -> dict:
    name, password = check_name(name), _check_password(password)
    with db.session() as s:
        if s.get(User, name) is not None:
            raise AccountError(f"There is already a user '{name}'; change their password with "
                               f"`adapterlab users passwd {name}`.")
        s.add(User(name=name, password_hash=_hasher.hash(password), admin=admin))
    return get(name)


def _user(s, name: str) -> User:
    user = s.get(User, name)
    if user is None:
        raise AccountError(f"There is no user '{name}' (`adapterlab users list` shows who there is).")
    return user


def _as_dict(user: User) -> dict:
    return {"name": user.name, "admin": user.admin, "created_at": user.created_at.isoformat(timespec="seconds"),
            "tokens": len(user.tokens)}


def get(name: str) -> dict:
    with db.session() as s:
        return _as_dict(_user(s, name))


def list_users() -> list[dict]:
    with db.session() as s:
        return [_as_dict(user) for user in s.scalars(select(User).order_by(User.name))]


def remove(name: str) -> int:
    """Remove a user and their tokens; their jobs stay, kept by the admins (owner cleared). Returns how many."""
    with db.session() as s:
        user = _user(s, name)
        s.delete(user)
        kept = s.execute(update(Job).where(Job.owner == name).values(owner=None)).rowcount
        s.execute(update(Evaluation).where(Evaluation.owner == name).values(owner=None))
    return kept


def set_password(name: str, password: str) -> None:
    password = _check_password(password)
    with db.session() as s:
        user = _user(s, name)
        user.password_hash = _hasher.hash(password)


def check_password(name: str, password: str) -> bool:
    """Whether this is the user's password (argon2, in constant time whether or not the user exists)."""
    with db.session() as s:
        user = s.get(User, (name or "").strip())
        stored = user.password_hash if user else _DUMMY_HASH
    try:
        return _hasher.verify(stored, password or "") and user is not None
    except (VerificationError, InvalidHashError):
        return False


def actor(name: str | None) -> Actor | None:
    """The Actor for a logged-in user's name; None if no such user (removed since they logged in)."""
    if not name:
        return None
    with db.session() as s:
        user = s.get(User, name)
        return Actor(user.name, admin=user.admin) if user else None


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(name: str) -> dict:
    """A new API token for the user: `{"token", "id", "user"}`; the token itself is never shown again."""
    token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    with db.session() as s:
        if s.get(User, name) is None:
            raise AccountError(f"There is no user '{name}' (`adapterlab users add {name}` creates them).")
        s.add(ApiToken(id=token_id, user_name=name, secret_sha256=_sha256(secret)))
    return {"token": f"al_{token_id}_{secret}", "id": token_id, "user": name}


def list_tokens(name: str | None = None) -> list[dict]:
    with db.session() as s:
        query = select(ApiToken).order_by(ApiToken.user_name, ApiToken.created_at)
        rows = s.scalars(query.where(ApiToken.user_name == name) if name else query).all()
        return [{"id": t.id, "user": t.user_name, "created_at": t.created_at.isoformat(timespec="seconds"),
                 "last_used_at": t.last_used_at.isoformat(timespec="seconds") if t.last_used_at else None}
                for t in rows]


def revoke_token(token_or_id: str) -> str:
    """Revoke a token by its id (as `tokens list` shows) or the whole token; returns its id."""
    found = _TOKEN.match(token_or_id or "")
    token_id = found.group(1) if found else (token_or_id or "").strip()
    with db.session() as s:
        token = s.get(ApiToken, token_id)
        if token is None:
            raise AccountError(f"There is no token '{token_id}' (`adapterlab tokens list` shows them).")
        s.delete(token)
    return token_id


def token_actor(token: str) -> Actor | None:
    """The Actor a token stands for, or None for a malformed, unknown or revoked one."""
    found = _TOKEN.match((token or "").strip())
    if not found:
        return None
    with db.session() as s:
        row = s.get(ApiToken, found.group(1))
        if row is None or not secrets.compare_digest(row.secret_sha256, _sha256(found.group(2))):
            return None
        if row.last_used_at is None or row.last_used_at < utcnow() - timedelta(minutes=1):
            row.last_used_at = utcnow()  # to the minute: a busy script does not write on every call
        return Actor(row.user.name, admin=row.user.admin)
