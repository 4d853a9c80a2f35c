"""Published weights by name: the shipped catalogue and its verified download (127.0.0.1 only)."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from sisr.archs import build
from sisr.cli.main import main
from sisr.errors import WeightsError
from sisr.hub import catalog as cat
from sisr.hub import load_model


def test_shipped_catalogue_has_the_published_facts() -> None:
    table = cat.catalog()
    x4 = table["realesrgan-x4plus"]
    assert x4.sha256 == "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1"
    assert x4.bytes == 67040989 and x4.scale == 4 and x4.sisr_arch == "rrdbnet"
    assert x4.urls[0].startswith("https://github.com/xinntao/Real-ESRGAN/")
    assert table["realesr-general-x4v3"].sisr_arch == "compact"
    assert all(len(e.sha256) == 64 and e.bytes > 0 and e.urls for e in table.values())


class _Server:
    """Serves one payload with a chosen misbehaviour per request."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.plan: list[str] = []  # per request: ok, truncate, error, wrong
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                mode = outer.plan.pop(0) if outer.plan else "ok"
                if mode == "error":
                    self.send_error(500, "boom")
                    return
                body = outer.payload if mode != "wrong" else bytes(len(outer.payload))
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if mode == "truncate" else body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/tiny.pth"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[_Server, torch.nn.Module]]:
    torch.manual_seed(0)
    model = build("compact", 2, num_feat=8, num_conv=2).eval()
    src = tmp_path / "tiny.pth"
    torch.save({"params": model.state_dict()}, src)
    payload = src.read_bytes()
    server = _Server(payload)
    entry = cat.CatalogEntry(
        name="tiny-compact-x2",
        title="tiny",
        author="test",
        license="MIT",
        architecture="compact",
        sisr_arch="compact",
        scale=2,
        bytes=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        file_type="pth",
        urls=(server.url,),
    )
    monkeypatch.setattr(cat, "catalog", lambda: {entry.name: entry})
    monkeypatch.setenv("SISR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SISR_OFFLINE", raising=False)
    yield server, model
    server.httpd.shutdown()


def _cached(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "weights" / "tiny-compact-x2.pth"


def test_download_verify_and_load(served: tuple[_Server, torch.nn.Module], tmp_path: Path) -> None:
    server, model = served
    loaded = load_model("tiny-compact-x2", progress=False)
    assert _cached(tmp_path).read_bytes() == server.payload
    x = torch.rand(1, 3, 5, 6)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    load_model("tiny-compact-x2", progress=False)  # second use: from the cache
    assert server.requests == 1


def test_bad_hash_leaves_nothing(served: tuple[_Server, torch.nn.Module], tmp_path: Path) -> None:
    server, _ = served
    server.plan = ["wrong"] * 4
    with pytest.raises(WeightsError, match=r"SHA-256 mismatch.*put it at .*tiny-compact-x2\.pth"):
        load_model("tiny-compact-x2", progress=False)
    assert not _cached(tmp_path).exists()
    assert not any(_cached(tmp_path).parent.glob("*tiny*"))


def test_truncated_transfer_is_retried(
    served: tuple[_Server, torch.nn.Module], tmp_path: Path
) -> None:
    server, _ = served
    server.plan = ["truncate", "ok"]
    load_model("tiny-compact-x2", progress=False)
    assert server.requests == 2 and _cached(tmp_path).read_bytes() == server.payload


def test_truncated_twice_fails_cleanly(
    served: tuple[_Server, torch.nn.Module], tmp_path: Path
) -> None:
    server, _ = served
    server.plan = ["truncate", "truncate"]
    with pytest.raises(WeightsError, match="interrupted"):
        load_model("tiny-compact-x2", progress=False)
    assert not _cached(tmp_path).exists()


def test_server_error_names_url_and_folder(
    served: tuple[_Server, torch.nn.Module], tmp_path: Path
) -> None:
    server, _ = served
    server.plan = ["error"]
    with pytest.raises(WeightsError) as info:
        load_model("tiny-compact-x2", progress=False)
    msg = str(info.value)
    assert "HTTP 500" in msg and server.url in msg and str(_cached(tmp_path)) in msg
    assert server.requests == 1  # an HTTP error is not retried


def test_offline_fails_at_once_and_a_file_put_by_hand_is_used(
    served: tuple[_Server, torch.nn.Module], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = served
    monkeypatch.setenv("SISR_OFFLINE", "1")
    with pytest.raises(
        WeightsError, match=rf"offline.*{server.url}.*put it at .*tiny-compact-x2\.pth"
    ):
        load_model("tiny-compact-x2", progress=False)
    assert server.requests == 0
    _cached(tmp_path).parent.mkdir(parents=True)
    _cached(tmp_path).write_bytes(server.payload)
    assert load_model("tiny-compact-x2", progress=False).scale == 2
    assert server.requests == 0


def test_catalog_listing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--catalog"]) == 0
    out = capsys.readouterr().out
    assert "realesrgan-x4plus" in out and "native" in out and "swinir-m-x4" in out


PEERS = Path(
    os.environ.get(
        "SISR_PEERS_WEIGHTS", Path(__file__).resolve().parents[3] / "shared" / "peers" / "weights"
    )
)


@pytest.mark.parametrize(
    ("name", "peer", "arch", "scale"),
    [
        ("rlfn-ntire2022-team04-x4", "ntire2022_team04_rlfn.pth", "rlfn", 4),
        ("bsrn-s-ntire2022-team18-x4", "ntire2022_team18_bsrn.pth", "bsrn", 4),
        ("imdn-x2", "imdn_IMDN_x2.pth", "imdn", 2),
        ("rfdn-x4", "njulj_RFDN_AIM.pth", "rfdn", 4),
        ("pan-x4", "pan_PANx4_DF2K.pth", "pan", 4),
        ("carn-m-x3", "carn_m.pth", "carn", 3),  # one multi-scale file: the name picks x3
        ("safmn-ntire23-x4", "safmn_ntire2023_team15_SAFMN.pth", "safmn", 4),
    ],
)
def test_efficient_sr_entries_fetch_verify_and_load(
    name: str,
    peer: str,
    arch: str,
    scale: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The catalogue's facts are those of the real published file: served from 127.0.0.1
    under the entry's own size and sha256, it downloads, verifies and loads natively."""
    path = PEERS / peer
    if not path.is_file():
        pytest.skip(f"{path} not found (the shared peer weights folder is not beside the repo)")
    entry = cat.catalog()[name]
    assert entry.sisr_arch == arch and entry.scale == scale
    assert entry.urls[0].startswith("https://raw.githubusercontent.com/")
    payload = path.read_bytes()
    assert (len(payload), hashlib.sha256(payload).hexdigest()) == (entry.bytes, entry.sha256)
    server = _Server(payload)
    local = cat.CatalogEntry(**{**entry.to_dict(), "urls": (server.url,)})
    monkeypatch.setattr(cat, "catalog", lambda: {name: local})
    monkeypatch.setenv("SISR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SISR_OFFLINE", raising=False)
    try:
        model = load_model(name, progress=False)
    finally:
        server.httpd.shutdown()
    assert model.arch_id == arch and model.scale == scale
    assert (tmp_path / "cache" / "weights" / entry.filename).read_bytes() == payload
