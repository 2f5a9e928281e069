/* fg_boehm.c - Boehm GC's virtual dirty bits from the fgvm toolkit.
 *
 * Linked into the adapter's libgc.so.1 (Boehm GC 8.2.2 built with
 * -DEXTERNAL_VDB, see patches/), with the generic adapter
 * (adapters/generic/fga.c) beside it.  This file is the glue, and the
 * porting guide's first worked example (adapters/generic/README.md): a
 * constructor installs the table of GC_set_external_vdb(); each of its
 * entries is one call of the generic adapter:
 *
 *   dirty_init(hblk)          fga_create, one line per hblk / 64 bytes
 *   add_heap(start, bytes)    fga_add_section
 *   pre_stop_world()          fga_preclean, then the static roots:
 *                             fga_roots_begin, _add for each range of
 *                             GC_external_vdb_roots (patch 4), _end
 *   read_dirty()              fga_retrieve (world stopped)
 *   root_page_was_dirty(p)    fga_root_dirty (patch 4: a partial
 *                             collection scans only the written pages
 *                             of the data segments and GC_add_roots
 *                             ranges; FG_BOEHM_ROOTS=0: all of them)
 *   block_dirty_lines(h)      fga_block_lines (patch 2 pushes only the
 *                             marked objects overlapping a dirty line)
 *   concurrent_mark()         fga_concurrent_mark (time-sliced marking)
 *   finish_collection(fin)    fga_collection_done(fin): GC_finalize
 *                             wrote into the heap and scanned after the
 *                             retrieval (see fga.c)
 *   free_blocks(h, bytes)     fga_blocks_freed
 *   remove_protection(...)    fga_blocks_reused
 *   update_child()            fga_fork_child
 *   protection_needs()        fga_protects
 *   hold_lines()              fga_hold_lines (patch 3: the sweep leaves
 *                             blocks alone whose live objects sit in
 *                             most of their lines; FG_BOEHM_HOLD)
 *
 * One thing is outside any dirty bit: a mark procedure may mark from
 * memory the tracker does not watch.  Guile's threads are heap objects
 * whose mark procedure marks the thread's VM stack, mmap'd outside the
 * heap; the thread object can be byte for byte the same at two
 * retrievals while its stack holds new references.  Page precision hid
 * it (something on the thread's page is written between any two
 * collections); DIFF did not, and Guile freed live objects.  Patch 2
 * therefore pushes the marked objects of every block whose descriptor
 * is a mark procedure (or per object) at every retrieval, dirty or not
 * (GC_rescan_always; tests/test_boehm_cards.c, offheap).  Stock Boehm's
 * own MPROTECT_VDB has the same hole.
 *
 * The adapter's knobs are FG_BACKEND, FG_CARD and FG_BOEHM_* (the generic
 * adapter's fga_config_env), plus FG_BOEHM_STATS=1: a summary at exit.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gc.h>
#include <fg.h>

#include "fga.h"
#include "gc_fg.h"

#define API __attribute__((visibility("default")))
#define NAME "libgc (fgvm adapter)"

static struct {
	fga *f;		       /* NULL while not supplying bits */
	fga_config c;	       /* from the environment, at load */
	char want_backend[32]; /* GC_fg_set_backend */
	size_t want_card;      /* GC_fg_set_card_size before init */
	char err[256];	       /* errors before there is an instance */
} B;

static unsigned long long rescanned(void *ctx)
{
	(void)ctx;
	return GC_get_bytes_rescanned();
}

static unsigned long long rescanned_page(void *ctx)
{
	(void)ctx;
	return GC_get_bytes_rescanned_page();
}

static int GC_CALLBACK vdb_protection_needs(void)
{
	return fga_protects(B.f)
		       ? GC_PROTECTS_POINTER_HEAP | GC_PROTECTS_PTRFREE_HEAP
		       : GC_PROTECTS_NONE;
}

static int GC_CALLBACK vdb_dirty_init(size_t hblk)
{
	fga_config c = B.c;
	fg_env_value v;
	int rc;

	/* With a pause target (GC_PAUSE_TIME_TARGET, GC_set_time_limit
	 * before incremental mode starts) Boehm marks in slices, epochs read
	 * whole pages, and an exempt block is read whole at two retrievals:
	 * the Guile set then pauses 0.76-0.94x as long with exempt blocks
	 * off as on, at 0.97-1.11x the time, single runs (bench/RESULTS.md,
	 * 2026-12-07, "Exempt blocks against none").  FG_BOEHM_EXEMPT, when
	 * set, wins. */
	if (GC_get_time_limit() != GC_TIME_UNLIMITED &&
	    fg_env_get("FG_BOEHM_EXEMPT", &v) <= 0)
		c.exempt = 0;
	c.block = hblk;
	c.backend = B.want_backend[0] ? B.want_backend : NULL;
	c.card = B.want_card; /* 0: FG_CARD, or the page size */
	rc = fga_create(&c, &B.f);
	if (rc) {
		/* fga_create said why. */
		snprintf(B.err, sizeof B.err, "%s; incremental mode stays off",
			 fga_last_error(NULL));
		fprintf(stderr, "%s: incremental mode stays off\n", NAME);
		return 0;
	}
	return 1;
}

