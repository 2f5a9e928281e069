/* test_badinput.c - every misuse of the API fails with its documented code,
 * says why (fg_strerror, fg_last_error_detail), and leaves the tracker
 * working: a canary region registered before the bad call is still tracked
 * after it, and a fresh region can be registered and is tracked too.
 *
 * Tests whose outcome depends on the backend (registration, regions,
 * collections) run once per backend; a backend the machine lacks is a
 * visible skip with the probe's reason.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* config.h defines it in the autotools build */
#endif
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fg.h"
#include "oracle.h" /* the per-backend test macros only */

#define TIMEOUT 60

#define PER_BACKEND(scn) ORC_PER_BACKEND(badinput, scn, TIMEOUT)

static size_t ps;

static void init_ps(void)
{
	ps = (size_t)sysconf(_SC_PAGESIZE);
}

static const char *code_name(int code)
{
	static const char *const names[] = {
		"FG_EUNALIGNED", "FG_EZEROLEN",	  "FG_EOVERLAP",
		"FG_EUNMAPPED",	 "FG_EMEMKIND",	  "FG_ENOTREG",
		"FG_EDESTROYED", "FG_EBADTRACKER", "FG_ECARD",
		"FG_EUNAVAIL",	 "FG_EBACKENDNAME", "FG_ESTALE",
		"FG_EFORKED",	 "FG_EBITMAP",
	};

	if (code >= FG_EBASE && code < FG_ELAST)
		return names[code - FG_EBASE];
	return "?";
}

/* The detail left by a different failure just before the call under test:
 * if the call records none, the detail would still read this. */
static char primed[512];

static void prime(int code)
{
	fg_backend_id id;

	if (code == FG_EBADTRACKER)
		(void)fg_backend_from_name("badinput-primer", &id);
	else
		(void)fg_set_card_size(NULL, 4096);
	snprintf(primed, sizeof primed, "%s", fg_last_error_detail());
}

static void expect_err(int code, const char *call, int line, int rc)
{
	const char *msg = fg_strerror(rc), *detail = fg_last_error_detail();

	cr_assert_eq(rc, -code,
		     "line %d: %s: expected -%s (%d), got %d (%s); detail: %s",
		     line, call, code_name(code), -code, rc, fg_strerror(rc),
		     detail);
	cr_assert(msg && *msg && strcmp(msg, "unknown error") &&
			  strncmp(msg, "Unknown error", 13),
		  "line %d: fg_strerror(-%s) = \"%s\" is not a meaningful "
		  "message",
		  line, code_name(code), msg ? msg : "(null)");
	cr_assert(detail && *detail,
		  "line %d: %s failed with -%s but fg_last_error_detail() is "
		  "empty",
		  line, call, code_name(code));
	cr_assert(strcmp(detail, primed),
		  "line %d: %s failed with -%s but fg_last_error_detail() "
		  "still holds the previous failure's \"%s\"",
		  line, call, code_name(code), detail);
}

