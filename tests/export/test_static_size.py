"""Graphs exported with ``--static H W`` run on images of any size: larger inputs in
fixed-size windows (exact), smaller ones padded to the fixed size (exact away from the
padded edge)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("onnx", reason="needs pip install 'sisr[onnx]'")
pytest.importorskip("onnxruntime", reason="needs pip install 'sisr[onnx]'")

import itertools

from sisr.cli.main import main
from sisr.export.fixed_size import plan_windows, run_fixed_size
from sisr.export.ort import load_onnx
from sisr.infer import Upscaler
from tests.export.test_ort_runtime import _photo

STATIC = 64  # the default network's receptive radius is 21: cores of 22 inside
# (height, width): smaller than, larger than, and neither a multiple of nor below it
SIZES = [(40, 50), (150, 170), (97, 131)]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("static")
    out = {"dynamic": root / "d.onnx", "static": root / "s.onnx"}
    assert main(["export", "-o", str(out["dynamic"])]) == 0
    assert main(["export", "--static", str(STATIC), str(STATIC), "-o", str(out["static"])]) == 0
    return out


def _compare(got: np.ndarray, ref: np.ndarray, h: int, w: int, radius: int, s: int) -> None:
    """Within one level where the padding cannot reach; close near the padded edges."""
    diff = np.abs(got.astype(int) - ref.astype(int))
    exact_h = (h - radius) * s if h < STATIC else h * s
    exact_w = (w - radius) * s if w < STATIC else w * s
    assert diff[:exact_h, :exact_w].max() <= 1
    assert diff.mean() <= 0.5, f"mean difference {diff.mean():.3f} levels"


@pytest.mark.parametrize("hw", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
@pytest.mark.parametrize("tile", [0, 48, "auto"])
def test_static_onnx_matches_dynamic(models: dict[str, Path], hw: tuple, tile: object) -> None:
    h, w = hw
    img = _photo(h, w, seed=h)
    dyn = load_onnx(models["dynamic"])
    ref = Upscaler(dyn, tile=0, channels_last=False).upscale(img)
    got = Upscaler(load_onnx(models["static"]), tile=tile, channels_last=False).upscale(img)
    assert got.shape == ref.shape == (2 * h, 2 * w, 3)
    _compare(got, ref, h, w, dyn.info().receptive_radius, 2)


def test_static_onnx_through_the_cli(models: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for h, w in SIZES:
        Image.fromarray(_photo(h, w, seed=w)).save(src / f"{h}x{w}.png")
    for name in ("dynamic", "static"):
        args = ["upscale", "-q", "-i", str(src), "-o", str(tmp_path / name)]
        assert main([*args, "--runtime", "onnxruntime", "-n", str(models[name])]) == 0
    for h, w in SIZES:
        got = np.asarray(Image.open(tmp_path / "static" / f"{h}x{w}.png"))
        ref = np.asarray(Image.open(tmp_path / "dynamic" / f"{h}x{w}.png"))
        _compare(got, ref, h, w, 21, 2)


@pytest.mark.parametrize("length", [64, 65, 97, 150, 1000])
@pytest.mark.parametrize(("size", "radius", "multiple"), [(64, 21, 1), (48, 8, 4), (30, 0, 1)])
def test_windows_cover_once_with_context(
    length: int, size: int, radius: int, multiple: int
) -> None:
    length = -(-length // multiple) * multiple  # run_fixed_size pads to a multiple first
    wins = plan_windows(length, size, radius, multiple)
    assert wins[0].keep0 == 0 and wins[-1].keep1 == length
    for a, b in itertools.pairwise(wins):
        assert a.keep1 == b.keep0  # no gap, no overlap
    for win in wins:
        assert win.start >= 0 and win.start + size <= length and win.start % multiple == 0
        assert win.keep0 == 0 or win.keep0 - win.start >= radius
        assert win.keep1 == length or win.start + size - win.keep1 >= radius


def test_too_small_a_fixed_size_says_so() -> None:
    with pytest.raises(ValueError, match="at least 43"):
        plan_windows(100, 40, 21)


def test_fixed_batch_and_any_size_with_a_torch_network() -> None:
    """The window logic on its own: a network that only takes one 1x3x32x32 input."""
    torch.manual_seed(0)
    conv = torch.nn.Sequential(
        torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(12, 12, 3, padding=1)
    )
    net = torch.nn.Sequential(conv, torch.nn.PixelShuffle(2)).eval()

    def fixed(x: torch.Tensor) -> torch.Tensor:
        assert tuple(x.shape) == (1, 3, 32, 32)
        return net(x)

    x = torch.rand(3, 3, 70, 45)
    with torch.no_grad():
        got = run_fixed_size(fixed, x, size=(32, 32), batch=1, scale=2, radius=2)
        ref = net(x)
    assert torch.allclose(got, ref, atol=1e-5)


def test_static_torch_exports_run_on_any_size(tmp_path: Path) -> None:
    """``--static`` .pt2 programs are specialised to their size; -n runs them anyway."""
    out = tmp_path / "s.pt2"
    assert main(["export", "--static", "48", "48", "-n", "fast", "-o", str(out)]) == 0
    img = _photo(30, 70)
    import sisr

    eager = sisr.load("fast", device="cpu", progress=False, tile=0, precision="fp32")
    ref = eager.upscale(img)
    got = sisr.load(str(out), device="cpu", progress=False, tile=0).upscale(img)
    assert got.shape == ref.shape
    diff = np.abs(got.astype(int) - ref.astype(int))
    assert diff[: (30 - eager.info.receptive_radius) * 2].max() <= 1 and diff.mean() <= 0.5
