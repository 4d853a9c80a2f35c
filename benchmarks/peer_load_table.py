"""The load table: every published weight file in a folder (default ``../shared/peers/weights``),
how sisr loads it (natively / through spandrel / refused, with the message) and its Set5 Y-PSNR
with the paper protocol of ``sisr eval`` (each network at its own scale; a file whose scale is
not stored in its tensors at the scale its name states, else x2).

    SISR_DATA=../shared/data python benchmarks/peer_load_table.py [FOLDER] [--sets Set5 Set14 B100]

Prints a Markdown table (for the README). Reference differences to the authors' own code are
asserted by the tests beside each architecture (tests/archs/test_<arch>.py), not measured here.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _default_folder() -> Path:
    here = Path(__file__).resolve().parents[2]
    return Path(os.environ.get("SISR_PEERS_WEIGHTS", here / "shared" / "peers" / "weights"))


def _how(row: dict) -> str:
    if not row["loads"]:
        return "refused"
    return "spandrel" if str(row["arch"]).startswith("spandrel") else "native"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", type=Path, default=_default_folder())
    ap.add_argument("--sets", nargs="+", default=["Set5"])
    ap.add_argument(
        "--scale", type=int, action="append", help="extra scales to score (multi-scale files)"
    )
    args = ap.parse_args()

    from sisr.cli.models_scan import WEIGHT_SUFFIXES, scan_file
    from sisr.errors import SisrError
    from sisr.evaluate.runner import evaluate
    from sisr.hub.detect import scale_hint
    from sisr.hub.load import load_model

    files = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in WEIGHT_SUFFIXES)
    head = ["file", "loads as", "arch (layout)", "scale"] + [f"{s} Y-PSNR" for s in args.sets]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    loaded = 0
    for path in files:
        row = scan_file(path)
        how = _how(row)
        cells = [path.name, how]
        if not row["loads"]:
            message = " ".join(str(row["error"]).split())
            message = message.replace(str(path), "FILE").replace("|", "\\|")
            cells += [
                message[:160] + ("..." if len(message) > 160 else ""),
                "",
                *[""] * len(args.sets),
            ]
            print("| " + " | ".join(cells) + " |", flush=True)
            continue
        loaded += 1
        scale = row["scale"] or scale_hint(path.name) or 2
        scales = [scale] if row["scale"] is not None else sorted({scale, *(args.scale or [])})
        for s in scales:
            try:
                model = load_model(path, scale=s, progress=False)
                scores = [
                    f"{evaluate(model, name, s, ssim=False).psnr_y:.2f}" for name in args.sets
                ]
            except SisrError as exc:
                scores = [f"error: {exc}"[:80]] * len(args.sets)
            arch = f"{row['arch']} ({row['layout']})"
            print("| " + " | ".join([*cells, arch, f"x{s}", *scores]) + " |", flush=True)
    print(f"\n{loaded} of {len(files)} files load")
    return 0


if __name__ == "__main__":
    sys.exit(main())
