"""The web page in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

Uploads an image through the page, waits for the job, downloads the result and checks its
pixels against the API's answer and the shown image's size. The page's screenshot goes to
``$SISR_SCREENSHOT`` when set (the README's ``assets/webui.png`` is made this way).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sisr.io import read_native
from tests.serve.conftest import default_model

pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
pytest.importorskip("multipart", reason="python-multipart (serve extra) is not installed")
playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (test extra)"
)
uvicorn = pytest.importorskip("uvicorn", reason="the 'serve' extra is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (test extra) is not installed")

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "assets" / "sample.png"


def _chromium() -> str:
    for cand in (os.environ.get("SISR_CHROMIUM"), "chromium", "chromium-browser"):
        if cand and (path := shutil.which(cand)):
            return path
    pytest.skip(
        "no Chromium found (apt-get install chromium, as .ci/run does; or set SISR_CHROMIUM)"
    )


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The real app on uvicorn, on a free 127.0.0.1 port, in a background thread (tiles of
    128 pixels: the sample image is a few progress steps)."""
    from sisr.serve import ServeConfig, create_app

    # The README's screenshot shows what a user gets: the built-in default family first.
    shot = os.environ.get("SISR_SCREENSHOT")
    cfg = ServeConfig(
        models=("default", default_model()) if shot else (default_model(),), device="cpu", tile=128
    )
    app = create_app(cfg)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    end = time.monotonic() + 30
    while not srv.started and time.monotonic() < end:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(30)
    sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    exe = _chromium()
    with playwright_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(
                executable_path=exe, headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
        except Exception as exc:  # installed but broken is a failure, not a skip
            pytest.fail(f"Chromium at {exe} is installed but does not start: {exc}")
        yield b
        b.close()


def test_page_upscales_downloads_and_shows_the_result(
    server: str, browser: Any, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 820}, accept_downloads=True)
    page.goto(server + "/")
    page.wait_for_function("document.querySelectorAll('#model option').length > 0")

    # A readable error for a file that is not an image.
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    page.set_input_files("#file", str(notes))
    page.click("#go")
    page.wait_for_selector("#error:not([hidden])")
    assert page.get_attribute("#error", "data-code") == "unsupported_media_type"
    assert "not an image" in page.inner_text("#error")

    # The real upload: file picker, default model and scale, job progress, result.
    page.set_input_files("#file", str(SAMPLE))
    page.wait_for_function("document.querySelector('#file-info').textContent.includes('x')")
    model = page.input_value("#model")
    scale = int(page.input_value("#scale"))
    page.focus("#go")
    page.keyboard.press("Enter")  # usable with the keyboard
    page.wait_for_selector("#download:not(.disabled)", timeout=60_000)
    assert page.is_hidden("#error")
    assert page.evaluate("document.querySelector('#progress').value") == 1

    src = read_native(SAMPLE)
    want_hw = (src.meta.height * scale, src.meta.width * scale)
    shown = page.evaluate(
        "[document.querySelector('#result-after').naturalHeight,"
        " document.querySelector('#result-after').naturalWidth]"
    )
    assert tuple(shown) == want_hw

    with page.expect_download() as info:
        page.click("#download")
    download = info.value
    got_path = tmp_path / download.suggested_filename
    download.save_as(got_path)
    assert download.suggested_filename == f"{SAMPLE.stem}_x{scale}.png"

    api = httpx.post(
        f"{server}/v1/upscale",
        params={"model": model, "scale": scale},
        files={"file": (SAMPLE.name, SAMPLE.read_bytes(), "image/png")},
        timeout=60,
    )
    assert api.status_code == 200
    api_path = tmp_path / "api.png"
    api_path.write_bytes(api.content)
    got, want = read_native(got_path), read_native(api_path)
    assert got.color.shape[:2] == want_hw
    np.testing.assert_array_equal(got.color, want.color)

    # The before/after split answers the keyboard.
    page.focus("#split")
    before = int(page.input_value("#split"))
    page.keyboard.press("ArrowLeft")
    assert int(page.input_value("#split")) == before - 1
    page.fill("#split", "45")
    page.dispatch_event("#split", "input")
    page.evaluate("document.activeElement.blur()")  # no focus ring in the screenshot

    shot = Path(os.environ.get("SISR_SCREENSHOT") or tmp_path / "webui.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A factor no weights have: resized on the server, and the bicubic reference alike.
    page.select_option("#scale", "1.5")
    page.focus("#go")
    page.keyboard.press("Enter")
    want_w = round(src.meta.width * 1.5)
    page.wait_for_function(
        f"document.querySelector('#result-after').naturalWidth === {want_w}", timeout=60_000
    )
    assert page.evaluate("document.querySelector('#result-before').naturalWidth") == want_w
    assert page.is_hidden("#error")
    page.close()
