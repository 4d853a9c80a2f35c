"""tools/gpu/zoo.py: the plan validates, and the whole launch path dry-runs on the CPU.

The dry run is the device call in miniature: pack -> launch (data unpacked and verified,
runs started as ``sisr train --budget`` processes, a dependent run started from its
parent's weights, a failing run that does not stop the others) -> bundle -> collect.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import yaml
from PIL import Image

TOOL = Path(__file__).resolve().parents[2] / "tools" / "gpu" / "zoo.py"


@pytest.fixture(scope="module")
def zoo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("zoo", TOOL)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["zoo"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_shipped_plan_validates_and_is_sized(zoo: ModuleType) -> None:
    plan = zoo.load_plan()
    names = [r.name for r in plan.runs]
    assert names[:3] == ["edsr-baseline-x2", "edsr-baseline-x3", "edsr-baseline-x4"]
    for run in plan.runs:
        recipe = zoo.run_recipe(plan, run)
        assert recipe.name == run.name
        assert recipe.device == "cuda" and recipe.precision == "bf16"
        assert recipe.data.on_device is True
        # Set14 / B100 never steer training: Set5 is the only validation set
        assert [Path(d).name for d in recipe.val.datasets] == ["Set5"]
    rows = zoo.estimate(plan, 540.0, 150.0, 4.0)
    assert all(r["est_steps"] > 0 and r["budget_s"] > 0 for r in rows)
    # the priority-1 chain: the children get what the parent leaves of the window
    by = {r["run"]: r for r in rows}
    assert by["edsr-baseline-x3"]["budget_s"] < by["edsr-baseline-x2"]["budget_s"]


@pytest.mark.parametrize(
    ("runs", "message"),
    [
        ([{"name": "a", "priority": 1, "recipe": "r.yaml", "bogus": 1}], "unknown key"),
        ([{"name": "a", "priority": 1, "recipe": "r.yaml", "after": "b"}], "earlier run"),
        ([{"name": "../a", "priority": 1, "recipe": "r.yaml"}], "bad run name"),
        ([{"name": "a", "priority": 0, "recipe": "r.yaml"}], "priority"),
        ([{"name": "a", "priority": 1, "recipe": "r.yaml", "sm": 500}], "sm must"),
        (
            [
                {"name": "a", "priority": 1, "recipe": "r.yaml"},
                {"name": "a", "priority": 1, "recipe": "r.yaml"},
            ],
            "duplicate",
        ),
    ],
)
def test_plan_errors_name_the_run(
    zoo: ModuleType, tmp_path: Path, runs: list[dict], message: str
) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({"defaults": [], "runs": runs}))
    with pytest.raises(zoo.PlanError, match=message):
        zoo.load_plan(path)


def test_select_keeps_parents(zoo: ModuleType) -> None:
    plan = zoo.load_plan()
    assert [r.priority for r in zoo.select(plan, None, 1).runs] == [1, 1, 1]
    with pytest.raises(zoo.PlanError, match="parent"):
        zoo.select(plan, ["edsr-baseline-x3"], None)
    with pytest.raises(zoo.PlanError, match="unknown"):
        zoo.select(plan, ["nope"], None)


def _images(folder: Path, n: int, size: tuple[int, int], seed: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        small = (rng.random((size[1] // 4, size[0] // 4, 3)) * 255).astype(np.uint8)
        Image.fromarray(small).resize(size, Image.BICUBIC).save(folder / f"im{i}.png")


@pytest.mark.slow
def test_dry_run_launch_bundle_collect(zoo: ModuleType, tmp_path: Path) -> None:
    from sisr.data.pack import pack

    src = tmp_path / "src"
    _images(src / "tiny", 4, (64, 48), seed=0)
    _images(src / "Set5", 2, (36, 36), seed=1)
    gpu = tmp_path / "gpu"
    gpu.mkdir()
    pack([src / "tiny"], gpu / "train291.pack")
    (gpu / "bench").mkdir()
    (src / "Set5").rename(gpu / "bench" / "Set5")
    recipe = Path(zoo.REPO) / "recipes" / "espcn_x3.yaml"
    plan = {
        "defaults": [
            "iterations=1000",
            'data.train=["${SISR_DATA}/train/tiny"]',
            "data.lr_patch=8",
            "data.batch_size=4",
            "val={datasets: [Set5], interval: 0}",
            "checkpoint.interval=0",
            "log={interval: 5, tensorboard: false, progress: false, images: 0}",
            "device=cpu",
        ],
        "runs": [
            {
                "name": "parent",
                "priority": 1,
                "recipe": str(recipe),
                "share": 0.45,
                "set": ["model.scale=2"],
            },
            {"name": "child", "priority": 1, "recipe": str(recipe), "after": "parent"},
            {
                "name": "broken",
                "priority": 2,
                "recipe": str(recipe),
                "set": ["model.overrides={no_such_option: 1}"],
            },
        ],
    }
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(plan))
    out = tmp_path / "out"
    code = zoo.main(
        [
            "launch",
            "--plan",
            str(plan_path),
            "--wall",
            "40",
            "--device",
            "cpu",
            "--gpu-dir",
            str(gpu),
            "--root",
            str(tmp_path / "root"),
            "--out",
            str(out),
            "--threads",
            "1",
            "--start-margin",
            "6",
            "--end-margin",
            "3",
            "--collect-margin",
            "4",
            "--min-budget",
            "2",
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    runs = summary["runs"]
    assert runs["parent"]["status"] == "done" and runs["parent"]["iterations"] > 0
    assert runs["child"]["status"] == "done", (out / "launch.log").read_text()
    assert runs["broken"]["status"].startswith("failed")
    assert "set5_psnr_y" in runs["parent"]
    assert len(summary["parts"]) <= 6
    assert all((out / p).stat().st_size < 16 << 20 for p in summary["parts"])
    into = tmp_path / "store"
    zoo.collect(out, into)
    assert (into / "results" / "parent" / "model.safetensors").is_file()
    child_log = (into / "results" / "child" / "train.log").read_text()
    assert "init-from" in child_log and "parent" in child_log
    assert "budget:" in child_log
    # the failing run's own error came back with it
    assert "no_such_option" in (into / "results" / "broken" / "stdout.log").read_text()


def test_prepare_fills_the_carry_in_order(zoo: ModuleType, tmp_path: Path) -> None:
    """Whole packs while they fit, then the leading images of the next, then nothing;
    what is carried never exceeds the limit."""
    from sisr.data.pack import read_header

    data = tmp_path / "data"
    _images(data / "train" / "T91", 3, (64, 48), seed=0)
    _images(data / "train" / "BSD200", 3, (64, 48), seed=1)
    _images(data / "train" / "General100", 4, (64, 48), seed=2)
    _images(data / "benchmarks" / "Set5", 2, (36, 36), seed=3)
    gpu = tmp_path / "gpu"
    roomy = zoo.prepare(data, 10 << 20, margin=0, gpu_dir=gpu, tree=1000)
    assert roomy["train291"].startswith("6 of 6") and roomy["general100"].startswith("4 of 4")
    full291 = (gpu / "train291-full.pack").stat().st_size
    g100 = read_header(gpu / "general100-full.pack")["images"]
    # room for T91 + BSD200 and about two General100 images (plus the subset's header)
    fixed = 1000 + zoo._bytes_under(gpu / "bench")
    limit = fixed + full291 + zoo.header_room(4) + g100[0]["length"] + g100[1]["length"] + 10
    tight = zoo.prepare(data, limit, margin=0, gpu_dir=gpu, tree=1000)
    assert tight["train291"].startswith("6 of 6")
    assert tight["general100"].startswith("2 of 4")
    assert tight["carried_total_bytes"] <= limit
    # less room than the first pack: its leading images, and no General100 at all
    small = zoo.prepare(
        data, fixed + full291 // 2 + zoo.header_room(6), margin=0, gpu_dir=gpu, tree=1000
    )
    kept = int(small["train291"].split()[0])
    assert 0 < kept < 6 and small["general100"] == "0 of 4 images, not carried"
    assert not (gpu / "general100.pack").exists()
    assert [Path(p).name for p in small["carry"]][:1] == ["train291.pack"]
