"""AdapterFusion's settings: which adapters it fuses, and AdapterHub's `adapter_fusion_config.json` ("dynamic")."""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.options import option

# AdapterHub 1.3's DynamicAdapterFusionConfig, saved as is (the maths below implements exactly these values).
DYNAMIC = {"key": True, "query": True, "query_before_ln": False, "regularization": True, "residual_before": False,
           "temperature": False, "value": True, "value_before_softmax": True, "value_initialized": True,
           "dropout_prob": None}
FUSABLE = ("houlsby", "pfeiffer", "compacter")  # sequential bottleneck adapters (a parallel one has no residual
# AdapterFusion can mix)


@dataclass(frozen=True)
class FusionOptions:
    fuse: list[str] = option([], "Adapters to fuse", "Two or more trained bottleneck adapters (Houlsby, Pfeiffer or "
                             "Compacter) on this base model: by folder, or by job id in the page and job commands. "
                             "They stay frozen; a fusion layer in each block learns how much of each to use.",
                             adapters_of=FUSABLE)


def adapterhub_names(names: list[str]) -> tuple[str, ...]:
    """The fused adapters' names in AdapterHub's files: their own names, made safe (the fusion's name joins
    them with commas) and unique."""
    out: list[str] = []
    for name in names:
        base = re.sub(r"[^A-Za-z0-9_-]+", "_", name or "adapter").strip("_") or "adapter"
        candidate, n = base, 2
        while candidate in out:
            candidate, n = f"{base}_{n}", n + 1
        out.append(candidate)
    return tuple(out)


@dataclass(frozen=True)
class FusionConfig:
    """The fused adapters' folders, in order, and the names AdapterHub's files give them."""

    folders: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def fusion_name(self) -> str:
        """AdapterHub's name for the fusion (and its head): the adapter names joined by commas."""
        return ",".join(self.names)
