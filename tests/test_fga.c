/* test_fga.c - the generic adapter (adapters/generic/fga.h) from its
 * contract, with a collector of the test's own.
 *
 * The contract a collector relies on: after fga_retrieve, every line
 * (block / 64 bytes) whose bytes changed since the previous retrieval
 * reads dirty in fga_block_lines, whatever the collector did with its
 * blocks in between (freed, reused, collection done with or without
 * writes after the retrieval, preclean or not, concurrent marking).
 *
 *   contract_*   per backend, at 64-byte and page cards: two instances,
 *                each over its own two-section heap, driven by a random
 *                schedule of writes (runs of bytes, whole blocks, bytes
 *                written back to their old value), block frees and
 *                reuses, prefetches (fga_preclean), peeks (fga_peek,
 *                checked like a retrieval but the interval goes on: then
 *                more writes, as Racket's collector makes in its pause;
 *                a line changed only after the peek may read clean at
 *                the retrieval that follows, fga_peek's contract, and
 *                must then read dirty at the next check),
 *                collections done with and without writes after the
 *                retrieval, concurrent marks.  The oracle is a byte copy of each heap taken at
 *                every retrieval; a changed line that reads clean fails.
 *                A write into one instance's heap never makes the other's
 *                lines dirty (asserted: the other heap is quiet for
 *                whole stretches).
 *   contract_page_hot  the same at page cards with fga_config.hot = 3,
 *                and a few blocks written at most retrievals: they go
 *                hot (unwatched, read whole), are watched again every
 *                third retrieval, and must still never read clean
 *                when changed.
 *   contract_page_unwatched  the same at page cards on an instance that
 *                does not exempt blocks itself (Racket's), the collector
 *                unwatching and watching again random runs of blocks
 *                (fga_blocks_unwatched) at random points, Racket's among
 *                them (between the peek and the retrieval): unwatched
 *                blocks, written or not, must never read clean when
 *                changed, nor blocks watched again.  Then, on a backend
 *                that can leave pages out, 8 unwatched blocks written
 *                over 5 retrievals: the tracker reports none of them.
 *   contract_64_unwatched, contract_auto_unwatched  the same at 64-byte
 *                and auto cards (twins compared), then a block whose
 *                twin is as old as its unwatching: a line written while
 *                it was unwatched, and written back to the twin's value
 *                after a retrieval, must read dirty at the retrieval
 *                that watches it again.
 *   unwatched_refused  fga_blocks_unwatched on instances that exempt
 *                or heat blocks themselves: -ENOTSUP, and the blocks
 *                stay tracked.
 *   contract_auto  the same with FGA_CARD_AUTO, the test's collector
 *                counting what it would push at these lines and at page
 *                cards: 20 rounds of the schedule, 20 with whole blocks
 *                written (twins do not pay: off), then 160 with only a
 *                few bytes in every block (they pay: on trial, then the
 *                full cap); every switch must have run under the oracle.
 *   contract_auto_digest  the same with line digests as twins: they
 *                start under the full cap, go off in the dense stretch
 *                and come back on under it.
 *   roots        static roots (fga_roots_*) on uffd-async: new ranges
 *                read dirty once, then exactly their written pages,
 *                anonymous and private file memory, stores and read(2);
 *                small, unknown, dropped and re-added ranges, fork.
 *   roots_untracked  on uffd-sync, mprotect, and with fga_config.roots
 *                0, every root page reads dirty.
 *   precise_64   sticky DIFF through the adapter: after a warm-up, sparse
 *                single-line writes to an old heap read as at most four
 *                times the changed lines (1.4-2.4x seen; page cards: 62x;
 *                the excess: pages written whole in the warm-up got eager
 *                twins, which go when the page stops changing).
 *   fork         in a child, fga_fork_child: the first retrieval reads
 *                everything, and later writes are seen by the new tracker.
 *   sections     sections removed and added again at the same address
 *                (a collector that munmaps blocks): the rest stay exact,
 *                the gone ones read as unknown (all dirty), a new one
 *                reads dirty until its first retrieval; fga_for_each_dirty
 *                visits exactly the blocks with a dirty line.
 *   rewatch_after_peek  Racket's pause: a peek, the collector writing a
 *                block of a section the peek found clean, then watching
 *                it again (fga_blocks_unwatched(.., 0)) before the
 *                retrieval: that write must not read dirty at the next
 *                peek (it did, from toolkit 0.10's FG_COLLECT_AFTER_PEEK
 *                until 2026-12-07: 1.6 times stock's old pages rescanned
 *                in binary-trees), and the program's next write there
 *                must; a section neither written nor named is left
 *                alone, its pause write reading dirty at the next peek.
 *   bad_input    a bad block size, an unknown backend, NULL arguments,
 *                bad PREFIX_* values: errors with the reason, defaults
 *                kept.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fga.h"
#include "oracle.h"

#define BLOCK 4096
#define SECT_BLOCKS 48
#define ROUNDS 120

struct heap {
	fga *f;
	uint8_t *sect[2];
	uint8_t *copy[2]; /* the heap at the last retrieval */
	uint8_t *pcopy[2]; /* ... and at the peek after it */
	int peeked;	   /* a peek since the last retrieval */
	unsigned long deferred; /* lines changed after a peek, left to the
				   next check (fga_peek's contract) */
	unsigned long checked, missed, lines_dirty, lines_changed;
	unsigned long peeks, fallbacks; /* fga_peek calls, and those that
					   retrieved */
	/* contract_auto: what a collector rescanning the dirty lines
	 * would push, and what it would push at page cards. */
	unsigned long long pushed, pushed_page;
	int quiet;	  /* no write this round: unchanged blocks must
			     read clean (or whole) */
};

/* contract_page_hot: fga_config.hot for the instances made; 0 else. */
static unsigned hot_cfg;
/* contract_page_unwatched: the instances made do not exempt blocks
 * themselves, and the schedule unwatches some. */
static int unwatch_cfg;
/* contract_auto_digest: fga_config.twin_form for the instances made. */
static int form_cfg = FGA_TWIN_COPY;
#define HOT_BLOCKS 6 /* blocks 0.. of section 0, written most rounds */

static unsigned long long pushed(void *ctx)
{
	return ((struct heap *)ctx)->pushed;
}

static unsigned long long pushed_page(void *ctx)
{
	return ((struct heap *)ctx)->pushed_page;
}

static fga *make(fg_backend_id id, size_t card, const char *name,
		 struct heap *h)
{
	fga_config c = FGA_CONFIG_INIT;
	fga *f;
	int rc;

	c.name = name;
	c.hot = hot_cfg;
	if (unwatch_cfg)
		c.exempt = 0;
	c.twin_form = form_cfg;
	c.block = BLOCK;
	c.backend = fg_backend_name(id);
	c.card = card;
	c.rescanned = pushed;
	c.rescanned_page = pushed_page;
	c.ctx = h;
	rc = fga_create(&c, &f);
	cr_assert_eq(rc, 0, "fga_create(%s, card %zu): %s (%s)", c.backend,
		     card, fg_strerror(rc), fga_last_error(NULL));
	return f;
}

