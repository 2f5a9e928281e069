/* preload_probe.c - an ordinary program for tests/test_preload: it
 * allocates with every function the malloc shim replaces, checks what it
 * gets, and tells whether the pointers came from an ALIAS heap.
 *
 * It does not link libfgtk: under LD_PRELOAD=libfgalias-preload.so it finds
 * fg_alias_preload_heap and friends with dlsym(RTLD_DEFAULT, ...); without
 * the shim it runs the same checks on glibc and prints "not preloaded".
 *
 * usage: preload_probe [all | fill N | fork | collect | fds FILE |
 *                      fds-all FILE]
 *   all     every function, alignments, contents, 4 threads, fork (default)
 *   fill N  allocate N MiB in 64 KiB objects (more than a small heap's
 *           capacity: the rest must come from glibc), check and free them
 *   fork    a child writes and frees an object of its parent; the parent
 *           must see its object unchanged
 *   collect (preloaded: else a no-op) play a collector in the process:
 *           20000 small objects, collect, write one byte into 100 of them,
 *           collect again; every written object must lie in a reported
 *           card, and the cards must add up to far less than their pages
 *   fds FILE      play a program that tidies its descriptors: close 3..50
 *           and dup2 FILE (32 MiB of a pattern, created here) over each of
 *           them, then allocate, free, realloc, collect, fork and use 4
 *           threads; every object must stay intact, and FILE too (same
 *           bytes, size and offset: nobody read, wrote, truncated or
 *           punched it through a number it took over)
 *   fds-all FILE  the same over every descriptor above 2, the toolkit's
 *           high ones included (and no fork: the heap's memfd is gone, so
 *           a child would share the heap's memory)
 * Output: "ok ..." lines, then "preloaded: ..." or "not preloaded".  Exit 0
 * when every check passed; otherwise "FAIL ..." lines and exit 1.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fg_alias.h" /* types only: the functions come from dlsym */

static fg_alias_heap *(*get_heap)(void);
static size_t (*usable)(fg_alias_heap *, const void *);
static int (*get_stats)(fg_alias_heap *, fg_alias_stats *);
static const char *(*backend_name)(fg_backend_id);
static fg_alias_heap *heap;
static bool strict_heap = true; /* preloaded: every object from the heap */
static int failures;
static volatile size_t huge = SIZE_MAX / 2; /* no overflow warning */

#define CHECK(cond, ...)                                                     \
	do {                                                                 \
		if (!(cond)) {                                               \
			printf("FAIL %s:%d: ", __func__, __LINE__);          \
			printf(__VA_ARGS__);                                 \
			printf("\n");                                        \
			failures++;                                          \
		}                                                            \
	} while (0)

/* From the heap (when preloaded) and usable for n bytes. */
static void check_ptr(const char *what, void *p, size_t n, size_t align)
{
	CHECK(p != NULL, "%s(%zu): NULL (%s)", what, n, strerror(errno));
	if (!p)
		return;
	CHECK((uintptr_t)p % align == 0, "%s(%zu) = %p: not %zu-aligned", what,
	      n, p, align);
	CHECK(malloc_usable_size(p) >= n, "%s(%zu): usable size %zu", what, n,
	      malloc_usable_size(p));
	if (heap && strict_heap)
		CHECK(usable(heap, p) >= n,
		      "%s(%zu) = %p: not a live object of the ALIAS heap", what,
		      n, p);
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(i * 31 + seed);
}

static int same(const unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (unsigned char)(i * 31 + seed))
			return 0;
	return 1;
}

static void test_malloc(void)
{
	static const size_t sizes[] = {0, 1, 15, 16, 17, 100, 4000, 4096,
				       5000, 16384, 16385, 100000, 3 << 20};
	void *v[sizeof sizes / sizeof *sizes];

	for (unsigned i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		v[i] = malloc(sizes[i]);
		check_ptr("malloc", v[i], sizes[i], 16);
		if (v[i])
			fill(v[i], sizes[i], i);
	}
	for (unsigned i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		CHECK(!v[i] || same(v[i], sizes[i], i), "malloc(%zu): contents",
		      sizes[i]);
		free(v[i]);
	}
	free(NULL);
	printf("ok malloc free malloc_usable_size\n");
}

