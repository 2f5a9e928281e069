/* oracle.c - byte snapshots, the test's write log and the comparison of a
 * collection with both.  See oracle.h for what counts as truth. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* config.h defines it in the autotools build */
#endif
#include "oracle.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

uint64_t orc_seed(const char *test)
{
	const char *env = getenv("FG_SEED");
	uint64_t seed;

	if (env && *env) {
		seed = strtoull(env, NULL, 0);
	} else {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		seed = (uint64_t)ts.tv_sec * 1000000007u ^
		       (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 40;
	}
	fprintf(stderr, "%s: seed=%" PRIu64 " (replay: FG_SEED=%" PRIu64 ")\n",
		test, seed, seed);
	return seed;
}

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15u);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

void orc_rng_init(orc_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t orc_next(orc_rng *r)
{
	uint64_t *s = r->s;
	uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return res;
}

uint64_t orc_below(orc_rng *r, uint64_t n)
{
	/* Rejection keeps it uniform; n is small, so the loop almost never
	 * repeats. */
	uint64_t lim = UINT64_MAX - UINT64_MAX % n, x;

	do
		x = orc_next(r);
	while (x >= lim);
	return x % n;
}

size_t orc_page(void)
{
	static size_t ps;

	if (!ps)
		ps = (size_t)sysconf(_SC_PAGESIZE);
	return ps;
}

static void *map_or_null(size_t len, int flags, int fd, void *at)
{
	void *p = mmap(at, len, PROT_READ | PROT_WRITE,
		       flags | (at ? MAP_FIXED : 0), fd, 0);

	return p == MAP_FAILED ? NULL : p;
}

void *orc_map_anon(size_t len, void *at)
{
	return map_or_null(len, MAP_PRIVATE | MAP_ANONYMOUS, -1, at);
}

void *orc_map_shared_anon(size_t len, void *at)
{
	return map_or_null(len, MAP_SHARED | MAP_ANONYMOUS, -1, at);
}

void *orc_map_memfd(size_t len, void *at)
{
	int fd = memfd_create("fg-oracle", MFD_CLOEXEC);
	void *p;

	if (fd < 0)
		return NULL;
	if (ftruncate(fd, (off_t)len)) {
		close(fd);
		return NULL;
	}
	p = map_or_null(len, MAP_SHARED, fd, at);
	close(fd);
	return p;
}

void *orc_reserve(size_t len, size_t align, size_t off)
{
	size_t span = len + align + off;
	uint8_t *p = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
			  -1, 0), *a;

	if (p == MAP_FAILED)
		return NULL;
	a = (uint8_t *)(((uintptr_t)p + align - 1) / align * align) + off;
	if (a > p)
		munmap(p, (size_t)(a - p));
	if (a + len < p + span)
		munmap(a + len, (size_t)(p + span - (a + len)));
	return a;
}

/* Line bitmaps. */
static void bits_set(uint64_t *w, size_t lo, size_t hi)
{
	for (size_t i = lo; i < hi; i++)
		w[i / 64] |= UINT64_C(1) << (i % 64);
}

static bool bit(const uint64_t *w, size_t i)
{
	return (w[i / 64] >> (i % 64)) & 1;
}

static bool bits_any(const uint64_t *w, size_t lo, size_t hi)
{
	for (size_t i = lo; i < hi; i++) {
		if (i % 64 == 0 && i + 64 <= hi) {
			if (w[i / 64])
				return true;
			i += 63;
			continue;
		}
		if (bit(w, i))
			return true;
	}
	return false;
}

static bool bits_all(const uint64_t *w, size_t lo, size_t hi)
{
	for (size_t i = lo; i < hi; i++)
		if (!bit(w, i))
			return false;
	return true;
}

static size_t words(size_t nbits)
{
	return (nbits + 63) / 64;
}

int orc_region_init(orc_region *r, void *base, size_t len, const char *kind)
{
	memset(r, 0, sizeof *r);
	r->base = base;
	r->len = len;
	r->kind = kind;
	r->nlines = len / ORC_LINE;
	r->snap = malloc(len);
	r->written = calloc(words(r->nlines), 8);
	r->changed = calloc(words(r->nlines), 8);
	r->reported = calloc(words(r->nlines), 8);
	if (!r->snap || !r->written || !r->changed || !r->reported) {
		orc_region_fini(r);
		return -ENOMEM;
	}
	return 0;
}

