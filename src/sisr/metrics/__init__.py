"""Image-quality metrics following the super-resolution paper protocol.

Inputs are 8-bit images (uint8, or float on the 0..255 scale), channel-first
(..., 3, H, W), torch tensors or numpy arrays; every function is batched over
the leading dimensions and returns one float64 value per image.

* :func:`rgb_to_y`: BT.601 studio-range luma (MATLAB ``rgb2ycbcr`` on an
  ``im2double`` image), kept in floating point.
* :func:`psnr_y`, :func:`ssim_y`: the numbers papers report (border = scale).
* :func:`psnr_rgb`: PSNR over the three RGB channels.
* :func:`psnr`, :func:`ssim`: the same on arbitrary single-channel planes.
* :func:`quantize`: float [0, 1] model output -> uint8 before scoring.
"""

from sisr.metrics.color import as_tensor, quantize, rgb_to_y
from sisr.metrics.psnr import crop_border, psnr, psnr_from_mse, psnr_rgb, psnr_y
from sisr.metrics.ssim import gaussian_window, ssim, ssim_map, ssim_y

__all__ = [
    "as_tensor",
    "crop_border",
    "gaussian_window",
    "psnr",
    "psnr_from_mse",
    "psnr_rgb",
    "psnr_y",
    "quantize",
    "rgb_to_y",
    "ssim",
    "ssim_map",
    "ssim_y",
]
