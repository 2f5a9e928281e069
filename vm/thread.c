/* thread.c - guest threads and processes: clone, fork, vfork, exec, exit.
 *
 * Threads: one host task and one vCPU per guest thread.  The task is made
 * with a raw clone onto a host stack of its own (the program's stack is
 * the guest's); its vthread sits at the base of that stack.  vCPUs and
 * stacks of tasks that are gone (the kernel clears vthread.host_tid, as
 * CLONE_CHILD_CLEARTID) are taken back at the next clone.
 *
 * fork: the child is a copy of the whole process, fgvm included, but a
 * KVM VM belongs to the mm that made it, so the child makes its own VM
 * from the same slot table and page tables (copied with the memory),
 * and goes on in the guest.  A CLONE_VM child (vfork, posix_spawn) shares
 * the parent's VM and runs on a vCPU of it like a thread.
 *
 * exec: the new image runs under fgvm too: fgvm execs itself with the
 * program's path, argv and environment (and its own options), after
 * checking what the kernel would check, so that a failing execve still
 * returns its error to the program.
 */
#include "vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

/* clone onto a new stack; the child calls fn(arg) and never returns. */
long fgvm_clone_raw(unsigned long flags, void *stack_top, void *ptid,
		    void *ctid, unsigned long tls, void (*fn)(void *), void *arg);
__asm__(".text\n"
	".globl fgvm_clone_raw\n"
	"fgvm_clone_raw:\n"
	/* rdi flags, rsi stack, rdx ptid, rcx ctid, r8 tls, r9 fn, 8(%rsp) arg */
	"	movq 8(%rsp), %rax\n"
	"	subq $16, %rsi\n"
	"	movq %r9, 0(%rsi)\n"
	"	movq %rax, 8(%rsi)\n"
	"	movq %rcx, %r10\n"
	"	movl $56, %eax\n" /* SYS_clone */
	"	syscall\n"
	"	testq %rax, %rax\n"
	"	jnz 1f\n"
	"	xorl %ebp, %ebp\n"
	"	popq %rax\n"
	"	popq %rdi\n"
	"	andq $-16, %rsp\n"
	"	call *%rax\n"
	"	hlt\n"
	"1:	ret\n");

/* Run fn(arg) on another stack (never returns). */
void fgvm_on_stack(void *top, void (*fn)(void *), void *arg);
__asm__(".text\n"
	".globl fgvm_on_stack\n"
	"fgvm_on_stack:\n"
	"	movq %rdi, %rsp\n"
	"	andq $-16, %rsp\n"
	"	xorl %ebp, %ebp\n"
	"	movq %rdx, %rdi\n"
	"	call *%rsi\n"
	"	hlt\n");

struct vthread *vthread_alloc(struct vm *vm)
{
	void *p;
	struct vthread *t;

	if (mm_host_map(vm, VT_REGION, VT_REGION, &p))
		return NULL;
	/* A guard page between the vthread and the stack below it. */
	vsys3(SYS_mprotect, (uint64_t)p + VT_HEAD, PAGE_SIZE, PROT_NONE);
	t = p;
	t->self = t;
	t->sys_nr = -1;
	t->sys_intr = -1;
	t->altstack.ss_flags = SS_DISABLE;
	return t;
}

static void *vt_stack_top(struct vthread *t)
{
	return (uint8_t *)t + VT_REGION;
}

void vthread_register(struct vm *vm, struct vthread *t)
{
	vlock_take(&vm->pool_lock);
	if (vm->nthreads < MAX_VCPUS) {
		vm->threads[vm->nthreads++] = t;
	}
	vlock_give(&vm->pool_lock);
}

/* Take back the vCPUs and stacks of tasks that are gone. */
static void reap(struct vm *vm)
{
	struct vthread *dead[64];
	int n = 0;

	vlock_take(&vm->pool_lock);
	for (int i = 0; i < vm->nthreads && n < 64;) {
		struct vthread *t = vm->threads[i];

		if (t != vt_self() && t->host_tid == 0 && t->tid) {
			if (t->vcpu)
				t->vcpu->used = false;
			dead[n++] = t;
			vm->threads[i] = vm->threads[--vm->nthreads];
			continue;
		}
		i++;
	}
	vlock_give(&vm->pool_lock);
	for (int i = 0; i < n; i++) {
		sighand_put(vm, dead[i]->sh);
		mm_host_unmap(vm, dead[i], VT_REGION);
	}
}