#define EXPECT_ERR(code, call)                                               \
	expect_err(code, #call, __LINE__, (prime(code), (call)))

#define EXPECT_OK(call)                                                      \
	do {                                                                 \
		int rc_ = (call);                                            \
		cr_assert_eq(rc_, 0, "line %d: %s = %d (%s): %s", __LINE__,  \
			     #call, rc_, fg_strerror(rc_),                   \
			     fg_last_error_detail());                        \
	} while (0)


static fg_tracker *make(fg_backend_id id)
{
	fg_options o = FG_OPTIONS_INIT;
	fg_tracker *t = NULL;

	o.backend = id;
	o.flags = FG_OPT_NO_ENV;
	EXPECT_OK(fg_tracker_create(&o, &t));
	cr_assert_not_null(t);
	return t;
}

static void *map(size_t pages, int prot)
{
	void *p = mmap(NULL, pages * ps, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		       0);

	cr_assert_neq(p, MAP_FAILED, "mmap: %s", strerror(errno));
	return p;
}

/* Collect; whether every byte of [a, a+len) lies in a reported range. */
static bool reported(fg_tracker *t, const void *a, size_t len)
{
	uintptr_t lo = (uintptr_t)a, hi = lo + len, covered = lo;
	fg_iter it;
	fg_range r;
	int rc = fg_collect(t, &it), more;

	cr_assert_geq(rc, 0, "fg_collect: %d (%s): %s", rc, fg_strerror(rc),
		      fg_last_error_detail());
	while ((more = fg_iter_next(&it, &r)) == 1)
		if ((uintptr_t)r.addr <= covered &&
		    (uintptr_t)r.addr + r.len > covered)
			covered = (uintptr_t)r.addr + r.len;
	cr_assert_eq(more, 0, "fg_iter_next: %d (%s)", more, fg_strerror(more));
	return covered >= hi;
}

/* Start an epoch on [p, p+len), write the byte at w, and assert that the
 * next collection reports it. */
static void assert_write_seen(fg_tracker *t, uint8_t *p, size_t len,
			      uint8_t *w, const char *what)
{
	(void)reported(t, p, len);
	*w ^= 0x5a;
	cr_assert(reported(t, w, 1), "%s: the write at %p was not reported",
		  what, (void *)w);
}

/* A region registered before the bad calls, checked after them. */
typedef struct canary {
	uint8_t *p;
	size_t len;
} canary;

static canary canary_start(fg_tracker *t)
{
	canary c = {map(4, PROT_READ | PROT_WRITE), 4 * ps};

	EXPECT_OK(fg_register(t, c.p, c.len));
	(void)reported(t, c.p, c.len); /* start a clean epoch */
	return c;
}

/* Nothing corrupted: the canary is still tracked (a write reported, and,
 * for a tracking backend, an unwritten page not), and a fresh region can
 * be registered, tracked and unregistered. */
static void still_works(fg_tracker *t, fg_backend_id id, canary *c,
			const char *after)
{
	uint8_t *f = map(3, PROT_READ | PROT_WRITE);
	char what[256];

	c->p[2 * ps + 100] ^= 0xff;
	cr_assert(reported(t, c->p + 2 * ps + 100, 1),
		  "after %s: a write to a region registered before it was not "
		  "reported",
		  after);
	if (fg_backend_caps(id) & FG_CAP_TRACKS)
		cr_assert(!reported(t, c->p, ps),
			  "after %s: an unwritten page of the canary region "
			  "was reported dirty by a quiet collection",
			  after);
	EXPECT_OK(fg_register(t, f, 3 * ps));
	snprintf(what, sizeof what, "after %s, a fresh region", after);
	assert_write_seen(t, f, 3 * ps, f + ps + 7, what);
	EXPECT_OK(fg_unregister(t, f, 3 * ps));
	EXPECT_OK(fg_unregister(t, c->p, c->len));
	munmap(f, 3 * ps);
	munmap(c->p, c->len);
}

/* ------------------------------------------------------------------ */

/* The common start of a per-backend test: a tracker with a canary region,
 * and a fresh private mapping of the given pages. */
static fg_tracker *setup(fg_backend_id id, canary *c, size_t pages,
			 uint8_t **p)
{
	fg_tracker *t;

	ORC_REQUIRE_BACKEND(id);
	init_ps();
	t = make(id);
	*c = canary_start(t);
	*p = map(pages, PROT_READ | PROT_WRITE);
	return t;
}

static void unaligned(fg_backend_id id)
{
	fg_tracker *t;
	canary c;
	uint8_t *p;

	t = setup(id, &c, 4, &p);
	EXPECT_ERR(FG_EUNALIGNED, fg_register(t, p + 1, ps));
	EXPECT_ERR(FG_EUNALIGNED, fg_register(t, p + 64, 2 * ps));
	EXPECT_ERR(FG_EUNALIGNED, fg_register(t, p, ps + 1));
	EXPECT_ERR(FG_EUNALIGNED, fg_register(t, p, ps - 64));
	EXPECT_ERR(FG_EZEROLEN, fg_register(t, p, 0));
	/* None of them registered anything: the whole range is free. */
	EXPECT_OK(fg_register(t, p, 4 * ps));
	EXPECT_OK(fg_unregister(t, p, 4 * ps));
	still_works(t, id, &c, "unaligned and zero-length registrations");
	EXPECT_OK(fg_tracker_destroy(t));
	munmap(p, 4 * ps);
}

static void overlap(fg_backend_id id)
{
	fg_options o = FG_OPTIONS_INIT;
	fg_tracker *t, *t2, *t3;
	uint8_t *p;
	canary c;

	ORC_REQUIRE_BACKEND(id);
	init_ps();
	t = make(id);
	t2 = make(id);
	c = canary_start(t);
	p = map(8, PROT_READ | PROT_WRITE);
	EXPECT_OK(fg_register(t, p + 2 * ps, 4 * ps));
	EXPECT_ERR(FG_EOVERLAP, fg_register(t, p + 2 * ps, 4 * ps));
	EXPECT_ERR(FG_EOVERLAP, fg_register(t, p + 3 * ps, ps));
	EXPECT_ERR(FG_EOVERLAP, fg_register(t, p, 3 * ps));
	EXPECT_ERR(FG_EOVERLAP, fg_register(t, p + 5 * ps, 3 * ps));
	EXPECT_ERR(FG_EOVERLAP, fg_register(t, p, 8 * ps));
	/* Another tracker of the same process, same and other backend. */
	EXPECT_ERR(FG_EOVERLAP, fg_register(t2, p + 2 * ps, 4 * ps));
	EXPECT_ERR(FG_EOVERLAP, fg_register(t2, p + 5 * ps, ps));
	o.backend = FG_BACKEND_NONE;
	o.flags = FG_OPT_NO_ENV;
	EXPECT_OK(fg_tracker_create(&o, &t3));
	EXPECT_ERR(FG_EOVERLAP, fg_register(t3, p, 4 * ps));
	/* Touching is not overlapping. */
	EXPECT_OK(fg_register(t2, p, 2 * ps));
	EXPECT_OK(fg_register(t3, p + 6 * ps, 2 * ps));
	/* The region refused to t2 is still t's and still tracked. */
	assert_write_seen(t, p + 2 * ps, 4 * ps, p + 4 * ps,
			  "after refused overlapping registrations");
	EXPECT_OK(fg_unregister(t, p + 2 * ps, 4 * ps));
	still_works(t, id, &c, "overlapping registrations");
	EXPECT_OK(fg_tracker_destroy(t));
	EXPECT_OK(fg_tracker_destroy(t2));
	EXPECT_OK(fg_tracker_destroy(t3));
	munmap(p, 8 * ps);
}

static void unmapped(fg_backend_id id)
{
	fg_tracker *t;
	uint8_t *p;
	canary c;

	t = setup(id, &c, 3, &p);
	cr_assert_eq(munmap(p + ps, ps), 0);
	EXPECT_ERR(FG_EUNMAPPED, fg_register(t, p, 3 * ps));
	EXPECT_ERR(FG_EUNMAPPED, fg_register(t, p + ps, ps));
	EXPECT_ERR(FG_EUNMAPPED, fg_register(t, p, 2 * ps));
	/* The mapped pages around the hole are untouched and registrable:
	 * a failed registration left nothing behind. */
	EXPECT_OK(fg_register(t, p, ps));
	EXPECT_OK(fg_register(t, p + 2 * ps, ps));
	assert_write_seen(t, p, ps, p + 2 * ps,
			  "after refused registrations of a hole");
	EXPECT_OK(fg_unregister(t, p, ps));
	EXPECT_OK(fg_unregister(t, p + 2 * ps, ps));
	still_works(t, id, &c, "registering unmapped memory");
	EXPECT_OK(fg_tracker_destroy(t));
	munmap(p, 3 * ps);
}

static void memkind(fg_backend_id id)
{
	char path[] = "/tmp/fg-badinput-XXXXXX";
	fg_tracker *t;
	uint8_t *ro, *file;
	canary c;
	int fd;

	ORC_REQUIRE_BACKEND(id);
	init_ps();
	t = make(id);
	c = canary_start(t);
	ro = map(2, PROT_READ);
	EXPECT_ERR(FG_EMEMKIND, fg_register(t, ro, 2 * ps));
	fd = mkstemp(path);
	cr_assert_geq(fd, 0, "mkstemp: %s", strerror(errno));
	unlink(path);
	cr_assert_eq(ftruncate(fd, (off_t)(2 * ps)), 0);
	file = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	cr_assert_neq(file, MAP_FAILED, "mmap of a file: %s", strerror(errno));
	/* A private mapping of a file: only where the backend says it
	 * watches those (test_caps' private_file checks that it does). */
	if (fg_backend_caps(id) & FG_CAP_PRIVATE_FILE) {
		EXPECT_OK(fg_register(t, file, 2 * ps));
		EXPECT_OK(fg_unregister(t, file, 2 * ps));
	} else {
		EXPECT_ERR(FG_EMEMKIND, fg_register(t, file, 2 * ps));
	}
	/* Refused memory stays as it was: still writable where it was. */
	file[5] = 1;
	still_works(t, id, &c, "registering untrackable memory");
	EXPECT_OK(fg_tracker_destroy(t));
	munmap(ro, 2 * ps);
	munmap(file, 2 * ps);
	close(fd);
}

static void notreg(fg_backend_id id)
{
	fg_tracker *t;
	uint8_t *p, *q;
	canary c;

	t = setup(id, &c, 4, &p);
	q = map(1, PROT_READ | PROT_WRITE);
	EXPECT_OK(fg_register(t, p, 4 * ps));
	EXPECT_OK(fg_unregister(t, p, 4 * ps));
	EXPECT_ERR(FG_ENOTREG, fg_unregister(t, p, 4 * ps));
	EXPECT_ERR(FG_ENOTREG, fg_unregister(t, q, ps));
	EXPECT_OK(fg_register(t, p, 4 * ps));
	EXPECT_ERR(FG_ENOTREG, fg_unregister(t, p, 2 * ps));
	EXPECT_ERR(FG_ENOTREG, fg_unregister(t, p, 5 * ps));
	EXPECT_ERR(FG_ENOTREG, fg_unregister(t, p + ps, ps));
	EXPECT_ERR(FG_ENOTREG, fg_mark_dirty(t, q, 8));
	EXPECT_ERR(FG_ENOTREG, fg_expect_writes(t, q, 8));
	EXPECT_ERR(FG_ENOTREG, fg_expect_writes(t, p + 3 * ps, 2 * ps));
	EXPECT_ERR(FG_ENOTREG, fg_expect_writes(t, p, 0));
	/* The wrongly unregistered region is still registered and tracked. */
	assert_write_seen(t, p, 4 * ps, p + 3 * ps + 1,
			  "a region kept after wrong-length unregisters");
	EXPECT_OK(fg_unregister(t, p, 4 * ps));
	still_works(t, id, &c, "unregistering what was not registered");
	EXPECT_OK(fg_tracker_destroy(t));
	munmap(p, 4 * ps);
	munmap(q, ps);
}

static void destroyed(fg_backend_id id)
{
	fg_tracker *t, *t2;
	uint64_t bits[4];
	fg_stats st = {.size = sizeof st};
	fg_iter it;
	fg_range r;
	void *out = NULL;
	uint8_t *p;

	ORC_REQUIRE_BACKEND(id);
	init_ps();
	t = make(id);
	p = map(4, PROT_READ | PROT_WRITE);
	EXPECT_OK(fg_register(t, p, 4 * ps));
	cr_assert_geq(fg_collect(t, &it), 0);
	p[0] = 1;
	EXPECT_OK(fg_tracker_destroy(t));
	/* Every call on the handle now says so. */
	EXPECT_ERR(FG_EDESTROYED, fg_register(t, p, ps));
	EXPECT_ERR(FG_EDESTROYED, fg_unregister(t, p, 4 * ps));
	EXPECT_ERR(FG_EDESTROYED, fg_collect(t, &it));
	EXPECT_ERR(FG_EDESTROYED, fg_collect_bitmap(t, p, 4 * ps, bits, 256));
	EXPECT_ERR(FG_EDESTROYED, fg_set_card_size(t, 4096));
	EXPECT_ERR(FG_EDESTROYED, fg_get_stats(t, &st));
	EXPECT_ERR(FG_EDESTROYED, fg_mark_dirty(t, p, 8));
	EXPECT_ERR(FG_EDESTROYED, fg_expect_writes(t, p, 8));
	EXPECT_ERR(FG_EDESTROYED, fg_region_alloc(t, ps, &out));
	cr_assert_null(out, "fg_region_alloc on a destroyed tracker wrote *out");
	EXPECT_ERR(FG_EDESTROYED, fg_region_free(t, p, ps));
	EXPECT_ERR(FG_EDESTROYED, fg_iter_next(&it, &r));
	EXPECT_ERR(FG_EDESTROYED, fg_tracker_destroy(t));
	/* Destroy released the memory: writable (no fault left armed) and
	 * free to be registered again, by a new tracker. */
	p[ps + 3] = 2;
	t2 = make(id);
	canary c = canary_start(t2);
	EXPECT_OK(fg_register(t2, p, 4 * ps));
	assert_write_seen(t2, p, 4 * ps, p + 2 * ps,
			  "memory of a destroyed tracker, registered again");
	EXPECT_OK(fg_unregister(t2, p, 4 * ps));
	still_works(t2, id, &c, "using a destroyed tracker");
	EXPECT_OK(fg_tracker_destroy(t2));
	munmap(p, 4 * ps);
}

static void card_sizes(fg_backend_id id)
{
	static const size_t bad[] = {0, 1, 32, 63, 96, 100, 4096 + 64, 6144,
				     3 * 4096 + 64};
	static const size_t good[] = {64, 128, 256, 2048, 4096, 8192, 12288,
				      16384, 1 << 20};
	fg_options o = FG_OPTIONS_INIT;
	fg_tracker *t, *t2 = (fg_tracker *)&o;
	uint8_t *p;
	canary c;

	ORC_REQUIRE_BACKEND(id);
	init_ps();
	cr_assert_eq(ps, 4096, "the card lists assume 4 KiB pages");
	t = make(id);
	c = canary_start(t);
	p = map(64, PROT_READ | PROT_WRITE);
	EXPECT_OK(fg_register(t, p, 64 * ps));
	for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
		size_t card = good[i];
		uint8_t *w = p + 33 * ps + 200;
		fg_iter it;
		fg_range r;
		bool seen = false;

		EXPECT_OK(fg_set_card_size(t, card));
		for (size_t j = 0; j < sizeof bad / sizeof *bad; j++)
			EXPECT_ERR(FG_ECARD, fg_set_card_size(t, bad[j]));
		/* The refused sizes did not replace the accepted one. */
		cr_assert_geq(fg_collect(t, &it), 0);
		cr_assert_eq(fg_card_size(t), card,
			     "fg_card_size %zu after setting %zu then refused "
			     "sizes",
			     fg_card_size(t), card);
		*w ^= 1;
		cr_assert_geq(fg_collect(t, &it), 0);
		while (fg_iter_next(&it, &r) == 1) {
			uintptr_t a = (uintptr_t)r.addr, e = a + r.len;

			if ((uintptr_t)w >= a && (uintptr_t)w < e)
				seen = true;
			if (a >= (uintptr_t)p && e <= (uintptr_t)p + 64 * ps)
				cr_assert(
					(a % card == 0 || a == (uintptr_t)p) &&
						(e % card == 0 ||
						 e == (uintptr_t)p + 64 * ps),
					"card %zu: range [%p, +%zu) not "
					"card-aligned",
					card, r.addr, r.len);
		}
		cr_assert(seen, "card %zu: the write at %p was not reported",
			  card, (void *)w);
	}
	/* Bad sizes in the options refuse the tracker and leave *out. */
	o.backend = id;
	o.flags = FG_OPT_NO_ENV;
	for (size_t j = 1; j < sizeof bad / sizeof *bad; j++) {
		o.card_size = bad[j];
		EXPECT_ERR(FG_ECARD, fg_tracker_create(&o, &t2));
		cr_assert_eq(t2, (fg_tracker *)&o,
			     "a refused fg_tracker_create wrote *out");
	}
	o.card_size = 12288;
	EXPECT_OK(fg_tracker_create(&o, &t2));
	cr_assert_eq(fg_card_size(t2), 12288);
	EXPECT_OK(fg_tracker_destroy(t2));
	EXPECT_OK(fg_unregister(t, p, 64 * ps));
	EXPECT_OK(fg_set_card_size(t, 4096));
	still_works(t, id, &c, "bad card sizes");
	EXPECT_OK(fg_tracker_destroy(t));
	munmap(p, 64 * ps);
}

