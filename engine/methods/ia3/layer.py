"""IA3 building blocks: one flat vector per adapter, and a wrapper that scales a frozen nn.Linear with its slice.

One adapter is one fp32 tensor (all layers' vectors concatenated), so loading an adapter is one allocation and the
optimizer sees one parameter; PEFT's per-layer ParameterDicts cost about 2.2x the weights instead.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class VectorSlice(NamedTuple):
    """Where one layer's vector lies in its adapter's flat parameter."""

    start: int
    size: int
    feedforward: bool  # scales the layer's input (PEFT shape (1, in)), else its output ((out, 1))

    @property
    def peft_shape(self) -> tuple[int, int]:
        return (1, self.size) if self.feedforward else (self.size, 1)


class IA3Vectors(nn.Module):
    """All of one adapter's IA3 vectors as one flat fp32 parameter `ia3_l`, initialised to 1 as in the paper."""

    def __init__(self, layout: dict[str, VectorSlice]) -> None:
        super().__init__()
        self.layout = layout  # module path in the backbone -> slice
        total = sum(s.size for s in layout.values())
        self.ia3_l = nn.Parameter(torch.ones(total))

    def vector(self, path: str) -> torch.Tensor:
        """Layer `path`'s vector: a view into the flat parameter (gradients flow back into it)."""
        s = self.layout[path]
        return self.ia3_l[s.start:s.start + s.size]


class _Active(NamedTuple):
    """The active adapter's vector for one layer. A tuple, so the module is not registered twice."""

    vectors: IA3Vectors
    path: str
    feedforward: bool


class IA3Linear(nn.Module):
    """A frozen nn.Linear scaled by the active IA3 adapter's vector l.

    Key/value-type targets: base(x) * l (l over out_features); feed-forward targets: base(x * l) (l over
    in_features). l is cast to the activation's dtype, so under bf16 autocast the activations stay bf16 (PEFT
    multiplies in fp32 and casts back). With no IA3 adapter active it is exactly the wrapped linear.
    """

    def __init__(self, base_layer: nn.Linear) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.in_features = base_layer.in_features
        self.out_features = base_layer.out_features
        self.active: _Active | None = None
        self.row_scales: tuple[torch.Tensor | None, torch.Tensor | None] | None = None  # (input, output)

    @property
    def weight(self) -> torch.Tensor:
        """The wrapped linear's weight, as PEFT's layers expose it: T5's feed-forward block reads its dtype."""
        return self.base_layer.weight

    def route(self, vectors: dict[str, tuple[IA3Vectors, torch.Tensor]] | None, path: str, size: int) -> None:
        """A mixed batch of `size` rows: each adapter's vector on its rows (`vectors`: name -> (vectors, rows)),
        1 on the others; None ends it."""
        if vectors is None:
            self.row_scales = None
            return
        scales: list[torch.Tensor | None] = [None, None]
        for adapter, rows in vectors.values():
            if path not in adapter.layout:
                continue
            which = 0 if adapter.layout[path].feedforward else 1
            if scales[which] is None:
                width = self.in_features if which == 0 else self.out_features
                scales[which] = adapter.ia3_l.new_ones(size, width)
            scales[which][rows] = adapter.vector(path)
        self.row_scales = (scales[0], scales[1])

    def activate(self, vectors: IA3Vectors | None, path: str) -> None:
        """Scale with `vectors`' slice for `path` (None, or an adapter without this layer: plain linear)."""
        self.active = (_Active(vectors, path, vectors.layout[path].feedforward)
                       if vectors is not None and path in vectors.layout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.row_scales is not None:
            return self._rows_forward(x, *self.row_scales)
        if self.active is None:
            return self.base_layer(x)
        scale = self.active.vectors.vector(self.active.path)
        if self.active.feedforward:
            return self.base_layer(x * scale.to(x.dtype))
        out = self.base_layer(x)
        return out * scale.to(out.dtype)

    def _rows_forward(self, x: torch.Tensor, before: torch.Tensor | None, after: torch.Tensor | None) -> torch.Tensor:
        def per_row(scale: torch.Tensor, like: torch.Tensor) -> torch.Tensor:  # (B, n) -> (B, 1.., n)
            return scale.view(scale.shape[0], *[1] * (like.dim() - 2), scale.shape[1]).to(like.dtype)

        out = self.base_layer(x if before is None else x * per_row(before, x))
        return out if after is None else out * per_row(after, out)

    def extra_repr(self) -> str:
        return "active=None" if self.active is None else f"feedforward={self.active.feedforward}"
