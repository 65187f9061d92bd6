"""Errors a user can act on: their message is shown as is, without a traceback."""


class AdapterLabError(Exception):
    """Base class: the message says what went wrong and what to do next."""

    kind = "error"


class DataError(AdapterLabError):
    """The training or prediction data cannot be used as given."""

    kind = "data error"


class ConfigError(AdapterLabError):
    """A setting (method, model, hyperparameter) is invalid or unavailable."""

    kind = "config error"


class TrainingCancelled(Exception):
    """Raised inside the training loop when the caller asked it to stop."""
