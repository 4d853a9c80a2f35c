"""Read ``torch.save`` files without ``torch.load``: every size the file states is checked
before it is allocated, and nothing from the file runs.

Both formats ``torch.save`` writes are read here:

* zip (torch >= 1.6): ``ROOT/data.pkl`` plus one entry ``ROOT/data/KEY`` per storage;
* legacy (``_use_new_zipfile_serialization=False``, and every torch before 1.6, Python 2
  included): four pickles (magic number, protocol, system info, the object), the storage
  keys, then each storage's element count and bytes. The pickles are protocol 2 unless the
  file was saved with ``pickle_protocol=0/1``.

A file can be tiny on disk and still ask for gigabytes: a deflate-compressed entry of
zeros, a storage that claims more elements than its entry holds, a tensor whose zero or
overlapping strides make a 1-element storage look like a 1.4 GB weight, a pickle whose
shared references expand exponentially. So before anything is allocated:

1. the pickle is scanned against object, depth and expansion limits
   (:func:`sisr.hub.unpickle.scan_pickle`);
2. compressed entries may hold at most :data:`MAX_COMPRESSED_BYTES` in all (``torch.save``
   never compresses);
3. each storage's declared size (elements x item size) must fit in the bytes the file
   really stores for it;
4. each tensor's view (size, stride, offset) must lie inside its storage, and all views
   together may take at most ``MATERIALISE_FACTOR`` x the stored bytes (+ a small slack)
   once made contiguous, which bounds zero and overlapping strides.

Errors are :class:`~sisr.errors.WeightsError` naming the file, the problem and the limit,
in sisr's words (torch's advice to retry with ``weights_only=False`` never reaches a user).
"""

from __future__ import annotations

import io
import math
import mmap
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sisr.errors import WeightsError
from sisr.hub import unpickle
from sisr.hub.unpickle import Inert, InertUnpickler, PickleLimitError, scan_pickle

# Uncompressed bytes of all deflate-compressed entries together. torch.save stores data
# uncompressed, so only a re-zipped checkpoint has any; a bomb has a 1000x ratio.
MAX_COMPRESSED_BYTES = 64 << 20
# Contiguous bytes all tensors may take, as a multiple of the bytes stored for them:
# tied weights count twice; anything beyond is zero / overlapping strides inflating data.
MATERIALISE_FACTOR = 2
MATERIALISE_SLACK = 16 << 20
# Zip entries (one per storage in torch.save files; RRDBNet has 702).
MAX_ENTRIES = 50_000
MAX_DIMS = 16
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
# A legacy file saved with pickle protocol 0 or 1 (no PROTO opcode) starts with the magic
# number as a text LONG opcode.
_TEXT_MAGIC = b"L%dL\n" % LEGACY_MAGIC

_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
    "UntypedStorage": torch.uint8,
}


@dataclass(frozen=True)
class StorageType:
    """``torch.FloatStorage`` & co. as the pickle names them: only the dtype matters."""

    name: str
    dtype: torch.dtype


@dataclass
class Storage:
    """One storage of the file: its bytes as a flat tensor (filled before or after use)."""

    key: str
    dtype: torch.dtype
    numel: int
    flat: torch.Tensor


class _Refused(Exception):
    """A limit or consistency check failed (the message, without the file name)."""


class _Damaged(_Refused):
    """The file is not a well-formed checkpoint (truncated, corrupt, unsupported)."""


class _NotCheckpoint(_Refused):
    """The file is something else torch writes (its message says what)."""


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB" if n >= 1 << 20 else f"{n:,} bytes"


def view_extent(size: Any, stride: Any, offset: Any) -> tuple[int, int]:
    """(elements of the tensor, storage elements its view reaches) for a size/stride/offset.

    Raises _Refused for geometry no real tensor has (negative, mismatched, absurd).
    """
    if not isinstance(size, tuple | list) or not isinstance(stride, tuple | list):
        raise _Refused("a tensor's size or stride is not a tuple")
    if len(size) != len(stride) or len(size) > MAX_DIMS:
        raise _Refused(f"a tensor has {len(size)} sizes and {len(stride)} strides")
    values = [*size, *stride, offset]
    if not all(type(v) is int and 0 <= v < 1 << 48 for v in values):
        raise _Refused(f"a tensor has an invalid size {size}, stride {stride} or offset")
    numel = math.prod(size)
    if numel == 0:
        return 0, 0
    return numel, offset + 1 + sum((s - 1) * st for s, st in zip(size, stride, strict=True))


