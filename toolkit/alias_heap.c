/* alias_heap.c - ALIAS: heaps (create, destroy, card size) and collection
 * (collect, objects, mark_dirty, io, trim, stats).
 * The design and its invariants: alias_internal.h. */
#include "alias_internal.h"

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
