#!/usr/bin/env bash
# The planned GPU run: on one GPU machine with PyTorch but no DVC, no pydantic and no network,
# check the engine there, then train, measure and pack figure 1 and figure 2's lite grid.
#
#   bash scripts/gpu_check.sh OUT [--steps abcdef] [--budget SECONDS] [--precision P] [--dry-run]
#
# Steps, in priority order, each under its own `timeout`, each packed into ONE archive
# OUT/<step>.tar.gz the moment it ends (a killed command still returns what finished):
#   a  preflight (imports, versions, GPU) and the CUDA check (fast vs reference step, float64
#      and float32, against the CPU); the run stops here if either fails
#   b  figure 1, seed 0: width 128 x 101 attention rates x 20 000 steps, fp32, the paper's
#      protocol (own weights and split per run)
#   c  the same 101 runs in TF32, and fp32 again on 21 of them (the noise floor: CUDA's fp32 is
#      not bit-reproducible); TF32 qualifies when it flips no more labels and moves no median
#      more than fp32 against fp32 (clockpizza.tools.precision --noise)
#   d  figure 2's lite grid (9 widths x 11 rates x 20 000 steps) in the qualified precision
#   e  figure 1, seeds 1 and 2, in the qualified precision
#   f  bench rows: widths 32, 128, 512 in fp32, TF32 and bf16 (clockpizza.tools.bench)
# --steps runs the letters in the order given (--steps fd: the bench before figure 2).
# Plus OUT/log.txt: 7 files at most. A step gets min(its own cap, what is left of --budget
# less 20 s for packing) and is skipped when under a minute is left. Work (tables, weights,
# checkpoints, the qualified precision) stays in .gpu_work/ (git-ignored), so running a killed
# step again on the same machine resumes it (paper_scale reuses whole runs and checkpoints).
#
# 15 minutes of device time, each command at most 10 (machine start ~1-2 min included):
#   bash scripts/device_wheels.sh                # here, once: pydantic & co. for Python 3.12
#   call 1 (timeout 600, carry .wheels):  bash scripts/gpu_check.sh "$OUT" --steps abc --budget 570
#   call 2 (the rest, carry .wheels):     bash scripts/gpu_check.sh "$OUT" --steps def --budget S
# with S = the device time left less a minute. Call 1 prints "qualified: P"; pass
# --precision P to call 2 if the machine was given back in between (.gpu_work is then gone).
# The copied tree has no .git: prefix each call with CLOCKPIZZA_COMMIT=<sha of the commit sent>
# so that every run's provenance names it.
# --dry-run: every step on the CPU with tiny grids (seconds per step), the same archives.
set -uo pipefail
cd "$(dirname "$0")/.."
usage="usage: bash scripts/gpu_check.sh OUT [--steps abcdef] [--budget S] [--precision P] [--dry-run]"
out=${1:?$usage}
shift
steps=abcdef dry=0 precision="" budget=""
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --precision) precision=$2; shift 2 ;;
    --dry-run) dry=1; shift ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
