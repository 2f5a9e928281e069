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
 *   gc_created(gc, page, first)   two fga_create: pages (block =
 *                                 Racket's APAGE) and arrays (big
 *                                 objects, block = 4 KiB; struct gcx)
 *   region_add / region_remove    fga_add_section / fga_remove_section
 *   region_adopt                  the region moves to the adopting GC
 *   collect_begin(visit)          fga_peek + fga_for_each_dirty: each
 *                                 run of dirty lines as a range (the
 *                                 collector keeps sub-page ranges for big
 *                                 arrays and vectors); on the pages
 *                                 instance the written blocks are
 *                                 un-protected whole (fga_blocks_reused),
 *                                 as stock's fault handler does
 *   collect_end                   fga_retrieve: the next interval starts
 *                                 (the collector's own writes in the
 *                                 pause are not reported: stock
 *                                 re-protects those pages unrecorded)
 *   writable(p, len)              fga_blocks_reused(NEW): where stock
 *                                 un-protects before the collector
 *                                 writes, one call instead of a write
 *                                 fault per page; new regions too
 *   watched(p, len, on)           fga_blocks_unwatched(!on): the pages
 *                                 stock leaves un-protected (rescanned at
 *                                 every minor collection) are not
 *                                 watched, until stock protects them
 *
 * Places run their collections on their own OS threads, and a region can
 * change owner (message pages adopted by another place) or be freed by
 * another GC than its owner (an orphaned message page), so the regions
 * are kept in one table, by address, with their owner, and every call
 * runs under one lock.
 *
 * Knobs: FG_RACKET=1 (on), FG_BACKEND, FG_CARD, FG_RACKET_UNWATCH=0 (watch
 * every page written, as before 2026-12-07), FG_RACKET_WHOLE=0 (a written
 * block left writable only where its 4 KiB pages were written), the
 * generic FG_RACKET_*
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
#include <unistd.h>

#include <fg.h>

#include "fga.h"

#define NAME "racket (fgvm adapter)"
#define NAME_ARRAYS "racket (fgvm adapter, big objects)"

/* As in Racket's gc2.h after patch 0001 (the glue is built without
 * Racket's headers). */
#define GC_EXTERNAL_DIRTY_VERSION 3
#define GC_EXT_REGION_BIG 2
typedef struct GC_external_dirty {
	int version;
	void *(*gc_created)(void *gc, size_t page_size, int first);
	void (*gc_destroyed)(void *ctx);
	void (*region_add)(void *ctx, void *p, size_t len, int kind);
	void (*region_remove)(void *ctx, void *p, size_t len);
	void (*region_adopt)(void *ctx, void *p, size_t len);
	void (*collect_begin)(void *ctx,
			      void (*visit)(void *arg, void *p, size_t len),
			      void *arg);
	void (*collect_end)(void *ctx);
	void (*writable)(void *p, size_t len);
	void (*watched)(void *p, size_t len, int on);
} GC_external_dirty;

/* Weak: racketcgc (built first, with the same link line) has none. */
extern int GC_set_external_dirty(const GC_external_dirty *)
	__attribute__((weak));

/* A place's GC: two adapter instances.  Big pages (one object each,
 * larger than the collector's page) of FG_RACKET_ARRAY_MIN bytes or more
 * (256 KiB: long vectors, big hash tables' arrays) go to arrays, with
 * cards of FG_RACKET_ARRAY_CARD bytes (64 by default) and sticky twins:
 * the collector rescans such an object only inside its dirty cards, and
 * a page written at every collection is left writable and compared
 * instead of faulting.  Small-page blocks, medium pages and smaller big
 * pages go to pages, at the toolkit's card (FG_CARD; a page by default):
 * the collector rescans small and medium pages whole, so finer cards
 * would only cost there. */
struct gcx {
	fga *pages, *arrays; /* arrays may be NULL: pages takes all */
};

struct region {
	uintptr_t base;
	size_t len;
	struct gcx *owner;
	fga *f; /* owner->pages or owner->arrays */
	int kind; /* GC_EXT_REGION_* */
};

#define MAX_GCS 256

static struct {
	pthread_mutex_t lock;
	fga_config c, ca; /* pages', arrays' */
	size_t array_min; /* FG_RACKET_ARRAY_MIN */
	struct region *v; /* sorted by base, mmap'd */
	size_t n, cap;
	struct gcx *gcs[MAX_GCS]; /* live, for the summary at exit */
	int stats;
	int unwatch; /* FG_RACKET_UNWATCH: watched() leaves pages out */
	int whole;   /* FG_RACKET_WHOLE: written blocks un-protected whole */
	unsigned long made, refused, stale;
} R = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* The instance for a region of kind GC_EXT_REGION_* and len bytes: big
 * objects of FG_RACKET_ARRAY_MIN bytes or more go to arrays.  Smaller ones
 * come and go too often (each region costs the tracker a registration,
 * twin memory and a scan per retrieval) for their cards to pay. */
