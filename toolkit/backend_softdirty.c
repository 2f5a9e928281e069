/* backend_softdirty.c - page write tracking with the kernel's soft-dirty
 * bits: writing "4" to /proc/self/clear_refs clears them (and write-protects
 * every page of the process, so the next write faults in the kernel and sets
 * the bit again); bit 55 of a page's /proc/self/pagemap entry reads it.
 * Needs a kernel built with CONFIG_MEM_SOFT_DIRTY; the probe checks the bit
 * really moves rather than trusting that clear_refs accepts "4" (it does on
 * every kernel, with or without the option).
 *
 * Invariants
 *   - clear_refs acts on the whole process, so the soft-dirty state belongs
 *     to no tracker: every soft-dirty region of every tracker is on one
 *     process-wide list (sd_list, under sd_lock) with a pending bitmap.
 *     Whoever clears (a collection, a registration, the probe) first reads
 *     the pagemap entries of every listed region and ORs the soft-dirty
 *     pages into that region's pending bitmap, then clears, all under
 *     sd_lock.  A collection reports and resets its region's pending bits.
 *   - A new region joins the list only after such a clear, so its first
 *     collection reports writes made after registration (and more: a VMA
 *     created, split or merged since the last clear reads wholly dirty).
 *   - Writes by the kernel on the program's behalf fault like user writes
 *     and set the bit; nothing fails with EFAULT.
 *
 * Soundness limit: the read-then-clear is not atomic.  A write by another
 * thread to a page after its entry was read and before clear_refs
 * write-protects it is lost.  This backend is sound only when no other
 * thread writes tracked memory during fg_collect(), fg_register() or the
 * probe - as with Boehm's SOFT_VDB, which reads the bits with the world
 * stopped.  Auto-selection ranks it below mprotect for that reason.  Any
 * other user of clear_refs in the process (checkpointers, a runtime's own
 * soft-dirty collector) erases our bits and must not coexist with it.
 *
 * Costs: no fault reaches user space; each first write after a clear takes
 * a kernel-only write fault.  Every clear write-protects every present page
 * of the process, and every clear reads 8 bytes of pagemap per tracked page
 * of every tracker.
 */
#include "fg_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PM_SOFT_DIRTY (UINT64_C(1) << 55)
#define PM_PRESENT (UINT64_C(1) << 63)

typedef struct sd_region {
	struct sd_region *next;
	uintptr_t base;
	size_t npages;
	_Atomic uint64_t *pending; /* soft-dirty seen, not yet reported */
} sd_region;

typedef struct sd_state {
	int pagemap;
	int clear_refs;
} sd_state;

static pthread_mutex_t sd_lock = PTHREAD_MUTEX_INITIALIZER;
static sd_region *sd_list;		/* under sd_lock */
static uint64_t sd_buf[1024];		/* pagemap entries, under sd_lock */
static pthread_once_t sd_atfork_once = PTHREAD_ONCE_INIT;

/* fork() while another thread holds sd_lock must not leave the child a
 * lock that nobody will release. */
static void sd_prepare(void)
{
	pthread_mutex_lock(&sd_lock);
}

static void sd_release(void)
{
	pthread_mutex_unlock(&sd_lock);
}

static void sd_atfork(void)
{
	pthread_atfork(sd_prepare, sd_release, sd_release);
}

static int pagemap_read(int pm, uintptr_t addr, uint64_t *v, size_t n)
{
	off_t off = (off_t)(addr / fg_page_size * sizeof(uint64_t));
	size_t want = n * sizeof(uint64_t), got = 0;

	while (got < want) {
		ssize_t k = pread(pm, (char *)v + got, want - got,
				  off + (off_t)got);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return fg_fail(-errno, "soft-dirty: reading "
					       "/proc/self/pagemap: %s",
				       strerror(errno));
		if (k == 0)
			return fg_fail(-EIO, "soft-dirty: /proc/self/pagemap "
					     "ended early at %#lx",
				       (unsigned long)addr);
		got += (size_t)k;
	}
	return 0;
}

