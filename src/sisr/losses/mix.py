"""Weighted sums of losses built from recipe specs, and the loss registry.

A recipe lists losses as ``[{"name": "l1", "weight": 1.0}, {"name": "charbonnier",
"weight": 0.5, "eps": 1e-3}]``; every key other than ``name``/``weight``/``key`` is a
constructor argument of the loss. ``key`` optionally names the part in the logs
(default: the name, with ``#2``, ``#3``... for repeats).

Adding a loss (this is where the perceptual VGG loss and the generator-side
adversarial loss go): write an ``nn.Module`` in its own module under
``sisr/losses/`` whose ``forward(sr, hr, lr=None, **extra) -> 0-dim Tensor``, then
add one line to :data:`LOSSES` below. Losses that need outside objects declare them
as constructor keywords and receive them from ``build_loss(specs, **context)``: e.g.
an adversarial loss would take ``discriminator=`` and the training loop calls
``build_loss(specs, discriminator=d)``. Context entries a loss does not accept are
not passed to it, so pixel-only recipes ignore them. Modules with weights (VGG) are
moved with ``LossMix.to(device)`` like any module; their parameters should be frozen
(``requires_grad_(False)``) so they stay out of the optimiser.

Losses that need outside files (the VGG weights of ``perceptual``) also register a
check in :data:`REQUIREMENTS`; :func:`check_loss_requirements` runs those checks so
that a trainer fails at start-up, before loading data or spending training time, with
a message naming the missing file. Context used by the built-in losses:
``discriminator=`` (``adversarial``) and ``vgg_weights=`` (``--vgg-weights PATH``,
``perceptual``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from sisr.errors import ConfigError
from sisr.losses.adversarial import AdversarialLoss
from sisr.losses.perceptual import check_perceptual_requirements, perceptual
from sisr.losses.pixel import CharbonnierLoss, L1Loss, L2Loss, ResidualL2Loss

LOSSES: dict[str, Callable[..., nn.Module]] = {
    "l1": L1Loss,
    "l2": L2Loss,
    "mse": L2Loss,
    "charbonnier": CharbonnierLoss,
    "residual_l2": ResidualL2Loss,
    "highpass": ResidualL2Loss,  # the dense-FCN article's name for the same loss
    "perceptual": perceptual,
    "adversarial": AdversarialLoss,
}

# Start-up checks, called with the same options and context as the LOSSES factory.
REQUIREMENTS: dict[str, Callable[..., None]] = {
    "perceptual": check_perceptual_requirements,
}


def _accepted_kwargs(fn: Callable[..., Any]) -> tuple[set[str], bool]:
    """Keyword names ``fn`` accepts and whether it takes ``**kwargs``."""
    if isinstance(fn, type) and fn.__init__ is nn.Module.__init__:
        return set(), False  # a module without its own __init__ takes no options
    params = inspect.signature(fn).parameters.values()
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


class LossMix(nn.Module):
    """``total = sum(weight_i * loss_i(sr, hr, lr))``.

    Call: ``mix(sr, hr, lr) -> (total, parts)`` where ``total`` is a 0-dim tensor with
    grad and ``parts`` maps each part's key to its *unweighted* value. With
    ``sync=True`` (default) values are Python floats, which forces a device sync
    per call; pass ``sync=False`` to get detached 0-dim tensors instead and call
    ``.item()`` only on logging steps. Extra keywords (e.g. ``residual=``) reach
    only the losses whose ``forward`` declares them.
    """

    def __init__(self, keys: Sequence[str], losses: Sequence[nn.Module], weights: Sequence[float]):
        super().__init__()
        if not (len(keys) == len(losses) == len(weights)) or not keys:
            raise ConfigError("a loss mix needs at least one loss, with one weight and key each")
        self.keys = list(keys)
        self.weights = [float(w) for w in weights]
        self.losses = nn.ModuleList(losses)
        self._forward_kwargs = [_accepted_kwargs(m.forward) for m in losses]

    @property
    def needs_lr(self) -> bool:
        return any(getattr(m, "needs_lr", False) for m in self.losses)

    def forward(
        self,
        sr: Tensor,
        hr: Tensor,
        lr: Tensor | None = None,
        *,
        sync: bool = True,
        **extra: Any,
    ) -> tuple[Tensor, dict[str, Any]]:
        total: Tensor | None = None
        parts: dict[str, Any] = {}
        for key, weight, loss, (names, var_kw) in zip(
            self.keys, self.weights, self.losses, self._forward_kwargs, strict=True
        ):
            kw = {k: v for k, v in extra.items() if var_kw or k in names}
            value = loss(sr, hr, lr, **kw)
            parts[key] = value.detach()
            term = value * weight
            total = term if total is None else total + term
        assert total is not None
        if sync:
            # One transfer for all parts rather than one sync per .item().
            values = torch.stack([v.double() for v in parts.values()]).cpu().tolist()
            parts = dict(zip(parts, values, strict=True))
        return total, parts

    def extra_repr(self) -> str:
        return ", ".join(f"{k}*{w:g}" for k, w in zip(self.keys, self.weights, strict=True))


def _parse_spec(i: int, spec: Any) -> tuple[str, float, dict[str, Any]]:
    """Validate one spec -> (registry name, weight, constructor options)."""
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ConfigError(f"loss #{i + 1}: expected a mapping with a 'name', got {spec!r}")
    name = str(spec["name"]).lower()
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}")
    weight = spec.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise ConfigError(f"loss {name!r}: weight must be a number, got {weight!r}")
    kwargs = {k: v for k, v in spec.items() if k not in ("name", "weight", "key")}
    names, var_kw = _accepted_kwargs(LOSSES[name])
    unknown = sorted(k for k in kwargs if not var_kw and k not in names)
    if unknown:
        raise ConfigError(f"loss {name!r}: unknown option(s) {', '.join(unknown)}")
    return name, float(weight), kwargs


def _add_context(
    fn: Callable[..., Any], kwargs: dict[str, Any], context: Mapping[str, Any]
) -> dict[str, Any]:
    """``kwargs`` plus the context entries ``fn`` declares (recipe options win)."""
    names, var_kw = _accepted_kwargs(fn)
    extra = {k: v for k, v in context.items() if (var_kw or k in names) and k not in kwargs}
    return {**kwargs, **extra}


def _check_specs(specs: Any) -> None:
    if isinstance(specs, Mapping) or not isinstance(specs, Sequence) or not specs:
        raise ConfigError("losses must be a non-empty list of {name: ..., weight: ...} entries")


def build_loss(specs: Sequence[Mapping[str, Any]], **context: Any) -> LossMix:
    """Build a :class:`LossMix` from ``[{"name": ..., "weight": ..., **kwargs}, ...]``.

    ``context``: objects offered to loss constructors that declare them by name
    (see module docstring). Raises ConfigError on unknown names, bad weights or
    unknown arguments.
    """
    _check_specs(specs)
    keys: list[str] = []
    losses: list[nn.Module] = []
    weights: list[float] = []
    for i, spec in enumerate(specs):
        name, weight, kwargs = _parse_spec(i, spec)
        factory = LOSSES[name]
        try:
            module = factory(**_add_context(factory, kwargs, context))
        except TypeError as exc:
            raise ConfigError(f"loss {name!r}: {exc}") from exc
        key = str(spec.get("key", name))
        base, n = key, 2
        while key in keys:
            key, n = f"{base}#{n}", n + 1
        keys.append(key)
        losses.append(module)
        weights.append(weight)
    return LossMix(keys, losses, weights)


def check_loss_requirements(specs: Sequence[Mapping[str, Any]], **context: Any) -> None:
    """Fail fast: validate ``specs`` and make sure every file they need is at hand.

    Call it at start-up, before data loading or training, with the same ``context`` as
    :func:`build_loss` (at least ``vgg_weights=`` from ``--vgg-weights``; objects such
    as the discriminator may be left out). Losses with an entry in
    :data:`REQUIREMENTS` run it: ``perceptual`` finds (or downloads into the cache)
    and loads its VGG weights, so a missing file raises
    :class:`~sisr.errors.WeightsError` naming the file to download and where to put it.
    Raises ConfigError for bad specs, like :func:`build_loss`.
    """
    _check_specs(specs)
    for i, spec in enumerate(specs):
        name, _, kwargs = _parse_spec(i, spec)
        check = REQUIREMENTS.get(name)
        if check is not None:
            try:
                check(**_add_context(check, kwargs, context))
            except TypeError as exc:
                raise ConfigError(f"loss {name!r}: {exc}") from exc
