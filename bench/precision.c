/* precision.c - how many bytes each precision method reports dirty,
 * against the truth, by card size; and what it costs.
 *
 * Workloads (each epoch: writes, then one collection):
 *   sparse   K random 8-byte writes over a 1 GiB region;
 *   pointer  K pointer-field updates in a linked structure of 48-byte nodes
 *            (nodes straddle 64-byte lines, as heap objects do);
 *   dense    every 8-byte word of a 64 MiB span, in order.
 * Truth: the 64-byte lines whose bytes changed in the epoch (every write
 * stores a value the word never held, so written == changed), rounded out
 * to the card size for the "true bytes at this card size" column; the
 * ratio is reported bytes / true 64-byte-line bytes.
 * Methods: page (FG_PRECISION_PAGE), diff (FG_PRECISION_DIFF) on each
 * requested backend, and alias: the same workloads on objects allocated
 * from an ALIAS heap (64-byte objects for sparse and dense, 48-byte nodes
 * for pointer), over a smaller heap (--alias-mib, default 64 MiB) because
 * filling 1 GiB with 64-byte objects one by one takes long here.
 * Every collection is checked: a changed line not covered by a reported
 * range fails the run (exit 1).
 *
 * Output: a table on stdout; with --json a JSON array of one object per
 * row on stdout instead; with --json-out FILE the table on stdout and the
 * JSON array in FILE (one run for both: make bench, the plot).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fg.h"
#include "fg_alias.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define MIB (UINT64_C(1) << 20)
#define LINE 64

struct cfg {
	unsigned epochs, writes, alias_mib;
	bool json, quick;
	FILE *json_out; /* --json-out: the JSON goes here too */
	fg_backend_id backends[FG_BACKEND_COUNT];
	int nbackends;
};

struct result {
	const char *workload, *method, *backend;
	size_t card;
	uint64_t reported, truth, truth_card, dirty_pages, collect_ns;
	uint64_t diff_ns; /* of collect_ns: comparing with twins */
	uint64_t overhead;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "precision: %s: %s (%s)\n", what, fg_strerror(rc),
		fg_last_error_detail());
	exit(1);
}

/* Lines changed this epoch, as a bitmap over the region. */
struct truth {
	uint64_t *bits;
	size_t nlines;
};

static void mark(struct truth *t, uint8_t *base, void *p, size_t len)
{
	size_t a = (size_t)((uint8_t *)p - base) / LINE;
	size_t b = (size_t)((uint8_t *)p - base + len - 1) / LINE;

	for (size_t i = a; i <= b; i++)
		t->bits[i / 64] |= UINT64_C(1) << (i % 64);
}

static uint64_t stamp = 1;

/* One epoch of a workload over [base, base+len). */
static void run_epoch(const char *w, uint8_t *base, size_t len, unsigned k,
		      struct truth *t)
{
	if (!strcmp(w, "sparse")) {
		for (unsigned i = 0; i < k; i++) {
			uint64_t *p = (uint64_t *)(base + (rnd() % (len / 8)) * 8);

			*p = stamp++;
			mark(t, base, p, 8);
		}
	} else if (!strcmp(w, "pointer")) {
		/* Node: next, left, right, payload[3]: 48 bytes. */
		size_t nodes = len / 48;

		for (unsigned i = 0; i < k; i++) {
			size_t n = rnd() % nodes, f = rnd() % 3;
			uint64_t *field = (uint64_t *)(base + n * 48 + f * 8);

			/* Point at another node; never the value it held. */
			uint64_t v = (uint64_t)(uintptr_t)(base + (rnd() % nodes) * 48);

			*field = v == *field ? v + 48 : v;
			mark(t, base, field, 8);
		}
	} else {
		for (size_t off = 0; off < len; off += 8)
			*(uint64_t *)(base + off) = stamp++;
		mark(t, base, base, len);
	}
}

