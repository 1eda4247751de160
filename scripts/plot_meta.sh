#!/bin/sh
# Plots a meta-training curve: mean/best training fitness and validation fitness vs outer step.
#   scripts/plot_meta.sh RUN_DIR [OUT.png]      (needs gnuplot and jq)
# Fitness = validation loss of the hardened network / the base schedule's (1 = base, lower is
# better), as written to RUN_DIR/meta_metrics.jsonl by qsched meta-train.
set -eu
run=$1
out=${2:-$run/meta_fitness.png}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
jq -r '[.step, (.mean_fitness // "NaN"), (.best_fitness // "NaN")] | @tsv' "$run/meta_metrics.jsonl" > "$tmp/train.tsv"
jq -r 'select(.val_fitness != null) | [.step, .val_fitness] | @tsv' "$run/meta_metrics.jsonl" > "$tmp/val.tsv"
gnuplot <<GP
set terminal pngcairo size 800,480
set output "$out"
set xlabel "outer step"
set ylabel "fitness (val loss / base schedule's)"
set key top right
set grid
set yrange [*:1.02]
plot 1 title "base schedule" lc rgb "gray" dt 2, \
     "$tmp/train.tsv" using 1:2 with lines lw 2 title "training tasks: mean", \
     "$tmp/train.tsv" using 1:3 with points pt 7 ps 0.5 title "training tasks: best", \
     "$tmp/val.tsv" using 1:2 with linespoints lw 2 pt 5 title "held-out validation tasks"
GP
echo "$out"
