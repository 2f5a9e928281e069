#!/bin/bash
# Device run 2: the Boehm comparison at full sizes, stock vs adapter.
cd "$(dirname "$0")/.."
exec > >(tee "$OUT/boehm-compare.txt") 2>&1
uname -r; nproc
python3 bench/boehm/compare.py --reps 2 --benches gcbench,gcbench-incr,gcbench-mt2-incr,sparse \
  --variants stock,fg-page,fg-64,fg-256 --gcbench .devprobe/gcbench --sparse .devprobe/sparse \
  --adapter-dir .devprobe/fg --stock-dir .devprobe/stock --out "$OUT" --timeout 200 --guile 0
