"""PatchBatcher / PlainLoaderBatcher: shapes, crops, LR, augmentation, determinism, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sisr.data import (
    DecodedSet,
    PatchBatcher,
    PlainLoaderBatcher,
    dihedral,
    div2k_pairs,
    folder_pairs,
    open_decoded,
)
from sisr.data.pipeline import gather_patches
from sisr.degrade import DEGRADATIONS, imresize_uint8
from sisr.errors import ConfigError


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors: extra threads only add contention on a shared CPU.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _images(seed: int = 0, sizes=((20, 30), (26, 18), (33, 33), (5, 40))) -> DecodedSet:
    rng = np.random.default_rng(seed)
    return DecodedSet.from_arrays(
        [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    )


def _u8(x: torch.Tensor) -> torch.Tensor:
    out = (x * 255).round().to(torch.uint8)
    assert torch.equal(out.float() / 255, x)  # values are exactly k/255
    return out


def _all_dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 symmetries of a square, built from rot90 and one flip (independent of sisr)."""
    return [torch.rot90(y, k, dims=(-2, -1)) for y in (x, x.flip(-1)) for k in range(4)]


def _find(patch: torch.Tensor, ds: DecodedSet) -> set[tuple[int, int, int]]:
    """Every (image, y, x) where ``patch`` (3, P, P) occurs untransformed."""
    p = patch.shape[-1]
    hits = set()
    for i in range(len(ds)):
        img = ds.image(i)
        if img.shape[1] < p or img.shape[2] < p:
            continue
        win = img.unfold(1, p, 1).unfold(2, p, 1)  # (3, ny, nx, p, p)
        eq = (win == patch[:, None, None]).all(-1).all(-1).all(0)
        hits |= {(i, int(y), int(x)) for y, x in eq.nonzero().tolist()}
    return hits


def test_shapes_ranges_and_crops_come_from_the_images() -> None:
    ds = _images()
    b = PatchBatcher(ds, scale=2, lr_patch=6, batch_size=8, augment=False, seed=3)
    assert b.excluded == ["<memory 3>"]  # 5 px high: too small for 12-px HR patches
    for _ in range(3):
        lr, hr = b.next_batch()
        assert lr.shape == (8, 3, 6, 6) and hr.shape == (8, 3, 12, 12)
        assert lr.dtype == hr.dtype == torch.float32
        assert float(hr.min()) >= 0 and float(hr.max()) <= 1
        for patch in _u8(hr):
            assert _find(patch, ds)


def test_lr_is_matlab_bicubic_of_the_hr_patch() -> None:
    ds = _images(1)
    for s, p in ((2, 7), (3, 5), (4, 4)):
        b = PatchBatcher(ds, scale=s, lr_patch=p, batch_size=6, seed=s)
        lr, hr = b.next_batch()
        hr8 = _u8(hr)
        assert torch.equal(_u8(lr), imresize_uint8(hr8, scale=1 / s))
        assert torch.equal(_u8(lr), DEGRADATIONS["bicubic"].apply(hr8, s))


def test_augmentations_are_exactly_the_8_dihedral_transforms() -> None:
    ds = _images(2)
    kw = dict(scale=2, lr_patch=5, batch_size=32, seed=11)
    plain = PatchBatcher(ds, augment=False, **kw)
    aug = PatchBatcher(ds, augment=True, **kw)
    seen = set()
    for _ in range(4):
        _, hr0 = plain.next_batch()  # same seed: same images and positions
        lr1, hr1 = aug.next_batch()
        for a, b, lr in zip(_u8(hr0), _u8(hr1), _u8(lr1), strict=True):
            matches = [k for k, t in enumerate(_all_dihedral(a)) if torch.equal(t, b)]
            assert matches, "augmented patch is not a dihedral transform of the crop"
            seen.add(matches[0])
            assert torch.equal(lr, imresize_uint8(b, size=(5, 5)))  # LR made after augmenting
    assert seen == set(range(8))


