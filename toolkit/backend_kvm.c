/* backend_kvm.c - the program runs under fgvm, the process-level VM:
 * pages come from KVM's dirty log (nested or shadow page tables), asked
 * for with vmcalls (fg_vmcall.h).
 *
 * The VM reports every write to a registered region: the program's own
 * stores through KVM's log, and the writes it or the kernel makes on the
 * program's behalf (forwarded system calls, signal frames) through its
 * own record, so kernel writes are seen as with uffd-async.  No fault
 * reaches the program, and no signal handler or thread is needed.
 * Available only under fgvm: run natively, the vmcall fails with ENOSYS.
 */
#include "fg_internal.h"
#include "fg_vmcall.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kvm_region {
	long id;
	uint64_t *bits;
	uint64_t *marked; /* fg_mark_dirty's pages, for the next collection */
	size_t nwords;
	bool fresh;	  /* bits hold batch_gen's answer */
	uint64_t batch_gen;
	long batch_result;
};

/* A collection asks for every region in one vmcall (an exit costs tens
 * of microseconds on PVM): the first region's collect does it for all,
 * the others find their bitmap there.  Answers not used (a region no
 * longer collected) stay in bits and are reported at its next collect:
 * nothing taken from the VM is dropped. */
struct kvm_state {
	uint64_t batch_gen;
	struct fg_vmcall_collect *reqs;
	size_t cap;
};

static int kvm_probe(char *why, size_t whylen)
{
	struct fg_vmcall_info in;
	long r;

	memset(&in, 0, sizeof in);
	in.size = sizeof in;
	r = fg_vmcall(FG_VMCALL_PROBE, (long)&in, 0, 0, 0);
	if (r != FG_VMCALL_MAGIC) {
		snprintf(why, whylen, "not running under fgvm (run the program "
				      "as: fgvm -- PROG)");
		return -FG_EUNAVAIL;
	}
	if (!(in.flags & FG_VMCALL_F_DIRTY_LOG)) {
		snprintf(why, whylen, "fgvm on %s offers no dirty log: %s",
			 in.hypervisor, in.mechanism);
		return -FG_EUNAVAIL;
	}
	snprintf(why, whylen, "under fgvm: %s on %s", in.mechanism, in.hypervisor);
	return 0;
}

static int kvm_init(fg_impl *t)
{
	struct kvm_state *s = calloc(1, sizeof *s);

	if (!s)
		return -ENOMEM;
	s->batch_gen = UINT64_MAX;
	t->bpriv = s;
	return 0;
}

static void kvm_fini(fg_impl *t, bool forked)
{
	struct kvm_state *s = t->bpriv;

	(void)forked;
	if (s)
		free(s->reqs);
	free(s);
	t->bpriv = NULL;
}

static void batch(fg_impl *t)
{
	struct kvm_state *s = t->bpriv;
	size_t n = 0;

	s->batch_gen = t->gen;
	if (s->cap < t->nregions) {
		struct fg_vmcall_collect *q =
			realloc(s->reqs, t->nregions * sizeof *q);

		if (!q)
			return; /* each region then asks for itself */
		s->reqs = q;
		s->cap = t->nregions;
	}
	for (size_t i = 0; i < t->nregions && n < FG_VMCALL_MANY_MAX; i++) {
		fg_region *r = t->regions[i];
		struct kvm_region *k = r->priv;

		if (!k || r->lost || r->released || k->fresh)
			continue;
		s->reqs[n++] = (struct fg_vmcall_collect){k->id, (uint64_t)k->bits,
							  k->nwords * 8, 0};
	}
	if (n < 2 || fg_vmcall(FG_VMCALL_COLLECT_MANY, (long)s->reqs, (long)n, 0, 0))
		return;
	for (size_t i = 0, j = 0; i < t->nregions && j < n; i++) {
		fg_region *r = t->regions[i];
		struct kvm_region *k = r->priv;

		if (!k || r->lost || r->released || k->fresh || s->reqs[j].id != k->id)
			continue;
		k->fresh = true;
		k->batch_gen = t->gen;
		k->batch_result = s->reqs[j++].result;
	}
}

