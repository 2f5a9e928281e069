/* test_caps.c - each backend's FG_CAP_* bits against what it does.
 *
 * One test per capability and backend: the backend must show the
 * behaviour iff it claims the cap, so a wrong bit fails either way.
 *
 *   tracks          unwritten pages read clean (in one of a few epochs);
 *   kernel_writes   read(2) into a protected page succeeds and is
 *                   reported, without fg_mark_dirty; without the cap it
 *                   fails with EFAULT (and the backend must claim
 *                   PROTECTS); after fg_mark_dirty it works everywhere;
 *   protects        read(2), or a pwrite of /proc/self/mem, into a
 *                   protected page fails;
 *   signal_handler  registering a region changes SIGSEGV's disposition;
 *   splits          writing every other page of a region splits its
 *                   mapping (/proc/self/maps);
 *   write_hook      fg_options.hook is called at a first write;
 *   hook_twins      DIFF, 64-byte cards: a first-epoch one-line write is
 *                   reported as that line (twins_hook counts it);
 *   collect_twins   DIFF, FG_TWIN_STICKY: a page written in one epoch is
 *                   twinned at collection (twins_sticky or refreshed),
 *                   and without a hook its next one-line write reads as
 *                   that line;
 *   exempt          a written exempt page is left out of the collection;
 *   private_file    a private file mapping registers, and its writes of
 *                   every kind are reported (else -FG_EMEMKIND).
 *
 * NEEDS_FGVM: a backend that claims it is unavailable natively (the
 * test binaries run natively).  CONCURRENT is not observable in one
 * short test: test_oracle's concurrent writers check the backends that
 * claim it.  The kvm backend's caps are checked only where the registry
 * lists them (here: not available).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fg.h"
#include "oracle.h"

#define TIMEOUT 60
#define NPAGES 64

static size_t ps;

static fg_tracker *start_opts(fg_backend_id id, fg_options *o, uint8_t **m)
{
	fg_tracker *t;

	ps = (size_t)sysconf(_SC_PAGESIZE);
	o->backend = id;
	o->flags |= FG_OPT_NO_ENV;
	cr_assert_eq(fg_tracker_create(o, &t), 0, "fg_tracker_create(%s): %s",
		     fg_backend_name(id), fg_last_error_detail());
	cr_assert_eq(fg_tracker_caps(t), fg_backend_caps(id),
		     "fg_tracker_caps and fg_backend_caps disagree");
	cr_assert_eq(fg_region_alloc(t, NPAGES * ps, (void **)m), 0,
		     "fg_region_alloc: %s", fg_last_error_detail());
	return t;
}

static fg_tracker *start(fg_backend_id id, uint8_t **m)
{
	fg_options o = FG_OPTIONS_INIT;

	return start_opts(id, &o, m);
}

/* Collect; reported[p] = 1 for every page a reported range touches; the
 * reported bytes of page p in bytes[p] (bytes may be NULL). */
static void collect_flags(fg_tracker *t, const uint8_t *m,
			  uint8_t *reported, size_t *bytes, unsigned flags)
{
	fg_iter it;
	fg_range r;
	int n = fg_collect_flags(t, &it, flags);

	cr_assert_geq(n, 0, "fg_collect_flags(%#x): %s (%s)", flags,
		      fg_strerror(n), fg_last_error_detail());
	memset(reported, 0, NPAGES);
	if (bytes)
		memset(bytes, 0, NPAGES * sizeof *bytes);
	while (fg_iter_next(&it, &r) == 1) {
		uintptr_t a = (uintptr_t)r.addr, e = a + r.len;

		cr_assert(a >= (uintptr_t)m && e <= (uintptr_t)m + NPAGES * ps,
			  "reported range [%p, +%zu) outside the region", r.addr,
			  r.len);
		for (uintptr_t p = (a - (uintptr_t)m) / ps;
		     p < (e - (uintptr_t)m + ps - 1) / ps; p++) {
			uintptr_t s = (uintptr_t)m + p * ps, x = s + ps;

			reported[p] = 1;
			if (bytes)
				bytes[p] += (e < x ? e : x) - (a > s ? a : s);
		}
	}
}

