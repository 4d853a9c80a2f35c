"""Structural similarity as in Wang et al.'s MATLAB ``ssim_index.m``.

11x11 Gaussian window (sigma 1.5, normalised), K1 = 0.01, K2 = 0.03, L = 255,
'valid' filtering (no padding), SSIM = mean of the map. The Gaussian is
separable, so the five local statistics are filtered with two 1-D passes in a
single grouped convolution.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from sisr.metrics.color import ImageLike, as_tensor, rgb_to_y
from sisr.metrics.psnr import crop_border

WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
K1 = 0.01
K2 = 0.03


@functools.lru_cache(maxsize=8)
def _window_cpu(size: int, sigma: float) -> Tensor:
    """Normalised 1-D Gaussian taps; the outer product is MATLAB's fspecial('gaussian')."""
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(t * t) / (2 * sigma * sigma))
    return g / g.sum()


def gaussian_window(
    size: int = WINDOW_SIZE,
    sigma: float = WINDOW_SIGMA,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """(size,) separable factor of the 2-D SSIM window (sums to 1)."""
    return _window_cpu(size, float(sigma)).to(dtype=dtype, device=device)


def _filter_valid(x: Tensor, taps: list[float], dim: int) -> Tensor:
    """1-D 'valid' correlation along ``dim`` (-1 or -2): (..., n) -> (..., n - len(taps) + 1).

    A sum of shifted slices: in float64 on the CPU this is several times faster than
    ``conv2d`` (which has no fast float64 path), and it is exact MATLAB ``filter2`` order
    of magnitude-wise (same products, summed in tap order).
    """
    n = x.shape[dim] - len(taps) + 1
    out = x.narrow(dim, 0, n) * taps[0]
    for k in range(1, len(taps)):
        out.add_(x.narrow(dim, k, n), alpha=taps[k])
    return out


def ssim_map(a: Tensor, b: Tensor, *, data_range: float = 255.0) -> Tensor:
    """SSIM map of float planes: (..., H, W) -> (..., H-10, W-10) ('valid' filtering)."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    h, w = a.shape[-2:]
    if h < WINDOW_SIZE or w < WINDOW_SIZE:
        raise ValueError(f"SSIM needs planes of at least {WINDOW_SIZE}x{WINDOW_SIZE}, got {h}x{w}")
    lead = a.shape[:-2]
    x = a.reshape(-1, h, w)
    y = b.reshape(-1, h, w)
    stats = torch.stack([x, y, x * x, y * y, x * y], dim=1)  # (B, 5, H, W)
    taps = gaussian_window(dtype=torch.float64, device="cpu").tolist()
    stats = _filter_valid(_filter_valid(stats, taps, -1), taps, -2)
    mu1, mu2, e11, e22, e12 = stats.unbind(1)
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    num = (2 * mu12 + c1) * (2 * (e12 - mu12) + c2)
    den = (mu1_sq + mu2_sq + c1) * ((e11 - mu1_sq) + (e22 - mu2_sq) + c2)
    out = num / den
    return out.reshape(*lead, *out.shape[-2:])


def ssim(a: ImageLike, b: ImageLike, *, border: int = 0, data_range: float = 255.0) -> Tensor:
    """Mean SSIM of single-channel planes.

    Args:
        a, b: (..., H, W) on the 0..``data_range`` scale.
        border: pixels cropped on each side before filtering.

    Returns:
        (...) float64 SSIM (1 for identical planes).
    """
    x, y = as_tensor(a), as_tensor(b)
    return ssim_map(crop_border(x, border), crop_border(y, border), data_range=data_range).mean(
        dim=(-2, -1)
    )


def ssim_y(sr: ImageLike, hr: ImageLike, *, border: int = 0) -> Tensor:
    """SSIM on the BT.601 Y channel: (..., 3, H, W) 8-bit images -> (...)."""
    return ssim(rgb_to_y(sr), rgb_to_y(hr), border=border)


__all__ = ["gaussian_window", "ssim", "ssim_map", "ssim_y"]
