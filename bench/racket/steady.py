#!/usr/bin/env python3
"""steady.py - mutable-old-large's minor pauses, binaries side by side.

Runs `RACKET -W debug@GC bench/racket/mutable-old.rkt 2000000 6000 5`
for each variant in turn, REPS times, and prints per variant the mean
minor pause of each run, the mean of the minor pauses after the last
major collection (the steady state: the old generation built), and the
medians of both.  A variant is NAME=RACKET[:VAR=VALUE,...]; FG_* and
PLT* variables are taken from the variant only.  For A/B of two builds
of the port (a copy of racket3m kept in the same bin directory finds the
same collections), e.g.:

  bench/racket/steady.py 5 stock=adapters/racket/inst/bin/racket \\
    before=adapters/racket/inst/bin/racket_old:FG_RACKET=1,FG_RACKET_ARRAY_CARD=4k \\
    after=adapters/racket/inst/bin/racket:FG_RACKET=1,FG_RACKET_ARRAY_CARD=4k

Racket's GC log gives whole milliseconds of process CPU time, so read
means over many collections, not single pauses.
"""
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
PROG = [os.path.join(ROOT, "bench", "racket", "mutable-old.rkt"),
        "2000000", "6000", "5"]
RE_GC = re.compile(r"GC: 0:(min|MAJ)\b.* (\d+)ms @")


def one(racket, env):
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("FG_") and not k.startswith("PLT")}
    e.update(env)
    p = subprocess.run([racket, "-W", "debug@GC"] + PROG, env=e,
                       capture_output=True, text=True, check=True)
    minor, late = [], []
    for m in RE_GC.finditer(p.stderr):
        if m.group(1) == "min":
            minor.append(int(m.group(2)))
            late.append(int(m.group(2)))
        else:
            late = []
    return statistics.mean(minor), statistics.mean(late)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    reps = int(sys.argv[1])
    variants = []
    for a in sys.argv[2:]:
        name, _, rest = a.partition("=")
        racket, _, kv = rest.partition(":")
        env = dict(x.split("=", 1) for x in kv.split(",") if x)
        variants.append((name, racket, env))
    res = {name: [] for name, _, _ in variants}
    for _ in range(reps):
        for name, racket, env in variants:
            res[name].append(one(racket, env))
    for name, v in res.items():
        print("%-8s mean %s  steady %s  | median mean %.2f ms, steady "
              "%.2f ms" % (name, " ".join("%.2f" % x[0] for x in v),
                           " ".join("%.2f" % x[1] for x in v),
                           statistics.median(x[0] for x in v),
                           statistics.median(x[1] for x in v)))


if __name__ == "__main__":
    main()
