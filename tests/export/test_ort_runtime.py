"""``sisr upscale --runtime onnxruntime``: the same tiling, alpha, 16-bit and batch path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnx", reason="needs pip install 'sisr[onnx]'")
pytest.importorskip("onnxruntime", reason="needs pip install 'sisr[onnx]'")

from sisr.cli.main import main
from sisr.errors import SisrError
from sisr.export.ort import OnnxNet, load_onnx
from sisr.infer import Upscaler


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(x / 5.0), np.cos(y / 7.0), np.sin((x + y) / 9.0)], -1)
    return np.clip((base + 1) * 110 + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def net() -> OnnxNet:
    return load_onnx("default")


def test_tiled_equals_untiled(net: OnnxNet) -> None:
    tile = net.info().receptive_radius + 8  # tiles may not be smaller than the radius
    img = _photo(2 * tile + 7, 3 * tile + 5)
    whole = Upscaler(net, tile=0, channels_last=False).upscale(img)
    tiled = Upscaler(net, tile=tile, batch=3, channels_last=False).upscale(img)
    assert np.array_equal(whole, tiled)


def test_matches_pytorch_within_one_level(net: OnnxNet) -> None:
    import sisr

    img = _photo(40, 52, seed=1)
    ours = Upscaler(net, tile=0, channels_last=False).upscale(img).astype(int)
    ref = sisr.load("default", device="cpu", progress=False).upscale(img).astype(int)
    assert np.abs(ours - ref).max() <= 1
    assert (ours != ref).mean() <= 1e-3


def test_onnx_file_through_the_cli_keeps_alpha_and_16_bit(tmp_path: Path) -> None:
    model = tmp_path / "d.onnx"
    assert main(["export", "-o", str(model)]) == 0
    src = tmp_path / "in"
    src.mkdir()
    rgba = np.dstack([_photo(60, 68), np.linspace(0, 255, 60 * 68).reshape(60, 68)]).astype(
        np.uint8
    )
    Image.fromarray(rgba, "RGBA").save(src / "a.png")
    gray16 = (np.linspace(0, 65535, 56 * 62).reshape(56, 62)).astype(np.uint16)
    Image.fromarray(gray16).save(src / "g.png")
    for runtime, out in (("onnxruntime", "ort"), ("torch", "pt")):
        args = ["upscale", "-i", str(src), "-o", str(tmp_path / out), "-q", "-t", "40"]
        assert (
            main([*args, "--runtime", runtime, "-n", str(model) if out == "ort" else "default"])
            == 0
        )
    a_ort = np.asarray(Image.open(tmp_path / "ort" / "a.png"))
    a_pt = np.asarray(Image.open(tmp_path / "pt" / "a.png"))
    assert a_ort.shape == (120, 136, 4)
    assert np.array_equal(a_ort[..., 3], a_pt[..., 3])  # bicubic alpha, not the network
    assert np.abs(a_ort.astype(int) - a_pt.astype(int)).max() <= 1
    g_ort = Image.open(tmp_path / "ort" / "g.png")
    assert g_ort.mode.startswith("I") and np.asarray(g_ort).max() > 255  # still 16-bit


def test_bad_onnx_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(SisrError, match=r"bad\.onnx"):
        load_onnx(bad)
    assert (
        main(
            [
                "upscale",
                "-i",
                str(bad),
                "-o",
                str(tmp_path / "o.png"),
                "--runtime",
                "onnxruntime",
                "--precision",
                "bf16",
            ]
        )
        == 2
    )
