"""Networks whose output depends on the whole image (ArchInfo.global_context): whole images
where the tile allows, a capped seam overlap, and one warning when an image is split."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from sisr.archs import build
from sisr.infer import Upscaler
from sisr.infer.upscaler import SEAM_PAD


def _image(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 128 + 90 * np.sin(xx / 7.0)[..., None] * np.cos(yy / 5.0)[..., None]
    return np.clip(img + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    small = {
        "bsrn": {"feature_channels": 16, "num_blocks": 1},
        "imdn": {"num_features": 8, "num_blocks": 1, "distilled_channels": 2},
    }
    return build(name, 2, **small[name]).eval()


@pytest.mark.parametrize("name", ["bsrn", "imdn"])
def test_split_images_are_announced_once_and_stay_close(name: str) -> None:
    model = _model(name)
    assert model.info().global_context
    whole = Upscaler(model, device="cpu", precision="fp32", tile=0)
    tiled = Upscaler(model, device="cpu", precision="fp32", tile=64)
    assert tiled.tile_pad == min(model.info().receptive_radius, SEAM_PAD)
    img = _image(150, 170)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ref = whole(img)
        assert not caught  # one pass: nothing to say
        out = tiled(img)
        tiled(img)
    notes = [str(w.message) for w in caught]
    assert len(notes) == 1 and "170x150 image split into" in notes[0]
    assert "--tile 0" in notes[0] and model.info().global_context in notes[0]
    diff = np.abs(out.astype(int) - ref.astype(int))
    assert diff.mean() < 0.5  # near the one-pass result; not equal (that is the point)


def test_exact_networks_are_not_announced() -> None:
    torch.manual_seed(0)
    model = build("imdn-rtc", 2, num_features=8, num_blocks=1, distilled_channels=2).eval()
    assert not model.info().global_context
    up = Upscaler(model, device="cpu", precision="fp32", tile=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = up(_image(150, 170))
    ref = Upscaler(model, device="cpu", precision="fp32", tile=0)(_image(150, 170))
    # exact up to fp32 rounding at a .5 boundary (as tests/infer/test_tiling.py allows)
    diff = np.abs(out.astype(int) - ref.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3
