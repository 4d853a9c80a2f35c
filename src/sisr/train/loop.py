"""The iteration-based training loop behind ``sisr train``.

One :class:`Trainer` owns a run: model (optionally DDP / compiled), optimizer,
per-iteration schedule, EMA, loss mix, patch batcher, logger. :func:`train` is
the entry point; :meth:`Trainer.step` (one update from one batch) is public so
that benchmarks time exactly the code that trains.

Run folder::

    recipe.yaml               resolved recipe (after --set)
    train.log                 plain-text log (also echoed to stdout)
    checkpoints/last.pt       full state, every ``checkpoint.interval`` and at the end
    checkpoints/best.pt       full state at the best validation PSNR (first val set)
    history.json              validation results so far
    model.safetensors         final weights (EMA if enabled) with recipe and metrics
    tb/                       TensorBoard events (when tensorboard is installed)
    discriminator.safetensors GAN runs only (:mod:`sisr.train.gan`, recipes with ``gan``)

Guarantees: a resumed run (``resume=True``) continues with the very same
batches, rates and optimizer state as if it had never stopped; a non-finite
loss skips the update, ``guard.max_skips`` of them in a row roll back to
``last.pt`` with a lower rate; a model with a non-finite weight is never saved.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import inspect
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sisr.archs import build
from sisr.archs.base import SRModel
from sisr.errors import ConfigError, SisrError
from sisr.io.atomic import atomic_path, atomic_write_bytes
from sisr.train import distributed as D
from sisr.train.checkpoint import (
    init_from as load_matching,
)
from sisr.train.checkpoint import (
    is_finite_model,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    to_cpu,
)
from sisr.train.config import OptimConfig, Recipe, expand_path, recipe_from_dict
from sisr.train.ema import EMA
from sisr.train.logging import RunLogger, format_eta, format_train_line
from sisr.train.schedule import LRSchedule, budget_position

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"
WEIGHTS = "model.safetensors"
# Seconds after which the first training line is printed even before ``log.interval``.
FIRST_LINE_SECONDS = 3.0


@dataclass
class TrainResult:
    """What a finished (or time-limited) run produced.

    ``history``: validation entries; ``seconds``: wall time of :meth:`Trainer.run`;
    ``step_seconds``: the part spent making batches and updating;
    ``patches_per_s``: training patches (all ranks) per second of ``step_seconds``.
    """

    out_dir: Path
    iterations: int
    weights: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    step_seconds: float = 0.0
    patches_per_s: float = 0.0


# --- building blocks --------------------------------------------------------------------


def build_optimizer(
    model: nn.Module, cfg: OptimConfig, *, fused: bool = False
) -> torch.optim.Optimizer:
    """Optimizer over the trainable parameters, one group per ``lr_mult`` pattern.

    A parameter takes the multiplier of the first pattern (fnmatch on its name) that
    matches it; a pattern matching nothing is a ConfigError listing a few names.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ConfigError("model: the network has no trainable parameters")
    groups: dict[float, list[nn.Parameter]] = {}
    used = dict.fromkeys(cfg.lr_mult, False)
    for name, p in named:
        mult = 1.0
        for pattern, m in cfg.lr_mult.items():
            if fnmatch.fnmatchcase(name, pattern):
                mult, used[pattern] = m, True
                break
        groups.setdefault(mult, []).append(p)
    unused = [k for k, hit in used.items() if not hit]
    if unused:
        names = ", ".join(n for n, _ in named[:6])
        raise ConfigError(
            f"optim.lr_mult.{unused[0]}: matches no parameter (names look like: {names}, ...)"
        )
    params = [{"params": ps, "lr": cfg.lr * m} for m, ps in groups.items()]
    extra: dict[str, Any] = {"fused": True} if fused else {}
    if cfg.name == "adam":
        return torch.optim.Adam(
            params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, **extra
        )
    if cfg.name == "adamw":
        return torch.optim.AdamW(
            params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, **extra
        )
    return torch.optim.SGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
    )


