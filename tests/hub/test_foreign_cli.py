"""A foreign .pth given straight to the commands: upscale -n, eval --model, convert (no --arch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sisr.archs import build
from sisr.cli.main import main
from sisr.hub import load_model, read_metadata


def _compact_pth(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = build("compact", 2, num_feat=8, num_conv=2).eval()
    path = tmp_path / "realesr-tiny.pth"
    torch.save({"params": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    return path, model


def test_upscale_with_a_pth_file(tmp_path: Path) -> None:
    path, model = _compact_pth(tmp_path)
    img = tmp_path / "in.png"
    rgb = (np.random.default_rng(0).random((12, 10, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(img)
    out = tmp_path / "out.png"
    assert main(["upscale", "-i", str(img), "-o", str(out), "-n", str(path), "-q"]) == 0
    got = np.asarray(Image.open(out))
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        want = model(x).clamp(0, 1)[0].permute(1, 2, 0).mul(255).round().byte().numpy()
    assert got.shape == (24, 20, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_convert_without_arch_records_detection(tmp_path: Path) -> None:
    path, model = _compact_pth(tmp_path)
    dst = tmp_path / "out.safetensors"
    assert main(["convert", str(path), str(dst)]) == 0
    extra = read_metadata(dst)["extra"]
    assert extra["key_layout"] == "realesrgan" and extra["detected"]["arch"] == "compact"
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        assert torch.equal(load_model(dst)(x), model(x))


def test_convert_scale_free_file_needs_scale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = build("vdsr", 2, depth=3, features=4, bias=False)
    src = tmp_path / "vdsr.pth"
    torch.save(model.state_dict(), src)
    dst = tmp_path / "v.safetensors"
    assert main(["convert", str(src), str(dst)]) == 2
    assert "scale is not stored" in capsys.readouterr().err and not dst.exists()
    assert main(["convert", str(src), str(dst), "--scale", "3"]) == 0
    meta = read_metadata(dst)
    assert meta["scale"] == 3 and meta["hparams"]["bias"] is False
    assert meta["extra"]["detected"]["scale_from"] == "requested"


@pytest.mark.data
def test_eval_with_a_scale_free_pth(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    model = build("srcnn", 2, features=(4, 2), y_channel=True)
    src = tmp_path / "srcnn.pth"
    torch.save(
        {
            k.replace("body.0", "conv1").replace("body.2", "conv2").replace("body.4", "conv3"): v
            for k, v in model.state_dict().items()
        },
        src,
    )
    argv = ["eval", "--model", str(src), "--data", str(data_root / "benchmarks" / "Set5")]
    assert main([*argv, "--scale", "2", "3", "--limit", "1", "--no-ssim", "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "x2" in table and "x3" in table
