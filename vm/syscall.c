/* syscall.c - the program's system calls.
 *
 * Each one is performed by the thread's own host task, so pointers, file
 * descriptors, credentials and the signal mask are the program's without
 * translation.  Most are forwarded as they are (with sysout.c reporting
 * what they wrote, I2); those that concern the VM itself are handled
 * here: the mapping calls (mm.c), threads and processes (thread.c),
 * signals (signal.c), the thread pointer (the vCPU's FS/GS base), rseq
 * (refused: the kernel would check the host's instruction pointer),
 * fgvm's own descriptors (I5), /proc/self/exe, and the toolkit's vmcalls
 * (track.c).
 */
#include "vmm.h"
#include "fg_vmcall.h"

#include <asm/prctl.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <string.h>
#include <sys/mman.h>

#ifndef CLONE_ARGS_SIZE_VER0
#define CLONE_ARGS_SIZE_VER0 64
#endif

static const struct {
	int nr;
	const char *name;
} names[] = {
	{SYS_read, "read"}, {SYS_write, "write"}, {SYS_open, "open"},
	{SYS_close, "close"}, {SYS_stat, "stat"}, {SYS_fstat, "fstat"},
	{SYS_lstat, "lstat"}, {SYS_poll, "poll"}, {SYS_lseek, "lseek"},
	{SYS_mmap, "mmap"}, {SYS_mprotect, "mprotect"}, {SYS_munmap, "munmap"},
	{SYS_brk, "brk"}, {SYS_rt_sigaction, "rt_sigaction"},
	{SYS_rt_sigprocmask, "rt_sigprocmask"}, {SYS_rt_sigreturn, "rt_sigreturn"},
	{SYS_ioctl, "ioctl"}, {SYS_pread64, "pread64"}, {SYS_readv, "readv"},
	{SYS_writev, "writev"}, {SYS_access, "access"}, {SYS_pipe, "pipe"},
	{SYS_select, "select"}, {SYS_mremap, "mremap"}, {SYS_madvise, "madvise"},
	{SYS_dup, "dup"}, {SYS_dup2, "dup2"}, {SYS_nanosleep, "nanosleep"},
	{SYS_getpid, "getpid"}, {SYS_socket, "socket"}, {SYS_clone, "clone"},
	{SYS_fork, "fork"}, {SYS_vfork, "vfork"}, {SYS_execve, "execve"},
	{SYS_exit, "exit"}, {SYS_wait4, "wait4"}, {SYS_kill, "kill"},
	{SYS_uname, "uname"}, {SYS_fcntl, "fcntl"}, {SYS_getcwd, "getcwd"},
	{SYS_readlink, "readlink"}, {SYS_sigaltstack, "sigaltstack"},
	{SYS_arch_prctl, "arch_prctl"}, {SYS_gettid, "gettid"},
	{SYS_futex, "futex"}, {SYS_set_tid_address, "set_tid_address"},
	{SYS_clock_gettime, "clock_gettime"}, {SYS_exit_group, "exit_group"},
	{SYS_tgkill, "tgkill"}, {SYS_openat, "openat"},
	{SYS_newfstatat, "newfstatat"}, {SYS_set_robust_list, "set_robust_list"},
	{SYS_pipe2, "pipe2"}, {SYS_prlimit64, "prlimit64"},
	{SYS_getrandom, "getrandom"}, {SYS_rseq, "rseq"}, {SYS_clone3, "clone3"},
	{SYS_execveat, "execveat"}, {SYS_statx, "statx"},
	{SYS_getdents64, "getdents64"}, {SYS_readlinkat, "readlinkat"},
	{SYS_close_range, "close_range"}, {SYS_dup3, "dup3"},
	{SYS_shmat, "shmat"}, {SYS_shmdt, "shmdt"}, {SYS_prctl, "prctl"},
	{SYS_sched_getaffinity, "sched_getaffinity"}, {SYS_getuid, "getuid"},
	{SYS_rt_sigsuspend, "rt_sigsuspend"}, {SYS_pkey_mprotect, "pkey_mprotect"},
};

const char *syscall_name(long nr)
{
	static char buf[32];

	if (nr == FG_VMCALL_NR)
		return "fg_vmcall";
	for (size_t i = 0; i < sizeof names / sizeof *names; i++)
		if (names[i].nr == nr)
			return names[i].name;
	vsnfmt(buf, sizeof buf, "syscall_%ld", nr);
	return buf;
}

