/* fg_internal.h - the toolkit's internal types and the backend contract.
 *
 * Backend contract (every backend_*.c implements one fg_backend_ops):
 *   - Backends track pages.  Cards are derived from pages by the core, so a
 *     card-size change never loses a write.
 *   - region_add() protects the whole region; when it returns 0, every
 *     later write to it is noticed.  On failure nothing is left changed.
 *   - collect() appends to *out the page runs written since the previous
 *     collect (or region_add) and re-protects them, in an order that keeps
 *     the toolkit's guarantee: a write is reported by at least one
 *     collection that returns after the write completes.  For a flag kept
 *     by a fault handler that means: clear the flag, then re-protect; the
 *     handler un-protects, then sets the flag.
 *   - collect() returns -FG_EUNMAPPED when it finds the region gone or
 *     replaced; the core then reports the region wholly dirty from then on,
 *     calls region_del() at once (which must tolerate a range that is
 *     partly or wholly gone) and never calls the backend for it again.
 *   - region_del(forked=1) runs in a forked child: it must not touch the
 *     parent's kernel objects (a userfaultfd acts on the parent's mm), only
 *     undo what would make the child fault (mprotect'ed pages).
 *   - All calls come with the tracker's lock held, except what a backend
 *     does from its own fault handler.
 *   - Functions return 0 or a negative error (see fg.h).
 */
#ifndef FG_INTERNAL_H
#define FG_INTERNAL_H

#include "fg.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define FG_SIG_LIVE 0x46477472u /* "FGtr" */
#define FG_SIG_DEAD 0x44656164u /* "Dead" */

#define FG_MIN_CARD 64

extern size_t fg_page_size; /* set by fg_init_once() */
void fg_init_once(void);

/* This process's identity for fork detection, without a system call
 * after the first: fg_process_changed(e) is true in a forked child of the
 * process that got e from fg_process_epoch(). */
uint64_t fg_process_epoch(void);
bool fg_process_changed(uint64_t epoch);

/* A run of dirty pages (page-aligned, [start, end)). */
typedef struct fg_run {
	uintptr_t start, end;
} fg_run;

/* Growable vector of runs; fg_runs_push merges a run that touches the last. */
typedef struct fg_runs {
	fg_run *v;
	size_t n, cap;
} fg_runs;

int fg_runs_push(fg_runs *r, uintptr_t start, uintptr_t end);
/* The runs of set bits of mask, bit k standing for [base + k * unit,
 * base + (k + 1) * unit): a bitmap word of pages, a page's granules. */
int fg_runs_push_mask(fg_runs *r, uintptr_t base, size_t unit, uint64_t mask);
int fg_runs_append(fg_runs *r, uintptr_t start, uintptr_t end); /* no merge */
void fg_runs_free(fg_runs *r);

typedef struct fg_region {
	uintptr_t base;
	size_t len;
	size_t npages;
	bool lost;    /* unmapped or replaced: reported wholly dirty */
	bool released; /* the backend has let go of it (lost regions) */
	struct fg_twins *twins; /* DIFF precision (diff.c) */
	uint64_t *exempt; /* fg_set_exempt: a bit per page, mmap'd, or NULL */
	size_t nexempt;	  /* pages set there */
	/* fg_set_twinless: a bit per page, mmap'd on first use (published
	 * with release), or NULL; read by the collection (diff.c) and the
	 * write hook (the bits relaxed: a hook twin taken for a page just
	 * made twinless is harmless, it is dropped at its next report). */
	_Atomic(uint64_t) *_Atomic twinless;
	/* Pages the next collection reports whatever the backend and the
	 * comparison say (fg_mark_dirty, fg_io_end): a bit per page, mmap'd
	 * at registration (set without malloc, under the tracker lock). */
	uint64_t *forced;
	size_t nforced;	  /* bits set there */
	void *priv;   /* backend state */
	/* uffd-async, FG_REPROTECT=auto: the last re-protection found the
	 * written pages sparse (backend_uffd_async.c). */
	bool wp_sparse;
	/* FG_COLLECT_AFTER_PEEK: the peek of this generation (fg_impl.gen)
	 * found nothing to report here, and no call has named the region
	 * since; 0: not so (tracker.c, peek_clean). */
	uint64_t clean_at;
	/* Unmapped memory between the region before this one and this one,
	 * last time it was asked (tracker.c, group_mapped). */
	bool hole_before;
} fg_region;

