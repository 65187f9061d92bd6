"""Will this base model train on this device? Asked from its config alone, before any weight is downloaded.

A decoder LLM of a billion parameters needs 4 GB for its fp32 weights on a CPU before the first step, and full
fine-tuning four times that again (gradients and Adam's two moments); a run that dies of memory an hour into a
download helps nobody. The estimate counts the model's parameters on the meta device (no memory), the bytes per
weight on the device (bf16 on CUDA, where the engine stores the frozen linears in bf16; fp32 on CPU), the
training state of what trains (the method's own count), and the activations the backward pass keeps
(Korthikanti et al.'s 34 bytes per token and hidden unit per layer, in 16-bit; twice that in fp32), against
the memory free on the device now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from engine.base_models import skeleton
from engine.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PretrainedConfig

GB = 1024**3
HEADROOM = 1.2  # allocator fragmentation, the tokenizer, Python: a fifth more than the sum


@dataclass(frozen=True)
class MemoryNeed:
    parameters: int
    weights_gb: float
    training_gb: float  # weights + training state + activations, with headroom

    def describe(self) -> str:
        return (f"{self.parameters / 1e6:,.0f}M parameters: {self.weights_gb:.1f} GB of weights, about "
                f"{self.training_gb:.1f} GB to train")


def estimate(parameters: int, hidden_size: int, layers: int, on_gpu: bool, batch_size: int, max_length: int,
             trained: int = 0) -> MemoryNeed:
    """What a run needs from the model's sizes; `trained`: the parameters that train (each with an fp32 gradient
    and Adam's two moments)."""
    width = 2 if on_gpu else 4
    weights = parameters * width
    activations = 34 * batch_size * max_length * hidden_size * layers * width // 2
    return MemoryNeed(parameters, weights / GB, (weights + trained * 12 + activations) * HEADROOM / GB)


def memory_need(config: PretrainedConfig, device: torch.device, batch_size: int, max_length: int,
                trained: int = 0) -> MemoryNeed:
    parameters = sum(p.numel() for p in skeleton(config).parameters())
    return estimate(parameters, config.hidden_size, config.num_hidden_layers, device.type == "cuda", batch_size,
                    max_length, trained)


def free_memory_gb(device: torch.device) -> float | None:
    """Memory free on the device now: the GPU's, or the host's available memory (Linux); None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] / GB
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024 / GB
    except (OSError, KeyError, ValueError):
        return None


def check_fits(config: PretrainedConfig, name: str, device: torch.device, batch_size: int, max_length: int,
               trained: int = 0) -> MemoryNeed:
    """Refuse, in words, a run whose model cannot fit the device's free memory; the estimate otherwise."""
    need = memory_need(config, device, batch_size, max_length, trained)
    free = free_memory_gb(device)
    if free is not None and need.training_gb > free:
        where = "this GPU" if device.type == "cuda" else "this machine"
        raise ConfigError(
            f"Base model '{name}' does not fit: {need.describe()} at batch size {batch_size} and max length "
            f"{max_length}, and {where} has {free:.1f} GB free. Choose a smaller model, lower the batch size or "
            "max length" + (", or train on a GPU worker." if device.type != "cuda" else ", or use a larger GPU."),
            cli_hint="--batch-size and --max-length lower the activations; a smaller base model lowers everything.")
    return need
