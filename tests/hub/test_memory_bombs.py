"""Weights files small on disk but huge in memory: every size a file controls is checked
before anything is allocated, and the refusal is one WeightsError naming file and limit.

Each case used to allocate what the file asked for (gigabytes from kilobytes: zero strides,
deflate bombs, shared pickle references, bicubic x1000), or build a network from
unchecked detected hparams.
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

import pytest
import torch

from sisr.archs import ARCHS
from sisr.archs.bicubic import MAX_SCALE, Bicubic
from sisr.cli.main import main
from sisr.errors import ConfigError, WeightsError
from sisr.hub import load_model
from sisr.hub.read import read_foreign_state_dict
from sisr.hub.torchfile import read_torch_file
from tests.hub.craft import (
    Archive,
    StorageRef,
    TensorRef,
    bicubic_weights,
    espcn_state,
    nested_pickle,
    rezip,
    shared_lists,
    write_legacy,
)

FORMATS = pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])


@FORMATS
def test_zero_stride_weights_are_refused_before_materialising(
    tmp_path: Path, zip_format: bool
) -> None:
    path = tmp_path / "zero.pth"
    torch.save(espcn_state(8000, torch.zeros(1)), path, _use_new_zipfile_serialization=zip_format)
    assert path.stat().st_size < 10_000  # 2.2 GB of float32 once made contiguous
    with pytest.raises(WeightsError, match=r"zero\.pth: refused: .*zero or overlapping strides"):
        load_model(path)


def test_convert_of_a_zero_stride_file_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "zero.pth"
    torch.save(espcn_state(3000, torch.zeros(1)), src)
    out = tmp_path / "out.safetensors"
    assert main(["convert", str(src), str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "zero.pth: refused" in err[0] and "MiB" in err[0]
    assert not out.exists()


def test_zero_strides_within_the_budget_still_load(tmp_path: Path) -> None:
    """A broadcast bias is legitimate: only inflation beyond the stored bytes is refused."""
    sd = espcn_state(16)
    sd["body.0.bias"] = torch.full((1,), 0.5).expand(16)
    path = tmp_path / "bias.pth"
    torch.save(sd, path)
    model = load_model(path)
    assert torch.equal(model.state_dict()["body.0.bias"], torch.full((16,), 0.5))


def test_view_reaching_past_its_storage_is_refused(tmp_path: Path) -> None:
    storage = StorageRef("0", 4)
    path = Archive(obj={"w": TensorRef(storage, (1000,), (1,))}, data={"0": bytes(16)}).write(
        tmp_path / "view.pth"
    )
    with pytest.raises(
        WeightsError, match=r"view\.pth: refused: .*reaches element 1,000 of storage '0'"
    ):
        read_foreign_state_dict(path)


def test_storage_declaring_more_than_its_entry_is_refused(tmp_path: Path) -> None:
    storage = StorageRef("0", 500_000_000)  # 2 GB declared, 16 bytes stored
    path = Archive(obj={"w": TensorRef(storage, (4,), (1,))}, data={"0": bytes(16)}).write(
        tmp_path / "liar.pth"
    )
    with pytest.raises(WeightsError, match=r"liar\.pth: refused: storage '0' declares .*16 bytes"):
        read_foreign_state_dict(path)


def test_legacy_storages_declaring_more_than_the_file_holds_are_refused(tmp_path: Path) -> None:
    storage = StorageRef("0", 500_000_000)
    path = write_legacy(
        tmp_path / "liar.pth", {"w": TensorRef(storage, (4,), (1,))}, {"0": bytes(16)}
    )
    with pytest.raises(WeightsError, match=r"liar\.pth: refused: .*declare.*only 24 bytes"):
        read_foreign_state_dict(path)


def test_compressed_entries_beyond_the_limit_are_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sisr.hub import torchfile

    monkeypatch.setattr(torchfile, "MAX_COMPRESSED_BYTES", 1 << 20)
    plain = tmp_path / "plain.pth"
    torch.save({"w": torch.zeros(1 << 19)}, plain)  # 2 MiB of zeros: deflates to ~2 KB
    bomb = rezip(plain, tmp_path / "bomb.pth")
    assert bomb.stat().st_size < 20_000
    with pytest.raises(
        WeightsError, match=r"bomb\.pth: refused: compressed entries would expand to 2\.0 MiB"
    ):
        read_foreign_state_dict(bomb)


def test_a_small_compressed_checkpoint_still_loads(tmp_path: Path) -> None:
    sd = espcn_state(8)
    plain = tmp_path / "plain.pth"
    torch.save(sd, plain)
    got = read_foreign_state_dict(rezip(plain, tmp_path / "small.pth"))
    assert all(torch.equal(got[k], v) for k, v in sd.items())


@pytest.mark.parametrize("with_class", [False, True], ids=["plain", "whole-model path"])
def test_shared_reference_amplification_is_refused(tmp_path: Path, with_class: bool) -> None:
    """8-way sharing 20 deep: 2 KB on disk, 8**20 objects to anything walking it (the
    inert path used to flatten it copy by copy until a MemoryError)."""
    content = {"state_dict": {"w": torch.zeros(3)}, "hist": shared_lists(8, 20, torch.zeros(1))}
    if with_class:
        content["args"] = argparse.Namespace(lr=1e-4)  # a class: read as an inert record
    path = tmp_path / "shared.pth"
    torch.save(content, path)
    assert path.stat().st_size < 5000
    with pytest.raises(
        WeightsError, match=r"shared\.pth: refused: .*shared references expand to more than"
    ):
        read_foreign_state_dict(path)


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    path = Archive(pickle_bytes=nested_pickle(5000)).write(tmp_path / "deep.pth")
    with pytest.raises(WeightsError, match=r"deep\.pth: refused: .*more than 100 deep"):
        read_foreign_state_dict(path)


def test_object_count_is_limited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sisr.hub import unpickle

    monkeypatch.setattr(unpickle, "MAX_OBJECTS", 1000)
    path = tmp_path / "many.pth"
    torch.save({"w": torch.zeros(1), "log": [float(i) for i in range(5000)]}, path)
    with pytest.raises(WeightsError, match=r"many\.pth: refused: .*more than 1,000 objects"):
        read_foreign_state_dict(path)


def test_huge_memo_index_is_refused(tmp_path: Path) -> None:
    """The C unpickler sizes its memo table by the largest index: 10 bytes, 32 GB."""
    pkl = b"\x80\x02N" + b"r" + struct.pack("<I", 0xFFFFFFF0) + b"."
    path = Archive(pickle_bytes=pkl).write(tmp_path / "memo.pth")
    with pytest.raises(WeightsError, match=r"memo\.pth: refused: .*memo index 4,294,967,280"):
        read_foreign_state_dict(path)


def test_distinct_classes_are_limited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sisr.hub import unpickle

    monkeypatch.setattr(unpickle, "MAX_CLASSES", 10)
    pkl = b"\x80\x02(" + b"".join(f"cm{i}\nC\n".encode() for i in range(20)) + b"l."
    path = Archive(pickle_bytes=pkl).write(tmp_path / "classes.pth")
    with pytest.raises(WeightsError, match=r"classes\.pth: .*more than 10 distinct classes"):
        read_torch_file(path)


def test_entry_count_is_checked_before_the_directory_is_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sisr.hub import torchfile

    data = {str(i): bytes(4) for i in range(20)}
    path = Archive(obj={"w": TensorRef(StorageRef("0", 1), (1,), (1,))}, data=data).write(
        tmp_path / "many.pth"
    )
    monkeypatch.setattr(torchfile, "MAX_ENTRIES", 10)
    monkeypatch.setattr(torchfile.zipfile, "ZipFile", None)  # never reached
    with pytest.raises(WeightsError, match=r"many\.pth: refused: the archive has 23 entries"):
        read_foreign_state_dict(path)


def test_pickle_may_not_change_what_it_did_not_build(tmp_path: Path) -> None:
    """BUILD on a tensor reaches Tensor.__setstate__, i.e. ``set_``: a zero-stride view of
    any size over any storage, past every check above; BUILD on a global rewrites it."""
    one = StorageRef("0", 1)
    small = TensorRef(one, (1,), (1,))
    repointed = TensorRef(one, (1,), (1,), state=(small, 0, (1 << 20, 1 << 20), (0, 0)))
    path = Archive(obj={"w": repointed}, data={"0": bytes(4)}).write(tmp_path / "set.pth")
    with pytest.raises(WeightsError, match=r"set\.pth: refused: .*changes a tensor it did not"):
        read_foreign_state_dict(path)
    rewrite = b"\x80\x02ccopyreg\n_reconstructor\n}X\x03\x00\x00\x00__x]b."
    path = Archive(pickle_bytes=rewrite).write(tmp_path / "global.pth")
    with pytest.raises(WeightsError, match=r"global\.pth: refused: .*changes an object"):
        read_foreign_state_dict(path)


def test_detected_hparams_are_range_checked_before_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    real = ARCHS["espcn"]

    def spy(**kwargs: object) -> object:
        built.append(str(torch.empty(0).device))
        return real(**kwargs)

    monkeypatch.setitem(ARCHS, "espcn", spy)
    path = tmp_path / "wide.pth"
    torch.save(espcn_state(1100), path)  # 1100 > MAX_INT_HPARAM, like safetensors metadata
    with pytest.raises(WeightsError, match=r"wide\.pth: .*hparam features\[0\]=1100 is out of"):
        load_model(path)
    assert built == []
    torch.save(espcn_state(16), path)
    load_model(path)
    assert built == ["meta", "cpu"]  # compared with the tensors before a real build


def test_bicubic_scale_from_metadata_is_range_checked(tmp_path: Path) -> None:
    bad = bicubic_weights(tmp_path / "b1000.safetensors", 1000)
    with pytest.raises(
        WeightsError, match=rf"b1000\.safetensors: hparam scale=1000 is out of range .*{MAX_SCALE}"
    ):
        load_model(bad)
    assert load_model(bicubic_weights(tmp_path / "b4.safetensors", 4)).scale == 4


def test_bicubic_refuses_absurd_scales() -> None:
    assert Bicubic(scale=MAX_SCALE).scale == MAX_SCALE
    for bad in (0, MAX_SCALE + 1, 1000):
        with pytest.raises(ConfigError, match="bicubic: scale"):
            Bicubic(scale=bad)
    with pytest.raises(ConfigError, match=f"from 1 to {MAX_SCALE}, got 1000"):
        load_model("bicubic-x1000")


@FORMATS
def test_reader_gives_what_torch_load_gives(tmp_path: Path, zip_format: bool) -> None:
    t = torch.arange(12, dtype=torch.float32)
    content = {
        "slice": t[2:5],
        "transposed": t.view(3, 4).t(),
        "tied": t,
        "half": torch.ones(3, dtype=torch.float16),
        "bool": torch.tensor([True, False]),
        "long": torch.arange(5),
        "empty": torch.zeros(0, 3),
        "bf16": torch.ones(2, dtype=torch.bfloat16),
        "param": torch.nn.Parameter(torch.ones(2)),
        "nested": {"x": [torch.ones(1), (torch.zeros(2), "s", 3, None, 1.5, b"b")]},
    }
    path = tmp_path / "ref.pth"
    torch.save(content, path, _use_new_zipfile_serialization=zip_format)
    got, ref = read_torch_file(path), torch.load(path, weights_only=True)
    assert list(got) == list(ref)
    for key in ("slice", "transposed", "tied", "half", "bool", "long", "empty", "bf16", "param"):
        assert got[key].dtype == ref[key].dtype and got[key].stride() == ref[key].stride()
        assert torch.equal(got[key], ref[key].detach()), key
    assert got["tied"].data_ptr() == got["slice"].data_ptr() - 8  # storage sharing kept
    assert got["nested"]["x"][1][1:] == ("s", 3, None, 1.5, b"b")
