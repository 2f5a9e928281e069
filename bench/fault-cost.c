/* fault-cost.c - what a first write and a collection cost, per backend.
 *
 * For every backend the running kernel offers (others are skipped with the
 * probe's reason), in one run, through the public API only:
 *   first_write_ns             median ns of the first write to a tracked,
 *                              already-populated page (N pages per round,
 *                              fg_collect re-protects them between rounds);
 *   collect_clean_ns_per_gib   median ns of a collection of a clean 1 GiB
 *                              region;
 *   collect_ns_per_dirty_page  (collection with K dirty pages - clean
 *                              collection) / K, on the same 1 GiB region,
 *                              K = 10000 spread evenly (K = 1000 spread and
 *                              1000 contiguous are reported too);
 *   scaling                    collection time by region size (64 MiB,
 *                              256 MiB, 1 GiB), by dirty pages (0, 100,
 *                              1000, 10000) and by how spread they are.
 * Ratios are to the mprotect backend of the same run, because this machine's
 * fault cost drifts between runs (a nested hypervisor).
 *
 * One 1 GiB mapping is populated once and registered and unregistered per
 * backend (and in sub-ranges for the scaling table), so page allocation is
 * never timed and peak memory stays near 1 GiB.  Every collection's page
 * count is checked against the writes made: fewer pages than written is a
 * missed write and fails the run; more is reported as imprecision.
 */
#ifndef _GNU_SOURCE /* config.h defines it in the build */
#define _GNU_SOURCE
#endif
#include "fg.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

#define MIB (UINT64_C(1) << 20)
#define GIB (UINT64_C(1) << 30)
#define REGION GIB

enum thp_mode { THP_DEFAULT, THP_ON, THP_OFF };

struct config {
	unsigned pages;	 /* N, first-write pages per round */
	unsigned rounds; /* R */
	bool json;
	bool quick;
	int only; /* a backend id, or -1 for all */
	enum thp_mode thp;
};

struct summary {
	double med, min, max;
};

/* The collections measured: region size, dirty pages and how far apart
 * they are (stride in pages; 0: spread evenly over the region).  Region size
 * and spread are varied separately because a backend may pay per page table
 * (2 MiB) that holds a dirty page, not only per dirty page.  The 1 GiB rows
 * also give the clean and per-dirty-page figures. */
enum {
	P64_0, P256_0, P1G_0,			/* clean, by size */
	P64_1000_S16, P256_1000_S16, P1G_1000_S16, /* same pattern, by size */
	P256_1000, P1G_1000,			/* spread, by size */
	P1G_1000_S1,				/* contiguous */
	P1G_100, P1G_10000,			/* spread, by count */
	NPLAN
};
static const struct {
	uint64_t bytes;
	unsigned dirty, stride;
	const char *label;
} plan[NPLAN] = {
	[P64_0] = {64 * MIB, 0, 0, "64M/0"},
	[P256_0] = {256 * MIB, 0, 0, "256M/0"},
	[P1G_0] = {GIB, 0, 0, "1G/0"},
	[P64_1000_S16] = {64 * MIB, 1000, 16, "64M/1k@16"},
	[P256_1000_S16] = {256 * MIB, 1000, 16, "256M/1k@16"},
	[P1G_1000_S16] = {GIB, 1000, 16, "1G/1k@16"},
	[P256_1000] = {256 * MIB, 1000, 0, "256M/1k@65"},
	[P1G_1000] = {GIB, 1000, 0, "1G/1k@262"},
	[P1G_1000_S1] = {GIB, 1000, 1, "1G/1k@1"},
	[P1G_100] = {GIB, 100, 0, "1G/100@2621"},
	[P1G_10000] = {GIB, 10000, 0, "1G/10k@26"},
};

/* The two printed tables, as plan rows. */
static const int by_size[] = {P64_0,	    P256_0,	   P1G_0,
			      P64_1000_S16, P256_1000_S16, P1G_1000_S16,
			      P256_1000,    P1G_1000};
static const int by_dirty[] = {P1G_0,	    P1G_100,  P1G_1000_S1,
			       P1G_1000_S16, P1G_1000, P1G_10000};

