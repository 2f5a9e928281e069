/* oracle.c - byte snapshots, the test's write log and the comparison of a
 * collection with both.  See oracle.h for what counts as truth.  At the
 * end, the kit the test files share, which asserts with Criterion. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* config.h defines it in the autotools build */
#endif
#include "oracle.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/io_uring.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
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

/* "ADDR (KIND region BASE + OFFSET)" for a failure message, in buf. */
static const char *where(orc_region *r, size_t n, uintptr_t a, char *buf,
			 size_t len)
{
	orc_region *g = orc_find(r, n, (void *)a);

	if (g)
		snprintf(buf, len, "%#lx (%s region %p + %#lx)",
			 (unsigned long)a, g->kind, (void *)g->base,
			 (unsigned long)(a - (uintptr_t)g->base));
	else
		snprintf(buf, len, "%#lx (in no region)", (unsigned long)a);
	return buf;
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
			unsigned flags, char *form, size_t formlen)
{
	uintptr_t prev_end = 0;
	const orc_region *prev_reg = NULL;
	fg_iter it;
	fg_range rg;
	int rc, count = 0, more;

	rc = flags ? fg_collect_flags(t, &it, flags) : fg_collect(t, &it);
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
	if (m == ORC_ITER || m == ORC_PEEK) {
		/* A new card size takes effect at the collection: read the
		 * size after it, when it is the one the ranges use. */
		char tmp[512] = "";

		rc = collect_iter(t, r, n, ORC_LINE,
				  m == ORC_PEEK ? FG_COLLECT_PEEK : 0, tmp,
				  sizeof tmp);
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
	orc_exact_pages_at(r, n, card, extra, missing, NULL);
}

void orc_exact_pages_at(orc_region *r, size_t n, size_t card,
			uint64_t *extra, uint64_t *missing, uintptr_t *first)
{
	size_t ps = orc_page(), lpp = ps / ORC_LINE;

	*extra = *missing = 0;
	if (first)
		*first = 0;
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
			if (bits_any(g->reported, lo, hi) != want) {
				*(want ? missing : extra) += 1;
				if (first && !*first)
					*first = cs;
			}
		}
	}
}

/* ---- the kit (asserts with Criterion) ---------------------------------- */

void orc_fill_random(orc_rng *g, void *p, size_t len)
{
	uint8_t *b = p;

	for (size_t i = 0; i < len; i += 8) {
		uint64_t x = orc_next(g);

		memcpy(b + i, &x, len - i < 8 ? len - i : 8);
	}
}

void orc_differing(orc_rng *g, uint8_t *src, const uint8_t *dst, size_t len)
{
	for (size_t i = 0; i < len; i++)
		src[i] = (uint8_t)(dst[i] + 1 + orc_below(g, 255));
}

uint64_t orc_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void orc_spin_us(unsigned us)
{
	uint64_t end = orc_now_ns() + (uint64_t)us * 1000;

	while (orc_now_ns() < end)
		;
}

void orc_snap_words(const orc_region *r, size_t n, uint64_t **out)
{
	for (size_t i = 0; i < n; i++) {
		const uint64_t *s = (const uint64_t *)r[i].base;

		for (size_t k = 0; k < r[i].len / 8; k++)
			out[i][k] = __atomic_load_n(&s[k], __ATOMIC_RELAXED);
	}
}

const char *orc_bname(fg_backend_id id)
{
	return fg_backend_name(id);
}

bool orc_twinning(fg_backend_id id)
{
	return fg_backend_caps(id) & FG_CAP_COLLECT_TWINS;
}

bool orc_twin_hook(fg_backend_id id)
{
	return fg_backend_caps(id) & FG_CAP_HOOK_TWINS;
}

double orc_ratio(uint64_t a, uint64_t b)
{
	return b ? (double)a / (double)b : 0.0;
}

uint8_t *orc_page_of(const void *p)
{
	return (uint8_t *)((uintptr_t)p / orc_page() * orc_page());
}

fg_options orc_options(fg_backend_id id, size_t card)
{
	fg_options o = FG_OPTIONS_INIT;

	o.backend = id;
	o.card_size = card;
	o.flags = FG_OPT_NO_ENV;
	return o;
}

