"""PyTorch peer of `pnpm bench transformer`: diffusers' own FluxTransformerBlock and FluxSingleTransformerBlock at
FLUX.1's full width (hidden 3072, 24 heads of 128, MLP 12288), random weights, on the CPU, in the precisions asked.

Run by bench/src/transformer.ts (`--peer`) with the reference venv's Python (test/reference/.venv, pinned versions):
    python bench/peer/flux_blocks.py --sizes 256,512 --precisions bf16,fp32 --reps 2
Prints one JSON object: {"torch": version, "threads": n, "rows": [{size, precision, double_block_ms, single_block_ms}]}.
The same shapes and token counts as ours: 256 text tokens + (size/16)^2 image tokens, batch 1; one warm-up run, then
the mean of `reps`. Never a test; the product never runs Python.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from diffusers.models.transformers.transformer_flux import FluxPosEmbed, FluxSingleTransformerBlock, FluxTransformerBlock

HIDDEN, HEADS, HEAD_DIM, TXT = 3072, 24, 128, 256


def rope(side: int):
    ids = torch.zeros(TXT + side * side, 3)
    r = torch.arange(side).repeat_interleave(side)
    c = torch.arange(side).repeat(side)
    ids[TXT:, 1] = r.float()
    ids[TXT:, 2] = c.float()
    return FluxPosEmbed(theta=10000, axes_dim=[16, 56, 56])(ids)


def timed(reps: int, fn) -> float:
    with torch.no_grad():
        fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) / reps * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--precisions", default="bf16,fp32")
    ap.add_argument("--reps", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    rows = []
    for prec in a.precisions.split(","):
        dtype = torch.bfloat16 if prec == "bf16" else torch.float32
        for size in (int(s) for s in a.sizes.split(",")):
            side = size // 16
            cos, sin = rope(side)
            pe = (cos.to(dtype), sin.to(dtype))
            img = torch.randn(1, side * side, HIDDEN, dtype=dtype)
            txt = torch.randn(1, TXT, HIDDEN, dtype=dtype)
            temb = torch.randn(1, HIDDEN, dtype=dtype)
            # one block on the device at a time, as ours
            double = FluxTransformerBlock(dim=HIDDEN, num_attention_heads=HEADS, attention_head_dim=HEAD_DIM).to(dtype).eval()
            d_ms = timed(a.reps, lambda: double(hidden_states=img, encoder_hidden_states=txt, temb=temb, image_rotary_emb=pe))
            del double
            single = FluxSingleTransformerBlock(dim=HIDDEN, num_attention_heads=HEADS, attention_head_dim=HEAD_DIM).to(dtype).eval()
            s_ms = timed(a.reps, lambda: single(hidden_states=img, encoder_hidden_states=txt, temb=temb, image_rotary_emb=pe))
            del single
            rows.append({"size": size, "precision": prec, "double_block_ms": d_ms, "single_block_ms": s_ms})
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}))


if __name__ == "__main__":
    main()
