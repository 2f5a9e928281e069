/* alias_internal.h - ALIAS, the sub-page allocator (VEE 2017): a memfd
 * mapped as 64 views, objects placed so that each card is reached through
 * its own view.  Its types, and what its three files share:
 *   alias_mem.c    the memfd's descriptor, physical pages, views
 *                  (registration with the tracker, prefaulting);
 *   alias_class.c  size classes, thread caches, objects (malloc, free);
 *   alias_heap.c   heaps (create, destroy, card size) and collection
 *                  (collect, objects, mark_dirty, trim, stats).
 * Names shared between them start with alias_; the rest are static.
 *
 *
 * Invariants kept here:
 *   - Layout: the memfd is twice the capacity.  Its lower half holds spans
 *     (1..16 pages carved for one size class, slots packed from the span's
 *     start, so a slot may cross into the next page); its upper half holds
 *     large objects (> SMALL_MAX), page runs reached through view 0 only.
 *   - Placement: a slot whose first byte is at byte o of its page, in a span
 *     carved with card size C, is handed out only as its address in view
 *     v = (o & ~(C-1)) / 64 (its "home view"), and no other address in the
 *     views is handed out for those bytes.  So a write through view v to
 *     page q can only come from a slot with home view v that overlaps page
 *     q: one that starts in card v of q, or the one slot (at most) that
 *     starts before q and reaches into it.  Collection reports both.
 *   - A span's layout (size class, card size) changes only while it holds
 *     no live and no cached slot, so a dirty (view, page) is translated
 *     with the layout current at collection time: a write to a live object
 *     was made through the live object's own view.
 *   - The allocator never writes heap memory except through the handed-out
 *     address of the object concerned (calloc's zeroing, realloc's copy).
 *     Its metadata lives in side tables outside the memfd.
 *   - A (view, segment) range is registered with the tracker, and the page
 *     prefaulted through the view, before any address of the view in it is
 *     handed out; `ready` of a page has bit v set only after both, and is
 *     cleared only while the page holds no object (its memory punched).
 *     Only the (view, page) pairs a span's slots are reached through are
 *     prefaulted: each costs a page-table entry, and a first write to it
 *     (a few microseconds under some hypervisors) when it is used.
 *   - A slot's live bit is set from malloc to free (atomic: other threads
 *     flip other bits of the word).  A slot is in exactly one of: live, in
 *     a thread cache, available (page's avail bitmap, class lock).
 *   - Lock order: alias_heaps_lock > class lock > pages_lock; grow_lock > the
 *     tracker's lock.  Thread caches belong to their heap; a thread's TLS
 *     names (heap, uid) and is dereferenced only when that pair is still in
 *     the list of live heaps (under alias_heaps_lock), or is the caller's heap.
 */
#ifndef FG_ALIAS_INTERNAL_H
#define FG_ALIAS_INTERNAL_H

#include "fg_alias.h"
#include "fg_internal.h" /* fg_fail */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE 4096u
#define PAGE_SHIFT 12
#define NVIEWS FG_ALIAS_VIEWS_MAX
#define BLOCK_SHIFT 21 /* 2 MiB: one page-table page per view */
#define BLOCK_PAGES (1u << (BLOCK_SHIFT - PAGE_SHIFT))
#define CHUNK_PAGES 16u /* most pages carved at once: little memory ahead
			 * of use, few prefault calls */
#define SMALL_MAX 16384
#define MAX_SLOTS 256
#define MAX_SPAN 16 /* pages */
#define MAX_ALIGN ((size_t)1 << BLOCK_SHIFT)
#define PUNCH_PAGES 32 /* free runs this long go back to the kernel at once */
#define BIN_MAX 64
#define SIG_LIVE 0x46476148u /* "FGaH" */
#define SIG_DEAD 0x44656164u

/* Size classes: multiples of 16 (malloc's alignment), 16 apart up to 256,
 * then about 12% apart, each chosen so that a span of 1, 2, 4, 8 or 16
 * pages wastes at most 1/32 of itself (alias_classes_init picks the span). */
static const uint16_t class_size[] = {
	16,   32,   48,	  64,	80,   96,   112,  128,	144,   160,   176,
	192,  208,  224,  240,	256,  288,  320,  352,	384,   432,   480,
	528,  592,  656,  736,	816,  912,  1024, 1152, 1296,  1456,  1632,
	1824, 2048, 2304, 2592, 2912, 3264, 3632, 4080, 4576,  5040,  5456,
	5952, 6544, 7280, 8176, 9360, 10912, 13104, 16384,
};
#define NCLASS (sizeof class_size / sizeof *class_size)

