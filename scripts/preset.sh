#!/usr/bin/env bash
# Run a paper-scale preset from params.yaml as a DVC experiment:
#   bash scripts/preset.sh fig1|fig2|layers [more `dvc exp run` options, e.g. --queue or -n NAME]
# It copies presets.NAME.{attn_rate,width,seed,steps,n_layers,init_per_run,split_per_run} into the grid keys with -S, so the
# experiment's params.yaml shows exactly what ran (clockpizza.io.params.PRESET_TARGETS: the same map).
set -euo pipefail
name=${1:?usage: bash scripts/preset.sh NAME [dvc exp run options]; NAME is a key of presets in params.yaml}
shift
exec dvc exp run \
  -S "attn_rate=\${presets.$name.attn_rate}" \
  -S "width=\${presets.$name.width}" \
  -S "seed=\${presets.$name.seed}" \
  -S "train.steps=\${presets.$name.steps}" \
  -S "model.n_layers=\${presets.$name.n_layers}" \
  -S "model.init_per_run=\${presets.$name.init_per_run}" \
  -S "data.split_per_run=\${presets.$name.split_per_run}" \
  "$@"
