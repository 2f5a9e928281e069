#!/bin/sh
# build.sh - build Racket BC 3m (the precise generational collector) from
# Debian's source package, for the Racket port.
#
# usage: adapters/racket/build.sh SRCDIR BUILDDIR TOOLKIT_LIBDIR
#
# 0. The adapter: fg_racket.c (the glue) and adapters/generic/fga.c are
#    compiled (hidden visibility) into BUILDDIR/adapters/racket/glue/, and
#    the toolkit's libfgtk.so.0 is copied to BUILDDIR/adapters/racket/lib;
#    racket3m links both (configure's LIBS) and finds libfgtk.so.0 there
#    through its run path.  FG_RACKET=1 switches the port on at run time;
#    without it the same binary runs 3m's stock mprotect barrier.
# 1. Racket 8.7's source comes from Debian's source package (racket
#    8.7+dfsg1-1; Debian's amd64 binary is Racket CS, but the tarball has
#    the BC sources in src/bc), fetched once with `apt-get source racket`
#    into BUILDDIR/adapters/racket/cache (needs a deb-src entry for
#    bookworm main: ./bootstrap adds one) and never refetched while there.
# 2. A copy in BUILDDIR/adapters/racket/build/racket-8.7 gets the patches
#    of SRCDIR/adapters/racket/patches (none is fine) and is configured
#    BC-only, 3m, generational GC on (the default), no docs.
# 3. `make` builds racketcgc, then racket3m through xform (src/bc/gc2).
# 4. `make install` copies the tree to BUILDDIR/adapters/racket/inst
#    (origtree layout: bin/, collects/, share/pkgs/ with Debian's
#    share/links.rktd) and compiles only the collections that `racket`,
#    `raco make` and `raco test` need; other packages compile on demand.
#
# When only the adapter's sources changed, racket3m is relinked (stamp:
# BUILDDIR/adapters/racket/glue/glue.sum) and copied over the installed
# binary.  Steps 2-3 are redone only when this script or a patch changed
# (stamp:
# BUILDDIR/adapters/racket/build/made.sum), step 4 also when it failed
# last time (stamp: built.sum), so a failed install does not cost a
# rebuild.  FG_RACKET_JOBS sets the parallelism (default 2).  Each
# phase's wall time is printed.
#
# Exit status: 0 built or up to date; 1 failed (the step and its log are
# named).
set -eu

[ $# -eq 3 ] || {
	echo "usage: $0 SRCDIR BUILDDIR TOOLKIT_LIBDIR" >&2
	exit 1
}
src=$(cd "$1" && pwd)
top=$(cd "$2" && pwd)
tklib=$(cd "$3" && pwd)
ver=8.7
debver=8.7+dfsg1
base=$top/adapters/racket
cache=$base/cache
build=$base/build
tree=$build/racket-$ver
obj=$tree/src/build
inst=$base/inst
glue=$base/glue
lib=$base/lib
patches=$src/adapters/racket/patches
jobs=${FG_RACKET_JOBS:-2}
# Collections compiled at install time: enough for `racket -e`, `raco
# make` and `raco test` (rackunit) to start without compiling in memory.
setup_colls="racket raco setup compiler pkg planet rackunit"

fail() {
	echo "adapters/racket/build.sh: $*" >&2
	exit 1
}

times=
phase_start() {
	t0=$(date +%s)
}
phase_end() {
	times="$times $1=$(($(date +%s) - t0))s"
}

mkdir -p "$cache" "$build" "$glue" "$lib"

# 0. The adapter's objects, and the toolkit beside them.
[ -f "$tklib/libfgtk.so.0" ] || fail "adapter: no $tklib/libfgtk.so.0 (make builds the toolkit first)"
cp -f "$(readlink -f "$tklib/libfgtk.so.0")" "$lib/libfgtk.so.0.tmp" &&
	mv -f "$lib/libfgtk.so.0.tmp" "$lib/libfgtk.so.0"
ln -sf libfgtk.so.0 "$lib/libfgtk.so"
for c in racket/fg_racket generic/fga; do
	gcc -O2 -g -Wall -Wextra -fPIC -fvisibility=hidden -DFGA_API= -std=gnu11 \
		-I"$src/toolkit" -I"$src/adapters/generic" \
		-c "$src/adapters/$c.c" -o "$glue/$(basename "$c").o" \
		>"$glue/$(basename "$c").log" 2>&1 ||
		fail "adapter: compiling adapters/$c.c failed; see $glue/$(basename "$c").log"
done
glue_libs="$glue/fg_racket.o $glue/fga.o -L$lib -lfgtk -Wl,-rpath,$lib -lpthread"
glue_want=$(cat "$glue/fg_racket.o" "$glue/fga.o" | cksum)

# 1. Fetch (cached).
if [ ! -f "$cache/racket-$debver/src/bc/gc2/newgc.c" ]; then
	phase_start
	echo "racket: fetching Racket $ver with apt-get source racket (log: $cache/fetch.log)"
	command -v dpkg-source >/dev/null ||
		fail "fetch: dpkg-source is missing (Debian: apt-get install dpkg-dev; ./bootstrap does)"
	(cd "$cache" && apt-get source -qq "racket=$debver-1" >"$cache/fetch.log" 2>&1) ||
		(cd "$cache" && apt-get source -qq racket >>"$cache/fetch.log" 2>&1) ||
		fail "fetch: apt-get source racket failed (is there a deb-src entry for bookworm main? ./bootstrap adds one); see $cache/fetch.log"
	[ -f "$cache/racket-$debver/src/bc/gc2/newgc.c" ] ||
		fail "fetch: apt-get source did not unpack racket-$debver with src/bc into $cache (see $cache/fetch.log)"
	phase_end fetch
