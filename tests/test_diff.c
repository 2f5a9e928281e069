/* test_diff.c - DIFF precision (twin/diff) against the oracle (oracle.h).
 *
 * Every tracker here is created with .precision = FG_PRECISION_DIFF.  The
 * truth is the set of 64-byte lines whose bytes differ from the oracle's
 * epoch-start copy (orc_region.changed_only): a line written back to its
 * old bytes within an epoch may legitimately be reported clean.  Every
 * truth line must lie in a reported card (0 misses); how many more bytes
 * were reported is printed as the precision.
 *
 * Scenarios, each run once per backend (a backend the machine lacks is a
 * visible skip with the probe's reason):
 *   random_c64, random_c256, random_c1k, random_c4k, random_cmix
 *       single-threaded random schedules over anonymous, shared anonymous
 *       and memfd regions: sparse writes to a slowly changing set of hot
 *       pages (so pages are dirty in consecutive epochs and get eager
 *       twins), writes that restore a line to its epoch-start bytes or
 *       store the value already there, zeroing, writes anywhere, large
 *       writes and kernel writes (read, pread, recv, pipes; fg_mark_dirty
 *       first for mprotect, mostly).  Then a steady phase of sparse writes
 *       to fixed hot pages whose precision must be close to the truth.
 *       cmix changes the card size before every collection.
 *   threads
 *       four writer threads storing to 8-byte slots, mostly on a hot set
 *       of pages, and a fifth writing through fg_mark_dirty + pread(2),
 *       while the main thread collects with the card size changing
 *       between rounds (the double-buffered twins, hooks racing the
 *       collector, eager twins validated under concurrency).  Two rules:
 *       a slot that changed after collection N returned and before N+1
 *       began must be reported by N+1; one that changed between a read
 *       before N began and one after N returned, by N or N+1.
 *   fork
 *       a child writing, collecting and destroying a DIFF tracker; the
 *       parent's oracle must stay exact.
 *   twin_cap
 *       a cap of 4 pages of twins: still sound, the cap holds, pages past
 *       it read whole.
 *   zero_during_collect
 *       a thread zeroes a 64-byte line while the main thread collects
 *       (twins taken while the collector works on the twins' memory).
 *   mark_dirty_race
 *       fg_mark_dirty and a store on a page while another thread's first
 *       write to it faults (a twin copied from a page already writable).
 * The "none" backend runs every scenario too: it has no hook and nothing
 * to validate eager twins with, so every page must read whole.
 *
 * Every random test prints its seed; FG_SEED=N replays it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* config.h defines it in the autotools build */
#endif
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fg.h"
#include "oracle.h"

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)
#define TIMEOUT 120

#define PER_BACKEND(scn) ORC_PER_BACKEND(diff, scn, TIMEOUT)

static const char *bname(fg_backend_id id)
{
	return fg_backend_name(id);
}

/* Twins are taken only where the library can validate them against the
 * kernel's record (diff.c): at the first write on uffd-sync (hook + a
 * per-page pagemap check), eagerly for hot pages on both uffd backends.
 * mprotect has no such record: its written pages read whole. */
static bool hooked(fg_backend_id id)
{
	return id == FG_BACKEND_UFFD_SYNC;
}

static bool eager_capable(fg_backend_id id)
{
	return id == FG_BACKEND_UFFD_SYNC || id == FG_BACKEND_UFFD_ASYNC;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static fg_tracker *make_diff_tracker(fg_backend_id id, size_t card,
				     size_t twin_cap)
{
	fg_options o = FG_OPTIONS_INIT;
	fg_tracker *t = NULL;
	int rc;

	o.backend = id;
	o.card_size = card;
	o.flags = FG_OPT_NO_ENV;
	o.precision = FG_PRECISION_DIFF;
	o.twin_cap = twin_cap;
	rc = fg_tracker_create(&o, &t);
	cr_assert_eq(rc, 0,
		     "fg_tracker_create(backend %s, card %zu, DIFF, twin_cap "
		     "%zu) = %d (%s): %s",
		     bname(id), card, twin_cap, rc, fg_strerror(rc),
		     fg_last_error_detail());
	cr_assert_not_null(t, "fg_tracker_create succeeded but left *out NULL");
	cr_assert_eq(fg_tracker_backend(t), id,
		     "tracker forced to %s reports backend %s", bname(id),
		     bname(fg_tracker_backend(t)));
	return t;
}

static fg_stats stats_of(fg_tracker *t)
{
	fg_stats st;
	int rc;

	memset(&st, 0, sizeof st);
	st.size = sizeof st;
	rc = fg_get_stats(t, &st);
	cr_assert_eq(rc, 0, "fg_get_stats: %d (%s)", rc, fg_strerror(rc));
	return st;
}

static void reg(fg_tracker *t, orc_region *r)
{
	int rc = fg_register(t, r->base, r->len);

	cr_assert_eq(rc, 0, "fg_register(%s region %p, %zu) with %s = %d (%s): %s",
		     r->kind, (void *)r->base, r->len,
		     bname(fg_tracker_backend(t)), rc, fg_strerror(rc),
		     fg_last_error_detail());
}

static void fill_random(orc_rng *g, void *p, size_t len)
{
	uint8_t *b = p;

	for (size_t i = 0; i < len; i += 8) {
		uint64_t x = orc_next(g);

		memcpy(b + i, &x, len - i < 8 ? len - i : 8);
	}
}

/* Three regions of the three trackable kinds, each placed at a seed-chosen
 * page offset from a 64 KiB boundary, half of each pre-filled with random
 * bytes (the rest zero and untouched: populated and unpopulated pages). */
static void make_regions(orc_region r[3], orc_rng *g, size_t scale)
{
	struct {
		void *(*map)(size_t, void *);
		size_t len;
		const char *kind;
	} k[3] = {
		{orc_map_anon, 2 * scale, "anon"},
		{orc_map_shared_anon, scale, "shared-anon"},
		{orc_map_memfd, scale, "memfd"},
	};

	for (int i = 0; i < 3; i++) {
		void *at = orc_reserve(k[i].len, 64 * KiB,
				       orc_below(g, 16) * orc_page());
		void *p = at ? k[i].map(k[i].len, at) : NULL;

		cr_assert_not_null(p, "mapping %zu bytes of %s memory: %s",
				   k[i].len, k[i].kind, strerror(errno));
		fill_random(g, p, k[i].len / 2);
		cr_assert_eq(orc_region_init(&r[i], p, k[i].len, k[i].kind), 0,
			     "out of memory for the oracle");
		r[i].changed_only = true;
	}
}

static void free_regions(orc_region *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		munmap(r[i].base, r[i].len);
		orc_region_fini(&r[i]);
	}
}

/* ------------------------------------------------------------------ */
/* The single-threaded schedule. */

typedef uint64_t u64_unaligned __attribute__((aligned(1), may_alias));

enum dop {
	D_HOT8,	   /* 8 differing bytes in a hot page */
	D_HOT1,	   /* one differing byte in a hot page */
	D_HOTCPY,  /* 1..128 differing bytes in a hot page */
	D_ATOMIC,  /* atomic add to an aligned word of a hot page */
	D_RESTORE, /* a line written this epoch back to its epoch-start bytes */
	D_SAME,	   /* store the 8 bytes already there */
	D_ZERO,	   /* zero 1..192 bytes of a hot page */
	D_ANY,	   /* 1..512 differing bytes anywhere */
	D_BIG,	   /* up to two pages and a half anywhere, rep movsb */
	D_KERNEL,  /* a system call writes (see kernel_write) */
	D_COUNT
};

static const char *const dname[D_COUNT] = {
	"hot8", "hot1", "hotcpy", "atomic", "restore",
	"same", "zero", "any",	  "big",    "kernel",
};

/* Percent of writes of each kind. */
static const unsigned dweight[D_COUNT] = {28, 8, 8, 4, 10, 5, 6, 12, 2, 17};

enum kop { K_PIPE, K_READ, K_PREAD, K_RECV, K_COUNT };

static const char *const kname[K_COUNT] = {"pipe-read", "file-read", "pread",
					   "recv"};

#define NHOT 24
#define NSTEADY 16
#define MAXW (2 * 4096 + 512)
#define RECENT 512
#define NCARDS 7 /* 64 .. 4096 */

typedef struct precision {
	uint64_t epochs, truth_lines, reported_lines, changed_bytes;
	uint64_t cards_truth_bytes, cards_reported_bytes, pages_truth;
} precision;

typedef struct dsched {
	fg_tracker *t;
	fg_backend_id id;
	orc_region *r;
	size_t n;
	orc_rng g;
	uint64_t seed;
	const char *test;
	unsigned epoch;
	size_t twin_cap; /* bytes: checked against stats.twin_bytes */
	int pipefd[2], sock[2], file;
	uint8_t src[MAXW], pre[MAXW];
	uint8_t *hot[NHOT];
	uint8_t *recent[RECENT]; /* lines changed this epoch */
	size_t nrecent;
	/* Counts over the whole test. */
	uint64_t writes, by[D_COUNT], kby[K_COUNT], kernel_marked,
		kernel_efault, kernel_partial_bytes;
	precision all, card[NCARDS], steady;
} dsched;

