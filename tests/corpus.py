"""A corpus of awkward image files, with what reading each one must give.

``make_corpus(folder)`` writes the files and returns one :class:`CorpusCase` per
file: either the expected result (shape, gray/alpha/bit depth, and the exact
integer pixels wherever the format is lossless) or the expected error (an
``ImageError`` whose message names the file and contains ``error``).

Used by tests/io/test_corpus.py and reusable by any command that reads images
(``sisr data make-lr``, ``sisr upscale``): run it on the corpus and check that
every ok case works and every error case fails cleanly.

The 16-bit PNG and TIFF files are encoded here by a deliberately simple,
row-by-row encoder (every PNG filter type, Adam7 interlacing, both TIFF byte
orders), independent of sisr's own writer, so they test the reader against an
outside reference.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, PngImagePlugin

__all__ = ["CorpusCase", "decode_png", "encode_png", "encode_tiff", "make_corpus"]


@dataclass(frozen=True)
class CorpusCase:
    """One corpus file and its expected outcome.

    ok cases: ``shape`` (H, W, 3) of ``read_image(...).rgb``, ``is_gray``,
    ``has_alpha``, ``bit_depth``; ``color``/``alpha`` are the exact integer
    pixels (uint8 or uint16; HxW for gray) when the format is lossless, else
    ``approx`` is a float HxWx3 reference within ``atol`` (mean absolute error).
    error cases: ``error`` is a substring of the ImageError message.
    """

    name: str
    path: Path
    ok: bool
    shape: tuple[int, int, int] | None = None
    is_gray: bool | None = None
    has_alpha: bool | None = None
    bit_depth: int | None = None
    color: np.ndarray | None = None
    alpha: np.ndarray | None = None
    approx: np.ndarray | None = None
    atol: float = 0.0
    error: str | None = None


# --------------------------------------------------------------------------- encoders

_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


def _chunk(ctype: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(ctype + payload)
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", crc)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _filter_rows(rows: np.ndarray, bpp: int, first_filter: int) -> bytes:
    """Filter (H, R) uint8 rows, cycling the filter type 0..4 from ``first_filter``."""
    out = bytearray()
    prev = np.zeros(rows.shape[1], dtype=np.int64)
    for y, row_u8 in enumerate(rows):
        row = row_u8.astype(np.int64)
        kind = (first_filter + y) % 5
        left = np.concatenate([np.zeros(bpp, dtype=np.int64), row[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, dtype=np.int64), prev[:-bpp]])
        if kind == 0:
            res = row
        elif kind == 1:
            res = row - left
        elif kind == 2:
            res = row - prev
        elif kind == 3:
            res = row - (left + prev) // 2
        else:
            pred = [
                _paeth(int(a), int(b), int(c)) for a, b, c in zip(left, prev, upleft, strict=True)
            ]
            res = row - np.asarray(pred, dtype=np.int64)
        out.append(kind)
        out += (res % 256).astype(np.uint8).tobytes()
        prev = row
    return bytes(out)


def encode_png(
    pixels: np.ndarray,
    *,
    interlace: bool = False,
    first_filter: int = 0,
    chunks: tuple[tuple[bytes, bytes], ...] = (),
) -> bytes:
    """PNG bytes for uint8/uint16 HxW (gray) or HxWxC (C: 2 gray+alpha, 3 RGB, 4 RGBA).

    Every filter type is used (cycling row by row); ``interlace`` writes Adam7.
    ``chunks`` (type, payload) go between IHDR and IDAT.
    """
    arr = pixels[..., None] if pixels.ndim == 2 else pixels
    h, w, ch = arr.shape
    depth = 16 if arr.dtype == np.uint16 else 8
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[ch]
    bpp = ch * depth // 8

    def scanlines(img: np.ndarray) -> np.ndarray:
        if depth == 16:
            return img.astype(">u2").view(np.uint8).reshape(img.shape[0], -1)
        return img.reshape(img.shape[0], -1)

    if interlace:
        data = b""
        for xs, ys, dx, dy in _ADAM7:
            sub = arr[ys::dy, xs::dx]
            if sub.shape[0] and sub.shape[1]:
                data += _filter_rows(scanlines(sub), bpp, first_filter)
    else:
        data = _filter_rows(scanlines(arr), bpp, first_filter)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, int(interlace))
    body = [_chunk(b"IHDR", ihdr), *(_chunk(t, p) for t, p in chunks)]
    body.append(_chunk(b"IDAT", zlib.compress(data, 9)))
    body.append(_chunk(b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(body)


def decode_png(data: bytes) -> np.ndarray:
    """Reference decoder for non-interlaced 8/16-bit gray/GA/RGB/RGBA PNG (slow, tiny images).

    Returns uint8/uint16 HxWxC.  Checks every chunk CRC.
    """
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        payload = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(ctype + payload) == crc, f"bad CRC in {ctype!r}"
        if ctype == b"IHDR":
            header = struct.unpack(">IIBBBBB", payload)
        elif ctype == b"IDAT":
            idat += payload
        elif ctype == b"IEND":
            break
        pos += 12 + length
    assert header is not None
    w, h, depth, color_type, _, _, interlace = header
    assert interlace == 0 and depth in (8, 16)
    ch = {0: 1, 4: 2, 2: 3, 6: 4}[color_type]
    bpp = ch * depth // 8
    stride = w * bpp
    raw = zlib.decompress(idat)
    assert len(raw) == h * (stride + 1)
    rows = np.zeros((h, stride), dtype=np.int64)
    prev = np.zeros(stride, dtype=np.int64)
    for y in range(h):
        kind = raw[y * (stride + 1)]
        f = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=y * (stride + 1) + 1)
        row = np.zeros(stride, dtype=np.int64)
        for i in range(stride):
            a = int(row[i - bpp]) if i >= bpp else 0
            b = int(prev[i])
            c = int(prev[i - bpp]) if i >= bpp else 0
            pred = (0, a, b, (a + b) // 2, _paeth(a, b, c))[kind]
            row[i] = (int(f[i]) + pred) % 256
        rows[y] = row
        prev = row
    u8 = rows.astype(np.uint8)
    if depth == 16:
        return u8.reshape(h, w * ch, 2).view(">u2")[..., 0].astype(np.uint16).reshape(h, w, ch)
    return u8.reshape(h, w, ch)


def encode_tiff(pixels: np.ndarray, *, big_endian: bool = False) -> bytes:
    """Uncompressed single-strip TIFF for uint8/uint16 HxW or HxWx3 / HxWx4 (alpha)."""
    arr = pixels[..., None] if pixels.ndim == 2 else pixels
    h, w, ch = arr.shape
    bits = 16 if arr.dtype == np.uint16 else 8
    order = ">" if big_endian else "<"
    strip = arr.astype(f"{order}u2" if bits == 16 else np.uint8).tobytes()
    entries: list[tuple[int, int, int, bytes]] = []  # tag, type, count, value bytes

    def short(tag: int, *vals: int) -> None:
        entries.append((tag, 3, len(vals), struct.pack(f"{order}{len(vals)}H", *vals)))

    def long_(tag: int, val: int) -> None:
        entries.append((tag, 4, 1, struct.pack(f"{order}I", val)))

    long_(256, w)
    long_(257, h)
    short(258, *([bits] * ch))
    short(259, 1)
    short(262, 1 if ch == 1 else 2)
    long_(273, 0)  # patched below
    short(277, ch)
    long_(278, h)
    long_(279, len(strip))
    if ch == 4:
        short(338, 2)
    n = len(entries)
    ifd_size = 2 + 12 * n + 4
    extra = b""
    fields = []
    extra_start = 8 + ifd_size
    for tag, typ, count, value in entries:
        if len(value) > 4:
            fields.append((tag, typ, count, struct.pack(f"{order}I", extra_start + len(extra))))
            extra += value
        else:
            fields.append((tag, typ, count, value.ljust(4, b"\x00")))
    strip_offset = extra_start + len(extra)
    out = bytearray(b"MM\x00*" if big_endian else b"II*\x00")
    out += struct.pack(f"{order}I", 8)
    out += struct.pack(f"{order}H", n)
    for tag, typ, count, value in fields:
        if tag == 273:
            value = struct.pack(f"{order}I", strip_offset)
        out += struct.pack(f"{order}HHI", tag, typ, count) + value
    out += b"\x00\x00\x00\x00" + extra + strip
    return bytes(out)


# --------------------------------------------------------------------------- helpers


def _pil_bytes(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _pattern(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth-ish uint8 HxWx3 pattern with a distinct corner, so rotations are visible."""
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    base = np.stack([x * 255 // max(1, w - 1), y * 255 // max(1, h - 1), (x + y) * 3 % 256], 2)
    base = base + rng.integers(-3, 4, size=base.shape)
    out = np.clip(base, 0, 255).astype(np.uint8)
    out[: h // 4, : w // 4] = (255, 0, 0)
    return out


def _float(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64) / 255.0


# --------------------------------------------------------------------------- corpus


def make_corpus(folder: Path) -> list[CorpusCase]:
    """Write the corpus into ``folder`` (created if needed) and return its cases."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1234)
    cases: list[CorpusCase] = []

    def put(name: str, data: bytes) -> Path:
        p = folder / name
        p.write_bytes(data)
        return p

    def ok(name: str, data: bytes | None, shape: tuple[int, int], **kw: object) -> None:
        path = put(name, data) if data is not None else folder / name
        cases.append(CorpusCase(name, path, True, shape=(*shape, 3), **kw))  # type: ignore[arg-type]

    def err(name: str, data: bytes | None, error: str) -> None:
        path = put(name, data) if data is not None else folder / name
        cases.append(CorpusCase(name, path, False, error=error))

    rgb = _pattern(24, 40, 0)
    png_rgb = _pil_bytes(Image.fromarray(rgb), "PNG")
    jpg_rgb = _pil_bytes(Image.fromarray(rgb), "JPEG", quality=95)

    # --- failures
    err("truncated.png", png_rgb[: len(png_rgb) // 2], "truncated PNG")
    err("truncated.jpg", jpg_rgb[: len(jpg_rgb) // 2], "truncated JPEG")
    err("empty.png", b"", "file is empty")
    err("text.png", b"this is a text file, not a picture\n" * 5, "not an image")
    noise = rng.integers(0, 256, size=4096, dtype=np.uint8).tobytes()
    err("random.jpg", b"\x00\x01" + noise, "not an image")
    (folder / "folder.png").mkdir(exist_ok=True)
    err("folder.png", None, "is a directory")
    err("missing.png", None, "file not found")
    bad = bytearray(png_rgb)
    i = bad.find(b"IDAT")
    (length,) = struct.unpack(">I", bad[i - 4 : i])
    bad[i + 4 + length] ^= 0xFF  # first CRC byte of IDAT
    err("bad_crc.png", bytes(bad), "bad CRC in IDAT")
    huge = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    tiny_idat = zlib.compress(b"\x00" * 301)
    err(
        "huge_header.png",
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", huge)
        + _chunk(b"IDAT", tiny_idat)
        + _chunk(b"IEND", b""),
        "above the limit",
    )
    garbage_idat = bytes(rng.integers(0, 256, size=200, dtype=np.uint8))
    ihdr = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    err(
        "bad_zlib.png",
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", garbage_idat)
        + _chunk(b"IEND", b""),
        "corrupt PNG",
    )
    err("header_only.jpg", jpg_rgb[:20], "JPEG")
    webp = _pil_bytes(Image.fromarray(rgb), "WEBP", quality=80)
    err("truncated.webp", webp[: len(webp) // 2], "WebP")
    tif = encode_tiff(rgb)
    err("truncated.tif", tif[: len(tif) - 500], "truncated TIFF")

    # --- tiny images
    one = np.array([[[12, 200, 77]]], dtype=np.uint8)
    ok(
        "rgb_1x1.png",
        _pil_bytes(Image.fromarray(one), "PNG"),
        (1, 1),
        is_gray=False,
        has_alpha=False,
        bit_depth=8,
        color=one,
    )
    g1 = np.array([[131]], dtype=np.uint8)
    ok(
        "gray_1x1.png",
        _pil_bytes(Image.fromarray(g1), "PNG"),
        (1, 1),
        is_gray=True,
        has_alpha=False,
        bit_depth=8,
        color=g1,
    )

    # --- 16-bit PNG (independent encoder, all filters, interlaced variants)
    g16 = rng.integers(0, 65536, size=(13, 17), dtype=np.uint16)
    ok(
        "gray16.png",
        encode_png(g16),
        (13, 17),
        is_gray=True,
        has_alpha=False,
        bit_depth=16,
        color=g16,
    )
    c16 = rng.integers(0, 65536, size=(11, 19, 3), dtype=np.uint16)
    ok(
        "rgb16.png",
        encode_png(c16, first_filter=1),
        (11, 19),
        is_gray=False,
        has_alpha=False,
        bit_depth=16,
        color=c16,
    )
    ok(
        "rgb16_interlaced.png",
        encode_png(c16, interlace=True, first_filter=3),
        (11, 19),
        is_gray=False,
        has_alpha=False,
        bit_depth=16,
        color=c16,
    )
    a16 = rng.integers(0, 65536, size=(9, 14, 4), dtype=np.uint16)
    ok(
        "rgba16.png",
        encode_png(a16, first_filter=4),
        (9, 14),
        is_gray=False,
        has_alpha=True,
        bit_depth=16,
        color=a16[..., :3],
        alpha=a16[..., 3],
    )
    ok(
        "rgba16_interlaced.png",
        encode_png(a16, interlace=True),
        (9, 14),
        is_gray=False,
        has_alpha=True,
        bit_depth=16,
        color=a16[..., :3],
        alpha=a16[..., 3],
    )
    key16 = c16[0, 0]
    trns16 = np.where(np.all(c16 == key16, axis=2), 0, 65535).astype(np.uint16)
    ok(
        "rgb16_trns.png",
        encode_png(c16, chunks=((b"tRNS", key16.astype(">u2").tobytes()),)),
        (11, 19),
        is_gray=False,
        has_alpha=True,
        bit_depth=16,
        color=c16,
        alpha=trns16,
    )
    la16 = rng.integers(0, 65536, size=(10, 7, 2), dtype=np.uint16)
    ok(
        "la16.png",
        encode_png(la16, first_filter=2),
        (10, 7),
        is_gray=True,
        has_alpha=True,
        bit_depth=16,
        color=la16[..., 0],
        alpha=la16[..., 1],
    )

    # --- palette, gray, alpha variants (8-bit, lossless)
    pal_idx = rng.integers(0, 4, size=(6, 9), dtype=np.uint8)
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [250, 250, 10]], dtype=np.uint8)
    p_im = Image.fromarray(pal_idx, mode="P")
    p_im.putpalette(palette.flatten().tolist())
    ok(
        "palette.png",
        _pil_bytes(p_im, "PNG"),
        (6, 9),
        is_gray=False,
        has_alpha=False,
        bit_depth=8,
        color=palette[pal_idx],
    )
    trns = bytes([255, 0, 128, 255])
    ok(
        "palette_trns.png",
        _pil_bytes(p_im, "PNG", transparency=trns),
        (6, 9),
        is_gray=False,
        has_alpha=True,
        bit_depth=8,
        color=palette[pal_idx],
        alpha=np.frombuffer(trns, dtype=np.uint8)[pal_idx],
    )
    gray_pal = np.stack([np.arange(0, 256, 64, dtype=np.uint8)] * 3, 1)
    pg = Image.fromarray(pal_idx, mode="P")
    pg.putpalette(gray_pal.flatten().tolist())
    ok(
        "palette_gray.png",
        _pil_bytes(pg, "PNG"),
        (6, 9),
        is_gray=True,
        has_alpha=False,
        bit_depth=8,
        color=gray_pal[pal_idx][..., 0],
    )
    ok(
        "palette.gif",
        _pil_bytes(p_im, "GIF", transparency=1),
        (6, 9),
        is_gray=False,
        has_alpha=True,
        bit_depth=8,
        color=palette[pal_idx],
        alpha=np.where(pal_idx == 1, 0, 255).astype(np.uint8),
    )
    la = rng.integers(0, 256, size=(5, 8, 2), dtype=np.uint8)
    ok(
        "la.png",
        _pil_bytes(Image.fromarray(la, mode="LA"), "PNG"),
        (5, 8),
        is_gray=True,
        has_alpha=True,
        bit_depth=8,
        color=la[..., 0],
        alpha=la[..., 1],
    )
    rgba = rng.integers(0, 256, size=(7, 6, 4), dtype=np.uint8)
    ok(
        "rgba.png",
        _pil_bytes(Image.fromarray(rgba), "PNG"),
        (7, 6),
        is_gray=False,
        has_alpha=True,
        bit_depth=8,
        color=rgba[..., :3],
        alpha=rgba[..., 3],
    )
    gk = rng.integers(0, 256, size=(6, 6), dtype=np.uint8)
    gk[0, :3] = 77
    ok(
        "gray_trns.png",
        _pil_bytes(Image.fromarray(gk), "PNG", transparency=77),
        (6, 6),
        is_gray=True,
        has_alpha=True,
        bit_depth=8,
        color=gk,
        alpha=np.where(gk == 77, 0, 255).astype(np.uint8),
    )
    ck = rng.integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
    ck[1, 2:5] = (9, 99, 199)
    ok(
        "rgb_trns.png",
        encode_png(ck, chunks=((b"tRNS", struct.pack(">3H", 9, 99, 199)),)),
        (5, 6),
        is_gray=False,
        has_alpha=True,
        bit_depth=8,
        color=ck,
        alpha=np.where(np.all(ck == (9, 99, 199), axis=2), 0, 255).astype(np.uint8),
    )
    bits = rng.integers(0, 2, size=(5, 11)).astype(bool)
    ok(
        "bilevel.png",
        _pil_bytes(Image.fromarray(bits), "PNG"),
        (5, 11),
        is_gray=True,
        has_alpha=False,
        bit_depth=8,
        color=bits.astype(np.uint8) * 255,
    )

    # --- other containers
    ok(
        "rgb.bmp",
        _pil_bytes(Image.fromarray(rgb), "BMP"),
        (24, 40),
        is_gray=False,
        has_alpha=False,
        bit_depth=8,
        color=rgb,
    )
    ok("png_named.jpg", png_rgb, (24, 40), is_gray=False, has_alpha=False, bit_depth=8, color=rgb)
    ok(
        "rgba_lossless.webp",
        _pil_bytes(Image.fromarray(rgba), "WEBP", lossless=True, exact=True),
        (7, 6),
        is_gray=False,
        has_alpha=True,
        bit_depth=8,
        color=rgba[..., :3],
        alpha=rgba[..., 3],
    )
    ok(
        "lossy.webp",
        webp,
        (24, 40),
        is_gray=False,
        has_alpha=False,
        bit_depth=8,
        approx=_float(rgb),
        atol=0.03,
    )
    t16 = rng.integers(0, 65536, size=(8, 12, 3), dtype=np.uint16)
    ok(
        "rgb16_le.tif",
        encode_tiff(t16),
        (8, 12),
        is_gray=False,
        has_alpha=False,
        bit_depth=16,
        color=t16,
    )
    ok(
        "rgb16_be.tif",
        encode_tiff(t16, big_endian=True),
        (8, 12),
        is_gray=False,
        has_alpha=False,
        bit_depth=16,
        color=t16,
    )
    ok(
        "rgba16.tif",
        encode_tiff(a16),
        (9, 14),
        is_gray=False,
        has_alpha=True,
        bit_depth=16,
        color=a16[..., :3],
        alpha=a16[..., 3],
    )
    ok(
        "gray16.tif",
        encode_tiff(g16, big_endian=True),
        (13, 17),
        is_gray=True,
        has_alpha=False,
        bit_depth=16,
        color=g16,
    )
    ok("rgb.tif", tif, (24, 40), is_gray=False, has_alpha=False, bit_depth=8, color=rgb)

    # --- JPEG variants (lossy: compared with a tolerance)
    gray = rgb[..., 1]
    ok(
        "gray.jpg",
        _pil_bytes(Image.fromarray(gray), "JPEG", quality=95),
        (24, 40),
        is_gray=True,
        has_alpha=False,
        bit_depth=8,
        approx=_float(np.repeat(gray[..., None], 3, 2)),
        atol=0.02,
    )
    cmyk = Image.fromarray(rgb).convert("CMYK")
    ok(
        "cmyk.jpg",
        _pil_bytes(cmyk, "JPEG", quality=95),
        (24, 40),
        is_gray=False,
        has_alpha=False,
        bit_depth=8,
        approx=_float(rgb),
        atol=0.03,
    )
    for orientation, rot in ((6, -1), (8, 1), (3, 2)):
        exif = Image.Exif()
        exif[0x0112] = orientation
        data = _pil_bytes(Image.fromarray(rgb), "JPEG", quality=95, exif=exif.tobytes())
        shown = np.rot90(rgb, rot)
        ok(
            f"exif_orientation{orientation}.jpg",
            data,
            shown.shape[:2],
            is_gray=False,
            has_alpha=False,
            bit_depth=8,
            approx=_float(shown),
            atol=0.02,
        )

    # --- metadata carriers
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "corpus")
    ok(
        "icc.png",
        _pil_bytes(Image.fromarray(rgb), "PNG", icc_profile=srgb, pnginfo=info),
        (24, 40),
        is_gray=False,
        has_alpha=False,
        bit_depth=8,
        color=rgb,
    )
    return cases
