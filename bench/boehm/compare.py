#!/usr/bin/python3
"""Compare stock Boehm GC 8.2.2 with the fgvm adapter on GCBench and sparse.

Runs every benchmark under every variant in one invocation, interleaved
(repetition by repetition, the variant order rotated each time), then once
more per benchmark and variant with GC_PRINT_STATS=1 to read Boehm's own
counts ("Marked from N dirty pages", "World-stopped marking took N ms").

Variants:
  stock    LD_LIBRARY_PATH unset: Debian's libgc.so.1 (mprotect VDB)
  fg-page  LD_LIBRARY_PATH=adapters/boehm/lib, FG_CARD=4096
  fg-64    same, FG_CARD=64 (DIFF precision with sticky twins, line digests)
  fg-auto  same, FG_CARD=auto (the adapter's default)
and, only when named with --variants, fg-64-copy (twins as page copies:
FG_BOEHM_TWIN_FORM=copy), fg-256 (FG_CARD=256), fg-page-sync and fg-64-sync (the same
with FG_BACKEND=uffd-sync) and fg-page-noexempt and fg-64-noexempt (the same
with FG_BOEHM_EXEMPT=0: free and young blocks watched), fg-64-hold and fg-auto-hold
(the same with FG_BOEHM_HOLD=32: the sweep holds back blocks whose live
objects sit in 32 of their 64 lines or more). The fg-* variants run only when
adapters/boehm/lib/libgc.so.1 exists.

Writes bench/out/boehm.json (every run, with its pauses, and the summary)
and bench/out/boehm-pauses.png (pause-time CDFs, one panel per benchmark).
Paths are relative to the repository root, wherever this is run from.
Run with /usr/bin/python3 (matplotlib is needed for the PNG only).
"""

import argparse
import json
import os
import platform
import re
import statistics
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DEFAULT_ADAPTER_DIR = "adapters/boehm/lib"
ADAPTER = [DEFAULT_ADAPTER_DIR]  # --adapter-dir changes it
STOCK = [None]  # --stock-dir: a folder with the stock libgc.so.1

# name -> environment for the adapter (None: stock library).
VARIANTS = {
    "stock": None,
    "fg-page": {"FG_CARD": "4096"},
    "fg-64": {"FG_CARD": "64"},
    # The adapter's default: 64-byte lines where twins pay, off where
    # they do not (FG_CARD=auto).
    "fg-auto": {"FG_CARD": "auto"},
    "fg-256": {"FG_CARD": "256"},
    # Named with --variants: the twin policy spelled out, hot twins, and
    # page precision at 64-byte cards (FG_BOEHM_TWINS=none).
    "fg-64-sticky": {"FG_CARD": "64", "FG_BOEHM_TWINS": "sticky"},
    "fg-64-hot": {"FG_CARD": "64", "FG_BOEHM_TWINS": "hot"},
    "fg-64-page": {"FG_CARD": "64", "FG_BOEHM_TWINS": "none"},
    # Twins as exact page copies instead of line digests (the default).
    "fg-64-copy": {"FG_CARD": "64", "FG_BOEHM_TWIN_FORM": "copy"},
    "fg-auto-copy": {"FG_CARD": "auto", "FG_BOEHM_TWIN_FORM": "copy"},
    # Not run unless named with --variants: the uffd-sync backend takes a
    # twin at the first write, so sub-page cards are exact from the first
    # epoch (uffd-async twins only pages written in two epochs in a row).
    "fg-page-sync": {"FG_CARD": "4096", "FG_BACKEND": "uffd-sync"},
    "fg-64-sync": {"FG_CARD": "64", "FG_BACKEND": "uffd-sync"},
    # The adapter without exempt blocks (free and young blocks watched
    # like the rest): what leaving them alone saves.
    "fg-page-noexempt": {"FG_CARD": "4096", "FG_BOEHM_EXEMPT": "0"},
    "fg-64-noexempt": {"FG_CARD": "64", "FG_BOEHM_EXEMPT": "0"},
    "fg-auto-noexempt": {"FG_CARD": "auto", "FG_BOEHM_EXEMPT": "0"},
    # Static roots scanned whole at every collection, as before patch 4.
    "fg-auto-noroots": {"FG_CARD": "auto", "FG_BOEHM_ROOTS": "0"},
    "fg-page-noroots": {"FG_CARD": "4096", "FG_BOEHM_ROOTS": "0"},
    # Sticky twins only where they pay (FG_TWIN_ADAPTIVE).
    "fg-64-adaptive": {"FG_CARD": "64", "FG_BOEHM_TWINS": "adaptive"},
    "fg-256-adaptive": {"FG_CARD": "256", "FG_BOEHM_TWINS": "adaptive"},
    # Blocks whose live objects sit in most of their lines left unswept
    # for a collection (patch 3), so that new objects do not make their
    # lines dirty: fewer lines to rescan, more memory.
    "fg-64-hold": {"FG_CARD": "64", "FG_BOEHM_HOLD": "32"},
    "fg-auto-hold": {"FG_CARD": "auto", "FG_BOEHM_HOLD": "32"},
}
DEFAULT_VARIANTS = ["stock", "fg-page", "fg-64", "fg-auto"]

