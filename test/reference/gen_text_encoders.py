"""Fixtures for the text encoders: packages/flux/src/{clip,t5}/*.ts and packages/flux/src/text-encoders/.

Run: test/reference/.venv/bin/python test/reference/gen_text_encoders.py
Writes test/fixtures/text-encoders/ (float32; deterministic: torch.manual_seed(0), one thread, eager attention).

Reference code: transformers 5.23 `CLIPTextModel` and `T5EncoderModel`, tiny random configs with the FLUX.1 choices
(CLIP: quick_gelu, pre-LN, causal mask; T5 v1.1: gated-gelu / gelu_new, 32 buckets, max_distance 128), run as FLUX
runs them: WITHOUT an attention mask over the full padded length.

Folders (loaded by the TS folder loader, like a diffusers `text_encoder/` / `text_encoder_2/`):
- clip-legacy/   config.json with eos_token_id 2 (as FLUX.1's text_encoder/config.json: pooled row = argmax(ids)),
                 model.safetensors with the transformers 4.x `text_model.` key prefix (as FLUX.1's file).
- clip/          save_pretrained of transformers 5 (keys without `text_model.`), eos_token_id 500: pooled row at the
                 first 500, while a larger id (900) sits earlier in the row (argmax would pick it).
- t5/            save_pretrained with max_shard_size 40KB: several shards + model.safetensors.index.json.
Outputs:
- clip-legacy.safetensors, clip.safetensors: input_ids [2,16] (int64), last_hidden_state [2,16,32],
  pooler_output [2,32], layer_{i} [2,16,32] (output of encoder.layers[i], forward hook), embeddings [2,16,32].
- t5.safetensors: input_ids [2,150] (int64, padded with 0 after </s>=1), last_hidden_state [2,150,32],
  block_{i} [2,150,32] (output of encoder.block[i]), position_bias [1,4,150,150], embeddings [2,150,32].
- t5-buckets.safetensors: relative_position [1201] = -600..600 (int64) and bucket [1201] (int64) from
  T5Attention._relative_position_bucket(bidirectional=True, num_buckets=32, max_distance=128).
"""

from __future__ import annotations

import json
import os
import shutil

import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel
from transformers.models.t5.modeling_t5 import T5Attention

from common import FIXTURES, save, seed

AREA = "text-encoders"
OUT = os.path.join(FIXTURES, AREA)


