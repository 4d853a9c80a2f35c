"""CPU speed of the efficient-SR architectures beside the default model: output megapixels per
second at x4, fp32, through sisr's Upscaler (whole image, no tiling), same thread count for all,
rounds interleaved so that machine noise hits every model alike.

    python benchmarks/efficient_speed.py [--size 256] [--threads 2] [--rounds 3]

Each network is its published file where ``../shared/peers/weights`` has one (the published
width), else its preset with random weights (speed does not depend on the values).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

# name -> (peer file or None, preset used when the file is absent or None)
MODELS: dict[str, tuple[str | None, str]] = {
    "default-x4 (span-t)": (None, "default-x4"),
    "imdn": (None, "imdn"),
    "imdn-rtc": (None, "imdn-rtc"),
    "rfdn (AIM 2020)": ("njulj_RFDN_AIM.pth", "rfdn"),
    "rlfn (NTIRE 2022 team04)": ("ntire2022_team04_rlfn.pth", "rlfn"),
    "rlfn": (None, "rlfn"),
    "bsrn-s (NTIRE 2022 team18)": ("ntire2022_team18_bsrn.pth", "bsrn-s"),
    "bsrn": (None, "bsrn"),
    "safmn": (None, "safmn"),
    "safmn (NTIRE 2023 team15)": ("safmn_ntire2023_team15_SAFMN.pth", "safmn"),
    "safmn++": (None, "safmn++"),
    "fmen (deploy)": (None, "fmen"),
    "pan": ("pan_PANx4_DF2K.pth", "pan"),
    "carn": (None, "carn"),
    "carn-m": ("carn_m.pth", "carn-m"),
}


def _peers() -> Path:
    here = Path(__file__).resolve().parents[2]
    return Path(os.environ.get("SISR_PEERS_WEIGHTS", here / "shared" / "peers" / "weights"))


def _load(label: str, scale: int) -> tuple[Any, str]:
    import torch

    from sisr.archs import build
    from sisr.hub.load import load_model

    peer, preset = MODELS[label]
    if peer is not None and (_peers() / peer).is_file():
        return load_model(_peers() / peer, scale=scale, progress=False), "published file"
    if preset.startswith("default"):
        return load_model(preset, progress=False), "shipped"
    torch.manual_seed(0)
    model = build(preset, scale).eval()
    fuse = getattr(model, "reparameterize", None)
    if callable(fuse):
        fuse()
    return model, "preset"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="LR side (256 -> 1 output Mpx at x4)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scale", type=int, default=4)
    args = ap.parse_args()

    import numpy as np
    import torch

    from sisr.archs.complexity import count_params
    from sisr.infer import Upscaler

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0 : args.size, 0 : args.size]
    base = 128 + 80 * np.sin(xx / 9.0)[..., None] * np.cos(yy / 7.0)[..., None]
    img = np.clip(base + rng.normal(0, 6, (args.size, args.size, 3)), 0, 255).astype(np.uint8)
    ups = {}
    for label in MODELS:
        model, source = _load(label, args.scale)
        params = count_params(model)  # before the Upscaler freezes the parameters
        up = Upscaler(model, device="cpu", precision="fp32", tile=0)
        up(img)  # warm-up (oneDNN primitive creation)
        ups[label] = (up, source, params)
    best = {label: float("inf") for label in MODELS}
    for _ in range(args.rounds):
        for label, (up, _, _) in ups.items():
            t0 = time.perf_counter()
            up(img)
            best[label] = min(best[label], time.perf_counter() - t0)
    mp = (args.size * args.scale) ** 2 / 1e6
    print(
        f"x{args.scale}, {args.size}x{args.size} LR, fp32, {args.threads} threads, best of "
        f"{args.rounds} interleaved rounds"
    )
    print("| network | weights | params | output MP/s |")
    print("|---|---|---|---|")
    for label, (_, source, params) in ups.items():
        print(f"| {label} | {source} | {params / 1e3:.1f} k | {mp / best[label]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