# Environment variables that would change what a run measures; every run
# starts from the caller's environment without them.
SCRUB = ("LD_LIBRARY_PATH", "FG_CARD", "FG_BACKEND", "FG_PRECISION",
         "FG_BOEHM_EXEMPT", "FG_BOEHM_PRECLEAN", "FG_BOEHM_TWIN_CAP",
         "FG_BOEHM_ROOTS", "FG_BOEHM_HOLD",
         "FG_BOEHM_TWINS", "FG_TWINS",
         "GC_ENABLE_INCREMENTAL",
         "GC_DISABLE_INCREMENTAL", "GC_PRINT_STATS", "GC_PRINT_VERBOSE_STATS",
         "GC_PAUSE_TIME_TARGET", "GC_FULL_FREQUENCY", "GC_MARKERS",
         "GC_INITIAL_HEAP_SIZE", "GC_MAXIMUM_HEAP_SIZE", "GC_FREE_SPACE_DIVISOR")

RE_DIRTY = re.compile(r"Marked from (\d+) dirty pages")
RE_WSM = re.compile(r"World-stopped marking took (\d+) ms (\d+) ns")
RE_BEGIN = "# fgbench: measure begin"
RE_END = "# fgbench: measure end"


def rel(path):
    return path if os.path.isabs(path) else os.path.join(ROOT, path)


def benches(args):
    """name -> (binary, argv tail, extra environment)."""
    q = args.quick
    gscale = ["--scale", "2" if q else "0"]
    sp = ["--mib", "32", "--rounds", "5"] if q else []
    b = {
        "gcbench": (args.gcbench, ["--json"] + gscale, {}),
        "gcbench-incr": (args.gcbench, ["--json"] + gscale,
                         {"GC_ENABLE_INCREMENTAL": "1"}),
        "gcbench-mt2-incr": (args.gcbench,
                             ["--json", "--threads", "2", "--scale",
                              "3" if q else "1"],
                             {"GC_ENABLE_INCREMENTAL": "1"}),
        "sparse": (args.sparse, ["--json"] + sp, {}),
    }
    names = args.benches.split(",") if args.benches else (
        ["gcbench", "gcbench-incr", "sparse"] if q else list(b))
    for n in names:
        if n not in b:
            sys.exit("unknown benchmark %r (have: %s)" % (n, ", ".join(b)))
    return {n: b[n] for n in names}


def variant_env(variant, extra, stats):
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    env.update(extra)
    fg = VARIANTS[variant]
    if fg is not None:
        env["LD_LIBRARY_PATH"] = rel(ADAPTER[0])
        env.update(fg)
    elif STOCK[0]:
        env["LD_LIBRARY_PATH"] = rel(STOCK[0])
    if stats:
        env["GC_PRINT_STATS"] = "1"
    return env


