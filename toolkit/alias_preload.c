/* alias_preload.c - libfgalias-preload.so: malloc and friends of an
 * unmodified, dynamically linked program served by one process-wide ALIAS
 * heap (fg_alias.h):
 *
 *     LD_PRELOAD=/path/to/libfgalias-preload.so PROG ARGS...
 *
 * Interposed: malloc, free, calloc, realloc, posix_memalign, aligned_alloc,
 * memalign, valloc, pvalloc, malloc_usable_size (glibc's own reallocarray,
 * strdup, ... call these).  fg_alias_preload.h lists the environment
 * variables and the two functions an in-process user may call.
 *
 * Where a request goes:
 *   - before and during the heap's creation, and for allocations the
 *     toolkit itself makes while serving one (guard > 0 on this thread:
 *     ALIAS's thread caches and segment tables, the tracker's regions),
 *     to glibc (found with dlsym(RTLD_NEXT, ...)) or, until glibc is found,
 *     to a static bootstrap arena (a bump allocator; free is a no-op there,
 *     realloc copies out of it);
 *   - otherwise to the heap; when the heap refuses (capacity exhausted, an
 *     alignment above 2 MiB) to glibc, counted as a fallback;
 *   - free, realloc and malloc_usable_size route by address: bootstrap
 *     arena, heap (its 64 views, found once at creation), else glibc.
 * Errors stay malloc's: NULL and errno.  A free of a heap address that is
 * not a live object (double free, interior pointer) is ignored and counted
 * (glibc would abort); one warning line goes to stderr.
 *
 * Initialisation is an atomic state machine (UNINIT -> INIT -> READY or
 * OFF), entered by the first allocation of any thread, not pthread_once:
 * creating the heap allocates, and so may pthread itself.  Threads that
 * allocate while another creates the heap get glibc or the arena; nobody
 * waits.  If the heap cannot be created (no address space for 64 views,
 * say), the shim says so once on stderr and serves everything from glibc.
 *
 * fork: the heap's views are shared mappings of a memfd, so a child would
 * share the heap's bytes with its parent, and ALIAS's locks may be held
 * by threads the child lacks.  So in a child (pthread_atfork) the shim
 * never calls into the heap's locks again: new requests go to glibc, free
 * of a heap object is a no-op, realloc copies it out to glibc.  And with
 * FG_ALIAS_FORK=copy (the default) the child first copies the memfd's data
 * into a memfd of its own and maps it over the 64 views at the same
 * addresses, while the parent's forking thread waits: the child's writes
 * to inherited objects stay its own, as after an ordinary fork.  The copy
 * costs the heap's resident bytes, once per fork; the parent's other
 * threads keep running meanwhile, so the child's snapshot is taken during
 * the copy, not at the instant of fork.  vfork and posix_spawn run no
 * fork handlers and need none (the child shares everything and execs).
 * A child made by _Fork() or a raw clone() system call is not seen at
 * all: it shares the heap with its parent (as with FG_ALIAS_FORK=share,
 * under which bash, for one, corrupts its parent and crashes).
 *
 * Descriptors: programs close or dup2 over low numbers (3, 4, 5 ...) they
 * think are free.  The heap's memfd (alias_mem.c) and stats_fd here live at
 * FD_FLOOR and above, and each is checked by inode before a use that would
 * harm another file.
 *
 * The toolkit called by the program itself: its internal allocations are
 * served by the heap unless the shim set guard, so a collection must go
 * through fg_alias_preload_collect (fg_collect allocates while it holds
 * the tracker's lock, which a growing heap takes too).
 */
#include "fg_alias.h"
#include "fg_alias_preload.h"
#include "fg_internal.h" /* fg_fd_rehome: the shim links the toolkit's
			    convenience library */

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

#define MIN_ALIGN 16
#define PAGE 4096u
#define MAX_HEAP_ALIGN ((size_t)2 << 20) /* fg_alias_aligned_alloc's limit */
#define STEP ((uintptr_t)2 << 20)	 /* the views' reservation is 2 MiB-aligned */

