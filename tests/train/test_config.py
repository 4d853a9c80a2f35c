"""Recipe parsing: strict keys, types and values with full key paths; overrides; recipes/."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sisr.archs import PRESETS
from sisr.errors import ConfigError
from sisr.losses import LOSSES
from sisr.train.config import (
    Recipe,
    apply_override,
    expand_path,
    load_recipe,
    recipe_from_dict,
)

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def minimal() -> dict:
    return {"model": {"preset": "espcn", "scale": 2}, "data": {"train": ["x"]}, "iterations": 10}


def test_minimal_defaults() -> None:
    r = recipe_from_dict(minimal())
    assert isinstance(r, Recipe)
    assert r.optim.name == "adam" and r.optim.betas == (0.9, 0.999)
    assert [t.name for t in r.loss] == ["l1"]
    assert r.val_scale == 2 and r.precision == "fp32" and r.ema.decay is None


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"optimizer": {}}, "optimizer: unknown key"),
        ({"optim": {"name": "adam", "lrr": 1}}, "optim.lrr: unknown key"),
        ({"loss": [{"name": "l1", "wieght": 2}]}, "loss[0].wieght: unknown key"),
        ({"model": {"preset": "espcn", "scale": "2"}}, "model.scale: expected an integer"),
        ({"model": {"preset": "espcn", "scale": 5}}, "model.scale: must be 2, 3, 4 or 8"),
        ({"optim": {"betas": [0.9]}}, "optim.betas: expected a list of 2 items"),
        ({"optim": {"betas": [0.9, 1.5]}}, "optim.betas[1]: must be in [0, 1)"),
        ({"optim": {"lr": -1.0}}, "optim.lr: must be > 0"),
        ({"optim": {"name": "rmsprop"}}, "optim.name: must be one of adam, adamw, sgd"),
        ({"data": {"train": ["x"], "on_device": 1}}, "data.on_device: must be one of"),
        ({"data": {"train": "x"}}, "data.train: expected a list"),
        ({"data": {"train": []}}, "data.train: give one of: folders"),
        ({"compile": "yes"}, "compile: expected true or false"),
        ({"iterations": 0}, "iterations: must be >= 1"),
        ({"schedule": {"name": "multistep"}}, "schedule.milestones: multistep needs milestones"),
        ({"schedule": {"name": "step"}}, "schedule.step_size: step schedule needs step_size"),
        ({"schedule": {"milestones": [5, 3]}}, "schedule.milestones: must be strictly increasing"),
        ({"grad_clip": {"mode": "adjustable"}}, "grad_clip.theta: adjustable clipping needs"),
        ({"ema": {"decay": 1.0}}, "ema.decay: must be in (0, 1)"),
        ({"precision": "fp8"}, "precision: must be one of auto, fp32, bf16, fp16"),
        ({"device": "tpu"}, "device: must be auto, cpu, cuda or cuda:N"),
    ],
)
def test_rejects_with_key_path(patch: dict, message: str) -> None:
    raw = minimal() | patch
    with pytest.raises(ConfigError) as err:
        recipe_from_dict(raw)
    assert message in str(err.value)


def test_missing_required_key() -> None:
    raw = minimal()
    del raw["iterations"]
    with pytest.raises(ConfigError, match="iterations: missing required key"):
        recipe_from_dict(raw)


def test_numbers_are_coerced_only_where_safe() -> None:
    # YAML 1.1 reads "1e-4" (no dot) as a string and 2e5 as a float
    raw = yaml.safe_load("lr: 1e-4\nsteps: 2.0e+5")
    r = recipe_from_dict(
        minimal()
        | {"optim": {"lr": raw["lr"]}, "schedule": {"name": "step", "step_size": raw["steps"]}}
    )
    assert r.optim.lr == 1e-4 and r.schedule.step_size == 200000
    with pytest.raises(ConfigError, match="iterations: expected an integer"):
        recipe_from_dict(minimal() | {"iterations": 2.5})


def test_overrides_are_yaml_and_validated() -> None:
    r = recipe_from_dict(
        minimal(),
        [
            "optim.lr=2e-4",
            "optim.betas=[0.8, 0.99]",
            "loss=[{name: l1}, {name: charbonnier, weight: 0.5, options: {eps: 0.01}}]",
            "loss.1.weight=0.25",
            "ema.decay=0.999",
            "val.datasets=[Set5, Set14]",
        ],
    )
    assert r.optim.lr == 2e-4 and r.optim.betas == (0.8, 0.99)
    assert r.loss[1].as_spec() == {"name": "charbonnier", "weight": 0.25, "eps": 0.01}
    assert r.ema.decay == 0.999 and r.val.datasets == ["Set5", "Set14"]
    with pytest.raises(ConfigError, match=r"optim\.lrr: unknown key"):
        recipe_from_dict(minimal(), ["optim.lrr=1"])
    with pytest.raises(ConfigError, match=r"expected key\.path=value"):
        recipe_from_dict(minimal(), ["optim.lr"])
    with pytest.raises(ConfigError, match="no list item '3'"):
        apply_override({"loss": [{"name": "l1"}]}, "loss.3.weight=1")


def test_round_trip(tmp_path: Path) -> None:
    r = recipe_from_dict(
        minimal(), ["optim.name=sgd", "schedule.name=cosine", "data.on_device=true"]
    )
    path = tmp_path / "r.yaml"
    path.write_text(r.to_yaml())
    assert load_recipe(path) == r


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML") as info:
        load_recipe(bad)
    assert "\n" not in str(info.value) and "line 1" in str(info.value)  # one-line CLI error
    bad.write_text(yaml.safe_dump(minimal() | {"seeds": 1}))
    with pytest.raises(ConfigError, match=r"bad\.yaml: seeds: unknown key"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="cannot read recipe"):
        load_recipe(tmp_path / "missing.yaml")


def test_expand_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SISR_TEST_ROOT", "/data/root")
    assert expand_path("${SISR_TEST_ROOT}/train/T91", "data.train[0]") == Path(
        "/data/root/train/T91"
    )
    monkeypatch.delenv("SISR_TEST_ROOT")
    with pytest.raises(ConfigError, match=r"data.train\[0\]: environment variable SISR_TEST_ROOT"):
        expand_path("${SISR_TEST_ROOT}/train", "data.train[0]")


def test_unset_sisr_data_is_found_where_eval_finds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 20, item 12: `sisr train` and `sisr eval` agree on where the data is."""
    from sisr.data.benchmarks import data_root_candidates

    work = tmp_path / "repo"
    work.mkdir()
    (tmp_path / "shared" / "data" / "train").mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.delenv("SISR_DATA", raising=False)
    root = (tmp_path / "shared" / "data").resolve()
    assert data_root_candidates()[0] == root
    assert expand_path("${SISR_DATA}/train/T91", "data.train[0]") == root / "train" / "T91"
    assert expand_path("$SISR_DATA/x", "k") == root / "x"
    monkeypatch.setenv("SISR_DATA", str(tmp_path / "elsewhere"))
    assert expand_path("${SISR_DATA}/x", "k") == tmp_path / "elsewhere" / "x"
    monkeypatch.delenv("SISR_DATA")
    monkeypatch.setattr("sisr.data.benchmarks.data_root_candidates", lambda: [tmp_path / "nowhere"])
    with pytest.raises(ConfigError, match=r"data.train\[0\]: .* uses SISR_DATA, which is not set"):
        expand_path("${SISR_DATA}/train", "data.train[0]")


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_are_valid(path: Path) -> None:
    r = load_recipe(path)
    assert r.model.preset in PRESETS
    for term in r.loss:
        assert term.name in LOSSES
    assert r.val.datasets, "every shipped recipe validates on a benchmark"


def test_there_is_a_recipe_per_published_model() -> None:
    presets = {load_recipe(p).model.preset for p in RECIPES.glob("*.yaml")}
    assert {
        "edsr-baseline",
        "wdsr-a",
        "srresnet",
        "vdsr",
        "espcn",
        "fsrcnn",
        "srcnn",
        "dense-fcn",
    } <= presets
