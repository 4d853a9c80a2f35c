"""Colour conversions used by the paper evaluation protocol.

Super-resolution papers score the luma channel of BT.601 YCbCr in the "studio"
range (Y in 16..235), exactly as MATLAB's ``rgb2ycbcr`` on an ``im2double``
image: ``Y = 16 + (65.481 R + 128.553 G + 24.966 B)`` with R, G, B in [0, 1].
Y is kept in floating point (not rounded to an integer): that is the convention
that reproduces published tables (see tests/metrics/test_reference.py).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

ImageLike = Tensor | np.ndarray

# BT.601 luma weights for RGB in [0, 255], MATLAB rgb2ycbcr's first row / 255.
_Y_WEIGHTS = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)
Y_OFFSET = 16.0


def as_tensor(x: ImageLike, dtype: torch.dtype | None = torch.float64) -> Tensor:
    """Tensor view of an image (numpy arrays keep their layout), cast to ``dtype`` (None: kept).

    Numpy arrays must use the same channel-first layout as tensors: (..., C, H, W).
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    return x if dtype is None else x.to(dtype)


def rgb_to_y(img: ImageLike, dtype: torch.dtype = torch.float64, *, offset: bool = True) -> Tensor:
    """BT.601 studio-range luma of an 8-bit RGB image.

    Args:
        img: (..., 3, H, W) uint8, or float on the 0..255 scale. A single channel
            (..., 1, H, W) is a grayscale image, scored as three equal channels.
        dtype: float dtype of the computation and the result.
        offset: add the +16 offset (False gives the linear part only, e.g. for
            differences of images).

    Returns:
        (..., H, W) Y in [16, 235], not rounded.
    """
    x = as_tensor(img, dtype)
    if x.dim() < 3 or x.shape[-3] not in (1, 3):
        raise ValueError(f"expected an image of shape (..., 3, H, W), got {tuple(x.shape)}")
    if x.shape[-3] == 1:
        y = sum(_Y_WEIGHTS) * x[..., 0, :, :]
    else:
        r, g, b = x.unbind(-3)
        y = _Y_WEIGHTS[0] * r + _Y_WEIGHTS[1] * g + _Y_WEIGHTS[2] * b
    return y + Y_OFFSET if offset else y


def quantize(x: Tensor) -> Tensor:
    """Float image in [0, 1] (any shape) -> uint8, clamped, rounded half up.

    Half up (not torch's half to even) matches MATLAB's ``im2uint8`` / ``uint8()``.
    """
    return torch.floor(x.detach().clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)


__all__ = ["Y_OFFSET", "ImageLike", "as_tensor", "quantize", "rgb_to_y"]
