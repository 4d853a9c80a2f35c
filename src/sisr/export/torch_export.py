"""PyTorch graph formats: TorchScript (``.pt``, for libtorch C++) and ``torch.export``
programs (``.pt2``, for AOTInductor / ExecuTorch). Both carry the same metadata as the
ONNX properties, as an extra file ``sisr.json`` inside the archive."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sisr.export.destination import check_destination, write_export
from sisr.export.prepare import (
    ExportError,
    check_graph,
    deployable,
    example_input,
    export_metadata,
)

META_FILE = "sisr.json"


def _extra(
    meta: dict[str, Any] | None, model: nn.Module, static: tuple[int, int] | None
) -> dict[str, str]:
    """The archive's ``sisr.json``: what ``-n FILE`` needs to run it (arch, scale, info,
    and the fixed input size, which the runner then pads / windows to)."""
    full = dict(meta if meta is not None else export_metadata(model))
    if static is not None:
        full["static"] = [int(static[0]), int(static[1])]
    return {META_FILE: json.dumps(full)}


def export_torchscript(
    model: nn.Module,
    path: str | Path,
    *,
    meta: dict[str, Any] | None = None,
    static: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Trace ``model`` to TorchScript, check it at another size, write it atomically."""
    check_destination(path)
    net = deployable(model)
    x = example_input(net) if static is None else torch.rand(1, 3, *static)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings are what check_graph tests for real
        traced = torch.jit.trace(net, (x,), check_trace=False)
        traced = torch.jit.freeze(traced.eval())  # (TorchScript's deprecation notices too)
        buf = io.BytesIO()
        torch.jit.save(traced, buf, _extra_files=_extra(meta, model, static))
        data = buf.getvalue()
        loaded = torch.jit.load(io.BytesIO(data))

    def run(t: Tensor) -> Tensor:
        with torch.no_grad():
            return loaded(t)

    diff = check_graph(net, run, what="TorchScript", dynamic=static is None, static=static)
    write_export(path, data)
    return {"format": "torchscript", "max_abs_diff": diff, "bytes": len(data)}


def export_program(
    model: nn.Module,
    path: str | Path,
    *,
    meta: dict[str, Any] | None = None,
    static: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """``torch.export`` ``model`` with symbolic height/width (multiples of the network's
    size multiple), check the program at another size, save the ``.pt2`` atomically."""
    from torch.export import Dim

    check_destination(path)
    net = deployable(model)
    x = example_input(net) if static is None else torch.rand(1, 3, *static)
    dynamic_shapes = None
    if static is None:
        x = torch.cat([x, x.flip(-1)])  # batch 2: a batch of 1 would specialise the batch
        mult = max(1, int(net.info().size_multiple)) if hasattr(net, "info") else 1
        h, w = Dim("h", min=1, max=1 << 15), Dim("w", min=1, max=1 << 15)
        dims = (h * mult, w * mult) if mult > 1 else (Dim("height", min=2), Dim("width", min=2))
        dynamic_shapes = {"x": {0: Dim("batch", min=1, max=1024), 2: dims[0], 3: dims[1]}}
        dynamic_shapes = _keyed_by_forward_arg(net, dynamic_shapes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(net, (x,), dynamic_shapes=dynamic_shapes)
    except Exception as exc:  # torch.export raises several types (UserError, guards, ...)
        from sisr.export.prepare import _FIXED_SIZE_REASONS

        arch = getattr(net, "arch_id", type(net).__name__)
        why = _FIXED_SIZE_REASONS.get(arch, f"{type(exc).__name__}: {str(exc)[:300]}")
        hint = "; export a fixed size with --static H W" if static is None else ""
        raise ExportError(f"{arch} cannot be exported with torch.export: {why}{hint}") from None
    buf = io.BytesIO()
    torch.export.save(program, buf, extra_files=_extra(meta, model, static))
    data = buf.getvalue()
    loaded = torch.export.load(io.BytesIO(data)).module()

    def run(t: Tensor) -> Tensor:
        with torch.no_grad():
            return loaded(t)

    diff = check_graph(net, run, what="torch.export", dynamic=static is None, static=static)
    write_export(path, data)
    return {"format": "exported", "max_abs_diff": diff, "bytes": len(data)}


def _keyed_by_forward_arg(net: nn.Module, shapes: dict[str, Any]) -> dict[str, Any]:
    """torch.export keys dynamic shapes by the forward argument's own name."""
    import inspect

    params = [p for p in inspect.signature(net.forward).parameters if p != "self"]
    return {params[0]: shapes["x"]} if params else shapes


__all__ = ["META_FILE", "export_program", "export_torchscript"]
