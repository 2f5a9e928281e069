/* backend_uffd_async.c - userfaultfd write-protect, async mode, with
 * PAGEMAP_SCAN (Linux >= 6.7).
 *
 * The kernel resolves a write fault on a protected page by itself: it drops
 * the page's uffd-wp bit and lets the write proceed, with no signal, no
 * handler thread and no VMA split, and writes made by the kernel (read(2),
 * recv ...) take the same path instead of failing.  A page whose uffd-wp
 * bit is clear is "written"; one PAGEMAP_SCAN with PM_SCAN_WP_MATCHING
 * reports the written pages and re-protects them under the page-table lock,
 * page by page, so a write either lands before the scan reaches its page
 * (reported now) or faults on the restored protection (reported next time):
 * nothing falls between.  UFFD_FEATURE_WP_UNPOPULATED makes never-touched
 * pages protected too, and the kernel reports an anonymous page zapped
 * after protection (MADV_DONTNEED) as written, which is what its contents
 * did.  Not so a shared (memfd, shmem) page: a zap keeps its protection as
 * a uffd-wp PTE marker, which PAGEMAP_SCAN reads as not written and a
 * refault turns back into a protected page, so a hole punched in the file
 * (fallocate, MADV_REMOVE, ftruncate) is never seen: see fg_io_begin.
 *
 * PM_SCAN_CHECK_WPASYNC makes the scan fail with EPERM on any VMA that is
 * not registered with async write-protect: a region replaced by another
 * mapping is detected instead of read as clean.
 *
 * Re-protecting has a second way (FG_REPROTECT, t->reprotect): a read-only
 * PAGEMAP_SCAN, then one UFFDIO_WRITEPROTECT per run of written pages it
 * found.  The write-protecting scan costs a TLB flush for every 2 MiB
 * page table that holds a written page, whatever their number there
 * (15-30 us on the machine of bench/RESULTS.md, 2026-12-07); a call per
 * run costs 6-9 us.  So written pages scattered about one per 2 MiB are
 * re-protected 2.5-3 times faster by runs, and denser ones by the scan
 * (bench/reprotect).  Each call covers only pages the read-only scan saw
 * written, which this collection reports: a page written between the two
 * calls is either one of them (reported now, and the caller reads its
 * contents after we return) or still unprotected (reported next time).
 * The default is the scan; under auto (experimental: no gain shown on a
 * real program yet, bench/RESULTS.md 2026-12-07), a region's last
 * re-protection says which way its next one starts, and a read-only scan
 * that finds more than RUNS_PER_CHUNK runs per 2 MiB touched falls back
 * to the write-protecting scan.
 */
#include "fg_compat.h"
#include "fg_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ASYNC_FEATURES                                                        \
	(UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_ASYNC |             \
	 UFFD_FEATURE_WP_UNPOPULATED)

struct async_state {
	int uffd;
	int pagemap;
};

