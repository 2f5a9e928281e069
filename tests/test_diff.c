/* test_diff.c - DIFF precision (twin/diff) against the oracle (oracle.h).
 *
 * Every tracker here is created with .precision = FG_PRECISION_DIFF.  The
 * truth is the set of 64-byte lines whose bytes differ from the oracle's
 * epoch-start copy (orc_region.changed_only): a line written back to its
 * old bytes within an epoch may legitimately be reported clean.  Every
 * truth line must lie in a reported card (0 misses); how many more bytes
 * were reported is printed as the precision.
 *
 * Scenarios, each run once per backend (a backend the machine lacks is a
 * visible skip with the probe's reason):
 *   random_c64, random_c256, random_c1k, random_c4k, random_cmix
 *       single-threaded random schedules over anonymous, shared anonymous
 *       and memfd regions: sparse writes to a slowly changing set of hot
 *       pages (so pages are dirty in consecutive epochs and get eager
 *       twins), writes that restore a line to its epoch-start bytes or
 *       store the value already there, zeroing, writes anywhere, large
 *       writes and kernel writes (read, pread, recv, pipes; fg_mark_dirty
 *       first for mprotect, mostly).  Then a steady phase of sparse writes
 *       to fixed hot pages whose precision must be close to the truth.
 *       cmix changes the card size before every collection.
 *   threads
 *       four writer threads storing to 8-byte slots, mostly on a hot set
 *       of pages, and a fifth writing through fg_mark_dirty + pread(2),
 *       while the main thread collects with the card size changing
 *       between rounds (the double-buffered twins, hooks racing the
 *       collector, eager twins validated under concurrency).  Two rules:
 *       a slot that changed after collection N returned and before N+1
 *       began must be reported by N+1; one that changed between a read
 *       before N began and one after N returned, by N or N+1.
 *   fork
 *       a child writing, collecting and destroying a DIFF tracker; the
 *       parent's oracle must stay exact.
 *   twin_cap
 *       a cap of 4 pages of twins: still sound, the cap holds, pages past
 *       it read whole.
 *   zero_during_collect
 *       a thread zeroes a 64-byte line while the main thread collects
 *       (twins taken while the collector works on the twins' memory).
 *   mark_dirty_race
 *       fg_mark_dirty and a store on a page while another thread's first
 *       write to it faults (a twin copied from a page already writable).
 *   expect_race
 *       the same with fg_expect_writes (no page forced whole).
 *   random_c64, random_cmix, peek_hot, peek_sticky, threads, fork,
 *   zero_during_collect, expect_race _digest
 *       the same with FG_TWIN_DIGEST: twins are line digests, taken by
 *       uffd-sync's first-write hook and at collection; the same checks
 *       (skipped on backends that take no twins).
 * The "none" backend runs every scenario too: it has no hook and nothing
 * to validate eager twins with, so every page must read whole.
 *
 * Every random test prints its seed; FG_SEED=N replays it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* config.h defines it in the autotools build */
#endif
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <fcntl.h>
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

#define PER_BACKEND(scn) ORC_PER_BACKEND(diff, scn, TIMEOUT)

/* ------------------------------------------------------------------ */
/* The single-threaded schedule. */

enum dop {
	D_HOT8,	   /* 8 differing bytes in a hot page */
	D_HOT1,	   /* one differing byte in a hot page */
	D_HOTCPY,  /* 1..128 differing bytes in a hot page */
	D_ATOMIC,  /* atomic add to an aligned word of a hot page */
	D_RESTORE, /* a line written this epoch back to its epoch-start bytes */
	D_SAME,	   /* store the 8 bytes already there */
	D_ZERO,	   /* zero 1..192 bytes of a hot page */
	D_ANY,	   /* 1..512 differing bytes anywhere */
	D_BIG,	   /* up to two pages and a half anywhere, rep movsb */
	D_KERNEL,  /* a system call writes (see kernel_write) */
	D_COUNT
};

static const char *const dname[D_COUNT] = {
	"hot8", "hot1", "hotcpy", "atomic", "restore",
	"same", "zero", "any",	  "big",    "kernel",
};

/* Percent of writes of each kind. */
static const unsigned dweight[D_COUNT] = {28, 8, 8, 4, 10, 5, 6, 12, 2, 17};

#define NHOT 24
#define NSTEADY 16
#define MAXW (2 * 4096 + 512)
#define RECENT 512
#define NCARDS 7 /* 64 .. 4096 */

typedef struct precision {
	uint64_t epochs, truth_lines, reported_lines, changed_bytes;
	uint64_t cards_truth_bytes, cards_reported_bytes, pages_truth;
} precision;

typedef struct dsched {
	orc_sched b; /* first */
	size_t twin_cap; /* bytes: checked against stats.twin_bytes */
	uint8_t *hot[NHOT];
	uint8_t *recent[RECENT]; /* lines changed this epoch */
	size_t nrecent;
	uint64_t peeks; /* FG_COLLECT_PEEK calls made */
	/* Counts over the whole test. */
	uint64_t writes, by[D_COUNT];
	precision all, card[NCARDS], steady;
} dsched;

static unsigned card_index(size_t card)
{
	return (unsigned)__builtin_ctzll(card) - 6;
}

static uint8_t *hot_byte(dsched *s, size_t nhot)
{
	return s->hot[orc_below(&s->b.g, nhot)] +
	       orc_below(&s->b.g, orc_page());
}

/* Clip len so that [p, p+len) stays in p's region. */
static size_t clip(dsched *s, const uint8_t *p, size_t len)
{
	orc_region *g = orc_find(s->b.r, s->b.n, p);

	cr_assert_not_null(g);
	return len < (size_t)(g->base + g->len - p)
		       ? len
		       : (size_t)(g->base + g->len - p);
}

/* Remember the line of p for D_RESTORE. */
static void remember(dsched *s, const uint8_t *p)
{
	s->recent[s->nrecent++ % RECENT] =
		(uint8_t *)((uintptr_t)p / ORC_LINE * ORC_LINE);
}

/* Log a write of [p, p+len) with the oracle and remember its first line. */
static void logw(dsched *s, const uint8_t *p, size_t len)
{
	orc_log(s->b.r, s->b.n, p, len);
	remember(s, p);
}

/* One kernel write of len bytes at dst (orc_kernel_write), as in
 * test_oracle.c: without FG_CAP_KERNEL_WRITES (mprotect) fg_mark_dirty
 * first 3 times in 4 (without it the call may fail with EFAULT only); for
 * the other backends sometimes, and the call must simply work. */
static void kernel_write(dsched *s, uint8_t *dst, size_t len)
{
	orc_kop m = (orc_kop)orc_below(&s->b.g, ORC_K_COUNT);
	bool announce = !(fg_backend_caps(s->b.id) & FG_CAP_KERNEL_WRITES);
	bool mark = announce ? orc_below(&s->b.g, 4) != 0
			     : orc_below(&s->b.g, 8) == 0;

	if (orc_kernel_write(&s->b, m, mark, dst, len))
		remember(s, dst);
}

/* 1..max differing bytes at p (clipped to its region), memcpy'd. */
static void copy_differing(dsched *s, uint8_t *p, size_t max)
{
	size_t len = clip(s, p, 1 + orc_below(&s->b.g, max));

	orc_differ(&s->b, p, len);
	memcpy(p, s->b.src, len);
	logw(s, p, len);
}

static enum dop pick_op(dsched *s)
{
	unsigned x = (unsigned)orc_below(&s->b.g, 100);

	for (int i = 0; i < D_COUNT; i++) {
		if (x < dweight[i])
			return (enum dop)i;
		x -= dweight[i];
	}
	return D_HOT8;
}