/* FG_REPROTECT's words, in env.c's order: how uffd-async re-protects
 * written pages (backend_uffd_async.c). */
enum { FG_REPROTECT_SCAN, FG_REPROTECT_RUNS, FG_REPROTECT_AUTO };

typedef struct fg_impl fg_impl;

/* A range announced with fg_io_begin (tracker lock). */
typedef struct fg_io_slot {
	uintptr_t start, end;
	uint32_t gen;	/* in the handle: a stale one is refused */
	bool live;
} fg_io_slot;

/* Capabilities only the toolkit asks about, above the public FG_CAP_*
 * bits (fg_tracker_caps leaves them out). */
#define FG_CAP_PUBLIC 0x00ffffffu
/* Protection lives in this process's page tables only (mprotect), so
 * mark_dirty may act in a forked child too. */
#define FG_CAPI_PROCESS_LOCAL 0x01000000u
/* collect() finds a region unmapped or replaced by itself
 * (-FG_EUNMAPPED): the core need not check the mapping first. */
#define FG_CAPI_SEES_UNMAP 0x02000000u
/* Protects unpopulated pages too (uffd-wp PTE markers): the page tables
 * of a whole region exist once it is registered. */
#define FG_CAPI_PTE_MARKERS 0x04000000u

/* What each cap promises of the ops (fg_backend_check):
 *   PROTECTS: some kernel writes into a protected page fail rather than
 *     being seen, so pages under I/O in flight (fg_io_begin) are left out
 *     of collections, writable, and reported whole: needs collect_range
 *     and mark_dirty.
 *   EXEMPT: collect_range.
 *   WRITE_HOOK: calls t->hook before a first write lands.
 *   HOOK_TWINS: WRITE_HOOK and page_written.
 *   COLLECT_TWINS: written and mark_dirty.
 *   PEEK: written.
 *   NEEDS_FGVM: auto-selection passes over it silently where it is
 *     unavailable. */
typedef struct fg_backend_ops {
	fg_backend_id id;
	const char *name;
	unsigned caps; /* FG_CAP_* and FG_CAPI_* */
	int (*probe)(char *why, size_t whylen);
	int (*init)(fg_impl *t);
	void (*fini)(fg_impl *t, bool forked);
	int (*region_add)(fg_impl *t, fg_region *r);
	void (*region_del)(fg_impl *t, fg_region *r, bool forked);
	int (*collect)(fg_impl *t, fg_region *r, fg_runs *out);
	/* Optional: collect() for the pages of [start, end) only (page
	 * aligned, within r); the others keep their state.  Lets the core
	 * leave exempt pages alone (fg_set_exempt). */
	int (*collect_range)(fg_impl *t, fg_region *r, uintptr_t start,
			     uintptr_t end, fg_runs *out);
	/* Optional: make [start, end) writable by the kernel and dirty. */
	int (*mark_dirty)(fg_impl *t, fg_region *r, uintptr_t start,
			  uintptr_t end);
	/* Optional: append the pages written since the last collect without
	 * re-protecting them (validates twins taken without a hook). */
	int (*written)(fg_impl *t, fg_region *r, fg_runs *out);
	/* Optional, from the hook's context: 1 if page is not write-protected
	 * now (so a twin just copied from it cannot be trusted), 0 if it is,
	 * or an error.  Hook twins are taken only where this exists: a hook
	 * alone cannot rule out another un-protection of the page (a late
	 * handler of an earlier epoch, fg_mark_dirty) during the copy. */
	int (*page_written)(fg_impl *t, uintptr_t page);
} fg_backend_ops;

