/* test_oracle.c - every backend against an independent oracle (oracle.h).
 *
 * Scenarios, each run once per backend (a backend the machine lacks is a
 * visible skip with the probe's reason):
 *   random_*     single-threaded random schedules of user and kernel writes
 *                over anonymous, shared anonymous and memfd regions, with
 *                page-size, 64-byte, 16 KiB and changing cards;
 *   threads_*    four writer threads against repeated collections;
 *   fork         a child writing, collecting and destroying the tracker;
 *   unmap_half, mremap_away, replace_half, dontneed
 *                the tracked memory changing under the tracker;
 *   stats_hook   statistics and the write hook after a known schedule;
 *   *_runs, *_auto  uffd-async only: scenarios above re-protecting by a
 *                call per run of written pages, and switching between
 *                that and the write-protecting scan (FG_REPROTECT; the
 *                others run with its default, the scan).
 * Every random test prints its seed; FG_SEED=N replays it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* config.h defines it in the autotools build */
#endif
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <immintrin.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fg.h"
#include "oracle.h"

#define TIMEOUT 120

#define PER_BACKEND(scn) ORC_PER_BACKEND(oracle, scn, TIMEOUT)

/* FG_REPROTECT for the *_runs and *_auto tests (NULL: the trackers
 * ignore the environment, FG_OPT_NO_ENV, and re-protect the default
 * way). */
static const char *reprotect;

static fg_tracker *make_tracker(fg_backend_id id, size_t card,
				fg_write_hook hook, void *arg)
{
	fg_options o = orc_options(id, card);

	if (reprotect) {
		/* The environment is read for FG_REPROTECT: nothing else
		 * that fg_tracker_create reads may come from it.  Which
		 * variables those are, the options table says (a variable
		 * added to it is unset here with no change to this test). */
		size_t n;
		const fg_env_var *v = fg_env_table(&n);

		for (size_t i = 0; i < n; i++)
			if (strstr(v[i].reader, "fg_tracker_create") &&
			    strcmp(v[i].name, "FG_REPROTECT") != 0 &&
			    !strchr(v[i].name, '<'))
				unsetenv(v[i].name);
		setenv("FG_REPROTECT", reprotect, 1);
		o.flags &= ~FG_OPT_NO_ENV;
	}
	o.hook = hook;
	o.hook_arg = arg;
	return orc_tracker(&o);
}

/* ------------------------------------------------------------------ */
/* The write schedule: one random write at a time, logged in the oracle. */

enum wmethod {
	W_STORE1,
	W_STORE8,
	W_MEMCPY,
	W_MEMSET,
	W_AVX2,
	W_ATOMIC,
	W_MOVSB,
	W_PIPE, /* W_PIPE .. W_RECV: kernel writes, in orc_kop's order */
	W_READ,
	W_PREAD,
	W_RECV,
	W_COUNT
};

#define MAXW ORC_KMAX

typedef struct sched {
	orc_sched b; /* first */
	uint8_t *hot[16]; /* pages favoured this epoch */
	bool avx2;
	/* Counts over the whole test. */
	uint64_t writes, by[W_COUNT], epochs;
	uint64_t pages_reported, pages_changed, pages_truth, pages_fp;
	uint64_t cards_reported, cards_truth, cards_fp;
} sched;

__attribute__((target("avx2"))) static void store32_avx2(void *dst,
							 const void *src)
{
	__m256i v = _mm256_loadu_si256((const __m256i *)src);

	_mm256_storeu_si256((__m256i *)dst, v);
}

/* One kernel write of len bytes at dst (orc_kernel_write).  For a
 * backend without FG_CAP_KERNEL_WRITES (mprotect) the documented protocol
 * is fg_mark_dirty first; without it the call must either succeed or fail
 * with EFAULT.  Other backends must simply work. */
static void kernel_write(sched *s, enum wmethod m, uint8_t *dst, size_t len)
{
	bool announce = !(fg_backend_caps(s->b.id) & FG_CAP_KERNEL_WRITES);
	bool mark = announce ? orc_below(&s->b.g, 2)
			     : orc_below(&s->b.g, 8) == 0;

	orc_kernel_write(&s->b, (orc_kop)(m - W_PIPE), mark, dst, len);
}

/* A random target: one of the epoch's hot pages half of the time (most
 * writes land on pages already dirty), else anywhere; *len is clipped to
 * the region. */
static uint8_t *target(sched *s, size_t *len, orc_region **out)
{
	uint8_t *p = orc_below(&s->b.g, 2)
			     ? s->hot[orc_below(&s->b.g, 16)] +
				       orc_below(&s->b.g, orc_page())
			     : orc_anywhere(&s->b);
	orc_region *g = orc_find(s->b.r, s->b.n, p);

	if (*len > (size_t)(g->base + g->len - p))
		*len = (size_t)(g->base + g->len - p);
	*out = g;
	return p;
}

static void pick_hot(sched *s)
{
	for (int i = 0; i < 16; i++)
		s->hot[i] = (uint8_t *)((uintptr_t)orc_anywhere(&s->b) /
					orc_page() * orc_page());
}

static size_t pick_len(sched *s, enum wmethod m)
{
	size_t big = orc_below(&s->b.g, 16) == 0;

	switch (m) {
	case W_STORE1:
		return 1;
	case W_STORE8:
	case W_ATOMIC:
		return 8;
	case W_AVX2:
		return 32;
	case W_MEMSET:
		return 1 + orc_below(&s->b.g, 200); /* leaves a free value */
	default:
		return 1 + orc_below(&s->b.g, big ? MAXW : 512);
	}
}

