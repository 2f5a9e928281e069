/* test_exempt.c - fg_set_exempt(): pages the caller treats as dirty anyway.
 *
 * The contract: a page written since the last collection that reported it
 * is reported by the next collection at which it is not exempt.  While
 * exempt, a backend that can (uffd-async) leaves it out of collections:
 * not reported, not re-protected, so writing it does not fault; the others
 * ignore the hint (the contract holds trivially).
 *
 *   contract_*   random schedules over 256 pages: ranges made exempt and
 *                watched again, random writes, a collection per round;
 *                every pending write of a watched page must be reported
 *                (the test's own record, not the library's);
 *   concurrent_* two writer threads store to random pages while the main
 *                thread changes scattered exemptions and collects: every
 *                watched page written before a collection began is
 *                reported by it or by one that began after the store;
 *   no_faults    uffd-async: after a collection, writing exempt pages
 *                costs no page fault (getrusage minor faults), writing
 *                watched ones one per page;
 *   bad_range    a range outside every region: -FG_ENOTREG.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "fg.h"
#include "oracle.h"

#define TIMEOUT 120
#define NPAGES 256
#define ROUNDS 300

static fg_tracker *start(fg_backend_id id, uint8_t **m, size_t ps)
{
	fg_options o = FG_OPTIONS_INIT;
	fg_tracker *t;

	o.backend = id;
	o.flags = FG_OPT_NO_ENV;
	cr_assert_eq(fg_tracker_create(&o, &t), 0, "fg_tracker_create: %s",
		     fg_last_error_detail());
	cr_assert_eq(fg_region_alloc(t, NPAGES * ps, (void **)m), 0,
		     "fg_region_alloc: %s", fg_last_error_detail());
	return t;
}

/* Collect; reported[p] = 1 for every page a reported range touches. */
static void collect(fg_tracker *t, const uint8_t *m, size_t ps,
		    uint8_t *reported)
{
	fg_iter it;
	fg_range r;
	int n = fg_collect(t, &it);

	cr_assert_geq(n, 0, "fg_collect: %s (%s)", fg_strerror(n),
		      fg_last_error_detail());
	memset(reported, 0, NPAGES);
	while (fg_iter_next(&it, &r) == 1) {
		uintptr_t a = (uintptr_t)r.addr, e = a + r.len;

		cr_assert(a >= (uintptr_t)m && e <= (uintptr_t)m + NPAGES * ps,
			  "reported range [%p, +%zu) outside the region", r.addr,
			  r.len);
		for (uintptr_t p = (a - (uintptr_t)m) / ps;
		     p < (e - (uintptr_t)m + ps - 1) / ps; p++)
			reported[p] = 1;
	}
}

static void contract(fg_backend_id id)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	uint8_t exempt[NPAGES] = {0}, pending[NPAGES] = {0}, reported[NPAGES];
	unsigned long checked = 0, skipped = 0;
	char tag[64];
	orc_rng rng;
	fg_tracker *t;
	uint8_t *m;

	ORC_REQUIRE_BACKEND(id);
	snprintf(tag, sizeof tag, "exempt::contract_%s", fg_backend_name(id));
	orc_rng_init(&rng, orc_seed(tag));
	t = start(id, &m, ps);
	collect(t, m, ps, reported); /* epoch start */
	for (unsigned round = 0; round < ROUNDS; round++) {
		/* toggle a few ranges */
		for (int k = (int)orc_below(&rng, 4); k > 0; k--) {
			size_t a = orc_below(&rng, NPAGES);
			size_t n = 1 + orc_below(&rng, NPAGES - a < 40 ? NPAGES - a
								       : 40);
			int on = (int)orc_below(&rng, 2);

			cr_assert_eq(fg_set_exempt(t, m + a * ps, n * ps, on), 0,
				     "fg_set_exempt: %s", fg_last_error_detail());
			memset(exempt + a, on, n);
		}
		/* write some pages, exempt or not */
		for (int k = (int)orc_below(&rng, 64); k > 0; k--) {
			size_t p = orc_below(&rng, NPAGES);

			m[p * ps + orc_below(&rng, ps)] = (uint8_t)orc_next(&rng);
			pending[p] = 1;
		}
		collect(t, m, ps, reported);
		for (size_t p = 0; p < NPAGES; p++) {
			if (exempt[p]) {
				/* a backend that ignores the hint reports it */
				if (reported[p])
					pending[p] = 0;
				skipped += pending[p];
				continue;
			}
			if (pending[p])
				checked++;
			cr_assert(!pending[p] || reported[p],
				  "round %u: page %zu was written (%s since its "
				  "last report) and is watched, yet not reported",
				  round, p, "pending");
			pending[p] = 0;
		}
	}
	cr_log_info("%s: %lu pending pages checked, %lu left pending while "
		    "exempt",
		    fg_backend_name(id), checked, skipped);
	cr_assert_gt(checked, ROUNDS, "the schedule checked too little");
	cr_assert_eq(fg_tracker_destroy(t), 0);
}

ORC_PER_BACKEND(exempt, contract, TIMEOUT)

