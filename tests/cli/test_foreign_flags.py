"""--padding and --color-space: what a foreign file's tensors cannot tell, given to
``sisr upscale``, ``sisr eval``, ``sisr convert`` and ``sisr.load`` (issue 19, item 1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sisr
from sisr.archs import build
from sisr.cli.main import main
from sisr.errors import ConfigError
from sisr.hub import load_model, read_metadata

NHATTHANH = ("patch_extraction", "nonlinear_map", "recon")  # Nhat-Thanh/SRCNN-Pytorch names


def _srcnn_pth(
    tmp_path: Path, names: tuple[str, ...], **kw: object
) -> tuple[Path, torch.nn.Module]:
    """A small SRCNN saved as a foreign state dict under ``names`` (its scale not stored)."""
    torch.manual_seed(0)
    model = build("srcnn", 2, features=(8, 4), **kw).eval()
    sd = model.state_dict()
    path = tmp_path / "srcnn.pth"
    torch.save(
        {
            f"{n}.{p}": sd[f"body.{2 * i}.{p}"]
            for i, n in enumerate(names)
            for p in ("weight", "bias")
        },
        path,
    )
    return path, model


def test_convert_takes_the_padding_and_colour_flags(tmp_path: Path) -> None:
    src, _ = _srcnn_pth(tmp_path, ("a", "b", "c"))  # names new to sisr: by shape
    dst = tmp_path / "out.safetensors"
    assert main(["convert", str(src), str(dst), "--scale", "2"]) == 0
    meta = read_metadata(dst)
    assert "padding" not in meta["hparams"] and meta["hparams"]["color_space"] == "rgb"
    assumed = " ".join(meta["extra"]["detected"]["assumed"])
    assert "--padding same" in assumed and "--padding valid" in assumed
    argv = ["convert", str(src), str(dst), "--scale", "2", "--padding", "valid"]
    assert main([*argv, "--color-space", "ycbcr"]) == 0
    meta = read_metadata(dst)
    assert meta["hparams"]["padding"] == "valid" and meta["hparams"]["color_space"] == "ycbcr"
    assert "'valid' from --padding" in " ".join(meta["extra"]["detected"]["assumed"])


def test_convert_nhatthanh_layout_is_valid_unless_told(tmp_path: Path) -> None:
    src, _ = _srcnn_pth(tmp_path, NHATTHANH, color_space="ycbcr")
    dst = tmp_path / "out.safetensors"
    assert main(["convert", str(src), str(dst), "--scale", "3"]) == 0
    assert read_metadata(dst)["hparams"]["padding"] == "valid"
    assert main(["convert", str(src), str(dst), "--scale", "3", "--padding", "same"]) == 0
    assert "padding" not in read_metadata(dst)["hparams"]


def test_convert_with_arch_turns_the_flags_into_hparams(tmp_path: Path) -> None:
    src, _ = _srcnn_pth(tmp_path, ("body.0", "body.2", "body.4"))
    dst = tmp_path / "out.safetensors"
    argv = ["convert", str(src), str(dst), "--arch", "srcnn", "--scale", "2"]
    assert main([*argv, "--set", "features=[8,4]", "--padding", "valid"]) == 0
    assert read_metadata(dst)["hparams"]["padding"] == "valid"


def test_a_flag_that_does_not_apply_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, _ = _srcnn_pth(tmp_path, ("a", "b", "c"))
    dst = tmp_path / "out.safetensors"
    assert main(["convert", str(src), str(dst), "--scale", "2", "--color-space", "y"]) == 2
    err = capsys.readouterr().err
    assert "--color-space y does not apply" in err and "--color-space rgb or" in err
    assert not dst.exists()
    assert main(["convert", str(src), str(dst)]) == 2  # no scale: the message lists the flags
    err = capsys.readouterr().err
    assert "-s 2, -s 3, -s 4" in err and "--padding same|valid" in err


def test_upscale_with_padding_valid(tmp_path: Path) -> None:
    src, _ = _srcnn_pth(tmp_path, ("a", "b", "c"))
    img = tmp_path / "in.png"
    rgb = (np.random.default_rng(0).random((12, 10, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(img)
    out = tmp_path / "out.png"
    argv = ["upscale", "-i", str(img), "-o", str(out), "-n", str(src), "-s", "2", "-q"]
    assert main([*argv, "--padding", "valid", "-t", "0"]) == 0
    got = np.asarray(Image.open(out))
    valid = load_model(src, scale=2, padding="valid")
    assert valid.hparams["padding"] == "valid"
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        want = valid(x).clamp(0, 1)[0].permute(1, 2, 0).mul(255).round().byte().numpy()
    assert got.shape == (24, 20, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_python_api_takes_the_hints(tmp_path: Path) -> None:
    src, _ = _srcnn_pth(tmp_path, ("a", "b", "c"))
    up = sisr.load(str(src), scale=2, padding="valid", color_space="rgb", device="cpu")
    assert up.model.hparams["padding"] == "valid"
    with pytest.raises(ConfigError, match="--padding must be one of"):
        sisr.load(str(src), scale=2, padding="reflect", device="cpu")


@pytest.mark.data
def test_eval_with_padding_valid_at_two_scales(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, _ = _srcnn_pth(tmp_path, ("a", "b", "c"))
    argv = ["eval", "--model", str(src), "--data", str(data_root / "benchmarks" / "Set5")]
    argv += ["--scale", "2", "3", "--limit", "1", "--no-ssim", "--quiet", "--padding", "valid"]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "x2" in table and "x3" in table
