"""The training loop in-process: outputs, validation, guards, warm starts, CLI errors."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from sisr.cli.main import main
from sisr.errors import ConfigError, SisrError
from sisr.train.config import load_recipe
from sisr.train.loop import BEST, CHECKPOINT_DIR, LAST, WEIGHTS, Trainer
from sisr.train.run import train


def _losses(log: Path) -> dict[int, float]:
    out = {}
    for m in re.finditer(r"iter (\d+)/\d+ loss (\S+)", log.read_text()):
        out[int(m.group(1))] = float(m.group(2))
    return out


def test_run_writes_everything_and_validates_with_evaluate(
    make_recipe: Callable[..., Path], tiny_data: Path, tmp_path: Path
) -> None:
    from sisr.evaluate.runner import evaluate
    from sisr.hub import load_model
    from sisr.hub.weights import read_metadata

    out = tmp_path / "run"
    result = train(load_recipe(make_recipe()), out)
    assert result.iterations == 12
    for name in ("recipe.yaml", "train.log", "history.json", WEIGHTS):
        assert (out / name).is_file(), name
    for name in (LAST, BEST):
        state = torch.load(out / CHECKPOINT_DIR / name, weights_only=True)
        assert state["format"] == "sisr.train.checkpoint"
    assert torch.load(out / CHECKPOINT_DIR / LAST, weights_only=True)["iteration"] == 12
    # the saved recipe is the resolved one and loads back to the same recipe
    assert load_recipe(out / "recipe.yaml") == load_recipe(make_recipe())
    # validation at 6 and 12 (the end), through evaluate(): the exported model scores the same
    assert [h["iteration"] for h in result.history] == [6, 12]
    meta = read_metadata(out / WEIGHTS)
    assert meta["iterations"] == 12 and meta["recipe"]["model"]["preset"] == "espcn"
    (row,) = meta["metrics"]
    model = load_model(out / WEIGHTS)
    again = evaluate(model, tiny_data / "val", 2, device="cpu")
    assert row["psnr"] == pytest.approx(again.psnr_y, abs=1e-9)
    assert row["ssim"] == pytest.approx(again.ssim_y, abs=1e-9)
    history = json.loads((out / "history.json").read_text())
    assert history[-1]["results"]["val"]["psnr"] == row["psnr"]
    losses = _losses(out / "train.log")
    assert sorted(losses) == list(range(1, 13))
    assert all(math.isfinite(v) for v in losses.values())


def test_refuses_to_overwrite_a_run_and_resume_needs_one(
    make_recipe: Callable[..., Path], tmp_path: Path
) -> None:
    recipe = load_recipe(make_recipe(iterations=2, val={"datasets": []}))
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(recipe, out, resume=True)
    train(recipe, out)
    with pytest.raises(ConfigError, match="already holds a run"):
        train(recipe, out)


def test_nan_loss_skips_then_rolls_back_with_a_lower_rate(
    make_recipe: Callable[..., Path], tmp_path: Path
) -> None:
    recipe = load_recipe(
        make_recipe(iterations=10, val={"datasets": []}, guard={"max_skips": 2, "lr_factor": 0.5})
    )
    trainer = Trainer(recipe, tmp_path / "run")
    calls = {"n": 0}

    def blow_up(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        # a transient blow-up: the 7th and 8th forward passes give NaN
        calls["n"] += 1
        return output * float("nan") if calls["n"] in (7, 8) else output

    trainer.model.register_forward_hook(blow_up)
    result = trainer.run()
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.count("update skipped") == 2
    assert "rolled back to iteration 4 with the rate x0.5" in log
    assert trainer.schedule.scale == 0.5 and trainer.rollbacks == 1
    assert result.iterations == 10
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.5e-3)
    ckpt = torch.load(tmp_path / "run" / CHECKPOINT_DIR / LAST, weights_only=True)
    assert ckpt["schedule"]["scale"] == 0.5 and ckpt["guard"]["rollbacks"] == 1


def test_persistent_nan_gives_up_after_max_rollbacks(
    make_recipe: Callable[..., Path], tmp_path: Path
) -> None:
    recipe = load_recipe(
        make_recipe(iterations=5, val={"datasets": []}, guard={"max_skips": 1, "max_rollbacks": 2})
    )
    trainer = Trainer(recipe, tmp_path / "run")
    trainer.model.register_forward_hook(lambda m, i, o: o * float("nan"))
    with pytest.raises(SisrError, match=r"diverged at iteration 0 .* after 2 rollback"):
        trainer.run()


def test_non_finite_weights_are_never_saved(
    make_recipe: Callable[..., Path], tmp_path: Path
) -> None:
    recipe = load_recipe(make_recipe(iterations=3, val={"datasets": []}))
    trainer = Trainer(recipe, tmp_path / "run")
    assert trainer.save()
    path = tmp_path / "run" / CHECKPOINT_DIR / LAST
    before = path.read_bytes()
    with torch.no_grad():
        trainer.model.body[0].weight[0, 0, 0, 0] = float("inf")
    assert not trainer.save()
    assert path.read_bytes() == before


def test_time_limit_stops_and_exports(make_recipe: Callable[..., Path], tmp_path: Path) -> None:
    recipe = load_recipe(make_recipe(iterations=100000, val={"datasets": []}))
    result = train(recipe, tmp_path / "run", max_seconds=1.0)
    assert 0 < result.iterations < 100000
    assert (tmp_path / "run" / WEIGHTS).is_file()
    state = torch.load(tmp_path / "run" / CHECKPOINT_DIR / LAST, weights_only=True)
    assert state["iteration"] == result.iterations


def test_init_from_other_scale(make_recipe: Callable[..., Path], tmp_path: Path) -> None:
    src = tmp_path / "x2"
    train(load_recipe(make_recipe(iterations=2, val={"datasets": []})), src)
    recipe = load_recipe(
        make_recipe(
            iterations=1,
            val={"datasets": []},
            model={"preset": "espcn", "scale": 4},
            data={"lr_patch": 6},
        )
    )
    trainer = Trainer(recipe, tmp_path / "x4", init_from=src / CHECKPOINT_DIR / LAST)
    x2 = torch.load(src / CHECKPOINT_DIR / LAST, weights_only=True)["model"]
    assert torch.equal(trainer.model.body[2].weight, x2["body.2.weight"])
    log = (tmp_path / "x4" / "train.log").read_text()
    assert "loaded 4 tensors, skipped 2" in log and "body.4.weight (shape" in log


def test_residual_loss_sees_the_raw_residual(
    make_recipe: Callable[..., Path], tmp_path: Path
) -> None:
    from sisr.archs._common import bicubic_upsample

    recipe = load_recipe(
        make_recipe(
            model={
                "preset": "dense-fcn",
                "scale": 4,
                "overrides": {"residual": True, "layers": 2, "features": 8, "growth": 4},
            },
            data={"lr_patch": 8, "batch_size": 2},
            loss=[{"name": "residual_l2"}],
            val={"datasets": []},
            optim={"name": "sgd", "lr": 0.01, "momentum": 0.9},
        )
    )
    trainer = Trainer(recipe, tmp_path / "run")
    assert trainer.residual
    lr, hr = trainer.batcher.next_batch()
    with torch.no_grad():
        torch.manual_seed(0)
        res = trainer.model.forward_residual(lr)
        expected = (res - (hr - bicubic_upsample(lr, 4))).square().mean().item()
    before = [p.detach().clone() for p in trainer.model.parameters()]
    out = trainer.step(lr, hr)
    assert out is not None
    assert out[0] == pytest.approx(expected, rel=1e-4)
    assert any(
        not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True)
    )


def test_adjustable_clipping_bounds_the_step(
    make_recipe: Callable[..., Path], tmp_path: Path
) -> None:
    recipe = load_recipe(
        make_recipe(
            optim={"name": "sgd", "lr": 0.1, "momentum": 0.0},
            grad_clip={"mode": "adjustable", "theta": 0.01, "by": "norm"},
            val={"datasets": []},
        )
    )
    trainer = Trainer(recipe, tmp_path / "run")
    for p in trainer.params:
        p.grad = torch.full_like(p, 10.0)
    assert trainer._clip(rate=0.1)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainer.params]))
    assert norm.item() == pytest.approx(0.01 / 0.1, rel=1e-5)


def test_lr_mult_pattern_must_match(make_recipe: Callable[..., Path], tmp_path: Path) -> None:
    recipe = load_recipe(make_recipe(optim={"lr_mult": {"deconv.*": 0.1}}))
    with pytest.raises(ConfigError, match=r"optim.lr_mult.deconv.\*: matches no parameter"):
        Trainer(recipe, tmp_path / "run")
    recipe = load_recipe(make_recipe(optim={"lr_mult": {"body.4.*": 0.1}}))
    trainer = Trainer(recipe, tmp_path / "run2")
    assert sorted(g["lr"] for g in trainer.optimizer.param_groups) == pytest.approx([1e-4, 1e-3])


def test_cli_errors_are_one_line(
    make_recipe: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = make_recipe()
    assert main(["train", str(recipe), "--out", str(tmp_path / "r"), "--set", "optim.lrr=1"]) == 2
    err = capsys.readouterr().err
    assert "sisr train: error:" in err and "optim.lrr: unknown key" in err
    assert main(["train", "--out", str(tmp_path / "nothing")]) == 2
    assert "a recipe is required" in capsys.readouterr().err
    raw = yaml.safe_load(recipe.read_text())
    assert raw["model"]["preset"] == "espcn"


def test_tensorboard_scalars_and_samples(make_recipe: Callable[..., Path], tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe = load_recipe(make_recipe(iterations=4, log={"tensorboard": True, "images": 1}))
    train(recipe, tmp_path / "run")
    acc = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"images": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"train/loss", "train/lr", "val/val/psnr", "val/val/ssim"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4]
    assert any(t.startswith("sample/val/") for t in tags["images"])


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml")),
    ids=lambda p: p.name,
)
def test_shipped_recipes_build_model_optimizer_and_loss(
    path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from sisr.archs import build
    from sisr.losses import PERCEPTUAL_PRESETS, build_loss
    from sisr.losses.vgg import VGGFeatures
    from sisr.train.gan import build_discriminator
    from sisr.train.loop import build_optimizer

    r = load_recipe(path)
    model = build(r.model.preset, r.model.scale, **r.model.overrides)
    optimizer = build_optimizer(model, r.optim)  # lr_mult patterns must match parameters
    assert optimizer.param_groups[0]["lr"] > 0
    context: dict = {}
    if r.gan is not None:
        context["discriminator"] = build_discriminator(r.gan.discriminator, r.gan.overrides)
    network = {
        t.options.get("network")
        or (
            PERCEPTUAL_PRESETS[t.options["preset"]]["network"] if "preset" in t.options else "vgg16"
        )
        for t in r.loss
        if t.name == "perceptual"
    }
    if network:
        # no ImageNet VGG file here: random weights in torchvision's layout stand in
        (net,) = network
        vgg = tmp_path_factory.mktemp("vgg") / f"{net}.pth"
        feats = VGGFeatures(["pool5"], network=net).features.state_dict()
        torch.save({f"features.{k}": v for k, v in feats.items()}, vgg)
        context["vgg_weights"] = vgg
    build_loss([t.as_spec() for t in r.loss], **context)


def test_div2k_layout_trains_on_its_paired_lr(
    tmp_path: Path, make_recipe: Callable[..., Path]
) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    hr_dir = tmp_path / "DIV2K" / "DIV2K_train_HR"
    lr_dir = tmp_path / "DIV2K" / "DIV2K_train_LR_bicubic" / "X2"
    hr_dir.mkdir(parents=True)
    lr_dir.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (32, 40, 3), dtype=np.uint8)).save(
            hr_dir / f"{i:04d}.png"
        )
        Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(lr_dir / f"{i:04d}x2.png")
    recipe = load_recipe(
        make_recipe(
            iterations=1,
            val={"datasets": []},
            data={"train": [], "div2k": str(tmp_path / "DIV2K"), "lr_patch": 8},
        )
    )
    trainer = Trainer(recipe, tmp_path / "run")
    lr, hr = trainer.batcher.next_batch()
    assert lr.shape == (4, 3, 8, 8) and hr.shape == (4, 3, 16, 16)
    assert float(lr.abs().max()) == 0.0  # the LR came from the (black) DIV2K LR files
    assert float(hr.max()) > 0.0


def test_first_progress_line_comes_within_seconds_not_after_the_interval(
    make_recipe: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 20, item 12: with log.interval 100 a CPU run used to be silent for minutes; the
    first line now comes once FIRST_LINE_SECONDS have passed (0 here), then every interval."""
    monkeypatch.setattr("sisr.train.loop.FIRST_LINE_SECONDS", 0.0)
    recipe = make_recipe(iterations=7, log={"interval": 3}, val={"datasets": []})
    train(load_recipe(recipe), tmp_path / "run")
    assert sorted(_losses(tmp_path / "run" / "train.log")) == [1, 3, 6, 7]
    monkeypatch.setattr("sisr.train.loop.FIRST_LINE_SECONDS", 1e9)
    train(load_recipe(recipe), tmp_path / "run2")
    assert sorted(_losses(tmp_path / "run2" / "train.log")) == [3, 6, 7]


