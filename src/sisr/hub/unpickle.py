"""Unpickle checkpoint data without running anything from the file, within stated limits.

``torch.save(model)`` (or ``{"model": model, ...}``) pickles the network's *class* by
name; unpickling normally imports that class and calls code to rebuild it, which is how a
malicious checkpoint runs ``os.system``. Here every global the file names is replaced by
an inert stand-in: a class becomes a record of its name, constructor arguments and state
(``__dict__``), nothing is imported and nothing of the file's is called. The only real
callables reachable are a few plain container types; the tensor rebuilders are supplied
by :mod:`sisr.hub.torchfile`, which checks every tensor's geometry against its storage.

A pickle is small on disk and can still be huge in memory: memo references make one list
appear eight times, and eight of those eight times more, so a 2 KB file can describe
``8**20`` objects to anything that walks it. :func:`scan_pickle` reads the opcodes
(nothing is built) and refuses, before unpickling, a pickle that creates too many
objects, nests too deeply, or whose shared references expand past a limit; a huge memo
index (the C unpickler sizes its memo table by the largest index) is refused too.

:func:`module_state_dict` flattens a record of an ``nn.Module`` into
``{"conv.weight": tensor, ...}`` exactly as ``state_dict()`` would (parameters and
persistent buffers, in order), and :func:`plain` does that everywhere inside containers,
keeping shared containers shared. Pickles from torch before 1.0 hold each parameter as a
``Parameter`` / ``Variable`` record around its tensor (:func:`tensor_of` unwraps it), and
Python 2 ones name ``__builtin__`` / ``copy_reg`` and store ``str`` as bytes (read as
latin-1). This module reads pickles only: files are opened by :mod:`sisr.hub.torchfile`.
"""

from __future__ import annotations

import codecs
import collections
import io
import mmap
import pickle
import pickletools
from collections.abc import Iterator
from typing import Any

import torch

from sisr.errors import WeightsError

# Limits on what one pickle may describe. A whole-model pickle of a 700-tensor network
# (RRDBNet) is 0.2 MB with 41k objects; its state dict 14k. These leave room for networks
# ten times larger while keeping what the checks and the objects cost near 100 MB.
MAX_PICKLE_BYTES = 32 << 20
MAX_OBJECTS = 500_000
MAX_DEPTH = 100
# Objects reached when every shared reference is followed (what a recursive walk, copy
# or repr of the result visits); sharing in real checkpoints (tied modules, storages,
# repeated key strings) stays within a few times the object count.
MAX_EXPANDED = 4_000_000
# Distinct classes a pickle may name: each stand-in is a class object (~1 KB).
MAX_CLASSES = 10_000
# Entries a flattened module record may have (state_dict keys), shared sub-modules
# counted once per path as state_dict() does.
MAX_STATE_ENTRIES = 200_000


class Inert:
    """A pickled object whose class sisr did not import: its name, arguments and state."""

    __slots__ = ("args", "items", "kwargs", "state")
    _sisr_path = "?"
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    state: Any
    items: list[Any] | None  # only list / dict subclasses fill it

    # __new__, not __init__: NEWOBJ and copyreg._reconstructor create without __init__.
    def __new__(cls, *args: Any, **kwargs: Any) -> Inert:
        self = super().__new__(cls)
        self.args, self.kwargs, self.state, self.items = args, kwargs, None, None
        return self

    def __setstate__(self, state: Any) -> None:  # BUILD: keep, never interpret as code
        self.state = state

    # List / dict subclasses are filled with APPEND(S) and SETITEM(S).
    def append(self, item: Any) -> None:
        if self.items is None:
            self.items = []
        self.items.append(item)

    def extend(self, items: Any) -> None:
        for item in items:
            self.append(item)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.append((key, value))

    def __repr__(self) -> str:
        return f"<inert {self._sisr_path}>"


