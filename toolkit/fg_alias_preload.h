/* fg_alias_preload.h - what libfgalias-preload.so offers a program that
 * runs under it (LD_PRELOAD=.../libfgalias-preload.so PROG).
 *
 * The shim serves malloc, free, calloc, realloc, reallocarray (through
 * glibc's, which calls realloc), posix_memalign, aligned_alloc, memalign,
 * valloc, pvalloc and malloc_usable_size from one process-wide ALIAS heap
 * (fg_alias.h).  An unmodified program needs nothing from this header; a
 * program that wants to see the heap looks these functions up with
 * dlsym(RTLD_DEFAULT, ...), so that it still runs without the shim.
 *
 * Environment, read once, at the first allocation:
 *   FG_ALIAS_CAPACITY  heap capacity in bytes, suffix k, M or G (powers of
 *                      1024); default 1G.  Beyond it, requests go to glibc.
 *   FG_CARD, FG_BACKEND, FG_QUIET   as for every heap (fg_alias.h, fg.h).
 *   FG_ALIAS_STATS=1   one summary line on stderr at exit.
 *   FG_ALIAS_FORK      "copy" (default): a child of fork() gets a private
 *                      copy of the heap's memory; "share": the child maps
 *                      the parent's memory (no copy, but only for programs
 *                      whose children exec or exit without writing heap
 *                      objects: bash's do not, and it crashes).
 *
 * Descriptors: the heap's memfd (and FG_ALIAS_STATS's copy of stderr) are
 * kept at 1000 and above, close-on-exec, out of the way of programs that
 * close or dup2 over low numbers (where RLIMIT_NOFILE forbids that, they
 * stay where they were made).  If the program takes one over anyway, the
 * shim notices (by inode) and leaves the program's file alone: the heap
 * goes on, but freed memory stays resident, a fork child shares the heap,
 * and one line on stderr says so.
 */
#ifndef FG_ALIAS_PRELOAD_H
#define FG_ALIAS_PRELOAD_H

#include "fg_alias.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The process's heap; NULL if it could not be created (the shim then uses
 * glibc's malloc throughout) and in a forked child (which allocates from
 * glibc).  Every fg_alias_* function may be called on it, except that
 * collections go through fg_alias_preload_collect. */
FG_API fg_alias_heap *fg_alias_preload_heap(void);

/* fg_alias_collect on the process's heap, with the toolkit's own
 * allocations during the collection kept out of the heap (they would
 * otherwise re-enter it while the tracker's lock is held).  cb runs as for
 * fg_alias_collect and may allocate from the heap.  -FG_EBADTRACKER when
 * there is no heap. */
FG_API int fg_alias_preload_collect(fg_alias_card_cb cb, void *arg);

#ifdef __cplusplus
}
#endif
#endif /* FG_ALIAS_PRELOAD_H */
