"""IA3 as a registered method: learned vectors over keys, values and feed-forward inputs, saved as PEFT's folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from safetensors.torch import load_file
from torch import nn

from engine.base_models import skeleton
from engine.heads import task_head_size
from engine.methods.base import Method, peft_foreign_meta, save_peft_weights, weights_fit
from engine.methods.ia3 import model as ia3
from engine.methods.ia3.config import IA3Config, ia3_config

if TYPE_CHECKING:
    from transformers import PretrainedConfig


@dataclass(frozen=True)
class IA3Options:
    """IA3 has no size to choose: one vector per targeted layer (PEFT's default targets for the architecture)."""


class IA3(Method):
    name = "ia3"
    label = "IA3"
    group = "Low-rank and scaling"
    reference = "PEFT"
    description = ("Learned vectors that rescale keys, values and feed-forward activations: the fewest parameters "
                   "(a few thousand); needs a higher learning rate.")
    Options: ClassVar[type] = IA3Options
    defaults: ClassVar[dict[str, float]] = {"learning_rate": 2e-2, "epochs": 3}
    searched = True

    def count(self, options: Any, config: PretrainedConfig, num_labels: int) -> tuple[int, int]:
        target = ia3_config(config.model_type, "")
        model = skeleton(config)
        size = sum((m.in_features if target.is_feedforward(path) else m.out_features)
                   for path, m in model.named_modules() if isinstance(m, nn.Linear) and target.is_target(path))
        return size, task_head_size(model, num_labels)

    def add(self, model, name: str, labels: list[str], options: Any,
            config: IA3Config | None = None) -> IA3Config:
        config = config or ia3_config(model.config.model_type, model.base_model_name, task_type=model.task_type,
                                      head=model.head_module_names())
        ia3.add_ia3(model.backbone, name, config)
        return config

    def remove(self, model, name: str) -> None:
        ia3.remove_ia3(model.backbone, name)

    def activate(self, model, name: str | None) -> None:
        ia3.set_active_ia3(model.backbone, name)

    def route(self, model, rows: dict[str, torch.Tensor] | None, size: int = 0) -> None:
        ia3.route_ia3(model.backbone, rows, size)

    def parameters(self, model, name: str) -> list[nn.Parameter]:
        return ia3.ia3_parameters(model.backbone, name)

    def save(self, model, name: str, folder: Path) -> None:
        model.adapters[name].config.save_pretrained(str(folder))
        save_peft_weights(folder, ia3.export_state_dict(model.backbone, name, model.heads[name]))

    def load(self, model, name: str, folder: Path, meta: dict) -> None:
        saved = IA3Config.from_peft_json(folder)
        model.add_adapter(name, self.name, meta["labels"], {}, saved)
        with weights_fit(model, name, folder):
            ia3.import_state_dict(model.backbone, name, model.heads[name],
                                  load_file(str(folder / "adapter_model.safetensors")))

    def claims(self, folder: Path, config: dict) -> bool:
        return config.get("peft_type") == "IA3"

    def foreign_meta(self, folder: Path, config: dict) -> dict:
        return peft_foreign_meta(folder, config, "base_model.model.")