static void sched_write(sched *s)
{
	enum wmethod m = (enum wmethod)orc_below(&s->b.g, W_COUNT);
	orc_region *g;
	size_t want, len;
	uint8_t *p;

	if (m == W_AVX2 && !s->avx2)
		m = W_MEMCPY;
	want = len = pick_len(s, m);
	p = target(s, &len, &g);
	if (m == W_ATOMIC) /* aligned: regions end on a page boundary */
		p = (uint8_t *)((uintptr_t)p & ~(uintptr_t)7);
	else if (len < want && (m == W_STORE8 || m == W_AVX2))
		m = W_MEMCPY; /* too close to the region's end */
	switch (m) {
	case W_STORE1:
		*(volatile uint8_t *)p = (uint8_t)(*p + 1 +
						   orc_below(&s->b.g, 255));
		break;
	case W_STORE8: {
		uint64_t v;

		orc_differ(&s->b, p, 8);
		memcpy(&v, s->b.src, 8);
		*(volatile orc_u64_unaligned *)p = v;
		break;
	}
	case W_MEMCPY:
		orc_differ(&s->b, p, len);
		memcpy(p, s->b.src, len);
		break;
	case W_MEMSET: {
		bool seen[256] = {false};
		unsigned v = (unsigned)orc_below(&s->b.g, 256);

		for (size_t i = 0; i < len; i++)
			seen[p[i]] = true;
		while (seen[v & 255])
			v++;
		memset(p, (int)(v & 255), len);
		break;
	}
	case W_AVX2:
		orc_differ(&s->b, p, 32);
		store32_avx2(p, s->b.src);
		break;
	case W_ATOMIC:
		__atomic_fetch_add((uint64_t *)p, 1 + orc_below(&s->b.g, 1000),
				   __ATOMIC_RELAXED);
		len = 8;
		break;
	case W_MOVSB:
		orc_differ(&s->b, p, len);
		orc_rep_movsb(p, s->b.src, len);
		break;
	default:
		kernel_write(s, m, p, len);
		s->writes++;
		s->by[m]++;
		return;
	}
	orc_log(s->b.r, s->b.n, p, len);
	s->writes++;
	s->by[m]++;
}

/* Collect, compare with the oracle, assert nothing was missed, and start
 * the next epoch.  expect_card: the card size this collection must use
 * (0: don't check). */
static void sched_check(sched *s, orc_method m, size_t expect_card)
{
	orc_result res;

	orc_check(s->b.t, s->b.r, s->b.n, m, expect_card, orc_where(&s->b),
		  &res);
	s->epochs++;
	s->pages_reported += res.pages_reported;
	s->pages_changed += res.pages_changed;
	s->pages_truth += res.pages_truth;
	s->pages_fp += res.pages_fp;
	s->cards_reported += res.cards_reported;
	s->cards_truth += res.cards_truth;
	s->cards_fp += res.cards_fp;
	s->b.epoch++;
	orc_snapshot(s->b.r, s->b.n);
	pick_hot(s);
}

static void sched_summary(const sched *s, const char *what)
{
	fprintf(stderr,
		"%s %-10s: writes=%" PRIu64 " (kernel %" PRIu64
		", marked %" PRIu64 ", EFAULT %" PRIu64 ", partial bytes %" PRIu64
		") epochs=%" PRIu64 " pages reported=%" PRIu64
		" truly changed=%" PRIu64 " written=%" PRIu64
		" missed=0 false-positive pages=%" PRIu64 " (%.1f%% of reported)"
		" cards reported=%" PRIu64 " truth=%" PRIu64
		" fp=%.1f%%\n",
		what, orc_bname(s->b.id), s->writes,
		s->by[W_PIPE] + s->by[W_READ] + s->by[W_PREAD] + s->by[W_RECV],
		s->b.kw.marked, s->b.kw.efault, s->b.kw.partial_bytes,
		s->epochs, s->pages_reported, s->pages_changed, s->pages_truth,
		s->pages_fp,
		s->pages_reported ? 100.0 * (double)s->pages_fp /
					    (double)s->pages_reported
				  : 0.0,
		s->cards_reported, s->cards_truth,
		s->cards_reported ? 100.0 * (double)s->cards_fp /
					    (double)s->cards_reported
				  : 0.0);
}

/* A tracker with the three kinds of regions registered (scale bytes each,
 * the anonymous one twice that), a schedule over them, and the first epoch
 * begun. */
static sched *sched_start(fg_backend_id id, size_t card, orc_region r[3],
			  size_t scale, const char *test, fg_tracker **t)
{
	sched *s;

	ORC_REQUIRE_BACKEND(id);
	s = calloc(1, sizeof *s);
	cr_assert_not_null(s);
	*t = make_tracker(id, card, NULL, NULL);
	orc_sched_start(&s->b, *t, r, scale, false, test);
	s->avx2 = __builtin_cpu_supports("avx2");
	pick_hot(s);
	return s;
}

/* Epoch sizes spread over four orders of magnitude, zero included. */
static unsigned epoch_writes(sched *s)
{
	unsigned shift = (unsigned)orc_below(&s->b.g, 13);

	return (unsigned)orc_below(&s->b.g, (1u << shift) + 1);
}

static const size_t mixed_cards[] = {64,   128,  256,  512,   1024,
				     2048, 4096, 8192, 12288, 16384};

/* card: the card size of the whole run, or 0 to change it at random
 * between collections (then only the iterator is used, so the card size of
 * every collection is the one fg_card_size reports after it). */
static void random_schedule(fg_backend_id id, size_t card, uint64_t target_writes,
			    const char *test)
{
	orc_region r[3];
	fg_tracker *t;
	sched *s = sched_start(id, card, r, MiB, test, &t);
	while (s->writes < target_writes) {
		unsigned nw = epoch_writes(s);
		size_t expect = 0;

		for (unsigned i = 0; i < nw; i++)
			sched_write(s);
		if (!card) {
			expect = mixed_cards[orc_below(
				&s->b.g,
				sizeof mixed_cards / sizeof *mixed_cards)];
			int rc = fg_set_card_size(t, expect);
			cr_assert_eq(rc, 0, "fg_set_card_size(%zu) = %d (%s)",
				     expect, rc, fg_strerror(rc));
		}
		sched_check(s, card && s->b.epoch % 2 ? ORC_BITMAP : ORC_ITER,
			    expect);
	}
	sched_summary(s, test);
	orc_sched_end(&s->b);
	free(s);
}

static void random_page(fg_backend_id id)
{
	random_schedule(id, orc_page(), 40000, "random_page");
}

static void random_card64(fg_backend_id id)
{
	random_schedule(id, 64, 25000, "random_card64");
}

static void random_card16k(fg_backend_id id)
{
	random_schedule(id, 16384, 25000, "random_card16k");
}

static void random_cardmix(fg_backend_id id)
{
	random_schedule(id, 0, 20000, "random_cardmix");
}

/* FG_COLLECT_PEEK (fg.h): between two collections, up to three peeks,
 * each with more writes before it.  Every peek must report everything
 * written since the epoch began (the oracle's truth: a peek resets
 * nothing), and so must the collection that ends the epoch, writes
 * before the peeks included.  A backend without FG_CAP_PEEK refuses with
 * -ENOTSUP, and resets nothing either. */
