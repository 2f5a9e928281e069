/* backend_uffd_sync.c - userfaultfd write-protect, faults handled by a thread.
 *
 * Every registered region is write-protected through one userfaultfd per
 * tracker.  The first write to a protected page blocks the writing thread -
 * or the kernel writing on its behalf (read(2), recv, pipes), since the uffd
 * is opened without UFFD_USER_MODE_ONLY - and queues a message for the
 * tracker's handler thread, which
 *   1. calls the tracker's write hook with the page (the write has not
 *      landed yet, so the hook sees the old contents),
 *   2. un-protects the page and wakes the writer,
 *   3. sets the page's bit in the region's bitmap.
 * collect() takes and clears the bits, then re-protects the pages it took.
 *
 * Invariants
 *   - Ordering (why concurrent collection loses no write): the handler
 *     un-protects before it sets the bit, the collector clears the bit before
 *     it re-protects.  If the collector's take misses a bit, the bit stays
 *     set for the next collection.  If it takes the bit, the page is
 *     re-protected afterwards, so a write that lands later faults again and
 *     sets the bit again; a write that landed before the re-protect is
 *     reported by this collection, which returns after it.
 *   - A page is writable without a fault only if its bit is set or the
 *     kernel's uffd-wp bit for it is clear.  The second can happen without
 *     any fault: an anonymous page zapped by MADV_DONTNEED loses its uffd-wp
 *     bit and comes back writable.  So collect() also asks PAGEMAP_SCAN for
 *     pages whose uffd-wp bit is clear, and reports and re-protects those
 *     too (without a hook call: such a page's old contents are gone
 *     anyway).  The scan also sees writes to a mapping that replaced a
 *     region, whose re-protection then fails: the region is reported lost.
 *   - A region is in the handler's table (slots, under slots_lock) before
 *     it is registered with the uffd and until after it is unregistered, so
 *     a fault in it always finds its bitmap.  A message for a page in no
 *     region (read just before its region went away) is only woken.
 *   - Unregistering does not wake writers blocked on write-protect faults
 *     (the kernel does that only for missing-page faults): whoever finds a
 *     range unregistered wakes it with UFFDIO_WAKE, or the writer would
 *     sleep until the uffd is closed.
 *   - The handler never takes the tracker lock: a thread holding it (for
 *     instance one inside fg_collect) may itself write tracked memory.
 *   - The hook runs in the handler thread.  It must not call fg_* on the
 *     same tracker and must not write memory this tracker protects: either
 *     would wait for the handler, which is waiting for the hook.  It may be
 *     called twice for one page in an epoch (two writers, or a collection
 *     between the un-protect and the write).
 *   - In a forked child the handler thread does not exist and the uffd acts
 *     on the parent's address space (the child's copies of the mappings are
 *     not registered, since we do not ask for UFFD_FEATURE_EVENT_FORK): the
 *     child only frees memory and closes descriptors.
 *
 * Cost: every first write to a page in an epoch stops its thread for two
 * context switches and an ioctl in the handler; a collection costs one
 * PAGEMAP_SCAN per region and one ioctl per dirty run.
 */
#include "fg_compat.h"
#include "fg_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#define SYNC_FEATURES \
	(UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_UNPOPULATED)

/* The handler's view of a region. */
typedef struct sync_slot {
	uintptr_t base, end;
	_Atomic uint64_t *bits;
} sync_slot;

typedef struct sync_state {
	fg_impl *t;
	int uffd;
	int pagemap;
	int stopfd; /* eventfd: the handler exits when it becomes readable */
	pthread_t thread;

	pthread_rwlock_t slots_lock; /* handler reads, add/del write */
	sync_slot *slots;	     /* sorted by base */
	size_t nslots, cap;

	fg_runs scanned, taken; /* collect()'s two sources, reused */
} sync_state;

static void wake(int uffd, uintptr_t start, uintptr_t end)
{
	struct uffdio_range range = {.start = start, .len = end - start};

	(void)ioctl(uffd, UFFDIO_WAKE, &range);
}

