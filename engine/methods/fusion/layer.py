"""AdapterHub's fusion layer (`BertFusion`, "dynamic"): attention over the fused adapters' outputs, per token.

With FFN (or attention) output h and the block's residual r, x = LN(h + r) for Pfeiffer-style adapters (h for
Houlsby-style: the last fused adapter decides, as in AdapterHub), u_n the n-th adapter's up-projection:
q = W_q x + b_q, k_n = W_k u_n + b_k, v_n = W_v u_n, a = softmax_n(q·k_n) (no 1/√H, temperature 1; dropout on
the scores while training), y = LN(Σ_n a_n v_n + h + r).
"""

from __future__ import annotations

import torch
from torch import nn


class FusionLayer(nn.Module):
    """Query, key and value as AdapterHub names them (its saved keys match); W_q, W_k ~ N(0, 0.02) with zero
    biases, W_v the identity with 1e-6 off the diagonal and no bias."""

    def __init__(self, hidden_size: int, members: list[str], dropout: float) -> None:
        super().__init__()
        self.members = list(members)  # the fused adapters' names in the slot
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size, bias=False)
        for linear in (self.query, self.key):
            nn.init.normal_(linear.weight, mean=0.0, std=0.02)
            nn.init.zeros_(linear.bias)
        with torch.no_grad():
            self.value.weight.fill_(1e-6).fill_diagonal_(1.0)
        self.dropout = nn.Dropout(dropout)

    def residual(self, h: torch.Tensor, r: torch.Tensor, layer_norm: nn.Module, adapters: list[nn.Module]
                 ) -> torch.Tensor:
        x = layer_norm(h + r) if adapters[-1].ln_before else h
        ups = torch.stack([adapter(x) * adapter.scaling for adapter in adapters], dim=2)  # (B, T, N, H)
        scores = (self.query(x).unsqueeze(2) @ self.key(ups).transpose(-2, -1)).squeeze(2)  # (B, T, N)
        weights = self.dropout(scores).softmax(-1)
        return layer_norm((weights.unsqueeze(2) @ self.value(ups)).squeeze(2) + h + r)