static void heap_init(struct heap *h, fg_backend_id id, size_t card,
		      const char *name)
{
	memset(h, 0, sizeof *h);
	h->f = make(id, card, name, h);
	for (int s = 0; s < 2; s++) {
		h->sect[s] = mmap(NULL, SECT_BLOCKS * BLOCK,
				  PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		cr_assert_neq(h->sect[s], MAP_FAILED);
		h->copy[s] = malloc(SECT_BLOCKS * BLOCK);
		cr_assert_not_null(h->copy[s]);
		h->pcopy[s] = malloc(SECT_BLOCKS * BLOCK);
		cr_assert_not_null(h->pcopy[s]);
		memset(h->sect[s], 0, SECT_BLOCKS * BLOCK);
		cr_assert_eq(fga_add_section(h->f, h->sect[s],
					     SECT_BLOCKS * BLOCK),
			     0, "fga_add_section: %s", fga_last_error(h->f));
	}
}

static void heap_free(struct heap *h)
{
	fga_destroy(h->f);
	for (int s = 0; s < 2; s++) {
		munmap(h->sect[s], SECT_BLOCKS * BLOCK);
		free(h->copy[s]);
		free(h->pcopy[s]);
	}
}

/* Retrieve (or peek), check every changed line reads dirty, take the new
 * copy (not after a peek: the interval goes on).  fga_peek's contract:
 * the retrieval after a peek leaves out a section the peek found clean
 * and nothing named since (FG_COLLECT_AFTER_PEEK), and what was written
 * there after the peek reads dirty at the next peek or retrieval
 * instead.  So at that retrieval a line changed only after the peek may
 * read clean: it is not a miss, but its old bytes stay in the copy, so
 * that the next check must report it. */
static void check_lines(struct heap *h, unsigned round, const char *tag,
			int peek)
{
	if (!peek) {
		fga_retrieve(h->f);
	} else if (!fga_peek(h->f)) {
		h->fallbacks++; /* no FG_CAP_PEEK: fga_peek retrieved */
		peek = 0;
	}
	for (int s = 0; s < 2; s++) {
		fga_lines later[SECT_BLOCKS] = {0};

		if (!h->sect[s])
			continue; /* removed (test sections) */
		for (size_t b = 0; b < SECT_BLOCKS; b++) {
			uint8_t *blk = h->sect[s] + b * BLOCK;
			uint8_t *old = h->copy[s] + b * BLOCK;
			uint8_t *atpeek = h->pcopy[s] + b * BLOCK;
			fga_lines l = fga_block_lines(h->f, blk + 100);
			int any = 0;

			h->lines_dirty += (unsigned long)__builtin_popcountll(l);
			if (!peek) {
				h->pushed += (unsigned long long)
						     __builtin_popcountll(l) *
					     (BLOCK / 64);
				h->pushed_page += l ? BLOCK : 0;
			}
			for (int i = 0; i < 64; i++) {
				size_t o = (size_t)i * (BLOCK / 64);
				int changed = memcmp(blk + o, old + o,
						     BLOCK / 64) != 0;

				h->lines_changed += changed;
				any |= changed;
				h->checked++;
				if (changed && !((l >> i) & 1) && !peek &&
				    h->peeked &&
				    memcmp(atpeek + o, old + o, BLOCK / 64) ==
					    0) {
					later[b] |= (fga_lines)1 << i;
					h->deferred++;
				} else if (changed && !((l >> i) & 1)) {
					h->missed++;
					cr_log_error("%s: round %u: line %d of "
						     "block %zu of section %d "
						     "changed and reads clean",
						     tag, round, i, b, s);
				}
			}
			/* Isolation: a block left alone reads clean, or
			 * whole (exempt, carried, concurrent marking). */
			cr_assert(!h->quiet || any || l == 0 ||
					  l == FGA_LINES_ALL,
				  "%s: round %u: quiet heap, unchanged block "
				  "%zu reads %#llx",
				  tag, round, b, (unsigned long long)l);
		}
		if (peek) {
			memcpy(h->pcopy[s], h->sect[s], SECT_BLOCKS * BLOCK);
			continue;
		}
		for (size_t b = 0; b < SECT_BLOCKS; b++)
			for (int i = 0; i < 64; i++) {
				size_t o = b * BLOCK + (size_t)i * (BLOCK / 64);

				if (!((later[b] >> i) & 1))
					memcpy(h->copy[s] + o, h->sect[s] + o,
					       BLOCK / 64);
			}
	}
	h->peeks += peek;
	h->peeked = peek;
}

static void retrieve_check(struct heap *h, unsigned round, const char *tag)
{
	check_lines(h, round, tag, 0);
}

/* A collector's sweep over neighbouring blocks of section s from block b,
 * one block a call, down or up, now and then skipping one (a block of
 * another kind): free lists rebuilt (fga_blocks_reused, with or without
 * pointers) or, with frees, empty blocks freed and some handed out again
 * at once.  The adapter gathers these calls (its readahead of reuses,
 * its runs of frees), so bytes are written into the swept blocks, into
 * the blocks around the swept run and into freed ones, before and after
 * the next call, and any of them changed must read dirty. */
static void sweep(struct heap *h, orc_rng *g, int s, size_t b, int frees)
{
	int down = (int)orc_below(g, 2);
	size_t n = 2 + orc_below(g, 12);
	size_t lo = b, hi = b;

	for (size_t k = 0; k < n; k++) {
		uint8_t *blk = h->sect[s] + b * BLOCK;

		if (frees && orc_below(g, 3)) {
			fga_blocks_freed(h->f, blk, BLOCK);
			if (orc_below(g, 4) == 0)
				fga_blocks_reused(h->f, blk, BLOCK,
						  FGA_BLOCK_NEW);
		} else {
			fga_blocks_reused(h->f, blk, BLOCK,
					  orc_below(g, 3) ? 0
							  : FGA_BLOCK_PTRFREE);
		}
		if (orc_below(g, 2))
			blk[orc_below(g, BLOCK)] ^= 0xa5;
		lo = b < lo ? b : lo;
		hi = b > hi ? b : hi;
		size_t step = 1 + (orc_below(g, 5) == 0);

		if (down ? b < step : b + step >= SECT_BLOCKS)
			break;
		b = down ? b - step : b + step;
	}
	/* Around the run: beyond it (the readahead's guesses) and in it. */
	lo = lo >= 3 ? lo - 3 : 0;
	hi = hi + 3 < SECT_BLOCKS ? hi + 3 : SECT_BLOCKS - 1;
	for (size_t k = 0, m = 1 + orc_below(g, 6); k < m; k++)
		h->sect[s][(lo + orc_below(g, hi - lo + 1)) * BLOCK +
			   orc_below(g, BLOCK)] ^= 0x3c;
}

/* The collector carves fresh blocks out of section s from block b, one
 * a call and upwards, without freeing them first (a new section's: the
 * adapter un-protects them ahead of the calls, fga.c's fresh stream),
 * some with pointers and some without, and the program fills them; bytes
 * are also written into the blocks just beyond the run. */
static void carve(struct heap *h, orc_rng *g, int s, size_t b)
{
	size_t n = 2 + orc_below(g, 12), hi = b;

	for (size_t k = 0; k < n && b < SECT_BLOCKS; k++) {
		uint8_t *blk = h->sect[s] + b * BLOCK;

		fga_blocks_reused(h->f, blk, BLOCK,
				  FGA_BLOCK_NEW | (orc_below(g, 3) == 0
							   ? FGA_BLOCK_PTRFREE
							   : 0));
		if (orc_below(g, 2))
			orc_fill_random(g, blk + orc_below(g, BLOCK - 64), 64);
		hi = b;
		b += 1 + (orc_below(g, 6) == 0);
	}
	for (size_t k = 0, m = orc_below(g, 4); k < m; k++) {
		size_t t = hi + 1 + orc_below(g, 3);

		if (t < SECT_BLOCKS)
			h->sect[s][t * BLOCK + orc_below(g, BLOCK)] ^= 0x96;
	}
}

/* One random mutation of the heap (the program or the collector). */
static void mutate(struct heap *h, orc_rng *g)
{
	int s = (int)orc_below(g, 2);
	size_t b = orc_below(g, SECT_BLOCKS);
	uint8_t *blk = h->sect[s] + b * BLOCK;
	size_t off, len;

	switch (orc_below(g, 10)) {
	case 0: /* a whole block */
		orc_fill_random(g, blk, BLOCK);
		break;
	case 1: /* bytes written back to what they were at the retrieval */
		off = orc_below(g, BLOCK - 64);
		memcpy(blk + off, h->copy[s] + b * BLOCK + off, 64);
		break;
	case 2: /* the collector frees a run, then hands it out again */
		len = 1 + orc_below(g, 4);
		if (b + len > SECT_BLOCKS)
			len = SECT_BLOCKS - b;
		fga_blocks_freed(h->f, blk, len * BLOCK);
		if (orc_below(g, 2))
			fga_blocks_reused(h->f, blk, len * BLOCK,
					  FGA_BLOCK_NEW |
						  (orc_below(g, 3) == 0
							   ? FGA_BLOCK_PTRFREE
							   : 0));
		orc_fill_random(g, blk, len * BLOCK / 2);
		break;
	case 3: /* a free list rebuilt in a live block */
		fga_blocks_reused(h->f, blk, BLOCK, 0);
		blk[orc_below(g, BLOCK)] ^= 0x5a;
		break;
	case 4: /* fresh blocks handed out in order */
		carve(h, g, s, b);
		break;
	case 8: /* a lazy sweep: neighbours, one at a time */
		sweep(h, g, s, b, 0);
		break;
	case 9: /* a sweep that frees the empty ones */
		sweep(h, g, s, b, 1);
		break;
	default: /* a few bytes */
		off = orc_below(g, BLOCK);
		len = 1 + orc_below(g, 200);
		if (off + len > BLOCK)
			len = BLOCK - off;
		orc_fill_random(g, blk + off, len);
		break;
	}
}

/* contract_page_unwatched: the collector unwatches a run of blocks or
 * watches one again (Racket: pages left un-protected, then protected). */
static void unwatch(struct heap *h, orc_rng *g)
{
	int s = (int)orc_below(g, 2);
	size_t b = orc_below(g, SECT_BLOCKS);
	size_t len = 1 + orc_below(g, 6);
	int rc;

	if (b + len > SECT_BLOCKS)
		len = SECT_BLOCKS - b;
	rc = fga_blocks_unwatched(h->f, h->sect[s] + b * BLOCK, len * BLOCK,
				  (int)orc_below(g, 2));
	cr_assert_eq(rc, 0, "fga_blocks_unwatched: %s", fg_strerror(rc));
}

static void contract(fg_backend_id id, size_t card)
{
	struct heap h[2];
	char tag[64];
	uint64_t seed;
	orc_rng g;

	ORC_REQUIRE_BACKEND(id);
	if (card == FGA_CARD_AUTO)
		snprintf(tag, sizeof tag, "%s card auto", fg_backend_name(id));
	else
		snprintf(tag, sizeof tag, "%s card %zu", fg_backend_name(id),
			 card);
	seed = orc_seed(tag);
	orc_rng_init(&g, seed);
	heap_init(&h[0], id, card, "fga A");
	heap_init(&h[1], id, card, "fga B");
	/* auto: room for a trial after a second one failed (the wait
	 * doubles to 64 retrievals). */
	unsigned rounds = card == FGA_CARD_AUTO ? 200 : ROUNDS;

	for (unsigned r = 0; r < rounds; r++) {
		for (int i = 0; i < 2; i++) {
			struct heap *p = &h[i];
			unsigned n = (unsigned)orc_below(&g, 12);

			/* Every fifth round one heap stays quiet. */
			p->quiet = r % 5 == (unsigned)(i + 1);
			if (p->quiet)
				continue;
			/* FG_CARD=auto: a dense stretch (whole blocks,
			 * nothing else), where twins do not pay, then a
			 * sparse one (a few bytes in every block, nothing
			 * else), where they do.  (With the schedule's
			 * mutations in the dense stretch, a quarter of the
			 * compared lines unchanged, digests paid.) */
			if (card == FGA_CARD_AUTO && r >= 20)
				n = 0;
			for (unsigned k = 0; k < n; k++)
				mutate(p, &g);
			for (unsigned k = 0; card == FGA_CARD_AUTO &&
					     r >= 20 && r < 40 && k < 16;
			     k++)
				orc_fill_random(
					&g,
					p->sect[orc_below(&g, 2)] +
						orc_below(&g, SECT_BLOCKS) *
							BLOCK,
					BLOCK);
			for (size_t b = 0; card == FGA_CARD_AUTO && r >= 40 &&
					   b < 2 * SECT_BLOCKS;
			     b++)
				orc_fill_random(
					&g,
					p->sect[b % 2] +
						b / 2 * BLOCK +
						orc_below(&g, BLOCK - 8),
					8);
			/* Hot blocks: written at most retrievals, then
			 * left alone for stretches (they cool down and are
			 * watched again), sometimes only half of them. */
			for (unsigned b = 0; hot_cfg && r % 24 < 16 &&
					     b < HOT_BLOCKS;
			     b++)
				if (orc_below(&g, 8))
					orc_fill_random(
						&g,
						p->sect[0] + b * BLOCK +
							orc_below(&g, BLOCK - 8),
						8);
			for (unsigned k = 0; unwatch_cfg && k < n / 3; k++)
				unwatch(p, &g);
			if (orc_below(&g, 2)) {
				fga_preclean(p->f);
				for (unsigned k = 0; k < n / 2; k++)
					mutate(p, &g);
			} else if (orc_below(&g, 2)) {
				/* Racket's order: peek, the collector's
				 * writes, unwatching and watching again,
				 * retrieve. */
				check_lines(p, r, tag, 1);
				for (unsigned k = 0; k < n / 2; k++)
					mutate(p, &g);
				for (unsigned k = 0; unwatch_cfg && k < 3; k++)
					unwatch(p, &g);
			}
			/* (Not in auto's sparse stretch: a retrieval after
			 * concurrent marking reads whole, and saves nothing.) */
			if (orc_below(&g, 6) == 0 &&
			    !(card == FGA_CARD_AUTO && r >= 40))
				fga_concurrent_mark(p->f);
		}
		for (int i = 0; i < 2; i++) {
			struct heap *p = &h[i];

			retrieve_check(p, r, tag);
			if (p->quiet)
				continue;
			/* Written between the retrieval and the end of the
			 * collection: by the collector (wrote_after) or the
			 * program. */
			if (orc_below(&g, 3) == 0)
				mutate(p, &g);
			fga_collection_done(p->f, (int)orc_below(&g, 2));
		}
	}
	unsigned long auto_off = 0, auto_on = 0, auto_full = 0;

	for (int i = 0; i < 2; i++) {
		fga_stats st = {.size = sizeof st};

		cr_assert_eq(fga_get_stats(h[i].f, &st), 0);
		auto_off += st.auto_off;
		auto_on += st.auto_on;
		auto_full += st.auto_full;
		cr_log_info("%s, instance %c (seed %#llx): %lu retrievals "
			    "(%lu peeks), "
			    "%lu lines checked, %lu changed, %lu read dirty, "
			    "%lu missed (%lu left to the check after a "
			    "peek's retrieval); %lu blocks exempted, %lu watched "
			    "again, %lu hot; auto: twins off %lu times, on "
			    "%lu, full cap %lu",
			    tag, 'A' + i, (unsigned long long)seed,
			    st.collections, st.peeks, h[i].checked, h[i].lines_changed,
			    h[i].lines_dirty, h[i].missed, h[i].deferred,
			    st.exempted_blocks,
			    st.watched_blocks, st.hot_blocks, st.auto_off,
			    st.auto_on, st.auto_full);
		cr_log_info("%s, instance %c: %lu blocks reused by %lu calls "
			    "(%lu ahead), %lu fresh by %lu calls (%lu "
			    "ahead), %lu exempted by %lu calls, %lu unwatched "
			    "by the collector, %lu watched again",
			    tag, 'A' + i, st.reused_blocks, st.reuse_calls,
			    st.reuse_ahead, st.fresh_blocks, st.fresh_calls,
			    st.fresh_ahead, st.exempted_blocks,
			    st.exempt_calls, st.unwatched_blocks,
			    st.rewatched_blocks);
		if (unwatch_cfg)
			cr_expect(st.unwatched_blocks > 0 &&
					  st.rewatched_blocks > 0,
				  "%s: nothing unwatched and watched again",
				  tag);
		/* The sweeps made the adapter gather calls: they ran under
		 * the oracle. */
		if (st.exempted_blocks)
			cr_expect(st.reuse_calls < st.reused_blocks &&
					  st.fresh_calls < st.fresh_blocks &&
					  st.exempt_calls < st.exempted_blocks,
				  "%s: no reuse, fresh block or free was "
				  "gathered",
				  tag);
		cr_expect_eq(st.peeks, h[i].peeks);
		cr_expect_eq(st.collections, rounds + h[i].fallbacks);
		/* config.hot applies at page cards, where the backend can
		 * leave blocks out: then blocks were found hot. */
		if (hot_cfg && card >= (size_t)sysconf(_SC_PAGESIZE) &&
		    (fg_backend_caps(id) & FG_CAP_EXEMPT))
			cr_expect_gt(st.hot_blocks, 0, "%s: no hot block",
				     tag);
		cr_expect_eq(h[i].missed, 0, "%s: %lu changed lines read clean "
					     "(seed %#llx: FG_SEED replays)",
			     tag, h[i].missed, (unsigned long long)seed);
	}
	/* FG_CARD=auto: every switch ran under the oracle (twins off in
	 * the first and the dense stretches, on trial again, the full cap
	 * in the sparse stretch; digests start under the full cap and come
	 * back on under it). */
	if (card == FGA_CARD_AUTO && orc_twinning(id))
		cr_expect(auto_off >= 1 && auto_on >= 1 &&
				  (auto_full >= 1 || form_cfg == FGA_TWIN_DIGEST),
			  "%s: twins off %lu times, on %lu, given the full "
			  "cap %lu: a switch was not exercised",
			  tag, auto_off, auto_on, auto_full);
	heap_free(&h[0]);
	heap_free(&h[1]);
}

static void contract_64(fg_backend_id id)
{
	contract(id, 64);
}

static void contract_page(fg_backend_id id)
{
	contract(id, (size_t)sysconf(_SC_PAGESIZE));
}

static void contract_page_hot(fg_backend_id id)
{
	hot_cfg = 3;
	contract(id, (size_t)sysconf(_SC_PAGESIZE));
}

/* Sub-page cards: the tracker's twin of a block is as old as the block's
 * unwatching, and a line written while it was unwatched and written back
 * to that old value after a retrieval compares equal with it.  The
 * adapter must read such a block whole at the retrieval that watches it
 * again. */
static void unwatched_old_twin(fg_backend_id id, size_t card)
{
	struct heap h;
	uint8_t *b;

	heap_init(&h, id, card, "fga old twin");
	b = h.sect[1] + 5 * BLOCK;
	/* Watched and written for a while: the block has a twin. */
	for (int r = 0; r < 6; r++) {
		for (int k = 0; k < 8; k++)
			b[512 * k + r] = (uint8_t)(0x40 + r);
		fga_retrieve(h.f);
		fga_collection_done(h.f, 0);
	}
	fga_retrieve(h.f);
	fga_collection_done(h.f, 0);
	cr_assert_eq(fga_blocks_unwatched(h.f, b, BLOCK, 1), 0);
	b[1000] = 0xa5; /* A -> B, unwatched */
	fga_retrieve(h.f);
	cr_expect_eq(fga_block_lines(h.f, b), FGA_LINES_ALL);
	fga_collection_done(h.f, 0);
	b[1000] = 0; /* B -> A, the twin's value */
	cr_assert_eq(fga_blocks_unwatched(h.f, b, BLOCK, 0), 0);
	fga_retrieve(h.f);
	cr_expect(fga_block_lines(h.f, b) & (1ull << (1000 / (BLOCK / 64))),
		  "%s card %s: a line written back to the value it had "
		  "when its block was unwatched reads clean once watched "
		  "again",
		  fg_backend_name(id), card == 64 ? "64" : "auto");
	fga_collection_done(h.f, 0);
	/* Then tracked by lines again. */
	fga_retrieve(h.f);
	fga_collection_done(h.f, 0);
	b[3000] ^= 1;
	fga_retrieve(h.f);
	cr_expect(fga_block_lines(h.f, b) & (1ull << (3000 / (BLOCK / 64))));
	heap_free(&h);
}

static void contract_64_unwatched(fg_backend_id id)
{
	unwatch_cfg = 1;
	contract(id, 64);
	unwatched_old_twin(id, 64);
}

static void contract_auto_unwatched(fg_backend_id id)
{
	unwatch_cfg = 1;
	contract(id, FGA_CARD_AUTO);
	unwatched_old_twin(id, FGA_CARD_AUTO);
}

static void contract_page_unwatched(fg_backend_id id)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	unsigned long before;
	fga_stats st = {.size = sizeof st};
	struct heap h;

	unwatch_cfg = 1;
	contract(id, ps);
	/* Left out: unwatched blocks written at every retrieval are not
	 * the tracker's to report (they read whole through the adapter). */
	if (!(fg_backend_caps(id) & FG_CAP_EXEMPT))
		return;
	heap_init(&h, id, ps, "fga unwatched");
	cr_assert_eq(fga_blocks_unwatched(h.f, h.sect[0], 8 * BLOCK, 1), 0);
	fga_retrieve(h.f);
	cr_assert_eq(fga_get_stats(h.f, &st), 0);
	before = st.dirty_pages;
	for (int r = 0; r < 5; r++) {
		for (int b = 0; b < 8; b++)
			h.sect[0][b * BLOCK + 8 * r] = (uint8_t)(r + 1);
		fga_retrieve(h.f);
		for (int b = 0; b < 8; b++)
			cr_assert_eq(fga_block_lines(h.f, h.sect[0] + b * BLOCK),
				     FGA_LINES_ALL);
	}
	cr_assert_eq(fga_get_stats(h.f, &st), 0);
	cr_expect_eq(st.dirty_pages, before,
		     "%s: the tracker reported %lu pages of unwatched blocks",
		     fg_backend_name(id), st.dirty_pages - before);
	/* Watched again: read whole at the next retrieval, then tracked. */
	cr_assert_eq(fga_blocks_unwatched(h.f, h.sect[0], 8 * BLOCK, 0), 0);
	fga_retrieve(h.f);
	cr_expect_eq(fga_block_lines(h.f, h.sect[0]), FGA_LINES_ALL);
	fga_retrieve(h.f);
	cr_expect_eq(fga_block_lines(h.f, h.sect[0]), 0,
		     "%s: a block watched again and left alone reads dirty",
		     fg_backend_name(id));
	h.sect[0][3 * BLOCK + 100] ^= 1;
	fga_retrieve(h.f);
	cr_expect_neq(fga_block_lines(h.f, h.sect[0] + 3 * BLOCK), 0);
	heap_free(&h);
}