static void do_write(dsched *s, enum dop op)
{
	uint8_t *p;
	size_t len;

	switch (op) {
	case D_HOT8: {
		uint64_t v;

		p = hot_byte(s, NHOT);
		if (orc_below(&s->b.g, 4))
			p = (uint8_t *)((uintptr_t)p & ~(uintptr_t)7);
		if (clip(s, p, 8) < 8)
			p = orc_page_of(p); /* unaligned at a region's end */
		orc_differ(&s->b, p, 8);
		memcpy(&v, s->b.src, 8);
		*(volatile orc_u64_unaligned *)p = v;
		logw(s, p, 8);
		break;
	}
	case D_HOT1:
		p = hot_byte(s, NHOT);
		*(volatile uint8_t *)p =
			(uint8_t)(*p + 1 + orc_below(&s->b.g, 255));
		logw(s, p, 1);
		break;
	case D_HOTCPY:
		copy_differing(s, hot_byte(s, NHOT), 128);
		break;
	case D_ATOMIC:
		p = (uint8_t *)((uintptr_t)hot_byte(s, NHOT) & ~(uintptr_t)7);
		__atomic_fetch_add((uint64_t *)p, 1 + orc_below(&s->b.g, 1000),
				   __ATOMIC_RELAXED);
		logw(s, p, 8);
		break;
	case D_RESTORE: {
		orc_region *g;
		size_t n = s->nrecent < RECENT ? s->nrecent : RECENT;

		if (!n) {
			do_write(s, D_HOT8);
			return;
		}
		p = s->recent[orc_below(&s->b.g, n)];
		g = orc_find(s->b.r, s->b.n, p);
		memcpy(p, g->snap + (p - g->base), ORC_LINE);
		orc_log(s->b.r, s->b.n, p, ORC_LINE);
		break;
	}
	case D_SAME:
		p = (uint8_t *)((uintptr_t)(orc_below(&s->b.g, 2)
						    ? hot_byte(s, NHOT)
						    : orc_anywhere(&s->b)) &
				~(uintptr_t)7);
		*(volatile uint64_t *)p = *(volatile uint64_t *)p;
		orc_log(s->b.r, s->b.n, p, 8);
		break;
	case D_ZERO:
		p = hot_byte(s, NHOT);
		len = clip(s, p, 1 + orc_below(&s->b.g, 192));
		memset(p, 0, len);
		logw(s, p, len);
		break;
	case D_ANY:
		copy_differing(s, orc_anywhere(&s->b), 512);
		break;
	case D_BIG:
		p = orc_anywhere(&s->b);
		len = clip(s, p, 1 + orc_below(&s->b.g, MAXW));
		orc_differ(&s->b, p, len);
		orc_rep_movsb(p, s->b.src, len);
		logw(s, p, len);
		break;
	case D_KERNEL:
		p = orc_below(&s->b.g, 2) ? hot_byte(s, NHOT)
					  : orc_anywhere(&s->b);
		len = clip(s, p,
			   1 + orc_below(&s->b.g,
					 orc_below(&s->b.g, 16) ? 512 : MAXW));
		kernel_write(s, p, len);
		break;
	default:
		break;
	}
	s->writes++;
	s->by[op]++;
}

static void pick_hot(dsched *s, size_t first)
{
	for (size_t i = first; i < NHOT; i++)
		s->hot[i] = orc_page_of(orc_anywhere(&s->b));
}

static void add_precision(precision *p, const orc_result *res, size_t card)
{
	p->epochs++;
	p->truth_lines += res->truth_lines;
	p->reported_lines += res->reported_lines;
	p->changed_bytes += res->changed_bytes;
	p->cards_truth_bytes += res->cards_truth * card;
	p->cards_reported_bytes += res->cards_reported * card;
	p->pages_truth += res->pages_truth;
}

/* Collect, compare with the oracle (changed lines only), assert nothing
 * was missed and the form and the twin cap hold, and start the next
 * epoch.  expect_card: the card size this collection must use (0: don't
 * check).  steady: also count the epoch in the steady-phase precision. */
static void dsched_check(dsched *s, orc_method m, size_t expect_card,
			 bool steady)
{
	size_t card;
	orc_result res;
	fg_stats st;

	st = orc_stats(s->b.t);
	cr_assert_leq(st.twin_bytes, s->twin_cap,
		      "%s: stats.twin_bytes %" PRIu64 " before the collection, "
		      "over the twin cap of %zu",
		      orc_where(&s->b), st.twin_bytes, s->twin_cap);
	card = orc_check(s->b.t, s->b.r, s->b.n, m, expect_card,
			 orc_where(&s->b), &res);
	if (!(fg_backend_caps(s->b.id) & FG_CAP_TRACKS)) {
		/* No hook, nothing to validate eager twins: pages whole. */
		for (size_t i = 0; i < s->b.n; i++)
			cr_assert(
				orc_reported_all(s->b.r, s->b.n, s->b.r[i].base,
						 s->b.r[i].len),
				"%s none seed=%" PRIu64 " epoch %u: with DIFF "
				"the none backend reported part of the %s "
				"region clean: it has no twins to diff "
				"with, everything must read dirty",
				s->b.test, s->b.seed, s->b.epoch,
				s->b.r[i].kind);
	}
	st = orc_stats(s->b.t);
	cr_assert_leq(st.twin_bytes, s->twin_cap,
		      "%s: stats.twin_bytes %" PRIu64 " after the collection, "
		      "over the twin cap of %zu",
		      orc_where(&s->b), st.twin_bytes, s->twin_cap);
	add_precision(&s->all, &res, card);
	add_precision(&s->card[card_index(card)], &res, card);
	if (steady)
		add_precision(&s->steady, &res, card);
	s->b.epoch++;
	s->nrecent = 0;
	orc_snapshot(s->b.r, s->b.n);
}

/* Epoch sizes spread over three orders of magnitude, zero included. */
static unsigned epoch_writes(dsched *s)
{
	unsigned shift = (unsigned)orc_below(&s->b.g, 11);

	return (unsigned)orc_below(&s->b.g, (1u << shift) + 1);
}

/* One steady epoch: every one of NSTEADY fixed hot pages gets 1-3
 * differing 8-byte stores, sometimes a restore of the first and a store
 * of the value already there, then one more differing store (so every hot
 * page changes in every epoch and stays hot). */
static void steady_epoch(dsched *s)
{
	for (size_t h = 0; h < NSTEADY; h++) {
		unsigned k = 1 + (unsigned)orc_below(&s->b.g, 3);
		uint8_t *first = NULL;

		for (unsigned i = 0; i <= k; i++) {
			uint8_t *p = s->hot[h] + orc_below(&s->b.g,
							   orc_page() / 8) * 8;
			uint64_t v;

			orc_differ(&s->b, p, 8);
			memcpy(&v, s->b.src, 8);
			*(volatile uint64_t *)p = v;
			logw(s, p, 8);
			s->writes++;
			s->by[D_HOT8]++;
			if (!first)
				first = p;
			if (i + 1 == k && orc_below(&s->b.g, 3) == 0) {
				orc_region *g = orc_find(s->b.r, s->b.n, first);
				uint8_t *l = (uint8_t *)((uintptr_t)first /
							 ORC_LINE * ORC_LINE);

				memcpy(l, g->snap + (l - g->base), ORC_LINE);
				orc_log(s->b.r, s->b.n, l, ORC_LINE);
				s->by[D_RESTORE]++;
				s->writes++;
			}
			if (i == 0 && orc_below(&s->b.g, 3) == 0) {
				uint64_t *q =
					(uint64_t *)(s->hot[h] +
						     orc_below(&s->b.g,
							       orc_page() / 8) *
							     8);

				*(volatile uint64_t *)q = *(volatile uint64_t *)q;
				orc_log(s->b.r, s->b.n, q, 8);
				s->by[D_SAME]++;
				s->writes++;
			}
		}
	}
}

