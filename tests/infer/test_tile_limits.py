"""Tile sizes: below the receptive radius refused, small ones raised to the exact minimum."""

from __future__ import annotations

import numpy as np
import pytest

from sisr.archs import PRESETS
from sisr.errors import ConfigError
from sisr.infer import Upscaler
from sisr.infer.upscaler import MIN_TILE


def test_tile_below_the_receptive_radius_is_refused() -> None:
    model = PRESETS["espcn"](scale=2)
    radius = model.info().receptive_radius
    assert radius > 1
    with pytest.raises(ConfigError, match=f"smaller than the network's receptive radius {radius}"):
        Upscaler(model, device="cpu", tile=1)


def test_small_tile_is_raised_to_the_exact_minimum() -> None:
    model = PRESETS["espcn"](scale=2).eval()
    with pytest.warns(UserWarning, match=f"raised to {MIN_TILE}"):
        up = Upscaler(model, device="cpu", tile=8)
    assert up.tile == MIN_TILE
    img = (np.random.default_rng(0).random((61, 75, 3)) * 255).astype(np.uint8)
    ref = Upscaler(model, device="cpu", tile=0).upscale(img)
    assert np.array_equal(up.upscale(img), ref)
