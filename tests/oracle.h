/* oracle.h - an independent oracle for the toolkit's soundness contract.
 *
 * The oracle never asks the library what was written.  It keeps the test's
 * own log of the bytes it wrote and a byte copy of every region taken when
 * the epoch began; at a collection, the truth is "lines the test wrote or
 * whose bytes changed", and every such line must lie in a reported card.
 * State is kept per 64-byte line (the smallest card), so one comparison
 * serves every card size, and card-level counts are derived from it.
 * With orc_region.changed_only set (DIFF precision) the truth is "lines
 * whose bytes changed" alone; the write log then only checks that nothing
 * but the test changed tracked memory.
 *
 * The functions do not use Criterion: results come back as counts and
 * first offenders, and the tests decide what to assert.  The two macros
 * below expand in a Criterion test file.
 */
#ifndef FG_TEST_ORACLE_H
#define FG_TEST_ORACLE_H

#include "fg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One Criterion test per backend, suite::scn_<backend>, calling the
 * scenario function void scn(fg_backend_id). */
#define ORC_TEST_FOR(suite, scn, tag, id, secs)                              \
	Test(suite, scn##_##tag, .timeout = (secs))                          \
	{                                                                    \
		scn(id);                                                     \
	}
#define ORC_PER_BACKEND(suite, scn, secs)                                    \
	ORC_TEST_FOR(suite, scn, uffd_async, FG_BACKEND_UFFD_ASYNC, secs)    \
	ORC_TEST_FOR(suite, scn, uffd_sync, FG_BACKEND_UFFD_SYNC, secs)      \
	ORC_TEST_FOR(suite, scn, mprotect, FG_BACKEND_MPROTECT, secs)        \
	ORC_TEST_FOR(suite, scn, softdirty, FG_BACKEND_SOFTDIRTY, secs)      \
	ORC_TEST_FOR(suite, scn, none, FG_BACKEND_NONE, secs)

/* Skip the test, visibly and with the probe's reason, if the backend does
 * not work on this machine. */
#define ORC_REQUIRE_BACKEND(id)                                              \
	do {                                                                 \
		char why_[256] = "";                                         \
		if (fg_backend_probe((id), why_, sizeof why_) != 0)          \
			cr_skip_test("backend %s unavailable: %s",           \
				     fg_backend_name(id), why_);             \
	} while (0)

/* Random numbers: xoshiro256** seeded through splitmix64. */
typedef struct orc_rng {
	uint64_t s[4];
} orc_rng;

/* The seed of a test: FG_SEED if set, else taken from the clock.  Always
 * printed on stderr as "TEST: seed=N (replay: FG_SEED=N)". */
uint64_t orc_seed(const char *test);
void orc_rng_init(orc_rng *r, uint64_t seed);
uint64_t orc_next(orc_rng *r);
uint64_t orc_below(orc_rng *r, uint64_t n); /* uniform in [0, n), n > 0 */

#define ORC_LINE 64

size_t orc_page(void);

typedef struct orc_region {
	uint8_t *base;
	size_t len;
	const char *kind;   /* "anon", "shared-anon", "memfd", ... */
	size_t nlines;
	uint8_t *snap;      /* bytes at epoch start */
	uint64_t *written;  /* lines the test wrote this epoch (its log) */
	uint64_t *changed;  /* lines whose bytes differ from snap */
	uint64_t *reported; /* lines covered by the last collection */
	/* Truth is "lines whose bytes changed" only, not "written or
	 * changed": with DIFF precision a line written back to its epoch-start
	 * bytes is legitimately reported clean.  false (the default from
	 * orc_region_init) keeps the original rule. */
	bool changed_only;
} orc_region;

/* Mapping helpers; NULL on failure (errno set).  at: NULL for anywhere,
 * else the address to map at (MAP_FIXED, e.g. from orc_reserve). */
void *orc_map_anon(size_t len, void *at);
void *orc_map_shared_anon(size_t len, void *at);
void *orc_map_memfd(size_t len, void *at); /* the mapping keeps the memfd */

/* An address range of len bytes at offset off from an align boundary,
 * reserved (PROT_NONE) for orc_map_*: with off from the seed, regions sit
 * the same way relative to large cards on every replay. */
void *orc_reserve(size_t len, size_t align, size_t off);

int orc_region_init(orc_region *r, void *base, size_t len, const char *kind);
void orc_region_fini(orc_region *r);

/* Start an epoch: copy every region's bytes and clear the logs. */
void orc_snapshot(orc_region *r, size_t n);

/* Record that the test wrote [addr, addr+len) (may span regions). */
void orc_log(orc_region *r, size_t n, const void *addr, size_t len);

/* The region holding addr, or NULL. */
orc_region *orc_find(orc_region *r, size_t n, const void *addr);

typedef enum orc_method { ORC_ITER, ORC_BITMAP } orc_method;

/* Collect through fg_collect + the iterator (ORC_ITER), or region by region
 * through fg_collect_bitmap (ORC_BITMAP); fill every region's reported
 * lines.  The result's form is checked against fg.h: ranges in address
 * order, non-empty, card-aligned unless clipped at a region edge, each
 * within one region, maximal, the count equal to fg_collect's result; a
 * bitmap's size equal to fg_bitmap_bits, its tail past the region cleared,
 * fg_collect_bitmap's result equal to its popcount.  Returns the library's
 * result (< 0: error, *card untouched); a form violation is described in
 * form (form[0] != 0 then).  *card is the card size of the collection. */
int orc_collect(fg_tracker *t, orc_region *r, size_t n, orc_method m,
		size_t *card, char *form, size_t formlen);

typedef struct orc_result {
	uint64_t truth_lines;	 /* written or changed (changed_only: changed) */
	uint64_t missed_lines;	 /* truth lines not reported */
	const uint8_t *first_miss;
	uint64_t unlogged_lines; /* changed but never written by the test */
	const uint8_t *first_unlogged;
	uint64_t pages_reported, pages_changed, pages_truth, pages_fp;
	uint64_t cards_reported, cards_truth, cards_fp, cards_missed;
	uint64_t reported_lines; /* 64-byte lines in reported cards */
	uint64_t changed_bytes;	 /* bytes that differ from the snapshot */
} orc_result;

/* Compare the last collection with the truth, counting cards of size card
 * (absolute-aligned, clipped to the region). */
void orc_compare(orc_region *r, size_t n, size_t card, orc_result *res);

/* Whether any reported line lies in [addr, addr+len). */
bool orc_reported(orc_region *r, size_t n, const void *addr, size_t len);
/* Whether every line of [addr, addr+len) is reported. */
bool orc_reported_all(orc_region *r, size_t n, const void *addr, size_t len);

/* Expected result of a page-level backend after a quiet epoch: the cards
 * that overlap a page holding a truth line.  Counts reported cards outside
 * that set (*extra) and inside it but not reported (*missing). */
void orc_exact_pages(orc_region *r, size_t n, size_t card, uint64_t *extra,
		     uint64_t *missing);

#endif /* FG_TEST_ORACLE_H */
