"""Prefix-tuning settings, and their AdapterHub `adapter_config.json` form (architecture "prefix_tuning")."""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import ConfigError
from engine.options import option

# Every PrefixTuningConfig field of AdapterHub `adapters` 1.3 at its default, so saved configs load there.
ADAPTERHUB_DEFAULTS = {"architecture": "prefix_tuning", "bottleneck_size": 512, "cross_prefix": True, "dropout": 0.0,
                       "encoder_prefix": True, "flat": False, "init_weights_seed": None, "leave_out": [],
                       "non_linearity": "tanh", "prefix_length": 30, "shared_gating": True, "use_gating": False}


@dataclass(frozen=True)
class PrefixOptions:
    prefix_length: int = option(30, "Prefix length", "Learned key/value vectors put before every layer's "
                                "attention. More gives the model more to learn with.", low=1, high=512, whole=True,
                                choices=(10, 20, 30, 50))


@dataclass(frozen=True)
class PrefixConfig:
    """Prefix tuning as AdapterHub computes it; `flat`: the prefixes themselves, without the MLP that trains them."""

    prefix_length: int = 30
    bottleneck_size: int = 512
    flat: bool = False
    dropout: float = 0.0

    def to_adapterhub(self, flat: bool) -> dict:
        return {**ADAPTERHUB_DEFAULTS, "prefix_length": self.prefix_length, "bottleneck_size": self.bottleneck_size,
                "dropout": self.dropout, "flat": flat}

    @classmethod
    def from_adapterhub(cls, config: dict) -> PrefixConfig:
        refused = [k for k in ("leave_out", "use_gating", "non_linearity")
                   if config.get(k, ADAPTERHUB_DEFAULTS[k]) != ADAPTERHUB_DEFAULTS[k]]
        if refused:
            raise ConfigError(f"This prefix-tuning adapter uses options AdapterLab does not support: "
                              f"{', '.join(refused)}.")
        return cls(int(config.get("prefix_length", 30)), int(config.get("bottleneck_size", 512)),
                   bool(config.get("flat")), float(config.get("dropout") or 0.0))