/* Instances that exempt blocks themselves (the default config) or heat
 * them (fga_config.hot) refuse, and the blocks stay tracked. */
static void unwatched_refused(fg_backend_id id)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	struct heap h;

	heap_init(&h, id, ps, "fga exempting");
	cr_expect_eq(fga_blocks_unwatched(h.f, h.sect[0], BLOCK, 1),
		     -ENOTSUP);
	heap_free(&h);
	unwatch_cfg = 1;
	hot_cfg = 3;
	heap_init(&h, id, ps, "fga hot");
	/* hot applies where the backend can leave pages out. */
	cr_expect_eq(fga_blocks_unwatched(h.f, h.sect[0], BLOCK, 1),
		     (fg_backend_caps(id) & FG_CAP_EXEMPT) ? -ENOTSUP : 0);
	fga_retrieve(h.f);
	fga_retrieve(h.f);
	h.sect[0][200] ^= 1;
	fga_retrieve(h.f);
	cr_expect(fga_block_lines(h.f, h.sect[0]) & (1ull << (200 / 64)),
		  "a refused block's write reads clean");
	heap_free(&h);
}

static void contract_auto(fg_backend_id id)
{
	contract(id, FGA_CARD_AUTO);
}

static void contract_auto_digest(fg_backend_id id)
{
	form_cfg = FGA_TWIN_DIGEST;
	contract(id, FGA_CARD_AUTO);
}

