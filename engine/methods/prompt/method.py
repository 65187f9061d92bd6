"""Prompt tuning (PEFT's) as a registered method: learned virtual tokens before the text, saved as PEFT's folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from safetensors.torch import load_file
from torch import nn

from engine.base_models import skeleton
from engine.errors import ConfigError
from engine.heads import task_head_size
from engine.methods.base import Method, peft_foreign_meta, save_peft_weights, weights_fit
from engine.methods.prompt.config import PromptConfig, PromptOptions
from engine.methods.prompt.model import HEAD_PREFIX, PEFT_KEY, Prompt, mixed_prompt_inputs, prompt_inputs

if TYPE_CHECKING:
    from transformers import PretrainedConfig

REGISTRY = "_adapterlab_prompts"


def _prompts(model) -> nn.ModuleDict:
    if not hasattr(model, REGISTRY):
        model.add_module(REGISTRY, nn.ModuleDict())
    return getattr(model, REGISTRY)


class PromptTuning(Method):
    name = "prompt"
    label = "Prompt tuning"
    group = "Prompt-based"
    reference = "PEFT"
    description = ("Learned 'virtual tokens' put before every text; nothing inside the model changes: the fewest "
                   "parameters with LoRA-level simplicity, but needs many steps and a high learning rate.")
    Options: ClassVar[type] = PromptOptions
    # not decoder LLMs: their classifier finds the last real token from the token ids, and with the prompt fed as
    # embeddings it reads the last position instead, padding in a batch of texts of different lengths (as PEFT)
    architectures: ClassVar[tuple[str, ...]] = ("encoder",)
    defaults: ClassVar[dict[str, float]] = {"learning_rate": 3e-2, "epochs": 3}

    def check(self, options: Any, config: PretrainedConfig, max_length: int = 128) -> None:
        limit = getattr(config, "max_position_embeddings", 512)
        if options.num_virtual_tokens + max_length > limit:
            raise ConfigError(f"Virtual tokens ({options.num_virtual_tokens}) plus max length ({max_length}) "
                              f"exceed the model's {limit} positions: lower one of them.")

    def count(self, options: Any, config: PretrainedConfig, num_labels: int) -> tuple[int, int]:
        return options.num_virtual_tokens * config.hidden_size, task_head_size(skeleton(config), num_labels)

    def add(self, model, name: str, labels: list[str], options: Any,
            config: PromptConfig | None = None) -> PromptConfig:
        config = config or PromptConfig(options.num_virtual_tokens, options.prompt_init_text)
        words = model.backbone.get_input_embeddings()
        _prompts(model)[name] = Prompt(config.num_virtual_tokens, words, model.tokenizer, config.init_text).to(
            words.weight.device)
        return config

    def remove(self, model, name: str) -> None:
        del _prompts(model)[name]

    def activate(self, model, name: str | None) -> None:
        """Nothing to switch inside the model: `logits` prepends the active adapter's prompt."""

    def route(self, model, rows: dict[str, torch.Tensor] | None, size: int = 0) -> None:
        """Nothing to switch inside the model: `mixed_inputs` prepends each row's prompt."""

    def mixed_inputs(self, model, rows: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict:
        own = [(_prompts(model)[name], r) for name, r in rows.items() if name in _prompts(model)]
        if not own:
            return batch
        inputs = mixed_prompt_inputs(own, model.backbone.get_input_embeddings(), batch)
        self._check_length(model, inputs)
        return inputs

    def virtual_tokens(self, model, name: str) -> int:
        return _prompts(model)[name].embedding.shape[0]

    def parameters(self, model, name: str) -> list[nn.Parameter]:
        return [_prompts(model)[name].embedding]

    def logits(self, model, name: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = prompt_inputs(_prompts(model)[name], model.backbone.get_input_embeddings(), batch)
        self._check_length(model, inputs)
        return model.backbone(**inputs).logits

    def _check_length(self, model, inputs: dict[str, torch.Tensor]) -> None:
        limit = getattr(model.config, "max_position_embeddings", 512)
        if inputs["inputs_embeds"].shape[1] > limit:
            raise ConfigError(f"The texts plus {self.label}'s virtual tokens exceed the model's {limit} positions: "
                              "use a smaller max length.")

    def save(self, model, name: str, folder: Path) -> None:
        model.adapters[name].config.save_pretrained(folder, model.config, model.base_model_name)
        weights = {PEFT_KEY: _prompts(model)[name].embedding.detach().cpu().clone()}
        for module_name, module in model.heads[name].items():
            for key, tensor in module.state_dict().items():
                weights[f"{HEAD_PREFIX}{module_name}.{key}"] = tensor.detach().cpu().contiguous()
        save_peft_weights(folder, weights)

    def load(self, model, name: str, folder: Path, meta: dict) -> None:
        config = PromptConfig.from_peft(folder)
        model.add_adapter(name, self.name, meta["labels"], {"num_virtual_tokens": config.num_virtual_tokens,
                                                           "prompt_init_text": config.init_text}, config)
        with weights_fit(model, name, folder):
            state = load_file(str(folder / "adapter_model.safetensors"))
            prompt = _prompts(model)[name]
            with torch.no_grad():
                prompt.embedding.copy_(state.pop(PEFT_KEY).reshape(prompt.embedding.shape))
            for module_name, module in model.heads[name].items():
                module.load_state_dict({k.removeprefix(f"{HEAD_PREFIX}{module_name}."): state.pop(k)
                                        for k in list(state) if k.startswith(f"{HEAD_PREFIX}{module_name}.")})
            if state:
                raise ValueError(f"unexpected weight '{next(iter(state))}'")

    def claims(self, folder: Path, config: dict) -> bool:
        return config.get("peft_type") == "PROMPT_TUNING"

    def foreign_meta(self, folder: Path, config: dict) -> dict:
        return peft_foreign_meta(folder, config, HEAD_PREFIX)
