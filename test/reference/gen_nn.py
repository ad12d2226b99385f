"""Fixtures for the basic ops: packages/flux/src/nn/*.ts and packages/flux/src/math.ts.

Run: test/reference/.venv/bin/python test/reference/gen_nn.py
Writes test/fixtures/nn/*.safetensors (float32). Deterministic (torch.manual_seed(0), one thread).

Reference code used:
- torch.nn.Linear, torch.nn.LayerNorm, torch.nn.GELU(approximate="tanh"),
  torch.nn.functional.scaled_dot_product_attention (what BFL's `attention` calls).
- BFL flux at 802fb47 (https://github.com/black-forest-labs/flux/tree/802fb47): `rope`, `apply_rope`,
  `attention` (src/flux/math.py), `timestep_embedding`, `EmbedND`, `RMSNorm` (src/flux/modules/layers.py).
  BFL's package is not on PyPI, so those functions are transcribed below verbatim except that einops'
  `rearrange` is spelled with reshape/permute. Each transcription is cross-checked against the independent
  diffusers implementation (FluxPosEmbed + apply_rotary_emb, get_timestep_embedding) or torch's own op
  before anything is written.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from common import assert_close, save, seed

AREA = "nn"


# ---- BFL src/flux/math.py @ 802fb47 (rearrange -> reshape/permute) -------------------------------------
def bfl_attention(q: Tensor, k: Tensor, v: Tensor, pe: Tensor) -> Tensor:
    q, k = bfl_apply_rope(q, k, pe)
    x = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    B, H, L, D = x.shape
    x = x.permute(0, 2, 1, 3).reshape(B, L, H * D)  # "B H L D -> B L (H D)"
    return x


def bfl_rope(pos: Tensor, dim: int, theta: int) -> Tensor:
    assert dim % 2 == 0
    scale = torch.arange(0, dim, 2, dtype=pos.dtype, device=pos.device) / dim
    omega = 1.0 / (theta**scale)
    out = torch.einsum("...n,d->...nd", pos, omega)
    out = torch.stack([torch.cos(out), -torch.sin(out), torch.sin(out), torch.cos(out)], dim=-1)
    out = out.reshape(*out.shape[:-1], 2, 2)  # "b n d (i j) -> b n d i j", i=2, j=2
    return out.float()


def bfl_apply_rope(xq: Tensor, xk: Tensor, freqs_cis: Tensor) -> tuple[Tensor, Tensor]:
    xq_ = xq.float().reshape(*xq.shape[:-1], -1, 1, 2)
    xk_ = xk.float().reshape(*xk.shape[:-1], -1, 1, 2)
    xq_out = freqs_cis[..., 0] * xq_[..., 0] + freqs_cis[..., 1] * xq_[..., 1]
    xk_out = freqs_cis[..., 0] * xk_[..., 0] + freqs_cis[..., 1] * xk_[..., 1]
    return xq_out.reshape(*xq.shape).type_as(xq), xk_out.reshape(*xk.shape).type_as(xk)


# ---- BFL src/flux/modules/layers.py @ 802fb47 -----------------------------------------------------------
def bfl_embed_nd(ids: Tensor, theta: int, axes_dim: list[int]) -> Tensor:  # EmbedND.forward
    n_axes = ids.shape[-1]
    emb = torch.cat([bfl_rope(ids[..., i], axes_dim[i], theta) for i in range(n_axes)], dim=-3)
    return emb.unsqueeze(1)


def bfl_timestep_embedding(t: Tensor, dim, max_period=10000, time_factor: float = 1000.0):
    t = time_factor * t
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32) / half).to(
        t.device
    )
    args = t[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    if torch.is_floating_point(t):
        embedding = embedding.to(t)
    return embedding


class BflRMSNorm(torch.nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor):
        x_dtype = x.dtype
        x = x.float()
        rrms = torch.rsqrt(torch.mean(x**2, dim=-1, keepdim=True) + 1e-6)
        return (x * rrms).to(dtype=x_dtype) * self.scale


# ---- fixtures -------------------------------------------------------------------------------------------
@torch.no_grad()
def gen_linear() -> None:
    lin = torch.nn.Linear(16, 24)  # weight [out=24, in=16], as stored in checkpoints
    lin_nb = torch.nn.Linear(16, 24, bias=False)
    x = torch.randn(2, 5, 16)
    save(AREA, "linear.safetensors", {
        "weight": lin.weight, "bias": lin.bias, "x": x, "y": lin(x),
        "weight_nobias": lin_nb.weight, "y_nobias": lin_nb(x),
    }, note="torch.nn.Linear(16, 24): y = x W^T + b; *_nobias: bias=False")


@torch.no_grad()
def gen_layer_norm() -> None:
    x = torch.randn(2, 5, 32) * 3.0 + 1.5
    ln = torch.nn.LayerNorm(32, elementwise_affine=False, eps=1e-6)  # every FLUX transformer LayerNorm
    ln_aff = torch.nn.LayerNorm(32, eps=1e-5)  # CLIP-style affine LayerNorm
    ln_aff.weight.normal_(1.0, 0.5)
    ln_aff.bias.normal_(0.0, 0.5)
    save(AREA, "layer_norm.safetensors", {
        "x": x, "y": ln(x),
        "weight": ln_aff.weight, "bias": ln_aff.bias, "y_affine": ln_aff(x),
    }, note="y: LayerNorm(32, elementwise_affine=False, eps=1e-6); y_affine: LayerNorm(32, eps=1e-5) with weight, bias")


@torch.no_grad()
def gen_rms_norm() -> None:
    x = torch.randn(2, 3, 7, 16) * 2.0 + 0.3
    norm = BflRMSNorm(16)
    norm.scale.normal_(1.0, 0.5)
    y = norm(x)
    assert_close(y, torch.nn.functional.rms_norm(x, (16,), norm.scale, eps=1e-6), "BFL RMSNorm vs torch rms_norm")
    save(AREA, "rms_norm.safetensors", {"x": x, "scale": norm.scale, "y": y},
         note="BFL RMSNorm (QKNorm): x * rsqrt(mean(x^2) + 1e-6) * scale, float32")


@torch.no_grad()
def gen_gelu() -> None:
    from transformers.activations import NewGELUActivation  # T5's gelu_new, an independent formula

    x = torch.cat([torch.linspace(-8.0, 8.0, 401), torch.randn(2 * 5 * 16) * 3.0])
    gelu = torch.nn.GELU(approximate="tanh")
    y = gelu(x)
    assert_close(y, NewGELUActivation()(x), "torch GELU(tanh) vs transformers gelu_new")
    save(AREA, "gelu.safetensors", {"x": x, "y": y}, note="torch.nn.GELU(approximate='tanh')")


def image_ids(h: int, w: int, h0: float = 0.0, w0: float = 0.0) -> Tensor:
    """BFL sampling.prepare: image token (i, j) gets (0, i, j), row-major."""
    ids = torch.zeros(h, w, 3)
    ids[..., 1] = ids[..., 1] + torch.arange(h)[:, None] + h0
    ids[..., 2] = ids[..., 2] + torch.arange(w)[None, :] + w0
    return ids.reshape(h * w, 3)


@torch.no_grad()
def gen_rope_attention() -> None:
    from diffusers.models.embeddings import apply_rotary_emb
    from diffusers.models.transformers.transformer_flux import FluxPosEmbed

    B, H, D = 2, 3, 16
    axes_dim, theta = [2, 6, 8], 10000  # sums to D, like [16, 56, 56] for 128
    L_txt, h, w = 4, 2, 3
    L = L_txt + h * w
    # batch 0: the usual grid; batch 1: a shifted grid (different ids per batch element)
    ids = torch.stack([
        torch.cat([torch.zeros(L_txt, 3), image_ids(h, w)]),
        torch.cat([torch.zeros(L_txt, 3), image_ids(h, w, 5.0, 17.0)]),
    ])  # [B, L, 3]

    # rope on one axis: pos [B, L] -> [B, L, d/2, 2, 2]
    pos = ids[..., 2] * 3.0 + 0.5  # fractional, larger angles too
    freqs_axis = bfl_rope(pos, 8, theta)

    pe = bfl_embed_nd(ids, theta, axes_dim)  # [B, 1, L, D/2, 2, 2]
    q, k, v = torch.randn(B, H, L, D), torch.randn(B, H, L, D), torch.randn(B, H, L, D)
    q_rot, k_rot = bfl_apply_rope(q, k, pe)
    out = bfl_attention(q, k, v, pe)

    # cross-check the transcription against diffusers (its own RoPE in float64, applied in real form)
    pos_embed = FluxPosEmbed(theta=theta, axes_dim=axes_dim)
    for b in range(B):
        cos, sin = pos_embed(ids[b])
        assert_close(apply_rotary_emb(q[b:b + 1], (cos, sin)), q_rot[b:b + 1], f"BFL apply_rope vs diffusers (batch {b})")
        assert_close(cos[:, 0::2], pe[b, 0, :, :, 0, 0], f"BFL EmbedND cos vs diffusers FluxPosEmbed (batch {b})")
        assert_close(sin[:, 0::2], pe[b, 0, :, :, 1, 0], f"BFL EmbedND sin vs diffusers FluxPosEmbed (batch {b})")
    # SDPA vs the explicit formula
    ref = torch.softmax((q_rot.double() @ k_rot.double().transpose(-1, -2)) / math.sqrt(D), -1) @ v.double()
    assert_close(out, ref.permute(0, 2, 1, 3).reshape(B, L, H * D), "BFL attention (SDPA) vs explicit softmax")

    save(AREA, "rope.safetensors", {
        "pos": pos, "freqs": freqs_axis,
        "ids": ids, "pe": pe,
        "q": q, "k": k, "q_rot": q_rot, "k_rot": k_rot,
    }, note="BFL rope(pos, 8, 10000) -> freqs [B,L,4,2,2]; EmbedND(ids, theta 10000, axes [2,6,8]) -> pe [B,1,L,8,2,2]; apply_rope(q, k, pe)")

    save(AREA, "attention.safetensors", {
        "q": q, "k": k, "v": v, "pe": pe, "out": out,
        "out_nope": bfl_attention_nope(q, k, v),
    }, note="BFL attention(q, k, v, pe) with q,k,v [B=2,H=3,L=10,D=16] -> [B,L,H*D]; out_nope: SDPA without RoPE")


def bfl_attention_nope(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    x = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    B, H, L, D = x.shape
    return x.permute(0, 2, 1, 3).reshape(B, L, H * D)


@torch.no_grad()
def gen_timestep_embedding() -> None:
    from diffusers.models.embeddings import get_timestep_embedding

    t = torch.tensor([0.0, 0.25, 0.5123, 0.75, 1.0])
    emb = bfl_timestep_embedding(t, 256)  # FLUX: time_in(timestep_embedding(t, 256))
    # diffusers FLUX: Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0) on t * 1000
    ref = get_timestep_embedding(t * 1000, 256, flip_sin_to_cos=True, downscale_freq_shift=0)
    assert_close(emb, ref, "BFL timestep_embedding vs diffusers get_timestep_embedding")
    emb_odd = bfl_timestep_embedding(t, 33, max_period=100, time_factor=10.0)
    save(AREA, "timestep_embedding.safetensors", {"t": t, "emb": emb, "emb_odd": emb_odd},
         note="BFL timestep_embedding(t, 256) (time_factor 1000, max_period 10000); emb_odd: (t, 33, max_period=100, time_factor=10)")


def main() -> None:
    seed(0)
    gen_linear()
    gen_layer_norm()
    gen_rms_norm()
    gen_gelu()
    gen_rope_attention()
    gen_timestep_embedding()


if __name__ == "__main__":
    main()
