"""Uploads are untrusted: bodies are counted and cut off as they stream in, and the image
header is checked (pixels, format) before any pixel is decoded."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Request

from sisr.serve.errors import STATUS_CODES, ApiError
from sisr.serve.jobs import image_error_status

MULTIPART_SLACK = 16 * 1024  # part headers and boundaries on top of the file itself
_CHUNK = 1 << 20
ByteCounter = Callable[[int], None]  # told of an upload's bytes as they arrive; raises to refuse
# Pillow's format name -> the suffix the upload is stored under (the CLI's own choice of
# output format then follows from it: GIF becomes PNG, the rest keep their format).
INPUT_SUFFIX = {
    "PNG": ".png",
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "GIF": ".gif",
}


def limited(request: Request, limit: int, what: str, count: ByteCounter) -> Request:
    """The request with a body that stops (413) as soon as more than ``limit`` bytes came;
    ``count(n)`` is told of the declared size up front and of any bytes beyond it as they
    arrive (it raises to refuse them)."""
    declared = request.headers.get("content-length")
    size = 0
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "bad_request", "invalid Content-Length header") from None
        if size < 0:
            raise ApiError(400, "bad_request", "invalid Content-Length header")
        if size > limit:
            raise ApiError(413, "too_large", f"{what} is {size} bytes, above the limit of {limit}")
        count(size)
    counted_bytes = size
    received = 0
    receive = request.receive

    async def counted() -> dict[str, Any]:
        nonlocal received, counted_bytes
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise ApiError(413, "too_large", f"{what} is above the limit of {limit} bytes")
            if received > counted_bytes:
                count(received - counted_bytes)
                counted_bytes = received
        return message

    return Request(request.scope, counted)


def copy_limited(src: Any, dst: Path, limit: int, what: str) -> int:
    """Copy a file object to ``dst``; 413 past ``limit`` bytes. Returns the size."""
    size = 0
    with open(dst, "wb") as out:
        while chunk := src.read(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "too_large", f"{what} is above the limit of {limit} bytes")
            out.write(chunk)
    return size


def safe_name(name: str | None) -> str:
    """The client's file name reduced to a harmless display/download name."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[^\w.\- ]+", "_", base).strip(" .")[:100]
    return base or "upload"


def probe(src: Path, filename: str, max_pixels: int) -> str:
    """Check the header: pixel count against the limit and a readable format; returns the
    suffix to store the upload under. Non-images get the reader's own message."""
    from PIL import Image

    from sisr.errors import ImageError
    from sisr.io import read_native

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(src) as im:
                width, height = im.size
                fmt = str(im.format)
    except Image.DecompressionBombError:
        raise ApiError(413, "too_many_pixels", f"{filename}: too many pixels") from None
    except Exception:
        try:  # the reader stops at the header of a non-image: cheap, and its message is clear
            read_native(src, max_pixels=max_pixels)
        except ImageError as exc:
            status = image_error_status(exc)
            raise ApiError(status, STATUS_CODES[status], f"{filename}: {exc.cause}") from None
        raise ApiError(415, "unsupported_media_type", f"{filename}: not a readable image") from None
    pixels = width * height
    if pixels > max_pixels:
        raise ApiError(
            413,
            "too_many_pixels",
            f"{filename}: image is {width}x{height} = {pixels / 1e6:.1f} Mpx, above this "
            f"server's limit of {max_pixels / 1e6:.1f} Mpx",
        )
    suffix = INPUT_SUFFIX.get(fmt)
    if suffix is None:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"{filename}: {fmt} images are not supported (PNG, JPEG, WebP, BMP, TIFF, GIF are)",
        )
    return suffix


__all__ = [
    "INPUT_SUFFIX",
    "MULTIPART_SLACK",
    "ByteCounter",
    "copy_limited",
    "limited",
    "probe",
    "safe_name",
]
