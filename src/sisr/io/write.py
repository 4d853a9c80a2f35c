"""Write images from numpy arrays; every write is atomic.

:func:`write_image` (float pixels), :func:`write_uint8` (exact 8-bit) and
:func:`write_pixels` (integer pixels, streamed PNG for large images) all go through
:func:`sisr.io.atomic.atomic_path`: a failed write leaves no partial file.  16-bit PNG
and TIFF, which Pillow cannot write in colour, are encoded in :mod:`sisr.io.encode`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from sisr.errors import ImageError
from sisr.io.atomic import atomic_path
from sisr.io.current import handling
from sisr.io.encode import PNG_LEVEL_DEFAULT, _encode_png, _encode_tiff16, _stream_png
from sisr.io.meta import ImageMeta, _exif_with_orientation, _icc_space, _normalise_exif
from sisr.io.samples import _quantize, _requantize

__all__ = ["write_image", "write_pixels", "write_uint8"]

# Formats write_image understands, keyed by lower-case suffix.
_SUFFIX_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}
_FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF"}
_EIGHT_BIT_ONLY = {"JPEG", "WEBP", "BMP"}
_NO_ALPHA = {"JPEG", "BMP"}

# What the readers of each format accept, so that every file written reads back. PNG: Pillow
# refuses an iCCP profile that inflates past ImageFile.SAFEBLOCK (1 MiB; the default, not
# this process's possibly raised value, since other programs read the file). JPEG: ICC is
# split over at most 255 APP2 markers of 65519 bytes, EXIF must fit one APP1 marker.
_ICC_LIMIT = {"PNG": 1 << 20, "JPEG": 255 * 65519}
_EXIF_LIMIT = {"JPEG": 65533, "PNG": 65533, "WEBP": 65533}


# --------------------------------------------------------------------------- write API

_Writer = TypeVar("_Writer", bound=Callable[..., None])


def _names_its_file(write: _Writer) -> _Writer:
    """Run ``write(path, ...)`` with ``path`` as this thread's file in hand, so a library's
    warning during the write can be shown with the file it is about."""

    @functools.wraps(write)
    def wrapper(path: str | Path, *args: Any, **kwargs: Any) -> None:
        with handling(path):
            write(path, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _output_format(path: Path, format: str | None) -> str:
    if format is not None:
        fmt = format.upper().lstrip(".")
        fmt = _FORMAT_ALIASES.get(fmt, fmt)
        if fmt not in set(_SUFFIX_FORMATS.values()):
            raise ImageError(path, f"unsupported output format {format!r}")
        return fmt
    fmt = _SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(
            path,
            f"cannot tell the output format from the suffix {path.suffix!r} "
            "(use .png, .jpg, .webp, .tif or .bmp, or pass format=)",
        )
    return fmt


def _fit_metadata(
    path: Path, fmt: str, icc: bytes | None, exif: bytes | None
) -> tuple[bytes | None, bytes | None]:
    """Drop (with a warning naming the file) metadata too large for ``fmt``'s readers:
    writing it would give a file that Pillow, and often other programs, cannot open."""
    icc_max, exif_max = _ICC_LIMIT.get(fmt), _EXIF_LIMIT.get(fmt)
    if icc is not None and icc_max is not None and len(icc) > icc_max:
        warnings.warn(
            f"{path}: ICC profile of {len(icc)} bytes dropped: {fmt} readers accept at most "
            f"{icc_max} (write TIFF to keep it)",
            stacklevel=3,
        )
        icc = None
    if exif is not None and exif_max is not None and len(exif) > exif_max:
        warnings.warn(
            f"{path}: EXIF block of {len(exif)} bytes dropped: {fmt} holds at most {exif_max}",
            stacklevel=3,
        )
        exif = None
    return icc, exif


def _check_reads_back(tmp: Path, path: Path) -> None:
    """Open what was written (header and metadata, not the pixels) before it gets its
    final name, so a file the readers refuse is never left behind."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(tmp) as im:
                im.info  # noqa: B018 - metadata chunks before the pixels are parsed by now
    except Image.DecompressionBombError:
        return  # size refused after the header parsed: our own limit allowed this size
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError) as e:
        raise ImageError(
            path, f"the written file does not read back ({e}); nothing written"
        ) from None


