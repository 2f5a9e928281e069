/* test_unseen.c - writes no page table shows the tracker, and the ways the
 * contract (fg.h, "Which writes each backend sees") lets a program make
 * them sound: fg_io_begin/fg_io_end and fg_mark_dirty.
 *
 * Each writer below changes bytes of a tracked region without a store
 * through the mapping the backend watches:
 *   uring     io_uring READ_FIXED into a buffer registered (pinned) once;
 *   aio       Linux aio O_DIRECT reads (pinned at submission);
 *   pvm       process_vm_writev from another process, from a source that
 *             faults in the middle of the copy;
 *   pwrite, write, copy_file_range (from another memfd), sendfile,
 *   splice    into a memfd region through its descriptor;
 *   alias     stores through a second mapping of the memfd;
 *   other     stores by another process through a shared mapping;
 *   procmem   pwrite to /proc/self/mem (the kernel writes with FOLL_FORCE);
 *   punch, remove, trunc
 *             a memfd region zeroed by fallocate(PUNCH_HOLE), madvise
 *             (MADV_REMOVE), ftruncate down and up again: the file
 *             changes under the mapping (fg_io_begin/fg_io_end around the
 *             call here; fg_mark_dirty after it is enough, fg.h).
 * A thread collects all the time.  Each round brackets one write with
 * fg_io_begin/fg_io_end and checks, against its own copy of the bytes,
 * that every 64-byte line whose bytes changed was reported by a
 * collection that returned after the write completed.  Every backend, at
 * page precision (card 4096) and with DIFF and sticky twins (card 64).
 * FG_TEST_UNANNOUNCED=1 leaves the brackets out: then the test shows the
 * misses that the announcement closes (it fails on every backend but
 * none).
 *
 * Also here:
 *   mark_unchanged  DIFF: fg_mark_dirty of bytes that did not change, on a
 *                   page with a twin, is reported by the next collection;
 *   unregister_race mprotect and the others: fg_unregister while threads
 *                   fault on the region does not crash the process, and
 *                   tracking still works after it;
 *   memfd_warning   fg_register warns (once per process, on stderr) about
 *                   a memfd region whose descriptor stays writable or
 *                   that is mapped twice, and not about one that only its
 *                   mapping reaches;
 *   io_bad          fg_io_begin/fg_io_end refuse bad input.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/aio_abi.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fg.h"
#include "oracle.h"

#define NPAGES 16
#define ROUNDS 24
#define MAXLEN (3 * 4096)

enum writer {
	W_URING,
	W_AIO,
	W_PVM,
	W_PROCMEM,
	W_PWRITE,
	W_WRITE,
	W_COPY,
	W_SENDFILE,
	W_SPLICE,
	W_ALIAS,
	W_OTHER,
	W_PUNCH,
	W_REMOVE,
	W_TRUNC,
	W_COUNT
};

static const char *const wname[W_COUNT] = {
	"io_uring READ_FIXED", "aio O_DIRECT",	"process_vm_writev",
	"/proc/self/mem",
	"memfd pwrite",	       "memfd write",	"memfd copy_file_range",
	"memfd sendfile",      "memfd splice",	       "second mapping", "another process",
	"memfd hole punched",  "MADV_REMOVE",	"ftruncate down+up",
};

static bool announce(void)
{
	const char *e = getenv("FG_TEST_UNANNOUNCED");

	return !(e && *e && strcmp(e, "0"));
}

/* ---- the helper process: process_vm_writev and shared stores ----------- */

struct cmd {
	uintptr_t dst;
	size_t len;
	uint64_t seed;
	int how; /* W_PVM or W_OTHER */
};