static unsigned card_index(size_t card)
{
	return (unsigned)__builtin_ctzll(card) - 6;
}

static void dsched_init(dsched *s, fg_tracker *t, fg_backend_id id,
			orc_region *r, size_t n, const char *test)
{
	char path[] = "/tmp/fg-diff-XXXXXX";

	memset(s, 0, sizeof *s);
	s->t = t;
	s->id = id;
	s->r = r;
	s->n = n;
	s->test = test;
	s->seed = orc_seed(test);
	orc_rng_init(&s->g, s->seed);
	cr_assert_eq(pipe2(s->pipefd, O_NONBLOCK | O_CLOEXEC), 0, "pipe2: %s",
		     strerror(errno));
	cr_assert_eq(socketpair(AF_UNIX,
				SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
				s->sock),
		     0, "socketpair: %s", strerror(errno));
	s->file = mkostemp(path, O_CLOEXEC);
	cr_assert_geq(s->file, 0, "mkstemp: %s", strerror(errno));
	unlink(path);
}

static void dsched_fini(dsched *s)
{
	close(s->pipefd[0]);
	close(s->pipefd[1]);
	close(s->sock[0]);
	close(s->sock[1]);
	close(s->file);
}

/* src[i] differs from dst[i] for every i: each written byte changes. */
static void differing(dsched *s, const uint8_t *dst, size_t len)
{
	for (size_t i = 0; i < len; i++)
		s->src[i] = (uint8_t)(dst[i] + 1 + orc_below(&s->g, 255));
}

static void rep_movsb(void *dst, const void *src, size_t n)
{
	__asm__ volatile("rep movsb"
			 : "+D"(dst), "+S"(src), "+c"(n)
			 :
			 : "memory");
}

static void drain(int fd)
{
	char buf[4096];

	while (read(fd, buf, sizeof buf) > 0)
		;
}

/* A uniformly random byte of the regions. */
static uint8_t *anywhere(dsched *s)
{
	size_t total = 0;
	uint64_t x;

	for (size_t i = 0; i < s->n; i++)
		total += s->r[i].len;
	x = orc_below(&s->g, total);
	for (size_t i = 0; i < s->n; i++) {
		if (x < s->r[i].len)
			return s->r[i].base + x;
		x -= s->r[i].len;
	}
	return NULL;
}

static uint8_t *page_of(const void *p)
{
	return (uint8_t *)((uintptr_t)p / orc_page() * orc_page());
}

static uint8_t *hot_byte(dsched *s, size_t nhot)
{
	return s->hot[orc_below(&s->g, nhot)] + orc_below(&s->g, orc_page());
}

/* Clip len so that [p, p+len) stays in p's region. */
static size_t clip(dsched *s, const uint8_t *p, size_t len)
{
	orc_region *g = orc_find(s->r, s->n, p);

	cr_assert_not_null(g);
	return len < (size_t)(g->base + g->len - p)
		       ? len
		       : (size_t)(g->base + g->len - p);
}

/* Log a write of [p, p+len) with the oracle and remember its first line
 * for D_RESTORE. */
static void logw(dsched *s, const uint8_t *p, size_t len)
{
	orc_log(s->r, s->n, p, len);
	s->recent[s->nrecent++ % RECENT] =
		(uint8_t *)((uintptr_t)p / ORC_LINE * ORC_LINE);
}

/* A system call writes src into dst.  Returns the bytes transferred; on a
 * short transfer *err is the errno that stopped it. */
static size_t kernel_copy(dsched *s, enum kop m, uint8_t *dst, size_t len,
			  int *err)
{
	size_t done = 0;
	ssize_t k;

	*err = 0;
	switch (m) {
	case K_PIPE:
		k = write(s->pipefd[1], s->src, len);
		cr_assert_eq(k, (ssize_t)len, "pipe write of %zu: %zd (%s)",
			     len, k, strerror(errno));
		break;
	case K_RECV:
		k = send(s->sock[0], s->src, len, 0);
		cr_assert_eq(k, (ssize_t)len, "send of %zu: %zd (%s)", len, k,
			     strerror(errno));
		break;
	default:
		k = pwrite(s->file, s->src, len, 0);
		cr_assert_eq(k, (ssize_t)len, "pwrite of %zu: %zd (%s)", len, k,
			     strerror(errno));
		cr_assert_eq(lseek(s->file, 0, SEEK_SET), 0, "lseek: %s",
			     strerror(errno));
		break;
	}
	while (done < len) {
		switch (m) {
		case K_PIPE:
			k = read(s->pipefd[0], dst + done, len - done);
			break;
		case K_READ:
			k = read(s->file, dst + done, len - done);
			break;
		case K_PREAD:
			k = pread(s->file, dst + done, len - done,
				  (off_t)done);
			break;
		default:
			k = recv(s->sock[1], dst + done, len - done, 0);
			break;
		}
		if (k > 0) {
			done += (size_t)k;
			continue;
		}
		if (k < 0 && errno == EINTR)
			continue;
		*err = k < 0 ? errno : EIO;
		break;
	}
	if (m == K_PIPE)
		drain(s->pipefd[0]);
	if (m == K_RECV)
		drain(s->sock[1]);
	return done;
}

/* One kernel write of len bytes at dst, as in test_oracle.c: for mprotect
 * fg_mark_dirty first (3 times in 4; without it the call may fail with
 * EFAULT only, and what it changed before failing is logged); for the
 * other backends sometimes, and the call must simply work. */
static void kernel_write(dsched *s, uint8_t *dst, size_t len)
{
	enum kop m = (enum kop)orc_below(&s->g, K_COUNT);
	bool mark = s->id == FG_BACKEND_MPROTECT ? orc_below(&s->g, 4) != 0
						 : orc_below(&s->g, 8) == 0;
	size_t done, changed = 0;
	int err, rc;

	memcpy(s->pre, dst, len);
	differing(s, dst, len);
	if (mark) {
		rc = fg_mark_dirty(s->t, dst, len);
		cr_assert_eq(rc, 0,
			     "%s %s seed=%" PRIu64 " epoch %u: fg_mark_dirty(%p, "
			     "%zu) = %d (%s): %s",
			     s->test, bname(s->id), s->seed, s->epoch,
			     (void *)dst, len, rc, fg_strerror(rc),
			     fg_last_error_detail());
		s->kernel_marked++;
	}
	done = kernel_copy(s, m, dst, len, &err);
	s->kby[m]++;
	cr_assert(!memcmp(dst, s->src, done),
		  "%s: %s reported %zu bytes at %p but they are not the data "
		  "sent",
		  bname(s->id), kname[m], done, (void *)dst);
	if (done)
		logw(s, dst, done);
	if (done == len)
		return;
	cr_assert(s->id == FG_BACKEND_MPROTECT && !mark && err == EFAULT,
		  "%s %s seed=%" PRIu64 " epoch %u: %s of %zu bytes into "
		  "tracked memory at %p%s transferred only %zu (%s); only the "
		  "mprotect backend without fg_mark_dirty may fail, and only "
		  "with EFAULT",
		  s->test, bname(s->id), s->seed, s->epoch, kname[m], len,
		  (void *)dst, mark ? " after fg_mark_dirty" : "", done,
		  strerror(err));
	s->kernel_efault++;
	for (size_t i = done; i < len; i++) {
		if (dst[i] == s->pre[i])
			continue;
		cr_assert_eq(dst[i], s->src[i],
			     "%s after EFAULT: byte %p is %#x, neither the old "
			     "%#x nor the sent %#x",
			     kname[m], (void *)(dst + i), dst[i], s->pre[i],
			     s->src[i]);
		orc_log(s->r, s->n, dst + i, 1);
		changed++;
	}
	s->kernel_partial_bytes += changed;
}

static enum dop pick_op(dsched *s)
{
	unsigned x = (unsigned)orc_below(&s->g, 100);

	for (int i = 0; i < D_COUNT; i++) {
		if (x < dweight[i])
			return (enum dop)i;
		x -= dweight[i];
	}
	return D_HOT8;
}

