"""Who is asking, in the web server: the page's login, API tokens on Gradio's routes, and the Actor of an event.

Logins: the users in the job store (worker/users.py), and the single admin of ADAPTERLAB_USERNAME/PASSWORD (the
simple mode). Scripts send `Authorization: Bearer TOKEN`: on Gradio's routes `BearerTokens` checks it on every
request and lets it through as that user's login (a wrong one is refused with 401 before Gradio sees it); `/v1`
checks it itself (app/rest.py).
"""

from __future__ import annotations

import json
import secrets
import time

import anyio
from gradio.context import LocalContext

from app.security import auth_from_env
from worker import users
from worker.access import MACHINE, NOBODY, Actor, log

REST_PREFIX = "/v1"


_CHECK_SECONDS = 5.0  # how long "does the store have users?" is taken as known: not a query on every call
_required: tuple[float, bool] = (-_CHECK_SECONDS, False)


def login_required() -> bool:
    """Whether the server asks for a login: the simple mode's pair is set, or the store has users."""
    global _required
    if auth_from_env() is not None:
        return True
    checked, found = _required
    if time.monotonic() - checked >= _CHECK_SECONDS:
        found = users.accounts_enabled()
        _required = (time.monotonic(), found)
    return found


def check_login(name: str, password: str) -> bool:
    """Gradio's auth function: the single admin's pair, or a user's password."""
    single = auth_from_env()
    if single and secrets.compare_digest(name, single[0]) & secrets.compare_digest(password, single[1]):
        return True
    return users.check_password(name, password)


def actor_of(username: str | None) -> Actor:
    """The Actor behind a login name: the single admin, a user, or, without any login on this server, the
    machine's owner (loopback by default). A name whose account was removed since it logged in is nobody."""
    single = auth_from_env()
    if single and username == single[0]:
        return MACHINE
    if not username:
        return NOBODY if login_required() else MACHINE
    return users.actor(username) or NOBODY


def current() -> Actor:
    """The Actor of the Gradio event being handled (its request's login)."""
    request = LocalContext.request.get(None)
    return actor_of(getattr(request, "username", None))


class BearerTokens:
    """ASGI middleware for Gradio's routes: a request with `Authorization: Bearer TOKEN` is let in as the
    token's user, through a login session that lives only in this process and is never sent to the client
    (so revoking the token ends it at the next request)."""

    def __init__(self, app) -> None:
        self.app = app
        self.sessions: dict[str, str] = {}  # token id -> the session key in Gradio's login table

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(REST_PREFIX):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if scheme.lower() != "bearer":
            return await self.app(scope, receive, send)
        who = await anyio.to_thread.run_sync(users.token_actor, token.strip())
        if who is None:
            log.warning("refused: an unknown or revoked API token on %s", scope["path"])
            return await _unauthorized(send)
        gradio_app = scope["app"]
        token_id = token.strip().split("_")[1]
        session = self.sessions.setdefault(token_id, secrets.token_urlsafe(32))
        gradio_app.tokens[session] = who.name
        cookie = f"access-token-{gradio_app.cookie_id}={session}".encode()
        kept = [(k, v) for k, v in scope["headers"] if k not in (b"cookie", b"authorization")]
        await self.app({**scope, "headers": [*kept, (b"cookie", cookie)]}, receive, send)


async def _unauthorized(send) -> None:
    body = json.dumps({"detail": "This API token is not valid (mistyped, or revoked): create one with "
                                 "`adapterlab tokens create --user NAME`."}).encode()
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
    await send({"type": "http.response.body", "body": body})
