/* diff.c - DIFF precision: cards finer than a page from twins.
 *
 * A twin is a copy of a page taken at the start of some epoch T, while the
 * page was write-protected.  At collection, a page the backend reports
 * written is compared with a twin 64 bytes at a time, and only the granules
 * whose bytes changed are reported (then rounded out to cards).  A written
 * page without a usable twin is reported whole: always sound.
 *
 * Where twins come from:
 *   - hook: a backend with a first-write hook and a way to check the page's
 *     protection (uffd-sync) calls fg_diff_first_write() before the
 *     faulting write lands; it copies the page and validates the copy.
 *   - eager (both policies): at collection, pages dirty in two consecutive
 *     epochs are predicted to be written again; they are twinned at once
 *     and left writable (fg_mark_dirty's path), so they never fault and are
 *     diffed at every collection.
 *   - sticky (FG_TWIN_STICKY): at collection, every other page reported
 *     written is twinned the same way but left protected, so its next
 *     write is still recorded by the backend, however many epochs later.
 *   - adaptive (FG_TWIN_ADAPTIVE): sticky, but only for the pages whose
 *     history says a twin pays (sticky_pays), under a budget.
 *
 * Slots and states.  A page has two slots; a twin is tagged with the epoch
 * E it belongs to.  Hooks put theirs in slot E & 1, and so does the
 * collector under FG_TWIN_HOT; under FG_TWIN_STICKY the collector puts a
 * page's twins in its home slot, the one it last compared with (resident
 * memory, so no fault, and one slot per page), whatever E's parity.  A
 * slot is
 *   NONE      empty;
 *   COPYING   held by whoever moved it from NONE (or a replaceable READY):
 *             it copies the page, then publishes READY or NONE;
 *   READY     a twin, with its tag;
 *   READING   held by the collector while it compares with the twin or
 *             checks its tag before dropping it;
 *   TRIMMING  held by fg_diff_trim while its memory is given back.
 * Only the holder of COPYING writes a slot's bytes or tag.  Anyone who
 * finds COPYING, READING or TRIMMING waits for the holder (all three are
 * held for a page copy or compare, an ioctl or an madvise, never across a
 * wait for something else).  So no twin is ever rewritten while the
 * collector compares with it.
 *
 * Invariants:
 *   - Epochs.  A collection closing epoch C first makes C+1 the region's
 *     epoch, then has the backend re-protect, then compares, then takes
 *     the eager and sticky twins of C+1 right after the re-protection.
 *     Collections of a tracker are serialised (the tracker lock), and only
 *     they take READING, TRIMMING, and eager or sticky twins.
 *   - Copies are clean.  A twin is copied from a page nobody can write
 *     during the copy, and that is checked after the copy against the
 *     kernel's own record, because a hook cannot by itself rule out that
 *     someone else un-protected the page (fg_mark_dirty, a late fault
 *     handler, a zap): hook twins one page at a time (ops->page_written
 *     before and after the copy, and the region's epoch must not have moved
 *     meanwhile, since a collection re-protects), eager and sticky twins in
 *     one scan after all copies (ops->written): a page written since the
 *     re-protection loses its twin and reads whole next time.  A backend
 *     without that record (mprotect) gets no twins: its written pages read
 *     whole until a protection-generation protocol exists.
 *   - Consumption (FG_TWIN_STICKY).  When a collection closing C reports a
 *     page, it takes every twin of that page tagged C or earlier out of
 *     its slot (waiting out a COPYING one first), whichever it compared
 *     with, or retags the one it compared with C+1 (refresh in place,
 *     below).  Hence a READY twin tagged T <= C found at the close of C
 *     belongs to a page that no collection closing T .. C-1 reported:
 *     the page stayed protected from the twin's validation until C-1's
 *     re-protection pass (protection is only restored by a collection that
 *     reports the page), so the twin equals the page at the start of C and
 *     may be compared with, whatever T's parity.  Of two such twins the
 *     later is used (both are equal).
 *   - Sharing slots.  While the collection closing C compares, hooks of
 *     C+1 fill slots (C+1) & 1, where an older sticky twin may sit.  Under
 *     FG_TWIN_STICKY a hook never replaces a READY twin: tagged with the
 *     hook's epoch it is the twin wanted; tagged earlier it either still
 *     describes the page or is about to be consumed (or refreshed) by the
 *     collection in flight, and the hook cannot tell which (if consumed,
 *     the collector twins the page for C+1 itself, validated as usual).  Nor does it copy
 *     when the other slot holds a READY twin of its epoch (the collector's,
 *     in the home slot).  The collector moves a twin READY -> READING by
 *     CAS and reads its tag only then, so a hook's twin of C+1 is never
 *     mistaken for an old one; it twins a page for C+1 only if neither slot
 *     holds a twin of C+1, and validation drops twins of C+1 in either
 *     slot.  A late hook of C finds the home slot NONE (and fails its epoch
 *     check) or READY tagged C+1 (and leaves it).  Under FG_TWIN_HOT only
 *     the twin tagged C is compared with, from slot C & 1, which no hook of
 *     C+1 touches; a stale twin there is replaced by a hook of its slot's
 *     next epoch.
 *   - Refresh in place (FG_TWIN_STICKY, _ADAPTIVE).  A page compared
 *     and twinned again keeps the twin it was compared with: the
 *     granules found changed are copied into it from the page, and it is
 *     retagged C+1 and published READY.  The page was re-protected before
 *     the comparison, so the twin equals the page at the start of C+1
 *     unless the page is written meanwhile, which the validation after
 *     the copies catches, as for a new sticky twin.  It saves the page
 *     copy and, its slot being resident, the fault.
 *   - The cap.  Twins are counted (twins_ready) and a slot goes from NONE
 *     to COPYING only below t->diff.cap_pages (twin_cap bytes, or
 *     twin_cap_pct of the tracked bytes).  Sticky twins sit in two FIFOs
 *     in the order taken: new copies (on probation: not yet compared)
 *     and twins kept after a comparison.  Before copying, the collector
 *     evicts until this collection's new twins fit: FG_TWIN_STICKY the
 *     older head of the two (the pages left unwritten longest);
 *     FG_TWIN_ADAPTIVE probation first, kept next, and only twins whose
 *     pages went unwritten for a while (sticky_make_room).  A page that
 *     still finds no room reads whole next time.  Dropping a twin is
 *     always sound; its memory goes back at the next trim, which comes
 *     early when a region dropped many (fg_diff_maybe_trim).
 *   - Tags are compared modulo 2^32 (int32_t differences), so a twin must
 *     not outlive 2^31 epochs of its region: fg_diff_trim, which runs at
 *     least every 65536 epochs of a region, drops twins older than 2^30.
 *   - The hook may be called from a SIGSEGV handler (mprotect, without
 *     twins): it takes no lock and allocates nothing; twin memory is a
 *     reserved mirror of the region (two pages of address space per page:
 *     slot 0 of every page, then slot 1; see slot_addr), faulted in on
 *     first use, on huge pages under a full cap, and given back by
 *     fg_diff_trim.
 */
