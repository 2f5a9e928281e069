/* fg_alias.h - ALIAS, the sub-page allocator of the VEE 2017 paper: dirty
 * cards down to 64 bytes from page-level write tracking.
 *
 * Glossary
 *   heap      A memfd (sparse, twice the capacity: small objects in one half,
 *             large ones in the other), mapped 64 times (page size / 64) at
 *             distinct addresses, the "views".  Physical page p appears in
 *             view v at view_base(v) + p * page.
 *   view      One mapping of the whole memfd.  The views are registered with
 *             an internal fg_tracker lazily, as the heap grows, so the
 *             tracker's page-level dirty bit of (view v, page p) exists per
 *             view.
 *   card      A power of two from 64 bytes to the page size.
 *   span      1 to 16 pages carved for one size class (16 bytes .. 16 KiB)
 *             and the card size current when it is carved; it keeps both
 *             until it is empty again.  Slots are packed from the span's
 *             start, so a slot may cross a page boundary.
 *   placement A slot whose first byte lies in the card starting at byte k of
 *             its page is handed out only through view k / 64 (its home
 *             view), so a write through (view k / 64, page) comes from the
 *             slots starting in that card - or from the one slot that
 *             starts on an earlier page and reaches into this one.  Objects
 *             above 16 KiB, and requests aligned to more than the classes
 *             allow, get whole pages through view 0 (page-level reporting).
 *
 * Results: int functions return 0 (or a count >= 0) or a negative code as
 * in fg.h (-errno or -FG_E*); fg_strerror() and fg_last_error_detail()
 * describe them.  The malloc-style functions return NULL and set errno
 * (ENOMEM: capacity exhausted or the kernel refused; EINVAL: bad heap
 * handle or alignment), as malloc does.
 *
 * Soundness: every write to a live object since the previous
 * fg_alias_collect - by any thread, through the pointers the heap handed
 * out, or by the allocator itself (realloc's copy, calloc's zeroing, which
 * always write through the object's own address) - lies in a card reported
 * by a collection that returns after the write completes.  Writes through
 * any other address of the heap's memory (another view, a stale pointer to
 * a freed object) are not covered.
 *
 * Thread safety: every function may be called from any thread.  A small
 * per-thread cache (for the last heap the thread used) makes malloc/free
 * mostly lock-free; collections run concurrently with mutators.
 *
 * fork: the views are shared mappings, so a child shares the heap's
 * memory with its parent; it must not allocate, free or write objects.
 */
#ifndef FG_ALIAS_H
#define FG_ALIAS_H

#include "fg.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of views: one per 64-byte granule of a page. */
#define FG_ALIAS_VIEWS_MAX 64

/* Flags for fg_alias_options.flags. */
#define FG_ALIAS_NO_ENV 0x1	 /* ignore FG_BACKEND and FG_CARD */
#define FG_ALIAS_VERBOSE 0x2	 /* print the tracker's backend choice */
#define FG_ALIAS_NO_POPULATE 0x4 /* do not prefault views (see below) */

/* Prefaulting: when a 64 KiB chunk of the heap is first used through a
 * view, the heap marks it dirty and populates its page-table entries in one
 * call (MADV_POPULATE_WRITE), instead of taking one fault per page and view.
 * The cost: the next collection reports the cards of that chunk's carved
 * pages dirty once, whether written or not (they hold new objects). */

typedef struct fg_alias_options {
	size_t size;	       /* sizeof(fg_alias_options) */
	size_t capacity;       /* bytes in use at most; 0: 1 GiB.  Rounded
				  up to a power of two, 2 MiB .. 256 GiB;
				  address space used: 128 x capacity */
	size_t card_size;      /* 0: FG_CARD or 64; power of two, 64..page */
	fg_backend_id backend; /* FG_BACKEND_AUTO: FG_BACKEND or probing */
	unsigned flags;	       /* FG_ALIAS_* */
} fg_alias_options;

#define FG_ALIAS_OPTIONS_INIT                                                 \
	{sizeof(fg_alias_options), 0, 0, FG_BACKEND_AUTO, 0}

typedef struct fg_alias_heap fg_alias_heap;

/* Create a heap and its tracker.  opt may be NULL (defaults).  Fails with
 * -FG_ECARD for a card size that is not a power of two in 64..page,
 * -FG_EUNAVAIL for a forced backend the machine lacks, -ENOMEM when the
 * address space for the views cannot be reserved. */
FG_API int fg_alias_heap_create(const fg_alias_options *opt,
				fg_alias_heap **out);

/* Release the heap, its views and its tracker.  Every object dies with it.
 * Later calls with the handle fail (-FG_EDESTROYED, or NULL/EINVAL). */
FG_API int fg_alias_heap_destroy(fg_alias_heap *h);

/* The heap's tracker, for fg_tracker_backend(), fg_tracker_why() and
 * fg_get_stats().  Collect through fg_alias_collect only: a collection on
 * the tracker directly would consume the heap's dirty state. */
FG_API fg_tracker *fg_alias_tracker(fg_alias_heap *h);

/* malloc-style allocation.  Alignment: 16 bytes; aligned_alloc accepts a
 * power of two up to 2 MiB.  size 0 gives a unique 16-byte object.
 * capacity bounds the pages in use (spans and large objects). */
FG_API void *fg_alias_malloc(fg_alias_heap *h, size_t size);
FG_API void *fg_alias_calloc(fg_alias_heap *h, size_t n, size_t size);
FG_API void *fg_alias_aligned_alloc(fg_alias_heap *h, size_t align,
				    size_t size);