static void collect(fg_tracker *t, const uint8_t *m, uint8_t *reported,
		    size_t *bytes)
{
	collect_flags(t, m, reported, bytes, 0);
}

/* After filling the region: collect until the fill's writes are all
 * reported.  uffd-sync's handler sets a page's flag after it woke the
 * writer, so a collection right after the fill may leave a flag for the
 * next one (sound: reported late, never lost). */
static void settle(fg_tracker *t, const uint8_t *m, uint8_t *reported,
		   size_t *bytes)
{
	collect(t, m, reported, bytes);
	usleep(2000);
	collect(t, m, reported, bytes);
}

static bool has(fg_backend_id id, unsigned cap)
{
	return fg_backend_caps(id) & cap;
}

static const char *yes(bool b)
{
	return b ? "claims" : "does not claim";
}

/* read(2) of len bytes from a pipe into dst: 0 or errno. */
static int pipe_read(uint8_t *dst, size_t len)
{
	uint8_t src[256];
	int fd[2], err = 0;
	ssize_t n;

	cr_assert_leq(len, sizeof src);
	memset(src, 0xa5, sizeof src);
	cr_assert_eq(pipe(fd), 0);
	cr_assert_eq(write(fd[1], src, len), (ssize_t)len);
	n = read(fd[0], dst, len);
	if (n < 0)
		err = errno;
	else
		cr_assert_eq((size_t)n, len, "read(2) copied %zd of %zu", n,
			     len);
	close(fd[0]);
	close(fd[1]);
	return err;
}

static void tracks(fg_backend_id id)
{
	uint8_t rep[NPAGES];
	uint8_t *m;
	fg_tracker *t;
	bool clean = false;

	ORC_REQUIRE_BACKEND(id);
	t = start(id, &m);
	memset(m, 1, NPAGES * ps);
	settle(t, m, rep, NULL);
	/* A few rounds: a late flag (see settle) may dirty one. */
	for (int round = 0; round < 5; round++) {
		bool all = true;

		m[5 * ps] = (uint8_t)(3 + round);
		collect(t, m, rep, NULL);
		cr_assert(rep[5], "a written page was not reported");
		for (size_t p = 0; p < NPAGES; p++)
			all = all && (p == 5 || !rep[p]);
		clean = all;
		if (clean)
			break;
		usleep(2000);
	}
	cr_assert_eq(clean, has(id, FG_CAP_TRACKS),
		     "%s %s FG_CAP_TRACKS, yet unwritten pages %s clean",
		     fg_backend_name(id), yes(has(id, FG_CAP_TRACKS)),
		     clean ? "read" : "do not read");
	cr_assert_eq(fg_tracker_destroy(t), 0);
}
ORC_PER_BACKEND(caps, tracks, TIMEOUT)