static void do_write(dsched *s, enum dop op)
{
	uint8_t *p;
	size_t len;

	switch (op) {
	case D_HOT8: {
		uint64_t v;

		p = hot_byte(s, NHOT);
		if (orc_below(&s->g, 4))
			p = (uint8_t *)((uintptr_t)p & ~(uintptr_t)7);
		if (clip(s, p, 8) < 8)
			p = page_of(p); /* unaligned at a region's end */
		differing(s, p, 8);
		memcpy(&v, s->src, 8);
		*(volatile u64_unaligned *)p = v;
		logw(s, p, 8);
		break;
	}
	case D_HOT1:
		p = hot_byte(s, NHOT);
		*(volatile uint8_t *)p =
			(uint8_t)(*p + 1 + orc_below(&s->g, 255));
		logw(s, p, 1);
		break;
	case D_HOTCPY:
		p = hot_byte(s, NHOT);
		len = clip(s, p, 1 + orc_below(&s->g, 128));
		differing(s, p, len);
		memcpy(p, s->src, len);
		logw(s, p, len);
		break;
	case D_ATOMIC:
		p = (uint8_t *)((uintptr_t)hot_byte(s, NHOT) & ~(uintptr_t)7);
		__atomic_fetch_add((uint64_t *)p, 1 + orc_below(&s->g, 1000),
				   __ATOMIC_RELAXED);
		logw(s, p, 8);
		break;
	case D_RESTORE: {
		orc_region *g;
		size_t n = s->nrecent < RECENT ? s->nrecent : RECENT;

		if (!n) {
			do_write(s, D_HOT8);
			return;
		}
		p = s->recent[orc_below(&s->g, n)];
		g = orc_find(s->r, s->n, p);
		memcpy(p, g->snap + (p - g->base), ORC_LINE);
		orc_log(s->r, s->n, p, ORC_LINE);
		break;
	}
	case D_SAME:
		p = (uint8_t *)((uintptr_t)(orc_below(&s->g, 2)
						    ? hot_byte(s, NHOT)
						    : anywhere(s)) &
				~(uintptr_t)7);
		*(volatile uint64_t *)p = *(volatile uint64_t *)p;
		orc_log(s->r, s->n, p, 8);
		break;
	case D_ZERO:
		p = hot_byte(s, NHOT);
		len = clip(s, p, 1 + orc_below(&s->g, 192));
		memset(p, 0, len);
		logw(s, p, len);
		break;
	case D_ANY:
		p = anywhere(s);
		len = clip(s, p, 1 + orc_below(&s->g, 512));
		differing(s, p, len);
		memcpy(p, s->src, len);
		logw(s, p, len);
		break;
	case D_BIG:
		p = anywhere(s);
		len = clip(s, p, 1 + orc_below(&s->g, MAXW));
		differing(s, p, len);
		rep_movsb(p, s->src, len);
		logw(s, p, len);
		break;
	case D_KERNEL:
		p = orc_below(&s->g, 2) ? hot_byte(s, NHOT) : anywhere(s);
		len = clip(s, p,
			   1 + orc_below(&s->g,
					 orc_below(&s->g, 16) ? 512 : MAXW));
		kernel_write(s, p, len);
		break;
	default:
		break;
	}
	s->writes++;
	s->by[op]++;
}

static void pick_hot(dsched *s, size_t first)
{
	for (size_t i = first; i < NHOT; i++)
		s->hot[i] = page_of(anywhere(s));
}

static void add_precision(precision *p, const orc_result *res, size_t card)
{
	p->epochs++;
	p->truth_lines += res->truth_lines;
	p->reported_lines += res->reported_lines;
	p->changed_bytes += res->changed_bytes;
	p->cards_truth_bytes += res->cards_truth * card;
	p->cards_reported_bytes += res->cards_reported * card;
	p->pages_truth += res->pages_truth;
}

static double ratio(uint64_t a, uint64_t b)
{
	return b ? (double)a / (double)b : 0.0;
}

/* Collect, compare with the oracle (changed lines only), assert nothing
 * was missed and the form and the twin cap hold, and start the next
 * epoch.  expect_card: the card size this collection must use (0: don't
 * check).  steady: also count the epoch in the steady-phase precision. */
static void dsched_check(dsched *s, orc_method m, size_t expect_card,
			 bool steady)
{
	char form[512];
	size_t card = 0;
	orc_result res;
	fg_stats st;
	int rc;

	st = stats_of(s->t);
	cr_assert_leq(st.twin_bytes, s->twin_cap,
		      "%s %s seed=%" PRIu64 " epoch %u: stats.twin_bytes %" PRIu64
		      " before the collection, over the twin cap of %zu",
		      s->test, bname(s->id), s->seed, s->epoch, st.twin_bytes,
		      s->twin_cap);
	rc = orc_collect(s->t, s->r, s->n, m, &card, form, sizeof form);
	cr_assert_geq(rc, 0,
		      "%s %s seed=%" PRIu64 " epoch %u: %s failed: %d (%s): %s",
		      s->test, bname(s->id), s->seed, s->epoch,
		      m == ORC_ITER ? "fg_collect" : "fg_collect_bitmap", rc,
		      fg_strerror(rc), fg_last_error_detail());
	if (expect_card)
		cr_assert_eq(card, expect_card,
			     "%s %s epoch %u: fg_set_card_size(%zu) before the "
			     "collection, but it used card %zu",
			     s->test, bname(s->id), s->epoch, expect_card,
			     card);
	orc_compare(s->r, s->n, card, &res);
	if (res.missed_lines) {
		orc_region *g = orc_find(s->r, s->n, res.first_miss);
		size_t off = (size_t)(res.first_miss - g->base);

		cr_assert_fail("%s %s seed=%" PRIu64 " epoch %u card %zu (%s): "
			       "MISSED %" PRIu64 " of %" PRIu64 " changed "
			       "64-byte lines; first at %p (%s region %p + "
			       "%#zx): its first 8 bytes were %#" PRIx64
			       " at the epoch's start, %#" PRIx64 " now",
			       s->test, bname(s->id), s->seed, s->epoch, card,
			       m == ORC_ITER ? "iterator" : "bitmap",
			       res.missed_lines, res.truth_lines,
			       (void *)res.first_miss, g->kind,
			       (void *)g->base, off,
			       *(u64_unaligned *)(g->snap + off),
			       *(u64_unaligned *)(g->base + off));
	}
	cr_assert(!form[0], "%s %s seed=%" PRIu64 " epoch %u (%s): %s",
		  s->test, bname(s->id), s->seed, s->epoch,
		  m == ORC_ITER ? "iterator" : "bitmap", form);
	cr_assert_eq(res.unlogged_lines, 0,
		     "%s %s seed=%" PRIu64 " epoch %u: %" PRIu64 " lines "
		     "changed that the test never wrote, first at %p: "
		     "something else modified tracked memory",
		     s->test, bname(s->id), s->seed, s->epoch,
		     res.unlogged_lines, (void *)res.first_unlogged);
	if (s->id == FG_BACKEND_NONE) {
		/* No hook, nothing to validate eager twins: pages whole. */
		for (size_t i = 0; i < s->n; i++)
			cr_assert(orc_reported_all(s->r, s->n, s->r[i].base,
						   s->r[i].len),
				  "%s none seed=%" PRIu64 " epoch %u: with DIFF "
				  "the none backend reported part of the %s "
				  "region clean: it has no twins to diff "
				  "with, everything must read dirty",
				  s->test, s->seed, s->epoch, s->r[i].kind);
	}
	st = stats_of(s->t);
	cr_assert_leq(st.twin_bytes, s->twin_cap,
		      "%s %s seed=%" PRIu64 " epoch %u: stats.twin_bytes %" PRIu64
		      " after the collection, over the twin cap of %zu",
		      s->test, bname(s->id), s->seed, s->epoch, st.twin_bytes,
		      s->twin_cap);
	add_precision(&s->all, &res, card);
	add_precision(&s->card[card_index(card)], &res, card);
	if (steady)
		add_precision(&s->steady, &res, card);
	s->epoch++;
	s->nrecent = 0;
	orc_snapshot(s->r, s->n);
}

/* Epoch sizes spread over three orders of magnitude, zero included. */
static unsigned epoch_writes(dsched *s)
{
	unsigned shift = (unsigned)orc_below(&s->g, 11);

	return (unsigned)orc_below(&s->g, (1u << shift) + 1);
}

/* One steady epoch: every one of NSTEADY fixed hot pages gets 1-3
 * differing 8-byte stores, sometimes a restore of the first and a store
 * of the value already there, then one more differing store (so every hot
 * page changes in every epoch and stays hot). */
static void steady_epoch(dsched *s)
{
	for (size_t h = 0; h < NSTEADY; h++) {
		unsigned k = 1 + (unsigned)orc_below(&s->g, 3);
		uint8_t *first = NULL;

		for (unsigned i = 0; i <= k; i++) {
			uint8_t *p = s->hot[h] + orc_below(&s->g,
							   orc_page() / 8) * 8;
			uint64_t v;

			differing(s, p, 8);
			memcpy(&v, s->src, 8);
			*(volatile uint64_t *)p = v;
			logw(s, p, 8);
			s->writes++;
			s->by[D_HOT8]++;
			if (!first)
				first = p;
			if (i + 1 == k && orc_below(&s->g, 3) == 0) {
				orc_region *g = orc_find(s->r, s->n, first);
				uint8_t *l = (uint8_t *)((uintptr_t)first /
							 ORC_LINE * ORC_LINE);

				memcpy(l, g->snap + (l - g->base), ORC_LINE);
				orc_log(s->r, s->n, l, ORC_LINE);
				s->by[D_RESTORE]++;
				s->writes++;
			}
			if (i == 0 && orc_below(&s->g, 3) == 0) {
				uint64_t *q = (uint64_t *)(s->hot[h] +
							   orc_below(&s->g,
								     orc_page() /
									     8) *
								   8);

				*(volatile uint64_t *)q = *(volatile uint64_t *)q;
				orc_log(s->r, s->n, q, 8);
				s->by[D_SAME]++;
				s->writes++;
			}
		}
	}
}

