/* test_racket_suite.c - Racket BC 3m with its write barrier from the
 * toolkit (adapters/racket), against the stock mprotect barrier of the
 * same binary.
 *
 *   <program>_<backend>
 *       each GC stress program of tests/racket/ (a large old generation
 *       updated sparsely; hash tables, weak boxes, ephemerons and wills;
 *       Racket threads and futures writing old vectors; places, each with
 *       its own collector, exchanging large messages) runs on the stock
 *       barrier and with FG_RACKET=1 FG_BACKEND=<backend>: both must exit
 *       with status 0 and print the same bytes (each program also checks
 *       its own data and fails loudly when a store was lost), and the
 *       port must say it tracked the collectors (FG_RACKET_STATS);
 *   <program>_check
 *       the same with FG_RACKET_CHECK=abort on uffd-async: the adapter
 *       copies the tracked heap at every retrieval and aborts at the first
 *       changed line that reads clean;
 *   <program>_incremental
 *       the check's run with PLT_INCREMENTAL_GC=1 in both: the collector
 *       then leaves pages with back pointers into its gen 1/2 un-protected,
 *       and the port must have stopped watching some of them (patch 0003,
 *       fga_blocks_unwatched) and watched them again;
 *   no_barrier
 *       the write barrier is gone: under strace, old-mutable.rkt makes
 *       scores of write-protecting mprotect calls on anonymous memory
 *       (the GC's pages) and takes hundreds of SIGSEGVs on stock, and
 *       none of either with the port (the loader's read-only calls, on
 *       file mappings, are not the barrier's and are not counted);
 *   raco_make_zo
 *       `raco make` of the lazy language (184 modules: racket/base and
 *       the rest of its dependencies, compiled anew under
 *       PLTCOMPILEDROOTS) on the stock barrier and on the port: the
 *       compiled trees are the same bytes;
 *   raco_test_<package>
 *       a package's own tests (raco test: lazy, algol60, racklog's
 *       run-all, datalog's main and racket, eopl's chapters 1 and 2)
 *       pass on the stock barrier and with the port on every backend
 *       (uffd-async, uffd-sync, mprotect; a missing one is said), with
 *       the same count.
 *
 * Where things are (make's check-local sets them; the defaults are
 * relative to this binary, in the build tree):
 *   FG_RACKET_BIN     racket3m    ../adapters/racket/inst/bin/racket
 *   FG_RACKET_PROGS   programs    the source tree's tests/racket
 * A missing racket is a skip saying how to build it (make racket); a
 * missing backend is a skip with the probe's reason.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "child.h"
#include "fg.h"
#include "oracle.h"

#define TEST_TIMEOUT 900
#define RUN_LIMIT 300
#define TAIL 2000

static char racket[PATH_MAX], progs[PATH_MAX];

static void setup(void)
{
	ch_path_from_env(racket, "FG_RACKET_BIN",
			 "../adapters/racket/inst/bin/racket");
	ch_path_from_env(progs, "FG_RACKET_PROGS", "racket");
	ch_mkdir("racket");
}

TestSuite(racket_suite, .init = setup, .fini = ch_rmdir,
	  .timeout = TEST_TIMEOUT);


static void require_racket(void)
{
	if (access(racket, X_OK) != 0)
		cr_skip_test("no racket3m at %s (build it with `make racket`, "
			     "about 10 minutes on two cores)",
			     racket);
}

struct run {
	int status;
	double secs;
	char *out, *err;
};

static struct run run(const char *const *argv, const char *const *set,
		      const char *tag)
{
	static const char *const unset[] = {"FG_", "PLT_", NULL};
	char **env = ch_env(set, unset);
	char out[PATH_MAX], err[PATH_MAX + 8];
	struct ch_io io;
	struct ch_run c;
	struct run r;

	snprintf(out, sizeof out, "%s", ch_path(tag));
	snprintf(err, sizeof err, "%s.err", out);
	io = (struct ch_io){.dir = ch_dir, .out = out, .err = err};
	c = ch_run(argv, env, &io, RUN_LIMIT);
	free(env);
	r.status = c.status;
	r.secs = c.secs;
	r.out = ch_slurp(out, NULL, false);
	r.err = ch_slurp(err, NULL, false);
	return r;
}

static void assert_ok(struct run r, const char *what)
{
	char how[128];

	cr_assert(r.status == 0, "%s: %s\nstdout:\n%s\nstderr:\n%s", what,
		  ch_how(r.status, RUN_LIMIT, how, sizeof how), ch_tail(r.out, TAIL),
		  ch_tail(r.err, TAIL));
}

/* The largest "N unwatched by the collector (M watched again)" in the
 * port's summaries: N, and M in *again. */
