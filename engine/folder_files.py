"""The files of a saved folder: weights (safetensors first, then PyTorch's pickle, loaded weights-only) and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from engine.errors import ConfigError


def load_weights(folder: Path, bin_name: str, safetensors_name: str) -> dict[str, torch.Tensor]:
    if (folder / safetensors_name).is_file():
        return load_file(str(folder / safetensors_name))
    if (folder / bin_name).is_file():
        return torch.load(folder / bin_name, map_location="cpu", weights_only=True)
    raise ConfigError(f"{folder}: weight file {bin_name} (or {safetensors_name}) is missing.")


def write_json(path: Path, data: dict) -> None:
    """Sorted keys, indent 2, a final newline: as AdapterHub's and our files are written."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
