"""The server's settings: one typed, validated dataclass (``sisr serve`` flags map onto it)."""

from __future__ import annotations

from dataclasses import dataclass

from sisr.errors import ConfigError

LOCAL_HOSTS: frozenset[str] = frozenset({"127.0.0.1", "localhost", "::1"})


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
    queue: jobs that may wait for a worker; one more request gets 503 + Retry-After.
    job_timeout: seconds from submission until a job is stopped (checked between tiles).
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
        if self.job_timeout <= 0 or self.result_ttl <= 0:
            raise ConfigError("serve: --job-timeout and --result-ttl must be > 0 seconds")
        if not 1 <= self.quality <= 100:
            raise ConfigError(f"serve: --quality must be in 1..100, got {self.quality}")
        if self.token is not None and not self.token.strip():
            raise ConfigError("serve: --token must not be empty")

    @property
    def capacity(self) -> int:
        """Jobs accepted at once (running + waiting)."""
        return self.workers + self.queue


def is_local_host(host: str) -> bool:
    return host in LOCAL_HOSTS or host.startswith("127.")
