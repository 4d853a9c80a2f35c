"""The Python API: input kinds in = kinds out, faithful channels, precision, TTA, threads."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import sisr
from sisr.archs import build
from sisr.errors import ConfigError
from sisr.infer import Upscaler, resolve_name
from sisr.infer.precision import TileForward, resolve_precision
from sisr.infer.tta import dihedral, dihedral_inverse, self_ensemble

SCALE = 2


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    m = build("espcn", SCALE)
    with torch.no_grad():
        for p in m.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn_like(p) / math.sqrt(fan_in) if p.dim() > 1 else p * 0 + 0.05)
    return m.eval()


@pytest.fixture(scope="module")
def up(model: nn.Module) -> Upscaler:
    return Upscaler(model, device="cpu", tile=16)


def net(model: nn.Module, rgb: np.ndarray) -> np.ndarray:
    """Reference: whole-image forward of HxWx3 float -> float (unclamped)."""
    with torch.no_grad():
        y = model(torch.from_numpy(rgb).permute(2, 0, 1)[None].float())
    return y[0].permute(1, 2, 0).numpy()


def bicubic(plane: np.ndarray) -> np.ndarray:
    from sisr.degrade import imresize

    return imresize(torch.from_numpy(plane)[None, None].float(), scale=SCALE)[0, 0].numpy()


def q(x: np.ndarray, full: int) -> np.ndarray:
    return np.floor(np.clip(x, 0, 1) * full + 0.5)


def rand(shape: tuple[int, ...], dtype: type, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype in (np.uint8, np.uint16):
        return rng.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)
    return rng.random(shape).astype(dtype)


# --------------------------------------------------------------------------- numpy


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((20, 30, 3), np.uint8),
        ((20, 30), np.uint16),
        ((20, 30, 1), np.uint8),
        ((20, 30, 2), np.uint8),
        ((20, 30, 4), np.float32),
        ((20, 30, 3), np.float64),
        ((20, 30, 3), np.float16),
    ],
)
def test_numpy_keeps_layout_and_dtype(up: Upscaler, shape: tuple[int, ...], dtype: type) -> None:
    out = up.upscale(rand(shape, dtype))
    assert out.dtype == dtype
    assert out.shape == (shape[0] * SCALE, shape[1] * SCALE, *shape[2:])


def test_rgb_uint8_and_uint16_match_the_network(model: nn.Module, up: Upscaler) -> None:
    x8 = rand((24, 20, 3), np.uint8)
    ref = net(model, x8.astype(np.float32) / 255)
    assert np.array_equal(up.upscale(x8), q(ref, 255).astype(np.uint8))
    x16 = rand((24, 20, 3), np.uint16)
    ref16 = net(model, x16.astype(np.float32) / 65535)
    out16 = up.upscale(x16)
    # 16 bits all the way: far finer than an 8-bit round trip could give.
    assert np.abs(out16.astype(np.int64) - q(ref16, 65535)).max() <= 1
    assert len(np.unique(out16 % 257)) > 200


def test_gray_is_mean_of_replicated_rgb(model: nn.Module, up: Upscaler) -> None:
    g = rand((18, 22), np.uint8, seed=4)
    ref = net(model, np.repeat(g[..., None], 3, axis=2).astype(np.float32) / 255).mean(axis=2)
    out = up.upscale(g)
    assert out.shape == (36, 44)
    assert np.abs(out.astype(int) - q(ref, 255)).max() <= 1


def test_alpha_is_upscaled_separately(model: nn.Module, up: Upscaler) -> None:
    rgba = rand((16, 26, 4), np.uint8, seed=5)
    out = up.upscale(rgba)
    assert np.array_equal(out[..., :3], up.upscale(np.ascontiguousarray(rgba[..., :3])))
    expect = q(bicubic(rgba[..., 3].astype(np.float32) / 255), 255)
    assert np.abs(out[..., 3].astype(int) - expect).max() <= 1
    by_model = Upscaler(model, device="cpu", tile=16, alpha="model").upscale(rgba)
    assert np.array_equal(by_model[..., :3], out[..., :3])
    assert np.array_equal(by_model[..., 3], up.upscale(np.ascontiguousarray(rgba[..., 3])))
    assert not np.array_equal(by_model[..., 3], out[..., 3])


# --------------------------------------------------------------------------- PIL / tensors / paths


@pytest.mark.parametrize(
    ("mode", "expect"),
    [
        ("L", "L"),
        ("LA", "LA"),
        ("RGB", "RGB"),
        ("RGBA", "RGBA"),
        ("I;16", "I;16"),
        ("I", "I"),
        ("F", "F"),
        ("1", "L"),
        ("P", "RGB"),
        ("CMYK", "RGB"),
    ],
)
def test_pil_keeps_mode_family(up: Upscaler, mode: str, expect: str) -> None:
    base = Image.fromarray(rand((12, 14, 3), np.uint8))
    if mode == "I;16":
        im = Image.fromarray(rand((12, 14), np.uint16))
    elif mode == "F":
        im = Image.fromarray(rand((12, 14), np.float32))
    elif mode == "I":
        im = Image.fromarray(rand((12, 14), np.uint16).astype(np.int32))
    elif mode == "P":
        im = base.quantize(16)
    else:
        im = base.convert(mode)
    out = up.upscale(im)
    assert isinstance(out, Image.Image)
    assert out.mode == expect
    assert out.size == (28, 24)


def test_pil_palette_with_transparency_gives_rgba(up: Upscaler) -> None:
    im = Image.fromarray(rand((10, 10, 3), np.uint8)).quantize(8)
    im.info["transparency"] = 0
    assert up.upscale(im).mode == "RGBA"


def test_pil_matches_numpy(up: Upscaler) -> None:
    arr = rand((15, 17, 4), np.uint8, seed=9)
    assert np.array_equal(np.asarray(up.upscale(Image.fromarray(arr))), up.upscale(arr))
    g16 = rand((15, 17), np.uint16, seed=9)
    assert np.array_equal(np.asarray(up.upscale(Image.fromarray(g16))), up.upscale(g16))


@pytest.mark.parametrize("shape", [(3, 14, 18), (2, 3, 14, 18), (4, 10, 12), (1, 10, 12)])
def test_tensor_in_tensor_out(model: nn.Module, up: Upscaler, shape: tuple[int, ...]) -> None:
    t = torch.rand(shape, dtype=torch.float64)
    out = up.upscale(t)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    assert out.shape == (*shape[:-2], shape[-2] * SCALE, shape[-1] * SCALE)
    if shape[-3] == 3:
        first = t if t.dim() == 3 else t[0]
        ref = np.clip(net(model, first.permute(1, 2, 0).float().numpy()), 0, 1)
        got = (out if out.dim() == 3 else out[0]).permute(1, 2, 0).numpy()
        np.testing.assert_allclose(got, ref, atol=1e-5)


def test_path_gives_pil_with_metadata(tmp_path, up: Upscaler) -> None:
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "a.png"
    Image.fromarray(rand((10, 12, 3), np.uint8)).save(src, icc_profile=icc)
    out = up.upscale(src)
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (24, 20)
    assert out.info["icc_profile"] == icc
    assert np.array_equal(np.asarray(out), up.upscale(np.asarray(Image.open(src))))


def test_upscale_batch_and_bad_input(up: Upscaler) -> None:
    items = [rand((8, 8, 3), np.uint8), torch.rand(3, 8, 8)]
    outs = up.upscale_batch(items)
    assert isinstance(outs[0], np.ndarray) and isinstance(outs[1], torch.Tensor)
    with pytest.raises(TypeError):
        up.upscale(123)
    with pytest.raises(TypeError):
        up.upscale(np.zeros((4, 4, 3), np.int64))


def test_thread_safety(up: Upscaler) -> None:
    images = [rand((20 + i, 30 - i, 3), np.uint8, seed=i) for i in range(8)]
    sequential = [up.upscale(x) for x in images]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(up.upscale, images))
    for a, b in zip(sequential, parallel, strict=True):
        assert np.array_equal(a, b)


# --------------------------------------------------------------------------- options


def test_precision_rules() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cpu, True) == torch.float32
    assert resolve_precision("auto", cuda, True) == torch.float16
    assert resolve_precision("auto", cuda, False) == torch.float32
    assert resolve_precision("bf16", cpu, True) == torch.bfloat16
    with pytest.raises(ConfigError, match="fp16"):
        resolve_precision("fp16", cpu, True)
    with pytest.raises(ConfigError):
        resolve_precision("fp8", cpu, True)


class _Overflow(nn.Module):
    """Fine in fp32, inf - inf = NaN in fp16."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        big = x * 70000.0 + 1.0
        return (big - x * 70000.0) * x


