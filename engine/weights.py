"""Reading a saved weight file, safetensors first, then PyTorch's pickle format (loaded weights-only)."""

from __future__ import annotations

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
