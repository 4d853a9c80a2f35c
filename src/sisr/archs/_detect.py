"""What an architecture's state-dict detector returns, and small helpers detectors share.

Every architecture module has one ``detect(state_dict)`` function (registered in
:data:`sisr.archs.DETECTORS`). It looks at tensor names and shapes only and answers:

* ``None``: the names do not look like this architecture at all;
* :class:`Miss`: they do (so this is the closest architecture), but something does not
  fit; ``reason`` says what;
* :class:`Match`: the hyper-parameters (and the scale when the tensors fix it) plus the
  state dict renamed to sisr's keys. The loader then builds the network and loads it
  strictly, so a detector may be permissive: a wrong guess still fails loudly.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

StateDict = dict[str, Tensor]


@dataclass(frozen=True)
class Match:
    """A detected architecture.

    arch: key of :data:`sisr.archs.ARCHS`.
    hparams: constructor keyword arguments, without ``scale``.
    state_dict: the tensors under sisr's key names.
    layout: which key naming the file used (``basicsr``, ``esrgan-old``, ``yjn870``...).
    scale: the upscaling factor, or ``None`` when the tensors do not fix it (networks
        on a bicubic-upsampled input, FSRCNN's stride); the caller supplies it then.
    notes: hyper-parameters that had to be assumed (not readable from the tensors).
    """

    arch: str
    hparams: dict[str, Any]
    state_dict: StateDict
    layout: str
    scale: int | None
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Miss:
    """The names look like ``arch`` but the tensors do not fit; ``reason`` says why."""

    arch: str
    layout: str
    reason: str


Detection = Match | Miss | None
Detector = Callable[[Mapping[str, Tensor]], Detection]


def indices(sd: Mapping[str, Tensor], pattern: str) -> list[int]:
    """Sorted distinct integers captured by ``pattern`` (a regex with one group) in keys."""
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd if (m := rx.match(k))})


def has_all(sd: Mapping[str, Tensor], keys: Iterable[str]) -> bool:
    return all(k in sd for k in keys)


def rename(
    sd: Mapping[str, Tensor], rules: Iterable[tuple[str, str]]
) -> tuple[StateDict, list[str]]:
    """Apply the first matching ``(regex, replacement)`` to each key (full match).

    Returns (renamed dict, keys no rule matched). Unmatched keys are left out, so the
    caller decides whether they matter.
    """
    compiled = [(re.compile(p), r) for p, r in rules]
    out: StateDict = {}
    unmatched: list[str] = []
    for key, value in sd.items():
        for rx, repl in compiled:
            if rx.fullmatch(key):
                out[rx.sub(repl, key)] = value
                break
        else:
            unmatched.append(key)
    return out, unmatched


def shuffle_scale(out_channels: int, channels: int) -> int | None:
    """``s`` with ``out_channels == channels * s * s`` (a pixel-shuffle conv), else None."""
    if out_channels % channels:
        return None
    s2 = out_channels // channels
    s = round(s2**0.5)
    return s if s * s == s2 else None


def few(keys: Iterable[str], n: int = 4) -> str:
    """A short comma list of keys for messages (``a, b, c (+5 more)``)."""
    items = list(keys)
    text = ", ".join(items[:n])
    return text + (f" (+{len(items) - n} more)" if len(items) > n else "")


def conv_list(
    sd: Mapping[str, Tensor], names: list[str], *, bias: bool | None = True
) -> list[tuple[Tensor, Tensor | None]] | str:
    """The (weight, bias) of each named conv, or a reason string if one is malformed.

    ``bias=None`` accepts convs with or without bias (all the same way).
    """
    out: list[tuple[Tensor, Tensor | None]] = []
    for name in names:
        w = sd.get(f"{name}.weight")
        b = sd.get(f"{name}.bias")
        if w is None or w.dim() != 4:
            return f"{name}.weight is missing or not a 4-d conv kernel"
        if bias is True and b is None:
            return f"{name}.bias is missing"
        if bias is False and b is not None:
            return f"{name}.bias is unexpected"
        out.append((w, b))
    if bias is None and len({b is None for _, b in out}) > 1:
        return "some convs have a bias and some do not"
    return out


BY_SHAPE = "by-shape"
SHAPE_NOTE = (
    "recognised by its weight shapes (its key names are new to sisr); padding is not stored "
    "in a file: zero-padded convs assumed"
)


def named_chain(
    sd: Mapping[str, Tensor], layouts: Mapping[str, tuple[str, ...]], arch: str
) -> tuple[str, tuple[str, ...], list[tuple[Tensor, Tensor | None]]] | Miss | None:
    """The first layout whose conv names (weight + bias each) are exactly the file's keys,
    else (layout :data:`BY_SHAPE`) the file's own names when it holds nothing but that many
    convs (weight + bias, in the file's order) whose widths chain: a plain conv chain is
    recognised by its shapes whatever its keys are called.

    Returns (layout, conv names, convs in order), a :class:`Miss` of ``arch`` when a conv
    is malformed, or None when neither names nor shapes fit.
    """
    keys = set(sd)
    candidates = [
        (layout, names)
        for layout, names in layouts.items()
        if keys == {f"{n}.{p}" for n in names for p in ("weight", "bias")}
    ]
    if not candidates:
        own = _own_chain(sd, {len(names) for names in layouts.values()})
        if own is None:
            return None
        candidates = [(BY_SHAPE, own)]
    layout, names = candidates[0]
    convs = conv_list(sd, list(names))
    if isinstance(convs, str):
        return Miss(arch, layout, convs) if layout != BY_SHAPE else None
    for (a, _), (b, _) in itertools.pairwise(convs):
        if b.shape[1] != a.shape[0]:
            if layout == BY_SHAPE:
                return None
            return Miss(arch, layout, f"conv widths do not chain ({a.shape[0]} -> {b.shape[1]})")
    return layout, tuple(names), convs


def _own_chain(sd: Mapping[str, Tensor], lengths: set[int]) -> tuple[str, ...] | None:
    """The conv names of a file that is exactly ``n`` (weight, bias) pairs with 4-d weights,
    ``n`` in ``lengths``, in the file's order (torch.save keeps the modules' order)."""
    names: list[str] = []
    for key in sd:
        prefix, _, leaf = key.rpartition(".")
        if leaf == "weight" and sd[key].dim() == 4:
            names.append(prefix)
    if len(names) not in lengths or set(sd) != {
        f"{n}.{p}" for n in names for p in ("weight", "bias")
    }:
        return None
    return tuple(names)


def sequential_names(prefix: str, convs: int, step: int = 2) -> tuple[str, ...]:
    """``body.0, body.2, ...``: conv positions in an nn.Sequential with activations between."""
    return tuple(f"{prefix}.{i * step}" for i in range(convs))


__all__ = [
    "BY_SHAPE",
    "SHAPE_NOTE",
    "Detection",
    "Detector",
    "Match",
    "Miss",
    "StateDict",
    "conv_list",
    "few",
    "has_all",
    "indices",
    "named_chain",
    "rename",
    "sequential_names",
    "shuffle_scale",
]