/* ---- glibc ---------------------------------------------------------------- */

static struct {
	void *(*malloc)(size_t);
	void (*free)(void *);
	void *(*calloc)(size_t, size_t);
	void *(*realloc)(void *, size_t);
	int (*posix_memalign)(void **, size_t, size_t);
	size_t (*usable)(void *);
} real;
enum { REAL_NONE, REAL_RESOLVING, REAL_DONE, REAL_MISSING };
static _Atomic int real_state;

/* dlsym may allocate (its error buffer): those calls find real_state
 * REAL_RESOLVING and are served by the bootstrap arena. */
static void resolve_real(void)
{
	int expect = REAL_NONE;

	if (!atomic_compare_exchange_strong(&real_state, &expect,
					    REAL_RESOLVING))
		return;
	real.malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
	real.free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
	real.calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
	real.realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
	real.posix_memalign = (int (*)(void **, size_t, size_t))dlsym(
		RTLD_NEXT, "posix_memalign");
	real.usable = (size_t(*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
	atomic_store_explicit(&real_state,
			      real.malloc && real.free && real.calloc &&
					      real.realloc &&
					      real.posix_memalign && real.usable
				      ? REAL_DONE
				      : REAL_MISSING,
			      memory_order_release);
}

static inline bool have_real(void)
{
	int s = atomic_load_explicit(&real_state, memory_order_acquire);

	if (UNLIKELY(s == REAL_NONE)) {
		resolve_real();
		s = atomic_load_explicit(&real_state, memory_order_acquire);
	}
	return s == REAL_DONE;
}

/* ---- the bootstrap arena ------------------------------------------------ */

/* A block's size sits in the 8 bytes before it.  Never reused, so its
 * memory is zero until handed out (calloc needs no memset). */
#define BOOT_SIZE ((size_t)1 << 20)
static unsigned char boot[BOOT_SIZE] __attribute__((aligned(4096)));
static _Atomic size_t boot_top;

static inline bool in_boot(const void *p)
{
	return (uintptr_t)p - (uintptr_t)boot < BOOT_SIZE;
}

static void *boot_alloc(size_t align, size_t size)
{
	size_t top = atomic_load_explicit(&boot_top, memory_order_relaxed);

	if (align < MIN_ALIGN)
		align = MIN_ALIGN;
	if (size > BOOT_SIZE || align > BOOT_SIZE / 4) {
		errno = ENOMEM;
		return NULL;
	}
	for (;;) {
		size_t start = (top + sizeof(size_t) + align - 1) & ~(align - 1);
		size_t end = (start + size + MIN_ALIGN - 1) & ~(size_t)(MIN_ALIGN - 1);

		if (end > BOOT_SIZE || end < start) {
			errno = ENOMEM;
			return NULL;
		}
		if (atomic_compare_exchange_weak(&boot_top, &top, end)) {
			memcpy(boot + start - sizeof(size_t), &size, sizeof size);
			return boot + start;
		}
	}
}

static inline size_t boot_usable(const void *p)
{
	size_t n;

	memcpy(&n, (const char *)p - sizeof n, sizeof n);
	return n;
}

/* ---- state ------------------------------------------------------------------ */

enum { ST_UNINIT, ST_INIT, ST_READY, ST_OFF };
static _Atomic int state;
static fg_alias_heap *heap;
static uintptr_t heap_lo, heap_hi; /* the views; set before READY */
static bool in_child;		   /* set in a forked child, single-threaded */
static pid_t init_pid;

/* > 0 while this thread is inside the heap or the shim's own setup: its
 * allocations then go to glibc. */
static __thread int guard __attribute__((tls_model("initial-exec")));

static struct {
	bool stats;
	bool fork_copy;
	size_t capacity;
} cfg;

static _Atomic uint64_t n_heap_allocs, n_fallbacks, n_bad_frees;
static _Atomic bool warned_bad_free, warned_fork;

/* Where the exit summary goes: a copy of stderr taken at start-up, high
 * up, since programs may close stderr before exit (coreutils'
 * close_stdout does); and its identity, since a program may also put a
 * file of its own at that number. */
static int stats_fd = -1;
static dev_t stats_dev;
static ino_t stats_ino;

/* The toolkit's descriptors live at FD_FLOOR and above (fg_fd_rehome does
 * it for every descriptor the toolkit keeps): programs close or dup2 over
 * the low ones. */
#define FD_FLOOR 1000


static bool fd_is(int fd, dev_t dev, ino_t ino)
{
	struct stat st;

	return fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == dev &&
	       st.st_ino == ino;
}

static void say_fd(int fd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void say_fd(int fd, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n, e = errno;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof buf - 2)
		n = sizeof buf - 2;
	buf[n++] = '\n';
	if (write(fd, buf, (size_t)n) < 0)
		errno = e;
	errno = e;
}
#define say(...) say_fd(STDERR_FILENO, __VA_ARGS__)

static inline bool in_heap(const void *p)
{
	return atomic_load_explicit(&state, memory_order_acquire) == ST_READY &&
	       (uintptr_t)p - heap_lo < heap_hi - heap_lo;
}

static void init(void);

/* The heap for a new request from this thread, or NULL (glibc). */
static inline fg_alias_heap *heap_for_alloc(void)
{
	int s;

	if (UNLIKELY(guard))
		return NULL;
	s = atomic_load_explicit(&state, memory_order_acquire);
	if (UNLIKELY(s == ST_UNINIT)) {
		init();
		s = atomic_load_explicit(&state, memory_order_acquire);
	}
	return LIKELY(s == ST_READY && !in_child) ? heap : NULL;
}

static inline void count_alloc(void)
{
	if (cfg.stats)
		atomic_fetch_add_explicit(&n_heap_allocs, 1, memory_order_relaxed);
}

/* ---- glibc, or the arena until glibc is found ------------------------------- */

static void *other_malloc(size_t n)
{
	return have_real() ? real.malloc(n) : boot_alloc(MIN_ALIGN, n);
}

static void *other_calloc(size_t n, size_t size)
{
	if (have_real())
		return real.calloc(n, size);
	if (size && n > SIZE_MAX / size) {
		errno = ENOMEM;
		return NULL;
	}
	return boot_alloc(MIN_ALIGN, n * size);
}

static void *other_aligned(size_t align, size_t n)
{
	void *p = NULL;
	int rc;

	if (!have_real())
		return boot_alloc(align, n);
	rc = real.posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align, n);
	if (rc) {
		errno = rc;
		return NULL;
	}
	return p;
}

/* free of an address that is neither the arena's nor the heap's. */
static void other_free(void *p)
{
	if (have_real())
		real.free(p);
	/* else: glibc is being looked up by another thread; leak p */
}

/* ---- initialisation ---------------------------------------------------------- */

static void noop_obj(void *obj, size_t size, void *arg)
{
	(void)obj;
	(void)size;
	(void)arg;
}

/* Whether a is inside the heap's views: fg_alias_objects fails with -EFAULT
 * exactly outside them, takes no lock and writes nothing. */
static bool heap_has(fg_alias_heap *h, uintptr_t a)
{
	return fg_alias_objects(h, (const void *)a, 1, noop_obj, NULL) != -EFAULT;
}

/* The views' extent, [lo, hi): a reservation of 64 equal views, 2 MiB
 * aligned, around an object of the heap; binary search both ways. */
static int find_range(fg_alias_heap *h)
{
	void *p = fg_alias_malloc(h, 1);
	uintptr_t a, lo, hi, mid;

	if (!p)
		return -ENOMEM;
	a = (uintptr_t)p & ~(STEP - 1);
	/* Down: the largest k with a - k STEP inside. */
	lo = 0;
	hi = a / STEP + 1; /* k = hi is below address 0: outside */
	if (hi > ((uintptr_t)1 << 26))
		hi = (uintptr_t)1 << 26; /* 128 TiB: more than any heap */
	while (hi - lo > 1) {
		mid = lo + (hi - lo) / 2;
		if (heap_has(h, a - mid * STEP))
			lo = mid;
		else
			hi = mid;
	}
	heap_lo = a - lo * STEP;
	/* Up: the largest k with a + k STEP inside. */
	lo = 0;
	hi = (uintptr_t)1 << 26;
	if (hi > (UINTPTR_MAX - a) / STEP)
		hi = (UINTPTR_MAX - a) / STEP;
	while (hi - lo > 1) {
		mid = lo + (hi - lo) / 2;
		if (heap_has(h, a + mid * STEP))
			lo = mid;
		else
			hi = mid;
	}
	heap_hi = a + (lo + 1) * STEP;
	fg_alias_free(h, p);
	if (heap_has(h, heap_lo - 1) || heap_has(h, heap_hi) ||
	    (heap_hi - heap_lo) % FG_ALIAS_VIEWS_MAX)
		return -EFAULT;
	return 0;
}

/* The heap's memfd: its descriptor and identity, for the copy at fork. */
static struct {
	int fd;
	dev_t dev;
	ino_t ino;
} mfd = {-1, 0, 0};

struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

/* Call fn(fd, arg) for every open descriptor until it returns true; the
 * descriptor, or -1.  Raw getdents64: no allocation (a child of fork). */
static int scan_fds(bool (*fn)(int fd, void *arg), void *arg)
{
	char buf[4096] __attribute__((aligned(8)));
	int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int found = -1;
	long n;

	if (dir < 0)
		return -1;
	while (found < 0 &&
	       (n = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
		for (long off = 0; off < n && found < 0;) {
			struct linux_dirent64 *d = (void *)(buf + off);
			char *end;
			long fd = strtol(d->d_name, &end, 10);

			off += d->d_reclen;
			if (end == d->d_name || *end || fd == dir)
				continue;
			if (fn((int)fd, arg))
				found = (int)fd;
		}
	}
	close(dir);
	return found;
}

/* A descriptor of a memfd named like the heap's, of its size. */
struct fd_find {
	int fd, count;
};

static bool note_heap_memfd(int fd, void *arg)
{
	struct fd_find *f = arg;
	char path[64], link[64];
	struct stat st;
	ssize_t n;

	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof link - 1);
	if (n < 0)
		return false;
	link[n] = 0;
	if (strncmp(link, "/memfd:fg-alias", 15) == 0 && fstat(fd, &st) == 0 &&
	    (uintptr_t)st.st_size == (heap_hi - heap_lo) / FG_ALIAS_VIEWS_MAX) {
		f->fd = fd;
		f->count++;
	}
	return false; /* look at them all */
}

static bool is_same_file(int fd, void *arg)
{
	(void)arg;
	return fd_is(fd, mfd.dev, mfd.ino);
}

static void fork_prepare(void);
static void fork_parent(void);
static void fork_child(void);

static void init(void)
{
	int expect = ST_UNINIT, e = errno, rc;
	fg_alias_options o = FG_ALIAS_OPTIONS_INIT;
	fg_alias_heap *h = NULL;
	fg_env_value v;

	if (!atomic_compare_exchange_strong(&state, &expect, ST_INIT))
		return;
	guard++;
	resolve_real();

	/* A bad value is said, and the default (off, copy, 1G) kept. */
	if ((rc = fg_env_get("FG_ALIAS_STATS", &v)) < 0)
		say("fg-alias-preload: %s; no statistics",
		    fg_last_error_detail());
	cfg.stats = rc > 0 && v.index;
	if (cfg.stats) {
		struct stat sb;

		stats_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, FD_FLOOR);
		if (stats_fd < 0)
			stats_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 10);
		if (stats_fd >= 0 && fstat(stats_fd, &sb) == 0) {
			stats_dev = sb.st_dev;
			stats_ino = sb.st_ino;
		} else if (stats_fd >= 0) {
			close(stats_fd);
			stats_fd = -1;
		}
	}
	/* "copy|share" */
	if ((rc = fg_env_get("FG_ALIAS_FORK", &v)) < 0)
		say("fg-alias-preload: %s; using copy", fg_last_error_detail());
	cfg.fork_copy = !(rc > 0 && v.index == 1);
	if ((rc = fg_env_get("FG_ALIAS_CAPACITY", &v)) < 0)
		say("fg-alias-preload: %s; using the default",
		    fg_last_error_detail());
	cfg.capacity = rc > 0 ? v.bytes : 0;
	o.capacity = cfg.capacity;

	rc = fg_alias_heap_create(&o, &h);
	if (!rc) {
		rc = find_range(h);
		if (rc) {
			say("fg-alias-preload: cannot locate the heap's views "
			    "(%s); using glibc malloc", strerror(-rc));
			/* h stays: objects may have been handed out internally */
			h = NULL;
		}
	} else {
		say("fg-alias-preload: no ALIAS heap (%s: %s); using glibc "
		    "malloc", fg_strerror(rc), fg_last_error_detail());
		h = NULL;
	}
	if (h) {
		fg_alias_stats st = {.size = sizeof st};

		if (fg_alias_get_stats(h, &st) == 0)
			cfg.capacity = st.capacity_bytes;
		/* The heap was created just now, by the first allocation
		 * of the process: its memfd is the only one of its kind. */
		struct fd_find f = {-1, 0};
		struct stat sb;

		scan_fds(note_heap_memfd, &f);
		if (f.count == 1 && fstat(f.fd, &sb) == 0) {
			mfd.fd = f.fd;
			mfd.dev = sb.st_dev;
			mfd.ino = sb.st_ino;
		}
		pthread_atfork(fork_prepare, fork_parent, fork_child);
		init_pid = getpid();
		heap = h;
	}
	atomic_store_explicit(&state, h ? ST_READY : ST_OFF, memory_order_release);
	guard--;
	errno = e;
}

