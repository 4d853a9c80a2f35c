"""Property-based fuzzing of the weights loader: random bytes, truncations and bit flips of
a valid sisr weights file give a loaded model or a SisrError naming the file -- never a
traceback, never seconds of work, never an allocation the file cannot justify."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sisr.archs import PRESETS  # noqa: E402
from sisr.errors import SisrError  # noqa: E402
from sisr.hub.weights import load_weights_file, save_weights  # noqa: E402


def _seed() -> bytes:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.safetensors"
        save_weights(PRESETS["espcn"](scale=2, features=[4, 4]), path, extra={"note": "fuzz"})
        return path.read_bytes()


SEED = _seed()


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "truncate", "flip-header", "flip-any"]))
    if kind == "random":
        return draw(st.binary(min_size=0, max_size=256))
    data = bytearray(SEED)
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    header_end = 8 + int.from_bytes(SEED[:8], "little")
    hi = header_end - 1 if kind == "flip-header" else len(data) - 1
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, hi))
        data[i] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


@settings(
    max_examples=300,
    deadline=5000,  # ms per example (wall clock, so loose on a busy CI box): a hang fails
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=damaged())
def test_loader_gives_a_model_or_a_sisr_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.safetensors"
        path.write_bytes(data)
        try:
            model = load_weights_file(path)
        except SisrError as e:
            assert str(path) in str(e)
            return
        params = list(model.parameters())
        assert sum(p.numel() for p in params) * 4 <= 2 * len(data)
        assert all(bool(torch.isfinite(p).all()) for p in params)


# --- hostile torch.save files: sizes the file controls -----------------------------------

import argparse  # noqa: E402
import math  # noqa: E402
import zipfile  # noqa: E402
from unittest import mock  # noqa: E402

from sisr.hub import torchfile  # noqa: E402
from sisr.hub.read import read_foreign_state_dict  # noqa: E402
from tests.hub.craft import (  # noqa: E402
    Archive,
    StorageRef,
    TensorRef,
    nested_pickle,
    shared_lists,
    write_legacy,
)

# Hypothesis favours small numbers; attacks need big ones, so they are drawn by magnitude.
_SIZES = st.sampled_from([0, 1, 2, 3, 1 << 10, 1 << 16, 1 << 20, 1 << 24]) | st.integers(0, 8)


@st.composite
def hostile_torch_file(draw: st.DrawFn) -> tuple[str, object]:
    """(format, what to write): tensor geometry vs storage, compression, sharing, nesting.

    What to write is (object to pickle, {storage key: bytes stored}, compressed) or raw
    pickle bytes.
    """
    kind = draw(st.sampled_from(["geometry", "compressed", "shared", "nested", "repoint"]))
    fmt = draw(st.sampled_from(["zip", "legacy"]))
    if kind == "geometry":
        stored = draw(st.sampled_from([0, 1, 4, 64]))
        declared = draw(st.sampled_from([stored, stored, stored + 1, 1 << 30, 0]))
        ndim = draw(st.integers(1, 4))
        size = tuple(draw(_SIZES) for _ in range(ndim))
        mode = draw(st.sampled_from(["inflate", "past", "any"]))
        if mode == "inflate":  # zero strides: a few stored bytes for a huge tensor
            stride = (0,) * ndim
        elif mode == "past":  # a plain view longer than its storage
            stride = tuple(math.prod(size[i + 1 :]) for i in range(ndim))
        else:
            stride = tuple(draw(st.sampled_from([0, 1, 7, 1 << 10])) for _ in range(ndim))
        ref = StorageRef("0", declared)
        obj = {"w": TensorRef(ref, size, stride, draw(st.sampled_from([0, 1, 70])))}
        return fmt, (obj, {"0": 4 * stored}, False)
    if kind == "repoint":  # BUILD on a tensor: Tensor.__setstate__ -> set_(any view)
        one = StorageRef("0", 1)
        size = tuple(draw(_SIZES) for _ in range(draw(st.integers(1, 3))))
        state = (TensorRef(one, (1,), (1,)), 0, size, (0,) * len(size))
        return fmt, ({"w": TensorRef(one, (1,), (1,), state=state)}, {"0": 4}, False)
    if kind == "compressed":
        n = draw(st.sampled_from([0, 100, 1 << 18, 1 << 20]))  # float32 zeros; 1 MiB limit
        obj = {"w": TensorRef(StorageRef("0", n), (n,), (1,))}
        return "zip", (obj, {"0": 4 * n}, True)
    if kind == "shared":
        fanout = draw(st.sampled_from([1, 2, 8, 10]))
        depth = draw(st.sampled_from([0, 1, 5, 12, 20, 25]))
        leaf = TensorRef(StorageRef("0", 1), (1,), (1,))
        content: dict[str, object] = {"hist": shared_lists(fanout, depth, leaf)}
        if draw(st.booleans()):
            content["args"] = argparse.Namespace(lr=0.1)  # a class: the inert-record path
        return fmt, (content, {"0": 4}, False)
    return "raw", nested_pickle(draw(st.sampled_from([1, 50, 99, 101, 400, 5000])))


def _write(path: Path, fmt: str, spec: object) -> None:
    if fmt == "raw":
        assert isinstance(spec, bytes)
        Archive(pickle_bytes=spec).write(path)
        return
    obj, sizes, compress = spec  # type: ignore[misc]
    data = {key: bytes(n) for key, n in sizes.items()}  # zeros: compress like a bomb
    if fmt == "zip":
        Archive(obj=obj, data=data, compress=compress).write(path)
    else:
        write_legacy(path, obj, data)


def _tensors(obj: object) -> list[torch.Tensor]:
    """Every distinct tensor inside dicts / lists (iterative: the data may be deep)."""
    found: dict[int, torch.Tensor] = {}
    seen: set[int] = set()
    todo = [obj]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, torch.Tensor):
            found[id(item)] = item
        elif isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, list | tuple):
            todo.extend(item)
    return list(found.values())


@settings(
    max_examples=200,
    deadline=5000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(case=hostile_torch_file())
def test_torch_reader_checks_every_size_the_file_controls(case: tuple[str, object]) -> None:
    fmt, spec = case
    with (
        tempfile.TemporaryDirectory() as tmp,
        mock.patch.object(torchfile, "MAX_COMPRESSED_BYTES", 1 << 20),
    ):
        path = Path(tmp) / "w.pth"
        _write(path, fmt, spec)
        try:
            content = read_foreign_state_dict(path)
        except SisrError as e:
            assert str(e).startswith(str(path)) and "\n" not in str(e)
            return
        # Whatever was accepted fits the stated budgets: compressed data expanded, and
        # the tensors once made contiguous.
        if fmt == "zip":
            with zipfile.ZipFile(path) as z:
                packed = [i.file_size for i in z.infolist() if i.compress_type]
            assert sum(packed) <= torchfile.MAX_COMPRESSED_BYTES
        size = path.stat().st_size + torchfile.MAX_COMPRESSED_BYTES
        budget = torchfile.MATERIALISE_FACTOR * size + torchfile.MATERIALISE_SLACK
        assert sum(t.numel() * t.element_size() for t in _tensors(content)) <= budget
