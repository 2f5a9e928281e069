/* run.c - the vCPU loop: enter the guest, take its exits, resume it.
 *
 * The program reaches the host in three ways, each giving the registers
 * it had at CPL3 (vthread.u) in its own form:
 *   - `syscall`: the stub exits at once; RCX and R11 hold the return RIP
 *     and RFLAGS, RSP is untouched.
 *   - an exception: the stub exits with the CPU's frame on the ring-0
 *     stack ({err,} rip, cs, rflags, rsp, ss; #PF also saved RAX and
 *     passes CR2 in RAX).
 *   - KVM_RUN interrupted by a signal (EINTR): at CPL3 the registers are
 *     the program's; inside the stub the vCPU is left alone (it exits on
 *     its next instruction), except at fgvm_stub_ret, whose frame we
 *     wrote ourselves and can read back.
 * Resuming from the stub goes through fgvm_stub_ret with a frame on the
 * ring-0 stack; resuming at CPL3 just sets the registers.
 */
#include "vmm.h"
#include "fg_compat.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

static void regs_get(struct vthread *t, struct kvm_regs *r)
{
	if (g_vm.sync_regs) {
		*r = t->vcpu->run->s.regs.regs;
	} else {
		long e = vsys3(SYS_ioctl, t->vcpu->fd, KVM_GET_REGS, r);

		if (e < 0)
			vdie(FGVM_EXIT_INTERNAL, "KVM_GET_REGS: %s", verrname((int)-e));
	}
}

static void regs_set(struct vthread *t, const struct kvm_regs *r)
{
	if (g_vm.sync_regs) {
		t->vcpu->run->s.regs.regs = *r;
		t->vcpu->run->kvm_dirty_regs |= KVM_SYNC_X86_REGS;
	} else {
		long e = vsys3(SYS_ioctl, t->vcpu->fd, KVM_SET_REGS, r);

		if (e < 0)
			vdie(FGVM_EXIT_INTERNAL, "KVM_SET_REGS: %s", verrname((int)-e));
	}
}

static uint64_t *kstack_frame(struct vthread *t)
{
	return (uint64_t *)(t->vcpu->page + VCPU_KSTACK_TOP - 6 * 8);
}

/* User-mode RFLAGS: what the program may set, plus IF and bit 1. */
static uint64_t user_flags(uint64_t f)
{
	return (f & 0x3f0dd5ULL) | 0x202;
}

static void resume(struct vthread *t)
{
	struct kvm_regs r = t->u;

	if (t->mode == MODE_NONE)
		return;
	r.rflags = user_flags(r.rflags);
	if (t->mode == MODE_STUB) {
		uint64_t *f = kstack_frame(t);

		f[0] = t->u.rax;
		f[1] = t->u.rip;
		f[2] = SEL_UCODE;
		f[3] = r.rflags;
		f[4] = t->u.rsp;
		f[5] = SEL_UDATA;
		r.rip = g_vm.stub_ret;
		r.rsp = (uint64_t)f;
		r.rflags = 0x2;
	}
	regs_set(t, &r);
}

void vcpu_get_fpu(struct vthread *t, void *buf)
{
	long e = vsys3(SYS_ioctl, t->vcpu->fd, KVM_GET_XSAVE, buf);

	if (e < 0)
		vdie(FGVM_EXIT_INTERNAL, "KVM_GET_XSAVE: %s", verrname((int)-e));
}

int vcpu_set_fpu(struct vthread *t, const void *buf)
{
	return (int)vsys3(SYS_ioctl, t->vcpu->fd, KVM_SET_XSAVE, buf);
}

void vcpu_fs_gs(struct vthread *t, uint64_t *fs, uint64_t *gs)
{
	struct kvm_sregs s;
	long e = vsys3(SYS_ioctl, t->vcpu->fd, KVM_GET_SREGS, &s);

	if (e < 0)
		vdie(FGVM_EXIT_INTERNAL, "KVM_GET_SREGS: %s", verrname((int)-e));
	*fs = s.fs.base;
	*gs = s.gs.base;
}