def _stub(module: str, name: str) -> type[Inert]:
    return type(name, (Inert,), {"_sisr_path": f"{module}.{name}", "__slots__": ()})


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` for stand-in classes only (protocol 0/1 objects)."""
    if isinstance(cls, type) and issubclass(cls, Inert):
        return cls.__new__(cls)
    raise pickle.UnpicklingError(f"refused to reconstruct {cls!r}")


def _newobj(cls: Any, *args: Any) -> Any:
    """``copyreg.__newobj__`` for stand-in classes only: how protocol 0/1 pickles of torch
    0.2-0.3 write ``Variable`` / ``Parameter`` (``__newobj__, (cls, data), state``)."""
    if isinstance(cls, type) and issubclass(cls, Inert):
        return cls.__new__(cls, *args)
    raise pickle.UnpicklingError(f"refused to create {cls!r}")


def _latin1_bytes(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode``, which protocol-2 pickles use for every ``bytes`` value."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refused _codecs.encode other than str -> latin1 bytes")
    return text.encode("latin1")


def _allowed() -> dict[tuple[str, str], Any]:
    import builtins

    table: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("copyreg", "_reconstructor"): _reconstructor,
        ("copy_reg", "_reconstructor"): _reconstructor,
        ("copyreg", "__newobj__"): _newobj,
        ("copy_reg", "__newobj__"): _newobj,
        ("_codecs", "encode"): _latin1_bytes,
        ("torch", "Size"): torch.Size,
    }
    # Containers only (protocol 0-3 sets are REDUCE(set, [items])); str() or repr-like
    # callables would turn a shared structure into one huge string.
    for name in ("set", "frozenset", "list", "dict", "tuple"):
        table[("builtins", name)] = table[("__builtin__", name)] = getattr(builtins, name)
    return table


_ALLOWED = _allowed()


class InertUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` never imports: allow-list or stand-in.

    ``strict=True`` refuses a class outside the allow-list instead (plain-data files such
    as training checkpoints, like ``torch.load(weights_only=True)``).
    """

    def __init__(self, file: Any, *, strict: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("encoding", "latin1")  # Python 2 str: bytes that always decode
        super().__init__(file, **kwargs)
        self.strict = strict
        self._stubs: dict[tuple[str, str], type[Inert]] = {}

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is not None:
            return found
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)  # dtypes are plain values
        return self.stand_in(module, name)

    def stand_in(self, module: str, name: str) -> type[Inert]:
        """The inert class for ``module.name`` (one per name), or refusal in strict mode."""
        key = (str(module), str(name))
        stub = self._stubs.get(key)
        if stub is None:
            if self.strict:
                raise pickle.UnpicklingError(f"GLOBAL {key[0]}.{key[1]}")
            if len(self._stubs) >= MAX_CLASSES:
                raise pickle.UnpicklingError(f"more than {MAX_CLASSES} distinct classes")
            stub = self._stubs[key] = _stub(*key)
        return stub


# --- checking a pickle before unpickling it ------------------------------------------

# What an op that pushes makes: a node of the object graph (the popped items are its
# children) of one of these kinds, or a leaf (None, or a name kept for the checks below).
_CONTAINER, _OBJECT, _TENSOR, _PERSISTENT = 0, 1, 2, 3
_CONTAINERS = frozenset(
    [
        "EMPTY_LIST",
        "EMPTY_TUPLE",
        "EMPTY_DICT",
        "EMPTY_SET",
        "LIST",
        "TUPLE",
        "TUPLE1",
        "TUPLE2",
        "TUPLE3",
        "DICT",
        "FROZENSET",
    ]
)
_CALLS = frozenset({"REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ", "INST"})
_PERSISTENT_IDS = frozenset({"PERSID", "BINPERSID"})
# Ops that add the popped items to the object below them (which stays on the stack).
_FILL_MARKED = frozenset({"APPENDS", "SETITEMS", "ADDITEMS"})
_PUT = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"})
_GET = frozenset({"GET", "BINGET", "LONG_BINGET"})
_TENSOR_MODULES = frozenset({"torch._utils", "torch._tensor"})
_REBUILDER = object()  # the leaf a GLOBAL of a torch tensor rebuilder pushes
# A node is [state, leaves (then: expanded size), depth, kind, *child nodes].
_NEW, _ON_PATH, _DONE = 0, 1, 2
_FIRST_CHILD = 4


class PickleLimitError(ValueError):
    """A pickle that exceeds one of the limits above, or that would change objects it did
    not build (the message says which)."""


def _is_rebuilder(module: Any, name: Any) -> bool:
    return module in _TENSOR_MODULES and isinstance(name, str) and name.startswith("_rebuild_")


def _kept_name(value: Any) -> Any:
    """A string a rebuilder's STACK_GLOBAL may need; anything else is a plain leaf."""
    if isinstance(value, str) and (value in _TENSOR_MODULES or value.startswith("_rebuild_")):
        return value
    return None


