/* util.c - errors, page runs, bitmaps, clocks and mapping checks shared by
 * the core and the backends. */
#include "fg_compat.h"
#include "fg_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

size_t fg_page_size;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* A word on a MADV_WIPEONFORK page: the kernel zeroes it in any child
 * that does not share our memory (fork, _Fork, a raw clone), so a
 * tracker can tell it runs in a forked child without a system call: the
 * word no longer holds the value it was made with.  NULL where the kernel
 * lacks MADV_WIPEONFORK (4.14): getpid() then. */
static _Atomic uint64_t *fork_canary;

static void init(void)
{
	long ps = sysconf(_SC_PAGESIZE);
	void *p;

	fg_page_size = ps > 0 ? (size_t)ps : 4096;
	p = mmap(NULL, fg_page_size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p != MAP_FAILED) {
		if (madvise(p, fg_page_size, MADV_WIPEONFORK) == 0)
			fork_canary = p;
		else
			munmap(p, fg_page_size);
	}
}

uint64_t fg_process_epoch(void)
{
	uint64_t v, want;

	if (!fork_canary)
		return (uint64_t)getpid();
	v = atomic_load(fork_canary);
	if (v)
		return v;
	/* First ask in this process: a value no ancestor's word held. */
	want = ((uint64_t)getpid() << 1) | 1;
	if (atomic_compare_exchange_strong(fork_canary, &v, want))
		return want;
	return v;
}

bool fg_process_changed(uint64_t epoch)
{
	if (!fork_canary)
		return (uint64_t)getpid() != epoch;
	return atomic_load_explicit(fork_canary, memory_order_relaxed) != epoch;
}

void fg_init_once(void)
{
	pthread_once(&init_once, init);
}

/* A program that links the toolkit (or runs under the preload shim)
 * knows nothing of its descriptors and may close 3, 4, 5 ... or dup2 its
 * own files over them; a pagemap read or a userfaultfd ioctl would then go
 * to the program's file.  So every descriptor the toolkit keeps is moved
 * to FG_FD_FLOOR or above, close-on-exec; where no such number is allowed
 * (RLIMIT_NOFILE) it stays where it is.  errno is preserved. */
int fg_fd_rehome(int fd)
{
	int hi, e = errno;

	if (fd < 0 || fd >= FG_FD_FLOOR)
		return fd;
	hi = fcntl(fd, F_DUPFD_CLOEXEC, FG_FD_FLOOR);
	if (hi < 0) {
		errno = e;
		return fd;
	}
	close(fd);
	errno = e;
	return hi;
}

int fg_version(void)
{
	return FG_VERSION_MAJOR * 10000 + FG_VERSION_MINOR * 100 +
	       FG_VERSION_PATCH;
}

static __thread char last_detail[512];

int fg_fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_detail, sizeof last_detail, fmt, ap);
	va_end(ap);
	return err;
}

const char *fg_last_error_detail(void)
{
	return last_detail;
}

static const char *const messages[FG_ELAST - FG_EBASE] = {
	[FG_EUNALIGNED - FG_EBASE] = "address or length is not page-aligned",
	[FG_EZEROLEN - FG_EBASE] = "zero-length region",
	[FG_EOVERLAP - FG_EBASE] = "range overlaps a region already tracked",
	[FG_EUNMAPPED - FG_EBASE] = "range is not (or no longer) entirely mapped",
	[FG_EMEMKIND - FG_EBASE] =
		"memory kind not trackable (need writable anonymous, shared "
		"anonymous or memfd/shmem memory)",
	[FG_ENOTREG - FG_EBASE] = "not a registered region",
	[FG_EDESTROYED - FG_EBASE] = "tracker already destroyed",
	[FG_EBADTRACKER - FG_EBASE] = "not a tracker",
	[FG_ECARD - FG_EBASE] =
		"bad card size (a power of two >= 64, or a multiple of the "
		"page size)",
	[FG_EUNAVAIL - FG_EBASE] = "backend unavailable on this machine",
	[FG_EBACKENDNAME - FG_EBASE] = "unknown backend name",
	[FG_ESTALE - FG_EBASE] = "iterator belongs to an older collection",
	[FG_EFORKED - FG_EBASE] =
		"not possible in a forked child (create a new tracker there)",
	[FG_EBITMAP - FG_EBASE] = "bitmap too small for the region's cards",
};