/* The calls that sleep with a temporary signal mask: where it is. */
static bool temp_mask(long nr, const uint64_t a[6], uint64_t *maskp)
{
	uint64_t pair[2];

	switch (nr) {
	case SYS_rt_sigsuspend:
		*maskp = a[0];
		return a[1] == 8;
	case SYS_ppoll:
		*maskp = a[3];
		return a[3] && a[4] == 8;
	case SYS_epoll_pwait:
	case 441: /* epoll_pwait2 */
		*maskp = a[4];
		return a[4] && a[5] == 8;
	case SYS_pselect6:
	case SYS_io_pgetevents:
		/* A pointer to {mask pointer, size}. */
		if (!a[5] || guest_read(pair, a[5], sizeof pair) < 0)
			return false;
		*maskp = pair[0];
		return pair[0] && pair[1] == 8;
	default:
		return false;
	}
}

/* vsys_intr (vmm.h).  A signal for the program that the host handler
 * takes after the program's `syscall` exit and before the host call is in
 * the kernel would otherwise wait for the call to end: for ever, when the
 * call waits for what the signal's handler would do (Boehm's stop-the-
 * world, a read that a timer is meant to interrupt).  The check of the
 * queue and the `syscall` instruction form a window that host_sig leaves
 * through fgvm_isys_bail; a signal that comes once the call is in the
 * kernel interrupts it (the handlers have no SA_RESTART) and the call
 * returns -EINTR, which signal.c restarts or not by the kernel's rules.
 * A call the kernel restarts itself (-ERESTARTNOINTR) is back on the
 * `syscall` instruction when the handler runs, in the window: it is then
 * restarted from the program, to the same effect.
 *
 * fgvm_isys(nr, a, &head, &tail): the queue is empty when head == tail. */
__asm__(".text\n"
	".globl fgvm_isys_begin, fgvm_isys_call, fgvm_isys_bail\n"
	".type fgvm_isys, @function\n"
	"fgvm_isys:\n"
	"fgvm_isys_begin:\n"
	"	movl (%rdx), %eax\n"
	"	cmpl (%rcx), %eax\n"
	"	jne fgvm_isys_bail\n"
	"	movq %rdi, %rax\n"
	"	movq %rsi, %r11\n"
	"	movq 0(%r11), %rdi\n"
	"	movq 8(%r11), %rsi\n"
	"	movq 16(%r11), %rdx\n"
	"	movq 24(%r11), %r10\n"
	"	movq 32(%r11), %r8\n"
	"	movq 40(%r11), %r9\n"
	"fgvm_isys_call:\n"
	"	syscall\n"
	"	ret\n"
	"fgvm_isys_bail:\n"
	"	movq $-513, %rax\n" /* -FGVM_ENOSTART */
	"	ret\n"
	".size fgvm_isys, .-fgvm_isys\n");
long fgvm_isys(long nr, const uint64_t a[6], _Atomic unsigned *head,
	       _Atomic unsigned *tail);

long vsys_intr(struct vthread *t, long nr, const uint64_t a[6])
{
	return fgvm_isys(nr, a, &t->sigq_head, &t->sigq_tail);
}

static long forward(long nr, const uint64_t a[6])
{
	long r = sysout_check(nr, a);

	if (r)
		return r;
	r = vsys_intr(vt_self(), nr, a);
	if (r != -FGVM_ENOSTART)
		sysout_mark(nr, a, r);
	return r;
}

static long arch_prctl(struct vthread *t, uint64_t code, uint64_t addr)
{
	uint64_t fs, gs, v;

	switch (code) {
	case ARCH_SET_FS:
	case ARCH_SET_GS:
		if (addr >= USER_TOP)
			return -EPERM;
		return vcpu_set_fs_gs(t, code == ARCH_SET_FS ? 0 : 1, addr);
	case ARCH_GET_FS:
	case ARCH_GET_GS:
		vcpu_fs_gs(t, &fs, &gs);
		v = code == ARCH_GET_FS ? fs : gs;
		if (guest_write(addr, &v, 8) < 0)
			return -EFAULT;
		host_wrote(addr, 8);
		return 0;
	case ARCH_GET_CPUID:
		return 1;
	case ARCH_SET_CPUID:
		return -ENODEV;
	default:
		/* CET shadow stacks, AMX permissions, vDSO mapping: none of
		 * them are offered inside the VM. */
		return -EINVAL;
	}
}

static bool is_self_exe(const char *p)
{
	char want[64];

	if (!strcmp(p, "/proc/self/exe") || !strcmp(p, "/proc/thread-self/exe"))
		return true;
	vsnfmt(want, sizeof want, "/proc/%d/exe", vgetpid());
	return !strcmp(p, want);
}

