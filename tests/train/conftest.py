"""Tiny synthetic training data and recipes for the training-engine tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread, and the shared CPU punishes spinning pools."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _write_images(folder: Path, n: int, size: tuple[int, int], seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        # smooth random images (upsampled noise) so that SR is learnable
        small = (rng.random((size[1] // 4, size[0] // 4, 3)) * 255).astype(np.uint8)
        Image.fromarray(small).resize(size, Image.BICUBIC).save(folder / f"img{i}.png")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny_data")
    _write_images(root / "train", 4, (48, 40), seed=0)
    _write_images(root / "val", 2, (32, 24), seed=1)
    return root


@pytest.fixture
def make_recipe(tiny_data: Path, tmp_path: Path) -> Callable[..., Path]:
    """Write a tiny ESPCN x2 recipe (overrides merged per section) and return its path."""

    def make(**sections: Any) -> Path:
        raw: dict[str, Any] = {
            "model": {"preset": "espcn", "scale": 2},
            "data": {
                "train": [str(tiny_data / "train")],
                "cache_dir": str(tmp_path / "cache"),
                "lr_patch": 8,
                "batch_size": 4,
            },
            "iterations": 12,
            "optim": {"name": "adam", "lr": 1e-3},
            "loss": [{"name": "l1"}],
            "val": {"datasets": [str(tiny_data / "val")], "interval": 6},
            "checkpoint": {"interval": 4},
            "log": {"interval": 1, "progress": False, "tensorboard": False},
            "device": "cpu",
        }
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(raw.get(key), dict):
                raw[key] = raw[key] | value
            else:
                raw[key] = value
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    return make
