"""Adapter folders: each method writes its reference library's format; AdapterLab adds `adapterlab.json` beside it.

`adapterlab.json` holds what the reference formats do not (label names, the data's columns, training settings
and metrics); a folder without it (made by AdapterHub or PEFT) is recognised by the method that claims it.
"""

from __future__ import annotations

import json
import platform
import re
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import torch

from engine.adapter_model import AdapterModel
from engine.disk import written_whole
from engine.errors import ConfigError
from engine.folder_files import write_json
from engine.methods import REGISTRY, get
from engine.model_card import write_card

METADATA = "adapterlab.json"


def adapter_name_for(path: str | Path) -> str:
    """A module-safe adapter name from a folder name."""
    name = re.sub(r"\W+", "_", Path(path).resolve().name).strip("_")
    return name or "adapter"


def library_versions() -> dict[str, str]:
    """Read from the installed packages' metadata: importing transformers for its version would cost a training
    process that never uses it 0.65-1.0 s (engine/bert_files.py)."""
    from engine import __version__

    return {"adapterlab": __version__, "torch": torch.__version__, "transformers": metadata.version("transformers"),
            "python": platform.python_version()}


def save_adapter(model: AdapterModel, name: str, out_dir: str | Path, metadata: dict) -> Path:
    """Write adapter `name` and its head in its method's reference format, and `adapterlab.json`: all of it
    or, when the disk fills up, none (the folder's earlier files stay whole)."""
    out = Path(out_dir)
    info = model.adapters[name]
    kind = model.method(name)
    adapter, trainable = model.parameter_counts(name)
    meta = {"name": name, "method": info.method, "base_model": model.base_model_name, "labels": info.labels,
            "options": kind.options_of(model, name), "adapter_params": adapter, "trainable_params": trainable,
            "library_versions": library_versions(), "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **({"labels_as_text": True} if model.labels_as_text else {}), **metadata}
    with written_whole(out) as staging:
        kind.save(model, name, staging)
        write_json(staging / METADATA, meta)
        write_card(staging, meta)
    info.meta = meta
    return out


def update_metadata(folder: str | Path, **changes: object) -> dict:
    """Change saved settings of an adapter (its threshold, whether the temperature is used, a new test evaluation)
    in `adapterlab.json`, and rewrite its model card; a key given as None is removed."""
    path = Path(folder) / METADATA
    if not path.is_file():
        raise ConfigError(f"{folder}: this adapter was not saved by AdapterLab (no {METADATA}); its settings cannot "
                          "be changed here.")
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    write_json(path, meta)
    write_card(folder, meta)
    return meta


def read_metadata(folder: str | Path) -> dict:
    """`adapterlab.json`, or what the method that claims a folder (AdapterHub's, PEFT's) can tell without one."""
    folder = Path(folder)
    meta_path = folder / METADATA
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if "options" not in meta and "reduction_factor" in meta.get("training", {}):  # saved before options
            meta["options"] = {"reduction_factor": meta["training"]["reduction_factor"]}
        return meta
    config_path = folder / "adapter_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    if not config and not (folder / "config.json").is_file():
        raise ConfigError(f"{folder}: not an adapter folder (no adapter_config.json).")
    for kind in REGISTRY.values():
        if kind.claims(folder, config):
            meta = kind.foreign_meta(folder, config)
            return {**meta, "name": meta.get("name") or adapter_name_for(folder), "method": kind.name}
    if config:
        raise ConfigError(f"{folder}: adapter_config.json is in no format AdapterLab reads (AdapterHub's "
                          "bottleneck adapters; PEFT's IA3, LoRA and prompt tuning).")
    raise ConfigError(f"{folder}: not an adapter folder (no adapter_config.json) nor a sequence-classification "
                      "model folder.")


def load_adapter(model: AdapterModel, folder: str | Path, name: str | None = None) -> str:
    """Load a saved adapter folder into `model` under `name` (default: its own name); return the name."""
    folder = Path(folder)
    meta = read_metadata(folder)
    name = name or adapter_name_for(meta["name"])
    get(meta["method"]).load(model, name, folder, meta)
    model.adapters[name].meta = meta
    return name
