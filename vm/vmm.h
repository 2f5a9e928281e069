/* vmm.h - fgvm's process-level VM: the parts and their invariants.
 *
 * Glossary
 *   guest    the program fgvm runs.  Its code (ld.so included) executes
 *            at CPL3 in a KVM vCPU; guest-virtual == guest-physical ==
 *            host-virtual, so a pointer means the same everywhere.
 *   host     fgvm itself, in the same process.  Each guest thread is one
 *            host task that alternates between KVM_RUN (guest code) and
 *            the VM's code, which performs the guest's system calls on
 *            that same task (same tid, signal mask, credentials).
 *   area     a range of the address space with one owner and protection:
 *            GUEST (the program's), SPECIAL (vdso/vvar: the program's,
 *            fixed) or HOST (fgvm's own: never visible to the guest).
 *   slot     a KVM memslot.  Slots give guest-physical backing (GPA ==
 *            HVA) to every page the guest can reach; they may also cover
 *            dead space, never overlap, and are only created, except in a
 *            forked child, which builds its own.
 *   chunk    2 MiB of address space: the unit in which guest page tables
 *            are filled, lazily, on the guest's first fault there.
 *   vthread  the VM's record of a host task running a guest thread; it
 *            lives at the base of that task's host stack.
 *
 * Invariants
 *   I1  The guest page tables never grant more than the host mapping:
 *       a guest PTE is present only for a GUEST/SPECIAL page covered by a
 *       slot, with at most the area's protection.  Mapping calls that
 *       take rights away update the guest PTEs *before* the host call,
 *       calls that give rights update them after.  KVM's MMU notifier
 *       zaps its nested (or shadow) entries and flushes guest TLBs when
 *       the host mapping changes, so no stale translation outlives a
 *       host mapping change; no TLB shoot-down of our own is needed.
 *   I2  Every write the VM (or the kernel, through a system call the VM
 *       forwards) makes into guest memory is reported to the dirty
 *       tracking (track.c) before the guest can observe its completion.
 *   I3  Host signal handlers only record and set kvm_run.immediate_exit;
 *       they take no lock.  Guest signals are delivered by the vthread
 *       itself before it re-enters the guest.
 *   I4  Run-time code follows sys.h (no C-library state).
 *   I5  fgvm's own descriptors live at FGVM_FD_FLOOR and above and the
 *       guest cannot close, replace or duplicate onto them.
 *
 * Locks: sighand.lock the program's signal actions; vm.mm_lock orders
 * area/slot/page-table changes; vm.track_lock the tracked regions;
 * vm.pool_lock the vCPU pool and the thread list.  Take them in that
 * order (fork takes all four).  Never hold a lock across KVM_RUN or a
 * forwarded system call that may block.
 */
#ifndef FGVM_VMM_H
#define FGVM_VMM_H

#include "sys.h"

#include <linux/kvm.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

/* Exit statuses of `fgvm -- PROG`, when fgvm itself fails.  Anything else
 * is the program's own status (128+N when it died of signal N, as a
 * shell reports it). */
enum {
	FGVM_EXIT_UNSUPPORTED = 120, /* the program did what the VM cannot do */
	FGVM_EXIT_NOKVM = 121,	     /* no /dev/kvm on this machine */
	FGVM_EXIT_KVMPERM = 122,     /* /dev/kvm not accessible */
	FGVM_EXIT_KVMCAP = 123,	     /* KVM lacks a capability the VM needs */
	FGVM_EXIT_INTERNAL = 125,    /* fgvm failed (a bug, or out of memory) */
	FGVM_EXIT_NOEXEC = 126,	     /* PROG found but not executable */
	FGVM_EXIT_NOTFOUND = 127,    /* PROG not found */
};

#define FGVM_FD_FLOOR 1000
#define PAGE_SIZE 4096UL
#define PAGE_MASK (~(PAGE_SIZE - 1))
#define CHUNK_SIZE (2UL << 20)
#define USER_TOP 0x7ffffffff000UL /* highest user address + 1, 4-level */
#define MAX_VCPUS 1024
#define BRK_RESERVE (1UL << 30) /* the program's brk area, at most */

/* Guest selectors: Linux's, so that signal frames look native. */
#define SEL_KCODE 0x10
#define SEL_KDATA 0x18
#define SEL_UDATA 0x2b
#define SEL_UCODE 0x33
#define SEL_TSS 0x40

