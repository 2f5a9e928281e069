#!/usr/bin/python3
"""Where a Guile program's world-stopped pauses go, by part, with perf.

Runs one program of the Guile set (bench/boehm/guile/*.scm) once under
`perf record --call-graph dwarf`, with one of compare.py's variants, and
sorts the samples taken inside Boehm's GC_stopped_mark (which is what
"World-stopped marking took N ms" times; for the adapter it includes the
preclean, which runs before the world stops but in the collecting thread,
so that a single-threaded program waits for it) into:

  preclean   the adapter's retrieval before the world stops
             (fga_preclean: re-protecting, comparing twins, lines);
  retrieve   its retrieval in the pause (fga_retrieve);
  big        large objects' dirty lines pushed and marked from
             (GC_push_dirty_lines, patch 2);
  small      small-object blocks' marked objects on dirty lines
             (GC_push_marked_lines) or, for stock, dirty blocks
             (GC_push_marked);
  mark       everything else in the pause: marking from roots and from
             what the rescans pushed, the objects allocated since the
             last collection among it.

Also printed: the program's own mean pause from GC_PRINT_STATS in the same
run (perf slows it; compare parts, not milliseconds).  Writes nothing; the
perf data goes to a temporary folder.  Needs perf (Debian linux-perf) and
guile-3.0.

  bench/boehm/pause_profile.py --prog sparse-old --variant fg-64
"""

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (variants, environments)
import guile as gset  # noqa: E402  (the programs and their sizes)

PARTS = [  # (part, the frame that puts a sample in it), first match wins
    ("preclean", "fga_preclean"),
    ("retrieve", "fga_retrieve"),
    ("big", "GC_push_dirty_lines"),
    ("small", "GC_push_marked_lines"),
    ("small", "GC_push_marked"),
]


def samples(script):
    """perf script -F ip,sym output: one list of frame names per sample,
    innermost first."""
    cur = []
    for line in script.splitlines():
        s = line.strip()
        if not s:
            if cur:
                yield cur
            cur = []
            continue
        parts = s.split(None, 1)
        cur.append(parts[1].split()[0] if len(parts) > 1 else "?")
    if cur:
        yield cur


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prog", default="sparse-old", choices=sorted(gset.PROGS))
    ap.add_argument("--variant", default="fg-64",
                    choices=sorted(compare.VARIANTS))
    ap.add_argument("--quick", action="store_true",
                    help="the set's --quick sizes")
    ap.add_argument("--freq", type=int, default=2000,
                    help="samples a second (default 2000)")
    ap.add_argument("--env", action="append", default=[], metavar="K=V",
                    help="set K=V for the run (repeatable), e.g. "
                    "GC_PAUSE_TIME_TARGET=10, which compare.py's "
                    "environment otherwise scrubs")
    ap.add_argument("--guile", default=shutil.which("guile3.0") or
                    shutil.which("guile") or "guile")
    a = ap.parse_args()
    if not shutil.which("perf"):
        sys.exit("pause_profile: no perf (apt-get install linux-perf)")
    args = gset.PROGS[a.prog][1 if a.quick else 0]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guile",
                        a.prog + ".scm")
    extra = {"GC_ENABLE_INCREMENTAL": "1"}
    for kv in a.env:
        if "=" not in kv or not kv.split("=", 1)[0]:
            ap.error("--env %r: expected K=V" % kv)
        k, v = kv.split("=", 1)
        extra[k] = v
    env = compare.variant_env(a.variant, extra, True)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        p = subprocess.run(["perf", "record", "-q", "-F", str(a.freq),
                            "--call-graph", "dwarf,16384", "-o", data,
                            a.guile, "-s", path] + args,
                           env=env, capture_output=True, text=True)
        if p.returncode:
            sys.exit("pause_profile: the run failed (%d): %s"
                     % (p.returncode, p.stderr[-400:]))
        pauses = [int(m.group(1)) + int(m.group(2)) / 1e6 for m in
                  re.finditer(r"World-stopped marking took (\d+) ms (\d+) ns",
                              p.stderr)]
        s = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym"],
                           capture_output=True, text=True)
    total = 0
    parts = collections.Counter()
    inner = collections.Counter()
    for frames in samples(s.stdout):
        total += 1
        if "GC_stopped_mark" not in frames:
            continue
        part = "mark"
        for name, frame in PARTS:
            if frame in frames:
                part = name
                break
        parts[part] += 1
        inner[(part, frames[0])] += 1
    n = sum(parts.values())
    if not n:
        sys.exit("pause_profile: no sample inside GC_stopped_mark (%d "
                 "samples; a libgc without symbols?)" % total)
    print("%s, %s%s %s: %d samples, %d in the pauses (%.0f%%); %d pauses, "
          "mean %.1f ms (under perf)"
          % (a.prog, a.variant, "".join(" " + kv for kv in a.env),
             " ".join(args), total, n, 100.0 * n / total,
             len(pauses), sum(pauses) / len(pauses) if pauses else 0))
    for part, k in parts.most_common():
        top = [(f, c) for (pp, f), c in inner.most_common() if pp == part][:3]
        print("  %-9s %5.1f%%   %s" % (part, 100.0 * k / n, ", ".join(
            "%s %.0f%%" % (f, 100.0 * c / n) for f, c in top)))


if __name__ == "__main__":
    main()