class _Reader:
    """State shared by one file's unpickler: its storages and the memory budget."""

    def __init__(self, stored_bytes: int) -> None:
        self.budget = MATERIALISE_FACTOR * stored_bytes + MATERIALISE_SLACK
        self.stored_bytes = stored_bytes
        self.materialised = 0
        self.storages: dict[str, Storage] = {}

    # -- tensors -----------------------------------------------------------------------

    def tensor(self, storage: Any, offset: Any, size: Any, stride: Any) -> torch.Tensor:
        if not isinstance(storage, Storage):
            raise _Refused("a tensor is rebuilt from something that is not a storage")
        numel, extent = view_extent(tuple(size), tuple(stride), offset)
        if extent > storage.numel:
            raise _Refused(
                f"a tensor of size {tuple(size)}, stride {tuple(stride)}, offset {offset} "
                f"reaches element {extent:,} of storage '{storage.key}', which holds "
                f"{storage.numel:,}"
            )
        self.materialised += numel * storage.flat.element_size()
        if self.materialised > self.budget:
            raise _Refused(
                f"its tensors would take {_mib(self.materialised)}+ in memory from "
                f"{_mib(self.stored_bytes)} stored (zero or overlapping strides; the limit "
                f"is {MATERIALISE_FACTOR} x the stored bytes + {_mib(MATERIALISE_SLACK)})"
            )
        if numel == 0:
            return storage.flat.new_empty(tuple(size))
        base = storage.flat.storage_offset()  # non-zero for old-style storage views
        return storage.flat.as_strided(tuple(size), tuple(stride), base + offset)

    def rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> Any:
        """``torch._utils._rebuild_tensor`` / ``_v2``: requires_grad, hooks and metadata
        only matter for training, and are dropped."""
        return self.tensor(storage, offset, size, stride)

    def rebuild_tensor_v3(
        self, storage: Any, offset: Any, size: Any, stride: Any, rg: Any, hooks: Any, dtype: Any
    ) -> Any:
        """``_rebuild_tensor_v3``: the storage bytes read as ``dtype``."""
        if (
            isinstance(storage, Storage)
            and isinstance(dtype, torch.dtype)
            and dtype != storage.dtype
        ):
            nbytes = storage.numel * storage.flat.element_size()
            if nbytes % _itemsize(dtype):
                raise _Refused(f"storage '{storage.key}' is not a whole number of {dtype}")
            flat = storage.flat.view(torch.uint8).view(dtype)
            storage = Storage(storage.key, dtype, flat.numel(), flat)
        return self.tensor(storage, offset, size, stride)

    @staticmethod
    def rebuild_parameter(data: Any, *_: Any) -> Any:
        """A Parameter is its data here: nothing is trained from a checkpoint read."""
        return data

    def rebuild_from_type(self, func: Any, new_type: Any, args: Any, state: Any) -> Any:
        """``torch._tensor._rebuild_from_type_v2`` (tensor with attributes or a subclass):
        the tensor, when ``func`` is one of the rebuilders here; else an inert record."""
        if getattr(func, "__self__", None) is self and isinstance(args, tuple):
            return func(*args)
        return Inert(func, new_type, args, state)

    def globals(self) -> dict[tuple[str, str], Callable[..., Any]]:
        return {
            ("torch._utils", "_rebuild_tensor"): self.rebuild_tensor,
            ("torch._utils", "_rebuild_tensor_v2"): self.rebuild_tensor,
            ("torch._utils", "_rebuild_tensor_v3"): self.rebuild_tensor_v3,
            ("torch._utils", "_rebuild_parameter"): self.rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): self.rebuild_parameter,
            ("torch._tensor", "_rebuild_from_type_v2"): self.rebuild_from_type,
        }

    # -- storages ----------------------------------------------------------------------

    def declared(self, pid: Any) -> tuple[StorageType, str, int]:
        """(type, key, elements) of a storage persistent id, checked for shape only."""
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise _Damaged(f"unknown persistent id {str(pid)[:80]}")
        kind, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(kind, StorageType):
            raise _Damaged(f"storage of unknown type {str(kind)[:80]}")
        if not isinstance(key, str | int) or type(numel) is not int or numel < 0:
            raise _Damaged(f"storage declaration {str(pid)[:80]} is malformed")
        return kind, str(key), numel