struct result {
	fg_backend_id id;
	bool available; /* probed usable */
	bool measured;
	char skip[256]; /* the probe's word */
	struct summary first_write; /* ns per page */
	struct summary clean;	    /* ns per collection of 1 GiB */
	double per_dirty_k1000, per_dirty_k10000, per_dirty_contig;
	struct summary scale[NPLAN]; /* ns per collection */
	uint64_t register_ns;	     /* fg_register of 1 GiB */
	uint64_t clean_reported;     /* pages reported by a clean collection */
	uint64_t huge_kb;	     /* AnonHugePages of the region at start */
	uint64_t extra_pages;	     /* reported beyond what was written */
	char why[256];		     /* fg_tracker_why */
};

static size_t page;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static struct summary summarize(double *v, unsigned n)
{
	struct summary s;

	qsort(v, n, sizeof(*v), cmp_double);
	s.min = v[0];
	s.max = v[n - 1];
	s.med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	return s;
}

static int fail(const struct result *r, const char *what, int err)
{
	const char *detail = fg_last_error_detail();

	fprintf(stderr, "fault-cost: %s: %s: %s%s%s\n", fg_backend_name(r->id),
		what, fg_strerror(err), *detail ? ": " : "", detail);
	return 1;
}

/* One write to each of n pages, stride pages apart; returns ns taken. */
static uint64_t write_pages(char *base, size_t n, size_t stride, char v)
{
	uint64_t t0 = now_ns();

	for (size_t i = 0; i < n; i++)
		*(volatile char *)(base + i * stride * page) = v;
	return now_ns() - t0;
}

/* Collect and check the pages reported: at least `written` (a missed write
 * fails the run); the none backend reports the whole region. */
static int collect(struct result *r, fg_tracker *t, uint64_t written,
		   uint64_t region_pages, uint64_t *ns)
{
	fg_iter it;
	fg_stats st = {.size = sizeof(st)};
	uint64_t t0 = now_ns();
	int n = fg_collect(t, &it);
	uint64_t dt = now_ns() - t0;
	int err;

	if (n < 0)
		return fail(r, "fg_collect", n);
	if (ns)
		*ns = dt;
	err = fg_get_stats(t, &st);
	if (err < 0)
		return fail(r, "fg_get_stats", err);
	if (r->id == FG_BACKEND_NONE)
		written = region_pages;
	if (st.last_dirty_pages < written) {
		fprintf(stderr,
			"fault-cost: %s: MISSED WRITES: wrote %llu pages, "
			"collection reported %llu (%d ranges)\n",
			fg_backend_name(r->id), (unsigned long long)written,
			(unsigned long long)st.last_dirty_pages, n);
		return 1;
	}
	r->extra_pages += st.last_dirty_pages - written;
	return 0;
}

/* AnonHugePages of the mappings inside [base, base+len), from smaps. */
static uint64_t huge_kb(const char *base, size_t len)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	bool in = false;
	uint64_t sum = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi, kb;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2)
			in = lo >= (uintptr_t)base &&
			     hi <= (uintptr_t)base + len;
		else if (in && sscanf(line, "AnonHugePages: %lu kB", &kb) == 1)
			sum += kb;
	}
	fclose(f);
	return sum;
}

/* Pages between two dirty pages of plan row p. */
static size_t stride_of(int p)
{
	if (plan[p].stride)
		return plan[p].stride;
	return plan[p].dirty ? plan[p].bytes / page / plan[p].dirty : 0;
}

/* Median collection time of plan row p: its dirty pages written, at its
 * stride, before each collection. */
static int measure_collect(struct result *r, fg_tracker *t, char *base,
			   int p, const struct config *c, struct summary *out)
{
	uint64_t npages = plan[p].bytes / page;
	unsigned dirty = plan[p].dirty;
	size_t stride = stride_of(p);
	double v[c->rounds];

	for (unsigned i = 0; i < c->rounds; i++) {
		uint64_t ns;
		int err;

		write_pages(base, dirty, stride, (char)i);
		err = collect(r, t, dirty, npages, &ns);
		if (err)
			return err;
		v[i] = (double)ns;
	}
	*out = summarize(v, c->rounds);
	return 0;
}