/* The collector cannot go on without the adapter's tables for a new
 * section (it would trust lines nobody keeps). */
static void GC_CALLBACK vdb_add_heap(void *start, size_t bytes)
{
	if (B.f && bytes && fga_add_section(B.f, start, bytes) == -ENOMEM)
		abort();
}

static void GC_CALLBACK add_root(void *lo, void *hi, void *cd)
{
	(void)cd;
	fga_roots_add(B.f, lo, hi);
}

/* The static roots as they stand now: the dynamic libraries' were
 * renewed by the last collection (patch 4, GC_external_vdb_roots). */
static void GC_CALLBACK vdb_pre_stop_world(void)
{
	fga_preclean(B.f);
	fga_roots_begin(B.f);
	GC_external_vdb_roots(add_root, NULL);
	fga_roots_end(B.f);
}

static int GC_CALLBACK vdb_root_page_was_dirty(void *page)
{
	return fga_root_dirty(B.f, page);
}

static void GC_CALLBACK vdb_read_dirty(int output_unneeded)
{
	(void)output_unneeded; /* the epoch restarts either way */
	fga_retrieve(B.f);
}

static GC_word GC_CALLBACK vdb_block_dirty_lines(void *h)
{
	return (GC_word)fga_block_lines(B.f, h);
}

static void GC_CALLBACK vdb_remove_protection(void *h, size_t bytes,
					      int flags)
{
	fga_blocks_reused(B.f, h, bytes,
			  (flags & GC_VDB_NEW_BLOCK ? FGA_BLOCK_NEW : 0) |
				  (flags & GC_VDB_PTRFREE ? FGA_BLOCK_PTRFREE
							  : 0));
}

static void GC_CALLBACK vdb_concurrent_mark(void)
{
	fga_concurrent_mark(B.f);
}

/* Runs with the allocation lock held and the world running, after the
 * collector's finalization and sweep set-up. */
static void GC_CALLBACK vdb_finish_collection(int finalized)
{
	fga_collection_done(B.f, finalized);
}

static void GC_CALLBACK vdb_free_blocks(void *h, size_t bytes)
{
	fga_blocks_freed(B.f, h, bytes);
}

/* Boehm keeps its incremental mode in the child. */
static void GC_CALLBACK vdb_update_child(void)
{
	fga_fork_child(B.f);
}

/* Patch 3: the sweep leaves blocks alone whose live objects sit in most
 * of their lines (FG_BOEHM_HOLD, off by default). */
static unsigned GC_CALLBACK vdb_hold_lines(void)
{
	return fga_hold_lines(B.f);
}

static const struct GC_external_vdb_s vdb = {
	GC_EXTERNAL_VDB_VERSION, vdb_dirty_init,	vdb_add_heap,
	vdb_read_dirty,		 vdb_block_dirty_lines, vdb_remove_protection,
	vdb_concurrent_mark,	 vdb_update_child,	vdb_protection_needs,
	vdb_pre_stop_world,	 vdb_finish_collection, vdb_free_blocks,
	vdb_hold_lines,		 vdb_root_page_was_dirty,
};

/* FG_BOEHM_STATS=1: a summary on stderr at exit. */
static void print_stats(void)
{
	if (!B.f) {
		fprintf(stderr, "%s: backend (off): no retrieval\n", NAME);
		return;
	}
	fga_print_stats(B.f, stderr, GC_get_bytes_rescanned(),
			GC_get_bytes_rescanned_page());
}

/* FG_BOEHM_CHECK: the verdict at exit. */
static void print_check(void)
{
	if (!B.f) {
		fprintf(stderr, "%s: FG_BOEHM_CHECK: 0 retrievals checked, 0 "
				"changed lines not reported\n",
			NAME);
		return;
	}
	fga_print_check(B.f, stderr);
}

