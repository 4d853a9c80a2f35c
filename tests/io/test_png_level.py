"""PNG levels change speed and size only: every level decodes to the same pixels and
metadata (ICC, EXIF, dpi, 16 bits, alpha, gray) as level 6, sisr's former default."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from sisr.io import read_native, write_pixels
from sisr.io.encode import PNG_LEVEL_DEFAULT, png_settings
from sisr.io.meta import ImageMeta

LEVELS = (0, 1, 2, 3, 9)


def _icc(gray: bool) -> bytes:
    prof = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    if gray:  # same profile, colour space field patched to GRAY (as read_image checks it)
        prof = prof[:16] + b"GRAY" + prof[20:]
    return prof


def _exif() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 1
    exif[0x010F] = "SisrCam"
    return b"Exif\x00\x00" + exif.tobytes()


def _pixels(shape: tuple[int, ...], dtype: type, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    smooth = (np.sin(x / 6.0) + np.cos(y / 4.0) + 2) / 4 * top
    if len(shape) == 3:
        smooth = np.repeat(smooth[..., None], shape[2], axis=2)
    noise = rng.integers(0, top // 16, size=shape)
    return np.clip(smooth + noise, 0, top).astype(dtype)


CASES = {
    "rgb8": ((37, 53, 3), np.uint8, False, False),
    "rgba8": ((37, 53, 3), np.uint8, True, False),
    "gray8": ((37, 53), np.uint8, False, True),
    "gray-alpha8": ((37, 53), np.uint8, True, True),
    "rgb16": ((31, 29, 3), np.uint16, False, False),
    "rgba16": ((31, 29, 3), np.uint16, True, False),
    "gray16": ((31, 29), np.uint16, False, True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_levels_decode_identically(case: str, tmp_path: Path) -> None:
    shape, dtype, with_alpha, gray = CASES[case]
    color = _pixels(shape, dtype, 0)
    alpha = _pixels(shape[:2], dtype, 1) if with_alpha else None
    meta = ImageMeta(
        path="in.png",
        format="PNG",
        mode="x",
        width=shape[1],
        height=shape[0],
        bit_depth=16 if dtype == np.uint16 else 8,
        is_gray=gray,
        has_alpha=with_alpha,
        icc_profile=_icc(gray),
        exif=_exif(),
        dpi=(300.0, 150.0),
    )
    write_pixels(tmp_path / "old.png", color, alpha, meta=meta, compress_level=6)
    old = read_native(tmp_path / "old.png")
    with Image.open(tmp_path / "old.png") as im:
        old_mode, old_info = im.mode, dict(im.info)
    assert np.array_equal(old.color, color)  # level 6 itself is lossless
    for level in (*LEVELS, None):
        path = tmp_path / f"new{level}.png"
        kwargs = {} if level is None else {"compress_level": level}
        write_pixels(path, color, alpha, meta=meta, **kwargs)
        new = read_native(path)
        assert new.color.dtype == old.color.dtype
        assert np.array_equal(new.color, old.color), level
        if with_alpha:
            assert np.array_equal(new.alpha, old.alpha), level
        else:
            assert new.alpha is None
        assert new.meta.icc_profile == old.meta.icc_profile is not None
        assert new.meta.exif == old.meta.exif is not None
        assert new.meta.dpi == old.meta.dpi
        assert new.meta.bit_depth == old.meta.bit_depth
        with Image.open(path) as im:
            assert im.mode == old_mode
            assert {k: im.info.get(k) for k in ("icc_profile", "exif", "dpi")} == {
                k: old_info.get(k) for k in ("icc_profile", "exif", "dpi")
            }


def test_settings_table() -> None:
    assert PNG_LEVEL_DEFAULT == 1
    assert png_settings(1) == ("sub", 1, zlib.Z_DEFAULT_STRATEGY)
    assert png_settings(6) == ("adaptive", 6, zlib.Z_DEFAULT_STRATEGY)  # the former output
    assert png_settings(0)[0] == "none"
    for bad in (-1, 10):
        with pytest.raises(ValueError, match=r"0\.\.9"):
            png_settings(bad)


def test_level_trades_size_on_a_smooth_image(tmp_path: Path) -> None:
    # SR outputs are smooth: the fast default must stay within 20% of level 6 there.
    y, x = np.mgrid[0:256, 0:256]
    img = np.stack([np.sin(x / 9.0) * 90 + y / 2, np.cos(y / 11.0) * 80 + x / 3, (x + y) / 4], -1)
    img = np.clip(img + 60 + np.random.default_rng(0).normal(0, 2, img.shape), 0, 255)
    img = img.astype(np.uint8)
    sizes = {}
    for level in (1, 6, 9):
        write_pixels(tmp_path / f"{level}.png", img, compress_level=level)
        sizes[level] = (tmp_path / f"{level}.png").stat().st_size
    assert sizes[9] <= sizes[6] <= sizes[1] <= 1.2 * sizes[6]
