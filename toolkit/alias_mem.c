/* alias_mem.c - ALIAS: the memfd's descriptor, its physical pages, and
 * the views: registration with the tracker and prefaulting.
 * The design and its invariants: alias_internal.h. */
#include "alias_internal.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_KEEP_SIZE 0x01
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif

/* ---- the memfd's descriptor -------------------------------------------- */

/* A program under the preload shim knows nothing of the toolkit's
 * descriptors: it may close 3, 4, 5 ... or dup2 its own files over them.
 * So the memfd is moved up, out of the way (fd_rehome), and before each
 * call that would harm another file (ftruncate, mmap, fallocate, close) its
 * number is checked to still name the memfd (alias_fd_is_ours).  When it does
 * not, the call is skipped: the views, mapped at creation, keep the memfd
 * itself alive, so the heap goes on working; only freed memory stays
 * resident.  The check and the call are not atomic: a program that
 * replaces the descriptor between them is not caught. */

#define FD_FLOOR FG_FD_FLOOR

/* One line on stderr, without stdio (the preload shim's malloc may be
 * what is running). */
static void fd_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fd_say(const char *fmt, ...)
{
	char buf[384];
	va_list ap;
	int n, e = errno;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
	va_end(ap);
	if (n > 0) {
		if ((size_t)n > sizeof buf - 2)
			n = sizeof buf - 2;
		buf[n++] = '\n';
		if (write(STDERR_FILENO, buf, (size_t)n) < 0)
			errno = e;
	}
	errno = e;
}

/* Whether h->fd still names the heap's memfd; if not, says so once on
 * stderr (what follows from it: consequence). */
bool alias_fd_is_ours(heap *h, const char *consequence)
{
	struct stat st;

	if (h->fd >= 0 && fstat(h->fd, &st) == 0 && st.st_dev == h->fd_dev &&
	    st.st_ino == h->fd_ino)
		return true;
	if (h->fd >= 0 && !atomic_exchange(&h->fd_warned, true))
		fd_say("fg-alias: descriptor %d, the ALIAS heap's memfd, was "
		       "closed or replaced by the program; left alone: %s",
		       h->fd, consequence);
	return false;
}

/* ---- physical pages ---------------------------------------------------- */

/* First page (absolute) of a free run of n pages of a pool, aligned to
 * align pages, or -1.  The pages in use in both pools together are at
 * most the capacity. */
long alias_pages_alloc(heap *h, unsigned which, size_t n, size_t align)
{
	struct pool *p = &h->pool[which];
	size_t start;
	long r = -1;

	pthread_mutex_lock(&h->pages_lock);
	if (h->pool[0].top - h->pool[0].nfree + h->pool[1].top -
		    h->pool[1].nfree + n > h->cap / PAGE)
		goto out;
	if (n == 1 && align == 1 && p->nfree) {
		for (size_t w = p->hint; w * 64 < p->top; w++) {
			if (p->freebits[w]) {
				unsigned b = (unsigned)__builtin_ctzll(p->freebits[w]);

				p->freebits[w] &= p->freebits[w] - 1;
				p->hint = w;
				p->nfree--;
				r = (long)(p->first + w * 64 + b);
				goto out;
			}
		}
	} else if (p->nfree >= n) { /* first fit */
		size_t run = 0, i;

		start = 0;
		for (i = p->hint * 64; i < p->top && run < n;) {
			uint64_t w = p->freebits[i / 64] >> (i % 64);

			if (i % 64 == 0 && (w == 0 || (w == ~UINT64_C(0) && run))) {
				run = w ? run + 64 : 0;
				i += 64;
				continue;
			}
			if (!(w & 1)) {
				run = 0;
			} else if (run || (p->first + i) % align == 0) {
				if (!run)
					start = i;
				run++;
			}
			i++;
		}
		if (run >= n) {
			for (i = start; i < start + n; i++)
				p->freebits[i / 64] &= ~(UINT64_C(1) << (i % 64));
			p->nfree -= n;
			r = (long)(p->first + start);
			goto out;
		}
	}
	start = (p->first + p->top + align - 1) / align * align - p->first;
	if (start + n > p->npages)
		goto out;
	for (size_t i = p->top; i < start; i++) { /* alignment gap: free */
		p->freebits[i / 64] |= UINT64_C(1) << (i % 64);
		p->nfree++;
	}
	if (p->top < start && p->top / 64 < p->hint)
		p->hint = p->top / 64;
	p->top = start + n;
	r = (long)(p->first + start);
out:
	pthread_mutex_unlock(&h->pages_lock);
	return r;
}