fg_tracker *orc_tracker(const fg_options *o)
{
	fg_tracker *t = NULL;
	int rc = fg_tracker_create(o, &t);

	cr_assert_eq(rc, 0,
		     "fg_tracker_create(backend %s, card %zu, %s, twin_cap "
		     "%zu) = %d (%s): %s",
		     fg_backend_name(o->backend), o->card_size,
		     o->precision == FG_PRECISION_DIFF ? "DIFF" : "page",
		     o->twin_cap, rc, fg_strerror(rc), fg_last_error_detail());
	cr_assert_not_null(t, "fg_tracker_create succeeded but left *out NULL");
	cr_assert_eq(fg_tracker_backend(t), o->backend,
		     "tracker forced to %s reports backend %s",
		     fg_backend_name(o->backend),
		     fg_backend_name(fg_tracker_backend(t)));
	return t;
}

unsigned orc_twin_form;

fg_tracker *orc_diff_tracker(fg_backend_id id, size_t card, size_t twin_cap,
			     unsigned policy)
{
	fg_options o = orc_options(id, card);

	o.precision = FG_PRECISION_DIFF;
	o.twin_cap = twin_cap;
	o.twin_policy = policy | orc_twin_form;
	return orc_tracker(&o);
}

void orc_reg(fg_tracker *t, orc_region *r)
{
	int rc = fg_register(t, r->base, r->len);

	cr_assert_eq(rc, 0, "fg_register(%s region %p, %zu) with %s = %d (%s): %s",
		     r->kind, (void *)r->base, r->len,
		     fg_backend_name(fg_tracker_backend(t)), rc, fg_strerror(rc),
		     fg_last_error_detail());
}

fg_stats orc_stats(fg_tracker *t)
{
	fg_stats st;
	int rc;

	memset(&st, 0, sizeof st);
	st.size = sizeof st;
	rc = fg_get_stats(t, &st);
	cr_assert_eq(rc, 0, "fg_get_stats: %d (%s)", rc, fg_strerror(rc));
	return st;
}

void orc_make_regions(orc_region r[3], orc_rng *g, size_t scale,
		      bool changed_only)
{
	struct {
		void *(*map)(size_t, void *);
		size_t len;
		const char *kind;
	} k[3] = {
		{orc_map_anon, 2 * scale, "anon"},
		{orc_map_shared_anon, scale, "shared-anon"},
		{orc_map_memfd, scale, "memfd"},
	};

	for (int i = 0; i < 3; i++) {
		void *at = orc_reserve(k[i].len, 64 * 1024,
				       orc_below(g, 16) * orc_page());
		void *p = at ? k[i].map(k[i].len, at) : NULL;

		cr_assert_not_null(p, "mapping %zu bytes of %s memory: %s",
				   k[i].len, k[i].kind, strerror(errno));
		orc_fill_random(g, p, k[i].len / 2);
		cr_assert_eq(orc_region_init(&r[i], p, k[i].len, k[i].kind), 0,
			     "out of memory for the oracle");
		r[i].changed_only = changed_only;
	}
}

void orc_free_regions(orc_region *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		munmap(r[i].base, r[i].len);
		orc_region_fini(&r[i]);
	}
}

/* ---- kernel writes ---- */

const char *const orc_kname[ORC_K_COUNT] = {"pipe-read", "file-read",
					    "pread", "recv"};

static void kwriter_init(orc_kwriter *k)
{
	char path[] = "/tmp/fg-oracle-XXXXXX";

	memset(k, 0, offsetof(orc_kwriter, src));
	cr_assert_eq(pipe2(k->pipefd, O_NONBLOCK | O_CLOEXEC), 0, "pipe2: %s",
		     strerror(errno));
	cr_assert_eq(socketpair(AF_UNIX,
				SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
				k->sock),
		     0, "socketpair: %s", strerror(errno));
	k->file = mkostemp(path, O_CLOEXEC);
	cr_assert_geq(k->file, 0, "mkstemp: %s", strerror(errno));
	unlink(path);
}

