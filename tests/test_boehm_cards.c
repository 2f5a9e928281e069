/* test_boehm_cards.c - the adapter's libgc.so.1 keeps every object that is
 * still referenced, whatever card its reference was written in.
 *
 * Linked with -lgc against the adapter's library.  Each scenario runs once
 * per backend (uffd-async, uffd-sync, mprotect) and card size (64, 256,
 * 4096, and FG_CARD unset: the adapter's default, auto), in incremental
 * (generational) mode: a partial collection rescans
 * only the marked objects that overlap dirty cards, so a write the adapter
 * misses, or a card it maps to the wrong part of an object, leaves a young
 * object referenced only from an old one unmarked, and it is freed.
 *
 * Every young object carries its id and magic words, and a finalizer that
 * records the id: a referenced object must have its magic intact, be the
 * start of a live heap object (GC_base) and never have been finalized.
 * Finalization is the precise detector (the collector found the object
 * unreachable); the magic words catch a freed object's reuse.  Garbage of
 * the same sizes, filled with 0xa5, is allocated between checks, so that
 * collections happen and freed memory is reused.
 *
 *   straddle     old objects of many sizes (within a block, and large ones
 *                over several pages); the only pointers to young objects
 *                are stored past a 64-byte line, past a card boundary, on
 *                each later page and in the last word of the requested
 *                size (Boehm never scans the last word of GC_size());
 *   bigarray     a 2 MiB pointer array (conservatively scanned) whose
 *                far-apart elements are replaced between and during
 *                collections;
 *   manylines    a 16 MiB pointer array with 16000 elements replaced
 *                a round, more dirty lines than the mark stack holds: no
 *                object lost, no mark stack overflow, and at cards below
 *                a page the array not pushed whole;
 *   unmap        the same in old objects allocated from memory that the
 *                collector unmapped (GC_gcollect_and_unmap) and reused;
 *   roots        stores into static data and two GC_add_roots() regions
 *                (one added halfway), which the adapter tracks (patch 4:
 *                a partial collection scans only their written pages);
 *   weak         each young object also has a disappearing link, while
 *                links on garbage are registered and unregistered (the
 *                collector's own link table changes, as under Guile);
 *   relink       a link's object dies, the collector unlinks and frees
 *                its entry, the program registers the link again (same
 *                entry, same chain head as at the epoch start): the
 *                entry must stay marked;
 *   aba          with marking continued while the program runs (a 1 ns
 *                time limit), a reference moves from an old object to
 *                another and back: the memory is as at the epoch start,
 *                yet it must read dirty (one marker thread; aba_parallel:
 *                Boehm's default number);
 *   atomic       GC_MALLOC_ATOMIC blocks keep their bytes, and objects
 *                referenced only from them are collected (not scanned);
 *   threads      four threads (GC_pthread_create) replace elements of
 *                their tables while the main thread collects;
 *   fork         a child verifies, allocates and collects, and exits 0;
 *                the parent goes on, correct;
 *   pipe_ptr     read(2) from a pipe writes the only pointer to a young
 *                object into old GC_MALLOC memory: no EFAULT, and the
 *                kernel's write is seen;
 *   pipe_atomic  read(2) into GC_MALLOC_ATOMIC memory, bytes intact;
 *                with the mprotect backend both pipe tests are a skip
 *                with the reason when the kernel gets EFAULT;
 *   pinned_ptr   io_uring READ_FIXED (into buffers registered, so pinned,
 *                once) writes the only pointer to a young object into old
 *                memory, announced with GC_fg_io_begin/GC_fg_io_end;
 *                FG_TEST_UNANNOUNCED=1 leaves that out and shows the
 *                objects lost;
 *   offheap     an object whose mark procedure marks pointers kept
 *                outside the heap (as Guile's threads mark their VM
 *                stacks): the object never changes, what it marks does;
 *   exempt_*     freed blocks are exempted by default, not with a pause
 *                target (GC_PAUSE_TIME_TARGET), unless FG_BOEHM_EXEMPT=1;
 *   io_lock      GC_fg_io_begin from one thread waits while another
 *                holds the allocation lock (the adapter's instance is
 *                used under it);
 *   selftest_detects_missed_writes
 *                straddle with every write missed (below) must fail.
 *
 * The collector is started in each test (Criterion runs every test in a
 * process of its own), after FG_BACKEND, FG_CARD and GC_ENABLE_INCREMENTAL
 * are set.  On a libgc without GC_fg_backend (stock Boehm) the tests are
 * skipped, unless FG_BOEHM_ALLOW_STOCK=1: then they run on Boehm's own
 * dirty bits (to check the tests themselves; pipe_ptr then fails with
 * EFAULT, as Boehm's MPROTECT_VDB does).  FG_BOEHM_SELFTEST=1 runs them on
 * Boehm's manual VDB with no write reported: every scenario but roots,
 * atomic and pipe_atomic must then fail.  Random choices print their
 * seed; FG_SEED=N replays one.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* config.h defines it in the autotools build */
#endif
#define GC_THREADS /* pthread_create is GC_pthread_create */
#include <gc.h>
#include <gc/gc_mark.h> /* GC_enumerate_reachable_objects_inner */

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fg.h"
#include "oracle.h"
#include "../adapters/boehm/gc_fg.h" /* struct GC_fg_stats */

#define TIMEOUT 180
#define KiB ((size_t)1024)
#define MiB (1024 * KiB)
#define MAGIC 0x5a17c0de00000000u
#define MAX_IDS (4u << 20)
#define SHOW 5 /* failures described per test */

/* ---- the collector under test ---- */

static const char *cur_backend;
static size_t cur_card;
static char cur_cardname[32]; /* "64", ..., or "auto" */
static bool selftest; /* manual VDB, writes not reported */

typedef const char *(*str_fn)(void);
typedef size_t (*size_fn)(void);
typedef unsigned long (*ulong_fn)(void);

/* Start the collector in incremental mode on this backend and card;
 * markers: the number of marker threads (0: Boehm's default, one per
 * CPU; 1: no parallel marking, so that incremental marking interleaves
 * with the test's own stores at a fine grain). */
static void start_gc(const char *backend, size_t card, unsigned markers)
{
	str_fn fg_backend;
	size_fn fg_card;
	char cs[32];
	const char *st = getenv("FG_BOEHM_SELFTEST");

	ORC_REQUIRE_BACKEND_NAMED(backend);
	cr_assert(!GC_is_init_called(),
		  "the collector was started before the test chose its backend");
	cur_backend = backend;
	selftest = st && *st && strcmp(st, "0");
	setenv("FG_BACKEND", backend, 1);
	if (card) {
		snprintf(cs, sizeof cs, "%zu", card);
		setenv("FG_CARD", cs, 1);
	} else {
		/* The adapter's default, auto: 64-byte cards while the
		 * twins pay, page precision while they do not. */
		unsetenv("FG_CARD");
	}
	snprintf(cur_cardname, sizeof cur_cardname, "%s", card ? cs : "auto");
	card = card ? card : 64;
	cur_card = card;
	setenv("FG_QUIET", "1", 1);
	setenv("GC_ENABLE_INCREMENTAL", "1", 1);
	GC_set_handle_fork(1);
	if (markers)
		GC_set_markers_count(markers);
	if (selftest)
		GC_set_manual_vdb_allowed(1);
	GC_INIT();
	GC_enable_incremental();
	GC_allow_register_threads();
	cr_assert(GC_is_incremental_mode(),
		  "incremental mode is off after GC_enable_incremental() "
		  "(FG_BACKEND=%s FG_CARD=%s)",
		  backend, getenv("FG_CARD") ? getenv("FG_CARD") : "unset");
	fg_backend = (str_fn)dlsym(RTLD_DEFAULT, "GC_fg_backend");
	fg_card = (size_fn)dlsym(RTLD_DEFAULT, "GC_fg_get_card_size");
	if (selftest) {
		cr_assert(GC_get_manual_vdb_allowed());
		cr_log_warn("FG_BOEHM_SELFTEST: Boehm's manual VDB, no write "
			    "reported: this test must fail");
	} else if (!fg_backend) {
		const char *allow = getenv("FG_BOEHM_ALLOW_STOCK");

		if (!allow || !*allow || !strcmp(allow, "0"))
			cr_skip_test("the libgc.so.1 this test runs on has no "
				     "GC_fg_backend: not the fgvm adapter "
				     "(FG_BOEHM_ALLOW_STOCK=1 runs the test on it "
				     "anyway)");
		cr_log_warn("stock libgc (FG_BOEHM_ALLOW_STOCK): Boehm's own "
			    "dirty bits, FG_BACKEND and FG_CARD mean nothing");
	} else {
		const char *b = fg_backend();

		cr_assert(b && !strcmp(b, backend),
			  "GC_fg_backend() = %s after GC_enable_incremental() "
			  "with FG_BACKEND=%s",
			  b ? b : "NULL", backend);
		cr_assert(fg_card, "the adapter has no GC_fg_get_card_size");
		cr_assert_eq(fg_card(), card, "GC_fg_get_card_size() = %zu with "
			     "FG_CARD=%s (want %zu)",
			     fg_card(),
			     getenv("FG_CARD") ? getenv("FG_CARD") : "unset",
			     card);
	}
}

static void log_gc_stats(const char *what, GC_word gc0)
{
	ulong_fn rescanned = (ulong_fn)dlsym(RTLD_DEFAULT,
					     "GC_fg_get_bytes_rescanned");

	cr_log_info("%s (%s, card %s): %lu collections, %lu bytes rescanned, "
		    "heap %zu KiB",
		    what, cur_backend, cur_cardname,
		    (unsigned long)(GC_get_gc_no() - gc0),
		    rescanned ? rescanned() : 0UL, GC_get_heap_size() / KiB);
}

/* ---- young objects: id, magic, finalizer ---- */

static _Atomic unsigned char *finalized; /* by id; mmap'd, not scanned */
static _Atomic uint64_t next_id = 1;	 /* 0: no object */

