"""Insert bottleneck adapters into an encoder (BERT family, DeBERTa-v2, ModernBERT), and move their weights in
AdapterHub's key format."""

from __future__ import annotations

import types
from dataclasses import dataclass

import torch
from torch import nn

from engine.errors import ConfigError
from engine.methods.bottleneck.config import BottleneckConfig
from engine.methods.bottleneck.layer import AdapterSlot, Bottleneck


@dataclass(frozen=True)
class Site:
    """One place an adapter can go: `path` is the module path inside the encoder (AdapterHub's key stem)."""

    path: str
    slot: AdapterSlot
    after_attention: bool


def _output_forward(self: nn.Module, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
    """BertSelfOutput/BertOutput (and RoBERTa, ELECTRA, XLM-R) with the adapter slot replacing LN(h + r)."""
    h = self.dropout(self.dense(hidden_states))
    return self.adapters(h, input_tensor, self.LayerNorm)


def _distilbert_block_forward(self: nn.Module, hidden_states: torch.Tensor, attention_mask=None, **kwargs):
    """DistilBERT's TransformerBlock with adapter slots at its two residual LayerNorms."""
    attention_output, _ = self.attention(hidden_states, attention_mask=attention_mask, **kwargs)
    attention_output = self.attention_adapters(attention_output, hidden_states, self.sa_layer_norm)
    if getattr(self, "first_token_only", False):  # see engine/first_token.py
        attention_output = attention_output[:, :1]
    return self.output_adapters(self.ffn(attention_output), attention_output, self.output_layer_norm)


def _pre_norm_layer_forward(self: nn.Module, hidden_states: torch.Tensor, attention_mask=None,
                            position_embeddings=None, **kwargs) -> torch.Tensor:
    """ModernBERT's encoder layer with adapter slots on its two residual branches: x + A-slot(sublayer(norm(x))).

    A pre-norm layer has no LayerNorm after the residual sum, so each slot gets the identity where BERT's has
    LN(h + r): the adapter's maths is BERT's with that LN taken out, as AdapterHub places adapters in its pre-norm
    models (Llama, GPT-2: `bottleneck_layer_forward(h, residual, None)`).
    """
    attention, _ = self.attn(self.attn_norm(hidden_states), position_embeddings=position_embeddings,
                             attention_mask=attention_mask, **kwargs)
    hidden_states = self.attention_adapters(attention, hidden_states, nn.Identity())
    return self.output_adapters(self.mlp(self.mlp_norm(hidden_states)), hidden_states, nn.Identity())


def _slots(module: nn.Module, path: str, forward) -> list[Site]:
    module.attention_adapters = AdapterSlot()
    module.output_adapters = AdapterSlot()
    module.forward = types.MethodType(forward, module)
    return [Site(f"{path}.attention_adapters", module.attention_adapters, True),
            Site(f"{path}.output_adapters", module.output_adapters, False)]


def adapter_sites(encoder: nn.Module) -> list[Site]:
    """The encoder's adapter sites, patching its residual blocks the first time it is asked."""
    cached = getattr(encoder, "_adapterlab_sites", None)
    if cached is not None:
        return cached
    sites: list[Site] = []
    for path, module in encoder.named_modules():
        cls = type(module).__name__
        if cls == "TransformerBlock" and hasattr(module, "sa_layer_norm"):
            sites += _slots(module, path, _distilbert_block_forward)
        elif all(hasattr(module, a) for a in ("attn_norm", "attn", "mlp_norm", "mlp")):  # ModernBERT
            sites += _slots(module, path, _pre_norm_layer_forward)
        elif cls.endswith("Output") and all(hasattr(module, a) for a in ("dense", "dropout", "LayerNorm")):
            module.adapters = AdapterSlot()
            module.forward = types.MethodType(_output_forward, module)
            sites.append(Site(path, module.adapters, cls.endswith("SelfOutput")))
    encoder._adapterlab_sites = sites  # none in a decoder LLM: `Method.supports` refuses bottleneck methods there

    return sites


SHARED = "shared_parameters"  # AdapterHub's name for what all of an adapter's layers share (Compacter's rule)
PHM_DIM, PHM_INIT_STD = 4, 1e-4


def _shared(encoder: nn.Module) -> nn.ModuleDict:
    if not hasattr(encoder, SHARED):
        encoder.add_module(SHARED, nn.ModuleDict())
    return getattr(encoder, SHARED)


def phm_rule(encoder: nn.Module, name: str) -> nn.Parameter | None:
    """Compacter adapter `name`'s shared rule (n × n × n), or None for other adapters."""
    shared = getattr(encoder, SHARED, None)
    return shared[name]["phm_rule"] if shared is not None and name in shared else None


def add_bottleneck(encoder: nn.Module, name: str, config: BottleneckConfig, hidden_size: int) -> None:
    """Add adapter `name` at every site its method uses (Houlsby, Compacter: both; the others: after
    feed-forward). A Compacter adapter's one rule S ~ N(0, 1e-4) is shared by all its PHM layers."""
    if not adapter_sites(encoder):
        raise ConfigError(f"{type(encoder).__name__} has no place for bottleneck adapters: choose LoRA or IA3.")
    size = config.bottleneck_size(hidden_size)
    rule = None
    if config.phm:
        rule = nn.Parameter(torch.randn(PHM_DIM, PHM_DIM, PHM_DIM) * PHM_INIT_STD)
        _shared(encoder)[name] = nn.ParameterDict({"phm_rule": rule})
    for site in adapter_sites(encoder):
        if site.after_attention and not config.mh_adapter:
            continue
        site.slot.adapters[name] = Bottleneck(hidden_size, size, config.non_linearity, config.original_ln_before,
                                              config.is_parallel, config.scaling, rule)


def remove_bottleneck(encoder: nn.Module, name: str) -> None:
    for site in adapter_sites(encoder):
        if name in site.slot.adapters:
            del site.slot.adapters[name]
    if phm_rule(encoder, name) is not None:
        del _shared(encoder)[name]


def set_active_bottleneck(encoder: nn.Module, name: str | None) -> None:
    for site in adapter_sites(encoder):
        site.slot.active = name


def route_bottleneck(encoder: nn.Module, rows: dict[str, torch.Tensor] | None) -> None:
    """Each adapter in `rows` on its own rows of the next batches (None: back to the one active adapter)."""
    for site in adapter_sites(encoder):
        site.slot.rows = rows


def bottleneck_modules(encoder: nn.Module, name: str) -> dict[str, Bottleneck]:
    """Adapter `name`'s modules keyed by their site path."""
    return {s.path: s.slot.adapters[name] for s in adapter_sites(encoder) if name in s.slot.adapters}


def export_state_dict(encoder: nn.Module, name: str, prefix: str) -> dict[str, torch.Tensor]:
    """Weights keyed as AdapterHub saves them: `{prefix}.{site}.adapters.{name}.adapter_down.0.weight`."""
    state = {}
    for path, module in bottleneck_modules(encoder, name).items():
        stem = path[: -len(".adapters")] if path.endswith(".adapters") else path
        for key, tensor in module.state_dict().items():
            state[f"{prefix}.{stem}.adapters.{name}.{key}"] = tensor.detach().cpu().contiguous()
    rule = phm_rule(encoder, name)
    if rule is not None:
        state[f"{prefix}.{SHARED}.{name}.phm_rule"] = rule.detach().cpu().clone()
    return state


def import_state_dict(encoder: nn.Module, name: str, saved_name: str, state: dict[str, torch.Tensor]) -> None:
    """Load weights saved under `saved_name` (any model prefix) into adapter `name`; every key must match."""
    modules = bottleneck_modules(encoder, name)
    rule = phm_rule(encoder, name)
    if rule is not None:
        key = next((k for k in state if k.endswith(f"{SHARED}.{saved_name}.phm_rule")), None)
        if key is None:
            raise ValueError(f"the Compacter rule '{SHARED}.{saved_name}.phm_rule' is missing")
        state = dict(state)
        with torch.no_grad():
            rule.copy_(state.pop(key))
    by_suffix = {}
    for path, module in modules.items():
        stem = path[: -len(".adapters")] if path.endswith(".adapters") else path
        for key in module.state_dict():
            by_suffix[f"{stem}.adapters.{saved_name}.{key}"] = (module, key)
    loaded: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        match = next((s for s in by_suffix if key == s or key.endswith("." + s)), None)
        if match is None:
            raise ValueError(f"unexpected adapter weight '{key}'")
        module, sub = by_suffix.pop(match)
        loaded.setdefault(id(module), {})[sub] = tensor
    if by_suffix:
        raise ValueError(f"adapter weights missing, e.g. '{next(iter(by_suffix))}'")
    for module in modules.values():
        module.load_state_dict(loaded[id(module)])