class _Unpickler(InertUnpickler):
    """The inert unpickler plus the reader's tensor rebuilders, storage types and ids."""

    def __init__(self, data: bytes, reader: _Reader, load: Callable[[Any], Any], strict: bool):
        super().__init__(io.BytesIO(data), strict=strict)
        self._rebuilders = reader.globals()
        self._load = load

    def find_class(self, module: str, name: str) -> Any:
        found = self._rebuilders.get((module, name))
        if found is not None:
            return found
        if module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
            return StorageType(name, _STORAGE_DTYPES[name])
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        return self._load(pid)


def _unpickle(data: bytes, reader: _Reader, load: Callable[[Any], Any], strict: bool) -> Any:
    """Scan, then unpickle, one pickle: its limits are checked before any object exists."""
    scan_pickle(data)
    return _Unpickler(data, reader, load, strict).load()


# --- zip archives ----------------------------------------------------------------------

_LOCAL_HEADER = struct.Struct("<4s5H3L2H")


def _zip_kind(names: list[str]) -> str | None:
    """What a zip that is not a torch.save checkpoint is, from its entry names."""
    rel = {n.split("/", 1)[-1] for n in names}
    if "constants.pkl" in rel or any(r.startswith("code/") for r in rel):
        return (
            "a TorchScript program (torch.jit.save), which is code, not just weights; "
            "sisr reads weights only: use the .safetensors weights it was made from"
        )
    if "archive_format" in rel or any("serialized_exported_program" in r for r in rel):
        return (
            "a torch.export program (.pt2), which is code, not just weights; "
            "sisr reads weights only: use the .safetensors weights it was made from"
        )
    return None


_END = struct.Struct("<4s4H2LH")  # end of central directory record


def _declared_entries(f: Any, size: int) -> int:
    """The entry count a zip's end record states (zip64 too); 0 when there is none."""
    tail_len = min(size, _END.size + 0xFFFF)  # the record, then a comment of up to 64 KiB
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _END.size > len(tail):
        return 0  # zipfile reports the damage
    total = _END.unpack_from(tail, at)[4]
    if total == 0xFFFF and at >= 20 and tail[at - 20 : at - 16] == b"PK\x06\x07":
        f.seek(struct.unpack_from("<Q", tail, at - 12)[0])
        record = f.read(40)
        if len(record) == 40 and record[:4] == b"PK\x06\x06":
            total = struct.unpack_from("<Q", record, 32)[0]
    return int(total)


