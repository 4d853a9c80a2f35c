"""Read and write images as numpy arrays, bit-exact where the format allows.

Reading (:func:`read_image`, :func:`read_rgb_uint8`) accepts PNG, JPEG, WebP, BMP,
TIFF and GIF (first frame) in every mode Pillow decodes, plus 16-bit colour PNG
and TIFF, which Pillow itself truncates to 8 bits: for those we let Pillow's C
decoder run twice with byte-swapped unpackers (high byte, then low byte) and
join the two halves, so filter reconstruction, interlacing and compression
stay in C and the result is exact.

Every failure to read raises :class:`sisr.errors.ImageError` naming the file
and the cause.  The pixel limit is ours (:func:`set_max_pixels`,
``$SISR_MAX_PIXELS``), checked from the header before any pixel is decoded;
Pillow's own decompression-bomb check is bypassed by calling the format
plugins directly, and ``ImageFile.LOAD_TRUNCATED_IMAGES`` is never touched.

Writing (:func:`write_image`, :func:`write_uint8`) always goes through
:func:`sisr.io.atomic.atomic_path`: a failed write leaves no partial file.
16-bit PNG and TIFF (which Pillow cannot write in colour) are encoded here
with zlib.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import sys
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import (
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageFile,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

from sisr.errors import ConfigError, ImageError
from sisr.io.atomic import atomic_path

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageMeta",
    "LoadedImage",
    "NativeImage",
    "get_max_pixels",
    "read_image",
    "read_native",
    "read_rgb_uint8",
    "set_max_pixels",
    "write_image",
    "write_pixels",
    "write_uint8",
]

# Pillow's own hard limit (2 x MAX_IMAGE_PIXELS): above it some plugins refuse
# to decode even when our limit allows, so it is also our default.
DEFAULT_MAX_PIXELS = 178_956_970
_ENV_MAX_PIXELS = "SISR_MAX_PIXELS"
_max_pixels_override: int | None = None

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXIF_HEADER = b"Exif\x00\x00"
_ORIENTATION_TAG = 0x0112

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


# --------------------------------------------------------------------------- limits


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


# --------------------------------------------------------------------------- metadata


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
class _Decoded:
    """Integer pixels straight from the file: color HxW (gray) or HxWx3, uint8/uint16."""

    color: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    format: str
    mode: str
    icc_profile: bytes | None
    exif: bytes | None
    dpi: tuple[float, float] | None
    orientation: int


# --------------------------------------------------------------------------- identify


def _identify(head: bytes) -> str | None:
    if head.startswith(_PNG_SIGNATURE):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return None


_FACTORIES: dict[str, Callable[..., ImageFile.ImageFile]] = {
    "PNG": PngImagePlugin.PngImageFile,
    "JPEG": JpegImagePlugin.jpeg_factory,
    "WEBP": WebPImagePlugin.WebPImageFile,
    "BMP": BmpImagePlugin.BmpImageFile,
    "TIFF": TiffImagePlugin.TiffImageFile,
    "GIF": GifImagePlugin.GifImageFile,
}


@dataclass(frozen=True)
class _PngHeader:
    width: int
    height: int
    bit_depth: int
    color_type: int


def _scan_png(path: Path, data: bytes) -> _PngHeader:
    """Walk the chunks: check every CRC and that IEND is there, return IHDR.

    Pillow skips IDAT CRCs and tolerates a missing IEND, so a damaged or cut
    file could otherwise decode to plausible garbage.
    """
    view = memoryview(data)
    n = len(data)
    pos = 8
    header: _PngHeader | None = None
    while True:
        if pos + 8 > n:
            raise ImageError(path, "truncated PNG data (no IEND chunk)")
        length, ctype = struct.unpack_from(">I4s", data, pos)
        end = pos + 8 + length + 4
        if end > n:
            raise ImageError(path, f"truncated PNG data (in {_chunk_name(ctype)} chunk)")
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(view[pos + 4 : end - 4]) != crc:
            raise ImageError(path, f"corrupt PNG data (bad CRC in {_chunk_name(ctype)} chunk)")
        if header is None:
            if ctype != b"IHDR" or length != 13:
                raise ImageError(path, "corrupt PNG data (first chunk is not IHDR)")
            w, h, depth, color_type = struct.unpack_from(">IIBB", data, pos + 8)
            header = _PngHeader(w, h, depth, color_type)
        if ctype == b"IEND":
            return header
        pos = end


def _chunk_name(ctype: bytes) -> str:
    return ctype.decode("latin-1") if ctype.isalpha() else repr(ctype)


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """Canvas size from the first WebP chunk header, before libwebp allocates anything."""
    if len(data) < 30:
        return None
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = 1 + int.from_bytes(data[24:27], "little")
        h = 1 + int.from_bytes(data[27:30], "little")
        return w, h
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack_from("<HH", data, 26)
        return w & 0x3FFF, h & 0x3FFF
    return None


# --------------------------------------------------------------------------- decode


def _read_bytes(path: Path) -> bytes:
    try:
        if path.is_dir():
            raise ImageError(path, "is a directory, not an image file")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except PermissionError:
        raise ImageError(path, "permission denied") from None
    except OSError as e:
        raise ImageError(path, f"cannot read file ({e.strerror or e})") from None
    if not data:
        raise ImageError(path, "file is empty")
    return data


_DISPLAY = {"WEBP": "WebP"}


def _pil_cause(fmt: str, exc: BaseException, part: str = "data") -> str:
    name = _DISPLAY.get(fmt, fmt)
    msg = str(exc).strip() or type(exc).__name__
    if isinstance(exc, MemoryError):
        return f"not enough memory to decode this {name} image"
    if "truncated" in msg.lower() or isinstance(exc, EOFError):
        return f"truncated {name} {part} (the file ends early)"
    return f"corrupt {name} {part} ({msg})"


def _open_pil(path: Path, data: bytes, fmt: str, pixels: int | None) -> ImageFile.ImageFile:
    """Run the format plugin on the bytes (header only; pixels stay lazy)."""
    with _pil_limit_lifted(pixels or 0):
        return _FACTORIES[fmt](io.BytesIO(data), str(path))


_TIFF_RGB16 = re.compile(r"^(RGB|RGBA|RGBX);16([LBN])$")
_NATIVE_16 = "L" if sys.byteorder == "little" else "B"


def _swap_16(rawmode: str) -> str | None:
    """The unpacker that takes the low byte of each sample where ``rawmode`` takes the high."""
    m = _TIFF_RGB16.match(rawmode)
    if m is None:
        return None
    order = _NATIVE_16 if m.group(2) == "N" else m.group(2)
    return f"{m.group(1)};16{'B' if order == 'L' else 'L'}"


def _tile_rawmode(tile: Any) -> str | None:
    args = tile.args if hasattr(tile, "args") else tile[3]
    if isinstance(args, str):
        return args
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return None


def _with_rawmode(tile: Any, rawmode: str) -> Any:
    args = tile.args if hasattr(tile, "args") else tile[3]
    new_args = rawmode if isinstance(args, str) else (rawmode, *args[1:])
    if hasattr(tile, "_replace"):
        return tile._replace(args=new_args)
    return (*tile[:3], new_args)


def _decode_pil_16bit_color(
    path: Path,
    im: ImageFile.ImageFile,
    data: bytes,
    fmt: str,
    pixels: int,
    png: _PngHeader | None,
) -> np.ndarray | None:
    """16-bit RGB(A) (or gray+alpha PNG) samples as uint16 HxWxC, or None if not such a file.

    ``im`` is the opened, not yet loaded file; it is left untouched when None is
    returned.  Pillow decodes these files to 8 bits by keeping the high byte;
    decoding once more with the unpacker of the opposite byte order yields the
    low bytes, exactly and at C speed.
    """
    if png is not None:
        if png.bit_depth != 16 or png.color_type not in (2, 4, 6):
            return None
        if png.color_type == 4:
            # Gray+alpha: 4 bytes a pixel, the same stride as 8-bit RGBA, so one
            # raw pass gives (G_hi, G_lo, A_hi, A_lo).
            if hasattr(im, "_mode"):
                im._mode = "RGBA"
            else:  # Pillow < 10.1
                im.mode = "RGBA"  # type: ignore[misc]
            im.tile = [_with_rawmode(t, "RGBA") for t in im.tile]
            with _pil_limit_lifted(pixels):
                im.load()
            raw = np.asarray(im).astype(np.uint16)
            return (raw[..., 0::2] << 8) | raw[..., 1::2]
        hi_raw = "RGB;16B" if png.color_type == 2 else "RGBA;16B"
        lo_raw: str | None = "RGB;16L" if png.color_type == 2 else "RGBA;16L"
        if _tile_rawmode(im.tile[0]) != hi_raw:
            lo_raw = None
    else:
        rawmodes = {_tile_rawmode(t) for t in im.tile}
        if len(rawmodes) != 1:
            return None
        (hi_raw,) = rawmodes
        lo_raw = _swap_16(hi_raw) if hi_raw else None
        if lo_raw is None:
            return None
    if lo_raw is None:
        raise ImageError(path, f"unsupported 16-bit {fmt} layout")
    with _pil_limit_lifted(pixels):
        im.load()
        hi = np.asarray(im)
        im_lo = _open_pil(path, data, fmt, pixels)
        im_lo.tile = [_with_rawmode(t, lo_raw) for t in im_lo.tile]
        im_lo.load()
        lo = np.asarray(im_lo)
    return (hi.astype(np.uint16) << 8) | lo


def _is_tiff_16bit(im: ImageFile.ImageFile) -> bool:
    bps = getattr(im, "tag_v2", {}).get(258)
    if isinstance(bps, tuple):
        return bool(bps) and all(b == 16 for b in bps)
    return bps == 16


def _transparency_mask(arr: np.ndarray, key: Any) -> np.ndarray | None:
    """Alpha from a tRNS colour key (HxW bool: True where opaque)."""
    if isinstance(key, tuple):
        if arr.ndim != 3 or len(key) != arr.shape[2]:
            return None
        return np.any(arr != np.asarray(key, dtype=arr.dtype), axis=2)
    if isinstance(key, int) and arr.ndim == 2:
        return arr != key
    return None


def _palette_is_gray(im: Image.Image) -> bool:
    pal = im.getpalette("RGB")
    if not pal:
        return False
    p = np.asarray(pal, dtype=np.uint8).reshape(-1, 3)
    return bool(np.all(p[:, 0] == p[:, 1]) and np.all(p[:, 1] == p[:, 2]))


def _pixels_8bit_or_gray16(
    path: Path, im: Image.Image, fmt: str, png: _PngHeader | None
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(color HxW or HxWx3, alpha HxW or None, bit depth) for every Pillow mode we accept."""
    mode = im.mode
    key = im.info.get("transparency")
    if mode == "1":
        return np.asarray(im).astype(np.uint8) * np.uint8(255), None, 8
    if mode == "L":
        arr = np.asarray(im)
        if isinstance(key, int) and png is not None and png.bit_depth < 8:
            # Pillow scales 1/2/4-bit samples to 0..255 but keeps the tRNS key raw.
            key = key * 255 // ((1 << png.bit_depth) - 1)
        mask = _transparency_mask(arr, key)
        alpha = None if mask is None else mask.astype(np.uint8) * np.uint8(255)
        return arr, alpha, 8
    if mode == "LA":
        arr = np.asarray(im)
        return arr[..., 0].copy(), arr[..., 1].copy(), 8
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im)
        if mode == "I":
            lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
            if lo < 0 or hi > 65535:
                raise ImageError(path, f"unsupported 32-bit integer image (values {lo}..{hi})")
        arr = arr.astype(np.uint16)
        mask = _transparency_mask(arr, key)
        alpha = None if mask is None else mask.astype(np.uint16) * np.uint16(65535)
        return arr, alpha, 16
    if mode == "RGB":
        arr = np.asarray(im)
        mask = _transparency_mask(arr, key)
        alpha = None if mask is None else mask.astype(np.uint8) * np.uint8(255)
        return arr, alpha, 8
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or key is not None
        rgb_im = im.convert("RGBA" if has_alpha else "RGB")
        arr = np.asarray(rgb_im)
        if has_alpha:
            return arr[..., :3].copy(), arr[..., 3].copy(), 8
        return arr, None, 8
    if mode in ("RGBA", "RGBa"):
        arr = np.asarray(im if mode == "RGBA" else im.convert("RGBA"))
        return arr[..., :3].copy(), arr[..., 3].copy(), 8
    if mode in ("RGBX", "CMYK", "YCbCr"):
        return np.asarray(im.convert("RGB")), None, 8
    raise ImageError(path, f"unsupported image mode {mode!r} in {fmt} file")


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