static void print_precision(const dsched *s, const char *what,
			    const precision *p, size_t card)
{
	fprintf(stderr,
		"%s %-10s %s card %4zu: epochs=%" PRIu64
		" changed bytes=%" PRIu64 " changed-line bytes=%" PRIu64
		" reported bytes=%" PRIu64
		" ratio=%.2f (card-level truth %" PRIu64 " -> %.2f; page-level "
		"would be %.2f)\n",
		s->b.test, orc_bname(s->b.id), what, card, p->epochs,
		p->changed_bytes, p->truth_lines * ORC_LINE,
		p->reported_lines * ORC_LINE,
		orc_ratio(p->reported_lines, p->truth_lines),
		p->cards_truth_bytes,
		orc_ratio(p->cards_reported_bytes, p->cards_truth_bytes),
		orc_ratio(p->pages_truth * orc_page(),
			  p->truth_lines * ORC_LINE));
}

static void dsched_summary(const dsched *s, const fg_stats *st)
{
	char kinds[256] = "";
	size_t k = 0;

	for (int i = 0; i < D_COUNT && k < sizeof kinds; i++)
		k += (size_t)snprintf(kinds + k, sizeof kinds - k, "%s%s %" PRIu64,
				      i ? ", " : "", dname[i], s->by[i]);
	fprintf(stderr,
		"%s %-10s: seed=%" PRIu64 " writes=%" PRIu64 " (%s; kernel "
		"marked %" PRIu64 ", EFAULT %" PRIu64 ") epochs=%" PRIu64
		" changed bytes=%" PRIu64 " changed-line bytes=%" PRIu64
		" reported bytes=%" PRIu64 " ratio=%.2f missed=0 | twins "
		"hook=%" PRIu64 " eager=%" PRIu64 " invalid=%" PRIu64
		" pages diffed=%" PRIu64 " whole=%" PRIu64
		" twin_bytes=%" PRIu64 " diff %.2f us/diffed page\n",
		s->b.test, orc_bname(s->b.id), s->b.seed, s->writes, kinds,
		s->b.kw.marked, s->b.kw.efault, s->all.epochs,
		s->all.changed_bytes, s->all.truth_lines * ORC_LINE,
		s->all.reported_lines * ORC_LINE,
		orc_ratio(s->all.reported_lines, s->all.truth_lines),
		st->twins_hook, st->twins_eager, st->twins_invalid,
		st->pages_diffed, st->pages_whole, st->twin_bytes,
		st->pages_diffed
			? (double)st->diff_ns / (double)st->pages_diffed / 1e3
			: 0.0);
}

/* What the DIFF statistics must show after a schedule that wrote the same
 * pages in consecutive epochs. */
static void check_diff_stats(const char *test, fg_backend_id id,
			     uint64_t seed, const fg_stats *st)
{
	if (orc_twinning(id))
		cr_assert_gt(st->twins_eager, 0,
			     "%s %s seed=%" PRIu64 ": stats.twins_eager is 0 "
			     "although pages were written in many consecutive "
			     "epochs: the eager-twin path was never taken",
			     test, orc_bname(id), seed);
	if (orc_twin_hook(id))
		cr_assert_gt(st->twins_hook, 0,
			     "%s %s seed=%" PRIu64 ": stats.twins_hook is 0 on "
			     "a backend with a first-write hook",
			     test, orc_bname(id), seed);
	else
		cr_assert_eq(st->twins_hook, 0,
			     "%s %s: stats.twins_hook %" PRIu64 " on a backend "
			     "without a first-write hook",
			     test, orc_bname(id), st->twins_hook);
	if (orc_twinning(id)) {
		cr_assert_gt(st->pages_diffed, 0,
			     "%s %s seed=%" PRIu64 ": no page was ever diffed",
			     test, orc_bname(id), seed);
	} else {
		cr_assert(!st->pages_diffed && !st->twins_eager &&
				  !st->twins_invalid && !st->twin_bytes,
			  "%s %s: a backend without hook or validation "
			  "reports twins (diffed %" PRIu64 ", eager %" PRIu64
			  ", invalid %" PRIu64 ", bytes %" PRIu64 ")",
			  test, orc_bname(id), st->pages_diffed,
			  st->twins_eager, st->twins_invalid, st->twin_bytes);
		cr_assert_gt(st->pages_whole, 0, "%s %s: no page read whole",
			     test, orc_bname(id));
	}
}

static dsched *dsched_start_policy(fg_backend_id id, size_t card,
				   size_t twin_cap, orc_region r[3],
				   size_t scale, const char *test,
				   fg_tracker **t, unsigned policy)
{
	dsched *s;
	size_t tracked = 4 * scale;

	ORC_REQUIRE_BACKEND(id);
	s = calloc(1, sizeof *s);
	cr_assert_not_null(s);
	*t = orc_diff_tracker(id, card, twin_cap, policy);
	orc_sched_start(&s->b, *t, r, scale, true, test);
	s->twin_cap = twin_cap ? twin_cap : tracked / 2;
	pick_hot(s, 0);
	return s;
}

static dsched *dsched_start(fg_backend_id id, size_t card, size_t twin_cap,
			    orc_region r[3], size_t scale, const char *test,
			    fg_tracker **t)
{
	return dsched_start_policy(id, card, twin_cap, r, scale, test, t,
				   FG_TWIN_HOT);
}

static const size_t all_cards[NCARDS] = {64, 128, 256, 512, 1024, 2048, 4096};

/* card: the card size of the whole run, or 0 to change it at random
 * before every collection (then only the iterator is used, so the card
 * size of every collection is the one fg_card_size reports after it). */
static void random_diff(fg_backend_id id, size_t card, uint64_t target_writes,
			const char *test)
{
	orc_region r[3];
	fg_tracker *t;
	dsched *s = dsched_start(id, card, 0, r, 256 * KiB, test, &t);
	fg_stats st;

	while (s->writes < target_writes || s->b.epoch < 100) {
		unsigned nw = epoch_writes(s);
		size_t expect = 0;

		/* The hot set drifts: pages cool down and warm up. */
		if (orc_below(&s->b.g, 3) == 0)
			s->hot[orc_below(&s->b.g, NHOT)] =
				orc_page_of(orc_anywhere(&s->b));
		for (unsigned i = 0; i < nw; i++)
			do_write(s, pick_op(s));
		if (!card) {
			expect = all_cards[orc_below(&s->b.g, NCARDS)];
			int rc = fg_set_card_size(t, expect);
			cr_assert_eq(rc, 0, "fg_set_card_size(%zu) = %d (%s)",
				     expect, rc, fg_strerror(rc));
		}
		dsched_check(s, card && s->b.epoch % 2 ? ORC_BITMAP : ORC_ITER,
			     expect, false);
	}
	/* Steady phase: sparse writes to NSTEADY fixed hot pages.  After
	 * three epochs every one of them has a twin at every write (hook) or
	 * an eager twin (all three real backends), so the changed lines are
	 * what is reported. */
	if (card) {
		for (int e = 0; e < 14; e++) {
			steady_epoch(s);
			dsched_check(s, e % 2 ? ORC_BITMAP : ORC_ITER, 0,
				     e >= 3);
		}
	}
	st = orc_stats(t);
	dsched_summary(s, &st);
	for (unsigned i = 0; i < NCARDS; i++)
		if (s->card[i].epochs && !card)
			print_precision(s, "random", &s->card[i],
					all_cards[i]);
	if (card) {
		print_precision(s, "random", &s->all, card);
		print_precision(s, "steady", &s->steady, card);
	}
	check_diff_stats(test, id, s->b.seed, &st);
	if (card && orc_twinning(id)) {
		double lr = orc_ratio(s->steady.reported_lines,
				  s->steady.truth_lines);
		double cr = orc_ratio(s->steady.cards_reported_bytes,
				  s->steady.cards_truth_bytes);

		cr_assert_gt(s->steady.truth_lines, 0);
		/* Sparse writes: page-level reporting would be ~20x. */
		if (card == 64)
			cr_assert_leq(lr, 1.25,
				      "%s %s seed=%" PRIu64 ": steady sparse "
				      "writes on hot pages at 64-byte cards: "
				      "reported %.2fx the changed lines (page "
				      "level: %.2fx); DIFF should report "
				      "about the truth",
				      test, orc_bname(id), s->b.seed, lr,
				      orc_ratio(s->steady.pages_truth *
							orc_page(),
						s->steady.truth_lines *
							ORC_LINE));
		cr_assert_leq(cr, 1.25,
			      "%s %s seed=%" PRIu64 ": steady phase at card "
			      "%zu reported %.2fx the bytes of the cards "
			      "holding changed lines",
			      test, orc_bname(id), s->b.seed, card, cr);
	}
	if (!(fg_backend_caps(id) & FG_CAP_TRACKS)) {
		uint64_t pages = 0;

		for (int i = 0; i < 3; i++)
			pages += r[i].len / orc_page();
		/* Every page of every collection read whole (the bitmap
		 * path collects region by region: one collection each). */
		cr_assert_eq(st.pages_whole, st.dirty_pages,
			     "none: %" PRIu64 " pages read whole, %" PRIu64
			     " reported",
			     st.pages_whole, st.dirty_pages);
		cr_assert_geq(st.pages_whole, pages * s->all.epochs);
	}
	orc_sched_end(&s->b);
	free(s);
}

