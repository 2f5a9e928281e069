/*
 * gcstats.h - in-process measurement shared by the Boehm GC benchmarks
 * (gcbench.c, sparse.c).  Header-only; include it once per program after
 * <gc.h> (compiled with GC_THREADS defined).
 *
 * What it measures:
 *  - every world-stopped pause, from GC_EVENT_PRE_STOP_WORLD to
 *    GC_EVENT_POST_START_WORLD, via GC_set_on_collection_event();
 *  - whether the pause belonged to a full collection (GC_set_start_callback
 *    fires at the start of every full collection, never of a partial one);
 *  - the collection count (GC_get_gc_no), minor/major page faults
 *    (getrusage), and the adapter's "bytes rescanned" counter when the
 *    loaded libgc exports GC_fg_get_bytes_rescanned (looked up with dlsym,
 *    so the same binary runs on stock libgc, where the value is -1).
 *
 * The event callback runs in the collecting thread with the GC lock held and,
 * for the end event, just after the other threads were resumed; the world may
 * be stopping or stopped.  It therefore only reads the monotonic clock (vDSO,
 * no system call, async-signal-safe) and writes into a buffer mmap'ed up front.
 * The buffer comes from mmap, not from the data segment or malloc, so that
 * Boehm neither scans it as a root nor sees it at all.
 *
 * Events are serialized by the GC lock, so no atomics are needed between
 * callbacks; the main thread reads the counters only when no collection can be
 * running (between phases of a single-threaded program, or after joining all
 * threads), and reads pr_n with an atomic load for the phase marks.
 */
#ifndef FG_BENCH_GCSTATS_H
#define FG_BENCH_GCSTATS_H

#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <gc/gc_mark.h> /* GC_set_start_callback */

typedef struct {
	uint64_t t0;  /* ns, CLOCK_MONOTONIC, before the world is stopped */
	uint64_t t1;  /* ns, after the world was restarted */
	uint32_t full; /* the pause belongs to a full collection */
	uint32_t done; /* the pause completed a collection (gc_no advanced) */
} pause_rec;

#define PR_CAP ((size_t)1 << 20) /* 1M pauses, 24 MiB of address space */

static pause_rec *pr_buf;
static size_t pr_n;              /* pauses recorded */
static unsigned long pr_dropped; /* pauses beyond PR_CAP */
static uint64_t pr_cur_t0;
static GC_word pr_cur_gcno;
static int pr_in_pause;
static volatile int pr_full_pending; /* set by the start callback */

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void GC_CALLBACK pr_on_full_start(void)
{
	/* Called with the GC lock held at the start of a full collection. */
	pr_full_pending = 1;
}

static void GC_CALLBACK pr_on_event(GC_EventType e)
{
	switch (e) {
	case GC_EVENT_PRE_STOP_WORLD:
		pr_cur_t0 = now_ns();
		pr_cur_gcno = GC_get_gc_no();
		pr_in_pause = 1;
		break;
	case GC_EVENT_POST_START_WORLD:
		if (!pr_in_pause)
			break;
		pr_in_pause = 0;
		if (pr_n < PR_CAP) {
			pause_rec *r = &pr_buf[pr_n];

			r->t0 = pr_cur_t0;
			r->t1 = now_ns();
			r->full = (uint32_t)pr_full_pending;
			r->done = GC_get_gc_no() != pr_cur_gcno;
			__atomic_store_n(&pr_n, pr_n + 1, __ATOMIC_RELEASE);
		} else {
			pr_dropped++;
		}
		/* A full collection may span several pauses when marking is
		 * time-limited; it ends with the pause that advances gc_no. */
		if (GC_get_gc_no() != pr_cur_gcno)
			pr_full_pending = 0;
		break;
	default:
		break;
	}
}

/* Call right after GC_INIT() (and before anything allocates much). */
static void pr_install(void)
{
	void *p = mmap(NULL, PR_CAP * sizeof(pause_rec), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED) {
		fprintf(stderr, "mmap pause buffer: %s\n", strerror(errno));
		exit(2);
	}
	pr_buf = p;
	GC_set_start_callback(pr_on_full_start);
	GC_set_on_collection_event(pr_on_event);
}

static size_t pr_mark(void)
{
	return __atomic_load_n(&pr_n, __ATOMIC_ACQUIRE);
}

typedef struct {
	size_t count;
	double total_ms, mean_ms, p50_ms, p99_ms, max_ms;
} pause_stats;

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static double pct(const double *v, size_t n, double q)
{
	size_t k;

	if (n == 0)
		return 0.0;
	k = (size_t)(q * (double)n + 0.999999999);
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1];
}

/*
 * Statistics over pauses [from, to); which: 0 all, 1 minor only, 2 full
 * only.  Uses malloc (never called from the callback).
 */
static pause_stats pr_stats(size_t from, size_t to, int which)
{
	pause_stats s = { 0, 0, 0, 0, 0, 0 };
	double *v = malloc((to - from + 1) * sizeof(double));
	size_t i, n = 0;

	if (!v)
		return s;
	for (i = from; i < to; i++) {
		if (which == 1 && pr_buf[i].full)
			continue;
		if (which == 2 && !pr_buf[i].full)
			continue;
		v[n++] = (double)(pr_buf[i].t1 - pr_buf[i].t0) / 1e6;
	}
	qsort(v, n, sizeof(double), cmp_double);
	s.count = n;
	for (i = 0; i < n; i++)
		s.total_ms += v[i];
	if (n) {
		s.mean_ms = s.total_ms / (double)n;
		s.p50_ms = pct(v, n, 0.50);
		s.p99_ms = pct(v, n, 0.99);
		s.max_ms = v[n - 1];
	}
	free(v);
	return s;
}

