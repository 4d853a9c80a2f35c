"""Adversarial losses for GAN training of SR generators, both sides.

Kinds (``C`` = discriminator logits, ``sigma`` = sigmoid, ``BCE(z, t)`` =
binary cross-entropy of sigmoid(z) against target ``t``, means over the batch):

* ``vanilla`` (SRGAN; aliases ``gan``, ``bce``), non-saturating generator:
  ``L_D = BCE(C(x_r), 1) + BCE(C(x_f), 0)``; ``L_G = BCE(C(x_f), 1) = -log D(G(z))``.
* ``relativistic`` (ESRGAN's relativistic average GAN; aliases ``ragan``,
  ``relativistic_average``), with ``D_Ra(a, b) = sigma(C(a) - E[C(b)])``:
  ``L_D = (BCE(C(x_r) - E[C(x_f)], 1) + BCE(C(x_f) - E[C(x_r)], 0)) / 2``;
  ``L_G = (BCE(C(x_r) - E[C(x_f)], 0) + BCE(C(x_f) - E[C(x_r)], 1)) / 2``.
  The paper writes the sums; the halves are what ESRGAN's released training code
  computes, and the published weight (lambda = 5e-3) belongs to that form. ``L_D``
  keeps the full gradient (both terms reach both logit batches); ESRGAN's code detaches
  the batch mean in each term to run two backward passes, a slightly different gradient.
  In ``L_G`` the real logits are detached (they do not depend on the generator).
* ``hinge``: ``L_D = E[relu(1 - C(x_r))] + E[relu(1 + C(x_f))]``; ``L_G = -E[C(x_f)]``.

Discriminator targets (BCE kinds only; the generator always uses hard 1/0 targets):
``real_label`` (one-sided label smoothing: 0.9), ``fake_label``; ``label_flip``: each
sample's real/fake target is swapped with this probability; ``label_jitter``: each target
moves towards 0.5 by U(0, jitter) (noisy soft labels). These are the usual
"label noise" knobs of GAN training scripts.

Using it in a GAN trainer (one iteration)::

    mix = build_loss(specs, discriminator=d, vgg_weights=args.vgg_weights)  # d: bare module
    adv = adversarial_term(mix)            # the "adversarial" entry, or None
    # generator step
    sr = g(lr)
    total, parts = mix(sr, hr, lr)         # runs d(sr) with d's parameters frozen
    g_opt.zero_grad(); total.backward(); g_opt.step()
    # discriminator step
    loss_d = adv.discriminator_loss(d(hr), d(sr.detach()))
    d_opt.zero_grad(); loss_d.backward(); d_opt.step()

The generator-side entry calls the discriminator with ``requires_grad`` switched off on
its parameters (restored afterwards), so the generator's backward writes no gradient
into them and a generator optimiser could not move them even if it held them. Pass the
bare discriminator, not its DistributedDataParallel wrapper (the generator step needs
no gradient sync for it, and DDP would wait for gradients that never come). When the
trainer computes logits itself, call :func:`adversarial_g_loss` /
:func:`adversarial_d_loss` directly and freeze the discriminator around the generator
step (:func:`frozen`) or zero its gradients before its own step.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sisr.errors import ConfigError
from sisr.losses.pixel import PixelLoss

ADVERSARIAL_KINDS: dict[str, str] = {
    "vanilla": "vanilla",
    "gan": "vanilla",
    "bce": "vanilla",
    "relativistic": "relativistic",
    "ragan": "relativistic",
    "relativistic_average": "relativistic",
    "hinge": "hinge",
}


def adversarial_kind(kind: str) -> str:
    """Canonical kind name (``vanilla``, ``relativistic``, ``hinge``) for a name or alias."""
    canonical = ADVERSARIAL_KINDS.get(str(kind).lower())
    if canonical is None:
        raise ConfigError(
            f"unknown adversarial loss kind {kind!r}; known: {', '.join(ADVERSARIAL_KINDS)}"
        )
    return canonical


def _bce(logits: Tensor, target: float | Tensor) -> Tensor:
    """Mean BCE-with-logits in float32. logits: any shape; target: scalar or same shape."""
    z = logits.float()
    t = torch.full_like(z, target) if isinstance(target, float | int) else target.float()
    return F.binary_cross_entropy_with_logits(z, t)


def adversarial_g_loss(kind: str, fake_logits: Tensor, real_logits: Tensor | None = None) -> Tensor:
    """Generator-side adversarial loss. logits: (N, 1) (any shape) -> 0-dim float32.

    ``real_logits`` (the discriminator on HR images) is required by ``relativistic``
    and ignored otherwise; it is detached here.
    """
    k = adversarial_kind(kind)
    if k == "vanilla":
        return _bce(fake_logits, 1.0)
    if k == "hinge":
        return -fake_logits.float().mean()
    if real_logits is None:
        raise ValueError("the relativistic adversarial loss needs the real images' logits")
    real = real_logits.detach().float()
    fake = fake_logits.float()
    return 0.5 * (_bce(real - fake.mean(), 0.0) + _bce(fake - real.mean(), 1.0))


def check_labels(
    kind: str,
    real_label: float = 1.0,
    fake_label: float = 0.0,
    label_flip: float = 0.0,
    label_jitter: float = 0.0,
) -> None:
    """ConfigError unless the discriminator target options make sense for ``kind``."""
    k = adversarial_kind(kind)
    for name, value, hi in (
        ("real_label", real_label, 1.0),
        ("fake_label", fake_label, 1.0),
        ("label_flip", label_flip, 0.5),
        ("label_jitter", label_jitter, 0.5),
    ):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= hi:
            raise ConfigError(f"adversarial {name} must be a number in [0, {hi:g}], got {value!r}")
    if not real_label > fake_label:
        raise ConfigError(
            f"adversarial real_label ({real_label}) must exceed fake_label ({fake_label})"
        )
    soft = (real_label, fake_label, label_flip, label_jitter) != (1.0, 0.0, 0.0, 0.0)
    if k == "hinge" and soft:
        raise ConfigError(
            "label smoothing and label noise apply to the BCE kinds (vanilla, relativistic), "
            "not to hinge"
        )


def discriminator_targets(
    is_real: bool,
    like: Tensor,
    *,
    real_label: float = 1.0,
    fake_label: float = 0.0,
    label_flip: float = 0.0,
    label_jitter: float = 0.0,
    generator: torch.Generator | None = None,
) -> float | Tensor:
    """BCE targets for a batch of real (or fake) logits ``like``: a float when no noise
    is asked for, else a float32 tensor of ``like``'s shape (see the module docstring)."""
    label, other = (real_label, fake_label) if is_real else (fake_label, real_label)
    if label_flip == 0 and label_jitter == 0:
        return float(label)
    dev = generator.device if generator is not None else like.device

    def rand() -> Tensor:
        return torch.rand(like.shape, generator=generator, device=dev).to(like.device)

    t = torch.full(like.shape, float(label), device=like.device)
    if label_flip > 0:
        t = torch.where(rand() < label_flip, torch.full_like(t, float(other)), t)
    if label_jitter > 0:
        t = (t + torch.sign(0.5 - t) * rand() * label_jitter).clamp(0.0, 1.0)
    return t


