"""The one way sisr opens onnxruntime sessions: external data checked and read by sisr,
errors naming the model.

ONNX keeps large tensors in *external data* files named by the model
(``TensorProto.external_data["location"]``). onnxruntime resolves those names against
the model's folder when given a path, but against the current working folder when given
bytes, and follows symlinks either way: a model could make sisr read weights (or any file)
from wherever it is run. So sisr never lets onnxruntime resolve them: a file's external
data is accepted only as a plain file beside the model (same folder, no absolute path,
no ``..``, no sub-folder, no symlink), read here and inlined, and bytes handed to
onnxruntime must not reference any.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PureWindowsPath
from typing import Any

from sisr.errors import ConfigError
from sisr.export.prepare import ExportError

RULE = (
    "ONNX external data must be a plain file beside the model "
    "(same folder; no absolute path, '..', sub-folder or symlink)"
)
_EXTERNAL = 1  # onnx.TensorProto.EXTERNAL
_DEFAULT = 0


def require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ConfigError("reading ONNX models needs onnx: pip install 'sisr[onnx]'") from None
    return onnx


def one_line(exc: BaseException, limit: int = 400) -> str:
    """An exception's message on one line (onnxruntime's span several), shortened."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- tensors


def _node_tensors(node: Any) -> Iterator[Any]:
    for a in node.attribute:
        if a.HasField("t"):
            yield a.t
        yield from a.tensors
        sparse = list(a.sparse_tensors)
        if a.HasField("sparse_tensor"):
            sparse.append(a.sparse_tensor)
        for sp in sparse:
            yield sp.values
            yield sp.indices
        if a.HasField("g"):
            yield from _graph_tensors(a.g)
        for g in a.graphs:
            yield from _graph_tensors(g)


def _graph_tensors(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for sp in graph.sparse_initializer:
        yield sp.values
        yield sp.indices
    for node in graph.node:
        yield from _node_tensors(node)


def model_tensors(model: Any) -> Iterator[Any]:
    """Every TensorProto of ``model`` that a runtime may load: initializers, sparse ones,
    node attributes, sub-graphs (If/Loop/Scan bodies), local functions, training graphs."""
    yield from _graph_tensors(model.graph)
    for fn in model.functions:
        for node in fn.node:
            yield from _node_tensors(node)
    for ti in model.training_info:
        yield from _graph_tensors(ti.initialization)
        yield from _graph_tensors(ti.algorithm)


def is_external(tensor: Any) -> bool:
    return tensor.data_location == _EXTERNAL or len(tensor.external_data) > 0


# --------------------------------------------------------------------------- external data


def _refuse(model: Path, location: str, why: str) -> ExportError:
    return ExportError(f"{model}: external data {location!r} refused ({why}); {RULE}")


def _plain_name(model: Path, location: str) -> None:
    seps = ("/", "\\")
    if not location or location in (".", "..") or "\0" in location:
        raise _refuse(model, location, "not a file name")
    if os.path.isabs(location) or PureWindowsPath(location).drive:
        raise _refuse(model, location, "absolute path")
    if any(s in location for s in seps):
        why = "'..' climbs out of the model's folder" if ".." in location else "a sub-folder"
        raise _refuse(model, location, why)


def _expected_bytes(tensor: Any) -> int | None:
    """The raw size of ``tensor`` from its type and shape; None for types without a fixed
    element size (strings, which onnxruntime does not take as external data anyway)."""
    from onnx import TensorProto, helper

    n = math.prod(int(d) for d in tensor.dims)
    packed = {getattr(TensorProto, t, -1) for t in ("INT4", "UINT4", "FLOAT4E2M1", "INT2")}
    if tensor.data_type in packed:
        return (n + 1) // 2
    if tensor.data_type in (TensorProto.STRING, TensorProto.UNDEFINED):
        return None
    try:
        return n * helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, TypeError, ValueError):
        return None


