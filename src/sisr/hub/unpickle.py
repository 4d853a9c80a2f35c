"""Read the tensors of a whole-model pickle without running anything from the file.

``torch.save(model)`` (or ``{"model": model, ...}``) pickles the network's *class* by
name; unpickling normally imports that class and calls code to rebuild it, which is how a
malicious checkpoint runs ``os.system``. Here every global the file names is replaced by
an inert stand-in: a class becomes a record of its name, constructor arguments and state
(``__dict__``), nothing is imported and nothing of the file's is called. The only real
callables reachable are an allow-list of torch's tensor rebuilders (they build a tensor
from a storage, an offset, a size and a stride) and a few plain container types.

:func:`load_inert` returns the object graph with those records; :func:`module_state_dict`
flattens a record of an ``nn.Module`` into ``{"conv.weight": tensor, ...}`` exactly as
``state_dict()`` would (parameters and persistent buffers, in order), and :func:`plain`
does that everywhere inside containers.
"""

from __future__ import annotations

import collections
import io
import pickle
import types
import warnings
from pathlib import Path
from typing import Any

import torch

from sisr.errors import WeightsError


class Inert:
    """A pickled object whose class sisr did not import: its name, arguments and state."""

    _sisr_path = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.state: Any = None
        self.items: list[Any] = []

    def __setstate__(self, state: Any) -> None:  # BUILD: keep, never interpret as code
        self.state = state

    # List / dict subclasses are filled with APPEND(S) and SETITEM(S).
    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: Any) -> None:
        self.items.extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    def __repr__(self) -> str:
        return f"<inert {self._sisr_path}>"


def _stub(module: str, name: str) -> type[Inert]:
    return type(name, (Inert,), {"_sisr_path": f"{module}.{name}", "__slots__": ()})


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` for stand-in classes only (protocol 0/1 objects)."""
    if isinstance(cls, type) and issubclass(cls, Inert):
        return cls.__new__(cls)
    raise pickle.UnpicklingError(f"refused to reconstruct {cls!r}")


def _allowed() -> dict[tuple[str, str], Any]:
    from torch import _utils

    table: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("copyreg", "_reconstructor"): _reconstructor,
        ("copy_reg", "_reconstructor"): _reconstructor,
        ("torch", "Size"): torch.Size,
    }
    # torch's tensor rebuilders: storage + geometry -> tensor / Parameter, nothing else.
    for name in (
        "_rebuild_tensor",
        "_rebuild_tensor_v2",
        "_rebuild_parameter",
        "_rebuild_parameter_with_state",
    ):
        if hasattr(_utils, name):
            table[("torch._utils", name)] = getattr(_utils, name)
    import builtins

    for name in ("set", "frozenset", "list", "dict", "tuple", "int", "float", "bool", "str"):
        table[("builtins", name)] = table[("__builtin__", name)] = getattr(builtins, name)
    return table


_ALLOWED: dict[tuple[str, str], Any] | None = None


class InertUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` never imports: allow-list or stand-in."""

    def find_class(self, module: str, name: str) -> Any:
        global _ALLOWED
        if _ALLOWED is None:
            _ALLOWED = _allowed()
        found = _ALLOWED.get((module, name))
        if found is not None:
            return found
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)  # dtypes are plain values
        return _stub(module, name)


def _load(file: Any, **kwargs: Any) -> Any:
    kwargs.pop("encoding", None)
    return InertUnpickler(file, encoding="latin1", **kwargs).load()


# torch.load(pickle_module=...) needs a module-like object with Unpickler and load; its
# own wrapper subclasses our Unpickler (adding storage handling) and calls our find_class.
_MODULE = types.ModuleType("sisr_inert_pickle")
_MODULE.Unpickler = InertUnpickler  # type: ignore[attr-defined]
_MODULE.load = _load  # type: ignore[attr-defined]
_MODULE.UnpicklingError = pickle.UnpicklingError  # type: ignore[attr-defined]


def load_inert(path: str | Path) -> Any:
    """Unpickle a torch checkpoint with every non-tensor class replaced by an inert record."""
    path = Path(path)
    try:
        data = path.read_bytes()
        # weights_only=False only selects the classic unpickling path; which globals can
        # resolve is decided by InertUnpickler.find_class above, not by torch.
        with warnings.catch_warnings():
            # Legacy files carry each class's source for a comparison torch only warns
            # about; with inert classes there is nothing to compare.
            warnings.filterwarnings("ignore", message="Couldn't retrieve source code")
            return torch.load(
                io.BytesIO(data), map_location="cpu", weights_only=False, pickle_module=_MODULE
            )
    except Exception as exc:  # zip / pickle corruption surfaces as many error types
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({exc})") from exc


def _class_path(obj: Any) -> str:
    return getattr(obj, "_sisr_path", type(obj).__name__)


def _state_dict_of(obj: Inert, prefix: str, out: dict[str, torch.Tensor]) -> None:
    state = obj.state
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
        state = {**(state[0] or {}), **state[1]}  # (dict, slots) form
    if not isinstance(state, dict):
        return
    skip = state.get("_non_persistent_buffers_set")
    skip_names = set(skip) if isinstance(skip, set | frozenset | list | tuple) else set()
    for group in ("_parameters", "_buffers"):
        tensors = state.get(group)
        if isinstance(tensors, dict):
            for name, value in tensors.items():
                if isinstance(value, torch.Tensor) and not (
                    group == "_buffers" and name in skip_names
                ):
                    out[prefix + str(name)] = value
    children = state.get("_modules")
    if isinstance(children, dict):
        for name, child in children.items():
            if isinstance(child, Inert):
                _state_dict_of(child, f"{prefix}{name}.", out)


def is_module_record(obj: Any) -> bool:
    """True for the record of a pickled ``nn.Module`` (it has ``_parameters`` / ``_modules``)."""
    return (
        isinstance(obj, Inert)
        and isinstance(obj.state, dict)
        and ("_parameters" in obj.state or "_modules" in obj.state)
    )


def module_state_dict(obj: Inert) -> collections.OrderedDict[str, torch.Tensor]:
    """What ``state_dict()`` of the pickled module would give, from its record."""
    out: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
    _state_dict_of(obj, "", out)
    return out


def plain(obj: Any, depth: int = 0) -> Any:
    """Module records -> state dicts, recursively inside dicts / lists; other records kept."""
    if depth > 16:
        return obj
    if is_module_record(obj):
        return module_state_dict(obj)
    if isinstance(obj, dict):
        return {k: plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v, depth + 1) for v in obj]
    return obj


def classes_in(obj: Any, depth: int = 0) -> list[str]:
    """Names of the pickled classes found (for messages), outermost first."""
    found: list[str] = []
    if depth > 16:
        return found
    if isinstance(obj, Inert):
        found.append(_class_path(obj))
    elif isinstance(obj, dict):
        for v in obj.values():
            found += classes_in(v, depth + 1)
    elif isinstance(obj, list | tuple):
        for v in obj:
            found += classes_in(v, depth + 1)
    return found


__all__ = [
    "Inert",
    "InertUnpickler",
    "classes_in",
    "is_module_record",
    "load_inert",
    "module_state_dict",
    "plain",
]
