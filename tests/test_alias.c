/* test_alias.c - the ALIAS sub-page allocator (fg_alias.h) against an
 * independent oracle.
 *
 * The oracle never asks the allocator what was written.  It keeps a model
 * of every live object's bytes and a byte mask of what this epoch wrote -
 * the test's own writes, and the allocator's that the API promises (calloc's
 * zeroing, realloc's copy).  At a collection every object must still equal
 * its model (nothing else wrote it: no overlap, no metadata in the heap),
 * and every written byte must lie in a reported card: 0 misses.  Precision
 * is reported as reported bytes / (64-byte lines holding a written byte).
 *
 * Scenarios that depend on the tracking mechanism run once per backend; a
 * backend the machine lacks is a visible skip with the probe's reason.
 * Random tests print their seed; FG_SEED=N replays one.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* config.h defines it in the autotools build */
#endif
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fg.h"
#include "fg_alias.h"
#include "oracle.h"

#define TIMEOUT 240
#define PER_BACKEND(scn) ORC_PER_BACKEND(alias, scn, TIMEOUT)
#define MIB ((size_t)1 << 20)

static fg_alias_heap *heap_new(fg_backend_id id, size_t cap, size_t card)
{
	fg_alias_options o = FG_ALIAS_OPTIONS_INIT;
	fg_alias_heap *h = NULL;
	int rc;

	o.backend = id;
	o.capacity = cap;
	o.card_size = card;
	o.flags = FG_ALIAS_NO_ENV;
	rc = fg_alias_heap_create(&o, &h);
	cr_assert_eq(rc, 0, "fg_alias_heap_create(%s, %zu, %zu): %s (%s)",
		     fg_backend_name(id), cap, card, fg_strerror(rc),
		     fg_last_error_detail());
	return h;
}

/* A heap whose backend tracks pages (not "none"), or a visible skip. */
static fg_alias_heap *heap_precise(size_t cap, size_t card)
{
	fg_alias_heap *h = heap_new(FG_BACKEND_AUTO, cap, card);
	if (!(fg_tracker_caps(fg_alias_tracker(h)) & FG_CAP_TRACKS)) {
		fg_alias_heap_destroy(h);
		cr_skip_test("no page-level backend on this machine (auto "
			     "chose none)");
	}
	return h;
}

/* ---- reported cards ------------------------------------------------------ */

typedef struct rng_ {
	uintptr_t a, e;
} rng_t;

typedef struct ranges {
	rng_t *v;
	size_t n, cap;
	uint64_t bytes;
	char bad[256]; /* first malformed card, if any */
} ranges;

static void on_card(void *card, size_t len, void *arg)
{
	ranges *r = arg;
	uintptr_t a = (uintptr_t)card;

	/* At most the slots starting in a 4 KiB card and the one slot
	 * reaching into its page, of at most 16 KiB each. */
	if (!r->bad[0] && (!len || a % 16 || len % 16 || len > 36864))
		snprintf(r->bad, sizeof r->bad,
			 "card [%#lx, +%zu) is not a 16-aligned range of the "
			 "size of a card and two slots",
			 (unsigned long)a, len);
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 1024;
		r->v = realloc(r->v, r->cap * sizeof *r->v);
		cr_assert(r->v);
	}
	r->v[r->n++] = (rng_t){a, a + len};
	r->bytes += len;
}

static int cmp_rng(const void *x, const void *y)
{
	const rng_t *a = x, *b = y;

	return a->a < b->a ? -1 : a->a > b->a;
}

/* Collect into r (sorted, merged); the card count must match. */
static int collect(fg_alias_heap *h, ranges *r)
{
	size_t m = 0;
	int n;

	r->n = 0;
	r->bytes = 0;
	r->bad[0] = 0;
	n = fg_alias_collect(h, on_card, r);
	cr_assert_geq(n, 0, "fg_alias_collect: %s (%s)", fg_strerror(n),
		      fg_last_error_detail());
	cr_assert_eq((size_t)n, r->n, "fg_alias_collect returned %d, called "
				      "back %zu times", n, r->n);
	cr_assert(!r->bad[0], "%s", r->bad);
	if (r->n)
		qsort(r->v, r->n, sizeof *r->v, cmp_rng);
	for (size_t i = 0; i < r->n; i++) {
		cr_assert(!m || r->v[i].a >= r->v[m - 1].e,
			  "cards [%#lx, %#lx) and [%#lx, %#lx) overlap",
			  (unsigned long)r->v[m - 1].a,
			  (unsigned long)r->v[m - 1].e, (unsigned long)r->v[i].a,
			  (unsigned long)r->v[i].e);
		if (m && r->v[i].a == r->v[m - 1].e)
			r->v[m - 1].e = r->v[i].e;
		else
			r->v[m++] = r->v[i];
	}
	r->n = m;
	return n;
}