/* I/O ports the ring-0 stub exits through. */
#define PORT_SYSCALL 0x10
#define PORT_EXC 0x20 /* + vector, 0..31 */
#define IDT_VECTORS 0x81 /* int $0x80 must find a gate: it raises #GP */

/* VMM region pages: stub, IDT, syscall trampoline, then one per vCPU. */
#define VMM_PAGE_STUB 0
#define VMM_PAGE_IDT 1
#define VMM_PAGE_TRAMP 2
#define VMM_PAGE_VCPU0 3
#define VMM_PAGES (VMM_PAGE_VCPU0 + MAX_VCPUS)

static inline uint64_t align_down(uint64_t v, uint64_t a)
{
	return v & ~(a - 1);
}

static inline uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* ---- areas, slots (mm.c) ---- */

enum area_kind { AREA_FREE = 0, AREA_GUEST, AREA_SPECIAL, AREA_HOST };

#define AF_SHARED 0x1
#define AF_GROWSDOWN 0x2

struct area {
	uint64_t start, end;
	uint8_t kind;
	uint8_t prot; /* PROT_* */
	uint16_t flags;
};

struct slot {
	uint64_t start, end;
	uint32_t id;
	uint32_t flags; /* KVM_MEM_* */
};

/* ---- the vCPU pool (kvm.c) ---- */

struct vcpu {
	int fd;
	int id;
	struct kvm_run *run;
	uint8_t *page; /* GDT + TSS + ring-0 stack, in the VMM region */
	bool used;
	bool ran;      /* has entered the guest: it is left in ring 0 */
};

/* Per-vCPU page layout. */
#define VCPU_GDT_OFF 0
#define VCPU_TSS_OFF 128
#define VCPU_KSTACK_TOP PAGE_SIZE

/* ---- guest signal state (signal.c) ---- */

/* The kernel's struct sigaction on x86-64 (what rt_sigaction takes). */
struct ksigaction {
	uint64_t handler;
	uint64_t flags;
	uint64_t restorer;
	uint64_t mask;
};

struct sighand {
	_Atomic int refs;
	vlock lock;
	struct ksigaction act[65]; /* 1..64 */
};

#define SIGQ_LEN 64

/* ---- a guest thread ---- */

#define VT_REGION (256UL << 10) /* host stack + this struct, aligned */
#define VT_HEAD (32UL << 10)	/* struct vthread lives here */

struct vthread {
	struct vthread *self;
	struct vcpu *vcpu;
	struct sighand *sh;
	int tid;
	_Atomic int host_tid; /* cleared by the kernel when the task is gone */

	/* Guest thread state kept by the VM. */
	uint64_t clear_tid;    /* set_tid_address / CLONE_CHILD_CLEARTID */
	uint64_t set_tid;      /* CLONE_CHILD_SETTID: where the child writes */
	stack_t altstack;

	/* Signals the host handler took for the guest, not yet delivered:
	 * a FIFO (standard signals appear at most once).  The handler is
	 * the only writer of tail; the vthread the only writer of head. */
	siginfo_t sigq[SIGQ_LEN];
	_Atomic unsigned sigq_head, sigq_tail;
	_Atomic uint64_t sigq_std; /* standard signals now queued */
	_Atomic bool kick;	   /* set with immediate_exit */

	/* The exit being handled: u is the program's user-mode registers
	 * (rip, rsp, rflags as at CPL3, whatever way it entered the stub);
	 * handlers change u, and the loop resumes the guest from it. */
	struct kvm_regs u;
	int mode;		   /* MODE_* */
	long sys_nr;		   /* the system call being handled, or -1 */
	long sys_intr;		   /* the one that just returned EINTR, or -1 */
	bool sys_nostart;	   /* ... -FGVM_ENOSTART: it never started */
	/* sigsuspend/pselect/ppoll/epoll_pwait: the mask the call slept
	 * with, which the kernel would deliver under, and the one it put
	 * back (the frame saves that one). */
	bool tmp_mask_on;
	uint64_t tmp_mask, orig_mask;
	/* A fault's details for the signal frame. */
	uint64_t fault_trapno, fault_err, fault_cr2;
	uint64_t last_pf_addr, last_pf_rip;
	uint32_t pf_repeat;
	uint32_t efault_count;

	/* Fork: the parent's vCPU state, taken at the fork. */
	uint8_t fpu[4096];
};

static inline struct vthread *vt_self(void)
{
	uintptr_t sp;

	__asm__ volatile("mov %%rsp, %0" : "=r"(sp));
	return (struct vthread *)align_down(sp, VT_REGION);
}

