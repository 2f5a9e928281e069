/* fg_boehm.c - Boehm GC's virtual dirty bits from the fgvm toolkit.
 *
 * Linked into the adapter's libgc.so.1 (Boehm GC 8.2.2 built with
 * -DEXTERNAL_VDB, see patches/).  A constructor installs the table of
 * GC_set_external_vdb(); when the collector switches its incremental mode
 * on, dirty_init creates a toolkit tracker and every heap section is
 * registered with it.  At each retrieval (world stopped) the tracker's
 * dirty cards are turned into one word per heap block: bit i is the i-th
 * 64-byte line of the block (HBLKSIZE 4096 / 64 bits).  The patched
 * mark.c pushes only the marked objects overlapping a dirty line.
 *
 * Precision: below page-sized cards the tracker runs with DIFF precision
 * (cards whose bytes changed).  DIFF compares with the epoch start, which
 * must be what the collector scanned, with every object it marked still
 * marked.  Two things break that, and both make pages read whole:
 *  - Boehm marks while the program runs (time-sliced incremental mode):
 *    it says so (concurrent_mark) and the next retrieval reports written
 *    pages whole;
 *  - after the retrieval the collector itself writes into the heap and
 *    un-marks objects (GC_finalize unlinks the entries of dead
 *    disappearing links and clears their mark bits) and scans more (the
 *    objects reachable from finalizable ones) while the program runs.
 *    If the program then registers a link in the same hash bucket, the
 *    allocator hands back the same entry and the bucket's line holds
 *    what it held at the retrieval: compared with the epoch start it is
 *    clean, and the new, unmarked entry is freed while linked.  So when
 *    a collection that finalized is over (finish_collection) the adapter
 *    retrieves once more, at page precision, and carries those pages,
 *    whole, into the next retrieval; the comparison restarts from there.
 *    (Without finalization, nothing is written or scanned after the
 *    retrieval but with the world stopped, where the comparison holds.)
 *
 * A third thing is outside any dirty bit: a mark procedure may mark from
 * memory the tracker does not watch.  Guile's threads are heap objects
 * whose mark procedure marks the thread's VM stack, mmap'd outside the
 * heap; the thread object can be byte for byte the same at two
 * retrievals while its stack holds new references.  Page precision hid
 * it (something on the thread's page is written between any two
 * collections); DIFF did not, and Guile freed live objects.  Patch 2
 * therefore pushes the marked objects of every block whose descriptor
 * is a mark procedure (or per object) at every retrieval, dirty or not
 * (GC_rescan_always; tests/test_boehm_cards.c, offheap).  Stock Boehm's
 * own MPROTECT_VDB has the same hole.
 *
 * Everything called with the world stopped avoids malloc (another thread
 * may be stopped inside it): the adapter's arrays are mmap'd, and the
 * toolkit's collection does not allocate from malloc either.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mremap */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <gc.h>
#include <fg.h>

#include "gc_fg.h"

#define API __attribute__((visibility("default")))
#define AUTO_WINDOW 3
#define AUTO_NS_PER_BYTE 1.0
#define AUTO_TRIAL_PCT 10
#define AUTO_UNJUDGED_MAX 8
#define AUTO_WAIT0 32
#define AUTO_WAIT_MAX 1024

#define LINES_ALL (~(GC_word)0)

/* Exempt blocks (uffd-async): blocks a collection freed, and the blocks
 * allocated from them since the last collection finished (young), hold no
 * marked object the collector relies on, so the tracker leaves them alone
 * (no re-protection, no fault when they are filled: fg_set_exempt) and
 * they read dirty, whole, at every retrieval.  When a collection
 * finishes, a young block still allocated holds survivors: it is watched
 * again and read whole once more (its objects were scanned with no twin
 * to compare with later); pointer-free blocks stay exempt (never
 * scanned).  New heap sections are not exempt: a program that grows its
 * heap is building long-lived data, which would pay that extra reading;
 * blocks that died once are likely to hold short-lived objects again. */
#define EX_EXEMPT 1
#define EX_YOUNG 2
#define EX_PTRFREE 4

struct sect {
	uintptr_t base;
	size_t len;
	size_t nblocks;
	GC_word *lines;	  /* one word per block, mmap'd */
	uint8_t *ptrfree; /* mprotect: blocks kept writable (pointer-free) */
	uint8_t *ex;	  /* uffd-async: EX_* per block, or NULL */
	uint8_t *snap;	  /* FG_BOEHM_CHECK: the heap at the last retrieval */
	int tracked;	  /* registered with the tracker */
};

