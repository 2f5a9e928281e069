/* vm.c - what running a program under fgvm costs it, measured from inside.
 *
 * One process, the same figures natively and under `fgvm -- bench/vm`:
 *   syscall_ns          median ns of syscall(SYS_getppid): under fgvm every
 *                       system call leaves the guest and is performed by
 *                       the VM (a forwarded system call);
 *   clock_ns            median ns of clock_gettime(CLOCK_MONOTONIC): the
 *                       vDSO, native speed if the program got one, else a
 *                       forwarded system call;
 *   first_touch_ns      median ns per page of the first write to fresh
 *                       anonymous 4 KiB pages (MADV_NOHUGEPAGE): natively
 *                       a minor fault; under fgvm a guest page fault and
 *                       the host's (nested/shadow) fault behind it;
 *   per backend of the toolkit's registry (fg_backend_probe; those the
 *   machine lacks are listed with the probe's reason):
 *     first_write_ns    median ns per page of the first write to a page of
 *                       a tracked, populated region after a collection
 *                       (the fault cost of tracking);
 *     collect_clean_ns  median ns of fg_collect of the clean region;
 *     collect[K]        median ns of fg_collect after K pages were
 *                       written (spread evenly over the region), and
 *                       (that - clean) / K, ns per dirty page.
 * Every measurement is repeated (--reps) and reported as median, min and
 * max.  Batched operations (system calls, first touches, first writes)
 * are timed per batch and divided; a single fg_collect is timed alone,
 * minus the median cost of the clock read itself (clock_ns: large under
 * fgvm without a vDSO).  Every collection is checked against the writes
 * made before it: fewer pages than written is a missed write, printed,
 * and the exit status is 1.
 *
 * usage: vm [--quick] [--reps N] [--json FILE] [--backends a,b,...]
 */
#ifndef _GNU_SOURCE /* config.h defines it in the build */
#define _GNU_SOURCE
#endif
#include "fg.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define MIB (1UL << 20)
#define MAXK 3

struct summary {
	double med, min, max;
	bool ok;
};

struct config {
	bool quick;
	unsigned reps;
	const char *json;
	const char *backends; /* comma-separated names, NULL: all */
	/* sizes */
	unsigned calls;	      /* system calls per timed batch */
	unsigned touch_pages; /* first-touch pages per timed batch */
	size_t region;	      /* tracked region, bytes */
	unsigned write_pages; /* first-write pages per timed batch */
	unsigned k[MAXK];     /* dirty pages before a timed collection */
};

struct bres {
	fg_backend_id id;
	bool wanted, available, measured;
	char reason[256]; /* the probe's */
	char why[256];	  /* fg_tracker_why */
	char error[256];  /* what failed while measuring, or "" */
	struct summary first_write, clean, collect[MAXK];
	double per_dirty[MAXK]; /* (collect - clean) / K, ns */
	uint64_t missed;	/* pages written but not reported */
	uint64_t extra;		/* pages reported but not written */
};

static size_t page;
static double clock_cost; /* median ns of one now_ns() */
static int status;

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
	struct summary s = {0, 0, 0, true};

	qsort(v, n, sizeof(*v), cmp_double);
	s.min = v[0];
	s.max = v[n - 1];
	s.med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	return s;
}

/* ---- untracked operations ---- */

static struct summary bench_getppid(const struct config *c)
{
	double v[c->reps];

	for (unsigned r = 0; r < c->reps; r++) {
		uint64_t t0 = now_ns();

		for (unsigned i = 0; i < c->calls; i++)
			syscall(SYS_getppid);
		v[r] = (double)(now_ns() - t0) / c->calls;
	}
	return summarize(v, c->reps);
}

static struct summary bench_clock(const struct config *c)
{
	double v[c->reps];
	struct timespec ts;

	for (unsigned r = 0; r < c->reps; r++) {
		uint64_t t0 = now_ns();

		for (unsigned i = 0; i < c->calls; i++)
			clock_gettime(CLOCK_MONOTONIC, &ts);
		v[r] = (double)(now_ns() - t0) / c->calls;
	}
	return summarize(v, c->reps);
}

