"""Step 3 of loading a foreign file: which architecture is this state dict?

Every detector in :data:`sisr.archs.DETECTORS` (one beside each architecture, reading
hyper-parameters from tensor shapes) answers Match / Miss / None; this module runs them, fixes
the scale where the tensors do not (the request, else the file name), and, when nothing
matches, writes the one message that helps: a known foreign architecture and how to run it,
the closest near miss and what did not fit, or the closest preset by key patterns and tensor
shapes. What the tensors cannot tell comes from the user's :class:`~sisr.archs._detect.Hints`
(``--padding``, ``--color-space``, ``-s``); every message about a missing or misapplied fact
names the flags and their values. The next step is :mod:`sisr.hub.build`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from sisr.archs._detect import Match, Miss, assumed_flags, few
from sisr.errors import WeightsError
from sisr.hub.foreign import identify

# "model_x3.pth", "EDSR-x4.pt", "RealESRGAN_x4plus", "4x_foo", "x2/ESPCN.pt".
_SCALE_HINTS = (
    re.compile(r"(?:^|[^a-z0-9])x([1-8])(?![0-9])", re.IGNORECASE),
    re.compile(r"(?:^|[^a-z0-9])([1-8])x(?![0-9])", re.IGNORECASE),
)


def scale_hint(name: str) -> int | None:
    """The scale a file name states (``..._x3.pth``, ``4x_...``), if exactly one."""
    found = {int(m.group(1)) for rx in _SCALE_HINTS for m in rx.finditer(Path(name).name)}
    return found.pop() if len(found) == 1 else None


def run_detectors(sd: Mapping[str, Tensor]) -> tuple[list[Match], list[Miss]]:
    """Every detector's answer, split into matches and near misses."""
    from sisr.archs import DETECTORS

    matches: list[Match] = []
    misses: list[Miss] = []
    for arch, detector in DETECTORS.items():
        try:
            found = detector(sd)
        except Exception as exc:  # a malformed file must not crash detection
            misses.append(Miss(arch, "?", f"detector failed: {exc}"))
            continue
        if isinstance(found, Match):
            matches.append(found)
        elif isinstance(found, Miss):
            misses.append(found)
    return matches, misses


def _pattern(key: str) -> str:
    return re.sub(r"\d+", "#", key)


def _shape_overlap(a: Counter[tuple[int, ...]], b: Counter[tuple[int, ...]]) -> float:
    """Jaccard index of two multisets of tensor shapes."""
    return sum((a & b).values()) / max(1, sum((a | b).values()))


def closest_native(sd: Mapping[str, Tensor]) -> tuple[str, float, list[str], list[str], float]:
    """(preset, key overlap, file key patterns it lacks, its key patterns the file lacks,
    shape overlap), the preset chosen by the larger of the two overlaps.

    Key overlap is the Jaccard index of the digit-free key patterns
    (``body.#.conv1.weight``); shape overlap that of the multisets of tensor shapes, which
    tells a network under other key names apart from an unrelated one.
    """
    from sisr.archs import PRESETS, build

    have = {_pattern(k) for k in sd}
    have_shapes = Counter(tuple(v.shape) for v in sd.values())
    best: tuple[str, float, list[str], list[str], float] = ("", -1.0, [], [], -1.0)
    for name in sorted(PRESETS):
        if name == "bicubic":
            continue
        model = None
        for scale in (4, 2, 3):
            try:
                with torch.device("meta"):
                    model = build(name, scale)
                break
            except Exception:
                continue
        if model is None:
            continue
        state = model.state_dict()
        want = {_pattern(k) for k in state}
        keys = len(have & want) / max(1, len(have | want))
        shapes = _shape_overlap(have_shapes, Counter(tuple(v.shape) for v in state.values()))
        if max(keys, shapes) > max(best[1], best[4]):
            best = (name, keys, sorted(have - want), sorted(want - have), shapes)
    return best


def explain_no_match(sd: Mapping[str, Tensor], misses: list[Miss], *, source: str) -> str:
    """One message: a known foreign architecture, the closest near miss, or the closest preset."""
    foreign = identify(sd)
    if foreign is not None:
        return foreign.message(source)
    return _closest(sd, misses, source=source) + (
        "; if you know the architecture: sisr convert FILE OUT.safetensors --arch NAME "
        "[--set key=value]"
    )


def _closest(sd: Mapping[str, Tensor], misses: list[Miss], *, source: str) -> str:
    if misses:
        miss = misses[0]
        others = "".join(f"; {m.arch} ({m.layout}): {m.reason}" for m in misses[1:3])
        return (
            f"{source}: architecture not recognised; closest: {miss.arch} "
            f"(key layout {miss.layout}): {miss.reason}{others}"
        )
    name, score, extra, missing, shapes = closest_native(sd)
    return (
        f"{source}: architecture not recognised from its {len(sd)} tensors; closest: {name} "
        f"({shapes:.0%} of tensor shapes and {score:.0%} of key patterns shared); the file "
        f"has {few(extra) or 'nothing else'} that {name} lacks, and lacks "
        f"{few(missing) or 'nothing'}"
    )


def _or_list(items: Sequence[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def _how_found(match: Match) -> str:
    return "by its weight shapes" if match.layout == "by-shape" else f"({match.layout} layout)"


def assumed_text(match: Match) -> str:
    """``; assumed (not in the file): padding same (--padding same|valid), ...`` or ``""``."""
    flags = assumed_flags(match)
    return f"; assumed (not in the file): {', '.join(flags)}" if flags else ""


def hint_error(match: Match, problem: str, *, source: str) -> WeightsError:
    """A hint the detected network has no use for: what was found, why the hint does not
    apply, and which flags do apply to it."""
    flags = assumed_flags(match)
    takes = f"; flags for this file: {', '.join(flags)}" if flags else ""
    return WeightsError(
        f"{source}: detected {match.arch} {_how_found(match)}, but {problem}{takes}"
    )


def resolve_scale(
    match: Match,
    requested: int | None,
    name: str,
    *,
    source: str,
    scales: Sequence[int] = (),
) -> tuple[int, str]:
    """The scale to build: the tensors', else the requested one, else the file name's.

    ``scales``: the network's supported scales, listed as candidates when none is known.
    """
    if match.scale is not None:
        if requested is not None and int(requested) != match.scale:
            raise WeightsError(
                f"{source}: the weights are {match.arch} x{match.scale}, but x{requested} "
                "was requested"
            )
        return match.scale, "tensors"
    if requested is not None:
        return int(requested), "requested"
    hint = scale_hint(name)
    if hint is not None:
        return hint, "file name"
    candidates = [f"-s {v}" for v in scales if v > 1] or ["-s N"]
    raise WeightsError(
        f"{source}: detected {match.arch} {_how_found(match)}, whose scale is not stored in "
        "its tensors (it works on a bicubic-upsampled input, a deconv stride or one of "
        f"several upsamplers); pass the scale (--scale / -s): {_or_list(candidates)}"
        + assumed_text(match)
    )


__all__ = [
    "assumed_text",
    "closest_native",
    "explain_no_match",
    "hint_error",
    "resolve_scale",
    "run_detectors",
    "scale_hint",
]
