"""Image input/output (see read_image / write_image) and atomic file writes."""

from sisr.io.atomic import atomic_path, atomic_write_bytes
from sisr.io.image import (
    DEFAULT_MAX_PIXELS,
    ImageMeta,
    LoadedImage,
    NativeImage,
    get_max_pixels,
    read_image,
    read_native,
    read_rgb_uint8,
    set_max_pixels,
    write_image,
    write_pixels,
    write_uint8,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageMeta",
    "LoadedImage",
    "NativeImage",
    "atomic_path",
    "atomic_write_bytes",
    "get_max_pixels",
    "read_image",
    "read_native",
    "read_rgb_uint8",
    "set_max_pixels",
    "write_image",
    "write_pixels",
    "write_uint8",
]
