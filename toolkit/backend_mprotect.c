/* backend_mprotect.c - page write tracking with mprotect + SIGSEGV, the way
 * Boehm's MPROTECT_VDB does it.  The baseline every machine has.
 *
 * Invariants
 *   - A tracked page is either PROT_READ with its dirty bit clear, or
 *     writable with its dirty bit set, or (transiently) writable while a
 *     SIGSEGV handler that is about to set its bit is in flight.  A page
 *     read-only with its bit set is harmless (reported dirty once more).
 *   - Who may write a protected page: nobody directly.  The first user-mode
 *     write faults; the handler un-protects the page, then sets its bit.
 *     Kernel writes (read(2), recv, ...) into a protected page fail with
 *     EFAULT instead of faulting, unless fg_mark_dirty() un-protected the
 *     range first.
 *   - Ordering: the collector clears bits (fg_bitmap_take), then re-protects
 *     the pages it took; the handler un-protects, then sets the bit.  So a
 *     page the collector sees clean is either read-only (the next write
 *     faults and is reported later) or being un-protected by a handler that
 *     will set the bit after; and a write that lands between take and
 *     re-protect is on a page whose bit this collection took.
 *   - That alone lets a collection miss a write that completed before it
 *     began: thread A faults and un-protects, thread B writes the page
 *     without faulting, the collection runs, and only then A sets the bit
 *     (seen here within seconds, A merely preempted).  So the handler also
 *     counts itself in busy[] (per bitmap word) and marks its page in
 *     seen[] before it un-protects, and leaves busy[] after it sets the
 *     bit.  collect() first takes seen[] and reads busy[]: the pages seen
 *     in a word that has a handler in flight are taken as dirty (and stay
 *     seen).  A handler that un-protected before the collection began has
 *     then either set its bit, or its page is taken as dirty.  No write is
 *     lost, without stopping the mutators.
 *   - The handler touches only: the region table (atomic loads), the
 *     in-flight counter, a region's bitmap and counters (atomics), mprotect,
 *     sigaction and the tracker's hook.  All async-signal-safe; no locks,
 *     no malloc.  The hook runs in signal context, on the faulting thread,
 *     before the write lands; it may run twice for one page when two
 *     threads fault on it together.
 *   - Table slots change only under mp_lock, never in the handler.  A region
 *     is freed only after its slot is NULL and no handler is in flight
 *     (seq_cst on both sides: a handler that counted itself in before the
 *     NULL store is waited for, one that came later cannot see the region).
 *
 * Limitations: MADV_DONTNEED and mmap(MAP_FIXED) over a tracked range are
 * not noticed (a new mapping is not protected, so its writes are lost;
 * collect() notices only a range that became unmapped).  Each un-protected
 * page can split a mapping in three, so vm.max_map_count bounds how many
 * pages may be dirty at once; when it runs out pages stay writable and are
 * reported dirty until re-protecting works again.  Whoever installs a
 * SIGSEGV handler after us must chain to us.
 */
#include "fg_internal.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#define MP_SLOTS 4096
/* collect() re-protects dirty runs at most this many pages apart with one
 * mprotect: one system call instead of many (20x faster here for scattered
 * pages), and no split between them. */
#define MP_GAP_PAGES 64

struct mp_region {
	uintptr_t base;
	size_t len;
	size_t npages;
	size_t slot;
	fg_counters *ctr;
	fg_write_hook hook;
	void *hook_arg;
	/* Handlers that may be between un-protect and bit set, per word of
	 * bits; pages that had a handler since collect() last saw its word
	 * idle. */
	_Atomic uint64_t *busy;
	_Atomic uint64_t *seen;
	/* Bit set: page written this epoch, page writable. */
	_Atomic uint64_t bits[];
};

static _Atomic(struct mp_region *) mp_table[MP_SLOTS];
static _Atomic size_t mp_hiwater;	/* slots [0, hiwater) may be in use */
static _Atomic long mp_inflight;	/* handlers reading the table now */
/* Regions let go of so far: a fault on a page of one can reach the
 * handler after it was un-protected and unpublished (fg_unregister racing
 * a write).  The handler then retries the write once per generation
 * before it passes the fault on. */
static _Atomic uint64_t mp_released;
static __thread struct {
	uintptr_t addr;
	uint64_t gen;
} mp_retry __attribute__((tls_model("initial-exec")));
static pthread_mutex_t mp_lock = PTHREAD_MUTEX_INITIALIZER;
static bool mp_installed;		/* under mp_lock */
static struct sigaction mp_prev;	/* written once, before install */
static bool mp_atfork_ran;		/* we are a child of fork(3) */

