"""``--runtime onnxruntime -n FILE.onnx`` on files sisr did not write as they came:
external data outside the model's folder, graphs onnxruntime refuses or fails on."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

onnx = pytest.importorskip("onnx", reason="needs pip install 'sisr[onnx]'")
pytest.importorskip("onnxruntime", reason="needs pip install 'sisr[onnx]'")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sisr.cli.main import main  # noqa: E402
from sisr.export import ExportError  # noqa: E402
from sisr.export.ort import OnnxNet, load_onnx  # noqa: E402
from sisr.infer import Upscaler  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "fast.onnx"
    assert main(["export", "-n", "fast", "-o", str(path)]) == 0
    return path


def _image(path: Path, h: int = 24, w: int = 30) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _externalise(src: Path, dst: Path, location: str, data_file: Path) -> None:
    """Save ``src`` as ``dst`` with its largest initializer moved to external data named
    ``location``, whose bytes are written to ``data_file`` (wherever that is)."""
    proto = onnx.load(str(src))
    init = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
    data_file.write_bytes(init.raw_data)
    init.ClearField("raw_data")
    init.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "")):
        entry = init.external_data.add()
        entry.key, entry.value = key, value or str(data_file.stat().st_size)
    dst.write_bytes(proto.SerializeToString())


def _upscale(model: Path, image: Path, out: Path) -> int:
    runtime = ["--runtime", "onnxruntime", "-n", str(model)]
    return main(["upscale", "-q", "-i", str(image), "-o", str(out), *runtime])


def test_external_data_in_the_working_folder_is_not_used(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The model names ``w.bin``; there is none beside it, but there is one in the current
    folder: onnxruntime, given the model as bytes, would read that one."""
    models, cwd = tmp_path / "models", tmp_path / "cwd"
    models.mkdir()
    cwd.mkdir()
    model = models / "m.onnx"
    _externalise(exported, model, "w.bin", cwd / "w.bin")
    monkeypatch.chdir(cwd)
    assert _upscale(model, _image(tmp_path / "in.png"), tmp_path / "out.png") == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and str(model) in err[0] and "'w.bin'" in err[0], err
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(
    "where",
    ["parent", "absolute", "subfolder", "symlink-out", "symlink-beside", "folder", "missing"],
)
def test_external_data_must_be_a_plain_file_beside_the_model(
    exported: Path, tmp_path: Path, where: str
) -> None:
    models = tmp_path / "models"
    (models / "sub").mkdir(parents=True)
    outside = tmp_path / "outside.bin"
    location, data_file = {
        "parent": ("../outside.bin", outside),
        "absolute": (str(outside), outside),
        "subfolder": ("sub/w.bin", models / "sub" / "w.bin"),
        "symlink-out": ("w.bin", outside),
        "symlink-beside": ("w.bin", models / "real.bin"),
        "folder": ("sub", outside),
        "missing": ("gone.bin", outside),
    }[where]
    model = models / "m.onnx"
    _externalise(exported, model, location, data_file)
    if where.startswith("symlink"):
        (models / "w.bin").symlink_to(data_file)
    with pytest.raises(ExportError) as info:
        load_onnx(model)
    msg = str(info.value)
    assert "\n" not in msg and str(model) in msg and repr(location) in msg, msg
    assert "beside the model" in msg or "no such file" in msg


def test_external_data_beside_the_model_works(exported: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    _externalise(exported, model, "m.weights", tmp_path / "m.weights")
    img = np.asarray(Image.open(_image(tmp_path / "in.png")))
    ref = Upscaler(load_onnx(exported), tile=0, channels_last=False).upscale(img)
    got = Upscaler(load_onnx(model), tile=0, channels_last=False).upscale(img)
    assert np.array_equal(ref, got)


def test_external_data_must_match_the_tensor(exported: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    _externalise(exported, model, "w.bin", tmp_path / "w.bin")
    with open(tmp_path / "w.bin", "ab") as f:
        f.write(b"\0" * 4)  # length still names the old size, so change it too
    proto = onnx.load(str(model), load_external_data=False)
    for t in proto.graph.initializer:
        for e in t.external_data:
            if e.key == "length":
                e.value = str(int(e.value) + 4)
    model.write_bytes(proto.SerializeToString())
    with pytest.raises(ExportError, match=r"m\.onnx.*'w\.bin'"):
        load_onnx(model)


def test_in_memory_model_with_external_data_is_refused(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes have no folder: onnxruntime would resolve the reference against the current
    working folder."""
    model = tmp_path / "m.onnx"
    _externalise(exported, model, "w.bin", tmp_path / "w.bin")
    monkeypatch.chdir(tmp_path)
    net = load_onnx(exported)
    with pytest.raises(ExportError, match="external data"):
        OnnxNet(model.read_bytes(), info=net.info(), scale=net.scale, arch_id="espcn")


def _with_node(src: Path, dst: Path, make: object) -> None:
    proto = onnx.load(str(src))
    make(proto.graph)  # type: ignore[operator]
    dst.write_bytes(proto.SerializeToString())


def test_model_onnxruntime_refuses_names_the_file(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    def unknown_op(graph: object) -> None:
        graph.node[0].op_type = "NoSuchOperator"  # type: ignore[attr-defined]

    model = tmp_path / "refused.onnx"
    _with_node(exported, model, unknown_op)
    assert _upscale(model, _image(tmp_path / "in.png"), tmp_path / "o.png") == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and str(model) in err[0] and "onnxruntime" in err[0], err


def test_model_onnxruntime_fails_on_names_the_file(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Loads fine, fails when run (a reshape to a size no image has)."""

    def bad_reshape(graph: object) -> None:
        out = graph.output[0].name  # type: ignore[attr-defined]
        shape = numpy_helper.from_array(np.array([5, 7, 11, 13], np.int64), "bad_shape")
        graph.initializer.append(shape)  # type: ignore[attr-defined]
        for node in graph.node:  # type: ignore[attr-defined]
            for i, name in enumerate(node.output):
                if name == out:
                    node.output[i] = "pre_reshape"
        graph.node.append(helper.make_node("Reshape", ["pre_reshape", "bad_shape"], [out]))  # type: ignore[attr-defined]
        del graph.output[0].type.tensor_type.shape.dim[:]  # type: ignore[attr-defined]

    model = tmp_path / "fails.onnx"
    _with_node(exported, model, bad_reshape)
    assert _upscale(model, _image(tmp_path / "in.png"), tmp_path / "o.png") == 1
    err = capsys.readouterr().err
    failed = [ln for ln in err.splitlines() if ln.startswith("failed:")]
    assert len(failed) == 1 and str(model) in failed[0] and "Traceback" not in err, err


def test_session_sources_are_guarded() -> None:
    """Every onnxruntime session sisr makes goes through the guarded constructor, so no
    path or bytes reach onnxruntime unchecked."""
    import sisr.export as pkg

    root = Path(pkg.__file__).parent
    direct = [
        p.name
        for p in root.glob("*.py")
        if "InferenceSession(" in p.read_text() and p.name != "ort_session.py"
    ]
    assert direct == []
    assert os.path.isfile(root / "ort_session.py")