static void main_on_vstack(void *arg)
{
	struct vthread *t = arg;
	struct vm *vm = &g_vm;
	int rc;

	t->tid = vgettid();
	t->host_tid = t->tid;
	t->vcpu = vcpu_get(vm);
	if (!t->vcpu)
		vdie(FGVM_EXIT_INTERNAL, "cannot create the first vCPU");
	rc = vcpu_setup(vm, t->vcpu, 0, 0);
	if (rc < 0)
		vdie(FGVM_EXIT_KVMCAP, "cannot set up the vCPU: %s", verrname(-rc));
	rc = sig_init(vm);
	if (rc)
		vdie(FGVM_EXIT_INTERNAL, "signal set-up failed: %s", verrname(-rc));
	vthread_register(vm, t);
	t->mode = MODE_USER;
	vcpu_loop(t);
}

void vthread_start_main(struct vm *vm, uint64_t entry, uint64_t sp)
{
	struct vthread *t = vthread_alloc(vm);

	if (!t)
		vdie(FGVM_EXIT_INTERNAL, "out of memory for the first thread");
	memset(&t->u, 0, sizeof t->u);
	t->u.rip = entry;
	t->u.rsp = sp;
	t->u.rflags = 0x202;
	fgvm_on_stack(vt_stack_top(t), main_on_vstack, t);
	__builtin_unreachable();
}

static void thread_child(void *arg)
{
	struct vthread *t = arg;

	t->tid = vgettid();
	if (t->set_tid) {
		int tid = t->tid;

		if (guest_write(t->set_tid, &tid, 4) >= 0)
			host_wrote(t->set_tid, 4);
		t->set_tid = 0;
	}
	vcpu_loop(t);
}

/* Returns the new thread's MODE_*, or -errno. */
static int vcpu_copy_state(struct vthread *from, struct vthread *to,
			   uint64_t fs, uint64_t gs)
{
	static bool said;
	uint8_t x[4096] __attribute__((aligned(64)));
	int mode = vcpu_setup(&g_vm, to->vcpu, fs, gs);
	int rc;

	if (mode < 0) {
		if (g_vm.verbose)
			vsay("clone: vCPU %d: registers: %s", to->vcpu->id, verrname(-mode));
		return mode;
	}
	vcpu_get_fpu(from, x);
	rc = vcpu_set_fpu(to, x);
	if (rc == -EINVAL) {
		/* Some KVMs (PVM) refuse an image another vCPU gave: keep
		 * its features to XCR0's, in the standard format. */
		*(uint64_t *)(x + 512) &= g_vm.xcr0;
		memset(x + 520, 0, 56);
		rc = vcpu_set_fpu(to, x);
	}
	if (rc == -EINVAL) {
		/* Then the new thread starts with a clean FPU (x87 and SSE
		 * control words at their defaults), not a copy of ours. */
		memset(x, 0, sizeof x);
		*(uint16_t *)x = 0x37f;
		*(uint32_t *)(x + 24) = 0x1f80;
		rc = vcpu_set_fpu(to, x);
		if (!said && g_vm.verbose) {
			said = true;
			vsay("clone: KVM refused the parent's FPU state: new threads "
			     "start with a clean one");
		}
	}
	if (rc < 0 && g_vm.verbose)
		vsay("clone: vCPU %d: FPU state: %s", to->vcpu->id, verrname(-rc));
	return rc < 0 ? rc : mode;
}

static void drop_new(struct vm *vm, struct vthread *n)
{
	if (n->vcpu)
		vcpu_put(vm, n->vcpu);
	sighand_put(vm, n->sh);
	mm_host_unmap(vm, n, VT_REGION);
}

/* A child that shares our memory: a thread, or a vfork/posix_spawn child
 * (CLONE_VM without CLONE_THREAD). */
