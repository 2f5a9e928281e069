/* desc.c - the x86-64 machine the guest sees: CPUID and XCR0, the VMM
 * region (ring-0 stub, IDT), each vCPU's GDT/TSS/ring-0 stack, control
 * registers, segments and the system-call MSRs.
 *
 * The guest starts and stays in 64-bit mode: the program at CPL3 with
 * Linux's user selectors (0x33, 0x2b), the stub at CPL0 with 0x10/0x18.
 * CPUID and XCR0 are what the host itself runs with (as far as KVM
 * supports it), so the program's ld.so picks the same string and memory
 * functions (AVX2 and so on) as the host's did.
 */
#include "../vmm.h"

#include <cpuid.h>
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

extern const uint8_t fgvm_stub_start[], fgvm_stub_end[];
extern const uint8_t fgvm_stub_syscall[], fgvm_stub_ret[], fgvm_stub_exc[];
extern const uint8_t fgvm_tramp_start[], fgvm_tramp_end[];

#define MSR_EFER 0xc0000080
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SFMASK 0xc0000084
#define MSR_FS_BASE 0xc0000100
#define MSR_GS_BASE 0xc0000101
#define MSR_KERNEL_GS_BASE 0xc0000102
#define MSR_TSC 0x10

#define EFER_SCE (1u << 0)
#define EFER_LME (1u << 8)
#define EFER_LMA (1u << 10)
#define EFER_NXE (1u << 11)

#define CR0_PE (1u << 0)
#define CR0_MP (1u << 1)
#define CR0_ET (1u << 4)
#define CR0_NE (1u << 5)
#define CR0_WP (1u << 16)
#define CR0_AM (1u << 18)
#define CR0_PG (1u << 31)

#define CR4_PAE (1u << 5)
#define CR4_OSFXSR (1u << 9)
#define CR4_OSXMMEXCPT (1u << 10)
#define CR4_FSGSBASE (1u << 16)
#define CR4_OSXSAVE (1u << 18)

/* Flags a syscall clears (Linux: TF DF IF IOPL AC NT). */
#define SFMASK_BITS 0x47700

static uint64_t xgetbv0(void)
{
	uint32_t lo, hi;

	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((uint64_t)hi << 32) | lo;
}

static struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t fn,
					   uint32_t idx)
{
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn &&
		    (!(c->entries[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) ||
		     c->entries[i].index == idx))
			return &c->entries[i];
	return NULL;
}