/* First failure messages, from any thread. */
static _Atomic unsigned long failures;
static char first_failures[SHOW][512];
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

static void failure(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void failure(const char *fmt, ...)
{
	unsigned long n = atomic_fetch_add(&failures, 1);
	va_list ap;

	if (n >= SHOW)
		return;
	pthread_mutex_lock(&fail_lock);
	va_start(ap, fmt);
	vsnprintf(first_failures[n], sizeof first_failures[n], fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&fail_lock);
}

static void assert_no_failures(const char *what)
{
	unsigned long n = atomic_load(&failures);

	if (n == 0)
		return;
	for (unsigned long i = 0; i < n && i < SHOW; i++)
		cr_log_error("%s", first_failures[i]);
	cr_assert_fail("%s (%s, card %s): %lu referenced objects lost or "
		       "corrupted; first: %s",
		       what, cur_backend, cur_cardname, n, first_failures[0]);
}

static void on_finalize(void *obj, void *id)
{
	(void)obj;
	atomic_store(&finalized[(uintptr_t)id], 1);
}

static void ids_init(void)
{
	if (!finalized) {
		void *p = mmap(NULL, MAX_IDS, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		cr_assert(p != MAP_FAILED, "mmap: %s", strerror(errno));
		finalized = p;
	}
}

/* A young object of bytes (>= 32) with a finalizer; NULL (and a failure)
 * if allocation fails.  Its words: MAGIC^id, id, nwords, small integers,
 * ~(MAGIC^id).  None of them looks like a heap address. */
static __attribute__((noinline)) uint64_t *young(size_t bytes)
{
	uint64_t id = atomic_fetch_add(&next_id, 1);
	size_t n = bytes / 8;
	uint64_t *y;

	if (id >= MAX_IDS) {
		failure("more than %u young objects: raise MAX_IDS", MAX_IDS);
		return NULL;
	}
	y = GC_MALLOC(n * 8);
	if (!y) {
		failure("GC_MALLOC(%zu) returned NULL", n * 8);
		return NULL;
	}
	y[0] = MAGIC ^ id;
	y[1] = id;
	y[2] = n;
	for (size_t i = 3; i + 1 < n; i++)
		y[i] = (id << 12) | i;
	y[n - 1] = ~(MAGIC ^ id);
	GC_REGISTER_FINALIZER_NO_ORDER(y, on_finalize, (void *)(uintptr_t)id,
				       NULL, NULL);
	return y;
}

/* Whether y is the live young object id; if not, a failure naming where
 * its reference was (printf-style). */
static bool check_young(const uint64_t *y, uint64_t id, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static bool check_young(const uint64_t *y, uint64_t id, const char *fmt, ...)
{
	char where[256], why[256];
	va_list ap;
	void *base;

	if (y == NULL) {
		snprintf(why, sizeof why, "the reference to young object %" PRIu64
			 " reads NULL", id);
		goto bad;
	}
	base = GC_base((void *)y);
	if (base != y) {
		snprintf(why, sizeof why,
			 "young object %" PRIu64 " at %p is not a live heap "
			 "object (GC_base = %p): freed%s",
			 id, (void *)y, base,
			 atomic_load(&finalized[id]) ? ", finalized" : "");
		goto bad;
	}
	if (atomic_load(&finalized[id])) {
		snprintf(why, sizeof why,
			 "young object %" PRIu64 " at %p was finalized although "
			 "referenced (the collector found it unreachable)",
			 id, (void *)y);
		goto bad;
	}
	if (y[0] != (MAGIC ^ id) || y[1] != id || y[2] < 4 ||
	    y[2] * 8 > GC_size((void *)y) || y[y[2] - 1] != ~(MAGIC ^ id)) {
		snprintf(why, sizeof why,
			 "young object %" PRIu64 " at %p overwritten (freed and "
			 "reused?): words %#" PRIx64 " %#" PRIx64 " %#" PRIx64,
			 id, (void *)y, y[0], y[1], y[2]);
		goto bad;
	}
	return true;
bad:
	va_start(ap, fmt);
	vsnprintf(where, sizeof where, fmt, ap);
	va_end(ap);
	failure("%s; referenced from %s", why, where);
	return false;
}

/* ---- random numbers, garbage, collections ---- */

static uint64_t seed;
static _Thread_local orc_rng rng;
static _Atomic unsigned rng_streams;

static uint64_t rnd(uint64_t n)
{
	if (rng.s[0] == 0 && rng.s[1] == 0 && rng.s[2] == 0 && rng.s[3] == 0)
		orc_rng_init(&rng, seed + 0x1000 * atomic_fetch_add(&rng_streams, 1));
	return orc_below(&rng, n);
}

static void seed_test(const char *name)
{
	char tag[160];

	snprintf(tag, sizeof tag, "boehm_cards::%s_%s_%s", name, cur_backend,
		 cur_cardname);
	seed = orc_seed(tag);
	memset(&rng, 0, sizeof rng);
}

/* Short-lived objects filled with 0xa5, mostly the sizes of the young
 * objects, some larger. */
static void garbage(size_t bytes)
{
	for (size_t done = 0; done < bytes;) {
		size_t sz = rnd(16) == 0 ? 4 * KiB + rnd(60 * KiB)
					 : 32 + 16 * rnd(32);
		void *p = GC_MALLOC(sz);

		if (!p) {
			failure("GC_MALLOC(%zu) returned NULL", sz);
			return;
		}
		memset(p, 0xa5, sz);
		done += sz;
	}
}

/* Allocate until n more collections completed (or 1 GiB). */
static void collections(unsigned n)
{
	GC_word g0 = GC_get_gc_no();

	for (size_t total = 0; GC_get_gc_no() < g0 + n && total < 1024 * MiB;
	     total += 256 * KiB)
		garbage(256 * KiB);
}

/* Finish an incremental collection in progress. */
static void finish_collection(void)
{
	for (int i = 0; i < 100000 && GC_collect_a_little(); i++)
		;
}

/* Overwrite the stack below us, so that old copies of pointers there do
 * not keep objects alive (that would only weaken the tests). */
static __attribute__((noinline)) void scrub_stack(void)
{
	volatile char buf[64 * 1024];

	memset((char *)buf, 0, sizeof buf);
}

static void settle(void)
{
	scrub_stack();
	GC_invoke_finalizers();
}

/* A round's shape in the scenarios: every third round (r % 3 == 1) the
 * stores run while an incremental collection is in progress (started
 * before, finished after them); then two collections and a settle. */
static void round_begin(unsigned r)
{
	if (r % 3 == 1)
		GC_start_incremental_collection();
}

static void round_end(unsigned r)
{
	if (r % 3 == 1)
		finish_collection();
	collections(2);
	settle();
}

/* Now and then, some marking among the stores. */
static void maybe_mark_a_little(void)
{
	if (rnd(64) == 0)
		GC_collect_a_little();
}

/* At least min collections happened since gc0, or the test tested
 * nothing. */
static void assert_collected(const char *what, GC_word gc0, unsigned min)
{
	cr_assert(GC_get_gc_no() - gc0 >= min,
		  "%s: only %lu collections happened (want >= %u): the test "
		  "did not exercise the collector",
		  what, (unsigned long)(GC_get_gc_no() - gc0), min);
}

/* ---- straddle: references past card boundaries ---- */

#define MAX_SLOTS 64

struct old {
	uint64_t *o;	     /* the old object (also in olds_root) */
	size_t bytes;	     /* as requested: Boehm does not scan the last
				word of GC_size() (the byte past the end) */
	unsigned nslots;
	uint32_t slot[MAX_SLOTS];   /* word indexes */
	uint64_t id[MAX_SLOTS];	    /* young object expected there */
};

/* Static data keeps the objects; volatile, or the compiler drops the
 * stores to arrays the program never reads. */
static uint64_t *volatile olds_root[4096];
static struct old *olds;	  /* malloc'd: not scanned */
static size_t nolds;

static void add_slot(struct old *d, size_t w)
{
	for (unsigned i = 0; i < d->nslots; i++)
		if (d->slot[i] == w)
			return;
	if (d->nslots < MAX_SLOTS && w < d->bytes / 8)
		d->slot[d->nslots++] = (uint32_t)w;
}

/* The word index of the first word at or past the next multiple of
 * `unit` after the object's start, or SIZE_MAX. */
static size_t past_boundary(const void *o, size_t bytes, size_t unit)
{
	uintptr_t a = (uintptr_t)o, b = (a / unit + 1) * unit;

	return b - a < bytes ? (b - a) / 8 : SIZE_MAX;
}

static void make_olds(size_t per_size)
{
	static const size_t sizes[] = {48,   80,   96,	 112,  144,  176,
				       208,  240,  272,	 336,  400,  464,
				       560,  688,  1008, 1360, 2032, 2720,
				       4096, 6000, 9000, 20000, 70000};
	size_t cap = sizeof olds_root / sizeof olds_root[0];

	/* Appends: a test may add old objects in several rounds. */
	cr_assert(nolds + sizeof sizes / sizeof sizes[0] * per_size <= cap);
	if (!olds) {
		olds = calloc(cap, sizeof *olds);
		cr_assert(olds);
	}
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
		for (size_t k = 0; k < per_size; k++) {
			struct old *d = &olds[nolds];
			size_t b;

			d->o = GC_MALLOC(sizes[s]);
			cr_assert(d->o, "GC_MALLOC(%zu)", sizes[s]);
			olds_root[nolds++] = d->o;
			d->bytes = b = sizes[s];
			add_slot(d, past_boundary(d->o, b, 64));
			add_slot(d, past_boundary(d->o, b, cur_card));
			for (size_t w = past_boundary(d->o, b, 4096);
			     w != SIZE_MAX && w < b / 8; w += 4096 / 8)
				add_slot(d, w);
			add_slot(d, b / 8 - 1);
			add_slot(d, 0);
		}
}

/* A fresh young object of bytes stored at *slot, its id at *id; false
 * (and a failure) if allocation failed. */
static bool put_young(uint64_t *slot, uint64_t *id, size_t bytes)
{
	uint64_t *y = young(bytes);

	if (!y)
		return false;
	*id = y[1];
	*slot = (uint64_t)(uintptr_t)y;
	return true;
}

/* Store a fresh young object in about half the slots; a few collection
 * steps in between, so that some stores land while a collection marks. */
static void store_youngs(struct old *set, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct old *d = &set[i];

		for (unsigned k = 0; k < d->nslots; k++) {
			if (rnd(2))
				continue;
			if (!put_young(&d->o[d->slot[k]], &d->id[k],
				       32 + 16 * rnd(24)))
				return;
			if (rnd(32) == 0)
				GC_collect_a_little();
		}
	}
}

static void verify_olds(struct old *set, size_t n, const char *when)
{
	for (size_t i = 0; i < n; i++) {
		struct old *d = &set[i];

		for (unsigned k = 0; k < d->nslots; k++)
			if (d->id[k])
				check_young((uint64_t *)(uintptr_t)d->o[d->slot[k]],
					    d->id[k],
					    "word %u (byte %u) of a %zu-byte old "
					    "object at %p (%s)",
					    d->slot[k], d->slot[k] * 8, d->bytes,
					    (void *)d->o, when);
	}
}

/* One round: stores (some during a collection), collections, check. */
static void straddle_round(unsigned r)
{
	char when[64];

	round_begin(r);
	store_youngs(olds, nolds);
	round_end(r);
	snprintf(when, sizeof when, "round %u", r);
	verify_olds(olds, nolds, when);
}

static void straddle(void)
{
	GC_word gc0;
	unsigned rounds = 24;

	seed_test("straddle");
	ids_init();
	make_olds(12);
	GC_gcollect(); /* the old objects are marked, their cards clean */
	GC_gcollect();
	gc0 = GC_get_gc_no();
	for (unsigned r = 0; r < rounds && !failures; r++) {
		straddle_round(r);
		if (r == rounds / 2)
			GC_gcollect();
	}
	log_gc_stats("straddle", gc0);
	assert_no_failures("straddle");
	assert_collected("straddle", gc0, rounds);
}

/* ---- unmap: old objects in memory the collector gave back ---- */

/* Each round frees megabytes of large garbage and returns the free blocks
 * to the kernel (GC_gcollect_and_unmap: madvise(MADV_DONTNEED) on Linux);
 * new old objects then come from that memory when the collector maps it
 * back, and references stored in them must be seen like any other. */
static void unmap(void)
{
	unsigned rounds = 6;
	GC_word gc0;

	seed_test("unmap");
	ids_init();
	GC_set_force_unmap_on_gcollect(1);
	gc0 = GC_get_gc_no();
	for (unsigned r = 0; r < rounds && !failures; r++) {
		char when[64];

		for (int i = 0; i < 256; i++) {
			void *p = GC_MALLOC(32 * KiB + rnd(32 * KiB));

			cr_assert(p);
			memset(p, 0xa5, 32 * KiB);
		}
		scrub_stack();
		GC_gcollect_and_unmap();
		make_olds(2);
		GC_gcollect();
		for (unsigned k = 0; k < 3; k++) {
			store_youngs(olds, nolds);
			collections(2);
		}
		settle();
		snprintf(when, sizeof when, "round %u, after unmapping", r);
		verify_olds(olds, nolds, when);
	}
	log_gc_stats("unmap", gc0);
	cr_log_info("unmap: %zu KiB unmapped at the end",
		    GC_get_unmapped_bytes() / KiB);
	assert_no_failures("unmap");
	assert_collected("unmap", gc0, rounds);
}

/* ---- bigarray: far-apart elements of a 2 MiB pointer array ---- */

/* One round of bigarray and manylines: `stores` random elements of the
 * n-element array root replaced by young objects of `sizes` sizes (ids
 * in expect, which is not scanned), then every element checked. */
static void array_round(void **root, uint32_t *expect, size_t n,
			unsigned stores, unsigned sizes, unsigned r)
{
	round_begin(r);
	for (unsigned i = 0; i < stores; i++) {
		size_t k = rnd(n);
		uint64_t *y = young(32 + 16 * rnd(sizes));

		if (!y)
			break;
		root[k] = y;
		expect[k] = (uint32_t)y[1];
		maybe_mark_a_little();
	}
	round_end(r);
	for (size_t k = 0; k < n; k++)
		if (expect[k])
			check_young(root[k], expect[k],
				    "element %zu (byte offset %zu) of the %zu KiB "
				    "array at %p (round %u)",
				    k, k * 8, n * 8 / KiB, (void *)root, r);
}

#define BIG_N (2 * MiB / 8)

static void **big_root;

static void bigarray(void)
{
	uint32_t *expect = calloc(BIG_N, sizeof *expect); /* ids, not scanned */
	unsigned rounds = 30, per_round = 256;
	GC_word gc0;

	cr_assert(expect);
	seed_test("bigarray");
	ids_init();
	big_root = GC_MALLOC(BIG_N * sizeof(void *));
	cr_assert(big_root, "GC_MALLOC(2 MiB)");
	for (unsigned i = 0; i < 2048; i++) {
		size_t k = rnd(BIG_N);
		uint64_t *y = young(32 + 16 * rnd(8));

		cr_assert(y);
		big_root[k] = y;
		expect[k] = (uint32_t)y[1];
	}
	GC_gcollect();
	GC_gcollect();
	gc0 = GC_get_gc_no();
	for (unsigned r = 0; r < rounds && !failures; r++) {
		array_round(big_root, expect, BIG_N, per_round, 8, r);
		if (r == rounds / 2)
			GC_gcollect();
	}
	log_gc_stats("bigarray", gc0);
	free(expect);
	assert_no_failures("bigarray");
	assert_collected("bigarray", gc0, rounds);
}

/* ---- manylines: more dirty lines than the mark stack holds ---- */

/* A 16 MiB pointer array with 16000 far-apart elements replaced between
 * two collections: about 16000 dirty lines, each pushed as a range of its
 * own, against a mark stack of 8192 entries (which an overflow does not
 * make Boehm grow in parallel mode).  The collector must keep every
 * referenced object, must not overflow its mark stack (then it rescans
 * every marked object), and at cards below a page must not push the array
 * whole (an earlier patch did both: pushed it whole when the stack was
 * empty, overflowed it when not, also at page precision, where the
 * array's dirty pages are 4096 runs).  The collector's log goes to a file
 * of its own (GC_LOG_FILE), read for "Mark stack overflow". */
#define MANY_N (16 * MiB / 8)
#define MANY_PER_ROUND 16000

static void **many_root;
static char many_log[64];

static void manylines_env(void)
{
	snprintf(many_log, sizeof many_log, "/tmp/fg-manylines-%d.log",
		 (int)getpid());
	unlink(many_log);
	setenv("GC_LOG_FILE", many_log, 1);
	setenv("GC_PRINT_STATS", "1", 1);
}

/* "Mark stack overflow" lines in the collector's log from byte *off on;
 * *off moves to its end. */
static unsigned log_overflows(long *off)
{
	FILE *f = fopen(many_log, "r");
	char line[512];
	unsigned n = 0;

	cr_assert(f, "no collector log at %s (GC_LOG_FILE)", many_log);
	fseek(f, *off, SEEK_SET);
	while (fgets(line, sizeof line, f))
		n += strstr(line, "Mark stack overflow") != NULL;
	*off = ftell(f);
	fclose(f);
	return n;
}

static void manylines(void)
{
	uint32_t *expect = calloc(MANY_N, sizeof *expect); /* not scanned */
	ulong_fn rescanned = (ulong_fn)dlsym(RTLD_DEFAULT,
					     "GC_fg_get_bytes_rescanned");
	unsigned rounds = 9, overflows;
	/* Where lines are read below a page: uffd backends (mprotect keeps
	 * no twins) at an explicit card (auto may turn its twins off). */
	bool lines = rescanned && cur_card < 4096 &&
		     strcmp(cur_cardname, "auto") &&
		     strcmp(cur_backend, "mprotect");
	unsigned long r0, r1;
	long off = 0;
	GC_word gc0;

	cr_assert(expect);
	seed_test("manylines");
	ids_init();
	many_root = GC_MALLOC(MANY_N * sizeof(void *));
	cr_assert(many_root, "GC_MALLOC(16 MiB)");
	GC_gcollect();
	GC_gcollect();
	(void)log_overflows(&off); /* the start-up's: Boehm's own business */
	gc0 = GC_get_gc_no();
	r0 = rescanned ? rescanned() : 0;
	for (unsigned r = 0; r < rounds && !failures; r++)
		array_round(many_root, expect, MANY_N, MANY_PER_ROUND, 4, r);
	r1 = rescanned ? rescanned() : 0;
	overflows = log_overflows(&off);
	log_gc_stats("manylines", gc0);
	cr_log_info("manylines (%s, card %s): %u mark stack overflows, %lu "
		    "bytes rescanned in %u rounds of %u stores",
		    cur_backend, cur_cardname, overflows, r1 - r0, rounds,
		    MANY_PER_ROUND);
	unlink(many_log);
	free(expect);
	assert_no_failures("manylines");
	assert_collected("manylines", gc0, rounds);
	if (selftest)
		return;
	/* Also at page precision: the array's 4096 dirty pages are 4096
	 * runs of lines. */
	cr_assert_eq(overflows, 0, "manylines (%s, card %s): %u mark stack "
		     "overflows while rescanning the array's dirty lines",
		     cur_backend, cur_cardname, overflows);
	if (!lines)
		return;
	/* Each round dirties at most MANY_PER_ROUND cards of the array,
	 * read by up to two collections (one in progress during the
	 * stores, then the next); the young objects are rescanned too, a
	 * few MiB at most.  Pushed whole, the array alone is 16 MiB a
	 * collection. */
	cr_assert_lt(r1 - r0,
		     rounds * (2 * MANY_PER_ROUND * cur_card + 4 * MiB),
		     "manylines (%s, card %s): %lu bytes rescanned in %u "
		     "rounds of %u stores: the 16 MiB array was pushed whole",
		     cur_backend, cur_cardname, r1 - r0, rounds,
		     MANY_PER_ROUND);
}

/* ---- roots: static data and GC_add_roots() ---- */

static void *static_slots[512];

/* A young object's only reference into *slot, its id into *id; false
 * when the ids ran out. */
static bool store_young(void **slot, uint64_t *id)
{
	uint64_t *y = young(48);

	if (!y)
		return false;
	*slot = y;
	*id = y[1];
	return true;
}

static void roots(void)
{
	/* 8 pages: tracked by the adapter (fga_roots_end: 4 or more). */
	size_t nreg = 4096;
	void **reg = aligned_alloc(4096, nreg * sizeof(void *));
	/* Added halfway: a root range new to the adapter reads dirty. */
	void **reg2 = aligned_alloc(4096, nreg * sizeof(void *));
	uint64_t *ids_reg2 = calloc(nreg, sizeof(uint64_t));
	uint64_t *ids_static = calloc(512, sizeof(uint64_t));
	uint64_t *ids_reg = calloc(nreg, sizeof(uint64_t));
	unsigned rounds = 20;
	GC_word gc0;

	cr_assert(reg && ids_static && ids_reg && reg2 && ids_reg2);
	memset(reg, 0, nreg * sizeof(void *));
	memset(reg2, 0, nreg * sizeof(void *));
	seed_test("roots");
	ids_init();
	GC_add_roots(reg, reg + nreg);
	GC_gcollect();
	gc0 = GC_get_gc_no();
	for (unsigned r = 0; r < rounds && !failures; r++) {
		if (r == rounds / 2)
			GC_add_roots(reg2, reg2 + nreg);
		if (r % 2)
			GC_start_incremental_collection();
		for (unsigned i = 0; i < 64; i++) {
			size_t k = rnd(512), k2 = rnd(nreg), k3 = rnd(nreg);

			if (!store_young(&static_slots[k], &ids_static[k]) ||
			    !store_young(&reg[k2], &ids_reg[k2]) ||
			    (r >= rounds / 2 &&
			     !store_young(&reg2[k3], &ids_reg2[k3])))
				break;
			if (rnd(16) == 0)
				GC_collect_a_little();
		}
		if (r % 2)
			finish_collection();
		collections(2);
		settle();
		for (size_t k = 0; k < 512; k++)
			if (ids_static[k])
				check_young(static_slots[k], ids_static[k],
					    "static_slots[%zu] (static data, round "
					    "%u)",
					    k, r);
		for (size_t k = 0; k < nreg; k++)
			if (ids_reg[k])
				check_young(reg[k], ids_reg[k],
					    "element %zu of a GC_add_roots() "
					    "region (round %u)",
					    k, r);
		for (size_t k = 0; k < nreg; k++)
			if (ids_reg2[k])
				check_young(reg2[k], ids_reg2[k],
					    "element %zu of a GC_add_roots() "
					    "region added in round %u (round %u)",
					    k, rounds / 2, r);
	}
	log_gc_stats("roots", gc0);
	GC_remove_roots(reg, reg + nreg);
	GC_remove_roots(reg2, reg2 + nreg);
	assert_no_failures("roots");
	assert_collected("roots", gc0, rounds);
	free(reg2);
	free(ids_reg2);
	free(reg);
	free(ids_static);
	free(ids_reg);
}

/* ---- weak: disappearing links ---- */

/* n zeroed link slots in a pointer-free block (a link must not keep its
 * object alive), then a full collection to start from. */
static void *link_slots(size_t n)
{
	void **v = GC_MALLOC_ATOMIC(n * sizeof *v);

	cr_assert(v, "GC_MALLOC_ATOMIC(%zu) returned NULL", n * sizeof *v);
	memset(v, 0, n * sizeof *v);
	GC_gcollect();
	return v;
}

/* Young objects referenced from old ones, each with a disappearing link
 * in a pointer-free block (the link must stay while the object is
 * referenced); meanwhile links on garbage are registered and
 * unregistered, so that the collector's own link table (heap objects it
 * writes into) changes in every cycle, as under Guile's weak tables. */
static void weak(void)
{
	unsigned rounds = 16;
	size_t nslots = 0, s = 0;
	uint64_t **links;
	GC_word gc0;

	seed_test("weak");
	ids_init();
	make_olds(6);
	for (size_t i = 0; i < nolds; i++)
		nslots += olds[i].nslots;
	links = link_slots(nslots);
	gc0 = GC_get_gc_no();
	for (unsigned r = 0; r < rounds && !failures; r++) {
		char when[64];

		round_begin(r);
		s = 0;
		for (size_t i = 0; i < nolds; i++) {
			struct old *d = &olds[i];

			for (unsigned k = 0; k < d->nslots; k++, s++) {
				uint64_t *y;

				if (rnd(2))
					continue;
				if (links[s])
					GC_unregister_disappearing_link(
						(void **)&links[s]);
				y = young(32 + 16 * rnd(8));
				if (!y)
					break;
				d->id[k] = y[1];
				d->o[d->slot[k]] = (uint64_t)(uintptr_t)y;
				links[s] = y;
				if (GC_GENERAL_REGISTER_DISAPPEARING_LINK(
					    (void **)&links[s], y) != GC_SUCCESS)
					failure("GC_general_register_disappearing"
						"_link failed");
				/* churn: links on garbage, some unregistered */
				for (int g = 0; g < 4; g++) {
					void **l = GC_MALLOC_ATOMIC(sizeof *l);
					void *x = GC_MALLOC(48);

					if (!l || !x)
						break;
					*l = x;
					GC_GENERAL_REGISTER_DISAPPEARING_LINK(l, x);
					if (rnd(2))
						GC_unregister_disappearing_link(l);
				}
				maybe_mark_a_little();
			}
		}
		round_end(r);
		snprintf(when, sizeof when, "round %u", r);
		verify_olds(olds, nolds, when);
		s = 0;
		for (size_t i = 0; i < nolds; i++)
			for (unsigned k = 0; k < olds[i].nslots; k++, s++)
				if (olds[i].id[k] &&
				    links[s] != (uint64_t *)(uintptr_t)olds[i]
							.o[olds[i].slot[k]])
					failure("the disappearing link to young "
						"object %" PRIu64 " (word %u of a "
						"%zu-byte old object) reads %p, want "
						"%p (%s)",
						olds[i].id[k], olds[i].slot[k],
						olds[i].bytes, (void *)links[s],
						(void *)(uintptr_t)olds[i]
							.o[olds[i].slot[k]],
						when);
	}
	log_gc_stats("weak", gc0);
	assert_no_failures("weak");
	assert_collected("weak", gc0, rounds);
}

/* ---- relink: the collector's own writes, undone by the program ---- */

/* When the object of a disappearing link dies, the collector (GC_finalize,
 * after it read the dirty bits and marked) unlinks the link's entry from
 * its hash chain and clears the entry's mark bit, so that it is reclaimed.
 * If the program then registers a link in the same bucket, the allocator
 * hands back the same entry, and the chain head holds again what it held
 * when the dirty bits were read: compared with the epoch start, its line
 * is clean, and the new entry (unmarked, referenced only from that line)
 * is freed while still linked.  Guile crashed on this in
 * GC_make_disappearing_links_disappear.  Writes made after the dirty bits
 * were read must read dirty whatever the value.  Each round: links on
 * objects that die, a collection, the same links on objects that live, a
 * collection; then every link's entry must be marked (the test looks for
 * it among the reachable objects), and the link still registered
 * (GC_unregister_disappearing_link returns 1) and pointing to its
 * object. */
#define NRELINK 4

static void *volatile relink_keep[NRELINK];

static __attribute__((noinline)) void relink_register(void **link, int j,
						      bool keep)
{
	void *y = GC_MALLOC(64);
	int rc;

	if (!y) {
		failure("GC_MALLOC(64) returned NULL");
		return;
	}
	memset(y, 0x5a, 64);
	*link = y;
	relink_keep[j] = keep ? y : NULL;
	rc = GC_GENERAL_REGISTER_DISAPPEARING_LINK(link, y);
	if (rc != GC_SUCCESS)
		failure("GC_general_register_disappearing_link(%p) = %d, want "
			"GC_SUCCESS (%d)",
			(void *)link, rc, GC_SUCCESS);
}

/* Whether the collector's entry for link is marked (survived the last
 * collection): found among the reachable objects by its first word, the
 * hidden link address (Boehm 8.2's struct disappearing_link). */
struct entry_search {
	GC_word hidden;
	bool found;
};

static void GC_CALLBACK find_entry(void *obj, size_t bytes, void *cd)
{
	struct entry_search *es = cd;

	if (bytes >= 3 * sizeof(GC_word) && *(GC_word *)obj == es->hidden)
		es->found = true;
}

static void *GC_CALLBACK search_entries(void *cd)
{
	GC_enumerate_reachable_objects_inner(find_entry, cd);
	return NULL;
}

static bool link_entry_marked(void **link)
{
	struct entry_search es = {GC_HIDE_POINTER(link), false};

	GC_call_with_alloc_lock(search_entries, &es);
	return es.found;
}

static void relink(void)
{
	unsigned rounds = 64, died = 0;
	void **links;
	GC_word gc0;

	seed_test("relink");
	links = link_slots(NRELINK);
	gc0 = GC_get_gc_no();
	for (unsigned r = 0; r < rounds && !failures; r++) {
		bool pending[NRELINK];

		for (int j = 0; j < NRELINK; j++) {
			relink_register(&links[j], j, false);
			pending[j] = true;
		}
		scrub_stack();
		/* Register again right after the collection that cleared
		 * the link (one in progress may finish first). */
		for (int c = 0; c < 4; c++) {
			collections(1);
			for (int j = 0; j < NRELINK; j++)
				if (pending[j] && links[j] == NULL) {
					died++;
					pending[j] = false;
					relink_register(&links[j], j, true);
				}
		}
		for (int j = 0; j < NRELINK; j++)
			if (pending[j]) { /* still referenced: start anew */
				GC_unregister_disappearing_link(&links[j]);
				relink_register(&links[j], j, true);
			}
		scrub_stack();
		collections(1);
		for (int j = 0; j < NRELINK; j++) {
			if (!link_entry_marked(&links[j]))
				failure("round %u: the collector's entry for "
					"disappearing link %d (to a live object) "
					"is unmarked after a collection: it is "
					"freed while linked",
					r, j);
			if (links[j] != relink_keep[j])
				failure("round %u: disappearing link %d reads %p, "
					"its live object is %p",
					r, j, links[j], relink_keep[j]);
			if (GC_unregister_disappearing_link(&links[j]) != 1)
				failure("round %u: disappearing link %d (to a live "
					"object) is no longer registered: its entry "
					"was freed while linked",
					r, j);
			relink_keep[j] = NULL;
		}
	}
	log_gc_stats("relink", gc0);
	cr_log_info("relink: %u of %u links' objects died as expected", died,
		    rounds * NRELINK);
	assert_no_failures("relink");
	assert_collected("relink", gc0, 2 * rounds);
	/* Objects from a thread-local free list may carry a mark from the
	 * collection that built it and outlive the next partial collection:
	 * some 15% die as intended, enough to have exercised it. */
	cr_assert(died >= rounds * NRELINK / 16,
		  "relink: only %u of %u objects died: the scenario did not "
		  "exercise the collector's unlinking",
		  died, rounds * NRELINK);
}

/* ---- aba: a reference moved away and back while the collector marks ---- */

/* With the program running between marking steps, what the collector
 * scanned is not what the memory held when the dirty bits were read (the
 * epoch start).  Each pair: old o holds the only reference to young y when
 * a collection starts (o written, so it is rescanned in this collection;
 * p clean, so it is not); then y moves to p and o reads NULL, some marking
 * steps run (scanning o: NULL), and y moves back.  o and p now hold what
 * they held at the epoch start, so a comparison with the epoch start
 * (DIFF precision) finds them clean, but the collector never saw y: the
 * writes must be reported (the adapter reports whole pages after such a
 * collection). */
#define NPAIRS 2048

static uint64_t *volatile aba_o[NPAIRS], *volatile aba_p[NPAIRS];

static void aba(void)
{
	uint64_t *ids = calloc(NPAIRS, sizeof *ids);
	unsigned rounds = 16, longest = 0, mid = 0;
	GC_word gc0;

	cr_assert(ids);
	seed_test("aba");
	ids_init();
	for (int i = 0; i < NPAIRS; i++) {
		aba_o[i] = GC_MALLOC(48);
		aba_p[i] = GC_MALLOC(48);
		cr_assert(aba_o[i] && aba_p[i]);
	}
	GC_gcollect();
	gc0 = GC_get_gc_no();
	/* One mark step per GC_collect_a_little; the moves back must land
	 * before the collection ends: the number of steps is drawn below the
	 * longest collection seen so far. */
	GC_set_rate(1);
	/* Boehm marks with the world stopped unless a collection exceeds
	 * its time limit (none by default with parallel marking): 1 ns
	 * makes every collection continue with the program running. */
	GC_set_time_limit_tv((struct GC_timeval_s){0, 1});
	for (unsigned r = 0; r < rounds && !failures; r++) {
		unsigned steps = (unsigned)rnd(longest + 1), k;
		GC_word g;

		/* o written in consecutive epochs (eager twins), p not */
		for (int e = 0; e < 3; e++) {
			for (int i = 0; i < NPAIRS; i++)
				aba_o[i][2]++;
			collections(1);
		}
		for (int i = 0; i < NPAIRS; i++) {
			uint64_t *y = young(48);

			if (!y)
				break;
			aba_o[i][0] = (uint64_t)(uintptr_t)y;
			ids[i] = y[1];
		}
		scrub_stack();
		g = GC_get_gc_no();
		GC_start_incremental_collection();
		for (int i = 0; i < NPAIRS; i++) {
			aba_p[i][0] = aba_o[i][0];
			aba_o[i][0] = 0;
		}
		for (k = 0; k < steps && GC_get_gc_no() == g; k++)
			GC_collect_a_little();
		if (GC_get_gc_no() == g)
			mid++; /* the moves back land during marking */
		for (int i = 0; i < NPAIRS; i++) {
			aba_o[i][0] = aba_p[i][0];
			aba_p[i][0] = 0;
		}
		for (; GC_get_gc_no() == g && k < 1000000; k++)
			GC_collect_a_little();
		if (k > longest)
			longest = k;
		collections(2);
		settle();
		for (int i = 0; i < NPAIRS; i++)
			if (ids[i])
				check_young((uint64_t *)(uintptr_t)aba_o[i][0],
					    ids[i],
					    "word 0 of old object %d, moved to "
					    "another and back during marking "
					    "(round %u, %u marking steps)",
					    i, r, steps);
	}
	log_gc_stats("aba", gc0);
	cr_log_info("aba: %u of %u rounds moved the references back during "
		    "marking; a collection took up to %u steps",
		    mid, rounds, longest);
	free(ids);
	assert_no_failures("aba");
	assert_collected("aba", gc0, rounds);
}

/* ---- atomic: pointer-free blocks ---- */

#define NATOMIC 96

static unsigned char *atomic_root[NATOMIC];

static __attribute__((noinline)) void hide_youngs_in(uint64_t *blk, size_t n,
						     uint64_t *first_id)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t *y = young(64);

		cr_assert(y);
		if (i == 0)
			*first_id = y[1];
		blk[i] = (uint64_t)(uintptr_t)y;
	}
}