def adversarial_d_loss(
    kind: str,
    real_logits: Tensor,
    fake_logits: Tensor,
    *,
    real_label: float = 1.0,
    fake_label: float = 0.0,
    label_flip: float = 0.0,
    label_jitter: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Discriminator-side adversarial loss. logits: (N, 1) (any shape) -> 0-dim float32.

    ``fake_logits`` must come from detached generator outputs (``d(sr.detach())``) so
    that this loss does not reach the generator. ``generator``: RNG for label noise.
    """
    k = adversarial_kind(kind)
    check_labels(k, real_label, fake_label, label_flip, label_jitter)
    if k == "hinge":
        return F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean()
    t_real, t_fake = (
        discriminator_targets(
            is_real,
            logits,
            real_label=real_label,
            fake_label=fake_label,
            label_flip=label_flip,
            label_jitter=label_jitter,
            generator=generator,
        )
        for is_real, logits in ((True, real_logits), (False, fake_logits))
    )
    if k == "vanilla":
        return _bce(real_logits, t_real) + _bce(fake_logits, t_fake)
    real, fake = real_logits.float(), fake_logits.float()
    return 0.5 * (_bce(real - fake.mean(), t_real) + _bce(fake - real.mean(), t_fake))


@contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Switch off ``requires_grad`` on ``module``'s parameters for the block, then restore.

    Autograd records at call time which tensors need gradients, so a forward pass run
    inside the block leaves no path to those parameters: a later backward gives them
    no ``.grad`` while gradients still flow to the inputs.
    """
    params = list(module.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield module
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


class AdversarialLoss(PixelLoss):
    """The generator-side ``adversarial`` entry of :data:`sisr.losses.LOSSES`.

    ``loss(sr, hr) -> adversarial_g_loss(kind, d(sr), d(hr))`` with the discriminator
    ``d`` frozen during the call; ``d(hr)`` is evaluated only for ``relativistic``
    (without autograd). The discriminator arrives as ``build_loss(specs,
    discriminator=d)`` context; it is held by reference, not registered as a submodule,
    so the loss mix's ``.to()``, ``parameters()`` and ``state_dict()`` leave it alone.
    The label options configure :meth:`discriminator_loss` (the trainer's D step), so a
    recipe sets both sides in one place. ``seed`` seeds the label-noise RNG.
    """

    def __init__(
        self,
        kind: str = "vanilla",
        discriminator: nn.Module | None = None,
        real_label: float = 1.0,
        fake_label: float = 0.0,
        label_flip: float = 0.0,
        label_jitter: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.kind = adversarial_kind(kind)
        check_labels(self.kind, real_label, fake_label, label_flip, label_jitter)
        if discriminator is None:
            raise ConfigError(
                "loss 'adversarial' needs a discriminator: it is for the GAN trainer, which "
                "passes build_loss(specs, discriminator=d); remove it from a non-GAN recipe"
            )
        if not isinstance(discriminator, nn.Module):
            raise ConfigError(
                f"loss 'adversarial': discriminator must be an nn.Module, "
                f"got {type(discriminator).__name__}"
            )
        self.__dict__["_discriminator"] = discriminator  # plain attribute: not a submodule
        self.real_label = float(real_label)
        self.fake_label = float(fake_label)
        self.label_flip = float(label_flip)
        self.label_jitter = float(label_jitter)
        self.seed = seed
        self._rng: torch.Generator | None = None

    @property
    def discriminator(self) -> nn.Module:
        return self.__dict__["_discriminator"]

    def forward(self, sr: Tensor, hr: Tensor, lr: Tensor | None = None) -> Tensor:
        d = self.discriminator
        with frozen(d):
            fake = d(sr)
            real = None
            if self.kind == "relativistic":
                with torch.no_grad():
                    real = d(hr)
        return adversarial_g_loss(self.kind, fake, real)

    def _generator(self, device: torch.device) -> torch.Generator | None:
        """Label-noise RNG on ``device`` (seeded once); None uses torch's global RNG."""
        if self.seed is None or (self.label_flip == 0 and self.label_jitter == 0):
            return None
        if self._rng is None or self._rng.device != device:
            self._rng = torch.Generator(device=device).manual_seed(int(self.seed))
        return self._rng

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """:func:`adversarial_d_loss` with this entry's kind and label options."""
        return adversarial_d_loss(
            self.kind,
            real_logits,
            fake_logits,
            real_label=self.real_label,
            fake_label=self.fake_label,
            label_flip=self.label_flip,
            label_jitter=self.label_jitter,
            generator=self._generator(real_logits.device),
        )

    def extra_repr(self) -> str:
        extra = ""
        if (self.real_label, self.fake_label) != (1.0, 0.0):
            extra += f", labels=({self.real_label:g}, {self.fake_label:g})"
        if self.label_flip or self.label_jitter:
            extra += f", flip={self.label_flip:g}, jitter={self.label_jitter:g}"
        return f"kind={self.kind}, discriminator={type(self.discriminator).__name__}{extra}"


def adversarial_term(mix: nn.Module) -> AdversarialLoss | None:
    """The :class:`AdversarialLoss` inside a :class:`~sisr.losses.LossMix` (None if absent).

    A mix holds at most one (more than one raises ConfigError: the D step would be
    ambiguous).
    """
    found = [m for m in getattr(mix, "losses", []) if isinstance(m, AdversarialLoss)]
    if len(found) > 1:
        raise ConfigError("a loss mix may hold only one 'adversarial' entry")
    return found[0] if found else None


__all__ = [
    "ADVERSARIAL_KINDS",
    "AdversarialLoss",
    "adversarial_d_loss",
    "adversarial_g_loss",
    "adversarial_kind",
    "adversarial_term",
    "check_labels",
    "discriminator_targets",
    "frozen",
]
