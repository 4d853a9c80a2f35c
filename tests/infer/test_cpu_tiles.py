"""CPU tiles: ``--tile auto`` keeps a window's real memory within the budget, and the work
inside a tile reports progress and can be stopped between the network's layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from sisr.archs.base import ArchInfo
from sisr.infer import Upscaler, tile_size

# Live float32 bytes per pixel at the peak of Hungry.forward (x not counted): h, a, b (32
# channels each), c (64) and the sum being computed (32) = 192 channels x 4 bytes.
HUNGRY_PEAK = 192 * 4


class Hungry(nn.Module):
    """Most of its memory is in functional intermediates that no leaf module returns."""

    scale = 2
    arch_id = "hungry"

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 32, 3, padding=1)
        self.tail = nn.Conv2d(32, 12, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.head(x)
        a = h * 2
        b = h + a
        c = torch.cat([a, b], 1)
        h = c[:, :32] + c[:, 32:]
        return self.shuffle(self.tail(h))

    def info(self) -> ArchInfo:
        return ArchInfo("hungry", (2,), receptive_radius=2)


def test_auto_tile_keeps_the_real_peak_within_the_cpu_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    budget = 32 << 20
    monkeypatch.setattr(tile_size, "CPU_TILE_BUDGET", budget)
    up = Upscaler(Hungry().eval(), device="cpu")
    cfg = up._plan("color", 3)[1]
    window = cfg.tile + 2 * cfg.pad
    assert window * window * HUNGRY_PEAK <= budget, (cfg, up._bpp)


def test_default_model_splits_a_1990_pixel_photo_on_the_cpu() -> None:
    """The audit's case: one 1984-pixel tile took 3.7x the 768 MiB budget."""
    up = Upscaler.from_name("default-x2", device="cpu", progress=False)
    assert up.tile_count(1990, 1990) >= 4


def test_tick_reports_progress_inside_a_single_tile() -> None:
    up = Upscaler(Hungry().eval(), device="cpu", tile=0)
    image = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    tiles: list[int] = []
    ticks: list[float] = []
    out, _ = up.upscale_arrays(image, progress=tiles.append, tick=ticks.append)
    assert tiles == [1]  # one tile
    assert len(ticks) >= 3 and all(0.0 < f < 1.0 for f in ticks)
    assert ticks == sorted(ticks)
    np.testing.assert_array_equal(out, up.upscale_arrays(image)[0])  # ticks change nothing


class _Stop(Exception):
    pass


def test_raising_from_tick_stops_the_tile_between_layers() -> None:
    up = Upscaler(Hungry().eval(), device="cpu", tile=0)
    image = np.zeros((40, 30, 3), np.uint8)
    calls: list[float] = []

    def tick(fraction: float) -> None:
        calls.append(fraction)
        if len(calls) == 2:
            raise _Stop

    with pytest.raises(_Stop):
        up.upscale_arrays(image, tick=tick)
    assert len(calls) == 2  # the remaining layers did not run
    up.upscale_arrays(image)  # the callback belonged to that call only
    assert len(calls) == 2