static struct summary bench_first_touch(const struct config *c)
{
	size_t len = (size_t)c->touch_pages * page;
	double v[c->reps];
	struct summary bad = {0, 0, 0, false};

	for (unsigned r = 0; r < c->reps; r++) {
		char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		uint64_t t0;

		if (p == MAP_FAILED) {
			fprintf(stderr, "vm: mmap %zu bytes: %s\n", len,
				strerror(errno));
			status = 1;
			return bad;
		}
		madvise(p, len, MADV_NOHUGEPAGE); /* 4 KiB faults, not 2 MiB */
		t0 = now_ns();
		for (size_t i = 0; i < c->touch_pages; i++)
			*(volatile char *)(p + i * page) = 1;
		v[r] = (double)(now_ns() - t0) / c->touch_pages;
		munmap(p, len);
	}
	return summarize(v, c->reps);
}

/* ---- tracked regions ---- */

static void berr(struct bres *b, const char *what, int err)
{
	const char *d = fg_last_error_detail();

	snprintf(b->error, sizeof(b->error), "%s: %s%s%s", what,
		 fg_strerror(err), *d ? ": " : "", d);
	fprintf(stderr, "vm: %s: %s\n", fg_backend_name(b->id), b->error);
	status = 1;
}

/* One write to each of n pages spread evenly over npages. */
static void write_spread(char *base, size_t npages, size_t n, char v)
{
	for (size_t i = 0; i < n; i++)
		*(volatile char *)(base + (i * npages / n) * page) = v;
}

/* fg_collect, timed (minus the clock's own cost), checked against the
 * pages written before it. */
static int collect(struct bres *b, fg_tracker *t, size_t written,
		   size_t npages, double *ns)
{
	fg_iter it;
	fg_stats st = {.size = sizeof(st)};
	uint64_t t0 = now_ns();
	int n = fg_collect(t, &it);
	double dt = (double)(now_ns() - t0) - clock_cost;

	if (n < 0) {
		berr(b, "fg_collect", n);
		return -1;
	}
	if (ns)
		*ns = dt > 0 ? dt : 0;
	n = fg_get_stats(t, &st);
	if (n < 0) {
		berr(b, "fg_get_stats", n);
		return -1;
	}
	if (fg_tracker_backend(t) == FG_BACKEND_NONE)
		written = npages; /* it reports everything, always */
	if (st.last_dirty_pages < written) {
		fprintf(stderr, "vm: %s: MISSED WRITES: wrote %zu pages, the "
				"collection reported %llu\n",
			fg_backend_name(b->id), written,
			(unsigned long long)st.last_dirty_pages);
		b->missed += written - st.last_dirty_pages;
		status = 1;
	} else {
		b->extra += st.last_dirty_pages - written;
	}
	return 0;
}

static void bench_backend(struct bres *b, const struct config *c)
{
	fg_options opt = FG_OPTIONS_INIT;
	fg_tracker *t = NULL;
	size_t npages = c->region / page;
	double v[c->reps], clean;
	char *base;
	int err;

	opt.backend = b->id;
	opt.card_size = page;
	opt.flags = FG_OPT_NO_ENV;
	err = fg_tracker_create(&opt, &t);
	if (err < 0) {
		berr(b, "fg_tracker_create", err);
		return;
	}
	snprintf(b->why, sizeof(b->why), "%s", fg_tracker_why(t));
	base = mmap(NULL, c->region, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED) {
		berr(b, "mmap", -errno);
		fg_tracker_destroy(t);
		return;
	}
	madvise(base, c->region, MADV_NOHUGEPAGE);
	memset(base, 1, c->region); /* populated: no allocation is timed */
	err = fg_register(t, base, c->region);
	if (err < 0) {
		berr(b, "fg_register", err);
		goto out;
	}
	if (collect(b, t, 0, npages, NULL))
		goto out;

	/* First writes, each batch after a collection. */
	for (unsigned r = 0; r < c->reps; r++) {
		uint64_t t0 = now_ns();

		write_spread(base, npages, c->write_pages, (char)r);
		v[r] = (double)(now_ns() - t0) / c->write_pages;
		if (collect(b, t, c->write_pages, npages, NULL))
			goto out;
	}
	b->first_write = summarize(v, c->reps);

	/* Clean collections. */
	for (unsigned r = 0; r < c->reps; r++)
		if (collect(b, t, 0, npages, &v[r]))
			goto out;
	b->clean = summarize(v, c->reps);
	clean = b->clean.med;

	/* Collections after K writes. */
	for (int k = 0; k < MAXK; k++) {
		for (unsigned r = 0; r < c->reps; r++) {
			write_spread(base, npages, c->k[k], (char)(r + 2));
			if (collect(b, t, c->k[k], npages, &v[r]))
				goto out;
		}
		b->collect[k] = summarize(v, c->reps);
		b->per_dirty[k] = (b->collect[k].med - clean) / c->k[k];
	}
	b->measured = true;
	err = fg_unregister(t, base, c->region);
	if (err < 0)
		berr(b, "fg_unregister", err);
out:
	fg_tracker_destroy(t);
	munmap(base, c->region);
}

