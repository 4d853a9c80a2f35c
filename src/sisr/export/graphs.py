"""sisr's own TorchScript (``.pt``) and ``torch.export`` (``.pt2``) files as networks for
``-n FILE``: the metadata ``sisr export`` stores in them (``extra/sisr.json``: arch,
hparams, scale, receptive radius, ...) makes them SRModels again.

Both formats are code, not weights, so only files that carry sisr's export metadata are
loaded, and the archive is inspected (as a zip, nothing executed) before torch reads it:

* TorchScript: ``torch.jit.load`` compiles and runs the file's code; files without sisr's
  metadata are refused unread.
* ``.pt2``: ``torch.export.load`` unpickles with ``weights_only=False`` pickled weights and
  constants, opaque objects, and sample inputs that the safe loader rejects, and loads
  AOTInductor shared libraries. A ``.pt2`` is loaded only when it has none of those: every
  entry is one a plain program has, every payload is raw tensor data, and the sample
  inputs load with ``weights_only=True``.
"""

from __future__ import annotations

import io
import json
import os
import threading
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sisr.export.fixed_size import run_fixed_size
from sisr.export.prepare import ExportError, info_from_meta
from sisr.export.torch_export import META_FILE

MAX_ENTRIES = 100_000
MAX_GRAPH_BYTES = 2 << 30  # read whole into memory; sisr's own exports are a few MB
MAX_JSON_BYTES = 64 << 20  # the program graph; sisr's are well under 1 MB
_PT2_FILES = {"archive_format", "archive_version", "byteorder", ".data/version"}
_PT2_FILES |= {".data/serialization_id", "models/model.json"}
_PT2_FOLDERS = ("data/weights/", "data/constants/", "data/sample_inputs/", "extra/")
_KINDS = {"torchscript": "TorchScript", "pt2": "torch.export (.pt2)"}


# --------------------------------------------------------------------------- archives


class _Archive:
    """A zip archive's entries relative to its single root folder (how torch reads it)."""

    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf
        names = zf.namelist()
        self.root = names[0].split("/", 1)[0] if names else ""
        self.rel = [n.split("/", 1)[1] if "/" in n else "" for n in names]
        self.consistent = (
            len(names) <= MAX_ENTRIES
            and len(set(names)) == len(names)  # duplicates: zipfile and torch may differ
            and all(n.startswith(self.root + "/") for n in names)
        )

    def has(self, rel: str) -> bool:
        return rel in self.rel

    def read(self, rel: str, limit: int = MAX_JSON_BYTES) -> bytes:
        info = self.zf.getinfo(f"{self.root}/{rel}")
        if info.file_size > limit:
            raise ValueError(f"entry {rel!r} is {info.file_size} bytes")
        return self.zf.read(info)


def _kind_of(arc: _Archive) -> str | None:
    if arc.has("archive_format"):
        return "pt2"
    if arc.has("constants.pkl") or any(r.startswith("code/") for r in arc.rel):
        return "torchscript"
    return None


def graph_kind(path: str | os.PathLike[str]) -> str | None:
    """``"torchscript"`` or ``"pt2"`` when ``path`` is such an archive, else None (plain
    checkpoints, safetensors, anything else: other loaders' business). Reads only the zip
    directory."""
    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as zf:
            return _kind_of(_Archive(zf))
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return None


