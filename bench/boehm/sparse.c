/*
 * sparse.c - sparse-update benchmark for Boehm GC's generational
 * (incremental) mode.
 *
 * A large long-lived heap of small objects is built once: --mib MiB of
 * 64-byte nodes (56 bytes requested: six pointer fields and a key; Boehm
 * rounds the request plus its one extra byte up to 64), each field pointing at
 * a random node, reached through a two-level table whose pieces are
 * themselves small objects (2040-byte chunks of 255 node pointers, so that no
 * large object is written after the build).  Then, for --rounds rounds:
 *
 *   - update: --frac of all pointer fields, at random nodes and random field
 *     positions, get a pointer to a freshly allocated node ("leaf"); the leaf
 *     a field held before becomes garbage;
 *   - collect: one collection (see --collect below).
 *
 * Few pointers change per round, spread over the whole heap, so a
 * generational collector with page-level dirty bits rescans a large part of
 * the heap while a card-level one rescans little: the case fgvm's fine cards
 * are meant for.  The default fraction, 0.1 %, writes about 0.6 % of the nodes,
 * i.e. about a third of the heap's pages.
 *
 * Which collection (--collect):
 *
 *   minor (default): GC_start_incremental_collection(), then
 *     GC_collect_a_little() until it returns 0.
 *
 *     In Boehm 8.2.2 (alloc.c) a partial collection, the generational
 *     "minor" one, is begun only by GC_maybe_gc().  That runs from
 *     allocation and from GC_collect_a_little() when no collection is in
 *     progress, but acts only when GC_should_collect() is true: once enough
 *     was allocated since the last collection (about the heap's scan size /
 *     GC_free_space_divisor / 2 in incremental mode, tens of MiB here, far
 *     more than a round allocates), or once after
 *     GC_start_incremental_collection() has set
 *     GC_should_start_incremental_collection.  GC_maybe_gc() then keeps the
 *     mark bits (except every GC_full_freq + 1-th time, default 20th, or when
 *     GC_need_full_gc, when it clears them: a full collection) and marks with
 *     the world stopped (GC_stopped_mark): the roots plus every marked
 *     object on a dirty page (GC_push_next_marked_dirty) - exactly the work
 *     dirty cards should shrink.  With a pause time limit (GC_PAUSE_TIME_TARGET
 *     or GC_set_time_limit; Debian's parallel-mark build has none by
 *     default) the stopped mark may be abandoned and the collection finished by
 *     later GC_collect_a_little() calls, with a last short world-stopped
 *     mark; hence the loop, which ends when no collection is in progress.
 *
 *     GC_gcollect() would not do: GC_try_to_collect_inner() always clears all
 *     mark bits (GC_clear_marks) and marks the whole heap from the roots, a
 *     full collection in incremental mode too, in which dirty bits play no
 *     part.  GC_collect_a_little() alone would not either: without
 *     GC_start_incremental_collection() it does nothing for many rounds (see
 *     above).
 *
 *     In non-incremental mode GC_start_incremental_collection() is a no-op,
 *     and the round falls back to GC_gcollect().
 *
 *   full: GC_gcollect() - a full collection per round, for reference.
 *
 *   alloc: no explicit call; collections happen only when the leaves'
 *     allocation triggers them (rare with small --frac).
 *
 * Reported for the rounds only (the build is reported separately): wall
 * time, time spent updating (the mutator, which takes the write faults) and
 * collecting, every world-stopped pause (minor and full apart), collections,
 * minor page faults, bytes rescanned (adapter only, else -1).  After the
 * rounds every node and every field is checked: a node a collection wrongly
 * freed is cleared by Boehm's sweep, which the keys reveal.
 *
 * Build: gcc -O2 -std=gnu11 -Wall -Wextra -pthread \
 *            -o bench/boehm/sparse bench/boehm/sparse.c -lgc -ldl
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define GC_THREADS
#include <gc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gcstats.h"

#define NFIELDS 6
#define CHUNK_SLOTS 255 /* 2040 bytes + Boehm's extra byte: one 2048 slot */

typedef struct node {
	struct node *f[NFIELDS];
	uintptr_t key; /* last word: Boehm's sweep clears a freed object */
} node;

typedef struct chunk {
	node *slot[CHUNK_SLOTS];
} chunk;

#define NODE_KEY(i) (((uintptr_t)(i) << 8) | 0xa5)
#define LEAF_KEY(r) (((uintptr_t)(r) << 8) | 0x5a)

static chunk **dir; /* the root: a global, so Boehm scans it as a root */
static size_t nnodes, nchunks;
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	uint64_t x = rng_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545f4914f6cdd1dull;
}

static size_t rnd_below(size_t n)
{
	return (size_t)((rng() >> 11) % n);
}

static node *node_at(size_t i)
{
	return dir[i / CHUNK_SLOTS]->slot[i % CHUNK_SLOTS];
}

