"""Add IA3 to the shared backbone in place, switch between IA3 adapters, and move their weights in PEFT's saved
key format (`base_model.model.<module path>.ia3_l`), so PEFT loads our folders and we load PEFT's weights.

Target linears are wrapped once in `IA3Linear`; each adapter's vectors live in one `IA3Vectors` module kept in a
ModuleDict on the backbone (`_adapterlab_ia3`), so `backbone.to(device)` and `requires_grad_` reach them.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.errors import ConfigError
from engine.methods.base import adapter_owned
from engine.methods.ia3.config import IA3Config
from engine.methods.ia3.layer import IA3Linear, IA3Vectors, VectorSlice

# PEFT saves `base_model.model.<module path>.ia3_l` for a PeftModel over the task model.
PEFT_PREFIX = "base_model.model."
REGISTRY = "_adapterlab_ia3"


def _registry(backbone: nn.Module, create: bool = False) -> nn.ModuleDict | None:
    """The backbone's adapter name -> IA3Vectors dict (None before the first IA3 adapter, unless `create`)."""
    registry = getattr(backbone, REGISTRY, None)
    if registry is None and create:
        registry = nn.ModuleDict()
        backbone.add_module(REGISTRY, registry)
    return registry


def _vectors(backbone: nn.Module, name: str | None) -> IA3Vectors | None:
    registry = _registry(backbone)
    if registry is None or not isinstance(name, str) or name not in registry:
        return None
    return registry[name]


def ia3_layers(backbone: nn.Module) -> dict[str, IA3Linear]:
    """The backbone's IA3-wrapped linears by module path (none before the first IA3 adapter)."""
    return {path: m for path, m in backbone.named_modules() if isinstance(m, IA3Linear)}


def _targets(backbone: nn.Module, config: IA3Config) -> dict[str, nn.Module]:
    """The modules `config` targets, matched on their path as PEFT matches them (wrapped ones count as theirs)."""
    wrapped = tuple(f"{path}." for path in ia3_layers(backbone))
    owned = adapter_owned(backbone)
    found = {}
    for path, module in backbone.named_modules():
        if (not path or path.startswith(wrapped) or path.split(".")[0] == REGISTRY or id(module) in owned
                or not config.is_target(path)):
            continue
        if not isinstance(module, nn.Linear | IA3Linear):
            raise ConfigError(f"IA3 target module '{path}' is a {type(module).__name__}; only linear layers can "
                              "be targeted.")
        found[path] = module
    if not found:
        raise ConfigError(f"IA3 target modules {config.target_modules} match no module of "
                          f"{type(backbone).__name__}.")
    return found


def add_ia3(backbone: nn.Module, name: str, config: IA3Config) -> None:
    """Add IA3 vectors named `name` (initialised to 1) for the backbone's target modules, in place, and make them
    the active ones. Linears wrapped for an earlier adapter are reused."""
    registry = _registry(backbone, create=True)
    if name in registry:
        raise ConfigError(f"An IA3 adapter named '{name}' is already loaded.")
    layout: dict[str, VectorSlice] = {}
    start = 0
    device = None
    for path, module in _targets(backbone, config).items():
        if isinstance(module, nn.Linear):
            parent_path, _, child = path.rpartition(".")
            module = IA3Linear(module)
            setattr(backbone.get_submodule(parent_path), child, module)
        feedforward = config.is_feedforward(path)
        size = module.in_features if feedforward else module.out_features
        layout[path] = VectorSlice(start, size, feedforward)
        start += size
        if device is None:
            device = module.base_layer.weight.device
    registry[name] = IA3Vectors(layout).to(device)
    set_active_ia3(backbone, name)


def set_active_ia3(backbone: nn.Module, name: str | None) -> None:
    """Scale with adapter `name`'s vectors; any other name (a bottleneck adapter, None) leaves the layers plain."""
    vectors = _vectors(backbone, name)
    for path, layer in ia3_layers(backbone).items():
        layer.activate(vectors, path)


def route_ia3(backbone: nn.Module, rows: dict[str, torch.Tensor] | None, size: int) -> None:
    """Each IA3 adapter in `rows` scales its own rows of the next batches (None: back to the active one)."""
    own = None if rows is None else {name: (_vectors(backbone, name), r) for name, r in rows.items()
                                     if _vectors(backbone, name) is not None}
    for path, layer in ia3_layers(backbone).items():
        layer.route(own, path, size)


def remove_ia3(backbone: nn.Module, name: str) -> None:
    """Drop adapter `name`'s vectors; the wrappers stay (plain linears while no IA3 adapter is active)."""
    vectors = _vectors(backbone, name)
    if vectors is None:
        return
    for layer in ia3_layers(backbone).values():
        if layer.active is not None and layer.active.vectors is vectors:
            layer.activate(None, "")
    del _registry(backbone)[name]


def ia3_parameters(backbone: nn.Module, name: str) -> list[nn.Parameter]:
    """Adapter `name`'s one flat parameter (all layers' vectors), or [] if there is no such IA3 adapter."""
    vectors = _vectors(backbone, name)
    return [] if vectors is None else [vectors.ia3_l]


def export_state_dict(backbone: nn.Module, name: str, head: nn.ModuleDict) -> dict[str, torch.Tensor]:
    """The adapter and its head keyed and shaped as `PeftModel.save_pretrained` writes them: (out, 1) for
    key/value-type vectors, (1, in) for feed-forward ones. Each tensor is a copy (safetensors refuses views
    sharing one storage)."""
    vectors = _vectors(backbone, name)
    if vectors is None:
        raise ConfigError(f"No IA3 adapter named '{name}' is loaded.")
    state = {
        f"{PEFT_PREFIX}{path}.ia3_l": vectors.vector(path).detach().reshape(s.peft_shape).cpu().clone()
        for path, s in vectors.layout.items()
    }
    for module_name, module in head.items():
        for key, tensor in module.state_dict().items():
            state[f"{PEFT_PREFIX}{module_name}.{key}"] = tensor.detach().cpu().contiguous()
    return state


def import_state_dict(backbone: nn.Module, name: str, head: nn.ModuleDict, state: dict[str, torch.Tensor]) -> None:
    """Load PEFT-format weights into adapter `name` and its head. Strict: every key and shape must match, else
    ValueError, and nothing is changed."""
    vectors = _vectors(backbone, name)
    if vectors is None:
        raise ConfigError(f"No IA3 adapter named '{name}' is loaded.")
    state = {k.removeprefix(PEFT_PREFIX): v for k, v in state.items()}

    def take(key: str, shape: tuple[int, ...]) -> torch.Tensor:
        if key not in state:
            raise ValueError(f"IA3 weight missing: '{key}'")
        tensor = state.pop(key)
        if tuple(tensor.shape) != tuple(shape):
            raise ValueError(f"IA3 weight '{key}' has shape {tuple(tensor.shape)}, expected {tuple(shape)}")
        return tensor

    flat = [take(f"{path}.ia3_l", s.peft_shape).reshape(-1) for path, s in vectors.layout.items()]
    heads = {module_name: {k: take(f"{module_name}.{k}", v.shape) for k, v in module.state_dict().items()}
             for module_name, module in head.items()}
    if state:
        raise ValueError(f"unexpected IA3 weight '{next(iter(state))}'")
    with torch.no_grad():
        vectors.ia3_l.copy_(torch.cat(flat))
    for module_name, module in head.items():
        module.load_state_dict(heads[module_name])