/* ---- fork ------------------------------------------------------------------- */

/* glibc runs the handlers of one fork under its atfork lock: one pipe. */
static int fork_pipe[2] = {-1, -1};

static void fork_prepare(void)
{
	int e = errno;

	fork_pipe[0] = fork_pipe[1] = -1;
	if (cfg.fork_copy &&
	    atomic_load_explicit(&state, memory_order_acquire) == ST_READY &&
	    !in_child && pipe2(fork_pipe, O_CLOEXEC) < 0)
		fork_pipe[0] = fork_pipe[1] = -1;
	errno = e;
}

/* The parent's forking thread waits until the child has its copy (or is
 * gone: end of file). */
static void fork_parent(void)
{
	int e = errno;
	char c;

	if (fork_pipe[0] >= 0) {
		close(fork_pipe[1]);
		while (read(fork_pipe[0], &c, 1) < 0 && errno == EINTR)
			;
		close(fork_pipe[0]);
	}
	fork_pipe[0] = fork_pipe[1] = -1;
	errno = e;
}

static int copy_range(int src, int dst, off_t off, off_t end)
{
	static char buf[1 << 16]; /* a child of fork: one thread */
	bool plain = false;

	while (off < end) {
		size_t n = (size_t)(end - off);
		ssize_t r;

		if (!plain) {
			off_t in = off, out = off;

			r = copy_file_range(src, &in, dst, &out, n, 0);
			if (r < 0 && (errno == EXDEV || errno == EINVAL ||
				      errno == ENOSYS || errno == EOPNOTSUPP)) {
				plain = true;
				continue;
			}
		} else {
			if (n > sizeof buf)
				n = sizeof buf;
			r = pread(src, buf, n, off);
			if (r > 0 && pwrite(dst, buf, (size_t)r, off) != r)
				r = -1;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		off += r;
	}
	return 0;
}

/* In a child: give the views a private copy of the heap's bytes.  NULL, or
 * what failed. */
static const char *copy_heap(void)
{
	size_t len = (heap_hi - heap_lo) / FG_ALIAS_VIEWS_MAX;
	int src = mfd.fd, dst;
	bool ours = true; /* src is the number the ALIAS heap holds */
	off_t off = 0;
	struct stat st;

	if (src < 0)
		return "the heap's memfd was not found at start-up";
	if (!is_same_file(src, NULL)) {
		src = scan_fds(is_same_file, NULL);
		ours = false;
	}
	if (src < 0)
		return "the program closed the heap's memfd";
	/* One thread here (a child of fork): nobody closes it meanwhile. */
	dst = fg_fd_rehome(memfd_create("fg-alias", MFD_CLOEXEC));
	if (dst < 0)
		return "memfd_create failed";
	if (ftruncate(dst, (off_t)len) < 0) {
		close(dst);
		return "ftruncate failed";
	}
	while ((size_t)off < len) {
		off_t d = lseek(src, off, SEEK_DATA), hole;

		if (d < 0) {
			if (errno == ENXIO)
				break;
			close(dst);
			return "lseek(SEEK_DATA) failed";
		}
		hole = lseek(src, d, SEEK_HOLE);
		if (hole < 0 || (size_t)hole > len)
			hole = (off_t)len;
		if (copy_range(src, dst, d, hole)) {
			close(dst);
			return "copying the heap failed (out of memory?)";
		}
		off = hole;
	}
	for (unsigned v = 0; v < FG_ALIAS_VIEWS_MAX; v++)
		if (mmap((void *)(heap_lo + v * len), len, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED | MAP_NORESERVE, dst,
			 0) == MAP_FAILED) {
			close(dst);
			return v ? "mmap failed: the views are half copied, "
				   "half shared"
				 : "mmap failed";
		}
	/* The heap's descriptor now names the copy; a copy the program made
	 * of the parent's descriptor (ours false) stays as it is. */
	if (ours && dup3(dst, src, O_CLOEXEC) >= 0) {
		close(dst);
		dst = src;
	}
	if (fstat(dst, &st) == 0) {
		mfd.fd = dst;
		mfd.dev = st.st_dev;
		mfd.ino = st.st_ino;
	}
	return NULL;
}

static void fork_child(void)
{
	int e = errno;
	bool ready = atomic_load_explicit(&state, memory_order_acquire) == ST_READY;

	in_child = true;
	if (fork_pipe[0] >= 0)
		close(fork_pipe[0]);
	if (ready && cfg.fork_copy) {
		const char *why = copy_heap();

		if (why && !atomic_exchange(&warned_fork, true))
			say("fg-alias-preload: fork: the child shares the "
			    "heap's memory with its parent: %s", why);
	}
	if (fork_pipe[1] >= 0) {
		while (write(fork_pipe[1], "", 1) < 0 && errno == EINTR)
			;
		close(fork_pipe[1]);
	}
	fork_pipe[0] = fork_pipe[1] = -1;
	errno = e;
}

/* ---- the interface ---------------------------------------------------------- */

static void bad_free(void *p, int rc)
{
	atomic_fetch_add_explicit(&n_bad_frees, 1, memory_order_relaxed);
	if (!atomic_exchange(&warned_bad_free, true))
		say("fg-alias-preload: free(%p): %s; ignored (further bad "
		    "frees are counted, FG_ALIAS_STATS=1)",
		    p, rc == -EINVAL ? "not a live object of the heap "
				       "(double free or interior pointer)"
				     : fg_strerror(rc));
}

/* An object from the heap: counted, errno as the caller had it. */
static inline void *from_heap(void *p, int e)
{
	count_alloc();
	errno = e;
	return p;
}

/* The heap could not: p is glibc's (or the arena's) answer, counted as a
 * fallback; errno as the caller had it unless that failed too. */
static void *fell_back(void *p, int e)
{
	atomic_fetch_add_explicit(&n_fallbacks, 1, memory_order_relaxed);
	if (p)
		errno = e;
	return p;
}

EXPORT void *malloc(size_t n)
{
	fg_alias_heap *h = heap_for_alloc();
	void *p;
	int e;

	if (UNLIKELY(!h))
		return other_malloc(n);
	e = errno;
	guard++;
	p = fg_alias_malloc(h, n);
	guard--;
	if (LIKELY(p != NULL))
		return from_heap(p, e);
	return fell_back(other_malloc(n), e);
}

EXPORT void *calloc(size_t n, size_t size)
{
	fg_alias_heap *h = heap_for_alloc();
	void *p;
	int e;

	if (UNLIKELY(!h))
		return other_calloc(n, size);
	if (size && n > SIZE_MAX / size) {
		errno = ENOMEM;
		return NULL;
	}
	e = errno;
	guard++;
	p = fg_alias_calloc(h, n, size);
	guard--;
	if (LIKELY(p != NULL))
		return from_heap(p, e);
	return fell_back(other_calloc(n, size), e);
}

EXPORT void free(void *p)
{
	int e, rc;

	if (!p || in_boot(p))
		return;
	if (!in_heap(p)) {
		other_free(p);
		return;
	}
	if (UNLIKELY(in_child))
		return; /* the parent's object, or its copy: leave it */
	e = errno;
	guard++;
	rc = fg_alias_free(heap, p);
	guard--;
	if (UNLIKELY(rc))
		bad_free(p, rc);
	errno = e;
}

/* Move an object of the arena or the heap (of usable size us) to a new
 * one of n bytes; the old one is left to the caller. */
static void *move_out(const void *p, size_t us, size_t n)
{
	void *q = malloc(n);

	if (q)
		memcpy(q, p, us < n ? us : n);
	return q;
}

EXPORT void *realloc(void *p, size_t n)
{
	fg_alias_heap *h;
	size_t us;
	void *q;
	int e;

	if (!p)
		return malloc(n);
	if (in_boot(p)) {
		if (!n)
			return NULL; /* realloc(p, 0) frees p: a no-op here */
		return move_out(p, boot_usable(p), n);
	}
	if (!in_heap(p)) {
		if (have_real())
			return real.realloc(p, n);
		errno = ENOMEM; /* glibc's being looked up: p stays */
		return NULL;
	}
	us = fg_alias_usable_size(heap, p);
	if (!us) {
		errno = EINVAL; /* not a live object: p is not touched */
		return NULL;
	}
	h = heap_for_alloc();
	if (UNLIKELY(!h)) {
		/* A forked child (or inside the heap): copy out, keep p. */
		if (!n)
			return NULL;
		return move_out(p, us, n);
	}
	e = errno;
	guard++;
	q = fg_alias_realloc(h, p, n);
	guard--;
	if (LIKELY(q != NULL) || !n) {
		errno = e;
		return q;
	}
	/* The heap is full: the new object from glibc, p freed only then. */
	atomic_fetch_add_explicit(&n_fallbacks, 1, memory_order_relaxed);
	q = other_malloc(n);
	if (!q)
		return NULL;
	memcpy(q, p, us < n ? us : n);
	guard++;
	fg_alias_free(h, p);
	guard--;
	errno = e;
	return q;
}

static void *aligned_common(size_t align, size_t n)
{
	fg_alias_heap *h = heap_for_alloc();
	void *p;
	int e;

	if (UNLIKELY(!h))
		return other_aligned(align, n);
	e = errno;
	if (LIKELY(align <= MAX_HEAP_ALIGN)) {
		guard++;
		p = fg_alias_aligned_alloc(h, align, n);
		guard--;
		if (LIKELY(p != NULL))
			return from_heap(p, e);
	}
	return fell_back(other_aligned(align, n), e);
}

EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
	int e = errno, rc = 0;
	void *p;

	if (!align || (align & (align - 1)) || align % sizeof(void *))
		return EINVAL;
	p = aligned_common(align, n);
	if (p)
		*out = p;
	else
		rc = errno ? errno : ENOMEM;
	errno = e;
	return rc;
}

