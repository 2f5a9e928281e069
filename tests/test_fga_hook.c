/* test_fga_hook.c - the generic adapter's hooks: a context-less slot bound
 * to a context calls its function with that context, and only it.
 *
 *   boehm_slots   two adapter instances bound to two real context-less
 *                 slots of stock Boehm GC (Debian's libgc): A to
 *                 GC_set_start_callback (void (*)(void)), B to
 *                 GC_set_on_collection_event (void (*)(GC_EventType)).
 *                 GC_gcollect() N times: A counts N starts and nothing
 *                 else, B N GC_EVENT_START and N GC_EVENT_END; after the
 *                 slots are cleared nobody counts, and after the hooks are
 *                 freed none is live.  A skip with the reason where
 *                 configure found no libgc;
 *   many          1000 hooks, each with its own counter, each entry called
 *                 a different number of times: every counter holds its own
 *                 entry's calls; freed in a shuffled order (the seed is
 *                 printed, FG_SEED=N replays it), the live count follows;
 *   int_arg       fga_hook_int passes the argument (INT_MIN..INT_MAX) and
 *                 the context through; a NULL context is passed as NULL;
 *   bad_args      NULL fn, out or entry: -EINVAL, outputs NULL, nothing
 *                 live; fga_hook_free(NULL) is a no-op.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* config.h defines it in the autotools build */
#endif
#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef FGA_TEST_LIBGC
#include <gc.h>
#include <gc/gc_mark.h> /* GC_set_start_callback */
#endif

#include "fga_hook.h"
#include "oracle.h" /* the seed and random numbers only */

#define TIMEOUT 60

/* An adapter instance, as far as these tests are concerned. */
struct inst {
	const char *name;
	unsigned long starts;	/* collections started */
	unsigned long ends;	/* collections ended */
	unsigned long other;	/* any other event */
	int last;		/* the last event's value */
};

/* Boehm calls it with its allocation lock held: no allocation here. */
static void on_start(void *ctx)
{
	struct inst *in = ctx;

	in->starts++;
}

#ifdef FGA_TEST_LIBGC
static void on_event(void *ctx, int ev)
{
	struct inst *in = ctx;

	in->last = ev;
	if (ev == GC_EVENT_START)
		in->starts++;
	else if (ev == GC_EVENT_END)
		in->ends++;
	else
		in->other++;
}

static void expect_counts(const struct inst *in, unsigned long starts,
			  unsigned long ends, const char *when)
{
	cr_assert_eq(in->starts, starts, "%s: instance %s counted %lu starts, "
		     "expected %lu", when, in->name, in->starts, starts);
	cr_assert_eq(in->ends, ends, "%s: instance %s counted %lu ends, "
		     "expected %lu", when, in->name, in->ends, ends);
}
#endif

