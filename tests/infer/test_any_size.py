"""Any output size (issue 21, item 2): the pass plan, the target sizes, the exact resize, and
`sisr upscale -s 1.5 / -s 8 / --width / --height / --max-side` keeping alpha and 16 bits."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.corpus import encode_png

from sisr.cli.main import main
from sisr.errors import ConfigError
from sisr.infer import Upscaler
from sisr.infer.any_size import AnySize, Target, plan_passes, resize_exact
from sisr.io.image import read_native


@pytest.mark.parametrize(
    ("factor", "scales", "passes"),
    [
        (1.5, [2, 3, 4], (2,)),
        (2, [2, 3, 4], (2,)),
        (2.5, [2, 3, 4], (2, 2)),
        (3.2, [2, 3, 4], (2, 2)),
        (6, [2, 3, 4], (2, 3)),
        (8, [2, 3, 4], (2, 4)),
        (16, [2, 3, 4], (2, 2, 4)),
        (8, [2], (2, 2, 2)),
        (3, [4], (4,)),
        (8, [3, 4], (3, 3)),
    ],
)
def test_x2_first_then_the_smallest_scale_that_reaches_it(
    factor: float, scales: list[int], passes: tuple[int, ...]
) -> None:
    assert plan_passes(factor, scales) == passes


def test_impossible_plans_and_targets_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="more than 3 passes"):
        plan_passes(16, [2])
    for bad, msg in [
        (Target(), "no output size"),
        (Target(0.5), "between 1 and 16"),
        (Target(float("nan")), "between 1 and 16"),
        (Target(17), "between 1 and 16"),
        (Target(2, width=10), "not both"),
        (Target(width=0), "--width must be between"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            bad.check()
    with pytest.raises(ConfigError, match="already larger"):
        Target(width=100).size(50, 200)
    with pytest.raises(ConfigError, match="more than x16"):
        Target(max_side=10_000).size(10, 10)


def test_target_sizes_keep_the_aspect_and_hit_the_side_asked_for() -> None:
    assert Target(1.5).size(333, 500) == (500, 750)
    assert Target(width=1920).size(333, 500) == (1279, 1920)
    assert Target(height=1080).size(333, 500) == (1080, 1622)
    assert Target(max_side=1000).size(480, 640) == (750, 1000)
    assert Target(width=800, height=300).size(100, 200) == (300, 600)  # fits both
    for w in range(101, 140):
        assert Target(width=w * 3).size(77, w)[1] == w * 3


def test_resize_exact_keeps_dtype_layout_and_antialiases() -> None:
    rng = np.random.default_rng(0)
    u16 = rng.integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    assert resize_exact(u16, (20, 30)) is u16
    out = resize_exact(u16, (15, 22))
    assert out.dtype == np.uint16 and out.shape == (15, 22, 3)
    gray = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    assert resize_exact(gray, (31, 45)).shape == (31, 45)
    # a 1-pixel checkerboard halved: antialiased to flat grey, not aliased to black/white
    board = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
    assert np.ptp(resize_exact(board, (32, 32))[4:-4, 4:-4]) <= 2


def _family(**kwargs: object) -> AnySize:
    def get(scale: int) -> Upscaler:
        return Upscaler.from_name("bicubic", scale=scale, device="cpu", progress=False)

    return AnySize(get, [2, 3, 4], Target(**kwargs))  # type: ignore[arg-type]


def test_passes_then_resize_with_alpha_and_16_bits() -> None:
    rng = np.random.default_rng(1)
    color = rng.integers(0, 65536, (13, 17, 3), dtype=np.uint16)
    alpha = rng.integers(0, 65536, (13, 17), dtype=np.uint16)
    x8 = _family(factor=8)
    c, a = x8.upscale_arrays(color, alpha)
    four = Upscaler.from_name("bicubic", scale=4, device="cpu", progress=False)
    two = Upscaler.from_name("bicubic", scale=2, device="cpu", progress=False)
    want_c, want_a = four.upscale_arrays(*two.upscale_arrays(color, alpha))
    assert np.array_equal(c, want_c) and np.array_equal(a, want_a)  # (2, 4), no resize
    c, a = _family(factor=1.5).upscale_arrays(color, alpha)
    assert c.dtype == np.uint16 and c.shape == (20, 26, 3) and a is not None and a.shape == (20, 26)
    assert _family(factor=8).tile_count(13, 17) >= 2


def test_output_meta_scales_the_dpi_per_axis(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(tmp_path / "a.png", dpi=(72, 72))
    meta = read_native(tmp_path / "a.png").meta
    out = _family(width=30).output_meta(replace(meta, dpi=(72.0, 72.0)))
    assert out.dpi == pytest.approx((108.0, 108.0))


def test_cli_any_size_keeps_alpha_and_depth(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    rgba = rng.integers(0, 65536, (12, 16, 4), dtype=np.uint16)
    (tmp_path / "in.png").write_bytes(encode_png(rgba))
    base = ["upscale", "-q", "-n", "bicubic", "--device", "cpu", "-i", str(tmp_path / "in.png")]
    for extra, size in [
        (["-s", "1.5"], (18, 24)),
        (["-s", "8"], (96, 128)),
        (["--width", "40"], (30, 40)),
        (["--max-side", "50", "--height", "30"], (30, 40)),
    ]:
        out = tmp_path / "out.png"
        assert main([*base, "-o", str(out), *extra]) == 0, extra
        got = read_native(out)
        assert got.color.shape[:2] == size and got.color.dtype == np.uint16, extra
        assert got.alpha is not None and got.alpha.shape == size
    assert main([*base, "-o", str(tmp_path / "x.png"), "-s", "2", "--width", "40"]) == 2
    assert main([*base, "-o", str(tmp_path / "x.png"), "-s", "0.5"]) == 2
    assert not (tmp_path / "x.png").exists()


def test_output_pixels_are_checked_before_any_work() -> None:
    calls: list[int] = []

    def get(scale: int) -> Upscaler:
        calls.append(scale)
        return Upscaler.from_name("bicubic", scale=scale, device="cpu", progress=False)

    up = AnySize(get, [2, 4], Target(8), max_output_pixels=10_000)
    with pytest.raises(ConfigError, match=r"x8 makes a 160x80 output of a 20x10 image, above"):
        up.upscale_arrays(np.zeros((10, 20, 3), np.uint8))
    assert calls == []