static void *xmalloc_gc(size_t n)
{
	void *p = GC_MALLOC(n);

	if (!p) {
		fprintf(stderr, "sparse: out of memory\n");
		exit(2);
	}
	return p;
}

static void build(void)
{
	size_t i, j;

	nchunks = (nnodes + CHUNK_SLOTS - 1) / CHUNK_SLOTS;
	dir = xmalloc_gc(nchunks * sizeof(chunk *));
	for (i = 0; i < nchunks; i++)
		dir[i] = xmalloc_gc(sizeof(chunk));
	for (i = 0; i < nnodes; i++) {
		node *n = xmalloc_gc(sizeof(node));

		n->key = NODE_KEY(i);
		dir[i / CHUNK_SLOTS]->slot[i % CHUNK_SLOTS] = n;
	}
	for (i = 0; i < nnodes; i++) {
		node *n = node_at(i);

		for (j = 0; j < NFIELDS; j++)
			n->f[j] = node_at(rnd_below(nnodes));
	}
}

static void update(size_t count, unsigned round)
{
	size_t u;

	for (u = 0; u < count; u++) {
		node *n = node_at(rnd_below(nnodes));
		node *leaf = xmalloc_gc(sizeof(node));

		leaf->key = LEAF_KEY(round);
		n->f[rnd_below(NFIELDS)] = leaf;
	}
}

enum { COLLECT_MINOR, COLLECT_FULL, COLLECT_ALLOC };

static void collect(int how)
{
	switch (how) {
	case COLLECT_MINOR:
		if (!GC_is_incremental_mode()) {
			GC_gcollect();
			break;
		}
		GC_start_incremental_collection();
		while (GC_collect_a_little())
			;
		break;
	case COLLECT_FULL:
		GC_gcollect();
		break;
	default:
		break;
	}
}

/* Every node has its key, every field points at a node or a leaf. */
static size_t verify(unsigned rounds)
{
	size_t i, j, bad = 0;

	for (i = 0; i < nchunks; i++)
		if (!dir[i])
			return nnodes;
	for (i = 0; i < nnodes; i++) {
		node *n = node_at(i);

		if (!n || n->key != NODE_KEY(i)) {
			bad++;
			continue;
		}
		for (j = 0; j < NFIELDS; j++) {
			node *t = n->f[j];
			uintptr_t k;

			if (!t) {
				bad++;
				continue;
			}
			k = t->key;
			if ((k & 0xff) == 0xa5 && (k >> 8) < nnodes)
				continue;
			if ((k & 0xff) == 0x5a && (k >> 8) < rounds)
				continue;
			bad++;
		}
	}
	return bad;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: sparse [--mib M] [--frac F] [--rounds R] "
		"[--collect minor|full|alloc] [--no-incremental] [--seed S] "
		"[--json]\n"
		"  --mib M           live nodes, MiB (default 256; 64-byte "
		"nodes)\n"
		"  --frac F          pointer fields updated per round: a "
		"fraction, or a percentage with '%%' (default 0.1%%)\n"
		"  --rounds R        update+collect rounds (default 10)\n"
		"  --collect HOW     minor (default), full, alloc: see the "
		"source\n"
		"  --no-incremental  do not call GC_enable_incremental() "
		"(GC_ENABLE_INCREMENTAL in the environment still turns it "
		"on)\n");
	exit(2);
}

