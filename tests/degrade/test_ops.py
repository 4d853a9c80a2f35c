"""Blur / noise / JPEG ops and the named degradations."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from sisr.degrade import (
    ALIASES,
    DEGRADATIONS,
    add_gaussian_noise,
    blur_down,
    filter2d,
    fspecial_gaussian,
    gaussian_blur,
    gaussian_kernels,
    get_degradation,
    imresize_uint8,
    jpeg,
    nearest_indices,
    to_uint8,
)


def _rand_u8(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)


def _np_correlate(img: np.ndarray, k: np.ndarray, mode: str) -> np.ndarray:
    """Reference 2-D correlation of one (H, W) image with explicit padding (numpy)."""
    r = k.shape[0] // 2
    p = np.pad(img, r, mode=mode)
    out = np.zeros_like(img, dtype=np.float64)
    for dy in range(k.shape[0]):
        for dx in range(k.shape[1]):
            out += k[dy, dx] * p[dy : dy + img.shape[0], dx : dx + img.shape[1]]
    return out


def test_fspecial_gaussian_matlab_values() -> None:
    # MATLAB: fspecial('gaussian', 3, 0.5)
    expected = torch.tensor(
        [[0.0113, 0.0838, 0.0113], [0.0838, 0.6193, 0.0838], [0.0113, 0.0838, 0.0113]],
        dtype=torch.float64,
    )
    assert torch.allclose(fspecial_gaussian(3, 0.5), expected, atol=1e-4)
    k = fspecial_gaussian(7, 1.6)
    assert k.shape == (7, 7) and abs(float(k.sum()) - 1) < 1e-12
    iso = gaussian_kernels(7, 1.6, dtype=torch.float64)[0]
    assert torch.allclose(iso, k, atol=1e-15)


def test_anisotropic_kernel_covariance() -> None:
    sx, sy = 3.0, 1.0
    thetas = torch.tensor([0.0, math.pi / 2, math.pi / 5])
    k = gaussian_kernels(41, sx, sy, thetas, dtype=torch.float64)
    assert k.shape == (3, 41, 41)
    t = torch.arange(41, dtype=torch.float64) - 20
    y, x = t[:, None], t[None, :]
    for i, th in enumerate(thetas.tolist()):
        c, s = math.cos(th), math.sin(th)
        cov_xx = c * c * sx**2 + s * s * sy**2
        cov_yy = s * s * sx**2 + c * c * sy**2
        cov_xy = c * s * (sx**2 - sy**2)
        assert float((k[i] * x * x).sum()) == pytest.approx(cov_xx, rel=1e-3)
        assert float((k[i] * y * y).sum()) == pytest.approx(cov_yy, rel=1e-3)
        assert float((k[i] * x * y).sum()) == pytest.approx(cov_xy, abs=1e-3)
    with pytest.raises(ValueError):
        gaussian_kernels(5, [1.0, 2.0], [1.0, 2.0, 3.0])


@pytest.mark.parametrize("padding", ["reflect", "replicate"])
def test_filter2d_per_sample_matches_numpy(padding: str) -> None:
    x = torch.rand(2, 3, 9, 11, dtype=torch.float64)
    ks = gaussian_kernels(5, [0.8, 1.5], [2.0, 0.6], [0.4, -1.0], dtype=torch.float64)
    y = filter2d(x, ks, padding)
    mode = {"reflect": "reflect", "replicate": "edge"}[padding]
    for n in range(2):
        for c in range(3):
            ref = _np_correlate(x[n, c].numpy(), ks[n].numpy(), mode)
            np.testing.assert_allclose(y[n, c].numpy(), ref, atol=1e-12)


def test_filter2d_shapes_and_identity() -> None:
    x = torch.rand(3, 8, 8)
    delta = torch.zeros(3, 3)
    delta[1, 1] = 1
    assert torch.allclose(filter2d(x, delta), x)
    with pytest.raises(ValueError):
        filter2d(x, torch.ones(4, 4) / 16)  # even kernel
    with pytest.raises(ValueError):
        filter2d(x, delta, padding="bogus")
    with pytest.raises(ValueError):
        filter2d(torch.rand(1, 1, 2, 2), torch.ones(7, 7) / 49)  # reflect pad > image


def test_gaussian_blur_batched_equals_single_and_grad() -> None:
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    y = gaussian_blur(x, [1.0, 2.0], sigma_y=[1.0, 0.7], theta=[0.0, 0.5])
    # The default size comes from the largest sigma: 2 * ceil(3 * 2.0) + 1 = 13.
    y0 = gaussian_blur(x[0], 1.0, size=13)
    assert torch.allclose(y[0], y0, atol=1e-12)
    y1 = gaussian_blur(x[1:], 2.0, sigma_y=0.7, theta=0.5, size=13)
    assert torch.allclose(y[1:], y1, atol=1e-12)
    const = gaussian_blur(torch.full((1, 3, 12, 12), 0.4), 1.5)
    assert torch.allclose(const, torch.full_like(const, 0.4), atol=1e-6)
    small = torch.rand(1, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: gaussian_blur(t, 0.8, size=3), (small,))


def test_nearest_indices_matlab() -> None:
    # MATLAB imresize(., 1/s, 'nearest') keeps 1-based rows 2,4,6 (s=2), 2,5,8 (s=3), 3,7 (s=4).
    assert nearest_indices(6, 2).tolist() == [1, 3, 5]
    assert nearest_indices(9, 3).tolist() == [1, 4, 7]
    assert nearest_indices(8, 4).tolist() == [2, 6]
    assert nearest_indices(7, 2).tolist() == [1, 3, 5, 6]  # ceil(7/2) rows, last clamped


@pytest.mark.parametrize(("s", "h", "w"), [(3, 12, 15), (2, 13, 10), (4, 17, 20)])
def test_blur_down_matches_numpy_reference(s: int, h: int, w: int) -> None:
    """2-D imfilter (replicate) + MATLAB uint8 rounding + 'nearest' decimation, in numpy."""
    x = _rand_u8(3, h, w, seed=3)
    y = blur_down(x, s)
    assert y.dtype == torch.uint8 and y.shape == (3, math.ceil(h / s), math.ceil(w / s))
    k = fspecial_gaussian(7, 1.6).numpy()
    rows = np.minimum(np.arange(math.ceil(h / s)) * s + s // 2, h - 1)
    cols = np.minimum(np.arange(math.ceil(w / s)) * s + s // 2, w - 1)
    for c in range(3):
        blurred = _np_correlate(x[c].double().numpy(), k, "edge")
        ref = np.floor(np.clip(blurred, 0, 255) + 0.5)[np.ix_(rows, cols)]
        assert np.array_equal(y[c].numpy(), ref.astype(np.uint8))


def test_blur_down_batched_and_float() -> None:
    x = _rand_u8(3, 12, 15, seed=3)
    y = blur_down(x, 3)
    # batched and float paths
    xb = torch.stack([x, x.flip(-1)])
    assert torch.equal(blur_down(xb, 3)[1], blur_down(x.flip(-1), 3))
    yf = blur_down(x.double(), 3)
    assert (yf - y.double()).abs().max() <= 0.5 + 1e-9


def test_gaussian_noise_statistics_and_determinism() -> None:
    x = torch.zeros(2, 3, 64, 64)
    g1 = torch.Generator().manual_seed(5)
    g2 = torch.Generator().manual_seed(5)
    a = add_gaussian_noise(x, [10.0, 30.0], g1)
    b = add_gaussian_noise(x, [10.0, 30.0], g2)
    assert torch.equal(a, b)
    assert float(a[0].std()) == pytest.approx(10.0, rel=0.05)
    assert float(a[1].std()) == pytest.approx(30.0, rel=0.05)
    c = add_gaussian_noise(x, 25.5, torch.Generator().manual_seed(5), value_range=1.0)
    assert float(c.std()) == pytest.approx(0.1, rel=0.05)  # 25.5 / 255
    u = add_gaussian_noise(torch.full((3, 32, 32), 250, dtype=torch.uint8), 30.0, g1)
    assert u.dtype == torch.uint8 and int(u.max()) == 255  # saturated, not wrapped
    xr = torch.rand(1, 4, 4, requires_grad=True)
    add_gaussian_noise(xr, 5.0).sum().backward()
    assert torch.equal(xr.grad, torch.ones_like(xr))
    with pytest.raises(ValueError):
        add_gaussian_noise(x, [1.0, 2.0, 3.0])


def test_to_uint8_rounds_half_away_and_saturates() -> None:
    v = torch.tensor([-3.0, 0.5, 1.5, 2.5, 2.49, 254.5, 300.0])
    assert to_uint8(v).tolist() == [0, 1, 2, 3, 2, 255, 255]


def test_jpeg_matches_pil_and_quality_orders() -> None:
    # Smooth image with an edge, so JPEG error is moderate and ordered by quality.
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(40), indexing="ij")
    img = torch.stack([xx * 6, yy * 7, ((xx > 20) * 200)]).clamp(0, 255).to(torch.uint8)
    out90 = jpeg(img, 90)
    buf = io.BytesIO()
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=90)
    ref = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    assert np.array_equal(out90.permute(1, 2, 0).numpy(), ref)
    batch = jpeg(torch.stack([img, img]), [90, 30])
    assert torch.equal(batch[0], out90)
    err90 = (batch[0].float() - img.float()).abs().mean()
    err30 = (batch[1].float() - img.float()).abs().mean()
    assert 0 < err90 < err30
    assert torch.equal(jpeg(img, 90), out90)  # deterministic
    gray = jpeg(img[:1], 80)
    assert gray.shape == (1, 32, 40)
    f = jpeg(img.float() / 255, 90)
    assert f.dtype == torch.float32 and torch.allclose(f * 255, out90.float(), atol=1e-3)
    with pytest.raises(ValueError):
        jpeg(img, 0)


def test_registry_entries() -> None:
    for name in ("bicubic", "bicubic_jpeg_90", "bicubic_jpeg_75", "blur_down", "bicubic_noise30"):
        assert name in DEGRADATIONS
    assert get_degradation("DN") is DEGRADATIONS["bicubic_noise30"]
    assert get_degradation("bd") is DEGRADATIONS["blur_down"]
    assert set(ALIASES.values()) <= set(DEGRADATIONS)
    with pytest.raises(KeyError):
        get_degradation("nope")


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
def test_degradation_apply(name: str) -> None:
    d = DEGRADATIONS[name]
    hr = _rand_u8(2, 3, 24, 30, seed=7)
    lr = d.apply(hr, 3, torch.Generator().manual_seed(11))
    assert lr.dtype == torch.uint8 and lr.shape == (2, 3, 8, 10)
    again = d.apply(hr, 3, torch.Generator().manual_seed(11))
    assert torch.equal(lr, again)
    single = d.apply(hr[0], 3, torch.Generator().manual_seed(11))
    assert single.shape == (3, 8, 10)
    if not d.random:
        assert torch.equal(single, lr[0])
    else:
        other = d.apply(hr, 3, torch.Generator().manual_seed(12))
        assert not torch.equal(lr, other)
    with pytest.raises(TypeError):
        d.apply(hr.float(), 3)
    with pytest.raises(ValueError):
        d.apply(hr[:, :2], 3)


def test_bicubic_degradation_is_imresize_uint8() -> None:
    hr = _rand_u8(3, 20, 16, seed=9)
    assert torch.equal(DEGRADATIONS["bicubic"].apply(hr, 4), imresize_uint8(hr, 0.25))
    noisy = DEGRADATIONS["bicubic_noise30"].apply(hr, 2, torch.Generator().manual_seed(0))
    diff = noisy.float() - imresize_uint8(hr, 0.5).float()
    assert 15 < float(diff.std()) < 35


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_ops_match_cpu() -> None:
    x = torch.rand(2, 3, 20, 20)
    ks = gaussian_kernels(5, [1.0, 2.0])
    assert torch.allclose(filter2d(x.cuda(), ks.cuda()).cpu(), filter2d(x, ks), atol=1e-5)
    hr = _rand_u8(2, 3, 24, 24)
    for name, d in DEGRADATIONS.items():
        a = d.apply(hr, 2, torch.Generator().manual_seed(0))
        b = d.apply(hr.cuda(), 2, torch.Generator().manual_seed(0))
        assert b.device.type == "cuda", name
        assert (a.int() - b.cpu().int()).abs().max() <= 1, name


def test_random_blur_down_noise_model() -> None:
    """y = (x * k) decimated + n, per image, reproducible from the generator."""
    import math

    from sisr.degrade import (
        filter2d,
        gaussian_kernels,
        nearest_indices,
        random_blur_down_noise,
    )

    g = torch.Generator().manual_seed(0)
    hr = torch.randint(0, 256, (3, 3, 24, 20), generator=g, dtype=torch.uint8)
    a = random_blur_down_noise(hr, 4, torch.Generator().manual_seed(5))
    b = random_blur_down_noise(hr, 4, torch.Generator().manual_seed(5))
    c = random_blur_down_noise(hr, 4, torch.Generator().manual_seed(6))
    assert a.dtype == torch.uint8 and a.shape == (3, 3, 6, 5)
    assert torch.equal(a, b) and not torch.equal(a, c)

    # Without noise, the float path equals an explicit blur with the drawn kernels + decimation.
    x = hr.float() / 255
    y = random_blur_down_noise(
        x, 2, torch.Generator().manual_seed(1), sigma_range=(0.5, 1.5), noise_range=(0.0, 0.0)
    )
    u = torch.rand(3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    k = gaussian_kernels(
        2 * math.ceil(3 * 1.5) + 1, 0.5 + u[:, 0], 0.5 + u[:, 1], math.pi * u[:, 2]
    )
    ref = filter2d(x, k)[..., nearest_indices(24, 2), :][..., nearest_indices(20, 2)]
    assert torch.allclose(y, ref, atol=1e-6)
    # Each image got its own kernel: the same image in every slot degrades differently.
    same = x[:1].expand(3, -1, -1, -1).contiguous()
    z = random_blur_down_noise(same, 2, torch.Generator().manual_seed(1), noise_range=(0.0, 0.0))
    assert not torch.allclose(z[0], z[1])


def test_unknown_alias_is_registered_and_random() -> None:
    from sisr.degrade import get_degradation

    deg = get_degradation("unknown")
    assert deg.name == "blur_aniso_noise" and deg.random
    hr = torch.full((1, 3, 16, 16), 128, dtype=torch.uint8)
    lr = deg.apply(hr, 2, torch.Generator().manual_seed(0))
    assert lr.shape == (1, 3, 8, 8)
    # A flat image stays flat under any blur: what is left is the noise (sigma <= 10).
    assert (lr.float() - 128).abs().max() <= 60
