"""A frozen VGG16/VGG19 feature extractor for perceptual losses (no torchvision needed).

Layer layout and state-dict keys follow torchvision's ``vgg16``/``vgg19`` exactly
(``features.{i}.weight`` / ``.bias``), so torchvision's ImageNet files load as they are
(their ``classifier.*`` keys are ignored). Layers are named like the papers do:
``conv{b}_{k}`` (before the ReLU), ``relu{b}_{k}`` (after it) and ``pool{b}``, with
``b`` the block (1..5) and ``k`` the convolution inside it; SRGAN's ``VGG{b}{k}``
notation (``vgg54``) is accepted as ``relu{b}_{k}``. torchvision indices, VGG16:
``relu1_2`` = 3, ``relu2_2`` = 8, ``relu3_3`` = 15, ``relu4_3`` = 22, ``relu5_3`` = 29;
VGG19: ``relu2_2`` = 8, ``relu3_4`` = 17, ``relu4_4`` = 26, ``conv5_4`` = 34,
``relu5_4`` = 35.

The network is cut right after the deepest requested layer, normalises its [0, 1] RGB
input itself, keeps every parameter frozen and stays in eval mode whatever ``.train()`` is
called with. Two input conventions exist for the same architecture: torchvision's
(``[0, 1]`` minus the ImageNet mean, divided by its std) and the original VGG release's
(``caffe``: RGB on 0..255 minus the per-channel mean ``CAFFE_MEAN``, no std). Weights
trained in one convention give wrong features in the other, so the convention follows the
file: ``.npz`` files (the original weights re-laid as ``conv{b}_{k}.weight`` / ``.bias``
arrays in OIHW layout, e.g. ``../shared/peers/perceptual/vgg16_relu2_2_caffe_oihw.npz``)
are ``caffe``, torchvision files are ``torchvision``. A file may hold only the first
layers (that npz stops at ``conv2_2``): asking for a deeper layer is an error naming
what the file has.

Weights (:func:`resolve_vgg_weights`): an explicit file (``--vgg-weights PATH``:
torchvision ``.pth`` read with ``torch.load(weights_only=True)``, or ``.safetensors``),
else torchvision's file in ``<cache>/weights/`` (downloaded there on first use and
checked against its published SHA-256). When none can be had, a
:class:`~sisr.errors.WeightsError` says which file to get and where to put it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from sisr.errors import ConfigError, DownloadError, WeightsError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# the original VGG release's input: RGB on 0..255 minus this mean, no std
CAFFE_MEAN = (123.68, 116.78, 103.94)
CONVENTIONS = ("auto", "torchvision", "caffe")

# Convolutions per block (torchvision cfg "D" and "E"); channels per block.
_BLOCKS: dict[str, tuple[int, ...]] = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
_CHANNELS = (64, 128, 256, 512, 512)


@dataclass(frozen=True)
class VGGWeightsSource:
    """torchvision's ImageNet weights for one network.

    The file name carries the first 8 hex digits of the file's SHA-256 (torchvision's
    convention, which is what ``torch.hub`` checks); the full hashes and sizes below are
    those of the published files (cross-checked in several independent projects).
    """

    network: str
    url: str
    sha256: str
    size: int

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


VGG_WEIGHTS: dict[str, VGGWeightsSource] = {
    "vgg16": VGGWeightsSource(
        "vgg16",
        "https://download.pytorch.org/models/vgg16-397923af.pth",
        "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
        553_433_881,
    ),
    "vgg19": VGGWeightsSource(
        "vgg19",
        "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44",
        574_673_361,
    ),
}


def _check_network(network: str) -> str:
    net = str(network).lower()
    if net not in _BLOCKS:
        raise ConfigError(f"unknown VGG network {network!r}; known: {', '.join(_BLOCKS)}")
    return net


def layer_names(network: str) -> list[str]:
    """Names of ``features[i]`` for every torchvision index ``i`` of ``network``."""
    names: list[str] = []
    for b, convs in enumerate(_BLOCKS[_check_network(network)], start=1):
        for k in range(1, convs + 1):
            names += [f"conv{b}_{k}", f"relu{b}_{k}"]
        names.append(f"pool{b}")
    return names


_SRGAN_NAME = re.compile(r"^vgg(\d)(\d)$")


def layer_index(network: str, layer: str) -> int:
    """torchvision ``features`` index of ``layer`` (``relu2_2``, ``conv5_4``, ``vgg54``)."""
    names = layer_names(network)
    name = str(layer).lower()
    m = _SRGAN_NAME.match(name)
    if m:
        name = f"relu{m.group(1)}_{m.group(2)}"
    if name not in names:
        raise ConfigError(
            f"{network} has no layer {layer!r}; layers: conv/relu{{block}}_{{n}} and "
            f"pool{{block}}, e.g. {', '.join(n for n in names if n.startswith('relu'))}"
        )
    return names.index(name)


def _make_features(network: str, depth: int) -> nn.Sequential:
    """torchvision's ``features`` stack cut to its first ``depth`` modules."""
    modules: list[nn.Module] = []
    cin = 3
    for convs, cout in zip(_BLOCKS[network], _CHANNELS, strict=True):
        for _ in range(convs):
            # Not in place: a conv output read before its ReLU must not be overwritten.
            modules += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=False)]
            cin = cout
        modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*modules[:depth])