static void test_calloc(void)
{
	/* Dirty some memory first, so that calloc must really zero. */
	for (size_t n = 16; n <= 65536; n *= 4) {
		unsigned char *d = malloc(n), *z;

		if (d)
			memset(d, 0xa5, n);
		free(d);
		z = calloc(n / 8, 8);
		check_ptr("calloc", z, n, 16);
		for (size_t i = 0; z && i < n; i++)
			if (z[i]) {
				CHECK(0, "calloc(%zu): byte %zu is %d", n, i, z[i]);
				break;
			}
		free(z);
	}
	errno = 0;
	CHECK(calloc(huge, 4) == NULL && errno == ENOMEM,
	      "calloc overflow: not NULL/ENOMEM");
	printf("ok calloc\n");
}

static void test_realloc(void)
{
	size_t n = 10;
	unsigned char *p = realloc(NULL, n);

	check_ptr("realloc(NULL)", p, n, 16);
	fill(p, n, 7);
	/* Grow through small, page and large objects, then shrink. */
	for (size_t m = 24; m <= (size_t)4 << 20; m = m * 3 + 5) {
		unsigned char *q = realloc(p, m);

		check_ptr("realloc", q, m, 16);
		if (!q)
			return;
		CHECK(same(q, n, 7), "realloc %zu -> %zu: contents", n, m);
		p = q;
		fill(p, m, 7);
		n = m;
	}
	for (size_t m = n / 5; m >= 8; m /= 5) {
		unsigned char *q = realloc(p, m);

		check_ptr("realloc", q, m, 16);
		if (!q)
			return;
		CHECK(same(q, m, 7), "realloc %zu -> %zu: contents", n, m);
		p = q;
		n = m;
	}
	p = realloc(p, 0); /* frees, as glibc's */
	free(p);
	p = reallocarray(NULL, 100, 8);
	check_ptr("reallocarray", p, 800, 16);
	p = reallocarray(p, 1000, 8);
	check_ptr("reallocarray", p, 8000, 16);
	free(p);
	errno = 0;
	CHECK(reallocarray(NULL, huge, 4) == NULL && errno == ENOMEM,
	      "reallocarray overflow: not NULL/ENOMEM");
	printf("ok realloc reallocarray\n");
}

static void test_aligned(void)
{
	for (size_t a = 8; a <= (size_t)1 << 20; a *= 4) {
		for (size_t n = 1; n <= 70000; n = n * 7 + 3) {
			void *p = NULL;
			int rc = posix_memalign(&p, a, n);

			CHECK(rc == 0, "posix_memalign(%zu, %zu): %d", a, n, rc);
			check_ptr("posix_memalign", p, n, a);
			if (p)
				fill(p, n, 3);
			if (p)
				CHECK(same(p, n, 3), "posix_memalign contents");
			free(p);
			p = aligned_alloc(a, n);
			check_ptr("aligned_alloc", p, n, a);
			free(p);
			p = memalign(a, n);
			check_ptr("memalign", p, n, a);
			free(p);
		}
	}
	{
		void *p = NULL;

		CHECK(posix_memalign(&p, 24, 10) == EINVAL,
		      "posix_memalign(24): not EINVAL");
		/* Above the heap's 2 MiB limit: glibc serves it. */
		CHECK(posix_memalign(&p, (size_t)4 << 20, 100) == 0 &&
			      (uintptr_t)p % ((size_t)4 << 20) == 0,
		      "posix_memalign(4 MiB)");
		free(p);
	}
	{
		void *v = valloc(5000), *pv = pvalloc(5000);

		check_ptr("valloc", v, 5000, 4096);
		check_ptr("pvalloc", pv, 8192, 4096);
		free(v);
		free(pv);
	}
	printf("ok posix_memalign aligned_alloc memalign valloc pvalloc\n");
}

/* 4 threads, random sizes, every object checked before it is freed. */
static void *worker(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg, x = seed * 2654435761u + 1;
	void *slot[64] = {0};
	size_t len[64] = {0};
	long bad = 0;

	for (int i = 0; i < 100000; i++) {
		unsigned k;

		x = x * 1103515245u + 12345u;
		k = (x >> 8) % 64;
		if (slot[k]) {
			if (!same(slot[k], len[k], seed + k))
				bad++;
			free(slot[k]);
		}
		x = x * 1103515245u + 12345u;
		len[k] = (x >> 16) % ((x & 0x8000) ? 20000 : 300);
		slot[k] = malloc(len[k]);
		if (!slot[k] || (heap && strict_heap && !usable(heap, slot[k]))) {
			bad++;
			continue;
		}
		fill(slot[k], len[k], seed + k);
	}
	for (int k = 0; k < 64; k++)
		free(slot[k]);
	return (void *)bad;
}