static int run_backend(struct result *r, char *base, const struct config *c)
{
	fg_options opt = FG_OPTIONS_INIT;
	fg_tracker *t = NULL;
	uint64_t npages = REGION / page;
	double v[c->rounds];
	uint64_t t0;
	int err, ret = 1;
	bool registered = false;

	opt.backend = r->id;
	opt.flags = FG_OPT_NO_ENV;
	err = fg_tracker_create(&opt, &t);
	if (err < 0)
		return fail(r, "fg_tracker_create", err);
	snprintf(r->why, sizeof(r->why), "%s", fg_tracker_why(t));
	r->huge_kb = huge_kb(base, REGION);

	t0 = now_ns();
	err = fg_register(t, base, REGION);
	r->register_ns = now_ns() - t0;
	if (err < 0) {
		fail(r, "fg_register 1 GiB", err);
		goto out;
	}
	registered = true;
	if (collect(r, t, 0, npages, NULL))
		goto out;

	/* 1. first write: fg_collect re-protects, then N first writes. */
	for (unsigned i = 0; i < c->rounds; i++) {
		v[i] = (double)write_pages(base, c->pages, 1, (char)i) /
		       c->pages;
		if (collect(r, t, c->pages, npages, NULL))
			goto out;
	}
	r->first_write = summarize(v, c->rounds);

	/* 2.-4. collections of the whole region, clean and dirty. */
	for (size_t p = 0; p < NPLAN; p++) {
		if (plan[p].bytes != REGION)
			continue;
		if (measure_collect(r, t, base, (int)p, c, &r->scale[p]))
			goto out;
	}
	/* The clean collection right after a dirty one: what the none backend
	 * reports when nothing was written. */
	if (collect(r, t, 0, npages, NULL))
		goto out;
	{
		fg_stats st = {.size = sizeof(st)};

		if (fg_get_stats(t, &st) == 0)
			r->clean_reported = st.last_dirty_pages;
	}
	err = fg_unregister(t, base, REGION);
	registered = false;
	if (err < 0) {
		fail(r, "fg_unregister 1 GiB", err);
		goto out;
	}

	/* 4. smaller regions: sub-ranges of the same populated mapping. */
	for (size_t p = 0; p < NPLAN; p++) {
		uint64_t bytes = plan[p].bytes;

		if (bytes == REGION)
			continue;
		err = fg_register(t, base, bytes);
		if (err < 0) {
			fail(r, "fg_register", err);
			goto out;
		}
		if (collect(r, t, 0, bytes / page, NULL) ||
		    measure_collect(r, t, base, (int)p, c, &r->scale[p])) {
			fg_unregister(t, base, bytes);
			goto out;
		}
		err = fg_unregister(t, base, bytes);
		if (err < 0) {
			fail(r, "fg_unregister", err);
			goto out;
		}
	}

	r->clean = r->scale[P1G_0];
	r->per_dirty_k1000 =
		(r->scale[P1G_1000].med - r->clean.med) / plan[P1G_1000].dirty;
	r->per_dirty_k10000 = (r->scale[P1G_10000].med - r->clean.med) /
			      plan[P1G_10000].dirty;
	r->per_dirty_contig = (r->scale[P1G_1000_S1].med - r->clean.med) /
			      plan[P1G_1000_S1].dirty;
	r->measured = true;
	ret = 0;
out:
	if (registered)
		fg_unregister(t, base, REGION);
	err = fg_tracker_destroy(t);
	if (err < 0 && ret == 0)
		ret = fail(r, "fg_tracker_destroy", err);
	return ret;
}

/* The floor under every fault-based backend on this machine, measured in
 * the same run: a plain page fault (the first read of untouched anonymous
 * memory) and the cheapest system call.  Not a backend; printed to explain
 * the backends' figures. */
struct floor {
	struct summary touch_fault; /* ns per page */
	struct summary syscall;	   /* ns per getppid */
};

static int measure_floor(const struct config *c, struct floor *f)
{
	size_t len = (size_t)c->pages * page;
	double v[c->rounds];
	volatile char sink;

	for (unsigned i = 0; i < c->rounds; i++) {
		char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		uint64_t t0;

		if (p == MAP_FAILED)
			return -errno;
		madvise(p, len, MADV_NOHUGEPAGE);
		t0 = now_ns();
		for (size_t o = 0; o < len; o += page)
			sink = p[o];
		v[i] = (double)(now_ns() - t0) / c->pages;
		munmap(p, len);
	}
	(void)sink;
	f->touch_fault = summarize(v, c->rounds);
	for (unsigned i = 0; i < c->rounds; i++) {
		uint64_t t0 = now_ns();

		for (unsigned k = 0; k < c->pages; k++)
			getppid();
		v[i] = (double)(now_ns() - t0) / c->pages;
	}
	f->syscall = summarize(v, c->rounds);
	return 0;
}