fi

# The stamps cover this script and every patch, in name order.
made=$build/made.sum
stamp=$build/built.sum
want=$( {
	cat "$src/adapters/racket/build.sh"
	for p in "$patches"/*.patch; do
		[ -f "$p" ] || continue
		basename "$p"
		cat "$p"
	done
} | cksum)

if [ -x "$inst/bin/racket" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
	echo "racket: up to date (stamp $stamp)"
else
	rm -f "$stamp"
fi

if [ ! -f "$stamp" ] && { [ ! -x "$obj/bc/racket3m" ] || [ "$(cat "$made" 2>/dev/null)" != "$want" ]; }; then
	rm -f "$made"
	# 2. Copy, patch, configure.
	phase_start
	rm -rf "$tree" "$inst"
	cp -a "$cache/racket-$debver" "$tree"
	for p in "$patches"/*.patch; do
		[ -f "$p" ] || continue
		echo "racket: applying $(basename "$p")"
		patch -d "$tree" -p1 -s <"$p" || fail "patch: $p does not apply to $tree"
	done
	phase_end copy+patch

	phase_start
	echo "racket: configuring BC 3m (log: $build/configure.log)"
	mkdir -p "$obj"
	# --enable-origtree keeps collects/ and share/pkgs/ side by side under
	# the prefix, so Debian's share/links.rktd still finds the packages.
	(cd "$obj" && LIBS="$glue_libs" ../configure --enable-bconly \
		--prefix="$inst" --enable-origtree --disable-docs \
		>"$build/configure.log" 2>&1) ||
		fail "configure failed; see $build/configure.log"
	phase_end configure

	# 3. Build racketcgc, xform, racket3m.
	phase_start
	echo "racket: make -j$jobs (racketcgc, xform, racket3m; log: $build/make.log)"
	(cd "$obj" && make -j"$jobs" >"$build/make.log" 2>&1) ||
		fail "make failed; see $build/make.log"
	[ -x "$obj/bc/racket3m" ] || fail "make: no $obj/bc/racket3m after the build; see $build/make.log"
	phase_end make
	echo "$want" >"$made"
	echo "$glue_want" >"$glue/glue.sum"
fi

# 3b. The adapter changed since racket3m was linked: relink it.
if [ "$(cat "$glue/glue.sum" 2>/dev/null)" != "$glue_want" ]; then
	phase_start
	echo "racket: relinking racket3m with the adapter (log: $build/make.log)"
	rm -f "$obj/bc/racket3m"
	(cd "$obj" && make -j"$jobs" >>"$build/make.log" 2>&1) ||
		fail "make (relink) failed; see $build/make.log"
	[ -x "$obj/bc/racket3m" ] || fail "relink: no $obj/bc/racket3m; see $build/make.log"
	if [ -f "$stamp" ]; then
		# The installed copy, with the two paths `make install` writes
		# after their labels in the binary (setup/unixstyle-install's
		# fix-executable), relative to bin/ as there.
		cp -f "$obj/bc/racket3m" "$inst/bin/racket.tmp"
		for l in "coLLECTs dIRECTORy:|../collects" "coNFIg dIRECTORy:|../etc"; do
			label=${l%%|*}
			dir=${l#*|}
			off=$(grep -abo "$label" "$inst/bin/racket.tmp" | head -n 1 | cut -d: -f1)
			[ -n "$off" ] || fail "relink: no '$label' in racket3m"
			printf '%s\0\0' "$dir" | dd of="$inst/bin/racket.tmp" bs=1 \
				seek=$((off + ${#label})) conv=notrunc 2>/dev/null ||
				fail "relink: cannot write the $dir path into racket3m"
		done
		mv -f "$inst/bin/racket.tmp" "$inst/bin/racket"
	fi
	echo "$glue_want" >"$glue/glue.sum"
	phase_end relink
fi

if [ ! -f "$stamp" ]; then
	# 4. Install and compile the core collections.
	phase_start
	echo "racket: make install, raco setup $setup_colls (log: $build/install.log)"
	rm -rf "$inst"
	# (configure's --disable-docs already passes --no-docs to raco setup)
	(cd "$obj" && make install \
		PLT_SETUP_OPTIONS="-j $jobs --no-pkg-deps $setup_colls" \
		>"$build/install.log" 2>&1) ||
		fail "make install failed; see $build/install.log"
	phase_end install

	phase_start
	out=$("$inst/bin/racket" -e '(display (+ 1 2))' 2>>"$build/install.log") ||
		fail "smoke test: $inst/bin/racket -e failed; see $build/install.log"
	[ "$out" = 3 ] || fail "smoke test: racket -e printed '$out', not 3"
	vm=$("$inst/bin/racket" -e '(display (system-type (quote gc)))')
	[ "$vm" = 3m ] || fail "smoke test: $inst/bin/racket is not 3m (system-type 'gc: $vm)"
	phase_end smoke
	echo "$want" >"$stamp"
fi

[ -z "$times" ] || echo "racket: phase times:$times"
echo "racket: racket3m: $inst/bin/racket (built as $obj/bc/racket3m)"
