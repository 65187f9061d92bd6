"""AdapterFusion (AdapterHub's `Fuse`) as a registered method: two or more trained bottleneck adapters, frozen,
mixed per token by a fusion layer in each block, with a new head; saved as AdapterHub's fusion folder.

The folder holds `adapter_fusion_config.json`, `pytorch_model_adapter_fusion.bin` and the head as AdapterHub's
`save_adapter_fusion(..., with_head=True)` writes them, and each fused adapter, renamed to the name the fusion
uses, under `fused/<name>/` (AdapterHub keeps them apart: load those with `load_adapter(..., with_head=False)`,
then the fusion folder, then `set_active_adapters(Fuse(...))` and `active_head`).
"""

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
from engine.methods.bottleneck import model as bn
from engine.methods.bottleneck.config import PRESETS
from engine.methods.fusion.config import DYNAMIC, FUSABLE, FusionConfig, FusionOptions, adapterhub_names
from engine.methods.fusion.layer import FusionLayer

if TYPE_CHECKING:
    from transformers import PretrainedConfig

FUSED = "fused"  # the sub-folder with the fused adapters


def _member(name: str, saved: str) -> str:
    """The name a fused adapter has in the model: the fusion's own adapters, apart from any other loaded copy."""
    return f"{name}__{saved}"


def _stem(path: str) -> str:
    return path[: -len(".adapters")] if path.endswith(".adapters") else path


def _read(folder: str) -> dict:
    from engine.adapter_io import read_metadata  # engine.adapter_io reads the registry this module is part of

    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(f"{folder}: no such adapter folder (fuse trained adapters by folder, or by job id).")
    meta = read_metadata(path)
    if meta.get("method") not in FUSABLE:
        from engine.methods import label

        raise ConfigError(f"{meta.get('name') or path.name} is a {label(meta.get('method'))} adapter; Fusion "
                          "combines bottleneck adapters (Houlsby, Pfeiffer or Compacter).")
    return meta


def _copy_renamed(source: Path, target: Path, new: str) -> None:
    """A fused adapter's files (weights as saved, not as the fusion's model holds them) under its new name."""
    target.mkdir(parents=True)
    config = json.loads((source / "adapter_config.json").read_text())
    old, config["name"] = config.get("name"), new
    write_json(target / "adapter_config.json", config)
    weights = load_weights(source, "pytorch_adapter.bin", "adapter.safetensors")
    torch.save({k.replace(f"adapters.{old}.", f"adapters.{new}.").replace(f"{bn.SHARED}.{old}.",
                                                                            f"{bn.SHARED}.{new}."): v
                for k, v in weights.items()}, target / "pytorch_adapter.bin")
    head_config = json.loads((source / "head_config.json").read_text())
    head_config["name"] = new
    write_json(target / "head_config.json", head_config)
    head = load_weights(source, "pytorch_model_head.bin", "model_head.safetensors")
    torch.save({k.replace(f"heads.{old}.", f"heads.{new}."): v for k, v in head.items()},
               target / "pytorch_model_head.bin")
    if (source / "adapterlab.json").is_file():
        meta = json.loads((source / "adapterlab.json").read_text())
        write_json(target / "adapterlab.json", {**meta, "name": new})


