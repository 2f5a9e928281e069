/* test_digest.c - line digests (toolkit/digest.c, FG_TWIN_DIGEST).
 *
 * The digest of a 64-byte line w1..w8 is w1 k + ... + w8 k^8 in GF(2^64)
 * (x^64 + x^4 + x^3 + x + 1).  Checked here from that definition:
 *   field       the bit-by-bit multiplication: x * x^63 = x^4+x^3+x+1,
 *               commutative, associative, distributive, 1 the unit, on
 *               random values;
 *   definition  each version's digest equals the sum computed with it,
 *               for random keys and lines;
 *   versions    the 128-bit (PCLMULQDQ) and 512-bit (VPCLMULQDQ) ones
 *               agree on random pages (skipped, with the reason, where
 *               the CPU lacks the second);
 *   one_word    every change confined to one 8-byte word is seen, for
 *               every word of the line, random keys and patterns (the
 *               guarantee fg.h states);
 *   changed     fg_digest_changed's mask is exactly the lines changed,
 *               fg_digest_lines refreshes exactly the masked lines;
 *   keys        fg_digest_init draws different nonzero keys; a zero key
 *               is refused;
 *   tracker     FG_TWIN_DIGEST through the API: a twin costs 512 bytes
 *               of the cap and of twin_bytes; FG_TWIN_FORM=digest|copy,
 *               a bad value, FG_OPT_NO_ENV.
 * The oracle tests of DIFF with digests are test_diff_sticky's and
 * test_diff's *_digest scenarios.  Random tests print their seed;
 * FG_SEED=N replays it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fg.h"
#include "fg_internal.h"

static uint64_t rng;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void seed(const char *test)
{
	const char *e = getenv("FG_SEED");

	rng = e ? strtoull(e, NULL, 0) : (uint64_t)getpid() * 2654435761u ^
						 (uint64_t)time(NULL);
	if (!rng)
		rng = 1;
	cr_log_info("%s: seed %" PRIu64 " (FG_SEED=%" PRIu64 " replays it)",
		    test, rng, rng);
}

static uint64_t nonzero(void)
{
	uint64_t k;

	while (!(k = rnd()))
		;
	return k;
}

/* The definition: sum of w_i k^i, with the bitwise multiplication. */
static uint64_t by_definition(uint64_t key, const uint8_t *line)
{
	uint64_t h = 0, p = key, w;

	for (int i = 0; i < 8; i++) {
		memcpy(&w, line + 8 * i, 8);
		h ^= fg_digest_gf_mul(w, p);
		p = fg_digest_gf_mul(p, key);
	}
	return h;
}

static bool have(int impl)
{
	fg_digest_key k;

	return fg_digest_set_key(&k, 1, impl) == 0;
}

static void key_or_fail(fg_digest_key *k, uint64_t key, int impl)
{
	int rc = fg_digest_set_key(k, key, impl);

	cr_assert_eq(rc, 0, "fg_digest_set_key(%#" PRIx64 ", %d): %d (%s)", key,
		     impl, rc, fg_last_error_detail());
}

Test(digest, field)
{
	seed("field");
	cr_assert_eq(fg_digest_gf_mul(2, UINT64_C(1) << 63), 0x1b,
		     "x * x^63 is not x^4 + x^3 + x + 1");
	cr_assert_eq(fg_digest_gf_mul(2, 2), 4);
	for (int i = 0; i < 2000; i++) {
		uint64_t a = rnd(), b = rnd(), c = rnd();

		cr_assert_eq(fg_digest_gf_mul(a, 1), a);
		cr_assert_eq(fg_digest_gf_mul(a, b), fg_digest_gf_mul(b, a));
		cr_assert_eq(fg_digest_gf_mul(fg_digest_gf_mul(a, b), c),
			     fg_digest_gf_mul(a, fg_digest_gf_mul(b, c)),
			     "not associative at %#" PRIx64 " %#" PRIx64
			     " %#" PRIx64,
			     a, b, c);
		cr_assert_eq(fg_digest_gf_mul(a, b ^ c),
			     fg_digest_gf_mul(a, b) ^ fg_digest_gf_mul(a, c));
		/* No zero divisors: a field. */
		if (a && b)
			cr_assert_neq(fg_digest_gf_mul(a, b), 0);
	}
}

