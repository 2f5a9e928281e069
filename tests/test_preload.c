/* test_preload.c - libfgalias-preload.so under unmodified programs.
 *
 * Each test runs real programs twice, natively and with
 * LD_PRELOAD=libfgalias-preload.so, and compares what they print: sort on
 * 100k random lines, sha256sum, python3 (every allocation through malloc:
 * PYTHONMALLOC=malloc), ls | wc through sh, and tests/preload_probe, which
 * checks every replaced function and whether its pointers come from the
 * ALIAS heap.  This binary itself does not load the shim.
 *
 * Where things are: FG_PRELOAD_SO and FG_PRELOAD_PROBE (set by make's
 * check-local), else next to this binary: ../toolkit/.libs/ and ./ (the
 * build tree, in or out of the source tree).  Random inputs print their
 * seed; FG_SEED=N replays one.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* config.h defines it in the autotools build */
#endif
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "child.h"
#include "fg.h"

#define TIMEOUT 120	 /* per test */
#define RUN_TIMEOUT 100 /* per program */

static char shim[PATH_MAX], probe[PATH_MAX];

static void setup(void)
{
	const char *s = getenv("FG_PRELOAD_SO"), *p = getenv("FG_PRELOAD_PROBE");

	if (s && *s)
		snprintf(shim, sizeof shim, "%s", s);
	else
		ch_beside_me(shim, "../toolkit/.libs/libfgalias-preload.so");
	if (p && *p)
		snprintf(probe, sizeof probe, "%s", p);
	else
		ch_beside_me(probe, "preload_probe");
	cr_assert(access(shim, R_OK) == 0,
		  "the shim %s: %s (build it: make; or set FG_PRELOAD_SO)", shim,
		  strerror(errno));
	cr_assert(access(probe, X_OK) == 0,
		  "the probe %s: %s (make tests/preload_probe; or set "
		  "FG_PRELOAD_PROBE)",
		  probe, strerror(errno));
	ch_mkdir("preload");
}

TestSuite(preload, .init = setup, .fini = ch_rmdir, .timeout = TIMEOUT);

/* Run argv with stdin from in (or /dev/null), stdout and stderr to files,
 * in an environment of ours without LD_PRELOAD and FG_ALIAS_*, FG_BACKEND,
 * FG_CARD (the tests choose them), plus extra (NAME=VALUE, NULL-terminated)
 * and, when preloaded, LD_PRELOAD=shim; its wait status, or -1 after
 * RUN_TIMEOUT seconds (then killed). */
static int run(const char *const *argv, bool preload, const char *const *extra,
	       const char *in, const char *out, const char *err)
{
	static const char *const unset[] = {"LD_PRELOAD=", "FG_ALIAS_",
					    "FG_BACKEND=", "FG_CARD=", NULL};
	char ld[PATH_MAX + 16], **env;
	const char *set[16];
	struct ch_io io = {.in = in, .out = out, .err = err};
	size_t k = 0;
	int st;

	for (; extra && extra[k]; k++) {
		cr_assert(k < 14, "more than 14 variables");
		set[k] = extra[k];
	}
	if (preload) {
		snprintf(ld, sizeof ld, "LD_PRELOAD=%s", shim);
		set[k++] = ld;
	}
	set[k] = NULL;
	env = ch_env(set, unset);
	st = ch_run(argv, env, &io, RUN_TIMEOUT).status;
	free(env);
	return st;
}

static void describe(const char *what, int st, const char *errfile)
{
	char *err = ch_slurp(errfile, NULL, true), how[64];

	cr_log_error("%s: %s; stderr: %.2000s", what,
		     ch_how(st, RUN_TIMEOUT, how, sizeof how), err);
	free(err);
}

/* Run argv natively and under the shim (extra environment for both) and
 * require exit status 0, equal stdout, and nothing on the preloaded run's
 * stderr that the native run did not print.  The preloaded run's stdout
 * is returned (caller frees). */
