/* fga.h - the generic adapter: a collector's dirty lines from the fgvm
 * toolkit.
 *
 * An adapter instance (fga) serves one heap of one collector.  The
 * collector describes its heap as sections (address ranges it mmaps) cut
 * into blocks of a fixed size; the instance keeps one 64-bit word per
 * block in which bit i says that the i-th line (block / 64 bytes) of the
 * block was written since the previous retrieval.  The collector:
 *
 *   fga_config c = FGA_CONFIG_INIT;           once, at start-up
 *   c.name = "myvm (fgvm adapter)"; c.block = 4096;
 *   fga_config_env(&c, "FG_MYVM");            optional: FG_MYVM_* knobs
 *   fga_create(&c, &f);                       when it wants dirty bits
 *   fga_add_section(f, start, bytes);         for every heap section
 *   ...
 *   fga_preclean(f);                          just before the world stops
 *   fga_retrieve(f);                          world stopped: a new epoch
 *   fga_block_lines(f, block);                world stopped: which lines
 *   fga_collection_done(f, wrote_after);      the collection is over
 *
 * and tells the instance about its blocks as it recycles them
 * (fga_blocks_freed, fga_blocks_reused), about marking done while the
 * program ran (fga_concurrent_mark) and about fork (fga_fork_child).
 * adapters/generic/README.md is the porting guide: the soundness rules a
 * port must keep, and Boehm GC (adapters/boehm/fg_boehm.c) as the worked
 * example.
 *
 * Contexts.  fga_create, fga_destroy, fga_add_section, fga_remove_section
 * and fga_fork_child may call malloc or free; everything else never does
 * (the collector calls them with the world stopped, where a stopped
 * thread may hold malloc's lock; tests/test_nomalloc.c checks it).
 * None is signal-safe, and one instance is not thread-safe: the
 * collector calls it under its own lock.  Several instances may live in
 * one process (one per heap, per place, per isolate), each with its own
 * toolkit tracker.
 *
 * Errors: negative errno values (fg_strerror names them); the reason is
 * also printed on stderr, prefixed with the instance's name, and kept for
 * fga_last_error().  A failure inside a retrieval is never an error the
 * collector sees: the lines it cannot vouch for read dirty (sound). */
#ifndef FGA_H
#define FGA_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <fg.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The calls libfga exports.  A collector that compiles fga.c into its
 * own library with -fvisibility=hidden (the Boehm adapter) defines FGA_API
 * as empty to keep them private. */
#ifndef FGA_API
#define FGA_API __attribute__((visibility("default")))
#endif

typedef struct fga fga;

/* Bit i: line i of a block is dirty.  All set: read the block whole. */
typedef uint64_t fga_lines;
#define FGA_LINES_ALL (~(fga_lines)0)

/* fga_config.card: the card size chosen per program:
 * 64-byte cards with sticky twins (line digests under the full cap from
 * the start; page copies on trial first, a sample of 10 % of the heap,
 * given the full cap where the compared pages were mostly unchanged),
 * turned off while they cost more than the rescanning they save (needs
 * fga_config.rescanned and rescanned_page; fga.c's auto_judge). */
#define FGA_CARD_AUTO ((size_t)-1)

/* fga_config.twins: below page-sized cards, DIFF precision's twin policy
 * (toolkit/fg.h, fg_twin_policy), or NONE for page precision. */
enum fga_twins {
	FGA_TWINS_STICKY = 0, /* default: a twin for every page written */
	FGA_TWINS_ADAPTIVE,   /* only pages written before and found sparse */
	FGA_TWINS_HOT,	      /* only the first-write hook's */
	FGA_TWINS_NONE,	      /* page precision: a written page reads whole */
};

