"""Seed-for-seed parity fixture for the whole pipeline: packages/flux/src/pipeline/.

Run: test/reference/.venv/bin/python test/reference/gen_pipeline.py
Writes test/fixtures/pipeline/ (deterministic: torch.manual_seed(0), one thread, float32).

A tiny random FLUX.1 [schnell]-shaped pipeline is built with diffusers itself and saved with
`save_pretrained` as a diffusers folder (test/fixtures/pipeline/tiny-flux/), so the TypeScript loader reads
exactly the layout of black-forest-labs/FLUX.1-schnell:
- transformer/      FluxTransformer2DModel, 1 double + 2 single blocks, 2 heads of 8, axes_dims_rope [2, 2, 4]
- vae/              AutoencoderKL shaped as the FLUX VAE (4 levels, 16 latent channels, no quant convs), tiny widths
- text_encoder/     CLIPTextModel (legacy eos_token_id 2 as FLUX.1's config), hidden 8, 2 layers, vocab 49408
- tokenizer/        CLIPTokenizer: the real CLIP vocab.json / merges.txt, copied from test/fixtures/tokenizers/clip/
                    (made by test/reference/gen_tokenizers.py from OpenAI's bpe_simple_vocab_16e6.txt.gz)
- text_encoder_2/   T5EncoderModel (gated-gelu, T5 v1.1 style), d_model 16, 2 layers
- tokenizer_2/      T5TokenizerFast over the small sentencepiece unigram model of test/fixtures/tokenizers/t5/
                    (spiece.model + tokenizer.json, 100 extra ids as T5)
- scheduler/        FlowMatchEulerDiscreteScheduler with the schnell config (shift 1, no dynamic shifting)

Then every case in CASES is generated with `generator=torch.Generator("cpu").manual_seed(seed)`, in float32:
cases.json lists them; <case>.safetensors holds
  prompt_embeds [B', L, 16] / pooled_prompt_embeds [B', 8]   (pipe.encode_prompt, B' = num_images)
  latents       [B, L_img, 64]  packed final latents (output_type="latent")
  image         [B, H, W, 3]    float in [0, 1] (output_type="np")
  pixels        [B, H, W, 3]    uint8 as output_type="pil" rounds them ((x * 255).round())
Image-to-image cases run FluxImg2ImgPipeline with the same components on input.png (committed, RGB).
Image-to-image cases cover a resize of input.png (72x56) to the requested size and strength 1 (the VAE sample is
still drawn from the generator before the noise, so the noise is the generator's second draw).
Dev cases: tiny-flux-dev/ holds only transformer/ (guidance_embeds) and scheduler/ (shift 3, dynamic shifting);
the other components are tiny-flux's; dev-*.safetensors hold latents, image and pixels (guidance 3.5 and 7).
resize.safetensors: PIL LANCZOS resizes of input.png (what VaeImageProcessor.resize does for PIL input).

Needs the tokenizer fixtures first (test/reference/gen_tokenizers.py). Running it twice gives identical files.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import torch
from PIL import Image

from common import FIXTURES, REPO_ROOT, save, seed

import diffusers
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    FluxImg2ImgPipeline,
    FluxPipeline,
    FluxTransformer2DModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

AREA = "pipeline"
OUT = os.path.join(FIXTURES, AREA)
MODEL_DIR = os.path.join(OUT, "tiny-flux")
SHARED_CLIP = os.path.join(FIXTURES, "tokenizers", "clip")
SHARED_T5 = os.path.join(FIXTURES, "tokenizers", "t5")

T5_D = 16
CLIP_D = 8

CASES = [
    # name, kind, prompt, width, height, steps, seed, max_sequence_length, num_images, extra
    dict(name="astronaut", prompt="A photo of an astronaut riding a horse on Mars.", width=64, height=64, steps=4,
         seed=0, max_sequence_length=256, num_images=1),
    dict(name="wide", prompt="a red cube on a blue table, studio lighting", width=80, height=48, steps=2,
         seed=42, max_sequence_length=256, num_images=1),
    dict(name="tall-long-prompt",
         prompt=("An extremely detailed oil painting of a lighthouse on a rocky cliff at dusk, waves crashing, "
                 "seagulls circling, warm light from the windows, dramatic clouds, impressionist brush strokes, "
                 "muted palette with touches of orange and teal, in the style of a nineteenth century master, "
                 "museum quality, high resolution scan, canvas texture visible everywhere."),
         width=32, height=64, steps=3, seed=1234567890123, max_sequence_length=32, num_images=1),
    dict(name="batch2", prompt="two cats", width=48, height=32, steps=1, seed=7, max_sequence_length=256,
         num_images=2),
    dict(name="img2img", kind="img2img", prompt="a watercolor landscape", width=64, height=64, steps=4,
         seed=3, max_sequence_length=256, num_images=1, strength=0.6),
    dict(name="img2img-strength1", kind="img2img", prompt="a watercolor landscape", width=32, height=32, steps=2,
         seed=5, max_sequence_length=256, num_images=1, strength=1.0),
    dict(name="img2img-resize", kind="img2img", prompt="a watercolor landscape", width=48, height=80, steps=3,
         seed=99, max_sequence_length=64, num_images=1, strength=0.9),
]

# FLUX.1 [dev]-shaped: the same components with a guidance-embedding transformer and the dev scheduler
# (shift 3, dynamic shifting). Only transformer/ and scheduler/ are saved (tiny-flux-dev/); the rest is tiny-flux's.
DEV_CASES = [
    dict(name="dev", prompt="A photo of an astronaut riding a horse on Mars.", width=64, height=48, steps=3, seed=11,
         max_sequence_length=512, num_images=1, guidance=3.5),
    dict(name="dev-guidance", prompt="a red cube", width=32, height=32, steps=2, seed=12,
         max_sequence_length=512, num_images=1, guidance=7.0),
]
DEV_DIR = os.path.join(OUT, "tiny-flux-dev")

RESIZES = [(64, 64), (48, 80), (32, 32), (96, 40), (60, 80), (100, 90), (50, 30), (144, 57)]


# ---------------------------------------------------------------------------------------------------------------
# Tokenizers


def tokenizers_from_fixtures():
    """The tokenizer fixtures of test/reference/gen_tokenizers.py (real CLIP vocab; small T5 unigram model)."""
    for d, files in ((SHARED_CLIP, ("vocab.json", "merges.txt")), (SHARED_T5, ("spiece.model", "tokenizer.json"))):
        for f in files:
            if not os.path.exists(os.path.join(d, f)):
                raise SystemExit(f"{os.path.join(d, f)} is missing: run test/reference/gen_tokenizers.py first")
    return CLIPTokenizer.from_pretrained(SHARED_CLIP), T5TokenizerFast.from_pretrained(SHARED_T5)


def copy_tokenizer_files() -> None:
    """Replace what save_pretrained wrote for the tokenizers by the files the FLUX.1 repositories ship
    (tokenizer/: vocab.json, merges.txt; tokenizer_2/: spiece.model, tokenizer.json) plus their configs."""
    for sub, src in (("tokenizer", SHARED_CLIP), ("tokenizer_2", SHARED_T5)):
        d = os.path.join(MODEL_DIR, sub)
        shutil.rmtree(d)
        shutil.copytree(src, d)


# ---------------------------------------------------------------------------------------------------------------
# Components


def build_components():
    seed(0)
    tokenizer, tokenizer_2 = tokenizers_from_fixtures()

    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=CLIP_D, intermediate_size=16, projection_dim=CLIP_D, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
        bos_token_id=0, eos_token_id=2, pad_token_id=1,
    )).eval()
    text_encoder_2 = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer_2), d_model=T5_D, d_kv=8, d_ff=32, num_layers=2, num_heads=2,
        relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
        dropout_rate=0.0, layer_norm_epsilon=1e-6, is_encoder_decoder=False, use_cache=False,
    )).eval()
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, out_channels=None, num_layers=1, num_single_layers=2, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=T5_D, pooled_projection_dim=CLIP_D, guidance_embeds=False,
        axes_dims_rope=[2, 2, 4],
    ).eval()
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[4, 8, 16, 16], layers_per_block=2,
        act_fn="silu", latent_channels=16, norm_num_groups=4, sample_size=32, scaling_factor=0.3611,
        shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False, mid_block_add_attention=True,
        force_upcast=True,
    ).eval()
    # Random init leaves norms at identity and some biases at zero: randomise every parameter (scaled so that
    # activations stay O(1)) so that swaps and missing terms show in the image.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in (text_encoder, text_encoder_2, transformer, vae):
            for name, p in m.named_parameters():
                fan = p.shape[-1] if p.dim() > 1 else 1
                if p.dim() == 4:
                    fan = p.shape[1] * p.shape[2] * p.shape[3]
                if p.dim() == 1 and ("norm" in name or "layer_norm" in name) and name.endswith("weight"):
                    p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
                elif p.dim() == 1:
                    p.copy_(0.05 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(fan))
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096,
    )
    return dict(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer)


def input_image() -> Image.Image:
    """A smooth deterministic 72x56 RGB picture (gradients + a disc), not at any requested size."""
    w, h = 72, 56
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127.5 + 127.5 * np.sin(x / 9.0)
    gch = 255.0 * y / (h - 1)
    b = np.where((x - 40) ** 2 + (y - 25) ** 2 < 15 ** 2, 230.0, 40.0 + x)
    a = np.stack([r, gch, b], -1).round().clip(0, 255).astype(np.uint8)
    return Image.fromarray(a, "RGB")


def main() -> None:
    if os.path.exists(MODEL_DIR):
        shutil.rmtree(MODEL_DIR)
    os.makedirs(OUT, exist_ok=True)
    comps = build_components()
    pipe = FluxPipeline(**comps)
    pipe.save_pretrained(MODEL_DIR, safe_serialization=True)
    copy_tokenizer_files()
    # Reload exactly what is committed.
    pipe = FluxPipeline.from_pretrained(MODEL_DIR, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    i2i = FluxImg2ImgPipeline.from_pipe(pipe)
    i2i.set_progress_bar_config(disable=True)
    seed(0)

    img = input_image()
    img.save(os.path.join(OUT, "input.png"))
    img = Image.open(os.path.join(OUT, "input.png")).convert("RGB")

    # What VaeImageProcessor.resize does with PIL input: PIL's LANCZOS.
    resample = i2i.image_processor.config.resample
    assert resample == "lanczos", resample
    rs = {}
    for (w, h) in RESIZES:
        rs[f"resize_{w}x{h}"] = torch.from_numpy(np.asarray(img.resize((w, h), resample=Image.LANCZOS)).copy())
    rs["input"] = torch.from_numpy(np.asarray(img).copy())
    save(AREA, "resize.safetensors", rs, note="PIL Image.resize(..., LANCZOS) of input.png, uint8 [H, W, 3]")

    cases_json = []
    for c in CASES:
        kind = c.get("kind", "txt2img")
        common_kw = dict(prompt=c["prompt"], width=c["width"], height=c["height"], num_inference_steps=c["steps"],
                         max_sequence_length=c["max_sequence_length"], num_images_per_prompt=c["num_images"],
                         guidance_scale=0.0)
        if kind == "img2img":
            common_kw.update(image=img, strength=c["strength"])
            p = i2i
        else:
            p = pipe
        out = {}
        with torch.no_grad():
            pe, pooled, _ = pipe.encode_prompt(prompt=c["prompt"], prompt_2=None, num_images_per_prompt=c["num_images"],
                                               max_sequence_length=c["max_sequence_length"])
            out["prompt_embeds"] = pe
            out["pooled_prompt_embeds"] = pooled
            gen = lambda: torch.Generator("cpu").manual_seed(c["seed"])
            out["latents"] = p(**common_kw, generator=gen(), output_type="latent").images
            image = p(**common_kw, generator=gen(), output_type="np").images
            pil = p(**common_kw, generator=gen(), output_type="pil").images
        out["image"] = torch.from_numpy(image)
        out["pixels"] = torch.from_numpy(np.stack([np.asarray(x) for x in pil]))
        # The rounding rule the TS side reproduces.
        assert np.array_equal(out["pixels"].numpy(), (image * 255).round().astype("uint8"))
        if kind == "img2img":
            out["input_resized"] = torch.from_numpy(
                np.asarray(img.resize((c["width"], c["height"]), resample=Image.LANCZOS)).copy())
        ids_clip = pipe.tokenizer(c["prompt"], padding="max_length", max_length=77, truncation=True).input_ids
        ids_t5 = pipe.tokenizer_2(c["prompt"], padding="max_length", max_length=c["max_sequence_length"],
                                  truncation=True).input_ids
        out["clip_ids"] = torch.tensor(ids_clip, dtype=torch.int64)
        out["t5_ids"] = torch.tensor(ids_t5, dtype=torch.int64)
        save(AREA, f"{c['name']}.safetensors", out, note=f"{kind} case {c['name']}: see cases.json")
        entry = {k: v for k, v in c.items()}
        entry["kind"] = kind
        entry["seed"] = int(c["seed"])
        cases_json.append(entry)
    # dev
    if os.path.exists(DEV_DIR):
        shutil.rmtree(DEV_DIR)
    torch.manual_seed(2)
    dev_tr = FluxTransformer2DModel(
        patch_size=1, in_channels=64, out_channels=None, num_layers=1, num_single_layers=2, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=T5_D, pooled_projection_dim=CLIP_D, guidance_embeds=True,
        axes_dims_rope=[2, 2, 4],
    ).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p_ in dev_tr.named_parameters():
            if p_.dim() == 1:
                p_.copy_((1 + 0.1 * torch.randn(p_.shape, generator=g)) if "norm" in name and name.endswith("weight")
                         else 0.05 * torch.randn(p_.shape, generator=g))
            else:
                p_.copy_(torch.randn(p_.shape, generator=g) / np.sqrt(p_.shape[-1]))
    dev_sched = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096,
    )
    dev_tr.save_pretrained(os.path.join(DEV_DIR, "transformer"), safe_serialization=True)
    dev_sched.save_pretrained(os.path.join(DEV_DIR, "scheduler"))
    dev_tr = FluxTransformer2DModel.from_pretrained(os.path.join(DEV_DIR, "transformer"), torch_dtype=torch.float32)
    dev_sched = FlowMatchEulerDiscreteScheduler.from_pretrained(os.path.join(DEV_DIR, "scheduler"))
    dev = FluxPipeline(transformer=dev_tr, scheduler=dev_sched, vae=pipe.vae, text_encoder=pipe.text_encoder,
                       tokenizer=pipe.tokenizer, text_encoder_2=pipe.text_encoder_2, tokenizer_2=pipe.tokenizer_2)
    dev.set_progress_bar_config(disable=True)
    for c in DEV_CASES:
        kw = dict(prompt=c["prompt"], width=c["width"], height=c["height"], num_inference_steps=c["steps"],
                  max_sequence_length=c["max_sequence_length"], num_images_per_prompt=c["num_images"],
                  guidance_scale=c["guidance"])
        gen = lambda: torch.Generator("cpu").manual_seed(c["seed"])
        out = {}
        with torch.no_grad():
            out["latents"] = dev(**kw, generator=gen(), output_type="latent").images
            image = dev(**kw, generator=gen(), output_type="np").images
        out["image"] = torch.from_numpy(image)
        out["pixels"] = torch.from_numpy((image * 255).round().astype("uint8"))
        save(AREA, f"{c['name']}.safetensors", out, note=f"dev case {c['name']}: see cases.json")
        cases_json.append({**c, "kind": "txt2img", "model": "tiny-flux-dev"})

    with open(os.path.join(OUT, "cases.json"), "w", encoding="utf-8") as f:
        json.dump({"generated_by": "test/reference/gen_pipeline.py", "diffusers": diffusers.__version__,
                   "torch": torch.__version__, "model": "tiny-flux", "input_image": "input.png",
                   "cases": cases_json}, f, indent=2)
        f.write("\n")
    total = 0
    for root, _, files in os.walk(OUT):
        for fn in files:
            total += os.path.getsize(os.path.join(root, fn))
    print(f"fixture total: {total} bytes")


if __name__ == "__main__":
    main()
