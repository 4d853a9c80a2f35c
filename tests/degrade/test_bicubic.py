"""MATLAB-compatible bicubic resize: ground truth from MATLAB, plus properties."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sisr.degrade.bicubic as bic
from sisr.degrade import imresize, imresize_uint8, modcrop, modcrop_np, output_size, resize_weights


def _load_chw(path: Path) -> torch.Tensor:
    with Image.open(path) as im:
        return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).contiguous()


def _set5_pairs(data_root: Path, s: int) -> list[tuple[Path, Path]]:
    root = data_root / "benchmarks" / "Set5_matlab"
    hrs = sorted((root / "HR_modcrop" / f"x{s}").glob(f"*_HR_x{s}.png"))
    assert len(hrs) == 5, f"expected 5 HR images for x{s} under {root}"
    return [
        (hr, root / "LR_bicubic" / f"x{s}" / hr.name.replace(f"_HR_x{s}", f"_LRBI_x{s}"))
        for hr in hrs
    ]


def _matlab_1d(v: np.ndarray, out_len: int, scale: float, antialias: bool = True) -> np.ndarray:
    """Direct transcription of MATLAB's contributions + resizeColumns for one 1-D signal:
    explicit taps, clamped indices, zero columns killed, sum tap by tap (no matrix)."""
    n = len(v)
    width = 4.0
    if scale < 1 and antialias:
        width /= scale
    out = np.empty(out_len)
    kernel_scale = scale if (scale < 1 and antialias) else 1.0

    def cub(t: float) -> float:
        a = abs(t)
        if a <= 1:
            return 1.5 * a**3 - 2.5 * a**2 + 1
        if a <= 2:
            return -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2
        return 0.0

    taps = math.ceil(width) + 2
    rows = []
    for x in range(1, out_len + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        idx = [left + p for p in range(taps)]
        w = [kernel_scale * cub(kernel_scale * (u - i)) for i in idx]
        tot = sum(w)
        rows.append(([wi / tot for wi in w], [min(max(1, i), n) for i in idx]))
    keep = [p for p in range(taps) if any(r[0][p] != 0 for r in rows)]
    for k, (w, idx) in enumerate(rows):
        out[k] = sum(w[p] * v[idx[p] - 1] for p in keep)
    return out


@pytest.mark.data
@pytest.mark.parametrize("s", [2, 3, 4])
def test_uint8_bit_exact_with_matlab(data_root: Path, s: int) -> None:
    for hr_path, lr_path in _set5_pairs(data_root, s):
        hr, lr = _load_chw(hr_path), _load_chw(lr_path)
        out = imresize_uint8(hr, 1 / s)
        assert out.shape == lr.shape, hr_path.name
        assert int((out != lr).sum()) == 0, f"{hr_path.name}: differs from MATLAB"
        # Float mode (on 0..1, float32) agrees within one level except where MATLAB saturates
        # an overshoot of the first pass (a handful of pixels near pure black/white edges).
        fl = imresize(hr.to(torch.float32) / 255, 1 / s) * 255
        diff = (fl.clamp(0, 255).round() - lr.float()).abs()
        assert diff.max() <= 2, hr_path.name
        assert int((diff > 1).sum()) <= 3, hr_path.name


@pytest.mark.data
def test_banded_path_bit_exact(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Force the CPU block-banded matmul on small images: still equal to MATLAB."""
    monkeypatch.setattr(bic, "_BAND_MIN_IN", 16)
    monkeypatch.setattr(bic, "_BAND_SPAN", 40)
    bic._band_plan.cache_clear()
    try:
        for s in (2, 3):
            hr_path, lr_path = _set5_pairs(data_root, s)[4]  # woman: non-square
            hr, lr = _load_chw(hr_path), _load_chw(lr_path)
            assert len(bic._band_plan(hr.shape[-2], lr.shape[-2], 1 / s, True)) > 1
            assert torch.equal(imresize_uint8(hr, 1 / s), lr)
    finally:
        bic._band_plan.cache_clear()