int main(int argc, char **argv)
{
	double mib = 256, frac = 0.001;
	unsigned rounds = 10, r;
	int incremental = 1, json = 0, how = COLLECT_MINOR, a, ok;
	size_t per_round, bad, p_begin, p_end, p_build0;
	uint64_t t_prog0, t_build0, t_build1, t_begin, t_end, t_upd = 0,
			t_col = 0;
	unsigned long gc_build0, gc0, gc1;
	long long resc0, resc1;
	faults f0, f1;
	pause_split pauses;
	pause_stats build_p;
	const char *how_name[] = { "minor", "full", "alloc" };
	char ver[32];

	for (a = 1; a < argc; a++) {
		if (!strcmp(argv[a], "--mib") && a + 1 < argc) {
			mib = atof(argv[++a]);
		} else if (!strcmp(argv[a], "--frac") && a + 1 < argc) {
			char *end;

			frac = strtod(argv[++a], &end);
			if (*end == '%')
				frac /= 100.0;
		} else if (!strcmp(argv[a], "--rounds") && a + 1 < argc) {
			rounds = (unsigned)atoi(argv[++a]);
		} else if (!strcmp(argv[a], "--collect") && a + 1 < argc) {
			a++;
			if (!strcmp(argv[a], "minor"))
				how = COLLECT_MINOR;
			else if (!strcmp(argv[a], "full"))
				how = COLLECT_FULL;
			else if (!strcmp(argv[a], "alloc"))
				how = COLLECT_ALLOC;
			else
				usage();
		} else if (!strcmp(argv[a], "--no-incremental")) {
			incremental = 0;
		} else if (!strcmp(argv[a], "--seed") && a + 1 < argc) {
			rng_state = strtoull(argv[++a], NULL, 0) | 1;
		} else if (!strcmp(argv[a], "--json")) {
			json = 1;
		} else {
			usage();
		}
	}
	if (mib <= 0 || frac < 0 || frac > 1 || rounds < 1)
		usage();
	nnodes = (size_t)(mib * 1024 * 1024 / 64);
	if (nnodes < 1000)
		nnodes = 1000;
	per_round = (size_t)(frac * (double)nnodes * NFIELDS + 0.5);

	t_prog0 = now_ns();
	GC_INIT();
	pr_install();
	if (incremental)
		GC_enable_incremental();

	/* Build without collecting, then one full collection as the base. */
	t_build0 = now_ns();
	gc_build0 = (unsigned long)GC_get_gc_no();
	p_build0 = pr_mark();
	GC_disable();
	build();
	GC_enable();
	GC_gcollect();
	t_build1 = now_ns();

	stderr_marker("measure begin");
	p_begin = pr_mark();
	gc0 = (unsigned long)GC_get_gc_no();
	resc0 = fg_bytes_rescanned();
	f0 = get_faults();
	t_begin = now_ns();
	for (r = 0; r < rounds; r++) {
		uint64_t t0 = now_ns(), t1;

		update(per_round, r);
		t1 = now_ns();
		collect(how);
		t_upd += t1 - t0;
		t_col += now_ns() - t1;
	}
	t_end = now_ns();
	f1 = get_faults();
	resc1 = fg_bytes_rescanned();
	gc1 = (unsigned long)GC_get_gc_no();
	p_end = pr_mark();
	stderr_marker("measure end");

	bad = verify(rounds);
	ok = bad == 0;

	pauses = pr_split(p_begin, p_end);
	build_p = pr_stats(p_build0, p_begin, 0);
	libgc_version(ver, sizeof(ver));

	if (json) {
		pr_json_head(stdout, "sparse", ver);
		printf("\"collect\":\"%s\",\"mib\":%.1f,\"nodes\":%zu,"
		       "\"frac\":%g,\"updates_per_round\":%zu,\"rounds\":%u,"
		       "\"ok\":%s,\"bad\":%zu,\"wall_ms\":%.3f,"
		       "\"update_ms\":%.3f,\"collect_ms\":%.3f,"
		       "\"build_ms\":%.3f,\"total_ms\":%.3f,"
		       "\"collections\":%lu,\"build_collections\":%lu,",
		       how_name[how], mib, nnodes, frac, per_round, rounds,
		       ok ? "true" : "false", bad,
		       (double)(t_end - t_begin) / 1e6, (double)t_upd / 1e6,
		       (double)t_col / 1e6,
		       (double)(t_build1 - t_build0) / 1e6,
		       (double)(t_end - t_prog0) / 1e6, gc1 - gc0,
		       gc0 - gc_build0);
		pr_json_split(stdout, pauses);
		putchar(',');
		pr_json_stats(stdout, "pauses_build", build_p);
		printf(",\"pauses_dropped\":%lu,\"minflt\":%ld,\"majflt\":%ld,"
		       "\"bytes_rescanned\":%lld,\"bytes_rescanned_total\":%lld,"
		       "\"heap_bytes\":%zu,",
		       pr_dropped, f1.minflt - f0.minflt, f1.majflt - f0.majflt,
		       resc0 < 0 ? -1 : resc1 - resc0, resc1,
		       GC_get_heap_size());
		pr_json_list(stdout, "pause_list", p_begin, p_end);
		printf("}\n");
	} else {
		printf("sparse: libgc %s (%s), %s, collect=%s: %zu nodes "
		       "(%.0f MiB), %u rounds of %zu updates (frac %g): %s\n",
		       ver, libgc_path(),
		       GC_is_incremental_mode() ? "incremental" :
						  "non-incremental",
		       how_name[how], nnodes, mib, rounds, per_round, frac,
		       ok ? "heap intact" : "HEAP DAMAGED");
		if (!ok)
			printf("  %zu bad nodes or fields\n", bad);
		printf("build %.1f ms; rounds: wall %.1f ms (update %.1f ms, "
		       "collect %.1f ms), %lu collections, %ld minor faults, "
		       "bytes rescanned %lld, heap %zu MiB\n",
		       (double)(t_build1 - t_build0) / 1e6,
		       (double)(t_end - t_begin) / 1e6, (double)t_upd / 1e6,
		       (double)t_col / 1e6, gc1 - gc0, f1.minflt - f0.minflt,
		       resc0 < 0 ? -1 : resc1 - resc0,
		       GC_get_heap_size() >> 20);
		pr_text_split(stdout, pauses);
	}
	return ok ? 0 : 1;
}
