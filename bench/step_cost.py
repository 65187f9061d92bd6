"""What one training step costs on this CPU by batch shape, and what one frozen product costs by rows.

    python bench/step_cost.py                      # Pfeiffer, the precision the engine would pick
    python bench/step_cost.py --method houlsby --precision fp32
    python bench/step_cost.py --compare-attention  # bf16 attention written out against SDPA's math kernel

A step of 1 row x 4 tokens is almost all fixed cost (every frozen weight is read, forward and backward, however
few the rows); 16 x 16 is an SST-2 step; the products show how bf16 and fp32 scale with the rows. Median of 5
rounds of 20 steps, after 10 warm-up steps per shape. What it showed per CPU is in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = ((1, 4), (16, 16), (16, 32), (16, 64))
PRODUCTS = ((4, 1536, 384), (4, 384, 384), (64, 1536, 384), (256, 1536, 384))  # rows, out, in


def _median_ms(fn, calls: int) -> float:
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - started) / calls * 1000)
    return statistics.median(rounds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="pfeiffer")
    p.add_argument("--precision", default=None, help="fp32, bf16 or bf16-keep-kernels (default: the engine's pick)")
    p.add_argument("--compare-attention", action="store_true",
                   help="time each step shape also with SDPA's math kernel instead of the attention bf16 training "
                        "writes out, the two interleaved round by round")
    a = p.parse_args()
    if a.precision:
        os.environ["ADAPTERLAB_PRECISION"] = a.precision
    import torch
    import torch.nn.functional as F

    from engine import bert_model
    from engine.adapter_model import AdapterModel
    from engine.base_models import load_config, resolve_base_model
    from engine.optimizer import AdamW
    from engine.precision import choose, cpu_model
    from engine.training import attention_kernel

    base = resolve_base_model(None)
    precision = choose(torch.device("cpu"), base, load_config(base))
    precision.apply()
    torch.manual_seed(0)
    model = AdapterModel(None, mmap=not precision.bf16)
    model.add_adapter("a", a.method, ["a", "b"])
    params = model.train_adapter("a")
    if precision.bf16:
        model.frozen_linears_to(torch.bfloat16)
    optimizer = AdamW(params)
    model.train()

    def step(rows: int, width: int) -> None:
        ids = torch.randint(1000, 30000, (rows, width))
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision.bf16 else contextlib.nullcontext()
        with autocast, attention_kernel(model.device, width):
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids))
        F.cross_entropy(logits.float(), torch.zeros(rows, dtype=torch.long)).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step(1e-4)
        optimizer.zero_grad()

    print(f"{cpu_model()}, {torch.get_num_threads()} threads, {a.method}, {precision.describe()}")
    written_out = bert_model.MATH_ATTENTION_WIDTH

    def sdpa_step(rows: int, width: int) -> None:
        bert_model.MATH_ATTENTION_WIDTH = 0
        step(rows, width)
        bert_model.MATH_ATTENTION_WIDTH = written_out

    for shape in SHAPES:
        for _ in range(10):
            step(*shape)
            if a.compare_attention:
                sdpa_step(*shape)
        if not a.compare_attention:
            print(f"step {shape[0]:>2} rows x {shape[1]:>2} tokens: {_median_ms(lambda s=shape: step(*s), 20):6.1f} ms")
            continue
        ours, sdpa = [], []
        for _ in range(5):
            ours.append(_median_ms(lambda s=shape: step(*s), 4))
            sdpa.append(_median_ms(lambda s=shape: sdpa_step(*s), 4))
        print(f"step {shape[0]:>2} rows x {shape[1]:>2} tokens: {statistics.median(ours):6.1f} ms, "
              f"through SDPA's math kernel {statistics.median(sdpa):6.1f} ms")
    for dtype in (torch.bfloat16, torch.float32):
        for rows, out, inp in PRODUCTS:
            x, w = torch.randn(rows, inp, dtype=dtype), torch.randn(out, inp, dtype=dtype)
            ms = _median_ms(lambda x=x, w=w: F.linear(x, w), 200)
            print(f"{str(dtype)[6:]:>8} product {rows:>3} x {inp} -> {out}: {ms * 1000:7.1f} us, "
                  f"{2 * rows * out * inp / ms / 1e6:5.0f} GFLOP/s")


if __name__ == "__main__":
    main()