static struct {
	fg_tracker *t;
	const char *backend;	  /* name, NULL while not supplying bits */
	char want_backend[32];	  /* GC_fg_set_backend */
	size_t want_card;	  /* GC_fg_set_card_size before init */
	size_t hblk;		  /* the collector's block size */
	size_t line;		  /* bytes per bit: hblk / 64 */
	int mprotect;		  /* backend is mprotect */
	int diff;		  /* DIFF precision (cards below a page) */
	int exempt;		  /* exempt free and young blocks */
	uintptr_t new_sect;	  /* add_heap: its GC_freehblk is not exempted */
	fg_range *young;	  /* runs of blocks made young since the last */
	size_t nyoung, capyoung;  /* finish (some may be free again) */
	int concurrent;		  /* Boehm marked with the world running */
	int all_dirty;		  /* next retrieval: everything */
	int precleaned;		  /* pre_stop_world retrieved this interval */
	int no_preclean;	  /* FG_BOEHM_PRECLEAN=0 */
	int check;		  /* FG_BOEHM_CHECK: 1, or 2 to abort */
	unsigned long missed;	  /* lines check_lines found unreported */
	struct sect *s;		  /* sorted by base, mmap'd */
	size_t ns, caps;
	struct sect *last;	  /* lookup cache */
	fg_range *prev;		  /* last retrieval's ranges (to clear) */
	size_t nprev, capprev;
	int prev_all;		  /* the last retrieval set everything */
	fg_range *carry;	  /* written while a collection finished: */
	size_t ncarry, capcarry;  /* whole pages, for the next retrieval */
	struct GC_fg_stats st;
	/* FG_CARD=auto (see auto_judge). */
	int autocard;		  /* on */
	int auto_off;		  /* twins off (page precision) */
	int auto_warm;		  /* this window is the first after on */
	unsigned long auto_next;  /* retrieval of the next judgement */
	unsigned long auto_wait;  /* retrievals the next off period lasts */
	unsigned long long auto_ns, auto_res, auto_page; /* window start */
	unsigned long long auto_diffed, auto_copied;
	unsigned auto_unjudged;	  /* windows in a row not judged */
	int auto_log;		  /* FG_BOEHM_AUTO_LOG=1: each judgement */
	char err[256];
} A;

static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(A.err, sizeof A.err, fmt, ap);
	va_end(ap);
	fprintf(stderr, "libgc (fgvm adapter): %s\n", A.err);
}