static void random_c64(fg_backend_id id)
{
	random_diff(id, 64, 12000, "random_c64");
}

static void random_c256(fg_backend_id id)
{
	random_diff(id, 256, 8000, "random_c256");
}

static void random_c1k(fg_backend_id id)
{
	random_diff(id, 1024, 8000, "random_c1k");
}

static void random_c4k(fg_backend_id id)
{
	random_diff(id, 4096, 8000, "random_c4k");
}

static void random_cmix(fg_backend_id id)
{
	random_diff(id, 0, 12000, "random_cmix");
}

PER_BACKEND(random_c64)
ORC_DIGEST(PER_BACKEND, random_c64)
PER_BACKEND(random_c256)
PER_BACKEND(random_c1k)
PER_BACKEND(random_c4k)
PER_BACKEND(random_cmix)
ORC_DIGEST(PER_BACKEND, random_cmix)

/* ------------------------------------------------------------------ */
/* FG_COLLECT_PEEK under DIFF: peeks between collections compare with the
 * twins as a collection would, and take, refresh or drop none.  Each must
 * report every line changed since the epoch began, and so must the
 * collection after them; in a steady phase on hot pages (twinned) the
 * peeks and the collections after them are as precise as collections
 * alone: the peeks left the twins intact. */

static void peek_check(dsched *s, precision *p)
{
	orc_result res;

	orc_check(s->b.t, s->b.r, s->b.n, ORC_PEEK, 0, orc_where(&s->b),
		  &res);
	s->peeks++;
	if (p)
		add_precision(p, &res, 64);
}

static void peek_diff(fg_backend_id id, unsigned policy, const char *test)
{
	orc_region r[3];
	fg_tracker *t;
	dsched *s = dsched_start_policy(id, 64, 0, r, 256 * KiB, test, &t,
					policy);
	precision peeks = {0};

	if (!(fg_tracker_caps(t) & FG_CAP_PEEK)) {
		cr_assert_eq(fg_collect_flags(t, NULL, FG_COLLECT_PEEK),
			     -ENOTSUP);
		orc_sched_end(&s->b);
		free(s);
		cr_skip_test("%s: no FG_CAP_PEEK (-ENOTSUP checked; the "
			     "page-precision case is oracle/random_peek)",
			     orc_bname(id));
	}
	while (s->writes < 8000 || s->b.epoch < 60) {
		unsigned nw = epoch_writes(s);
		unsigned np = (unsigned)orc_below(&s->b.g, 4);

		if (orc_below(&s->b.g, 3) == 0)
			s->hot[orc_below(&s->b.g, NHOT)] =
				orc_page_of(orc_anywhere(&s->b));
		for (unsigned k = 0; k <= np; k++) {
			for (unsigned i = 0; i < nw / (np + 1); i++)
				do_write(s, pick_op(s));
			if (k < np)
				peek_check(s, NULL);
		}
		dsched_check(s, ORC_ITER, 0, false);
	}
	for (int e = 0; e < 12; e++) {
		steady_epoch(s);
		peek_check(s, e >= 3 ? &peeks : NULL);
		peek_check(s, NULL);
		dsched_check(s, ORC_ITER, 0, e >= 3);
	}
	if (orc_twinning(id)) {
		double pr = orc_ratio(peeks.reported_lines, peeks.truth_lines);
		double cr = orc_ratio(s->steady.reported_lines,
				      s->steady.truth_lines);

		cr_assert_leq(pr, 1.25,
			      "%s %s seed=%" PRIu64 ": peeks on twinned hot "
			      "pages reported %.2fx the changed lines: not "
			      "compared with the twins",
			      test, orc_bname(id), s->b.seed, pr);
		cr_assert_leq(cr, 1.25,
			      "%s %s seed=%" PRIu64 ": collections after "
			      "peeks reported %.2fx the changed lines: the "
			      "peeks lost the twins",
			      test, orc_bname(id), s->b.seed, cr);
		fprintf(stderr,
			"%s %-10s: steady phase: peeks %.2fx, collections "
			"%.2fx the changed lines\n",
			test, orc_bname(id), pr, cr);
	}
	cr_assert_eq(orc_stats(t).peeks, s->peeks, "%s %s: stats.peeks %" PRIu64
		     ", %" PRIu64 " peeks made", test, orc_bname(id),
		     orc_stats(t).peeks, s->peeks);
	orc_sched_end(&s->b);
	free(s);
}

static void peek_hot(fg_backend_id id)
{
	peek_diff(id, FG_TWIN_HOT, "peek_hot");
}

static void peek_sticky(fg_backend_id id)
{
	peek_diff(id, FG_TWIN_STICKY, "peek_sticky");
}

PER_BACKEND(peek_hot)
ORC_DIGEST(PER_BACKEND, peek_hot)
PER_BACKEND(peek_sticky)
ORC_DIGEST(PER_BACKEND, peek_sticky)

/* ------------------------------------------------------------------ */
/* Twin cap: 4 pages of twins for 256 pages of regions. */

static void twin_cap(fg_backend_id id)
{
	const size_t cap = 4 * orc_page();
	orc_region r[3];
	fg_tracker *t;
	dsched *s = dsched_start(id, 64, cap, r, 64 * KiB, "twin_cap", &t);
	fg_stats st;

	while (s->b.epoch < 80) {
		unsigned nw = (unsigned)orc_below(&s->b.g, 200);

		if (orc_below(&s->b.g, 3) == 0)
			s->hot[orc_below(&s->b.g, NHOT)] =
				orc_page_of(orc_anywhere(&s->b));
		for (unsigned i = 0; i < nw; i++)
			do_write(s, pick_op(s));
		/* Mid-epoch too: hooks took twins. */
		st = orc_stats(t);
		cr_assert_leq(st.twin_bytes, cap,
			      "twin_cap %s seed=%" PRIu64 " epoch %u: %" PRIu64
			      " bytes of twins held, the cap is %zu",
			      orc_bname(id), s->b.seed, s->b.epoch,
			      st.twin_bytes, cap);
		dsched_check(s, s->b.epoch % 2 ? ORC_BITMAP : ORC_ITER, 0,
			     false);
	}
	st = orc_stats(t);
	dsched_summary(s, &st);
	cr_assert_gt(st.pages_whole, 0,
		     "twin_cap %s: with 4 pages of twins for %d hot pages no "
		     "page read whole",
		     orc_bname(id), NHOT);
	if (orc_twinning(id))
		cr_assert_gt(st.pages_diffed, 0,
			     "twin_cap %s: no page diffed: the cap left no "
			     "twin at all",
			     orc_bname(id));
	orc_sched_end(&s->b);
	free(s);
}

