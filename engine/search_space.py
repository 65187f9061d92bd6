"""What a search varies, read from the registered methods: the method, the learning rate (as a multiple of the
method's own default, so one range suits IA3's 2e-2 and Pfeiffer's 3e-3), the epochs, and each method option
that offers a list of values (a bottleneck's reduction factor).

`trial` is anything with Optuna's suggest API (an `optuna.Trial`); this module does not import Optuna.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from engine.errors import ConfigError
from engine.methods import REGISTRY
from engine.methods import get as get_method
from engine.options import default_of, option_fields

LEARNING_RATE_SCALE = (0.2, 5.0)  # the range around each method's default learning rate (log scale)
MAX_EPOCHS_FACTOR = 2  # epochs range from 1 to twice the methods' default


class Suggests(Protocol):
    def suggest_categorical(self, name: str, choices: list) -> Any: ...
    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...
    def suggest_int(self, name: str, low: int, high: int) -> int: ...


def default_methods() -> list[str]:
    """The methods a search tries when the user names none (each method says so in its own folder)."""
    return [name for name, method in REGISTRY.items() if method.searched]


def check_methods(names: list[str] | None) -> list[str]:
    """The methods to search, each known and named once; none given: the default ones."""
    chosen = list(dict.fromkeys(n.strip() for n in names or [] if n.strip())) or default_methods()
    for name in chosen:
        get_method(name)  # a ConfigError that lists the methods there are
    if not chosen:
        raise ConfigError("A search needs at least one method.")
    return chosen


def max_epochs(methods: list[str]) -> int:
    return MAX_EPOCHS_FACTOR * max(int(get_method(m).defaults["epochs"]) for m in methods)


def _choice_options(method: str) -> list[tuple[str, tuple, Any]]:
    """(option name, values offered, default) of each option the method offers a list of values for."""
    return [(f.name, spec.choices, default_of(f)) for f, spec in option_fields(get_method(method).Options)
            if spec.choices]


def option_space(methods: list[str], fits: Callable[[str, dict], bool]) -> dict[str, list]:
    """The values searched for each method option that offers a list, by parameter name ("pfeiffer.
    reduction_factor"): those that `fits(method, {option: value})` says work on the base model (a reduction
    factor of 64 leaves a 32-wide model no units)."""
    return {f"{m}.{name}": [v for v in choices if fits(m, {name: v})]
            for m in methods for name, choices, _ in _choice_options(m)}


def suggest(trial: Suggests, methods: list[str], space: dict[str, list]) -> dict:
    """One trial's training settings: `method`, `learning_rate`, `epochs` and `method_options` (`space`: the
    option values, from `option_space`)."""
    method = trial.suggest_categorical("method", list(methods))
    scale = trial.suggest_float("learning_rate_scale", *LEARNING_RATE_SCALE, log=True)
    epochs = trial.suggest_int("epochs", 1, max_epochs(methods))
    options = {name: trial.suggest_categorical(f"{method}.{name}", space[f"{method}.{name}"])
               for name, _, _ in _choice_options(method)}
    learning_rate = float(f"{get_method(method).defaults['learning_rate'] * scale:.3g}")  # 0.00389, not 0.003891...
    return {"method": method, "learning_rate": learning_rate,
            "epochs": epochs, "method_options": options}


def default_params(method: str) -> dict:
    """The Optuna parameters of `method` at its defaults: a search's first trials, the baseline it must beat."""
    params = {"method": method, "learning_rate_scale": 1.0, "epochs": int(get_method(method).defaults["epochs"])}
    params.update({f"{method}.{name}": default for name, _, default in _choice_options(method)})
    return params


PARAM_LABELS = {"method": "Method", "learning_rate_scale": "Learning rate (× the method's default)",
                "epochs": "Epochs"}


def param_label(name: str) -> str:
    """A search parameter in the page's words ('Pfeiffer: Reduction factor')."""
    if name in PARAM_LABELS:
        return PARAM_LABELS[name]
    method, _, option_name = name.partition(".")
    spec = next((s for f, s in option_fields(get_method(method).Options) if f.name == option_name), None)
    return f"{get_method(method).label}: {spec.label if spec else option_name}"