int vcpu_set_fs_gs(struct vthread *t, int which, uint64_t base)
{
	struct kvm_sregs s;
	long e = vsys3(SYS_ioctl, t->vcpu->fd, KVM_GET_SREGS, &s);

	if (e < 0)
		return (int)e;
	if (which == 0)
		s.fs.base = base;
	else
		s.gs.base = base;
	return (int)vsys3(SYS_ioctl, t->vcpu->fd, KVM_SET_SREGS, &s);
}

/* In the stub, or on the trampoline on its way to it. */
static bool in_stub(uint64_t rip)
{
	uint64_t tramp = (uint64_t)g_vm.vmm + VMM_PAGE_TRAMP * PAGE_SIZE;

	return (rip >= (uint64_t)g_vm.vmm && rip < (uint64_t)g_vm.vmm + PAGE_SIZE) ||
	       (rip >= tramp && rip < tramp + PAGE_SIZE);
}

static void do_syscall(struct vthread *t)
{
	t->u.rip = t->u.rcx;
	t->u.rflags = t->u.r11;
	t->mode = MODE_STUB;
	t->sys_nr = (long)t->u.rax;
	vm_syscall(t);
	/* Interrupted: signal.c decides whether it restarts.  Never
	 * started (vsys_intr): it does. */
	t->sys_nostart = t->u.rax == (uint64_t)-FGVM_ENOSTART;
	t->sys_intr = t->u.rax == (uint64_t)-EINTR || t->sys_nostart ? t->sys_nr
								      : -1;
	t->sys_nr = -1;
}

static void enter_from_syscall(struct vthread *t)
{
	regs_get(t, &t->u);
	do_syscall(t);
}

/* Exceptions with an error code on the stack. */
static bool has_err(int v)
{
	return v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21 || v == 29 ||
	       v == 30;
}

static _Noreturn void stub_crash(struct vthread *t, int vec, const uint64_t *f)
{
	vdie(FGVM_EXIT_INTERNAL,
	     "internal error: exception %d in the VM's ring-0 code at %p (rsp %p, "
	     "cs %lx)",
	     vec, (void *)f[0], (void *)t->u.rsp, (unsigned long)f[1]);
}

/* Whether the instruction at RIP, or the one just before it (a host that
 * reports the trap after the instruction), is int $0x80 (CD 80). */
static int int80_at(uint64_t rip)
{
	uint8_t b[4];

	if (rip >= 2 && guest_read(b, rip - 2, 4) == 4)
		return (b[2] == 0xcd && b[3] == 0x80) ||
		       (b[0] == 0xcd && b[1] == 0x80);
	return guest_read(b, rip, 2) == 2 && b[0] == 0xcd && b[1] == 0x80;
}

/* Hosts report int $0x80 in a guest's user mode as #GP (vector 13) or,
 * some PVM hosts, #UD (vector 6): one refusal for both. */
static _Noreturn void die_int80(struct vthread *t)
{
	vdie(FGVM_EXIT_UNSUPPORTED,
	     "the program made a 32-bit system call (int $0x80) at %p: "
	     "not supported by fgvm",
	     (void *)t->u.rip);
}