static void random_peek(fg_backend_id id)
{
	orc_region r[3];
	fg_tracker *t;
	sched *s = sched_start(id, orc_page(), r, MiB, "random_peek", &t);
	bool can = (fg_tracker_caps(t) & FG_CAP_PEEK) != 0;
	uint64_t peeks = 0;

	cr_assert_eq(can, (fg_backend_caps(id) & FG_CAP_PEEK) != 0);
	while (s->writes < 20000) {
		unsigned nw = epoch_writes(s);
		unsigned np = (unsigned)orc_below(&s->b.g, 4);

		for (unsigned k = 0; k <= np; k++) {
			for (unsigned i = 0; i < nw / (np + 1); i++)
				sched_write(s);
			if (k == np)
				break;
			if (can) {
				orc_result res;

				orc_check(t, s->b.r, s->b.n, ORC_PEEK, 0,
					  orc_where(&s->b), &res);
				peeks++;
			} else {
				int rc = fg_collect_flags(t, NULL,
							  FG_COLLECT_PEEK);

				cr_assert_eq(rc, -ENOTSUP,
					     "%s: a peek without FG_CAP_PEEK "
					     "returned %d (%s), not -ENOTSUP",
					     orc_where(&s->b), rc,
					     fg_strerror(rc));
			}
		}
		sched_check(s, ORC_ITER, 0);
	}
	if (can)
		cr_assert_eq(orc_stats(t).peeks, peeks,
			     "%s: stats.peeks %" PRIu64 ", %" PRIu64
			     " peeks made",
			     orc_where(&s->b), orc_stats(t).peeks, peeks);
	fprintf(stderr, "random_peek %-10s: %" PRIu64 " peeks%s\n",
		orc_bname(id), peeks, can ? "" : " (no FG_CAP_PEEK: -ENOTSUP)");
	sched_summary(s, "random_peek");
	orc_sched_end(&s->b);
	free(s);
}

/* FG_COLLECT_AFTER_PEEK (fg.h), from its words, like the collector it is
 * for: REGIONS regions, most left clean in an interval; a peek must
 * report everything owed (written since the last collection, plus what
 * the last collection left for later); then "pause" writes, and
 * fg_mark_dirty on a page of a region the peek found clean; then the
 * collection with the flag must report every page the peek reported and
 * every page marked, and what it leaves out of the pause's writes is owed
 * to the next peek.  Without FG_CAP_PEEK the peek is refused and the
 * flag must change nothing: the collection reports everything.  Some
 * intervals end with a plain collection with the flag (no peek before
 * it: a full one).  With a peek, the flag must have left regions alone
 * (stats.peek_skipped), or it is untested. */
#define AP_REGIONS 12
#define AP_PAGES 16

static void ap_collect(fg_tracker *t, uint8_t *const *m, unsigned flags,
		       uint8_t rep[AP_REGIONS][AP_PAGES], const char *what,
		       uint64_t round)
{
	size_t ps = orc_page();
	fg_iter it;
	fg_range r;
	int n = fg_collect_flags(t, &it, flags);

	cr_assert_geq(n, 0, "round %" PRIu64 ": %s: %s (%s)", round, what,
		      fg_strerror(n), fg_last_error_detail());
	memset(rep, 0, AP_REGIONS * AP_PAGES);
	while (fg_iter_next(&it, &r) == 1)
		for (int k = 0; k < AP_REGIONS; k++)
			for (int p = 0; p < AP_PAGES; p++) {
				uintptr_t a = (uintptr_t)m[k] + p * ps;

				if (a + ps > (uintptr_t)r.addr &&
				    a < (uintptr_t)r.addr + r.len)
					rep[k][p] = 1;
			}
}

/* Every page in owed is in rep (what: by which call, or why). */
static void ap_owed(uint8_t owed[AP_REGIONS][AP_PAGES],
		    uint8_t rep[AP_REGIONS][AP_PAGES], const char *what,
		    uint64_t round, uint64_t seed)
{
	for (int k = 0; k < AP_REGIONS; k++)
		for (int p = 0; p < AP_PAGES; p++)
			cr_assert(!owed[k][p] || rep[k][p],
				  "round %" PRIu64 ": page %d of region %d "
				  "not reported (%s; seed %" PRIu64 ")",
				  round, p, k, what, seed);
}