def _decode(path: str | Path, max_pixels: int | None) -> _Decoded:
    path = Path(path)
    data = _read_bytes(path)
    fmt = _identify(data[:16])
    if fmt is None:
        raise ImageError(
            path, "not an image (cannot identify format; PNG, JPEG, WebP, BMP, TIFF, GIF are read)"
        )
    png = _scan_png(path, data) if fmt == "PNG" else None
    header_size = (png.width, png.height) if png is not None else None
    if fmt == "WEBP":
        if not WebPImagePlugin.SUPPORTED:
            raise ImageError(path, "this Pillow build cannot decode WebP")
        header_size = _webp_size(data)
    if header_size is not None:
        _check_pixels(path, *header_size, max_pixels)

    try:
        im = _open_pil(path, data, fmt, header_size[0] * header_size[1] if header_size else None)
    except ImageError:
        raise
    except Exception as e:
        raise ImageError(path, _pil_cause(fmt, e, "header")) from None
    width, height = im.size
    _check_pixels(path, width, height, max_pixels)
    pixels = width * height

    mode = im.mode
    try:
        color16 = None
        if (png is not None and png.bit_depth == 16) or (fmt == "TIFF" and _is_tiff_16bit(im)):
            color16 = _decode_pil_16bit_color(path, im, data, fmt, pixels, png)
            if color16 is None and fmt == "TIFF" and mode in ("RGB", "RGBA"):
                warnings.warn(
                    f"{path}: 16-bit TIFF layout {mode} read at 8-bit precision",
                    stacklevel=3,
                )
        if color16 is not None:
            arr = color16
            channels = arr.shape[2]
            if channels == 2:  # gray + alpha
                color, alpha = arr[..., 0].copy(), arr[..., 1].copy()
                mode = "LA;16"
            else:
                color = arr[..., :3].copy()
                alpha = arr[..., 3].copy() if channels == 4 else None
                mode = "RGBA;16" if channels == 4 else "RGB;16"
                mask = _transparency_mask(color, im.info.get("transparency"))
                if alpha is None and mask is not None:
                    alpha = mask.astype(np.uint16) * np.uint16(65535)
            bit_depth = 16
        else:
            with _pil_limit_lifted(pixels):
                im.load()
            color, alpha, bit_depth = _pixels_8bit_or_gray16(path, im, fmt, png)
            if mode == "P" and color.ndim == 3 and _palette_is_gray(im):
                color = color[..., 0].copy()
        info = im.info
        exif = _normalise_exif(info.get("exif"))
        try:
            orientation = int(im.getexif().get(_ORIENTATION_TAG, 1))
        except Exception:
            orientation = 1
    except ImageError:
        raise
    except Exception as e:
        raise ImageError(path, _pil_cause(fmt, e)) from None

    if orientation not in range(1, 9):
        orientation = 1
    if orientation != 1:
        color = _orient(color, orientation)
        alpha = None if alpha is None else _orient(alpha, orientation)
        if exif is not None:
            exif = _exif_with_orientation(exif, 1)
    icc = info.get("icc_profile") or None
    if _icc_space(icc) not in ("RGB", "GRAY"):
        icc = None
    dpi = info.get("dpi")
    if dpi is not None:
        try:
            dpi = (float(dpi[0]), float(dpi[1]))
        except (TypeError, ValueError, IndexError):
            dpi = None
    return _Decoded(color, alpha, bit_depth, fmt, mode, icc, exif, dpi, orientation)


