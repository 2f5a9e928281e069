/* fg_racket.c - Racket BC 3m's write barrier from the fgvm toolkit.
 *
 * Linked into racket3m (adapters/racket/build.sh), beside the generic
 * adapter (adapters/generic/fga.c).  Patch 0001 gives 3m's collector a
 * table of external dirty-page calls (GC_set_external_dirty in gc2.h);
 * with FG_RACKET=1 in the environment a constructor installs this one, and
 * then no old page is write-protected and no SIGSEGV handler is installed:
 * each place's GC gets an adapter instance (fga), told about the
 * protectable old-generation memory (small-page blocks, medium and big
 * pages), and at the start of each collection the pages written since the
 * last one are handed to the collector as if they had faulted.  Without
 * FG_RACKET=1 (or when the tracker cannot start) the same binary runs the
 * stock mprotect barrier.  The worked example of the porting guide,
 * adapters/generic/README.md, next to Boehm.
 *
 * The mapping to the generic adapter's calls:
 *
 *   gc_created(gc, page, first)   fga_create, block = Racket's APAGE
 *   region_add / region_remove    fga_add_section / fga_remove_section
 *   region_adopt                  the region moves to the adopting GC
 *   collect_begin(visit)          fga_retrieve + fga_for_each_dirty
 *   collect_end                   fga_retrieve: the next interval starts
 *                                 (the collector's own writes in the
 *                                 pause are not reported: stock
 *                                 re-protects those pages unrecorded)
 *   writable(p, len)              fga_blocks_reused(NEW): where stock
 *                                 un-protects before the collector
 *                                 writes, one call instead of a write
 *                                 fault per page; new regions too
 *
 * Places run their collections on their own OS threads, and a region can
 * change owner (message pages adopted by another place) or be freed by
 * another GC than its owner (an orphaned message page), so the regions
 * are kept in one table, by address, with their owner, and every call
 * runs under one lock.
 *
 * Knobs: FG_RACKET=1 (on), FG_BACKEND, FG_CARD, the generic FG_RACKET_*
 * (fga_config_env: TWINS, TWIN_CAP, CHECK, ...), FG_RACKET_STATS=1 (a
 * summary per GC when it goes, and at exit; with FG_RACKET_CHECK, the
 * check's verdict the same way).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <fg.h>

#include "fga.h"

#define NAME "racket (fgvm adapter)"

/* As in Racket's gc2.h after patch 0001 (the glue is built without
 * Racket's headers). */
#define GC_EXTERNAL_DIRTY_VERSION 1
typedef struct GC_external_dirty {
	int version;
	void *(*gc_created)(void *gc, size_t page_size, int first);
	void (*gc_destroyed)(void *ctx);
	void (*region_add)(void *ctx, void *p, size_t len);
	void (*region_remove)(void *ctx, void *p, size_t len);
	void (*region_adopt)(void *ctx, void *p, size_t len);
	void (*collect_begin)(void *ctx,
			      void (*visit)(void *arg, void *p, size_t len),
			      void *arg);
	void (*collect_end)(void *ctx);
	void (*writable)(void *p, size_t len);
} GC_external_dirty;

/* Weak: racketcgc (built first, with the same link line) has none. */
extern int GC_set_external_dirty(const GC_external_dirty *)
	__attribute__((weak));

struct region {
	uintptr_t base;
	size_t len;
	fga *owner;
};

#define MAX_GCS 256

static struct {
	pthread_mutex_t lock;
	fga_config c;
	struct region *v; /* sorted by base, mmap'd */
	size_t n, cap;
	fga *gcs[MAX_GCS]; /* live instances, for the summary at exit */
	int stats;
	unsigned long made, refused, stale;
} R = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void die(const char *what, void *p, size_t len, int rc)
{
	fprintf(stderr,
		"%s: %s [%p, +%zu): %s; the collector cannot go on without "
		"its write barrier\n",
		NAME, what, p, len, fg_strerror(rc));
	abort();
}

/* The index of the region holding address a, or of where it would go. */
static size_t region_at(uintptr_t a, int *found)
{
	size_t lo = 0, hi = R.n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (a < R.v[mid].base)
			hi = mid;
		else if (a - R.v[mid].base >= R.v[mid].len)
			lo = mid + 1;
		else {
			*found = 1;
			return mid;
		}
	}
	*found = 0;
	return lo;
}