def test_gather_matches_reference_dihedral_for_every_code() -> None:
    ds = _images(3)
    dev = ds.to_device("cpu")
    n = 8
    idx = torch.full((n,), 2)
    y, x = torch.full((n,), 4), torch.full((n,), 7)
    d = torch.arange(8)
    out = gather_patches(dev, idx, y, x, d, 9)
    crop = ds.image(2)[:, 4:13, 7:16]
    for k in range(8):
        assert torch.equal(out[k], dihedral(crop, k))
    refs = _all_dihedral(crop)
    codes = {next(j for j, r in enumerate(refs) if torch.equal(r, out[k])) for k in range(8)}
    assert codes == set(range(8))


def test_same_seed_same_batches_and_different_seed_or_rank_differs() -> None:
    ds = _images(4)
    kw = dict(scale=2, lr_patch=6, batch_size=4)
    a = PatchBatcher(ds, seed=5, **kw)
    b = PatchBatcher(ds, seed=5, **kw)
    c = PatchBatcher(ds, seed=6, **kw)
    r1 = PatchBatcher(ds, seed=5, rank=1, world_size=2, **kw)
    for _ in range(3):
        (la, ha), (lb, hb), (_, hc), (_, h1) = (x.next_batch() for x in (a, b, c, r1))
        assert torch.equal(la, lb) and torch.equal(ha, hb)
        assert not torch.equal(ha, hc)
        assert not torch.equal(ha, h1)


def test_state_dict_resume_continues_identically() -> None:
    ds = _images(5)
    kw = dict(scale=3, lr_patch=4, batch_size=5, seed=9, rank=1, world_size=3)
    a = PatchBatcher(ds, **kw)
    for _ in range(3):
        a.next_batch()
    state = json.loads(json.dumps(a.state_dict()))  # checkpoints may store it as JSON
    expected = [a.next_batch() for _ in range(3)]
    b = PatchBatcher(ds, **kw)
    b.next_batch()  # whatever it did before is overwritten
    b.load_state_dict(state)
    for (le, he), (lb, hb) in zip(expected, (b.next_batch() for _ in range(3)), strict=True):
        assert torch.equal(le, lb) and torch.equal(he, hb)
    # Rank 0's state is valid for rank 1: the counter is shared, the streams stay per rank.
    r1 = PatchBatcher(ds, **kw)
    r1.load_state_dict(PatchBatcher(ds, **{**kw, "rank": 0}).state_dict() | {"step": 3})
    assert torch.equal(r1.next_batch()[1], expected[0][1])
    other = PatchBatcher(ds, **{**kw, "lr_patch": 5})
    with pytest.raises(ConfigError, match="lr_patch"):
        other.load_state_dict(state)


def test_sampling_modes_and_too_small_images() -> None:
    ds = _images(6, sizes=((12, 12), (40, 40)))
    area = PatchBatcher(ds, scale=2, lr_patch=6, batch_size=64, augment=False, seed=1)
    uni = PatchBatcher(
        ds, scale=2, lr_patch=6, batch_size=64, augment=False, seed=1, sampling="uniform"
    )
    # 12x12 has exactly 1 crop position, 40x40 has 29*29: area sampling almost never
    # picks the small one, uniform picks it about half the time.
    small = ds.image(0).unsqueeze(0).float() / 255
    n_area = sum(torch.equal(h, small[0]) for h in area.next_batch()[1])
    n_uni = sum(torch.equal(h, small[0]) for h in uni.next_batch()[1])
    assert n_area <= 2 and 16 <= n_uni <= 48
    with pytest.raises(ConfigError, match="large enough"):
        PatchBatcher(ds, scale=4, lr_patch=11, batch_size=2)
    with pytest.raises(ConfigError, match="sampling"):
        PatchBatcher(ds, scale=2, lr_patch=4, batch_size=2, sampling="weird")
    with pytest.raises(ConfigError, match="rank"):
        PatchBatcher(ds, scale=2, lr_patch=4, batch_size=2, rank=2, world_size=2)


