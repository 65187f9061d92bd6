"""Classification heads: AdapterHub's for its formats, the architecture's own (as PEFT trains it) for the others."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn

from engine.base_models import DECODER_TYPES

if TYPE_CHECKING:
    from transformers import PretrainedConfig

# The sequence-classification head modules each architecture trains and saves with a PEFT-format adapter: all
# that lie between the encoder and the logits, so none stays at its random initialisation (DeBERTa's pooler and
# ModernBERT's head are not in their pretrained checkpoints).
HEAD_MODULES = {"distilbert": ["pre_classifier", "classifier"], "deberta-v2": ["pooler", "classifier"],
                "modernbert": ["head", "classifier"], "t5": ["classification_head"], "mt5": ["classification_head"],
                **{t: ["score"] for t in DECODER_TYPES}}


def head_modules(model_type: str) -> list[str]:
    return HEAD_MODULES.get(model_type, ["classifier"])


def init_std(config: PretrainedConfig) -> float:
    """The spread new head weights are drawn with: the model's initializer_range (T5 has none: 0.02, as BERT)."""
    return getattr(config, "initializer_range", 0.02)


def _init_linears(module: nn.Module, std: float) -> None:
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.normal_(sub.weight, mean=0.0, std=std)
            if sub.bias is not None:  # ModernBERT's head has none
                nn.init.zeros_(sub.bias)


def adapterhub_head(config: PretrainedConfig, num_labels: int, dropout: float | None = None) -> nn.Sequential:
    """AdapterHub's default classification head on the first token: Dropout, Linear, Tanh, Dropout, Linear.

    Indices 1 and 4 hold the weights, as in its `pytorch_model_head.bin` (`heads.NAME.1.weight`...).
    """
    p = dropout if dropout is not None else getattr(config, "hidden_dropout_prob", getattr(config, "dropout", 0.1))
    hidden = config.hidden_size
    head = nn.Sequential(nn.Dropout(p), nn.Linear(hidden, hidden), nn.Tanh(), nn.Dropout(p),
                         nn.Linear(hidden, num_labels))
    _init_linears(head, init_std(config))
    return head


def adapterhub_head_size(config: PretrainedConfig, num_labels: int) -> int:
    hidden = config.hidden_size
    return hidden * hidden + hidden + hidden * num_labels + num_labels


def task_head(backbone: nn.Module, module_names: list[str], num_labels: int) -> nn.ModuleDict:
    """Fresh copies of the sequence-classification model's head modules, sized for `num_labels`."""
    config = copy.copy(backbone.config)
    config.num_labels = num_labels
    head = nn.ModuleDict()
    for name in module_names:
        template = getattr(backbone, name)
        if isinstance(template, nn.Linear):
            out = num_labels if name == module_names[-1] else template.out_features  # the last gives the logits
            module: nn.Module = nn.Linear(template.in_features, out, bias=template.bias is not None)
        else:
            module = type(template)(config)
        _init_linears(module, init_std(config))
        head[name] = module
    return head


def task_head_size(skeleton: nn.Module, num_labels: int) -> int:
    """The task head's parameters for `num_labels`, from a (meta-device) skeleton of the task model."""
    modules = head_modules(skeleton.config.model_type)
    return sum(p.numel() for p in task_head(skeleton, modules, num_labels).parameters())


class RowHeads(nn.Module):
    """Stands in for one head module of the backbone in a mixed batch: each adapter's module on its own rows.

    Rows of no adapter here get zeros, and outputs narrower than the widest (fewer labels) are zero-padded on
    the right: the caller reads each row's own columns.
    """

    def __init__(self, modules: list[tuple[nn.Module, torch.Tensor]]) -> None:
        super().__init__()
        self.routes = modules

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [(module(x[rows]), rows) for module, rows in self.routes]
        width = max(o.shape[-1] for o, _ in outputs)
        first = outputs[0][0]
        out = first.new_zeros(x.shape[0], *first.shape[1:-1], width)
        for o, rows in outputs:
            out[rows, ..., : o.shape[-1]] = o
        return out