typedef struct fga_config {
	size_t size;	    /* sizeof(fga_config), by the caller */
	const char *name;   /* prefix of messages: "libgc (fgvm adapter)" */
	size_t block;	    /* the collector's block size: a multiple of
			       64 (one line = block / 64 bytes) */
	const char *backend; /* toolkit backend name; NULL: FG_BACKEND, or
				the best the kernel has */
	size_t card;	    /* card size; 0: FG_CARD (which may say
			       "auto"), or card_default; FGA_CARD_AUTO */
	int twins;	    /* enum fga_twins */
	size_t twin_cap;    /* bytes of twins at most; 0: twin_cap_pct */
	unsigned twin_cap_pct; /* percent of the heap; 0: the policy's
				  default (sticky 100, adaptive 10) */
	int exempt;	    /* leave free and young blocks unwatched where
			       the backend can (FG_CAP_EXEMPT) */
	int preclean;	    /* fga_preclean retrieves (else a no-op) */
	unsigned hot;	    /* page precision: a block reported written at
			       two retrievals in a row is left unwatched
			       (read whole) for this many; 0: never */
	int check;	    /* the oracle: 0 off, 1 count misses, 2 abort */
	int auto_log;	    /* FGA_CARD_AUTO: print each judgement */
	const char *env_prefix; /* set by fga_config_env: names the check
				   in messages ("FG_BOEHM_CHECK") */
	/* The collector's counters, for FGA_CARD_AUTO's judge: the bytes
	 * it pushed again since it started, and the bytes page precision
	 * would have pushed in the same collections.  NULL: auto behaves as
	 * sticky 64-byte cards. */
	unsigned long long (*rescanned)(void *ctx);
	unsigned long long (*rescanned_page)(void *ctx);
	void *ctx;
	/* The card size when neither card nor FG_CARD chooses one: 0 the
	 * page size, or FGA_CARD_AUTO (the Boehm adapter's default). */
	size_t card_default;
	/* Below page-sized cards: what a twin is (toolkit/fg.h,
	 * FG_TWIN_DIGEST): FGA_TWIN_COPY, exact, or FGA_TWIN_DIGEST, an
	 * eighth of the memory, a changed line missed with probability at
	 * most 7 in 2^64 per comparison. */
	int twin_form;
	/* FGA_CARD_AUTO: what a byte the collector need not push again is
	 * worth, in picoseconds, against the twins' cost; 0: 6000 (fga.c,
	 * auto_judge, says why).  A collector whose marking costs more or
	 * less a byte than Boehm's on Guile may set its own. */
	unsigned auto_price_ps;
	/* Below page-sized cards, while the twins are on: a block of
	 * objects under one line whose live objects overlap this many of
	 * its 64 lines or more is better left unswept until the next
	 * collection (fga_hold_lines); 0: never (the default). */
	unsigned hold;
	/* Static roots (fga_roots_end): track the collector's root ranges
	 * outside the heap, so that a partial collection scans only their
	 * pages written since the last retrieval; 0: every root page reads
	 * dirty (fga_root_dirty), as without the calls. */
	int roots;
	/* New fields go here, at the end: fga_create takes a config as
	 * small as one ending before hold (its later fields read as 0). */
} fga_config;

enum fga_twin_form { FGA_TWIN_COPY = 0, FGA_TWIN_DIGEST };

#define FGA_CONFIG_INIT                                                     \
	{                                                                   \
		.size = sizeof(fga_config), .name = "fgvm adapter",         \
		.exempt = 1, .preclean = 1, .roots = 1                      \
	}

/* Read the adapter's knobs from the environment, PREFIX being e.g.
 * "FG_BOEHM": PREFIX_TWINS=sticky|adaptive|hot|none,
 * PREFIX_TWIN_CAP=BYTES|N%, PREFIX_TWIN_FORM=copy|digest, PREFIX_EXEMPT=0, PREFIX_PRECLEAN=0, PREFIX_HOT=N, PREFIX_HOLD=N, PREFIX_ROOTS=0,
 * PREFIX_CHECK=1|abort, PREFIX_AUTO_LOG=1, PREFIX_AUTO_PRICE=PS: the
 * toolkit's table's
 * templates FG_<ADAPTER>_*, with its grammars (fg.h: fg_env_get; a flag
 * is 1/yes/on/true or 0/no/off/false).  A bad value is reported on
 * stderr and c's value kept.  FG_BACKEND and FG_CARD are read by
 * fga_create (when c->backend and c->card leave them open).  Returns 0,
 * or -EINVAL for a NULL argument. */
FGA_API int fga_config_env(fga_config *c, const char *prefix);

/* Start tracking (no section yet).  Returns 0, or a negative errno (bad
 * block size, no backend, a bad FG_CARD, ...: printed and kept). */
FGA_API int fga_create(const fga_config *c, fga **out);
/* Stop tracking; sections are unregistered, the memory freed.  NULL ok. */
FGA_API void fga_destroy(fga *f);

/* A heap section: registered with the tracker.  Its lines read dirty
 * until the first retrieval.  A section the tracker refuses reads dirty
 * for ever (sound; printed).  Returns 0, or -ENOMEM (no memory for the
 * instance's own tables: the section is not known, and the collector
 * must not rely on its lines). */