/* OR the soft-dirty pages of one region into its pending bitmap. */
static int accumulate(int pm, sd_region *sr)
{
	const size_t chunk = sizeof sd_buf / sizeof *sd_buf;

	for (size_t first = 0; first < sr->npages; first += chunk) {
		size_t n = sr->npages - first < chunk ? sr->npages - first
						       : chunk;
		int rc = pagemap_read(pm, sr->base + first * fg_page_size,
				      sd_buf, n);

		if (rc)
			return rc;
		for (size_t i = 0; i < n;) {
			size_t page = first + i, b = page % 64;
			uint64_t mask = 0;

			for (; i < n && b < 64; i++, b++)
				if (sd_buf[i] & PM_SOFT_DIRTY)
					mask |= UINT64_C(1) << b;
			if (mask)
				atomic_fetch_or(&sr->pending[page / 64], mask);
		}
	}
	return 0;
}

static int clear_soft_dirty(int cr)
{
	ssize_t k;

	do
		k = write(cr, "4", 1);
	while (k < 0 && errno == EINTR);
	if (k != 1)
		return fg_fail(k < 0 ? -errno : -EIO,
			       "soft-dirty: writing 4 to /proc/self/clear_refs: "
			       "%s",
			       k < 0 ? strerror(errno) : "short write");
	return 0;
}

/* Save every region's soft-dirty pages, then clear the process's bits.
 * Caller holds sd_lock.  On failure nothing was cleared. */
static int save_and_clear(int pm, int cr)
{
	for (sd_region *sr = sd_list; sr; sr = sr->next) {
		int rc = accumulate(pm, sr);

		if (rc)
			return rc;
	}
	return clear_soft_dirty(cr);
}

static int open_files(sd_state *s, char *why, size_t whylen)
{
	s->pagemap =
		fg_fd_rehome(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
	if (s->pagemap < 0) {
		snprintf(why, whylen, "/proc/self/pagemap: %s", strerror(errno));
		return -FG_EUNAVAIL;
	}
	s->clear_refs =
		fg_fd_rehome(open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC));
	if (s->clear_refs < 0) {
		snprintf(why, whylen, "/proc/self/clear_refs: %s",
			 strerror(errno));
		close(s->pagemap);
		return -FG_EUNAVAIL;
	}
	return 0;
}

/* Functional probe: a written page must read clean after a clear and
 * soft-dirty after the next write.  Other soft-dirty regions keep their
 * bits: the clear goes through save_and_clear. */
static int sd_probe(char *why, size_t whylen)
{
	sd_state s;
	volatile char *p;
	uint64_t e;
	int rc;

	rc = open_files(&s, why, whylen);
	if (rc)
		return rc;
	rc = -FG_EUNAVAIL;
	p = mmap(NULL, fg_page_size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		snprintf(why, whylen, "mmap: %s", strerror(errno));
		goto out_files;
	}
	p[0] = 1;
	pthread_mutex_lock(&sd_lock);
	if (save_and_clear(s.pagemap, s.clear_refs)) {
		snprintf(why, whylen, "%s", fg_last_error_detail());
	} else if (pagemap_read(s.pagemap, (uintptr_t)p, &e, 1)) {
		snprintf(why, whylen, "%s", fg_last_error_detail());
	} else if (!(e & PM_PRESENT)) {
		snprintf(why, whylen, "pagemap shows a written page as not "
				      "present");
	} else if (e & PM_SOFT_DIRTY) {
		snprintf(why, whylen, "writing 4 to /proc/self/clear_refs did "
				      "not clear pagemap bit 55 (soft-dirty)");
	} else {
		p[0] = 2;
		if (pagemap_read(s.pagemap, (uintptr_t)p, &e, 1))
			snprintf(why, whylen, "%s", fg_last_error_detail());
		else if (!(e & PM_SOFT_DIRTY))
			snprintf(why, whylen,
				 "kernel built without CONFIG_MEM_SOFT_DIRTY "
				 "(pagemap bit 55 never set)");
		else {
			snprintf(why, whylen, "clear_refs and pagemap bit 55 "
					      "track writes (sound only when "
					      "no thread writes during a "
					      "collection)");
			rc = 0;
		}
	}
	pthread_mutex_unlock(&sd_lock);
	munmap((void *)p, fg_page_size);
out_files:
	close(s.clear_refs);
	close(s.pagemap);
	return rc;
}

