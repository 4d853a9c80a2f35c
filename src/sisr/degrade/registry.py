"""Named HR -> LR degradations (used by ``sisr data make-lr`` and the data pipeline).

Every entry maps a uint8 HR image (C, H, W) or batch (N, C, H, W) to a uint8 LR image,
deterministically for a given ``torch.Generator`` state (only the noisy ones draw from it).

========================  ==========================================================
name (alias)              what
========================  ==========================================================
bicubic (BI)              MATLAB ``imresize(hr, 1/s, 'bicubic')``, bit-exact
bicubic_jpeg_90 / _75     bicubic, then JPEG at quality 90 / 75 (PIL, CPU)
blur_down (BD)            RDN's BD: 7x7 Gaussian (sigma 1.6, replicate), keep every s-th
                          pixel from offset s//2 (MATLAB 'nearest')
bicubic_noise30 (DN)      RDN's DN: bicubic, then + N(0, 30^2) on 0..255, rounded
blur_aniso_noise          "unknown"-like (SRMD's general model): a random anisotropic
  (unknown)               Gaussian blur per image, s-fold decimation, random noise 0..10
second_order (real)       real photos (Real-ESRGAN's two-stage chain): blur, resize, noise,
                          JPEG, twice, then resize and JPEG (:mod:`sisr.degrade.second_order`)
second_order_mild         the same chain with milder ranges (ordinary photos)
========================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from sisr.degrade.bicubic import imresize_uint8
from sisr.degrade.ops import add_gaussian_noise, blur_down, jpeg, random_blur_down_noise
from sisr.degrade.second_order import MILD_CLEAN, MILD_FIRST, MILD_SECOND, second_order

__all__ = ["ALIASES", "DEGRADATIONS", "Degradation", "get_degradation"]

DegradeFn = Callable[[Tensor, int, "torch.Generator | None"], Tensor]


@dataclass(frozen=True)
class Degradation:
    """A named uint8 HR -> uint8 LR map; ``fn(hr, scale, generator)``."""

    name: str
    description: str
    fn: DegradeFn
    random: bool = False  # draws from the generator

    def apply(self, hr: Tensor, scale: int, generator: torch.Generator | None = None) -> Tensor:
        """hr: uint8 (C, H, W) or (N, C, H, W), C = 1 or 3 -> uint8 (..., ceil(H/s), ceil(W/s))."""
        if hr.dtype != torch.uint8:
            raise TypeError(f"degradation {self.name!r} expects a uint8 image, got {hr.dtype}")
        if hr.dim() not in (3, 4) or hr.shape[-3] not in (1, 3):
            raise ValueError(
                f"degradation {self.name!r} expects (C, H, W) or (N, C, H, W) with C = 1 or 3, "
                f"got shape {tuple(hr.shape)}"
            )
        if int(scale) != scale or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        return self.fn(hr, int(scale), generator)


def _bicubic(hr: Tensor, scale: int, generator: torch.Generator | None) -> Tensor:
    return imresize_uint8(hr, 1 / scale)


def _bicubic_jpeg(quality: int) -> DegradeFn:
    def fn(hr: Tensor, scale: int, generator: torch.Generator | None) -> Tensor:
        return jpeg(imresize_uint8(hr, 1 / scale), quality)

    return fn


def _blur_down(hr: Tensor, scale: int, generator: torch.Generator | None) -> Tensor:
    return blur_down(hr, scale, size=7, sigma=1.6)


def _bicubic_noise(sigma: float) -> DegradeFn:
    def fn(hr: Tensor, scale: int, generator: torch.Generator | None) -> Tensor:
        return add_gaussian_noise(imresize_uint8(hr, 1 / scale), sigma, generator)

    return fn


def _random_blur_noise(hr: Tensor, scale: int, generator: torch.Generator | None) -> Tensor:
    return random_blur_down_noise(hr, scale, generator)


def _second_order_mild(hr: Tensor, scale: int, generator: torch.Generator | None) -> Tensor:
    return second_order(hr, scale, generator, (MILD_FIRST, MILD_SECOND), MILD_CLEAN)


def _entries() -> list[Degradation]:
    return [
        Degradation("bicubic", "MATLAB bicubic downscale (BI), bit-exact", _bicubic),
        Degradation("bicubic_jpeg_90", "bicubic, then JPEG quality 90", _bicubic_jpeg(90)),
        Degradation("bicubic_jpeg_75", "bicubic, then JPEG quality 75", _bicubic_jpeg(75)),
        Degradation(
            "blur_down", "RDN BD: Gaussian 7x7 sigma 1.6, then every s-th pixel", _blur_down
        ),
        Degradation(
            "bicubic_noise30",
            "RDN DN: bicubic, then Gaussian noise sigma 30 (0..255)",
            _bicubic_noise(30.0),
            random=True,
        ),
        Degradation(
            "blur_aniso_noise",
            "'unknown'-like: random anisotropic Gaussian blur, s-fold decimation, noise 0..10",
            _random_blur_noise,
            random=True,
        ),
        Degradation(
            "second_order",
            "real photos: blur, resize, noise, JPEG twice, then resize and JPEG (Real-ESRGAN)",
            second_order,
            random=True,
        ),
        Degradation(
            "second_order_mild",
            "ordinary photos: the second-order chain with milder blur, noise and JPEG",
            _second_order_mild,
            random=True,
        ),
    ]


DEGRADATIONS: dict[str, Degradation] = {d.name: d for d in _entries()}

# The names the RDN paper uses.
ALIASES: dict[str, str] = {
    "BI": "bicubic",
    "BD": "blur_down",
    "DN": "bicubic_noise30",
    "UNKNOWN": "blur_aniso_noise",
    "REAL": "second_order",
}


def get_degradation(name: str) -> Degradation:
    """Look up a degradation by name or alias (aliases are case-insensitive)."""
    if name in DEGRADATIONS:
        return DEGRADATIONS[name]
    alias = ALIASES.get(name.upper())
    if alias is not None:
        return DEGRADATIONS[alias]
    known = ", ".join([*DEGRADATIONS, *ALIASES])
    raise KeyError(f"unknown degradation {name!r}; known: {known}")