static long clone_vm(struct vthread *t, uint64_t flags, uint64_t stack,
		     uint64_t ptid, uint64_t ctid, uint64_t tls)
{
	struct vm *vm = &g_vm;
	struct vthread *n;
	uint64_t fs, gs, hflags;
	long r;
	int rc;

	reap(vm);
	n = vthread_alloc(vm);
	if (!n)
		return -ENOMEM;
	n->vcpu = vcpu_get(vm);
	if (!n->vcpu) {
		if (vm->verbose)
			vsay("clone: no vCPU for the new thread");
		drop_new(vm, n);
		return -EAGAIN;
	}
	if (flags & CLONE_SIGHAND) {
		n->sh = t->sh;
		atomic_fetch_add(&n->sh->refs, 1);
	} else {
		n->sh = sighand_new(vm, t->sh);
	}
	vcpu_fs_gs(t, &fs, &gs);
	if (flags & CLONE_SETTLS)
		fs = tls;
	rc = n->sh ? vcpu_copy_state(t, n, fs, gs) : -ENOMEM;
	if (rc < 0) {
		if (vm->verbose)
			vsay("clone: cannot set up vCPU %d for the new thread: %s",
			     n->vcpu->id, verrname(-rc));
		drop_new(vm, n);
		return rc;
	}
	n->u = t->u;
	n->u.rax = 0;
	if (stack)
		n->u.rsp = stack;
	n->mode = rc;
	/* Linux clears sigaltstack for CLONE_VM children but vfork ones. */
	if ((flags & (CLONE_VM | CLONE_VFORK)) != CLONE_VM)
		n->altstack = t->altstack;
	n->clear_tid = (flags & CLONE_CHILD_CLEARTID) ? ctid : 0;
	n->set_tid = (flags & CLONE_CHILD_SETTID) ? ctid : 0;
	n->host_tid = 1;
	vthread_register(vm, n);
	/* The host task: the program's flags, but TLS and the child tid
	 * words are the VM's business (the guest's FS base is in its vCPU;
	 * CLEARTID is emulated at exit, I2); the kernel clears host_tid
	 * when the task is gone, which is when reap() may take it back. */
	hflags = (flags & ~(uint64_t)(CLONE_SETTLS | CLONE_CHILD_SETTID |
				      CLONE_CHILD_CLEARTID)) |
		 CLONE_CHILD_CLEARTID;
	r = fgvm_clone_raw(hflags, vt_stack_top(n), (void *)ptid,
			   (void *)&n->host_tid, 0, thread_child, n);
	if (r < 0) {
		vlock_take(&vm->pool_lock);
		n->host_tid = 0;
		n->tid = -1; /* reap() may take it */
		vlock_give(&vm->pool_lock);
		reap(vm);
		return r;
	}
	if (flags & CLONE_PARENT_SETTID)
		host_wrote(ptid, 4);
	return r;
}

/* The forked child: a VM of its own, the forking thread alone in it. */
static void fork_child(struct vthread *t, uint64_t fs, uint64_t gs)
{
	struct vm *vm = &g_vm;
	int rc;

	vm->mainpid = vgetpid();
	t->tid = vgettid();
	t->host_tid = t->tid;
	/* The parent's VM and vCPUs are useless here. */
	for (int i = 0; i < vm->nvcpus; i++) {
		vsys1(SYS_close, vm->vcpus[i].fd);
		vsys2(SYS_munmap, vm->vcpus[i].run, vm->run_size);
		vm->vcpus[i].used = false;
	}
	vm->nvcpus = 0;
	vsys1(SYS_close, vm->vm_fd);
	rc = kvm_create_vm(vm);
	if (rc)
		vdie(FGVM_EXIT_INTERNAL, "fork: cannot create the child's VM: %s",
		     verrname(-rc));
	for (size_t i = 0; i < vm->nslots; i++) {
		struct slot *s = &vm->slots[i];

		s->flags = 0;
		rc = slot_set(vm, s->id, s->start, s->end - s->start, 0);
		if (rc)
			vdie(FGVM_EXIT_INTERNAL, "fork: cannot rebuild memory slot %u: %s",
			     s->id, verrname(-rc));
	}
	/* Only this thread exists in the child. */
	for (int i = 0; i < vm->nthreads; i++) {
		struct vthread *o = vm->threads[i];

		if (o != t) {
			sighand_put(vm, o->sh);
			mm_host_unmap(vm, o, VT_REGION);
		}
	}
	vm->threads[0] = t;
	vm->nthreads = 1;
	t->vcpu = vcpu_get(vm);
	if (!t->vcpu)
		vdie(FGVM_EXIT_INTERNAL, "fork: no vCPU for the child");
	rc = vcpu_setup(vm, t->vcpu, fs, gs);
	if (rc >= 0)
		rc = vcpu_set_fpu(t, t->fpu);
	if (rc < 0)
		vdie(FGVM_EXIT_INTERNAL, "fork: cannot set up the child's vCPU: %s",
		     verrname(-rc));
	track_after_fork_child(vm);
	sig_after_fork_child(vm);
	t->mode = MODE_USER; /* a fresh vCPU starts at CPL3 */
}

