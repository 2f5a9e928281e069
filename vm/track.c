/* track.c - dirty tracking for the program: the vmcalls of fg_vmcall.h,
 * answered from KVM's dirty log and from fgvm's own record of the writes
 * it makes (invariant I2).
 *
 * Registering a region turns on dirty logging for the memslots under it
 * (KVM_MEM_LOG_DIRTY_PAGES, manual protection: KVM_GET_DIRTY_LOG only
 * reads, KVM_CLEAR_DIRTY_LOG clears the bits it is given and
 * write-protects those pages again).  A collection takes fgvm's record
 * first, then per slot reads the log, keeps the region's bits and clears
 * exactly those: a page written after the read is either seen by that
 * read or still writable, so its write lands before the clear (reported
 * now: the collector reads the page after COLLECT returns) or after it
 * (faults, logged, reported next time).  Other regions sharing the slot
 * keep their bits.
 *
 * Every argument of a vmcall is checked: ids against the table, ranges
 * against the area table (the program's own writable memory), sizes
 * against overflow.  Nothing the program passes can make fgvm write
 * outside the program's memory or crash.
 */
#include "vmm.h"
#include "fg_vmcall.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#define MAX_REGION_BYTES (1UL << 42)

static uint64_t *scratch;	/* a slot's dirty log */
static size_t scratch_bytes;
static uint64_t *result;	/* a region's bitmap */
static size_t result_bytes;

/* Grow a buffer; the caller holds mm_lock. */
static int ensure(uint64_t **buf, size_t *have, size_t need)
{
	long r;

	if (*have >= need)
		return 0;
	need = align_up(need, 1UL << 20);
	r = vmmap(NULL, need, PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vsys_err(r))
		return -ENOMEM;
	area_paint(&g_vm, (uint64_t)r, (uint64_t)r + need, AREA_HOST,
		   PROT_READ | PROT_WRITE, 0);
	if (*buf) {
		vsys2(SYS_munmap, *buf, *have);
		area_paint(&g_vm, (uint64_t)*buf, (uint64_t)*buf + *have, AREA_FREE, 0, 0);
	}
	*buf = (uint64_t *)r;
	*have = need;
	return 0;
}

static struct tregion *find_id(struct vm *vm, long id)
{
	for (size_t i = 0; i < vm->ntregions; i++)
		if (vm->tregions[i].live && vm->tregions[i].id == (uint32_t)id)
			return &vm->tregions[i];
	return NULL;
}

static struct slot *slot_at(struct vm *vm, uint64_t addr)
{
	for (size_t i = 0; i < vm->nslots; i++)
		if (vm->slots[i].start <= addr && addr < vm->slots[i].end)
			return &vm->slots[i];
	return NULL;
}

static int slot_log_on(struct vm *vm, struct slot *s)
{
	int rc;

	if (s->flags & KVM_MEM_LOG_DIRTY_PAGES)
		return 0;
	rc = slot_set(vm, s->id, s->start, s->end - s->start,
		      s->flags | KVM_MEM_LOG_DIRTY_PAGES);
	if (rc == 0)
		s->flags |= KVM_MEM_LOG_DIRTY_PAGES;
	return rc;
}

/* Read slot s's log; for the pages of [start, end) found dirty, set
 * their bits in out (bit 0 = page start) and clear and re-protect them
 * in KVM (all of them when arm: registration).  Returns pages found. */
