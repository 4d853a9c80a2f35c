"""GAN training: both losses logged, separated updates, NaN guard, exact resume, start-up
failures, TensorBoard crops, shipped GAN/perceptual recipes.

Tiny everything: ESPCN x2 generator, an SRGAN discriminator with 4 features on 16 px
patches and a perceptual loss on ``relu1_2`` of a VGG19 whose two convolutions are random
weights written to a (truncated) torchvision-layout file.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from sisr.cli.main import main
from sisr.errors import ConfigError
from sisr.hub.weights import read_tensors
from sisr.train.config import load_recipe, recipe_from_dict
from sisr.train.gan import DISCRIMINATOR, SAMPLE_CROP, GANTrainer, load_discriminator
from sisr.train.loop import CHECKPOINT_DIR, LAST, WEIGHTS, Trainer
from sisr.train.run import train

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
LINE = re.compile(r"^iter (\d+)/\d+ loss (\S+)(.*) lr ")
D_ARGS = {"in_size": 16, "features": 4, "dense": 8}  # 16 px HR = 8 px LR patches x2


@pytest.fixture
def vgg_file(tmp_path: Path) -> Path:
    """A random VGG19 cut after relu1_2 (features.0 and features.2), torchvision keys."""
    g = torch.Generator().manual_seed(0)
    state = {
        "features.0.weight": torch.randn(64, 3, 3, 3, generator=g) * 0.2,
        "features.0.bias": torch.zeros(64),
        "features.2.weight": torch.randn(64, 64, 3, 3, generator=g) * 0.05,
        "features.2.bias": torch.zeros(64),
    }
    path = tmp_path / "vgg19-random.pth"
    torch.save(state, path)
    return path


def gan_sections(**extra: Any) -> dict[str, Any]:
    sections: dict[str, Any] = {
        "loss": [
            {"name": "l1", "weight": 1.0},
            {
                "name": "perceptual",
                "weight": 0.1,
                "options": {"network": "vgg19", "layers": "relu1_2"},
            },
            {"name": "adversarial", "weight": 1.0e-2},
        ],
        "gan": {"discriminator": "srgan", "overrides": dict(D_ARGS)},
        "optim": {"name": "adam", "lr": 1e-3, "betas": [0.9, 0.99]},
    }
    sections.update(extra)
    return sections


def _parse(text: str) -> dict[int, tuple[str, dict[str, str]]]:
    out = {}
    for m in map(LINE.match, text.splitlines()):
        if m:
            words = m.group(3).split()
            out[int(m.group(1))] = (m.group(2), dict(zip(words[::2], words[1::2], strict=True)))
    return out


def test_tiny_gan_run_logs_both_losses_and_exports_both_networks(
    make_recipe: Callable[..., Path], vgg_file: Path, tmp_path: Path
) -> None:
    from sisr.evaluate.runner import evaluate
    from sisr.hub import load_model
    from sisr.hub.weights import read_metadata

    # a pixel-loss generator to start from (SRResNet -> SRGAN in miniature)
    pixel = tmp_path / "pixel"
    train(load_recipe(make_recipe(iterations=2, val={"datasets": []})), pixel)
    start = read_tensors(pixel / WEIGHTS)

    recipe = load_recipe(make_recipe(**gan_sections(ema={"decay": 0.9})))
    recipe.gan.init_generator = str(pixel / WEIGHTS)  # type: ignore[union-attr]
    out = tmp_path / "gan"
    trainer = GANTrainer(recipe, out, vgg_weights=vgg_file)
    assert all(torch.equal(trainer.model.state_dict()[k], v) for k, v in start.items())
    # the optimizers hold disjoint parameter sets
    g_ids = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    d_ids = {id(p) for group in trainer.d_optimizer.param_groups for p in group["params"]}
    assert g_ids == {id(p) for p in trainer.model.parameters()}
    assert d_ids == {id(p) for p in trainer.discriminator.parameters()}
    result = trainer.run()

    assert result.iterations == 12
    log = (out / "train.log").read_text()
    assert f"init-from {pixel / WEIGHTS}: loaded 6 tensors" in log
    lines = _parse("\n".join(line.split(" ", 2)[2] for line in log.splitlines()))
    assert sorted(lines) == list(range(1, 13))
    for value, parts in lines.values():
        assert set(parts) == {"l1", "perceptual", "adversarial", "d_loss", "d_real", "d_fake"}
        numbers = [float(value), *map(float, parts.values())]
        assert all(torch.isfinite(torch.tensor(numbers)))
        # the logged total is the weighted sum of the logged generator terms
        weighted = float(parts["l1"]) + 0.1 * float(parts["perceptual"])
        assert float(value) == pytest.approx(
            weighted + 1e-2 * float(parts["adversarial"]), rel=2e-3
        )  # 4 digits logged
    # vanilla GAN: d_loss = BCE(real, 1) + BCE(fake, 0) >= 0; started near 2 log 2
    assert float(lines[1][1]["d_loss"]) == pytest.approx(2 * 0.6931, abs=0.2)

    # the generator export (EMA) scores what validation reported, through evaluate()
    (row,) = read_metadata(out / WEIGHTS)["metrics"]
    again = evaluate(load_model(out / WEIGHTS), trainer._val_pairs()[0][1], 2, device="cpu")
    assert row["psnr"] == pytest.approx(again.psnr_y, abs=1e-9)
    # the discriminator file round-trips to the checkpoint's discriminator
    ckpt = torch.load(out / CHECKPOINT_DIR / LAST, weights_only=True)
    assert ckpt["iteration"] == 12 and ckpt["gan"]["arch"]["id"] == "srgan"
    d = load_discriminator(out / DISCRIMINATOR)
    saved = ckpt["gan"]["discriminator"]
    assert all(torch.equal(v, saved[k]) for k, v in d.state_dict().items())
    assert any(not torch.equal(v, start[k]) for k, v in read_tensors(out / WEIGHTS).items()), (
        "the generator did not train"
    )


def test_each_step_moves_only_its_own_network(
    make_recipe: Callable[..., Path], vgg_file: Path, tmp_path: Path
) -> None:
    recipe = load_recipe(make_recipe(**gan_sections(val={"datasets": []})))
    trainer = GANTrainer(recipe, tmp_path / "run", vgg_weights=vgg_file)
    g, d = trainer.model, trainer.discriminator
    trainer.step(*trainer.batcher.next_batch())  # Adam moments are non-zero from now on

    def params(m: torch.nn.Module) -> list[torch.Tensor]:
        return [p.detach().clone() for p in m.parameters()]

    def same(a: list[torch.Tensor], m: torch.nn.Module) -> bool:
        return all(torch.equal(x, y) for x, y in zip(a, m.parameters(), strict=True))

    seen: dict[str, Any] = {}
    backward = trainer._backward

    def spy_backward(loss: torch.Tensor) -> None:
        backward(loss)
        n = len([k for k in seen if k.startswith("grads")])
        seen[f"grads{n}"] = (
            [None if p.grad is None else p.grad.clone() for p in g.parameters()],
            [None if p.grad is None else p.grad.clone() for p in d.parameters()],
        )

    def spy_step(name: str, opt: torch.optim.Optimizer) -> None:
        step = opt.step

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            before_g, before_d = params(g), params(d)
            out = step(*args, **kwargs)
            seen[name] = (same(before_g, g), same(before_d, d))
            return out

        opt.step = wrapped  # type: ignore[method-assign]

    trainer._backward = spy_backward  # type: ignore[method-assign]
    spy_step("g_step", trainer.optimizer)
    spy_step("d_step", trainer.d_optimizer)
    assert trainer.step(*trainer.batcher.next_batch()) is not None

    # generator loss backward: gradients for G only (D was frozen in its forward pass)
    g_grads, d_grads = seen["grads0"]
    assert all(x is not None for x in g_grads) and all(x is None for x in d_grads)
    # discriminator loss backward: D gets gradients, G's are untouched (sr was detached)
    g_grads2, d_grads2 = seen["grads1"]
    assert all(x is not None for x in d_grads2)
    assert all(torch.equal(a, b) for a, b in zip(g_grads, g_grads2, strict=True))
    # the G optimizer step moved G and not D; the D step moved D and not G
    assert seen["g_step"] == (False, True)
    assert seen["d_step"] == (True, False)


def test_non_finite_discriminator_skips_then_rolls_back_both_rates(
    make_recipe: Callable[..., Path], vgg_file: Path, tmp_path: Path
) -> None:
    recipe = load_recipe(
        make_recipe(
            **gan_sections(
                iterations=8,
                val={"datasets": []},
                guard={"max_skips": 2, "lr_factor": 0.5},
                gan={"discriminator": "srgan", "overrides": D_ARGS, "optim": {"lr": 2e-3}},
            )
        )
    )
    trainer = GANTrainer(recipe, tmp_path / "run", vgg_weights=vgg_file)
    calls = {"n": 0}

    def blow_up(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        # 3 discriminator calls per iteration (G step, D real, D fake): NaN in updates 6 and 7
        calls["n"] += 1
        return output * float("nan") if 16 <= calls["n"] <= 21 else output

    trainer.discriminator.register_forward_hook(blow_up)
    result = trainer.run()
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.count("update skipped") == 2
    assert "rolled back to iteration 4 with the rate x0.5" in log
    assert result.iterations == 8
    assert trainer.schedule.scale == 0.5 and trainer.d_schedule.scale == 0.5
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.5e-3)
    assert trainer.d_optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    ckpt = torch.load(tmp_path / "run" / CHECKPOINT_DIR / LAST, weights_only=True)
    assert ckpt["gan"]["d_schedule"]["scale"] == 0.5
    assert all(torch.isfinite(v).all() for v in ckpt["gan"]["discriminator"].values())


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", SISR_CACHE=str(tmp_path / "cache"))
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_sigkill_then_resume_matches_uninterrupted_gan_run(
    make_recipe: Callable[..., Path], vgg_file: Path, tmp_path: Path
) -> None:
    total, kill_at, every = 30, 10, 4
    sections = gan_sections(
        iterations=total,
        val={"datasets": []},
        checkpoint={"interval": every},
        ema={"decay": 0.9},
        schedule={"name": "multistep", "milestones": [17], "gamma": 0.5},
        data={"batch_size": 8},
        log={"interval": 1, "progress": False, "tensorboard": False},
    )
    # label noise from a seeded stream, 2 D updates per G update (extra batches)
    sections["loss"][2]["options"] = {"label_flip": 0.2, "label_jitter": 0.1, "seed": 3}
    sections["gan"]["d_steps"] = 2
    recipe = make_recipe(**sections)
    env = _env(tmp_path)

    def cmd(out: Path, *extra: str) -> list[str]:
        vgg = ["--vgg-weights", str(vgg_file)]
        return [sys.executable, "-m", "sisr", "train", *extra, "--out", str(out), *vgg]

    # the uninterrupted reference runs alongside
    ref = subprocess.Popen(
        cmd(tmp_path / "ref", str(recipe)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        cmd(killed, str(recipe)),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    seen = 0
    for line in proc.stdout:
        m = LINE.match(line)
        if m and int(m.group(1)) >= kill_at:
            seen = int(m.group(1))
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert seen < total

    resumed = subprocess.run(
        cmd(killed, "--resume"), capture_output=True, text=True, env=env, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    m = re.search(r"resumed from .* at iteration (\d+)", resumed.stdout)
    assert m is not None, resumed.stdout[-2000:]
    start = int(m.group(1))
    assert start % every == 0 and 0 < start <= seen

    ref_out, ref_err = ref.communicate(timeout=120)
    assert ref.returncode == 0, ref_err[-2000:]
    after, expected = _parse(resumed.stdout), _parse(ref_out)
    assert sorted(after) == list(range(start + 1, total + 1))
    assert len(expected) == total
    # bitwise: generator loss, its terms, D loss and logits, all printed with repr()
    assert {i: expected[i] for i in after} == after
    for name in (WEIGHTS, DISCRIMINATOR):
        a, b = read_tensors(killed / name), read_tensors(tmp_path / "ref" / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name


DDP_WORKER = textwrap.dedent(
    """
    import sys
    import torch
    from sisr.cli.main import main
    from sisr.train import loop

    dump = sys.argv[3]
    original = loop.Trainer._finish

    def finish(self, *args):
        torch.save(
            {"g": self.model.state_dict(), "d": self.discriminator.state_dict(),
             "d_wrapped": isinstance(self.d_forward, torch.nn.parallel.DistributedDataParallel),
             "rank": self.dist.rank, "iteration": self.iteration},
            f"{dump}/rank{self.dist.rank}.pt",
        )
        return original(self, *args)

    loop.Trainer._finish = finish
    argv = ["train", sys.argv[1], "--out", sys.argv[2], "--vgg-weights", sys.argv[4]]
    raise SystemExit(main(argv))
    """
)


def test_two_process_gloo_gan_run_keeps_both_networks_in_sync(
    make_recipe: Callable[..., Path], vgg_file: Path, tmp_path: Path
) -> None:
    sections = gan_sections(iterations=4, val={"datasets": []}, checkpoint={"interval": 2})
    sections["gan"]["d_steps"] = 2
    recipe = make_recipe(**sections)
    script = tmp_path / "worker.py"
    script.write_text(DDP_WORKER)
    dump = tmp_path / "dump"
    dump.mkdir()
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*run, str(script), str(recipe), str(tmp_path / "run"), str(dump), str(vgg_file)],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=180,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    r0 = torch.load(dump / "rank0.pt", weights_only=True)
    r1 = torch.load(dump / "rank1.pt", weights_only=True)
    assert (r0["rank"], r1["rank"], r0["iteration"], r0["d_wrapped"]) == (0, 1, 4, True)
    # gradients were averaged for both networks: identical parameters on both ranks
    # (BatchNorm running statistics are per rank, as in any DDP run without SyncBN)
    for net in ("g", "d"):
        names = [k for k in r0[net] if "running_" not in k and "num_batches" not in k]
        assert names and all(torch.equal(r0[net][k], r1[net][k]) for k in names), net
    exported = read_tensors(tmp_path / "run" / DISCRIMINATOR)
    assert all(torch.equal(v, r0["d"][k]) for k, v in exported.items())
    log = (tmp_path / "run" / "train.log").read_text()
    assert "batch 4 x 2 rank(s)" in log and log.count("iter 4/4 loss") == 1


def test_missing_vgg_weights_fail_before_any_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # an empty cache and no network: the automatic download fails at once
    import urllib.error
    import urllib.request

    def offline(*args: Any, **kwargs: Any) -> Any:
        raise urllib.error.URLError("network unreachable (test)")

    monkeypatch.setenv("SISR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    raw = yaml.safe_load((RECIPES / "srgan_x4.yaml").read_text())
    # data that does not exist: had it been read first, the error would be about it
    raw["data"]["train"] = [str(tmp_path / "no-such-data")]
    recipe = tmp_path / "srgan.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "sisr train: error:" in err and "vgg19-dcbb9e9d.pth" in err
    assert "--vgg-weights" in err and "no-such-data" not in err
    assert not out.exists() and not (tmp_path / "cache" / "datasets").exists()
    # an explicit path that does not exist names that path
    missing = tmp_path / "nope.pth"
    assert main(["train", str(recipe), "--out", str(out), "--vgg-weights", str(missing)]) == 2
    assert f"{missing}: no such VGG weights file" in capsys.readouterr().err
    assert not out.exists()


def test_recipe_checks(make_recipe: Callable[..., Path], vgg_file: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load(make_recipe(**gan_sections()).read_text())
    with pytest.raises(ConfigError, match="gan: the 'adversarial' loss needs a gan section"):
        recipe_from_dict({k: v for k, v in raw.items() if k != "gan"})
    with pytest.raises(ConfigError, match="loss: a gan section needs an 'adversarial' loss"):
        recipe_from_dict(raw | {"loss": [{"name": "l1"}]})
    with pytest.raises(ConfigError, match=r"gan.d_steps: must be >= 1"):
        recipe_from_dict(raw, ["gan.d_steps=0"])
    with pytest.raises(ConfigError, match=r"gan.optim.lr: must be > 0"):
        recipe_from_dict(raw, ["gan.optim={lr: -1}"])
    with pytest.raises(ConfigError, match="unknown discriminator 'patchgan'"):
        GANTrainer(recipe_from_dict(raw, ["gan.discriminator=patchgan"]), None)
    # 24 px HR patches for a 16 px discriminator: caught at start-up, sizes named
    with pytest.raises(ConfigError, match=r"HR patches are 24x24 \(data.lr_patch 12 x model"):
        GANTrainer(recipe_from_dict(raw, ["data.lr_patch=12"]), None, vgg_weights=vgg_file)
    # the pixel trainer refuses an adversarial term (no discriminator to pass)
    with pytest.raises(ConfigError, match="needs a discriminator"):
        Trainer(recipe_from_dict(raw), None, vgg_weights=vgg_file)
    # --resume of a pixel run into a GAN recipe is refused with the way out
    pixel = tmp_path / "pixel"
    train(load_recipe(make_recipe(iterations=1, val={"datasets": []})), pixel)
    with pytest.raises(ConfigError, match=r"--init-from or gan\.init_generator, not --resume"):
        GANTrainer(recipe_from_dict(raw), pixel, resume=True, vgg_weights=vgg_file)


def test_tensorboard_shows_the_same_crops_over_time(
    make_recipe: Callable[..., Path], vgg_file: Path, tmp_path: Path
) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe = load_recipe(
        make_recipe(
            **gan_sections(
                iterations=4,
                val={"interval": 2},
                log={"interval": 1, "progress": False, "tensorboard": True, "images": 1},
            )
        )
    )
    train(recipe, tmp_path / "run", vgg_weights=vgg_file)
    acc = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"images": 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {"train/loss", "train/d_loss", "train/d_real", "train/d_fake", "train/adversarial"}
    assert scalars | {"val/val/psnr"} <= set(tags["scalars"])
    sr = [t for t in tags["images"] if t.startswith("gan/val/") and t.endswith("/sr")]
    hr = [t for t in tags["images"] if t.startswith("gan/val/") and t.endswith("/hr")]
    assert len(sr) == 1 and len(hr) == 1
    events = acc.Images(sr[0])
    assert [e.step for e in events] == [2, 4]
    # val LR images are 16x12 (< SAMPLE_CROP): the whole image, x2, every time
    assert SAMPLE_CROP > 16
    assert {(e.width, e.height) for e in events} == {(32, 24)}
    assert [(e.width, e.height) for e in acc.Images(hr[0])] == [(32, 24)]


@pytest.mark.parametrize(
    "name", ["srgan_x4.yaml", "esrgan_x4.yaml", "edsr_gan_x4.yaml", "dense_fcn_perceptual_x4.yaml"]
)
def test_shipped_perceptual_and_gan_recipes(name: str) -> None:
    from sisr.archs import DISCRIMINATORS, build
    from sisr.losses import PERCEPTUAL_PRESETS
    from sisr.train.gan import build_discriminator, check_discriminator_input

    r = load_recipe(RECIPES / name)
    specs = {t.name: t for t in r.loss}
    assert specs["perceptual"].options["preset"] in PERCEPTUAL_PRESETS
    if r.gan is None:
        assert name.startswith("dense_fcn")
        assert r.model.overrides == {"residual": True} and r.optim.name == "sgd"
        return
    assert r.gan.discriminator in DISCRIMINATORS
    assert r.gan.init_generator, "GAN recipes start from a pixel-loss generator"
    # the discriminator takes the recipe's HR patches (probe at full size)
    check_discriminator_input(build_discriminator(r.gan.discriminator, r.gan.overrides), r)
    build(r.model.preset, r.model.scale, **r.model.overrides)