static void helper_loop(int sock, pid_t parent)
{
	struct cmd c;
	int fd;
	uint8_t *src;

	/* The source of process_vm_writev: a file mapping, faulted in
	 * page by page during the copy (the kernel holds the destination
	 * pages meanwhile). */
	char path[] = "/tmp/fg-unseen-XXXXXX";

	fd = mkstemp(path);
	if (fd < 0 || unlink(path) || ftruncate(fd, MAXLEN + 4096))
		_exit(3);
	while (read(sock, &c, sizeof c) == sizeof c) {
		orc_rng g;
		uint8_t *buf = malloc(c.len);
		int ok = 1;

		orc_rng_init(&g, c.seed);
		orc_fill_random(&g, buf, c.len);
		if (c.how == W_PVM) {
			struct iovec l, r;

			if (pwrite(fd, buf, c.len, 0) != (ssize_t)c.len)
				ok = 0;
			src = mmap(NULL, c.len, PROT_READ, MAP_SHARED, fd, 0);
			/* Not yet faulted in: drop the page cache mapping. */
			l.iov_base = src;
			l.iov_len = c.len;
			r.iov_base = (void *)c.dst;
			r.iov_len = c.len;
			if (src == MAP_FAILED ||
			    process_vm_writev(parent, &l, 1, &r, 1, 0) !=
				    (ssize_t)c.len)
				ok = 0;
			if (src != MAP_FAILED)
				munmap(src, c.len);
		} else {
			memcpy((void *)c.dst, buf, c.len);
		}
		free(buf);
		if (write(sock, &ok, sizeof ok) != sizeof ok)
			break;
	}
	_exit(0);
}

/* ---- the harness ------------------------------------------------------- */

struct rig {
	fg_backend_id id;
	fg_tracker *t;
	enum writer w;
	uint8_t *m;	   /* the tracked region, NPAGES pages */
	size_t len, ps;
	int memfd;	   /* W_PWRITE...W_OTHER: backing the region */
	uint8_t *alias;	   /* W_ALIAS: a second mapping of memfd */
	int file;	   /* source file (aio: O_DIRECT; procmem) */
	struct orc_uring u;
	aio_context_t aio;
	int sock;	   /* to the helper */
	pid_t helper;
	/* Collections: k counts those returned; last[l] is the k of the
	 * last one that reported line l. */
	pthread_mutex_t lock;
	uint64_t k;
	uint64_t *last;
	atomic_bool stop;
	uint64_t collections;
	char ctx[128];
};

static void collect_locked(struct rig *g)
{
	fg_iter it;
	fg_range r;
	int n = fg_collect(g->t, &it);

	cr_assert_geq(n, 0, "%s: fg_collect: %s (%s)", g->ctx, fg_strerror(n),
		      fg_last_error_detail());
	g->k++;
	while (fg_iter_next(&it, &r) == 1) {
		uintptr_t a = (uintptr_t)r.addr, e = a + r.len;

		if (e <= (uintptr_t)g->m || a >= (uintptr_t)g->m + g->len)
			continue;
		if (a < (uintptr_t)g->m)
			a = (uintptr_t)g->m;
		if (e > (uintptr_t)g->m + g->len)
			e = (uintptr_t)g->m + g->len;
		for (uintptr_t l = (a - (uintptr_t)g->m) / ORC_LINE;
		     l < (e - (uintptr_t)g->m + ORC_LINE - 1) / ORC_LINE; l++)
			g->last[l] = g->k;
	}
}

static void collect(struct rig *g)
{
	pthread_mutex_lock(&g->lock);
	collect_locked(g);
	pthread_mutex_unlock(&g->lock);
}

static void *collector(void *arg)
{
	struct rig *g = arg;

	while (!atomic_load(&g->stop)) {
		collect(g);
		g->collections++;
		orc_spin_us(20);
	}
	return NULL;
}

static uint64_t returned(struct rig *g)
{
	uint64_t k;

	pthread_mutex_lock(&g->lock);
	k = g->k;
	pthread_mutex_unlock(&g->lock);
	return k;
}

/* The source file: random bytes, O_DIRECT for aio (NULL why: fine). */
static int open_source(struct rig *g, orc_rng *rng, char *why, size_t whylen)
{
	char path[] = "/tmp/fg-unseen-src-XXXXXX";
	size_t flen = 64 * 4096;
	uint8_t *buf = malloc(flen);
	/* copy_file_range needs the same file system: a memfd. */
	int fd = g->w == W_COPY ? memfd_create("fg-unseen-src", MFD_CLOEXEC)
				: mkstemp(path);

	cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
	orc_fill_random(rng, buf, flen);
	cr_assert_eq(pwrite(fd, buf, flen, 0), (ssize_t)flen, "pwrite: %s",
		     strerror(errno));
	free(buf);
	fsync(fd);
	if (g->w == W_AIO) {
		int d = open(path, O_RDONLY | O_DIRECT);

		close(fd);
		fd = d;
		if (fd < 0) {
			snprintf(why, whylen, "O_DIRECT on %s: %s", path,
				 strerror(errno));
			unlink(path);
			return -1;
		}
	}
	if (g->w != W_COPY)
		unlink(path);
	return fd;
}