static void atomic(void)
{
	unsigned char *shadow[NATOMIC];
	size_t len[NATOMIC];
	unsigned rounds = 20, nhidden = 512, gone = 0;
	uint64_t *hidden, first_id = 0;
	GC_word gc0;

	seed_test("atomic");
	ids_init();
	for (int i = 0; i < NATOMIC; i++) {
		len[i] = i % 3 == 0 ? 16 + rnd(200)
				    : i % 3 == 1 ? 1 * KiB + rnd(8 * KiB)
						 : 16 * KiB + rnd(240 * KiB);
		atomic_root[i] = GC_MALLOC_ATOMIC(len[i]);
		shadow[i] = malloc(len[i]);
		cr_assert(atomic_root[i] && shadow[i]);
		for (size_t b = 0; b < len[i]; b++)
			shadow[i][b] = (unsigned char)rnd(256);
		memcpy(atomic_root[i], shadow[i], len[i]);
	}
	/* Pointers to young objects that only a pointer-free block holds:
	 * the collector must not scan it, so they must go. */
	hidden = GC_MALLOC_ATOMIC(nhidden * sizeof(uint64_t));
	cr_assert(hidden);
	hide_youngs_in(hidden, nhidden, &first_id);
	GC_gcollect();
	gc0 = GC_get_gc_no();
	for (unsigned r = 0; r < rounds; r++) {
		for (int w = 0; w < 64; w++) {
			int i = (int)rnd(NATOMIC);
			size_t off = rnd(len[i]), n = 1 + rnd(len[i] - off);

			if (rnd(2)) {
				memset(shadow[i] + off, (int)rnd(256), n);
			} else {
				for (size_t b = 0; b < n; b++)
					shadow[i][off + b] = (unsigned char)rnd(256);
			}
			memcpy(atomic_root[i] + off, shadow[i] + off, n);
			if (rnd(16) == 0)
				GC_collect_a_little();
		}
		collections(2);
		if (r == rounds / 2)
			GC_gcollect();
		for (int i = 0; i < NATOMIC; i++) {
			if (memcmp(atomic_root[i], shadow[i], len[i]) == 0)
				continue;
			for (size_t b = 0; b < len[i]; b++)
				if (atomic_root[i][b] != shadow[i][b]) {
					failure("byte %zu of a %zu-byte "
						"GC_MALLOC_ATOMIC block at %p is "
						"%#x, want %#x (round %u)",
						b, len[i], (void *)atomic_root[i],
						atomic_root[i][b], shadow[i][b], r);
					break;
				}
		}
	}
	GC_gcollect();
	GC_gcollect();
	settle();
	for (unsigned i = 0; i < nhidden; i++)
		gone += atomic_load(&finalized[first_id + i]);
	log_gc_stats("atomic", gc0);
	cr_log_info("atomic: %u of %u objects referenced only from a "
		    "pointer-free block were collected",
		    gone, nhidden);
	for (int i = 0; i < NATOMIC; i++)
		free(shadow[i]);
	assert_no_failures("atomic");
	cr_assert(gone >= nhidden / 2,
		  "only %u of %u objects referenced only from a GC_MALLOC_ATOMIC "
		  "block were collected: the block is scanned for pointers",
		  gone, nhidden);
	assert_collected("atomic", gc0, rounds);
}