static void enter_from_exception(struct vthread *t, int vec)
{
	uint64_t *f, err = 0, cr2 = 0, saved_rax = 0;
	bool pf = vec == 14;

	regs_get(t, &t->u);
	f = (uint64_t *)t->u.rsp;
	if ((uint64_t)f < (uint64_t)t->vcpu->page ||
	    (uint64_t)f + (5 + pf + has_err(vec)) * 8 > (uint64_t)t->vcpu->page + PAGE_SIZE)
		vdie(FGVM_EXIT_INTERNAL, "internal error: exception %d with the ring-0 "
					 "stack at %p",
		     vec, (void *)f);
	if (pf) {
		cr2 = t->u.rax;
		saved_rax = *f++;
	}
	if (has_err(vec))
		err = *f++;
	if ((f[1] & 3) != 3)
		stub_crash(t, vec, f);
	if (pf)
		t->u.rax = saved_rax;
	t->u.rip = f[0];
	t->u.rflags = f[2];
	t->u.rsp = f[3];
	t->mode = MODE_STUB;

	switch (vec) {
	case 14: {
		int code;

		if (t->last_pf_addr == cr2 && t->last_pf_rip == t->u.rip) {
			if (++t->pf_repeat > 8)
				vdie(FGVM_EXIT_INTERNAL,
				     "internal error: the guest faults again and again at "
				     "%p (rip %p, error %lx, pte %lx)",
				     (void *)cr2, (void *)t->u.rip, (unsigned long)err,
				     (unsigned long)pt_lookup(&g_vm, cr2));
		} else {
			t->pf_repeat = 0;
		}
		t->last_pf_addr = cr2;
		t->last_pf_rip = t->u.rip;
		code = mm_fault(&g_vm, cr2, (uint32_t)err);
		if (code)
			sig_fault(t, SIGSEGV, code, cr2, 14, err);
		return;
	}
	case 0:
		sig_fault(t, SIGFPE, FPE_INTDIV, t->u.rip, vec, 0);
		return;
	case 1:
		sig_fault(t, SIGTRAP, TRAP_TRACE, t->u.rip, vec, 0);
		return;
	case 3:
		sig_fault(t, SIGTRAP, SI_KERNEL, 0, vec, 0);
		return;
	case 4:
	case 5:
		sig_fault(t, SIGSEGV, SI_KERNEL, 0, vec, 0);
		return;
	case 6:
		if (t->u.rip == (uint64_t)g_vm.vmm + VMM_PAGE_TRAMP * PAGE_SIZE) {
			/* A syscall through the trampoline (PVM): RCX and R11
			 * hold the program's RIP and RFLAGS. */
			do_syscall(t);
			return;
		}
		/* int $0x80 again: PVM hosts differ in what they make of
		 * it in a guest's user mode, #GP or #UD. */
		if (int80_at(t->u.rip))
			die_int80(t);
		sig_fault(t, SIGILL, ILL_ILLOPN, t->u.rip, vec, 0);
		return;
	case 13:
		/* int $0x80: the IDT bit and vector 0x80 (QEMU's TCG puts
		 * the vector at bit 4, hardware at bit 3). */
		if ((err & 3) == 2 && (err >> 3 == 0x80 || err >> 4 == 0x80))
			die_int80(t);
		sig_fault(t, SIGSEGV, SI_KERNEL, 0, vec, err);
		return;
	case 10:
		sig_fault(t, SIGSEGV, SI_KERNEL, 0, vec, err);
		return;
	case 11:
	case 12:
		sig_fault(t, SIGBUS, SI_KERNEL, 0, vec, err);
		return;
	case 16:
		sig_fault(t, SIGFPE, FPE_FLTINV, t->u.rip, vec, 0);
		return;
	case 17:
		sig_fault(t, SIGBUS, BUS_ADRALN, 0, vec, err);
		return;
	case 19: {
		/* SIMD: the code from MXCSR's unmasked, raised flags. */
		uint32_t mx;
		uint8_t x[4096];
		int code = FPE_FLTINV;

		vcpu_get_fpu(t, x);
		memcpy(&mx, x + 24, 4);
		mx = (mx & 0x3f) & ~((mx >> 7) & 0x3f);
		if (mx & 0x01)
			code = FPE_FLTINV;
		else if (mx & 0x04)
			code = FPE_FLTDIV;
		else if (mx & 0x08)
			code = FPE_FLTOVF;
		else if (mx & 0x10)
			code = FPE_FLTUND;
		else if (mx & 0x20)
			code = FPE_FLTRES;
		sig_fault(t, SIGFPE, code, t->u.rip, vec, 0);
		return;
	}
	default:
		vdie(FGVM_EXIT_INTERNAL,
		     "internal error: unexpected exception %d in the program at %p", vec,
		     (void *)t->u.rip);
	}
}

/* KVM_RUN was interrupted by a signal. */
static void enter_from_intr(struct vthread *t)
{
	struct kvm_regs r;

	regs_get(t, &r);
	if (r.rip == g_vm.stub_ret) {
		/* Our own resume frame, not yet used. */
		uint64_t *f = (uint64_t *)r.rsp;

		t->u = r;
		t->u.rax = f[0];
		t->u.rip = f[1];
		t->u.rflags = f[3];
		t->u.rsp = f[4];
		t->mode = MODE_STUB;
	} else if (in_stub(r.rip)) {
		t->mode = MODE_NONE; /* it exits on its next instruction */
	} else {
		t->u = r;
		t->mode = MODE_USER;
	}
}

