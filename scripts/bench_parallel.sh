#!/bin/bash
# Outer-step throughput of meta-training on this machine: 1 process x 1 thread against
# 2 threads and 2 processes (qsched launch), REPS repetitions interleaved so that load changes
# hit every mode alike, plus the machine's own ceiling (two independent single-thread
# training runs side by side vs in sequence). Prints one line per run and the speedups.
#
#   scripts/bench_parallel.sh [REPS=3] [STEPS=9] [OUT=/tmp/qsched_bench_parallel]
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-3}
STEPS=${2:-9}
OUT=${3:-/tmp/qsched_bench_parallel}
C=experiments/configs/meta_inq_mlp.json
Q=build/qsched
mkdir -p "$OUT"
step_seconds() {
  python3 -c "import json,sys; print('%.2f' % sum(json.loads(l)['seconds'] for l in open(sys.argv[1])))" "$1/meta_metrics.jsonl"
}
for rep in $(seq 1 "$REPS"); do
  declare -A sec
  for mode in t1 t2 p2; do
    rm -rf "$OUT/$mode"
    case $mode in
      t1) OMP_NUM_THREADS=1 $Q meta-train --quiet --config $C --steps "$STEPS" --threads 1 --out "$OUT/t1" ;;
      t2) OMP_NUM_THREADS=1 $Q meta-train --quiet --config $C --steps "$STEPS" --threads 2 --out "$OUT/t2" ;;
      p2) $Q launch --nproc 2 -- meta-train --quiet --config $C --steps "$STEPS" --threads 1 --out "$OUT/p2" ;;
    esac >/dev/null 2>&1
    sec[$mode]=$(step_seconds "$OUT/$mode")
  done
  same=$(md5sum "$OUT"/{t1,t2,p2}/controller.pt | awk '{print $1}' | sort -u | wc -l)
  echo "rep $rep: sum of step seconds 1 thread ${sec[t1]}, 2 threads ${sec[t2]} ($(echo "scale=2; ${sec[t1]}/${sec[t2]}" | bc)x)," \
    "2 processes ${sec[p2]} ($(echo "scale=2; ${sec[t1]}/${sec[p2]}" | bc)x); identical controllers: $([ "$same" = 1 ] && echo yes || echo NO)" \
    "; load $(cut -d' ' -f1 /proc/loadavg)"
done
run() {
  rm -rf "$OUT/ceil_$1"
  OMP_NUM_THREADS=1 $Q train --config experiments/configs/fmnist_mlp.json --epochs 4 --quiet \
    --out "$OUT/ceil_$1" >/dev/null 2>&1
}
for rep in $(seq 1 "$REPS"); do
  s=$(date +%s.%N); run a; run b; e=$(date +%s.%N); seq=$(echo "$e - $s" | bc)
  s=$(date +%s.%N); run a & run b & wait; e=$(date +%s.%N); par=$(echo "$e - $s" | bc)
  echo "ceiling rep $rep: two independent runs in sequence ${seq}s, side by side ${par}s ($(echo "scale=2; $seq/$par" | bc)x)"
done