void orc_region_fini(orc_region *r)
{
	free(r->snap);
	free(r->written);
	free(r->changed);
	free(r->reported);
	r->snap = NULL;
	r->written = r->changed = r->reported = NULL;
}

void orc_snapshot(orc_region *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		memcpy(r[i].snap, r[i].base, r[i].len);
		memset(r[i].written, 0, words(r[i].nlines) * 8);
	}
}

orc_region *orc_find(orc_region *r, size_t n, const void *addr)
{
	const uint8_t *a = addr;

	for (size_t i = 0; i < n; i++)
		if (a >= r[i].base && a < r[i].base + r[i].len)
			return &r[i];
	return NULL;
}

/* Lines of r overlapping [a, b), clipped to r. */
static void line_span(const orc_region *r, uintptr_t a, uintptr_t b,
		      size_t *lo, size_t *hi)
{
	uintptr_t base = (uintptr_t)r->base, end = base + r->len;

	if (a < base)
		a = base;
	if (b > end)
		b = end;
	if (b <= a) {
		*lo = *hi = 0;
		return;
	}
	*lo = (a - base) / ORC_LINE;
	*hi = (b - base + ORC_LINE - 1) / ORC_LINE;
}

void orc_log(orc_region *r, size_t n, const void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr;

	for (size_t i = 0; i < n; i++) {
		size_t lo, hi;

		line_span(&r[i], a, a + len, &lo, &hi);
		bits_set(r[i].written, lo, hi);
	}
}