static void kernel_writes(fg_backend_id id)
{
	bool cap = has(id, FG_CAP_KERNEL_WRITES);
	uint8_t rep[NPAGES];
	uint8_t *m;
	fg_tracker *t;
	int err;

	ORC_REQUIRE_BACKEND(id);
	t = start(id, &m);
	memset(m, 1, NPAGES * ps);
	settle(t, m, rep, NULL);
	err = pipe_read(m + 7 * ps + 100, 64);
	collect(t, m, rep, NULL);
	if (cap) {
		cr_assert_eq(err, 0,
			     "%s claims FG_CAP_KERNEL_WRITES, yet read(2) into "
			     "a protected page failed: %s",
			     fg_backend_name(id), strerror(err));
		cr_assert(rep[7],
			  "%s claims FG_CAP_KERNEL_WRITES, yet read(2) into "
			  "page 7 was not reported",
			  fg_backend_name(id));
	} else {
		cr_assert_eq(err, EFAULT,
			     "%s does not claim FG_CAP_KERNEL_WRITES, yet "
			     "read(2) into a protected page %s",
			     fg_backend_name(id),
			     err ? strerror(err) : "succeeded");
		cr_assert(has(id, FG_CAP_PROTECTS),
			  "read(2) failed on %s, which does not claim "
			  "FG_CAP_PROTECTS",
			  fg_backend_name(id));
	}
	/* Announced, it works and is reported on every backend. */
	cr_assert_eq(fg_mark_dirty(t, m + 9 * ps, ps), 0, "%s",
		     fg_last_error_detail());
	err = pipe_read(m + 9 * ps + 8, 200);
	cr_assert_eq(err, 0, "read(2) after fg_mark_dirty: %s", strerror(err));
	collect(t, m, rep, NULL);
	cr_assert(rep[9], "read(2) after fg_mark_dirty not reported");
	cr_assert_eq(fg_tracker_destroy(t), 0);
}
ORC_PER_BACKEND(caps, kernel_writes, TIMEOUT)

static void protects(fg_backend_id id)
{
	bool cap = has(id, FG_CAP_PROTECTS), failed;
	uint8_t rep[NPAGES], b[32];
	int rerr, merr = 0, fd;
	uint8_t *m;
	fg_tracker *t;

	ORC_REQUIRE_BACKEND(id);
	t = start(id, &m);
	memset(m, 1, NPAGES * ps);
	settle(t, m, rep, NULL);
	rerr = pipe_read(m + 3 * ps, 16);
	memset(b, 0x5a, sizeof b);
	fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0, "/proc/self/mem: %s", strerror(errno));
	if (pwrite(fd, b, sizeof b, (off_t)(uintptr_t)(m + 11 * ps)) < 0)
		merr = errno;
	close(fd);
	failed = rerr || merr;
	cr_log_info("%s: read(2): %s, /proc/self/mem: %s", fg_backend_name(id),
		    rerr ? strerror(rerr) : "ok", merr ? strerror(merr) : "ok");
	cr_assert_eq(failed, cap,
		     "%s %s FG_CAP_PROTECTS, yet kernel writes into protected "
		     "pages %s (read(2): %s, /proc/self/mem: %s)",
		     fg_backend_name(id), yes(cap), failed ? "failed" : "worked",
		     rerr ? strerror(rerr) : "ok", merr ? strerror(merr) : "ok");
	cr_assert_eq(fg_tracker_destroy(t), 0);
}
ORC_PER_BACKEND(caps, protects, TIMEOUT)

static void signal_handler(fg_backend_id id)
{
	bool cap = has(id, FG_CAP_SIGNAL_HANDLER), changed;
	struct sigaction before, after;
	uint8_t *m;
	fg_tracker *t;

	ORC_REQUIRE_BACKEND(id);
	cr_assert_eq(sigaction(SIGSEGV, NULL, &before), 0);
	t = start(id, &m);
	cr_assert_eq(sigaction(SIGSEGV, NULL, &after), 0);
	changed = before.sa_handler != after.sa_handler ||
		  before.sa_flags != after.sa_flags;
	cr_assert_eq(changed, cap,
		     "%s %s FG_CAP_SIGNAL_HANDLER, yet SIGSEGV's disposition "
		     "%s",
		     fg_backend_name(id), yes(cap),
		     changed ? "changed" : "stayed");
	cr_assert_eq(fg_tracker_destroy(t), 0);
}
ORC_PER_BACKEND(caps, signal_handler, TIMEOUT)