PER_BACKEND(twin_cap)

/* ------------------------------------------------------------------ */
/* Threads: four writers, the main thread collecting, DIFF on, the card
 * size changing between rounds.
 *
 * Rule, from the contract (as in test_oracle.c's threads test): read every
 * slot (S) after collection N returned, read them again (T), collect
 * (N+1); a slot with T != S changed after N returned and before N+1 began,
 * and must lie in a range of N+1.  Under DIFF that rule holds only if a
 * slot never returns to a value it had: the twin N+1 diffs against was
 * taken at some point during or after collection N, and the page is read
 * at some point during N+1, so a slot that went back to its twin's value
 * may rightly read clean.  So no value is ever stored twice (a counter
 * per writer, tagged with the writer): any change after the twin was taken
 * leaves the slot different from the twin.
 *
 * Writers put most stores on a hot set of pages, which the main thread
 * rotates now and then: hot pages are dirty in every epoch and get eager
 * twins, which on uffd-async are copied while the writers write them and
 * must be validated (twins_invalid); hook twins race the collector and
 * each other on mprotect and uffd-sync.  A fifth thread writes through the
 * kernel the documented way: fg_mark_dirty, then pread(2) into the slot,
 * so pages become writable without a fault while hooks are in flight. */

#define WRITERS 4 /* plus one kernel writer */
#define CHOT 16

typedef struct cwriter {
	pthread_t th;
	fg_tracker *t;
	fg_backend_id id;
	orc_region *r;
	size_t nr;
	_Atomic(uint64_t *) *hot; /* CHOT page addresses */
	unsigned tid;		  /* WRITERS: the kernel writer */
	uint64_t seed, stores, efault;
	int fd, err;		  /* kernel writer: its file; a failure */
	_Atomic int *stop;
} cwriter;

/* A slot: on a hot page 7 times in 8, else anywhere. */
static uint64_t *cw_slot(cwriter *w, orc_rng *g)
{
	if (orc_below(g, 8)) {
		uint64_t *pg = atomic_load_explicit(&w->hot[orc_below(g, CHOT)],
						    memory_order_relaxed);

		return pg + orc_below(g, orc_page() / 8);
	}
	orc_region *r = &w->r[orc_below(g, w->nr)];

	return (uint64_t *)r->base + orc_below(g, r->len / 8);
}

/* Values are (counter << 3 | writer): no value is ever stored twice, so a
 * slot never goes back to a value it had (see above). */
static void *cwriter_main(void *arg)
{
	cwriter *w = arg;
	orc_rng g;
	uint64_t ctr = 0;

	orc_rng_init(&g, w->seed);
	while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
		for (int k = 0; k < 64; k++)
			__atomic_store_n(cw_slot(w, &g), ++ctr << 3 | w->tid,
					 __ATOMIC_RELAXED);
	}
	w->stores = ctr;
	return NULL;
}

/* The kernel writer: fg_mark_dirty on the slot, then pread(2) writes it.
 * On mprotect a collection between the two re-protects the page and the
 * pread fails with EFAULT: mark and try again. */
static void *kwriter_main(void *arg)
{
	cwriter *w = arg;
	orc_rng g;
	uint64_t ctr = 0;

	orc_rng_init(&g, w->seed);
	while (!atomic_load_explicit(w->stop, memory_order_relaxed) &&
	       !w->err) {
		uint64_t *slot = cw_slot(w, &g), v = ++ctr << 3 | w->tid;

		if (pwrite(w->fd, &v, 8, 0) != 8) {
			w->err = errno ? errno : EIO;
			break;
		}
		for (;;) {
			int rc = fg_mark_dirty(w->t, slot, 8);
			ssize_t k;

			if (rc) {
				w->err = -rc;
				break;
			}
			k = pread(w->fd, slot, 8, 0);
			if (k == 8)
				break;
			if (k < 0 && errno == EFAULT &&
			    !(fg_backend_caps(w->id) & FG_CAP_KERNEL_WRITES)) {
				w->efault++;
				continue;
			}
			w->err = k < 0 ? errno : EIO;
			break;
		}
	}
	w->stores = ctr;
	return NULL;
}

static uint64_t *random_page(orc_rng *g, orc_region *r, size_t n)
{
	orc_region *x = &r[orc_below(g, n)];

	return (uint64_t *)(x->base + orc_below(g, x->len / orc_page()) *
					      orc_page());
}

/* The first missed slot in words, and where the first few were. */
typedef struct missrec {
	uint64_t missed;
	char first[700];
	char pages[1024];
	size_t plen;
} missrec;

static void note_miss(missrec *m, orc_region *r, int i, size_t k,
		      _Atomic(uint64_t *) *hot, unsigned round, size_t card,
		      uint64_t from, uint64_t to, const char *rule)
{
	uint64_t *slot = (uint64_t *)r[i].base + k;
	uint8_t *pg = orc_page_of(slot);
	bool hotp = false;

	for (int h = 0; h < CHOT; h++)
		hotp |= (uint8_t *)atomic_load(&hot[h]) == pg;
	if (m->missed < 8 && m->plen < sizeof m->pages)
		m->plen += (size_t)snprintf(
			m->pages + m->plen, sizeof m->pages - m->plen,
			" [%p +%#zx: page %s, %s]", (void *)pg,
			(size_t)((uint8_t *)slot - pg),
			orc_reported(r, 2, pg, orc_page())
				? "partly reported"
				: "not reported at all",
			hotp ? "hot" : "not hot");
	if (!m->missed++)
		snprintf(m->first, sizeof m->first,
			 "round %u, collection N+1 = %u, card %zu: MISSED "
			 "slot %p (%s region + %#zx, last stored by writer "
			 "%u of 0-3 storing, 4 fg_mark_dirty+pread): it went "
			 "from %#" PRIx64 " to %#" PRIx64 "; %s",
			 round, round + 1, card, (void *)slot, r[i].kind,
			 k * 8, (unsigned)(to & 7), from, to, rule);
}