static void print_precision(const dsched *s, const char *what,
			    const precision *p, size_t card)
{
	fprintf(stderr,
		"%s %-10s %s card %4zu: epochs=%" PRIu64 " changed bytes=%" PRIu64
		" changed-line bytes=%" PRIu64 " reported bytes=%" PRIu64
		" ratio=%.2f (card-level truth %" PRIu64 " -> %.2f; page-level "
		"would be %.2f)\n",
		s->test, bname(s->id), what, card, p->epochs, p->changed_bytes,
		p->truth_lines * ORC_LINE, p->reported_lines * ORC_LINE,
		ratio(p->reported_lines, p->truth_lines), p->cards_truth_bytes,
		ratio(p->cards_reported_bytes, p->cards_truth_bytes),
		ratio(p->pages_truth * orc_page(), p->truth_lines * ORC_LINE));
}

static void dsched_summary(const dsched *s, const fg_stats *st)
{
	char kinds[256] = "";
	size_t k = 0;

	for (int i = 0; i < D_COUNT && k < sizeof kinds; i++)
		k += (size_t)snprintf(kinds + k, sizeof kinds - k, "%s%s %" PRIu64,
				      i ? ", " : "", dname[i], s->by[i]);
	fprintf(stderr,
		"%s %-10s: seed=%" PRIu64 " writes=%" PRIu64 " (%s; kernel "
		"marked %" PRIu64 ", EFAULT %" PRIu64 ") epochs=%" PRIu64
		" changed bytes=%" PRIu64 " changed-line bytes=%" PRIu64
		" reported bytes=%" PRIu64 " ratio=%.2f missed=0 | twins "
		"hook=%" PRIu64 " eager=%" PRIu64 " invalid=%" PRIu64
		" pages diffed=%" PRIu64 " whole=%" PRIu64 " twin_bytes=%" PRIu64
		" diff %.2f us/diffed page\n",
		s->test, bname(s->id), s->seed, s->writes, kinds, s->kernel_marked,
		s->kernel_efault, s->all.epochs, s->all.changed_bytes,
		s->all.truth_lines * ORC_LINE, s->all.reported_lines * ORC_LINE,
		ratio(s->all.reported_lines, s->all.truth_lines),
		st->twins_hook, st->twins_eager, st->twins_invalid,
		st->pages_diffed, st->pages_whole, st->twin_bytes,
		st->pages_diffed ? (double)st->diff_ns /
					   (double)st->pages_diffed / 1e3
				 : 0.0);
}

/* What the DIFF statistics must show after a schedule that wrote the same
 * pages in consecutive epochs. */
static void check_diff_stats(const char *test, fg_backend_id id,
			     uint64_t seed, const fg_stats *st)
{
	if (eager_capable(id))
		cr_assert_gt(st->twins_eager, 0,
			     "%s %s seed=%" PRIu64 ": stats.twins_eager is 0 "
			     "although pages were written in many consecutive "
			     "epochs: the eager-twin path was never taken",
			     test, bname(id), seed);
	if (hooked(id))
		cr_assert_gt(st->twins_hook, 0,
			     "%s %s seed=%" PRIu64 ": stats.twins_hook is 0 on "
			     "a backend with a first-write hook",
			     test, bname(id), seed);
	else
		cr_assert_eq(st->twins_hook, 0,
			     "%s %s: stats.twins_hook %" PRIu64 " on a backend "
			     "without a first-write hook",
			     test, bname(id), st->twins_hook);
	if (eager_capable(id)) {
		cr_assert_gt(st->pages_diffed, 0,
			     "%s %s seed=%" PRIu64 ": no page was ever diffed",
			     test, bname(id), seed);
	} else {
		cr_assert(!st->pages_diffed && !st->twins_eager &&
				  !st->twins_invalid && !st->twin_bytes,
			  "%s %s: a backend without hook or validation "
			  "reports twins (diffed %" PRIu64 ", eager %" PRIu64
			  ", invalid %" PRIu64 ", bytes %" PRIu64 ")",
			  test, bname(id), st->pages_diffed, st->twins_eager,
			  st->twins_invalid, st->twin_bytes);
		cr_assert_gt(st->pages_whole, 0, "%s %s: no page read whole",
			     test, bname(id));
	}
}

static dsched *dsched_start(fg_backend_id id, size_t card, size_t twin_cap,
			    orc_region r[3], size_t scale, const char *test,
			    fg_tracker **t)
{
	dsched *s;
	size_t tracked = 4 * scale;

	ORC_REQUIRE_BACKEND(id);
	s = malloc(sizeof *s);
	cr_assert_not_null(s);
	*t = make_diff_tracker(id, card, twin_cap);
	dsched_init(s, *t, id, r, 3, test);
	s->twin_cap = twin_cap ? twin_cap : tracked / 2;
	make_regions(r, &s->g, scale);
	for (int i = 0; i < 3; i++)
		reg(*t, &r[i]);
	orc_snapshot(r, 3);
	pick_hot(s, 0);
	return s;
}

static const size_t all_cards[NCARDS] = {64, 128, 256, 512, 1024, 2048, 4096};

/* card: the card size of the whole run, or 0 to change it at random
 * before every collection (then only the iterator is used, so the card
 * size of every collection is the one fg_card_size reports after it). */
static void random_diff(fg_backend_id id, size_t card, uint64_t target_writes,
			const char *test)
{
	orc_region r[3];
	fg_tracker *t;
	dsched *s = dsched_start(id, card, 0, r, 256 * KiB, test, &t);
	fg_stats st;

	while (s->writes < target_writes || s->epoch < 100) {
		unsigned nw = epoch_writes(s);
		size_t expect = 0;

		/* The hot set drifts: pages cool down and warm up. */
		if (orc_below(&s->g, 3) == 0)
			s->hot[orc_below(&s->g, NHOT)] = page_of(anywhere(s));
		for (unsigned i = 0; i < nw; i++)
			do_write(s, pick_op(s));
		if (!card) {
			expect = all_cards[orc_below(&s->g, NCARDS)];
			int rc = fg_set_card_size(t, expect);
			cr_assert_eq(rc, 0, "fg_set_card_size(%zu) = %d (%s)",
				     expect, rc, fg_strerror(rc));
		}
		dsched_check(s, card && s->epoch % 2 ? ORC_BITMAP : ORC_ITER,
			     expect, false);
	}
	/* Steady phase: sparse writes to NSTEADY fixed hot pages.  After
	 * three epochs every one of them has a twin at every write (hook) or
	 * an eager twin (all three real backends), so the changed lines are
	 * what is reported. */
	if (card) {
		for (int e = 0; e < 14; e++) {
			steady_epoch(s);
			dsched_check(s, e % 2 ? ORC_BITMAP : ORC_ITER, 0,
				     e >= 3);
		}
	}
	st = stats_of(t);
	dsched_summary(s, &st);
	for (unsigned i = 0; i < NCARDS; i++)
		if (s->card[i].epochs && !card)
			print_precision(s, "random", &s->card[i],
					all_cards[i]);
	if (card) {
		print_precision(s, "random", &s->all, card);
		print_precision(s, "steady", &s->steady, card);
	}
	check_diff_stats(test, id, s->seed, &st);
	if (card && eager_capable(id)) {
		double lr = ratio(s->steady.reported_lines,
				  s->steady.truth_lines);
		double cr = ratio(s->steady.cards_reported_bytes,
				  s->steady.cards_truth_bytes);

		cr_assert_gt(s->steady.truth_lines, 0);
		/* Sparse writes: page-level reporting would be ~20x. */
		if (card == 64)
			cr_assert_leq(lr, 1.25,
				      "%s %s seed=%" PRIu64 ": steady sparse "
				      "writes on hot pages at 64-byte cards: "
				      "reported %.2fx the changed lines (page "
				      "level: %.2fx); DIFF should report "
				      "about the truth",
				      test, bname(id), s->seed, lr,
				      ratio(s->steady.pages_truth * orc_page(),
					    s->steady.truth_lines * ORC_LINE));
		cr_assert_leq(cr, 1.25,
			      "%s %s seed=%" PRIu64 ": steady phase at card "
			      "%zu reported %.2fx the bytes of the cards "
			      "holding changed lines",
			      test, bname(id), s->seed, card, cr);
	}
	if (id == FG_BACKEND_NONE) {
		uint64_t pages = 0;

		for (int i = 0; i < 3; i++)
			pages += r[i].len / orc_page();
		/* Every page of every collection read whole (the bitmap
		 * path collects region by region: one collection each). */
		cr_assert_eq(st.pages_whole, st.dirty_pages,
			     "none: %" PRIu64 " pages read whole, %" PRIu64
			     " reported",
			     st.pages_whole, st.dirty_pages);
		cr_assert_geq(st.pages_whole, pages * s->all.epochs);
	}
	dsched_fini(s);
	cr_assert_eq(fg_tracker_destroy(t), 0, "fg_tracker_destroy failed");
	free_regions(r, 3);
	free(s);
}

