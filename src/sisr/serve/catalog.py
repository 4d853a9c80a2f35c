"""The models a server was started with, and how a request's ``model`` + ``scale`` pick one.

A request names a model only by a key of this catalog (a family such as ``default`` or a
variant such as ``default-x3``); it is a dictionary lookup, so a request can never make the
server open a path. ``bicubic`` is always there as the reference the page compares against.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sisr.errors import ConfigError

REFERENCE = "bicubic"
_SCALES = (2, 3, 4, 8)


@dataclass(frozen=True)
class ModelSpec:
    """One runnable variant: ``source`` is what :meth:`Upscaler.from_name` loads."""

    key: str
    family: str
    scale: int
    source: str
    arch: str
    description: str = ""
    metrics: tuple[dict[str, Any], ...] = ()


@dataclass
class Family:
    name: str
    default_scale: int
    variants: dict[int, str] = field(default_factory=dict)  # scale -> ModelSpec.key


def _metrics(meta: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """Measured PSNR/SSIM rows recorded in the weights' metadata (rounded for display)."""
    rows = []
    for row in meta.get("metrics") or []:
        if not isinstance(row, dict):
            continue
        # training exports write psnr/ssim, tools/finalize.py writes sisr eval's psnr_y/ssim_y
        names = {"psnr_y": "psnr", "ssim_y": "ssim"}
        rows.append(
            {
                names.get(k, k): (round(v, 4) if isinstance(v, float) else v)
                for k, v in row.items()
                if k in ("dataset", "scale", "psnr", "psnr_rgb", "ssim", "psnr_y", "ssim_y")
            }
        )
    return tuple(rows)


def _spec(key: str, family: str, source: str) -> ModelSpec:
    from sisr.hub import names
    from sisr.hub.load import resolve_weights
    from sisr.hub.weights import read_metadata

    bic = names.BICUBIC_NAME.match(key)
    if bic is not None:
        scale = int(bic.group(1))
        return ModelSpec(key, family, scale, source, "bicubic", "MATLAB-exact bicubic")
    path = resolve_weights(source, progress=False)
    assert path is not None
    meta = read_metadata(path)
    entry = names.WEIGHTS.get(source)
    return ModelSpec(
        key=key,
        family=family,
        scale=int(meta.get("scale") or (entry.scale if entry else 0)),
        source=source,
        arch=str(meta.get("arch", "?")),
        description=entry.description if entry else f"weights file {path.name}",
        metrics=_metrics(meta),
    )


def _expand(name: str) -> tuple[Family, list[ModelSpec]]:
    """A started ``--model`` -> its family and variants (``default`` -> x2, x3, x4)."""
    from sisr.hub import names
    from sisr.infer.upscaler import resolve_name

    path = Path(name)
    if path.suffix == ".safetensors" or path.is_file():
        if not path.is_file():
            raise ConfigError(f"serve: --model {name}: no such weights file")
        stem = path.stem
        spec = _spec(stem, stem, str(path))
        return Family(stem, spec.scale, {spec.scale: stem}), [spec]
    specs: list[ModelSpec] = []
    for s in _SCALES:
        try:
            cand = resolve_name(name, s)
        except ConfigError:
            continue
        named = cand in names.WEIGHTS and names.WEIGHTS[cand].scale == s
        if named or (names.BICUBIC_NAME.match(cand) and cand != name):
            specs.append(_spec(cand, name, cand))
    if not specs:
        if name not in names.WEIGHTS:
            known = ", ".join(names.known_names())
            raise ConfigError(f"serve: unknown model {name!r}; known names: {known}")
        specs.append(_spec(name, name, name))
    m = re.fullmatch(r".+-x(\d+)", name)
    if name in names.WEIGHTS:
        default = names.WEIGHTS[name].scale
    elif m is not None:
        default = int(m.group(1))
    else:
        default = min(sp.scale for sp in specs)
    return Family(name, default, {sp.scale: sp.key for sp in specs}), specs


class Catalog:
    """Families and variants, plus one lazily built :class:`Upscaler` per (key, tta)."""

    def __init__(
        self, models: tuple[str, ...], *, device: str = "auto", tile: int | str = "auto"
    ) -> None:
        self.families: dict[str, Family] = {}
        self.specs: dict[str, ModelSpec] = {}
        for name in models:
            if name in self.families:
                continue
            fam, specs = _expand(name)
            self.families[fam.name] = fam
            for sp in specs:
                self.specs.setdefault(sp.key, sp)
        if REFERENCE not in self.families:
            # the reference the page compares against, at the scales actually served
            scales = sorted({sp.scale for sp in self.specs.values()})
            ref = Family(REFERENCE, scales[0])
            for s in scales:
                key = f"{REFERENCE}-x{s}"
                self.specs.setdefault(key, _spec(key, REFERENCE, key))
                ref.variants[s] = key
            self.families[REFERENCE] = ref
        self.default_family = next(iter(self.families))
        self._device = device
        self._tile = tile
        self._lock = threading.Lock()
        self._upscalers: dict[tuple[str, bool], Any] = {}
        self._params: dict[str, int] = {}

    def lookup(self, model: str | None, scale: int | None) -> ModelSpec:
        """The variant a request asks for, or :class:`LookupError` saying what exists."""
        name = model or self.default_family
        if name in self.specs and name not in self.families:
            spec = self.specs[name]
            if scale is not None and scale != spec.scale:
                raise LookupError(f"model {name!r} is x{spec.scale}, not x{scale}")
            return spec
        fam = self.families.get(name)
        if fam is None:
            have = ", ".join(sorted({*self.families, *self.specs}))
            raise LookupError(f"unknown model {name!r}; this server runs: {have}")
        s = fam.default_scale if scale is None else scale
        if s not in fam.variants:
            have = ", ".join(f"x{v}" for v in sorted(fam.variants))
            raise LookupError(f"model {name!r} has no x{s}; available: {have}")
        return self.specs[fam.variants[s]]

    def upscaler(self, spec: ModelSpec, *, tta: bool = False) -> Any:
        """The (shared, thread-safe) upscaler of a variant; TTA ones share the weights."""
        from sisr.infer import Upscaler

        key = (spec.key, tta)
        with self._lock:
            up = self._upscalers.get(key)
            if up is None:
                base = self._upscalers.get((spec.key, False))
                if base is None:
                    base = Upscaler.from_name(
                        spec.source, device=self._device, tile=self._tile, progress=False
                    )
                    self._upscalers[(spec.key, False)] = base
                    self._params[spec.key] = sum(p.numel() for p in base.model.parameters())
                up = base
                if tta:
                    up = Upscaler(
                        base.model, device=base.device, tile=self._tile, tta=True, name=base.name
                    )
                self._upscalers[key] = up
            return up

    def load_all(self) -> None:
        """Build every variant now, so bad weights stop the server at start, not later."""
        for spec in self.specs.values():
            self.upscaler(spec)

    def describe(self) -> list[dict[str, Any]]:
        rows = []
        for spec in self.specs.values():
            rows.append(
                {
                    "name": spec.key,
                    "family": spec.family,
                    "scale": spec.scale,
                    "arch": spec.arch,
                    "parameters": self._params.get(spec.key),
                    "description": spec.description,
                    "metrics": list(spec.metrics),
                    "reference": spec.family == REFERENCE,
                }
            )
        return rows

    def describe_families(self) -> list[dict[str, Any]]:
        return [
            {
                "name": f.name,
                "scales": sorted(f.variants),
                "default_scale": f.default_scale,
                "reference": f.name == REFERENCE,
            }
            for f in self.families.values()
        ]