__attribute__((constructor)) static void install(void)
{
	fga_config c = FGA_CONFIG_INIT;
	fg_env_value v;
	int stats = fg_env_get("FG_BOEHM_STATS", &v);

	c.name = NAME;
	/* FG_CARD unset: 64-byte cards where the twins pay, page cards
	 * where they do not (bench/RESULTS.md, 2026-12-05). */
	c.card_default = FGA_CARD_AUTO;
	/* Below page-sized cards, twins are line digests: an eighth of the
	 * memory of page copies (bench/RESULTS.md, 2026-12-06, "Twins as
	 * line digests"); FG_BOEHM_TWIN_FORM=copy for exact copies. */
	c.twin_form = FGA_TWIN_DIGEST;
	c.rescanned = rescanned;
	c.rescanned_page = rescanned_page;
	fga_config_env(&c, "FG_BOEHM");
	B.c = c;
	if (GC_set_external_vdb(&vdb) != GC_SUCCESS)
		fprintf(stderr, "%s: GC_set_external_vdb failed: this libgc "
				"was not built with EXTERNAL_VDB\n",
			NAME);
	if (stats < 0)
		fprintf(stderr, "%s: %s; no statistics\n", NAME,
			fg_last_error_detail());
	if (stats > 0 && v.index)
		atexit(print_stats);
	if (B.c.check)
		atexit(print_check);
}

API int GC_fg_set_backend(const char *name)
{
	if (B.f)
		return -1;
	if (!name)
		B.want_backend[0] = 0;
	else
		snprintf(B.want_backend, sizeof B.want_backend, "%s", name);
	return 0;
}

static void *GC_CALLBACK set_card_locked(void *arg)
{
	return (void *)(intptr_t)fga_set_card_size(B.f, *(size_t *)arg);
}

API int GC_fg_set_card_size(size_t bytes)
{
	if (B.f) {
		if (GC_call_with_alloc_lock(set_card_locked, &bytes)) {
			snprintf(B.err, sizeof B.err, "%s",
				 fga_last_error(B.f));
			return -1;
		}
		return 0;
	}
	B.want_card = bytes; /* checked when the tracker starts */
	return 0;
}

API size_t GC_fg_get_card_size(void)
{
	return B.f ? fga_card_size(B.f) : B.want_card;
}

API const char *GC_fg_backend(void)
{
	return fga_backend(B.f);
}

API const char *GC_fg_last_error(void)
{
	return B.err;
}

API int GC_fg_get_stats(struct GC_fg_stats *out)
{
	struct GC_fg_stats st = {0};
	fga_stats fs = {.size = sizeof fs};
	size_t n;

	if (!out || out->size == 0)
		return -1;
	if (B.f)
		fga_get_stats(B.f, &fs);
	st.collections = fs.collections;
	st.dirty_pages = fs.dirty_pages;
	st.dirty_bytes = fs.dirty_bytes;
	st.faults = fs.faults;
	st.bytes_rescanned = (unsigned long)GC_get_bytes_rescanned();
	st.whole_epochs = fs.whole_epochs;
	st.retrieve_ms_total = fs.retrieve_ms_total;
	st.retrieve_ms_max = fs.retrieve_ms_max;
	st.preclean_ms_total = fs.preclean_ms_total;
	st.finish_ms_total = fs.finish_ms_total;
	st.finish_bytes = fs.finish_bytes;
	st.exempted_blocks = fs.exempted_blocks;
	st.watched_blocks = fs.watched_blocks;
	st.bytes_rescanned_page =
		(unsigned long)GC_get_bytes_rescanned_page();
	st.auto_off = fs.auto_off;
	st.auto_on = fs.auto_on;
	n = out->size < sizeof st ? out->size : sizeof st;
	st.size = n;
	memcpy(out, &st, n);
	return 0;
}

/* The program's threads call these without the allocation lock; the
 * instance is the collector's, used under it. */
struct io_call {
	void *addr;
	size_t len;
	int io;
};

static void *GC_CALLBACK io_begin_locked(void *arg)
{
	struct io_call *c = arg;

	c->io = fga_io_begin(B.f, c->addr, c->len);
	return NULL;
}

static void *GC_CALLBACK io_end_locked(void *arg)
{
	struct io_call *c = arg;

	c->io = fga_io_end(B.f, c->io);
	return NULL;
}

API int GC_fg_io_begin(void *addr, size_t len)
{
	struct io_call c = {addr, len, 0};
	int io;

	if (!B.f)
		return GC_FG_IO_OFF;
	GC_call_with_alloc_lock(io_begin_locked, &c);
	io = c.io;
	if (io < 0) {
		snprintf(B.err, sizeof B.err, "GC_fg_%s", fga_last_error(B.f));
		return -1;
	}
	return io;
}

API int GC_fg_io_end(int io)
{
	struct io_call c = {NULL, 0, 0};

	if (io == GC_FG_IO_OFF)
		return 0;
	if (!B.f) {
		snprintf(B.err, sizeof B.err, "GC_fg_io_end(%d): %s (off)", io,
			 fg_strerror(-EINVAL));
		return -1;
	}
	c.io = io;
	GC_call_with_alloc_lock(io_end_locked, &c);
	if (c.io) {
		snprintf(B.err, sizeof B.err, "GC_fg_%s", fga_last_error(B.f));
		return -1;
	}
	return 0;
}

API unsigned long GC_fg_get_bytes_rescanned(void)
{
	return (unsigned long)GC_get_bytes_rescanned();
}
