"""Full fine-tuning as a baseline method: every weight of its own copy of the model trains, saved as a plain
transformers folder that `AutoModelForSequenceClassification.from_pretrained` loads.

It shares nothing with the frozen base the adapters use: each full model is a whole model in memory (about 4
bytes per parameter, 3x more while training for the optimizer), loaded when it is asked for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from engine.base_models import from_pretrained, load_tokenizer, pad_token_id, skeleton
from engine.errors import ConfigError
from engine.first_token import set_first_token_only
from engine.heads import head_modules, task_head_size
from engine.methods.base import Method

if TYPE_CHECKING:
    from transformers import PretrainedConfig

REGISTRY = "_adapterlab_full"


@dataclass(frozen=True)
class FullOptions:
    """Nothing to choose: every weight trains."""


def _models(model) -> nn.ModuleDict:
    if not hasattr(model, REGISTRY):
        model.add_module(REGISTRY, nn.ModuleDict())
    return getattr(model, REGISTRY)


def _load(path: str, labels: list[str]) -> nn.Module:
    from transformers import AutoModelForSequenceClassification  # its import is a third of the registry's

    net = from_pretrained(AutoModelForSequenceClassification, path, num_labels=len(labels),
                          id2label=dict(enumerate(labels)), label2id={lab: i for i, lab in enumerate(labels)},
                          pad_token_id=pad_token_id(load_tokenizer(path)))
    set_first_token_only(net.base_model)
    return net


class FullFineTuning(Method):
    name = "full"
    label = "Full fine-tuning"
    group = "Full fine-tuning"
    reference = "transformers"
    description = ("Every weight of the model trains: the baseline adapters are measured against. Each run "
                   "saves a whole model (as large as the base) and needs about 4x its size in memory to train.")
    Options: ClassVar[type] = FullOptions
    defaults: ClassVar[dict[str, float]] = {"learning_rate": 5e-5, "epochs": 3}
    head = "own"

    def count(self, options: Any, config: PretrainedConfig, num_labels: int) -> tuple[int, int]:
        model = skeleton(config)
        return sum(p.numel() for p in model.base_model.parameters()), task_head_size(model, num_labels)

    def add(self, model, name: str, labels: list[str], options: Any,
            config: str | None = None) -> str:
        """A fresh copy of the base model (or the saved one at `config`, a folder) with its own classifier."""
        net = _load(config or model.base_model_path, labels).to(model.device)
        _models(model)[name] = net
        return config or model.base_model_path

    def new_head(self, model, name: str, num_labels: int) -> nn.Module:
        net = _models(model)[name]
        return nn.ModuleDict({m: getattr(net, m) for m in head_modules(net.config.model_type)})

    def remove(self, model, name: str) -> None:
        del _models(model)[name]

    def activate(self, model, name: str | None) -> None:
        """Nothing to switch in the shared base: `logits` runs the adapter's own model."""

    def parameters(self, model, name: str) -> list[nn.Parameter]:
        return list(_models(model)[name].base_model.parameters())

    def logits(self, model, name: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return _models(model)[name](**batch).logits

    def input_embeddings(self, model, name: str) -> nn.Embedding:
        return _models(model)[name].get_input_embeddings()

    def save(self, model, name: str, folder: Path) -> None:
        _models(model)[name].save_pretrained(str(folder))
        model.tokenizer.save_pretrained(str(folder))

    def load(self, model, name: str, folder: Path, meta: dict) -> None:
        try:
            model.add_adapter(name, self.name, meta["labels"], {}, str(folder))
        except (OSError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"{folder}: not a loadable model folder ({exc}).") from exc

    def claims(self, folder: Path, config: dict) -> bool:
        path = folder / "config.json"
        if config or not path.is_file():
            return False
        architectures = json.loads(path.read_text()).get("architectures") or []
        return any(a.endswith("ForSequenceClassification") for a in architectures)

    def foreign_meta(self, folder: Path, config: dict) -> dict:
        saved = json.loads((folder / "config.json").read_text())
        id2label = saved.get("id2label") or {}
        labels = [id2label[k] for k in sorted(id2label, key=int)] if id2label else ["LABEL_0", "LABEL_1"]
        return {"name": None, "base_model": saved.get("_name_or_path") or str(folder), "labels": labels,
                "imported_from": "transformers"}
