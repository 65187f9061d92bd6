"""Prompt tuning as PEFT computes it for a sequence classifier: N learned vectors before the word embeddings.

inputs_embeds = [P ; word_embeddings(input_ids)], the attention mask gets N ones before it and token types N
zeros; the model then adds positions 0..N+T-1, so the first virtual token is what the pooler reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
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


def mixed_prompt_inputs(prompts: list[tuple[Prompt, torch.Tensor]], word_embeddings: nn.Module,
                        batch: dict[str, torch.Tensor]) -> dict:
    """`prompt_inputs` for a batch whose rows have their own prompts (or none): row r is [P_r ; its tokens],
    padded after them, so every row's positions start at 0 as when it runs alone; as wide as the longest row."""
    input_ids = batch["input_ids"]
    size, width = input_ids.shape
    longest = max(p.embedding.shape[0] for p, _ in prompts)
    embeds = word_embeddings(input_ids)
    mask = batch.get("attention_mask")
    mask = mask if mask is not None else input_ids.new_ones(size, width)
    types = batch.get("token_type_ids")
    out_embeds = embeds.new_zeros(size, longest + width, embeds.shape[-1])
    out_mask = mask.new_zeros(size, longest + width)
    out_types = types.new_zeros(size, longest + width) if types is not None else None
    start = input_ids.new_zeros(size)  # where each row's tokens begin
    for prompt, rows in prompts:
        n = prompt.embedding.shape[0]
        out_embeds[rows, :n] = prompt.embedding.to(embeds.dtype)
        out_mask[rows, :n] = 1
        start[rows] = n
    columns = start[:, None] + torch.arange(width, device=input_ids.device)  # (B, T): each token's new place
    out_embeds.scatter_(1, columns[..., None].expand(-1, -1, embeds.shape[-1]), embeds)
    out_mask.scatter_(1, columns, mask)
    if out_types is not None:
        out_types.scatter_(1, columns, types)
    used = int((start + mask.sum(1)).max())  # the longest row with its prompt; the rest is padding for all
    out = {"inputs_embeds": out_embeds[:, :used], "attention_mask": out_mask[:, :used]}
    if out_types is not None:
        out["token_type_ids"] = out_types[:, :used]
    return out