/* Whether [a, e) lies within the reported ranges. */
static bool covered(const ranges *r, uintptr_t a, uintptr_t e)
{
	size_t lo = 0, hi = r->n;

	while (lo < hi) { /* last range starting at or before a */
		size_t mid = (lo + hi) / 2;

		if (r->v[mid].a <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo && r->v[lo - 1].e >= e;
}

/* ---- objects and their models -------------------------------------------- */

typedef struct tobj {
	uint8_t *p;
	size_t size;
	uint8_t *model; /* expected bytes */
	uint8_t *wmask; /* bit per byte written this epoch */
} tobj;

typedef struct world {
	fg_alias_heap *h;
	orc_rng rng;
	tobj *o;
	size_t n, cap;
	uint64_t missed, truth_lines, reported_bytes;
	uint64_t *lines; /* scratch for distinct lines */
	size_t nlines, caplines;
	char first_miss[256];
} world;

static void mark(tobj *t, size_t off, size_t len)
{
	for (size_t i = off; i < off + len; i++)
		t->wmask[i / 8] |= (uint8_t)(1u << (i % 8));
}

/* The test writes [off, off + len) of t with random bytes. */
static void twrite(world *w, tobj *t, size_t off, size_t len)
{
	for (size_t i = 0; i < len; i++)
		t->model[off + i] = (uint8_t)orc_next(&w->rng);
	memcpy(t->p + off, t->model + off, len);
	mark(t, off, len);
}

static tobj *track(world *w, void *p, size_t size)
{
	tobj *t;

	if (w->n == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 1024;
		w->o = realloc(w->o, w->cap * sizeof *w->o);
		cr_assert(w->o);
	}
	t = &w->o[w->n++];
	t->p = p;
	t->size = size;
	t->model = malloc(size ? size : 1);
	t->wmask = calloc(1, size / 8 + 1);
	cr_assert(t->model && t->wmask);
	return t;
}

static void untrack(world *w, size_t i)
{
	free(w->o[i].model);
	free(w->o[i].wmask);
	w->o[i] = w->o[--w->n];
}

static size_t rand_size(world *w)
{
	uint64_t r = orc_below(&w->rng, 100);

	if (r < 70)
		return 8 + orc_below(&w->rng, 249);
	if (r < 90)
		return 257 + orc_below(&w->rng, 1792);
	if (r < 97)
		return 2049 + orc_below(&w->rng, 6144);
	return 8193 + orc_below(&w->rng, 61808); /* a few large ones */
}

static void check_live(world *w, const tobj *t)
{
	size_t us = fg_alias_usable_size(w->h, t->p);

	cr_assert_geq(us, t->size, "usable_size(%p) = %zu < %zu asked",
		      (void *)t->p, us, t->size);
	cr_assert_eq((uintptr_t)t->p % 16, 0, "%p is not 16-aligned",
		     (void *)t->p);
}

static void alloc_one(world *w)
{
	size_t size = rand_size(w), align = 0;
	uint64_t how = orc_below(&w->rng, 10);
	void *p;
	tobj *t;

	if (how == 0) {
		p = fg_alias_calloc(w->h, 1, size);
	} else if (how == 1) {
		align = (size_t)32 << orc_below(&w->rng, 8); /* 32 .. 4096 */
		p = fg_alias_aligned_alloc(w->h, align, size);
	} else {
		p = fg_alias_malloc(w->h, size);
	}
	cr_assert(p, "allocating %zu bytes: %s", size, strerror(errno));
	if (align)
		cr_assert_eq((uintptr_t)p % align, 0, "aligned_alloc(%zu) gave "
						      "%p", align, p);
	t = track(w, p, size);
	check_live(w, t);
	if (how == 0) { /* zeroed by the allocator, through p */
		for (size_t i = 0; i < size; i++)
			cr_assert_eq(t->p[i], 0, "calloc'ed %p not zero at %zu",
				     p, i);
		memset(t->model, 0, size);
		mark(t, 0, size);
	} else {
		twrite(w, t, 0, size);
	}
}

static void realloc_one(world *w, size_t i)
{
	tobj *t = &w->o[i];
	size_t size = rand_size(w), keep = size < t->size ? size : t->size;
	uint8_t *q = fg_alias_realloc(w->h, t->p, size);
	uint8_t *model = malloc(size), *wmask = calloc(1, size / 8 + 1);

	cr_assert(q, "realloc to %zu: %s", size, strerror(errno));
	cr_assert(model && wmask);
	cr_assert(!memcmp(q, t->model, keep),
		  "realloc %p -> %p lost the object's bytes", (void *)t->p,
		  (void *)q);
	memcpy(model, t->model, keep);
	if (q == t->p) {
		memcpy(wmask, t->wmask, keep / 8 + 1);
	} else {
		/* The allocator copied through q: those bytes were written. */
		for (size_t k = 0; k < keep; k++)
			wmask[k / 8] |= (uint8_t)(1u << (k % 8));
	}
	free(t->model);
	free(t->wmask);
	t->p = q;
	t->size = size;
	t->model = model;
	t->wmask = wmask;
	check_live(w, t);
	if (size > keep)
		twrite(w, t, keep, size - keep);
}

static void write_some(world *w, unsigned nwrites)
{
	for (unsigned k = 0; k < nwrites && w->n; k++) {
		tobj *t = &w->o[orc_below(&w->rng, w->n)];
		size_t off = orc_below(&w->rng, t->size);
		size_t max = t->size - off;
		size_t len = orc_below(&w->rng, 4) ? 1 + orc_below(&w->rng, 16)
						  : 1 + orc_below(&w->rng, 512);

		twrite(w, t, off, len < max ? len : max);
	}
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
}

/* Compare a collection with the models and masks, then start a new epoch. */
static void check_epoch(world *w, const ranges *r, const char *what)
{
	w->nlines = 0;
	for (size_t i = 0; i < w->n; i++) {
		tobj *t = &w->o[i];

		cr_assert(!memcmp(t->p, t->model, t->size),
			  "%s: object %p (%zu bytes) changed behind the test's "
			  "back",
			  what, (void *)t->p, t->size);
		for (size_t b = 0; b < t->size; b++) {
			uintptr_t a = (uintptr_t)t->p + b;

			if (!(t->wmask[b / 8] >> (b % 8) & 1))
				continue;
			if (w->nlines == w->caplines) {
				w->caplines = w->caplines ? w->caplines * 2 : 4096;
				w->lines = realloc(w->lines,
						   w->caplines * sizeof *w->lines);
				cr_assert(w->lines);
			}
			if (!w->nlines || w->lines[w->nlines - 1] != a / 64)
				w->lines[w->nlines++] = a / 64;
			if (!covered(r, a, a + 1)) {
				if (!w->missed)
					snprintf(w->first_miss,
						 sizeof w->first_miss,
						 "%s: byte %zu of object %p "
						 "(%zu bytes) written, not "
						 "reported",
						 what, b, (void *)t->p, t->size);
				w->missed++;
			}
		}
		memset(t->wmask, 0, t->size / 8 + 1);
	}
	qsort(w->lines, w->nlines, sizeof *w->lines, cmp_u64);
	for (size_t i = 0; i < w->nlines; i++)
		w->truth_lines += !i || w->lines[i] != w->lines[i - 1];
	w->reported_bytes += r->bytes;
}

/* Every written object is among the objects of the card that covers it. */
struct find {
	const void *want;
	bool found;
	size_t n;
};

static void on_obj(void *obj, size_t size, void *arg)
{
	struct find *f = arg;

	(void)size;
	f->n++;
	if (obj == f->want)
		f->found = true;
}

static void check_objects_query(world *w, const ranges *r, unsigned samples)
{
	for (unsigned k = 0; k < samples && w->n; k++) {
		tobj *t = &w->o[orc_below(&w->rng, w->n)];
		struct find f = {t->p, false, 0};
		uintptr_t a = (uintptr_t)t->p;
		size_t lo = 0, hi = r->n;
		int n;

		while (lo < hi) {
			size_t mid = (lo + hi) / 2;

			if (r->v[mid].a <= a)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (!lo || r->v[lo - 1].e <= a)
			continue; /* not reported: not written */
		n = fg_alias_objects(w->h, (void *)a, 1, on_obj, &f);
		cr_assert_geq(n, 1, "fg_alias_objects(%p): %d (%s)",
			      (void *)a, n, fg_last_error_detail());
		cr_assert(f.found, "fg_alias_objects(%p) does not return the "
				   "object that starts there",
			  (void *)a);
		cr_assert_eq((size_t)n, f.n);
	}
}

static void world_free(world *w)
{
	while (w->n)
		untrack(w, w->n - 1);
	free(w->o);
	free(w->lines);
}

/* One epoch of random allocation, frees, reallocs and writes. */
static void random_epoch(world *w, unsigned ops, size_t max_live)
{
	for (unsigned k = 0; k < ops; k++) {
		uint64_t r = orc_below(&w->rng, 100);

		if (w->n < 16 || (r < 40 && w->n < max_live)) {
			alloc_one(w);
		} else if (r < 75) {
			size_t i = orc_below(&w->rng, w->n);
			int rc = fg_alias_free(w->h, w->o[i].p);

			cr_assert_eq(rc, 0, "free(%p): %s (%s)",
				     (void *)w->o[i].p, fg_strerror(rc),
				     fg_last_error_detail());
			untrack(w, i);
		} else {
			realloc_one(w, orc_below(&w->rng, w->n));
		}
	}
	write_some(w, 200);
}

static void report_run(const char *name, fg_backend_id id, const world *w)
{
	fprintf(stderr,
		"%s %-10s: missed=%" PRIu64 " truth_lines=%" PRIu64
		" reported_bytes=%" PRIu64 " reported/true=%.2f\n",
		name, fg_backend_name(id), w->missed, w->truth_lines,
		w->reported_bytes,
		w->truth_lines ? (double)w->reported_bytes /
					 (double)(w->truth_lines * 64)
			       : 0.0);
}

/* Sparse 8-byte writes to small objects: precision at a card size. */
static double precision(world *w, size_t lo, size_t hi, const char *what)
{
	world p = {.h = w->h, .rng = w->rng};
	ranges r = {0};
	char label[64];

	for (unsigned k = 0; k < 4000; k++) {
		size_t size = lo + orc_below(&p.rng, hi - lo + 1);
		void *q = fg_alias_malloc(p.h, size);

		cr_assert(q);
		twrite(&p, track(&p, q, size), 0, size);
	}
	collect(p.h, &r); /* the set-up's writes */
	check_epoch(&p, &r, what);
	p.truth_lines = p.reported_bytes = 0;
	for (unsigned e = 0; e < 5; e++) {
		for (unsigned k = 0; k < 200; k++) {
			tobj *t = &p.o[orc_below(&p.rng, p.n)];
			size_t off = orc_below(&p.rng, t->size / 8) * 8;

			twrite(&p, t, off, t->size - off < 8 ? t->size - off : 8);
		}
		collect(p.h, &r);
		snprintf(label, sizeof label, "%s epoch %u", what, e);
		check_epoch(&p, &r, label);
	}
	w->missed += p.missed;
	if (p.missed && !w->first_miss[0])
		memcpy(w->first_miss, p.first_miss, sizeof w->first_miss);
	while (p.n) {
		cr_assert_eq(fg_alias_free(p.h, p.o[p.n - 1].p), 0);
		untrack(&p, p.n - 1);
	}
	world_free(&p);
	free(r.v);
	return (double)p.reported_bytes / (double)(p.truth_lines * 64);
}

/* Random allocation and writes at 64-byte cards, then precision. */
static void scn_oracle(fg_backend_id id)
{
	world w = {0};
	ranges r = {0};
	char what[64];
	double p64, p256;

	ORC_REQUIRE_BACKEND(id);
	orc_rng_init(&w.rng, orc_seed("alias oracle"));
	w.h = heap_new(id, 256 * MIB, 64);
	for (unsigned e = 0; e < 30; e++) {
		random_epoch(&w, 300, 3000);
		collect(w.h, &r);
		snprintf(what, sizeof what, "epoch %u", e);
		check_epoch(&w, &r, what);
		check_objects_query(&w, &r, 20);
	}
	report_run("alias oracle", id, &w);
	cr_assert_eq(w.missed, 0, "%" PRIu64 " written bytes not reported; "
				  "first: %s",
		     w.missed, w.first_miss);
	p64 = precision(&w, 16, 64, "precision 16..64");
	p256 = precision(&w, 16, 256, "precision 16..256");
	fprintf(stderr, "alias oracle %-10s: sparse 8-byte writes at 64-byte "
			"cards: reported/true %.2f (objects 16..64 B), %.2f "
			"(16..256 B)\n",
		fg_backend_name(id), p64, p256);
	cr_assert_eq(w.missed, 0, "%s", w.first_miss);
	/* A card reports the slots that start in it, up to card + slot: for
	 * objects up to 64 bytes that is below 2x the truth. */
	if (fg_backend_caps(id) & FG_CAP_TRACKS)
		cr_assert_leq(p64, 2.0, "precision %.2f for 16..64-byte objects",
			      p64);
	world_free(&w);
	free(r.v);
	cr_assert_eq(fg_alias_heap_destroy(w.h), 0);
}
PER_BACKEND(scn_oracle)

/* The card size changes while objects live: 64 -> 256 -> 1024 -> 4096 ->
 * 128; objects keep their span's card size, new spans take the new one
 * (a burst of 48-byte objects after each change needs new spans), and
 * nothing is missed. */
static void scn_card_change(fg_backend_id id)
{
	static const size_t cards[] = {64, 256, 1024, 4096, 128};
	world w = {0};
	ranges r = {0};
	fg_alias_stats st = {.size = sizeof st};
	char what[64];

	ORC_REQUIRE_BACKEND(id);
	orc_rng_init(&w.rng, orc_seed("alias card_change"));
	w.h = heap_new(id, 256 * MIB, 64);
	for (unsigned e = 0; e < 25; e++) {
		if (e % 5 == 0) {
			int rc = fg_alias_set_card_size(w.h, cards[e / 5]);

			cr_assert_eq(rc, 0, "set_card_size(%zu): %s",
				     cards[e / 5], fg_strerror(rc));
			cr_assert_eq(fg_alias_card_size(w.h), cards[e / 5]);
			for (unsigned k = 0; k < 1000; k++) {
				void *p = fg_alias_malloc(w.h, 48);

				cr_assert(p);
				twrite(&w, track(&w, p, 48), 0, 48);
			}
			cr_assert_eq(fg_alias_get_stats(w.h, &st), 0);
			cr_assert_gt(st.carved_pages[__builtin_ctzl(cards[e / 5]) - 6],
				     0, "no span carved at %zu-byte cards",
				     cards[e / 5]);
		}
		random_epoch(&w, 400, 4000);
		collect(w.h, &r);
		snprintf(what, sizeof what, "epoch %u (card %zu)", e,
			 cards[e / 5]);
		check_epoch(&w, &r, what);
	}
	report_run("alias card_change", id, &w);
	cr_assert_eq(w.missed, 0, "%" PRIu64 " written bytes not reported; "
				  "first: %s",
		     w.missed, w.first_miss);
	cr_assert_eq(fg_alias_get_stats(w.h, &st), 0);
	fprintf(stderr, "alias card_change %-10s: carved pages by card "
			"64..4096: %" PRIu64 " %" PRIu64 " %" PRIu64
			" %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
		fg_backend_name(id), st.carved_pages[0], st.carved_pages[1],
		st.carved_pages[2], st.carved_pages[3], st.carved_pages[4],
		st.carved_pages[5], st.carved_pages[6]);
	world_free(&w);
	free(r.v);
	fg_alias_heap_destroy(w.h);
}
PER_BACKEND(scn_card_change)

/* ---- concurrent mutators, collections and card changes -------------------- */

/* A write and the collections that had started before it began (s0) and
 * after it ended (s1): it must be in a report of collection s0-1 .. s1. */
typedef struct wlog {
	uintptr_t a;
	uint32_t len, s0, s1;
} wlog;

typedef struct mut {
	pthread_t th;
	fg_alias_heap *h;
	uint64_t seed;
	_Atomic unsigned *started, *finished;
	wlog *log;
	size_t nlog;
	void **objs;
	size_t *sizes;
	size_t nobj;
	char err[128];
} mut;

#define MT_ITERS 12000
#define MT_THREADS 4

static void *mutate(mut *m);

static void *mutator(void *arg)
{
	mut *m = arg;

	mutate(m);
	atomic_fetch_add(m->finished, 1);
	return NULL;
}

static void *mutate(mut *m)
{
	orc_rng rng;

	orc_rng_init(&rng, m->seed);
	m->log = malloc(MT_ITERS * sizeof *m->log);
	m->objs = malloc(MT_ITERS * sizeof *m->objs);
	m->sizes = malloc(MT_ITERS * sizeof *m->sizes);
	if (!m->log || !m->objs || !m->sizes) {
		snprintf(m->err, sizeof m->err, "out of memory");
		return NULL;
	}
	for (unsigned it = 0; it < MT_ITERS; it++) {
		uint8_t *p;
		size_t off = 0, len;
		unsigned s0, s1;

		if (m->nobj < 8 || orc_below(&rng, 100) < 20) {
			len = orc_below(&rng, 50) ? 8 + orc_below(&rng, 500)
						  : 3000 + orc_below(&rng, 6000);
			p = fg_alias_malloc(m->h, len);
			if (!p) {
				snprintf(m->err, sizeof m->err,
					 "malloc(%zu): %s", len, strerror(errno));
				return NULL;
			}
			m->objs[m->nobj] = p;
			m->sizes[m->nobj++] = len;
		} else {
			size_t i = orc_below(&rng, m->nobj);

			p = m->objs[i];
			off = orc_below(&rng, m->sizes[i]);
			len = 1 + orc_below(&rng, 32);
			if (len > m->sizes[i] - off)
				len = m->sizes[i] - off;
		}
		s0 = atomic_load(m->started);
		memset(p + off, (int)it, len);
		/* The write is visible before s1 is read (no store buffering). */
		atomic_thread_fence(memory_order_seq_cst);
		s1 = atomic_load(m->started);
		m->log[m->nlog++] = (wlog){(uintptr_t)p + off, (uint32_t)len,
					   s0, s1};
		if (it % 64 == 0)
			sched_yield();
	}
	return NULL;
}

/* Is [a, e), which lies in one page, in a report of collections lo..hi? */
static bool in_window(const ranges *rep, unsigned lo, unsigned hi,
		      uintptr_t a, uintptr_t e)
{
	for (unsigned k = lo; k <= hi; k++)
		if (covered(&rep[k], a, e))
			return true;
	return false;
}

static void scn_mt_card_change(fg_backend_id id)
{
	static const size_t cards[] = {64, 256, 1024, 128, 4096, 512};
	_Atomic unsigned started = 0, finished = 0;
	mut m[MT_THREADS] = {0};
	ranges *rep;
	size_t nrep_cap = 1 << 16;
	unsigned ncoll = 0, changes = 0;
	uint64_t seed, missed = 0, writes = 0;
	fg_alias_heap *h;

	ORC_REQUIRE_BACKEND(id);
	seed = orc_seed("alias mt_card_change");
	h = heap_new(id, 256 * MIB, 64);
	rep = calloc(nrep_cap, sizeof *rep);
	cr_assert(rep);
	for (int i = 0; i < MT_THREADS; i++) {
		m[i].h = h;
		m[i].seed = seed + (uint64_t)i * 0x9e3779b97f4a7c15u;
		m[i].started = &started;
		m[i].finished = &finished;
		cr_assert_eq(pthread_create(&m[i].th, NULL, mutator, &m[i]), 0);
	}
	/* Collect (and change the card size every third time) until every
	 * mutator is done, then once more: collection s1 exists for every
	 * write. */
	while (atomic_load(&finished) < MT_THREADS) {
		unsigned j = atomic_fetch_add(&started, 1);

		cr_assert_lt(j, nrep_cap - 1);
		collect(h, &rep[j]);
		ncoll = j + 1;
		if (j % 3 == 2)
			cr_assert_eq(fg_alias_set_card_size(
					     h, cards[++changes % 6]), 0);
		usleep(300);
	}
	for (int i = 0; i < MT_THREADS; i++)
		pthread_join(m[i].th, NULL);
	{
		unsigned j = atomic_fetch_add(&started, 1);

		collect(h, &rep[j]);
		ncoll = j + 1;
	}
	for (int i = 0; i < MT_THREADS; i++) {
		cr_assert(!m[i].err[0], "mutator %d: %s", i, m[i].err);
		for (size_t k = 0; k < m[i].nlog; k++) {
			wlog *l = &m[i].log[k];
			unsigned lo = l->s0 ? l->s0 - 1 : 0;
			uintptr_t a = l->a, e = l->a + l->len;

			writes++;
			/* Page by page: a card never spans pages. */
			while (a < e) {
				uintptr_t pe = (a | 4095) + 1 < e ? (a | 4095) + 1 : e;

				if (!in_window(rep, lo, l->s1, a, pe)) {
					if (!missed)
						cr_log_error(
							"write [%#lx, %#lx) "
							"between collections "
							"%u and %u not reported",
							(unsigned long)a,
							(unsigned long)pe, lo,
							l->s1);
					missed++;
				}
				a = pe;
			}
		}
	}
	fprintf(stderr, "alias mt_card_change %-10s: %u threads, %" PRIu64
			" writes, %u collections, %u card changes, missed=%" PRIu64
			"\n",
		fg_backend_name(id), MT_THREADS, writes, ncoll, changes, missed);
	cr_assert_eq(missed, 0);
	cr_assert_geq(changes, 1, "no card change happened during the run");
	for (int i = 0; i < MT_THREADS; i++) {
		for (size_t k = 0; k < m[i].nobj; k++)
			cr_assert_eq(fg_alias_free(h, m[i].objs[k]), 0);
		free(m[i].log);
		free(m[i].objs);
		free(m[i].sizes);
	}
	for (unsigned k = 0; k < ncoll; k++)
		free(rep[k].v);
	free(rep);
	fg_alias_heap_destroy(h);
}
PER_BACKEND(scn_mt_card_change)

/* ---- threads: no corruption -------------------------------------------- */

#define TH_ITERS 150000
#define TH_SLOTS 512
#define XCHG 64

typedef struct tobj_pat {
	uint8_t *p;
	size_t size;
	uint8_t seed;
} tobj_pat;

static pthread_mutex_t xchg_lock = PTHREAD_MUTEX_INITIALIZER;
static tobj_pat xchg[XCHG];

typedef struct th_arg {
	fg_alias_heap *h;
	uint64_t seed;
	char err[160];
} th_arg;

static void fill(tobj_pat *o)
{
	for (size_t k = 0; k < o->size; k++)
		o->p[k] = (uint8_t)(o->seed + k * 131);
}

static bool intact(const tobj_pat *o)
{
	for (size_t k = 0; k < o->size; k++)
		if (o->p[k] != (uint8_t)(o->seed + k * 131))
			return false;
	return true;
}

static void *th_main(void *arg)
{
	th_arg *a = arg;
	tobj_pat mine[TH_SLOTS] = {0};
	orc_rng rng;

	orc_rng_init(&rng, a->seed);
	for (unsigned it = 0; it < TH_ITERS && !a->err[0]; it++) {
		tobj_pat *o = &mine[orc_below(&rng, TH_SLOTS)];
		uint64_t r = orc_below(&rng, 100);

		if (!o->p) {
			o->size = r < 90 ? 1 + orc_below(&rng, 1024)
					 : 4000 + orc_below(&rng, 20000);
			o->p = fg_alias_malloc(a->h, o->size);
			o->seed = (uint8_t)orc_next(&rng);
			if (!o->p) {
				snprintf(a->err, sizeof a->err, "malloc(%zu): %s",
					 o->size, strerror(errno));
				break;
			}
			fill(o);
			continue;
		}
		if (!intact(o)) {
			snprintf(a->err, sizeof a->err,
				 "object %p (%zu bytes) corrupted",
				 (void *)o->p, o->size);
			break;
		}
		if (r < 10) { /* realloc keeps the prefix */
			size_t size = 1 + orc_below(&rng, 3000), keep;
			uint8_t *q = fg_alias_realloc(a->h, o->p, size);

			if (!q) {
				snprintf(a->err, sizeof a->err, "realloc: %s",
					 strerror(errno));
				break;
			}
			keep = size < o->size ? size : o->size;
			o->p = q;
			o->size = keep;
			if (!intact(o)) {
				snprintf(a->err, sizeof a->err,
					 "realloc lost the prefix of %p",
					 (void *)q);
				break;
			}
			o->size = size;
			fill(o);
		} else if (r < 25) { /* hand it to another thread */
			tobj_pat other;
			size_t k = orc_below(&rng, XCHG);

			pthread_mutex_lock(&xchg_lock);
			other = xchg[k];
			xchg[k] = *o;
			pthread_mutex_unlock(&xchg_lock);
			*o = other;
		} else {
			int rc = fg_alias_free(a->h, o->p);

			if (rc) {
				snprintf(a->err, sizeof a->err, "free(%p): %s",
					 (void *)o->p, fg_strerror(rc));
				break;
			}
			o->p = NULL;
		}
	}
	for (unsigned k = 0; k < TH_SLOTS; k++) {
		if (mine[k].p && !a->err[0] && !intact(&mine[k]))
			snprintf(a->err, sizeof a->err, "object %p corrupted",
				 (void *)mine[k].p);
		if (mine[k].p)
			fg_alias_free(a->h, mine[k].p);
	}
	return NULL;
}

Test(alias, threads, .timeout = TIMEOUT)
{
	fg_alias_heap *h = heap_new(FG_BACKEND_AUTO, 512 * MIB, 64);
	th_arg args[4];
	pthread_t th[4];
	fg_alias_stats st = {.size = sizeof st};
	uint64_t seed = orc_seed("alias threads");

	for (int i = 0; i < 4; i++) {
		args[i] = (th_arg){h, seed + (uint64_t)i, ""};
		cr_assert_eq(pthread_create(&th[i], NULL, th_main, &args[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 4; i++)
		cr_assert(!args[i].err[0], "thread %d: %s", i, args[i].err);
	for (int k = 0; k < XCHG; k++) {
		if (xchg[k].p) {
			cr_assert(intact(&xchg[k]), "exchanged object corrupted");
			cr_assert_eq(fg_alias_free(h, xchg[k].p), 0);
			xchg[k].p = NULL;
		}
	}
	cr_assert_eq(fg_alias_get_stats(h, &st), 0);
	fprintf(stderr, "alias threads: backend %s, %" PRIu64 " heap pages, "
			"%" PRIu64 " live objects after freeing all\n",
		fg_backend_name(st.backend), st.heap_pages, st.live_objects);
	cr_assert_eq(st.live_objects, 0);
	cr_assert_eq(st.allocated_bytes, 0);
	fg_alias_heap_destroy(h);
}

/* ---- bad inputs ---------------------------------------------------------- */

#define EXPECT_RC(call, code)                                                 \
	do {                                                                  \
		int rc_ = (call);                                             \
		cr_assert_eq(rc_, (code), "%s: expected %d (%s), got %d (%s); " \
					  "detail: %s",                       \
			     #call, (code), fg_strerror(code), rc_,           \
			     fg_strerror(rc_), fg_last_error_detail());       \
		cr_assert(*fg_last_error_detail(), "%s left no detail", #call); \
	} while (0)

#define EXPECT_NULL(call, err)                                                \
	do {                                                                  \
		void *p_;                                                     \
		errno = 0;                                                    \
		p_ = (call);                                                  \
		cr_assert_null(p_, "%s succeeded", #call);                    \
		cr_assert_eq(errno, (err), "%s: errno %d (%s), expected %s",  \
			     #call, errno, strerror(errno), strerror(err));   \
	} while (0)

Test(alias, badinput, .timeout = TIMEOUT)
{
	static const size_t bad_cards[] = {0x60, 32, 100, 8192, 3 * 4096};
	fg_alias_options o = FG_ALIAS_OPTIONS_INIT;
	fg_alias_heap *h, *dead;
	size_t cap = 8 * MIB;
	char *p, *q, *foreign = malloc(64);
	int on_stack;

	o.flags = FG_ALIAS_NO_ENV;
	for (size_t k = 0; k < sizeof bad_cards / sizeof *bad_cards; k++) {
		o.card_size = bad_cards[k];
		h = (fg_alias_heap *)&on_stack;
		EXPECT_RC(fg_alias_heap_create(&o, &h), -FG_ECARD);
		cr_assert_eq(h, (fg_alias_heap *)&on_stack, "*out written on failure");
	}
	EXPECT_RC(fg_alias_heap_create(NULL, NULL), -EINVAL);

	h = heap_new(FG_BACKEND_AUTO, cap, 64);
	EXPECT_RC(fg_alias_set_card_size(h, 96), -FG_ECARD);
	EXPECT_RC(fg_alias_set_card_size(h, 8192), -FG_ECARD);
	cr_assert_eq(fg_alias_card_size(h), 64);

	/* Pointers the heap never handed out. */
	EXPECT_RC(fg_alias_free(h, foreign), -EFAULT);
	EXPECT_RC(fg_alias_free(h, &on_stack), -EFAULT);
	EXPECT_NULL(fg_alias_realloc(h, foreign, 10), EINVAL);
	cr_assert_eq(fg_alias_usable_size(h, foreign), 0);
	cr_assert_eq(fg_alias_free(h, NULL), 0);

	/* Interior pointer, another view's address of the same bytes, double
	 * free. */
	p = fg_alias_malloc(h, 40);
	cr_assert(p);
	q = (uintptr_t)p % (64 * cap) < 63 * cap ? p + cap : p - cap;
	EXPECT_RC(fg_alias_free(h, p + 16), -EINVAL);
	EXPECT_RC(fg_alias_free(h, q), -EINVAL);
	cr_assert_eq(fg_alias_usable_size(h, q), 0);
	cr_assert_eq(fg_alias_usable_size(h, p), 48);
	cr_assert_eq(fg_alias_free(h, p), 0);
	EXPECT_RC(fg_alias_free(h, p), -EINVAL);
	cr_assert_eq(fg_alias_usable_size(h, p), 0);

	/* The same for a large object. */
	p = fg_alias_malloc(h, 10000);
	cr_assert(p);
	cr_assert_eq((uintptr_t)p % 4096, 0);
	EXPECT_RC(fg_alias_free(h, p + 4096), -EINVAL);
	EXPECT_RC(fg_alias_free(h, p + 16), -EINVAL);
	cr_assert_eq(fg_alias_free(h, p), 0);
	EXPECT_RC(fg_alias_free(h, p), -EINVAL);

	/* Alignments. */
	EXPECT_NULL(fg_alias_aligned_alloc(h, 24, 10), EINVAL);
	EXPECT_NULL(fg_alias_aligned_alloc(h, 0, 10), EINVAL);
	EXPECT_NULL(fg_alias_aligned_alloc(h, 4 * MIB, 10), EINVAL);

	/* Queries outside the heap. */
	EXPECT_RC(fg_alias_objects(h, foreign, 64, on_obj, NULL), -EFAULT);
	EXPECT_RC(fg_alias_mark_dirty(h, foreign, 64), -EFAULT);
	EXPECT_RC(fg_alias_collect(h, NULL, NULL), -EINVAL);

	/* NULL and destroyed heaps. */
	EXPECT_NULL(fg_alias_malloc(NULL, 10), EINVAL);
	EXPECT_RC(fg_alias_free(NULL, foreign), -FG_EBADTRACKER);
	dead = heap_new(FG_BACKEND_AUTO, 2 * MIB, 64);
	p = fg_alias_malloc(dead, 10);
	cr_assert(p);
	cr_assert_eq(fg_alias_heap_destroy(dead), 0);
	EXPECT_RC(fg_alias_free(dead, p), -FG_EDESTROYED);
	EXPECT_RC(fg_alias_heap_destroy(dead), -FG_EDESTROYED);
	EXPECT_NULL(fg_alias_malloc(dead, 10), EINVAL);

	/* Still working after all that. */
	p = fg_alias_malloc(h, 100);
	cr_assert(p);
	memset(p, 1, 100);
	cr_assert_eq(fg_alias_free(h, p), 0);
	free(foreign);
	fg_alias_heap_destroy(h);
}

Test(alias, capacity_exhausted, .timeout = TIMEOUT)
{
	fg_alias_heap *h = heap_new(FG_BACKEND_AUTO, 2 * MIB, 64);
	void *big[600], *small;
	size_t nbig = 0, nsmall = 0;

	EXPECT_NULL(fg_alias_malloc(h, 4 * MIB), ENOMEM);
	while (nbig < 600 && (big[nbig] = fg_alias_malloc(h, 20000)))
		nbig++;
	cr_assert_lt(nbig, 600, "2 MiB heap holds 600 x 20000 bytes?");
	cr_assert_eq(errno, ENOMEM, "large allocation failed with %s",
		     strerror(errno));
	cr_assert_geq(nbig, 100, "only %zu x 20000 bytes fit in 2 MiB", nbig);
	while ((small = fg_alias_malloc(h, 64)))
		nsmall++;
	cr_assert_eq(errno, ENOMEM);
	fprintf(stderr, "alias capacity_exhausted: 2 MiB heap: %zu large, "
			"then %zu small objects, then ENOMEM\n",
		nbig, nsmall);
	/* Freeing makes room again. */
	cr_assert_eq(fg_alias_free(h, big[0]), 0);
	small = fg_alias_malloc(h, 64);
	cr_assert(small, "malloc after free: %s", strerror(errno));
	fg_alias_heap_destroy(h);
}

/* ---- API ------------------------------------------------------------------ */

Test(alias, api, .timeout = TIMEOUT)
{
	fg_alias_heap *h = heap_new(FG_BACKEND_AUTO, 64 * MIB, 64);
	fg_alias_stats st = {.size = sizeof st};
	char *a, *b, *c;
	size_t released = 0;

	a = fg_alias_malloc(h, 0);
	b = fg_alias_malloc(h, 0);
	cr_assert(a && b && a != b, "malloc(0) gives unique objects");
	cr_assert_eq(fg_alias_free(h, a), 0);
	cr_assert_eq(fg_alias_free(h, b), 0);
	for (size_t al = 32; al <= 2 * MIB; al *= 2) {
		for (size_t size = 1; size < 3 * al && size < 3 * MIB; size = size * 3 + 7) {
			a = fg_alias_aligned_alloc(h, al, size);
			cr_assert(a, "aligned_alloc(%zu, %zu): %s", al, size,
				  strerror(errno));
			cr_assert_eq((uintptr_t)a % al, 0,
				     "aligned_alloc(%zu, %zu) = %p", al, size, a);
			cr_assert_geq(fg_alias_usable_size(h, a), size);
			memset(a, 7, size);
			cr_assert_eq(fg_alias_free(h, a), 0);
		}
	}
	a = fg_alias_malloc(h, 300);
	memset(a, 0xaa, 300);
	fg_alias_free(h, a);
	c = fg_alias_calloc(h, 30, 10); /* likely the same slot, reused */
	for (int i = 0; i < 300; i++)
		cr_assert_eq(c[i], 0);
	EXPECT_NULL(fg_alias_calloc(h, SIZE_MAX / 2, 4), ENOMEM);
	b = fg_alias_realloc(h, c, 5000);
	cr_assert(b);
	for (int i = 0; i < 300; i++)
		cr_assert_eq(b[i], 0);
	memset(b, 3, 5000);
	b = fg_alias_realloc(h, b, 20);
	for (int i = 0; i < 20; i++)
		cr_assert_eq(b[i], 3);
	cr_assert_null(fg_alias_realloc(h, b, 0));
	cr_assert_eq(fg_alias_usable_size(h, b), 0, "realloc(p, 0) frees p");

	cr_assert_eq(fg_alias_get_stats(h, &st), 0);
	cr_assert_eq(st.views, 64);
	cr_assert_eq(st.card_size, 64);
	cr_assert_eq(st.live_objects, 0);
	cr_assert_gt(st.resident_bytes, 0);
	cr_assert_gt(st.regions, 0);
	cr_assert_gt(st.pte_bytes_estimate, 0);
	cr_assert_gt(st.carved_pages[0], 0);
	cr_assert_eq(fg_alias_trim(h, &released), 0);
	{
		fg_alias_stats st2 = {.size = sizeof st2};

		cr_assert_eq(fg_alias_get_stats(h, &st2), 0);
		fprintf(stderr, "alias api: trim released %zu bytes, resident "
				"%" PRIu64 " -> %" PRIu64 "\n",
			released, st.resident_bytes, st2.resident_bytes);
		cr_assert_gt(released, 0);
		cr_assert_lt(st2.resident_bytes, st.resident_bytes);
	}
	fg_alias_heap_destroy(h);
}

/* One write to one object reports exactly that object's card, for every
 * size class, at 64- and 256-byte cards; fg_alias_objects maps it back. */
static void placement(size_t card)
{
	static const size_t sizes[] = {16,  48,   64,   96,   128,
				       256, 1152, 2048, 3264, 9360};
	fg_alias_heap *h = heap_precise(64 * MIB, card);
	ranges r = {0};

	for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
		size_t size = sizes[s], nobj = 2 * 16384 / size;
		char *obj[2048];
		struct find f;
		size_t j;

		for (size_t k = 0; k < nobj; k++) {
			obj[k] = fg_alias_malloc(h, size);
			cr_assert(obj[k]);
			memset(obj[k], 1, size);
		}
		collect(h, &r);
		for (size_t k = 0; k < nobj; k += 3) {
			obj[k][size - 1] = 2;
			collect(h, &r);
			cr_assert_leq(r.n, 2, "card %zu, size %zu: one write, "
					      "%zu ranges",
				      card, size, r.n);
			cr_assert(covered(&r, (uintptr_t)obj[k],
					  (uintptr_t)obj[k] + size),
				  "card %zu, size %zu: object not covered",
				  card, size);
			/* The slots starting in the card, and the slot
			 * reaching into the page written, if any. */
			cr_assert_leq(r.bytes, card + 2 * size - 16,
				      "card %zu, size %zu: %" PRIu64 " bytes "
				      "reported for one object",
				      card, size, r.bytes);
			f = (struct find){obj[k], false, 0};
			for (j = 0; j < r.n && r.v[j].e <= (uintptr_t)obj[k]; j++)
				;
			cr_assert_geq(fg_alias_objects(h, (void *)r.v[j].a,
						       r.v[j].e - r.v[j].a,
						       on_obj, &f), 1);
			cr_assert(f.found);
			cr_assert_leq(f.n, (card + 2 * size - 16) / size);
		}
		for (size_t k = 0; k < nobj; k++)
			cr_assert_eq(fg_alias_free(h, obj[k]), 0);
	}
	free(r.v);
	fg_alias_heap_destroy(h);
}

Test(alias, placement_64, .timeout = TIMEOUT)
{
	placement(64);
}

Test(alias, placement_256, .timeout = TIMEOUT)
{
	placement(256);
}

/* Kernel writes into heap memory after fg_alias_mark_dirty are reported
 * (with mprotect they would fail with EFAULT otherwise). */
static void scn_syscall_write(fg_backend_id id)
{
	fg_alias_heap *h;
	ranges r = {0};
	int fds[2];
	char *p;

	ORC_REQUIRE_BACKEND(id);
	h = heap_new(id, 16 * MIB, 64);
	p = fg_alias_malloc(h, 200);
	cr_assert(p);
	memset(p, 0, 200);
	collect(h, &r);
	cr_assert_eq(pipe(fds), 0);
	cr_assert_eq(write(fds[1], "hello", 5), 5);
	cr_assert_eq(fg_alias_mark_dirty(h, p + 100, 5), 0);
	cr_assert_eq(read(fds[0], p + 100, 5), 5, "read(2) into the heap: %s",
		     strerror(errno));
	collect(h, &r);
	cr_assert(covered(&r, (uintptr_t)p + 100, (uintptr_t)p + 105));
	close(fds[0]);
	close(fds[1]);
	free(r.v);
	fg_alias_heap_destroy(h);
}
PER_BACKEND(scn_syscall_write)

/* Pinned-page I/O into objects (io_uring READ_FIXED into a buffer
 * registered once), announced with fg_alias_io_begin/fg_alias_io_end: the
 * bytes read are reported in the object's own card, every round.
 * FG_TEST_UNANNOUNCED=1 leaves the announcement out (then it fails). */
static void scn_pinned_io(fg_backend_id id)
{
	const char *un = getenv("FG_TEST_UNANNOUNCED");
	bool announce = !(un && *un && strcmp(un, "0"));
	struct orc_uring u;
	fg_alias_heap *h;
	ranges r = {0};
	char why[256] = "", path[] = "/tmp/fgvm-alias-io.XXXXXX";
	struct iovec iov;
	char *p;
	int file, io;

	ORC_REQUIRE_BACKEND(id);
	if (orc_uring_open(&u, why, sizeof why))
		cr_skip_test("%s", why);
	file = mkstemp(path);
	cr_assert(file >= 0);
	unlink(path);
	h = heap_new(id, 16 * MIB, 64);
	p = fg_alias_malloc(h, 3000);
	cr_assert(p);
	memset(p, 0, 3000);
	/* Registration pins the pages for writing (mprotect: announced). */
	iov.iov_base = p;
	iov.iov_len = 3000;
	io = fg_alias_io_begin(h, p, 3000);
	cr_assert_geq(io, 0, "fg_alias_io_begin: %s", fg_last_error_detail());
	cr_assert_eq(orc_uring_register(&u, &iov, 1), 0);
	cr_assert_eq(fg_alias_io_end(h, io), 0);
	collect(h, &r);
	collect(h, &r);
	for (unsigned round = 0; round < 8; round++) {
		size_t off = 64 + round * 300;
		char data[100];

		memset(data, 'a' + (int)round, sizeof data);
		cr_assert_eq(pwrite(file, data, sizeof data, 0),
			     (ssize_t)sizeof data);
		io = announce ? fg_alias_io_begin(h, p + off, sizeof data) : 0;
		cr_assert_geq(io, 0);
		if (round % 2)
			collect(h, &r); /* a collection while in flight */
		cr_assert_eq(orc_uring_read_fixed(&u, file, 0, p + off,
						  sizeof data, 0),
			     (int)sizeof data);
		cr_assert_eq(p[off], 'a' + (int)round);
		if (announce)
			cr_assert_eq(fg_alias_io_end(h, io), 0);
		collect(h, &r);
		cr_assert(covered(&r, (uintptr_t)p + off,
				  (uintptr_t)p + off + sizeof data),
			  "%s round %u: bytes read by io_uring READ_FIXED into "
			  "an object, not reported",
			  orc_bname(id), round);
	}
	cr_assert_eq(fg_alias_io_end(h, 12345), -EINVAL);
	close(u.fd);
	close(file);
	free(r.v);
	fg_alias_heap_destroy(h);
}
PER_BACKEND(scn_pinned_io)
