#!/bin/bash
# Device run 5: what running a program under fgvm costs, on the machine
# with a real (PVM) /dev/kvm.
#   1. facts: kernel, CPUs, /dev/kvm, clock source, `fgvm info`;
#   2. bench/vm natively and as `fgvm -- bench/vm` (--reps 5: medians of 5):
#      forwarded system call, vDSO clock, first touch, tracked first write
#      and collection cost per backend (kvm only under fgvm); under fgvm
#      one run per group of backends (kvm+none, uffd-async, mprotect,
#      uffd-sync+soft-dirty), each bounded on its own;
#   3. bench/vm_compare.py: GCBench incremental and not, then sparse, at
#      compare.py's full sizes (gcbench --scale 0; sparse 256 MiB, 10
#      rounds), native vs fgvm, adapter libgc (fg-page: under fgvm it picks
#      the kvm backend) and stock libgc, as many native/fgvm pairs as fit
#      (at most 5 and 3): each step has a time budget, and a pair that
#      would not fit in it is not started.
# Carried in .devprobe/ (bench/results/device/prepare5.sh fills it, run on
# the development machine): fgvm (static), vm (static), gcbench, sparse,
# fg/ (the adapter's libgc.so.1 + libfgtk.so.0), stock/ (Debian's libgc.so.1).
# Environment: OUT (required: everything is written there, the log as
# run5.txt); DEADLINE (seconds for the whole script, default 380: it ends
# within about DEADLINE + 30 s); QUICK=1 (small sizes, to try the script in
# vm/sandbox; DEADLINE then defaults to 1500); PY (default /usr/bin/python3,
# else python3).  Every command runs under `timeout`.
cd "$(dirname "$0")/../../.." || exit 1
: "${OUT:?set OUT to the output folder}"
mkdir -p "$OUT" || exit 1
exec > >(tee "$OUT/run5.txt") 2>&1

T0=$(date +%s)
if [ "${QUICK:-0}" = 1 ]; then
	DEADLINE=${DEADLINE:-1500}
else
	DEADLINE=${DEADLINE:-420}
fi
PY=${PY:-$(command -v /usr/bin/python3 || command -v python3)}
# Absolute paths: under fgvm a program run by a relative path reads that
# relative path from /proc/self/exe, and static glibc programs then abort
# in _dl_get_origin (see bench/vm.md).
D=$PWD/.devprobe
FGVM=$D/fgvm
export MPLCONFIGDIR=${MPLCONFIGDIR:-$(mktemp -d)}

now() { echo $(($(date +%s) - T0)); }
# cap SECONDS [RESERVE]: SECONDS, or less: what is left of DEADLINE after
# RESERVE seconds are kept for the steps after this one (at least 10).
cap() {
	local c=$1 l=$((DEADLINE - $(now) - ${2:-0}))
	[ "$l" -lt "$c" ] && c=$l
	[ "$c" -lt 10 ] && c=10
	echo "$c"
}
step() {
	echo
	echo "== $* (t=$(now) s)"
}
rc() { echo "-> exit status $1"; }

step "run 5: native vs fgvm (QUICK=${QUICK:-0}, DEADLINE=$DEADLINE s)"
date -u +%Y-%m-%dT%H:%M:%SZ
echo "uname -r: $(uname -r)"
echo "nproc: $(nproc)"
grep -m1 "model name" /proc/cpuinfo
ls -l /dev/kvm
echo "clocksource: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>&1)"
echo "THP: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>&1)"
echo "python: $PY"
for f in "$FGVM" "$D/vm" "$D/vm_probe" "$D/vm_track" "$D/gcbench" "$D/sparse" "$D/fg/libgc.so.1" \
	"$D/fg/libfgtk.so.0" "$D/stock/libgc.so.1"; do
	[ -e "$f" ] || echo "MISSING: $f (run bench/results/device/prepare5.sh)"
done

step "fgvm info"
timeout -k 5 30 "$FGVM" info
rc $?
FG_QUIET=1 timeout -k 5 30 "$FGVM" info --json >"$OUT/fgvm-info.json"
step "fgvm -v -- /bin/true"
timeout -k 5 30 "$FGVM" -v -- /bin/true
rc $?