/* mmap-backed growth: no malloc while the world is stopped. */
static void *grow(void *v, size_t *cap, size_t elem, size_t need)
{
	size_t n = *cap ? *cap : 16;
	void *w;

	while (n < need)
		n *= 2;
	if (n == *cap)
		return v;
	w = v ? mremap(v, *cap * elem, n * elem, MREMAP_MAYMOVE)
	      : mmap(NULL, n * elem, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (w == MAP_FAILED)
		return NULL;
	*cap = n;
	return w;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void unprotect_ptrfree(void);
static GC_word GC_CALLBACK vdb_block_dirty_lines(void *h);

static struct sect *find(uintptr_t a)
{
	size_t lo = 0, hi = A.ns;

	if (A.last && a - A.last->base < A.last->len)
		return A.last;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		struct sect *s = &A.s[mid];

		if (a < s->base)
			hi = mid;
		else if (a - s->base >= s->len)
			lo = mid + 1;
		else
			return A.last = s;
	}
	return NULL;
}

static void fill_all(GC_word v)
{
	for (size_t i = 0; i < A.ns; i++)
		for (size_t b = 0; b < A.s[i].nblocks; b++)
			A.s[i].lines[b] = v;
}

/* Set the lines of [a, a+len) in their blocks. */
static void set_lines(uintptr_t a, size_t len)
{
	uintptr_t end = a + len;

	while (a < end) {
		struct sect *s = find(a);
		uintptr_t stop;

		if (!s) {
			/* Not heap (cannot happen: only sections are
			 * registered); skip to the next section. */
			size_t i;

			for (i = 0; i < A.ns && A.s[i].base <= a; i++)
				;
			if (i == A.ns || A.s[i].base >= end)
				return;
			a = A.s[i].base;
			continue;
		}
		stop = s->base + s->len < end ? s->base + s->len : end;
		while (a < stop) {
			size_t b = (a - s->base) / A.hblk;
			uintptr_t bstart = s->base + b * A.hblk;
			uintptr_t bend = bstart + A.hblk < stop ? bstart + A.hblk
								 : stop;
			size_t first = (a - bstart) / A.line;
			size_t last = (bend - bstart + A.line - 1) / A.line;

			if (first == 0 && last >= 64)
				s->lines[b] = LINES_ALL;
			else
				s->lines[b] |= (last >= 64 ? LINES_ALL
					       : (((GC_word)1 << last) - 1)) &
					      ~(((GC_word)1 << first) - 1);
			a = bend;
		}
	}
}

static void clear_prev(void)
{
	if (A.prev_all) {
		fill_all(0);
		A.prev_all = 0;
	} else {
		for (size_t i = 0; i < A.nprev; i++) {
			uintptr_t a = (uintptr_t)A.prev[i].addr;
			uintptr_t e = a + A.prev[i].len;

			for (; a < e; a = (a - a % A.hblk) + A.hblk) {
				struct sect *s = find(a);

				if (s)
					s->lines[(a - s->base) / A.hblk] = 0;
			}
		}
	}
	A.nprev = 0;
}

static void remember(fg_range **v, size_t *n, size_t *cap, fg_range r)
{
	fg_range *w = grow(*v, cap, sizeof **v, *n + 1);

	if (!w) {
		/* Cannot remember it: everything reads dirty (and is
		 * cleared) at the next retrieval. */
		A.all_dirty = 1;
		return;
	}
	*v = w;
	(*v)[(*n)++] = r;
}

/* The start of a retrieval: the last one's lines cleared, the pages
 * written while the last collection finished set. */
static void start_lines(void)
{
	clear_prev();
	for (size_t i = 0; i < A.ncarry; i++) {
		set_lines((uintptr_t)A.carry[i].addr, A.carry[i].len);
		remember(&A.prev, &A.nprev, &A.capprev, A.carry[i]);
	}
	A.ncarry = 0;
}

static void mark_everything(void)
{
	fill_all(LINES_ALL);
	A.prev_all = 1;
}

static int GC_CALLBACK vdb_protection_needs(void)
{
	return A.mprotect ? GC_PROTECTS_POINTER_HEAP | GC_PROTECTS_PTRFREE_HEAP
			  : GC_PROTECTS_NONE;
}

static int start_tracker(void)
{
	fg_options o = FG_OPTIONS_INIT;
	long ps = sysconf(_SC_PAGESIZE);
	const char *e;
	size_t card;
	int rc;

	if (A.want_backend[0]) {
		rc = fg_backend_from_name(A.want_backend, &o.backend);
		if (rc) {
			say("GC_fg_set_backend(\"%s\"): %s", A.want_backend,
			    fg_strerror(rc));
			return rc;
		}
	}
	card = A.want_card;
	o.card_size = A.want_card; /* 0: FG_CARD or the page size */
	/* FG_CARD=auto (experimental): 64-byte lines with sticky twins,
	 * turned off while they do not pay (auto_judge).  Otherwise the
	 * tracker's own grammar ("4k" is 4096 here too); a bad value makes
	 * fg_tracker_create fail and say so. */
	e = getenv("FG_CARD");
	if (!card && e && !strcmp(e, "auto")) {
		card = o.card_size = 64;
		A.autocard = 1;
	}
	else if (!card && e && *e && fg_parse_size(e, &card))
		card = 0;
	if (!card)
		card = (size_t)ps;
	/* Below page-sized cards: DIFF precision, unless FG_BOEHM_TWINS=none
	 * asks for page precision (every card of a written page dirty).
	 * Twin policies (fg.h):
	 *  - sticky, the default: every page reported written gets a twin,
	 *    kept until the page is written again (then compared and updated
	 *    in place).  Sparse random writes to a large old heap are then
	 *    exact, at the price of up to one twin per page ever written:
	 *    FG_BOEHM_TWIN_CAP caps them (bytes, or a percentage of the heap
	 *    such as "25%"; default 100%), past which the pages written
	 *    longest ago read whole.  FG_CARD=auto also turns the twins off
	 *    while they do not pay (auto_judge).
	 *  - adaptive: twins only for pages written before and found sparse,
	 *    under a budget of 10% of the heap unless FG_BOEHM_TWIN_CAP says
	 *    otherwise: little memory, but random sparse writes mostly find
	 *    no twin (bench/RESULTS.md).
	 *  - hot: only the first-write hook's and eager ones. */
	e = getenv("FG_BOEHM_TWINS");
	o.precision = card < (size_t)ps && !(e && !strcmp(e, "none"))
			      ? FG_PRECISION_DIFF
			      : FG_PRECISION_PAGE;
	o.twin_policy = FG_TWIN_STICKY;
	o.twin_cap_pct = 100;
	if (e && *e && strcmp(e, "none") && strcmp(e, "sticky")) {
		if (!strcmp(e, "adaptive")) {
			o.twin_policy = FG_TWIN_ADAPTIVE;
			o.twin_cap_pct = 10;
		} else if (!strcmp(e, "hot")) {
			o.twin_policy = FG_TWIN_HOT;
		} else {
			say("FG_BOEHM_TWINS=%s: use sticky, adaptive, hot or "
			    "none; sticky it is", e);
		}
	}
	if ((e = getenv("FG_BOEHM_TWIN_CAP")) && *e) {
		char *end;
		unsigned long v = strtoul(e, &end, 10);
		size_t b;

		if (*end == '%' && !end[1] && v >= 1 && v <= 100)
			o.twin_cap_pct = (unsigned)v;
		else if (!fg_parse_size(e, &b))
			o.twin_cap = b;
		else
			say("FG_BOEHM_TWIN_CAP=%s: bytes (\"64M\") or a "
			    "percentage of the heap (1%% to 100%%); %u%% it is",
			    e, o.twin_cap_pct);
	}
	rc = fg_tracker_create(&o, &A.t);
	if (rc) {
		say("cannot track the heap (%s: %s); incremental mode stays off",
		    fg_strerror(rc), fg_last_error_detail());
		return rc;
	}
	A.backend = fg_backend_name(fg_tracker_backend(A.t));
	A.mprotect = fg_tracker_backend(A.t) == FG_BACKEND_MPROTECT;
	A.diff = o.precision == FG_PRECISION_DIFF;
	A.autocard = A.autocard && A.diff;
	A.auto_wait = AUTO_WAIT0;
	A.auto_warm = 1;
	e = getenv("FG_BOEHM_AUTO_LOG");
	A.auto_log = e && *e == '1';
	/* Only uffd-async can leave pages out of a collection. */
	e = getenv("FG_BOEHM_EXEMPT");
	A.exempt = fg_tracker_backend(A.t) == FG_BACKEND_UFFD_ASYNC &&
		   !(e && strcmp(e, "0") == 0);
	return 0;
}

static int GC_CALLBACK vdb_dirty_init(size_t hblk)
{
	if (hblk % 64 || hblk < 64) {
		say("heap block size %zu is not a multiple of 64", hblk);
		return 0;
	}
	A.hblk = hblk;
	A.line = hblk / 64;
	if (start_tracker())
		return 0;
	return 1;
}

/* mmap'd (no malloc with the world stopped); the collector cannot go on
 * without it. */
static void *section_array(size_t size, size_t section, const char *what)
{
	void *m = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED) {
		say("out of memory for the %s of a %zu-byte heap section",
		    what, section);
		abort();
	}
	return m;
}

