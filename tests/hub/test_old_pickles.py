"""Whole-model pickles of every torch generation give their state dict, and nothing of the
file runs: torch 0.1-0.4 Parameter / Variable reductions, Python 2 pickles (protocols 0-2,
``__builtin__`` / ``copy_reg`` names, ``str`` as latin-1 bytes), torch 1.x-2.x
``_rebuild_parameter``; zip and legacy layouts; real ``torch.save(model)`` files."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import importlib
import io
import pickle
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from sisr.hub import load_model
from sisr.hub.torchfile import load_inert
from sisr.hub.unpickle import InertUnpickler, plain
from tests.hub.craft_pickles import (
    Call,
    Param,
    Stored,
    Style,
    Tensor,
    Writer,
    describe,
    write_model,
)

# How each generation reduced a model (see tests/hub/craft_pickles.py for each form).
FORMS = {
    "torch0.1-py2": Style(
        py2=True, parameter="data_grad", tensor="v1", ordered_dict="py2", backend=True
    ),
    "torch0.3-py2-protocol2": Style(
        py2=True, parameter="reduce_build", tensor="v1", ordered_dict="py2", backend=True
    ),
    "torch0.3-py2-protocol1": Style(
        protocol=1,
        py2=True,
        parameter="newobj_build",
        tensor="v1",
        module="reconstructor",
        ordered_dict="py2",
        backend=True,
    ),
    "torch0.3-py2-protocol0": Style(
        protocol=0,
        py2=True,
        parameter="newobj_build",
        tensor="v1",
        module="reconstructor",
        ordered_dict="py2",
        backend=True,
    ),
    "torch0.3-py3": Style(parameter="reduce_build", tensor="v1", backend=True),
    "torch0.4.0-py2": Style(py2=True, parameter="super_args", ordered_dict="py2"),
    "torch0.4.0-py3": Style(parameter="super_args"),
    "torch1.x": Style(),
    "torch2.x-parameter-with-state": Style(parameter="with_state"),
}
LAYOUTS = {"zip": False, "legacy": True}

TRAP_SOURCE = """
from pathlib import Path
MARKER = Path({marker!r})
MARKER.write_text("imported")  # importing this module is already running the file's code


class Net:
    def __new__(cls, *args, **kwargs):
        MARKER.write_text("new")
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        MARKER.write_text("init")

    def __setstate__(self, state):
        MARKER.write_text("setstate")
"""


@pytest.fixture
def trap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """An importable module whose import, or any use of its class ``Net``, writes a marker;
    the hand-written pickles name ``Net`` as the model's class."""
    name = f"sisr_trap_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "ran"
    (tmp_path / "trapmod").mkdir()
    (tmp_path / "trapmod" / f"{name}.py").write_text(TRAP_SOURCE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path / "trapmod"))
    yield name, marker
    sys.modules.pop(name, None)


def _reference() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        collections.OrderedDict(
            head=nn.Conv2d(3, 4, 3),
            body=nn.Sequential(nn.Conv2d(4, 4, 3, bias=False), nn.BatchNorm2d(4), nn.PReLU(4)),
            tail=nn.ConvTranspose2d(4, 3, 2, stride=2),
        )
    )
    net.add_module("caf\xe9", nn.Linear(2, 2))  # Python 2 held the name as latin-1 bytes
    net.add_module("again", net.head)  # shared: state_dict() lists it under both names
    net.register_buffer("scale", torch.tensor([2.0], dtype=torch.float64))
    net.register_buffer("scratch", torch.zeros(3), persistent=False)  # left out
    with torch.no_grad():
        net.body[1].running_mean.uniform_()
        net.body[1].num_batches_tracked.fill_(7)
    return net


