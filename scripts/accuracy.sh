#!/usr/bin/env bash
# Accuracy benchmark: trains each config with seeds 0, 1, 2 and prints mean ± std of the
# Fashion-MNIST test accuracy (qsched summarize). Finished runs are skipped, so a killed
# benchmark resumes where it stopped.
#
#   scripts/accuracy.sh [OUT_DIR] CONFIG...      (default OUT_DIR: runs/accuracy)
#   e.g. scripts/accuracy.sh runs/accuracy experiments/configs/fmnist_mlp.json
set -euo pipefail
cd "$(dirname "$0")/.."
out=runs/accuracy
if [ $# -gt 0 ] && [ "${1%.json}" = "$1" ]; then out=$1; shift; fi
[ $# -gt 0 ] || { echo "usage: scripts/accuracy.sh [OUT_DIR] CONFIG..." >&2; exit 2; }
SEEDS=${SEEDS:-"0 1 2"}
for cfg in "$@"; do
  name=$(basename "$cfg" .json)
  dirs=()
  for s in $SEEDS; do
    d="$out/$name/seed$s"
    dirs+=("$d")
    [ -f "$d/summary.json" ] && continue
    start=$(date +%s)
    if [ -f "$d/checkpoint.pt" ]; then
      build/qsched train --resume --out "$d" --quiet
    else
      rm -rf "$d"
      build/qsched train --config "$cfg" --seed "$s" --out "$d" --quiet
    fi
    echo "  ($(( $(date +%s) - start )) s)"
  done
  echo "== $name"
  build/qsched summarize "${dirs[@]}"
done
