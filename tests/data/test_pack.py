"""Packed training sets: exact round trip, hash checks, folder comparison, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sisr.cli.main import main
from sisr.data.cache import open_decoded
from sisr.data.pack import (
    CODECS,
    forward_planes,
    inverse_planes,
    pack,
    read_header,
    subset,
    unpack,
    unpack_to_folders,
    verify,
)
from sisr.data.sources import hr_folders
from sisr.errors import ConfigError, ImageError
from sisr.io import read_rgb_uint8


def _smooth(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A natural-ish (H, W, 3) uint8 image: a gradient plus noise, covering 0 and 255."""
    y, x = np.mgrid[0:h, 0:w]
    base = (x * 7 + y * 3)[..., None] + np.array([0, 60, 200])
    return ((base + rng.integers(0, 40, (h, w, 3))) % 256).astype(np.uint8)


@pytest.fixture
def folders(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    a = tmp_path / "src" / "setA"
    b = tmp_path / "src" / "setB"
    (b / "sub").mkdir(parents=True)
    a.mkdir(parents=True)
    Image.fromarray(_smooth(rng, 17, 23)).save(a / "x1.png")
    Image.fromarray(rng.integers(0, 256, (9, 5, 3), dtype=np.uint8)).save(a / "x0.png")
    Image.fromarray(_smooth(rng, 8, 12)[..., 0]).save(b / "gray.png")  # 1 channel on disk
    Image.fromarray(_smooth(rng, 1, 31)).save(b / "sub" / "row.bmp")
    return [a, b]


def test_planes_round_trip_is_exact() -> None:
    rng = np.random.default_rng(1)
    for h, w in [(1, 1), (1, 7), (6, 1), (13, 29)]:
        x = rng.integers(0, 256, (3, h, w), dtype=np.uint8)
        res = forward_planes(x)
        assert res.shape == x.shape and res.dtype == np.uint8
        np.testing.assert_array_equal(inverse_planes(res), x)
    # the residual of a constant-gradient image is zero except on the first row/column
    flat = np.full((3, 5, 5), 77, np.uint8)
    assert np.count_nonzero(forward_planes(flat)[:, 1:, 1:]) == 0


@pytest.mark.parametrize("codec", CODECS)
def test_pack_unpack_equals_originals(folders: list[Path], tmp_path: Path, codec: str) -> None:
    out = tmp_path / "set.pack"
    header = pack(folders, out, codec=codec, workers=2)
    names = [e["name"] for e in header["images"]]
    assert names == ["setA/x0.png", "setA/x1.png", "setB/gray.png", "setB/sub/row.bmp"]
    assert header["folders"] == ["setA", "setB"]
    ds = unpack(out)
    ref = open_decoded(hr_folders(folders), folder=tmp_path / "cache")
    assert len(ds) == len(ref) == 4
    assert ds.paths == names
    # identical to the training cache, byte for byte (same order, same decoding)
    np.testing.assert_array_equal(ds.flat().numpy(), ref.flat().numpy())
    gray = read_rgb_uint8(folders[1] / "gray.png")
    np.testing.assert_array_equal(ds.image_np(2).transpose(1, 2, 0), gray)
    assert read_header(out)["sha256"] == header["sha256"]
    check = verify(out, folders)
    assert check.ok and check.compared_with_folders and check.images == 4


def test_verify_reports_differences(folders: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "set.pack"
    pack(folders, out)
    img = np.array(Image.open(folders[0] / "x1.png"))
    img[3, 4, 1] ^= 1  # one sample, one bit
    Image.fromarray(img).save(folders[0] / "x1.png")
    Image.fromarray(img).save(folders[0] / "extra.png")
    (folders[1] / "gray.png").unlink()
    problems = verify(out, folders).problems
    assert len(problems) == 3
    assert any("x1.png: pixels differ" in p for p in problems)
    assert any("extra.png: in the folders, not in the pack" in p for p in problems)
    assert any("setB/gray.png: in the pack, not in the folders" in p for p in problems)
    assert verify(out).ok  # the pack itself is still intact


def test_corrupt_packs_are_refused(folders: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "set.pack"
    header = pack(folders, out, codec="rct-grad-zlib")
    raw = bytearray(out.read_bytes())
    bad = tmp_path / "bad.pack"
    bad.write_bytes(raw[:-3])
    with pytest.raises(ImageError, match="truncated"):
        unpack(bad)
    bad.write_bytes(b"NOTAPACK" + raw[8:])
    with pytest.raises(ImageError, match="bad magic"):
        verify(bad)
    # a stored digest that no longer matches the pixels: found by unpack and verify
    e = header["images"][1]
    swapped = bytes(raw).replace(e["sha256"].encode(), ("0" * 64).encode())
    bad.write_bytes(swapped)
    with pytest.raises(ImageError, match="stored sha256"):
        unpack(bad)
    problems = verify(bad).problems
    assert any("setA/x1.png: decoded pixels differ" in p for p in problems)


def test_bad_input_leaves_no_file(folders: list[Path], tmp_path: Path) -> None:
    (folders[0] / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "set.pack"
    with pytest.raises(ImageError, match=r"broken\.png"):
        pack(folders, out)
    assert not out.exists() and not list(tmp_path.glob(".set.*"))
    with pytest.raises(ConfigError, match="same folder name"):
        pack([folders[0], folders[0]], out)


def test_unpack_to_folders_feeds_training_data(folders: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "set.pack"
    pack(folders, out)
    root = tmp_path / "data" / "train"
    written = unpack_to_folders(out, root)
    assert written[-1] == root / "setB" / "sub" / "row.png"
    again = [root / "setA", root / "setB"]
    assert verify(out, again).ok
    a = open_decoded(hr_folders(again), folder=tmp_path / "c1").flat().numpy()
    b = open_decoded(hr_folders(folders), folder=tmp_path / "c2").flat().numpy()
    np.testing.assert_array_equal(a, b)


def test_cli_pack_verify_unpack(folders: list[Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli.pack"
    argv = ["data", "pack", "-o", str(out), "-i", str(folders[0]), "-i", str(folders[1])]
    assert main(argv) == 0
    assert "4 images" in capsys.readouterr().out
    assert (
        main(["data", "verify-pack", str(out), "-i", str(folders[0]), "-i", str(folders[1])]) == 0
    )
    assert "hashes and folders OK" in capsys.readouterr().out
    assert main(["data", "verify-pack", str(out), "-i", str(folders[0])]) == 1
    assert "in the pack, not in the folders" in capsys.readouterr().err
    assert main(["data", "unpack", str(out), "-o", str(tmp_path / "u")]) == 0
    assert (tmp_path / "u" / "setA" / "x1.png").is_file()
    assert main(["data", "verify-pack", str(tmp_path / "missing.pack")]) == 2


def test_real_training_images(data_root: Path, tmp_path: Path) -> None:
    src = tmp_path / "T91"
    src.mkdir()
    for p in sorted((data_root / "train" / "T91").glob("*.png"))[:3]:
        (src / p.name).symlink_to(p)
    out = tmp_path / "t91.pack"
    pack([src], out)
    assert out.stat().st_size < sum(p.stat().st_size for p in src.iterdir())  # beats PNG
    assert verify(out, [src]).ok


def test_subset_keeps_leading_images_exactly(folders: list[Path], tmp_path: Path) -> None:
    full = tmp_path / "full.pack"
    head = pack(folders, full)
    sizes = [e["length"] for e in head["images"]]
    budget = sizes[0] + sizes[1] + sizes[2] // 2  # room for two images and a half
    part = tmp_path / "part.pack"
    sub = subset(full, part, budget)
    assert [e["name"] for e in sub["images"]] == [e["name"] for e in head["images"][:2]]
    assert part.stat().st_size < full.stat().st_size
    # pixels and per-image hashes unchanged; the overall digest is the kept images'
    a, b = unpack(full), unpack(part)
    for k in range(2):
        assert np.array_equal(a.image_np(k), b.image_np(k))
    assert read_header(part)["sha256"] == sub["sha256"] != head["sha256"]
    assert sub["folders"] == [folders[0].name]
    with pytest.raises(ConfigError, match="not even its first image"):
        subset(full, tmp_path / "none.pack", sizes[0] - 1)
    assert not (tmp_path / "none.pack").exists()
