"""Adapter folders: AdapterHub's format for Pfeiffer/Houlsby, PEFT's for IA3, plus our `adapterlab.json`."""

from __future__ import annotations

import json
import platform
import re
from datetime import UTC, datetime
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from engine.adapter_model import AdapterModel
from engine.errors import ConfigError
from engine.methods import BOTTLENECK_METHODS
from engine.methods.bottleneck import model as bn
from engine.methods.bottleneck.config import BottleneckConfig
from engine.methods.ia3 import model as ia3
from engine.methods.ia3.config import IA3Config

METADATA = "adapterlab.json"
ADAPTERHUB_VERSION = "adapters.1.3.0"


def adapter_name_for(path: str | Path) -> str:
    """A module-safe adapter name from a folder name."""
    name = re.sub(r"\W+", "_", Path(path).resolve().name).strip("_")
    return name or "adapter"


def library_versions() -> dict[str, str]:
    import transformers

    from engine import __version__

    return {"adapterlab": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _adapterhub_envelope(model: AdapterModel, name: str, config: dict) -> dict:
    return {"config": config, "hidden_size": model.config.hidden_size,
            "model_class": f"{type(model.backbone).__name__.split('For')[0]}AdapterModel",
            "model_name": model.base_model_name, "model_type": model.config.model_type, "name": name,
            "version": ADAPTERHUB_VERSION}


def save_adapter(model: AdapterModel, name: str, out_dir: str | Path, metadata: dict) -> Path:
    """Write adapter `name` and its head so AdapterHub (bottleneck) or PEFT (IA3) can load it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = model.adapters[name]
    if info.method in BOTTLENECK_METHODS:
        _write_json(out / "adapter_config.json", _adapterhub_envelope(model, name, info.config.to_adapterhub()))
        torch.save(bn.export_state_dict(model.encoder, name, model.model_prefix), out / "pytorch_adapter.bin")
        head_config = {"activation_function": "tanh", "bias": True, "dropout_prob": None,
                       "head_type": "classification", "label2id": {lab: i for i, lab in enumerate(info.labels)},
                       "layers": 2, "num_labels": len(info.labels), "use_pooler": False}
        _write_json(out / "head_config.json", _adapterhub_envelope(model, name, head_config))
        head = {f"heads.{name}.{k}": v.detach().cpu().contiguous() for k, v in model.heads[name].state_dict().items()}
        torch.save(head, out / "pytorch_model_head.bin")
    else:
        info.config.save_pretrained(str(out))
        weights = ia3.export_state_dict(model.backbone, name, model.heads[name])
        save_file(weights, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    adapter, trainable = model.parameter_counts(name)
    meta = {"name": name, "method": info.method, "base_model": model.base_model_name, "labels": info.labels,
            "adapter_params": adapter, "trainable_params": trainable, "library_versions": library_versions(),
            "saved_at": datetime.now(UTC).isoformat(timespec="seconds"), **metadata}
    _write_json(out / METADATA, meta)
    info.meta = meta
    return out


def read_metadata(folder: str | Path) -> dict:
    """`adapterlab.json`, or what can be told from an AdapterHub/PEFT folder without one."""
    folder = Path(folder)
    meta_path = folder / METADATA
    if meta_path.is_file():
        return json.loads(meta_path.read_text())
    config_path = folder / "adapter_config.json"
    if not config_path.is_file():
        raise ConfigError(f"{folder}: not an adapter folder (no adapter_config.json).")
    config = json.loads(config_path.read_text())
    if config.get("peft_type") == "IA3":
        raise ConfigError(f"{folder}: an IA3 folder without adapterlab.json; its label names are unknown.")
    if "config" not in config:
        raise ConfigError(f"{folder}: adapter_config.json is neither AdapterHub's nor PEFT's IA3 format.")
    head_path = folder / "head_config.json"
    if not head_path.is_file():
        raise ConfigError(f"{folder}: an AdapterHub adapter without a classification head cannot predict labels; "
                          "save it with its head (a head named like the adapter).")
    head = json.loads(head_path.read_text())["config"]
    if head.get("head_type") != "classification" or head.get("layers") != 2 or head.get("use_pooler"):
        raise ConfigError(f"{folder}: only AdapterHub's default 2-layer classification head is supported.")
    label2id = head.get("label2id") or {f"LABEL_{i}": i for i in range(head["num_labels"])}
    bottleneck = BottleneckConfig.from_adapterhub(config["config"])
    return {"name": config.get("name", adapter_name_for(folder)), "method": bottleneck.method,
            "base_model": config.get("model_name"), "labels": sorted(label2id, key=label2id.get),
            "reduction_factor": bottleneck.reduction_factor, "imported_from": "adapterhub"}


def _load_weights(folder: Path, bin_name: str, safetensors_name: str) -> dict[str, torch.Tensor]:
    if (folder / safetensors_name).is_file():
        return load_file(str(folder / safetensors_name))
    if (folder / bin_name).is_file():
        return torch.load(folder / bin_name, map_location="cpu", weights_only=True)
    raise ConfigError(f"{folder}: weight file {bin_name} (or {safetensors_name}) is missing.")


def load_adapter(model: AdapterModel, folder: str | Path, name: str | None = None) -> str:
    """Load a saved adapter folder into `model` under `name` (default: its own name); return the name."""
    folder = Path(folder)
    meta = read_metadata(folder)
    name = name or adapter_name_for(meta["name"])
    config = json.loads((folder / "adapter_config.json").read_text())
    if meta["method"] in BOTTLENECK_METHODS:
        bottleneck = BottleneckConfig.from_adapterhub(config["config"])
        model.add_adapter(name, bottleneck.method, meta["labels"], bottleneck.reduction_factor,
                          bottleneck.non_linearity)
        saved_name = config.get("name", name)
        try:
            bn.import_state_dict(model.encoder, name, saved_name,
                                 _load_weights(folder, "pytorch_adapter.bin", "adapter.safetensors"))
            head = _load_weights(folder, "pytorch_model_head.bin", "model_head.safetensors")
            model.heads[name].load_state_dict({k.split(f"heads.{saved_name}.", 1)[1]: v for k, v in head.items()})
        except (ValueError, RuntimeError, IndexError) as exc:
            model.delete_adapter(name)
            raise ConfigError(f"{folder}: weights do not fit base model {model.base_model_name} ({exc}).") from exc
    else:
        saved = IA3Config.from_peft_dict(config)
        model.add_adapter(name, "ia3", meta["labels"], ia3_target_modules=saved.target_modules,
                          ia3_feedforward_modules=saved.feedforward_modules)
        try:
            ia3.import_state_dict(model.backbone, name, model.heads[name],
                                  load_file(str(folder / "adapter_model.safetensors")))
        except (ValueError, RuntimeError, KeyError) as exc:
            model.delete_adapter(name)
            raise ConfigError(f"{folder}: weights do not fit base model {model.base_model_name} ({exc}).") from exc
    model.adapters[name].meta = meta
    return name
