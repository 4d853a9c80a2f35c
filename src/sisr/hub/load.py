"""Load a model by name or file: sisr's own weights, or a foreign file through the pipeline.

Names resolve to a file first (:func:`resolve_weights`: shipped weights, verified downloads,
the catalogue of published files). A sisr weights file is read by :mod:`sisr.hub.weights`;
any other file goes through the foreign-file pipeline, one step per module, each calling
only the steps after it:

1. :mod:`sisr.hub.read`: the content, without running any of the file's code;
2. :mod:`sisr.hub.unwrap`: the state dict inside the trainer's wrappers;
3. :mod:`sisr.hub.detect`: the architecture and hyper-parameters, from names and shapes;
4. :mod:`sisr.hub.build`: the network, built and loaded strictly;

and, for an architecture sisr does not implement, the optional spandrel backend
(:mod:`sisr.hub.foreign`). What a file's tensors cannot tell (the scale of a network on a
bicubic-upsampled input, padded or valid convolutions, the colour space) comes from the
caller: ``scale`` and :class:`~sisr.archs._detect.Hints` (``padding``, ``color_space``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sisr.archs._detect import Hints, Match, Miss, apply_hints, hint_problem
from sisr.archs.base import SRModel
from sisr.errors import WeightsError
from sisr.hub import foreign, names
from sisr.hub.build import build_detected, try_build
from sisr.hub.detect import explain_no_match, hint_error, resolve_scale, run_detectors
from sisr.hub.read import read_foreign_state_dict
from sisr.hub.unwrap import unwrap_state_dict
from sisr.hub.weights import is_sisr_weights, load_weights_file


@dataclass(frozen=True)
class Detected:
    """A detected, strictly loaded network and how it was found."""

    model: SRModel
    match: Match
    scale_from: str  # "tensors", "requested" or "file name"


class _HintRefused(WeightsError):
    """The file was recognised, but a hint does not apply to it (no other backend tried)."""


def _detect(
    sd: Mapping[str, Tensor], *, source: str, hints: Hints | None = None
) -> tuple[Match, SRModel]:
    """The first match (with the hints applied) whose network loads the tensors strictly,
    and that network. A hint no match can take is an error naming the flags that apply."""
    matches, misses = run_detectors(sd)
    refused: list[tuple[Match, str]] = []
    for found in matches:
        match = apply_hints(found, hints or Hints())
        if isinstance(match, str):
            refused.append((found, match))
            continue
        built = try_build(match, match.scale or 2)
        if isinstance(built, SRModel):
            return match, built
        misses.insert(0, Miss(match.arch, match.layout, built))
    if refused:
        raise _HintRefused(str(hint_error(*refused[0], source=source)))
    raise WeightsError(explain_no_match(sd, misses, source=source))


def detect(
    sd: Mapping[str, Tensor], *, source: str = "checkpoint", hints: Hints | None = None
) -> Match:
    """The first match whose network loads the tensors strictly (scale-free check)."""
    return _detect(sd, source=source, hints=hints)[0]


def detect_raw(
    raw: Any,
    *,
    scale: int | None = None,
    name: str = "",
    source: str = "checkpoint",
    hints: Hints | None = None,
) -> Detected:
    """Detect and load the network of an already read checkpoint (any wrapper).

    ``scale`` and ``hints`` supply what the tensors cannot tell (see :class:`Hints`).
    """
    sd = unwrap_state_dict(raw, source=source)
    try:
        match, built = _detect(sd, source=source, hints=hints)
    except _HintRefused:
        raise
    except WeightsError:
        foreign = _via_spandrel(sd, scale, source=source)
        if foreign is None:
            raise
        if hints:  # spandrel builds the network as it is
            raise WeightsError(
                f"{source}: this is {foreign.match.hparams['architecture']}, which runs "
                f"through spandrel as it is: {hints.flags()} does not apply to it"
            ) from None
        return foreign
    chosen, how = resolve_scale(match, scale, name, source=source, scales=built.info().scales)
    if chosen != (match.scale or 2):  # the detection build is at another scale
        built = build_detected(match, chosen, source=source)
    return Detected(built, match, how)


def _via_spandrel(sd: Mapping[str, Tensor], scale: int | None, *, source: str) -> Detected | None:
    """The optional backend: an architecture sisr lacks, built by spandrel (if installed)."""
    known = foreign.identify(sd)
    if not foreign.spandrel_available() or (known is not None and not known.in_spandrel):
        return None
    try:
        model = foreign.load_spandrel(sd, source=source)
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


def load_detected(
    path: str | Path, *, scale: int | None = None, hints: Hints | None = None
) -> Detected:
    """Read a foreign weights file (tensors only, no code run) and load its network.

    ``scale`` and ``hints`` supply what the tensors cannot tell (see :class:`Hints`).
    """
    path = Path(path)
    raw = read_foreign_state_dict(path)
    return detect_raw(raw, scale=scale, name=str(path), source=str(path), hints=hints)


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


def resolve_weights(name_or_path: str | Path, *, progress: bool = True) -> Path | None:
    """The weights file behind a path or a named entry; ``None`` for ``bicubic``.

    Named downloadable weights are fetched into ``cache_dir()/weights``.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.is_dir():
        raise WeightsError(f"{path}: is a folder, not a weights file")
    name = str(name_or_path)
    if names.BICUBIC_NAME.match(name):
        return None
    entry = names.WEIGHTS.get(name)
    if entry is not None:
        shipped = names.shipped_path(entry)
        if shipped is not None:
            if not shipped.is_file():
                raise WeightsError(f"{name}: shipped weights file {shipped} is missing")
            return shipped
        from sisr.hub.download import cache_dir, fetch

        assert entry.url is not None
        return fetch(
            entry.url,
            entry.sha256,
            cache_dir=cache_dir() / "weights",
            filename=f"{entry.name}.safetensors",
            progress=progress,
        )
    from sisr.hub.catalog import catalog, fetch_entry

    published = catalog().get(name)
    if published is not None:  # a published file (OpenModelDB facts), verified download
        return fetch_entry(published, progress=progress)
    if path.suffix or len(path.parts) > 1:
        raise WeightsError(f"{path}: no such weights file")
    known = (
        ", ".join(names.known_names()) + " (and the published weights of `sisr models --catalog`)"
    )
    from sisr.archs import PRESETS

    if name in PRESETS:
        raise WeightsError(
            f"{name!r} is a preset without named weights: train it (sisr train) or convert "
            f"a checkpoint (sisr convert) and pass the .safetensors file; named weights: {known}"
        )
    raise WeightsError(
        f"unknown weights name {name!r}: not a file and not a named weights entry; "
        f"known names: {known}"
    )