/* Set bits [first, last) of w (signal-safe). */
static void mp_set_bits(_Atomic uint64_t *bits, size_t first, size_t last)
{
	while (first < last) {
		size_t w = first / 64, b = first % 64;
		size_t n = 64 - b < last - first ? 64 - b : last - first;
		uint64_t mask = n == 64 ? ~UINT64_C(0)
					: ((UINT64_C(1) << n) - 1) << b;

		atomic_fetch_or_explicit(&bits[w], mask, memory_order_seq_cst);
		first += n;
	}
}

/* Take the pages of handlers that may still be between un-protect and bit
 * set as dirty.  Take seen[] before reading busy[]: a handler not counted
 * any more has set its bit, one counted has its page in what was taken. */
static void mp_take_busy(struct mp_region *mr)
{
	size_t nwords = (mr->npages + 63) / 64;

	for (size_t w = 0; w < nwords; w++) {
		uint64_t s;

		if (!atomic_load(&mr->seen[w]))
			continue;
		s = atomic_exchange(&mr->seen[w], 0);
		if (s && atomic_load(&mr->busy[w])) {
			atomic_fetch_or(&mr->bits[w], s);
			atomic_fetch_or(&mr->seen[w], s);
		}
	}
}

/* The whole region busy (or not), for un-protecting all of it. */
static void mp_busy_all(struct mp_region *mr, bool busy)
{
	size_t nwords = (mr->npages + 63) / 64;

	for (size_t w = 0; w < nwords; w++) {
		if (busy)
			atomic_fetch_add(&mr->busy[w], 1);
		else
			atomic_fetch_sub(&mr->busy[w], 1);
	}
	if (busy)
		mp_set_bits(mr->seen, 0, mr->npages);
}

static void mp_set_range(struct mp_region *mr, uintptr_t start, uintptr_t end)
{
	mp_set_bits(mr->bits, (start - mr->base) / fg_page_size,
		    (end - mr->base) / fg_page_size);
}

static struct mp_region *mp_lookup(uintptr_t addr)
{
	size_t n = atomic_load(&mp_hiwater);

	for (size_t i = 0; i < n; i++) {
		struct mp_region *mr = atomic_load(&mp_table[i]);

		if (mr && addr - mr->base < mr->len)
			return mr;
	}
	return NULL;
}

/* Whether the fault was a write.  On x86 the page-fault error code says so;
 * anything else (an instruction fetch from the heap, say) is not ours, and
 * making the page writable would only make it fault forever. */
static bool mp_write_fault(void *ctx)
{
#if defined(__x86_64__) && defined(REG_ERR)
	const ucontext_t *uc = ctx;

	return uc->uc_mcontext.gregs[REG_ERR] & 2; /* X86_PF_WRITE */
#else
	(void)ctx;
	return true;
#endif
}

/* Pass a fault that is not ours to whoever had SIGSEGV before us. */
static void mp_chain(int sig, siginfo_t *si, void *ctx)
{
	struct sigaction dfl;

	if (mp_prev.sa_handler != SIG_DFL && mp_prev.sa_handler != SIG_IGN) {
		if (mp_prev.sa_flags & SA_SIGINFO)
			mp_prev.sa_sigaction(sig, si, ctx);
		else
			mp_prev.sa_handler(sig);
		return;
	}
	if (mp_prev.sa_handler == SIG_IGN && si->si_code <= 0)
		return; /* kill(2)ed and ignored: stays ignored */
	/* Default action: uninstall ourselves; a real fault repeats on return
	 * and dumps core as if we had never been there, a sent one is
	 * raised again.  (The kernel forces SIG_DFL for an ignored fault.) */
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	sigaction(SIGSEGV, &dfl, NULL);
	if (si->si_code <= 0)
		raise(sig);
}