static void GC_CALLBACK vdb_add_heap(void *start, size_t bytes)
{
	struct sect *v, s = {(uintptr_t)start, bytes, 0, NULL, NULL, 0};
	size_t i;
	int rc;

	if (!A.t || !bytes)
		return;
	s.nblocks = (bytes + A.hblk - 1) / A.hblk;
	s.lines = section_array(s.nblocks * sizeof(GC_word), bytes,
				"dirty lines");
	if (A.mprotect)
		s.ptrfree = section_array(s.nblocks, bytes, "block kinds");
	if (A.exempt)
		s.ex = section_array(s.nblocks, bytes, "block states");
	rc = fg_register(A.t, start, bytes);
	if (rc) {
		/* Sound: an untracked section reads dirty for ever. */
		say("heap section [%p, +%zu) is not tracked (%s: %s); it "
		    "reads dirty",
		    start, bytes, fg_strerror(rc), fg_last_error_detail());
	}
	s.tracked = rc == 0;
	for (i = 0; i < s.nblocks; i++)
		s.lines[i] = LINES_ALL; /* until the first retrieval */
	A.new_sect = s.base;
	A.prev_all = 1; /* which clears them with the rest */
	v = grow(A.s, &A.caps, sizeof *A.s, A.ns + 1);
	if (!v) {
		say("out of memory for the heap section table");
		abort();
	}
	A.s = v;
	for (i = A.ns; i > 0 && A.s[i - 1].base > s.base; i--)
		A.s[i] = A.s[i - 1];
	A.s[i] = s;
	A.ns++;
	A.last = NULL;
}

/* One toolkit collection OR'ed into the lines.  The interval between two
 * of Boehm's retrievals may be made of two collections: one just before
 * the world stops (pre_stop_world: the program still runs, so most of the
 * re-protection and comparing happens outside the pause) and one in the
 * pause, which covers only what was written in between.  The union is
 * what was written in the interval: each collection reports what was
 * written since the previous one, and the second restarts the epoch. */
static void collect_into_lines(void)
{
	unsigned flags = A.concurrent ? FG_COLLECT_WHOLE_PAGES : 0;
	fg_iter it;
	fg_range r;
	int n;

	n = fg_collect_flags(A.t, &it, flags);
	if (n < 0) {
		say("collection failed (%s: %s); everything reads dirty",
		    fg_strerror(n), fg_last_error_detail());
		mark_everything();
	} else {
		while (fg_iter_next(&it, &r) == 1) {
			set_lines((uintptr_t)r.addr, r.len);
			A.st.dirty_bytes += r.len;
			if (!A.prev_all)
				remember(&A.prev, &A.nprev, &A.capprev, r);
		}
	}
}

/* Runs with the allocation lock held and the world running. */
static void GC_CALLBACK vdb_pre_stop_world(void)
{
	double t0 = now_ms();

	if (!A.t || A.no_preclean)
		return;
	start_lines();
	collect_into_lines();
	A.precleaned = 1;
	A.st.preclean_ms_total += now_ms() - t0;
}

/* FG_BOEHM_CHECK=1: an oracle for debugging and for the tests.  The
 * heap is copied at every retrieval, and the next retrieval checks that
 * every line whose bytes changed since then reads dirty.  Each miss is
 * counted (and the first 20 are printed); FG_BOEHM_CHECK=abort aborts at
 * the first.  It checks the tracker, not the collector: a line written
 * back to its old bytes is not a miss.  Reads go through /proc/self/mem,
 * which also reads blocks that the collector unmapped.  The world is
 * stopped: no stdio (another thread may hold its lock), no malloc. */
static void check_miss(uintptr_t line, struct sect *s, uintptr_t h)
{
	char msg[200];
	int n;

	A.missed++;
	if (A.missed <= 20) {
		n = snprintf(msg, sizeof msg,
			     "libgc (fgvm adapter): FG_BOEHM_CHECK: retrieval "
			     "%lu: line %#lx (block %#lx, state %d) changed "
			     "and was not reported\n",
			     A.st.collections, (unsigned long)line,
			     (unsigned long)h,
			     s->ex ? s->ex[(h - s->base) / A.hblk] : -1);
		if (n > 0)
			(void)!write(2, msg, (size_t)n);
	}
	if (A.check > 1)
		abort();
}

