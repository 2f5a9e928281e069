#!/usr/bin/python3
"""Native vs fgvm: bench/vm, GCBench and sparse, both ways in one invocation.

Every program runs natively and as `fgvm -- PROG`, alternating (each native
run is next to its fgvm twin, which goes first alternates by repetition),
--reps times:
  vm            bench/vm --json: the in-process figures (forwarded system
                call, first touch, tracked first write and collection per
                backend); the median over runs of each run's median
  gcbench, gcbench-incr, gcbench-mt2-incr, sparse
                bench/boehm's programs with compare.py's arguments, under
                each --libs variant of compare.py (default: stock, Debian's
                libgc; fg-page, the adapter's, which under fgvm picks the
                kvm backend by itself)
It prints median, min and max of the measured phase's wall time (the
programs' own "wall_ms") and of the whole process (elapsed, fgvm's start
included), the ratio fgvm/native of the medians, and writes OUT/TAG.json
(every run; rewritten after each one) and OUT/TAG.png (bar plot, when
matplotlib is there); TAG is vm_compare unless --tag says otherwise.
compare.py's functions start, scrub and check the runs; paths are relative
to the repository root.  Without a working fgvm (no /dev/kvm) only the
native runs are made.  Exit status 1 when a run failed, the time budget
(--budget) or a SIGTERM cut the runs short, or fgvm could not run.
"""

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "boehm"))
import compare as cmp  # noqa: E402  (bench/boehm/compare.py)

ROOT = cmp.ROOT
rel = cmp.rel
MODES = ("native", "fgvm")
RE_BACKEND = re.compile(r"libgc \(fgvm adapter\): backend (\S+), card (\d+)")


class Stopped(Exception):
    """SIGTERM (an outer `timeout`): report what was done."""


def on_term(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second one kills
    raise Stopped()


def gc_specs(args):
    """compare.py's benchmark table, with the size overrides applied."""
    ns = argparse.Namespace(quick=args.quick, gcbench=args.gcbench,
                            sparse=args.sparse,
                            benches=",".join(b for b in args.bench_list
                                             if b != "vm") or None)
    if ns.benches is None:
        return {}
    specs = cmp.benches(ns)
    for name, (binary, argv, extra) in list(specs.items()):
        argv = list(argv)
        if name.startswith("gcbench") and args.gcbench_scale is not None:
            i = argv.index("--scale") if "--scale" in argv else None
            if i is None:
                argv += ["--scale", str(args.gcbench_scale)]
            elif name != "gcbench-mt2-incr":
                argv[i + 1] = str(args.gcbench_scale)
            else:
                argv[i + 1] = str(max(args.gcbench_scale, 1))
        if name == "sparse":
            for opt, val in (("--mib", args.sparse_mib),
                             ("--rounds", args.sparse_rounds)):
                if val is None:
                    continue
                if opt in argv:
                    argv[argv.index(opt) + 1] = str(val)
                else:
                    argv += [opt, str(val)]
        specs[name] = (binary, argv, extra)
    return specs


def under(mode, fgvm, spec):
    """The spec run as is (native) or as `fgvm -- PROG ARGS` (same env)."""
    binary, argv, extra = spec
    if mode == "native":
        return spec
    return (fgvm, ["--", rel(binary)] + list(argv), extra)


def run_vm(args, mode, rep, timeout):
    """One bench/vm run; its JSON is the result."""
    fd, jpath = tempfile.mkstemp(prefix="vm_compare.", suffix=".json")
    os.close(fd)
    argv = ["--json", jpath, "--reps", str(args.vm_reps)]
    if args.quick:
        argv.append("--quick")
    if args.vm_backends:
        argv += ["--backends", args.vm_backends]
    cmd = [rel(args.vm)] + argv
    if mode == "fgvm":
        cmd = [rel(args.fgvm), "--"] + cmd
    env = {k: v for k, v in os.environ.items() if k not in cmp.SCRUB}
    rec = {"bench": "vm", "lib": "-", "mode": mode, "rep": rep, "cmd": cmd}
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
    finally:
        try:
            with open(jpath) as f:
                text = f.read()
        except OSError:
            text = ""
        os.unlink(jpath)
    rec["elapsed_s"] = round(time.monotonic() - t0, 3)
    rec["rc"] = p.returncode
    rec["stdout"] = p.stdout
    try:
        rec["result"] = json.loads(text)
    except ValueError:
        rec["error"] = "exit %d, no JSON; stderr: %s" % (
            p.returncode, p.stderr.strip()[-400:])
        return rec
    if p.returncode != 0 or not rec["result"].get("ok"):
        rec["error"] = "exit %d, ok=%s; stderr: %s" % (
            p.returncode, rec["result"].get("ok"), p.stderr.strip()[-400:])
    return rec


def run_gc(args, bench, spec, lib, mode, rep, timeout):
    r = cmp.run_one(bench, under(mode, args.fgvm, spec), lib, rep, False,
                    timeout)
    r["lib"] = r.pop("variant")
    r["mode"] = mode
    return r


def adapter_backend(args, mode):
    """Which toolkit backend the adapter picks (FG_BOEHM_STATS=1 on a tiny
    sparse run), or why that could not be told."""
    spec = under(mode, args.fgvm, (args.sparse, ["--mib", "4", "--rounds",
                                                 "1"], {}))
    env = cmp.variant_env("fg-page", {"FG_BOEHM_STATS": "1"}, False)
    try:
        p = subprocess.run([rel(spec[0])] + spec[1], env=env, cwd=ROOT,
                           capture_output=True, text=True,
                           timeout=min(args.timeout, 60))
    except (subprocess.TimeoutExpired, OSError) as e:
        return "? (%s)" % e
    m = RE_BACKEND.search(p.stderr)
    if m:
        return m.group(1)
    return "? (exit %d: %s)" % (p.returncode, p.stderr.strip()[-200:])


def fgvm_works(args):
    """None if `fgvm -- true` runs, else why not."""
    cmd = [rel(args.fgvm), "--", "/bin/true"]
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                           timeout=min(args.timeout, 120))
    except (subprocess.TimeoutExpired, OSError) as e:
        return str(e)
    if p.returncode:
        return "exit %d: %s" % (p.returncode, p.stderr.strip()[-300:])
    return None


