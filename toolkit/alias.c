/* alias.c - ALIAS, the sub-page allocator: the memfd's descriptor,
 * physical pages, views, size classes, thread caches, objects, heaps and
 * collection.  The design and its invariants: alias_internal.h. */
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

struct class_info alias_classes[NCLASS];
static uint8_t class_of_16[SMALL_MAX / 16 + 1]; /* (size + 15) / 16 -> class */
pthread_once_t alias_classes_once = PTHREAD_ONCE_INIT;

static pthread_key_t tls_key;

__thread struct tls_cache alias_tls
	__attribute__((tls_model("initial-exec")));

static void tls_release(void *unused);

void alias_classes_init(void)
{
	for (size_t c = 0; c < NCLASS; c++) {
		struct class_info *ci = &alias_classes[c];

		ci->size = class_size[c];
		/* The smallest span that wastes at most 1/32 of itself. */
		for (ci->pages = 1; ci->pages < MAX_SPAN; ci->pages *= 2) {
			uint32_t bytes = ci->pages * PAGE;

			if (bytes / ci->size >= 2 &&
			    bytes % ci->size <= bytes / 32)
				break;
		}
		ci->nslots = ci->pages * PAGE / ci->size;
		if (ci->nslots > MAX_SLOTS)
			ci->nslots = MAX_SLOTS;
		ci->recip = (uint32_t)(((UINT64_C(1) << 32) + ci->size - 1) /
				       ci->size);
		ci->bin_lim = 16384 / ci->size;
		if (ci->bin_lim > BIN_MAX)
			ci->bin_lim = BIN_MAX;
		if (ci->bin_lim < 2)
			ci->bin_lim = 2;
		for (unsigned k = 0; k < FG_ALIAS_CARD_SIZES; k++)
			for (uint32_t i = 0; i < ci->nslots; i++)
				for (uint32_t pg = i * ci->size / PAGE;
				     pg <= ((i + 1) * ci->size - 1) / PAGE; pg++)
					ci->pviews[k][pg] |=
						UINT64_C(1)
						<< home_view(i * ci->size, k + 6);
	}
	for (size_t s = 0, c = 0; s <= SMALL_MAX / 16; s++) {
		while (class_size[c] < s * 16)
			c++;
		class_of_16[s] = (uint8_t)c;
	}
	pthread_key_create(&tls_key, tls_release);
}

static inline unsigned size_class(size_t size)
{
	return class_of_16[(size + 15) >> 4];
}

/* off / size, exact for span offsets (< 2^16) and sizes up to 2^16. */
static inline uint32_t slot_of(const struct class_info *ci, uint32_t off)
{
	return (uint32_t)(((uint64_t)off * ci->recip) >> 32);
}

/* ---- size classes ------------------------------------------------------- */

static void partial_push(heap *h, struct class_state *cs, size_t pg)
{
	struct pdesc *d = &h->pd[pg];

	d->prev = -1;
	d->next = cs->partial;
	if (cs->partial >= 0)
		h->pd[cs->partial].prev = (int32_t)pg;
	cs->partial = (int32_t)pg;
	cs->npartial++;
}

void alias_partial_unlink(heap *h, struct class_state *cs, size_t pg)
{
	struct pdesc *d = &h->pd[pg];

	if (d->prev >= 0)
		h->pd[d->prev].next = d->next;
	else
		cs->partial = d->next;
	if (d->next >= 0)
		h->pd[d->next].prev = d->prev;
	cs->npartial--;
}

/* Publish the layout of a run: later pages first, the head last. */
void alias_set_run(heap *h, size_t head, size_t n, uint32_t info)
{
	for (size_t i = 1; i < n; i++) {
		atomic_store_explicit(&h->pd[head + i].aux, (uint32_t)head,
				      memory_order_relaxed);
		atomic_store_explicit(&h->pd[head + i].info,
				      info ? INFO(PK_TAIL, 0, 0) : 0,
				      memory_order_release);
	}
	atomic_store_explicit(&h->pd[head].info, info, memory_order_release);
}

/* Lay out span head (ci->pages pages, no live and no cached slot) for
 * class c at card size 1 << cl, all its slots available, and publish it. */
static void layout(heap *h, unsigned c, size_t head, unsigned cl)
{
	const struct class_info *ci = &alias_classes[c];
	struct pdesc *d = &h->pd[head];

	d->navail = ci->nslots;
	atomic_store_explicit(&d->navail_stat, d->navail, memory_order_relaxed);
	memset(d->avail, 0, sizeof d->avail);
	for (uint32_t i = 0; i < ci->nslots; i++)
		d->avail[i / 64] |= UINT64_C(1) << (i % 64);
	alias_set_run(h, head, ci->pages, INFO(PK_SMALL, c, cl));
}

/* Spans to carve at once for class c: while the heap grows at its top (no
 * free page to reuse: those keep it compact), up to CHUNK_PAGES pages'
 * worth, as the class grows (half its pages): consecutive pages are
 * prefaulted view by view in one call each. */
static size_t batch(heap *h, const struct class_info *ci,
		    const struct class_state *cs)
{
	size_t pages = (size_t)cs->nspans * ci->pages / 2, nfree;

	/* mprotect: pages of one class in a chunk, of another in the next,
	 * would alternate the views' protections chunk by chunk (see
	 * populate_chunks); one span at a time mixes classes in chunks. */
	if (h->caps & FG_CAP_SPLITS_MAPPINGS)
		return 1;
	pthread_mutex_lock(&h->pages_lock);
	nfree = h->pool[POOL_SPANS].nfree;
	pthread_mutex_unlock(&h->pages_lock);
	if (nfree)
		return 1;

	if (pages > CHUNK_PAGES)
		pages = CHUNK_PAGES;
	return pages > ci->pages ? pages / ci->pages : 1;
}

