"""The evaluation engine on small synthetic images (no shared data needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from sisr.degrade import imresize_uint8
from sisr.errors import ConfigError, SisrError
from sisr.evaluate import evaluate, load_pairs, make_pairs, read_images
from sisr.metrics import psnr_rgb, psnr_y, quantize, ssim_y


def _image(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth colour image with some texture (so metrics are finite and distinct)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 90 * np.sin(xx / (5 + c) + yy / (7 + seed) + c) for c in range(3)], -1)
    return np.clip(base + rng.normal(0, 8, (h, w, 3)), 0, 255).round().astype(np.uint8)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Four PNGs: two sizes (one not a multiple of 2/3/4), one grayscale."""
    d = tmp_path / "tiny"
    d.mkdir()
    Image.fromarray(_image(30, 41, 0)).save(d / "a.png")
    Image.fromarray(_image(36, 24, 1)).save(d / "b.png")
    Image.fromarray(_image(30, 41, 2)).save(d / "c.png")
    Image.fromarray(_image(30, 41, 3)[..., 0]).save(d / "d_gray.png")
    (d / "notes.txt").write_text("ignored")
    return d


def _nearest(x: Tensor, s: int) -> Tensor:
    return x.repeat_interleave(s, dim=-2).repeat_interleave(s, dim=-1)


class Nearest(nn.Module):
    """A stand-in SR model: nearest-neighbour upscaling plus a learnable offset."""

    def __init__(self, scale: int, offset: float = 0.0) -> None:
        super().__init__()
        self.scale = scale
        self.offset = nn.Parameter(torch.tensor(offset))
        self.modes: list[bool] = []

    def forward(self, x: Tensor) -> Tensor:
        self.modes.append(self.training)
        return _nearest(x, self.scale) + self.offset