def run_one(bench, spec, variant, rep, stats, timeout):
    binary, argv, extra = spec
    cmd = [rel(binary)] + argv
    env = variant_env(variant, extra, stats)
    rec = {"bench": bench, "variant": variant, "rep": rep,
           "stats_run": stats, "cmd": cmd,
           "env": {k: env[k] for k in ("LD_LIBRARY_PATH", "FG_CARD",
                                       "FG_BACKEND", "GC_ENABLE_INCREMENTAL",
                                       "GC_PRINT_STATS") if k in env}}
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        rec["error"] = "timeout after %d s" % timeout
        return rec
    except OSError as e:
        rec["error"] = str(e)
        return rec
    rec["elapsed_s"] = round(time.monotonic() - t0, 3)
    rec["rc"] = p.returncode
    res = None
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            try:
                res = json.loads(line)
            except ValueError:
                pass
            break
    if res is None:
        rec["error"] = "exit %d, no JSON; stderr: %s" % (
            p.returncode, p.stderr.strip()[-400:])
        return rec
    rec["result"] = res
    if p.returncode != 0 or not res.get("ok", False):
        rec["error"] = "exit %d, ok=%s (data damaged?); stderr: %s" % (
            p.returncode, res.get("ok"), p.stderr.strip()[-400:])
    # Which library did the dynamic linker really load?
    lib = res.get("libgc", "")
    want_adapter = VARIANTS[variant] is not None
    if want_adapter != lib.startswith(rel(ADAPTER[0])):
        rec["warning"] = "variant %s loaded %s" % (variant, lib)
    if stats:
        rec["boehm_stats"] = parse_stats(p.stderr)
    return rec


def parse_stats(stderr):
    """Boehm's own counts, over the measured phase when the benchmark marked
    it on stderr (it does when GC_PRINT_STATS is set)."""
    lines = stderr.splitlines()
    if RE_BEGIN in lines:
        lines = lines[lines.index(RE_BEGIN) + 1:]
        if RE_END in lines:
            lines = lines[:lines.index(RE_END)]
    dirty, wsm = [], []
    for ln in lines:
        m = RE_DIRTY.search(ln)
        if m:
            dirty.append(int(m.group(1)))
        m = RE_WSM.search(ln)
        if m:
            wsm.append(int(m.group(1)) + int(m.group(2)) / 1e6)
    return {
        "dirty_pages_lines": len(dirty),
        "dirty_pages": sum(dirty),
        # Boehm counts rescanned blocks (a small-object block is one 4 KiB
        # page; a large object counts once whatever its size).
        "dirty_bytes_approx": sum(dirty) * 4096,
        "world_stopped_count": len(wsm),
        "world_stopped_mean_ms": statistics.mean(wsm) if wsm else 0.0,
        "world_stopped_max_ms": max(wsm) if wsm else 0.0,
        "world_stopped_total_ms": sum(wsm),
    }


def med(values):
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


