/* reprotect.c - what re-protecting written pages costs, by kernel call.
 *
 * The uffd backends end a collection by write-protecting every page written
 * since the last one.  Linux offers two ways, and this probe times both on
 * the same pages, so that the choice (and any idea of changing it) rests on
 * a figure from the machine at hand:
 *
 *   scan+wp      one PAGEMAP_SCAN with PM_SCAN_WP_MATCHING: finds the
 *                written pages and re-protects them in the same walk (what
 *                backend_uffd_async.c does).  Linux flushes the TLB per
 *                2 MiB page table that had a written page.
 *   ro+ioctl:G   a read-only PAGEMAP_SCAN, then one UFFDIO_WRITEPROTECT per
 *                run of written pages, runs closer than G pages merged into
 *                one call ("all": one call over the hull).  One flush per
 *                call.  With G = 0 each call covers only pages the scan
 *                saw written, so a concurrent write is reported now or at
 *                the next collection, as with scan+wp; with G > 0 a page
 *                written in a covered gap between the two calls would be
 *                re-protected unreported: only for a stopped world.
 *   mixed:K      the read-only scan, then per 2 MiB page table one call per
 *                run where it has at most K runs, else one PAGEMAP_SCAN
 *                with write-protect over that 2 MiB (sound as G = 0 is).
 *
 * Per round: W distinct pages, chosen by a fixed-seed generator, are
 * written once; then one method resets them, timed; then a read-only scan
 * checks that nothing reads written any more (a method that left a page
 * writable fails the run).  The methods take turns within each round, so
 * a drifting machine moves them alike.  Medians over the rounds.
 *
 * usage: bench/reprotect [--mib N] [--writes W[,W...]] [--rounds R]
 *                        [--gaps G[,G...]] [--mixed K[,K...]]
 *   defaults: --mib 256 --writes 470,3300 --rounds 30 --gaps 0,64,all
 *   --mixed 4
 * Exit status: 0 measured, 1 a method left written pages behind, 2 bad
 * arguments, 77 this kernel lacks userfaultfd write-protect (async) or
 * PAGEMAP_SCAN (the reason on stderr).
 */
#ifndef _GNU_SOURCE /* config.h defines it in the build */
#define _GNU_SOURCE
#endif
#include "fg_compat.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define MAX_LIST 8
#define VEC_LEN 512

static int uffd = -1, pagemap = -1;
static struct page_region vec[VEC_LEN];

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void die(const char *what)
{
	fprintf(stderr, "reprotect: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void writeprotect(uintptr_t start, uintptr_t end)
{
	struct uffdio_writeprotect wp = {
		.range = {.start = start, .len = end - start},
		.mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};

	if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) < 0)
		die("UFFDIO_WRITEPROTECT");
}

/* The written runs of [start, end), resuming the walk where the kernel
 * stopped it (it may stop before vec is full): into runs (when not NULL,
 * at most max of them) as well.  Returns the number of runs found, or -1
 * if runs overflowed. */
static long scan(uintptr_t start, uintptr_t end, int wp,
		 struct page_region *runs, long max)
{
	struct pm_scan_arg arg = {
		.size = sizeof arg,
		.flags = wp ? PM_SCAN_WP_MATCHING : 0,
		.start = start,
		.end = end,
		.vec = (uintptr_t)vec,
		.vec_len = VEC_LEN,
		.category_mask = PAGE_IS_WRITTEN,
		.return_mask = PAGE_IS_WRITTEN,
	};
	long total = 0;

	while (arg.start < end) {
		int n = ioctl(pagemap, PAGEMAP_SCAN, &arg);

		if (n < 0)
			die("PAGEMAP_SCAN");
		if (runs) {
			if (total + n > max)
				return -1;
			memcpy(&runs[total], vec, n * sizeof *vec);
		}
		total += n;
		if (arg.walk_end <= arg.start)
			break;
		arg.start = arg.walk_end;
	}
	return total;
}

/* The read-only scan of the methods after the first: at most max runs
 * (the pages written), or some other writer broke the count. */
static long read_runs(uintptr_t start, uintptr_t end,
		      struct page_region *runs, long max)
{
	long n = scan(start, end, 0, runs, max);

	if (n < 0) {
		fprintf(stderr, "reprotect: more written runs than pages "
				"written: another writer?\n");
		exit(1);
	}
	return n;
}

