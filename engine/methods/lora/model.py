"""Add LoRA to the shared backbone in place, switch between LoRA adapters, and move their weights in PEFT's key
format (`base_model.model.<module path>.lora_A.weight`), so PEFT loads our folders and we load PEFT's.

Each adapter's weights live in a `LoraWeights` kept in a ModuleDict on the backbone (`_adapterlab_lora`), so
`backbone.to(device)` reaches them; the target linears carry a hook that reads which adapter is active.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.errors import ConfigError
from engine.methods.base import adapter_owned
from engine.methods.lora import layer
from engine.methods.lora.config import LoraConfig
from engine.methods.lora.layer import LoraWeights

PEFT_PREFIX = "base_model.model."
REGISTRY = "_adapterlab_lora"
_OTHER_REGISTRIES = ("_adapterlab_lora", "_adapterlab_ia3")


def _registry(backbone: nn.Module) -> nn.ModuleDict:
    registry = getattr(backbone, REGISTRY, None)
    if registry is None:
        registry = nn.ModuleDict()
        backbone.add_module(REGISTRY, registry)
    return registry


def linears(backbone: nn.Module) -> dict[str, nn.Linear]:
    """The backbone's linear layers by their path in the base model: a linear another method wrapped (IA3's
    `base_layer`) counts under its wrapper's path, as PEFT would name it."""
    found = {}
    owned = adapter_owned(backbone)
    for path, module in backbone.named_modules():
        if path.split(".")[0] in _OTHER_REGISTRIES or not isinstance(module, nn.Linear) or id(module) in owned:
            continue
        found[path.removesuffix(".base_layer")] = module
    return found


def targets(backbone: nn.Module, config: LoraConfig) -> dict[str, nn.Linear]:
    found = {path: m for path, m in linears(backbone).items() if config.is_target(path)}
    if not found:
        raise ConfigError(f"LoRA target modules {', '.join(config.targets)} match no linear layer of "
                          f"{type(backbone).__name__}.")
    return found


def _hooked(backbone: nn.Module) -> dict[str, nn.Linear]:
    """The linears given the LoRA hook, by path: what switching adapters touches (not a walk of every module)."""
    return backbone.__dict__.setdefault("_adapterlab_lora_hooked", {})


def add_lora(backbone: nn.Module, name: str, config: LoraConfig) -> None:
    found = targets(backbone, config)
    shapes = {path: (m.in_features, m.out_features) for path, m in found.items()}
    device = next(iter(found.values())).weight.device
    _registry(backbone)[name] = LoraWeights(shapes, config.r, config.scaling, config.dropout).to(device)
    for path, linear in found.items():
        layer.hook(linear)
        _hooked(backbone)[path] = linear


def remove_lora(backbone: nn.Module, name: str) -> None:
    set_active_lora(backbone, None)
    del _registry(backbone)[name]


def set_active_lora(backbone: nn.Module, name: str | None) -> None:
    registry = _registry(backbone)
    weights = registry[name] if isinstance(name, str) and name in registry else None
    index = {path: i for i, path in enumerate(weights.paths)} if weights is not None else {}
    for path, linear in _hooked(backbone).items():
        layer.activate(linear, weights if path in index else None, index.get(path, 0))


def route_lora(backbone: nn.Module, rows: dict[str, torch.Tensor] | None) -> None:
    """Each LoRA adapter in `rows` updates its own rows of the next batches (None: back to the active one)."""
    registry = _registry(backbone)
    for path, linear in _hooked(backbone).items():
        routes = None if rows is None else [
            (registry[name], registry[name].paths.index(path), r) for name, r in rows.items()
            if name in registry and path in registry[name].paths]
        layer.route(linear, routes)


def lora_parameters(backbone: nn.Module, name: str) -> list[nn.Parameter]:
    return list(_registry(backbone)[name].parameters())


def export_state_dict(backbone: nn.Module, name: str, head: nn.ModuleDict) -> dict[str, torch.Tensor]:
    weights = _registry(backbone)[name]
    state = {}
    for i, path in enumerate(weights.paths):
        state[f"{PEFT_PREFIX}{path}.lora_A.weight"] = weights.lora_A[i].detach().cpu().contiguous()
        state[f"{PEFT_PREFIX}{path}.lora_B.weight"] = weights.lora_B[i].detach().cpu().contiguous()
    for module_name, module in head.items():
        for key, tensor in module.state_dict().items():
            state[f"{PEFT_PREFIX}{module_name}.{key}"] = tensor.detach().cpu().contiguous()
    return state


def import_state_dict(backbone: nn.Module, name: str, head: nn.ModuleDict, state: dict[str, torch.Tensor]) -> None:
    """Load PEFT-format weights into adapter `name` and its head; every key and shape must match (ValueError)."""
    weights = _registry(backbone)[name]
    state = {k.removeprefix(PEFT_PREFIX): v for k, v in state.items()}

    def take(key: str, like: torch.Tensor) -> torch.Tensor:
        if key not in state:
            raise ValueError(f"LoRA weight missing: '{key}'")
        tensor = state.pop(key)
        if tensor.shape != like.shape:
            raise ValueError(f"LoRA weight '{key}' has shape {tuple(tensor.shape)}, expected {tuple(like.shape)}")
        return tensor

    loaded = [(p, take(f"{path}.lora_{ab}.weight", p)) for i, path in enumerate(weights.paths)
              for ab, p in (("A", weights.lora_A[i]), ("B", weights.lora_B[i]))]
    heads = {module_name: {k: take(f"{module_name}.{k}", v) for k, v in module.state_dict().items()}
             for module_name, module in head.items()}
    if state:
        raise ValueError(f"unexpected LoRA weight '{next(iter(state))}'")
    with torch.no_grad():
        for p, tensor in loaded:
            p.copy_(tensor)
    for module_name, module in head.items():
        module.load_state_dict(heads[module_name])
