"""int8 static quantisation of an exported ONNX graph (onnxruntime QDQ, per-channel int8
weights, uint8 activations, min/max calibration), keeping only the convolutions that the
image quality can afford.

Quantising every convolution of a super-resolution network costs far too much: measured on
Set5 x2, ESPCN loses 4.6 dB and SPAN-t 19 dB, almost all of it in a few layers (the first
convolution, whose input carries 8-bit pixels at a calibrated and therefore inexact scale,
SPAN's 1x1 over the concatenation of features of very different ranges, the last
convolution). So the layers are ranked by how much quantising each one alone costs, and the
most sensitive ones stay in float32 until the loss measured on held-out *training*
patches is inside the budget. The test images never steer the choice; the caller measures
the result on them.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sisr.export.prepare import INPUT_NAME, ExportError

# Loss allowed on the validation patches when choosing layers: below the 0.05 dB that the
# result is judged by on the test set, for the difference between the two image sets.
SELECT_BUDGET_DB = 0.03


@dataclass(frozen=True)
class Patch:
    """An LR patch (1, 3, h, w) float32 in [0, 1] and its HR (3, s*h, s*w) uint8."""

    lr: np.ndarray
    hr: np.ndarray


@dataclass
class Int8Report:
    """What :func:`quantize_int8` chose and measured (PSNR over the validation patches)."""

    quantized: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    sensitivity_db: dict[str, float] = field(default_factory=dict)
    val_psnr_fp32: float = float("nan")
    val_psnr_int8: float = float("nan")
    budget_db: float = SELECT_BUDGET_DB

    @property
    def loss_db(self) -> float:
        return self.val_psnr_fp32 - self.val_psnr_int8

    def to_dict(self) -> dict[str, Any]:
        return {
            "quantized": self.quantized,
            "excluded": self.excluded,
            "sensitivity_db": self.sensitivity_db,
            "val_psnr_fp32": self.val_psnr_fp32,
            "val_psnr_int8": self.val_psnr_int8,
            "loss_db": self.loss_db,
            "budget_db": self.budget_db,
        }


def training_patches(
    hr_files: Sequence[Path], scale: int, n: int, size: int = 48, seed: int = 0
) -> list[Patch]:
    """``n`` random LR/HR patch pairs: an HR crop of ``size * scale`` pixels and its MATLAB
    bicubic downscale (the degradation the networks were trained on), cycling through the
    files (those too small for a patch are left out)."""
    import torch

    from sisr.degrade import imresize_uint8
    from sisr.io import read_rgb_uint8

    if not hr_files:
        raise ExportError("int8 calibration needs training images; none were given")
    rng = np.random.default_rng(seed)
    hr_side = size * scale
    out: list[Patch] = []
    usable: set[int] = set()
    i = 0
    # decoded one at a time (a folder of 2K photos must not be held in memory at once)
    while len(out) < n:
        k = i % len(hr_files)
        if k == 0 and i > 0 and not usable:
            # T91 has images of 78 px: those only serve smaller patches
            raise ExportError(f"int8 calibration: no training image has {hr_side} px on each side")
        i += 1
        img = read_rgb_uint8(hr_files[k])
        h, w = img.shape[:2]
        if min(h, w) < hr_side:
            continue
        usable.add(k)
        y, x = int(rng.integers(0, h - hr_side + 1)), int(rng.integers(0, w - hr_side + 1))
        hr = np.ascontiguousarray(img[y : y + hr_side, x : x + hr_side].transpose(2, 0, 1))
        lr = imresize_uint8(torch.from_numpy(hr), scale=1 / scale).numpy()
        out.append(Patch(lr=(lr.astype(np.float32) / 255)[None], hr=hr))
    return out


def pooled_psnr_y(outputs: Sequence[np.ndarray], patches: Sequence[Patch], border: int) -> float:
    """Y-PSNR (BT.601, 8-bit rounding) of the network outputs (1, 3, H, W) in [0, 1]
    against the patches' HR, with the squared error pooled over all patches (steadier
    than averaging per-patch PSNRs on small patches)."""
    import torch

    from sisr.metrics import psnr_from_mse, rgb_to_y

    total, count = 0.0, 0
    for y, p in zip(outputs, patches, strict=True):
        sr = np.clip(np.round(y[0] * 255), 0, 255).astype(np.uint8)
        d = rgb_to_y(torch.from_numpy(sr)) - rgb_to_y(torch.from_numpy(p.hr))
        if border:
            d = d[..., border:-border, border:-border]
        total += float((d**2).sum())
        count += d.numel()
    return float(psnr_from_mse(torch.tensor(total / count)))


def greedy_exclusions(
    sensitivity: dict[str, float],
    loss_with: Callable[[list[str]], float],
    budget_db: float,
) -> tuple[list[str], float]:
    """Exclude layers from quantisation, most sensitive first, until ``loss_with(excluded)``
    (dB lost with all other layers quantised) is at most ``budget_db``. Returns the
    exclusions and the final loss; all layers excluded (loss 0) if the budget is never met.
    """
    order = sorted(sensitivity, key=lambda k: (-sensitivity[k], k))
    excluded: list[str] = []
    loss = loss_with(excluded)
    for name in order:
        if loss <= budget_db:
            break
        excluded.append(name)
        loss = loss_with(excluded) if len(excluded) < len(order) else 0.0
    return excluded, loss


def _quantize(
    fp32: Path, out: Path, calib: Sequence[Patch], conv_names: list[str], exclude: list[str]
) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib)

        def get_next(self) -> dict[str, np.ndarray] | None:
            p = next(self.it, None)
            return None if p is None else {INPUT_NAME: p.lr}

    # onnxruntime logs a "consider pre-processing" warning on the root logger every call
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        quantize_static(
            str(fp32),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=[c for c in conv_names if c not in exclude],
        )
    finally:
        root.setLevel(level)


def _run(path_or_bytes: Path | bytes, patches: Sequence[Patch], threads: int) -> list[np.ndarray]:
    from sisr.export.ort_session import ort_session, read_onnx_file

    if isinstance(path_or_bytes, Path):
        data, source = read_onnx_file(path_or_bytes).SerializeToString(), str(path_or_bytes)
    else:
        data, source = path_or_bytes, "in-memory ONNX model"
    sess = ort_session(data, source, threads=threads)
    return [sess.run(None, {INPUT_NAME: p.lr})[0] for p in patches]


def quantize_int8(
    fp32_onnx: str | Path,
    out: str | Path,
    *,
    calib: Sequence[Patch],
    val: Sequence[Patch],
    scale: int,
    budget_db: float = SELECT_BUDGET_DB,
    threads: int = 1,
) -> Int8Report:
    """Write an int8 QDQ version of ``fp32_onnx`` to ``out``, quantising the convolutions
    that keep the validation loss within ``budget_db`` (see the module docstring); returns
    the report. With no affordable layer, ``out`` is not written and ``quantized`` is
    empty."""
    import onnx

    from sisr.export.destination import check_destination
    from sisr.export.ort_session import read_onnx_file

    fp32 = Path(fp32_onnx)
    check_destination(out)  # before minutes of calibration
    # read_onnx_file first: external data must lie beside the model before anything,
    # onnxruntime's quantiser included, opens the file
    convs = [n.name for n in read_onnx_file(fp32).graph.node if n.op_type == "Conv"]
    if not convs or any(not c for c in convs):
        raise ExportError(f"{fp32}: no named Conv nodes to quantise")
    if not calib or not val:
        raise ExportError("int8 quantisation needs calibration and validation patches")
    base = pooled_psnr_y(_run(fp32, val, threads), val, scale)
    report = Int8Report(val_psnr_fp32=base, budget_db=budget_db)
    with tempfile.TemporaryDirectory(prefix="sisr-int8-") as tmp:
        trial = Path(tmp) / "trial.onnx"

        def loss_with(exclude: list[str]) -> float:
            _quantize(fp32, trial, calib, convs, exclude)
            return base - pooled_psnr_y(_run(trial, val, threads), val, scale)

        for c in convs:  # each layer alone
            report.sensitivity_db[c] = loss_with([x for x in convs if x != c])
        excluded, loss = greedy_exclusions(report.sensitivity_db, loss_with, budget_db)
        report.excluded = [c for c in convs if c in excluded]
        report.quantized = [c for c in convs if c not in excluded]
        report.val_psnr_int8 = base - loss
        if report.quantized:
            _quantize(fp32, trial, calib, convs, report.excluded)
            proto = onnx.load(str(trial))
            entry = proto.metadata_props.add()
            entry.key, entry.value = "sisr.int8", json.dumps(report.to_dict(), sort_keys=True)
            from sisr.export.destination import write_export

            write_export(out, proto.SerializeToString())
    return report


__all__ = [
    "SELECT_BUDGET_DB",
    "Int8Report",
    "Patch",
    "greedy_exclusions",
    "pooled_psnr_y",
    "quantize_int8",
    "training_patches",
]
