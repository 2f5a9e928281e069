/* test_diff_sticky.c - DIFF precision with FG_TWIN_STICKY, against the
 * oracle (oracle.h).
 *
 * Sticky twins: at every collection each page reported written (and not
 * left writable as a hot eager page) gets a twin for the next epoch, taken
 * right after the re-protection, validated, and kept while the page stays
 * protected, however many epochs that takes.  The truth is the set of
 * 64-byte lines whose bytes differ from the oracle's epoch-start copy
 * (orc_region.changed_only); every truth line must lie in a reported card
 * (0 misses), and the precision is printed.
 *
 * Scenarios, each once per backend (a backend the machine lacks is a
 * visible skip with the probe's reason; mprotect and none have no way to
 * validate a twin and must read every written page whole):
 *   sparse, sparse_cmix
 *       the heap is written once (an allocator filling it), then random
 *       sparse 8-byte stores to random pages, with restores of a line to
 *       its epoch-start bytes and stores of the value already there, now
 *       and then a store spanning pages.  On the uffd backends every page
 *       has a twin after the first epoch: no page may read whole and the
 *       64-byte precision must be within 1.25x of the truth.  cmix changes
 *       the card size before every collection.
 *   dormant
 *       pages written, left alone for 0 to 8 epochs (both parities of the
 *       twin's slot), then written again, often restoring a line to what
 *       it held before the page's previous write: a twin older than the
 *       page's last report would hide exactly that.
 *   threads
 *       writer threads store unique values to sparse pages while the main
 *       thread collects, the card size changing between rounds: sticky
 *       twins are copied while writers write and must be validated.  The
 *       rules of test_diff.c's threads test.
 *   hooks
 *       pages twinned, left alone one or two epochs, written (restoring
 *       lines to older bytes), then collected while racer threads write
 *       another line of each page: on uffd-sync the racers' first-write
 *       hooks of the new epoch run against the slots the collector is
 *       comparing with.
 *   fork
 *       a child writing, collecting and destroying the inherited tracker
 *       while sticky twins are in place; the parent stays exact.
 *   cap_lru
 *       a cap of 32 pages for 256: a working set of 8 pages written every
 *       other epoch keeps its twins (the oldest twins are evicted first),
 *       random cold pages read whole; the cap always holds.
 *   budget
 *       FG_TWIN_ADAPTIVE under twin_cap_pct 10 (the Boehm adapter's
 *       default): a sparse working set keeps its twins (refreshed in
 *       place) while dense pages come and go; exact after a warm-up.
 *   cap_change
 *       fg_set_twin_cap to under a page and back (FG_CARD=auto's
 *       switch): twins dropped, pages whole, twins again; exact.
 *   cap_decline
 *       fg_set_twin_full: declining, a sample twinned before the cap
 *       filled keeps its twins while newer pages read whole; evicting,
 *       it loses them to the newer pages.
 *   huge
 *       twins on transparent huge pages under a full cap (8 MiB tracked):
 *       the oracle through a fill, sparse and dense epochs, the cap down
 *       to 10% and back; where THP's mode is madvise, the first
 *       collection adds huge pages, and none with FG_TWIN_HUGE=0 (on
 *       backends whose twins are taken at collection: a hook's go to
 *       either slot, and slot 1 stays on 4 KiB pages).
 *   expect
 *       fg_expect_writes: announced pages, written or not, by stores or
 *       by the kernel unannounced, read as written and are compared with
 *       their twins (no page whole after the first epoch).
 *   twinless
 *       fg_set_twinless: pages made twinless compare once more with the
 *       twin they hold, then read whole whenever written, on every
 *       backend (neither hook nor sticky twins taken); made twinful
 *       again they are twinned at their next report and exact after
 *       it.  Then random runs switched either way among sparse stores,
 *       restores and kernel writes: 0 misses throughout.
 *   options (once)
 *       FG_TWINS=sticky|hot|adaptive, FG_OPT_NO_ENV, bad values, an
 *       options struct from before twin_policy existed, twin_cap_pct.
 *   sparse, sparse_cmix, dormant, fork_scenario, threads, hooks, expect,
 *   twinless _digest
 *       the same with FG_TWIN_DIGEST (twins are line digests): the same
 *       checks, exactness included; skipped where no twins are taken.
 *   sparse, dormant, fork_scenario, threads, hooks _adaptive
 *       the same with FG_TWIN_ADAPTIVE (twins declined and aged out):
 *       soundness against the oracle, and twins still used; on the uffd
 *       backends only (the others take no twins under either policy).
 * The cost, HOT against STICKY on the same stores, is measured by
 * tests/sticky_bench.c.
 *
 * Every random test prints its seed; FG_SEED=N replays it.
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
#include <sys/mman.h>
#include <unistd.h>

#include "fg.h"
#include "oracle.h"

#define TIMEOUT 120

#define PER_BACKEND(scn) ORC_PER_BACKEND(sticky, scn, TIMEOUT)

/* The policy under test: FG_TWIN_STICKY, or FG_TWIN_ADAPTIVE in the
 * *_adaptive tests (the same scenarios; sticky twins are declined at a
 * page's first report and after dense writes, so pages may read whole:
 * only soundness, and that twins are still used, are checked). */