static void random_c64(fg_backend_id id)
{
	random_diff(id, 64, 12000, "random_c64");
}

static void random_c256(fg_backend_id id)
{
	random_diff(id, 256, 8000, "random_c256");
}

static void random_c1k(fg_backend_id id)
{
	random_diff(id, 1024, 8000, "random_c1k");
}

static void random_c4k(fg_backend_id id)
{
	random_diff(id, 4096, 8000, "random_c4k");
}

static void random_cmix(fg_backend_id id)
{
	random_diff(id, 0, 12000, "random_cmix");
}

PER_BACKEND(random_c64)
PER_BACKEND(random_c256)
PER_BACKEND(random_c1k)
PER_BACKEND(random_c4k)
PER_BACKEND(random_cmix)

/* ------------------------------------------------------------------ */
/* Twin cap: 4 pages of twins for 256 pages of regions. */

static void twin_cap(fg_backend_id id)
{
	const size_t cap = 4 * orc_page();
	orc_region r[3];
	fg_tracker *t;
	dsched *s = dsched_start(id, 64, cap, r, 64 * KiB, "twin_cap", &t);
	fg_stats st;

	while (s->epoch < 80) {
		unsigned nw = (unsigned)orc_below(&s->g, 200);

		if (orc_below(&s->g, 3) == 0)
			s->hot[orc_below(&s->g, NHOT)] = page_of(anywhere(s));
		for (unsigned i = 0; i < nw; i++)
			do_write(s, pick_op(s));
		/* Mid-epoch too: hooks took twins. */
		st = stats_of(t);
		cr_assert_leq(st.twin_bytes, cap,
			      "twin_cap %s seed=%" PRIu64 " epoch %u: %" PRIu64
			      " bytes of twins held, the cap is %zu",
			      bname(id), s->seed, s->epoch, st.twin_bytes, cap);
		dsched_check(s, s->epoch % 2 ? ORC_BITMAP : ORC_ITER, 0, false);
	}
	st = stats_of(t);
	dsched_summary(s, &st);
	cr_assert_gt(st.pages_whole, 0,
		     "twin_cap %s: with 4 pages of twins for %d hot pages no "
		     "page read whole",
		     bname(id), NHOT);
	if (eager_capable(id))
		cr_assert_gt(st.pages_diffed, 0,
			     "twin_cap %s: no page diffed: the cap left no "
			     "twin at all",
			     bname(id));
	dsched_fini(s);
	cr_assert_eq(fg_tracker_destroy(t), 0);
	free_regions(r, 3);
	free(s);
}

PER_BACKEND(twin_cap)

/* ------------------------------------------------------------------ */
/* Threads: four writers, the main thread collecting, DIFF on, the card
 * size changing between rounds.
 *
 * Rule, from the contract (as in test_oracle.c's threads test): read every
 * slot (S) after collection N returned, read them again (T), collect
 * (N+1); a slot with T != S changed after N returned and before N+1 began,
 * and must lie in a range of N+1.  Under DIFF that rule holds only if a
 * slot never returns to a value it had: the twin N+1 diffs against was
 * taken at some point during or after collection N, and the page is read
 * at some point during N+1, so a slot that went back to its twin's value
 * may rightly read clean.  So no value is ever stored twice (a counter
 * per writer, tagged with the writer): any change after the twin was taken
 * leaves the slot different from the twin.
 *
 * Writers put most stores on a hot set of pages, which the main thread
 * rotates now and then: hot pages are dirty in every epoch and get eager
 * twins, which on uffd-async are copied while the writers write them and
 * must be validated (twins_invalid); hook twins race the collector and
 * each other on mprotect and uffd-sync.  A fifth thread writes through the
 * kernel the documented way: fg_mark_dirty, then pread(2) into the slot,
 * so pages become writable without a fault while hooks are in flight. */

#define WRITERS 4 /* plus one kernel writer */
#define CHOT 16

typedef struct cwriter {
	pthread_t th;
	fg_tracker *t;
	fg_backend_id id;
	orc_region *r;
	size_t nr;
	_Atomic(uint64_t *) *hot; /* CHOT page addresses */
	unsigned tid;		  /* WRITERS: the kernel writer */
	uint64_t seed, stores, efault;
	int fd, err;		  /* kernel writer: its file; a failure */
	_Atomic int *stop;
} cwriter;

/* A slot: on a hot page 7 times in 8, else anywhere. */
static uint64_t *cw_slot(cwriter *w, orc_rng *g)
{
	if (orc_below(g, 8)) {
		uint64_t *pg = atomic_load_explicit(&w->hot[orc_below(g, CHOT)],
						    memory_order_relaxed);

		return pg + orc_below(g, orc_page() / 8);
	}
	orc_region *r = &w->r[orc_below(g, w->nr)];

	return (uint64_t *)r->base + orc_below(g, r->len / 8);
}

/* Values are (counter << 3 | writer): no value is ever stored twice, so a
 * slot never goes back to a value it had (see above). */
static void *cwriter_main(void *arg)
{
	cwriter *w = arg;
	orc_rng g;
	uint64_t ctr = 0;

	orc_rng_init(&g, w->seed);
	while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
		for (int k = 0; k < 64; k++)
			__atomic_store_n(cw_slot(w, &g), ++ctr << 3 | w->tid,
					 __ATOMIC_RELAXED);
	}
	w->stores = ctr;
	return NULL;
}

/* The kernel writer: fg_mark_dirty on the slot, then pread(2) writes it.
 * On mprotect a collection between the two re-protects the page and the
 * pread fails with EFAULT: mark and try again. */
static void *kwriter_main(void *arg)
{
	cwriter *w = arg;
	orc_rng g;
	uint64_t ctr = 0;

	orc_rng_init(&g, w->seed);
	while (!atomic_load_explicit(w->stop, memory_order_relaxed) &&
	       !w->err) {
		uint64_t *slot = cw_slot(w, &g), v = ++ctr << 3 | w->tid;

		if (pwrite(w->fd, &v, 8, 0) != 8) {
			w->err = errno ? errno : EIO;
			break;
		}
		for (;;) {
			int rc = fg_mark_dirty(w->t, slot, 8);
			ssize_t k;

			if (rc) {
				w->err = -rc;
				break;
			}
			k = pread(w->fd, slot, 8, 0);
			if (k == 8)
				break;
			if (k < 0 && errno == EFAULT &&
			    w->id == FG_BACKEND_MPROTECT) {
				w->efault++;
				continue;
			}
			w->err = k < 0 ? errno : EIO;
			break;
		}
	}
	w->stores = ctr;
	return NULL;
}

static void snap_region(const orc_region *r, size_t n, uint64_t **out)
{
	for (size_t i = 0; i < n; i++) {
		const uint64_t *s = (const uint64_t *)r[i].base;

		for (size_t k = 0; k < r[i].len / 8; k++)
			out[i][k] = __atomic_load_n(&s[k], __ATOMIC_RELAXED);
	}
}

static void spin_us(unsigned us)
{
	uint64_t end = now_ns() + (uint64_t)us * 1000;

	while (now_ns() < end)
		;
}

static uint64_t *random_page(orc_rng *g, orc_region *r, size_t n)
{
	orc_region *x = &r[orc_below(g, n)];

	return (uint64_t *)(x->base + orc_below(g, x->len / orc_page()) *
					      orc_page());
}

/* The first missed slot in words, and where the first few were. */
typedef struct missrec {
	uint64_t missed;
	char first[700];
	char pages[1024];
	size_t plen;
} missrec;

static void note_miss(missrec *m, orc_region *r, int i, size_t k,
		      _Atomic(uint64_t *) *hot, unsigned round, size_t card,
		      uint64_t from, uint64_t to, const char *rule)
{
	uint64_t *slot = (uint64_t *)r[i].base + k;
	uint8_t *pg = page_of(slot);
	bool hotp = false;

	for (int h = 0; h < CHOT; h++)
		hotp |= (uint8_t *)atomic_load(&hot[h]) == pg;
	if (m->missed < 8 && m->plen < sizeof m->pages)
		m->plen += (size_t)snprintf(
			m->pages + m->plen, sizeof m->pages - m->plen,
			" [%p +%#zx: page %s, %s]", (void *)pg,
			(size_t)((uint8_t *)slot - pg),
			orc_reported(r, 2, pg, orc_page())
				? "partly reported"
				: "not reported at all",
			hotp ? "hot" : "not hot");
	if (!m->missed++)
		snprintf(m->first, sizeof m->first,
			 "round %u, collection N+1 = %u, card %zu: MISSED "
			 "slot %p (%s region + %#zx, last stored by writer "
			 "%u of 0-3 storing, 4 fg_mark_dirty+pread): it went "
			 "from %#" PRIx64 " to %#" PRIx64 "; %s",
			 round, round + 1, card, (void *)slot, r[i].kind,
			 k * 8, (unsigned)(to & 7), from, to, rule);
}