def summarize(runs, stats_runs, bench_names, variants):
    out = {}
    for b in bench_names:
        out[b] = {}
        for v in variants:
            rs = [r["result"] for r in runs
                  if r["bench"] == b and r["variant"] == v and "result" in r]
            fails = [r for r in runs if r["bench"] == b
                     and r["variant"] == v and "error" in r]
            s = {"runs": len(rs), "failures": len(fails)}
            if rs:
                pk = "pauses"
                s["wall_ms"] = med([r["wall_ms"] for r in rs])
                for k in ("count", "mean_ms", "p50_ms", "p99_ms", "max_ms",
                          "total_ms"):
                    s["pause_" + k] = med([r[pk][k] for r in rs])
                s["minor_pause_mean_ms"] = med(
                    [r["pauses_minor"]["mean_ms"] for r in rs])
                s["full_pauses"] = med([r["pauses_full"]["count"]
                                        for r in rs])
                s["collections"] = med([r["collections"] for r in rs])
                s["minflt"] = med([r["minflt"] for r in rs])
                br = med([r["bytes_rescanned"] for r in rs])
                s["bytes_rescanned"] = br if br is not None and br >= 0 \
                    else None
                if "update_ms" in rs[0]:
                    s["update_ms"] = med([r["update_ms"] for r in rs])
                    s["collect_ms"] = med([r["collect_ms"] for r in rs])
            st = [r for r in stats_runs if r["bench"] == b
                  and r["variant"] == v and "boehm_stats" in r]
            if st:
                bs = st[0]["boehm_stats"]
                s["stats_dirty_pages"] = bs["dirty_pages"]
                s["stats_dirty_bytes"] = bs["dirty_bytes_approx"]
                s["stats_world_stopped_mean_ms"] = bs["world_stopped_mean_ms"]
                s["stats_world_stopped_count"] = bs["world_stopped_count"]
                if "result" in st[0]:
                    s["stats_inprocess_pause_mean_ms"] = \
                        st[0]["result"]["pauses"]["mean_ms"]
            # Best available "bytes rescanned": the adapter's own counter,
            # else Boehm's dirty-page count times 4096.
            if s.get("bytes_rescanned") is not None:
                s["rescanned"], s["rescanned_src"] = s["bytes_rescanned"], \
                    "adapter"
            elif "stats_dirty_bytes" in s:
                s["rescanned"], s["rescanned_src"] = s["stats_dirty_bytes"], \
                    "pages*4096"
            out[b][v] = s
        for base in ("stock", "fg-page"):
            if base not in out[b] or "wall_ms" not in out[b][base]:
                continue
            bs = out[b][base]
            for v, s in out[b].items():
                if "wall_ms" not in s:
                    continue
                for k in ("pause_mean_ms", "wall_ms", "rescanned"):
                    x, y = s.get(k), bs.get(k)
                    s["%s_vs_%s" % (k, base)] = (x / y) if (
                        x is not None and y) else None
    return out


def fmt(x, nd=1):
    if x is None:
        return "-"
    if isinstance(x, float):
        return "%.*f" % (nd, x)
    return str(x)


def fmt_bytes(x):
    if x is None:
        return "-"
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if x >= div:
            return "%.1f%s" % (x / div, unit)
    return "%dB" % x