static long minflt(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

/* Writers race the collections.  Two threads store to random pages,
 * exempt or watched.  Before each store a writer reads how many
 * collections have begun (started), and after it records that count,
 * the least one pending, in pending[page] (plus one: 0 is none).  Before
 * each collection the main thread takes the pending marks; a store that
 * read s happened after collection s began, so collection s or one after
 * it, up to this one, must have reported its page, or seen it exempt or
 * watched again (dirty to the caller anyway).  A writer may be preempted
 * between its store and its mark for several collections: the count, not
 * "this collection or the one before", is what bounds the store.
 * Exemption changes between collections in scattered ranges, so that on
 * uffd-async the written exempt pages split the re-protecting scans into
 * many groups, which span unwritten exempt pages that a writer may store
 * to meanwhile. */
#define CPAGES 1024
#define CROUNDS 600
#define CCHECKED 1000 /* watched pending pages to check, at least */

struct cwriter {
	uint8_t *m;
	size_t ps;
	_Atomic uint32_t *pending;
	_Atomic uint32_t *started;
	_Atomic int stop;
	uint64_t seed, stores;
};

static void *cwriter_main(void *arg)
{
	struct cwriter *w = arg;
	orc_rng g;

	orc_rng_init(&g, w->seed);
	while (!atomic_load(&w->stop)) {
		size_t p = orc_below(&g, CPAGES);
		uint32_t s = atomic_load(w->started) + 1;
		uint32_t cur = atomic_load(&w->pending[p]);

		((volatile uint8_t *)w->m)[p * w->ps + orc_below(&g, w->ps)] =
			(uint8_t)orc_next(&g);
		while ((cur == 0 || cur > s) &&
		       !atomic_compare_exchange_weak(&w->pending[p], &cur, s))
			;
		w->stores++;
		if (orc_below(&g, 64) == 0)
			sched_yield();
	}
	return NULL;
}

static void concurrent(fg_backend_id id)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	static _Atomic uint32_t pending[CPAGES];
	static _Atomic uint32_t started;
	/* last_ok[p]: the last collection that reported p or at which it
	 * was exempt or watched again (0: none yet). */
	static uint32_t due[CPAGES], last_ok[CPAGES];
	uint8_t exempt[CPAGES] = {0}, fresh[CPAGES] = {0};
	struct cwriter w[2];
	pthread_t th[2];
	unsigned long checked = 0, late = 0;
	uint64_t seed, t0;
	char tag[64];
	orc_rng g;
	fg_options o = FG_OPTIONS_INIT;
	fg_tracker *t;
	fg_iter it;
	fg_range r;
	uint8_t *m;

	ORC_REQUIRE_BACKEND(id);
	snprintf(tag, sizeof tag, "exempt::concurrent_%s", fg_backend_name(id));
	seed = orc_seed(tag);
	orc_rng_init(&g, seed);
	o.backend = id;
	o.flags = FG_OPT_NO_ENV;
	cr_assert_eq(fg_tracker_create(&o, &t), 0, "%s", fg_last_error_detail());
	cr_assert_eq(fg_region_alloc(t, CPAGES * ps, (void **)&m), 0, "%s",
		     fg_last_error_detail());
	memset(m, 1, CPAGES * ps);
	for (size_t p = 0; p < CPAGES; p++) {
		atomic_store(&pending[p], 0);
		last_ok[p] = 0;
	}
	atomic_store(&started, 0);
	cr_assert_geq(fg_collect(t, &it), 0);
	for (int i = 0; i < 2; i++) {
		w[i] = (struct cwriter){m, ps, pending, &started, 0,
					orc_next(&g), 0};
		cr_assert_eq(pthread_create(&th[i], NULL, cwriter_main, &w[i]),
			     0);
	}
	t0 = orc_now_ns();
	/* CROUNDS collections, and more while the writers, starved of the
	 * processor by other load on the machine, have given too few
	 * stores to check, until 30 s after the first. */
	for (uint32_t c = 1;
	     c <= CROUNDS || (checked <= CCHECKED &&
			      orc_now_ns() - t0 < UINT64_C(30000000000));
	     c++) {
		int n;

		/* Scattered exemption: runs of 1-8 pages. */
		for (int k = (int)orc_below(&g, 16); k > 0; k--) {
			size_t a = orc_below(&g, CPAGES);
			size_t len = 1 + orc_below(&g, 8);
			int on = orc_below(&g, 3) != 0;

			if (a + len > CPAGES)
				len = CPAGES - a;
			cr_assert_eq(fg_set_exempt(t, m + a * ps, len * ps, on),
				     0, "%s", fg_last_error_detail());
			for (size_t p = a; p < a + len; p++) {
				/* Watched again: dirty to the caller at
				 * the next collection anyway. */
				if (exempt[p] && !on)
					fresh[p] = 1;
				exempt[p] = (uint8_t)on;
			}
		}
		orc_spin_us((unsigned)orc_below(&g, 200));
		/* Marks first, then the count: a store marked now read a
		 * count below c. */
		for (size_t p = 0; p < CPAGES; p++)
			due[p] = atomic_exchange(&pending[p], 0);
		atomic_store(&started, c);
		n = fg_collect(t, &it);
		cr_assert_geq(n, 0, "fg_collect: %s (%s)", fg_strerror(n),
			      fg_last_error_detail());
		while (fg_iter_next(&it, &r) == 1)
			for (uintptr_t a = (uintptr_t)r.addr;
			     a < (uintptr_t)r.addr + r.len; a += ps)
				last_ok[(a - (uintptr_t)m) / ps] = c;
		for (size_t p = 0; p < CPAGES; p++) {
			uint32_t s;

			if (exempt[p] || fresh[p])
				last_ok[p] = c;
			if (!due[p])
				continue;
			/* The store read s: collection s (or 1, the
			 * first after the writers began) or a later one
			 * must account for it. */
			s = due[p] > 1 ? due[p] - 1 : 1;
			/* Collection s+1 to c-2 began between store and
			 * mark. */
			late += s + 2 < c;
			if (!exempt[p] && !fresh[p])
				checked++;
			cr_assert(last_ok[p] >= s,
				  "concurrent %s seed=%" PRIu64 " collection "
				  "%u: page %zu, watched, was written after "
				  "collection %u began and before this one "
				  "did, and none since reported it (last: "
				  "%u)",
				  fg_backend_name(id), seed, c, p, s,
				  last_ok[p]);
		}
		memset(fresh, 0, sizeof fresh);
	}
	for (int i = 0; i < 2; i++) {
		atomic_store(&w[i].stop, 1);
		pthread_join(th[i], NULL);
	}
	fprintf(stderr,
		"concurrent %-10s: seed=%" PRIu64 " %" PRIu64 " stores, %lu "
		"pending watched pages checked (%lu marked only after a "
		"later collection had begun), missed=0\n",
		fg_backend_name(id), seed, w[0].stores + w[1].stores, checked,
		late);
	cr_assert_gt(checked, CCHECKED, "the schedule checked too little");
	cr_assert_eq(fg_tracker_destroy(t), 0);
}