void alias_pages_free(heap *h, size_t first, size_t n)
{
	struct pool *p = &h->pool[first >= h->pool[1].first];

	first -= p->first;
	pthread_mutex_lock(&h->pages_lock);
	for (size_t i = first; i < first + n; i++)
		p->freebits[i / 64] |= UINT64_C(1) << (i % 64);
	p->nfree += n;
	if (first / 64 < p->hint)
		p->hint = first / 64;
	pthread_mutex_unlock(&h->pages_lock);
}

/* Give free pages' memory back (none of them holds an object).  They are
 * prefaulted again when next used. */
bool alias_hole(heap *h, size_t first, size_t n)
{
	/* Failure only leaves memory resident; so does a descriptor that
	 * no longer names the memfd (the pages stay ready then). */
	if (!alias_fd_is_ours(h, "freed memory is no longer returned to the kernel"))
		return false;
	(void)fallocate(h->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			(off_t)first << PAGE_SHIFT, (off_t)n << PAGE_SHIFT);
	return true;
}

void alias_punch(heap *h, size_t first, size_t n)
{
	if (!alias_hole(h, first, n))
		return;
	for (size_t pg = first; pg < first + n; pg++)
		if (atomic_load_explicit(&h->ready[pg], memory_order_relaxed))
			atomic_store(&h->ready[pg], 0);
}

/* ---- views: registration and prefaulting -------------------------------- */

/* Segments grow with their pool (an eighth of it, 2 MiB .. max(32 MiB,
 * half the memfd / 32)): few tracker regions, and little page-table
 * overshoot, since userfaultfd fills every PTE of a registered shared
 * range. */
static int segs_cover(heap *h, size_t block)
{
	struct pool *p = &h->pool[block >= h->nblocks / 2];
	size_t first = p->first / BLOCK_PAGES, end = first + h->nblocks / 2;

	while (p->seg_end <= block) {
		size_t n = 1, lim = h->nblocks / 64 > 16 ? h->nblocks / 64 : 16;

		while (n * 2 <= (p->seg_end - first) / 8 && n * 2 <= lim)
			n *= 2;
		if (n > end - p->seg_end)
			n = end - p->seg_end;
		if (h->nsegs == h->segs_cap) {
			size_t cap = h->segs_cap ? h->segs_cap * 2 : 16;
			struct seg *s = realloc(h->segs, cap * sizeof *s);

			if (!s)
				return -ENOMEM;
			h->segs = s;
			h->segs_cap = cap;
		}
		h->segs[h->nsegs] = (struct seg){(uint32_t)p->seg_end,
						 (uint32_t)n, 0};
		for (size_t b = p->seg_end; b < p->seg_end + n; b++)
			h->seg_of[b] = (uint32_t)h->nsegs + 1;
		h->nsegs++;
		p->seg_end += n;
	}
	return 0;
}

/* What pages first .. first + n - 1 need: page i the views need[i % period]. */
struct need {
	size_t first, n, period;
	const uint64_t *views;
};

static inline uint64_t need_of(const struct need *nd, size_t i)
{
	return nd->views[nd->period == 1 ? 0 : i % nd->period];
}

static inline uint64_t missing(heap *h, const struct need *nd, size_t i)
{
	return need_of(nd, i) &
	       ~atomic_load_explicit(&h->ready[nd->first + i],
				     memory_order_acquire);
}

/* Register the (view, segment) ranges the missing pairs lie in. */
static int register_missing(heap *h, const struct need *nd)
{
	for (size_t i = 0; i < nd->n;) {
		size_t b = (nd->first + i) / BLOCK_PAGES;
		size_t end = (b + 1) * BLOCK_PAGES - nd->first;
		uint64_t miss = 0;
		struct seg *s;
		int rc;

		if (end > nd->n)
			end = nd->n;
		for (; i < end; i++)
			miss |= missing(h, nd, i);
		if (!miss)
			continue;
		rc = segs_cover(h, b);
		if (rc)
			return rc;
		s = &h->segs[h->seg_of[b] - 1];
		for (uint64_t m = miss & ~s->registered; m; m &= m - 1) {
			unsigned v = (unsigned)__builtin_ctzll(m);
			size_t len = (size_t)s->nblocks << BLOCK_SHIFT;

			rc = fg_register(h->t,
					 (void *)view_addr(h, v, (size_t)s->first_block * BLOCK_PAGES),
					 len);
			if (rc)
				return rc;
			s->registered |= UINT64_C(1) << v;
			h->regions++;
			h->registered_bytes += len;
		}
	}
	return 0;
}

