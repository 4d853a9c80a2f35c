"""``sisr upscale -n FILE`` on TorchScript (``.pt``) and ``torch.export`` (``.pt2``) files
from ``sisr export``; other such files are refused without running anything in them."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sisr.cli.main import main
from sisr.errors import SisrError


def _image(path: Path, h: int = 26, w: int = 34) -> Path:
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("graphs")
    out = {"pt": root / "fast.pt", "pt2": root / "fast.pt2", "ts": root / "fast.ts"}
    for path in out.values():
        assert main(["export", "-n", "fast", "-o", str(path)]) == 0
    return out


def _upscale(model: str | Path, image: Path, out: Path, *extra: str) -> int:
    return main(["upscale", "-q", "-i", str(image), "-o", str(out), "-n", str(model), *extra])


@pytest.mark.parametrize("kind", ["pt", "pt2", "ts"])
def test_exported_graph_loads_back_with_n(
    exports: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    img = _image(tmp_path / "in.png")
    assert _upscale("fast", img, tmp_path / "ref.png", "--precision", "fp32") == 0
    assert _upscale(exports[kind], img, tmp_path / "got.png", "-t", "16") == 0
    ref = np.asarray(Image.open(tmp_path / "ref.png")).astype(int)
    got = np.asarray(Image.open(tmp_path / "got.png")).astype(int)
    assert got.shape == ref.shape == (52, 68, 3)
    assert np.abs(got - ref).max() <= 1


def test_graph_model_carries_its_metadata(exports: dict[str, Path]) -> None:
    import sisr

    up = sisr.load(str(exports["pt2"]), device="cpu", progress=False)
    ref = sisr.load("fast", device="cpu", progress=False)
    assert up.scale == ref.scale
    assert up.info.receptive_radius == ref.info.receptive_radius
    assert (up.info.arch_id, up.info.size_multiple) == (ref.info.arch_id, ref.info.size_multiple)
    assert str(up.dtype) == "torch.float32"  # a float32 graph: no bf16/fp16 by "auto"
    with pytest.raises(SisrError, match=r"x2.*3"):
        sisr.load(str(exports["pt"]), scale=3, device="cpu", progress=False)


def _foreign_torchscript(path: Path) -> None:
    torch.jit.save(torch.jit.script(torch.nn.Conv2d(3, 12, 3, padding=1)), str(path))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script / save
def test_torchscript_without_sisr_metadata_is_refused_unloaded(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "other.pt"
    _foreign_torchscript(model)
    loads: list[object] = []
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: loads.append(a))
    assert _upscale(model, _image(tmp_path / "in.png"), tmp_path / "o.png") == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and str(model) in err[0] and "sisr export" in err[0], err
    assert "weights_only" not in err[0]
    assert loads == []  # TorchScript holds code: not loaded at all


def _rewrite(src: Path, dst: Path, change: dict[str, bytes | None]) -> None:
    """Copy the zip archive ``src`` to ``dst`` with entries replaced (None: removed)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            rel = item.filename.split("/", 1)[1]
            if rel in change:
                if change[rel] is not None:
                    zout.writestr(item.filename, change[rel])
            else:
                zout.writestr(item.filename, zin.read(item.filename))
        names = {n.split("/", 1)[1] for n in zin.namelist()}
        root = zin.namelist()[0].split("/", 1)[0]
        for rel, data in change.items():
            if rel not in names and data is not None:
                zout.writestr(f"{root}/{rel}", data)


class _Marker:
    """Unpickling this creates a folder: proof that a pickle ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (os.mkdir, (self.path,))


def test_pt2_without_sisr_metadata_is_refused(
    exports: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    model = tmp_path / "other.pt2"
    _rewrite(exports["pt2"], model, {"extra/sisr.json": None})
    assert _upscale(model, _image(tmp_path / "in.png"), tmp_path / "o.png") == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and str(model) in err[0] and "sisr export" in err[0], err


@pytest.mark.parametrize("where", ["weight", "sample_inputs", "opaque_constant"])
def test_pt2_pickles_never_run(exports: dict[str, Path], tmp_path: Path, where: str) -> None:
    """torch.export.load unpickles some payloads with weights_only=False (pickled weights
    and constants, opaque objects, a fallback for sample inputs): a .pt2 that would take
    one of those paths is refused before torch reads it, sisr metadata or not."""
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Marker(marker))
    with zipfile.ZipFile(exports["pt2"]) as z:
        root = z.namelist()[0].split("/", 1)[0]
        wcfg = json.loads(z.read(f"{root}/data/weights/model_weights_config.json"))
        ccfg = json.loads(z.read(f"{root}/data/constants/model_constants_config.json"))
    change: dict[str, bytes | None] = {}
    if where == "weight":
        _fqn, meta = next(iter(wcfg["config"].items()))
        meta["use_pickle"] = True
        change["data/weights/model_weights_config.json"] = json.dumps(wcfg).encode()
        change[f"data/weights/{meta['path_name']}"] = evil
    elif where == "sample_inputs":
        change["data/sample_inputs/model.pt"] = evil
    else:
        ccfg["config"]["evil"] = {
            "path_name": "opaque_obj_0",
            "is_param": False,
            "use_pickle": True,
            "tensor_meta": None,
        }
        change["data/constants/model_constants_config.json"] = json.dumps(ccfg).encode()
        change["data/constants/opaque_obj_0"] = evil
    model = tmp_path / "evil.pt2"
    _rewrite(exports["pt2"], model, change)
    with pytest.raises(SisrError, match=r"evil\.pt2"):
        import sisr

        sisr.load(str(model), device="cpu", progress=False)
    assert not marker.exists()


def test_pt2_with_native_code_is_refused(exports: dict[str, Path], tmp_path: Path) -> None:
    model = tmp_path / "aoti.pt2"
    _rewrite(exports["pt2"], model, {"data/aotinductor/model/model.so": b"\x7fELF"})
    with pytest.raises(SisrError, match=r"aoti\.pt2.*aotinductor"):
        import sisr

        sisr.load(str(model), device="cpu", progress=False)


def test_bad_sisr_metadata_is_one_line(exports: dict[str, Path], tmp_path: Path) -> None:
    model = tmp_path / "bad.pt2"
    meta = {"arch": "espcn", "scale": "two", "info": {}}
    _rewrite(exports["pt2"], model, {"extra/sisr.json": json.dumps(meta).encode()})
    with pytest.raises(SisrError, match=r"bad\.pt2") as info:
        import sisr

        sisr.load(str(model), device="cpu", progress=False)
    assert "\n" not in str(info.value)


def test_graph_files_are_not_exported_again(
    exports: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["export", "-n", str(exports["pt"]), "-o", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert str(exports["pt"]) in err and "already" in err
    img = _image(tmp_path / "in.png")
    args = ["--runtime", "onnxruntime"]
    assert _upscale(exports["pt2"], img, tmp_path / "o.png", *args) == 2


def test_plain_checkpoints_still_load(tmp_path: Path) -> None:
    """The check runs on every -n file: a torch.save state dict is not mistaken for a
    graph (it goes on to architecture detection)."""
    from sisr.export.graphs import graph_kind

    path = tmp_path / "ck.pt"
    torch.save({"w": torch.zeros(2)}, path)
    assert graph_kind(path) is None
    other = tmp_path / "x.pt"
    other.write_bytes(b"not a zip at all")
    assert graph_kind(other) is None