static void test_threads(void)
{
	pthread_t t[4];
	long total = 0;

	for (uintptr_t i = 0; i < 4; i++)
		CHECK(pthread_create(&t[i], NULL, worker, (void *)(i + 1)) == 0,
		      "pthread_create");
	for (int i = 0; i < 4; i++) {
		void *r;

		pthread_join(t[i], &r);
		total += (long)r;
	}
	CHECK(total == 0, "threads: %ld bad objects", total);
	printf("ok 4 threads x 100000 malloc/free\n");
}

static char *volatile escape[2];

static void test_fork(void)
{
	char *mine = malloc(64), *big = malloc(100000);
	pid_t pid;
	int st;

	/* Escaped: the compiler must assume fork and free read and write
	 * them (no store dropped before free, no load folded across fork). */
	escape[0] = mine;
	escape[1] = big;
	strcpy(mine, "parent");
	memset(big, 'p', 100000);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		char *q = malloc(1000);
		int ok = q && !strcmp(mine, "parent") && big[99999] == 'p';

		/* Writes and frees of the parent's objects: the child's own. */
		/* volatile: the compiler drops plain stores before free */
		volatile char *vm = mine, *vb = big;

		for (int i = 0; i < 6; i++)
			vm[i] = "child"[i];
		for (int i = 0; i < 100000; i++)
			vb[i] = 'c';
		free(mine);
		free(big);
		if (q)
			memset(q, 1, 1000);
		q = realloc(q, 5000);
		free(q);
		_exit(ok ? 0 : 3);
	}
	CHECK(pid > 0, "fork: %s", strerror(errno));
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) &&
		      WEXITSTATUS(st) == 0,
	      "fork: the child failed (status %#x)", st);
	CHECK(!strcmp(mine, "parent"), "fork: the child's write reached the "
				       "parent: \"%s\"",
	      mine);
	CHECK(big[0] == 'p' && big[99999] == 'p',
	      "fork: the child's memset reached the parent");
	free(mine);
	free(big);
	printf("ok fork\n");
}

/* Allocate mib MiB in 64 KiB objects: beyond a small heap's capacity
 * glibc must take over, and every object stays sound. */
static void test_fill(size_t mib)
{
	size_t n = mib * 16, in_heap = 0;
	unsigned char **v = calloc(n, sizeof *v);

	CHECK(v != NULL, "calloc");
	if (!v)
		return;
	for (size_t i = 0; i < n; i++) {
		v[i] = malloc(65536);
		CHECK(v[i] != NULL, "malloc(64 KiB) #%zu: NULL", i);
		if (!v[i])
			break;
		fill(v[i], 65536, (unsigned)i);
		if (heap && usable(heap, v[i]))
			in_heap++;
	}
	for (size_t i = 0; i < n && v[i]; i++) {
		CHECK(same(v[i], 65536, (unsigned)i), "object %zu", i);
		v[i] = realloc(v[i], 70000); /* the heap is full: to glibc */
		CHECK(v[i] && same(v[i], 65536, (unsigned)i), "realloc %zu", i);
		free(v[i]);
	}
	free(v);
	printf("ok fill %zu MiB: %zu of %zu objects in the heap\n", mib,
	       in_heap, n);
}

struct ranges {
	size_t n, bytes;
	uintptr_t start[4096], end[4096];
};

static void note_card(void *card, size_t len, void *arg)
{
	struct ranges *r = arg;

	if (r->n < 4096) {
		r->start[r->n] = (uintptr_t)card;
		r->end[r->n] = (uintptr_t)card + len;
	}
	r->n++;
	r->bytes += len;
}