static void rig_open(struct rig *g, fg_backend_id id, enum writer w,
		     bool diff, orc_rng *rng)
{
	char why[256] = "";
	fg_options o = orc_options(id, diff ? 64 : 4096);

	memset(g, 0, sizeof *g);
	g->id = id;
	g->w = w;
	g->ps = orc_page();
	g->len = NPAGES * g->ps;
	g->memfd = -1;
	g->sock = -1;
	snprintf(g->ctx, sizeof g->ctx, "%s %s %s", wname[w], orc_bname(id),
		 diff ? "DIFF/64" : "page");
	if (diff) {
		o.precision = FG_PRECISION_DIFF;
		o.twin_policy = FG_TWIN_STICKY;
	}
	g->t = orc_tracker(&o);
	if (w >= W_PWRITE) {
		g->memfd = memfd_create("fg-unseen", MFD_CLOEXEC);
		cr_assert(g->memfd >= 0 && !ftruncate(g->memfd, (off_t)g->len),
			  "memfd: %s", strerror(errno));
		g->m = mmap(NULL, g->len, PROT_READ | PROT_WRITE, MAP_SHARED,
			    g->memfd, 0);
	} else {
		g->m = mmap(NULL, g->len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	}
	cr_assert(g->m != MAP_FAILED, "mmap: %s", strerror(errno));
	orc_fill_random(rng, g->m, g->len);
	if (w == W_ALIAS) {
		g->alias = mmap(NULL, g->len, PROT_READ | PROT_WRITE,
				MAP_SHARED, g->memfd, 0);
		cr_assert(g->alias != MAP_FAILED, "mmap: %s", strerror(errno));
	}
	g->file = -1;
	if (w == W_URING || w == W_AIO || w == W_COPY || w == W_SENDFILE) {
		g->file = open_source(g, rng, why, sizeof why);
		if (g->file < 0)
			cr_skip_test("%s: %s", g->ctx, why);
	}
	if (w == W_PROCMEM) {
		g->file = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
		if (g->file < 0)
			cr_skip_test("%s: /proc/self/mem: %s", g->ctx,
				     strerror(errno));
	}
	if (w == W_URING && orc_uring_open(&g->u, why, sizeof why))
		cr_skip_test("%s: %s", g->ctx, why);
	if (w == W_AIO && syscall(__NR_io_setup, 8, &g->aio))
		cr_skip_test("%s: io_setup: %s", g->ctx, strerror(errno));
	if (w == W_PVM || w == W_OTHER) {
		int sv[2];
		pid_t parent = getpid();

		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0,
			     "socketpair: %s", strerror(errno));
		g->helper = fork();
		cr_assert(g->helper >= 0, "fork: %s", strerror(errno));
		if (!g->helper) {
			close(sv[0]);
			helper_loop(sv[1], parent);
		}
		close(sv[1]);
		g->sock = sv[0];
	}
	g->last = calloc(g->len / ORC_LINE, sizeof *g->last);
	pthread_mutex_init(&g->lock, NULL);
	cr_assert_eq(fg_register(g->t, g->m, g->len), 0, "%s: fg_register: %s",
		     g->ctx, fg_last_error_detail());
	if (w == W_URING) {
		/* Registration pins the pages, for writing: on mprotect they
		 * must be writable then (announced); the pins stay. */
		struct iovec iov = {g->m, g->len};
		int io = announce() ? fg_io_begin(g->t, g->m, g->len) : 0;

		cr_assert_geq(io, 0, "fg_io_begin: %s", fg_last_error_detail());
		int err = orc_uring_register(&g->u, &iov, 1);

		if (err)
			cr_assert_fail("%s: IORING_REGISTER_BUFFERS: %s",
				       g->ctx, strerror(-err));
		if (announce())
			cr_assert_eq(fg_io_end(g->t, io), 0, "fg_io_end: %s",
				     fg_last_error_detail());
	}
	/* Two collections: every page clean and (DIFF) twinned. */
	collect(g);
	collect(g);
}