@pytest.mark.data
def test_matlab_intermediate_rounding_and_order_matter(data_root: Path) -> None:
    """The MATLAB details are not no-ops: skipping the uint8 rounding after the first pass,
    or resizing columns first, changes pixels of the MATLAB ground truth."""
    hr_path, lr_path = _set5_pairs(data_root, 3)[1]
    hr, lr = _load_chw(hr_path), _load_chw(lr_path)
    no_round = bic._round_u8(imresize(hr.double(), 1 / 3)).to(torch.uint8)
    assert int((no_round != lr).sum()) > 0
    cols_first = bic._round_u8(bic._resize_dim(hr.double(), 1, lr.shape[-1], 1 / 3, True))
    cols_first = bic._round_u8(bic._resize_dim(cols_first, 0, lr.shape[-2], 1 / 3, True))
    assert int((cols_first.to(torch.uint8) != lr).sum()) > 0


def test_known_x2_upscale_weights() -> None:
    # Keys a=-0.5 at offsets 1.75, 0.75, 0.25, 1.25; the first output pixel's two
    # left taps are clamped onto pixel 1.
    m = resize_weights(4, 8)
    expected_row0 = [-0.0234375 + 0.2265625 + 0.8671875, -0.0703125, 0.0, 0.0]
    assert torch.allclose(m[0], torch.tensor(expected_row0, dtype=torch.float64), atol=1e-15)
    assert torch.allclose(m.sum(dim=1), torch.ones(8, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize(
    ("n", "out_len", "scale"),
    [(13, 7, 0.5), (13, 5, 1 / 3), (10, 25, 2.5), (9, 9, 1.0), (17, 6, 1 / 2.7), (7, 20, 2.8)],
)
def test_matrix_matches_matlab_transcription(n: int, out_len: int, scale: float) -> None:
    rng = np.random.default_rng(n * 100 + out_len)
    v = rng.uniform(0, 255, size=n)
    got = bic._resize_dim(torch.from_numpy(v)[:, None], 0, out_len, scale, True)[:, 0].numpy()
    np.testing.assert_allclose(got, _matlab_1d(v, out_len, scale), rtol=0, atol=1e-10)


def test_no_antialias_uses_plain_cubic() -> None:
    rng = np.random.default_rng(0)
    v = rng.uniform(0, 255, size=16)
    got = bic._resize_dim(torch.from_numpy(v)[:, None], 0, 4, 0.25, False)[:, 0].numpy()
    np.testing.assert_allclose(got, _matlab_1d(v, 4, 0.25, antialias=False), atol=1e-10)
    assert not np.allclose(got, _matlab_1d(v, 4, 0.25, antialias=True), atol=1e-3)


@pytest.mark.parametrize(
    ("hw", "scale", "expected"),
    [
        ((7, 9), 0.5, (4, 5)),
        ((7, 9), 2.0, (14, 18)),
        ((7, 9), 1 / 3, (3, 3)),
        ((11, 5), 1.5, (17, 8)),
        ((10, 10), 0.3, (3, 3)),
        ((100, 50), 0.07, (8, 4)),  # 100 * 0.07 = 7.000000000000001 in float64: MATLAB gives 8
        ((13, 7), (0.5, 2.0), (7, 14)),
    ],
)
def test_output_sizes(hw: tuple[int, int], scale: float, expected: tuple[int, int]) -> None:
    assert output_size(hw, scale)[0] == expected
    x = torch.rand(2, *hw, dtype=torch.float64)
    assert imresize(x, scale).shape == (2, *expected)
    assert imresize_uint8((x * 255).to(torch.uint8), scale).shape == (2, *expected)


def test_explicit_size() -> None:
    x = torch.rand(3, 10, 15)
    assert imresize(x, size=(7, 4)).shape == (3, 7, 4)
    assert imresize(x, size=(23, 31)).shape == (3, 23, 31)
    # One None keeps the aspect ratio (MATLAB's NaN), the scale taken from the given side.
    assert output_size((10, 15), size=(4, None)) == ((4, 6), (0.4, 0.4))
    assert output_size((10, 15), size=(None, 6)) == ((4, 6), (0.4, 0.4))
    # size equal to in * scale gives the same result as the scale.
    assert torch.allclose(imresize(x, size=(5, 5)), imresize(x, (0.5, 1 / 3)), atol=1e-6)
    with pytest.raises(ValueError):
        imresize(x, 0.5, size=(5, 5))
    with pytest.raises(ValueError):
        imresize(x)


def test_float_within_one_level_of_uint8() -> None:
    g = torch.Generator().manual_seed(0)
    # Mid-range random texture: the cubic overshoot never reaches 0 or 255, so uint8 mode
    # differs from float mode only by its rounding after the first pass (saturating an
    # overshoot there can move a pixel by far more than one level; MATLAB does that too).
    x = (64 + torch.rand(3, 48, 40, generator=g) * 127).round().to(torch.uint8)
    for scale in (0.5, 1 / 3, 0.25, 2.0, 1.7):
        u8 = imresize_uint8(x, scale).to(torch.int16)
        fl = imresize(x.to(torch.float64), scale)
        assert (fl.clamp(0, 255).round() - u8).abs().max() <= 1, scale
        f32 = imresize(x.to(torch.float32), scale)
        assert (f32.double() - fl).abs().max() < 1e-3


def test_gradcheck() -> None:
    x = torch.rand(1, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: imresize(t, 0.5), (x,))
    assert torch.autograd.gradcheck(lambda t: imresize(t, 1.6), (x,))


def test_gradcheck_banded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bic, "_BAND_MIN_IN", 8)
    monkeypatch.setattr(bic, "_BAND_SPAN", 6)
    bic._band_plan.cache_clear()
    try:
        x = torch.rand(1, 12, 10, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda t: imresize(t, 0.5), (x,))
    finally:
        bic._band_plan.cache_clear()


def test_banded_equals_dense(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.rand(2, 70, 90, dtype=torch.float64)
    dense = [imresize(x, s) for s in (0.25, 1 / 3, 2.0, 0.7)]
    monkeypatch.setattr(bic, "_BAND_MIN_IN", 8)
    monkeypatch.setattr(bic, "_BAND_SPAN", 24)
    bic._band_plan.cache_clear()
    try:
        assert len(bic._band_plan(90, 30, 1 / 3, True)) > 1
        for s, d in zip((0.25, 1 / 3, 2.0, 0.7), dense, strict=True):
            assert torch.allclose(imresize(x, s), d, atol=1e-12, rtol=0)
    finally:
        bic._band_plan.cache_clear()


def test_batched_equals_per_image() -> None:
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(2, 3, 21, 17, generator=g) * 255).to(torch.uint8)
    batch = imresize_uint8(x, 1 / 3)
    for i in range(2):
        for c in range(3):
            assert torch.equal(batch[i, c], imresize_uint8(x[i, c], 1 / 3))
    xf = x.float()
    bf = imresize(xf, 0.5)
    assert torch.allclose(bf[1], imresize(xf[1], 0.5), atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.6, 1.0, 2.0, 3.3])