# Does the VM work on this hypervisor?  vm_probe's checks natively and
# under fgvm, byte for byte; vm_track (writes fgvm and the kernel make are
# reported; random vmcalls); python3 with threads.
step "correctness: vm_probe native vs fgvm"
for c in segv traps altstack fpu restart threads sigwait fork mm time cpu exe iov \
	exit=7 segfault kill; do
	timeout -k 5 30 "$D/vm_probe" "$c" >"$OUT/probe-n.txt" 2>&1
	n=$?
	timeout -k 5 60 "$FGVM" -- "$D/vm_probe" "$c" >"$OUT/probe-v.txt" 2>&1
	v=$?
	if [ "$n" = "$v" ] && cmp -s "$OUT/probe-n.txt" "$OUT/probe-v.txt"; then
		echo "same   $c (status $n)"
	else
		echo "DIFFER $c (status native $n, fgvm $v)"
		diff "$OUT/probe-n.txt" "$OUT/probe-v.txt" | head -8
	fi
done
rm -f "$OUT/probe-n.txt" "$OUT/probe-v.txt"
step "correctness: vm_track all 100000"
timeout -k 5 "$(cap 60)" "$FGVM" -- "$D/vm_track" all 100000
rc $?
step "fgvm -- python3 with 4 threads"
timeout -k 5 60 "$FGVM" -- "$PY" -c 'import threading; r=[]; ts=[threading.Thread(target=lambda i=i: r.append(sum(range(i*100000)))) for i in range(4)]; [t.start() for t in ts]; [t.join() for t in ts]; print(sorted(r))'
rc $?
if ! timeout -k 5 30 "$FGVM" -- /bin/true; then
	step "fgvm fails here: a trace of /bin/true"
	timeout -k 5 30 "$FGVM" -v --trace -- /bin/true 2>&1 | tail -40
fi

if [ "${QUICK:-0}" = 1 ]; then
	VMARGS="--quick --reps 3"
else
	VMARGS="--reps 5"
fi
step "bench/vm, native: $D/vm $VMARGS"
timeout -k 5 "$(cap 60)" "$D/vm" $VMARGS --json "$OUT/vm-native.json"
rc $?
# Under fgvm, one run per group of backends, each with its own time limit:
# a backend that hangs or crashes under the VM (uffd-sync's handler
# thread, mprotect's signals) costs only its own figures.
for set in kvm,none:90 uffd-async:45 mprotect:60 uffd-sync,soft-dirty:45; do
	b=${set%:*}
	step "bench/vm under fgvm: $FGVM -- $D/vm $VMARGS --backends $b"
	timeout -k 5 "$(cap "${set#*:}" 200)" "$FGVM" -- "$D/vm" $VMARGS \
		--backends "$b" --json "$OUT/vm-fgvm-${b//,/-}.json"
	rc $?
done

COMMON=(--fgvm "$FGVM" --gcbench "$D/gcbench" --sparse "$D/sparse"
	--adapter-dir "$D/fg" --stock-dir "$D/stock" --libs fg-page,stock
	--out "$OUT")
if [ "${QUICK:-0}" = 1 ]; then
	GC_SIZE=(--gcbench-scale 4 --reps 1 --timeout 300)
	SP_SIZE=(--sparse-mib 8 --sparse-rounds 2 --reps 1 --timeout 300)
else
	GC_SIZE=(--reps 5 --timeout 120)
	SP_SIZE=(--reps 3 --timeout 150)
fi

# GCBench gets what is left but 160 s (kept for sparse); sparse the rest.
B=$(cap 200 160)
B=$((B > 40 ? B - 30 : 10))
step "vm_compare: gcbench-incr, gcbench (budget $B s)"
timeout -k 15 $((B + 30)) "$PY" bench/vm_compare.py --benches gcbench-incr,gcbench \
	"${GC_SIZE[@]}" "${COMMON[@]}" --tag vm-compare-gcbench --budget "$B"
rc $?

B=$(cap 600 0)
B=$((B > 40 ? B - 30 : 10))
step "vm_compare: sparse (budget $B s)"
timeout -k 15 $((B + 30)) "$PY" bench/vm_compare.py --benches sparse \
	"${SP_SIZE[@]}" "${COMMON[@]}" --tag vm-compare-sparse --budget "$B"
rc $?

step "done"
ls -l "$OUT"
# At most 8 files come back from the device: the JSON files go in one
# archive.
(cd "$OUT" && tar czf run5-json.tgz ./*.json && rm -f ./*.json)
ls -l "$OUT"
