/* probe.c - which backends the running kernel offers, and which one
 * auto-selection picks.  Each probe exercises the mechanism for real (a
 * page is protected, written and read back) and runs once per process. */
#include "fg_internal.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Auto-selection order: sound with concurrent collection first, then by
 * cost.  kvm exists only under fgvm, which is run for it.  soft-dirty
 * comes after mprotect because its read-and-clear is not atomic with
 * respect to other threads' writes (see backend_softdirty.c). */
static const fg_backend_id preference[] = {
	FG_BACKEND_KVM, FG_BACKEND_UFFD_ASYNC, FG_BACKEND_UFFD_SYNC, FG_BACKEND_MPROTECT,
	FG_BACKEND_SOFTDIRTY, FG_BACKEND_NONE,
};

static struct {
	int rc;
	char why[256];
} probes[FG_BACKEND_COUNT];

static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;
static bool probed[FG_BACKEND_COUNT];

const fg_backend_ops *fg_backend_ops_of(fg_backend_id id)
{
	switch (id) {
	case FG_BACKEND_UFFD_ASYNC:
		return &fg_backend_uffd_async;
	case FG_BACKEND_UFFD_SYNC:
		return &fg_backend_uffd_sync;
	case FG_BACKEND_MPROTECT:
		return &fg_backend_mprotect;
	case FG_BACKEND_SOFTDIRTY:
		return &fg_backend_softdirty;
	case FG_BACKEND_NONE:
		return &fg_backend_none;
	case FG_BACKEND_KVM:
		return &fg_backend_kvm;
	default:
		return NULL;
	}
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
	for (int id = FG_BACKEND_AUTO; id < FG_BACKEND_COUNT; id++) {
		if (name && !strcasecmp(name, fg_backend_name(id))) {
			*out = id;
			return 0;
		}
	}
	return fg_fail(-FG_EBACKENDNAME,
		       "unknown backend \"%s\" (known: auto, uffd-async, "
		       "uffd-sync, mprotect, soft-dirty, none, kvm)",
		       name ? name : "(null)");
}

int fg_backend_probe(fg_backend_id id, char *why, size_t whylen)
{
	const fg_backend_ops *ops = fg_backend_ops_of(id);
	if (!ops) {
		if (why && whylen)
			snprintf(why, whylen, "no such backend (%d)", (int)id);
		return -FG_EUNAVAIL;
	}
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

	for (size_t i = 0; i < sizeof preference / sizeof *preference; i++) {
		char w[256];
		fg_backend_id id = preference[i];

		if (fg_backend_probe(id, w, sizeof w) == 0) {
			snprintf(why + off, whylen - off, "chose %s: %s",
				 fg_backend_name(id), w);
			*out = id;
			return 0;
		}
		if (fg_backend_ops_of(id)->situational)
			continue; /* not a fallback: it never applied here */
		off += (size_t)snprintf(why + off, whylen - off, "%s unavailable (%s); ",
					fg_backend_name(id), w);
		if (off >= whylen)
			off = whylen - 1;
	}
	return -FG_EUNAVAIL; /* unreachable: "none" always works */
}
