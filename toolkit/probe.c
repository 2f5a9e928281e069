/* probe.c - which backends the running kernel offers, and which one
 * auto-selection picks.  Each probe exercises the mechanism for real (a
 * page is protected, written and read back) and runs once per process. */
#include "fg_internal.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The registry, in auto-selection order: sound with concurrent collection
 * first, then by cost.  kvm exists only under fgvm, which is run for it.
 * soft-dirty comes after mprotect because its read-and-clear is not atomic
 * with respect to other threads' writes (see backend_softdirty.c).  A new
 * backend: its backend_*.c, a line here, a line in Makefile.am (and its
 * id in fg.h). */
extern const fg_backend_ops fg_backend_kvm, fg_backend_uffd_async,
	fg_backend_uffd_sync, fg_backend_mprotect, fg_backend_softdirty,
	fg_backend_none;
static const fg_backend_ops *const registry[] = {
	&fg_backend_kvm,
	&fg_backend_uffd_async,
	&fg_backend_uffd_sync,
	&fg_backend_mprotect,
	&fg_backend_softdirty,
	&fg_backend_none,
};
#define NREGISTRY (sizeof registry / sizeof *registry)

static struct {
	int rc;
	char why[256];
} probes[FG_BACKEND_COUNT];

static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;
static bool probed[FG_BACKEND_COUNT];

const fg_backend_ops *fg_backend_ops_of(fg_backend_id id)
{
	for (size_t i = 0; i < NREGISTRY; i++)
		if (registry[i]->id == id)
			return registry[i];
	return NULL;
}

/* Whether ops provides what its caps promise (fg_internal.h). */
static bool backend_check(const fg_backend_ops *ops)
{
	unsigned c = ops->caps;

	return ops->name && ops->probe && ops->init && ops->fini &&
	       ops->region_add && ops->region_del && ops->collect &&
	       (!(c & FG_CAP_PROTECTS) ||
		(ops->collect_range && ops->mark_dirty)) &&
	       (!(c & FG_CAP_EXEMPT) || ops->collect_range) &&
	       (!(c & FG_CAP_HOOK_TWINS) ||
		((c & FG_CAP_WRITE_HOOK) && ops->page_written)) &&
	       (!(c & FG_CAP_COLLECT_TWINS) ||
		(ops->written && ops->mark_dirty)) &&
	       (!(c & FG_CAP_PEEK) || ops->written);
}

unsigned fg_backend_caps(fg_backend_id id)
{
	const fg_backend_ops *ops = fg_backend_ops_of(id);

	return ops ? ops->caps & FG_CAP_PUBLIC : 0;
}

const char *fg_backend_name(fg_backend_id id)
{
	const fg_backend_ops *ops = fg_backend_ops_of(id);

	if (id == FG_BACKEND_AUTO)
		return "auto";
	return ops ? ops->name : "?";
}

int fg_backend_from_name(const char *name, fg_backend_id *out)
{
	char known[256] = "auto";
	size_t off = strlen(known);

	if (name && !strcasecmp(name, "auto")) {
		*out = FG_BACKEND_AUTO;
		return 0;
	}
	for (size_t i = 0; i < NREGISTRY; i++) {
		if (name && !strcasecmp(name, registry[i]->name)) {
			*out = registry[i]->id;
			return 0;
		}
		off += (size_t)snprintf(known + off, sizeof known - off, ", %s",
					registry[i]->name);
		if (off >= sizeof known)
			off = sizeof known - 1;
	}
	return fg_fail(-FG_EBACKENDNAME, "unknown backend \"%s\" (known: %s)",
		       name ? name : "(null)", known);
}

int fg_backend_probe(fg_backend_id id, char *why, size_t whylen)
{
	const fg_backend_ops *ops = fg_backend_ops_of(id);
	if (!ops) {
		if (why && whylen)
			snprintf(why, whylen, "no such backend (%d)", (int)id);
		return -FG_EUNAVAIL;
	}
	assert(backend_check(ops));
	fg_init_once();
	pthread_mutex_lock(&probe_lock);
	if (!probed[id]) {
		char saved[512];

		/* A probe's failures are not the caller's: keep its detail. */
		snprintf(saved, sizeof saved, "%s", fg_last_error_detail());
		probes[id].why[0] = 0;
		probes[id].rc = ops->probe(probes[id].why, sizeof probes[id].why);
		if (probes[id].rc)
			probes[id].rc = -FG_EUNAVAIL;
		else if (!probes[id].why[0])
			snprintf(probes[id].why, sizeof probes[id].why,
				 "always available");
		fg_fail(0, "%s", saved);
		probed[id] = true;
	}
	pthread_mutex_unlock(&probe_lock);
	if (why && whylen)
		snprintf(why, whylen, "%s", probes[id].why);
	return probes[id].rc;
}

int fg_backend_choose(fg_backend_id *out, char *why, size_t whylen)
{
	size_t off = 0;

	for (size_t i = 0; i < NREGISTRY; i++) {
		char w[256];
		fg_backend_id id = registry[i]->id;

		if (fg_backend_probe(id, w, sizeof w) == 0) {
			snprintf(why + off, whylen - off, "chose %s: %s",
				 fg_backend_name(id), w);
			*out = id;
			return 0;
		}
		if (registry[i]->caps & FG_CAP_NEEDS_FGVM)
			continue; /* not a fallback: it never applied here */
		off += (size_t)snprintf(why + off, whylen - off, "%s unavailable (%s); ",
					fg_backend_name(id), w);
		if (off >= whylen)
			off = whylen - 1;
	}
	return -FG_EUNAVAIL; /* unreachable: "none" always works */
}