/* ---- output ---- */

#define CLOCKSOURCE "/sys/devices/system/clocksource/clocksource0/" \
		    "current_clocksource"

/* The first line of a file, without its newline; "?" if unreadable. */
static void read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");

	if (!f || !fgets(buf, (int)len, f))
		snprintf(buf, len, "?");
	else
		buf[strcspn(buf, "\n")] = 0;
	if (f)
		fclose(f);
}

static void json_s(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void json_sum(FILE *f, const char *key, struct summary s)
{
	if (s.ok)
		fprintf(f, "\"%s\":{\"med\":%.1f,\"min\":%.1f,\"max\":%.1f}",
			key, s.med, s.min, s.max);
	else
		fprintf(f, "\"%s\":null", key);
}

static void pr_sum(const char *label, struct summary s)
{
	if (s.ok)
		printf("  %-44s %12.1f %12.1f %12.1f\n", label, s.med, s.min,
		       s.max);
	else
		printf("  %-44s %12s\n", label, "failed");
}

static int parse_backends(struct bres *res, const char *list)
{
	char buf[256], *tok, *save;

	for (int i = 0; i < FG_BACKEND_COUNT; i++)
		res[i].wanted = !list;
	if (!list)
		return 0;
	snprintf(buf, sizeof(buf), "%s", list);
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		fg_backend_id id;

		if (fg_backend_from_name(tok, &id) < 0 ||
		    id == FG_BACKEND_AUTO) {
			fprintf(stderr, "vm: unknown backend %s\n", tok);
			return -1;
		}
		res[id].wanted = true;
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vm [--quick] [--reps N] [--json FILE] [--backends a,b]\n"
		"  --quick       small sizes (seconds natively)\n"
		"  --reps N      repetitions of each measurement (default 11;"
		" 5 with --quick)\n"
		"  --json FILE   also write the results as one JSON object\n"
		"  --backends L  comma-separated backend names (default: every"
		" backend)\n"
		"Run natively, and as `fgvm -- vm` to see what the VM costs.\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"quick", no_argument, NULL, 'q'},
		{"reps", required_argument, NULL, 'r'},
		{"json", required_argument, NULL, 'j'},
		{"backends", required_argument, NULL, 'b'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	struct config c = {0};
	struct bres res[FG_BACKEND_COUNT];
	struct summary sys_s, clk_s, touch_s;
	char kvm_reason[256], hyper[256] = "", clocksrc[64];
	bool under_fgvm, vdso;
	struct utsname u;
	int o;

	while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (o) {
		case 'q':
			c.quick = true;
			break;
		case 'r':
			c.reps = (unsigned)strtoul(optarg, NULL, 0);
			if (c.reps < 1 || c.reps > 1000) {
				fprintf(stderr, "vm: --reps 1..1000\n");
				return 2;
			}
			break;
		case 'j':
			c.json = optarg;
			break;
		case 'b':
			c.backends = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (!c.reps)
		c.reps = c.quick ? 5 : 11;
	c.calls = c.quick ? 200 : 2000;
	c.touch_pages = c.quick ? 256 : 4096;
	c.region = (c.quick ? 8 : 64) * MIB;
	c.write_pages = c.quick ? 256 : 4096;
	c.k[0] = 1;
	c.k[1] = 100;
	c.k[2] = c.quick ? 1000 : 10000;
	page = (size_t)sysconf(_SC_PAGESIZE);

	memset(res, 0, sizeof(res));
	if (parse_backends(res, c.backends))
		return 2;

	under_fgvm = fg_backend_probe(FG_BACKEND_KVM, kvm_reason,
				      sizeof(kvm_reason)) == 0;
	if (under_fgvm) {
		/* "under fgvm: MECHANISM on HYPERVISOR" */
		const char *on = strstr(kvm_reason, " on ");

		snprintf(hyper, sizeof(hyper), "%s", on ? on + 4 : kvm_reason);
	}
	vdso = getauxval(AT_SYSINFO_EHDR) != 0;
	read_line(CLOCKSOURCE, clocksrc, sizeof(clocksrc));
	uname(&u);

	/* The clock first: single operations are corrected by its cost. */
	clk_s = bench_clock(&c);
	clock_cost = clk_s.med;
	sys_s = bench_getppid(&c);
	touch_s = bench_first_touch(&c);
	for (int i = 1; i < FG_BACKEND_COUNT; i++) {
		struct bres *b = &res[i];

		b->id = (fg_backend_id)i;
		b->available = fg_backend_probe(b->id, b->reason,
						sizeof(b->reason)) == 0;
		if (b->available && b->wanted)
			bench_backend(b, &c);
	}

	printf("bench/vm: %s, %s %s, %ld cpus, vDSO %s, clocksource %s, "
	       "%u reps%s\n",
	       under_fgvm ? "UNDER FGVM" : "native", u.sysname, u.release,
	       sysconf(_SC_NPROCESSORS_ONLN), vdso ? "present" : "absent",
	       clocksrc, c.reps, c.quick ? ", quick" : "");
	printf("kvm backend: %s\n", kvm_reason);
	if (under_fgvm)
		printf("hypervisor: %s\n", hyper);
	printf("\n  %-44s %12s %12s %12s\n", "operation (ns per call or page)",
	       "median ns", "min ns", "max ns");
	pr_sum("syscall(SYS_getppid)", sys_s);
	pr_sum("clock_gettime(CLOCK_MONOTONIC)", clk_s);
	{
		char l[64];

		snprintf(l, sizeof(l), "first touch, fresh anon page (%u pages)",
			 c.touch_pages);
		pr_sum(l, touch_s);
	}

	printf("\ntracked first write: ns per page, %u pages spread over a "
	       "%zu MiB populated region, after a collection\n",
	       c.write_pages, c.region / MIB);
	printf("  %-12s %12s %12s %12s  %s\n", "backend", "median ns",
	       "min ns", "max ns", "status");
	for (int i = 1; i < FG_BACKEND_COUNT; i++) {
		struct bres *b = &res[i];

		if (!b->available)
			printf("  %-12s %12s %12s %12s  unavailable: %s\n",
			       fg_backend_name(b->id), "-", "-", "-",
			       b->reason);
		else if (!b->wanted)
			printf("  %-12s %12s %12s %12s  not selected\n",
			       fg_backend_name(b->id), "-", "-", "-");
		else if (!b->first_write.ok)
			printf("  %-12s %12s %12s %12s  FAILED: %s\n",
			       fg_backend_name(b->id), "-", "-", "-", b->error);
		else
			printf("  %-12s %12.1f %12.1f %12.1f  %s%s%s\n",
			       fg_backend_name(b->id), b->first_write.med,
			       b->first_write.min, b->first_write.max,
			       b->missed ? "MISSED WRITES; " : "",
			       b->error[0] ? b->error : "ok",
			       b->extra && b->id != FG_BACKEND_NONE
				       ? " (reported more pages than written)"
				       : "");
	}

	printf("\ncollection: median us per fg_collect of the %zu MiB region "
	       "after K pages written (spread); ns/dirty page = (K - clean) "
	       "/ K at K=%u\n",
	       c.region / MIB, c.k[MAXK - 1]);
	printf("  %-12s %10s %10s %10s %10s %16s\n", "backend", "clean us",
	       "K=1 us", "K=100 us", c.quick ? "K=1000 us" : "K=10000 us",
	       "ns/dirty page");
	for (int i = 1; i < FG_BACKEND_COUNT; i++) {
		struct bres *b = &res[i];

		if (!b->measured)
			continue;
		printf("  %-12s %10.1f %10.1f %10.1f %10.1f %16.1f\n",
		       fg_backend_name(b->id), b->clean.med / 1e3,
		       b->collect[0].med / 1e3, b->collect[1].med / 1e3,
		       b->collect[2].med / 1e3, b->per_dirty[MAXK - 1]);
	}
	printf("(single collections are timed minus one clock read, %.1f ns)"
	       "\n", clock_cost);

	if (c.json) {
		FILE *f = fopen(c.json, "w");

		if (!f) {
			fprintf(stderr, "vm: %s: %s\n", c.json, strerror(errno));
			return 1;
		}
		fprintf(f, "{\"bench\":\"vm\",\"under_fgvm\":%s,\"kvm_probe\":",
			under_fgvm ? "true" : "false");
		json_s(f, kvm_reason);
		fprintf(f, ",\"hypervisor\":");
		json_s(f, hyper);
		fprintf(f, ",\"kernel\":");
		json_s(f, u.release);
		fprintf(f, ",\"clocksource\":");
		json_s(f, clocksrc);
		fprintf(f, ",\"cpus\":%ld,\"vdso\":%s,\"quick\":%s,\"reps\":%u,"
			   "\"calls\":%u,\"touch_pages\":%u,\"region_bytes\":%zu,"
			   "\"write_pages\":%u,\"clock_cost_ns\":%.1f,",
			sysconf(_SC_NPROCESSORS_ONLN), vdso ? "true" : "false",
			c.quick ? "true" : "false", c.reps, c.calls,
			c.touch_pages, c.region, c.write_pages, clock_cost);
		json_sum(f, "syscall_ns", sys_s);
		fputc(',', f);
		json_sum(f, "clock_ns", clk_s);
		fputc(',', f);
		json_sum(f, "first_touch_ns", touch_s);
		fprintf(f, ",\"backends\":[");
		for (int i = 1; i < FG_BACKEND_COUNT; i++) {
			struct bres *b = &res[i];

			fprintf(f, "%s{\"name\":\"%s\",\"available\":%s,"
				   "\"measured\":%s,\"reason\":",
				i > 1 ? "," : "", fg_backend_name(b->id),
				b->available ? "true" : "false",
				b->measured ? "true" : "false");
			json_s(f, b->reason);
			fprintf(f, ",\"why\":");
			json_s(f, b->why);
			fprintf(f, ",\"error\":");
			json_s(f, b->error);
			fprintf(f, ",\"missed_pages\":%llu,\"extra_pages\":%llu",
				(unsigned long long)b->missed,
				(unsigned long long)b->extra);
			if (b->first_write.ok) {
				fputc(',', f);
				json_sum(f, "first_write_ns", b->first_write);
			}
			if (b->measured) {
				fputc(',', f);
				json_sum(f, "collect_clean_ns", b->clean);
				fprintf(f, ",\"collect\":[");
				for (int k = 0; k < MAXK; k++) {
					fprintf(f, "%s{\"k\":%u,", k ? "," : "",
						c.k[k]);
					json_sum(f, "ns", b->collect[k]);
					fprintf(f, ",\"ns_per_dirty_page\":%.1f}",
						b->per_dirty[k]);
				}
				fputc(']', f);
			}
			fputc('}', f);
		}
		fprintf(f, "],\"ok\":%s}\n", status ? "false" : "true");
		fclose(f);
	}
	return status;
}
