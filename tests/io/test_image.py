"""sisr.io.image: exact round trips, metadata, EXIF orientation, atomic writes, limits."""

from __future__ import annotations

import functools
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile, ImageOps

from sisr.errors import ConfigError, ImageError
from sisr.io import (
    DEFAULT_MAX_PIXELS,
    get_max_pixels,
    read_image,
    read_rgb_uint8,
    set_max_pixels,
    write_image,
    write_uint8,
)
from sisr.io import write as write_mod
from tests.corpus import decode_png, encode_png

RNG = np.random.default_rng(7)


def _u8(shape: tuple[int, ...]) -> np.ndarray:
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


def _u16(shape: tuple[int, ...]) -> np.ndarray:
    return RNG.integers(0, 65536, size=shape, dtype=np.uint16)


def _ints(x: np.ndarray, bits: int) -> np.ndarray:
    return np.floor(x.astype(np.float64) * (2**bits - 1) + 0.5).astype(np.int64)


@functools.cache
def _srgb_icc() -> bytes:
    # Made once: a profile's header holds its creation time, so two calls a second apart
    # differ and comparisons between them would fail at random.
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _gray_icc() -> bytes:
    # A valid-enough ICC header for a GRAY profile: the reader only stores bytes,
    # the writer only looks at the colour-space field (bytes 16..20).
    prof = bytearray(_srgb_icc())
    prof[16:20] = b"GRAY"
    return bytes(prof)


def _only(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp", ".webp"])
def test_8bit_rgb_round_trip_is_exact(tmp_path: Path, suffix: str) -> None:
    pixels = _u8((17, 23, 3))
    path = tmp_path / f"x{suffix}"
    write_image(path, pixels.astype(np.float32) / 255, lossless=True)
    assert np.array_equal(read_rgb_uint8(path), pixels)
    img = read_image(path)
    assert img.meta.bit_depth == 8 and not img.meta.is_gray and img.alpha is None
    assert np.array_equal(_ints(img.rgb, 8), pixels)
    # An outside decoder agrees.
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), pixels)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_round_trip_is_exact(tmp_path: Path, suffix: str, channels: int) -> None:
    v = _u16((13, 21, channels))
    f = v.astype(np.float64) / 65535
    gray = channels in (1, 2)
    rgb = f[..., 0] if gray else f[..., :3]
    alpha = f[..., -1] if channels in (2, 4) else None
    path = tmp_path / f"x{suffix}"
    write_image(path, rgb, alpha, bit_depth=16)
    img = read_image(path)
    assert img.meta.bit_depth == 16
    assert img.meta.has_alpha == (alpha is not None)
    expected = np.repeat(v[..., :1], 3, 2) if gray else v[..., :3]
    assert np.array_equal(_ints(img.rgb, 16), expected)
    if alpha is not None:
        assert img.alpha is not None
        assert np.array_equal(_ints(img.alpha, 16), v[..., -1])
    if suffix == ".png":
        assert img.meta.is_gray == gray
        # Independent decoders: our reference one exactly, Pillow on the high byte.
        data = path.read_bytes()
        assert np.array_equal(decode_png(data), v)
        if channels == 1:
            assert np.array_equal(np.asarray(Image.open(path)), v[..., 0])
        elif channels in (3, 4):
            hi = np.asarray(Image.open(path).convert("RGBA" if channels == 4 else "RGB"))
            assert np.array_equal(hi, (v >> 8).astype(np.uint8))


def test_16bit_png_reader_against_all_filters_and_interlace(tmp_path: Path) -> None:
    v = _u16((19, 11, 3))
    for interlace in (False, True):
        for first in range(5):
            path = tmp_path / f"f{first}{interlace}.png"
            path.write_bytes(encode_png(v, interlace=interlace, first_filter=first))
            assert np.array_equal(_ints(read_image(path).rgb, 16), v), (first, interlace)


def test_8bit_alpha_and_gray_alpha_preserved(tmp_path: Path) -> None:
    px = _u8((9, 10, 4))
    for suffix in (".png", ".tif", ".webp"):
        path = tmp_path / f"rgba{suffix}"
        write_image(path, px[..., :3] / 255.0, px[..., 3] / 255.0, lossless=True)
        img = read_image(path)
        assert img.alpha is not None and np.array_equal(_ints(img.alpha, 8), px[..., 3]), suffix
        assert np.array_equal(_ints(img.rgb, 8), px[..., :3]), suffix
    path = tmp_path / "la.png"
    write_image(path, px[..., 0] / 255.0, px[..., 3] / 255.0)
    img = read_image(path)
    assert img.meta.is_gray and img.meta.has_alpha
    assert Image.open(path).mode == "LA"


