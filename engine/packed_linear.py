"""Frozen linears whose weights are packed once for oneDNN: faster fp32 inference on CPU.

PyTorch runs an fp32 `nn.Linear` on CPU through MKL's sgemm, which lays the weight out again at every call; for
the few rows of a one-sentence request that is most of the work. oneDNN's linear over a weight packed in advance
(the kernel `torch.compile` uses for frozen weights) gave the same numbers (|dy| ~ 1e-6) in less time at every
batch size measured, and a one-sentence forward of the bundled model ~1.3x faster (docs/benchmarks.md, REST
endpoint). The weight itself stays, for gradients (word attributions) and saving: the packed copy costs as much
memory again as the frozen linears, is used only where no gradient is recorded, and is made again when the
weight changes.
"""

from __future__ import annotations

import torch
from torch import nn


def available() -> bool:
    """Whether this PyTorch build has oneDNN and its packed-weight linear."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class PackedLinear(nn.Linear):
    """An `nn.Linear` (same parameters, state dict and hooks) that, on CPU in fp32 without autograd, multiplies
    by its packed weight."""

    _packed: torch.Tensor
    _packed_version: int

    def repack(self) -> None:
        with torch.inference_mode(False), torch.no_grad():
            self._packed = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), None)
        self._packed_version = self.weight._version

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (torch.is_grad_enabled() or x.dtype != torch.float32 or self.weight.dtype != torch.float32
                or x.device.type != "cpu" or self.weight.device.type != "cpu"):
            return super().forward(x)
        if self._packed_version != self.weight._version:  # changed in place since it was packed
            self.repack()
        return torch.ops.mkldnn._linear_pointwise(x, self._packed, self.bias, "none", [], "")


def pack_frozen_linears(model: nn.Module) -> int:
    """Turn every frozen fp32 `nn.Linear` of `model` on CPU into a `PackedLinear`, in place (the same module
    objects: wrappers and hooks other methods put on them stay); how many it packed."""
    if not available():
        return 0
    count = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if (type(module) is nn.Linear and not weight.requires_grad and weight.dtype == torch.float32
                and weight.device.type == "cpu"):
            module.__class__ = PackedLinear
            module.repack()
            count += 1
    return count
