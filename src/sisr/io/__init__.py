"""Image input/output (see read_image / write_image) and atomic file writes.

Modules by concern: read, write, encode (our PNG/TIFF encoders), meta, limits, samples,
atomic; ``sisr.io.image`` re-exports the image API for older imports.
"""

from sisr.io.atomic import atomic_path, atomic_write_bytes
from sisr.io.limits import DEFAULT_MAX_PIXELS, get_max_pixels, set_max_pixels
from sisr.io.meta import ImageMeta, LoadedImage, NativeImage
from sisr.io.read import read_image, read_native, read_rgb_uint8
from sisr.io.write import write_image, write_pixels, write_uint8

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
