"""Load test of ``sisr serve`` on 127.0.0.1: many small images from concurrent clients, then
a few large ones through the job API. Bounded in count and in time; prints throughput,
latency percentiles, responses by status and the server's peak RSS.

    python benchmarks/serve_load.py                       # 200 small / 50 clients, 10 large
    python benchmarks/serve_load.py --small 50 --large 2 --large-size 512x384
    python benchmarks/serve_load.py --audit               # the hardening audit's cases

``--audit`` instead measures what the hardening audit measured: the server's peak RSS for
one 1990x1990 job on the CPU and how often its progress moved, seconds from DELETE to the
answer and until the worker is free again, and seconds from ``--job-timeout`` to the 504.

Pass means: no 5xx other than 503 (the queue-full answer, retried after Retry-After),
every accepted request answered with a correct image, and the server's peak RSS under
``--max-rss-mb``. Needs the ``serve`` extra and httpx. Not a test: it prints numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

try:
    import httpx
except ImportError:  # pragma: no cover
    sys.exit("serve_load.py needs httpx: pip install -e '.[test]'")


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)  # accepted requests, end to end
    statuses: Counter[int] = field(default_factory=Counter)  # every response, retries too
    errors: list[str] = field(default_factory=list)  # transport failures, bad images
    ok: int = 0
    wall: float = 0.0


def _png(w: int, h: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    # smooth content plus noise: compresses like a photo, not like pure noise
    yy, xx = np.mgrid[0:h, 0:w]
    base = (127 + 80 * np.sin(xx / 17.0 + seed) * np.cos(yy / 23.0))[..., None]
    arr = np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_rss_mb(pid: int, key: str = "VmHWM") -> float | None:
    """VmHWM (the kernel's peak resident set; VmRSS: the current one) of the server process,
    Linux only."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@contextlib.contextmanager
def _server(extra: list[str]) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A ``sisr serve`` subprocess on a free local port, stopped on exit."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "sisr", "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--log-level", "warning", *extra]
    print("server:", " ".join(cmd[1:]))
    server = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        start = time.monotonic()
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() - start > 60:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        print(
            f"started in {time.monotonic() - start:.1f} s, baseline RSS "
            f"{_peak_rss_mb(server.pid) or float('nan'):.0f} MiB"
        )
        yield server, base
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


async def _post_retrying(
    client: httpx.AsyncClient, url: str, data: bytes, phase: Phase, retries: int, max_wait: float
) -> httpx.Response | None:
    for _ in range(retries + 1):
        r = await client.post(url, files={"file": ("img.png", data, "image/png")})
        phase.statuses[r.status_code] += 1
        if r.status_code != 503:
            return r
        await asyncio.sleep(min(max_wait, float(r.headers.get("retry-after", "1"))))
    phase.errors.append(f"{url}: still 503 after {retries} retries")
    return None


def _check_image(content: bytes, size: tuple[int, int], phase: Phase) -> bool:
    try:
        got = Image.open(io.BytesIO(content)).size
    except Exception as exc:
        phase.errors.append(f"undecodable result: {exc}")
        return False
    if got != size:
        phase.errors.append(f"result is {got}, expected {size}")
        return False
    return True


async def small_phase(base: str, args: argparse.Namespace, deadline: float) -> Phase:
    phase = Phase("small")
    w, h = args.small_size
    images = [_png(w, h, i) for i in range(min(args.small, 32))]
    todo: asyncio.Queue[int] = asyncio.Queue()
    for i in range(args.small):
        todo.put_nowait(i)
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            try:
                i = todo.get_nowait()
            except asyncio.QueueEmpty:
                return
            t0 = time.perf_counter()
            try:
                r = await _post_retrying(
                    client, f"{base}/v1/upscale", images[i % len(images)], phase, args.retries, 2.0
                )
            except httpx.HTTPError as exc:
                phase.errors.append(f"request {i}: {type(exc).__name__}: {exc}")
                continue
            if r is None:
                continue
            phase.latencies.append(time.perf_counter() - t0)
            if r.status_code == 200 and _check_image(r.content, (w * 2, h * 2), phase):
                phase.ok += 1

    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=args.timeout, limits=limits) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(args.clients)))
    phase.wall = time.perf_counter() - t0
    return phase


