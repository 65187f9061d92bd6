"""What every method is: a name, words for the page, a typed options dataclass, and the hooks the engine calls.

A method's options are a dataclass whose fields are made with `option(...)`: the default, limits and help text
live there once, and the command line, the Train tab, job validation and the job page are generated from them.
The hooks receive the `AdapterModel` (one frozen base with many named adapters) and work on it in place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn
from transformers import PretrainedConfig

from engine.errors import ConfigError

if TYPE_CHECKING:
    from engine.adapter_model import AdapterModel


@dataclass(frozen=True)
class OptionSpec:
    """How one option is asked for and checked: its words in the page, help, limits, and the values offered."""

    label: str
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()  # values the page offers (others typed on the command line are still checked)
    whole: bool = False
    low_open: bool = False  # the limit itself is refused (a rate above 0, a factor above 0)


def option(default: Any, label: str, help: str, low: float | None = None, high: float | None = None,
           choices: tuple = (), whole: bool = False, low_open: bool = False) -> Any:
    """A dataclass field carrying its `OptionSpec` in its metadata (as PEFT's configs carry their help)."""
    spec = OptionSpec(label, help, low, high, tuple(choices), whole, low_open)
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"option": spec})
    return dataclasses.field(default=default, metadata={"option": spec})


def option_fields(options_type: type) -> list[tuple[dataclasses.Field, OptionSpec]]:
    return [(f, f.metadata["option"]) for f in dataclasses.fields(options_type) if "option" in f.metadata]


def _coerce(f: dataclasses.Field, spec: OptionSpec, value: Any) -> Any:
    """One option value from a form, a flag or JSON, as its field's type; a ConfigError in the page's words."""
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    if isinstance(default, list):
        items = value.split(",") if isinstance(value, str) else list(value)
        return [str(v).strip() for v in items if str(v).strip()]  # empty: the method's default
    if isinstance(default, str):
        return str(value).strip()
    try:
        number = float(str(value).strip().replace(",", "")) if not isinstance(value, int | float) else float(value)
    except ValueError:
        raise ConfigError(f"{spec.label} must be a number, not {value!r}.") from None
    if spec.whole and not number.is_integer():
        raise ConfigError(f"{spec.label} must be a whole number, not {value!r}.")
    if spec.low is not None and (number < spec.low or (spec.low_open and number <= spec.low)):
        raise ConfigError(f"{spec.label} must be {'greater than' if spec.low_open else 'at least'} {spec.low:g}.")
    if spec.high is not None and number > spec.high:
        raise ConfigError(f"{spec.label} must be at most {spec.high:g}.")
    return int(number) if spec.whole else number