static void threads(fg_backend_id id)
{
	static const size_t cards[] = {64, 256, 1024, 4096};
	const char *test = "threads";
	/* Rounds until the time is up; the none backend has nothing to
	 * race.  A round must also have been checked at every card size. */
	const uint64_t run_ns = id == FG_BACKEND_NONE ? 2000000000u
						       : 15000000000u;
	const unsigned min_rounds = 200;
	const uint64_t max_ns = 30000000000u;
	_Atomic(uint64_t *) hot[CHOT];
	_Atomic int stop = 0;
	cwriter w[WRITERS + 1];
	orc_region r[2];
	uint64_t *S[2], *T[2], *P[2], *prevrep[2];
	uint64_t seed, checked = 0, checked_during = 0, missed = 0, t0,
		stores = 0;
	missrec mr = {0};
	uint64_t rounds_at[4] = {0}, reported_lines = 0, changed_lines = 0;
	unsigned rounds = 0;
	char form[512];
	size_t card = 0;
	fg_tracker *t;
	orc_result res;
	orc_rng g;
	fg_stats st;
	int rc;

	ORC_REQUIRE_BACKEND(id);
	seed = orc_seed(test);
	orc_rng_init(&g, seed);
	t = make_diff_tracker(id, 64, 0);
	{
		void *a = orc_map_anon(MiB, NULL);
		void *b = orc_map_memfd(512 * KiB, NULL);

		cr_assert(a && b, "mmap: %s", strerror(errno));
		fill_random(&g, a, MiB / 2);
		cr_assert_eq(orc_region_init(&r[0], a, MiB, "anon"), 0);
		cr_assert_eq(orc_region_init(&r[1], b, 512 * KiB, "memfd"), 0);
	}
	for (int i = 0; i < 2; i++) {
		r[i].changed_only = true;
		reg(t, &r[i]);
		S[i] = malloc(r[i].len);
		T[i] = malloc(r[i].len);
		P[i] = malloc(r[i].len);
		prevrep[i] = calloc((r[i].nlines + 63) / 64, 8);
		cr_assert(S[i] && T[i] && P[i] && prevrep[i]);
	}
	for (int i = 0; i < CHOT; i++)
		atomic_init(&hot[i], random_page(&g, r, 2));
	for (unsigned i = 0; i <= WRITERS; i++) {
		char path[] = "/tmp/fg-diff-kw-XXXXXX";

		w[i] = (cwriter){.t = t, .id = id, .r = r, .nr = 2, .hot = hot,
				 .tid = i, .seed = orc_next(&g), .fd = -1,
				 .stop = &stop};
		if (i == WRITERS) {
			w[i].fd = mkostemp(path, O_CLOEXEC);
			cr_assert_geq(w[i].fd, 0, "mkstemp: %s",
				      strerror(errno));
			unlink(path);
		}
		cr_assert_eq(pthread_create(&w[i].th, NULL,
					    i == WRITERS ? kwriter_main
							 : cwriter_main,
					    &w[i]),
			     0);
	}
	rc = orc_collect(t, r, 2, ORC_ITER, &card, form, sizeof form);
	cr_assert_geq(rc, 0, "fg_collect: %d (%s)", rc, fg_strerror(rc));
	t0 = now_ns();
	for (unsigned round = 0;; round++) {
		uint64_t el = now_ns() - t0;
		size_t want = 0;

		if (el > max_ns ||
		    (el > run_ns && round >= min_rounds && rounds_at[0] &&
		     rounds_at[1] && rounds_at[2] && rounds_at[3]))
			break;
		rounds = round + 1;
		if (round % 16 == 15) /* a hot page cools, another warms */
			atomic_store(&hot[orc_below(&g, CHOT)],
				     random_page(&g, r, 2));
		if (orc_below(&g, 2)) {
			want = cards[orc_below(&g, 4)];
			cr_assert_eq(fg_set_card_size(t, want), 0);
		}
		snap_region(r, 2, S);
		spin_us((unsigned)orc_below(&g, 300));
		snap_region(r, 2, T);
		if (orc_below(&g, 2)) {
			want = cards[orc_below(&g, 4)];
			cr_assert_eq(fg_set_card_size(t, want), 0);
		}
		rc = orc_collect(t, r, 2, round % 4 == 3 ? ORC_BITMAP : ORC_ITER,
				 &card, form, sizeof form);
		cr_assert_geq(rc, 0,
			      "%s %s seed=%" PRIu64 " round %u: collect: %d "
			      "(%s): %s",
			      test, bname(id), seed, round, rc, fg_strerror(rc),
			      fg_last_error_detail());
		cr_assert(!form[0], "%s %s seed=%" PRIu64 " round %u: %s", test,
			  bname(id), seed, round, form);
		if (want)
			cr_assert_eq(card, want,
				     "%s %s round %u: card size set to %zu "
				     "before the collection, used %zu",
				     test, bname(id), round, want, card);
		rounds_at[card_index(card) / 2]++;
		for (int i = 0; i < 2 && !missed; i++) {
			uint64_t *slots = (uint64_t *)r[i].base;

			for (size_t k = 0; k < r[i].len / 8; k++) {
				bool after = S[i][k] != T[i][k];
				bool during = round && P[i][k] != S[i][k];
				const char *rule;

				checked += after;
				checked_during += during;
				if (!after && !during)
					continue;
				if (orc_reported(r, 2, &slots[k], 8))
					continue;
				if (after) {
					rule = "it changed after collection N "
					       "returned and before N+1 "
					       "began, but N+1 reported it "
					       "clean";
				} else if (!((prevrep[i][k / 8 / 64] >>
					      (k / 8 % 64)) &
					     1)) {
					rule = "it changed between a read "
					       "before collection N began "
					       "and one after N returned, "
					       "but neither N nor N+1 "
					       "reported it";
				} else {
					continue;
				}
				note_miss(&mr, r, i, k, hot, round, card,
					  after ? S[i][k] : P[i][k],
					  after ? T[i][k] : S[i][k],
					  rule);
			}
		}
		missed = mr.missed;
		for (int i = 0; i < 2; i++) {
			uint64_t *x = P[i];

			P[i] = T[i]; /* T before this collection, for the next */
			T[i] = x;
			memcpy(prevrep[i], r[i].reported,
			       (r[i].nlines + 63) / 64 * 8);
		}
		for (int i = 0; i < 2; i++)
			for (size_t l = 0; l < r[i].nlines; l++)
				reported_lines +=
					(r[i].reported[l / 64] >> (l % 64)) & 1;
		if (missed)
			break;
	}
	atomic_store(&stop, 1);
	for (unsigned i = 0; i <= WRITERS; i++) {
		pthread_join(w[i].th, NULL);
		stores += w[i].stores;
	}
	close(w[WRITERS].fd);
	cr_assert_eq(w[WRITERS].err, 0,
		     "%s %s seed=%" PRIu64 ": the kernel writer failed: %s "
		     "(fg_mark_dirty, then pread into the marked slot)",
		     test, bname(id), seed, strerror(w[WRITERS].err));
	cr_assert_gt(w[WRITERS].stores, 0, "the kernel writer never wrote");
	st = stats_of(t);
	cr_assert_eq(missed, 0,
		     "%s %s seed=%" PRIu64 ": %" PRIu64 " slots missed in one "
		     "round (of %" PRIu64 " + %" PRIu64 " changes checked so "
		     "far); first: %s; missed slots:%s [twins hook=%" PRIu64
		     " eager=%" PRIu64 " invalid=%" PRIu64 "]",
		     test, bname(id), seed, missed, checked, checked_during,
		     mr.first, mr.pages,
		     st.twins_hook,
		     st.twins_eager, st.twins_invalid);
	cr_assert_gt(checked, 0,
		     "%s %s: no slot changed between two snapshots in %u "
		     "rounds: the writers never ran, the check is vacuous",
		     test, bname(id), rounds);
	if (eager_capable(id))
		cr_assert_gt(st.twins_eager, 0,
			     "%s %s seed=%" PRIu64 ": no eager twin in %u rounds "
			     "of writes concentrated on %d hot pages",
			     test, bname(id), seed, rounds, CHOT);
	if (hooked(id))
		cr_assert_gt(st.twins_hook, 0,
			     "%s %s seed=%" PRIu64 ": no twin taken by the "
			     "first-write hook",
			     test, bname(id), seed);
	if (id == FG_BACKEND_UFFD_ASYNC)
		cr_assert_gt(st.twins_invalid, 0,
			     "%s %s seed=%" PRIu64 ": no eager twin was ever "
			     "invalidated although four threads wrote the hot "
			     "pages throughout: the validation path was not "
			     "exercised",
			     test, bname(id), seed);
	if (eager_capable(id))
		cr_assert_gt(st.pages_diffed, 0);

	/* Quiet now.  Collections until one comes back empty (no eager twin
	 * left, every page protected), then 25 known 8-byte changes at
	 * 64-byte cards: a backend with a hook has a twin for each written
	 * page and must report exactly the changed lines; uffd-async has
	 * none and must report exactly the written pages; none: all. */
	cr_assert_eq(fg_set_card_size(t, 64), 0);
	for (int k = 0; k < 20; k++) {
		rc = orc_collect(t, r, 2, ORC_ITER, &card, form, sizeof form);
		cr_assert_geq(rc, 0);
		if (rc == 0 || id == FG_BACKEND_NONE)
			break;
		usleep(1000);
	}
	orc_snapshot(r, 2);
	for (int k = 0; k < 25; k++) {
		orc_region *x = &r[orc_below(&g, 2)];
		uint64_t *p = (uint64_t *)x->base + orc_below(&g, x->len / 8);

		*p = ~*p;
		orc_log(r, 2, p, 8);
	}
	rc = orc_collect(t, r, 2, ORC_ITER, &card, form, sizeof form);
	cr_assert_geq(rc, 0);
	cr_assert(!form[0], "%s", form);
	cr_assert_eq(card, 64);
	orc_compare(r, 2, card, &res);
	cr_assert_eq(res.missed_lines, 0,
		     "%s %s seed=%" PRIu64 ": after the writers stopped, %" PRIu64
		     " changed lines were missed, first at %p",
		     test, bname(id), seed, res.missed_lines,
		     (void *)res.first_miss);
	cr_assert_eq(res.unlogged_lines, 0,
		     "%s %s: %" PRIu64 " lines changed after the writers were "
		     "joined, first at %p",
		     test, bname(id), res.unlogged_lines,
		     (void *)res.first_unlogged);
	if (id == FG_BACKEND_NONE) {
		cr_assert(orc_reported_all(r, 2, r[0].base, r[0].len) &&
				  orc_reported_all(r, 2, r[1].base, r[1].len),
			  "the none backend must report everything");
	} else if (hooked(id)) {
		cr_assert_eq(res.reported_lines, res.truth_lines,
			     "%s %s seed=%" PRIu64 ": after a quiet epoch with "
			     "25 known 8-byte changes, each on a page that "
			     "faulted (so had a twin), %" PRIu64 " lines were "
			     "reported for %" PRIu64 " changed",
			     test, bname(id), seed, res.reported_lines,
			     res.truth_lines);
	} else {
		uint64_t extra, missing;

		orc_exact_pages(r, 2, card, &extra, &missing);
		cr_assert(!extra && !missing,
			  "%s %s seed=%" PRIu64 ": after a quiet epoch with 25 "
			  "known changes, %" PRIu64 " cards reported beyond "
			  "the written pages and %" PRIu64 " missing",
			  test, bname(id), seed, extra, missing);
	}
	changed_lines = res.truth_lines;
	st = stats_of(t);
	fprintf(stderr,
		"%s %-10s: seed=%" PRIu64 " %u rounds (card 64/256/1k/4k: %" PRIu64
		"/%" PRIu64 "/%" PRIu64 "/%" PRIu64 ") in %.1f s, %" PRIu64
		" stores by %d threads + %" PRIu64 " fg_mark_dirty+pread (%" PRIu64
		" EFAULT retries), %" PRIu64 " slot changes checked between "
		"collections + %" PRIu64 " across one, "
		"missed=0, mean reported %.1f KiB/round | twins hook=%" PRIu64
		" eager=%" PRIu64 " invalid=%" PRIu64 " pages diffed=%" PRIu64
		" whole=%" PRIu64 "; quiet epoch: %" PRIu64 " changed lines, "
		"%" PRIu64 " reported\n",
		test, bname(id), seed, rounds, rounds_at[0], rounds_at[1],
		rounds_at[2], rounds_at[3], (double)(now_ns() - t0) / 1e9,
		stores - w[WRITERS].stores, WRITERS, w[WRITERS].stores,
		w[WRITERS].efault, checked, checked_during,
		(double)reported_lines * ORC_LINE / 1024.0 / (rounds ? rounds : 1),
		st.twins_hook, st.twins_eager, st.twins_invalid,
		st.pages_diffed, st.pages_whole, changed_lines,
		res.reported_lines);
	cr_assert_eq(fg_tracker_destroy(t), 0);
	for (int i = 0; i < 2; i++) {
		munmap(r[i].base, r[i].len);
		orc_region_fini(&r[i]);
		free(S[i]);
		free(T[i]);
		free(P[i]);
		free(prevrep[i]);
	}
}