/* Carve fresh spans for class c at the current card size (class lock). */
static int carve(heap *h, unsigned c)
{
	const struct class_info *ci = &alias_classes[c];
	struct class_state *cs = &h->cls[c];
	unsigned cl = (unsigned)__builtin_ctzl(atomic_load(&h->card));
	size_t k = batch(h, ci, cs);
	long pg = alias_pages_alloc(h, POOL_SPANS, k * ci->pages, 1);
	int rc;

	if (pg < 0 && k > 1) {
		k = 1;
		pg = alias_pages_alloc(h, POOL_SPANS, ci->pages, 1);
	}
	if (pg < 0)
		return fg_fail(-ENOMEM, "ALIAS heap full (capacity %zu bytes)",
			       h->cap);
	rc = alias_prepare(h, (size_t)pg, k * ci->pages, ci->pviews[cl - 6],
		     ci->pages);
	if (rc) {
		alias_pages_free(h, (size_t)pg, k * ci->pages);
		return rc;
	}
	/* The first span ends up first in the list: used in address order. */
	for (size_t j = k; j-- > 0;) {
		layout(h, c, (size_t)pg + j * ci->pages, cl);
		partial_push(h, cs, (size_t)pg + j * ci->pages);
	}
	cs->nspans += (uint32_t)k;
	cs->nempty += (uint32_t)k;
	return 0;
}

/* An empty span carved at another card size than the current one: lay it
 * out afresh, so that new objects get the current cards (class lock). */
static void recarve(heap *h, unsigned c, size_t head)
{
	const struct class_info *ci = &alias_classes[c];
	unsigned cl = (unsigned)__builtin_ctzl(atomic_load(&h->card));
	uint32_t info = atomic_load_explicit(&h->pd[head].info,
					     memory_order_relaxed);

	if (INFO_CL(info) == cl || h->pd[head].navail != ci->nslots)
		return;
	if (alias_prepare(h, head, ci->pages, ci->pviews[cl - 6], ci->pages))
		return; /* keeps its cards */
	layout(h, c, head, cl);
}

/* Move up to want available slots of class c into b. */
static int refill(heap *h, unsigned c, struct bin *b, uint32_t want)
{
	struct class_state *cs = &h->cls[c];
	const struct class_info *ci = &alias_classes[c];
	int rc = 0;

	pthread_mutex_lock(&cs->lock);
	while (b->n < want) {
		struct pdesc *d;
		size_t head;
		unsigned cl;

		if (cs->partial < 0) {
			rc = carve(h, c);
			if (rc)
				break;
		}
		head = (size_t)cs->partial;
		d = &h->pd[head];
		recarve(h, c, head);
		cl = INFO_CL(atomic_load_explicit(&d->info, memory_order_relaxed));
		for (unsigned w = 0; w < MAX_SLOTS / 64 && b->n < want; w++) {
			while (d->avail[w] && b->n < want) {
				uint32_t i = w * 64 + (uint32_t)__builtin_ctzll(d->avail[w]);

				d->avail[w] &= d->avail[w] - 1;
				cs->nempty -= d->navail == ci->nslots;
				d->navail--;
				b->v[b->n++] = slot_addr(h, head, cl, i * ci->size);
			}
		}
		atomic_store_explicit(&d->navail_stat, d->navail,
				      memory_order_relaxed);
		if (!d->navail)
			alias_partial_unlink(h, cs, head);
	}
	pthread_mutex_unlock(&cs->lock);
	return b->n ? 0 : rc;
}

/* The slot p (located as w) is the start of, reached through its home
 * view; false if p is no slot's start. */
static inline bool small_slot(const struct where *w, uint32_t *slot)
{
	const struct class_info *ci = &alias_classes[INFO_CLASS(w->info)];
	uint32_t i = slot_of(ci, w->soff);

	*slot = i;
	return INFO_KIND(w->info) == PK_SMALL && i * ci->size == w->soff &&
	       i < ci->nslots && home_view(w->soff, INFO_CL(w->info)) == w->v;
}

/* Return n slots of class c (already not live) to their spans. */
void alias_flush(heap *h, unsigned c, void *const *v, uint32_t n)
{
	struct class_state *cs = &h->cls[c];
	const struct class_info *ci = &alias_classes[c];

	pthread_mutex_lock(&cs->lock);
	for (uint32_t k = 0; k < n; k++) {
		struct where w;
		struct pdesc *d;
		uint32_t i;

		locate(h, v[k], &w);
		small_slot(&w, &i);
		d = &h->pd[w.head];
		d->avail[i / 64] |= UINT64_C(1) << (i % 64);
		atomic_store_explicit(&d->navail_stat, d->navail + 1,
				      memory_order_relaxed);
		if (d->navail++ == 0)
			partial_push(h, cs, w.head);
		/* An empty span goes back to the pool, to be carved for any
		 * class at the card size of its next carving.  A few stay:
		 * their views' pages are mapped and warm already. */
		if (d->navail == ci->nslots && ++cs->nempty > cs->nspans / 16 + 1) {
			alias_partial_unlink(h, cs, w.head);
			cs->nempty--;
			cs->nspans--;
			alias_set_run(h, w.head, ci->pages, INFO(PK_FREE, 0, 0));
			alias_pages_free(h, w.head, ci->pages);
		}
	}
	pthread_mutex_unlock(&cs->lock);
}

/* ---- thread caches ------------------------------------------------------ */

static bool heap_alive(const heap *h, uint64_t uid)
{
	for (heap *p = alias_heaps_live; p; p = p->next_live)
		if (p == h && p->uid == uid)
			return true;
	return false;
}

/* Give the calling thread's cache back to its heap, if that still lives
 * (alias_heaps_lock held). */
static void tls_drop(void)
{
	if (alias_tls.h && heap_alive(alias_tls.h, alias_tls.uid)) {
		for (unsigned c = 0; c < NCLASS; c++) {
			struct bin *b = &alias_tls.c->bins[c];

			if (b->n)
				alias_flush(alias_tls.h, c, b->v, b->n);
			b->n = 0;
		}
		alias_tls.c->in_use = false;
	}
	alias_tls.h = NULL;
	alias_tls.c = NULL;
}