/* One populated 1 GiB mapping, its THP state as asked. */
static char *map_region(enum thp_mode thp, uint64_t *ns)
{
	uint64_t t0 = now_ns();
	int flags = MAP_PRIVATE | MAP_ANONYMOUS;
	char *p;

	if (thp == THP_DEFAULT)
		flags |= MAP_POPULATE;
	p = mmap(NULL, REGION, PROT_READ | PROT_WRITE, flags, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (thp != THP_DEFAULT) {
		if (madvise(p, REGION,
			    thp == THP_ON ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) ||
		    madvise(p, REGION, MADV_POPULATE_WRITE)) {
			/* Older kernels lack MADV_POPULATE_WRITE: touch. */
			for (uint64_t o = 0; o < REGION; o += page)
				p[o] = 0;
		}
	}
	*ns = now_ns() - t0;
	return p;
}

static void machine(char *kernel, size_t klen, char *cpu, size_t clen,
		    bool *hyper, char *thp, size_t tlen)
{
	struct utsname u;
	char line[4096];
	FILE *f;

	snprintf(kernel, klen, "%s", uname(&u) ? "?" : u.release);
	snprintf(cpu, clen, "?");
	*hyper = false;
	f = fopen("/proc/cpuinfo", "r");
	if (f) {
		bool got = false;

		while (fgets(line, sizeof(line), f)) {
			char *colon = strchr(line, ':');

			if (!colon)
				continue;
			if (!got && !strncmp(line, "model name", 10)) {
				colon += 1 + (colon[1] == ' ');
				colon[strcspn(colon, "\n")] = 0;
				snprintf(cpu, clen, "%s", colon);
				got = true;
			} else if (!strncmp(line, "flags", 5) &&
				   strstr(colon, " hypervisor")) {
				*hyper = true;
			}
		}
		fclose(f);
	}
	snprintf(thp, tlen, "?");
	f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	if (f) {
		if (fgets(thp, (int)tlen, f))
			thp[strcspn(thp, "\n")] = 0;
		fclose(f);
	}
}

/* 1-minute load average: other work on this 2-CPU machine shows up in
 * fault and flush costs, so every report says how busy it was. */
static double loadavg(void)
{
	FILE *f = fopen("/proc/loadavg", "r");
	double l = -1;

	if (f) {
		if (fscanf(f, "%lf", &l) != 1)
			l = -1;
		fclose(f);
	}
	return l;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: fault-cost [--quick] [--json] [--backend NAME] "
		"[--rounds R] [--pages N] [--thp MODE]\n"
		"Measure, per tracking backend, the cost of a first write to a "
		"tracked page\n"
		"and of a collection (clean, per dirty page, by region size).\n"
		"  --quick         half the pages and rounds\n"
		"  --json          print only a JSON array, one object per "
		"backend\n"
		"  --backend NAME  only this backend (uffd-async, uffd-sync, "
		"mprotect,\n"
		"                  soft-dirty, none)\n"
		"  --rounds R      rounds per figure, the median is reported "
		"(default 9)\n"
		"  --pages N       pages written per first-write round "
		"(default 4096)\n"
		"  --thp MODE      default (as the platform gives it), on "
		"(MADV_HUGEPAGE)\n"
		"                  or off (MADV_NOHUGEPAGE) for the 1 GiB "
		"region\n"
		"Exit status: 0 ok, 1 a failure, 2 bad usage.\n");
}

/* A usage error: the message, then the usage, on stderr; exit status 2. */
static int __attribute__((format(printf, 1, 2))) bad_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("fault-cost: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	usage(stderr);
	return 2;
}

/*
 * The argument s of option opt as a whole number in [lo, hi]: 0, or 2
 * (bad usage) once bad_usage() has said why.
 */
static int parse_uint(const char *opt, const char *s, unsigned lo,
		      unsigned hi, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || v < lo || v > hi)
		return bad_usage("%s wants %u..%u, not '%s'", opt, lo, hi, s);
	*out = (unsigned)v;
	return 0;
}

static const char *thp_name(enum thp_mode m)
{
	return m == THP_ON ? "on (MADV_HUGEPAGE)"
	       : m == THP_OFF ? "off (MADV_NOHUGEPAGE)"
			      : "default (no madvise)";
}

