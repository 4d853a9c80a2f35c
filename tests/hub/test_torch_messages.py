"""Errors about torch files are sisr's own one-line messages: never torch's text, which
advises retrying with ``weights_only=False`` (running the file's code)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sisr.cli.main import main
from sisr.errors import WeightsError
from sisr.train.checkpoint import init_from, load_checkpoint

ADVICE = re.compile(r"weights_only|arbitrary code execution|trusted source", re.IGNORECASE)
RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "default_espcn_x2.yaml"


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


@pytest.fixture()
def refused_files(tmp_path: Path) -> dict[str, Path]:
    """Files torch.load(weights_only=True) refuses, each with its advice to disable it."""
    files = {
        "whole model": tmp_path / "whole.pth",
        "payload only": tmp_path / "payload.pth",
        "torchscript": tmp_path / "script.pt",
        "legacy whole model": tmp_path / "legacy.pth",
        "not torch": tmp_path / "text.pth",
    }
    torch.save(nn.Conv2d(3, 3, 3), files["whole model"])
    torch.save({"hook": _Payload(tmp_path / "pwned")}, files["payload only"])
    torch.jit.script(nn.Conv2d(3, 3, 3)).save(str(files["torchscript"]))
    torch.save(
        nn.Conv2d(3, 3, 3), files["legacy whole model"], _use_new_zipfile_serialization=False
    )
    files["not torch"].write_bytes(b"hello world\n" * 10)
    return files


def test_no_error_path_relays_torchs_weights_only_advice(
    refused_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sisr.io import write_uint8

    image = tmp_path / "in.png"
    write_uint8(image, np.zeros((8, 8, 3), dtype=np.uint8))
    for what, path in refused_files.items():
        for argv in (
            ["convert", str(path), str(tmp_path / "out.safetensors")],
            ["upscale", "-q", "-i", str(image), "-o", f"{tmp_path}/up/", "-n", str(path)],
            ["train", str(RECIPE), "--out", str(tmp_path / "run"), "--init-from", str(path)],
        ):
            assert main(argv) == 2, (what, argv[0])
            err = capsys.readouterr().err
            assert len(err.strip().splitlines()) == 1, (what, argv[0], err)
            assert str(path) in err and not ADVICE.search(err), (what, argv[0], err)
        for read in (load_checkpoint, lambda p: init_from(nn.Conv2d(3, 3, 3), p)):
            with pytest.raises(WeightsError) as info:
                read(path)
            assert not ADVICE.search(str(info.value)), (what, str(info.value))
    assert main(["models", "--scan", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert not ADVICE.search(out), out
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "run").exists()


def test_refusals_say_what_to_do_instead(refused_files: dict[str, Path]) -> None:
    with pytest.raises(WeightsError, match=r"whole\.pth: refused: .*Conv2d.*sisr convert"):
        load_checkpoint(refused_files["whole model"])
    with pytest.raises(WeightsError, match=r"script\.pt: this is a TorchScript program"):
        init_from(nn.Conv2d(3, 3, 3), refused_files["torchscript"])