#include "fg_internal.h"

#include <emmintrin.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

enum { TWIN_NONE, TWIN_COPYING, TWIN_READY, TWIN_TRIMMING, TWIN_READING };

#define GRANULE 64
#define TWIN_MAX_AGE (UINT32_C(1) << 30) /* epochs; see "Tags" above */

struct fg_twins {
	uint8_t *map;		 /* the reservation, map_len bytes */
	size_t map_len;
	uint8_t *area;		 /* slot s of page p at s * half + p slots */
	size_t slot;		 /* bytes of a twin: a page, or its lines'
				    digests (t->diff.twin_size) */
	size_t half;		 /* the region's slots, in bytes, rounded up
				    to THP_SIZE (when one or more) */
	bool huge;		 /* slot 0 advised MADV_HUGEPAGE */
	_Atomic uint8_t *state;	 /* per (page, slot) */
	_Atomic uint32_t *tag;	 /* epoch the slot's twin belongs to */
	uint32_t *last_dirty;	 /* last epoch the page was reported in */
	uint32_t *retry_at;	 /* adaptive: no sticky twin before it */
	uint8_t *home;		 /* sticky: the slot its last twin used */
	uint8_t *filled;	 /* per page of the twin memory: populated
				    by populate_slots, not trimmed since */
	_Atomic uint32_t epoch;	 /* the region's current epoch, from 2 */
	size_t freed;		 /* collector: twins dropped since trimmed */
};

/* A sticky twin, in the order taken (FG_TWIN_STICKY's eviction order).
 * An entry whose slot no longer holds that twin is stale and skipped. */
struct sticky_ent {
	fg_region *r;
	size_t p;
	uint32_t tag;
	unsigned s;  /* its slot */
	uint64_t at; /* the tracker's collection count when taken */
};

struct fg_sticky_fifo {
	struct sticky_ent *v; /* ring: entry k at v[(head + k) % cap] */
	size_t head, n, cap;
};

static uint8_t *slot_addr(const fg_region *r, size_t p, unsigned s)
{
	const struct fg_twins *w = r->twins;

	return w->area + s * w->half + p * w->slot;
}

/* A twin of the page at a: a copy, or its lines' digests. */
static void twin_fill(const fg_impl *t, void *twin, const void *a)
{
	if (t->diff.digest)
		fg_digest_page(&t->diff.key, twin, a, fg_page_size / GRANULE);
	else
		memcpy(twin, a, fg_page_size);
}

/* Where the twins sit.  Slot 0 of every page is one run of memory, slot
 * 1 another, each aligned to THP_SIZE in regions of 2 MiB and more
 * (smaller ones have no whole huge page): sticky twins live in slot 0 (their
 * home, unless a hook put the page's first twin in slot 1), so under a
 * full cap slot 0 is as dense as the heap's written pages, and there it
 * is advised MADV_HUGEPAGE (fg_diff_set_huge): one fault and one clear
 * per 2 MiB instead of per page.  First touches are what twins cost most
 * on virtual machines (bench/RESULTS.md, "Twins on huge pages").  Under
 * a smaller cap the twins are scattered and a huge page would hold
 * mostly slots never used, so then it is not advised. */
#define THP_SIZE ((size_t)2 << 20)