static int kvm_region_add(fg_impl *t, fg_region *r)
{
	struct kvm_region *k = calloc(1, sizeof *k);
	long id;

	(void)t;
	if (!k)
		return -ENOMEM;
	k->nwords = (r->npages + 63) / 64;
	k->bits = calloc(k->nwords, 8);
	k->marked = calloc(k->nwords, 8);
	if (!k->bits || !k->marked) {
		free(k->bits);
		free(k->marked);
		free(k);
		return -ENOMEM;
	}
	id = fg_vmcall(FG_VMCALL_REGISTER, (long)r->base, (long)r->len, 0, 0);
	if (id < 0) {
		free(k->bits);
		free(k->marked);
		free(k);
		if (id == -EFAULT)
			return fg_fail(-FG_EMEMKIND, "fgvm refused %p+%zu: not the "
						     "program's writable memory",
				       (void *)r->base, r->len);
		return fg_fail((int)id, "fgvm: registering %p+%zu: %s",
			       (void *)r->base, r->len, strerror((int)-id));
	}
	k->id = id;
	r->priv = k;
	return 0;
}

static void kvm_region_del(fg_impl *t, fg_region *r, bool forked)
{
	struct kvm_region *k = r->priv;

	(void)t;
	if (!k)
		return;
	/* A forked child has a VM of its own that never knew the region. */
	if (!forked)
		fg_vmcall(FG_VMCALL_UNREGISTER, k->id, 0, 0, 0);
	free(k->bits);
	free(k->marked);
	free(k);
	r->priv = NULL;
}

static int kvm_collect(fg_impl *t, fg_region *r, fg_runs *out)
{
	struct kvm_region *k = r->priv;
	long n;
	int rc;

	if (((struct kvm_state *)t->bpriv)->batch_gen != t->gen)
		batch(t);
	if (k->fresh && k->batch_gen != t->gen) {
		/* An answer an earlier collection did not use: keep its
		 * pages for this one, and ask again (it is too old to cover
		 * the writes since). */
		for (size_t w = 0; w < k->nwords && k->batch_result >= 0; w++)
			k->marked[w] |= k->bits[w];
		k->fresh = false;
	}
	if (k->fresh) {
		k->fresh = false;
		n = k->batch_result;
	} else {
		n = fg_vmcall(FG_VMCALL_COLLECT, k->id, (long)k->bits,
			      (long)(k->nwords * 8), 0);
	}
	if (n == -ESTALE)
		return -FG_EUNMAPPED;
	if (n < 0)
		return fg_fail((int)n, "fgvm: collecting %p+%zu: %s", (void *)r->base,
			       r->len, strerror((int)-n));
	/* Each page reported was written at least once: count one fault,
	 * as uffd-async does (the faults themselves are KVM's). */
	atomic_fetch_add(&t->ctr.faults, (uint64_t)n);
	for (size_t w = 0; w < k->nwords; w++) {
		uint64_t v = k->bits[w] | k->marked[w];

		k->marked[w] = 0;

		while (v) {
			size_t i = w * 64 + (size_t)__builtin_ctzll(v);
			uintptr_t p = r->base + i * fg_page_size;

			v &= v - 1;
			rc = fg_runs_push(out, p, p + fg_page_size);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* The kernel may always write tracked memory under fgvm: marking only
 * has to make the next collection report the pages, which the toolkit
 * can do by itself, with no vmcall (an exit to the VM costs tens of
 * microseconds on PVM; Boehm's adapter marks every new heap block).
 * Calls come with the tracker's lock held, as collections do. */
static int kvm_mark_dirty(fg_impl *t, fg_region *r, uintptr_t start,
			  uintptr_t end)
{
	struct kvm_region *k = r->priv;

	(void)t;
	for (uintptr_t p = start; p < end; p += fg_page_size) {
		size_t i = (p - r->base) / fg_page_size;

		k->marked[i / 64] |= UINT64_C(1) << (i % 64);
	}
	return 0;
}

const fg_backend_ops fg_backend_kvm = {
	.id = FG_BACKEND_KVM,
	.name = "kvm",
	.caps = FG_CAP_TRACKS | FG_CAP_KERNEL_WRITES | FG_CAP_CONCURRENT |
		FG_CAP_NEEDS_FGVM | FG_CAPI_SEES_UNMAP,
	.probe = kvm_probe,
	.init = kvm_init,
	.fini = kvm_fini,
	.region_add = kvm_region_add,
	.region_del = kvm_region_del,
	.collect = kvm_collect,
	.mark_dirty = kvm_mark_dirty,
};