static void mp_handler(int sig, siginfo_t *si, void *ctx)
{
	int saved_errno = errno;
	struct mp_region *mr = NULL;
	uintptr_t page;
	size_t idx;
	bool ok;

	atomic_fetch_add(&mp_inflight, 1);
	if (si->si_code == SEGV_ACCERR && mp_write_fault(ctx))
		mr = mp_lookup((uintptr_t)si->si_addr);
	if (!mr) {
		/* A region un-protected and unpublished since the fault
		 * (mp_region_del: un-protect, count, unpublish): return and
		 * let the write run again.  A fault that repeats with no
		 * region let go of meanwhile is not ours. */
		uint64_t gen = atomic_load(&mp_released);

		atomic_fetch_sub(&mp_inflight, 1);
		errno = saved_errno;
		if (si->si_code == SEGV_ACCERR && gen &&
		    (mp_retry.addr != (uintptr_t)si->si_addr ||
		     mp_retry.gen != gen)) {
			mp_retry.addr = (uintptr_t)si->si_addr;
			mp_retry.gen = gen;
			return;
		}
		mp_chain(sig, si, ctx);
		return;
	}

	page = (uintptr_t)si->si_addr & ~(uintptr_t)(fg_page_size - 1);
	idx = (page - mr->base) / fg_page_size;
	if (mr->hook) {
		atomic_fetch_add_explicit(&mr->ctr->hook_calls, 1,
					  memory_order_relaxed);
		mr->hook((void *)page, mr->hook_arg);
	}
	/* Busy and seen, un-protect, set the bit, not busy: see the
	 * invariants. */
	atomic_fetch_add(&mr->busy[idx / 64], 1);
	fg_bit_set(mr->seen, idx);
	if (mprotect((void *)page, fg_page_size, PROT_READ | PROT_WRITE) == 0) {
		fg_bit_set(mr->bits, idx);
		atomic_fetch_sub(&mr->busy[idx / 64], 1);
	} else {
		/* Out of mappings (max_map_count): un-protect the whole
		 * region instead, which splits nothing inside it; all of it
		 * reads dirty. */
		mp_busy_all(mr, true);
		atomic_fetch_sub(&mr->busy[idx / 64], 1);
		ok = mprotect((void *)mr->base, mr->len,
			      PROT_READ | PROT_WRITE) == 0;
		mp_set_bits(mr->bits, 0, mr->npages);
		mp_busy_all(mr, false);
		if (!ok) {
			/* Returning would fault forever: let it die. */
			atomic_fetch_sub(&mp_inflight, 1);
			errno = saved_errno;
			mp_chain(sig, si, ctx);
			return;
		}
	}
	atomic_fetch_add_explicit(&mr->ctr->faults, 1, memory_order_relaxed);
	atomic_fetch_sub(&mp_inflight, 1);
	errno = saved_errno;
}

static void mp_atfork_child(void)
{
	/* Threads of the parent that were in the handler or held the lock
	 * do not exist here. */
	atomic_store(&mp_inflight, 0);
	pthread_mutex_init(&mp_lock, NULL);
	mp_atfork_ran = true;
}

/* Under mp_lock. */
static int mp_install(void)
{
	struct sigaction sa;

	if (mp_installed)
		return 0;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = mp_handler;
	sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, NULL, &mp_prev) < 0)
		return fg_fail(-errno, "mprotect backend: sigaction: %s",
			       strerror(errno));
	if (sigaction(SIGSEGV, &sa, NULL) < 0)
		return fg_fail(-errno, "mprotect backend: sigaction: %s",
			       strerror(errno));
	pthread_atfork(NULL, NULL, mp_atfork_child);
	mp_installed = true;
	return 0;
}

/* Publish mr in a free slot; under mp_lock. */
static int mp_publish(struct mp_region *mr)
{
	size_t n = atomic_load(&mp_hiwater), free_slot = MP_SLOTS;

	for (size_t i = 0; i < n; i++) {
		struct mp_region *o = atomic_load(&mp_table[i]);

		if (!o) {
			if (free_slot == MP_SLOTS)
				free_slot = i;
			continue;
		}
		if (mr->base < o->base + o->len && o->base < mr->base + mr->len)
			return fg_fail(-FG_EOVERLAP,
				       "[%#lx, %#lx) overlaps [%#lx, %#lx), "
				       "already tracked with mprotect",
				       (unsigned long)mr->base,
				       (unsigned long)(mr->base + mr->len),
				       (unsigned long)o->base,
				       (unsigned long)(o->base + o->len));
	}
	if (free_slot == MP_SLOTS) {
		if (n == MP_SLOTS)
			return fg_fail(-ENOSPC,
				       "mprotect backend: more than %d regions",
				       MP_SLOTS);
		free_slot = n;
		atomic_store(&mp_hiwater, n + 1);
	}
	mr->slot = free_slot;
	atomic_store(&mp_table[free_slot], mr);
	return 0;
}

