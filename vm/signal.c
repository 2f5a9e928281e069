/* signal.c - the program's signals.
 *
 * The program's signal actions live here (struct sighand); the host's
 * real dispositions mirror them: SIG_DFL and SIG_IGN are installed as
 * they are, so that the kernel itself terminates, stops, ignores and
 * reaps (SIGCHLD flags included); a handler is installed as host_sig,
 * which only queues the siginfo for its thread and makes KVM_RUN return
 * (immediate_exit; invariant I3).  The thread then delivers it before
 * re-entering the guest: a Linux-layout frame on the program's stack
 * (x86/sigframe.c), the mask changed as the kernel would, the system call
 * it interrupted restarted or not by the kernel's rules (signal(7)).
 * The program's signal mask is the task's real mask.
 *
 * SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGTRAP always go to host_sig: the
 * program's own faults arrive as guest exceptions (sig_fault), so one
 * raised by the kernel in the host is a bug in fgvm, and one sent by
 * kill(2) is treated like any other signal.
 */
#include "vmm.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000
#endif
#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31)
#endif

extern void fgvm_host_restorer(void);
__asm__(".text\n"
	".globl fgvm_host_restorer\n"
	"fgvm_host_restorer:\n"
	"	movq $15, %rax\n"
	"	syscall\n"
	"	hlt\n");

static uint64_t bit(int sig)
{
	return 1ULL << (sig - 1);
}

static bool fault_sig(int sig)
{
	return sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE ||
	       sig == SIGTRAP;
}

static bool ignored_by_default(int sig)
{
	return sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH || sig == SIGCONT;
}

static void host_sig(int sig, siginfo_t *si, void *ucv)
{
	struct vthread *t;
	unsigned tail, head;

	if (fault_sig(sig) && si->si_code > 0) {
		ucontext_t *uc = ucv;

		extern const char __ehdr_start[];
		uint64_t pc = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];

		vdie(FGVM_EXIT_INTERNAL,
		     "internal error: signal %d (code %d) in fgvm itself at pc %p "
		     "(fgvm+0x%lx), address %p",
		     sig, si->si_code, (void *)pc,
		     (unsigned long)(pc - (uint64_t)__ehdr_start), si->si_addr);
	}
	t = vt_self();
	if (t->self != t)
		return; /* not a guest thread: cannot happen */
	if (sig < 32 && (atomic_fetch_or(&t->sigq_std, bit(sig)) & bit(sig)))
		goto kick; /* a standard signal is queued at most once */
	tail = atomic_load_explicit(&t->sigq_tail, memory_order_relaxed);
	head = atomic_load_explicit(&t->sigq_head, memory_order_acquire);
	if (tail - head >= SIGQ_LEN)
		goto kick; /* the real-time queue overflowed: dropped */
	t->sigq[tail % SIGQ_LEN] = *si;
	atomic_store_explicit(&t->sigq_tail, tail + 1, memory_order_release);
kick:
	atomic_store(&t->kick, true);
	if (t->vcpu)
		t->vcpu->run->immediate_exit = 1;
	/* Caught on its way into a host call for the program: that call
	 * does not start (vsys_intr). */
	{
		greg_t *pc = &((ucontext_t *)ucv)->uc_mcontext.gregs[REG_RIP];

		if ((uint64_t)*pc >= (uint64_t)fgvm_isys_begin &&
		    (uint64_t)*pc <= (uint64_t)fgvm_isys_call)
			*pc = (greg_t)(uint64_t)fgvm_isys_bail;
	}
}

static long host_action(int sig, const struct ksigaction *g)
{
	struct ksigaction h;

	memset(&h, 0, sizeof h);
	h.flags = SA_RESTORER | (g->flags & (SA_NOCLDSTOP | SA_NOCLDWAIT));
	h.restorer = (uint64_t)fgvm_host_restorer;
	if (fault_sig(sig) || (g->handler != (uint64_t)SIG_DFL &&
			       g->handler != (uint64_t)SIG_IGN)) {
		h.handler = (uint64_t)host_sig;
		h.flags |= SA_SIGINFO;
		h.mask = ~0ULL;
	} else {
		h.handler = g->handler;
	}
	return vsys4(SYS_rt_sigaction, sig, &h, NULL, 8);
}