static long slot_harvest(struct vm *vm, struct slot *s, uint64_t start,
			 uint64_t end, uint64_t *out, uint64_t base, bool arm)
{
	uint64_t npages = (s->end - s->start) / PAGE_SIZE;
	uint64_t first = (start - s->start) / PAGE_SIZE;
	uint64_t last = (end - s->start) / PAGE_SIZE; /* exclusive */
	uint64_t wfirst = align_down(first, 64), wlast = align_up(last, 64);
	uint64_t *clear;
	long found = 0;
	struct kvm_dirty_log dl;
	struct kvm_clear_dirty_log cl;
	long r;

	if (wlast > npages)
		wlast = npages;
	if (ensure(&scratch, &scratch_bytes, align_up(npages, 64) / 8 * 2 + 64))
		return -ENOMEM;
	memset(&dl, 0, sizeof dl);
	dl.slot = s->id;
	dl.dirty_bitmap = scratch;
	r = vsys3(SYS_ioctl, vm->vm_fd, KVM_GET_DIRTY_LOG, &dl);
	if (r < 0)
		return r;
	clear = scratch + align_up(npages, 64) / 64 + 1;
	memset(clear, 0, (wlast - wfirst + 63) / 64 * 8);
	for (uint64_t p = first; p < last; p++) {
		bool d = scratch[p / 64] >> (p % 64) & 1;

		if (d) {
			/* The slot may start before the region: add first. */
			uint64_t i = (s->start + p * PAGE_SIZE - base) / PAGE_SIZE;

			out[i / 64] |= 1ULL << (i % 64);
			found++;
		}
		if (d || arm)
			clear[(p - wfirst) / 64] |= 1ULL << ((p - wfirst) % 64);
	}
	if (!found && !arm)
		return 0;
	memset(&cl, 0, sizeof cl);
	cl.slot = s->id;
	cl.first_page = wfirst;
	cl.num_pages = (uint32_t)(wlast - wfirst);
	cl.dirty_bitmap = clear;
	r = vsys3(SYS_ioctl, vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &cl);
	return r < 0 ? r : found;
}

/* For every slot under [r->start, r->end). */
static long harvest(struct vm *vm, struct tregion *tr, uint64_t *out, bool arm)
{
	long total = 0;
	uint64_t p = tr->start;

	while (p < tr->end) {
		struct slot *s = slot_at(vm, p);
		uint64_t e;
		long n;

		if (!s)
			return -ESTALE;
		e = s->end < tr->end ? s->end : tr->end;
		if (arm && slot_log_on(vm, s))
			return -EIO;
		n = slot_harvest(vm, s, p, e, out, tr->start, arm);
		if (n < 0)
			return n;
		total += n;
		p = e;
	}
	return total;
}

static long do_register(struct vm *vm, uint64_t addr, uint64_t len)
{
	struct tregion *tr = NULL;
	size_t nwords;
	void *bits;
	long r;

	if (!len || (addr | len) & (PAGE_SIZE - 1) || addr + len < addr ||
	    addr + len > USER_TOP || len > MAX_REGION_BYTES)
		return -EINVAL;
	if (!vm->manual_protect)
		return -EOPNOTSUPP;
	nwords = (len / PAGE_SIZE + 63) / 64;
	if (mm_host_map(vm, align_up(nwords * 8, PAGE_SIZE), 0, &bits))
		return -ENOMEM;
	vlock_take(&vm->mm_lock);
	if (!area_range_is(vm, addr, addr + len, AREA_GUEST, PROT_WRITE)) {
		r = -EFAULT;
		goto fail;
	}
	vlock_take(&vm->track_lock);
	for (size_t i = 0; i < vm->ntregions; i++) {
		struct tregion *o = &vm->tregions[i];

		if (o->live && o->start < addr + len && addr < o->end) {
			vlock_give(&vm->track_lock);
			r = -EEXIST;
			goto fail;
		}
		if (!o->live && !tr)
			tr = o;
	}
	if (!tr) {
		if (vm->ntregions >= MAX_TREGIONS) {
			vlock_give(&vm->track_lock);
			r = -ENOSPC;
			goto fail;
		}
		tr = &vm->tregions[vm->ntregions++];
	}
	memset(tr, 0, sizeof *tr);
	tr->start = addr;
	tr->end = addr + len;
	tr->id = vm->next_tregion_id++ & 0x7fffffff;
	tr->host_dirty = bits;
	tr->nwords = nwords;
	if (ensure(&result, &result_bytes, nwords * 8)) {
		vlock_give(&vm->track_lock);
		r = -ENOMEM;
		goto fail;
	}
	memset(result, 0, nwords * 8);
	r = harvest(vm, tr, result, true);
	if (r < 0) {
		vlock_give(&vm->track_lock);
		goto fail;
	}
	tr->live = true;
	atomic_fetch_add(&vm->ntracked, 1);
	r = tr->id;
	vlock_give(&vm->track_lock);
	vlock_give(&vm->mm_lock);
	return r;
fail:
	vlock_give(&vm->mm_lock);
	mm_host_unmap(vm, bits, align_up(nwords * 8, PAGE_SIZE));
	return r;
}