static void bitmap_small(fg_backend_id id)
{
	fg_tracker *t;
	uint8_t *p;
	uint64_t bits[2];
	size_t need;
	canary c;
	int rc;

	t = setup(id, &c, 100, &p);
	EXPECT_OK(fg_register(t, p, 100 * ps));
	(void)reported(t, p, 100 * ps);
	p[77 * ps] = 1;
	need = fg_bitmap_bits(t, p, 100 * ps);
	cr_assert_eq(need, 100, "fg_bitmap_bits for 100 pages of page cards: %zu",
		     need);
	EXPECT_ERR(FG_EBITMAP, fg_collect_bitmap(t, p, 100 * ps, bits, need - 1));
	EXPECT_ERR(FG_EBITMAP, fg_collect_bitmap(t, p, 100 * ps, bits, 64));
	EXPECT_ERR(FG_ENOTREG, fg_collect_bitmap(t, p, 50 * ps, bits, 128));
	EXPECT_ERR(FG_ENOTREG, fg_collect_bitmap(t, p + ps, 99 * ps, bits, 128));
	/* The refused calls did not consume the dirty state. */
	memset(bits, 0, sizeof bits);
	rc = fg_collect_bitmap(t, p, 100 * ps, bits, 128);
	cr_assert_geq(rc, 1, "fg_collect_bitmap after refused calls: %d (%s)",
		      rc, fg_strerror(rc));
	cr_assert((bits[77 / 64] >> (77 % 64)) & 1,
		  "the write to page 77 was lost by a refused "
		  "fg_collect_bitmap (bits %#llx %#llx)",
		  (unsigned long long)bits[0], (unsigned long long)bits[1]);
	EXPECT_OK(fg_unregister(t, p, 100 * ps));
	still_works(t, id, &c, "too small bitmaps");
	EXPECT_OK(fg_tracker_destroy(t));
	munmap(p, 100 * ps);
}