/* Collect; count reported bytes; check every changed line is covered. */
static void collect_check(fg_tracker *tr, uint8_t *base, size_t len,
			  struct truth *t, struct result *r, bool count)
{
	uint64_t *rep = calloc((t->nlines + 63) / 64, 8);
	fg_stats st0 = {.size = sizeof st0};
	fg_iter it;
	fg_range rg;
	uint64_t t0, bytes = 0, missed = 0, truth = 0, truthc = 0;
	int rc;

	fg_get_stats(tr, &st0);
	t0 = now_ns();
	rc = fg_collect(tr, &it);
	uint64_t dt = now_ns() - t0;
	size_t lpc = r->card / LINE; /* lines per card */

	if (rc < 0)
		die("fg_collect", rc);
	while ((rc = fg_iter_next(&it, &rg)) == 1) {
		size_t a = (size_t)((uint8_t *)rg.addr - base) / LINE;
		size_t b = a + rg.len / LINE;

		bytes += rg.len;
		for (size_t i = a; i < b && i < t->nlines; i++)
			rep[i / 64] |= UINT64_C(1) << (i % 64);
	}
	if (rc < 0)
		die("fg_iter_next", rc);
	for (size_t i = 0; i < t->nlines; i++) {
		bool ch = t->bits[i / 64] >> (i % 64) & 1;

		if (ch && !(rep[i / 64] >> (i % 64) & 1))
			missed++;
		truth += ch;
	}
	for (size_t c = 0; c < t->nlines; c += lpc) {
		for (size_t i = c; i < c + lpc && i < t->nlines; i++) {
			if (t->bits[i / 64] >> (i % 64) & 1) {
				truthc++;
				break;
			}
		}
	}
	if (missed) {
		fprintf(stderr,
			"precision: %s/%s/%s card %zu: %llu changed lines "
			"reported clean — a soundness bug\n",
			r->workload, r->method, r->backend, r->card,
			(unsigned long long)missed);
		exit(1);
	}
	if (count) {
		fg_stats st = {.size = sizeof st};

		fg_get_stats(tr, &st);
		r->reported += bytes;
		r->truth += truth * LINE;
		r->truth_card += truthc * r->card;
		r->dirty_pages += st.last_dirty_pages;
		r->collect_ns += dt;
		r->diff_ns += st.diff_ns - st0.diff_ns;
		if (st.twin_bytes > r->overhead)
			r->overhead = st.twin_bytes;
	}
	memset(t->bits, 0, (t->nlines + 63) / 64 * 8);
	free(rep);
	(void)len;
}

static void measure(const struct cfg *c, const char *w, uint8_t *base,
		    size_t len, fg_backend_id be, unsigned prec, size_t card,
		    struct result *r)
{
	fg_options o = FG_OPTIONS_INIT;
	struct truth t = {.nlines = len / LINE};
	unsigned warm = prec == FG_PRECISION_DIFF ? 2 : 0;
	fg_tracker *tr;
	int rc;

	o.backend = be;
	o.flags = FG_OPT_NO_ENV;
	o.card_size = card;
	o.precision = prec;
	rc = fg_tracker_create(&o, &tr);
	if (rc)
		die("fg_tracker_create", rc);
	rc = fg_register(tr, base, len);
	if (rc)
		die("fg_register", rc);
	t.bits = calloc((t.nlines + 63) / 64, 8);
	memset(r, 0, sizeof *r);
	r->workload = w;
	r->method = prec == FG_PRECISION_DIFF ? "diff" : "page";
	r->backend = fg_backend_name(be);
	r->card = card;
	/* The bitmap of the page-level tracker is part of every method. */
	r->overhead = 0;
	for (unsigned e = 0; e < warm + c->epochs; e++) {
		run_epoch(w, base, len, c->writes, &t);
		collect_check(tr, base, len, &t, r, e >= warm);
	}
	r->overhead += len / 4096 / 8;
	fg_unregister(tr, base, len);
	fg_tracker_destroy(tr);
	free(t.bits);
}

/* ALIAS: reported cards from fg_alias_collect, checked against the lines
 * written (by address; objects are reached only through their views). */
struct alias_acc {
	uintptr_t *lo, *hi;
	size_t n, cap;
	uint64_t bytes;
};