#ifndef ORC_KVM_ONLY
#define FGA_BACKENDS(suite, scn, secs)                                       \
	ORC_TEST_FOR(suite, scn, uffd_async, FG_BACKEND_UFFD_ASYNC, secs)    \
	ORC_TEST_FOR(suite, scn, uffd_sync, FG_BACKEND_UFFD_SYNC, secs)      \
	ORC_TEST_FOR(suite, scn, mprotect, FG_BACKEND_MPROTECT, secs)
FGA_BACKENDS(fga, contract_64, 120)
FGA_BACKENDS(fga, contract_page, 120)
FGA_BACKENDS(fga, contract_page_hot, 120)
FGA_BACKENDS(fga, contract_page_unwatched, 120)
FGA_BACKENDS(fga, contract_64_unwatched, 120)
FGA_BACKENDS(fga, contract_auto_unwatched, 120)
FGA_BACKENDS(fga, unwatched_refused, 60)
FGA_BACKENDS(fga, contract_auto, 120)
FGA_BACKENDS(fga, contract_auto_digest, 120)
#endif

/* Sparse writes to an old heap: one line in each of a few random blocks
 * per round.  With sticky twins the adapter's lines are the changed ones
 * once every block has a twin. */
static void precise(size_t card, double *ratio)
{
	struct heap h;
	orc_rng g;
	unsigned long dirty0 = 0, changed0 = 0;

	orc_rng_init(&g, orc_seed("precise"));
	heap_init(&h, FG_BACKEND_UFFD_ASYNC, card, "fga precise");
	for (int s = 0; s < 2; s++)
		orc_fill_random(&g, h.sect[s], SECT_BLOCKS * BLOCK);
	for (unsigned r = 0; r < 60; r++) {
		if (r == 20) { /* warmed up: every block written once */
			dirty0 = h.lines_dirty;
			changed0 = h.lines_changed;
		}
		for (unsigned k = 0; k < (r < 20 ? 96u : 8u); k++) {
			int s = (int)orc_below(&g, 2);
			size_t b = r < 20 ? (r * 96 + k) % SECT_BLOCKS
					  : orc_below(&g, SECT_BLOCKS);

			h.sect[s][b * BLOCK + orc_below(&g, BLOCK)] ^= 0xff;
		}
		retrieve_check(&h, r, "precise");
		fga_collection_done(h.f, 0);
	}
	cr_assert_eq(h.missed, 0);
	*ratio = (double)(h.lines_dirty - dirty0) /
		 (double)(h.lines_changed - changed0);
	cr_log_info("card %zu: %lu changed lines read as %lu dirty (%.2fx)",
		    card, h.lines_changed - changed0, h.lines_dirty - dirty0,
		    *ratio);
	heap_free(&h);
}

