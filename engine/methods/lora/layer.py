"""LoRA weights and the hook that adds them: y = W x + b + scaling · B A dropout(x), as PEFT computes it.

The update is a forward hook on the frozen nn.Linear, not a wrapper module, so module paths (and the keys PEFT
saves) stay those of the base model, and a layer another method has wrapped (IA3) still gets it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ACTIVE = "_adapterlab_lora_active"
HOOK = "_adapterlab_lora_hook"
ROWS = "_adapterlab_lora_rows"  # a mixed batch: [(weights, index, rows), ...]


class LoraWeights(nn.Module):
    """One adapter's A (r × in) and B (out × r) per target layer, initialised as PEFT does (A kaiming-uniform
    with a = √5, B zero: the update starts at zero)."""

    def __init__(self, shapes: dict[str, tuple[int, int]], r: int, scaling: float, dropout: float) -> None:
        super().__init__()
        self.paths = list(shapes)
        self.lora_A = nn.ParameterList()
        self.lora_B = nn.ParameterList()
        for in_features, out_features in shapes.values():
            a = torch.empty(r, in_features)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            self.lora_A.append(nn.Parameter(a))
            self.lora_B.append(nn.Parameter(torch.zeros(out_features, r)))
        self.scaling = scaling
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def delta(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(self.dropout(x), self.lora_A[i]), self.lora_B[i]) * self.scaling


def _add_update(module: nn.Linear, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor | None:
    routes = module.__dict__.get(ROWS)
    if routes:
        x = inputs[0]
        for weights, i, rows in routes:
            output = output.index_add(0, rows, weights.delta(i, x[rows]).to(output.dtype))
        return output
    active = module.__dict__.get(ACTIVE)
    if active is None:
        return None
    weights, i = active
    return output + weights.delta(i, inputs[0]).to(output.dtype)


def hook(linear: nn.Linear) -> None:
    """Give `linear` the LoRA hook once (it does nothing while no LoRA adapter is active on it)."""
    if HOOK not in linear.__dict__:
        linear.__dict__[HOOK] = linear.register_forward_hook(_add_update)
        linear.__dict__[ACTIVE] = None


def activate(linear: nn.Linear, weights: LoraWeights | None, index: int = 0) -> None:
    linear.__dict__[ACTIVE] = None if weights is None else (weights, index)


def route(linear: nn.Linear, routes: list[tuple[LoraWeights, int, torch.Tensor]] | None) -> None:
    """Each adapter's update on its own rows only (a mixed batch); None ends it."""
    linear.__dict__[ROWS] = routes
