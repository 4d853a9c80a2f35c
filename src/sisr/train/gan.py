"""Adversarial training (SRGAN, ESRGAN, EDSR-GAN): the pixel-loss loop plus a discriminator.

:class:`GANTrainer` is a :class:`~sisr.train.loop.Trainer` whose recipe has a ``gan``
section (:class:`~sisr.train.config.GanConfig`); :func:`sisr.train.run.train` picks it
for such recipes. One iteration (update ``it``)::

    (d_steps - 1) x: a fresh batch -> fake = G(lr) without autograd -> D update
    sr = G(lr)
    L_G, parts = loss(sr, hr, lr)            # content terms + adversarial(D(sr)), D frozen
    L_D = adversarial.discriminator_loss(D(hr), D(sr.detach()))
    both finite (every rank)?  backward both, clip, step G's and D's optimizers
    EMA of G; it += 1

Both losses are computed before either update, so one non-finite value skips the whole
update (nothing moves) and the NaN guard counts and rolls back as in the pixel loop
(rates of both networks cut). The generator step runs the bare discriminator with its
parameters frozen (:func:`sisr.losses.frozen`), so no generator gradient reaches it; the
discriminator step sees ``sr.detach()``, so none of its gradient reaches the generator.
Under DDP both networks are wrapped (the generator step calls the bare discriminator,
which needs no gradient sync); rank 0 logs, validates and saves.

Logged per line (``train.log`` and TensorBoard ``train/*``): the generator's total loss,
each of its (unweighted) terms, ``d_loss`` and the mean discriminator logits on real and
generated patches (``d_real``, ``d_fake``). At every validation the SR of fixed centre
crops of the first validation images goes to TensorBoard (``gan/<set>/<image>/sr``), so
the same crops can be compared over time; PSNR/SSIM come from the usual validation.

Run folder additions: ``checkpoints/*.pt`` hold a ``gan`` entry (discriminator weights,
its optimizer and schedule state, the label-noise RNG); ``discriminator.safetensors``
(:func:`save_discriminator`) is written at the end next to ``model.safetensors`` (the
generator, EMA if enabled).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sisr.archs.base import Discriminator, SRModel
from sisr.errors import ConfigError, WeightsError
from sisr.io.atomic import atomic_path
from sisr.losses import AdversarialLoss
from sisr.train import distributed as D
from sisr.train.checkpoint import is_finite_model, to_cpu
from sisr.train.config import GradClipConfig, Recipe, expand_path
from sisr.train.loop import LAST, Trainer, build_optimizer
from sisr.train.schedule import LRSchedule

DISCRIMINATOR = "discriminator.safetensors"
DISCRIMINATOR_FORMAT = "sisr.discriminator"
# LR pixels per side of the fixed validation crops shown in TensorBoard
SAMPLE_CROP = 48


# --- discriminator files -----------------------------------------------------------------


def build_discriminator(name: str, overrides: dict[str, Any]) -> Discriminator:
    """A :data:`sisr.archs.DISCRIMINATORS` preset with constructor ``overrides``."""
    from sisr.archs import DISCRIMINATORS

    factory = DISCRIMINATORS.get(name)
    if factory is None:
        known = ", ".join(sorted(DISCRIMINATORS))
        raise ConfigError(f"gan.discriminator: unknown discriminator {name!r}; known: {known}")
    try:
        return factory(**overrides)
    except TypeError as exc:
        raise ConfigError(f"gan.overrides: {exc}") from exc


def save_discriminator(
    d: nn.Module, path: str | Path, *, iterations: int | None = None, recipe: dict | None = None
) -> None:
    """Write a discriminator as safetensors with ``arch``/``hparams`` metadata (atomically)."""
    from safetensors.torch import save_file

    from sisr.hub.strict import unwrap_model
    from sisr.hub.weights import export_state_dict

    d = unwrap_model(d)
    meta = {
        "format": DISCRIMINATOR_FORMAT,
        "format_version": 1,
        "arch": getattr(d, "arch_id", type(d).__name__),
        "hparams": getattr(d, "hparams", None),
        "iterations": iterations,
        "recipe": recipe,
    }
    metadata = {k: json.dumps(v, sort_keys=True) for k, v in meta.items()}
    with atomic_path(path) as tmp:
        save_file(export_state_dict(d, torch.float32), str(tmp), metadata=metadata)


def load_discriminator(path: str | Path) -> Discriminator:
    """Rebuild a discriminator written by :func:`save_discriminator` (strict load)."""
    from sisr.hub.strict import load_state_dict_strict
    from sisr.hub.weights import read_metadata, read_tensors

    meta = read_metadata(path)
    if meta.get("format") != DISCRIMINATOR_FORMAT:
        raise WeightsError(f"{path}: not a sisr discriminator file")
    d = build_discriminator(str(meta.get("arch")), dict(meta.get("hparams") or {}))
    load_state_dict_strict(d, read_tensors(path), source=str(path))
    return d


def resolve_generator_init(value: str) -> Path:
    """``gan.init_generator``: a checkpoint / weights file, or a named weights entry."""
    path = expand_path(value, "gan.init_generator")
    if path.is_file():
        return path
    from sisr.hub.load import resolve_weights

    try:
        found = resolve_weights(str(path))
    except WeightsError as exc:
        raise WeightsError(f"gan.init_generator: {exc}") from exc
    if found is None:
        raise ConfigError("gan.init_generator: bicubic has no weights to start from")
    return found


def check_discriminator_input(d: Discriminator, recipe: Recipe) -> None:
    """ConfigError at start-up (not at the first step) when ``d`` cannot take the recipe's
    HR patches (``data.lr_patch * model.scale`` pixels square)."""
    size = recipe.data.lr_patch * recipe.model.scale
    name = recipe.gan.discriminator if recipe.gan is not None else d.arch_id
    was_training = d.training
    d.eval()  # the probe must not touch BatchNorm statistics
    try:
        with torch.no_grad():
            out = d(torch.zeros(1, 3, size, size, device=next(d.parameters()).device))
    except (ConfigError, RuntimeError) as exc:
        raise ConfigError(
            f"gan.discriminator {name}: the HR patches are {size}x{size} (data.lr_patch "
            f"{recipe.data.lr_patch} x model.scale {recipe.model.scale}) but {exc}"
        ) from exc
    finally:
        d.train(was_training)
    if out.shape[0] != 1:
        raise ConfigError(
            f"gan.discriminator {name}: expected one logit per image, got {tuple(out.shape)}"
        )


def _clip(
    cfg: GradClipConfig,
    params: list[nn.Parameter],
    rate: float,
    scaler: torch.amp.GradScaler | None,
    optimizer: torch.optim.Optimizer,
) -> bool:
    """Clip like :meth:`Trainer._clip` for any parameter list; False on a non-finite norm."""
    if cfg.mode == "off":
        return True
    if scaler is not None:
        scaler.unscale_(optimizer)
    if cfg.mode == "adjustable":
        bound, by = cfg.theta / max(rate, 1e-30), cfg.by
    else:
        bound, by = cfg.max, cfg.mode
    if by == "value":
        torch.nn.utils.clip_grad_value_(params, bound)
        return True
    norm = torch.nn.utils.clip_grad_norm_(params, bound, foreach=True)
    return scaler is not None or bool(torch.isfinite(norm))


# --- the trainer --------------------------------------------------------------------------


class GANTrainer(Trainer):
    """A GAN run: the generator is :attr:`model`, the discriminator :attr:`discriminator`.

    Same arguments as :class:`~sisr.train.loop.Trainer`; ``init_from`` (``--init-from``)
    defaults to the recipe's ``gan.init_generator`` on a fresh run.
    """

    discriminator: Discriminator
    d_forward: nn.Module
    d_optimizer: torch.optim.Optimizer
    d_schedule: LRSchedule
    d_params: list[nn.Parameter]
    adversarial: AdversarialLoss

    def __init__(
        self,
        recipe: Recipe,
        out_dir: str | Path | None,
        *,
        resume: bool = False,
        init_from: str | Path | None = None,
        dist_info: D.DistInfo | None = None,
        vgg_weights: str | Path | None = None,
    ) -> None:
        if recipe.gan is None:
            raise ConfigError("gan: the recipe has no gan section (use the pixel-loss Trainer)")
        self.gan = recipe.gan
        if init_from is None and not resume and self.gan.init_generator:
            init_from = resolve_generator_init(self.gan.init_generator)
        self._hr_logged: set[str] = set()
        super().__init__(
            recipe,
            out_dir,
            resume=resume,
            init_from=init_from,
            dist_info=dist_info,
            vgg_weights=vgg_weights,
        )
        if init_from is None and not resume:
            self.log.info(
                "note: the generator starts from random weights; GAN recipes expect a "
                "pixel-loss model (gan.init_generator or --init-from)"
            )

    # -- setup ----------------------------------------------------------------------------

    def _build_loss(self) -> nn.Module:
        """Discriminator, its optimizer and schedule, then the loss mix that uses it."""
        from sisr.losses import adversarial_term, build_loss

        g, r = self.gan, self.recipe
        d = build_discriminator(g.discriminator, g.overrides)
        check_discriminator_input(d, r)
        d.to(self.device)
        if self.channels_last:
            d.to(memory_format=torch.channels_last)
        self.discriminator = d
        d_forward: nn.Module = d
        if self.dist.enabled:
            d_forward = nn.parallel.DistributedDataParallel(
                d, device_ids=[self.device.index] if self.cuda else None
            )
        self.d_forward = d_forward
        # null: the generator's settings (its lr_mult patterns name generator parameters)
        optim_cfg = g.optim if g.optim is not None else dataclasses.replace(r.optim, lr_mult={})
        self.d_optimizer = build_optimizer(d, optim_cfg, fused=self.cuda)
        self.d_schedule = LRSchedule(
            self.d_optimizer, g.schedule if g.schedule is not None else r.schedule, r.iterations
        )
        self.d_params = [p for p in d.parameters() if p.requires_grad]
        mix = build_loss(
            [t.as_spec() for t in r.loss], discriminator=d, vgg_weights=self.vgg_weights
        )
        adv = adversarial_term(mix)
        if adv is None:  # Recipe.check already demands the term; a hand-built recipe may not
            raise ConfigError("loss: a GAN run needs an 'adversarial' term")
        self.adversarial = adv
        n = sum(p.numel() for p in self.d_params)
        self.log.info(
            f"gan: discriminator {g.discriminator} {d.hparams} ({n / 1e6:.2f}M parameters), "
            f"{optim_cfg.name} lr {optim_cfg.lr:g}, {g.d_steps} D update(s) per G update, "
            f"adversarial {adv.kind}"
        )
        return mix

    # -- one update ----------------------------------------------------------------------

    def _backward(self, loss: Tensor) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def _apply(self, *optimizers: torch.optim.Optimizer) -> None:
        for opt in optimizers:
            if self.scaler is not None:
                self.scaler.step(opt)
            else:
                opt.step()
        if self.scaler is not None:
            self.scaler.update()
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)

    def _zero_grads(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.d_optimizer.zero_grad(set_to_none=True)

    def _clip_d(self, rate: float) -> bool:
        return _clip(self.gan.grad_clip, self.d_params, rate, self.scaler, self.d_optimizer)

    def _d_loss(self, hr: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
        """Discriminator loss on real ``hr`` and detached ``fake`` (N, 3, H, W) ->
        (0-dim loss, detached (3,) stats: loss, mean real logit, mean fake logit)."""
        with self._autocast():
            real_logits = self.d_forward(hr)
            fake_logits = self.d_forward(fake)
        loss = self.adversarial.discriminator_loss(real_logits, fake_logits)
        stats = torch.stack(
            [
                loss.detach(),
                real_logits.detach().float().mean(),
                fake_logits.detach().float().mean(),
            ]
        )
        return loss, stats

    def _extra_d_update(self, d_rate: float) -> Tensor | None:
        """One D update on its own batch against the current generator (d_steps > 1)."""
        lr, hr = self._to_device(*self.batcher.next_batch())
        with torch.no_grad():
            fake, _ = self._generate(lr, hr)
        loss, stats = self._d_loss(hr, fake)
        if not D.all_true(self.dist, math.isfinite(float(stats[0]))):
            self._zero_grads()
            return None
        self._backward(loss)
        if not self._clip_d(d_rate):
            self._zero_grads()
            return None
        self._apply(self.d_optimizer)
        return stats

    def step(self, lr: Tensor, hr: Tensor) -> tuple[float, dict[str, Tensor]] | None:
        """One generator update (and ``d_steps`` discriminator updates) at ``self.iteration``.

        Returns ``(generator loss, parts)`` or ``None`` when a loss (on any rank) or a
        gradient norm was not finite; then neither network was updated by the batch
        ``(lr, hr)`` (extra D updates of this call that were finite are kept).
        """
        rate = self.schedule.apply(self.position)
        d_rate = self.d_schedule.apply(self.position)
        d_stats: list[Tensor] = []
        for _ in range(self.gan.d_steps - 1):
            stats = self._extra_d_update(d_rate)
            if stats is None:
                return None
            d_stats.append(stats)

        lr, hr = self._to_device(lr, hr)
        sr, extra = self._generate(lr, hr)
        total, parts = self.loss(sr, hr, lr, sync=False, **extra)
        loss_d, stats = self._d_loss(hr, sr.detach())
        # one transfer for both values; every rank takes the same decision
        values = torch.stack([total.detach().float(), stats[0]]).cpu().tolist()
        if not D.all_true(self.dist, all(math.isfinite(v) for v in values)):
            self._zero_grads()
            return None
        self._backward(total)
        self._backward(loss_d)
        g_ok = self._clip(rate)
        d_ok = self._clip_d(d_rate)
        if not (g_ok and d_ok):
            self._zero_grads()
            return None
        self._apply(self.optimizer, self.d_optimizer)
        if self.ema is not None:
            self.ema.update(self.model, self.position)
        self.iteration += 1
        d_stats.append(stats)
        mean = torch.stack(d_stats).mean(0)
        parts = dict(parts) | {"d_loss": mean[0], "d_real": mean[1], "d_fake": mean[2]}
        return values[0], parts

    # -- state -----------------------------------------------------------------------------

    def state_dict(self, rank_states: list[dict[str, Any]]) -> dict[str, Any]:
        state = super().state_dict(rank_states)
        rng = self.adversarial._rng  # the seeded label-noise stream, if any
        state["gan"] = to_cpu(
            {
                "discriminator": self.discriminator.state_dict(),
                "d_optimizer": self.d_optimizer.state_dict(),
                "d_schedule": self.d_schedule.state_dict(),
                "label_rng": rng.get_state() if rng is not None else None,
                "arch": {"id": self.discriminator.arch_id, "hparams": self.discriminator.hparams},
            }
        )
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        from sisr.hub.strict import load_state_dict_strict

        gan = state.get("gan")
        if not isinstance(gan, dict):
            raise ConfigError(
                "the checkpoint has no discriminator (a pixel-loss run?): start a GAN from it "
                "with --init-from or gan.init_generator, not --resume"
            )
        super()._restore(state)
        load_state_dict_strict(
            self.discriminator, gan["discriminator"], source="checkpoint (discriminator)"
        )
        self.d_optimizer.load_state_dict(gan["d_optimizer"])
        self.d_schedule.load_state_dict(gan["d_schedule"])
        if gan.get("label_rng") is not None:
            gen = self.adversarial._generator(self.device)
            if gen is not None:
                gen.set_state(gan["label_rng"])

    def save(self, names: tuple[str, ...] = (LAST,)) -> bool:
        if self.ckpt_dir is not None and not D.all_true(
            self.dist, is_finite_model(self.discriminator)
        ):
            self.log.info(f"iter {self.iteration}: non-finite discriminator weights; not saving")
            return False
        return super().save(names)

    def rollback(self, reason: str) -> None:
        """As the pixel loop, with the discriminator's rate cut by the same factor."""
        d_scale = self.d_schedule.scale * self.recipe.guard.lr_factor
        super().rollback(reason)
        self.d_schedule.scale = d_scale

    # -- outputs ----------------------------------------------------------------------------

    @torch.no_grad()
    def _sample_images(self, model: SRModel) -> None:
        """SR of fixed centre crops of the first val images (the same crops every time)."""
        name, pairs = self._val_pairs()[0]
        scale = self.recipe.val_scale
        was_training = model.training
        model.eval()
        try:
            for pair in pairs[: self.recipe.log.images]:
                _, h, w = pair.lr.shape
                ch, cw = min(SAMPLE_CROP, h), min(SAMPLE_CROP, w)
                top, left = (h - ch) // 2, (w - cw) // 2
                crop = pair.lr[:, top : top + ch, left : left + cw]
                x = crop.to(self.device).float().div(255.0).unsqueeze(0)
                sr = model(x).clamp(0, 1)[0].float().cpu()
                tag = f"gan/{name}/{pair.name}"
                self.log.image(f"{tag}/sr", sr, self.iteration)
                if tag not in self._hr_logged:
                    hr = pair.hr[
                        :, top * scale : (top + ch) * scale, left * scale : (left + cw) * scale
                    ]
                    self.log.image(f"{tag}/hr", hr.float().div(255.0), self.iteration)
                    self._hr_logged.add(tag)
        finally:
            model.train(was_training)

    def _export(self, path: Path) -> None:
        super()._export(path)
        if self.gan.save_discriminator and self.out_dir is not None:
            target = self.out_dir / DISCRIMINATOR
            save_discriminator(
                self.discriminator,
                target,
                iterations=self.iteration,
                recipe=self.recipe.to_dict(),
            )
            self.log.info(f"discriminator: {target}")


__all__ = [
    "DISCRIMINATOR",
    "SAMPLE_CROP",
    "GANTrainer",
    "build_discriminator",
    "check_discriminator_input",
    "load_discriminator",
    "resolve_generator_init",
    "save_discriminator",
]