const char *fg_strerror(int err)
{
	if (err == INT_MIN)
		return "unknown error";
	if (err < 0)
		err = -err;
	if (err == 0)
		return "success";
	if (err >= FG_EBASE && err < FG_ELAST)
		return messages[err - FG_EBASE];
	if (err < FG_EBASE)
		return strerror(err);
	return "unknown error";
}

uint64_t fg_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int fg_runs_push(fg_runs *r, uintptr_t start, uintptr_t end)
{
	if (r->n && r->v[r->n - 1].end >= start && r->v[r->n - 1].start <= start) {
		if (end > r->v[r->n - 1].end)
			r->v[r->n - 1].end = end;
		return 0;
	}
	return fg_runs_append(r, start, end);
}

/* Run arrays grow with mmap/mremap, not malloc: a collector calls
 * fg_collect with its other threads stopped, maybe inside malloc with
 * its arena's lock held. */
int fg_runs_append(fg_runs *r, uintptr_t start, uintptr_t end)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 256; /* 4 KiB first */
		void *v;

		if (r->v)
			v = mremap(r->v, r->cap * sizeof *r->v,
				   cap * sizeof *r->v, MREMAP_MAYMOVE);
		else
			v = mmap(NULL, cap * sizeof *r->v,
				 PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (v == MAP_FAILED)
			return -ENOMEM;
		r->v = v;
		r->cap = cap;
	}
	r->v[r->n].start = start;
	r->v[r->n].end = end;
	r->n++;
	return 0;
}

void fg_runs_free(fg_runs *r)
{
	if (r->v)
		munmap(r->v, r->cap * sizeof *r->v);
	r->v = NULL;
	r->n = r->cap = 0;
}

int fg_bitmap_take(_Atomic uint64_t *w, size_t npages, uintptr_t base,
		   fg_runs *out)
{
	return fg_bitmap_take_range(w, 0, npages, base, out);
}

int fg_runs_push_mask(fg_runs *out, uintptr_t base, size_t unit,
		      uint64_t mask)
{
	while (mask) {
		unsigned b = (unsigned)__builtin_ctzll(mask);
		/* The run's length: the ones from b up (64 - b if all). */
		unsigned n = (~mask >> b) ? (unsigned)__builtin_ctzll(~mask >> b)
					  : 64 - b;
		int rc;

		rc = fg_runs_push(out, base + b * unit, base + (b + n) * unit);
		if (rc)
			return rc;
		mask = b + n < 64 ? mask & ~((UINT64_C(1) << (b + n)) - 1) : 0;
	}
	return 0;
}

/* The page runs of word i's bits into out. */
static int push_bits(fg_runs *out, uintptr_t base, size_t i, uint64_t bits)
{
	return fg_runs_push_mask(out, base + i * 64 * fg_page_size,
				 fg_page_size, bits);
}

int fg_bitmap_take_range(_Atomic uint64_t *w, size_t first, size_t last,
			 uintptr_t base, fg_runs *out)
{
	for (size_t i = first / 64; i * 64 < last; i++) {
		uint64_t bits, mask = ~UINT64_C(0);
		int rc;

		if (i * 64 < first)
			mask &= ~UINT64_C(0) << (first % 64);
		if ((i + 1) * 64 > last)
			mask &= (UINT64_C(1) << (last % 64)) - 1;
		/* A relaxed peek keeps clean words free of locked ops. */
		if (!(atomic_load_explicit(&w[i], memory_order_relaxed) & mask))
			continue;
		bits = mask == ~UINT64_C(0)
			       ? atomic_exchange_explicit(&w[i], 0,
							  memory_order_seq_cst)
			       : atomic_fetch_and_explicit(&w[i], ~mask,
							   memory_order_seq_cst) &
					 mask;
		rc = push_bits(out, base, i, bits);
		if (rc)
			return rc;
	}
	return 0;
}

