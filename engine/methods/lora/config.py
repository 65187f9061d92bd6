"""LoRA settings, written and read as PEFT's `adapter_config.json` (peft_type "LORA") through PEFT's own LoraConfig."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ConfigError
from engine.heads import head_modules
from engine.options import option

# PEFT 0.21 has defaults for BERT, RoBERTa, ELECTRA, XLM-R and DeBERTa-v2 (queries and values) and decoder LLMs;
# DistilBERT's are its own names, and ModernBERT computes queries, keys and values in one linear.
OWN_DEFAULTS = {"distilbert": ["q_lin", "v_lin"], "modernbert": ["Wqkv"]}


@dataclass(frozen=True)
class LoraOptions:
    lora_r: int = option(8, "Rank (r)", "Inner size of each low-rank update. Larger trains more parameters.",
                         low=1, high=1024, whole=True, choices=(4, 8, 16, 32))
    lora_alpha: float = option(8, "Alpha", "Updates are scaled by alpha / r (PEFT's default: alpha = r = 8).",
                               low=0, low_open=True)
    lora_dropout: float = option(0.0, "Dropout", "Dropout on the input of each low-rank update while training.",
                                 low=0, high=0.9)
    lora_targets: list = option([], "Target modules", "Layers that get an update, by name (comma-separated). "
                                "Empty: PEFT's default for the model (query, value on BERT).")


def default_targets(model_type: str) -> list[str]:
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    if model_type in OWN_DEFAULTS:
        return list(OWN_DEFAULTS[model_type])
    if model_type not in DEFAULTS:
        raise ConfigError(f"LoRA has no default target modules for {model_type}: name them (--lora-targets).")
    return list(DEFAULTS[model_type])


@dataclass(frozen=True)
class LoraConfig:
    """What our LoRA layers need, and PEFT's config for the folder. Scaling alpha / r (alpha / √r with rsLoRA)."""

    r: int
    alpha: float
    dropout: float
    targets: tuple[str, ...]
    head: tuple[str, ...]
    base_model: str | None = None
    rslora: bool = False
    task_type: str = "SEQ_CLS"  # PEFT's: SEQ_2_SEQ_LM when an encoder-decoder writes the labels as text

    @property
    def scaling(self) -> float:
        return self.alpha / (self.r ** 0.5 if self.rslora else self.r)

    def is_target(self, path: str) -> bool:
        """PEFT's matching for a list of names: the whole path or a suffix after a dot; never a head module."""
        if any(f".{m}." in f".{path}." for m in self.head):
            return False
        return any(path == t or path.endswith(f".{t}") for t in self.targets)

    def save_pretrained(self, folder: Path) -> None:
        from peft import LoraConfig as PeftLoraConfig

        PeftLoraConfig(task_type=self.task_type, r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                       target_modules=list(self.targets), modules_to_save=list(self.head), use_rslora=self.rslora,
                       base_model_name_or_path=self.base_model, inference_mode=True).save_pretrained(str(folder))

    @classmethod
    def from_peft(cls, folder: Path, model_type: str) -> LoraConfig:
        """Read PEFT's LoRA config; refuse the variants these layers do not compute (DoRA, biases, patterns)."""
        data = json.loads((folder / "adapter_config.json").read_text())
        targets = data.get("target_modules")
        if isinstance(targets, str):
            raise ConfigError("LoRA target modules given as a regular expression are not supported: list them.")
        refused = [k for k, ok in [("use_dora", not data.get("use_dora")), ("bias", data.get("bias", "none") == "none"),
                                   ("fan_in_fan_out", not data.get("fan_in_fan_out")),
                                   ("rank_pattern", not data.get("rank_pattern")),
                                   ("alpha_pattern", not data.get("alpha_pattern")),
                                   ("layers_to_transform", data.get("layers_to_transform") is None),
                                   ("lora_bias", not data.get("lora_bias"))] if not ok]
        if refused:
            raise ConfigError(f"This LoRA adapter uses options AdapterLab does not support: {', '.join(refused)}.")
        task_type = data.get("task_type") or "SEQ_CLS"
        head = () if task_type == "SEQ_2_SEQ_LM" else tuple(head_modules(model_type))
        return cls(r=int(data["r"]), alpha=float(data["lora_alpha"]), dropout=float(data.get("lora_dropout") or 0),
                   targets=tuple(targets or default_targets(model_type)), head=head,
                   base_model=data.get("base_model_name_or_path"), rslora=bool(data.get("use_rslora")),
                   task_type=task_type)