int sig_init(struct vm *vm)
{
	struct vthread *t = vt_self();

	t->sh = sighand_new(vm, NULL);
	if (!t->sh)
		return -ENOMEM;
	for (int sig = 1; sig <= 64; sig++) {
		struct ksigaction old;

		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		if (vsys4(SYS_rt_sigaction, sig, NULL, &old, 8) == 0 &&
		    old.handler == (uint64_t)SIG_IGN)
			t->sh->act[sig].handler = (uint64_t)SIG_IGN;
	}
	for (int sig = 1; sig < 32; sig++)
		if (fault_sig(sig))
			host_action(sig, &t->sh->act[sig]);
	return 0;
}

struct sighand *sighand_new(struct vm *vm, const struct sighand *copy)
{
	void *p;

	if (mm_host_map(vm, align_up(sizeof(struct sighand), PAGE_SIZE), 0, &p))
		return NULL;
	if (copy) {
		vlock_take((vlock *)&copy->lock);
		memcpy(((struct sighand *)p)->act, copy->act, sizeof copy->act);
		vlock_give((vlock *)&copy->lock);
	}
	atomic_store(&((struct sighand *)p)->refs, 1);
	return p;
}

void sighand_put(struct vm *vm, struct sighand *sh)
{
	if (sh && atomic_fetch_sub(&sh->refs, 1) == 1)
		mm_host_unmap(vm, sh, align_up(sizeof *sh, PAGE_SIZE));
}

long sys_rt_sigaction(struct vthread *t, int sig, uint64_t act, uint64_t oact,
		      uint64_t size)
{
	struct ksigaction n, o;
	long r = 0;

	if (size != 8 || sig < 1 || sig > 64)
		return -EINVAL;
	if (act && guest_read(&n, act, sizeof n) < 0)
		return -EFAULT;
	if (act && (sig == SIGKILL || sig == SIGSTOP))
		return -EINVAL;
	vlock_take(&t->sh->lock);
	o = t->sh->act[sig];
	if (act) {
		n.mask &= ~(bit(SIGKILL) | bit(SIGSTOP));
		r = host_action(sig, &n);
		if (r == 0)
			t->sh->act[sig] = n;
	}
	vlock_give(&t->sh->lock);
	if (r)
		return r;
	if (oact) {
		if (guest_write(oact, &o, sizeof o) < 0)
			return -EFAULT;
		host_wrote(oact, sizeof o);
	}
	return 0;
}

long sys_sigaltstack(struct vthread *t, uint64_t ss, uint64_t oss)
{
	stack_t n, o = t->altstack;
	bool on = !(t->altstack.ss_flags & SS_DISABLE) && t->altstack.ss_size &&
		  t->u.rsp > (uint64_t)t->altstack.ss_sp &&
		  t->u.rsp <= (uint64_t)t->altstack.ss_sp + t->altstack.ss_size;

	if (ss && guest_read(&n, ss, sizeof n) < 0)
		return -EFAULT;
	if (oss) {
		if (!o.ss_size)
			o.ss_flags = SS_DISABLE;
		if (on)
			o.ss_flags = SS_ONSTACK;
		if (guest_write(oss, &o, sizeof o) < 0)
			return -EFAULT;
		host_wrote(oss, sizeof o);
	}
	if (ss) {
		int mode = n.ss_flags & ~SS_AUTODISARM;

		if (on)
			return -EPERM;
		if (mode != 0 && mode != SS_DISABLE && mode != SS_ONSTACK)
			return -EINVAL;
		if (mode == SS_DISABLE) {
			t->altstack.ss_sp = NULL;
			t->altstack.ss_size = 0;
			t->altstack.ss_flags = SS_DISABLE;
		} else {
			if (n.ss_size < 2048)
				return -ENOMEM;
			t->altstack.ss_sp = n.ss_sp;
			t->altstack.ss_size = n.ss_size;
			t->altstack.ss_flags = 0;
		}
	}
	return 0;
}

