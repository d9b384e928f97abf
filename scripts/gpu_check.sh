#!/usr/bin/env bash
# The prepared device command of issue 10: on one GPU machine with PyTorch but no DVC and no
# network, benchmark the engine, run the precision study, and train + measure + draw the paper's
# figure-1 grid (and figure 2's lite grid if time is left), all into OUTDIR.
#   bash scripts/gpu_check.sh OUTDIR             # on the GPU machine (budget: 8 minutes)
#   bash scripts/gpu_check.sh OUTDIR --dry-run   # anywhere: the same steps on tiny grids
# Bring OUTDIR back and copy OUTDIR/fig1 (runs.parquet, summary.json, meta.json, figures) into
# results/fig1/ to ship it (README, "Paper scale").
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash scripts/gpu_check.sh OUTDIR [--dry-run]}
dry=()
[ "${2:-}" = "--dry-run" ] && dry=(--dry-run)
budget=${GPU_CHECK_SECONDS:-480}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$out"
report="$out/benchmarks.md"
[ -f report/benchmarks.md ] && cp report/benchmarks.md "$report"
log() { echo "[gpu_check ${SECONDS}s] $*" | tee -a "$out/log.txt"; }
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')" | tee -a "$out/log.txt"

# 1. Engine benchmark rows (ours vs the paper's one-model loop, MFU against a measured matmul).
steps=50; [ ${#dry[@]} -gt 0 ] && steps=3
for w in 32 128 512; do
  for prec in fp32 tf32 bf16; do
    [ ${#dry[@]} -gt 0 ] && [ "$prec" != fp32 ] && continue
    [ ${#dry[@]} -gt 0 ] && [ "$w" = 512 ] && continue
    log "bench width $w $prec"
    python -m clockpizza.tools.bench --width "$w" --steps "$steps" --precision "$prec" \
      --report "$report" --json >>"$out/bench.jsonl" || log "bench width $w $prec failed"
  done
done

# 2. Precision study: one smaller grid at the paper's length in each precision, against fp32.
study=(--set 'width=[32,128]' --set 'seed=[0]'
       --set 'attn_rate=[0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1]' --set 'train.snapshots=none'
       --no-weights)
for prec in fp32 tf32 bf16; do
  log "precision study: $prec"
  python -m clockpizza.tools.paper_scale --preset fig1 --out "$out/study-$prec" "${dry[@]}" \
    "${study[@]}" --set "train.precision=$prec"
done
python -m clockpizza.tools.precision "$out/study-fp32" "$out/study-tf32" "$out/study-bf16" \
  --report "$report" | tee "$out/precision.md"

# 3. Figure 1 in full, in fp32 unless a reduced precision passed the study.
prec=fp32
for cand in tf32 bf16; do
  if grep -qE "^\| $cand \|.*\| yes \|$" "$out/precision.md"; then prec=$cand; break; fi
done
log "fig1 in $prec"
python -m clockpizza.tools.paper_scale --preset fig1 --out "$out/fig1" "${dry[@]}" \
  --set "train.precision=$prec" --no-weights

# 4. Figure 2's lite grid if at least a third of the budget is left.
if [ $((budget - SECONDS)) -gt $((budget / 3)) ]; then
  log "fig2_lite in $prec"
  python -m clockpizza.tools.paper_scale --preset fig2_lite --out "$out/fig2_lite" "${dry[@]}" \
    --set "train.precision=$prec" --no-weights
else
  log "fig2_lite skipped: $((budget - SECONDS)) s of the $budget s budget left"
fi
log "done"