class _ZipFile:
    """One torch zip checkpoint: entry checks, then storages read on demand."""

    def __init__(self, f: Any, size: int) -> None:
        self.f = f
        self.size = size
        entries = _declared_entries(f, size)
        if entries > MAX_ENTRIES:  # before zipfile makes an object for each
            raise _Refused(f"the archive has {entries:,} entries (limit {MAX_ENTRIES:,})")
        try:
            self.zf = zipfile.ZipFile(f)
            infos = self.zf.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise _Damaged(f"truncated or damaged zip archive: {exc}") from exc
        if len(infos) > MAX_ENTRIES:
            raise _Refused(f"the archive has {len(infos):,} entries (limit {MAX_ENTRIES:,})")
        names = [i.filename for i in infos]
        pickles = [n for n in names if n.split("/")[-1] == "data.pkl" and n.count("/") <= 1]
        kind = _zip_kind(names)
        if kind is not None:
            raise _NotCheckpoint(f"this is {kind}")
        if len(pickles) != 1 or len(set(names)) != len(names):
            raise _Damaged(
                "a zip archive, but not a torch.save checkpoint (it has no single data.pkl)"
            )
        self.prefix = pickles[0][: -len("data.pkl")]
        self.infos = {i.filename: i for i in infos}
        self._check_compression(infos)
        order = self._small("byteorder")
        if order not in (None, b"little"):
            raise _Damaged(
                f"the checkpoint is stored {order!r}-endian; sisr reads little-endian files "
                "only (re-save it on a little-endian machine)"
            )
        self.pickle = self._pickle()
        self.stored = sum(
            i.file_size for n, i in self.infos.items() if n.startswith(self.prefix + "data/")
        )

    def _check_compression(self, infos: list[zipfile.ZipInfo]) -> None:
        packed = [i for i in infos if i.compress_type != zipfile.ZIP_STORED]
        total = sum(i.file_size for i in packed)
        if total > MAX_COMPRESSED_BYTES:
            big = max(packed, key=lambda i: i.file_size)
            raise _Refused(
                f"compressed entries would expand to {_mib(total)} (entry '{big.filename}': "
                f"{_mib(big.compress_size)} -> {_mib(big.file_size)}); sisr expands at most "
                f"{_mib(MAX_COMPRESSED_BYTES)} (torch.save never compresses: re-save it)"
            )
        for info in infos:
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise _Damaged(f"entry '{info.filename}' uses an unsupported compression")

    def _small(self, rel: str) -> bytes | None:
        info = self.infos.get(self.prefix + rel)
        if info is None:
            return None
        if info.file_size > 64:
            raise _Damaged(f"entry '{info.filename}' is {info.file_size:,} bytes")
        return self.zf.read(info).strip()

    def _pickle(self) -> bytes:
        info = self.infos[self.prefix + "data.pkl"]
        if info.file_size > (limit := unpickle.MAX_PICKLE_BYTES):
            raise _Refused(f"its pickle is {_mib(info.file_size)} (limit {_mib(limit)})")
        return self.zf.read(info)

    def read_into(self, info: zipfile.ZipInfo, buf: bytearray) -> None:
        """The first ``len(buf)`` bytes of an entry, straight from the file when stored."""
        if info.compress_type != zipfile.ZIP_STORED:
            with self.zf.open(info) as entry:
                data = entry.read(len(buf))
            if len(data) != len(buf):
                raise _Damaged(f"entry '{info.filename}' is truncated")
            buf[:] = data
            return
        self.f.seek(info.header_offset)
        header = self.f.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise _Damaged(f"entry '{info.filename}' has a damaged local header")
        name_len, extra_len = _LOCAL_HEADER.unpack(header)[-2:]
        start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        if start + len(buf) > self.size:
            raise _Damaged(f"entry '{info.filename}' runs past the end of the file (truncated)")
        self.f.seek(start)
        if self.f.readinto(memoryview(buf)) != len(buf):
            raise _Damaged(f"entry '{info.filename}' is truncated")


def _read_zip(path: Path, strict: bool) -> Any:
    with open(path, "rb") as f:
        size = path.stat().st_size
        archive = _ZipFile(f, size)
        reader = _Reader(archive.stored)

        def load(pid: Any) -> Storage:
            kind, key, numel = reader.declared(pid)
            if key in reader.storages:
                return reader.storages[key]
            name = f"{archive.prefix}data/{key}"
            info = archive.infos.get(name)
            if info is None:
                raise _Damaged(f"storage '{key}' has no entry '{name}' (truncated archive)")
            nbytes = numel * _itemsize(kind.dtype)
            if nbytes > info.file_size:
                raise _Refused(
                    f"storage '{key}' declares {numel:,} x {kind.dtype} = {_mib(nbytes)} "
                    f"but its entry holds {_mib(info.file_size)}"
                )
            buf = bytearray(nbytes)
            archive.read_into(info, buf)
            reader.storages[key] = _storage(key, kind.dtype, numel, buf)
            return reader.storages[key]

        return _unpickle(archive.pickle, reader, load, strict)