/* ---- tracked regions (track.c) ---- */

struct tregion {
	uint64_t start, end;
	uint32_t id;
	bool live;
	bool lost;		   /* remapped while tracked */
	_Atomic uint64_t *host_dirty; /* a bit per page: written by the host */
	size_t nwords;
};

#define MAX_TREGIONS 4096

/* ---- the VM ---- */

struct vm {
	int kvm_fd, vm_fd;
	int run_size;
	int nr_slots;		 /* KVM_CAP_NR_MEMSLOTS */
	uint64_t max_slot_bytes; /* largest slot we make */
	bool sync_regs;		 /* KVM_CAP_SYNC_REGS with the general regs */
	bool manual_protect;	 /* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 */
	bool initially_set;
	bool tsc_offset_attr;
	bool memory_fault_info;
	int kind;		 /* HV_* (kvm.c) */
	char kind_name[128];

	struct kvm_cpuid2 *cpuid;
	uint64_t xcr0;
	bool has_xsave;
	uint32_t xsave_size;	 /* bytes of the XSAVE area (CPUID 0xD) */
	uint64_t host_cr4_bits;	 /* FSGSBASE if the host offers it */

	/* The VMM region: stub page, IDT page, per-vCPU pages. */
	uint8_t *vmm;
	size_t vmm_size;
	uint64_t stub_syscall, stub_ret, stub_exc0;
	uint64_t lstar;	/* the stub's syscall entry, or the trampoline */
	uint32_t stub_exc_stride;
	uint8_t *idt;

	/* Guest page tables: pages from a pool, never freed. */
	uint8_t *pt_pool;
	size_t pt_pool_size, pt_used;
	uint64_t pml4;

	vlock mm_lock;
	struct area *areas;
	size_t nareas, areas_cap;
	struct slot *slots;
	size_t nslots, slots_cap;
	uint8_t *slot_ids; /* 1: in use */
	uint64_t slot_deletes;

	uint64_t brk_start, brk_cur, brk_end; /* emulated brk reservation */

	vlock pool_lock;
	struct vcpu vcpus[MAX_VCPUS];
	int nvcpus;
	struct vthread *threads[MAX_VCPUS];
	int nthreads;

	vlock track_lock;
	struct tregion *tregions;
	size_t ntregions;
	_Atomic int ntracked; /* live regions, for a fast "none" check */
	uint32_t next_tregion_id;
	/* What -v reports at exit about tracking. */
	uint64_t n_collects, n_collect_pages, n_unknown_writes;

	/* What exec and /proc/self/exe need. */
	char exe_path[4096];	 /* the program's path, as executed */
	char fgvm_path[4096];	 /* this binary, for exec */
	char **opt_argv;	 /* fgvm options to pass on exec */
	int opt_argc;
	uint64_t vdso_base;	 /* 0: the guest gets no vDSO */
	bool trace;		 /* --trace: log system calls */
	/* What -v reports at exit. */
	_Atomic uint64_t n_syscalls, n_vmcalls, n_fills, n_signals;
	bool verbose;
	int mainpid;
};

extern struct vm g_vm;

/* ---- vm.c ---- */
_Noreturn int vm_start(const char *path, char *const argv[], char *const envp[],
		       char **opts, int nopts, bool trace, bool verbose);

/* ---- kvm.c ---- */
enum { HV_UNKNOWN, HV_VMX, HV_SVM, HV_PVM };
int kvm_open_and_check(struct vm *vm, bool quiet_caps);
int kvm_create_vm(struct vm *vm);
struct vcpu *vcpu_get(struct vm *vm);
void vcpu_put(struct vm *vm, struct vcpu *c);
/* Set a vCPU up for a new thread; returns the MODE_* to resume it with:
 * a vCPU that ran before stays in ring 0 (PVM allows no change of CPL
 * once a vCPU has run) and starts its thread through the stub. */
int vcpu_setup(struct vm *vm, struct vcpu *c, uint64_t fs_base,
	       uint64_t gs_base);
int slot_set(struct vm *vm, uint32_t id, uint64_t start, uint64_t len,
	     uint32_t flags);
const char *kvm_kind_describe(struct vm *vm);
/* What kind of hypervisor /dev/kvm is, for fgvm info (no VM needed). */
void kvm_detect_kind(int *kind, char *name, size_t len);