static int region_insert(uintptr_t base, size_t len, fga *owner)
{
	int found;
	size_t i = region_at(base, &found);

	if (found)
		return -EEXIST;
	if (R.n == R.cap) {
		size_t cap = R.cap ? 2 * R.cap : 256;
		void *w = R.v ? mremap(R.v, R.cap * sizeof *R.v,
				       cap * sizeof *R.v, MREMAP_MAYMOVE)
			      : mmap(NULL, cap * sizeof *R.v,
				     PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (w == MAP_FAILED)
			return -ENOMEM;
		R.v = w;
		R.cap = cap;
	}
	memmove(&R.v[i + 1], &R.v[i], (R.n - i) * sizeof *R.v);
	R.v[i] = (struct region){base, len, owner};
	R.n++;
	return 0;
}

static void print_stats(fga *f)
{
	if (R.stats)
		fga_print_stats(f, stderr, 0, 0);
	if (R.c.check)
		fga_print_check(f, stderr);
}

static void *gc_created(void *gc, size_t page_size, int first)
{
	fga_config c = R.c;
	fga *f = NULL;
	int rc;

	(void)gc;
	pthread_mutex_lock(&R.lock);
	c.block = page_size;
	rc = fga_create(&c, &f);
	if (rc) {
		R.refused++;
		fprintf(stderr,
			"%s: %s\n", NAME,
			first ? "the stock mprotect barrier stays on"
			      : "this place's collections are all major");
		f = NULL;
	} else {
		R.made++;
		for (int i = 0; i < MAX_GCS; i++)
			if (!R.gcs[i]) {
				R.gcs[i] = f;
				break;
			}
	}
	pthread_mutex_unlock(&R.lock);
	return f;
}

static void gc_destroyed(void *ctx)
{
	fga *f = ctx;
	size_t j = 0;

	pthread_mutex_lock(&R.lock);
	for (size_t i = 0; i < R.n; i++)
		if (R.v[i].owner != f)
			R.v[j++] = R.v[i];
	R.n = j;
	for (int i = 0; i < MAX_GCS; i++)
		if (R.gcs[i] == f)
			R.gcs[i] = NULL;
	print_stats(f);
	fga_destroy(f);
	pthread_mutex_unlock(&R.lock);
}

/* Drop the regions overlapping [p, p+len): memory the collector hands
 * out again was freed, so they are stale (a free path that did not say
 * so).  Nothing relies on them any more. */
static void drop_overlapping(uintptr_t p, size_t len)
{
	int found;
	size_t i = region_at(p, &found);

	while (i < R.n && R.v[i].base < p + len) {
		if (R.v[i].base + R.v[i].len > p) {
			(void)fga_remove_section(R.v[i].owner,
						 (void *)R.v[i].base,
						 R.v[i].len);
			memmove(&R.v[i], &R.v[i + 1],
				(R.n - i - 1) * sizeof *R.v);
			R.n--;
			R.stale++;
		} else {
			i++;
		}
	}
}

static void region_add(void *ctx, void *p, size_t len)
{
	int rc;

	pthread_mutex_lock(&R.lock);
	drop_overlapping((uintptr_t)p, len);
	rc = fga_add_section(ctx, p, len);
	if (rc == 0) {
		rc = region_insert((uintptr_t)p, len, ctx);
		if (rc)
			(void)fga_remove_section(ctx, p, len);
		else /* about to be filled: writable now, read dirty once */
			fga_blocks_reused(ctx, p, len, FGA_BLOCK_NEW);
	}
	pthread_mutex_unlock(&R.lock);
	/* A section the tracker refused is kept, reading dirty (sound);
	 * one the adapter has no table for would read clean. */
	if (rc)
		die("cannot watch", p, len, rc);
}

static void region_remove(void *ctx, void *p, size_t len)
{
	int found;
	size_t i;

	/* The owner may be another GC (orphaned pages), and the length the
	 * collector frees with may be rounded otherwise than the one it
	 * allocated with: the region is the one that starts at p. */
	(void)ctx;
	(void)len;
	pthread_mutex_lock(&R.lock);
	i = region_at((uintptr_t)p, &found);
	if (found && R.v[i].base == (uintptr_t)p) {
		(void)fga_remove_section(R.v[i].owner, p, R.v[i].len);
		memmove(&R.v[i], &R.v[i + 1], (R.n - i - 1) * sizeof *R.v);
		R.n--;
	}
	pthread_mutex_unlock(&R.lock);
}

/* A big page adopted by another place: its writes count for the adopter
 * from now on.  Whatever the old owner had not collected yet is its own
 * (the page was young there: nothing relied on it). */
static void region_adopt(void *ctx, void *p, size_t len)
{
	int found, rc = 0;
	size_t i;

	pthread_mutex_lock(&R.lock);
	i = region_at((uintptr_t)p, &found);
	if (found && R.v[i].owner != ctx) {
		(void)fga_remove_section(R.v[i].owner, (void *)R.v[i].base,
					 R.v[i].len);
		rc = fga_add_section(ctx, (void *)R.v[i].base, R.v[i].len);
		R.v[i].owner = ctx;
	}
	pthread_mutex_unlock(&R.lock);
	if (rc)
		die("cannot adopt", p, len, rc);
}

struct visit_arg {
	void (*visit)(void *arg, void *p, size_t len);
	void *arg;
	size_t block;
};

static void visit_block(void *arg, void *block, fga_lines lines)
{
	struct visit_arg *v = arg;

	(void)lines; /* page level: the collector rescans the page */
	v->visit(v->arg, block, v->block);
}

static void collect_begin(void *ctx, void (*visit)(void *, void *, size_t),
			  void *arg)
{
	struct visit_arg v = {visit, arg, 0};
	fga *f = ctx;

	pthread_mutex_lock(&R.lock);
	fga_retrieve(f);
	v.block = fga_block_size(f);
	(void)fga_for_each_dirty(f, visit_block, &v);
	pthread_mutex_unlock(&R.lock);
}

/* The collector is about to write into [p, p+len), which may span
 * regions of several owners (merged ranges) or none (unwatched memory):
 * each watched piece is made writable and reads dirty once. */
static void writable(void *p, size_t len)
{
	uintptr_t a = (uintptr_t)p, e = a + len;
	int found;
	size_t i;

	pthread_mutex_lock(&R.lock);
	for (i = region_at(a, &found); i < R.n && R.v[i].base < e; i++) {
		uintptr_t s = R.v[i].base > a ? R.v[i].base : a;
		uintptr_t t = R.v[i].base + R.v[i].len < e
				      ? R.v[i].base + R.v[i].len
				      : e;

		if (s < t)
			fga_blocks_reused(R.v[i].owner, (void *)s, t - s,
					  FGA_BLOCK_NEW);
	}
	pthread_mutex_unlock(&R.lock);
}

static void collect_end(void *ctx)
{
	pthread_mutex_lock(&R.lock);
	fga_retrieve(ctx);
	pthread_mutex_unlock(&R.lock);
}

static const GC_external_dirty table = {
	GC_EXTERNAL_DIRTY_VERSION,
	gc_created,
	gc_destroyed,
	region_add,
	region_remove,
	region_adopt,
	collect_begin,
	collect_end,
	writable,
};

static void at_exit(void)
{
	pthread_mutex_lock(&R.lock);
	for (int i = 0; i < MAX_GCS; i++)
		if (R.gcs[i])
			print_stats(R.gcs[i]);
	fprintf(stderr, "%s: %lu GCs tracked, %lu refused; %lu regions left "
			"registered after their memory was freed\n",
		NAME, R.made, R.refused, R.stale);
	pthread_mutex_unlock(&R.lock);
}

__attribute__((constructor)) static void install(void)
{
	fga_config c = FGA_CONFIG_INIT;
	fg_env_value on, stats;
	int rc = fg_env_get("FG_RACKET", &on);
	int src = fg_env_get("FG_RACKET_STATS", &stats);

	if (rc < 0)
		fprintf(stderr, "%s: %s; the stock barrier stays on\n", NAME,
			fg_last_error_detail());
	if (rc <= 0 || !on.index || !GC_set_external_dirty)
		return;
	c.name = NAME;
	c.exempt = 0; /* no block states: regions come and go instead */
	c.preclean = 0;
	fga_config_env(&c, "FG_RACKET");
	R.c = c;
	if (src < 0)
		fprintf(stderr, "%s: %s; no statistics\n", NAME,
			fg_last_error_detail());
	R.stats = src > 0 && stats.index;
	if (GC_set_external_dirty(&table) != 0) {
		fprintf(stderr, "%s: GC_set_external_dirty refused the table "
				"(version %d); the stock barrier stays on\n",
			NAME, GC_EXTERNAL_DIRTY_VERSION);
		return;
	}
	if (R.stats || R.c.check)
		atexit(at_exit);
}