/* memalign and (as in glibc 2.36) aligned_alloc: an alignment that is not a
 * power of two is rounded up to one. */
EXPORT void *memalign(size_t align, size_t n)
{
	if (align <= MIN_ALIGN)
		return malloc(n);
	if (align > SIZE_MAX / 2 + 1) {
		errno = EINVAL;
		return NULL;
	}
	if (align & (align - 1))
		align = (size_t)1 << (64 - __builtin_clzll((unsigned long long)align));
	return aligned_common(align, n);
}

EXPORT void *aligned_alloc(size_t align, size_t n)
{
	return memalign(align, n);
}

EXPORT void *valloc(size_t n)
{
	return aligned_common(PAGE, n);
}

EXPORT void *pvalloc(size_t n)
{
	if (n > SIZE_MAX - PAGE) {
		errno = ENOMEM;
		return NULL;
	}
	return aligned_common(PAGE, n ? (n + PAGE - 1) & ~(size_t)(PAGE - 1) : PAGE);
}

EXPORT size_t malloc_usable_size(void *p)
{
	if (!p)
		return 0;
	if (in_boot(p))
		return boot_usable(p);
	if (in_heap(p))
		return fg_alias_usable_size(heap, p); /* takes no lock */
	return have_real() ? real.usable(p) : 0;
}

