"""The server under the audit's hostile conditions: late cancels, slow tiles, stalled uploads,
a full temporary disk, unknown query parameters and bad ``sisr serve`` flags."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip(
    "fastapi", reason="the 'serve' extra is not installed (pip install -e .[serve])"
)
pytest.importorskip("multipart", reason="python-multipart (serve extra) is not installed")
pytest.importorskip("httpx", reason="httpx (test extra) is needed for FastAPI's TestClient")

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sisr.archs.base import ArchInfo
from sisr.cli.main import main as cli_main
from sisr.infer import Upscaler
from sisr.serve import ServeConfig, create_app
from tests.serve.conftest import TILE, png_bytes
from tests.serve.test_api import error_of, leftovers, make_client, wait_state

# ----------------------------------------------------------------------------- fakes


class _Wrapped:
    """A catalog whose upscalers run through ``wrap(real_upscale_file, src, dst, **kw)``."""

    def __init__(self, inner: Any, wrap: Callable[..., Any], upscaler: Any = None) -> None:
        self.inner = inner
        self.wrap = wrap
        self.fixed = upscaler

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def upscaler(self, spec: Any, *, tta: bool = False) -> Any:
        real = self.fixed or self.inner.upscaler(spec, tta=tta)
        wrap = self.wrap

        class _Up:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def upscale_file(self, src: Any, dst: Any, **kw: Any) -> Any:
                return wrap(real.upscale_file, src, dst, **kw)

        return _Up()


class _Count:
    """Steps run so far, shared by the copies the Upscaler makes of the network."""

    def __init__(self) -> None:
        self.n = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> _Count:
        return self


class _Sleepy(nn.Module):
    def __init__(self, seconds: float, count: _Count) -> None:
        super().__init__()
        self.seconds = seconds
        self.count = count

    def forward(self, x: Tensor) -> Tensor:
        self.count.n += 1
        time.sleep(self.seconds)
        return x


class SlowNet(nn.Module):
    """``layers`` steps of ``seconds`` each, then nearest x2: one tile takes layers x seconds
    however fast the machine is (a loaded machine only makes it slower)."""

    scale = 2
    arch_id = "slow"

    def __init__(self, layers: int = 500, seconds: float = 0.02) -> None:
        super().__init__()
        self.calls = _Count()
        self.steps = nn.Sequential(*(_Sleepy(seconds, self.calls) for _ in range(layers)))
        self.layers = layers

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(self.steps(x), scale_factor=2, mode="nearest")

    def info(self) -> ArchInfo:
        return ArchInfo("slow", (2,), receptive_radius=0)


def slow_catalog(catalog: Any, net: SlowNet, finished: threading.Event) -> _Wrapped:
    up = Upscaler(net, device="cpu", tile=0)

    def run(real: Any, src: Any, dst: Any, **kw: Any) -> Any:
        try:
            return real(src, dst, **kw)
        finally:
            finished.set()

    return _Wrapped(catalog, run, upscaler=up)


@pytest.fixture
def client(catalog: Any) -> Iterator[Any]:
    with make_client(catalog) as c:
        yield c


@pytest.fixture
def small_png(tmp_path: Path) -> bytes:
    """40x30: a single 32-pixel tile for the fast model (its radius 4 fits in the window)."""
    rng = np.random.default_rng(2)
    return png_bytes(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8), tmp_path / "s.png")


# ----------------------------------------------------------------------------- 3: late cancel


def test_a_cancel_after_the_last_tile_never_becomes_a_result(catalog: Any, rgb_png: bytes) -> None:
    written = threading.Event()
    gate = threading.Event()

    def late(real: Any, src: Any, dst: Any, **kw: Any) -> Any:
        out = real(src, dst, **kw)  # every tile done and the result written
        if not written.is_set():
            written.set()
            gate.wait(20)
        return out

    with make_client(_Wrapped(catalog, late)) as c:
        job = c.post("/v1/jobs", content=rgb_png).json()
        assert written.wait(20)
        r = c.delete(f"/v1/jobs/{job['id']}")
        assert r.status_code == 200 and r.json()["state"] == "cancelled"
        assert c.get(f"/v1/jobs/{job['id']}").json()["state"] == "cancelled"
        gate.set()
        # the one worker runs this only after it let go of the cancelled job
        after = c.post("/v1/jobs", content=rgb_png).json()
        assert wait_state(c, after["id"], "done")["state"] == "done"
        assert c.get(f"/v1/jobs/{job['id']}").json()["state"] == "cancelled"
        r = c.get(f"/v1/jobs/{job['id']}/result")
        assert r.status_code == 409 and error_of(r)["code"] == "cancelled"
        manager = c.app.state.manager  # type: ignore[attr-defined]
        assert leftovers(c) == [manager.get(after["id"]).folder]  # only the later job's result


# ------------------------------------------------------------------------- 7 + 14: in a tile


def test_timeout_stops_the_work_inside_a_tile(catalog: Any, rgb_png: bytes) -> None:
    net = SlowNet()
    finished = threading.Event()
    with make_client(slow_catalog(catalog, net, finished), job_timeout=0.5) as c:
        r = c.post("/v1/upscale", content=rgb_png)
        assert r.status_code == 504 and "0.5 s" in error_of(r)["message"]
        assert finished.wait(30)
        assert net.calls.n < net.layers  # stopped inside its only tile, not after it
        assert leftovers(c) == []


def test_cancel_stops_the_work_inside_a_tile_and_cleans_at_once(
    catalog: Any, rgb_png: bytes
) -> None:
    net = SlowNet()
    finished = threading.Event()
    with make_client(slow_catalog(catalog, net, finished)) as c:
        job = c.post("/v1/jobs", content=rgb_png).json()
        end = time.monotonic() + 30
        while net.calls.n < 3 and time.monotonic() < end:
            time.sleep(0.01)
        st = c.get(f"/v1/jobs/{job['id']}").json()
        assert st["state"] == "running" and st["tiles_total"] == 1
        assert 0.0 < st["progress"] < 1.0  # inside the one tile, progress moves
        r = c.delete(f"/v1/jobs/{job['id']}")
        assert r.status_code == 200 and r.json()["state"] == "cancelled"
        assert leftovers(c) == []  # the folder goes with the answer, not after the work
        assert finished.wait(30)
        assert net.calls.n < net.layers
        assert c.get(f"/v1/jobs/{job['id']}").json()["state"] == "cancelled"
        assert leftovers(c) == []


def test_a_single_tile_job_reports_progress_inside_the_tile(catalog: Any, small_png: bytes) -> None:
    """The real model (no sleeping): one tile, held after its first layer."""
    entered = threading.Event()
    gate = threading.Event()

    def held(real: Any, src: Any, dst: Any, *, tick: Any = None, **kw: Any) -> Any:
        def first_layer(fraction: float) -> None:
            tick(fraction)
            if not entered.is_set():
                entered.set()
                gate.wait(20)

        return real(src, dst, tick=first_layer, **kw)

    with make_client(_Wrapped(catalog, held)) as c:
        job = c.post("/v1/jobs", content=small_png).json()
        assert entered.wait(20)
        st = c.get(f"/v1/jobs/{job['id']}").json()
        assert st["tiles_total"] == 1 and st["tiles_done"] == 0
        assert 0.0 < st["progress"] < 1.0, st
        gate.set()
        assert wait_state(c, job["id"], "done")["progress"] == 1.0


# ----------------------------------------------------------------------------- 7: uploads


def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [*headers, (b"host", b"test")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }


async def _call(app: Any, scope: dict[str, Any], receive: Any) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(sent[0]["status"]), body


def _stalled_upload(
    app: Any, data: bytes, part: int, stalled: asyncio.Event, go: asyncio.Event
) -> Any:
    """A chunked upload (no Content-Length) that sends ``part`` bytes, then sets ``stalled``
    when the server asks for more and waits for ``go``."""
    chunks = [data[:part], data[part:]]

    async def receive() -> dict[str, Any]:
        if not chunks:
            await asyncio.Event().wait()  # the client stays connected
        if len(chunks) == 1:
            stalled.set()
            await go.wait()
        body = chunks.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    return _call(app, _scope("/v1/upscale", []), receive)


def _full_upload(app: Any, data: bytes) -> Any:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # the client stays connected
        sent = True
        return {"type": "http.request", "body": data, "more_body": False}

    headers = [(b"content-length", str(len(data)).encode())]
    return _call(app, _scope("/v1/upscale", headers), receive)


def _run_with_a_stalled_upload(app: Any, data: bytes, part: int) -> tuple[Any, Any, Any]:
    """While one upload is stalled after ``part`` bytes, send a second and a third; returns
    (second, the stalled one once released, third after it)."""

    async def go() -> tuple[Any, Any, Any]:
        stalled, release = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(_stalled_upload(app, data, part, stalled, release))
        await asyncio.wait_for(stalled.wait(), 30)
        second = await _full_upload(app, data)
        release.set()
        first = await task
        third = await _full_upload(app, data)
        return second, first, third

    return asyncio.run(go())


def _busy(status_body: tuple[int, bytes], needle: str) -> None:
    import json

    status, body = status_body
    assert status == 503, body[:200]
    err = json.loads(body)["error"]
    assert err["code"] == "busy" and needle in err["message"], err


def test_an_upload_in_progress_holds_a_queue_slot(catalog: Any, rgb_png: bytes) -> None:
    cfg = ServeConfig(models=tuple(catalog.families), device="cpu", tile=TILE, queue=0)
    app = create_app(cfg, catalog=catalog)
    try:
        second, first, third = _run_with_a_stalled_upload(app, rgb_png, len(rgb_png) // 2)
        _busy(second, "slot")
        assert first[0] == 200 and third[0] == 200
        assert app.state.manager.held_bytes() == 0
    finally:
        app.state.manager.shutdown()


def test_upload_bytes_are_counted_as_they_stream_in(catalog: Any, rgb_png: bytes) -> None:
    budget = len(rgb_png) * 3 // 2
    cfg = ServeConfig(
        models=tuple(catalog.families),
        device="cpu",
        tile=TILE,
        max_bytes=len(rgb_png),
        queue_bytes=budget,
    )
    app = create_app(cfg, catalog=catalog)
    try:
        second, first, third = _run_with_a_stalled_upload(app, rgb_png, len(rgb_png) * 4 // 5)
        _busy(second, "bytes")
        assert first[0] == 200 and third[0] == 200
        assert app.state.manager.held_bytes() == 0
        assert list(app.state.manager.root.iterdir()) == []
    finally:
        app.state.manager.shutdown()


def test_queue_bytes_must_hold_one_upload() -> None:
    from sisr.errors import ConfigError

    with pytest.raises(ConfigError, match="--queue-bytes"):
        ServeConfig(device="cpu", max_bytes=1000, queue_bytes=999)


# ----------------------------------------------------------------------------- 6: full disk


def test_a_full_temporary_disk_is_507_and_the_server_stays_up(
    catalog: Any, rgb_png: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sisr.infer import tiling

    small = tmp_path / "small"
    small.mkdir()
    real_usage = shutil.disk_usage

    def usage(path: Any) -> Any:
        free = 1000 if str(path).startswith(str(small)) else None
        u = real_usage(path)
        return u if free is None else u._replace(free=free)

    up = catalog.upscaler(catalog.lookup(None, None))
    with make_client(catalog) as c:
        monkeypatch.setattr(up, "memmap_threshold", 1000)  # the x2 output is 18 KB
        monkeypatch.setattr(tempfile, "tempdir", str(small))
        monkeypatch.setattr(shutil, "disk_usage", usage)
        monkeypatch.setattr(tiling, "ram_fallback_budget", lambda: 0, raising=False)
        r = c.post("/v1/upscale", content=rgb_png)
        assert r.status_code == 507, r.text
        err = error_of(r)
        assert err["code"] == "insufficient_storage"
        assert "no room" in err["message"] and str(small) not in err["message"]
        assert leftovers(c) == [] and list(small.iterdir()) == []
        monkeypatch.undo()
        assert c.post("/v1/upscale", content=rgb_png).status_code == 200


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_full_disk_while_storing_the_upload_is_507(
    catalog: Any, rgb_png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    with make_client(catalog) as c:
        manager = c.app.state.manager  # type: ignore[attr-defined]
        real = manager.new_folder

        def full_folder() -> Path:
            folder = real()
            (folder / "upload").symlink_to("/dev/full")  # every write: ENOSPC
            return folder

        monkeypatch.setattr(manager, "new_folder", full_folder)
        for kw in ({"content": rgb_png}, {"files": {"file": ("a.png", rgb_png, "image/png")}}):
            r = c.post("/v1/upscale", **kw)
            assert r.status_code == 507, r.text
            err = error_of(r)
            assert err["code"] == "insufficient_storage" and "/" not in err["message"]
        assert leftovers(c) == [] and manager.held_bytes() == 0


def test_a_full_disk_while_writing_the_result_is_507(
    catalog: Any, rgb_png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sisr.io.image
    from sisr.errors import ImageError

    def full(path: Any, *args: Any, **kwargs: Any) -> None:
        raise ImageError(path, "cannot write image (No space left on device)")

    with make_client(catalog) as c:
        monkeypatch.setattr(sisr.io.image, "write_pixels", full)
        job = c.post("/v1/jobs", content=rgb_png).json()
        st = wait_state(c, job["id"], "failed")
        assert st["error"]["status"] == 507
        r = c.get(f"/v1/jobs/{job['id']}/result")
        assert r.status_code == 507 and error_of(r)["code"] == "insufficient_storage"
        assert leftovers(c) == []


# ----------------------------------------------------------------------------- 10: query


@pytest.mark.parametrize(
    ("method", "path", "query", "name"),
    [
        ("POST", "/v1/upscale", "foo=1", "foo"),
        ("POST", "/v1/upscale", "tile=-5", "tile"),
        ("POST", "/v1/upscale", "device=cuda", "device"),
        ("POST", "/v1/upscale", "scale=2&scale=3", "scale"),
        ("POST", "/v1/upscale", "model=", "model"),
        ("POST", "/v1/upscale", "tta=maybe", "tta"),
        ("POST", "/v1/jobs", "foo=1", "foo"),
        ("POST", "/v1/jobs", "quality=0", "quality"),
        ("GET", "/v1/models", "foo=1", "foo"),
        ("GET", "/v1/jobs/abc", "verbose=1", "verbose"),
        ("GET", "/v1/jobs/abc/result", "x=", "x"),
        ("DELETE", "/v1/jobs/abc", "force=1", "force"),
        ("GET", "/healthz", "foo=1", "foo"),
        ("GET", "/metrics", "foo=1", "foo"),
        ("GET", "/", "foo=1", "foo"),
        ("GET", "/docs", "foo=1", "foo"),
        ("GET", "/openapi.json", "foo=1", "foo"),
    ],
)
def test_query_parameters_are_validated_on_every_endpoint(
    client: Any, rgb_png: bytes, method: str, path: str, query: str, name: str
) -> None:
    r = client.request(method, f"{path}?{query}", content=rgb_png if method == "POST" else None)
    assert r.status_code == 422, r.text
    err = error_of(r)
    assert err["code"] == "invalid" and f"{name}" in err["message"]
    assert leftovers(client) == []


# ----------------------------------------------------------------------------- 9: sisr serve


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch, catalog: Any) -> list[Any]:
    """``uvicorn.run`` recorded instead of started; the shared catalog instead of loading."""
    import uvicorn

    import sisr.serve.app as serve_app

    calls: list[Any] = []

    def fake_run(app: Any, **kw: Any) -> None:
        calls.append(kw)
        app.state.manager.shutdown()

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setattr(serve_app, "Catalog", lambda *a, **k: catalog)
    return calls


def _taken_port() -> tuple[socket.socket, int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s, int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--port", "99999"], "--port must be in 0..65535, got 99999"),
        (["--port", "-1"], "--port"),
        (["--device", "cuda"], "CUDA is not available"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--log-level", "loud"], "--log-level"),
        (["--job-timeout", "nan"], "--job-timeout"),
        (["--host", "no such host!"], "no such host!"),
        (["--queue-bytes", "10"], "--queue-bytes"),
    ],
)
def test_serve_flags_are_checked_before_starting(
    no_server: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    needle: str,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where a server's folder would go
    assert cli_main(["serve", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and err.startswith("sisr serve: error:"), err
    assert no_server == []  # nothing was started
    assert list(tmp_path.iterdir()) == []


def test_serve_on_a_port_in_use_is_one_line(
    no_server: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    sock, port = _taken_port()
    with sock:
        assert cli_main(["serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"127.0.0.1:{port}" in err, err
    assert no_server == []