int fg_diff_region_init(fg_impl *t, fg_region *r)
{
	struct fg_twins *w = calloc(1, sizeof *w);
	size_t slots, align;

	if (!w)
		return -ENOMEM;
	slots = 2 * r->npages;
	w->slot = t->diff.twin_size;
	/* Each half aligned to a huge page, from a reservation a huge page
	 * longer; a half under a huge page gets none, nor padding. */
	align = r->npages * w->slot >= THP_SIZE ? THP_SIZE : fg_page_size;
	w->half = (r->npages * w->slot + align - 1) & ~(align - 1);
	w->map_len = 2 * w->half + (align == THP_SIZE ? THP_SIZE : 0);
	w->map = mmap(NULL, w->map_len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	w->area = (uint8_t *)(((uintptr_t)w->map + align - 1) &
			      ~(uintptr_t)(align - 1));
	w->state = calloc(slots, sizeof *w->state);
	w->tag = calloc(slots, sizeof *w->tag);
	w->last_dirty = calloc(r->npages, sizeof *w->last_dirty);
	w->retry_at = calloc(r->npages, sizeof *w->retry_at);
	w->home = calloc(r->npages, sizeof *w->home);
	w->filled = calloc(w->map_len / fg_page_size, 1);
	if (w->map == MAP_FAILED || !w->state || !w->tag || !w->last_dirty ||
	    !w->retry_at || !w->home || !w->filled) {
		if (w->map != MAP_FAILED)
			munmap(w->map, w->map_len);
		free(w->state);
		free(w->tag);
		free(w->last_dirty);
		free(w->retry_at);
		free(w->home);
		free(w->filled);
		free(w);
		return fg_fail(-ENOMEM, "no memory for the twins of a %zu-byte "
					"region",
			       r->len);
	}
	atomic_init(&w->epoch, 2);
	r->twins = w;
	t->diff.nregions++;
	return 0;
}

/* Advise huge pages for slot 0 of region r's twins when on, or stop
 * advising them (huge pages already there stay until trimmed). */
void fg_diff_set_huge(fg_region *r, bool on)
{
	struct fg_twins *w = r->twins;

	/* Only the whole huge pages of slot 0: the twins of the region's
	 * tail share no huge page with memory beyond it. */
	size_t len = r->npages * w->slot & ~(THP_SIZE - 1);

	if (w->huge == on || !len)
		return;
	/* Advice only: without THP (or with it off) twins fault a page at
	 * a time, as before. */
	if (!madvise(w->area, len, on ? MADV_HUGEPAGE : MADV_NOHUGEPAGE))
		w->huge = on;
}

/* Whether the FIFO entry e still names a READY twin. */
static bool sticky_live(const struct sticky_ent *e)
{
	const struct fg_twins *w = e->r->twins;
	size_t i = 2 * e->p + e->s;

	return atomic_load(&w->state[i]) == TWIN_READY &&
	       atomic_load(&w->tag[i]) == e->tag;
}

/* Keep only the live entries, in order, and none of region gone. */
static void fifo_compact(struct fg_sticky_fifo *f, const fg_region *gone)
{
	size_t k = 0;

	for (size_t j = 0; j < f->n; j++) {
		struct sticky_ent *e = &f->v[(f->head + j) % f->cap];

		if (e->r != gone && sticky_live(e))
			f->v[(f->head + k++) % f->cap] = *e;
	}
	f->n = k;
}

void fg_diff_region_fini(fg_impl *t, fg_region *r)
{
	struct fg_twins *w = r->twins;
	size_t used = 0;

	if (!w)
		return;
	t->diff.nregions--;
	for (unsigned k = 0; k < 2; k++) {
		struct fg_sticky_fifo *f = t->diff.fifo[k];

		if (f && t->diff.nregions)
			fifo_compact(f, r);
		if (!t->diff.nregions) {
			if (f && f->v)
				munmap(f->v, f->cap * sizeof *f->v);
			if (f)
				munmap(f, sizeof *f);
			t->diff.fifo[k] = NULL;
		}
	}
	if (!t->diff.nregions) {
		fg_runs_free(&t->diff.sticky_pages);
		fg_runs_free(&t->diff.kept_pages);
	}
	for (size_t i = 0; i < 2 * r->npages; i++)
		used += atomic_load(&w->state[i]) == TWIN_READY;
	atomic_fetch_sub(&t->diff.twins_ready, used);
	munmap(w->map, w->map_len);
	free(w->state);
	free(w->tag);
	free(w->last_dirty);
	free(w->retry_at);
	free(w->home);
	free(w->filled);
	free(w);
	r->twins = NULL;
}

/* Whether page p has a READY twin tagged epoch, in either slot. */
static bool has_twin(const struct fg_twins *w, size_t p, uint32_t epoch)
{
	for (unsigned s = 0; s < 2; s++)
		if (atomic_load(&w->state[2 * p + s]) == TWIN_READY &&
		    atomic_load(&w->tag[2 * p + s]) == epoch)
			return true;
	return false;
}

/* Make slot (p, s) epoch's twin unless it already is.  Returns whether a
 * usable copy was made by us.  validate: the hook's path (slot epoch & 1;
 * the page's protection is checked around the copy, one page at a time). */
static bool twin_take(fg_impl *t, fg_region *r, size_t p, unsigned s,
		      uint32_t epoch, bool validate)
{
	struct fg_twins *w = r->twins;
	_Atomic uint8_t *st = &w->state[2 * p + s];
	uintptr_t page = r->base + p * fg_page_size;
	bool checked = false;

	for (;;) {
		uint8_t cur = atomic_load(st);
		uint32_t tag = atomic_load(&w->tag[2 * p + s]);

		if (cur == TWIN_COPYING || cur == TWIN_TRIMMING ||
		    cur == TWIN_READING) {
			_mm_pause(); /* held for a copy, compare or madvise */
			continue;
		}
		/* Never replace a twin of this epoch, nor of a later one (a
		 * hook that read the epoch before a collection moved it). */
		if (cur == TWIN_READY && (int32_t)(tag - epoch) >= 0)
			return false;
		/* Sticky: an older twin may be the one the collection in
		 * flight compares with (see "Sharing slots"); and the
		 * collector may have put this epoch's twin in the other
		 * slot (its home). */
		if (validate && t->diff.sticky &&
		    (cur == TWIN_READY || has_twin(w, p, epoch)))
			return false;
		if (cur == TWIN_NONE &&
		    atomic_load(&t->diff.twins_ready) >= (int64_t)t->diff.cap_pages)
			return false; /* over the cap: the page reads whole */
		/* Already writable (a second fault message for the page after
		 * its un-protection): it would be copied while it changes, and
		 * a collection re-protecting it during the copy would hide
		 * that from the check after the copy. */
		if (validate && !checked) {
			if (t->ops->page_written(t, page) != 0) {
				atomic_fetch_add_explicit(
					&t->diff.twins_hook_invalid, 1,
					memory_order_relaxed);
				return false;
			}
			checked = true;
		}
		if (!atomic_compare_exchange_weak(st, &cur, TWIN_COPYING))
			continue;
		twin_fill(t, slot_addr(r, p, s), (const void *)page);
		/* Valid only if the page stayed protected through the copy
		 * and no collection began meanwhile: a collection re-protects,
		 * so "protected now" alone could hide an un-protection that
		 * happened during the copy, before its re-protect. */
		if (validate && (t->ops->page_written(t, page) != 0 ||
				 atomic_load(&w->epoch) != epoch)) {
			/* Written (or unknown) meanwhile: no twin, reads whole. */
			if (cur == TWIN_READY)
				atomic_fetch_sub(&t->diff.twins_ready, 1);
			atomic_store(st, TWIN_NONE);
			atomic_fetch_add_explicit(&t->diff.twins_hook_invalid, 1,
						  memory_order_relaxed);
			return false;
		}
		atomic_store(&w->tag[2 * p + s], epoch);
		if (cur == TWIN_NONE)
			atomic_fetch_add(&t->diff.twins_ready, 1);
		atomic_store(st, TWIN_READY);
		return true;
	}
}

static void twin_drop(fg_impl *t, fg_region *r, size_t p, unsigned s)
{
	_Atomic uint8_t *st = &r->twins->state[2 * p + s];
	uint8_t ready = TWIN_READY;

	if (atomic_compare_exchange_strong(st, &ready, TWIN_NONE))
		atomic_fetch_sub(&t->diff.twins_ready, 1);
}

/* Drop slot (p, s) if it still holds the twin tagged tag. */
static bool twin_drop_tagged(fg_impl *t, fg_region *r, size_t p, unsigned s,
			     uint32_t tag)
{
	struct fg_twins *w = r->twins;
	size_t i = 2 * p + s;

	for (;;) {
		uint8_t cur = atomic_load(&w->state[i]);

		if (cur != TWIN_READY)
			return false;
		if (!atomic_compare_exchange_weak(&w->state[i], &cur,
						  TWIN_READING))
			continue;
		if (atomic_load(&w->tag[i]) != tag) {
			atomic_store(&w->state[i], TWIN_READY);
			return false;
		}
		atomic_fetch_sub(&t->diff.twins_ready, 1);
		atomic_store(&w->state[i], TWIN_NONE);
		w->freed++;
		return true;
	}
}

/* The region of a tracker containing page, without locks (signal-safe). */
static fg_region *diff_lookup(fg_impl *t, uintptr_t page)
{
	for (size_t i = 0; i < FG_DIFF_SLOTS; i++) {
		fg_region *r = atomic_load(&t->diff.table[i]);

		if (r && page - r->base < r->len)
			return r;
	}
	return NULL;
}

/* fg_set_twinless: page p of r gets no twin. */
static bool twinless(fg_region *r, size_t p)
{
	_Atomic(uint64_t) *bits =
		atomic_load_explicit(&r->twinless, memory_order_acquire);

	return bits &&
	       (atomic_load_explicit(&bits[p / 64], memory_order_relaxed) >>
		(p % 64)) & 1;
}

void fg_diff_first_write(void *page, void *arg)
{
	fg_impl *t = arg;
	fg_region *r = diff_lookup(t, (uintptr_t)page);
	uint32_t epoch = r ? atomic_load(&r->twins->epoch) : 0;
	size_t p = r ? ((uintptr_t)page - r->base) / fg_page_size : 0;

	if (r && !twinless(r, p) && twin_take(t, r, p, epoch & 1, epoch, true))
		atomic_fetch_add_explicit(&t->diff.twins_hook, 1,
					  memory_order_relaxed);
	if (t->diff.user_hook)
		t->diff.user_hook(page, t->diff.user_hook_arg);
}

int fg_diff_publish(fg_impl *t, fg_region *r)
{
	for (size_t i = 0; i < FG_DIFF_SLOTS; i++) {
		fg_region *none = NULL;

		if (atomic_compare_exchange_strong(&t->diff.table[i], &none, r))
			return 0;
	}
	return fg_fail(-ENOSPC, "DIFF precision: more than %d regions",
		       FG_DIFF_SLOTS);
}

void fg_diff_unpublish(fg_impl *t, fg_region *r)
{
	for (size_t i = 0; i < FG_DIFF_SLOTS; i++) {
		fg_region *cur = r;

		if (atomic_compare_exchange_strong(&t->diff.table[i], &cur, NULL))
			return;
	}
}

uint32_t fg_diff_begin_epoch(fg_region *r)
{
	return atomic_fetch_add(&r->twins->epoch, 1);
}

/* Changed 64-byte granules of a page as a bit mask (SSE2, in x86-64's
 * baseline; glibc's memcmp first, which is AVX2 and stops early), or of
 * its digests. */
static uint64_t changed_granules(const fg_impl *t, const uint8_t *a,
				 const uint8_t *b)
{
	uint64_t mask = 0;

	if (t->diff.digest)
		return fg_digest_changed(&t->diff.key, a, (const uint64_t *)b,
					 fg_page_size / GRANULE);
	if (!memcmp(a, b, fg_page_size))
		return 0;
	for (size_t g = 0; g < fg_page_size / GRANULE; g++) {
		const __m128i *x = (const __m128i *)(a + g * GRANULE);
		const __m128i *y = (const __m128i *)(b + g * GRANULE);
		__m128i e = _mm_and_si128(
			_mm_and_si128(_mm_cmpeq_epi8(_mm_loadu_si128(x),
						     _mm_loadu_si128(y)),
				      _mm_cmpeq_epi8(_mm_loadu_si128(x + 1),
						     _mm_loadu_si128(y + 1))),
			_mm_and_si128(_mm_cmpeq_epi8(_mm_loadu_si128(x + 2),
						     _mm_loadu_si128(y + 2)),
				      _mm_cmpeq_epi8(_mm_loadu_si128(x + 3),
						     _mm_loadu_si128(y + 3))));

		if (_mm_movemask_epi8(e) != 0xffff)
			mask |= UINT64_C(1) << g;
	}
	return mask;
}

/* Hold in READING the twins of page p that stand for it at the start of
 * epoch closed: the one tagged closed (FG_TWIN_HOT), or every one tagged
 * closed or earlier (FG_TWIN_STICKY, "Consumption").  Returns the slots
 * held, bit s for slot s. */
static unsigned twins_hold(fg_impl *t, struct fg_twins *w, size_t p,
			   uint32_t closed)
{
	unsigned held = 0;

	for (unsigned s = 0; s < 2; s++) {
		_Atomic uint8_t *st = &w->state[2 * p + s];
		bool got = false;
		uint32_t tag;

		if (!t->diff.sticky && s != (closed & 1))
			continue;
		for (;;) {
			uint8_t cur = atomic_load(st);

			if (cur == TWIN_COPYING) {
				_mm_pause(); /* a hook's copy: its outcome */
				continue;
			}
			if (cur != TWIN_READY)
				break;
			got = atomic_compare_exchange_weak(st, &cur,
							   TWIN_READING);
			if (got)
				break;
		}
		if (!got)
			continue;
		/* Read only now: a hook's twin of the next epoch may have
		 * replaced the one seen before the CAS. */
		tag = atomic_load(&w->tag[2 * p + s]);
		if (t->diff.sticky ? (int32_t)(tag - closed) <= 0 : tag == closed)
			held |= 1u << s;
		else
			atomic_store(st, TWIN_READY);
	}
	return held;
}

/* The slot of the later of the held twins of page p. */
static unsigned twins_best(const struct fg_twins *w, size_t p, unsigned held)
{
	return held == 3 ? (int32_t)(atomic_load(&w->tag[2 * p]) -
				     atomic_load(&w->tag[2 * p + 1])) < 0
			 : held == 2;
}

/* Consume the held twins of page p: sticky, all but keep (a slot, or 2
 * for none); its twin was refreshed in place, see twins_refresh. */
static void twins_release(fg_impl *t, struct fg_twins *w, size_t p,
			  unsigned held, unsigned keep)
{
	for (unsigned s = 0; s < 2; s++) {
		if (!((held >> s) & 1) || s == keep)
			continue;
		atomic_fetch_sub(&t->diff.twins_ready, 1);
		atomic_store(&w->state[2 * p + s], TWIN_NONE);
		w->freed++;
	}
}

/* FG_TWIN_STICKY and _ADAPTIVE: make held twin s of page p (at a) the
 * twin of epoch next in place, rather than dropping it and copying the
 * whole page again in fg_diff_take: copy the granules in mask (those the
 * comparison found changed) from the page.  The page was re-protected
 * before the comparison, so the twin then equals the page at next's
 * start, unless the page is written meanwhile; fg_diff_take's validation
 * drops the twins of next of pages written since the re-protection, this
 * one included.  A hook of next that finds the slot READING waits, then
 * finds it READY with its own epoch and leaves it; one that filled the
 * other slot meanwhile made a second twin of next, which is equal or
 * dropped by the same validation ("Sharing slots").  No fault: the slot
 * is resident. */
static void twins_refresh(fg_impl *t, fg_region *r, size_t p, uintptr_t a,
			  unsigned s, uint64_t mask, uint32_t next)
{
	struct fg_twins *w = r->twins;
	uint8_t *tw = slot_addr(r, p, s);

	if (t->diff.digest) {
		fg_digest_lines(&t->diff.key, (uint64_t *)tw, (const void *)a,
				mask);
	} else {
		for (; mask; mask &= mask - 1) {
			unsigned b = (unsigned)__builtin_ctzll(mask);

			memcpy(tw + b * GRANULE,
			       (const uint8_t *)a + b * GRANULE, GRANULE);
		}
	}
	atomic_store(&w->tag[2 * p + s], next);
	atomic_store(&w->state[2 * p + s], TWIN_READY);
	t->diff.twins_refreshed++;
}

/* FG_TWIN_ADAPTIVE (see also sticky_make_room and sticky_age_out):
 * whether page p, reported by the collection closing closed, should get a
 * sticky twin.  FG_TWIN_STICKY: always.  Adaptive: a twin pays when its
 * page is written again soon, sparsely: the copy and the comparison cost
 * less than rescanning the lines found unchanged.  So
 *   - a page compared (held) keeps its twin, refreshed in place, unless
 *     more than DENSE_GRANULES of its 64 lines changed; then it waits
 *     DENSE_WAIT epochs before it is twinned again;
 *   - a page without a twin gets one (on probation until compared) only
 *     if it was reported before, within PROBATION_GAP epochs: not memory
 *     being filled, nor a page written once in a long while, whose twin
 *     would be evicted or aged out before it is ever compared.
 * Declining is always sound (the page reads whole when next written). */
#define DENSE_GRANULES 48 /* of 64 per 4 KiB page */
#define DENSE_WAIT 8	  /* epochs */
#define PROBATION_GAP 6	  /* epochs */
static bool sticky_pays(fg_impl *t, struct fg_twins *w, size_t p,
			uint32_t closed, uint32_t prev, unsigned held,
			unsigned changed)
{
	bool pays;

	if (!t->diff.adaptive)
		return true;
	if (held && changed > DENSE_GRANULES * fg_page_size / 4096)
		w->retry_at[p] = closed + DENSE_WAIT;
	if ((int32_t)(w->retry_at[p] - closed) > 0)
		pays = false;
	else if (held)
		pays = true;
	else
		pays = prev && closed - prev <= PROBATION_GAP;
	if (!pays)
		t->diff.twins_declined++;
	return pays;
}

/* The runs of the granules in mask of the page at a. */
static int push_granules(fg_runs *out, uintptr_t a, uint64_t mask)
{
	return fg_runs_push_mask(out, a, GRANULE, mask);
}

int fg_diff_refine(fg_impl *t, fg_region *r, uint32_t closed,
		   const fg_runs *pages, fg_runs *out, fg_runs *eager)
{
	struct fg_twins *w = r->twins;
	uint64_t t0 = fg_now_ns();
	int rc = 0;

	out->n = 0;
	eager->n = 0;
	t->diff.sticky_pages.n = 0;
	t->diff.kept_pages.n = 0;
	t->diff.want_new = 0;
	for (size_t i = 0; i < pages->n && !rc; i++) {
		for (uintptr_t a = pages->v[i].start; a < pages->v[i].end && !rc;
		     a += fg_page_size) {
			size_t p = (a - r->base) / fg_page_size;
			/* The last epoch it changed in (0: none; epochs start
			 * at 2).  Hot: the previous one and this one. */
			uint32_t prev = w->last_dirty[p];
			bool hot = prev + 1 == closed;
			unsigned held = twins_hold(t, w, p, closed);
			unsigned changed = 0, s = 2;
			bool sticky = false, kept = false, none;
			uint64_t mask;

			if (held) {
				s = twins_best(w, p, held);
				mask = changed_granules(t, (const uint8_t *)a,
							slot_addr(r, p, s));
				w->home[p] = (uint8_t)s; /* resident: the next
							   sticky twin goes
							   here */
				t->diff.pages_diffed++;
				changed = (unsigned)__builtin_popcountll(mask);
				t->diff.lines_changed += changed;
			} else {
				mask = ~UINT64_C(0) >>
				       (64 - fg_page_size / GRANULE);
				t->diff.pages_whole++;
			}
			/* Unchanged pages cool down: an eager page that stops
			 * changing goes back to faulting. */
			if (mask)
				w->last_dirty[p] = closed;
			else
				hot = false;
			/* A twinless page keeps no twin: neither eager nor
			 * sticky, its held ones released below. */
			none = twinless(r, p);
			hot = hot && t->diff.eager && !none;
			if (!hot && t->diff.sticky && !none)
				sticky = sticky_pays(t, w, p, closed, prev,
						     held, changed);
			/* A page twinned again keeps its twin, refreshed,
			 * unless the twins are over the cap (it was lowered:
			 * fg_set_twin_cap). */
			if (held && t->diff.sticky && (hot || sticky) &&
			    atomic_load(&t->diff.twins_ready) <=
				    (int64_t)t->diff.cap_pages) {
				twins_release(t, w, p, held, s);
				twins_refresh(t, r, p, a, s, mask, closed + 1);
				kept = true;
			} else {
				twins_release(t, w, p, held, 2);
				if (hot || sticky)
					t->diff.want_new++;
			}
			rc = push_granules(out, a, mask);
			if (rc)
				break;
			if (hot)
				rc = fg_runs_push(eager, a, a + fg_page_size);
			else if (sticky)
				rc = fg_runs_push(kept ? &t->diff.kept_pages
						       : &t->diff.sticky_pages,
						  a, a + fg_page_size);
		}
	}
	t->diff.diff_ns += fg_now_ns() - t0;
	return rc;
}

int fg_diff_peek(fg_impl *t, fg_region *r, const fg_runs *pages,
		 fg_runs *out)
{
	struct fg_twins *w = r->twins;
	/* The epoch a collection now would close. */
	uint32_t cur = atomic_load(&w->epoch);
	uint64_t t0 = fg_now_ns();
	int rc = 0;

	out->n = 0;
	for (size_t i = 0; i < pages->n && !rc; i++) {
		for (uintptr_t a = pages->v[i].start; a < pages->v[i].end && !rc;
		     a += fg_page_size) {
			size_t p = (a - r->base) / fg_page_size;
			unsigned held = twins_hold(t, w, p, cur);
			uint64_t mask;

			if (held) {
				mask = changed_granules(
					t, (const uint8_t *)a,
					slot_addr(r, p, twins_best(w, p, held)));
				/* Back as found: tags, states and counts. */
				for (unsigned s = 0; s < 2; s++)
					if ((held >> s) & 1)
						atomic_store(&w->state[2 * p + s],
							     TWIN_READY);
			} else {
				mask = ~UINT64_C(0) >>
				       (64 - fg_page_size / GRANULE);
			}
			rc = push_granules(out, a, mask);
		}
	}
	t->diff.diff_ns += fg_now_ns() - t0;
	return rc;
}

/* Make room under the cap for want new twins.  FG_TWIN_STICKY: evict the
 * twins of the pages left unwritten longest, whichever FIFO holds them
 * (the older head first).  FG_TWIN_ADAPTIVE: twins on probation first,
 * then kept ones, and only a twin whose page went unwritten for
 * PROBATION_STALE collections (on probation) or KEPT_STALE (kept); the
 * new twins that still find no room are not taken (twin_take's cap
 * check): a proven twin is not given up for an unproven one, nor an
 * unproven one before it had its chance, since a copy evicted unused is
 * wasted. */
#define PROBATION_STALE 4
#define KEPT_STALE 12
static bool fifo_has(const struct fg_sticky_fifo *f)
{
	return f && f->n;
}

/* The FIFO whose head is older (0 or 1), 2 if both are empty. */
static unsigned fifo_older(struct fg_sticky_fifo *const *fs)
{
	if (fifo_has(fs[0]) && fifo_has(fs[1]))
		return fs[1]->v[fs[1]->head].at < fs[0]->v[fs[0]->head].at;
	if (fifo_has(fs[0]) || fifo_has(fs[1]))
		return !fifo_has(fs[0]);
	return 2;
}

/* Pop FIFO k's head and drop its twin if the entry is still current;
 * true if a twin went. */
static bool fifo_pop_drop(fg_impl *t, unsigned k)
{
	struct fg_sticky_fifo *f = t->diff.fifo[k];
	struct sticky_ent e = f->v[f->head];

	f->head = (f->head + 1) % f->cap;
	f->n--;
	return twin_drop_tagged(t, e.r, e.p, e.s, e.tag);
}

static void sticky_make_room(fg_impl *t, uint64_t want)
{
	struct fg_sticky_fifo **fs = t->diff.fifo;

	/* FG_TWIN_FULL_DECLINE: twin_take declines past the cap. */
	while (!t->diff.decline_full &&
	       atomic_load(&t->diff.twins_ready) + (int64_t)want >
		       (int64_t)t->diff.cap_pages) {
		unsigned k = 2;

		if (t->diff.adaptive) {
			for (unsigned c = 0; c < 2 && k == 2; c++)
				if (fifo_has(fs[c]) &&
				    t->st.collections - fs[c]->v[fs[c]->head].at >
					    (c ? KEPT_STALE : PROBATION_STALE))
					k = c;
		} else {
			k = fifo_older(fs);
		}
		if (k == 2)
			return;
		if (fifo_pop_drop(t, k))
			t->diff.twins_evicted++;
	}
}

/* fg_set_twin_cap: evict from both FIFOs, oldest first and whatever the
 * policy's guards, until the twins fit under the (new) cap.  Hook and
 * eager twins are in no FIFO: they go when next compared. */
void fg_diff_shrink(fg_impl *t)
{
	struct fg_sticky_fifo **fs = t->diff.fifo;

	unsigned k;

	while (atomic_load(&t->diff.twins_ready) > (int64_t)t->diff.cap_pages &&
	       (k = fifo_older(fs)) != 2) {
		if (fifo_pop_drop(t, k))
			t->diff.twins_evicted++;
	}
}

/* Zeroed memory from mmap, or NULL: the FIFO grows inside fg_collect,
 * which a collector calls with its other threads stopped, maybe inside
 * malloc with its arena's lock held (fg.h: no malloc there). */
static void *fifo_map(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* Append a sticky twin to FIFO k (1: kept after a comparison); false if
 * there is no memory for it. */
static bool sticky_push(fg_impl *t, unsigned k, fg_region *r, size_t p,
			unsigned s, uint32_t tag)
{
	struct fg_sticky_fifo *f = t->diff.fifo[k];

	if (!f) {
		f = fifo_map(sizeof *f);
		if (!f)
			return false;
		t->diff.fifo[k] = f;
	}
	if (f->n == f->cap) {
		/* Full: drop the stale entries; grow if that leaves it more
		 * than half full (so compaction costs O(1) a push). */
		if (f->n)
			fifo_compact(f, NULL);
		if (2 * f->n >= f->cap) {
			size_t cap = f->cap ? 2 * f->cap : 1024;
			struct sticky_ent *v = fifo_map(cap * sizeof *v);

			if (!v)
				return false;
			for (size_t k = 0; k < f->n; k++)
				v[k] = f->v[(f->head + k) % f->cap];
			if (f->v)
				munmap(f->v, f->cap * sizeof *f->v);
			f->v = v;
			f->cap = cap;
			f->head = 0;
		}
	}
	f->v[(f->head + f->n++) % f->cap] =
		(struct sticky_ent){r, p, tag, s, t->st.collections};
	return true;
}

/* FG_TWIN_ADAPTIVE: drop the twins of pages not written again within
 * PROBATION_AGE collections of the tracker (on probation) or KEPT_AGE
 * (kept): the FIFOs are in the order taken, so they are at the heads.  A
 * page written once, or rarely, does not keep a page of memory for ever;
 * it reads whole when it is next written, and may be twinned again then.
 * Sound, as eviction. */
#define PROBATION_AGE 12
#define KEPT_AGE 64
static void sticky_age_out(fg_impl *t)
{
	for (unsigned k = 0; k < 2; k++) {
		struct fg_sticky_fifo *f = t->diff.fifo[k];
		uint64_t age = k ? KEPT_AGE : PROBATION_AGE;

		while (f && f->n && t->st.collections - f->v[f->head].at > age) {
			if (fifo_pop_drop(t, k))
				t->diff.twins_aged++;
		}
	}
}

/* Fault in, with one call, the slot memory that the twins of the pages
 * [a, e) in slot s will fill, as far as the cap leaves room: a page of
 * digests serves eight twins, and taking each of its first touches as a
 * fault cost about 3 us a twin on this machine's hypervisor, ten times
 * the digest (bench/RESULTS.md, 2026-12-06, "Twins as line digests").
 * Huge pages advised stay huge.  Advice only: where MADV_POPULATE_WRITE
 * (Linux 5.14) is missing the twins fault one page at a time. */
static void populate_slots(fg_impl *t, fg_region *r, uintptr_t a,
			   uintptr_t e, unsigned s)
{
	int64_t room = (int64_t)t->diff.cap_pages -
		       atomic_load(&t->diff.twins_ready);
	size_t p = (a - r->base) / fg_page_size;
	size_t n = (e - a) / fg_page_size;
	struct fg_twins *w = r->twins;
	uintptr_t lo, hi, from = 0;

	if (room <= 0)
		return;
	if ((int64_t)n > room)
		n = (size_t)room;
	lo = (uintptr_t)slot_addr(r, p, s) & ~(uintptr_t)(fg_page_size - 1);
	hi = ((uintptr_t)slot_addr(r, p + n - 1, s) + w->slot +
	      fg_page_size - 1) & ~(uintptr_t)(fg_page_size - 1);
	/* Only what this did not fill before (and no trim gave back):
	 * in a program's steady state its slots are resident, and a call
	 * per run would be a system call per collection for nothing. */
	for (uintptr_t x = lo; x <= hi; x += fg_page_size) {
		uint8_t *f = &w->filled[(x - (uintptr_t)w->map) / fg_page_size];

		if (x < hi && !*f) {
			*f = 1;
			if (!from)
				from = x;
		} else if (from) {
			madvise((void *)from, x - from, MADV_POPULATE_WRITE);
			from = 0;
		}
	}
}

/* Twin the pages of runs for epoch in slot epoch & 1 (FG_TWIN_HOT), or in
 * their home slot (FG_TWIN_STICKY: resident, so no fault, and a page keeps
 * one slot; either slot will do, see "Sharing slots") unless a hook
 * already took this epoch's twin. */
static void take_runs(fg_impl *t, fg_region *r, const fg_runs *runs,
		      uint32_t epoch, bool home)
{
	struct fg_twins *w = r->twins;

	for (size_t i = 0; i < runs->n; i++) {
		/* Sticky twins go to their home slot, nearly always 0. */
		populate_slots(t, r, runs->v[i].start, runs->v[i].end,
			       home ? 0 : epoch & 1);
		for (uintptr_t a = runs->v[i].start; a < runs->v[i].end;
		     a += fg_page_size) {
			size_t p = (a - r->base) / fg_page_size;

			if (!home)
				twin_take(t, r, p, epoch & 1, epoch, false);
			else if (!has_twin(w, p, epoch))
				twin_take(t, r, p, w->home[p], epoch, false);
		}
	}
}

int fg_diff_take(fg_impl *t, fg_region *r, uint32_t epoch, fg_runs *eager,
		 fg_runs *scratch)
{
	struct fg_twins *w = r->twins;
	fg_runs *sticky = &t->diff.sticky_pages;
	size_t kept = 0;
	int rc;

	/* Nothing to take (a cap under a page takes none: FG_CARD=auto's
	 * "off"), so nothing to validate either. */
	if ((!eager->n && !sticky->n && !t->diff.kept_pages.n) ||
	    !t->diff.cap_pages)
		return 0;
	if (t->diff.adaptive)
		sticky_age_out(t);
	if (t->diff.sticky)
		sticky_make_room(t, t->diff.want_new);
	/* Twin while protected (the backend just re-protected these). */
	take_runs(t, r, eager, epoch, t->diff.sticky);
	take_runs(t, r, sticky, epoch, true);
	/* No hook could hold writers off: drop twins of pages written while
	 * we copied.  Their pages read whole next time. */
	if (t->ops->written) {
		scratch->n = 0;
		rc = t->ops->written(t, r, scratch);
		if (rc)
			return rc;
		for (size_t i = 0; i < scratch->n; i++) {
			for (uintptr_t a = scratch->v[i].start;
			     a < scratch->v[i].end; a += fg_page_size) {
				size_t p = (a - r->base) / fg_page_size;

				for (unsigned s = 0; s < 2; s++)
					if (twin_drop_tagged(t, r, p, s, epoch))
						t->diff.twins_invalid++;
			}
		}
	}
	/* Leave eager pages writable: no fault, diffed next time. */
	for (size_t i = 0; i < eager->n; i++) {
		uintptr_t run = 0;

		for (uintptr_t a = eager->v[i].start; a <= eager->v[i].end;
		     a += fg_page_size) {
			bool ok = a < eager->v[i].end &&
				  has_twin(w, (a - r->base) / fg_page_size,
					   epoch);

			if (ok && !run)
				run = a;
			if (!ok && run) {
				rc = t->ops->mark_dirty(t, r, run, a);
				if (rc)
					return rc;
				kept += (a - run) / fg_page_size;
				run = 0;
			}
		}
	}
	t->diff.twins_eager += kept;
	/* Sticky pages stay protected; their twins last until the page is
	 * reported again, or the cap evicts them.  Kept ones (refreshed in
	 * place) go in FIFO 1, new ones in FIFO 0. */
	for (unsigned k = 0; k < 2; k++) {
		const fg_runs *runs = k ? &t->diff.kept_pages : sticky;

		for (size_t i = 0; i < runs->n; i++) {
			for (uintptr_t a = runs->v[i].start; a < runs->v[i].end;
			     a += fg_page_size) {
				size_t p = (a - r->base) / fg_page_size;

				for (unsigned s = 0; s < 2; s++) {
					if (atomic_load(&w->state[2 * p + s]) !=
						    TWIN_READY ||
					    atomic_load(&w->tag[2 * p + s]) !=
						    epoch)
						continue;
					if (!sticky_push(t, k, r, p, s, epoch))
						/* unevictable */
						twin_drop_tagged(t, r, p, s,
								 epoch);
					else if (!k)
						t->diff.twins_sticky++;
				}
			}
		}
	}
	return 0;
}

/* Give back the memory of twins no longer in use.  Slots are held in
 * TRIMMING across the madvise, so a hook cannot copy a twin into a page
 * that is being zapped (it waits, as for COPYING).  Twins older than
 * TWIN_MAX_AGE epochs are dropped first: their tags would soon compare
 * wrongly. */
void fg_diff_trim(fg_impl *t, fg_region *r)
{
	struct fg_twins *w = r->twins;
	uint32_t now = atomic_load(&w->epoch);

	w->freed = 0;
	for (unsigned s = 0; s < 2; s++) {
		size_t run = SIZE_MAX;

		for (size_t p = 0; p <= r->npages; p++) {
			size_t i = 2 * p + s;
			uint8_t none = TWIN_NONE;
			bool held;

			if (p < r->npages &&
			    atomic_load(&w->state[i]) == TWIN_READY &&
			    now - atomic_load(&w->tag[i]) > TWIN_MAX_AGE)
				twin_drop(t, r, p, s);
			held = p < r->npages &&
			       atomic_compare_exchange_strong(
				       &w->state[i], &none, TWIN_TRIMMING);
			if (held && run == SIZE_MAX)
				run = p;
			if (!held && run != SIZE_MAX) {
				/* The whole pages of the run's slots: digest
				 * slots share pages with their neighbours. */
				uintptr_t lo = (uintptr_t)slot_addr(r, run, s);
				uintptr_t hi = lo + (p - run) * w->slot;

				lo = (lo + fg_page_size - 1) & ~(fg_page_size - 1);
				hi &= ~(fg_page_size - 1);
				if (lo < hi)
					madvise((void *)lo, hi - lo,
						MADV_DONTNEED);
				for (uintptr_t x = lo; x < hi;
				     x += fg_page_size)
					w->filled[(x - (uintptr_t)w->map) /
						  fg_page_size] = 0;
				for (size_t k = run; k < p; k++)
					atomic_store(&w->state[2 * k + s],
						     TWIN_NONE);
				run = SIZE_MAX;
			}
		}
	}
}

/* Trim when due, or when the region dropped more twins since its last
 * trim than an eighth of the cap (and at least 64): under a twin budget
 * the memory of evicted twins goes back while the budget still holds. */
void fg_diff_maybe_trim(fg_impl *t, fg_region *r, bool due)
{
	if (due || r->twins->freed > t->diff.cap_pages / 8 + 64)
		fg_diff_trim(t, r);
}
