"""Fixtures for the FLUX autoencoder: packages/flux/src/autoencoder/*.ts, nn/{group-norm,conv2d}.ts, autoencoder/keys.ts.

Run: test/reference/.venv/bin/python test/reference/gen_vae.py
Writes test/fixtures/vae/ (float32; deterministic: torch.manual_seed(0), one thread).

Reference code: diffusers 0.42.1 `AutoencoderKL` configured as the FLUX VAE (no quant convs, mid attention,
4 levels with ch_mult [1,2,4,4], 2 resnets per encoder level / 3 per decoder level, scaling 0.3611, shift 0.1159)
but tiny (block_out_channels [8,16,32,32], 4 GroupNorm groups, 16 latent channels, sample_size 32 so that tiled
decoding uses 4x4 latent tiles). Every parameter is randomised (GroupNorm affines too) so swaps are caught.

Files:
- vae-tiny.config.json          diffusers `vae/config.json` of the tiny model
- vae-tiny.diffusers.safetensors  weights with diffusers `vae/` key names
- vae-tiny.bfl.safetensors        the same weights with BFL `ae.safetensors` key names. Made with the table below
                                  (mirror of packages/flux/src/autoencoder/keys.ts) and cross-checked: diffusers'
                                  own `convert_ldm_vae_checkpoint` turns it back into exactly the diffusers state dict.
- encode.safetensors   x [1,3,48,32] in [-1,1]; mean, logvar (diffusers clamps to [-30,20]); noise; sample =
                       mean + exp(0.5 logvar) * noise; z_mean = 0.3611 (mean - 0.1159); z_sample likewise.
- decode.safetensors   z [1,16,6,4] (scaled latent, as the sampler produces); image = vae.decode(z/0.3611 + 0.1159)
                       [1,3,48,32]; pixels = VaeImageProcessor.postprocess(image, "np") * 255 rounded, uint8 [48,32,3].
- tiled.safetensors    z [1,16,7,9]; image_tiled = decode with `enable_tiling()` (diffusers `tiled_decode`,
                       tile_latent_min_size 4, tile_sample_min_size 32, overlap 0.25); image_untiled = plain decode.
- encode-sample.safetensors  x (= encode.safetensors x); z_seeded = 0.3611 (latent_dist.sample(generator) - 0.1159) with
                       generator = torch.Generator("cpu").manual_seed(SAMPLE_SEED) (DiagonalGaussianDistribution.sample
                       draws randn_tensor(mean.shape, generator) first); noise_after = the next randn draw of that same
                       generator with the latent's shape (what FluxImg2ImgPipeline.prepare_latents draws next).
- tiled-encode.safetensors  x [1,3,56,72]; moments_tiled = `_tiled_encode` (enable_tiling(): 32 px tiles every 24 px,
                       1-cell blend) = encoder output (mean | unclamped logvar) [1,32,7,9]; mean_tiled = latent_dist.mean
                       with tiling; moments_untiled = plain encoder output.
"""

from __future__ import annotations

import json
import re

import numpy as np
import torch
from diffusers import AutoencoderKL
from diffusers.image_processor import VaeImageProcessor
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

from common import assert_close, fixture_path, save, seed

AREA = "vae"
SAMPLE_SEED = 1234
SCALE, SHIFT = 0.3611, 0.1159

CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[8, 16, 32, 32],
    layers_per_block=2,
    act_fn="silu",
    latent_channels=16,
    norm_num_groups=4,
    sample_size=32,
    scaling_factor=SCALE,
    shift_factor=SHIFT,
    use_quant_conv=False,
    use_post_quant_conv=False,
    mid_block_add_attention=True,
    force_upcast=True,
)


