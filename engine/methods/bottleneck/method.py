"""Pfeiffer, Houlsby and parallel bottleneck adapters as registered methods, saved in AdapterHub's folder format."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

import engine.methods.adapterhub_format as ahf
from engine.folder_files import load_weights, write_json
from engine.heads import adapterhub_head_size
from engine.methods.base import Method, weights_fit
from engine.methods.bottleneck import model as bn
from engine.methods.bottleneck.config import BottleneckConfig, bottleneck_kind
from engine.options import option

if TYPE_CHECKING:
    from transformers import PretrainedConfig

REDUCTION_HELP = "Bottleneck size = the model's hidden size ÷ this factor. A smaller factor trains more parameters."


@dataclass(frozen=True)
class BottleneckOptions:
    reduction_factor: float = option(16, "Reduction factor", REDUCTION_HELP, low=0, low_open=True,
                                     choices=(2, 4, 8, 16, 32, 64))


@dataclass(frozen=True)
class ParallelOptions:
    reduction_factor: float = option(2, "Reduction factor", REDUCTION_HELP + " AdapterHub's default for parallel "
                                     "adapters is 2.", low=0, low_open=True, choices=(2, 4, 8, 16, 32, 64))


class Bottleneck(Method):
    """The shared maths of AdapterHub's bottleneck adapters; each subclass is one preset."""

    group = "Bottleneck adapters"
    reference = "AdapterHub adapters 1.3"
    head = "adapterhub"
    Options: ClassVar[type] = BottleneckOptions
    architectures: ClassVar[tuple[str, ...]] = ("encoder",)

    def config(self, options: Any) -> BottleneckConfig:
        return BottleneckConfig(self.name, options.reduction_factor)

    def count(self, options: Any, config: PretrainedConfig, num_labels: int) -> tuple[int, int]:
        cfg = self.config(options)
        hidden, size = config.hidden_size, cfg.bottleneck_size(config.hidden_size)
        sites = config.num_hidden_layers * (2 if cfg.mh_adapter else 1)
        if cfg.phm:  # rank 1: down H + d + d, up d + H + H, and one shared n³ rule
            return sites * 3 * (hidden + size) + bn.PHM_DIM ** 3, adapterhub_head_size(config, num_labels)
        return sites * (2 * hidden * size + size + hidden), adapterhub_head_size(config, num_labels)

    def add(self, model, name: str, labels: list[str], options: Any,
            config: BottleneckConfig | None = None) -> BottleneckConfig:
        config = config or self.config(options)
        bn.add_bottleneck(model.encoder, name, config, model.config.hidden_size)
        return config

    def remove(self, model, name: str) -> None:
        bn.remove_bottleneck(model.encoder, name)

    def activate(self, model, name: str | None) -> None:
        bn.set_active_bottleneck(model.encoder, name)

    def route(self, model, rows: dict[str, torch.Tensor] | None, size: int = 0) -> None:
        bn.route_bottleneck(model.encoder, rows)

    def parameters(self, model, name: str) -> list[nn.Parameter]:
        rule = bn.phm_rule(model.encoder, name)
        return [p for m in bn.bottleneck_modules(model.encoder, name).values() for p in m.parameters()] + (
            [rule] if rule is not None else [])

    def save(self, model, name: str, folder: Path) -> None:
        config = model.adapters[name].config.to_adapterhub()
        write_json(folder / "adapter_config.json", ahf.envelope(model, name, config))
        torch.save(bn.export_state_dict(model.encoder, name, model.model_prefix), folder / "pytorch_adapter.bin")
        ahf.save_head(model, name, folder)

    def load(self, model, name: str, folder: Path, meta: dict) -> None:
        saved = json.loads((folder / "adapter_config.json").read_text())
        config = BottleneckConfig.from_adapterhub(saved["config"])
        model.add_adapter(name, self.name, meta["labels"], {"reduction_factor": config.reduction_factor}, config)
        saved_name = saved.get("name", name)
        with weights_fit(model, name, folder):
            bn.import_state_dict(model.encoder, name, saved_name,
                                 load_weights(folder, "pytorch_adapter.bin", "adapter.safetensors"))
            ahf.load_head(model, name, saved_name, folder)

    def claims(self, folder: Path, config: dict) -> bool:
        return "config" in config and bottleneck_kind(config["config"]) == self.name

    def foreign_meta(self, folder: Path, config: dict) -> dict:
        """An AdapterHub folder: its labels are in the head's config."""
        bottleneck = BottleneckConfig.from_adapterhub(config["config"])
        return {"name": config.get("name"), "base_model": config.get("model_name"), "labels": ahf.head_labels(folder),
                "options": {"reduction_factor": bottleneck.reduction_factor}, "imported_from": "adapterhub"}


class Houlsby(Bottleneck):
    name = "houlsby"
    label = "Houlsby"
    description = ("Two small bottleneck layers in every block (after attention and after feed-forward): the most "
                   "capacity of the bottleneck adapters, about 2x Pfeiffer's parameters.")
    defaults: ClassVar[dict[str, float]] = {"learning_rate": 3e-3, "epochs": 3}
    searched = True


class Pfeiffer(Bottleneck):
    name = "pfeiffer"
    label = "Pfeiffer"
    description = ("One bottleneck layer after each feed-forward block: nearly Houlsby's accuracy with half the "
                   "parameters and faster training.")
    defaults: ClassVar[dict[str, float]] = {"learning_rate": 3e-3, "epochs": 3}
    searched = True


@dataclass(frozen=True)
class CompacterOptions:
    reduction_factor: float = option(32, "Reduction factor", REDUCTION_HELP + " Compacter's bottleneck size must "
                                     "divide by 4; AdapterHub's default is 32.", low=0, low_open=True,
                                     choices=(8, 16, 32, 48))


class Compacter(Bottleneck):
    name = "compacter"
    label = "Compacter"
    description = ("Houlsby's placement with each projection a sum of Kronecker products sharing one small rule "
                   "(Mahabadi et al.): a bottleneck adapter in a few thousand parameters; AdapterHub's compacter.")
    Options: ClassVar[type] = CompacterOptions
    defaults: ClassVar[dict[str, float]] = {"learning_rate": 1e-2, "epochs": 3}


class Parallel(Bottleneck):
    name = "parallel"
    label = "Parallel adapter"
    description = ("A bottleneck beside each feed-forward block, its output scaled by 4 and added (He et al.): "
                   "starts exactly as the base model; AdapterHub's par_bn.")
    Options: ClassVar[type] = ParallelOptions
    defaults: ClassVar[dict[str, float]] = {"learning_rate": 1e-3, "epochs": 3}