static char *same_both_ways(const char *const *argv, const char *const *extra,
			    const char *in)
{
	char *o1 = ch_path("native.out"), *e1 = ch_path("native.err");
	char *o2 = ch_path("preload.out"), *e2 = ch_path("preload.err");
	char *a, *b, *ea, *eb;
	size_t na, nb;
	int st;

	st = run(argv, false, extra, in, o1, e1);
	if (st != 0)
		describe("native run", st, e1);
	cr_assert_eq(st, 0, "%s natively: status %#x", argv[0], st);
	st = run(argv, true, extra, in, o2, e2);
	if (st != 0)
		describe("preloaded run", st, e2);
	cr_assert_eq(st, 0, "%s under the shim: status %#x", argv[0], st);
	a = ch_slurp(o1, &na, true);
	b = ch_slurp(o2, &nb, true);
	ea = ch_slurp(e1, NULL, true);
	eb = ch_slurp(e2, NULL, true);
	cr_expect_eq(na, nb, "%s: %zu bytes natively, %zu under the shim",
		     argv[0], na, nb);
	cr_assert(na == nb && memcmp(a, b, na) == 0,
		  "%s: the output differs under the shim", argv[0]);
	cr_assert_str_eq(eb, ea, "%s: stderr differs under the shim", argv[0]);
	cr_log_info("%s: %zu bytes of output, identical", argv[0], na);
	free(a);
	free(ea);
	free(eb);
	return b;
}

/* ---- inputs --------------------------------------------------------------- */

static uint64_t seed_of(const char *test)
{
	const char *s = getenv("FG_SEED");
	uint64_t seed = s && *s ? strtoull(s, NULL, 0)
				: (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);

	fprintf(stderr, "%s: seed=%" PRIu64 " (replay: FG_SEED=%" PRIu64 ")\n",
		test, seed, seed);
	return seed;
}

static uint64_t next(uint64_t *s) /* splitmix64 */
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15u);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/* n lines of random words and numbers. */
static char *random_lines(const char *name, size_t n, uint64_t seed)
{
	char *p = ch_path(name);
	FILE *f = fopen(p, "w");

	cr_assert(f, "create %s: %s", p, strerror(errno));
	for (size_t i = 0; i < n; i++) {
		uint64_t r = next(&seed);
		unsigned len = (unsigned)(r % 40) + 1;

		for (unsigned k = 0; k < len; k++)
			fputc("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ 0123456789"
			      [next(&seed) % 47], f);
		fprintf(f, " %" PRIu64 "\n", next(&seed) % 1000000);
	}
	cr_assert(fclose(f) == 0);
	return strdup(p);
}

static const char *const c_locale[] = {"LC_ALL=C", NULL};

/* ---- the probe ------------------------------------------------------------------ */

/* preload_probe MODE [ARG]: its stdout (caller frees), its stderr left in
 * probe.err; the exit status must be want_status. */
static char *probe_run_arg(const char *const *extra, const char *mode,
			   const char *arg, bool preload, int want_status)
{
	const char *argv[] = {probe, mode, arg, NULL};
	char *o = ch_path("probe.out"), *e = ch_path("probe.err");
	char *out;
	int st;

	st = run(argv, preload, extra, NULL, o, e);
	out = ch_slurp(o, NULL, true);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != want_status) {
		describe("preload_probe", st, e);
		cr_log_error("preload_probe %s: stdout: %.4000s", mode, out);
	}
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == want_status,
		  "preload_probe %s: status %#x, wanted exit %d", mode, st,
		  want_status);
	return out;
}

static char *probe_run(const char *const *extra, const char *mode,
		       bool preload, int want_status)
{
	return probe_run_arg(extra, mode, !strcmp(mode, "fill") ? "16" : NULL,
			     preload, want_status);
}

Test(preload, probe_native)
{
	char *out = probe_run(NULL, "all", false, 0);

	cr_assert(strstr(out, "\nnot preloaded\n"), "%s", out);
	free(out);
}

Test(preload, probe_preloaded)
{
	char *out = probe_run(NULL, "all", true, 0);

	cr_log_info("%s", out);
	cr_assert(strstr(out, "\npreloaded: backend "), "%s", out);
	cr_assert(strstr(out, "ok 4 threads"), "%s", out);
	cr_assert(strstr(out, "ok fork"), "%s", out);
	free(out);
}

/* Every backend, a different card size each; and the in-process collector:
 * each one-byte write reported within a card. */