/* ---- threads ---- */

#define NTHREADS 4
#define TABLE 1024

static void **volatile tables_root[NTHREADS];
static _Atomic int threads_running;

struct worker {
	int index;
	unsigned iterations;
	uint64_t expect[TABLE];
};

static void *worker(void *arg)
{
	struct worker *w = arg;
	void **t = GC_MALLOC(TABLE * sizeof(void *));

	if (!t) {
		failure("thread %d: GC_MALLOC returned NULL", w->index);
		atomic_fetch_sub(&threads_running, 1);
		return NULL;
	}
	tables_root[w->index] = t;
	for (unsigned i = 0; i < w->iterations && !failures; i++) {
		size_t k = rnd(TABLE);
		uint64_t *y;

		if (w->expect[k])
			check_young(t[k], w->expect[k],
				    "slot %zu of thread %d's table at %p "
				    "(iteration %u)",
				    k, w->index, (void *)t, i);
		y = young(32 + 16 * rnd(16));
		if (!y)
			break;
		t[k] = y;
		w->expect[k] = y[1];
		if (i % 64 == 0)
			garbage(16 * KiB);
	}
	for (size_t k = 0; k < TABLE; k++)
		if (w->expect[k])
			check_young(t[k], w->expect[k],
				    "slot %zu of thread %d's table (end)", k,
				    w->index);
	atomic_fetch_sub(&threads_running, 1);
	return NULL;
}

