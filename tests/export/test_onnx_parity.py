"""ONNX export parity with PyTorch on real images (Set5), for every preset of the zoo and
every shipped weights file, plus OpenCV's dnn reading the shipped default."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx", reason="ONNX export tests need pip install 'sisr[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="needs pip install 'sisr[onnx]'")

from sisr.archs import PRESETS  # noqa: E402
from sisr.errors import ConfigError  # noqa: E402
from sisr.export import ExportError, export_onnx, load_for_export, onnx_properties  # noqa: E402
from sisr.hub import names  # noqa: E402

FP32_TOL = 1e-4
# After quantisation to 8 bits: at most 1 level, on at most this share of the values.
LEVEL_SHARE = 1e-3
# Presets whose bicubic pre-upsampling fixes the graph to one input size.
FIXED_SIZE = {"bicubic", "srcnn", "srcnn-915", "vdsr"}
SHIPPED = sorted(
    n for n, w in names.WEIGHTS.items() if (p := names.shipped_path(w)) is not None and p.is_file()
)


def _build(preset: str) -> torch.nn.Module:
    torch.manual_seed(0)
    for scale in (2, 4, 3):
        try:
            return PRESETS[preset](scale=scale).eval()
        except (ConfigError, ValueError):
            continue
    raise AssertionError(f"{preset}: no standard scale builds")


@pytest.fixture(scope="module")
def set5_crops(data_root: Path) -> torch.Tensor:
    """The centre 40x40 of each Set5 image (real content), as one (5, 3, 40, 40) batch."""
    from sisr.evaluate.runner import read_images

    crops = []
    for _, hr in read_images(data_root / "benchmarks" / "Set5"):
        h, w = hr.shape[1:]
        crops.append(hr[:, h // 2 - 20 : h // 2 + 20, w // 2 - 20 : w // 2 + 20])
    return torch.stack(crops).float() / 255


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _assert_parity(got: np.ndarray, ref: np.ndarray) -> None:
    diff = float(np.abs(got - ref).max())
    assert diff <= FP32_TOL, f"max abs diff {diff:.3g} > {FP32_TOL}"
    q_got = np.round(np.clip(got, 0, 1) * 255).astype(np.int16)
    q_ref = np.round(np.clip(ref, 0, 1) * 255).astype(np.int16)
    levels = np.abs(q_got - q_ref)
    assert levels.max() <= 1, f"8-bit outputs differ by {levels.max()} levels"
    assert (levels > 0).mean() <= LEVEL_SHARE, f"{(levels > 0).mean():.2%} of values differ"


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_parity_on_set5(preset: str, set5_crops: torch.Tensor, tmp_path: Path) -> None:
    model = _build(preset)
    path = tmp_path / f"{preset}.onnx"
    x = set5_crops
    verify = True
    if sum(p.numel() for p in model.parameters()) > 5_000_000:
        # EDSR (43M) and RRDBNet (17M): two real 20x20 crops keep the test to seconds;
        # the export's own probe would run the network twice more, the test checks anyway.
        x, verify = x[:2, :, 10:30, 10:30], False
    static = None
    if preset in FIXED_SIZE:
        # The dynamic export must refuse and say why; a fixed-size export must then work.
        with pytest.raises(ExportError, match=r"dynamic input size.*--static"):
            export_onnx(model, path)
        assert not path.exists()
        static = tuple(x.shape[2:])
    export_onnx(model, path, static=static, verify=verify)
    shuffles = [n for n in onnx.load(str(path)).graph.node if n.op_type == "DepthToSpace"]
    # CRD shuffles are misread by OpenCV once dnn_superres is loaded (see onnx_rewrite)
    assert all(a.s == b"DCR" for n in shuffles for a in n.attribute if a.name == "mode")
    with torch.no_grad():
        ref = model(x).numpy()
    if static is None:
        got = _session(path).run(None, {"input": x.numpy()})[0]
    else:  # fixed graphs take one image at a time
        sess = _session(path)
        got = np.concatenate(
            [sess.run(None, {"input": x[i : i + 1].numpy()})[0] for i in range(len(x))]
        )
    assert got.shape == ref.shape
    _assert_parity(got, ref)


@pytest.fixture(scope="module")
def set5_lr(data_root: Path) -> dict[int, list[torch.Tensor]]:
    from sisr.evaluate.runner import make_pairs, read_images

    images = read_images(data_root / "benchmarks" / "Set5")
    return {s: [p.lr.float()[None] / 255 for p in make_pairs(images, s)] for s in (2, 3, 4)}


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_parity_on_set5(name: str, set5_lr: dict, tmp_path: Path) -> None:
    model, meta = load_for_export(name)
    path = tmp_path / f"{name}.onnx"
    # residual dense FCNs add the bicubic-upscaled input: one graph per input size
    fixed = meta["arch"] == "dense-fcn" and bool(meta["hparams"].get("residual"))
    if fixed:
        with pytest.raises(ExportError, match=r"dynamic input size.*residual.*--static"):
            export_onnx(model, path, meta=meta)
    else:
        export_onnx(model, path, meta=meta)
    sess = None if fixed else _session(path)
    for lr in set5_lr[meta["scale"]][: 2 if fixed else None]:  # whole LR images
        if fixed:
            export_onnx(model, path, meta=meta, static=tuple(lr.shape[2:]))
            sess = _session(path)
        with torch.no_grad():
            ref = model(lr).numpy()
        assert sess is not None
        _assert_parity(sess.run(None, {"input": lr.numpy()})[0], ref)


def test_properties_carry_the_weights_metadata(tmp_path: Path) -> None:
    model, meta = load_for_export("default")
    path = tmp_path / "default.onnx"
    export_onnx(model, path, meta=meta)
    proto = onnx.load(str(path))
    props = onnx_properties(proto)
    assert json.loads(props["sisr.arch"]) == model.arch_id
    assert json.loads(props["sisr.scale"]) == model.scale == 2
    assert json.loads(props["sisr.hparams"]) == model.hparams
    metrics = json.loads(props["sisr.metrics"])
    # the measured PSNR travels along (key names as the training run wrote them)
    assert any(k.startswith("psnr") for m in metrics for k in m), metrics
    assert json.loads(props["sisr.recipe"]) is not None
    info = json.loads(props["sisr.info"])
    assert info["receptive_radius"] == model.info().receptive_radius
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["output"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_opset_static_and_fp16(tmp_path: Path) -> None:
    model, meta = load_for_export("default")
    export_onnx(model, tmp_path / "a.onnx", meta=meta, opset=13, static=(20, 24))
    proto = onnx.load(str(tmp_path / "a.onnx"))
    assert proto.opset_import[0].version == 13
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 3, 20, 24]
    with pytest.raises(ExportError, match="opset"):
        export_onnx(model, tmp_path / "b.onnx", opset=5)
    report = export_onnx(model, tmp_path / "h.onnx", meta=meta, fp16=True)
    size32 = (tmp_path / "a.onnx").stat().st_size
    assert (tmp_path / "h.onnx").stat().st_size < 0.7 * size32
    assert report["max_abs_diff"] < 2e-2
    proto = onnx.load(str(tmp_path / "h.onnx"))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


@pytest.mark.data
@pytest.mark.parametrize("name", ["default-x2", "default-x3", "default-x4"])
def test_opencv_dnn_reads_the_shipped_default(name: str, set5_lr: dict, tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2", reason="needs opencv (pip install 'sisr[bench]')")
    model, meta = load_for_export(name)
    path = tmp_path / "default.onnx"
    export_onnx(model, path, meta=meta)
    net = cv2.dnn.readNetFromONNX(str(path))
    for lr in set5_lr[meta["scale"]]:  # all five sizes through the same dynamic graph
        net.setInput(lr.numpy())
        got = net.forward()
        with torch.no_grad():
            ref = model(lr).numpy()
        _assert_parity(got, ref)


# Run in a child process: dnn_superres's layer registration is global and permanent.
_AFTER_DNN_SUPERRES = """
import json, sys
import cv2, numpy as np
cv2.dnn_superres.DnnSuperResImpl_create()  # registers its own 'DepthToSpace' layer
x = np.load(sys.argv[1])
out = {}
for key, path in (("ours", sys.argv[2]), ("crd", sys.argv[3])):
    net = cv2.dnn.readNetFromONNX(path)
    net.setInput(x)
    out[key] = net.forward().tolist()
