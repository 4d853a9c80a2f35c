"""TorchScript and torch.export (.pt2) exports, and the ``sisr export`` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sisr.archs import PRESETS
from sisr.cli.main import main
from sisr.export import ExportError, export_program, export_torchscript, load_for_export
from sisr.export.torch_export import META_FILE
from sisr.hub import names


def onnx_props(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_torchscript_runs_other_sizes_and_keeps_metadata(tmp_path: Path) -> None:
    model, meta = load_for_export("default")
    path = tmp_path / "m.pt"
    export_torchscript(model, path, meta=meta)
    extra = {META_FILE: ""}
    loaded = torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra[META_FILE])["scale"] == 2
    x = torch.rand(2, 3, 17, 23)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)


def test_exported_program_has_symbolic_size(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = PRESETS["span-t"](scale=2).eval()  # re-parameterised before export
    path = tmp_path / "m.pt2"
    export_program(model, path)
    extra = {META_FILE: ""}
    program = torch.export.load(str(path), extra_files=extra)
    assert json.loads(extra[META_FILE])["arch"] == "span"
    x = torch.rand(3, 3, 19, 26)
    with torch.no_grad():
        assert torch.allclose(program.module()(x), model(x), atol=1e-4)


def test_fixed_size_networks_say_why(tmp_path: Path) -> None:
    model = PRESETS["vdsr"](scale=2).eval()
    with pytest.raises(ExportError, match=r"bicubic.*--static"):
        export_torchscript(model, tmp_path / "v.pt")
    with pytest.raises(ExportError, match=r"bicubic.*--static"):
        export_program(model, tmp_path / "v.pt2")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_cli_export_formats_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("onnx", reason="needs pip install 'sisr[onnx]'")
    pytest.importorskip("onnxruntime", reason="needs pip install 'sisr[onnx]'")
    # -s picks the scale variant of a family name, as `sisr upscale -s` does
    family, scale = next(
        (w.name.rsplit("-x", 1)[0], w.scale)
        for w in names.WEIGHTS.values()
        if w.scale != 2 and (p := names.shipped_path(w)) is not None and p.is_file()
    )
    out = tmp_path / "x.onnx"
    assert main(["export", "-n", family, "-s", str(scale), "-o", str(out)]) == 0
    assert json.loads(onnx_props(out)["sisr.scale"]) == scale
    assert main(["export", "-o", str(tmp_path / "d.pt")]) == 0
    assert main(["export", "--format", "exported", "-o", str(tmp_path / "d.bin")]) == 0
    assert main(["export", "-n", "bicubic-x2", "-o", str(tmp_path / "b.onnx")]) == 2
    err = capsys.readouterr().err
    assert "cannot be exported to ONNX with a dynamic input size" in err
    assert "--static" in err and not (tmp_path / "b.onnx").exists()
    fixed = ["export", "-n", "bicubic-x2", "--static", "8", "8", "-o", str(tmp_path / "b.onnx")]
    assert main(fixed) == 0
    assert main(["export", "--fp16", "-o", str(tmp_path / "d.pt")]) == 2
