/* test_nomalloc.c - the calls a collector makes with its other threads
 * stopped do not allocate from malloc.
 *
 * A garbage collector calls fg_collect (and the iterator, fg_mark_dirty,
 * fg_expect_writes, fg_set_exempt, fg_set_twin_cap, fg_set_twin_full) with the world
 * stopped, so another thread may be stopped inside malloc with its
 * arena's lock held: a malloc there can deadlock.
 * fg.h promises these calls make no malloc.  This binary defines malloc,
 * calloc, realloc and the aligned allocators itself (the dynamic linker
 * binds the toolkit's calls to them) and counts the calls the current
 * thread makes while it is inside one of those fg_* calls.
 *
 * Each backend with a write tracker, at page precision and with DIFF's
 * sticky and hot twins: many pages written over several epochs (so that
 * run vectors, twin lists and the sticky FIFO grow past their first
 * size), collected; then marked dirty, exempted and collected again.
 * Before the FIFO was mmap'd, DIFF's sticky twins made fg_collect call
 * calloc and malloc.
 *
 * The generic adapter (adapters/generic/fga.h) makes the same promise
 * for everything but fga_create, fga_destroy, fga_add_section,
 * fga_fork_child and fga_roots_begin/_add/_end (made before the world
 * stops): fga_* runs its calls in a collector's order, over
 * many sections, with blocks freed, reused and collections done with
 * writes after the retrieval (so its own mmap'd tables grow), static
 * roots tracked (retrieved in fga_retrieve, asked with fga_root_dirty),
 * at page and 64-byte cards, under the check oracle too.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>

#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fg.h"
#include "fga.h"
#include "oracle.h"

#define TIMEOUT 120
#define NPAGES 4096 /* > the FIFO's first 1024 entries */
#define EPOCHS 6

/* ---- counting allocators ---- */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static _Thread_local volatile int watching; /* inside a stopped-world call */
static _Thread_local unsigned long counted;
static _Thread_local const char *first_call;

static void count(const char *what)
{
	if (watching) {
		if (!counted++)
			first_call = what;
	}
}

void *malloc(size_t n)
{
	count("malloc");
	return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
	count("calloc");
	return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
	count("realloc");
	return __libc_realloc(p, n);
}

void *memalign(size_t a, size_t n)
{
	count("memalign");
	return __libc_memalign(a, n);
}

void *aligned_alloc(size_t a, size_t n)
{
	count("aligned_alloc");
	return __libc_memalign(a, n);
}

int posix_memalign(void **out, size_t a, size_t n)
{
	void *p;

	count("posix_memalign");
	p = __libc_memalign(a, n);
	if (!p)
		return ENOMEM;
	*out = p;
	return 0;
}

/* ---- the scenario ---- */

#define WATCH(what, call)                                                    \
	do {                                                                 \
		watching = 1;                                                \
		call;                                                        \
		watching = 0;                                                \
		cr_assert_eq(counted, 0,                                     \
			     "%s called %s (and %lu allocations in all) "    \
			     "[%s]",                                         \
			     what, first_call, counted, cfg);                \
	} while (0)

static size_t drain(fg_tracker *t, const char *cfg, unsigned flags)
{
	fg_iter it;
	fg_range r;
	size_t bytes = 0;
	int n, more;

	WATCH("fg_collect_flags", n = fg_collect_flags(t, &it, flags));
	cr_assert_geq(n, 0, "fg_collect_flags: %s (%s) [%s]", fg_strerror(n),
		      fg_last_error_detail(), cfg);
	for (;;) {
		WATCH("fg_iter_next", more = fg_iter_next(&it, &r));
		if (more != 1)
			break;
		bytes += r.len;
	}
	return bytes;
}

