"""AdamW for the few weights an adapter trains: torch's own fused AdamW kernel, called without `torch.optim`.

Building or stepping any `torch.optim` optimizer imports torch's compiler (`torch._dynamo`): about 1 s of every
training process on a 2-core CPU, a twentieth of a 4,000-sentence job (docs/benchmarks.md). The maths is
`torch.optim.AdamW`'s step for step (tests/test_optimizer.py), and `state_dict()` keeps its layout, so a
checkpoint written while training used `torch.optim.AdamW` resumes here.
"""

from __future__ import annotations

import math

import torch
from torch import nn

FUSED_DEVICES = ("cpu", "cuda")  # where torch has the fused kernel; elsewhere the same maths in plain ops


class AdamW:
    """Decoupled weight decay, bias-corrected moments; the learning rate is passed to each `step` (the schedule
    lives with the training loop, which knows the step it is on, also after a resume)."""

    def __init__(self, params: list[nn.Parameter], weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, fused: bool | None = None) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("AdamW got no parameters to train")
        self.weight_decay, self.betas, self.eps = weight_decay, betas, eps
        self.fused = self.params[0].device.type in FUSED_DEVICES if fused is None else fused
        # torch.optim's state: a float32 step count per parameter, on its device (the fused kernel reads it there)
        self.steps = [torch.zeros((), device=p.device) for p in self.params]
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.lr = 0.0

    @torch.no_grad()
    def step(self, lr: float) -> None:
        """One update of every parameter that has a gradient (those without one keep their weights and state)."""
        self.lr = lr
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        params, grads = [self.params[i] for i in live], [self.params[i].grad for i in live]
        avgs, sqs = [self.exp_avg[i] for i in live], [self.exp_avg_sq[i] for i in live]
        steps = [self.steps[i] for i in live]
        beta1, beta2 = self.betas
        for s in steps:
            s.add_(1)
        if self.fused:
            torch._fused_adamw_(params, grads, avgs, sqs, [], steps, lr=lr, beta1=beta1, beta2=beta2,
                                weight_decay=self.weight_decay, eps=self.eps, amsgrad=False, maximize=False)
            return
        for p, g, m, v, s in zip(params, grads, avgs, sqs, steps, strict=True):
            t = float(s)
            p.mul_(1 - lr * self.weight_decay)
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (v.sqrt() / math.sqrt(1 - beta2 ** t)).add_(self.eps)
            p.addcdiv_(m, denom, value=-lr / (1 - beta1 ** t))

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict:
        """torch.optim.AdamW's layout: per-parameter state keyed by position, and one parameter group."""
        state = {i: {"step": s.clone(), "exp_avg": m.clone(), "exp_avg_sq": v.clone()}
                 for i, (s, m, v) in enumerate(zip(self.steps, self.exp_avg, self.exp_avg_sq, strict=True))
                 if float(s) > 0}
        group = {"lr": self.lr, "betas": self.betas, "eps": self.eps, "weight_decay": self.weight_decay,
                 "params": list(range(len(self.params)))}
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, saved: dict) -> None:
        """Moments and step counts from `state_dict()` here or from `torch.optim.AdamW`'s, same parameters."""
        if len(saved["param_groups"][0]["params"]) != len(self.params):
            raise ValueError(f"the saved optimizer state is for {len(saved['param_groups'][0]['params'])} "
                             f"weights, this adapter has {len(self.params)}")
        for i, p in enumerate(self.params):
            entry = saved["state"].get(i)
            if entry is None:
                continue
            self.steps[i] = torch.as_tensor(entry["step"], dtype=torch.float32, device=p.device).clone()
            self.exp_avg[i] = entry["exp_avg"].to(p.device, p.dtype).clone()
            self.exp_avg_sq[i] = entry["exp_avg_sq"].to(p.device, p.dtype).clone()
