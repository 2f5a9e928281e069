/* tracker.c - trackers, regions, card conversion and collections.
 *
 * Invariants kept here:
 *   - A region is in exactly one tracker's sorted table and in the process
 *     registry (used to refuse overlaps between trackers) from a successful
 *     fg_register until fg_unregister/fg_tracker_destroy.
 *   - A region that the backend cannot account for any more (unmapped,
 *     replaced, or a backend error during collection) is "lost": from then
 *     on every collection reports it wholly dirty, which is always sound,
 *     and the backend is not asked about it again.
 *   - In a forked child (fg_process_changed: the creator's MADV_WIPEONFORK
 *     word reads differently, or getpid() differs) the backend's
 *     kernel objects belong to the parent: collections report every region
 *     wholly dirty and only region_del/fini(forked=true) reach the backend.
 *   - Cards are derived from page runs at collection time, so the card size
 *     can change between collections without losing a write.
 */
#include "fg_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* fg_io_begin's handles: slot index in 16 bits, generation above. */
#define FG_IO_MAX 65536

/* Process registry of every region of every tracker (overlap checks). */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	uintptr_t base, end;
} *registry;
static size_t registry_n, registry_cap;

static int registry_add(uintptr_t base, uintptr_t end)
{
	int rc = 0;

	pthread_mutex_lock(&registry_lock);
	for (size_t i = 0; i < registry_n; i++) {
		if (base < registry[i].end && registry[i].base < end) {
			rc = fg_fail(-FG_EOVERLAP,
				     "[%#lx, %#lx) overlaps tracked region "
				     "[%#lx, %#lx)",
				     (unsigned long)base, (unsigned long)end,
				     (unsigned long)registry[i].base,
				     (unsigned long)registry[i].end);
			goto out;
		}
	}
	if (registry_n == registry_cap) {
		size_t cap = registry_cap ? registry_cap * 2 : 16;
		void *p = realloc(registry, cap * sizeof *registry);

		if (!p) {
			rc = -ENOMEM;
			goto out;
		}
		registry = p;
		registry_cap = cap;
	}
	registry[registry_n].base = base;
	registry[registry_n].end = end;
	registry_n++;
out:
	pthread_mutex_unlock(&registry_lock);
	return rc;
}

