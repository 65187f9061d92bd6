"""AdapterHub's prefix tuning: learned keys and values put before every layer's own, in its self-attention
(BERT-style attention, DeBERTa-v2/v3's disentangled one, ModernBERT's rotary one).

K' = [Pk_i ; K], V' = [Pv_i ; V] for layer i; queries are unchanged, so the output keeps its length. The prefixes
come from one module for the whole model: a reparametrisation MLP over P embeddings while training (AdapterHub
evaluates it on every forward), or the flat prefixes themselves (what it computes, saved once).
"""

from __future__ import annotations

import math
import sys
import types
from typing import NamedTuple

import torch
from torch import nn

from engine import bert_model

ACTIVE = "_adapterlab_prefix"


class Prefixes(nn.Module):
    """O ∈ R^{P × 2LH}: MLP: tanh(E W1ᵀ + b1) W2ᵀ + b2 over E = wte(0..P-1); flat: one parameter (P·2LH).
    Module names are AdapterHub's (`wte`, `control_trans.0`, `control_trans.2`), so its keys match."""

    def __init__(self, prefix_length: int, layers: int, hidden: int, bottleneck: int, flat: bool,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.prefix_length, self.layers, self.hidden, self.flat = prefix_length, layers, hidden, flat
        if flat:
            self.control_trans = nn.Parameter(torch.randn(prefix_length * 2 * layers * hidden))
        else:
            self.wte = nn.Embedding(prefix_length, hidden)
            self.control_trans = nn.Sequential(nn.Linear(hidden, bottleneck), nn.Tanh(),
                                               nn.Linear(bottleneck, 2 * layers * hidden))
        self.dropout = nn.Dropout(dropout)

    def forward(self) -> torch.Tensor:
        """All layers' prefixes, (2L, P, H): slot 2i holds layer i's keys, 2i+1 its values."""
        if self.flat:
            out = self.control_trans.view(self.prefix_length, -1)
        else:
            out = self.control_trans(self.wte.weight)
        return self.dropout(out).view(self.prefix_length, 2 * self.layers, self.hidden).transpose(0, 1)

    def flattened(self) -> torch.Tensor:
        """The prefixes as AdapterHub's flat `control_trans` (its `eject_prefix_tuning`, without dropout)."""
        if self.flat:
            return self.control_trans.detach().clone()
        return self.control_trans(self.wte.weight).detach().flatten().clone()


class LayerPrefix(NamedTuple):
    """One layer's prefix: keys and values (P, H) for every row, or (B, P, H) per row in a mixed batch, where
    `visible` (B, P) says which of a row's P columns are its own (a shorter prefix, or none, is padded)."""

    keys: torch.Tensor
    values: torch.Tensor
    visible: torch.Tensor | None = None


def _with_prefix(mask: torch.Tensor | None, length: int, visible: torch.Tensor | None, dtype: torch.dtype,
                 tokens: int) -> torch.Tensor | None:
    """The attention mask with `length` key columns first (True for a bool mask, 0 for additive): all visible,
    or per row as `visible` says. No mask (no padding) stays none while every column is visible."""
    if visible is None:
        if mask is None:
            return None
        seen = torch.ones if mask.dtype == torch.bool else torch.zeros
        return torch.cat([seen(*mask.shape[:-1], length, dtype=mask.dtype, device=mask.device), mask], dim=-1)
    if mask is None:  # additive, as every attention kernel takes it
        mask = torch.zeros(visible.shape[0], 1, 1, tokens, dtype=dtype, device=visible.device)
    columns = visible[:, None, None, :]
    if mask.dtype != torch.bool:
        columns = torch.zeros((), dtype=mask.dtype, device=mask.device).masked_fill(~columns,
                                                                                       torch.finfo(mask.dtype).min)
    shape = torch.broadcast_shapes(mask.shape[:-1], columns.shape[:-1])
    return torch.cat([columns.expand(*shape, length), mask.expand(*shape, mask.shape[-1])], dim=-1)


def _attention(module: nn.Module):
    """The attention function `module`'s own forward uses: the one of engine/bert_model.py's modules, else the
    one transformers' interface picks for its config."""
    source = sys.modules[type(module).__module__]
    if source is bert_model:
        return bert_model.eager_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS  # loaded with the model by then

    return ALL_ATTENTION_FUNCTIONS.get_interface(module.config._attn_implementation, source.eager_attention_forward)


def _forward(self: nn.Module, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
             cache=None, **kwargs):
    """BERT-family self-attention (transformers 5, engine/bert_model.py) with the active prefix's keys and values
    before its own; `query_states` (engine/bert_model.py's last layer): the positions that attend, if not all."""
    prefix = self.__dict__.get(ACTIVE)
    if prefix is None:
        return type(self).forward(self, hidden_states, attention_mask, cache=cache, **kwargs)
    keys, values, visible = prefix
    queries = kwargs.pop("query_states", None)
    queries = hidden_states if queries is None else queries
    size, length = hidden_states.shape[0], keys.shape[-2]

    def heads(x: torch.Tensor) -> torch.Tensor:  # (P, H) or (B, P, H) -> (NH, P, HD) or (B, NH, P, HD)
        return x.view(*x.shape[:-1], -1, self.attention_head_size).transpose(-3, -2)

    query, key, value = heads(self.query(queries)), heads(self.key(hidden_states)), heads(self.value(hidden_states))
    key = torch.cat([heads(keys).expand(size, -1, -1, -1).to(key.dtype), key], dim=2)
    value = torch.cat([heads(values).expand(size, -1, -1, -1).to(value.dtype), value], dim=2)
    mask = _with_prefix(attention_mask, length, visible, query.dtype, hidden_states.shape[1])
    out, weights = _attention(self)(self, query, key, value, mask, dropout=self.dropout.p if self.training else 0.0,
                                    scaling=self.scaling, **kwargs)
    return out.reshape(*queries.shape[:-1], -1).contiguous(), weights


def _deberta_forward(self: nn.Module, hidden_states: torch.Tensor, attention_mask: torch.Tensor,
                     output_attentions: bool = False, query_states: torch.Tensor | None = None,
                     relative_pos: torch.Tensor | None = None, rel_embeddings: torch.Tensor | None = None):
    """DeBERTa-v2/v3's disentangled self-attention with the active prefix's keys and values before its own, as
    AdapterHub 1.3 computes it: the relative-position terms (c2p, p2c) are those of the text's own keys, and the
    prefix columns get none (zeros)."""
    prefix = self.__dict__.get(ACTIVE)
    if prefix is None:
        return type(self).forward(self, hidden_states, attention_mask, output_attentions, query_states,
                                  relative_pos, rel_embeddings)
    keys, values, visible = prefix
    size, tokens, length = hidden_states.shape[0], hidden_states.shape[1], keys.shape[-2]
    heads = self.num_attention_heads

    def per_head(x: torch.Tensor) -> torch.Tensor:  # (P, H) or (B, P, H) -> (B * NH, P, HD)
        x = x.view(*x.shape[:-1], heads, -1).transpose(-3, -2).expand(size, -1, -1, -1)
        return x.reshape(size * heads, length, -1)

    query = self.transpose_for_scores(self.query_proj(hidden_states if query_states is None else query_states), heads)
    key = self.transpose_for_scores(self.key_proj(hidden_states), heads)
    value = self.transpose_for_scores(self.value_proj(hidden_states), heads)
    scale_factor = 1 + ("c2p" in self.pos_att_type) + ("p2c" in self.pos_att_type)
    scale = math.sqrt(query.size(-1) * scale_factor)
    scores = torch.bmm(query, torch.cat([per_head(keys).to(key.dtype), key], dim=1).transpose(-1, -2) / scale)
    if self.relative_attention:
        relative = self.disentangled_attention_bias(query, key, relative_pos, self.pos_dropout(rel_embeddings),
                                                    scale_factor)
        scores = torch.cat([scores[..., :length], scores[..., length:] + relative], dim=-1)
    scores = scores.view(size, heads, tokens, length + tokens)
    columns = (torch.ones(size, 1, tokens, length, dtype=torch.bool, device=scores.device) if visible is None
               else visible[:, None, None, :].expand(size, 1, tokens, length))
    mask = torch.cat([columns, attention_mask.bool().expand(size, 1, tokens, tokens)], dim=-1)
    probs = self.dropout(scores.masked_fill(~mask, torch.finfo(query.dtype).min).softmax(-1))
    context = torch.bmm(probs.view(size * heads, tokens, -1), torch.cat([per_head(values).to(value.dtype), value], 1))
    context = context.view(size, heads, tokens, -1).permute(0, 2, 1, 3).reshape(size, tokens, -1)
    return context, (probs if output_attentions else None)


def _rotary_forward(self: nn.Module, hidden_states: torch.Tensor, position_embeddings=None,
                    attention_mask: torch.Tensor | None = None, **kwargs):
    """ModernBERT's attention (one Wqkv, rotary positions) with the active prefix's keys and values before its
    own. The prefix keys are not rotated: they have no position, as in AdapterHub's rotary models (Llama), which
    put the prefix on the keys after the rotation."""
    prefix = self.__dict__.get(ACTIVE)
    if prefix is None:
        return type(self).forward(self, hidden_states, position_embeddings, attention_mask, **kwargs)
    keys, values, visible = prefix
    size, length = hidden_states.shape[0], keys.shape[-2]

    def heads(x: torch.Tensor) -> torch.Tensor:  # (P, H) or (B, P, H) -> (B, NH, P, HD)
        return x.view(*x.shape[:-1], -1, self.head_dim).transpose(-3, -2).expand(size, -1, -1, -1)

    module = sys.modules[type(self).__module__]
    qkv = self.Wqkv(hidden_states).view(*hidden_states.shape[:-1], 3, -1, self.head_dim)
    query, key, value = (x.transpose(1, 2) for x in qkv.unbind(dim=-3))
    query, key = module.apply_rotary_pos_emb(query, key, *position_embeddings, unsqueeze_dim=1)
    key = torch.cat([heads(keys).to(key.dtype), key], dim=2)
    value = torch.cat([heads(values).to(value.dtype), value], dim=2)
    mask = _with_prefix(attention_mask, length, visible, query.dtype, hidden_states.shape[1])
    out, weights = _attention(self)(self, query, key, value, mask,
                                    dropout=self.attention_dropout if self.training else 0.0,
                                    scaling=self.head_dim**-0.5, sliding_window=self.sliding_window,
                                    deterministic=self.deterministic_flash_attn, **kwargs)
    return self.out_drop(self.Wo(out.reshape(*hidden_states.shape[:-1], -1).contiguous())), weights


def _is_bert_attention(module: nn.Module) -> bool:
    return type(module).__name__.endswith("SelfAttention") and all(
        hasattr(module, a) for a in ("query", "key", "value", "attention_head_size"))


def self_attentions(encoder: nn.Module) -> list[nn.Module]:
    """The encoder's self-attention modules in layer order (BERT-style, DeBERTa-v2's disentangled one, ModernBERT's
    rotary one), found and patched once to take a prefix (each forward asks for them twice)."""
    found = encoder.__dict__.get("_adapterlab_self_attentions")
    if found is None:
        patches = {"DisentangledSelfAttention": _deberta_forward, "ModernBertAttention": _rotary_forward}
        found = [m for m in encoder.modules() if _is_bert_attention(m) or type(m).__name__ in patches]
        for module in found:
            forward = _forward if _is_bert_attention(module) else patches[type(module).__name__]
            module.forward = types.MethodType(forward, module)
            module.__dict__[ACTIVE] = None
        encoder.__dict__["_adapterlab_self_attentions"] = found
    return found


def set_prefixes(encoder: nn.Module, prefixes: torch.Tensor | None, visible: torch.Tensor | None = None) -> None:
    """Give layer i the keys prefixes[2i] and values prefixes[2i+1] (None: no prefix anywhere); per row in a
    mixed batch, where prefixes are (2L, B, P, H) and `visible` (B, P)."""
    for i, module in enumerate(self_attentions(encoder)):
        module.__dict__[ACTIVE] = None if prefixes is None else LayerPrefix(prefixes[2 * i], prefixes[2 * i + 1],
                                                                            visible)


def row_prefixes(size: int, own: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row prefixes (2L, B, P, H) and their visible columns (B, P) for a mixed batch of `size` rows, from
    each adapter's prefixes (2L, P_a, H) and rows; P is the longest, other rows' columns padded and hidden."""
    length = max(p.shape[1] for p, _ in own)
    first = own[0][0]
    out = first.new_zeros(first.shape[0], size, length, first.shape[2])
    visible = torch.zeros(size, length, dtype=torch.bool, device=first.device)
    for prefixes, rows in own:
        out[:, rows, : prefixes.shape[1]] = prefixes[:, None]
        visible[rows, : prefixes.shape[1]] = True
    return out, visible
