"""Hand-made ``torch.save`` files: any declared storage size, tensor geometry, compression
or pickle, including what torch itself would never write (used by the hostile-file tests,
the fuzz test and ``benchmarks/hostile_weights_rss.py``)."""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch._utils

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclass(frozen=True)
class StorageRef:
    """A storage as the pickle declares it: key, type name and element count."""

    key: str
    numel: int
    type_name: str = "FloatStorage"


@dataclass(frozen=True)
class TensorRef:
    """A tensor as the pickle declares it: its storage and view geometry."""

    storage: StorageRef
    size: tuple[int, ...]
    stride: tuple[int, ...]
    offset: int = 0
    state: Any = None  # pickled after it (BUILD): what Tensor.__setstate__ would be given

    def __reduce__(self) -> tuple[Any, ...]:
        args = (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict())
        if self.state is None:
            return (torch._utils._rebuild_tensor_v2, args)
        return (torch._utils._rebuild_tensor_v2, args, self.state)


class _Pickler(pickle.Pickler):
    def __init__(self, file: Any, legacy: bool) -> None:
        super().__init__(file, protocol=2)
        self.legacy = legacy

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, StorageRef):
            kind = getattr(torch, obj.type_name)
            if self.legacy:
                return ("storage", kind, obj.key, "cpu", obj.numel, None)
            return ("storage", kind, obj.key, "cpu", obj.numel)
        return None


def dumps(obj: Any, *, legacy: bool = False) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, legacy).dump(obj)
    return buf.getvalue()


@dataclass
class Archive:
    """A zip checkpoint: the pickle (bytes or an object to pickle) and raw entries."""

    obj: Any = None
    pickle_bytes: bytes | None = None
    data: dict[str, bytes] = field(default_factory=dict)
    compress: bool = False
    prefix: str = "archive"

    def write(self, path: Path) -> Path:
        pkl = self.pickle_bytes if self.pickle_bytes is not None else dumps(self.obj)
        how = zipfile.ZIP_DEFLATED if self.compress else zipfile.ZIP_STORED
        with zipfile.ZipFile(path, "w", how) as z:
            z.writestr(f"{self.prefix}/data.pkl", pkl)
            z.writestr(f"{self.prefix}/byteorder", "little")
            z.writestr(f"{self.prefix}/version", "3\n")
            for key, raw in self.data.items():
                z.writestr(f"{self.prefix}/data/{key}", raw)
        return path


def write_legacy(
    path: Path, obj: Any, data: dict[str, bytes], counts: dict[str, int] | None = None
) -> Path:
    """A pre-zip checkpoint; ``counts`` overrides the element count stored before each
    storage's bytes (default: the bytes / 4, float32)."""
    counts = counts or {}
    out = io.BytesIO()
    for header in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
        out.write(pickle.dumps(header, protocol=2))
    out.write(dumps(obj, legacy=True))
    out.write(pickle.dumps(list(data), protocol=2))
    for key, raw in data.items():
        out.write(struct.pack("<q", counts.get(key, len(raw) // 4)))
        out.write(raw)
    path.write_bytes(out.getvalue())
    return path


def rezip(src: Path, dst: Path) -> Path:
    """The same checkpoint with every entry deflate-compressed (torch stores them raw)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    return dst


def shared_lists(fanout: int, depth: int, leaf: Any = None) -> Any:
    """``[[...] * fanout] * fanout`` ``depth`` deep: tiny pickled, ``fanout**depth`` walked."""
    node: Any = [] if leaf is None else [leaf]
    for _ in range(depth):
        node = [node] * fanout
    return node


def nested_pickle(depth: int) -> bytes:
    """A list nested ``depth`` deep (the pickler itself would hit the recursion limit)."""
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


def espcn_state(features: int, value: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """ESPCN x2 tensors for ``features=[n, n]``; with ``value`` (one element) every tensor
    is that element expanded by zero strides: a few bytes stored for the whole network."""
    shapes = {
        "body.0.weight": (features, 3, 5, 5),
        "body.0.bias": (features,),
        "body.2.weight": (features, features, 3, 3),
        "body.2.bias": (features,),
        "body.4.weight": (12, features, 3, 3),
        "body.4.bias": (12,),
    }
    if value is None:
        return {k: torch.randn(s) * 0.01 for k, s in shapes.items()}
    return {k: value.reshape(1).expand(*s) for k, s in shapes.items()}


__all__ = [
    "Archive",
    "StorageRef",
    "TensorRef",
    "dumps",
    "espcn_state",
    "nested_pickle",
    "rezip",
    "shared_lists",
    "write_legacy",
]


def bicubic_weights(path: Path, scale: int) -> Path:
    """A sisr weights file for the parameter-free bicubic baseline at ``scale`` (any value,
    hostile ones included: the file's metadata is what is under test)."""
    import json

    from safetensors.torch import save_file

    meta = {
        "format": json.dumps("sisr.weights"),
        "format_version": "1",
        "arch": json.dumps("bicubic"),
        "hparams": json.dumps({"scale": scale}),
        "scale": json.dumps(scale),
    }
    save_file({}, str(path), metadata=meta)
    return path
