#!/usr/bin/env python3
"""Build the README's results table from ``sisr eval --json`` outputs.

    python tools/make_table.py EVAL.json [EVAL.json ...] --models MODELS.json \
        [--speed SPEED.json] [--paper PAPER.json] [-o TABLE.md]

* EVAL.json: ``sisr eval --model NAME ... --data Set5 Set14 B100 --json EVAL.json`` (a list
  of {model, dataset, scale, psnr_y, ...}); models named ``<preset>-x<scale>`` (shipped
  names) or ``default``; later files win for the same (model, dataset, scale).
* MODELS.json: ``sisr models --json`` (params per preset and scale, where listed).
* SPEED.json: ``{"<model name>": {"mp_per_s": float, "params": int, "preset": str,
  "macs_per_output_pixel": int, "mp_per_s_bf16": float, "train": str}}`` (all but
  ``mp_per_s`` optional; ``train`` adds a training-compute column) - CPU megapixels (output) per second, e.g. from ``tools/model_facts.py``.
* PAPER.json: extra paper numbers ``{"<preset>": {"Set5": {"2": 37.99, ...}, ...}}``
  merged over the built-in :data:`PAPER` table.

One row per (preset, scale); each benchmark cell is ``ours (paper)``; ``-`` where absent.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

DATASETS: tuple[str, ...] = ("Set5", "Set14", "B100")

# Y-PSNR, border = scale. Sources: the table in the shared data README (RCAN, SAFMN and
# SwinIR papers' comparison tables) and the recipes' comments (the papers themselves).
PAPER: dict[str, dict[str, dict[int, float]]] = {
    "edsr-baseline": {
        "Set5": {2: 37.99, 3: 34.37, 4: 32.09},
        "Set14": {2: 33.57, 3: 30.28, 4: 28.58},
        "B100": {2: 32.16, 3: 29.09, 4: 27.57},
    },
    "edsr": {
        "Set5": {2: 38.11, 3: 34.65, 4: 32.46},
        "Set14": {2: 33.92, 3: 30.52, 4: 28.80},
        "B100": {2: 32.32, 3: 29.25, 4: 27.71},
    },
    "vdsr": {
        "Set5": {2: 37.53, 3: 33.67, 4: 31.35},
        "Set14": {2: 33.05, 3: 29.78, 4: 28.01},
        "B100": {2: 31.90, 3: 28.83, 4: 27.29},
    },
    "srcnn": {
        "Set5": {2: 36.66, 3: 32.75, 4: 30.48},
        "Set14": {2: 32.45, 3: 29.30, 4: 27.50},
        "B100": {2: 31.36, 3: 28.41, 4: 26.90},
    },
    "bicubic": {
        "Set5": {2: 33.66, 3: 30.39, 4: 28.42},
        "Set14": {2: 30.24, 3: 27.55, 4: 26.00},
        "B100": {2: 29.56, 3: 27.21, 4: 25.96},
    },
    "espcn": {"Set5": {3: 32.55}},  # trained on 91 images
    # FSRCNN trained on T91 + General100 (the issue tracker's table; no B100 in the paper)
    "fsrcnn": {"Set5": {2: 37.00, 3: 33.16, 4: 30.71}},
    # SRResNet (MSE) and SRGAN (VGG54) as published (ImageNet training, 350k images)
    "srresnet": {"Set5": {4: 32.05}, "Set14": {4: 28.49}, "B100": {4: 27.58}},
    "srgan": {"Set5": {4: 29.40}, "Set14": {4: 26.02}, "B100": {4: 25.16}},
}

_NAME = re.compile(r"^(?P<preset>.+)-x(?P<scale>\d+)$")


def split_name(model: str, scale: int) -> str:
    """The preset of a model label: ``edsr-baseline-x2`` -> ``edsr-baseline``; a path ->
    its file stem; otherwise the label itself."""
    stem = Path(model).stem if model.endswith(".safetensors") else model
    m = _NAME.match(stem)
    if m and int(m["scale"]) == scale:
        return m["preset"]
    return stem


def merge_paper(extra: Mapping[str, Any] | None) -> dict[str, dict[str, dict[int, float]]]:
    """:data:`PAPER` with ``extra`` (JSON: scale keys are strings) merged over it."""
    out = {p: {d: dict(s) for d, s in v.items()} for p, v in PAPER.items()}
    for preset, sets in (extra or {}).items():
        for ds, scales in sets.items():
            out.setdefault(preset, {}).setdefault(ds, {}).update(
                {int(s): float(v) for s, v in scales.items()}
            )
    return out


def collect_results(evals: Iterable[list[dict[str, Any]]]) -> dict[tuple[str, int], dict]:
    """{(model, scale): {dataset: psnr_y}} from ``sisr eval --json`` lists (later wins)."""
    out: dict[tuple[str, int], dict[str, float]] = {}
    for items in evals:
        if not isinstance(items, list):
            raise ValueError("an eval JSON must be a list of results (sisr eval --json)")
        for r in items:
            key = (str(r["model"]), int(r["scale"]))
            out.setdefault(key, {})[str(r["dataset"])] = float(r["psnr_y"])
    return out


def params_of(models: Mapping[str, Any], preset: str, scale: int) -> int | None:
    for p in models.get("presets", []):
        if p.get("name") == preset:
            entry = (p.get("by_scale") or {}).get(str(scale))
            return None if entry is None else int(entry["params"])
    return None


def _fmt_params(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


def build_table(
    evals: Iterable[list[dict[str, Any]]],
    models: Mapping[str, Any],
    speed: Mapping[str, Any] | None = None,
    paper: Mapping[str, Any] | None = None,
    datasets: tuple[str, ...] = DATASETS,
) -> str:
    """Markdown table: one row per evaluated (model, scale), cells ``ours (paper)``."""
    results = collect_results(evals)
    ref = merge_paper(paper)
    speed = speed or {}
    train_col = any("train" in (v or {}) for v in speed.values())
    head = ["model", "scale", "params", "MACs/px", "CPU MP/s", *datasets]
    if train_col:
        head.append("training")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]

    def preset_of(key: tuple[str, int]) -> str:
        return str((speed.get(key[0]) or {}).get("preset") or split_name(*key))

    order = sorted(results, key=lambda k: (preset_of(k), k[1], k[0]))
    for model, scale in order:
        sp = speed.get(model) or {}
        preset = preset_of((model, scale))
        params = sp.get("params")
        params = int(params) if params is not None else params_of(models, preset, scale)
        mps, bf16, macs = (
            sp.get("mp_per_s"),
            sp.get("mp_per_s_bf16"),
            sp.get("macs_per_output_pixel"),
        )
        speed_text = "-" if mps is None else f"{mps:.2f}"
        if mps is not None and bf16 is not None:
            speed_text += f" / {bf16:.2f}"
        macs_text = "-" if macs is None else f"{macs / 1e3:.1f} k"
        cells = [model, f"x{scale}", _fmt_params(params), macs_text, speed_text]
        for ds in datasets:
            ours = results[(model, scale)].get(ds)
            # the model's own family first (srgan-x4 is an srresnet), then its preset
            family = split_name(model, scale)
            table = ref.get(family) if family in ref else ref.get(preset, {})
            theirs = (table or {}).get(ds, {}).get(scale)
            text = "-" if ours is None else f"{ours:.2f}"
            if theirs is not None:
                text += f" ({theirs:.2f})"
            cells.append(text)
        if train_col:
            cells.append(str(sp.get("train") or "-"))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Y-PSNR (dB), border = scale, MATLAB bicubic LR (`sisr eval`); paper numbers in "
        "parentheses. MACs/px: multiply-accumulates per output pixel. CPU MP/s: output "
        "megapixels per second (fp32 / bf16 where both were measured)."
        + (
            " training: wall minutes of the device each stage ran on (file metadata)."
            if train_col
            else ""
        )
    )
    return "\n".join(lines) + "\n"


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"make_table: {path}: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("evals", nargs="+", type=Path, help="sisr eval --json outputs")
    ap.add_argument("--models", required=True, type=Path, help="sisr models --json output")
    ap.add_argument("--speed", type=Path, help="CPU speed JSON")
    ap.add_argument("--paper", type=Path, help="extra paper numbers JSON")
    ap.add_argument("-o", "--output", type=Path, help="write the table here (else stdout)")
    args = ap.parse_args(argv)
    table = build_table(
        [_load(p) for p in args.evals],
        _load(args.models),
        _load(args.speed) if args.speed else None,
        _load(args.paper) if args.paper else None,
    )
    if args.output is None:
        sys.stdout.write(table)
    else:
        from sisr.io.atomic import atomic_write_bytes

        atomic_write_bytes(args.output, table.encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
