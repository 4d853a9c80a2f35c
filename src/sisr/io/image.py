"""The image I/O API in one place (kept so ``sisr.io.image`` imports keep working).

The code lives by concern: :mod:`sisr.io.read` (decoding), :mod:`sisr.io.write` (atomic
writes), :mod:`sisr.io.encode` (our PNG/TIFF encoders), :mod:`sisr.io.meta` (metadata and
EXIF orientation), :mod:`sisr.io.limits` (the pixel limit), :mod:`sisr.io.samples`
(integer <-> float samples).
"""

from __future__ import annotations

from sisr.io.encode import _deflate_parallel, _encode_png, _stream_png
from sisr.io.limits import DEFAULT_MAX_PIXELS, get_max_pixels, set_max_pixels
from sisr.io.meta import ImageMeta, LoadedImage, NativeImage, _exif_with_orientation
from sisr.io.read import read_image, read_native, read_rgb_uint8
from sisr.io.write import write_image, write_pixels, write_uint8

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageMeta",
    "LoadedImage",
    "NativeImage",
    "_deflate_parallel",
    "_encode_png",
    "_exif_with_orientation",
    "_stream_png",
    "get_max_pixels",
    "read_image",
    "read_native",
    "read_rgb_uint8",
    "set_max_pixels",
    "write_image",
    "write_pixels",
    "write_uint8",
]