Test(fga_hook, boehm_slots, .timeout = TIMEOUT)
{
#ifndef FGA_TEST_LIBGC
	cr_skip_test("built without stock Boehm GC: configure found no gc.h "
		     "or libgc (Debian: apt-get install libgc-dev, then rerun "
		     "./configure)");
#else
	enum { N = 5 };
	struct inst a = {.name = "A"}, b = {.name = "B"}, a0, b0;
	fga_hook *ha, *hb;
	void (*ea)(void);
	void (*eb)(int);
	GC_on_collection_event_proc slot_b;
	GC_word gc0, gc1;
	int err;

	GC_INIT();
	err = fga_hook_void(on_start, &a, &ha, &ea);
	cr_assert_eq(err, 0, "fga_hook_void: %d", err);
	err = fga_hook_int(on_event, &b, &hb, &eb);
	cr_assert_eq(err, 0, "fga_hook_int: %d", err);
	cr_assert_eq(fga_hook_live(), 2, "live hooks: %lu, expected 2",
		     fga_hook_live());

	/* GC_EventType is an int-sized enum: same register, same bits. */
	slot_b = (GC_on_collection_event_proc)eb;
	GC_set_start_callback(ea);
	GC_set_on_collection_event(slot_b);
	cr_assert(GC_get_start_callback() == ea,
		  "Boehm's start slot does not hold A's entry");
	cr_assert(GC_get_on_collection_event() == slot_b,
		  "Boehm's event slot does not hold B's entry");

	/* Nothing allocates in between: each GC_gcollect() is exactly one
	 * full collection, one start callback and one START/END pair. */
	gc0 = GC_get_gc_no();
	for (int i = 0; i < N; i++)
		GC_gcollect();
	gc1 = GC_get_gc_no();
	cr_assert_eq(gc1 - gc0, N, "%d GC_gcollect() calls made %lu collections",
		     N, (unsigned long)(gc1 - gc0));

	expect_counts(&a, N, 0, "bound");
	cr_assert_eq(a.other, 0, "A received %lu events of another kind",
		     a.other);
	expect_counts(&b, N, N, "bound");
	cr_assert_gt(b.other, 0, "B saw no event but START and END (the "
		     "argument is not passed through?)");
	cr_assert_eq(b.last, GC_EVENT_END, "B's last event is %d, expected "
		     "GC_EVENT_END (%d)", b.last, (int)GC_EVENT_END);

	/* Unbound: the runtime no longer calls the entries. */
	GC_set_start_callback(0);
	GC_set_on_collection_event(0);
	a0 = a;
	b0 = b;
	GC_gcollect();
	expect_counts(&a, a0.starts, a0.ends, "unbound");
	expect_counts(&b, b0.starts, b0.ends, "unbound");
	cr_assert_eq(b.other, b0.other, "B counted events after unbinding");

	fga_hook_free(ha);
	fga_hook_free(hb);
	cr_assert_eq(fga_hook_live(), 0, "live hooks after teardown: %lu",
		     fga_hook_live());
#endif
}

