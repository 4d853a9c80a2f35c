"""Decoded image cache: built once, reused without decoding, invalidated, built atomically."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sisr.data.cache as cache_mod
from sisr.data import DecodedSet, div2k_pairs, hr_folders, open_decoded
from sisr.errors import ConfigError, ImageError


def _write_png(path: Path, h: int, w: int, seed: int) -> np.ndarray:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    root = tmp_path / "hr"
    arrs = [
        _write_png(root / "a.png", 12, 17, 0),
        _write_png(root / "sub" / "b.png", 9, 8, 1),
        _write_png(root / "c.png", 20, 5, 2),
    ]
    (root / "notes.txt").write_text("not an image")
    return root, arrs


@pytest.fixture
def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []
    real = cache_mod._decode

    def counting(path: Path) -> np.ndarray:
        calls.append(Path(path))
        return real(path)

    monkeypatch.setattr(cache_mod, "_decode", counting)
    return calls


def _cache_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != ".lock") if folder.exists() else []


def test_build_then_reuse_without_decoding(tmp_path, folder, count_decodes) -> None:
    root, arrs = folder
    src = hr_folders(root)
    assert [p.name for p in src.files] == ["a.png", "c.png", "b.png"]  # sorted by path
    ds = open_decoded(src, cache_dir=tmp_path / "cache")
    assert len(count_decodes) == 3
    assert ds.folder == tmp_path / "cache" / "datasets" / src.digest
    expected = [arrs[0], arrs[2], arrs[1]]
    assert ds.nbytes == sum(a.size for a in expected)
    for i, a in enumerate(expected):
        img = ds.image(i)
        assert img.dtype == torch.uint8 and tuple(img.shape) == (3, *a.shape[:2])
        np.testing.assert_array_equal(img.permute(1, 2, 0).numpy(), a)

    count_decodes.clear()
    again = open_decoded(src, cache_dir=tmp_path / "cache")
    assert count_decodes == []  # no PNG decoded on reopen
    for i in range(3):
        assert torch.equal(again.image(i), ds.image(i))
    index = json.loads((ds.folder / "index.json").read_text())
    assert [e["path"] for e in index["entries"]] == [str(p) for p in src.files]


def test_images_are_zero_copy_views_of_the_mapping(tmp_path, folder) -> None:
    ds = open_decoded(hr_folders(folder[0]), cache_dir=tmp_path)
    flat = ds.flat()
    assert ds.image(1).data_ptr() == flat.data_ptr() + ds.offsets[1]
    dev = ds.to_device("cpu")
    assert dev.flat.data_ptr() == flat.data_ptr()  # CPU DeviceSet shares the mapping too
    assert dev.offsets.tolist() == ds.offsets
    assert dev.heights.tolist() == [s[1] for s in ds.shapes]
    assert dev.widths.tolist() == [s[2] for s in ds.shapes]
    for i in range(len(ds)):
        assert torch.equal(dev.image(i), ds.image(i))
    clone = pickle.loads(pickle.dumps(ds))  # re-maps the file (DataLoader spawn workers)
    assert torch.equal(clone.image(2), ds.image(2))


@pytest.mark.parametrize("change", ["mtime", "size", "added", "removed"])
def test_invalidated_when_sources_change(tmp_path, folder, count_decodes, change) -> None:
    root, _ = folder
    cache_dir = tmp_path / "cache"
    first = open_decoded(hr_folders(root), cache_dir=cache_dir)
    old_data = {p.name for p in first.folder.glob("images-*.u8")}
    count_decodes.clear()
    if change == "mtime":
        st = (root / "a.png").stat()
        os.utime(root / "a.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    elif change == "size":
        new = _write_png(root / "a.png", 13, 17, 5)
    elif change == "added":
        new = _write_png(root / "sub" / "d.png", 6, 6, 6)
    else:
        (root / "c.png").unlink()
    src = hr_folders(root)
    ds = open_decoded(src, cache_dir=cache_dir)
    assert len(count_decodes) == len(src.files)  # full rebuild
    assert ds.folder == first.folder  # same source key: rebuilt in place
    assert len(ds) == {"added": 4, "removed": 2}.get(change, 3)
    if change in ("size", "added"):
        i = [p.name for p in src.files].index("a.png" if change == "size" else "d.png")
        np.testing.assert_array_equal(ds.image(i).permute(1, 2, 0).numpy(), new)
    # The superseded data file is gone; exactly one remains.
    data = {p.name for p in ds.folder.glob("images-*.u8")}
    assert len(data) == 1 and data != old_data
    count_decodes.clear()
    open_decoded(src, cache_dir=cache_dir)
    assert count_decodes == []


def test_interrupted_build_leaves_no_cache(tmp_path, folder, monkeypatch) -> None:
    root, _ = folder
    real = cache_mod._decode
    seen: list[Path] = []

    def dying(path: Path) -> np.ndarray:
        seen.append(path)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(cache_mod, "_decode", dying)
    target = tmp_path / "run" / "data_cache"
    with pytest.raises(KeyboardInterrupt):
        open_decoded(hr_folders(root), folder=target)
    assert _cache_files(target) == []  # no index, no data file, no temp file
    monkeypatch.setattr(cache_mod, "_decode", real)
    ds = open_decoded(hr_folders(root), folder=target)
    assert len(ds) == 3
    assert [n for n in _cache_files(target) if not n.startswith("images-")] == ["index.json"]


def test_bad_image_fails_early_naming_the_file(tmp_path, folder) -> None:
    root, _ = folder
    bad = root / "sub" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    target = tmp_path / "c"
    with pytest.raises(ImageError) as info:
        open_decoded(hr_folders(root), folder=target)
    assert str(bad) in str(info.value)
    assert _cache_files(target) == []


def test_plain_file_list_and_validation(tmp_path, folder) -> None:
    root, arrs = folder
    ds = open_decoded([root / "c.png", root / "a.png"], cache_dir=tmp_path)
    np.testing.assert_array_equal(ds.image(0).permute(1, 2, 0).numpy(), arrs[2])
    with pytest.raises(ConfigError):
        open_decoded([], cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="not a folder"):
        hr_folders(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no image files"):
        hr_folders(empty)


def test_from_arrays_in_memory() -> None:
    a = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    ds = DecodedSet.from_arrays([a, torch.zeros(3, 4, 1, dtype=torch.uint8)])
    assert ds.shapes == [(3, 2, 3), (3, 4, 1)]
    np.testing.assert_array_equal(ds.image(0).numpy(), a.transpose(2, 0, 1))


def _div2k_tree(root: Path, names: list[str], scale: int, kind: str = "bicubic") -> None:
    for k, n in enumerate(names):
        _write_png(root / "DIV2K_train_HR" / f"{n}.png", 4 * scale, 6 * scale, k)
        _write_png(root / f"DIV2K_train_LR_{kind}" / f"X{scale}" / f"{n}x{scale}.png", 4, 6, 50 + k)


def test_div2k_pairing(tmp_path) -> None:
    _div2k_tree(tmp_path, ["0002", "0001", "0003"], 2)
    _div2k_tree(tmp_path, ["0001", "0002", "0003"], 3, kind="unknown")
    hr, lr = div2k_pairs(tmp_path, 2)
    assert [p.name for p in hr.files] == ["0001.png", "0002.png", "0003.png"]
    assert [p.name for p in lr.files] == ["0001x2.png", "0002x2.png", "0003x2.png"]
    hr3, lr3 = div2k_pairs(tmp_path, 3, kind="unknown")
    assert hr3.key == hr.key  # one HR cache for every scale
    assert lr3.files[0].parent.name == "X3" and "unknown" in str(lr3.files[0])
    (tmp_path / "DIV2K_train_LR_bicubic" / "X2" / "0002x2.png").unlink()
    with pytest.raises(ConfigError, match=r"no LR .* for 0002"):
        div2k_pairs(tmp_path, 2)
    with pytest.raises(ConfigError, match="X4"):
        div2k_pairs(tmp_path, 4)


def test_real_t91_images(tmp_path, data_root) -> None:
    files = sorted((data_root / "train" / "T91").glob("*.png"))[:2]
    ds = open_decoded(files, cache_dir=tmp_path)
    for i, f in enumerate(files):
        with Image.open(f) as im:
            ref = np.asarray(im.convert("RGB"))
        np.testing.assert_array_equal(ds.image(i).permute(1, 2, 0).numpy(), ref)


def test_concurrent_opens_build_once(tmp_path, folder, count_decodes) -> None:
    import threading

    root, _ = folder
    results: list[DecodedSet] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(open_decoded(hr_folders(root), cache_dir=tmp_path))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(count_decodes) == 3  # one build (3 images) shared by all openers
    assert all(torch.equal(r.image(0), results[0].image(0)) for r in results)
