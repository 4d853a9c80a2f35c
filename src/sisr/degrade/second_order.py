"""The "second-order" degradation of real photos (Wang et al., Real-ESRGAN, ICCVW 2021).

A camera photo has been blurred, resized, noised and JPEG-compressed, and often all of that a
second time by whoever shared it. Training on MATLAB-bicubic LR teaches a network that edges
are clean, so on a real JPEG it sharpens the blocks and the noise with the detail. Here each
HR patch goes through the chain twice, each image with its own random draws, then to the LR
size and through JPEG once more:

=========  ===========================================  ================================
step       stage 1                                      stage 2
=========  ===========================================  ================================
blur       always; Gaussian, odd size 7..21, isotropic  probability 0.8; sigmas
           or anisotropic (p 0.5 each), sigmas 0.2..3,  0.2..1.5, otherwise as stage 1
           rotation 0..pi
resize     up x1..1.5 (p 0.2), down x0.15..1 (p 0.7),   up x1..1.2 (p 0.3), down
           same size (p 0.1); area / bilinear /         x0.3..1 (p 0.4), same (p 0.3)
           bicubic, equally likely
noise      Gaussian, sigma 1..30 (0..255), grey (the    sigma 1..25, otherwise as stage 1
           same on every channel) with p 0.4
JPEG       quality 30..95                               see below
=========  ===========================================  ================================

Last, the image is resized to ``(ceil(H / s), ceil(W / s))`` (area / bilinear / bicubic) and
JPEG-compressed at quality 30..95, in either order (p 0.5 each). The ranges are the paper's
(its sinc filter and Poisson noise are left out). ``second_order_mild`` (:data:`MILD_FIRST`,
:data:`MILD_SECOND`) is the same chain with milder ranges: blur p 0.7 / 0.5 with sigmas up
to 1.5 / 1.0, down to x0.5 / x0.7, noise up to 10 / 5, JPEG 40..95 / 50..95 (last 40..95),
and a quarter of the images get the plain MATLAB-bicubic LR (:data:`MILD_CLEAN`). Resizes never go below
:data:`MIN_SIDE` pixels, so the blur's reflect padding always fits. Every draw comes from
the ``torch.Generator`` given (CPU), so a seed gives the same LR wherever it runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from sisr.degrade.ops import add_gaussian_noise, filter2d, gaussian_kernels, jpeg

__all__ = [
    "FIRST",
    "MILD_CLEAN",
    "MILD_FIRST",
    "MILD_SECOND",
    "MIN_SIDE",
    "SECOND",
    "Stage",
    "second_order",
]

MIN_SIDE = 24
_MODES = ("area", "bilinear", "bicubic")


@dataclass(frozen=True)
class Stage:
    """The random ranges of one pass of the chain (see the module table)."""

    blur_prob: float
    sigma: tuple[float, float]
    up_prob: float
    up: tuple[float, float]
    down_prob: float
    down: tuple[float, float]
    noise: tuple[float, float]
    gray_noise_prob: float = 0.4
    jpeg: tuple[int, int] = (30, 95)


FIRST = Stage(1.0, (0.2, 3.0), 0.2, (1.0, 1.5), 0.7, (0.15, 1.0), (1.0, 30.0))
SECOND = Stage(0.8, (0.2, 1.5), 0.3, (1.0, 1.2), 0.4, (0.3, 1.0), (1.0, 25.0))
# Milder ranges for a PSNR-oriented model of ordinary photos (phone and camera JPEGs, shared
# once or twice): heavy blur and noise teach a network to over-sharpen and over-smooth, which
# costs it on everything that is not that damaged.
MILD_FIRST = Stage(0.7, (0.2, 1.5), 0.2, (1.0, 1.3), 0.5, (0.5, 1.0), (0.5, 10.0), jpeg=(40, 95))
MILD_CLEAN = 0.25
MILD_SECOND = Stage(0.5, (0.2, 1.0), 0.2, (1.0, 1.2), 0.3, (0.7, 1.0), (0.5, 5.0), jpeg=(50, 95))


def _uniform(lo: float, hi: float, gen: torch.Generator | None) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen, dtype=torch.float64))


def _chance(p: float, gen: torch.Generator | None) -> bool:
    return float(torch.rand((), generator=gen, dtype=torch.float64)) < p


def _blur(x: Tensor, stage: Stage, gen: torch.Generator | None) -> Tensor:
    """x (1, C, H, W) float 0..255 -> same shape, one random Gaussian kernel."""
    size = 2 * int(torch.randint(3, 11, (), generator=gen)) + 1  # 7, 9, ..., 21
    sx = _uniform(*stage.sigma, gen)
    iso = _chance(0.5, gen)
    sy = sx if iso else _uniform(*stage.sigma, gen)
    theta = 0.0 if iso else _uniform(0.0, math.pi, gen)
    size = min(size, 2 * ((min(x.shape[-2:]) - 1) // 2) - 1)  # reflect padding must fit
    k = gaussian_kernels(size, sx, sy, theta, dtype=x.dtype, device=x.device)
    return filter2d(x, k[0], padding="reflect")


def _resize(x: Tensor, size: tuple[int, int], gen: torch.Generator | None) -> Tensor:
    mode = _MODES[int(torch.randint(len(_MODES), (), generator=gen))]
    kwargs = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(x, size=size, mode=mode, **kwargs)


def _random_resize(x: Tensor, stage: Stage, gen: torch.Generator | None) -> Tensor:
    u = float(torch.rand((), generator=gen, dtype=torch.float64))
    if u < stage.up_prob:
        f = _uniform(*stage.up, gen)
    elif u < stage.up_prob + stage.down_prob:
        f = _uniform(*stage.down, gen)
    else:
        return x
    h, w = x.shape[-2:]
    f = max(f, MIN_SIDE / min(h, w))
    return _resize(x, (max(MIN_SIDE, round(h * f)), max(MIN_SIDE, round(w * f))), gen)


def _noise(x: Tensor, stage: Stage, gen: torch.Generator | None) -> Tensor:
    sigma = _uniform(*stage.noise, gen)
    if _chance(stage.gray_noise_prob, gen):
        grey = add_gaussian_noise(x[:, :1], sigma, gen) - x[:, :1]
        return x + grey
    return add_gaussian_noise(x, sigma, gen)


def _jpeg(x: Tensor, stage: Stage, gen: torch.Generator | None) -> Tensor:
    q = int(torch.randint(stage.jpeg[0], stage.jpeg[1] + 1, (), generator=gen))
    return jpeg(x.clamp(0, 255).round().to(torch.uint8), q).float()


def _stage(x: Tensor, stage: Stage, gen: torch.Generator | None) -> Tensor:
    if _chance(stage.blur_prob, gen):
        x = _blur(x, stage, gen)
    x = _random_resize(x, stage, gen)
    x = _noise(x, stage, gen).clamp(0, 255)
    return _jpeg(x, stage, gen)


def _one(
    hr: Tensor, scale: int, gen: torch.Generator | None, stages: tuple[Stage, Stage]
) -> Tensor:
    """hr (1, C, H, W) uint8 -> (1, C, ceil(H/s), ceil(W/s)) uint8."""
    out = (-(-hr.shape[-2] // scale), -(-hr.shape[-1] // scale))
    x = hr.float()
    x = _stage(x, stages[0], gen)
    x = _stage(x, stages[1], gen)
    if _chance(0.5, gen):
        x = _jpeg(_resize(x, out, gen).clamp(0, 255), stages[0], gen)
    else:
        x = _resize(_jpeg(x, stages[0], gen), out, gen)
    return x.clamp(0, 255).round().to(torch.uint8)


def second_order(
    hr: Tensor,
    scale: int,
    generator: torch.Generator | None = None,
    stages: tuple[Stage, Stage] = (FIRST, SECOND),
    clean_prob: float = 0.0,
) -> Tensor:
    """Degrade uint8 HR images like real photos (module docstring).

    hr: (C, H, W) or (N, C, H, W) uint8, C = 1 or 3, sides >= :data:`MIN_SIDE`.
    Returns uint8 (..., ceil(H/s), ceil(W/s)); each image draws its own parameters, in order,
    from ``generator``. ``stages``: the ranges of the two passes (the paper's by default,
    :data:`MILD_FIRST` / :data:`MILD_SECOND` for ordinary photos); the last JPEG uses the
    first stage's quality range. ``clean_prob``: the share of images given the plain
    MATLAB-bicubic LR instead (so a photo model still knows what a clean image looks like).
    """
    squeeze = hr.dim() == 3
    hb = hr.unsqueeze(0) if squeeze else hr
    if min(hb.shape[-2:]) < MIN_SIDE:
        raise ValueError(
            f"second_order needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels, "
            f"got {tuple(hb.shape[-2:])}"
        )
    from sisr.degrade.bicubic import imresize_uint8

    out = []
    for i in range(hb.shape[0]):
        one = hb[i : i + 1].cpu()
        if clean_prob > 0 and _chance(clean_prob, generator):
            size = (-(-one.shape[-2] // scale), -(-one.shape[-1] // scale))
            out.append(imresize_uint8(one, size=size))
        else:
            out.append(_one(one, scale, generator, stages))
    y = torch.cat(out)
    y = y.to(hr.device)
    return y[0] if squeeze else y