async def large_phase(base: str, args: argparse.Namespace, deadline: float) -> Phase:
    phase = Phase("large")
    w, h = args.large_size
    images = [_png(w, h, 1000 + i) for i in range(args.large)]

    async def one(client: httpx.AsyncClient, data: bytes) -> None:
        t0 = time.perf_counter()
        try:
            r = await _post_retrying(client, f"{base}/v1/jobs", data, phase, args.retries, 5.0)
            if r is None:
                return
            if r.status_code != 202:
                phase.errors.append(f"job submit: {r.status_code} {r.text[:200]}")
                return
            job = r.json()["id"]
            while time.monotonic() < deadline:
                st = await client.get(f"{base}/v1/jobs/{job}")
                phase.statuses[st.status_code] += 1
                state = st.json()["state"]
                if state not in ("queued", "running"):
                    break
                await asyncio.sleep(0.25)
            else:
                phase.errors.append(f"job {job}: not finished before the time limit")
                await client.delete(f"{base}/v1/jobs/{job}")
                return
            res = await client.get(f"{base}/v1/jobs/{job}/result")
            phase.statuses[res.status_code] += 1
            phase.latencies.append(time.perf_counter() - t0)
            if res.status_code == 200 and _check_image(res.content, (w * 2, h * 2), phase):
                phase.ok += 1
            d = await client.delete(f"{base}/v1/jobs/{job}")
            phase.statuses[d.status_code] += 1
        except httpx.HTTPError as exc:
            phase.errors.append(f"large job: {type(exc).__name__}: {exc}")

    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=args.timeout) as client:
        await asyncio.gather(*(one(client, d) for d in images))
    phase.wall = time.perf_counter() - t0
    return phase


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def report(phase: Phase, expected: int) -> None:
    lat = phase.latencies
    print(f"\n[{phase.name}] {phase.ok}/{expected} images ok in {phase.wall:.1f} s")
    print(f"  throughput   {phase.ok / phase.wall if phase.wall else 0:.2f} images/s")
    print(
        f"  latency      p50 {_pct(lat, 50) * 1e3:.0f} ms, p95 {_pct(lat, 95) * 1e3:.0f} ms, "
        f"p99 {_pct(lat, 99) * 1e3:.0f} ms (end to end, retries included)"
    )
    print("  responses    " + ", ".join(f"{k}: {v}" for k, v in sorted(phase.statuses.items())))
    for e in phase.errors[:10]:
        print(f"  error        {e}")


def _poll(client: httpx.Client, base: str, job: str, until: set[str]) -> tuple[dict, int]:
    """Poll a job every 50 ms until its state is in ``until``; returns the last status and
    how many different progress values were seen on the way."""
    seen: set[float] = set()
    while True:
        st = client.get(f"{base}/v1/jobs/{job}").json()
        seen.add(st["progress"])
        if st["state"] in until:
            return st, len(seen)
        time.sleep(0.05)


