"""AdapterHub's folder around any of its methods: the envelope of adapter_config.json, and the classification
head (head_config.json + pytorch_model_head.bin) that carries the label names. Shared by its methods' folders."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from engine.errors import ConfigError
from engine.folder_files import load_weights, write_json

ADAPTERHUB_VERSION = "adapters.1.3.0"


def envelope(model, name: str, config: dict) -> dict:
    """The keys around `config` in AdapterHub's adapter_config.json and head_config.json."""
    return {"config": config, "hidden_size": model.config.hidden_size,
            "model_class": f"{type(model.backbone).__name__.split('For')[0]}AdapterModel",
            "model_name": model.base_model_name, "model_type": model.config.model_type, "name": name,
            "version": ADAPTERHUB_VERSION}


def save_head(model, name: str, folder: Path, saved_name: str | None = None) -> None:
    """AdapterHub's default classification head, named like the adapter (or `saved_name`), with the label names."""
    labels = model.adapters[name].labels
    saved = saved_name or name
    head_config = {"activation_function": "tanh", "bias": True, "dropout_prob": None,
                   "head_type": "classification", "label2id": {lab: i for i, lab in enumerate(labels)},
                   "layers": 2, "num_labels": len(labels), "use_pooler": False}
    write_json(folder / "head_config.json", envelope(model, saved, head_config))
    head = {f"heads.{saved}.{k}": v.detach().cpu().contiguous() for k, v in model.heads[name].state_dict().items()}
    torch.save(head, folder / "pytorch_model_head.bin")


def load_head(model, name: str, saved_name: str, folder: Path) -> None:
    head = load_weights(folder, "pytorch_model_head.bin", "model_head.safetensors")
    model.heads[name].load_state_dict({k.split(f"heads.{saved_name}.", 1)[1]: v for k, v in head.items()})


def head_labels(folder: Path) -> list[str]:
    """The label names of an AdapterHub folder's head, which must be AdapterHub's default head."""
    head_path = folder / "head_config.json"
    if not head_path.is_file():
        raise ConfigError(f"{folder}: an AdapterHub adapter without a classification head cannot predict "
                          "labels; save it with its head (a head named like the adapter).")
    head = json.loads(head_path.read_text())["config"]
    if head.get("head_type") != "classification" or head.get("layers") != 2 or head.get("use_pooler"):
        raise ConfigError(f"{folder}: only AdapterHub's default 2-layer classification head is supported.")
    label2id = head.get("label2id") or {f"LABEL_{i}": i for i in range(head["num_labels"])}
    return sorted(label2id, key=label2id.get)