static void threads(fg_backend_id id)
{
	static const size_t cards[] = {64, 256, 1024, 4096};
	const char *test = "threads";
	/* Rounds until the time is up; the none backend has nothing to
	 * race.  A round must also have been checked at every card size. */
	const uint64_t run_ns = id == FG_BACKEND_NONE ? 2000000000u
						       : 15000000000u;
	const unsigned min_rounds = 200;
	const uint64_t max_ns = 30000000000u;
	_Atomic(uint64_t *) hot[CHOT];
	_Atomic int stop = 0;
	cwriter w[WRITERS + 1];
	orc_region r[2];
	uint64_t *S[2], *T[2], *P[2], *prevrep[2];
	uint64_t seed, checked = 0, checked_during = 0, missed = 0, t0,
		stores = 0;
	missrec mr = {0};
	uint64_t rounds_at[4] = {0}, reported_lines = 0, changed_lines = 0;
	unsigned rounds = 0;
	char ctx[160];
	size_t card = 0;
	fg_tracker *t;
	orc_result res;
	orc_rng g;
	fg_stats st;

	ORC_REQUIRE_BACKEND(id);
	seed = orc_seed(test);
	orc_rng_init(&g, seed);
	t = orc_diff_tracker(id, 64, 0, FG_TWIN_HOT);
	{
		void *a = orc_map_anon(MiB, NULL);
		void *b = orc_map_memfd(512 * KiB, NULL);

		cr_assert(a && b, "mmap: %s", strerror(errno));
		orc_fill_random(&g, a, MiB / 2);
		cr_assert_eq(orc_region_init(&r[0], a, MiB, "anon"), 0);
		cr_assert_eq(orc_region_init(&r[1], b, 512 * KiB, "memfd"), 0);
	}
	for (int i = 0; i < 2; i++) {
		r[i].changed_only = true;
		orc_reg(t, &r[i]);
		S[i] = malloc(r[i].len);
		T[i] = malloc(r[i].len);
		P[i] = malloc(r[i].len);
		prevrep[i] = calloc((r[i].nlines + 63) / 64, 8);
		cr_assert(S[i] && T[i] && P[i] && prevrep[i]);
	}
	for (int i = 0; i < CHOT; i++)
		atomic_init(&hot[i], random_page(&g, r, 2));
	for (unsigned i = 0; i <= WRITERS; i++) {
		char path[] = "/tmp/fg-diff-kw-XXXXXX";

		w[i] = (cwriter){.t = t, .id = id, .r = r, .nr = 2, .hot = hot,
				 .tid = i, .seed = orc_next(&g), .fd = -1,
				 .stop = &stop};
		if (i == WRITERS) {
			w[i].fd = mkostemp(path, O_CLOEXEC);
			cr_assert_geq(w[i].fd, 0, "mkstemp: %s",
				      strerror(errno));
			unlink(path);
		}
		cr_assert_eq(pthread_create(&w[i].th, NULL,
					    i == WRITERS ? kwriter_main
							 : cwriter_main,
					    &w[i]),
			     0);
	}
	snprintf(ctx, sizeof ctx, "%s %s seed=%" PRIu64, test, orc_bname(id),
		 seed);
	orc_collect_ok(t, r, 2, ORC_ITER, 0, ctx);
	t0 = orc_now_ns();
	for (unsigned round = 0;; round++) {
		uint64_t el = orc_now_ns() - t0;
		size_t want = 0;

		if (el > max_ns ||
		    (el > run_ns && round >= min_rounds && rounds_at[0] &&
		     rounds_at[1] && rounds_at[2] && rounds_at[3]))
			break;
		rounds = round + 1;
		if (round % 16 == 15) /* a hot page cools, another warms */
			atomic_store(&hot[orc_below(&g, CHOT)],
				     random_page(&g, r, 2));
		if (orc_below(&g, 2)) {
			want = cards[orc_below(&g, 4)];
			cr_assert_eq(fg_set_card_size(t, want), 0);
		}
		orc_snap_words(r, 2, S);
		orc_spin_us((unsigned)orc_below(&g, 300));
		orc_snap_words(r, 2, T);
		if (orc_below(&g, 2)) {
			want = cards[orc_below(&g, 4)];
			cr_assert_eq(fg_set_card_size(t, want), 0);
		}
		snprintf(ctx, sizeof ctx, "%s %s seed=%" PRIu64 " round %u",
			 test, orc_bname(id), seed, round);
		card = orc_collect_ok(t, r, 2,
				      round % 4 == 3 ? ORC_BITMAP : ORC_ITER,
				      want, ctx);
		rounds_at[card_index(card) / 2]++;
		for (int i = 0; i < 2 && !missed; i++) {
			uint64_t *slots = (uint64_t *)r[i].base;

			for (size_t k = 0; k < r[i].len / 8; k++) {
				bool after = S[i][k] != T[i][k];
				bool during = round && P[i][k] != S[i][k];
				const char *rule;

				checked += after;
				checked_during += during;
				if (!after && !during)
					continue;
				if (orc_reported(r, 2, &slots[k], 8))
					continue;
				if (after) {
					rule = "it changed after collection N "
					       "returned and before N+1 "
					       "began, but N+1 reported it "
					       "clean";
				} else if (!((prevrep[i][k / 8 / 64] >>
					      (k / 8 % 64)) &
					     1)) {
					rule = "it changed between a read "
					       "before collection N began "
					       "and one after N returned, "
					       "but neither N nor N+1 "
					       "reported it";
				} else {
					continue;
				}
				note_miss(&mr, r, i, k, hot, round, card,
					  after ? S[i][k] : P[i][k],
					  after ? T[i][k] : S[i][k],
					  rule);
			}
		}
		missed = mr.missed;
		for (int i = 0; i < 2; i++) {
			uint64_t *x = P[i];

			P[i] = T[i]; /* T before this collection, for the next */
			T[i] = x;
			memcpy(prevrep[i], r[i].reported,
			       (r[i].nlines + 63) / 64 * 8);
		}
		for (int i = 0; i < 2; i++)
			for (size_t l = 0; l < r[i].nlines; l++)
				reported_lines +=
					(r[i].reported[l / 64] >> (l % 64)) & 1;
		if (missed)
			break;
	}
	atomic_store(&stop, 1);
	for (unsigned i = 0; i <= WRITERS; i++) {
		pthread_join(w[i].th, NULL);
		stores += w[i].stores;
	}
	close(w[WRITERS].fd);
	cr_assert_eq(w[WRITERS].err, 0,
		     "%s %s seed=%" PRIu64 ": the kernel writer failed: %s "
		     "(fg_mark_dirty, then pread into the marked slot)",
		     test, orc_bname(id), seed, strerror(w[WRITERS].err));
	cr_assert_gt(w[WRITERS].stores, 0, "the kernel writer never wrote");
	st = orc_stats(t);
	cr_assert_eq(missed, 0,
		     "%s %s seed=%" PRIu64 ": %" PRIu64 " slots missed in one "
		     "round (of %" PRIu64 " + %" PRIu64 " changes checked so "
		     "far); first: %s; missed slots:%s [twins hook=%" PRIu64
		     " eager=%" PRIu64 " invalid=%" PRIu64 "]",
		     test, orc_bname(id), seed, missed, checked, checked_during,
		     mr.first, mr.pages,
		     st.twins_hook,
		     st.twins_eager, st.twins_invalid);
	cr_assert_gt(checked, 0,
		     "%s %s: no slot changed between two snapshots in %u "
		     "rounds: the writers never ran, the check is vacuous",
		     test, orc_bname(id), rounds);
	if (orc_twinning(id))
		cr_assert_gt(st.twins_eager, 0,
			     "%s %s seed=%" PRIu64 ": no eager twin in %u rounds "
			     "of writes concentrated on %d hot pages",
			     test, orc_bname(id), seed, rounds, CHOT);
	if (orc_twin_hook(id))
		cr_assert_gt(st.twins_hook, 0,
			     "%s %s seed=%" PRIu64 ": no twin taken by the "
			     "first-write hook",
			     test, orc_bname(id), seed);
	if (id == FG_BACKEND_UFFD_ASYNC)
		cr_assert_gt(st.twins_invalid, 0,
			     "%s %s seed=%" PRIu64 ": no eager twin was ever "
			     "invalidated although four threads wrote the hot "
			     "pages throughout: the validation path was not "
			     "exercised",
			     test, orc_bname(id), seed);
	if (orc_twinning(id))
		cr_assert_gt(st.pages_diffed, 0);

	/* Quiet now.  Collections until one comes back empty (no eager twin
	 * left, every page protected), then 25 known 8-byte changes at
	 * 64-byte cards: a backend with a hook has a twin for each written
	 * page and must report exactly the changed lines; uffd-async has
	 * none and must report exactly the written pages; none: all. */
	cr_assert_eq(fg_set_card_size(t, 64), 0);
	snprintf(ctx, sizeof ctx, "%s %s seed=%" PRIu64, test, orc_bname(id),
		 seed);
	orc_quiet_epoch(t, r, 2, &g, 64, orc_twin_hook(id), ctx, &res, &card);
	changed_lines = res.truth_lines;
	st = orc_stats(t);
	fprintf(stderr,
		"%s %-10s: seed=%" PRIu64 " %u rounds (card 64/256/1k/4k: %" PRIu64
		"/%" PRIu64 "/%" PRIu64 "/%" PRIu64 ") in %.1f s, %" PRIu64
		" stores by %d threads + %" PRIu64 " fg_mark_dirty+pread (%" PRIu64
		" EFAULT retries), %" PRIu64 " slot changes checked between "
		"collections + %" PRIu64 " across one, "
		"missed=0, mean reported %.1f KiB/round | twins hook=%" PRIu64
		" eager=%" PRIu64 " invalid=%" PRIu64 " pages diffed=%" PRIu64
		" whole=%" PRIu64 "; quiet epoch: %" PRIu64 " changed lines, "
		"%" PRIu64 " reported\n",
		test, orc_bname(id), seed, rounds, rounds_at[0], rounds_at[1],
		rounds_at[2], rounds_at[3], (double)(orc_now_ns() - t0) / 1e9,
		stores - w[WRITERS].stores, WRITERS, w[WRITERS].stores,
		w[WRITERS].efault, checked, checked_during,
		(double)reported_lines * ORC_LINE / 1024.0 / (rounds ? rounds : 1),
		st.twins_hook, st.twins_eager, st.twins_invalid,
		st.pages_diffed, st.pages_whole, changed_lines,
		res.reported_lines);
	cr_assert_eq(fg_tracker_destroy(t), 0);
	for (int i = 0; i < 2; i++) {
		munmap(r[i].base, r[i].len);
		orc_region_fini(&r[i]);
		free(S[i]);
		free(T[i]);
		free(P[i]);
		free(prevrep[i]);
	}
}