def randomize(model: torch.nn.Module) -> None:
    """Every parameter random (norm weights/biases too), so a swapped or ignored key is caught."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layer_norm.weight") or "layer_norm1.weight" in name or "layer_norm2.weight" in name or name.endswith("final_layer_norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif "embedding" in name or name.endswith("shared.weight") or "relative_attention_bias" in name:
                p.copy_(torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * (1.0 / p.shape[-1] ** 0.5))


def hooks(modules, prefix: str, store: dict) -> list:
    hs = []
    for i, m in enumerate(modules):
        def hook(_m, _inp, out, i=i):
            store[f"{prefix}_{i}"] = (out[0] if isinstance(out, tuple) else out).detach().clone()
        hs.append(m.register_forward_hook(hook))
    return hs


def clip_fixture(name: str, eos: int, bos: int, legacy_prefix: bool, ids: torch.Tensor) -> None:
    seed(0)
    cfg = CLIPTextConfig(
        vocab_size=1000, hidden_size=32, intermediate_size=64, projection_dim=32, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=16, hidden_act="quick_gelu", layer_norm_eps=1e-5,
        bos_token_id=bos, eos_token_id=eos, pad_token_id=1, attn_implementation="eager",
    )
    model = CLIPTextModel(cfg).eval()
    randomize(model)
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder, safe_serialization=True)
    if legacy_prefix:
        # transformers 4.x (and FLUX.1's text_encoder/model.safetensors) keep the `text_model.` prefix.
        path = os.path.join(folder, "model.safetensors")
        from safetensors.torch import load_file
        sd = load_file(path)
        save_file({("text_model." + k if not k.startswith("text_model.") else k): v.contiguous() for k, v in sd.items()}, path, metadata={"format": "pt"})
    store: dict[str, torch.Tensor] = {}
    hs = hooks(model.encoder.layers, "layer", store)
    emb = model.embeddings(input_ids=ids)
    with torch.no_grad():
        out = model(input_ids=ids)
    for h in hs:
        h.remove()
    save(AREA, f"{name}.safetensors", {
        "input_ids": ids, "embeddings": emb, "last_hidden_state": out.last_hidden_state,
        "pooler_output": out.pooler_output, **store,
    }, note=f"CLIPTextModel tiny, eos_token_id {eos}, no attention mask")


def clip_fixtures() -> None:
    # legacy (eos_token_id 2): ids padded with eos=999 after the text; pooled = argmax = first 999
    g = torch.Generator().manual_seed(1)
    ids = torch.full((2, 16), 999, dtype=torch.long)
    ids[:, 0] = 998
    ids[0, 1:6] = torch.randint(3, 990, (5,), generator=g)
    ids[1, 1:12] = torch.randint(3, 990, (11,), generator=g)
    clip_fixture("clip-legacy", eos=2, bos=998, legacy_prefix=True, ids=ids)
    # modern: eos 500 (pad 500), a 900 before it so argmax(ids) would be wrong
    ids = torch.full((2, 16), 500, dtype=torch.long)
    ids[:, 0] = 499
    ids[0, 1:6] = torch.randint(3, 490, (5,), generator=g)
    ids[0, 2] = 900
    ids[1, 1:9] = torch.randint(3, 490, (8,), generator=g)
    ids[1, 5] = 950
    clip_fixture("clip", eos=500, bos=499, legacy_prefix=False, ids=ids)


def t5_fixtures() -> None:
    seed(0)
    cfg = T5Config(
        vocab_size=128, d_model=32, d_kv=8, d_ff=48, num_layers=3, num_heads=4, relative_attention_num_buckets=32,
        relative_attention_max_distance=128, layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu",
        is_encoder_decoder=False, use_cache=False, attn_implementation="eager", tie_word_embeddings=False,
    )
    model = T5EncoderModel(cfg).eval()
    randomize(model)
    folder = os.path.join(OUT, "t5")
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder, safe_serialization=True, max_shard_size="40KB")
    g = torch.Generator().manual_seed(2)
    L = 150
    ids = torch.zeros((2, L), dtype=torch.long)
    ids[0, :20] = torch.randint(3, 128, (20,), generator=g)
    ids[0, 20] = 1
    ids[1, :140] = torch.randint(3, 128, (140,), generator=g)
    ids[1, 140] = 1
    store: dict[str, torch.Tensor] = {}
    hs = hooks(model.encoder.block, "block", store)
    with torch.no_grad():
        emb = model.shared(ids)
        bias = model.encoder.block[0].layer[0].SelfAttention.compute_bias(L, L)
        out = model(input_ids=ids)
    for h in hs:
        h.remove()
    save(AREA, "t5.safetensors", {
        "input_ids": ids, "embeddings": emb, "position_bias": bias, "last_hidden_state": out.last_hidden_state, **store,
    }, note="T5EncoderModel tiny (gated-gelu), no attention mask")
    rel = torch.arange(-600, 601, dtype=torch.long)
    bucket = T5Attention._relative_position_bucket(rel, bidirectional=True, num_buckets=32, max_distance=128)
    save(AREA, "t5-buckets.safetensors", {"relative_position": rel, "bucket": bucket}, note="bidirectional, 32 buckets, max_distance 128")


if __name__ == "__main__":
    clip_fixtures()
    t5_fixtures()
    for root, _dirs, files in os.walk(OUT):
        for f in sorted(files):
            p = os.path.join(root, f)
            print(os.path.relpath(p, OUT), os.path.getsize(p))