static void after_peek(fg_backend_id id)
{
	size_t ps = orc_page();
	uint64_t seed = orc_seed("after_peek");
	orc_rng g;
	fg_options o = orc_options(id, 0);
	fg_tracker *t;
	uint8_t *m[AP_REGIONS];
	static uint8_t owed[AP_REGIONS][AP_PAGES], rep[AP_REGIONS][AP_PAGES],
		peek[AP_REGIONS][AP_PAGES], mark[AP_REGIONS][AP_PAGES],
		pause[AP_REGIONS][AP_PAGES];
	uint64_t rounds = 3000, peeks = 0, deferred = 0, marks = 0;
	bool can;
	fg_stats st = {.size = sizeof st};

	ORC_REQUIRE_BACKEND(id);
	orc_rng_init(&g, seed);
	t = orc_tracker(&o);
	can = (fg_tracker_caps(t) & FG_CAP_PEEK) != 0;
	for (int k = 0; k < AP_REGIONS; k++) {
		m[k] = orc_map_anon(AP_PAGES * ps, NULL);
		cr_assert_not_null(m[k]);
		memset(m[k], 1, AP_PAGES * ps);
		cr_assert_eq(fg_register(t, m[k], AP_PAGES * ps), 0, "%s",
			     fg_last_error_detail());
	}
	ap_collect(t, m, 0, rep, "the first collection", 0);
	memset(owed, 0, sizeof owed);
	for (uint64_t round = 1; round <= rounds; round++) {
		bool full = orc_below(&g, 8) == 0;
		unsigned busy = (unsigned)orc_below(&g, 4); /* regions */

		/* The interval: a few regions written. */
		for (unsigned b = 0; b < busy; b++) {
			int k = (int)orc_below(&g, AP_REGIONS);
			unsigned nw = 1 + (unsigned)orc_below(&g, 4);

			for (unsigned w = 0; w < nw; w++) {
				int p = (int)orc_below(&g, AP_PAGES);

				m[k][p * ps + orc_below(&g, ps)] = (uint8_t)round;
				owed[k][p] = 1;
			}
		}
		if (full || !can) {
			if (!can && !full)
				cr_assert_eq(fg_collect_flags(t, NULL,
							      FG_COLLECT_PEEK),
					     -ENOTSUP);
			ap_collect(t, m, FG_COLLECT_AFTER_PEEK, rep,
				   can ? "a collection with the flag and no "
					 "peek before it"
				       : "a collection with the flag after a "
					 "refused peek",
				   round);
			ap_owed(owed, rep, "written before a full collection",
				round, seed);
			memset(owed, 0, sizeof owed);
			continue;
		}
		ap_collect(t, m, FG_COLLECT_PEEK, peek, "the peek", round);
		peeks++;
		ap_owed(owed, peek,
			"by the peek it was owed to: written before it, or "
			"left for later by the last collection",
			round, seed);
		/* The pause: writes anywhere, and a mark on a clean region
		 * now and then. */
		memset(pause, 0, sizeof pause);
		memset(mark, 0, sizeof mark);
		for (unsigned w = 0, nw = (unsigned)orc_below(&g, 4); w < nw;
		     w++) {
			int k = (int)orc_below(&g, AP_REGIONS);
			int p = (int)orc_below(&g, AP_PAGES);

			m[k][p * ps + orc_below(&g, ps)] = (uint8_t)~round;
			pause[k][p] = 1;
		}
		if (orc_below(&g, 4) == 0) {
			int k = (int)orc_below(&g, AP_REGIONS);
			int p = (int)orc_below(&g, AP_PAGES);

			cr_assert_eq(fg_mark_dirty(t, m[k] + p * ps, 1), 0);
			mark[k][p] = 1;
			marks++;
		}
		ap_collect(t, m, FG_COLLECT_AFTER_PEEK, rep,
			   "the collection after the peek", round);
		ap_owed(peek, rep,
			"by the collection after the peek, which had reported it",
			round, seed);
		ap_owed(mark, rep, "marked after the peek",
			round, seed);
		memset(owed, 0, sizeof owed);
		for (int k = 0; k < AP_REGIONS; k++)
			for (int p = 0; p < AP_PAGES; p++) {
				if (pause[k][p] && !rep[k][p]) {
					owed[k][p] = 1;
					deferred++;
				}
			}
	}
	cr_assert_eq(fg_get_stats(t, &st), 0);
	fprintf(stderr,
		"after_peek %-10s: %" PRIu64 " rounds, %" PRIu64
		" peeks, %" PRIu64 " regions left alone, %" PRIu64
		" pause writes left for the next peek, %" PRIu64 " marks\n",
		orc_bname(id), rounds, peeks, st.peek_skipped, deferred,
		marks);
	if (can && id != FG_BACKEND_NONE)
		cr_assert_gt(st.peek_skipped, 0,
			     "%s: no region was left alone after %" PRIu64
			     " peeks of mostly clean regions",
			     orc_bname(id), peeks);
	else
		cr_assert_eq(st.peek_skipped, 0);
	cr_assert_eq(fg_tracker_destroy(t), 0);
	for (int k = 0; k < AP_REGIONS; k++)
		munmap(m[k], AP_PAGES * ps);
}

PER_BACKEND(random_page)
PER_BACKEND(random_card64)
PER_BACKEND(random_card16k)
PER_BACKEND(random_cardmix)
PER_BACKEND(random_peek)
PER_BACKEND(after_peek)

/* ------------------------------------------------------------------ */
/* Threads: four writers, the main thread collecting.
 *
 * Rule checked, from the contract: a write is reported by the first
 * collection that begins after it completes, unless an earlier collection
 * that returned after it completed reported it.  So: read every slot (S)
 * after collection N returned, read them again (T), collect (N+1); a slot
 * with T != S was written after N returned and before N+1 began, and must
 * lie in a range of N+1. */

#define WRITERS 4

typedef struct writer {
	pthread_t th;
	uint64_t *slots;
	size_t nslots;
	unsigned tid;
	uint64_t seed, stores;
	_Atomic int *stop;
} writer;

static void *writer_main(void *arg)
{
	writer *w = arg;
	orc_rng g;
	uint64_t ctr = 0;

	orc_rng_init(&g, w->seed);
	while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
		for (int k = 0; k < 64; k++) {
			size_t i =
				orc_below(&g, w->nslots / WRITERS) * WRITERS +
				w->tid;

			__atomic_store_n(&w->slots[i], ++ctr << 2 | w->tid,
					 __ATOMIC_RELAXED);
		}
	}
	w->stores = ctr;
	return NULL;
}