Test(fga, precise_64, .timeout = 120)
{
	double r64, rpage;

	ORC_REQUIRE_BACKEND(FG_BACKEND_UFFD_ASYNC);
	precise(64, &r64);
	precise((size_t)sysconf(_SC_PAGESIZE), &rpage);
	cr_expect_leq(r64, 4.0, "64-byte cards: %.2fx the changed lines", r64);
	cr_expect_geq(rpage, 32.0, "page cards: only %.2fx (the measure is "
				   "off)",
		      rpage);
}

/* fork: the child's instance gets a new tracker over the same sections. */
Test(fga, fork, .timeout = 60)
{
	struct heap h;
	pid_t pid;
	int st;

	ORC_REQUIRE_BACKEND(FG_BACKEND_UFFD_ASYNC);
	heap_init(&h, FG_BACKEND_UFFD_ASYNC, 64, "fga fork");
	retrieve_check(&h, 0, "fork parent");
	retrieve_check(&h, 1, "fork parent");
	h.sect[0][5 * BLOCK + 7] = 1;
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int bad = 0;

		fga_fork_child(h.f);
		fga_retrieve(h.f);
		/* Everything, once: what was written before is unknown. */
		for (size_t b = 0; b < SECT_BLOCKS; b++)
			bad |= fga_block_lines(h.f, h.sect[1] + b * BLOCK) !=
			       FGA_LINES_ALL;
		memcpy(h.copy[0], h.sect[0], SECT_BLOCKS * BLOCK);
		memcpy(h.copy[1], h.sect[1], SECT_BLOCKS * BLOCK);
		h.sect[1][9 * BLOCK + 64 * 3] = 42;
		fga_retrieve(h.f);
		bad |= (fga_block_lines(h.f, h.sect[1] + 9 * BLOCK) & 8) == 0;
		bad |= fga_block_lines(h.f, h.sect[1] + 10 * BLOCK) != 0;
		_exit(bad ? 3 : strcmp(fga_backend(h.f), "uffd-async") ? 4 : 0);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		  "child: status %#x (3: lines wrong, 4: backend wrong)", st);
	retrieve_check(&h, 2, "fork parent");
	cr_assert_eq(h.missed, 0);
	heap_free(&h);
}

struct visits {
	uintptr_t block[4 * SECT_BLOCKS];
	fga_lines lines[4 * SECT_BLOCKS];
	size_t n;
};

static void visit(void *arg, void *block, fga_lines lines)
{
	struct visits *v = arg;

	if (v->n < 4 * SECT_BLOCKS) {
		v->block[v->n] = (uintptr_t)block;
		v->lines[v->n] = lines;
	}
	v->n++;
}

/* Every block with a dirty line, once, in address order, with its lines. */
static void check_visits(fga *f, uint8_t *const *sect, int nsect)
{
	struct visits v = {.n = 0};
	size_t want = 0, got;
	uintptr_t prev = 0;

	got = fga_for_each_dirty(f, visit, &v);
	cr_assert_eq(got, v.n);
	for (size_t i = 0; i < v.n; i++) {
		cr_assert_gt(v.block[i], prev, "visits out of order");
		prev = v.block[i];
		cr_assert_eq(v.lines[i], fga_block_lines(f, (void *)v.block[i]));
		cr_assert_neq(v.lines[i], 0);
	}
	for (int s = 0; s < nsect; s++)
		for (size_t b = 0; b < SECT_BLOCKS; b++)
			want += fga_block_lines(f, sect[s] + b * BLOCK) != 0;
	cr_assert_eq(got, want, "visited %zu blocks, %zu have dirty lines",
		     got, want);
}

