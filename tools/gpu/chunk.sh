#!/usr/bin/env bash
# One training chunk on the lent GPU machine (see tools/gpu/README.md).
#
#   bash tools/gpu/chunk.sh RUN SECONDS [RECIPE [sisr train args ...]]
#
# RUN      run name, letters/digits/.-_ only (e.g. edsr-baseline-x2): the run folder is
#          $SISR_GPU_ROOT/runs/RUN and its carried state .gpu/runs/RUN/
# SECONDS  --max-time of this chunk (keep the whole command under 10 minutes: ~500)
# RECIPE   recipe YAML; extra args (--set ..., --init-from ...) go to `sisr train`. Use the
#          SAME command line for every chunk of a run: when the run already has a
#          checkpoint it is resumed (--resume added, --init-from dropped). Without RECIPE a
#          resumed run uses its own recipe.yaml.
#
# Steps: set up sisr from the working tree (no install), unpack .gpu/train291.pack into
# $SISR_DATA/train and verify the pixels (hashes from the original PNGs, and the PNGs
# written here), copy .gpu/bench/* into $SISR_DATA/benchmarks, restore the run from the
# device's own copy (machine still warm) or else from the carried .gpu/runs/RUN/, train,
# and copy into $OUT/RUN/: model.safetensors, meta.tar (recipe.yaml, history.json,
# train.log, last.pt.sha256) and, unless the run has finished, last.pt (split in < 16 MiB
# parts when larger). At most 4 files per run: two runs per call fit the 8-file limit.
#
# Env: SISR_GPU_ROOT (default /tmp/sisr_gpu), SISR_GPU_PACK (default .gpu/train291.pack),
# SISR_GPU_ALLOW_CPU=1 for a CPU dry run, SISR_GPU_KEEP_CKPT=1 to return last.pt of a
# finished run too, OUT (required).
set -euo pipefail
export PYTHONUNBUFFERED=1

RUN=${1:?usage: chunk.sh RUN SECONDS [RECIPE [train args]]}
SECONDS_BUDGET=${2:?usage: chunk.sh RUN SECONDS [RECIPE [train args]]}
shift 2
RECIPE=${1:-}
[ $# -gt 0 ] && shift
[[ $RUN =~ ^[A-Za-z0-9._-]+$ ]] || { echo "chunk: bad run name $RUN" >&2; exit 2; }
: "${OUT:?OUT must be set (the device tool sets it)}"

REPO=$(pwd)
ROOT=${SISR_GPU_ROOT:-/tmp/sisr_gpu}
PACK=${SISR_GPU_PACK:-.gpu/train291.pack}
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
export SISR_DATA="$ROOT/data"
export SISR_CACHE="$ROOT/cache"
SISR="python3 -m sisr"
t0=$(date +%s)
log() { echo "[chunk $(( $(date +%s) - t0 ))s] $*"; }

# --- setup (once per machine: a warm machine keeps /tmp) -------------------------------
python3 - <<'PY'
import os, sys, torch, sisr
cuda = torch.cuda.is_available()
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, sisr {sisr.__version__}, "
      f"cuda {torch.cuda.get_device_name() if cuda else 'NO'}")
if not cuda and os.environ.get("SISR_GPU_ALLOW_CPU") != "1":
    sys.exit("chunk: no CUDA device (set SISR_GPU_ALLOW_CPU=1 for a CPU dry run)")
PY
if [ ! -f "$ROOT/data/.verified" ]; then
  [ -f "$PACK" ] || { echo "chunk: $PACK missing: carry it (see tools/gpu/README.md)" >&2; exit 2; }
  rm -rf "$ROOT/data/train"
  $SISR data unpack "$PACK" -o "$ROOT/data/train"
  # hashes stored at pack time from the original PNGs == decoded pixels == PNGs written here
  folders=()
  for f in $(python3 -c "from sisr.data.pack import read_header as r; print(' '.join(r('$PACK')['folders']))"); do
    folders+=(-i "$ROOT/data/train/$f")
  done
  $SISR data verify-pack "$PACK" "${folders[@]}"
  if [ -f "$PACK.sha256" ]; then  # overall digest recorded when packing from the originals
    want=$(cat "$PACK.sha256")
    got=$(python3 -c "from sisr.data.pack import read_header as r; print(r('$PACK')['sha256'])")
    [ "$want" = "$got" ] || { echo "chunk: pack sha256 $got != recorded $want" >&2; exit 1; }
    log "pack sha256 matches the recorded one ($got)"
  fi
  mkdir -p "$ROOT/data/benchmarks"
  if [ -d .gpu/bench ]; then cp -r .gpu/bench/. "$ROOT/data/benchmarks/"; fi
  touch "$ROOT/data/.verified"
