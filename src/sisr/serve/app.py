"""The FastAPI application: the versioned REST API, health, metrics and the web page.

Endpoints (OpenAPI docs at ``/docs``):

* ``GET /v1/models``: the variants this server runs, their families and the limits.
* ``POST /v1/upscale``: upscale one image and answer with it (multipart ``file`` or raw body).
* ``POST /v1/jobs``, ``GET /v1/jobs/{id}``, ``GET /v1/jobs/{id}/result``,
  ``DELETE /v1/jobs/{id}``: the same as a job, with progress in tiles and cancel.
* ``GET /healthz``, ``GET /metrics`` (Prometheus text), ``GET /`` (the page).

Every error is JSON ``{"error": {"status", "code", "message"}}``. Requests are untrusted:
every endpoint refuses query parameters it does not take (422), the body size is checked
and counted against the queue's byte budget while it streams in, the pixel count is read
from the header before any pixel is decoded, and the model is picked from the catalog by
name only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from sisr.errors import ConfigError
from sisr.serve.catalog import Catalog
from sisr.serve.config import ServeConfig
from sisr.serve.errors import STATUS_CODES, ApiError, busy, error_response, no_room
from sisr.serve.jobs import (
    Job,
    JobManager,
    JobRequest,
    QueueFull,
    Reservation,
    State,
)
from sisr.serve.metrics import Metrics
from sisr.serve.params import Asked, Size, pick, size_params
from sisr.serve.uploads import (
    MULTIPART_SLACK,
    ByteCounter,
    copy_limited,
    limited,
    probe,
    safe_name,
)
from sisr.version import __version__

log = logging.getLogger("sisr.serve")
STATIC_DIR = Path(__file__).resolve().parent / "static"
_WAIT_STEP = 0.25  # seconds between a synchronous request's checks (disconnect, deadline)
_MEDIA_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".webp": "image/webp",
    ".tif": "image/tiff",
    ".bmp": "image/bmp",
}
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
OutFormat = Literal["png", "jpg", "webp", "tiff"]


class _Observe:
    """ASGI middleware: counts every answered request by route template and status."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe_request(
                scope.get("method", "?"), route, status, time.perf_counter() - start
            )


# ----------------------------------------------------------------------------- the app