/* Mappings of /proc/self/maps that overlap [a, a + len). */
static int mappings(const uint8_t *a, size_t len)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	int n = 0;

	cr_assert(f, "/proc/self/maps: %s", strerror(errno));
	while (fgets(line, sizeof line, f)) {
		unsigned long s, e;

		if (sscanf(line, "%lx-%lx", &s, &e) == 2 &&
		    s < (uintptr_t)a + len && e > (uintptr_t)a)
			n++;
	}
	fclose(f);
	return n;
}

static void splits(fg_backend_id id)
{
	bool cap = has(id, FG_CAP_SPLITS_MAPPINGS);
	uint8_t rep[NPAGES];
	uint8_t *m;
	fg_tracker *t;
	int n;

	ORC_REQUIRE_BACKEND(id);
	t = start(id, &m);
	memset(m, 1, NPAGES * ps);
	settle(t, m, rep, NULL);
	for (size_t p = 0; p < NPAGES; p += 2)
		m[p * ps] = 2;
	n = mappings(m, NPAGES * ps);
	cr_log_info("%s: %d mappings after writing every other page",
		    fg_backend_name(id), n);
	cr_assert_eq(n > 1, cap,
		     "%s %s FG_CAP_SPLITS_MAPPINGS, yet its region is %d "
		     "mapping(s) after writing every other page",
		     fg_backend_name(id), yes(cap), n);
	cr_assert_eq(fg_tracker_destroy(t), 0);
}
ORC_PER_BACKEND(caps, splits, TIMEOUT)

static _Atomic(void *) hooked_page;
static atomic_uint hook_calls;

static void hook(void *page, void *arg)
{
	(void)arg;
	atomic_store(&hooked_page, page);
	atomic_fetch_add(&hook_calls, 1);
}

static void write_hook(fg_backend_id id)
{
	bool cap = has(id, FG_CAP_WRITE_HOOK);
	fg_options o = FG_OPTIONS_INIT;
	uint8_t rep[NPAGES];
	uint8_t *m;
	fg_tracker *t;
	unsigned calls;

	ORC_REQUIRE_BACKEND(id);
	o.hook = hook;
	t = start_opts(id, &o, &m);
	memset(m, 1, NPAGES * ps);
	settle(t, m, rep, NULL);
	atomic_store(&hook_calls, 0);
	m[13 * ps + 5] = 2;
	calls = atomic_load(&hook_calls);
	cr_assert_eq(calls > 0, cap,
		     "%s %s FG_CAP_WRITE_HOOK, yet a first write called the "
		     "hook %u times",
		     fg_backend_name(id), yes(cap), calls);
	if (cap)
		cr_assert_eq(atomic_load(&hooked_page), m + 13 * ps,
			     "the hook got %p, not the written page %p",
			     atomic_load(&hooked_page), (void *)(m + 13 * ps));
	cr_assert_eq(fg_tracker_destroy(t), 0);
}
ORC_PER_BACKEND(caps, write_hook, TIMEOUT)

static fg_tracker *start_diff(fg_backend_id id, unsigned policy, uint8_t **m)
{
	fg_options o = FG_OPTIONS_INIT;
	fg_tracker *t;

	o.card_size = 64;
	o.precision = FG_PRECISION_DIFF;
	o.twin_policy = policy;
	o.twin_cap_pct = 100;
	t = start_opts(id, &o, m);
	return t;
}

static fg_stats stats(fg_tracker *t)
{
	fg_stats s = {.size = sizeof s};

	cr_assert_eq(fg_get_stats(t, &s), 0);
	return s;
}