/* Remove mr from the table and wait until no handler can still see it. */
static void mp_unpublish(struct mp_region *mr)
{
	pthread_mutex_lock(&mp_lock);
	atomic_store(&mp_table[mr->slot], NULL);
	pthread_mutex_unlock(&mp_lock);
	while (atomic_load(&mp_inflight) != 0)
		sched_yield();
}

static int mp_probe(char *why, size_t whylen)
{
	if (why && whylen)
		snprintf(why, whylen, "always available");
	return 0;
}

static int mp_init(fg_impl *t)
{
	(void)t;
	fg_init_once();
	return 0;
}

static void mp_fini(fg_impl *t, bool forked)
{
	(void)t;
	(void)forked;
}

static int mp_region_add(fg_impl *t, fg_region *r)
{
	struct mp_region *mr;
	size_t nwords;
	int err;

	fg_init_once();
	nwords = (r->npages + 63) / 64;
	mr = calloc(1, sizeof *mr + 3 * nwords * sizeof mr->bits[0]);
	if (!mr)
		return fg_fail(-ENOMEM, "mprotect backend: out of memory");
	mr->busy = mr->bits + nwords;
	mr->seen = mr->bits + 2 * nwords;
	mr->base = r->base;
	mr->len = r->len;
	mr->npages = r->npages;
	mr->ctr = &t->ctr;
	mr->hook = t->hook;
	mr->hook_arg = t->hook_arg;

	pthread_mutex_lock(&mp_lock);
	err = mp_install();
	if (!err)
		err = mp_publish(mr);
	pthread_mutex_unlock(&mp_lock);
	if (err)
		goto err_free;

	/* Published before protected, so the first write is already ours. */
	if (mprotect((void *)r->base, r->len, PROT_READ) < 0) {
		err = -errno;
		goto err_unprotect;
	}
	r->priv = mr;
	return 0;

err_unprotect:
	/* mprotect works in address order and may have protected a prefix. */
	mprotect((void *)r->base, r->len, PROT_READ | PROT_WRITE);
	mp_unpublish(mr);
	if (err == -ENOMEM && !fg_range_mapped(r->base, r->len))
		err = fg_fail(-FG_EUNMAPPED,
			      "[%#lx, %#lx) is not entirely mapped",
			      (unsigned long)r->base,
			      (unsigned long)(r->base + r->len));
	else if (err == -ENOMEM)
		err = fg_fail(-ENOMEM,
			      "mprotect [%#lx, %#lx): out of mappings "
			      "(vm.max_map_count)",
			      (unsigned long)r->base,
			      (unsigned long)(r->base + r->len));
	else
		err = fg_fail(err, "mprotect [%#lx, %#lx): %s",
			      (unsigned long)r->base,
			      (unsigned long)(r->base + r->len), strerror(-err));
err_free:
	free(mr);
	return err;
}

static void mp_region_del(fg_impl *t, fg_region *r, bool forked)
{
	struct mp_region *mr = r->priv;

	(void)t;
	if (!mr)
		return;
	/* Writable before unpublished: no write may fault unhandled.  The
	 * region may already be gone (ENOMEM); in a forked child this acts
	 * on the child's own mappings, which is what it needs. */
	mprotect((void *)r->base, r->len, PROT_READ | PROT_WRITE);
	/* Before the region disappears from the table: a handler that
	 * does not find it sees a new generation, and retries. */
	atomic_fetch_add(&mp_released, 1);
	r->priv = NULL;
	if (forked && !mp_atfork_ran) {
		/* Forked without atfork handlers (_Fork, clone): the in-flight
		 * count may include parent threads that do not exist here, so
		 * waiting could hang.  Unpublish and leak the few bytes. */
		atomic_store(&mp_table[mr->slot], NULL);
		return;
	}
	mp_unpublish(mr);
	free(mr);
}

/* Re-protect [s, e) after its bits were taken.  Pages in it that were not
 * taken are read-only already, or have a handler in flight that will set
 * their bit: making them read-only can only cost a spurious fault or a
 * spurious dirty page, never a lost write. */
static void mp_reprotect(struct mp_region *mr, uintptr_t s, uintptr_t e,
			 int *perr)
{
	if (s >= e || mprotect((void *)s, e - s, PROT_READ) == 0)
		return;
	/* Not (entirely) protected again: keep it reading dirty. */
	if (!*perr)
		*perr = errno;
	mp_set_range(mr, s, e);
}