case "$precision" in ""|fp32|tf32|bf16) ;; *) echo "--precision $precision: one of fp32, tf32, bf16" >&2; exit 2 ;; esac
[[ "$steps" =~ ^[a-f]+$ ]] || { echo "--steps $steps: letters a to f" >&2; exit 2; }
budget=${budget:-$([ $dry = 1 ] && echo 3600 || echo 570)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=${GPU_CHECK_WORK:-$PWD/.gpu_work}
mkdir -p "$work"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_MININTERVAL=30
log() { echo "[gpu_check ${SECONDS}s] $*" | tee -a "$work/log.txt"; }
finish() { cp "$work/log.txt" "$out/log.txt" 2>/dev/null; }
trap finish EXIT

declare -A caps  # seconds each step may take at most
# Figure 1's rates every 0.05: the runs trained twice in fp32 for the noise floor.
SUBSET='[0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1]'
if [ $dry = 1 ]; then
  # paper_scale's own dry run (30 steps, 3 rates), smaller still: one width, p 23, few triples
  tiny=(--dry-run --set 'width=[8]' --set data.p=23 --set metrics.gs_triples=500
        --set train.snapshots=none)
  SUBSET='[0, 0.5, 1]'
  bench_args=(--width 8 --n-models 2 --steps 3 --reference-steps 2 --repeats 1
              --peak-seconds 0.05 --warmup 1 --device cpu)
  bench_precisions="fp32 bf16"
  caps=([a]=120 [b]=300 [c]=300 [d]=300 [e]=300 [f]=120)
else
  tiny=()
  # 16 models at width 512: ~1 TFLOP a step already, the time of 128 would not fit
  bench_args=(--width 32 128 512 --n-models 128 128 16 --steps 200 --repeats 3
              --peak-seconds 0.5 --warmup 20 --device cuda)
  bench_precisions="fp32 tf32 bf16"
  caps=([a]=150 [b]=330 [c]=330 [d]=420 [e]=420 [f]=200)
fi

# Seconds the next command may take: its cap, within what is left of the budget.
allow() {
  local cap=$1 left=$((budget - SECONDS - 20))
  echo $((cap < left ? cap : left))
}
# pack NAME PATH...: the step's folders (never weights or checkpoints) and the log so far.
pack() {
  local name=$1
  shift
  cp "$work/log.txt" "$work/$name.log.txt" 2>/dev/null
  tar -czf "$out/$name.tar.gz" -C "$work" --exclude=runs --exclude=.checkpoints \
    --ignore-failed-read "$name.log.txt" "$@" 2>/dev/null
  log "packed $out/$name.tar.gz"
}
# paper_scale NAME TIMEOUT ARGS...: a grid into $work/NAME (weights in $work/runs/NAME).
paper_scale() {
  local name=$1 t=$2
  shift 2
  log "$name: paper_scale $* (timeout ${t}s)"
  timeout "$t" python3 -m clockpizza.tools.paper_scale --out "$work/$name" \
    --runs "$work/runs/$name" "${tiny[@]}" "$@" 2>&1 | tee "$work/$name.out.txt"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || log "$name: exit $rc$([ "$rc" = 124 ] && echo ' (timed out)')"
  return "$rc"
}
enough() {  # enough SECONDS: is a step of at least this long still in the budget?
  if [ "$(allow 100000)" -lt "$1" ]; then log "skipped: $((budget - SECONDS)) s left"; return 1; fi
}

log "plan: steps $steps, budget ${budget}s, work $work, out $out$([ $dry = 1 ] && echo ', dry run')"

# Pydantic and its needs, from wheels that travel with the tree (no network there).
if ! python3 -c "import pydantic" 2>/dev/null; then
  if [ -d "$work/site/pydantic" ]; then  # installed by an earlier call on this machine
    export PYTHONPATH="$work/site:$PYTHONPATH"
  elif ls .wheels/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --find-links .wheels --target "$work/site" pydantic \
      && export PYTHONPATH="$work/site:$PYTHONPATH"
  else
    log "no pydantic and no .wheels/: run bash scripts/device_wheels.sh where pip works"
  fi
fi

qualified_file="$work/qualified.txt"
chosen() {  # the precision of steps d and e
  if [ -n "$precision" ]; then echo "$precision"
  elif [ -s "$qualified_file" ]; then cat "$qualified_file"
  else echo fp32; fi
}

for s in $(echo "$steps" | grep -o .); do
  case $s in
  a)
    log "a: preflight and CUDA check"
    mkdir -p "$work/a-preflight"
    gpu=(--require-gpu); [ $dry = 1 ] && gpu=()
    timeout 60 python3 -m clockpizza.tools.preflight "${gpu[@]}" \
      --json "$work/a-preflight/preflight.json" 2>&1 | tee "$work/a-preflight/preflight.txt"
    ok=${PIPESTATUS[0]}
    if [ "$ok" = 0 ]; then
      check=(); [ $dry = 1 ] && check=(--device cpu --p 23 --width 16)
      timeout "$(allow "${caps[a]}")" python3 -m clockpizza.tools.cuda_check "${check[@]}" \
        --json "$work/a-preflight/cuda_check.json" 2>&1 | tee "$work/a-preflight/cuda_check.txt"
      ok=${PIPESTATUS[0]}
    fi
    pack a-preflight a-preflight
    if [ "$ok" != 0 ]; then log "a failed (exit $ok): nothing trains"; exit 1; fi
    ;;
  b)
    enough 60 || continue
    paper_scale b-fig1-s0-fp32 "$(allow "${caps[b]}")" --preset fig1 --set 'seed=[0]' \
      --set train.precision=fp32
    pack b-fig1-s0-fp32 b-fig1-s0-fp32 b-fig1-s0-fp32.out.txt
    ;;
  c)
    enough 60 || continue
    half=$(( $(allow "${caps[c]}") * 3 / 5 ))
    paper_scale c-fig1-s0-tf32 "$half" --preset fig1 --set 'seed=[0]' --set train.precision=tf32
    paper_scale c-fig1-s0-fp32-repeat "$(allow $(( caps[c] - half )))" --preset fig1 \
      --set 'seed=[0]' --set train.precision=fp32 --set "attn_rate=$SUBSET"
    if [ -f "$work/b-fig1-s0-fp32/runs.parquet" ] && [ -f "$work/c-fig1-s0-tf32/runs.parquet" ] \
       && [ -f "$work/c-fig1-s0-fp32-repeat/runs.parquet" ]; then
      python3 -m clockpizza.tools.precision "$work/b-fig1-s0-fp32" "$work/c-fig1-s0-tf32" \
        --noise "$work/c-fig1-s0-fp32-repeat" 2>&1 | tee "$work/c-precision.md"
      q=$(sed -n 's/^qualified: //p' "$work/c-precision.md" | tail -1)
      echo "${q:-fp32}" > "$qualified_file"
    else
      log "c: a grid did not finish; no qualification, fp32 stays"
      echo fp32 > "$qualified_file"
    fi
    log "qualified: $(cat "$qualified_file")"
    pack c-precision c-fig1-s0-tf32 c-fig1-s0-fp32-repeat c-precision.md \
      c-fig1-s0-tf32.out.txt c-fig1-s0-fp32-repeat.out.txt
    ;;
  d)
    enough 60 || continue
    p=$(chosen)
    paper_scale "d-fig2-lite-$p" "$(allow "${caps[d]}")" --preset fig2_lite \
      --set "train.precision=$p"
    pack d-fig2-lite "d-fig2-lite-$p" "d-fig2-lite-$p.out.txt"
    ;;
  e)
    enough 60 || continue
    p=$(chosen)
    paper_scale "e-fig1-s12-$p" "$(allow "${caps[e]}")" --preset fig1 --set 'seed=[1, 2]' \
      --set "train.precision=$p"
    pack e-fig1-s12 "e-fig1-s12-$p" "e-fig1-s12-$p.out.txt"
    ;;
  f)
    enough 30 || continue
    mkdir -p "$work/f-bench"
    n=$(echo $bench_precisions | wc -w)
    for prec in $bench_precisions; do
      t=$(allow $((caps[f] / n)))
      [ "$t" -ge 10 ] || { log "f: $prec skipped, no time left"; continue; }
      log "f: bench $prec (timeout ${t}s)"
      timeout "$t" python3 -m clockpizza.tools.bench "${bench_args[@]}" --precision "$prec" \
        --json --report "$work/f-bench/benchmarks.md" >>"$work/f-bench/bench.jsonl" \
        2>>"$work/f-bench/bench.err.txt" || log "f: bench $prec exit $?"
    done
    pack f-bench f-bench
    ;;
  esac
done
log "done"