static void tls_release(void *unused)
{
	(void)unused;
	pthread_mutex_lock(&alias_heaps_lock);
	tls_drop();
	pthread_mutex_unlock(&alias_heaps_lock);
}

static struct tcache *cache_slow(heap *h)
{
	struct tcache *c;

	pthread_mutex_lock(&alias_heaps_lock);
	tls_drop();
	for (c = h->caches; c && c->in_use; c = c->next)
		;
	if (!c) {
		c = calloc(1, sizeof *c);
		if (c) {
			c->next = h->caches;
			h->caches = c;
		}
	}
	if (c) {
		c->in_use = true;
		alias_tls.h = h;
		alias_tls.uid = h->uid;
		alias_tls.c = c;
		pthread_setspecific(tls_key, c); /* for tls_release at exit */
	}
	pthread_mutex_unlock(&alias_heaps_lock);
	return c;
}

static inline struct tcache *cache_of(heap *h)
{
	if (__builtin_expect(alias_tls.h == h && alias_tls.uid == h->uid, 1))
		return alias_tls.c;
	return cache_slow(h);
}

/* ---- objects ------------------------------------------------------------ */

static void *large_alloc(heap *h, size_t size, size_t align_pages)
{
	size_t n = (size + PAGE - 1) / PAGE;
	long pg;

	if (size > h->cap || n == 0) {
		fg_fail(-ENOMEM, "ALIAS: %zu bytes exceed the heap", size);
		errno = ENOMEM;
		return NULL;
	}
	pg = alias_pages_alloc(h, POOL_LARGE, n, align_pages);
	if (pg < 0) {
		fg_fail(-ENOMEM, "ALIAS heap full (capacity %zu bytes)", h->cap);
		errno = ENOMEM;
		return NULL;
	}
	static const uint64_t view0 = 1;

	if (alias_prepare(h, (size_t)pg, n, &view0, 1)) {
		alias_pages_free(h, (size_t)pg, n);
		errno = ENOMEM;
		return NULL;
	}
	atomic_store_explicit(&h->pd[pg].aux, (uint32_t)n, memory_order_relaxed);
	alias_set_run(h, (size_t)pg, n, INFO(PK_LARGE, 0, 0));
	return (void *)view_addr(h, 0, (size_t)pg);
}

static void *small_alloc(heap *h, unsigned c)
{
	struct tcache *tc = cache_of(h);
	struct bin *b;
	struct where w;
	uint32_t i;
	void *p;

	if (!tc) {
		errno = ENOMEM;
		return NULL;
	}
	b = &tc->bins[c];
	if (!b->n && refill(h, c, b, (alias_classes[c].bin_lim + 1) / 2)) {
		errno = ENOMEM;
		return NULL;
	}
	p = b->v[--b->n];
	locate(h, p, &w);
	i = slot_of(&alias_classes[c], w.soff);
	atomic_fetch_or_explicit(&h->pd[w.head].live[i / 64],
				 UINT64_C(1) << (i % 64), memory_order_relaxed);
	return p;
}

void *fg_alias_malloc(fg_alias_heap *hh, size_t size)
{
	heap *h = get_heap(hh);

	if (!h) {
		errno = EINVAL;
		return NULL;
	}
	if (size > SMALL_MAX)
		return large_alloc(h, size, 1);
	return small_alloc(h, size_class(size));
}

void *fg_alias_calloc(fg_alias_heap *hh, size_t n, size_t size)
{
	void *p;

	if (size && n > SIZE_MAX / size) {
		errno = ENOMEM;
		return NULL;
	}
	p = fg_alias_malloc(hh, n * size);
	if (p) /* through the object's own address: its card reads dirty */
		memset(p, 0, n * size);
	return p;
}

void *fg_alias_aligned_alloc(fg_alias_heap *hh, size_t align, size_t size)
{
	heap *h = get_heap(hh);

	if (!h || !align || (align & (align - 1)) || align > MAX_ALIGN) {
		if (h)
			fg_fail(-EINVAL, "ALIAS: alignment %zu is not a power "
					 "of two up to 2 MiB", align);
		errno = EINVAL;
		return NULL;
	}
	if (align <= 16)
		return fg_alias_malloc(hh, size);
	if (size <= SMALL_MAX && align < PAGE) {
		/* Slots sit at multiples of the size from a span's start. */
		for (unsigned c = size_class(size); c < NCLASS; c++)
			if (class_size[c] % align == 0)
				return small_alloc(h, c);
	}
	return large_alloc(h, size ? size : 1, align < PAGE ? 1 : align / PAGE);
}

static int free_large(heap *h, const struct where *w, const void *p)
{
	struct pdesc *d = &h->pd[w->pg];
	uint32_t info = w->info;
	size_t n = aux_of(h, w->pg);

	if (w->v != 0 || w->off != 0 || w->pg != w->head ||
	    !atomic_compare_exchange_strong(&d->info, &info, INFO(PK_FREE, 0, 0)))
		return fg_fail(-EINVAL, "ALIAS: %p is not a live object (freed "
					"twice, or not an object's start)", p);
	alias_set_run(h, w->pg, n, INFO(PK_FREE, 0, 0));
	if (n >= PUNCH_PAGES)
		alias_punch(h, w->pg, n);
	alias_pages_free(h, w->pg, n);
	return 0;
}

int fg_alias_free(fg_alias_heap *hh, void *p)
{
	heap *h = get_heap(hh);
	struct where w;
	uint32_t i;
	unsigned c;
	struct tcache *tc;
	struct bin *b;
	uint64_t bit, old;

	if (!h)
		return heap_err(hh);
	if (!p)
		return 0;
	if (!locate(h, p, &w))
		return fg_fail(-EFAULT, "ALIAS: %p is not in this heap", p);
	if (INFO_KIND(w.info) == PK_LARGE)
		return free_large(h, &w, p);
	if (!small_slot(&w, &i))
		return fg_fail(-EINVAL, "ALIAS: %p is not the start of an "
					"object (interior pointer, another "
					"view's address, or a free page)", p);
	bit = UINT64_C(1) << (i % 64);
	old = atomic_fetch_and_explicit(&h->pd[w.head].live[i / 64], ~bit,
					memory_order_relaxed);
	if (!(old & bit))
		return fg_fail(-EINVAL, "ALIAS: %p is not live (double free?)",
			       p);
	c = INFO_CLASS(w.info);
	tc = cache_of(h);
	if (!tc) { /* no cache: straight back to its span */
		alias_flush(h, c, &p, 1);
		return 0;
	}
	b = &tc->bins[c];
	if (b->n == alias_classes[c].bin_lim) {
		uint32_t half = (b->n + 1) / 2;

		alias_flush(h, c, b->v, half);
		memmove(b->v, b->v + half, (b->n - half) * sizeof *b->v);
		b->n -= half;
	}
	b->v[b->n++] = p;
	return 0;
}

