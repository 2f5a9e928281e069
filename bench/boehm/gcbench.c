/*
 * gcbench.c - GCBench for the Boehm GC API, written from the benchmark's
 * published description (John Ellis and Pete Kovac's benchmark, as adapted
 * by Hans Boehm; MT_GCBench for the threaded variant).
 *
 * The program:
 *  1. builds and drops a "stretch" tree of depth 18 (grows the heap);
 *  2. builds a long-lived binary tree of depth 16 (top-down) and a
 *     long-lived pointer-free array of 500000 doubles, both kept until the
 *     end;
 *  3. for depth = 4, 6, ..., 16 builds N(depth) = 2 * size(18) / size(depth)
 *     temporary trees of that depth top-down (allocate a node, then fill
 *     in its children) and N(depth) more bottom-up (make the children, then
 *     the node), dropping each at once; size(d) = 2^(d+1) - 1 nodes;
 *  4. checks that the long-lived tree still has all its nodes with intact
 *     fields and that the array still holds its values.
 *
 * With --threads N (N > 1) step 3 runs in N threads at once, each doing the
 * whole loop, as in MT_GCBench; steps 1, 2 and 4 run in the main thread.
 *
 * It uses only the public gc.h API and links with -lgc (and -ldl for the
 * optional adapter counter), so one binary runs on the stock libgc.so.1 and
 * on the fgvm adapter through LD_LIBRARY_PATH.
 *
 * Build: gcc -O2 -std=gnu11 -Wall -Wextra -pthread \
 *            -o bench/boehm/gcbench bench/boehm/gcbench.c -lgc -ldl
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define GC_THREADS /* pthread_create -> GC_pthread_create */
#include <gc.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gcstats.h"

enum {
	STRETCH_DEPTH = 18,
	LONG_LIVED_DEPTH = 16,
	ARRAY_SIZE = 500000,
	MIN_DEPTH = 4,
	MAX_DEPTH = 16,
};

typedef struct node {
	struct node *left, *right;
	int i, j;
} node;

static int stretch_depth = STRETCH_DEPTH;
static int long_lived_depth = LONG_LIVED_DEPTH;
static int min_depth = MIN_DEPTH;
static int max_depth = MAX_DEPTH;
static long array_size = ARRAY_SIZE;

/* Per-depth times of the single-threaded run (ms), for the report. */
static double depth_ms[64];

static long tree_size(int depth)
{
	return (1L << (depth + 1)) - 1;
}

static long num_iters(int depth)
{
	return 2 * tree_size(stretch_depth) / tree_size(depth);
}

static node *new_node(node *l, node *r)
{
	node *n = GC_MALLOC(sizeof(node));

	if (!n) {
		fprintf(stderr, "gcbench: out of memory\n");
		exit(2);
	}
	n->left = l;
	n->right = r;
	return n;
}

/* Top-down: the node exists first, then its subtrees are hung under it. */
static void populate(int depth, node *n)
{
	if (depth <= 0)
		return;
	depth--;
	n->left = new_node(NULL, NULL);
	n->right = new_node(NULL, NULL);
	populate(depth, n->left);
	populate(depth, n->right);
}

/* Bottom-up: the subtrees exist first, then the node that joins them. */
static node *make_tree(int depth)
{
	node *l, *r;

	if (depth <= 0)
		return new_node(NULL, NULL);
	l = make_tree(depth - 1);
	r = make_tree(depth - 1);
	return new_node(l, r);
}

static void time_construction(int depth, double *ms)
{
	long k, n = num_iters(depth);
	uint64_t t0 = now_ns();

	for (k = 0; k < n; k++) {
		node *t = new_node(NULL, NULL);

		populate(depth, t);
		t = NULL;
	}
	for (k = 0; k < n; k++) {
		node *t = make_tree(depth);

		(void)t;
	}
	if (ms)
		*ms = (double)(now_ns() - t0) / 1e6;
}

static void *construction_loop(void *arg)
{
	int d, record = arg != NULL;

	for (d = min_depth; d <= max_depth; d += 2)
		time_construction(d, record ? &depth_ms[d] : NULL);
	return NULL;
}

/* Counts the nodes of a tree and stamps nothing; a node cleared by a
 * wrong collection would cut the count short. */
static long count_and_check(node *n, int depth, long *bad)
{
	if (!n)
		return 0;
	if (n->i != depth || n->j != ~depth)
		(*bad)++;
	return 1 + count_and_check(n->left, depth - 1, bad) +
	       count_and_check(n->right, depth - 1, bad);
}

