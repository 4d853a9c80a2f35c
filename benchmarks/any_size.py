"""Non-integer and large factors: which way to reach x1.5, x2.5, x3 or x8 scores best.

    SISR_DATA=../shared/data python benchmarks/any_size.py [-n default] [-d Set14]
        [--factors 1.5 2.5 3 8]

For each factor s, every HR image is cut to a multiple that makes the LR size whole where
possible and downscaled to ``round(H / s) x round(W / s)`` with the MATLAB bicubic; each way
brings it back to the HR size: bicubic alone; the network at each trained scale k (then the
antialiased bicubic resize to the exact size: a downscale when k > s, an upscale when k < s);
and every sequence of two or three passes (x4 then x2, ...). Y-PSNR against the HR (border of
ceil(s) pixels), the paper protocol of ``sisr eval``. ``sisr upscale -s`` uses the plan of
:func:`plan_passes` (x2 first, then the smallest scale that reaches the rest), chosen by
this measurement.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys

import numpy as np
import torch


def ways(factor: float, scales: list[int]) -> list[tuple[int, ...]]:
    """Bicubic (``()``), each single scale, and the 2- and 3-pass sequences up to 2 x s."""
    out: list[tuple[int, ...]] = [()]
    out += [(k,) for k in scales]
    for n in (2, 3):
        for seq in itertools.product(scales, repeat=n):
            if factor <= math.prod(seq) <= 2 * factor and math.prod(seq[:-1]) < factor:
                out.append(seq)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--model", default="default")
    ap.add_argument("-d", "--data", default="Set14")
    ap.add_argument("--factors", type=float, nargs="+", default=[1.5, 2.5, 3.0, 8.0])
    args = ap.parse_args()

    from sisr.degrade import imresize_uint8
    from sisr.evaluate.runner import read_images
    from sisr.infer import Upscaler
    from sisr.infer.any_size import plan_passes, resize_exact
    from sisr.metrics import psnr_y

    scales = [2, 3, 4]
    ups = {k: Upscaler.from_name(args.model, scale=k, device="cpu", progress=False) for k in scales}
    images = read_images(args.data)
    print(f"{args.model} on {args.data}: Y-PSNR (dB) of each way back to the HR size")
    for s in args.factors:
        rows = []
        for seq in ways(s, scales):
            scores = []
            for _, hr in images:
                h, w = hr.shape[-2:]
                lr_hw = (max(1, round(h / s)), max(1, round(w / s)))
                lr = imresize_uint8(hr, size=lr_hw).permute(1, 2, 0).numpy()
                x = lr
                for k in seq:
                    x, _ = ups[k].upscale_arrays(x)
                sr = resize_exact(np.ascontiguousarray(x), (h, w))
                sr_t = torch.from_numpy(sr).permute(2, 0, 1)
                scores.append(float(psnr_y(sr_t, hr, border=math.ceil(s))))
            name = "bicubic" if not seq else " then ".join(f"x{k}" for k in seq)
            rows.append((float(np.mean(scores)), name))
        chosen = " then ".join(f"x{k}" for k in plan_passes(s, scales))
        best = max(rows)[1]
        print(f"x{s:g}: default way {chosen}; best {best}")
        for score, name in sorted(rows, reverse=True):
            print(f"    {name:24} {score:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
