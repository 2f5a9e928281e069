/* alias_class.c - ALIAS: size classes, thread caches, and objects
 * (fg_alias_malloc, free, realloc, ...).
 * The design and its invariants: alias_internal.h. */
#include "alias_internal.h"

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
