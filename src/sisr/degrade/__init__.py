"""Degradations: MATLAB-exact bicubic resize, blur, noise, JPEG, and the named HR -> LR maps."""

from sisr.degrade.bicubic import (
    cubic,
    imresize,
    imresize_uint8,
    modcrop,
    modcrop_np,
    output_size,
    resize_weights,
)
from sisr.degrade.ops import (
    add_gaussian_noise,
    blur_down,
    filter2d,
    fspecial_gaussian,
    gaussian_blur,
    gaussian_kernels,
    jpeg,
    nearest_indices,
    random_blur_down_noise,
    to_uint8,
)
from sisr.degrade.registry import ALIASES, DEGRADATIONS, Degradation, get_degradation

__all__ = [
    "ALIASES",
    "DEGRADATIONS",
    "Degradation",
    "add_gaussian_noise",
    "blur_down",
    "cubic",
    "filter2d",
    "fspecial_gaussian",
    "gaussian_blur",
    "gaussian_kernels",
    "get_degradation",
    "imresize",
    "imresize_uint8",
    "jpeg",
    "modcrop",
    "modcrop_np",
    "nearest_indices",
    "output_size",
    "random_blur_down_noise",
    "resize_weights",
    "to_uint8",
]