static int sd_init(fg_impl *t)
{
	sd_state *s = malloc(sizeof *s);
	char why[200];
	int rc;

	if (!s)
		return -ENOMEM;
	rc = open_files(s, why, sizeof why);
	if (rc) {
		free(s);
		return fg_fail(rc, "%s", why);
	}
	pthread_once(&sd_atfork_once, sd_atfork);
	t->bpriv = s;
	return 0;
}

static void sd_fini(fg_impl *t, bool forked)
{
	sd_state *s = t->bpriv;

	(void)forked; /* only our own descriptors and memory */
	close(s->clear_refs);
	close(s->pagemap);
	free(s);
	t->bpriv = NULL;
}

static int sd_region_add(fg_impl *t, fg_region *r)
{
	sd_state *s = t->bpriv;
	sd_region *sr = calloc(1, sizeof *sr);
	int rc;

	if (!sr)
		return -ENOMEM;
	sr->base = r->base;
	sr->npages = r->npages;
	sr->pending = calloc((r->npages + 63) / 64, sizeof(uint64_t));
	if (!sr->pending) {
		free(sr);
		return -ENOMEM;
	}
	pthread_mutex_lock(&sd_lock);
	/* Start clean without erasing the other regions' bits. */
	rc = save_and_clear(s->pagemap, s->clear_refs);
	if (!rc) {
		sr->next = sd_list;
		sd_list = sr;
	}
	pthread_mutex_unlock(&sd_lock);
	if (rc) {
		free(sr->pending);
		free(sr);
		return rc;
	}
	r->priv = sr;
	return 0;
}

static void sd_region_del(fg_impl *t, fg_region *r, bool forked)
{
	sd_region *sr = r->priv, **pp;

	(void)t;
	(void)forked; /* the list is this process's own memory */
	pthread_mutex_lock(&sd_lock);
	for (pp = &sd_list; *pp; pp = &(*pp)->next) {
		if (*pp == sr) {
			*pp = sr->next;
			break;
		}
	}
	pthread_mutex_unlock(&sd_lock);
	free(sr->pending);
	free(sr);
	r->priv = NULL;
}

static int sd_collect(fg_impl *t, fg_region *r, fg_runs *out)
{
	sd_state *s = t->bpriv;
	sd_region *sr = r->priv;
	int rc;

	pthread_mutex_lock(&sd_lock);
	rc = save_and_clear(s->pagemap, s->clear_refs);
	if (!rc)
		rc = fg_bitmap_take(sr->pending, sr->npages, sr->base, out);
	pthread_mutex_unlock(&sd_lock);
	return rc;
}

static int sd_mark_dirty(fg_impl *t, fg_region *r, uintptr_t start,
			 uintptr_t end)
{
	sd_region *sr = r->priv;

	(void)t;
	/* Kernel writes need no help here: they fault in the kernel. */
	for (uintptr_t p = start; p < end; p += fg_page_size)
		fg_bit_set(sr->pending, (p - sr->base) / fg_page_size);
	return 0;
}

const fg_backend_ops fg_backend_softdirty = {
	.id = FG_BACKEND_SOFTDIRTY,
	.name = "soft-dirty",
	.caps = FG_CAP_TRACKS | FG_CAP_KERNEL_WRITES,
	.probe = sd_probe,
	.init = sd_init,
	.fini = sd_fini,
	.region_add = sd_region_add,
	.region_del = sd_region_del,
	.collect = sd_collect,
	.mark_dirty = sd_mark_dirty,
};