def test_gray_stays_gray(tmp_path: Path) -> None:
    g = _u8((8, 12))
    src = tmp_path / "g.png"
    Image.fromarray(g).save(src)
    img = read_image(src)
    assert img.meta.is_gray and img.rgb.shape == (8, 12, 3)
    out = tmp_path / "out.png"
    write_image(out, img.rgb, meta=img.meta)
    assert Image.open(out).mode == "L"
    assert np.array_equal(np.asarray(Image.open(out)), g)
    # Slightly different channels (as a model might produce) are averaged.
    rgb = img.rgb.copy()
    rgb[..., 0] += 0.6 / 255
    rgb[..., 2] -= 0.6 / 255
    write_image(out, np.clip(rgb, 0, 1), meta=img.meta)
    inner = (g > 0) & (g < 255)
    assert np.array_equal(np.asarray(Image.open(out))[inner], g[inner])
    # gray=False overrides the meta.
    write_image(out, img.rgb, meta=img.meta, gray=False)
    assert Image.open(out).mode == "RGB"


def test_16bit_gray_meta_round_trip(tmp_path: Path) -> None:
    v = _u16((6, 7))
    src = tmp_path / "g16.png"
    src.write_bytes(encode_png(v))
    img = read_image(src)
    assert img.meta.is_gray and img.meta.bit_depth == 16
    out = tmp_path / "out.png"
    write_image(out, img.rgb, meta=img.meta)  # bit depth and grayness from meta
    assert Image.open(out).mode == "I;16"
    assert np.array_equal(np.asarray(Image.open(out)), v)
    # JPEG cannot hold 16 bits: a default from meta quietly becomes 8, an explicit 16 fails.
    write_image(tmp_path / "out.jpg", img.rgb, meta=img.meta)
    with pytest.raises(ImageError, match="8 bits"):
        write_image(tmp_path / "bad.jpg", img.rgb, bit_depth=16)


def test_quantization_clips_and_rounds_half_up(tmp_path: Path) -> None:
    x = np.array([[-0.5, 0.0, 0.5, 1.0, 7.0]], dtype=np.float32)
    path = tmp_path / "q.png"
    write_image(path, x)
    assert np.asarray(Image.open(path)).tolist() == [[0, 0, 128, 255, 255]]
    write_image(path, x, bit_depth=16)
    assert np.asarray(Image.open(path)).tolist() == [[0, 0, 32768, 65535, 65535]]


# --------------------------------------------------------------------------- metadata


@pytest.mark.parametrize(
    ("suffix", "bits"),
    [(".png", 8), (".png", 16), (".jpg", 8), (".webp", 8), (".tif", 8), (".tif", 16)],
)
def test_icc_profile_preserved(tmp_path: Path, suffix: str, bits: int) -> None:
    icc = _srgb_icc()
    src = tmp_path / "src.png"
    Image.fromarray(_u8((8, 8, 3))).save(src, icc_profile=icc)
    img = read_image(src)
    assert img.meta.icc_profile == icc
    out = tmp_path / f"out{suffix}"
    write_image(out, img.rgb, meta=img.meta, bit_depth=bits)
    assert read_image(out).meta.icc_profile == icc
    assert Image.open(out).info.get("icc_profile") == icc


def _huge_icc(nbytes: int) -> bytes:
    """An RGB profile padded with incompressible bytes to ``nbytes`` (size field updated)."""
    prof = bytearray(_srgb_icc())
    prof += np.random.default_rng(3).integers(0, 256, nbytes - len(prof), np.uint8).tobytes()
    prof[0:4] = struct.pack(">I", len(prof))
    return bytes(prof)


@pytest.mark.parametrize(
    ("suffix", "bits", "kept"),
    [(".png", 8, False), (".png", 16, False), (".jpg", 8, True), (".tif", 8, True)],
)
def test_every_written_file_reads_back_with_a_huge_icc_profile(
    tmp_path: Path, suffix: str, bits: int, kept: bool
) -> None:
    """A 1.5 MB profile (as some scanners and print workflows embed) from a TIFF: PNG
    readers refuse an iCCP that inflates past 1 MiB, so PNG output drops it, saying so."""
    from sisr.io.image import read_native, write_pixels

    icc = _huge_icc(1_500_000)
    src = tmp_path / "scan.tif"
    Image.fromarray(_u8((8, 8, 3))).save(src, icc_profile=icc)
    img = read_image(src)
    assert img.meta.icc_profile == icc
    out = tmp_path / f"out{suffix}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_image(out, img.rgb, meta=img.meta, bit_depth=bits)
    said = [str(w.message) for w in caught]
    assert any("ICC profile of 1500000 bytes dropped" in m and str(out) in m for m in said) != kept
    with Image.open(out) as im:  # Pillow with its default limits
        im.load()
        assert (im.info.get("icc_profile") == icc) == kept
    assert (read_image(out).meta.icc_profile == icc) == kept
    native = read_native(src)
    out2 = tmp_path / f"pixels{suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_pixels(out2, native.color, meta=native.meta)
    assert (read_native(out2).meta.icc_profile == icc) == kept