static void definition(int impl, const char *name)
{
	fg_digest_key k;
	uint8_t page[4096];

	if (!have(impl))
		cr_skip_test("no %s version on this CPU: %s", name,
			     fg_last_error_detail());
	seed(name);
	for (int round = 0; round < 50; round++) {
		uint64_t key = nonzero(), d[64];

		key_or_fail(&k, key, impl);
		for (size_t i = 0; i < sizeof page; i += 8) {
			uint64_t v = rnd();

			/* Some lines sparse, some dense, some equal. */
			if (round % 3 == 1 && (i / 64) % 2)
				v = 0;
			memcpy(page + i, &v, 8);
		}
		fg_digest_page(&k, d, page, 64);
		for (int g = 0; g < 64; g++)
			cr_assert_eq(d[g], by_definition(key, page + 64 * g),
				     "%s: line %d, key %#" PRIx64
				     ": %#" PRIx64 " against %#" PRIx64,
				     name, g, key, d[g],
				     by_definition(key, page + 64 * g));
	}
}

Test(digest, definition_128)
{
	definition(FG_DIGEST_128, "PCLMULQDQ (128-bit)");
}

Test(digest, definition_512)
{
	definition(FG_DIGEST_512, "AVX-512 VPCLMULQDQ");
}

Test(digest, versions)
{
	fg_digest_key a, b;
	uint8_t *page = aligned_alloc(64, 4096 + 64);

	if (!have(FG_DIGEST_512) || !have(FG_DIGEST_128))
		cr_skip_test("only one version on this CPU: %s",
			     fg_last_error_detail());
	seed("versions");
	for (int round = 0; round < 200; round++) {
		uint64_t key = nonzero(), da[64], db[64];
		/* Unaligned pages too: loads are unaligned. */
		uint8_t *p = page + (round % 2 ? 8 * (round % 8) : 0);

		key_or_fail(&a, key, FG_DIGEST_128);
		key_or_fail(&b, key, FG_DIGEST_512);
		for (size_t i = 0; i < 4096; i++)
			p[i] = (uint8_t)rnd();
		fg_digest_page(&a, da, p, 64);
		fg_digest_page(&b, db, p, 64);
		cr_assert_eq(memcmp(da, db, sizeof da), 0,
			     "the versions differ, key %#" PRIx64, key);
		cr_assert_eq(fg_digest_changed(&a, p, db, 64), 0);
		cr_assert_eq(fg_digest_changed(&b, p, da, 64), 0);
	}
	free(page);
}

static void one_word(int impl, const char *name)
{
	fg_digest_key k;
	uint8_t line[64];
	uint64_t n = 0;

	if (!have(impl))
		cr_skip_test("no %s version on this CPU", name);
	seed(name);
	for (int round = 0; round < 300; round++) {
		uint64_t d;

		key_or_fail(&k, nonzero(), impl);
		for (size_t i = 0; i < 64; i++)
			line[i] = (uint8_t)rnd();
		fg_digest_page(&k, &d, line, 1);
		for (int w = 0; w < 8; w++) {
			uint64_t old, x;

			memcpy(&old, line + 8 * w, 8);
			for (int j = 0; j < 64 + 16; j++) {
				/* Every single bit, then random patterns. */
				x = j < 64 ? UINT64_C(1) << j : nonzero();
				x ^= old;
				memcpy(line + 8 * w, &x, 8);
				cr_assert_eq(fg_digest_changed(&k, line, &d, 1),
					     1,
					     "%s: word %d changed by %#" PRIx64
					     " reads unchanged",
					     name, w, x ^ old);
				n++;
			}
			memcpy(line + 8 * w, &old, 8);
			cr_assert_eq(fg_digest_changed(&k, line, &d, 1), 0);
		}
	}
	cr_log_info("%s: %" PRIu64 " one-word changes, all seen", name, n);
}