static void kwriter_fini(orc_kwriter *k)
{
	close(k->pipefd[0]);
	close(k->pipefd[1]);
	close(k->sock[0]);
	close(k->sock[1]);
	close(k->file);
}

static void drain(int fd)
{
	char buf[4096];

	while (read(fd, buf, sizeof buf) > 0)
		;
}

/* The system call m writes k->src into dst.  Returns the bytes
 * transferred; on a short transfer *err is the errno that stopped it. */
static size_t kernel_copy(orc_kwriter *k, orc_kop m, uint8_t *dst, size_t len,
			  int *err)
{
	size_t done = 0;
	ssize_t x;

	*err = 0;
	switch (m) {
	case ORC_K_PIPE:
		x = write(k->pipefd[1], k->src, len);
		cr_assert_eq(x, (ssize_t)len, "pipe write of %zu: %zd (%s)",
			     len, x, strerror(errno));
		break;
	case ORC_K_RECV:
		x = send(k->sock[0], k->src, len, 0);
		cr_assert_eq(x, (ssize_t)len, "send of %zu: %zd (%s)", len, x,
			     strerror(errno));
		break;
	default:
		x = pwrite(k->file, k->src, len, 0);
		cr_assert_eq(x, (ssize_t)len, "pwrite of %zu: %zd (%s)", len, x,
			     strerror(errno));
		cr_assert_eq(lseek(k->file, 0, SEEK_SET), 0, "lseek: %s",
			     strerror(errno));
		break;
	}
	while (done < len) {
		switch (m) {
		case ORC_K_PIPE:
			x = read(k->pipefd[0], dst + done, len - done);
			break;
		case ORC_K_READ:
			x = read(k->file, dst + done, len - done);
			break;
		case ORC_K_PREAD:
			x = pread(k->file, dst + done, len - done, (off_t)done);
			break;
		default:
			x = recv(k->sock[1], dst + done, len - done, 0);
			break;
		}
		if (x > 0) {
			done += (size_t)x;
			continue;
		}
		if (x < 0 && errno == EINTR)
			continue;
		*err = x < 0 ? errno : EIO;
		break;
	}
	if (m == ORC_K_PIPE)
		drain(k->pipefd[0]);
	if (m == ORC_K_RECV)
		drain(k->sock[1]);
	return done;
}

void orc_sched_init(orc_sched *s, fg_tracker *t, orc_region *r, size_t n,
		    const char *test)
{
	memset(s, 0, sizeof *s);
	s->t = t;
	s->id = fg_tracker_backend(t);
	s->r = r;
	s->n = n;
	s->test = test;
	s->seed = orc_seed(test);
	orc_rng_init(&s->g, s->seed);
	kwriter_init(&s->kw);
}

void orc_sched_fini(orc_sched *s)
{
	kwriter_fini(&s->kw);
}

void orc_sched_start(orc_sched *s, fg_tracker *t, orc_region r[3],
		     size_t scale, bool changed_only, const char *test)
{
	orc_sched_init(s, t, r, 3, test);
	orc_make_regions(r, &s->g, scale, changed_only);
	for (int i = 0; i < 3; i++)
		orc_reg(t, &r[i]);
	orc_snapshot(r, 3);
}

void orc_sched_end(orc_sched *s)
{
	orc_sched_fini(s);
	cr_assert_eq(fg_tracker_destroy(s->t), 0, "fg_tracker_destroy failed");
	orc_free_regions(s->r, s->n);
}

const char *orc_where(orc_sched *s)
{
	snprintf(s->ctx, sizeof s->ctx, "%s %s seed=%" PRIu64 " epoch %u",
		 s->test, fg_backend_name(s->id), s->seed, s->epoch);
	return s->ctx;
}

uint8_t *orc_anywhere(orc_sched *s)
{
	size_t total = 0;
	uint64_t x;

	for (size_t i = 0; i < s->n; i++)
		total += s->r[i].len;
	x = orc_below(&s->g, total);
	for (size_t i = 0; i < s->n; i++) {
		if (x < s->r[i].len)
			return s->r[i].base + x;
		x -= s->r[i].len;
	}
	return NULL;
}

