"""Dump the expected checkpoint key -> shape tables of the FULL-size FLUX.1 models.

Every table comes from the real reference code, instantiated on torch's `meta` device (no memory, no weights):
  diffusers FluxTransformer2DModel (schnell: guidance_embeds False, dev: True) and AutoencoderKL (FLUX vae config),
  transformers T5EncoderModel (t5-v1_1-xxl) and CLIPTextModel (CLIP-L text).
The BFL formats (flux1-schnell.safetensors, ae.safetensors) are built from the key table in
shared/spec/flux-reference-facts.md section 6 and then checked two ways:
  1. diffusers' own single-file converters (convert_flux_transformer_checkpoint_to_diffusers,
     convert_ldm_vae_checkpoint) run on meta tensors of those shapes must yield exactly the diffusers keys + shapes;
  2. with --bfl-src DIR (the `src` folder of black-forest-labs/flux, tested at 802fb47), BFL's own `Flux` and
     `AutoEncoder` classes are instantiated on meta too and their state_dict must equal the built table.
Parameter counts are asserted against the spec (schnell 11,891,178,560; dev 11,901,408,320; VAE 83,819,683).

Writes test/fixtures/keys/<name>.json: {"source", "versions", "config", "parameters", "tensors": {key: shape}}.
Run: test/reference/.venv/bin/python test/reference/gen_keys.py [--bfl-src /path/to/flux/src]
Tested with torch 2.15.0, diffusers 0.42.1, transformers 5.23.0.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import types
from pathlib import Path

import diffusers
import torch
import transformers
from diffusers import AutoencoderKL, FluxTransformer2DModel
from diffusers.loaders.single_file_utils import (
    convert_flux_transformer_checkpoint_to_diffusers,
    convert_ldm_vae_checkpoint,
)
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

OUT = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
META = torch.device("meta")

VERSIONS = {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__}

# black-forest-labs/flux src/flux/util.py configs["flux-schnell"] / ["flux-dev"]; FluxTransformer2DModel config.json
TRANSFORMER = dict(
    patch_size=1,
    in_channels=64,
    out_channels=None,
    num_layers=19,
    num_single_layers=38,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=4096,
    pooled_projection_dim=768,
    axes_dims_rope=(16, 56, 56),
)
# black-forest-labs/FLUX.1-schnell vae/config.json
VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[128, 256, 512, 512],
    layers_per_block=2,
    act_fn="silu",
    latent_channels=16,
    norm_num_groups=32,
    sample_size=1024,
    scaling_factor=0.3611,
    shift_factor=0.1159,
    use_quant_conv=False,
    use_post_quant_conv=False,
    mid_block_add_attention=True,
)
# google/t5-v1_1-xxl (black-forest-labs/FLUX.1-schnell text_encoder_2/config.json)
T5 = dict(
    vocab_size=32128,
    d_model=4096,
    d_kv=64,
    d_ff=10240,
    num_layers=24,
    num_heads=64,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    dropout_rate=0.1,
    layer_norm_epsilon=1e-6,
    feed_forward_proj="gated-gelu",
    tie_word_embeddings=False,
)
# openai/clip-vit-large-patch14 text model (black-forest-labs/FLUX.1-schnell text_encoder/config.json)
CLIP = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    projection_dim=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
)

EXPECTED_PARAMETERS = {
    "diffusers-transformer-schnell": 11_891_178_560,
    "diffusers-transformer-dev": 11_901_408_320,
    "bfl-transformer-schnell": 11_891_178_560,
    "bfl-transformer-dev": 11_901_408_320,
    "diffusers-vae": 83_819_683,
    "bfl-vae": 83_819_683,
}


def shapes(state: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in state.items()}


def count(table: dict[str, list[int]]) -> int:
    return sum(math.prod(s) for s in table.values())


def same(a: dict[str, list[int]], b: dict[str, list[int]], what: str) -> None:
    missing = sorted(set(b) - set(a))
    extra = sorted(set(a) - set(b))
    bad = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    if missing or extra or bad:
        raise SystemExit(
            f"{what}: {len(missing)} missing {missing[:5]}, {len(extra)} extra {extra[:5]}, "
            f"{len(bad)} shape mismatches {[(k, a[k], b[k]) for k in bad[:5]]}"
        )


def meta(table: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    return {k: torch.empty(s, device=META) for k, s in table.items()}


# --- BFL tables built from the spec (section 6), from dims ---------------------------------------------------------


def bfl_transformer(guidance: bool) -> dict[str, list[int]]:
    c = TRANSFORMER
    h = c["num_attention_heads"] * c["attention_head_dim"]
    d = c["attention_head_dim"]
    mlp = int(h * 4.0)
    t: dict[str, list[int]] = {}

    def linear(name: str, i: int, o: int) -> None:
        t[f"{name}.weight"] = [o, i]
        t[f"{name}.bias"] = [o]

    linear("img_in", c["in_channels"], h)
    linear("time_in.in_layer", 256, h)
    linear("time_in.out_layer", h, h)
    if guidance:
        linear("guidance_in.in_layer", 256, h)
        linear("guidance_in.out_layer", h, h)
    linear("vector_in.in_layer", c["pooled_projection_dim"], h)
    linear("vector_in.out_layer", h, h)
    linear("txt_in", c["joint_attention_dim"], h)
    for i in range(c["num_layers"]):
        p = f"double_blocks.{i}"
        for s in ("img", "txt"):
            linear(f"{p}.{s}_mod.lin", h, 6 * h)
            linear(f"{p}.{s}_attn.qkv", h, 3 * h)
            t[f"{p}.{s}_attn.norm.query_norm.scale"] = [d]
            t[f"{p}.{s}_attn.norm.key_norm.scale"] = [d]
            linear(f"{p}.{s}_attn.proj", h, h)
            linear(f"{p}.{s}_mlp.0", h, mlp)
            linear(f"{p}.{s}_mlp.2", mlp, h)
    for i in range(c["num_single_layers"]):
        p = f"single_blocks.{i}"
        linear(f"{p}.linear1", h, 3 * h + mlp)
        linear(f"{p}.linear2", h + mlp, h)
        t[f"{p}.norm.query_norm.scale"] = [d]
        t[f"{p}.norm.key_norm.scale"] = [d]
        linear(f"{p}.modulation.lin", h, 3 * h)
    linear("final_layer.linear", h, c["in_channels"])
    linear("final_layer.adaLN_modulation.1", h, 2 * h)
    return t


def bfl_vae() -> dict[str, list[int]]:
    c = VAE
    ch = c["block_out_channels"]
    z = c["latent_channels"]
    t: dict[str, list[int]] = {}

    def conv(name: str, i: int, o: int, k: int) -> None:
        t[f"{name}.weight"] = [o, i, k, k]
        t[f"{name}.bias"] = [o]

    def norm(name: str, n: int) -> None:
        t[f"{name}.weight"] = [n]
        t[f"{name}.bias"] = [n]

    def resnet(name: str, i: int, o: int) -> None:
        norm(f"{name}.norm1", i)
        conv(f"{name}.conv1", i, o, 3)
        norm(f"{name}.norm2", o)
        conv(f"{name}.conv2", o, o, 3)
        if i != o:
            conv(f"{name}.nin_shortcut", i, o, 1)

    def mid(name: str, n: int) -> None:
        resnet(f"{name}.mid.block_1", n, n)
        norm(f"{name}.mid.attn_1.norm", n)
        for q in ("q", "k", "v", "proj_out"):
            conv(f"{name}.mid.attn_1.{q}", n, n, 1)
        resnet(f"{name}.mid.block_2", n, n)

    conv("encoder.conv_in", c["in_channels"], ch[0], 3)
    prev = ch[0]
    for i, o in enumerate(ch):
        for j in range(c["layers_per_block"]):
            resnet(f"encoder.down.{i}.block.{j}", prev if j == 0 else o, o)
        prev = o
        if i != len(ch) - 1:
            conv(f"encoder.down.{i}.downsample.conv", o, o, 3)
    mid("encoder", ch[-1])
    norm("encoder.norm_out", ch[-1])
    conv("encoder.conv_out", ch[-1], 2 * z, 3)

    conv("decoder.conv_in", z, ch[-1], 3)
    mid("decoder", ch[-1])
    prev = ch[-1]
    for level in reversed(range(len(ch))):
        o = ch[level]
        for j in range(c["layers_per_block"] + 1):
            resnet(f"decoder.up.{level}.block.{j}", prev if j == 0 else o, o)
        prev = o
        if level != 0:
            conv(f"decoder.up.{level}.upsample.conv", o, o, 3)
    norm("decoder.norm_out", ch[0])
    conv("decoder.conv_out", ch[0], c["out_channels"], 3)
    return t


# --- BFL reference classes (optional) ---------------------------------------------------------------------------------


def bfl_reference(src: Path) -> dict[str, dict[str, list[int]]]:
    sys.path.insert(0, str(src))
    try:
        import einops  # noqa: F401
    except ImportError:
        stub = types.ModuleType("einops")

        def _no(*a, **k):
            raise RuntimeError("einops stub: forward() is not supported here")

        stub.rearrange = stub.repeat = _no
        sys.modules["einops"] = stub
    from flux.model import Flux, FluxParams
    from flux.modules.autoencoder import AutoEncoder, AutoEncoderParams

    out = {}
    for variant, guidance in (("schnell", False), ("dev", True)):
        # src/flux/util.py configs["flux-schnell"] / configs["flux-dev"]
        params = FluxParams(
            in_channels=64, out_channels=64, vec_in_dim=768, context_in_dim=4096, hidden_size=3072, mlp_ratio=4.0,
            num_heads=24, depth=19, depth_single_blocks=38, axes_dim=[16, 56, 56], theta=10_000, qkv_bias=True,
            guidance_embed=guidance,
        )
        with META:
            out[f"bfl-transformer-{variant}"] = shapes(Flux(params).state_dict())
    ae = AutoEncoderParams(
        resolution=256, in_channels=3, ch=128, out_ch=3, ch_mult=[1, 2, 4, 4], num_res_blocks=2, z_channels=16,
        scale_factor=0.3611, shift_factor=0.1159,
    )
    with META:
        out["bfl-vae"] = shapes(AutoEncoder(ae).state_dict())
    return out


# --- main -------------------------------------------------------------------------------------------------------------


def write(name: str, source: str, config: dict, table: dict[str, list[int]], tied: dict | None = None) -> None:
    n = count(table)
    if name in EXPECTED_PARAMETERS and n != EXPECTED_PARAMETERS[name]:
        raise SystemExit(f"{name}: {n:,} parameters, expected {EXPECTED_PARAMETERS[name]:,}")
    OUT.mkdir(parents=True, exist_ok=True)
    doc = {"source": source, "versions": VERSIONS, "config": config, "parameters": n}
    if tied:
        doc["tied"] = tied
    doc["tensors"] = table
    text = json.dumps(doc, indent=None, separators=(",", ":"))
    # one tensor per line keeps the fixture diffable
    text = text.replace('"tensors":{', '"tensors":{\n').replace("],", "],\n")
    (OUT / f"{name}.json").write_text(text + "\n")
    print(f"{name:32s} {len(table):5d} tensors {n:>15,} parameters")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bfl-src", type=Path, help="src/ folder of black-forest-labs/flux (checks BFL's own classes)")
    args = ap.parse_args()
    torch.manual_seed(0)

    bfl_ref = bfl_reference(args.bfl_src) if args.bfl_src else None

    for variant, guidance in (("schnell", False), ("dev", True)):
        cfg = dict(TRANSFORMER, guidance_embeds=guidance)
        with META:
            diff = shapes(FluxTransformer2DModel(**cfg).state_dict())
        bfl = bfl_transformer(guidance)
        converted = shapes(convert_flux_transformer_checkpoint_to_diffusers(meta(bfl)))
        same(converted, diff, f"diffusers converter(BFL {variant} table) vs FluxTransformer2DModel")
        if bfl_ref is not None:
            ref = bfl_ref[f"bfl-transformer-{variant}"]
            same(bfl, ref, f"BFL {variant} table vs flux.model.Flux")
            bfl = ref  # keep BFL's own key order
        write(f"diffusers-transformer-{variant}", "diffusers FluxTransformer2DModel", cfg, diff)
        write(
            f"bfl-transformer-{variant}",
            "spec section 6 table; checked with diffusers convert_flux_transformer_checkpoint_to_diffusers"
            + (" and black-forest-labs/flux Flux" if bfl_ref else ""),
            cfg,
            bfl,
        )

    with META:
        diff = shapes(AutoencoderKL(**VAE).state_dict())
    bfl = bfl_vae()
    converted = shapes(convert_ldm_vae_checkpoint(meta(bfl), VAE))
    same(converted, diff, "diffusers convert_ldm_vae_checkpoint(BFL ae table) vs AutoencoderKL")
    if bfl_ref is not None:
        same(bfl, bfl_ref["bfl-vae"], "BFL ae table vs flux.modules.autoencoder.AutoEncoder")
        bfl = bfl_ref["bfl-vae"]
    write("diffusers-vae", "diffusers AutoencoderKL", VAE, diff)
    write(
        "bfl-vae",
        "spec section 6 table; checked with diffusers convert_ldm_vae_checkpoint"
        + (" and black-forest-labs/flux AutoEncoder" if bfl_ref else ""),
        VAE,
        bfl,
    )

    with META:
        t5 = T5EncoderModel(T5Config(**T5))
    table, tied = saved(t5)
    write("t5-encoder", "transformers T5EncoderModel (tied copies left out, as save_pretrained does)", T5, table, tied)

    with META:
        clip = CLIPTextModel(CLIPTextConfig(**CLIP))
    table, tied = saved(clip)
    # NOTE: transformers 5 dropped CLIPTextModel's `text_model.` wrapper (modeling_clip.py PrefixChange); files saved
    # by 4.x, such as FLUX.1's text_encoder/model.safetensors, carry a `text_model.` prefix on every key.
    write("clip-text", "transformers CLIPTextModel (keys without the 4.x `text_model.` prefix)", CLIP, table, tied)


def saved(model) -> tuple[dict[str, list[int]], dict[str, str]]:
    """state_dict minus tied copies (`_tied_weights_keys`: target -> source), i.e. what save_pretrained writes."""
    tied = dict(getattr(model, "_tied_weights_keys", None) or {})
    table = {k: s for k, s in shapes(model.state_dict()).items() if k not in tied}
    for target, source in tied.items():
        assert source in table, (target, source)
    return table, tied


if __name__ == "__main__":
    main()