static void threads(fg_backend_id id, bool change_cards, const char *test)
{
	static const size_t cards[] = {64, 256, 4096, 8192};
	const size_t len = 2 * MiB, nslots = len / 8;
	/* At least min_rounds, then on until enough changes were checked
	 * (slow fault paths starve the writers), within a time cap. */
	const unsigned min_rounds = 300, max_rounds = 5000;
	const uint64_t want_checked = 20000, max_ns = 20000000000u;
	unsigned rounds = 0;
	uint64_t t0;
	_Atomic int stop = 0;
	writer w[WRITERS];
	orc_region r;
	orc_rng g;
	uint64_t seed, *S, *T, checked = 0, missed = 0;
	char miss[512] = "", ctx[160];
	fg_tracker *t;
	uint64_t *slots;
	size_t card = 0;
	orc_result res;

	ORC_REQUIRE_BACKEND(id);
	seed = orc_seed(test);
	orc_rng_init(&g, seed);
	t = make_tracker(id, 0, NULL, NULL);
	slots = orc_map_anon(len, NULL);
	cr_assert_not_null(slots, "mmap: %s", strerror(errno));
	cr_assert_eq(orc_region_init(&r, slots, len, "anon"), 0);
	orc_reg(t, &r);
	S = malloc(len);
	T = malloc(len);
	cr_assert(S && T);
	for (unsigned i = 0; i < WRITERS; i++) {
		w[i] = (writer){.slots = slots, .nslots = nslots, .tid = i,
				.seed = orc_next(&g), .stop = &stop};
		cr_assert_eq(pthread_create(&w[i].th, NULL, writer_main, &w[i]),
			     0);
	}
	snprintf(ctx, sizeof ctx, "%s %s seed=%" PRIu64, test, orc_bname(id),
		 seed);
	orc_collect_ok(t, &r, 1, ORC_ITER, 0, ctx);
	t0 = orc_now_ns();
	for (unsigned round = 0; round < max_rounds; round++) {
		size_t want = 0;

		if (round >= min_rounds &&
		    (checked >= want_checked || orc_now_ns() - t0 > max_ns))
			break;
		rounds = round + 1;

		if (change_cards && orc_below(&g, 2)) {
			want = cards[orc_below(&g, 4)];
			cr_assert_eq(fg_set_card_size(t, want), 0);
		}
		orc_snap_words(&r, 1, &S);
		orc_spin_us((unsigned)orc_below(&g, 300));
		orc_snap_words(&r, 1, &T);
		if (change_cards && orc_below(&g, 2)) {
			want = cards[orc_below(&g, 4)];
			cr_assert_eq(fg_set_card_size(t, want), 0);
		}
		snprintf(ctx, sizeof ctx, "%s %s seed=%" PRIu64 " round %u",
			 test, orc_bname(id), seed, round);
		card = orc_collect_ok(t, &r, 1, ORC_ITER, want, ctx);
		for (size_t i = 0; i < nslots; i++) {
			if (S[i] == T[i])
				continue;
			checked++;
			if (!orc_reported(&r, 1, &slots[i], 8) && !missed++)
				snprintf(miss, sizeof miss,
					 "round %u card %zu: MISSED slot %zu at "
					 "%p (thread %zu): it changed from "
					 "%#" PRIx64 " to %#" PRIx64 " between "
					 "two reads after collection %u "
					 "returned and before collection %u "
					 "began, but collection %u reported it "
					 "clean",
					 round, card, i, (void *)&slots[i],
					 i % WRITERS, S[i], T[i], round,
					 round + 1, round + 1);
		}
		if (missed)
			break;
	}
	atomic_store(&stop, 1);
	uint64_t stores = 0;
	for (unsigned i = 0; i < WRITERS; i++) {
		pthread_join(w[i].th, NULL);
		stores += w[i].stores;
	}
	cr_assert_eq(missed, 0,
		     "%s %s seed=%" PRIu64 ": %" PRIu64 " slots missed in one "
		     "round (of %" PRIu64 " changes checked); first: %s",
		     test, orc_bname(id), seed, missed, checked, miss);
	cr_assert_gt(checked, 0,
		     "%s %s: no slot changed between two snapshots in %u "
		     "rounds: the writers never ran, the check is vacuous",
		     test, orc_bname(id), rounds);

	/* Quiet now: a known set of writes must be reported exactly
	 * (page-level backends) or wholly (none). */
	snprintf(ctx, sizeof ctx, "%s %s seed=%" PRIu64, test, orc_bname(id),
		 seed);
	orc_quiet_epoch(t, &r, 1, &g, 0, false, ctx, &res, &card);
	fprintf(stderr,
		"%s %-10s: %u rounds, %" PRIu64 " stores by %d threads, %" PRIu64
		" slot changes checked across collections, missed=0\n",
		test, orc_bname(id), rounds, stores, WRITERS, checked);
	cr_assert_eq(fg_tracker_destroy(t), 0);
	munmap(slots, len);
	orc_region_fini(&r);
	free(S);
	free(T);
}

static void threads_fixed(fg_backend_id id)
{
	threads(id, false, "threads_fixed");
}

static void threads_cardchange(fg_backend_id id)
{
	threads(id, true, "threads_cardchange");
}

PER_BACKEND(threads_fixed)
PER_BACKEND(threads_cardchange)

/* ------------------------------------------------------------------ */
/* fork: the child writes, collects and destroys; the parent's oracle must
 * stay exact.  The child writes only private memory (its writes to shared
 * memory would be the parent's bytes too, written by another process). */

static void fork_scenario(fg_backend_id id)
{
	orc_region r[3];
	fg_tracker *t;
	sched *s = sched_start(id, 0, r, 256 * KiB, "fork", &t);
	for (int iter = 0; iter < 4; iter++) {
		pid_t pid;
		int go;

		for (int k = 0; k < 200; k++) /* dirty pages at fork time */
			sched_write(s);
		pid = orc_fork_child(t, &r[0], orc_next(&s->b.g), &go);
		/* Parent writes before the child collects and destroys (a
		 * child acting on the parent's kernel objects would lose
		 * these), and while it does. */
		for (int k = 0; k < 200; k++)
			sched_write(s);
		orc_release_child(go);
		for (int k = 0; k < 200; k++)
			sched_write(s);
		snprintf(s->b.ctx, sizeof s->b.ctx, "fork %s seed=%" PRIu64
			 " iteration %d", orc_bname(id), s->b.seed, iter);
		orc_wait_child(pid, s->b.ctx);
		sched_check(s, iter % 2 ? ORC_BITMAP : ORC_ITER, 0);
		/* And the epoch after the child is gone. */
		for (int k = 0; k < 300; k++)
			sched_write(s);
		sched_check(s, iter % 2 ? ORC_ITER : ORC_BITMAP, 0);
	}
	sched_summary(s, "fork");
	orc_sched_end(&s->b);
	free(s);
}

PER_BACKEND(fork_scenario)

/* ------------------------------------------------------------------ */
/* The tracked memory changes under the tracker. */

/* Collect and tell whether every byte of [a, a+len) lies in a range, and
 * whether any byte does. */
static int collect_cover(fg_tracker *t, const void *a, size_t len, bool *all,
			 bool *any)
{
	uintptr_t lo = (uintptr_t)a, hi = lo + len, covered = lo;
	fg_iter it;
	fg_range rg;
	int rc = fg_collect(t, &it), more;

	*all = *any = false;
	if (rc < 0)
		return rc;
	while ((more = fg_iter_next(&it, &rg)) == 1) {
		uintptr_t s = (uintptr_t)rg.addr, e = s + rg.len;

		if (s < hi && e > lo)
			*any = true;
		if (s <= covered && e > covered)
			covered = e;
	}
	cr_assert_eq(more, 0, "fg_iter_next: %d (%s)", more, fg_strerror(more));
	*all = covered >= hi;
	return rc;
}

static bool defined_error(int rc)
{
	return rc <= -FG_EBASE && rc > -FG_ELAST;
}