static void alias_card(void *card, size_t len, void *arg)
{
	struct alias_acc *a = arg;

	if (a->n == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 4096;
		a->lo = realloc(a->lo, a->cap * sizeof *a->lo);
		a->hi = realloc(a->hi, a->cap * sizeof *a->hi);
		if (!a->lo || !a->hi) {
			perror("precision: realloc");
			exit(1);
		}
	}
	a->lo[a->n] = (uintptr_t)card;
	a->hi[a->n++] = (uintptr_t)card + len;
	a->bytes += len;
}

static int cmp_u64(const void *x, const void *y)
{
	uintptr_t a = *(const uintptr_t *)x, b = *(const uintptr_t *)y;

	return a < b ? -1 : a > b;
}

static bool covered(const struct alias_acc *a, uintptr_t line)
{
	/* Cards do not overlap; the one starting last at or before line. */
	size_t lo = 0, hi = a->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (a->lo[mid] <= line)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo && line + LINE <= a->hi[lo - 1];
}

static void measure_alias(const struct cfg *c, const char *w, size_t bytes,
			  fg_backend_id be, size_t card, struct result *r)
{
	fg_alias_options o = {.size = sizeof o, .capacity = 2 * bytes,
			      .card_size = card, .backend = be,
			      .flags = FG_ALIAS_NO_ENV};
	size_t objsz = !strcmp(w, "pointer") ? 48 : 64;
	size_t nobj = bytes / objsz;
	uint64_t **obj = malloc(nobj * sizeof *obj);
	size_t maxl = (size_t)c->writes + nobj / 16 * (objsz / LINE + 2);
	uintptr_t *lines = malloc(maxl * sizeof *lines);
	fg_alias_heap *h;
	int rc = fg_alias_heap_create(&o, &h);

	if (rc)
		die("fg_alias_heap_create", rc);
	if (!obj || !lines) {
		perror("precision: malloc");
		exit(1);
	}
	for (size_t i = 0; i < nobj; i++) {
		obj[i] = fg_alias_malloc(h, objsz);
		if (!obj[i])
			die("fg_alias_malloc", -errno);
		memset(obj[i], 0, objsz);
	}
	memset(r, 0, sizeof *r);
	r->workload = w;
	r->method = "alias";
	r->backend = fg_backend_name(be);
	r->card = card;
	for (unsigned e = 0; e < 1 + c->epochs; e++) {
		struct alias_acc acc = {0};
		size_t nl = 0;
		uint64_t t0, dt;
		fg_alias_stats st = {.size = sizeof st};

		if (!strcmp(w, "dense")) {
			/* Every word of the first 1/16 of the objects. */
			for (size_t i = 0; i < nobj / 16; i++) {
				for (size_t k = 0; k < objsz / 8; k++)
					obj[i][k] = stamp++;
			}
		} else {
			for (unsigned i = 0; i < c->writes; i++) {
				size_t n = rnd() % nobj;
				size_t f = rnd() % (objsz / 8);

				obj[n][f] = stamp++;
				lines[nl++] = ((uintptr_t)&obj[n][f]) & ~(uintptr_t)(LINE - 1);
			}
		}
		t0 = now_ns();
		rc = fg_alias_collect(h, alias_card, &acc);
		dt = now_ns() - t0;
		if (rc < 0)
			die("fg_alias_collect", rc);
		qsort(acc.lo, acc.n, sizeof *acc.lo, cmp_u64);
		qsort(acc.hi, acc.n, sizeof *acc.hi, cmp_u64);
		if (!strcmp(w, "dense")) {
			for (size_t i = 0; i < nobj / 16; i++)
				for (size_t k = 0; k < objsz; k += 8) {
					uintptr_t l = ((uintptr_t)obj[i] + k) & ~(uintptr_t)(LINE - 1);

					if (nl < maxl && (!nl || lines[nl - 1] != l))
						lines[nl++] = l;
				}
		}
		qsort(lines, nl, sizeof *lines, cmp_u64);
		size_t uniq = 0;
		for (size_t i = 0; i < nl; i++) {
			if (i && lines[i] == lines[i - 1])
				continue;
			uniq++;
			/* A line an object only partly occupies is covered by
			 * that object's card, which may start mid-line. */
			if (!covered(&acc, lines[i]) &&
			    !covered(&acc, lines[i] + LINE - 1 - (LINE - 1))) {
				uintptr_t p = lines[i];
				bool any = false;

				for (size_t k = 0; k < acc.n && !any; k++)
					any = acc.lo[k] < p + LINE && p < acc.hi[k];
				if (!any) {
					fprintf(stderr, "precision: alias/%s card "
						"%zu: a written line reported clean "
						"— a soundness bug\n", w, card);
					exit(1);
				}
			}
		}
		if (e >= 1) { /* the first collection reports the fill */
			fg_alias_get_stats(h, &st);
			r->reported += acc.bytes;
			r->truth += uniq * LINE;
			r->dirty_pages += acc.n;
			r->collect_ns += dt;
			r->overhead = st.pte_bytes_estimate + st.metadata_bytes;
		}
		free(acc.lo);
		free(acc.hi);
	}
	r->truth_card = r->truth;
	fg_alias_heap_destroy(h);
	free(obj);
	free(lines);
}

