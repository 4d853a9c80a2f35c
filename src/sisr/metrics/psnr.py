"""Peak signal-to-noise ratio on 8-bit images, paper protocol.

All functions are batched over leading dimensions and return one value per
image; dataset-level PSNR is the mean of these per-image values (not the PSNR
of the pooled MSE), as in published tables.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sisr.metrics.color import ImageLike, as_tensor, rgb_to_y


def crop_border(x: Tensor, border: int) -> Tensor:
    """Drop ``border`` pixels on each side of the last two dims: (..., H, W) -> (..., H-2b, W-2b)."""
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    if border == 0:
        return x
    h, w = x.shape[-2:]
    if h <= 2 * border or w <= 2 * border:
        raise ValueError(f"image {h}x{w} is too small for a border of {border} pixels")
    return x[..., border : h - border, border : w - border]


def _check_pair(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")


def _cropped_diff(a: ImageLike, b: ImageLike, border: int) -> Tensor:
    """float64 ``a - b`` after cropping; 8-bit inputs are subtracted exactly in int16 first
    (four times less memory traffic than converting both images to float64)."""
    a, b = as_tensor(a, None), as_tensor(b, None)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    a, b = crop_border(a, border), crop_border(b, border)
    if a.dtype == torch.uint8 and b.dtype == torch.uint8:
        return (a.to(torch.int16) - b.to(torch.int16)).to(torch.float64)
    return as_tensor(a) - as_tensor(b)


def psnr_from_mse(mse: Tensor, data_range: float = 255.0) -> Tensor:
    """10 log10(range^2 / mse), elementwise; +inf where mse == 0."""
    return 10.0 * torch.log10(data_range**2 / mse)


def psnr(a: ImageLike, b: ImageLike, *, border: int = 0, data_range: float = 255.0) -> Tensor:
    """PSNR of single-channel planes.

    Args:
        a, b: (..., H, W) on the 0..``data_range`` scale (e.g. Y from :func:`rgb_to_y`).
        border: pixels cropped on each side before scoring (papers use the scale).

    Returns:
        (...) float64 PSNR in dB.
    """
    x, y = as_tensor(a), as_tensor(b)
    _check_pair(x, y)
    d = crop_border(x, border) - crop_border(y, border)
    return psnr_from_mse(d.square().mean(dim=(-2, -1)), data_range)


def psnr_y(sr: ImageLike, hr: ImageLike, *, border: int = 0) -> Tensor:
    """PSNR on the BT.601 Y channel: (..., 3, H, W) 8-bit images -> (...) dB.

    Y is affine in RGB, so Y(sr) - Y(hr) is the Y weights applied to sr - hr (the
    offset cancels): the difference is taken first, on the cropped images, which
    halves the float64 work and avoids cancellation.
    """
    d = _cropped_diff(sr, hr, border)
    return psnr_from_mse(rgb_to_y(d, offset=False).square().mean(dim=(-2, -1)))


def psnr_rgb(sr: ImageLike, hr: ImageLike, *, border: int = 0) -> Tensor:
    """PSNR over all RGB channels: (..., 3, H, W) 8-bit images -> (...) dB."""
    d = _cropped_diff(sr, hr, border)
    if d.dim() < 3:
        raise ValueError(f"expected an image of shape (..., C, H, W), got {tuple(d.shape)}")
    return psnr_from_mse(d.square().mean(dim=(-3, -2, -1)))


__all__ = ["crop_border", "psnr", "psnr_from_mse", "psnr_rgb", "psnr_y"]
