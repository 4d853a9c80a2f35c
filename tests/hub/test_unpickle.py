"""Whole-model pickles: tensors are read through inert records; nothing from the file runs."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from sisr.errors import WeightsError
from sisr.hub import load_model
from sisr.hub.torchfile import load_inert
from sisr.hub.unpickle import Inert, InertUnpickler, plain


class UserESPCN(nn.Module):
    """A user's own ESPCN class (conv1..conv3, RGB), pickled by reference."""

    def __init__(self, scale: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 5, padding=2)
        self.conv2 = nn.Conv2d(8, 4, 3, padding=1)
        self.conv3 = nn.Conv2d(4, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)
        self.register_buffer("scratch", torch.zeros(2), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.conv2(torch.tanh(self.conv1(x))))
        return self.shuffle(self.conv3(x))


class _Payload:
    def __init__(self, marker: Path, how: str = "system") -> None:
        self.marker, self.how = marker, how

    def __reduce__(self) -> tuple[object, tuple[str]]:
        if self.how == "system":
            return (os.system, (f"touch {self.marker}",))
        return (eval, (f"open({str(self.marker)!r}, 'w')",))


@pytest.mark.parametrize("zipfile", [True, False])
def test_whole_model_pickle_loads_without_running_code(tmp_path: Path, zipfile: bool) -> None:
    torch.manual_seed(0)
    net = UserESPCN(3).eval()
    marker = tmp_path / "pwned"
    src = tmp_path / "epoch_3.pt"
    torch.save(
        {"model": net, "epoch": 3, "hook": _Payload(marker), "other": _Payload(marker, "eval")},
        src,
        _use_new_zipfile_serialization=zipfile,
    )
    model = load_model(src)
    assert not marker.exists(), "a pickled callable ran"
    assert model.arch_id == "espcn" and model.scale == 3
    x = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        assert torch.equal(model(x), net(x))


def test_classes_become_inert_records_and_are_never_imported(tmp_path: Path) -> None:
    # A pickle naming a module that does not exist: a normal unpickler would fail to
    # import it (or import and run it); the inert one records it.
    data = (
        b"\x80\x02cno_such_module_sisr\nNet\nq\x00)\x81q\x01}q\x02X\x01\x00\x00\x00aq\x03K\x01sb."
    )
    import io

    obj = InertUnpickler(io.BytesIO(data)).load()
    assert isinstance(obj, Inert) and obj._sisr_path == "no_such_module_sisr.Net"
    assert obj.state == {"a": 1}
    # posix.system as a GLOBAL + REDUCE: an inert record with the arguments, not a call.
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Payload(marker), protocol=2)
    rec = InertUnpickler(io.BytesIO(evil)).load()
    assert isinstance(rec, Inert) and rec.args == (f"touch {marker}",)
    assert rec._sisr_path in ("posix.system", "nt.system")
    assert not marker.exists()


def test_module_record_flattens_like_state_dict(tmp_path: Path) -> None:
    net = UserESPCN(2)
    path = tmp_path / "m.pth"
    torch.save(net, path)
    sd = plain(load_inert(path))
    assert list(sd) == list(net.state_dict())  # order too; the non-persistent buffer is left out
    assert all(torch.equal(sd[k], v) for k, v in net.state_dict().items())


def test_pickle_needing_more_than_tensors_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    src = tmp_path / "evil.pt"
    torch.save({"model": _Payload(marker)}, src)
    with pytest.raises(WeightsError, match=r"evil\.pt: refused: .*system.*never runs pickled code"):
        load_model(src)
    assert not marker.exists()