def diffusers_to_bfl(sd: dict[str, torch.Tensor], levels: int) -> dict[str, torch.Tensor]:
    """Mirror of packages/flux/src/autoencoder/keys.ts (diffusers -> BFL)."""
    rules: list[tuple[str, object]] = [
        (r"^(encoder|decoder)\.conv_(in|out)\.(weight|bias)$", lambda m: m.group(0)),
        (r"^(encoder|decoder)\.conv_norm_out\.(weight|bias)$", lambda m: f"{m[1]}.norm_out.{m[2]}"),
        (r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(norm1|conv1|norm2|conv2|conv_shortcut)\.(weight|bias)$",
         lambda m: f"encoder.down.{m[1]}.block.{m[2]}.{'nin_shortcut' if m[3] == 'conv_shortcut' else m[3]}.{m[4]}"),
        (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(weight|bias)$",
         lambda m: f"encoder.down.{m[1]}.downsample.conv.{m[2]}"),
        (r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(norm1|conv1|norm2|conv2|conv_shortcut)\.(weight|bias)$",
         lambda m: f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}.{'nin_shortcut' if m[3] == 'conv_shortcut' else m[3]}.{m[4]}"),
        (r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(weight|bias)$",
         lambda m: f"decoder.up.{levels - 1 - int(m[1])}.upsample.conv.{m[2]}"),
        (r"^(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(norm1|conv1|norm2|conv2)\.(weight|bias)$",
         lambda m: f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}.{m[4]}"),
        (r"^(encoder|decoder)\.mid_block\.attentions\.0\.group_norm\.(weight|bias)$",
         lambda m: f"{m[1]}.mid.attn_1.norm.{m[2]}"),
        (r"^(encoder|decoder)\.mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$",
         lambda m: f"{m[1]}.mid.attn_1.{ {'to_q': 'q', 'to_k': 'k', 'to_v': 'v', 'to_out.0': 'proj_out'}[m[2]] }.{m[3]}"),
    ]
    out = {}
    for k, v in sd.items():
        for pat, fn in rules:
            m = re.match(pat, k)
            if m:
                name = fn(m)
                if ".mid.attn_1." in name and name.endswith(".weight") and not name.endswith("norm.weight"):
                    v = v.reshape(*v.shape, 1, 1)  # linear [C,C] -> 1x1 conv [C,C,1,1]
                out[name] = v
                break
        else:
            raise SystemExit(f"no rule for diffusers key {k}")
    return out


def randomise(vae: AutoencoderKL) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if p.ndim == 1 and ("norm" in name):
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
            elif p.ndim == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            # conv / linear weights keep torch's default (kaiming-uniform) init drawn under seed(0)