class _Forward(nn.Module):
    """What DDP / torch.compile wrap: the image, or the raw residual for residual losses.

    Models with a ``forward_residual`` (e.g. the dense FCN) can have their loss
    applied to the high-frequency residual; calling that method through this
    wrapper keeps DDP's gradient hooks in the path.
    """

    def __init__(self, model: SRModel, residual: bool) -> None:
        super().__init__()
        self.model = model
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        if self.residual:
            return self.model.forward_residual(x)  # type: ignore[operator]
        return self.model(x)


def _loss_takes_residual(loss: nn.Module) -> bool:
    modules = getattr(loss, "losses", [])
    return any("residual" in inspect.signature(m.forward).parameters for m in modules)


def training_precision(precision: str, device: torch.device) -> tuple[torch.dtype | None, str]:
    """The autocast dtype for a recipe's ``precision`` on ``device`` and a line saying why.

    Weights, optimizer state and the loss stay fp32 (autocast casts per op). ``auto``
    is bf16 on CUDA and on CPUs with native bf16 matrix units (AMX, AVX512-BF16), fp32
    elsewhere: emulated bf16 convolutions are an order of magnitude slower than fp32.
    """
    from sisr.infer.precision import cpu_bf16_support

    if device.type == "cuda":
        if precision == "auto":
            return torch.bfloat16, "auto -> bf16 autocast (CUDA)"
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        return dtype, f"{precision} (CUDA)"
    native = cpu_bf16_support()
    if precision == "fp16":
        raise ConfigError("precision fp16 is CUDA-only; use bf16 or fp32 on the CPU")
    if precision == "auto":
        if native:
            return torch.bfloat16, f"auto -> bf16 autocast (CPU has {native})"
        return None, "auto -> fp32 (this CPU has no AMX or AVX512-BF16; bf16 would be emulated)"
    if precision == "bf16":
        note = f"CPU has {native}" if native else "no native bf16 on this CPU: expect it to be slow"
        return torch.bfloat16, f"bf16 autocast ({note})"
    return None, "fp32"


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _dataset_name(path: str) -> str:
    return Path(path.rstrip("/")).name or path


# --- the trainer ---------------------------------------------------------------------------