static size_t usable(heap *h, const void *p)
{
	struct where w;
	uint32_t i;

	if (!locate(h, p, &w))
		return 0;
	if (INFO_KIND(w.info) == PK_LARGE)
		return w.v == 0 && w.off == 0 && w.pg == w.head
			       ? (size_t)aux_of(h, w.pg) * PAGE
			       : 0;
	if (!small_slot(&w, &i) ||
	    !(atomic_load(&h->pd[w.head].live[i / 64]) & (UINT64_C(1) << (i % 64))))
		return 0;
	return alias_classes[INFO_CLASS(w.info)].size;
}

size_t fg_alias_usable_size(fg_alias_heap *hh, const void *p)
{
	heap *h = get_heap(hh);

	return h && p ? usable(h, p) : 0;
}

void *fg_alias_realloc(fg_alias_heap *hh, void *p, size_t size)
{
	heap *h = get_heap(hh);
	size_t us;
	void *n;

	if (!h) {
		errno = EINVAL;
		return NULL;
	}
	if (!p)
		return fg_alias_malloc(hh, size);
	us = usable(h, p);
	if (!us) {
		fg_fail(-EINVAL, "ALIAS: realloc of %p, not a live object", p);
		errno = EINVAL;
		return NULL;
	}
	if (!size) {
		fg_alias_free(hh, p);
		return NULL;
	}
	/* Keep the object when it fits without wasting much of it. */
	if (size <= us && (us <= SMALL_MAX ? size > us - us / 8 - 16
					   : size > us - PAGE))
		return p;
	n = fg_alias_malloc(hh, size);
	if (!n)
		return NULL;
	memcpy(n, p, size < us ? size : us); /* writes through n's view */
	fg_alias_free(hh, p);
	return n;
}

/* Live heaps (the TLS cache check). */
pthread_mutex_t alias_heaps_lock = PTHREAD_MUTEX_INITIALIZER;
heap *alias_heaps_live;
static uint64_t heaps_uid;

/* ---- heaps --------------------------------------------------------------- */