PER_BACKEND(threads)
ORC_DIGEST(PER_BACKEND, threads)

/* ------------------------------------------------------------------ */
/* fork: the child writes, collects and destroys; the parent's oracle must
 * stay exact.  The child writes only private memory (its writes to shared
 * memory would be the parent's bytes too, written by another process). */

static void some_writes(dsched *s, int n)
{
	for (int k = 0; k < n; k++)
		do_write(s, pick_op(s));
}

static void fork_scenario(fg_backend_id id)
{
	orc_region r[3];
	fg_tracker *t;
	dsched *s = dsched_start(id, 64, 0, r, 128 * KiB, "fork", &t);
	fg_stats st;

	/* Hot pages first, so the fork happens with eager twins in place. */
	for (int e = 0; e < 4; e++) {
		some_writes(s, 100);
		dsched_check(s, ORC_ITER, 0, false);
	}
	for (int iter = 0; iter < 4; iter++) {
		pid_t pid;
		int go;

		some_writes(s, 200); /* dirty pages and twins at fork time */
		pid = orc_fork_child(t, &r[0], orc_next(&s->b.g), &go);
		some_writes(s, 200);
		orc_release_child(go);
		some_writes(s, 200);
		snprintf(s->b.ctx, sizeof s->b.ctx, "fork %s seed=%" PRIu64
			 " iteration %d", orc_bname(id), s->b.seed, iter);
		orc_wait_child(pid, s->b.ctx);
		dsched_check(s, iter % 2 ? ORC_BITMAP : ORC_ITER, 0, false);
		some_writes(s, 300);
		dsched_check(s, iter % 2 ? ORC_ITER : ORC_BITMAP, 0, false);
	}
	st = orc_stats(t);
	dsched_summary(s, &st);
	orc_sched_end(&s->b);
	free(s);
}

PER_BACKEND(fork_scenario)
ORC_DIGEST(PER_BACKEND, fork_scenario)

/* ------------------------------------------------------------------ */
/* Targeted races, each a thread C racing the main thread on one page Q,
 * repeated for a time budget (longer on the backends with a hook, where
 * twins are copied outside the collector). */

typedef struct racer {
	_Atomic int go;	    /* 1: run once; -1: exit */
	_Atomic int done;
	_Atomic unsigned delay_ns;
	int what;	    /* RACE_ZERO or RACE_STORE */
	uint8_t *target;
	_Atomic uint64_t value;
} racer;

enum { RACE_ZERO, RACE_STORE };

static void *racer_main(void *arg)
{
	racer *c = arg;

	for (;;) {
		int g;

		for (unsigned k = 0; !(g = atomic_load(&c->go)); k++)
			if (k > 2000)
				sched_yield(); /* cores oversubscribed */
		if (g < 0)
			return NULL;
		atomic_store(&c->go, 0);
		for (uint64_t e = orc_now_ns() + atomic_load(&c->delay_ns);
		     orc_now_ns() < e;)
			;
		if (c->what == RACE_ZERO)
			memset(c->target, 0, ORC_LINE);
		else
			*(volatile uint64_t *)c->target = atomic_load(&c->value);
		atomic_store(&c->done, 1);
	}
}

static void wait_done(racer *c)
{
	for (unsigned k = 0; !atomic_load(&c->done); k++)
		if (k > 2000)
			sched_yield();
}

/* Collect; bit i of the result: [a[i], a[i]+len) lies in one range. */
static unsigned collect_cover2(fg_tracker *t, const void *a0, const void *a1,
			       size_t len, int *n)
{
	const void *a[2] = {a0, a1};
	unsigned hit = 0;
	fg_iter it;
	fg_range rg;
	int more;

	*n = fg_collect(t, &it);
	cr_assert_geq(*n, 0, "fg_collect: %d (%s): %s", *n, fg_strerror(*n),
		      fg_last_error_detail());
	while ((more = fg_iter_next(&it, &rg)) == 1)
		for (int i = 0; i < 2; i++)
			if (a[i] && (uintptr_t)rg.addr <= (uintptr_t)a[i] &&
			    (uintptr_t)rg.addr + rg.len >=
				    (uintptr_t)a[i] + len)
				hit |= 1u << i;
	cr_assert_eq(more, 0);
	return hit;
}

static bool collect_covers(fg_tracker *t, const void *a, size_t len, int *n)
{
	return collect_cover2(t, a, NULL, len, n) & 1;
}

/* Thread C zeroes a whole 64-byte line of Q (all 0x11 before) while the
 * main thread collects: the line must be reported by that collection or
 * the next.  A twin that reads as zeros (its memory given back while a
 * hook was copying into it, say) hides exactly such a line. */