static fga *instance_for(struct gcx *x, int kind, size_t len)
{
	return kind == GC_EXT_REGION_BIG && len >= R.array_min && x->arrays
		       ? x->arrays
		       : x->pages;
}

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

static int region_insert(uintptr_t base, size_t len, struct gcx *owner,
			 fga *f, int kind)
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
	R.v[i] = (struct region){base, len, owner, f, kind};
	R.n++;
	return 0;
}

static void print_stats(struct gcx *x)
{
	for (int k = 0; k < 2; k++) {
		fga *f = k ? x->arrays : x->pages;

		if (!f)
			continue;
		if (R.stats)
			fga_print_stats(f, stderr, 0, 0);
		if (R.c.check)
			fga_print_check(f, stderr);
	}
}

static void *gc_created(void *gc, size_t page_size, int first)
{
	fga_config c = R.c, ca = R.ca;
	struct gcx *x = calloc(1, sizeof *x);
	int rc = x ? 0 : -ENOMEM;

	(void)gc;
	pthread_mutex_lock(&R.lock);
	c.block = page_size;
	if (!rc)
		rc = fga_create(&c, &x->pages);
	if (!rc && ca.card != fga_card_size(x->pages) &&
	    fga_create(&ca, &x->arrays) != 0) {
		fprintf(stderr, "%s: no instance for big objects (%s); "
				"they are tracked with the rest\n",
			NAME, fga_last_error(NULL));
		x->arrays = NULL;
	}
	if (rc) {
		R.refused++;
		fprintf(stderr,
			"%s: %s\n", NAME,
			first ? "the stock mprotect barrier stays on"
			      : "this place's collections are all major");
		free(x);
		x = NULL;
	} else {
		R.made++;
		for (int i = 0; i < MAX_GCS; i++)
			if (!R.gcs[i]) {
				R.gcs[i] = x;
				break;
			}
	}
	pthread_mutex_unlock(&R.lock);
	return x;
}

