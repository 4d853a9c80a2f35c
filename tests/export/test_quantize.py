"""int8 quantisation with per-layer exclusions (sisr.export.quantize): the greedy choice as
a pure function, and a real run on the shipped default-x2 with training patches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX export tests need pip install 'sisr[onnx]'")
pytest.importorskip("onnxruntime", reason="needs pip install 'sisr[onnx]'")

from sisr.export import export_onnx, load_for_export  # noqa: E402
from sisr.export.prepare import ExportError  # noqa: E402
from sisr.export.quantize import (  # noqa: E402
    Patch,
    greedy_exclusions,
    pooled_psnr_y,
    quantize_int8,
    training_patches,
)


def test_greedy_excludes_the_most_sensitive_first() -> None:
    sens = {"a": 0.01, "b": 3.0, "c": 0.2, "d": 0.0}
    calls: list[list[str]] = []

    def loss_with(excluded: list[str]) -> float:  # additive toy losses
        calls.append(list(excluded))
        return sum(v for k, v in sens.items() if k not in excluded)

    excluded, loss = greedy_exclusions(sens, loss_with, budget_db=0.05)
    assert excluded == ["b", "c"]
    assert loss == pytest.approx(0.01)
    assert calls == [[], ["b"], ["b", "c"]]


def test_greedy_gives_up_with_everything_excluded() -> None:
    sens = {"a": 1.0, "b": 2.0}
    excluded, loss = greedy_exclusions(sens, lambda ex: 5.0, budget_db=0.05)
    assert sorted(excluded) == ["a", "b"] and loss == 0.0


def test_pooled_psnr_of_exact_and_shifted_outputs() -> None:
    hr = np.full((3, 8, 8), 100, np.uint8)
    p = Patch(lr=np.zeros((1, 3, 4, 4), np.float32), hr=hr)
    exact = hr[None].astype(np.float32) / 255
    assert pooled_psnr_y([exact], [p], border=0) == float("inf")
    off = exact + 1 / 255  # one level on every channel
    # Y = 16 + (65.481 + 128.553 + 24.966) / 255 * value: one RGB level moves Y by 0.8588
    expected = 10 * np.log10(255**2 / (219 / 255) ** 2)
    assert pooled_psnr_y([off], [p], border=2) == pytest.approx(expected, abs=1e-6)


def test_training_patches_refuse_images_too_small(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (20, 20)).save(tmp_path / "small.png")
    with pytest.raises(ExportError, match="px on each side"):
        training_patches([tmp_path / "small.png"], scale=2, n=2, size=16)
    with pytest.raises(ExportError, match="training images"):
        training_patches([], scale=2, n=2)


@pytest.mark.data
@pytest.mark.slow
def test_default_x2_int8_keeps_the_budget(data_root: Path, tmp_path: Path) -> None:
    # default-x2 (SPAN-t): most convs quantise within the budget, a few cannot. (The
    # GPU-trained fast-x2 ESPCN cannot: each of its 3 convs alone costs > 0.03 dB.)
    model, meta = load_for_export("default-x2")
    fp32 = tmp_path / "default.onnx"
    export_onnx(model, fp32, meta=meta)
    train = data_root / "train"
    calib = training_patches(sorted((train / "T91").glob("*.png")), 2, 16, size=32, seed=0)
    val = training_patches(sorted((train / "BSD200").glob("*.png"))[:40], 2, 12, seed=1)
    p = val[0]
    assert p.lr.shape == (1, 3, 48, 48) and p.hr.shape == (3, 96, 96)
    report = quantize_int8(fp32, tmp_path / "int8.onnx", calib=calib, val=val, scale=2)
    convs = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "Conv"]
    assert sorted(report.quantized + report.excluded) == sorted(convs)
    assert report.quantized and report.excluded, report
    assert 0 <= report.loss_db <= report.budget_db
    assert len(report.sensitivity_db) == len(convs)
    # the written file is the chosen model: its QDQ weights sit on the quantised convs only
    # and its validation PSNR is the reported one
    q = onnx.load(str(tmp_path / "int8.onnx"))
    dq_out = {o for n in q.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    fed = {n.name for n in q.graph.node if n.op_type == "Conv" and n.input[1] in dq_out}
    assert fed == set(report.quantized)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "int8.onnx"), providers=["CPUExecutionProvider"])
    outs = [sess.run(None, {"input": v.lr})[0] for v in val]
    assert pooled_psnr_y(outs, val, border=2) == pytest.approx(report.val_psnr_int8, abs=1e-9)


def test_export_int8_through_the_cli(tmp_path: Path) -> None:
    """``sisr export --int8 DIR`` writes a QDQ file with its choice as a property, and
    ``sisr upscale --runtime onnxruntime`` runs it; bad uses exit 2 and write nothing."""
    import json

    from PIL import Image

    from sisr.cli.main import main

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:96]
    train = tmp_path / "train"
    train.mkdir()
    for i in range(4):  # smooth photo-like content with some noise
        base = np.stack([np.sin(x / (4 + i)), np.cos(y / 6.0), np.sin((x + y) / 9.0)], -1)
        img = np.clip((base + 1) * 110 + rng.normal(0, 6, base.shape), 0, 255)
        Image.fromarray(img.astype(np.uint8)).save(train / f"{i}.png")
    out = tmp_path / "default8.onnx"
    args = ["export", "-n", "default-x2", "-o", str(out), "--int8", str(train)]
    assert main([*args, "--int8-patches", "8"]) == 0
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    chosen = json.loads(props["sisr.int8"])
    assert chosen["quantized"] and chosen["loss_db"] <= chosen["budget_db"]
    assert json.loads(props["sisr.scale"]) == 2
    src = tmp_path / "in.png"
    Image.fromarray(np.asarray(Image.open(train / "0.png"))[:40, :30]).save(src)
    dst = tmp_path / "up.png"
    cmd = ["upscale", "-i", str(src), "-o", str(dst), "--runtime", "onnxruntime", "-n", str(out)]
    assert main(cmd) == 0
    assert Image.open(dst).size == (60, 80)
    bad = tmp_path / "bad.onnx"
    assert main(["export", "-n", "default-x2", "-o", str(bad), "--int8", str(tmp_path / "no")]) == 2
    assert main(["export", "-n", "default-x2", "-o", str(bad), "--int8", str(train), "--fp16"]) == 2
    assert not bad.exists()
