"""RGB <-> YCbCr (BT.601, MATLAB ``rgb2ycbcr`` studio range) for the Y-channel model forms.

SRCNN, FSRCNN, ESPCN and VDSR were published working on the luma channel only. Their
``y_channel=True`` forms keep the zoo's RGB -> RGB interface: the input is converted to
YCbCr with MATLAB's ``rgb2ycbcr`` on an ``im2double`` image (Y in [16, 235] / 255, Cb and Cr
in [16, 240] / 255), the network super-resolves Y, Cb and Cr are upsampled with MATLAB
bicubic, and the result goes back to RGB with the exact inverse transform.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from sisr.archs._common import bicubic_upsample

# MATLAB rgb2ycbcr for double input: ycc = offset + M @ rgb, with M the table below / 255.
_M = (
    torch.tensor(
        [
            [65.481, 128.553, 24.966],
            [-37.797, -74.203, 112.0],
            [112.0, -93.786, -18.214],
        ],
        dtype=torch.float64,
    )
    / 255.0
)
_OFFSET = torch.tensor([16.0, 128.0, 128.0], dtype=torch.float64) / 255.0
_M_INV = torch.linalg.inv(_M)


def _affine(x: Tensor, mat: Tensor, offset: Tensor | None, pre: Tensor | None) -> Tensor:
    """(mat @ (x - pre)) + offset over the channel dim. x (N, 3, H, W) -> (N, 3, H, W)."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected an image batch (N, 3, H, W), got {tuple(x.shape)}")
    m = mat.to(dtype=x.dtype, device=x.device)
    if pre is not None:
        x = x - pre.to(dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    y = torch.einsum("ij,njhw->nihw", m, x)
    if offset is not None:
        y = y + offset.to(dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return y


def rgb_to_ycbcr(x: Tensor) -> Tensor:
    """RGB in [0, 1] -> YCbCr on MATLAB's studio range / 255. (N, 3, H, W) -> (N, 3, H, W)."""
    return _affine(x, _M, _OFFSET, None)


def ycbcr_to_rgb(x: Tensor) -> Tensor:
    """Exact inverse of :func:`rgb_to_ycbcr`. (N, 3, H, W) -> (N, 3, H, W)."""
    return _affine(x, _M_INV, None, _OFFSET)


# JPEG / JFIF full-range BT.601 (Y, Cb, Cr all on [0, 255], chroma centred at 128), which
# several published PyTorch re-implementations feed their 3-channel networks.
_M_FULL = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
    dtype=torch.float64,
)
_OFFSET_FULL = torch.tensor([0.0, 128.0, 128.0], dtype=torch.float64) / 255.0
_M_FULL_INV = torch.linalg.inv(_M_FULL)

COLOR_SPACES: tuple[str, ...] = ("rgb", "ycbcr")
# Nhat-Thanh's SRCNN / FSRCNN / ESPCN / VDSR code feeds full-range YCbCr (not RGB) to its
# 3-channel networks; the tensors cannot tell, so detection assumes it from the key names.


def check_color_space(arch_id: str, color_space: str, y_channel: bool) -> str:
    """Validate the ``color_space`` hparam of the classic networks."""
    from sisr.errors import ConfigError

    if color_space not in COLOR_SPACES:
        raise ConfigError(
            f"{arch_id}: color_space must be one of {COLOR_SPACES}, got {color_space!r}"
        )
    if y_channel and color_space != "rgb":
        raise ConfigError(
            f"{arch_id}: y_channel=True already implies YCbCr; leave color_space 'rgb'"
        )
    return color_space


def ycbcr_sr(x: Tensor, sr: Callable[[Tensor], Tensor]) -> Tensor:
    """Run a 3-channel network on full-range (JPEG) YCbCr: RGB -> YCbCr -> sr -> RGB.

    x: (N, 3, H, W) RGB in [0, 1]; ``sr`` maps YCbCr (N, 3, H, W) -> (N, 3, sH, sW).
    """
    ycc = _affine(x, _M_FULL, _OFFSET_FULL, None)
    return _affine(sr(ycc), _M_FULL_INV, None, _OFFSET_FULL)


def luma_sr(x: Tensor, scale: int, sr_y: Callable[[Tensor], Tensor]) -> Tensor:
    """Super-resolve RGB through a luma-only network; chroma is upsampled bicubically.

    x: (N, 3, H, W) RGB in [0, 1]; ``sr_y`` maps Y (N, 1, H, W) -> (N, 1, sH, sW).
    Returns (N, 3, sH, sW) RGB (not clamped).
    """
    ycc = rgb_to_ycbcr(x)
    y = sr_y(ycc[:, :1])
    cbcr = bicubic_upsample(ycc[:, 1:], scale)
    return ycbcr_to_rgb(torch.cat([y, cbcr], dim=1))


__all__ = [
    "COLOR_SPACES",
    "check_color_space",
    "luma_sr",
    "rgb_to_ycbcr",
    "ycbcr_sr",
    "ycbcr_to_rgb",
]
