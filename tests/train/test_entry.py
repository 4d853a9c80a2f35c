"""The training entry point (sisr.train.run): one-way imports, bad --init-from fails early."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

import sisr.train.loop as loop
from sisr.errors import WeightsError
from sisr.train.config import load_recipe
from sisr.train.run import train


def test_loop_does_not_import_gan() -> None:
    """gan imports loop (GANTrainer extends Trainer); loop must not import gan back."""
    tree = ast.parse(Path(loop.__file__).read_text())
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    } | {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert not any(name.startswith("sisr.train.gan") for name in imported)
    assert not hasattr(loop, "train")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all"])
def test_bad_init_from_creates_no_run_folder(
    make_recipe: Callable[..., Path], tmp_path: Path, content: bytes
) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(content)
    out = tmp_path / "run"
    with pytest.raises(WeightsError, match=r"bad\.safetensors"):
        train(load_recipe(make_recipe(iterations=1)), out, init_from=bad)
    assert not out.exists()
    with pytest.raises(WeightsError, match="no such"):
        train(load_recipe(make_recipe(iterations=1)), out, init_from=tmp_path / "missing.pt")
    assert not out.exists()


def test_train_line_has_four_significant_digits() -> None:
    from sisr.train.logging import format_train_line

    line = format_train_line(7, 10, 0.012345678901234, {"l1": 0.01, "vgg": 0.1234567}, 1e-4, 3.0)
    assert line == "iter 7/10 loss 0.01235 l1 0.01 vgg 0.1235 lr 0.0001 it/s 3.00"