class Fusion(Method):
    name = "fusion"
    label = "Fusion"
    group = "Bottleneck adapters"
    reference = "AdapterHub adapters 1.3"
    description = ("Combines two or more trained bottleneck adapters (AdapterFusion): they stay frozen, and an "
                   "attention layer in each block learns how much of each to use for the new task.")
    Options: ClassVar[type] = FusionOptions
    architectures: ClassVar[tuple[str, ...]] = ("encoder",)
    defaults: ClassVar[dict[str, float]] = {"learning_rate": 1e-3, "epochs": 3}
    head = "adapterhub"

    def _members(self, folders: list[str]) -> list[dict]:
        if len(folders) < 2:
            raise ConfigError("Fusion needs at least two trained adapters to fuse: choose them in 'Adapters to "
                              "fuse' (on the command line, --fuse DIR_OR_JOB_ID DIR_OR_JOB_ID ...).")
        metas = [_read(f) for f in folders]
        if len({PRESETS[m["method"]]["mh_adapter"] for m in metas}) > 1:
            raise ConfigError("Fuse adapters that sit in the same places: all Pfeiffer, or all Houlsby and "
                              "Compacter (Houlsby's adapters are in twice as many places as Pfeiffer's).")
        if len({m.get("base_model") for m in metas}) > 1:
            raise ConfigError("The adapters to fuse were trained on different base models "
                              f"({', '.join(sorted({str(m.get('base_model')) for m in metas}))}); fuse adapters "
                              "of one base model.")
        return metas

    def check(self, options: Any, config: PretrainedConfig, max_length: int = 128) -> None:
        self._members(options.fuse)

    def count(self, options: Any, config: PretrainedConfig, num_labels: int) -> tuple[int, int]:
        """Per block with all fused adapters: 3H² + 2H (query and key with biases, value without); Pfeiffer's
        places when the adapters are not given yet."""
        hidden = config.hidden_size
        twice = False
        if len(options.fuse) >= 2:
            twice = PRESETS[self._members(options.fuse)[0]["method"]]["mh_adapter"]
        sites = config.num_hidden_layers * (2 if twice else 1)
        return sites * (3 * hidden * hidden + 2 * hidden), adapterhub_head_size(config, num_labels)

    def add(self, model, name: str, labels: list[str], options: Any, config: FusionConfig | None = None
            ) -> FusionConfig:
        from engine.adapter_io import load_adapter

        if config is None:
            metas = self._members(options.fuse)
            config = FusionConfig(tuple(str(Path(f).resolve()) for f in options.fuse),
                                  adapterhub_names([m.get("name") or Path(f).name
                                                    for m, f in zip(metas, options.fuse, strict=True)]))
        members = [_member(name, saved) for saved in config.names]
        for folder, member in zip(config.folders, members, strict=True):
            load_adapter(model, folder, member)
        dropout = getattr(model.config, "attention_probs_dropout_prob", getattr(model.config, "attention_dropout", 0.1))
        sites = [s for s in bn.adapter_sites(model.encoder) if all(m in s.slot.adapters for m in members)]
        if not sites:
            for member in members:
                model.delete_adapter(member)
            raise ConfigError("The adapters to fuse share no place in the model to fuse them at.")
        for site in sites:
            site.slot.fusions[name] = FusionLayer(model.config.hidden_size, members, dropout).to(model.device)
        return config

    def remove(self, model, name: str) -> None:
        for site in bn.adapter_sites(model.encoder):
            if name in site.slot.fusions:
                del site.slot.fusions[name]
        for saved in model.adapters[name].config.names:
            if _member(name, saved) in model.adapters:
                model.delete_adapter(_member(name, saved))

    def activate(self, model, name: str | None) -> None:
        bn.set_active_bottleneck(model.encoder, name)

    def route(self, model, rows: dict[str, torch.Tensor] | None, size: int = 0) -> None:
        bn.route_bottleneck(model.encoder, rows)

    def _layers(self, model, name: str) -> dict[str, FusionLayer]:
        return {s.path: s.slot.fusions[name] for s in bn.adapter_sites(model.encoder) if name in s.slot.fusions}

    def parameters(self, model, name: str) -> list[nn.Parameter]:
        return [p for layer in self._layers(model, name).values() for p in layer.parameters()]

    def save(self, model, name: str, folder: Path) -> None:
        config: FusionConfig = model.adapters[name].config
        fusion = config.fusion_name
        write_json(folder / "adapter_fusion_config.json",
                   {"adapter_names": list(config.names), **ahf.envelope(model, fusion, DYNAMIC)})
        torch.save({f"{model.model_prefix}.{_stem(path)}.adapter_fusion_layer.{fusion}.{key}":
                    tensor.detach().cpu().contiguous()
                    for path, layer in self._layers(model, name).items()
                    for key, tensor in layer.state_dict().items()}, folder / "pytorch_model_adapter_fusion.bin")
        ahf.save_head(model, name, folder, saved_name=fusion)
        for source, saved in zip(config.folders, config.names, strict=True):
            _copy_renamed(Path(source), folder / FUSED / saved, saved)

    def load(self, model, name: str, folder: Path, meta: dict) -> None:
        saved = json.loads((folder / "adapter_fusion_config.json").read_text())
        names = tuple(saved["adapter_names"])
        config = FusionConfig(tuple(str(folder / FUSED / n) for n in names), names)
        model.add_adapter(name, self.name, meta["labels"], {"fuse": list(config.folders)}, config)
        with weights_fit(model, name, folder):
            state = load_weights(folder, "pytorch_model_adapter_fusion.bin", "model_adapter_fusion.safetensors")
            for path, layer in self._layers(model, name).items():
                stem = f"{_stem(path)}.adapter_fusion_layer.{config.fusion_name}."
                own = {k.split(stem, 1)[1]: v for k, v in state.items() if stem in k}
                layer.load_state_dict(own)
            ahf.load_head(model, name, config.fusion_name, folder)
