/* alloc-trace.c - the ALIAS allocator against glibc malloc on one trace.
 *
 * One deterministic allocation trace (default 2M operations: sizes mostly
 * 16..256 bytes, some up to 4 KiB, a few up to 64 KiB; the live set grows
 * to --live MiB, then churns around it with as many frees as allocations)
 * is replayed, in one run, with glibc malloc/free and with fg_alias_malloc/
 * fg_alias_free at each card size asked for.  Every object is initialised
 * (memset) when allocated, as a program would.
 *
 * Measured per allocator:
 *   ops/s        whole trace, build-up phase (fresh memory: first touches
 *                of pages, for ALIAS of up to 64 views per page) and
 *                steady phase (memory reused);
 *   resident     at the end of the trace, objects still live:
 *                glibc: VmRSS delta + VmPTE delta;
 *                ALIAS: RssAnon delta (side tables) + memfd pages resident
 *                (fstat st_blocks) + VmPTE delta (the views' page tables).
 *                VmRSS is not used for ALIAS: it counts a shared page once
 *                per view that maps it.
 * No collection runs during the trace unless --collect-every N is given.
 * Ratios are ALIAS / glibc of the same run.
 *
 * A calibration explains most of the difference on fresh memory: the cost
 * of the first write to a fresh anonymous page (what glibc pays per page)
 * and to a prefaulted view page (what ALIAS pays per view a page is used
 * through: up to 64 per page at 64-byte cards).  On a host whose
 * hypervisor builds shadow page tables, the latter is microseconds.
 */
#ifndef _GNU_SOURCE /* config.h defines it in the build */
#define _GNU_SOURCE
#endif
#include "fg.h"
#include "fg_alias.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MIB (UINT64_C(1) << 20)
#define MAX_RUNS 8

struct op {
	uint32_t slot;
	uint32_t size; /* 0: free the slot */
};

struct trace {
	struct op *ops;
	size_t n, build; /* ops [0, build) grow the live set */
	size_t slots;	 /* most objects live at once */
	uint64_t allocs, frees, live_bytes_end, live_objs_end;
};

struct calib {
	double anon_ns, view_ns, again_ns;
};

struct config {
	size_t ops, live_mib;
	uint64_t seed;
	size_t cards[MAX_RUNS];
	size_t ncards;
	fg_backend_id backend;
	size_t collect_every;
	bool json;
};

struct mem {
	long rss, anon, shmem, pte; /* kB */
};

struct result {
	const char *name;
	size_t card; /* 0 for glibc */
	double secs, build_secs, steady_secs;
	struct mem before, after;
	uint64_t resident;	  /* bytes, as defined above */
	uint64_t memfd, anon_delta, pte_delta, rss_delta;
	fg_alias_stats st;
	const char *backend;
	uint64_t collections, dirty_cards;
};

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15u);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static uint32_t below(uint64_t *s, uint32_t n)
{
	return (uint32_t)((splitmix(s) >> 32) * n >> 32);
}

/* Small objects dominate (skewed towards the small end), as in most
 * programs' heaps. */
static uint32_t trace_size(uint64_t *s)
{
	uint32_t r = below(s, 1000);

	if (r < 800) {
		double u = (double)below(s, 1u << 20) / (double)(1u << 20);

		return (16 + (uint32_t)(240 * u * u) + 7) & ~7u;
	}
	if (r < 950)
		return 257 + below(s, 768);
	if (r < 995)
		return 1025 + below(s, 3072);
	return 4097 + below(s, 61440);
}

static void *xmap(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	if (p == MAP_FAILED) {
		perror("alloc-trace: mmap");
		exit(1);
	}
	return p;
}