int fg_bitmap_read(const _Atomic uint64_t *w, size_t npages, uintptr_t base,
		   fg_runs *out)
{
	for (size_t i = 0; i * 64 < npages; i++) {
		uint64_t bits = atomic_load(&w[i]);
		int rc;

		if ((i + 1) * 64 > npages)
			bits &= (UINT64_C(1) << (npages % 64)) - 1;
		rc = push_bits(out, base, i, bits);
		if (rc)
			return rc;
	}
	return 0;
}

bool fg_range_mapped(uintptr_t addr, size_t len)
{
	/* msync walks the VMAs only: ENOMEM means a hole in the range. */
	return msync((void *)addr, len, MS_ASYNC) == 0 || errno != ENOMEM;
}

/* Whether a /proc/self/maps path names memory we can track. */
static bool trackable_path(const char *path)
{
	static const char *const ok_prefix[] = {
		"/memfd:", "/dev/shm/", "/SYSV", "/dev/zero", "[heap]",
		"[stack", "[anon:", "[anon_shmem",
	};

	if (!*path)
		return true; /* private or shared anonymous */
	for (size_t i = 0; i < sizeof ok_prefix / sizeof *ok_prefix; i++)
		if (!strncmp(path, ok_prefix[i], strlen(ok_prefix[i])))
			return true;
	return false;
}

/* One VMA [lo, hi) of a range fg_register is asked for: writable, and
 * anonymous, shmem or memfd memory, or a private mapping of a file where
 * the backend watches those (private_file); a shared file sets
 * *shared_file. */
static int check_vma(unsigned long lo, unsigned long hi, const char *perms,
		     const char *path, bool private_file, bool *shared_file)
{
	if (perms[1] != 'w')
		return fg_fail(-FG_EMEMKIND, "[%#lx, %#lx) is not writable (%s)",
			       lo, hi, perms);
	if (private_file && perms[3] == 'p' && *path == '/')
		return 0;
	if (!trackable_path(path) ||
	    (perms[3] == 'p' && *path == '/' && strncmp(path, "/dev/zero", 9)))
		return fg_fail(-FG_EMEMKIND,
			       "[%#lx, %#lx) is a %s mapping of %s; only "
			       "anonymous, shared anonymous and memfd/shmem "
			       "memory%s can be tracked",
			       lo, hi, perms[3] == 'p' ? "private" : "shared",
			       path,
			       perms[3] == 'p'
				       ? " (and, on a backend with "
					 "FG_CAP_PRIVATE_FILE, private file "
					 "mappings)"
				       : "");
	if (perms[3] == 's' && *path == '/' && strncmp(path, "/dev/zero", 9))
		*shared_file = true;
	return 0;
}

/* /proc/self/maps, open for PROCMAP_QUERY in this process (a descriptor
 * inherited over fork reads the parent's maps): -1 before the first
 * query, -2 where the kernel has no PROCMAP_QUERY (before 6.11), found
 * by a query on a descriptor just opened.  A descriptor that fails later
 * is never closed here: the program may have closed it (closefrom) and
 * reused its number; after EBADF the next query opens a new one. */
static pthread_mutex_t maps_lock = PTHREAD_MUTEX_INITIALIZER;
static int maps_fd = -1;
static pid_t maps_pid;

static int query_fd(int fd, uintptr_t addr, struct procmap_query *q,
		    char *name, size_t namelen)
{
	*q = (struct procmap_query){
		.size = sizeof *q,
		.query_addr = addr,
		.vma_name_addr = (uintptr_t)name,
		.vma_name_size = (uint32_t)namelen,
	};
	return ioctl(fd, PROCMAP_QUERY, q) ? -errno : 0;
}