class Trainer:
    """One training run. Build with :meth:`__init__`, then :meth:`run`."""

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
        self.recipe = recipe
        self.vgg_weights = vgg_weights
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.dist = dist_info or D.setup(recipe.device)
        self.device = self.dist.device
        self.cuda = self.device.type == "cuda"
        self.ckpt_dir = self.out_dir / CHECKPOINT_DIR if self.out_dir is not None else None
        if resume and init_from is not None:
            raise ConfigError("--resume and --init-from exclude each other")
        self._check_out_dir(resume)
        # every rank has looked at the folder before rank 0 writes anything into it
        D.barrier(self.dist)
        self._fresh = not resume

        self.iteration = 0
        self.skips = 0
        self.rollbacks = 0
        self.best: dict[str, Any] = {"metric": -math.inf, "iteration": -1}
        self.history: list[dict[str, Any]] = []
        self._saved_at = -1
        self._validated_at = -1
        self._pairs: list[tuple[str, list[Any]]] | None = None
        self._step_seconds = 0.0
        # budgeted runs: seconds spent by earlier chunks, the clock of this one, and the
        # schedule position (nominal iteration) the loop decided for the coming update
        self._budget_base = 0.0
        self._clock_t0: float | None = None
        self._position: float | None = None

        self.log = RunLogger(
            self.out_dir,
            enabled=self.dist.is_main,
            progress=recipe.log.progress,
            tensorboard=recipe.log.tensorboard,
        )
        self._configure_torch()
        _seed_everything(recipe.seed)

        self.model: SRModel = build(
            recipe.model.preset, recipe.model.scale, **recipe.model.overrides
        )
        if init_from is not None:
            loaded, skipped = load_matching(self.model, init_from)
            self.log.info(
                f"init-from {init_from}: loaded {len(loaded)} tensors, skipped {len(skipped)}"
            )
            for item in skipped:
                self.log.info(f"  skipped {item}")
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

        self.loss = self._build_loss().to(self.device)
        self.residual = hasattr(self.model, "forward_residual") and _loss_takes_residual(self.loss)
        forward: nn.Module = _Forward(self.model, self.residual)
        if self.dist.enabled:
            forward = nn.parallel.DistributedDataParallel(
                forward, device_ids=[self.device.index] if self.cuda else None
            )
        if recipe.compile:
            forward = torch.compile(forward)  # type: ignore[assignment]
        self.forward = forward

        self.optimizer = build_optimizer(self.model, recipe.optim, fused=self.cuda)
        self.schedule = LRSchedule(self.optimizer, recipe.schedule, recipe.iterations)
        self.ema = (
            EMA(self.model, recipe.ema.decay, recipe.ema.start, recipe.ema.warmup)
            if recipe.ema.decay is not None
            else None
        )
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype is torch.float16 else None
        self.batcher = self._make_batcher()
        self.params = [p for p in self.model.parameters() if p.requires_grad]

        if resume:
            assert self.ckpt_dir is not None
            state = load_checkpoint(self.ckpt_dir / LAST)
            self._restore(state)
            self._report_recipe_changes(state.get("recipe"))
            self.log.info(f"resumed from {self.ckpt_dir / LAST} at iteration {self.iteration}")
        if self.dist.is_main and recipe.val.datasets:
            self._val_pairs()  # a missing benchmark fails now, not hours into the run
        self._write_recipe()

    # -- setup helpers --------------------------------------------------------------------

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype (None: plain fp32), resolved once in :meth:`_configure_torch`."""
        return self._amp_dtype

    @property
    def channels_last(self) -> bool:
        return self.recipe.channels_last

    def _configure_torch(self) -> None:
        r = self.recipe
        if r.deterministic:
            # cuBLAS needs a fixed workspace to be deterministic (set before its first use)
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif self.cuda:
            torch.backends.cudnn.benchmark = True
        if self.cuda:
            torch.backends.cuda.matmul.allow_tf32 = not r.deterministic
            torch.backends.cudnn.allow_tf32 = not r.deterministic
        self._amp_dtype, why = training_precision(r.precision, self.device)
        self.log.info(
            f"precision: {why}; memory format: {'channels_last' if r.channels_last else 'NCHW'}"
        )

    def _check_out_dir(self, resume: bool) -> None:
        if self.out_dir is None or self.ckpt_dir is None:
            return
        has_ckpt = (self.ckpt_dir / LAST).is_file()
        if resume and not has_ckpt:
            raise ConfigError(f"{self.ckpt_dir / LAST}: nothing to resume (no checkpoint)")
        if not resume and has_ckpt:
            raise ConfigError(
                f"{self.out_dir}: already holds a run (checkpoints/{LAST}); "
                "pass --resume to continue it or choose another --out"
            )

    def _make_batcher(self) -> Any:
        from sisr.data.cache import open_decoded
        from sisr.data.pipeline import PatchBatcher, PlainLoaderBatcher
        from sisr.data.sources import div2k_pairs, folder_pairs, hr_folders

        d = self.recipe.data
        cache_dir = expand_path(d.cache_dir, "data.cache_dir") if d.cache_dir else None
        lr_set = None
        if d.div2k is not None:
            root = expand_path(d.div2k, "data.div2k")
            hr_list, lr_list = div2k_pairs(root, self.recipe.model.scale, kind=d.div2k_kind)
            hr_set = open_decoded(hr_list, cache_dir=cache_dir, progress=self.dist.is_main)
            lr_set = open_decoded(lr_list, cache_dir=cache_dir, progress=self.dist.is_main)
        elif d.pairs is not None:
            hr_list, lr_list = folder_pairs(
                expand_path(d.pairs.hr, "data.pairs.hr"),
                expand_path(d.pairs.lr, "data.pairs.lr"),
                self.recipe.model.scale,
            )
            hr_set = open_decoded(hr_list, cache_dir=cache_dir, progress=self.dist.is_main)
            lr_set = open_decoded(lr_list, cache_dir=cache_dir, progress=self.dist.is_main)
        else:
            folders = [expand_path(f, f"data.train[{i}]") for i, f in enumerate(d.train)]
            hr_set = open_decoded(
                hr_folders(folders), cache_dir=cache_dir, progress=self.dist.is_main
            )
        common: dict[str, Any] = {
            "scale": self.recipe.model.scale,
            "lr_patch": d.lr_patch,
            "batch_size": d.batch_size,
            "degradation": d.degradation,
            "augment": d.augment,
            "seed": self.recipe.seed,
            "rank": self.dist.rank,
            "world_size": self.dist.world_size,
            "lr_images": lr_set,
            "sampling": d.sampling,
        }
        if d.loader == "plain":
            batcher = PlainLoaderBatcher(
                hr_set, device=self.device, num_workers=d.workers, **common
            )
            where = f"DataLoader, {d.workers} workers"
        else:
            on_device = d.on_device
            if on_device == "auto":
                on_device = (
                    self.cuda and hr_set.nbytes < torch.cuda.mem_get_info(self.device)[0] // 4
                )
            self._batch_device = self.device if on_device else torch.device("cpu")
            batcher = PatchBatcher(hr_set, device=self._batch_device, **common)
            where = f"patches cut on {self._batch_device}"
        n = len(hr_set)
        # what the LR is: the user's own files, or made from HR patches on the fly
        lr_from = "LR from the paired files" if lr_set is not None else f"LR by {d.degradation}"
        self.log.info(
            f"data: {n} images ({hr_set.nbytes / 2**20:.1f} MiB decoded), {lr_from}, {where}; "
            f"batch {d.batch_size} x {self.dist.world_size} rank(s) of {d.lr_patch} px LR patches"
        )
        if batcher.excluded:
            self.log.info(f"data: {len(batcher.excluded)} images too small for a patch are skipped")
        return batcher

    def _build_loss(self) -> nn.Module:
        """The recipe's loss mix (before any data is read, so a missing VGG file fails
        early). Subclasses add context: the GAN trainer builds its discriminator here."""
        from sisr.losses import build_loss

        return build_loss([t.as_spec() for t in self.recipe.loss], vgg_weights=self.vgg_weights)

    def _write_recipe(self) -> None:
        if self.out_dir is not None and self.dist.is_main:
            with atomic_path(self.out_dir / "recipe.yaml") as tmp:
                tmp.write_text(self.recipe.to_yaml(), encoding="utf-8")

    def _report_recipe_changes(self, saved: Any) -> None:
        if not isinstance(saved, dict):
            return
        try:
            old = recipe_from_dict(saved).to_dict()
        except ConfigError:
            return
        new = self.recipe.to_dict()
        changed = sorted(_diff_keys(old, new))
        if changed:
            self.log.info(f"note: recipe changed since the checkpoint at: {', '.join(changed)}")

    # -- one update ----------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def step(self, lr: Tensor, hr: Tensor) -> tuple[float, dict[str, Tensor]] | None:
        """One update at ``self.iteration`` from one batch.

        Returns ``(loss, parts)`` after a successful update, or ``None`` when the loss
        (on any rank) or the gradient norm was not finite and the update was skipped.
        """
        rate = self.schedule.apply(self.position)
        lr, hr = self._to_device(lr, hr)
        sr, extra = self._generate(lr, hr)
        total, parts = self.loss(sr, hr, lr, sync=False, **extra)
        value = float(total.detach())
        if not D.all_true(self.dist, math.isfinite(value)):
            self.optimizer.zero_grad(set_to_none=True)
            return None
        if self.scaler is not None:
            self.scaler.scale(total).backward()
        else:
            total.backward()
        if not self._clip(rate):
            self.optimizer.zero_grad(set_to_none=True)
            return None
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model, self.position)
        self.iteration += 1
        return value, parts

    # -- budget ----------------------------------------------------------------------------

    @property
    def position(self) -> float:
        """Where the coming update sits in the schedule: its iteration, or for a budgeted
        run the nominal iteration its elapsed time maps to (set by :meth:`run`)."""
        return self.iteration if self._position is None else self._position

    def elapsed(self) -> float:
        """Training seconds of this run so far, earlier chunks included."""
        if self._clock_t0 is None:
            return self._budget_base
        return self._budget_base + (time.monotonic() - self._clock_t0)

    def _start_clock(self) -> None:
        self._clock_t0 = time.monotonic()

    def _stop_clock(self) -> None:
        self._budget_base = self.elapsed()
        self._clock_t0 = None

    def _to_device(self, lr: Tensor, hr: Tensor) -> tuple[Tensor, Tensor]:
        if lr.device != self.device:
            lr, hr = lr.to(self.device, non_blocking=True), hr.to(self.device, non_blocking=True)
        if self.channels_last:
            lr = lr.contiguous(memory_format=torch.channels_last)
        return lr, hr

    def _generate(self, lr: Tensor, hr: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The model's SR image (float32) and the extra loss inputs (``residual``)."""
        with self._autocast():
            out = self.forward(lr)
        out = out.float()
        if not self.residual:
            return out, {}
        # sr = base + residual, with base = hr - target (the bicubic image for
        # residual models), so image losses and residual losses can be mixed.
        target = self.model.residual_target(lr, hr)  # type: ignore[operator]
        return out + (hr - target), {"residual": out}

    def _clip(self, rate: float) -> bool:
        """Clip gradients as the recipe says; False when the gradient norm is not finite."""
        c = self.recipe.grad_clip
        if c.mode == "off":
            return True
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if c.mode == "adjustable":
            # VDSR: gradients clipped to theta / rate, so the effective step is bounded
            bound, by = c.theta / max(rate, 1e-30), c.by
        else:
            bound, by = c.max, c.mode
        if by == "value":
            torch.nn.utils.clip_grad_value_(self.params, bound)
            return True
        norm = torch.nn.utils.clip_grad_norm_(self.params, bound, foreach=True)
        # fp16: GradScaler already skips steps with inf gradients (and lowers its scale)
        return self.scaler is not None or bool(torch.isfinite(norm))

    # -- state -----------------------------------------------------------------------------

    def state_dict(self, rank_states: list[dict[str, Any]]) -> dict[str, Any]:
        return to_cpu(
            {
                "iteration": self.iteration,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "ranks": rank_states,
                "batcher": self.batcher.state_dict(),
                "world_size": self.dist.world_size,
                "best": dict(self.best),
                "guard": {"rollbacks": self.rollbacks},
                "history": self.history,
                "recipe": self.recipe.to_dict(),
                "arch": {"id": self.model.arch_id, "hparams": self.model.hparams},
                "elapsed": self.elapsed(),
            }
        )

    def _restore(self, state: dict[str, Any]) -> None:
        from sisr.hub.strict import load_state_dict_strict

        load_state_dict_strict(self.model, state["model"], source="checkpoint")
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.ema is not None:
            if state.get("ema") is None:
                self.log.info("note: the checkpoint has no EMA; the EMA restarts from the weights")
                self.ema = EMA(self.model, self.ema.decay, self.ema.start, self.ema.warmup)
            else:
                self.ema.load_state_dict(state["ema"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.batcher.load_state_dict(state["batcher"])
        ranks = state.get("ranks") or []
        if state.get("world_size") == self.dist.world_size and len(ranks) > self.dist.rank:
            set_rng_state(ranks[self.dist.rank]["rng"])
        elif self.dist.is_main:
            self.log.info(
                f"note: checkpoint written by {state.get('world_size')} rank(s), now "
                f"{self.dist.world_size}; global RNG streams restart"
            )
        self.iteration = int(state["iteration"])
        self.best = dict(state.get("best") or self.best)
        self.rollbacks = int((state.get("guard") or {}).get("rollbacks", 0))
        self.history = list(state.get("history") or [])
        self._saved_at = self.iteration
        self._validated_at = self.history[-1]["iteration"] if self.history else -1
        self._budget_base = float(state.get("elapsed") or 0.0)
        if self._clock_t0 is not None:
            self._clock_t0 = time.monotonic()

    def save(self, names: tuple[str, ...] = (LAST,)) -> bool:
        """Checkpoint the current state under ``names`` (rank 0 writes; all ranks call).

        Returns False (and writes nothing) when a weight is not finite.
        """
        if self.ckpt_dir is None:
            return True
        if not D.all_true(self.dist, is_finite_model(self.model)):
            self.log.info(f"iter {self.iteration}: non-finite weights; not saving")
            return False
        ranks = D.gather_objects(self.dist, {"rng": rng_state()})
        if self.dist.is_main:
            first = self.ckpt_dir / names[0]
            save_checkpoint(first, self.state_dict(ranks))
            for name in names[1:]:
                with atomic_path(self.ckpt_dir / name) as tmp:
                    shutil.copyfile(first, tmp)
        D.barrier(self.dist)
        if LAST in names:
            self._saved_at = self.iteration
        return True

    def rollback(self, reason: str) -> None:
        """Reload ``last.pt`` with the rate cut by ``guard.lr_factor``."""
        g = self.recipe.guard
        if self.rollbacks >= g.max_rollbacks or self.ckpt_dir is None:
            raise SisrError(
                f"training diverged at iteration {self.iteration} ({reason}) after "
                f"{self.rollbacks} rollback(s); lower optim.lr or enable grad_clip"
            )
        scale = self.schedule.scale * g.lr_factor
        rollbacks = self.rollbacks + 1
        elapsed = self.elapsed()  # the deadline is wall-clock: a rollback does not rewind it
        state = load_checkpoint(self.ckpt_dir / LAST)
        self._restore(state)
        self._budget_base = elapsed
        self.schedule.scale = scale
        self.rollbacks = rollbacks
        self.skips = 0
        self.log.set_progress(self.iteration)
        self.log.info(
            f"{reason}: rolled back to iteration {self.iteration} with the rate x{scale:g} "
            f"(rollback {rollbacks}/{g.max_rollbacks})"
        )

    # -- validation -------------------------------------------------------------------------

    def eval_model(self) -> SRModel:
        return self.ema.shadow if self.ema is not None else self.model  # type: ignore[return-value]

    def validate(self) -> dict[str, Any] | None:
        """Rank 0 evaluates every val set; all ranks get the entry. None without val sets."""
        v = self.recipe.val
        if not v.datasets:
            return None
        entry: dict[str, Any] | None = None
        if self.dist.is_main:
            entry = self._evaluate_all()
        entry = D.broadcast_object(self.dist, entry)
        assert entry is not None
        self._validated_at = self.iteration
        self.history.append(entry)
        if self.dist.is_main and self.out_dir is not None:
            atomic_write_bytes(
                self.out_dir / "history.json", json.dumps(self.history, indent=1).encode()
            )
        return entry

    def _val_pairs(self) -> list[tuple[str, list[Any]]]:
        """(name, pairs) per val set, read once (HR modcrop + MATLAB-bicubic LR)."""
        if self._pairs is None:
            from sisr.evaluate.runner import load_pairs

            self._pairs = []
            for i, ds in enumerate(self.recipe.val.datasets):
                where = str(expand_path(ds, f"val.datasets[{i}]")) if "$" in ds or "~" in ds else ds
                pairs = load_pairs(where, self.recipe.val_scale)
                self._pairs.append((_dataset_name(ds), pairs))
        return self._pairs

    def _evaluate_all(self) -> dict[str, Any]:
        from sisr.evaluate.runner import evaluate

        model = self.eval_model()
        scale = self.recipe.val_scale
        results: dict[str, Any] = {}
        for name, pairs in self._val_pairs():
            res = evaluate(model, pairs, scale, device=self.device, dataset_name=name)
            results[name] = {"psnr": res.psnr_y, "ssim": res.ssim_y, "psnr_rgb": res.psnr_rgb}
        entry = {"iteration": self.iteration, "scale": scale, "results": results}
        parts = [
            f"{name} PSNR-Y {r['psnr']:.3f} SSIM-Y {r['ssim']:.4f}" for name, r in results.items()
        ]
        self.log.info(f"val iter {self.iteration}: " + "; ".join(parts))
        for name, r in results.items():
            self.log.scalars(
                {f"val/{name}/psnr": r["psnr"], f"val/{name}/ssim": r["ssim"]}, self.iteration
            )
        if self.log.tb is not None and self.recipe.log.images:
            self._sample_images(model)
        return entry

    @torch.no_grad()
    def _sample_images(self, model: SRModel) -> None:
        """SR of the first val images to TensorBoard (for eyeballing, not for scores)."""
        name, pairs = self._val_pairs()[0]
        was_training = model.training
        model.eval()
        try:
            for pair in pairs[: self.recipe.log.images]:
                x = pair.lr.to(self.device).float().div(255.0).unsqueeze(0)
                sr = model(x).clamp(0, 1)[0].cpu()
                self.log.image(f"sample/{name}/{pair.name}", sr, self.iteration)
        finally:
            model.train(was_training)

    # -- the loop ---------------------------------------------------------------------------------

    def run(self, max_seconds: float | None = None) -> TrainResult:
        r = self.recipe
        total = r.iterations
        t_start = time.monotonic()
        start_iter = self.iteration
        if self._fresh and self._saved_at < 0:
            self.save()  # the rollback target before the first update
        self.log.start_progress(total, self.iteration)
        window_loss = 0.0
        window_parts: dict[str, Tensor] = {}
        window_n = 0
        t_window = time.monotonic()
        first_line_due = True
        last_rate = self.schedule.apply(self.iteration)
        budget = r.budget
        if budget is not None:
            self.log.info(
                f"budget: {budget:g} s of training ({self._budget_base:.1f} s spent before); "
                f"the schedule of {total} nominal iterations is laid out over it"
            )
        self._start_clock()
        try:
            while True:
                if budget is not None:
                    # rank 0's clock decides for all ranks, so rates and the stop agree
                    spent = D.broadcast_float(self.dist, self.elapsed())
                    if spent >= budget:
                        self.log.info(f"budget of {budget:g} s spent at iteration {self.iteration}")
                        break
                    self._position = budget_position(spent, budget, total)
                elif self.iteration >= total:
                    break
                if max_seconds is not None and D.any_true(
                    self.dist, time.monotonic() - t_start >= max_seconds
                ):
                    self.log.info(
                        f"time limit of {max_seconds:g} s reached at iteration {self.iteration}"
                    )
                    break
                t_step = time.perf_counter()
                lr, hr = self.batcher.next_batch()
                out = self.step(lr, hr)  # syncs once (the loss), so the time is real
                self._step_seconds += time.perf_counter() - t_step
                if out is None:
                    self.skips += 1
                    self.log.info(
                        f"iter {self.iteration}: non-finite loss or gradient, update skipped "
                        f"({self.skips}/{r.guard.max_skips})"
                    )
                    if self.skips >= r.guard.max_skips:
                        self.rollback(f"{self.skips} non-finite updates in a row")
                    continue
                self.skips = 0
                value, parts = out
                last_rate = self.optimizer.param_groups[0]["lr"]
                window_loss += value
                for k, v in parts.items():
                    window_parts[k] = window_parts.get(k, 0) + v
                window_n += 1
                self.log.progress(1, value, last_rate)
                it = self.iteration
                now = time.monotonic()
                # The first line comes within seconds, whatever the interval: a user who
                # just started a run wants to see it moving and how fast.
                early = first_line_due and now - t_window >= FIRST_LINE_SECONDS
                if it % r.log.interval == 0 or it == total or early:
                    first_line_due = False
                    means = {k: float(v) / window_n for k, v in window_parts.items()}
                    its = window_n / max(now - t_window, 1e-9)
                    if budget is not None:
                        spent = self.elapsed()
                        where = f"{100 * spent / budget:.1f}% of the budget, {budget - spent:.0f} s left"
                    else:
                        where = f"{100 * it / total:.1f}% {format_eta(total - it, its)}"
                    self.log.info(
                        format_train_line(it, total, window_loss / window_n, means, last_rate, its)
                        + f" | {where}"
                    )
                    self.log.scalars(
                        {"train/loss": window_loss / window_n, "train/lr": last_rate}
                        | {f"train/{k}": v for k, v in means.items()},
                        it,
                    )
                    window_loss, window_parts, window_n, t_window = 0.0, {}, 0, now
                improved = False
                if r.val.interval and it % r.val.interval == 0:
                    improved = self._after_validation()
                if (
                    r.checkpoint.interval
                    and it % r.checkpoint.interval == 0
                    and not self.save((LAST, BEST) if improved else (LAST,))
                ):
                    self.rollback("non-finite weights")
                    continue
                if improved and self._saved_at != it:
                    self.save((BEST,))
        except KeyboardInterrupt:
            self._stop_clock()
            if not self.dist.enabled and self.iteration != self._saved_at and self.save():
                self.log.info(f"interrupted: saved {LAST} at iteration {self.iteration}")
            self.log.close()
            raise
        self._stop_clock()
        self._position = None
        return self._finish(t_start, start_iter)

    def _after_validation(self) -> bool:
        entry = self.validate()
        if entry is None:
            return False
        first = next(iter(entry["results"].values()))
        if first["psnr"] > self.best["metric"]:
            self.best = {"metric": first["psnr"], "iteration": self.iteration}
            return True
        return False

    def _finish(self, t_start: float, start_iter: int) -> TrainResult:
        r = self.recipe
        seconds = time.monotonic() - t_start
        done = self.iteration - start_iter
        # throughput of the updates alone (batches + steps), without validation and saving
        patches = done * r.data.batch_size * self.dist.world_size / max(self._step_seconds, 1e-9)
        improved = False
        if r.val.datasets and self._validated_at != self.iteration:
            improved = self._after_validation()
        if self.iteration != self._saved_at or improved:
            names = (LAST, BEST) if improved else (LAST,)
            if not self.save(names):
                raise SisrError("the final weights are not finite; see the last good checkpoint")
        weights: Path | None = None
        if self.dist.is_main and self.out_dir is not None:
            weights = self.out_dir / WEIGHTS
            self._export(weights)
            self.log.info(
                f"done: {self.iteration} iterations, {done} in {seconds:.1f} s "
                f"({self._step_seconds:.1f} s in updates: {patches:.1f} patches/s); "
                f"weights: {weights}"
            )
        self.log.close()
        return TrainResult(
            out_dir=self.out_dir or Path("."),
            iterations=self.iteration,
            weights=weights,
            history=self.history,
            best=dict(self.best),
            seconds=seconds,
            step_seconds=self._step_seconds,
            patches_per_s=patches,
        )

    def _export(self, path: Path) -> None:
        from sisr.hub.weights import save_weights

        model, fused = deploy_form(self.eval_model())
        metrics = None
        if self.history:
            last = self.history[-1]
            metrics = [
                {"dataset": name, "scale": last["scale"], **vals}
                for name, vals in last["results"].items()
            ]
        save_weights(
            model,
            path,
            recipe=self.recipe.to_dict(),
            iterations=self.iteration,
            metrics=metrics,
            extra={
                "fused": fused,
                "ema": self.ema is not None,
                "best": self.best,
                "train_seconds": round(self.elapsed(), 1),
                "budget": self.recipe.budget,
            },
        )


def deploy_form(model: nn.Module) -> tuple[nn.Module, bool]:
    """The network as it should be saved: re-parameterisable blocks (SPAN's Conv3XC, FMEN's
    RRRB) trained in their multi-branch form are fused into single convolutions in a copy
    (same function, fewer parameters; ``hparams["deploy"]`` records it). The training
    copy is untouched, so checkpoints keep the branches to resume from. Returns (network,
    whether it was fused)."""
    from sisr.hub.strict import unwrap_model

    net = unwrap_model(model)
    fuse = getattr(net, "reparameterize", None)
    if not callable(fuse) or getattr(net, "hparams", {}).get("deploy", True):
        return net, False
    fused = copy.deepcopy(net).eval()
    fused.reparameterize()  # type: ignore[operator]
    return fused, True


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [prefix or "recipe"]


__all__ = ["TrainResult", "Trainer", "build_optimizer", "deploy_form"]
