"""Run an exported ONNX file (or a named model exported on the fly) with onnxruntime as a
drop-in network for :class:`sisr.infer.Upscaler`, so that tiling, alpha, 16-bit, gray,
TTA and batching are the same code as for PyTorch (``sisr upscale --runtime onnxruntime``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sisr.archs.base import ArchInfo
from sisr.errors import ConfigError
from sisr.export.fixed_size import run_fixed_size
from sisr.export.ort_session import one_line, ort_session, read_onnx_file
from sisr.export.prepare import ExportError, info_from_meta


class OnnxNet(nn.Module):
    """An onnxruntime session behind the SRModel interface (``scale``, ``info()``):
    (N, 3, h, w) float32 in [0, 1] -> (N, 3, sh, sw) float32, on the CPU.

    ``data``: model bytes (without external data, see :mod:`sisr.export.ort_session`) or
    an ``.onnx`` path (its external data read from beside it). ``source`` names the model
    in every error. A graph with a fixed input size (``sisr export --static``) runs on any
    input size (:mod:`sisr.export.fixed_size`). ``activation_bytes_per_pixel`` (measured
    on the PyTorch network at export time) lets ``--tile auto`` size tiles as for PyTorch.
    The session is shared, not copied, by ``copy.deepcopy`` (onnxruntime sessions are safe
    to run from several threads).
    """

    def __init__(
        self,
        data: bytes | str | os.PathLike[str],
        *,
        info: ArchInfo,
        scale: int,
        arch_id: str,
        activation_bytes_per_pixel: float | None = None,
        threads: int | None = None,
        source: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(data, bytes):
            path = Path(os.fspath(data))
            source = source or str(path)
            data = read_onnx_file(path).SerializeToString()
        self.source = source or "in-memory ONNX model"
        self.session = ort_session(data, self.source, threads=threads or torch.get_num_threads())
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        dims = [d if isinstance(d, int) and d > 0 else None for d in first.shape]
        self.fixed_batch = dims[0] if len(dims) == 4 else None
        self.fixed_size = (dims[2], dims[3]) if len(dims) == 4 else (None, None)
        self._info = info
        self.scale = int(scale)
        self.arch_id = arch_id
        self.activation_bytes_per_pixel = activation_bytes_per_pixel

    def info(self) -> ArchInfo:
        return self._info

    def _run(self, x: Tensor) -> Tensor:
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        try:
            y = self.session.run(None, {self.input_name: arr})[0]
        except Exception as exc:  # onnxruntime's own error types (shape, kernel, ...)
            raise ExportError(
                f"{self.source}: onnxruntime failed on input {tuple(arr.shape)} ({one_line(exc)})"
            ) from None
        return torch.from_numpy(y)

    def forward(self, x: Tensor) -> Tensor:
        if self.fixed_batch is None and self.fixed_size == (None, None):
            return self._run(x)
        return run_fixed_size(
            self._run,
            x,
            size=self.fixed_size,
            batch=self.fixed_batch,
            scale=self.scale,
            radius=self._info.receptive_radius,
            multiple=self._info.size_multiple,
            source=self.source,
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> OnnxNet:
        return self


def _props_info(props: dict[str, str], source: str) -> tuple[ArchInfo, int, str, float | None]:
    """ArchInfo, scale, arch id and activation bytes/pixel from ``sisr.*`` properties."""
    meta: dict[str, Any] = {}
    for key in ("info", "scale", "activation_bytes_per_pixel"):
        if f"sisr.{key}" not in props:
            if key == "activation_bytes_per_pixel":
                continue
            raise ExportError(
                f"{source}: not a sisr export (no sisr.{key} property); "
                "export it with `sisr export`"
            )
        try:
            meta[key] = json.loads(props[f"sisr.{key}"])
        except ValueError:
            raise ExportError(f"{source}: property sisr.{key} is not valid JSON") from None
    return info_from_meta(meta, source)


def load_onnx(
    name_or_path: str | os.PathLike[str],
    *,
    scale: int | None = None,
    threads: int | None = None,
) -> OnnxNet:
    """An :class:`OnnxNet` for an ``.onnx`` file written by ``sisr export``, or for named
    weights / a ``.safetensors`` file (exported in memory first)."""
    path = Path(os.fspath(name_or_path))
    if path.suffix.lower() == ".onnx":
        proto = read_onnx_file(path)  # external data: only from beside the file
        props = {p.key: p.value for p in proto.metadata_props}
        info, s, arch, bpp = _props_info(props, str(path))
        if scale is not None and s != scale:
            raise ConfigError(f"{path}: the model is x{s}, but scale {scale} was requested")
        return OnnxNet(
            proto.SerializeToString(),
            info=info,
            scale=s,
            arch_id=arch,
            activation_bytes_per_pixel=bpp,
            threads=threads,
            source=str(path),
        )
    from sisr.export.onnx_export import onnx_bytes
    from sisr.export.prepare import deployable
    from sisr.export.source import load_for_export

    model, meta = load_for_export(name_or_path, scale)
    net = deployable(model)
    data = onnx_bytes(net)
    return OnnxNet(
        data,
        info=net.info(),
        scale=int(net.scale),
        arch_id=str(meta["arch"]),
        activation_bytes_per_pixel=meta.get("activation_bytes_per_pixel"),
        threads=threads,
        source=f"{name_or_path} (exported in memory)",
    )


__all__ = ["OnnxNet", "load_onnx"]