def _int_entry(model: Path, location: str, entries: dict[str, str], key: str) -> int | None:
    if key not in entries or entries[key] == "":
        return None
    try:
        value = int(entries[key])
    except ValueError:
        raise _refuse(model, location, f"{key} {entries[key]!r} is not a number") from None
    if value < 0:
        raise _refuse(model, location, f"negative {key}")
    return value


def _read_beside(model: Path, tensor: Any) -> bytes:
    entries = {e.key: e.value for e in tensor.external_data}
    location = entries.get("location", "")
    _plain_name(model, location)
    path = model.parent / location
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise _refuse(model, location, "no such file beside the model") from None
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(model, location, "a symlink")
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(model, location, "not a regular file")
    offset = _int_entry(model, location, entries, "offset") or 0
    length = _int_entry(model, location, entries, "length")
    expected = _expected_bytes(tensor)
    if expected is None:
        raise _refuse(model, location, f"tensor {tensor.name!r} has no fixed-size type")
    length = expected if length is None else length
    if length != expected:
        raise _refuse(
            model, location, f"length {length} but tensor {tensor.name!r} takes {expected} bytes"
        )
    # O_NOFOLLOW: the file checked above must be the file read, not a link swapped in.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise _refuse(model, location, "not a regular file")
        size = os.fstat(f.fileno()).st_size
        if offset + length > size:
            raise _refuse(
                model, location, f"bytes {offset}..{offset + length} past its end ({size})"
            )
        f.seek(offset)
        return f.read(length)


def inline_external_data(model_proto: Any, model_path: Path) -> int:
    """Read every external tensor of ``model_proto`` (loaded from ``model_path`` without
    its external data) from beside the model into the proto; returns how many. Refuses
    (:class:`ExportError`, naming the model and the location) anything but a plain file
    in the model's own folder, before reading any."""
    external = [t for t in model_tensors(model_proto) if is_external(t)]
    for t in external:  # check all first: nothing is read from a model that fails later
        loc = next((e.value for e in t.external_data if e.key == "location"), "")
        _plain_name(model_path, loc)
    for t in external:
        t.raw_data = _read_beside(model_path, t)
        del t.external_data[:]
        t.data_location = _DEFAULT
    return len(external)


def read_onnx_file(path: Path) -> Any:
    """The model proto of an ``.onnx`` file, external data inlined (see module docs)."""
    onnx = require_onnx()
    if not path.is_file():
        raise ExportError(f"{path}: no such ONNX file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf decode errors
        raise ExportError(f"{path}: not a readable ONNX file ({one_line(exc)})") from None
    inline_external_data(proto, path)
    return proto


def check_no_external_data(data: bytes, source: str) -> None:
    """Refuse model bytes that reference external data: bytes have no folder, so
    onnxruntime would look for it in the current working folder."""
    onnx = require_onnx()
    try:
        proto = onnx.load_from_string(data)
    except Exception as exc:  # protobuf decode errors
        raise ExportError(f"{source}: not a readable ONNX model ({one_line(exc)})") from None
    for t in model_tensors(proto):
        if is_external(t):
            loc = next((e.value for e in t.external_data if e.key == "location"), "")
            raise ExportError(
                f"{source}: the model references external data {loc!r}; an in-memory model "
                "must carry its tensors (load the file with sisr.export.ort.load_onnx)"
            )


# --------------------------------------------------------------------------- sessions


def ort_session(data: bytes, source: str, *, threads: int | None = None) -> Any:
    """An onnxruntime CPU session for model ``data`` (bytes without external data);
    failures are one-line :class:`ExportError` naming ``source``."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError(
            "--runtime onnxruntime needs onnxruntime: pip install 'sisr[onnx]'"
        ) from None
    if not isinstance(data, bytes):
        raise TypeError("ort_session takes model bytes (read files with read_onnx_file)")
    check_no_external_data(data, source)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own error types (invalid graph, ...)
        raise ExportError(
            f"{source}: onnxruntime cannot load the model ({one_line(exc)})"
        ) from None


__all__ = [
    "RULE",
    "check_no_external_data",
    "inline_external_data",
    "is_external",
    "model_tensors",
    "one_line",
    "ort_session",
    "read_onnx_file",
]