static void make_trace(const struct config *c, struct trace *t)
{
	uint64_t s = c->seed, target = c->live_mib * MIB, live = 0;
	size_t cap = c->ops, nlive = 0, nfree_slots = 0, top = 0;
	uint32_t *live_slot = xmap(cap * sizeof *live_slot);
	uint32_t *sizes = xmap(cap * sizeof *sizes);
	uint32_t *free_slots = xmap(cap * sizeof *free_slots);

	t->ops = xmap(cap * sizeof *t->ops);
	t->n = c->ops;
	t->build = 0;
	for (size_t i = 0; i < t->n; i++) {
		bool alloc;

		if (!t->build && live >= target)
			t->build = i;
		if (!t->build)
			alloc = below(&s, 10) < 7;
		else if (live > target + target / 10)
			alloc = false;
		else if (live < target - target / 10)
			alloc = true;
		else
			alloc = below(&s, 2);
		if (!nlive)
			alloc = true;
		if (alloc) {
			uint32_t slot = nfree_slots ? free_slots[--nfree_slots]
						    : (uint32_t)top++;

			sizes[slot] = trace_size(&s);
			live += sizes[slot];
			live_slot[nlive++] = slot;
			t->ops[i] = (struct op){slot, sizes[slot]};
			t->allocs++;
		} else {
			size_t k = below(&s, (uint32_t)nlive);
			uint32_t slot = live_slot[k];

			live_slot[k] = live_slot[--nlive];
			live -= sizes[slot];
			free_slots[nfree_slots++] = slot;
			t->ops[i] = (struct op){slot, 0};
			t->frees++;
		}
	}
	if (!t->build)
		t->build = t->n;
	t->slots = top;
	t->live_bytes_end = live;
	t->live_objs_end = nlive;
	munmap(live_slot, cap * sizeof *live_slot);
	munmap(sizes, cap * sizeof *sizes);
	munmap(free_slots, cap * sizeof *free_slots);
}

static void read_mem(struct mem *m)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];

	memset(m, 0, sizeof *m);
	if (!f)
		return;
	while (fgets(line, sizeof line, f)) {
		if (!strncmp(line, "VmRSS:", 6))
			m->rss = atol(line + 6);
		else if (!strncmp(line, "RssAnon:", 8))
			m->anon = atol(line + 8);
		else if (!strncmp(line, "RssShmem:", 9))
			m->shmem = atol(line + 9);
		else if (!strncmp(line, "VmPTE:", 6))
			m->pte = atol(line + 6);
	}
	fclose(f);
}

/* The allocator under test. */
struct alloc {
	void *(*malloc)(void *ctx, size_t size);
	void (*free)(void *ctx, void *p);
	void *ctx;
};

static void *glibc_malloc(void *ctx, size_t size)
{
	(void)ctx;
	return malloc(size);
}

static void glibc_free(void *ctx, void *p)
{
	(void)ctx;
	free(p);
}

static void *alias_malloc(void *ctx, size_t size)
{
	return fg_alias_malloc(ctx, size);
}

static void alias_free(void *ctx, void *p)
{
	fg_alias_free(ctx, p);
}

static void count_card(void *card, size_t len, void *arg)
{
	(void)card;
	(void)len;
	(*(uint64_t *)arg)++;
}

/* Replay ops [from, to); returns seconds. */
static double replay(const struct trace *t, const struct alloc *a, void **ptrs,
		     size_t from, size_t to, const struct config *c,
		     struct result *res)
{
	double t0 = now();

	for (size_t i = from; i < to; i++) {
		const struct op *o = &t->ops[i];

		if (o->size) {
			void *p = a->malloc(a->ctx, o->size);

			if (!p) {
				fprintf(stderr, "alloc-trace: %s: op %zu: "
						"malloc(%u): %s\n",
					res->name, i, o->size, strerror(errno));
				exit(1);
			}
			memset(p, (int)i, o->size);
			ptrs[o->slot] = p;
		} else {
			a->free(a->ctx, ptrs[o->slot]);
		}
		if (c->collect_every && res->card && i % c->collect_every == 0) {
			int n = fg_alias_collect(a->ctx, count_card,
						 &res->dirty_cards);

			if (n < 0) {
				fprintf(stderr, "alloc-trace: collect: %s\n",
					fg_strerror(n));
				exit(1);
			}
			res->collections++;
		}
	}
	return now() - t0;
}