/* The VMA covering addr by PROCMAP_QUERY: 0 with *q and name filled,
 * -FG_EUNMAPPED where none covers it, -ENOTTY where the query cannot
 * answer (no such ioctl, a name too long): read the text instead. */
static int maps_query(uintptr_t addr, struct procmap_query *q, char *name,
		      size_t namelen)
{
	int rc;

	pthread_mutex_lock(&maps_lock);
	if (maps_fd != -2 && maps_pid != getpid()) {
		/* In a forked child the inherited one is the child's to
		 * close: it reads the parent's maps. */
		if (maps_fd >= 0 && maps_pid)
			close(maps_fd);
		maps_fd = fg_fd_rehome(
			open("/proc/self/maps", O_RDONLY | O_CLOEXEC));
		maps_pid = getpid();
		if (maps_fd >= 0) {
			rc = query_fd(maps_fd, (uintptr_t)&maps_fd, q, name,
				      namelen);
			if (rc == -ENOTTY || rc == -EINVAL) {
				close(maps_fd);
				maps_fd = -2;
			}
		}
	}
	if (maps_fd < 0) {
		pthread_mutex_unlock(&maps_lock);
		return -ENOTTY;
	}
	rc = query_fd(maps_fd, addr, q, name, namelen);
	if (rc == -EBADF)
		maps_pid = 0; /* reopen (not close) at the next query */
	pthread_mutex_unlock(&maps_lock);
	if (rc)
		return rc == -ENOENT ? -FG_EUNMAPPED : -ENOTTY;
	if (!q->vma_name_size)
		name[0] = 0;
	return 0;
}

/* fg_check_mapping by PROCMAP_QUERY, a VMA a call; -ENOTTY: use the
 * text. */
static int check_by_query(uintptr_t addr, uintptr_t end, bool private_file,
			  bool *shared_file)
{
	uintptr_t covered = addr;
	char name[400];

	while (covered < end) {
		struct procmap_query q;
		char perms[5];
		int rc = maps_query(covered, &q, name, sizeof name);

		if (rc == -FG_EUNMAPPED)
			return fg_fail(rc, "%#lx is not mapped",
				       (unsigned long)covered);
		if (rc)
			return rc;
		perms[0] = q.vma_flags & PROCMAP_QUERY_VMA_READABLE ? 'r' : '-';
		perms[1] = q.vma_flags & PROCMAP_QUERY_VMA_WRITABLE ? 'w' : '-';
		perms[2] = q.vma_flags & PROCMAP_QUERY_VMA_EXECUTABLE ? 'x'
								      : '-';
		perms[3] = q.vma_flags & PROCMAP_QUERY_VMA_SHARED ? 's' : 'p';
		perms[4] = 0;
		rc = check_vma(q.vma_start, q.vma_end, perms, name,
			       private_file, shared_file);
		if (rc)
			return rc;
		covered = q.vma_end;
	}
	return 0;
}

/* Reading /proc/self/maps formats every mapping of the process (a
 * large program's several hundred lines): fg_register asks the kernel
 * for the VMAs of its range alone where it can (Linux 6.11). */
int fg_check_mapping(uintptr_t addr, size_t len, bool private_file,
		     bool *shared_file)
{
	uintptr_t end = addr + len, covered = addr;
	char line[512];
	int rc = 0;
	FILE *f;

	*shared_file = false;
	if (!fg_range_mapped(addr, len))
		return fg_fail(-FG_EUNMAPPED,
			       "[%#lx, %#lx) contains unmapped addresses",
			       (unsigned long)addr, (unsigned long)end);
	rc = check_by_query(addr, end, private_file, shared_file);
	if (rc != -ENOTTY)
		return rc;
	*shared_file = false;
	rc = 0;
	f = fopen("/proc/self/maps", "re");
	if (!f)
		return fg_fail(-errno, "/proc/self/maps: %s", strerror(errno));
	while (covered < end && fgets(line, sizeof line, f)) {
		unsigned long lo, hi;
		char perms[8], path[400] = "";

		if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %399[^\n]", &lo, &hi,
			   perms, path) < 3)
			continue;
		if (hi <= covered)
			continue;
		if (lo > covered) {
			rc = fg_fail(-FG_EUNMAPPED, "%#lx is not mapped",
				     (unsigned long)covered);
			break;
		}
		rc = check_vma(lo, hi, perms, path, private_file, shared_file);
		if (rc)
			break;
		covered = hi;
	}
	fclose(f);
	if (!rc && covered < end)
		rc = fg_fail(-FG_EUNMAPPED, "%#lx is not mapped",
			     (unsigned long)covered);
	return rc;
}