FGA_API int fga_add_section(fga *f, void *start, size_t bytes);

/* A section given back (munmap'd by the collector): unregistered, its
 * lines forgotten.  START and BYTES as added.  Returns 0, or -ENOENT (no
 * such section).  May free memory (the toolkit's fg_unregister). */
FGA_API int fga_remove_section(fga *f, void *start, size_t bytes);

/* Before the world stops (the collector's lock held): a retrieval whose
 * re-protection and comparing run while the program runs; the retrieval
 * in the pause then covers only the gap. */
FGA_API void fga_preclean(fga *f);
/* World stopped: the lines written since the last retrieval (plus the
 * preclean's) become the lines fga_block_lines returns, until the next
 * retrieval.  A new epoch starts. */
FGA_API void fga_retrieve(fga *f);
/* World stopped, for a collector that writes into the heap in its pause
 * and wants those writes left out (Racket: the pause ends with
 * fga_retrieve, whose lines it ignores): the lines written since the last
 * retrieval, read as fga_retrieve would read them, but without starting a
 * new interval.  Nothing is re-protected, so the collector's own writes
 * until that fga_retrieve cost no fault; that retrieval reports these
 * lines again.  It leaves alone the sections in which the peek found
 * nothing and which the instance has not named to the tracker since
 * (fga_blocks_reused, fga_blocks_unwatched, ...: FG_COLLECT_AFTER_PEEK, a
 * system call saved a clean section): what the collector wrote there
 * unannounced reads dirty at the next peek instead, except in blocks
 * watched again since the peek (fga_blocks_unwatched(.., 0): the
 * collector protecting pages it wrote in the pause), whose sections that
 * retrieval re-protects, so that those writes are never reported
 * (stats.peek_named).  Under the check
 * (fga_config.check) that retrieval only takes its copy: the peek's
 * check saw everything written before the pause.  Returns 1, or 0 where
 * the backend cannot read without
 * resetting (no FG_CAP_PEEK: mprotect, soft-dirty), or after
 * fga_preclean: then it did an fga_retrieve. */
FGA_API int fga_peek(fga *f);
/* The lines of the block at BLOCK (any address inside a block). */
FGA_API fga_lines fga_block_lines(fga *f, const void *block);

/* Static roots: memory outside the heap that the collector scans for
 * pointers at every collection (a program's and its libraries' data
 * segments, ranges the program registered).  Where the collector can scan
 * only the root pages written since the last retrieval (Boehm's partial
 * collections), the instance tracks them, at page precision, with a
 * tracker of their own on a backend that sees every write there without
 * protecting anything (FG_CAP_KERNEL_WRITES and FG_CAP_PRIVATE_FILE, not
 * FG_CAP_PROTECTS: uffd-async); elsewhere, or with fga_config.roots 0,
 * every root page reads dirty.
 *
 * Before the world stops, with the collector's lock held (the calls
 * allocate and register): fga_roots_begin, fga_roots_add for each root
 * range the collector holds now, fga_roots_end.  Ranges new since the
 * last fga_roots_end are registered and read dirty at the next
 * retrieval; ranges gone are unregistered.  Ranges of fewer than four
 * pages are left untracked, a scan fewer each a retrieval (tracking them
 * too gained 6 % on a program bound by its roots and nothing measurable
 * on the Guile set: bench/RESULTS.md, 2026-12-08).
 * fga_retrieve, with the world stopped, retrieves the roots too.  Then
 * fga_root_dirty(f, page) (no malloc, no system call) says whether the
 * page at PAGE may have been written since the retrieval before: 1 for
 * a page of no tracked range (new, refused, too small, unknown), 1 for a
 * written one, 0 for a clean one.  Sound for a collector whose marks
 * persist between partial collections: a clean root page holds only
 * pointers that an earlier collection saw.  Pinned-page I/O into root
 * memory (O_DIRECT, io_uring fixed buffers) is not seen (fg.h); no known
 * program puts the only reference to a heap object there that way. */
FGA_API void fga_roots_begin(fga *f);
FGA_API void fga_roots_add(fga *f, const void *lo, const void *hi);
FGA_API void fga_roots_end(fga *f);
FGA_API int fga_root_dirty(fga *f, const void *page);