Test(digest, one_word_128)
{
	one_word(FG_DIGEST_128, "PCLMULQDQ (128-bit)");
}

Test(digest, one_word_512)
{
	one_word(FG_DIGEST_512, "AVX-512 VPCLMULQDQ");
}

Test(digest, changed)
{
	fg_digest_key k;
	uint8_t page[4096];
	uint64_t d[64];

	cr_assert_eq(fg_digest_init(&k), 0, "fg_digest_init: %s",
		     fg_last_error_detail());
	seed("changed");
	for (size_t i = 0; i < sizeof page; i++)
		page[i] = (uint8_t)rnd();
	fg_digest_page(&k, d, page, 64);
	for (int round = 0; round < 2000; round++) {
		uint64_t want = 0, got, e[64];
		int n = (int)(rnd() % 6);

		for (int c = 0; c < n; c++) {
			size_t at = rnd() % sizeof page;
			uint8_t v = (uint8_t)rnd();

			if (page[at] != v)
				want |= UINT64_C(1) << (at / 64);
			/* Changes that cancel out are not changes. */
			page[at] = v;
		}
		/* What changed is the lines whose bytes differ now. */
		fg_digest_page(&k, e, page, 64);
		got = fg_digest_changed(&k, page, d, 64);
		for (int g = 0; g < 64; g++)
			cr_assert_eq((got >> g) & 1, e[g] != d[g]);
		cr_assert_eq(got & ~want, 0, "lines reported that were not "
					     "written");
		/* Refresh only the changed lines, as DIFF's refresh in
		 * place does: equal to digesting the page afresh. */
		fg_digest_lines(&k, d, page, got);
		cr_assert_eq(memcmp(d, e, sizeof d), 0,
			     "fg_digest_lines: not the page's digests");
	}
}

Test(digest, keys)
{
	fg_digest_key a, b;
	int rc;

	cr_assert_eq(fg_digest_init(&a), 0);
	cr_assert_eq(fg_digest_init(&b), 0);
	cr_assert_neq(a.pow[0], 0, "a zero key");
	cr_assert_neq(a.pow[0], b.pow[0], "two draws gave the same key");
	rc = fg_digest_set_key(&a, 0, FG_DIGEST_ANY);
	cr_assert_eq(rc, -EINVAL, "key 0 (every digest 0): %d", rc);
	rc = fg_digest_set_key(&a, 5, 9);
	cr_assert_eq(rc, -EINVAL, "version 9: %d", rc);
}

/* ---- Through the API. */

static fg_tracker *tracker(unsigned policy, size_t cap, unsigned flags,
			   int *rc)
{
	fg_options o = FG_OPTIONS_INIT;
	fg_tracker *t = NULL;

	o.card_size = 64;
	o.precision = FG_PRECISION_DIFF;
	o.twin_policy = policy;
	o.twin_cap = cap;
	o.flags = flags;
	*rc = fg_tracker_create(&o, &t);
	return t;
}

static fg_stats stats(fg_tracker *t)
{
	fg_stats s;

	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	cr_assert_eq(fg_get_stats(t, &s), 0);
	return s;
}

