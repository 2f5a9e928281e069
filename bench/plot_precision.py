#!/usr/bin/env python3
"""Plot bench/precision --json: reported/true bytes vs card size per method.

usage: bench/plot_precision.py p.json out.png
where p.json comes from bench/precision --json-out p.json (which prints the
table too: what make bench runs) or bench/precision --json > p.json.
Needs matplotlib (Debian: python3-matplotlib, /usr/bin/python3).
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rows = json.load(open(sys.argv[1]))
    workloads = sorted({r["workload"] for r in rows}, key=["sparse", "pointer", "dense"].index)
    fig, axes = plt.subplots(1, len(workloads), figsize=(5 * len(workloads), 4), squeeze=False)
    for ax, w in zip(axes[0], workloads):
        series = sorted({(r["method"], r["backend"]) for r in rows if r["workload"] == w})
        for method, backend in series:
            pts = sorted((r["card"], r["ratio"]) for r in rows
                         if r["workload"] == w and r["method"] == method and r["backend"] == backend)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                    linestyle="-" if method == "diff" else "--", label=f"{method} / {backend}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("card size (bytes)")
        ax.set_ylabel("reported / true bytes (64-byte lines)")
        ax.set_title(w)
        ax.axhline(1.25, color="grey", linewidth=0.8, linestyle=":")
        ax.legend(fontsize=8)
    fig.suptitle("fgvm: bytes reported dirty relative to the truth")
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