def main() -> None:
    seed(0)
    vae = AutoencoderKL(**CONFIG).eval()
    randomise(vae)
    levels = len(CONFIG["block_out_channels"])

    sd = {k: v.detach().clone().contiguous() for k, v in vae.state_dict().items()}
    bfl = diffusers_to_bfl(sd, levels)
    back = convert_ldm_vae_checkpoint(bfl, dict(vae.config))
    if set(back) != set(sd):
        raise SystemExit(f"convert_ldm_vae_checkpoint key mismatch: {sorted(set(back) ^ set(sd))[:10]}")
    for k in sd:
        if not torch.equal(back[k].reshape(sd[k].shape), sd[k]) or back[k].shape != sd[k].shape:
            raise SystemExit(f"convert_ldm_vae_checkpoint value/shape mismatch at {k}: {tuple(back[k].shape)}")
    print(f"cross-check ok: convert_ldm_vae_checkpoint(BFL names) == diffusers state dict ({len(sd)} tensors)")

    with open(fixture_path(AREA, "vae-tiny.config.json"), "w") as f:
        cfg = {k: v for k, v in dict(vae.config).items() if not k.startswith("_")}
        cfg["_class_name"] = "AutoencoderKL"
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    save(AREA, "vae-tiny.diffusers.safetensors", sd, note="tiny random FLUX-shaped AutoencoderKL, diffusers key names")
    save(AREA, "vae-tiny.bfl.safetensors", bfl, note="same weights as vae-tiny.diffusers.safetensors, BFL ae.safetensors key names")

    with torch.no_grad():
        # ---- encode: 48 (H) x 32 (W), non-square
        x = torch.rand(1, 3, 48, 32) * 2 - 1
        post = vae.encode(x).latent_dist
        noise = torch.randn(post.mean.shape)
        sample = post.mean + post.std * noise  # DiagonalGaussianDistribution.sample with a given draw
        enc = {
            "x": x, "mean": post.mean, "logvar": post.logvar, "noise": noise, "sample": sample,
            "z_mean": SCALE * (post.mean - SHIFT), "z_sample": SCALE * (sample - SHIFT),
        }
        # independent check of the encoder output: conv_out channels split (mean | logvar)
        raw = vae.encoder(x)
        assert_close(post.mean, raw[:, :16], "latent_dist.mean == encoder(x)[:, :16]", 0.0)
        save(AREA, "encode.safetensors", enc)

        # ---- decode
        z = torch.randn(1, 16, 6, 4)
        image = vae.decode(z / SCALE + SHIFT).sample
        proc = VaeImageProcessor(vae_scale_factor=8)
        np_img = proc.postprocess(image, output_type="np")  # (x/2+0.5).clamp(0,1), NHWC float
        pixels = torch.from_numpy((np_img[0] * 255).round().astype(np.uint8))
        save(AREA, "decode.safetensors", {"z": z, "image": image, "pixels": pixels})

        # ---- tiled decode (4x4 latent tiles, 3 latent rows/cols stride, 8 px blend)
        zt = torch.randn(1, 16, 7, 9)
        untiled = vae.decode(zt / SCALE + SHIFT).sample
        vae.enable_tiling()
        assert vae.tile_latent_min_size == 4 and vae.tile_sample_min_size == 32
        tiled = vae.decode(zt / SCALE + SHIFT).sample
        vae.disable_tiling()
        gap = ((tiled - untiled).norm() / untiled.norm()).item()
        print(f"tiled vs untiled (diffusers, random tiny weights): relL2 {gap:.3e}")
        save(AREA, "tiled.safetensors", {"z": zt, "image_tiled": tiled, "image_untiled": untiled},
             note=f"diffusers tiled vs untiled relL2 {gap:.6e}")

        # ---- encode with a sample of the latent distribution drawn from a seeded generator (img2img default)
        g = torch.Generator("cpu").manual_seed(SAMPLE_SEED)
        zs = vae.encode(x).latent_dist.sample(generator=g)
        noise_after = torch.randn(zs.shape, generator=g)
        check = vae.encode(x).latent_dist
        draw = torch.randn(check.mean.shape, generator=torch.Generator("cpu").manual_seed(SAMPLE_SEED))
        assert_close(zs, check.mean + check.std * draw, "sample(generator) == mean + std * randn(mean.shape, generator)", 0.0)
        save(AREA, "encode-sample.safetensors",
             {"x": x, "z_seeded": SCALE * (zs - SHIFT), "noise_after": noise_after},
             note=f"latent_dist.sample(torch.Generator('cpu').manual_seed({SAMPLE_SEED})), then the next randn of it")

        # ---- tiled encode (diffusers _tiled_encode: 32 px tiles, stride 24 px, blend 1 latent cell, row limit 3)
        xt = torch.rand(1, 3, 56, 72) * 2 - 1
        moments_untiled = vae.encoder(xt)
        vae.enable_tiling()
        moments_tiled = vae._encode(xt)
        mean_tiled = vae.encode(xt).latent_dist.mean
        vae.disable_tiling()
        assert moments_tiled.shape == (1, 32, 7, 9), moments_tiled.shape
        save(AREA, "tiled-encode.safetensors",
             {"x": xt, "moments_tiled": moments_tiled, "mean_tiled": mean_tiled, "moments_untiled": moments_untiled})


if __name__ == "__main__":
    main()