def _add(node: list[Any], children: list[Any]) -> None:
    for child in children:
        if isinstance(child, list):
            node.append(child)
        else:
            node[1] += 1


def _fillable(target: Any, kinds: tuple[int, ...], op: str) -> list[Any]:
    """The node an op fills; refused unless the pickle built it as one of ``kinds``.

    BUILD on a tensor would reach ``Tensor.__setstate__`` (``set_``: a huge view of any
    storage, unchecked), on a global it would rewrite a function or class of sisr's.
    """
    if isinstance(target, list) and target[3] in kinds:
        return target
    what = "a tensor" if isinstance(target, list) and target[3] == _TENSOR else "an object"
    raise PickleLimitError(
        f"its pickle changes {what} it did not construct ({op}), which no checkpoint does"
    )


class _Scan:
    """The object graph a pickle describes, as bare nodes."""

    def __init__(self) -> None:
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.objects = 0

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise ValueError("mark missing")
        k = self.marks.pop()
        items = self.stack[k:]
        del self.stack[k:]
        return items

    def pop(self, n: int) -> list[Any]:
        if n > len(self.stack) - (self.marks[-1] if self.marks else 0):
            raise ValueError("stack underflow")
        items = self.stack[len(self.stack) - n :]
        del self.stack[len(self.stack) - n :]
        return items

    def top(self) -> Any:
        if len(self.stack) <= (self.marks[-1] if self.marks else 0):
            raise ValueError("stack underflow")
        return self.stack[-1]

    def step(self, op: pickletools.OpcodeInfo, arg: Any) -> None:
        name = op.name
        stack = self.stack
        if name == "MARK":
            self.marks.append(len(stack))
        elif name in ("PROTO", "FRAME"):
            pass
        elif name == "POP":
            if self.marks and self.marks[-1] == len(stack):
                self.marks.pop()
            else:
                self.pop(1)
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            stack.append(self.top())
        elif name in _PUT:
            index = len(self.memo) if name == "MEMOIZE" else int(arg)
            # The C unpickler grows its memo table to twice the largest index it sees.
            if index > MAX_OBJECTS:
                raise PickleLimitError(
                    f"its pickle uses memo index {index:,} (limit {MAX_OBJECTS:,})"
                )
            self.memo[index] = self.top()
        elif name in _GET:
            if int(arg) not in self.memo:
                raise ValueError(f"memo entry {arg} missing")
            stack.append(self.memo[int(arg)])
        elif name == "BUILD":
            state = self.pop(1)
            _add(_fillable(self.top(), (_OBJECT,), name), state)
        elif name in ("APPEND", "SETITEM"):
            items = self.pop(1 if name == "APPEND" else 2)
            _add(_fillable(self.top(), (_CONTAINER, _OBJECT), name), items)
        elif name in _FILL_MARKED:
            items = self.pop_mark()
            _add(_fillable(self.top(), (_CONTAINER, _OBJECT), name), items)
        else:
            self.generic(op, arg)

    def generic(self, op: pickletools.OpcodeInfo, arg: Any) -> None:
        before = op.stack_before
        if before and before[0] is pickletools.markobject:
            children = self.pop_mark()
        else:
            children = self.pop(len(before))
        if not op.stack_after:
            return
        self.objects += 1
        if self.objects > MAX_OBJECTS:
            raise PickleLimitError(
                f"its pickle creates more than {MAX_OBJECTS:,} objects (the limit)"
            )
        self.stack.append(self._result(op.name, arg, children))

    @staticmethod
    def _result(name: str, arg: Any, children: list[Any]) -> Any:
        if name in _CONTAINERS or name in _PERSISTENT_IDS:
            kind = _CONTAINER if name in _CONTAINERS else _PERSISTENT
        elif name in _CALLS:
            if name == "INST":
                made_by_rebuilder = _is_rebuilder(*str(arg).split(" ", 1))
            else:
                made_by_rebuilder = bool(children) and children[0] is _REBUILDER
            kind = _TENSOR if made_by_rebuilder else _OBJECT
        elif name == "GLOBAL":
            return _REBUILDER if _is_rebuilder(*str(arg).split(" ", 1)) else None
        elif name == "STACK_GLOBAL":
            return _REBUILDER if _is_rebuilder(*children) else None
        else:
            return _kept_name(arg)
        node: list[Any] = [_NEW, 0, 0, kind]
        _add(node, children)
        return node


