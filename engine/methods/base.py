"""What every method is: a name, words for the page, a typed options dataclass, and the hooks the engine calls.

A method's options are a dataclass whose fields are made with `option(...)` (engine/options.py): the default,
limits and help text live there once, and the command line, the Train tab, job validation and the job page are
generated from them.
The hooks receive the `AdapterModel` (one frozen base with many named adapters) and work on it in place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from engine.errors import ConfigError
from engine.options import OptionSpec, check_all, option, option_fields

if TYPE_CHECKING:
    from transformers import PretrainedConfig

__all__ = ["Method", "OptionSpec", "adapter_owned", "option", "option_fields", "peft_foreign_meta", "save_peft_weights",
           "weights_fit"]

AdapterModel = nn.Module  # for the hints: engine/adapter_model.py imports this module, so not the other way


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
    # the base models it fits (engine/base_models.py `architecture`): AdapterHub's head reads the first token of
    # an encoder; a decoder LLM's classifier reads the last
    architectures: ClassVar[tuple[str, ...]] = ("encoder", "decoder", "encoder-decoder")
    searched: ClassVar[bool] = False  # tried by a search that names no methods (engine/search_space.py)

    def options(self, values: dict | None = None) -> Any:
        """The method's options from `values` (names -> values, missing ones at their default), checked."""
        values = dict(values or {})
        known = {f.name for f, _ in option_fields(self.Options)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{self.label} has no setting {', '.join(map(repr, unknown))}"
                              + (f"; its settings are {', '.join(sorted(known))}." if known else "."))
        return self.Options(**check_all(self.Options, values))

    def supports(self, config: PretrainedConfig, labels_as_text: bool = False) -> None:
        """Refuse a base model whose architecture the method does not fit, naming the methods that do, and labels
        as text where the model or the method cannot write them."""
        from engine.base_models import architecture
        from engine.labels_as_text import check as labels_as_text_fits
        from engine.methods import REGISTRY

        if labels_as_text:
            labels_as_text_fits(config, self.label, self.head == "own")
        kind = architecture(config)
        if kind not in self.architectures:
            fitting = [m.label for m in REGISTRY.values() if kind in m.architectures]
            needs = " or ".join(f"an {a}" if a[0] == "e" else f"a {a}" for a in self.architectures)
            raise ConfigError(f"{self.label} needs {needs} base model; {config.model_type} is "
                              f"{'an' if kind[0] == 'e' else 'a'} {kind}{' LLM' if kind == 'decoder' else ''}: "
                              f"choose {', '.join(fitting[:-1])} or {fitting[-1]}.")

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

    def route(self, model: AdapterModel, rows: dict[str, torch.Tensor] | None, size: int = 0) -> None:
        """Before forward passes over batches of `size` rows that use different adapters: `rows` maps every
        adapter of the batch to its rows (indices on the model's device); each of this method's own adapters
        applies to its rows alone, and the other rows pass as if this method had none. None ends it. Called with
        no adapter active."""
        raise NotImplementedError

    @property
    def mixes(self) -> bool:
        """Whether its adapters take their rows of a mixed batch (it defines `route`); the rows of a method that
        does not (or keeps its own model) run through its adapter apart."""
        return type(self).route is not Method.route and self.head != "own"

    def mixed_inputs(self, model: AdapterModel, rows: dict[str, torch.Tensor],
                     batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The backbone's inputs for a mixed batch, for methods that change them (prompt tuning)."""
        return batch

    def virtual_tokens(self, model: AdapterModel, name: str) -> int:
        """Positions adapter `name` puts before a row's tokens (prompt tuning's): a mixed batch groups rows by
        their length with them."""
        return 0

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
        from engine.heads import adapterhub_head, task_head

        if self.head == "adapterhub":
            return adapterhub_head(model.config, num_labels)
        return task_head(model.backbone, model.head_module_names(), num_labels)

    def input_embeddings(self, model: AdapterModel, name: str) -> nn.Embedding:
        """The word-embedding module adapter `name`'s forward pass looks the token ids up in (for attributions)."""
        return model.backbone.get_input_embeddings()

    def logits(self, model: AdapterModel, name: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The forward pass with adapter `name` active (it has been activated)."""
        if self.head == "adapterhub":
            hidden = model.encoder(**batch).last_hidden_state
            return model.heads[name](hidden[:, 0])
        return model.task_logits(batch)


def adapter_owned(root: nn.Module) -> set[int]:
    """Ids of the modules inside adapters (under a module whose class says `holds_adapters`, e.g. the bottleneck
    slots with their fusion layers): never a target of LoRA or IA3, whose names (`query`, `key`, `value`) they
    may share."""
    return {id(m) for holder in root.modules() if getattr(type(holder), "holds_adapters", False)
            for m in holder.modules()}


def peft_foreign_meta(folder: Path, config: dict, prefix: str) -> dict:
    """A PEFT folder without adapterlab.json: the classifier's rows say how many labels; PEFT keeps no names, so
    they are LABEL_0, LABEL_1, ... as in transformers."""
    from safetensors import safe_open

    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise ConfigError(f"{folder}: adapter_model.safetensors is missing.")
    with safe_open(str(weights), "pt") as f:
        rows = [f.get_slice(k).get_shape()[0] for k in f.keys() if k in (
                f"{prefix}classifier.weight", f"{prefix}classifier.out_proj.weight", f"{prefix}score.weight")]
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