# --------------------------------------------------------------------------- read API

_U8_TO_F32 = np.arange(256, dtype=np.float32) / np.float32(255)


def _to_float(arr: np.ndarray) -> np.ndarray:
    """uint8/uint16 -> float32 in [0, 1] (exactly v / max, correctly rounded)."""
    if arr.dtype == np.uint8:
        return _U8_TO_F32[arr]
    out = arr.astype(np.float32)
    out /= np.float32(65535)
    return out


def _meta(path: str | Path, d: _Decoded, *, has_alpha: bool) -> ImageMeta:
    """The :class:`ImageMeta` of a decoded file (``d`` from :func:`_decode`)."""
    h, w = d.color.shape[:2]
    return ImageMeta(
        path=str(path),
        format=d.format,
        mode=d.mode,
        width=w,
        height=h,
        bit_depth=d.bit_depth,
        is_gray=d.color.ndim == 2,
        has_alpha=has_alpha,
        icc_profile=d.icc_profile,
        exif=d.exif,
        dpi=d.dpi,
        orientation=d.orientation,
    )


def read_image(path: str | Path, *, max_pixels: int | None = None) -> LoadedImage:
    """Read an image file as float RGB (+ alpha) in [0, 1], EXIF orientation applied.

    ``max_pixels`` overrides :func:`get_max_pixels` for this call.  Multi-frame
    files give their first frame.  Raises :class:`ImageError` on any failure.
    """
    d = _decode(path, max_pixels)
    gray = d.color.ndim == 2
    f = _to_float(d.color)
    rgb = np.repeat(f[..., None], 3, axis=2) if gray else f
    alpha = None if d.alpha is None else _to_float(d.alpha)
    return LoadedImage(rgb=rgb, alpha=alpha, meta=_meta(path, d, has_alpha=alpha is not None))