/* fg_iter_next_n hands out the same ranges as fg_iter_next, in batches,
 * and refuses what fg_iter_next refuses. */
static void iter_batches(fg_backend_id id)
{
	enum { PAGES = 64 };
	fg_tracker *t;
	fg_iter it, copy;
	fg_range one[PAGES], many[PAGES + 1];
	size_t n1 = 0, n2 = 0;
	uint8_t *p;
	canary c;
	int k;

	t = setup(id, &c, PAGES, &p);
	EXPECT_OK(fg_register(t, p, PAGES * ps));
	for (size_t i = 0; i < PAGES; i += 2)
		p[i * ps + (i % 7) * 64] = 1; /* apart: one range a page */
	cr_assert_geq(fg_collect(t, &it), 1, "written pages, no range");
	copy = it;
	while (n1 < PAGES && fg_iter_next(&it, &one[n1]) == 1)
		n1++;
	cr_assert_eq(fg_iter_next(&it, &one[0]), 0, "more than %d ranges",
		     PAGES);
	cr_assert_eq(fg_iter_next_n(&copy, many, 0), 0, "max 0: nothing");
	while ((k = fg_iter_next_n(&copy, many + n2, 5)) > 0) {
		cr_assert_leq(k, 5, "fg_iter_next_n filled %d of 5", k);
		n2 += (size_t)k;
		cr_assert_leq(n2, PAGES);
	}
	cr_assert_eq(k, 0, "fg_iter_next_n: %d (%s)", k, fg_strerror(k));
	cr_assert_eq(n2, n1, "%zu ranges in batches, %zu one by one", n2,
		     n1);
	for (size_t i = 0; i < n1; i++)
		cr_assert(one[i].addr == many[i].addr &&
				  one[i].len == many[i].len,
			  "range %zu: %p+%zu in batches, %p+%zu one by one",
			  i, many[i].addr, many[i].len, one[i].addr,
			  one[i].len);
	if (id != FG_BACKEND_NONE) /* none: the region, one range */
		cr_assert_geq(n1, PAGES / 2,
			      "%zu ranges for %d written pages apart", n1,
			      PAGES / 2);
	cr_assert_eq(fg_iter_next_n(NULL, many, 1), -EINVAL);
	cr_assert_eq(fg_iter_next_n(&copy, NULL, 1), -EINVAL);
	EXPECT_OK(fg_unregister(t, p, PAGES * ps));
	still_works(t, id, &c, "iterating in batches");
	EXPECT_OK(fg_tracker_destroy(t));
	munmap(p, PAGES * ps);
}

