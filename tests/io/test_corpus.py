"""Every awkward file in tests/corpus.py reads correctly or fails with a clean ImageError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sisr.errors import ImageError
from sisr.io import read_image, read_rgb_uint8
from tests.corpus import CorpusCase, make_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[CorpusCase]:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def _as_int(x: np.ndarray, bit_depth: int) -> np.ndarray:
    scale = 255.0 if bit_depth == 8 else 65535.0
    return np.floor(x.astype(np.float64) * scale + 0.5).astype(np.int64)


def test_corpus_is_big_enough(corpus: list[CorpusCase]) -> None:
    assert len(corpus) >= 24
    assert sum(c.ok for c in corpus) >= 12 and sum(not c.ok for c in corpus) >= 10
    assert len({c.name for c in corpus}) == len(corpus)


def test_every_case(corpus: list[CorpusCase]) -> None:
    failures = []
    for case in corpus:
        try:
            _check(case)
        except AssertionError as e:
            failures.append(f"{case.name}: {e}")
    assert not failures, "\n".join(failures)


def _check(case: CorpusCase) -> None:
    if not case.ok:
        for reader in (read_image, read_rgb_uint8):
            with pytest.raises(ImageError) as info:
                reader(case.path)
            msg = str(info.value)
            assert case.path.name in msg, f"message does not name the file: {msg}"
            assert case.error is not None and case.error in msg, f"unexpected message: {msg}"
        return

    img = read_image(case.path)
    meta = img.meta
    assert img.rgb.dtype == np.float32 and img.rgb.shape == case.shape, img.rgb.shape
    assert float(img.rgb.min()) >= 0.0 and float(img.rgb.max()) <= 1.0
    assert meta.is_gray == case.is_gray, f"is_gray {meta.is_gray}"
    assert meta.has_alpha == case.has_alpha, f"has_alpha {meta.has_alpha}"
    assert (img.alpha is not None) == case.has_alpha
    assert meta.bit_depth == case.bit_depth, f"bit_depth {meta.bit_depth}"
    assert (meta.height, meta.width) == case.shape[:2]
    if meta.is_gray:
        assert np.array_equal(img.rgb[..., 0], img.rgb[..., 1])
        assert np.array_equal(img.rgb[..., 0], img.rgb[..., 2])
    if case.color is not None:
        expected = case.color if case.color.ndim == 3 else np.repeat(case.color[..., None], 3, 2)
        got = _as_int(img.rgb, meta.bit_depth)
        assert np.array_equal(got, expected.astype(np.int64)), "pixel values differ"
    if case.alpha is not None:
        assert img.alpha is not None and img.alpha.dtype == np.float32
        assert np.array_equal(_as_int(img.alpha, meta.bit_depth), case.alpha.astype(np.int64))
    if case.approx is not None:
        err = float(np.abs(img.rgb.astype(np.float64) - case.approx).mean())
        assert err <= case.atol, f"mean abs error {err:.4f} > {case.atol}"

    u8 = read_rgb_uint8(case.path)
    assert u8.dtype == np.uint8 and u8.shape == case.shape
    if case.color is not None and case.bit_depth == 8:
        expected = case.color if case.color.ndim == 3 else np.repeat(case.color[..., None], 3, 2)
        assert np.array_equal(u8, expected), "read_rgb_uint8 differs"
    elif case.color is not None:
        assert np.array_equal(u8.astype(np.int64), _as_int(img.rgb, 8)), "16->8 rounding"


def test_corpus_files_exist(corpus: list[CorpusCase]) -> None:
    for case in corpus:
        if case.name != "missing.png":
            assert Path(case.path).exists(), case.name