def read_rgb_uint8(path: str | Path, *, max_pixels: int | None = None) -> np.ndarray:
    """The file's 8-bit pixels as HxWx3 uint8, bit-exact (no float round trip).

    Gray is replicated to 3 channels, alpha is dropped (not composited), EXIF
    orientation is applied; palette/CMYK/1-bit go through Pillow's conversion to
    RGB, and 16-bit samples are rounded to 8 bits (``round(v / 257)``).
    """
    d = _decode(path, max_pixels)
    color = d.color
    if color.dtype == np.uint16:
        color = ((color.astype(np.uint32) * 2 + 257) // 514).astype(np.uint8)
    if color.ndim == 2:
        return np.repeat(color[..., None], 3, axis=2)
    return np.ascontiguousarray(color)


# --------------------------------------------------------------------------- encode


def _quantize(x: np.ndarray, bits: int) -> np.ndarray:
    """Float in [0, 1] -> uint8/uint16: clip, then round half up."""
    scale = 255.0 if bits == 8 else 65535.0
    y = np.clip(x.astype(np.float32) if x.dtype == np.float16 else x, 0.0, 1.0)
    y = y * y.dtype.type(scale)
    y += y.dtype.type(0.5)
    np.floor(y, out=y)
    return y.astype(np.uint8 if bits == 8 else np.uint16)


_ABS_RESIDUAL = np.minimum(np.arange(256), 256 - np.arange(256)).astype(np.uint8)


def _png_filter(raw: np.ndarray, bpp: int) -> np.ndarray:
    """Choose a PNG filter per row (min sum of |signed residual|, libpng's heuristic).

    raw: (H, R) uint8 scanlines, ``bpp`` bytes per pixel; returns (H, 1 + R) uint8
    (filter type byte then residuals).  Encoding only looks at unfiltered bytes, so
    it vectorises (decoding is the recursive direction).
    """
    h, r = raw.shape
    a = np.zeros_like(raw)  # left
    a[:, bpp:] = raw[:, :-bpp]
    b = np.zeros_like(raw)  # up
    b[1:] = raw[:-1]
    c = np.zeros_like(raw)  # up-left
    c[1:, bpp:] = raw[:-1, :-bpp]
    # uint8 arithmetic wraps mod 256, which is exactly PNG's residual arithmetic.
    avg = (a >> 1) + (b >> 1) + (a & b & 1)
    a16, b16, c16 = a.astype(np.int16), b.astype(np.int16), c.astype(np.int16)
    pa = np.abs(b16 - c16)
    pb = np.abs(a16 - c16)
    pc = np.abs(a16 + b16 - 2 * c16)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    cands = (raw, raw - a, raw - b, raw - avg, raw - paeth)
    scores = np.stack([_ABS_RESIDUAL[x].sum(axis=1, dtype=np.uint32) for x in cands])
    best = np.argmin(scores, axis=0)
    out = np.empty((h, r + 1), dtype=np.uint8)
    out[:, 0] = best
    for k, cand in enumerate(cands):
        rows = best == k
        out[rows, 1:] = cand[rows]
    return out


def _png_chunk(ctype: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + ctype
        + payload
        + struct.pack(">I", zlib.crc32(ctype + payload))
    )


def _encode_png(
    arr: np.ndarray,
    *,
    icc: bytes | None,
    exif: bytes | None,
    dpi: tuple[float, float] | None,
    level: int = 6,
) -> bytes:
    """PNG bytes for uint8/uint16 HxWxC (C = 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA)."""
    h, w, ch = arr.shape
    depth = 16 if arr.dtype == np.uint16 else 8
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[ch]
    raw = arr.astype(">u2" if depth == 16 else np.uint8).view(np.uint8).reshape(h, -1)
    bpp = ch * depth // 8
    comp = zlib.compressobj(level)
    parts = []
    block = max(1, (1 << 22) // max(1, raw.shape[1]))  # bound the filter's temporaries
    for y0 in range(0, h, block):
        # Each block needs its previous row for the Up/Average/Paeth predictors.
        lo = max(0, y0 - 1)
        filt = _png_filter(raw[lo : y0 + block], bpp)
        parts.append(comp.compress(filt[y0 - lo :].tobytes()))
    parts.append(comp.flush())
    out = [
        _PNG_SIGNATURE,
        _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)),
    ]
    if icc:
        out.append(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc)))
    if dpi:
        ppm = [max(1, round(d / 0.0254)) for d in dpi]
        out.append(_png_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
    if exif:
        out.append(_png_chunk(b"eXIf", exif.removeprefix(_EXIF_HEADER)))
    idat = b"".join(parts)
    step = 1 << 20
    out.extend(_png_chunk(b"IDAT", idat[i : i + step]) for i in range(0, max(1, len(idat)), step))
    out.append(_png_chunk(b"IEND", b""))
    return b"".join(out)


def _encode_tiff16(arr: np.ndarray, *, icc: bytes | None, dpi: tuple[float, float] | None) -> bytes:
    """Little-endian baseline TIFF, Deflate + horizontal predictor, for uint16 HxWxC."""
    h, w, ch = arr.shape
    # Predictor 2: each sample minus its left neighbour in the same channel, mod 2**16.
    diff = arr.astype(np.uint16)
    diff[:, 1:] = arr[:, 1:] - arr[:, :-1]
    rows = diff.astype("<u2").reshape(h, -1)
    rows_per_strip = max(1, (1 << 18) // max(1, rows.shape[1] * 2))
    strips = [
        zlib.compress(rows[y : y + rows_per_strip].tobytes(), 6)
        for y in range(0, h, rows_per_strip)
    ]
    short, long_, rational, undefined = 3, 4, 5, 7
    tags: dict[int, tuple[int, list[int] | bytes]] = {
        256: (long_, [w]),
        257: (long_, [h]),
        258: (short, [16] * ch),
        259: (short, [8]),  # Adobe Deflate
        262: (short, [1 if ch in (1, 2) else 2]),  # BlackIsZero / RGB
        273: (long_, [0] * len(strips)),  # strip offsets, filled in below
        277: (short, [ch]),
        278: (long_, [rows_per_strip]),
        279: (long_, [len(s) for s in strips]),
        284: (short, [1]),
        317: (short, [2]),  # horizontal differencing
        339: (short, [1] * ch),
    }
    if ch in (2, 4):
        tags[338] = (short, [2])  # unassociated alpha
    if dpi:
        tags[282] = (rational, [max(1, round(dpi[0] * 1000)), 1000])
        tags[283] = (rational, [max(1, round(dpi[1] * 1000)), 1000])
        tags[296] = (short, [2])  # inch
    if icc:
        tags[34675] = (undefined, icc)

    def pack(typ: int, values: list[int] | bytes) -> tuple[int, bytes]:
        if typ == undefined:
            return len(values), bytes(values)
        code = "H" if typ == short else "I"
        count = len(values) // 2 if typ == rational else len(values)
        return count, struct.pack(f"<{len(values)}{code}", *values)

    ifd_offset = 8
    data_start = ifd_offset + 2 + 12 * len(tags) + 4
    # Out-of-line sizes do not depend on the strip offsets' values, so lay out once.
    extra_size = 0
    for typ, values in tags.values():
        n = len(pack(typ, values)[1])
        if n > 4:
            extra_size += n + (n & 1)
    offsets, pos = [], data_start + extra_size
    for s in strips:
        offsets.append(pos)
        pos += len(s)
    tags[273] = (long_, offsets)

    fields, extra, cursor = [], [], data_start
    for tag in sorted(tags):
        typ, values = tags[tag]
        count, payload = pack(typ, values)
        if len(payload) <= 4:
            value = payload.ljust(4, b"\x00")
        else:
            value = struct.pack("<I", cursor)
            payload += b"\x00" * (len(payload) & 1)
            extra.append(payload)
            cursor += len(payload)
        fields.append(struct.pack("<HHI", tag, typ, count) + value)
    header = b"II*\x00" + struct.pack("<I", ifd_offset) + struct.pack("<H", len(tags))
    return b"".join([header, *fields, b"\x00" * 4, *extra, *strips])


# --------------------------------------------------------------------------- write API


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


def _save_bytes(path: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` inside atomic_path; turn I/O failures into ImageError."""
    try:
        with atomic_path(path) as tmp:
            write(tmp)
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


# --------------------------------------------------------------------------- native pixels
# For large images (``sisr upscale``): integer pixels in and out without a float32 copy of
# the whole image, and PNG written to disk block by block.


@dataclass
class NativeImage:
    """``color``: the file's integer pixels, HxW (gray) or HxWx3, uint8 or uint16, exactly as
    stored (EXIF orientation applied); ``alpha``: HxW of the same dtype or None."""

    color: np.ndarray
    alpha: np.ndarray | None
    meta: ImageMeta


def read_native(path: str | Path, *, max_pixels: int | None = None) -> NativeImage:
    """Like :func:`read_image` but keeps the stored integer samples (no float conversion).

    Gray files stay HxW; 16-bit files give uint16.  Raises :class:`ImageError`.
    """
    d = _decode(path, max_pixels)
    color = d.color
    alpha = d.alpha
    if alpha is not None and alpha.dtype != color.dtype:
        alpha = _requantize(alpha, color.dtype)
    meta = _meta(path, d, has_alpha=alpha is not None)
    return NativeImage(color=color, alpha=alpha, meta=meta)


def _requantize(arr: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """uint8 <-> uint16 with rounding (v * 257 up, round(v / 257) down)."""
    if arr.dtype == dtype:
        return arr
    if dtype == np.uint16:
        return arr.astype(np.uint16) * np.uint16(257)
    return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)


_ZLIB_HEADERS = {0: b"\x78\x01", 1: b"\x78\x01", 6: b"\x78\x9c"}
_DEFLATE_WINDOW = 1 << 15


def _deflate_chunk(data: bytes, zdict: bytes, level: int, last: bool) -> bytes:
    comp = zlib.compressobj(level, zlib.DEFLATED, -15, zdict=zdict) if zdict else None
    comp = comp or zlib.compressobj(level, zlib.DEFLATED, -15)
    return comp.compress(data) + comp.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def _deflate_parallel(chunks: Iterator[bytes], level: int) -> Iterator[bytes]:
    """One zlib stream for the concatenated ``chunks``, compressed on several threads.

    As pigz does: each chunk is raw deflate primed with the previous chunk's last 32 KiB
    (so matches still reach back across chunk borders) and ends with a sync flush, which
    byte-aligns it so the pieces simply concatenate; zlib frames them with its header and
    the Adler-32 of the whole data. zlib releases the GIL, so the threads run in parallel.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    header = _ZLIB_HEADERS.get(level, b"\x78\xda" if level >= 7 else b"\x78\x5e")
    yield header
    workers = max(1, min(8, os.cpu_count() or 1))
    adler = 1
    tail = b""
    queue: list[Future[bytes]] = []
    with ThreadPoolExecutor(workers, "sisr-deflate") as pool:
        nxt = next(chunks, None)
        while nxt is not None:
            data, nxt = nxt, next(chunks, None)
            adler = zlib.adler32(data, adler)
            queue.append(pool.submit(_deflate_chunk, data, tail, level, nxt is None))
            tail = (tail + data)[-_DEFLATE_WINDOW:]
            while len(queue) > 2 * workers:
                yield queue.pop(0).result()
        if not queue:  # no data at all: an empty final block
            queue.append(pool.submit(_deflate_chunk, b"", b"", level, True))
        for fut in queue:
            yield fut.result()
    yield struct.pack(">I", adler & 0xFFFFFFFF)


def _stream_png(
    f: Any,
    planes: Callable[[int, int], np.ndarray],
    height: int,
    width: int,
    channels: int,
    depth: int,
    *,
    icc: bytes | None,
    exif: bytes | None,
    dpi: tuple[float, float] | None,
    level: int,
) -> None:
    """Write a PNG to the open binary file ``f``, pulling rows from ``planes(y0, y1)``.

    ``planes(y0, y1)`` returns rows y0..y1-1 as (y1 - y0, W, C) uint8/uint16; only one block
    of rows (plus its filter temporaries) is in memory at a time.
    """
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    bpp = channels * depth // 8
    row_bytes = width * bpp
    f.write(_PNG_SIGNATURE)
    f.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)))
    if icc:
        f.write(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc)))
    if dpi:
        ppm = [max(1, round(d / 0.0254)) for d in dpi]
        f.write(_png_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
    if exif:
        f.write(_png_chunk(b"eXIf", exif.removeprefix(_EXIF_HEADER)))
    pending: list[bytes] = []
    pending_size = 0
    step = 1 << 20

    def emit(data: bytes, final: bool = False) -> None:
        nonlocal pending_size
        if data:
            pending.append(data)
            pending_size += len(data)
        if pending_size >= step or (final and pending_size):
            f.write(_png_chunk(b"IDAT", b"".join(pending)))
            pending.clear()
            pending_size = 0

    def filtered_blocks() -> Iterator[bytes]:
        block = max(1, (1 << 22) // max(1, row_bytes))
        prev: np.ndarray | None = None  # last raw row of the previous block (Up/Avg/Paeth)
        for y0 in range(0, height, block):
            y1 = min(height, y0 + block)
            rows = np.ascontiguousarray(planes(y0, y1))
            raw = rows.astype(">u2" if depth == 16 else np.uint8).view(np.uint8)
            raw = raw.reshape(y1 - y0, -1)
            if prev is not None:
                filt = _png_filter(np.concatenate([prev, raw]), bpp)[1:]
            else:
                filt = _png_filter(raw, bpp)
            prev = raw[-1:].copy()
            yield filt.tobytes()

    for piece in _deflate_parallel(filtered_blocks(), level):
        emit(piece)
    emit(b"", final=True)
    f.write(_png_chunk(b"IEND", b""))


def write_pixels(
    path: str | Path,
    color: np.ndarray,
    alpha: np.ndarray | None = None,
    *,
    meta: ImageMeta | None = None,
    format: str | None = None,
    quality: int = 95,
    lossless: bool = False,
    compress_level: int = 6,
) -> None:
    """Write integer pixels as they are: ``color`` HxW (gray) or HxWx3, uint8 or uint16;
    ``alpha`` HxW (converted to ``color``'s dtype) or None.

    The integer counterpart of :func:`write_image` for large images: PNG is encoded and
    written block by block (``color`` may be an ``np.memmap``), so memory stays bounded.
    uint16 pixels are written as 16 bits in PNG and TIFF, rounded to 8 bits for JPEG, WebP
    and BMP.  ICC profile, EXIF (orientation 1) and dpi come from ``meta`` as in
    :func:`write_image`; alpha in JPEG/BMP is an :class:`ImageError`.  Atomic.
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
