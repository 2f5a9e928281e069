/* fga.c - the generic adapter: a collector's dirty lines from the toolkit.
 *
 * See fga.h for the calls and README.md for the rules a port keeps.  The
 * instance turns the tracker's dirty cards into one word per block (bit i:
 * the i-th of 64 lines) at each retrieval.
 *
 * Precision: below page-sized cards the tracker runs with DIFF precision
 * (cards whose bytes changed).  DIFF compares with the epoch start, which
 * must be what the collector scanned, with every object it marked still
 * marked.  Two things break that, and both make pages read whole:
 *  - the collector marks while the program runs (Boehm's time-sliced
 *    incremental mode): it says so (fga_concurrent_mark) and the next
 *    retrieval reports written pages whole;
 *  - after the retrieval the collector itself writes into the heap and
 *    un-marks objects, or scans more, with the program running.  Boehm's
 *    GC_finalize unlinks the entries of dead disappearing links and clears
 *    their mark bits; if the program then registers a link in the same
 *    hash bucket, the allocator hands back the same entry and the
 *    bucket's line holds what it held at the retrieval: compared with the
 *    epoch start it is clean, and the new, unmarked entry is freed while
 *    linked.  So when such a collection is over (fga_collection_done with
 *    wrote_after) the instance retrieves once more, at page precision,
 *    and carries those pages, whole, into the next retrieval; the
 *    comparison restarts from there.
 *
 * Exempt blocks (backends with FG_CAP_EXEMPT: uffd-async, uffd-sync,
 * mprotect):
 * blocks a collection freed, and the blocks allocated from them since the
 * last collection finished (young), hold no marked object the collector
 * relies on, so the tracker leaves them alone (no re-protection, no fault
 * when they are filled: fg_set_exempt) and they read dirty, whole, at
 * every retrieval.  When a collection finishes, a young block still
 * allocated holds survivors: it is watched again and read whole once more
 * (its objects were scanned with no twin to compare with later);
 * pointer-free blocks stay exempt (never scanned).  New sections are not
 * exempt: a program that grows its heap is building long-lived data,
 * which would pay that extra reading; blocks that died once are likely to
 * hold short-lived objects again.
 *
 * Everything called with the world stopped avoids malloc: the instance's
 * arrays are mmap'd, and the toolkit's collection does not allocate from
 * malloc either.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mremap */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "fga.h"

/* FGA_CARD_AUTO's judge (see auto_judge). */
#define AUTO_WINDOW 3
#define AUTO_PRICE_PS 6000       /* a saved byte: 6 ns (fga_config) */
#define AUTO_EVIDENCE_NS 4e6   /* of twin work before a window is judged, */
			       /* unless it pushed a heap's worth of pages; */
#define AUTO_CLEAR 4	       /* and then only if the twins win, or lose */
			       /* by this factor (a heap's worth: any loss) */
#define AUTO_WINDOW_NS 64e6    /* of twin work: a paying window closes, */
#define AUTO_WINDOW_HEAPS 2    /* or when it pushed this many heaps' worth */
#define AUTO_TRIAL_PCT 10
#define AUTO_SPARSE 0.9	       /* of the compared pages' lines unchanged */
#define AUTO_SPARSE_STAY 0.8   /* ... to keep the full cap */
#define AUTO_MIN_COMPARED 256  /* pages (or as many as the cap holds),
				  for AUTO_SPARSE to count */
#define AUTO_UNJUDGED_MAX 8
#define AUTO_WAIT0 32
#define AUTO_WAIT_MAX 1024

#define EX_EXEMPT 1
#define EX_YOUNG 2
#define EX_PTRFREE 4
#define EX_HOT 8 /* with EX_EXEMPT: written at every retrieval lately */
#define EX_HELD 16 /* with EX_EXEMPT: unwatched by the collector
		      (fga_blocks_unwatched) */
#define HOT_STREAK 3 /* retrievals in a row that make a block hot */

/* Readahead streams (reuse_ahead). */
enum { RA_PTRS, RA_PTRFREE, RA_FRESH, RA_STREAMS };

struct sect {
	uintptr_t base;
	size_t len;
	size_t nblocks;
	fga_lines *lines; /* one word per block, mmap'd */
	uint8_t *ptrfree; /* kernel_faults: blocks kept writable (no pointers) */
	uint8_t *ex;	  /* exempting: EX_* per block, or NULL */
	uint32_t *seen;	  /* hot: the last retrieval that reported the
			     block written (high 24 bits) and the streak of
			     retrievals in a row up to it (low 8); 0: none.
			     NULL without config.hot */
	uint8_t *snap;	  /* check: the heap at the last retrieval */
	int tracked;	  /* registered with the tracker */
};

/* A static root range (fga_roots_*). */
struct root {
	uintptr_t lo, hi; /* page-aligned */
	int state;	  /* ROOT_* */
	uint64_t *dirty;  /* ROOT_TRACKED: a bit a page, of the last
			     retrieval */
};
enum {
	ROOT_NEW,	/* registered since the last retrieval: all dirty */
	ROOT_TRACKED,	/* dirty: the last retrieval's bits */
	ROOT_UNTRACKED, /* refused by the tracker, or too small: all dirty */
};
#define ROOT_MIN_PAGES 4

/* FGA_CARD_AUTO: the counters a window is measured from (auto_judge). */
struct auto_mark {
	unsigned long long ns;	     /* the tracker's diff_ns */
	unsigned long long res;	     /* config.rescanned() */
	unsigned long long page;     /* config.rescanned_page() */
	unsigned long long compared; /* the tracker's pages_diffed */
	unsigned long long lines;    /* the tracker's lines_changed */
};

struct fga {
	fga_config c;		  /* as created (name copied) */
	char name[64];
	char check_label[64];	  /* "FG_BOEHM_CHECK" or "check" */
	fg_tracker *t;
	const char *backend;	  /* name, NULL while not tracking */
	size_t block;		  /* the collector's block size */
	size_t line;		  /* bytes per bit: block / 64 */
	int kernel_faults;	  /* the kernel's writes into watched pages fail
				     (no FG_CAP_KERNEL_WRITES: mprotect) */
	int diff;		  /* DIFF precision (cards below a page) */
	int twinless;		  /* a block was marked twinless */
	int exempt;		  /* exempt free and young blocks */
	unsigned hot;		  /* config.hot, where it applies (page
				     precision, FG_CAP_EXEMPT); 0: off */
	uintptr_t new_sect;	  /* its first free is not exempted */
	fg_range *young;	  /* runs of blocks made young since the last */
	size_t nyoung, capyoung;  /* collection_done (some may be free) */
	int concurrent;		  /* marked with the world running */
	int all_dirty;		  /* next retrieval: everything */
	int precleaned;		  /* fga_preclean ran this interval */
	int peeked;		  /* fga_peek peeked: the next retrieval
				     ends its interval (AFTER_PEEK) */
	int check;		  /* 1, or 2 to abort; -1: could not */
	int memfd;		  /* check: /proc/self/mem */
	uint8_t *checkbuf;
	struct sect *s;		  /* sorted by base, mmap'd */
	size_t ns, caps;
	struct sect *last;	  /* lookup cache */
	fg_range *prev;		  /* last retrieval's ranges (to clear) */
	size_t nprev, capprev;
	int prev_all;		  /* the last retrieval set everything */
	fg_range *carry;	  /* written while a collection finished: */
	size_t ncarry, capcarry;  /* whole pages, for the next retrieval */
	fga_stats st;
	/* Readahead of blocks handed out (reuse_ahead): a stream for
	 * reused blocks with pointers, one for pointer-free ones, and one
	 * for fresh blocks (FGA_BLOCK_NEW) that were not exempt. */
	struct ra_stream {
		uintptr_t lo, hi;	/* un-protected this interval */
		uintptr_t prev, prev_end; /* the last reused range */
		size_t blocks;		/* the window, in blocks */
	} ra[RA_STREAMS];
	/* Freed blocks exempted in fga (ex) but not yet in the tracker:
	 * one run, given to fg_set_exempt by free_flush (free_later). */
	uintptr_t fr_lo, fr_hi;
	/* FGA_CARD_AUTO (see auto_judge). */
	int autocard;		  /* on */
	int auto_off;		  /* twins off (page precision) */
	int sweep_expect;	  /* DIFF with sticky twins taken at
				     collection: a swept block is
				     un-protected and compared as written
				     (fg_expect_writes) */
	int auto_warm;		  /* this window is the first after on */
	int auto_full;		  /* the cap raised past AUTO_TRIAL_PCT */
	int auto_digest;	  /* line digests: no trial, the full cap */
	unsigned long auto_next;  /* retrieval of the next judgement */
	unsigned long auto_wait;  /* retrievals the next off period lasts */
	struct auto_mark win;	  /* the counters at the window's start */
	unsigned long long auto_diffed, auto_copied; /* at the last judge */
	unsigned auto_unjudged;	  /* windows in a row not judged */
	/* Static roots (fga_roots_*): their own page-precision tracker,
	 * the ranges it tracks (sorted, disjoint, page-aligned), and the
	 * ranges fga_roots_add gathers for the next fga_roots_end. */
	fg_tracker *rt;
	int rt_off;		  /* no tracker for roots: all read dirty */
	struct root *roots;
	size_t nroots, caproots;
	fg_range *rpend;
	size_t nrpend, caprpend;
	int rpend_lost;		  /* fga_roots_add ran out of memory */
	char err[256];
};

