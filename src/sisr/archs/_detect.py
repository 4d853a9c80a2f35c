"""What an architecture's state-dict detector returns, and small helpers detectors share.

Every architecture module has one ``detect(state_dict)`` function (registered in
:data:`sisr.archs.DETECTORS`). It looks at tensor names and shapes only and answers:

* ``None``: the names do not look like this architecture at all;
* :class:`Miss`: they do (so this is the closest architecture), but something does not
  fit; ``reason`` says what;
* :class:`Match`: the hyper-parameters (and the scale when the tensors fix it) plus the
  state dict renamed to sisr's keys. The loader then builds the network and loads it
  strictly, so a detector may be permissive: a wrong guess still fails loudly.

What the tensors cannot tell (whether the convolutions were zero-padded, which colour space
a 3-channel network was fed) comes from the user as :class:`Hints` (``--padding``,
``--color-space``); :func:`apply_hints` sets them on a match after detection, and refuses
a hint its architecture has no use for. Plain convolution chains (SRCNN, FSRCNN, ESPCN,
VDSR) are also recognised by the sequence of their weight shapes alone
(:func:`chain_candidates`), whatever the file calls its layers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from torch import Tensor

from sisr.errors import ConfigError

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


BY_SHAPE = "by-shape"
SHAPE_NOTE = "recognised by its weight shapes (its key names are new to sisr)"


@dataclass(frozen=True)
class Layer:
    """One layer of a plain chain as a file stores it: ``name.weight`` and ``name.bias``.

    kind: ``conv`` (a 4-d kernel: (out, in, k, k), or (in, out, k, k) for a transposed
    conv), ``prelu`` (1-d slopes, no bias) or ``other``; kernel: the square kernel size
    (-1 when not square, 0 for anything but a conv).
    """

    name: str
    weight: Tensor
    bias: Tensor | None

    @property
    def kind(self) -> str:
        if self.weight.dim() == 4:
            return "conv"
        if self.weight.dim() == 1 and self.bias is None:
            return "prelu"
        return "other"

    @property
    def kernel(self) -> int:
        if self.kind != "conv":
            return 0
        kh, kw = (int(v) for v in self.weight.shape[-2:])
        return kh if kh == kw else -1


def file_layers(sd: Mapping[str, Tensor]) -> list[Layer] | None:
    """The file as layers in its own order (torch.save keeps the modules' order), when it
    holds nothing else: every key is ``NAME.weight`` or ``NAME.bias`` and every name has
    a weight. None otherwise."""
    groups: dict[str, dict[str, Tensor]] = {}
    for key, value in sd.items():
        name, _, leaf = key.rpartition(".")
        if leaf not in ("weight", "bias"):
            return None
        groups.setdefault(name, {})[leaf] = value
    if not groups or any("weight" not in parts for parts in groups.values()):
        return None
    return [Layer(name, parts["weight"], parts.get("bias")) for name, parts in groups.items()]


def _natural_key(name: str) -> list[tuple[int, int | str]]:
    """``layers.10`` after ``layers.9``: digit runs compare as numbers."""
    return [(0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", name) if t]


def chain_candidates(
    sd: Mapping[str, Tensor], layouts: Mapping[str, tuple[str, ...]]
) -> list[tuple[str, list[Layer]]]:
    """The (layout, layers in forward order) a plain-chain detector should try.

    A named layout whose conv names (weight + bias each) are exactly the file's keys comes
    alone. Otherwise the file's own layers, layout :data:`BY_SHAPE`, in the file's order
    and, when that differs, in natural name order (for files whose keys were sorted, as
    safetensors does): a chain is then recognised by its weight shapes whatever its layers
    are called, including an ``nn.Sequential`` (``layers.0 / 2 / 4``) and the flattened
    keys of a whole-model pickle.
    """
    keys = set(sd)
    for layout, names in layouts.items():
        if keys == {f"{n}.{p}" for n in names for p in ("weight", "bias")}:
            return [(layout, [Layer(n, sd[f"{n}.weight"], sd[f"{n}.bias"]) for n in names])]
    layers = file_layers(sd)
    if layers is None:
        return []
    out = [(BY_SHAPE, layers)]
    natural = sorted(layers, key=lambda layer: _natural_key(layer.name))
    if [a.name for a in natural] != [a.name for a in layers]:
        out.append((BY_SHAPE, natural))
    return out


def chain_problem(layers: Sequence[Layer]) -> str | None:
    """Why ``layers`` are not a forward chain, or None: each conv takes the channels the
    layer before it gives, a PReLU has one slope per channel (or one shared slope)."""
    width: int | None = None
    for layer in layers:
        w = layer.weight
        if layer.kind == "conv":
            if width is not None and int(w.shape[1]) != width:
                return f"{layer.name} takes {int(w.shape[1])} channels after {width}"
            width = int(w.shape[0])
        elif layer.kind == "prelu":
            if width is None or int(w.shape[0]) not in (1, width):
                return f"{layer.name} ({int(w.shape[0])} slopes) does not follow a conv"
        else:
            return f"{layer.name} is neither a conv nor a PReLU"
    return None


def body_state(layers: Sequence[Layer], step: int = 2) -> StateDict:
    """The layers' tensors under sisr's ``body.{step * i}`` names (an ``nn.Sequential`` with
    ``step - 1`` tensor-free activations between them)."""
    out: StateDict = {}
    for i, layer in enumerate(layers):
        out[f"body.{step * i}.weight"] = layer.weight
        if layer.bias is not None:
            out[f"body.{step * i}.bias"] = layer.bias
    return out


def chain_names(layers: Sequence[Layer]) -> str:
    """The layer names of a chain for messages (``conv1, conv2, conv3``)."""
    return few([layer.name for layer in layers])


# --- what the tensors cannot tell: hints from the user -----------------------------------

PADDINGS: tuple[str, ...] = ("same", "valid")
HINT_COLOR_SPACES: tuple[str, ...] = ("rgb", "y", "ycbcr")
PADDING_FLAGS = (
    "--padding same (zero-padded convolutions) or --padding valid (unpadded, as trained "
    "without padding)"
)
COLOR_FLAGS = "--color-space rgb or --color-space ycbcr (a 3-channel network fed full-range YCbCr)"
_PADDING_NOTE = "padding not stored in the file"
_COLOR_NOTE = "colour space not stored in the file"


def padding_note(assumed: str, why: str) -> str:
    """The note of a match whose padding was guessed (``why``: what the guess rests on)."""
    return f"{_PADDING_NOTE}: {assumed!r} assumed ({why}); pass {PADDING_FLAGS}"


def color_note(assumed: str, why: str) -> str:
    """The note of a 3-channel match whose colour space was guessed."""
    return f"{_COLOR_NOTE}: {assumed!r} assumed ({why}); pass {COLOR_FLAGS}"


@dataclass(frozen=True)
class Hints:
    """Facts about a foreign file that its tensors do not hold, given by the user.

    padding: ``"same"`` (zero-padded convolutions) or ``"valid"`` (unpadded; the network
        then pads its input at the edges, so the output keeps its size and its interior is
        the authors' output) for the plain chains SRCNN, FSRCNN, ESPCN and VDSR.
    color_space: ``"rgb"``, ``"ycbcr"`` (a 3-channel network fed full-range YCbCr) or
        ``"y"`` (a 1-channel luma network).

    None leaves a fact to the detector's guess (recorded in the match's notes).
    """

    padding: str | None = None
    color_space: str | None = None

    def __post_init__(self) -> None:
        for flag, value, allowed in (
            ("--padding", self.padding, PADDINGS),
            ("--color-space", self.color_space, HINT_COLOR_SPACES),
        ):
            if value is not None and value not in allowed:
                raise ConfigError(f"{flag} must be one of {', '.join(allowed)}, got {value!r}")

    def __bool__(self) -> bool:
        return self.padding is not None or self.color_space is not None

    def flags(self) -> str:
        """The hints as command-line flags (``--padding valid --color-space ycbcr``)."""
        parts = [f"--padding {self.padding}"] if self.padding is not None else []
        if self.color_space is not None:
            parts.append(f"--color-space {self.color_space}")
        return " ".join(parts)


def hint_problem(arch: str, hparams: Mapping[str, Any], hints: Hints) -> str | None:
    """Why a hint does not apply to a network with these hparams, or None.

    ``--padding`` applies where the hparams have a ``padding`` knob (the plain chains);
    ``--color-space y`` to a 1-channel network (``y_channel``), ``rgb`` / ``ycbcr`` to a
    3-channel one with a ``color_space`` knob; an RGB-only architecture takes ``rgb``.
    """
    if hints.padding is not None and "padding" not in hparams:
        return (
            f"--padding {hints.padding} does not apply to {arch}: its convolutions are "
            "zero-padded by design (--padding is for the plain chains SRCNN, FSRCNN, ESPCN "
            "and VDSR)"
        )
    cs = hints.color_space
    if cs is None:
        return None
    if "y_channel" not in hparams:
        if cs != "rgb":
            return f"--color-space {cs} does not apply to {arch}: it takes RGB only"
        return None
    if hparams["y_channel"]:
        if cs != "y":
            return (
                f"--color-space {cs} does not apply: this {arch} takes 1 channel, so it is a "
                "luma model (--color-space y)"
            )
    elif cs == "y":
        return f"--color-space y does not apply: this {arch} takes 3 channels; pass {COLOR_FLAGS}"
    return None


def apply_hints(match: Match, hints: Hints) -> Match | str:
    """``match`` with the user's hints set on its hparams, or why one does not apply.

    The notes that recorded a guess of the same fact are replaced by where it came from.
    """
    if not hints:
        return match
    problem = hint_problem(match.arch, match.hparams, hints)
    if problem is not None:
        return problem
    hp = dict(match.hparams)
    notes = list(match.notes)
    if hints.padding is not None:
        hp["padding"] = hints.padding
        notes = [n for n in notes if not n.startswith(_PADDING_NOTE)]
        notes.append(f"padding {hints.padding!r} from --padding")
    if hints.color_space is not None and "color_space" in hp and not hp.get("y_channel"):
        hp["color_space"] = hints.color_space
        notes = [n for n in notes if not n.startswith(_COLOR_NOTE)]
        notes.append(f"colour space {hints.color_space!r} from --color-space")
    return replace(match, hparams=hp, notes=tuple(notes))


def assumed_flags(match: Match) -> list[str]:
    """The guesses of a match a flag could override, as ``what (--flag a|b)`` texts."""
    out = []
    if "padding" in match.hparams:
        out.append(f"padding {match.hparams['padding']} (--padding same|valid)")
    if "color_space" in match.hparams and not match.hparams.get("y_channel"):
        out.append(f"colour space {match.hparams['color_space']} (--color-space rgb|ycbcr)")
    return out


__all__ = [
    "BY_SHAPE",
    "COLOR_FLAGS",
    "HINT_COLOR_SPACES",
    "PADDINGS",
    "PADDING_FLAGS",
    "SHAPE_NOTE",
    "Detection",
    "Detector",
    "Hints",
    "Layer",
    "Match",
    "Miss",
    "StateDict",
    "apply_hints",
    "assumed_flags",
    "body_state",
    "chain_candidates",
    "chain_names",
    "chain_problem",
    "color_note",
    "few",
    "file_layers",
    "has_all",
    "hint_problem",
    "indices",
    "padding_note",
    "rename",
    "shuffle_scale",
]