const uint8_t *orc_differ(orc_sched *s, const uint8_t *dst, size_t len)
{
	cr_assert_leq(len, ORC_KMAX);
	orc_differing(&s->g, s->src, dst, len);
	return s->src;
}

size_t orc_kernel_write(orc_sched *s, orc_kop m, bool mark, uint8_t *dst,
			size_t len)
{
	orc_kwriter *k = &s->kw;
	fg_tracker *t = s->t;
	orc_region *r = s->r;
	size_t n = s->n, done, changed = 0;
	const char *ctx = orc_where(s);
	int err, rc;

	cr_assert_leq(len, ORC_KMAX);
	memcpy(k->pre, dst, len);
	orc_differing(&s->g, k->src, dst, len);
	if (mark) {
		rc = fg_mark_dirty(t, dst, len);
		cr_assert_eq(rc, 0, "%s: fg_mark_dirty(%p, %zu) = %d (%s): %s",
			     ctx, (void *)dst, len, rc, fg_strerror(rc),
			     fg_last_error_detail());
		k->marked++;
	}
	done = kernel_copy(k, m, dst, len, &err);
	k->by[m]++;
	cr_assert(!memcmp(dst, k->src, done),
		  "%s: %s reported %zu bytes at %p but they are not the data "
		  "sent",
		  ctx, orc_kname[m], done, (void *)dst);
	if (done)
		orc_log(r, n, dst, done);
	if (done == len)
		return done;
	cr_assert(!(fg_backend_caps(s->id) & FG_CAP_KERNEL_WRITES) && !mark &&
			  err == EFAULT,
		  "%s: %s of %zu bytes into tracked memory at %p%s "
		  "transferred only %zu (%s); only a backend without "
		  "FG_CAP_KERNEL_WRITES (mprotect), without fg_mark_dirty, "
		  "may fail, and only with EFAULT",
		  ctx, orc_kname[m], len, (void *)dst,
		  mark ? " after fg_mark_dirty" : "", done, strerror(err));
	k->efault++;
	/* The kernel may have copied part of a chunk into pages that were
	 * writable before it hit the protected one: those bytes must be our
	 * data, and the collection must report them like any write. */
	for (size_t i = done; i < len; i++) {
		if (dst[i] == k->pre[i])
			continue;
		cr_assert_eq(dst[i], k->src[i],
			     "%s: %s after EFAULT: byte %p is %#x, neither the "
			     "old %#x nor the sent %#x",
			     ctx, orc_kname[m], (void *)(dst + i), dst[i],
			     k->pre[i], k->src[i]);
		orc_log(r, n, dst + i, 1);
		changed++;
	}
	k->partial_bytes += changed;
	return done;
}

/* ---- collections ---- */

static const char *method_name(orc_method m)
{
	return m == ORC_ITER ? "iterator" : m == ORC_PEEK ? "peek" : "bitmap";
}

/* orc_collect, which must succeed (and use card size want, unless 0); its
 * form in form.  Returns the card size. */
static size_t collect_sized(fg_tracker *t, orc_region *r, size_t n,
			    orc_method m, size_t want, const char *ctx,
			    char form[512])
{
	size_t card = 0;
	int rc = orc_collect(t, r, n, m, &card, form, 512);

	cr_assert_geq(rc, 0, "%s: %s failed: %d (%s): %s", ctx,
		      m == ORC_ITER	 ? "fg_collect"
		      : m == ORC_PEEK ? "fg_collect_flags(FG_COLLECT_PEEK)"
				       : "fg_collect_bitmap",
		      rc,
		      fg_strerror(rc), fg_last_error_detail());
	if (want)
		cr_assert_eq(card, want,
			     "%s: card size %zu set before the collection, "
			     "but it used card %zu",
			     ctx, want, card);
	return card;
}

size_t orc_collect_ok(fg_tracker *t, orc_region *r, size_t n, orc_method m,
		      size_t want, const char *ctx)
{
	char form[512];
	size_t card = collect_sized(t, r, n, m, want, ctx, form);

	cr_assert(!form[0], "%s (%s): %s", ctx, method_name(m), form);
	return card;
}