static void hook_twins(fg_backend_id id)
{
	bool cap = has(id, FG_CAP_HOOK_TWINS), exact;
	size_t bytes[NPAGES];
	uint8_t rep[NPAGES];
	uint8_t *m;
	fg_tracker *t;
	fg_stats s;

	ORC_REQUIRE_BACKEND(id);
	t = start_diff(id, FG_TWIN_HOT, &m);
	memset(m, 1, NPAGES * ps);
	settle(t, m, rep, bytes);
	m[17 * ps + 1000] = 2;
	collect(t, m, rep, bytes);
	s = stats(t);
	cr_assert(rep[17], "a written page was not reported");
	exact = bytes[17] == 64;
	cr_log_info("%s: %zu bytes of the page reported, twins_hook %llu",
		    fg_backend_name(id), bytes[17],
		    (unsigned long long)s.twins_hook);
	if (has(id, FG_CAP_TRACKS))
		cr_assert_eq(exact, cap,
			     "%s %s FG_CAP_HOOK_TWINS, yet a one-line write "
			     "in the first epoch reads as %zu bytes",
			     fg_backend_name(id), yes(cap), bytes[17]);
	cr_assert_eq(s.twins_hook > 0, cap,
		     "%s %s FG_CAP_HOOK_TWINS, yet twins_hook is %llu",
		     fg_backend_name(id), yes(cap),
		     (unsigned long long)s.twins_hook);
	cr_assert_eq(fg_tracker_destroy(t), 0);
}
ORC_PER_BACKEND(caps, hook_twins, TIMEOUT)

static void collect_twins(fg_backend_id id)
{
	bool cap = has(id, FG_CAP_COLLECT_TWINS), exact;
	size_t bytes[NPAGES];
	uint8_t rep[NPAGES];
	uint64_t taken;
	uint8_t *m;
	fg_tracker *t;
	fg_stats s;

	ORC_REQUIRE_BACKEND(id);
	t = start_diff(id, FG_TWIN_STICKY, &m);
	memset(m, 1, NPAGES * ps);
	settle(t, m, rep, bytes);
	memset(m + 19 * ps, 2, ps);
	settle(t, m, rep, bytes); /* page 19 twinned here, with the cap */
	m[19 * ps + 2000] = 3;
	collect(t, m, rep, bytes);
	s = stats(t);
	taken = s.twins_sticky + s.twins_refreshed;
	exact = bytes[19] == 64;
	cr_log_info("%s: %zu bytes of the page reported, twins taken or "
		    "refreshed at collection %llu",
		    fg_backend_name(id), bytes[19], (unsigned long long)taken);
	cr_assert(rep[19], "a written page was not reported");
	cr_assert_eq(taken > 0, cap,
		     "%s %s FG_CAP_COLLECT_TWINS, yet %llu twins were taken or "
		     "refreshed at collection",
		     fg_backend_name(id), yes(cap), (unsigned long long)taken);
	if (cap)
		cr_assert(exact, "%s claims FG_CAP_COLLECT_TWINS, yet a "
				 "one-line write to a twinned page reads as "
				 "%zu bytes",
			  fg_backend_name(id), bytes[19]);
	else if (!has(id, FG_CAP_HOOK_TWINS))
		cr_assert(!exact, "%s has no twins, yet a one-line write reads "
				  "as one line",
			  fg_backend_name(id));
	cr_assert_eq(fg_tracker_destroy(t), 0);
}
ORC_PER_BACKEND(caps, collect_twins, TIMEOUT)

static void exempt(fg_backend_id id)
{
	bool cap = has(id, FG_CAP_EXEMPT);
	uint8_t rep[NPAGES];
	uint8_t *m;
	fg_tracker *t;

	ORC_REQUIRE_BACKEND(id);
	t = start(id, &m);
	memset(m, 1, NPAGES * ps);
	settle(t, m, rep, NULL);
	cr_assert_eq(fg_set_exempt(t, m + 21 * ps, ps, 1), 0, "%s",
		     fg_last_error_detail());
	m[21 * ps] = 2;
	m[22 * ps] = 2;
	collect(t, m, rep, NULL);
	cr_assert(rep[22], "a written watched page was not reported");
	cr_assert_eq(!rep[21], cap,
		     "%s %s FG_CAP_EXEMPT, yet a written exempt page was %s",
		     fg_backend_name(id), yes(cap),
		     rep[21] ? "reported" : "left out");
	/* Watched again: its write is reported at last. */
	cr_assert_eq(fg_set_exempt(t, m + 21 * ps, ps, 0), 0);
	collect(t, m, rep, NULL);
	cr_assert(!cap || rep[21], "a write made while exempt was not "
				   "reported once watched again");
	cr_assert_eq(fg_tracker_destroy(t), 0);
}
ORC_PER_BACKEND(caps, exempt, TIMEOUT)