def _meta(arc: _Archive, kind: str, source: str) -> dict[str, Any]:
    if not arc.has(f"extra/{META_FILE}"):
        what = _KINDS[kind]
        raise ExportError(
            f"{source}: a {what} file without sisr's export metadata; sisr only loads "
            f"{what} files written by `sisr export` (loading one runs the code in it)"
        )
    try:
        meta = json.loads(arc.read(f"extra/{META_FILE}", 1 << 20))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ExportError(f"{source}: sisr metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ExportError(f"{source}: sisr metadata is not a JSON object")
    return meta


def _refuse_pt2(source: str, why: str) -> ExportError:
    return ExportError(f"{source}: .pt2 refused: {why} (not a plain sisr export)")


def _check_payloads(arc: _Archive, source: str, config: str, tensors_only: bool) -> None:
    """Every payload of ``config`` is raw tensor bytes (no pickle)."""
    try:
        entries = json.loads(arc.read(config))["config"]
        items = list(entries.items())
    except (KeyError, ValueError, AttributeError, TypeError):
        raise _refuse_pt2(source, f"{config} is not a payload table") from None
    for fqn, payload in items:
        if not isinstance(payload, dict) or payload.get("use_pickle") is not False:
            raise _refuse_pt2(source, f"{fqn!r} is pickled")
        name = str(payload.get("path_name", ""))
        if tensors_only and not name.startswith("tensor_"):
            raise _refuse_pt2(source, f"constant {fqn!r} is not a tensor")


def _check_pt2(arc: _Archive, source: str) -> None:
    """Refuse every ``.pt2`` content for which ``torch.export.load`` would unpickle with
    ``weights_only=False`` or load native code (see the module docs)."""
    for rel in arc.rel:
        if rel not in _PT2_FILES and not rel.startswith(_PT2_FOLDERS):
            raise _refuse_pt2(source, f"entry {rel!r} (native code or an unknown payload)")
        if rel in ("data/weights/model.pt", "data/constants/model.pt"):
            raise _refuse_pt2(source, f"legacy pickled {rel!r}")
    for rel in ("models/model.json", "data/sample_inputs/model.pt"):
        if not arc.has(rel):
            raise _refuse_pt2(source, f"no {rel!r}")
    _check_payloads(arc, source, "data/weights/model_weights_config.json", False)
    if arc.has("data/constants/model_constants_config.json"):
        _check_payloads(arc, source, "data/constants/model_constants_config.json", True)
    try:
        # torch falls back to weights_only=False when the safe loader fails: make sure
        # it cannot (same bytes, same result)
        with warnings.catch_warnings():  # the unpickler's chatter: the refusal says it
            warnings.simplefilter("ignore")
            sample = torch.load(
                io.BytesIO(arc.read("data/sample_inputs/model.pt", 1 << 26)), weights_only=True
            )
    except Exception as exc:  # the safe unpickler's refusals and zip errors alike
        raise _refuse_pt2(
            source, f"sample inputs not plain tensors ({type(exc).__name__})"
        ) from None
    if not isinstance(sample, (tuple, dict)):
        raise _refuse_pt2(source, "sample inputs not a tuple")


# --------------------------------------------------------------------------- networks


class GraphNet(nn.Module):
    """A loaded TorchScript / ``torch.export`` graph behind the SRModel interface
    (``scale``, ``info()``, ``arch_id``, ``hparams``). Runs in float32 whatever the input
    dtype (the graph's constants are float32); one copy of the graph per device, loaded
    from the checked bytes on first use. ``copy.deepcopy`` shares it (graphs are
    read-only), as for onnxruntime sessions."""

    def __init__(
        self,
        load: Callable[[torch.device], Callable[[Tensor], Tensor]],
        meta: dict[str, Any],
        *,
        kind: str,
        source: str,
    ) -> None:
        super().__init__()
        info, scale, arch, bpp = info_from_meta(meta, source)
        # fp16/bf16 would only cast around a float32 graph: let "auto" pick fp32
        self._info = replace(info, half_safe=False)
        self.scale = scale
        self.arch_id = arch
        self.hparams = meta.get("hparams", {})
        self.activation_bytes_per_pixel = bpp
        self.kind, self.source = kind, source
        self.static = _static(meta, source)
        self._load = load
        self._graphs: dict[str, Callable[[Tensor], Tensor]] = {}
        self._lock = threading.Lock()
        self._graph(torch.device("cpu"))  # a file torch cannot read fails at -n, not per image

    def info(self) -> Any:
        return self._info

    def _graph(self, device: torch.device) -> Callable[[Tensor], Tensor]:
        key = str(device)
        with self._lock:
            if key not in self._graphs:
                try:
                    self._graphs[key] = self._load(device)
                except Exception as exc:  # torch's many deserialisation errors
                    raise ExportError(
                        f"{self.source}: torch cannot load this {_KINDS[self.kind]} file "
                        f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]})"
                    ) from None
            return self._graphs[key]

    def _run(self, x: Tensor) -> Tensor:
        from sisr.infer.tiling import is_oom

        graph = self._graph(x.device)
        try:
            with torch.no_grad():
                return graph(x)
        except Exception as exc:
            if is_oom(exc):  # the tiler halves its tiles on these
                raise
            raise ExportError(
                f"{self.source}: the {_KINDS[self.kind]} graph failed on input "
                f"{tuple(x.shape)} ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})"
            ) from None

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        if self.static is None:
            y = self._run(x32)
        else:
            y = run_fixed_size(
                self._run,
                x32,
                size=self.static,
                batch=1,  # a program traced at batch 1 may keep it
                scale=self.scale,
                radius=self._info.receptive_radius,
                multiple=self._info.size_multiple,
                source=self.source,
            )
        return y.to(x.dtype)

    def __deepcopy__(self, memo: dict[int, Any]) -> GraphNet:
        return self