static void usage(FILE *f)
{
	fputs("usage: precision [--quick] [--json | --json-out FILE] "
	      "[--backend NAME]... [--epochs N] [--writes K] [--alias-mib M "
	      "(0: no ALIAS rows)]\n",
	      f);
}

/* The rows as a JSON array, one object a line. */
static void print_json(FILE *f, const struct result *res, size_t nres)
{
	fprintf(f, "[\n");
	for (size_t i = 0; i < nres; i++) {
		const struct result *r = &res[i];

		fprintf(f, "  {\"workload\": \"%s\", \"method\": \"%s\", "
			"\"backend\": \"%s\", \"card\": %zu, "
			"\"reported_bytes\": %llu, \"true_bytes\": %llu, "
			"\"true_card_bytes\": %llu, \"ratio\": %.4f, "
			"\"dirty_pages\": %llu, "
			"\"collect_ns_per_dirty_page\": %.1f, "
			"\"diff_ns_per_dirty_page\": %.1f, "
			"\"overhead_bytes\": %llu}%s\n",
			r->workload, r->method, r->backend, r->card,
			(unsigned long long)r->reported,
			(unsigned long long)r->truth,
			(unsigned long long)r->truth_card,
			r->truth ? (double)r->reported / r->truth : 0,
			(unsigned long long)r->dirty_pages,
			r->dirty_pages ? (double)r->collect_ns / r->dirty_pages : 0,
			r->dirty_pages ? (double)r->diff_ns / r->dirty_pages : 0,
			(unsigned long long)r->overhead,
			i + 1 < nres ? "," : "");
	}
	fprintf(f, "]\n");
}