/* After fga_retrieve: visit(arg, block, lines) for every block with a
 * dirty line, in address order; for collectors that keep lists of
 * modified pages rather than asking block by block (Racket's
 * modified_next).  Returns the number of blocks visited.  No malloc. */
FGA_API size_t fga_for_each_dirty(fga *f,
				  void (*visit)(void *arg, void *block,
						fga_lines lines),
				  void *arg);

/* The collector marked (or will mark) with the program running: the next
 * retrieval reads written pages whole (DIFF compares with what it saw at
 * the epoch start, which a concurrent mark did not). */
FGA_API void fga_concurrent_mark(fga *f);
/* The collection is over, the world running.  WROTE_AFTER: the collector
 * itself wrote into the heap or scanned objects after the retrieval,
 * with the world running (Boehm: finalization).  Then what was written
 * since the retrieval reads dirty whole at the next one. */
FGA_API void fga_collection_done(fga *f, int wrote_after);

/* Blocks returned to the collector's free lists (exempted: unwatched
 * until reused).  The first free of a section just added (the collector
 * handing a new section to its free lists) is not exempted.  Neighbours
 * freed one call after another are exempted in the tracker by one call,
 * made before the instance next asks the tracker anything (a system call
 * and a TLB flush saved a block: fga.c, free_later). */
FGA_API void fga_blocks_freed(fga *f, void *start, size_t bytes);
#define FGA_BLOCK_NEW 1	    /* handed out empty: nothing live in it */
#define FGA_BLOCK_PTRFREE 2 /* its objects hold no pointers */
/* Blocks about to be filled (FGA_BLOCK_* flags).  Without
 * FGA_BLOCK_NEW (a sweep rebuilding a live block's free list), a block
 * next to the last one so handed out (at most two blocks away) makes the
 * instance un-protect a window of the blocks beyond it too, doubling up
 * to 64 while the collector keeps on in that direction: they read as
 * written at the next retrieval, whether reused or not (fga.c,
 * reuse_ahead).  With FGA_BLOCK_NEW, on an instance that exempts free
 * blocks (fga_config.exempt), blocks that were not exempt (a new
 * section's, carved in order) do the same in a stream of their own,
 * whose windows read dirty whole (fg_mark_dirty), as a fresh block
 * does. */
FGA_API void fga_blocks_reused(fga *f, void *start, size_t bytes,
			       unsigned flags);

/* Blocks the collector rescans at every collection whatever was written
 * (Racket 3m: a medium or big old page holding pointers to younger
 * objects, which its mprotect barrier leaves un-protected), so watching
 * them only costs faults and re-protection.  With unwatched != 0 the
 * tracker leaves them out (fg_set_exempt): writing them costs nothing
 * after one fault, and they read whole at every peek and retrieval.  With
 * unwatched == 0 the collector wants them watched again (Racket: it would
 * write-protect them now): those it had unwatched read whole at the next
 * retrieval, the first that watches them, and are tracked as any block
 * from then on.  Blocks it did not unwatch are left as they are, so
 * naming a range twice costs a walk over its blocks, no system call;
 * after fga_peek their sections are re-protected by the retrieval that
 * ends the pause (fga_peek).
 * Any card size: under DIFF a block's twin is as old as its unwatching,
 * so a block watched again reads whole at that retrieval whatever the
 * comparison finds (tests/test_fga: contract_64_unwatched).  Returns 0;
 * -ENOTSUP on an instance that exempts or heats blocks itself
 * (fga_config.exempt, .hot), where nothing changes (sound: the blocks
 * stay watched); -ENOMEM (the same). */
FGA_API int fga_blocks_unwatched(fga *f, void *start, size_t bytes,
				 int unwatched);

/* In the child after fork (single-threaded there): a new tracker over the
 * same sections; everything reads dirty once. */
FGA_API void fga_fork_child(fga *f);

/* The backend makes pages non-writable: the collector must let the
 * program's writes fault through (Boehm: its protection_needs). */
FGA_API int fga_protects(const fga *f);
FGA_API const char *fga_backend(const fga *f);
FGA_API size_t fga_card_size(const fga *f);
/* 1 while the card size is FGA_CARD_AUTO's to choose (fga_card_size then
 * says 64, whether the twins are on or off); else 0. */
FGA_API int fga_card_auto(const fga *f);
/* fga_config.block, as created. */
FGA_API size_t fga_block_size(const fga *f);
/* Change the card size at the next retrieval; 0 or a negative errno.
 * Under FGA_CARD_AUTO it ends auto's choice: the twins are then as at
 * that size from the start. */
