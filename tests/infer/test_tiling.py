"""Tiled inference equals whole-image inference for every registered network."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sisr.archs import PRESETS, SRModel
from sisr.infer import Upscaler
from sisr.infer.tiling import OutputBuffer, TileConfig, count_tiles, plan_axis, reflect_indices

# Small widths/depths so every network runs in well under a second on a CPU; the tiling
# logic only depends on the receptive radius and the size multiple, which these keep.
SMALL: dict[str, dict] = {
    "vdsr": {"depth": 3, "features": 8},
    "srresnet": {"blocks": 1, "features": 8},
    "dense-fcn": {"layers": 2, "features": 8, "growth": 4},
    "edsr-baseline": {"num_blocks": 1, "num_features": 8},
    "edsr": {"num_blocks": 1, "num_features": 8},
    "wdsr-a": {"num_blocks": 1, "num_features": 8},
    "wdsr-b": {"num_blocks": 1, "num_features": 8},
    "rrdbnet": {"num_block": 1, "num_feat": 8, "num_grow_ch": 4},
    # img_range 1: with random weights the x255 input scaling gives |y| ~ 600, where fp32
    # rounding alone exceeds the tolerance (trained SPANs output values in [0, 1])
    "span": {"feature_channels": 8, "num_blocks": 1, "img_range": 1.0},
    "span-s": {"feature_channels": 8, "num_blocks": 1, "img_range": 1.0},
    "imdn-rtc": {"num_features": 8, "num_blocks": 1, "distilled_channels": 2},
    "safmn": {"feature_channels": 8, "num_blocks": 1, "ffn_channels": 8},
    "safmn++": {"feature_channels": 6, "num_blocks": 1, "ffn_channels": 6, "modulated_channels": 2},
    "safmn++-light": {
        "feature_channels": 6,
        "num_blocks": 1,
        "ffn_channels": 6,
        "modulated_channels": 2,
    },
    "pan": {"num_features": 8, "up_features": 4, "num_blocks": 1},
    "carn": {"num_features": 8, "num_blocks": 1, "num_units": 1},
    "carn-m": {"num_features": 8, "num_blocks": 1, "num_units": 1},
    "fmen": {"num_features": 8, "mid_features": 6, "warmup_mid_features": 4, "up_blocks": [1, 1]},
}


def _tiles_exactly(preset: str) -> bool:
    """False for networks whose output depends on the whole image (ArchInfo.global_context):
    tests/infer/test_global_context.py covers those."""
    with torch.device("meta"):
        model = PRESETS[preset](scale=4 if preset == "dense-fcn" else 2, **SMALL.get(preset, {}))
    return not model.info().global_context


EXACT = [p for p in sorted(PRESETS) if _tiles_exactly(p)]


def randomized(preset: str, scale: int | None = None, seed: int = 0) -> SRModel:
    """A preset with every parameter drawn at random (so no layer is a no-op at init)."""
    torch.manual_seed(seed)
    probe = PRESETS[preset](scale=4 if preset == "dense-fcn" else 2, **SMALL.get(preset, {}))
    if scale is None:
        scale = probe.info().scales[0]
    model = PRESETS[preset](scale=scale, **SMALL.get(preset, {}))
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn_like(p) * (1.0 / math.sqrt(fan_in) if p.dim() > 1 else 0.05))
    return model.eval()


def reference(model: SRModel, image: np.ndarray) -> np.ndarray:
    """Whole-image forward, reflect-padded to the size multiple (independent of sisr.infer)."""
    h, w = image.shape[:2]
    m = model.info().size_multiple
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    with torch.no_grad():
        y = model(x)[0, :, : h * model.scale, : w * model.scale]
    return y.permute(1, 2, 0).numpy()


def quantize_ref(y: np.ndarray) -> np.ndarray:
    return np.floor(np.clip(y, 0, 1) * 255 + 0.5).astype(np.uint8)


@pytest.mark.parametrize("preset", EXACT)
def test_tiled_equals_untiled(preset: str) -> None:
    model = randomized(preset)
    info = model.info()
    tile = max(16, info.receptive_radius)  # smaller tiles are refused (too slow)
    side = 2 * tile + 2 * info.receptive_radius + 5  # several tiles on each axis
    rng = np.random.default_rng(1)
    image = rng.random((side, side + 7, 3), dtype=np.float32)
    up = Upscaler(model, device="cpu", tile=tile)
    assert up.tile_pad == info.receptive_radius
    assert count_tiles(side, side + 7, TileConfig(tile, up.tile_pad, up.multiple)) >= 4
    ref = reference(model, image)
    tiled, _ = up.upscale_arrays(image, clamp=False)
    np.testing.assert_allclose(tiled, ref, atol=1e-5, rtol=0)
    assert np.abs(ref).max() > 0.05  # the network does something
    # Integer path: same pixels as quantising the reference.
    u8 = (image * 255).round().astype(np.uint8)
    ref8 = quantize_ref(reference(model, u8.astype(np.float32) / 255))
    for out in (up.upscale(u8), Upscaler(model, device="cpu", tile=0).upscale(u8)):
        # A value within fp32 rounding of a .5 boundary may round either way: allow one
        # level on at most 0.1% of the values (seams would move many values by more).
        diff = np.abs(out.astype(int) - ref8.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3, (diff.max(), (diff > 0).sum())


@pytest.mark.parametrize("preset", ["espcn", "rrdbnet", "fsrcnn"])
def test_batched_tiles_and_tta_are_exact(preset: str) -> None:
    model = randomized(preset, seed=3)
    r = model.info().receptive_radius
    tile = 16 if r < 20 else 40  # fewer, larger windows for the wide-context network
    rng = np.random.default_rng(2)
    image = rng.random((2 * tile + 2 * r + 3, 2 * tile + 2 * r + 9, 3), dtype=np.float32)
    base, _ = Upscaler(model, device="cpu", tile=0).upscale_arrays(image, clamp=False)
    batched, _ = Upscaler(model, device="cpu", tile=tile, batch=3).upscale_arrays(
        image, clamp=False
    )
    np.testing.assert_allclose(batched, base, atol=1e-5, rtol=0)
    tta_whole, _ = Upscaler(model, device="cpu", tile=0, tta=True).upscale_arrays(
        image, clamp=False
    )
    tta_tiled, _ = Upscaler(model, device="cpu", tile=tile, tta=True).upscale_arrays(
        image, clamp=False
    )
    np.testing.assert_allclose(tta_tiled, tta_whole, atol=1e-5, rtol=0)
    assert np.abs(tta_whole - base).max() > 1e-3  # TTA really changes the result


def test_too_little_overlap_shows_seams() -> None:
    """Negative control: with overlap below the receptive radius the tiles disagree."""
    model = randomized("fsrcnn", scale=3)
    image = np.random.default_rng(0).random((60, 60, 3), dtype=np.float32)
    exact, _ = Upscaler(model, device="cpu", tile=0).upscale_arrays(image, clamp=False)
    seamy, _ = Upscaler(model, device="cpu", tile=16, tile_pad=1).upscale_arrays(image, clamp=False)
    assert np.abs(seamy - exact).max() > 1e-3


@pytest.mark.parametrize(
    ("length", "tile", "pad", "mult"),
    [(100, 16, 5, 1), (101, 16, 38, 2), (7, 4, 1, 4), (50, 0, 3, 1), (33, 8, 0, 3), (20, 16, 8, 1)],
)
def test_plan_axis_geometry(length: int, tile: int, pad: int, mult: int) -> None:
    tiles = plan_axis(length, tile, pad, mult)
    padded = -(-length // mult) * mult
    covered = np.zeros(length, dtype=int)
    for t in tiles:
        covered[t.c0 : t.c1] += 1
        assert t.w0 % mult == 0 and (t.w1 - t.w0) % mult == 0
        assert t.w0 >= 0 and t.w1 <= padded
        # the window holds the core plus `pad` of context wherever the image has it
        assert t.w0 <= max(0, t.c0 - pad) and t.w1 >= min(padded, t.c1 + pad)
    assert (covered == 1).all()
    assert len({t.w1 - t.w0 for t in tiles}) == 1  # uniform windows batch together
    if len(tiles) > 1:
        assert max(t.c1 - t.c0 for t in tiles) <= -(-tile // mult) * mult
        # evened out: no window is spent on a sliver of a core
        assert len(tiles) == -(-length // (-(-tile // mult) * mult))


def test_reflect_indices_match_reflect_padding() -> None:
    for length in (1, 2, 3, 6):
        for start, stop in ((0, length), (0, 3 * length + 4), (length - 1, length + 2)):
            idx = np.arange(length)[reflect_indices(start, stop, length)]
            padded = np.pad(np.arange(length), (0, stop), mode="reflect" if length > 1 else "edge")
            assert np.array_equal(idx, padded[start:stop])


def test_memmap_output_for_large_images() -> None:
    buf = OutputBuffer((64, 64, 3), np.uint8, threshold=1000)
    assert buf.is_memmap and isinstance(buf.array, np.memmap)
    buf.array[:] = 7
    assert int(buf.array.sum()) == 7 * 64 * 64 * 3
    buf.close()
    small = OutputBuffer((4, 4), np.uint16, threshold=1000)
    assert not small.is_memmap
    model = randomized("espcn")
    image = (np.random.default_rng(0).random((40, 30, 3)) * 255).astype(np.uint8)
    up = Upscaler(model, device="cpu", tile=16, memmap_threshold=100)
    out = up.upscale(image)
    assert np.array_equal(out, Upscaler(model, device="cpu", tile=0).upscale(image))


def test_out_of_memory_halves_the_tile_and_stays_exact() -> None:
    from sisr.infer.tiling import run_tiles_retrying

    model = randomized("espcn")
    pad = model.info().receptive_radius
    image = np.random.default_rng(5).random((70, 90, 3), dtype=np.float32)
    calls: list[tuple[int, ...]] = []

    def forward(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape))
        if x.shape[0] * x.shape[-1] * x.shape[-2] > 40 * 40:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return model(x)

    out = np.zeros((140, 180, 3), np.float32)
    used = run_tiles_retrying(
        image, forward, 2, TileConfig(64, pad, 1, 2), out, device=torch.device("cpu"), clamp=False
    )
    assert used.batch == 1 and used.tile == 32 and used.pad == pad  # 64x2 -> 64 -> 32
    assert len({c for c in calls}) > 2  # it really went down step by step
    np.testing.assert_allclose(out, reference(model, image), atol=1e-5, rtol=0)