def _save_bytes(path: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` inside atomic_path and check that the result opens; turn I/O
    failures into ImageError."""
    try:
        with atomic_path(path) as tmp:
            write(tmp)
            _check_reads_back(tmp, path)
    except ImageError:
        raise
    except OSError as e:
        raise ImageError(path, f"cannot write image ({e.strerror or e})") from None
    except (ValueError, RuntimeError) as e:  # Pillow encoder failures
        raise ImageError(path, f"cannot write image ({e})") from None


def _encode_tiff16_readable(pixels: np.ndarray, *, icc: bytes | None, dpi: Any) -> bytes:
    """:func:`_encode_tiff16`, but gray+alpha (H, W, 2) is stored as RGBA: Pillow cannot open
    16-bit gray+alpha TIFF, and RGBA keeps the values readable (a gray ICC profile is dropped)."""
    if pixels.shape[2] == 2:
        pixels = pixels[..., [0, 0, 0, 1]]
        icc = icc if _icc_space(icc) == "RGB" else None
    return _encode_tiff16(pixels, icc=icc, dpi=dpi)


def _pil_save_kwargs(
    fmt: str,
    *,
    icc: bytes | None,
    dpi: Any,
    exif: bytes | None,
    quality: int,
    lossless: bool,
) -> dict[str, Any]:
    """Options for ``PIL.Image.save`` that carry metadata and quality for ``fmt``."""
    kwargs: dict[str, Any] = {}
    if icc is not None:
        kwargs["icc_profile"] = icc
    if dpi is not None and fmt != "WEBP":
        kwargs["dpi"] = dpi
    if exif is not None and fmt in ("PNG", "JPEG", "WEBP"):
        # Not TIFF: Pillow merges EXIF into the TIFF's own IFD and libtiff rejects
        # the sub-IFD pointers, so TIFF output carries no EXIF.
        kwargs["exif"] = exif
    if fmt == "JPEG":
        kwargs.update(quality=int(quality), subsampling=0)
    elif fmt == "WEBP":
        # exact: keep the colour under fully transparent pixels (libwebp drops it).
        kwargs.update(quality=int(quality), lossless=bool(lossless), exact=bool(lossless))
    elif fmt == "TIFF":
        kwargs["compression"] = "tiff_adobe_deflate"
    return kwargs


@_names_its_file
def write_image(
    path: str | Path,
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    *,
    meta: ImageMeta | None = None,
    bit_depth: int | None = None,
    format: str | None = None,
    gray: bool | None = None,
    quality: int = 95,
    lossless: bool = False,
) -> None:
    """Write float pixels in [0, 1] (values are clipped, then rounded half up).

    rgb: HxWx3 or HxW float; alpha: HxW float or None.  ``format`` defaults to
    the suffix (PNG, JPEG, WebP, TIFF, BMP).  ``bit_depth`` (8 or 16) defaults to
    ``meta.bit_depth`` (quietly 8 for JPEG/WebP/BMP) else 8; asking for 16 bits
    in an 8-bit-only format is an error.  ``gray`` defaults to ``meta.is_gray``
    (else True for HxW input); colour data written as gray is the channel mean.
    JPEG and BMP cannot hold alpha: passing alpha there raises ImageError (the
    caller chooses how to composite).  ICC profile (when its colour space matches
    the output), EXIF (orientation forced to 1; PNG, JPEG and WebP only, never
    TIFF) and dpi come from ``meta``.  ``quality`` is for JPEG and lossy
    WebP (JPEG is written with 4:4:4 chroma); ``lossless`` selects lossless WebP.
    The file appears atomically or not at all.
    """
    path = Path(path)
    fmt = _output_format(path, format)
    rgb = np.asarray(rgb)
    if not np.issubdtype(rgb.dtype, np.floating):
        raise TypeError(f"write_image expects float pixels in [0, 1], got {rgb.dtype}")
    if rgb.ndim == 3 and rgb.shape[2] == 1:
        rgb = rgb[..., 0]
    if not (rgb.ndim == 2 or (rgb.ndim == 3 and rgb.shape[2] == 3)):
        raise ValueError(f"rgb must be HxWx3 or HxW, got shape {rgb.shape}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"cannot write an empty image of shape {rgb.shape}")
    if alpha is not None:
        alpha = np.asarray(alpha)
        if alpha.ndim == 3 and alpha.shape[2] == 1:
            alpha = alpha[..., 0]
        if alpha.shape != rgb.shape[:2]:
            raise ValueError(f"alpha shape {alpha.shape} does not match image {rgb.shape[:2]}")
        if not np.issubdtype(alpha.dtype, np.floating):
            raise TypeError(f"alpha must be float in [0, 1], got {alpha.dtype}")
    for name, arr in (("rgb", rgb), ("alpha", alpha)):
        if arr is not None and not np.isfinite(arr).all():
            raise ImageError(path, f"{name} pixel data contains NaN or infinite values")

    if bit_depth is None:
        bit_depth = meta.bit_depth if meta is not None else 8
        if fmt in _EIGHT_BIT_ONLY:
            bit_depth = 8
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if bit_depth == 16 and fmt in _EIGHT_BIT_ONLY:
        raise ImageError(path, f"{fmt} stores 8 bits per channel; use PNG or TIFF for 16 bits")
    if alpha is not None and fmt in _NO_ALPHA:
        raise ImageError(
            path,
            f"{fmt} cannot store an alpha channel; write PNG, WebP or TIFF, "
            "or composite the image onto a background first",
        )
    if gray is None:
        gray = meta.is_gray if meta is not None else rgb.ndim == 2

    if gray and rgb.ndim == 3:
        rgb = rgb.mean(axis=2, dtype=np.float32 if rgb.dtype != np.float64 else np.float64)
    elif not gray and rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    planes = rgb[..., None] if rgb.ndim == 2 else rgb
    if alpha is not None:
        planes = np.concatenate([planes, alpha[..., None].astype(planes.dtype)], axis=2)
    if fmt == "WEBP" and planes.shape[2] in (1, 2):
        # WebP has no gray modes.
        planes = np.concatenate([np.repeat(planes[..., :1], 3, axis=2), planes[..., 1:]], axis=2)
    pixels = _quantize(planes, bit_depth)

    out_space = "GRAY" if pixels.shape[2] in (1, 2) else "RGB"
    icc = meta.icc_profile if meta is not None else None
    if icc is not None and _icc_space(icc) != out_space:
        icc = None
    exif = meta.exif if meta is not None else None
    if exif is not None:
        exif = _exif_with_orientation(_normalise_exif(exif) or exif, 1)
    icc, exif = _fit_metadata(path, fmt, icc, exif)
    dpi = meta.dpi if meta is not None else None

    if bit_depth == 16:
        if fmt == "PNG":
            data = _encode_png(pixels, icc=icc, exif=exif, dpi=dpi)
        else:
            data = _encode_tiff16_readable(pixels, icc=icc, dpi=dpi)
        _save_bytes(path, lambda tmp: tmp.write_bytes(data))
        return

    im = _pil_from_uint8(pixels)
    kwargs = _pil_save_kwargs(fmt, icc=icc, dpi=dpi, exif=exif, quality=quality, lossless=lossless)
    _save_bytes(path, lambda tmp: im.save(tmp, format=fmt, **kwargs))


def _pil_from_uint8(pixels: np.ndarray) -> Image.Image:
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[pixels.shape[2]]
    arr = pixels[..., 0] if pixels.shape[2] == 1 else pixels
    return Image.frombytes(mode, (arr.shape[1], arr.shape[0]), np.ascontiguousarray(arr).tobytes())


@_names_its_file
def write_uint8(path: str | Path, arr: np.ndarray, *, format: str | None = None) -> None:
    """Write exact uint8 pixels (HxW, HxWx1, HxWx2 gray+alpha, HxWx3, HxWx4) losslessly.

    PNG (default), TIFF or BMP (no alpha); lossy formats are refused since the
    point is exactness.  Atomic like every write.
    """
    path = Path(path)
    fmt = _output_format(path, format)
    if fmt not in ("PNG", "TIFF", "BMP"):
        raise ImageError(path, f"write_uint8 writes lossless PNG, TIFF or BMP, not {fmt}")
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        raise TypeError(f"write_uint8 expects uint8 pixels, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4) or 0 in arr.shape:
        raise ValueError(f"expected HxW or HxWxC (C in 1..4) uint8, got shape {arr.shape}")
    if fmt == "BMP" and arr.shape[2] in (2, 4):
        raise ImageError(path, "BMP cannot store an alpha channel; use PNG or TIFF")
    im = _pil_from_uint8(arr)
    kwargs: dict[str, Any] = {"compression": "tiff_adobe_deflate"} if fmt == "TIFF" else {}
    _save_bytes(path, lambda tmp: im.save(tmp, format=fmt, **kwargs))


@_names_its_file
def write_pixels(
    path: str | Path,
    color: np.ndarray,
    alpha: np.ndarray | None = None,
    *,
    meta: ImageMeta | None = None,
    format: str | None = None,
    quality: int = 95,
    lossless: bool = False,
    compress_level: int = PNG_LEVEL_DEFAULT,
) -> None:
    """Write integer pixels as they are: ``color`` HxW (gray) or HxWx3, uint8 or uint16;
    ``alpha`` HxW (converted to ``color``'s dtype) or None.

    The integer counterpart of :func:`write_image` for large images: PNG is encoded and
    written block by block (``color`` may be an ``np.memmap``), so memory stays bounded.
    uint16 pixels are written as 16 bits in PNG and TIFF, rounded to 8 bits for JPEG, WebP
    and BMP.  ICC profile, EXIF (orientation 1) and dpi come from ``meta`` as in
    :func:`write_image`; alpha in JPEG/BMP is an :class:`ImageError`.  Atomic.
    ``compress_level`` (PNG, 0..9) trades speed for size, never pixels or metadata: see
    :func:`sisr.io.encode.png_settings` (default 1: fast; 6: the former default).
    """
    path = Path(path)
    fmt = _output_format(path, format)
    color = np.asarray(color) if not isinstance(color, np.memmap) else color
    if color.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"write_pixels expects uint8 or uint16 pixels, got {color.dtype}")
    if color.ndim == 3 and color.shape[2] == 1:
        color = color[..., 0]
    if not (color.ndim == 2 or (color.ndim == 3 and color.shape[2] == 3)) or 0 in color.shape:
        raise ValueError(f"color must be HxW or HxWx3, got shape {color.shape}")
    if alpha is not None:
        alpha = np.asarray(alpha)
        if alpha.ndim == 3 and alpha.shape[2] == 1:
            alpha = alpha[..., 0]
        if alpha.shape != color.shape[:2]:
            raise ValueError(f"alpha shape {alpha.shape} does not match image {color.shape[:2]}")
        if alpha.dtype not in (np.uint8, np.uint16):
            raise TypeError(f"alpha must be uint8 or uint16, got {alpha.dtype}")
        if fmt in _NO_ALPHA:
            raise ImageError(
                path,
                f"{fmt} cannot store an alpha channel; write PNG, WebP or TIFF, "
                "or composite the image onto a background first",
            )
    target = np.uint16 if color.dtype == np.uint16 and fmt not in _EIGHT_BIT_ONLY else np.uint8
    gray = color.ndim == 2
    expand_gray = gray and fmt == "WEBP"  # WebP has no gray modes
    channels = (1 if gray and not expand_gray else 3) + (alpha is not None)
    depth = 16 if target == np.uint16 else 8
    h, w = color.shape[:2]

    def planes(y0: int, y1: int) -> np.ndarray:
        c = _requantize(np.asarray(color[y0:y1]), target)
        c = c[..., None] if c.ndim == 2 else c
        if expand_gray:
            c = np.repeat(c, 3, axis=2)
        if alpha is None:
            return c
        a = _requantize(np.asarray(alpha[y0:y1]), target)
        return np.concatenate([c, a[..., None]], axis=2)

    out_space = "GRAY" if channels in (1, 2) else "RGB"
    icc = meta.icc_profile if meta is not None else None
    if icc is not None and _icc_space(icc) != out_space:
        icc = None
    exif = meta.exif if meta is not None else None
    if exif is not None:
        exif = _exif_with_orientation(_normalise_exif(exif) or exif, 1)
    icc, exif = _fit_metadata(path, fmt, icc, exif)
    dpi = meta.dpi if meta is not None else None

    if fmt == "PNG":

        def write_png(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                _stream_png(
                    f,
                    planes,
                    h,
                    w,
                    channels,
                    depth,
                    icc=icc,
                    exif=exif,
                    dpi=dpi,
                    level=compress_level,
                )

        _save_bytes(path, write_png)
        return
    pixels = planes(0, h)
    if depth == 16:  # TIFF
        data = _encode_tiff16_readable(pixels, icc=icc, dpi=dpi)
        _save_bytes(path, lambda tmp: tmp.write_bytes(data))
        return
    im = _pil_from_uint8(pixels)
    del pixels
    kwargs = _pil_save_kwargs(fmt, icc=icc, dpi=dpi, exif=exif, quality=quality, lossless=lossless)
    _save_bytes(path, lambda tmp: im.save(tmp, format=fmt, **kwargs))
