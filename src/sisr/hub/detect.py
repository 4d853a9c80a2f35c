"""Load a weights file that is not a sisr weights file by detecting its architecture.

``sisr upscale -n FILE``, ``sisr eval --model FILE``, ``sisr convert FILE OUT`` and
``sisr.load(FILE)`` come here for ``.pth`` / ``.pt`` / foreign ``.safetensors`` files:

1. read the tensors without running code (:func:`sisr.hub.convert.read_foreign_state_dict`:
   sizes checked before allocating, inert records for whole-model pickles);
2. unwrap ``params_ema`` / ``params`` / ``state_dict`` / ``model`` and ``module.``;
3. ask every detector in :data:`sisr.archs.DETECTORS` (one beside each architecture);
4. range-check each match's hparams, compare it on the meta device, then build it and
   load it strictly; the first that loads wins.

Nothing matching gives one message naming the closest architecture and what did not fit
(or, for a known architecture sisr does not implement, which one and how to run it).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sisr.archs._detect import Match, Miss, few
from sisr.archs.base import SRModel
from sisr.errors import WeightsError

# "model_x3.pth", "EDSR-x4.pt", "RealESRGAN_x4plus", "4x_foo", "x2/ESPCN.pt".
_SCALE_HINTS = (
    re.compile(r"(?:^|[^a-z0-9])x([1-8])(?![0-9])", re.IGNORECASE),
    re.compile(r"(?:^|[^a-z0-9])([1-8])x(?![0-9])", re.IGNORECASE),
)


@dataclass(frozen=True)
class Detected:
    """A detected, strictly loaded network and how it was found."""

    model: SRModel
    match: Match
    scale_from: str  # "tensors", "requested" or "file name"


def scale_hint(name: str) -> int | None:
    """The scale a file name states (``..._x3.pth``, ``4x_...``), if exactly one."""
    found = {int(m.group(1)) for rx in _SCALE_HINTS for m in rx.finditer(Path(name).name)}
    return found.pop() if len(found) == 1 else None


def _build(arch: str, hparams: dict[str, Any], device: str | None) -> SRModel:
    from sisr.archs import ARCHS

    if device is None:
        return ARCHS[arch](**hparams)
    with torch.device(device):
        return ARCHS[arch](**hparams)


def _with_step_counters(model: SRModel, sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Checkpoints from before torch 0.4.1 have no BatchNorm step counter; it only matters
    for momentum=None training, so a zero is exact for inference."""
    out = dict(sd)
    for key, value in model.state_dict().items():
        if key.endswith(".num_batches_tracked") and key not in out:
            out[key] = torch.zeros(value.shape, dtype=value.dtype)
    return out


def _try_build(match: Match, scale: int) -> SRModel | str:
    """The network with the match's tensors loaded strictly, or the problems as text.

    The detected hparams come from the file, so they get the range checks of safetensors
    metadata, and the network is built on the meta device and compared with the tensors
    before it is built for real: what is allocated is then what the file stores.
    """
    from sisr.hub.validate import check_hparam_ranges
    from sisr.hub.weights import load_state_dict_strict, state_dict_mismatches

    hparams = {**match.hparams, "scale": scale}
    try:
        check_hparam_ranges(hparams, source=match.arch)
    except WeightsError as exc:
        return str(exc).removeprefix(f"{match.arch}: ")
    try:
        skeleton = _build(match.arch, hparams, "meta")
    except (NotImplementedError, RuntimeError):
        skeleton = None  # a constructor computing with tensor values: shapes come below
    except Exception as exc:  # a detector's hparams the constructor refuses
        return f"cannot build {match.arch} x{scale} {match.hparams}: {exc}"
    if skeleton is not None:
        problems = state_dict_mismatches(skeleton, _with_step_counters(skeleton, match.state_dict))
        if problems:
            return "; ".join(problems)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in match.state_dict.items()}
    try:
        model = _build(match.arch, hparams, None)
    except Exception as exc:  # a detector's hparams the constructor refuses
        return f"cannot build {match.arch} x{scale} {match.hparams}: {exc}"
    sd = _with_step_counters(model, sd)
    problems = state_dict_mismatches(model, sd)
    if problems:
        return "; ".join(problems)
    load_state_dict_strict(model, sd, source=match.arch)
    return model.eval()


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
    from sisr.hub.foreign import identify

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