static void say(fga *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void say(fga *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(f->err, sizeof f->err, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s\n", f->name, f->err);
}

static int auto_cap(fga *f, int full);
static void ra_reset(fga *f);
static void roots_drop(fga *f);
static void roots_retrieve(fga *f);
static void free_flush(fga *f);

/* Ranges taken from the tracker per call (fg_iter_next_n: one lock each;
 * 4 KiB of stack). */
#define RANGE_BATCH 256

/* The rule for every entry point that asks the tracker something: the
 * frees gathered so far go to it first (free_later), and a call that
 * re-protects the heap (a collection) or forgets part of it (a section
 * removed) ends the readahead windows too (reuse_ahead).  The only call
 * that skips it is fga_blocks_freed, which gathers. */
static void before_tracker(fga *f, int reprotects)
{
	free_flush(f);
	if (reprotects)
		ra_reset(f);
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

static void unmap(void *v, size_t bytes)
{
	if (v && bytes)
		munmap(v, bytes);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static struct sect *find(fga *f, uintptr_t a)
{
	size_t lo = 0, hi = f->ns;

	if (f->last && a - f->last->base < f->last->len)
		return f->last;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		struct sect *s = &f->s[mid];

		if (a < s->base)
			hi = mid;
		else if (a - s->base >= s->len)
			lo = mid + 1;
		else
			return f->last = s;
	}
	return NULL;
}

static void fill_all(fga *f, fga_lines v)
{
	for (size_t i = 0; i < f->ns; i++)
		for (size_t b = 0; b < f->s[i].nblocks; b++)
			f->s[i].lines[b] = v;
}

/* The index of the first section that starts above A. */
static size_t sect_above(const fga *f, uintptr_t a)
{
	size_t lo = 0, hi = f->ns;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (f->s[mid].base <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Set the lines of [a, a+len) in their blocks. */
static void set_lines(fga *f, uintptr_t a, size_t len)
{
	uintptr_t end = a + len;

	while (a < end) {
		struct sect *s = find(f, a);
		uintptr_t stop;

		if (!s) {
			/* Not heap (cannot happen: only sections are
			 * registered); skip to the next section. */
			size_t i = sect_above(f, a);

			if (i == f->ns || f->s[i].base >= end)
				return;
			a = f->s[i].base;
			continue;
		}
		stop = s->base + s->len < end ? s->base + s->len : end;
		while (a < stop) {
			size_t b = (a - s->base) / f->block;
			uintptr_t bstart = s->base + b * f->block;
			uintptr_t bend = bstart + f->block < stop
						 ? bstart + f->block
						 : stop;
			size_t first = (a - bstart) / f->line;
			size_t last = (bend - bstart + f->line - 1) / f->line;

			if (first == 0 && last >= 64)
				s->lines[b] = FGA_LINES_ALL;
			else
				s->lines[b] |=
					(last >= 64 ? FGA_LINES_ALL
						    : (((fga_lines)1 << last) - 1)) &
					~(((fga_lines)1 << first) - 1);
			a = bend;
		}
	}
}

static void clear_prev(fga *f)
{
	if (f->prev_all) {
		fill_all(f, 0);
		f->prev_all = 0;
	} else {
		for (size_t i = 0; i < f->nprev; i++) {
			uintptr_t a = (uintptr_t)f->prev[i].addr;
			uintptr_t e = a + f->prev[i].len;

			for (; a < e; a = (a - a % f->block) + f->block) {
				struct sect *s = find(f, a);

				if (s)
					s->lines[(a - s->base) / f->block] = 0;
			}
		}
	}
	f->nprev = 0;
}

static void remember(fga *f, fg_range **v, size_t *n, size_t *cap,
		     fg_range r)
{
	fg_range *w = grow(*v, cap, sizeof **v, *n + 1);

	if (!w) {
		/* Cannot remember it: everything reads dirty (and is
		 * cleared) at the next retrieval. */
		f->all_dirty = 1;
		return;
	}
	*v = w;
	(*v)[(*n)++] = r;
}

/* The start of a retrieval: the last one's lines cleared, the pages
 * written while the last collection finished set. */
static void start_lines(fga *f)
{
	clear_prev(f);
	for (size_t i = 0; i < f->ncarry; i++) {
		set_lines(f, (uintptr_t)f->carry[i].addr, f->carry[i].len);
		remember(f, &f->prev, &f->nprev, &f->capprev, f->carry[i]);
	}
	f->ncarry = 0;
}

static void mark_everything(fga *f)
{
	fill_all(f, FGA_LINES_ALL);
	f->prev_all = 1;
}

/* PREFIX_suffix through the toolkit's table (its template
 * "FG_<ADAPTER>_suffix"): 1 and *v when set and valid; a bad value is
 * said, with what the caller keeps, and reads as unset. */
static int env(const fga_config *c, const char *prefix, const char *suffix,
	       fg_env_value *v, const char *keep)
{
	char var[96];
	int rc;

	snprintf(var, sizeof var, "%s_%s", prefix, suffix);
	rc = fg_env_get(var, v);
	if (rc < 0)
		fprintf(stderr, "%s: %s; %s it is\n",
			c->name ? c->name : "fgvm adapter",
			fg_last_error_detail(), keep);
	return rc > 0;
}

int fga_config_env(fga_config *c, const char *prefix)
{
	/* The words' order in the table: sticky|adaptive|hot|none is
	 * enum fga_twins, 0|1|abort is fga_config.check. */
	static const char *const twins[] = {"sticky", "adaptive", "hot",
					    "none"};
	char keep[32];
	fg_env_value v;

	if (!c || !prefix)
		return -EINVAL;
	c->env_prefix = prefix;
	if (env(c, prefix, "TWINS", &v,
		(unsigned)c->twins < 4 ? twins[c->twins] : "the caller's policy"))
		c->twins = (int)v.index;
	snprintf(keep, sizeof keep, "%u%%",
		 c->twin_cap_pct ? c->twin_cap_pct
		 : c->twins == FGA_TWINS_ADAPTIVE ? 10 : 100);
	if (env(c, prefix, "TWIN_CAP", &v,
		c->twin_cap ? "the caller's cap" : keep)) {
		if (v.pct)
			c->twin_cap_pct = v.pct;
		else
			c->twin_cap = v.bytes;
	}
	if (env(c, prefix, "TWIN_FORM", &v,
		c->twin_form == FGA_TWIN_DIGEST ? "digest" : "copy"))
		c->twin_form = (int)v.index;
	if (env(c, prefix, "EXEMPT", &v, c->exempt ? "1" : "0"))
		c->exempt = (int)v.index;
	if (env(c, prefix, "PRECLEAN", &v, c->preclean ? "1" : "0"))
		c->preclean = (int)v.index;
	snprintf(keep, sizeof keep, "%u", c->hot);
	if (env(c, prefix, "HOT", &v, keep))
		c->hot = v.count > 1000000 ? 1000000 : (unsigned)v.count;
	if (env(c, prefix, "CHECK", &v,
		c->check == 2 ? "abort" : c->check ? "1" : "0"))
		c->check = (int)v.index;
	if (env(c, prefix, "AUTO_LOG", &v, c->auto_log ? "1" : "0"))
		c->auto_log = (int)v.index;
	snprintf(keep, sizeof keep, "%u", c->hold);
	if (env(c, prefix, "HOLD", &v, keep))
		c->hold = v.count > 64 ? 64 : (unsigned)v.count;
	if (env(c, prefix, "ROOTS", &v, c->roots ? "1" : "0"))
		c->roots = (int)v.index;
	snprintf(keep, sizeof keep, "%u",
		 c->auto_price_ps ? c->auto_price_ps : AUTO_PRICE_PS);
	if (env(c, prefix, "AUTO_PRICE", &v, keep))
		c->auto_price_ps = v.count > 1000000000 ? 1000000000
							: (unsigned)v.count;
	return 0;
}

/* The tracker, from the configuration (at creation and after fork). */
static int start_tracker(fga *f)
{
	fg_options o = FG_OPTIONS_INIT;
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	fg_env_value v;
	size_t card = f->c.card;
	unsigned caps;
	int rc;

	if (f->c.backend && *f->c.backend) {
		rc = fg_backend_from_name(f->c.backend, &o.backend);
		if (rc) {
			say(f, "backend \"%s\": %s", f->c.backend,
			    fg_strerror(rc));
			return rc;
		}
	}
	/* FG_CARD=auto: 64-byte lines with sticky twins, turned off while
	 * they do not pay (auto_judge).  Otherwise the table's grammar, the
	 * tracker's too ("4k" is 4096 here as there); a bad value makes
	 * fg_tracker_create fail and say so. */
	rc = card ? 0 : fg_env_get("FG_CARD", &v);
	if (!card && rc == 0)
		card = f->c.card_default; /* FG_CARD unset */
	if (card == FGA_CARD_AUTO || (rc > 0 && !v.bytes)) {
		card = 64;
		f->autocard = 1;
	} else if (rc > 0) {
		card = v.bytes;
	}
	/* FG_CARD set (rc != 0): the tracker reads it again, and says what
	 * is wrong with a bad one. */
	o.card_size = f->autocard ? 64 : rc ? 0 : card;
	if (!card)
		card = ps;
	/* Below page-sized cards: DIFF precision, unless the twins are
	 * "none" (page precision: every card of a written page dirty).
	 * Twin policies (fg.h):
	 *  - sticky, the default: every page reported written gets a twin,
	 *    kept until the page is written again (then compared and updated
	 *    in place).  Sparse random writes to a large old heap are then
	 *    exact, at the price of up to one twin per page ever written;
	 *    the cap (default 100% of the heap) evicts the pages written
	 *    longest ago, which then read whole.
	 *  - adaptive: twins only for pages written before and found sparse,
	 *    under a budget of 10% of the heap unless the cap says otherwise:
	 *    little memory, but random sparse writes mostly find no twin.
	 *  - hot: only the first-write hook's and eager ones. */
	o.precision = card < ps && (f->autocard || f->c.twins != FGA_TWINS_NONE)
			      ? FG_PRECISION_DIFF
			      : FG_PRECISION_PAGE;
	o.twin_policy = FG_TWIN_STICKY;
	/* auto starts on trial (auto_judge). */
	o.twin_cap_pct = f->autocard ? AUTO_TRIAL_PCT : 100;
	if (!f->autocard && f->c.twins == FGA_TWINS_ADAPTIVE) {
		o.twin_policy = FG_TWIN_ADAPTIVE;
		o.twin_cap_pct = 10;
	} else if (!f->autocard && f->c.twins == FGA_TWINS_HOT) {
		o.twin_policy = FG_TWIN_HOT;
	}
	if (f->c.twin_form == FGA_TWIN_DIGEST)
		o.twin_policy |= FG_TWIN_DIGEST;
	if (f->c.twin_cap_pct >= 1 && f->c.twin_cap_pct <= 100)
		o.twin_cap_pct = f->c.twin_cap_pct;
	if (f->c.twin_cap)
		o.twin_cap = f->c.twin_cap;
	rc = fg_tracker_create(&o, &f->t);
	if (rc == -FG_EUNAVAIL && (o.twin_policy & FG_TWIN_DIGEST)) {
		/* No PCLMULQDQ (or a forced backend missing, which the
		 * second try reports): exact copies instead. */
		char why[256];

		snprintf(why, sizeof why, "%s", fg_last_error_detail());
		o.twin_policy &= ~FG_TWIN_DIGEST;
		rc = fg_tracker_create(&o, &f->t);
		if (!rc)
			say(f, "%s; twins are page copies", why);
	}
	if (rc) {
		say(f, "cannot track the heap (%s: %s)", fg_strerror(rc),
		    fg_last_error_detail());
		f->t = NULL;
		return rc;
	}
	f->backend = fg_backend_name(fg_tracker_backend(f->t));
	caps = fg_tracker_caps(f->t);
	f->kernel_faults = (caps & FG_CAP_TRACKS) &&
			   !(caps & FG_CAP_KERNEL_WRITES);
	f->diff = o.precision == FG_PRECISION_DIFF;
	f->autocard = f->autocard && f->diff;
	/* Where the twins a swept page is compared with are sticky ones,
	 * taken at collection, a fault adds nothing to an un-protection.
	 * With hook twins (uffd-sync under the hot or adaptive policy) the
	 * fault is what takes the twin: such blocks stay protected. */
	f->sweep_expect = f->diff &&
			  (o.twin_policy & ~FG_TWIN_DIGEST) == FG_TWIN_STICKY &&
			  (caps & FG_CAP_COLLECT_TWINS);
	f->auto_wait = AUTO_WAIT0;
	f->auto_warm = 1;
	f->auto_full = 0;
	/* Line digests cost an eighth of the memory of copies: auto
	 * starts them under the full cap, where a trial's sample would find
	 * no twin for nine random writes in ten and see no saving.  Copies
	 * start on trial. */
	f->auto_digest = (o.twin_policy & FG_TWIN_DIGEST) != 0;
	if (f->autocard) {
		if (auto_cap(f, f->auto_digest) == 0)
			f->auto_full = f->auto_digest;
		else if (!f->auto_digest)
			say(f, "FG_CARD=auto: cannot start the twins on trial "
			       "(%s); they start under the full cap",
			    fg_last_error_detail());
	}
	/* Backends that can leave pages out of a collection. */
	f->exempt = (caps & FG_CAP_EXEMPT) && f->c.exempt;
	f->hot = (caps & FG_CAP_EXEMPT) && !f->diff && !f->autocard
			 ? f->c.hot
			 : 0;
	return 0;
}

/* Why the last fga_create failed (fga_last_error(NULL)). */
static __thread char create_err[256];

int fga_create(const fga_config *c, fga **out)
{
	fga *f;
	int rc;

	/* A caller built before fga_config.hold passes a smaller config:
	 * the fields it does not know are 0 (their defaults). */
	if (!c || !out || c->size < offsetof(fga_config, hold))
		return -EINVAL;
	*out = NULL;
	f = calloc(1, sizeof *f);
	if (!f)
		return -ENOMEM;
	memcpy(&f->c, c, c->size < sizeof *c ? c->size : sizeof *c);
	f->c.size = sizeof f->c;
	snprintf(f->name, sizeof f->name, "%s",
		 c->name ? c->name : "fgvm adapter");
	f->c.name = f->name;
	if (c->env_prefix)
		snprintf(f->check_label, sizeof f->check_label, "%s_CHECK",
			 c->env_prefix);
	else
		snprintf(f->check_label, sizeof f->check_label, "check");
	f->c.env_prefix = NULL; /* not kept: the caller's string */
	if (!f->c.auto_price_ps)
		f->c.auto_price_ps = AUTO_PRICE_PS;
	f->memfd = -1;
	f->check = c->check;
	if (c->block % 64 || c->block < 64) {
		say(f, "block size %zu is not a multiple of 64", c->block);
		snprintf(create_err, sizeof create_err, "%s", f->err);
		free(f);
		return -EINVAL;
	}
	f->block = c->block;
	f->line = c->block / 64;
	rc = start_tracker(f);
	if (rc) {
		/* Printed; kept for fga_last_error(NULL). */
		snprintf(create_err, sizeof create_err, "%s", f->err);
		free(f);
		return rc;
	}
	*out = f;
	return 0;
}

void fga_destroy(fga *f)
{
	if (!f)
		return;
	if (f->t)
		(void)fg_tracker_destroy(f->t);
	roots_drop(f);
	unmap(f->rpend, f->caprpend * sizeof *f->rpend);
	for (size_t i = 0; i < f->ns; i++) {
		struct sect *s = &f->s[i];

		unmap(s->lines, s->nblocks * sizeof *s->lines);
		unmap(s->ptrfree, s->nblocks);
		unmap(s->ex, s->nblocks);
		unmap(s->seen, s->nblocks * sizeof *s->seen);
		unmap(s->snap, s->len);
	}
	unmap(f->s, f->caps * sizeof *f->s);
	unmap(f->young, f->capyoung * sizeof *f->young);
	unmap(f->prev, f->capprev * sizeof *f->prev);
	unmap(f->carry, f->capcarry * sizeof *f->carry);
	unmap(f->checkbuf, (size_t)1 << 20);
	if (f->memfd >= 0)
		close(f->memfd);
	free(f);
}

static void *section_array(fga *f, size_t size, size_t section,
			   const char *what)
{
	void *m = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED) {
		say(f, "out of memory for the %s of a %zu-byte heap section",
		    what, section);
		return NULL;
	}
	return m;
}

int fga_add_section(fga *f, void *start, size_t bytes)
{
	struct sect *v, s = {.base = (uintptr_t)start, .len = bytes};
	size_t i;
	int rc;

	if (!f || !bytes)
		return -EINVAL;
	s.nblocks = (bytes + f->block - 1) / f->block;
	s.lines = section_array(f, s.nblocks * sizeof *s.lines, bytes,
				"dirty lines");
	if (s.lines && f->kernel_faults)
		s.ptrfree = section_array(f, s.nblocks, bytes, "block kinds");
	if (s.lines && (f->exempt || f->hot))
		s.ex = section_array(f, s.nblocks, bytes, "block states");
	if (s.ex && f->hot)
		s.seen = section_array(f, s.nblocks * sizeof *s.seen, bytes,
				       "block histories");
	v = grow(f->s, &f->caps, sizeof *f->s, f->ns + 1);
	if (!s.lines || (f->kernel_faults && !s.ptrfree) ||
	    ((f->exempt || f->hot) && !s.ex) || (f->hot && !s.seen) || !v) {
		if (!v)
			say(f, "out of memory for the heap section table");
		unmap(s.lines, s.nblocks * sizeof *s.lines);
		unmap(s.ptrfree, s.nblocks);
		unmap(s.ex, s.nblocks);
		unmap(s.seen, s.nblocks * sizeof *s.seen);
		return -ENOMEM;
	}
	f->s = v;
	rc = f->t ? fg_register(f->t, start, bytes) : -EINVAL;
	if (rc) {
		/* Sound: an untracked section reads dirty for ever. */
		say(f, "heap section [%p, +%zu) is not tracked (%s: %s); it "
		    "reads dirty",
		    start, bytes, fg_strerror(rc), fg_last_error_detail());
	}
	s.tracked = rc == 0;
	for (i = 0; i < s.nblocks; i++)
		s.lines[i] = FGA_LINES_ALL; /* until the first retrieval */
	f->new_sect = s.base;
	f->prev_all = 1; /* which clears them with the rest */
	for (i = f->ns; i > 0 && f->s[i - 1].base > s.base; i--)
		f->s[i] = f->s[i - 1];
	f->s[i] = s;
	f->ns++;
	f->last = NULL;
	return 0;
}

int fga_remove_section(fga *f, void *start, size_t bytes)
{
	struct sect *s;
	size_t i;

	if (!f)
		return -EINVAL;
	s = find(f, (uintptr_t)start);
	if (!s || s->base != (uintptr_t)start || s->len != bytes)
		return -ENOENT;
	before_tracker(f, 1);
	if (s->tracked && f->t)
		(void)fg_unregister(f->t, start, bytes);
	unmap(s->lines, s->nblocks * sizeof *s->lines);
	unmap(s->ptrfree, s->nblocks);
	unmap(s->ex, s->nblocks);
	unmap(s->seen, s->nblocks * sizeof *s->seen);
	unmap(s->snap, s->len);
	/* The lists of ranges (last retrieval, carried, young) may still
	 * name it: find() no longer does, so they skip it; a section added
	 * at the same address later at worst reads dirty once more. */
	i = (size_t)(s - f->s);
	memmove(&f->s[i], &f->s[i + 1], (f->ns - i - 1) * sizeof *f->s);
	f->ns--;
	f->last = NULL;
	if (f->new_sect == (uintptr_t)start)
		f->new_sect = 0;
	return 0;
}

/* config.hot: a block the tracker reported written at HOT_STREAK
 * retrievals in a row is written at every collection, and watching it
 * costs a fault each time for a block the collector rescans anyway: it
 * is exempted (left writable, neither re-protected nor reported by the
 * tracker) and reads whole at every retrieval and peek.  Every
 * config.hot retrievals the hot blocks are watched again (rejoin_hot):
 * they read whole in that retrieval and, carried, in the next (they
 * were writable until then).  Only a block then reported at HOT_STREAK
 * retrievals in a row again is hot again; the first report of a block
 * starts no streak (after watching again, a block left writable reads
 * written whether or not it was).  Two in a row happen by chance too
 * often: with 21 % of a vector's 16 KiB blocks written per collection
 * (bench/racket/mutable-old.rkt, large), 4 % of them each time.
 * Sound: an exempt block reads whole; a block watched again reads whole
 * until the tracker watches it (fg_set_exempt's contract).  The reports
 * that count are the tracker's, not the carried ranges: a block read
 * whole because it was hot is no evidence that it was written. */
typedef void (*run_fn)(fga *, struct sect *, size_t b0, size_t b1);

/* The blocks of [a, a+bytes), clipped to sections, in address order:
 * in(f, s, b, arg) is asked once for each, and fn gets each run of
 * blocks it said yes to (never across sections). */
static void walk_block_runs(fga *f, uintptr_t a, size_t bytes,
			    int (*in)(fga *, struct sect *, size_t b,
				      const void *arg),
			    const void *arg, run_fn fn)
{
	uintptr_t e = a + bytes;

	while (a < e) {
		struct sect *s = find(f, a);
		size_t b, end, run = SIZE_MAX;

		if (!s) {
			a += f->block;
			continue;
		}
		b = (a - s->base) / f->block;
		end = (e - s->base + f->block - 1) / f->block;
		if (end > s->nblocks)
			end = s->nblocks;
		for (; b <= end; b++) {
			int yes = b < end && in(f, s, b, arg);

			if (yes && run == SIZE_MAX)
				run = b;
			if (!yes && run != SIZE_MAX) {
				fn(f, s, run, b);
				run = SIZE_MAX;
			}
		}
		a = s->base + end * f->block;
	}
}

struct ex_match {
	uint8_t mask, want;
};

static int ex_matches(fga *f, struct sect *s, size_t b, const void *arg)
{
	const struct ex_match *m = arg;

	(void)f;
	return s->ex && (s->ex[b] & m->mask) == m->want;
}

/* fn on the runs of blocks of [a, a+bytes) whose state matches
 * (ex & mask) == want. */
static void for_block_runs(fga *f, uintptr_t a, size_t bytes, uint8_t mask,
			   uint8_t want, run_fn fn)
{
	struct ex_match m = {mask, want};

	walk_block_runs(f, a, bytes, ex_matches, &m, fn);
}

static void hot_run(fga *f, struct sect *s, size_t b0, size_t b1)
{
	for (size_t b = b0; b < b1; b++)
		s->ex[b] = EX_EXEMPT | EX_HOT;
	if (s->tracked)
		(void)fg_set_exempt(f->t, (void *)(s->base + b0 * f->block),
				    (b1 - b0) * f->block, 1);
	f->st.hot_blocks += b1 - b0;
}

/* Block b was reported at retrieval *(uint32_t *)arg: lengthen or
 * start its streak (seen: the retrieval in the high 24 bits, the streak
 * up to it in the low 8); whether it is now hot.  Exempt blocks are not
 * reported by the tracker and keep no streak. */
static int streak_hot(fga *f, struct sect *s, size_t b, const void *arg)
{
	uint32_t n = *(const uint32_t *)arg, was, k;

	(void)f;
	if (!s->seen || s->ex[b])
		return 0;
	was = s->seen[b];
	if (!was)
		k = 0;
	else if ((was >> 8) == ((n - 1) & 0xffffff))
		k = (was & 0xff) + 1;
	else
		k = 1;
	s->seen[b] = (n & 0xffffff) << 8 | (k < 255 ? k : 255);
	return k >= HOT_STREAK;
}

static void note_written(fga *f, uintptr_t a, size_t len)
{
	uint32_t n = (uint32_t)f->st.collections + 1;

	walk_block_runs(f, a, len, streak_hot, &n, hot_run);
}

static void rejoin_run(fga *f, struct sect *s, size_t b0, size_t b1)
{
	fg_range r = {(void *)(s->base + b0 * f->block), (b1 - b0) * f->block};

	memset(s->ex + b0, 0, b1 - b0);
	memset(s->seen + b0, 0, (b1 - b0) * sizeof *s->seen); /* no streak */
	if (s->tracked)
		(void)fg_set_exempt(f->t, r.addr, r.len, 0);
	/* Whole in this retrieval's lines (they read whole through ex
	 * until now), and in the next one's. */
	set_lines(f, (uintptr_t)r.addr, r.len);
	if (!f->prev_all)
		remember(f, &f->prev, &f->nprev, &f->capprev, r);
	remember(f, &f->carry, &f->ncarry, &f->capcarry, r);
}

static void rejoin_hot(fga *f)
{
	for (size_t i = 0; i < f->ns; i++)
		if (f->s[i].seen)
			for_block_runs(f, f->s[i].base, f->s[i].len,
				       EX_EXEMPT | EX_HOT | EX_YOUNG |
					       EX_PTRFREE,
				       EX_EXEMPT | EX_HOT, rejoin_run);
}

static void unwatch_run(fga *f, struct sect *s, size_t b0, size_t b1)
{
	memset(s->ex + b0, EX_EXEMPT | EX_HELD, b1 - b0);
	if (s->tracked)
		(void)fg_set_exempt(f->t, (void *)(s->base + b0 * f->block),
				    (b1 - b0) * f->block, 1);
	f->st.unwatched_blocks += b1 - b0;
}

/* Watched again before the retrieval that ends this interval: the
 * tracker watches them from its collection there on, so they read whole
 * in that retrieval (carried; its start_lines consumes them) and as
 * tracked after it. */
static void rewatch_run(fga *f, struct sect *s, size_t b0, size_t b1)
{
	fg_range r = {(void *)(s->base + b0 * f->block), (b1 - b0) * f->block};

	memset(s->ex + b0, 0, b1 - b0);
	if (s->tracked)
		(void)fg_set_exempt(f->t, r.addr, r.len, 0);
	remember(f, &f->carry, &f->ncarry, &f->capcarry, r);
	f->st.rewatched_blocks += b1 - b0;
}

/* Watched again in the pause after a peek (Racket: stock would
 * write-protect these pages now, the collector's writes into them
 * unrecorded): the retrieval that ends the pause must re-protect them.
 * FG_COLLECT_AFTER_PEEK would leave out a section the peek found clean,
 * and the collector's writes there would read dirty at the next peek:
 * rescanned for nothing (binary-trees on Racket: 1.6 times stock's old
 * pages).  So each tracked section of [a, e) is named to the tracker by
 * a call that changes nothing else (fg_set_exempt(.., 0) of blocks the
 * instance watches; fg.h: a region named since the peek is collected).
 * No system call, no malloc. */
static void name_sections(fga *f, uintptr_t a, uintptr_t e)
{
	while (a < e) {
		struct sect *s = find(f, a);
		uintptr_t stop;

		if (!s) {
			size_t i = sect_above(f, a);

			if (i == f->ns)
				return;
			a = f->s[i].base;
			continue;
		}
		stop = s->base + s->len < e ? s->base + s->len : e;
		if (s->tracked && fg_set_exempt(f->t, (void *)a, stop - a,
						0) == 0)
			f->st.peek_named++;
		a = stop;
	}
}

int fga_blocks_unwatched(fga *f, void *h, size_t bytes, int unwatched)
{
	uintptr_t a = (uintptr_t)h, e = a + bytes;

	if (!f || !f->t)
		return 0;
	if (!unwatched && f->peeked)
		name_sections(f, a, e);
	if (f->c.exempt || f->hot)
		return -ENOTSUP;
	before_tracker(f, 0);
	/* Block states, made for a section the first time it has one
	 * unwatched (no section has them otherwise on such an instance). */
	if (unwatched)
		for (uintptr_t p = a; p < e;) {
			struct sect *s = find(f, p);

			if (!s) {
				p += f->block;
				continue;
			}
			if (!s->ex) {
				s->ex = section_array(f, s->nblocks, s->len,
						      "block states");
				if (!s->ex)
					return -ENOMEM;
			}
			p = s->base + s->len;
		}
	if (unwatched)
		for_block_runs(f, a, bytes, 0xff, 0, unwatch_run);
	else
		for_block_runs(f, a, bytes, 0xff, EX_EXEMPT | EX_HELD,
			       rewatch_run);
	return 0;
}

/* One toolkit collection OR'ed into the lines.  The interval between two
 * retrievals may be made of two collections: one just before the world
 * stops (fga_preclean: the program still runs, so most of the
 * re-protection and comparing happens outside the pause) and one in the
 * pause, which covers only what was written in between.  The union is
 * what was written in the interval: each collection reports what was
 * written since the previous one, and the second restarts the epoch. */
static void collect_into_lines(fga *f)
{
	unsigned flags = f->concurrent ? FG_COLLECT_WHOLE_PAGES : 0;
	fg_iter it;
	fg_range r[RANGE_BATCH];
	int n, k;

	/* After a peek, the regions it found clean are left alone: what
	 * the collector wrote there in its pause reads dirty next time. */
	if (f->peeked)
		flags |= FG_COLLECT_AFTER_PEEK;
	before_tracker(f, 1); /* re-protected now */

	n = fg_collect_flags(f->t, &it, flags);
	if (n < 0) {
		say(f, "collection failed (%s: %s); everything reads dirty",
		    fg_strerror(n), fg_last_error_detail());
		mark_everything(f);
	} else {
		while ((k = fg_iter_next_n(&it, r, RANGE_BATCH)) > 0)
			for (int j = 0; j < k; j++) {
				set_lines(f, (uintptr_t)r[j].addr, r[j].len);
				f->st.dirty_bytes += r[j].len;
				if (!f->prev_all)
					remember(f, &f->prev, &f->nprev,
						 &f->capprev, r[j]);
				if (f->hot)
					note_written(f, (uintptr_t)r[j].addr,
						     r[j].len);
			}
	}
}

void fga_preclean(fga *f)
{
	double t0 = now_ms();

	if (!f || !f->t || !f->c.preclean)
		return;
	start_lines(f);
	collect_into_lines(f);
	f->precleaned = 1;
	f->st.preclean_ms_total += now_ms() - t0;
}

/* The check (fga_config.check): an oracle for debugging and for the
 * tests.  The heap is copied at every retrieval, and the next retrieval
 * checks that every line whose bytes changed since then reads dirty.
 * Each miss is counted (and the first 20 are printed); 2 aborts at the
 * first.  It checks the tracker, not the collector: a line written back
 * to its old bytes is not a miss.  Reads go through /proc/self/mem, which
 * also reads blocks that the collector unmapped.  The world is stopped:
 * no stdio (another thread may hold its lock), no malloc. */
static void check_miss(fga *f, uintptr_t line, struct sect *s, uintptr_t h)
{
	char msg[300];
	int n;

	f->st.missed++;
	if (f->st.missed <= 20) {
		n = snprintf(msg, sizeof msg,
			     "%s: %s: retrieval %lu: line %#lx (block "
			     "%#lx, state %d) changed and was not reported\n",
			     f->name, f->check_label, f->st.collections, (unsigned long)line,
			     (unsigned long)h,
			     s->ex ? s->ex[(h - s->base) / f->block] : -1);
		if (n > 0)
			(void)!write(2, msg, (size_t)n);
	}
	if (f->check > 1)
		abort();
}

static void check_lines(fga *f, int peek)
{
	/* peek: 0 at a retrieval, 1 at a peek (nothing copied), 2 at the
	 * retrieval after a peek (copied, nothing checked). */
	const size_t chunk = (size_t)1 << 20;

	if (f->memfd < 0) {
		f->memfd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
		f->checkbuf = mmap(NULL, chunk, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (f->checkbuf == MAP_FAILED)
			f->checkbuf = NULL;
		if (f->memfd < 0 || !f->checkbuf) {
			f->check = -1; /* fga_print_check says so */
			return;
		}
	}
	for (size_t i = 0; i < f->ns; i++) {
		struct sect *s = &f->s[i];
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
			uint8_t *buf = f->checkbuf;

			if (pread(f->memfd, buf, n, (off_t)(s->base + off)) !=
			    (ssize_t)n) {
				memset(buf, 0, n);
				had = 0; /* unreadable: checked from next time */
			}
			for (size_t o = 0; had && peek < 2 && o < n;
			     o += f->block) {
				uintptr_t h = s->base + off + o;
				fga_lines lines = fga_block_lines(f, (void *)h);

				if (lines == FGA_LINES_ALL ||
				    !memcmp(buf + o, old + o, f->block))
					continue;
				for (size_t l = 0; l < 64; l++) {
					size_t at = o + l * f->line;

					if (!((lines >> l) & 1) &&
					    memcmp(buf + at, old + at, f->line))
						check_miss(f, h + l * f->line,
							   s, h);
				}
			}
			if (peek != 1)
				memcpy(old, buf, n);
		}
	}
}

/* FGA_CARD_AUTO: every AUTO_WINDOW retrievals, judge the twins.  Page
 * copies start on trial, under a cap of AUTO_TRIAL_PCT of the heap; line
 * digests (an eighth of the memory) start under the full cap, as if
 * the sparse test below had passed.
 *  - Sparse writes: when the window compared AUTO_MIN_COMPARED pages (or
 *    as many as the cap holds, if fewer) or more, and AUTO_SPARSE of
 *    their 64-byte lines or more were unchanged (the toolkit's
 *    lines_changed), the twins stay on and the cap goes up to the full
 *    one (100 %, or the configured cap); at AUTO_SPARSE_STAY or more
 *    they keep it, whatever the copies made since cost.  A comparison
 *    costs about what rescanning a page costs some collectors, so only
 *    pages nearly unchanged are evidence (the Guile set: 25-78 % of
 *    their lines; bench/boehm/sparse: 98 %); and the test is made at
 *    every retrieval on trial, before a program that writes sparsely
 *    over a large heap has made many collections.
 *  - Otherwise weigh what the twins cost (the toolkit's time comparing
 *    and taking them) against what their lines saved, at
 *    fga_config.auto_price_ps each, by default AUTO_PRICE_PS, 6 ns.
 *    That price leans towards keeping line
 *    digests on, because the two mistakes are not alike: twins kept
 *    where page cards would do cost GCBench about 5 %, twins turned off
 *    where they pay cost sparse-old and hash-heavy 1.1-1.4x page cards'
 *    mean pause.  (What a byte not rescanned saved Boehm on the Guile
 *    set: 1.6-2.6 ns of pause, 1.6-8.5 ns end to end, noise included;
 *    the Guile set's windows break even at 0.5-3.6 ns, GCBench's at
 *    hundreds.)  A window is judged only once the twins cost
 *    AUTO_EVIDENCE_NS or the collector pushed a heap's worth of pages
 *    in it (before that a program starting up shows a few hundred pages
 *    compared and tens of KB saved, and its twins went off on that);
 *    until a heap's worth or AUTO_WINDOW_NS, a losing window is judged
 *    only when it loses by AUTO_CLEAR times or more (GCBench: 10 ms of
 *    new twins for 9 KB), a close loss being a program's build whose
 *    twins earn later (sparse-old at the quick size);
 *    and not while the last AUTO_WINDOW retrievals made more new twins
 *    than comparisons (up to AUTO_UNJUDGED_MAX in a row): the program is
 *    filling memory, and its twins pay, if ever, when it writes there
 *    again.  A window that pays stays open until its twins cost
 *    AUTO_WINDOW_NS or the collector pushed AUTO_WINDOW_HEAPS heaps'
 *    worth of pages in it, and then keeps half its weight, so the later
 *    judgements weigh the investment with what it earns.  When they
 *    cost more, they are turned off (a cap under a page: written pages
 *    read whole) for auto_wait retrievals, then on again (copies on
 *    trial).  Each failed trial doubles the wait (up to AUTO_WAIT_MAX),
 *    a paying window resets it.
 * The first window after turning on is a warm-up (new twins, nothing
 * compared yet) and is not judged.  Called with the world stopped: the
 * toolkit calls do not allocate. */
static int auto_cap(fga *f, int full)
{
	unsigned pct = f->c.twin_cap_pct >= 1 && f->c.twin_cap_pct <= 100
			       ? f->c.twin_cap_pct
			       : 100;
	int rc;

	if (!full)
		pct = pct < AUTO_TRIAL_PCT ? pct : AUTO_TRIAL_PCT;
	rc = fg_set_twin_full(f->t, full ? FG_TWIN_FULL_EVICT
					 : FG_TWIN_FULL_DECLINE);
	return rc ? rc : fg_set_twin_cap(f->t, full ? f->c.twin_cap : 0, pct);
}

/* One window of auto_judge, as FG_BOEHM_AUTO_LOG prints it. */
struct auto_window {
	unsigned long n;	     /* retrieval */
	double saved;		     /* bytes the lines saved */
	unsigned long long page;     /* bytes page precision would push */
	unsigned long long compared; /* pages compared */
	double unchanged;	     /* of their lines */
	double cost_ms;		     /* the toolkit's twin work */
};

static void auto_log(fga *f, const struct auto_window *w,
		     const char *verdict)
{
	char msg[300];
	int k;

	if (!f->c.auto_log)
		return;
	k = snprintf(msg, sizeof msg,
		     "%s: FG_CARD=auto: retrieval %lu: lines saved %.0f "
		     "of %llu bytes, %llu pages compared (%.0f %% of their "
		     "lines unchanged), twins cost %.3f ms: %s\n",
		     f->name, w->n, w->saved, w->page, w->compared,
		     100 * w->unchanged, w->cost_ms, verdict);
	if (k > 0)
		(void)!write(2, msg, (size_t)k);
}

static void auto_judge(fga *f)
{
	fg_stats fs = {.size = sizeof fs};
	unsigned long long res, page, compared, enough;
	unsigned long n = f->st.collections;
	int restart = 0, sparse, trial = !f->auto_off && !f->auto_full;
	long ps = sysconf(_SC_PAGESIZE);
	double saved, cost, value, unchanged;
	struct auto_mark now;
	struct auto_window w;

	/* On trial the sparse test runs at every retrieval. */
	if (!f->c.rescanned || !f->c.rescanned_page ||
	    (n < f->auto_next && !trial) || fg_get_stats(f->t, &fs))
		return;
	res = f->c.rescanned(f->c.ctx);
	page = f->c.rescanned_page(f->c.ctx);
	now = (struct auto_mark){fs.diff_ns, res, page, fs.pages_diffed,
				 fs.lines_changed};
	saved = (double)(page - f->win.page) - (double)(res - f->win.res);
	cost = (double)(fs.diff_ns - f->win.ns);
	value = saved * f->c.auto_price_ps / 1000; /* ns, as cost */
	compared = fs.pages_diffed - f->win.compared;
	enough = fs.twin_cap_bytes / (unsigned long)ps + 1;
	if (enough > AUTO_MIN_COMPARED)
		enough = AUTO_MIN_COMPARED;
	unchanged = compared ? 1 - (double)(fs.lines_changed - f->win.lines) /
					   ((double)compared * (double)ps / 64)
			     : 0;
	sparse = compared >= enough &&
		 unchanged >= (f->auto_full ? AUTO_SPARSE_STAY : AUTO_SPARSE);
	if (n < f->auto_next && !sparse)
		return;
	w = (struct auto_window){n, saved, page - f->win.page, compared,
				 unchanged, cost / 1e6};
	if (f->auto_off) {
		if (auto_cap(f, f->auto_digest) == 0) {
			f->auto_off = 0;
			f->auto_full = f->auto_digest;
			f->auto_warm = 1;
			f->st.auto_on++;
		}
		restart = 1;
	} else if (sparse) {
		f->auto_warm = 0;
		auto_log(f, &w, f->auto_full ? "sparse, on" : "sparse, full cap");
		if (!f->auto_full && auto_cap(f, 1) == 0) {
			f->auto_full = 1;
			f->st.auto_full++;
		}
		f->auto_wait = AUTO_WAIT0;
		restart = 1;
	} else if (f->auto_warm) {
		f->auto_warm = 0;
		restart = 1;
	} else if (page == f->win.page) {
		/* Nothing rescanned in the window, at any precision (the
		 * collector has not used the dirty lines yet: a program
		 * building its heap): no evidence either way, the window
		 * grows.  Judged on it, twins went off for good in
		 * sparse-old's build. */
	} else if (page - f->win.page < fs.tracked_bytes &&
		   cost < AUTO_WINDOW_NS &&
		   (cost < AUTO_EVIDENCE_NS ||
		    (value < cost && value * AUTO_CLEAR >= cost))) {
		/* Too little spent and rescanned to tell (a program
		 * starting: a few hundred pages compared, 60 KB saved), or
		 * a window that loses by less than AUTO_CLEAR times before
		 * the collector pushed a heap's worth of pages: the window
		 * grows.  Judged on a close loss, the twins of sparse-old's
		 * build at the quick size went off in 8 runs of 20 (0.8-2.7
		 * MB saved against 13-20 ms), before the windows that earn
		 * several times their cost. */
	} else if (fs.pages_diffed - f->auto_diffed >=
			   fs.twins_sticky - f->auto_copied ||
		   ++f->auto_unjudged >= AUTO_UNJUDGED_MAX) {
		/* else more new twins than comparisons: memory being
		 * filled, the copies an investment not used yet; the
		 * window grows. */
		if (value < cost) {
			auto_log(f, &w, "off");
			if (fg_set_twin_cap(f->t, 1, 0) == 0) {
				f->auto_off = 1;
				f->st.auto_off++;
				f->auto_next = n + f->auto_wait;
				f->auto_wait = f->auto_wait * 2 < AUTO_WAIT_MAX
						       ? f->auto_wait * 2
						       : AUTO_WAIT_MAX;
			}
			restart = 1;
		} else {
			auto_log(f, &w, "on");
			f->auto_wait = AUTO_WAIT0;
			/* A paying window goes on until it is large: sticky
			 * twins are an investment, and a program's stretch
			 * that rescans little must not undo what its next
			 * one earns (the Guile set, bench/RESULTS.md). */
			if (cost >= AUTO_WINDOW_NS ||
			    page - f->win.page >=
				    AUTO_WINDOW_HEAPS * fs.tracked_bytes)
				restart = 2;
			f->auto_unjudged = 0;
		}
	}
	if (restart == 2) {
		/* A large paying window keeps half its weight: its surplus
		 * carries a stretch that rescans little (sparse-old's 28th
		 * retrieval: 0.4 MB saved against 11 ms, between windows
		 * of tens of MB). */
		f->win.ns += (now.ns - f->win.ns) / 2;
		f->win.res += (now.res - f->win.res) / 2;
		f->win.page += (now.page - f->win.page) / 2;
		f->win.compared += (now.compared - f->win.compared) / 2;
		f->win.lines += (now.lines - f->win.lines) / 2;
	} else if (restart) {
		f->auto_unjudged = 0;
		f->win = now;
	}
	if (!f->auto_off)
		f->auto_next = n + AUTO_WINDOW;
	f->auto_diffed = fs.pages_diffed;
	f->auto_copied = fs.twins_sticky;
}

static void unprotect_ptrfree(fga *f);

/* Untracked sections read dirty (after a retrieval or a peek). */
static void untracked_dirty(fga *f)
{
	for (size_t i = 0; i < f->ns; i++)
		if (!f->s[i].tracked)
			for (size_t b = 0; b < f->s[i].nblocks; b++)
				f->s[i].lines[b] = FGA_LINES_ALL;
}

/* A retrieval or peek that began at t0 (ms) is over: its time. */
static void retrieve_took(fga *f, double t0)
{
	double dt = now_ms() - t0;

	f->st.retrieve_ms_total += dt;
	if (dt > f->st.retrieve_ms_max)
		f->st.retrieve_ms_max = dt;
}

void fga_retrieve(fga *f)
{
	double t0 = now_ms();

	if (!f || !f->t)
		return;
	if (!f->precleaned)
		start_lines(f);
	f->precleaned = 0;
	collect_into_lines(f);
	if (f->concurrent) {
		f->st.whole_epochs++;
		f->concurrent = 0;
	}
	if (f->all_dirty) {
		mark_everything(f);
		f->all_dirty = 0;
	}
	if (f->kernel_faults)
		unprotect_ptrfree(f);
	untracked_dirty(f);
	/* After a peek, whose check saw everything written before the
	 * pause, the pause's own writes need not read dirty now
	 * (FG_COLLECT_AFTER_PEEK may leave them for the next retrieval):
	 * only the copy is taken. */
	if (f->check > 0)
		check_lines(f, f->peeked ? 2 : 0);
	f->peeked = 0;
	f->st.collections++;
	if (f->hot && f->st.collections % f->hot == 0)
		rejoin_hot(f);
	if (f->autocard)
		auto_judge(f);
	roots_retrieve(f);
	retrieve_took(f, t0);
}

/* ---- Static roots (fga.h, fga_roots_begin) ---- */

static size_t page_bytes(void)
{
	static size_t ps;

	if (!ps)
		ps = (size_t)sysconf(_SC_PAGESIZE);
	return ps;
}

/* Forget every root range (unregistered where the tracker is this
 * process's), and the tracker: all roots read dirty. */
static void roots_drop(fga *f)
{
	for (size_t i = 0; i < f->nroots; i++)
		free(f->roots[i].dirty);
	free(f->roots);
	f->roots = NULL;
	f->nroots = f->caproots = 0;
	if (f->rt)
		(void)fg_tracker_destroy(f->rt);
	f->rt = NULL;
	f->rt_off = 0;
}

/* The roots' tracker: page precision on the heap tracker's backend,
 * where that backend watches every kind of root memory without
 * protecting it.  0, or -1 (printed once; roots then read dirty). */
static int roots_tracker(fga *f)
{
	const unsigned need = FG_CAP_TRACKS | FG_CAP_KERNEL_WRITES |
			      FG_CAP_CONCURRENT | FG_CAP_PRIVATE_FILE;
	fg_options o = FG_OPTIONS_INIT;
	unsigned caps;
	int rc;

	if (f->rt)
		return 0;
	if (f->rt_off || !f->t)
		return -1;
	o.backend = fg_tracker_backend(f->t);
	o.flags |= FG_OPT_NO_ENV; /* FG_CARD and the rest are the heap's */
	caps = fg_backend_caps(o.backend);
	if ((caps & need) != need ||
	    (caps & (FG_CAP_PROTECTS | FG_CAP_SIGNAL_HANDLER))) {
		f->rt_off = 1; /* not an error: mprotect, uffd-sync, ... */
		return -1;
	}
	rc = fg_tracker_create(&o, &f->rt);
	if (rc) {
		say(f, "static roots stay untracked (%s: %s)", fg_strerror(rc),
		    fg_last_error_detail());
		f->rt = NULL;
		f->rt_off = 1;
		return -1;
	}
	return 0;
}

void fga_roots_begin(fga *f)
{
	if (!f)
		return;
	f->nrpend = 0;
	f->rpend_lost = 0;
}

void fga_roots_add(fga *f, const void *lo, const void *hi)
{
	size_t ps = page_bytes();
	uintptr_t a = (uintptr_t)lo & ~(ps - 1);
	uintptr_t e = ((uintptr_t)hi + ps - 1) & ~(ps - 1);
	fg_range *v;

	if (!f || !f->c.roots || f->rt_off || e <= a)
		return;
	v = grow(f->rpend, &f->caprpend, sizeof *v, f->nrpend + 1);
	if (!v) {
		f->rpend_lost = 1; /* fga_roots_end keeps the table */
		return;
	}
	f->rpend = v;
	v[f->nrpend++] = (fg_range){(void *)a, e - a};
}

static int range_cmp(const void *x, const void *y)
{
	uintptr_t a = (uintptr_t)((const fg_range *)x)->addr;
	uintptr_t b = (uintptr_t)((const fg_range *)y)->addr;

	return a < b ? -1 : a > b;
}

/* The 64-bit words of a root range's page bits. */
static size_t root_words(const struct root *r)
{
	return ((r->hi - r->lo) / page_bytes() + 63) / 64;
}

/* Register [lo, hi) as root range *r: NEW, or UNTRACKED if the tracker
 * refuses it (a kind of memory it cannot watch, a heap section's pages)
 * or there is no memory for its bits. */
static void root_start(fga *f, struct root *r, uintptr_t lo, uintptr_t hi)
{
	*r = (struct root){lo, hi, ROOT_UNTRACKED, NULL};
	if ((hi - lo) / page_bytes() < ROOT_MIN_PAGES)
		return;
	r->dirty = calloc(root_words(r), sizeof *r->dirty);
	if (!r->dirty)
		return;
	if (fg_register(f->rt, (void *)lo, hi - lo)) {
		free(r->dirty);
		r->dirty = NULL;
		f->st.roots_refused++;
		return;
	}
	r->state = ROOT_NEW;
}

static void root_stop(fga *f, struct root *r)
{
	if (r->state != ROOT_UNTRACKED)
		(void)fg_unregister(f->rt, (void *)r->lo, r->hi - r->lo);
	free(r->dirty);
	r->dirty = NULL;
}

void fga_roots_end(fga *f)
{
	struct root *nv;
	size_t n = 0, i = 0, j = 0;

	if (!f || !f->c.roots || f->rpend_lost || roots_tracker(f))
		return;
	/* Sorted, and ranges sharing or touching a page merged. */
	qsort(f->rpend, f->nrpend, sizeof *f->rpend, range_cmp);
	for (size_t k = 0; k < f->nrpend; k++) {
		uintptr_t a = (uintptr_t)f->rpend[k].addr;
		uintptr_t e = a + f->rpend[k].len;

		if (n && a <= (uintptr_t)f->rpend[n - 1].addr +
				      f->rpend[n - 1].len) {
			uintptr_t pe = (uintptr_t)f->rpend[n - 1].addr +
				       f->rpend[n - 1].len;

			if (e > pe)
				f->rpend[n - 1].len += e - pe;
			continue;
		}
		f->rpend[n++] = f->rpend[k];
	}
	f->nrpend = n;
	nv = n ? malloc(n * sizeof *nv) : NULL;
	if (n && !nv)
		return; /* the table stays as it was: sound */
	/* Both lists are sorted: keep what is unchanged, drop what is
	 * gone, start what is new. */
	for (size_t k = 0; k < n; k++) {
		uintptr_t a = (uintptr_t)f->rpend[k].addr;
		uintptr_t e = a + f->rpend[k].len;

		while (i < f->nroots && f->roots[i].lo < a)
			root_stop(f, &f->roots[i++]);
		if (i < f->nroots && f->roots[i].lo == a &&
		    f->roots[i].hi == e) {
			nv[j++] = f->roots[i++];
			continue;
		}
		/* A range that changed: the old one goes first (the new one
		 * may overlap it). */
		while (i < f->nroots && f->roots[i].lo < e)
			root_stop(f, &f->roots[i++]);
		root_start(f, &nv[j++], a, e);
	}
	while (i < f->nroots)
		root_stop(f, &f->roots[i++]);
	free(f->roots);
	f->roots = nv;
	f->nroots = f->caproots = j;
	f->st.roots_tracked = 0;
	f->st.root_pages = 0;
	for (size_t k = 0; k < j; k++)
		if (nv[k].state != ROOT_UNTRACKED) {
			f->st.roots_tracked++;
			f->st.root_pages += (nv[k].hi - nv[k].lo) /
					    page_bytes();
		}
}

/* The root range holding a, or NULL. */
static struct root *root_of(fga *f, uintptr_t a)
{
	size_t lo = 0, hi = f->nroots;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (a < f->roots[mid].lo)
			hi = mid;
		else if (a >= f->roots[mid].hi)
			lo = mid + 1;
		else
			return &f->roots[mid];
	}
	return NULL;
}

/* In fga_retrieve (world stopped): what was written in the tracked root
 * ranges since the last retrieval.  No malloc. */
static void roots_retrieve(fga *f)
{
	size_t ps = page_bytes();
	fg_range rs[RANGE_BATCH];
	fg_iter it;
	int n, all = 0;

	if (!f->rt || !f->nroots)
		return;
	for (size_t i = 0; i < f->nroots; i++)
		if (f->roots[i].dirty)
			memset(f->roots[i].dirty, 0,
			       root_words(&f->roots[i]) * sizeof(uint64_t));
	if (fg_collect(f->rt, &it) < 0)
		all = 1; /* sound: everything reads dirty this time */
	while (!all && (n = fg_iter_next_n(&it, rs, RANGE_BATCH)) > 0)
		for (int k = 0; k < n; k++) {
			uintptr_t a = (uintptr_t)rs[k].addr & ~(ps - 1);
			uintptr_t e = (uintptr_t)rs[k].addr + rs[k].len;

			/* A range lies in one region: one lookup, its pages'
			 * bits set in a row. */
			while (a < e) {
				struct root *r = root_of(f, a);
				uintptr_t x;

				if (!r) {
					a += ps;
					continue;
				}
				x = e < r->hi ? e : r->hi;
				for (; r->dirty && a < x; a += ps) {
					size_t p = (a - r->lo) / ps;

					r->dirty[p / 64] |= UINT64_C(1)
							    << (p % 64);
				}
				a = x;
			}
		}
	for (size_t i = 0; i < f->nroots; i++) {
		struct root *r = &f->roots[i];

		if (r->state == ROOT_NEW || (all && r->dirty))
			memset(r->dirty, 0xff,
			       root_words(r) * sizeof(uint64_t));
		if (r->state == ROOT_NEW)
			r->state = ROOT_TRACKED;
	}
}

int fga_root_dirty(fga *f, const void *page)
{
	struct root *r;
	size_t p;
	int d;

	if (!f)
		return 1;
	f->st.root_asked++;
	r = root_of(f, (uintptr_t)page);
	if (!r || r->state != ROOT_TRACKED)
		return 1;
	p = ((uintptr_t)page - r->lo) / page_bytes();
	d = (r->dirty[p / 64] >> (p % 64)) & 1;
	f->st.root_clean += !d;
	return d;
}

int fga_peek(fga *f)
{
	double t0 = now_ms();
	unsigned flags = FG_COLLECT_PEEK;
	fg_iter it;
	fg_range r[RANGE_BATCH];
	int n, k;

	if (!f || !f->t)
		return 0;
	before_tracker(f, 0);
	if (f->concurrent)
		flags |= FG_COLLECT_WHOLE_PAGES;
	n = (fg_tracker_caps(f->t) & FG_CAP_PEEK) && !f->precleaned
		    ? fg_collect_flags(f->t, &it, flags)
		    : -ENOTSUP;
	if (n == -ENOTSUP) {
		fga_retrieve(f);
		return 0;
	}
	/* As start_lines and fga_retrieve, consuming nothing: the carried
	 * ranges and all_dirty stay for the retrieval that ends the
	 * interval, which clears these lines first (prev). */
	clear_prev(f);
	for (size_t i = 0; i < f->ncarry; i++) {
		set_lines(f, (uintptr_t)f->carry[i].addr, f->carry[i].len);
		remember(f, &f->prev, &f->nprev, &f->capprev, f->carry[i]);
	}
	if (n < 0) {
		say(f, "peek failed (%s: %s); everything reads dirty",
		    fg_strerror(n), fg_last_error_detail());
		mark_everything(f);
	} else {
		while ((k = fg_iter_next_n(&it, r, RANGE_BATCH)) > 0)
			for (int j = 0; j < k; j++) {
				set_lines(f, (uintptr_t)r[j].addr, r[j].len);
				if (!f->prev_all)
					remember(f, &f->prev, &f->nprev,
						 &f->capprev, r[j]);
			}
	}
	if (f->all_dirty)
		mark_everything(f);
	untracked_dirty(f);
	if (f->check > 0)
		check_lines(f, 1);
	f->peeked = 1;
	f->st.peeks++;
	retrieve_took(f, t0);
	return 1;
}

fga_lines fga_block_lines(fga *f, const void *h)
{
	struct sect *s = f ? find(f, (uintptr_t)h) : NULL;
	size_t b;

	if (!s)
		return FGA_LINES_ALL;
	b = ((uintptr_t)h - s->base) / f->block;
	if (s->ex && (s->ex[b] & EX_EXEMPT))
		return FGA_LINES_ALL;
	return s->lines[b];
}

size_t fga_for_each_dirty(fga *f,
			  void (*visit)(void *arg, void *block, fga_lines lines),
			  void *arg)
{
	size_t n = 0;

	if (!f || !visit)
		return 0;
	for (size_t i = 0; i < f->ns; i++) {
		struct sect *s = &f->s[i];

		for (size_t b = 0; b < s->nblocks; b++) {
			fga_lines l = s->ex && (s->ex[b] & EX_EXEMPT)
					      ? FGA_LINES_ALL
					      : s->lines[b];

			if (l) {
				visit(arg, (void *)(s->base + b * f->block), l);
				n++;
			}
		}
	}
	return n;
}

/* Exempting freed blocks in the tracker un-protects them: a system call
 * and, on this machine, a TLB flush each.  A collector frees the empty
 * blocks it finds one at a time, in address order (Boehm's sweep, on
 * sparse-old.scm: 2200 a collection, 98 % next to the one before), so
 * neighbours are gathered into one run and exempted by one call, before
 * anything that asks the tracker (before_tracker: every entry point but
 * this one).  Sound: until then the blocks are still watched, so a write into
 * them is recorded, and fga already reads them whole (ex). */
static void free_flush(fga *f)
{
	if (f->fr_hi > f->fr_lo) {
		(void)fg_set_exempt(f->t, (void *)f->fr_lo,
				    f->fr_hi - f->fr_lo, 1);
		f->st.exempt_calls++;
	}
	f->fr_lo = f->fr_hi = 0;
}

static void free_later(fga *f, struct sect *s, uintptr_t lo, uintptr_t hi)
{
	int same = f->fr_hi > f->fr_lo && f->fr_lo >= s->base &&
		   f->fr_hi <= s->base + s->len;

	if (same && hi == f->fr_lo) {
		f->fr_lo = lo;
	} else if (same && lo == f->fr_hi) {
		f->fr_hi = hi;
	} else {
		free_flush(f);
		f->fr_lo = lo;
		f->fr_hi = hi;
	}
}

static void exempt_run(fga *f, struct sect *s, size_t b0, size_t b1)
{
	memset(s->ex + b0, EX_EXEMPT, b1 - b0);
	if (s->tracked)
		free_later(f, s, s->base + b0 * f->block,
			   s->base + b1 * f->block);
	f->st.exempted_blocks += b1 - b0;
}

static void young_run(fga *f, struct sect *s, size_t b0, size_t b1)
{
	fg_range r = {(void *)(s->base + b0 * f->block), (b1 - b0) * f->block};

	for (size_t b = b0; b < b1; b++)
		s->ex[b] |= EX_YOUNG;
	remember(f, &f->young, &f->nyoung, &f->capyoung, r);
}

static void young_ptrfree_run(fga *f, struct sect *s, size_t b0, size_t b1)
{
	(void)f;
	for (size_t b = b0; b < b1; b++)
		s->ex[b] |= EX_YOUNG | EX_PTRFREE;
}

static void reuse_ahead(fga *f, uintptr_t h, size_t bytes, unsigned k,
			int expect);

/* Fresh blocks that were watched (a new section's): un-protected, read
 * dirty, with readahead (the collector carves a section in order). */
static void fresh_run(fga *f, struct sect *s, size_t b0, size_t b1)
{
	reuse_ahead(f, s->base + b0 * f->block, (b1 - b0) * f->block,
		    RA_FRESH, 0);
}

/* A collection finished: young blocks with pointers are watched again,
 * and read whole at the next retrieval (they may hold survivors that
 * were written after the collector scanned them). */
static void watch_run(fga *f, struct sect *s, size_t b0, size_t b1)
{
	fg_range r = {(void *)(s->base + b0 * f->block), (b1 - b0) * f->block};

	memset(s->ex + b0, 0, b1 - b0);
	if (s->tracked)
		(void)fg_set_exempt(f->t, r.addr, r.len, 0);
	remember(f, &f->carry, &f->ncarry, &f->capcarry, r);
	f->st.watched_blocks += b1 - b0;
}

void fga_blocks_freed(fga *f, void *h, size_t bytes)
{
	if (!f || !f->t || !f->exempt)
		return;
	if ((uintptr_t)h == f->new_sect) { /* the new section's first */
		f->new_sect = 0;
		return;
	}
	for_block_runs(f, (uintptr_t)h, bytes, 0, 0, exempt_run);
}

/* kernel_faults (mprotect): like Boehm's own MPROTECT_VDB, pointer-free
 * blocks are never
 * left protected, so that system calls can write into them (Guile reads
 * files into pointer-free buffers): the blocks are remembered when they
 * are handed out and un-protected again after every retrieval.  They read
 * dirty, which costs nothing: the collector does not scan them. */
static void note_ptrfree(fga *f, uintptr_t a, size_t bytes, int ptrfree)
{
	for (uintptr_t e = a + bytes; a < e; a += f->block) {
		struct sect *s = find(f, a);

		if (s && s->ptrfree)
			s->ptrfree[(a - s->base) / f->block] = ptrfree != 0;
	}
}

static void unprotect_ptrfree(fga *f)
{
	for (size_t i = 0; i < f->ns; i++) {
		struct sect *s = &f->s[i];
		size_t run = SIZE_MAX;

		if (!s->ptrfree || !s->tracked)
			continue;
		for (size_t b = 0; b <= s->nblocks; b++) {
			int pf = b < s->nblocks && s->ptrfree[b];

			if (pf && run == SIZE_MAX)
				run = b;
			if (!pf && run != SIZE_MAX) {
				(void)fg_mark_dirty(f->t,
						    (void *)(s->base +
							     run * f->block),
						    (b - run) * f->block);
				run = SIZE_MAX;
			}
		}
	}
}

/* Blocks handed out again with live objects (a sweep rebuilding their
 * free lists) are un-protected at once (fga_blocks_reused).  Boehm's lazy
 * sweep hands out the blocks of a reclaim list one at a time, and nearly
 * always the block next to the one before (95 % on sparse-old.scm, 5600
 * a collection): a system call each, and on this machine each one a TLB
 * flush.  So, like a file system's readahead, a reuse next to the last
 * one un-protects a window of the blocks beyond it with it, the window
 * doubling while the guesses hold (up to RA_MAX blocks), and the reuses
 * of blocks inside the window make no call.  Sound: a block un-protected
 * ahead reads as written (or dirty) at the next retrieval, as a reused
 * one does; only a wrong guess costs (a comparison with its twins, or at
 * page precision a rescan).  The window stops at the section's end and
 * at the first block that is not an ordinary watched one (free, young or
 * hot: exempt already), and the retrieval, which re-protects it, ends it
 * (collect_into_lines).  Fresh blocks of a new section, which the
 * collector carves in address order (99 % next to the one before on
 * sparse-old.scm, 28000 a run), are a third stream (RA_FRESH).
 *
 * RA_MAX: Linux flushes an un-protected range of up to 33 pages page by
 * page (tlb_single_page_flush_ceiling) and a longer one with one flush of
 * the whole address space; under this machine's hypervisor that is 3.5
 * us a page in windows of 32 pages against 1.1 in windows of 64 (a probe
 * over 64 MiB of written, protected pages; bench/RESULTS.md, 2026-12-06,
 * night).  So windows grow past 33 pages of 4 KiB. */
#define RA_MAX 64
#define RA_GAP 2 /* blocks between two reuses of one stream */

static void reuse_call(fga *f, uintptr_t a, size_t len, int expect)
{
	if (expect)
		(void)fg_expect_writes(f->t, (void *)a, len);
	else
		(void)fg_mark_dirty(f->t, (void *)a, len);
}

/* Whether [a, e) lies in a window un-protected this interval by one of
 * the streams [k, RA_STREAMS).  A fresh block asks only its own stream,
 * whose windows read dirty (fg_mark_dirty): it holds nothing the
 * collector scanned, so a comparison with twins (the reuse streams'
 * fg_expect_writes under DIFF) would not do for it.  A reused block may
 * lie in any window: one that reads dirty is more than it needs. */
static int ra_inside(const fga *f, uintptr_t a, uintptr_t e, unsigned k)
{
	for (; k < RA_STREAMS; k++)
		if (a >= f->ra[k].lo && e <= f->ra[k].hi)
			return 1;
	return 0;
}

static void ra_reset(fga *f)
{
	for (unsigned k = 0; k < RA_STREAMS; k++)
		f->ra[k].lo = f->ra[k].hi = 0;
}

/* Blocks [h, h+bytes) handed out, in stream k (RA_PTRS, RA_PTRFREE: reused
 * with live objects; RA_FRESH: fresh and watched, un-protected with
 * fg_mark_dirty, never EXPECT). */
static void reuse_ahead(fga *f, uintptr_t h, size_t bytes, unsigned k,
			int expect)
{
	struct ra_stream *st = &f->ra[k];
	uintptr_t lo = h, hi = h + bytes, gap = RA_GAP * f->block;
	int fresh = k == RA_FRESH;
	/* The stream's counters: blocks, calls, blocks ahead. */
	unsigned long *nblocks = fresh ? &f->st.fresh_blocks
				       : &f->st.reused_blocks;
	unsigned long *ncalls = fresh ? &f->st.fresh_calls : &f->st.reuse_calls;
	unsigned long *nahead = fresh ? &f->st.fresh_ahead : &f->st.reuse_ahead;
	struct sect *s;
	size_t b;
	int down = 0;

	*nblocks += (bytes + f->block - 1) / f->block;
	if (ra_inside(f, h, hi, fresh ? RA_FRESH : 0))
		goto done; /* un-protected ahead */
	if (hi <= st->prev && st->prev - hi <= gap)
		down = 1;
	if (down || (h >= st->prev_end && h - st->prev_end <= gap))
		st->blocks = st->blocks ? st->blocks * 2 : 1;
	else
		st->blocks = 0; /* neither just below nor above: no stream */
	if (st->blocks > RA_MAX)
		st->blocks = RA_MAX;
	s = find(f, h);
	if (s && s->tracked && s->ex && st->blocks &&
	    hi <= s->base + s->len) {
		/* b: the window's edge, the first block beyond it (down: the
		 * block below it) that it may take next. */
		b = ((down ? h : hi) - s->base) / f->block;
		for (size_t i = 0; i < st->blocks; i++) {
			size_t next = down ? b - 1 : b;

			if ((down ? b == 0 : b >= s->nblocks) || s->ex[next])
				break;
			b = down ? b - 1 : b + 1;
		}
		if (down)
			lo = s->base + b * f->block;
		else
			hi = s->base + b * f->block;
		*nahead += (hi - lo - bytes) / f->block;
	}
	reuse_call(f, lo, hi - lo, expect);
	(*ncalls)++;
	st->lo = lo;
	st->hi = hi;
done:
	st->prev = h;
	st->prev_end = h + bytes;
}

void fga_blocks_reused(fga *f, void *h, size_t bytes, unsigned flags)
{
	if (!f || !f->t)
		return;
	before_tracker(f, 0);
	/* The collector never reads the lines of a pointer-free block: no
	 * twin (copy or digest) is kept for it, memory and comparisons
	 * saved; written, it reads whole.  A block handed out again with
	 * pointers may have twins again. */
	if (f->diff && (flags & FGA_BLOCK_PTRFREE)) {
		if (fg_set_twinless(f->t, h, bytes, 1) == 0)
			f->twinless = 1;
	} else if (f->twinless && (flags & FGA_BLOCK_NEW)) {
		(void)fg_set_twinless(f->t, h, bytes, 0);
	}
	/* Fresh blocks (no live object in them) are about to be filled:
	 * un-protect them at once, one system call instead of a fault per
	 * page, and let them read dirty (their objects are unmarked, so
	 * this costs the collector nothing).  A block that holds live
	 * objects (a free list being rebuilt: Boehm's sweep writes a link
	 * into every free object) is written anyway, so it is un-protected
	 * at once too: at page precision it reads dirty (fg_mark_dirty);
	 * where twins may see which of its lines change (DIFF with the
	 * twins on) it reads as written, compared with its twins as if it
	 * had faulted (fg_expect_writes; with hook twins it stays
	 * protected, so that its fault takes one).  A fault per page costs more than
	 * the system call (0.73-0.99x the Guile programs' time at page
	 * cards, bench/RESULTS.md).  mprotect un-protects every such block
	 * for this epoch, as Boehm's own MPROTECT_VDB does, so that the
	 * kernel can write into it. */
	if ((flags & FGA_BLOCK_NEW) && f->exempt) {
		/* Exempt (free) blocks become young, the others are
		 * un-protected as below. */
		for_block_runs(f, (uintptr_t)h, bytes, EX_EXEMPT, EX_EXEMPT,
			       flags & FGA_BLOCK_PTRFREE ? young_ptrfree_run
							 : young_run);
		for_block_runs(f, (uintptr_t)h, bytes, EX_EXEMPT, 0,
			       fresh_run);
	} else if (flags & FGA_BLOCK_NEW) {
		/* Counted as fresh_run's are (the summary said "0 fresh"
		 * for Racket, whose instances take this path). */
		f->st.fresh_blocks += (bytes + f->block - 1) / f->block;
		f->st.fresh_calls++;
		(void)fg_mark_dirty(f->t, h, bytes);
	} else if (f->kernel_faults || !f->diff ||
		   (f->autocard && f->auto_off)) {
		reuse_ahead(f, (uintptr_t)h, bytes,
			    flags & FGA_BLOCK_PTRFREE ? RA_PTRFREE : RA_PTRS, 0);
	} else if (f->sweep_expect) {
		reuse_ahead(f, (uintptr_t)h, bytes,
			    flags & FGA_BLOCK_PTRFREE ? RA_PTRFREE : RA_PTRS, 1);
	}
	if (f->kernel_faults)
		note_ptrfree(f, (uintptr_t)h, bytes, flags & FGA_BLOCK_PTRFREE);
}

void fga_collection_done(fga *f, int wrote_after)
{
	double t0 = now_ms();
	fg_stats fs = {.size = sizeof fs};
	fg_iter it;
	fg_range r[RANGE_BATCH];
	int n, k, twins;

	if (!f || !f->t)
		return;
	/* Page precision reports every page written until the next
	 * retrieval, whatever its bytes; when the collector neither wrote
	 * into the heap nor scanned since the retrieval (it marked with the
	 * world stopped), no retrieval is needed.  Nor is one when there is
	 * no twin to compare with (FG_CARD=auto with its twins off). */
	before_tracker(f, 1); /* a collection below re-protects */
	twins = f->diff && wrote_after &&
		(!f->autocard || !f->auto_off || fg_get_stats(f->t, &fs) ||
		 fs.twin_bytes);
	n = twins ? fg_collect_flags(f->t, &it, FG_COLLECT_WHOLE_PAGES) : 0;
	if (n < 0) {
		say(f, "collection failed (%s: %s); everything reads dirty",
		    fg_strerror(n), fg_last_error_detail());
		f->all_dirty = 1;
	} else if (twins) {
		while ((k = fg_iter_next_n(&it, r, RANGE_BATCH)) > 0)
			for (int j = 0; j < k; j++) {
				remember(f, &f->carry, &f->ncarry,
					 &f->capcarry, r[j]);
				f->st.finish_bytes += r[j].len;
			}
	}
	if (f->kernel_faults)
		unprotect_ptrfree(f);
	/* Young blocks with pointers, still allocated, are watched again
	 * (pointer-free ones stay exempt, and are not listed). */
	for (size_t i = 0; i < f->nyoung; i++)
		for_block_runs(f, (uintptr_t)f->young[i].addr, f->young[i].len,
			       EX_EXEMPT | EX_YOUNG | EX_PTRFREE,
			       EX_EXEMPT | EX_YOUNG, watch_run);
	f->nyoung = 0;
	f->st.finish_ms_total += now_ms() - t0;
}

void fga_concurrent_mark(fga *f)
{
	if (f)
		f->concurrent = 1;
}

/* The parent's tracker does not follow into the child (the toolkit
 * reports everything dirty there): a new one over the same sections. */
void fga_fork_child(fga *f)
{
	if (!f)
		return;
	/* The parent's registrations are not the child's: its roots read
	 * dirty until the next fga_roots_end registers them anew. */
	roots_drop(f);
	if (!f->t)
		return;
	(void)fg_tracker_destroy(f->t);
	f->t = NULL;
	f->backend = NULL;
	f->fr_lo = f->fr_hi = 0; /* the new tracker watches every block */
	ra_reset(f);
	f->autocard = 0; /* start_tracker decides again, */
	f->auto_off = 0; /* and the new tracker's twins are on */
	f->auto_next = f->st.collections;
	if (start_tracker(f)) {
		/* The collector goes on: everything reads dirty. */
		for (size_t i = 0; i < f->ns; i++)
			f->s[i].tracked = 0;
		mark_everything(f);
		return;
	}
	for (size_t i = 0; i < f->ns; i++) {
		int rc = fg_register(f->t, (void *)f->s[i].base, f->s[i].len);

		f->s[i].tracked = rc == 0;
	}
	f->all_dirty = 1; /* what the child wrote before this is unknown */
	f->ncarry = 0;
	f->nyoung = 0;
	/* The new tracker watches every block. */
	for (size_t i = 0; i < f->ns; i++) {
		if (f->s[i].ex)
			memset(f->s[i].ex, 0, f->s[i].nblocks);
		if (f->s[i].seen)
			memset(f->s[i].seen, 0,
			       f->s[i].nblocks * sizeof *f->s[i].seen);
	}
	mark_everything(f);
}

int fga_protects(const fga *f)
{
	return f && f->t && f->kernel_faults;
}

const char *fga_backend(const fga *f)
{
	return f ? f->backend : NULL;
}

size_t fga_card_size(const fga *f)
{
	return f && f->t ? fg_card_size(f->t) : 0;
}

unsigned fga_hold_lines(const fga *f)
{
	unsigned caps;

	if (!f || !f->t || !f->c.hold || !f->diff ||
	    (f->autocard && f->auto_off))
		return 0;
	caps = fg_tracker_caps(f->t);
	return caps & (FG_CAP_COLLECT_TWINS | FG_CAP_HOOK_TWINS) ? f->c.hold
								 : 0;
}

int fga_card_auto(const fga *f)
{
	return f && f->t && f->autocard;
}

size_t fga_block_size(const fga *f)
{
	return f ? f->block : 0;
}

int fga_set_card_size(fga *f, size_t bytes)
{
	int rc;

	if (!f || !f->t)
		return -EINVAL;
	before_tracker(f, 0);
	rc = fg_set_card_size(f->t, bytes);
	if (!rc && f->autocard) { /* (auto runs only with DIFF) */
		/* A size chosen: auto's judgement ends, and the twins are
		 * as at that size from the start (sticky, the full cap). */
		f->autocard = 0;
		f->auto_off = 0;
		rc = auto_cap(f, 1);
	}
	if (rc)
		snprintf(f->err, sizeof f->err, "card size %zu: %s (%s)",
			 bytes, fg_strerror(rc), fg_last_error_detail());
	return rc;
}

const char *fga_last_error(const fga *f)
{
	return f ? f->err : create_err;
}

fg_tracker *fga_tracker(const fga *f)
{
	return f ? f->t : NULL;
}

int fga_io_begin(fga *f, void *addr, size_t len)
{
	int io;

	if (!f || !f->t)
		return -EINVAL;
	before_tracker(f, 0);
	io = fg_io_begin(f->t, addr, len);
	if (io < 0)
		snprintf(f->err, sizeof f->err, "io_begin(%p, %zu): %s (%s)",
			 addr, len, fg_strerror(io), fg_last_error_detail());
	return io;
}

int fga_io_end(fga *f, int io)
{
	int rc;

	if (!f || !f->t)
		return -EINVAL;
	before_tracker(f, 0);
	rc = fg_io_end(f->t, io);
	if (rc)
		snprintf(f->err, sizeof f->err, "io_end(%d): %s (%s)", io,
			 fg_strerror(rc), fg_last_error_detail());
	return rc;
}

int fga_get_stats(const fga *f, fga_stats *out)
{
	fga_stats st;
	fg_stats fs = {.size = sizeof fs};
	size_t n;

	if (!f || !out || out->size == 0)
		return -EINVAL;
	st = f->st;
	if (f->t && fg_get_stats(f->t, &fs) == 0) {
		st.dirty_pages = fs.dirty_pages;
		st.faults = fs.faults;
	}
	n = out->size < sizeof st ? out->size : sizeof st;
	st.size = n;
	memcpy(out, &st, n);
	return 0;
}

static void print_auto(const fga *f, FILE *out)
{
	if (f->autocard)
		fprintf(out, "%s: FG_CARD=auto: twins turned off %lu times, "
			     "on again %lu times, given the full cap %lu "
			     "times, %s at exit\n",
			f->name, f->st.auto_off, f->st.auto_on,
			f->st.auto_full,
			f->auto_off ? "off" : f->auto_full ? "on" : "on trial");
}

void fga_print_stats(const fga *f, FILE *out, unsigned long long rescanned,
		     unsigned long long rescanned_page)
{
	fga_stats st = {.size = sizeof st};
	fg_stats fs = {.size = sizeof fs};

	if (!f)
		return;
	fga_get_stats(f, &st);
	if (f->t)
		fg_get_stats(f->t, &fs);
	fprintf(out,
		"%s: backend %s, card %zu: %lu retrievals "
		"(+%lu peeks, %lu sections named after one; %.3f ms total, "
		"%.3f ms max in pauses; %.3f ms before, "
		"%.3f ms after: %lu bytes carried whole), "
		"%lu blocks exempted (%lu calls), %lu watched again, %lu hot, "
		"%lu reused (%lu calls, %lu ahead), "
		"%lu fresh (%lu calls, %lu ahead), "
		"%lu unwatched by the collector (%lu watched again), "
		"%lu whole-page, %lu dirty pages, "
		"%lu dirty bytes, %lu faults; DIFF: %llu pages compared, %llu "
		"whole, twins %llu hook + %llu eager (%llu invalid), %llu "
		"bytes of twins held (heap %llu bytes), %.3f ms "
		"comparing; %llu bytes rescanned; %llu heap sections lost "
		"(unmapped: read dirty)\n",
		f->name, f->backend ? f->backend : "(off)", fga_card_size(f),
		st.collections, st.peeks, st.peek_named, st.retrieve_ms_total,
		st.retrieve_ms_max,
		st.preclean_ms_total, st.finish_ms_total, st.finish_bytes,
		st.exempted_blocks, st.exempt_calls, st.watched_blocks,
		st.hot_blocks, st.reused_blocks, st.reuse_calls, st.reuse_ahead,
		st.fresh_blocks, st.fresh_calls, st.fresh_ahead,
		st.unwatched_blocks, st.rewatched_blocks,
		st.whole_epochs,
		st.dirty_pages, st.dirty_bytes, st.faults,
		(unsigned long long)fs.pages_diffed,
		(unsigned long long)fs.pages_whole,
		(unsigned long long)fs.twins_hook,
		(unsigned long long)fs.twins_eager,
		(unsigned long long)fs.twins_invalid,
		(unsigned long long)fs.twin_bytes,
		(unsigned long long)fs.tracked_bytes, fs.diff_ns / 1e6,
		rescanned, (unsigned long long)fs.regions_lost);
	if (f->diff)
		fprintf(out,
			"%s: twins: %llu copied, %llu refreshed in place, "
			"%llu declined, %llu evicted for the cap, %llu aged "
			"out; cap %llu bytes; %.3f ms comparing and taking "
			"them (%.3f ms taking); %llu bytes at page precision "
			"would have been rescanned\n",
			f->name, (unsigned long long)fs.twins_sticky,
			(unsigned long long)fs.twins_refreshed,
			(unsigned long long)fs.twins_declined,
			(unsigned long long)fs.twins_evicted,
			(unsigned long long)fs.twins_aged,
			(unsigned long long)fs.twin_cap_bytes, fs.diff_ns / 1e6,
			fs.take_ns / 1e6, rescanned_page);
	if (st.root_asked || st.roots_tracked)
		fprintf(out,
			"%s: static roots: %lu ranges tracked (%lu pages), "
			"%lu refused; %lu of %lu root pages asked read "
			"clean\n",
			f->name, st.roots_tracked, st.root_pages,
			st.roots_refused, st.root_clean, st.root_asked);
	print_auto(f, out);
}

void fga_print_check(const fga *f, FILE *out)
{
	if (!f)
		return;
	if (f->check < 0) {
		fprintf(out, "%s: %s: cannot read /proc/self/mem or map a "
			     "buffer; nothing was checked\n",
			f->name, f->check_label);
		return;
	}
	fprintf(out, "%s: %s: %lu retrievals checked, %lu changed lines "
		     "not reported\n",
		f->name, f->check_label, f->st.collections, f->st.missed);
	print_auto(f, out);
}
