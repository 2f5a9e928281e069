#!/bin/sh
# build.sh - build the adapter's drop-in libgc.so.1.
#
# usage: adapters/boehm/build.sh SRCDIR BUILDDIR TOOLKIT_LIBDIR
#
# 1. Boehm GC 8.2.2's source comes from Debian's source package (libgc
#    1:8.2.2-3), fetched once with `apt-get source libgc` into
#    BUILDDIR/adapters/boehm/cache (needs a deb-src entry for bookworm
#    main: ./bootstrap adds one) and never refetched while it is there.
# 2. A copy in BUILDDIR/adapters/boehm/build/libgc-8.2.2 gets the patches
#    of SRCDIR/adapters/boehm/patches (EXTERNAL_VDB, card-aware rescanning)
#    and is configured as Debian configures libgc1, plus -DEXTERNAL_VDB.
# 3. The adapter (fg_boehm.c, the glue, and adapters/generic/fga.c, the
#    generic adapter, both with hidden visibility but for the GC_fg_*
#    calls) is compiled into libgc.la, linked against
#    the toolkit's libfgtk.so.0, and libgc.so.1 + libfgtk.so.0 are copied
#    to BUILDDIR/adapters/boehm/lib (libgc.so.1 finds libfgtk.so.0 next to
#    itself through its $ORIGIN run path).
#
# Exit status: 0 built; 1 failed (the step and its log are named).
set -eu

src=$(cd "$1" && pwd)
top=$(cd "$2" && pwd)
tklib=$(cd "$3" && pwd)
ver=8.2.2
cache=$top/adapters/boehm/cache
build=$top/adapters/boehm/build
tree=$build/libgc-$ver
lib=$top/adapters/boehm/lib
log=$build/build.log
jobs=${FG_BOEHM_JOBS:-2}

fail() {
	echo "adapters/boehm/build.sh: $*" >&2
	exit 1
}

mkdir -p "$cache" "$build" "$lib"

# 1. Fetch (cached).
if [ ! -f "$cache/libgc-$ver/os_dep.c" ]; then
	echo "boehm: fetching Boehm GC $ver with apt-get source libgc"
	command -v dpkg-source >/dev/null ||
		fail "dpkg-source is missing (Debian: apt-get install dpkg-dev; ./bootstrap does)"
	(cd "$cache" && apt-get source -qq "libgc=1:$ver-3" >"$cache/fetch.log" 2>&1) ||
		(cd "$cache" && apt-get source -qq libgc >>"$cache/fetch.log" 2>&1) ||
		fail "apt-get source libgc failed (is there a deb-src entry for bookworm main? ./bootstrap adds one); see $cache/fetch.log"
	[ -f "$cache/libgc-$ver/os_dep.c" ] ||
		fail "apt-get source did not unpack libgc-$ver into $cache (see $cache/fetch.log)"
fi

# 2. Patch and configure, again only when the patches changed.
stamp=$build/patched.sum
# (the Makefile edit below is part of it: "fga" names its layout)
want=$( (cat "$src"/adapters/boehm/patches/*.patch; echo fga) | cksum)
if [ ! -f "$tree/Makefile" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
	rm -rf "$tree"
	cp -a "$cache/libgc-$ver" "$tree"
	for p in "$src"/adapters/boehm/patches/*.patch; do
		echo "boehm: applying $(basename "$p")"
		patch -d "$tree" -p1 -s <"$p" || fail "patch $p does not apply"
	done
	echo "boehm: configuring (log: $build/configure.log)"
	# Debian's configuration of libgc1 (debian/rules), plus EXTERNAL_VDB.
	(cd "$tree" && ./configure --enable-cplusplus --disable-dependency-tracking \
		--enable-shared --disable-static --with-libatomic-ops=none \
		--disable-docs CFLAGS_EXTRA=-DEXTERNAL_VDB LDFLAGS=-pthread \
		>"$build/configure.log" 2>&1) ||
		fail "configure failed; see $build/configure.log"
	# The adapter goes into libgc.la with the toolkit as a dependency.
	# (in the Makefile itself, so that any later make in the tree, e.g.
	# `make check` for Boehm's tests, links the same way).
	sed -i "s|^libgc_la_LIBADD = |libgc_la_LIBADD = fg_boehm.lo fga.lo -Wl,$tklib/libfgtk.so.0 -Wl,-rpath,\\\\\$\$ORIGIN |" \
		"$tree/Makefile"
	grep -q '^libgc_la_LIBADD = fg_boehm.lo fga.lo' "$tree/Makefile" ||
		fail "cannot add the adapter to libgc.la (Makefile layout changed?)"
	echo "$want" >"$stamp"
fi

# 3. Build.
echo "boehm: building libgc.so.1 with the adapter (log: $log)"
: >"$log"
for c in boehm/fg_boehm generic/fga; do
	(cd "$tree" && ./libtool --mode=compile --tag=CC gcc -O2 -g -Wall -fPIC \
		-fvisibility=hidden -DFGA_API= -std=gnu11 -I"$tree/include" \
		-I"$src/toolkit" -I"$src/adapters/generic" -I"$src/adapters/boehm" \
		-c "$src/adapters/$c.c" -o "$(basename "$c").lo" >>"$log" 2>&1) ||
		fail "compiling adapters/$c.c failed; see $log"
done
# libgc.la does not depend on fg_boehm.lo in Boehm's Makefile: relink.
rm -f "$tree/libgc.la"
(cd "$tree" && make -j"$jobs" libgc.la >>"$log" 2>&1) ||
	fail "make libgc.la failed; see $log"
# The toolkit next to libgc.so.1 in the tree too, so that Boehm's own
# tests (make check) link and run against it.
cp -f "$(readlink -f "$tklib/libfgtk.so.0")" "$tree/.libs/libfgtk.so.0"
so=$(readlink -f "$tree/.libs/libgc.so.1")
[ -f "$so" ] || fail "no $tree/.libs/libgc.so.1 after the build"
cp -f "$so" "$lib/libgc.so.1.tmp" && mv -f "$lib/libgc.so.1.tmp" "$lib/libgc.so.1"
ln -sf libgc.so.1 "$lib/libgc.so"
cp -f "$(readlink -f "$tklib/libfgtk.so.0")" "$lib/libfgtk.so.0.tmp" &&
	mv -f "$lib/libfgtk.so.0.tmp" "$lib/libfgtk.so.0"
echo "boehm: $lib/libgc.so.1 ready"
