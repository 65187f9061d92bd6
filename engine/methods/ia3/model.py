"""Inject IA3 through PEFT into the shared backbone, and move its weights in PEFT's saved key format."""

from __future__ import annotations

import copy
import sys
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from peft import IA3Config
    from peft.tuners.ia3 import IA3Layer

# PEFT saves `base_model.model.<module path>.ia3_l` for a PeftModel over the task model.
PEFT_PREFIX = "base_model.model."


def ia3_layers(backbone: nn.Module) -> dict[str, IA3Layer]:
    """The backbone's IA3 layers. PEFT is imported only once IA3 is used (it takes seconds and ~150 MB), so
    while it is not loaded there are none."""
    if "peft" not in sys.modules:
        return {}
    from peft.tuners.ia3 import IA3Layer

    return {path: m for path, m in backbone.named_modules() if isinstance(m, IA3Layer)}


def add_ia3(backbone: nn.Module, name: str, config: IA3Config) -> None:
    """Add IA3 vectors named `name` (initialised to 1) to the backbone's target modules, in place."""
    from peft import inject_adapter_in_model

    injected = copy.copy(config)
    injected.modules_to_save = None  # heads are held by AdapterModel, one per adapter
    inject_adapter_in_model(injected, backbone, adapter_name=name)


def set_active_ia3(backbone: nn.Module, name: str | None) -> None:
    """Scale with adapter `name`'s vectors; any other name (a bottleneck adapter, None) leaves the layers plain."""
    for layer in ia3_layers(backbone).values():
        layer._active_adapter = [name] if name in layer.ia3_l else []


def remove_ia3(backbone: nn.Module, name: str) -> None:
    for layer in ia3_layers(backbone).values():
        if name in layer.ia3_l:
            del layer.ia3_l[name]


def ia3_parameters(backbone: nn.Module, name: str) -> list[nn.Parameter]:
    return [layer.ia3_l[name] for layer in ia3_layers(backbone).values() if name in layer.ia3_l]


def export_state_dict(backbone: nn.Module, name: str, head: nn.ModuleDict) -> dict[str, torch.Tensor]:
    """The adapter and its head keyed as `PeftModel.save_pretrained` writes them."""
    state = {
        f"{PEFT_PREFIX}{path}.ia3_l": layer.ia3_l[name].detach().cpu().contiguous()
        for path, layer in ia3_layers(backbone).items()
        if name in layer.ia3_l
    }
    for module_name, module in head.items():
        for key, tensor in module.state_dict().items():
            state[f"{PEFT_PREFIX}{module_name}.{key}"] = tensor.detach().cpu().contiguous()
    return state


def import_state_dict(backbone: nn.Module, name: str, head: nn.ModuleDict, state: dict[str, torch.Tensor]) -> None:
    """Load PEFT-format weights into adapter `name` and its head; every key must match."""
    state = {k.removeprefix(PEFT_PREFIX): v for k, v in state.items()}
    layers = ia3_layers(backbone)
    for path, layer in layers.items():
        if name in layer.ia3_l:
            key = f"{path}.ia3_l"
            if key not in state:
                raise ValueError(f"IA3 weight missing: '{key}'")
            with torch.no_grad():
                layer.ia3_l[name].copy_(state.pop(key).reshape(layer.ia3_l[name].shape))
    for module_name, module in head.items():
        wanted = {k: state.pop(f"{module_name}.{k}") for k in module.state_dict() if f"{module_name}.{k}" in state}
        module.load_state_dict(wanted)
    if state:
        raise ValueError(f"unexpected IA3 weight '{next(iter(state))}'")