class VGGFeatures(nn.Module):
    """Frozen VGG features at named layers. (N, 3, H, W) RGB in [0, 1] -> {layer: (N, C, h, w)}.

    ``layers``: names as in the module docstring; the output dict keeps their order.
    ``weights``: a file to load now (see :meth:`load_weights`); ``None`` keeps the
    random initialisation (tests, experiments). ``convention``: the input normalisation
    (``auto``: the weights file's, see :func:`file_convention`; torchvision's without one). Max pools halve H and W, so a layer in
    block ``b`` needs inputs of at least ``2**(b-1)`` pixels per side.
    """

    def __init__(
        self,
        layers: Iterable[str] = ("relu2_2",),
        network: str = "vgg19",
        weights: str | Path | None = None,
        convention: str = "auto",
    ) -> None:
        super().__init__()
        self.network = _check_network(network)
        if convention not in CONVENTIONS:
            raise ConfigError(
                f"VGG input convention must be one of {', '.join(CONVENTIONS)}, got {convention!r}"
            )
        self.requested_convention = convention
        self.convention = "torchvision" if convention == "auto" else convention
        names = list(layers)
        if not names:
            raise ConfigError("VGG features: at least one layer is needed")
        self.layers = names
        self._index = {name: layer_index(self.network, name) for name in names}
        self.features = _make_features(self.network, max(self._index.values()) + 1)
        # Not persistent: state dicts stay exactly torchvision's features.* keys.
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        caffe = torch.tensor(CAFFE_MEAN).view(1, 3, 1, 1)
        self.register_buffer("caffe_mean", caffe, persistent=False)
        self.requires_grad_(False)
        super().train(False)
        if weights is not None:
            self.load_weights(weights)

    @property
    def depth(self) -> int:
        """Number of ``features`` modules kept (deepest requested index + 1)."""
        return len(self.features)

    def train(self, mode: bool = True) -> VGGFeatures:
        # A loss network is a fixed function: never switch it to training mode.
        return super().train(False)

    def load_weights(self, path: str | Path) -> None:
        """Load the kept layers from a torchvision-layout file (deeper layers and
        ``classifier.*`` ignored) or an ``.npz`` of the original weights; with
        ``convention="auto"`` the input convention becomes the file's."""
        state, all_keys = read_vgg_state_dict(
            path, self.features.state_dict().keys(), network=self.network
        )
        check_layout(self.network, all_keys, source=str(path))
        check_depth(self.network, all_keys, self.layers, source=str(path))
        self.load_features(state, source=str(path))
        if self.requested_convention == "auto":
            self.convention = file_convention(path)

    def load_features(self, state: Mapping[str, Tensor], *, source: str) -> None:
        """Copy ``features.*`` tensors (torchvision keys) into the kept layers."""
        own = self.features.state_dict()
        problems = []
        for key, ref in own.items():
            full = f"features.{key}"
            if full not in state:
                problems.append(f"missing {full}")
            elif tuple(state[full].shape) != tuple(ref.shape):
                problems.append(
                    f"{full} has shape {tuple(state[full].shape)}, expected {tuple(ref.shape)}"
                )
        if problems:
            raise WeightsError(
                f"{source}: not {self.network.upper()} weights in torchvision layout "
                f"(features.{{i}}.weight/bias): {'; '.join(problems[:6])}"
                + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
            )
        with torch.no_grad():
            for key, ref in own.items():
                ref.copy_(state[f"features.{key}"].to(ref.dtype))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"VGG features need (N, 3, H, W) RGB batches, got {tuple(x.shape)}")
        if self.convention == "caffe":
            h = x * 255.0 - self.caffe_mean.to(x.dtype)
        else:
            h = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        wanted: dict[int, list[str]] = {}
        for name, i in self._index.items():
            wanted.setdefault(i, []).append(name)
        found: dict[str, Tensor] = {}
        for i, module in enumerate(self.features):
            h = module(h)
            for name in wanted.get(i, ()):
                found[name] = h
        return {name: found[name] for name in self.layers}

    def extra_repr(self) -> str:
        return f"network={self.network}, layers={self.layers}, convention={self.convention}"