def _storage(key: str, dtype: torch.dtype, numel: int, buf: bytearray) -> Storage:
    flat = torch.frombuffer(buf, dtype=dtype) if numel else torch.empty(0, dtype=dtype)
    return Storage(key, dtype, numel, flat)


# --- legacy (pre-zip) files --------------------------------------------------------------


def _plain_load(data: mmap.mmap, start: int) -> tuple[Any, int]:
    """A small plain-data pickle (header fields, key list) and where it ends."""
    end = scan_pickle(data, start)
    unpickler = InertUnpickler(io.BytesIO(data[start:end]), strict=True)
    unpickler.persistent_load = _no_persistent  # type: ignore[assignment]
    return unpickler.load(), end


def _no_persistent(pid: Any) -> Any:
    raise pickle.UnpicklingError("persistent id in a header pickle")


def _read_legacy(path: Path, strict: bool) -> Any:
    # Mapped, not read: the file's bytes are copied once, into the storages.
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return _parse_legacy(data, strict)


def _parse_legacy(data: mmap.mmap, strict: bool) -> Any:
    magic, pos = _plain_load(data, 0)
    if magic != LEGACY_MAGIC:
        raise _Damaged("a pickle, but not one torch.save wrote: no torch magic number")
    protocol, pos = _plain_load(data, pos)
    info, pos = _plain_load(data, pos)
    if protocol != LEGACY_PROTOCOL:
        raise _Damaged(f"legacy checkpoint protocol {protocol!r} is not supported")
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise _Damaged("the checkpoint is big-endian; sisr reads little-endian files only")
    main_start = pos
    main_end = scan_pickle(data, main_start)
    keys, data_start = _plain_load(data, main_end)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _Damaged("the storage key list is damaged")
    available = len(data) - data_start
    reader = _Reader(available)
    declared = 0

    def load(pid: Any) -> Any:
        nonlocal declared
        if isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "module":
            return pid[1]  # ('module', class, source file, source): the (inert) class
        kind, key, numel = reader.declared(pid)
        if key not in reader.storages:
            nbytes = numel * _itemsize(kind.dtype)
            declared += nbytes
            if declared > available:
                raise _Refused(
                    f"its storages declare {_mib(declared)} but only {_mib(available)} of "
                    "data follow (truncated or forged)"
                )
            # Filled from the data section below, once its layout is checked.
            reader.storages[key] = _storage(key, kind.dtype, numel, bytearray(nbytes))
        storage = reader.storages[key]
        view = pid[5] if len(pid) > 5 else None
        if view is None:
            return storage
        return _legacy_view(storage, view)

    obj = _Unpickler(data[main_start:main_end], reader, load, strict).load()  # scanned above
    _fill_legacy(data, data_start, keys, reader.storages)
    return obj


def _legacy_view(storage: Storage, view: Any) -> Storage:
    """Old storage views: ``(view key, element offset, element count)`` of a root storage."""
    if not (isinstance(view, tuple) and len(view) == 3):
        raise _Damaged("a storage view is malformed")
    key, offset, count = view
    if not all(type(v) is int and v >= 0 for v in (offset, count)) or offset + count > (
        storage.numel
    ):
        raise _Damaged(f"storage view {key!r} lies outside storage '{storage.key}'")
    return Storage(str(key), storage.dtype, count, storage.flat[offset : offset + count])


