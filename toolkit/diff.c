/* diff.c - DIFF precision: cards finer than a page from twins.
 *
 * A twin is a copy of a page as it was when its region's current epoch
 * began.  At collection, a page the backend reports written is compared
 * with its twin 64 bytes at a time, and only the granules whose bytes
 * changed are reported (then rounded out to cards).  A written page without
 * a valid twin is reported whole: always sound.
 *
 * Where twins come from:
 *   - hook: a backend with a first-write hook and a way to check the page's
 *     protection (uffd-sync) calls fg_diff_first_write() before the
 *     faulting write lands; it copies the page and validates the copy.
 *   - eager: at collection, pages dirty in two consecutive epochs are
 *     predicted to be written again; they are twinned at once and left
 *     writable (fg_mark_dirty's path), so they never fault and are diffed
 *     at every collection.
 *
 * Invariants:
 *   - Twins are double-buffered by epoch parity: slot (E & 1) holds epoch
 *     E's twin.  A collection closing epoch E first makes E+1 the region's
 *     epoch, then has the backend re-protect, then diffs with slot E & 1
 *     while hooks of epoch E+1 fill slot (E+1) & 1: they never share a slot.
 *     Slot (E & 1) is reused only in epoch E+2, after collection E is done
 *     (collections of a tracker are serialised).
 *   - A slot is NONE, COPYING or READY (with the epoch it belongs to).
 *     Whoever moves it from NONE (or a stale READY) to COPYING copies the
 *     page and publishes READY; anyone else who finds COPYING waits for
 *     READY before letting the write land.  So a twin is copied from a page
 *     nobody can write: hooks run before un-protection, the collector copies
 *     right after the backend's re-protection.
 *   - A hook cannot by itself rule out that someone else un-protected the
 *     page during its copy (fg_mark_dirty, or a fault handler of an earlier
 *     epoch that un-protects late), so every twin is validated after the
 *     copy against the kernel's own record: hook twins one page at a time
 *     (ops->page_written, and the region's epoch must not have moved
 *     during the copy), eager twins in one scan (ops->written).  A
 *     backend without that record (mprotect) gets no twins: its written
 *     pages read whole until a protection-generation protocol exists.
 *   - The hook is called from a SIGSEGV handler (mprotect): it takes no lock
 *     and allocates nothing; twin memory is a reserved mirror of the region
 *     (two pages of address space per page), faulted in on first use.
 */
#include "fg_internal.h"

#include <emmintrin.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum { TWIN_NONE, TWIN_COPYING, TWIN_READY, TWIN_TRIMMING };

#define GRANULE 64

struct fg_twins {
	uint8_t *area;		 /* 2 * len: slot s of page p at (2p + s) */
	_Atomic uint8_t *state;	 /* per (page, slot) */
	_Atomic uint32_t *tag;	 /* epoch the slot's twin belongs to */
	uint32_t *last_dirty;	 /* last epoch the page was reported in */
	_Atomic uint32_t epoch;	 /* the region's current epoch, from 2 */
};

static uint8_t *slot_addr(const fg_region *r, size_t p, unsigned s)
{
	return r->twins->area + (2 * p + s) * fg_page_size;
}