static void stale_iter(fg_backend_id id)
{
	fg_tracker *t;
	fg_iter it1, it2;
	fg_range r;
	uint8_t *p;
	canary c;
	int n;

	t = setup(id, &c, 4, &p);
	EXPECT_OK(fg_register(t, p, 4 * ps));
	p[0] = 1;
	cr_assert_geq(fg_collect(t, &it1), 1, "a written page, no range");
	p[2 * ps] = 1;
	n = fg_collect(t, &it2);
	cr_assert_geq(n, 1);
	EXPECT_ERR(FG_ESTALE, fg_iter_next(&it1, &r));
	EXPECT_ERR(FG_ESTALE, fg_iter_next_n(&it1, &r, 1));
	/* The fresh iterator is unaffected. */
	cr_assert_eq(fg_iter_next(&it2, &r), 1, "the current iterator broke");
	EXPECT_ERR(FG_ESTALE, fg_iter_next(&it1, &r));
	EXPECT_OK(fg_unregister(t, p, 4 * ps));
	still_works(t, id, &c, "a stale iterator");
	EXPECT_OK(fg_tracker_destroy(t));
	munmap(p, 4 * ps);
}

/* A public struct that may grow carries its size: the library must not
 * write past what an older caller declared. */
static void stats_size(fg_backend_id id)
{
	union {
		fg_stats st;
		unsigned char b[sizeof(fg_stats) + 64];
	} u;
	size_t small = offsetof(fg_stats, collections);
	fg_tracker *t;

	ORC_REQUIRE_BACKEND(id);
	init_ps();
	t = make(id);
	memset(&u, 0xab, sizeof u);
	u.st.size = small;
	EXPECT_OK(fg_get_stats(t, &u.st));
	cr_assert_eq(u.st.backend, id, "stats.backend not filled");
	for (size_t i = small; i < sizeof u; i++)
		cr_assert_eq(u.b[i], 0xab,
			     "fg_get_stats with size %zu wrote byte %zu", small,
			     i);
	EXPECT_OK(fg_tracker_destroy(t));
}