fi
log "data ready: $(ls "$ROOT/data/train" | tr '\n' ' ')/ benchmarks: $(ls "$ROOT/data/benchmarks" | tr '\n' ' ')"

# --- restore the run ---------------------------------------------------------------------
DIR="$ROOT/runs/$RUN"
CARRIED="$REPO/.gpu/runs/$RUN"
ckpt_iter() {  # iteration stored in a checkpoint, -1 if none
  [ -f "$1" ] || { echo -1; return; }
  python3 -c "import torch,sys; print(int(torch.load(sys.argv[1], map_location='cpu', weights_only=False)['iteration']))" "$1"
}
if [ -d "$CARRIED" ]; then
  tmp="$ROOT/carried/$RUN"
  rm -rf "$tmp"; mkdir -p "$tmp/checkpoints"
  [ -f "$CARRIED/meta.tar" ] && tar -xf "$CARRIED/meta.tar" -C "$tmp"
  if ls "$CARRIED"/last.pt.part-* >/dev/null 2>&1; then
    cat "$CARRIED"/last.pt.part-* > "$tmp/checkpoints/last.pt"
  elif [ -f "$CARRIED/last.pt" ]; then
    cp "$CARRIED/last.pt" "$tmp/checkpoints/last.pt"
  fi
  if [ -f "$tmp/last.pt.sha256" ]; then
    (cd "$tmp/checkpoints" && sha256sum -c --quiet ../last.pt.sha256) \
      || { echo "chunk: carried last.pt of $RUN is corrupt" >&2; exit 1; }
  fi
  here=$(ckpt_iter "$DIR/checkpoints/last.pt"); there=$(ckpt_iter "$tmp/checkpoints/last.pt")
  if [ "$there" -gt "$here" ]; then
    rm -rf "$DIR"; mkdir -p "$(dirname "$DIR")"; mv "$tmp" "$DIR"
    log "restored $RUN from the carried state (iteration $there)"
  else
    log "kept the device's own $RUN (iteration $here >= carried $there)"
  fi
fi

# --- train ---------------------------------------------------------------------------------
if [ -f "$DIR/checkpoints/last.pt" ]; then
  # same command line as the first chunk, minus --init-from (it excludes --resume); --set
  # overrides still apply (the trainer logs what changed since the checkpoint)
  resume_args=(); skip=0
  for a in "$@"; do
    if [ $skip = 1 ]; then skip=0; continue; fi
    case $a in --init-from) skip=1 ;; --init-from=*) ;; *) resume_args+=("$a") ;; esac
  done
  log "resuming $RUN at iteration $(ckpt_iter "$DIR/checkpoints/last.pt") for ${SECONDS_BUDGET}s"
  $SISR train ${RECIPE:+"$RECIPE"} --out "$DIR" --resume --max-time "$SECONDS_BUDGET" \
    ${resume_args[@]+"${resume_args[@]}"}
else
  [ -n "$RECIPE" ] || { echo "chunk: $RUN has no checkpoint: give a RECIPE" >&2; exit 2; }
  log "starting $RUN from $RECIPE for ${SECONDS_BUDGET}s: $*"
  $SISR train "$RECIPE" --out "$DIR" --max-time "$SECONDS_BUDGET" "$@"
fi

# --- outputs -------------------------------------------------------------------------------
dest="$OUT/$RUN"
mkdir -p "$dest"
(cd "$DIR/checkpoints" && sha256sum last.pt > "$DIR/last.pt.sha256")
tar -cf "$dest/meta.tar" -C "$DIR" recipe.yaml last.pt.sha256 \
  $(cd "$DIR" && ls history.json train.log 2>/dev/null)
cp "$DIR/model.safetensors" "$dest/"
size=$(stat -c %s "$DIR/checkpoints/last.pt")
total=$(python3 -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['iterations'])" "$DIR/recipe.yaml")
if [ "$(ckpt_iter "$DIR/checkpoints/last.pt")" -ge "$total" ] && [ "${SISR_GPU_KEEP_CKPT:-0}" != 1 ]; then
  log "$RUN finished ($total iterations): last.pt not returned (SISR_GPU_KEEP_CKPT=1 to keep it)"
elif [ "$size" -gt 16000000 ]; then  # the tool returns files of at most 16 MiB
  split -b 15000000 -d -a 1 "$DIR/checkpoints/last.pt" "$dest/last.pt.part-"
else
  cp "$DIR/checkpoints/last.pt" "$dest/"
fi
log "$RUN at iteration $(ckpt_iter "$DIR/checkpoints/last.pt"); returned:"
ls -l "$dest"
grep -E "done:|time limit|Set5" "$DIR/train.log" | tail -4 || true
