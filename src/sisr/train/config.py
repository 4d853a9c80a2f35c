"""Typed training recipes: YAML -> nested dataclasses with strict validation.

A recipe is a YAML mapping whose sections mirror the dataclasses below. Parsing
is strict: an unknown key, a wrong type or a bad value raises
:class:`~sisr.errors.ConfigError` naming the full key path (``optim.betas[1]``).
``--set key.path=value`` overrides are applied to the raw mapping before
validation, so they are checked exactly like the file; the value is parsed as
YAML (``--set optim.lr=2e-4``, ``--set loss='[{name: l1}]'``).

Paths may contain environment variables (``${SISR_DATA}/train/T91``); they are
expanded when the run starts (:func:`expand_path`), not at load time, so a
recipe can be validated on a machine without the data.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from sisr.errors import ConfigError

Precision = Literal["auto", "fp32", "bf16", "fp16"]


@dataclass
class ModelConfig:
    """Which network to train: a preset (or architecture id) of :func:`sisr.archs.build`."""

    preset: str
    scale: int
    overrides: dict[str, Any] = field(default_factory=dict)

    def check(self, path: str) -> None:
        _require(
            self.scale in (2, 3, 4, 8), f"{path}.scale", f"must be 2, 3, 4 or 8, got {self.scale}"
        )
        _require(bool(self.preset), f"{path}.preset", "must not be empty")


@dataclass
class PairsConfig:
    """Your own image pairs: a folder of HR images and one of their LR versions (from your
    camera, scanner, ...), matched by file name (``a.png`` with ``a.jpg`` or ``ax2.png``)."""

    hr: str
    lr: str


@dataclass
class DataConfig:
    """Training data: folders of HR images, paired folders or a DIV2K root, cut into random
    patches.

    ``train``: folders of HR images (LR made on the fly by ``degradation``);
    ``pairs``: ``{hr: DIR, lr: DIR}`` instead, LR images taken as they are (sizes checked
    against the scale before training); ``div2k``: a DIV2K root instead, paired with its own
    ``DIV2K_train_LR_<div2k_kind>`` images; ``cache_dir``: where decoded images are cached (default: sisr's cache);
    ``batch_size``: per process (DDP multiplies it by the number of ranks);
    ``sampling``: ``area`` (every patch position equally likely) or ``uniform`` (every
    image equally likely); ``loader``: ``patch`` (batched tensor ops on the device) or
    ``plain`` (a DataLoader with ``workers`` processes, for comparison);
    ``on_device``: keep the decoded set on the accelerator and cut patches there
    (``auto``: when training on CUDA and the set takes < 1/4 of free memory).
    """

    train: list[str] = field(default_factory=list)
    pairs: PairsConfig | None = None
    div2k: str | None = None
    div2k_kind: str = "bicubic"
    cache_dir: str | None = None
    degradation: str = "bicubic"
    lr_patch: int = 48
    batch_size: int = 16
    augment: bool = True
    sampling: Literal["area", "uniform"] = "area"
    loader: Literal["patch", "plain"] = "patch"
    workers: int = 4
    on_device: Literal["auto", True, False] = "auto"

    def check(self, path: str) -> None:
        _require(
            sum((bool(self.train), self.pairs is not None, self.div2k is not None)) == 1,
            f"{path}.train",
            "give one of: folders of HR images (data.train), paired folders "
            "(data.pairs: {hr: DIR, lr: DIR}) or a DIV2K root (data.div2k)",
        )
        _require(self.workers >= 0, f"{path}.workers", f"must be >= 0, got {self.workers}")
        _require(self.lr_patch >= 4, f"{path}.lr_patch", f"must be >= 4, got {self.lr_patch}")
        _require(self.batch_size >= 1, f"{path}.batch_size", f"must be >= 1, got {self.batch_size}")


@dataclass
class OptimConfig:
    """Optimizer. ``lr_mult`` maps parameter-name patterns (fnmatch) to a rate multiplier,
    e.g. SRCNN's 10x smaller rate for the last layer (``{"*conv3*": 0.1}``)."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    lr_mult: dict[str, float] = field(default_factory=dict)

    def check(self, path: str) -> None:
        _require(self.lr > 0, f"{path}.lr", f"must be > 0, got {self.lr}")
        for i, b in enumerate(self.betas):
            _require(0.0 <= b < 1.0, f"{path}.betas[{i}]", f"must be in [0, 1), got {b}")
        _require(self.eps > 0, f"{path}.eps", f"must be > 0, got {self.eps}")
        _require(
            0.0 <= self.momentum < 1.0,
            f"{path}.momentum",
            f"must be in [0, 1), got {self.momentum}",
        )
        _require(
            self.weight_decay >= 0, f"{path}.weight_decay", f"must be >= 0, got {self.weight_decay}"
        )
        for k, v in self.lr_mult.items():
            _require(v >= 0, f"{path}.lr_mult.{k}", f"must be >= 0, got {v}")


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, evaluated per iteration (see :mod:`sisr.train.schedule`).

    multistep: multiply by ``gamma`` at each of ``milestones``; step: multiply by
    ``gamma`` every ``step_size`` iterations; cosine: from lr down to
    ``min_lr`` over the run; constant. ``warmup``: linear ramp over the first
    ``warmup`` iterations (from ``warmup_start`` x lr).
    """

    name: Literal["constant", "multistep", "step", "cosine"] = "constant"
    milestones: list[int] = field(default_factory=list)
    step_size: int = 0
    gamma: float = 0.5
    min_lr: float = 0.0
    warmup: int = 0
    warmup_start: float = 0.0

    def check(self, path: str) -> None:
        _require(0 < self.gamma <= 1, f"{path}.gamma", f"must be in (0, 1], got {self.gamma}")
        _require(
            list(self.milestones) == sorted(set(self.milestones))
            and all(m > 0 for m in self.milestones),
            f"{path}.milestones",
            f"must be strictly increasing positive iterations, got {self.milestones}",
        )
        if self.name == "multistep":
            _require(bool(self.milestones), f"{path}.milestones", "multistep needs milestones")
        if self.name == "step":
            _require(self.step_size > 0, f"{path}.step_size", "step schedule needs step_size > 0")
        _require(self.min_lr >= 0, f"{path}.min_lr", f"must be >= 0, got {self.min_lr}")
        _require(self.warmup >= 0, f"{path}.warmup", f"must be >= 0, got {self.warmup}")
        _require(
            0 <= self.warmup_start <= 1,
            f"{path}.warmup_start",
            f"must be in [0, 1], got {self.warmup_start}",
        )


@dataclass
class LossTerm:
    """One weighted term of the loss mix (:func:`sisr.losses.build_loss`)."""

    name: str
    weight: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)

    def check(self, path: str) -> None:
        _require(self.weight >= 0, f"{path}.weight", f"must be >= 0, got {self.weight}")

    def as_spec(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight, **self.options}


@dataclass
class GradClipConfig:
    """Gradient clipping. ``norm``: global L2 norm <= ``max``; ``value``: each element in
    [-max, max]; ``adjustable`` (VDSR): the bound is ``theta / current_lr``, so a large
    rate gets tight clipping and the effective step stays bounded; ``by`` says whether
    that bound applies to the global norm or to each element."""

    mode: Literal["off", "norm", "value", "adjustable"] = "off"
    max: float = 0.0
    theta: float = 0.0
    by: Literal["norm", "value"] = "norm"

    def check(self, path: str) -> None:
        if self.mode in ("norm", "value"):
            _require(self.max > 0, f"{path}.max", f"clipping by {self.mode} needs max > 0")
        if self.mode == "adjustable":
            _require(self.theta > 0, f"{path}.theta", "adjustable clipping needs theta > 0")


@dataclass
class GanConfig:
    """Adversarial training (:mod:`sisr.train.gan`): the discriminator and its updates.

    ``discriminator``: a :data:`sisr.archs.DISCRIMINATORS` preset (``srgan``: SRGAN's
    network for ``in_size`` px HR patches, default 96; ``vgg128``: ESRGAN's, 128 px) with
    constructor ``overrides``; its input size must equal ``data.lr_patch * model.scale``.
    ``init_generator``: the pixel-loss generator to start from (a training checkpoint
    ``.pt``, a sisr ``.safetensors`` file or a named weights entry; ``--init-from`` wins;
    ignored on ``--resume``). ``optim`` / ``schedule``: the discriminator's optimizer and
    rate schedule (``null``: the same settings as the generator's ``optim`` /
    ``schedule``); ``grad_clip``: its gradient clipping. ``d_steps``: discriminator
    updates per generator update (the extra ones on their own batches, before the
    generator update). ``save_discriminator``: also write ``discriminator.safetensors``
    into the run folder at the end. The adversarial loss kind, its weight and the label
    options (``real_label``, ``label_flip``, ...) are the options of the ``adversarial``
    entry of ``loss``, which sets both sides.
    """

    discriminator: str = "srgan"
    overrides: dict[str, Any] = field(default_factory=dict)
    init_generator: str | None = None
    optim: OptimConfig | None = None
    schedule: ScheduleConfig | None = None
    grad_clip: GradClipConfig = field(default_factory=GradClipConfig)
    d_steps: int = 1
    save_discriminator: bool = True

    def check(self, path: str) -> None:
        _require(bool(self.discriminator), f"{path}.discriminator", "must not be empty")
        _require(self.d_steps >= 1, f"{path}.d_steps", f"must be >= 1, got {self.d_steps}")
        if self.init_generator is not None:
            _require(bool(self.init_generator), f"{path}.init_generator", "must not be empty")
        if self.optim is not None:
            self.optim.check(f"{path}.optim")
        if self.schedule is not None:
            self.schedule.check(f"{path}.schedule")
        self.grad_clip.check(f"{path}.grad_clip")


@dataclass
class EmaConfig:
    """Exponential moving average of the weights; ``decay: null`` turns it off.

    ``start``: the average only begins after this many updates (a copy before);
    ``warmup``: ramp the decay as ``min(decay, (1 + n) / (10 + n))``.
    Validation and the exported weights use the average when it is on.
    """

    decay: float | None = None
    start: int = 0
    warmup: bool = True

    def check(self, path: str) -> None:
        if self.decay is not None:
            _require(0 < self.decay < 1, f"{path}.decay", f"must be in (0, 1), got {self.decay}")
        _require(self.start >= 0, f"{path}.start", f"must be >= 0, got {self.start}")


@dataclass
class ValConfig:
    """Validation on full benchmark images with :func:`sisr.evaluate.runner.evaluate`.

    ``datasets``: folders of HR images (the first one decides ``best``);
    ``interval``: iterations between validations (0 = only at the end).
    """

    datasets: list[str] = field(default_factory=list)
    scale: int | None = None
    interval: int = 0

    def check(self, path: str) -> None:
        _require(self.interval >= 0, f"{path}.interval", f"must be >= 0, got {self.interval}")
        if self.scale is not None:
            _require(
                self.scale in (2, 3, 4, 8),
                f"{path}.scale",
                f"must be 2, 3, 4 or 8, got {self.scale}",
            )


@dataclass
class CheckpointConfig:
    """``interval``: iterations between saves of ``checkpoints/last.pt`` (0 = only at the end)."""

    interval: int = 1000

    def check(self, path: str) -> None:
        _require(self.interval >= 0, f"{path}.interval", f"must be >= 0, got {self.interval}")


@dataclass
class LogConfig:
    """``interval``: iterations between log lines; ``images``: SR samples to TensorBoard
    at each validation (when tensorboard is installed)."""

    interval: int = 100
    tensorboard: bool = True
    images: int = 2
    progress: bool = True

    def check(self, path: str) -> None:
        _require(self.interval >= 1, f"{path}.interval", f"must be >= 1, got {self.interval}")
        _require(self.images >= 0, f"{path}.images", f"must be >= 0, got {self.images}")


@dataclass
class GuardConfig:
    """NaN/inf guard: a non-finite loss (or gradient norm) skips the step; after
    ``max_skips`` in a row the run rolls back to the last good checkpoint with the
    rate multiplied by ``lr_factor``; ``max_rollbacks`` bounds the retries."""

    max_skips: int = 5
    lr_factor: float = 0.5
    max_rollbacks: int = 3

    def check(self, path: str) -> None:
        _require(self.max_skips >= 1, f"{path}.max_skips", f"must be >= 1, got {self.max_skips}")
        _require(
            0 < self.lr_factor <= 1, f"{path}.lr_factor", f"must be in (0, 1], got {self.lr_factor}"
        )
        _require(
            self.max_rollbacks >= 0,
            f"{path}.max_rollbacks",
            f"must be >= 0, got {self.max_rollbacks}",
        )


# a week: a budget is wall-clock seconds, and more than this is a typo (ms, not s)
MAX_BUDGET_SECONDS = 7 * 24 * 3600.0


@dataclass
class Recipe:
    """A complete training recipe. ``device``: auto | cpu | cuda | cuda:N.

    ``budget``: wall-clock seconds for the training loop. Without it the run makes
    ``iterations`` updates. With it the run trains until the budget is spent, however
    many updates that is, and ``iterations`` is only the nominal length that the
    schedule's milestones and warm-up, and the EMA's start, are written against: the
    schedule is stretched or squeezed onto the budget (update at elapsed fraction ``f``
    uses the rate of nominal iteration ``f * iterations``), so the run ends annealed at
    its deadline whatever speed the machine turns out to have.
    """

    model: ModelConfig
    data: DataConfig
    iterations: int
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: list[LossTerm] = field(default_factory=lambda: [LossTerm("l1")])
    gan: GanConfig | None = None
    grad_clip: GradClipConfig = field(default_factory=GradClipConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    precision: Precision = "fp32"
    compile: bool = False
    channels_last: bool = False
    val: ValConfig = field(default_factory=ValConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    name: str = ""
    budget: float | None = None

    def check(self, path: str = "") -> None:
        _require(
            self.iterations >= 1, _join(path, "iterations"), f"must be >= 1, got {self.iterations}"
        )
        if self.budget is not None:
            _require(
                math.isfinite(self.budget) and 0 < self.budget <= MAX_BUDGET_SECONDS,
                _join(path, "budget"),
                f"must be a number of seconds in (0, {MAX_BUDGET_SECONDS:g}], got {self.budget}",
            )
        _require(bool(self.loss), _join(path, "loss"), "needs at least one term")
        _require(
            re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None,
            _join(path, "device"),
            f"must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )
        adversarial = any(t.name.lower() == "adversarial" for t in self.loss)
        if adversarial and self.gan is None:
            raise ConfigError(
                f"{_join(path, 'gan')}: the 'adversarial' loss needs a gan section "
                "(discriminator, its optimizer) to train against"
            )
        if self.gan is not None and not adversarial:
            raise ConfigError(
                f"{_join(path, 'loss')}: a gan section needs an 'adversarial' loss term "
                "(e.g. {name: adversarial, weight: 1.0e-3})"
            )
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if hasattr(item, "check"):
                        item.check(f"{_join(path, f.name)}[{i}]")
            elif hasattr(value, "check"):
                value.check(_join(path, f.name))

    @property
    def val_scale(self) -> int:
        return self.val.scale if self.val.scale is not None else self.model.scale

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-friendly mapping (tuples become lists) that round-trips."""
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


# --- loading -----------------------------------------------------------------------


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line message as one line: the problem and where (1-based)."""
    problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a YAML recipe, apply ``key.path=value`` overrides, validate."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read recipe ({exc.strerror or exc})") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(exc)})") from exc
    try:
        return recipe_from_dict(raw, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def recipe_from_dict(raw: Any, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Validate a raw mapping (e.g. from YAML or a checkpoint) into a :class:`Recipe`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a recipe must be a mapping, got {type(raw).__name__}")
    raw = copy.deepcopy(raw)
    for item in overrides:
        apply_override(raw, item)
    recipe = _build(Recipe, raw, "")
    recipe.check()
    return recipe


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one ``a.b.c=value`` override in place; list items by index (``loss.0.weight``)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected key.path=value")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"--set {key}: value {text!r} is not valid YAML ({_yaml_problem(exc)})"
        ) from exc
    parts = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            node = node[_index(node, part, where)]
        elif isinstance(node, dict):
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        else:
            raise ConfigError(f"--set {key}: {where} is not a section")
    last = parts[-1]
    if isinstance(node, list):
        node[_index(node, last, key)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"--set {key}: {'.'.join(parts[:-1])} is not a section")


def _index(node: list[Any], part: str, where: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {where}: no list item {part!r} (list has {len(node)} items)")
    return int(part)


_SISR_DATA = re.compile(r"\$(\{SISR_DATA\}|SISR_DATA\b)")


def expand_path(value: str, key: str) -> Path:
    """Expand ``~`` and ``${VAR}``; an unset variable is an error naming the recipe key.
    An unset ``SISR_DATA`` is looked for where ``sisr eval`` looks (``../shared/data``
    beside the working folder or the checkout), so both commands find the same data."""
    if not os.environ.get("SISR_DATA") and _SISR_DATA.search(value):
        from sisr.data.benchmarks import data_root_candidates

        found = [root for root in data_root_candidates() if root.is_dir()]
        if not found:
            where = ", ".join(str(r) for r in data_root_candidates())
            raise ConfigError(
                f"{key}: {value!r} uses SISR_DATA, which is not set, and no data folder was "
                f"found in {where}; set SISR_DATA to the folder holding train/ and benchmarks/"
            )
        value = _SISR_DATA.sub(lambda _: str(found[0]), value)
    expanded = os.path.expanduser(os.path.expandvars(value))
    missing = re.findall(r"\$\{?(\w+)\}?", expanded)
    if missing:
        raise ConfigError(f"{key}: environment variable {missing[0]} used in {value!r} is not set")
    return Path(expanded)


# --- typed construction -----------------------------------------------------------------


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _describe(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r}"


def _build(cls: type, raw: Any, path: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, checking keys and types recursively."""
    where = path or "recipe"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {_describe(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        known = ", ".join(fields)
        raise ConfigError(f"{_join(path, str(unknown[0]))}: unknown key (known here: {known})")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = _join(path, name)
        if name not in raw:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required:
                raise ConfigError(f"{key}: missing required key")
            continue
        kwargs[name] = _convert(hints[name], raw[name], key)
    return cls(**kwargs)


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if tp is LossTerm and isinstance(value, str):
            value = {"name": value}
        return _build(tp, value, key)
    if origin is Literal:
        for choice in args:
            # bool is an int subclass: compare types too so that `1` is not `True`
            if value == choice and type(value) is type(choice):
                return value
        choices = ", ".join(
            "true" if c is True else "false" if c is False else str(c) for c in args
        )
        raise ConfigError(f"{key}: must be one of {choices}, got {_describe(value)}")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _convert(option, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{key}: invalid value {_describe(value)}"
        )
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {_describe(value)}")
        return [_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(
                f"{key}: expected a list of {len(args)} items, got {_describe(value)}"
            )
        return tuple(
            _convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {_describe(value)}")
        return {str(k): _convert(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            # 2e5 is a float in YAML; accept it when it is a whole number
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}: expected an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            # YAML 1.1 reads `1e-4` (no dot) as a string; accept numeric strings
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
            raise ConfigError(f"{key}: expected a number, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {_describe(value)}")
        return value
    raise TypeError(f"unsupported recipe field type {tp!r} at {key}")  # pragma: no cover


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


__all__ = [
    "MAX_BUDGET_SECONDS",
    "CheckpointConfig",
    "DataConfig",
    "EmaConfig",
    "GanConfig",
    "GradClipConfig",
    "GuardConfig",
    "LogConfig",
    "LossTerm",
    "ModelConfig",
    "OptimConfig",
    "Recipe",
    "ScheduleConfig",
    "ValConfig",
    "apply_override",
    "expand_path",
    "load_recipe",
    "recipe_from_dict",
]
