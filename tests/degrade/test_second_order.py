"""The second-order degradation of real photos: shapes, seeds, per-image draws, and that it
degrades (blur, noise, JPEG) rather than only resizing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sisr.degrade import get_degradation, imresize_uint8
from sisr.degrade.second_order import MIN_SIDE, second_order


def _photo(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth gradients with a few sharp edges: (n, 3, size, size) uint8."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    out = []
    for _ in range(n):
        f = torch.rand(3, generator=g) * 0.2 + 0.05
        base = torch.stack([torch.sin(x * f[c] + y * f[(c + 1) % 3]) for c in range(3)])
        edges = ((x // 12 + y // 12) % 2).float()[None] * 60
        out.append((base * 80 + 100 + edges).clamp(0, 255).to(torch.uint8))
    return torch.stack(out)


@pytest.mark.parametrize(("scale", "size"), [(2, 96), (3, 96), (4, 128), (4, 130)])
def test_shapes_and_dtype(scale: int, size: int) -> None:
    hr = _photo(3, size)
    lr = second_order(hr, scale, torch.Generator().manual_seed(0))
    assert lr.dtype == torch.uint8
    assert lr.shape == (3, 3, -(-size // scale), -(-size // scale))
    one = second_order(hr[0], scale, torch.Generator().manual_seed(0))
    assert one.shape == lr.shape[1:]


def test_a_seed_gives_the_same_lr_and_images_draw_their_own() -> None:
    hr = _photo(4, 96)
    a = second_order(hr, 2, torch.Generator().manual_seed(5))
    b = second_order(hr, 2, torch.Generator().manual_seed(5))
    c = second_order(hr, 2, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    same = _photo(1, 96).expand(4, -1, -1, -1).contiguous()
    d = second_order(same, 2, torch.Generator().manual_seed(5))
    assert len({bytes(d[i].numpy()) for i in range(4)}) == 4  # one draw per image


def test_it_degrades_more_than_bicubic_does() -> None:
    """Against the clean bicubic LR of the same patches, the LR differs by more than
    rounding, on average over many draws, and it is never further than a mangled photo."""
    hr = _photo(24, 96, seed=1)
    clean = imresize_uint8(hr, size=(48, 48)).float()
    lr = second_order(hr, 2, torch.Generator().manual_seed(0)).float()
    per_image = (lr - clean).abs().mean(dim=(1, 2, 3))
    assert float(per_image.mean()) > 3.0
    assert float(per_image.max()) < 80.0
    # Blur dominates: the high frequencies of the LR are weaker than the clean LR's.
    lap = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]])[None, None].repeat(3, 1, 1, 1)

    def detail(x: torch.Tensor) -> float:
        return float(torch.nn.functional.conv2d(x, lap, groups=3).abs().mean())

    assert detail(lr) < detail(clean)


def test_refuses_patches_too_small_for_the_chain() -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_SIDE}x{MIN_SIDE}"):
        second_order(_photo(1, MIN_SIDE - 1), 2)


def test_registered_for_training_by_name_and_alias() -> None:
    deg = get_degradation("REAL")
    assert deg.name == "second_order" and deg.random
    hr = _photo(2, 64)
    lr = deg.apply(hr, 2, torch.Generator().manual_seed(3))
    assert np.array_equal(lr.numpy(), second_order(hr, 2, torch.Generator().manual_seed(3)).numpy())


def test_mild_ranges_degrade_less_than_the_papers() -> None:
    hr = _photo(24, 96, seed=2)
    clean = imresize_uint8(hr, size=(48, 48)).float()
    gen = torch.Generator().manual_seed(0)
    paper = (second_order(hr, 2, gen).float() - clean).abs().mean()
    mild = get_degradation("second_order_mild").apply(hr, 2, torch.Generator().manual_seed(0))
    assert mild.shape == (24, 3, 48, 48)
    assert float((mild.float() - clean).abs().mean()) < float(paper)


def test_clean_share_gets_the_plain_bicubic_lr() -> None:
    hr = _photo(40, 96, seed=3)
    clean = imresize_uint8(hr, size=(48, 48))
    all_clean = second_order(hr, 2, torch.Generator().manual_seed(0), clean_prob=1.0)
    assert torch.equal(all_clean, clean)
    mild = get_degradation("second_order_mild").apply(hr, 2, torch.Generator().manual_seed(0))
    same = sum(torch.equal(mild[i], clean[i]) for i in range(40))
    assert 3 <= same <= 20  # a quarter, give or take the draw
