"""``sisr`` entry point: dispatches to one module per sub-command.

Each command module defines ``register(subparsers) -> None`` which adds its
parser and sets ``func=run`` where ``run(args) -> int`` is the exit code.
Command modules import torch and friends inside ``run`` so ``sisr --help``
stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from sisr import __version__
from sisr.errors import SisrError

# Explicit list (no discovery): module names under sisr.cli.
COMMANDS: tuple[str, ...] = (
    "models",
    "convert",
    "data",
    "train",
    "eval",
    "compare",
    "upscale",
    "serve",
    "export",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sisr", description="Single-image super-resolution.")
    parser.add_argument("--version", action="version", version=f"sisr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"sisr.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SisrError as exc:
        print(f"sisr {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sisr {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
