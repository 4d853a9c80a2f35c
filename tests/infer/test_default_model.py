"""The built-in default model: shipped files are intact, load, and beat bicubic on Set5."""

from __future__ import annotations

import pytest

from sisr.hub.download import sha256_file
from sisr.hub.load import load_model
from sisr.hub.names import WEIGHTS, shipped_path
from sisr.hub.weights import read_metadata

SHIPPED = sorted(name for name, w in WEIGHTS.items() if w.file is not None)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_are_intact_and_load(name: str) -> None:
    entry = WEIGHTS[name]
    path = shipped_path(entry)
    assert path is not None and path.is_file()
    assert sha256_file(path) == entry.sha256
    model = load_model(name)
    assert model.scale == entry.scale
    from sisr.archs import build

    assert model.arch_id == build(entry.preset, entry.scale).arch_id
    meta = read_metadata(path)
    # how it was made travels with it: recipe, training stages, the measured table
    assert meta["recipe"]["model"]["preset"] == entry.preset
    assert meta["extra"]["lineage"] and all(s["iterations"] > 0 for s in meta["extra"]["lineage"])
    assert {m["dataset"] for m in meta["metrics"]} == {"Set5", "Set14", "B100"}
    # float16 unless that moved some PSNR by more than 0.01 dB (tools/finalize.py)
    deltas = meta["extra"]["fp16_minus_fp32_psnr_y"].values()
    moved = any(abs(d) > 0.01 for d in deltas)
    assert meta["storage_dtype"] == ("float32" if moved else "float16")


def test_shipped_weights_fit_the_package_budget() -> None:
    files = {shipped_path(w) for w in WEIGHTS.values() if w.file is not None}
    assert sum(p.stat().st_size for p in files if p is not None) <= 30_000_000


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in SHIPPED if n not in ("default", "fast")])
def test_shipped_output_stays_in_range(data_root, name: str) -> None:  # type: ignore[no-untyped-def]
    """Raw outputs overshoot [0, 1] a little at edges; far outside means a broken model
    whose defects the PSNR border crop can hide (a perceptual-only net reached -215)."""
    import torch

    from sisr.evaluate import load_pairs

    model = load_model(name).eval()
    scale = WEIGHTS[name].scale
    for pair in load_pairs(data_root / "benchmarks" / "Set5", scale)[:2]:  # baby, bird
        with torch.no_grad():
            out = model(pair.lr.float()[None] / 255)
        assert float(out.min()) >= -0.25 and float(out.max()) <= 1.5, (pair.name, out.aminmax())


@pytest.mark.parametrize(("family", "preset"), [("default", "span-t"), ("fast", "espcn")])
def test_shipped_families_cover_x2_x3_x4(family: str, preset: str) -> None:
    assert {WEIGHTS[f"{family}-x{s}"].scale for s in (2, 3, 4)} == {2, 3, 4}
    assert WEIGHTS[family].file == WEIGHTS[f"{family}-x2"].file
    for s in (2, 3, 4):
        # Trained by our own engine: the file records its recipe and validation.
        meta = read_metadata(shipped_path(WEIGHTS[f"{family}-x{s}"]))
        assert meta["recipe"]["model"]["preset"] == preset
        assert meta["scale"] == s


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_default_records_how_it_was_trained_and_measured(scale: int) -> None:
    meta = read_metadata(shipped_path(WEIGHTS[f"default-x{scale}"]))
    extra = meta["extra"]
    assert extra.get("cpu_minutes", 0) + extra.get("gpu_minutes", 0) > 0
    assert extra["train_precision"] in ("auto", "bf16", "fp32")
    assert isinstance(extra["cpu_bf16"]["ok"], bool)
    assert abs(extra["cpu_bf16"]["set5_delta_db"]) <= 0.02 or not extra["cpu_bf16"]["ok"]
    assert {m["dataset"] for m in meta["metrics"]} == {"Set5", "Set14", "B100"}


@pytest.mark.data
@pytest.mark.parametrize("scale", [2, 4])
def test_default_beats_the_fast_espcn_on_set5(data_root, scale: int) -> None:  # type: ignore[no-untyped-def]
    from sisr.evaluate import evaluate, load_pairs

    pairs = load_pairs(data_root / "benchmarks" / "Set5", scale)
    new = evaluate(f"default-x{scale}", pairs, scale, device="cpu", ssim=False)
    old = evaluate(f"fast-x{scale}", pairs, scale, device="cpu", ssim=False)
    assert new.psnr_y >= old.psnr_y + 0.5, (new.psnr_y, old.psnr_y)


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