/* readlink(at) of /proc/self/exe names the program, not fgvm. */
static long readlink_exe(struct vthread *t, int dirfd, uint64_t upath, uint64_t buf,
			 uint64_t size, long nr, const uint64_t a[6])
{
	char path[64];
	long n = guest_strlen(upath, sizeof path);
	size_t len;

	(void)t;
	if (n < 0 || n >= (long)sizeof path || guest_read(path, upath, (size_t)n + 1) < 0 ||
	    (path[0] != '/' && dirfd != AT_FDCWD) || !is_self_exe(path))
		return forward(nr, a);
	if ((long)size <= 0)
		return -EINVAL;
	len = strlen(g_vm.exe_path);
	if (len > size)
		len = size;
	if (guest_write(buf, g_vm.exe_path, len) < 0)
		return -EFAULT;
	host_wrote(buf, len);
	return (long)len;
}

static long vm_close_range(unsigned first, unsigned last, unsigned flags)
{
	/* Close around fgvm's descriptors. */
	unsigned lo = first;
	long r = 0;

	for (unsigned fd = first >= FGVM_FD_FLOOR ? first : FGVM_FD_FLOOR;
	     fd <= last && fd < FGVM_FD_FLOOR + 4096; fd++) {
		if (!vm_fd_is_ours((int)fd))
			continue;
		if (fd > lo)
			r = vsys3(SYS_close_range, lo, fd - 1, flags);
		if (r < 0)
			return r;
		lo = fd + 1;
	}
	if (lo <= last && lo >= first)
		r = vsys3(SYS_close_range, lo, last, flags);
	return r;
}

static void trace(struct vthread *t, long nr, const uint64_t a[6], long r)
{
	char buf[256];
	size_t n;

	n = vsnfmt(buf, sizeof buf, "fgvm[%d] %s(%lx, %lx, %lx, %lx) = %ld\n", t->tid,
		   syscall_name(nr), (unsigned long)a[0], (unsigned long)a[1],
		   (unsigned long)a[2], (unsigned long)a[3], r);
	vwrite_all(2, buf, n < sizeof buf ? n : sizeof buf - 1);
}

static void once(bool *said, const char *what)
{
	if (!*said) {
		*said = true;
		vsay("the program asked for %s, which fgvm does not support; it was "
		     "refused",
		     what);
	}
}

