"""Evaluation results as a paper-style table, JSON and CSV.

JSON is a list of :meth:`EvalResult.to_dict` records (with per-image scores);
CSV has one summary row per (model, data set, scale). Files are written
atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

from sisr.errors import SisrError
from sisr.evaluate.runner import EvalResult
from sisr.io.atomic import atomic_write_bytes

CSV_FIELDS: tuple[str, ...] = (
    "model",
    "dataset",
    "scale",
    "images",
    "psnr_y",
    "ssim_y",
    "psnr_rgb",
    "seconds",
)


def _unique(values: Sequence[object]) -> list:  # type: ignore[type-arg]
    return list(dict.fromkeys(values))


def format_cell(result: EvalResult | None) -> str:
    """``PSNR / SSIM`` with the precision papers print (2 and 4 decimals)."""
    if result is None:
        return "-"
    if result.ssim_y is None:
        return f"{result.psnr_y:.2f}"
    return f"{result.psnr_y:.2f} / {result.ssim_y:.4f}"


def format_table(results: Sequence[EvalResult]) -> str:
    """One block per model: rows are data sets (with image counts), columns scales."""
    lines: list[str] = []
    for model in _unique([r.model for r in results]):
        mine = [r for r in results if r.model == model]
        scales = sorted(_unique([r.scale for r in mine]))
        datasets = _unique([r.dataset for r in mine])
        cells = {(r.dataset, r.scale): r for r in mine}
        rows = [["data set", *(f"x{s}" for s in scales)]]
        for d in datasets:
            count = max(len(r.images) for r in mine if r.dataset == d)
            rows.append([f"{d} ({count})", *(format_cell(cells.get((d, s))) for s in scales)])
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        if lines:
            lines.append("")
        seconds = sum(r.seconds for r in mine)
        what = "PSNR (dB)" if all(r.ssim_y is None for r in mine) else "PSNR (dB) / SSIM"
        lines.append(f"{model}: {what} on Y (BT.601), border = scale; {seconds:.1f} s")
        for row in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _finite(value: object) -> object:
    """Strict JSON has no Infinity: a PSNR of identical images (inf) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def to_json(results: Sequence[EvalResult]) -> str:
    records = [_finite(r.to_dict()) for r in results]
    return json.dumps(records, indent=2, allow_nan=False) + "\n"


def _write(path: str | Path, data: bytes) -> None:
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise SisrError(f"{path}: cannot write ({e.strerror or e})") from None


def write_json(path: str | Path, results: Sequence[EvalResult]) -> None:
    _write(path, to_json(results).encode())


def to_csv(results: Sequence[EvalResult]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in results:
        writer.writerow(
            {
                "model": r.model,
                "dataset": r.dataset,
                "scale": r.scale,
                "images": len(r.images),
                "psnr_y": f"{r.psnr_y:.4f}",
                "ssim_y": "" if r.ssim_y is None else f"{r.ssim_y:.6f}",
                "psnr_rgb": f"{r.psnr_rgb:.4f}",
                "seconds": f"{r.seconds:.3f}",
            }
        )
    return buf.getvalue()


def write_csv(path: str | Path, results: Sequence[EvalResult]) -> None:
    _write(path, to_csv(results).encode())


__all__ = [
    "CSV_FIELDS",
    "format_cell",
    "format_table",
    "to_csv",
    "to_json",
    "write_csv",
    "write_json",
]
