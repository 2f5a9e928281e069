#!/usr/bin/python3
"""The Guile workload set: stock libgc against the fgvm adapter's.

Unmodified Guile 3.0 runs four programs of the shapes Boehm clients have
(bench/boehm/guile/*.scm) in incremental mode:
  sparse-old   a large old vector of small lists, a few thousand random
               vector-set! per round, bursts of short-lived trees;
  hash-heavy   a long-lived string-keyed hash table with churn, and a
               temporary table per round;
  string-port  text built with string ports, read-line, tokenized, into a
               word-count index that lives through the run;
  alloc-long   long-running and allocation-heavy: a sliding window of
               records, most allocation dying young.
The variant stock-stw is stock libgc with incremental mode off (Guile's
default): every collection a full mark with the world stopped.
Each under each variant (compare.py's: stock, fg-page, fg-64, ...), the
repetitions interleaved with the variant order rotated.  Per run: wall
time, max RSS (wait4), Boehm's world-stopped pauses (GC_PRINT_STATS),
bytes rescanned (the adapter's count; for stock, Boehm's dirty pages x
4096), the adapter's DIFF counts and twin bytes held, and whether stdout
is byte-identical to stock's.  Writes OUT/guile.json and OUT/guile.png (ratios to stock).
Exit status 1 if a run failed or an output differs.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (variants, environments, Boehm's stats)

PROGS = {
    # name: (full-size arguments, --quick arguments, warm-up arguments)
    "sparse-old": (["1000000", "240"], ["300000", "80"], ["100", "1"]),
    "hash-heavy": (["200000", "30"], ["100000", "15"], ["100", "1"]),
    "string-port": (["20000", "6"], ["10000", "3"], ["10", "1"]),
    "alloc-long": (["100000", "600000"], ["50000", "300000"], ["10", "10"]),
}
# Variants of this set only: stock libgc with incremental mode off, what a
# Guile program gets by default.  Boehm then stops the world for every
# collection and marks the whole heap; the set's other variants are all
# incremental, so this row shows what incremental mode itself gains or
# costs on each program.
NOT_INCREMENTAL = {"stock-stw": "stock"}
RE_RESCANNED = re.compile(r"(\d+) bytes rescanned")
RE_COMPARED = re.compile(r"DIFF: (\d+) pages compared")
RE_TWINS = re.compile(r"(\d+) bytes of twins held \(heap (\d+) bytes\)")


def run(guile, prog, args, variant, timeout):
    extra = {"FG_BOEHM_STATS": "1"}
    if variant not in NOT_INCREMENTAL:
        extra["GC_ENABLE_INCREMENTAL"] = "1"
    env = compare.variant_env(NOT_INCREMENTAL.get(variant, variant), extra,
                              True)
    path = compare.rel("bench/boehm/guile/%s.scm" % prog)
    # Compiled, as programs run: the warm-up run compiled it into
    # Guile's cache (auto-compilation).
    cmd = [guile, "-s", path] + args
    rec = {"prog": prog, "variant": variant, "cmd": cmd}
    t0 = time.monotonic()
    # Output to files and wait4 ourselves: the run's own peak RSS.
    with tempfile.TemporaryFile("w+") as fo, \
            tempfile.TemporaryFile("w+") as fe:
        p = subprocess.Popen(cmd, env=env, cwd=compare.ROOT, stdout=fo,
                             stderr=fe)
        killer = threading.Timer(timeout, p.kill)
        killer.start()
        _, status, ru = os.wait4(p.pid, 0)
        killer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read()
    if wall >= timeout:
        rec["error"] = "timeout after %d s" % timeout
        return rec
    rec.update(wall_ms=wall * 1e3, rc=p.returncode, stdout=out,
               maxrss_kib=ru.ru_maxrss)
    st = compare.parse_stats(err)
    rec["pauses"] = st["world_stopped_count"]
    rec["pause_mean_ms"] = st["world_stopped_mean_ms"]
    rec["pause_max_ms"] = st["world_stopped_max_ms"]
    rec["pause_total_ms"] = (st["world_stopped_mean_ms"] or 0) * \
        (st["world_stopped_count"] or 0)
    m = RE_RESCANNED.search(err)
    rec["rescanned"] = int(m.group(1)) if m else st["dirty_bytes_approx"]
    rec["rescanned_src"] = "adapter" if m else "pages*4096"
    m = RE_COMPARED.search(err)
    rec["pages_compared"] = int(m.group(1)) if m else 0
    m = RE_TWINS.search(err)
    rec["twin_bytes"] = int(m.group(1)) if m else 0
    rec["heap_bytes"] = int(m.group(2)) if m else None
    if p.returncode != 0:
        rec["error"] = "exit %d: %s" % (p.returncode, err.strip()[-300:])
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=None,
                    help="runs per program and variant (3; 1 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="smaller programs, one repetition (make bench)")
    ap.add_argument("--progs", default=",".join(PROGS))
    ap.add_argument("--variants",
                    default="stock-stw,stock,fg-page,fg-64,fg-auto")
    ap.add_argument("--adapter-dir", default=compare.DEFAULT_ADAPTER_DIR)
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--out", default="bench/out")
    a = ap.parse_args()
    compare.ADAPTER[0] = a.adapter_dir
    reps = a.reps if a.reps is not None else (1 if a.quick else 3)
    guile = shutil.which("guile3.0") or shutil.which("guile")
    if not guile:
        print("guile.py: no guile3.0 on PATH: the Guile workload set is "
              "skipped (Debian: apt-get install guile-3.0)")
        return 0
    progs = a.progs.split(",")
    variants = a.variants.split(",")
    for v in variants:
        if v not in compare.VARIANTS and v not in NOT_INCREMENTAL:
            sys.exit("guile.py: unknown variant %r" % v)
    for pr in progs:
        if pr not in PROGS:
            sys.exit("guile.py: unknown program %r (have: %s)" %
                     (pr, ", ".join(PROGS)))
    if not os.path.exists(os.path.join(compare.rel(a.adapter_dir),
                                       "libgc.so.1")):
        variants = [v for v in variants
                    if v == "stock" or v in NOT_INCREMENTAL]
        print("*** no adapter library in %s: stock only ***" % a.adapter_dir)
    print("guile workload set: %s; variants %s; %d repetition(s)%s" % (
        ", ".join(progs), ", ".join(variants), reps,
        " (quick sizes)" if a.quick else ""))
    runs = []
    t_all = time.monotonic()
    # Warm-up, untimed: compiles each program once (Guile's auto-compile
    # cache), loads each variant's libraries.
    for pr in progs:
        for v in variants:
            r = run(guile, pr, PROGS[pr][2], v, a.timeout)
            if "error" in r:
                print("  warm-up %s %s: %s" % (pr, v, r["error"]))
    for rep in range(reps):
        order = variants[rep % len(variants):] + variants[:rep % len(variants)]
        for pr in progs:
            args = PROGS[pr][1 if a.quick else 0]
            for v in order:
                r = run(guile, pr, args, v, a.timeout)
                r["rep"] = rep
                runs.append(r)
                print("  rep %d %-12s %-8s %s" % (rep, pr, v, (
                    "wall %.0f ms, RSS %.0f MiB, %d pauses, mean %.2f ms, "
                    "max %.2f ms" % (r["wall_ms"], (r["maxrss_kib"] or 0) /
                                     1024, r["pauses"], r["pause_mean_ms"],
                                     r["pause_max_ms"]))
                    if "wall_ms" in r else "", ) +
                    ("ERROR: " + r["error"] if "error" in r else ""),
                    flush=True)
    summary = summarize(runs, progs, variants)
    table(summary, progs, variants)
    outdir = compare.rel(a.out)
    os.makedirs(outdir, exist_ok=True)
    jpath = os.path.join(outdir, "guile.json")
    with open(jpath, "w") as f:
        json.dump({"meta": {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                            "guile": guile, "reps": reps, "quick": a.quick,
                            "cpus": os.cpu_count(),
                            "elapsed_s": round(time.monotonic() - t_all, 1)},
                   "summary": summary,
                   "runs": [{k: v for k, v in r.items() if k != "stdout"}
                            for r in runs]}, f, indent=1)
    print("wrote %s" % os.path.relpath(jpath, compare.ROOT))
    ppath = os.path.join(outdir, "guile.png")
    if plot(summary, progs, variants, ppath):
        print("wrote %s" % os.path.relpath(ppath, compare.ROOT))
    bad = [r for r in runs if "error" in r]
    differ = [(pr, v) for pr in progs for v in variants
              if summary[pr].get(v, {}).get("output_identical") is False]
    if differ:
        print("OUTPUT DIFFERS from stock: %s" % ", ".join(
            "%s/%s" % d for d in differ))
    if bad:
        print("%d run(s) failed; see %s" % (len(bad), jpath))
    return 1 if bad or differ else 0


KEYS = ("wall_ms", "maxrss_kib", "pause_mean_ms", "pause_max_ms",
        "pause_total_ms", "rescanned", "pages_compared", "pauses", "twin_bytes")


def summarize(runs, progs, variants):
    out = {}
    for pr in progs:
        out[pr] = {}
        ref = next((r["stdout"] for r in runs if r["prog"] == pr and
                    r["variant"] == "stock" and "error" not in r), None)
        for v in variants:
            rs = [r for r in runs if r["prog"] == pr and r["variant"] == v
                  and "error" not in r]
            if not rs:
                out[pr][v] = {"failed": True}
                continue
            s = {k: compare.med([r[k] for r in rs]) for k in KEYS}
            s["runs"] = len(rs)
            s["output_identical"] = None if ref is None else all(
                r["stdout"] == ref for r in rs)
            out[pr][v] = s
        for v, s in out[pr].items():
            for base in ("stock", "fg-page"):
                b = out[pr].get(base, {})
                for k in ("wall_ms", "maxrss_kib", "pause_mean_ms",
                          "pause_max_ms", "pause_total_ms", "rescanned"):
                    x, y = s.get(k), b.get(k)
                    s["%s_vs_%s" % (k, base)] = x / y if x is not None \
                        and y else None
    return out


def table(summary, progs, variants):
    f = compare.fmt
    print("\n== Guile workload set, GC_ENABLE_INCREMENTAL=1 but for %s "
          "(medians; x/st: ratio to stock, x/pg: to fg-page) ==" %
          ", ".join(NOT_INCREMENTAL))
    hdr = ("program", "variant", "wall ms", "x/st", "RSS MiB", "x/st",
           "mean pause", "x/st", "x/pg", "max pause", "x/st", "GCs",
           "all pauses", "x/st", "rescanned",
           "x/st", "compared", "twins", "output")
    rows = [hdr]
    for pr in progs:
        for v in variants:
            s = summary[pr].get(v, {})
            if s.get("failed"):
                rows.append((pr, v, "FAILED") + ("",) * (len(hdr) - 3))
                continue
            rows.append((
                pr, v, f(s["wall_ms"], 0), f(s["wall_ms_vs_stock"], 2),
                f((s["maxrss_kib"] or 0) / 1024, 0),
                f(s["maxrss_kib_vs_stock"], 2), f(s["pause_mean_ms"], 2),
                f(s["pause_mean_ms_vs_stock"], 2),
                f(s["pause_mean_ms_vs_fg-page"], 2), f(s["pause_max_ms"], 1),
                f(s["pause_max_ms_vs_stock"], 2), f(s["pauses"], 0),
                f(s["pause_total_ms"], 0), f(s["pause_total_ms_vs_stock"], 2),
                compare.fmt_bytes(s["rescanned"]),
                f(s["rescanned_vs_stock"], 2), f(s["pages_compared"], 0),
                compare.fmt_bytes(s["twin_bytes"]),
                {True: "identical", False: "DIFFERS", None: "-"}[
                    s["output_identical"]]))
    w = [max(len(str(r[i])) for r in rows) for i in range(len(hdr))]
    for r in rows:
        print("  ".join(str(c).rjust(x) if i > 1 else str(c).ljust(x)
                        for i, (c, x) in enumerate(zip(r, w))))
    print("stock's 'rescanned' is Boehm's dirty pages x 4096; the adapter's "
          "is its own count of marked bytes pushed again.")


def plot(summary, progs, variants, path):
    plt = compare.pyplot()
    if plt is None:
        return False
    metrics = (("wall_ms", "time"), ("pause_mean_ms", "mean pause"),
               ("pause_max_ms", "max pause"),
               ("pause_total_ms", "all pauses"), ("maxrss_kib", "max RSS"),
               ("rescanned", "rescanned"))
    fvars = [v for v in variants if v != "stock"]
    fig, axes = plt.subplots(1, len(progs), figsize=(4.2 * len(progs), 3.8),
                             squeeze=False)
    for ax, pr in zip(axes[0], progs):
        width = 0.8 / max(1, len(fvars))
        for i, v in enumerate(fvars):
            s = summary[pr].get(v, {})
            ys = [s.get(k + "_vs_stock") or 0 for k, _ in metrics]
            ax.bar([j + i * width for j in range(len(metrics))], ys, width,
                   label=v)
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(metrics))])
        ax.set_xticklabels([n for _, n in metrics], rotation=30, ha="right")
        ax.set_title(pr)
        ax.set_ylabel("ratio to stock libgc (below 1: better)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Guile 3.0 workload set: each variant / stock libgc, incremental")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


if __name__ == "__main__":
    sys.exit(main())
