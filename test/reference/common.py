"""Shared helpers for the fixture scripts in test/reference/ (one script per area).

Every script: seeds torch with `seed()`, builds tiny random modules with the real reference code, and
writes float32, contiguous tensors with `save()`. The safetensors header (`__metadata__`) records the
script, the versions of python/torch/diffusers/transformers/safetensors/numpy that produced the file, and
a note on what the tensors are (key `generated_by`).
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata as importlib_metadata

import torch
from safetensors.torch import save_file

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(REPO_ROOT, "test", "fixtures")


def seed(s: int = 0) -> None:
    """Deterministic, single-threaded CPU float32 math."""
    torch.manual_seed(s)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for pkg in ("diffusers", "transformers", "safetensors", "numpy"):
        try:
            out[pkg] = importlib_metadata.version(pkg)
        except importlib_metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def fixture_path(area: str, name: str) -> str:
    d = os.path.join(FIXTURES, area)
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, name)


def save(area: str, name: str, tensors: dict[str, torch.Tensor], note: str = "") -> str:
    """Writes test/fixtures/<area>/<name> with every tensor as contiguous float32 (ints stay int)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        v = v.detach().cpu()
        if v.is_floating_point():
            v = v.to(torch.float32)
        out[k] = v.contiguous()
    # One metadata key: safetensors writes its metadata map in hash order, so several keys would make
    # the bytes differ from run to run.
    info = "test/reference/" + os.path.basename(sys.argv[0]) + " with " + ", ".join(f"{k} {v}" for k, v in versions().items())
    meta = {"generated_by": info + (". " + note if note else "")}
    path = fixture_path(area, name)
    save_file(out, path, metadata=meta)
    size = os.path.getsize(path)
    print(f"wrote {os.path.relpath(path, REPO_ROOT)} ({size} bytes): " + ", ".join(f"{k}{list(v.shape)}" for k, v in out.items()))
    return path


def assert_close(a: torch.Tensor, b: torch.Tensor, what: str, tol: float = 1e-6) -> None:
    """Cross-check two reference implementations before writing a fixture."""
    err = ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()
    if not err <= tol:
        raise SystemExit(f"cross-check failed: {what}: relL2 {err:.3e} > {tol:.1e}")
    print(f"cross-check ok: {what}: relL2 {err:.2e}")