static uint64_t blocked_now(void)
{
	uint64_t m = 0;

	vsys4(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &m, 8);
	return m;
}

/* Those that return EINTR after a handler even with SA_RESTART. */
static bool restartable(long nr)
{
	switch (nr) {
	case SYS_pause:
	case SYS_rt_sigsuspend:
	case SYS_rt_sigtimedwait:
	case SYS_nanosleep:
	case SYS_clock_nanosleep:
	case SYS_poll:
	case SYS_ppoll:
	case SYS_select:
	case SYS_pselect6:
	case SYS_epoll_wait:
	case SYS_epoll_pwait:
	case 441: /* epoll_pwait2 */
	case SYS_msgrcv:
	case SYS_msgsnd:
	case SYS_semop:
	case SYS_semtimedop:
	case SYS_io_getevents:
	case SYS_io_pgetevents:
		return false;
	default:
		return true;
	}
}

/* The kernel's default action, for a signal that finds none installed:
 * let the kernel take it (terminate, dump core, stop). */
static void default_action(struct vthread *t, int sig)
{
	struct ksigaction dfl;
	uint64_t m = bit(sig);

	(void)t;
	if (ignored_by_default(sig))
		return;
	memset(&dfl, 0, sizeof dfl);
	vsys4(SYS_rt_sigaction, sig, &dfl, NULL, 8);
	vsys4(SYS_rt_sigprocmask, SIG_UNBLOCK, &m, NULL, 8);
	vsys3(SYS_tgkill, vgetpid(), vgettid(), sig);
	/* Still here: a stop signal, and the process was continued. */
	if (fault_sig(sig))
		vsys1(SYS_exit_group, 128 + sig);
}

bool sig_pending(struct vthread *t)
{
	return atomic_load_explicit(&t->sigq_head, memory_order_relaxed) !=
	       atomic_load_explicit(&t->sigq_tail, memory_order_acquire);
}

/* Run the handler of sig: mask = base | its mask | sig; the frame keeps
 * saved, which rt_sigreturn puts back. */
static void deliver(struct vthread *t, int sig, const siginfo_t *si,
		    uint64_t base, uint64_t saved, bool restart)
{
	struct ksigaction act;
	uint64_t m;

	vlock_take(&t->sh->lock);
	act = t->sh->act[sig];
	if (act.flags & SA_RESETHAND) {
		memset(&t->sh->act[sig], 0, sizeof t->sh->act[sig]);
		host_action(sig, &t->sh->act[sig]);
	}
	vlock_give(&t->sh->lock);
	if (x86_sigframe_push(t, sig, si, &act, saved, restart) < 0) {
		/* The frame does not fit: SIGSEGV, as the kernel forces. */
		default_action(t, SIGSEGV);
		return;
	}
	atomic_fetch_add_explicit(&g_vm.n_signals, 1, memory_order_relaxed);
	m = base | act.mask | ((act.flags & SA_NODEFER) ? 0 : bit(sig));
	m &= ~(bit(SIGKILL) | bit(SIGSTOP));
	vsys4(SYS_rt_sigprocmask, SIG_SETMASK, &m, NULL, 8);
}