def _too_deep() -> str:
    return f"its pickle nests containers more than {MAX_DEPTH} deep (the limit)"


def _measure(root: Any) -> tuple[int, int]:
    """(objects reached following every reference, nesting depth) of a scanned graph.

    Iterative, and each node is measured once (shared nodes reuse their result); a
    reference back to a node being measured (a cycle) counts as one object.
    """
    if not isinstance(root, list):
        return 1, 0
    root[0] = _ON_PATH
    path: list[list[Any]] = [[root, _FIRST_CHILD]]
    while path:
        frame = path[-1]
        node, i = frame
        if i < len(node):
            frame[1] = i + 1
            child = node[i]
            if child[0] == _NEW:
                if len(path) > MAX_DEPTH:
                    raise PickleLimitError(_too_deep())
                child[0] = _ON_PATH
                path.append([child, _FIRST_CHILD])
            continue
        path.pop()
        size, depth = 1 + node[1], 0
        for child in node[_FIRST_CHILD:]:
            if child[0] == _DONE:
                size += child[1]
                depth = max(depth, child[2] + 1)
            else:
                size += 1  # a cycle back to a node on the path
        if size > MAX_EXPANDED:
            raise PickleLimitError(
                f"its pickle's shared references expand to more than {MAX_EXPANDED:,} "
                "objects (the limit: anything walking the data would visit every copy)"
            )
        if depth > MAX_DEPTH:
            raise PickleLimitError(_too_deep())
        node[0], node[1], node[2] = _DONE, size, depth
        del node[_FIRST_CHILD:]  # children are measured: let the graph go as the walk proceeds
    return root[1], root[2]


def _read_string_latin1(stream: Any) -> str:
    """The argument of STRING (protocol 0 ``S'...'``): Python 2 ``str`` bytes, read as
    latin-1 as the unpickler does (``pickletools`` insists on ASCII)."""
    quoted = pickletools.read_stringnl(stream, decode=False)
    return codecs.escape_decode(quoted)[0].decode("latin-1")


