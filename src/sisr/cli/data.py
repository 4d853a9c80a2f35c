"""``sisr data``: dataset preparation.

``sisr data make-lr -i HR_DIR -o OUT_DIR --scale S [--scale ...]`` writes, for every image
in HR_DIR (not recursive), ``OUT_DIR/x{S}/<stem>.png`` made with a named degradation
(default MATLAB bicubic, bit-exact). With ``--flat`` and a single scale the files go
directly into OUT_DIR.

An HR image whose size is not a multiple of S is an error for that file unless
``--modcrop`` is given (then the bottom/right are cropped first, as the usual MATLAB
scripts do). A file that cannot be read or degraded is reported and skipped; the others
are still written. Every output is written atomically. Exit code: 0 when every file was
written, 1 when some failed, 2 for a usage error (bad folder, unknown degradation).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sisr.errors import ConfigError, ImageError, SisrError

# Suffixes sisr.io reads.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")

# Kept in sync with sisr.degrade.registry (a test checks it); listed here so that
# `sisr data make-lr --help` does not import torch.
_DEGRADATION_HELP = (
    "bicubic (BI, default: MATLAB imresize, bit-exact), bicubic_jpeg_90, bicubic_jpeg_75, "
    "blur_down (BD: RDN's 7x7 Gaussian sigma 1.6 + decimation), "
    "bicubic_noise30 (DN: bicubic + Gaussian noise sigma 30, seeded by --seed), "
    "blur_aniso_noise (UNKNOWN-like: random anisotropic Gaussian blur + decimation + noise, "
    "seeded by --seed), second_order (REAL: Real-ESRGAN's blur / resize / noise / JPEG chain, "
    "twice, seeded by --seed), second_order_mild (the same, milder, a quarter left clean)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="prepare datasets (make LR images, pack, verify, unpack)",
        description="Dataset preparation.",
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    p = actions.add_parser(
        "make-lr",
        help="make LR images from a folder of HR images",
        description=(
            "Degrade every image of HR_DIR by each --scale and write OUT_DIR/x{S}/<name>.png. "
            "Failed files are reported and skipped; exit code 1 if any failed."
        ),
    )
    p.add_argument(
        "-i", "--input", required=True, type=Path, metavar="HR_DIR", help="folder of HR images"
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        metavar="OUT_DIR",
        help="where the LR images go (OUT_DIR/x{S}/<name>.png)",
    )
    p.add_argument(
        "-s",
        "--scale",
        required=True,
        type=int,
        action="append",
        metavar="S",
        help="integer scale factor; repeat for several (--scale 2 --scale 4)",
    )
    p.add_argument("-d", "--degradation", default="bicubic", metavar="NAME", help=_DEGRADATION_HELP)
    p.add_argument(
        "--modcrop",
        action="store_true",
        help="crop bottom/right of each HR image to a multiple of S (else such images fail)",
    )
    p.add_argument(
        "--flat",
        action="store_true",
        help="write OUT_DIR/<name>.png directly (only with a single --scale)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of random degradations; each file and scale gets its own stream (default 0)",
    )
    _register_pack(actions)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.data_command == "make-lr":
        return make_lr(args)
    if args.data_command in ("pack", "verify-pack", "unpack"):
        return _run_pack(args)
    raise ConfigError(f"unknown data action {args.data_command!r}")  # pragma: no cover


def _list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ConfigError(f"input folder not found: {folder}")
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise ConfigError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def _stream_seed(seed: int, name: str, scale: int) -> int:
    """Per (file, scale) seed: the noise of a file does not depend on the other files."""
    return (seed * 1_000_003 + zlib.crc32(f"{name}\0{scale}".encode())) % (2**63)


def make_lr(args: argparse.Namespace) -> int:
    import torch

    from sisr.degrade import get_degradation, modcrop_np
    from sisr.io import read_rgb_uint8, write_uint8

    scales: list[int] = list(dict.fromkeys(args.scale))  # dedupe, keep order
    if any(s < 1 for s in scales):
        raise ConfigError(f"--scale must be a positive integer, got {args.scale}")
    if args.flat and len(scales) > 1:
        raise ConfigError("--flat needs a single --scale (outputs of several scales would clash)")
    try:
        degradation = get_degradation(args.degradation)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None
    in_dir: Path = args.input
    out_dir: Path = args.output
    files = _list_images(in_dir)
    if args.flat and out_dir.resolve() == in_dir.resolve():
        raise ConfigError("--flat output folder is the input folder: HR images would be replaced")

    def target(path: Path, s: int) -> Path:
        return (out_dir if args.flat else out_dir / f"x{s}") / f"{path.stem}.png"

    # Two inputs with the same stem (a.png, a.bmp) would write the same output.
    stems: dict[str, Path] = {}
    written = failed = 0
    for path in files:
        if path.stem in stems:
            print(
                f"sisr data make-lr: {path}: skipped, same output name as {stems[path.stem].name}",
                file=sys.stderr,
            )
            failed += len(scales)
            continue
        stems[path.stem] = path
        try:
            hr = read_rgb_uint8(path)
        except ImageError as exc:
            print(f"sisr data make-lr: {exc}", file=sys.stderr)
            failed += len(scales)
            continue
        for s in scales:
            try:
                img = hr
                if min(img.shape[:2]) < s:
                    h, w = img.shape[:2]
                    raise ImageError(path, f"size {w}x{h} is smaller than the scale x{s}")
                if args.modcrop:
                    img = modcrop_np(img, s)
                h, w = img.shape[:2]
                if h % s or w % s:
                    raise ImageError(
                        path,
                        f"size {w}x{h} is not a multiple of scale {s} (use --modcrop to crop it)",
                    )
                gen = torch.Generator().manual_seed(_stream_seed(args.seed, path.name, s))
                chw = torch.tensor(img).permute(2, 0, 1)  # copy: the array may be read-only
                lr = degradation.apply(chw, s, gen)
                out = target(path, s)
                if out.resolve() == path.resolve():
                    raise ImageError(path, "output would overwrite the input")
                write_uint8(out, lr.permute(1, 2, 0).contiguous().numpy())
                written += 1
            except SisrError as exc:
                print(f"sisr data make-lr: x{s}: {exc}", file=sys.stderr)
                failed += 1
    print(
        f"{written} written, {failed} failed ({degradation.name}, x{', x'.join(map(str, scales))})"
    )
    return 1 if failed else 0


# --- packed training sets (sisr.data.pack) -------------------------------------------------


def _register_pack(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "pack",
        help="pack the images of folders into one lossless compressed file",
        description=(
            "Decode every image under each -i FOLDER (recursive) and store the exact uint8 "
            "pixels, compressed, with per-image sha256, in one .pack file (see sisr.data.pack)."
        ),
    )
    p.add_argument("-i", "--input", required=True, type=Path, action="append", metavar="FOLDER")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUT.pack")
    p.add_argument(
        "--codec", default="rct-grad-xz", help="rct-grad-xz (default, smallest) or rct-grad-zlib"
    )
    p.add_argument("-j", "--workers", type=int, default=None, help="threads (default: cores, <= 8)")
    v = actions.add_parser(
        "verify-pack",
        help="check a .pack decodes to its stored hashes (and equals folders given with -i)",
        description="Exit code 0 when every check passed, 1 when some failed.",
    )
    v.add_argument("pack", type=Path, metavar="PACK")
    v.add_argument("-i", "--input", type=Path, action="append", default=None, metavar="FOLDER")
    v.add_argument("-j", "--workers", type=int, default=None)
    u = actions.add_parser(
        "unpack",
        help="write the images of a .pack as PNG files under a folder",
        description=(
            "Write every image as OUT_DIR/<folder name>/<path>.png (lossless), e.g. into "
            "$SISR_DATA/train so that recipes naming ${SISR_DATA}/train/T91 run unchanged."
        ),
    )
    u.add_argument("pack", type=Path, metavar="PACK")
    u.add_argument("-o", "--output", required=True, type=Path, metavar="OUT_DIR")
    u.add_argument("-j", "--workers", type=int, default=None)


@contextlib.contextmanager
def _pack_progress(desc: str, every_s: float = 10.0) -> Iterator[Callable[[int, int], None]]:
    """A ``progress(done, total)`` callback: a bar on a terminal, else a plain line on
    stderr every ``every_s`` seconds (and at the end), so logs get no control codes."""
    import time

    state: dict[str, Any] = {"bar": None, "last": time.monotonic()}

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            if state["bar"] is None:
                from tqdm import tqdm

                state["bar"] = tqdm(total=total, desc=desc, unit="img", file=sys.stderr)
            state["bar"].update(done - state["bar"].n)
        elif done == total or time.monotonic() - state["last"] >= every_s:
            state["last"] = time.monotonic()
            print(f"{desc}: {done}/{total} images", file=sys.stderr, flush=True)

    try:
        yield progress
    finally:
        if state["bar"] is not None:
            state["bar"].close()


def _run_pack(args: argparse.Namespace) -> int:
    import time

    from sisr.data import pack as packing

    t0 = time.perf_counter()
    if args.data_command == "pack":
        with _pack_progress("packing") as progress:
            header = packing.pack(
                args.input, args.output, codec=args.codec, workers=args.workers, progress=progress
            )
        size = args.output.stat().st_size
        print(
            f"{args.output}: {len(header['images'])} images, {header['pixels'] / 1e6:.1f} M "
            f"samples, {size / 1e6:.2f} MB ({header['codec']}), sha256 {header['sha256']}, "
            f"{time.perf_counter() - t0:.1f} s"
        )
        return 0
    if args.data_command == "unpack":
        written = packing.unpack_to_folders(args.pack, args.output, workers=args.workers)
        print(
            f"{len(written)} images written under {args.output} ({time.perf_counter() - t0:.1f} s)"
        )
        return 0
    check = packing.verify(args.pack, args.input, workers=args.workers)
    for problem in check.problems:
        print(f"sisr data verify-pack: {problem}", file=sys.stderr)
    what = "hashes and folders" if check.compared_with_folders else "hashes"
    status = "OK" if check.ok else f"FAILED ({len(check.problems)} problems)"
    print(
        f"{check.path}: {check.images} images, sha256 {check.sha256}: {what} {status} "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    return 0 if check.ok else 1
