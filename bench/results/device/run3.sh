#!/bin/bash
# Device run 3: the Boehm comparison at full sizes after the exempt-block
# change, stock vs the adapter with and without exemption (FG_BOEHM_EXEMPT=0).
# Carried: .devprobe/{gcbench,sparse} (this tree's bench/boehm builds),
# .devprobe/fg (adapters/boehm/lib), .devprobe/stock (Debian's libgc.so.1).
cd "$(dirname "$0")/../../.."
exec > >(tee "$OUT/boehm-compare.txt") 2>&1
uname -r; nproc
python3 bench/boehm/compare.py --reps 5 --benches gcbench-incr,gcbench,gcbench-mt2-incr,sparse \
  --variants stock,fg-page,fg-64,fg-256,fg-page-noexempt \
  --gcbench .devprobe/gcbench --sparse .devprobe/sparse \
  --adapter-dir .devprobe/fg --stock-dir .devprobe/stock --out "$OUT" --timeout 120 --guile 0