static unsigned long most_unwatched(const char *err, unsigned long *again)
{
	unsigned long best = 0;

	*again = 0;
	for (const char *p = err; (p = strstr(p, " unwatched by the collector ("));
	     p++) {
		const char *q = p;
		unsigned long n, m;

		while (q > err && q[-1] >= '0' && q[-1] <= '9')
			q--;
		if (sscanf(q, "%lu unwatched by the collector (%lu", &n, &m) == 2 &&
		    n > best) {
			best = n;
			*again = m;
		}
	}
	return best;
}

/* The stock barrier's run, then the port's on BACKEND (optionally under
 * the check, optionally both in incremental mode): same bytes out, the
 * port says it tracked. */
static void program(const char *prog, const char *args, const char *backend,
		    bool check, bool incremental)
{
	char path[PATH_MAX + 64], be[64], tag[96];
	const char *argv[8] = {racket, path, NULL};
	const char *inc = incremental ? "PLT_INCREMENTAL_GC=1" : NULL;
	const char *stock_env[] = {inc, NULL};
	const char *fg_env[6] = {"FG_RACKET=1", be, "FG_RACKET_STATS=1"};
	int nenv = 3;
	struct run s, f;
	char *a = NULL;

	if (check)
		fg_env[nenv++] = "FG_RACKET_CHECK=abort";
	if (inc)
		fg_env[nenv++] = inc;
	fg_env[nenv] = NULL;
	require_racket();
	ORC_REQUIRE_BACKEND_NAMED(backend);
	snprintf(path, sizeof path, "%s/%s", progs, prog);
	snprintf(be, sizeof be, "FG_BACKEND=%s", backend);
	if (args && *args) {
		char *save;
		int i = 2;

		a = strdup(args);
		for (char *t = strtok_r(a, " ", &save); t && i < 7;
		     t = strtok_r(NULL, " ", &save))
			argv[i++] = t;
		argv[i] = NULL;
	}
	snprintf(tag, sizeof tag, "stock-%s%s", prog, inc ? "-inc" : "");
	s = run(argv, stock_env, tag);
	assert_ok(s, "stock barrier");
	snprintf(tag, sizeof tag, "fg-%s%s", prog, inc ? "-inc" : "");
	f = run(argv, fg_env, tag);
	assert_ok(f, "port");
	cr_assert_str_eq(f.out, s.out, "%s: the port printed\n%s\nstock printed\n%s",
			 prog, f.out, s.out);
	cr_assert(strstr(f.err, "GCs tracked") &&
			  !strstr(f.err, " 0 GCs tracked"),
		  "%s: the port did not track a collector:\n%s", prog,
		  ch_tail(f.err, TAIL));
	if (check) {
		const char *v = strstr(f.err, "changed lines not reported");

		cr_assert(v, "%s: no check verdict:\n%s", prog, ch_tail(f.err, TAIL));
		cr_assert(!strstr(f.err, " 1 changed lines") &&
				  strstr(f.err, " 0 changed lines not reported"),
			  "%s: misses:\n%s", prog, ch_tail(f.err, TAIL));
	}
	if (incremental) {
		unsigned long again, n = most_unwatched(f.err, &again);

		cr_assert(n > 0 && again > 0,
			  "%s: incremental mode, yet no page unwatched and "
			  "watched again (%lu, %lu):\n%s",
			  prog, n, again, ch_tail(f.err, TAIL));
		cr_log_info("%s: %lu blocks unwatched, %lu watched again", prog,
			    n, again);
	}
	cr_log_info("%s on %s%s%s: %.*s (stock %.2f s, port %.2f s)", prog,
		    backend, check ? " under the check" : "",
		    inc ? " in incremental mode" : "",
		    (int)strcspn(s.out, "\n"), s.out, s.secs, f.secs);
	free(a);
	free(s.out);
	free(s.err);
	free(f.out);
	free(f.err);
}