static void peek(fg_backend_id id)
{
	bool cap = has(id, FG_CAP_PEEK);
	uint8_t rep[NPAGES];
	uint8_t *m;
	fg_tracker *t;

	ORC_REQUIRE_BACKEND(id);
	t = start(id, &m);
	memset(m, 1, NPAGES * ps);
	settle(t, m, rep, NULL);
	m[7 * ps] = 2;
	if (cap) {
		collect_flags(t, m, rep, NULL, FG_COLLECT_PEEK);
		cr_assert(rep[7], "%s claims FG_CAP_PEEK, yet a peek left out "
				  "a written page",
			  fg_backend_name(id));
		m[9 * ps] = 2; /* after the peek */
	} else {
		int rc = fg_collect_flags(t, NULL, FG_COLLECT_PEEK);

		cr_assert_eq(rc, -ENOTSUP,
			     "%s does not claim FG_CAP_PEEK, yet a peek "
			     "returned %d (%s)",
			     fg_backend_name(id), rc, fg_strerror(rc));
	}
	collect(t, m, rep, NULL);
	cr_assert(rep[7], "%s: a page written before a %s peek was not "
			  "reported by the next collection: the peek reset it",
		  fg_backend_name(id), cap ? "successful" : "refused");
	cr_assert(!cap || rep[9], "%s: a page written after a peek was not "
				  "reported",
		  fg_backend_name(id));
	cr_assert_eq(fg_tracker_destroy(t), 0);
}
ORC_PER_BACKEND(caps, peek, TIMEOUT)

/* A private mapping of a file, as a shared library's data segment is:
 * fg_register takes it iff the backend claims FG_CAP_PRIVATE_FILE, and
 * then a store into a page mapped from the page cache (read before), one
 * into a page already copied (written before), one into a page never
 * touched, and read(2) into one, are each reported at the next
 * collection, and nothing else is (on a backend that tracks). */
