"""tools/make_table.py on small synthetic inputs (loaded from its path: tools/ is no package)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "make_table.py"


@pytest.fixture(scope="module")
def mt() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_table", TOOL)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


MODELS = {
    "presets": [
        {"name": "edsr-baseline", "by_scale": {"2": {"params": 1369859}, "4": {"params": 1517571}}},
        {"name": "espcn", "by_scale": {"2": {"params": 20960}}},
    ]
}
EVAL_A = [
    {"model": "edsr-baseline-x2", "dataset": "Set5", "scale": 2, "psnr_y": 37.8512},
    {"model": "edsr-baseline-x2", "dataset": "Set14", "scale": 2, "psnr_y": 33.3149},
    {"model": "espcn-x2", "dataset": "Set5", "scale": 2, "psnr_y": 36.0},
]
EVAL_B = [  # later file wins; a scale with no params listed; an unknown paper cell
    {"model": "edsr-baseline-x2", "dataset": "Set5", "scale": 2, "psnr_y": 37.9049},
    {"model": "edsr-baseline-x3", "dataset": "B100", "scale": 3, "psnr_y": 28.9},
]


def _rows(table: str) -> dict[str, list[str]]:
    out = {}
    for line in table.splitlines():
        if line.startswith("| ") and not line.startswith("| model"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out[f"{cells[0]}@{cells[1]}"] = cells
    return out


def test_table_cells(mt: ModuleType) -> None:
    speed = {
        "espcn-x2": {"mp_per_s": 41.234},
        "edsr-baseline-x3": {"mp_per_s": 0.5, "params": 1554},
        "default-x2": {
            "preset": "span-t",
            "params": 47308,
            "macs_per_output_pixel": 11900,
            "mp_per_s": 2.5,
            "mp_per_s_bf16": 0.31,
        },
    }
    default = [{"model": "default-x2", "dataset": "Set5", "scale": 2, "psnr_y": 36.969}]
    table = mt.build_table([EVAL_A, EVAL_B, default], MODELS, speed)
    rows = _rows(table)
    assert list(rows) == [
        "edsr-baseline-x2@x2",
        "edsr-baseline-x3@x3",
        "espcn-x2@x2",
        "default-x2@x2",  # sorted by its preset, span-t
    ]
    edsr2 = rows["edsr-baseline-x2@x2"]
    assert edsr2[2:] == ["1.37 M", "-", "-", "37.90 (37.99)", "33.31 (33.57)", "- (32.16)"]
    edsr3 = rows["edsr-baseline-x3@x3"]
    assert edsr3[2:] == ["1.6 k", "-", "0.50", "- (34.37)", "- (30.28)", "28.90 (29.09)"]
    assert rows["espcn-x2@x2"][2:] == ["21.0 k", "-", "41.23", "36.00", "-", "-"]
    assert rows["default-x2@x2"][2:] == ["47.3 k", "11.9 k", "2.50 / 0.31", "36.97", "-", "-"]


def test_paper_override_and_names(mt: ModuleType) -> None:
    assert mt.split_name("edsr-baseline-x2", 2) == "edsr-baseline"
    assert mt.split_name("runs/a/model.safetensors", 2) == "model"
    assert mt.split_name("default", 2) == "default"
    table = mt.build_table([EVAL_A], MODELS, paper={"espcn": {"Set5": {"2": 36.5}}})
    assert _rows(table)["espcn-x2@x2"][5] == "36.00 (36.50)"
    assert mt.PAPER["espcn"]["Set5"] == {3: 32.55}  # built-in table not mutated


def test_cli_writes_file(mt: ModuleType, tmp_path: Path) -> None:
    files = {}
    for name, obj in {"a": EVAL_A, "models": MODELS, "speed": {}}.items():
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(obj))
    out = tmp_path / "table.md"
    argv = [str(files["a"]), "--models", str(files["models"]), "--speed", str(files["speed"])]
    assert mt.main([*argv, "-o", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("| model | scale | params | MACs/px | CPU MP/s | Set5 | Set14 | B100 |")
    with pytest.raises(ValueError, match="list of results"):
        mt.build_table([{"model": "x"}], MODELS)


def test_family_paper_numbers_and_training_column(mt: ModuleType) -> None:
    """srgan-x4 is an srresnet preset but is compared with SRGAN's paper, not SRResNet's;
    a ``train`` entry in the speed JSON adds the training-compute column."""
    evals = [
        {"model": "srgan-x4", "dataset": "Set5", "scale": 4, "psnr_y": 29.03},
        {"model": "srresnet-x4", "dataset": "Set5", "scale": 4, "psnr_y": 29.43},
    ]
    speed = {
        "srgan-x4": {"preset": "srresnet", "mp_per_s": 1.0, "train": "GPU 8.2 min"},
        "srresnet-x4": {"preset": "srresnet", "mp_per_s": 1.0},
    }
    table = mt.build_table([evals], MODELS, speed)
    assert table.splitlines()[0].endswith("| B100 | training |")
    rows = _rows(table)
    assert rows["srgan-x4@x4"][5] == "29.03 (29.40)"
    assert rows["srgan-x4@x4"][-1] == "GPU 8.2 min"
    assert rows["srresnet-x4@x4"][5] == "29.43 (32.05)"
    assert rows["srresnet-x4@x4"][-1] == "-"
