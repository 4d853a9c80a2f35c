"""The pixel limit for reads: ours (:func:`set_max_pixels`, ``$SISR_MAX_PIXELS``), checked
from the header before any pixel is decoded, and the scoped lifting of Pillow's own
decompression-bomb check for images our limit allows.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from sisr.errors import ConfigError, ImageError

# Pillow's own hard limit (2 x MAX_IMAGE_PIXELS): above it some plugins refuse
# to decode even when our limit allows, so it is also our default.
DEFAULT_MAX_PIXELS = 178_956_970
_ENV_MAX_PIXELS = "SISR_MAX_PIXELS"
_max_pixels_override: int | None = None


def set_max_pixels(limit: int | None) -> None:
    """Set the process-wide pixel limit for reads; ``None`` restores the default.

    The default is ``$SISR_MAX_PIXELS`` when set, else :data:`DEFAULT_MAX_PIXELS`.
    Use ``sys.maxsize`` for no limit.
    """
    global _max_pixels_override
    if limit is not None and (not isinstance(limit, int) or limit <= 0):
        raise ValueError(f"max_pixels must be a positive integer, got {limit!r}")
    _max_pixels_override = limit


def get_max_pixels() -> int:
    """The pixel limit that :func:`read_image` applies when ``max_pixels`` is not given."""
    if _max_pixels_override is not None:
        return _max_pixels_override
    env = os.environ.get(_ENV_MAX_PIXELS, "").strip()
    if not env:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(env)) if any(c in env for c in ".eE") else int(env)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"{_ENV_MAX_PIXELS} must be a positive integer, got {env!r}")
    return value


def _check_pixels(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    limit = get_max_pixels() if max_pixels is None else max_pixels
    if width <= 0 or height <= 0:
        raise ImageError(path, f"corrupt header (image size {width}x{height})")
    pixels = width * height
    if pixels > limit:
        raise ImageError(
            path,
            f"image is {width}x{height} = {_fmt_pixels(pixels)}, above the limit of "
            f"{_fmt_pixels(limit)} (set {_ENV_MAX_PIXELS} or max_pixels)",
        )


def _fmt_pixels(n: int) -> str:
    return f"{n / 1e6:.1f} Mpx" if n >= 1_000_000 else f"{n} px"


_PIL_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pil_limit_lifted(pixels: int) -> Iterator[None]:
    """Let Pillow decode an image our limit allowed but its own check would refuse.

    Only entered for images above Pillow's MAX_IMAGE_PIXELS (rare: the caller raised
    our limit), and Pillow's setting is restored on exit.
    """
    pil_max = Image.MAX_IMAGE_PIXELS
    if pil_max is None or pixels <= pil_max:
        yield
        return
    with _PIL_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved
