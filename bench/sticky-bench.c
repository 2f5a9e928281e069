/* sticky_bench.c - FG_TWIN_HOT against FG_TWIN_STICKY on sparse stores.
 *
 * usage: sticky-bench [MiB [epochs [stores [reps]]]]   (64 10 5000 3)
 *
 * One region of MiB (populated first, a heap in use), 64-byte cards, on
 * uffd-async (FG_BACKEND overrides), DIFF precision.  Each epoch: `stores`
 * 8-byte increments at random words, then one fg_collect.  Variants, run
 * interleaved rep by rep with the same stores: HOT; STICKY with the
 * default cap (half the region); STICKY with a cap of the whole region;
 * each with and without a first epoch that writes every page (a heap
 * filled by allocation: every page then has a sticky twin).
 * Per variant, medians over reps of: fg_collect wall time per epoch and
 * per dirty page, the share of it spent comparing (stats.diff_ns),
 * reported bytes over changed bytes (64-byte lines whose bytes changed;
 * an increment never restores a word, so stored == changed), twins held,
 * and resident memory grown since registration (twins, and slots given up
 * but not trimmed yet: fg_diff_trim runs every 64 collections).
 * Every collection is checked: a changed line outside the ranges exits 1.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fg.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define LINE 64

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rng(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15u);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

struct variant {
	const char *name;
	unsigned policy;
	int cap_div; /* twin_cap = len / cap_div; 0: default */
};

struct res {
	double ms_epoch, us_page, diff_share, ratio, twin_mib, rss_mib;
	uint64_t dirty_pages, whole, diffed;
};

/* Resident anonymous memory of the process, bytes. */
static uint64_t rss_anon(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	uint64_t kb = 0;

	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "RssAnon: %" SCNu64, &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb * 1024;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "sticky_bench: %s: %s (%s)\n", what, fg_strerror(rc),
		fg_last_error_detail());
	exit(2);
}

static void run(const struct variant *v, bool fill, size_t len,
		unsigned epochs, unsigned stores, uint64_t seed,
		struct res *out)
{
	const char *be = getenv("FG_BACKEND");
	fg_options o = FG_OPTIONS_INIT;
	size_t nlines = len / LINE, ps = 4096;
	uint64_t *truth = calloc(nlines / 64 + 1, 8);
	uint64_t *rep = calloc(nlines / 64 + 1, 8);
	uint64_t ns = 0, pages = 0, repb = 0, truthb = 0, s = seed, rss0;
	fg_tracker *t;
	fg_stats st0, st = {.size = sizeof st};
	uint8_t *a;
	int rc;

	o.flags = FG_OPT_NO_ENV;
	o.backend = FG_BACKEND_UFFD_ASYNC;
	if (be && *be && (rc = fg_backend_from_name(be, &o.backend)))
		die("FG_BACKEND", rc);
	o.card_size = 64;
	o.precision = FG_PRECISION_DIFF;
	o.twin_policy = v->policy;
	o.twin_cap = v->cap_div ? len / (size_t)v->cap_div : 0;
	if ((rc = fg_tracker_create(&o, &t)))
		die("fg_tracker_create", rc);
	a = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED || !truth || !rep) {
		perror("sticky_bench: mmap");
		exit(2);
	}
	memset(a, 0x5a, len);
	if ((rc = fg_register(t, a, len)))
		die("fg_register", rc);
	rss0 = rss_anon();
	if (fill) {
		for (size_t off = 0; off < len; off += ps)
			a[off] ^= 1;
		if ((rc = fg_collect(t, NULL)) < 0)
			die("fg_collect", rc);
	}
	st0 = (fg_stats){.size = sizeof st0};
	fg_get_stats(t, &st0);
	for (unsigned e = 0; e < epochs; e++) {
		fg_iter it;
		fg_range r;
		uint64_t t0;

		memset(truth, 0, (nlines / 64 + 1) * 8);
		memset(rep, 0, (nlines / 64 + 1) * 8);
		for (unsigned k = 0; k < stores; k++) {
			size_t w = rng(&s) % (len / 8);

			((uint64_t *)a)[w] += 1 + rng(&s) % 1000;
			truth[w * 8 / LINE / 64] |= UINT64_C(1)
						   << (w * 8 / LINE % 64);
		}
		t0 = now_ns();
		rc = fg_collect(t, &it);
		ns += now_ns() - t0;
		if (rc < 0)
			die("fg_collect", rc);
		while (fg_iter_next(&it, &r) == 1) {
			size_t lo = (size_t)((uint8_t *)r.addr - a) / LINE;

			for (size_t l = lo; l < lo + r.len / LINE; l++)
				rep[l / 64] |= UINT64_C(1) << (l % 64);
			repb += r.len;
		}
		for (size_t i = 0; i <= nlines / 64; i++) {
			if (truth[i] & ~rep[i]) {
				fprintf(stderr, "sticky_bench: %s: MISSED a "
						"changed line near %p\n",
					v->name, (void *)(a + i * 64 * LINE));
				exit(1);
			}
			truthb += (uint64_t)__builtin_popcountll(truth[i]) * LINE;
		}
		st = (fg_stats){.size = sizeof st};
		fg_get_stats(t, &st);
		pages += st.last_dirty_pages;
	}
	out->ms_epoch = (double)ns / epochs / 1e6;
	out->us_page = (double)ns / 1e3 / (double)(pages ? pages : 1);
	out->diff_share = (double)(st.diff_ns - st0.diff_ns) / (double)ns;
	out->ratio = (double)repb / (double)truthb;
	out->twin_mib = (double)st.twin_bytes / 1048576.0;
	out->dirty_pages = pages;
	out->whole = st.pages_whole - st0.pages_whole;
	out->diffed = st.pages_diffed - st0.pages_diffed;
	/* Twin memory resident now (and the tracker's small arrays). */
	out->rss_mib = (double)(rss_anon() - rss0) / 1048576.0;
	fg_tracker_destroy(t);
	munmap(a, len);
	free(truth);
	free(rep);
}

