"""LoRA as a registered method: low-rank updates to the attention projections, saved as PEFT's folder."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from safetensors.torch import load_file
from torch import nn

from engine.base_models import skeleton
from engine.heads import head_modules, task_head_size
from engine.methods.base import Method, peft_foreign_meta, save_peft_weights, weights_fit
from engine.methods.lora import model as lora
from engine.methods.lora.config import LoraConfig, LoraOptions, default_targets

if TYPE_CHECKING:
    from transformers import PretrainedConfig


class LoRA(Method):
    name = "lora"
    label = "LoRA"
    group = "Low-rank and scaling"
    reference = "PEFT"
    description = ("Low-rank updates (B·A, rank r) added to the query and value projections: PEFT's LoRA, the "
                   "most used method; a few tens of thousands of parameters.")
    Options: ClassVar[type] = LoraOptions
    defaults: ClassVar[dict[str, float]] = {"learning_rate": 5e-3, "epochs": 3}

    def config(self, options: LoraOptions, model_type: str, base_model: str | None = None) -> LoraConfig:
        return LoraConfig(r=options.lora_r, alpha=options.lora_alpha, dropout=options.lora_dropout,
                          targets=tuple(options.lora_targets or default_targets(model_type)),
                          head=tuple(head_modules(model_type)), base_model=base_model)

    def count(self, options: Any, config: PretrainedConfig, num_labels: int) -> tuple[int, int]:
        model = skeleton(config)
        found = lora.targets(model, self.config(options, config.model_type))
        return (sum(options.lora_r * (m.in_features + m.out_features) for m in found.values()),
                task_head_size(model, num_labels))

    def add(self, model, name: str, labels: list[str], options: Any,
            config: LoraConfig | None = None) -> LoraConfig:
        config = config or replace(self.config(options, model.config.model_type, model.base_model_name),
                                   head=tuple(model.head_module_names()), task_type=model.task_type)
        lora.add_lora(model.backbone, name, config)
        return config

    def remove(self, model, name: str) -> None:
        lora.remove_lora(model.backbone, name)

    def activate(self, model, name: str | None) -> None:
        lora.set_active_lora(model.backbone, name)

    def route(self, model, rows: dict[str, torch.Tensor] | None, size: int = 0) -> None:
        lora.route_lora(model.backbone, rows)

    def parameters(self, model, name: str) -> list[nn.Parameter]:
        return lora.lora_parameters(model.backbone, name)

    def options_of(self, model, name: str) -> dict:
        config = model.adapters[name].config
        return {**asdict(model.adapters[name].options), "lora_targets": list(config.targets)}

    def save(self, model, name: str, folder: Path) -> None:
        model.adapters[name].config.save_pretrained(folder)
        save_peft_weights(folder, lora.export_state_dict(model.backbone, name, model.heads[name]))

    def load(self, model, name: str, folder: Path, meta: dict) -> None:
        config = LoraConfig.from_peft(folder, model.config.model_type)
        options = {"lora_r": config.r, "lora_alpha": config.alpha, "lora_dropout": config.dropout,
                   "lora_targets": list(config.targets)}
        model.add_adapter(name, self.name, meta["labels"], options, config)
        with weights_fit(model, name, folder):
            lora.import_state_dict(model.backbone, name, model.heads[name],
                                   load_file(str(folder / "adapter_model.safetensors")))

    def claims(self, folder: Path, config: dict) -> bool:
        return config.get("peft_type") == "LORA"

    def foreign_meta(self, folder: Path, config: dict) -> dict:
        return peft_foreign_meta(folder, config, "base_model.model.")
