"""Read images as numpy arrays, bit-exact where the format allows.

:func:`read_image`, :func:`read_rgb_uint8` and :func:`read_native` accept PNG, JPEG,
WebP, BMP, TIFF and GIF (first frame) in every mode Pillow decodes, plus 16-bit colour
PNG and TIFF, which Pillow itself truncates to 8 bits: for those we let Pillow's C
decoder run twice with byte-swapped unpackers (high byte, then low byte) and join the
two halves, so filter reconstruction, interlacing and compression stay in C and the
result is exact.

Every failure to read raises :class:`sisr.errors.ImageError` naming the file and the
cause.  The pixel limit (:mod:`sisr.io.limits`) is checked from the header before any
pixel is decoded; Pillow's own decompression-bomb check is bypassed by calling the
format plugins directly, and ``ImageFile.LOAD_TRUNCATED_IMAGES`` is never touched.
"""

from __future__ import annotations

import io
import re
import struct
import sys
import warnings
import zlib
from collections.abc import Callable
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

from sisr.errors import ImageError
from sisr.io.current import handling
from sisr.io.limits import _check_pixels, _pil_limit_lifted
from sisr.io.meta import (
    _ORIENTATION_TAG,
    _PNG_SIGNATURE,
    ImageMeta,
    LoadedImage,
    NativeImage,
    _exif_with_orientation,
    _icc_space,
    _normalise_exif,
    _orient,
)
from sisr.io.samples import _requantize, _to_float

__all__ = ["read_image", "read_native", "read_rgb_uint8"]


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


_SAMPLE_FORMATS = {1: "unsigned integer", 2: "signed integer", 3: "floating-point"}


def _tiff_unsupported(data: bytes) -> str:
    """Why Pillow has no mode for a TIFF (e.g. 32-bit float RGB): not corruption."""
    detail = ""
    try:
        ifd = TiffImagePlugin.ImageFileDirectory_v2(data[:8])
        fp = io.BytesIO(data)
        fp.seek(ifd.next)
        ifd.load(fp)
        bps = ifd.get(258, (1,))
        bps = bps if isinstance(bps, tuple) else (bps,)
        fmt = ifd.get(339, (1,))
        fmt = fmt[0] if isinstance(fmt, tuple) else fmt
        spp = ifd.get(277, len(bps))
        kind = _SAMPLE_FORMATS.get(int(fmt), f"sample format {fmt}")
        detail = f": {spp} channel(s) of {bps[0]}-bit {kind} samples"
    except Exception:
        pass
    return (
        f"unsupported TIFF pixel mode{detail} (8- and 16-bit integer TIFF can be read; "
        "convert the image to one of those)"
    )


def _warn_if_animated(path: Path, im: ImageFile.ImageFile, fmt: str) -> None:
    """Say that frames are dropped (we read the first one only)."""
    try:
        frames = int(im.n_frames) if getattr(im, "is_animated", False) else 1
    except Exception:  # a damaged later frame: the decode below reports what matters
        return
    if frames > 1:
        warnings.warn(
            f"{path}: animated {_DISPLAY.get(fmt, fmt)} with {frames} frames; "
            "only the first frame is read",
            stacklevel=5,
        )


def _decode(path: str | Path, max_pixels: int | None) -> _Decoded:
    with handling(path):
        return _decode_file(Path(path), max_pixels)


def _decode_file(path: Path, max_pixels: int | None) -> _Decoded:
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
        if fmt == "TIFF" and "unknown pixel mode" in str(e):
            raise ImageError(path, _tiff_unsupported(data)) from None
        raise ImageError(path, _pil_cause(fmt, e, "header")) from None
    width, height = im.size
    _check_pixels(path, width, height, max_pixels)
    pixels = width * height
    if fmt in ("GIF", "WEBP", "PNG"):
        _warn_if_animated(path, im, fmt)

    mode = im.mode
    try:
        color16 = None
        if (png is not None and png.bit_depth == 16) or (fmt == "TIFF" and _is_tiff_16bit(im)):
            color16 = _decode_pil_16bit_color(path, im, data, fmt, pixels, png)
            if color16 is None and fmt == "TIFF" and mode in ("RGB", "RGBA"):
                warnings.warn(
                    f"{path}: 16-bit TIFF layout {mode} read at 8-bit precision",
                    stacklevel=4,
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