static void rig_close(struct rig *g)
{
	if (g->sock >= 0) {
		close(g->sock);
		waitpid(g->helper, NULL, 0);
	}
	if (g->w == W_URING)
		close(g->u.fd);
	if (g->w == W_AIO)
		syscall(__NR_io_destroy, g->aio);
	if (g->file >= 0)
		close(g->file);
	cr_assert_eq(fg_tracker_destroy(g->t), 0, "fg_tracker_destroy");
	munmap(g->m, g->len);
	if (g->alias)
		munmap(g->alias, g->len);
	if (g->memfd >= 0)
		close(g->memfd);
	free(g->last);
}

/* One write of len bytes at dst (region offset off), completed on
 * return. */
static void do_write(struct rig *g, orc_rng *rng, uint8_t *dst, size_t len)
{
	size_t off = (size_t)(dst - g->m);
	off_t foff = (off_t)(orc_below(rng, 48) * g->ps);
	uint8_t *buf = malloc(len);
	ssize_t n = -1;

	orc_fill_random(rng, buf, len);
	switch (g->w) {
	case W_URING:
		n = orc_uring_read_fixed(&g->u, g->file, 0, dst, len, foff);
		if (n < 0)
			cr_assert_fail("%s: READ_FIXED: %s", g->ctx,
				       strerror(-(int)n));
		break;
	case W_AIO: {
		struct iocb cb, *cbs[1] = {&cb};
		struct io_event ev;

		memset(&cb, 0, sizeof cb);
		cb.aio_lio_opcode = IOCB_CMD_PREAD;
		cb.aio_fildes = (uint32_t)g->file;
		cb.aio_buf = (uintptr_t)dst;
		cb.aio_nbytes = len;
		cb.aio_offset = foff;
		cr_assert_eq(syscall(__NR_io_submit, g->aio, 1, cbs), 1,
			     "%s: io_submit: %s", g->ctx, strerror(errno));
		cr_assert_eq(syscall(__NR_io_getevents, g->aio, 1, 1, &ev,
				     NULL),
			     1, "%s: io_getevents: %s", g->ctx,
			     strerror(errno));
		n = (ssize_t)ev.res;
		if (n < 0)
			cr_assert_fail("%s: aio read: %s", g->ctx,
				       strerror(-(int)n));
		break;
	}
	case W_PVM:
	case W_OTHER: {
		struct cmd c = {(uintptr_t)dst, len, orc_next(rng), (int)g->w};
		int ok = 0;

		cr_assert_eq(write(g->sock, &c, sizeof c), (ssize_t)sizeof c);
		cr_assert_eq(read(g->sock, &ok, sizeof ok), (ssize_t)sizeof ok,
			     "%s: the helper process died", g->ctx);
		cr_assert(ok, "%s: the helper's write failed", g->ctx);
		n = (ssize_t)len;
		break;
	}
	case W_PWRITE:
		n = pwrite(g->memfd, buf, len, (off_t)off);
		break;
	case W_WRITE:
		if (lseek(g->memfd, (off_t)off, SEEK_SET) == (off_t)off)
			n = write(g->memfd, buf, len);
		break;
	case W_COPY: {
		loff_t in = foff, out = (loff_t)off;

		n = copy_file_range(g->file, &in, g->memfd, &out, len, 0);
		break;
	}
	case W_SENDFILE:
		if (lseek(g->memfd, (off_t)off, SEEK_SET) == (off_t)off)
			n = sendfile(g->memfd, g->file, &foff, len);
		break;
	case W_SPLICE: {
		int p[2];
		loff_t out = (loff_t)off;

		cr_assert_eq(pipe(p), 0);
		fcntl(p[1], F_SETPIPE_SZ, MAXLEN + 4096);
		cr_assert_eq(write(p[1], buf, len), (ssize_t)len);
		n = splice(p[0], NULL, g->memfd, &out, len, 0);
		close(p[0]);
		close(p[1]);
		break;
	}
	case W_ALIAS:
		memcpy(g->alias + off, buf, len);
		n = (ssize_t)len;
		break;
	case W_PROCMEM:
		n = pwrite(g->file, buf, len, (off_t)(uintptr_t)dst);
		break;
	case W_PUNCH:
		if (!fallocate(g->memfd,
			       FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			       (off_t)off, (off_t)len))
			n = (ssize_t)len;
		break;
	case W_REMOVE:
		if (!madvise(dst, len, MADV_REMOVE))
			n = (ssize_t)len;
		break;
	case W_TRUNC:
		/* No collection while pages of the region lie past the end
		 * of the file: reading them (DIFF) raises SIGBUS (fg.h). */
		pthread_mutex_lock(&g->lock);
		if (!ftruncate(g->memfd, (off_t)off) &&
		    !ftruncate(g->memfd, (off_t)g->len))
			n = (ssize_t)len;
		pthread_mutex_unlock(&g->lock);
		break;
	default:
		break;
	}
	free(buf);
	cr_assert_eq(n, (ssize_t)len, "%s: %zu bytes at +%zu: %zd (%s)",
		     g->ctx, len, off, n, strerror(errno));
}

