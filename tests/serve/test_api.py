"""The REST API through FastAPI's TestClient: every status code, jobs, cancel, cleanup, token."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip(
    "fastapi", reason="the 'serve' extra is not installed (pip install -e .[serve])"
)
pytest.importorskip("multipart", reason="python-multipart (serve extra) is not installed")
pytest.importorskip("httpx", reason="httpx (test extra) is needed for FastAPI's TestClient")

from fastapi.testclient import TestClient
from PIL import Image, ImageCms

from sisr.cli.main import main as cli_main
from sisr.io import read_native
from sisr.serve import ServeConfig, create_app
from tests.serve.conftest import TILE, Gated, default_model, png_bytes


def make_client(catalog: Any, **overrides: Any) -> TestClient:
    cfg = ServeConfig(models=tuple(catalog.families), device="cpu", tile=TILE, **overrides)
    return TestClient(create_app(cfg, catalog=catalog))


@pytest.fixture
def client(catalog: Any) -> Iterator[TestClient]:
    with make_client(catalog) as c:
        yield c


def leftovers(c: TestClient) -> list[Path]:
    return list(c.app.state.manager.root.iterdir())  # type: ignore[attr-defined]


def wait_state(c: TestClient, job_id: str, *states: str, timeout: float = 20.0) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        st = c.get(f"/v1/jobs/{job_id}").json()
        if st["state"] in states:
            return st
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never reached {states}: {st}")


def error_of(r: Any) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"error"}, body
    assert body["error"]["status"] == r.status_code
    return body["error"]


def cli_upscale(tmp_path: Path, data: bytes, name: str, *extra: str) -> Any:
    src = tmp_path / f"cli_in_{name}"
    src.write_bytes(data)
    dst = tmp_path / f"cli_out_{name}"
    args = ["upscale", "-i", str(src), "-o", str(dst), "-q", "-t", str(TILE), "-n", default_model()]
    assert cli_main([*args, *extra]) == 0
    return read_native(dst)


# ----------------------------------------------------------------------------- basics


def test_health_docs_and_page(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for p in (
        "/v1/models",
        "/v1/upscale",
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/result",
    ):
        assert p in paths
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert (
        "/static/app.js" in page.text
        and "http" not in page.text.split("<body>")[1].split("docs")[0]
    )
    for asset in ("/static/app.js", "/static/app.css"):
        r = client.get(asset)
        assert r.status_code == 200 and len(r.content) > 1000
        assert "https://" not in r.text  # works offline: nothing from a CDN


def test_models_report_scales_parameters_and_measured_psnr(
    client: TestClient, catalog: Any
) -> None:
    from sisr.hub.load import resolve_weights
    from sisr.hub.weights import read_metadata

    body = client.get("/v1/models").json()
    fam = next(f for f in body["families"] if f["name"] == body["default"])
    assert fam["scales"] and fam["default_scale"] in fam["scales"]
    by_name = {m["name"]: m for m in body["models"]}
    for s in fam["scales"]:
        m = next(v for v in body["models"] if v["family"] == fam["name"] and v["scale"] == s)
        assert m["parameters"] > 1000
        meta = read_metadata(resolve_weights(catalog.specs[m["name"]].source))
        first = meta["metrics"][0]  # training exports say psnr, tools/finalize.py psnr_y
        want = first.get("psnr", first.get("psnr_y"))
        assert m["metrics"][0]["psnr"] == pytest.approx(want, abs=1e-3)
    assert any(m["reference"] and m["arch"] == "bicubic" for m in by_name.values())
    assert body["limits"]["max_pixels"] == 16_000_000


# ----------------------------------------------------------------------------- upscale


@pytest.mark.parametrize("kind", ["rgba16_icc", "gray8", "rgb8"])
def test_upscale_matches_the_cli_exactly(client: TestClient, tmp_path: Path, kind: str) -> None:
    """Alpha, 16-bit, gray and ICC come back exactly as `sisr upscale` writes them."""
    rng = np.random.default_rng(1)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    if kind == "rgba16_icc":
        arr = rng.integers(0, 65536, (40, 36, 4), dtype=np.uint16)
        data = png_bytes(arr, tmp_path / "a.png", icc_profile=icc)
    elif kind == "gray8":
        data = png_bytes(rng.integers(0, 256, (40, 36), dtype=np.uint8), tmp_path / "a.png")
    else:
        data = png_bytes(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8), tmp_path / "a.png")
    r = client.post("/v1/upscale", files={"file": ("photo.png", data, "image/png")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert r.headers["content-disposition"] == 'attachment; filename="photo_x2.png"'
    (tmp_path / "api.png").write_bytes(r.content)
    got = read_native(tmp_path / "api.png")
    want = cli_upscale(tmp_path, data, "a.png")
    assert got.color.shape == (80, 72, 3) if kind != "gray8" else (80, 72)
    np.testing.assert_array_equal(got.color, want.color)
    assert got.meta.bit_depth == want.meta.bit_depth == (16 if kind == "rgba16_icc" else 8)
    assert got.meta.is_gray == (kind == "gray8")
    if kind == "rgba16_icc":
        np.testing.assert_array_equal(got.alpha, want.alpha)
        assert got.meta.icc_profile == icc == want.meta.icc_profile
    else:
        assert got.alpha is None


def test_raw_body_scale_and_format(client: TestClient, rgb_png: bytes, tmp_path: Path) -> None:
    fam = client.get("/v1/models").json()["families"][0]
    s = max(fam["scales"])
    r = client.post(f"/v1/upscale?scale={s}&format=jpg&filename=x.png", content=rgb_png)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["content-disposition"] == f'attachment; filename="x_x{s}.jpg"'
    assert Image.open(io.BytesIO(r.content)).size == (48 * s, 64 * s)
    r = client.post("/v1/upscale?model=bicubic&scale=2&format=webp", content=rgb_png)
    assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
    assert r.headers["x-sisr-model"] == "bicubic-x2"


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("model=/etc/passwd", "unknown model '/etc/passwd'"),
        ("model=../src/sisr/hub/weights/espcn-x2.safetensors", "unknown model"),
        ("model=fast-x2&scale=3", "is x2, not x3"),
        ("scale=0", "scale"),
        ("scale=17", "scale"),
        ("scale=2&width=100", "not both"),
        ("width=0", "width"),
        ("format=gif", "format"),
        ("quality=101", "quality"),
    ],
)
def test_bad_parameters_are_422(
    client: TestClient, rgb_png: bytes, query: str, needle: str
) -> None:
    r = client.post(f"/v1/upscale?{query}", content=rgb_png)
    assert r.status_code == 422
    assert needle in error_of(r)["message"]
    assert leftovers(client) == []


def test_not_an_image_is_415_and_corrupt_is_422(client: TestClient, rgb_png: bytes) -> None:
    r = client.post("/v1/upscale", files={"file": ("notes.txt", b"hello world", "text/plain")})
    assert r.status_code == 415
    assert error_of(r)["message"].startswith("notes.txt: not an image")
    cut = rgb_png[: len(rgb_png) // 2]  # a PNG cut in the middle: the reader's CRC/IEND check
    r = client.post("/v1/upscale", files={"file": ("cut.png", cut, "image/png")})
    assert r.status_code == 422, r.text
    msg = error_of(r)["message"]
    assert msg.startswith("cut.png: ") and "/tmp" not in msg  # no server paths leak
    r = client.post("/v1/upscale", content=b"")
    assert r.status_code == 422 and "empty" in error_of(r)["message"]
    assert leftovers(client) == []


def test_limits_are_413(catalog: Any, rgb_png: bytes, tmp_path: Path) -> None:
    with make_client(catalog, max_bytes=len(rgb_png) - 1, max_pixels=64 * 48 - 1) as c:
        r = c.post("/v1/upscale", content=rgb_png)  # Content-Length above the limit
        assert r.status_code == 413 and "above the limit" in error_of(r)["message"]

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted while streaming
            yield rgb_png[:100]
            yield rgb_png[100:]

        r = c.post("/v1/upscale", content=chunked())
        assert r.status_code == 413
        r = c.post("/v1/upscale", files={"file": ("big.png", rgb_png + b"x" * 20000, "image/png")})
        assert r.status_code == 413
        assert leftovers(c) == []
    with make_client(catalog, max_pixels=64 * 48 - 1) as c:
        r = c.post("/v1/jobs", files={"file": ("wide.png", rgb_png, "image/png")})
        assert r.status_code == 413
        err = error_of(r)
        assert err["code"] == "too_many_pixels" and "48x64" in err["message"]
        assert leftovers(c) == []


# ----------------------------------------------------------------------------- jobs


def test_job_progress_result_and_delete(client: TestClient, rgb_png: bytes) -> None:
    r = client.post("/v1/jobs", files={"file": ("j.png", rgb_png, "image/png")})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    st = wait_state(client, job["id"], "done", "failed")
    assert st["state"] == "done" and st["progress"] == 1.0
    assert st["tiles_total"] == 4 and st["tiles_done"] == 4  # 64x48 in 32-pixel tiles
    res = client.get(f"/v1/jobs/{job['id']}/result")
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    sync = client.post("/v1/upscale", files={"file": ("j.png", rgb_png, "image/png")})
    a = np.asarray(Image.open(io.BytesIO(res.content)))
    b = np.asarray(Image.open(io.BytesIO(sync.content)))
    np.testing.assert_array_equal(a, b)
    assert len(leftovers(client)) == 1  # the job's result waits for download
    r = client.delete(f"/v1/jobs/{job['id']}")
    assert r.status_code == 200 and r.json()["state"] == "deleted"
    assert leftovers(client) == []
    assert client.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert client.get(f"/v1/jobs/{job['id']}/result").status_code == 404
    assert client.delete("/v1/jobs/nope").status_code == 404


def test_cancel_a_running_job_between_tiles(catalog: Any, rgb_png: bytes) -> None:
    gated = Gated(catalog)
    with make_client(gated) as c:
        job = c.post("/v1/jobs", content=rgb_png).json()
        assert gated.entered.wait(20)
        st = c.get(f"/v1/jobs/{job['id']}").json()
        assert st["state"] == "running" and st["tiles_total"] == 4
        assert c.get(f"/v1/jobs/{job['id']}/result").status_code == 409
        r = c.delete(f"/v1/jobs/{job['id']}")
        assert r.status_code == 200 and r.json()["state"] == "cancelled"
        gated.gate.set()
        st = wait_state(c, job["id"], "cancelled")
        assert st["tiles_done"] < st["tiles_total"]  # it stopped, it did not finish
        assert c.get(f"/v1/jobs/{job['id']}/result").status_code == 409
        assert leftovers(c) == []
        metrics = c.get("/metrics").text
    assert 'sisr_jobs_total{state="cancelled"} 1' in metrics


def test_queue_full_is_503_with_retry_after(catalog: Any, rgb_png: bytes) -> None:
    gated = Gated(catalog)
    with make_client(gated, workers=1, queue=1) as c:
        first = c.post("/v1/jobs", content=rgb_png)
        assert first.status_code == 202
        assert gated.entered.wait(20)
        second = c.post("/v1/jobs", content=rgb_png)
        assert second.status_code == 202  # waits in the queue
        for path in ("/v1/jobs", "/v1/upscale"):
            r = c.post(path, content=rgb_png)
            assert r.status_code == 503
            assert int(r.headers["retry-after"]) >= 1
            assert error_of(r)["code"] == "busy"
        metrics = c.get("/metrics").text
        assert "sisr_queue_depth 1" in metrics and "sisr_jobs_in_flight 1" in metrics
        gated.gate.set()
        for r in (first, second):
            assert wait_state(c, r.json()["id"], "done")["progress"] == 1.0
        assert len(leftovers(c)) == 2
    assert not c.app.state.manager.root.exists()  # shutdown removes everything


def test_job_timeout(catalog: Any, rgb_png: bytes) -> None:
    gated = Gated(catalog, delay=0.3)
    gated.gate.set()
    with make_client(gated, job_timeout=0.2) as c:
        r = c.post("/v1/upscale", content=rgb_png)
        assert r.status_code == 504 and "0.2 s" in error_of(r)["message"]
        job = c.post("/v1/jobs", content=rgb_png).json()
        st = wait_state(c, job["id"], "timeout")
        assert st["error"]["status"] == 504
        assert c.get(f"/v1/jobs/{job['id']}/result").status_code == 504
        assert leftovers(c) == []
        assert 'sisr_job_failures_total{status="504"} 2' in c.get("/metrics").text


def test_concurrent_requests(catalog: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    images = [
        png_bytes(rng.integers(0, 256, (24 + i, 20, 3), dtype=np.uint8), tmp_path / f"{i}.png")
        for i in range(8)
    ]
    results: dict[int, Any] = {}
    with make_client(catalog, workers=2, queue=8) as c:

        def one(i: int) -> None:
            results[i] = c.post("/v1/upscale", files={"file": (f"{i}.png", images[i], "image/png")})

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for i, r in results.items():
            assert r.status_code == 200, r.text
            assert Image.open(io.BytesIO(r.content)).size == (40, 2 * (24 + i))
        assert len(results) == 8
        assert leftovers(c) == []
        assert 'route="/v1/upscale",status="200"} 8' in c.get("/metrics").text


def test_token(catalog: Any, rgb_png: bytes) -> None:
    with make_client(catalog, token="s3cret") as c:
        assert c.get("/healthz").status_code == 200  # liveness stays open
        assert c.get("/").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            r = c.get("/v1/models", headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            assert error_of(r)["code"] == "unauthorized"
        assert c.post("/v1/upscale", content=rgb_png).status_code == 401
        assert c.get("/metrics").status_code == 401
        ok = {"Authorization": "Bearer s3cret"}
        assert c.get("/v1/models", headers=ok).status_code == 200
        assert c.post("/v1/upscale", content=rgb_png, headers=ok).status_code == 200
        assert leftovers(c) == []


def test_client_disconnect_cancels_and_cleans(catalog: Any, rgb_png: bytes) -> None:
    """Drive the ASGI app directly: the body arrives, then the client goes away."""
    gated = Gated(catalog)
    cfg = ServeConfig(models=tuple(catalog.families), device="cpu", tile=TILE)
    app = create_app(cfg, catalog=gated)
    manager = app.state.manager
    sent: list[dict[str, Any]] = []

    async def go() -> None:
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": rgb_png, "more_body": False}
            # like uvicorn: a pending disconnect is answered at once, otherwise wait
            while not gated.entered.is_set():
                await asyncio.sleep(0.01)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/upscale",
            "raw_path": b"/v1/upscale",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-length", str(len(rgb_png)).encode()), (b"host", b"test")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        await app(scope, receive, send)

    asyncio.run(go())
    gated.gate.set()
    assert sent[0]["status"] == 499
    end = time.monotonic() + 20
    while manager.counts() != (0, 0) and time.monotonic() < end:
        time.sleep(0.02)
    assert manager.counts() == (0, 0)
    assert list(manager.root.iterdir()) == []
    manager.shutdown()


def test_metrics_prometheus_text(client: TestClient, rgb_png: bytes) -> None:
    client.post("/v1/upscale", content=rgb_png)
    client.post("/v1/upscale", content=b"nope")
    text = client.get("/metrics").text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE sisr_http_requests_total counter" in text
    assert 'sisr_http_requests_total{method="POST",route="/v1/upscale",status="200"} 1' in text
    assert 'sisr_http_requests_total{method="POST",route="/v1/upscale",status="415"} 1' in text
    assert "# TYPE sisr_http_request_duration_seconds histogram" in text
    assert 'sisr_http_request_duration_seconds_bucket{le="+Inf"}' in text
    for gauge in ("sisr_queue_depth 0", "sisr_jobs_in_flight 0", "sisr_workers 1"):
        assert gauge in text
    assert 'sisr_job_failures_total{status="415"}' not in text  # refused before queueing


def test_unknown_route_is_json_404(client: TestClient) -> None:
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    assert json.loads(r.text)


# ----------------------------------------------------------------------------- CLI


def test_cli_warns_for_public_host_without_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], catalog: Any
) -> None:
    import uvicorn

    import sisr.serve.app as serve_app
    import sisr.serve.config as serve_config

    calls: list[dict[str, Any]] = []

    def fake_run(app: Any, **kw: Any) -> None:
        calls.append(kw)
        app.state.manager.shutdown()  # no lifespan ran: remove its temporary folder here

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setattr(serve_app, "Catalog", lambda *a, **k: catalog)
    # whether these ports are free here is beside the point (tests/serve/test_hardening.py)
    monkeypatch.setattr(serve_config, "check_listen", lambda *a: None)
    assert cli_main(["serve", "--host", "0.0.0.0", "--port", "8123"]) == 0
    assert "without --token" in capsys.readouterr().err
    assert calls[-1]["host"] == "0.0.0.0" and calls[-1]["port"] == 8123
    assert cli_main(["serve"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 8000
    assert cli_main(["serve", "--workers", "0"]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err


def test_default_family_is_served_with_its_measured_psnr() -> None:
    from sisr.serve.catalog import Catalog

    cat = Catalog(("default",), device="cpu", tile=0)
    cat.load_all()
    with make_client(cat) as c:
        body = c.get("/v1/models").json()
    text = json.dumps(body)
    assert '"default"' in text
    # default-x2's Set5 Y-PSNR, as its metadata records it
    from sisr.hub.names import WEIGHTS, shipped_path
    from sisr.hub.weights import read_metadata

    meta = read_metadata(shipped_path(WEIGHTS["default-x2"]))
    set5 = next(r["psnr_y"] for r in meta["metrics"] if r["dataset"] == "Set5")
    served = next(m for m in body["models"] if m["name"] == "default-x2")
    assert any(r.get("psnr") == pytest.approx(set5, abs=1e-3) for r in served["metrics"])


def test_any_output_size(client: TestClient, rgb_png: bytes) -> None:
    """Issue 21, item 2: a factor no weights have, or a width / height / longest side; the
    download is named after it, and a size beyond x16 is refused."""
    src = Image.open(io.BytesIO(rgb_png))
    w, h = src.size
    for query, size, tag in [
        ("scale=1.5", (round(w * 1.5), round(h * 1.5)), "x1.5"),
        ("scale=8", (w * 8, h * 8), "x8"),
        (f"width={w * 3}", (w * 3, h * 3), f"w{w * 3}"),
        (f"max_side={max(w, h) * 2 + 1}&height={h * 5}", None, None),
    ]:
        r = client.post(f"/v1/upscale?model=bicubic&{query}&filename=x.png", content=rgb_png)
        assert r.status_code == 200, (query, r.text)
        out = Image.open(io.BytesIO(r.content))
        if size is not None:
            assert out.size == size, query
            assert f'filename="x_{tag}.png"' in r.headers["content-disposition"]
        else:
            assert max(out.size) == max(w, h) * 2 + 1
    r = client.post("/v1/jobs?model=bicubic&scale=2.5", content=rgb_png)
    assert r.status_code == 202 and r.json()["size"] == "x2.5"
    assert client.delete(f"/v1/jobs/{r.json()['id']}").status_code == 200
    big = client.post("/v1/upscale?model=bicubic&width=131072", content=rgb_png)
    assert big.status_code == 422 and "more than x16" in error_of(big)["message"]
    assert leftovers(client) == []
