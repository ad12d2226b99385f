"""Fixtures for packages/core: schedules, img2img start/noising, packing, the Euler loop.

Everything comes from the real reference code:
  * diffusers FlowMatchEulerDiscreteScheduler with the FLUX.1 scheduler_config.json values
    (schnell: shift 1.0, no dynamic shifting; dev: dynamic shifting, base 0.5, max 1.15, 256..4096, shift 3.0),
    driven exactly like FluxPipeline.__call__ (np.linspace sigmas, calculate_shift, retrieve_timesteps);
  * FluxImg2ImgPipeline.get_timesteps called on a stub object holding a real scheduler, and scheduler.scale_noise;
  * FluxPipeline._pack_latents / _unpack_latents / _prepare_latent_image_ids (static methods);
  * BFL flux src/flux/sampling.py get_schedule (the `flux` package is not on PyPI, so its three functions are
    transcribed below verbatim from black-forest-labs/flux@802fb47 sampling.py: get_lin_function, time_shift,
    get_schedule).
Writes test/fixtures/core/{schedules.json, img2img.json, packing.safetensors, denoise.safetensors}.
Run: test/reference/.venv/bin/python test/reference/gen_core.py   (torch 2.15.0, diffusers 0.42.1, numpy 2.4.6)
"""

from __future__ import annotations

import json
import math
import types
from typing import Callable

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.flux.pipeline_flux import FluxPipeline, calculate_shift, retrieve_timesteps
from diffusers.pipelines.flux.pipeline_flux_img2img import FluxImg2ImgPipeline

from common import fixture_path, save, seed, versions

# scheduler/scheduler_config.json of black-forest-labs/FLUX.1-schnell and FLUX.1-dev
SCHNELL_CONFIG = {"base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15,
                  "num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False}
DEV_CONFIG = {**SCHNELL_CONFIG, "shift": 3.0, "use_dynamic_shifting": True}
CONFIGS = {"schnell": SCHNELL_CONFIG, "dev": DEV_CONFIG}
VAE_SCALE_FACTOR = 8


# ---- BFL sampling.py (transcribed) ----
def get_lin_function(x1: float = 256, y1: float = 0.5, x2: float = 4096, y2: float = 1.15) -> Callable[[float], float]:
    m = (y2 - y1) / (x2 - x1)
    b = y1 - m * x1
    return lambda x: m * x + b


def time_shift(mu: float, sigma: float, t: torch.Tensor):
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** sigma)


def get_schedule(num_steps: int, image_seq_len: int, base_shift: float = 0.5, max_shift: float = 1.15,
                 shift: bool = True) -> list[float]:
    # extra step for zero
    timesteps = torch.linspace(1, 0, num_steps + 1)
    # shifting the schedule to favor high timesteps for higher signal images
    if shift:
        # estimate mu based on linear estimation between two points
        mu = get_lin_function(y1=base_shift, y2=max_shift)(image_seq_len)
        timesteps = time_shift(mu, 1.0, timesteps)
    return timesteps.tolist()