static void scenario(fg_backend_id id, enum writer w, bool diff)
{
	uint64_t seed = orc_seed("unseen");
	orc_rng rng;
	struct rig g;
	pthread_t th;
	uint8_t *pre = malloc(NPAGES * orc_page());
	uint64_t missed = 0, lines = 0, first_round = 0;
	size_t first_off = 0;

	orc_rng_init(&rng, seed);
	rig_open(&g, id, w, diff, &rng);
	cr_assert_eq(pthread_create(&th, NULL, collector, &g), 0);
	for (int round = 0; round < ROUNDS; round++) {
		/* O_DIRECT: 512-byte aligned; MADV_REMOVE pages; the others
		 * anywhere.  ftruncate zeroes from off to the end. */
		size_t align = w == W_AIO || w == W_URING ? 512
			       : w == W_REMOVE || w == W_TRUNC ? g.ps
							       : 1;
		size_t len = (1 + orc_below(&rng, MAXLEN / align - 1)) * align;
		size_t off = orc_below(&rng, (g.len - len) / align + 1) * align;
		uint8_t *dst;
		uint64_t done;
		int io = 0;

		if (w == W_TRUNC)
			len = g.len - off;
		dst = g.m + off;
		/* Something to zero. */
		if (w >= W_PUNCH)
			orc_fill_random(&rng, dst, len);

		memcpy(pre, dst, len);
		if (announce()) {
			io = fg_io_begin(g.t, dst, len);
			cr_assert_geq(io, 0, "%s: fg_io_begin: %s", g.ctx,
				      fg_last_error_detail());
		}
		/* Every other round, a collection while announced. */
		if (round % 2) {
			uint64_t k0 = returned(&g);

			while (returned(&g) < k0 + 2)
				sched_yield();
		}
		do_write(&g, &rng, dst, len);
		done = returned(&g);
		if (announce())
			cr_assert_eq(fg_io_end(g.t, io), 0, "%s: fg_io_end: %s",
				     g.ctx, fg_last_error_detail());
		/* Let the collector run on, then one more collection. */
		orc_spin_us((unsigned)orc_below(&rng, 300));
		collect(&g);
		pthread_mutex_lock(&g.lock);
		for (size_t l = off / ORC_LINE; l * ORC_LINE < off + len; l++) {
			size_t a = l * ORC_LINE > off ? l * ORC_LINE - off : 0;
			size_t e = (l + 1) * ORC_LINE - off < len
					   ? (l + 1) * ORC_LINE - off
					   : len;

			if (!memcmp(pre + a, dst + a, e - a))
				continue;
			lines++;
			if (g.last[l] <= done) {
				if (!missed++) {
					first_round = (uint64_t)round;
					first_off = l * ORC_LINE;
				}
			}
		}
		pthread_mutex_unlock(&g.lock);
	}
	atomic_store(&g.stop, true);
	pthread_join(th, NULL);
	fprintf(stderr,
		"unseen %-22s %-10s %-7s: %" PRIu64 " changed lines, %" PRIu64
		" missed, %" PRIu64 " concurrent collections%s\n",
		wname[w], orc_bname(id), diff ? "DIFF/64" : "page", lines,
		missed, g.collections, announce() ? "" : " (unannounced)");
	cr_assert_gt(lines, 0, "%s: the writes changed nothing", g.ctx);
	cr_assert_eq(missed, 0,
		     "%s seed=%" PRIu64 ": %" PRIu64 " of %" PRIu64
		     " changed lines never reported after the write completed "
		     "(first: round %" PRIu64 ", region offset %zu)",
		     g.ctx, seed, missed, lines, first_round, first_off);
	rig_close(&g);
	free(pre);
}

static void all_writers(fg_backend_id id, enum writer w)
{
	ORC_REQUIRE_BACKEND(id);
	scenario(id, w, false);
	scenario(id, w, true);
}

