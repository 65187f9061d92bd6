"""Prompt-tuning settings, written and read as PEFT's `adapter_config.json` (peft_type "PROMPT_TUNING")."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import ConfigError
from engine.heads import head_modules
from engine.options import option

if TYPE_CHECKING:
    from transformers import PretrainedConfig


@dataclass(frozen=True)
class PromptOptions:
    num_virtual_tokens: int = option(20, "Virtual tokens", "Learned vectors put before every text. Each takes one "
                                     "of the model's positions (512 on BERT) beside the max length.", low=1,
                                     high=256, whole=True, choices=(10, 20, 50, 100))
    prompt_init_text: str = option("", "Start from text", "Start the vectors from this text's word embeddings "
                                   "(e.g. 'Classify the topic of this message'); empty: random.")


@dataclass(frozen=True)
class PromptConfig:
    num_virtual_tokens: int
    init_text: str = ""

    def save_pretrained(self, folder: Path, model_config: PretrainedConfig, base_model: str) -> None:
        from peft import PromptTuningConfig

        PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=self.num_virtual_tokens,
                           token_dim=model_config.hidden_size, num_layers=model_config.num_hidden_layers,
                           num_attention_heads=model_config.num_attention_heads, num_transformer_submodules=1,
                           prompt_tuning_init="TEXT" if self.init_text else "RANDOM",
                           prompt_tuning_init_text=self.init_text or None,
                           tokenizer_name_or_path=base_model if self.init_text else None,
                           modules_to_save=head_modules(model_config.model_type),
                           base_model_name_or_path=base_model, inference_mode=True).save_pretrained(str(folder))

    @classmethod
    def from_peft(cls, folder: Path) -> PromptConfig:
        data = json.loads((folder / "adapter_config.json").read_text())
        if data.get("num_transformer_submodules") not in (None, 1):
            raise ConfigError("Prompt tuning for encoder-decoder models is not supported.")
        return cls(int(data["num_virtual_tokens"]), data.get("prompt_tuning_init_text") or "")