ORC_PER_BACKEND(exempt, concurrent, TIMEOUT)

Test(exempt, no_faults_uffd_async, .timeout = TIMEOUT)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), half = NPAGES / 2;
	uint8_t reported[NPAGES];
	long ex = 0, watched = 0, f0;
	fg_tracker *t;
	uint8_t *m;

	ORC_REQUIRE_BACKEND(FG_BACKEND_UFFD_ASYNC);
	t = start(FG_BACKEND_UFFD_ASYNC, &m, ps);
	cr_assert_eq(fg_set_exempt(t, m, half * ps, 1), 0, "%s",
		     fg_last_error_detail());
	memset(m, 1, NPAGES * ps); /* every page present and written once */
	collect(t, m, ps, reported);
	for (size_t p = 0; p < half; p++)
		cr_assert(!reported[p], "exempt page %zu was reported", p);
	for (size_t p = half; p < NPAGES; p++)
		cr_assert(reported[p], "watched page %zu was not reported", p);
	for (int epoch = 0; epoch < 4; epoch++) {
		f0 = minflt();
		for (size_t p = 0; p < half; p++)
			m[p * ps] = (uint8_t)epoch;
		ex += minflt() - f0;
		f0 = minflt();
		for (size_t p = half; p < NPAGES; p++)
			m[p * ps] = (uint8_t)epoch;
		watched += minflt() - f0;
		collect(t, m, ps, reported);
	}
	cr_log_info("4 epochs x %zu pages: %ld faults writing exempt pages, "
		    "%ld writing watched ones",
		    half, ex, watched);
	cr_assert_lt(ex, (long)half / 4,
		     "writing exempt pages faulted %ld times in 4 epochs of %zu "
		     "pages: they were re-protected",
		     ex, half);
	cr_assert_geq(watched, (long)(3 * half),
		      "writing watched pages faulted only %ld times in 4 epochs "
		      "of %zu pages: were they protected?",
		      watched, half);
	/* Watched again: the writes made while exempt are reported. */
	cr_assert_eq(fg_set_exempt(t, m, half * ps, 0), 0);
	collect(t, m, ps, reported);
	for (size_t p = 0; p < half; p++)
		cr_assert(reported[p],
			  "page %zu, written while exempt, not reported once "
			  "watched again",
			  p);
	cr_assert_eq(fg_tracker_destroy(t), 0);
}

Test(exempt, bad_range, .timeout = TIMEOUT)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	static char outside[1 << 16];
	fg_tracker *t;
	uint8_t *m;

	ORC_REQUIRE_BACKEND(FG_BACKEND_UFFD_ASYNC);
	t = start(FG_BACKEND_UFFD_ASYNC, &m, ps);
	cr_assert_eq(fg_set_exempt(t, outside, sizeof outside, 1), -FG_ENOTREG);
	cr_assert_eq(fg_set_exempt(t, m, (NPAGES + 1) * ps, 1), -FG_ENOTREG);
	cr_assert_eq(fg_set_exempt(t, m, 0, 1), -FG_ENOTREG);
	cr_assert_eq(fg_tracker_destroy(t), 0);
}