/* A read-only scan, then UFFDIO_WRITEPROTECT over the runs, merged across
 * gaps of at most gap pages (gap < 0: one call over the hull).  Returns
 * the number of calls. */
static long ro_then_ioctl(uintptr_t start, uintptr_t end, long gap,
			  struct page_region *runs, long max)
{
	long n = read_runs(start, end, runs, max), calls = 0;

	for (long i = 0; i < n;) {
		uintptr_t s = runs[i].start, e = runs[i].end;
		long j = i + 1;

		while (j < n && (gap < 0 || runs[j].start - e <= gap * PAGE))
			e = runs[j++].end;
		writeprotect(s, e);
		calls++;
		i = j;
	}
	return calls;
}

/* A read-only scan, then per 2 MiB page table: an UFFDIO_WRITEPROTECT per
 * run where it has at most k runs, else one PAGEMAP_SCAN with write-protect
 * over it.  Sound with concurrent writers as ro+ioctl:0 is (each call
 * covers only pages the scan saw written, or re-reads what it resets).
 * Returns the number of calls after the scan. */
static long mixed(uintptr_t start, uintptr_t end, long k,
		  struct page_region *runs, long max)
{
	const uintptr_t chunk = 2UL << 20;
	long n = read_runs(start, end, runs, max), calls = 0;

	for (long i = 0; i < n;) {
		uintptr_t c = runs[i].start & ~(chunk - 1);
		long j = i;

		while (j < n && (runs[j].start & ~(chunk - 1)) == c &&
		       runs[j].end <= c + chunk)
			j++;
		if (j == i) /* a run across the boundary: on its own */
			j = i + 1;
		if (j - i <= k) {
			for (long q = i; q < j; q++)
				writeprotect(runs[q].start, runs[q].end);
			calls += j - i;
		} else {
			uintptr_t s = c > start ? c : start;
			uintptr_t e = c + chunk < end ? c + chunk : end;

			(void)scan(s, e, 1, NULL, 0);
			calls++;
		}
		i = j;
	}
	return calls;
}

static int parse_list(const char *s, long *out, int allow_all)
{
	int n = 0;
	char *copy = strdup(s), *save = NULL;

	for (char *t = strtok_r(copy, ",", &save); t && n < MAX_LIST;
	     t = strtok_r(NULL, ",", &save)) {
		char *end;

		if (allow_all && !strcmp(t, "all")) {
			out[n++] = -1;
			continue;
		}
		errno = 0;
		out[n] = strtol(t, &end, 10);
		if (errno || *end || out[n] < 0) {
			n = -1;
			break;
		}
		n++;
	}
	free(copy);
	return n;
}

static int setup(size_t len, char **base)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED,
	};
	struct uffdio_register reg = {.mode = UFFDIO_REGISTER_MODE_WP};
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		die("mmap");
	memset(p, 1, len); /* populated: first touches are not timed */
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0) {
		fprintf(stderr, "reprotect: userfaultfd with WP_ASYNC: %s\n",
			strerror(errno));
		return 77;
	}
	reg.range.start = (uintptr_t)p;
	reg.range.len = len;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
		fprintf(stderr, "reprotect: UFFDIO_REGISTER (write-protect): "
				"%s\n", strerror(errno));
		return 77;
	}
	pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pagemap < 0)
		die("/proc/self/pagemap");
	writeprotect((uintptr_t)p, (uintptr_t)p + len);
	{
		struct pm_scan_arg probe = {
			.size = sizeof probe,
			.start = (uintptr_t)p,
			.end = (uintptr_t)p + PAGE,
			.vec = (uintptr_t)vec,
			.vec_len = 1,
			.category_mask = PAGE_IS_WRITTEN,
			.return_mask = PAGE_IS_WRITTEN,
		};

		if (ioctl(pagemap, PAGEMAP_SCAN, &probe) < 0) {
			fprintf(stderr, "reprotect: PAGEMAP_SCAN: %s (Linux "
					">= 6.7)\n", strerror(errno));
			return 77;
		}
	}
	*base = p;
	return 0;
}