void sig_deliver_pending(struct vthread *t)
{
	bool handled = false, took = false;

	while (sig_pending(t)) {
		unsigned head = atomic_load_explicit(&t->sigq_head, memory_order_relaxed);
		siginfo_t si = t->sigq[head % SIGQ_LEN];
		int sig = si.si_signo;
		uint64_t blocked;
		struct ksigaction act;
		bool restart = false;

		if (sig < 32)
			atomic_fetch_and(&t->sigq_std, ~bit(sig));
		atomic_store_explicit(&t->sigq_head, head + 1, memory_order_release);
		took = true;
		if (sig < 1 || sig > 64)
			continue;
		/* Right after sigsuspend & co., the kernel delivers under the
		 * mask the call slept with. */
		blocked = t->tmp_mask_on ? t->tmp_mask : blocked_now();
		if (blocked & bit(sig)) {
			/* Blocked since: back to the kernel, which keeps it
			 * pending until the program unblocks it. */
			vsys4(SYS_rt_tgsigqueueinfo, vgetpid(), vgettid(), sig, &si);
			continue;
		}
		vlock_take(&t->sh->lock);
		act = t->sh->act[sig];
		vlock_give(&t->sh->lock);
		if (act.handler == (uint64_t)SIG_IGN)
			continue;
		if (act.handler == (uint64_t)SIG_DFL) {
			default_action(t, sig);
			continue;
		}
		if (!handled && t->sys_intr >= 0)
			restart = t->sys_nostart ||
				  ((act.flags & SA_RESTART) && restartable(t->sys_intr));
		deliver(t, sig, &si, blocked, t->tmp_mask_on ? t->orig_mask : blocked,
			restart);
		handled = true;
		t->sys_intr = -1;
		t->tmp_mask_on = false;
	}
	t->tmp_mask_on = false;
	if (t->sys_intr >= 0 &&
	    (t->sys_nostart || (took && restartable(t->sys_intr)))) {
		/* Interrupted for nothing the program sees, or never
		 * started: go again. */
		t->u.rip -= 2;
		t->u.rax = (uint64_t)t->sys_intr;
	}
	t->sys_intr = -1;
	t->sys_nostart = false;
}

void sig_fault(struct vthread *t, int sig, int code, uint64_t addr, int trapno,
	       uint64_t err)
{
	siginfo_t si;
	struct ksigaction act;
	uint64_t blocked = blocked_now();

	memset(&si, 0, sizeof si);
	si.si_signo = sig;
	si.si_code = code;
	si.si_addr = (void *)addr;
	t->fault_trapno = (uint64_t)trapno;
	t->fault_err = err;
	t->fault_cr2 = sig == SIGSEGV && trapno == 14 ? addr : 0;
	vlock_take(&t->sh->lock);
	act = t->sh->act[sig];
	vlock_give(&t->sh->lock);
	if (act.handler == (uint64_t)SIG_DFL || act.handler == (uint64_t)SIG_IGN ||
	    (blocked & bit(sig))) {
		/* The kernel forces the default action then. */
		struct ksigaction dfl;

		if (g_vm.verbose)
			vsay("the program gets signal %d (code %d) with no handler: trap %d "
			     "at rip %p, rsp %p, error %lx, address %p, guest pte %lx",
			     sig, code, trapno, (void *)t->u.rip, (void *)t->u.rsp,
			     (unsigned long)err, (void *)addr,
			     (unsigned long)pt_lookup(&g_vm, addr ? addr : t->u.rip));

		memset(&dfl, 0, sizeof dfl);
		vlock_take(&t->sh->lock);
		t->sh->act[sig] = dfl;
		vlock_give(&t->sh->lock);
		default_action(t, sig);
		return;
	}
	deliver(t, sig, &si, blocked, blocked, false);
}

long sys_rt_sigreturn(struct vthread *t)
{
	long r = x86_sigframe_pop(t);

	if (r == -EFAULT) {
		default_action(t, SIGSEGV);
		return SYS_REGS_SET;
	}
	return r;
}

long sys_rt_sigprocmask(struct vthread *t, int how, uint64_t set, uint64_t oset,
			uint64_t size)
{
	long r;

	(void)t;
	r = vsys4(SYS_rt_sigprocmask, how, set, oset, size);
	if (r == 0 && oset)
		host_wrote(oset, size);
	return r;
}

void sig_after_fork_child(struct vm *vm)
{
	struct vthread *t = vt_self();

	(void)vm;
	atomic_store(&t->sigq_head, 0);
	atomic_store(&t->sigq_tail, 0);
	atomic_store(&t->sigq_std, 0);
}

void sig_reset_for_exec(struct vm *vm)
{
	(void)vm;
}
