/* sigframe.c - x86-64 signal frames, laid out as Linux lays them out
 * (arch/x86/kernel/signal.c), so that handlers, unwinders and programs
 * that inspect their ucontext see what they would natively:
 *
 *   [red zone skipped] [fpstate: XSAVE image, 64-aligned, MAGIC2 after it]
 *   rt_sigframe { pretcode = sa_restorer; ucontext; siginfo }
 *   rsp = frame, with (rsp + 8) % 16 == 0 at the handler's entry.
 */
#include "../vmm.h"

#include <errno.h>
#include <string.h>

#define FP_XSTATE_MAGIC1 0x46505853U
#define FP_XSTATE_MAGIC2 0x46505845U
#define UC_FP_XSTATE 0x1
#define UC_SIGCONTEXT_SS 0x2
#define UC_STRICT_RESTORE_SS 0x4

#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000
#endif

struct ksigcontext {
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
	uint64_t rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags;
	uint16_t cs, gs, fs, ss;
	uint64_t err, trapno, oldmask, cr2;
	uint64_t fpstate;
	uint64_t reserved1[8];
};

struct kucontext {
	uint64_t uc_flags;
	uint64_t uc_link;
	struct {
		uint64_t ss_sp;
		int32_t ss_flags;
		int32_t pad;
		uint64_t ss_size;
	} uc_stack;
	struct ksigcontext uc_mcontext;
	uint64_t uc_sigmask;
};

struct krt_sigframe {
	uint64_t pretcode;
	struct kucontext uc;
	siginfo_t info;
};

_Static_assert(sizeof(struct ksigcontext) == 256, "sigcontext layout");
_Static_assert(sizeof(struct kucontext) == 304, "ucontext layout");
_Static_assert(sizeof(struct krt_sigframe) == 440, "rt_sigframe layout");

/* The fpx_sw_bytes the kernel keeps in the FXSAVE area's spare bytes. */
struct fpx_sw {
	uint32_t magic1;
	uint32_t extended_size;
	uint64_t xfeatures;
	uint32_t xstate_size;
	uint32_t padding[7];
};

static bool on_altstack(const struct vthread *t, uint64_t sp)
{
	return !(t->altstack.ss_flags & SS_DISABLE) && t->altstack.ss_size &&
	       sp > (uint64_t)t->altstack.ss_sp &&
	       sp <= (uint64_t)t->altstack.ss_sp + t->altstack.ss_size;
}

static void fpu_init_image(uint8_t *x)
{
	memset(x, 0, 4096);
	*(uint16_t *)x = 0x37f;		/* FCW */
	*(uint32_t *)(x + 24) = 0x1f80; /* MXCSR */
}

int x86_sigframe_push(struct vthread *t, int sig, const siginfo_t *info,
		      const struct ksigaction *act, uint64_t blocked,
		      bool restart)
{
	struct vm *vm = &g_vm;
	struct krt_sigframe f;
	uint8_t x[4096];
	uint64_t sp = t->u.rsp, fp, frame;
	uint32_t xsz = vm->xsave_size;
	struct fpx_sw sw;
	uint32_t magic2 = FP_XSTATE_MAGIC2;
	bool onstack = on_altstack(t, sp);

	if (!(act->flags & SA_RESTORER))
		return -EFAULT;
	if ((act->flags & SA_ONSTACK) && !onstack &&
	    !(t->altstack.ss_flags & SS_DISABLE) && t->altstack.ss_size)
		sp = (uint64_t)t->altstack.ss_sp + t->altstack.ss_size;
	else
		sp -= 128;

	vcpu_get_fpu(t, x);
	fp = align_down(sp - (xsz + 4), 64);
	memset(&sw, 0, sizeof sw);
	sw.magic1 = FP_XSTATE_MAGIC1;
	sw.extended_size = xsz + 4;
	sw.xfeatures = vm->xcr0;
	sw.xstate_size = xsz;
	memcpy(x + 464, &sw, sizeof sw);
	frame = align_down(fp - sizeof f, 16) - 8;

	memset(&f, 0, sizeof f);
	f.pretcode = act->restorer;
	f.uc.uc_flags = UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS;
	f.uc.uc_stack.ss_sp = (uint64_t)t->altstack.ss_sp;
	f.uc.uc_stack.ss_size = t->altstack.ss_size;
	f.uc.uc_stack.ss_flags = (t->altstack.ss_flags & SS_DISABLE) ? SS_DISABLE
				 : onstack				? SS_ONSTACK
									: 0;
	{
		struct ksigcontext *m = &f.uc.uc_mcontext;
		const struct kvm_regs *u = &t->u;

		m->r8 = u->r8, m->r9 = u->r9, m->r10 = u->r10, m->r11 = u->r11;
		m->r12 = u->r12, m->r13 = u->r13, m->r14 = u->r14, m->r15 = u->r15;
		m->rdi = u->rdi, m->rsi = u->rsi, m->rbp = u->rbp, m->rbx = u->rbx;
		m->rdx = u->rdx, m->rax = u->rax, m->rcx = u->rcx, m->rsp = u->rsp;
		m->rip = u->rip, m->eflags = u->rflags;
		if (restart) {
			m->rip -= 2; /* back onto the `syscall` instruction */
			m->rax = (uint64_t)t->sys_intr;
		}
		m->cs = SEL_UCODE;
		m->ss = SEL_UDATA;
		m->err = t->fault_err;
		m->trapno = t->fault_trapno;
		m->cr2 = t->fault_cr2;
		m->oldmask = blocked;
		m->fpstate = fp;
	}
	f.uc.uc_sigmask = blocked;
	f.info = *info;

	if (guest_write(fp, x, xsz) < 0 || guest_write(fp + xsz, &magic2, 4) < 0 ||
	    guest_write(frame, &f, sizeof f) < 0)
		return -EFAULT;
	host_wrote(frame, fp + xsz + 4 - frame);

	/* The handler starts with a clean FPU, as on Linux. */
	fpu_init_image(x);
	vcpu_set_fpu(t, x);
	t->u.rip = act->handler;
	t->u.rsp = frame;
	t->u.rdi = (uint64_t)sig;
	t->u.rsi = frame + offsetof(struct krt_sigframe, info);
	t->u.rdx = frame + offsetof(struct krt_sigframe, uc);
	t->u.rax = 0;
	t->u.rflags &= ~(0x400ULL | 0x10000ULL | 0x100ULL); /* DF RF TF */
	t->fault_err = t->fault_trapno = t->fault_cr2 = 0;
	return 0;
}

