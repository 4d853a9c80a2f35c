"""The optional spandrel backend: architectures sisr lacks run through sisr's Upscaler.

Files are made from spandrel's own architecture classes (small configs, random weights).
Skips when spandrel is not installed (CI installs it with --no-deps, see .ci/run).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sisr.errors import WeightsError
from sisr.hub import foreign, load_model
from sisr.hub.foreign import FOREIGN_TILE_PAD, SpandrelModel
from sisr.infer import Upscaler

try:
    foreign._import_spandrel()  # with the torchvision stand-in where torchvision is absent
except ImportError:
    pytest.skip(
        "spandrel not installed (pip install --no-deps spandrel einops)", allow_module_level=True
    )

from spandrel.architectures.PLKSR import RealPLKSR
from spandrel.architectures.SwinIR import SwinIR


def _randomize(net: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return net.eval()


def _swinir(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    net = _randomize(
        SwinIR(
            img_size=16,
            embed_dim=12,
            depths=[1],
            num_heads=[2],
            window_size=4,
            upscale=2,
            upsampler="pixelshuffle",
        )
    )
    path = tmp_path / "swinir_tiny_x2.pth"
    torch.save({"params": net.state_dict()}, path)
    return path, net


def _image(h: int = 20, w: int = 18) -> np.ndarray:
    return (np.random.default_rng(1).random((h, w, 3)) * 255).astype(np.uint8)


def _direct(net: torch.nn.Module, img: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        y = net(x).clamp(0, 1)
    return (y[0].permute(1, 2, 0) * 255).round().byte().numpy()


def test_swinir_through_the_upscaler(tmp_path: Path) -> None:
    path, net = _swinir(tmp_path)
    model = load_model(path)
    assert isinstance(model, SpandrelModel) and model.architecture == "SwinIR" and model.scale == 2
    img = _image(70, 66)
    whole = Upscaler(model, device="cpu", tile=0).upscale(img)
    assert whole.shape == (140, 132, 3)
    assert np.abs(whole.astype(int) - _direct(net, img).astype(int)).max() <= 1
    # Tiled with the stated overlap (FOREIGN_TILE_PAD LR pixels): close, not bitwise.
    tiled = Upscaler(model, device="cpu", tile=FOREIGN_TILE_PAD).upscale(img)
    assert tiled.shape == whole.shape
    assert np.abs(tiled.astype(int) - whole.astype(int)).mean() < 1.0
    assert model.info().receptive_radius == FOREIGN_TILE_PAD


def test_realplksr_loads_and_runs(tmp_path: Path) -> None:
    net = _randomize(RealPLKSR(dim=8, n_blocks=2, upscaling_factor=3, kernel_size=7))
    path = tmp_path / "plksr.pth"
    torch.save(net.state_dict(), path)
    up = Upscaler.from_name(str(path), device="cpu", tile=0)
    img = _image(9, 7)
    out = up.upscale(img)
    assert out.shape == (27, 21, 3)
    assert np.abs(out.astype(int) - _direct(net, img).astype(int)).max() <= 1


def test_without_spandrel_the_message_says_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = _swinir(tmp_path)
    monkeypatch.setattr(foreign, "spandrel_available", lambda: False)
    with pytest.raises(
        WeightsError, match=r"this is SwinIR, which sisr does not implement.*pip install"
    ):
        load_model(path)


def test_convert_of_a_spandrel_only_file_says_so_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 19, item 5: not "architecture 'spandrel' is not registered" after the work."""
    from sisr.cli.main import main

    path, _ = _swinir(tmp_path)
    assert main(["convert", str(path), str(tmp_path / "out.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "this is SwinIR, which runs only through spandrel" in err
    assert f"sisr upscale -n {path}" in err and "not registered" not in err
    assert not (tmp_path / "out.safetensors").exists()


def test_spandrels_own_reason_is_quoted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = _swinir(tmp_path)

    class Refusing:
        def __init__(self, **kwargs: object) -> None:
            pass

        def load_from_state_dict(self, sd: object) -> object:
            raise ValueError("window size 4 does not divide img_size 15")

    spandrel = foreign._import_spandrel()
    monkeypatch.setattr(spandrel, "ModelLoader", Refusing)
    with pytest.raises(
        WeightsError,
        match=r"this is SwinIR; spandrel could not load it \(window size 4 does not divide",
    ):
        load_model(path)