def _ops(data: bytes | mmap.mmap, start: int) -> Iterator[tuple[pickletools.OpcodeInfo, Any, int]]:
    """``pickletools.genops``, but reading STRING arguments as latin-1."""
    # A mapped file is read in place (BytesIO would copy all of it).
    stream = data if isinstance(data, mmap.mmap) else io.BytesIO(data)
    stream.seek(start)
    while True:
        pos = stream.tell()
        if pos - start > MAX_PICKLE_BYTES:
            raise PickleLimitError(
                f"its pickle is larger than {MAX_PICKLE_BYTES >> 20} MiB (the limit)"
            )
        code = stream.read(1)
        op = _CODE2OP.get(code)
        if op is None:
            raise ValueError(
                f"at position {pos}, opcode {code!r} unknown"
                if code
                else "pickle exhausted before STOP"
            )
        if op.arg is None:
            arg = None
        elif op.name == "STRING":
            arg = _read_string_latin1(stream)
        else:
            arg = op.arg.reader(stream)
        yield op, arg, pos
        if op.name == "STOP":
            return


_CODE2OP = {op.code.encode("latin-1"): op for op in pickletools.opcodes}


def scan_pickle(data: bytes | mmap.mmap, start: int = 0) -> int:
    """Check the pickle at ``data[start:]`` against the limits; returns where it ends.

    Raises:
        PickleLimitError: it exceeds a limit (the message names the limit).
        ValueError: it is not a well-formed pickle.
    """
    scan = _Scan()
    for op, arg, pos in _ops(data, start):
        if op.name == "STOP":
            root = scan.pop(1)[0]
            _measure(root)
            return int(pos) + 1
        scan.step(op, arg)
    raise ValueError("pickle exhausted before STOP")


# --- reading the records -------------------------------------------------------------


def _class_path(obj: Any) -> str:
    return getattr(obj, "_sisr_path", type(obj).__name__)


# Classes pickled as ``cls(tensor, ...)`` by torch before 1.0: 0.1-0.3 wrote a Parameter /
# Variable as ``REDUCE(cls, (data,))`` + ``BUILD((requires_grad, volatile, hooks))`` (or
# ``copyreg.__newobj__`` under protocol 0/1), 0.4.0 as ``REDUCE(Parameter, (data,
# requires_grad))``. Later versions go through ``torch._utils._rebuild_parameter``, which
# the reader maps to the tensor itself. The record's first argument is the tensor.
_TENSOR_RECORDS = frozenset({"torch.nn.parameter.Parameter", "torch.autograd.variable.Variable"})


def tensor_of(obj: Any) -> Any:
    """The tensor a ``Parameter`` / ``Variable`` record wraps; anything else as it is."""
    inner = obj
    for _ in range(4):  # Parameter(Variable(tensor)) at most, in practice
        if not (isinstance(inner, Inert) and inner._sisr_path in _TENSOR_RECORDS and inner.args):
            break
        inner = inner.args[0]
    return inner if isinstance(inner, torch.Tensor) else obj


def _module_state(obj: Inert) -> dict[str, Any] | None:
    state = obj.state
    if (
        isinstance(state, tuple)
        and len(state) == 2
        and isinstance(state[0], dict | None)
        and isinstance(state[1], dict)
    ):
        state = {**(state[0] or {}), **state[1]}  # (dict, slots) form
    return state if isinstance(state, dict) else None


def _state_dict_of(
    obj: Inert, prefix: str, out: dict[str, torch.Tensor], path: set[int], depth: int
) -> None:
    state = _module_state(obj)
    if state is None or id(obj) in path or depth > MAX_DEPTH:
        return  # not a module, a module containing itself, or absurdly deep
    skip = state.get("_non_persistent_buffers_set")
    skip_names = (
        {n for n in skip if isinstance(n, str)}
        if isinstance(skip, set | frozenset | list | tuple)
        else set()
    )
    for group in ("_parameters", "_buffers"):
        tensors = state.get(group)
        if isinstance(tensors, dict):
            for name, record in tensors.items():
                value = tensor_of(record)
                if isinstance(value, torch.Tensor) and not (
                    group == "_buffers" and name in skip_names
                ):
                    if len(out) >= MAX_STATE_ENTRIES:
                        raise WeightsError(
                            f"the pickled module has more than {MAX_STATE_ENTRIES:,} tensors "
                            "once its shared sub-modules are expanded"
                        )
                    out[prefix + str(name)] = value
    children = state.get("_modules")
    if isinstance(children, dict):
        path.add(id(obj))
        for name, child in children.items():
            if isinstance(child, Inert):
                _state_dict_of(child, f"{prefix}{name}.", out, path, depth + 1)
        path.discard(id(obj))