def stats(values):
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {"med": statistics.median(v), "min": min(v), "max": max(v),
            "n": len(v)}


def ratio(a, b):
    if not a or not b or not b["med"]:
        return None
    return a["med"] / b["med"]


def vm_figures(res):
    """figure name -> ns: the medians one bench/vm run reported."""
    f = {}
    for key, label in (("syscall_ns", "syscall getppid"),
                       ("clock_ns", "clock_gettime"),
                       ("first_touch_ns", "first touch /page")):
        if res.get(key):
            f[label] = res[key]["med"]
    for b in res.get("backends", []):
        n = b["name"]
        if b.get("first_write_ns"):
            f["first write /page: %s" % n] = b["first_write_ns"]["med"]
        if b.get("measured"):
            f["collect clean: %s" % n] = b["collect_clean_ns"]["med"]
            last = b["collect"][-1]
            f["collect /dirty page K=%d: %s" % (last["k"], n)] = \
                last["ns_per_dirty_page"]
    return f


def summarize(runs):
    gc, vm = {}, {}
    for r in runs:
        key = (r["bench"], r["lib"])
        ok = "result" in r and "error" not in r
        d = gc.setdefault(key, {m: {"wall_ms": [], "elapsed_s": [],
                                    "pause_mean_ms": [], "failures": 0}
                                for m in MODES})[r["mode"]]
        if not ok:
            d["failures"] += 1
            continue
        d["elapsed_s"].append(r.get("elapsed_s"))
        if r["bench"] == "vm":
            for name, ns in vm_figures(r["result"]).items():
                vm.setdefault(name, {m: [] for m in MODES})[r["mode"]]\
                    .append(ns)
        else:
            d["wall_ms"].append(r["result"]["wall_ms"])
            d["pause_mean_ms"].append(r["result"]["pauses"]["mean_ms"])
    out = {"programs": [], "vm_figures": []}
    for (bench, lib), per in gc.items():
        row = {"bench": bench, "lib": lib}
        for m in MODES:
            row[m] = {k: stats(v) if isinstance(v, list) else v
                      for k, v in per[m].items()}
        for k in ("wall_ms", "elapsed_s", "pause_mean_ms"):
            row["ratio_" + k] = ratio(row["fgvm"][k], row["native"][k])
        out["programs"].append(row)
    for name, per in vm.items():
        row = {"figure": name, "native": stats(per["native"]),
               "fgvm": stats(per["fgvm"])}
        row["ratio"] = ratio(row["fgvm"], row["native"])
        out["vm_figures"].append(row)
    return out


def fmt_s(s, scale=1.0, nd=0):
    if not s:
        return "-"
    return "%.*f [%.*f-%.*f]" % (nd, s["med"] * scale, nd, s["min"] * scale,
                                 nd, s["max"] * scale)


def fmt_r(x):
    return "-" if x is None else "%.2f" % x