static void probe_backend(fg_backend_id id, const char *card)
{
	char why[256] = "", be[64], cs[32], want[96];
	const char *extra[] = {be, cs, "FG_QUIET=1", NULL};
	char *out;

	if (fg_backend_probe(id, why, sizeof why) != 0)
		cr_skip_test("backend %s unavailable: %s", fg_backend_name(id),
			     why);
	snprintf(be, sizeof be, "FG_BACKEND=%s", fg_backend_name(id));
	snprintf(cs, sizeof cs, "FG_CARD=%s", card);
	snprintf(want, sizeof want, "preloaded: backend %s, %s-byte cards",
		 fg_backend_name(id), card);
	out = probe_run(extra, "all", true, 0);
	cr_assert(strstr(out, want), "wanted \"%s\" in:\n%s", want, out);
	free(out);
	out = probe_run(extra, "collect", true, 0);
	cr_log_info("%s, %s-byte cards: %s", fg_backend_name(id), card, out);
	cr_assert(strstr(out, "ok collect"), "%s", out);
	free(out);
}

Test(preload, backend_uffd_async) { probe_backend(FG_BACKEND_UFFD_ASYNC, "64"); }
Test(preload, backend_uffd_sync) { probe_backend(FG_BACKEND_UFFD_SYNC, "128"); }
Test(preload, backend_mprotect) { probe_backend(FG_BACKEND_MPROTECT, "256"); }
Test(preload, backend_softdirty) { probe_backend(FG_BACKEND_SOFTDIRTY, "1024"); }
Test(preload, backend_none) { probe_backend(FG_BACKEND_NONE, "4096"); }

/* A heap of 4 MiB, 16 MiB asked for: glibc takes the rest, every object
 * stays intact, realloc moves them out, and the summary counts it. */
Test(preload, capacity_exhausted)
{
	const char *extra[] = {"FG_ALIAS_CAPACITY=4M", "FG_ALIAS_STATS=1", NULL};
	char *out = probe_run(extra, "fill", true, 0), *err, *p;
	unsigned long long fallbacks = 0, cap = 0;

	cr_log_info("%s", out);
	cr_assert(strstr(out, "ok fill 16 MiB"), "%s", out);
	err = ch_slurp(ch_path("probe.err"), NULL, true);
	p = strstr(err, "fg-alias-preload: pid ");
	cr_assert(p, "no summary on stderr: %s", err);
	cr_assert(sscanf(strstr(p, "capacity "), "capacity %llu", &cap) == 1 &&
			  cap == 4u << 20,
		  "%s", p);
	p = strstr(p, " bytes), ");
	cr_assert(p && sscanf(p + 9, "%llu fallbacks to glibc", &fallbacks) == 1 &&
			  fallbacks > 0,
		  "no fallbacks counted: %s", err);
	free(out);
	free(err);
}

/* fork: the child's writes to inherited objects stay in the child; with
 * FG_ALIAS_FORK=share they reach the parent, as documented. */
Test(preload, fork_copy_and_share)
{
	const char *share[] = {"FG_ALIAS_FORK=share", NULL};
	char *out = probe_run(NULL, "fork", true, 0);

	cr_assert(strstr(out, "ok fork"), "%s", out);
	free(out);
	out = probe_run(share, "fork", true, 1);
	cr_assert(strstr(out, "the child's write reached the parent"), "%s",
		  out);
	free(out);
}

/* ---- descriptors the program takes over ------------------------------------ */

static unsigned count_of(const char *hay, const char *needle)
{
	unsigned n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

/* The probe closes 3..50, dup2's a 32 MiB file of its own over each, and
 * keeps allocating, freeing, reallocating, collecting and forking: every
 * object intact and the file untouched (the heap's memfd lives at 1000
 * and above, out of the way; a hole punched through descriptor 5 used to
 * zero 2 MiB of the program's file).  On the default backend and on
 * mprotect, which has no descriptors of its own: there every object must
 * still come from the heap. */
Test(preload, fds_low_taken_over)
{
	const char *deflt[] = {"FG_ALIAS_CAPACITY=8M", NULL};
	const char *mprot[] = {"FG_ALIAS_CAPACITY=8M", "FG_BACKEND=mprotect",
			       "FG_QUIET=1", NULL};
	const char *const *envs[] = {deflt, mprot};
	char *file = ch_path("fds.data"), *out, *err;

	out = probe_run_arg(NULL, "fds", file, false, 0);
	cr_assert(strstr(out, "untouched") && strstr(out, "\nnot preloaded\n"),
		  "%s", out);
	free(out);
	for (unsigned k = 0; k < 2; k++) {
		out = probe_run_arg(envs[k], "fds", file, true, 0);
		cr_log_info("%s", out);
		cr_assert(strstr(out, "ok fds: every object intact") &&
				  strstr(out, "ok fork") &&
				  strstr(out, "\npreloaded: backend "),
			  "%s", out);
		cr_assert(!strstr(out, "memfd:fg-alias"), "%s", out);
		if (k == 1)
			cr_assert(!strstr(out, "note fds:"),
				  "mprotect has no descriptors: %s", out);
		err = ch_slurp(ch_path("probe.err"), NULL, true);
		cr_assert(!strstr(err, "fg-alias"), "%s", err);
		free(err);
		free(out);
	}
}

/* Every descriptor above 2 taken over, the heap's memfd included: the
 * heap goes on (its views hold the memfd), frees give no memory back and
 * touch no file, one line on stderr says so; the exit summary does not go
 * into the program's file either. */
Test(preload, fds_all_taken_over)
{
	const char *env[] = {"FG_ALIAS_CAPACITY=8M", "FG_ALIAS_STATS=1", NULL};
	char *file = ch_path("fds.data");
	char *out = probe_run_arg(env, "fds-all", file, true, 0), *err;

	cr_log_info("%s", out);
	cr_assert(strstr(out, "ok fds: every object intact") &&
			  strstr(out, "memfd:fg-alias"),
		  "%s", out);
	err = ch_slurp(ch_path("probe.err"), NULL, true);
	cr_assert_eq(count_of(err, "the ALIAS heap's memfd, was closed or "
				   "replaced"),
		     1, "wanted one warning: %s", err);
	cr_assert_eq(count_of(err, "fg-alias-preload: pid "), 1,
		     "wanted the summary on stderr: %s", err);
	free(err);
	free(out);
}

/* RLIMIT_NOFILE below 1000: the descriptors stay where they were made, and
 * everything works as before. */
Test(preload, fds_low_limit)
{
	char cmd[PATH_MAX + 64];
	const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
	char *o = ch_path("nofile.out"), *e = ch_path("nofile.err"), *out;
	int st;

	snprintf(cmd, sizeof cmd, "ulimit -n 64 && exec '%s' all", probe);
	st = run(argv, true, NULL, NULL, o, e);
	out = ch_slurp(o, NULL, true);
	if (st)
		describe("preload_probe all, ulimit -n 64", st, e);
	cr_assert_eq(st, 0, "%s", out);
	cr_assert(strstr(out, "ok fork") && strstr(out, "\npreloaded: backend "),
		  "%s", out);
	free(out);
}

/* ---- real programs ------------------------------------------------------------ */

Test(preload, sort)
{
	char *in = random_lines("lines", 100000, seed_of("preload::sort"));
	const char *plain[] = {"/usr/bin/sort", in, NULL};
	/* small buffer, 4 threads: temporary files and merges */
	const char *busy[] = {"/usr/bin/sort", "-S", "1M", "--parallel=4",
			      "-T", ch_dir, "-k2,2n", "-k1,1", in, NULL};

	free(same_both_ways(plain, c_locale, NULL));
	free(same_both_ways(busy, c_locale, NULL));
}

Test(preload, sha256sum)
{
	char *in = strdup(ch_path("blob"));
	uint64_t s = seed_of("preload::sha256sum");
	FILE *f = fopen(in, "w");
	const char *argv[] = {"/usr/bin/sha256sum", in, NULL};
	const char *stdin_argv[] = {"/usr/bin/sha256sum", NULL};

	cr_assert(f);
	for (size_t i = 0; i < ((size_t)16 << 20) / 8; i++) {
		uint64_t v = next(&s);

		fwrite(&v, sizeof v, 1, f);
	}
	cr_assert(fclose(f) == 0);
	free(same_both_ways(argv, c_locale, NULL));
	free(same_both_ways(stdin_argv, c_locale, in));
}

#define PYTHON "/usr/bin/python3"

static void need_python(void)
{
	if (access(PYTHON, X_OK) != 0)
		cr_skip_test(PYTHON " not found");
}

/* PYTHONMALLOC=malloc: every object through malloc, not pymalloc's arenas. */
static const char *const py_env[] = {"PYTHONMALLOC=malloc", "PYTHONHASHSEED=0",
				     "LC_ALL=C", NULL};

Test(preload, python_dict)
{
	const char *argv[] = {
		PYTHON, "-c",
		"import hashlib\n"
		"d = {}\n"
		"for i in range(200000):\n"
		"    d['k%d' % i] = [i, str(i * i)]\n"
		"for i in range(0, 200000, 3):\n"
		"    del d['k%d' % i]\n"
		"h = hashlib.sha256()\n"
		"for k in sorted(d):\n"
		"    h.update(('%s=%r;' % (k, d[k])).encode())\n"
		"print(len(d), h.hexdigest())\n",
		NULL};
	char *out;

	need_python();
	out = same_both_ways(argv, py_env, NULL);
	cr_assert(!strncmp(out, "133333 ", 7), "%s", out);
	free(out);
}

/* os.fork: the child rewrites a list of the parent's (and every object's
 * reference count); the parent's stays as it was. */
Test(preload, python_fork)
{
	const char *argv[] = {
		PYTHON, "-c",
		"import os\n"
		"l = [str(i) for i in range(100000)]\n"
		"pid = os.fork()\n"
		"if pid == 0:\n"
		"    l[:] = ['x'] * 100000\n"
		"    os._exit(0 if l.count('x') == 100000 else 1)\n"
		"_, st = os.waitpid(pid, 0)\n"
		"print(os.waitstatus_to_exitcode(st), l[0], l[-1], len(set(l)))\n",
		NULL};
	char *out;

	need_python();
	out = same_both_ways(argv, py_env, NULL);
	cr_assert_str_eq(out, "0 0 99999 100000\n");
	free(out);
}

/* sh, ls and wc all under the shim; sh forks for the pipeline. */
Test(preload, ls_pipe_wc)
{
	const char *argv[] = {"/bin/sh", "-c", "ls -la /usr/bin | wc -l", NULL};
	char *out = same_both_ways(argv, c_locale, NULL);

	cr_assert(atol(out) > 10, "%s", out);
	free(out);
}

/* FG_ALIAS_STATS=1: stdout untouched, one summary line on stderr even
 * though sort closes stderr before exit. */
Test(preload, stats_line)
{
	char *in = random_lines("lines", 20000, seed_of("preload::stats_line"));
	const char *argv[] = {"/usr/bin/sort", in, NULL};
	const char *env[] = {"LC_ALL=C", "FG_ALIAS_STATS=1", NULL};
	char *o = ch_path("stats.out"), *e = ch_path("stats.err"), *err, *p;
	unsigned long long allocs = 0, live = 0;
	int st = run(argv, true, env, NULL, o, e), lines = 0;

	if (st)
		describe("sort", st, e);
	cr_assert_eq(st, 0);
	err = ch_slurp(e, NULL, true);
	for (p = err; (p = strchr(p, '\n')); p++)
		lines++;
	cr_assert_eq(lines, 1, "wanted one line: %s", err);
	cr_assert(!strncmp(err, "fg-alias-preload: pid ", 22), "%s", err);
	p = strstr(err, " bytes: ");
	cr_assert(p && sscanf(p, " bytes: %llu allocations, %llu objects live",
			      &allocs, &live) == 2,
		  "%s", err);
	cr_assert(allocs > 0, "%s", err);
	cr_assert(strstr(err, "fallbacks to glibc") && strstr(err, "collections"),
		  "%s", err);
	cr_log_info("%s", err);
	free(err);
}

/* Bad settings: a warning, and the program still runs (on glibc when no
 * heap can be made). */
Test(preload, bad_settings)
{
	const char *argv[] = {"/usr/bin/sort", "/etc/passwd", NULL};
	const char *cap[] = {"LC_ALL=C", "FG_ALIAS_CAPACITY=lots", NULL};
	const char *card[] = {"LC_ALL=C", "FG_CARD=100", NULL};
	char *o = ch_path("bad.out"), *e = ch_path("bad.err"), *err;

	cr_assert_eq(run(argv, true, cap, NULL, o, e), 0);
	err = ch_slurp(e, NULL, true);
	cr_assert(strstr(err, "FG_ALIAS_CAPACITY=lots: expected a size"), "%s",
		  err);
	free(err);
	cr_assert_eq(run(argv, true, card, NULL, o, e), 0);
	err = ch_slurp(e, NULL, true);
	cr_assert(strstr(err, "no ALIAS heap") && strstr(err, "using glibc"),
		  "%s", err);
	free(err);
}