size_t orc_check(fg_tracker *t, orc_region *r, size_t n, orc_method m,
		 size_t want, const char *ctx, orc_result *res)
{
	char form[512];
	size_t card = collect_sized(t, r, n, m, want, ctx, form);

	orc_compare(r, n, card, res);
	if (res->missed_lines) {
		orc_region *g = orc_find(r, n, res->first_miss);
		size_t off = (size_t)(res->first_miss - g->base);
		uint64_t was, now;

		memcpy(&was, g->snap + off, 8);
		memcpy(&now, g->base + off, 8);
		cr_assert_fail("%s card %zu (%s): MISSED %" PRIu64 " of %" PRIu64
			       " %s 64-byte lines; first at %p (%s region %p "
			       "+ %#zx): its first 8 bytes were %#" PRIx64
			       " at the epoch's start, %#" PRIx64 " now",
			       ctx, card, method_name(m), res->missed_lines,
			       res->truth_lines,
			       g->changed_only ? "changed" : "written or changed",
			       (void *)res->first_miss, g->kind,
			       (void *)g->base, off, was, now);
	}
	/* The form of the result after soundness: a miss says more. */
	cr_assert(!form[0], "%s (%s): %s", ctx, method_name(m), form);
	cr_assert_eq(res->unlogged_lines, 0,
		     "%s: %" PRIu64 " lines changed that the test never "
		     "wrote, first at %p: something else modified tracked "
		     "memory",
		     ctx, res->unlogged_lines, (void *)res->first_unlogged);
	return card;
}

void orc_quiet_epoch(fg_tracker *t, orc_region *r, size_t n, orc_rng *g,
		     size_t want, int exact_lines, const char *ctx,
		     orc_result *res, size_t *card)
{
	fg_backend_id id = fg_tracker_backend(t);
	unsigned caps = fg_backend_caps(id);
	char form[512], drain[256], at[128];
	int k, rc = 0, peeked = -1;
	fg_stats s0, s1;

	/* Drain: collections until one reports nothing (no eager twin left,
	 * every page protected).  Nothing writes now, so that is the second
	 * one unless a collection leaves work for the next. */
	for (k = 0; k < 20; k++) {
		rc = orc_collect(t, r, n, ORC_ITER, card, form, sizeof form);
		cr_assert_geq(rc, 0, "%s: fg_collect: %d (%s)", ctx, rc,
			      fg_strerror(rc));
		if (rc == 0 || !(caps & FG_CAP_TRACKS))
			break;
		usleep(1000);
	}
	/* What the tracker holds before the known writes, read without
	 * changing it: nothing, after a drain that ended empty. */
	if ((caps & FG_CAP_TRACKS) && (caps & FG_CAP_PEEK))
		peeked = orc_collect(t, r, n, ORC_PEEK, card, form,
				     sizeof form);
	snprintf(drain, sizeof drain,
		 "drain: %d collection(s), the last reported %d range(s); a "
		 "peek after it reported %d",
		 k + (k < 20), rc, peeked);
	if (peeked > 0) {
		uintptr_t first = 0;

		for (size_t i = 0; i < n && !first; i++)
			for (size_t l = 0; l < r[i].nlines && !first; l++)
				if (bit(r[i].reported, l))
					first = (uintptr_t)r[i].base +
						l * ORC_LINE;
		cr_assert_fail("%s: nothing was written after the drain, yet "
			       "the tracker still holds ranges (%s), the "
			       "first at %s",
			       ctx, drain, where(r, n, first, at, sizeof at));
	}
	s0 = orc_stats(t);
	orc_snapshot(r, n);
	for (int k = 0; k < 25; k++) {
		orc_region *x = &r[orc_below(g, n)];
		uint64_t *p = (uint64_t *)x->base + orc_below(g, x->len / 8);

		*p = ~*p;
		orc_log(r, n, p, 8);
	}
	*card = orc_collect_ok(t, r, n, ORC_ITER, want, ctx);
	s1 = orc_stats(t);
	orc_compare(r, n, *card, res);
	cr_assert_eq(res->missed_lines, 0,
		     "%s: after the writers stopped, %" PRIu64 " of %" PRIu64
		     " changed lines were missed, first at %p",
		     ctx, res->missed_lines, res->truth_lines,
		     (void *)res->first_miss);
	cr_assert_eq(res->unlogged_lines, 0,
		     "%s: %" PRIu64 " lines changed after the writers were "
		     "joined, first at %p",
		     ctx, res->unlogged_lines, (void *)res->first_unlogged);
	if (!(fg_backend_caps(id) & FG_CAP_TRACKS)) {
		for (size_t i = 0; i < n; i++)
			cr_assert(orc_reported_all(r, n, r[i].base, r[i].len),
				  "%s: a backend that does not track must "
				  "report everything",
				  ctx);
	} else if (exact_lines == ORC_QUIET_SOUND_ONLY) {
		/* Some pages compared, some whole: no precision to check. */
	} else if (exact_lines) {
		cr_assert_eq(res->reported_lines, res->truth_lines,
			     "%s: after a quiet epoch with 25 known 8-byte "
			     "changes, each on a page that faulted (so had a "
			     "twin), %" PRIu64 " lines were reported for "
			     "%" PRIu64 " changed",
			     ctx, res->reported_lines, res->truth_lines);
	} else {
		uint64_t extra, missing;
		uintptr_t first;

		orc_exact_pages_at(r, n, *card, &extra, &missing, &first);
		cr_assert(!extra && !missing,
			  "%s card %zu: after a quiet epoch with 25 known "
			  "changes, %" PRIu64 " cards reported beyond the "
			  "written pages and %" PRIu64 " of them missing; "
			  "first at %s; %s; the "
			  "quiet collection: pages diffed %" PRIu64
			  ", whole %" PRIu64 ", twins eager %" PRIu64
			  " invalid %" PRIu64,
			  ctx, *card, extra, missing,
			  where(r, n, first, at, sizeof at), drain,
			  s1.pages_diffed - s0.pages_diffed,
			  s1.pages_whole - s0.pages_whole,
			  s1.twins_eager - s0.twins_eager,
			  s1.twins_invalid - s0.twins_invalid);
	}
}