def test_a_written_file_that_does_not_read_back_is_never_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The safety net behind the limits: whatever the cause, an unreadable result is an
    error and nothing stays under the final name."""
    monkeypatch.setattr(write_mod, "_ICC_LIMIT", {})  # pretend we did not know PNG's limit
    img = read_image(_write_tiff_with_icc(tmp_path, _huge_icc(1_500_000)))
    with pytest.raises(ImageError, match="does not read back"):
        write_image(tmp_path / "o.png", img.rgb, meta=img.meta)
    assert _only(tmp_path) == ["scan.tif"]


def _write_tiff_with_icc(folder: Path, icc: bytes) -> Path:
    src = folder / "scan.tif"
    Image.fromarray(_u8((8, 8, 3))).save(src, icc_profile=icc)
    return src


def test_icc_profile_dropped_when_colour_space_differs(tmp_path: Path) -> None:
    g = _u8((5, 5))
    src = tmp_path / "g.png"
    Image.fromarray(g).save(src, icc_profile=_gray_icc())
    img = read_image(src)
    assert img.meta.icc_profile == _gray_icc()
    write_image(tmp_path / "gray.png", img.rgb, meta=img.meta)
    assert read_image(tmp_path / "gray.png").meta.icc_profile == _gray_icc()
    write_image(tmp_path / "rgb.png", img.rgb, meta=img.meta, gray=False)
    assert read_image(tmp_path / "rgb.png").meta.icc_profile is None


def _exif_bytes(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "SisrCam"  # Make
    return exif.tobytes()


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_exif_preserved_with_orientation_reset(tmp_path: Path, suffix: str) -> None:
    px = _u8((6, 10, 3))
    src = tmp_path / "src.jpg"
    Image.fromarray(px).save(src, exif=_exif_bytes(6), quality=95)
    img = read_image(src)
    assert img.meta.orientation == 6
    assert img.rgb.shape == (10, 6, 3)  # rotated on read
    assert img.meta.exif is not None and img.meta.exif.startswith(b"Exif\x00\x00")
    exif = Image.Exif()
    exif.load(img.meta.exif)
    assert exif[0x0112] == 1 and exif[0x010F] == "SisrCam"
    out = tmp_path / f"out{suffix}"
    write_image(out, img.rgb, meta=img.meta, lossless=True)
    back = read_image(out)
    assert back.rgb.shape == (10, 6, 3)  # not rotated a second time
    assert back.meta.orientation == 1
    written = Image.open(out).getexif()
    assert written[0x0112] == 1 and written[0x010F] == "SisrCam"


def test_tiff_output_drops_exif_cleanly(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 8
    exif.get_ifd(0x8769)[0x9003] = "2020:01:01 00:00:00"  # a sub-IFD libtiff refuses
    src = tmp_path / "src.jpg"
    Image.fromarray(_u8((6, 10, 3))).save(src, exif=exif.tobytes())
    img = read_image(src)
    for bits in (8, 16):
        out = tmp_path / f"out{bits}.tif"
        write_image(out, img.rgb, meta=img.meta, bit_depth=bits)
        back = read_image(out)
        assert back.rgb.shape == (10, 6, 3) and back.meta.orientation == 1


def test_dpi_preserved(tmp_path: Path) -> None:
    src = tmp_path / "src.png"
    Image.fromarray(_u8((4, 4, 3))).save(src, dpi=(300, 150))
    img = read_image(src)
    assert img.meta.dpi is not None
    for suffix, bits in ((".png", 8), (".png", 16), (".tif", 16), (".jpg", 8), (".tif", 8)):
        out = tmp_path / f"out{bits}{suffix}"
        write_image(out, img.rgb, meta=img.meta, bit_depth=bits)
        dpi = read_image(out).meta.dpi
        # PNG stores dots per metre as integers: 300 dpi comes back as 299.9994.
        assert dpi is not None and np.allclose(dpi, (300, 150), rtol=1e-4), (suffix, bits, dpi)


# Where the stored top-left pixel is shown, per the EXIF/TIFF orientation definition
# (1: top-left ... 8: left-bottom), and whether width and height swap.
_CORNER = {
    1: ("top", "left", False),
    2: ("top", "right", False),
    3: ("bottom", "right", False),
    4: ("bottom", "left", False),
    5: ("top", "left", True),
    6: ("top", "right", True),
    7: ("bottom", "right", True),
    8: ("bottom", "left", True),
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_all_values(tmp_path: Path, orientation: int) -> None:
    h, w = 3, 5
    stored = np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3) * 5
    path = tmp_path / f"o{orientation}.png"
    Image.fromarray(stored).save(path, exif=_exif_bytes(orientation))
    shown = read_rgb_uint8(path)
    # Against Pillow's own implementation of the table ...
    ref = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    assert np.array_equal(shown, ref)
    # ... and against the spec, independently.
    vert, horiz, swap = _CORNER[orientation]
    assert shown.shape[:2] == ((w, h) if swap else (h, w))
    y = 0 if vert == "top" else -1
    x = 0 if horiz == "left" else -1
    assert np.array_equal(shown[y, x], stored[0, 0])
    # The stored first row runs along the shown top/bottom edge, or down a side when swapped.
    edge = shown[y, :] if not swap else shown[:, x]
    first_row = stored[0]
    assert np.array_equal(edge, first_row) or np.array_equal(edge[::-1], first_row)
    assert read_image(path).meta.orientation == orientation


# --------------------------------------------------------------------------- atomic writes


def test_write_leaves_no_temp_files(tmp_path: Path) -> None:
    rgb = _u8((5, 6, 3)) / 255.0
    write_image(tmp_path / "a.png", rgb)
    write_image(tmp_path / "b.png", rgb, bit_depth=16)
    write_image(tmp_path / "c.tif", rgb, bit_depth=16)
    write_uint8(tmp_path / "d.png", _u8((5, 6)))
    assert _only(tmp_path) == ["a.png", "b.png", "c.tif", "d.png"]


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_save = Image.Image.save

    def broken_save(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        real_save(self, fp, *args, **kwargs)  # the temp file is complete ...
        Path(str(fp)).write_bytes(b"\x89PNG partial")  # ... then damaged,
        raise OSError(28, "No space left on device")  # and the write fails.

    target = tmp_path / "out.png"
    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(ImageError, match="No space left"):
        write_image(target, np.zeros((4, 4, 3)))
    assert _only(tmp_path) == []
    # An existing file is left untouched by a failed overwrite.
    monkeypatch.undo()
    write_image(target, np.ones((4, 4, 3)))
    before = target.read_bytes()
    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(ImageError):
        write_image(target, np.zeros((4, 4, 3)))
    assert target.read_bytes() == before and _only(tmp_path) == ["out.png"]


def test_own_encoder_failure_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object, **kwargs: object) -> bytes:
        raise MemoryError

    monkeypatch.setattr(write_mod, "_encode_png", boom)
    with pytest.raises(MemoryError):
        write_image(tmp_path / "x.png", np.zeros((4, 4, 3)), bit_depth=16)
    assert _only(tmp_path) == []


def test_write_rejects_bad_requests(tmp_path: Path) -> None:
    rgb = np.zeros((4, 4, 3))
    a = np.ones((4, 4))
    with pytest.raises(ImageError, match="alpha"):
        write_image(tmp_path / "x.jpg", rgb, a)
    with pytest.raises(ImageError, match="suffix"):
        write_image(tmp_path / "x.xyz", rgb)
    with pytest.raises(ImageError, match="NaN"):
        write_image(tmp_path / "x.png", np.full((4, 4, 3), np.nan))
    with pytest.raises(ValueError, match="shape"):
        write_image(tmp_path / "x.png", np.zeros((4, 4, 5)))
    with pytest.raises(TypeError):
        write_image(tmp_path / "x.png", np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(ImageError, match="lossless"):
        write_uint8(tmp_path / "x.jpg", np.zeros((4, 4, 3), dtype=np.uint8))
    assert _only(tmp_path) == []
    write_image(tmp_path / "x.dat", rgb, format="png")
    assert Image.open(tmp_path / "x.dat").format == "PNG"


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 2), (5, 7, 3), (5, 7, 4)])
def test_write_uint8_exact(tmp_path: Path, shape: tuple[int, ...]) -> None:
    px = _u8(shape)
    path = tmp_path / "u.png"
    write_uint8(path, px)
    assert np.array_equal(np.asarray(Image.open(path)), px)


# --------------------------------------------------------------------------- limits, state


def _png_header_only(w: int, h: int) -> bytes:
    def chunk(t: bytes, p: bytes) -> bytes:
        return struct.pack(">I", len(p)) + t + p + struct.pack(">I", zlib.crc32(t + p))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 10))
        + chunk(b"IEND", b"")
    )


def test_pixel_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SISR_MAX_PIXELS", raising=False)
    assert get_max_pixels() == DEFAULT_MAX_PIXELS
    big = tmp_path / "big.png"
    big.write_bytes(_png_header_only(30000, 30000))
    with pytest.raises(ImageError) as info:
        read_image(big)
    msg = str(info.value)
    assert "big.png" in msg and "30000x30000 = 900.0 Mpx" in msg and "SISR_MAX_PIXELS" in msg
    # The limit is checked from the header: a small limit refuses before decoding
    # (the data of this file is too short, which would otherwise be the error).
    mid = tmp_path / "mid.png"
    mid.write_bytes(_png_header_only(2000, 1000))
    with pytest.raises(ImageError, match=r"above the limit of 1\.0 Mpx"):
        read_image(mid, max_pixels=1_000_000)
    with pytest.raises(ImageError, match=r"truncated|corrupt"):
        read_image(mid)
    ok = tmp_path / "ok.jpg"
    Image.fromarray(_u8((20, 30, 3))).save(ok)
    monkeypatch.setenv("SISR_MAX_PIXELS", "500")
    with pytest.raises(ImageError, match="600"):
        read_image(ok)
    assert read_image(ok, max_pixels=600).rgb.shape == (20, 30, 3)
    set_max_pixels(10_000)
    try:
        assert read_image(ok).rgb.shape == (20, 30, 3)
        set_max_pixels(100)
        with pytest.raises(ImageError, match="limit"):
            read_rgb_uint8(ok)
    finally:
        set_max_pixels(None)
    monkeypatch.setenv("SISR_MAX_PIXELS", "lots")
    with pytest.raises(ConfigError):
        get_max_pixels()


@pytest.mark.parametrize("suffix", [".png", ".tif", ".webp", ".jpg", ".gif"])
def test_our_limit_replaces_pillows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    # Pretend the image is above Pillow's limits (both the warning and the error):
    # our (higher) limit decides, no warning escapes, Pillow's setting is restored.
    path = tmp_path / f"x{suffix}"
    Image.fromarray(_u8((20, 20, 3))).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(path).rgb.shape == (20, 20, 3)
    assert Image.MAX_IMAGE_PIXELS == 50
    with pytest.raises(ImageError, match="limit"):
        read_image(path, max_pixels=100)


def test_pillow_global_state_untouched(tmp_path: Path) -> None:
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    path = tmp_path / "t.png"
    Image.fromarray(_u8((30, 30, 3))).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])
    with pytest.raises(ImageError, match="truncated"):
        read_image(path)
    assert before == (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# --------------------------------------------------------------------------- real data


@pytest.mark.data
def test_read_rgb_uint8_matches_pillow_on_benchmarks(data_root: Path) -> None:
    paths = sorted((data_root / "benchmarks" / "Set14").glob("*.png"))
    paths += sorted((data_root / "benchmarks" / "Set5").glob("*.png"))
    assert len(paths) == 19
    grays = []
    for p in paths:
        got = read_rgb_uint8(p)
        with Image.open(p) as im:
            ref = np.asarray(im.convert("RGB"))
            if im.mode == "L":
                grays.append(p.name)
        assert got.dtype == np.uint8 and np.array_equal(got, ref), p.name
    assert "bridge.png" in grays
    img = read_image(data_root / "benchmarks" / "Set14" / "bridge.png")
    assert img.meta.is_gray and img.meta.mode == "L" and img.rgb.shape[2] == 3
    assert np.array_equal(_ints(img.rgb, 8), read_rgb_uint8(img.meta.path))


def test_atomic_path_gives_normal_permissions(tmp_path: Path) -> None:
    import os

    from sisr.io.atomic import atomic_write_bytes

    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"x")
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_atomic_path_normal_permissions_when_the_writer_recreates_the_file(
    tmp_path: Path,
) -> None:
    import os

    from sisr.io.atomic import atomic_path

    target = tmp_path / "out.bin"
    with atomic_path(target) as tmp:
        tmp.unlink()  # as safetensors does: a fresh 0600 file in place of ours
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
