"""``sisr serve [--host 127.0.0.1] [--port 8000] [--model NAME ...]``: the REST API and web page.

Needs the ``serve`` extra (``pip install -e ".[serve]"``: FastAPI, uvicorn,
python-multipart). Binds 127.0.0.1 unless told otherwise; a non-local ``--host`` without
``--token`` works but warns, since anyone who can reach the port can then use the device.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from sisr.errors import ConfigError


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="REST API and web page for upscaling (extra: .[serve])",
        description="Serve the upscaling API (/v1, docs at /docs) and a web page at /.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "-n",
        "--model",
        action="append",
        default=None,
        metavar="NAME",
        help="named weights or a .safetensors file to serve; repeat for several (default: "
        "'default', the built-in model, all its scales). Requests can use only these.",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--token", default=None, help="require 'Authorization: Bearer TOKEN'")
    p.add_argument(
        "--max-bytes", type=int, default=50 * 1024 * 1024, help="largest upload (default 50 MiB)"
    )
    p.add_argument(
        "--max-pixels", type=int, default=16_000_000, help="largest input image (default 16 Mpx)"
    )
    p.add_argument(
        "--workers", type=int, default=1, help="images processed at once (default 1 per device)"
    )
    p.add_argument("--queue", type=int, default=16, help="jobs that may wait (default 16)")
    p.add_argument(
        "--queue-bytes",
        type=int,
        default=None,
        help="bytes uploads in progress and waiting jobs may hold together "
        "(default: (workers + queue) x --max-bytes)",
    )
    p.add_argument("--job-timeout", type=float, default=600.0, help="seconds per job (default 600)")
    p.add_argument(
        "--result-ttl",
        type=float,
        default=600.0,
        help="seconds a finished job's result is kept (default 600)",
    )
    p.add_argument("-t", "--tile", default="auto", help="tile size: auto, N or 0")
    p.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from sisr.serve.app import create_app
    except ImportError as exc:
        raise ConfigError(
            f"sisr serve needs the 'serve' extra ({exc.name} is missing): "
            'pip install -e ".[serve]"'
        ) from None
    from sisr.infer import parse_tile
    from sisr.serve import config as serve_config
    from sisr.serve.config import ServeConfig, is_local_host

    # Everything is checked before the server starts: inside it, a bad value would be a
    # traceback from its startup instead of one line.
    config = ServeConfig(
        models=tuple(args.model or ("default",)),
        device=args.device,
        token=args.token,
        max_bytes=args.max_bytes,
        max_pixels=args.max_pixels,
        workers=args.workers,
        queue=args.queue,
        queue_bytes=args.queue_bytes,
        job_timeout=args.job_timeout,
        result_ttl=args.result_ttl,
        tile=parse_tile(args.tile),
    )
    serve_config.check_listen(args.host, args.port, args.log_level)
    if not is_local_host(args.host) and config.token is None:
        print(
            f"sisr serve: warning: listening on {args.host} without --token: anyone who can "
            "reach this port can run models on this machine",
            file=sys.stderr,
        )
    _share_cpu_threads(config)
    app = create_app(config)
    try:
        app.state.catalog.load_all()  # bad weights stop here, with a message
    except BaseException:
        app.state.manager.shutdown()
        raise
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower())
    return 0


def _share_cpu_threads(config: Any) -> None:
    """Several CPU workers split the cores instead of each using all of them."""
    if config.workers <= 1 or "OMP_NUM_THREADS" in os.environ:
        return
    import torch

    if config.device in ("auto", "cpu") and not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // config.workers))
