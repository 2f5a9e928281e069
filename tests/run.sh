#!/bin/bash
# run.sh - run Criterion test binaries and total their results.
#
# usage: tests/run.sh BINARY[@kvm|@fgvm]...
#
# Each binary runs its tests one process per test (Criterion), one at a
# time (FG_TEST_JOBS to change), under a timeout (FG_TEST_TIMEOUT seconds,
# default 600; twice that for test_racket_suite, which runs five of
# Racket's own test suites four times each, 9-10 minutes here).  Its own
# output is shown as it runs, one [PASS]/[FAIL]/[SKIP] line per test, skip
# reasons included; the counts come from its TAP report.  A binary that
# exits non-zero without reporting a failure (a crash of the runner, a
# timeout) counts as one failed test.  FG_SEED, if
# set, reaches the tests through the environment.
#
# BINARY@kvm needs /dev/kvm; BINARY@fgvm runs under fgvm ($FG_FGVM), which
# needs it too.  Where fgvm cannot run on this machine's own /dev/kvm (no
# device, no permission), they run inside the nested-KVM sandbox
# ($FG_SANDBOX, vm/sandbox/run) instead, under FG_SANDBOX_TIMEOUT seconds
# (default 1800): they never skip for want of KVM.
#
# The last line printed is "N passed, N failed, N skipped", after one
# "run.sh: failed: ..." line per failed test (so that a log's tail names
# them); the exit status is 1 if anything failed.

timeout_s=${FG_TEST_TIMEOUT:-600}
sandbox_timeout=${FG_SANDBOX_TIMEOUT:-1800}
jobs=${FG_TEST_JOBS:-1}
tapdir=$(mktemp -d "${TMPDIR:-/tmp}/fgvm-tap.XXXXXX") || exit 1
tap=$tapdir/tap
trap 'rm -rf "$tapdir"' EXIT

# Whether fgvm runs on this machine's own /dev/kvm (asked once).
kvm_native=
kvm_checked=0
check_kvm() {
	[ "$kvm_checked" = 1 ] && return
	kvm_checked=1
	if [ -n "${FG_FGVM:-}" ] && "$FG_FGVM" -- /bin/true >"$tapdir/kvm" 2>&1; then
		kvm_native=1
		echo "run.sh: KVM tests run on this machine's /dev/kvm"
	else
		echo "run.sh: KVM tests run in the nested-KVM sandbox: fgvm here says: $(head -n 1 "$tapdir/kvm")"
	fi
}

if [ -n "${FG_SEED:-}" ]; then
	export FG_SEED
	echo "FG_SEED=$FG_SEED"
fi

passed=0 failed=0 skipped=0
failures=()
for arg in "$@"; do
	bin=${arg%@*}
	how=
	[ "$bin" != "$arg" ] && how=${arg##*@}
	echo "== $arg"
	: >"$tap"
	if [ ! -x "$bin" ]; then
		echo "run.sh: $bin: not found or not executable"
		echo "== $arg: 0 passed, 1 failed, 0 skipped"
		failed=$((failed + 1))
		failures+=("$arg (not found)")
		continue
	fi
	wrap=()
	limit=$timeout_s
	case $bin in */test_racket_suite) limit=$((timeout_s * 2)) ;; esac
	if [ -n "$how" ]; then
		check_kvm
		[ "$how" = fgvm ] && wrap=("$FG_FGVM" --)
		if [ -z "$kvm_native" ]; then
			wrap=("$FG_SANDBOX" --quiet --timeout "$sandbox_timeout" \
				--rw "$tapdir" -- "${wrap[@]}")
			limit=$((sandbox_timeout + 60))
		fi
	fi
	# timeout(1) puts the test in a process group of its own, out of reach
	# of the terminal's ^C: pass an interrupt on to that group.
	timeout -k 10 "$limit" "${wrap[@]}" "$bin" --jobs="$jobs" --verbose \
		--color=never --output=tap:"$tap" 2>&1 &
	pid=$!
	trap 'kill -TERM "-$pid" 2>/dev/null; exit 130' INT TERM
	wait "$pid"
	rc=$?
	trap - INT TERM

	# Criterion's TAP: "ok - s::t (0.01s)", "ok - s::t # SKIP reason",
	# "not ok - s::t ...".  Its YAML details are indented.
	read -r plan p f s <<-EOF
	$(awk '
		/^1\.\.[0-9]+/ { plan = 1 }
		/^ok / { if ($0 ~ /# [Ss][Kk][Ii][Pp]/) s++; else p++ }
		/^not ok / { f++ }
		END { print plan + 0, p + 0, f + 0, s + 0 }' "$tap")
	EOF
	if { [ "$rc" -ne 0 ] || [ "$plan" -eq 0 ]; } && [ "$f" -eq 0 ]; then
		if [ "$rc" -eq 124 ]; then
			why="timed out after ${limit}s"
		elif [ "$rc" -eq 125 ] && [ -n "$how" ] && [ -z "$kvm_native" ]; then
			why="the sandbox failed (its message is above)"
		elif [ "$rc" -gt 128 ]; then
			why="killed by signal $((rc - 128))"
		elif [ "$plan" -eq 0 ]; then
			why="wrote no TAP report (exit status $rc)"
		else
			why="exited with status $rc"
		fi
		echo "run.sh: $bin: $why without reporting a failed test"
		f=1
		failures+=("$arg ($why)")
	fi
	while read -r name; do
		[ -n "$name" ] && failures+=("$arg: $name")
	done <<-EOF
	$(sed -n 's/^not ok [0-9]* *- *\([^ ]*\).*/\1/p' "$tap")
	EOF
	echo "== $arg: $p passed, $f failed, $s skipped"
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
done

for x in "${failures[@]}"; do
	echo "run.sh: failed: $x"
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
