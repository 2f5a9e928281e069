/* kvm.c - /dev/kvm: the capabilities the VM needs (checked up front, with
 * a message that says what is missing), the VM, memslots, and the pool of
 * vCPUs.  KVM never destroys a vCPU before its VM, so vCPUs of exited
 * threads go back to a pool and serve the next thread.
 */
#include "vmm.h"
#include "fg_compat.h"

#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#ifndef KVM_PATH /* overridable to test the error paths */
#define KVM_PATH "/dev/kvm"
#endif

struct vm g_vm;

static const char *kvm_path(void)
{
	return KVM_PATH;
}

int vm_rehome_fd(int fd)
{
	long r = vsys3(SYS_fcntl, fd, F_DUPFD_CLOEXEC, FGVM_FD_FLOOR);

	if (r < 0)
		return (int)r;
	vsys1(SYS_close, fd);
	return (int)r;
}

static long cap(struct vm *vm, long c)
{
	return vsys3(SYS_ioctl, vm->kvm_fd, KVM_CHECK_EXTENSION, c);
}

static long vm_cap(struct vm *vm, long c)
{
	return vsys3(SYS_ioctl, vm->vm_fd, KVM_CHECK_EXTENSION, c);
}

static bool exists(const char *path)
{
	return vsys4(SYS_faccessat, AT_FDCWD, path, F_OK, 0) == 0;
}

void kvm_detect_kind(int *kind, char *name, size_t len)
{
	uint32_t a, b, c, d, sig[3];
	char vendor[13];
	bool nested;

	__cpuid(1, a, b, c, d);
	nested = (c >> 31) & 1;
	vendor[0] = 0;
	if (nested) {
		__cpuid(0x40000000, a, sig[0], sig[1], sig[2]);
		memcpy(vendor, sig, 12);
		vendor[12] = 0;
	}
	/* What the CPU offers decides (kvm_intel may be built in where the
	 * CPU has no VT-x): PVM needs neither VT-x nor SVM. */
	{
		bool vmx = (c >> 5) & 1, svm = false;

		__cpuid(0x80000000, a, b, c, d);
		if (a >= 0x80000001) {
			__cpuid(0x80000001, a, b, c, d);
			svm = (c >> 2) & 1;
		}
		if (exists("/sys/module/kvm_pvm") && !vmx && !svm)
			*kind = HV_PVM;
		else if (svm && exists("/sys/module/kvm_amd"))
			*kind = HV_SVM;
		else if (vmx && exists("/sys/module/kvm_intel"))
			*kind = HV_VMX;
		else if (exists("/sys/module/kvm_pvm"))
			*kind = HV_PVM;
		else
			*kind = HV_UNKNOWN;
	}
	vsnfmt(name, len, "%s%s%s%s",
	       *kind == HV_PVM   ? "PVM (page-table based, shadow paging)"
	       : *kind == HV_SVM ? "AMD SVM"
	       : *kind == HV_VMX ? "Intel VT-x"
				 : "unknown",
	       nested ? ", nested under hypervisor " : "", nested ? vendor : "",
	       !strcmp(vendor, "TCGTCGTCGTCG") ? " (QEMU TCG: emulated, slow)" : "");
}

static void detect_kind(struct vm *vm)
{
	kvm_detect_kind(&vm->kind, vm->kind_name, sizeof vm->kind_name);
}

const char *kvm_kind_describe(struct vm *vm)
{
	return vm->kind_name;
}