int fg_diff_region_init(fg_impl *t, fg_region *r)
{
	struct fg_twins *w = calloc(1, sizeof *w);
	size_t slots;

	if (!w)
		return -ENOMEM;
	slots = 2 * r->npages;
	w->area = mmap(NULL, slots * fg_page_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	w->state = calloc(slots, sizeof *w->state);
	w->tag = calloc(slots, sizeof *w->tag);
	w->last_dirty = calloc(r->npages, sizeof *w->last_dirty);
	if (w->area == MAP_FAILED || !w->state || !w->tag || !w->last_dirty) {
		if (w->area != MAP_FAILED)
			munmap(w->area, slots * fg_page_size);
		free(w->state);
		free(w->tag);
		free(w->last_dirty);
		free(w);
		return fg_fail(-ENOMEM, "no memory for the twins of a %zu-byte "
					"region",
			       r->len);
	}
	atomic_init(&w->epoch, 2);
	r->twins = w;
	(void)t;
	return 0;
}

void fg_diff_region_fini(fg_impl *t, fg_region *r)
{
	struct fg_twins *w = r->twins;
	size_t used = 0;

	if (!w)
		return;
	for (size_t i = 0; i < 2 * r->npages; i++)
		used += atomic_load(&w->state[i]) == TWIN_READY;
	atomic_fetch_sub(&t->diff.twins_ready, used);
	munmap(w->area, 2 * r->npages * fg_page_size);
	free(w->state);
	free(w->tag);
	free(w->last_dirty);
	free(w);
	r->twins = NULL;
}

/* Make slot (p, epoch & 1) epoch's twin unless it already is.  Returns
 * whether a usable copy was made by us.  validate: ask the backend whether
 * the page stayed protected through the copy (hook path). */
static bool twin_take(fg_impl *t, fg_region *r, size_t p, uint32_t epoch,
		      bool validate)
{
	struct fg_twins *w = r->twins;
	unsigned s = epoch & 1;
	_Atomic uint8_t *st = &w->state[2 * p + s];

	for (;;) {
		uint8_t cur = atomic_load(st);
		uint32_t tag = atomic_load(&w->tag[2 * p + s]);

		if (cur == TWIN_COPYING || cur == TWIN_TRIMMING)
			continue; /* another thread is copying or trimming */
		/* Never replace a twin of this epoch, nor of a later one (a
		 * hook that read the epoch before a collection moved it). */
		if (cur == TWIN_READY && (int32_t)(tag - epoch) >= 0)
			return false;
		if (cur == TWIN_NONE &&
		    atomic_load(&t->diff.twins_ready) >= (int64_t)t->diff.cap_pages)
			return false; /* over the cap: the page reads whole */
		if (!atomic_compare_exchange_weak(st, &cur, TWIN_COPYING))
			continue;
		memcpy(slot_addr(r, p, s), (void *)(r->base + p * fg_page_size),
		       fg_page_size);
		/* Valid only if the page stayed protected through the copy
		 * and no collection began meanwhile: a collection re-protects,
		 * so "protected now" alone could hide an un-protection that
		 * happened during the copy, before its re-protect. */
		if (validate &&
		    (t->ops->page_written(t, r->base + p * fg_page_size) != 0 ||
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

void fg_diff_first_write(void *page, void *arg)
{
	fg_impl *t = arg;
	fg_region *r = diff_lookup(t, (uintptr_t)page);

	if (r && twin_take(t, r, ((uintptr_t)page - r->base) / fg_page_size,
			   atomic_load(&r->twins->epoch), true))
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
 * baseline; glibc's memcmp first, which is AVX2 and stops early). */
static uint64_t changed_granules(const uint8_t *a, const uint8_t *b)
{
	uint64_t mask = 0;

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

int fg_diff_refine(fg_impl *t, fg_region *r, uint32_t closed,
		   const fg_runs *pages, fg_runs *out, fg_runs *eager)
{
	struct fg_twins *w = r->twins;
	unsigned s = closed & 1;
	uint64_t t0 = fg_now_ns();
	int rc = 0;

	out->n = 0;
	eager->n = 0;
	for (size_t i = 0; i < pages->n && !rc; i++) {
		for (uintptr_t a = pages->v[i].start; a < pages->v[i].end && !rc;
		     a += fg_page_size) {
			size_t p = (a - r->base) / fg_page_size;
			/* Changed in the previous epoch and in this one. */
			bool hot = w->last_dirty[p] + 1 == closed;
			uint64_t mask;

			if (atomic_load(&w->state[2 * p + s]) == TWIN_READY &&
			    atomic_load(&w->tag[2 * p + s]) == closed) {
				mask = changed_granules((const uint8_t *)a,
							slot_addr(r, p, s));
				t->diff.pages_diffed++;
				twin_drop(t, r, p, s);
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
			while (mask && !rc) {
				unsigned b = (unsigned)__builtin_ctzll(mask);
				unsigned e = b;

				while (e < 64 && (mask >> e) & 1)
					e++;
				mask &= e < 64 ? ~((UINT64_C(1) << e) - 1) : 0;
				rc = fg_runs_push(out, a + b * GRANULE,
						  a + e * GRANULE);
			}
			if (!rc && hot && t->diff.eager)
				rc = fg_runs_push(eager, a, a + fg_page_size);
		}
	}
	t->diff.diff_ns += fg_now_ns() - t0;
	return rc;
}

int fg_diff_eager(fg_impl *t, fg_region *r, uint32_t epoch, fg_runs *eager,
		  fg_runs *scratch)
{
	struct fg_twins *w = r->twins;
	size_t kept = 0;
	int rc;

	/* Twin while protected (the backend just re-protected these). */
	for (size_t i = 0; i < eager->n; i++) {
		for (uintptr_t a = eager->v[i].start; a < eager->v[i].end;
		     a += fg_page_size)
			twin_take(t, r, (a - r->base) / fg_page_size, epoch,
				  false);
	}
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

				if (atomic_load(&w->tag[2 * p + (epoch & 1)]) ==
				    epoch) {
					twin_drop(t, r, p, epoch & 1);
					t->diff.twins_invalid++;
				}
			}
		}
	}
	/* Leave twinned pages writable: no fault, diffed next time. */
	for (size_t i = 0; i < eager->n; i++) {
		uintptr_t run = 0;

		for (uintptr_t a = eager->v[i].start; a <= eager->v[i].end;
		     a += fg_page_size) {
			size_t p = (a - r->base) / fg_page_size;
			bool ok = a < eager->v[i].end &&
				  atomic_load(&w->state[2 * p + (epoch & 1)]) ==
					  TWIN_READY &&
				  atomic_load(&w->tag[2 * p + (epoch & 1)]) ==
					  epoch;

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
	return 0;
}

/* Give back the memory of twins no longer in use.  Slots are held in
 * TRIMMING across the madvise, so a hook cannot copy a twin into a page
 * that is being zapped (it waits, as for COPYING). */
void fg_diff_trim(fg_impl *t, fg_region *r)
{
	struct fg_twins *w = r->twins;
	size_t run = SIZE_MAX;

	for (size_t i = 0; i <= 2 * r->npages; i++) {
		uint8_t none = TWIN_NONE;
		bool held = i < 2 * r->npages &&
			    atomic_compare_exchange_strong(&w->state[i], &none,
							   TWIN_TRIMMING);

		if (held && run == SIZE_MAX)
			run = i;
		if (!held && run != SIZE_MAX) {
			madvise(w->area + run * fg_page_size,
				(i - run) * fg_page_size, MADV_DONTNEED);
			for (size_t k = run; k < i; k++)
				atomic_store(&w->state[k], TWIN_NONE);
			run = SIZE_MAX;
		}
	}
	(void)t;
}
