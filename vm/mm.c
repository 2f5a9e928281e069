/* mm.c - the guest's address space: areas, memslots, and the mapping
 * calls (mmap, munmap, mprotect, mremap, brk, madvise, shmat, shmdt).
 *
 * The host process and the guest share one address space.  The area
 * table says who owns each range (vmm.h): the program sees and may change
 * only GUEST areas (SPECIAL ones it may see), fgvm's own memory is HOST
 * and looks unmapped to the program.  Each mapping call is performed by
 * the host on the program's behalf and mirrored here, keeping invariant
 * I1 (vmm.h): rights are taken from the guest page tables before the host
 * call and given after it.  Slots are created to cover every page the
 * guest may access and are not deleted when the memory goes away (KVM's
 * MMU notifier drops what they mapped; a slot over a hole is harmless
 * and is reused by the next mapping there).
 */
#include "vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/mman.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/uio.h>

#define MAX_AREAS 65536
#define MAX_SLOTS 32768
#define MAX_SHM 256

static struct shm_att {
	uint64_t addr, len;
} shm_atts[MAX_SHM];

/* ---- guest memory access that cannot fault ---- */

/* Only the program's own memory: process_vm_readv/writev would reach
 * fgvm's as well (the area table says whose it is). */
long guest_read(void *dst, uint64_t src, size_t len)
{
	struct iovec l = {dst, len}, r = {(void *)src, len};
	long n;

	if (!len)
		return 0;
	if (!guest_range_ok(&g_vm, src, len, PROT_READ))
		return -EFAULT;
	n = vsys6(SYS_process_vm_readv, vgetpid(), (long)&l, 1, (long)&r, 1, 0);
	return n == (long)len ? n : -EFAULT;
}

long guest_write(uint64_t dst, const void *src, size_t len)
{
	struct iovec l = {(void *)src, len}, r = {(void *)dst, len};
	long n;

	if (!len)
		return 0;
	if (!guest_range_ok(&g_vm, dst, len, PROT_WRITE))
		return -EFAULT;
	n = vsys6(SYS_process_vm_writev, vgetpid(), (long)&l, 1, (long)&r, 1, 0);
	return n == (long)len ? n : -EFAULT;
}

long guest_strlen(uint64_t s, size_t max)
{
	char buf[256];
	size_t off = 0;

	while (off < max) {
		/* Read up to the end of the page, which is mapped or not as
		 * a whole. */
		size_t n = PAGE_SIZE - ((s + off) & (PAGE_SIZE - 1));
		void *z;

		if (n > sizeof buf)
			n = sizeof buf;
		if (guest_read(buf, s + off, n) < 0)
			return -EFAULT;
		if ((z = memchr(buf, 0, n)))
			return (long)(off + (size_t)((char *)z - buf));
		off += n;
	}
	return -ENAMETOOLONG;
}

/* ---- areas ---- */

/* In a sorted array of n records of size bytes that begin with
 * {uint64_t start, end} (areas, slots): the first that ends after addr. */