EXPORT fg_alias_heap *fg_alias_preload_heap(void)
{
	if (atomic_load_explicit(&state, memory_order_acquire) == ST_UNINIT)
		init();
	return atomic_load_explicit(&state, memory_order_acquire) == ST_READY &&
			       !in_child
		       ? heap
		       : NULL;
}

struct trampoline {
	fg_alias_card_cb cb;
	void *arg;
};

/* The caller's callback allocates from the heap again (only collect_lock is
 * held then, as fg_alias_collect allows). */
static void trampoline(void *card, size_t len, void *arg)
{
	struct trampoline *t = arg;
	int g = guard;

	guard = 0;
	t->cb(card, len, t->arg);
	guard = g;
}

EXPORT int fg_alias_preload_collect(fg_alias_card_cb cb, void *arg)
{
	fg_alias_heap *h = fg_alias_preload_heap();
	struct trampoline t = {cb, arg};
	int rc;

	if (!h)
		return -FG_EBADTRACKER;
	guard++;
	rc = fg_alias_collect(h, cb ? trampoline : NULL, &t);
	guard--;
	return rc;
}

/* FG_ALIAS_STATS=1: one line at exit (exit(3), not _exit), from the process
 * that created the heap only. */
__attribute__((destructor)) static void report(void)
{
	fg_alias_stats st = {.size = sizeof st};

	if (!cfg.stats || in_child || getpid() != init_pid ||
	    atomic_load_explicit(&state, memory_order_acquire) != ST_READY)
		return;
	guard++;
	if (fg_alias_get_stats(heap, &st) == 0)
		say_fd(fd_is(stats_fd, stats_dev, stats_ino) ? stats_fd
							      : STDERR_FILENO,
		    "fg-alias-preload: pid %d, backend %s, %zu-byte cards, "
		    "capacity %llu bytes: %llu allocations, %llu objects live "
		    "at exit (%llu bytes), %llu fallbacks to glibc, %llu bad "
		    "frees, %zu bootstrap bytes, %llu bytes resident, "
		    "%llu collections (%llu dirty cards in the last)",
		    (int)init_pid, fg_backend_name(st.backend), st.card_size,
		    (unsigned long long)st.capacity_bytes,
		    (unsigned long long)atomic_load(&n_heap_allocs),
		    (unsigned long long)st.live_objects,
		    (unsigned long long)st.allocated_bytes,
		    (unsigned long long)atomic_load(&n_fallbacks),
		    (unsigned long long)atomic_load(&n_bad_frees),
		    atomic_load(&boot_top),
		    (unsigned long long)st.resident_bytes,
		    (unsigned long long)st.collections,
		    (unsigned long long)st.last_dirty_cards);
	guard--;
}
