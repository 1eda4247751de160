#!/bin/bash
# Outer-step throughput of meta-training on this machine: 1 process x 1 thread against
# 2 threads and 2 processes (qsched launch), REPS repetitions interleaved so that load changes
# hit every mode alike, plus the machine's own ceiling (two independent single-thread
# training runs side by side vs in sequence). Prints one line per run and a summary.
#
# Two measures per mode:
#   speedup      sum of step seconds of 1 thread / of the mode (wall clock; includes the
#                machine's own swings, which on a shared VM reach +-20% between runs)
#   parallelism  seconds inside inner runs (all workers) / wall seconds of the steps: how many
#                cores did useful work on average (1 thread: at most 1; its ratio to the
#                1-thread value is the speedup if every inner run took as long as alone)
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
: > "$OUT/runs.txt"
# "wall busy" of a run: sums over its meta_metrics.jsonl rows
wall_busy() {
  python3 -c "
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
print('%.2f %.2f' % (sum(r['seconds'] for r in rows), sum(r['busy_seconds'] for r in rows)))" \
    "$1/meta_metrics.jsonl"
}
for rep in $(seq 1 "$REPS"); do
  declare -A wall busy
  for mode in t1 t2 p2; do
    rm -rf "$OUT/$mode"
    case $mode in
      t1) OMP_NUM_THREADS=1 $Q meta-train --quiet --config $C --steps "$STEPS" --threads 1 --out "$OUT/t1" ;;
      t2) OMP_NUM_THREADS=1 $Q meta-train --quiet --config $C --steps "$STEPS" --threads 2 --out "$OUT/t2" ;;
      p2) $Q launch --nproc 2 -- meta-train --quiet --config $C --steps "$STEPS" --threads 1 --out "$OUT/p2" ;;
    esac >/dev/null 2>&1
    read -r wall[$mode] busy[$mode] < <(wall_busy "$OUT/$mode")
    echo "$rep $mode ${wall[$mode]} ${busy[$mode]}" >> "$OUT/runs.txt"
  done
  same=$(md5sum "$OUT"/{t1,t2,p2}/controller.pt | awk '{print $1}' | sort -u | wc -l)
  python3 - "${wall[t1]}" "${busy[t1]}" "${wall[t2]}" "${busy[t2]}" "${wall[p2]}" "${busy[p2]}" \
    "$rep" "$([ "$same" = 1 ] && echo yes || echo NO)" "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import sys
w1, b1, w2, b2, wp, bp = map(float, sys.argv[1:7])
rep, same, load = sys.argv[7:10]
print(f"rep {rep}: sum of step seconds 1 thread {w1:.2f}, 2 threads {w2:.2f} ({w1/w2:.2f}x), "
      f"2 processes {wp:.2f} ({w1/wp:.2f}x); parallelism 1 thread {b1/w1:.2f}, 2 threads "
      f"{b2/w2:.2f}, 2 processes {bp/wp:.2f}; identical controllers: {same}; load {load}")
PY
done
python3 - "$OUT/runs.txt" <<'PY'
import sys, statistics as st
runs = {}
for line in open(sys.argv[1]):
    rep, mode, w, b = line.split()
    runs.setdefault(mode, []).append((float(w), float(b)))
w1 = [w for w, _ in runs["t1"]]
for mode, name in (("t2", "2 threads"), ("p2", "2 processes")):
    sp = [a / w for a, (w, _) in zip(w1, runs[mode])]
    par = [(b / w) / (b1 / a) for (a, b1), (w, b) in zip(runs["t1"], runs[mode])]
    print(f"summary {name}: speedup median {st.median(sp):.2f}x (min {min(sp):.2f}, max "
          f"{max(sp):.2f}; total {sum(w1) / sum(w for w, _ in runs[mode]):.2f}x); parallelism "
          f"ratio median {st.median(par):.2f}x (min {min(par):.2f}, max {max(par):.2f})")
PY
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
