"""Whole-model pickles written opcode by opcode, the way each torch generation wrote them.

No pickler is involved: :class:`Ops` emits the bytes of each opcode for one protocol
(0: the text opcodes, 1 and 2: the binary ones), and :class:`Writer` lays out a model
described by :class:`Module` / :class:`Param` / :class:`Tensor` / :class:`Stored` records
in one :class:`Style`: how ``Parameter`` was reduced (torch 0.1 ... 2.x), which tensor
rebuilder, how modules and ``OrderedDict`` were reduced, and Python 2 names and strings
(``__builtin__``, ``copy_reg``, ``str`` as bytes). :func:`describe` turns a real
``nn.Module`` into such a description (its ``state_dict()`` is what a reader must recover),
and :func:`write_zip` / :func:`write_legacy` wrap the pickle in either ``torch.save`` layout.

torch always writes persistent ids with ``BINPERSID`` (a text ``PERSID`` only holds a
string, which torch's loader never accepted), so protocol 0 pickles here use text opcodes
for everything but that one.
"""

from __future__ import annotations

import collections
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tests.hub.craft import LEGACY_MAGIC, Archive

# --- opcodes -------------------------------------------------------------------------------


class Ops:
    """A pickle being written, one opcode at a time, in ``protocol``'s opcodes."""

    def __init__(self, protocol: int) -> None:
        self.protocol = protocol
        self.out = bytearray(b"\x80" + bytes([protocol]) if protocol >= 2 else b"")
        self.memo = 0

    @property
    def binary(self) -> bool:
        return self.protocol >= 1

    def op(self, raw: bytes) -> Ops:
        self.out += raw
        return self

    def mark(self) -> Ops:
        return self.op(b"(")

    def stop(self) -> bytes:
        return bytes(self.op(b".").out)

    def none(self) -> Ops:
        return self.op(b"N")

    def bool(self, value: bool) -> Ops:
        if self.protocol >= 2:
            return self.op(b"\x88" if value else b"\x89")  # NEWTRUE / NEWFALSE
        return self.op(b"I01\n" if value else b"I00\n")

    def int(self, value: int) -> Ops:
        if not self.binary:
            return self.op(b"I%d\n" % value)
        if 0 <= value < 256:
            return self.op(b"K" + bytes([value]))  # BININT1
        if 0 <= value < 65536:
            return self.op(b"M" + struct.pack("<H", value))  # BININT2
        if -(2**31) <= value < 2**31:
            return self.op(b"J" + struct.pack("<i", value))  # BININT
        return self.long(value)

    def long(self, value: int) -> Ops:
        if self.protocol >= 2:  # LONG1: little-endian two's complement
            raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
            return self.op(b"\x8a" + bytes([len(raw)]) + raw)
        return self.op(b"L%dL\n" % value)  # LONG, as Python 2 wrote it

    def float(self, value: float) -> Ops:
        if self.binary:
            return self.op(b"G" + struct.pack(">d", value))  # BINFLOAT
        return self.op(b"F" + repr(value).encode() + b"\n")

    def bytestring(self, text: str) -> Ops:
        """A Python 2 ``str`` (bytes; Python 3 reads it with ``encoding='latin1'``)."""
        data = text.encode("latin1")
        if not self.binary:
            return self.op(b"S" + repr(data)[1:].encode() + b"\n")  # STRING 'text'
        if len(data) < 256:
            return self.op(b"U" + bytes([len(data)]) + data)  # SHORT_BINSTRING
        return self.op(b"T" + struct.pack("<i", len(data)) + data)  # BINSTRING

    def unicode(self, text: str) -> Ops:
        if not self.binary:
            assert "\\" not in text and "\n" not in text
            return self.op(b"V" + text.encode("raw-unicode-escape") + b"\n")
        data = text.encode("utf-8")
        return self.op(b"X" + struct.pack("<I", len(data)) + data)  # BINUNICODE

    def glob(self, module: str, name: str) -> Ops:
        return self.op(b"c" + f"{module}\n{name}\n".encode())  # GLOBAL

    def empty_tuple(self) -> Ops:
        return self.op(b")" if self.binary else b"(t")

    def tuple(self) -> Ops:
        """TUPLE: everything since the last MARK."""
        return self.op(b"t")

    def empty_list(self) -> Ops:
        return self.op(b"]" if self.binary else b"(l")

    def empty_dict(self) -> Ops:
        return self.op(b"}" if self.binary else b"(d")

    def append(self) -> Ops:
        return self.op(b"a")

    def setitem(self) -> Ops:
        return self.op(b"s")

    def reduce(self) -> Ops:
        return self.op(b"R")

    def build(self) -> Ops:
        return self.op(b"b")

    def newobj(self) -> Ops:
        assert self.protocol >= 2
        return self.op(b"\x81")

    def binpersid(self) -> Ops:
        return self.op(b"Q")

    def put(self) -> int:
        index, self.memo = self.memo, self.memo + 1
        if not self.binary:
            self.op(b"p%d\n" % index)
        elif index < 256:
            self.op(b"q" + bytes([index]))  # BINPUT
        else:
            self.op(b"r" + struct.pack("<I", index))  # LONG_BINPUT
        return index

    def get(self, index: int) -> Ops:
        if not self.binary:
            return self.op(b"g%d\n" % index)
        if index < 256:
            return self.op(b"h" + bytes([index]))  # BINGET
        return self.op(b"j" + struct.pack("<I", index))  # LONG_BINGET


