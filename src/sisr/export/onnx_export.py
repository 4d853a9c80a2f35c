"""ONNX export (the TorchScript-based exporter: ``dynamo=False``, which needs no extra
packages and gives plain Conv/DepthToSpace graphs that OpenCV's dnn module reads; pixel
shuffles are rewritten to DCR order, see :mod:`sisr.export.onnx_rewrite`)."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sisr.export.destination import check_destination, write_export
from sisr.export.onnx_rewrite import portable_pixel_shuffle
from sisr.export.prepare import (
    INPUT_NAME,
    LAYOUT,
    OUTPUT_NAME,
    ExportError,
    check_graph,
    deployable,
    example_input,
    export_metadata,
    json_properties,
)

DEFAULT_OPSET = 17
MIN_OPSET = 11  # DepthToSpace CRD mode (pixel shuffle) needs 11
# fp16 graphs are checked against the fp32 network with a looser bound (10-bit mantissa).
FP16_TOL = 2e-2


class _Fp16Inside(nn.Module):
    """fp32 in and out, fp16 weights and compute inside (the casts are graph nodes), so the
    file keeps the documented float32 interface at half the size."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.half()

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.half()).float()


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'sisr[onnx]'") from None
    return onnx


def traced_onnx_bytes(
    net: nn.Module,
    *,
    opset: int = DEFAULT_OPSET,
    static: tuple[int, int] | None = None,
) -> bytes:
    """The tracer's ONNX graph of ``net`` (already in deploy form) as it comes, without
    metadata and with PyTorch's CRD pixel shuffles (use :func:`onnx_bytes`)."""
    x = example_input(net) if static is None else torch.rand(1, 3, *static)
    dynamic_axes = None
    if static is None:
        dynamic_axes = {
            INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"},
        }
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer / deprecation chatter about the legacy exporter
        torch.onnx.export(
            net,
            (x,),
            buf,
            dynamo=False,
            opset_version=int(opset),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    return buf.getvalue()


def portable_onnx(
    net: nn.Module,
    *,
    opset: int = DEFAULT_OPSET,
    static: tuple[int, int] | None = None,
) -> tuple[Any, dict[str, int]]:
    """The ONNX model proto of ``net`` with its pixel shuffles made portable (see
    :mod:`sisr.export.onnx_rewrite`), and how many were rewritten."""
    onnx = _require_onnx()
    proto = onnx.load_from_string(traced_onnx_bytes(net, opset=opset, static=static))
    return proto, portable_pixel_shuffle(proto)


def onnx_bytes(
    net: nn.Module,
    *,
    opset: int = DEFAULT_OPSET,
    static: tuple[int, int] | None = None,
) -> bytes:
    """Serialised ONNX graph of ``net`` (already in deploy form), without metadata: what
    :func:`export_onnx` writes, less the properties."""
    return portable_onnx(net, opset=opset, static=static)[0].SerializeToString()


def onnx_properties(model_proto: Any) -> dict[str, str]:
    """The ``metadata_props`` of a loaded ONNX model as a dict."""
    return {p.key: p.value for p in model_proto.metadata_props}


def _ort_runner(data: bytes) -> Any:
    from sisr.export.ort_session import ort_session

    sess = ort_session(data, "the exported ONNX graph")

    def run(x: Tensor) -> Tensor:
        return torch.from_numpy(sess.run(None, {INPUT_NAME: x.numpy()})[0])

    return run


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    meta: dict[str, Any] | None = None,
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    static: tuple[int, int] | None = None,
    verify: bool = True,
) -> dict[str, Any]:
    """Write ``model`` as ONNX to ``path`` (atomically); returns a report (max abs
    difference to PyTorch at the probe sizes, opset, size).

    ``meta`` (see :func:`sisr.export.export_metadata`) becomes ``sisr.*`` model
    properties. ``verify`` runs the graph with onnxruntime (when installed) before
    writing; dynamic graphs that do not generalise raise :class:`ExportError`.
    """
    onnx = _require_onnx()
    check_destination(path)
    if not MIN_OPSET <= int(opset) <= 23:
        raise ExportError(f"--opset must be in {MIN_OPSET}..23, got {opset}")
    if static is not None and (len(static) != 2 or min(static) < 1):
        raise ExportError(f"--static needs a positive height and width, got {static}")
    ref = deployable(model)
    net = _Fp16Inside(deployable(model)) if fp16 else ref
    proto, shuffles = portable_onnx(net, opset=opset, static=static)
    data = proto.SerializeToString()
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported ONNX graph is invalid: {exc}") from None
    report: dict[str, Any] = {
        "format": "onnx",
        "opset": int(opset),
        "fp16": bool(fp16),
        "pixel_shuffle": shuffles,
    }
    if verify:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            report["verified"] = "skipped (onnxruntime not installed)"
        else:
            report["max_abs_diff"] = check_graph(
                ref,
                _ort_runner(data),
                what="ONNX",
                dynamic=static is None,
                static=static,
                tol=FP16_TOL if fp16 else 1e-4,
            )
            report["verified"] = "onnxruntime CPU"
    props = json_properties(meta if meta is not None else export_metadata(model))
    props["sisr.fp16_compute"] = json.dumps(bool(fp16))
    if static is not None:
        props["sisr.static"] = json.dumps([int(static[0]), int(static[1])])
    del proto.metadata_props[:]
    for key, value in sorted(props.items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "sisr"
    proto.doc_string = f"sisr super-resolution network; {LAYOUT}; input '{INPUT_NAME}'"
    blob = proto.SerializeToString()
    write_export(path, blob)
    report["bytes"] = len(blob)
    return report


__all__ = [
    "DEFAULT_OPSET",
    "export_onnx",
    "onnx_bytes",
    "onnx_properties",
    "portable_onnx",
    "traced_onnx_bytes",
]