static void scenario(fg_backend_id id, unsigned prec, unsigned tw)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	fg_options o = FG_OPTIONS_INIT;
	char cfg[96];
	fg_tracker *t;
	uint8_t *m;
	size_t bytes;
	int rc;

	ORC_REQUIRE_BACKEND(id);
	snprintf(cfg, sizeof cfg, "%s, %s%s", fg_backend_name(id),
		 prec == FG_PRECISION_DIFF ? "DIFF " : "page",
		 prec != FG_PRECISION_DIFF ? ""
		 : tw == FG_TWIN_STICKY	   ? "sticky"
					   : "hot");
	o.backend = id;
	o.flags = FG_OPT_NO_ENV;
	o.card_size = prec == FG_PRECISION_DIFF ? 64 : ps;
	o.precision = prec;
	o.twin_policy = tw;
	rc = fg_tracker_create(&o, &t);
	if (rc == -FG_EUNAVAIL && prec == FG_PRECISION_DIFF)
		cr_skip_test("%s: %s", cfg, fg_last_error_detail());
	cr_assert_eq(rc, 0, "fg_tracker_create [%s]: %s", cfg,
		     fg_last_error_detail());
	cr_assert_eq(fg_region_alloc(t, NPAGES * ps, (void **)&m), 0,
		     "fg_region_alloc [%s]: %s", cfg, fg_last_error_detail());
	(void)drain(t, cfg, 0);
	for (unsigned e = 0; e < EPOCHS; e++) {
		/* Every page written in a few lines, so that DIFF twins all
		 * of them and the sticky FIFO grows. */
		for (size_t p = 0; p < NPAGES; p++)
			for (size_t l = e % 3; l < ps / 64; l += 17)
				m[p * ps + l * 64] = (uint8_t)(e + p + l + 1);
		bytes = drain(t, cfg, 0);
		cr_assert_gt(bytes, 0, "epoch %u reported nothing [%s]", e,
			     cfg);
	}
	WATCH("fg_mark_dirty", rc = fg_mark_dirty(t, m, 8 * ps));
	cr_assert_eq(rc, 0, "fg_mark_dirty [%s]: %s", cfg,
		     fg_last_error_detail());
	WATCH("fg_expect_writes", rc = fg_expect_writes(t, m + 8 * ps, 8 * ps));
	cr_assert_eq(rc, 0, "fg_expect_writes [%s]: %s", cfg,
		     fg_last_error_detail());
	WATCH("fg_set_exempt", rc = fg_set_exempt(t, m + 16 * ps, 8 * ps, 1));
	cr_assert_eq(rc, 0, "fg_set_exempt [%s]: %s", cfg,
		     fg_last_error_detail());
	memset(m + 32 * ps, 0x5a, 4 * ps);
	if (fg_tracker_caps(t) & FG_CAP_PEEK) /* forced and exempt pages */
		(void)drain(t, cfg, FG_COLLECT_PEEK);
	(void)drain(t, cfg, FG_COLLECT_WHOLE_PAGES);
	WATCH("fg_set_exempt", rc = fg_set_exempt(t, m + 16 * ps, 8 * ps, 0));
	cr_assert_eq(rc, 0);
	(void)drain(t, cfg, 0);
	/* A peek, then the collection that ends its interval leaving clean
	 * regions alone (FG_COLLECT_AFTER_PEEK). */
	if (fg_tracker_caps(t) & FG_CAP_PEEK) {
		memset(m + 40 * ps, 0x3c, ps);
		(void)drain(t, cfg, FG_COLLECT_PEEK);
		(void)drain(t, cfg, FG_COLLECT_AFTER_PEEK);
	}
	if (prec == FG_PRECISION_DIFF) {
		/* FG_CARD=auto's switch: twins off (evicted), then on. */
		WATCH("fg_set_twin_cap", rc = fg_set_twin_cap(t, 1, 0));
		cr_assert_eq(rc, 0, "fg_set_twin_cap [%s]: %s", cfg,
			     fg_last_error_detail());
		(void)drain(t, cfg, 0);
		WATCH("fg_set_twin_full",
		      rc = fg_set_twin_full(t, FG_TWIN_FULL_DECLINE));
		cr_assert_eq(rc, 0);
		WATCH("fg_set_twin_cap", rc = fg_set_twin_cap(t, 0, 10));
		cr_assert_eq(rc, 0);
		(void)drain(t, cfg, 0);
		WATCH("fg_set_twin_full",
		      rc = fg_set_twin_full(t, FG_TWIN_FULL_EVICT));
		cr_assert_eq(rc, 0);
		(void)drain(t, cfg, 0);
	}
	cr_assert_eq(fg_region_free(t, m, NPAGES * ps), 0);
	cr_assert_eq(fg_tracker_destroy(t), 0);
}