# --- what a model pickle holds -------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Stored:
    """A storage: its key, type name (``FloatStorage``...), elements and bytes."""

    key: str
    type_name: str
    numel: int
    data: bytes


@dataclass(frozen=True, eq=False)
class Tensor:
    storage: Stored
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class Param:
    tensor: Tensor
    cls: str = "torch.nn.parameter.Parameter"  # or torch.autograd.variable.Variable


@dataclass(frozen=True, eq=False)
class Module:
    """A pickled ``nn.Module``: its class (``module.Name``) and ``__dict__``."""

    cls: str
    attrs: dict[str, Any]


@dataclass(frozen=True, eq=False)
class Call:
    """``module.name(*args)`` as GLOBAL + REDUCE (what a hostile or odd pickle asks for)."""

    module: str
    name: str
    args: tuple[Any, ...] = ()


# Parameter reductions, by torch version:
PARAMETER_FORMS = {
    # 0.1: Parameter.__reduce_ex__ -> (type(self), (data, requires_grad), (grad, hooks))
    "data_grad",
    # 0.2-0.3, protocol 2: Variable.__reduce_ex__ -> (type(self), (data,), (rg, volatile,
    # hooks)), i.e. REDUCE then BUILD
    "reduce_build",
    # 0.2-0.3, protocol 0/1: (copy_reg.__newobj__, (type(self), data), state)
    "newobj_build",
    # 0.4.0: (Parameter, (super(Parameter, self), requires_grad)); the super() object
    # pickles as the tensor (_rebuild_tensor_v2)
    "super_args",
    # 1.0-2.x: (torch._utils._rebuild_parameter, (data, requires_grad, OrderedDict()))
    "rebuild_parameter",
    # 2.x, a Parameter with extra attributes
    "with_state",
}


@dataclass(frozen=True)
class Style:
    """How one torch / Python generation pickled a model."""

    protocol: int = 2
    py2: bool = False  # Python 2: str as bytes, __builtin__ / copy_reg
    parameter: str = "rebuild_parameter"  # one of PARAMETER_FORMS
    tensor: str = "v2"  # "v1": _rebuild_tensor(storage, offset, size, stride); "v2": + flags
    module: str = "newobj"  # or "reconstructor" (copy_reg._reconstructor, protocol 0/1)
    ordered_dict: str = "py3"  # "py2": OrderedDict([[k, v], ...]); "py3": OrderedDict() + items
    backend: bool = False  # torch <= 0.3 modules hold _backend (a THNN backend getter call)

    def __post_init__(self) -> None:
        assert self.parameter in PARAMETER_FORMS, self.parameter
        assert self.protocol >= 2 or self.module == "reconstructor"  # NEWOBJ is protocol 2