long vm_clone(struct vthread *t, uint64_t flags, uint64_t stack, uint64_t ptid,
	      uint64_t ctid, uint64_t tls)
{
	uint64_t fs, gs, hflags;
	long r;

	if (flags & CLONE_VM) {
		if ((flags & CLONE_THREAD) && !(flags & CLONE_SIGHAND))
			return -EINVAL;
		if ((flags & CLONE_SIGHAND) && !(flags & CLONE_VM))
			return -EINVAL;
		return clone_vm(t, flags, stack, ptid, ctid, tls);
	}
	if (flags & (CLONE_THREAD | CLONE_SIGHAND))
		return -EINVAL;
	/* fork: the child goes on from here, on a copy of this stack.  The
	 * VM's locks are held across it (in the order vmm.h gives), so that
	 * no other thread is half-way through a change the child copies;
	 * the child, alone, starts with them free. */
	vcpu_fs_gs(t, &fs, &gs);
	vcpu_get_fpu(t, t->fpu);
	if (flags & CLONE_SETTLS)
		fs = tls;
	hflags = flags & ~(uint64_t)(CLONE_SETTLS | CLONE_CHILD_SETTID);
	vlock_take(&t->sh->lock);
	vlock_take(&g_vm.mm_lock);
	vlock_take(&g_vm.track_lock);
	vlock_take(&g_vm.pool_lock);
	r = vsys6(SYS_clone, (long)hflags, 0, (long)ptid, (long)ctid, 0, 0);
	if (r == 0) {
		atomic_store(&g_vm.pool_lock.v, 0);
		atomic_store(&g_vm.track_lock.v, 0);
		atomic_store(&g_vm.mm_lock.v, 0);
		atomic_store(&t->sh->lock.v, 0);
	} else {
		vlock_give(&g_vm.pool_lock);
		vlock_give(&g_vm.track_lock);
		vlock_give(&g_vm.mm_lock);
		vlock_give(&t->sh->lock);
	}
	if (r == 0) {
		fork_child(t, fs, gs);
		if (stack)
			t->u.rsp = stack;
		if (flags & CLONE_CHILD_SETTID) {
			int tid = t->tid;

			guest_write(ctid, &tid, 4);
		}
		return 0;
	}
	if (r > 0 && (flags & CLONE_PARENT_SETTID))
		host_wrote(ptid, 4);
	return r;
}

_Noreturn void vm_thread_exit(struct vthread *t, int status)
{
	/* CLONE_CHILD_CLEARTID, done by us so that the write is reported
	 * (I2) before anyone woken by it can look. */
	if (t->clear_tid) {
		int zero = 0;

		if (guest_write(t->clear_tid, &zero, 4) >= 0) {
			host_wrote(t->clear_tid, 4);
			vsys6(SYS_futex, (long)t->clear_tid, FUTEX_WAKE, 1, 0, 0, 0);
		}
	}
	for (;;)
		vsys1(SYS_exit, status);
}