def print_table(summary, variants):
    hdr = ("variant", "wall ms", "pauses", "mean", "p50", "p99", "max",
           "GCs", "minflt", "rescanned", "dirty pg", "BoehmWSM",
           "pause/st", "wall/st", "resc/st", "pause/pg", "wall/pg",
           "resc/pg")
    for b, per in summary.items():
        print()
        print("== %s (medians; pause times in ms; 'dirty pg' and 'BoehmWSM' "
              "from one GC_PRINT_STATS=1 run) ==" % b)
        rows = [hdr]
        for v in variants:
            s = per.get(v, {})
            if "wall_ms" not in s:
                rows.append((v, "FAILED (%d)" % s.get("failures", 0)) +
                            ("",) * (len(hdr) - 2))
                continue
            resc = fmt_bytes(s.get("rescanned"))
            if s.get("rescanned_src") == "pages*4096":
                resc += "*"
            rows.append((
                v + (" (!%d)" % s["failures"] if s["failures"] else ""),
                fmt(s["wall_ms"], 0), fmt(s["pause_count"], 0),
                fmt(s["pause_mean_ms"], 2), fmt(s["pause_p50_ms"], 2),
                fmt(s["pause_p99_ms"], 2), fmt(s["pause_max_ms"], 2),
                fmt(s["collections"], 0), fmt(s["minflt"], 0), resc,
                fmt(s.get("stats_dirty_pages")),
                fmt(s.get("stats_world_stopped_mean_ms"), 2),
                fmt(s.get("pause_mean_ms_vs_stock"), 2),
                fmt(s.get("wall_ms_vs_stock"), 2),
                fmt(s.get("rescanned_vs_stock"), 3),
                fmt(s.get("pause_mean_ms_vs_fg-page"), 2),
                fmt(s.get("wall_ms_vs_fg-page"), 2),
                fmt(s.get("rescanned_vs_fg-page"), 3)))
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(hdr))]
        for r in rows:
            print("  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                            for i, (c, w) in enumerate(zip(r, widths))))
    print()
    print("rescanned: the adapter's GC_fg_get_bytes_rescanned() delta; '*' = "
          "stock estimate, Boehm's 'Marked from N dirty pages' x 4096 (it "
          "counts rescanned blocks; minor collections only).")
    print("x/st, x/pg: ratio to stock, to fg-page (below 1: less).")


def pyplot():
    """matplotlib.pyplot drawing to files, or None (said on stdout)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (run with /usr/bin/python3): no plot")
        return None
    return plt


def plot(runs, bench_names, variants, path):
    plt = pyplot()
    if plt is None:
        return False
    n = len(bench_names)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.0), squeeze=False)
    for ax, b in zip(axes[0], bench_names):
        for v in variants:
            p = sorted(x[0] for r in runs if r["bench"] == b
                       and r["variant"] == v and "result" in r
                       for x in r["result"].get("pause_list", []))
            if not p:
                continue
            y = [0.0] + [(i + 1) / len(p) for i in range(len(p))]
            ax.step([p[0]] + p, y, where="post",
                    label="%s (n=%d)" % (v, len(p)))
        ax.set_xscale("log")
        ax.set_xlabel("world-stopped pause (ms)")
        ax.set_ylabel("fraction of pauses <= x")
        ax.set_title(b)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Boehm GC 8.2.2 pause times, all repetitions pooled")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def guile_compare(variants, reps, scale, timeout):
    """Unmodified Guile 3.0 on a GC-heavy Scheme program, incremental mode,
    stock libgc against the adapter's: wall time, Boehm's own world-stopped
    pauses (GC_PRINT_STATS), and whether stdout is byte-identical."""
    guile = shutil.which("guile3.0") or shutil.which("guile")
    prog = rel("tests/boehm/gc-heavy.scm")
    if not guile or not os.path.exists(prog):
        print("\n== guile: skipped (%s) ==" % (
            "no guile3.0 on PATH" if not guile else prog + " missing"))
        return None
    rows, outputs = {}, {}
    for rep in range(reps):
        for v in variants:
            env = variant_env(v, {"GC_ENABLE_INCREMENTAL": "1"}, True)
            t0 = time.monotonic()
            try:
                p = subprocess.run([guile, "--no-auto-compile", "-s", prog,
                                    str(scale)], env=env, cwd=ROOT,
                                   capture_output=True, text=True,
                                   timeout=timeout)
            except subprocess.TimeoutExpired:
                print("  guile %s: timeout" % v)
                continue
            wall = (time.monotonic() - t0) * 1e3
            st = parse_stats(p.stderr)
            outputs.setdefault(v, p.stdout)
            r = rows.setdefault(v, {"wall_ms": [], "pause_mean_ms": [],
                                    "pause_max_ms": [], "pauses": [],
                                    "rc": []})
            r["wall_ms"].append(wall)
            r["pause_mean_ms"].append(st["world_stopped_mean_ms"])
            r["pause_max_ms"].append(st["world_stopped_max_ms"])
            r["pauses"].append(st["world_stopped_count"])
            r["rc"].append(p.returncode)
            print("  rep %d guile %-8s wall %.0f ms, %d pauses, mean %.2f ms,"
                  " rc %d" % (rep, v, wall, st["world_stopped_count"],
                              st["world_stopped_mean_ms"], p.returncode),
                  flush=True)
    if "stock" not in rows:
        return None
    base = rows["stock"]
    print("\n== guile %s gc-heavy.scm %d, GC_ENABLE_INCREMENTAL=1 (medians;"
          " pauses from GC_PRINT_STATS) ==" % (os.path.basename(guile),
                                               scale))
    print("variant       wall ms  pauses  mean ms  max ms  wall/st  pause/st"
          "  output")
    summary = {}
    for v, r in rows.items():
        w, m = med(r["wall_ms"]), med(r["pause_mean_ms"])
        same = outputs.get(v) == outputs.get("stock")
        summary[v] = {"wall_ms": w, "pause_mean_ms": m,
                      "pause_max_ms": med(r["pause_max_ms"]),
                      "pauses": med(r["pauses"]), "rc": r["rc"],
                      "output_identical_to_stock": same}
        print("%-12s %8.0f %7d %8.2f %7.2f %8.2f %9.2f  %s" % (
            v, w, med(r["pauses"]), m, med(r["pause_max_ms"]),
            w / med(base["wall_ms"]),
            m / med(base["pause_mean_ms"]) if med(base["pause_mean_ms"])
            else float("nan"),
            "identical" if same else "DIFFERS"))
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=None,
                    help="repetitions per benchmark and variant (default 3; "
                    "1 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, one repetition: under a minute")
    ap.add_argument("--gcbench", default="bench/boehm/gcbench")
    ap.add_argument("--sparse", default="bench/boehm/sparse")
    ap.add_argument("--benches", default=None,
                    help="comma-separated subset of gcbench, gcbench-incr, "
                    "gcbench-mt2-incr, sparse")
    ap.add_argument("--variants", default=None,
                    help="comma-separated, from " + ", ".join(VARIANTS) +
                    " (default " + ",".join(DEFAULT_VARIANTS) + ")")
    ap.add_argument("--no-stats", action="store_true",
                    help="skip the GC_PRINT_STATS=1 runs")
    ap.add_argument("--timeout", type=int, default=600,
                    help="seconds per run (default 600)")
    ap.add_argument("--adapter-dir", default=DEFAULT_ADAPTER_DIR,
                    help="folder holding the adapter's libgc.so.1 (default "
                    + DEFAULT_ADAPTER_DIR + ")")
    ap.add_argument("--stock-dir", default=None,
                    help="folder holding the stock libgc.so.1 (default: the "
                    "system's)")
    ap.add_argument("--no-warmup", action="store_true",
                    help="skip the short untimed warm-up runs")
    ap.add_argument("--out", default="bench/out",
                    help="output folder (default bench/out)")
    ap.add_argument("--guile", type=int, default=None, metavar="SCALE",
                    help="also run Guile on tests/boehm/gc-heavy.scm SCALE "
                    "(default: 1 in a full run, none with --quick; 0: none)")
    args = ap.parse_args()
    reps = args.reps if args.reps is not None else (1 if args.quick else 3)
    ADAPTER[0] = args.adapter_dir
    STOCK[0] = args.stock_dir

    for b in (args.gcbench, args.sparse):
        if not os.access(rel(b), os.X_OK):
            sys.exit("compare.py: %s is not built (see bench/boehm/README.md)"
                     % rel(b))
    adapter = os.path.exists(os.path.join(rel(ADAPTER[0]), "libgc.so.1"))
    variants = args.variants.split(",") if args.variants else \
        list(DEFAULT_VARIANTS)
    for v in variants:
        if v not in VARIANTS:
            sys.exit("unknown variant %r" % v)
    if not adapter:
        skipped = [v for v in variants if v != "stock"]
        variants = [v for v in variants if v == "stock"]
        print("*** %s/libgc.so.1 does not exist: running STOCK ONLY "
              "(no fg-* variants: %s) ***" % (ADAPTER[0],
                                              ", ".join(skipped) or "none"))
        if not variants:
            sys.exit("nothing to run")
    bspec = benches(args)
    print("benchmarks: %s; variants: %s; %d repetition(s)%s" % (
        ", ".join(bspec), ", ".join(variants), reps,
        "" if args.no_stats else " + 1 GC_PRINT_STATS=1 run each"))

    runs, stats_runs = [], []
    t_all = time.monotonic()
    if not args.no_warmup:
        # Load each variant's libraries and the binaries into the page cache
        # and wake the CPUs up, so that the first timed run is not special.
        warm = {"gcbench": (args.gcbench, ["--json", "--scale", "5"], {}),
                "sparse": (args.sparse, ["--json", "--mib", "4", "--rounds",
                                         "1"], {})}
        for v in variants:
            for b, spec in warm.items():
                r = run_one(b, spec, v, -1, False, args.timeout)
                if "error" in r or "warning" in r:
                    print("  warm-up %s %s: %s" % (
                        b, v, r.get("error") or r.get("warning")))
    for rep in range(reps):
        order = variants[rep % len(variants):] + \
            variants[:rep % len(variants)]
        for b, spec in bspec.items():
            for v in order:
                r = run_one(b, spec, v, rep, False, args.timeout)
                runs.append(r)
                res = r.get("result", {})
                print("  rep %d %-16s %-8s %s" % (
                    rep, b, v, ("wall %.0f ms, %d pauses, mean %.2f ms" % (
                        res["wall_ms"], res["pauses"]["count"],
                        res["pauses"]["mean_ms"])) if res else "",),
                    ("ERROR: " + r["error"]) if "error" in r else "",
                    ("WARNING: " + r["warning"]) if "warning" in r else "",
                    flush=True)
    if not args.no_stats:
        for b, spec in bspec.items():
            for v in variants:
                r = run_one(b, spec, v, 0, True, args.timeout)
                stats_runs.append(r)
                bs = r.get("boehm_stats")
                print("  stats %-16s %-8s %s" % (b, v, (
                    "%d dirty pages, %d world-stopped marks, mean %.2f ms"
                    % (bs["dirty_pages"], bs["world_stopped_count"],
                       bs["world_stopped_mean_ms"])) if bs else ""),
                    ("ERROR: " + r["error"]) if "error" in r else "",
                    flush=True)
    elapsed = time.monotonic() - t_all

    summary = summarize(runs, stats_runs, list(bspec), variants)
    print_table(summary, variants)
    gscale = args.guile if args.guile is not None else (0 if args.quick
                                                         else 1)
    guile = guile_compare(variants, 1, gscale, args.timeout) \
        if gscale else None
    if not adapter:
        print("\n*** stock only: adapter library %s/libgc.so.1 not found ***"
              % ADAPTER[0])

    outdir = rel(args.out)
    os.makedirs(outdir, exist_ok=True)
    jpath = os.path.join(outdir, "boehm.json")
    meta = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(), "kernel": platform.release(),
        "cpus": os.cpu_count(), "adapter_present": adapter,
        "adapter_dir": rel(ADAPTER[0]), "variants": variants,
        "benches": {b: {"cmd": [rel(s[0])] + s[1], "env": s[2]}
                    for b, s in bspec.items()},
        "reps": reps, "quick": args.quick, "elapsed_s": round(elapsed, 1),
    }
    with open(jpath, "w") as f:
        json.dump({"meta": meta, "summary": summary, "runs": runs,
                   "stats_runs": stats_runs, "guile": guile}, f, indent=1)
    print("wrote %s" % os.path.relpath(jpath, ROOT))
    ppath = os.path.join(outdir, "boehm-pauses.png")
    if plot(runs, list(bspec), variants, ppath):
        print("wrote %s" % os.path.relpath(ppath, ROOT))
    print("total %.1f s" % elapsed)
    failed = [r for r in runs + stats_runs if "error" in r]
    if failed:
        print("%d run(s) failed; see %s" % (len(failed),
                                            os.path.relpath(jpath, ROOT)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