Test(fga, sections, .timeout = 60)
{
	size_t bytes = SECT_BLOCKS * BLOCK;
	struct heap h;
	void *gone;

	ORC_REQUIRE_BACKEND(FG_BACKEND_UFFD_ASYNC);
	heap_init(&h, FG_BACKEND_UFFD_ASYNC, 64, "fga sections");
	retrieve_check(&h, 0, "sections");
	check_visits(h.f, h.sect, 2); /* the first: all */
	/* Every block written once: sticky twins for all, exact after. */
	for (int s = 0; s < 2; s++)
		for (size_t b = 0; b < SECT_BLOCKS; b++)
			h.sect[s][b * BLOCK + 1] = 1;
	retrieve_check(&h, 1, "sections");
	check_visits(h.f, h.sect, 2);
	retrieve_check(&h, 1, "sections");
	check_visits(h.f, h.sect, 2);
	cr_assert_eq(fga_for_each_dirty(h.f, visit, &(struct visits){.n = 0}),
		     0, "nothing written, yet blocks read dirty");
	h.sect[0][3 * BLOCK + 64 * 5] = 7;
	h.sect[1][40 * BLOCK + 64 * 63] = 9;
	retrieve_check(&h, 2, "sections");
	check_visits(h.f, h.sect, 2);
	cr_assert_eq(fga_block_lines(h.f, h.sect[0] + 3 * BLOCK),
		     (fga_lines)1 << 5);
	/* Section 1 goes: unregistered, unknown to the instance. */
	cr_assert_eq(fga_remove_section(h.f, h.sect[1], bytes / 2), -ENOENT);
	cr_assert_eq(fga_remove_section(h.f, h.sect[1], bytes), 0);
	cr_assert_eq(fga_remove_section(h.f, h.sect[1], bytes), -ENOENT);
	cr_assert_eq(fga_block_lines(h.f, h.sect[1]), FGA_LINES_ALL);
	munmap(gone = h.sect[1], bytes);
	h.sect[1] = NULL;
	h.sect[0][5 * BLOCK] = 1;
	retrieve_check(&h, 3, "sections");
	cr_assert_eq(fga_block_lines(h.f, h.sect[0] + 5 * BLOCK), 1);
	check_visits(h.f, h.sect, 1);
	/* A new section at the same address reads dirty until the first
	 * retrieval, then exactly. */
	h.sect[1] = mmap(gone, bytes, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1,
			 0);
	cr_assert_neq(h.sect[1], MAP_FAILED);
	memset(h.copy[1], 0, bytes);
	cr_assert_eq(fga_add_section(h.f, h.sect[1], bytes), 0);
	cr_assert_eq(fga_block_lines(h.f, h.sect[1] + BLOCK), FGA_LINES_ALL);
	retrieve_check(&h, 4, "sections");
	h.sect[1][7 * BLOCK + 64] = 3;
	retrieve_check(&h, 5, "sections");
	h.sect[1][7 * BLOCK + 64] = 4;
	retrieve_check(&h, 6, "sections");
	cr_assert_eq(fga_block_lines(h.f, h.sect[1] + 7 * BLOCK), 2);
	check_visits(h.f, h.sect, 2);
	cr_assert_eq(h.missed, 0);
	heap_free(&h);
}

/* A fresh block (FGA_BLOCK_NEW) holds nothing the collector scanned, so
 * it reads dirty whole at the next retrieval even where it was not written
 * (fg_mark_dirty), also when it lies in a window that a sweep's readahead
 * un-protected ahead (fg_expect_writes under DIFF: compared with twins,
 * an unwritten block would read clean), and when the fresh stream's own
 * readahead un-protected it before it was handed out. */
Test(fga, fresh_reads_dirty, .timeout = 30)
{
	struct heap h;
	fga_stats st = {.size = sizeof st};
	uint8_t *s0;

	ORC_REQUIRE_BACKEND(FG_BACKEND_UFFD_ASYNC);
	heap_init(&h, FG_BACKEND_UFFD_ASYNC, 64, "fga fresh");
	s0 = h.sect[0];
	retrieve_check(&h, 0, "fresh");
	/* Every block written once: twins for all. */
	for (size_t b = 0; b < SECT_BLOCKS; b++)
		s0[b * BLOCK + 1] = 1;
	retrieve_check(&h, 1, "fresh");
	retrieve_check(&h, 2, "fresh");
	/* A sweep upwards from block 10: the window reaches past 13. */
	for (size_t b = 10; b < 14; b++)
		fga_blocks_reused(h.f, s0 + b * BLOCK, BLOCK, 0);
	fga_blocks_reused(h.f, s0 + 15 * BLOCK, BLOCK, FGA_BLOCK_NEW);
	/* Fresh blocks from 30 up: their own window reaches 34. */
	for (size_t b = 30; b < 34; b++)
		fga_blocks_reused(h.f, s0 + b * BLOCK, BLOCK, FGA_BLOCK_NEW);
	fga_blocks_reused(h.f, s0 + 34 * BLOCK, BLOCK, FGA_BLOCK_NEW);
	cr_assert_eq(fga_get_stats(h.f, &st), 0);
	cr_assert(st.reuse_ahead > 0 && st.fresh_ahead > 0,
		  "no readahead (%lu reused ahead, %lu fresh ahead): the "
		  "test lost its point",
		  st.reuse_ahead, st.fresh_ahead);
	retrieve_check(&h, 3, "fresh");
	for (size_t b = 30; b <= 34; b++)
		cr_expect_eq(fga_block_lines(h.f, s0 + b * BLOCK),
			     FGA_LINES_ALL, "fresh block %zu, not written, "
					    "did not read dirty whole", b);
	cr_expect_eq(fga_block_lines(h.f, s0 + 15 * BLOCK), FGA_LINES_ALL,
		     "a fresh block in a sweep's window read as compared "
		     "with its twins");
	cr_expect_eq(fga_block_lines(h.f, s0 + 12 * BLOCK), 0,
		     "a swept block, not written, read dirty under DIFF");
	cr_assert_eq(h.missed, 0);
	heap_free(&h);
}

Test(fga, rewatch_after_peek, .timeout = 30)
{
	struct heap h;
	fga_stats st = {.size = sizeof st};
	uint8_t *s0, *s1;

	ORC_REQUIRE_BACKEND(FG_BACKEND_UFFD_ASYNC);
	unwatch_cfg = 1; /* Racket's instances: exempt nothing themselves */
	heap_init(&h, FG_BACKEND_UFFD_ASYNC, BLOCK, "fga rewatch");
	unwatch_cfg = 0;
	s0 = h.sect[0];
	s1 = h.sect[1];
	fga_retrieve(h.f);
	fga_retrieve(h.f); /* both sections clean and protected */
	for (int named = 1; named >= 0; named--) {
		size_t b = named ? 3 : 7;

		s0[5 * BLOCK] ^= 1; /* the program, before the pause */
		cr_assert_eq(fga_peek(h.f), 1, "uffd-async peeks");
		cr_assert_neq(fga_block_lines(h.f, s0 + 5 * BLOCK), 0,
			      "the program's write before the peek");
		cr_assert_eq(fga_block_lines(h.f, s1 + b * BLOCK), 0,
			     "section 1, not written, read dirty at the peek");
		s1[b * BLOCK] ^= 2; /* the collector, in its pause */
		if (named)
			cr_assert_eq(fga_blocks_unwatched(h.f, s1 + b * BLOCK,
							  BLOCK, 0),
				     0);
		fga_retrieve(h.f); /* the pause ends */
		cr_assert_eq(fga_peek(h.f), 1);
		if (named)
			cr_expect_eq(fga_block_lines(h.f, s1 + b * BLOCK), 0,
				     "a block the collector wrote in its pause "
				     "and then watched again read dirty at "
				     "the next peek: rescanned for nothing");
		else
			cr_expect_neq(fga_block_lines(h.f, s1 + b * BLOCK), 0,
				      "a write into a section left out of "
				      "the retrieval after a peek was lost");
		fga_retrieve(h.f);
		s1[b * BLOCK + 100] ^= 4; /* the program again */
		cr_assert_eq(fga_peek(h.f), 1);
		cr_expect_neq(fga_block_lines(h.f, s1 + b * BLOCK), 0,
			      "the program's write after the pause, into a "
			      "block watched again (%s), was lost",
			      named ? "named" : "not named");
		fga_retrieve(h.f);
	}
	cr_assert_eq(fga_get_stats(h.f, &st), 0);
	cr_expect_eq(st.peek_named, 1, "sections named after a peek: %lu",
		     st.peek_named);
	heap_free(&h);
}

