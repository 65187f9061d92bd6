"""Settings that carry their own words, limits and help: one declaration for the form, the flags and the checks.

A dataclass field made with `option(...)` holds its `OptionSpec` in its metadata (as PEFT's configs carry their
help). The job settings (engine/training.py `TrainConfig`) and every method's options (engine/methods) are made
this way, so the command line, the Train tab, job validation and the job page read one source.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from engine.errors import ConfigError


@dataclass(frozen=True)
class OptionSpec:
    """How one setting is asked for and checked: its words in the page, help, limits, and the values offered."""

    label: str
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()  # values the page offers (others typed on the command line are still checked)
    whole: bool = False
    low_open: bool = False  # the limit itself is refused (a rate above 0, a factor above 0)
    optional: bool = False  # empty is a value: None (the method's default, every row, never stop early)
    say_empty: bool = False  # messages say "..., or empty" (where empty is a choice the user makes)
    adapters_of: tuple = ()  # a list of trained adapters of these methods: the page offers the finished ones


def option(default: Any, label: str, help: str, low: float | None = None, high: float | None = None,
           choices: tuple = (), whole: bool = False, low_open: bool = False, optional: bool = False,
           say_empty: bool = False, adapters_of: tuple = ()) -> Any:
    """A dataclass field carrying its `OptionSpec`."""
    spec = OptionSpec(label, help, low, high, tuple(choices), whole, low_open, optional or say_empty, say_empty,
                      tuple(adapters_of))
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"option": spec})
    return dataclasses.field(default=default, metadata={"option": spec})


def option_fields(options_type: type) -> list[tuple[dataclasses.Field, OptionSpec]]:
    return [(f, f.metadata["option"]) for f in dataclasses.fields(options_type) if "option" in f.metadata]


def default_of(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def field_spec(options_type: type, name: str) -> OptionSpec:
    return next(spec for f, spec in option_fields(options_type) if f.name == name)


def check_value(f: dataclasses.Field, spec: OptionSpec, value: Any) -> Any:
    """One value from a form, a flag or JSON, as its field's type (None for an empty optional one); otherwise a
    ConfigError in the page's words ("Epochs must be at least 1.")."""
    default = default_of(f)
    if isinstance(default, list):
        items = value.split(",") if isinstance(value, str) else list(value)
        return [str(v).strip() for v in items if str(v).strip()]  # empty: the method's default
    if isinstance(default, str):
        return str(value).strip()
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if str(value).strip().lower() in ("true", "yes", "1", "false", "no", "0"):
            return str(value).strip().lower() in ("true", "yes", "1")
        raise ConfigError(f"{spec.label} must be true or false, not {value!r}.")
    empty = value is None or (isinstance(value, str) and not value.strip())
    if empty and spec.optional:
        return None
    or_empty = ", or empty" if spec.say_empty else ""
    try:
        number = float(value) if isinstance(value, int | float) else float(str(value).strip().replace(",", ""))
    except (ValueError, TypeError):
        number = math.nan
    if not math.isfinite(number):  # NaN and infinity pass every comparison below
        raise ConfigError(f"{spec.label} must be a number" + (or_empty or f", not {value!r}") + ".")
    if spec.whole and not number.is_integer():
        raise ConfigError(f"{spec.label} must be a whole number, not {value!r}.")
    if spec.low is not None and (number < spec.low or (spec.low_open and number <= spec.low)):
        words = "greater than" if spec.low_open else "at least"
        raise ConfigError(f"{spec.label} must be {words} {spec.low:g}{or_empty}.")
    if spec.high is not None and number > spec.high:
        raise ConfigError(f"{spec.label} must be at most {spec.high:g}.")
    return int(number) if spec.whole else number


def check_all(options_type: type, values: dict) -> dict:
    """The given values (names -> raw values) checked; empty ones left out (they take the default)."""
    return {f.name: check_value(f, spec, values[f.name]) for f, spec in option_fields(options_type)
            if f.name in values and (values[f.name] is not None and values[f.name] != "" or spec.optional)}