static void test_collect(void)
{
	enum { N = 20000, W = 100 };
	int (*collect)(fg_alias_card_cb, void *) =
		(int (*)(fg_alias_card_cb, void *))dlsym(
			RTLD_DEFAULT, "fg_alias_preload_collect");
	static struct ranges r;
	fg_alias_stats st = {.size = sizeof st};
	char **v;
	int rc;

	if (!heap || !collect) {
		printf("ok collect: not preloaded, nothing to collect\n");
		return;
	}
	CHECK(get_stats(heap, &st) == 0, "fg_alias_get_stats");
	if (st.backend == FG_BACKEND_NONE) {
		printf("ok collect: backend none reports everything\n");
		return;
	}
	v = malloc(N * sizeof *v);
	CHECK(v != NULL, "malloc");
	if (!v)
		return;
	for (int i = 0; i < N; i++) {
		v[i] = malloc(48);
		CHECK(v[i] != NULL, "malloc(48)");
		if (!v[i])
			return;
		memset(v[i], 0, 48);
	}
	rc = collect(note_card, &r); /* the epoch starts here */
	CHECK(rc >= 0, "collect: %d", rc);
	memset(&r, 0, sizeof r);
	rc = collect(note_card, &r);
	CHECK(rc == 0 && r.n == 0, "idle collect: %d cards", rc);
	memset(&r, 0, sizeof r);
	for (int k = 0; k < W; k++)
		((volatile char *)v[k * (N / W)])[7] = 1;
	rc = collect(note_card, &r);
	CHECK(rc > 0 && (size_t)rc == r.n && r.n <= 4096, "collect: %d", rc);
	for (int k = 0; k < W; k++) {
		uintptr_t a = (uintptr_t)v[k * (N / W)] + 7;
		size_t j = 0;

		while (j < r.n && j < 4096 && !(r.start[j] <= a && a < r.end[j]))
			j++;
		CHECK(j < r.n && j < 4096, "object %d (%p): its write was not "
					   "reported", k * (N / W),
		      (void *)v[k * (N / W)]);
	}
	/* A card reports the 48-byte slots starting in it, and perhaps one
	 * slot reaching into the page from before. */
	CHECK(r.bytes <= (size_t)W * (st.card_size + 2 * 48),
	      "%zu bytes reported for %d one-byte writes (%zu-byte cards)",
	      r.bytes, W, st.card_size);
	printf("ok collect: %d objects written, %zu cards (%zu bytes) "
	       "reported, page-level tracking: %d pages (%d bytes)\n",
	       W, r.n, r.bytes, W, W * 4096);
	for (int i = 0; i < N; i++)
		free(v[i]);
	free(v);
}

/* ---- descriptors taken over by the program ------------------------------ */

/* Longer than the memfd of a heap of FG_ALIAS_CAPACITY=8M (16 MiB): a hole
 * punched through a wrong descriptor would land in it. */
#define FDS_FILE_LEN ((size_t)32 << 20)
#define FDS_KEEP 500 /* the program's own copy of FILE */

static unsigned char fds_byte(size_t i)
{
	return (unsigned char)(i * 131 + (i >> 12) * 7 + 1);
}

static int fds_create(const char *path)
{
	static unsigned char buf[65536];
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), keep;

	CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
	if (fd < 0)
		return -1;
	for (size_t off = 0; off < FDS_FILE_LEN; off += sizeof buf) {
		for (size_t i = 0; i < sizeof buf; i++)
			buf[i] = fds_byte(off + i);
		CHECK(pwrite(fd, buf, sizeof buf, (off_t)off) == (ssize_t)sizeof buf,
		      "pwrite %s: %s", path, strerror(errno));
	}
	keep = fcntl(fd, F_DUPFD, FDS_KEEP);
	CHECK(keep >= FDS_KEEP, "F_DUPFD: %s", strerror(errno));
	close(fd);
	return keep;
}

/* FILE unchanged: size, bytes, and the offset its descriptors share. */
static void fds_verify(int keep, const char *path)
{
	static unsigned char buf[65536];
	struct stat st;
	off_t pos = lseek(keep, 0, SEEK_CUR);
	size_t bad = 0;

	CHECK(fstat(keep, &st) == 0 && (size_t)st.st_size == FDS_FILE_LEN &&
		      (size_t)st.st_blocks * 512 >= FDS_FILE_LEN,
	      "%s: size %lld, %lld blocks: truncated or punched", path,
	      (long long)st.st_size, (long long)st.st_blocks);
	CHECK(pos == 0, "%s: offset %lld: someone read or wrote through a "
			"descriptor the program took over", path, (long long)pos);
	for (size_t off = 0; off < FDS_FILE_LEN; off += sizeof buf) {
		ssize_t n = pread(keep, buf, sizeof buf, (off_t)off);

		CHECK(n == (ssize_t)sizeof buf, "pread %s at %zu: %zd", path, off, n);
		for (ssize_t i = 0; i < n; i++)
			bad += buf[i] != fds_byte(off + (size_t)i);
	}
	CHECK(bad == 0, "%s: %zu bytes changed", path, bad);
}