/* fga_hold_lines: config.hold only where lines are read finer than a
 * page (64-byte cards with twins), never at page cards, nor without
 * twins (mprotect reads a written page whole); 0 for no instance.
 * (Auto with its twins off is page cards: fga.c returns 0 there too,
 * which this test does not reach.) */
static unsigned hold_of(fg_backend_id id, size_t card, unsigned hold)
{
	fga_config c = FGA_CONFIG_INIT;
	unsigned n;
	fga *f;

	c.name = "hold";
	c.block = BLOCK;
	c.backend = fg_backend_name(id);
	c.card = card;
	c.hold = hold;
	cr_assert_eq(fga_create(&c, &f), 0, "fga_create(%s, card %zu): %s",
		     c.backend, card, fga_last_error(NULL));
	n = fga_hold_lines(f);
	fga_destroy(f);
	return n;
}

Test(fga, hold_lines, .timeout = 30)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	ORC_REQUIRE_BACKEND(FG_BACKEND_UFFD_ASYNC);
	cr_assert_eq(hold_of(FG_BACKEND_UFFD_ASYNC, 64, 32), 32);
	cr_assert_eq(hold_of(FG_BACKEND_UFFD_ASYNC, 64, 0), 0);
	cr_assert_eq(hold_of(FG_BACKEND_UFFD_ASYNC, page, 32), 0,
		     "page cards: nothing to keep clean below a page");
	cr_assert_eq(hold_of(FG_BACKEND_UFFD_SYNC, 64, 40), 40);
	cr_assert_eq(hold_of(FG_BACKEND_MPROTECT, 64, 32), 0,
		     "mprotect has no twins: its written pages read whole");
	cr_assert_eq(fga_hold_lines(NULL), 0);
}

/* A caller built before fga_config.hold: its smaller config is taken,
 * hold reading as 0. */
Test(fga, config_before_hold, .timeout = 30)
{
	fga_config c = FGA_CONFIG_INIT;
	fga *f;

	ORC_REQUIRE_BACKEND(FG_BACKEND_UFFD_ASYNC);
	c.block = BLOCK;
	c.backend = "uffd-async";
	c.card = 64;
	c.hold = 32;
	c.size = offsetof(fga_config, hold);
	cr_assert_eq(fga_create(&c, &f), 0, "%s", fga_last_error(NULL));
	cr_assert_eq(fga_hold_lines(f), 0, "hold came from past the size");
	fga_destroy(f);
	c.size = sizeof c;
	cr_assert_eq(fga_create(&c, &f), 0, "%s", fga_last_error(NULL));
	cr_assert_eq(fga_hold_lines(f), 32);
	fga_destroy(f);
}

/* ---- roots: fga_roots_* and fga_root_dirty, from fga.h's words ---- */

#define RPAGES 8

/* Memory for root ranges: anonymous, a private file mapping (a library's
 * data segment is one), and a range too small to track. */
struct rootmem {
	uint8_t *anon, *file, *small;
	size_t ps;
};