def test_half_precision_falls_back_to_fp32_on_nan() -> None:
    fwd = TileForward(_Overflow(), torch.float16)
    x = torch.rand(1, 3, 4, 4) + 0.5
    y = fwd(x)
    assert torch.isfinite(y).all() and y.dtype == torch.float32
    torch.testing.assert_close(y, x, atol=1e-3, rtol=0)
    assert fwd.fallbacks == 1


def test_dihedral_roundtrip_and_ensemble_of_identity() -> None:
    x = torch.rand(2, 3, 5, 7)
    for k in range(8):
        assert torch.equal(dihedral_inverse(dihedral(x, k), k), x)
    assert len({tuple(dihedral(x, k).flatten()[:5].tolist()) for k in range(8)}) == 8
    torch.testing.assert_close(self_ensemble(lambda t: t * 2, x), x * 2)


def test_tta_changes_output_and_auto_tile_on_cpu(model: nn.Module) -> None:
    x = rand((20, 20, 3), np.float32)
    plain = Upscaler(model, device="cpu")
    assert plain.tile == "auto"
    tile = plain._plan("color", 3)[1].tile
    assert 64 <= tile <= 2048
    assert plain.tile_count(tile + 40, 3 * tile) == 2 * 3
    tta = Upscaler(model, device="cpu", tta=True)
    a, b = plain.upscale(x), tta.upscale(x)
    assert a.shape == b.shape and np.abs(a - b).max() > 1e-3