def is_module_record(obj: Any) -> bool:
    """True for the record of a pickled ``nn.Module`` (it has ``_parameters`` / ``_modules``)."""
    state = _module_state(obj) if isinstance(obj, Inert) else None
    return state is not None and ("_parameters" in state or "_modules" in state)


def module_state_dict(obj: Inert) -> collections.OrderedDict[str, torch.Tensor]:
    """What ``state_dict()`` of the pickled module would give, from its record."""
    out: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
    _state_dict_of(obj, "", out, set(), 0)
    return out


def plain(obj: Any) -> Any:
    """Module records -> state dicts and ``Parameter`` / ``Variable`` records -> their
    tensors, recursively inside dicts / lists; other records kept.

    Containers without a module record inside are returned as they are (no copy), and a
    container met twice is converted once, so sharing in the file never multiplies here.
    """
    return _plain(obj, 0, {})


def _plain(obj: Any, depth: int, done: dict[int, Any]) -> Any:
    if depth > 16 or not isinstance(obj, dict | list | tuple | Inert):
        return obj
    key = id(obj)
    if key in done:
        return done[key]
    if isinstance(obj, Inert):
        result = module_state_dict(obj) if is_module_record(obj) else tensor_of(obj)
        done[key] = result
        return result
    done[key] = obj  # while inside: a cycle back here sees the container itself
    items = list(obj.values()) if isinstance(obj, dict) else list(obj)
    new = [_plain(v, depth + 1, done) for v in items]
    result = obj
    if any(a is not b for a, b in zip(new, items, strict=True)):
        result = dict(zip(obj.keys(), new, strict=True)) if isinstance(obj, dict) else new
    if any(isinstance(v, dict | list | tuple | Inert) for v in items):
        done[key] = result
    else:
        del done[key]  # a leaf container: cheap to see again, not worth remembering
    return result


def _walk(obj: Any, max_depth: int) -> Iterator[Any]:
    """Every object inside dicts / lists / tuples, each container once, outermost first."""
    seen: set[int] = set()
    todo: list[tuple[Any, int]] = [(obj, 0)]
    while todo:
        item, depth = todo.pop()
        yield item
        if depth >= max_depth or not isinstance(item, dict | list | tuple):
            continue
        if id(item) in seen:
            continue
        seen.add(id(item))
        values = item.values() if isinstance(item, dict) else item
        todo.extend((v, depth + 1) for v in reversed(list(values)))


def classes_in(obj: Any, depth: int = 16) -> list[str]:
    """Names of the pickled classes found (for messages), outermost first, each once."""
    names = (_class_path(item) for item in _walk(obj, depth) if isinstance(item, Inert))
    return list(dict.fromkeys(names))


def holds_tensors(obj: Any, depth: int = 8) -> bool:
    """True when a tensor sits anywhere inside ``obj``'s dicts / lists (each visited once)."""
    return any(isinstance(item, torch.Tensor) for item in _walk(obj, depth))


__all__ = [
    "MAX_DEPTH",
    "MAX_EXPANDED",
    "MAX_OBJECTS",
    "MAX_PICKLE_BYTES",
    "Inert",
    "InertUnpickler",
    "PickleLimitError",
    "classes_in",
    "holds_tensors",
    "is_module_record",
    "module_state_dict",
    "plain",
    "scan_pickle",
    "tensor_of",
]
