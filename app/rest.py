"""`/v1`: classify texts with trained adapters over plain HTTP, on the web server's own port.

`POST /v1/classify` takes one adapter and its texts, or items that each name their adapter; `GET /v1/adapters`
lists what can be used, and whether onnxruntime or PyTorch answers for each (app/onnx_serving.py);
`GET /v1/openapi.json` is the schema. Adapters are the job ids the page shows. When the
server has logins (users, or ADAPTERLAB_USERNAME/PASSWORD), each call sends an API token
(`Authorization: Bearer TOKEN`, from `adapterlab tokens create`) or a login as HTTP Basic auth (`curl -u
NAME:PASS`), and sees the adapters that login may use; a wrong or missing one is refused with 401 and nothing
is done.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from app import access, services
from engine import __version__
from engine.errors import ConfigError, DataError
from worker import users
from worker.access import MACHINE, Actor

MAX_TEXTS = 256  # per request: a bigger batch is a file for the Playground's batch prediction
# A text to classify: not blank, as the schema says (the check itself answers 422 with the text's number)
Text = Annotated[str, WithJsonSchema({"type": "string", "pattern": r"\S", "description": "Not blank."})]


class Item(BaseModel):
    adapter: str = Field(description="The adapter's job id (or its unique name).")
    text: Text
    text_pair: str | None = Field(None, description="The second text, for an adapter trained on pairs.")


class ClassifyRequest(BaseModel):
    """Either `adapter` with `texts` (and `text_pairs`), or `items`, each naming its adapter."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["adapter", "texts"]},
                                                           {"required": ["items"]}]})

    adapter: str | None = Field(None, description="The adapter's job id (or its unique name), for `texts`.")
    texts: list[Text] | None = Field(None, max_length=MAX_TEXTS)
    text_pairs: list[str] | None = Field(None, max_length=MAX_TEXTS, description="One per text, for pairs.")
    items: list[Item] | None = Field(None, max_length=MAX_TEXTS)

    @model_validator(mode="after")
    def _one_form(self) -> ClassifyRequest:
        if (self.items is None) == (self.texts is None):
            raise ValueError("send either `adapter` and `texts`, or `items`")
        if self.texts is not None and not self.adapter:
            raise ValueError("`texts` need an `adapter`")
        if self.text_pairs is not None and len(self.text_pairs) != len(self.texts or []):
            raise ValueError("`text_pairs` needs one second text per text")
        if not (self.items or self.texts):
            raise ValueError("there is nothing to classify")
        return self

    def rows(self) -> list[tuple[str, str, str | None]]:
        if self.items is not None:
            return [(item.adapter, item.text, item.text_pair) for item in self.items]
        pairs = self.text_pairs or [None] * len(self.texts)
        return [(self.adapter, text, pair) for text, pair in zip(self.texts, pairs, strict=True)]


class Result(BaseModel):
    adapter: str
    label: str
    probabilities: dict[str, float]


class ClassifyResponse(BaseModel):
    results: list[Result]


class Error(BaseModel):
    detail: str | list[dict] = Field(description="What is wrong, in words (field by field for a malformed body).")


ERRORS: dict = {401: {"model": Error, "description": "The server has logins and the call sent no valid token or "
                      "login."},
                404: {"model": Error, "description": "No finished adapter has this id (or unique name)."},
                422: {"model": Error, "description": "The request cannot be classified as sent: an empty text, "
                      "a missing second text, `texts` without `adapter`, ..."}}


class Adapter(BaseModel):
    id: str
    name: str
    method: str
    labels: list[str]
    runtime: str = Field(description="What answers for it now: `onnxruntime` once its ONNX export is made (started "
                         "by its first request), `pytorch` until then.")


def caller(request: Request) -> Actor:
    """Who calls: an API token's user, a login sent as HTTP Basic auth, or, on a server without logins, the
    machine's owner."""
    if not access.login_required():
        return MACHINE
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        found = users.token_actor(value.strip())
        if found is None:
            access.log.warning("refused: an unknown or revoked API token on %s", request.url.path)
            raise HTTPException(401, "This API token is not valid (mistyped, or revoked): create one with "
                                "`adapterlab tokens create --user NAME`.", headers={"WWW-Authenticate": "Bearer"})
        return found
    try:
        name, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        name = password = ""
    if scheme.lower() == "basic" and access.check_login(name, password):
        return access.actor_of(name)
    access.log.warning("refused: a call without a valid login on %s", request.url.path)
    raise HTTPException(401, "This server has logins: send an API token (Authorization: Bearer TOKEN) or a login as "
                        "HTTP Basic auth (curl -u NAME:PASSWORD).",
                        headers={"WWW-Authenticate": 'Bearer, Basic realm="AdapterLab"'})


Caller = Annotated[Actor, Depends(caller)]
router = APIRouter(prefix="/v1")


@router.post("/classify", response_model=ClassifyResponse, responses=ERRORS)
def classify(request: ClassifyRequest, actor: Caller) -> dict:
    """Labels and per-label probabilities (with each adapter's temperature and threshold), in input order."""
    try:
        return {"results": services.classify(request.rows(), actor)}
    except ConfigError as exc:  # no such adapter
        raise HTTPException(404, str(exc)) from exc
    except DataError as exc:
        raise HTTPException(422, str(exc)) from exc


@router.get("/adapters", response_model=list[Adapter], responses={401: ERRORS[401]})
def adapters(actor: Caller) -> list[dict]:
    """The finished adapters the caller may use, newest first."""
    return [{**{key: a[key] for key in ("id", "name", "method", "labels")}, "runtime": services.runtime(a)}
            for a in services.adapters(actor)]


@router.get("/openapi.json", include_in_schema=False)
def schema(actor: Caller) -> dict:
    return get_openapi(title="AdapterLab", version=__version__, routes=router.routes,
                       description=__doc__.split("\n\n", 1)[1])


def attach(app: FastAPI) -> None:
    """Serve `/v1` from the web server's FastAPI app (Gradio's own routes have no catch-all to shadow it)."""
    app.include_router(router)