def test_inference_copy_shares_weights_and_leaves_the_model_alone(model: nn.Module) -> None:
    up = Upscaler(model, device="cpu")
    assert [type(m) for m in up.model.modules()] == [type(m) for m in model.modules()]
    assert any(isinstance(m, nn.Tanh) for m in up.model.modules())  # still the network as built
    fast = dict(up._net.model.named_parameters())
    for name, p in up.model.named_parameters():
        assert fast[name] is p  # shared, not copied
    assert not any(isinstance(m, nn.Tanh) for m in up._net.model.modules())  # in-place there


def test_bad_options(model: nn.Module) -> None:
    for kw in ({"tile": "big"}, {"tile": -1}, {"alpha": "none"}, {"batch": 0}, {"device": "tpu"}):
        with pytest.raises(ConfigError):
            Upscaler(model, **kw)


def test_name_resolution() -> None:
    assert resolve_name("default", 3) == "default-x3"
    assert resolve_name("default", None) == "default"
    assert resolve_name("bicubic", 4) == "bicubic-x4"
    with pytest.raises(ConfigError):
        resolve_name("default-x2", 4)
    with pytest.raises(ConfigError, match="'default' has no x5 weights; available: x2, x3, x4"):
        resolve_name("default", 5)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_builtin_default_model_loads(scale: int) -> None:
    up = sisr.load("default", scale=scale, device="cpu")
    assert up.scale == scale
    assert isinstance(up.model, nn.Module)
    out = up.upscale(rand((10, 10, 3), np.uint8))
    assert out.shape == (10 * scale, 10 * scale, 3)
    assert sisr.load("default", device="cpu").scale == 2
