"""Upscaling real photos: models scored on fixed, seeded realistic degradations of Set14 and
B100, and on the clean bicubic LR (what a photo model costs on clean input).

    SISR_DATA=../shared/data python benchmarks/photo_eval.py -s 2 \\
        -m bicubic -m default-x2 -m runs/photo_x2/model.safetensors [-d Set14 -d B100]

The degradation of image ``i`` (files in name order) of a set draws from
``numpy.random.default_rng([seed, i])`` (``--seed``, default 0), in this order:

1. blur the (modcropped) HR with an isotropic Gaussian, sigma uniform in 0.3..1.2 px,
   kernel ``2 * ceil(3 sigma) + 1``, reflect padding, rounded to uint8;
2. MATLAB-bicubic downscale by the scale (``imresize(hr, 1/s)``);
3. Gaussian noise, sigma uniform in 1..5 on 0..255 (``torch.Generator`` seeded with
   ``[seed, i]``'s next integer), rounded and saturated;
4. JPEG (Pillow, 4:2:0) at a quality uniform in 30..90.

Scores: Y-PSNR / SSIM against the clean HR (BT.601 Y, ``scale`` border pixels removed), the
paper protocol of ``sisr eval``.

``--montage DIR`` also writes, for each ``--montage-image`` (default ``Set14/comic``), its
degraded LR (``DIR/<image>_lr.png``, the exact input the table scored) and a ``sisr compare``
figure of that LR upscaled by every model beside the HR (``DIR/<image>_compare.png``).
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import torch

BLUR = (0.3, 1.2)
NOISE = (1.0, 5.0)
JPEG = (30, 90)


def degrade(hr: torch.Tensor, scale: int, rng: np.random.Generator) -> torch.Tensor:
    """(3, H, W) uint8, H and W multiples of ``scale`` -> (3, H/s, W/s) uint8 (docstring)."""
    from sisr.degrade import imresize_uint8
    from sisr.degrade.ops import add_gaussian_noise, gaussian_blur, jpeg, to_uint8

    sigma = float(rng.uniform(*BLUR))
    size = 2 * math.ceil(3 * sigma) + 1
    blurred = to_uint8(gaussian_blur(hr.float()[None], sigma, size=size, padding="reflect"))
    lr = imresize_uint8(blurred, scale=1 / scale)
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    noisy = add_gaussian_noise(lr, float(rng.uniform(*NOISE)), gen)
    return jpeg(noisy, int(rng.integers(JPEG[0], JPEG[1] + 1)))[0]


def pairs(name: str, scale: int, seed: int, degraded: bool) -> list:
    from sisr.evaluate.runner import EvalPair, make_pairs, read_images

    clean = make_pairs(read_images(name), scale)
    if not degraded:
        return clean
    return [
        EvalPair(p.name, p.hr, degrade(p.hr, scale, np.random.default_rng([seed, i])))
        for i, p in enumerate(sorted(clean, key=lambda p: p.name))
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", action="append", required=True, help="name or file")
    ap.add_argument("-s", "--scale", type=int, default=2)
    ap.add_argument("-d", "--data", action="append", help="sets (default Set14 and B100)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--montage", metavar="DIR", help="write degraded LR + sisr compare figures")
    ap.add_argument(
        "--montage-image", action="append", metavar="SET/NAME", help="default Set14/comic"
    )
    args = ap.parse_args()

    from sisr.evaluate.runner import evaluate

    sets = args.data or ["Set14", "B100"]
    print(f"x{args.scale}, Y-PSNR (dB) / SSIM; degraded: blur {BLUR}, noise {NOISE}, JPEG {JPEG}")
    print(
        f"{'model':40} " + " ".join(f"{s + ' ' + k:>22}" for s in sets for k in ("clean", "degr."))
    )
    inputs = {(s, d): pairs(s, args.scale, args.seed, d) for s in sets for d in (False, True)}
    for model in args.model:
        cells = []
        for s in sets:
            for d in (False, True):
                r = evaluate(model, inputs[(s, d)], args.scale, device=args.device)
                cells.append(f"{r.psnr_y:.2f} / {r.ssim_y:.4f}")
        print(f"{model:40} " + " ".join(f"{c:>22}" for c in cells), flush=True)
    if args.montage:
        for item in args.montage_image or ["Set14/comic"]:
            montage(item, args, inputs)
    return 0


def montage(item: str, args: argparse.Namespace, inputs: dict) -> None:
    """The degraded LR of one image (as scored above) and its ``sisr compare`` figure."""
    from pathlib import Path

    from sisr.cli.main import main as sisr_main
    from sisr.io import write_uint8

    set_name, _, stem = item.partition("/")
    if (set_name, True) not in inputs:
        inputs[(set_name, True)] = pairs(set_name, args.scale, args.seed, True)
        inputs[(set_name, False)] = pairs(set_name, args.scale, args.seed, False)
    by_name = {Path(p.name).stem: p for p in inputs[(set_name, False)]}
    lr_by_name = {Path(p.name).stem: p for p in inputs[(set_name, True)]}
    if stem not in by_name:
        raise SystemExit(f"--montage-image {item}: no image {stem!r} in {set_name}")
    clean, degraded = by_name[stem], lr_by_name[stem]
    out = Path(args.montage)
    out.mkdir(parents=True, exist_ok=True)
    hr_path, lr_path = out / f"{stem}_hr.png", out / f"{stem}_lr.png"
    write_uint8(hr_path, clean.hr.permute(1, 2, 0).numpy())
    write_uint8(lr_path, degraded.lr.permute(1, 2, 0).numpy())
    argv = ["compare", "-i", str(hr_path), "--lr", str(lr_path), "-s", str(args.scale)]
    for model in args.model:
        argv += ["-m", model]
    argv += ["-o", str(out / f"{stem}_compare.png"), "--device", args.device]
    print("sisr " + " ".join(argv), flush=True)
    if sisr_main(argv) != 0:
        raise SystemExit(f"sisr compare failed for {item}")


if __name__ == "__main__":
    sys.exit(main())