/* ---- x86/desc.c: GDT, IDT, TSS, stub ---- */
int x86_vmm_init(struct vm *vm);
void x86_vcpu_page_init(struct vm *vm, struct vcpu *c);
int x86_vcpu_sregs(struct vm *vm, struct vcpu *c, struct kvm_sregs *s,
		   uint64_t fs_base, uint64_t gs_base, bool ring0);
int x86_vcpu_msrs(struct vm *vm, struct vcpu *c);
int x86_cpu_init(struct vm *vm); /* CPUID table, XCR0, XSAVE size */
void x86_set_fsgsbase(struct vm *vm, bool on);

/* ---- x86/paging.c ---- */
int pt_init(struct vm *vm);
void pt_map_vmm(struct vm *vm, uint64_t start, uint64_t end, bool exec,
		bool user);
/* Rewrite the PTEs of [start, end) that exist (filled chunks) from the
 * area table; clear: write them not-present instead. */
void pt_sync(struct vm *vm, uint64_t start, uint64_t end);
void pt_clear(struct vm *vm, uint64_t start, uint64_t end);
/* Fill the chunk of addr from the area table (allocating tables). */
int pt_fill_chunk(struct vm *vm, uint64_t addr);
/* The guest PTE of addr, or 0. */
uint64_t pt_lookup(struct vm *vm, uint64_t addr);

/* ---- mm.c ---- */
int mm_init(struct vm *vm);
struct area *area_find(struct vm *vm, uint64_t addr);
/* The first area that ends after addr (it may start after addr). */
struct area *area_next(struct vm *vm, uint64_t addr);
void area_paint(struct vm *vm, uint64_t start, uint64_t end, int kind,
		int prot, int flags);
bool area_range_is(struct vm *vm, uint64_t start, uint64_t end, int kind,
		   int need_prot);
int slots_cover(struct vm *vm, uint64_t start, uint64_t end);
int mm_host_map(struct vm *vm, size_t len, size_t align, void **out);
void mm_host_unmap(struct vm *vm, void *p, size_t len);
int mm_import_maps(struct vm *vm); /* everything mapped now is HOST */
long mm_mmap(struct vm *vm, uint64_t addr, uint64_t len, int prot, int flags,
	     int fd, long off);
long mm_munmap(struct vm *vm, uint64_t addr, uint64_t len);
long mm_mprotect(struct vm *vm, uint64_t addr, uint64_t len, int prot);
long mm_mremap(struct vm *vm, uint64_t old, uint64_t oldlen, uint64_t newlen,
	       int flags, uint64_t newaddr);
long mm_brk(struct vm *vm, uint64_t addr);
int mm_brk_init(struct vm *vm, uint64_t start, bool reserved);
long mm_madvise(struct vm *vm, uint64_t addr, uint64_t len, int advice);
long mm_shmat(struct vm *vm, int id, uint64_t addr, int flags);
long mm_shmdt(struct vm *vm, uint64_t addr);
/* A guest #PF at addr (error code err): 0 if resolved (resume),
 * else the si_code of the SIGSEGV to deliver. */
int mm_fault(struct vm *vm, uint64_t addr, uint32_t err);
/* Whether the guest may access [p, p+len) (need: PROT_READ/PROT_WRITE). */
bool guest_range_ok(struct vm *vm, uint64_t p, uint64_t len, int need);
/* Copies between host and guest memory that fail with -EFAULT instead of
 * faulting (process_vm_readv/writev on ourselves). */
long guest_read(void *dst, uint64_t src, size_t len);
long guest_write(uint64_t dst, const void *src, size_t len);
long guest_strlen(uint64_t s, size_t max);

/* ---- loader.c ---- */
struct load_result {
	uint64_t entry, sp;
};
int load_program(struct vm *vm, const char *path, char *const argv[],
		 char *const envp[], struct load_result *out, char *err,
		 size_t errlen);

/* ---- thread.c ---- */
struct vthread *vthread_alloc(struct vm *vm);
void vthread_register(struct vm *vm, struct vthread *t);
_Noreturn void vthread_start_main(struct vm *vm, uint64_t entry, uint64_t sp);
long vm_clone(struct vthread *t, uint64_t flags, uint64_t stack,
	      uint64_t ptid, uint64_t ctid, uint64_t tls);
long vm_execve(struct vthread *t, uint64_t path, uint64_t argv, uint64_t envp,
	       int dirfd, int flags);
_Noreturn void vm_thread_exit(struct vthread *t, int status);
int vm_fd_is_ours(int fd);
int vm_rehome_fd(int fd);