PER_BACKEND(threads)

/* ------------------------------------------------------------------ */
/* fork: the child writes, collects and destroys; the parent's oracle must
 * stay exact.  The child writes only private memory (its writes to shared
 * memory would be the parent's bytes too, written by another process). */

enum {
	CHILD_OK = 0,
	CHILD_COLLECT = 10,
	CHILD_ITER,
	CHILD_DESTROY,
	CHILD_SYNC,
};

static const char *child_why(int code)
{
	switch (code) {
	case CHILD_COLLECT:
		return "fg_collect returned neither >= 0 nor -FG_EFORKED";
	case CHILD_ITER:
		return "fg_iter_next failed after a successful collection";
	case CHILD_DESTROY:
		return "fg_tracker_destroy failed";
	case CHILD_SYNC:
		return "pipe synchronisation failed";
	default:
		return "unexpected exit code";
	}
}

static void child_writes(orc_region *anon, uint64_t seed)
{
	orc_rng g;

	orc_rng_init(&g, seed);
	for (int k = 0; k < 64; k++) {
		uint8_t *p = anon->base + orc_below(&g, anon->len - 64);

		memset(p, 0xA5 ^ (int)k, 64);
	}
}

static void some_writes(dsched *s, int n)
{
	for (int k = 0; k < n; k++)
		do_write(s, pick_op(s));
}

static void fork_scenario(fg_backend_id id)
{
	orc_region r[3];
	fg_tracker *t;
	dsched *s = dsched_start(id, 64, 0, r, 128 * KiB, "fork", &t);
	fg_stats st;

	/* Hot pages first, so the fork happens with eager twins in place. */
	for (int e = 0; e < 4; e++) {
		some_writes(s, 100);
		dsched_check(s, ORC_ITER, 0, false);
	}
	for (int iter = 0; iter < 4; iter++) {
		int go[2], status = 0;
		uint64_t cseed = orc_next(&s->g);
		pid_t pid;
		char c = 1;

		some_writes(s, 200); /* dirty pages and twins at fork time */
		cr_assert_eq(pipe(go), 0);
		fflush(NULL);
		pid = fork();
		cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
		if (pid == 0) {
			fg_iter it;
			fg_range rg;
			int rc, more;

			close(go[1]);
			if (read(go[0], &c, 1) != 1)
				_exit(CHILD_SYNC);
			child_writes(&r[0], cseed);
			rc = fg_collect(t, &it);
			if (rc < 0 && rc != -FG_EFORKED)
				_exit(CHILD_COLLECT);
			if (rc >= 0) {
				while ((more = fg_iter_next(&it, &rg)) == 1)
					;
				if (more < 0)
					_exit(CHILD_ITER);
			}
			child_writes(&r[0], cseed + 1);
			if (fg_tracker_destroy(t) != 0)
				_exit(CHILD_DESTROY);
			child_writes(&r[0], cseed + 2);
			_exit(CHILD_OK);
		}
		close(go[0]);
		some_writes(s, 200);
		cr_assert_eq(write(go[1], &c, 1), 1);
		close(go[1]);
		some_writes(s, 200);
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			  "fork %s seed=%" PRIu64 " iteration %d: child %s "
			  "(status %#x): %s",
			  bname(id), s->seed, iter,
			  WIFSIGNALED(status) ? "killed by a signal"
					      : "exited non-zero",
			  status,
			  WIFSIGNALED(status) ? strsignal(WTERMSIG(status))
					      : child_why(WEXITSTATUS(status)));
		dsched_check(s, iter % 2 ? ORC_BITMAP : ORC_ITER, 0, false);
		some_writes(s, 300);
		dsched_check(s, iter % 2 ? ORC_ITER : ORC_BITMAP, 0, false);
	}
	st = stats_of(t);
	dsched_summary(s, &st);
	dsched_fini(s);
	cr_assert_eq(fg_tracker_destroy(t), 0);
	free_regions(r, 3);
	free(s);
}

PER_BACKEND(fork_scenario)

/* ------------------------------------------------------------------ */
/* Targeted races, each a thread C racing the main thread on one page Q,
 * repeated for a time budget (longer on the backends with a hook, where
 * twins are copied outside the collector). */

typedef struct racer {
	_Atomic int go;	    /* 1: run once; -1: exit */
	_Atomic int done;
	_Atomic unsigned delay_ns;
	int what;	    /* RACE_ZERO or RACE_STORE */
	uint8_t *target;
	_Atomic uint64_t value;
} racer;

enum { RACE_ZERO, RACE_STORE };

static void *racer_main(void *arg)
{
	racer *c = arg;

	for (;;) {
		int g;

		for (unsigned k = 0; !(g = atomic_load(&c->go)); k++)
			if (k > 2000)
				sched_yield(); /* cores oversubscribed */
		if (g < 0)
			return NULL;
		atomic_store(&c->go, 0);
		for (uint64_t e = now_ns() + atomic_load(&c->delay_ns);
		     now_ns() < e;)
			;
		if (c->what == RACE_ZERO)
			memset(c->target, 0, ORC_LINE);
		else
			*(volatile uint64_t *)c->target = atomic_load(&c->value);
		atomic_store(&c->done, 1);
	}
}