def _detect(sd: Mapping[str, Tensor], *, source: str) -> tuple[Match, SRModel]:
    """The first match whose network loads the tensors strictly, and that network."""
    matches, misses = run_detectors(sd)
    for match in matches:
        built = _try_build(match, match.scale or 2)
        if isinstance(built, SRModel):
            return match, built
        misses.insert(0, Miss(match.arch, match.layout, built))
    raise WeightsError(explain_no_match(sd, misses, source=source))


def detect(sd: Mapping[str, Tensor], *, source: str = "checkpoint") -> Match:
    """The first match whose network loads the tensors strictly (scale-free check)."""
    return _detect(sd, source=source)[0]


def resolve_scale(
    match: Match, requested: int | None, name: str, *, source: str
) -> tuple[int, str]:
    """The scale to build: the tensors', else the requested one, else the file name's."""
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
    raise WeightsError(
        f"{source}: detected {match.arch} ({match.layout} layout), whose scale is not stored in "
        "its tensors (it works on a bicubic-upsampled input or a deconv stride); pass the "
        "scale (--scale / -s)"
    )


def build_detected(match: Match, scale: int, *, source: str) -> SRModel:
    built = _try_build(match, scale)
    if isinstance(built, str):
        raise WeightsError(f"{source}: detected {match.arch} x{scale} but {built}")
    return built


def detect_raw(
    raw: Any, *, scale: int | None = None, name: str = "", source: str = "checkpoint"
) -> Detected:
    """Detect and load the network of an already read checkpoint (any wrapper)."""
    from sisr.hub.convert import unwrap_state_dict

    sd = unwrap_state_dict(raw, source=source)
    try:
        match, built = _detect(sd, source=source)
    except WeightsError:
        foreign = _via_spandrel(sd, scale, source=source)
        if foreign is None:
            raise
        return foreign
    chosen, how = resolve_scale(match, scale, name, source=source)
    if chosen != (match.scale or 2):  # the detection build is at another scale
        built = build_detected(match, chosen, source=source)
    return Detected(built, match, how)


def _via_spandrel(sd: Mapping[str, Tensor], scale: int | None, *, source: str) -> Detected | None:
    """The optional backend: an architecture sisr lacks, built by spandrel (if installed)."""
    from sisr.hub.foreign import identify, load_spandrel, spandrel_available

    known = identify(sd)
    if not spandrel_available() or (known is not None and not known.in_spandrel):
        return None
    try:
        model = load_spandrel(sd, source=source)
    except WeightsError as exc:
        if known is not None:
            # recognised, and spandrel has it: its own reason is the useful message
            raise WeightsError(
                f"{source}: this is {known.name}; {str(exc).removeprefix(f'{source}: ')}"
            ) from None
        return None
    if scale is not None and int(scale) != model.scale:
        raise WeightsError(f"{source}: the weights are x{model.scale}, but x{scale} was requested")
    match = Match(
        "spandrel", {"architecture": model.architecture}, dict(sd), "spandrel", model.scale
    )
    return Detected(model, match, "tensors")


def load_detected(path: str | Path, *, scale: int | None = None) -> Detected:
    """Read a foreign weights file (tensors only, no code run) and load its network."""
    from sisr.hub.convert import read_foreign_state_dict

    path = Path(path)
    raw = read_foreign_state_dict(path)
    return detect_raw(raw, scale=scale, name=str(path), source=str(path))


def describe(detected: Detected) -> dict[str, Any]:
    """What was detected, for metadata and listings (JSON-serialisable)."""
    m = detected.match
    return {
        "arch": m.arch if m.arch != "spandrel" else f"spandrel:{m.hparams['architecture']}",
        "key_layout": m.layout,
        "hparams": detected.model.hparams,
        "scale": detected.model.scale,
        "scale_from": detected.scale_from,
        "assumed": list(m.notes),
    }


__all__ = [
    "Detected",
    "build_detected",
    "closest_native",
    "describe",
    "detect",
    "detect_raw",
    "explain_no_match",
    "load_detected",
    "resolve_scale",
    "run_detectors",
    "scale_hint",
]