def _load_foreign(path: Path, scale: int | None, hints: Hints) -> SRModel:
    """A .pth / .pt / foreign safetensors file: architecture detected from its tensors."""
    return load_detected(path, scale=scale, hints=hints).model


def _check_stored(model: SRModel, hints: Hints | None, *, source: str) -> None:
    """Hints given for a network whose file stores those facts: they must agree with it."""
    if not hints:
        return
    hp = dict(model.hparams)
    if "padding" in inspect.signature(type(model)).parameters:
        hp.setdefault("padding", "same")  # recorded only when not the default
    problem = hint_problem(model.arch_id, hp, hints)
    if problem is None and hints.padding is not None and hp["padding"] != hints.padding:
        problem = f"--padding {hints.padding} contradicts it (saved with padding {hp['padding']})"
    stored = hp.get("color_space")
    if (
        problem is None
        and hints.color_space in ("rgb", "ycbcr")
        and stored not in (None, hints.color_space)
    ):
        problem = f"--color-space {hints.color_space} contradicts it (saved for {stored} input)"
    if problem is not None:
        raise WeightsError(
            f"{source}: a {model.arch_id} weights file that stores its settings; {problem}"
        )


def load_model(
    name_or_path: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    scale: int | None = None,
    progress: bool = True,
    padding: str | None = None,
    color_space: str | None = None,
) -> SRModel:
    """Load a ready-to-run SR model (eval mode) from a weights file or a name.

    Resolution: an existing file path; ``bicubic`` / ``bicubic-xN`` (the
    parameter-free baseline, scale from the suffix or ``scale=``); a name from
    :data:`sisr.hub.names.WEIGHTS` (shipped in the package, or downloaded and
    verified into the cache). Anything else is a WeightsError listing the names.

    Args:
        device, dtype: where and in which float dtype the model ends up.
        scale: optional expected scale; a file with another scale is an error. A foreign
            file whose tensors do not fix the scale (SRCNN, VDSR, FSRCNN) is built at it.
        progress: show a progress bar when downloading.
        padding, color_space: what a foreign file's tensors do not tell (see
            :class:`~sisr.archs._detect.Hints`): ``"same"`` / ``"valid"`` convolutions,
            ``"rgb"`` / ``"ycbcr"`` / ``"y"`` input; None leaves it to detection. For a sisr
            weights file, which stores them, they must agree with it.
    """
    hints = Hints(padding=padding, color_space=color_space)
    path = resolve_weights(name_or_path, progress=progress)
    if path is None:
        from sisr.archs import PRESETS

        m = names.BICUBIC_NAME.match(str(name_or_path))
        assert m is not None
        named_scale = int(m.group(1)) if m.group(1) else None
        if named_scale is not None and scale is not None and named_scale != scale:
            raise WeightsError(f"{name_or_path}: scale x{named_scale} but scale={scale} requested")
        chosen = named_scale or scale
        if chosen is None:
            raise WeightsError(
                f"{name_or_path!s}: bicubic needs a scale: use 'bicubic-x4' or pass scale=4"
            )
        model = PRESETS["bicubic"](scale=chosen)
        _check_stored(model, hints, source=str(name_or_path))
    else:
        if is_sisr_weights(path):
            model = load_weights_file(path)
            _check_stored(model, hints, source=str(path))
        else:
            model = _load_foreign(path, scale, hints)
        if scale is not None and int(model.scale) != int(scale):
            raise WeightsError(
                f"{path}: weights are for x{model.scale}, but x{scale} was requested"
            )
    model = model.to(device)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


__all__ = [
    "Detected",
    "Hints",
    "describe",
    "detect",
    "detect_raw",
    "load_detected",
    "load_model",
    "resolve_weights",
]