/* Required capabilities, kvmtool-style: checked before anything else. */
static const struct {
	long cap;
	const char *name;
	const char *why;
} required[] = {
	{KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY", "memory slots"},
	{KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID", "CPUID for the guest"},
	{KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT",
	 "signals to the program without a race"},
};

int kvm_open_and_check(struct vm *vm, bool quiet)
{
	long fd = vsys4(SYS_openat, AT_FDCWD, kvm_path(), O_RDWR | O_CLOEXEC, 0);
	long r;

	if (fd < 0) {
		if (quiet)
			return (int)fd;
		if (fd == -ENOENT || fd == -ENODEV || fd == -ENXIO)
			vdie(FGVM_EXIT_NOKVM,
			     "%s: no such device: this machine offers no KVM (no "
			     "hardware virtualization, or the kvm module is not loaded). "
			     "Run fgvm where /dev/kvm exists, or inside the nested-KVM "
			     "sandbox: vm/sandbox/run fgvm -- PROG",
			     kvm_path());
		if (fd == -EACCES || fd == -EPERM)
			vdie(FGVM_EXIT_KVMPERM,
			     "%s: permission denied (add your user to group kvm, or run "
			     "as root)",
			     kvm_path());
		vdie(FGVM_EXIT_NOKVM, "%s: cannot open: %s", kvm_path(),
		     verrname((int)-fd));
	}
	vm->kvm_fd = vm_rehome_fd((int)fd);
	r = vsys3(SYS_ioctl, vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (r != KVM_API_VERSION)
		vdie(FGVM_EXIT_KVMCAP, "%s: KVM API version %ld, fgvm needs %d",
		     kvm_path(), r, KVM_API_VERSION);
	for (size_t i = 0; i < sizeof required / sizeof *required; i++)
		if (cap(vm, required[i].cap) <= 0)
			vdie(FGVM_EXIT_KVMCAP, "KVM lacks %s (needed for %s)",
			     required[i].name, required[i].why);
	vm->run_size = (int)vsys3(SYS_ioctl, vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size <= 0)
		vdie(FGVM_EXIT_KVMCAP, "KVM_GET_VCPU_MMAP_SIZE failed");
	detect_kind(vm);
	return 0;
}

int kvm_create_vm(struct vm *vm)
{
	long r = vsys3(SYS_ioctl, vm->kvm_fd, KVM_CREATE_VM, 0);

	if (r < 0)
		return (int)r;
	vm->vm_fd = vm_rehome_fd((int)r);
	vm->nr_slots = (int)vm_cap(vm, KVM_CAP_NR_MEMSLOTS);
	if (vm->nr_slots <= 0)
		vm->nr_slots = 509;
	if (vm->nr_slots > 32764)
		vm->nr_slots = 32764;
	vm->max_slot_bytes = 1UL << 40;
	r = vm_cap(vm, KVM_CAP_SYNC_REGS);
	vm->sync_regs = r > 0 && (r & KVM_SYNC_X86_REGS);
	vm->tsc_offset_attr = vm_cap(vm, KVM_CAP_VCPU_ATTRIBUTES) > 0;
	vm->memory_fault_info = vm_cap(vm, KVM_CAP_MEMORY_FAULT_INFO) > 0;
	r = vm_cap(vm, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	if (r > 0) {
		struct kvm_enable_cap ec;

		memset(&ec, 0, sizeof ec);
		ec.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2;
		ec.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE |
			     (r & KVM_DIRTY_LOG_INITIALLY_SET);
		if (vsys3(SYS_ioctl, vm->vm_fd, KVM_ENABLE_CAP, &ec) == 0) {
			vm->manual_protect = true;
			vm->initially_set = r & KVM_DIRTY_LOG_INITIALLY_SET;
		}
	}
	return 0;
}

int slot_set(struct vm *vm, uint32_t id, uint64_t start, uint64_t len,
	     uint32_t flags)
{
	struct kvm_userspace_memory_region m = {
		.slot = id,
		.flags = flags,
		.guest_phys_addr = start,
		.memory_size = len,
		.userspace_addr = start,
	};
	long r = vsys3(SYS_ioctl, vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &m);

	return r < 0 ? (int)r : 0;
}

static int vcpu_create(struct vm *vm, struct vcpu *c, int id)
{
	long r = vsys3(SYS_ioctl, vm->vm_fd, KVM_CREATE_VCPU, id);

	if (r < 0)
		return (int)r;
	c->fd = vm_rehome_fd((int)r);
	r = vmmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		  c->fd, 0);
	if (vsys_err(r))
		return (int)r;
	c->run = (struct kvm_run *)r;
	c->id = id;
	c->ran = false;
	c->page = vm->vmm + (VMM_PAGE_VCPU0 + (size_t)id) * PAGE_SIZE;
	x86_vcpu_page_init(vm, c);
	return 0;
}

struct vcpu *vcpu_get(struct vm *vm)
{
	struct vcpu *c = NULL;

	vlock_take(&vm->pool_lock);
	for (int i = 0; i < vm->nvcpus; i++)
		if (!vm->vcpus[i].used) {
			c = &vm->vcpus[i];
			break;
		}
	if (!c && vm->nvcpus < MAX_VCPUS) {
		int rc;

		c = &vm->vcpus[vm->nvcpus];
		rc = vcpu_create(vm, c, vm->nvcpus);
		if (rc) {
			vlock_give(&vm->pool_lock);
			vsay("cannot create a vCPU: %s", verrname(-rc));
			return NULL;
		}
		vm->nvcpus++;
	}
	if (c)
		c->used = true;
	vlock_give(&vm->pool_lock);
	return c;
}

void vcpu_put(struct vm *vm, struct vcpu *c)
{
	vlock_take(&vm->pool_lock);
	c->used = false;
	vlock_give(&vm->pool_lock);
}

int vcpu_setup(struct vm *vm, struct vcpu *c, uint64_t fs_base, uint64_t gs_base)
{
	struct kvm_sregs s;
	const char *what;
	long r;

	/* CPUID first: PVM fixes the guest's physical address width from it
	 * (and refuses a change once the vCPU has run: skip it then). */
	what = "KVM_SET_CPUID2";
	if (!c->ran && (r = vsys3(SYS_ioctl, c->fd, KVM_SET_CPUID2, vm->cpuid)) < 0)
		goto fail;
	x86_vcpu_sregs(vm, c, &s, fs_base, gs_base, c->ran);
	what = "KVM_SET_SREGS";
	if ((r = vsys3(SYS_ioctl, c->fd, KVM_SET_SREGS, &s)) < 0)
		goto fail;
	what = "KVM_SET_MSRS";
	if ((r = x86_vcpu_msrs(vm, c)) < 0)
		goto fail;
	if (vm->tsc_offset_attr) {
		/* The guest reads the host's TSC, so the vDSO's clocks agree
		 * with the kernel's. */
		uint64_t zero = 0;
		struct kvm_device_attr at = {
			.group = KVM_VCPU_TSC_CTRL,
			.attr = KVM_VCPU_TSC_OFFSET,
			.addr = (uint64_t)&zero,
		};

		vsys3(SYS_ioctl, c->fd, KVM_SET_DEVICE_ATTR, &at);
	}
	c->run->kvm_valid_regs = vm->sync_regs ? KVM_SYNC_X86_REGS : 0;
	c->run->kvm_dirty_regs = 0;
	c->run->immediate_exit = 0;
	return c->ran ? MODE_STUB : MODE_USER;
fail:
	if (vm->verbose)
		vsay("vCPU %d (%s): %s: %s", c->id, c->ran ? "reused" : "new", what,
		     verrname((int)-r));
	return (int)r;
}