/* fg_region_alloc rounds up to pages and registers; fg_region_free undoes
 * it once, and only for what it allocated. */
static void region_alloc(fg_backend_id id)
{
	fg_tracker *t;
	uint8_t *p = NULL, *q;
	canary c;

	ORC_REQUIRE_BACKEND(id);
	init_ps();
	t = make(id);
	c = canary_start(t);
	EXPECT_OK(fg_region_alloc(t, 3 * ps + 1, (void **)&p));
	cr_assert_not_null(p);
	cr_assert_eq((uintptr_t)p % ps, 0, "fg_region_alloc gave %p", (void *)p);
	(void)reported(t, p, 4 * ps);
	p[3 * ps] = 1; /* the page the rounding added */
	cr_assert(reported(t, p + 3 * ps, 1),
		  "a write to the rounded-up page of fg_region_alloc(3 pages "
		  "+ 1) was not reported");
	q = map(1, PROT_READ | PROT_WRITE);
	EXPECT_OK(fg_register(t, q, ps));
	EXPECT_ERR(FG_ENOTREG, fg_region_free(t, q + ps, ps));
	EXPECT_ERR(FG_ENOTREG, fg_region_free(t, p, ps));
	EXPECT_OK(fg_region_free(t, p, 3 * ps + 1));
	EXPECT_ERR(FG_ENOTREG, fg_region_free(t, p, 3 * ps + 1));
	EXPECT_ERR(FG_EZEROLEN, fg_region_alloc(t, 0, (void **)&p));
	EXPECT_OK(fg_unregister(t, q, ps));
	munmap(q, ps);
	still_works(t, id, &c, "fg_region_alloc and fg_region_free misuse");
	EXPECT_OK(fg_tracker_destroy(t));
}

PER_BACKEND(region_alloc)
PER_BACKEND(unaligned)
PER_BACKEND(overlap)
PER_BACKEND(unmapped)
PER_BACKEND(memkind)
PER_BACKEND(notreg)
PER_BACKEND(destroyed)
PER_BACKEND(card_sizes)
PER_BACKEND(bitmap_small)
PER_BACKEND(stale_iter)
PER_BACKEND(iter_batches)
PER_BACKEND(stats_size)

/* ------------------------------------------------------------------ */