/* The backend registry (probe.c); NULL for an id it lacks. */
const fg_backend_ops *fg_backend_ops_of(fg_backend_id id);

/* Auto-selection: the first backend in preference order whose probe
 * succeeds; why lists the ones passed over and their reasons. */
int fg_backend_choose(fg_backend_id *out, char *why, size_t whylen);

/* Counters a fault handler may bump (atomics only: signal context). */
typedef struct fg_counters {
	_Atomic uint64_t faults;
	_Atomic uint64_t hook_calls;
} fg_counters;

#define FG_DIFF_SLOTS 1024

/* Line digests (digest.c): a key's powers k^1..k^8 in GF(2^64), and
 * which version computes them (both give the same digests). */
enum { FG_DIGEST_ANY, FG_DIGEST_128, FG_DIGEST_512 };
typedef struct fg_digest_key {
	uint64_t pow[8];
	int impl;
} fg_digest_key;

/* A random key (getrandom), the fastest version the CPU has. */
int fg_digest_init(fg_digest_key *k);
/* A given key (nonzero) and version: for tests. */
int fg_digest_set_key(fg_digest_key *k, uint64_t key, int impl);
uint64_t fg_digest_gf_mul(uint64_t a, uint64_t b);
/* d[0..lines) = the digests of the page's first lines 64-byte lines. */
void fg_digest_page(const fg_digest_key *k, uint64_t *d, const void *page,
		    size_t lines);
/* Bit g set where line g's digest differs from d[g]. */
uint64_t fg_digest_changed(const fg_digest_key *k, const void *page,
			   const uint64_t *d, size_t lines);
/* d[g] = line g's digest, for the lines g in mask. */
void fg_digest_lines(const fg_digest_key *k, uint64_t *d, const void *page,
		     uint64_t mask);

/* DIFF precision state of a tracker (diff.c). */
typedef struct fg_diff {
	bool on;
	bool eager;		  /* backend can take or validate eager twins */
	bool sticky;		  /* FG_TWIN_STICKY or _ADAPTIVE, and the
				     backend can validate twins taken at
				     collection */
	bool adaptive;		  /* FG_TWIN_ADAPTIVE: sticky twins only
				     where they pay (diff.c) */
	bool huge;		  /* FG_TWIN_HUGE: twins on huge pages
				     under a full cap (diff.c, slot_addr) */
	bool digest;		  /* FG_TWIN_DIGEST: a twin is a digest
				     per line (digest.c), not a copy */
	size_t twin_size;	  /* bytes a twin takes: a page, or 8 per
				     64-byte line */
	fg_digest_key key;	  /* FG_TWIN_DIGEST */
	uint64_t twins_declined;  /* adaptive: sticky twins not taken */
	uint64_t twins_aged;	  /* adaptive: sticky twins dropped unused */
	size_t cap_bytes;	  /* 0: cap_pct of the tracked bytes */
	unsigned cap_pct;	  /* 1..100 */
	uint64_t cap_pages;	  /* the cap, in twins */
	bool decline_full;	  /* FG_TWIN_FULL_DECLINE: no eviction */
	uint64_t twins_refreshed; /* sticky twins updated in place */
	uint64_t want_new;	  /* this collection: pages wanting a new twin */
	_Atomic int64_t twins_ready;
	_Atomic uint64_t twins_hook, twins_hook_invalid;
	uint64_t twins_eager, twins_invalid, pages_diffed, pages_whole;
	uint64_t lines_changed;	  /* granules changed on pages_diffed */
	uint64_t twins_sticky;	  /* sticky twins taken (and validated) */
	uint64_t twins_evicted;	  /* sticky twins dropped for the cap */
	uint64_t diff_ns;
	uint64_t take_ns;	  /* of diff_ns, in fg_diff_take */
	fg_write_hook user_hook;
	void *user_hook_arg;
	/* Collector-side buffers (tracker lock), freed with the last region
	 * that has twins: this collection's sticky pages, and the sticky
	 * twins oldest first (the cap's eviction order). */
	size_t nregions;
	fg_runs sticky_pages;
	fg_runs kept_pages;	  /* of those, twins refreshed in place */
	struct fg_sticky_fifo *fifo[2]; /* [0] on probation (copied, not
					   yet compared), [1] kept after a
					   comparison */
	_Atomic(fg_region *) table[FG_DIFF_SLOTS]; /* for the hook */
} fg_diff;

