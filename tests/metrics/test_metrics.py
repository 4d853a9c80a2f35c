"""Unit tests of the paper-protocol metrics on constructed inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from sisr.metrics import (
    crop_border,
    psnr,
    psnr_rgb,
    psnr_y,
    quantize,
    rgb_to_y,
    ssim,
    ssim_map,
    ssim_y,
)


def _rand_u8(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)


def test_rgb_to_y_known_values() -> None:
    img = torch.tensor([[0, 255, 255, 0], [0, 255, 0, 0], [0, 255, 0, 255]], dtype=torch.uint8)
    y = rgb_to_y(img.view(3, 1, 4))
    assert y.dtype == torch.float64
    expected = torch.tensor([[16.0, 235.0, 16.0 + 65.481, 16.0 + 24.966]], dtype=torch.float64)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)


def test_rgb_to_y_gray_is_three_equal_channels_and_numpy() -> None:
    gray = _rand_u8(2, 1, 8, 9)
    rgb = gray.expand(2, 3, 8, 9)
    torch.testing.assert_close(rgb_to_y(gray), rgb_to_y(rgb), rtol=0, atol=1e-12)
    torch.testing.assert_close(rgb_to_y(rgb.numpy()), rgb_to_y(rgb), rtol=0, atol=0)
    with pytest.raises(ValueError, match="shape"):
        rgb_to_y(torch.zeros(2, 8, 9))


def test_psnr_known_mse() -> None:
    a = torch.full((7, 9), 100.0)
    b = a + 5.0  # MSE 25
    assert psnr(a, b).item() == pytest.approx(10 * math.log10(255**2 / 25), abs=1e-12)
    assert psnr(a, a).item() == math.inf


def test_psnr_y_known_offset_and_rgb_single_channel() -> None:
    hr = _rand_u8(3, 10, 12).clamp(0, 240)
    sr = hr + 6  # Y moves by 6 * 219 / 255 everywhere
    expected_y = 20 * math.log10(255 / (6 * 219 / 255))
    assert psnr_y(sr, hr).item() == pytest.approx(expected_y, abs=1e-9)
    assert psnr_rgb(sr, hr).item() == pytest.approx(20 * math.log10(255 / 6), abs=1e-9)
    one = hr.clone()
    one[1] += 6  # error in one channel: MSE = 36 / 3
    assert psnr_rgb(one, hr).item() == pytest.approx(10 * math.log10(255**2 / 12), abs=1e-9)


def test_psnr_symmetric_and_batched() -> None:
    a, b = _rand_u8(4, 3, 16, 20, seed=1), _rand_u8(4, 3, 16, 20, seed=2)
    batch = psnr_y(a, b, border=2)
    assert batch.shape == (4,)
    torch.testing.assert_close(batch, psnr_y(b, a, border=2), rtol=0, atol=1e-12)
    single = torch.stack([psnr_y(a[i], b[i], border=2) for i in range(4)])
    torch.testing.assert_close(batch, single, rtol=0, atol=1e-12)
    np_batch = psnr_rgb(a.numpy(), b.numpy(), border=2)
    torch.testing.assert_close(np_batch, psnr_rgb(a, b, border=2), rtol=0, atol=0)


def test_border_cropping() -> None:
    hr = _rand_u8(3, 20, 24, seed=3)
    sr = hr.clone()
    sr[:, :3, :] = 255 - sr[:, :3, :]  # errors only in the top 3 rows
    assert psnr_y(sr, hr, border=3).item() == math.inf
    assert math.isfinite(psnr_y(sr, hr, border=2).item())
    assert ssim_y(sr, hr, border=3).item() == pytest.approx(1.0, abs=1e-12)
    assert ssim_y(sr, hr, border=2).item() < 1 - 1e-5
    assert ssim_y(sr, hr, border=0).item() < 0.999
    assert crop_border(torch.zeros(5, 20, 24), 3).shape == (5, 14, 18)
    with pytest.raises(ValueError, match="too small"):
        crop_border(torch.zeros(6, 24), 3)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        psnr_y(torch.zeros(3, 8, 8), torch.zeros(3, 8, 9))
    with pytest.raises(ValueError, match="differ in shape"):
        ssim(torch.zeros(16, 16), torch.zeros(16, 17))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(10, 16), torch.zeros(10, 16))


def test_ssim_identical_and_symmetric() -> None:
    a, b = _rand_u8(2, 3, 24, 30, seed=4), _rand_u8(2, 3, 24, 30, seed=5)
    torch.testing.assert_close(ssim_y(a, a), torch.ones(2, dtype=torch.float64))
    s_ab, s_ba = ssim_y(a, b, border=2), ssim_y(b, a, border=2)
    torch.testing.assert_close(s_ab, s_ba, rtol=0, atol=1e-12)
    assert (s_ab < 0.5).all()  # independent noise is far from similar


def test_ssim_constant_planes_closed_form() -> None:
    c1, c2 = 50.0, 80.0
    s = ssim(torch.full((15, 15), c1), torch.full((15, 15), c2)).item()
    k1 = (0.01 * 255) ** 2
    assert s == pytest.approx((2 * c1 * c2 + k1) / (c1**2 + c2**2 + k1), abs=1e-12)


def _ssim_map_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Direct transcription of ssim_index.m with a full 2-D window (no separability)."""
    t = np.arange(11) - 5.0
    win = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * 1.5**2))
    win /= win.sum()

    def filt(x: np.ndarray) -> np.ndarray:
        return np.einsum("ijkl,kl->ij", sliding_window_view(x, (11, 11)), win)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1, mu2 = filt(a), filt(b)
    s11 = filt(a * a) - mu1**2
    s22 = filt(b * b) - mu2**2
    s12 = filt(a * b) - mu1 * mu2
    return ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))


def test_ssim_map_matches_direct_2d_window() -> None:
    a = _rand_u8(19, 23, seed=6).double()
    b = (a + torch.randn(19, 23, generator=torch.Generator().manual_seed(7)) * 20).clamp(0, 255)
    ref = _ssim_map_reference(a.numpy(), b.numpy())
    got = ssim_map(a, b)
    assert got.shape == (9, 13)
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-12)


def test_quantize_rounds_half_up_and_clamps() -> None:
    x = torch.tensor([-0.2, 0.0, 0.5 / 255, 1.5 / 255, 2.5 / 255, 1.0, 1.3])
    assert quantize(x).tolist() == [0, 0, 1, 2, 3, 255, 255]
    assert quantize(x).dtype == torch.uint8
