"""Fixtures for packages/core/src/noise.ts: torch CPU-generator draws, bit for bit.

Writes test/fixtures/noise/noise.safetensors (every drawn tensor, F32 or BF16) and
test/fixtures/noise/cases.json (which generator / seed / draw sequence made each tensor).

torch picks its Box-Muller kernel by CPU capability: on x86-64 with AVX2 or AVX-512 the AVX2
kernel (avx_mathfun) runs; with ATEN_CPU_CAPABILITY=default (what aarch64 and old CPUs get) the
scalar libm kernel runs. The 'avx2' cases are drawn in this process (must be an AVX2+ machine),
the 'scalar' cases in a child process started with ATEN_CPU_CAPABILITY=default.

Run from the repo root:  test/reference/.venv/bin/python test/reference/gen_noise.py
Made with torch 2.15.0 (CPU), safetensors, numpy.
"""
import json
import os
import subprocess
import sys

import torch
from safetensors.torch import save_file

OUT_DIR = os.path.join(os.path.dirname(__file__), "..", "fixtures", "noise")
FLUX = [[1, 16, 16, 16], [1, 16, 32, 32], [1, 16, 64, 64], [1, 16, 96, 96], [1, 16, 128, 128], [1, 16, 64, 128], [2, 16, 64, 64]]
SMALL = [[1], [3], [15], [16], [17], [5, 7], [2, 3, 5]]


def draw(op, shape, gen, dtype):
    dt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    if op == "randn":
        return torch.randn(shape, generator=gen, dtype=dt)
    return torch.rand(shape, generator=gen, dtype=dt)


def cases(kernel):
    """[(name, seed, [(op, shape, dtype), ...])]"""
    out = []
    if kernel == "avx2":
        # FLUX latent shapes 128..1024 px, one seed each (sizes add up), 42 on all the small ones
        for shape, seed in zip(FLUX, [42, 0, 42, 2**32 - 1, 42, 7, 1234]):
            out.append((f"flux_{'x'.join(map(str, shape))}_s{seed}", seed, [("randn", shape, "float32")]))
        for seed in [0, 42, 2**32 - 1]:
            for shape in SMALL + [[33], [100], [1, 16, 8, 8]]:
                out.append((f"small_{'x'.join(map(str, shape))}_s{seed}", seed, [("randn", shape, "float32")]))
        # seeds torch reduces modulo 2^32 (and negative ones modulo 2^64)
        for seed in [2**32 + 5, -1, 2**64 - 1, -(2**63), 123456789012345]:
            out.append((f"seed_{seed}", seed, [("randn", [3], "float32"), ("randn", [40], "float32")]))
        # streams: one generator, several draws (cached normal, tail redraw, state continuation)
        out.append(("seq_small_large", 42, [("randn", [3], "float32"), ("randn", [1, 16, 16, 16], "float32"), ("randn", [1], "float32")]))
        out.append(("seq_large_small", 42, [("randn", [1, 16, 16, 16], "float32"), ("randn", [5], "float32"), ("randn", [2], "float32")]))
        out.append(("seq_two_large", 3, [("randn", [1, 16, 32, 32], "float32"), ("randn", [1, 16, 32, 32], "float32")]))
        out.append(("seq_tail_then_small", 9, [("randn", [37], "float32"), ("randn", [1], "float32"), ("randn", [1], "float32"), ("randn", [1], "float32")]))
        out.append(("seq_odd_small", 11, [("randn", [1], "float32"), ("randn", [1], "float32"), ("randn", [3], "float32"), ("randn", [20], "float32"), ("randn", [1], "float32")]))
        out.append(("seq_rand_randn", 5, [("rand", [7], "float32"), ("randn", [2], "float32"), ("rand", [1000], "float32"), ("randn", [1], "float32")]))
        out.append(("seq_long_stream", 2024, [("randn", [1, 16, 64, 64], "float32"), ("randn", [1, 16, 16, 16], "float32")]))
        # diffusers draws in the pipeline dtype: bfloat16 is the float32 result rounded
        out.append(("bf16_1x16x32x32_s42", 42, [("randn", [1, 16, 32, 32], "bfloat16"), ("randn", [5], "bfloat16")]))
        # bfloat16 draws only the whole blocks' uniforms before the 16 of the tail (float32 draws all)
        out.append(("bf16_tail_seq_s1", 1, [("randn", [40], "bfloat16"), ("randn", [3], "bfloat16"), ("randn", [20], "float32"), ("randn", [33], "bfloat16")]))
    else:
        out.append(("scalar_1x16x64x64_s42", 42, [("randn", [1, 16, 64, 64], "float32")]))
        out.append(("scalar_seq_s0", 0, [("randn", [37], "float32"), ("randn", [3], "float32"), ("randn", [1, 16, 16, 16], "float32")]))
    return out


def run(kernel):
    tensors, meta = {}, []
    for name, seed, steps in cases(kernel):
        gen = torch.Generator("cpu").manual_seed(seed)
        entry = {"name": name, "kernel": kernel, "seed": str(seed), "initial_seed": str(gen.initial_seed()), "draws": []}
        for k, (op, shape, dtype) in enumerate(steps):
            t = draw(op, shape, gen, dtype).contiguous()
            tname = f"{kernel}/{name}/{k}"
            tensors[tname] = t
            entry["draws"].append({"op": op, "shape": shape, "dtype": dtype, "tensor": tname})
        meta.append(entry)
    return tensors, meta


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        assert os.environ.get("ATEN_CPU_CAPABILITY") == "default"
        tensors, meta = run("scalar")
        save_file(tensors, sys.argv[2])
        with open(sys.argv[2] + ".json", "w") as fh:
            json.dump(meta, fh)
        return
    assert torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"), "the avx2 cases need an x86-64 AVX2+ machine"
    torch.manual_seed(0)
    tensors, meta = run("avx2")
    tmp = os.path.join(OUT_DIR, ".scalar.tmp.safetensors")
    subprocess.run([sys.executable, __file__, "--child", tmp], check=True, env={**os.environ, "ATEN_CPU_CAPABILITY": "default"})
    from safetensors.torch import load_file
    tensors.update(load_file(tmp))
    with open(tmp + ".json") as fh:
        meta += json.load(fh)
    os.remove(tmp)
    os.remove(tmp + ".json")
    info = {"torch": torch.__version__, "made_by": "test/reference/gen_noise.py"}
    save_file(tensors, os.path.join(OUT_DIR, "noise.safetensors"), metadata=info)
    with open(os.path.join(OUT_DIR, "cases.json"), "w") as fh:
        json.dump({**info, "cases": meta}, fh, indent=1)
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    print(f"{len(meta)} cases, {len(tensors)} tensors, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
