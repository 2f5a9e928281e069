/* test_collect_flags.c - fg_collect_flags(FG_COLLECT_WHOLE_PAGES).
 *
 * The case it exists for: under DIFF, a card whose bytes were changed and
 * then restored within an epoch reads clean (its bytes equal the twin);
 * with FG_COLLECT_WHOLE_PAGES the written page is reported whole, and the
 * next collection without the flag is precise again.  Unknown flags fail
 * with -EINVAL and leave the tracker working.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fg.h"
#include "oracle.h"

#define TIMEOUT 60
#define NPAGES 64

/* Sum of the reported bytes and whether [a, a+len) is covered. */
static size_t collect(fg_tracker *t, unsigned flags, uintptr_t a, size_t len,
		      int *covered)
{
	fg_iter it;
	fg_range r;
	size_t total = 0;
	int n = fg_collect_flags(t, &it, flags);

	cr_assert_geq(n, 0, "fg_collect_flags: %s (%s)", fg_strerror(n),
		      fg_last_error_detail());
	*covered = 0;
	while (fg_iter_next(&it, &r) == 1) {
		total += r.len;
		if ((uintptr_t)r.addr <= a && a + len <= (uintptr_t)r.addr + r.len)
			*covered = 1;
	}
	return total;
}

static void scn_aba(fg_backend_id id)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	fg_options o = FG_OPTIONS_INIT;
	fg_tracker *t;
	uint8_t *m;
	int cov;

	ORC_REQUIRE_BACKEND(id);
	o.backend = id;
	o.flags = FG_OPT_NO_ENV;
	o.card_size = 64;
	o.precision = FG_PRECISION_DIFF;
	cr_assert_eq(fg_tracker_create(&o, &t), 0, "%s", fg_last_error_detail());
	cr_assert_eq(fg_region_alloc(t, NPAGES * ps, (void **)&m), 0, "%s",
		     fg_last_error_detail());
	memset(m, 0x11, NPAGES * ps);
	/* Several epochs of writes to the same pages: every backend ends up
	 * with twins for them (hook or eager). */
	for (int e = 0; e < 4; e++) {
		for (size_t p = 0; p < NPAGES; p++)
			m[p * ps + 128] = (uint8_t)(e + 1);
		collect(t, 0, 0, 0, &cov);
	}
	/* ABA: change and restore a byte on page 5. */
	m[5 * ps + 640] ^= 0xff;
	m[5 * ps + 640] ^= 0xff;
	/* And a real change on page 7. */
	m[7 * ps + 1024] = 0x77;
	size_t whole = collect(t, FG_COLLECT_WHOLE_PAGES,
			       (uintptr_t)m + 5 * ps, ps, &cov);
	cr_assert(cov, "%s: a written page was not reported whole with "
		       "FG_COLLECT_WHOLE_PAGES",
		  fg_backend_name(id));
	cr_assert_geq(whole, 2 * ps, "%s: %zu bytes reported, two whole "
				     "pages expected",
		      fg_backend_name(id), whole);
	/* Precise again: only the changed line of page 7. */
	m[7 * ps + 1024] = 0x78;
	size_t precise = collect(t, 0, (uintptr_t)m + 7 * ps + 1024, 1, &cov);
	cr_assert(cov, "%s: the changed line was not reported",
		  fg_backend_name(id));
	if (fg_backend_caps(id) & (FG_CAP_COLLECT_TWINS | FG_CAP_HOOK_TWINS))
		cr_assert_lt(precise, ps,
			     "%s: %zu bytes reported after the whole-page "
			     "collection, DIFF should be precise again",
			     fg_backend_name(id), precise);
	cr_assert_eq(fg_collect_flags(t, NULL, 0x80), -EINVAL);
	cr_assert_geq(fg_collect_flags(t, NULL, 0), 0, "the tracker works after a bad call");
	cr_assert_eq(fg_tracker_destroy(t), 0);
}

ORC_PER_BACKEND(collect_flags, scn_aba, TIMEOUT)