/* The tracker still works: a fresh region's writes are reported. */
static void check_still_works(fg_tracker *t, fg_backend_id id,
			      const char *after)
{
	size_t ps = orc_page();
	uint8_t *p = orc_map_anon(8 * ps, NULL);
	bool all, any;
	int rc;

	cr_assert_not_null(p);
	rc = fg_register(t, p, 8 * ps);
	cr_assert_eq(rc, 0, "%s, after %s: registering a fresh region: %d (%s): %s",
		     orc_bname(id), after, rc, fg_strerror(rc),
		     fg_last_error_detail());
	cr_assert_geq(collect_cover(t, p, 8 * ps, &all, &any), 0);
	p[3 * ps + 5] = 7;
	cr_assert_geq(collect_cover(t, p + 3 * ps, ps, &all, &any), 0);
	cr_assert(all, "%s, after %s: a write to a freshly registered region "
		       "was not reported",
		  orc_bname(id), after);
	cr_assert_eq(fg_unregister(t, p, 8 * ps), 0);
	munmap(p, 8 * ps);
}

/* A tracker with one private region of len bytes, all written once and
 * collected: the next collection starts from a clean epoch. */
static fg_tracker *tracked_anon(fg_backend_id id, size_t len, uint8_t **out)
{
	fg_tracker *t;
	bool all, any;
	uint8_t *a;

	ORC_REQUIRE_BACKEND(id);
	a = orc_map_anon(len, NULL);
	cr_assert_not_null(a, "mmap: %s", strerror(errno));
	t = make_tracker(id, 0, NULL, NULL);
	cr_assert_eq(fg_register(t, a, len), 0);
	memset(a, 1, len);
	cr_assert_geq(collect_cover(t, a, len, &all, &any), 0);
	*out = a;
	return t;
}

/* Collect after [gone, +len) of a region was unmapped or moved away: the
 * collection must succeed, and the tracker must have counted the region
 * lost or reported the range dirty.  Returns whether it reported it all. */
static bool collect_after_loss(fg_tracker *t, fg_backend_id id,
			       const char *what, const uint8_t *gone,
			       size_t len, fg_stats *st)
{
	bool all, any;
	int rc = collect_cover(t, gone, len, &all, &any);

	cr_assert_geq(rc, 0, "%s: fg_collect after %s: %d (%s): %s",
		      orc_bname(id), what, rc, fg_strerror(rc),
		      fg_last_error_detail());
	*st = orc_stats(t);
	cr_assert(st->regions_lost >= 1 || all,
		  "%s: after %s, regions_lost=%" PRIu64 " and [%p, +%zu) "
		  "was %s reported",
		  orc_bname(id), what, st->regions_lost, (const void *)gone,
		  len, any ? "only partly" : "not");
	return all;
}

/* After the region at (a, len) was unmapped or moved: unregistering it
 * must succeed or fail with a defined code; log what the tracker saw. */
static void unregister_lost(fg_tracker *t, fg_backend_id id, const char *test,
			    void *a, size_t len, const fg_stats *st,
			    bool reported_all)
{
	int rc = fg_unregister(t, a, len);

	cr_assert(rc == 0 || defined_error(rc),
		  "%s %s: fg_unregister of the original range: %d (%s), "
		  "expected 0 or a -FG_E* code",
		  test, orc_bname(id), rc, fg_strerror(rc));
	fprintf(stderr,
		"%s %-10s: regions_lost=%" PRIu64 ", old range reported: %s, "
		"unregister: %d (%s)\n",
		test, orc_bname(id), st->regions_lost,
		reported_all ? "yes" : "no",
		rc, fg_strerror(rc));
}

static void unmap_half(fg_backend_id id)
{
	size_t ps = orc_page(), len = 64 * ps, half = len / 2;
	uint8_t *a;
	fg_tracker *t;
	fg_stats st;
	bool all, first_all, first_any;
	int rc;

	t = tracked_anon(id, len, &a);
	a[5 * ps] = 2;
	a[40 * ps] = 2;
	cr_assert_eq(munmap(a + half, half), 0);
	all = collect_after_loss(t, id, "munmap of half a region", a + half,
				 half, &st);
	/* The page still mapped was written before the collection. */
	a[5 * ps] = 3;
	rc = collect_cover(t, a + 5 * ps, 1, &first_all, &first_any);
	cr_assert_geq(rc, 0);
	cr_assert(first_all,
		  "%s: a write to the still-mapped half of a region whose "
		  "other half was unmapped was not reported",
		  orc_bname(id));
	unregister_lost(t, id, "unmap_half", a, len, &st, all);
	munmap(a, half);
	check_still_works(t, id, "munmap of half a region");
	cr_assert_eq(fg_tracker_destroy(t), 0);
}