def _assert_same(sd: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> None:
    assert list(sd) == list(ref)  # names and order
    for key, value in ref.items():
        got = sd[key]
        assert isinstance(got, torch.Tensor), key
        assert got.dtype == value.dtype and got.shape == value.shape, key
        assert torch.equal(got, value), key


def _assert_not_run(trap: tuple[str, Path]) -> None:
    name, marker = trap
    assert not marker.exists(), f"the file's code ran ({marker.read_text()})"
    assert name not in sys.modules, "a module named by the file was imported"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("form", FORMS)
def test_hand_written_whole_model_pickle_gives_its_state_dict(
    tmp_path: Path, trap: tuple[str, Path], form: str, layout: str
) -> None:
    net = _reference()
    desc = describe(net, root_class=f"{trap[0]}.Net")
    builtin = "__builtin__" if FORMS[form].py2 else "builtins"
    desc.root.attrs["hook"] = Call(builtin, "eval", (f"open({str(trap[1])!r}, 'w')",))
    path = write_model(
        tmp_path / "model.pth", FORMS[form], desc.root, desc.storages, legacy=LAYOUTS[layout]
    )
    _assert_same(plain(load_inert(path)), net.state_dict())
    _assert_not_run(trap)


@pytest.mark.parametrize("form", [f for f in FORMS if FORMS[f].py2])
def test_python2_pickles_use_python2_names_and_byte_strings(form: str) -> None:
    """The hand-written Python 2 pickles really are in Python 2's terms."""
    style = FORMS[form]
    pkl = Writer(style, legacy=False).pickle(describe(_reference()).root)
    assert b"c__builtin__\nset\n" in pkl  # _non_persistent_buffers_set
    assert b"ccollections\nOrderedDict\n" in pkl and b"builtins" not in pkl
    # a str of latin-1 bytes (protocol 0 writes its repr)
    assert (b"S'caf\\xe9'\n" if style.protocol == 0 else b"U\x04caf\xe9") in pkl
    assert "café".encode() not in pkl
    if style.module == "reconstructor":
        assert b"ccopy_reg\n_reconstructor\n" in pkl and b"c__builtin__\nobject\n" in pkl
    if style.parameter == "newobj_build":
        assert b"ccopy_reg\n__newobj__\n" in pkl
    if style.protocol == 0:
        assert b"\x80" not in pkl[:1] and b"S'weight'\n" in pkl


def test_the_trap_and_the_hand_written_bytes_are_real(
    tmp_path: Path, trap: tuple[str, Path]
) -> None:
    """Controls: torch's own loader reads the hand-written torch 0.3 / Python 2 file (so the
    bytes are what torch accepts) and, in doing so, runs the trap that sisr never touches."""
    style = dataclasses.replace(FORMS["torch0.3-py2-protocol1"], backend=False)
    net = _reference()
    desc = describe(net)
    path = write_model(tmp_path / "real.pth", style, desc.root, desc.storages, legacy=True)
    loaded = torch.load(path, weights_only=False, encoding="latin1")
    _assert_same(loaded.state_dict(), net.state_dict())
    assert loaded.again is loaded.head
    trapped = describe(net, root_class=f"{trap[0]}.Net")
    path = write_model(tmp_path / "trap.pth", style, trapped.root, trapped.storages, legacy=True)
    with contextlib.suppress(Exception):  # what torch makes of Net afterwards is beside the point
        torch.load(path, weights_only=False, encoding="latin1")
    assert trap[1].exists()


def test_old_parameter_and_variable_records_outside_modules(tmp_path: Path) -> None:
    """torch 0.3 ``{"w": Parameter, "v": Variable}`` (e.g. ``dict(named_parameters())``)."""
    w, v = torch.randn(2, 3), torch.arange(4, dtype=torch.int64)
    storages = {
        "0": Stored("0", "FloatStorage", 6, w.numpy().tobytes()),
        "1": Stored("1", "LongStorage", 4, v.numpy().tobytes()),
    }
    obj = {
        "w": Param(Tensor(storages["0"], 0, (2, 3), (3, 1))),
        "v": Param(Tensor(storages["1"], 0, (4,), (1,)), cls="torch.autograd.variable.Variable"),
        "epoch": 9,
    }
    style = FORMS["torch0.3-py2-protocol2"]
    for legacy in (False, True):
        got = plain(load_inert(write_model(tmp_path / "d.pt", style, obj, storages, legacy=legacy)))
        assert got["epoch"] == 9 and torch.equal(got["w"], w) and torch.equal(got["v"], v)


class _ESPCN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 5, padding=2)
        self.conv2 = nn.Conv2d(8, 4, 3, padding=1)
        self.conv3 = nn.Conv2d(4, 12, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.conv2(torch.tanh(self.conv1(x))))
        return self.shuffle(self.conv3(x))