static size_t first_ending_after(const void *base, size_t n, size_t size,
				 uint64_t addr)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		uint64_t end;

		memcpy(&end, (const char *)base + mid * size + 8, 8);
		if (end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static size_t area_idx(struct vm *vm, uint64_t addr)
{
	return first_ending_after(vm->areas, vm->nareas, sizeof *vm->areas, addr);
}

struct area *area_next(struct vm *vm, uint64_t addr)
{
	size_t i = area_idx(vm, addr);

	return i < vm->nareas ? &vm->areas[i] : NULL;
}

struct area *area_find(struct vm *vm, uint64_t addr)
{
	struct area *a = area_next(vm, addr);

	return a && a->start <= addr ? a : NULL;
}

static bool same(const struct area *a, const struct area *b)
{
	return a->kind == b->kind && a->prot == b->prot && a->flags == b->flags;
}

static void area_insert(struct vm *vm, size_t i, struct area a)
{
	if (vm->nareas >= MAX_AREAS)
		vdie(FGVM_EXIT_INTERNAL, "too many mappings (%d): the area table is full",
		     MAX_AREAS);
	memmove(&vm->areas[i + 1], &vm->areas[i],
		(vm->nareas - i) * sizeof *vm->areas);
	vm->areas[i] = a;
	vm->nareas++;
}

static void area_remove(struct vm *vm, size_t i)
{
	memmove(&vm->areas[i], &vm->areas[i + 1],
		(vm->nareas - i - 1) * sizeof *vm->areas);
	vm->nareas--;
}

void area_paint(struct vm *vm, uint64_t start, uint64_t end, int kind,
		int prot, int flags)
{
	size_t i;

	if (start >= end)
		return;
	/* Cut [start, end) out of whatever is there. */
	i = area_idx(vm, start);
	while (i < vm->nareas && vm->areas[i].start < end) {
		struct area *a = &vm->areas[i];

		if (a->start < start && a->end > end) {
			struct area right = *a;

			right.start = end;
			a->end = start;
			area_insert(vm, i + 1, right);
			i++;
			break;
		}
		if (a->start < start) {
			a->end = start;
			i++;
		} else if (a->end > end) {
			a->start = end;
			break;
		} else {
			area_remove(vm, i);
		}
	}
	if (kind == AREA_FREE)
		return;
	{
		struct area n = {start, end, (uint8_t)kind, (uint8_t)prot,
				 (uint16_t)flags};

		i = area_idx(vm, start);
		area_insert(vm, i, n);
		/* Merge with equal neighbours. */
		if (i + 1 < vm->nareas && vm->areas[i + 1].start == end &&
		    same(&vm->areas[i + 1], &n)) {
			vm->areas[i].end = vm->areas[i + 1].end;
			area_remove(vm, i + 1);
		}
		if (i > 0 && vm->areas[i - 1].end == start &&
		    same(&vm->areas[i - 1], &vm->areas[i])) {
			vm->areas[i - 1].end = vm->areas[i].end;
			area_remove(vm, i);
		}
	}
}

/* Whether every page of [start, end) is in an area of kind with at least
 * need_prot (kind GUEST also accepts SPECIAL when allow_special). */
static bool range_is(struct vm *vm, uint64_t start, uint64_t end, int kind,
		     int need, bool allow_special)
{
	uint64_t p = start;

	while (p < end) {
		struct area *a = area_find(vm, p);

		if (!a || (a->kind != kind &&
			   !(allow_special && a->kind == AREA_SPECIAL)) ||
		    (a->prot & need) != need)
			return false;
		p = a->end;
	}
	return true;
}

bool area_range_is(struct vm *vm, uint64_t start, uint64_t end, int kind,
		   int need_prot)
{
	return range_is(vm, start, end, kind, need_prot, false);
}

static bool overlaps_kind(struct vm *vm, uint64_t start, uint64_t end, int kind)
{
	for (struct area *a = area_next(vm, start); a && a < vm->areas + vm->nareas &&
						    a->start < end;
	     a++)
		if (a->kind == kind)
			return true;
	return false;
}

bool guest_range_ok(struct vm *vm, uint64_t p, uint64_t len, int need)
{
	bool ok;

	if (!len)
		return true;
	if (p + len < p || p + len > USER_TOP)
		return false;
	vlock_take(&vm->mm_lock);
	ok = range_is(vm, align_down(p, PAGE_SIZE), align_up(p + len, PAGE_SIZE),
		      AREA_GUEST, need, need == PROT_READ);
	vlock_give(&vm->mm_lock);
	return ok;
}

/* ---- slots ---- */

static size_t slot_idx(struct vm *vm, uint64_t addr)
{
	return first_ending_after(vm->slots, vm->nslots, sizeof *vm->slots, addr);
}

static int slot_new(struct vm *vm, uint64_t start, uint64_t end)
{
	size_t i = slot_idx(vm, start);
	int id = -1;
	int rc;

	if (vm->nslots >= MAX_SLOTS)
		return -ENOSPC;
	for (int k = 0; k < vm->nr_slots; k++)
		if (!vm->slot_ids[k]) {
			id = k;
			break;
		}
	if (id < 0)
		return -ENOSPC;
	rc = slot_set(vm, (uint32_t)id, start, end - start, 0);
	if (rc)
		return rc;
	vm->slot_ids[id] = 1;
	memmove(&vm->slots[i + 1], &vm->slots[i], (vm->nslots - i) * sizeof *vm->slots);
	vm->slots[i] = (struct slot){start, end, (uint32_t)id, 0};
	vm->nslots++;
	track_slot_created(vm, &vm->slots[i]);
	return 0;
}

int slots_cover(struct vm *vm, uint64_t start, uint64_t end)
{
	uint64_t p = start;

	while (p < end) {
		size_t i = slot_idx(vm, p);
		uint64_t gap_end = end;
		int rc;

		if (i < vm->nslots && vm->slots[i].start <= p) {
			p = vm->slots[i].end;
			continue;
		}
		if (i < vm->nslots && vm->slots[i].start < gap_end)
			gap_end = vm->slots[i].start;
		if (gap_end - p > vm->max_slot_bytes)
			gap_end = p + vm->max_slot_bytes;
		rc = slot_new(vm, p, gap_end);
		if (rc) {
			vsay("cannot create a KVM memory slot for %p-%p: %s", (void *)p,
			     (void *)gap_end, verrname(-rc));
			return rc;
		}
		p = gap_end;
	}
	return 0;
}

/* ---- set-up ---- */

int mm_init(struct vm *vm)
{
	size_t need = MAX_AREAS * sizeof(struct area) + MAX_SLOTS * sizeof(struct slot) +
		      (size_t)vm->nr_slots + MAX_TREGIONS * sizeof(struct tregion);
	long r = vmmap(NULL, align_up(need, PAGE_SIZE), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint8_t *p;

	if (vsys_err(r))
		return (int)r;
	p = (uint8_t *)r;
	vm->areas = (struct area *)p;
	p += MAX_AREAS * sizeof(struct area);
	vm->slots = (struct slot *)p;
	p += MAX_SLOTS * sizeof(struct slot);
	vm->tregions = (struct tregion *)p;
	p += MAX_TREGIONS * sizeof(struct tregion);
	vm->slot_ids = p;
	return 0;
}

static long read_all(const char *path, char *buf, size_t len)
{
	long fd = vsys4(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
	size_t off = 0;

	if (fd < 0)
		return fd;
	while (off + 1 < len) {
		long n = vsys3(SYS_read, fd, buf + off, len - 1 - off);

		if (n == -EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	vsys1(SYS_close, fd);
	buf[off] = 0;
	return off + 1 >= len ? -E2BIG : (long)off;
}

static uint64_t hex(const char **s)
{
	uint64_t v = 0;

	for (;; (*s)++) {
		char c = **s;

		if (c >= '0' && c <= '9')
			v = v * 16 + (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v * 16 + (uint64_t)(c - 'a' + 10);
		else
			return v;
	}
}

int mm_import_maps(struct vm *vm)
{
	static char buf[1 << 20];
	long n = read_all("/proc/self/maps", buf, sizeof buf);
	const char *s = buf;

	if (n < 0)
		return (int)n;
	while (*s) {
		const char *eol = strchr(s, '\n');
		uint64_t start, end;
		int prot = 0, kind = AREA_HOST;

		start = hex(&s);
		s++;
		end = hex(&s);
		s++;
		prot |= s[0] == 'r' ? PROT_READ : 0;
		prot |= s[1] == 'w' ? PROT_WRITE : 0;
		prot |= s[2] == 'x' ? PROT_EXEC : 0;
		if (eol) {
			const char *name = eol;

			while (name > s && name[-1] != ' ')
				name--;
			if (!strncmp(name, "[vdso]", 6) || !strncmp(name, "[vvar", 5))
				kind = AREA_SPECIAL;
			else if (!strncmp(name, "[vsyscall]", 10))
				kind = AREA_FREE;
		}
		if (end <= USER_TOP && kind != AREA_FREE)
			area_paint(vm, start, end, kind, prot, 0);
		if (!eol)
			break;
		s = eol + 1;
	}
	return 0;
}

int mm_host_map(struct vm *vm, size_t len, size_t align, void **out)
{
	size_t span = len + (align > PAGE_SIZE ? align : 0);
	long r = vmmap(NULL, span, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint64_t p, q;

	if (vsys_err(r))
		return (int)r;
	p = (uint64_t)r;
	q = align > PAGE_SIZE ? align_up(p, align) : p;
	if (q > p)
		vsys2(SYS_munmap, p, q - p);
	if (p + span > q + len)
		vsys2(SYS_munmap, q + len, p + span - (q + len));
	vlock_take(&vm->mm_lock);
	area_paint(vm, q, q + len, AREA_HOST, PROT_READ | PROT_WRITE, 0);
	vlock_give(&vm->mm_lock);
	*out = (void *)q;
	return 0;
}

void mm_host_unmap(struct vm *vm, void *p, size_t len)
{
	vlock_take(&vm->mm_lock);
	vsys2(SYS_munmap, p, len);
	area_paint(vm, (uint64_t)p, (uint64_t)p + len, AREA_FREE, 0, 0);
	vlock_give(&vm->mm_lock);
}

/* ---- the mapping calls ---- */

static bool bad_range(uint64_t addr, uint64_t len)
{
	return (addr & (PAGE_SIZE - 1)) || addr + len < addr || addr + len > USER_TOP;
}

static void once(bool *said, const char *fmt, uint64_t a, uint64_t b)
{
	if (!*said) {
		*said = true;
		vsay(fmt, (void *)a, (void *)b);
	}
}

long mm_mmap(struct vm *vm, uint64_t addr, uint64_t len, int prot, int flags,
	     int fd, long off)
{
	static bool said;
	bool fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE);
	bool replace = (flags & MAP_FIXED) && !(flags & MAP_FIXED_NOREPLACE);
	uint64_t alen = align_up(len, PAGE_SIZE);
	long r;
	int rc;

	if (!len || alen < len)
		return -EINVAL;
	if (fixed && bad_range(addr, alen))
		return (addr & (PAGE_SIZE - 1)) ? -EINVAL : -ENOMEM;
	vlock_take(&vm->mm_lock);
	if (fixed && (overlaps_kind(vm, addr, addr + alen, AREA_HOST) ||
		      overlaps_kind(vm, addr, addr + alen, AREA_SPECIAL))) {
		vlock_give(&vm->mm_lock);
		if (flags & MAP_FIXED_NOREPLACE)
			return -EEXIST;
		once(&said, "the program mapped over fgvm's own memory (%p-%p): refused with ENOMEM",
		     addr, addr + alen);
		return -ENOMEM;
	}
	if (replace) {
		pt_clear(vm, addr, addr + alen);
		track_remapped(vm, addr, addr + alen);
	}
	r = vmmap((void *)addr, len, prot, flags, fd, off);
	if (vsys_err(r)) {
		if (replace)
			pt_sync(vm, addr, addr + alen);
		vlock_give(&vm->mm_lock);
		return r;
	}
	if (prot & (PROT_READ | PROT_WRITE | PROT_EXEC)) {
		rc = slots_cover(vm, (uint64_t)r, (uint64_t)r + alen);
		if (rc) {
			vsys2(SYS_munmap, r, alen);
			area_paint(vm, (uint64_t)r, (uint64_t)r + alen, AREA_FREE, 0, 0);
			vlock_give(&vm->mm_lock);
			return -ENOMEM;
		}
	}
	area_paint(vm, (uint64_t)r, (uint64_t)r + alen, AREA_GUEST, prot,
		   ((flags & MAP_SHARED) ? AF_SHARED : 0) |
			   ((flags & MAP_GROWSDOWN) ? AF_GROWSDOWN : 0));
	pt_sync(vm, (uint64_t)r, (uint64_t)r + alen);
	vlock_give(&vm->mm_lock);
	return r;
}

long mm_munmap(struct vm *vm, uint64_t addr, uint64_t len)
{
	uint64_t end = addr + align_up(len, PAGE_SIZE);
	uint64_t p;

	if (!len || bad_range(addr, end - addr))
		return -EINVAL;
	vlock_take(&vm->mm_lock);
	p = addr;
	while (p < end) {
		struct area *a = area_next(vm, p);
		uint64_t s, e;

		if (!a || a->start >= end)
			break;
		s = a->start > p ? a->start : p;
		e = a->end < end ? a->end : end;
		p = e;
		if (a->kind != AREA_GUEST && a->kind != AREA_SPECIAL)
			continue;
		pt_clear(vm, s, e);
		track_remapped(vm, s, e);
		vsys2(SYS_munmap, s, e - s);
		area_paint(vm, s, e, AREA_FREE, 0, 0);
	}
	vlock_give(&vm->mm_lock);
	return 0;
}

long mm_mprotect(struct vm *vm, uint64_t addr, uint64_t len, int prot)
{
	uint64_t end = addr + align_up(len, PAGE_SIZE);
	int plain = prot & ~(PROT_GROWSDOWN | PROT_GROWSUP);
	long r;
	uint64_t p;

	if (addr & (PAGE_SIZE - 1))
		return -EINVAL;
	if (plain & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM))
		return -EINVAL;
	if (!len)
		return 0;
	if (bad_range(addr, end - addr))
		return -ENOMEM;
	vlock_take(&vm->mm_lock);
	if (!range_is(vm, addr, end, AREA_GUEST, 0, false)) {
		vlock_give(&vm->mm_lock);
		return -ENOMEM;
	}
	if (plain & (PROT_READ | PROT_WRITE | PROT_EXEC)) {
		int rc = slots_cover(vm, addr, end);

		if (rc) {
			vlock_give(&vm->mm_lock);
			return -ENOMEM;
		}
	}
	pt_clear(vm, addr, end);
	r = vsys3(SYS_mprotect, addr, len, prot);
	if (r < 0) {
		pt_sync(vm, addr, end);
		vlock_give(&vm->mm_lock);
		return r;
	}
	for (p = addr; p < end;) {
		struct area *a = area_find(vm, p);
		uint64_t e = a->end < end ? a->end : end;
		int flags = a->flags;

		area_paint(vm, p, e, AREA_GUEST, plain & (PROT_READ | PROT_WRITE | PROT_EXEC),
			   flags);
		p = e;
	}
	pt_sync(vm, addr, end);
	vlock_give(&vm->mm_lock);
	return 0;
}

long mm_mremap(struct vm *vm, uint64_t old, uint64_t oldlen, uint64_t newlen,
	       int flags, uint64_t newaddr)
{
	static bool said;
	uint64_t oend = old + align_up(oldlen, PAGE_SIZE);
	uint64_t nlen = align_up(newlen, PAGE_SIZE);
	struct area *a;
	int prot, aflags;
	long r;

	if ((old & (PAGE_SIZE - 1)) || !newlen || nlen < newlen)
		return -EINVAL;
	vlock_take(&vm->mm_lock);
	a = area_find(vm, old);
	if (!a || a->kind != AREA_GUEST ||
	    !range_is(vm, old, oend > old ? oend : old + PAGE_SIZE, AREA_GUEST, 0, false)) {
		vlock_give(&vm->mm_lock);
		return -EFAULT;
	}
	prot = a->prot;
	aflags = a->flags;
	if ((flags & MREMAP_FIXED) &&
	    (bad_range(newaddr, nlen) ||
	     overlaps_kind(vm, newaddr, newaddr + nlen, AREA_HOST) ||
	     overlaps_kind(vm, newaddr, newaddr + nlen, AREA_SPECIAL))) {
		vlock_give(&vm->mm_lock);
		once(&said, "the program moved memory over fgvm's own (%p-%p): refused",
		     newaddr, newaddr + nlen);
		return -EINVAL;
	}
	pt_clear(vm, old, oend);
	if (flags & MREMAP_FIXED) {
		pt_clear(vm, newaddr, newaddr + nlen);
		track_remapped(vm, newaddr, newaddr + nlen);
	}
	track_remapped(vm, old, oend);
	/* Growing in place needs room that is not fgvm's: the kernel only
	 * grows into free space, which is never HOST. */
	r = vsys5(SYS_mremap, old, oldlen, newlen, flags, newaddr);
	if (vsys_err(r)) {
		pt_sync(vm, old, oend);
		if (flags & MREMAP_FIXED)
			pt_sync(vm, newaddr, newaddr + nlen);
		vlock_give(&vm->mm_lock);
		return r;
	}
	if (!(flags & MREMAP_DONTUNMAP))
		area_paint(vm, old, oend, AREA_FREE, 0, 0);
	if (prot & (PROT_READ | PROT_WRITE | PROT_EXEC)) {
		int rc = slots_cover(vm, (uint64_t)r, (uint64_t)r + nlen);

		if (rc)
			vdie(FGVM_EXIT_INTERNAL, "out of KVM memory slots after mremap");
	}
	area_paint(vm, (uint64_t)r, (uint64_t)r + nlen, AREA_GUEST, prot, aflags);
	pt_sync(vm, old, oend);
	pt_sync(vm, (uint64_t)r, (uint64_t)r + nlen);
	vlock_give(&vm->mm_lock);
	return r;
}

long mm_brk(struct vm *vm, uint64_t addr)
{
	uint64_t cur, want;
	long r;

	vlock_take(&vm->mm_lock);
	cur = align_up(vm->brk_cur, PAGE_SIZE);
	if (!vm->brk_end || addr < vm->brk_start || addr > vm->brk_end)
		goto out;
	want = align_up(addr, PAGE_SIZE);
	if (want > cur) {
		if (slots_cover(vm, cur, want))
			goto out;
		r = vsys3(SYS_mprotect, cur, want - cur, PROT_READ | PROT_WRITE);
		if (r < 0)
			goto out;
		area_paint(vm, cur, want, AREA_GUEST, PROT_READ | PROT_WRITE, 0);
		pt_sync(vm, cur, want);
	} else if (want < cur) {
		pt_clear(vm, want, cur);
		track_remapped(vm, want, cur);
		r = vmmap((void *)want, cur - want, PROT_NONE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
		if (vsys_err(r))
			vdie(FGVM_EXIT_INTERNAL, "cannot release brk memory: %s",
			     verrname((int)-r));
		area_paint(vm, want, cur, AREA_HOST, PROT_NONE, 0);
	}
	vm->brk_cur = addr;
out:
	r = (long)vm->brk_cur;
	vlock_give(&vm->mm_lock);
	return r;
}

/* Called by the loader: the brk reservation right after the program
 * (reserved: the loader mapped it, PROT_NONE, with a PIE program). */
int mm_brk_init(struct vm *vm, uint64_t start, bool reserved)
{
	long r = reserved ? (long)start
			  : vmmap((void *)start, BRK_RESERVE, PROT_NONE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE |
					  MAP_FIXED_NOREPLACE,
				  -1, 0);

	if (vsys_err(r) || (uint64_t)r != start) {
		/* Something is there: no brk (glibc's malloc uses mmap). */
		vm->brk_start = vm->brk_cur = start;
		vm->brk_end = 0;
		return 0;
	}
	vlock_take(&vm->mm_lock);
	area_paint(vm, start, start + BRK_RESERVE, AREA_HOST, PROT_NONE, 0);
	vlock_give(&vm->mm_lock);
	vm->brk_start = vm->brk_cur = start;
	vm->brk_end = start + BRK_RESERVE;
	return 0;
}

long mm_madvise(struct vm *vm, uint64_t addr, uint64_t len, int advice)
{
	uint64_t end = addr + align_up(len, PAGE_SIZE);
	bool ok;
	long r;

	if (addr & (PAGE_SIZE - 1))
		return -EINVAL;
	if (!len)
		return 0;
	if (bad_range(addr, end - addr))
		return -ENOMEM;
	vlock_take(&vm->mm_lock);
	ok = range_is(vm, addr, end, AREA_GUEST, 0, false);
	vlock_give(&vm->mm_lock);
	if (!ok)
		return -ENOMEM;
	r = vsys3(SYS_madvise, addr, len, advice);
	/* I2: advice that drops contents changes the memory (it reads as
	 * zeros, or as the file's contents, from now on). */
	if (r == 0 && (advice == MADV_DONTNEED || advice == MADV_FREE ||
		       advice == MADV_REMOVE || advice == 8 /* DONTNEED_LOCKED */))
		host_wrote(addr, end - addr);
	return r;
}

long mm_shmat(struct vm *vm, int id, uint64_t addr, int flags)
{
	struct shmid_ds ds;
	long r;
	uint64_t len;
	int prot = (flags & SHM_RDONLY) ? PROT_READ : PROT_READ | PROT_WRITE;

	if (vsys3(SYS_shmctl, id, IPC_STAT, &ds) < 0)
		return -EINVAL;
	len = align_up(ds.shm_segsz, PAGE_SIZE);
	if (flags & SHM_EXEC)
		prot |= PROT_EXEC;
	vlock_take(&vm->mm_lock);
	if (addr && overlaps_kind(vm, align_down(addr, PAGE_SIZE),
				  align_down(addr, PAGE_SIZE) + len, AREA_HOST)) {
		vlock_give(&vm->mm_lock);
		return -EINVAL;
	}
	if (addr && (flags & SHM_REMAP))
		pt_clear(vm, align_down(addr, PAGE_SIZE), align_down(addr, PAGE_SIZE) + len);
	r = vsys3(SYS_shmat, id, addr, flags);
	if (vsys_err(r)) {
		vlock_give(&vm->mm_lock);
		return r;
	}
	if (slots_cover(vm, (uint64_t)r, (uint64_t)r + len))
		vdie(FGVM_EXIT_INTERNAL, "out of KVM memory slots after shmat");
	area_paint(vm, (uint64_t)r, (uint64_t)r + len, AREA_GUEST, prot, AF_SHARED);
	pt_sync(vm, (uint64_t)r, (uint64_t)r + len);
	for (int i = 0; i < MAX_SHM; i++)
		if (!shm_atts[i].len) {
			shm_atts[i] = (struct shm_att){(uint64_t)r, len};
			break;
		}
	vlock_give(&vm->mm_lock);
	return r;
}

long mm_shmdt(struct vm *vm, uint64_t addr)
{
	long r;

	vlock_take(&vm->mm_lock);
	for (int i = 0; i < MAX_SHM; i++) {
		if (shm_atts[i].addr != addr || !shm_atts[i].len)
			continue;
		pt_clear(vm, addr, addr + shm_atts[i].len);
		track_remapped(vm, addr, addr + shm_atts[i].len);
		r = vsys1(SYS_shmdt, addr);
		if (r == 0) {
			area_paint(vm, addr, addr + shm_atts[i].len, AREA_FREE, 0, 0);
			shm_atts[i].len = 0;
		} else {
			pt_sync(vm, addr, addr + shm_atts[i].len);
		}
		vlock_give(&vm->mm_lock);
		return r;
	}
	vlock_give(&vm->mm_lock);
	return -EINVAL;
}

/* ---- faults ---- */

#define PF_W (1u << 1)
#define PF_RSVD (1u << 3)
#define PF_I (1u << 4)

int mm_fault(struct vm *vm, uint64_t addr, uint32_t err)
{
	struct area *a;
	int need = (err & PF_W) ? PROT_WRITE : (err & PF_I) ? PROT_EXEC : PROT_READ;
	int code;

	if (err & PF_RSVD)
		vdie(FGVM_EXIT_INTERNAL, "reserved bit in a guest page table (fault at %p)",
		     (void *)addr);
	vlock_take(&vm->mm_lock);
	a = area_find(vm, addr);
	if (!a || (a->kind != AREA_GUEST && a->kind != AREA_SPECIAL)) {
		code = SEGV_MAPERR;
	} else if (!(need == PROT_READ ? a->prot & (PROT_READ | PROT_WRITE | PROT_EXEC)
				       : a->prot & need)) {
		code = SEGV_ACCERR;
	} else {
		pt_fill_chunk(vm, addr);
		atomic_fetch_add_explicit(&vm->n_fills, 1, memory_order_relaxed);
		code = 0;
	}
	vlock_give(&vm->mm_lock);
	return code;
}
