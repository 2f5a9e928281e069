/* fg_vmcall.h - the interface between the toolkit in a program and fgvm,
 * the process-level VM it may run under (internal, not installed).
 *
 * A "vmcall" is a system call with a number no Linux kernel has: run
 * natively it fails with -ENOSYS, so probing is safe everywhere; under
 * fgvm the VM answers it.  (The x86 `vmcall` instruction cannot be used:
 * KVM answers it itself and never passes it to the VMM.)
 *
 *   rax = FG_VMCALL_NR, rdi = op, rsi, rdx, r10, r8 = arguments
 *   result: >= 0, or -errno
 *
 *   PROBE(info)             -> FG_VMCALL_MAGIC; fills struct fg_vmcall_info
 *   REGISTER(addr, len)     -> region id; addr, len page-aligned, the
 *                              program's writable memory, no overlap
 *                              (-EINVAL, -EFAULT, -EEXIST, -ENOSPC)
 *   UNREGISTER(id)          -> 0 (-ENOENT)
 *   COLLECT(id, bits, bytes, flags)
 *                           -> number of pages written since the last
 *                              COLLECT (or REGISTER), a bit per page in
 *                              bits (bit i: page addr + i*page); resets
 *                              (-ENOENT, -EFAULT, -ENOBUFS, -ESTALE when
 *                              the region was unmapped or remapped)
 *   MARK(addr, len)         -> 0: the pages read dirty at the next COLLECT
 *   COLLECT_MANY(reqs, n)   -> 0: COLLECT for each of n struct
 *                              fg_vmcall_collect, its result in .result:
 *                              one exit for a whole collection
 *
 * Every write to a registered region is reported by a COLLECT that
 * returns after the write completes: the guest's own stores through
 * KVM's dirty log, writes the VM or the kernel makes on the program's
 * behalf (system calls fgvm forwards, signal frames, thread-id words)
 * through fgvm's own record.  Writes that neither sees (asynchronous I/O
 * completing later, other processes, writes through a memfd's descriptor)
 * are the program's to announce, as with every backend.
 */
#ifndef FG_VMCALL_H
#define FG_VMCALL_H

#include <stdint.h>

#define FG_VMCALL_NR 0x3f47564dL /* "?GVM": far past any real syscall */
#define FG_VMCALL_MAGIC 0x46475643L /* "FGVC" */
#define FG_VMCALL_VERSION 1

enum {
	FG_VMCALL_PROBE = 0,
	FG_VMCALL_REGISTER = 1,
	FG_VMCALL_UNREGISTER = 2,
	FG_VMCALL_COLLECT = 3,
	FG_VMCALL_MARK = 4,
	FG_VMCALL_COLLECT_MANY = 5,
};

#define FG_VMCALL_MANY_MAX 4096

struct fg_vmcall_collect {
	int64_t id;
	uint64_t bits;	/* where the bitmap goes */
	uint64_t bytes; /* its size */
	int64_t result; /* COLLECT's result */
};

#define FG_VMCALL_F_DIRTY_LOG 0x1  /* KVM_GET/CLEAR_DIRTY_LOG */
#define FG_VMCALL_F_DIRTY_RING 0x2 /* KVM dirty ring */

struct fg_vmcall_info {
	uint32_t size; /* set by the caller: sizeof(struct fg_vmcall_info) */
	uint32_t version;
	uint32_t page_size;
	uint32_t flags;
	char hypervisor[128];
	char mechanism[64];
};

static inline long fg_vmcall(long op, long a, long b, long c, long d)
{
	long ret;
	register long r10 __asm__("r10") = c;
	register long r8 __asm__("r8") = d;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(FG_VMCALL_NR), "D"(op), "S"(a), "d"(b), "r"(r10),
			   "r"(r8)
			 : "rcx", "r11", "memory");
	return ret;
}

#endif /* FG_VMCALL_H */