/* The toolkit's descriptor fd: what it is, or NULL for another one. */
static const char *toolkit_fd(int fd)
{
	static const char *const kinds[] = {
		"/memfd:fg-alias", "anon_inode:[userfaultfd]", "/pagemap",
		"/clear_refs", "anon_inode:[eventfd]"};
	static char link[256];
	char path[64];
	ssize_t n;

	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof link - 1);
	if (n <= 0)
		return NULL;
	link[n] = 0;
	for (unsigned k = 0; k < sizeof kinds / sizeof *kinds; k++)
		if (strstr(link, kinds[k]))
			return link;
	return NULL;
}

/* Every open descriptor above 2 (below lim), into v; how many. */
static int fds_open(int *v, int max, int lim)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	CHECK(d != NULL, "/proc/self/fd: %s", strerror(errno));
	if (!d)
		return 0;
	while ((e = readdir(d)) && n < max) {
		char *end;
		long fd = strtol(e->d_name, &end, 10);

		if (end != e->d_name && !*end && fd > 2 && fd < lim &&
		    fd != dirfd(d))
			v[n++] = (int)fd;
	}
	closedir(d);
	return n;
}

/* Allocate and free: sizes to 300 KiB (frees of more than 128 KiB give
 * memory back to the kernel), every object checked before its free. */
static void fds_churn(unsigned seed)
{
	enum { N = 256 };
	static unsigned char *slot[N];
	static size_t len[N];
	unsigned x = seed * 2654435761u + 1;
	long bad = 0;

	for (int i = 0; i < 20000; i++) {
		unsigned k, r;

		x = x * 1103515245u + 12345u;
		k = (x >> 8) % N;
		if (slot[k]) {
			bad += !same(slot[k], len[k], seed + k);
			free(slot[k]);
		}
		x = x * 1103515245u + 12345u;
		r = x >> 16;
		len[k] = r % 16 == 0 ? 131072 + r % 180000 : r % 700;
		slot[k] = r % 5 == 1 ? calloc(1, len[k]) : malloc(len[k]);
		if (!slot[k]) {
			bad++;
			continue;
		}
		if (r % 5 == 1 && len[k] && slot[k][len[k] - 1])
			bad++;
		fill(slot[k], len[k], seed + k);
		if (r % 7 == 3) { /* grow or shrink, keeping the prefix */
			size_t m = len[k] / 2 + r % 3000;
			unsigned char *q = realloc(slot[k], m);

			if (!q || !same(q, m < len[k] ? m : len[k], seed + k))
				bad++;
			if (q) {
				slot[k] = q;
				len[k] = m;
				fill(q, m, seed + k);
			}
		}
	}
	for (int k = 0; k < N; k++) {
		if (slot[k] && !same(slot[k], len[k], seed + k))
			bad++;
		free(slot[k]);
		slot[k] = NULL;
	}
	CHECK(bad == 0, "churn: %ld bad objects", bad);
}

static void count_card(void *card, size_t len, void *arg)
{
	(void)card;
	*(size_t *)arg += len;
}