class Writer:
    """Writes a description in one style; ``legacy`` selects the pre-zip persistent ids."""

    def __init__(self, style: Style, *, legacy: bool) -> None:
        self.style = style
        self.legacy = legacy
        self.ops = Ops(style.protocol)
        self.memo: dict[int, int] = {}
        self.alive: list[Any] = []  # what the memo refers to: ids stay unique

    def pickle(self, obj: Any) -> bytes:
        self.value(obj)
        return self.ops.stop()

    # -- plain values ---------------------------------------------------------------------

    def builtin(self) -> str:
        return "__builtin__" if self.style.py2 else "builtins"

    def copyreg(self) -> str:
        return "copy_reg" if self.style.py2 else "copyreg"

    def string(self, text: str) -> None:
        if self.style.py2:
            self.ops.bytestring(text)
        else:
            self.ops.unicode(text)

    def value(self, obj: Any) -> None:
        ops = self.ops
        if id(obj) in self.memo:
            ops.get(self.memo[id(obj)])
        elif obj is None:
            ops.none()
        elif isinstance(obj, bool):
            ops.bool(obj)
        elif isinstance(obj, int):
            ops.int(obj)
        elif isinstance(obj, float):
            ops.float(obj)
        elif isinstance(obj, str):
            self.string(obj)
        elif isinstance(obj, tuple):
            self.sequence(obj)
            ops.tuple()
        elif isinstance(obj, list):
            ops.empty_list()
            self.remember(obj)
            self.items(obj)
        elif isinstance(obj, collections.OrderedDict):
            self.ordered_dict(obj)
        elif isinstance(obj, dict):
            ops.empty_dict()
            self.remember(obj)
            self.setitems(obj)
        elif isinstance(obj, set | frozenset):
            ops.glob(self.builtin(), "set")
            ops.mark()
            self.value(sorted(obj))
            ops.tuple().reduce()
        else:
            self.record(obj)

    def remember(self, obj: Any) -> None:
        self.memo[id(obj)] = self.ops.put()
        self.alive.append(obj)

    def sequence(self, items: Any) -> None:
        self.ops.mark()
        for item in items:
            self.value(item)

    def items(self, items: list[Any]) -> None:
        if not items:
            return
        if self.ops.binary:
            self.sequence(items)
            self.ops.op(b"e")  # APPENDS
            return
        for item in items:
            self.value(item)
            self.ops.append()

    def setitems(self, items: dict[Any, Any]) -> None:
        if not items:
            return
        if self.ops.binary:
            self.ops.mark()
            for k, v in items.items():
                self.value(k)
                self.value(v)
            self.ops.op(b"u")  # SETITEMS
            return
        for k, v in items.items():
            self.value(k)
            self.value(v)
            self.ops.setitem()

    def ordered_dict(self, od: collections.OrderedDict[Any, Any]) -> None:
        self.ops.glob("collections", "OrderedDict")
        if self.style.ordered_dict == "py2":  # OrderedDict.__reduce__ of Python 2
            self.ops.mark()
            self.value([[k, v] for k, v in od.items()])
            self.ops.tuple().reduce()
            self.remember(od)
            return
        self.ops.empty_tuple().reduce()
        self.remember(od)
        self.setitems(dict(od))

    # -- torch objects --------------------------------------------------------------------

    def record(self, obj: Any) -> None:
        if isinstance(obj, Stored):
            self.persistent_id(obj)
        elif isinstance(obj, Tensor):
            self.tensor(obj)
        elif isinstance(obj, Param):
            self.parameter(obj)
        elif isinstance(obj, Module):
            self.module(obj)
        elif isinstance(obj, Call):
            self.ops.glob(obj.module, obj.name)
            self.value(obj.args)
            self.ops.reduce()
            self.remember(obj)
        else:
            raise TypeError(f"cannot write {type(obj).__name__}")

    def persistent_id(self, storage: Stored) -> None:
        ops = self.ops
        ops.mark()
        self.string("storage")
        ops.glob("torch", storage.type_name)
        self.string(storage.key)
        self.string("cpu")
        ops.int(storage.numel)
        if self.legacy:
            ops.none()  # view metadata: None for a whole storage
        ops.tuple().binpersid()

    def tensor(self, t: Tensor) -> None:
        ops = self.ops
        v1 = self.style.tensor == "v1"
        ops.glob("torch._utils", "_rebuild_tensor" if v1 else "_rebuild_tensor_v2")
        ops.mark()
        self.persistent_id(t.storage)
        ops.int(t.offset)
        self.value(tuple(t.size))
        self.value(tuple(t.stride))
        if not v1:
            ops.bool(False)
            self.value(collections.OrderedDict())
        ops.tuple().reduce()
        self.remember(t)

    def parameter(self, p: Param) -> None:
        ops, form = self.ops, self.style.parameter
        module, name = p.cls.rsplit(".", 1)
        if form in ("rebuild_parameter", "with_state"):
            rebuilder = "_rebuild_parameter" + "_with_state" * (form == "with_state")
            ops.glob("torch._utils", rebuilder)
            ops.mark()
            self.value(p.tensor)
            ops.bool(True)
            self.value(collections.OrderedDict())
            if form == "with_state":
                self.value({"_sisr_note": "extra"})
            ops.tuple().reduce()
            self.remember(p)
            return
        if form == "newobj_build":
            ops.glob(self.copyreg(), "__newobj__")
            ops.mark()
            ops.glob(module, name)
            self.value(p.tensor)
            ops.tuple().reduce()
        else:
            ops.glob(module, name)
            ops.mark()
            self.value(p.tensor)
            if form in ("data_grad", "super_args"):
                ops.bool(True)
            ops.tuple().reduce()
        self.remember(p)
        if form == "data_grad":
            self.value((None, collections.OrderedDict()))  # (grad, backward hooks)
            ops.build()
        elif form in ("reduce_build", "newobj_build"):
            self.value((True, False, collections.OrderedDict()))  # (rg, volatile, hooks)
            ops.build()

    def module(self, m: Module) -> None:
        ops = self.ops
        module, name = m.cls.rsplit(".", 1)
        if self.style.module == "newobj":
            ops.glob(module, name)
            ops.empty_tuple().newobj()
        else:  # protocol 0/1: copy_reg._reconstructor(cls, object, None)
            ops.glob(self.copyreg(), "_reconstructor")
            ops.mark()
            ops.glob(module, name)
            ops.glob(self.builtin(), "object")
            ops.none()
            ops.tuple().reduce()
        self.remember(m)
        attrs = dict(m.attrs)
        if self.style.backend:
            attrs = {"_backend": Call("torch.nn.backends.thnn", "_get_thnn_function_backend")}
            attrs.update(m.attrs)
        self.value(attrs)
        ops.build()