static void json_str(const char *key, const char *v)
{
	printf(", \"%s\": \"", key);
	for (; *v; v++)
		if (*v == '"' || *v == '\\')
			printf("\\%c", *v);
		else if ((unsigned char)*v >= 0x20)
			putchar(*v);
	putchar('"');
}

static void json_num(const char *key, double v, bool ok)
{
	if (ok && isfinite(v))
		printf(", \"%s\": %.10g", key, v);
	else
		printf(", \"%s\": null", key);
}

static void print_json(const struct result *res, size_t n,
		       const struct result *mp, const struct config *c,
		       const char *kernel, const char *cpu, bool hyper,
		       const char *thp, const double load[2],
		       const struct floor *fl)
{
	printf("[");
	for (size_t i = 0; i < n; i++) {
		const struct result *r = &res[i];
		bool ok = r->measured, rat = ok && mp;

		printf("%s\n  {\"backend\": \"%s\", \"status\": \"%s\"",
		       i ? "," : "", fg_backend_name(r->id),
		       ok ? "ok" : "skipped");
		if (!ok)
			json_str("skip_reason", r->skip);
		json_num("first_write_ns", r->first_write.med, ok);
		json_num("first_write_ns_min", r->first_write.min, ok);
		json_num("first_write_ns_max", r->first_write.max, ok);
		json_num("first_write_ratio_vs_mprotect",
			 rat ? r->first_write.med / mp->first_write.med : 0,
			 rat);
		json_num("collect_clean_ns_per_gib", r->clean.med, ok);
		json_num("collect_clean_ns_per_gib_min", r->clean.min, ok);
		json_num("collect_clean_ns_per_gib_max", r->clean.max, ok);
		json_num("collect_clean_ratio_vs_mprotect",
			 rat ? r->clean.med / mp->clean.med : 0, rat);
		json_num("collect_ns_per_dirty_page", r->per_dirty_k10000, ok);
		json_num("collect_ns_per_dirty_page_k1000", r->per_dirty_k1000,
			 ok);
		json_num("collect_ns_per_dirty_page_k10000",
			 r->per_dirty_k10000, ok);
		json_num("collect_ns_per_dirty_page_contiguous",
			 r->per_dirty_contig, ok);
		json_num("collect_per_dirty_ratio_vs_mprotect",
			 rat ? r->per_dirty_k10000 / mp->per_dirty_k10000 : 0,
			 rat);
		json_num("register_1gib_ns", (double)r->register_ns, ok);
		json_num("clean_collect_reported_pages",
			 (double)r->clean_reported, ok);
		json_num("extra_reported_pages", (double)r->extra_pages, ok);
		json_num("region_anon_huge_kb", (double)r->huge_kb, ok);
		printf(", \"pages\": %u, \"rounds\": %u, \"quick\": %s",
		       c->pages, c->rounds, c->quick ? "true" : "false");
		json_str("kernel", kernel);
		json_str("cpu", cpu);
		printf(", \"hypervisor\": %s", hyper ? "true" : "false");
		json_str("thp_enabled", thp);
		json_str("thp_region", thp_name(c->thp));
		printf(", \"loadavg_start\": %.2f, \"loadavg_end\": %.2f",
		       load[0], load[1]);
		json_num("ref_first_touch_fault_ns", fl->touch_fault.med, 1);
		json_num("ref_getppid_ns", fl->syscall.med, 1);
		printf(", \"scaling\": [");
		for (size_t p = 0; ok && p < NPLAN; p++)
			printf("%s\n    {\"region_bytes\": %llu, "
			       "\"dirty_pages\": %u, \"stride_pages\": %llu, "
			       "\"collect_ns\": %.1f, \"collect_ns_min\": "
			       "%.1f, \"collect_ns_max\": %.1f}",
			       p ? "," : "", (unsigned long long)plan[p].bytes,
			       plan[p].dirty,
			       (unsigned long long)stride_of((int)p),
			       r->scale[p].med, r->scale[p].min,
			       r->scale[p].max);
		printf("]}");
	}
	printf("\n]\n");
}

static void ratio(double v, const struct result *mp, double ref)
{
	if (mp && ref != 0)
		printf(" %7.3f", v / ref);
	else
		printf(" %7s", "-");
}

