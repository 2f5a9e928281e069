#!/bin/bash
# tests/boehm/fgvm-hang-dump.sh - run Boehm's gctest under fgvm N times and,
# when a run hangs, dump every thread: /proc status, system call and stack,
# CPU times twice 2 s apart (host user, system and guest time), the maps,
# gdb backtraces of fgvm and each vthread's state (the guest's registers,
# its queued signals).  How the gctest hang of 2026-12-05 was found.
#
# usage: vm/sandbox/run --rw OUT -- tests/boehm/fgvm-hang-dump.sh OUT [N]
#   (from a build tree where `make check` built Boehm's test programs;
#   on a machine with a /dev/kvm fgvm can use, without vm/sandbox/run)
# LIMIT=SECS: a run this long is a hang (default 150; gctest takes
# 45-90 s in the sandbox).  Results: OUT/log, OUT/out.I, OUT/dump.I,
# OUT/maps.I.
cd "$(dirname "$0")/../.." || exit 1
out=${1:?usage: $0 OUTDIR [N]}
n=${2:-4}
prog=adapters/boehm/build/libgc-8.2.2/gctest
[ -x "$prog" ] || { echo "$0: no $prog (run make check first)" >&2; exit 1; }
mkdir -p "$out"
cat >"$out/gdbcmds" <<'GDB'
set pagination off
define dumpt
  frame function vcpu_loop
  printf "DUMPT tid %d rip %lx rsp %lx rdi %lx rsi %lx rdx %lx sigq %u/%u std %lx kick %d sys_nr %ld sys_intr %ld tmp_on %d mode %d\n", t->tid, t->u.rip, t->u.rsp, t->u.rdi, t->u.rsi, t->u.rdx, t->sigq_head, t->sigq_tail, t->sigq_std, t->kick, t->sys_nr, t->sys_intr, t->tmp_mask_on, t->mode
end
thread apply all bt 8
thread apply all dumpt
GDB
for i in $(seq 1 "$n"); do
	start=$(date +%s)
	GC_ENABLE_INCREMENTAL=1 FG_BACKEND=kvm FG_CARD=4096 FG_QUIET=1 \
		vm/fgvm -- "$prog" >"$out/out.$i" 2>&1 &
	pid=$!
	while kill -0 $pid 2>/dev/null &&
		[ $(($(date +%s) - start)) -lt "${LIMIT:-150}" ]; do
		sleep 1
	done
	if ! kill -0 $pid 2>/dev/null; then
		wait $pid
		echo "run $i: exit $? after $(($(date +%s) - start)) s" >>"$out/log"
		continue
	fi
	echo "run $i: HUNG after $(($(date +%s) - start)) s" >>"$out/log"
	{
		for tk in /proc/$pid/task/*; do
			echo "== task ${tk##*/} $(cat "$tk/comm")"
			grep -E 'State|SigPnd|ShdPnd|SigBlk' "$tk/status"
			echo "syscall: $(cat "$tk/syscall")"
			head -8 "$tk/stack" 2>/dev/null
		done
		for k in 1 2; do
			for tk in /proc/$pid/task/*; do
				echo "cpu ${tk##*/}: $(awk '{print "utime", $14, "stime", $15, "guest", $43}' "$tk/stat")"
			done
			sleep 2
		done
		timeout 60 gdb -p $pid -batch -x "$out/gdbcmds"
	} >"$out/dump.$i" 2>&1
	cat /proc/$pid/maps >"$out/maps.$i"
	kill -9 $pid
	wait $pid 2>/dev/null
done
cat "$out/log"