/* ---- run.c ---- */
enum {
	MODE_NONE,  /* inside the stub: leave the vCPU as it is */
	MODE_STUB,  /* in the stub after an exit: resume through its frame */
	MODE_USER,  /* at CPL3: resume by setting the registers */
};
_Noreturn void vcpu_loop(struct vthread *t);
void vcpu_get_fpu(struct vthread *t, void *buf);  /* KVM_GET_XSAVE */
int vcpu_set_fpu(struct vthread *t, const void *buf);
void vcpu_fs_gs(struct vthread *t, uint64_t *fs, uint64_t *gs);
int vcpu_set_fs_gs(struct vthread *t, int which, uint64_t base);

/* ---- syscall.c ---- */
/* Returned by a handler that set the guest's registers itself. */
#define SYS_REGS_SET ((long)0x7fffffff0000001L)
void vm_syscall(struct vthread *t);
const char *syscall_name(long nr);

/* ---- sysout.c: what a forwarded system call wrote ---- */
/* Before: -EFAULT if an output buffer is not guest-writable memory. */
long sysout_check(long nr, const uint64_t a[6]);
/* After: report what the call wrote (I2). */
void sysout_mark(long nr, const uint64_t a[6], long ret);

/* ---- signal.c ---- */
int sig_init(struct vm *vm);
struct sighand *sighand_new(struct vm *vm, const struct sighand *copy);
void sighand_put(struct vm *vm, struct sighand *sh);
long sys_rt_sigaction(struct vthread *t, int sig, uint64_t act, uint64_t oact,
		      uint64_t size);
long sys_rt_sigreturn(struct vthread *t);
long sys_sigaltstack(struct vthread *t, uint64_t ss, uint64_t oss);
long sys_rt_sigprocmask(struct vthread *t, int how, uint64_t set,
			uint64_t oset, uint64_t size);
/* Deliver what the host handler queued (before re-entering the guest);
 * a system call that returned -EINTR (t->sys_intr) is restarted or not
 * by the kernel's rules. */
void sig_deliver_pending(struct vthread *t);
/* A synchronous signal from a guest exception. */
void sig_fault(struct vthread *t, int sig, int code, uint64_t addr,
	       int trapno, uint64_t err);
bool sig_pending(struct vthread *t);

/* A host system call made for the program that no signal for the program
 * can overtake (syscall.c): with a signal queued for this thread, or one
 * arriving before the call is in the kernel, it is not made and returns
 * -FGVM_ENOSTART (the kernel's ERESTARTNOINTR, which no program sees).
 * The signal is then delivered and the program's call restarted, as the
 * kernel does for a signal that comes before a call.  host_sig moves a
 * thread caught between fgvm_isys_begin and fgvm_isys_call to
 * fgvm_isys_bail. */
#define FGVM_ENOSTART 513
long vsys_intr(struct vthread *t, long nr, const uint64_t a[6]);
extern const char fgvm_isys_begin[], fgvm_isys_call[], fgvm_isys_bail[];
void sig_reset_for_exec(struct vm *vm);
void sig_after_fork_child(struct vm *vm);

/* ---- x86/sigframe.c ---- */
/* Push a signal frame for sig on the guest stack and point t->u at the
 * handler; 0, or -EFAULT if the stack cannot take it. */
int x86_sigframe_push(struct vthread *t, int sig, const siginfo_t *info,
		      const struct ksigaction *act, uint64_t blocked,
		      bool restart);
/* rt_sigreturn: restore t->u, the FPU state and the mask from the frame. */
long x86_sigframe_pop(struct vthread *t);

/* ---- track.c ---- */
int track_hypercall(struct vthread *t, const uint64_t a[6], long *ret);
/* I2: the host wrote [p, p+len) of guest memory. */
void track_host_write(struct vm *vm, uint64_t p, uint64_t len);
/* The host wrote an unknown amount at p: the tracked region there (if
 * any) is reported dirty whole. */
void track_host_write_unknown(struct vm *vm, uint64_t p);
/* A mapping change over [start, end): tracked regions there are lost. */
void track_remapped(struct vm *vm, uint64_t start, uint64_t end);
void track_slot_created(struct vm *vm, struct slot *s);
void track_after_fork_child(struct vm *vm);

static inline void host_wrote(uint64_t p, uint64_t len)
{
	if (atomic_load_explicit(&g_vm.ntracked, memory_order_acquire))
		track_host_write(&g_vm, p, len);
}

#endif /* FGVM_VMM_H */