struct fg_impl {
	pthread_mutex_t lock;
	pid_t pid; /* creator */
	uint64_t epoch; /* fg_process_epoch() of the creator: see forked() */
	const fg_backend_ops *ops;
	char why[512];
	size_t card;
	fg_write_hook hook;
	void *hook_arg;
	void *bpriv; /* backend state */

	fg_region **regions; /* sorted by base */
	size_t nregions, cap;

	fg_diff diff;
	fg_runs scratch;  /* page runs of one region */
	fg_runs scratch2, eager; /* DIFF: byte ranges, pages to twin eagerly */
	fg_runs wscan;	  /* backend_collect: written pages, unprotected */
	fg_runs wdrop;	  /* ... and a group's report, exempt pages out */
	bool plain_exempt; /* FG_EXEMPT_GROUPED=0: a collection per run of
			      watched pages between exempt ones */
	unsigned reprotect; /* FG_REPROTECT: FG_REPROTECT_* (uffd-async) */
	bool whole_pages; /* this collection: FG_COLLECT_WHOLE_PAGES */
	fg_runs result;   /* card ranges of the last collection */
	fg_runs extra, merged; /* forced and announced ranges of a region */
	fg_io_slot *io;	  /* fg_io_begin's ranges, live and free slots */
	uint64_t *mask;	  /* pages left out of a collection, mmap'd */
	size_t mask_words;
	bool io_unmasked; /* no memory for the mask: I/O pages re-protected */
	bool shared_ok;	  /* no warning about shared files (ALIAS's views) */
	size_t nio, io_live;
	uint32_t io_gen;
	uint64_t gen;
	uint64_t peek_gen; /* gen of the last FG_COLLECT_PEEK; 0: none since
			      something that voids its clean regions */
	/* A collection's mapping checks (tracker.c, group_mapped). */
	size_t map_group_end; /* the group of regions asked ends here */
	bool map_group_ok;    /* that group has no hole */

	fg_counters ctr;
	fg_stats st;
};

/* Whether t's backend has every capability in caps. */
static inline bool fg_has_cap(const fg_impl *t, unsigned caps)
{
	return (t->ops->caps & caps) == caps;
}

/* The public handle: kept as a tombstone after destroy. */
struct fg_tracker {
	uint32_t sig;
	fg_impl *impl;
};

/* The caller writes its regions' shared file only through them (ALIAS):
 * no warning at fg_register. */
void fg_tracker_shared_ok(fg_tracker *t);

/* Descriptors the toolkit keeps live at FG_FD_FLOOR or above. */
#define FG_FD_FLOOR 1000
int fg_fd_rehome(int fd);