static void threads(void)
{
	pthread_t tid[NTHREADS];
	struct worker *w[NTHREADS];
	unsigned steps = 0;
	GC_word gc0;

	seed_test("threads");
	ids_init();
	GC_gcollect();
	gc0 = GC_get_gc_no();
	atomic_store(&threads_running, NTHREADS);
	for (int i = 0; i < NTHREADS; i++) {
		w[i] = calloc(1, sizeof *w[i]);
		cr_assert(w[i]);
		w[i]->index = i;
		w[i]->iterations = 20000;
		cr_assert_eq(pthread_create(&tid[i], NULL, worker, w[i]), 0,
			     "GC_pthread_create");
	}
	while (atomic_load(&threads_running) > 0) {
		if (++steps % 2000 == 0)
			GC_gcollect();
		else if (!GC_collect_a_little())
			sched_yield();
	}
	for (int i = 0; i < NTHREADS; i++) {
		cr_assert_eq(pthread_join(tid[i], NULL), 0);
		free(w[i]);
	}
	log_gc_stats("threads", gc0);
	assert_no_failures("threads");
	assert_collected("threads", gc0, 4);
}

/* ---- fork ---- */

static void fork_test(void)
{
	GC_word gc0;
	pid_t pid;
	int st = 0;
	struct timespec nap = {0, 10000000};

	seed_test("fork");
	ids_init();
	make_olds(4);
	GC_gcollect();
	gc0 = GC_get_gc_no();
	for (unsigned r = 0; r < 4; r++)
		straddle_round(r);
	assert_no_failures("fork (before)");
	fflush(NULL);
	pid = fork();
	cr_assert(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		/* The child: what it inherited is intact, and it runs its
		 * own collections on its own heap.  _exit: Criterion's exit
		 * handlers belong to the parent. */
		verify_olds(olds, nolds, "child, inherited");
		garbage(32 * MiB); /* grows the heap: new sections */
		for (unsigned r = 10; r < 16 && !failures; r++)
			straddle_round(r);
		GC_gcollect();
		settle();
		verify_olds(olds, nolds, "child, end");
		if (failures) {
			fprintf(stderr, "fork child: %lu failures; first: %s\n",
				(unsigned long)failures, first_failures[0]);
			_exit(1);
		}
		_exit(0);
	}
	/* The parent goes on while the child runs. */
	for (unsigned r = 4; r < 12 && !failures; r++)
		straddle_round(r);
	for (int i = 0; i < 6000; i++) {
		pid_t w = waitpid(pid, &st, WNOHANG);

		if (w == pid)
			break;
		cr_assert(w == 0, "waitpid: %s", strerror(errno));
		nanosleep(&nap, NULL);
		if (i == 5999) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			cr_assert_fail("the forked child did not exit within 60 s "
				       "(%s, card %s)",
				       cur_backend, cur_cardname);
		}
	}
	for (unsigned r = 12; r < 16 && !failures; r++)
		straddle_round(r);
	log_gc_stats("fork (parent)", gc0);
	assert_no_failures("fork (parent)");
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		  "the forked child (allocating, collecting, checking) %s %d",
		  WIFEXITED(st) ? "exited with status" : "was killed by signal",
		  WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