static void private_file(fg_backend_id id)
{
	bool cap = has(id, FG_CAP_PRIVATE_FILE);
	char path[] = "/tmp/fg-test-caps-XXXXXX";
	uint8_t rep[NPAGES], *m, page[4096];
	fg_options o = FG_OPTIONS_INIT;
	fg_tracker *t;
	volatile uint8_t sink = 0;
	int fd, rc;

	ORC_REQUIRE_BACKEND(id);
	ps = (size_t)sysconf(_SC_PAGESIZE);
	cr_assert_leq(ps, sizeof page);
	fd = mkstemp(path);
	cr_assert_geq(fd, 0, "mkstemp: %s", strerror(errno));
	unlink(path);
	memset(page, 7, sizeof page);
	for (int i = 0; i < NPAGES; i++)
		cr_assert_eq(write(fd, page, ps), (ssize_t)ps);
	m = mmap(NULL, NPAGES * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd,
		 0);
	cr_assert_neq(m, MAP_FAILED, "mmap: %s", strerror(errno));
	close(fd);
	for (int p = 0; p < 16; p++) /* mapped from the page cache */
		sink += m[p * ps];
	for (int p = 16; p < 32; p++) /* copied on write */
		m[p * ps] = 1;
	(void)sink;	     /* pages 32 to 63: never touched */
	o.backend = id;
	o.flags |= FG_OPT_NO_ENV;
	cr_assert_eq(fg_tracker_create(&o, &t), 0, "fg_tracker_create(%s): %s",
		     fg_backend_name(id), fg_last_error_detail());
	rc = fg_register(t, m, NPAGES * ps);
	if (!cap) {
		cr_assert_eq(rc, -FG_EMEMKIND,
			     "%s does not claim FG_CAP_PRIVATE_FILE, yet "
			     "fg_register of a private file mapping returned "
			     "%d (%s)",
			     fg_backend_name(id), rc, fg_strerror(rc));
		goto out;
	}
	cr_assert_eq(rc, 0,
		     "%s claims FG_CAP_PRIVATE_FILE, yet fg_register of a "
		     "private file mapping failed: %s",
		     fg_backend_name(id), fg_last_error_detail());
	settle(t, m, rep, NULL);
	m[3 * ps + 5] = 2;
	m[20 * ps + 5] = 2;
	m[40 * ps + 5] = 2;
	cr_assert_eq(pipe_read(m + 45 * ps + 9, 10), 0,
		     "read(2) into a private file page: %s", strerror(errno));
	collect(t, m, rep, NULL);
	for (int p = 0; p < NPAGES; p++) {
		bool w = p == 3 || p == 20 || p == 40 || p == 45;

		cr_assert(!w || rep[p],
			  "%s: page %d of a private file mapping (%s) was "
			  "written and not reported",
			  fg_backend_name(id), p,
			  p < 16 ? "read before" : p < 32 ? "written before"
							  : "never touched");
		cr_assert(w || !rep[p] || !has(id, FG_CAP_TRACKS),
			  "%s: page %d was reported but not written",
			  fg_backend_name(id), p);
	}
	collect(t, m, rep, NULL);
	for (int p = 0; p < NPAGES; p++)
		cr_assert(!rep[p] || !has(id, FG_CAP_TRACKS),
			  "%s: page %d reported again", fg_backend_name(id),
			  p);
	cr_assert_eq(fg_unregister(t, m, NPAGES * ps), 0);
out:
	cr_assert_eq(fg_tracker_destroy(t), 0);
	munmap(m, NPAGES * ps);
}
ORC_PER_BACKEND(caps, private_file, TIMEOUT)

/* Registry-wide facts, without a tracker. */
Test(caps, registry, .timeout = TIMEOUT)
{
	fg_options o = FG_OPTIONS_INIT;
	fg_tracker *t;

	cr_assert_eq(fg_backend_caps(FG_BACKEND_AUTO), 0);
	cr_assert_eq(fg_backend_caps(FG_BACKEND_COUNT), 0);
	cr_assert_eq(fg_backend_caps((fg_backend_id)-1), 0);
	cr_assert_eq(fg_tracker_caps(NULL), 0);
	for (int id = FG_BACKEND_AUTO + 1; id < FG_BACKEND_COUNT; id++) {
		unsigned c = fg_backend_caps(id);
		char why[256];
		int rc = fg_backend_probe(id, why, sizeof why);

		cr_log_info("%s: caps 0x%x, %s", fg_backend_name(id), c,
			    rc ? why : "available");
		/* Natively, nothing that needs fgvm works. */
		if (c & FG_CAP_NEEDS_FGVM)
			cr_assert_neq(rc, 0, "%s claims FG_CAP_NEEDS_FGVM, yet "
					     "works outside fgvm",
				      fg_backend_name(id));
		/* A hook twin needs the hook. */
		if (c & FG_CAP_HOOK_TWINS)
			cr_assert(c & FG_CAP_WRITE_HOOK, "%s",
				  fg_backend_name(id));
	}
	o.flags = FG_OPT_NO_ENV;
	cr_assert_eq(fg_tracker_create(&o, &t), 0);
	cr_assert_eq(fg_tracker_caps(t), fg_backend_caps(fg_tracker_backend(t)));
	cr_assert_eq(fg_tracker_destroy(t), 0);
	cr_assert_eq(fg_tracker_caps(t), 0, "a destroyed tracker has caps");
}