/* The pages of [start, end) only; the others keep their bits and their
 * protection (fg_set_exempt, I/O in flight). */
static int mp_collect_range(fg_impl *t, fg_region *r, uintptr_t start,
			    uintptr_t end, fg_runs *out)
{
	struct mp_region *mr = r->priv;
	uintptr_t prev_end = 0, ps = 0, pe = 0;
	size_t first = out->n;
	int err, perr = 0;

	(void)t;
	if (first)
		prev_end = out->v[first - 1].end;
	/* Pages of handlers in flight first, then clear the bits, then
	 * re-protect: see the invariants. */
	mp_take_busy(mr);
	err = fg_bitmap_take_range(mr->bits, (start - r->base) / fg_page_size,
				   (end - r->base) / fg_page_size, r->base,
				   out);
	if (err) {
		/* Some bits may be taken and not recorded: all reads dirty. */
		mp_set_bits(mr->bits, 0, mr->npages);
		return err;
	}

	/* fg_runs_push may have merged our first run into the previous
	 * region's last one; re-protect that part too. */
	for (size_t i = first ? first - 1 : 0; i < out->n; i++) {
		uintptr_t s = out->v[i].start, e = out->v[i].end;

		if (s < start)
			s = start;
		if (i == first - 1 && s < prev_end)
			s = prev_end;
		if (e > end)
			e = end;
		if (s >= e)
			continue;
		if (ps < pe && s - pe <= MP_GAP_PAGES * fg_page_size) {
			pe = e;
			continue;
		}
		mp_reprotect(mr, ps, pe, &perr);
		ps = s;
		pe = e;
	}
	mp_reprotect(mr, ps, pe, &perr);
	if (!perr)
		return 0;
	if (perr == ENOMEM && !fg_range_mapped(r->base, r->len))
		return fg_fail(-FG_EUNMAPPED, "[%#lx, %#lx) was unmapped",
			       (unsigned long)r->base,
			       (unsigned long)(r->base + r->len));
	if (perr == ENOMEM)
		return 0; /* out of mappings: sound, just less precise */
	return fg_fail(-perr, "mprotect (re-protect): %s", strerror(perr));
}

static int mp_collect(fg_impl *t, fg_region *r, fg_runs *out)
{
	return mp_collect_range(t, r, r->base, r->base + r->len, out);
}

static int mp_mark_dirty(fg_impl *t, fg_region *r, uintptr_t start,
			 uintptr_t end)
{
	struct mp_region *mr = r->priv;
	int err = 0;

	(void)t;
	if (mprotect((void *)start, end - start, PROT_READ | PROT_WRITE) < 0)
		err = -errno;
	/* Even on failure: a prefix may be writable now. */
	mp_set_range(mr, start, end);
	if (!err)
		return 0;
	if (err == -ENOMEM && !fg_range_mapped(start, end - start))
		return fg_fail(-FG_EUNMAPPED, "[%#lx, %#lx) was unmapped",
			       (unsigned long)start, (unsigned long)end);
	if (err == -ENOMEM &&
	    mprotect((void *)r->base, r->len, PROT_READ | PROT_WRITE) == 0) {
		/* Out of mappings: the whole region, split nowhere inside,
		 * all dirty. */
		mp_set_bits(mr->bits, 0, mr->npages);
		return 0;
	}
	return fg_fail(err, "mprotect [%#lx, %#lx) writable: %s",
		       (unsigned long)start, (unsigned long)end,
		       strerror(-err));
}

const fg_backend_ops fg_backend_mprotect = {
	.id = FG_BACKEND_MPROTECT,
	.name = "mprotect",
	.caps = FG_CAP_TRACKS | FG_CAP_PROTECTS | FG_CAP_SIGNAL_HANDLER |
		FG_CAP_SPLITS_MAPPINGS | FG_CAP_WRITE_HOOK | FG_CAP_EXEMPT |
		FG_CAP_CONCURRENT | FG_CAPI_PROCESS_LOCAL,
	.probe = mp_probe,
	.init = mp_init,
	.fini = mp_fini,
	.region_add = mp_region_add,
	.region_del = mp_region_del,
	.collect = mp_collect,
	.collect_range = mp_collect_range,
	.mark_dirty = mp_mark_dirty,
};