def test_trains_on_your_own_pairs(
    make_recipe: Callable[..., Path], tiny_data: Path, tmp_path: Path
) -> None:
    """Issue 21, item 4: `data.pairs: {hr, lr}` trains on the LR files as they are."""
    import numpy as np
    from PIL import Image

    from sisr.degrade import imresize_uint8

    for src in sorted((tiny_data / "train").glob("*.png")):
        hr = torch.from_numpy(np.asarray(Image.open(src).convert("RGB"))).permute(2, 0, 1)
        hr = hr[:, : hr.shape[1] // 2 * 2, : hr.shape[2] // 2 * 2]
        (tmp_path / "hr").mkdir(exist_ok=True)
        (tmp_path / "lr").mkdir(exist_ok=True)
        Image.fromarray(hr.permute(1, 2, 0).numpy()).save(tmp_path / "hr" / src.name)
        lr = imresize_uint8(hr, scale=0.5).permute(1, 2, 0).numpy()
        Image.fromarray(lr).save(tmp_path / "lr" / f"{src.stem}.jpg", quality=60)
    pairs = {"hr": str(tmp_path / "hr"), "lr": str(tmp_path / "lr")}
    recipe = make_recipe(iterations=3, data={"train": [], "pairs": pairs}, val={"datasets": []})
    out = tmp_path / "run"
    train(load_recipe(recipe), out)
    assert "4 images (0.0 MiB decoded), LR from the paired files" in (out / "train.log").read_text()
    assert (out / WEIGHTS).is_file()


def test_re_parameterisable_networks_are_saved_fused(
    make_recipe: Callable[..., Path], tiny_data: Path, tmp_path: Path
) -> None:
    """SPAN trained in its branch form: model.safetensors holds the fused single convs,
    which compute what the trained branches compute; the checkpoint keeps the branches."""
    from sisr.hub import load_model
    from sisr.hub.load import detect_raw
    from sisr.hub.weights import read_metadata

    recipe = make_recipe(
        model={"preset": "span", "scale": 2, "overrides": {"feature_channels": 4, "num_blocks": 1}},
        iterations=2,
        val={"datasets": []},
    )
    out = tmp_path / "run"
    train(load_recipe(recipe), out)
    meta = read_metadata(out / WEIGHTS)
    assert meta["hparams"]["deploy"] is True and meta["extra"]["fused"] is True
    fused = load_model(out / WEIGHTS)
    assert not any(".sk." in k for k in fused.state_dict())
    state = torch.load(out / CHECKPOINT_DIR / LAST, weights_only=True)
    branches = detect_raw(state["model"]).model
    assert branches.hparams["deploy"] is False
    x = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(fused(x), branches(x), atol=2e-5, rtol=0)