int x86_cpu_init(struct vm *vm)
{
	uint32_t n = 256, a, b, c, d;
	struct kvm_cpuid2 *cp;
	struct kvm_cpuid_entry2 *e;
	long r;
	void *mem;

	for (;;) {
		size_t sz = sizeof *cp + n * sizeof(struct kvm_cpuid_entry2);

		r = vmmap(NULL, align_up(sz, PAGE_SIZE), PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (vsys_err(r))
			return (int)r;
		mem = (void *)r;
		cp = mem;
		cp->nent = n;
		r = vsys3(SYS_ioctl, vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, cp);
		if (r == -E2BIG && n < 4096) {
			vsys2(SYS_munmap, mem, align_up(sz, PAGE_SIZE));
			n *= 2;
			continue;
		}
		if (r < 0)
			return (int)r;
		break;
	}

	/* What the host runs with: the guest sees no feature the host does
	 * not use itself (leaf 1 and 7 are masked with the host's CPUID). */
	__cpuid(1, a, b, c, d);
	vm->has_xsave = (c >> 26) & 1;
	if ((e = cpuid_find(cp, 1, 0))) {
		e->ecx &= c | (1u << 31); /* keep the hypervisor bit */
		e->edx &= d;
		if (vm->has_xsave)
			e->ecx |= 1u << 27; /* OSXSAVE: the guest's CR4 has it */
	}
	if ((e = cpuid_find(cp, 7, 0))) {
		__cpuid_count(7, 0, a, b, c, d);
		e->ebx &= b;
		e->ecx &= c;
		e->edx &= d;
	}
	vm->xcr0 = 0;
	vm->xsave_size = 512 + 64;
	if (vm->has_xsave) {
		uint64_t host = xgetbv0(), supported = 0;

		if ((e = cpuid_find(cp, 0xd, 0)))
			supported = e->eax | ((uint64_t)e->edx << 32);
		vm->xcr0 = host & supported;
		if (!(vm->xcr0 & 1))
			vm->xcr0 |= 1;
		/* The XSAVE area's size for exactly these components. */
		for (int i = 2; i < 63; i++) {
			if (!(vm->xcr0 >> i & 1))
				continue;
			__cpuid_count(0xd, (uint32_t)i, a, b, c, d);
			if (a && b + a > vm->xsave_size)
				vm->xsave_size = b + a;
		}
		/* Leaf 0xD subleaf 0 EBX: size for the enabled features. */
		if ((e = cpuid_find(cp, 0xd, 0)))
			e->ebx = vm->xsave_size;
	}
	/* GPA == HVA needs as many guest-physical address bits as there are
	 * user virtual ones.  PVM's shadow paging takes what the CPUID says
	 * (KVM's default there is 36); nested or extended page tables are
	 * bound by the hardware's. */
	if ((e = cpuid_find(cp, 0x80000008, 0)) && (e->eax & 0xff) < 47) {
		if (vm->kind == HV_PVM)
			e->eax = (e->eax & ~0xffu) | 48;
		else
			vdie(FGVM_EXIT_KVMCAP,
			     "KVM offers %u guest-physical address bits; fgvm maps "
			     "guest-physical = host-virtual and needs 47 (the host CPU's "
			     "MAXPHYADDR is too small)",
			     e->eax & 0xff);
	}
	vm->cpuid = cp;
	return 0;
}

/* Set CR4.FSGSBASE when the host kernel allows the instructions at CPL3
 * (it reports HWCAP2_FSGSBASE), as the program's code may use them. */
void x86_set_fsgsbase(struct vm *vm, bool on)
{
	vm->host_cr4_bits = on ? CR4_FSGSBASE : 0;
}

static void idt_gate(uint8_t *idt, int vec, uint64_t off, int dpl)
{
	uint8_t *g = idt + vec * 16;
	uint64_t w0, w1;

	w0 = (off & 0xffff) | ((uint64_t)SEL_KCODE << 16) |
	     ((uint64_t)(0x8e | (dpl << 5)) << 40) |
	     ((off >> 16 & 0xffff) << 48);
	w1 = off >> 32;
	memcpy(g, &w0, 8);
	memcpy(g + 8, &w1, 8);
}

int x86_vmm_init(struct vm *vm)
{
	size_t stub_len = (size_t)(fgvm_stub_end - fgvm_stub_start);

	if (stub_len > PAGE_SIZE)
		return -EINVAL;
	memcpy(vm->vmm, fgvm_stub_start, stub_len);
	vm->stub_syscall =
		(uint64_t)vm->vmm + (uint64_t)(fgvm_stub_syscall - fgvm_stub_start);
	vm->stub_ret = (uint64_t)vm->vmm + (uint64_t)(fgvm_stub_ret - fgvm_stub_start);
	vm->stub_exc0 = (uint64_t)vm->vmm + (uint64_t)(fgvm_stub_exc - fgvm_stub_start);
	vm->stub_exc_stride = 16;

	memcpy(vm->vmm + VMM_PAGE_TRAMP * PAGE_SIZE, fgvm_tramp_start,
	       (size_t)(fgvm_tramp_end - fgvm_tramp_start));
	/* PVM jumps to LSTAR without entering ring 0: there, syscalls go
	 * through the trampoline's #UD. */
	vm->lstar = vm->kind == HV_PVM
			    ? (uint64_t)vm->vmm + VMM_PAGE_TRAMP * PAGE_SIZE
			    : vm->stub_syscall;

	vm->idt = vm->vmm + VMM_PAGE_IDT * PAGE_SIZE;
	for (int v = 0; v < IDT_VECTORS; v++) {
		/* int3 and into may be used from CPL3 (DPL 3), as on Linux;
		 * `int N` for anything else raises #GP (the gates above 31
		 * point at #GP's stub, never reached). */
		int dpl = v == 3 || v == 4 ? 3 : 0;
		uint64_t to = vm->stub_exc0 + (uint64_t)(v < 32 ? v : 13) * vm->stub_exc_stride;

		idt_gate(vm->idt, v, to, dpl);
	}
	/* The whole region now, while no other thread runs: later vCPUs
	 * only fill their page (page tables change under mm_lock only). */
	pt_map_vmm(vm, (uint64_t)vm->vmm, (uint64_t)vm->vmm + PAGE_SIZE, true, false);
	pt_map_vmm(vm, (uint64_t)vm->idt, (uint64_t)vm->idt + PAGE_SIZE, false, false);
	pt_map_vmm(vm, (uint64_t)vm->vmm + VMM_PAGE_TRAMP * PAGE_SIZE,
		   (uint64_t)vm->vmm + (VMM_PAGE_TRAMP + 1) * PAGE_SIZE, true, true);
	pt_map_vmm(vm, (uint64_t)vm->vmm + VMM_PAGE_VCPU0 * PAGE_SIZE,
		   (uint64_t)vm->vmm + vm->vmm_size, false, false);
	return 0;
}

void x86_vcpu_page_init(struct vm *vm, struct vcpu *c)
{
	uint8_t *p = c->page;
	uint64_t *gdt = (uint64_t *)(p + VCPU_GDT_OFF);
	uint64_t tss = (uint64_t)(p + VCPU_TSS_OFF);
	uint64_t rsp0 = (uint64_t)(p + VCPU_KSTACK_TOP);

	memset(p, 0, PAGE_SIZE);
	gdt[SEL_KCODE >> 3] = 0x00af9b000000ffffULL;
	gdt[SEL_KDATA >> 3] = 0x00cf93000000ffffULL;
	gdt[SEL_UDATA >> 3] = 0x00cff3000000ffffULL;
	gdt[SEL_UCODE >> 3] = 0x00affb000000ffffULL;
	gdt[SEL_TSS >> 3] = 0x67 | ((tss & 0xffffff) << 16) | (0x89ULL << 40) |
			    ((tss >> 24 & 0xff) << 56);
	gdt[(SEL_TSS >> 3) + 1] = tss >> 32;
	memcpy(p + VCPU_TSS_OFF + 4, &rsp0, 8);
	*(uint16_t *)(p + VCPU_TSS_OFF + 102) = 104; /* no I/O bitmap */
	(void)vm;
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, int dpl,
		bool code64, uint64_t base)
{
	memset(s, 0, sizeof *s);
	s->selector = sel;
	s->base = base;
	s->limit = 0xffffffff;
	s->type = type;
	s->present = 1;
	s->dpl = (uint8_t)dpl;
	s->s = 1;
	s->l = code64;
	s->db = !code64;
	s->g = 1;
}

int x86_vcpu_sregs(struct vm *vm, struct vcpu *c, struct kvm_sregs *s,
		   uint64_t fs_base, uint64_t gs_base, bool ring0)
{
	uint64_t tss = (uint64_t)(c->page + VCPU_TSS_OFF);

	memset(s, 0, sizeof *s);
	if (ring0) {
		seg(&s->cs, SEL_KCODE, 0xb, 0, true, 0);
		seg(&s->ss, SEL_KDATA, 0x3, 0, false, 0);
	} else {
		seg(&s->cs, SEL_UCODE, 0xb, 3, true, 0);
		seg(&s->ss, SEL_UDATA, 0x3, 3, false, 0);
	}
	seg(&s->ds, 0, 0x3, 3, false, 0);
	seg(&s->es, 0, 0x3, 3, false, 0);
	seg(&s->fs, 0, 0x3, 3, false, fs_base);
	seg(&s->gs, 0, 0x3, 3, false, gs_base);
	s->tr.selector = SEL_TSS;
	s->tr.base = tss;
	s->tr.limit = 0x67;
	s->tr.type = 0xb;
	s->tr.present = 1;
	s->ldt.type = 2;
	s->ldt.unusable = 1;
	s->gdt.base = (uint64_t)(c->page + VCPU_GDT_OFF);
	s->gdt.limit = 8 * ((SEL_TSS >> 3) + 2) - 1;
	s->idt.base = (uint64_t)vm->idt;
	s->idt.limit = IDT_VECTORS * 16 - 1;
	s->cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG;
	s->cr3 = vm->pml4;
	s->cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT | vm->host_cr4_bits |
		 (vm->has_xsave ? CR4_OSXSAVE : 0);
	s->efer = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;
	return 0;
}

int x86_vcpu_msrs(struct vm *vm, struct vcpu *c)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e[8];
	} m;
	int n = 0;
	long r;

	memset(&m, 0, sizeof m);
	m.e[n].index = MSR_STAR;
	m.e[n++].data = (uint64_t)SEL_KCODE << 32;
	m.e[n].index = MSR_LSTAR;
	m.e[n++].data = vm->lstar;
	m.e[n].index = MSR_CSTAR;
	m.e[n++].data = vm->lstar;
	m.e[n].index = MSR_SFMASK;
	m.e[n++].data = SFMASK_BITS;
	m.e[n].index = MSR_KERNEL_GS_BASE;
	m.e[n++].data = 0;
	m.h.nmsrs = (uint32_t)n;
	r = vsys3(SYS_ioctl, c->fd, KVM_SET_MSRS, &m);
	if (r < 0)
		return (int)r;
	if (r != n) {
		if (vm->verbose)
			vsay("KVM_SET_MSRS stopped at MSR %x", m.e[r].index);
		return -EINVAL;
	}
	if (vm->has_xsave) {
		struct kvm_xcrs x;

		memset(&x, 0, sizeof x);
		x.nr_xcrs = 1;
		x.xcrs[0].xcr = 0;
		x.xcrs[0].value = vm->xcr0;
		r = vsys3(SYS_ioctl, c->fd, KVM_SET_XCRS, &x);
		if (r < 0)
			return (int)r;
	}
	return 0;
}