static void check_lines(void)
{
	static int memfd = -1;
	static uint8_t *buf;
	const size_t chunk = (size_t)1 << 20;

	if (memfd < 0) {
		memfd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
		buf = mmap(NULL, chunk, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (memfd < 0 || buf == MAP_FAILED) {
			A.check = -1; /* print_check says so */
			return;
		}
	}
	for (size_t i = 0; i < A.ns; i++) {
		struct sect *s = &A.s[i];
		int had = s->snap != NULL;

		if (!had) {
			s->snap = mmap(NULL, s->len, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (s->snap == MAP_FAILED) {
				s->snap = NULL;
				continue;
			}
		}
		for (size_t off = 0; off < s->len; off += chunk) {
			size_t n = s->len - off < chunk ? s->len - off : chunk;
			uint8_t *old = s->snap + off;

			if (pread(memfd, buf, n, (off_t)(s->base + off)) !=
			    (ssize_t)n) {
				memset(buf, 0, n);
				had = 0; /* unreadable: checked from next time */
			}
			for (size_t o = 0; had && o < n; o += A.hblk) {
				uintptr_t h = s->base + off + o;
				GC_word lines = vdb_block_dirty_lines((void *)h);

				if (lines == LINES_ALL ||
				    !memcmp(buf + o, old + o, A.hblk))
					continue;
				for (size_t l = 0; l < 64; l++) {
					size_t at = o + l * A.line;

					if (!((lines >> l) & 1) &&
					    memcmp(buf + at, old + at, A.line))
						check_miss(h + l * A.line, s, h);
				}
			}
			memcpy(old, buf, n);
		}
	}
}

/* FG_CARD=auto: every AUTO_WINDOW retrievals, weigh what the twins cost
 * (the toolkit's time comparing and taking them) against what their
 * lines saved (the bytes page precision would have pushed again, less
 * those pushed, at AUTO_NS_PER_BYTE of marking each).  A window with
 * more new twins than comparisons is not judged (up to AUTO_UNJUDGED_MAX
 * in a row): the program is filling memory, and its twins pay, if ever,
 * when it writes there again; the next judgement covers both.  When they cost
 * more, they are turned off (a cap under a page: written pages read
 * whole) for auto_wait retrievals, then on again under a cap of
 * AUTO_TRIAL_PCT of the heap: a program whose twins did not pay once
 * does not get twins for its whole heap again.  Each failed trial
 * doubles the wait (up to AUTO_WAIT_MAX), a paying window resets it.
 * The first window after turning on is a warm-up (new twins, nothing
 * compared yet) and is not judged.  Called with the world stopped: the
 * toolkit calls do not allocate. */
static void auto_judge(void)
{
	fg_stats fs = {.size = sizeof fs};
	unsigned long long res = GC_get_bytes_rescanned();
	unsigned long long page = GC_get_bytes_rescanned_page();
	unsigned long n = A.st.collections;
	int judge = 0, restart = 0;

	if (n < A.auto_next || fg_get_stats(A.t, &fs))
		return;
	if (A.auto_off) {
		if (fg_set_twin_cap(A.t, 0, AUTO_TRIAL_PCT) == 0) {
			A.auto_off = 0;
			A.auto_warm = 1;
			A.st.auto_on++;
		}
		restart = 1;
	} else if (A.auto_warm) {
		A.auto_warm = 0;
		restart = 1;
	} else if (fs.pages_diffed - A.auto_diffed >=
			   fs.twins_sticky - A.auto_copied ||
		   ++A.auto_unjudged >= AUTO_UNJUDGED_MAX) {
		judge = 1;
	}
	/* else more new twins than comparisons: memory being filled, the
	 * copies an investment not used yet; the window grows. */
	if (judge) {
		double saved = (double)(page - A.auto_page - (res - A.auto_res));

		if (A.auto_log) {
			char msg[200];
			int k = snprintf(msg, sizeof msg,
					 "libgc (fgvm adapter): FG_CARD=auto: "
					 "retrieval %lu: lines saved %.0f "
					 "bytes, twins cost %.3f ms\n",
					 n, saved,
					 (fs.diff_ns - A.auto_ns) / 1e6);

			if (k > 0)
				(void)!write(2, msg, (size_t)k);
		}

		if (saved * AUTO_NS_PER_BYTE < (double)(fs.diff_ns - A.auto_ns)) {
			if (fg_set_twin_cap(A.t, 1, 0) == 0) {
				A.auto_off = 1;
				A.st.auto_off++;
				A.auto_next = n + A.auto_wait;
				A.auto_wait = A.auto_wait * 2 < AUTO_WAIT_MAX
						      ? A.auto_wait * 2
						      : AUTO_WAIT_MAX;
			}
		} else {
			A.auto_wait = AUTO_WAIT0;
		}
		restart = 1;
	}
	if (restart) {
		A.auto_unjudged = 0;
		A.auto_ns = fs.diff_ns;
		A.auto_res = res;
		A.auto_page = page;
	}
	if (!A.auto_off)
		A.auto_next = n + AUTO_WINDOW;
	A.auto_diffed = fs.pages_diffed;
	A.auto_copied = fs.twins_sticky;
}

static void GC_CALLBACK vdb_read_dirty(int output_unneeded)
{
	double t0 = now_ms(), dt;

	(void)output_unneeded; /* the epoch restarts either way */
	if (!A.t)
		return;
	if (!A.precleaned)
		start_lines();
	A.precleaned = 0;
	collect_into_lines();
	if (A.concurrent) {
		A.st.whole_epochs++;
		A.concurrent = 0;
	}
	if (A.all_dirty) {
		mark_everything();
		A.all_dirty = 0;
	}
	if (A.mprotect)
		unprotect_ptrfree();
	/* Untracked sections read dirty. */
	for (size_t i = 0; i < A.ns; i++)
		if (!A.s[i].tracked)
			for (size_t b = 0; b < A.s[i].nblocks; b++)
				A.s[i].lines[b] = LINES_ALL;
	if (A.check > 0)
		check_lines();
	A.st.collections++;
	if (A.autocard)
		auto_judge();
	dt = now_ms() - t0;
	A.st.retrieve_ms_total += dt;
	if (dt > A.st.retrieve_ms_max)
		A.st.retrieve_ms_max = dt;
}

static GC_word GC_CALLBACK vdb_block_dirty_lines(void *h)
{
	struct sect *s = find((uintptr_t)h);
	size_t b;

	if (!s)
		return LINES_ALL;
	b = ((uintptr_t)h - s->base) / A.hblk;
	if (s->ex && (s->ex[b] & EX_EXEMPT))
		return LINES_ALL;
	return s->lines[b];
}

/* Apply fn to the runs of blocks of [a, a+bytes) (clipped to sections)
 * whose state matches (ex & mask) == want; fn gets the section too. */
static void for_block_runs(uintptr_t a, size_t bytes, uint8_t mask,
			   uint8_t want,
			   void (*fn)(struct sect *, size_t b0, size_t b1))
{
	uintptr_t e = a + bytes;

	while (a < e) {
		struct sect *s = find(a);
		size_t b, end, run = SIZE_MAX;

		if (!s) {
			a += A.hblk;
			continue;
		}
		b = (a - s->base) / A.hblk;
		end = (e - s->base + A.hblk - 1) / A.hblk;
		if (end > s->nblocks)
			end = s->nblocks;
		for (; b <= end; b++) {
			int ok = b < end && s->ex &&
				 (s->ex[b] & mask) == want;

			if (ok && run == SIZE_MAX)
				run = b;
			if (!ok && run != SIZE_MAX) {
				fn(s, run, b);
				run = SIZE_MAX;
			}
		}
		a = s->base + end * A.hblk;
	}
}

static void exempt_run(struct sect *s, size_t b0, size_t b1)
{
	memset(s->ex + b0, EX_EXEMPT, b1 - b0);
	if (s->tracked)
		(void)fg_set_exempt(A.t, (void *)(s->base + b0 * A.hblk),
				    (b1 - b0) * A.hblk, 1);
	A.st.exempted_blocks += b1 - b0;
}

static void young_run(struct sect *s, size_t b0, size_t b1)
{
	fg_range r = {(void *)(s->base + b0 * A.hblk), (b1 - b0) * A.hblk};

	for (size_t b = b0; b < b1; b++)
		s->ex[b] |= EX_YOUNG;
	remember(&A.young, &A.nyoung, &A.capyoung, r);
}

static void young_ptrfree_run(struct sect *s, size_t b0, size_t b1)
{
	for (size_t b = b0; b < b1; b++)
		s->ex[b] |= EX_YOUNG | EX_PTRFREE;
}

static void mark_dirty_run(struct sect *s, size_t b0, size_t b1)
{
	(void)fg_mark_dirty(A.t, (void *)(s->base + b0 * A.hblk),
			    (b1 - b0) * A.hblk);
}

/* A collection finished: young blocks with pointers are watched again,
 * and read whole at the next retrieval (they may hold survivors that
 * were written after the collector scanned them). */
static void watch_run(struct sect *s, size_t b0, size_t b1)
{
	fg_range r = {(void *)(s->base + b0 * A.hblk), (b1 - b0) * A.hblk};

	memset(s->ex + b0, 0, b1 - b0);
	if (s->tracked)
		(void)fg_set_exempt(A.t, r.addr, r.len, 0);
	remember(&A.carry, &A.ncarry, &A.capcarry, r);
	A.st.watched_blocks += b1 - b0;
}

static void GC_CALLBACK vdb_free_blocks(void *h, size_t bytes)
{
	if (!A.t || !A.exempt)
		return;
	if ((uintptr_t)h == A.new_sect) { /* GC_add_to_heap's */
		A.new_sect = 0;
		return;
	}
	for_block_runs((uintptr_t)h, bytes, 0, 0, exempt_run);
}

/* mprotect: like Boehm's own MPROTECT_VDB, pointer-free blocks are never
 * left protected, so that system calls can write into them (Guile reads
 * files into pointer-free buffers): the blocks are remembered when they
 * are handed out and un-protected again after every retrieval.  They read
 * dirty, which costs nothing: the collector does not scan them. */
static void note_ptrfree(uintptr_t a, size_t bytes, int ptrfree)
{
	for (uintptr_t e = a + bytes; a < e; a += A.hblk) {
		struct sect *s = find(a);

		if (s && s->ptrfree)
			s->ptrfree[(a - s->base) / A.hblk] = ptrfree != 0;
	}
}

static void unprotect_ptrfree(void)
{
	for (size_t i = 0; i < A.ns; i++) {
		struct sect *s = &A.s[i];
		size_t run = SIZE_MAX;

		if (!s->ptrfree || !s->tracked)
			continue;
		for (size_t b = 0; b <= s->nblocks; b++) {
			int pf = b < s->nblocks && s->ptrfree[b];

			if (pf && run == SIZE_MAX)
				run = b;
			if (!pf && run != SIZE_MAX) {
				(void)fg_mark_dirty(A.t,
						    (void *)(s->base +
							     run * A.hblk),
						    (b - run) * A.hblk);
				run = SIZE_MAX;
			}
		}
	}
}

static void GC_CALLBACK vdb_remove_protection(void *h, size_t bytes,
					      int flags)
{
	if (!A.t)
		return;
	/* Fresh blocks (no live object in them) are about to be filled:
	 * un-protect them at once, one system call instead of a fault per
	 * page, and let them read dirty (their objects are unmarked, so
	 * this costs the collector nothing).  A block that holds live
	 * objects (a free list being rebuilt) stays protected with the
	 * userfaultfd backends, which see the collector's writes line by
	 * line; mprotect un-protects it for this epoch, as Boehm's own
	 * MPROTECT_VDB does, so that the kernel can write into it. */
	if ((flags & GC_VDB_NEW_BLOCK) && A.exempt) {
		/* Exempt (free) blocks become young, the others are
		 * un-protected as below. */
		for_block_runs((uintptr_t)h, bytes, EX_EXEMPT, EX_EXEMPT,
			       flags & GC_VDB_PTRFREE ? young_ptrfree_run
						      : young_run);
		for_block_runs((uintptr_t)h, bytes, EX_EXEMPT, 0,
			       mark_dirty_run);
	} else if ((flags & GC_VDB_NEW_BLOCK) || A.mprotect)
		(void)fg_mark_dirty(A.t, h, bytes);
	if (A.mprotect)
		note_ptrfree((uintptr_t)h, bytes, flags & GC_VDB_PTRFREE);
}

/* Runs with the allocation lock held and the world running, after the
 * collector's finalization and sweep set-up (see the top).  If it
 * finalized, what was written since the retrieval (by the collector and
 * the program) is reported whole at the next one, and the epoch restarts
 * here.  Young blocks are watched again. */
static void GC_CALLBACK vdb_finish_collection(int finalized)
{
	double t0 = now_ms();
	fg_iter it;
	fg_range r;
	int n;

	if (!A.t)
		return;
	/* Page precision reports every page written until the next
	 * retrieval, whatever its bytes; without finalization the
	 * collector neither wrote into the heap nor scanned since the
	 * retrieval (it marked with the world stopped): no retrieval
	 * needed. */
	n = A.diff && finalized
		    ? fg_collect_flags(A.t, &it, FG_COLLECT_WHOLE_PAGES)
		    : 0;
	if (n < 0) {
		say("collection failed (%s: %s); everything reads dirty",
		    fg_strerror(n), fg_last_error_detail());
		A.all_dirty = 1;
	} else if (A.diff && finalized) {
		while (fg_iter_next(&it, &r) == 1) {
			remember(&A.carry, &A.ncarry, &A.capcarry, r);
			A.st.finish_bytes += r.len;
		}
	}
	if (A.mprotect)
		unprotect_ptrfree();
	/* Young blocks with pointers, still allocated, are watched again
	 * (pointer-free ones stay exempt, and are not listed). */
	for (size_t i = 0; i < A.nyoung; i++)
		for_block_runs((uintptr_t)A.young[i].addr, A.young[i].len,
			       EX_EXEMPT | EX_YOUNG | EX_PTRFREE,
			       EX_EXEMPT | EX_YOUNG, watch_run);
	A.nyoung = 0;
	A.st.finish_ms_total += now_ms() - t0;
}

static void GC_CALLBACK vdb_concurrent_mark(void)
{
	A.concurrent = 1;
}

/* In the child after fork: the parent's tracker does not follow (the
 * toolkit reports everything dirty in a child); start a new one over the
 * same sections.  Single-threaded here, malloc is safe. */
static void GC_CALLBACK vdb_update_child(void)
{
	if (!A.t)
		return;
	(void)fg_tracker_destroy(A.t);
	A.t = NULL;
	A.backend = NULL;
	if (start_tracker()) {
		/* Boehm keeps its incremental mode: read everything dirty. */
		for (size_t i = 0; i < A.ns; i++)
			A.s[i].tracked = 0;
		mark_everything();
		return;
	}
	for (size_t i = 0; i < A.ns; i++) {
		int rc = fg_register(A.t, (void *)A.s[i].base, A.s[i].len);

		A.s[i].tracked = rc == 0;
	}
	A.all_dirty = 1; /* what the child wrote before this is unknown */
	A.ncarry = 0;
	A.nyoung = 0;
	/* The new tracker watches every block. */
	for (size_t i = 0; i < A.ns; i++)
		if (A.s[i].ex)
			memset(A.s[i].ex, 0, A.s[i].nblocks);
	mark_everything();
}

static const struct GC_external_vdb_s vdb = {
	GC_EXTERNAL_VDB_VERSION, vdb_dirty_init,	vdb_add_heap,
	vdb_read_dirty,		 vdb_block_dirty_lines, vdb_remove_protection,
	vdb_concurrent_mark,	 vdb_update_child,	vdb_protection_needs,
	vdb_pre_stop_world,	 vdb_finish_collection, vdb_free_blocks,
};

/* FG_CARD=auto's summary at exit (FG_BOEHM_STATS and FG_BOEHM_CHECK). */
static void print_auto(void)
{
	if (A.autocard)
		fprintf(stderr, "libgc (fgvm adapter): FG_CARD=auto: twins "
				"turned off %lu times, on again %lu times, %s "
				"at exit\n",
			A.st.auto_off, A.st.auto_on, A.auto_off ? "off" : "on");
}

/* FG_BOEHM_STATS=1: a summary on stderr at exit. */
static void print_stats(void)
{
	struct GC_fg_stats st = {.size = sizeof st};
	fg_stats fs = {.size = sizeof fs};

	GC_fg_get_stats(&st);
	if (A.t)
		fg_get_stats(A.t, &fs);
	fprintf(stderr,
		"libgc (fgvm adapter): backend %s, card %zu: %lu retrievals "
		"(%.3f ms total, %.3f ms max in pauses; %.3f ms before, "
		"%.3f ms after: %lu bytes carried whole), "
		"%lu blocks exempted, %lu watched again, "
		"%lu whole-page, %lu dirty pages, "
		"%lu dirty bytes, %lu faults; DIFF: %llu pages compared, %llu "
		"whole, twins %llu hook + %llu eager (%llu invalid), %llu "
		"bytes of twins held (heap %llu bytes), %.3f ms "
		"comparing; %lu bytes rescanned; %llu heap sections lost "
		"(unmapped: read dirty)\n",
		A.backend ? A.backend : "(off)", GC_fg_get_card_size(),
		st.collections, st.retrieve_ms_total, st.retrieve_ms_max,
		st.preclean_ms_total, st.finish_ms_total, st.finish_bytes,
		st.exempted_blocks, st.watched_blocks,
		st.whole_epochs, st.dirty_pages, st.dirty_bytes, st.faults,
		(unsigned long long)fs.pages_diffed,
		(unsigned long long)fs.pages_whole,
		(unsigned long long)fs.twins_hook,
		(unsigned long long)fs.twins_eager,
		(unsigned long long)fs.twins_invalid,
		(unsigned long long)fs.twin_bytes,
		(unsigned long long)fs.tracked_bytes, fs.diff_ns / 1e6,
		st.bytes_rescanned, (unsigned long long)fs.regions_lost);
	if (A.diff)
		fprintf(stderr,
			"libgc (fgvm adapter): twins: %llu copied, %llu "
			"refreshed in place, %llu declined, %llu evicted for "
			"the cap, %llu aged out; cap %llu bytes; %.3f ms "
			"comparing and copying; %lu bytes at page precision "
			"would have been rescanned\n",
			(unsigned long long)fs.twins_sticky,
			(unsigned long long)fs.twins_refreshed,
			(unsigned long long)fs.twins_declined,
			(unsigned long long)fs.twins_evicted,
			(unsigned long long)fs.twins_aged,
			(unsigned long long)fs.twin_cap_bytes, fs.diff_ns / 1e6,
			st.bytes_rescanned_page);
	print_auto();
}

/* FG_BOEHM_CHECK: the verdict at exit. */
static void print_check(void)
{
	if (A.check < 0) {
		fprintf(stderr, "libgc (fgvm adapter): FG_BOEHM_CHECK: cannot "
				"read /proc/self/mem or map a buffer; nothing "
				"was checked\n");
		return;
	}
	fprintf(stderr,
		"libgc (fgvm adapter): FG_BOEHM_CHECK: %lu retrievals checked, "
		"%lu changed lines not reported\n",
		A.st.collections, A.missed);
	print_auto();
}

__attribute__((constructor)) static void install(void)
{
	const char *e = getenv("FG_BOEHM_STATS");

	if (GC_set_external_vdb(&vdb) != GC_SUCCESS)
		say("GC_set_external_vdb failed: this libgc was not built "
		    "with EXTERNAL_VDB");
	if (e && *e && strcmp(e, "0") != 0)
		atexit(print_stats);
	e = getenv("FG_BOEHM_CHECK");
	A.check = !e || !*e || !strcmp(e, "0") ? 0 : !strcmp(e, "abort") ? 2 : 1;
	if (A.check)
		atexit(print_check);
	e = getenv("FG_BOEHM_PRECLEAN");
	A.no_preclean = e && strcmp(e, "0") == 0;
}

API int GC_fg_set_backend(const char *name)
{
	if (A.t)
		return -1;
	if (!name)
		A.want_backend[0] = 0;
	else
		snprintf(A.want_backend, sizeof A.want_backend, "%s", name);
	return 0;
}

API int GC_fg_set_card_size(size_t bytes)
{
	if (A.t) {
		int rc = fg_set_card_size(A.t, bytes);

		if (rc) {
			snprintf(A.err, sizeof A.err, "card size %zu: %s (%s)",
				 bytes, fg_strerror(rc),
				 fg_last_error_detail());
			return -1;
		}
		return 0;
	}
	A.want_card = bytes; /* checked when the tracker starts */
	return 0;
}

API size_t GC_fg_get_card_size(void)
{
	return A.t ? fg_card_size(A.t) : A.want_card;
}

API const char *GC_fg_backend(void)
{
	return A.backend;
}

API const char *GC_fg_last_error(void)
{
	return A.err;
}

API int GC_fg_get_stats(struct GC_fg_stats *out)
{
	fg_stats fs = {.size = sizeof fs};
	size_t n;

	if (!out || out->size == 0)
		return -1;
	n = out->size < sizeof A.st ? out->size : sizeof A.st;
	A.st.size = n;
	A.st.bytes_rescanned = (unsigned long)GC_get_bytes_rescanned();
	A.st.bytes_rescanned_page =
		(unsigned long)GC_get_bytes_rescanned_page();
	if (A.t && fg_get_stats(A.t, &fs) == 0) {
		A.st.dirty_pages = fs.dirty_pages;
		A.st.faults = fs.faults;
	}
	memcpy(out, &A.st, n);
	return 0;
}

API int GC_fg_io_begin(void *addr, size_t len)
{
	int io;

	if (!A.t)
		return GC_FG_IO_OFF;
	io = fg_io_begin(A.t, addr, len);
	if (io < 0) {
		snprintf(A.err, sizeof A.err, "GC_fg_io_begin(%p, %zu): %s (%s)",
			 addr, len, fg_strerror(io), fg_last_error_detail());
		return -1;
	}
	return io;
}

API int GC_fg_io_end(int io)
{
	int rc;

	if (io == GC_FG_IO_OFF)
		return 0;
	rc = A.t ? fg_io_end(A.t, io) : -EINVAL;
	if (rc) {
		snprintf(A.err, sizeof A.err, "GC_fg_io_end(%d): %s (%s)", io,
			 fg_strerror(rc), A.t ? fg_last_error_detail() : "off");
		return -1;
	}
	return 0;
}

API unsigned long GC_fg_get_bytes_rescanned(void)
{
	return (unsigned long)GC_get_bytes_rescanned();
}
