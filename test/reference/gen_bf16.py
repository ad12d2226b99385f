"""bf16 reference outputs: the reference models run in torch.bfloat16 on the CPU, beside the float32 fixtures.

Run: test/reference/.venv/bin/python test/reference/gen_bf16.py
Writes test/fixtures/bf16/ (deterministic: one thread; the models and inputs are the committed fp32 fixtures').

The bf16 mode of flux-ts (runtime/bf16.ts) is judged against the float32 reference with the error that the reference
itself makes in bf16 as the yardstick: each test computes relL2(torch bf16 output, fp32 reference) from these files and
requires ours to be at most 1.5x that. Every model here is the committed tiny fixture model, loaded with its
float32 weights, cast with `.to(torch.bfloat16)` (as `torch_dtype=torch.bfloat16` does), and fed the fixture's inputs
cast to bf16; outputs are saved as float32.

- transformer.safetensors: for schnell-tiny and dev-tiny (test/fixtures/transformer/): diffusers
  FluxTransformer2DModel's output (`<name>.out`), its first double block (`<name>.double0.out_img`, `.out_txt`) and
  first single block (`<name>.single0.out`) on the inputs captured in <name>.io.safetensors.
- text-encoders.safetensors: CLIPTextModel (clip/) last_hidden_state + pooler_output, T5EncoderModel (t5/)
  last_hidden_state, on the input_ids of clip.safetensors / t5.safetensors.
- vae.safetensors: AutoencoderKL (vae-tiny): decode of decode.safetensors' z, latent_dist.mean of encode.safetensors' x.
- pipeline.safetensors: `<case>.pixels` uint8 [B, H, W, 3] for every case of test/fixtures/pipeline/cases.json
  (FluxPipeline / FluxImg2ImgPipeline with torch_dtype=torch.bfloat16, generator=torch.Generator("cpu")), and
  `<case>.psnr` the PSNR of that image against the float32 fixture's pixels (dB; inf when identical).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from common import FIXTURES, save, seed

from diffusers import AutoencoderKL, FluxImg2ImgPipeline, FluxPipeline, FluxTransformer2DModel
from transformers import CLIPTextModel, T5EncoderModel

AREA = "bf16"
BF16 = torch.bfloat16


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def transformer(out: dict[str, torch.Tensor]) -> None:
    d = os.path.join(FIXTURES, "transformer")
    for name in ("schnell-tiny", "dev-tiny"):
        cfg = json.load(open(os.path.join(d, f"{name}.config.json")))
        cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
        model = FluxTransformer2DModel(**cfg).eval()
        model.load_state_dict(load_file(os.path.join(d, f"{name}.diffusers.safetensors")), strict=True)
        model = model.to(BF16)
        io = load_file(os.path.join(d, f"{name}.io.safetensors"))
        b = lambda k: io[k].to(BF16)  # noqa: E731
        g = b("guidance") if "guidance" in io else None
        with torch.no_grad():
            y = model(hidden_states=b("img"), encoder_hidden_states=b("txt"), pooled_projections=b("y"),
                      timestep=b("timesteps"), img_ids=io["img_ids"][0], txt_ids=io["txt_ids"][0], guidance=g,
                      return_dict=False)[0]
            out[f"{name}.out"] = y.float()
            # one block of each kind, on the inputs captured on BFL's modules (the same values diffusers' blocks take)
            ids = torch.cat([io["txt_ids"][0], io["img_ids"][0]], 0)
            rope = model.pos_embed(ids)
            temb = b("vec")
            txt_out, img_out = model.transformer_blocks[0](hidden_states=b("double0.img"), encoder_hidden_states=b("double0.txt"),
                                                           temb=temb, image_rotary_emb=rope)
            out[f"{name}.double0.out_img"] = img_out.float()
            out[f"{name}.double0.out_txt"] = txt_out.float()
            x = b("single0.x")
            l_txt = io["txt"].shape[1]
            s_txt, s_img = model.single_transformer_blocks[0](hidden_states=x[:, l_txt:], encoder_hidden_states=x[:, :l_txt],
                                                              temb=temb, image_rotary_emb=rope)
            out[f"{name}.single0.out"] = torch.cat([s_txt, s_img], 1).float()
        for k, ref in ((f"{name}.out", io["out_diffusers"]), (f"{name}.double0.out_img", io["double0.out_img"]),
                       (f"{name}.single0.out", io["single0.out"])):
            print(f"torch bf16 vs fp32: {k}: relL2 {rel_l2(out[k], ref):.3e}")


def text_encoders(out: dict[str, torch.Tensor]) -> None:
    d = os.path.join(FIXTURES, "text-encoders")
    clip = CLIPTextModel.from_pretrained(os.path.join(d, "clip"), torch_dtype=BF16).eval()
    io = load_file(os.path.join(d, "clip.safetensors"))
    with torch.no_grad():
        o = clip(input_ids=io["input_ids"])
    out["clip.last_hidden_state"] = o.last_hidden_state.float()
    out["clip.pooler_output"] = o.pooler_output.float()
    print(f"torch bf16 vs fp32: clip: relL2 {rel_l2(out['clip.last_hidden_state'], io['last_hidden_state']):.3e}")
    t5 = T5EncoderModel.from_pretrained(os.path.join(d, "t5"), torch_dtype=BF16).eval()
    io = load_file(os.path.join(d, "t5.safetensors"))
    with torch.no_grad():
        o = t5(input_ids=io["input_ids"])
    out["t5.last_hidden_state"] = o.last_hidden_state.float()
    print(f"torch bf16 vs fp32: t5: relL2 {rel_l2(out['t5.last_hidden_state'], io['last_hidden_state']):.3e}")


def vae(out: dict[str, torch.Tensor]) -> None:
    d = os.path.join(FIXTURES, "vae")
    cfg = json.load(open(os.path.join(d, "vae-tiny.config.json")))
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    model = AutoencoderKL(**cfg).eval()
    model.load_state_dict(load_file(os.path.join(d, "vae-tiny.diffusers.safetensors")), strict=True)
    model = model.to(BF16)
    dec = load_file(os.path.join(d, "decode.safetensors"))
    enc = load_file(os.path.join(d, "encode.safetensors"))
    scale, shift = cfg["scaling_factor"], cfg["shift_factor"]
    with torch.no_grad():
        out["vae.decode.image"] = model.decode((dec["z"] / scale + shift).to(BF16)).sample.float()
        out["vae.encode.mean"] = model.encode(enc["x"].to(BF16)).latent_dist.mean.float()
    print(f"torch bf16 vs fp32: vae decode: relL2 {rel_l2(out['vae.decode.image'], dec['image']):.3e}")
    print(f"torch bf16 vs fp32: vae encode: relL2 {rel_l2(out['vae.encode.mean'], enc['mean']):.3e}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def pipeline(out: dict[str, torch.Tensor]) -> None:
    d = os.path.join(FIXTURES, "pipeline")
    cases = json.load(open(os.path.join(d, "cases.json")))["cases"]
    pipe = FluxPipeline.from_pretrained(os.path.join(d, "tiny-flux"), torch_dtype=BF16)
    pipe.set_progress_bar_config(disable=True)
    dev_transformer = FluxTransformer2DModel.from_pretrained(os.path.join(d, "tiny-flux-dev", "transformer"), torch_dtype=BF16)
    from diffusers import FlowMatchEulerDiscreteScheduler
    dev_scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(os.path.join(d, "tiny-flux-dev", "scheduler"))
    img = Image.open(os.path.join(d, "input.png")).convert("RGB")
    for c in cases:
        kind = c.get("kind", "txt2img")
        kw = dict(prompt=c["prompt"], width=c["width"], height=c["height"], num_inference_steps=c["steps"],
                  max_sequence_length=c["max_sequence_length"], num_images_per_prompt=c.get("num_images", 1),
                  output_type="pil", generator=torch.Generator("cpu").manual_seed(c["seed"]))
        if kind == "img2img":
            p = FluxImg2ImgPipeline.from_pipe(pipe, torch_dtype=BF16)  # NOTE: without torch_dtype, from_pipe casts every
            # component (shared with `pipe`) to float32
            kw.update(image=img, strength=c["strength"], guidance_scale=0.0)
        elif c["name"].startswith("dev"):
            p = FluxPipeline.from_pipe(pipe, transformer=dev_transformer, scheduler=dev_scheduler, torch_dtype=BF16)
            kw.update(guidance_scale=c["guidance"])
        else:
            p = pipe
            kw.update(guidance_scale=0.0)
        p.set_progress_bar_config(disable=True)
        dtypes = {k: v.dtype for k, v in p.components.items() if hasattr(v, "dtype")}
        assert all(t == BF16 for t in dtypes.values()), f"{c['name']}: not all bf16: {dtypes}"
        with torch.no_grad():
            images = p(**kw).images
        pixels = np.stack([np.asarray(x) for x in images])
        ref = load_file(os.path.join(d, f"{c['name']}.safetensors"))["pixels"].numpy()
        out[f"{c['name']}.pixels"] = torch.from_numpy(pixels)
        out[f"{c['name']}.psnr"] = torch.tensor([psnr(pixels, ref)], dtype=torch.float64)
        print(f"diffusers bf16 vs fp32 image: {c['name']}: PSNR {psnr(pixels, ref):.2f} dB")


def main() -> None:
    seed(0)
    t: dict[str, torch.Tensor] = {}
    transformer(t)
    save(AREA, "transformer.safetensors", t, note="diffusers FluxTransformer2DModel in torch.bfloat16 on the transformer fixtures' inputs")
    t = {}
    text_encoders(t)
    save(AREA, "text-encoders.safetensors", t, note="CLIPTextModel / T5EncoderModel in torch.bfloat16 on the text-encoder fixtures' input_ids")
    t = {}
    vae(t)
    save(AREA, "vae.safetensors", t, note="AutoencoderKL in torch.bfloat16 on the VAE fixtures' z and x")
    t = {}
    pipeline(t)
    save(AREA, "pipeline.safetensors", t, note="FluxPipeline / FluxImg2ImgPipeline with torch_dtype=torch.bfloat16 on every case of pipeline/cases.json")


if __name__ == "__main__":
    main()