/* ---- fork ---- */

enum {
	CHILD_OK = 0,
	CHILD_COLLECT = 10,
	CHILD_ITER,
	CHILD_DESTROY,
	CHILD_SYNC,
};

static const char *child_why(int code)
{
	switch (code) {
	case CHILD_COLLECT:
		return "fg_collect returned neither >= 0 nor -FG_EFORKED";
	case CHILD_ITER:
		return "fg_iter_next failed after a successful collection";
	case CHILD_DESTROY:
		return "fg_tracker_destroy failed";
	case CHILD_SYNC:
		return "pipe synchronisation failed";
	default:
		return "unexpected exit code";
	}
}

static void child_writes(orc_region *anon, uint64_t seed)
{
	orc_rng g;

	orc_rng_init(&g, seed);
	for (int k = 0; k < 64; k++) {
		uint8_t *p = anon->base + orc_below(&g, anon->len - 64);

		memset(p, 0xA5 ^ (int)k, 64);
	}
}

static void child_main(fg_tracker *t, orc_region *anon, uint64_t seed,
		       int go)
{
	fg_iter it;
	fg_range rg;
	int rc, more;
	char c;

	if (read(go, &c, 1) != 1)
		_exit(CHILD_SYNC);
	child_writes(anon, seed);
	rc = fg_collect(t, &it);
	if (rc < 0 && rc != -FG_EFORKED)
		_exit(CHILD_COLLECT);
	if (rc >= 0) {
		while ((more = fg_iter_next(&it, &rg)) == 1)
			;
		if (more < 0)
			_exit(CHILD_ITER);
	}
	child_writes(anon, seed + 1);
	if (fg_tracker_destroy(t) != 0)
		_exit(CHILD_DESTROY);
	/* Untracked now: must not fault fatally. */
	child_writes(anon, seed + 2);
	_exit(CHILD_OK);
}

