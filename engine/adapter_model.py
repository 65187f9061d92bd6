"""One frozen base model with any number of named adapters and heads over it; one is active at a time.

Training uses it with a single adapter; the playground and batch prediction load many and switch between
them without reloading the base model.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification
from transformers.utils import logging as hf_logging

from engine.base_models import display_name, from_pretrained, load_config, load_tokenizer, resolve_base_model
from engine.batching import Batcher
from engine.errors import ConfigError
from engine.first_token import set_first_token_only
from engine.heads import adapterhub_head, task_head
from engine.methods import BOTTLENECK_METHODS, METHODS
from engine.methods.bottleneck import model as bn
from engine.methods.bottleneck.config import BottleneckConfig
from engine.methods.ia3 import model as ia3
from engine.methods.ia3.config import head_modules, ia3_config


@dataclass
class AdapterInfo:
    """What the model knows about one loaded adapter."""

    name: str
    method: str
    labels: list[str]
    config: object  # BottleneckConfig or IA3Config
    meta: dict = field(default_factory=dict)


class AdapterModel(nn.Module):
    def __init__(self, base_model: str | None = None, mmap: bool = True) -> None:
        """`mmap=False` reads the weights into memory instead of mapping the file: for bf16 training, whose
        re-stored weights can then free their fp32 originals (30 MB less at the peak on the bundled model)."""
        super().__init__()
        self.base_model_path = resolve_base_model(base_model)
        self.base_model_name = display_name(self.base_model_path)
        self.config = load_config(self.base_model_path)
        self.tokenizer = load_tokenizer(self.base_model_path)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the task head is replaced per adapter: its "newly initialised" note is noise
        hf_logging.disable_progress_bar()
        try:
            self.backbone = from_pretrained(AutoModelForSequenceClassification, self.base_model_path, num_labels=2,
                                            disable_mmap=not mmap)
        finally:
            hf_logging.set_verbosity(verbosity)
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        set_first_token_only(self.encoder)
        self.base_dropout = False  # see train()
        self.heads = nn.ModuleDict()
        self.adapters: dict[str, AdapterInfo] = {}
        self.active: str | None = None

    @property
    def encoder(self) -> nn.Module:
        return self.backbone.base_model

    @property
    def model_prefix(self) -> str:
        return self.backbone.base_model_prefix

    @property
    def accepts_token_types(self) -> bool:
        """DistilBERT's encoder takes no token_type_ids; BERT, RoBERTa, ELECTRA and XLM-R do."""
        return "token_type_ids" in inspect.signature(self.encoder.forward).parameters

    def batcher(self, max_length: int, bf16: bool | None = None) -> Batcher:
        """A batcher for this model's tokenizer and device (bf16 autocast: see `Batcher`)."""
        return Batcher(self.tokenizer, max_length, self.device, self.accepts_token_types, bf16)

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    def add_adapter(
        self,
        name: str,
        method: str,
        labels: list[str],
        reduction_factor: float = 16,
        non_linearity: str = "",
        ia3_target_modules: list[str] | None = None,
        ia3_feedforward_modules: list[str] | None = None,
    ) -> AdapterInfo:
        """Add a freshly initialised adapter and head named `name`."""
        if name in self.adapters:
            raise ConfigError(f"An adapter named '{name}' is already loaded.")
        if method not in METHODS:
            raise ConfigError(f"Unknown method '{method}': choose one of {', '.join(METHODS)}.")
        if len(labels) < 2:
            raise ConfigError("A classifier needs at least 2 labels.")
        config: object
        if method in BOTTLENECK_METHODS:
            config = BottleneckConfig(method, reduction_factor, non_linearity)
            bn.add_bottleneck(self.encoder, name, config, self.config.hidden_size)
            head: nn.Module = adapterhub_head(self.config, len(labels))
        else:
            config = ia3_config(self.config.model_type, self.base_model_name, ia3_target_modules,
                                ia3_feedforward_modules)
            ia3.add_ia3(self.backbone, name, config)
            head = task_head(self.backbone, head_modules(self.config.model_type), len(labels))
        self.heads[name] = head.to(self.device)
        bn.adapter_sites(self.encoder)  # patch the residual blocks once, whatever the first method
        for p in self.backbone.parameters():  # new adapter weights are created trainable
            p.requires_grad_(False)
        self.adapters[name] = AdapterInfo(name, method, list(labels), config)
        self.to(self.device)
        self.set_active(name)
        return self.adapters[name]

    def delete_adapter(self, name: str) -> None:
        info = self.adapters.pop(name)
        if info.method in BOTTLENECK_METHODS:
            bn.remove_bottleneck(self.encoder, name)
        else:
            ia3.remove_ia3(self.backbone, name)
        del self.heads[name]
        if self.active == name:
            self.set_active(None)

    def set_active(self, name: str | None) -> None:
        """Route the forward pass through adapter `name` (None: the plain base model); no weights move."""
        if name is not None and name not in self.adapters:
            raise ConfigError(f"No adapter named '{name}' is loaded.")
        bn.set_active_bottleneck(self.encoder, name)
        ia3.set_active_ia3(self.backbone, name)
        if name is not None and self.adapters[name].method == "ia3":
            for module_name, module in self.heads[name].items():
                setattr(self.backbone, module_name, module)
        self.active = name

    def adapter_parameters(self, name: str) -> list[nn.Parameter]:
        """The adapter's own weights, head excluded."""
        if self.adapters[name].method in BOTTLENECK_METHODS:
            return [p for m in bn.bottleneck_modules(self.encoder, name).values() for p in m.parameters()]
        return ia3.ia3_parameters(self.backbone, name)

    def trainable_parameters(self, name: str) -> list[nn.Parameter]:
        return self.adapter_parameters(name) + list(self.heads[name].parameters())

    def parameter_counts(self, name: str) -> tuple[int, int]:
        """(adapter parameters, adapter + head parameters)."""
        adapter = sum(p.numel() for p in self.adapter_parameters(name))
        return adapter, adapter + sum(p.numel() for p in self.heads[name].parameters())

    def train_adapter(self, name: str) -> list[nn.Parameter]:
        """Make only adapter `name` and its head trainable; return those parameters."""
        self.requires_grad_(False)
        params = self.trainable_parameters(name)
        for p in params:
            p.requires_grad_(True)
        self.set_active(name)
        return params

    def adapter_state(self, name: str) -> dict[str, torch.Tensor]:
        """A copy of the adapter's and head's weights (for keeping the best epoch)."""
        return {str(i): p.detach().clone() for i, p in enumerate(self.trainable_parameters(name))}

    def load_adapter_state(self, name: str, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for i, p in enumerate(self.trainable_parameters(name)):
                p.copy_(state[str(i)])

    def train(self, mode: bool = True) -> AdapterModel:
        """Train mode for adapters and heads; the frozen encoder keeps its dropout off unless `base_dropout`.

        Dropout inside a frozen base cost a fifth of a CPU training step (random masks) and measured no better:
        SST-2 and TREC accuracy were equal or higher without it (docs/defaults.md). The head's dropout stays.
        """
        super().train(mode)
        if mode and not self.base_dropout:
            self.encoder.eval()
        return self

    def frozen_linears_to(self, dtype: torch.dtype) -> None:
        """Store the frozen encoder's linear layers in `dtype` (bf16 for mixed-precision training).

        Autocast would otherwise cast every frozen weight again at each step (it caches only trainable ones):
        the same numbers, computed once. Adapter and head weights stay fp32.
        """
        for module in self.encoder.modules():
            if type(module) is nn.Linear and not module.weight.requires_grad:
                module.to(dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs) -> torch.Tensor:
        """Logits of the active adapter's head."""
        if self.active is None:
            raise ConfigError("No adapter is active.")
        if self.adapters[self.active].method == "ia3":
            return self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        return self.heads[self.active](hidden[:, 0])
