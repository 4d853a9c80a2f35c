"""Table / JSON / CSV rendering of evaluation results."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from sisr.errors import SisrError
from sisr.evaluate import EvalResult, ImageScore
from sisr.evaluate.report import CSV_FIELDS, format_table, write_csv, write_json


def _result(model: str, dataset: str, scale: int, psnr: float, ssim: float | None) -> EvalResult:
    images = (
        ImageScore("a", psnr + 1, ssim, psnr, 0.5),
        ImageScore("b", psnr - 1, ssim, psnr, 0.25),
    )
    return EvalResult(model, dataset, scale, psnr, ssim, psnr - 2, images, 1.5)


def test_table_layout() -> None:
    results = [
        _result("edsr", "Set5", 2, 38.1149, 0.96071),
        _result("edsr", "Set5", 4, 32.456, 0.89801),
        _result("edsr", "B100", 2, 32.3201, 0.90123),
        _result("bicubic", "Set5", 2, 33.6641, None),
    ]
    lines = format_table(results).splitlines()
    assert lines[0] == "edsr: PSNR (dB) / SSIM on Y (BT.601), border = scale; 4.5 s"
    assert lines[1].split() == ["data", "set", "x2", "x4"]
    assert lines[2].split() == ["Set5", "(2)", "38.11", "/", "0.9607", "32.46", "/", "0.8980"]
    assert lines[3].split() == ["B100", "(2)", "32.32", "/", "0.9012", "-"]
    assert lines[4] == ""
    assert lines[5].startswith("bicubic: PSNR (dB) on Y")
    assert lines[7].split() == ["Set5", "(2)", "33.66"]
    # Columns line up: every cell of a column starts at the same offset.
    assert lines[1].index("x4") == lines[2].index("32.46") == lines[3].index("-")


def test_json_and_csv(tmp_path: Path) -> None:
    results = [_result("m", "Set5", 2, 30.0, 0.9), _result("m", "Set5", 3, math.inf, None)]
    write_json(tmp_path / "r.json", results)
    records = json.loads((tmp_path / "r.json").read_text())
    assert records[0] == results[0].to_dict()
    assert records[1]["psnr_y"] is None  # inf is not JSON: written as null
    assert records[1]["images"][0]["ssim_y"] is None
    write_csv(tmp_path / "r.csv", results)
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert tuple(rows[0]) == CSV_FIELDS
    assert rows[0] == {
        "model": "m",
        "dataset": "Set5",
        "scale": "2",
        "images": "2",
        "psnr_y": "30.0000",
        "ssim_y": "0.900000",
        "psnr_rgb": "28.0000",
        "seconds": "1.500",
    }
    assert rows[1]["ssim_y"] == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.json"]  # no temp files


def test_unwritable_destination_is_a_clean_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    results = [_result("m", "Set5", 2, 30.0, 0.9)]
    for write in (write_json, write_csv):
        with pytest.raises(SisrError, match=r"f/r\.out: cannot write"):
            write(tmp_path / "f" / "r.out", results)