# --- reading weight files ----------------------------------------------------------


def _features_key(key: str) -> str:
    """Map a file key to torchvision's ``features.{i}.{param}`` (bare ``{i}.{param}`` too)."""
    return f"features.{key}" if re.match(r"^\d+\.(weight|bias)$", key) else key


def _is_safetensors(path: Path) -> bool:
    """safetensors files open with an 8-byte little-endian header length, then ``{``."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _read_safetensors(path: Path, wanted: set[str]) -> tuple[dict[str, Tensor], list[str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            keys = {_features_key(k): k for k in f.keys()}  # noqa: SIM118 - not a dict
            return {k: f.get_tensor(keys[k]) for k in wanted if k in keys}, list(keys)
    except Exception as exc:  # bad header, truncated data...
        raise WeightsError(f"{path}: not a valid safetensors file ({exc})") from exc


def _torch_load(path: Path) -> object:
    """``torch.load(weights_only=True)``; memory-mapped when the format allows (zip files),
    so the big classifier tensors of a torchvision file are never read from disk."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, ValueError) as exc:
        if "mmap" not in str(exc):
            raise
    # Legacy (pre-zip) files, e.g. torchvision's 2017 VGG files, cannot be mapped.
    return torch.load(path, map_location="cpu", weights_only=True)


def check_layout(network: str, keys: Iterable[str], *, source: str) -> None:
    """WeightsError if a file's ``features.{i}`` parameters sit where ``network`` has no
    convolution: the file is another VGG (VGG16 and VGG19 agree up to ``relu3_3``, so a
    truncated load alone would not notice)."""
    names = layer_names(network)
    for key in keys:
        m = re.match(r"^features\.(\d+)\.(weight|bias)$", key)
        if m and not (int(m.group(1)) < len(names) and names[int(m.group(1))][:4] == "conv"):
            where = names[int(m.group(1))] if int(m.group(1)) < len(names) else "nothing"
            raise WeightsError(
                f"{source}: has {key} where {network.upper()} has {where}: these are weights "
                f"of a different network (torchvision {network} layout expected)"
            )


def file_convention(path: str | Path) -> str:
    """The input convention of a weights file: ``caffe`` for ``.npz`` (the original
    release's arrays), ``torchvision`` for everything else."""
    return "caffe" if Path(path).suffix.lower() == ".npz" else "torchvision"


def check_depth(network: str, keys: Iterable[str], layers: Iterable[str], *, source: str) -> None:
    """WeightsError when a requested layer lies beyond the deepest convolution the file
    holds (a partial network, e.g. VGG16 up to ``relu2_2``)."""
    have = [int(m.group(1)) for k in keys if (m := re.match(r"^features\.(\d+)\.weight$", k))]
    if not have:
        return  # load_features names the missing tensors
    names = layer_names(network)
    deepest = max(have)
    # a file ending at conv b_k also gives relu b_k, and the pool when the block ends there
    reach = deepest + 1
    if deepest + 2 < len(names) and names[deepest + 2].startswith("pool"):
        reach = deepest + 2
    too_deep = [n for n in layers if layer_index(network, n) > reach]
    if too_deep:
        raise WeightsError(
            f"{source}: holds {network.upper()} only up to {names[deepest]} "
            f"({names[min(deepest + 1, len(names) - 1)]}); layer {too_deep[0]} needs deeper "
            "weights than the file has"
        )


def _read_npz(path: Path, network: str) -> dict[str, Tensor]:
    """``conv{b}_{k}.weight`` / ``.bias`` arrays of an ``.npz`` -> torchvision keys.

    Read with ``allow_pickle=False`` (arrays only, no code); shapes are checked later.
    """
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # zip errors, pickled object arrays refused, bad headers
        raise WeightsError(f"{path}: not a readable .npz of VGG arrays ({exc})") from exc
    names = layer_names(network)
    out: dict[str, Tensor] = {}
    for key, value in arrays.items():
        m = re.match(r"^(conv\d_\d)\.(weight|bias)$", key)
        if m is None or m.group(1) not in names:
            raise WeightsError(
                f"{path}: unexpected array {key!r} (expected conv{{b}}_{{k}}.weight / .bias "
                f"of {network.upper()})"
            )
        if value.dtype.kind != "f":
            raise WeightsError(f"{path}: array {key!r} is {value.dtype}, not floating point")
        out[f"features.{names.index(m.group(1))}.{m.group(2)}"] = torch.from_numpy(
            np.ascontiguousarray(value, dtype=np.float32)
        )
    return out


