"""Every head reads only the first token, so the last layer's feed-forward block runs on that token alone.

BERT's pooler, AdapterHub's head and the RoBERTa, ELECTRA and DistilBERT classifiers all take position 0 of the
last hidden state. Attention in the last layer still reads every token; only the feed-forward block (two thirds
of a layer's matrix work) and what follows it are cut to one position, which changes no logit. In engine/bert_model.py's
layer only position 0 attends, so its query and the attention's output block (with its adapters) are cut too.
"""

from __future__ import annotations

import types

import torch
from torch import nn


def _first_token_feed_forward(self: nn.Module, attention_output: torch.Tensor) -> torch.Tensor:
    return type(self).feed_forward_chunk(self, attention_output[:, :1])


def last_layer(encoder: nn.Module) -> nn.Module | None:
    """The encoder's last transformer layer (BERT-style `feed_forward_chunk` or DistilBERT's block), if known."""
    found = None
    for module in encoder.modules():
        if hasattr(type(module), "feed_forward_chunk") or type(module).__name__ == "TransformerBlock":
            found = module
    return found


def set_first_token_only(encoder: nn.Module, enabled: bool = True) -> bool:
    """Cut the last layer's feed-forward block to the first token (or restore it); False if the layer is unknown."""
    layer = last_layer(encoder)
    if layer is None:
        return False
    layer.first_token_only = enabled  # read by the DistilBERT block AdapterLab patches in, and engine/bert_model.py's
    if hasattr(type(layer), "feed_forward_chunk") and not hasattr(type(layer), "first_token_only"):
        if enabled:
            layer.feed_forward_chunk = types.MethodType(_first_token_feed_forward, layer)
        else:
            layer.__dict__.pop("feed_forward_chunk", None)
    return True
