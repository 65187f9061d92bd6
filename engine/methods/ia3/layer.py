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

    def activate(self, vectors: IA3Vectors | None, path: str) -> None:
        """Scale with `vectors`' slice for `path` (None, or an adapter without this layer: plain linear)."""
        self.active = (_Active(vectors, path, vectors.layout[path].feedforward)
                       if vectors is not None and path in vectors.layout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.active is None:
            return self.base_layer(x)
        scale = self.active.vectors.vector(self.active.path)
        if self.active.feedforward:
            return self.base_layer(x * scale.to(x.dtype))
        out = self.base_layer(x)
        return out * scale.to(out.dtype)

    def extra_repr(self) -> str:
        return "active=None" if self.active is None else f"feedforward={self.active.feedforward}"
