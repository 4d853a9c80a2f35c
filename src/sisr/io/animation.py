"""Animated GIF, WebP and PNG (APNG): every frame, its duration, the loop count, alpha.

:func:`read_animation` gives the frames as the viewer shows them (Pillow composites each
frame over the previous ones as the file's disposal and blend rules say) in RGBA, with their
durations and the loop count; :func:`write_animation` writes them back as an animated PNG,
WebP or GIF, atomically. Sizes are untrusted: the frame count and the pixels of all frames
are checked against :func:`sisr.io.limits` before any frame is decoded.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

from sisr.errors import ImageError
from sisr.io.atomic import atomic_path
from sisr.io.current import handling
from sisr.io.limits import get_max_pixels

__all__ = ["MAX_FRAMES", "Animation", "frame_count", "read_animation", "write_animation"]

MAX_FRAMES = 10_000
_FORMATS = {".png": "PNG", ".apng": "PNG", ".webp": "WEBP", ".gif": "GIF"}


@dataclass
class Animation:
    """Frames (each H x W x 4 uint8 RGBA, as displayed), durations in ms, loop count (0:
    forever) and whether any pixel is not opaque."""

    frames: list[np.ndarray]
    durations: list[int]
    loop: int
    has_alpha: bool


def frame_count(path: str | os.PathLike[str]) -> int:
    """Frames in an animated GIF / WebP / PNG; 1 for a still image or an unreadable file
    (whose reader then says what is wrong)."""
    try:
        with warnings.catch_warnings(), Image.open(path) as im:
            warnings.simplefilter("ignore")
            if im.format not in ("GIF", "WEBP", "PNG") or not getattr(im, "is_animated", False):
                return 1
            return int(im.n_frames)
    except Exception:  # a probe: any trouble (too many pixels, damage) is the reader's to say
        return 1


def read_animation(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> Animation:
    """Every frame of an animated image, composited as displayed (module docstring).

    The frame count (at most :data:`MAX_FRAMES`) and frames x width x height (at most the
    pixel limit) are checked before decoding; any failure is an :class:`ImageError`.
    """
    path = Path(path)
    limit = get_max_pixels() if max_pixels is None else int(max_pixels)
    with handling(path):
        try:
            with Image.open(path) as im:
                n = int(getattr(im, "n_frames", 1))
                w, h = im.size
                if n > MAX_FRAMES:
                    raise ImageError(path, f"{n} frames, more than sisr reads ({MAX_FRAMES})")
                if n * w * h > limit:
                    raise ImageError(
                        path,
                        f"{n} frames of {w}x{h} are {n * w * h:,} pixels, above the limit of "
                        f"{limit:,} (SISR_MAX_PIXELS)",
                    )
                loop = int(im.info.get("loop", 0) or 0)
                frames, durations = [], []
                for frame in ImageSequence.Iterator(im):
                    frame.load()
                    durations.append(round(float(frame.info.get("duration") or 100)))
                    frames.append(np.asarray(frame.convert("RGBA")).copy())
        except ImageError:
            raise
        except Image.DecompressionBombError:
            raise ImageError(path, f"too many pixels, above the limit of {limit:,}") from None
        except (OSError, ValueError, SyntaxError, UnidentifiedImageError, EOFError) as exc:
            raise ImageError(path, f"cannot read the animation ({exc})") from None
    if any(f.shape != frames[0].shape for f in frames):
        raise ImageError(path, "frames of different sizes")
    has_alpha = any(bool((f[..., 3] < 255).any()) for f in frames)
    return Animation(frames, durations, loop, has_alpha)


def write_animation(
    path: str | os.PathLike[str],
    anim: Animation,
    *,
    format: str | None = None,
) -> None:
    """Write ``anim`` as an animated PNG or WebP (both lossless, each frame whole) or GIF
    (256 colours per frame, 1-bit transparency), atomically; ``format`` defaults to the
    suffix (``.png``, ``.apng``, ``.webp``, ``.gif``)."""
    path = Path(path)
    fmt = (format or _FORMATS.get(path.suffix.lower(), "")).upper()
    fmt = {"APNG": "PNG", "JPG": "JPEG"}.get(fmt, fmt)
    if fmt not in ("PNG", "WEBP", "GIF"):
        raise ImageError(
            path, f"{fmt or path.suffix} cannot hold an animation; use PNG, WebP or GIF"
        )
    mode = "RGBA" if anim.has_alpha else "RGB"
    images = [
        Image.fromarray(f if anim.has_alpha else np.ascontiguousarray(f[..., :3]), mode)
        for f in anim.frames
    ]
    kwargs: dict[str, object] = {
        "save_all": True,
        "append_images": images[1:],
        "duration": anim.durations,
        "loop": anim.loop,
    }
    if fmt == "WEBP":
        kwargs.update(lossless=True, quality=100, exact=True)
    elif fmt == "GIF":
        kwargs.update(disposal=2, optimize=False)
    elif fmt == "PNG":
        kwargs.update(disposal=0, blend=0)  # each frame is the whole picture
    with handling(path):
        try:
            with atomic_path(path) as tmp:
                images[0].save(tmp, format=fmt, **kwargs)
        except OSError as exc:
            raise ImageError(path, f"cannot write the animation ({exc.strerror or exc})") from None
