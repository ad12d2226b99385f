"""Parity fixtures for the FLUX transformer: packages/flux/src/transformer/*.ts.

Run:
    git -C <mirror of black-forest-labs/flux> archive 802fb47 src/flux | tar -x -C /tmp/bfl
    BFL_FLUX_SRC=/tmp/bfl/src test/reference/.venv/bin/python test/reference/gen_transformer.py

BFL_FLUX_SRC is a directory holding BFL's `flux` package (https://github.com/black-forest-labs/flux at 802fb47,
`src/`); BFL is not on PyPI, so its code is imported from there and never copied into this repo. It needs `einops`
(pip install einops==0.8.2 into the venv). Deterministic: torch.manual_seed, one thread, float32 everywhere.

For each of two tiny random configs (schnell-like: no guidance; dev-like: guidance embedding) this script
1. builds BFL's `Flux` (src/flux/model.py) with seeded random weights (norm scales and biases randomised too);
2. converts the BFL state dict with diffusers' own converter
   (`convert_flux_transformer_checkpoint_to_diffusers`, diffusers/loaders/single_file_utils.py). NOTE: that
   converter hardcodes `inner_dim = 3072` for the single-block linear1 split, so its source is re-executed with
   `inner_dim` set to the tiny hidden size; nothing else is changed;
3. loads the converted weights strictly into diffusers' `FluxTransformer2DModel` and runs both models on the same
   inputs; the two outputs must agree (relL2 <= 1e-5) before anything is written;
4. writes, under test/fixtures/transformer/:
   <name>.bfl.safetensors        the weights with BFL keys
   <name>.diffusers.safetensors  the same weights with diffusers keys
   <name>.config.json            diffusers config.json of the model
   <name>.io.safetensors         inputs, both outputs, and per-module intermediates captured with hooks on BFL's
                                 modules (EmbedND, timestep embedding, vec, double block 0, single block 0,
                                 final layer) so a failure points at a module.
"""

from __future__ import annotations

import inspect
import json
import os
import sys

import torch

from common import assert_close, fixture_path, save, seed

AREA = "transformer"

src = os.environ.get("BFL_FLUX_SRC")
if not src or not os.path.isdir(os.path.join(src, "flux")):
    raise SystemExit("set BFL_FLUX_SRC to the `src` directory of black-forest-labs/flux at 802fb47 (see the docstring)")
sys.path.insert(0, src)
try:
    import einops  # noqa: F401  (BFL's modules need it)
except ImportError:
    raise SystemExit("BFL's flux modules need einops: test/reference/.venv/bin/pip install einops==0.8.2")

from flux.model import Flux, FluxParams  # noqa: E402
from flux.modules.layers import timestep_embedding  # noqa: E402

import diffusers.loaders.single_file_utils as sfu  # noqa: E402
from diffusers import FluxTransformer2DModel  # noqa: E402


def converter(inner_dim: int):
    """diffusers' BFL -> diffusers converter, with its hardcoded `inner_dim = 3072` replaced by `inner_dim`."""
    code = inspect.getsource(sfu.convert_flux_transformer_checkpoint_to_diffusers)
    assert code.count("inner_dim = 3072") == 1, "diffusers converter changed: re-check the inner_dim patch"
    code = code.replace("inner_dim = 3072", f"inner_dim = {inner_dim}")
    ns = dict(sfu.__dict__)
    exec(compile(code, sfu.__file__, "exec"), ns)
    return ns["convert_flux_transformer_checkpoint_to_diffusers"]


def randomize(model: torch.nn.Module) -> None:
    for name, p in model.named_parameters():
        if name.endswith(".scale"):  # RMSNorm scales (QKNorm)
            p.copy_(1.0 + 0.2 * torch.randn_like(p))
        elif name.endswith(".bias"):
            p.copy_(0.1 * torch.randn_like(p))
        else:  # Linear weight [out, in]
            p.copy_(torch.randn_like(p) / p.shape[1] ** 0.5)


def image_ids(b: int, h: int, w: int) -> torch.Tensor:
    """BFL sampling.prepare: token (r, c) -> (0, r, c), row-major. [B, h*w, 3]"""
    ids = torch.zeros(h, w, 3)
    ids[..., 1] = ids[..., 1] + torch.arange(h)[:, None]
    ids[..., 2] = ids[..., 2] + torch.arange(w)[None, :]
    return ids.reshape(1, h * w, 3).repeat(b, 1, 1)