def test_read_and_make_pairs(folder: Path) -> None:
    images = read_images(folder)
    assert [n for n, _ in images] == ["a", "b", "c", "d_gray"]
    assert images[0][1].shape == (3, 30, 41) and images[0][1].dtype == torch.uint8
    gray = images[3][1]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[0], gray[2])
    pairs = make_pairs(images, 3)
    for (name, hr), pair in zip(images, pairs, strict=True):
        h, w = hr.shape[1] // 3 * 3, hr.shape[2] // 3 * 3
        assert pair.name == name
        assert torch.equal(pair.hr, hr[:, :h, :w])  # modcrop: bottom/right
        assert torch.equal(pair.lr, imresize_uint8(pair.hr, scale=1 / 3))
        assert pair.lr.shape == (3, h // 3, w // 3)
    assert [p.name for p in load_pairs(folder, 2, limit=2)] == ["a", "b"]


def test_bicubic_scores_match_direct_computation(folder: Path) -> None:
    pairs = load_pairs(folder, 2)
    result = evaluate("bicubic", pairs, 2, dataset_name="tiny")
    assert (result.model, result.dataset, result.scale) == ("bicubic", "tiny", 2)
    assert [s.name for s in result.images] == ["a", "b", "c", "d_gray"]
    for pair, score in zip(pairs, result.images, strict=True):
        sr = imresize_uint8(pair.lr, scale=2)
        assert score.psnr_y == pytest.approx(psnr_y(sr, pair.hr, border=2).item(), abs=1e-12)
        assert score.ssim_y == pytest.approx(ssim_y(sr, pair.hr, border=2).item(), abs=1e-12)
        assert score.psnr_rgb == pytest.approx(psnr_rgb(sr, pair.hr, border=2).item(), abs=1e-12)
        assert score.seconds >= 0
    assert result.psnr_y == pytest.approx(np.mean([s.psnr_y for s in result.images]), abs=1e-12)
    assert result.ssim_y == pytest.approx(np.mean([s.ssim_y for s in result.images]), abs=1e-12)
    # Batching same-size images together changes nothing.
    one = evaluate("bicubic", pairs, 2, batch_size=1)
    assert [s.psnr_y for s in one.images] == [s.psnr_y for s in result.images]


def test_module_scores_quantised_output_and_restores_mode(folder: Path, tmp_path: Path) -> None:
    pairs = load_pairs(folder, 2)
    model = Nearest(2, offset=0.3 / 255)  # +0.3 levels: must be quantised away (rounds to 0)
    model.train()
    outputs: list[Tensor] = []
    result = evaluate(model, pairs, 2, save_dir=tmp_path / "out", keep_outputs=outputs)
    assert model.training and model.modes == [False] * len(pairs)
    assert result.model == "Nearest"
    for pair, score, out in zip(pairs, result.images, outputs, strict=True):
        expected = quantize(_nearest(pair.lr.double() / 255, 2))
        assert torch.equal(out, expected)
        assert score.psnr_y == pytest.approx(psnr_y(expected, pair.hr, border=2).item())
        saved = np.asarray(Image.open(tmp_path / "out" / f"{pair.name}.png"))
        assert np.array_equal(saved, expected.permute(1, 2, 0).numpy())


def test_callable_and_ssim_off(folder: Path) -> None:
    pairs = load_pairs(folder, 4)

    def up(x: Tensor) -> Tensor:
        return _nearest(x, 4)

    result = evaluate(up, pairs, 4, ssim=False, batch_size=8)
    assert result.model == "up" and result.ssim_y is None
    assert all(s.ssim_y is None for s in result.images)
    assert np.isfinite(result.psnr_y)


def test_size_multiple_padding(folder: Path) -> None:
    class NeedsMultiple(Nearest):
        def info(self) -> object:
            class _Info:
                size_multiple = 4

            return _Info()

        def forward(self, x: Tensor) -> Tensor:
            assert x.shape[-1] % 4 == 0 and x.shape[-2] % 4 == 0
            return super().forward(x)

    pairs = load_pairs(folder, 2)  # LR 15x20, 18x12: not multiples of 4
    padded = evaluate(NeedsMultiple(2), pairs, 2)
    plain = evaluate(Nearest(2), pairs, 2)
    assert [s.psnr_y for s in padded.images] == [s.psnr_y for s in plain.images]


def test_errors_name_the_problem(folder: Path) -> None:
    pairs = load_pairs(folder, 2)
    with pytest.raises(ConfigError, match="model is x4, cannot evaluate x2"):
        evaluate(Nearest(4), pairs, 2)
    with pytest.raises(ConfigError, match="baseline for x3"):
        evaluate("bicubic-x3", pairs, 2)
    with pytest.raises(
        SisrError, match=r"a: wrong: model returned \(1, 3, 45, 60\) .* expected \(1, 3, 30, 40\)"
    ):
        evaluate(lambda x: _nearest(x, 3), pairs, 2, model_name="wrong")
    with pytest.raises(SisrError, match="a: Nearest: model output contains NaN"):
        evaluate(Nearest(2, offset=float("nan")), pairs, 2)
    with pytest.raises(ConfigError, match="no images"):
        evaluate("bicubic", [], 2)
    with pytest.raises(ConfigError, match="positive integer"):
        evaluate("bicubic", pairs, 0)
    with pytest.raises(ConfigError, match="x: expected a \\(3, H, W\\) uint8"):
        make_pairs([("x", torch.zeros(3, 8, 8))], 2)
    with pytest.raises(ConfigError, match="x: image smaller than the scale"):
        make_pairs([("x", torch.zeros(3, 2, 8, dtype=torch.uint8))], 4)


def test_result_to_dict_roundtrip(folder: Path) -> None:
    result = evaluate("bicubic", folder, 2)
    d = result.to_dict()
    assert set(d) == {
        "model",
        "dataset",
        "scale",
        "psnr_y",
        "ssim_y",
        "psnr_rgb",
        "images",
        "seconds",
    }
    assert d["dataset"] == "tiny"
    assert d["images"][0] == result.images[0].to_dict()
    assert set(d["images"][0]) == {"name", "psnr_y", "ssim_y", "psnr_rgb", "seconds"}