# --- descriptions of real modules ----------------------------------------------------------

_STORAGE_TYPES = {
    torch.float32: "FloatStorage",
    torch.float64: "DoubleStorage",
    torch.float16: "HalfStorage",
    torch.int64: "LongStorage",
    torch.uint8: "ByteStorage",
}


@dataclass
class Description:
    """A module as records, and the storages its pickle refers to (key -> record)."""

    root: Module
    storages: dict[str, Stored] = field(default_factory=dict)


def describe(net: nn.Module, *, root_class: str | None = None) -> Description:
    """Records for ``net`` and its sub-modules (shared modules and tensors stay shared), each
    tensor in its own storage; ``root_class`` renames the top module's class."""
    desc = Description(Module("", {}))
    seen: dict[int, Any] = {}

    def tensor(t: torch.Tensor) -> Tensor:
        if id(t) not in seen:
            flat = t.detach().contiguous()
            key = str(len(desc.storages))
            stored = Stored(key, _STORAGE_TYPES[t.dtype], flat.numel(), flat.numpy().tobytes())
            desc.storages[key] = stored
            seen[id(t)] = Tensor(stored, 0, tuple(flat.shape), tuple(flat.stride()))
        return seen[id(t)]

    def module(m: nn.Module, cls: str | None) -> Module:
        if id(m) in seen:
            return seen[id(m)]
        attrs: dict[str, Any] = {"training": m.training}
        for k, v in vars(m).items():
            if not k.startswith("_") and isinstance(v, int | float | str | tuple | type(None)):
                attrs[k] = v
        params = collections.OrderedDict(
            (k, None if p is None else Param(tensor(p))) for k, p in m._parameters.items()
        )
        buffers = collections.OrderedDict(
            (k, None if b is None else tensor(b)) for k, b in m._buffers.items()
        )
        attrs.update(
            _parameters=params,
            _buffers=buffers,
            _backward_hooks=collections.OrderedDict(),
            _forward_hooks=collections.OrderedDict(),
            _forward_pre_hooks=collections.OrderedDict(),
        )
        if m._non_persistent_buffers_set:
            attrs["_non_persistent_buffers_set"] = set(m._non_persistent_buffers_set)
        record = Module(cls or f"{type(m).__module__}.{type(m).__qualname__}", attrs)
        seen[id(m)] = record
        attrs["_modules"] = collections.OrderedDict(
            (k, None if c is None else module(c, None)) for k, c in m._modules.items()
        )
        return record

    desc.root = module(net, root_class)
    return desc


# --- the two torch.save layouts ------------------------------------------------------------


def write_zip(path: Path, pickle_bytes: bytes, data: dict[str, bytes]) -> Path:
    """torch >= 1.6: ``archive/data.pkl`` and ``archive/data/KEY`` per storage."""
    return Archive(pickle_bytes=pickle_bytes, data=data).write(path)


def write_legacy(path: Path, style: Style, obj: Any, storages: dict[str, Stored]) -> Path:
    """torch < 1.6: magic number, protocol, system info, the object, the storage keys
    (each a hand-written pickle in ``style``), then per storage its element count and
    bytes."""

    def one(value: Any) -> bytes:
        return Writer(style, legacy=True).pickle(value)

    info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4, "long": 8}}
    out = bytearray()
    out += Ops(style.protocol).long(LEGACY_MAGIC).stop()
    out += one(1001) + one(info) + one(obj) + one(list(storages))
    for stored in storages.values():
        out += struct.pack("<q", stored.numel) + stored.data
    path.write_bytes(bytes(out))
    return path


def write_model(
    path: Path, style: Style, obj: Any, storages: dict[str, Stored], *, legacy: bool
) -> Path:
    """``obj`` (records) in either layout."""
    if legacy:
        return write_legacy(path, style, obj, storages)
    pkl = Writer(style, legacy=False).pickle(obj)
    return write_zip(path, pkl, {k: s.data for k, s in storages.items()})


__all__ = [
    "PARAMETER_FORMS",
    "Call",
    "Description",
    "Module",
    "Ops",
    "Param",
    "Stored",
    "Style",
    "Tensor",
    "Writer",
    "describe",
    "write_legacy",
    "write_model",
    "write_zip",
]