static int open_pagemap(int *fd, char *why, size_t whylen)
{
	*fd =
		fg_fd_rehome(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
	if (*fd < 0) {
		snprintf(why, whylen, "/proc/self/pagemap: %s", strerror(errno));
		return -FG_EUNAVAIL;
	}
	return 0;
}

/* Functional probe: protect a page, write it, and ask PAGEMAP_SCAN. */
static int async_probe(char *why, size_t whylen)
{
	struct async_state s = {-1, -1};
	fg_region r = {0};
	fg_runs runs = {0};
	int rc;

	rc = fg_uffd_open(ASYNC_FEATURES, false, &s.uffd, why, whylen);
	if (rc)
		return rc;
	rc = open_pagemap(&s.pagemap, why, whylen);
	if (rc)
		goto out;
	r.len = fg_page_size;
	r.base = (uintptr_t)mmap(NULL, r.len, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if ((void *)r.base == MAP_FAILED) {
		snprintf(why, whylen, "mmap: %s", strerror(errno));
		rc = -FG_EUNAVAIL;
		goto out;
	}
	rc = fg_uffd_register_wp(s.uffd, &r);
	if (rc) {
		snprintf(why, whylen, "cannot write-protect anonymous memory: %s",
			 fg_last_error_detail());
		rc = -FG_EUNAVAIL;
		goto out_unmap;
	}
	*(volatile char *)r.base = 1;
	rc = fg_pagemap_written(s.pagemap, r.base, r.base + r.len, true, true,
				&runs);
	if (rc == -ENOTTY || rc == -EINVAL) {
		snprintf(why, whylen, "kernel lacks the PAGEMAP_SCAN ioctl "
				      "(Linux >= 6.7)");
		rc = -FG_EUNAVAIL;
	} else if (rc) {
		snprintf(why, whylen, "PAGEMAP_SCAN: %s", fg_strerror(rc));
		rc = -FG_EUNAVAIL;
	} else if (runs.n != 1) {
		snprintf(why, whylen, "PAGEMAP_SCAN did not report a written "
				      "page as written");
		rc = -FG_EUNAVAIL;
	} else {
		snprintf(why, whylen, "userfaultfd WP_ASYNC + PAGEMAP_SCAN work");
	}
	fg_runs_free(&runs);
	fg_uffd_unregister(s.uffd, &r);
out_unmap:
	munmap((void *)r.base, r.len);
out:
	if (s.pagemap >= 0)
		close(s.pagemap);
	close(s.uffd);
	return rc;
}

static int async_init(fg_impl *t)
{
	struct async_state *s = calloc(1, sizeof *s);
	char why[256];
	int rc;

	if (!s)
		return -ENOMEM;
	rc = fg_uffd_open(ASYNC_FEATURES, false, &s->uffd, why, sizeof why);
	if (rc)
		goto err_free;
	rc = open_pagemap(&s->pagemap, why, sizeof why);
	if (rc)
		goto err_close;
	t->bpriv = s;
	return 0;
err_close:
	close(s->uffd);
err_free:
	free(s);
	return fg_fail(rc, "%s", why);
}

static void async_fini(fg_impl *t, bool forked)
{
	struct async_state *s = t->bpriv;

	(void)forked; /* closing our fds never touches the other process */
	close(s->pagemap);
	close(s->uffd);
	free(s);
	t->bpriv = NULL;
}

static int async_region_add(fg_impl *t, fg_region *r)
{
	struct async_state *s = t->bpriv;

	return fg_uffd_register_wp(s->uffd, r);
}

static void async_region_del(fg_impl *t, fg_region *r, bool forked)
{
	struct async_state *s = t->bpriv;

	/* In a child the uffd still names the parent's mm: hands off. */
	if (!forked)
		fg_uffd_unregister(s->uffd, r);
}

/* Runs of written pages per 2 MiB page table touched, at most, for the
 * call-per-run way under FG_REPROTECT=auto (bench/reprotect: at one run a
 * 2 MiB it is 2.5-3 times faster than the scan, at about four even). */
#define RUNS_PER_CHUNK 2
#define CHUNK_SHIFT 21

/* The new part of out's runs from index first (the first may have merged
 * with a run from an earlier call), clipped to [start, end). */
static void new_run(const fg_runs *out, size_t i, uintptr_t start,
		    uintptr_t end, uintptr_t *s, uintptr_t *e)
{
	*s = out->v[i].start > start ? out->v[i].start : start;
	*e = out->v[i].end < end ? out->v[i].end : end;
}

static size_t first_new(size_t first)
{
	return first ? first - 1 : 0;
}

/* Pages in the new runs; *runs and *chunks: how many runs, and how many
 * 2 MiB page tables they touch (counted only where chunks is not NULL:
 * FG_REPROTECT=auto's judgement, the one reader). */
static uint64_t new_pages(const fg_runs *out, size_t first, uintptr_t start,
			  uintptr_t end, size_t *runs, size_t *chunks)
{
	uintptr_t last_chunk = UINTPTR_MAX;
	uint64_t pages = 0;

	*runs = 0;
	if (chunks)
		*chunks = 0;
	for (size_t i = first_new(first); i < out->n; i++) {
		uintptr_t s, e;

		new_run(out, i, start, end, &s, &e);
		if (s >= e)
			continue;
		pages += (e - s) / fg_page_size;
		(*runs)++;
		for (uintptr_t c = s >> CHUNK_SHIFT;
		     chunks && c <= (e - 1) >> CHUNK_SHIFT; c++)
			if (c != last_chunk) {
				(*chunks)++;
				last_chunk = c;
			}
	}
	return pages;
}

static int async_collect_range(fg_impl *t, fg_region *r, uintptr_t start,
			       uintptr_t end, fg_runs *out)
{
	struct async_state *s = t->bpriv;
	size_t first = out->n, runs, chunks;
	uintptr_t last_end = first ? out->v[first - 1].end : 0;
	bool by_runs = t->reprotect == FG_REPROTECT_RUNS ||
		       (t->reprotect == FG_REPROTECT_AUTO && r->wp_sparse);
	uint64_t pages;
	int rc;

	rc = fg_pagemap_written(s->pagemap, start, end, !by_runs, true, out);
	if (rc)
		return rc;
	pages = new_pages(out, first, start, end, &runs,
			  t->reprotect == FG_REPROTECT_AUTO ? &chunks : NULL);
	if (t->reprotect == FG_REPROTECT_AUTO) {
		bool sparse = runs <= RUNS_PER_CHUNK * chunks;

		if (by_runs && !sparse) {
			/* Denser than last time: drop what the read-only
			 * scan added and take the write-protecting one (it
			 * finds those pages again, and any written since). */
			out->n = first;
			if (first)
				out->v[first - 1].end = last_end;
			rc = fg_pagemap_written(s->pagemap, start, end, true,
						true, out);
			if (rc)
				return rc;
			pages = new_pages(out, first, start, end, &runs,
					  &chunks);
			by_runs = false;
		}
		r->wp_sparse = sparse;
	}
	for (size_t i = first_new(first); by_runs && i < out->n; i++) {
		uintptr_t a, b;

		new_run(out, i, start, end, &a, &b);
		if (a < b) {
			rc = fg_uffd_wp(s->uffd, a, b, true, false);
			if (rc)
				return rc;
		}
	}
	atomic_fetch_add(&t->ctr.faults, pages);
	return 0;
}

static int async_collect(fg_impl *t, fg_region *r, fg_runs *out)
{
	return async_collect_range(t, r, r->base, r->base + r->len, out);
}

static int async_written(fg_impl *t, fg_region *r, fg_runs *out)
{
	struct async_state *s = t->bpriv;

	return fg_pagemap_written(s->pagemap, r->base, r->base + r->len, false,
				  true, out);
}

static int async_mark_dirty(fg_impl *t, fg_region *r, uintptr_t start,
			    uintptr_t end)
{
	struct async_state *s = t->bpriv;

	(void)r;
	/* An unprotected page reads as written at the next scan. */
	return fg_uffd_wp(s->uffd, start, end, false, true);
}

const fg_backend_ops fg_backend_uffd_async = {
	.id = FG_BACKEND_UFFD_ASYNC,
	.name = "uffd-async",
	.caps = FG_CAP_TRACKS | FG_CAP_KERNEL_WRITES | FG_CAP_COLLECT_TWINS |
		FG_CAP_EXEMPT | FG_CAP_CONCURRENT | FG_CAP_PEEK |
		FG_CAP_PRIVATE_FILE | FG_CAPI_PTE_MARKERS,
	.probe = async_probe,
	.init = async_init,
	.fini = async_fini,
	.region_add = async_region_add,
	.region_del = async_region_del,
	.collect = async_collect,
	.collect_range = async_collect_range,
	.mark_dirty = async_mark_dirty,
	.written = async_written,
};