static void print_table(const struct cfg *c, const struct result *res,
			size_t nres)
{
	printf("%-8s %-6s %-11s %6s %14s %14s %8s %12s %10s %14s\n",
	       "workload", "method", "backend", "card", "reported B",
	       "true B (64)", "ratio", "ns/dirty pg", "of it diff", "overhead B");
	for (size_t i = 0; i < nres; i++) {
		const struct result *r = &res[i];

		printf("%-8s %-6s %-11s %6zu %14llu %14llu %8.2f %12.0f %10.0f "
		       "%14llu\n",
		       r->workload, r->method, r->backend, r->card,
		       (unsigned long long)r->reported,
		       (unsigned long long)r->truth,
		       r->truth ? (double)r->reported / r->truth : 0,
		       r->dirty_pages ? (double)r->collect_ns / r->dirty_pages : 0,
		       r->dirty_pages ? (double)r->diff_ns / r->dirty_pages : 0,
		       (unsigned long long)r->overhead);
	}
	printf("ratio = reported bytes / bytes of the 64-byte lines that "
	       "changed; %u epochs of %u writes (diff: after 2 warm-up epochs)\n",
	       c->epochs, c->writes);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"quick", no_argument, NULL, 'q'},
		{"json", no_argument, NULL, 'j'},
		{"json-out", required_argument, NULL, 'o'},
		{"backend", required_argument, NULL, 'b'},
		{"epochs", required_argument, NULL, 'e'},
		{"writes", required_argument, NULL, 'w'},
		{"alias-mib", required_argument, NULL, 'a'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct cfg c = {.epochs = 3, .writes = 10000, .alias_mib = 64};
	static const char *const workloads[] = {"sparse", "pointer", "dense"};
	static const size_t cards[] = {64, 256, 1024, 4096};
	struct result *res;
	const char *json_path = NULL;
	size_t nres = 0;
	int ch;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		fg_backend_id id;

		switch (ch) {
		case 'q':
			c.quick = true;
			break;
		case 'j':
			c.json = true;
			break;
		case 'o':
			json_path = optarg;
			break;
		case 'b':
			if (fg_backend_from_name(optarg, &id) ||
			    c.nbackends == FG_BACKEND_COUNT) {
				fprintf(stderr, "precision: unknown backend %s\n",
					optarg);
				return 2;
			}
			c.backends[c.nbackends++] = id;
			break;
		case 'e':
			c.epochs = (unsigned)atoi(optarg);
			break;
		case 'w':
			c.writes = (unsigned)atoi(optarg);
			break;
		case 'a':
			c.alias_mib = (unsigned)atoi(optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!c.epochs || !c.writes) {
		usage(stderr);
		return 2;
	}
	/* Opened now: a bad path fails before the measurements, not after. */
	if (json_path && !(c.json_out = fopen(json_path, "w"))) {
		fprintf(stderr, "precision: %s: %s\n", json_path,
			strerror(errno));
		return 2;
	}
	if (!c.nbackends) {
		/* The preferred backend, and the one whose first-write hook
		 * takes (validated) twins. */
		c.backends[c.nbackends++] = FG_BACKEND_UFFD_ASYNC;
		c.backends[c.nbackends++] = FG_BACKEND_UFFD_SYNC;
	}
	if (c.quick)
		c.writes /= 4, c.epochs = 2, c.alias_mib /= 4;
	res = calloc(3 * 4 * 3 * (size_t)c.nbackends, sizeof *res);
	for (int bi = 0; bi < c.nbackends; bi++) {
		char why[256];

		if (fg_backend_probe(c.backends[bi], why, sizeof why)) {
			fprintf(stderr, "precision: skipping %s: %s\n",
				fg_backend_name(c.backends[bi]), why);
			continue;
		}
		for (size_t wi = 0; wi < 3; wi++) {
			size_t len = !strcmp(workloads[wi], "sparse")
					     ? (c.quick ? 256 : 1024) * MIB
				     : !strcmp(workloads[wi], "pointer")
					     ? 256 * MIB
					     : 64 * MIB;
			uint8_t *base = mmap(NULL, len, PROT_READ | PROT_WRITE,
					     MAP_PRIVATE | MAP_ANONYMOUS |
						     MAP_POPULATE,
					     -1, 0);

			if (base == MAP_FAILED) {
				perror("precision: mmap");
				return 1;
			}
			for (unsigned p = 0; p < 2; p++)
				for (size_t ci = 0; ci < 4; ci++)
					measure(&c, workloads[wi], base, len,
						c.backends[bi], p, cards[ci],
						&res[nres++]);
			munmap(base, len);
		}
		/* ALIAS on the preferred backend only: its cost is per view. */
		if (bi == 0 && c.alias_mib)
			for (size_t wi = 0; wi < 3; wi++)
				for (size_t ci = 0; ci < 4; ci++)
					measure_alias(&c, workloads[wi],
						      (size_t)c.alias_mib * MIB,
						      c.backends[bi], cards[ci],
						      &res[nres++]);
	}
	if (c.json_out) {
		print_json(c.json_out, res, nres);
		if (fclose(c.json_out)) {
			fprintf(stderr, "precision: %s: %s\n", json_path,
				strerror(errno));
			return 1;
		}
	}
	if (c.json)
		print_json(stdout, res, nres);
	else
		print_table(&c, res, nres);
	return 0;
}