/* Index of the slot holding addr, or nslots.  Caller holds slots_lock. */
static size_t slot_find(const sync_state *s, uintptr_t addr)
{
	size_t lo = 0, hi = s->nslots;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (addr < s->slots[mid].base)
			hi = mid;
		else if (addr >= s->slots[mid].end)
			lo = mid + 1;
		else
			return mid;
	}
	return s->nslots;
}

static void handle_fault(sync_state *s, uintptr_t addr)
{
	fg_impl *t = s->t;
	uintptr_t page = addr & ~(uintptr_t)(fg_page_size - 1);
	uintptr_t end = page + fg_page_size;
	size_t i;

	pthread_rwlock_rdlock(&s->slots_lock);
	i = slot_find(s, page);
	if (i == s->nslots) {
		pthread_rwlock_unlock(&s->slots_lock);
		wake(s->uffd, page, end);
		return;
	}
	if (t->hook) {
		atomic_fetch_add_explicit(&t->ctr.hook_calls, 1,
					  memory_order_relaxed);
		t->hook((void *)page, t->hook_arg);
	}
	/* Un-protect, then set the bit: see "Ordering" above.  A failure
	 * means region_del is unregistering the range right now. */
	if (fg_uffd_wp(s->uffd, page, end, false, true))
		wake(s->uffd, page, end);
	fg_bit_set(s->slots[i].bits, (page - s->slots[i].base) / fg_page_size);
	atomic_fetch_add_explicit(&t->ctr.faults, 1, memory_order_relaxed);
	pthread_rwlock_unlock(&s->slots_lock);
}

static void *handler_main(void *arg)
{
	sync_state *s = arg;
	struct pollfd pfd[2] = {
		{.fd = s->uffd, .events = POLLIN},
		{.fd = s->stopfd, .events = POLLIN},
	};
	struct uffd_msg msg[16];

	for (;;) {
		ssize_t n;

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents)
			break;
		if (pfd[0].revents & (POLLERR | POLLHUP | POLLNVAL))
			break; /* nothing can be delivered any more */
		n = read(s->uffd, msg, sizeof(msg));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			break;
		}
		for (size_t k = 0; k < (size_t)n / sizeof(msg[0]); k++) {
			/* Only write-protect faults are registered for. */
			if (msg[k].event == UFFD_EVENT_PAGEFAULT &&
			    (msg[k].arg.pagefault.flags &
			     UFFD_PAGEFAULT_FLAG_WP))
				handle_fault(
					s, (uintptr_t)msg[k].arg.pagefault.address);
		}
	}
	return NULL;
}

/* Start the handler with every signal blocked: a signal meant for the
 * mutators (a collector's stop-the-world, say) must not land in it. */