struct class_info {
	uint32_t size, nslots, pages, recip, bin_lim;
	/* By card size and page of a span: the home views of the slots that
	 * overlap the page (the views it is written through). */
	uint64_t pviews[FG_ALIAS_CARD_SIZES][MAX_SPAN];
};
/* Per class, filled once by alias_classes_init. */
extern struct class_info alias_classes[NCLASS];

enum { PK_FREE, PK_SMALL, PK_LARGE, PK_TAIL };

/* info: kind | class << 2 | log2(card) << 8, published with release.  A
 * span's or large run's later pages are PK_TAIL, aux naming the first. */
#define INFO(kind, cls, cl) ((uint32_t)(kind) | (uint32_t)(cls) << 2 | (uint32_t)(cl) << 8)
#define INFO_KIND(i) ((i) & 3u)
#define INFO_CLASS(i) (((i) >> 2) & 63u)
#define INFO_CL(i) (((i) >> 8) & 15u)

struct pdesc {
	_Atomic uint32_t info;
	_Atomic uint32_t aux; /* large head: pages; tail: head page */
	int32_t next, prev;   /* class's partial list (class lock), heads */
	uint32_t navail;      /* class lock; stats read a copy: */
	_Atomic uint32_t navail_stat;
	uint64_t avail[MAX_SLOTS / 64];	      /* class lock */
	_Atomic uint64_t live[MAX_SLOTS / 64];
};

struct class_state {
	pthread_mutex_t lock;
	int32_t partial; /* heads of spans with available slots */
	uint32_t npartial;
	uint32_t nspans, nempty;
} __attribute__((aligned(64)));

struct bin {
	uint32_t n;
	void *v[BIN_MAX];
};

struct tcache {
	struct tcache *next; /* heap's list (alias_heaps_lock) */
	bool in_use;
	struct bin bins[NCLASS];
};

struct seg {
	uint32_t first_block, nblocks;
	uint64_t registered; /* views registered with the tracker */
};

/* Physical pages of one half of the memfd (pages_lock). */
enum { POOL_SPANS, POOL_LARGE };
struct pool {
	size_t first, npages; /* absolute */
	uint64_t *freebits;   /* pages below top that are free, relative */
	size_t top, hint, nfree;
	size_t seg_end;	      /* absolute block: segments cover up to it */
};

typedef struct heap {
	uint64_t uid;
	struct heap *next_live; /* alias_heaps_lock */
	fg_tracker *t;
	fg_backend_id backend;
	unsigned caps;	 /* its backend's, FG_CAPI_* too */
	bool populate;
	int fd;		 /* the memfd, re-homed high (fd_rehome) */
	dev_t fd_dev;	 /* its identity: the program may close the */
	ino_t fd_ino;	 /* descriptor and reuse the number */
	_Atomic bool fd_warned;
	uintptr_t base; /* view 0; view v at base + (v << vshift) */
	size_t cap;	/* capacity: pages in use in both pools together */
	size_t npages, nblocks; /* of the memfd, twice the capacity */
	unsigned vshift;
	void *resv;
	size_t resv_len;
	_Atomic size_t card;

	struct pdesc *pd;
	size_t pd_len;

	pthread_mutex_t pages_lock;
	struct pool pool[2];

	pthread_mutex_t grow_lock;
	_Atomic uint64_t *ready; /* per page: views registered + prefaulted */
	uint32_t *seg_of;	 /* per block: segment + 1, 0 for none */
	struct seg *segs;
	size_t nsegs, segs_cap;
	uint64_t regions, registered_bytes, prefaulted; /* (view, page) */

	struct class_state cls[NCLASS];
	struct tcache *caches; /* alias_heaps_lock */

	pthread_mutex_t collect_lock;
	fg_range *runs;
	size_t runs_cap;
	_Atomic uint64_t collections, last_cards; /* read without the lock */
} heap;

struct fg_alias_heap {
	uint32_t sig;
	heap *impl;
};

/* Live heaps (the TLS cache check): alias_heap.c. */
extern pthread_mutex_t alias_heaps_lock;
extern heap *alias_heaps_live;

/* The calling thread's cache: alias_class.c. */
struct tls_cache {
	heap *h;
	uint64_t uid;
	struct tcache *c;
};
extern __thread struct tls_cache alias_tls
	__attribute__((tls_model("initial-exec")));