#define NOMALLOC(tag, id)                                                    \
	Test(nomalloc, tag##_page, .timeout = TIMEOUT)                       \
	{                                                                    \
		scenario(id, FG_PRECISION_PAGE, FG_TWIN_HOT);                \
	}                                                                    \
	Test(nomalloc, tag##_diff_sticky, .timeout = TIMEOUT)                \
	{                                                                    \
		scenario(id, FG_PRECISION_DIFF, FG_TWIN_STICKY);             \
	}                                                                    \
	Test(nomalloc, tag##_diff_hot, .timeout = TIMEOUT)                   \
	{                                                                    \
		scenario(id, FG_PRECISION_DIFF, FG_TWIN_HOT);                \
	}

NOMALLOC(uffd_async, FG_BACKEND_UFFD_ASYNC)
NOMALLOC(uffd_sync, FG_BACKEND_UFFD_SYNC)
NOMALLOC(mprotect, FG_BACKEND_MPROTECT)

/* The generic adapter's calls in a collector's order. */
static void fga_scenario(fg_backend_id id, size_t card, int check)
{
	const size_t block = 4096, sect = 64 * 4096;
	fga_config c = FGA_CONFIG_INIT;
	char cfg[96];
	uint8_t *m[24], *roots;
	fga *f;
	int rc;

	ORC_REQUIRE_BACKEND(id);
	snprintf(cfg, sizeof cfg, "fga, %s, card %zu%s", fg_backend_name(id),
		 card, check ? ", check" : "");
	c.name = "nomalloc";
	c.block = block;
	c.backend = fg_backend_name(id);
	c.card = card;
	c.check = check;
	rc = fga_create(&c, &f);
	cr_assert_eq(rc, 0, "fga_create [%s]: %s", cfg, fga_last_error(NULL));
	for (size_t i = 0; i < 24; i++) {
		m[i] = aligned_alloc(block, sect);
		cr_assert_not_null(m[i]);
		memset(m[i], 0, sect);
		cr_assert_eq(fga_add_section(f, m[i], sect), 0, "[%s]", cfg);
	}
	roots = aligned_alloc(block, 16 * block);
	cr_assert_not_null(roots);
	for (unsigned e = 0; e < 2 * EPOCHS; e++) {
		for (size_t i = 0; i < 24; i++)
			for (size_t o = (e % 5) * 64; o < sect; o += 1088)
				m[i][o] = (uint8_t)(e + i + o + 1);
		/* Before the world stops: the roots (these may allocate). */
		fga_roots_begin(f);
		fga_roots_add(f, roots, roots + 16 * block);
		fga_roots_end(f);
		roots[(e % 16) * block] ^= 1;
		/* Many scattered runs: the young and carried lists grow. */
		for (size_t i = e % 2; i < 24; i += 2)
			for (size_t b = e % 3; b < 64; b += 3) {
				WATCH("fga_blocks_freed",
				      fga_blocks_freed(f, m[i] + b * block,
						       block));
				WATCH("fga_blocks_reused",
				      fga_blocks_reused(f, m[i] + b * block,
							block,
							FGA_BLOCK_NEW |
								(b & 4 ? FGA_BLOCK_PTRFREE
								       : 0)));
			}
		/* Boehm's order (preclean, retrieve) and Racket's (peek,
		 * the collector's writes, retrieve). */
		if (e % 2)
			WATCH("fga_preclean", fga_preclean(f));
		else
			WATCH("fga_peek", (void)fga_peek(f));
		m[e % 24][7 * block + 64] ^= 1;
		/* Racket's collector protecting what it filled: after a
		 * peek, the sections are named to the tracker. */
		WATCH("fga_blocks_unwatched",
		      (void)fga_blocks_unwatched(f, m[e % 24], 24 * sect, 0));
		if (e == 3)
			WATCH("fga_concurrent_mark", fga_concurrent_mark(f));
		WATCH("fga_retrieve", fga_retrieve(f));
		for (size_t p = 0; p < 16; p++)
			WATCH("fga_root_dirty",
			      (void)fga_root_dirty(f, roots + p * block));
		for (size_t i = 0; i < 24; i++)
			for (size_t b = 0; b < 64; b += 5) {
				fga_lines l;

				WATCH("fga_block_lines",
				      l = fga_block_lines(f, m[i] + b * block));
				(void)l;
			}
		for (size_t i = 0; i < 24; i += 3)
			m[i][3 * block + 128] ^= 2;
		WATCH("fga_blocks_reused",
		      fga_blocks_reused(f, m[1] + 9 * block, block, 0));
		WATCH("fga_collection_done", fga_collection_done(f, e & 1));
	}
	fga_destroy(f);
	free(roots);
	for (size_t i = 0; i < 24; i++)
		free(m[i]);
}

#define FGA_NOMALLOC(tag, id)                                                \
	Test(nomalloc, fga_##tag##_page, .timeout = TIMEOUT)                 \
	{                                                                    \
		fga_scenario(id, (size_t)sysconf(_SC_PAGESIZE), 0);          \
	}                                                                    \
	Test(nomalloc, fga_##tag##_64, .timeout = TIMEOUT)                   \
	{                                                                    \
		fga_scenario(id, 64, 0);                                     \
	}                                                                    \
	Test(nomalloc, fga_##tag##_64_check, .timeout = TIMEOUT)             \
	{                                                                    \
		fga_scenario(id, 64, 2);                                     \
	}

FGA_NOMALLOC(uffd_async, FG_BACKEND_UFFD_ASYNC)
FGA_NOMALLOC(uffd_sync, FG_BACKEND_UFFD_SYNC)
FGA_NOMALLOC(mprotect, FG_BACKEND_MPROTECT)

/* The counter counts: a malloc in a watched stretch is seen. */
Test(nomalloc, counter_counts)
{
	const char *cfg = "self-test";
	void *volatile p; /* or the compiler drops the malloc */

	watching = 1;
	p = malloc(16);
	watching = 0;
	free(p);
	cr_assert_eq(counted, 1, "a watched malloc was not counted [%s]", cfg);
	counted = 0;
}