static void run(const struct trace *t, const struct alloc *a, void **ptrs,
		const struct config *c, struct result *res)
{
	read_mem(&res->before);
	res->build_secs = replay(t, a, ptrs, 0, t->build, c, res);
	res->steady_secs = replay(t, a, ptrs, t->build, t->n, c, res);
	res->secs = res->build_secs + res->steady_secs;
	read_mem(&res->after);
	res->anon_delta = (uint64_t)(res->after.anon - res->before.anon) * 1024;
	res->pte_delta = (uint64_t)(res->after.pte - res->before.pte) * 1024;
	res->rss_delta = (uint64_t)(res->after.rss - res->before.rss) * 1024;
	if (res->card) {
		res->st.size = sizeof res->st;
		fg_alias_get_stats(a->ctx, &res->st);
		res->memfd = res->st.resident_bytes;
		res->resident = res->anon_delta + res->memfd + res->pte_delta;
	} else {
		res->resident = res->rss_delta + res->pte_delta;
	}
	/* Free what is still live (untimed), so the next run starts alike. */
	{
		bool *dead = calloc(t->slots, 1);

		for (size_t i = t->n; i-- > 0;) {
			const struct op *o = &t->ops[i];

			if (dead[o->slot])
				continue;
			dead[o->slot] = true;
			if (o->size)
				a->free(a->ctx, ptrs[o->slot]);
		}
		free(dead);
	}
}

/* First writes: to fresh anonymous pages, to fresh (view, page) pairs of a
 * heap at 64-byte cards (16-byte objects, 4 per card), and again. */
static void calibrate(const struct config *c, struct calib *k)
{
	enum { PAGES = 256, PER_PAGE = 256 };
	fg_alias_options o = FG_ALIAS_OPTIONS_INIT;
	fg_alias_heap *h;
	char *anon = xmap(PAGES * 4096), **obj;
	double t0;

	munmap(anon, PAGES * 4096); /* xmap populates: map afresh */
	anon = mmap(NULL, PAGES * 4096, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	t0 = now();
	for (int i = 0; i < PAGES; i++)
		anon[i * 4096] = 1;
	k->anon_ns = (now() - t0) / PAGES * 1e9;
	munmap(anon, PAGES * 4096);

	o.card_size = 64;
	o.backend = c->backend;
	o.capacity = 64 * MIB;
	obj = malloc(PAGES * PER_PAGE * sizeof *obj);
	if (!obj || fg_alias_heap_create(&o, &h))
		return;
	for (int i = 0; i < PAGES * PER_PAGE; i++)
		obj[i] = fg_alias_malloc(h, 16);
	t0 = now();
	for (int i = 0; i < PAGES * PER_PAGE; i += 4) /* one per card */
		obj[i][0] = 1;
	k->view_ns = (now() - t0) / (PAGES * 64) * 1e9;
	t0 = now();
	for (int i = 0; i < PAGES * PER_PAGE; i += 4)
		obj[i][0] = 2;
	k->again_ns = (now() - t0) / (PAGES * 64) * 1e9;
	fg_alias_heap_destroy(h);
	free(obj);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: alloc-trace [--ops N] [--live MIB] [--seed S] "
		"[--cards 64,256,...]\n"
		"                   [--backend NAME] [--collect-every N] "
		"[--quick] [--json]\n"
		"  --ops N            trace length (default 2000000)\n"
		"  --live MIB         live set to grow to (default 128)\n"
		"  --cards LIST       ALIAS card sizes to run (default 64,256,1024)\n"
		"  --backend NAME     the ALIAS heap's tracker backend (default auto)\n"
		"  --collect-every N  collect the ALIAS heap every N operations "
		"(default never)\n"
		"  --quick            --ops 400000 --live 32\n");
}