static void gc_destroyed(void *ctx)
{
	struct gcx *x = ctx;
	size_t j = 0;

	pthread_mutex_lock(&R.lock);
	for (size_t i = 0; i < R.n; i++)
		if (R.v[i].owner != x)
			R.v[j++] = R.v[i];
	R.n = j;
	for (int i = 0; i < MAX_GCS; i++)
		if (R.gcs[i] == x)
			R.gcs[i] = NULL;
	print_stats(x);
	fga_destroy(x->arrays);
	fga_destroy(x->pages);
	free(x);
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
			(void)fga_remove_section(R.v[i].f,
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

static void region_add(void *ctx, void *p, size_t len, int kind)
{
	fga *f = instance_for(ctx, kind, len);
	int rc;

	pthread_mutex_lock(&R.lock);
	drop_overlapping((uintptr_t)p, len);
	rc = fga_add_section(f, p, len);
	if (rc == 0) {
		rc = region_insert((uintptr_t)p, len, ctx, f, kind);
		if (rc)
			(void)fga_remove_section(f, p, len);
		else /* about to be filled: writable now, read dirty once */
			fga_blocks_reused(f, p, len, FGA_BLOCK_NEW);
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
		(void)fga_remove_section(R.v[i].f, p, R.v[i].len);
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
		struct gcx *x = ctx;
		fga *f = R.v[i].f == R.v[i].owner->arrays && x->arrays
				 ? x->arrays
				 : x->pages;

		(void)fga_remove_section(R.v[i].f, (void *)R.v[i].base,
					 R.v[i].len);
		rc = fga_add_section(f, (void *)R.v[i].base, R.v[i].len);
		R.v[i].owner = ctx;
		R.v[i].f = f;
	}
	pthread_mutex_unlock(&R.lock);
	if (rc)
		die("cannot adopt", p, len, rc);
}

struct visit_arg {
	void (*visit)(void *arg, void *p, size_t len);
	void *arg;
	size_t block;
	uintptr_t lo, hi; /* the run of written blocks to un-protect whole */
	int whole;	  /* un-protect them (the pages instance, page cards) */
};

static void writable_locked(uintptr_t a, uintptr_t e);

/* collect_begin holds R.lock while the collector's visit runs, and visit
 * calls writable (patch 0004: a big page made writable whole). */
static __thread int in_collect_begin;

/* A written block un-protected whole, as stock's fault handler
 * un-protects the whole 16 KiB page (designate_modified_gc): the
 * collector's later writes into it, in this pause (weak boxes linked,
 * weak arrays cleared, pointers fixed up) and in the next interval, take
 * no fault on the 4 KiB pages the program left alone.  Neighbours are
 * gathered into one call.  Not a big object's page: the collector makes
 * one writable whole where it rescans it whole (patch 0004), and a
 * vector rescanned by range is written only in its ranges, where a call
 * per sparsely written block cost more than the faults it saved
 * (bench/RESULTS.md, sixth round). */
static void unprotect_whole(struct visit_arg *v, void *block)
{
	uintptr_t s = (uintptr_t)block, e = s + v->block;
	int found;
	size_t i;

	if (!v->whole)
		return;
	i = region_at(s, &found);
	if (!found || R.v[i].kind == GC_EXT_REGION_BIG)
		return;
	if (v->hi >= s && s >= v->lo) {
		if (e > v->hi)
			v->hi = e;
		return;
	}
	if (v->hi > v->lo)
		writable_locked(v->lo, v->hi);
	v->lo = s;
	v->hi = e;
}

/* Each run of dirty lines as one range: the collector rescans a big
 * array or vector only there, and any other page whole. */
static void visit_block(void *arg, void *block, fga_lines lines)
{
	struct visit_arg *v = arg;
	size_t line = v->block / 64;
	int i = 0;

	/* A block read whole is writable whole already (made so by
	 * writable, or every page of it written) or left out (unwatched). */
	if (lines == FGA_LINES_ALL) {
		v->visit(v->arg, block, v->block);
		return;
	}
	unprotect_whole(v, block);
	while (lines >> i) {
		int n;

		i += __builtin_ctzll(lines >> i);
		/* ~(lines >> i) != 0: lines is not FGA_LINES_ALL (above),
		 * and the shift brings in zeros. */
		n = __builtin_ctzll(~(lines >> i));
		v->visit(v->arg, (char *)block + (size_t)i * line,
			 (size_t)n * line);
		i += n;
		if (i >= 64)
			break;
	}
}

static void collect_begin(void *ctx, void (*visit)(void *, void *, size_t),
			  void *arg)
{
	struct gcx *x = ctx;

	pthread_mutex_lock(&R.lock);
	for (int k = 0; k < 2; k++) {
		fga *f = k ? x->arrays : x->pages;
		struct visit_arg v = {visit, arg, 0, 0, 0, 0};

		if (!f)
			continue;
		/* Without re-protecting: the collector writes into these
		 * pages now, and collect_end's retrieval ends the
		 * interval. */
		(void)fga_peek(f);
		v.block = fga_block_size(f);
		/* Not big objects' instance, whose twins see which lines of
		 * a written page changed, nor under DIFF. */
		v.whole = R.whole && !k &&
			  fga_card_size(f) >= (size_t)sysconf(_SC_PAGESIZE);
		in_collect_begin = 1;
		(void)fga_for_each_dirty(f, visit_block, &v);
		in_collect_begin = 0;
		if (v.hi > v.lo)
			writable_locked(v.lo, v.hi);
	}
	pthread_mutex_unlock(&R.lock);
}

/* fn on each piece of [a, e) inside a region, with the region's
 * instance (R.lock held). */
static void each_piece(uintptr_t a, uintptr_t e,
		       void (*fn)(fga *f, void *p, size_t len, int arg),
		       int arg)
{
	int found;
	size_t i;

	for (i = region_at(a, &found); i < R.n && R.v[i].base < e; i++) {
		uintptr_t s = R.v[i].base > a ? R.v[i].base : a;
		uintptr_t t = R.v[i].base + R.v[i].len < e
				      ? R.v[i].base + R.v[i].len
				      : e;

		if (s < t)
			fn(R.v[i].f, (void *)s, t - s, arg);
	}
}

static void piece_writable(fga *f, void *p, size_t len, int arg)
{
	(void)arg;
	fga_blocks_reused(f, p, len, FGA_BLOCK_NEW);
}

static void writable_locked(uintptr_t a, uintptr_t e)
{
	each_piece(a, e, piece_writable, 0);
}

/* The collector is about to write into [p, p+len), which may span
 * regions of several owners (merged ranges) or none (unwatched memory):
 * each watched piece is made writable and reads dirty once. */
static void writable(void *p, size_t len)
{
	if (in_collect_begin) {
		writable_locked((uintptr_t)p, (uintptr_t)p + len);
		return;
	}
	pthread_mutex_lock(&R.lock);
	writable_locked((uintptr_t)p, (uintptr_t)p + len);
	pthread_mutex_unlock(&R.lock);
}

/* Stock would write-protect [p, p+len) now (on), or leaves a page it
 * rescans at every minor collection un-protected (off): watch as much as
 * stock protects, no more.  Without it every page written in an interval
 * was re-protected at its end, and a page still holding pointers to
 * younger objects (incremental mode's gen 1/2), which the collector
 * rescans at every minor collection anyway, faulted again in the next.
 * Both instances, the big-object one's 64-byte cards too; a hint: an
 * instance that refuses (-ENOTSUP) keeps watching them, which is sound. */
static void piece_unwatched(fga *f, void *p, size_t len, int unwatched)
{
	(void)fga_blocks_unwatched(f, p, len, unwatched);
}

static void watched(void *p, size_t len, int on)
{
	/* With FG_RACKET_UNWATCH=0 nothing is unwatched, but a protection
	 * still names the pages to their instance: after the peek, their
	 * sections are re-protected by collect_end's retrieval, so that the
	 * collector's writes into them go unreported (fga_peek). */
	if (!R.unwatch && !on)
		return;
	pthread_mutex_lock(&R.lock);
	each_piece((uintptr_t)p, (uintptr_t)p + len, piece_unwatched, !on);
	pthread_mutex_unlock(&R.lock);
}

static void collect_end(void *ctx)
{
	struct gcx *x = ctx;

	pthread_mutex_lock(&R.lock);
	fga_retrieve(x->pages);
	if (x->arrays)
		fga_retrieve(x->arrays);
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
	watched,
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
	fg_env_value on, stats, acard, amin, unwatch, whole;
	int rc = fg_env_get("FG_RACKET", &on);
	int urc = fg_env_get("FG_RACKET_UNWATCH", &unwatch);
	int wrc = fg_env_get("FG_RACKET_WHOLE", &whole);
	int src = fg_env_get("FG_RACKET_STATS", &stats);
	int arc = fg_env_get("FG_RACKET_ARRAY_CARD", &acard);
	int amc = fg_env_get("FG_RACKET_ARRAY_MIN", &amin);

	if (rc < 0)
		fprintf(stderr, "%s: %s; the stock barrier stays on\n", NAME,
			fg_last_error_detail());
	if (rc <= 0 || !on.index || !GC_set_external_dirty)
		return;
	c.name = NAME;
	c.exempt = 0; /* no block states: regions come and go instead */
	c.preclean = 0;
	/* Below page-sized cards, twins are line digests: an eighth of the
	 * memory of page copies (bench/RESULTS.md, 2026-12-06, "Twins as
	 * line digests"); FG_RACKET_TWIN_FORM=copy for exact copies. */
	c.twin_form = FGA_TWIN_DIGEST;
	fga_config_env(&c, "FG_RACKET");
	R.c = c;
	/* Big objects: a block per OS page, so that a line is 64 bytes. */
	c.name = NAME_ARRAYS;
	c.block = 4096;
	c.card = 64;
	c.twins = FGA_TWINS_STICKY;
	if (arc < 0)
		fprintf(stderr, "%s: %s; 64-byte cards for big objects\n", NAME,
			fg_last_error_detail());
	else if (arc > 0)
		c.card = acard.bytes;
	R.ca = c;
	R.array_min = 256 * 1024;
	if (amc < 0)
		fprintf(stderr, "%s: %s; big objects from 256 KiB up get "
				"their own cards\n",
			NAME, fg_last_error_detail());
	else if (amc > 0)
		R.array_min = amin.bytes;
	if (src < 0)
		fprintf(stderr, "%s: %s; no statistics\n", NAME,
			fg_last_error_detail());
	R.stats = src > 0 && stats.index;
	if (urc < 0)
		fprintf(stderr, "%s: %s; pages stock leaves un-protected are "
				"not watched\n",
			NAME, fg_last_error_detail());
	R.unwatch = urc <= 0 || unwatch.index;
	if (wrc < 0)
		fprintf(stderr, "%s: %s; written pages are un-protected "
				"whole\n",
			NAME, fg_last_error_detail());
	R.whole = wrc <= 0 || whole.index;
	if (GC_set_external_dirty(&table) != 0) {
		fprintf(stderr, "%s: GC_set_external_dirty refused the table "
				"(version %d); the stock barrier stays on\n",
			NAME, GC_EXTERNAL_DIRTY_VERSION);
		return;
	}
	if (R.stats || R.c.check)
		atexit(at_exit);
}