static long do_unregister(struct vm *vm, long id)
{
	struct tregion *tr;
	void *bits;
	size_t n;

	vlock_take(&vm->track_lock);
	tr = find_id(vm, id);
	if (!tr) {
		vlock_give(&vm->track_lock);
		return -ENOENT;
	}
	tr->live = false;
	bits = (void *)tr->host_dirty;
	n = tr->nwords;
	tr->host_dirty = NULL;
	atomic_fetch_sub(&vm->ntracked, 1);
	vlock_give(&vm->track_lock);
	/* Dirty logging stays on for the slots: turning it off would cost a
	 * full re-protection if the program registers there again. */
	mm_host_unmap(vm, bits, align_up(n * 8, PAGE_SIZE));
	return 0;
}

static long do_collect(struct vm *vm, long id, uint64_t ubits, uint64_t ubytes)
{
	struct tregion *tr;
	size_t need;
	long r, count = 0;

	vlock_take(&vm->mm_lock);
	vlock_take(&vm->track_lock);
	tr = find_id(vm, id);
	if (!tr) {
		r = -ENOENT;
		goto out;
	}
	if (tr->lost) {
		r = -ESTALE;
		goto out;
	}
	need = tr->nwords * 8;
	if (ubytes < need) {
		r = -ENOBUFS;
		goto out;
	}
	if (!area_range_is(vm, align_down(ubits, PAGE_SIZE), align_up(ubits + need, PAGE_SIZE),
			   AREA_GUEST, PROT_WRITE) ||
	    ubits + need < ubits) {
		r = -EFAULT;
		goto out;
	}
	if (ensure(&result, &result_bytes, need)) {
		r = -ENOMEM;
		goto out;
	}
	/* fgvm's own record first (I2), then the log. */
	for (size_t i = 0; i < tr->nwords; i++)
		result[i] = atomic_exchange(&tr->host_dirty[i], 0);
	r = harvest(vm, tr, result, false);
	if (r < 0)
		goto out;
	{
		/* The last word may hold bits past the region. */
		uint64_t npages = (tr->end - tr->start) / PAGE_SIZE;

		if (npages % 64)
			result[tr->nwords - 1] &= (1ULL << (npages % 64)) - 1;
	}
	for (size_t i = 0; i < tr->nwords; i++)
		count += __builtin_popcountll(result[i]);
	vm->n_collects++;
	vm->n_collect_pages += (uint64_t)count;
	r = count;
out:
	vlock_give(&vm->track_lock);
	vlock_give(&vm->mm_lock);
	if (r >= 0) {
		if (guest_write(ubits, result, need) < 0)
			return -EFAULT;
		/* The bitmap itself may be tracked memory. */
		host_wrote(ubits, need);
	}
	return r;
}