long x86_sigframe_pop(struct vthread *t)
{
	struct vm *vm = &g_vm;
	uint64_t frame = t->u.rsp - 8;
	struct krt_sigframe f;
	uint8_t x[4096];
	uint64_t mask;

	if (guest_read(&f, frame, sizeof f) < 0)
		return -EFAULT;
	{
		const struct ksigcontext *m = &f.uc.uc_mcontext;
		struct kvm_regs *u = &t->u;

		u->r8 = m->r8, u->r9 = m->r9, u->r10 = m->r10, u->r11 = m->r11;
		u->r12 = m->r12, u->r13 = m->r13, u->r14 = m->r14, u->r15 = m->r15;
		u->rdi = m->rdi, u->rsi = m->rsi, u->rbp = m->rbp, u->rbx = m->rbx;
		u->rdx = m->rdx, u->rax = m->rax, u->rcx = m->rcx, u->rsp = m->rsp;
		u->rip = m->rip;
		/* The flags a program may change (Linux's FIX_EFLAGS). */
		u->rflags = (u->rflags & ~0x50dd5ULL) | (m->eflags & 0x50dd5ULL);
		if (m->fpstate) {
			struct fpx_sw sw;
			uint32_t size = 512;

			memset(x, 0, sizeof x);
			if (guest_read(x, m->fpstate, 512) < 0)
				return -EFAULT;
			memcpy(&sw, x + 464, sizeof sw);
			if (sw.magic1 == FP_XSTATE_MAGIC1 && sw.xstate_size >= 576 &&
			    sw.xstate_size <= vm->xsave_size)
				size = sw.xstate_size;
			if (size > 512 && guest_read(x + 512, m->fpstate + 512, size - 512) < 0)
				return -EFAULT;
			memset(x + 464, 0, 48);
			if (size == 512) {
				/* Only the legacy area: x87 and SSE state. */
				memset(x + 512, 0, 64);
				*(uint64_t *)(x + 512) = 3;
			} else {
				*(uint64_t *)(x + 512) &= vm->xcr0;
				memset(x + 520, 0, 56); /* XCOMP_BV and reserved */
			}
			*(uint32_t *)(x + 24) &= 0xffff;	/* MXCSR reserved bits */
			if (vcpu_set_fpu(t, x) < 0)
				return -EFAULT;
		} else {
			fpu_init_image(x);
			vcpu_set_fpu(t, x);
		}
	}
	/* sigaltstack as it was when the signal came (Linux restores it,
	 * unless we are running on it now). */
	if (!on_altstack(t, frame)) {
		if (f.uc.uc_stack.ss_flags & SS_DISABLE) {
			t->altstack.ss_flags = SS_DISABLE;
		} else if (f.uc.uc_stack.ss_size) {
			t->altstack.ss_sp = (void *)f.uc.uc_stack.ss_sp;
			t->altstack.ss_size = f.uc.uc_stack.ss_size;
			t->altstack.ss_flags = 0;
		}
	}
	mask = f.uc.uc_sigmask & ~((1ULL << (SIGKILL - 1)) | (1ULL << (SIGSTOP - 1)));
	vsys4(SYS_rt_sigprocmask, SIG_SETMASK, &mask, NULL, 8);
	return SYS_REGS_SET;
}
