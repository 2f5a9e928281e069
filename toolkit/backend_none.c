/* backend_none.c - tracks nothing and reports every page dirty.  Always
 * available and always sound (MPS's "protan" in spirit): the fallback when
 * the kernel offers no usable mechanism, and the reference a benchmark
 * compares precision against. */
#include "fg_internal.h"

static int none_probe(char *why, size_t whylen)
{
	(void)why;
	(void)whylen;
	return 0;
}

static int none_init(fg_impl *t)
{
	(void)t;
	return 0;
}

static void none_fini(fg_impl *t, bool forked)
{
	(void)t;
	(void)forked;
}

static int none_region_add(fg_impl *t, fg_region *r)
{
	(void)t;
	(void)r;
	return 0;
}

static void none_region_del(fg_impl *t, fg_region *r, bool forked)
{
	(void)t;
	(void)r;
	(void)forked;
}

static int none_collect(fg_impl *t, fg_region *r, fg_runs *out)
{
	(void)t;
	return fg_runs_push(out, r->base, r->base + r->len);
}

const fg_backend_ops fg_backend_none = {
	.id = FG_BACKEND_NONE,
	.name = "none",
	.caps = FG_CAP_KERNEL_WRITES | FG_CAP_CONCURRENT | FG_CAP_PEEK |
		FG_CAP_PRIVATE_FILE,
	.probe = none_probe,
	.init = none_init,
	.fini = none_fini,
	.region_add = none_region_add,
	.region_del = none_region_del,
	.collect = none_collect,
	.written = none_collect, /* everything, always: resets nothing */
	.mark_dirty = NULL,
};