static void form_error(char *form, size_t formlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void form_error(char *form, size_t formlen, const char *fmt, ...)
{
	va_list ap;

	if (!formlen || form[0])
		return; /* keep the first violation */
	va_start(ap, fmt);
	vsnprintf(form, formlen, fmt, ap);
	va_end(ap);
}

static int collect_iter(fg_tracker *t, orc_region *r, size_t n, size_t card,
			char *form, size_t formlen)
{
	uintptr_t prev_end = 0;
	const orc_region *prev_reg = NULL;
	fg_iter it;
	fg_range rg;
	int rc, count = 0, more;

	rc = fg_collect(t, &it);
	if (rc < 0)
		return rc;
	while ((more = fg_iter_next(&it, &rg)) == 1) {
		uintptr_t a = (uintptr_t)rg.addr, e = a + rg.len;
		orc_region *reg = orc_find(r, n, rg.addr);
		size_t lo, hi;

		count++;
		if (!rg.len) {
			form_error(form, formlen, "range %d at %p is empty",
				   count, rg.addr);
			continue;
		}
		if (!reg) {
			form_error(form, formlen,
				   "range %d [%p, +%zu) starts outside every "
				   "registered region",
				   count, rg.addr, rg.len);
			continue;
		}
		if (e > (uintptr_t)reg->base + reg->len)
			form_error(form, formlen,
				   "range %d [%p, +%zu) runs past the end of its "
				   "region [%p, +%zu): not clipped",
				   count, rg.addr, rg.len, (void *)reg->base,
				   reg->len);
		if ((a % card && a != (uintptr_t)reg->base) ||
		    (e % card && e != (uintptr_t)reg->base + reg->len))
			form_error(form, formlen,
				   "range %d [%p, +%zu) is not aligned to the "
				   "card size %zu",
				   count, rg.addr, rg.len, card);
		if (a < prev_end)
			form_error(form, formlen,
				   "range %d [%p, +%zu) is out of address order "
				   "or overlaps the previous one (ended at %#lx)",
				   count, rg.addr, rg.len,
				   (unsigned long)prev_end);
		else if (a == prev_end && reg == prev_reg)
			form_error(form, formlen,
				   "range %d [%p, +%zu) is adjacent to the "
				   "previous range of its region: not merged",
				   count, rg.addr, rg.len);
		line_span(reg, a, e, &lo, &hi);
		bits_set(reg->reported, lo, hi);
		prev_end = e;
		prev_reg = reg;
	}
	if (more < 0)
		form_error(form, formlen,
			   "fg_iter_next failed after %d ranges: %d (%s)",
			   count, more, fg_strerror(more));
	else if (fg_iter_next(&it, &rg) != 0)
		form_error(form, formlen,
			   "fg_iter_next at the end did not keep returning 0");
	if (count != rc)
		form_error(form, formlen,
			   "fg_collect returned %d ranges, the iterator gave "
			   "%d",
			   rc, count);
	return rc;
}

static int collect_bitmap(fg_tracker *t, orc_region *r, size_t n,
			  size_t card, char *form, size_t formlen)
{
	int total = 0;

	for (size_t i = 0; i < n; i++) {
		uintptr_t base = (uintptr_t)r[i].base, end = base + r[i].len;
		uintptr_t first = base / card * card;
		size_t want = (end - first + card - 1) / card;
		size_t have = fg_bitmap_bits(t, r[i].base, r[i].len);
		/* A tail past the region, deliberately not word-aligned. */
		size_t nbits = want + 70;
		uint64_t *bits = malloc(words(nbits) * 8);
		size_t pop = 0;
		int rc;

		if (!bits)
			return -ENOMEM;
		if (have != want)
			form_error(form, formlen,
				   "fg_bitmap_bits(%s region %p, %zu) = %zu, "
				   "expected %zu for card %zu",
				   r[i].kind, (void *)r[i].base, r[i].len,
				   have, want, card);
		memset(bits, 0xff, words(nbits) * 8);
		rc = fg_collect_bitmap(t, r[i].base, r[i].len, bits, nbits);
		if (rc < 0) {
			free(bits);
			return rc;
		}
		for (size_t b = 0; b < want; b++) {
			size_t lo, hi;

			if (!bit(bits, b))
				continue;
			pop++;
			line_span(&r[i], first + b * card,
				  first + (b + 1) * card, &lo, &hi);
			bits_set(r[i].reported, lo, hi);
		}
		for (size_t b = want; b < nbits; b++)
			if (bit(bits, b)) {
				form_error(form, formlen,
					   "fg_collect_bitmap left bit %zu set "
					   "past the region's %zu cards",
					   b, want);
				break;
			}
		if ((size_t)rc != pop)
			form_error(form, formlen,
				   "fg_collect_bitmap returned %d for %zu set "
				   "bits",
				   rc, pop);
		total += rc;
		free(bits);
	}
	return total;
}

int orc_collect(fg_tracker *t, orc_region *r, size_t n, orc_method m,
		size_t *card, char *form, size_t formlen)
{
	size_t c;
	int rc;

	if (formlen)
		form[0] = 0;
	for (size_t i = 0; i < n; i++)
		memset(r[i].reported, 0, words(r[i].nlines) * 8);
	if (m == ORC_ITER) {
		/* A new card size takes effect at the collection: read the
		 * size after it, when it is the one the ranges use. */
		char tmp[512] = "";

		rc = collect_iter(t, r, n, ORC_LINE, tmp, sizeof tmp);
		if (rc < 0)
			return rc;
		c = fg_card_size(t);
		/* Recheck the alignment at the real card size. */
		for (size_t i = 0; i < n && !form[0]; i++) {
			uintptr_t base = (uintptr_t)r[i].base;

			for (size_t l = 1; l < r[i].nlines; l++) {
				bool on = bit(r[i].reported, l);
				bool before = bit(r[i].reported, l - 1);
				uintptr_t a = base + l * ORC_LINE;

				if (on != before && a % c)
					form_error(form, formlen,
						   "a range edge at %#lx (%s "
						   "region) is not aligned to "
						   "the card size %zu",
						   (unsigned long)a, r[i].kind,
						   c);
			}
		}
		if (tmp[0])
			form_error(form, formlen, "%s", tmp);
	} else {
		c = fg_card_size(t);
		rc = collect_bitmap(t, r, n, c, form, formlen);
	}
	if (rc >= 0 && card)
		*card = c;
	return rc;
}

void orc_compare(orc_region *r, size_t n, size_t card, orc_result *res)
{
	size_t ps = orc_page();

	memset(res, 0, sizeof *res);
	for (size_t i = 0; i < n; i++) {
		orc_region *g = &r[i];
		size_t lpp = ps / ORC_LINE, npages = g->len / ps;
		uintptr_t base = (uintptr_t)g->base, end = base + g->len;

		memset(g->changed, 0, words(g->nlines) * 8);
		for (size_t p = 0; p < npages; p++) {
			size_t off = p * ps;

			if (!memcmp(g->base + off, g->snap + off, ps))
				continue;
			res->pages_changed++;
			for (size_t l = p * lpp; l < (p + 1) * lpp; l++) {
				const uint8_t *x = g->base + l * ORC_LINE;
				const uint8_t *y = g->snap + l * ORC_LINE;

				if (!memcmp(x, y, ORC_LINE))
					continue;
				bits_set(g->changed, l, l + 1);
				for (size_t b = 0; b < ORC_LINE; b++)
					res->changed_bytes += x[b] != y[b];
			}
		}
		for (size_t l = 0; l < g->nlines; l++) {
			bool w = bit(g->written, l), c = bit(g->changed, l);

			res->reported_lines += bit(g->reported, l);
			if (c && !w && !res->unlogged_lines++)
				res->first_unlogged = g->base + l * ORC_LINE;
			if (g->changed_only)
				w = false; /* the truth is c alone */
			if (!w && !c)
				continue;
			res->truth_lines++;
			if (!bit(g->reported, l) && !res->missed_lines++)
				res->first_miss = g->base + l * ORC_LINE;
		}
		for (size_t p = 0; p < npages; p++) {
			bool rep = bits_any(g->reported, p * lpp, (p + 1) * lpp);
			bool tru = (!g->changed_only &&
				    bits_any(g->written, p * lpp,
					     (p + 1) * lpp)) ||
				   bits_any(g->changed, p * lpp, (p + 1) * lpp);

			res->pages_reported += rep;
			res->pages_truth += tru;
			res->pages_fp += rep && !tru;
		}
		for (uintptr_t cs = base / card * card; cs < end; cs += card) {
			size_t lo, hi;
			bool rep, tru;

			line_span(g, cs, cs + card, &lo, &hi);
			rep = bits_any(g->reported, lo, hi);
			tru = (!g->changed_only &&
			       bits_any(g->written, lo, hi)) ||
			      bits_any(g->changed, lo, hi);
			res->cards_reported += rep;
			res->cards_truth += tru;
			res->cards_fp += rep && !tru;
			res->cards_missed += tru && !rep;
		}
	}
}

bool orc_reported(orc_region *r, size_t n, const void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr;

	for (size_t i = 0; i < n; i++) {
		size_t lo, hi;

		line_span(&r[i], a, a + len, &lo, &hi);
		if (bits_any(r[i].reported, lo, hi))
			return true;
	}
	return false;
}

bool orc_reported_all(orc_region *r, size_t n, const void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr, b = a + len;

	/* Every byte must lie in some region and be reported. */
	while (a < b) {
		orc_region *g = orc_find(r, n, (void *)a);
		uintptr_t gend;
		size_t lo, hi;

		if (!g)
			return false;
		gend = (uintptr_t)g->base + g->len;
		line_span(g, a, b < gend ? b : gend, &lo, &hi);
		if (!bits_all(g->reported, lo, hi))
			return false;
		a = gend;
	}
	return true;
}

void orc_exact_pages(orc_region *r, size_t n, size_t card, uint64_t *extra,
		     uint64_t *missing)
{
	size_t ps = orc_page(), lpp = ps / ORC_LINE;

	*extra = *missing = 0;
	for (size_t i = 0; i < n; i++) {
		orc_region *g = &r[i];
		uintptr_t base = (uintptr_t)g->base, end = base + g->len;

		for (uintptr_t cs = base / card * card; cs < end; cs += card) {
			uintptr_t ce = cs + card;
			/* Pages overlapping this card. */
			uintptr_t ps0 = cs / ps * ps, pe = (ce + ps - 1) / ps * ps;
			bool want = false;
			size_t lo, hi;

			for (uintptr_t p = ps0; p < pe && !want; p += ps) {
				line_span(g, p, p + ps, &lo, &hi);
				if (hi > lo && hi - lo <= lpp)
					want = (!g->changed_only &&
						bits_any(g->written, lo,
							 hi)) ||
					       bits_any(g->changed, lo, hi);
			}
			line_span(g, cs, ce, &lo, &hi);
			if (bits_any(g->reported, lo, hi) != want)
				*(want ? missing : extra) += 1;
		}
	}
}