/* ---- read(2) from a pipe into the heap ---- */

/* Collections until the old objects' pages are clean and protected. */
static void olds_clean(void)
{
	GC_gcollect();
	GC_gcollect();
	collections(2);
}

/* read(2) len bytes that were written to a fresh pipe into dst: the
 * bytes read, or -errno. */
static ssize_t pipe_into(void *dst, const void *src, size_t len)
{
	int fd[2];
	ssize_t n;

	cr_assert(len <= 65536, "a pipe holds 64 KiB");
	cr_assert_eq(pipe(fd), 0, "pipe: %s", strerror(errno));
	cr_assert_eq(write(fd[1], src, len), (ssize_t)len, "write: %s",
		     strerror(errno));
	close(fd[1]);
	n = read(fd[0], dst, len);
	if (n < 0)
		n = -errno;
	close(fd[0]);
	return n;
}

/* Send the address of a new young object through the pipe into *slot;
 * the young object's id, 0 if read(2) failed (then *err). */
static __attribute__((noinline)) uint64_t young_through_pipe(uint64_t *slot,
							     ssize_t *err)
{
	uint64_t *y = young(32 + 16 * rnd(16));
	uint64_t v, id;
	ssize_t n;

	cr_assert(y);
	id = y[1];
	v = (uint64_t)(uintptr_t)y;
	y = NULL;
	n = pipe_into(slot, &v, sizeof v);
	v = 0;
	*err = n;
	return n == (ssize_t)sizeof v ? id : 0;
}

/* The end of a pipe test: the counts, the collector's checks, then the
 * verdict on the read(2) calls into `mem` memory.  Under the mprotect
 * backend EFAULT (and nothing else) is a skip with the reason given. */
static void report_reads(const char *name, const char *mem, GC_word gc0,
			 unsigned rounds, unsigned reads, unsigned efaults,
			 unsigned others, int first_err,
			 const char *mprotect_why)
{
	cr_log_info("%s: %u reads into %s memory, %u EFAULT, %u other errors",
		    name, reads, mem, efaults, others);
	assert_no_failures(name);
	assert_collected(name, gc0, rounds);
	if (efaults && !others && !strcmp(cur_backend, "mprotect"))
		cr_skip_test("read(2) into %s memory fails with EFAULT under "
			     "the mprotect backend (%u of %u reads): %s",
			     mem, efaults, reads, mprotect_why);
	cr_assert(efaults + others == 0,
		  "%u of %u read(2) calls into %s memory failed (%u with "
		  "EFAULT); first: %s",
		  efaults + others, reads, mem, efaults,
		  first_err ? strerror(-first_err) : "short read");
}

static void pipe_ptr(void)
{
	unsigned rounds = 12, reads = 0, efaults = 0, others = 0;
	int first_err = 0;
	GC_word gc0;
	unsigned char data[3000], back[3000];

	seed_test("pipe_ptr");
	ids_init();
	make_olds(6);
	olds_clean();
	gc0 = GC_get_gc_no();
	for (unsigned r = 0; r < rounds && !failures; r++) {
		char when[64];

		round_begin(r);
		for (size_t i = 0; i < nolds; i++) {
			struct old *d = &olds[i];

			for (unsigned k = 0; k < d->nslots; k++) {
				ssize_t err;
				uint64_t id;

				if (rnd(2))
					continue;
				reads++;
				id = young_through_pipe(&d->o[d->slot[k]], &err);
				if (id) {
					d->id[k] = id;
				} else {
					if (err == -EFAULT)
						efaults++;
					else
						others++;
					if (!first_err)
						first_err = (int)err;
				}
			}
			/* Bytes, not pointers, over the rest of a large
			 * old object: intact afterwards. */
			if (d->bytes >= 2 * sizeof data && rnd(4) == 0) {
				size_t off = 8 * (1 + rnd((d->bytes - sizeof data)
							  / 8 - 1));
				ssize_t n;

				for (size_t b = 0; b < sizeof data; b++)
					data[b] = (unsigned char)(b * 7 + r);
				/* not over the slots: keep their pointers */
				memcpy(back, (char *)d->o + off, sizeof back);
				n = pipe_into((char *)d->o + off, data,
					      sizeof data);
				reads++;
				if (n == (ssize_t)sizeof data) {
					if (memcmp((char *)d->o + off, data,
						   sizeof data))
						failure("read(2) into a %zu-byte "
							"old object: bytes differ",
							d->bytes);
				} else {
					if (n == -EFAULT)
						efaults++;
					else
						others++;
					if (!first_err)
						first_err = (int)n;
				}
				memcpy((char *)d->o + off, back, sizeof back);
			}
		}
		round_end(r);
		snprintf(when, sizeof when, "round %u, written by read(2)", r);
		verify_olds(olds, nolds, when);
	}
	log_gc_stats("pipe_ptr", gc0);
	report_reads("pipe_ptr", "GC_MALLOC", gc0, rounds, reads, efaults,
		     others, first_err,
		     "the kernel's write faults, as with Boehm's own "
		     "MPROTECT_VDB");
}

static void pipe_atomic(void)
{
	unsigned rounds = 12, reads = 0, efaults = 0, others = 0;
	int first_err = 0;
	unsigned char *shadow[NATOMIC];
	size_t len[NATOMIC];
	unsigned char buf[65536];
	GC_word gc0;

	seed_test("pipe_atomic");
	for (int i = 0; i < NATOMIC; i++) {
		len[i] = i % 2 ? 64 + rnd(4 * KiB) : 8 * KiB + rnd(120 * KiB);
		atomic_root[i] = GC_MALLOC_ATOMIC(len[i]);
		shadow[i] = calloc(1, len[i]);
		cr_assert(atomic_root[i] && shadow[i]);
		memset(atomic_root[i], 0, len[i]);
	}
	GC_gcollect();
	collections(2);
	gc0 = GC_get_gc_no();
	for (unsigned r = 0; r < rounds; r++) {
		for (int j = 0; j < 48; j++) {
			int i = (int)rnd(NATOMIC);
			size_t off = rnd(len[i]);
			size_t n = 1 + rnd(len[i] - off < sizeof buf
						   ? len[i] - off
						   : sizeof buf);
			ssize_t got;

			for (size_t b = 0; b < n; b++)
				buf[b] = (unsigned char)rnd(256);
			got = pipe_into(atomic_root[i] + off, buf, n);
			reads++;
			if (got == (ssize_t)n) {
				memcpy(shadow[i] + off, buf, n);
			} else {
				if (got == -EFAULT)
					efaults++;
				else
					others++;
				if (!first_err)
					first_err = (int)got;
				/* a partial read wrote a prefix */
				if (got > 0)
					memcpy(shadow[i] + off, buf, (size_t)got);
			}
		}
		collections(2);
		for (int i = 0; i < NATOMIC; i++)
			if (memcmp(atomic_root[i], shadow[i], len[i]))
				failure("a %zu-byte GC_MALLOC_ATOMIC block at %p "
					"differs from what read(2) put there "
					"(round %u)",
					len[i], (void *)atomic_root[i], r);
	}
	log_gc_stats("pipe_atomic", gc0);
	for (int i = 0; i < NATOMIC; i++)
		free(shadow[i]);
	report_reads("pipe_atomic", "GC_MALLOC_ATOMIC", gc0, rounds, reads,
		     efaults, others, first_err,
		     "the adapter should keep pointer-free blocks writable, "
		     "as Boehm's own MPROTECT_VDB does");
}

