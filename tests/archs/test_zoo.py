"""Generic contract tests for every preset and discriminator in the zoo (spandrel-style).

Parametrised over ``PRESETS`` x each supported scale (networks over 5M parameters at one
scale and one input size, to keep the file fast on CPU). For each: build, forward on odd
and even sizes (rounded up to ``info().size_multiple``) with the exact ``s x`` output
shape, save -> load round trip with bitwise-equal outputs, a wrong-shaped tensor rejected
with a WeightsError naming it, sane ``info()``/``hparams``, and, for the cheaper
networks, that ``info().receptive_radius`` really bounds how far a pixel's influence
reaches (the guarantee tiled inference relies on).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from sisr.archs import ARCHS, DISCRIMINATORS, PRESETS, build
from sisr.archs.base import ArchInfo, Discriminator, SRModel
from sisr.archs.complexity import count_params
from sisr.errors import WeightsError
from sisr.hub import load_model, save_weights
from sisr.hub.strict import load_state_dict_strict

BIG = 5_000_000  # parameters: above this, one scale and one tiny input only
SIZES = ((7, 9), (8, 8), (13, 10))
PROBE_SCALES = (4, 2, 3, 8, 1)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny inputs: one intra-op thread is faster, and OpenMP barriers stall badly when
    the CPU is shared (measured 40x slower forwards with 2 threads under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
    _model.cache_clear()  # free the big networks for the rest of the session


@functools.cache
def _shape_model(name: str) -> SRModel:
    """A preset built on the meta device (no memory), to read scales and size."""
    for scale in PROBE_SCALES:
        try:
            with torch.device("meta"):
                return build(name, scale)
        except Exception:  # an unsupported probe scale
            continue
    raise AssertionError(f"preset {name!r} builds at none of the scales {PROBE_SCALES}")


def _cases() -> list[tuple[str, int]]:
    cases = []
    for name in sorted(PRESETS):
        probe = _shape_model(name)
        scales = tuple(probe.info().scales)
        if count_params(probe) > BIG:
            scales = (4,) if 4 in scales else scales[:1]
        cases += [(name, s) for s in scales]
    return cases


CASES = _cases()


@functools.cache
def _model(name: str, scale: int) -> SRModel:
    torch.manual_seed(0)
    return build(name, scale).eval()


def _round_up(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    return tuple(-(-v // multiple) * multiple for v in size)  # type: ignore[return-value]


def _input(h: int, w: int, n: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _is_big(name: str) -> bool:
    return count_params(_shape_model(name)) > BIG


@pytest.mark.parametrize(("name", "scale"), CASES, ids=[f"{n}-x{s}" for n, s in CASES])
def test_forward_shapes(name: str, scale: int) -> None:
    model = _model(name, scale)
    mult = model.info().size_multiple
    sizes = SIZES[:1] if _is_big(name) else SIZES
    for i, size in enumerate(sizes):
        h, w = _round_up(size, mult)
        n = 2 if i == 0 and not _is_big(name) else 1
        with torch.no_grad():
            y = model(_input(h, w, n))
        assert y.shape == (n, 3, scale * h, scale * w), (name, scale, (h, w))
        assert y.dtype == torch.float32
        assert torch.isfinite(y).all()


@pytest.mark.parametrize(("name", "scale"), CASES, ids=[f"{n}-x{s}" for n, s in CASES])
def test_save_load_round_trip(name: str, scale: int, tmp_path: Path) -> None:
    model = _model(name, scale)
    path = tmp_path / f"{name}-x{scale}.safetensors"
    save_weights(model, path)
    loaded = load_model(path)
    assert type(loaded) is type(model)
    assert loaded.hparams == json.loads(json.dumps(model.hparams))
    assert not loaded.training
    # Same size as a forward-shape case: conv kernels for it are already prepared.
    h, w = _round_up(SIZES[1], model.info().size_multiple)
    x = _input(h, w, seed=3)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize(("name", "scale"), CASES, ids=[f"{n}-x{s}" for n, s in CASES])
def test_wrong_shape_rejected(name: str, scale: int) -> None:
    model = _model(name, scale)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    target = next((k for k, v in sd.items() if v.is_floating_point() and v.dim() >= 1), None)
    with torch.device("meta"):  # the check runs before any data is copied
        fresh = build(name, scale)
    if target is None:
        # Parameter-free (bicubic): the only way to be wrong is an extra tensor.
        sd["stray.weight"] = torch.zeros(2, 2)
        expected = "unexpected key: stray.weight"
    else:
        bad = list(sd[target].shape)
        bad[0] += 1
        sd[target] = torch.zeros(bad)
        expected = f"shape mismatch: {target} (file {tuple(bad)}"
    with pytest.raises(WeightsError) as info:
        load_state_dict_strict(fresh, sd, source="probe")
    assert expected in str(info.value)


@pytest.mark.parametrize(("name", "scale"), CASES, ids=[f"{n}-x{s}" for n, s in CASES])
def test_info_and_hparams(name: str, scale: int) -> None:
    model = _model(name, scale)
    info = model.info()
    assert isinstance(info, ArchInfo)
    assert isinstance(model, SRModel)
    assert info.arch_id == model.arch_id
    assert ARCHS[model.arch_id] is type(model), "arch class must be registered under its id"
    assert model.scale == scale and scale in info.scales
    assert all(isinstance(s, int) and s >= 1 for s in info.scales)
    assert isinstance(info.receptive_radius, int) and info.receptive_radius >= 0
    assert isinstance(info.size_multiple, int) and info.size_multiple >= 1
    assert isinstance(info.half_safe, bool)
    assert info.paper
    # hparams: JSON-serialisable, include the scale, and rebuild the same network.
    hparams = json.loads(json.dumps(model.hparams))
    assert hparams["scale"] == scale
    with torch.device("meta"):
        rebuilt = ARCHS[model.arch_id](**hparams)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    assert ours == theirs
    assert json.loads(json.dumps(rebuilt.hparams)) == hparams


def _radius_cases() -> list[tuple[str, int]]:
    """One scale per preset (x4 if offered), where a (2r + 9)^2 input is cheap on CPU.

    The arch modules' own tests check their radii in depth; this is the generic net.
    """
    out = []
    for name in sorted(PRESETS):
        probe = _shape_model(name)
        if probe.info().global_context:
            continue  # no finite radius: tiles are near, not equal (test_global_context.py)
        r = probe.info().receptive_radius
        if count_params(probe) * (2 * r + 9) ** 2 < 4e9:
            out.append((name, probe.scale))
    return out


RADIUS_CASES = _radius_cases()


@pytest.mark.parametrize(
    ("name", "scale"), RADIUS_CASES, ids=[f"{n}-x{s}" for n, s in RADIUS_CASES]
)
def test_receptive_radius_bounds_influence(name: str, scale: int) -> None:
    """Changing LR pixel p changes no output of LR pixels farther than the radius."""
    model = _model(name, scale)
    info = model.info()
    r, mult = info.receptive_radius, info.size_multiple
    n = _round_up((2 * r + 9, 2 * r + 9), max(mult, 1))[0]
    x = _input(n, n, seed=5)
    worst = 0
    # Each phase of the size multiple (pixel-unshuffle nets depend on parity).
    for p in range(n // 2, n // 2 + mult):
        x2 = x.clone()
        x2[..., p, p] += 0.5
        with torch.no_grad():
            diff = (model(x2) - model(x)).abs().amax(dim=(0, 1))  # (sH, sW)
        changed = torch.nonzero(diff > 1e-5)
        assert changed.numel() > 0, "the perturbed pixel changed nothing"
        lr = changed // scale - p  # LR offsets of changed output pixels
        worst = max(worst, int(lr.abs().max()))
    assert worst <= r, f"{name} x{scale}: influence reaches {worst} LR pixels > radius {r}"


def _disc_size(model: Discriminator) -> int:
    for key in ("in_size", "input_size"):
        if key in model.hparams:
            return int(model.hparams[key])
    raise AssertionError(f"{model.arch_id}: hparams name no input size (in_size/input_size)")


@pytest.mark.parametrize("name", sorted(DISCRIMINATORS))
def test_discriminator_forward(name: str) -> None:
    torch.manual_seed(0)
    model = DISCRIMINATORS[name]().eval()
    assert isinstance(model, Discriminator)
    assert model.arch_id
    json.dumps(model.hparams)
    size = _disc_size(model)
    with torch.no_grad():
        y = model(torch.rand(2, 3, size, size))
    assert y.shape == (2, 1)
    assert torch.isfinite(y).all()


def test_registry_consistency() -> None:
    """Every registered arch is reachable from a preset, and every preset builds an SRModel."""
    reached = {_shape_model(name).arch_id for name in PRESETS}
    assert reached == set(ARCHS), f"archs without a preset: {set(ARCHS) - reached}"
    for arch_id, cls in ARCHS.items():
        assert cls.arch_id == arch_id