static void stamp(node *n, int depth)
{
	if (!n)
		return;
	n->i = depth;
	n->j = ~depth;
	stamp(n->left, depth - 1);
	stamp(n->right, depth - 1);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: gcbench [--threads N] [--incremental] [--scale S] "
		"[--json]\n"
		"  --threads N    N threads each run the temporary-tree loop "
		"(default 1: the main thread)\n"
		"  --incremental  GC_enable_incremental() after GC_INIT "
		"(GC_ENABLE_INCREMENTAL=1 in the environment does the same)\n"
		"  --scale S      every depth S levels smaller (each level halves "
		"the work), array 2^S times smaller; default 0\n"
		"  --json         one JSON object on stdout\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int threads = 1, incremental = 0, scale = 0, json = 0, a, d, ok;
	long nodes, bad = 0, k;
	uint64_t t_start, t_end;
	unsigned long gc0, gc1;
	faults f0, f1;
	node *volatile long_lived;
	double *volatile array;
	size_t p_end;
	pause_split pauses;
	char ver[32];

	for (a = 1; a < argc; a++) {
		if (!strcmp(argv[a], "--threads") && a + 1 < argc)
			threads = atoi(argv[++a]);
		else if (!strcmp(argv[a], "--incremental"))
			incremental = 1;
		else if (!strcmp(argv[a], "--scale") && a + 1 < argc)
			scale = atoi(argv[++a]);
		else if (!strcmp(argv[a], "--json"))
			json = 1;
		else
			usage();
	}
	if (threads < 1 || threads > 256 || scale < 0 || scale > 12)
		usage();
	stretch_depth -= scale;
	long_lived_depth -= scale;
	max_depth -= scale;
	if (max_depth < min_depth)
		max_depth = min_depth;
	array_size >>= scale;
	if (array_size < 4000) /* the check reads element 1000 of the half */
		array_size = 4000;

	GC_INIT();
	if (threads > 1)
		GC_allow_register_threads(); /* harmless with GC_pthread_create */
	pr_install();
	if (incremental)
		GC_enable_incremental();

	stderr_marker("measure begin");
	gc0 = (unsigned long)GC_get_gc_no();
	f0 = get_faults();
	t_start = now_ns();

	/* 1. stretch the heap */
	{
		node *t = make_tree(stretch_depth);

		(void)t;
	}

	/* 2. long-lived structures */
	long_lived = new_node(NULL, NULL);
	populate(long_lived_depth, long_lived);
	stamp(long_lived, long_lived_depth);
	array = GC_MALLOC_ATOMIC((size_t)array_size * sizeof(double));
	if (!array) {
		fprintf(stderr, "gcbench: out of memory\n");
		return 2;
	}
	for (k = 0; k < array_size / 2; k++)
		array[k] = 1.0 / (double)(k + 1);
	for (; k < array_size; k++)
		array[k] = 0.0;

	/* 3. temporary trees */
	if (threads == 1) {
		construction_loop(depth_ms);
	} else {
		pthread_t *tid = calloc((size_t)threads, sizeof(pthread_t));
		int t;

		if (!tid)
			return 2;
		for (t = 0; t < threads; t++)
			if (pthread_create(&tid[t], NULL, construction_loop,
					   NULL)) {
				fprintf(stderr, "gcbench: pthread_create failed\n");
				return 2;
			}
		for (t = 0; t < threads; t++)
			pthread_join(tid[t], NULL);
		free(tid);
	}

	t_end = now_ns();
	f1 = get_faults();
	gc1 = (unsigned long)GC_get_gc_no();
	p_end = pr_mark();
	stderr_marker("measure end");

	/* 4. the long-lived structures must have survived */
	nodes = count_and_check(long_lived, long_lived_depth, &bad);
	ok = nodes == tree_size(long_lived_depth) && bad == 0;
	for (k = 0; k < array_size / 2 && ok; k++)
		if (array[k] != 1.0 / (double)(k + 1))
			ok = 0;
	if (array[1000] != 1.0 / 1001.0)
		ok = 0;

	pauses = pr_split(0, p_end);
	libgc_version(ver, sizeof(ver));

	if (json) {
		pr_json_head(stdout, "gcbench", ver);
		printf("\"threads\":%d,\"scale\":%d,\"ok\":%s,"
		       "\"wall_ms\":%.3f,\"collections\":%lu,",
		       threads, scale, ok ? "true" : "false",
		       (double)(t_end - t_start) / 1e6, gc1 - gc0);
		pr_json_split(stdout, pauses);
		printf(",\"pauses_dropped\":%lu,\"minflt\":%ld,\"majflt\":%ld,"
		       "\"bytes_rescanned\":%lld,\"heap_bytes\":%zu,"
		       "\"depth_ms\":{",
		       pr_dropped, f1.minflt - f0.minflt, f1.majflt - f0.majflt,
		       fg_bytes_rescanned(), GC_get_heap_size());
		for (d = min_depth; d <= max_depth; d += 2)
			printf("%s\"%d\":%.3f", d > min_depth ? "," : "", d,
			       threads == 1 ? depth_ms[d] : -1.0);
		printf("},");
		pr_json_list(stdout, "pause_list", 0, p_end);
		printf("}\n");
	} else {
		printf("gcbench: libgc %s (%s), %s, %d thread(s), scale %d: "
		       "%s\n",
		       ver, libgc_path(),
		       GC_is_incremental_mode() ? "incremental" :
						  "non-incremental",
		       threads, scale, ok ? "long-lived data intact" :
					    "LONG-LIVED DATA DAMAGED");
		if (threads == 1)
			for (d = min_depth; d <= max_depth; d += 2)
				printf("  depth %2d: %ld trees top-down and "
				       "bottom-up, %.1f ms\n",
				       d, num_iters(d), depth_ms[d]);
		printf("wall %.1f ms, %lu collections, %ld minor faults, "
		       "bytes rescanned %lld, heap %zu KiB\n",
		       (double)(t_end - t_start) / 1e6, gc1 - gc0,
		       f1.minflt - f0.minflt,
		       fg_bytes_rescanned(), GC_get_heap_size() >> 10);
		pr_text_split(stdout, pauses);
	}
	return ok ? 0 : 1;
}