/* ---- I/O the toolkit cannot see, announced: io_uring fixed buffers ---- */

typedef int (*io_begin_fn)(void *, size_t);
typedef int (*io_end_fn)(int);
static io_begin_fn gc_io_begin;
static io_end_fn gc_io_end;
static struct orc_uring ring;
static int ring_file = -1;

/* The address of a new young object, read by io_uring READ_FIXED from a
 * file into *slot, inside registered buffer buf (pinned when it was
 * registered: the kernel writes the page without a fault), announced with
 * GC_fg_io_begin/GC_fg_io_end unless FG_TEST_UNANNOUNCED=1.  The young
 * object's id, or 0 (then *err). */
static __attribute__((noinline)) uint64_t young_through_ring(uint64_t *slot,
							     unsigned buf,
							     int *err)
{
	const char *un = getenv("FG_TEST_UNANNOUNCED");
	bool announce = !(un && *un && strcmp(un, "0"));
	uint64_t *y = young(32 + 16 * rnd(16));
	uint64_t v, id;
	int io = 0, n;

	cr_assert(y);
	id = y[1];
	v = (uint64_t)(uintptr_t)y;
	y = NULL;
	cr_assert_eq(pwrite(ring_file, &v, sizeof v, 0), (ssize_t)sizeof v);
	v = 0;
	if (announce) {
		io = gc_io_begin(slot, sizeof *slot);
		cr_assert_geq(io, 0, "GC_fg_io_begin failed");
	}
	n = orc_uring_read_fixed(&ring, ring_file, buf, slot, sizeof *slot, 0);
	if (announce)
		cr_assert_eq(gc_io_end(io), 0, "GC_fg_io_end failed");
	*err = n;
	return n == (int)sizeof v ? id : 0;
}

static void pinned_ptr(void)
{
	unsigned rounds = 12, reads = 0;
	struct iovec *iov;
	char why[256] = "", path[] = "/tmp/fgvm-pinned.XXXXXX";
	GC_word gc0;
	int err;

	seed_test("pinned_ptr");
	gc_io_begin = (io_begin_fn)dlsym(RTLD_DEFAULT, "GC_fg_io_begin");
	gc_io_end = (io_end_fn)dlsym(RTLD_DEFAULT, "GC_fg_io_end");
	cr_assert(gc_io_begin && gc_io_end,
		  "the adapter has no GC_fg_io_begin/GC_fg_io_end");
	if (orc_uring_open(&ring, why, sizeof why))
		cr_skip_test("pinned_ptr: %s", why);
	ring_file = mkstemp(path);
	cr_assert(ring_file >= 0, "mkstemp: %s", strerror(errno));
	unlink(path);
	ids_init();
	make_olds(2);
	/* One registered buffer per old object, registered while announced
	 * (the mprotect backend makes the pages writable for the pin). */
	iov = calloc(nolds, sizeof *iov);
	cr_assert(iov);
	{
		int *io = calloc(nolds, sizeof *io);

		for (size_t i = 0; i < nolds; i++) {
			iov[i].iov_base = olds[i].o;
			iov[i].iov_len = olds[i].bytes;
			io[i] = gc_io_begin(olds[i].o, olds[i].bytes);
			cr_assert_geq(io[i], 0, "GC_fg_io_begin failed");
		}
		err = orc_uring_register(&ring, iov, (unsigned)nolds);
		cr_assert_eq(err, 0, "IORING_REGISTER_BUFFERS of %zu old "
			     "objects: %s", nolds, strerror(-err));
		for (size_t i = 0; i < nolds; i++)
			cr_assert_eq(gc_io_end(io[i]), 0);
		free(io);
	}
	olds_clean();
	gc0 = GC_get_gc_no();
	for (unsigned r = 0; r < rounds && !failures; r++) {
		char when[64];

		round_begin(r);
		for (size_t i = 0; i < nolds; i++) {
			struct old *d = &olds[i];

			for (unsigned k = 0; k < d->nslots; k++) {
				uint64_t id;

				if (rnd(2))
					continue;
				reads++;
				id = young_through_ring(&d->o[d->slot[k]],
							(unsigned)i, &err);
				cr_assert(id, "READ_FIXED into a %zu-byte old "
					  "object: %s", d->bytes,
					  strerror(err < 0 ? -err : EIO));
				d->id[k] = id;
			}
		}
		round_end(r);
		snprintf(when, sizeof when,
			 "round %u, written by io_uring READ_FIXED", r);
		verify_olds(olds, nolds, when);
	}
	log_gc_stats("pinned_ptr", gc0);
	cr_log_info("pinned_ptr: %u READ_FIXED into pinned old objects", reads);
	assert_no_failures("pinned_ptr");
	assert_collected("pinned_ptr", gc0, rounds);
	free(iov);
}

/* ---- offheap: a mark procedure that reads memory outside the heap ---- */

/* Guile's thread objects are of a kind whose mark procedure marks the
 * thread's VM stack, which is mmap'd outside the heap: the object itself
 * can stay byte for byte the same while what it marks changes.  No write
 * tracking sees that; the adapter pushes such objects at every
 * collection.  Here the object holds nothing but a tag, and its mark
 * procedure marks the pointers in a malloc'd array. */
#define NOFFHEAP 512
#define OFFHEAP_TAG 0x0ff4ea9000000001u

static uint64_t *offheap_slots; /* malloc'd: the collector never scans it */
static uint64_t offheap_ids[NOFFHEAP];
static void *volatile offheap_root;

static struct GC_ms_entry *offheap_mark(GC_word *addr,
					struct GC_ms_entry *sp,
					struct GC_ms_entry *limit, GC_word env)
{
	(void)env;
	if (addr[0] != OFFHEAP_TAG) /* on a free list (gc_mark.h) */
		return sp;
	for (size_t i = 0; i < NOFFHEAP; i++)
		if (offheap_slots[i])
			sp = GC_mark_and_push((void *)(uintptr_t)offheap_slots[i],
					      sp, limit, (void **)addr);
	return sp;
}

static void offheap(void)
{
	unsigned rounds = 24;
	char when[64];
	uint64_t *obj;
	GC_word gc0;
	int kind;

	seed_test("offheap");
	ids_init();
	offheap_slots = calloc(NOFFHEAP, sizeof *offheap_slots);
	cr_assert(offheap_slots);
	kind = (int)GC_new_kind(GC_new_free_list(),
				GC_MAKE_PROC(GC_new_proc(offheap_mark), 0), 0,
				1);
	obj = GC_generic_malloc(64, kind);
	cr_assert(obj, "GC_generic_malloc of the off-heap marker");
	obj[0] = OFFHEAP_TAG; /* the object's only write */
	offheap_root = obj;
	GC_gcollect();
	gc0 = GC_get_gc_no();
	for (unsigned r = 0; r < rounds; r++) {
		round_begin(r);
		for (size_t i = 0; i < NOFFHEAP; i++) {
			if (rnd(3))
				continue;
			if (!put_young(&offheap_slots[i], &offheap_ids[i],
				       32 + 16 * rnd(8)))
				break;
			maybe_mark_a_little();
		}
		round_end(r);
		snprintf(when, sizeof when, "round %u", r);
		for (size_t i = 0; i < NOFFHEAP; i++)
			if (offheap_ids[i])
				check_young((uint64_t *)(uintptr_t)
						    offheap_slots[i],
					    offheap_ids[i],
					    "slot %zu of the array that a mark "
					    "procedure marks (%s)",
					    i, when);
		if (atomic_load(&failures))
			break;
	}
	log_gc_stats("offheap", gc0);
	assert_no_failures("offheap");
	assert_collected("offheap", gc0, rounds);
	offheap_root = NULL;
	free(offheap_slots);
}

/* ---- one test per scenario, backend and card size ---- */

