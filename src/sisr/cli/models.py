"""``sisr models [--json]``: the zoo at a glance (presets, sizes, cost, named weights).

Counting parameters and MACs builds every preset and traces it (about 10 s); the figures
only change with the code, so they are cached in ``cache_dir()/zoo/KEY.json``, KEY being a
hash of the sources that decide them (``sisr/archs``, ``sisr/degrade``, this file) and of
the torch version. A listing from the cache imports neither torch nor the networks.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from sisr.archs.base import SRModel

# Scales at which parameters, MACs and receptive radius are reported.
REFERENCE_SCALES: tuple[int, ...] = (2, 4)
# MACs are counted on a meta-device pass, so the LR size costs nothing; it only has
# to be large enough that border handling of odd layers does not matter.
MACS_LR_SIZE: tuple[int, int] = (48, 48)
_PROBE_SCALES: tuple[int, ...] = (4, 2, 3, 8, 1)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the model zoo: presets, scales, parameters, MACs, named weights",
        description=(
            "List every preset with its architecture, supported scales, trainable "
            f"parameters and multiply-accumulates per output pixel at x{' and x'.join(map(str, REFERENCE_SCALES))}, "
            "receptive radius (LR pixels), fp16 safety and the named weights available."
        ),
    )
    p.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--catalog",
        action="store_true",
        help="list the published weights sisr can download by name (sisr upscale -n NAME)",
    )
    what.add_argument(
        "--scan",
        metavar="DIR",
        default=None,
        help="one line per weight file under DIR: architecture, scale, parameters, loads or why not",
    )
    p.set_defaults(func=run)


def _build_shapes(name: str, scale: int) -> SRModel:
    """Build a preset on the meta device (no memory, no init cost); CPU if that fails."""
    import torch

    from sisr.archs import build

    with contextlib.suppress(NotImplementedError, RuntimeError), torch.device("meta"):
        return build(name, scale)
    return build(name, scale)


def _deployed(name: str, model: SRModel) -> SRModel:
    """The preset in its inference form: re-parameterisable blocks fused (SPAN)."""
    if not callable(getattr(model, "reparameterize", None)):
        return model
    fused = _build_shapes(name, model.scale)
    fused.reparameterize()  # type: ignore[operator]
    return fused


def _macs(model: SRModel) -> float:
    from sisr.archs.complexity import macs_per_output_pixel

    try:
        return macs_per_output_pixel(model, MACS_LR_SIZE)
    except (NotImplementedError, RuntimeError):
        # Some op has no meta kernel: count on a real CPU copy, on a smaller input.
        from sisr.archs import build

        real = build(
            model.arch_id, model.scale, **{k: v for k, v in model.hparams.items() if k != "scale"}
        )
        return macs_per_output_pixel(real, (16, 16))


def _default_scale(model: SRModel, scales: tuple[int, ...]) -> int:
    import inspect

    param = inspect.signature(type(model).__init__).parameters.get("scale")
    default = param.default if param is not None else inspect.Parameter.empty
    return default if isinstance(default, int) and default in scales else scales[-1]


def _preset_figures(name: str) -> dict[str, Any]:
    """What ``sisr models`` computes about one preset from its code (cacheable)."""
    from sisr.archs import build
    from sisr.archs.complexity import count_inference_params, count_params
    from sisr.errors import SisrError

    probe: SRModel | None = None
    for scale in _PROBE_SCALES:
        try:
            probe = _build_shapes(name, scale)
            break
        except SisrError:
            continue
    if probe is None:
        build(name, 4)  # re-raise the preset's own error
        raise AssertionError("unreachable")
    info = probe.info()
    scales = tuple(info.scales)
    per_scale: dict[str, dict[str, Any]] = {}
    for scale in REFERENCE_SCALES:
        if scale not in scales:
            continue
        model = probe if probe.scale == scale else _build_shapes(name, scale)
        per_scale[str(scale)] = {
            "params": count_params(model),
            "inference_params": count_inference_params(_deployed(name, model)),
            "macs_per_output_pixel": _macs(model),
            "receptive_radius": model.info().receptive_radius,
        }
    return {
        "name": name,
        "arch": probe.arch_id,
        "default_scale": _default_scale(probe, scales),
        "scales": list(scales),
        "size_multiple": info.size_multiple,
        "half_safe": info.half_safe,
        "paper": info.paper,
        "by_scale": per_scale,
    }


def _weights_of(name: str) -> dict[str, Any]:
    """The named weights of a preset and whether each is shipped (read at every listing)."""
    from sisr.hub import names

    weights = []
    for entry in names.weights_for_preset(name):
        path = names.shipped_path(entry)
        weights.append(
            {
                "name": entry.name,
                "scale": entry.scale,
                "shipped": path is not None and path.is_file(),
                "url": entry.url,
            }
        )
    return {"weights": weights, "shipped_weights": any(w["shipped"] for w in weights)}


def describe_preset(name: str) -> dict[str, Any]:
    """Everything ``sisr models`` reports about one preset (JSON-serialisable)."""
    return {**_preset_figures(name), **_weights_of(name)}


def describe_discriminator(name: str) -> dict[str, Any]:
    import torch

    from sisr.archs import DISCRIMINATORS
    from sisr.archs.complexity import count_params

    model = None
    with contextlib.suppress(NotImplementedError, RuntimeError), torch.device("meta"):
        model = DISCRIMINATORS[name]()
    if model is None:
        model = DISCRIMINATORS[name]()
    return {"name": name, "arch": model.arch_id, "params": count_params(model)}


def _compute_figures() -> dict[str, Any]:
    from sisr.archs import DISCRIMINATORS, PRESETS

    return {
        "reference_scales": list(REFERENCE_SCALES),
        "presets": [_preset_figures(n) for n in sorted(PRESETS)],
        "discriminators": [describe_discriminator(n) for n in sorted(DISCRIMINATORS)],
    }


def figures_key() -> str:
    """Hash of everything the figures depend on: the sources and the torch version."""
    from importlib import metadata

    from sisr import version

    root = Path(version.__file__).resolve().parent
    h = hashlib.sha256()
    h.update(f"{version.__version__} {REFERENCE_SCALES} {MACS_LR_SIZE}".encode())
    try:
        h.update(metadata.version("torch").encode())
    except metadata.PackageNotFoundError:
        h.update(b"torch ?")
    sources = [Path(__file__).resolve()]
    for folder in ("archs", "degrade"):
        sources += sorted((root / folder).rglob("*.py"))
    for path in sources:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:32]


def _cache_path() -> Path:
    from sisr.hub.download import cache_dir

    return cache_dir() / "zoo" / f"{figures_key()}.json"


def _read_cached(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(data, dict) and isinstance(data.get("presets"), list)
    return data if ok and data.get("reference_scales") == list(REFERENCE_SCALES) else None


def zoo_figures() -> dict[str, Any]:
    """The computed part of the listing, from the cache when the code has not changed."""
    from sisr.io.atomic import atomic_write_bytes

    path = _cache_path()
    cached = _read_cached(path)
    if cached is not None:
        return cached
    figures = _compute_figures()
    # A read-only cache only costs the next listing the same 10 s.
    with contextlib.suppress(OSError):
        atomic_write_bytes(path, json.dumps(figures).encode("utf-8"))
    return figures


def collect() -> dict[str, Any]:
    """The whole zoo: presets (sorted by name) and discriminators."""
    figures = zoo_figures()
    return {
        "reference_scales": figures["reference_scales"],
        "presets": [{**p, **_weights_of(p["name"])} for p in figures["presets"]],
        "discriminators": figures["discriminators"],
    }


def _fmt_params(n: int | None) -> str:
    if n is None:
        return "-"
    if n == 0:
        return "0"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}K"


def _fmt_macs(v: float | None) -> str:
    if v is None:
        return "-"
    if v == 0:
        return "0"
    return f"{v / 1e3:.1f}K" if v < 1e6 else f"{v / 1e6:.2f}M"


def render_table(zoo: dict[str, Any]) -> str:
    ref = zoo["reference_scales"]
    header = ["preset", "arch", "scales"]
    header += [f"params x{s}" for s in ref] + [f"deployed x{ref[-1]}"]
    header += [f"MACs/px x{s}" for s in ref]
    header += [f"radius x{ref[-1]}", "fp16", "weights"]
    rows = [header]
    for p in zoo["presets"]:
        by = p["by_scale"]
        row = [p["name"], p["arch"], ",".join(map(str, p["scales"]))]
        row += [_fmt_params(by.get(str(s), {}).get("params")) for s in ref]
        row += [_fmt_params(by.get(str(ref[-1]), {}).get("inference_params"))]
        row += [_fmt_macs(by.get(str(s), {}).get("macs_per_output_pixel")) for s in ref]
        radius = by.get(str(ref[-1]), {}).get("receptive_radius")
        row += ["-" if radius is None else str(radius), "yes" if p["half_safe"] else "no"]
        row += [", ".join(w["name"] for w in p["weights"]) or "-"]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if zoo["discriminators"]:
        lines.append("")
        lines.append(
            "discriminators: "
            + ", ".join(f"{d['name']} ({_fmt_params(d['params'])})" for d in zoo["discriminators"])
        )
    lines.append("")
    lines.append(
        "params: trainable; deployed: as it computes (weight norm folded, re-parameterised "
        "blocks fused); MACs/px: multiply-accumulates per output pixel; radius: LR pixels; "
        "weights: names for `sisr.load(...)` (plus bicubic-x2/x3/x4)"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "catalog", False) or getattr(args, "scan", None):
        from sisr.cli.models_scan import run_catalog, run_scan

        return run_catalog(args) if args.catalog else run_scan(args)
    zoo = collect()
    if args.json:
        print(json.dumps(zoo, indent=2))
    else:
        print(render_table(zoo))
    return 0