@torch.no_grad()
def gen(name: str, p: FluxParams, b: int, h: int, w: int, l_txt: int, t: list[float], guidance: list[float] | None) -> None:
    model = Flux(p).float().eval()
    randomize(model)
    bfl_sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}

    diff_sd = converter(p.hidden_size)(dict(bfl_sd))
    head_dim = p.hidden_size // p.num_heads
    dmodel = FluxTransformer2DModel(
        patch_size=1, in_channels=p.in_channels, out_channels=p.out_channels, num_layers=p.depth,
        num_single_layers=p.depth_single_blocks, attention_head_dim=head_dim, num_attention_heads=p.num_heads,
        joint_attention_dim=p.context_in_dim, pooled_projection_dim=p.vec_in_dim, guidance_embeds=p.guidance_embed,
        axes_dims_rope=tuple(p.axes_dim),
    ).float().eval()
    missing, unexpected = dmodel.load_state_dict(diff_sd, strict=True)
    assert not missing and not unexpected

    img = torch.randn(b, h * w, p.in_channels)
    img_ids = image_ids(b, h, w)
    txt = torch.randn(b, l_txt, p.context_in_dim)
    txt_ids = torch.zeros(b, l_txt, 3)
    y = torch.randn(b, p.vec_in_dim)
    timesteps = torch.tensor(t)
    g = torch.tensor(guidance) if guidance is not None else None

    cap: dict[str, torch.Tensor] = {}

    def hook(tag, with_inputs):
        def fn(mod, args, kwargs, out):
            if with_inputs:
                names = list(inspect.signature(mod.forward).parameters)
                for n, a in zip(names, args):
                    kwargs = {**kwargs, n: a}
                for k, v in kwargs.items():
                    cap[f"{tag}.in.{k}"] = v
            if isinstance(out, tuple):
                for i, o in enumerate(out):
                    cap[f"{tag}.out.{i}"] = o
            else:
                cap[f"{tag}.out"] = out
        return fn

    hs = [
        model.pe_embedder.register_forward_hook(hook("pe_embedder", True), with_kwargs=True),
        model.time_in.register_forward_hook(hook("time_in", True), with_kwargs=True),
        model.double_blocks[0].register_forward_hook(hook("double_blocks.0", True), with_kwargs=True),
        model.single_blocks[0].register_forward_hook(hook("single_blocks.0", True), with_kwargs=True),
        model.final_layer.register_forward_hook(hook("final_layer", True), with_kwargs=True),
    ]
    out_bfl = model(img=img, img_ids=img_ids, txt=txt, txt_ids=txt_ids, timesteps=timesteps, y=y, guidance=g)
    for hnd in hs:
        hnd.remove()

    out_diff = dmodel(hidden_states=img, encoder_hidden_states=txt, pooled_projections=y, timestep=timesteps,
                      img_ids=img_ids[0], txt_ids=txt_ids[0], guidance=g, return_dict=False)[0]
    assert_close(out_diff, out_bfl, f"{name}: diffusers FluxTransformer2DModel vs BFL Flux", tol=1e-5)
    assert_close(timestep_embedding(timesteps, 256), cap["time_in.in.x"], f"{name}: timestep embedding capture", tol=0)

    io = {
        "img": img, "img_ids": img_ids, "txt": txt, "txt_ids": txt_ids, "timesteps": timesteps, "y": y,
        "out_bfl": out_bfl, "out_diffusers": out_diff,
        "t_emb": cap["time_in.in.x"],  # timestep_embedding(timesteps, 256)
        "pe": cap["pe_embedder.out"],  # EmbedND(cat(txt_ids, img_ids)) [B,1,L,head_dim/2,2,2]
        "vec": cap["double_blocks.0.in.vec"],
        "double0.img": cap["double_blocks.0.in.img"], "double0.txt": cap["double_blocks.0.in.txt"],
        "double0.out_img": cap["double_blocks.0.out.0"], "double0.out_txt": cap["double_blocks.0.out.1"],
        "single0.x": cap["single_blocks.0.in.x"], "single0.out": cap["single_blocks.0.out"],
        "final.x": cap["final_layer.in.x"],  # final_layer(final.x, vec) == out_bfl
    }
    if g is not None:
        io["guidance"] = g
    assert torch.equal(cap["final_layer.out"], out_bfl)
    save(AREA, f"{name}.io.safetensors", io, note=f"BFL Flux and diffusers FluxTransformer2DModel on {name}: inputs, outputs, hooked intermediates")
    save(AREA, f"{name}.bfl.safetensors", bfl_sd, note=f"random BFL Flux weights ({name}), BFL keys")
    save(AREA, f"{name}.diffusers.safetensors", diff_sd, note=f"the same weights converted by diffusers' convert_flux_transformer_checkpoint_to_diffusers")
    cfg = {k: v for k, v in dict(dmodel.config).items() if not k.startswith("_")}
    cfg["_class_name"] = "FluxTransformer2DModel"
    cfg["axes_dims_rope"] = list(cfg["axes_dims_rope"])
    with open(fixture_path(AREA, f"{name}.config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def main() -> None:
    seed(0)
    # schnell-like: no guidance embedding, in_channels 16 (4 latent channels x 2x2), non-square 3x5 latent grid
    gen("schnell-tiny", FluxParams(
        in_channels=16, out_channels=16, vec_in_dim=24, context_in_dim=32, hidden_size=64, mlp_ratio=4.0,
        num_heads=4, depth=2, depth_single_blocks=2, axes_dim=[4, 6, 6], theta=10_000, qkv_bias=True,
        guidance_embed=False,
    ), b=2, h=3, w=5, l_txt=7, t=[0.75, 0.3125], guidance=None)
    # dev-like: guidance embedding, in_channels 64 (as FLUX.1), 4x2 latent grid, 3 heads
    gen("dev-tiny", FluxParams(
        in_channels=64, out_channels=64, vec_in_dim=24, context_in_dim=32, hidden_size=48, mlp_ratio=4.0,
        num_heads=3, depth=1, depth_single_blocks=2, axes_dim=[4, 6, 6], theta=10_000, qkv_bias=True,
        guidance_embed=True,
    ), b=2, h=4, w=2, l_txt=5, t=[1.0, 0.5], guidance=[3.5, 5.0])


if __name__ == "__main__":
    main()
