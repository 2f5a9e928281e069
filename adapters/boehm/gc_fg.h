/* gc_fg.h - the fgvm adapter's own calls in the adapter's libgc.so.1.
 *
 * The adapter's libgc.so.1 is Boehm GC 8.2.2 built with EXTERNAL_VDB and
 * linked with fgvm's toolkit: its incremental and generational modes take
 * their dirty bits from the toolkit (userfaultfd write-protection by
 * default) and rescan only the marked objects that overlap dirty cards.
 * Nothing here is needed to use it: GC_ENABLE_INCREMENTAL=1 or
 * GC_enable_incremental() turn it on, FG_BACKEND and FG_CARD choose the
 * backend and the card size.  These calls are for programs that want to
 * choose in code or read what happened.  Declared weak-friendly: a
 * program can look them up with dlsym() to run on stock libgc too. */
#ifndef GC_FG_H
#define GC_FG_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Choose the toolkit backend ("uffd-async", "uffd-sync", "mprotect",
 * "none"; NULL: automatic) before the incremental mode is switched on.
 * Overrides FG_BACKEND.  Returns 0, or -1 if incremental mode is on. */
int GC_fg_set_backend(const char *name);

/* The card size in bytes: a power of two from 64 to the page size, or a
 * multiple of the page size.  Before the incremental mode is on it sets
 * the initial size (overriding FG_CARD); after, it takes effect at the
 * next collection, and no write is lost around the change.  Returns 0 or
 * -1 (bad size: see GC_fg_last_error()).
 *
 * With neither this call nor FG_CARD the adapter chooses (FG_CARD=auto):
 * 64-byte cards while their twins pay for themselves, page precision
 * while they do not; GC_fg_get_card_size() then says 64.  A size set
 * after the start ends that choice; it takes the allocation lock. */
int GC_fg_set_card_size(size_t bytes);
size_t GC_fg_get_card_size(void);

/* The active backend's name, or NULL while the adapter does not supply
 * the dirty bits (incremental mode off, or it could not start: then
 * GC_fg_last_error() says why). */
const char *GC_fg_backend(void);
const char *GC_fg_last_error(void);

/* I/O into the heap that the toolkit cannot see (toolkit/fg.h, "Which
 * writes each backend sees"): io_uring fixed buffers, O_DIRECT and aio
 * reads, process_vm_writev or /proc/PID/mem writes from another process,
 * writes through a second mapping.  Ordinary read(2), recv(2) and the like
 * need nothing.  Bracket such I/O into objects that hold pointers:
 *
 *     int io = GC_fg_io_begin(buf, len);   before the I/O is started
 *     ... the I/O runs; the program waits for its completion ...
 *     GC_fg_io_end(io);                    after it completed
 *
 * While it is in flight every collection rescans [buf, buf+len), and the
 * first one after GC_fg_io_end once more.  GC_fg_io_begin returns a handle
 * >= 0, GC_FG_IO_OFF while the adapter does not supply the dirty bits
 * (then the collector does not rely on them: start such I/O after
 * GC_enable_incremental), or -1 (GC_fg_last_error() says why).
 * GC_fg_io_end returns 0, or -1 for a handle not in flight.  Any thread
 * may call them; they take the allocation lock (not from a signal
 * handler, nor from inside GC_call_with_alloc_lock). */
#define GC_FG_IO_OFF 0x7fffffff
int GC_fg_io_begin(void *addr, size_t len);
int GC_fg_io_end(int io);

/* Counters since the collector started. */
struct GC_fg_stats {
	size_t size;		     /* sizeof(struct GC_fg_stats), by the caller */
	unsigned long collections;   /* dirty-bit retrievals */
	unsigned long dirty_pages;   /* pages the backend reported written */
	unsigned long dirty_bytes;   /* bytes of dirty cards reported */
	unsigned long faults;	     /* first-write faults (backend's count) */
	unsigned long bytes_rescanned; /* marked bytes pushed again */
	unsigned long whole_epochs;  /* retrievals at page precision because
					the collector marked concurrently */
	double retrieve_ms_total;    /* time in the retrievals (in pauses) */
	double retrieve_ms_max;
	double preclean_ms_total;    /* time retrieving before the world
					stopped (FG_BOEHM_PRECLEAN=0: none) */
	double finish_ms_total;	     /* time retrieving after collections
					finished (the world running) */
	unsigned long finish_bytes;  /* written while they finished: read
					dirty whole at the next retrieval */
	unsigned long exempted_blocks; /* freed heap blocks left unwatched
					  (uffd-async; read dirty) */
	unsigned long watched_blocks;  /* young blocks watched again after
					  a collection */
	/* Since 0.4: */
	unsigned long bytes_rescanned_page; /* what page precision would
					       have pushed again */
	unsigned long auto_off;	     /* FG_CARD=auto: times it turned the
					twins off (they did not pay) */
	unsigned long auto_on;	     /* ... and on again, to try */
};
int GC_fg_get_stats(struct GC_fg_stats *out);

/* Shorthand for the benchmarks: GC_get_bytes_rescanned(). */
unsigned long GC_fg_get_bytes_rescanned(void);

#ifdef __cplusplus
}
#endif
#endif /* GC_FG_H */