class Method:
    """One way of training a classifier over the frozen base. Subclasses set the class attributes and hooks.

    `head` says which classifier the method trains: "adapterhub" (AdapterHub's two-layer head on the first
    token, for AdapterHub's formats) or "task" (the architecture's own sequence-classification head, as PEFT
    trains it). Full fine-tuning keeps its own whole model and overrides the hooks that touch the head.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    group: ClassVar[str]  # "Bottleneck adapters", "Low-rank", "Prompt-based", "Full fine-tuning"
    description: ClassVar[str]
    reference: ClassVar[str]  # the library whose maths and folder format it follows
    Options: ClassVar[type]
    defaults: ClassVar[dict[str, float]]  # learning_rate, epochs: chosen by measurement (docs/defaults.md)
    head: ClassVar[str] = "task"

    def options(self, values: dict | None = None) -> Any:
        """The method's options from `values` (names -> values, missing ones at their default), checked."""
        values = dict(values or {})
        known = {f.name for f, _ in option_fields(self.Options)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{self.label} has no setting {', '.join(map(repr, unknown))}"
                              + (f"; its settings are {', '.join(sorted(known))}." if known else "."))
        kwargs = {f.name: _coerce(f, spec, values[f.name]) for f, spec in option_fields(self.Options)
                  if values.get(f.name) is not None and values.get(f.name) != ""}
        return self.Options(**kwargs)

    def check(self, options: Any, config: PretrainedConfig, max_length: int = 128) -> None:
        """Refuse options that cannot work on this base model (before a job is queued)."""
        self.count(options, config, 2)

    def count(self, options: Any, config: PretrainedConfig, num_labels: int) -> tuple[int, int]:
        """(method parameters, head parameters) from the model's config alone, for the page's live count."""
        raise NotImplementedError

    def add(self, model: AdapterModel, name: str, labels: list[str], options: Any, config: Any = None) -> Any:
        """Insert adapter `name` into the model (initialised as the reference library does); return its config."""
        raise NotImplementedError

    def remove(self, model: AdapterModel, name: str) -> None:
        raise NotImplementedError

    def activate(self, model: AdapterModel, name: str | None) -> None:
        """Route the forward pass through `name` if it is this method's; any other name turns this method off."""
        raise NotImplementedError

    def parameters(self, model: AdapterModel, name: str) -> list[nn.Parameter]:
        """The method's own weights, head excluded."""
        raise NotImplementedError

    def save(self, model: AdapterModel, name: str, folder: Path) -> None:
        """Write the adapter and its head in the reference library's folder format."""
        raise NotImplementedError

    def load(self, model: AdapterModel, name: str, folder: Path, meta: dict) -> None:
        """Add adapter `name` from a folder this method saved (or its reference library made)."""
        raise NotImplementedError

    def claims(self, folder: Path, config: dict) -> bool:
        """True if a folder without adapterlab.json (its adapter_config.json is `config`) is this method's."""
        return False

    def foreign_meta(self, folder: Path, config: dict) -> dict:
        """What `read_metadata` can tell about a folder this method claims: name, labels, base model."""
        raise ConfigError(f"{folder}: a {self.label} folder without adapterlab.json; its label names are unknown.")

    def options_of(self, model: AdapterModel, name: str) -> dict:
        """The options a loaded adapter was built with, as names -> values (for the job page and metadata)."""
        config = model.adapters[name].options
        return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {}

    def new_head(self, model: AdapterModel, name: str, num_labels: int) -> nn.Module:
        from engine.heads import adapterhub_head, head_modules, task_head

        if self.head == "adapterhub":
            return adapterhub_head(model.config, num_labels)
        return task_head(model.backbone, head_modules(model.config.model_type), num_labels)

    def logits(self, model: AdapterModel, name: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The forward pass with adapter `name` active (it has been activated)."""
        if self.head == "adapterhub":
            hidden = model.encoder(**batch).last_hidden_state
            return model.heads[name](hidden[:, 0])
        return model.backbone(**batch).logits


def peft_foreign_meta(folder: Path, config: dict, prefix: str) -> dict:
    """A PEFT folder without adapterlab.json: the classifier's rows say how many labels; PEFT keeps no names, so
    they are LABEL_0, LABEL_1, ... as in transformers."""
    from safetensors import safe_open

    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise ConfigError(f"{folder}: adapter_model.safetensors is missing.")
    with safe_open(str(weights), "pt") as f:
        rows = [f.get_slice(k).get_shape()[0] for k in f.keys() if k == f"{prefix}classifier.weight"
                or k == f"{prefix}classifier.out_proj.weight"]
    if not rows:
        raise ConfigError(f"{folder}: this PEFT adapter has no classifier weights (modules_to_save), so it cannot "
                          "predict labels; save it from a sequence-classification model (task_type SEQ_CLS).")
    return {"name": None, "base_model": config.get("base_model_name_or_path"),
            "labels": [f"LABEL_{i}" for i in range(rows[0])], "imported_from": "peft"}


@contextmanager
def weights_fit(model: AdapterModel, name: str, folder: Path) -> Iterator[None]:
    """Around loading a folder's weights into adapter `name`, just added: a weight that does not fit (missing,
    unexpected, of another shape) removes the adapter again and says so in words."""
    try:
        yield
    except (ValueError, RuntimeError, IndexError, KeyError) as exc:
        model.delete_adapter(name)
        raise ConfigError(f"{folder}: weights do not fit base model {model.base_model_name} ({exc}).") from exc


def save_peft_weights(folder: Path, weights: dict[str, torch.Tensor]) -> None:
    """`adapter_model.safetensors` as PEFT writes it."""
    from safetensors.torch import save_file

    save_file(weights, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
