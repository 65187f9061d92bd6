"""Prompt tuning as PEFT computes it for a sequence classifier: N learned vectors before the word embeddings.

inputs_embeds = [P ; word_embeddings(input_ids)], the attention mask gets N ones before it and token types N
zeros; the model then adds positions 0..N+T-1, so the first virtual token is what the pooler reads.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

PEFT_KEY = "prompt_embeddings"
HEAD_PREFIX = "base_model."  # PEFT saves a prompt-learning model's head as base_model.<module>.*


class Prompt(nn.Module):
    """The N × H virtual-token embeddings. Random: N(0, 1) as nn.Embedding; text: the text's word embeddings
    (special tokens included, as PEFT tokenises it), repeated and cut to N."""

    def __init__(self, num_virtual_tokens: int, word_embeddings: nn.Embedding,
                 tokenizer: PreTrainedTokenizerBase | None = None, init_text: str = "") -> None:
        super().__init__()
        hidden = word_embeddings.embedding_dim
        weight = torch.randn(num_virtual_tokens, hidden)
        if init_text and tokenizer is not None:
            ids = tokenizer(init_text)["input_ids"]
            ids = (ids * (num_virtual_tokens // len(ids) + 1))[:num_virtual_tokens]
            weight = word_embeddings.weight[torch.tensor(ids)].detach().float().cpu().clone()
        self.embedding = nn.Parameter(weight)


def prompt_inputs(prompt: Prompt, word_embeddings: nn.Module, batch: dict[str, torch.Tensor]) -> dict:
    """The backbone's keyword arguments with the prompt prepended to embeddings, mask and token types."""
    input_ids = batch["input_ids"]
    size, n = input_ids.shape[0], prompt.embedding.shape[0]
    embeds = word_embeddings(input_ids)
    out = {"inputs_embeds": torch.cat([prompt.embedding.to(embeds.dtype).expand(size, -1, -1), embeds], dim=1)}
    mask = batch.get("attention_mask")
    if mask is not None:
        out["attention_mask"] = torch.cat([mask.new_ones(size, n), mask], dim=1)
    types = batch.get("token_type_ids")
    if types is not None:
        out["token_type_ids"] = torch.cat([types.new_zeros(size, n), types], dim=1)
    return out