def test_registered_degradations_and_aliases() -> None:
    ds = _images(7)
    b = PatchBatcher(ds, scale=2, lr_patch=6, batch_size=4, degradation="BD", seed=2)
    assert b.degradation == "blur_down"
    lr, hr = b.next_batch()
    assert torch.equal(_u8(lr), DEGRADATIONS["blur_down"].apply(_u8(hr), 2))
    n1 = PatchBatcher(ds, scale=2, lr_patch=6, batch_size=4, degradation="DN", seed=2)
    n2 = PatchBatcher(ds, scale=2, lr_patch=6, batch_size=4, degradation="DN", seed=2)
    l1, h1 = n1.next_batch()
    l2, _ = n2.next_batch()
    assert torch.equal(l1, l2)  # seeded noise
    assert not torch.equal(_u8(l1), imresize_uint8(_u8(h1), size=(6, 6)))
    u1 = PatchBatcher(ds, scale=2, lr_patch=6, batch_size=4, degradation="unknown", seed=2)
    u2 = PatchBatcher(ds, scale=2, lr_patch=6, batch_size=4, degradation="unknown", seed=2)
    assert u1.degradation == "blur_aniso_noise"
    (a, _), (b_, _) = u1.next_batch(), u2.next_batch()
    assert a.shape == (4, 3, 6, 6) and torch.equal(a, b_)  # random blur + noise, seeded
    with pytest.raises(ConfigError, match="unknown degradation"):
        PatchBatcher(ds, scale=2, lr_patch=6, batch_size=4, degradation="nope")


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_paired_div2k_layout(tmp_path) -> None:
    s = 2
    rng = np.random.default_rng(8)
    for k, (h, w) in enumerate(((10, 12), (9, 14), (11, 11))):
        lr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        # HR = nearest-neighbour upscale of LR, so an aligned pair satisfies hr == up(lr).
        hr = lr.repeat(s, axis=0).repeat(s, axis=1)
        _png(tmp_path / "DIV2K_train_HR" / f"{k:04d}.png", hr)
        _png(tmp_path / "DIV2K_train_LR_bicubic" / "X2" / f"{k:04d}x2.png", lr)
    hr_list, lr_list = div2k_pairs(tmp_path, s)
    hr_set = open_decoded(hr_list, cache_dir=tmp_path / "cache")
    lr_set = open_decoded(lr_list, cache_dir=tmp_path / "cache")
    b = PatchBatcher(hr_set, lr_images=lr_set, scale=s, lr_patch=5, batch_size=16, seed=4)
    assert b.degradation == "paired"
    for _ in range(3):
        lr, hr = b.next_batch()
        assert lr.shape == (16, 3, 5, 5) and hr.shape == (16, 3, 10, 10)
        up = lr.repeat_interleave(s, dim=-2).repeat_interleave(s, dim=-1)
        assert torch.equal(hr, up)  # aligned, and augmented the same way
        for patch in _u8(lr):
            assert any(_find(t, lr_set) for t in _all_dihedral(patch))
    short = DecodedSet.from_arrays([np.zeros((10, 12, 3), np.uint8)])
    with pytest.raises(ConfigError, match="differ in length"):
        PatchBatcher(hr_set, lr_images=short, scale=2, lr_patch=4, batch_size=2)


def test_paired_sizes_must_match_the_scale() -> None:
    # an x4 LR image filed under X2 is smaller than HR/2: refused, not trained misaligned
    hr = DecodedSet.from_arrays([np.zeros((40, 48, 3), np.uint8)])
    with pytest.raises(ConfigError, match=r"expected LR 24x20"):
        PatchBatcher(
            hr,
            lr_images=DecodedSet.from_arrays([np.zeros((10, 12, 3), np.uint8)]),
            scale=2,
            lr_patch=4,
            batch_size=2,
        )
    odd = DecodedSet.from_arrays([np.zeros((41, 49, 3), np.uint8)])  # modcrop remainder: fine
    lr = DecodedSet.from_arrays([np.zeros((20, 24, 3), np.uint8)])
    assert PatchBatcher(odd, lr_images=lr, scale=2, lr_patch=4, batch_size=2).paired


