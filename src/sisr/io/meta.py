"""What a read learns about an image besides its pixels, and the helpers that carry it to an
output: :class:`ImageMeta` (format, mode, bit depth, ICC profile, EXIF, dpi, orientation),
the containers the read functions return, and EXIF orientation handling.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXIF_HEADER = b"Exif\x00\x00"
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class ImageMeta:
    """What :func:`read_image` learnt about a file, enough to write it back faithfully.

    ``width``/``height`` are after EXIF orientation.  ``mode`` is Pillow's mode
    of the file (``"RGB;16"``, ``"RGBA;16"``, ``"LA;16"`` for 16-bit colour,
    which Pillow has no mode for).  ``exif`` is the raw EXIF block starting with
    ``b"Exif\\0\\0"`` with its orientation reset to 1 (the pixels are already
    rotated); ``orientation`` is the value the file had.  ``icc_profile`` is kept
    only when it describes RGB or gray data.
    """

    path: str
    format: str
    mode: str
    width: int
    height: int
    bit_depth: int
    is_gray: bool
    has_alpha: bool
    icc_profile: bytes | None = None
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None
    orientation: int = 1


@dataclass
class LoadedImage:
    """``rgb``: float32 HxWx3 in [0, 1] (gray files have 3 equal channels);
    ``alpha``: float32 HxW in [0, 1] or None."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    meta: ImageMeta


@dataclass
class NativeImage:
    """``color``: the file's integer pixels, HxW (gray) or HxWx3, uint8 or uint16, exactly as
    stored (EXIF orientation applied); ``alpha``: HxW of the same dtype or None."""

    color: np.ndarray
    alpha: np.ndarray | None
    meta: ImageMeta


def _icc_space(profile: bytes | None) -> str | None:
    if not profile or len(profile) < 20:
        return None
    return profile[16:20].decode("latin-1").strip().upper()


def _normalise_exif(raw: Any) -> bytes | None:
    if not isinstance(raw, bytes | bytearray) or len(raw) < 8:
        return None
    raw = bytes(raw)
    return raw if raw.startswith(_EXIF_HEADER) else _EXIF_HEADER + raw


def _exif_with_orientation(exif: bytes, value: int = 1) -> bytes:
    """Rewrite IFD0's orientation in place (leaving every other byte as it was)."""
    prefix = len(_EXIF_HEADER) if exif.startswith(_EXIF_HEADER) else 0
    tiff = bytearray(exif[prefix:])
    try:
        order = {b"II": "<", b"MM": ">"}[bytes(tiff[:2])]
        (ifd,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        for i in range(count):
            entry = ifd + 2 + 12 * i
            tag, typ, n = struct.unpack_from(order + "HHI", tiff, entry)
            if tag == _ORIENTATION_TAG and typ == 3 and n == 1:
                struct.pack_into(order + "H", tiff, entry + 8, value)
                return exif[:prefix] + bytes(tiff)
    except (KeyError, struct.error):
        pass
    # Unusual layout (e.g. a LONG orientation): let Pillow rewrite the block.
    try:
        parsed = Image.Exif()
        parsed.load(exif)
        if parsed.get(_ORIENTATION_TAG, value) != value:
            parsed[_ORIENTATION_TAG] = value
            return _normalise_exif(parsed.tobytes()) or exif
    except Exception:
        pass
    return exif


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to HxW[xC]: returns the image as it should be shown."""
    if orientation == 2:
        arr = arr[:, ::-1]
    elif orientation == 3:
        arr = arr[::-1, ::-1]
    elif orientation == 4:
        arr = arr[::-1]
    elif orientation == 5:
        arr = arr.swapaxes(0, 1)
    elif orientation == 6:
        arr = arr[::-1].swapaxes(0, 1)
    elif orientation == 7:
        arr = arr[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        arr = arr[:, ::-1].swapaxes(0, 1)
    else:
        return arr
    return np.ascontiguousarray(arr)