# ---- diffusers, driven like FluxPipeline.__call__ ----
def image_seq_len(width: int, height: int) -> int:
    return (int(height) // VAE_SCALE_FACTOR // 2) * (int(width) // VAE_SCALE_FACTOR // 2)


def diffusers_schedule(variant: str, n: int, width: int, height: int):
    sched = FlowMatchEulerDiscreteScheduler.from_config(CONFIGS[variant])
    sigmas = np.linspace(1.0, 1 / n, n)
    cfg = sched.config
    mu = calculate_shift(image_seq_len(width, height), cfg.get("base_image_seq_len", 256),
                         cfg.get("max_image_seq_len", 4096), cfg.get("base_shift", 0.5), cfg.get("max_shift", 1.15))
    timesteps, n_out = retrieve_timesteps(sched, n, "cpu", sigmas=sigmas, mu=mu)
    assert n_out == n
    return sched, timesteps, mu


def f32list(t: torch.Tensor) -> list[float]:
    assert t.dtype == torch.float32, t.dtype
    return [float(v) for v in t.tolist()]


def gen_schedules() -> None:
    steps = [1, 2, 4, 8, 28, 50]
    sizes = {"schnell": [(512, 512), (1024, 576)],
             "dev": [(128, 128), (256, 256), (512, 512), (1024, 1024), (256, 512), (768, 384), (1024, 576), (448, 832)]}
    cases = []
    for variant in ("schnell", "dev"):
        for n in steps:
            for (w, h) in sizes[variant]:
                sched, timesteps, mu = diffusers_schedule(variant, n, w, h)
                model_t = timesteps.to(torch.float32) / 1000  # what FluxPipeline passes as `timestep`
                bfl = get_schedule(n, image_seq_len(w, h), shift=(variant == "dev"))
                cases.append({
                    "variant": variant, "steps": n, "width": w, "height": h, "image_seq_len": image_seq_len(w, h),
                    "mu": mu, "sigmas": f32list(sched.sigmas), "timesteps": f32list(timesteps),
                    "model_timesteps": f32list(model_t), "bfl": [float(v) for v in bfl],
                })
    out = {"generator": "test/reference/gen_core.py", "versions": versions(),
           "scheduler_configs": CONFIGS, "cases": cases}
    path = fixture_path("core", "schedules.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"wrote {path}: {len(cases)} cases")


def gen_img2img() -> None:
    rows = []
    for variant in ("schnell", "dev"):
        for n in [1, 2, 3, 4, 7, 8, 10, 28, 50]:
            for strength in [0.0, 0.01, 0.1, 0.2, 0.25, 0.3, 0.33, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 0.95, 0.99, 1.0]:
                sched, _, _ = diffusers_schedule(variant, n, 512, 512)
                stub = types.SimpleNamespace(scheduler=sched)
                timesteps, steps = FluxImg2ImgPipeline.get_timesteps(stub, n, strength, "cpu")
                rows.append({"variant": variant, "steps_in": n, "strength": strength,
                             "t_start": sched.begin_index, "steps": steps,
                             "timesteps": f32list(timesteps)})
    out = {"generator": "test/reference/gen_core.py", "versions": versions(),
           "note": "FluxImg2ImgPipeline.get_timesteps on a stub holding the real scheduler (512x512); "
                   "the pipeline raises ValueError when steps < 1 (strength 0)", "rows": rows}
    path = fixture_path("core", "img2img.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"wrote {path}: {len(rows)} rows")


def gen_packing() -> None:
    t = {}
    for (w, h, b) in [(256, 512, 2), (768, 384, 1), (128, 128, 2)]:
        lh = 2 * (int(h) // (VAE_SCALE_FACTOR * 2))
        lw = 2 * (int(w) // (VAE_SCALE_FACTOR * 2))
        n = b * 16 * lh * lw
        x = torch.arange(n, dtype=torch.float32).reshape(b, 16, lh, lw)  # input rebuilt as arange in the test
        packed = FluxPipeline._pack_latents(x, b, 16, lh, lw)
        # unpack an arange of the packed shape (a different permutation than the inverse of pack's input)
        y = torch.arange(n, dtype=torch.float32).reshape(packed.shape)
        unpacked = FluxPipeline._unpack_latents(y, h, w, VAE_SCALE_FACTOR)
        assert torch.equal(FluxPipeline._unpack_latents(packed, h, w, VAE_SCALE_FACTOR), x)
        ids = FluxPipeline._prepare_latent_image_ids(b, lh // 2, lw // 2, "cpu", torch.float32)
        key = f"{w}x{h}_b{b}"
        t[f"{key}.packed"] = packed
        t[f"{key}.unpacked"] = unpacked
        t[f"{key}.img_ids"] = ids
    save("core", "packing.safetensors", t,
         note="inputs are arange(n) float32 of the latent shape [B,16,2*(H//16),2*(W//16)] (packed) "
              "and of the packed shape [B,L,64] (unpacked)")


def fake_velocity(x: torch.Tensor, t: torch.Tensor, g: torch.Tensor | None, c1, c2, c3) -> torch.Tensor:
    """A linear 'flow model' with the FlowModel signature: v = x*c1 + t*c2 (+ g*c3)."""
    v = x * c1 + t[:, None, None] * c2
    if g is not None:
        v = v + g[:, None, None] * c3
    return v


def run_loop(variant: str, n: int, width: int, height: int, latents: torch.Tensor, consts, guidance_scale=None,
             strength=None, image_latents=None, noise=None):
    """FluxPipeline / FluxImg2ImgPipeline denoising loop with the real scheduler; returns (sigmas, t_start, states)."""
    sched, timesteps, _ = diffusers_schedule(variant, n, width, height)
    b = latents.shape[0]
    if strength is not None:
        stub = types.SimpleNamespace(scheduler=sched)
        timesteps, _ = FluxImg2ImgPipeline.get_timesteps(stub, n, strength, "cpu")
        latent_timestep = timesteps[:1].repeat(b)
        latents = sched.scale_noise(image_latents, latent_timestep, noise)
        t_start = sched.begin_index
    else:
        sched.set_begin_index(0)
        t_start = 0
    guidance = None
    if guidance_scale is not None:
        guidance = torch.full([1], guidance_scale, dtype=torch.float32).expand(b)
    states = [latents]
    for t in timesteps:
        timestep = t.expand(b).to(latents.dtype)
        v = fake_velocity(latents, timestep / 1000, guidance, *consts)
        latents = sched.step(v, t, latents, return_dict=False)[0]
        states.append(latents)
    return sched.sigmas, t_start, states


def gen_denoise() -> None:
    seed(0)
    b, l, c = 2, 16, 64
    x = torch.randn(b, l, c)
    consts = (torch.randn(l, c) * 0.5, torch.randn(l, c), torch.randn(l, c) * 0.1)
    t = {"x": x, "c1": consts[0], "c2": consts[1], "c3": consts[2]}
    # schnell, 4 steps (no guidance input)
    sigmas, _, states = run_loop("schnell", 4, 512, 512, x, consts)
    t["schnell4.sigmas"] = sigmas
    t["schnell4.states"] = torch.stack(states)
    # dev, 8 steps at 768x384, guidance 3.5
    sigmas, _, states = run_loop("dev", 8, 768, 384, x, consts, guidance_scale=3.5)
    t["dev8.sigmas"] = sigmas
    t["dev8.states"] = torch.stack(states)
    # img2img: dev 10 steps, strength 0.6 from image latents x0 with noise (scale_noise then the loop from t_start)
    x0 = torch.randn(b, l, c)
    noise = torch.randn(b, l, c)
    sigmas, t_start, states = run_loop("dev", 10, 512, 512, x, consts, guidance_scale=3.5, strength=0.6,
                                       image_latents=x0, noise=noise)
    t["img2img.x0"] = x0
    t["img2img.noise"] = noise
    t["img2img.sigmas"] = sigmas
    t["img2img.t_start"] = torch.tensor([t_start], dtype=torch.int32)
    t["img2img.states"] = torch.stack(states)
    save("core", "denoise.safetensors", t,
         note="fake FlowModel v = x*c1 + t*c2 (+ g*c3 with guidance), t = timestep/1000 as FluxPipeline passes it; "
              "states[0] is the start latent, states[i] after step i (scheduler.step, float32)")


if __name__ == "__main__":
    seed(0)
    gen_schedules()
    gen_img2img()
    gen_packing()
    gen_denoise()