static void efault(struct vthread *t)
{
	uint64_t gpa = 0;
	struct kvm_regs r;

	regs_get(t, &r);
	if (g_vm.memory_fault_info &&
	    t->vcpu->run->exit_reason == KVM_EXIT_MEMORY_FAULT)
		gpa = ((uint64_t *)&t->vcpu->run->mmio)[1];
	if (in_stub(r.rip))
		vdie(FGVM_EXIT_INTERNAL, "internal error: the VM's ring-0 code at %p "
					 "touched memory KVM cannot map (%p)",
		     (void *)r.rip, (void *)gpa);
	/* The page is mapped for the guest but the host cannot provide it
	 * (a file mapping past the end of its file, say): SIGBUS, as the
	 * kernel would send. */
	t->u = r;
	t->mode = MODE_USER;
	if (++t->efault_count > 1000)
		vdie(FGVM_EXIT_INTERNAL, "KVM_RUN keeps failing with EFAULT at %p",
		     (void *)r.rip);
	sig_fault(t, SIGBUS, BUS_ADRERR, gpa, 14, 0);
}

void vcpu_loop(struct vthread *t)
{
	struct kvm_run *run;

	for (;;) {
		long r;

		run = t->vcpu->run;
		if (t->mode != MODE_NONE)
			sig_deliver_pending(t);
		resume(t);
		t->mode = MODE_NONE;
		if (sig_pending(t)) {
			/* Signals that came after delivery: take them now,
			 * from the registers just stored.  Unless the guest
			 * is in the stub: it exits on its next instruction,
			 * so run it there (going round again would spin here
			 * for ever, the signal never delivered: Boehm's
			 * gctest hung so, its collector waiting for the
			 * suspend signal's acknowledgement). */
			enter_from_intr(t);
			if (t->mode != MODE_NONE)
				continue;
		}
		t->vcpu->ran = true;
		r = vsys3(SYS_ioctl, t->vcpu->fd, KVM_RUN, 0);
		run->immediate_exit = 0;
		atomic_store(&t->kick, false);
		if (r < 0) {
			if (r == -EINTR || r == -EAGAIN) {
				enter_from_intr(t);
				continue;
			}
			if (r == -EFAULT) {
				efault(t);
				continue;
			}
			vdie(FGVM_EXIT_INTERNAL, "KVM_RUN: %s", verrname((int)-r));
		}
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			if (run->io.port == PORT_SYSCALL)
				enter_from_syscall(t);
			else if (run->io.port >= PORT_EXC && run->io.port < PORT_EXC + 32)
				enter_from_exception(t, run->io.port - PORT_EXC);
			else
				vdie(FGVM_EXIT_INTERNAL, "internal error: I/O exit on port %x",
				     run->io.port);
			break;
		case KVM_EXIT_INTR:
			enter_from_intr(t);
			break;
		case KVM_EXIT_MMIO: {
			struct kvm_regs rr;

			regs_get(t, &rr);
			vdie(FGVM_EXIT_INTERNAL,
			     "internal error: the guest reached %p, which has no memory "
			     "slot (rip %p)",
			     (void *)run->mmio.phys_addr, (void *)rr.rip);
		}
		case KVM_EXIT_SHUTDOWN:
			vdie(FGVM_EXIT_INTERNAL, "internal error: the vCPU shut down (triple "
						 "fault)");
		case KVM_EXIT_FAIL_ENTRY:
			vdie(FGVM_EXIT_INTERNAL,
			     "internal error: KVM could not enter the guest (reason %llx)",
			     (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		case KVM_EXIT_INTERNAL_ERROR:
			vdie(FGVM_EXIT_INTERNAL, "internal error: KVM internal error %u",
			     run->internal.suberror);
		default:
			vdie(FGVM_EXIT_INTERNAL, "internal error: unexpected KVM exit %u",
			     run->exit_reason);
		}
	}
}
