"""The integer-pixel I/O that `sisr upscale` uses for large images (sisr.io.image additions)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sisr.errors import ImageError
from sisr.io.image import _deflate_parallel, read_native, write_pixels


@pytest.mark.parametrize("sizes", [[], [7], [100_000, 5, 70_000], [1 << 20, 1 << 20, 3]])
@pytest.mark.parametrize("level", [1, 6, 9])
def test_parallel_deflate_is_one_valid_zlib_stream(sizes: list[int], level: int) -> None:
    rng = np.random.default_rng(len(sizes))
    # Low-entropy bytes, so matches cross the chunk borders.
    chunks = [bytes(rng.integers(0, 4, n, dtype=np.uint8)) for n in sizes]
    data = b"".join(_deflate_parallel(iter(chunks), level))
    assert zlib.decompress(data) == b"".join(chunks)


@pytest.mark.parametrize(
    ("shape", "dtype", "alpha"),
    [
        ((300, 257, 3), np.uint8, False),
        ((31, 40), np.uint16, True),
        ((64, 9, 3), np.uint16, True),
        ((5, 6), np.uint8, False),
    ],
)
def test_png_round_trip_is_exact(
    tmp_path: Path, shape: tuple[int, ...], dtype: type, alpha: bool
) -> None:
    rng = np.random.default_rng(0)
    top = np.iinfo(dtype).max
    color = rng.integers(0, top + 1, size=shape, dtype=dtype)
    color[:10] = color[:1]  # some structure for the filters
    a = rng.integers(0, top + 1, size=shape[:2], dtype=dtype) if alpha else None
    write_pixels(tmp_path / "x.png", color, a)
    back = read_native(tmp_path / "x.png")
    assert back.color.dtype == dtype and np.array_equal(back.color, color)
    assert (back.alpha is None) == (a is None)
    if a is not None:
        assert np.array_equal(back.alpha, a)
    if dtype == np.uint8:  # an outside decoder agrees
        assert np.array_equal(np.asarray(Image.open(tmp_path / "x.png")), color)


def test_memmap_input_and_eight_bit_formats(tmp_path: Path) -> None:
    mm = np.memmap(tmp_path / "raw", dtype=np.uint16, mode="w+", shape=(20, 30, 3))
    mm[:] = np.arange(20 * 30 * 3, dtype=np.uint16).reshape(20, 30, 3) * 70
    write_pixels(tmp_path / "m.png", mm)
    assert np.array_equal(read_native(tmp_path / "m.png").color, np.asarray(mm))
    write_pixels(tmp_path / "m.jpg", mm, quality=100)  # 16 -> 8 bits for JPEG
    got = read_native(tmp_path / "m.jpg").color.astype(int)
    assert np.abs(got - (np.asarray(mm).astype(int) + 128) // 257).mean() < 2
    with pytest.raises(ImageError, match="alpha"):
        write_pixels(tmp_path / "a.jpg", mm[..., 0], mm[..., 1])
    with pytest.raises(TypeError):
        write_pixels(tmp_path / "f.png", np.zeros((4, 4), np.float32))