static void parse(int argc, char **argv, struct config *c)
{
	static const struct option opts[] = {
		{"ops", required_argument, NULL, 'n'},
		{"live", required_argument, NULL, 'l'},
		{"seed", required_argument, NULL, 's'},
		{"cards", required_argument, NULL, 'c'},
		{"backend", required_argument, NULL, 'b'},
		{"collect-every", required_argument, NULL, 'e'},
		{"quick", no_argument, NULL, 'q'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int o;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'n':
			c->ops = strtoull(optarg, NULL, 0);
			break;
		case 'l':
			c->live_mib = strtoull(optarg, NULL, 0);
			break;
		case 's':
			c->seed = strtoull(optarg, NULL, 0);
			break;
		case 'c':
			c->ncards = 0;
			for (char *s = strtok(optarg, ","); s && c->ncards < MAX_RUNS;
			     s = strtok(NULL, ","))
				c->cards[c->ncards++] = strtoull(s, NULL, 0);
			break;
		case 'b':
			if (fg_backend_from_name(optarg, &c->backend)) {
				fprintf(stderr, "alloc-trace: unknown backend "
						"%s\n", optarg);
				exit(2);
			}
			break;
		case 'e':
			c->collect_every = strtoull(optarg, NULL, 0);
			break;
		case 'q':
			c->ops = 400000;
			c->live_mib = 32;
			break;
		case 'j':
			c->json = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (!c->ops || !c->live_mib || c->ops > UINT32_MAX) {
		usage(stderr);
		exit(2);
	}
}

static double mops(size_t n, double s)
{
	return s > 0 ? (double)n / s / 1e6 : 0;
}

static void print_table(const struct config *c, const struct trace *t,
			const struct result *r, size_t nr, const struct calib *k)
{
	const struct result *g = &r[0];

	printf("alloc-trace: %zu ops (%" PRIu64 " malloc, %" PRIu64
	       " free), seed %" PRIu64 "; build-up %zu ops, then steady; "
	       "at the end %" PRIu64 " objects, %.1f MiB live (asked)\n",
	       t->n, t->allocs, t->frees, c->seed, t->build, t->live_objs_end,
	       (double)t->live_bytes_end / (double)MIB);
	printf("%-13s %9s %9s %9s %8s | %10s %9s %9s %9s %9s %8s\n", "allocator",
	       "Mops/s", "build", "steady", "slowdown", "resident", "anon",
	       "memfd", "VmPTE", "pte-est", "vs glibc");
	for (size_t i = 0; i < nr; i++) {
		char name[32];

		if (r[i].card)
			snprintf(name, sizeof name, "alias-%zu", r[i].card);
		else
			snprintf(name, sizeof name, "glibc");
		printf("%-13s %9.2f %9.2f %9.2f %7.2fx | %9.1fM %8.1fM %8.1fM "
		       "%8.1fM %8.1fM %7.2fx\n",
		       name, mops(t->n, r[i].secs), mops(t->build, r[i].build_secs),
		       mops(t->n - t->build, r[i].steady_secs),
		       r[i].secs / g->secs, (double)r[i].resident / MIB,
		       (double)(r[i].card ? r[i].anon_delta : r[i].rss_delta) / MIB,
		       (double)r[i].memfd / MIB, (double)r[i].pte_delta / MIB,
		       (double)r[i].st.pte_bytes_estimate / MIB,
		       (double)r[i].resident / (double)g->resident);
	}
	for (size_t i = 1; i < nr; i++)
		printf("alias-%zu: backend %s; %" PRIu64 " view regions "
		       "(%.0f MiB registered), %" PRIu64 " (view, 64 KiB) chunks "
		       "prefaulted; %.1f MiB allocated in %" PRIu64
		       " objects; VmRSS delta %.0f MiB (counts each view's "
		       "mapping of a page); %" PRIu64 " collections during "
		       "the trace (%" PRIu64 " dirty cards)\n",
		       r[i].card, r[i].backend, r[i].st.regions,
		       (double)r[i].st.registered_bytes / MIB,
		       r[i].st.prefaulted_chunks,
		       (double)r[i].st.allocated_bytes / MIB,
		       r[i].st.live_objects, (double)r[i].rss_delta / MIB,
		       r[i].collections, r[i].dirty_cards);
	printf("first write: fresh anonymous page %.0f ns; prefaulted view "
	       "page %.0f ns (later writes %.0f ns); at 64-byte cards a page "
	       "of small objects is written through up to 64 views\n",
	       k->anon_ns, k->view_ns, k->again_ns);
}

static void print_json(const struct config *c, const struct trace *t,
		       const struct result *r, size_t nr, const struct calib *k)
{
	printf("[\n");
	for (size_t i = 0; i < nr; i++) {
		printf("  {\"allocator\": \"%s\", \"card\": %zu, \"backend\": "
		       "\"%s\", \"ops\": %zu, \"seed\": %" PRIu64
		       ", \"live_bytes\": %" PRIu64 ", \"seconds\": %.4f, "
		       "\"ops_per_s\": %.0f, \"build_ops_per_s\": %.0f, "
		       "\"steady_ops_per_s\": %.0f, \"slowdown_vs_glibc\": %.3f, "
		       "\"resident_bytes\": %" PRIu64 ", \"resident_vs_glibc\": "
		       "%.3f, \"anon_delta_bytes\": %" PRIu64
		       ", \"memfd_resident_bytes\": %" PRIu64
		       ", \"vmpte_delta_bytes\": %" PRIu64
		       ", \"pte_estimate_bytes\": %" PRIu64
		       ", \"vmrss_delta_bytes\": %" PRIu64
		       ", \"collections\": %" PRIu64
		       ", \"first_write_anon_page_ns\": %.0f"
		       ", \"first_write_view_page_ns\": %.0f}%s\n",
		       r[i].card ? "alias" : "glibc", r[i].card, r[i].backend,
		       t->n, c->seed, t->live_bytes_end, r[i].secs,
		       (double)t->n / r[i].secs,
		       (double)t->build / r[i].build_secs,
		       (double)(t->n - t->build) / r[i].steady_secs,
		       r[i].secs / r[0].secs, r[i].resident,
		       (double)r[i].resident / (double)r[0].resident,
		       r[i].anon_delta, r[i].memfd, r[i].pte_delta,
		       r[i].st.pte_bytes_estimate, r[i].rss_delta,
		       r[i].collections, k->anon_ns, k->view_ns,
		       i + 1 < nr ? "," : "");
	}
	printf("]\n");
}

int main(int argc, char **argv)
{
	struct config c = {.ops = 2000000, .live_mib = 128, .seed = 42,
			   .cards = {64, 256, 1024}, .ncards = 3,
			   .backend = FG_BACKEND_AUTO};
	struct result r[MAX_RUNS + 1] = {0};
	struct trace t = {0};
	struct calib k = {0};
	struct alloc g = {glibc_malloc, glibc_free, NULL};
	void **ptrs;
	size_t nr = 0;

	parse(argc, argv, &c);
	make_trace(&c, &t);
	ptrs = xmap(t.slots * sizeof *ptrs);

	r[nr].name = "glibc";
	r[nr].backend = "-";
	run(&t, &g, ptrs, &c, &r[nr++]);
	malloc_trim(0);
	for (size_t k = 0; k < c.ncards; k++) {
		fg_alias_options o = FG_ALIAS_OPTIONS_INIT;
		fg_alias_heap *h;
		struct alloc a = {alias_malloc, alias_free, NULL};
		int rc;

		o.card_size = c.cards[k];
		o.backend = c.backend;
		o.capacity = (c.live_mib * 4 + 256) * MIB;
		rc = fg_alias_heap_create(&o, &h);
		if (rc) {
			fprintf(stderr, "alloc-trace: fg_alias_heap_create "
					"(card %zu): %s (%s)\n",
				c.cards[k], fg_strerror(rc),
				fg_last_error_detail());
			return 1;
		}
		a.ctx = h;
		r[nr].name = "alias";
		r[nr].card = c.cards[k];
		r[nr].backend = fg_backend_name(fg_tracker_backend(fg_alias_tracker(h)));
		run(&t, &a, ptrs, &c, &r[nr++]);
		fg_alias_heap_destroy(h);
	}
	calibrate(&c, &k);
	if (c.json)
		print_json(&c, &t, r, nr, &k);
	else
		print_table(&c, &t, r, nr, &k);
	return 0;
}