static unsigned policy = FG_TWIN_STICKY;
#define ADAPTIVE(scn)                                                        \
	static void scn##_adaptive(fg_backend_id id)                         \
	{                                                                    \
		if (!orc_twinning(id))                                       \
			cr_skip_test("no twins on %s: the policy changes "    \
				     "nothing (" #scn " covers it)",          \
				     orc_bname(id));                          \
		policy = FG_TWIN_ADAPTIVE;                                   \
		scn(id);                                                     \
	}                                                                    \
	PER_BACKEND(scn##_adaptive)

/* ------------------------------------------------------------------ */
/* The single-threaded schedules. */

typedef struct ssched {
	orc_sched b; /* first */
	size_t tracked, cap;
	/* After the first epoch: */
	uint64_t truth_lines, reported_lines, pages_truth, epochs;
	uint64_t whole0; /* stats.pages_whole after the first epoch */
	uint64_t writes;
} ssched;

static ssched *ssched_start(fg_backend_id id, size_t card, size_t cap,
			    orc_region r[3], size_t scale, const char *test,
			    fg_tracker **t)
{
	ssched *s;

	ORC_REQUIRE_BACKEND(id);
	s = calloc(1, sizeof *s);
	cr_assert_not_null(s);
	s->tracked = 4 * scale;
	s->cap = cap ? cap : s->tracked / 2;
	*t = orc_diff_tracker(id, card, cap, policy);
	orc_sched_start(&s->b, *t, r, scale, true, test);
	return s;
}

static void ssched_end(ssched *s)
{
	orc_sched_end(&s->b);
	free(s);
}

/* 8 differing bytes at p (8-aligned, inside one region). */
static void store8(ssched *s, uint8_t *p)
{
	uint64_t v;

	orc_differ(&s->b, p, 8);
	memcpy(&v, s->b.src, 8);
	*(volatile uint64_t *)p = v;
	orc_log(s->b.r, s->b.n, p, 8);
	s->writes++;
}

static uint8_t *random_slot(ssched *s)
{
	return (uint8_t *)((uintptr_t)orc_anywhere(&s->b) & ~(uintptr_t)7);
}

/* The line of p back to its epoch-start bytes. */
static void restore_line(ssched *s, uint8_t *p)
{
	orc_region *g = orc_find(s->b.r, s->b.n, p);
	uint8_t *l = (uint8_t *)((uintptr_t)p / ORC_LINE * ORC_LINE);

	memcpy(l, g->snap + (l - g->base), ORC_LINE);
	orc_log(s->b.r, s->b.n, l, ORC_LINE);
	s->writes++;
}

/* Collect and check against the oracle (no miss, twin cap held), count
 * the precision unless this is the first epoch, start the next epoch. */
static void ssched_check(ssched *s, orc_method m, size_t want)
{
	orc_result res;
	fg_stats st = orc_stats(s->b.t);

	cr_assert_leq(st.twin_bytes, s->cap,
		      "%s: %" PRIu64 " bytes of twins before the collection, "
		      "the cap is %zu",
		      orc_where(&s->b), st.twin_bytes, s->cap);
	orc_check(s->b.t, s->b.r, s->b.n, m, want, orc_where(&s->b), &res);
	st = orc_stats(s->b.t);
	cr_assert_leq(st.twin_bytes, s->cap,
		      "%s: %" PRIu64 " bytes of twins after the collection, "
		      "the cap is %zu",
		      orc_where(&s->b), st.twin_bytes, s->cap);
	if (s->b.epoch == 0) {
		s->whole0 = st.pages_whole;
	} else {
		s->truth_lines += res.truth_lines;
		s->reported_lines += res.reported_lines;
		s->pages_truth += res.pages_truth;
		s->epochs++;
	}
	s->b.epoch++;
	orc_snapshot(s->b.r, s->b.n);
}

/* The first epoch: one store in every page, as an allocator filling the
 * heap would; every page has a sticky twin after its collection. */
static void fill_epoch(ssched *s)
{
	for (size_t i = 0; i < s->b.n; i++)
		for (size_t off = 0; off < s->b.r[i].len; off += orc_page())
			store8(s, s->b.r[i].base + off +
					  orc_below(&s->b.g, orc_page() / 8) * 8);
	ssched_check(s, ORC_ITER, 0);
}

/* After the first epoch, every page of a twinning backend has a twin at
 * every collection (no other thread, twins for all pages under the cap):
 * none may read whole, and lines are exact.  Others: all whole. */
static void check_exact(ssched *s, const char *what)
{
	fg_stats st = orc_stats(s->b.t);
	double lr = orc_ratio(s->reported_lines, s->truth_lines);

	fprintf(stderr,
		"%s %-10s: seed=%" PRIu64 " %s: %" PRIu64 " stores, %" PRIu64
		" epochs after the first: changed-line bytes=%" PRIu64
		" reported bytes=%" PRIu64 " ratio=%.3f (page level "
		"would be %.2f) missed=0 | pages diffed=%" PRIu64
		" whole=%" PRIu64 " (%" PRIu64 " after the first epoch) twins "
		"hook=%" PRIu64 " eager=%" PRIu64 " invalid=%" PRIu64
		" twin_bytes=%" PRIu64 "\n",
		s->b.test, orc_bname(s->b.id), s->b.seed, what, s->writes,
		s->epochs, s->truth_lines * ORC_LINE,
		s->reported_lines * ORC_LINE, lr,
		orc_ratio(s->pages_truth * orc_page(),
			  s->truth_lines * ORC_LINE),
		st.pages_diffed, st.pages_whole, st.pages_whole - s->whole0,
		st.twins_hook, st.twins_eager, st.twins_invalid, st.twin_bytes);
	cr_assert_gt(s->truth_lines, 0, "%s: no line ever changed",
		     orc_where(&s->b));
	if (orc_twinning(s->b.id) && policy == FG_TWIN_ADAPTIVE) {
		cr_assert_gt(st.pages_diffed, 0,
			     "%s %s seed=%" PRIu64 ": adaptive twins never "
			     "compared a page of sparse writes",
			     s->b.test, orc_bname(s->b.id), s->b.seed);
	} else if (orc_twinning(s->b.id)) {
		cr_assert_eq(st.pages_whole, s->whole0,
			     "%s %s seed=%" PRIu64 ": %" PRIu64 " written pages "
			     "read whole after the first epoch, although every "
			     "page was twinned then and kept its twin",
			     s->b.test, orc_bname(s->b.id), s->b.seed,
			     st.pages_whole - s->whole0);
		cr_assert_leq(lr, 1.25,
			      "%s %s seed=%" PRIu64 ": reported %.2fx the "
			      "changed lines at 64-byte cards",
			      s->b.test, orc_bname(s->b.id), s->b.seed, lr);
	} else {
		cr_assert(!st.pages_diffed && !st.twin_bytes,
			  "%s %s: a backend that cannot validate twins "
			  "diffed %" PRIu64 " pages, holds %" PRIu64
			  " twin bytes",
			  s->b.test, orc_bname(s->b.id), st.pages_diffed,
			  st.twin_bytes);
	}
}

/* One sparse epoch: n stores, of which some restore a line or store the
 * value already there, and rarely one spans two pages. */
static void sparse_epoch(ssched *s, unsigned n)
{
	uint8_t *mine[64];
	unsigned k = 0;

	for (unsigned i = 0; i < n; i++) {
		unsigned x = (unsigned)orc_below(&s->b.g, 100);
		uint8_t *p = random_slot(s);

		if (x < 8 && k) {
			restore_line(s, mine[orc_below(&s->b.g, k)]);
		} else if (x < 12) {
			*(volatile uint64_t *)p = *(volatile uint64_t *)p;
			orc_log(s->b.r, s->b.n, p, 8);
		} else if (x < 14) {
			/* Across a page boundary, where the region allows. */
			orc_region *g = orc_find(s->b.r, s->b.n, p);
			uint8_t *q = orc_page_of(p) + orc_page() - 32;

			if (q + 64 <= g->base + g->len) {
				orc_differ(&s->b, q, 64);
				memcpy(q, s->b.src, 64);
				orc_log(s->b.r, s->b.n, q, 64);
			}
		} else {
			store8(s, p);
			if (k < 64)
				mine[k++] = p;
		}
	}
}

static void sparse_run(fg_backend_id id, bool cmix, const char *test)
{
	static const size_t cards[] = {64, 128, 256, 512, 1024, 2048, 4096, 8192};
	orc_region r[3];
	fg_tracker *t;
	/* Twins for every page: the cap is what is tracked. */
	ssched *s = ssched_start(id, 64, 1 * MiB, r, 256 * KiB, test, &t);

	fill_epoch(s);
	while (s->b.epoch < 120) {
		size_t want = 0;

		sparse_epoch(s, (unsigned)orc_below(&s->b.g, 61));
		if (cmix) {
			want = cards[orc_below(&s->b.g, 8)];
			cr_assert_eq(fg_set_card_size(t, want), 0);
		}
		ssched_check(s, !cmix && s->b.epoch % 2 ? ORC_BITMAP : ORC_ITER,
			     want);
	}
	if (cmix) {
		/* Precision is only comparable at 64-byte cards. */
		s->truth_lines = s->reported_lines = 0;
		cr_assert_eq(fg_set_card_size(t, 64), 0);
		for (int e = 0; e < 10; e++) {
			sparse_epoch(s, 1 + (unsigned)orc_below(&s->b.g, 60));
			ssched_check(s, ORC_ITER, 64);
		}
	}
	check_exact(s, cmix ? "cards changing" : "64-byte cards");
	ssched_end(s);
}

static void sparse(fg_backend_id id)
{
	sparse_run(id, false, "sparse");
}

static void sparse_cmix(fg_backend_id id)
{
	sparse_run(id, true, "sparse_cmix");
}

PER_BACKEND(sparse)
ORC_DIGEST(PER_BACKEND, sparse)
PER_BACKEND(sparse_cmix)
ORC_DIGEST(PER_BACKEND, sparse_cmix)
ADAPTIVE(sparse)

/* ------------------------------------------------------------------ */
/* Dormant pages. */

#define DPAGES 48

typedef struct dpage {
	uint8_t *page;
	unsigned due;	   /* the epoch of its next write */
	uint8_t *lines[4]; /* lines its last write changed */
	uint8_t old[4][ORC_LINE]; /* ... and their bytes before it */
	unsigned nlines;
} dpage;

static void dormant(fg_backend_id id)
{
	orc_region r[3];
	fg_tracker *t;
	ssched *s = ssched_start(id, 64, 1 * MiB, r, 256 * KiB, "dormant", &t);
	dpage *d = calloc(DPAGES, sizeof *d);
	uint64_t older = 0;

	cr_assert_not_null(d);
	fill_epoch(s);
	for (int i = 0; i < DPAGES; i++) {
		d[i].page = orc_page_of(orc_anywhere(&s->b));
		d[i].due = s->b.epoch + (unsigned)orc_below(&s->b.g, 4);
	}
	while (s->b.epoch < 200) {
		for (int i = 0; i < DPAGES; i++) {
			dpage *x = &d[i];
			unsigned nl;

			if (x->due != s->b.epoch)
				continue;
			/* Back to the bytes before the previous write: what a
			 * twin from before that write would call unchanged. */
			for (unsigned j = 0; j < x->nlines; j++) {
				if (orc_below(&s->b.g, 2) ||
				    !memcmp(x->lines[j], x->old[j], ORC_LINE))
					continue;
				memcpy(x->lines[j], x->old[j], ORC_LINE);
				orc_log(s->b.r, s->b.n, x->lines[j], ORC_LINE);
				older++;
			}
			nl = 1 + (unsigned)orc_below(&s->b.g, 4);
			x->nlines = 0;
			for (unsigned j = 0; j < nl; j++) {
				uint8_t *l = x->page + orc_below(&s->b.g,
								 orc_page() /
									 ORC_LINE) *
							       ORC_LINE;

				memcpy(x->old[x->nlines], l, ORC_LINE);
				x->lines[x->nlines++] = l;
				store8(s, l + orc_below(&s->b.g, 8) * 8);
			}
			/* 1: written in consecutive epochs (an eager twin
			 * next); larger gaps put the twin in either slot. */
			x->due = s->b.epoch + 1 + (unsigned)orc_below(&s->b.g, 9);
			if (orc_below(&s->b.g, 8) == 0)
				x->page = orc_page_of(orc_anywhere(&s->b));
		}
		ssched_check(s, s->b.epoch % 3 ? ORC_ITER : ORC_BITMAP, 0);
	}
	fprintf(stderr, "dormant %-10s: %" PRIu64 " lines restored to their "
			"bytes from before the page's previous write\n",
		orc_bname(id), older);
	cr_assert_gt(older, 0);
	check_exact(s, "dormant pages");
	free(d);
	ssched_end(s);
}

PER_BACKEND(dormant)
ORC_DIGEST(PER_BACKEND, dormant)
ADAPTIVE(dormant)

/* ------------------------------------------------------------------ */
/* fork with sticky twins in place: the child writes its private copy of
 * the anon region, collects and destroys its inherited tracker; the
 * parent's oracle must stay exact and its pages keep their twins. */

static void fork_scenario(fg_backend_id id)
{
	orc_region r[3];
	fg_tracker *t;
	ssched *s = ssched_start(id, 64, 1 * MiB, r, 256 * KiB, "fork", &t);

	fill_epoch(s);
	for (int iter = 0; iter < 4; iter++) {
		pid_t pid;
		int go;

		sparse_epoch(s, 40);
		pid = orc_fork_child(t, &r[0], orc_next(&s->b.g), &go);
		sparse_epoch(s, 40);
		orc_release_child(go);
		sparse_epoch(s, 40);
		snprintf(s->b.ctx, sizeof s->b.ctx,
			 "fork %s seed=%" PRIu64 " iteration %d", orc_bname(id),
			 s->b.seed, iter);
		orc_wait_child(pid, s->b.ctx);
		ssched_check(s, iter % 2 ? ORC_BITMAP : ORC_ITER, 0);
		for (int e = 0; e < 3; e++) {
			sparse_epoch(s, 1 + (unsigned)orc_below(&s->b.g, 40));
			ssched_check(s, e % 2 ? ORC_ITER : ORC_BITMAP, 0);
		}
	}
	check_exact(s, "fork");
	ssched_end(s);
}

PER_BACKEND(fork_scenario)
ORC_DIGEST(PER_BACKEND, fork_scenario)
ADAPTIVE(fork_scenario)

/* ------------------------------------------------------------------ */
/* Twin cap: 32 pages of twins for 256 pages. */

#define WS 8

static void cap_lru(fg_backend_id id)
{
	const size_t cap = 32 * orc_page();
	orc_region r[3];
	fg_tracker *t;
	ssched *s = ssched_start(id, 64, cap, r, 64 * KiB, "cap_lru", &t);
	uint8_t *ws[WS];
	uint64_t ws_truth = 0, ws_rep = 0, cold_truth = 0, cold_rep = 0;
	fg_stats st;

	for (int i = 0; i < WS; i++) {
		/* Distinct pages. */
		do {
			ws[i] = orc_page_of(orc_anywhere(&s->b));
			for (int j = 0; j < i; j++)
				if (ws[j] == ws[i])
					ws[i] = NULL;
		} while (!ws[i]);
	}
	fill_epoch(s); /* over the cap: most pages get no twin */
	while (s->b.epoch < 120) {
		/* Half the working set, alternating: every page every other
		 * epoch, so none is hot (eager) and all rely on sticky
		 * twins, which must survive one epoch of 12 new twins. */
		for (int i = s->b.epoch % 2; i < WS; i += 2)
			store8(s, ws[i] + orc_below(&s->b.g, orc_page() / 8) * 8);
		for (int k = 0; k < 8; k++) {
			uint8_t *p = random_slot(s);
			bool in_ws = false;

			for (int i = 0; i < WS; i++)
				in_ws |= orc_page_of(p) == ws[i];
			if (!in_ws)
				store8(s, p);
		}
		ssched_check(s, s->b.epoch % 2 ? ORC_BITMAP : ORC_ITER, 0);
		if (s->b.epoch < 6)
			continue;
		/* Per page, the previous epoch's lines: changed and reported
		 * (r[].changed and .reported still hold that collection). */
		for (size_t i = 0; i < 3; i++) {
			orc_region *g = &r[i];
			size_t lpp = orc_page() / ORC_LINE;

			for (size_t l = 0; l < g->nlines; l++) {
				bool c = (g->changed[l / 64] >> (l % 64)) & 1;
				bool rep = (g->reported[l / 64] >> (l % 64)) & 1;
				uint8_t *pg = g->base + l / lpp * orc_page();
				bool in_ws = false;

				for (int w = 0; w < WS; w++)
					in_ws |= pg == ws[w];
				if (in_ws) {
					ws_truth += c;
					ws_rep += rep;
				} else {
					cold_truth += c;
					cold_rep += rep;
				}
			}
		}
	}
	st = orc_stats(t);
	fprintf(stderr,
		"cap_lru %-10s: seed=%" PRIu64 " cap %zu pages: working set "
		"(%d pages, every other epoch) changed-line bytes=%" PRIu64
		" reported=%" PRIu64 " (%.2fx); cold pages changed=%" PRIu64
		" reported=%" PRIu64 " (%.2fx) | diffed=%" PRIu64
		" whole=%" PRIu64 " twin_bytes=%" PRIu64 "\n",
		orc_bname(id), s->b.seed, cap / orc_page(), WS,
		ws_truth * ORC_LINE, ws_rep * ORC_LINE,
		orc_ratio(ws_rep, ws_truth), cold_truth * ORC_LINE,
		cold_rep * ORC_LINE, orc_ratio(cold_rep, cold_truth),
		st.pages_diffed, st.pages_whole, st.twin_bytes);
	cr_assert_gt(ws_truth, 0);
	if (orc_twinning(id)) {
		/* The working set's twins are the youngest: never evicted. */
		cr_assert_eq(ws_rep, ws_truth,
			     "cap_lru %s seed=%" PRIu64 ": the working set "
			     "lost its twins to the cap (reported %" PRIu64
			     " lines for %" PRIu64 " changed): the cap must "
			     "evict the twins of the pages unwritten longest",
			     orc_bname(id), s->b.seed, ws_rep, ws_truth);
		cr_assert_gt(st.twin_bytes, cap / 2,
			     "cap_lru %s: only %" PRIu64 " twin bytes held "
			     "under a cap of %zu that random writes fill",
			     orc_bname(id), st.twin_bytes, cap);
	}
	ssched_end(s);
}

PER_BACKEND(cap_lru)

/* ------------------------------------------------------------------ */
/* FG_TWIN_ADAPTIVE under a budget of 10% of the tracked bytes
 * (twin_cap_pct), the adapter's default: 25 pages of twins for 256.  A
 * working set of 12 pages is written sparsely at every epoch, and 16
 * random pages a epoch densely (every line), as a collector refilling
 * free slots does.  Dense pages must not crowd the working set out: once
 * compared and found sparse, its twins are kept (refreshed in place at
 * every comparison, not copied again), and after a warm-up its lines are
 * exact.  The budget always holds and no changed line is ever missed. */

#define BWS 12
#define BDENSE 16

static void budget(fg_backend_id id)
{
	fg_options o = orc_options(id, 64);
	orc_region r[3];
	fg_tracker *t;
	ssched *s;
	uint8_t *ws[BWS];
	uint64_t ws_truth = 0, ws_rep = 0;
	fg_stats st;

	ORC_REQUIRE_BACKEND(id);
	if (!orc_twinning(id))
		cr_skip_test("no twins on %s: nothing to budget (sparse "
			     "covers it)", orc_bname(id));
	o.precision = FG_PRECISION_DIFF;
	o.twin_policy = FG_TWIN_ADAPTIVE;
	o.twin_cap_pct = 10;
	t = orc_tracker(&o);
	s = calloc(1, sizeof *s);
	cr_assert_not_null(s);
	s->tracked = 4 * 256 * KiB;
	s->cap = s->tracked / 100 * 10 / orc_page() * orc_page();
	orc_sched_start(&s->b, t, r, 256 * KiB, true, "budget");
	st = orc_stats(t);
	cr_assert_eq(st.twin_cap_bytes, s->cap,
		     "budget %s: twin_cap_pct 10 of %zu tracked bytes: a cap "
		     "of %" PRIu64 " bytes, not %zu",
		     orc_bname(id), s->tracked, st.twin_cap_bytes, s->cap);
	for (int i = 0; i < BWS; i++) {
		do {
			ws[i] = orc_page_of(orc_anywhere(&s->b));
			for (int j = 0; j < i; j++)
				if (ws[j] == ws[i])
					ws[i] = NULL;
		} while (!ws[i]);
	}
	fill_epoch(s);
	while (s->b.epoch < 120) {
		for (int i = 0; i < BWS; i++)
			for (int k = 0; k < 1 + (int)orc_below(&s->b.g, 3); k++)
				store8(s, ws[i] + orc_below(&s->b.g,
							    orc_page() / 8) * 8);
		for (int k = 0; k < BDENSE; k++) {
			uint8_t *pg = orc_page_of(orc_anywhere(&s->b));
			bool in_ws = false;

			for (int i = 0; i < BWS; i++)
				in_ws |= pg == ws[i];
			for (size_t l = 0; !in_ws && l < orc_page(); l += ORC_LINE)
				store8(s, pg + l + orc_below(&s->b.g, 8) * 8);
		}
		ssched_check(s, s->b.epoch % 2 ? ORC_BITMAP : ORC_ITER, 0);
		if (s->b.epoch < 40)
			continue;
		for (size_t i = 0; i < 3; i++) {
			orc_region *g = &r[i];
			size_t lpp = orc_page() / ORC_LINE;

			for (size_t l = 0; l < g->nlines; l++) {
				uint8_t *pg = g->base + l / lpp * orc_page();
				bool in_ws = false;

				for (int w = 0; w < BWS; w++)
					in_ws |= pg == ws[w];
				if (!in_ws)
					continue;
				ws_truth += (g->changed[l / 64] >> (l % 64)) & 1;
				ws_rep += (g->reported[l / 64] >> (l % 64)) & 1;
			}
		}
	}
	st = orc_stats(t);
	fprintf(stderr,
		"budget %-10s: seed=%" PRIu64 " cap %zu pages of %zu: working "
		"set (%d pages, sparse, every epoch) changed-line bytes=%" PRIu64
		" reported=%" PRIu64 " (%.2fx) | diffed=%" PRIu64 " whole=%" PRIu64
		" copied=%" PRIu64 " refreshed=%" PRIu64 " declined=%" PRIu64
		" evicted=%" PRIu64 " aged=%" PRIu64 " twin_bytes=%" PRIu64 "\n",
		orc_bname(id), s->b.seed, s->cap / orc_page(),
		s->tracked / orc_page(), BWS, ws_truth * ORC_LINE,
		ws_rep * ORC_LINE, orc_ratio(ws_rep, ws_truth), st.pages_diffed,
		st.pages_whole, st.twins_sticky, st.twins_refreshed,
		st.twins_declined, st.twins_evicted, st.twins_aged,
		st.twin_bytes);
	cr_assert_gt(ws_truth, 0);
	cr_assert_eq(ws_rep, ws_truth,
		     "budget %s seed=%" PRIu64 ": the working set read %" PRIu64
		     " lines for %" PRIu64 " changed after the warm-up: dense "
		     "pages crowded its twins out",
		     orc_bname(id), s->b.seed, ws_rep, ws_truth);
	cr_assert_gt(st.twins_refreshed, 0,
		     "budget %s: no twin was refreshed in place",
		     orc_bname(id));
	cr_assert_gt(st.twins_declined, 0,
		     "budget %s: adaptive declined no twin", orc_bname(id));
	ssched_end(s);
}

PER_BACKEND(budget)

/* ------------------------------------------------------------------ */
/* fg_set_twin_cap while twins are in place (what FG_CARD=auto does):
 * a cap under a page drops the twins (at once, or at their next
 * comparison) and written pages read whole; the cap back, twins return.
 * The oracle holds throughout. */

static void cap_change(fg_backend_id id)
{
	orc_region r[3];
	fg_tracker *t;
	ssched *s = ssched_start(id, 64, 1 * MiB, r, 256 * KiB, "cap_change",
				 &t);
	fg_stats st;
	uint64_t diffed_off = 0;

	fill_epoch(s);
	while (s->b.epoch < 90) {
		if (s->b.epoch == 30) {
			cr_assert_eq(fg_set_twin_cap(t, 1, 0), 0,
				     "fg_set_twin_cap(1 byte): %s",
				     fg_last_error_detail());
			st = orc_stats(t);
			cr_assert_eq(st.twin_cap_bytes, 0);
		}
		if (s->b.epoch == 32) {
			/* A collection later every twin is gone. */
			s->cap = 0;
			diffed_off = orc_stats(t).pages_diffed;
		}
		if (s->b.epoch == 60) {
			cr_assert_eq(orc_stats(t).pages_diffed, diffed_off,
				     "cap_change %s: pages compared without "
				     "twins",
				     orc_bname(id));
			cr_assert_eq(fg_set_twin_cap(t, 0, 100), 0);
			s->cap = s->tracked;
		}
		sparse_epoch(s, 1 + (unsigned)orc_below(&s->b.g, 60));
		ssched_check(s, s->b.epoch % 2 ? ORC_BITMAP : ORC_ITER, 0);
	}
	st = orc_stats(t);
	fprintf(stderr,
		"cap_change %-10s: seed=%" PRIu64 " pages diffed %" PRIu64
		" (%" PRIu64 " before the cap went to 0), evicted %" PRIu64
		", twin_bytes %" PRIu64 "\n",
		orc_bname(id), s->b.seed, st.pages_diffed, diffed_off,
		st.twins_evicted, st.twin_bytes);
	if (orc_twinning(id)) {
		cr_assert_gt(diffed_off, 0);
		cr_assert_gt(st.pages_diffed, diffed_off,
			     "cap_change %s: no page compared after the cap "
			     "came back",
			     orc_bname(id));
	}
	/* Bad calls. */
	cr_assert_eq(fg_set_twin_cap(t, 0, 101), -EINVAL);
	ssched_end(s);
}

PER_BACKEND(cap_change)

/* Twins on huge pages (FG_TWIN_HUGE, diff.c's slot_addr): under a cap
 * that holds every tracked page, regions of 2 MiB and more keep their
 * twins on transparent huge pages.  The oracle holds through a fill,
 * sparse epochs, the cap taken down to 10% (twins dropped, their memory
 * trimmed, huge pages split) and put back.  Where the kernel's THP mode
 * is madvise, the fill's collection must add huge pages (the twins of
 * 8 MiB) with FG_TWIN_HUGE at its default, and none with
 * FG_TWIN_HUGE=0; in another mode that check is skipped, said so. */

/* The process's AnonHugePages, in KiB (-1: unknown). */
static long anon_huge_kib(void)
{
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	char line[256];
	long kib = -1;

	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "AnonHugePages: %ld kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib;
}

/* The bracketed word of the THP "enabled" setting, or "unknown". */
static const char *thp_mode(char *buf, size_t len)
{
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	char line[128] = "";
	char *a, *b;

	if (f) {
		if (!fgets(line, sizeof line, f))
			line[0] = 0;
		fclose(f);
	}
	a = strchr(line, '[');
	b = a ? strchr(a, ']') : NULL;
	if (!a || !b || (size_t)(b - a) > len)
		return "unknown";
	memcpy(buf, a + 1, (size_t)(b - a - 1));
	buf[b - a - 1] = 0;
	return buf;
}

/* Huge pages the first collection of a full-cap sticky tracker over
 * 8 MiB (every page written) adds; the tracker is built from the
 * environment (FG_TWIN_HUGE), with the oracle's backend and card. */
static long huge_added(fg_backend_id id)
{
	orc_region r[3];
	orc_rng g;
	fg_options o = orc_options(id, 64);
	fg_tracker *t;
	fg_iter it;
	long before, after;

	o.flags = 0; /* read FG_TWIN_HUGE */
	o.precision = FG_PRECISION_DIFF;
	o.twin_policy = FG_TWIN_STICKY;
	o.twin_cap_pct = 100;
	t = orc_tracker(&o);
	orc_rng_init(&g, 1);
	orc_make_regions(r, &g, 2 * MiB, false);
	for (int i = 0; i < 3; i++)
		orc_reg(t, &r[i]);
	cr_assert_geq(fg_collect(t, &it), 0);
	for (int i = 0; i < 3; i++)
		for (size_t off = 0; off < r[i].len; off += orc_page())
			r[i].base[off] ^= 1;
	before = anon_huge_kib();
	cr_assert_geq(fg_collect(t, &it), 0, "%s", fg_last_error_detail());
	after = anon_huge_kib();
	fg_tracker_destroy(t);
	orc_free_regions(r, 3);
	return before < 0 || after < 0 ? -1 : after - before;
}

static void huge(fg_backend_id id)
{
	orc_region r[3];
	fg_tracker *t;
	ssched *s;
	char buf[32];
	const char *mode = thp_mode(buf, sizeof buf);
	fg_stats st;
	uint64_t diffed_low = 0;
	bool collect_only;

	ORC_REQUIRE_BACKEND(id);
	/* Hook twins (uffd-sync) go to slot E & 1, half of them to slot 1,
	 * which stays on 4 KiB pages: the check is for twins taken at
	 * collection only. */
	collect_only = orc_twinning(id) &&
		       !(fg_backend_caps(id) & FG_CAP_HOOK_TWINS);
	if (collect_only && !strcmp(mode, "madvise")) {
		long on, off;

		cr_assert_eq(unsetenv("FG_TWIN_HUGE"), 0);
		on = huge_added(id);
		cr_assert_eq(setenv("FG_TWIN_HUGE", "0", 1), 0);
		off = huge_added(id);
		cr_assert_eq(unsetenv("FG_TWIN_HUGE"), 0);
		fprintf(stderr,
			"huge %-10s: twins of 8 MiB added %ld KiB of huge pages, "
			"%ld with FG_TWIN_HUGE=0\n",
			orc_bname(id), on, off);
		cr_assert_geq(on, 4096,
			      "huge %s: the twins of 8 MiB under a full cap added "
			      "%ld KiB of huge pages (THP mode madvise)",
			      orc_bname(id), on);
		cr_assert_lt(off, 2048,
			     "huge %s: FG_TWIN_HUGE=0 still put twins on huge "
			     "pages (%ld KiB)",
			     orc_bname(id), off);
	} else {
		fprintf(stderr, "huge %-10s: huge pages not checked: %s%s\n",
			orc_bname(id),
			collect_only ? "THP's mode here is "
			: orc_twinning(id)
				? "hook twins, half of them in slot 1"
				: "no twins on this backend",
			collect_only ? mode : "");
	}
	s = ssched_start(id, 64, 8 * MiB, r, 2 * MiB, "huge", &t);
	fill_epoch(s);
	while (s->b.epoch < 60) {
		if (s->b.epoch == 20) {
			cr_assert_eq(fg_set_twin_cap(t, 0, 10), 0, "%s",
				     fg_last_error_detail());
			diffed_low = orc_stats(t).pages_diffed;
		}
		if (s->b.epoch == 22)
			s->cap = s->tracked / 10; /* the survivors compared */
		if (s->b.epoch == 40) {
			cr_assert_eq(fg_set_twin_cap(t, s->tracked, 0), 0);
			s->cap = s->tracked;
		}
		/* Dense now and then: the cap evicts, the trim runs. */
		sparse_epoch(s, s->b.epoch % 7 ? 1 + (unsigned)orc_below(
							     &s->b.g, 60)
					       : 3000);
		ssched_check(s, s->b.epoch % 2 ? ORC_BITMAP : ORC_ITER, 0);
	}
	st = orc_stats(t);
	fprintf(stderr,
		"huge %-10s: seed=%" PRIu64 " %" PRIu64 " stores, pages "
		"diffed %" PRIu64 " (%" PRIu64 " before the cap went down) "
		"whole %" PRIu64 " evicted %" PRIu64 " twin_bytes %" PRIu64
		" missed=0\n",
		orc_bname(id), s->b.seed, s->writes, st.pages_diffed,
		diffed_low, st.pages_whole, st.twins_evicted, st.twin_bytes);
	if (orc_twinning(id))
		cr_assert_gt(st.pages_diffed, diffed_low,
			     "huge %s: no page compared after the cap came "
			     "back",
			     orc_bname(id));
	ssched_end(s);
}

PER_BACKEND(huge)

/* fg_expect_writes: pages un-protected ahead of the program's own writes
 * (the Boehm adapter's swept blocks) read as written at the next
 * collection and are compared with their twins, as if they had faulted.
 * Every epoch some random runs of 1-3 pages are announced, then some of
 * their lines are stored to, restored, stored with the bytes already
 * there, or written by the kernel without fg_mark_dirty (which must not
 * fail with EFAULT even on mprotect: the range is writable until the next
 * collection), and some announced pages are not written at all, or only
 * in the next epoch (after the collection re-protected them).  Sparse
 * stores elsewhere as usual.  0 misses; on the backends whose twins are
 * taken at collection no page may read whole after the first epoch and
 * the precision must hold (check_exact): with fg_mark_dirty's semantics,
 * every announced page would read whole. */

#define EXPECT_RUNS 6

static void expect(fg_backend_id id)
{
	orc_region r[3];
	fg_tracker *t;
	ssched *s = ssched_start(id, 64, 1 * MiB, r, 256 * KiB, "expect", &t);
	uint8_t *late[EXPECT_RUNS];
	size_t nlate = 0;
	uint64_t announced = 0, unwritten = 0, kwrites = 0;
	uint64_t efault0;

	fill_epoch(s);
	efault0 = s->b.kw.efault;
	while (s->b.epoch < 80) {
		uint8_t *next_late[EXPECT_RUNS];
		size_t nnext = 0;

		/* Announced in the last epoch, written only now. */
		for (size_t i = 0; i < nlate; i++)
			store8(s, late[i] + orc_below(&s->b.g, orc_page() / 8) * 8);
		nlate = 0;
		for (unsigned k = 0; k < EXPECT_RUNS; k++) {
			uint8_t *p = orc_page_of(orc_anywhere(&s->b));
			orc_region *g = orc_find(s->b.r, s->b.n, p);
			size_t np = 1 + orc_below(&s->b.g, 3);
			unsigned x = (unsigned)orc_below(&s->b.g, 100);
			int rc;

			if (p + np * orc_page() > g->base + g->len)
				np = (size_t)(g->base + g->len - p) / orc_page();
			/* Any bytes of the run: the pages it touches. */
			rc = fg_expect_writes(t, p + 8, np * orc_page() - 16);
			cr_assert_eq(rc, 0, "%s: fg_expect_writes: %s (%s)",
				     orc_where(&s->b), fg_strerror(rc),
				     fg_last_error_detail());
			announced += np;
			if (x < 15) {
				unwritten += np;
				continue;
			}
			if (x < 25) {
				next_late[nnext++] = p;
				unwritten += np;
				continue;
			}
			for (size_t q = 0; q < np; q++) {
				uint8_t *pg = p + q * orc_page();
				unsigned y = (unsigned)orc_below(&s->b.g, 100);

				if (y < 20) {
					/* The kernel, unannounced. */
					size_t len = 8 + orc_below(&s->b.g, 200);
					uint8_t *d = pg + orc_below(&s->b.g,
						orc_page() - len);

					orc_kernel_write(&s->b,
						(orc_kop)orc_below(&s->b.g,
							ORC_K_COUNT),
						false, d, len);
					kwrites++;
				} else if (y < 30) {
					/* The bytes already there. */
					uint8_t *d = pg + orc_below(&s->b.g,
						orc_page() / 8) * 8;

					*(volatile uint64_t *)d =
						*(volatile uint64_t *)d;
					orc_log(s->b.r, s->b.n, d, 8);
				} else {
					unsigned m = 1 + (unsigned)orc_below(
						&s->b.g, 8);

					for (unsigned j = 0; j < m; j++)
						store8(s, pg + orc_below(&s->b.g,
							orc_page() / 8) * 8);
					if (y < 40)
						restore_line(s, pg + orc_below(
							&s->b.g, orc_page() / 8) * 8);
				}
			}
		}
		sparse_epoch(s, (unsigned)orc_below(&s->b.g, 30));
		ssched_check(s, s->b.epoch % 2 ? ORC_BITMAP : ORC_ITER, 0);
		memcpy(late, next_late, nnext * sizeof *late);
		nlate = nnext;
	}
	cr_assert_eq(s->b.kw.efault, efault0,
		     "expect %s seed=%" PRIu64 ": %" PRIu64 " kernel writes "
		     "into announced pages failed with EFAULT",
		     orc_bname(id), s->b.seed, s->b.kw.efault - efault0);
	fprintf(stderr,
		"expect %-10s: seed=%" PRIu64 " %" PRIu64 " pages announced, "
		"%" PRIu64 " of them not written in their epoch, %" PRIu64
		" kernel writes into them\n",
		orc_bname(id), s->b.seed, announced, unwritten, kwrites);
	check_exact(s, "pages announced with fg_expect_writes");
	ssched_end(s);
}

PER_BACKEND(expect)
ORC_DIGEST(PER_BACKEND, expect)

/* fg_set_twinless (the Boehm adapter's pointer-free blocks). */
#define TWINLESS_PAGES 100 /* over a 64-page word of the bitmap */

/* The pages read whole by the collection ssched_check makes. */
static uint64_t whole_in_check(ssched *s)
{
	uint64_t w0 = orc_stats(s->b.t).pages_whole;

	ssched_check(s, s->b.epoch % 2 ? ORC_BITMAP : ORC_ITER, 0);
	return orc_stats(s->b.t).pages_whole - w0;
}

/* One store in each of region 0's first n pages, a different line in
 * each; then the collection: the pages it read whole. */
static uint64_t write_first(ssched *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		store8(s, s->b.r[0].base + i * orc_page() + 64 * (i % 60));
	return whole_in_check(s);
}

static void twinless_set(ssched *s, uint8_t *p, size_t len, int on)
{
	int rc = fg_set_twinless(s->b.t, p, len, on);

	cr_assert_eq(rc, 0, "%s: fg_set_twinless(%d): %s (%s)",
		     orc_where(&s->b), on, fg_strerror(rc),
		     fg_last_error_detail());
}

static void twinless(fg_backend_id id)
{
	orc_region r[3];
	fg_tracker *t;
	/* A cap for every page: only twinless pages may read whole. */
	ssched *s = ssched_start(id, 64, 1 * MiB, r, 256 * KiB, "twinless",
				 &t);
	size_t n = s->b.r[0].len / orc_page();
	bool twins = orc_twinning(id) || orc_twin_hook(id);
	uint64_t w;
	uint8_t dummy[64];

	if (n > TWINLESS_PAGES)
		n = TWINLESS_PAGES;
	cr_assert_geq(n, 4, "region 0 has %zu pages", n);
	cr_assert_eq(fg_set_twinless(t, dummy, sizeof dummy, 1), -FG_ENOTREG);
	fill_epoch(s);
	store8(s, s->b.r[0].base);
	(void)whole_in_check(s); /* every page twinned and compared once */
	/* Made twinless, written: compared with the twin they hold. */
	twinless_set(s, s->b.r[0].base + 8, n * orc_page() - 16, 1);
	w = write_first(s, n);
	if (twins)
		cr_assert_eq(w, 0, "%s: %" PRIu64 " pages whole where every "
			     "written page still held a twin",
			     orc_where(&s->b), w);
	/* Written again: no twin now, whole. */
	w = write_first(s, n);
	cr_assert_eq(w, twins ? n : w, "%s: %" PRIu64 " pages whole, want the "
		     "%zu twinless ones",
		     orc_where(&s->b), w, n);
	/* Twinful again: whole once where twins are taken at collection
	 * (no twin yet), twinned at that report, exact after it; with hook
	 * twins (uffd-sync) the first write takes one. */
	twinless_set(s, s->b.r[0].base, n * orc_page(), 0);
	w = write_first(s, n);
	cr_assert_eq(w, orc_twin_hook(id) ? 0 : twins ? n : w,
		     "%s: %" PRIu64 " pages whole, want %zu (no twin yet)",
		     orc_where(&s->b), w, orc_twin_hook(id) ? 0 : n);
	w = write_first(s, n);
	if (twins)
		cr_assert_eq(w, 0, "%s: %" PRIu64 " pages whole after they were "
			     "twinned again",
			     orc_where(&s->b), w);
	/* Random runs switched either way, among everything else. */
	while (s->b.epoch < 60) {
		for (unsigned k = 0; k < 4; k++) {
			uint8_t *p = orc_page_of(orc_anywhere(&s->b));
			orc_region *g = orc_find(s->b.r, s->b.n, p);
			size_t np = 1 + orc_below(&s->b.g, 4);

			if (p + np * orc_page() > g->base + g->len)
				np = (size_t)(g->base + g->len - p) / orc_page();
			twinless_set(s, p, np * orc_page(),
				     orc_below(&s->b.g, 3) != 0);
			if (orc_below(&s->b.g, 4) == 0) {
				size_t len = 8 + orc_below(&s->b.g, 200);

				orc_kernel_write(&s->b,
					(orc_kop)orc_below(&s->b.g,
							   ORC_K_COUNT),
					false, p + orc_below(&s->b.g,
						orc_page() - len), len);
			} else {
				store8(s, p + orc_below(&s->b.g,
						np * orc_page() / 8) * 8);
				if (orc_below(&s->b.g, 3) == 0)
					restore_line(s, p);
			}
		}
		sparse_epoch(s, (unsigned)orc_below(&s->b.g, 30));
		(void)whole_in_check(s);
	}
	fprintf(stderr, "twinless %-10s: seed=%" PRIu64 " %u epochs, "
		"missed=0\n",
		orc_bname(id), s->b.seed, s->b.epoch);
	ssched_end(s);
}

PER_BACKEND(twinless)
ORC_DIGEST(PER_BACKEND, twinless)

/* FG_TWIN_FULL_DECLINE (fg_set_twin_full; FG_CARD=auto's trial): a cap of
 * 32 pages for 256.  A sample of SAMPLE pages is written first (twinned:
 * the cap has room), then 24 other random pages an epoch, more than the
 * cap holds; the sample is written again only every 8th epoch.
 * Declining, the sample keeps its twins and its lines are exact while
 * the cap is full; evicting (FG_TWIN_FULL_EVICT, switched back at epoch
 * 80), the cap makes room for the newest pages and the sample, written
 * least recently, loses its twins and reads whole.  The oracle and the
 * cap hold throughout. */
#define SAMPLE 12

static bool in_sample(uint8_t *const *sample, const uint8_t *pg)
{
	for (int i = 0; i < SAMPLE; i++)
		if (sample[i] == pg)
			return true;
	return false;
}

/* The sample's changed and reported lines in the last collection. */
static void sample_lines(ssched *s, uint8_t *const *sample, uint64_t *truth,
			 uint64_t *rep)
{
	size_t lpp = orc_page() / ORC_LINE;

	for (size_t i = 0; i < s->b.n; i++) {
		orc_region *g = &s->b.r[i];

		for (size_t l = 0; l < g->nlines; l++) {
			if (!in_sample(sample, g->base + l / lpp * orc_page()))
				continue;
			*truth += (g->changed[l / 64] >> (l % 64)) & 1;
			*rep += (g->reported[l / 64] >> (l % 64)) & 1;
		}
	}
}

static void cap_decline(fg_backend_id id)
{
	const size_t cap = 32 * orc_page();
	orc_region r[3];
	fg_tracker *t;
	ssched *s = ssched_start(id, 64, cap, r, 64 * KiB, "cap_decline", &t);
	uint8_t *sample[SAMPLE] = {0};
	uint64_t dtruth = 0, drep = 0, etruth = 0, erep = 0;
	fg_stats st;

	cr_assert_eq(fg_set_twin_full(t, FG_TWIN_FULL_DECLINE), 0,
		     "fg_set_twin_full: %s", fg_last_error_detail());
	for (int i = 0; i < SAMPLE; i++)
		while (!sample[i]) {
			uint8_t *pg = orc_page_of(orc_anywhere(&s->b));

			if (!in_sample(sample, pg))
				sample[i] = pg;
		}
	for (int i = 0; i < SAMPLE; i++)
		store8(s, sample[i] + orc_below(&s->b.g, orc_page() / 8) * 8);
	ssched_check(s, ORC_ITER, 0);
	while (s->b.epoch < 160) {
		bool again = s->b.epoch % 8 == 0;

		if (s->b.epoch == 80)
			cr_assert_eq(fg_set_twin_full(t, FG_TWIN_FULL_EVICT), 0);
		for (int k = 0; k < 24; k++) {
			uint8_t *p = random_slot(s);

			if (!in_sample(sample, orc_page_of(p)))
				store8(s, p);
		}
		if (again)
			for (int i = 0; i < SAMPLE; i++)
				store8(s, sample[i] +
						  orc_below(&s->b.g,
							    orc_page() / 8) *
							  8);
		ssched_check(s, s->b.epoch % 2 ? ORC_BITMAP : ORC_ITER, 0);
		/* From the second round on (the first evicting one has the
		 * twins of the declining rounds still in place). */
		if (again && s->b.epoch > 8 && s->b.epoch <= 80)
			sample_lines(s, sample, &dtruth, &drep);
		else if (again && s->b.epoch > 96)
			sample_lines(s, sample, &etruth, &erep);
	}
	st = orc_stats(t);
	fprintf(stderr,
		"cap_decline %-10s: seed=%" PRIu64 " cap %zu pages: sample "
		"(%d pages, every 8th epoch) declining: changed-line "
		"bytes=%" PRIu64 " reported=%" PRIu64 " (%.2fx); evicting: "
		"changed=%" PRIu64 " reported=%" PRIu64 " (%.2fx) | "
		"diffed=%" PRIu64 " whole=%" PRIu64 " evicted=%" PRIu64
		" twin_bytes=%" PRIu64 "\n",
		orc_bname(id), s->b.seed, cap / orc_page(), SAMPLE,
		dtruth * ORC_LINE, drep * ORC_LINE, orc_ratio(drep, dtruth),
		etruth * ORC_LINE, erep * ORC_LINE, orc_ratio(erep, etruth),
		st.pages_diffed, st.pages_whole, st.twins_evicted,
		st.twin_bytes);
	cr_assert_gt(dtruth, 0);
	cr_assert_gt(etruth, 0);
	if (orc_twinning(id)) {
		cr_assert_eq(drep, dtruth,
			     "cap_decline %s seed=%" PRIu64 ": declining, the "
			     "sample reported %" PRIu64 " lines for %" PRIu64
			     " changed: its twins were not kept",
			     orc_bname(id), s->b.seed, drep, dtruth);
		cr_assert_gt(erep, etruth,
			     "cap_decline %s seed=%" PRIu64 ": evicting, the "
			     "sample kept its twins (%" PRIu64 " lines for %"
			     PRIu64 " changed): FG_TWIN_FULL_EVICT did not "
			     "take effect",
			     orc_bname(id), s->b.seed, erep, etruth);
	}
	/* Bad calls. */
	cr_assert_eq(fg_set_twin_full(t, 2), -EINVAL);
	ssched_end(s);
}

PER_BACKEND(cap_decline)

/* ------------------------------------------------------------------ */
/* Threads: writers store unique values to sparse pages while the main
 * thread collects.
 *
 * Rules (as in test_diff.c): read every slot (S) after collection N
 * returned, read them again (T), collect (N+1): a slot with T != S changed
 * after N returned and before N+1 began and must lie in a range of N+1; a
 * slot that changed between a read before N began (P) and S, in a range of
 * N or N+1.  No value is stored twice, so a slot that changed never reads
 * as its twin again. */

#define TWRITERS 3
#define TPAGES 24 /* the writers' current pages */

typedef struct twriter {
	pthread_t th;
	orc_region *r;
	_Atomic(uint8_t *) *pages;
	unsigned tid;
	uint64_t seed, stores;
	_Atomic int *stop;
	_Atomic uint64_t *counter;
} twriter;

/* A random page of n regions. */
static uint8_t *random_page(orc_region *r, size_t n, orc_rng *g)
{
	orc_region *x = &r[orc_below(g, n)];

	return x->base + orc_below(g, x->len / orc_page()) * orc_page();
}

static void *twriter_main(void *arg)
{
	twriter *w = arg;
	orc_rng g;

	orc_rng_init(&g, w->seed);
	while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
		uint8_t *pg;
		uint64_t *slot;

		if (orc_below(&g, 4))
			pg = atomic_load_explicit(&w->pages[orc_below(&g, TPAGES)],
						  memory_order_relaxed);
		else
			pg = random_page(w->r, 2, &g);
		slot = (uint64_t *)(pg + orc_below(&g, orc_page() / 8) * 8);
		__atomic_store_n(slot,
				 atomic_fetch_add_explicit(w->counter, 1,
							   memory_order_relaxed) |
					 (uint64_t)(w->tid + 1) << 56,
				 __ATOMIC_RELAXED);
		w->stores++;
		/* Sparse: a few stores per page between collections. */
		if (orc_below(&g, 4) == 0)
			orc_spin_us((unsigned)orc_below(&g, 20));
	}
	return NULL;
}