print(json.dumps(out))
"""


@pytest.mark.data
def test_opencv_dnn_after_dnn_superres(set5_lr: dict, tmp_path: Path) -> None:
    """Once a program has created a DnnSuperResImpl, OpenCV reads every ONNX DepthToSpace
    with dnn_superres's layer; our DCR rewrite must still give PyTorch's output, where the
    tracer's plain CRD graph (the control) comes out scrambled."""
    import subprocess
    import sys

    cv2 = pytest.importorskip("cv2", reason="needs opencv (pip install 'sisr[bench]')")
    if not hasattr(cv2, "dnn_superres"):
        pytest.skip("this OpenCV build has no dnn_superres (opencv-contrib) module")
    from sisr.export.onnx_export import traced_onnx_bytes
    from sisr.export.prepare import deployable

    model, meta = load_for_export("default-x4")
    ours, crd = tmp_path / "ours.onnx", tmp_path / "crd.onnx"
    report = export_onnx(model, ours, meta=meta)
    assert report["pixel_shuffle"] == {"dcr": 1, "conv_transpose": 0}
    crd.write_bytes(traced_onnx_bytes(deployable(model)))
    lr = set5_lr[4][2]  # butterfly, 64x64
    np.save(tmp_path / "x.npy", lr.numpy())
    proc = subprocess.run(
        [sys.executable, "-c", _AFTER_DNN_SUPERRES, str(tmp_path / "x.npy"), str(ours), str(crd)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    with torch.no_grad():
        ref = model(lr).numpy()
    control = float(np.abs(np.array(out["crd"], dtype=np.float32) - ref).max())
    _assert_parity(np.array(out["ours"], dtype=np.float32), ref)
    if control <= FP32_TOL:
        pytest.skip("this OpenCV no longer overrides DepthToSpace: the hazard is gone")