/* Prefault pages [pg, end) of one block through view v, and mark them
 * ready.  A backend whose protection the kernel's writes meet (mprotect,
 * uffd-sync: FG_CAP_PROTECTS) is told first (fg_mark_dirty), so that the
 * populating write neither fails nor stops in a fault handler; others see
 * it or need not (it changes no byte).  Failures only cost faults
 * later. */
static void populate(heap *h, unsigned v, size_t pg, size_t end)
{
	bool mark = h->caps & FG_CAP_PROTECTS;

	if (h->populate) {
		void *a = (void *)view_addr(h, v, pg);

		if (mark)
			(void)fg_mark_dirty(h->t, a, (end - pg) * PAGE);
		(void)madvise(a, (end - pg) * PAGE, MADV_POPULATE_WRITE);
		h->prefaulted += end - pg;
	}
	for (; pg < end; pg++)
		atomic_fetch_or(&h->ready[pg], UINT64_C(1) << v);
}

#define GAP 3

/* Pages i0 .. i1 - 1 of nd (one block) missing view v: one call per run,
 * runs joined across gaps of up to GAP pages (a call costs more than
 * prefaulting a few pages more). */
static void populate_runs(heap *h, const struct need *nd, unsigned v,
			  size_t i0, size_t i1)
{
	uint64_t bit = UINT64_C(1) << v;

	for (size_t i = i0; i < i1;) {
		size_t j, k;

		if (!(missing(h, nd, i) & bit)) {
			i++;
			continue;
		}
		for (j = i + 1;; j = k + 1) {
			for (k = j; k < i1 && k <= j + GAP &&
				    !(missing(h, nd, k) & bit);
			     k++)
				;
			if (k >= i1 || k > j + GAP)
				break;
		}
		populate(h, v, nd->first + i, nd->first + j);
		i = j;
	}
}

/* The same where protection splits mappings (mprotect), in whole 64 KiB
 * chunks: contiguous writable ranges merge, while scattered pages would
 * split the views' mappings into many (every mprotect, and the tracker's reading of
 * /proc/self/maps, slower; vm.max_map_count nearer). */
static void populate_chunks(heap *h, unsigned v, size_t pg0, size_t pg1)
{
	uint64_t bit = UINT64_C(1) << v;
	size_t c1 = (pg1 + CHUNK_PAGES - 1) / CHUNK_PAGES, run = 0;

	for (size_t c = pg0 / CHUNK_PAGES; c <= c1; c++) {
		bool miss = false;

		for (size_t pg = c * CHUNK_PAGES;
		     c < c1 && pg < (c + 1) * CHUNK_PAGES && !miss; pg++)
			miss = !(atomic_load_explicit(&h->ready[pg],
						      memory_order_relaxed) &
				 bit);
		if (miss && !run) {
			run = c + 1; /* the run's first chunk, + 1 */
		} else if (!miss && run) {
			populate(h, v, (run - 1) * CHUNK_PAGES, c * CHUNK_PAGES);
			run = 0;
		}
	}
}

/* Prefault the missing pairs, block by block (a block lies in one tracker
 * region per view), view by view. */
static void populate_missing(heap *h, const struct need *nd)
{
	for (size_t i0 = 0, i1; i0 < nd->n; i0 = i1) {
		size_t b = (nd->first + i0) / BLOCK_PAGES;
		uint64_t all = 0;

		i1 = (b + 1) * BLOCK_PAGES - nd->first;
		if (i1 > nd->n)
			i1 = nd->n;
		for (size_t i = i0; i < i1; i++)
			all |= missing(h, nd, i);
		for (; all; all &= all - 1) {
			unsigned v = (unsigned)__builtin_ctzll(all);

			if (h->caps & FG_CAP_SPLITS_MAPPINGS)
				populate_chunks(h, v, nd->first + i0,
						nd->first + i1);
			else
				populate_runs(h, nd, v, i0, i1);
		}
	}
}

static int prepare_slow(heap *h, const struct need *nd)
{
	int rc;

	pthread_mutex_lock(&h->grow_lock);
	rc = register_missing(h, nd);
	if (!rc)
		populate_missing(h, nd);
	pthread_mutex_unlock(&h->grow_lock);
	if (rc) {
		char detail[256];

		snprintf(detail, sizeof detail, "%s", fg_last_error_detail());
		fg_fail(rc, "ALIAS: registering a view with the tracker: %s",
			detail);
	}
	return rc;
}

/* Make pages [first, first + n) usable through the views they need: page i
 * through views[i % period]. */
int alias_prepare(heap *h, size_t first, size_t n,
			  const uint64_t *views, size_t period)
{
	struct need nd = {first, n, period, views};

	for (size_t i = 0; i < n; i++)
		if (missing(h, &nd, i))
			return prepare_slow(h, &nd);
	return 0;
}
