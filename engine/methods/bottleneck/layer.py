"""The bottleneck adapter module and the residual maths around it (AdapterHub `seq_bn`/`double_seq_bn`)."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "swish": nn.SiLU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
}


class PHMLinear(nn.Module):
    """AdapterHub's PHM layer (Compacter) with its defaults: y = x·M + b, M = Σ_j kron(S_j, W_left[j]·W_right[j]).

    S (n × n × n) is one rule per adapter, shared by all its PHM layers: it is held here by reference, not
    registered (the adapter registers it once, as AdapterHub saves it once). W_left, W_right: xavier-normal per
    slice (AdapterHub's "glorot-uniform" setting draws normal), b zero. M is in × out: not transposed as in
    nn.Linear.
    """

    def __init__(self, in_features: int, out_features: int, rule: nn.Parameter, rank: int = 1) -> None:
        super().__init__()
        n = rule.shape[0]
        self.W_left = nn.Parameter(torch.empty(n, in_features // n, rank))
        self.W_right = nn.Parameter(torch.empty(n, rank, out_features // n))
        self.b = nn.Parameter(torch.zeros(out_features))
        for weights in (self.W_left, self.W_right):
            for j in range(n):
                nn.init.xavier_normal_(weights.data[j])
        self.__dict__["rule"] = rule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rule = self.__dict__["rule"]
        blocks = torch.bmm(self.W_left, self.W_right)  # (n, in/n, out/n)
        n, p, q = blocks.shape
        matrix = (rule[:, :, None, :, None] * blocks[:, None, :, None, :]).reshape(n, n * p, n * q).sum(0)
        return torch.matmul(x, matrix) + self.b


class Bottleneck(nn.Module):
    """A(z) = W_up f(W_down z + b_down) + b_up, initialised like AdapterHub ("bert"; "mam_adapter" if parallel).

    Module names (`adapter_down.0`, `adapter_up`) are AdapterHub's, so state-dict keys match its files.
    `ln_before` selects the Pfeiffer residual (adapter reads LN(h + r)) over the Houlsby one (reads h);
    `parallel` puts it beside the sub-layer instead: LN(h + s·A(r) + r), reading the sub-layer's input.
    """

    def __init__(self, hidden_size: int, bottleneck_size: int, non_linearity: str, ln_before: bool,
                 parallel: bool = False, scaling: float = 1.0, phm_rule: nn.Parameter | None = None) -> None:
        super().__init__()
        self.ln_before, self.parallel, self.scaling = ln_before, parallel, scaling
        if phm_rule is not None:  # Compacter: both projections are PHM layers ("bert" init leaves them alone)
            self.adapter_down = nn.Sequential(PHMLinear(hidden_size, bottleneck_size, phm_rule),
                                              ACTIVATIONS[non_linearity]())
            self.adapter_up = PHMLinear(bottleneck_size, hidden_size, phm_rule)
            return
        self.adapter_down = nn.Sequential(nn.Linear(hidden_size, bottleneck_size), ACTIVATIONS[non_linearity]())
        self.adapter_up = nn.Linear(bottleneck_size, hidden_size)
        if parallel:  # W_down keeps PyTorch's default (kaiming-uniform), the rest is zero: starts as the base
            nn.init.zeros_(self.adapter_down[0].bias)
            nn.init.zeros_(self.adapter_up.weight)
            nn.init.zeros_(self.adapter_up.bias)
        else:
            for linear in (self.adapter_down[0], self.adapter_up):
                nn.init.normal_(linear.weight, mean=0.0, std=0.02)
                nn.init.zeros_(linear.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.adapter_up(self.adapter_down(z))

    def residual(self, h: torch.Tensor, r: torch.Tensor, layer_norm: nn.Module) -> torch.Tensor:
        """The sub-layer's output with this adapter: h is the sub-layer output, r its input."""
        if self.parallel:
            return layer_norm(h + self.scaling * self(r) + r)
        z = layer_norm(h + r) if self.ln_before else h
        return layer_norm(h + self(z) + r)


class AdapterSlot(nn.Module):
    """The named adapters at one place in the encoder, and the fusion layers over some of them
    (engine/methods/fusion); at most one is active, or (a mixed batch) each of several takes its own rows."""

    holds_adapters = True  # nothing inside is a target of LoRA or IA3 (engine/methods/base.py `adapter_owned`)

    def __init__(self) -> None:
        super().__init__()
        self.adapters = nn.ModuleDict()
        self.fusions = nn.ModuleDict()  # name -> a layer with `members` (adapter names) and `residual`
        self.active: str | None = None
        self.rows: dict[str, torch.Tensor] | None = None

    def _residual(self, name: str, h: torch.Tensor, r: torch.Tensor, layer_norm: nn.Module) -> torch.Tensor | None:
        if name in self.fusions:
            fusion = self.fusions[name]
            return fusion.residual(h, r, layer_norm, [self.adapters[m] for m in fusion.members])
        if name in self.adapters:
            return self.adapters[name].residual(h, r, layer_norm)
        return None

    def forward(self, h: torch.Tensor, r: torch.Tensor, layer_norm: nn.Module) -> torch.Tensor:
        if self.rows is not None:
            out = layer_norm(h + r)  # row-wise: the rows of other adapters get exactly the plain residual
            for name, rows in self.rows.items():
                if name in self.adapters or name in self.fusions:
                    out = out.index_copy(0, rows, self._residual(name, h[rows], r[rows], layer_norm))
            return out
        out = self._residual(self.active, h, r, layer_norm) if self.active is not None else None
        return layer_norm(h + r) if out is None else out