#define PROGRAM_TESTS(name, file, args)                                      \
	Test(racket_suite, name##_uffd_async)                                \
	{                                                                    \
		program(file, args, "uffd-async", false, false);             \
	}                                                                    \
	Test(racket_suite, name##_uffd_sync)                                 \
	{                                                                    \
		program(file, args, "uffd-sync", false, false);              \
	}                                                                    \
	Test(racket_suite, name##_mprotect)                                  \
	{                                                                    \
		program(file, args, "mprotect", false, false);               \
	}                                                                    \
	Test(racket_suite, name##_check)                                     \
	{                                                                    \
		program(file, args, "uffd-async", true, false);              \
	}                                                                    \
	Test(racket_suite, name##_incremental)                               \
	{                                                                    \
		program(file, args, "uffd-async", true, true);               \
	}

PROGRAM_TESTS(old_mutable, "old-mutable.rkt", "")
PROGRAM_TESTS(hash_weak, "hash-weak.rkt", "")
PROGRAM_TESTS(threads_futures, "threads-futures.rkt", "")
PROGRAM_TESTS(places, "places.rkt", "2 10")

/* strace -f: write-protecting mprotect calls on anonymous memory (where
 * the GC's pages are; the loader's read-only RELRO calls are on file
 * mappings) and SIGSEGVs. */
struct span {
	unsigned long a, e;
};

static bool in_anon(const struct span *v, size_t n, unsigned long a,
		    unsigned long len)
{
	for (size_t i = n; i-- > 0;) /* latest first: addresses are reused */
		if (a >= v[i].a && a + len <= v[i].e)
			return true;
	return false;
}

static void count_barrier(const char *const *set, const char *tag,
			  unsigned long *wp, unsigned long *segv,
			  unsigned long *all_ro)
{
	char prog[PATH_MAX + 32], trace[PATH_MAX + 8];
	const char *argv[] = {"/usr/bin/strace", "-f", "-qq", "-o", trace,
			      "-e", "trace=mprotect,mmap", "-e",
			      "signal=SIGSEGV", racket, prog, "60000", "20",
			      "2000", NULL};
	struct span *anon = NULL;
	size_t nanon = 0, cap = 0;
	struct run r;
	char *t, *line, *save;

	snprintf(prog, sizeof prog, "%s/old-mutable.rkt", progs);
	snprintf(trace, sizeof trace, "%s.trace", ch_path(tag));
	r = run(argv, set, tag);
	assert_ok(r, tag);
	t = ch_slurp(trace, NULL, true);
	*wp = *segv = *all_ro = 0;
	for (line = strtok_r(t, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		const char *m = strstr(line, "mprotect(");
		const char *mm = strstr(line, "mmap(NULL, ");
		const char *res = strstr(line, ") = 0x");
		unsigned long addr, len;

		if (mm && res && strstr(mm, "MAP_ANONYMOUS") &&
		    sscanf(mm, "mmap(NULL, %lu,", &len) == 1 &&
		    sscanf(res, ") = %lx", &addr) == 1) {
			if (nanon == cap) {
				cap = cap ? 2 * cap : 1024;
				anon = realloc(anon, cap * sizeof *anon);
				cr_assert_not_null(anon);
			}
			anon[nanon++] = (struct span){addr, addr + len};
		}
		if (m && !strstr(m, "PROT_WRITE") && strstr(m, "PROT_READ") &&
		    sscanf(m, "mprotect(%lx, %lu,", &addr, &len) == 2) {
			(*all_ro)++;
			if (in_anon(anon, nanon, addr, len))
				(*wp)++;
		}
		if (strstr(line, "--- SIGSEGV"))
			(*segv)++;
	}
	free(anon);
	free(t);
	free(r.out);
	free(r.err);
}

Test(racket_suite, no_barrier)
{
	const char *stock_env[] = {NULL};
	const char *fg_env[] = {"FG_RACKET=1", "FG_BACKEND=uffd-async", NULL};
	unsigned long swp, ssegv, fwp, fsegv, sall, fall;

	require_racket();
	if (access("/usr/bin/strace", X_OK) != 0)
		cr_skip_test("no /usr/bin/strace (Debian: strace)");
	ORC_REQUIRE_BACKEND_NAMED("uffd-async");
	count_barrier(stock_env, "strace-stock", &swp, &ssegv, &sall);
	count_barrier(fg_env, "strace-fg", &fwp, &fsegv, &fall);
	cr_log_info("old-mutable.rkt: stock %lu write-protecting mprotect "
		    "calls on anonymous memory and %lu SIGSEGVs; the port %lu "
		    "and %lu (read-only mprotect calls in all, the loader's "
		    "included: stock %lu, the port %lu)",
		    swp, ssegv, fwp, fsegv, sall, fall);
	cr_assert_gt(swp, 50, "stock made only %lu write-protecting calls: "
			       "the measure is off",
		     swp);
	cr_assert_gt(ssegv, 50, "stock took only %lu SIGSEGVs", ssegv);
	cr_assert_eq(fwp, 0, "the port made %lu write-protecting mprotect "
			     "calls",
		     fwp);
	cr_assert_eq(fsegv, 0, "the port took %lu SIGSEGVs", fsegv);
}

/* The last "N tests passed" or "N/M test failures" line of raco test. */
static const char *raco_summary(const char *out, char *buf, size_t len)
{
	const char *p = NULL, *q;

	for (q = out; (q = strstr(q, "test")) != NULL; q++)
		if (!strncmp(q, "tests passed", 12) ||
		    !strncmp(q, "test passed", 11) ||
		    !strncmp(q, "test failure", 12))
			p = q;
	if (!p)
		return "";
	while (p > out && p[-1] != '\n')
		p--;
	snprintf(buf, len, "%.*s", (int)strcspn(p, "\n"), p);
	return buf;
}

/* A package's own tests (raco test FILES, relative to share/pkgs) on the
 * stock barrier, then with the port on every backend the machine has
 * (a missing one is said, with the probe's reason): each run passes, with
 * stock's count. */
static void raco(const char *const *files, const char *what)
{
	static const char *const backends[] = {"uffd-async", "uffd-sync",
					       "mprotect"};
	char pkgs[PATH_MAX], be[64];
	const char *argv[16] = {racket, "-l-", "raco", "test"};
	const char *stock_env[] = {NULL};
	const char *fg_env[] = {"FG_RACKET=1", be, NULL};
	char sb[256], fb[256], paths[8][PATH_MAX + 64], tag[64];
	struct run st, fg;
	int i = 4, ran = 0;

	require_racket();
	snprintf(pkgs, sizeof pkgs, "%s", racket);
	*strrchr(pkgs, '/') = 0; /* .../inst/bin */
	*strrchr(pkgs, '/') = 0; /* .../inst */
	for (int k = 0; files[k] && k < 8; k++) {
		snprintf(paths[k], sizeof paths[k], "%s/share/pkgs/%s", pkgs,
			 files[k]);
		if (access(paths[k], R_OK) != 0)
			cr_skip_test("no %s in this Racket", paths[k]);
		argv[i++] = paths[k];
	}
	argv[i] = NULL;
	/* The stock run first: it compiles what the tests need in place. */
	st = run(argv, stock_env, "raco-stock");
	assert_ok(st, "stock barrier: raco test");
	raco_summary(st.out, sb, sizeof sb);
	cr_assert(strstr(sb, "passed"), "%s: stock: no summary:\n%s", what,
		  ch_tail(st.out, TAIL));
	cr_log_info("%s: %s on the stock barrier (%.1f s)", what, sb,
		    st.secs);
	for (size_t b = 0; b < sizeof backends / sizeof *backends; b++) {
		char why[256] = "";
		fg_backend_id id;

		cr_assert_eq(fg_backend_from_name(backends[b], &id), 0);
		if (fg_backend_probe(id, why, sizeof why) != 0) {
			cr_log_warn("%s: not run on %s: %s", what, backends[b],
				    why);
			continue;
		}
		snprintf(be, sizeof be, "FG_BACKEND=%s", backends[b]);
		snprintf(tag, sizeof tag, "raco-fg-%s", backends[b]);
		fg = run(argv, fg_env, tag);
		assert_ok(fg, "port: raco test");
		raco_summary(fg.out, fb, sizeof fb);
		cr_assert_str_eq(fb, sb, "%s: the port on %s: %s; stock: %s",
				 what, backends[b], fb, sb);
		cr_log_info("%s: the same with the port on %s (%.1f s)", what,
			    backends[b], fg.secs);
		free(fg.out);
		free(fg.err);
		ran++;
	}
	free(st.out);
	free(st.err);
	if (!ran)
		cr_skip_test("%s: no tracking backend on this machine", what);
}

Test(racket_suite, raco_test_lazy)
{
	const char *const files[] = {"lazy/tests", NULL};

	raco(files, "lazy");
}

Test(racket_suite, raco_test_algol60)
{
	const char *const files[] = {"algol60/tests/test.rkt",
				     "algol60/tests/export.rkt", NULL};

	raco(files, "algol60");
}

/* run-all.rkt loads every test module of the package (1753 tests). */
Test(racket_suite, raco_test_racklog)
{
	const char *const files[] = {"racklog/tests/run-all.rkt", NULL};

	raco(files, "racklog");
}

Test(racket_suite, raco_test_datalog)
{
	const char *const files[] = {"datalog/tests/main.rkt",
				     "datalog/tests/racket.rkt", NULL};

	raco(files, "datalog");
}

/* The first two chapters' interpreters (all nine take about 6 minutes a
 * run here). */
Test(racket_suite, raco_test_eopl)
{
	const char *const files[] = {"eopl/tests/chapter1",
				     "eopl/tests/chapter2", NULL};

	raco(files, "eopl");
}

Test(racket_suite, raco_make_zo)
{
	char lazy[PATH_MAX], d1[PATH_MAX + 16], d2[PATH_MAX + 16];
	char r1[PATH_MAX + 40], r2[PATH_MAX + 40];
	const char *argv[] = {racket, "-l-", "raco", "make", "-j", "1", lazy,
			      NULL};
	const char *stock_env[] = {r1, NULL};
	const char *fg_env[] = {"FG_RACKET=1", "FG_BACKEND=uffd-async", r2,
				NULL};
	const char *diff[] = {"/usr/bin/diff", "-r", "-q", d1, d2, NULL};
	const char *count[] = {"/usr/bin/find", d1, "-name", "*.zo", NULL};
	struct run st, fg, df, n;
	char *inst;

	require_racket();
	ORC_REQUIRE_BACKEND_NAMED("uffd-async");
	inst = strdup(racket);
	*strrchr(inst, '/') = 0;
	*strrchr(inst, '/') = 0;
	snprintf(lazy, sizeof lazy, "%s/share/pkgs/lazy/lazy.rkt", inst);
	free(inst);
	if (access(lazy, R_OK) != 0)
		cr_skip_test("no %s in this Racket", lazy);
	snprintf(d1, sizeof d1, "%s/zo-stock", ch_dir);
	snprintf(d2, sizeof d2, "%s/zo-fg", ch_dir);
	snprintf(r1, sizeof r1, "PLTCOMPILEDROOTS=%s", d1);
	snprintf(r2, sizeof r2, "PLTCOMPILEDROOTS=%s", d2);
	st = run(argv, stock_env, "make-stock");
	assert_ok(st, "stock barrier: raco make");
	fg = run(argv, fg_env, "make-fg");
	assert_ok(fg, "port: raco make");
	df = run(diff, stock_env, "make-diff");
	cr_assert(df.status == 0, "the compiled trees differ:\n%s",
		  ch_tail(df.out, TAIL));
	n = run(count, stock_env, "make-count");
	{
		size_t zo = 0;

		for (const char *p = n.out; (p = strstr(p, ".zo")); p++)
			zo++;
		cr_assert_gt(zo, 100, "only %zu .zo files compiled", zo);
		cr_log_info("raco make lazy.rkt: %zu .zo files, the same "
			    "bytes on both (stock %.1f s, port %.1f s)",
			    zo, st.secs, fg.secs);
	}
	free(st.out);
	free(st.err);
	free(fg.out);
	free(fg.err);
	free(df.out);
	free(df.err);
	free(n.out);
	free(n.err);
}