/* Record an error detail for fg_last_error_detail(); returns err. */
int fg_fail(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Validate a range for registration: page-aligned, mapped, writable and of a
 * kind the toolkit tracks (checked against /proc/self/maps); *shared_file:
 * some of it maps a file (memfd, /dev/shm, SysV), not anonymous memory. */
int fg_check_mapping(uintptr_t addr, size_t len, bool private_file,
		     bool *shared_file);

/* 1 if the shared file (memfd, /dev/shm, SysV) behind [addr, addr+len)
 * can be written other than through that range in this process: another
 * writable shared mapping of it, or a descriptor open for writing; what
 * says which.  0 otherwise (also for anonymous memory). */
int fg_shared_writers(uintptr_t addr, size_t len, char *what, size_t wlen);

/* Whether [addr, addr+len) is still entirely mapped. */
bool fg_range_mapped(uintptr_t addr, size_t len);

/* Bitmap helpers on atomic words, safe in signal handlers. */
static inline void fg_bit_set(_Atomic uint64_t *w, size_t i)
{
	atomic_fetch_or_explicit(&w[i / 64], UINT64_C(1) << (i % 64),
				 memory_order_seq_cst);
}

/* Take and clear the set bits of a page bitmap, appending their page runs. */
int fg_bitmap_take(_Atomic uint64_t *w, size_t npages, uintptr_t base,
		   fg_runs *out);
/* The same for pages [first, last) only. */
int fg_bitmap_take_range(_Atomic uint64_t *w, size_t first, size_t last,
			 uintptr_t base, fg_runs *out);
/* The runs of a bitmap's set bits, leaving it as it is. */
int fg_bitmap_read(const _Atomic uint64_t *w, size_t npages, uintptr_t base,
		   fg_runs *out);

/* Shared userfaultfd helpers (uffd_common.c). */
int fg_uffd_open(uint64_t features, bool kernel_faults, int *fd_out,
		 char *why, size_t whylen);
int fg_uffd_wp(int fd, uintptr_t start, uintptr_t end, bool protect,
	       bool wake);
int fg_uffd_register_wp(int fd, fg_region *r);
int fg_uffd_unregister(int fd, fg_region *r);
/* PAGEMAP_SCAN of [start,end) for written pages; wp: re-protect them. */
int fg_pagemap_written(int pagemap_fd, uintptr_t start, uintptr_t end,
		       bool wp, bool check_async, fg_runs *out);

uint64_t fg_now_ns(void);

/* DIFF precision (diff.c). */
int fg_diff_region_init(fg_impl *t, fg_region *r);
void fg_diff_region_fini(fg_impl *t, fg_region *r);
int fg_diff_publish(fg_impl *t, fg_region *r);
void fg_diff_unpublish(fg_impl *t, fg_region *r);
void fg_diff_first_write(void *page, void *impl);
/* Start r's next epoch; returns the epoch it closes.  Before re-protect. */
uint32_t fg_diff_begin_epoch(fg_region *r);
/* Page runs of the closed epoch -> changed 64-byte ranges in out; pages
 * to twin eagerly for the next epoch in eager, pages to twin and leave
 * protected (FG_TWIN_STICKY) in t->diff.sticky_pages. */
int fg_diff_refine(fg_impl *t, fg_region *r, uint32_t closed,
		   const fg_runs *pages, fg_runs *out, fg_runs *eager);
/* FG_COLLECT_PEEK: fg_diff_refine of the epoch still open, leaving every
 * twin as it was (none taken, refreshed or dropped). */
int fg_diff_peek(fg_impl *t, fg_region *r, const fg_runs *pages,
		 fg_runs *out);
/* Twin the pages refine chose for epoch (the one just begun), validate,
 * leave the eager ones writable.  scratch: any vector, clobbered. */
int fg_diff_take(fg_impl *t, fg_region *r, uint32_t epoch, fg_runs *eager,
		 fg_runs *scratch);
/* Return the memory of unused twin slots; drop twins too old for their
 * epoch tags to be compared (see diff.c). */
void fg_diff_trim(fg_impl *t, fg_region *r);
void fg_diff_set_huge(fg_region *r, bool on);
void fg_diff_maybe_trim(fg_impl *t, fg_region *r, bool due);
void fg_diff_shrink(fg_impl *t);

#endif /* FG_INTERNAL_H */
