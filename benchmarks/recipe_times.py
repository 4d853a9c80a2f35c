"""How long each recipe in ``recipes/`` takes: measured on this CPU, and on a GPU from the
trained-zoo call's records.

    SISR_DATA=../shared/data python benchmarks/recipe_times.py [--seconds 4] [RECIPE ...]

CPU: every recipe is built as ``sisr train`` builds it (its own preset, scale, batch, patch
size, losses, GAN discriminator; precision ``auto``; validation and checkpoints off) and
``batcher.next_batch()`` + ``step()`` is timed for ``--seconds`` after two warm-up steps;
the estimate is the recipe's ``iterations`` times the seconds per step (validation and
checkpoints add a few percent). Give the CPU to this script alone: anything running beside it
slows it down.

GPU: no GPU is needed here. The shipped weights record how many iterations their run made in
how many GPU minutes in the trained-zoo call (one H200 shared through MPS by up to 18 runs,
``extra.gpu_minutes``; see ``tools/gpu/README.md``). The rate of the shipped run with the
same preset, in LR pixels per second, is scaled to the recipe's batch x patch; since the GPU
was shared, a run alone on it is faster, so the column is an upper bound.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "src" / "sisr" / "hub" / "weights"
VGG16 = ROOT.parent / "shared" / "peers" / "perceptual" / "vgg16_relu2_2_caffe_oihw.npz"


def _extra_networks(gan: bool, losses: list[str]) -> bool:
    """Whether a step also runs a discriminator or a VGG (rates are then not comparable)."""
    return gan or any(name in ("perceptual", "adversarial") for name in losses)


def gpu_rates() -> dict[tuple[str, bool], float]:
    """LR pixels per GPU-second of each shipped zoo run, by preset and whether a step also
    runs a discriminator or VGG (:func:`_extra_networks`); the fastest kept."""
    from safetensors import safe_open

    rates: dict[tuple[str, bool], float] = {}
    for path in sorted(WEIGHTS.glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        extra = json.loads(meta.get("extra") or "{}")
        recipe = json.loads(meta.get("recipe") or "{}")
        minutes, its = extra.get("gpu_minutes"), meta.get("iterations")
        data, model = recipe.get("data", {}), recipe.get("model", {})
        if not minutes or not its or "preset" not in model or "batch_size" not in data:
            continue
        pixels = int(its) * int(data["batch_size"]) * int(data.get("lr_patch", 48)) ** 2
        rate = pixels / (float(minutes) * 60)
        losses = [str(term.get("name", "")) for term in recipe.get("loss", [])]
        key = (model["preset"], _extra_networks(bool(recipe.get("gan")), losses))
        rates[key] = max(rate, rates.get(key, 0.0))
    return rates


def random_vgg(network: str, folder: Path) -> Path:
    """A full ``network`` feature stack with random weights: the step time of a perceptual
    loss does not depend on the values, and the deep ImageNet files are not here."""
    from safetensors.torch import save_file

    from sisr.losses.vgg import _make_features

    path = folder / f"{network}-random.safetensors"
    if not path.is_file():
        feats = _make_features(network, 99)
        save_file({f"features.{k}": v.contiguous() for k, v in feats.state_dict().items()}, path)
    return path


def _vgg_for(recipe_text: str, folder: Path) -> Path | None:
    if "vgg19" in recipe_text or "conv5_4" in recipe_text or "relu5_4" in recipe_text:
        return random_vgg("vgg19", folder)
    if "perceptual" in recipe_text or "vgg" in recipe_text:
        return VGG16 if VGG16.is_file() else random_vgg("vgg16", folder)
    return None


def cpu_seconds_per_step(path: Path, seconds: float, scratch: Path) -> float:
    from sisr.train.config import load_recipe
    from sisr.train.gan import GANTrainer
    from sisr.train.loop import Trainer

    gan = load_recipe(path).gan
    # The generator a GAN recipe starts from does not change the step time.
    warm = ["gan.init_generator=null"] if gan is not None and gan.init_generator else []
    recipe = load_recipe(
        path,
        [
            *warm,
            "val.datasets=[]",
            "checkpoint.interval=0",
            "log.progress=false",
            "log.tensorboard=false",
            "device=cpu",
            "precision=auto",
        ],
    )
    cls = GANTrainer if recipe.gan is not None else Trainer
    trainer = cls(recipe, None, vgg_weights=_vgg_for(path.read_text(), scratch))
    for _ in range(2):
        trainer.step(*trainer.batcher.next_batch())
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 2:
        trainer.step(*trainer.batcher.next_batch())
        n += 1
    return (time.perf_counter() - t0) / n


def _span(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipes", nargs="*", type=Path, help="default: every recipes/*.yaml")
    ap.add_argument("--seconds", type=float, default=4.0, help="timed seconds per recipe")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--gpu-only", action="store_true", help="skip the CPU timing (GPU column)")
    args = ap.parse_args()

    import torch

    from sisr.infer.precision import cpu_bf16_support
    from sisr.train.config import load_recipe

    if args.threads:
        torch.set_num_threads(args.threads)
    paths = args.recipes or sorted((ROOT / "recipes").glob("*.yaml"))
    rates = gpu_rates()
    print(
        f"CPU: {torch.get_num_threads()} threads, native bf16: {cpu_bf16_support() or 'no'}; "
        f"GPU column: H200 shared by up to 18 runs (upper bound)"
    )
    print(
        f"{'recipe':28} {'iterations':>10} {'CPU s/step':>10} {'CPU total':>10} {'GPU total':>10}"
    )
    failed = 0
    scratch = Path(tempfile.mkdtemp(prefix="sisr-recipe-times-"))
    for path in paths:
        try:
            recipe = load_recipe(path)
            step = cpu_seconds_per_step(path, args.seconds, scratch) if not args.gpu_only else 0.0
        except Exception as exc:  # one recipe that cannot run here does not stop the table
            print(f"{path.stem:28} {'':>10} unavailable ({type(exc).__name__}: {exc})")
            failed += 1
            continue
        pixels = recipe.data.batch_size * recipe.data.lr_patch**2 * recipe.iterations
        heavy = _extra_networks(recipe.gan is not None, [t.name for t in recipe.loss])
        rate = rates.get((recipe.model.preset, heavy))
        gpu = _span(pixels / rate) if rate else "-"
        print(
            f"{path.stem:28} {recipe.iterations:>10} {step:>10.3f} "
            f"{_span(step * recipe.iterations):>10} {gpu:>10}",
            flush=True,
        )
    shutil.rmtree(scratch, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