static void threads(fg_backend_id id)
{
	static const size_t cards[] = {64, 256, 1024, 4096};
	const uint64_t budget = id == FG_BACKEND_UFFD_SYNC ? 3000000000u
							   : 2000000000u;
	orc_region r[2];
	fg_tracker *t;
	twriter w[TWRITERS];
	_Atomic(uint8_t *) pages[TPAGES];
	_Atomic int stop = 0;
	_Atomic uint64_t counter = 1;
	uint64_t *P[2], *S[2], *T[2], *prevrep[2];
	uint64_t seed, t0, checked = 0, checked_across = 0, missed = 0;
	uint64_t rounds = 0, stores = 0;
	char first[400] = "", ctx[200];
	size_t card = 64, nr = 2;
	orc_result res;
	orc_rng g;
	fg_stats st;

	ORC_REQUIRE_BACKEND(id);
	seed = orc_seed("threads");
	orc_rng_init(&g, seed);
	{
		void *a = orc_map_anon(512 * KiB, NULL);
		void *m = orc_map_memfd(256 * KiB, NULL);

		cr_assert(a && m, "mmap: %s", strerror(errno));
		cr_assert_eq(orc_region_init(&r[0], a, 512 * KiB, "anon"), 0);
		cr_assert_eq(orc_region_init(&r[1], m, 256 * KiB, "memfd"), 0);
		r[0].changed_only = r[1].changed_only = true;
	}
	/* Twins for every page. */
	t = orc_diff_tracker(id, 64, 768 * KiB, policy);
	for (size_t i = 0; i < nr; i++) {
		size_t words = r[i].len / 8, bw = (r[i].nlines + 63) / 64;

		orc_reg(t, &r[i]);
		P[i] = calloc(words, 8);
		S[i] = calloc(words, 8);
		T[i] = calloc(words, 8);
		prevrep[i] = calloc(bw, 8);
		cr_assert(P[i] && S[i] && T[i] && prevrep[i]);
		/* Every page written once: all get sticky twins. */
		for (size_t off = 0; off < r[i].len; off += orc_page())
			*(volatile uint64_t *)(r[i].base + off) = off + 1;
	}
	for (int k = 0; k < TPAGES; k++)
		atomic_init(&pages[k], random_page(r, nr, &g));
	orc_collect_ok(t, r, nr, ORC_ITER, 64, "threads: first epoch");
	orc_snap_words(r, nr, T);
	for (unsigned i = 0; i < TWRITERS; i++) {
		w[i] = (twriter){.r = r, .pages = pages, .tid = i,
				 .seed = orc_next(&g), .stop = &stop,
				 .counter = &counter};
		cr_assert_eq(pthread_create(&w[i].th, NULL, twriter_main, &w[i]),
			     0);
	}
	t0 = orc_now_ns();
	/* On uffd-async, go on (up to 4x the budget) until a twin was found
	 * written during its copy: the window is short, the race rare. */
	while (!missed &&
	       (orc_now_ns() - t0 < budget ||
		(id == FG_BACKEND_UFFD_ASYNC &&
		 orc_now_ns() - t0 < 4 * budget &&
		 !orc_stats(t).twins_invalid))) {
		size_t want = card;

		/* The writers' pages drift: pages go quiet for a while. */
		if (orc_below(&g, 2))
			atomic_store(&pages[orc_below(&g, TPAGES)],
				     random_page(r, nr, &g));
		if (orc_below(&g, 3) == 0) {
			want = cards[orc_below(&g, 4)];
			cr_assert_eq(fg_set_card_size(t, want), 0);
		}
		for (size_t i = 0; i < nr; i++) {
			uint64_t *x = P[i];

			P[i] = T[i]; /* read before the previous collection */
			T[i] = x;
		}
		orc_snap_words(r, nr, S);
		orc_spin_us((unsigned)orc_below(&g, 200));
		orc_snap_words(r, nr, T);
		snprintf(ctx, sizeof ctx, "threads %s seed=%" PRIu64 " round %" PRIu64,
			 orc_bname(id), seed, rounds);
		card = orc_collect_ok(t, r, nr,
				      rounds % 4 == 3 ? ORC_BITMAP : ORC_ITER,
				      want, ctx);
		for (size_t i = 0; i < nr && !missed; i++) {
			uint64_t *slots = (uint64_t *)r[i].base;

			for (size_t k = 0; k < r[i].len / 8; k++) {
				bool after = S[i][k] != T[i][k];
				bool across = rounds && P[i][k] != S[i][k];
				size_t l = k * 8 / ORC_LINE;

				checked += after;
				checked_across += across;
				if (!after && !across)
					continue;
				if (orc_reported(r, nr, &slots[k], 8))
					continue;
				if (!after &&
				    ((prevrep[i][l / 64] >> (l % 64)) & 1))
					continue;
				if (!missed++)
					snprintf(first, sizeof first,
						 "%s: slot %p (%s + %#zx) went "
						 "%#" PRIx64 " -> %#" PRIx64
						 " %s, not reported",
						 ctx, (void *)&slots[k],
						 r[i].kind, k * 8,
						 after ? S[i][k] : P[i][k],
						 after ? T[i][k] : S[i][k],
						 after ? "between collections"
						       : "across the previous "
							 "collection");
			}
			memcpy(prevrep[i], r[i].reported,
			       (r[i].nlines + 63) / 64 * 8);
		}
		rounds++;
	}
	atomic_store(&stop, 1);
	for (unsigned i = 0; i < TWRITERS; i++) {
		pthread_join(w[i].th, NULL);
		stores += w[i].stores;
	}
	st = orc_stats(t);
	cr_assert_eq(missed, 0,
		     "threads %s seed=%" PRIu64 ": %" PRIu64 " slots missed; "
		     "first: %s [twins hook=%" PRIu64 " eager=%" PRIu64
		     " invalid=%" PRIu64 "]",
		     orc_bname(id), seed, missed, first, st.twins_hook,
		     st.twins_eager, st.twins_invalid);
	cr_assert_gt(checked, 0, "threads %s: the writers never ran",
		     orc_bname(id));
	if (orc_twinning(id)) {
		cr_assert_gt(st.pages_diffed, 0);
		if (id == FG_BACKEND_UFFD_ASYNC)
			cr_assert_gt(st.twins_invalid, 0,
				     "threads %s seed=%" PRIu64 ": no twin "
				     "taken at collection was ever found "
				     "written during its copy: validation "
				     "not exercised",
				     orc_bname(id), seed);
	}
	/* Quiet: every page once more, so that each one is reported and
	 * re-twinned with nobody writing, then 25 known changes, which a
	 * twinning backend must report exactly. */
	for (size_t i = 0; i < nr; i++)
		for (size_t off = 0; off < r[i].len; off += orc_page())
			*(volatile uint64_t *)(r[i].base + off) ^= 1;
	cr_assert_eq(fg_set_card_size(t, 64), 0);
	snprintf(ctx, sizeof ctx, "threads %s seed=%" PRIu64 " (quiet)",
		 orc_bname(id), seed);
	orc_quiet_epoch(t, r, nr, &g, 64,
			!orc_twinning(id)	   ? 0
			: policy == FG_TWIN_STICKY ? 1
						   : ORC_QUIET_SOUND_ONLY,
			ctx, &res, &card);
	st = orc_stats(t);
	fprintf(stderr,
		"threads %-10s: seed=%" PRIu64 " %" PRIu64 " rounds, %" PRIu64
		" stores by %d threads, %" PRIu64 " slot changes checked "
		"between collections + %" PRIu64 " across one, missed=0 | "
		"twins hook=%" PRIu64 " eager=%" PRIu64 " invalid=%" PRIu64
		" pages diffed=%" PRIu64 " whole=%" PRIu64 "; quiet epoch: %"
		PRIu64 " changed lines, %" PRIu64 " reported\n",
		orc_bname(id), seed, rounds, stores, TWRITERS, checked,
		checked_across, st.twins_hook, st.twins_eager,
		st.twins_invalid, st.pages_diffed, st.pages_whole,
		res.truth_lines, res.reported_lines);
	cr_assert_eq(fg_tracker_destroy(t), 0);
	for (size_t i = 0; i < nr; i++) {
		munmap(r[i].base, r[i].len);
		orc_region_fini(&r[i]);
		free(P[i]);
		free(S[i]);
		free(T[i]);
		free(prevrep[i]);
	}
}