/* realloc: NULL p is malloc; size 0 frees p and returns NULL.  On failure
 * NULL, errno set, and p is untouched (and still live).  A p that is not a
 * live object of h: NULL, errno EINVAL. */
FG_API void *fg_alias_realloc(fg_alias_heap *h, void *p, size_t size);

/* Free an object; NULL is ignored (0).  Checked: -EFAULT for an address
 * outside the heap's views, -EINVAL for an address in the heap that is not
 * the start of a live object (double free, interior pointer, another
 * view's address of the same bytes); nothing is changed then. */
FG_API int fg_alias_free(fg_alias_heap *h, void *p);

/* Usable size of a live object (>= the size asked for); 0 if p is not a
 * live object of h. */
FG_API size_t fg_alias_usable_size(fg_alias_heap *h, const void *p);

/* Card size for spans carved from now on (a power of two, 64..page).
 * Objects already allocated keep their span's card size: still sound,
 * with their old (finer or coarser) reporting.  A partly used span keeps
 * serving its size class at its old card size until it is empty. */
FG_API int fg_alias_set_card_size(fg_alias_heap *h, size_t card);
FG_API size_t fg_alias_card_size(const fg_alias_heap *h);

/* A dirty card, as the program's pointers see it: card is a handed-out
 * address (in the home view of the objects it covers) and len covers whole
 * slots: those whose first byte lies in the card (at most card size + slot
 * size - 16 bytes; one slot when slots are wider than cards), and possibly
 * the slot reaching into the written page from an earlier one (then
 * reported once per collection, alone or joined to the card's slots).
 * Large objects (above 16 KiB) are reported page by page. */
typedef void (*fg_alias_card_cb)(void *card, size_t len, void *arg);

/* Read and reset the heap's dirty state; call cb for every dirty card, in
 * view order then address order.  Returns the number of cards (>= 0).
 * cb may allocate, free, call fg_alias_objects and fg_alias_get_stats; it
 * must not collect.
 * Collections on one heap are serialised. */
FG_API int fg_alias_collect(fg_alias_heap *h, fg_alias_card_cb cb, void *arg);

/* The live objects that could have dirtied [card, card + len): those
 * handed out through the same view as card whose bytes overlap the range
 * (for a range from fg_alias_collect: the objects in that card).  cb gets
 * each object's handed-out address and usable size, once.  Returns the
 * number of objects, or -EFAULT for a range outside the heap. */
typedef void (*fg_alias_obj_cb)(void *obj, size_t size, void *arg);
FG_API int fg_alias_objects(fg_alias_heap *h, const void *card, size_t len,
			    fg_alias_obj_cb cb, void *arg);

/* Treat [p, p + len) of one object as written and writable by the kernel
 * (the mprotect backend would make read(2) into it fail with EFAULT).
 * Call before passing heap memory to a system call that writes it. */
FG_API int fg_alias_mark_dirty(fg_alias_heap *h, void *p, size_t len);

/* I/O into [p, p + len) of one object that the tracker cannot see (fg.h,
 * fg_io_begin: io_uring fixed buffers, O_DIRECT, aio, another process):
 * fg_alias_io_begin before it starts returns a handle >= 0 (or an error:
 * -EFAULT outside one view of the heap), fg_alias_io_end after it
 * completed; meanwhile every collection reports the range's cards, and
 * the first one after the end once more. */
FG_API int fg_alias_io_begin(fg_alias_heap *h, void *p, size_t len);
FG_API int fg_alias_io_end(fg_alias_heap *h, int io);

/* Give the memory of free pages back to the kernel (hole punch); freed
 * runs of 128 KiB or more are given back at once anyway.  *released (may
 * be NULL) gets the bytes released. */
FG_API int fg_alias_trim(fg_alias_heap *h, size_t *released);

/* Card sizes are indexed log2(card) - 6: 64, 128, ..., 4096. */
#define FG_ALIAS_CARD_SIZES 7

typedef struct fg_alias_stats {
	size_t size; /* sizeof(fg_alias_stats), set by the caller */
	fg_backend_id backend;
	size_t card_size;	   /* for pages carved from now on */
	uint64_t capacity_bytes;
	uint64_t views;
	uint64_t live_objects;
	uint64_t allocated_bytes;  /* usable bytes of live objects */
	uint64_t cached_bytes;	   /* slots held in per-thread caches */
	uint64_t heap_pages;	   /* pages ever used (below the tops) */
	uint64_t free_pages;	   /* of those, free now */
	uint64_t large_pages;	   /* pages of objects above 16 KiB */
	uint64_t carved_pages[FG_ALIAS_CARD_SIZES]; /* span pages by card
						       size at carving */
	uint64_t resident_bytes;   /* memfd pages in memory (st_blocks) */
	uint64_t regions;	   /* (view, segment) ranges registered */
	uint64_t registered_bytes; /* their total length */
	uint64_t prefaulted_chunks; /* (view, 64 KiB chunk) pairs, all time */
	/* Page-table pages the views need, estimated as 4 KiB per (view,
	 * 2 MiB) pair that is registered (userfaultfd backends: the kernel
	 * fills every PTE of a write-protected shared range with a marker)
	 * or holds a prefaulted chunk (other backends), plus one PMD page per
	 * (view, GiB).
	 * bench/alloc-trace compares it with VmPTE. */
	uint64_t pte_bytes_estimate;
	uint64_t metadata_bytes;   /* side tables (descriptors, bitmaps) */
	uint64_t collections;
	uint64_t last_dirty_cards;
} fg_alias_stats;

FG_API int fg_alias_get_stats(fg_alias_heap *h, fg_alias_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* FG_ALIAS_H */