int main(int argc, char **argv)
{
	long mib = 256, rounds = 30, writes[MAX_LIST] = {470, 3300};
	long gaps[MAX_LIST] = {0, 64, -1}, ks[MAX_LIST] = {4};
	int nw = 2, ng = 3, nk = 1, rc;
	static const struct option opts[] = {
		{"mib", required_argument, NULL, 'm'},
		{"writes", required_argument, NULL, 'w'},
		{"rounds", required_argument, NULL, 'r'},
		{"gaps", required_argument, NULL, 'g'},
		{"mixed", required_argument, NULL, 'k'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	char *p;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			mib = atol(optarg);
			break;
		case 'r':
			rounds = atol(optarg);
			break;
		case 'w':
			nw = parse_list(optarg, writes, 0);
			break;
		case 'g':
			ng = parse_list(optarg, gaps, 1);
			break;
		case 'k':
			nk = parse_list(optarg, ks, 0);
			break;
		default:
			fprintf(stderr,
				"usage: %s [--mib N] [--writes W[,W...]] "
				"[--rounds R] [--gaps G[,G...]|all] "
				"[--mixed K[,K...]]\n",
				argv[0]);
			return c == 'h' ? 0 : 2;
		}
	}
	if (mib < 2 || mib > 65536 || rounds < 1 || rounds > 10000 ||
	    nw < 1 || ng < 1 || nk < 1) {
		fprintf(stderr, "reprotect: bad arguments (--mib 2..65536, "
				"--rounds 1..10000, lists of numbers >= 0)\n");
		return 2;
	}
	size_t len = (size_t)mib << 20, npages = len / PAGE;

	for (int i = 0; i < nw; i++)
		if (writes[i] < 1 || (size_t)writes[i] > npages / 2) {
			fprintf(stderr, "reprotect: --writes %ld: 1 to %zu for "
					"--mib %ld\n",
				writes[i], npages / 2, mib);
			return 2;
		}
	rc = setup(len, &p);
	if (rc)
		return rc;

	uintptr_t lo = (uintptr_t)p, hi = lo + len;
	int nm = 1 + ng + nk; /* scan+wp, ro+ioctl:G..., mixed:K... */
	double *t = calloc((size_t)rounds * nm, sizeof *t);
	long *calls = calloc(nm, sizeof *calls);
	unsigned char *seen = calloc(npages, 1);
	long maxw = 0;

	for (int i = 0; i < nw; i++)
		if (writes[i] > maxw)
			maxw = writes[i];
	struct page_region *runs = calloc(maxw, sizeof *runs);

	if (!t || !calls || !seen || !runs)
		die("calloc");
	printf("reprotect: %ld MiB populated, %ld rounds; median us to "
	       "re-protect W written pages\n",
	       mib, rounds);
	for (int w = 0; w < nw; w++) {
		uint64_t seed = 42;

		for (long r = 0; r < rounds; r++) {
			for (int m = 0; m < nm; m++) {
				double t0;

				/* W distinct pages, one byte each. */
				memset(seen, 0, npages);
				for (long k = 0; k < writes[w];) {
					size_t pg;

					seed = seed * 6364136223846793005ULL +
					       1442695040888963407ULL;
					pg = (seed >> 33) % npages;
					if (seen[pg])
						continue;
					seen[pg] = 1;
					p[pg * PAGE + 8]++;
					k++;
				}
				t0 = now_us();
				if (m == 0)
					calls[m] = scan(lo, hi, 1, NULL, 0) >= 0;
				else if (m <= ng)
					calls[m] = ro_then_ioctl(
						lo, hi, gaps[m - 1], runs,
						writes[w]);
				else
					calls[m] = mixed(lo, hi, ks[m - 1 - ng],
							 runs, writes[w]);
				t[m * rounds + r] = now_us() - t0;
				if (scan(lo, hi, 0, NULL, 0) != 0) {
					fprintf(stderr,
						"reprotect: method %d left "
						"written pages behind\n",
						m);
					return 1;
				}
			}
		}
		printf("W = %ld:\n", writes[w]);
		for (int m = 0; m < nm; m++) {
			double *v = &t[m * rounds];
			char name[64];

			qsort(v, rounds, sizeof *v, cmp_double);
			if (m == 0)
				snprintf(name, sizeof name, "scan+wp");
			else if (m > ng)
				snprintf(name, sizeof name, "mixed:%ld",
					 ks[m - 1 - ng]);
			else if (gaps[m - 1] < 0)
				snprintf(name, sizeof name, "ro+ioctl:all");
			else
				snprintf(name, sizeof name, "ro+ioctl:%ld",
					 gaps[m - 1]);
			printf("  %-14s %9.0f us  %6.2f us/page", name,
			       v[rounds / 2], v[rounds / 2] / writes[w]);
			if (m > 0)
				printf("  (%ld calls)", calls[m]);
			printf("\n");
		}
	}
	return 0;
}