static void rootmem_init(struct rootmem *m)
{
	char path[] = "/tmp/fg-test-fga-XXXXXX";
	uint8_t buf[4096];
	int fd;

	m->ps = (size_t)sysconf(_SC_PAGESIZE);
	cr_assert_leq(m->ps, sizeof buf);
	m->anon = mmap(NULL, RPAGES * m->ps, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	unlink(path);
	memset(buf, 3, sizeof buf);
	for (int i = 0; i < RPAGES; i++)
		cr_assert_eq(write(fd, buf, m->ps), (ssize_t)m->ps);
	m->file = mmap(NULL, RPAGES * m->ps, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE, fd, 0);
	close(fd);
	cr_assert(m->anon != MAP_FAILED && m->file != MAP_FAILED);
	m->file[m->ps] = 1; /* one page copied, the others from the file */
	/* Two pages with a hole on each side, mapped last: ranges sharing
	 * or touching a page are merged into one. */
	m->small = mmap(NULL, 4 * m->ps, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(m->small != MAP_FAILED);
	munmap(m->small, m->ps);
	munmap(m->small + 3 * m->ps, m->ps);
	m->small += m->ps;
}

/* The roots as the collector holds them: anon and file as ranges that do
 * not start or end on a page boundary, as a data segment's; with_file 0
 * leaves the file's range out. */
static void roots_sync(fga *f, struct rootmem *m, int with_file)
{
	fga_roots_begin(f);
	fga_roots_add(f, m->anon + 24, m->anon + RPAGES * m->ps - 8);
	if (with_file)
		fga_roots_add(f, m->file + 100, m->file + RPAGES * m->ps);
	fga_roots_add(f, m->small, m->small + 2 * m->ps);
	fga_roots_end(f);
}

/* The pages of [p, p + n pages) that read dirty, as a bit set. */
static unsigned dirty_of(fga *f, const uint8_t *p, size_t ps, int n)
{
	unsigned d = 0;

	for (int i = 0; i < n; i++)
		d |= (unsigned)(fga_root_dirty(f, p + i * ps) != 0) << i;
	return d;
}

static fga *roots_make(fg_backend_id id, int roots)
{
	fga_config c = FGA_CONFIG_INIT;
	fga *f;

	c.block = BLOCK;
	c.backend = fg_backend_name(id);
	c.card = 64;
	c.roots = roots;
	cr_assert_eq(fga_create(&c, &f), 0, "%s", fga_last_error(NULL));
	return f;
}

#define ALL ((1u << RPAGES) - 1)

/* uffd-async: new ranges read dirty once, then only their written pages
 * (stores of every kind, read(2)); a small range, an unknown page, a
 * range dropped and one added again read dirty; after fork, everything
 * until the child syncs and retrieves twice. */
Test(fga, roots, .timeout = 30)
{
	struct rootmem m;
	fga_stats st = {.size = sizeof st};
	uint8_t other[64];
	int pfd[2];
	pid_t pid;
	int ws;
	fga *f;

	ORC_REQUIRE_BACKEND(FG_BACKEND_UFFD_ASYNC);
	rootmem_init(&m);
	f = roots_make(FG_BACKEND_UFFD_ASYNC, 1);
	cr_assert_eq(fga_root_dirty(f, m.anon), 1, "unknown before a sync");
	roots_sync(f, &m, 1);
	fga_retrieve(f);
	cr_assert_eq(dirty_of(f, m.anon, m.ps, RPAGES), ALL,
		     "a new range reads dirty at its first retrieval");
	cr_assert_eq(dirty_of(f, m.file, m.ps, RPAGES), ALL);
	roots_sync(f, &m, 1); /* unchanged: nothing new */
	fga_retrieve(f);
	cr_assert_eq(dirty_of(f, m.anon, m.ps, RPAGES), 0,
		     "nothing written, yet anon pages read dirty: %#x",
		     dirty_of(f, m.anon, m.ps, RPAGES));
	cr_assert_eq(dirty_of(f, m.file, m.ps, RPAGES), 0,
		     "nothing written, yet file pages read dirty: %#x",
		     dirty_of(f, m.file, m.ps, RPAGES));
	cr_assert_eq(dirty_of(f, m.small, m.ps, 2), 3,
		     "a range under four pages is never tracked");
	cr_assert_eq(fga_root_dirty(f, other), 1, "a page of no range");
	fga_get_stats(f, &st);
	cr_assert_eq(st.roots_tracked, 2);
	cr_assert_eq(st.root_pages, 2 * RPAGES);
	/* Stores into an anonymous page, a copied file page, a page still
	 * mapped from the file; read(2) into another. */
	m.anon[3 * m.ps + 17] = 9;
	m.file[1 * m.ps + 5] = 9;
	m.file[6 * m.ps] = 9;
	cr_assert_eq(pipe(pfd), 0);
	cr_assert_eq(write(pfd[1], "abcd", 4), 4);
	cr_assert_eq(read(pfd[0], m.file + 4 * m.ps + 8, 4), 4);
	close(pfd[0]);
	close(pfd[1]);
	fga_retrieve(f);
	cr_assert_eq(dirty_of(f, m.anon, m.ps, RPAGES), 1u << 3, "%#x",
		     dirty_of(f, m.anon, m.ps, RPAGES));
	cr_assert_eq(dirty_of(f, m.file, m.ps, RPAGES),
		     (1u << 1) | (1u << 4) | (1u << 6), "%#x",
		     dirty_of(f, m.file, m.ps, RPAGES));
	/* The file's range dropped: unknown, dirty.  Added again: dirty at
	 * its first retrieval, then clean. */
	roots_sync(f, &m, 0);
	fga_retrieve(f);
	cr_assert_eq(dirty_of(f, m.file, m.ps, RPAGES), ALL);
	cr_assert_eq(dirty_of(f, m.anon, m.ps, RPAGES), 0);
	roots_sync(f, &m, 1);
	fga_retrieve(f);
	cr_assert_eq(dirty_of(f, m.file, m.ps, RPAGES), ALL);
	fga_retrieve(f);
	cr_assert_eq(dirty_of(f, m.file, m.ps, RPAGES), 0);
	/* A write between the sync and the retrieval that follows it. */
	roots_sync(f, &m, 1);
	m.anon[7 * m.ps] = 1;
	fga_retrieve(f);
	cr_assert_eq(dirty_of(f, m.anon, m.ps, RPAGES), 1u << 7);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int bad = 0;

		fga_fork_child(f);
		fga_retrieve(f);
		bad |= dirty_of(f, m.anon, m.ps, RPAGES) != ALL;
		roots_sync(f, &m, 1);
		fga_retrieve(f);
		bad |= (dirty_of(f, m.anon, m.ps, RPAGES) != ALL) << 1;
		fga_retrieve(f);
		bad |= (dirty_of(f, m.anon, m.ps, RPAGES) != 0) << 2;
		m.anon[2 * m.ps] = 1;
		fga_retrieve(f);
		bad |= (dirty_of(f, m.anon, m.ps, RPAGES) != 1u << 2) << 3;
		_exit(bad);
	}
	cr_assert_eq(waitpid(pid, &ws, 0), pid);
	cr_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 0,
		  "child: status %#x (exit bits: 1 dirty after fork, 2 a new "
		  "range, 4 clean after, 8 a write)",
		  ws);
	fga_retrieve(f);
	cr_assert_eq(dirty_of(f, m.anon, m.ps, RPAGES), 0,
		     "the child's writes are its own");
	fga_destroy(f);
}

/* Where roots are not tracked every root page reads dirty: backends
 * that protect memory (mprotect, uffd-sync) or cannot watch private
 * file mappings, and fga_config.roots 0. */
Test(fga, roots_untracked, .timeout = 30)
{
	const fg_backend_id ids[] = {FG_BACKEND_UFFD_SYNC,
				     FG_BACKEND_MPROTECT,
				     FG_BACKEND_UFFD_ASYNC};
	struct rootmem m;

	rootmem_init(&m);
	for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
		fga_stats st = {.size = sizeof st};
		fga *f;

		if (fg_backend_probe(ids[i], NULL, 0))
			continue;
		f = roots_make(ids[i], ids[i] != FG_BACKEND_UFFD_ASYNC);
		for (int k = 0; k < 3; k++) {
			roots_sync(f, &m, 1);
			fga_retrieve(f);
			cr_assert_eq(dirty_of(f, m.anon, m.ps, RPAGES), ALL,
				     "%s: a root page read clean",
				     fg_backend_name(ids[i]));
			cr_assert_eq(dirty_of(f, m.file, m.ps, RPAGES), ALL);
		}
		fga_get_stats(f, &st);
		cr_assert_eq(st.roots_tracked, 0, "%s",
			     fg_backend_name(ids[i]));
		fga_destroy(f);
	}
}

Test(fga, bad_input, .timeout = 30)
{
	fga_config c = FGA_CONFIG_INIT;
	fga *f = (fga *)1;
	int rc;

	c.block = 100;
	rc = fga_create(&c, &f);
	cr_assert_eq(rc, -EINVAL);
	cr_assert_null(f);
	cr_assert(strstr(fga_last_error(NULL), "block size 100"),
		  "reason: %s", fga_last_error(NULL));
	c.block = BLOCK;
	c.backend = "no-such-backend";
	rc = fga_create(&c, &f);
	cr_assert_lt(rc, 0);
	cr_assert(strstr(fga_last_error(NULL), "no-such-backend"),
		  "reason: %s", fga_last_error(NULL));
	cr_assert_eq(fga_create(NULL, &f), -EINVAL);
	cr_assert_eq(fga_create(&c, NULL), -EINVAL);
	c.size = 8; /* a caller built against an older, smaller config */
	cr_assert_eq(fga_create(&c, &f), -EINVAL);
	cr_assert_eq(fga_config_env(NULL, "X"), -EINVAL);
	cr_assert_eq(fga_add_section(NULL, &c, 4096), -EINVAL);

	c = (fga_config)FGA_CONFIG_INIT;
	setenv("FGT_TWINS", "bogus", 1);
	setenv("FGT_TWIN_CAP", "12%", 1);
	setenv("FGT_EXEMPT", "0", 1);
	setenv("FGT_CHECK", "abort", 1);
	cr_assert_eq(fga_config_env(&c, "FGT"), 0);
	cr_assert_eq(c.twins, FGA_TWINS_STICKY, "a bad value keeps the default");
	cr_assert_eq(c.twin_cap_pct, 12);
	cr_assert_eq(c.exempt, 0);
	cr_assert_eq(c.check, 2);
	setenv("FGT_TWIN_CAP", "200%", 1);
	setenv("FGT_TWINS", "adaptive", 1);
	c = (fga_config)FGA_CONFIG_INIT;
	cr_assert_eq(fga_config_env(&c, "FGT"), 0);
	cr_assert_eq(c.twins, FGA_TWINS_ADAPTIVE);
	cr_assert_eq(c.twin_cap_pct, 0, "200%% is refused");
	cr_assert_eq(c.twin_cap, 0);
	setenv("FGT_TWIN_CAP", "64M", 1);
	cr_assert_eq(fga_config_env(&c, "FGT"), 0);
	cr_assert_eq(c.twin_cap, (size_t)64 << 20);
}