static int start_thread(pthread_t *th, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int err;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(th, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return err;
}

struct probe_writer {
	int pipe_rd;
	void *page;
	ssize_t got;
	int err;
};

static void *probe_write(void *arg)
{
	struct probe_writer *w = arg;

	w->got = read(w->pipe_rd, w->page, 1);
	w->err = errno;
	return NULL;
}

/* Functional probe: protect a page, let the kernel write into it (read(2)
 * from a pipe, in a second thread), receive and resolve the fault, then
 * check PAGEMAP_SCAN reports the page as written. */
static int sync_probe(char *why, size_t whylen)
{
	struct probe_writer w = {.pipe_rd = -1};
	struct pollfd pfd;
	struct uffd_msg msg;
	fg_region r = {0};
	fg_runs runs = {0};
	pthread_t th;
	int uffd, pm = -1, pipefd[2] = {-1, -1}, rc;

	rc = fg_uffd_open(SYNC_FEATURES, true, &uffd, why, whylen);
	if (rc)
		return rc;
	rc = -FG_EUNAVAIL;
	pm =
		fg_fd_rehome(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
	if (pm < 0) {
		snprintf(why, whylen, "/proc/self/pagemap: %s", strerror(errno));
		goto out;
	}
	if (pipe2(pipefd, O_CLOEXEC) < 0 || write(pipefd[1], "x", 1) != 1) {
		snprintf(why, whylen, "pipe: %s", strerror(errno));
		goto out;
	}
	r.npages = 1;
	r.len = fg_page_size;
	r.base = (uintptr_t)mmap(NULL, r.len, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if ((void *)r.base == MAP_FAILED) {
		snprintf(why, whylen, "mmap: %s", strerror(errno));
		goto out;
	}
	if (fg_uffd_register_wp(uffd, &r)) {
		snprintf(why, whylen, "cannot write-protect anonymous memory: %s",
			 fg_last_error_detail());
		goto out_unmap;
	}
	w.pipe_rd = pipefd[0];
	w.page = (void *)r.base;
	if (start_thread(&th, probe_write, &w)) {
		snprintf(why, whylen, "cannot start a thread");
		goto out_unreg;
	}
	pfd = (struct pollfd){.fd = uffd, .events = POLLIN};
	if (poll(&pfd, 1, 2000) != 1 ||
	    read(uffd, &msg, sizeof msg) != sizeof msg ||
	    msg.event != UFFD_EVENT_PAGEFAULT ||
	    !(msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) ||
	    msg.arg.pagefault.address - r.base >= r.len) {
		snprintf(why, whylen, "a write by the kernel into a "
				      "write-protected page was not delivered "
				      "to the userfaultfd");
		/* Closing the uffd releases the writer. */
		close(uffd);
		uffd = -1;
		pthread_join(th, NULL);
		goto out_unmap;
	}
	if (fg_uffd_wp(uffd, r.base, r.base + r.len, false, true))
		wake(uffd, r.base, r.base + r.len);
	pthread_join(th, NULL);
	if (w.got != 1) {
		snprintf(why, whylen, "read(2) into a write-protected page "
				      "failed: %s", strerror(w.err));
		goto out_unreg;
	}
	rc = fg_pagemap_written(pm, r.base, r.base + r.len, false, false, &runs);
	if (rc == -ENOTTY || rc == -EINVAL)
		snprintf(why, whylen, "kernel lacks the PAGEMAP_SCAN ioctl "
				      "(Linux >= 6.7)");
	else if (rc)
		snprintf(why, whylen, "PAGEMAP_SCAN: %s", fg_strerror(rc));
	else if (runs.n != 1)
		snprintf(why, whylen, "PAGEMAP_SCAN did not report a written "
				      "page as written");
	else
		snprintf(why, whylen, "userfaultfd write-protect faults, kernel "
				      "writes included, reach a handler thread; "
				      "PAGEMAP_SCAN works");
	rc = rc || runs.n != 1 ? -FG_EUNAVAIL : 0;
	fg_runs_free(&runs);
out_unreg:
	if (uffd >= 0)
		fg_uffd_unregister(uffd, &r);
out_unmap:
	munmap((void *)r.base, r.len);
out:
	if (pipefd[0] >= 0) {
		close(pipefd[0]);
		close(pipefd[1]);
	}
	if (pm >= 0)
		close(pm);
	if (uffd >= 0)
		close(uffd);
	return rc;
}

static int sync_init(fg_impl *t)
{
	sync_state *s;
	char why[200];
	int err;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->t = t;
	s->uffd = s->pagemap = s->stopfd = -1;
	err = pthread_rwlock_init(&s->slots_lock, NULL);
	if (err) {
		free(s);
		return -err;
	}
	err = fg_uffd_open(SYNC_FEATURES, true, &s->uffd, why, sizeof(why));
	if (err) {
		err = fg_fail(err, "%s", why);
		goto err_lock;
	}
	s->pagemap =
		fg_fd_rehome(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
	if (s->pagemap < 0) {
		err = fg_fail(-errno, "/proc/self/pagemap: %s", strerror(errno));
		goto err_fds;
	}
	s->stopfd = fg_fd_rehome(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	if (s->stopfd < 0) {
		err = fg_fail(-errno, "eventfd: %s", strerror(errno));
		goto err_fds;
	}
	err = start_thread(&s->thread, handler_main, s);
	if (err) {
		err = fg_fail(-err, "cannot start the fault handler thread: %s",
			      strerror(err));
		goto err_fds;
	}
	pthread_setname_np(s->thread, "fg-uffd-sync");
	t->bpriv = s;
	return 0;

err_fds:
	if (s->stopfd >= 0)
		close(s->stopfd);
	if (s->pagemap >= 0)
		close(s->pagemap);
	close(s->uffd);
err_lock:
	pthread_rwlock_destroy(&s->slots_lock);
	free(s);
	return err;
}

static void sync_fini(fg_impl *t, bool forked)
{
	sync_state *s = t->bpriv;

	if (!forked) {
		uint64_t one = 1;

		while (write(s->stopfd, &one, sizeof(one)) < 0 &&
		       errno == EINTR)
			;
		pthread_join(s->thread, NULL);
		pthread_rwlock_destroy(&s->slots_lock);
	}
	/* Closing the uffd wakes any writer still blocked on it. */
	close(s->stopfd);
	close(s->pagemap);
	close(s->uffd);
	free(s->slots);
	fg_runs_free(&s->scanned);
	fg_runs_free(&s->taken);
	free(s);
	t->bpriv = NULL;
}

static int slot_insert(sync_state *s, fg_region *r)
{
	size_t i;

	if (s->nslots == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 8;
		sync_slot *v;

		/* The handler reads slots under the lock; so does realloc. */
		pthread_rwlock_wrlock(&s->slots_lock);
		v = realloc(s->slots, cap * sizeof(*v));
		if (v) {
			s->slots = v;
			s->cap = cap;
		}
		pthread_rwlock_unlock(&s->slots_lock);
		if (!v)
			return -ENOMEM;
	}
	pthread_rwlock_wrlock(&s->slots_lock);
	for (i = 0; i < s->nslots && s->slots[i].base < r->base; i++)
		;
	memmove(&s->slots[i + 1], &s->slots[i],
		(s->nslots - i) * sizeof(s->slots[0]));
	s->slots[i] = (sync_slot){r->base, r->base + r->len, r->priv};
	s->nslots++;
	pthread_rwlock_unlock(&s->slots_lock);
	return 0;
}

static void slot_remove(sync_state *s, fg_region *r)
{
	size_t i;

	pthread_rwlock_wrlock(&s->slots_lock);
	i = slot_find(s, r->base);
	if (i < s->nslots) {
		memmove(&s->slots[i], &s->slots[i + 1],
			(s->nslots - i - 1) * sizeof(s->slots[0]));
		s->nslots--;
	}
	pthread_rwlock_unlock(&s->slots_lock);
}

static int sync_region_add(fg_impl *t, fg_region *r)
{
	sync_state *s = t->bpriv;
	int err;

	r->priv = calloc((r->npages + 63) / 64, sizeof(uint64_t));
	if (!r->priv)
		return -ENOMEM;
	/* In the table before the first fault can come. */
	err = slot_insert(s, r);
	if (err)
		goto err_free;
	err = fg_uffd_register_wp(s->uffd, r);
	if (err)
		goto err_slot;
	return 0;

err_slot:
	slot_remove(s, r);
err_free:
	free(r->priv);
	r->priv = NULL;
	return err;
}

static void sync_region_del(fg_impl *t, fg_region *r, bool forked)
{
	sync_state *s = t->bpriv;

	if (!forked) {
		(void)fg_uffd_unregister(s->uffd, r);
		wake(s->uffd, r->base, r->base + r->len);
		slot_remove(s, r);
	}
	free(r->priv);
	r->priv = NULL;
}

/* Whether an ioctl's failure means the range is no longer registered. */
static bool gone(int err)
{
	return err == -ENOENT || err == -EINVAL || err == -ENOMEM;
}

/* Merge two address-ordered run lists into out; fg_runs_push joins a run
 * that overlaps or touches the one before it. */
static int merge_runs(const fg_runs *a, const fg_runs *b, fg_runs *out)
{
	size_t i = 0, j = 0;

	while (i < a->n || j < b->n) {
		const fg_run *x;
		int err;

		if (j == b->n || (i < a->n && a->v[i].start <= b->v[j].start))
			x = &a->v[i++];
		else
			x = &b->v[j++];
		err = fg_runs_push(out, x->start, x->end);
		if (err)
			return err;
	}
	return 0;
}

static int sync_written(fg_impl *t, fg_region *r, fg_runs *out)
{
	sync_state *s = t->bpriv;

	return fg_pagemap_written(s->pagemap, r->base, r->base + r->len, false,
				  false, out);
}

/* Whether page lost its write protection: the kernel's uffd-wp bit, so
 * that whoever un-protected it (fg_mark_dirty, a handler of an earlier
 * epoch) is seen.  From the handler thread only (not signal-safe). */
static int sync_page_written(fg_impl *t, uintptr_t page)
{
	sync_state *s = t->bpriv;
	fg_run run;
	fg_runs out = {.v = &run, .n = 0, .cap = 1};
	int err = fg_pagemap_written(s->pagemap, page, page + fg_page_size,
				     false, false, &out);

	return err ? err : out.n > 0;
}

/* The pages of [start, end) of r only; the others keep their state. */
static int sync_collect_range(fg_impl *t, fg_region *r, uintptr_t start,
			      uintptr_t end, fg_runs *out)
{
	sync_state *s = t->bpriv;
	size_t first = out->n;
	int err;

	s->scanned.n = 0;
	s->taken.n = 0;
	/* Pages whose uffd-wp bit is clear, whatever made them so. */
	err = fg_pagemap_written(s->pagemap, start, end, false, false,
				 &s->scanned);
	if (err)
		return fg_fail(err, "uffd-sync: PAGEMAP_SCAN: %s",
			       fg_strerror(err));
	/* Clear the bits, then re-protect: see "Ordering" above.  On any
	 * failure from here on the core reports the region wholly dirty
	 * from now on, which covers pages taken but not reported. */
	err = fg_bitmap_take_range(r->priv, (start - r->base) / fg_page_size,
				   (end - r->base) / fg_page_size, r->base,
				   &s->taken);
	if (!err)
		err = merge_runs(&s->scanned, &s->taken, out);
	for (size_t k = first; !err && k < out->n; k++) {
		uintptr_t a = out->v[k].start;

		/* The first run may have joined one the caller had; re-protect
		 * only this region's part of it. */
		if (a < start)
			a = start;
		err = fg_uffd_wp(s->uffd, a, out->v[k].end, true, false);
		if (gone(err))
			return fg_fail(-FG_EUNMAPPED,
				       "uffd-sync: [%#lx, +%zu) is no longer "
				       "registered (unmapped or replaced)",
				       (unsigned long)r->base, r->len);
	}
	return err;
}

static int sync_collect(fg_impl *t, fg_region *r, fg_runs *out)
{
	return sync_collect_range(t, r, r->base, r->base + r->len, out);
}

static int sync_mark_dirty(fg_impl *t, fg_region *r, uintptr_t start,
			   uintptr_t end)
{
	sync_state *s = t->bpriv;
	int err;

	for (uintptr_t p = start; p < end; p += fg_page_size)
		fg_bit_set(r->priv, (p - r->base) / fg_page_size);
	/* Writable now, so the kernel's writes there need no round trip. */
	err = fg_uffd_wp(s->uffd, start, end, false, true);
	return gone(err) ? -FG_EUNMAPPED : err;
}

const fg_backend_ops fg_backend_uffd_sync = {
	.id = FG_BACKEND_UFFD_SYNC,
	.name = "uffd-sync",
	.caps = FG_CAP_TRACKS | FG_CAP_KERNEL_WRITES | FG_CAP_PROTECTS |
		FG_CAP_WRITE_HOOK | FG_CAP_HOOK_TWINS | FG_CAP_COLLECT_TWINS |
		FG_CAP_EXEMPT | FG_CAP_CONCURRENT | FG_CAP_PEEK |
		FG_CAPI_PTE_MARKERS,
	.probe = sync_probe,
	.init = sync_init,
	.fini = sync_fini,
	.region_add = sync_region_add,
	.region_del = sync_region_del,
	.collect = sync_collect,
	.collect_range = sync_collect_range,
	.mark_dirty = sync_mark_dirty,
	.written = sync_written,
	.page_written = sync_page_written,
};
