/* vm.c - start the VM: KVM, the address space, the program, the first
 * vCPU.  Runs on the main thread with the C library still usable; once
 * vthread_start_main() is called, only sys.h's rules hold (I4).
 */
#include "vmm.h"

#include <errno.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>

_Noreturn int vm_start(const char *path, char *const argv[], char *const envp[],
	     char **opts, int nopts, bool trace, bool verbose)
{
	struct vm *vm = &g_vm;
	struct load_result lr;
	char err[512];
	void *vmm;
	int rc;

	vm->trace = trace;
	vm->verbose = verbose;
	vm->opt_argv = opts;
	vm->opt_argc = nopts;
	vm->mainpid = vgetpid();
	vsnfmt(vm->fgvm_path, sizeof vm->fgvm_path, "/proc/self/exe");

	kvm_open_and_check(vm, false); /* exits with a message on failure */
	rc = x86_cpu_init(vm);
	if (rc)
		vdie(FGVM_EXIT_KVMCAP, "KVM_GET_SUPPORTED_CPUID failed: %s", verrname(-rc));
	rc = kvm_create_vm(vm);
	if (rc)
		vdie(FGVM_EXIT_KVMCAP, "KVM_CREATE_VM failed: %s", verrname(-rc));
	rc = mm_init(vm);
	if (rc == 0)
		rc = mm_import_maps(vm);
	if (rc)
		vdie(FGVM_EXIT_INTERNAL, "cannot set up the address space: %s",
		     verrname(-rc));

	/* The VMM region: stub, IDT, a page per vCPU; whole chunks of its
	 * own, so that filling a guest chunk never touches it. */
	rc = mm_host_map(vm, align_up(VMM_PAGES * PAGE_SIZE, CHUNK_SIZE),
			 CHUNK_SIZE, &vmm);
	if (rc)
		vdie(FGVM_EXIT_INTERNAL, "out of memory for the VM");
	vm->vmm = vmm;
	vm->vmm_size = align_up(VMM_PAGES * PAGE_SIZE, CHUNK_SIZE);
	rc = slots_cover(vm, (uint64_t)vmm, (uint64_t)vmm + vm->vmm_size);
	if (rc == 0)
		rc = pt_init(vm);
	if (rc == 0)
		rc = x86_vmm_init(vm);
	if (rc)
		vdie(FGVM_EXIT_KVMCAP, "cannot set up the guest's memory: %s",
		     verrname(-rc));
	x86_set_fsgsbase(vm, getauxval(AT_HWCAP2) & 2);

	/* The vDSO runs in the guest if KVM can map [vvar] and [vdso];
	 * else the program gets none and glibc makes real system calls. */
	vm->vdso_base = getauxval(AT_SYSINFO_EHDR);
	for (size_t i = 0; i < vm->nareas && vm->vdso_base; i++) {
		struct area *a = &vm->areas[i];

		if (a->kind == AREA_SPECIAL && slots_cover(vm, a->start, a->end)) {
			if (verbose)
				vsay("no vDSO for the program: KVM cannot map %p-%p",
				     (void *)a->start, (void *)a->end);
			vm->vdso_base = 0;
		}
	}

	rc = load_program(vm, path, argv, envp, &lr, err, sizeof err);
	if (rc)
		vdie(rc, "%s", err);
	{
		/* The task's name, as exec would set it (not "exe"). */
		const char *b = strrchr(path, '/');

		vsys5(SYS_prctl, PR_SET_NAME, b ? b + 1 : path, 0, 0, 0);
	}
	if (verbose)
		vsay("running %s in a KVM guest (%s); entry %p", vm->exe_path,
		     vm->kind_name, (void *)lr.entry);
	vthread_start_main(vm, lr.entry, lr.sp);
}