Test(fga_hook, many, .timeout = TIMEOUT)
{
	enum { M = 1000 };
	static struct inst in[M];
	static fga_hook *h[M];
	static void (*e[M])(void);
	static unsigned int order[M];
	orc_rng g;
	int err;

	for (int i = 0; i < M; i++) {
		err = fga_hook_void(on_start, &in[i], &h[i], &e[i]);
		cr_assert_eq(err, 0, "hook %d: fga_hook_void: %d", i, err);
		for (int j = 0; j < i; j++)
			cr_assert(e[j] != e[i], "hooks %d and %d share an "
				  "entry", j, i);
	}
	cr_assert_eq(fga_hook_live(), M, "live hooks: %lu, expected %d",
		     fga_hook_live(), M);

	/* Hook i is called i % 7 + 1 times, interleaved with the others. */
	for (int round = 0; round < 7; round++)
		for (int i = 0; i < M; i++)
			if (round <= i % 7)
				e[i]();
	for (int i = 0; i < M; i++)
		cr_assert_eq(in[i].starts, (unsigned long)(i % 7 + 1),
			     "hook %d's context counted %lu calls, expected %d",
			     i, in[i].starts, i % 7 + 1);

	/* Free in a shuffled order; the rest still call their own. */
	orc_rng_init(&g, orc_seed("fga_hook::many"));
	for (int i = 0; i < M; i++)
		order[i] = (unsigned int)i;
	for (int i = M - 1; i > 0; i--) {
		uint64_t j = orc_below(&g, (uint64_t)i + 1);
		unsigned int t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	for (int k = 0; k < M; k++) {
		unsigned int i = order[k], last = order[M - 1];

		fga_hook_free(h[i]);
		cr_assert_eq(fga_hook_live(), (unsigned long)(M - k - 1),
			     "live hooks after %d frees: %lu", k + 1,
			     fga_hook_live());
		if (k == M / 2) {
			unsigned long before = in[last].starts;

			e[last]();
			cr_assert_eq(in[last].starts, before + 1,
				     "hook %u, called after %d others were "
				     "freed, did not count", last, k + 1);
		}
	}
}

struct rec {
	void *ctx;
	int arg;
	unsigned long calls;
};

static struct rec seen;

static void record_int(void *ctx, int arg)
{
	seen.ctx = ctx;
	seen.arg = arg;
	seen.calls++;
}

static void record_void(void *ctx)
{
	seen.ctx = ctx;
	seen.calls++;
}

Test(fga_hook, int_arg, .timeout = TIMEOUT)
{
	static const int vals[] = {0, 1, -1, 42, 0x7f, 0x80, 0xffff,
				   INT_MAX, INT_MIN, INT_MIN + 1};
	int mine, other;
	fga_hook *h, *g, *n;
	void (*e)(int);
	void (*f)(int);
	void (*z)(void);
	int err;

	err = fga_hook_int(record_int, &mine, &h, &e);
	cr_assert_eq(err, 0, "fga_hook_int: %d", err);
	err = fga_hook_int(record_int, &other, &g, &f);
	cr_assert_eq(err, 0, "fga_hook_int: %d", err);
	for (size_t k = 0; k < sizeof(vals) / sizeof(vals[0]); k++) {
		void (*entry)(int) = k % 2 ? f : e;
		void *want = k % 2 ? (void *)&other : (void *)&mine;

		seen = (struct rec){0};
		entry(vals[k]);
		cr_assert_eq(seen.calls, 1, "entry(%d): fn called %lu times",
			     vals[k], seen.calls);
		cr_assert_eq(seen.arg, vals[k], "entry(%d): fn got %d",
			     vals[k], seen.arg);
		cr_assert(seen.ctx == want, "entry(%d): fn got ctx %p, "
			  "expected %p", vals[k], seen.ctx, want);
	}

	err = fga_hook_void(record_void, NULL, &n, &z);
	cr_assert_eq(err, 0, "fga_hook_void with a NULL ctx: %d", err);
	seen = (struct rec){.ctx = &mine};
	z();
	cr_assert(seen.calls == 1 && seen.ctx == NULL,
		  "NULL ctx: fn called %lu times with ctx %p", seen.calls,
		  seen.ctx);

	cr_assert_eq(fga_hook_live(), 3, "live hooks: %lu", fga_hook_live());
	fga_hook_free(h);
	fga_hook_free(g);
	fga_hook_free(n);
	cr_assert_eq(fga_hook_live(), 0, "live hooks: %lu", fga_hook_live());
}

static void never_void(void *ctx)
{
	(void)ctx;
	cr_assert_fail("a hook from a failed call was called");
}

static void never_int(void *ctx, int arg)
{
	(void)ctx;
	(void)arg;
	cr_assert_fail("a hook from a failed call was called");
}

/* One bad call per row: which constructor, and which of fn, out and
 * entry it gets as NULL. */
static const struct bad_call {
	const char *what;
	bool is_int, no_fn, no_out, no_entry;
} bad_calls[] = {
	{"fga_hook_void(NULL fn)", false, true, false, false},
	{"fga_hook_void(NULL out)", false, false, true, false},
	{"fga_hook_void(NULL entry)", false, false, false, true},
	{"fga_hook_int(NULL fn)", true, true, false, false},
	{"fga_hook_int(NULL out)", true, false, true, false},
	{"fga_hook_int(NULL entry)", true, false, false, true},
};

/* Outputs start as garbage: a failed call must set them to NULL. */
#define GARBAGE ((uintptr_t)0x1)

Test(fga_hook, bad_args, .timeout = TIMEOUT)
{
	for (size_t k = 0; k < sizeof(bad_calls) / sizeof(bad_calls[0]); k++) {
		const struct bad_call *c = &bad_calls[k];
		fga_hook *h = (fga_hook *)GARBAGE;
		void (*v)(void) = (void (*)(void))GARBAGE;
		void (*i)(int) = (void (*)(int))GARBAGE;
		fga_hook **out = c->no_out ? NULL : &h;
		int x, err;

		if (c->is_int)
			err = fga_hook_int(c->no_fn ? NULL : never_int, &x, out,
					   c->no_entry ? NULL : &i);
		else
			err = fga_hook_void(c->no_fn ? NULL : never_void, &x,
					    out, c->no_entry ? NULL : &v);
		cr_assert_eq(err, -EINVAL, "%s: %d, expected -EINVAL (%d)",
			     c->what, err, -EINVAL);
		cr_assert(c->no_out || h == NULL, "%s left *out set", c->what);
		cr_assert(c->no_entry || (c->is_int ? i == NULL : v == NULL),
			  "%s left *entry set", c->what);
	}

	fga_hook_free(NULL);
	cr_assert_eq(fga_hook_live(), 0, "failed calls left %lu hooks live",
		     fga_hook_live());
}