Test(badinput, null_tracker, .timeout = TIMEOUT)
{
	/* Zeroed memory is "not a tracker" just as NULL is. */
	static _Alignas(64) unsigned char junk[256];
	fg_tracker *bad[] = {NULL, (fg_tracker *)junk};
	uint64_t bits[4];
	fg_stats st = {.size = sizeof st};
	fg_iter it = {0};
	fg_range r;
	void *out = NULL;
	char page[64];

	for (int i = 0; i < 2; i++) {
		fg_tracker *t = bad[i];

		EXPECT_ERR(FG_EBADTRACKER, fg_register(t, page, 4096));
		EXPECT_ERR(FG_EBADTRACKER, fg_unregister(t, page, 4096));
		EXPECT_ERR(FG_EBADTRACKER, fg_collect(t, &it));
		EXPECT_ERR(FG_EBADTRACKER,
			   fg_collect_bitmap(t, page, 4096, bits, 256));
		EXPECT_ERR(FG_EBADTRACKER, fg_set_card_size(t, 4096));
		EXPECT_ERR(FG_EBADTRACKER, fg_get_stats(t, &st));
		EXPECT_ERR(FG_EBADTRACKER, fg_mark_dirty(t, page, 8));
		EXPECT_ERR(FG_EBADTRACKER, fg_expect_writes(t, page, 8));
		EXPECT_ERR(FG_EBADTRACKER, fg_region_alloc(t, 4096, &out));
		cr_assert_null(out);
		EXPECT_ERR(FG_EBADTRACKER, fg_region_free(t, page, 4096));
		EXPECT_ERR(FG_EBADTRACKER, fg_tracker_destroy(t));
		it.tracker = t;
		EXPECT_ERR(FG_EBADTRACKER, fg_iter_next(&it, &r));
		cr_assert_not_null(fg_tracker_why(t),
				   "fg_tracker_why(not a tracker) is NULL");
	}
	cr_assert_lt(fg_iter_next(NULL, &r), 0, "fg_iter_next(NULL) succeeded");
}

Test(badinput, strerror, .timeout = TIMEOUT)
{
	for (int c = FG_EBASE; c < FG_ELAST; c++) {
		const char *m = fg_strerror(-c);

		cr_assert(m && *m && strcmp(m, "unknown error"),
			  "fg_strerror(-%s) = \"%s\"", code_name(c),
			  m ? m : "(null)");
		cr_assert_str_eq(fg_strerror(c), m,
				 "fg_strerror(%s) and (-%s) differ",
				 code_name(c), code_name(c));
		for (int d = FG_EBASE; d < c; d++)
			cr_assert_str_neq(fg_strerror(-d), m,
					  "%s and %s share the message \"%s\"",
					  code_name(d), code_name(c), m);
	}
	cr_assert_str_eq(fg_strerror(-ENOMEM), strerror(ENOMEM));
	cr_assert_str_eq(fg_strerror(-EFAULT), strerror(EFAULT));
	cr_assert_not_null(fg_strerror(0));
	cr_assert_not_null(fg_strerror(-FG_ELAST));
	cr_assert_not_null(fg_strerror(-123456789));
	cr_assert_not_null(fg_strerror(-2147483647 - 1));
}

Test(badinput, backend_names, .timeout = TIMEOUT)
{
	fg_backend_id id = FG_BACKEND_COUNT;

	for (int i = 0; i < FG_BACKEND_COUNT; i++) {
		const char *n = fg_backend_name((fg_backend_id)i);

		cr_assert(n && *n && strcmp(n, "?"), "backend %d has no name", i);
		EXPECT_OK(fg_backend_from_name(n, &id));
		cr_assert_eq(id, i, "\"%s\" parsed as %d, not %d", n, id, i);
	}
	cr_assert_str_eq(fg_backend_name(FG_BACKEND_AUTO), "auto");
	cr_assert_str_eq(fg_backend_name(FG_BACKEND_COUNT), "?");
	cr_assert_str_eq(fg_backend_name((fg_backend_id)-1), "?");
	EXPECT_ERR(FG_EBACKENDNAME, fg_backend_from_name("bogus", &id));
	EXPECT_ERR(FG_EBACKENDNAME, fg_backend_from_name("", &id));
	EXPECT_ERR(FG_EBACKENDNAME, fg_backend_from_name("uffd-async ", &id));
	EXPECT_ERR(FG_EBACKENDNAME, fg_backend_from_name("uffd", &id));
}

/* A backend whose probe fails here, or a skip saying none does. */
static fg_backend_id unavailable(char *why, size_t whylen)
{
	for (int i = FG_BACKEND_AUTO + 1; i < FG_BACKEND_COUNT; i++)
		if (fg_backend_probe((fg_backend_id)i, why, whylen) != 0)
			return (fg_backend_id)i;
	cr_skip_test("every backend is available on this machine: no forced "
		     "backend can be refused");
}