static void print_scale(const struct result *res, size_t n, const char *by,
			const int *rows, size_t nrows)
{
	printf("\ncollection us (median) by %s:\n%-11s", by, "backend");
	for (size_t k = 0; k < nrows; k++)
		printf(" %11s", plan[rows[k]].label);
	printf("\n");
	for (size_t i = 0; i < n; i++) {
		const struct result *r = &res[i];

		if (!r->measured)
			continue;
		printf("%-11s", fg_backend_name(r->id));
		for (size_t k = 0; k < nrows; k++)
			printf(" %11.1f", r->scale[rows[k]].med / 1000);
		printf("\n");
	}
}

static void print_table(const struct result *res, size_t n,
			const struct result *mp)
{
	printf("\n%-11s %27s %7s %31s %7s %13s %7s\n", "backend",
	       "first write ns/page", "x mprot", "clean collect ns/GiB",
	       "x mprot", "ns/dirty page", "x mprot");
	printf("%-11s %27s %7s %31s %7s %13s %7s\n", "", "median [min-max]",
	       "", "median [min-max]", "", "K=10000", "");
	for (size_t i = 0; i < n; i++) {
		const struct result *r = &res[i];
		char a[64], b[64];

		if (!r->measured)
			continue;
		snprintf(a, sizeof(a), "%.0f [%.0f-%.0f]", r->first_write.med,
			 r->first_write.min, r->first_write.max);
		snprintf(b, sizeof(b), "%.0f [%.0f-%.0f]", r->clean.med,
			 r->clean.min, r->clean.max);
		printf("%-11s %27s", fg_backend_name(r->id), a);
		ratio(r->first_write.med, mp, mp ? mp->first_write.med : 0);
		printf(" %31s", b);
		ratio(r->clean.med, mp, mp ? mp->clean.med : 0);
		printf(" %13.0f", r->per_dirty_k10000);
		ratio(r->per_dirty_k10000, mp, mp ? mp->per_dirty_k10000 : 0);
		printf("\n");
	}

	print_scale(res, n, "region size", by_size,
		    sizeof(by_size) / sizeof(by_size[0]));
	print_scale(res, n, "dirty pages in 1 GiB", by_dirty,
		    sizeof(by_dirty) / sizeof(by_dirty[0]));
	printf("columns: region/dirty pages@stride in pages.  ns per dirty "
	       "page = (collection - clean 1G) / dirty:\n");
	for (size_t i = 0; i < n; i++) {
		const struct result *r = &res[i];

		if (r->measured)
			printf("%-11s 1k@262 %.0f, 10k@26 %.0f, 1k@1 "
			       "(contiguous) %.0f\n",
			       fg_backend_name(r->id), r->per_dirty_k1000,
			       r->per_dirty_k10000, r->per_dirty_contig);
	}
	printf("\n");
	for (size_t i = 0; i < n; i++) {
		const struct result *r = &res[i];

		if (!r->measured)
			continue;
		printf("%-11s register 1 GiB %.1f ms, region AnonHugePages "
		       "%llu kB at start, clean collection reports %llu "
		       "pages, extra pages reported %llu\n",
		       fg_backend_name(r->id), r->register_ns / 1e6,
		       (unsigned long long)r->huge_kb,
		       (unsigned long long)r->clean_reported,
		       (unsigned long long)r->extra_pages);
	}
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"quick", no_argument, NULL, 'q'},
		{"json", no_argument, NULL, 'j'},
		{"backend", required_argument, NULL, 'b'},
		{"rounds", required_argument, NULL, 'r'},
		{"pages", required_argument, NULL, 'n'},
		{"thp", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static const fg_backend_id order[] = {
		FG_BACKEND_UFFD_ASYNC, FG_BACKEND_UFFD_SYNC,
		FG_BACKEND_MPROTECT,   FG_BACKEND_SOFTDIRTY,
		FG_BACKEND_NONE,
	};
	struct config c = {.pages = 0, .rounds = 0, .only = -1};
	struct result res[sizeof(order) / sizeof(order[0])];
	const struct result *mp = NULL;
	char kernel[128], cpu[256], thp[128];
	bool hyper;
	uint64_t pop_ns;
	double load[2];
	struct floor fl = {0};
	size_t n = 0, navail = 0;
	char *base;
	int opt, ret = 0;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		fg_backend_id id;

		switch (opt) {
		case 'q':
			c.quick = true;
			break;
		case 'j':
			c.json = true;
			break;
		case 'b':
			if (fg_backend_from_name(optarg, &id) < 0 ||
			    id == FG_BACKEND_AUTO)
				return bad_usage("unknown backend '%s'",
						 optarg);
			c.only = (int)id;
			break;
		case 'r':
			if (parse_uint("--rounds", optarg, 1, 1000, &c.rounds))
				return 2;
			break;
		case 'n':
			if (parse_uint("--pages", optarg, 1, 65536, &c.pages))
				return 2;
			break;
		case 't':
			if (!strcmp(optarg, "default"))
				c.thp = THP_DEFAULT;
			else if (!strcmp(optarg, "on"))
				c.thp = THP_ON;
			else if (!strcmp(optarg, "off"))
				c.thp = THP_OFF;
			else
				return bad_usage("--thp wants default, on or "
						 "off, not '%s'",
						 optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			if (optopt)
				return bad_usage("option '%s' needs an "
						 "argument or takes none",
						 argv[optind - 1]);
			return bad_usage("unknown option '%s'",
					 argv[optind - 1]);
		}
	}
	if (optind < argc)
		return bad_usage("unexpected argument '%s'", argv[optind]);
	if (!c.pages)
		c.pages = c.quick ? 2048 : 4096;
	if (!c.rounds)
		c.rounds = c.quick ? 5 : 9;

	page = (size_t)sysconf(_SC_PAGESIZE);
	machine(kernel, sizeof(kernel), cpu, sizeof(cpu), &hyper, thp,
		sizeof(thp));
	load[0] = loadavg();
	opt = measure_floor(&c, &fl);
	if (opt < 0) {
		fprintf(stderr, "fault-cost: mmap: %s\n", strerror(-opt));
		return 1;
	}
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		struct result *r = &res[n];

		if (c.only >= 0 && order[i] != (fg_backend_id)c.only)
			continue;
		memset(r, 0, sizeof(*r));
		r->id = order[i];
		n++;
		r->available =
			fg_backend_probe(r->id, r->skip, sizeof(r->skip)) == 0;
		if (r->available)
			navail++;
		else
			fprintf(c.json ? stderr : stdout, "skip %s: %s\n",
				fg_backend_name(r->id),
				*r->skip ? r->skip : "unavailable");
	}
	if (!navail) {
		if (c.json)
			print_json(res, n, NULL, &c, kernel, cpu, hyper, thp,
				   load, &fl);
		else
			printf("no backend to measure\n");
		return 0;
	}

	base = map_region(c.thp, &pop_ns);
	if (!base) {
		fprintf(stderr, "fault-cost: mmap of 1 GiB: %s\n",
			strerror(errno));
		return 1;
	}
	if (!c.json)
		printf("fault-cost: kernel %s, CPU %s (%ld CPUs%s), THP "
		       "enabled %s, region THP %s\n"
		       "N=%u pages per first-write round, R=%u rounds, 1 GiB "
		       "region populated in %.0f ms (%llu kB AnonHugePages), "
		       "load average %.2f\n",
		       kernel, cpu, sysconf(_SC_NPROCESSORS_ONLN),
		       hyper ? ", under a hypervisor" : "", thp,
		       thp_name(c.thp), c.pages, c.rounds, pop_ns / 1e6,
		       (unsigned long long)huge_kb(base, REGION), load[0]);

	for (size_t i = 0; i < n; i++) {
		struct result *r = &res[i];

		if (!r->available)
			continue;
		if (run_backend(r, base, &c)) {
			ret = 1;
			break;
		}
		if (!c.json)
			printf("done %s (%s)\n", fg_backend_name(r->id),
			       r->why);
		fflush(stdout);
		if (r->id == FG_BACKEND_MPROTECT)
			mp = r;
	}
	munmap(base, REGION);
	if (ret)
		return ret;
	load[1] = loadavg();
	if (c.json) {
		print_json(res, n, mp, &c, kernel, cpu, hyper, thp, load, &fl);
	} else {
		print_table(res, n, mp);
		printf("floor, same run: first-touch read fault "
		       "%.0f ns [%.0f-%.0f], getppid %.0f ns [%.0f-%.0f]\n",
		       fl.touch_fault.med, fl.touch_fault.min, fl.touch_fault.max,
		       fl.syscall.med, fl.syscall.min, fl.syscall.max);
		printf("load average at the end %.2f (this run adds up to "
		       "~1 itself; more means other work shared the 2 "
		       "CPUs)\n",
		       load[1]);
	}
	return 0;
}