static void mremap_away(fg_backend_id id)
{
	size_t ps = orc_page(), len = 32 * ps;
	uint8_t *a, *dst, *moved;
	fg_tracker *t;
	fg_stats st;
	bool all;

	/* A destination elsewhere, reserved so nothing else lands there. */
	dst = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(dst, MAP_FAILED);
	t = tracked_anon(id, len, &a);
	a[3 * ps] = 9;
	moved = mremap(a, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	cr_assert_eq(moved, dst, "mremap: %s", strerror(errno));
	cr_assert_eq(moved[3 * ps], 9, "mremap lost the page contents");
	all = collect_after_loss(t, id, "mremap of a whole region", a, len, &st);
	unregister_lost(t, id, "mremap_away", a, len, &st, all);
	check_still_works(t, id, "mremap of a whole region");
	cr_assert_eq(fg_tracker_destroy(t), 0);
	munmap(dst, len);
}

/* A new mapping replaces half of a tracked region (mmap MAP_FIXED): writes
 * to it are writes to a registered range the tracker can no longer watch,
 * which the contract says must read dirty. */
static void replace_half(fg_backend_id id)
{
	size_t ps = orc_page(), len = 64 * ps, half = len / 2;
	uint8_t *a, *b;
	fg_tracker *t;
	fg_stats st;
	bool all, any;
	int rc;

	t = tracked_anon(id, len, &a);
	b = mmap(a + half, half, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	cr_assert_eq(b, a + half, "mmap MAP_FIXED: %s", strerror(errno));
	b[7 * ps] = 5;
	rc = collect_cover(t, b + 7 * ps, 1, &all, &any);
	cr_assert_geq(rc, 0, "%s: fg_collect after replacing half a region: %d "
			     "(%s): %s",
		      orc_bname(id), rc, fg_strerror(rc),
		      fg_last_error_detail());
	st = orc_stats(t);
	fprintf(stderr, "replace_half %-10s: regions_lost=%" PRIu64
			", write to the replaced page reported: %s\n",
		orc_bname(id), st.regions_lost, all ? "yes" : "no");
	if (id == FG_BACKEND_MPROTECT) {
		/* backend_mprotect.c documents it: a new mapping is not
		 * protected and collect() only notices unmapped ranges. */
		cr_log_info("replace_half mprotect: sub-checks skipped: a "
			    "mapping that replaces tracked memory is not "
			    "noticed by the mprotect backend (documented "
			    "limitation in backend_mprotect.c, not in fg.h); "
			    "the write was %s",
			    all ? "reported anyway" : "indeed reported clean");
		goto out;
	}
	cr_assert(all,
		  "%s: a write to %p, in a registered region whose second "
		  "half was replaced by a new mapping (mmap MAP_FIXED), was "
		  "reported clean (regions_lost=%" PRIu64 ")",
		  orc_bname(id), (void *)(b + 7 * ps), st.regions_lost);
	/* And in the epoch after. */
	b[9 * ps] = 6;
	cr_assert_geq(collect_cover(t, b + 9 * ps, 1, &all, &any), 0);
	cr_assert(all, "%s: the epoch after the replacement missed a write to "
		       "the replaced half",
		  orc_bname(id));
out:
	rc = fg_unregister(t, a, len);
	cr_assert(rc == 0 || defined_error(rc), "fg_unregister: %d (%s)", rc,
		  fg_strerror(rc));
	check_still_works(t, id, "replacing half a region");
	cr_assert_eq(fg_tracker_destroy(t), 0);
	munmap(a, len);
}

/* MADV_DONTNEED zeroes a private anonymous page: its bytes change without
 * a write instruction. */
static void dontneed(fg_backend_id id)
{
	size_t ps = orc_page(), len = 16 * ps;
	orc_region r;
	fg_tracker *t;
	orc_result res;
	char form[512];
	size_t card;
	int rc;

	ORC_REQUIRE_BACKEND(id);
	uint8_t *a = orc_map_anon(len, NULL);
	cr_assert_not_null(a);
	cr_assert_eq(orc_region_init(&r, a, len, "anon"), 0);
	t = make_tracker(id, 0, NULL, NULL);
	orc_reg(t, &r);
	orc_snapshot(&r, 1);
	memset(a + 3 * ps, 0x5a, ps);
	memset(a + 6 * ps, 0x5a, 100);
	orc_log(&r, 1, a + 3 * ps, ps);
	orc_log(&r, 1, a + 6 * ps, 100);
	rc = orc_collect(t, &r, 1, ORC_ITER, &card, form, sizeof form);
	cr_assert_geq(rc, 0);
	orc_compare(&r, 1, card, &res);
	cr_assert_eq(res.missed_lines, 0, "%s: plain writes missed",
		     orc_bname(id));
	orc_snapshot(&r, 1);
	cr_assert_eq(madvise(a + 3 * ps, ps, MADV_DONTNEED), 0, "madvise: %s",
		     strerror(errno));
	cr_assert_eq(a[3 * ps], 0, "MADV_DONTNEED did not zero the page");
	rc = orc_collect(t, &r, 1, ORC_ITER, &card, form, sizeof form);
	cr_assert_geq(rc, 0, "%s: fg_collect after MADV_DONTNEED: %d (%s)",
		      orc_bname(id), rc, fg_strerror(rc));
	orc_compare(&r, 1, card, &res);
	if (id == FG_BACKEND_MPROTECT) {
		cr_log_info("dontneed mprotect: sub-check skipped: the mprotect "
			    "backend sees only write faults, and MADV_DONTNEED "
			    "changes bytes without one (documented "
			    "limitation); %s",
			    res.missed_lines ? "the zeroed page was indeed "
					       "reported clean"
					     : "it was reported anyway");
	} else {
		cr_assert_eq(res.missed_lines, 0,
			     "%s: page %p was zeroed by MADV_DONTNEED after "
			     "the last collection (its bytes changed) but was "
			     "reported clean",
			     orc_bname(id), (void *)(a + 3 * ps));
	}
	/* Tracking continues on the zapped page. */
	orc_snapshot(&r, 1);
	a[3 * ps + 17] = 1;
	orc_log(&r, 1, a + 3 * ps + 17, 1);
	rc = orc_collect(t, &r, 1, ORC_ITER, &card, form, sizeof form);
	cr_assert_geq(rc, 0);
	orc_compare(&r, 1, card, &res);
	cr_assert_eq(res.missed_lines, 0,
		     "%s: a write to a page after MADV_DONTNEED was missed",
		     orc_bname(id));
	cr_assert_eq(fg_tracker_destroy(t), 0);
	orc_region_fini(&r);
	munmap(a, len);
}

PER_BACKEND(unmap_half)
PER_BACKEND(mremap_away)
PER_BACKEND(replace_half)
PER_BACKEND(dontneed)

/* ------------------------------------------------------------------ */
/* Statistics and the write hook after a known schedule. */

#define HOOK_MAX 4096

typedef struct hook_log {
	_Atomic uint64_t calls;
	void *page[HOOK_MAX];
	uint64_t first8[HOOK_MAX];
} hook_log;

/* Async-signal-safe: an atomic increment and two plain stores. */
static void record_hook(void *page, void *arg)
{
	hook_log *h = arg;
	uint64_t i = atomic_fetch_add(&h->calls, 1);

	if (i < HOOK_MAX) {
		h->page[i] = page;
		h->first8[i] = *(volatile uint64_t *)page;
	}
}

static void stats_hook(fg_backend_id id)
{
	const size_t ps = orc_page(), npages = 64, len = npages * ps;
	const int epochs = 6;
	bool hooked = fg_backend_caps(id) & FG_CAP_WRITE_HOOK;
	uint64_t seed, written_total = 0, last_written = 0, hook_total = 0;
	hook_log *h = calloc(1, sizeof *h);
	uint64_t *a;
	fg_tracker *t;
	fg_stats st;
	orc_rng g;

	ORC_REQUIRE_BACKEND(id);
	seed = orc_seed("stats_hook");
	orc_rng_init(&g, seed);
	a = orc_map_anon(len, NULL);
	cr_assert(a && h);
	for (size_t p = 0; p < npages; p++)
		a[p * ps / 8] = p + 1;
	t = make_tracker(id, 0, record_hook, h);
	cr_assert_eq(fg_register(t, a, len), 0);
	for (int e = 0; e < epochs; e++) {
		bool w[64] = {false};
		uint64_t old[64], nw = 0;
		size_t count = 1 + orc_below(&g, 20);

		atomic_store(&h->calls, 0);
		for (size_t k = 0; k < count; k++) {
			size_t p = orc_below(&g, npages);
			uint64_t *slot = &a[p * ps / 8];

			if (!w[p]) {
				w[p] = true;
				old[p] = *slot;
				nw++;
			}
			*slot = *slot * 3 + (uint64_t)e + 1; /* changes it */
			slot[1 + orc_below(&g, ps / 8 - 1)] ^= 1;
		}
		fg_iter it;
		fg_range rg;
		int rc = fg_collect(t, &it), more;
		cr_assert_geq(rc, 0);
		bool rep[64] = {false};
		while ((more = fg_iter_next(&it, &rg)) == 1)
			for (uintptr_t x = (uintptr_t)rg.addr;
			     x < (uintptr_t)rg.addr + rg.len; x += ps)
				rep[(x - (uintptr_t)a) / ps] = true;
		cr_assert_eq(more, 0);
		for (size_t p = 0; p < npages; p++)
			cr_assert(!w[p] || rep[p],
				  "stats_hook %s seed=%" PRIu64 " epoch %d: "
				  "written page %zu not reported",
				  orc_bname(id), seed, e, p);
		uint64_t calls = atomic_load(&h->calls);
		if (hooked) {
			cr_assert_eq(calls, nw,
				     "%s epoch %d: the hook was called %" PRIu64
				     " times for %" PRIu64 " pages first "
				     "written in the epoch (once per page "
				     "expected)",
				     orc_bname(id), e, calls, nw);
			for (uint64_t i = 0; i < calls && i < HOOK_MAX; i++) {
				size_t p = (size_t)((uintptr_t)h->page[i] -
						    (uintptr_t)a) / ps;

				cr_assert((uintptr_t)h->page[i] % ps == 0 &&
						  p < npages && w[p],
					  "%s: hook called with %p, not a page "
					  "the test wrote",
					  orc_bname(id), h->page[i]);
				cr_assert_eq(h->first8[i], old[p],
					     "%s: the hook saw %#" PRIx64
					     " at page %zu, but before the "
					     "write landed it held %#" PRIx64,
					     orc_bname(id), h->first8[i], p,
					     old[p]);
			}
		} else {
			cr_assert_eq(calls, 0,
				     "%s: the hook was called %" PRIu64
				     " times; fg.h says only uffd-sync and "
				     "mprotect call it",
				     orc_bname(id), calls);
		}
		hook_total += calls;
		written_total += nw;
		last_written = nw;
	}
	st = orc_stats(t);
	cr_assert_eq(st.backend, id, "stats.backend %s, tracker %s",
		     orc_bname(st.backend), orc_bname(id));
	cr_assert_eq(st.regions, 1, "stats.regions %" PRIu64 ", 1 registered",
		     st.regions);
	cr_assert_eq(st.tracked_bytes, len,
		     "stats.tracked_bytes %" PRIu64 ", %zu registered",
		     st.tracked_bytes, len);
	cr_assert_eq(st.collections, (uint64_t)epochs,
		     "stats.collections %" PRIu64 " after %d fg_collect calls",
		     st.collections, epochs);
	cr_assert_geq(st.dirty_pages, written_total,
		      "stats.dirty_pages %" PRIu64 " < %" PRIu64 " pages the "
		      "test wrote",
		      st.dirty_pages, written_total);
	cr_assert_geq(st.last_dirty_pages, last_written,
		      "stats.last_dirty_pages %" PRIu64 " < %" PRIu64
		      " pages written in the last epoch",
		      st.last_dirty_pages, last_written);
	if (fg_backend_caps(id) & FG_CAP_TRACKS)
		cr_assert_gt(st.faults, 0,
			     "%s: stats.faults is 0 after %" PRIu64
			     " first writes",
			     orc_bname(id), written_total);
	cr_assert_eq(st.hook_calls, hook_total,
		     "stats.hook_calls %" PRIu64 ", the hook counted %" PRIu64,
		     st.hook_calls, hook_total);
	cr_assert(st.collect_ns_total >= st.collect_ns_max &&
			  st.collect_ns_max >= st.collect_ns_last &&
			  st.collect_ns_max > 0,
		  "collection times inconsistent: total %" PRIu64 " max %" PRIu64
		  " last %" PRIu64,
		  st.collect_ns_total, st.collect_ns_max, st.collect_ns_last);
	fprintf(stderr,
		"stats_hook %-10s: collections=%" PRIu64 " dirty_pages=%" PRIu64
		" (written %" PRIu64 ") faults=%" PRIu64 " hook_calls=%" PRIu64
		" collect mean %.1f us max %.1f us\n",
		orc_bname(id), st.collections, st.dirty_pages, written_total,
		st.faults, st.hook_calls,
		(double)st.collect_ns_total / (double)st.collections / 1e3,
		(double)st.collect_ns_max / 1e3);
	cr_assert_eq(fg_tracker_destroy(t), 0);
	munmap(a, len);
	free(h);
}

PER_BACKEND(stats_hook)

/* ------------------------------------------------------------------ */
/* uffd-async's second way to re-protect written pages (FG_REPROTECT,
 * backend_uffd_async.c): a read-only scan and a call per run, forced, and
 * auto, which takes it or the write-protecting scan (the default, which
 * the tests above run) as each region's writes come sparse or dense. */

#define FORCED(scn, mode)                                                    \
	static void scn##_##mode(fg_backend_id id)                            \
	{                                                                     \
		reprotect = #mode;                                            \
		scn(id);                                                      \
	}                                                                     \
	ORC_TEST_FOR(oracle, scn##_##mode, uffd_async, FG_BACKEND_UFFD_ASYNC, \
		     TIMEOUT)

#ifndef ORC_KVM_ONLY
FORCED(random_page, runs)
FORCED(random_cardmix, runs)
FORCED(random_peek, runs)
FORCED(threads_fixed, runs)
FORCED(fork_scenario, runs)
FORCED(unmap_half, runs)
FORCED(replace_half, runs)
FORCED(dontneed, runs)
FORCED(random_page, auto)
FORCED(random_cardmix, auto)
FORCED(threads_fixed, auto)
FORCED(dontneed, auto)
#endif
