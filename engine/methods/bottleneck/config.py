"""Pfeiffer, Houlsby and parallel settings, and their AdapterHub `adapter_config.json` form."""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import ConfigError
from engine.methods.bottleneck.layer import ACTIVATIONS

# Every BnConfig field of AdapterHub `adapters` 1.3 at its default, so saved configs round-trip there.
_BN_DEFAULTS: dict = {
    "original_ln_after": True,
    "ln_before": False,
    "ln_after": False,
    "init_weights": "bert",
    "init_weights_seed": None,
    "is_parallel": False,
    "scaling": 1.0,
    "use_gating": False,
    "residual_before_ln": True,
    "adapter_residual_before_ln": False,
    "inv_adapter": None,
    "inv_adapter_reduction_factor": None,
    "cross_adapter": False,
    "leave_out": [],
    "dropout": 0.0,
    "phm_layer": False,
    "phm_dim": 4,
    "factorized_phm_W": True,
    "shared_W_phm": False,
    "shared_phm_rule": True,
    "factorized_phm_rule": False,
    "phm_c_init": "normal",
    "phm_init_range": 0.0001,
    "learn_phm": True,
    "hypercomplex_nonlinearity": "glorot-uniform",
    "phm_rank": 1,
    "phm_bias": True,
    "stochastic_depth": 0.0,
}
# Fields whose value changes the maths; AdapterLab implements only these values.
_REQUIRED = ("original_ln_after", "ln_before", "ln_after", "is_parallel", "scaling", "use_gating",
             "residual_before_ln", "adapter_residual_before_ln", "inv_adapter", "cross_adapter", "leave_out",
             "phm_layer", "stochastic_depth")
# AdapterHub's seq_bn, double_seq_bn and par_bn presets (what differs from the BnConfig defaults).
PRESETS = {
    "pfeiffer": {"mh_adapter": False, "output_adapter": True, "non_linearity": "relu", "original_ln_before": True},
    "houlsby": {"mh_adapter": True, "output_adapter": True, "non_linearity": "swish", "original_ln_before": False},
    "parallel": {"mh_adapter": False, "output_adapter": True, "non_linearity": "relu", "original_ln_before": False,
                 "is_parallel": True, "scaling": 4.0, "init_weights": "mam_adapter"},
    "compacter": {"mh_adapter": True, "output_adapter": True, "non_linearity": "gelu", "original_ln_before": False,
                  "phm_layer": True},
}
# PHM settings AdapterLab implements: AdapterHub's defaults (rank-1 factorised W, one shared unfactorised rule)
PHM_FIELDS = ("phm_dim", "phm_rank", "factorized_phm_W", "shared_W_phm", "shared_phm_rule", "factorized_phm_rule",
              "phm_c_init", "learn_phm", "phm_bias")


@dataclass(frozen=True)
class BottleneckConfig:
    """A bottleneck adapter: Pfeiffer (`seq_bn`), Houlsby (`double_seq_bn`) or parallel (`par_bn`)."""

    method: str
    reduction_factor: float = 16
    non_linearity: str = ""

    def __post_init__(self) -> None:
        if self.method not in PRESETS:
            raise ConfigError(f"Unknown bottleneck method '{self.method}': choose one of {', '.join(PRESETS)}.")
        if not self.non_linearity:
            object.__setattr__(self, "non_linearity", PRESETS[self.method]["non_linearity"])
        if self.non_linearity not in ACTIVATIONS:
            raise ConfigError(
                f"Unknown non-linearity '{self.non_linearity}': choose one of {', '.join(ACTIVATIONS)}."
            )
        if not self.reduction_factor or self.reduction_factor <= 0:
            raise ConfigError(f"Reduction factor must be a positive number, not {self.reduction_factor}.")

    @property
    def mh_adapter(self) -> bool:
        return PRESETS[self.method]["mh_adapter"]

    @property
    def original_ln_before(self) -> bool:
        return PRESETS[self.method]["original_ln_before"]

    @property
    def is_parallel(self) -> bool:
        return PRESETS[self.method].get("is_parallel", False)

    @property
    def scaling(self) -> float:
        return PRESETS[self.method].get("scaling", 1.0)

    @property
    def phm(self) -> bool:
        return PRESETS[self.method].get("phm_layer", False)

    def bottleneck_size(self, hidden_size: int) -> int:
        """d = hidden // reduction_factor, refused when that leaves no units."""
        size = int(hidden_size // self.reduction_factor)
        if size < 1:
            raise ConfigError(
                f"Reduction factor {self.reduction_factor:g} is too large for hidden size {hidden_size}: "
                f"the adapter would have no units. Use at most {hidden_size}."
            )
        n = _BN_DEFAULTS["phm_dim"]
        if self.phm and (size % n or hidden_size % n):
            raise ConfigError(f"Compacter needs a bottleneck size divisible by {n}: reduction factor "
                              f"{self.reduction_factor:g} gives {size} for hidden size {hidden_size}. Choose "
                              "another factor (e.g. 8, 16 or 32).")
        return size

    def to_adapterhub(self) -> dict:
        """The `config` object of AdapterHub's adapter_config.json."""
        rf = self.reduction_factor
        return {**_BN_DEFAULTS, **PRESETS[self.method], "non_linearity": self.non_linearity,
                "reduction_factor": int(rf) if float(rf).is_integer() else rf}

    @classmethod
    def from_adapterhub(cls, config: dict) -> BottleneckConfig:
        """Read an AdapterHub bottleneck config, refusing options whose maths AdapterLab does not implement.

        The fields, not a name, say which kind it is (`is_parallel`, `mh_adapter`, `original_ln_before`)."""
        method = bottleneck_kind(config)
        if method is None:
            raise ConfigError(f"Adapter architecture '{config.get('architecture')}' is not supported; AdapterLab "
                              "imports bottleneck adapters (Pfeiffer, Houlsby, parallel).")
        expected = {**_BN_DEFAULTS, **PRESETS[method]}
        checked = _REQUIRED + (PHM_FIELDS if expected["phm_layer"] else ())
        unsupported = [k for k in checked if k in config and config[k] != expected[k]]
        if not config.get("output_adapter", True):
            unsupported.append("output_adapter")
        if unsupported:
            raise ConfigError(f"This adapter uses options AdapterLab does not support: {', '.join(unsupported)}.")
        if PRESETS[method]["mh_adapter"] != bool(config.get("mh_adapter")) or \
                PRESETS[method]["original_ln_before"] != bool(config.get("original_ln_before")):
            raise ConfigError("This adapter mixes Pfeiffer, Houlsby and parallel placement, which AdapterLab does "
                              "not support.")
        rf = config.get("reduction_factor", 16)
        if isinstance(rf, dict):
            raise ConfigError("Per-layer reduction factors are not supported.")
        return cls(method=method, reduction_factor=rf, non_linearity=str(config.get("non_linearity", "")).lower())


def bottleneck_kind(config: dict) -> str | None:
    """Which of PRESETS an AdapterHub config is closest to, from its fields; None if it is not a bottleneck."""
    if config.get("architecture") not in (None, "bottleneck"):
        return None
    if config.get("is_parallel"):
        return "parallel"
    if config.get("phm_layer"):
        return "compacter"
    return "pfeiffer" if config.get("original_ln_before") and not config.get("mh_adapter") else "houlsby"
