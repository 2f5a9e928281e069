#!/bin/sh
# repeat-guile.sh - run gc-heavy.scm under Guile on the adapter's libgc N
# times, to reproduce intermittent failures; not part of `make check`.
#
# usage: tests/boehm/repeat-guile.sh LIBDIR [N [BACKEND [CARD]]]
#   LIBDIR   the adapter's library directory (adapters/boehm/lib)
#   N        runs (default 10); BACKEND (uffd-sync), CARD (64)
#
# Each run's output is compared with a run on the stock libgc; a failed
# or different run keeps its stdout, stderr and core (ulimit -c) in
# ${TMPDIR:-/tmp}/fgvm-guile.XXXXXX, which is printed.  Exit status: the
# number of bad runs (0: all good).
set -u

lib=$(cd "${1:?usage: $0 LIBDIR [N [BACKEND [CARD]]]}" && pwd) || exit 2
n=${2:-10}
backend=${3:-uffd-sync}
card=${4:-64}
scm=$(cd "$(dirname "$0")" && pwd)/gc-heavy.scm
guile=$(command -v guile-3.0 || command -v guile) || {
	echo "$0: Guile is not installed" >&2
	exit 2
}
dir=$(mktemp -d "${TMPDIR:-/tmp}/fgvm-guile.XXXXXX") || exit 2
ulimit -c unlimited 2>/dev/null

cd "$dir" || exit 2
env -u GC_ENABLE_INCREMENTAL -u LD_LIBRARY_PATH GUILE_AUTO_COMPILE=0 \
	"$guile" --no-auto-compile -s "$scm" >ref.out 2>ref.err ||
	{ echo "$0: the stock run failed; see $dir/ref.err" >&2; exit 2; }
bad=0
i=1
while [ "$i" -le "$n" ]; do
	start=$(date +%s)
	GUILE_AUTO_COMPILE=0 GC_ENABLE_INCREMENTAL=1 FG_BACKEND=$backend \
		FG_CARD=$card FG_QUIET=1 LD_LIBRARY_PATH=$lib \
		"$guile" --no-auto-compile -s "$scm" >"out.$i" 2>"err.$i"
	rc=$?
	if [ "$rc" -eq 0 ] && cmp -s "out.$i" ref.out; then
		verdict=ok
		rm -f "out.$i" "err.$i"
	else
		verdict="BAD (exit status $rc; out.$i err.$i)"
		bad=$((bad + 1))
		[ -f core ] && mv core "core.$i" && verdict="$verdict core.$i"
	fi
	echo "run $i FG_BACKEND=$backend FG_CARD=$card: $(($(date +%s) - start)) s, $verdict"
	i=$((i + 1))
done
echo "$bad of $n runs bad; files in $dir"
exit "$bad"
