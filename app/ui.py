"""Small pieces every tab uses: plain-words errors and status lines.

A callback wrapped in `friendly` never shows a traceback: problems the user can fix keep their own message,
anything else becomes one sentence in the page while the traceback goes to the server log.
"""

from __future__ import annotations

import functools
import html
import logging
from collections.abc import Callable
from typing import TypeVar

import gradio as gr

from engine.errors import AdapterLabError

log = logging.getLogger("adapterlab.app")
F = TypeVar("F", bound=Callable)


def friendly(fn: F) -> F:
    """Turn exceptions into a readable error box in the page (and a readable error for API clients)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except AdapterLabError as exc:
            raise gr.Error(str(exc), title="Please check", print_exception=False) from exc
        except Exception as exc:
            log.exception("callback %s failed", fn.__name__)
            raise gr.Error(f"Something went wrong on the server ({type(exc).__name__}: {exc}). The details are "
                           "in the server log.", print_exception=False) from exc

    return wrapper  # type: ignore[return-value]


def note(text: str, kind: str = "info") -> str:
    """A plain-text status line as HTML; `kind` is info, ok, warn or error (styled by the app's CSS)."""
    icon = {"info": "ℹ", "ok": "✔", "warn": "⚠", "error": "✖"}[kind]
    return f'<div class="al-note al-{kind}">{icon} {html.escape(text)}</div>'
