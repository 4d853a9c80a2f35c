"""``sisr models --catalog`` and ``sisr models --scan DIR`` (kept apart from the zoo table)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# Weight file suffixes a scan looks at (others are skipped silently).
WEIGHT_SUFFIXES: tuple[str, ...] = (".pth", ".pt", ".ckpt", ".safetensors", ".bin")


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_catalog(args: argparse.Namespace) -> int:
    from sisr.hub.catalog import catalog, describe, weights_dir

    entries = [describe(e) for e in catalog().values()]
    if args.json:
        print(json.dumps({"cache": str(weights_dir()), "weights": entries}, indent=2))
        return 0
    rows = [["name", "arch", "runs", "scale", "size", "license", "cached"]]
    for e in entries:
        rows.append(
            [
                e["name"],
                e["architecture"],
                e["runs"],
                f"x{e['scale']}",
                f"{e['bytes'] / 1e6:.1f} MB",
                e["license"],
                "yes" if e["cached"] else "no",
            ]
        )
    print(_table(rows))
    print(f"\nsisr upscale -n NAME downloads into {weights_dir()} (sha256 and size verified)")
    return 0


def scan_file(path: Path) -> dict[str, Any]:
    """What one weight file is and whether it loads (never raises for a bad file)."""
    from sisr.archs.complexity import count_params
    from sisr.errors import SisrError
    from sisr.hub.weights import is_sisr_weights, load_weights_file

    out: dict[str, Any] = {"file": str(path), "bytes": path.stat().st_size}
    try:
        if is_sisr_weights(path):
            model = load_weights_file(path)
            out.update(kind="sisr", arch=model.arch_id, scale=model.scale, layout="sisr")
        else:
            from sisr.hub.detect import scale_hint
            from sisr.hub.load import detect_raw
            from sisr.hub.read import read_foreign_state_dict

            raw = read_foreign_state_dict(path)
            try:
                found = detect_raw(raw, name=str(path), source=str(path))
                scale: int | None = found.model.scale
            except SisrError as exc:
                if "scale is not stored" not in str(exc):
                    raise
                # Loads at any scale; report it without one.
                found = detect_raw(raw, scale=scale_hint(str(path)) or 2, source=str(path))
                scale = None
            model = found.model
            arch = found.match.arch
            if arch == "spandrel":
                arch = f"spandrel:{found.match.hparams['architecture']}"
            out.update(kind="foreign", arch=arch, scale=scale, layout=found.match.layout)
            if found.match.notes:
                out["assumed"] = list(found.match.notes)
        out.update(params=count_params(model), loads=True)
    except SisrError as exc:
        out.update(loads=False, error=str(exc).replace(f"{path}: ", "", 1))
    except Exception as exc:  # a scan reports every file, whatever it holds
        out.update(loads=False, error=f"{type(exc).__name__}: {exc}")
    return out


def run_scan(args: argparse.Namespace) -> int:
    from sisr.errors import ConfigError

    root = Path(args.scan)
    if not root.is_dir():
        raise ConfigError(f"--scan: {root} is not a folder")
    files = sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES
    )
    results = [scan_file(p) for p in files]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        name = str(Path(r["file"]).relative_to(root))
        if r["loads"]:
            scale = f"x{r['scale']}" if r["scale"] is not None else "x? (scale not stored)"
            print(
                f"{name}: {r['arch']} {scale}, {r['params'] / 1e6:.3f}M params, "
                f"key layout {r['layout']}, loads"
            )
        else:
            print(f"{name}: does not load: {r['error']}")
    ok = sum(r["loads"] for r in results)
    print(f"{ok} of {len(results)} weight files load")
    return 0


__all__ = ["WEIGHT_SUFFIXES", "run_catalog", "run_scan", "scan_file"]
