"""Errors a user can act on: their message is shown as is, without a traceback."""


class AdapterLabError(Exception):
    """Base class: the message says what went wrong and what to do next, in words for every front end;
    `cli_hint` adds what to type, for the command line only (the web page says what to do in the page)."""

    kind = "error"

    def __init__(self, message: str = "", cli_hint: str | None = None) -> None:
        super().__init__(message)
        self.cli_hint = cli_hint


class DataError(AdapterLabError):
    """The training or prediction data cannot be used as given."""

    kind = "data error"


class ConfigError(AdapterLabError):
    """A setting (method, model, hyperparameter) is invalid or unavailable."""

    kind = "config error"


class TrainingCancelled(Exception):
    """Raised inside the training loop when the caller asked it to stop."""


class DiskFull(AdapterLabError):
    """A write found no space left: what was there before stays whole (engine/disk.py)."""

    kind = "disk full"
