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
from sisr.export.prepare import ExportError


def _require_ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(
            "--runtime onnxruntime needs onnxruntime: pip install 'sisr[onnx]'"
        ) from None
    return onnxruntime


class OnnxNet(nn.Module):
    """An onnxruntime session behind the SRModel interface (``scale``, ``info()``):
    (N, 3, h, w) float32 in [0, 1] -> (N, 3, sh, sw) float32, on the CPU.

    ``activation_bytes_per_pixel`` (measured on the PyTorch network at export time) lets
    ``--tile auto`` size tiles as for PyTorch. The session is shared, not copied, by
    ``copy.deepcopy`` (onnxruntime sessions are safe to run from several threads).
    """

    def __init__(
        self,
        data: bytes | str,
        *,
        info: ArchInfo,
        scale: int,
        arch_id: str,
        activation_bytes_per_pixel: float | None = None,
        threads: int | None = None,
    ) -> None:
        super().__init__()
        ort = _require_ort()
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own error types (invalid graph, ...)
            raise ExportError(f"onnxruntime cannot load the model: {exc}") from None
        self.input_name = self.session.get_inputs()[0].name
        self._info = info
        self.scale = int(scale)
        self.arch_id = arch_id
        self.activation_bytes_per_pixel = activation_bytes_per_pixel

    def info(self) -> ArchInfo:
        return self._info

    def forward(self, x: Tensor) -> Tensor:
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self.session.run(None, {self.input_name: arr})[0])

    def __deepcopy__(self, memo: dict[int, Any]) -> OnnxNet:
        return self


def _props_info(props: dict[str, str], source: str) -> tuple[ArchInfo, int, str, float | None]:
    """ArchInfo, scale, arch id and activation bytes/pixel from ``sisr.*`` properties."""

    def get(key: str) -> Any:
        if f"sisr.{key}" not in props:
            raise ExportError(
                f"{source}: not a sisr export (no sisr.{key} property); "
                "export it with `sisr export`"
            )
        try:
            return json.loads(props[f"sisr.{key}"])
        except ValueError:
            raise ExportError(f"{source}: property sisr.{key} is not valid JSON") from None

    raw = get("info")
    scale = get("scale")
    if not isinstance(raw, dict) or not isinstance(scale, int) or not 1 <= scale <= 16:
        raise ExportError(f"{source}: bad sisr.info / sisr.scale properties")
    try:
        info = ArchInfo(
            arch_id=str(raw["arch_id"]),
            scales=tuple(int(s) for s in raw.get("scales", (scale,))),
            receptive_radius=int(raw["receptive_radius"]),
            size_multiple=int(raw.get("size_multiple", 1)),
            half_safe=bool(raw.get("half_safe", True)),
            paper=str(raw.get("paper", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"{source}: bad sisr.info property ({exc})") from None
    if not 0 <= info.receptive_radius <= 4096 or not 1 <= info.size_multiple <= 64:
        raise ExportError(f"{source}: sisr.info values out of range")
    bpp = props.get("sisr.activation_bytes_per_pixel")
    bpp_f = float(bpp) if bpp is not None else None
    return info, scale, info.arch_id, bpp_f


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
        try:
            import onnx
        except ImportError:
            raise ConfigError("reading .onnx files needs onnx: pip install 'sisr[onnx]'") from None
        if not path.is_file():
            raise ExportError(f"{path}: no such ONNX file")
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # protobuf decode errors
            raise ExportError(f"{path}: not a readable ONNX file ({exc})") from None
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
        )
    from sisr.export.onnx_export import onnx_bytes
    from sisr.export.prepare import deployable, load_for_export

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
    )


__all__ = ["OnnxNet", "load_onnx"]
