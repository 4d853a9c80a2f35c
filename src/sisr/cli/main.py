"""``sisr`` entry point: dispatches to one module per sub-command.

Each command module defines ``register(subparsers) -> None`` which adds its
parser and sets ``func=run`` where ``run(args) -> int`` is the exit code.
Command modules import torch and friends inside ``run`` so ``sisr --help``
stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings
from collections.abc import Sequence

from sisr.cli.messages import error_line, install_warning_format
from sisr.errors import SisrError
from sisr.version import __version__

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


def _stdout_gone() -> int:
    """The reader of stdout went away (``sisr models --json | head``): stop quietly with
    the status of a command killed by SIGPIPE. Python would print a traceback, and another
    when it flushes stdout at exit, unless stdout now points at /dev/null."""
    with contextlib.suppress(OSError, ValueError):  # no real descriptor (in-process capture)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 128 + 13  # SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # Restored on return: main() is also called in-process (tests, notebooks).
    with warnings.catch_warnings():
        install_warning_format(args.command)
        try:
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # a reader gone (| head) shows here, not at interpreter exit
            return code
        except BrokenPipeError:
            return _stdout_gone()
        except SisrError as exc:
            print(error_line(args.command, exc), file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"sisr {args.command}: interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
