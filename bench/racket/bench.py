#!/usr/bin/python3
"""Racket BC 3m: the stock mprotect barrier against the fgvm port.

One racket3m binary (adapters/racket, `make racket`) runs each program
with its stock write barrier (stock), with FG_RACKET=1 (port: the
toolkit's default backend, page cards for small and medium pages, 64-byte
cards for big objects) and with FG_RACKET=1 FG_RACKET_ARRAY_CARD=4k
(port-page: page cards everywhere), the repetitions interleaved with the
order rotated:
  binary-trees  short-lived trees and one long-lived tree;
  gcbench       GCBench: top-down (mutating old nodes) and bottom-up trees,
                a long-lived tree and array;
  mutable-old   a vector (400000 slots, 3 MiB) and a hash table updated
                100 random slots and keys per round between short-lived
                garbage: about 5000 writes between two collections, so
                nearly every page of them is written every time (dense
                at page level);
  mutable-old-large  the same program with a large old generation
                updated sparsely: 2000000 slots (16 MiB) and 5 writes a
                round, about 235 between two collections (the case a
                card-marking barrier is for);
  raco-make     `raco make` of the lazy language and its 184 modules,
                compiled anew (PLTCOMPILEDROOTS) - the real workload
                (full runs only).
Per run: wall time, max RSS (wait4), each collection's pause from
Racket's own log (-W debug@GC: the main place's minor and major
collections, whole milliseconds), the output (must be the same bytes on
both).  Once per program and variant, untimed, under strace -f: the
write-protecting mprotect calls on anonymous memory and the SIGSEGVs,
and from (dump-memory-stats) the old pages and bytes rescanned in minor
collections.  Writes OUT/racket.json and OUT/racket.png; exit status 1
if a run failed or an output differs.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "boehm"))
import compare  # noqa: E402  (med, fmt)

PROGS = {
    # name: (full arguments, --quick arguments)
    "binary-trees": (["18"], ["15"]),
    "gcbench": (["0"], ["2"]),
    "mutable-old": (["400000", "3000", "100"], ["200000", "600", "100"]),
    "mutable-old-large": (["2000000", "6000", "5"],
                          ["1000000", "1500", "5"]),
    "raco-make": ([], None),
}
FILES = {"mutable-old-large": "mutable-old"}  # else PROG.rkt
VARIANTS = {"stock": {}, "port": {"FG_RACKET": "1"},
            "port-page": {"FG_RACKET": "1", "FG_RACKET_ARRAY_CARD": "4k"},
            # --variants only: blocks written 3 retrievals in a row left
            # unwatched for 8 (fga_config.hot; page cards only: with
            # port, the small and medium pages)
            "port-hot": {"FG_RACKET": "1", "FG_RACKET_HOT": "8"},
            "port-page-hot": {"FG_RACKET": "1", "FG_RACKET_ARRAY_CARD": "4k",
                              "FG_RACKET_HOT": "8"},
            # --variants only: written pages left writable by 4 KiB page,
            # as before 2026-12-07 (patch 0004's big pages aside)
            "port-w0": {"FG_RACKET": "1", "FG_RACKET_WHOLE": "0"}}
DEFAULT_VARIANTS = ["stock", "port", "port-page"]
RE_GC = re.compile(r"GC: 0:(min|MAJ)\b.* (\d+)ms @")
RE_OLD = re.compile(r"old regions scanned during minor GCs: (\d+)/(\d+)")
RE_BYTES = re.compile(r"old bytes scanned during minor GCs: (\d+)")


def env_for(variant, extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FG_") and not k.startswith("PLT")}
    env.update(VARIANTS[variant])
    env.update(extra)
    return env


def command(racket, prog, args, tmp):
    if prog == "raco-make":
        lazy = os.path.join(os.path.dirname(os.path.dirname(racket)),
                            "share", "pkgs", "lazy", "lazy.rkt")
        return [racket, "-l-", "raco", "make", "-j", "1", lazy], \
            {"PLTCOMPILEDROOTS": tempfile.mkdtemp(dir=tmp)}
    path = os.path.join(ROOT, "bench", "racket",
                        FILES.get(prog, prog) + ".rkt")
    return [racket, path] + args, {}


def run(racket, prog, args, variant, tmp, timeout):
    cmd, extra = command(racket, prog, args, tmp)
    cmd = cmd[:1] + ["-W", "debug@GC"] + cmd[1:]
    rec = {"prog": prog, "variant": variant, "cmd": cmd}
    t0 = time.monotonic()
    with tempfile.TemporaryFile("w+") as fo, \
            tempfile.TemporaryFile("w+") as fe:
        p = subprocess.Popen(cmd, env=env_for(variant, extra), stdout=fo,
                             stderr=fe)
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                p.kill()
                os.wait4(p.pid, 0)
                rec["error"] = "timeout after %d s" % timeout
                return rec
            time.sleep(0.01)
        rec["wall_s"] = time.monotonic() - t0
        rec["maxrss_kib"] = ru.ru_maxrss
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read()
    if os.waitstatus_to_exitcode(status) != 0:
        rec["error"] = "exit %d: %s" % (os.waitstatus_to_exitcode(status),
                                       err[-500:])
        return rec
    rec["out"] = out
    minor, major = [], []
    late = []  # minors after the last major: the steady state of
    for m in RE_GC.finditer(err):  # a program that builds, then runs
        (minor if m.group(1) == "min" else major).append(int(m.group(2)))
        if m.group(1) == "min":
            late.append(int(m.group(2)))
        else:
            late = []
    rec["minor_ms"], rec["major_ms"] = minor, major
    rec["minor_late_ms"] = late
    return rec


def barrier(racket, prog, args, variant, tmp):
    """Untimed: strace's mprotect/SIGSEGV counts, rescanned old pages."""
    cmd, extra = command(racket, prog, args, tmp)
    if prog != "raco-make":
        # (dump-memory-stats) after the program, in the same process.
        cmd = [racket, "-e",
               "(parameterize ([current-command-line-arguments (vector %s)])"
               " (dynamic-require (string->path %s) #f))"
               " (dump-memory-stats)" % (" ".join(json.dumps(a) for a in args),
                                         json.dumps(cmd[1]))]
    res = {}
    if shutil.which("strace"):
        trace = os.path.join(tmp, "trace")
        p = subprocess.run(["strace", "-f", "-qq", "-o", trace, "-e",
                            "trace=mprotect,mmap", "-e", "signal=SIGSEGV"]
                           + cmd, env=env_for(variant, extra),
                           capture_output=True, text=True)
        anon, wp, segv = [], 0, 0
        with open(trace) as f:
            for line in f:
                m = re.search(r"mmap\(NULL, (\d+),.*MAP_ANONYMOUS.*\) = "
                              r"(0x[0-9a-f]+)", line)
                if m:
                    a = int(m.group(2), 16)
                    anon.append((a, a + int(m.group(1))))
                m = re.search(r"mprotect\((0x[0-9a-f]+), (\d+), ([A-Z_|]+)",
                              line)
                if m and "PROT_WRITE" not in m.group(3) and \
                        "PROT_READ" in m.group(3):
                    a, n = int(m.group(1), 16), int(m.group(2))
                    if any(s <= a and a + n <= e for s, e in reversed(anon)):
                        wp += 1
                if "--- SIGSEGV" in line:
                    segv += 1
        res["wp_mprotect"], res["sigsegv"] = wp, segv
        err = p.stderr
    else:
        err = subprocess.run(cmd, env=env_for(variant, extra),
                             capture_output=True, text=True).stderr
    m = RE_OLD.search(err)
    if m:
        res["old_pages_rescanned"] = int(m.group(1))
    m = RE_BYTES.search(err)
    if m:
        res["old_bytes_rescanned"] = int(m.group(1))
    return res