int track_hypercall(struct vthread *t, const uint64_t a[6], long *ret)
{
	struct vm *vm = &g_vm;

	(void)t;
	switch (a[0]) {
	case FG_VMCALL_PROBE: {
		struct fg_vmcall_info in;
		uint32_t size;

		if (a[1]) {
			if (guest_read(&size, a[1], 4) < 0) {
				*ret = -EFAULT;
				return 0;
			}
			memset(&in, 0, sizeof in);
			in.size = sizeof in;
			in.version = FG_VMCALL_VERSION;
			in.page_size = PAGE_SIZE;
			in.flags = vm->manual_protect ? FG_VMCALL_F_DIRTY_LOG : 0;
			vsnfmt(in.hypervisor, sizeof in.hypervisor, "%s", vm->kind_name);
			vsnfmt(in.mechanism, sizeof in.mechanism, "%s",
			       vm->manual_protect ? "KVM dirty log (manual protect)"
						  : "none (KVM lacks MANUAL_DIRTY_LOG_PROTECT2)");
			if (size > sizeof in)
				size = sizeof in;
			if (size < 4 || guest_write(a[1], &in, size) < 0) {
				*ret = size < 4 ? -EINVAL : -EFAULT;
				return 0;
			}
			host_wrote(a[1], size);
		}
		*ret = FG_VMCALL_MAGIC;
		return 0;
	}
	case FG_VMCALL_REGISTER:
		*ret = do_register(vm, a[1], a[2]);
		return 0;
	case FG_VMCALL_UNREGISTER:
		*ret = do_unregister(vm, (long)a[1]);
		return 0;
	case FG_VMCALL_COLLECT:
		*ret = do_collect(vm, (long)a[1], a[2], a[3]);
		return 0;
	case FG_VMCALL_COLLECT_MANY: {
		/* Each request read and answered on its own: a bad one gets
		 * its error, the others their bitmaps. */
		uint64_t n = a[2];

		if (n > FG_VMCALL_MANY_MAX) {
			*ret = -EINVAL;
			return 0;
		}
		for (uint64_t i = 0; i < n; i++) {
			struct fg_vmcall_collect q;
			uint64_t at = a[1] + i * sizeof q;

			if (at < a[1] || guest_read(&q, at, sizeof q) < 0) {
				*ret = -EFAULT;
				return 0;
			}
			q.result = do_collect(vm, (long)q.id, q.bits, q.bytes);
			if (guest_write(at + offsetof(struct fg_vmcall_collect, result),
					&q.result, sizeof q.result) < 0) {
				*ret = -EFAULT;
				return 0;
			}
			host_wrote(at + offsetof(struct fg_vmcall_collect, result), 8);
		}
		*ret = 0;
		return 0;
	}
	case FG_VMCALL_MARK:
		if (!a[2] || a[1] + a[2] < a[1] || a[1] + a[2] > USER_TOP) {
			*ret = -EINVAL;
			return 0;
		}
		host_wrote(a[1], a[2]);
		*ret = 0;
		return 0;
	default:
		*ret = -EINVAL;
		return 0;
	}
}

void track_host_write(struct vm *vm, uint64_t p, uint64_t len)
{
	uint64_t end = p + len;

	if (end < p)
		end = UINT64_MAX;
	vlock_take(&vm->track_lock);
	for (size_t i = 0; i < vm->ntregions; i++) {
		struct tregion *tr = &vm->tregions[i];
		uint64_t s, e;

		if (!tr->live || tr->end <= p || tr->start >= end)
			continue;
		s = (p > tr->start ? p : tr->start) - tr->start;
		e = (end < tr->end ? end : tr->end) - tr->start;
		for (uint64_t pg = s / PAGE_SIZE; pg < (e + PAGE_SIZE - 1) / PAGE_SIZE; pg++)
			atomic_fetch_or(&tr->host_dirty[pg / 64], 1ULL << (pg % 64));
	}
	vlock_give(&vm->track_lock);
}

void track_host_write_unknown(struct vm *vm, uint64_t p)
{
	vlock_take(&vm->track_lock);
	for (size_t i = 0; i < vm->ntregions; i++) {
		struct tregion *tr = &vm->tregions[i];

		if (tr->live && tr->start <= p && p < tr->end) {
			uint64_t npages = (tr->end - tr->start) / PAGE_SIZE;

			for (uint64_t w = 0; w < tr->nwords; w++)
				atomic_store(&tr->host_dirty[w],
					     w + 1 < tr->nwords || npages % 64 == 0
						     ? ~0ULL
						     : (1ULL << (npages % 64)) - 1);
			vm->n_unknown_writes++;
		}
	}
	vlock_give(&vm->track_lock);
}

void track_remapped(struct vm *vm, uint64_t start, uint64_t end)
{
	vlock_take(&vm->track_lock);
	for (size_t i = 0; i < vm->ntregions; i++) {
		struct tregion *tr = &vm->tregions[i];

		if (tr->live && tr->start < end && start < tr->end)
			tr->lost = true;
	}
	vlock_give(&vm->track_lock);
}

void track_slot_created(struct vm *vm, struct slot *s)
{
	/* A new slot under a live region means its memory was remapped,
	 * which track_remapped() already recorded: nothing to log there. */
	(void)vm;
	(void)s;
}

void track_after_fork_child(struct vm *vm)
{
	/* The child's toolkit reports everything dirty (fg.h: forked
	 * trackers); its VM starts with no regions. */
	memset(vm->tregions, 0, vm->ntregions * sizeof *vm->tregions);
	vm->ntregions = 0;
	atomic_store(&vm->ntracked, 0);
}