/* The /proc/self/maps device field "MM:mm" (hex) as a dev_t. */
static dev_t maps_dev(const char *s)
{
	unsigned ma = 0, mi = 0;

	sscanf(s, "%x:%x", &ma, &mi);
	return makedev(ma, mi);
}

int fg_shared_writers(uintptr_t addr, size_t len, char *what, size_t wlen)
{
	uintptr_t end = addr + len;
	struct {
		dev_t dev;
		unsigned long ino;
	} files[8];
	size_t nfiles = 0;
	char line[512];
	FILE *f = fopen("/proc/self/maps", "re");
	DIR *d;
	struct dirent *e;
	int found = 0;

	if (!f)
		return 0;
	/* The files behind the range (memfd, /dev/shm, SysV)... */
	while (fgets(line, sizeof line, f)) {
		unsigned long lo, hi, ino;
		char perms[8], dev[16], path[400] = "";

		if (sscanf(line, "%lx-%lx %7s %*s %15s %lu %399[^\n]", &lo, &hi,
			   perms, dev, &ino, path) < 5 ||
		    hi <= addr || lo >= end || !ino || perms[3] != 's')
			continue;
		if (nfiles < sizeof files / sizeof *files &&
		    (!nfiles || files[nfiles - 1].ino != ino)) {
			files[nfiles].dev = maps_dev(dev);
			files[nfiles++].ino = ino;
		}
	}
	if (!nfiles) {
		fclose(f);
		return 0;
	}
	/* ...mapped writable elsewhere... */
	rewind(f);
	while (!found && fgets(line, sizeof line, f)) {
		unsigned long lo, hi, ino;
		char perms[8], dev[16];

		if (sscanf(line, "%lx-%lx %7s %*s %15s %lu", &lo, &hi, perms,
			   dev, &ino) < 5 ||
		    (lo < end && hi > addr) || perms[1] != 'w' ||
		    perms[3] != 's')
			continue;
		for (size_t i = 0; i < nfiles && !found; i++)
			if (files[i].ino == ino && files[i].dev == maps_dev(dev)) {
				snprintf(what, wlen,
					 "a second writable mapping of it at "
					 "[%#lx, %#lx)", lo, hi);
				found = 1;
			}
	}
	fclose(f);
	/* ...or open for writing. */
	d = found ? NULL : opendir("/proc/self/fd");
	while (d && !found && (e = readdir(d))) {
		char p[300], info[256];
		struct stat st;
		unsigned long flags = 0;
		FILE *fi;

		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof p, "/proc/self/fd/%s", e->d_name);
		if (stat(p, &st))
			continue;
		for (size_t i = 0; i < nfiles && !found; i++) {
			if (files[i].ino != st.st_ino || files[i].dev != st.st_dev)
				continue;
			snprintf(p, sizeof p, "/proc/self/fdinfo/%s", e->d_name);
			fi = fopen(p, "re");
			while (fi && fgets(info, sizeof info, fi))
				if (sscanf(info, "flags: %lo", &flags) == 1)
					break;
			if (fi)
				fclose(fi);
			if ((flags & O_ACCMODE) != O_RDONLY) {
				snprintf(what, wlen,
					 "descriptor %s is open on it for "
					 "writing", e->d_name);
				found = 1;
			}
		}
	}
	if (d)
		closedir(d);
	return found;
}
