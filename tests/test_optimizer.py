"""engine.optimizer.AdamW against torch.optim.AdamW, the reference it replaces, and what replacing it buys."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from engine.optimizer import AdamW
from tests.conftest import ROOT

SHAPES = [(24, 32), (24,), (32, 24), (32,), (2, 32)]


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in SHAPES]


def _grads(params: list[torch.nn.Parameter], step: int) -> None:
    gen = torch.Generator().manual_seed(100 + step)
    for i, p in enumerate(params):
        # the last weight has no gradient on odd steps: both keep its weights and moments as they are
        p.grad = None if i == len(params) - 1 and step % 2 else torch.randn(p.shape, generator=gen)


def _lr(step: int) -> float:
    return 1e-2 * min(1.0, (step + 1) / 5) * (30 - step) / 30  # warm-up then decay, as the training schedule


@pytest.mark.parametrize("fused", [True, False])
def test_steps_equal_torch_adamw(fused) -> None:
    ours, theirs = _params(), _params()
    mine = AdamW(ours, weight_decay=0.01, fused=fused)
    reference = torch.optim.AdamW(theirs, lr=_lr(0), weight_decay=0.01, fused=fused)
    for step in range(25):
        _grads(ours, step)
        _grads(theirs, step)
        mine.step(_lr(step))
        for group in reference.param_groups:
            group["lr"] = _lr(step)
        reference.step()
        mine.zero_grad()
        reference.zero_grad()
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_a_torch_adamw_checkpoint_resumes_here_as_it_would_in_torch() -> None:
    """Checkpoints written while training used torch.optim.AdamW hold its state_dict: a job resumed after an
    upgrade goes on with the same moments and step counts."""
    ours, theirs = _params(), _params()
    reference = torch.optim.AdamW(theirs, lr=_lr(0), weight_decay=0.01, fused=True)
    for step in range(6):
        _grads(theirs, step)
        reference.param_groups[0]["lr"] = _lr(step)
        reference.step()
    with torch.no_grad():
        for a, b in zip(ours, theirs, strict=True):
            a.copy_(b)
    mine = AdamW(ours, weight_decay=0.01)
    mine.load_state_dict(reference.state_dict())
    for step in range(6, 12):
        for params in (ours, theirs):
            _grads(params, step)
        mine.step(_lr(step))
        reference.param_groups[0]["lr"] = _lr(step)
        reference.step()
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_own_state_dict_round_trip_and_a_mismatch_is_refused() -> None:
    first, second = _params(), _params()
    a = AdamW(first, weight_decay=0.01)
    for step in range(4):
        _grads(first, step)
        a.step(_lr(step))
    b = AdamW(second, weight_decay=0.01)
    with torch.no_grad():
        for x, y in zip(second, first, strict=True):
            x.copy_(y)
    b.load_state_dict(a.state_dict())
    for params, opt in ((first, a), (second, b)):
        _grads(params, 4)
        opt.step(_lr(4))
    for x, y in zip(first, second, strict=True):
        assert torch.equal(x, y)
    with pytest.raises(ValueError, match="for 5 weights, this adapter has 2"):
        AdamW(_params()[:2]).load_state_dict(a.state_dict())


def test_training_never_imports_torchs_compiler(tiny_bert, sentiment_csv, tmp_path) -> None:
    """torch.optim imports torch._dynamo (about 1 s a process); a whole training run, calibration included,
    must not."""
    script = textwrap.dedent(f"""
        import sys
        from engine.training import TrainConfig, train
        train(TrainConfig(data={str(sentiment_csv)!r}, base_model={str(tiny_bert)!r}, method="pfeiffer",
                          output={str(tmp_path / "ad")!r}, epochs=1, batch_size=8))
        print(sorted(m for m in sys.modules if m.startswith("torch._dynamo")))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
