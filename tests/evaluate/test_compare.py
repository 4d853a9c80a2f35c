"""``sisr compare`` figures: layout geometry and panel contents, pixel for pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

from sisr.cli.main import main
from sisr.degrade import imresize_uint8
from sisr.errors import ConfigError
from sisr.evaluate.compare import (
    GAP,
    RECT,
    auto_crop,
    compare_panels,
    compose,
    make_layout,
    residual_image,
)
from sisr.metrics import psnr_y


def _hr(h: int = 60, w: int = 80) -> Tensor:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([128 + 100 * np.sin(xx / (3 + c) + yy / 5) for c in range(3)], -1)
    img = np.clip(img + rng.normal(0, 5, img.shape), 0, 255).round().astype(np.uint8)
    return torch.from_numpy(img).permute(2, 0, 1).contiguous()


def _box(fig: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    left, top, right, bottom = box
    return fig[top:bottom, left:right]


def _outline(h: int, w: int, crop: tuple[int, int, int, int]) -> np.ndarray:
    x, y, cw, ch = crop
    mask = np.zeros((h, w), bool)
    mask[y : y + ch, x] = mask[y : y + ch, x + cw - 1] = True
    mask[y, x : x + cw] = mask[y + ch - 1, x : x + cw] = True
    return mask


def test_cli_bicubic_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hr = _hr()
    Image.fromarray(hr.permute(1, 2, 0).numpy()).save(tmp_path / "hr.png")
    fig_path = tmp_path / "fig.png"
    crop = (8, 4, 20, 15)
    argv = ["compare", "-i", str(tmp_path / "hr.png"), "--scale", "4", "--model", "bicubic"]
    argv += ["-o", str(fig_path), "--residual", "--crop", "8,4,20,15", "--gain", "3"]
    assert main(argv) == 0
    assert "Bicubic: " in capsys.readouterr().out

    with Image.open(fig_path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        fig = np.asarray(im)
    layout = make_layout(2, 60, 80, crop, residual=True)  # columns: Bicubic, HR
    assert fig.shape == (layout.height, layout.width, 3)
    assert layout.width == GAP + 2 * (80 + GAP)

    bic = imresize_uint8(imresize_uint8(hr, scale=1 / 4), scale=4)
    outline = _outline(60, 80, crop)
    for col, img in enumerate([bic, hr]):
        expected = img.permute(1, 2, 0).numpy()
        view = _box(fig, layout.view_box(col))
        assert np.array_equal(view[~outline], expected[~outline])
        assert (view[outline] == RECT).all()
        x, y, w, h = crop
        zoom = expected[y : y + h, x : x + w].repeat(4, axis=0).repeat(4, axis=1)
        assert np.array_equal(_box(fig, layout.zoom_box(col)), zoom)
    true_residual = residual_image(hr, bic, 3).permute(1, 2, 0).numpy()
    assert np.array_equal(_box(fig, layout.residual_box(1)), true_residual)
    assert (_box(fig, layout.residual_box(0)) == 255).all()  # nothing under bicubic


def test_panels_with_a_model_and_shrunk_view() -> None:
    hr = _hr(61, 83)  # cropped to 60x80 at x4

    def nearest(x: Tensor) -> Tensor:
        return x.repeat_interleave(4, dim=-2).repeat_interleave(4, dim=-1)

    panels = compare_panels(hr, 4, [("nearest", nearest)], gain=2.0)
    assert [p.title for p in panels] == ["Bicubic", "nearest", "HR"]
    bic, near, ref = panels
    assert ref.image.shape == (3, 60, 80) and ref.psnr_y is None
    assert near.psnr_y == pytest.approx(psnr_y(near.image, ref.image, border=4).item())
    assert near.label == f"{near.psnr_y:.2f} dB / {near.ssim_y:.4f}"
    assert torch.equal(near.residual, residual_image(near.image, bic.image, 2.0))
    assert bic.residual is None

    fig, layout = compose(panels, (0, 0, 40, 40), residual=True, panel_width=40)
    assert (layout.panel_w, layout.view_h, layout.zoom_h) == (40, 30, 40)
    assert fig.size == (GAP + 3 * (40 + GAP), layout.height)
    with pytest.raises(ConfigError, match="does not fit"):
        compose(panels, (50, 0, 40, 40))


def test_residual_image_offset_gain_and_saturation() -> None:
    base = torch.full((3, 1, 4), 100, dtype=torch.uint8)
    sr = torch.tensor([[[100, 101, 90, 200]]], dtype=torch.uint8).expand(3, 1, 4)
    assert residual_image(sr, base, 4.0)[0, 0].tolist() == [128, 132, 88, 255]


def test_auto_crop_finds_the_detail() -> None:
    img = torch.full((3, 64, 96), 120, dtype=torch.uint8)
    patch = torch.randint(0, 256, (3, 16, 16), generator=torch.Generator().manual_seed(0))
    img[:, 20:36, 40:56] = patch.to(torch.uint8)
    assert auto_crop(img, 16) == (40, 20, 16, 16)
    x, y, w, h = auto_crop(img)
    assert w == h == 16 and 0 <= x <= 96 - 16 and 0 <= y <= 64 - 16


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Image.fromarray(_hr().permute(1, 2, 0).numpy()).save(tmp_path / "hr.png")
    base = ["compare", "-i", str(tmp_path / "hr.png"), "-s", "2", "-m", "bicubic"]
    assert main([*base, "-o", str(tmp_path / "f.png"), "--crop", "70,0,20,20"]) == 2
    assert "does not fit" in capsys.readouterr().err
    assert main([*base, "-o", str(tmp_path / "f.png"), "--crop", "1,2,3"]) == 2
    assert "x,y,w,h" in capsys.readouterr().err
    assert (
        main([*base[:2], str(tmp_path / "missing.png"), *base[3:], "-o", str(tmp_path / "g.png")])
        == 2
    )
    assert "missing.png" in capsys.readouterr().err
    assert not (tmp_path / "f.png").exists()
    assert main([*base, "-o", str(tmp_path / "f.png"), "--device", "bogus"]) == 2
    assert "unknown device 'bogus'" in capsys.readouterr().err
    Image.fromarray(np.zeros((13, 13, 3), np.uint8)).save(tmp_path / "small.png")
    small = ["compare", "-i", str(tmp_path / "small.png"), "-s", "4", "-m", "bicubic"]
    assert main([*small, "-o", str(tmp_path / "f.png")]) == 2
    assert f"{tmp_path / 'small.png'}: image 12x12 (cropped" in capsys.readouterr().err
    assert not (tmp_path / "f.png").exists()


def test_given_lr_image_is_what_every_column_upscales(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--lr``: a degraded photo (here: the bicubic LR made darker) instead of HR's
    bicubic downscale; bicubic's column is exactly that image upscaled."""
    hr = _hr()
    lr = (imresize_uint8(hr, scale=1 / 2).int() - 40).clamp(0, 255).to(torch.uint8)
    Image.fromarray(hr.permute(1, 2, 0).numpy()).save(tmp_path / "hr.png")
    Image.fromarray(lr.permute(1, 2, 0).numpy()).save(tmp_path / "lr.png")
    fig_path = tmp_path / "fig.png"
    argv = ["compare", "-i", str(tmp_path / "hr.png"), "--lr", str(tmp_path / "lr.png")]
    assert main([*argv, "-s", "2", "-m", "bicubic", "-o", str(fig_path)]) == 0
    capsys.readouterr()
    panels = compare_panels(hr, 2, [], lr=lr)
    assert torch.equal(panels[0].image, imresize_uint8(lr, scale=2))
    with Image.open(fig_path) as im:
        fig = np.asarray(im)
    layout = make_layout(2, 60, 80, auto_crop(hr), residual=False)
    view = _box(fig, layout.view_box(0))
    expected = imresize_uint8(lr, scale=2).permute(1, 2, 0).numpy()
    outline = _outline(60, 80, auto_crop(hr))
    assert np.array_equal(view[~outline], expected[~outline])

    Image.fromarray(lr[:, :-1].permute(1, 2, 0).numpy()).save(tmp_path / "short.png")
    bad = ["compare", "-i", str(tmp_path / "hr.png"), "--lr", str(tmp_path / "short.png")]
    assert main([*bad, "-s", "2", "-m", "bicubic", "-o", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'short.png'}: is 40x29, but" in err and "40x30" in err
    assert not (tmp_path / "g.png").exists()