@pytest.mark.parametrize("workers", [0, 1])
def test_plain_loader_baseline(workers) -> None:
    ds = _images(9)
    kw = dict(scale=2, lr_patch=6, batch_size=4, seed=1, num_workers=workers)
    a = PlainLoaderBatcher(ds, **kw)
    first = [a.next_batch() for _ in range(3)]
    for lr, hr in first:
        assert lr.shape == (4, 3, 6, 6) and hr.shape == (4, 3, 12, 12)
        assert torch.equal(_u8(lr), imresize_uint8(_u8(hr), size=(6, 6)))
        for patch in _u8(hr):
            assert any(_find(t, ds) for t in _all_dihedral(patch))
    b = PlainLoaderBatcher(ds, **kw)
    b.next_batch()
    b.load_state_dict(json.loads(json.dumps(PlainLoaderBatcher(ds, **kw).state_dict())))
    assert b.state_dict()["step"] == 0
    for (le, he), (lb, hb) in zip(first, (b.next_batch() for _ in range(3)), strict=True):
        assert torch.equal(le, lb) and torch.equal(he, hb)
    state = b.state_dict()
    nxt = b.next_batch()
    c = PlainLoaderBatcher(ds, **kw)
    c.load_state_dict(state)
    assert torch.equal(c.next_batch()[1], nxt[1])


def test_real_t91_batch(tmp_path, data_root) -> None:
    files = sorted((data_root / "train" / "T91").glob("*.png"))[:2]
    ds = open_decoded(files, cache_dir=tmp_path)
    b = PatchBatcher(ds, scale=2, lr_patch=24, batch_size=4)
    lr, hr = b.next_batch()
    assert torch.equal(_u8(lr), imresize_uint8(_u8(hr), scale=0.5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_path_matches_cpu_path() -> None:
    ds = _images(10)
    kw = dict(scale=2, lr_patch=6, batch_size=8, seed=3)
    cpu = PatchBatcher(ds, **kw)
    gpu = PatchBatcher(ds, device="cuda", **kw)
    assert gpu.hr_set.flat.is_cuda
    for _ in range(3):
        (lc, hc), (lg, hg) = cpu.next_batch(), gpu.next_batch()
        assert lg.is_cuda and hg.is_cuda
        assert torch.equal(hc, hg.cpu()) and torch.equal(lc, lg.cpu())


def test_your_own_pairs_matched_by_name_and_checked_against_the_scale(tmp_path: Path) -> None:
    """Issue 21, item 4: `data.pairs` folders, matched by name whatever the extension or an
    `x<s>` suffix, in sub-folders too; every mismatch listed before anything is decoded."""
    s = 2
    rng = np.random.default_rng(9)
    for name, (h, w) in {"a": (10, 12), "sub/b": (9, 14), "c": (11, 11)}.items():
        lr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        _png(tmp_path / "hr" / f"{name}.png", lr.repeat(s, axis=0).repeat(s, axis=1))
        lr_name = f"{name}x2.png" if name == "c" else f"{name}.bmp"
        _png(tmp_path / "lr" / lr_name, lr)
    hr_list, lr_list = folder_pairs(tmp_path / "hr", tmp_path / "lr", s)
    assert [p.name for p in hr_list.files] == ["a.png", "c.png", "b.png"]
    assert [p.name for p in lr_list.files] == ["a.bmp", "cx2.png", "b.bmp"]
    hr_set = open_decoded(hr_list, cache_dir=tmp_path / "cache")
    lr_set = open_decoded(lr_list, cache_dir=tmp_path / "cache")
    b = PatchBatcher(hr_set, lr_images=lr_set, scale=s, lr_patch=5, batch_size=8, seed=1)
    lr, hr = b.next_batch()
    assert torch.equal(hr, lr.repeat_interleave(s, dim=-2).repeat_interleave(s, dim=-1))

    (tmp_path / "lr" / "cx2.png").rename(tmp_path / "lr" / "c.png")
    with pytest.raises(
        ConfigError,
        match=r"3 of 3 pairs do not match at x4: a \(HR 24x20, LR 12x10, x4 needs 6x5\)",
    ):
        folder_pairs(tmp_path / "hr", tmp_path / "lr", 4)
    _png(tmp_path / "lr" / "d.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "lr" / "a.bmp").unlink()
    with pytest.raises(ConfigError, match=r"no LR in .* for a; no HR in .* for d"):
        folder_pairs(tmp_path / "hr", tmp_path / "lr", s)
