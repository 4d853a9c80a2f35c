"""The built-in default model: shipped files are intact, load, and beat bicubic on Set5."""

from __future__ import annotations

import pytest

from sisr.hub.download import sha256_file
from sisr.hub.names import WEIGHTS, shipped_path
from sisr.hub.weights import load_model, read_metadata

SHIPPED = sorted(name for name, w in WEIGHTS.items() if w.file is not None)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_are_intact_and_load(name: str) -> None:
    entry = WEIGHTS[name]
    path = shipped_path(entry)
    assert path is not None and path.is_file()
    assert sha256_file(path) == entry.sha256
    model = load_model(name)
    assert model.scale == entry.scale
    assert model.arch_id == entry.preset
    assert path.stat().st_size < 1 << 20  # the package stays small


def test_default_family_covers_x2_x3_x4() -> None:
    assert {WEIGHTS[f"default-x{s}"].scale for s in (2, 3, 4)} == {2, 3, 4}
    assert WEIGHTS["default"].file == WEIGHTS["default-x2"].file
    # Trained by our own engine: the file records its recipe and validation.
    meta = read_metadata(shipped_path(WEIGHTS["default-x2"]))
    assert meta["recipe"]["model"]["preset"] == "espcn"


@pytest.mark.data
def test_default_x2_beats_bicubic_by_1db_on_set5(data_root) -> None:  # type: ignore[no-untyped-def]
    import sisr
    from sisr.evaluate import evaluate, load_pairs

    pairs = load_pairs(data_root / "benchmarks" / "Set5", 2)
    ours = evaluate("default-x2", pairs, 2, device="cpu", ssim=False)
    base = evaluate("bicubic", pairs, 2, device="cpu", ssim=False)
    assert ours.psnr_y >= base.psnr_y + 1.0, (ours.psnr_y, base.psnr_y)
    # The tiled inference path (small tiles, several per image) scores the same.
    up = sisr.load("default", device="cpu", tile=48)
    tiled = evaluate(up.upscale, pairs, 2, device="cpu", ssim=False)
    assert abs(tiled.psnr_y - ours.psnr_y) < 1e-3  # float rounding may flip a few pixels