def _fill_legacy(data: mmap.mmap, pos: int, keys: list[str], storages: dict[str, Storage]) -> None:
    """Copy each storage's bytes from the data section (count, then bytes, per key)."""
    missing = set(storages) - set(keys)
    if missing:
        raise _Damaged(f"no data for storage '{sorted(missing)[0]}' (truncated file)")
    for key in keys:
        storage = storages.get(key)
        if storage is None:
            raise _Damaged(f"data for an undeclared storage '{key}'")
        if pos + 8 > len(data):
            raise _Damaged("the tensor data is truncated")
        (count,) = struct.unpack_from("<q", data, pos)
        nbytes = storage.numel * storage.flat.element_size()
        if count != storage.numel or pos + 8 + nbytes > len(data):
            raise _Damaged(
                f"storage '{key}' stores {count:,} elements where {storage.numel:,} are "
                "declared, or its data is truncated"
            )
        if nbytes:
            with memoryview(data) as raw:
                storage.flat.view(torch.uint8).numpy()[:] = raw[pos + 8 : pos + 8 + nbytes]
        pos += 8 + nbytes


# --- entry point ---------------------------------------------------------------------------


def describe_start(head: bytes) -> str | None:
    """Why a file is not a torch.save file at all, from its first bytes (None: it may be)."""
    if not head:
        return "the file is empty"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80" or head.startswith(_TEXT_MAGIC[:8]):
        return None
    return (
        f"it starts with {head[:8]!r}, neither a zip archive nor a pickle as torch.save "
        "writes them: the file is damaged or not a checkpoint"
    )


def read_torch_file(
    path: str | Path, *, strict: bool = False, hint: str = "", what: str = "PyTorch checkpoint"
) -> Any:
    """What a ``torch.save`` file holds, tensors included, with nothing of the file run.

    Classes outside a small allow-list become :class:`~sisr.hub.unpickle.Inert` records;
    with ``strict=True`` they are refused instead (plain-data files), the message ending
    with ``hint`` (what the user can do instead). ``what`` names the kind of file expected
    in messages about unreadable files.

    Raises:
        WeightsError: naming the file, for a damaged, hostile or non-torch file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    why = describe_start(head)
    if why is not None:
        raise WeightsError(f"{path}: not a readable {what} ({why})")

    read = _read_zip if head.startswith(b"PK") else _read_legacy
    try:
        return read(path, strict)
    except _NotCheckpoint as exc:
        raise WeightsError(f"{path}: {exc}") from None
    except _Damaged as exc:
        raise WeightsError(f"{path}: not a readable {what} ({exc})") from None
    except _Refused as exc:
        raise WeightsError(f"{path}: refused: {exc}") from None
    except PickleLimitError as exc:
        raise WeightsError(f"{path}: refused: {exc}") from None
    except pickle.UnpicklingError as exc:
        detail = str(exc)
        if detail.startswith("GLOBAL "):
            raise WeightsError(
                f"{path}: refused: it pickles an object of class {detail[7:]}, and this "
                "file may hold tensors and plain data only (sisr never runs pickled code)"
                + (f"; {hint}" if hint else "")
            ) from None
        raise WeightsError(
            f"{path}: not a readable {what} (the pickle data is damaged or not a "
            f"checkpoint: {detail})"
        ) from None
    except (ValueError, EOFError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise WeightsError(
            f"{path}: not a readable {what} (the pickle data is damaged or not a "
            f"checkpoint: {type(exc).__name__}: {exc})"
        ) from None
    except MemoryError:
        raise WeightsError(f"{path}: refused: not enough memory to read it") from None
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None


def load_inert(path: Any) -> Any:
    """Unpickle a torch checkpoint with every non-tensor class replaced by an inert record
    (:func:`read_torch_file` with its defaults; :func:`sisr.hub.unpickle.plain` turns the
    module records into state dicts)."""
    return read_torch_file(path)


def load_error(path: str | Path, exc: BaseException) -> WeightsError:
    """sisr's own message for a file ``torch.load`` failed on, never torch's text (which
    advises retrying with ``weights_only=False``, i.e. running the file's code)."""
    try:
        read_torch_file(path, strict=True)
    except WeightsError as found:
        return found
    return WeightsError(
        f"{path}: not a readable PyTorch checkpoint (torch.load failed: {type(exc).__name__})"
    )


__all__ = [
    "MATERIALISE_FACTOR",
    "MAX_COMPRESSED_BYTES",
    "Storage",
    "StorageType",
    "describe_start",
    "load_error",
    "load_inert",
    "read_torch_file",
    "view_extent",
]