static void *map_table(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static size_t table_len(size_t n, size_t each)
{
	return (n * each + PAGE - 1) & ~(size_t)(PAGE - 1);
}

static int check_card(size_t card)
{
	if (card < 64 || card > PAGE || (card & (card - 1)))
		return fg_fail(-FG_ECARD,
			       "ALIAS card size %zu: use a power of two from 64 "
			       "to the page size (%u)",
			       card, PAGE);
	return 0;
}

/* The card size: the caller's, else FG_CARD (parsed by the tracker, whose
 * card size is then set back to the page: ALIAS derives cards itself). */
static int choose_card(heap *h, const fg_alias_options *o)
{
	size_t card = o->card_size;
	fg_env_value v;

	/* Set and valid: a bad FG_CARD already failed the tracker. */
	if (!card && !(o->flags & FG_ALIAS_NO_ENV) &&
	    fg_env_get("FG_CARD", &v) > 0) {
		card = fg_card_size(h->t);
		if (check_card(card))
			return fg_fail(-FG_ECARD,
				       "FG_CARD=%s: ALIAS cards are powers of "
				       "two from 64 to %u bytes",
				       v.text, PAGE);
	}
	if (!card)
		card = 64;
	if (check_card(card))
		return -FG_ECARD;
	atomic_store(&h->card, card);
	return fg_set_card_size(h->t, PAGE);
}

static int map_views(heap *h)
{
	size_t len = (size_t)1 << h->vshift, span = (size_t)NVIEWS << h->vshift;
	uintptr_t r, a;

	struct stat st;

	h->fd = fg_fd_rehome(memfd_create("fg-alias", MFD_CLOEXEC));
	if (h->fd < 0)
		return fg_fail(-errno, "ALIAS: memfd_create: %s", strerror(errno));
	if (fstat(h->fd, &st) < 0) {
		int e = errno;

		close(h->fd);
		h->fd = -1;
		return fg_fail(-e, "ALIAS: fstat of the memfd: %s", strerror(e));
	}
	h->fd_dev = st.st_dev;
	h->fd_ino = st.st_ino;
	if (!alias_fd_is_ours(h, "no heap"))
		return fg_fail(-EBADF, "ALIAS: the memfd's descriptor %d was "
				       "replaced while the heap was created",
			       h->fd);
	if (ftruncate(h->fd, (off_t)len) < 0)
		return fg_fail(-errno, "ALIAS: ftruncate to %zu: %s", len,
			       strerror(errno));
	/* One reservation, 2 MiB-aligned: view v at base + v * memfd size,
	 * so an address gives its view and page by shifts. */
	h->resv_len = span + MAX_ALIGN;
	h->resv = mmap(NULL, h->resv_len, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (h->resv == MAP_FAILED) {
		h->resv = NULL;
		return fg_fail(-ENOMEM, "ALIAS: cannot reserve %zu bytes of "
					"address space for %d views of %zu bytes",
			       span, NVIEWS, len);
	}
	r = (uintptr_t)h->resv;
	a = (r + MAX_ALIGN - 1) & ~(MAX_ALIGN - 1);
	h->base = a;
	if (!alias_fd_is_ours(h, "no heap"))
		return fg_fail(-EBADF, "ALIAS: the memfd's descriptor %d was "
				       "replaced while the heap was created",
			       h->fd);
	for (unsigned v = 0; v < NVIEWS; v++) {
		void *p = mmap((void *)view_addr(h, v, 0), len,
			       PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_FIXED | MAP_NORESERVE, h->fd, 0);

		if (p == MAP_FAILED)
			return fg_fail(-errno, "ALIAS: mapping view %u: %s", v,
				       strerror(errno));
	}
	return 0;
}

static void heap_free(heap *h)
{
	if (h->t)
		fg_tracker_destroy(h->t);
	if (h->resv)
		munmap(h->resv, h->resv_len);
	if (h->fd >= 0 && alias_fd_is_ours(h, "not closed"))
		close(h->fd);
	if (h->pd)
		munmap(h->pd, h->pd_len);
	for (unsigned k = 0; k < 2; k++)
		if (h->pool[k].freebits)
			munmap(h->pool[k].freebits, table_len(h->npages / 2 / 64, 8));
	if (h->ready)
		munmap((void *)h->ready, table_len(h->npages, 8));
	if (h->seg_of)
		munmap(h->seg_of, table_len(h->nblocks, 4));
	while (h->caches) {
		struct tcache *c = h->caches;

		h->caches = c->next;
		free(c);
	}
	for (unsigned c = 0; c < NCLASS; c++)
		pthread_mutex_destroy(&h->cls[c].lock);
	pthread_mutex_destroy(&h->pages_lock);
	pthread_mutex_destroy(&h->grow_lock);
	pthread_mutex_destroy(&h->collect_lock);
	free(h->segs);
	free(h->runs);
	free(h);
}

int fg_alias_heap_create(const fg_alias_options *opt, fg_alias_heap **out)
{
	fg_alias_options o = FG_ALIAS_OPTIONS_INIT;
	fg_options to = FG_OPTIONS_INIT;
	fg_alias_heap *hh;
	heap *h;
	int rc;

	pthread_once(&alias_classes_once, alias_classes_init);
	if (!out)
		return fg_fail(-EINVAL, "fg_alias_heap_create: out is NULL");
	if (opt)
		memcpy(&o, opt, opt->size < sizeof o ? opt->size : sizeof o);
	if (sysconf(_SC_PAGESIZE) != PAGE)
		return fg_fail(-FG_EUNAVAIL, "ALIAS needs %u-byte pages, this "
					     "machine has %ld", PAGE,
			       sysconf(_SC_PAGESIZE));
	if (o.card_size && check_card(o.card_size))
		return -FG_ECARD;
	if (!o.capacity)
		o.capacity = (size_t)1 << 30;
	if (o.capacity > ((size_t)1 << 38))
		return fg_fail(-EINVAL, "ALIAS capacity %zu: at most 256 GiB "
					"(64 views of twice that must fit the "
					"address space)", o.capacity);

	hh = calloc(1, sizeof *hh);
	h = calloc(1, sizeof *h);
	if (!hh || !h) {
		free(hh);
		free(h);
		return -ENOMEM;
	}
	h->fd = -1;
	h->populate = !(o.flags & FG_ALIAS_NO_POPULATE);
	h->vshift = BLOCK_SHIFT + 1;
	while (((size_t)1 << (h->vshift - 1)) < o.capacity)
		h->vshift++;
	h->cap = (size_t)1 << (h->vshift - 1);
	h->npages = ((size_t)1 << h->vshift) / PAGE;
	h->nblocks = h->npages / BLOCK_PAGES;
	pthread_mutex_init(&h->pages_lock, NULL);
	pthread_mutex_init(&h->grow_lock, NULL);
	pthread_mutex_init(&h->collect_lock, NULL);
	for (unsigned c = 0; c < NCLASS; c++) {
		pthread_mutex_init(&h->cls[c].lock, NULL);
		h->cls[c].partial = -1;
	}

	to.backend = o.backend;
	/* 0 lets the tracker parse FG_CARD for us (choose_card). */
	to.card_size = o.card_size || (o.flags & FG_ALIAS_NO_ENV) ? PAGE : 0;
	to.flags = ((o.flags & FG_ALIAS_NO_ENV) ? FG_OPT_NO_ENV : 0) |
		   ((o.flags & FG_ALIAS_VERBOSE) ? FG_OPT_VERBOSE : 0);
	rc = fg_tracker_create(&to, &h->t);
	if (rc) {
		h->t = NULL;
		goto err;
	}
	/* The views are the only way into the memfd. */
	fg_tracker_shared_ok(h->t);
	h->backend = fg_tracker_backend(h->t);
	h->caps = fg_backend_ops_of(h->backend)->caps;
	rc = choose_card(h, &o);
	if (rc)
		goto err;
	rc = map_views(h);
	if (rc)
		goto err;
	h->pd_len = table_len(h->npages, sizeof *h->pd);
	h->pd = map_table(h->pd_len);
	h->ready = map_table(table_len(h->npages, 8));
	h->seg_of = map_table(table_len(h->nblocks, 4));
	for (unsigned k = 0; k < 2; k++) {
		struct pool *p = &h->pool[k];

		p->first = k * h->npages / 2;
		p->npages = h->npages / 2;
		p->seg_end = p->first / BLOCK_PAGES;
		p->freebits = map_table(table_len(p->npages / 64, 8));
	}
	if (!h->pd || !h->ready || !h->seg_of || !h->pool[0].freebits ||
	    !h->pool[1].freebits) {
		rc = fg_fail(-ENOMEM, "ALIAS: side tables for %zu pages",
			     h->npages);
		goto err;
	}
	pthread_mutex_lock(&alias_heaps_lock);
	h->uid = ++heaps_uid;
	h->next_live = alias_heaps_live;
	alias_heaps_live = h;
	pthread_mutex_unlock(&alias_heaps_lock);
	hh->impl = h;
	hh->sig = SIG_LIVE;
	*out = hh;
	return 0;
err:
	{
		/* Keep the failure's detail past the cleanup's calls. */
		char detail[512];

		snprintf(detail, sizeof detail, "%s", fg_last_error_detail());
		heap_free(h);
		free(hh);
		return fg_fail(rc, "%s", detail);
	}
}

int fg_alias_heap_destroy(fg_alias_heap *hh)
{
	heap *h = get_heap(hh);

	if (!h)
		return heap_err(hh);
	pthread_mutex_lock(&alias_heaps_lock);
	for (heap **pp = &alias_heaps_live; *pp; pp = &(*pp)->next_live) {
		if (*pp == h) {
			*pp = h->next_live;
			break;
		}
	}
	if (alias_tls.h == h) {
		alias_tls.h = NULL;
		alias_tls.c = NULL;
	}
	pthread_mutex_unlock(&alias_heaps_lock);
	hh->sig = SIG_DEAD; /* the handle's few bytes stay, as a tombstone */
	hh->impl = NULL;
	heap_free(h);
	return 0;
}

fg_tracker *fg_alias_tracker(fg_alias_heap *hh)
{
	heap *h = get_heap(hh);

	return h ? h->t : NULL;
}

int fg_alias_set_card_size(fg_alias_heap *hh, size_t card)
{
	heap *h = get_heap(hh);
	int rc;

	if (!h)
		return heap_err(hh);
	rc = check_card(card);
	if (!rc)
		atomic_store(&h->card, card);
	return rc;
}

size_t fg_alias_card_size(const fg_alias_heap *hh)
{
	return hh && hh->sig == SIG_LIVE ? atomic_load(&hh->impl->card) : 0;
}

/* ---- collection ---------------------------------------------------------- */

/* Report what a write through (view v, page pg) may have written: the slots
 * with home view v that overlap the page - those starting in card v of pg,
 * and the one that starts before pg and reaches into it - or the page of a
 * large object (view 0).  Returns the number of ranges reported.  Each
 * slot is reported once per collection if pages are translated in address
 * order per view: *last remembers the last slots reported. */
struct last {
	unsigned v;
	size_t head;
	uint32_t end; /* slots below it were reported */
};

static int translate(heap *h, unsigned v, size_t pg, struct last *last,
		     fg_alias_card_cb cb, void *arg)
{
	uint32_t info = atomic_load_explicit(&h->pd[pg].info,
					     memory_order_acquire);
	size_t head = pg;
	const struct class_info *ci;
	uint32_t pstart, k0, i0, i1, s;
	unsigned cl;
	int n = 0;

	if (INFO_KIND(info) == PK_TAIL) {
		head = aux_of(h, pg);
		info = atomic_load_explicit(&h->pd[head].info,
					    memory_order_acquire);
	}
	if (INFO_KIND(info) == PK_LARGE) {
		if (v)
			return 0;
		cb((void *)view_addr(h, 0, pg), PAGE, arg);
		return 1;
	}
	if (INFO_KIND(info) != PK_SMALL) /* free: no live object written */
		return 0;
	ci = &alias_classes[INFO_CLASS(info)];
	cl = INFO_CL(info);
	pstart = (uint32_t)((pg - head) << PAGE_SHIFT);
	k0 = v * 64;
	i0 = i1 = 0;
	if (!(k0 & ((1u << cl) - 1))) { /* v is a card start of this span */
		i0 = (pstart + k0 + ci->size - 1) / ci->size;
		i1 = (pstart + k0 + (1u << cl) + ci->size - 1) / ci->size;
		if (i1 > ci->nslots)
			i1 = ci->nslots;
	}
	/* The slot reaching into this page from before, unless an earlier
	 * page of this view reported it. */
	if (pstart) {
		s = (pstart - 1) / ci->size;
		if (s < ci->nslots && (s + 1) * ci->size > pstart &&
		    home_view(s * ci->size, cl) == v &&
		    !(last->v == v && last->head == head && s < last->end)) {
			if (s + 1 != i0 || i0 >= i1) {
				cb((void *)(view_addr(h, v, head) + s * ci->size),
				   ci->size, arg);
				*last = (struct last){v, head, s + 1};
				n++;
			} else {
				i0 = s; /* adjacent: one range */
			}
		}
	}
	if (i0 < i1) {
		cb((void *)(view_addr(h, v, head) + i0 * ci->size),
		   (i1 - i0) * ci->size, arg);
		*last = (struct last){v, head, i1};
		n++;
	}
	return n;
}

int fg_alias_collect(fg_alias_heap *hh, fg_alias_card_cb cb, void *arg)
{
	heap *h = get_heap(hh);
	fg_iter it;
	fg_range r;
	size_t n = 0;
	uint64_t cards = 0;
	int rc;

	if (!h)
		return heap_err(hh);
	if (!cb)
		return fg_fail(-EINVAL, "fg_alias_collect: cb is NULL");
	pthread_mutex_lock(&h->collect_lock);
	rc = fg_collect(h->t, &it);
	/* Copy the ranges first: cb may allocate, which may register views. */
	while (rc >= 0 && (rc = fg_iter_next(&it, &r)) == 1) {
		if (n == h->runs_cap) {
			size_t cap = h->runs_cap ? h->runs_cap * 2 : 256;
			fg_range *v = realloc(h->runs, cap * sizeof *v);

			if (!v) {
				rc = -ENOMEM;
				break;
			}
			h->runs = v;
			h->runs_cap = cap;
		}
		h->runs[n++] = r;
	}
	if (rc == -ENOMEM) {
		/* The dirty state is gone: report every page's ready views
		 * (objects exist only there) rather than lose a write. */
		struct last last = {NVIEWS, 0, 0};

		n = 0;
		for (uint64_t m = UINT64_MAX; m; m &= m - 1)
			for (size_t pg = 0; pg < h->npages; pg++)
				if (atomic_load(&h->ready[pg]) >>
					    __builtin_ctzll(m) & 1)
					cards += (uint64_t)translate(
						h, (unsigned)__builtin_ctzll(m),
						pg, &last, cb, arg);
		rc = 0;
	}
	if (rc < 0) {
		pthread_mutex_unlock(&h->collect_lock);
		return rc;
	}
	/* Ranges come in address order: view by view, pages ascending. */
	struct last last = {NVIEWS, 0, 0};

	for (size_t k = 0; k < n; k++) {
		uintptr_t a = (uintptr_t)h->runs[k].addr - h->base;
		uintptr_t e = a + h->runs[k].len;

		/* Page runs; round outwards should a range ever be finer. */
		for (a &= ~(uintptr_t)(PAGE - 1); a < e; a += PAGE)
			cards += (uint64_t)translate(
				h, (unsigned)(a >> h->vshift),
				(a >> PAGE_SHIFT) & (h->npages - 1), &last, cb,
				arg);
	}
	h->collections++;
	h->last_cards = cards;
	pthread_mutex_unlock(&h->collect_lock);
	return cards > INT_MAX ? INT_MAX : (int)cards;
}

int fg_alias_objects(fg_alias_heap *hh, const void *card, size_t len,
		     fg_alias_obj_cb cb, void *arg)
{
	heap *h = get_heap(hh);
	struct where w, we;
	long last_head = -1, last_slot = -1;
	int count = 0;

	if (!h)
		return heap_err(hh);
	if (!cb)
		return fg_fail(-EINVAL, "fg_alias_objects: cb is NULL");
	if (!len || !locate(h, card, &w) ||
	    !locate(h, (const char *)card + len - 1, &we) || we.v != w.v)
		return fg_fail(-EFAULT, "ALIAS: [%p, +%zu) is not within one "
					"view of this heap", card, len);
	for (size_t pg = w.pg; pg <= we.pg; pg++) {
		struct where x;
		uint32_t s = pg == w.pg ? w.off : 0;
		uint32_t e = pg == we.pg ? we.off + 1 : PAGE;

		locate(h, (void *)view_addr(h, w.v, pg), &x);
		if (INFO_KIND(x.info) == PK_LARGE) {
			if (w.v || (long)x.head == last_head)
				continue;
			last_head = (long)x.head;
			cb((void *)view_addr(h, 0, x.head),
			   (size_t)aux_of(h, x.head) * PAGE, arg);
			count++;
		} else if (INFO_KIND(x.info) == PK_SMALL) {
			const struct class_info *ci = &alias_classes[INFO_CLASS(x.info)];
			unsigned cl = INFO_CL(x.info);
			uint32_t lo = x.soff + s, hi = x.soff + e;

			/* Slots overlapping [lo, hi) of the span, handed out
			 * through view v, each once. */
			for (uint32_t i = lo / ci->size;
			     i < ci->nslots && i * ci->size < hi; i++) {
				uint32_t off = i * ci->size;

				if (home_view(off, cl) != w.v ||
				    ((long)x.head == last_head && (long)i <= last_slot) ||
				    !(atomic_load(&h->pd[x.head].live[i / 64]) &
				      (UINT64_C(1) << (i % 64))))
					continue;
				last_head = (long)x.head;
				last_slot = (long)i;
				cb(slot_addr(h, x.head, cl, off), ci->size, arg);
				count++;
			}
		}
	}
	return count;
}

/* Where [p, p + len) starts and ends, within one view of h; -EFAULT if
 * it is not. */
static int locate_range(heap *h, void *p, size_t len, struct where *w,
			struct where *we)
{
	if (!len || !locate(h, p, w) ||
	    !locate(h, (char *)p + len - 1, we) || we->v != w->v)
		return fg_fail(-EFAULT, "ALIAS: [%p, +%zu) is not within one "
					"view of this heap", p, len);
	return 0;
}

int fg_alias_mark_dirty(fg_alias_heap *hh, void *p, size_t len)
{
	heap *h = get_heap(hh);
	struct where w, we;
	int rc;

	if (!h)
		return heap_err(hh);
	rc = locate_range(h, p, len, &w, &we);
	if (rc)
		return rc;
	/* Tracker regions are (view, segment): one call per segment. */
	for (size_t pg = w.pg; pg <= we.pg;) {
		size_t b = pg / BLOCK_PAGES, end = 0;
		uint32_t sidx;
		int rc;

		pthread_mutex_lock(&h->grow_lock);
		sidx = h->seg_of[b];
		if (sidx && (h->segs[sidx - 1].registered >> w.v & 1))
			end = (size_t)(h->segs[sidx - 1].first_block +
				       h->segs[sidx - 1].nblocks) * BLOCK_PAGES;
		pthread_mutex_unlock(&h->grow_lock);
		if (!end)
			return fg_fail(-EFAULT, "ALIAS: %p holds no object",
				       (void *)view_addr(h, w.v, pg));
		if (end > we.pg + 1)
			end = we.pg + 1;
		rc = fg_mark_dirty(h->t, (void *)view_addr(h, w.v, pg),
				   (end - pg) * PAGE);
		if (rc)
			return rc;
		pg = end;
	}
	return 0;
}

int fg_alias_io_begin(fg_alias_heap *hh, void *p, size_t len)
{
	heap *h = get_heap(hh);
	struct where w, we;
	int rc;

	if (!h)
		return heap_err(hh);
	rc = locate_range(h, p, len, &w, &we);
	return rc ? rc : fg_io_begin(h->t, p, len);
}

int fg_alias_io_end(fg_alias_heap *hh, int io)
{
	heap *h = get_heap(hh);

	if (!h)
		return heap_err(hh);
	return fg_io_end(h->t, io);
}

int fg_alias_trim(fg_alias_heap *hh, size_t *released)
{
	heap *h = get_heap(hh);
	size_t total = 0;

	if (!h)
		return heap_err(hh);
	/* The calling thread's cached slots go back to their spans, and every
	 * span left empty (kept for reuse) to the pool. */
	if (alias_tls.h == h && alias_tls.uid == h->uid) {
		for (unsigned c = 0; c < NCLASS; c++) {
			struct bin *b = &alias_tls.c->bins[c];

			if (b->n)
				alias_flush(h, c, b->v, b->n);
			b->n = 0;
		}
	}
	for (unsigned c = 0; c < NCLASS; c++) {
		struct class_state *cs = &h->cls[c];
		const struct class_info *ci = &alias_classes[c];

		pthread_mutex_lock(&cs->lock);
		for (int32_t pg = cs->partial, next; pg >= 0; pg = next) {
			next = h->pd[pg].next;
			if (h->pd[pg].navail != ci->nslots)
				continue;
			alias_partial_unlink(h, cs, (size_t)pg);
			cs->nempty--;
			cs->nspans--;
			alias_set_run(h, (size_t)pg, ci->pages, INFO(PK_FREE, 0, 0));
			alias_pages_free(h, (size_t)pg, ci->pages);
		}
		pthread_mutex_unlock(&cs->lock);
	}
	pthread_mutex_lock(&h->pages_lock);
	for (unsigned k = 0; k < 2; k++) {
		struct pool *p = &h->pool[k];

		for (size_t i = 0; i < p->top;) {
			size_t j = i;

			while (j < p->top && (p->freebits[j / 64] >> (j % 64) & 1))
				j++;
			if (j > i) {
				alias_punch(h, p->first + i, j - i);
				total += (j - i) * PAGE;
				i = j;
			} else {
				i++;
			}
		}
		/* Prefaulted ahead of use: pages ready only up to the end of
		 * the chunk holding the top (populate_chunks). */
		{
			size_t top = p->first + p->top, end = p->first + p->npages;
			size_t cend = (top + CHUNK_PAGES - 1) / CHUNK_PAGES *
				      CHUNK_PAGES;

			if (cend > end)
				cend = end;
			alias_punch(h, top, cend - top);
			alias_hole(h, cend, end - cend);
		}
	}
	pthread_mutex_unlock(&h->pages_lock);
	if (released)
		*released = total;
	return 0;
}

int fg_alias_get_stats(fg_alias_heap *hh, fg_alias_stats *out)
{
	heap *h = get_heap(hh);
	fg_alias_stats s = {0};
	struct stat st;
	size_t ncaches = 0, top[2];
	uint64_t views_used = 0, pmd_views, ptes = 0;

	if (!h)
		return heap_err(hh);
	if (!out)
		return fg_fail(-EINVAL, "fg_alias_get_stats: out is NULL");
	s.backend = h->backend;
	s.card_size = atomic_load(&h->card);
	s.capacity_bytes = h->cap;
	s.views = NVIEWS;
	pthread_mutex_lock(&h->pages_lock);
	for (unsigned k = 0; k < 2; k++) {
		top[k] = h->pool[k].top;
		s.heap_pages += top[k];
		s.free_pages += h->pool[k].nfree;
	}
	pthread_mutex_unlock(&h->pages_lock);
	for (unsigned k = 0; k < 2; k++) {
		for (size_t pg = h->pool[k].first; pg < h->pool[k].first + top[k]; pg++) {
			struct pdesc *d = &h->pd[pg];
			uint32_t info = atomic_load(&d->info);
			uint64_t live = 0;

			if (INFO_KIND(info) == PK_LARGE) {
				s.live_objects++;
				s.large_pages += aux_of(h, pg);
				s.allocated_bytes += (uint64_t)aux_of(h, pg) * PAGE;
			} else if (INFO_KIND(info) == PK_SMALL) {
				const struct class_info *ci = &alias_classes[INFO_CLASS(info)];

				for (unsigned w = 0; w < MAX_SLOTS / 64; w++)
					live += (uint64_t)__builtin_popcountll(
						atomic_load(&d->live[w]));
				s.carved_pages[INFO_CL(info) - 6] += ci->pages;
				s.live_objects += live;
				s.allocated_bytes += live * ci->size;
				s.cached_bytes += (ci->nslots - live -
						   atomic_load_explicit(&d->navail_stat,
									memory_order_relaxed)) *
						  ci->size;
			}
		}
	}
	if (fstat(h->fd, &st) == 0 && st.st_dev == h->fd_dev &&
	    st.st_ino == h->fd_ino)
		s.resident_bytes = (uint64_t)st.st_blocks * 512;
	pthread_mutex_lock(&h->grow_lock);
	s.regions = h->regions;
	s.registered_bytes = h->registered_bytes;
	s.prefaulted_chunks = (h->prefaulted + CHUNK_PAGES - 1) / CHUNK_PAGES;
	for (size_t k = 0; k < h->nsegs; k++)
		views_used |= h->segs[k].registered;
	pthread_mutex_unlock(&h->grow_lock);
	for (size_t b = 0; b < h->nblocks; b++) {
		uint64_t m = 0;

		for (size_t pg = b * BLOCK_PAGES; pg < (b + 1) * BLOCK_PAGES; pg++)
			m |= atomic_load_explicit(&h->ready[pg],
						  memory_order_relaxed);
		ptes += (uint64_t)__builtin_popcountll(m);
	}
	pmd_views = (uint64_t)__builtin_popcountll(views_used) *
		    ((((size_t)1 << h->vshift) + (1u << 30) - 1) >> 30);
	if (h->caps & FG_CAPI_PTE_MARKERS)
		s.pte_bytes_estimate = (s.registered_bytes >> BLOCK_SHIFT) * PAGE;
	else
		s.pte_bytes_estimate = ptes * PAGE;
	s.pte_bytes_estimate += pmd_views * PAGE;
	pthread_mutex_lock(&alias_heaps_lock);
	for (struct tcache *c = h->caches; c; c = c->next)
		ncaches++;
	pthread_mutex_unlock(&alias_heaps_lock);
	s.metadata_bytes = table_len(top[0], sizeof *h->pd) +
			   table_len(top[1], sizeof *h->pd) +
			   table_len(h->npages / 64, 8) +
			   table_len(h->nblocks, 4) +
			   table_len(top[0], 8) + table_len(top[1], 8) +
			   ncaches * sizeof(struct tcache);
	s.collections = atomic_load(&h->collections);
	s.last_dirty_cards = atomic_load(&h->last_cards);
	s.size = out->size && out->size < sizeof s ? out->size : sizeof s;
	memcpy(out, &s, s.size);
	return 0;
}
