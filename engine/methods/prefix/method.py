"""Prefix tuning (AdapterHub's `prefix_tuning`) as a registered method. PEFT's prefix tuning cannot run on BERT
with transformers 5 ("Model does not support past key values"), so this follows AdapterHub: trained through its
reparametrisation MLP, saved as the flat prefixes that MLP computes (AdapterHub's ejected form, marked flat)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

import engine.methods.adapterhub_format as ahf
from engine.errors import ConfigError
from engine.folder_files import load_weights, write_json
from engine.heads import adapterhub_head_size
from engine.methods.base import Method, weights_fit
from engine.methods.prefix.config import PrefixConfig, PrefixOptions
from engine.methods.prefix.layer import Prefixes, row_prefixes, self_attentions, set_prefixes

if TYPE_CHECKING:
    from transformers import PretrainedConfig

REGISTRY = "_adapterlab_prefixes"
SUPPORTED = ("bert", "roberta", "electra", "xlm-roberta", "deberta-v2", "modernbert")


def _prefixes(model) -> nn.ModuleDict:
    if not hasattr(model, REGISTRY):
        model.add_module(REGISTRY, nn.ModuleDict())
    return getattr(model, REGISTRY)


def _key(model, name: str) -> str:
    return f"{model.model_prefix}.prefix_tuning.prefix_tunings.{name}.self_prefix."


class PrefixTuning(Method):
    name = "prefix"
    label = "Prefix tuning"
    group = "Prompt-based"
    reference = "AdapterHub adapters 1.3"
    description = ("Learned keys and values put before every layer's attention (Li & Liang): trained through a "
                   "small network, saved as the prefixes alone (about 0.1 million numbers on the bundled model).")
    Options: ClassVar[type] = PrefixOptions
    architectures: ClassVar[tuple[str, ...]] = ("encoder",)
    defaults: ClassVar[dict[str, float]] = {"learning_rate": 1e-3, "epochs": 3}
    head = "adapterhub"

    def check(self, options: Any, config: PretrainedConfig, max_length: int = 128) -> None:
        if config.model_type not in SUPPORTED:
            raise ConfigError(f"Prefix tuning supports {', '.join(SUPPORTED)} models, not {config.model_type}.")

    def count(self, options: Any, config: PretrainedConfig, num_labels: int) -> tuple[int, int]:
        self.check(options, config)
        hidden, p, b = config.hidden_size, options.prefix_length, PrefixConfig().bottleneck_size
        out = 2 * config.num_hidden_layers * hidden
        return p * hidden + hidden * b + b + b * out + out, adapterhub_head_size(config, num_labels)

    def add(self, model, name: str, labels: list[str], options: Any,
            config: PrefixConfig | None = None) -> PrefixConfig:
        self.check(options, model.config)
        config = config or PrefixConfig(options.prefix_length)
        layers = len(self_attentions(model.encoder))
        _prefixes(model)[name] = Prefixes(config.prefix_length, layers, model.config.hidden_size,
                                          config.bottleneck_size, config.flat, config.dropout).to(model.device)
        return config

    def remove(self, model, name: str) -> None:
        del _prefixes(model)[name]

    def activate(self, model, name: str | None) -> None:
        """Nothing to switch: `logits` computes the active adapter's prefixes once per forward."""

    def route(self, model, rows: dict[str, torch.Tensor] | None, size: int = 0) -> None:
        own = [(_prefixes(model)[name](), r) for name, r in (rows or {}).items() if name in _prefixes(model)]
        set_prefixes(model.encoder, *row_prefixes(size, own)) if own else set_prefixes(model.encoder, None)

    def parameters(self, model, name: str) -> list[nn.Parameter]:
        return list(_prefixes(model)[name].parameters())

    def logits(self, model, name: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        set_prefixes(model.encoder, _prefixes(model)[name]())
        try:
            hidden = model.encoder(**batch).last_hidden_state
        finally:
            set_prefixes(model.encoder, None)
        return model.heads[name](hidden[:, 0])

    def save(self, model, name: str, folder: Path) -> None:
        """The flat prefixes (what the MLP computes, as AdapterHub's `eject_prefix_tuning` gives them), with the
        config saying `flat`, which AdapterHub needs to load them (its own ejected folders say otherwise)."""
        prefixes = _prefixes(model)[name]
        with torch.no_grad():
            flat = prefixes.flattened().cpu()
        config = model.adapters[name].config.to_adapterhub(flat=True)
        write_json(folder / "adapter_config.json", ahf.envelope(model, name, config))
        torch.save({_key(model, name) + "control_trans": flat}, folder / "pytorch_adapter.bin")
        ahf.save_head(model, name, folder)

    def load(self, model, name: str, folder: Path, meta: dict) -> None:
        saved = json.loads((folder / "adapter_config.json").read_text())
        config = PrefixConfig.from_adapterhub(saved["config"])
        model.add_adapter(name, self.name, meta["labels"], {"prefix_length": config.prefix_length}, config)
        saved_name = saved.get("name", name)
        with weights_fit(model, name, folder):
            state = load_weights(folder, "pytorch_adapter.bin", "adapter.safetensors")
            stem = f"prefix_tuning.prefix_tunings.{saved_name}.self_prefix."
            own = {k.split(stem, 1)[1]: v for k, v in state.items() if stem in k and ".pool." not in k}
            _prefixes(model)[name].load_state_dict(own)
            ahf.load_head(model, name, saved_name, folder)

    def claims(self, folder: Path, config: dict) -> bool:
        return (config.get("config") or {}).get("architecture") == "prefix_tuning"

    def foreign_meta(self, folder: Path, config: dict) -> dict:
        prefix = PrefixConfig.from_adapterhub(config["config"])
        return {"name": config.get("name"), "base_model": config.get("model_name"), "labels": ahf.head_labels(folder),
                "options": {"prefix_length": prefix.prefix_length}, "imported_from": "adapterhub"}
