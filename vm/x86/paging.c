/* paging.c - the guest's page tables: 4-level, identity (GVA == GPA).
 *
 * Tables come from a pool that has its own memslot and is never mapped
 * into the guest; they are never freed (a 4 KiB table per 2 MiB chunk the
 * program ever touched).  Leaf entries are written from the area table
 * (mm.c): present for GUEST and SPECIAL pages, user-accessible, writable
 * if PROT_WRITE, no-execute unless PROT_EXEC, with Accessed and Dirty set
 * so that no walker ever writes a table.  Upper levels allow everything;
 * the leaf decides.  Chunks are filled on the guest's first fault in them
 * (pt_fill_chunk); pt_sync and pt_clear touch only chunks already filled.
 * The VMM region's pages are mapped supervisor-only by pt_map_vmm and
 * never rewritten: mm.c keeps that region in whole chunks of its own.
 */
#include "../vmm.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#define PTE_P (1ULL << 0)
#define PTE_W (1ULL << 1)
#define PTE_U (1ULL << 2)
#define PTE_A (1ULL << 5)
#define PTE_D (1ULL << 6)
#define PTE_PS (1ULL << 7)
#define PTE_NX (1ULL << 63)
#define PTE_ADDR 0x000ffffffffff000ULL

#define PT_POOL_SIZE (1UL << 30)

static uint64_t pt_alloc(struct vm *vm)
{
	uint64_t p;

	if (vm->pt_used + PAGE_SIZE > vm->pt_pool_size)
		vdie(FGVM_EXIT_INTERNAL, "guest page-table pool exhausted (%zu bytes)",
		     vm->pt_pool_size);
	p = (uint64_t)vm->pt_pool + vm->pt_used;
	vm->pt_used += PAGE_SIZE;
	return p; /* zero: fresh anonymous memory */
}

int pt_init(struct vm *vm)
{
	void *p;
	int rc = mm_host_map(vm, PT_POOL_SIZE, CHUNK_SIZE, &p);

	if (rc)
		return rc;
	vm->pt_pool = p;
	vm->pt_pool_size = PT_POOL_SIZE;
	vm->pt_used = 0;
	rc = slots_cover(vm, (uint64_t)p, (uint64_t)p + PT_POOL_SIZE);
	if (rc)
		return rc;
	vm->pml4 = pt_alloc(vm);
	return 0;
}

/* The leaf table of addr's chunk, or NULL (create: allocate the path). */
static uint64_t *leaf_table(struct vm *vm, uint64_t addr, bool create)
{
	uint64_t *t = (uint64_t *)vm->pml4;

	for (int shift = 39; shift > 21; shift -= 9) {
		uint64_t *e = &t[(addr >> shift) & 511];

		if (!(*e & PTE_P)) {
			if (!create)
				return NULL;
			*e = pt_alloc(vm) | PTE_P | PTE_W | PTE_U | PTE_A;
		}
		t = (uint64_t *)(*e & PTE_ADDR);
	}
	{
		uint64_t *e = &t[(addr >> 21) & 511];

		if (!(*e & PTE_P)) {
			if (!create)
				return NULL;
			*e = pt_alloc(vm) | PTE_P | PTE_W | PTE_U | PTE_A;
		}
		return (uint64_t *)(*e & PTE_ADDR);
	}
}

static uint64_t pte_of(const struct area *a, uint64_t page)
{
	uint64_t pte;

	if (!a || (a->kind != AREA_GUEST && a->kind != AREA_SPECIAL) ||
	    !(a->prot & (PROT_READ | PROT_WRITE | PROT_EXEC)))
		return 0;
	pte = page | PTE_P | PTE_U | PTE_A | PTE_D;
	if (a->prot & PROT_WRITE)
		pte |= PTE_W;
	if (!(a->prot & PROT_EXEC))
		pte |= PTE_NX;
	return pte;
}

/* Write the leaf entries of [start, end) (one chunk) from the areas. */
static void write_leaves(struct vm *vm, uint64_t *leaf, uint64_t start,
			 uint64_t end)
{
	uint64_t p = start;

	while (p < end) {
		struct area *a = area_next(vm, p);
		uint64_t stop = end;

		if (!a || a->start >= end)
			a = NULL;
		else if (a->start > p)
			stop = a->start, a = NULL;
		else if (a->end < end)
			stop = a->end;
		for (; p < stop; p += PAGE_SIZE)
			__atomic_store_n(&leaf[(p >> 12) & 511], pte_of(a, p),
					 __ATOMIC_RELEASE);
	}
}

int pt_fill_chunk(struct vm *vm, uint64_t addr)
{
	uint64_t c = align_down(addr, CHUNK_SIZE);
	uint64_t *leaf = leaf_table(vm, c, true);

	write_leaves(vm, leaf, c, c + CHUNK_SIZE);
	return 0;
}

void pt_sync(struct vm *vm, uint64_t start, uint64_t end)
{
	for (uint64_t c = align_down(start, CHUNK_SIZE); c < end; c += CHUNK_SIZE) {
		uint64_t *leaf = leaf_table(vm, c, false);
		uint64_t s = c > start ? c : start;
		uint64_t e = c + CHUNK_SIZE < end ? c + CHUNK_SIZE : end;

		if (leaf)
			write_leaves(vm, leaf, s, e);
	}
}

void pt_clear(struct vm *vm, uint64_t start, uint64_t end)
{
	for (uint64_t c = align_down(start, CHUNK_SIZE); c < end; c += CHUNK_SIZE) {
		uint64_t *leaf = leaf_table(vm, c, false);
		uint64_t s = c > start ? c : start;
		uint64_t e = c + CHUNK_SIZE < end ? c + CHUNK_SIZE : end;

		if (!leaf)
			continue;
		for (uint64_t p = s; p < e; p += PAGE_SIZE)
			__atomic_store_n(&leaf[(p >> 12) & 511], 0, __ATOMIC_RELEASE);
	}
}

void pt_map_vmm(struct vm *vm, uint64_t start, uint64_t end, bool exec, bool user)
{
	for (uint64_t p = start; p < end; p += PAGE_SIZE) {
		uint64_t *leaf = leaf_table(vm, p, true);

		leaf[(p >> 12) & 511] = p | PTE_P | PTE_A | PTE_D |
					(user ? PTE_U : PTE_W) | (exec ? 0 : PTE_NX);
	}
}

uint64_t pt_lookup(struct vm *vm, uint64_t addr)
{
	uint64_t *leaf = leaf_table(vm, addr, false);

	return leaf ? __atomic_load_n(&leaf[(addr >> 12) & 511], __ATOMIC_ACQUIRE)
		    : 0;
}