#define WRITER(tag, w)                                                       \
	static void scn_##tag(fg_backend_id id)                              \
	{                                                                    \
		all_writers(id, w);                                          \
	}                                                                    \
	ORC_PER_BACKEND(unseen, scn_##tag, 120)

WRITER(uring, W_URING)
WRITER(aio, W_AIO)
WRITER(pvm, W_PVM)
WRITER(pwrite, W_PWRITE)
WRITER(write, W_WRITE)
WRITER(copy, W_COPY)
WRITER(sendfile, W_SENDFILE)
WRITER(splice, W_SPLICE)
WRITER(alias, W_ALIAS)
WRITER(other, W_OTHER)
WRITER(procmem, W_PROCMEM)
WRITER(punch, W_PUNCH)
WRITER(remove, W_REMOVE)
WRITER(trunc, W_TRUNC)

/* ---- fg_mark_dirty of unchanged bytes, DIFF ---------------------------- */

static void mark_unchanged(fg_backend_id id)
{
	size_t ps = orc_page();
	fg_tracker *t;
	struct rig g; /* for collect() and last[] */
	uint8_t *m;

	ORC_REQUIRE_BACKEND(id);
	t = orc_diff_tracker(id, 64, 0, FG_TWIN_STICKY);
	memset(&g, 0, sizeof g);
	g.t = t;
	g.len = 4 * ps;
	cr_assert_eq(fg_region_alloc(t, g.len, (void **)&m), 0,
		     "fg_region_alloc: %s", fg_last_error_detail());
	g.m = m;
	g.last = calloc(g.len / ORC_LINE, sizeof *g.last);
	pthread_mutex_init(&g.lock, NULL);
	snprintf(g.ctx, sizeof g.ctx, "mark_unchanged %s", orc_bname(id));
	for (int round = 0; round < 6; round++) {
		uint64_t k;

		/* Written in every epoch (hot, twinned), plus one more. */
		m[ps + 8] = (uint8_t)round;
		collect(&g);
		/* Bytes written back to what they were, and a range not
		 * written at all: both announced. */
		m[ps + 200] = m[ps + 200];
		cr_assert_eq(fg_mark_dirty(t, m + ps + 200, 1), 0);
		cr_assert_eq(fg_mark_dirty(t, m + 2 * ps + 1000, 100), 0);
		k = g.k;
		collect(&g);
		cr_assert_gt(g.last[(ps + 200) / ORC_LINE], k,
			     "%s round %d: fg_mark_dirty of a byte on a "
			     "twinned page, not reported",
			     g.ctx, round);
		for (size_t l = (2 * ps + 1000) / ORC_LINE;
		     l <= (2 * ps + 1099) / ORC_LINE; l++)
			cr_assert_gt(g.last[l], k,
				     "%s round %d: fg_mark_dirty of unchanged "
				     "bytes not reported (line %zu)",
				     g.ctx, round, l);
		collect(&g);
	}
	cr_assert_eq(fg_tracker_destroy(t), 0);
	free(g.last);
}
ORC_PER_BACKEND(unseen, mark_unchanged, 60)

/* ---- fg_unregister racing write faults --------------------------------- */

static atomic_bool race_stop;
static uint8_t *race_mem;
static size_t race_len;

static void *race_writer(void *arg)
{
	orc_rng g;

	orc_rng_init(&g, (uintptr_t)arg);
	while (!atomic_load(&race_stop))
		race_mem[orc_below(&g, race_len)]++;
	return NULL;
}

static void unregister_race(fg_backend_id id)
{
	pid_t pid;
	int st;

	ORC_REQUIRE_BACKEND(id);
	/* In a child: the failure is the process dying. */
	pid = fork();
	cr_assert(pid >= 0);
	if (!pid) {
		fg_options o = orc_options(id, 4096);
		fg_tracker *t;
		uint8_t *keep;
		pthread_t th[3];
		fg_stats s0, s1;

		s0.size = s1.size = sizeof s0;
		if (fg_tracker_create(&o, &t) ||
		    fg_region_alloc(t, 16 * orc_page(), (void **)&keep))
			_exit(2);
		race_len = 64 * orc_page();
		race_mem = mmap(NULL, race_len, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		for (uintptr_t i = 0; i < 3; i++)
			pthread_create(&th[i], NULL, race_writer, (void *)i);
		for (int i = 0; i < 3000; i++) {
			if (fg_register(t, race_mem, race_len))
				_exit(3);
			orc_spin_us(i % 50);
			if (fg_unregister(t, race_mem, race_len))
				_exit(4);
		}
		atomic_store(&race_stop, true);
		for (int i = 0; i < 3; i++)
			pthread_join(th[i], NULL);
		/* Tracking still works: a write to the other region is
		 * handled and reported. */
		fg_collect(t, NULL);
		fg_get_stats(t, &s0);
		keep[5 * orc_page()] = 1;
		if (fg_collect(t, NULL) < 1)
			_exit(5);
		fg_get_stats(t, &s1);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(!WIFSIGNALED(st),
		  "%s: fg_unregister racing write faults killed the process "
		  "with signal %d",
		  orc_bname(id), WTERMSIG(st));
	cr_assert_eq(WEXITSTATUS(st), 0, "%s: the child failed at step %d",
		     orc_bname(id), WEXITSTATUS(st));
}
ORC_PER_BACKEND(unseen, unregister_race, 120)

/* ---- memfd regions that can be written around the tracker ------------- */

/* Register a memfd region in a child with stderr captured: keep_fd keeps
 * the descriptor open (read-write), alias maps it a second time.  Returns
 * what the child printed. */
static char *register_memfd(bool keep_fd, bool alias, char *buf, size_t len)
{
	int p[2], st;
	pid_t pid;
	ssize_t n, got = 0;

	cr_assert_eq(pipe(p), 0);
	pid = fork();
	cr_assert(pid >= 0);
	if (!pid) {
		fg_options o = orc_options(FG_BACKEND_NONE, 4096);
		fg_tracker *t;
		size_t l = 4 * orc_page();
		int fd = memfd_create("fg-unseen-warn", MFD_CLOEXEC);
		void *m, *m2 = NULL;

		dup2(p[1], 2);
		unsetenv("FG_QUIET");
		if (fd < 0 || ftruncate(fd, (off_t)l))
			_exit(2);
		m = mmap(NULL, l, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (alias)
			m2 = mmap(NULL, l, PROT_READ | PROT_WRITE, MAP_SHARED,
				  fd, 0);
		if (m == MAP_FAILED || m2 == MAP_FAILED)
			_exit(3);
		if (!keep_fd)
			close(fd);
		if (fg_tracker_create(&o, &t) || fg_register(t, m, l))
			_exit(4);
		_exit(0);
	}
	close(p[1]);
	while ((n = read(p[0], buf + got, len - 1 - (size_t)got)) > 0)
		got += n;
	buf[got] = 0;
	close(p[0]);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		  "the child failed (status %#x): %s", st, buf);
	return buf;
}

Test(unseen, memfd_warning)
{
	char out[1024];

	cr_assert(strstr(register_memfd(true, false, out, sizeof out),
			 "is open on it for writing"),
		  "no warning for a memfd region whose descriptor stays "
		  "writable; stderr: \"%s\"", out);
	cr_assert(strstr(register_memfd(false, true, out, sizeof out),
			 "second writable mapping"),
		  "no warning for a memfd region mapped twice; stderr: \"%s\"",
		  out);
	cr_assert_str_empty(register_memfd(false, false, out, sizeof out),
			    "a warning for a memfd region only its mapping "
			    "reaches");
}

/* ---- bad input ---------------------------------------------------------- */

Test(unseen, io_bad)
{
	fg_options o = orc_options(FG_BACKEND_NONE, 4096);
	fg_tracker *t = orc_tracker(&o);
	uint8_t buf[64];
	int io;

	cr_assert_eq(fg_io_begin(t, buf, 0), -FG_EZEROLEN);
	cr_assert_eq(fg_io_begin(t, (void *)(UINTPTR_MAX - 10), 100), -EINVAL);
	cr_assert_eq(fg_io_end(t, -1), -EINVAL);
	cr_assert_eq(fg_io_end(t, 12345), -EINVAL);
	io = fg_io_begin(t, buf, sizeof buf); /* untracked memory: fine */
	cr_assert_geq(io, 0);
	cr_assert_eq(fg_io_end(t, io), 0);
	cr_assert_eq(fg_io_end(t, io), -EINVAL, "ended twice");
	cr_assert_str_neq(fg_last_error_detail(), "");
	cr_assert_eq(fg_tracker_destroy(t), 0);
	cr_assert_eq(fg_io_begin(t, buf, 1), -FG_EDESTROYED);
}