/* The view a slot at span offset off is handed out through. */
static inline unsigned home_view(uint32_t off, unsigned cl)
{
	return ((off & (PAGE - 1)) >> cl << cl) >> 6;
}

static inline uintptr_t view_addr(const heap *h, unsigned v, size_t page)
{
	return h->base + ((uintptr_t)v << h->vshift) + (page << PAGE_SHIFT);
}

/* A slot's handed-out address: span head page, span offset. */
static inline void *slot_addr(const heap *h, size_t head, unsigned cl,
			      uint32_t off)
{
	return (void *)(view_addr(h, home_view(off, cl), head) + off);
}

static inline heap *get_heap(const fg_alias_heap *hh)
{
	if (!hh) {
		fg_fail(-FG_EBADTRACKER, "ALIAS heap handle is NULL");
		return NULL;
	}
	if (hh->sig == SIG_DEAD) {
		fg_fail(-FG_EDESTROYED, "ALIAS heap %p was destroyed",
			(const void *)hh);
		return NULL;
	}
	if (hh->sig != SIG_LIVE || !hh->impl) {
		fg_fail(-FG_EBADTRACKER, "%p is not an ALIAS heap handle",
			(const void *)hh);
		return NULL;
	}
	return hh->impl;
}

static inline int heap_err(const fg_alias_heap *hh)
{
	return hh && hh->sig == SIG_DEAD ? -FG_EDESTROYED : -FG_EBADTRACKER;
}

/* The ordering comes from info's release/acquire; aux is atomic only
 * because a collection may read a page's being rewritten (then it reads
 * info FREE or the new layout, and no live object is concerned). */
static inline uint32_t aux_of(const heap *h, size_t pg)
{
	return atomic_load_explicit(&h->pd[pg].aux, memory_order_relaxed);
}

/* Where an address lies: view, page, offset in page; for a span, its head
 * page and the offset in the span. */
struct where {
	unsigned v;
	size_t pg, head;
	uint32_t off, soff, info;
};

static inline bool locate(const heap *h, const void *p, struct where *w)
{
	uintptr_t a = (uintptr_t)p - h->base;

	*w = (struct where){0};
	if (a >= (uintptr_t)NVIEWS << h->vshift)
		return false;
	w->v = (unsigned)(a >> h->vshift);
	w->pg = (a & (((uintptr_t)1 << h->vshift) - 1)) >> PAGE_SHIFT;
	w->off = (uint32_t)(a & (PAGE - 1));
	w->head = w->pg;
	w->info = atomic_load_explicit(&h->pd[w->pg].info, memory_order_acquire);
	if (INFO_KIND(w->info) == PK_TAIL) {
		w->head = aux_of(h, w->pg);
		w->info = atomic_load_explicit(&h->pd[w->head].info,
					       memory_order_acquire);
	}
	w->soff = (uint32_t)((w->pg - w->head) << PAGE_SHIFT) + w->off;
	return true;
}

/* alias_mem.c */
/* Whether h->fd still names the heap's memfd; if not, says so once. */
bool alias_fd_is_ours(heap *h, const char *consequence);
/* First page of a free run of n pages of pool which, aligned, or -1. */
long alias_pages_alloc(heap *h, unsigned which, size_t n, size_t align);
/* Return pages [first, first + n) to their pool. */
void alias_pages_free(heap *h, size_t first, size_t n);
/* Give free pages' memory back to the kernel; false if it was not. */
bool alias_hole(heap *h, size_t first, size_t n);
/* alias_hole, and the pages no longer ready through any view. */
void alias_punch(heap *h, size_t first, size_t n);
/* Make pages [first, first + n) usable through views[i % period]. */
int alias_prepare(heap *h, size_t first, size_t n, const uint64_t *views,
		  size_t period);

/* alias_class.c */
/* Fill alias_classes and create the TLS key: once per process, through
 * pthread_once(&alias_classes_once, alias_classes_init). */
extern pthread_once_t alias_classes_once;
void alias_classes_init(void);
/* Unlink span pg from its class's partial list (class lock). */
void alias_partial_unlink(heap *h, struct class_state *cs, size_t pg);
/* Publish the layout of a run: later pages first, the head last. */
void alias_set_run(heap *h, size_t head, size_t n, uint32_t info);
/* Return n slots of class c (already not live) to their spans. */
void alias_flush(heap *h, unsigned c, void *const *v, uint32_t n);

#endif