static void wait_done(racer *c)
{
	for (unsigned k = 0; !atomic_load(&c->done); k++)
		if (k > 2000)
			sched_yield();
}

/* Collect; bit i of the result: [a[i], a[i]+len) lies in one range. */
static unsigned collect_cover2(fg_tracker *t, const void *a0, const void *a1,
			       size_t len, int *n)
{
	const void *a[2] = {a0, a1};
	unsigned hit = 0;
	fg_iter it;
	fg_range rg;
	int more;

	*n = fg_collect(t, &it);
	cr_assert_geq(*n, 0, "fg_collect: %d (%s): %s", *n, fg_strerror(*n),
		      fg_last_error_detail());
	while ((more = fg_iter_next(&it, &rg)) == 1)
		for (int i = 0; i < 2; i++)
			if (a[i] && (uintptr_t)rg.addr <= (uintptr_t)a[i] &&
			    (uintptr_t)rg.addr + rg.len >=
				    (uintptr_t)a[i] + len)
				hit |= 1u << i;
	cr_assert_eq(more, 0);
	return hit;
}

static bool collect_covers(fg_tracker *t, const void *a, size_t len, int *n)
{
	return collect_cover2(t, a, NULL, len, n) & 1;
}

/* Thread C zeroes a whole 64-byte line of Q (all 0x11 before) while the
 * main thread collects: the line must be reported by that collection or
 * the next.  A twin that reads as zeros (its memory given back while a
 * hook was copying into it, say) hides exactly such a line. */
static void zero_during_collect(fg_backend_id id)
{
	const size_t ps = orc_page();
	/* Large enough that every collection's bookkeeping over the region's
	 * twins takes tens of microseconds. */
	const size_t len = hooked(id) ? 64 * MiB : MiB;
	const uint64_t budget = hooked(id) ? 2500000000u : 300000000u;
	uint64_t seed, t0, tries = 0, missed = 0, avg_ns = 1000;
	char miss[400] = "";
	fg_tracker *t;
	pthread_t th;
	racer c = {0};
	uint8_t *a;
	orc_rng g;
	int n;

	ORC_REQUIRE_BACKEND(id);
	seed = orc_seed("zero_during_collect");
	orc_rng_init(&g, seed);
	a = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	cr_assert_neq(a, MAP_FAILED, "mmap: %s", strerror(errno));
	t = make_diff_tracker(id, 64, 0);
	cr_assert_eq(fg_register(t, a, len), 0);
	c.what = RACE_ZERO;
	cr_assert_eq(pthread_create(&th, NULL, racer_main, &c), 0);
	t0 = now_ns();
	while (now_ns() - t0 < budget) {
		uint8_t *q = a + orc_below(&g, 4) * ps;
		uint8_t *line = q + orc_below(&g, ps / ORC_LINE) * ORC_LINE;
		uint64_t c0;
		bool in_first;

		memset(q, 0x11, ps);
		for (int k = 0; k < 8; k++) /* until Q is clean */
			if (!collect_covers(t, q, ps, &n) && !n)
				break;
		/* Any collection may be raced; those that trim the twins'
		 * memory (every 64th today: tracker.c, refine) are where a
		 * lost twin shows, so race mostly those. */
		while (orc_below(&g, 8) && stats_of(t).collections % 64 != 63)
			collect_covers(t, q, ps, &n);
		c.target = line;
		atomic_store(&c.done, 0);
		atomic_store(&c.delay_ns, (unsigned)orc_below(&g, avg_ns * 3 / 2));
		atomic_store(&c.go, 1);
		c0 = now_ns();
		in_first = collect_covers(t, line, ORC_LINE, &n);
		/* Delays spread over about the raced collection's length. */
		avg_ns = (avg_ns * 7 + (now_ns() - c0)) / 8;
		wait_done(&c);
		tries++;
		if (!collect_covers(t, line, ORC_LINE, &n) && !in_first &&
		    !missed++)
			snprintf(miss, sizeof miss,
				 "try %" PRIu64 ": MISSED: line %p (page + "
				 "%#zx) went from 0x11 bytes to zeros during "
				 "a collection; neither that collection nor "
				 "the next reported it (the next reported %d "
				 "range(s))",
				 tries, (void *)line, (size_t)(line - q), n);
	}
	atomic_store(&c.go, -1);
	pthread_join(th, NULL);
	fg_stats st = stats_of(t);
	cr_assert_eq(missed, 0,
		     "zero_during_collect %s seed=%" PRIu64 ": %" PRIu64
		     " of %" PRIu64 " zeroed lines missed; first: %s",
		     bname(id), seed, missed, tries, miss);
	fprintf(stderr,
		"zero_during_collect %-10s: seed=%" PRIu64 " %" PRIu64
		" tries, %" PRIu64 " collections (mean %.1f us), missed=0 (twins hook=%" PRIu64
		" pages diffed=%" PRIu64 ")\n",
		bname(id), seed, tries, st.collections,
		(double)st.collect_ns_total / (double)st.collections / 1e3,
		st.twins_hook,
		st.pages_diffed);
	cr_assert_eq(fg_tracker_destroy(t), 0);
	munmap(a, len);
}

PER_BACKEND(zero_during_collect)

/* Thread C stores to the last line of a protected page Q (a first-write
 * fault) while the main thread calls fg_mark_dirty on Q's first slot and
 * stores there - the documented protocol before the kernel writes tracked
 * memory, which leaves Q writable.  Both writes complete before the next
 * collection begins, which must report both lines.  A twin copied by C's
 * hook after fg_mark_dirty made Q writable holds the main thread's store
 * and hides it. */
static void mark_dirty_race(fg_backend_id id)
{
	const size_t ps = orc_page(), len = 16 * ps;
	const uint64_t budget = hooked(id) ? 2500000000u : 300000000u;
	uint64_t seed, t0, tries = 0, missed = 0, diffed = 0;
	char miss[400] = "";
	fg_tracker *t;
	pthread_t th;
	racer c = {0};
	uint8_t *a, *q;
	orc_rng g;
	int n;

	ORC_REQUIRE_BACKEND(id);
	seed = orc_seed("mark_dirty_race");
	orc_rng_init(&g, seed);
	a = orc_map_anon(len, NULL);
	cr_assert_not_null(a, "mmap: %s", strerror(errno));
	memset(a, 0x11, len);
	t = make_diff_tracker(id, 64, 0);
	cr_assert_eq(fg_register(t, a, len), 0);
	q = a + 5 * ps;
	volatile uint64_t *mine = (volatile uint64_t *)q;
	c.what = RACE_STORE;
	c.target = q + ps - 8;
	cr_assert_eq(pthread_create(&th, NULL, racer_main, &c), 0);
	t0 = now_ns();
	while (now_ns() - t0 < budget) {
		uint64_t old = *mine, cold = *(volatile uint64_t *)c.target;
		int rc;

		for (int k = 0; k < 8; k++) /* until Q is clean */
			if (!collect_covers(t, q, ps, &n) && !n)
				break;
		atomic_store(&c.value, cold + 1);
		atomic_store(&c.done, 0);
		atomic_store(&c.go, 1);
		for (uint64_t e = now_ns() + orc_below(&g, 3000); now_ns() < e;)
			;
		rc = fg_mark_dirty(t, (void *)mine, 8);
		cr_assert_eq(rc, 0, "fg_mark_dirty: %d (%s)", rc,
			     fg_strerror(rc));
		*mine = old + 1;
		wait_done(&c);
		tries++;
		uint64_t before = stats_of(t).pages_diffed;
		unsigned hit = collect_cover2(t, (const void *)mine, c.target,
					      8, &n);

		diffed += stats_of(t).pages_diffed > before;
		if (hit != 3 && !missed++)
			snprintf(miss, sizeof miss,
				 "try %" PRIu64 ": MISSED: %s%s%s; both "
				 "stores completed before the collection "
				 "began (it reported %d range(s))",
				 tries,
				 hit & 1 ? "" : "the main thread's store "
						"after fg_mark_dirty (first "
						"line of Q)",
				 hit & 3 ? "" : " and ",
				 hit & 2 ? "" : "thread C's store (last line "
						"of Q, a first-write fault)",
				 n);
	}
	atomic_store(&c.go, -1);
	pthread_join(th, NULL);
	cr_assert_eq(missed, 0,
		     "mark_dirty_race %s seed=%" PRIu64 ": %" PRIu64 " of %" PRIu64
		     " stores after fg_mark_dirty missed; first: %s",
		     bname(id), seed, missed, tries, miss);
	fprintf(stderr,
		"mark_dirty_race %-10s: seed=%" PRIu64 " %" PRIu64 " tries, %" PRIu64
		" with Q diffed against a twin, missed=0\n",
		bname(id), seed, tries, diffed);
	cr_assert_eq(fg_tracker_destroy(t), 0);
	munmap(a, len);
}

PER_BACKEND(mark_dirty_race)
