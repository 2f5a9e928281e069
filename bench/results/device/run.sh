#!/bin/bash
# One device-machine probe: KVM facts, toolkit fault costs, Boehm stock vs adapter.
cd "$(dirname "$0")"
exec > >(tee "$OUT/all.txt") 2>&1
echo "== uname"; uname -a; nproc; grep -m1 "model name" /proc/cpuinfo; ls -la /dev/kvm 2>&1
echo "== kvm-probe"; timeout 90 ./kvm-probe --json > "$OUT/kvm-probe.json"; echo "kvm-probe rc=$?"
echo "== fault-cost"; timeout 150 ./fault-cost --quick; echo "fault-cost rc=$?"
D=$PWD
run() { # name env...
	local name=$1; shift
	echo "-- $name"
	env "$@" FG_BOEHM_STATS=1 timeout 120 ./sparse --mib 64 --rounds 5 2>&1 | grep -E "^build|^pauses|adapter|intact|FAIL|rror" | cut -c1-330
	env "$@" FG_BOEHM_STATS=1 timeout 120 ./gcbench --incremental --scale 2 2>&1 | grep -E "^wall|^pauses|adapter|intact|FAIL|rror" | cut -c1-330
}
echo "== boehm"
for rep in 1 2; do
run stock LD_LIBRARY_PATH=$D/stock
run fg-page LD_LIBRARY_PATH=$D/fg FG_CARD=4096
run fg-64 LD_LIBRARY_PATH=$D/fg FG_CARD=64
run fg-64-sync LD_LIBRARY_PATH=$D/fg FG_CARD=64 FG_BACKEND=uffd-sync
done
echo "== done"