pid_t orc_fork_child(fg_tracker *t, orc_region *anon, uint64_t seed, int *go)
{
	int p[2];
	pid_t pid;

	cr_assert_eq(pipe(p), 0, "pipe: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		close(p[1]);
		child_main(t, anon, seed, p[0]);
	}
	close(p[0]);
	*go = p[1];
	return pid;
}

void orc_release_child(int go)
{
	char c = 1;

	cr_assert_eq(write(go, &c, 1), 1, "write: %s", strerror(errno));
	close(go);
}

void orc_wait_child(pid_t pid, const char *ctx)
{
	int status = 0;

	cr_assert_eq(waitpid(pid, &status, 0), pid, "waitpid: %s",
		     strerror(errno));
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "%s: child %s (status %#x): %s", ctx,
		  WIFSIGNALED(status) ? "killed by a signal" : "exited non-zero",
		  status,
		  WIFSIGNALED(status) ? strsignal(WTERMSIG(status))
				      : child_why(WEXITSTATUS(status)));
}

/* ---- io_uring -------------------------------------------------------- */

int orc_uring_open(struct orc_uring *u, char *why, size_t whylen)
{
	struct io_uring_params p;
	size_t sqlen, cqlen;
	uint8_t *sq, *cq;

	memset(&p, 0, sizeof p);
	u->fd = (int)syscall(__NR_io_uring_setup, 4, &p);
	if (u->fd < 0) {
		snprintf(why, whylen, "io_uring_setup: %s", strerror(errno));
		return -1;
	}
	sqlen = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	cqlen = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	if (!(p.features & IORING_FEAT_SINGLE_MMAP)) {
		snprintf(why, whylen, "io_uring without IORING_FEAT_SINGLE_MMAP");
		return -1;
	}
	sq = mmap(NULL, sqlen > cqlen ? sqlen : cqlen, PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_POPULATE, u->fd, IORING_OFF_SQ_RING);
	cr_assert(sq != MAP_FAILED, "io_uring ring mmap: %s", strerror(errno));
	cq = sq;
	u->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe),
		       PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd,
		       IORING_OFF_SQES);
	cr_assert(u->sqes != MAP_FAILED, "io_uring sqe mmap: %s",
		  strerror(errno));
	u->sq_tail = (_Atomic unsigned *)(sq + p.sq_off.tail);
	u->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
	u->sq_array = (unsigned *)(sq + p.sq_off.array);
	u->cq_head = (_Atomic unsigned *)(cq + p.cq_off.head);
	u->cq_tail = (_Atomic unsigned *)(cq + p.cq_off.tail);
	u->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
	u->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
	return 0;
}

int orc_uring_read_fixed(struct orc_uring *u, int file, unsigned buf,
			 void *dst, size_t len, off_t off)
{
	unsigned tail = atomic_load(u->sq_tail), idx = tail & *u->sq_mask;
	struct io_uring_sqe *sqe = &u->sqes[idx];
	unsigned head;
	int res;

	memset(sqe, 0, sizeof *sqe);
	sqe->opcode = IORING_OP_READ_FIXED;
	sqe->fd = file;
	sqe->addr = (uintptr_t)dst;
	sqe->len = (unsigned)len;
	sqe->off = (uint64_t)off;
	sqe->buf_index = (uint16_t)buf;
	u->sq_array[idx] = idx;
	atomic_store_explicit(u->sq_tail, tail + 1, memory_order_release);
	cr_assert_eq(syscall(__NR_io_uring_enter, u->fd, 1, 1,
			     IORING_ENTER_GETEVENTS, NULL, 0),
		     1, "io_uring_enter: %s", strerror(errno));
	head = atomic_load(u->cq_head);
	cr_assert_neq(head, atomic_load_explicit(u->cq_tail,
						 memory_order_acquire),
		      "io_uring: no completion after GETEVENTS");
	res = u->cqes[head & *u->cq_mask].res;
	atomic_store_explicit(u->cq_head, head + 1, memory_order_release);
	return res;
}

int orc_uring_register(struct orc_uring *u, const struct iovec *iov,
		       unsigned n)
{
	return syscall(__NR_io_uring_register, u->fd, IORING_REGISTER_BUFFERS,
		       iov, n)
		       ? -errno
		       : 0;
}
