#!/bin/bash
# Run HERE (the development machine), from anywhere, before device run 5:
# builds what run5.sh needs and fills .devprobe/ with it.
#   .devprobe/fgvm             vm/fgvm (a static PIE)
#   .devprobe/vm               bench/vm linked statically with the toolkit
#                              (the sources of Makefile.am's TOOLKIT_SOURCES)
#   .devprobe/gcbench, sparse  bench/boehm's programs (dynamic, -lgc)
#   .devprobe/fg/              adapters/boehm/lib: libgc.so.1, libfgtk.so.0
#   .devprobe/stock/           Debian's libgc.so.1
# Prints the sizes: .devprobe and the whole working tree that travels must
# stay under 64 MiB.
set -eu
cd "$(dirname "$0")/../../.."
D=.devprobe

make -j2 vm/fgvm toolkit/libfgtk.la bench/boehm/gcbench bench/boehm/sparse \
	adapters/boehm/lib/libgc.so.1

mkdir -p "$D/fg" "$D/stock"
rm -f "$D/fgvm" "$D/vm" "$D/gcbench" "$D/sparse" "$D/vm_probe" "$D/vm_track"
install -m 755 vm/fgvm "$D/fgvm"
file -L "$D/fgvm" | grep -q 'static' || {
	echo "prepare5: vm/fgvm is not statically linked" >&2
	exit 1
}

# bench/vm, static: no libfgtk.so to carry, the same toolkit as fgvm's.
srcs=$(sed -n '/^TOOLKIT_SOURCES *=/,/^$/p' Makefile.am |
	grep -o 'toolkit/[A-Za-z0-9_]*\.c')
gcc -O2 -std=gnu11 -Wall -Wextra -pthread -include config.h -Itoolkit \
	-static -o "$D/vm" bench/vm.c $srcs
"$D/vm" --help >/dev/null

# The VM's own checks, static too: vm_probe (compared native vs fgvm) and
# vm_track (host writes reported, vmcall fuzz).
gcc -O2 -std=gnu11 -Wall -pthread -include config.h -static -o "$D/vm_probe" \
	tests/vm_probe.c
gcc -O2 -std=gnu11 -Wall -pthread -include config.h -Itoolkit -static \
	-o "$D/vm_track" tests/vm_track.c $srcs

install -m 755 bench/boehm/gcbench bench/boehm/sparse "$D/"
cp -L adapters/boehm/lib/libgc.so.1 adapters/boehm/lib/libfgtk.so.0 "$D/fg/"
stock=$(ldconfig -p | awk '/libgc\.so\.1 .*x86-64/ {print $NF; exit}')
cp -L "${stock:-/usr/lib/x86_64-linux-gnu/libgc.so.1}" "$D/stock/libgc.so.1"

# A quick native check of what was copied.
LD_LIBRARY_PATH=$D/stock "$D/gcbench" --scale 6 | grep -q intact
LD_LIBRARY_PATH=$D/fg GC_ENABLE_INCREMENTAL=1 FG_QUIET=1 "$D/gcbench" --scale 6 |
	grep -q "$D/fg/libgc.so.1"

echo "prepare5: $D:"
ls -l "$D" "$D/fg" "$D/stock"
du -sh "$D"
# What travels: tracked files, untracked files git does not ignore, and
# .devprobe (whether or not git ignores it: it is carried either way).
tree=$( (git ls-files -z -c -o --exclude-standard; find "$D" -type f -print0) |
	sort -zu | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
echo "prepare5: the working tree that travels: $((tree / 1024)) KiB" \
	"($((tree / 1048576)) MiB of 64 allowed)"
[ "$tree" -lt $((60 << 20)) ] || {
	echo "prepare5: too big for the device" >&2
	exit 1
}