void vm_syscall(struct vthread *t)
{
	static bool said_seccomp, said_ldt;
	struct vm *vm = &g_vm;
	struct kvm_regs *u = &t->u;
	long nr = (long)u->rax;
	uint64_t a[6] = {u->rdi, u->rsi, u->rdx, u->r10, u->r8, u->r9};
	long r;

	atomic_fetch_add_explicit(nr == FG_VMCALL_NR ? &vm->n_vmcalls : &vm->n_syscalls,
				  1, memory_order_relaxed);
	switch (nr) {
	case SYS_mmap:
		r = mm_mmap(vm, a[0], a[1], (int)a[2], (int)a[3], (int)a[4], (long)a[5]);
		break;
	case SYS_munmap:
		r = mm_munmap(vm, a[0], a[1]);
		break;
	case SYS_mprotect:
		r = mm_mprotect(vm, a[0], a[1], (int)a[2]);
		break;
	case SYS_pkey_mprotect:
		r = (int)a[3] == -1 || a[3] == 0 ? mm_mprotect(vm, a[0], a[1], (int)a[2])
						 : -EINVAL;
		break;
	case SYS_mremap:
		r = mm_mremap(vm, a[0], a[1], a[2], (int)a[3], a[4]);
		break;
	case SYS_brk:
		r = mm_brk(vm, a[0]);
		break;
	case SYS_madvise:
		r = mm_madvise(vm, a[0], a[1], (int)a[2]);
		break;
	case SYS_shmat:
		r = mm_shmat(vm, (int)a[0], a[1], (int)a[2]);
		break;
	case SYS_shmdt:
		r = mm_shmdt(vm, a[0]);
		break;
	case SYS_remap_file_pages:
		r = -ENOSYS;
		break;
	case SYS_arch_prctl:
		r = arch_prctl(t, a[0], a[1]);
		break;
	case SYS_clone:
		r = vm_clone(t, a[0], a[1], a[2], a[3], a[4]);
		break;
	case SYS_clone3:
		/* glibc falls back to clone. */
		r = -ENOSYS;
		break;
	case SYS_fork:
		r = vm_clone(t, SIGCHLD, 0, 0, 0, 0);
		break;
	case SYS_vfork:
		r = vm_clone(t, CLONE_VM | CLONE_VFORK | SIGCHLD, 0, 0, 0, 0);
		break;
	case SYS_execve:
		r = vm_execve(t, a[0], a[1], a[2], AT_FDCWD, 0);
		break;
	case SYS_execveat:
		r = vm_execve(t, a[1], a[2], a[3], (int)a[0], (int)a[4]);
		break;
	case SYS_exit:
		if (vm->trace)
			trace(t, nr, a, 0);
		vm_thread_exit(t, (int)a[0]);
	case SYS_exit_group:
		if (vm->trace)
			trace(t, nr, a, 0);
		if (vm->verbose)
			vsay("exit %d: %lu system calls, %lu vmcalls, %lu page-table fills, "
			     "%lu signals delivered; %lu region collections (%lu pages), "
			     "%lu regions read whole for a call fgvm does not know",
			     (int)a[0], (unsigned long)vm->n_syscalls,
			     (unsigned long)vm->n_vmcalls, (unsigned long)vm->n_fills,
			     (unsigned long)vm->n_signals, (unsigned long)vm->n_collects,
			     (unsigned long)vm->n_collect_pages,
			     (unsigned long)vm->n_unknown_writes);
		for (;;)
			vsys1(SYS_exit_group, a[0]);
	case SYS_rt_sigaction:
		r = sys_rt_sigaction(t, (int)a[0], a[1], a[2], a[3]);
		break;
	case SYS_rt_sigreturn:
		r = sys_rt_sigreturn(t);
		break;
	case SYS_sigaltstack:
		r = sys_sigaltstack(t, a[0], a[1]);
		break;
	case SYS_rt_sigprocmask:
		r = sys_rt_sigprocmask(t, (int)a[0], a[1], a[2], a[3]);
		break;
	case SYS_set_tid_address:
		t->clear_tid = a[0];
		r = t->tid;
		break;
	case SYS_rseq:
		r = -ENOSYS;
		break;
	case SYS_seccomp:
		once(&said_seccomp, "a seccomp filter (it would filter fgvm's own calls)");
		r = -EINVAL;
		break;
	case SYS_prctl:
		if (a[0] == 22 /* PR_SET_SECCOMP */) {
			once(&said_seccomp, "a seccomp filter (it would filter fgvm's own calls)");
			r = -EINVAL;
		} else if (a[0] == 35 /* PR_SET_MM */) {
			r = -EPERM;
		} else if (a[0] == 40 /* PR_GET_TID_ADDRESS */) {
			r = guest_write(a[1], &t->clear_tid, 8) < 0 ? -EFAULT : 0;
			if (!r)
				host_wrote(a[1], 8);
		} else {
			r = forward(nr, a);
		}
		break;
	case SYS_modify_ldt:
		once(&said_ldt, "a local descriptor table (modify_ldt)");
		r = -ENOSYS;
		break;
	case SYS_iopl:
	case SYS_ioperm:
		r = -EPERM;
		break;
	case SYS_readlink:
		r = readlink_exe(t, AT_FDCWD, a[0], a[1], a[2], nr, a);
		break;
	case SYS_readlinkat:
		r = readlink_exe(t, (int)a[0], a[1], a[2], a[3], nr, a);
		break;
	case SYS_close:
		r = vm_fd_is_ours((int)a[0]) ? -EBADF : forward(nr, a);
		break;
	case SYS_close_range:
		r = vm_close_range((unsigned)a[0], (unsigned)a[1], (unsigned)a[2]);
		break;
	case SYS_dup2:
	case SYS_dup3:
		r = vm_fd_is_ours((int)a[0]) || vm_fd_is_ours((int)a[1]) ? -EBADF
									 : forward(nr, a);
		break;
	case FG_VMCALL_NR:
		track_hypercall(t, a, &r);
		break;
	default: {
		uint64_t mp;

		if (temp_mask(nr, a, &mp) && guest_read(&t->tmp_mask, mp, 8) >= 0) {
			t->tmp_mask &= ~((1ULL << (SIGKILL - 1)) | (1ULL << (SIGSTOP - 1)));
			vsys4(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &t->orig_mask, 8);
			r = forward(nr, a);
			t->tmp_mask_on = r == -EINTR;
		} else {
			r = forward(nr, a);
		}
		break;
	}
	}
	if (vm->trace)
		trace(t, nr, a, r);
	if (r != SYS_REGS_SET)
		u->rax = (uint64_t)r;
}