PER_BACKEND(threads)
ORC_DIGEST(PER_BACKEND, threads)
ADAPTIVE(threads)

/* ------------------------------------------------------------------ */
/* Hooks of the new epoch against the collector's comparisons.
 *
 * NP pages, all twinned.  A cycle: epoch A, the main thread changes lines
 * 0..62 of every page; one or two quiet epochs (the sticky twin, tagged
 * A+1, waits in slot (A+1) & 1); epoch C, it changes them again, half of
 * them back to their bytes from before A, and the collection closing C
 * runs while racer threads store to line 63 of every page: on uffd-sync
 * each racer's first store faults, and its hook for epoch C+1 targets
 * slot (C+1) & 1 - with one quiet epoch, the very slot whose twin the
 * collector is comparing with.  Every line 0..62 that differs from its
 * bytes at the start of C must be reported by that collection; line 63,
 * by it or the next. */

#define NP 128
#define RACERS 2

typedef struct hracer {
	pthread_t th;
	uint8_t *base;
	unsigned first, step;
	_Atomic int *go;   /* 1: store, 0: wait, -1: exit */
	_Atomic int idle;  /* 1: saw go == 0 and stores nothing */
	_Atomic uint64_t *counter;
} hracer;

static void *hracer_main(void *arg)
{
	hracer *h = arg;
	int g;

	while ((g = atomic_load(h->go)) >= 0) {
		if (!g) {
			atomic_store(&h->idle, 1);
			sched_yield();
			continue;
		}
		atomic_store(&h->idle, 0);
		/* go is read again before every store: once the main thread
		 * has cleared go and then seen idle, no store is left. */
		for (unsigned p = h->first; p < NP && atomic_load(h->go) > 0;
		     p += h->step)
			__atomic_store_n(
				(uint64_t *)(h->base + p * orc_page() +
					     orc_page() - 8),
				atomic_fetch_add(h->counter, 1),
				__ATOMIC_SEQ_CST);
	}
	return NULL;
}