static void test_fds(const char *path, bool all)
{
	enum { OLD = 64 };
	int (*collect)(fg_alias_card_cb, void *) =
		(int (*)(fg_alias_card_cb, void *))dlsym(
			RTLD_DEFAULT, "fg_alias_preload_collect");
	unsigned char *old[OLD];
	size_t old_len[OLD];
	int keep, fds[4096], n, rc = 0;
	size_t bytes = 0;

	/* Objects from before, small and large. */
	for (int i = 0; i < OLD; i++) {
		old_len[i] = i % 8 == 7 ? 200000 + (size_t)i : 24 + (size_t)i * 5;
		old[i] = malloc(old_len[i]);
		CHECK(old[i] != NULL, "malloc(%zu)", old_len[i]);
		if (old[i])
			fill(old[i], old_len[i], 100 + (unsigned)i);
	}
	keep = fds_create(path);
	if (keep < 0)
		return;
	if (all) {
		n = fds_open(fds, 4096, INT32_MAX);
	} else {
		n = 0;
		for (int fd = 3; fd <= 50; fd++)
			fds[n++] = fd;
	}
	/* The toolkit's descriptors among them: the heap's memfd must not be
	 * there (it lives at 1000 and above); the tracker's may, and then
	 * new memory cannot be tracked and comes from glibc. */
	for (int i = 0; i < n; i++) {
		const char *what = toolkit_fd(fds[i]);

		if (!what)
			continue;
		if (heap)
			printf("note fds: the toolkit's descriptor %d (%s) taken "
			       "over\n", fds[i], what);
		CHECK(all || !strstr(what, "memfd:fg-alias"),
		      "the heap's memfd at descriptor %d, within 3..50", fds[i]);
		strict_heap = false;
	}
	for (int i = 0; i < n; i++)
		if (fds[i] != keep)
			close(fds[i]);
	for (int i = 0; i < n; i++)
		if (fds[i] != keep)
			CHECK(dup2(keep, fds[i]) == fds[i], "dup2(%d, %d): %s",
			      keep, fds[i], strerror(errno));
	printf("ok fds: %s over %d descriptors\n", path, n);
	fflush(stdout);

	fds_churn(1);
	test_malloc();
	test_calloc();
	test_realloc();
	test_aligned();
	test_threads();
	/* The tracker's descriptors may be gone: collect must fail or report,
	 * nothing worse. */
	if (heap && collect)
		rc = collect(count_card, &bytes);
	printf("ok fds collect\n");
	fflush(stdout);
	(void)rc;
	if (all) /* the heap's memfd is gone: the child shares the heap */
		printf("ok fds: no fork\n");
	else
		test_fork();
	fds_churn(2);
	for (int i = 0; i < OLD; i++) {
		CHECK(!old[i] || same(old[i], old_len[i], 100 + (unsigned)i),
		      "object %d (%zu bytes) from before", i, old_len[i]);
		free(old[i]);
	}
	fds_verify(keep, path);
	printf("ok fds: every object intact, %s untouched\n", path);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "all";

	get_heap = (fg_alias_heap * (*)(void)) dlsym(RTLD_DEFAULT,
						    "fg_alias_preload_heap");
	usable = (size_t(*)(fg_alias_heap *, const void *))dlsym(
		RTLD_DEFAULT, "fg_alias_usable_size");
	get_stats = (int (*)(fg_alias_heap *, fg_alias_stats *))dlsym(
		RTLD_DEFAULT, "fg_alias_get_stats");
	backend_name = (const char *(*)(fg_backend_id))dlsym(RTLD_DEFAULT,
							     "fg_backend_name");
	if (get_heap && usable && get_stats && backend_name)
		heap = get_heap();

	if (!strcmp(mode, "all")) {
		test_malloc();
		test_calloc();
		test_realloc();
		test_aligned();
		test_threads();
		test_fork();
	} else if (!strcmp(mode, "fill") && argc > 2) {
		test_fill(strtoul(argv[2], NULL, 10));
	} else if (!strcmp(mode, "fork")) {
		test_fork();
	} else if (!strcmp(mode, "collect")) {
		test_collect();
	} else if (!strcmp(mode, "fds") && argc > 2) {
		test_fds(argv[2], false);
	} else if (!strcmp(mode, "fds-all") && argc > 2) {
		test_fds(argv[2], true);
	} else {
		fprintf(stderr, "usage: preload_probe [all | fill MIB | fork | "
				"collect | fds FILE | fds-all FILE]\n");
		return 2;
	}

	if (heap) {
		fg_alias_stats st = {.size = sizeof st};
		void *p = malloc(100);

		CHECK(p && (!strict_heap || usable(heap, p) >= 100),
		      "malloc: not from the heap");
		CHECK(get_stats(heap, &st) == 0 && st.live_objects > 0,
		      "stats: no live objects");
		printf("preloaded: backend %s, %zu-byte cards, %llu live "
		       "objects\n",
		       backend_name(st.backend), st.card_size,
		       (unsigned long long)st.live_objects);
		free(p);
	} else {
		printf("not preloaded\n");
	}
	if (failures)
		printf("%d checks failed\n", failures);
	return failures ? 1 : 0;
}