def audit(args: argparse.Namespace) -> int:
    w, h = args.audit_size
    data = _png(w, h, 7)
    files = {"file": ("audit.png", data, "image/png")}
    with _server(["--workers", "1"]) as (server, base), httpx.Client(timeout=600) as client:
        rss0 = _peak_rss_mb(server.pid, "VmRSS") or float("nan")
        t0 = time.perf_counter()
        job = client.post(f"{base}/v1/jobs", files=files).json()["id"]
        st, moves = _poll(client, base, job, {"done", "failed", "timeout", "cancelled"})
        took = time.perf_counter() - t0
        peak = _peak_rss_mb(server.pid) or float("nan")
        print(
            f"[audit] one {w}x{h} job: {st['state']} in {took:.1f} s, {st['tiles_total']} "
            f"tile(s), {moves} progress values seen (polled every 50 ms)"
        )
        print(f"        server RSS {rss0:.0f} MiB before, peak {peak:.0f} MiB (VmHWM)")
        client.delete(f"{base}/v1/jobs/{job}")

        job = client.post(f"{base}/v1/jobs", files=files).json()["id"]
        _poll(client, base, job, {"running"})
        time.sleep(1.0)  # well inside its work
        t0 = time.perf_counter()
        answer = client.delete(f"{base}/v1/jobs/{job}").json()["state"]
        t_answer = time.perf_counter() - t0
        # the next job can only start once the (single) worker let go of the cancelled one
        tiny = client.post(f"{base}/v1/jobs", files={"file": ("t.png", _png(8, 8, 1))}).json()
        _poll(client, base, tiny["id"], {"done", "failed"})
        t_free = time.perf_counter() - t0
        print(
            f"[audit] DELETE of a running job: '{answer}' after {t_answer * 1e3:.0f} ms; "
            f"worker free again (next job done) after {t_free:.2f} s"
        )
    extra = ["--workers", "1", "--job-timeout", f"{args.audit_timeout:g}"]
    with _server(extra) as (server, base), httpx.Client(timeout=600) as client:
        t0 = time.perf_counter()
        r = client.post(f"{base}/v1/upscale", files=files)
        took = time.perf_counter() - t0
        print(
            f"[audit] --job-timeout {args.audit_timeout:g}: {r.status_code} after {took:.2f} s "
            f"({took - args.audit_timeout:+.2f} s past the limit, upload included)"
        )
    return 0


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--small", type=int, default=200, help="small images (200)")
    ap.add_argument("--small-size", type=_size, default=(64, 64), help="WxH (64x64)")
    ap.add_argument("--clients", type=int, default=50, help="concurrent clients (50)")
    ap.add_argument("--large", type=int, default=10, help="large images via /v1/jobs (10)")
    ap.add_argument("--large-size", type=_size, default=(1024, 768), help="WxH (1024x768)")
    ap.add_argument("--workers", type=int, default=1, help="server --workers (1)")
    ap.add_argument("--queue", type=int, default=16, help="server --queue (16)")
    ap.add_argument("--retries", type=int, default=60, help="503 retries per request (60)")
    ap.add_argument("--timeout", type=float, default=120.0, help="per request, seconds")
    ap.add_argument("--time-limit", type=float, default=300.0, help="whole run, seconds")
    ap.add_argument("--max-rss-mb", type=float, default=3000.0, help="pass bound on peak RSS")
    ap.add_argument("--audit", action="store_true", help="the hardening audit's measurements")
    ap.add_argument("--audit-size", type=_size, default=(1990, 1990), help="WxH (1990x1990)")
    ap.add_argument("--audit-timeout", type=float, default=3.0, help="--job-timeout (3 s)")
    args = ap.parse_args()
    if args.small > 1000 or args.large > 50 or args.clients > 200:
        ap.error("bounded on purpose: at most 1000 small, 50 large, 200 clients")

    if args.audit:
        return audit(args)
    with _server(["--workers", str(args.workers), "--queue", str(args.queue)]) as (server, base):
        deadline = time.monotonic() + args.time_limit
        small = asyncio.run(small_phase(base, args, deadline))
        report(small, args.small)
        large = asyncio.run(large_phase(base, args, deadline))
        report(large, args.large)
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        peak = _peak_rss_mb(server.pid)

    failures = [m for m in metrics.splitlines() if m.startswith("sisr_job_failures_total{")]
    print(f"\nserver peak RSS {peak if peak is not None else float('nan'):.0f} MiB (VmHWM)")
    print("server job failures:", failures or "none")
    bad5xx = {k: v for p in (small, large) for k, v in p.statuses.items() if k >= 500 and k != 503}
    passed = (
        not bad5xx
        and small.ok == args.small
        and large.ok == args.large
        and not small.errors
        and not large.errors
        and (peak is None or peak <= args.max_rss_mb)
    )
    print(
        f"PASS: {passed} (5xx other than 503: {bad5xx or 'none'}; answered "
        f"{small.ok + large.ok}/{args.small + args.large}; peak RSS bound {args.max_rss_mb:.0f} MiB)"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