/* A range's pauses: all of them, and minor and full apart. */
typedef struct {
	pause_stats all, minor, full;
} pause_split;

static pause_split pr_split(size_t from, size_t to)
{
	pause_split p;

	p.all = pr_stats(from, to, 0);
	p.minor = pr_stats(from, to, 1);
	p.full = pr_stats(from, to, 2);
	return p;
}

static void pr_json_stats(FILE *f, const char *name, pause_stats s)
{
	fprintf(f,
		"\"%s\":{\"count\":%zu,\"total_ms\":%.3f,\"mean_ms\":%.4f,"
		"\"p50_ms\":%.4f,\"p99_ms\":%.4f,\"max_ms\":%.4f}",
		name, s.count, s.total_ms, s.mean_ms, s.p50_ms, s.p99_ms,
		s.max_ms);
}

/* The keys compare.py reads for every benchmark; no comma after. */
static void pr_json_split(FILE *f, pause_split p)
{
	pr_json_stats(f, "pauses", p.all);
	fputc(',', f);
	pr_json_stats(f, "pauses_minor", p.minor);
	fputc(',', f);
	pr_json_stats(f, "pauses_full", p.full);
}

/* Every pause of [from, to) as [ms, full] pairs, for plots. */
static void pr_json_list(FILE *f, const char *name, size_t from, size_t to)
{
	size_t i;

	fprintf(f, "\"%s\":[", name);
	for (i = from; i < to; i++)
		fprintf(f, "%s[%.4f,%u]", i > from ? "," : "",
			(double)(pr_buf[i].t1 - pr_buf[i].t0) / 1e6,
			pr_buf[i].full);
	fputc(']', f);
}

static void pr_text_stats(FILE *f, const char *name, pause_stats s)
{
	fprintf(f,
		"%s: %zu pauses, mean %.3f ms, p50 %.3f ms, p99 %.3f ms, "
		"max %.3f ms, total %.1f ms\n",
		name, s.count, s.mean_ms, s.p50_ms, s.p99_ms, s.max_ms,
		s.total_ms);
}

static void pr_text_split(FILE *f, pause_split p)
{
	pr_text_stats(f, "pauses", p.all);
	pr_text_stats(f, "  minor", p.minor);
	pr_text_stats(f, "  full", p.full);
}

typedef unsigned long (*fg_rescanned_fn)(void);

/* The adapter's counter, or -1 when the loaded libgc has none. */
static long long fg_bytes_rescanned(void)
{
	fg_rescanned_fn fn;
	void *sym = dlsym(RTLD_DEFAULT, "GC_fg_get_bytes_rescanned");

	if (!sym)
		return -1;
	memcpy(&fn, &sym, sizeof(fn));
	return (long long)fn();
}

/* File name of the libgc actually loaded (LD_LIBRARY_PATH decides). */
static const char *libgc_path(void)
{
	Dl_info info;
	void *sym = dlsym(RTLD_DEFAULT, "GC_malloc");

	if (sym && dladdr(sym, &info) && info.dli_fname)
		return info.dli_fname;
	return "?";
}

static void libgc_version(char *buf, size_t len)
{
	unsigned v = GC_get_version();

	snprintf(buf, len, "%u.%u.%u", v >> 16, (v >> 8) & 0xff, v & 0xff);
}

typedef struct {
	long minflt, majflt;
} faults;

static faults get_faults(void)
{
	struct rusage ru;
	faults f = { 0, 0 };

	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		f.minflt = ru.ru_minflt;
		f.majflt = ru.ru_majflt;
	}
	return f;
}

/* JSON string with the characters that need it escaped. */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/*
 * Opens the JSON object with what identifies the run: the benchmark, the
 * libgc that was loaded and how it collects.  Ends with a comma: the caller
 * goes on with its own keys.
 */
static void pr_json_head(FILE *f, const char *bench, const char *ver)
{
	fprintf(f, "{\"bench\":\"%s\",\"libgc\":", bench);
	json_str(f, libgc_path());
	fprintf(f, ",\"gc_version\":\"%s\",\"fg_card\":", ver);
	if (getenv("FG_CARD"))
		json_str(f, getenv("FG_CARD"));
	else
		fputs("null", f);
	fprintf(f, ",\"incremental\":%d,\"parallel_markers\":%d,",
		GC_is_incremental_mode(), GC_get_parallel());
}

/*
 * A marker line on stderr, written with write(2) so that it lands in order
 * with GC_PRINT_STATS output (which Boehm also writes unbuffered to fd 2).
 * compare.py uses it to attribute "Marked from N dirty pages" lines to the
 * measured phase.  Written only when GC_PRINT_STATS is set.
 */
static void stderr_marker(const char *what)
{
	char line[128];
	int n;

	if (!getenv("GC_PRINT_STATS"))
		return;
	n = snprintf(line, sizeof(line), "# fgbench: %s\n", what);
	if (n > 0 && write(2, line, (size_t)n) < 0) {
		/* nothing to do: the marker is only a hint */
	}
}

#endif