FGA_API int fga_set_card_size(fga *f, size_t bytes);
/* For the collector's sweep, once a collection: config.hold while lines
 * are read finer than a page (DIFF with twins on; not FGA_CARD_AUTO with
 * its twins off, not mprotect's whole pages), else 0.  A block of small
 * objects whose live objects overlap that many of its 64 lines or more
 * is then not swept for reuse until the next collection: its free slots
 * would be filled by new objects, each making a line of old ones dirty,
 * to be rescanned.  Memory for fewer pushes: off by default. */
FGA_API unsigned fga_hold_lines(const fga *f);
/* The instance's last error; NULL: why the calling thread's last
 * fga_create failed. */
FGA_API const char *fga_last_error(const fga *f);
FGA_API fg_tracker *fga_tracker(const fga *f);

/* I/O the toolkit cannot see (toolkit/fg.h, fg_io_begin): the range
 * reads dirty while it is in flight and once after. */
FGA_API int fga_io_begin(fga *f, void *addr, size_t len);
FGA_API int fga_io_end(fga *f, int io);

typedef struct fga_stats {
	size_t size;		     /* sizeof(fga_stats), by the caller */
	unsigned long collections;   /* retrievals */
	unsigned long dirty_pages;   /* pages the backend reported written */
	unsigned long dirty_bytes;   /* bytes of dirty cards reported */
	unsigned long faults;	     /* first-write faults */
	unsigned long whole_epochs;  /* retrievals after concurrent marking */
	double retrieve_ms_total;    /* in fga_retrieve */
	double retrieve_ms_max;
	double preclean_ms_total;    /* in fga_preclean */
	double finish_ms_total;	     /* in fga_collection_done */
	unsigned long finish_bytes;  /* written after a retrieval with
					wrote_after: read whole next time */
	unsigned long exempted_blocks;
	unsigned long watched_blocks; /* young blocks watched again */
	unsigned long hot_blocks;    /* blocks found hot (config.hot) */
	unsigned long auto_off;	     /* FGA_CARD_AUTO: twins turned off */
	unsigned long auto_on;	     /* ... and on again */
	unsigned long missed;	     /* check: changed lines not reported */
	unsigned long peeks;	     /* fga_peek calls that peeked (their
					time is in retrieve_ms_*) */
	unsigned long auto_full;     /* FGA_CARD_AUTO: twins found to pay
					(sparse writes), the cap raised */
	unsigned long reused_blocks; /* handed out again with live objects
					(fga_blocks_reused, not NEW) */
	unsigned long reuse_calls;   /* tracker calls that un-protected
					them (with readahead: fewer) */
	unsigned long reuse_ahead;   /* blocks un-protected ahead of their
					reuse (some never reused) */
	unsigned long exempt_calls;  /* tracker calls that exempted the
					exempted_blocks (neighbours freed
					one after another: one call) */
	unsigned long fresh_blocks;  /* handed out fresh (FGA_BLOCK_NEW)
					while watched: a new section's */
	unsigned long fresh_calls;   /* tracker calls that un-protected
					them (with readahead: fewer) */
	unsigned long fresh_ahead;   /* blocks un-protected ahead of being
					handed out fresh */
	unsigned long unwatched_blocks; /* fga_blocks_unwatched: left out */
	unsigned long rewatched_blocks; /* ... and watched again */
	unsigned long peek_named;    /* sections named to the tracker
					because blocks in them were watched
					again after a peek */
	unsigned long roots_tracked; /* static root ranges tracked now */
	unsigned long root_pages;    /* ... their pages */
	unsigned long roots_refused; /* ranges the tracker refused (dirty) */
	unsigned long root_asked;    /* fga_root_dirty calls */
	unsigned long root_clean;    /* ... answered clean */
} fga_stats;
FGA_API int fga_get_stats(const fga *f, fga_stats *out);

/* One line on OUT: what the adapter and the toolkit did (RESCANNED and
 * RESCANNED_PAGE: the collector's counters, as in fga_config). */
FGA_API void fga_print_stats(const fga *f, FILE *out,
			     unsigned long long rescanned,
			     unsigned long long rescanned_page);
/* The check's verdict, and FGA_CARD_AUTO's summary. */
FGA_API void fga_print_check(const fga *f, FILE *out);

#ifdef __cplusplus
}
#endif
#endif /* FGA_H */
