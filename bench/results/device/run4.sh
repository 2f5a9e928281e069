#!/bin/bash
# Device run 4: unmodified Guile 3.0 (Debian's, carried in .devguile: the
# guile binary, libguile and its libraries, the module sources and .go
# files, and a guile3.0 wrapper that points GUILE_SYSTEM_PATH and
# GUILE_SYSTEM_COMPILED_PATH there) on tests/boehm/gc-heavy.scm at scale 3,
# stock libgc vs the adapter's, output compared with stock's.
cd "$(dirname "$0")/../../.."
exec > >(tee "$OUT/guile-compare.txt") 2>&1
export PATH="$PWD/.devguile:$PATH"
python3 bench/boehm/compare.py --quick --reps 2 --benches sparse \
  --variants stock,fg-page,fg-64,fg-page-noexempt,fg-64-noexempt --guile 3 \
  --sparse .devprobe/sparse --gcbench .devprobe/gcbench \
  --adapter-dir .devprobe/fg --stock-dir .devprobe/stock --out "$OUT" --timeout 120