Test(badinput, unavailable_backend, .timeout = TIMEOUT)
{
	fg_options o = FG_OPTIONS_INIT;
	fg_tracker *t, *sentinel = (fg_tracker *)&o;
	char why[256] = "";
	fg_backend_id id = unavailable(why, sizeof why);

	cr_log_info("forcing %s, unavailable here: %s", fg_backend_name(id),
		    why);
	cr_assert(why[0], "fg_backend_probe(%s) failed without saying why",
		  fg_backend_name(id));
	unsetenv("FG_BACKEND");
	o.backend = id;
	o.flags = FG_OPT_NO_ENV;
	t = sentinel;
	EXPECT_ERR(FG_EUNAVAIL, fg_tracker_create(&o, &t));
	cr_assert_eq(t, sentinel, "a refused fg_tracker_create wrote *out");
	o.flags = 0;
	EXPECT_ERR(FG_EUNAVAIL, fg_tracker_create(&o, &t));

	/* Through the environment. */
	cr_assert_eq(setenv("FG_BACKEND", fg_backend_name(id), 1), 0);
	EXPECT_ERR(FG_EUNAVAIL, fg_tracker_create(NULL, &t));
	o.backend = FG_BACKEND_AUTO;
	o.flags = 0;
	EXPECT_ERR(FG_EUNAVAIL, fg_tracker_create(&o, &t));
	cr_assert_eq(t, sentinel, "a refused fg_tracker_create wrote *out");
	/* FG_OPT_NO_ENV ignores it: auto-selection never fails. */
	o.flags = FG_OPT_NO_ENV;
	EXPECT_OK(fg_tracker_create(&o, &t));
	cr_assert_neq(fg_tracker_backend(t), id,
		      "FG_OPT_NO_ENV, yet the unavailable %s from FG_BACKEND "
		      "was chosen",
		      fg_backend_name(id));
	cr_assert(fg_tracker_why(t) && *fg_tracker_why(t),
		  "auto-selection recorded no reason");
	EXPECT_OK(fg_tracker_destroy(t));
	unsetenv("FG_BACKEND");
}

Test(badinput, bad_backend_env, .timeout = TIMEOUT)
{
	fg_options o = FG_OPTIONS_INIT;
	fg_tracker *t = NULL, *sentinel = (fg_tracker *)&o;

	cr_assert_eq(setenv("FG_BACKEND", "bogus", 1), 0);
	t = sentinel;
	EXPECT_ERR(FG_EBACKENDNAME, fg_tracker_create(NULL, &t));
	cr_assert_eq(t, sentinel, "a refused fg_tracker_create wrote *out");
	EXPECT_ERR(FG_EBACKENDNAME, fg_tracker_create(&o, &t));
	/* An available forced backend through the environment works. */
	cr_assert_eq(setenv("FG_BACKEND", "none", 1), 0);
	EXPECT_OK(fg_tracker_create(NULL, &t));
	cr_assert_eq(fg_tracker_backend(t), FG_BACKEND_NONE,
		     "FG_BACKEND=none chose %s",
		     fg_backend_name(fg_tracker_backend(t)));
	EXPECT_OK(fg_tracker_destroy(t));
	unsetenv("FG_BACKEND");
}

/* One grammar for every FG_* size (fg_parse_size): FG_CARD=4k is 4096 in
 * the tracker and in the Boehm adapter alike. */
Test(badinput, parse_size, .timeout = TIMEOUT)
{
	static const struct {
		const char *s;
		size_t want; /* 0: refused */
	} cases[] = {
		{"64", 64},	   {"4k", 4096},     {"4K", 4096},
		{"0x40", 64},	   {"1M", 1 << 20},  {"2m", 2 << 20},
		{"4096", 4096},	   {"", 0},	     {"k", 0},
		{"0", 0},	   {"-1", 0},	     {"4kb", 0},
		{"4 k", 0},	   {"64x", 0},	     {"99999999999999999999", 0},
	};
	fg_options o = FG_OPTIONS_INIT;
	fg_tracker *t;

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		size_t v = 12345;
		int rc = fg_parse_size(cases[i].s, &v);

		if (cases[i].want) {
			cr_assert_eq(rc, 0, "fg_parse_size(\"%s\") = %d (%s)",
				     cases[i].s, rc, fg_last_error_detail());
			cr_assert_eq(v, cases[i].want,
				     "fg_parse_size(\"%s\") = %zu, not %zu",
				     cases[i].s, v, cases[i].want);
		} else {
			cr_assert_eq(rc, -EINVAL,
				     "fg_parse_size(\"%s\") = %d, not -EINVAL",
				     cases[i].s, rc);
			cr_assert_eq(v, 12345, "a refused size was written");
			cr_assert_str_neq(fg_last_error_detail(), "");
		}
	}
	cr_assert_eq(fg_parse_size(NULL, NULL), -EINVAL);
	/* The tracker reads FG_CARD with it. */
	o.backend = FG_BACKEND_NONE;
	cr_assert_eq(setenv("FG_CARD", "4k", 1), 0);
	EXPECT_OK(fg_tracker_create(&o, &t));
	cr_assert_eq(fg_card_size(t), 4096, "FG_CARD=4k gave %zu",
		     fg_card_size(t));
	EXPECT_OK(fg_tracker_destroy(t));
	cr_assert_eq(setenv("FG_CARD", "4kb", 1), 0);
	EXPECT_ERR(FG_ECARD, fg_tracker_create(&o, &t));
	unsetenv("FG_CARD");
}