def create_app(config: ServeConfig, catalog: Catalog | None = None) -> FastAPI:
    """Build the app; ``catalog`` lets tests share loaded models between apps."""
    from sisr.infer.runner import output_suffix

    cat = catalog or Catalog(config.models, device=config.device, tile=config.tile)
    metrics: Metrics

    def finished(job: Job) -> None:
        metrics.observe_job(job.state.value, job.error_status)

    budget = config.queue_bytes or config.capacity * (config.max_bytes + MULTIPART_SLACK)
    manager = JobManager(
        cat,
        workers=config.workers,
        capacity=config.capacity,
        job_timeout=config.job_timeout,
        result_ttl=config.result_ttl,
        tmp_dir=config.tmp_dir,
        on_finish=finished,
        byte_budget=budget,
        # a size other than a trained scale: at most what a trained x4 gives the largest upload
        max_output_pixels=16 * config.max_pixels,
    )

    def gauges() -> dict[str, float]:
        queued, running = manager.counts()
        return {
            "sisr_queue_depth": queued,
            "sisr_jobs_in_flight": running,
            "sisr_uploads_in_progress": manager.uploads(),
            "sisr_upload_bytes_held": manager.held_bytes(),
            "sisr_workers": config.workers,
            "sisr_queue_capacity": config.capacity,
            "sisr_queue_bytes": budget,
        }

    metrics = Metrics(gauges)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(cat.load_all)

        async def sweeper() -> None:
            # often: it also times out overdue jobs nobody is waiting on or polling
            while True:
                await asyncio.sleep(min(0.5, config.result_ttl / 2))
                await run_in_threadpool(manager.sweep)

        task = asyncio.create_task(sweeper())
        try:
            yield
        finally:
            task.cancel()
            await run_in_threadpool(manager.shutdown)

    app = FastAPI(
        title="sisr",
        version=__version__,
        description="Single-image super-resolution: upscale images with the models this "
        "server was started with.",
        lifespan=lifespan,
        # served below as routes of our own, so their query parameters are checked too
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.config = config
    app.state.catalog = cat
    app.state.manager = manager
    app.state.metrics = metrics
    app.add_middleware(_Observe, metrics=metrics)

    # ------------------------------------------------------------------ errors

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = STATUS_CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path"))
            parts.append(f"{where}: {err.get('msg')}")
        return error_response(422, "invalid", "; ".join(parts) or "invalid request")

    # ------------------------------------------------------------------ auth

    async def require_token(request: Request) -> None:
        if config.token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), config.token.encode()
        )
        if not ok:
            raise ApiError(
                401,
                "unauthorized",
                "this server needs a token: send 'Authorization: Bearer <token>'",
                {"WWW-Authenticate": "Bearer"},
            )

    # ------------------------------------------------------------------ query parameters

    known: dict[int, frozenset[str]] = {}

    async def known_query(request: Request) -> None:
        """422 for a query parameter the endpoint does not take, or one given twice: a typo
        such as ``?scal=4`` must not silently run with the default."""
        route = request.scope.get("route")
        if route is None:
            return
        allowed = known.get(id(route))
        if allowed is None:
            allowed = known[id(route)] = frozenset(_query_names(route.dependant))
        names = [k for k, _ in request.query_params.multi_items()]
        for name in names:
            shown = repr(name[:64])
            if name not in allowed:
                takes = ", ".join(sorted(allowed)) or "none"
                raise ApiError(
                    422,
                    "invalid",
                    f"unknown query parameter {shown} (this endpoint takes: {takes})",
                )
            if names.count(name) > 1:
                raise ApiError(422, "invalid", f"query parameter {shown} is given more than once")

    checked = [Depends(known_query)]
    auth = [Depends(require_token), *checked]

    # ------------------------------------------------------------------ intake

    async def intake(
        request: Request,
        model: str | None,
        size: Size,
        fmt: str | None,
        tta: bool,
        quality: int | None,
        filename: str | None,
        ttl: float | None,
    ) -> Job:
        """Validate, store the upload in a fresh job folder and queue it (folder removed on
        any failure before the job owns it)."""
        try:
            spec, target = pick(cat, model, size)
        except LookupError as exc:
            raise ApiError(422, "unknown_model", str(exc)) from None
        except ConfigError as exc:
            raise ApiError(422, "invalid", str(exc)) from None
        try:
            # a slot before reading the upload at all; its bytes are counted as they come
            res = manager.reserve()
        except QueueFull as exc:
            raise busy(exc) from None
        asked = Asked(fmt, tta, quality, filename, ttl, target)
        try:
            return await _store_and_submit(request, res, spec, asked)
        finally:
            manager.release(res)  # a no-op once the job took it over

    def count_into(res: Reservation) -> ByteCounter:
        def count(n: int) -> None:
            try:
                manager.grow(res, n)
            except QueueFull as exc:
                raise busy(exc) from None

        return count

    async def _store_and_submit(request: Request, res: Reservation, spec: Any, asked: Asked) -> Job:
        fmt, tta, quality, filename, ttl, target = asked
        try:
            folder = manager.new_folder()
        except OSError as exc:
            raise no_room(exc) from None
        count = count_into(res)
        try:
            src = folder / "upload"
            ctype = request.headers.get("content-type", "")
            if ctype.startswith("multipart/form-data"):
                body = limited(request, config.max_bytes + MULTIPART_SLACK, "the upload", count)
                async with body.form(max_files=1, max_fields=16) as form:
                    part = form.get("file")
                    if not isinstance(part, UploadFile):
                        raise ApiError(422, "invalid", "the multipart body needs a 'file' part")
                    name = safe_name(part.filename or filename)
                    size = await run_in_threadpool(
                        copy_limited, part.file, src, config.max_bytes, f"{name}"
                    )
            else:
                name = safe_name(filename)
                body = limited(request, config.max_bytes, f"{name}", count)
                size = 0
                with open(src, "wb") as out:
                    async for chunk in body.stream():
                        size += len(chunk)
                        out.write(chunk)
            if size == 0:
                raise ApiError(422, "invalid", "the request has no image (empty body)")
            suffix = await run_in_threadpool(probe, src, name, config.max_pixels)
            stored = src.rename(folder / f"upload{suffix}")
            req = JobRequest(
                spec=spec,
                tta=tta,
                out_suffix=output_suffix(stored, fmt),
                quality=quality or config.quality,
                filename=name,
                target=target,
            )
            return manager.submit(folder, stored, req, ttl=ttl, reservation=res)
        except QueueFull as exc:
            raise busy(exc) from None
        except OSError as exc:
            manager.discard(folder)
            raise no_room(exc) from None
        except BaseException:
            manager.discard(folder)
            raise

    def result_response(job: Job, *, remove_after: bool) -> Any:
        if job.state == State.DONE and job.dst.is_file():
            req = job.request
            suffix = job.dst.suffix
            tag = f"x{req.spec.scale}" if req.target is None else req.target.tag()
            download = f"{Path(req.filename).stem}_{tag}{suffix}"
            return FileResponse(
                job.dst,
                media_type=_MEDIA_TYPES.get(suffix, "application/octet-stream"),
                filename=download,
                headers={
                    "X-Sisr-Model": req.spec.key,
                    "X-Sisr-Job": job.id,
                    "Cache-Control": "no-store",
                },
                background=BackgroundTask(manager.cancel, job) if remove_after else None,
            )
        if job.state in (State.QUEUED, State.RUNNING):
            raise ApiError(409, "not_ready", f"job {job.id} is {job.state.value}, not done yet")
        if job.state == State.CANCELLED:
            raise ApiError(409, "cancelled", f"job {job.id} was cancelled")
        status = job.error_status or 500
        code = job.error_code or STATUS_CODES.get(status, "error")
        raise ApiError(status, code, job.error or "job failed")

    def find(job_id: str) -> Job:
        job = manager.get(job_id)
        if job is None:
            raise ApiError(404, "not_found", f"no job {job_id!r} (unknown, deleted or expired)")
        manager.check_deadline(job)  # an overdue job says so now, not at the next sweep
        return job

    # ------------------------------------------------------------------ routes

    @app.get("/openapi.json", include_in_schema=False, dependencies=checked)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=checked)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="sisr - API docs")

    @app.get("/redoc", include_in_schema=False, dependencies=checked)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="sisr - API docs")

    @app.get("/", include_in_schema=False, dependencies=checked)
    async def index() -> HTMLResponse:
        return HTMLResponse((STATIC_DIR / "index.html").read_text(encoding="utf-8"))

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/healthz", tags=["ops"], dependencies=checked)
    async def healthz() -> dict[str, Any]:
        """Liveness: always open (no token), no model work."""
        queued, running = manager.counts()
        return {"status": "ok", "version": __version__, "queued": queued, "running": running}

    @app.get("/metrics", tags=["ops"], dependencies=auth, response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        """Prometheus text format: requests by status, latency histogram, queue, failures."""
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models", tags=["models"], dependencies=auth)
    async def models() -> dict[str, Any]:
        """The variants this server runs (with PSNR measured into their weights), the
        families a request's ``model`` may name, and the request limits."""
        return {
            "default": cat.default_family,
            "models": cat.describe(),
            "families": cat.describe_families(),
            "limits": {
                "max_bytes": config.max_bytes,
                "max_pixels": config.max_pixels,
                "job_timeout_s": config.job_timeout,
                "result_ttl_s": config.result_ttl,
                "workers": config.workers,
                "queue": config.queue,
            },
            "formats": ["png", "jpg", "webp", "tiff"],
        }

    @app.post(
        "/v1/upscale",
        tags=["upscale"],
        dependencies=auth,
        openapi_extra=_UPLOAD_BODY,
        response_class=FileResponse,
        responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}},
    )
    async def upscale(
        request: Request,
        size: Annotated[Size, Depends(size_params)],
        model: Annotated[
            str | None,
            Query(
                min_length=1, max_length=200, description="family or variant name (GET /v1/models)"
            ),
        ] = None,
        format: Annotated[
            OutFormat | None, Query(description="output format; default: the input's")
        ] = None,
        tta: Annotated[bool, Query(description="x8 self-ensemble (8x slower)")] = False,
        quality: Annotated[
            int | None, Query(ge=1, le=100, description="JPEG / WebP quality")
        ] = None,
        filename: Annotated[str | None, Query(description="name of a raw-body upload")] = None,
    ) -> Any:
        """Upscale one image and answer with it. Alpha, 16-bit, gray, ICC and EXIF are kept
        exactly as ``sisr upscale`` keeps them (the same code path)."""
        job = await intake(request, model, size, format, tta, quality, filename, ttl=60.0)
        done = asyncio.wrap_future(job.done)
        try:
            while not done.done():
                await asyncio.wait([done], timeout=_WAIT_STEP)
                if done.done():
                    break
                if await request.is_disconnected():
                    manager.cancel(job)  # nobody to answer: stop and remove its files
                    return PlainTextResponse("client disconnected", status_code=499)
                manager.check_deadline(job)  # 504 at the deadline, not when the worker stops
        except asyncio.CancelledError:
            manager.cancel(job)
            raise
        try:
            return result_response(job, remove_after=True)
        except ApiError:
            manager.cancel(job)
            raise

    @app.post(
        "/v1/jobs", tags=["jobs"], dependencies=auth, openapi_extra=_UPLOAD_BODY, status_code=202
    )
    async def create_job(
        request: Request,
        size: Annotated[Size, Depends(size_params)],
        model: Annotated[
            str | None,
            Query(
                min_length=1, max_length=200, description="family or variant name (GET /v1/models)"
            ),
        ] = None,
        format: Annotated[OutFormat | None, Query()] = None,
        tta: Annotated[bool, Query()] = False,
        quality: Annotated[int | None, Query(ge=1, le=100)] = None,
        filename: Annotated[str | None, Query()] = None,
    ) -> JSONResponse:
        """Queue an image (for large ones); poll ``GET /v1/jobs/{id}`` for progress."""
        job = await intake(request, model, size, format, tta, quality, filename, ttl=None)
        return JSONResponse(
            job.public(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"}
        )

    @app.get("/v1/jobs/{job_id}", tags=["jobs"], dependencies=auth)
    async def job_status(job_id: str) -> dict[str, Any]:
        """State (queued, running, done, failed, cancelled, timeout) and progress 0..1."""
        return find(job_id).public()

    @app.get("/v1/jobs/{job_id}/result", tags=["jobs"], dependencies=auth)
    async def job_result(job_id: str) -> Any:
        """The finished image (409 while it is not done; the job's error when it failed)."""
        return result_response(find(job_id), remove_after=False)

    @app.delete("/v1/jobs/{job_id}", tags=["jobs"], dependencies=auth)
    async def delete_job(job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job, or delete a finished one; its files are removed."""
        job = find(job_id)
        was = job.state
        manager.cancel(job)
        return {"id": job.id, "state": "cancelled" if not was.finished else "deleted"}

    return app


def _query_names(dependant: Any) -> Iterator[str]:
    """The query parameters an endpoint declares, its dependencies' included."""
    for param in dependant.query_params:
        yield param.alias
    for sub in dependant.dependencies:
        yield from _query_names(sub)