def table(rows, hdr):
    rows = [hdr] + rows
    w = [max(len(str(r[i])) for r in rows) for i in range(len(hdr))]
    for r in rows:
        print("  ".join(str(c).ljust(w[i]) if i < 2 else str(c).rjust(w[i])
                        for i, c in enumerate(r)))


def print_summary(s, nreps):
    print("\n== programs: wall time of the measured phase, ms: median "
          "[min-max] over runs; elapsed: whole process, s ==")
    rows = []
    for r in s["programs"]:
        if r["bench"] == "vm":
            continue
        n, f = r["native"], r["fgvm"]
        fails = n["failures"] + f["failures"]
        rows.append((r["bench"], r["lib"], fmt_s(n["wall_ms"]),
                     fmt_s(f["wall_ms"]), fmt_r(r["ratio_wall_ms"]),
                     fmt_s(n["elapsed_s"], nd=2), fmt_s(f["elapsed_s"], nd=2),
                     fmt_r(r["ratio_elapsed_s"]),
                     fmt_s(n["pause_mean_ms"], nd=2),
                     fmt_s(f["pause_mean_ms"], nd=2),
                     ("%d FAILED" % fails) if fails else ""))
    if rows:
        table(rows, ("bench", "libgc", "native wall ms", "fgvm wall ms",
                     "fgvm/native", "native elapsed s", "fgvm elapsed s",
                     "fgvm/native", "native pause ms", "fgvm pause ms", ""))
    vmrow = [r for r in s["programs"] if r["bench"] == "vm"]
    if vmrow or s["vm_figures"]:
        print("\n== bench/vm: ns; median [min-max] over runs of each run's "
              "median ==")
        rows = [(f["figure"], "", fmt_s(f["native"], nd=1),
                 fmt_s(f["fgvm"], nd=1), fmt_r(f["ratio"]))
                for f in s["vm_figures"]]
        table(rows, ("figure", "", "native ns", "fgvm ns", "fgvm/native"))
        for r in vmrow:
            fails = r["native"]["failures"] + r["fgvm"]["failures"]
            print("bench/vm elapsed s: native %s, fgvm %s%s" % (
                fmt_s(r["native"]["elapsed_s"], nd=2),
                fmt_s(r["fgvm"]["elapsed_s"], nd=2),
                ", %d FAILED" % fails if fails else ""))