def _static(meta: dict[str, Any], source: str) -> tuple[int, int] | None:
    static = meta.get("static")
    if static is None:
        return None
    if (
        not isinstance(static, list)
        or len(static) != 2
        or not all(isinstance(v, int) and 1 <= v <= 1 << 15 for v in static)
    ):
        raise ExportError(f"{source}: bad sisr metadata: static {static!r}")
    return static[0], static[1]


def _torchscript_loader(data: bytes) -> Callable[[torch.device], Callable[[Tensor], Tensor]]:
    def load(device: torch.device) -> Callable[[Tensor], Tensor]:
        with warnings.catch_warnings():
            # torch's notice that TorchScript is deprecated: nothing a user of -n can act on
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(io.BytesIO(data), map_location=device).eval()

    return load


def _pt2_loader(data: bytes) -> Callable[[torch.device], Callable[[Tensor], Tensor]]:
    def load(device: torch.device) -> Callable[[Tensor], Tensor]:
        return torch.export.load(io.BytesIO(data)).module().to(device)

    return load


def load_graph_file(path: str | os.PathLike[str]) -> GraphNet | None:
    """The network in ``path`` when it is a TorchScript or ``.pt2`` archive written by
    ``sisr export``; None when it is no such archive (weights: other loaders); otherwise
    :class:`ExportError` saying why it is refused (see the module docs)."""
    if graph_kind(path) is None:
        return None
    source = os.fspath(path)
    size = os.stat(path).st_size
    if size > MAX_GRAPH_BYTES:
        raise ExportError(
            f"{source}: {size / 2**30:.1f} GiB, more than sisr loads as a graph "
            f"({MAX_GRAPH_BYTES / 2**30:.0f} GiB)"
        )
    data = Path(path).read_bytes()  # checked and loaded from the same bytes
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            arc = _Archive(zf)
            kind = _kind_of(arc)
            if kind is None or not arc.consistent:
                raise ExportError(f"{source}: not a well-formed TorchScript or .pt2 archive")
            meta = _meta(arc, kind, source)
            if kind == "pt2":
                _check_pt2(arc, source)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ExportError(f"{source}: unreadable archive ({exc})") from None
    loader = _torchscript_loader(data) if kind == "torchscript" else _pt2_loader(data)
    return GraphNet(loader, meta, kind=kind, source=source)


def graph_upscaler(
    path: str | os.PathLike[str], *, scale: int | None = None, **options: Any
) -> Any:
    """An :class:`sisr.infer.Upscaler` around the graph in ``path`` when it is an archive
    written by ``sisr export``, else None (weights: :meth:`Upscaler.from_name`). Used by
    ``sisr.load`` and ``sisr upscale -n``; the hub, below this package, reads weights only."""
    from sisr.infer import Upscaler

    options.pop("progress", None)  # nothing is downloaded for a local graph
    net = load_graph_file(path) if Path(path).is_file() else None
    if net is None:
        return None
    if scale is not None and int(scale) != int(net.scale):
        raise ExportError(
            f"{os.fspath(path)}: an exported x{net.scale} graph, but x{scale} was asked"
        )
    return Upscaler(net, name=f"{Path(path).stem} ({net.kind})", **options)


__all__ = ["GraphNet", "graph_kind", "graph_upscaler", "load_graph_file"]
