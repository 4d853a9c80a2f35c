"""The server's settings: one typed, validated dataclass (``sisr serve`` flags map onto it)."""

from __future__ import annotations

import math
import socket
from dataclasses import dataclass

from sisr.errors import ConfigError

LOCAL_HOSTS: frozenset[str] = frozenset({"127.0.0.1", "localhost", "::1"})
LOG_LEVELS: tuple[str, ...] = ("critical", "error", "warning", "info", "debug", "trace")


@dataclass(frozen=True)
class ServeConfig:
    """What the server runs and the limits it enforces on every request.

    models: weights names (``default`` expands to all its ``-xN`` variants) or weights
        files given by the operator; requests can only pick among these.
    token: when set, every ``/v1`` endpoint and ``/metrics`` need
        ``Authorization: Bearer <token>``.
    max_bytes: largest accepted upload (the request body), bytes.
    max_pixels: largest accepted input image, width x height.
    workers: images processed at the same time (each on the whole device).
    queue: jobs that may wait for a worker; one more request gets 503 + Retry-After. An
        upload still streaming in takes one of these slots too.
    queue_bytes: bytes that uploads in progress and jobs not yet decoded may hold together
        (``None``: ``capacity`` full-size uploads); past it a request gets 503.
    job_timeout: seconds from submission until a job is stopped (checked before each layer
        of the network; the answer does not wait for the worker).
    result_ttl: seconds a finished job's result is kept for download before removal.
    tile: tile size for :class:`~sisr.infer.Upscaler` (``auto``, N or 0).
    """

    models: tuple[str, ...] = ("default",)
    device: str = "auto"
    token: str | None = None
    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 16_000_000
    workers: int = 1
    queue: int = 16
    queue_bytes: int | None = None
    job_timeout: float = 600.0
    result_ttl: float = 600.0
    tile: int | str = "auto"
    quality: int = 95
    tmp_dir: str | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("serve: give at least one --model")
        for name, value in (
            ("max_bytes", self.max_bytes),
            ("max_pixels", self.max_pixels),
            ("workers", self.workers),
        ):
            if value < 1:
                raise ConfigError(f"serve: --{name.replace('_', '-')} must be >= 1, got {value}")
        if self.queue < 0:
            raise ConfigError(f"serve: --queue must be >= 0, got {self.queue}")
        for name, seconds in (("job_timeout", self.job_timeout), ("result_ttl", self.result_ttl)):
            if not (math.isfinite(seconds) and seconds > 0):
                flag = name.replace("_", "-")
                raise ConfigError(f"serve: --{flag} must be a number of seconds > 0, got {seconds}")
        if self.queue_bytes is not None and self.queue_bytes < self.max_bytes:
            raise ConfigError(
                f"serve: --queue-bytes must hold at least one upload (--max-bytes "
                f"{self.max_bytes}), got {self.queue_bytes}"
            )
        if not 1 <= self.quality <= 100:
            raise ConfigError(f"serve: --quality must be in 1..100, got {self.quality}")
        if self.token is not None and not self.token.strip():
            raise ConfigError("serve: --token must not be empty")
        _check_device(self.device)

    @property
    def capacity(self) -> int:
        """Jobs accepted at once (running + waiting)."""
        return self.workers + self.queue


def is_local_host(host: str) -> bool:
    return host in LOCAL_HOSTS or host.startswith("127.")


def _check_device(device: str) -> None:
    """The device must exist now: found only when the first model loads, inside the server's
    startup, it would be a traceback instead of a message."""
    from sisr.infer.precision import resolve_device

    try:
        resolve_device(device)
    except ConfigError as exc:
        raise ConfigError(f"serve: --device: {exc}") from None


def check_listen(host: str, port: int, log_level: str = "info") -> None:
    """Everything ``sisr serve`` passes to the HTTP server, checked before it starts: the
    port's range, the log level, and that ``host:port`` can be bound right now (a name that
    does not resolve or an address in use is a message, not a traceback)."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"serve: --port must be in 0..65535, got {port}")
    if log_level.lower() not in LOG_LEVELS:
        raise ConfigError(
            f"serve: --log-level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}"
        )
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"serve: --host {host!r}: cannot resolve it ({exc})") from None
    family, kind, proto, _name, address = infos[0]
    try:
        with socket.socket(family, kind, proto) as sock:
            # as the server binds: a port left in TIME_WAIT by the last run is usable
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise ConfigError(f"serve: cannot listen on {where}: {exc.strerror or exc}") from None