def read_vgg_state_dict(
    path: str | Path, keys: Iterable[str], *, network: str = "vgg16"
) -> tuple[dict[str, Tensor], list[str]]:
    """The ``features.*`` tensors of a VGG weights file (``.pth``, ``.safetensors`` or
    ``.npz`` of the original arrays, whose layer names map through ``network``).

    ``keys``: parameter names inside ``features`` (``"0.weight"``...); only those are
    returned (keyed ``features.0.weight``...), so the caller checks completeness; with
    them, every key of the file (normalised to torchvision's names) for layout checks.
    """
    from sisr.hub.unwrap import unwrap_state_dict

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such VGG weights file")
    wanted = {f"features.{k}" for k in keys}
    if path.suffix.lower() == ".npz":
        state = _read_npz(path, _check_network(network))
        return {k: v for k, v in state.items() if k in wanted}, list(state)
    if path.suffix == ".safetensors" or _is_safetensors(path):
        return _read_safetensors(path, wanted)
    try:
        raw = _torch_load(path)
    except Exception as exc:  # sisr's diagnosis, never torch's text (it advises weights_only=False)
        from sisr.hub.torchfile import load_error

        raise load_error(path, exc) from None
    state = unwrap_state_dict(raw, source=str(path))
    state = {_features_key(k): v for k, v in state.items()}
    return {k: v for k, v in state.items() if k in wanted}, list(state)


# --- finding the ImageNet weights ----------------------------------------------------


def default_weights_path(network: str) -> Path:
    """Where torchvision's file for ``network`` is looked for: ``<cache>/weights/<name>``."""
    from sisr.hub.download import cache_dir

    return cache_dir() / "weights" / VGG_WEIGHTS[_check_network(network)].filename


def missing_weights_message(network: str, purpose: str, reason: str = "") -> str:
    """The start-up error telling the user exactly which file to provide and where."""
    src = VGG_WEIGHTS[_check_network(network)]
    msg = (
        f"{src.network.upper()} ImageNet weights needed for {purpose}: download {src.url} "
        f"and pass --vgg-weights PATH or place it at {default_weights_path(network)}"
    )
    return f"{msg} ({reason})" if reason else msg


def resolve_vgg_weights(
    network: str,
    path: str | Path | None = None,
    *,
    download: bool = True,
    progress: bool = True,
    purpose: str = "a perceptual loss",
) -> Path:
    """The local file holding ``network``'s ImageNet weights.

    ``path`` (``--vgg-weights``) wins and must exist; it is not hashed (it may be a
    conversion, e.g. to safetensors): its layout and shapes are checked on load. Otherwise torchvision's file is
    taken from ``<cache>/weights/`` (a file found there is checked against the published
    SHA-256 once; a verified-hash sidecar makes later start-ups instant), downloading it
    there when absent and ``download`` is true. Raises :class:`WeightsError` with
    :func:`missing_weights_message` when no verified file can be had.
    """
    from sisr.hub.download import fetch, offline

    net = _check_network(network)
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise WeightsError(
                f"{p}: no such VGG weights file (--vgg-weights); "
                + missing_weights_message(net, purpose)
            )
        return p
    src = VGG_WEIGHTS[net]
    target = default_weights_path(net)
    existed = target.is_file()
    if not existed and not download:
        raise WeightsError(missing_weights_message(net, purpose, "downloads disabled"))
    if not existed and offline():
        raise WeightsError(missing_weights_message(net, purpose, "offline: SISR_OFFLINE is set"))
    try:
        return fetch(
            src.url, src.sha256, cache_dir=target.parent, filename=target.name, progress=progress
        )
    except DownloadError as exc:
        reason = f"automatic download failed: {exc}"
        if existed:
            # fetch() drops a cached file whose hash does not match before re-downloading.
            reason = (
                f"the file found there did not match the published SHA-256 {src.sha256} "
                f"and was removed; {reason}"
            )
        raise WeightsError(missing_weights_message(net, purpose, reason)) from exc


__all__ = [
    "CAFFE_MEAN",
    "CONVENTIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VGG_WEIGHTS",
    "VGGFeatures",
    "VGGWeightsSource",
    "check_depth",
    "check_layout",
    "default_weights_path",
    "file_convention",
    "layer_index",
    "layer_names",
    "missing_weights_message",
    "read_vgg_state_dict",
    "resolve_vgg_weights",
]