def plot(s, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (run with /usr/bin/python3): no plot")
        return False
    progs = [r for r in s["programs"] if r["bench"] != "vm"
             and r["ratio_wall_ms"] is not None]
    figs = [f for f in s["vm_figures"] if f["native"] or f["fgvm"]]
    npan = (1 if progs else 0) + (1 if figs else 0)
    if not npan:
        return False
    fig, axes = plt.subplots(1, npan, figsize=(7 * npan, 4.8),
                             squeeze=False)
    ax = iter(axes[0])
    if progs:
        a = next(ax)
        labels = ["%s\n%s" % (r["bench"], r["lib"]) for r in progs]
        x = range(len(progs))
        vals = [r["ratio_wall_ms"] for r in progs]
        a.bar(x, vals, color="tab:blue")
        for i, val in enumerate(vals):
            a.annotate("%.2f" % val, (i, val), ha="left", va="bottom",
                       fontsize=8, xytext=(3, 0),
                       textcoords="offset points")
        for i, r in enumerate(progs):
            lo = r["fgvm"]["wall_ms"]["min"] / r["native"]["wall_ms"]["max"]
            hi = r["fgvm"]["wall_ms"]["max"] / r["native"]["wall_ms"]["min"]
            a.plot([i, i], [lo, hi], color="black", lw=1)
        a.axhline(1.0, color="gray", lw=0.8)
        a.set_xticks(list(x))
        a.set_xticklabels(labels, fontsize=8)
        a.set_ylabel("wall time fgvm / native (median; bar: min/max span)")
        a.set_title("programs")
    if figs:
        a = next(ax)
        y = range(len(figs))
        w = 0.4
        nat = [f["native"]["med"] if f["native"] else 0 for f in figs]
        vm = [f["fgvm"]["med"] if f["fgvm"] else 0 for f in figs]
        a.barh([i - w / 2 for i in y], nat, w, label="native")
        a.barh([i + w / 2 for i in y], vm, w, label="fgvm")
        a.set_yticks(list(y))
        a.set_yticklabels([f["figure"] for f in figs], fontsize=7)
        a.invert_yaxis()
        a.set_xscale("log")
        a.set_xlabel("ns (median)")
        a.set_title("bench/vm")
        a.legend(fontsize=8)
    fig.suptitle("native vs fgvm: %s, Linux %s, %d cpus" % (
        platform.node(), platform.release(), os.cpu_count()))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=None,
                    help="native+fgvm pairs per program (default 3; 1 with "
                    "--quick)")
    ap.add_argument("--quick", action="store_true",
                    help="compare.py's and bench/vm's small sizes")
    ap.add_argument("--benches", default="vm,gcbench,gcbench-incr,sparse",
                    help="comma-separated from vm, gcbench, gcbench-incr, "
                    "gcbench-mt2-incr, sparse (default: all but mt2)")
    ap.add_argument("--libs", default="stock,fg-page",
                    help="compare.py variants for the Boehm programs "
                    "(default stock,fg-page)")
    ap.add_argument("--fgvm", default="vm/fgvm", help="the fgvm binary")
    ap.add_argument("--vm", default="bench/vm", help="the bench/vm binary")
    ap.add_argument("--vm-reps", type=int, default=5,
                    help="bench/vm's own --reps (default 5)")
    ap.add_argument("--vm-backends", default=None,
                    help="bench/vm --backends (default: all)")
    ap.add_argument("--gcbench", default="bench/boehm/gcbench")
    ap.add_argument("--sparse", default="bench/boehm/sparse",
                    help="(also used to check the adapter's backend)")
    ap.add_argument("--gcbench-scale", type=int, default=None,
                    help="gcbench --scale (default compare.py's: 0, 2 "
                    "with --quick)")
    ap.add_argument("--sparse-mib", type=int, default=None,
                    help="sparse --mib (default 256; 32 with --quick)")
    ap.add_argument("--sparse-rounds", type=int, default=None,
                    help="sparse --rounds (default 10; 5 with --quick)")
    ap.add_argument("--adapter-dir", default=cmp.DEFAULT_ADAPTER_DIR,
                    help="folder of the adapter's libgc.so.1")
    ap.add_argument("--stock-dir", default=None,
                    help="folder of the stock libgc.so.1 (default: the "
                    "system's)")
    ap.add_argument("--timeout", type=int, default=300,
                    help="seconds per run (default 300)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for the whole invocation's runs: no pair "
                    "starts that would not fit (judged by its last run), "
                    "a run still going at the end is killed")
    ap.add_argument("--no-warmup", action="store_true",
                    help="skip the untimed gcbench --scale 5 runs")
    ap.add_argument("--out", default="bench/out",
                    help="output folder (default bench/out)")
    ap.add_argument("--tag", default="vm_compare",
                    help="output file name stem (default vm_compare)")
    args = ap.parse_args()
    reps = args.reps if args.reps is not None else (1 if args.quick else 3)
    cmp.ADAPTER[0] = args.adapter_dir
    cmp.STOCK[0] = args.stock_dir
    args.bench_list = args.benches.split(",")
    known = ("vm", "gcbench", "gcbench-incr", "gcbench-mt2-incr", "sparse")
    for b in args.bench_list:
        if b not in known:
            sys.exit("vm_compare.py: unknown benchmark %r" % b)
    libs = args.libs.split(",")
    for v in libs:
        if v not in cmp.VARIANTS:
            sys.exit("vm_compare.py: unknown libgc variant %r" % v)
    need = [args.vm] if "vm" in args.bench_list else []
    if any(b != "vm" for b in args.bench_list):
        need += [args.gcbench, args.sparse]
    for path in need:
        if not os.access(rel(path), os.X_OK):
            sys.exit("vm_compare.py: %s is missing or not executable"
                     % rel(path))
    if not os.path.exists(os.path.join(rel(args.adapter_dir), "libgc.so.1")):
        dropped = [v for v in libs if cmp.VARIANTS[v] is not None]
        libs = [v for v in libs if cmp.VARIANTS[v] is None]
        print("*** %s/libgc.so.1 missing: not running %s ***" % (
            args.adapter_dir, ", ".join(dropped) or "-"))
    specs = gc_specs(args)

    t_all = time.monotonic()
    print("vm_compare: %s; libgc %s; %d repetition(s); %s" % (
        ", ".join(args.bench_list), ", ".join(libs), reps,
        "Linux %s, %d cpus" % (platform.release(), os.cpu_count())),
        flush=True)
    why = fgvm_works(args)
    modes = list(MODES)
    if why:
        print("*** fgvm does not run here (%s): native only ***" % why)
        modes = ["native"]
    backends = {}
    if specs and any(cmp.VARIANTS[v] is not None for v in libs):
        for m in modes:
            backends[m] = adapter_backend(args, m)
        print("adapter backend: " + ", ".join(
            "%s %s" % kv for kv in backends.items()), flush=True)
    if not args.no_warmup and specs:
        warm = (args.gcbench, ["--json", "--scale", "5"], {})
        for m in modes:
            for v in libs:
                r = run_gc(args, "warmup", warm, v, m, -1,
                           min(args.timeout, 60))
                if "error" in r or "warning" in r:
                    print("  warm-up %s %s: %s" % (m, v, r.get("error") or
                                                   r.get("warning")))

    outdir = rel(args.out)
    os.makedirs(outdir, exist_ok=True)
    jpath = os.path.join(outdir, args.tag + ".json")
    runs, cut = [], False

    def save(summary):
        """Write the JSON (also after every run: a kill keeps the runs)."""
        meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "host": platform.node(), "kernel": platform.release(),
                "cpus": os.cpu_count(), "reps": reps, "reps_done": len(
                    {r["rep"] for r in runs}), "cut": cut,
                "complete": summary is not None,
                "modes": modes, "fgvm_problem": why, "libs": libs,
                "adapter_backend": backends, "quick": args.quick,
                "benches": {b: {"cmd": [rel(sp[0])] + sp[1], "env": sp[2]}
                            for b, sp in specs.items()},
                "elapsed_s": round(time.monotonic() - t_all, 1)}
        with open(jpath + ".tmp", "w") as f:
            json.dump({"meta": meta, "summary": summary, "runs": runs}, f,
                      indent=1)
        os.replace(jpath + ".tmp", jpath)

    signal.signal(signal.SIGTERM, on_term)
    deadline = t_all + args.budget if args.budget else None
    took = {}  # (bench, lib, mode) -> seconds its last run took
    pairs = [(rep, b, v) for rep in range(reps) for b in args.bench_list
             for v in (["-"] if b == "vm" else libs)]
    try:
        for rep, b, v in pairs:
            order = modes if rep % 2 == 0 else modes[::-1]
            if deadline is not None:
                left = deadline - time.monotonic()
                need = sum(took.get((b, v, m), 1) for m in order)
                if left < need:
                    print("*** time budget of %.0f s: %.0f s left, the "
                          "next pair (%s %s) took %.1f s: stopping at "
                          "repetition %d ***" % (args.budget, left, b, v,
                                                 need, rep), flush=True)
                    cut = True
                    break
            for m in order:
                tmo = args.timeout
                if deadline is not None:
                    tmo = max(1, min(tmo, int(deadline - time.monotonic())))
                if b == "vm":
                    r = run_vm(args, m, rep, tmo)
                    res = r.get("result") or {}
                    line = "elapsed %.2f s, syscall %.0f ns" % (
                        r["elapsed_s"], res["syscall_ns"]["med"]) \
                        if res.get("syscall_ns") else ""
                else:
                    r = run_gc(args, b, specs[b], v, m, rep, tmo)
                    res = r.get("result") or {}
                    line = "wall %.0f ms, elapsed %.2f s, %d pauses, " \
                        "mean %.2f ms" % (
                            res["wall_ms"], r["elapsed_s"],
                            res["pauses"]["count"],
                            res["pauses"]["mean_ms"]) if res else ""
                if tmo < args.timeout and r.get("error", "").startswith(
                        "timeout"):
                    r["error"] = "cut by the time budget (%s)" % r["error"]
                    cut = True
                took[(b, v, m)] = r.get("elapsed_s", tmo)
                runs.append(r)
                save(None)
                print("  rep %d %-16s %-8s %-6s %s %s %s" % (
                    rep, b, v, m, line,
                    ("ERROR: " + r["error"]) if "error" in r else "",
                    ("WARNING: " + r["warning"]) if "warning" in r else ""),
                    flush=True)
    except Stopped:
        print("*** SIGTERM: stopping, reporting the %d run(s) done ***"
              % len(runs), flush=True)
        cut = True
    elapsed = time.monotonic() - t_all
    s = summarize(runs)
    print_summary(s, reps)
    if backends:
        print("adapter backend: " + ", ".join("%s %s" % kv
                                               for kv in backends.items()))

    save(s)
    print("wrote %s" % jpath)
    ppath = os.path.join(outdir, args.tag + ".png")
    if plot(s, ppath):
        print("wrote %s" % ppath)
    print("total %.1f s" % elapsed)
    failed = [r for r in runs if "error" in r]
    if failed:
        print("%d run(s) failed" % len(failed))
    return 1 if failed or cut or why else 0


if __name__ == "__main__":
    sys.exit(main())