/* Twins held after writing n pages of a region and collecting. */
static uint64_t twins_after(unsigned policy, size_t cap, size_t n,
			    uint64_t *cap_bytes, bool *collect_twins)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), len = 64 * ps;
	uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fg_tracker *t;
	fg_iter it;
	int rc;

	cr_assert_neq(m, MAP_FAILED);
	t = tracker(policy, cap, FG_OPT_NO_ENV, &rc);
	cr_assert_eq(rc, 0, "fg_tracker_create: %d (%s)", rc,
		     fg_last_error_detail());
	*collect_twins = fg_tracker_caps(t) & FG_CAP_COLLECT_TWINS;
	cr_assert_eq(fg_register(t, m, len), 0);
	for (size_t i = 0; i < n; i++)
		m[i * ps] = 1;
	cr_assert_geq(fg_collect(t, &it), 0);
	/* The twins are taken at that collection, for the next. */
	*cap_bytes = stats(t).twin_cap_bytes;
	n = stats(t).twin_bytes;
	fg_tracker_destroy(t);
	munmap(m, len);
	return n;
}

Test(digest, tracker)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	uint64_t cap_c, cap_d, copies, digests;
	bool ct;

	/* uffd-async or uffd-sync take sticky twins at collection; the
	 * others take none, and the test says so. */
	copies = twins_after(FG_TWIN_STICKY, 8 * ps, 20, &cap_c, &ct);
	if (!ct)
		cr_skip_test("the best backend here takes no twins at "
			     "collection (no FG_CAP_COLLECT_TWINS)");
	digests = twins_after(FG_TWIN_STICKY | FG_TWIN_DIGEST, 8 * ps, 20,
			      &cap_d, &ct);
	/* A cap of 8 pages holds 8 copies, or 64 digest twins: all 20. */
	cr_assert_eq(copies, 8 * ps, "copies: %" PRIu64 " bytes held", copies);
	cr_assert_eq(digests, 20 * ps / 8,
		     "digests: %" PRIu64 " bytes held, not 20 * %zu", digests,
		     ps / 8);
	cr_assert_eq(cap_c, 8 * ps);
	cr_assert_eq(cap_d, 8 * ps, "the cap in bytes: %" PRIu64, cap_d);
}

Test(digest, options)
{
	fg_tracker *t;
	int rc;

	cr_assert_eq(setenv("FG_TWIN_FORM", "sideways", 1), 0);
	t = tracker(FG_TWIN_STICKY, 0, 0, &rc);
	cr_assert_eq(rc, -EINVAL, "FG_TWIN_FORM=sideways: %d", rc);
	cr_assert(strstr(fg_last_error_detail(), "FG_TWIN_FORM"),
		  "the message does not name the variable: %s",
		  fg_last_error_detail());
	/* Ignored with FG_OPT_NO_ENV, and at page precision. */
	t = tracker(FG_TWIN_STICKY, 0, FG_OPT_NO_ENV, &rc);
	cr_assert_eq(rc, 0);
	fg_tracker_destroy(t);
	cr_assert_eq(setenv("FG_TWIN_FORM", "digest", 1), 0);
	t = tracker(FG_TWIN_STICKY, 0, 0, &rc);
	cr_assert_eq(rc, 0, "FG_TWIN_FORM=digest: %d (%s)", rc,
		     fg_last_error_detail());
	fg_tracker_destroy(t);
	cr_assert_eq(setenv("FG_TWIN_FORM", "copy", 1), 0);
	t = tracker(FG_TWIN_STICKY | FG_TWIN_DIGEST, 0, 0, &rc);
	cr_assert_eq(rc, 0, "the flag with FG_TWIN_FORM=copy: %d", rc);
	fg_tracker_destroy(t);
	cr_assert_eq(unsetenv("FG_TWIN_FORM"), 0);
	/* The flag with every policy; unknown bits still refused. */
	for (unsigned p = FG_TWIN_HOT; p <= FG_TWIN_ADAPTIVE; p++) {
		t = tracker(p | FG_TWIN_DIGEST, 0, 0, &rc);
		cr_assert_eq(rc, 0, "policy %u | FG_TWIN_DIGEST: %d (%s)", p,
			     rc, fg_last_error_detail());
		fg_tracker_destroy(t);
	}
	t = tracker(FG_TWIN_STICKY | 0x200, 0, 0, &rc);
	cr_assert_eq(rc, -EINVAL, "policy bit 0x200: %d", rc);
}