#define CARD_TEST(scn, fn, markers, tag, backend, card)                      \
	Test(boehm_cards, scn##_##tag##_##card, .timeout = TIMEOUT)          \
	{                                                                    \
		start_gc(backend, card, markers);                            \
		fn();                                                        \
	}
/* FG_CARD unset: the adapter's default, auto. */
#define AUTO_TEST(scn, fn, markers, tag, backend)                            \
	Test(boehm_cards, scn##_##tag##_auto, .timeout = TIMEOUT)            \
	{                                                                    \
		start_gc(backend, 0, markers);                               \
		fn();                                                        \
	}
#define PER_CONFIG_M(scn, fn, markers)                                       \
	AUTO_TEST(scn, fn, markers, uffd_async, "uffd-async")                \
	AUTO_TEST(scn, fn, markers, uffd_sync, "uffd-sync")                  \
	AUTO_TEST(scn, fn, markers, mprotect, "mprotect")                    \
	CARD_TEST(scn, fn, markers, uffd_async, "uffd-async", 64)            \
	CARD_TEST(scn, fn, markers, uffd_async, "uffd-async", 256)           \
	CARD_TEST(scn, fn, markers, uffd_async, "uffd-async", 4096)          \
	CARD_TEST(scn, fn, markers, uffd_sync, "uffd-sync", 64)              \
	CARD_TEST(scn, fn, markers, uffd_sync, "uffd-sync", 256)             \
	CARD_TEST(scn, fn, markers, uffd_sync, "uffd-sync", 4096)            \
	CARD_TEST(scn, fn, markers, mprotect, "mprotect", 64)                \
	CARD_TEST(scn, fn, markers, mprotect, "mprotect", 256)               \
	CARD_TEST(scn, fn, markers, mprotect, "mprotect", 4096)
#define PER_CONFIG(scn, fn) PER_CONFIG_M(scn, fn, 0)

/* manylines: its collector logs to a file of its own. */
#define MANY_TEST(tag, backend, card, name)                                  \
	Test(boehm_cards, manylines_##tag##_##name, .timeout = TIMEOUT)      \
	{                                                                    \
		manylines_env();                                             \
		start_gc(backend, card, 0);                                  \
		manylines();                                                 \
	}
MANY_TEST(uffd_async, "uffd-async", 0, auto)
MANY_TEST(uffd_async, "uffd-async", 64, 64)
MANY_TEST(uffd_async, "uffd-async", 256, 256)
MANY_TEST(uffd_sync, "uffd-sync", 0, auto)
MANY_TEST(uffd_sync, "uffd-sync", 64, 64)
MANY_TEST(uffd_sync, "uffd-sync", 256, 256)
MANY_TEST(mprotect, "mprotect", 0, auto)
MANY_TEST(mprotect, "mprotect", 64, 64)

PER_CONFIG(straddle, straddle)
PER_CONFIG(bigarray, bigarray)
PER_CONFIG(unmap, unmap)
PER_CONFIG(roots, roots)
PER_CONFIG(weak, weak)
PER_CONFIG(relink, relink)
PER_CONFIG_M(aba, aba, 1)
PER_CONFIG(aba_parallel, aba)
PER_CONFIG(atomic, atomic)
PER_CONFIG(threads, threads)
PER_CONFIG(fork, fork_test)
PER_CONFIG(pipe_ptr, pipe_ptr)
PER_CONFIG(pipe_atomic, pipe_atomic)
PER_CONFIG(pinned_ptr, pinned_ptr)
PER_CONFIG(offheap, offheap)

/* ---- io_lock: GC_fg_io_begin/end wait for the allocation lock ---- */

/* The adapter's instance is the collector's, used under its allocation
 * lock; a program thread announcing I/O while another thread collects
 * (or frees blocks, which the instance gathers) must wait for that lock,
 * not change the instance beside it.  A thread calls GC_fg_io_begin while
 * the main thread holds the lock for 300 ms: the call must not return
 * before the lock is let go.  (Before 2026-12-07 it returned at once.) */
static _Atomic int io_lock_phase; /* 1: lock held; 2: call returned */
static _Atomic int io_lock_early;  /* returned while the lock was held */
static char *io_lock_buf;

static void *io_lock_thread(void *arg)
{
	int io;

	(void)arg;
	while (atomic_load(&io_lock_phase) != 1)
		sched_yield();
	io = gc_io_begin(io_lock_buf, 64);
	atomic_store(&io_lock_phase, 2);
	if (io < 0 || gc_io_end(io))
		failure("GC_fg_io_begin/end from a thread failed");
	return NULL;
}

static void *GC_CALLBACK io_lock_held(void *arg)
{
	struct timespec d = {0, 300 * 1000 * 1000};

	(void)arg;
	atomic_store(&io_lock_phase, 1);
	nanosleep(&d, NULL);
	if (atomic_load(&io_lock_phase) == 2)
		atomic_store(&io_lock_early, 1);
	return NULL;
}

static void io_lock(void)
{
	pthread_t tid;

	gc_io_begin = (io_begin_fn)dlsym(RTLD_DEFAULT, "GC_fg_io_begin");
	gc_io_end = (io_end_fn)dlsym(RTLD_DEFAULT, "GC_fg_io_end");
	cr_assert(gc_io_begin && gc_io_end,
		  "the adapter has no GC_fg_io_begin/GC_fg_io_end");
	io_lock_buf = GC_MALLOC(4096);
	cr_assert(io_lock_buf);
	GC_gcollect();
	cr_assert_eq(pthread_create(&tid, NULL, io_lock_thread, NULL), 0);
	GC_call_with_alloc_lock(io_lock_held, NULL);
	cr_assert_eq(pthread_join(tid, NULL), 0);
	cr_assert_eq(atomic_load(&io_lock_phase), 2);
	cr_assert(!atomic_load(&io_lock_early),
		  "GC_fg_io_begin returned while another thread held the "
		  "allocation lock: it changed the adapter's instance beside "
		  "the collector");
	assert_no_failures("io_lock");
}

Test(boehm_cards, io_lock_uffd_async_64, .timeout = TIMEOUT)
{
	start_gc("uffd-async", 64, 0);
	io_lock();
}

/* ---- exempt blocks and a pause target ---- */

/* With a pause target Boehm marks in slices and an exempt block is read
 * whole at two retrievals: the adapter leaves blocks watched unless
 * FG_BOEHM_EXEMPT says otherwise (bench/RESULTS.md, 2026-12-07).  The
 * blocks exempted while garbage is made and collected: */
typedef int (*fg_stats_fn)(struct GC_fg_stats *);

static unsigned long exempted_after_garbage(const char *what)
{
	fg_stats_fn get = (fg_stats_fn)dlsym(RTLD_DEFAULT, "GC_fg_get_stats");
	struct GC_fg_stats st = {.size = sizeof st};

	cr_assert(get, "the adapter has no GC_fg_get_stats");
	seed_test(what);
	for (int i = 0; i < 6; i++) {
		garbage(4 * MiB);
		GC_gcollect();
	}
	cr_assert_eq(get(&st), 0, "GC_fg_get_stats failed");
	cr_assert_geq(st.collections, 6, "%lu retrievals", st.collections);
	assert_no_failures(what);
	cr_log_info("%s: %lu blocks exempted in %lu retrievals (time limit "
		    "%lu ms)",
		    what, st.exempted_blocks, st.collections,
		    GC_get_time_limit());
	return st.exempted_blocks;
}

Test(boehm_cards, exempt_default_uffd_async_4096, .timeout = TIMEOUT)
{
	unsetenv("GC_PAUSE_TIME_TARGET");
	unsetenv("FG_BOEHM_EXEMPT");
	start_gc("uffd-async", 4096, 0);
	cr_assert_gt(exempted_after_garbage("exempt_default"), 0,
		     "no block exempted without a pause target (the default "
		     "exempts freed blocks on uffd-async)");
}

Test(boehm_cards, exempt_pause_target_uffd_async_4096, .timeout = TIMEOUT)
{
	setenv("GC_PAUSE_TIME_TARGET", "10", 1);
	unsetenv("FG_BOEHM_EXEMPT");
	start_gc("uffd-async", 4096, 0);
	cr_assert_neq(GC_get_time_limit(), GC_TIME_UNLIMITED);
	cr_assert_eq(exempted_after_garbage("exempt_pause_target"), 0,
		     "blocks exempted with a pause target and FG_BOEHM_EXEMPT "
		     "unset");
}

Test(boehm_cards, exempt_pause_target_forced_uffd_async_4096,
     .timeout = TIMEOUT)
{
	setenv("GC_PAUSE_TIME_TARGET", "10", 1);
	setenv("FG_BOEHM_EXEMPT", "1", 1);
	start_gc("uffd-async", 4096, 0);
	cr_assert_gt(exempted_after_garbage("exempt_pause_target_forced"), 0,
		     "FG_BOEHM_EXEMPT=1 did not win over the pause target");
}

/* The tests can fail: straddle on Boehm's manual VDB with no write
 * reported (FG_BOEHM_SELFTEST=1), run by this binary in a child, must
 * report lost objects. */
extern char **environ;

Test(boehm_cards, selftest_detects_missed_writes, .timeout = TIMEOUT)
{
	char exe[4096], out[] = "/tmp/fgvm-boehm-selftest.XXXXXX";
	const char *argv[] = {exe, "--filter=boehm_cards/straddle_mprotect_64",
			      "--jobs=1", "--color=never", NULL};
	size_t n = 0, k = 0;
	char **env, *log;
	ssize_t len;
	pid_t pid;
	int fd, st;
	FILE *f;

	len = readlink("/proc/self/exe", exe, sizeof exe - 1);
	cr_assert(len > 0, "readlink /proc/self/exe: %s", strerror(errno));
	exe[len] = 0;
	while (environ[n])
		n++;
	env = calloc(n + 2, sizeof *env);
	cr_assert(env);
	for (size_t i = 0; i < n; i++)
		/* not Criterion's sandbox markers: the child is a new run */
		if (strncmp(environ[i], "FG_BOEHM_SELFTEST=", 18) &&
		    strncmp(environ[i], "BXFI_", 5) &&
		    strncmp(environ[i], "IS_SANDBOX=", 11) &&
		    strncmp(environ[i], "GMON_OUT_PREFIX=", 16))
			env[k++] = environ[i];
	env[k++] = "FG_BOEHM_SELFTEST=1";
	fd = mkstemp(out);
	cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
	pid = fork();
	cr_assert(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(fd, 1);
		dup2(fd, 2);
		execve(exe, (char *const *)argv, env);
		_exit(127);
	}
	free(env);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	f = fdopen(fd, "r");
	cr_assert(f);
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	log = calloc(1, (size_t)len + 1);
	cr_assert(log);
	if (fread(log, 1, (size_t)len, f) != (size_t)len)
		log[0] = 0;
	fclose(f);
	unlink(out);
	cr_assert(strstr(log, "referenced objects lost or corrupted") &&
			  WIFEXITED(st) && WEXITSTATUS(st) != 0,
		  "straddle with every write missed (Boehm's manual VDB, "
		  "nothing reported) did not report lost objects: the test "
		  "cannot detect a missed write (%s %d)\n--- its output "
		  "---\n%s",
		  WIFEXITED(st) ? "exit status" : "signal",
		  WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), log);
	free(log);
}