def test_constant_stays_constant(dtype: torch.dtype, scale: float) -> None:
    x = torch.full((2, 3, 13, 11), 0.37, dtype=dtype)
    y = imresize(x, scale)
    assert y.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert torch.allclose(y, torch.full_like(y, 0.37), atol=tol)
    u = imresize_uint8(torch.full((3, 13, 11), 200, dtype=torch.uint8), scale)
    assert bool((u == 200).all())


def test_dtype_and_type_errors() -> None:
    with pytest.raises(TypeError):
        imresize(torch.zeros(4, 4, dtype=torch.uint8), 0.5)
    with pytest.raises(TypeError):
        imresize_uint8(torch.zeros(4, 4), 0.5)
    with pytest.raises(ValueError):
        imresize(torch.zeros(4), 0.5)
    with pytest.raises(ValueError):
        imresize(torch.zeros(4, 4), -1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    x = (torch.rand(2, 3, 40, 30) * 255).to(torch.uint8)
    assert torch.equal(imresize_uint8(x.cuda(), 1 / 3).cpu(), imresize_uint8(x, 1 / 3))
    xf = x.float() / 255
    assert torch.allclose(imresize(xf.cuda(), 0.5).cpu(), imresize(xf, 0.5), atol=1e-5)


def test_modcrop() -> None:
    x = torch.zeros(2, 3, 11, 13)
    assert modcrop(x, 4).shape == (2, 3, 8, 12)
    assert modcrop(x, 1).shape == x.shape
    a = np.arange(11 * 13 * 3).reshape(11, 13, 3)
    c = modcrop_np(a, 3)
    assert c.shape == (9, 12, 3)
    assert np.array_equal(c, a[:9, :12])  # top-left kept
    assert modcrop_np(a[..., 0], 5).shape == (10, 10)