static void racers_stop(hracer *h, _Atomic int *go)
{
	atomic_store(go, 0);
	for (unsigned i = 0; i < RACERS; i++)
		while (!atomic_load(&h[i].idle))
			sched_yield();
}

/* Set in rep the bits of the 64-byte lines from a that its ranges cover. */
static void ranges_to_lines(fg_iter *it, const uint8_t *a, uint64_t *rep)
{
	fg_range rg;
	int more;

	while ((more = fg_iter_next(it, &rg)) == 1) {
		size_t lo = (size_t)((const uint8_t *)rg.addr - a) / ORC_LINE;

		for (size_t l = lo; l < lo + rg.len / ORC_LINE; l++)
			rep[l / 64] |= UINT64_C(1) << (l % 64);
	}
	cr_assert_eq(more, 0, "fg_iter_next: %d (%s)", more, fg_strerror(more));
}

static void hooks(fg_backend_id id)
{
	const size_t ps = orc_page(), len = NP * ps;
	const uint64_t budget = id == FG_BACKEND_UFFD_SYNC ? 2500000000u
							   : 800000000u;
	uint8_t *a, *startC, *beforeA, *rest;
	uint64_t seed, t0, cycles = 0, lines_checked = 0, missed = 0;
	uint64_t older = 0;
	char first[300] = "";
	_Atomic int go = 0;
	_Atomic uint64_t counter = 1;
	hracer h[RACERS];
	fg_tracker *t;
	orc_rng g;
	fg_stats st;

	ORC_REQUIRE_BACKEND(id);
	seed = orc_seed("hooks");
	orc_rng_init(&g, seed);
	a = orc_map_anon(len, NULL);
	startC = malloc(len);
	beforeA = malloc(len);
	rest = malloc(len);
	cr_assert(a && startC && beforeA && rest);
	orc_fill_random(&g, a, len);
	/* Room for one twin a page: hooks mostly find none, so the
	 * collector must use the sticky twins. */
	t = orc_diff_tracker(id, 64, len, policy);
	cr_assert_eq(fg_register(t, a, len), 0);
	for (size_t off = 0; off < len; off += ps)
		a[off] ^= 1;
	for (int k = 0; k < 3; k++)
		fg_collect(t, NULL);
	for (unsigned i = 0; i < RACERS; i++) {
		h[i] = (hracer){.base = a, .first = i, .step = RACERS,
				.go = &go, .idle = 1, .counter = &counter};
		cr_assert_eq(pthread_create(&h[i].th, NULL, hracer_main, &h[i]),
			     0);
	}
	t0 = orc_now_ns();
	while (orc_now_ns() - t0 < budget && !missed) {
		unsigned quiet = 1 + (unsigned)orc_below(&g, 2);
		fg_iter it;
		int n;

		/* A */
		memcpy(beforeA, a, len);
		for (unsigned p = 0; p < NP; p++)
			for (unsigned l = 0; l < ps / ORC_LINE - 1; l++)
				if (orc_below(&g, 4) == 0)
					a[p * ps + l * ORC_LINE +
					  orc_below(&g, ORC_LINE)] ^=
						(uint8_t)(1 + orc_below(&g, 255));
		cr_assert_geq(fg_collect(t, NULL), 0);
		for (unsigned q = 0; q < quiet; q++)
			cr_assert_geq(fg_collect(t, NULL), 0);
		/* C */
		memcpy(startC, a, len);
		for (unsigned p = 0; p < NP; p++) {
			for (unsigned l = 0; l < ps / ORC_LINE - 1; l++) {
				uint8_t *x = a + p * ps + l * ORC_LINE;
				unsigned c = (unsigned)orc_below(&g, 8);

				if (c == 0 && memcmp(x, beforeA + (x - a),
						     ORC_LINE)) {
					memcpy(x, beforeA + (x - a), ORC_LINE);
					older++;
				} else if (c == 1) {
					x[orc_below(&g, ORC_LINE)] ^= 0x80;
				}
			}
		}
		for (size_t off = ps - 8; off < len; off += ps)
			memcpy(rest + off, a + off, 8);
		atomic_store(&go, 1);
		n = fg_collect(t, &it);
		cr_assert_geq(n, 0);
		{
			/* Lines 0..62 of C, from the ranges of the raced
			 * collection. */
			uint64_t *rep = calloc(len / ORC_LINE / 64 + 1, 8);

			cr_assert_not_null(rep);
			ranges_to_lines(&it, a, rep);
			racers_stop(h, &go);
			for (size_t l = 0; l < len / ORC_LINE; l++) {
				const uint8_t *x = a + l * ORC_LINE;

				if (l % (ps / ORC_LINE) == ps / ORC_LINE - 1)
					continue; /* the racers' line */
				if (!memcmp(x, startC + l * ORC_LINE, ORC_LINE))
					continue;
				lines_checked++;
				if (!((rep[l / 64] >> (l % 64)) & 1) &&
				    !missed++)
					snprintf(first, sizeof first,
						 "cycle %" PRIu64 " (%u quiet "
						 "epochs): line %zu of page %zu "
						 "changed in epoch C (before "
						 "its collection began) and "
						 "was not reported",
						 cycles, quiet,
						 l % (ps / ORC_LINE),
						 l / (ps / ORC_LINE));
			}
			/* Line 63: the raced collection or the next. */
			n = fg_collect(t, &it);
			cr_assert_geq(n, 0);
			ranges_to_lines(&it, a, rep);
			for (size_t off = ps - 8; off < len; off += ps) {
				size_t l = off / ORC_LINE;

				if (memcmp(rest + off, a + off, 8) &&
				    !((rep[l / 64] >> (l % 64)) & 1) &&
				    !missed++)
					snprintf(first, sizeof first,
						 "cycle %" PRIu64 ": a racer's "
						 "store to page %zu was in "
						 "neither the raced collection "
						 "nor the next",
						 cycles, off / ps);
			}
			free(rep);
		}
		cycles++;
	}
	atomic_store(&go, -1);
	for (unsigned i = 0; i < RACERS; i++)
		pthread_join(h[i].th, NULL);
	st = orc_stats(t);
	cr_assert_eq(missed, 0, "hooks %s seed=%" PRIu64 ": %" PRIu64
				" missed; first: %s",
		     orc_bname(id), seed, missed, first);
	fprintf(stderr,
		"hooks %-10s: seed=%" PRIu64 " %" PRIu64 " cycles, %" PRIu64
		" changed lines checked (%" PRIu64 " back to bytes from before "
		"the page's previous write), missed=0 | twins hook=%" PRIu64
		" eager=%" PRIu64 " invalid=%" PRIu64 " pages diffed=%" PRIu64
		" whole=%" PRIu64 "\n",
		orc_bname(id), seed, cycles, lines_checked, older,
		st.twins_hook, st.twins_eager, st.twins_invalid,
		st.pages_diffed, st.pages_whole);
	cr_assert_gt(lines_checked, 0);
	if (orc_twinning(id))
		cr_assert_gt(st.pages_diffed, 0);
	if (id == FG_BACKEND_UFFD_SYNC)
		cr_assert_gt(st.hook_calls, 0, "no racer store ever faulted");
	cr_assert_eq(fg_tracker_destroy(t), 0);
	munmap(a, len);
	free(startC);
	free(beforeA);
	free(rest);
}