@pytest.mark.parametrize("form", ["torch0.3-py2-protocol2", "torch0.4.0-py3"])
def test_old_whole_model_file_loads_as_a_model(
    tmp_path: Path, trap: tuple[str, Path], form: str
) -> None:
    """The most common old file: a legacy-format whole-model pickle in a {"model", "epoch"}
    dict, wrapped in DataParallel; loaded end to end."""
    torch.manual_seed(0)
    net = _ESPCN().eval()
    parallel = nn.DataParallel(net)
    desc = describe(parallel, root_class=f"{trap[0]}.Net")
    obj = {"epoch": 40, "model": desc.root}
    path = write_model(tmp_path / "epoch_40.pth", FORMS[form], obj, desc.storages, legacy=True)
    model = load_model(path)
    _assert_not_run(trap)
    assert model.arch_id == "espcn" and model.scale == 2
    x = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-6)


# --- real torch.save(model) ------------------------------------------------------------------


class TinyNet(nn.Module):
    """A user's model class; unpickling it for real calls __setstate__ (the trap)."""

    trap: Path | None = None

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 4, 3, bias=False)
        self.norm = nn.BatchNorm2d(4)
        self.blocks = nn.ModuleList([nn.Sequential(nn.Conv2d(4, 4, 1), nn.PReLU()), nn.Identity()])
        self.alias = self.blocks[0]
        self.gain = nn.Parameter(torch.tensor(0.5))
        self.register_buffer("mean", torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1))
        self.register_buffer("cache", torch.zeros(2), persistent=False)
        self.register_buffer("absent", None)

    def __setstate__(self, state: dict[str, object]) -> None:
        if TinyNet.trap is not None:
            TinyNet.trap.write_text("setstate")
        super().__setstate__(state)


def _tiny() -> TinyNet:
    torch.manual_seed(1)
    net = TinyNet()
    with torch.no_grad():
        net.norm.running_var.uniform_(0.5, 2.0)
    return net


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("what", ["custom", "sequential", "dataparallel-in-dict"])
def test_real_torch_save_of_a_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str, zipfile: bool
) -> None:
    marker = tmp_path / "ran"
    monkeypatch.setattr(TinyNet, "trap", marker)
    net = _tiny()
    if what == "sequential":
        net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Sequential(net, nn.Conv2d(4, 1, 1)))
    obj: object = net
    if what == "dataparallel-in-dict":
        obj = {"model": nn.DataParallel(net), "epoch": 3, "optimizer": None}
    path = tmp_path / "model.pth"
    torch.save(obj, path, _use_new_zipfile_serialization=zipfile)
    content = plain(load_inert(path))
    assert not marker.exists(), "the model class was used while reading"
    if what == "dataparallel-in-dict":
        assert content["epoch"] == 3
        ref = {f"module.{k}": v for k, v in net.state_dict().items()}
        _assert_same(content["model"], ref)
    else:
        _assert_same(content, net.state_dict())
    if what == "custom" and zipfile:  # control: torch's own loader does use the class
        torch.load(path, weights_only=False)
        assert marker.exists()


def test_copyreg_helpers_create_records_only() -> None:
    """``copy_reg._reconstructor`` / ``__newobj__`` build inert records, never a real type."""
    for module, helper in (("copy_reg", "__newobj__"), ("copyreg", "_reconstructor")):
        args = b"c__builtin__\ndict\n" + (b"c__builtin__\nobject\nN" if "recon" in helper else b"")
        data = b"c" + f"{module}\n{helper}\n".encode() + b"(" + args + b"tR."
        with pytest.raises(pickle.UnpicklingError, match="refused"):
            InertUnpickler(io.BytesIO(data)).load()
    rec = InertUnpickler(io.BytesIO(b"ccopy_reg\n__newobj__\n(cx\nY\nI3\ntR.")).load()
    assert rec._sisr_path == "x.Y" and rec.args == (3,)


def test_importing_the_trap_does_write_its_marker(trap: tuple[str, Path]) -> None:
    importlib.import_module(trap[0])
    assert trap[1].read_text() == "imported"