static void zero_during_collect(fg_backend_id id)
{
	const size_t ps = orc_page();
	/* Large enough that every collection's bookkeeping over the region's
	 * twins takes tens of microseconds. */
	const size_t len = orc_twin_hook(id) ? 64 * MiB : MiB;
	const uint64_t budget = orc_twin_hook(id) ? 2500000000u : 300000000u;
	uint64_t seed, t0, tries = 0, missed = 0, avg_ns = 1000;
	char miss[400] = "";
	fg_tracker *t;
	pthread_t th;
	racer c = {0};
	uint8_t *a;
	orc_rng g;
	int n;

	ORC_REQUIRE_BACKEND(id);
	seed = orc_seed("zero_during_collect");
	orc_rng_init(&g, seed);
	a = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	cr_assert_neq(a, MAP_FAILED, "mmap: %s", strerror(errno));
	t = orc_diff_tracker(id, 64, 0, FG_TWIN_HOT);
	cr_assert_eq(fg_register(t, a, len), 0);
	c.what = RACE_ZERO;
	cr_assert_eq(pthread_create(&th, NULL, racer_main, &c), 0);
	t0 = orc_now_ns();
	while (orc_now_ns() - t0 < budget) {
		uint8_t *q = a + orc_below(&g, 4) * ps;
		uint8_t *line = q + orc_below(&g, ps / ORC_LINE) * ORC_LINE;
		uint64_t c0;
		bool in_first;

		memset(q, 0x11, ps);
		for (int k = 0; k < 8; k++) /* until Q is clean */
			if (!collect_covers(t, q, ps, &n) && !n)
				break;
		/* Any collection may be raced; those that trim the twins'
		 * memory (every 64th today: tracker.c, refine) are where a
		 * lost twin shows, so race mostly those. */
		while (orc_below(&g, 8) && orc_stats(t).collections % 64 != 63)
			collect_covers(t, q, ps, &n);
		c.target = line;
		atomic_store(&c.done, 0);
		atomic_store(&c.delay_ns,
			     (unsigned)orc_below(&g, avg_ns * 3 / 2));
		atomic_store(&c.go, 1);
		c0 = orc_now_ns();
		in_first = collect_covers(t, line, ORC_LINE, &n);
		/* Delays spread over about the raced collection's length. */
		avg_ns = (avg_ns * 7 + (orc_now_ns() - c0)) / 8;
		wait_done(&c);
		tries++;
		if (!collect_covers(t, line, ORC_LINE, &n) && !in_first &&
		    !missed++)
			snprintf(miss, sizeof miss,
				 "try %" PRIu64 ": MISSED: line %p (page + "
				 "%#zx) went from 0x11 bytes to zeros during "
				 "a collection; neither that collection nor "
				 "the next reported it (the next reported %d "
				 "range(s))",
				 tries, (void *)line, (size_t)(line - q), n);
	}
	atomic_store(&c.go, -1);
	pthread_join(th, NULL);
	fg_stats st = orc_stats(t);
	cr_assert_eq(missed, 0,
		     "zero_during_collect %s seed=%" PRIu64 ": %" PRIu64
		     " of %" PRIu64 " zeroed lines missed; first: %s",
		     orc_bname(id), seed, missed, tries, miss);
	fprintf(stderr,
		"zero_during_collect %-10s: seed=%" PRIu64 " %" PRIu64
		" tries, %" PRIu64 " collections (mean %.1f us), missed=0 (twins hook=%" PRIu64
		" pages diffed=%" PRIu64 ")\n",
		orc_bname(id), seed, tries, st.collections,
		(double)st.collect_ns_total / (double)st.collections / 1e3,
		st.twins_hook,
		st.pages_diffed);
	cr_assert_eq(fg_tracker_destroy(t), 0);
	munmap(a, len);
}

PER_BACKEND(zero_during_collect)
ORC_DIGEST(PER_BACKEND, zero_during_collect)

/* Thread C stores to the last line of a protected page Q (a first-write
 * fault) while the main thread calls fg_mark_dirty on Q's first slot and
 * stores there - the documented protocol before the kernel writes tracked
 * memory, which leaves Q writable.  Both writes complete before the next
 * collection begins, which must report both lines.  A twin copied by C's
 * hook after fg_mark_dirty made Q writable holds the main thread's store
 * and hides it. */
static void race_run(fg_backend_id id, bool expect)
{
	const char *name = expect ? "expect_race" : "mark_dirty_race";
	const char *call = expect ? "fg_expect_writes" : "fg_mark_dirty";
	const size_t ps = orc_page(), len = 16 * ps;
	const uint64_t budget = orc_twin_hook(id) ? 2500000000u : 300000000u;
	uint64_t seed, t0, tries = 0, missed = 0, diffed = 0;
	char miss[400] = "";
	fg_tracker *t;
	pthread_t th;
	racer c = {0};
	uint8_t *a, *q;
	orc_rng g;
	int n;

	ORC_REQUIRE_BACKEND(id);
	seed = orc_seed(name);
	orc_rng_init(&g, seed);
	a = orc_map_anon(len, NULL);
	cr_assert_not_null(a, "mmap: %s", strerror(errno));
	memset(a, 0x11, len);
	/* fg_expect_writes: sticky twins, so that Q is mostly compared with
	 * the twin taken at the collection before (a hook's, on uffd-sync,
	 * when that one was dropped). */
	t = orc_diff_tracker(id, 64, 0, expect ? FG_TWIN_STICKY : FG_TWIN_HOT);
	cr_assert_eq(fg_register(t, a, len), 0);
	q = a + 5 * ps;
	volatile uint64_t *mine = (volatile uint64_t *)q;
	c.what = RACE_STORE;
	c.target = q + ps - 8;
	cr_assert_eq(pthread_create(&th, NULL, racer_main, &c), 0);
	t0 = orc_now_ns();
	while (orc_now_ns() - t0 < budget) {
		uint64_t old = *mine, cold = *(volatile uint64_t *)c.target;
		int rc;

		for (int k = 0; k < 8; k++) /* until Q is clean */
			if (!collect_covers(t, q, ps, &n) && !n)
				break;
		atomic_store(&c.value, cold + 1);
		atomic_store(&c.done, 0);
		atomic_store(&c.go, 1);
		for (uint64_t e = orc_now_ns() + orc_below(&g, 3000);
		     orc_now_ns() < e;)
			;
		rc = expect ? fg_expect_writes(t, (void *)mine, 8)
			    : fg_mark_dirty(t, (void *)mine, 8);
		cr_assert_eq(rc, 0, "%s: %d (%s)", call, rc, fg_strerror(rc));
		*mine = old + 1;
		wait_done(&c);
		tries++;
		uint64_t before = orc_stats(t).pages_diffed;
		unsigned hit = collect_cover2(t, (const void *)mine, c.target,
					      8, &n);

		diffed += orc_stats(t).pages_diffed > before;
		if (hit != 3 && !missed++)
			snprintf(miss, sizeof miss,
				 "try %" PRIu64 ": MISSED: %s%s%s; both "
				 "stores completed before the collection "
				 "began (it reported %d range(s))",
				 tries,
				 hit & 1 ? "" : "the main thread's store "
						"after the call (first line "
						"of Q)",
				 hit & 3 ? "" : " and ",
				 hit & 2 ? "" : "thread C's store (last line "
						"of Q, a first-write fault)",
				 n);
	}
	atomic_store(&c.go, -1);
	pthread_join(th, NULL);
	cr_assert_eq(missed, 0,
		     "%s %s seed=%" PRIu64 ": %" PRIu64 " of %" PRIu64
		     " stores after %s missed; first: %s",
		     name, orc_bname(id), seed, missed, tries, call, miss);
	fprintf(stderr,
		"%s %-10s: seed=%" PRIu64 " %" PRIu64 " tries, %" PRIu64
		" with Q diffed against a twin, missed=0\n",
		name, orc_bname(id), seed, tries, diffed);
	cr_assert_eq(fg_tracker_destroy(t), 0);
	munmap(a, len);
}

static void mark_dirty_race(fg_backend_id id)
{
	race_run(id, false);
}

/* The same with fg_expect_writes under sticky twins, which un-protects
 * Q without forcing it whole: both stores must be found by comparing
 * with a twin copied while Q was protected. */
static void expect_race(fg_backend_id id)
{
	race_run(id, true);
}

PER_BACKEND(mark_dirty_race)
PER_BACKEND(expect_race)
ORC_DIGEST(PER_BACKEND, expect_race)