def mean(v):
    return sum(v) / len(v) if v else 0.0


def paired(runs, prog, variant, key):
    """The median over repetitions of variant's key / stock's key in the
    same repetition (adjacent runs): steadier than a ratio of medians on
    a machine whose speed drifts."""
    by = {}
    for r in runs:
        if r.get("prog") == prog and key in r and "rep" in r:
            by.setdefault(r["rep"], {})[r["variant"]] = r[key]
    v = [d[variant] / d["stock"] for d in by.values()
         if d.get("stock") and variant in d]
    return compare.med(v) if v else None


def late(r, base):
    """' [steady X ms (Rx)]' for rows that have minors after a major."""
    v = r.get("minor_late_mean_ms")
    if not v:
        return ""
    b = base.get("minor_late_mean_ms")
    return " [steady %.1f ms%s]" % (
        v, " (%.2fx)" % (v / b) if b and r is not base else "")


def report(out, meta, rows, runs, progs):
    """JSON, the table and the plot of rows (and the runs behind them)."""
    for r in rows:
        if r["variant"] != "stock":
            r["wall_paired"] = paired(runs, r["prog"], r["variant"],
                                      "wall_s")
    os.makedirs(out, exist_ok=True)
    jpath = os.path.join(out, "racket.json")
    with open(jpath, "w") as f:
        json.dump(dict(meta, rows=rows, runs=runs), f, indent=1)
    print("%-13s %-9s %7s %9s %9s %9s %9s %8s %6s %9s %9s" % (
        "program", "variant", "time", "minor", "minor", "major",
        "max RSS", "wp", "SEGV", "old pages", "old MiB"))
    print("%-13s %-9s %7s %9s %9s %9s %9s %8s %6s %9s %9s" % (
        "", "", "s", "mean ms", "max ms", "mean ms", "MiB", "mprotect",
        "", "rescanned", "rescanned"))
    for r in rows:
        base = next(x for x in rows if x["prog"] == r["prog"] and
                    x["variant"] == "stock")

        def rat(k):
            return "" if r["variant"] == "stock" or not base[k] else \
                " (%.2fx)" % (r[k] / base[k])
        pr = "" if r.get("wall_paired") is None else \
            " [time paired %.2fx]" % r["wall_paired"]
        ob = r.get("old_bytes_rescanned")
        print("%-13s %-9s %7.2f %9.1f %9.0f %9.1f %9.1f %8s %6s %9s %9s"
              "%s%s%s%s%s%s"
              % (r["prog"], r["variant"], r["wall_s"], r["minor_mean_ms"],
                 r["minor_max_ms"], r["major_mean_ms"],
                 r["maxrss_kib"] / 1024.0, r.get("wp_mprotect", "-"),
                 r.get("sigsegv", "-"), r.get("old_pages_rescanned", "-"),
                 "-" if ob is None else "%.1f" % (ob / 1048576.0),
                 "" if r["same_output"] else "  OUTPUT DIFFERS",
                 rat("wall_s"), rat("minor_mean_ms"), rat("maxrss_kib"),
                 pr, late(r, base)))
    print("(steady: the mean minor pause after the last major "
          "collection, median over runs)")
    print("wrote %s" % os.path.relpath(jpath, ROOT))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        keys = [("wall_s", "time"), ("minor_mean_ms", "mean minor pause"),
                ("major_mean_ms", "mean major pause"),
                ("maxrss_kib", "max RSS")]
        keys.append(("old_bytes_rescanned", "old bytes rescanned"))
        ports = [v for v in VARIANTS if v != "stock" and
                 any(x["variant"] == v for x in rows)]
        fig, axes = plt.subplots(1, len(ports), figsize=(5 * len(ports), 4),
                                 sharey=True, squeeze=False)
        width = 0.8 / len(keys)
        for ax, v in zip(axes[0], ports):
            for i, (k, label) in enumerate(keys):
                vals = []
                for prog in progs:
                    s = next((x for x in rows if x["prog"] == prog and
                              x["variant"] == "stock"), None)
                    f = next((x for x in rows if x["prog"] == prog and
                              x["variant"] == v), None)
                    vals.append(f.get(k, 0) / s[k]
                                if s and f and s.get(k) else 0)
                ax.bar([j + i * width for j in range(len(progs))], vals,
                       width, label=label)
            ax.axhline(1.0, color="black", linewidth=0.8)
            ax.set_xticks([j + 0.4 - width / 2 for j in range(len(progs))])
            ax.set_xticklabels(progs, fontsize=8)
            ax.set_title("%s / stock (medians)" % v, fontsize=10)
        axes[0][0].set_ylabel("ratio to the stock mprotect barrier")
        axes[0][0].legend(fontsize=7)
        fig.suptitle("Racket BC 3m: the fgvm port vs the stock barrier")
        fig.tight_layout()
        ppath = os.path.join(out, "racket.png")
        fig.savefig(ppath, dpi=110)
        print("wrote %s" % os.path.relpath(ppath, ROOT))
    except ImportError:
        print("matplotlib missing: no plot")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--racket", default=os.path.join(
        ROOT, "adapters", "racket", "inst", "bin", "racket"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true",
                    help="smaller sizes, no raco-make (make bench)")
    ap.add_argument("--progs", default=None)
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                    help="of " + ",".join(VARIANTS) + " (stock first)")
    ap.add_argument("--out", default="bench/out")
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="no runs: one table, JSON and plot from earlier "
                    "racket.json files (e.g. the short programs and "
                    "raco-make run apart)")
    a = ap.parse_args()
    if a.merge:
        meta, rows, runs, progs = {"merged": a.merge}, [], [], []
        for path in a.merge:
            with open(path) as f:
                d = json.load(f)
            meta.setdefault("racket", d.get("racket"))
            rows += d["rows"]
            runs += d["runs"]
            for r in d["rows"]:
                if r["prog"] not in progs:
                    progs.append(r["prog"])
        report(a.out, meta, rows, runs, progs)
        return
    if not os.access(a.racket, os.X_OK):
        sys.exit("bench/racket: no racket3m at %s (make racket)" % a.racket)
    variants = a.variants.split(",")
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants or variants[0] != "stock":
        sys.exit("bench/racket: --variants: %s (of %s, stock first)"
                 % (",".join(bad) or "stock must come first",
                    ",".join(VARIANTS)))
    progs = a.progs.split(",") if a.progs else \
        [p for p in PROGS if not (a.quick and PROGS[p][1] is None)]
    tmp = tempfile.mkdtemp(prefix="fgvm-racket-bench.")
    runs, failed = [], False
    try:
        for prog in progs:
            args = PROGS[prog][1 if a.quick else 0]
            # warm-up: compiles the program (raco make's compiled/)
            run(a.racket, prog, args, "stock", tmp, a.timeout)
            order = list(variants)
            for rep in range(a.reps):
                k = rep % len(order)
                for v in order[k:] + order[:k]:
                    r = run(a.racket, prog, args, v, tmp, a.timeout)
                    r["rep"] = rep
                    runs.append(r)
                    if "error" in r:
                        failed = True
                        print("%s %s: %s" % (prog, v, r["error"]))
            for v in variants:
                runs.append(dict(prog=prog, variant=v, counts=barrier(
                    a.racket, prog, args, v, tmp)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = []
    for prog in progs:
        rs = {v: [r for r in runs if r["prog"] == prog and r["variant"] == v
                  and "wall_s" in r] for v in variants}
        outs = {r["out"] for v in variants for r in rs[v]
                if prog != "raco-make"}
        same = len(outs) <= 1
        failed = failed or not same
        cnt = {v: next((r["counts"] for r in runs if r["prog"] == prog and
                        r["variant"] == v and "counts" in r), {})
               for v in variants}
        for v in variants:
            if not rs[v]:
                continue
            rows.append({
                "prog": prog, "variant": v, "n": len(rs[v]),
                "wall_s": compare.med([r["wall_s"] for r in rs[v]]),
                "maxrss_kib": compare.med([r["maxrss_kib"] for r in rs[v]]),
                "minor_mean_ms": compare.med(
                    [mean(r["minor_ms"]) for r in rs[v]]),
                "minor_max_ms": compare.med(
                    [max(r["minor_ms"] or [0]) for r in rs[v]]),
                "major_mean_ms": compare.med(
                    [mean(r["major_ms"]) for r in rs[v]]),
                "minors": compare.med([len(r["minor_ms"]) for r in rs[v]]),
                # mean of the minor pauses after the last major collection
                # (mutable-old*: after the build's explicit collect-garbage)
                "minor_late_mean_ms": compare.med(
                    [mean(r.get("minor_late_ms") or [0]) for r in rs[v]]),
                "majors": compare.med([len(r["major_ms"]) for r in rs[v]]),
                "same_output": same,
                **cnt[v]})
    report(a.out, {"racket": a.racket, "reps": a.reps, "quick": a.quick},
           rows, runs, progs)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