PER_BACKEND(hooks)
ORC_DIGEST(PER_BACKEND, hooks)
ADAPTIVE(hooks)

/* ------------------------------------------------------------------ */
/* Options and environment. */

/* Whether a DIFF tracker on uffd-async keeps a twin for a page written
 * once and then left alone: the observable difference of the policies. */
static bool keeps_twins(const fg_options *o)
{
	fg_tracker *t;
	uint8_t *a = orc_map_anon(4 * orc_page(), NULL);
	fg_stats st;
	int rc;

	cr_assert_not_null(a);
	rc = fg_tracker_create(o, &t);
	cr_assert_eq(rc, 0, "fg_tracker_create: %d (%s): %s", rc,
		     fg_strerror(rc), fg_last_error_detail());
	cr_assert_eq(fg_register(t, a, 4 * orc_page()), 0);
	a[0] = 1;
	fg_collect(t, NULL); /* whole; sticky: twinned */
	fg_collect(t, NULL);
	a[8] = 2;
	fg_collect(t, NULL); /* sticky: diffed */
	st = orc_stats(t);
	cr_assert_eq(fg_tracker_destroy(t), 0);
	munmap(a, 4 * orc_page());
	return st.pages_diffed > 0;
}

Test(sticky, options)
{
	fg_options o = FG_OPTIONS_INIT;
	fg_tracker *t = NULL;
	int rc;

	ORC_REQUIRE_BACKEND(FG_BACKEND_UFFD_ASYNC);
	cr_assert_eq(o.twin_policy, FG_TWIN_HOT, "FG_OPTIONS_INIT: not HOT");
	o.backend = FG_BACKEND_UFFD_ASYNC;
	o.precision = FG_PRECISION_DIFF;
	unsetenv("FG_TWINS");
	cr_assert(!keeps_twins(&o), "HOT kept a twin for a cold page");
	o.twin_policy = FG_TWIN_STICKY;
	cr_assert(keeps_twins(&o), "STICKY did not keep a twin");
	o.twin_policy = FG_TWIN_HOT;
	setenv("FG_TWINS", "sticky", 1);
	cr_assert(keeps_twins(&o), "FG_TWINS=sticky ignored");
	o.flags = FG_OPT_NO_ENV;
	cr_assert(!keeps_twins(&o), "FG_OPT_NO_ENV did not ignore FG_TWINS");
	o.flags = 0;
	/* Options of 0.2, without twin_policy: HOT, or FG_TWINS. */
	o.size = offsetof(fg_options, twin_policy);
	o.twin_policy = 77;
	cr_assert(keeps_twins(&o), "an old options struct ignored FG_TWINS");
	setenv("FG_TWINS", "hot", 1);
	cr_assert(!keeps_twins(&o), "FG_TWINS=hot with old options kept twins");
	o.size = sizeof o;
	o.twin_policy = FG_TWIN_HOT;
	setenv("FG_TWINS", "bogus", 1);
	rc = fg_tracker_create(&o, &t);
	cr_assert_eq(rc, -EINVAL, "FG_TWINS=bogus: %d", rc);
	cr_assert(strstr(fg_last_error_detail(), "FG_TWINS"),
		  "detail: %s", fg_last_error_detail());
	unsetenv("FG_TWINS");
	o.twin_policy = 3;
	rc = fg_tracker_create(&o, &t);
	cr_assert_eq(rc, -EINVAL, "twin_policy 3: %d", rc);
	o.twin_policy = FG_TWIN_HOT;
	setenv("FG_TWINS", "adaptive", 1);
	rc = fg_tracker_create(&o, &t);
	cr_assert_eq(rc, 0, "FG_TWINS=adaptive: %d (%s)", rc,
		     fg_last_error_detail());
	cr_assert_eq(fg_tracker_destroy(t), 0);
	unsetenv("FG_TWINS");
	/* Sticky on a backend that cannot validate twins: created, no twins
	 * (the scenarios check that its pages read whole). */
	o.twin_policy = FG_TWIN_STICKY;
	o.backend = FG_BACKEND_MPROTECT;
	rc = fg_tracker_create(&o, &t);
	cr_assert_eq(rc, 0, "sticky on mprotect: %d", rc);
	cr_assert_eq(fg_tracker_destroy(t), 0);
	/* fg_set_twin_cap needs DIFF precision. */
	o.backend = FG_BACKEND_UFFD_ASYNC;
	o.precision = FG_PRECISION_PAGE;
	cr_assert_eq(fg_tracker_create(&o, &t), 0);
	cr_assert_eq(fg_set_twin_cap(t, 0, 10), -EINVAL);
	cr_assert(strstr(fg_last_error_detail(), "DIFF"),
		  "fg_set_twin_cap without DIFF: %s", fg_last_error_detail());
	cr_assert_eq(fg_set_twin_full(t, FG_TWIN_FULL_DECLINE), -EINVAL);
	cr_assert(strstr(fg_last_error_detail(), "fg_set_twin_full: the "
						 "tracker has no DIFF"),
		  "fg_set_twin_full without DIFF: %s", fg_last_error_detail());
	/* The tracker is usable after (its lock was given back). */
	cr_assert_eq(fg_set_twin_cap(t, 0, 10), -EINVAL);
	cr_assert_eq(fg_tracker_destroy(t), 0);
	o.precision = FG_PRECISION_DIFF;
	/* twin_cap_pct: a percentage. */
	o.twin_cap_pct = 101;
	rc = fg_tracker_create(&o, &t);
	cr_assert_eq(rc, -EINVAL, "twin_cap_pct 101: %d", rc);
	cr_assert(strstr(fg_last_error_detail(), "twin_cap_pct"),
		  "twin_cap_pct 101: the detail does not name it: %s",
		  fg_last_error_detail());
}