/* ---- exec ---- */

static long read_guest_string(uint64_t p, char *buf, size_t len)
{
	long n = guest_strlen(p, len - 1);

	if (n < 0)
		return n;
	if (guest_read(buf, p, (size_t)n) < 0)
		return -EFAULT;
	buf[n] = 0;
	return n;
}

/* What the kernel checks before it replaces the image. */
static long exec_check(const char *path)
{
	long fd = vsys4(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
	struct stat st;
	char magic[4];
	long r;

	if (fd < 0)
		return fd;
	r = vsys2(SYS_fstat, fd, &st);
	if (r == 0 && !S_ISREG(st.st_mode))
		r = -EACCES;
	if (r == 0)
		r = vsys4(SYS_faccessat, AT_FDCWD, path, X_OK, 0);
	if (r == 0) {
		long n = vsys3(SYS_read, fd, magic, 4);

		if (n < 2 || (memcmp(magic, "#!", 2) &&
			      (n < 4 || memcmp(magic, "\177ELF", 4))))
			r = -ENOEXEC;
	}
	vsys1(SYS_close, fd);
	return r;
}

long vm_execve(struct vthread *t, uint64_t upath, uint64_t argv, uint64_t envp,
	       int dirfd, int flags)
{
	struct vm *vm = &g_vm;
	static char path[4096];
	char prefix[64];
	char **hargv;
	size_t n = 0, cap = 1 << 16;
	long r;
	void *mem;

	(void)t;
	r = read_guest_string(upath, path, sizeof path);
	if (r < 0)
		return r;
	if (flags & ~(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
		return -EINVAL;
	if (!path[0]) {
		if (!(flags & AT_EMPTY_PATH))
			return -ENOENT;
		vsnfmt(path, sizeof path, "/proc/self/fd/%d", dirfd);
	} else if (path[0] != '/' && dirfd != AT_FDCWD) {
		size_t pl = vsnfmt(prefix, sizeof prefix, "/proc/self/fd/%d/", dirfd);

		if (pl + strlen(path) + 1 > sizeof path)
			return -ENAMETOOLONG;
		memmove(path + pl, path, strlen(path) + 1);
		memcpy(path, prefix, pl);
	}
	if (!strcmp(path, "/proc/self/exe"))
		memcpy(path, vm->exe_path, strlen(vm->exe_path) + 1);
	r = exec_check(path);
	if (r < 0)
		return r;

	if (mm_host_map(vm, cap * sizeof(char *), 0, &mem))
		return -ENOMEM;
	hargv = mem;
	hargv[n++] = vm->fgvm_path;
	for (int i = 0; i < vm->opt_argc; i++)
		hargv[n++] = vm->opt_argv[i];
	hargv[n++] = (char *)"--exec";
	hargv[n++] = path;
	hargv[n++] = (char *)"--";
	for (uint64_t i = 0;; i++) {
		uint64_t p;

		if (n + 2 >= cap) {
			mm_host_unmap(vm, mem, cap * sizeof(char *));
			return -E2BIG;
		}
		if (argv == 0)
			break;
		if (guest_read(&p, argv + i * 8, 8) < 0) {
			mm_host_unmap(vm, mem, cap * sizeof(char *));
			return -EFAULT;
		}
		if (!p)
			break;
		hargv[n++] = (char *)p;
	}
	if (n == (size_t)vm->opt_argc + 4)
		hargv[n++] = path; /* argv[0] for a program given none */
	hargv[n] = NULL;
	r = vsys3(SYS_execve, vm->fgvm_path, hargv, envp);
	mm_host_unmap(vm, mem, cap * sizeof(char *));
	return r;
}

/* ---- fgvm's descriptors (I5) ---- */

int vm_fd_is_ours(int fd)
{
	struct vm *vm = &g_vm;

	if (fd < FGVM_FD_FLOOR)
		return 0;
	if (fd == vm->kvm_fd || fd == vm->vm_fd)
		return 1;
	for (int i = 0; i < vm->nvcpus; i++)
		if (vm->vcpus[i].fd == fd)
			return 1;
	return 0;
}