static void registry_del(uintptr_t base)
{
	pthread_mutex_lock(&registry_lock);
	for (size_t i = 0; i < registry_n; i++) {
		if (registry[i].base == base) {
			registry[i] = registry[--registry_n];
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
}

/* Validate a handle and lock its tracker. */
static int enter(const fg_tracker *h, fg_impl **out)
{
	if (!h)
		return fg_fail(-FG_EBADTRACKER, "tracker handle is NULL");
	if (h->sig == FG_SIG_DEAD)
		return fg_fail(-FG_EDESTROYED,
			       "tracker %p was destroyed by fg_tracker_destroy",
			       (const void *)h);
	if (h->sig != FG_SIG_LIVE || !h->impl)
		return fg_fail(-FG_EBADTRACKER, "%p is not a tracker handle",
			       (const void *)h);
	pthread_mutex_lock(&h->impl->lock);
	*out = h->impl;
	return 0;
}

static void leave(fg_impl *t)
{
	pthread_mutex_unlock(&t->lock);
}

static bool forked(const fg_impl *t)
{
	return fg_process_changed(t->epoch);
}

static int check_card(size_t card)
{
	bool pow2 = card && !(card & (card - 1));

	if (card < FG_MIN_CARD || card > (SIZE_MAX >> 2) ||
	    (card < fg_page_size && !pow2) ||
	    (card > fg_page_size && !pow2 && card % fg_page_size))
		return fg_fail(-FG_ECARD,
			       "card size %zu: use a power of two from %d, or a "
			       "multiple of the page size (%zu)",
			       card, FG_MIN_CARD, fg_page_size);
	return 0;
}

/* FG_QUIET: a value that is no flag leaves the warnings on. */
static bool quiet(void)
{
	fg_env_value v;

	return fg_env_get("FG_QUIET", &v) > 0 && v.index;
}

static int choose_backend(const fg_options *o, fg_impl *t)
{
	fg_backend_id id = o->backend;
	const char *source = "the caller";
	fg_env_value v;
	char why[256];
	int rc;

	if (id == FG_BACKEND_AUTO && !(o->flags & FG_OPT_NO_ENV)) {
		rc = fg_env_get("FG_BACKEND", &v);
		if (rc < 0)
			return -FG_EBACKENDNAME;
		if (rc > 0) {
			id = (fg_backend_id)v.index;
			source = "FG_BACKEND";
		}
	}
	if (id == FG_BACKEND_AUTO) {
		rc = fg_backend_choose(&id, t->why, sizeof t->why);
		if (rc)
			return rc;
	} else {
		if (!fg_backend_ops_of(id))
			return fg_fail(-FG_EBACKENDNAME, "backend id %d unknown",
				       (int)id);
		rc = fg_backend_probe(id, why, sizeof why);
		if (rc)
			return fg_fail(rc, "backend %s (forced by %s) is "
					   "unavailable: %s",
				       fg_backend_name(id), source, why);
		snprintf(t->why, sizeof t->why, "forced by %s: %s", source, why);
	}
	t->ops = fg_backend_ops_of(id);
	return 0;
}

/* Whether auto-selection passed over a better backend, the first time in
 * this process (later trackers would only repeat it). */
static bool fell_back(const fg_options *o, const fg_impl *t)
{
	static atomic_bool said;

	if (strncmp(t->why, "chose ", 6) == 0 || strncmp(t->why, "forced", 6) == 0)
		return false;
	if ((o->flags & FG_OPT_NO_ENV) == 0 && quiet())
		return false;
	return !atomic_exchange(&said, true);
}

static int parse_card_env(size_t *card)
{
	fg_env_value v;
	int rc = fg_env_get("FG_CARD", &v);

	if (rc < 0)
		return -FG_ECARD;
	if (rc > 0 && !v.bytes)
		return fg_fail(-FG_ECARD, "FG_CARD=%s: only the adapters "
					  "(fga) choose cards themselves; "
					  "the tracker needs a size",
			       v.text);
	if (rc > 0)
		*card = v.bytes;
	return 0;
}

static int setup_precision(const fg_options *o, fg_impl *t)
{
	bool env_ok = !(o->flags & FG_OPT_NO_ENV);
	unsigned prec = o->precision, twins = o->twin_policy;
	bool digest = twins & FG_TWIN_DIGEST;
	fg_env_value v;
	int rc;

	/* The words' positions are the FG_PRECISION_* and FG_TWIN_* values
	 * (env.c: "page|diff", "hot|sticky|adaptive"). */
	if (env_ok && prec == FG_PRECISION_PAGE) {
		rc = fg_env_get("FG_PRECISION", &v);
		if (rc < 0)
			return rc;
		if (rc > 0)
			prec = v.index ? FG_PRECISION_DIFF : FG_PRECISION_PAGE;
	}
	t->diff.twin_size = fg_page_size; /* update_twin_cap divides by it */
	twins &= ~FG_TWIN_DIGEST;
	if (env_ok && !digest) {
		rc = fg_env_get("FG_TWIN_FORM", &v);
		if (rc < 0)
			return rc;
		if (rc > 0)
			digest = v.index == 1;
	}
	if (env_ok && twins == FG_TWIN_HOT) {
		rc = fg_env_get("FG_TWINS", &v);
		if (rc < 0)
			return rc;
		if (rc > 0)
			twins = v.index;
	}
	t->diff.huge = true;
	if (env_ok) {
		rc = fg_env_get("FG_TWIN_HUGE", &v);
		if (rc < 0)
			return rc;
		if (rc > 0)
			t->diff.huge = v.index;
		rc = fg_env_get("FG_EXEMPT_GROUPED", &v);
		if (rc < 0)
			return rc;
		if (rc > 0)
			t->plain_exempt = !v.index;
		rc = fg_env_get("FG_REPROTECT", &v);
		if (rc < 0)
			return rc;
		if (rc > 0)
			t->reprotect = v.index; /* env.c: "scan|runs|auto" */
	}
	if (prec != FG_PRECISION_PAGE && prec != FG_PRECISION_DIFF)
		return fg_fail(-EINVAL, "precision %u unknown (FG_PRECISION_PAGE "
					"or FG_PRECISION_DIFF)",
			       prec);
	if (twins != FG_TWIN_HOT && twins != FG_TWIN_STICKY &&
	    twins != FG_TWIN_ADAPTIVE)
		return fg_fail(-EINVAL, "twin policy %u unknown (FG_TWIN_HOT, "
					"FG_TWIN_STICKY or FG_TWIN_ADAPTIVE)",
			       twins);
	if (prec != FG_PRECISION_DIFF)
		return 0;
	t->diff.on = true;
	t->diff.digest = digest;
	if (digest) {
		rc = fg_digest_init(&t->diff.key);
		if (rc)
			return rc;
		t->diff.twin_size = fg_page_size / 64 * sizeof(uint64_t);
	}
	t->diff.cap_bytes = o->twin_cap;
	if (o->twin_cap_pct > 100)
		return fg_fail(-EINVAL, "twin_cap_pct %u: a percentage of the "
					"tracked bytes, 1 to 100 (0: 50)",
			       o->twin_cap_pct);
	t->diff.cap_pct = o->twin_cap_pct ? o->twin_cap_pct : 50;
	/* Every twin is validated against the kernel's record (diff.c):
	 * eager and sticky twins need ops->written, hook twins
	 * ops->page_written (fg_backend_check). */
	t->diff.eager = fg_has_cap(t, FG_CAP_COLLECT_TWINS);
	t->diff.sticky = twins != FG_TWIN_HOT && t->diff.eager;
	t->diff.adaptive = twins == FG_TWIN_ADAPTIVE && t->diff.sticky;
	if (fg_has_cap(t, FG_CAP_HOOK_TWINS)) {
		t->diff.user_hook = t->hook;
		t->diff.user_hook_arg = t->hook_arg;
		t->hook = fg_diff_first_write;
		t->hook_arg = t;
	}
	return 0;
}

static void update_twin_cap(fg_impl *t)
{
	size_t cap = t->diff.cap_bytes
			     ? t->diff.cap_bytes
			     : t->st.tracked_bytes / 100 * t->diff.cap_pct;
	/* A cap that holds every tracked page: the twins will be as dense as
	 * the written pages, so they go on huge pages (diff.c, slot_addr). */
	bool huge = t->diff.huge && (t->diff.cap_bytes
					     ? cap >= t->st.tracked_bytes
					     : t->diff.cap_pct >= 100);

	t->diff.cap_pages = cap / t->diff.twin_size;
	for (size_t i = 0; i < t->nregions; i++)
		if (t->regions[i]->twins)
			fg_diff_set_huge(t->regions[i], huge);
}

int fg_tracker_create(const fg_options *opt, fg_tracker **out)
{
	fg_options o = FG_OPTIONS_INIT;
	fg_tracker *h;
	fg_impl *t;
	int rc;

	fg_init_once();
	if (!out)
		return fg_fail(-EINVAL, "fg_tracker_create: out is NULL");
	if (opt)
		memcpy(&o, opt, opt->size < sizeof o ? opt->size : sizeof o);
	o.size = sizeof o;
	if (!o.card_size && !(o.flags & FG_OPT_NO_ENV)) {
		rc = parse_card_env(&o.card_size);
		if (rc)
			return rc;
	}
	if (!o.card_size)
		o.card_size = fg_page_size;
	rc = check_card(o.card_size);
	if (rc)
		return rc;

	h = calloc(1, sizeof *h);
	t = calloc(1, sizeof *t);
	if (!h || !t) {
		rc = -ENOMEM;
		goto err_free;
	}
	pthread_mutex_init(&t->lock, NULL);
	t->pid = getpid();
	t->epoch = fg_process_epoch();
	t->card = o.card_size;
	t->hook = o.hook;
	t->hook_arg = o.hook_arg;
	rc = choose_backend(&o, t);
	if (rc)
		goto err_mutex;
	rc = setup_precision(&o, t);
	if (rc)
		goto err_mutex;
	rc = t->ops->init(t);
	if (rc) {
		fg_fail(rc, "backend %s: %s", t->ops->name,
			fg_last_error_detail());
		goto err_mutex;
	}
	if (o.flags & FG_OPT_VERBOSE)
		fprintf(stderr, "fgvm: tracking with %s (%s)\n", t->ops->name,
			t->why);
	else if (fell_back(&o, t))
		fprintf(stderr, "fgvm: note: fell back to the %s backend "
				"(%s); FG_QUIET=1 silences this\n",
			t->ops->name, t->why);
	t->st.backend = t->ops->id;
	h->impl = t;
	h->sig = FG_SIG_LIVE;
	*out = h;
	return 0;
err_mutex:
	pthread_mutex_destroy(&t->lock);
err_free:
	free(t);
	free(h);
	return rc;
}

static size_t exempt_bytes(const fg_region *r)
{
	return (r->npages + 63) / 64 * sizeof(uint64_t);
}

/* A bit a page of r, zeroed; NULL, with the error set, when the memory
 * is not there.  mmap'd, not malloc'd: a region is freed, and these
 * bits are set, by code that must not malloc (a collector may call
 * fg_set_exempt with other threads stopped). */
static uint64_t *page_bitmap(const fg_region *r, const char *what)
{
	void *m = mmap(NULL, exempt_bytes(r), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m != MAP_FAILED)
		return m;
	fg_fail(-ENOMEM, "%s: no memory for the bitmap of a %zu-page region",
		what, r->npages);
	return NULL;
}

static void region_release(fg_impl *t, fg_region *r, bool child)
{
	if (r->twins)
		fg_diff_unpublish(t, r);
	if (!r->released)
		t->ops->region_del(t, r, child);
	/* No hook can be in flight now: the backend waited for them. */
	fg_diff_region_fini(t, r);
	if (r->exempt)
		munmap(r->exempt, exempt_bytes(r));
	if (r->twinless)
		munmap((void *)atomic_load(&r->twinless), exempt_bytes(r));
	if (r->forced)
		munmap(r->forced, exempt_bytes(r));
	registry_del(r->base);
	free(r);
}

int fg_tracker_destroy(fg_tracker *h)
{
	fg_impl *t;
	bool child;
	int rc = enter(h, &t);

	if (rc)
		return rc;
	child = forked(t);
	for (size_t i = 0; i < t->nregions; i++)
		region_release(t, t->regions[i], child);
	t->ops->fini(t, child);
	free(t->regions);
	fg_runs_free(&t->scratch);
	fg_runs_free(&t->scratch2);
	fg_runs_free(&t->wscan);
	fg_runs_free(&t->wdrop);
	fg_runs_free(&t->eager);
	fg_runs_free(&t->result);
	fg_runs_free(&t->extra);
	fg_runs_free(&t->merged);
	free(t->io);
	if (t->mask)
		munmap(t->mask, t->mask_words * sizeof(uint64_t));
	h->sig = FG_SIG_DEAD;
	h->impl = NULL;
	leave(t);
	pthread_mutex_destroy(&t->lock);
	free(t);
	return 0;
}

fg_backend_id fg_tracker_backend(const fg_tracker *h)
{
	return h && h->sig == FG_SIG_LIVE ? h->impl->ops->id : FG_BACKEND_AUTO;
}

unsigned fg_tracker_caps(const fg_tracker *h)
{
	return h && h->sig == FG_SIG_LIVE ? h->impl->ops->caps & FG_CAP_PUBLIC
					  : 0;
}

const char *fg_tracker_why(const fg_tracker *h)
{
	return h && h->sig == FG_SIG_LIVE ? h->impl->why : "not a live tracker";
}

/* Index of the first region whose base is >= addr. */
static size_t lower_bound(const fg_impl *t, uintptr_t addr)
{
	size_t lo = 0, hi = t->nregions;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (t->regions[mid]->base < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The region containing addr, or NULL. */
static fg_region *find(const fg_impl *t, uintptr_t addr, size_t *idx)
{
	size_t i = lower_bound(t, addr + 1);
	fg_region *r;

	if (!i)
		return NULL;
	r = t->regions[i - 1];
	if (addr - r->base >= r->len)
		return NULL;
	if (idx)
		*idx = i - 1;
	return r;
}

/* The region registered with exactly (a, len). */
static int exact_region(const fg_impl *t, uintptr_t a, size_t len,
			fg_region **out, size_t *idx)
{
	fg_region *r = find(t, a, idx);

	if (!r || r->base != a || r->len != len)
		return fg_fail(-FG_ENOTREG,
			       "[%#lx, +%zu) is not a registered region of this "
			       "tracker (never registered, already "
			       "unregistered, or a different length)",
			       (unsigned long)a, len);
	*out = r;
	return 0;
}

static int check_range(uintptr_t a, size_t len)
{
	if (!len)
		return fg_fail(-FG_EZEROLEN, "region at %#lx has length 0",
			       (unsigned long)a);
	if (a % fg_page_size || len % fg_page_size)
		return fg_fail(-FG_EUNALIGNED,
			       "[%#lx, +%zu): address and length must be "
			       "multiples of the page size (%zu)",
			       (unsigned long)a, len, fg_page_size);
	if (a + len < a)
		return fg_fail(-FG_EUNMAPPED, "[%#lx, +%zu) wraps around",
			       (unsigned long)a, len);
	return 0;
}

/* A memfd or shmem region that can be written other than through it:
 * those writes are not seen unless announced (fg.h).  Said once per
 * process on stderr; FG_QUIET=1 silences it. */
static void warn_shared(const fg_impl *t, uintptr_t a, size_t len)
{
	static atomic_bool said;
	char what[128];

	if (t->shared_ok || atomic_load(&said) || quiet() ||
	    !fg_shared_writers(a, len, what, sizeof what) ||
	    atomic_exchange(&said, true))
		return;
	fprintf(stderr,
		"fgvm: region [%#lx, +%zu) is a shared file and %s: writes "
		"through it are not tracked; announce them with fg_mark_dirty "
		"or fg_io_begin/fg_io_end (fg.h); FG_QUIET=1 silences this\n",
		(unsigned long)a, len, what);
}

void fg_tracker_shared_ok(fg_tracker *h)
{
	if (h && h->sig == FG_SIG_LIVE)
		h->impl->shared_ok = true;
}

int fg_register(fg_tracker *h, void *addr, size_t len)
{
	bool shared_file;
	uintptr_t a = (uintptr_t)addr;
	fg_impl *t;
	fg_region *r = NULL;
	size_t i;
	int rc = enter(h, &t);

	if (rc)
		return rc;
	rc = check_range(a, len);
	if (rc)
		goto out;
	if (forked(t)) {
		rc = fg_fail(-FG_EFORKED, "tracker was created by process %d",
			     (int)t->pid);
		goto out;
	}
	rc = registry_add(a, a + len);
	if (rc)
		goto out;
	rc = fg_check_mapping(a, len,
			      (t->ops->caps & FG_CAP_PRIVATE_FILE) != 0,
			      &shared_file);
	if (rc)
		goto err_registry;
	if (shared_file)
		warn_shared(t, a, len);
	if (t->nregions == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 8;
		fg_region **v = realloc(t->regions, cap * sizeof *v);

		if (!v) {
			rc = -ENOMEM;
			goto err_registry;
		}
		t->regions = v;
		t->cap = cap;
	}
	r = calloc(1, sizeof *r);
	if (!r) {
		rc = -ENOMEM;
		goto err_registry;
	}
	r->base = a;
	r->len = len;
	r->npages = len / fg_page_size;
	/* A page's bits are set in fg_mark_dirty. */
	r->forced = page_bitmap(r, "fg_register");
	if (!r->forced) {
		rc = -ENOMEM;
		goto err_twins;
	}
	if (t->diff.on) {
		rc = fg_diff_region_init(t, r);
		if (!rc)
			rc = fg_diff_publish(t, r);
		if (rc)
			goto err_twins;
	}
	rc = t->ops->region_add(t, r);
	if (rc)
		goto err_twins;
	i = lower_bound(t, a);
	memmove(&t->regions[i + 1], &t->regions[i],
		(t->nregions - i) * sizeof *t->regions);
	t->regions[i] = r;
	t->nregions++;
	t->st.regions++;
	t->st.tracked_bytes += len;
	update_twin_cap(t);
	goto out;
err_twins:
	if (r->twins) {
		fg_diff_unpublish(t, r);
		fg_diff_region_fini(t, r);
	}
	if (r->forced)
		munmap(r->forced, exempt_bytes(r));
	free(r);
err_registry:
	registry_del(a);
out:
	leave(t);
	return rc;
}

int fg_unregister(fg_tracker *h, void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr;
	fg_impl *t;
	fg_region *r = NULL;
	size_t i;
	int rc = enter(h, &t);

	if (rc)
		return rc;
	rc = exact_region(t, a, len, &r, &i);
	if (rc)
		goto out;
	memmove(&t->regions[i], &t->regions[i + 1],
		(t->nregions - i - 1) * sizeof *t->regions);
	t->nregions--;
	t->st.regions--;
	t->st.tracked_bytes -= len;
	update_twin_cap(t);
	region_release(t, r, forked(t));
out:
	leave(t);
	return rc;
}

int fg_region_alloc(fg_tracker *h, size_t len, void **out)
{
	void *p;
	int rc;

	fg_init_once();
	if (!out)
		return fg_fail(-EINVAL, "fg_region_alloc: out is NULL");
	if (!len)
		return fg_fail(-FG_EZEROLEN, "fg_region_alloc: length 0");
	len = (len + fg_page_size - 1) & ~(fg_page_size - 1);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return fg_fail(-errno, "mmap of %zu bytes: %s", len,
			       strerror(errno));
	rc = fg_register(h, p, len);
	if (rc) {
		munmap(p, len);
		return rc;
	}
	*out = p;
	return 0;
}

int fg_region_free(fg_tracker *h, void *addr, size_t len)
{
	int rc;

	fg_init_once();
	len = (len + fg_page_size - 1) & ~(fg_page_size - 1);
	rc = fg_unregister(h, addr, len);
	if (rc)
		return rc;
	return munmap(addr, len) ? -errno : 0;
}

int fg_set_card_size(fg_tracker *h, size_t card)
{
	fg_impl *t;
	int rc = enter(h, &t);

	if (rc)
		return rc;
	rc = check_card(card);
	if (!rc) {
		t->card = card;
		t->peek_gen = 0;
	}
	leave(t);
	return rc;
}

/* enter(), for a call that only a DIFF tracker takes (what: its name). */
static int enter_diff(fg_tracker *h, fg_impl **out, const char *what)
{
	int rc = enter(h, out);

	if (rc)
		return rc;
	if (!(*out)->diff.on) {
		leave(*out);
		return fg_fail(-EINVAL, "%s: the tracker has no DIFF precision",
			       what);
	}
	return 0;
}

int fg_set_twin_cap(fg_tracker *h, size_t bytes, unsigned pct)
{
	fg_impl *t;
	int rc = enter_diff(h, &t, "fg_set_twin_cap");

	if (rc)
		return rc;
	if (pct > 100)
		rc = fg_fail(-EINVAL, "fg_set_twin_cap: pct %u: a percentage "
				      "of the tracked bytes, 1 to 100 (0: 50)",
			     pct);
	if (!rc) {
		t->diff.cap_bytes = bytes;
		t->diff.cap_pct = pct ? pct : 50;
		t->peek_gen = 0;
		update_twin_cap(t);
		fg_diff_shrink(t);
	}
	leave(t);
	return rc;
}

int fg_set_twin_full(fg_tracker *h, unsigned how)
{
	fg_impl *t;
	int rc = enter_diff(h, &t, "fg_set_twin_full");

	if (rc)
		return rc;
	if (how != FG_TWIN_FULL_EVICT && how != FG_TWIN_FULL_DECLINE)
		rc = fg_fail(-EINVAL, "fg_set_twin_full: %u is neither "
				      "FG_TWIN_FULL_EVICT nor "
				      "FG_TWIN_FULL_DECLINE",
			     how);
	else
		t->diff.decline_full = how == FG_TWIN_FULL_DECLINE;
	leave(t);
	return rc;
}

size_t fg_card_size(const fg_tracker *h)
{
	return h && h->sig == FG_SIG_LIVE ? h->impl->card : 0;
}

/* enter(), and the region that holds all of [a, a+len); on failure
 * (-FG_ENOTREG for a range outside every region) the lock is not held. */
static int enter_range(fg_tracker *h, uintptr_t a, size_t len, fg_impl **t,
		       fg_region **r)
{
	int rc = enter(h, t);

	if (rc)
		return rc;
	*r = find(*t, a, NULL);
	if (!len || !*r || a + len - (*r)->base > (*r)->len) {
		leave(*t);
		return fg_fail(-FG_ENOTREG,
			       "[%#lx, +%zu) does not lie within one "
			       "registered region",
			       (unsigned long)a, len);
	}
	/* Named since the peek: FG_COLLECT_AFTER_PEEK collects it. */
	(*r)->clean_at = 0;
	return 0;
}

/* Report the pages of [s, e) (page-aligned, within r) at r's next
 * collection, whatever the backend and the comparison find. */
static void force_pages(fg_region *r, uintptr_t s, uintptr_t e)
{
	for (size_t p = (s - r->base) / fg_page_size;
	     p < (e - r->base) / fg_page_size; p++) {
		uint64_t bit = (uint64_t)1 << (p % 64);

		if (!(r->forced[p / 64] & bit)) {
			r->forced[p / 64] |= bit;
			r->nforced++;
		}
	}
}

/* fg_mark_dirty (force) and fg_expect_writes: un-protect the pages of
 * [addr, addr+len) through the backend, which records them the way a
 * write fault would (uffd: the uffd-wp bit cleared, which PAGEMAP_SCAN
 * reads as written; mprotect, soft-dirty, kvm: their own bits), so that
 * the next collection's report holds them and DIFF compares them with
 * their twins like any written page.  With force they are also reported
 * by the core, whatever the comparison finds: bytes written back to
 * their old values would read clean otherwise.  Where the backend may
 * not act (in a forked child, unless its protection is the process's
 * own) or the region is lost, nothing would record them: forced. */
static int announce(fg_tracker *h, void *addr, size_t len, bool force)
{
	uintptr_t a = (uintptr_t)addr, s, e;
	fg_impl *t;
	fg_region *r;
	int rc = enter_range(h, a, len, &t, &r);
	bool acts;

	if (rc)
		return rc;
	s = a & ~(fg_page_size - 1);
	e = (a + len + fg_page_size - 1) & ~(fg_page_size - 1);
	acts = !r->lost && (!forked(t) || fg_has_cap(t, FG_CAPI_PROCESS_LOCAL));
	if (force || !acts)
		force_pages(r, s, e);
	if (acts && t->ops->mark_dirty)
		rc = t->ops->mark_dirty(t, r, s, e);
	leave(t);
	return rc;
}

int fg_mark_dirty(fg_tracker *h, void *addr, size_t len)
{
	return announce(h, addr, len, true);
}

int fg_expect_writes(fg_tracker *h, void *addr, size_t len)
{
	return announce(h, addr, len, false);
}

/* Make the pages of [a, b) (any bytes) in every region kernel-writable
 * through the backend (mprotect), and with force, report them at the
 * next collection.  Tracker lock held. */
static int io_pages(fg_impl *t, uintptr_t a, uintptr_t b, bool force)
{
	int rc = 0;

	size_t first = lower_bound(t, a + 1);

	for (size_t i = first ? first - 1 : 0; i < t->nregions; i++) {
		fg_region *r = t->regions[i];
		uintptr_t s = a > r->base ? a : r->base;
		uintptr_t e = b < r->base + r->len ? b : r->base + r->len;
		int err = 0;

		if (r->base >= b)
			break;
		if (s >= e)
			continue;
		s &= ~(fg_page_size - 1);
		e = (e + fg_page_size - 1) & ~(fg_page_size - 1);
		r->clean_at = 0;
		if (force)
			force_pages(r, s, e);
		if (!r->lost &&
		    (!forked(t) || fg_has_cap(t, FG_CAPI_PROCESS_LOCAL)) &&
		    t->ops->mark_dirty)
			err = t->ops->mark_dirty(t, r, s, e);
		if (err && !rc)
			rc = err;
	}
	return rc;
}

int fg_io_begin(fg_tracker *h, void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr;
	fg_impl *t;
	size_t i;
	int rc = enter(h, &t);

	if (rc)
		return rc;
	if (!len) {
		rc = fg_fail(-FG_EZEROLEN, "fg_io_begin: length 0");
		goto out;
	}
	if (a + len < a) {
		rc = fg_fail(-EINVAL, "fg_io_begin: [%#lx, +%zu) wraps around",
			     (unsigned long)a, len);
		goto out;
	}
	for (i = 0; i < t->nio && t->io[i].live; i++)
		;
	if (i == t->nio) {
		fg_io_slot *v;

		if (t->nio == FG_IO_MAX) {
			rc = fg_fail(-ENOSPC, "fg_io_begin: %d ranges already "
				     "in flight", FG_IO_MAX);
			goto out;
		}
		v = realloc(t->io, (t->nio + 1) * sizeof *v);
		if (!v) {
			rc = fg_fail(-ENOMEM, "fg_io_begin: out of memory");
			goto out;
		}
		t->io = v;
		t->io[t->nio++] = (fg_io_slot){0};
	}
	/* Kernel-writable first (mprotect un-protects the pages), so that
	 * the program may start the I/O when this returns. */
	rc = io_pages(t, a, a + len, false);
	if (rc)
		goto out;
	t->io_gen = (t->io_gen + 1) & 0x7fff;
	t->io[i] = (fg_io_slot){a, a + len, t->io_gen, true};
	t->io_live++;
	rc = (int)(t->io_gen << 16 | i);
out:
	leave(t);
	return rc;
}

int fg_io_end(fg_tracker *h, int io)
{
	fg_impl *t;
	fg_io_slot *s;
	int rc = enter(h, &t);

	if (rc)
		return rc;
	s = io >= 0 && (size_t)(io & 0xffff) < t->nio ? &t->io[io & 0xffff]
						       : NULL;
	if (!s || !s->live || s->gen != (uint32_t)io >> 16) {
		rc = fg_fail(-EINVAL, "fg_io_end: %d is not an I/O in flight "
			     "(ended already, or not from fg_io_begin on this "
			     "tracker)", io);
		goto out;
	}
	/* Once more after the end: what landed since the last collection. */
	s->live = false;
	t->io_live--;
	rc = io_pages(t, s->start, s->end, true);
out:
	leave(t);
	return rc;
}

int fg_set_exempt(fg_tracker *h, void *addr, size_t len, int exempt)
{
	uintptr_t a = (uintptr_t)addr;
	size_t first, last;
	fg_impl *t;
	fg_region *r;
	int rc = enter_range(h, a, len, &t, &r);

	if (rc)
		return rc;
	/* Only a backend that can leave pages out of a collection uses
	 * it. */
	if (!fg_has_cap(t, FG_CAP_EXEMPT))
		goto out;
	if (!r->exempt) {
		if (!exempt)
			goto out;
		r->exempt = page_bitmap(r, "fg_set_exempt");
		if (!r->exempt) {
			rc = -ENOMEM;
			goto out;
		}
	}
	first = (a - r->base) / fg_page_size;
	last = (a + len - r->base + fg_page_size - 1) / fg_page_size;
	for (size_t p = first; p < last; p++) {
		uint64_t bit = (uint64_t)1 << (p % 64), *w = &r->exempt[p / 64];

		if (exempt && !(*w & bit)) {
			*w |= bit;
			r->nexempt++;
		} else if (!exempt && (*w & bit)) {
			*w &= ~bit;
			r->nexempt--;
		}
	}
out:
	leave(t);
	return rc;
}

int fg_set_twinless(fg_tracker *h, void *addr, size_t len, int twinless)
{
	uintptr_t a = (uintptr_t)addr;
	size_t first, last;
	_Atomic(uint64_t) *bits;
	fg_impl *t;
	fg_region *r;
	int rc = enter_range(h, a, len, &t, &r);

	if (rc)
		return rc;
	if (!r->twins)
		goto out; /* no DIFF: no twins to leave out */
	/* Only callers holding the tracker lock set the pointer. */
	bits = atomic_load_explicit(&r->twinless, memory_order_relaxed);
	if (!bits) {
		if (!twinless)
			goto out;
		bits = (_Atomic(uint64_t) *)page_bitmap(r, "fg_set_twinless");
		if (!bits) {
			rc = -ENOMEM;
			goto out;
		}
		atomic_store_explicit(&r->twinless, bits,
				      memory_order_release);
	}
	/* A word at a time: a collector passes whole blocks, often many
	 * pages long. */
	first = (a - r->base) / fg_page_size;
	last = (a + len - r->base + fg_page_size - 1) / fg_page_size;
	while (first < last) {
		size_t lo = first % 64, n = last - first < 64 - lo
						    ? last - first : 64 - lo;
		uint64_t mask = (n == 64 ? ~(uint64_t)0
					 : ((uint64_t)1 << n) - 1) << lo;

		if (twinless)
			atomic_fetch_or_explicit(&bits[first / 64], mask,
						 memory_order_relaxed);
		else
			atomic_fetch_and_explicit(&bits[first / 64], ~mask,
						  memory_order_relaxed);
		first += n;
	}
out:
	leave(t);
	return rc;
}

static bool page_in(const uint64_t *mask, size_t p)
{
	return (mask[p / 64] >> (p % 64)) & 1;
}

/* Whether pages under I/O in flight must stay un-protected: left out of
 * collections and reported whole (fg_internal.h). */
static bool io_keeps_writable(const fg_impl *t)
{
	return fg_has_cap(t, FG_CAP_PROTECTS);
}

/* The pages of r to leave out of this collection: exempt ones and, see
 * io_keeps_writable, those under I/O in flight; NULL if none. */
static const uint64_t *left_out(fg_impl *t, fg_region *r)
{
	size_t words = (r->npages + 63) / 64;
	uintptr_t end = r->base + r->len;
	bool io = false;

	t->io_unmasked = false;
	if (t->io_live && io_keeps_writable(t))
		for (size_t k = 0; k < t->nio && !io; k++)
			io = t->io[k].live && t->io[k].start < end &&
			     t->io[k].end > r->base;
	if (!io)
		return r->nexempt ? r->exempt : NULL;
	if (t->mask_words < words) {
		void *m = mmap(NULL, words * sizeof(uint64_t),
			       PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (m == MAP_FAILED) {
			t->io_unmasked = true; /* see backend_collect */
			return r->nexempt ? r->exempt : NULL;
		}
		if (t->mask)
			munmap(t->mask, t->mask_words * sizeof(uint64_t));
		t->mask = m;
		t->mask_words = words;
	}
	if (r->nexempt)
		memcpy(t->mask, r->exempt, words * sizeof(uint64_t));
	else
		memset(t->mask, 0, words * sizeof(uint64_t));
	for (size_t k = 0; k < t->nio; k++) {
		fg_io_slot *s = &t->io[k];

		if (!s->live || s->start >= end || s->end <= r->base)
			continue;
		for (size_t p = (s->start > r->base ? s->start - r->base : 0) /
				fg_page_size;
		     p * fg_page_size + r->base < s->end && p < r->npages; p++)
			t->mask[p / 64] |= (uint64_t)1 << (p % 64);
	}
	return t->mask;
}

/* Whether any page of [lo, hi) is in mask (whole words at a time). */
static bool any_in(const uint64_t *mask, size_t lo, size_t hi)
{
	for (; lo < hi && lo % 64; lo++)
		if (page_in(mask, lo))
			return true;
	for (; lo + 64 <= hi; lo += 64)
		if (mask[lo / 64])
			return true;
	for (; lo < hi; lo++)
		if (page_in(mask, lo))
			return true;
	return false;
}

/* Drop the pages of mask from out's runs from first on. */
static int drop_masked(fg_impl *t, fg_region *r, const uint64_t *mask,
		       fg_runs *out, size_t first)
{
	fg_runs *w = &t->wdrop;
	int rc = 0;

	w->n = 0;
	for (size_t k = first; k < out->n && !rc; k++)
		rc = fg_runs_append(w, out->v[k].start, out->v[k].end);
	out->n = first;
	for (size_t k = 0; k < w->n && !rc; k++)
		for (uintptr_t a = w->v[k].start; a < w->v[k].end && !rc;
		     a += fg_page_size)
			if (!page_in(mask, (a - r->base) / fg_page_size))
				rc = fg_runs_push(out, a, a + fg_page_size);
	return rc;
}

/* collect_grouped: one group, [gs, ge) pages of r. */
static int collect_grouped_one(fg_impl *t, fg_region *r,
			       const uint64_t *mask, size_t gs, size_t ge,
			       fg_runs *out)
{
	/* A run may merge into the one before it in out: check that too. */
	size_t first = out->n ? out->n - 1 : 0;
	int rc = t->ops->collect_range(t, r, r->base + gs * fg_page_size,
				       r->base + ge * fg_page_size, out);

	/* Only a group that spans exempt pages can report one (a store
	 * that raced the collection): the others need no filtering. */
	if (!rc && any_in(mask, gs, ge))
		rc = drop_masked(t, r, mask, out, first);
	return rc;
}

/* backend_collect for exempt pages only, on a backend that can read the
 * written pages without re-protecting them and never makes a kernel
 * write fail (uffd-async).  Collecting each run of watched pages between
 * exempt ones costs a system call and, where a page in it was written, a
 * TLB flush for every 2 MiB it spans; exempt blocks are scattered through
 * a collector's heap, so that was hundreds of each per collection.
 * Instead: one scan that re-protects nothing (the written pages, exempt
 * or not), then one collection per group of written watched pages that
 * no written exempt page separates.  A group may span exempt pages that
 * were not written at the scan: protected, they stay so unless written
 * meanwhile, and then they are re-protected (one more fault) and dropped
 * from the report, as exempt pages are.  A watched page written only
 * after the scan, outside every group, stays unprotected and is reported
 * by the next collection: nothing is lost. */
static int collect_grouped(fg_impl *t, fg_region *r, const uint64_t *mask,
			   fg_runs *out)
{
	fg_runs *w = &t->wscan;
	size_t nw, gs = SIZE_MAX, ge = 0;
	int rc;

	w->n = 0;
	rc = t->ops->written(t, r, w);
	nw = w->n;
	for (size_t k = 0; k <= nw && !rc; k++) {
		size_t p0 = k < nw ? (w->v[k].start - r->base) / fg_page_size
				   : r->npages;
		size_t p1 = k < nw ? (w->v[k].end - r->base) / fg_page_size
				   : r->npages + 1;

		for (size_t p = p0; p < p1 && !rc; p++) {
			bool barrier = p >= r->npages || page_in(mask, p);

			if (!barrier) {
				if (gs == SIZE_MAX)
					gs = p;
				ge = p + 1;
				continue;
			}
			if (gs == SIZE_MAX)
				continue;
			rc = collect_grouped_one(t, r, mask, gs, ge, out);
			gs = SIZE_MAX;
		}
	}
	return rc;
}

/* The backend's collection of r, leaving the pages of mask out (NULL:
 * none).  (Without memory for the mask, I/O pages are collected and
 * re-protected: the kernel's next write into them may fail with EFAULT,
 * and add_forced un-protects them again; nothing is lost.) */
static int backend_collect(fg_impl *t, fg_region *r, const uint64_t *mask,
			   fg_runs *out)
{
	size_t p = 0;
	int rc = 0;

	if (!mask)
		return t->ops->collect(t, r, out);
	if (mask == r->exempt && t->ops->written && t->ops->collect_range &&
	    !fg_has_cap(t, FG_CAP_PROTECTS) && !t->plain_exempt)
		return collect_grouped(t, r, mask, out);
	while (p < r->npages && !rc) {
		size_t q;

		/* Skip left-out pages (whole words at a time)... */
		while (p < r->npages) {
			if (p % 64 == 0 && mask[p / 64] == ~(uint64_t)0)
				p += 64;
			else if (page_in(mask, p))
				p++;
			else
				break;
		}
		if (p >= r->npages)
			break;
		/* ...and collect the run of watched ones after them. */
		q = p + 1;
		while (q < r->npages) {
			if (q % 64 == 0 && mask[q / 64] == 0)
				q += 64;
			else if (!page_in(mask, q))
				q++;
			else
				break;
		}
		if (q > r->npages)
			q = r->npages;
		rc = t->ops->collect_range(t, r, r->base + p * fg_page_size,
					   r->base + q * fg_page_size, out);
		p = q;
	}
	return rc;
}

static uint64_t runs_pages(const fg_runs *runs);

/* Give up tracking r: from now on it reads wholly dirty.  The backend
 * lets go of it at once, so that a still-mapped part is not left
 * protected with nobody accounting for its writes. */
static void lose(fg_impl *t, fg_region *r)
{
	r->clean_at = 0;
	if (r->lost)
		return;
	r->lost = true;
	t->st.regions_lost++;
	t->ops->region_del(t, r, forked(t));
	r->released = true;
}

/* DIFF: turn the page runs in t->scratch into changed byte ranges, and
 * twin hot pages (and, FG_TWIN_STICKY, the other written pages) for the
 * epoch that has just begun. */
static int refine(fg_impl *t, fg_region *r, uint32_t closed)
{
	fg_runs tmp;
	uint64_t t0;
	int rc;

	rc = fg_diff_refine(t, r, closed, &t->scratch, &t->scratch2, &t->eager);
	if (rc)
		return rc;
	/* FG_COLLECT_WHOLE_PAGES: the twins' bookkeeping is done, but the
	 * caller gets the written pages, not the changed bytes. */
	if (!t->whole_pages) {
		tmp = t->scratch;
		t->scratch = t->scratch2;
		t->scratch2 = tmp;
	}
	t0 = fg_now_ns();
	rc = fg_diff_take(t, r, closed + 1, &t->eager, &t->scratch2);
	t0 = fg_now_ns() - t0;
	t->diff.diff_ns += t0;
	t->diff.take_ns += t0;
	/* Dropped twins stay resident until trimmed: every 64 collections
	 * (a scan of two bytes per page), or sooner when the region dropped
	 * many (diff.c).  Every 65536 epochs of the region at least,
	 * whatever the tracker's other regions do: trimming also retires
	 * twins before their epoch tags wrap. */
	fg_diff_maybe_trim(t, r, t->st.collections % 64 == 63 ||
				       !(closed & 0xffff));
	return rc;
}

static int cmp_run(const void *a, const void *b)
{
	const fg_run *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* Add to t->scratch (sorted, disjoint) r's forced pages, taking them, and
 * the parts of r under I/O in flight.  No malloc: run vectors are mmap'd
 * and qsort of runs sorts in place. */
static int add_forced(fg_impl *t, fg_region *r, bool peek)
{
	uintptr_t end = r->base + r->len;
	size_t i = 0, j = 0;
	int rc = 0;

	t->extra.n = 0;
	if (r->nforced && peek) {
		rc = fg_bitmap_read((const _Atomic uint64_t *)r->forced,
				    r->npages, r->base, &t->extra);
		if (rc)
			return rc;
	} else if (r->nforced) {
		rc = fg_bitmap_take((_Atomic uint64_t *)r->forced, r->npages,
				    r->base, &t->extra);
		r->nforced = 0;
		if (rc)
			return rc;
	}
	for (size_t k = 0; k < t->nio && t->io_live; k++) {
		fg_io_slot *s = &t->io[k];

		if (s->live && s->start < end && s->end > r->base) {
			uintptr_t a = s->start > r->base ? s->start : r->base;
			uintptr_t b = s->end < end ? s->end : end;

			/* Where the pages were left out of the collection
			 * (io_keeps_writable) they are reported whole: the
			 * program may have written the rest of them too.  If
			 * there was no memory for leaving them out they were
			 * re-protected: un-protect them again. */
			if (io_keeps_writable(t)) {
				a &= ~(fg_page_size - 1);
				b = (b + fg_page_size - 1) & ~(fg_page_size - 1);
				if (t->io_unmasked && !peek)
					rc = t->ops->mark_dirty(t, r, a, b);
			}
			if (!rc)
				rc = fg_runs_append(&t->extra, a, b);
			if (rc)
				return rc;
		}
	}
	if (!t->extra.n)
		return 0;
	if (t->io_live)
		qsort(t->extra.v, t->extra.n, sizeof *t->extra.v, cmp_run);
	/* Merge the two sorted lists into t->merged, then swap. */
	t->merged.n = 0;
	while (!rc && (i < t->scratch.n || j < t->extra.n)) {
		const fg_run *p;

		if (j == t->extra.n ||
		    (i < t->scratch.n && t->scratch.v[i].start <=
						 t->extra.v[j].start))
			p = &t->scratch.v[i++];
		else
			p = &t->extra.v[j++];
		if (t->merged.n && t->merged.v[t->merged.n - 1].end >= p->start) {
			if (p->end > t->merged.v[t->merged.n - 1].end)
				t->merged.v[t->merged.n - 1].end = p->end;
			continue;
		}
		rc = fg_runs_append(&t->merged, p->start, p->end);
	}
	if (!rc) {
		fg_runs tmp = t->scratch;

		t->scratch = t->merged;
		t->merged = tmp;
	}
	return rc;
}

/* Forget r's forced pages (it is reported whole). */
static void drop_forced(fg_region *r)
{
	if (r->nforced)
		memset(r->forced, 0, exempt_bytes(r));
	r->nforced = 0;
}

/* One region's dirty ranges into t->scratch (page runs, or byte ranges
 * with DIFF), with the lost/forked rules; *pages: pages the backend
 * reported; mapped: known mapped already (group_mapped). */
static int collect_region(fg_impl *t, fg_region *r, uint64_t *pages,
			  bool mapped)
{
	int rc = 0;

	t->scratch.n = 0;
	*pages = 0;
	if (!r->lost && !forked(t)) {
		/* The epoch moves before the backend re-protects: see diff.c. */
		uint32_t closed = r->twins ? fg_diff_begin_epoch(r) : 0;

		if (!fg_has_cap(t, FG_CAPI_SEES_UNMAP) && !mapped &&
		    !fg_range_mapped(r->base, r->len))
			rc = fg_fail(-FG_EUNMAPPED,
				     "region [%#lx, +%zu) was unmapped",
				     (unsigned long)r->base, r->len);
		else
			rc = backend_collect(t, r, left_out(t, r),
					     &t->scratch);
		if (!rc) {
			*pages = runs_pages(&t->scratch);
			if (r->twins)
				rc = refine(t, r, closed);
		}
		if (!rc)
			rc = add_forced(t, r, false);
		/* Whatever the backend had taken is covered by reporting
		 * the whole region, now and from now on. */
		if (rc)
			lose(t, r);
	}
	if (r->lost || forked(t)) {
		drop_forced(r);
		t->scratch.n = 0;
		*pages = r->npages;
		return fg_runs_push(&t->scratch, r->base, r->base + r->len);
	}
	return 0;
}

/* FG_COLLECT_PEEK: collect_region, resetting nothing.  A region found
 * unmapped reads whole now and is lost at the next collection. */
static int peek_region(fg_impl *t, fg_region *r, uint64_t *pages,
		       bool mapped)
{
	int rc = 0;

	t->scratch.n = 0;
	*pages = 0;
	if (!r->lost && !forked(t)) {
		if (!fg_has_cap(t, FG_CAPI_SEES_UNMAP) && !mapped &&
		    !fg_range_mapped(r->base, r->len))
			rc = -FG_EUNMAPPED;
		else
			rc = t->ops->written(t, r, &t->scratch);
		if (!rc) {
			*pages = runs_pages(&t->scratch);
			if (r->twins && !t->whole_pages) {
				rc = fg_diff_peek(
					t, r, &t->scratch, &t->scratch2);
				if (!rc) {
					fg_runs tmp = t->scratch;

					t->scratch = t->scratch2;
					t->scratch2 = tmp;
				}
			}
		}
		if (!rc)
			rc = add_forced(t, r, true);
		if (!rc) {
			/* Nothing to report, and no twins whose state a
			 * collection would move: FG_COLLECT_AFTER_PEEK may
			 * leave it alone. */
			r->clean_at = !t->scratch.n && !r->twins ? t->gen : 0;
			return 0;
		}
	}
	r->clean_at = 0;
	t->scratch.n = 0;
	*pages = r->npages;
	return fg_runs_push(&t->scratch, r->base, r->base + r->len);
}

static uint64_t runs_pages(const fg_runs *runs)
{
	uint64_t pages = 0;

	for (size_t i = 0; i < runs->n; i++)
		pages += (runs->v[i].end - runs->v[i].start) / fg_page_size;
	return pages;
}

static void account(fg_impl *t, uint64_t pages, uint64_t t0)
{
	uint64_t dt = fg_now_ns() - t0;

	t->st.collections++;
	t->st.dirty_pages += pages;
	t->st.last_dirty_pages = pages;
	t->st.collect_ns_total += dt;
	t->st.collect_ns_last = dt;
	if (dt > t->st.collect_ns_max)
		t->st.collect_ns_max = dt;
}

/* Card-aligned bounds of a dirty range, clipped to its region. */
static void card_bounds(const fg_impl *t, const fg_region *r, const fg_run *p,
			uintptr_t *s, uintptr_t *e)
{
	uintptr_t c = t->card;

	*s = p->start - p->start % c;
	*e = p->end % c ? p->end + (c - p->end % c) : p->end;
	if (*s < r->base)
		*s = r->base;
	if (*e > r->base + r->len)
		*e = r->base + r->len;
}

/* Whether region i is known mapped without asking for it alone.  The
 * regions are asked in groups of neighbours, one system call (msync) for
 * the span from a group's first to its last, true where no page of that
 * span is unmapped.  A group ends before a region with a hole before it
 * (hole_before: a gap between it and the region before it found
 * unmapped), or after MAP_GROUP regions.  A group whose span has a hole
 * has each region asked by itself (collect_region, peek_region), and its
 * gaps asked once each, so that the next collection groups around the
 * holes.  A group is asked when its first region comes up in a
 * collection (t->map_group_end: where the current group ends; 0 at the
 * start of a collection). */
#define MAP_GROUP 64

static bool group_mapped(fg_impl *t, size_t i)
{
	size_t j;
	const fg_region *a, *b;

	if (fg_has_cap(t, FG_CAPI_SEES_UNMAP))
		return false;
	if (i < t->map_group_end)
		return t->map_group_ok;
	for (j = i + 1; j < t->nregions && j - i < MAP_GROUP &&
			!t->regions[j]->hole_before;
	     j++)
		;
	t->map_group_end = j;
	t->map_group_ok = false;
	if (j - i < 2)
		return false;
	a = t->regions[i];
	b = t->regions[j - 1];
	if (fg_range_mapped(a->base, b->base + b->len - a->base)) {
		t->map_group_ok = true;
		return true;
	}
	/* Learn where the holes are, once: in a gap, or a region itself
	 * unmapped (it then stands alone, and its group does not fail again
	 * at every collection while it stays registered). */
	for (size_t k = i; k < j; k++) {
		fg_region *r = t->regions[k];

		if (k > i) {
			const fg_region *p = t->regions[k - 1];
			uintptr_t gap = p->base + p->len;

			if (r->base > gap && !fg_range_mapped(gap, r->base - gap))
				r->hole_before = true;
		}
		if (!fg_range_mapped(r->base, r->len)) {
			r->hole_before = true;
			if (k + 1 < t->nregions)
				t->regions[k + 1]->hole_before = true;
		}
	}
	return false;
}

/* FG_COLLECT_AFTER_PEEK: r may be left alone (fg.h).  The peek must be
 * the call just before this collection (t->gen not moved since), with
 * nothing voiding it (t->peek_gen), and have found r clean, with no call
 * naming r since (r->clean_at, reset by enter_range, io_pages, lose). */
static bool peek_clean(const fg_impl *t, const fg_region *r, uint64_t gen)
{
	return t->peek_gen && t->peek_gen == gen && r->clean_at == gen &&
	       !r->lost && !r->twins && !forked(t);
}

int fg_collect(fg_tracker *h, fg_iter *it)
{
	return fg_collect_flags(h, it, 0);
}

int fg_collect_flags(fg_tracker *h, fg_iter *it, unsigned flags)
{
	uint64_t t0 = fg_now_ns(), pages = 0;
	fg_impl *t;
	int rc;

	const unsigned known = FG_COLLECT_WHOLE_PAGES | FG_COLLECT_PEEK |
			       FG_COLLECT_AFTER_PEEK;
	bool peek = (flags & FG_COLLECT_PEEK) != 0;
	bool after = !peek && (flags & FG_COLLECT_AFTER_PEEK) != 0;
	uint64_t before;

	if (flags & ~known)
		return fg_fail(-EINVAL, "fg_collect_flags: unknown flags %#x",
			       flags & ~known);
	rc = enter(h, &t);
	if (rc)
		return rc;
	if (peek && !fg_has_cap(t, FG_CAP_PEEK)) {
		rc = fg_fail(-ENOTSUP,
			     "FG_COLLECT_PEEK: backend %s cannot read what was "
			     "written without resetting it (no FG_CAP_PEEK)",
			     t->ops->name);
		leave(t);
		return rc;
	}
	t->whole_pages = (flags & FG_COLLECT_WHOLE_PAGES) != 0;
	before = t->gen++;
	t->result.n = 0;
	t->map_group_end = 0;
	size_t i;
	for (i = 0; i < t->nregions && !rc; i++) {
		fg_region *r = t->regions[i];
		size_t floor = t->result.n;

		uint64_t rp = 0;

		if (after && peek_clean(t, r, before)) {
			t->st.peek_skipped++;
			t->scratch.n = 0;
			continue;
		}
		bool mapped = group_mapped(t, i);

		rc = peek ? peek_region(t, r, &rp, mapped)
			  : collect_region(t, r, &rp, mapped);
		pages += rp;
		for (size_t j = 0; j < t->scratch.n && !rc; j++) {
			uintptr_t s, e;

			card_bounds(t, r, &t->scratch.v[j], &s, &e);
			/* Merge within this region only. */
			if (t->result.n > floor &&
			    t->result.v[t->result.n - 1].end >= s) {
				if (e > t->result.v[t->result.n - 1].end)
					t->result.v[t->result.n - 1].end = e;
				continue;
			}
			rc = fg_runs_append(&t->result, s, e);
		}
	}
	if (rc && !peek) {
		/* The caller gets no ranges, yet regions 0..i-1 were reset:
		 * report them wholly dirty from now on rather than lose them. */
		for (size_t k = 0; k < i; k++)
			lose(t, t->regions[k]);
		t->result.n = 0;
	} else if (rc) {
		t->result.n = 0; /* nothing was reset */
	}
	t->peek_gen = peek && !rc ? t->gen : 0;
	if (peek)
		t->st.peeks++;
	else
		account(t, pages, t0);
	if (it) {
		it->tracker = h;
		it->gen = t->gen;
		it->pos = 0;
	}
	if (!rc)
		rc = t->result.n > INT_MAX ? INT_MAX : (int)t->result.n;
	leave(t);
	return rc;
}

int fg_iter_next_n(fg_iter *it, fg_range *out, size_t max)
{
	fg_impl *t;
	int rc;

	if (!it)
		return fg_fail(-EINVAL, "iterator is NULL");
	if (!out && max)
		return fg_fail(-EINVAL, "range array is NULL");
	if (max > INT_MAX)
		max = INT_MAX;
	rc = enter(it->tracker, &t);
	if (rc)
		return rc;
	if (it->gen != t->gen) {
		rc = fg_fail(-FG_ESTALE,
			     "iterator of collection %llu, tracker is at %llu",
			     (unsigned long long)it->gen,
			     (unsigned long long)t->gen);
	} else {
		while ((size_t)rc < max && it->pos < t->result.n) {
			fg_run *p = &t->result.v[it->pos++];

			out[rc].addr = (void *)p->start;
			out[rc].len = p->end - p->start;
			rc++;
		}
	}
	leave(t);
	return rc;
}

int fg_iter_next(fg_iter *it, fg_range *out)
{
	return fg_iter_next_n(it, out, 1);
}

size_t fg_bitmap_bits(const fg_tracker *h, const void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr, c;

	if (!h || h->sig != FG_SIG_LIVE)
		return 0;
	c = h->impl->card;
	return ((a + len + c - 1) / c) - a / c;
}

int fg_collect_bitmap(fg_tracker *h, void *addr, size_t len, uint64_t *bits,
		      size_t nbits)
{
	uint64_t t0 = fg_now_ns(), cards = 0;
	uintptr_t a = (uintptr_t)addr, c, first;
	fg_impl *t;
	fg_region *r = NULL;
	size_t need;
	int rc = enter(h, &t);

	if (rc)
		return rc;
	rc = exact_region(t, a, len, &r, NULL);
	if (rc)
		goto out;
	c = t->card;
	first = a / c;
	need = (a + len + c - 1) / c - first;
	if (!bits || nbits < need) {
		rc = fg_fail(-FG_EBITMAP,
			     "%zu bits given, %zu cards of %zu bytes needed",
			     nbits, need, (size_t)c);
		goto out;
	}
	uint64_t rp;

	t->whole_pages = false;
	t->peek_gen = 0;
	rc = collect_region(t, r, &rp, false);
	if (rc)
		goto out;
	memset(bits, 0, (nbits + 63) / 64 * sizeof *bits);
	for (size_t j = 0; j < t->scratch.n; j++) {
		uintptr_t s, e;

		card_bounds(t, r, &t->scratch.v[j], &s, &e);
		for (uintptr_t k = s / c; k < (e + c - 1) / c; k++) {
			uint64_t *w = &bits[(k - first) / 64];
			uint64_t m = UINT64_C(1) << ((k - first) % 64);

			/* Two page runs may share a card larger than a page. */
			cards += !(*w & m);
			*w |= m;
		}
	}
	account(t, rp, t0);
	rc = cards > INT_MAX ? INT_MAX : (int)cards;
out:
	leave(t);
	return rc;
}

int fg_get_stats(fg_tracker *h, fg_stats *out)
{
	fg_impl *t;
	fg_stats s;
	int rc;

	if (!out)
		return fg_fail(-EINVAL, "fg_get_stats: out is NULL");
	rc = enter(h, &t);
	if (rc)
		return rc;
	s = t->st;
	s.faults = atomic_load(&t->ctr.faults);
	s.hook_calls = atomic_load(&t->ctr.hook_calls);
	s.twins_hook = atomic_load(&t->diff.twins_hook);
	s.twins_eager = t->diff.twins_eager;
	s.twins_invalid = t->diff.twins_invalid +
			  atomic_load(&t->diff.twins_hook_invalid);
	s.pages_diffed = t->diff.pages_diffed;
	s.pages_whole = t->diff.pages_whole;
	s.twin_bytes =
		(uint64_t)atomic_load(&t->diff.twins_ready) * t->diff.twin_size;
	s.diff_ns = t->diff.diff_ns;
	s.twins_sticky = t->diff.twins_sticky;
	s.twins_refreshed = t->diff.twins_refreshed;
	s.twins_declined = t->diff.twins_declined;
	s.twins_evicted = t->diff.twins_evicted;
	s.twins_aged = t->diff.twins_aged;
	s.twin_cap_bytes =
		t->diff.on ? t->diff.cap_pages * t->diff.twin_size : 0;
	s.peeks = t->st.peeks;
	s.peek_skipped = t->st.peek_skipped;
	s.lines_changed = t->diff.lines_changed;
	s.take_ns = t->diff.take_ns;
	leave(t);
	s.size = out->size && out->size < sizeof s ? out->size : sizeof s;
	memcpy(out, &s, s.size);
	return 0;
}