static int cmp(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return (a > b) - (a < b);
}

#define MAXREPS 32

int main(int argc, char **argv)
{
	static const struct variant v[] = {
		{"HOT", FG_TWIN_HOT, 0},
		{"STICKY cap/2", FG_TWIN_STICKY, 0},
		{"STICKY cap/1", FG_TWIN_STICKY, 1},
	};
	enum { NV = sizeof v / sizeof v[0] };
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 64;
	unsigned epochs = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 0) : 10;
	unsigned stores = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 0) : 5000;
	unsigned reps = argc > 4 ? (unsigned)strtoul(argv[4], NULL, 0) : 3;
	static struct res r[2][NV][MAXREPS];

	if (reps > MAXREPS)
		reps = MAXREPS;
	for (unsigned k = 0; k < reps; k++)
		for (int fill = 1; fill >= 0; fill--)
			for (int i = 0; i < NV; i++)
				run(&v[i], fill, mib << 20, epochs, stores,
				    0x5eed + k, &r[fill][i][k]);
	printf("%zu MiB, %u epochs x %u random 8-byte stores, card 64, "
	       "backend %s, median of %u\n",
	       mib, epochs, stores,
	       getenv("FG_BACKEND") ? getenv("FG_BACKEND") : "uffd-async",
	       reps);
	printf("%-13s %-13s %9s %11s %7s %9s %7s %7s %11s %8s %7s\n", "heap",
	       "policy", "ms/epoch", "us/dirtypg", "diff%", "dirtypgs",
	       "diffed", "whole", "reported/x", "twinMiB", "rssMiB");
	for (int fill = 1; fill >= 0; fill--) {
		for (int i = 0; i < NV; i++) {
			double m[4][MAXREPS];
			struct res *x = r[fill][i];

			for (unsigned k = 0; k < reps; k++) {
				m[0][k] = x[k].ms_epoch;
				m[1][k] = x[k].us_page;
				m[2][k] = x[k].diff_share;
				m[3][k] = x[k].ratio;
			}
			for (int j = 0; j < 4; j++)
				qsort(m[j], reps, sizeof(double), cmp);
			printf("%-13s %-13s %9.2f %11.2f %6.1f%% %9" PRIu64
			       " %7" PRIu64 " %7" PRIu64 " %10.2fx %8.1f %7.1f\n",
			       fill ? "filled first" : "cold", v[i].name,
			       m[0][reps / 2], m[1][reps / 2],
			       100 * m[2][reps / 2], x[0].dirty_pages,
			       x[0].diffed, x[0].whole, m[3][reps / 2],
			       x[0].twin_mib, x[0].rss_mib);
		}
	}
	return 0;
}
