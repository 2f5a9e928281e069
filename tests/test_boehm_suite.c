/* test_boehm_suite.c - the adapter's libgc.so.1 under Boehm's own tests,
 * its ABI, and Guile.
 *
 *   <program>_<backend>_<card>
 *       each of Boehm GC 8.2.2's `make check` programs, built in the
 *       adapter's Boehm tree and linked against its libgc, run with
 *       GC_ENABLE_INCREMENTAL=1, FG_BACKEND and FG_CARD (64, 4096) under a
 *       time limit: it must exit with status 0, and the reporter preloaded
 *       into it (tests/boehm/gc_report.c) must say that the adapter was
 *       supplying the dirty bits with the requested backend and card size
 *       when it exited (a program that does not load libgc at all,
 *       test_atomic_ops without libatomic_ops, is a skip saying so);
 *   abi_symbols
 *       every dynamic symbol defined by Debian's libgc.so.1 is defined by
 *       the adapter's libgc.so.1, whose soname is libgc.so.1 too;
 *   guile_<backend>
 *       tests/boehm/gc-heavy.scm under Guile prints the same bytes on the
 *       stock libgc and on the adapter's (LD_LIBRARY_PATH,
 *       GC_ENABLE_INCREMENTAL=1, FG_CARD=64: DIFF with sticky twins), and
 *       the adapter's is the libgc.so.1 Guile mapped;
 *   guile_check_<backend>
 *       the same with FG_BOEHM_CHECK=abort: the adapter copies the heap
 *       at every retrieval and aborts if a line whose bytes changed by
 *       the next one did not read dirty.
 *
 * Where things are (make's check-local sets the variables; the defaults
 * are relative to this binary, in the build tree):
 *   FG_BOEHM_BUILD      Boehm's built tree    ../adapters/boehm/build/libgc-8.2.2
 *   FG_BOEHM_LIB        the adapter's libgc   ../adapters/boehm/lib
 *   FG_BOEHM_REPORT_SO  the reporter          boehm/.libs/fgboehm_report.so
 *   FG_STOCK_LIBGC      Debian's libgc        /usr/lib/x86_64-linux-gnu/libgc.so.1
 *   FG_GUILE            Guile                 guile-3.0 or guile in PATH
 *   FG_BOEHM_SCM        the Scheme program    boehm/gc-heavy.scm (the source
 *                                             tree's, in an in-tree build)
 * A missing tree, library, program, Guile or backend is a skip with the
 * reason; a missing reporter is a failure (the suite cannot tell whether
 * the adapter ran).  FG_BOEHM_RUN_LIMIT=N changes the per-program limit
 * (seconds, default 300); FG_BOEHM_FULL=1 runs disclaim_bench in full
 * (all three models, as `make check` does; ~10 s more per run) instead
 * of its finalize-on-reclaim model alone.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* config.h defines it in the autotools build */
#endif
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "child.h"
#include "fg.h"
#include "oracle.h" /* ORC_REQUIRE_BACKEND_NAMED */

#define TEST_TIMEOUT 600 /* Criterion's limit per test */
#define RUN_LIMIT 300	 /* per program run, FG_BOEHM_RUN_LIMIT */
#define TAIL 3000	 /* bytes of output shown on failure */

static char build_dir[PATH_MAX], lib_dir[PATH_MAX], report_so[PATH_MAX];


static bool is_file(const char *p, int mode)
{
	struct stat st;

	return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, mode) == 0;
}

static bool is_dir(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void setup(void)
{
	ch_path_from_env(build_dir, "FG_BOEHM_BUILD", "../adapters/boehm/build/libgc-8.2.2");
	ch_path_from_env(lib_dir, "FG_BOEHM_LIB", "../adapters/boehm/lib");
	ch_path_from_env(report_so, "FG_BOEHM_REPORT_SO", "boehm/.libs/fgboehm_report.so");
	ch_mkdir("boehm");
}

TestSuite(boehm_suite, .init = setup, .fini = ch_rmdir,
	  .timeout = TEST_TIMEOUT);


static int run_limit(void)
{
	const char *v = getenv("FG_BOEHM_RUN_LIMIT");
	int n = v ? atoi(v) : 0;

	return n > 0 ? n : RUN_LIMIT;
}

struct run {
	int status;	/* wait status; -1: killed at the limit */
	pid_t pid;
	double secs;
	char *out;	/* stdout (and stderr, unless err_file) */
	char *err;
};

/* Run argv in ch_dir with stdin from /dev/null, stdout to out_file and
 * stderr to err_file (or both to out_file), in a process group of its own
 * that is killed at the limit.  A file the program left missing reads as
 * empty: its status says what went wrong. */
static struct run run_for(const char *const *argv, char **env,
			  const char *out_file, const char *err_file, int limit)
{
	struct ch_io io = {.dir = ch_dir, .out = out_file, .err = err_file};
	struct ch_run c = ch_run(argv, env, &io, limit);
	struct run r = {.status = c.status, .pid = c.pid, .secs = c.secs};

	r.out = ch_slurp(out_file, NULL, false);
	r.err = err_file ? ch_slurp(err_file, NULL, false) : NULL;
	return r;
}

static struct run run(const char *const *argv, char **env, const char *out_file,
		      const char *err_file)
{
	return run_for(argv, env, out_file, err_file, run_limit());
}

static const char *how(int status, char *buf, size_t len)
{
	return ch_how(status, run_limit(), buf, len);
}

static void require_reporter(void)
{
	cr_assert(is_file(report_so, R_OK),
		  "the reporter %s: %s (make tests/boehm/fgboehm_report.la; or "
		  "set FG_BOEHM_REPORT_SO)",
		  report_so, strerror(errno));
}

/* What the reporter said about process pid. */
struct report {
	bool found;
	char lib[16], backend[32];
	int incremental;
	size_t card;
	unsigned long collections, rescanned;
};

static struct report read_report(const char *file, pid_t pid)
{
	char *all = ch_slurp(file, NULL, false), *line, *save = NULL;
	struct report rp = {0};
	char want[32];

	snprintf(want, sizeof want, "pid=%ld ", (long)pid);
	for (line = strtok_r(all, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, want, strlen(want)))
			continue;
		rp.found = sscanf(line + strlen(want),
				  "lib=%15s incremental=%d backend=%31s card=%zu "
				  "collections=%lu rescanned=%lu",
				  rp.lib, &rp.incremental, rp.backend, &rp.card,
				  &rp.collections, &rp.rescanned) == 6;
	}
	free(all);
	return rp;
}

/* The adapter ran the process with this backend and card size. */
static void assert_adapter_ran(const char *what, struct report rp,
			       const char *backend, size_t card, const char *out)
{
	cr_assert(rp.found,
		  "%s: no report from the preloaded %s (did the program exit "
		  "through exit()?)\n--- output (tail) ---\n%s",
		  what, report_so, ch_tail(out, TAIL));
	cr_assert_str_eq(rp.lib, "adapter",
			 "%s ran on a libgc without GC_fg_backend (stock "
			 "Boehm?), not the adapter's",
			 what);
	cr_assert_eq(rp.incremental, 1,
		     "%s: incremental mode was off at exit despite "
		     "GC_ENABLE_INCREMENTAL=1\n--- output (tail) ---\n%s",
		     what, ch_tail(out, TAIL));
	cr_assert_str_eq(rp.backend, backend,
			 "%s: GC_fg_backend() = %s at exit, want %s (\"-\": "
			 "the adapter was not supplying dirty bits)\n--- "
			 "output (tail) ---\n%s",
			 what, rp.backend, backend, ch_tail(out, TAIL));
	cr_assert_eq(rp.card, card ? card : 64,
		     "%s: GC_fg_get_card_size() = %zu, want %zu", what, rp.card,
		     card ? card : 64);
}

/* The argument that makes a program do less (FG_BOEHM_FULL=1: none).
 * disclaim_bench runs three models, of which "regular finalization" (0)
 * takes ~10 s of CPU in incremental mode, stock or adapter; "1" runs the
 * finalize-on-reclaim model only (the disclaim API; gctest and
 * disclaim_test cover regular finalization). */
static const char *reduced_arg(const char *prog)
{
	const char *full = getenv("FG_BOEHM_FULL");

	if (full && *full && strcmp(full, "0"))
		return NULL;
	if (!strcmp(prog, "disclaim_bench"))
		return "1";
	return NULL;
}

/* One of Boehm's test programs.  hold: FG_BOEHM_HOLD's value (patch 3:
 * the sweep holds back blocks whose live objects sit in most of their
 * lines), or 0 for none; with it the program runs with GC_PRINT_STATS=1,
 * and must have had blocks held back, else the test did not try it. */
static void boehm_program_hold(const char *prog, const char *backend,
			       size_t card, unsigned hold)
{
	char exe[PATH_MAX + 64], env_backend[64], env_card[32], env_hold[32];
	char env_preload[PATH_MAX + 64], env_report[PATH_MAX + 64], st[64];
	const char *report = ch_path("report");
	const char *pre = getenv("LD_PRELOAD");
	struct report rp;
	struct run r;
	char what[128];

	if (!is_dir(build_dir))
		cr_skip_test("no Boehm build tree at %s (build the adapter: "
			     "adapters/boehm/build.sh; or set FG_BOEHM_BUILD)",
			     build_dir);
	snprintf(exe, sizeof exe, "%s/%s", build_dir, prog);
	if (!is_file(exe, X_OK))
		cr_skip_test("%s was not built in %s (Boehm's `make check` "
			     "builds it)",
			     prog, build_dir);
	ORC_REQUIRE_BACKEND_NAMED(backend);
	require_reporter();

	/* card 0: FG_CARD unset, the adapter's default (auto: 64-byte
	 * cards while the twins pay). */
	snprintf(env_card, sizeof env_card, "FG_CARD=%zu", card);
	snprintf(env_hold, sizeof env_hold, "FG_BOEHM_HOLD=%u", hold);
	snprintf(what, sizeof what, "%s%s%s (FG_BACKEND=%s %s%s%s)", prog,
		 reduced_arg(prog) ? " " : "",
		 reduced_arg(prog) ? reduced_arg(prog) : "", backend,
		 card ? env_card : "FG_CARD unset", hold ? " " : "",
		 hold ? env_hold : "");
	snprintf(env_backend, sizeof env_backend, "FG_BACKEND=%s", backend);
	snprintf(env_preload, sizeof env_preload, "LD_PRELOAD=%s%s%s",
		 report_so, pre && *pre ? " " : "", pre ? pre : "");
	snprintf(env_report, sizeof env_report, "FG_BOEHM_REPORT=%s", report);
	{
		const char *set[] = {"GC_ENABLE_INCREMENTAL=1", env_backend,
				     env_preload, env_report, "FG_QUIET=1",
				     card ? env_card : NULL,
				     hold ? env_hold : NULL,
				     hold ? "GC_PRINT_STATS=1" : NULL, NULL};
		const char *unset[] = {"FG_CARD", NULL};
		const char *argv[] = {exe, reduced_arg(prog), NULL};
		char **env = ch_env(set, card ? NULL : unset);

		unlink(report);
#ifdef BOEHM_KVM_ONLY
		/* gctest used to hang under fgvm now and then (fgvm spun
		 * with a signal pending while the guest was in its syscall
		 * stub; fixed in vm/run.c).  Should a program hang again, a
		 * run past half the limit is killed, said loudly (HUNG),
		 * and run once more; a second hang fails. */
		r = run_for(argv, env, ch_path("out"), NULL,
			    run_limit() / 2);
		if (r.status == -1) {
			cr_log_warn("%s: HUNG under fgvm (killed at %d s; the "
				    "hang fixed in vm/run.c is back?): "
				    "running it once more\n--- output (tail) "
				    "---\n%s",
				    what, run_limit() / 2, ch_tail(r.out, TAIL));
			free(r.out);
			unlink(report);
			r = run(argv, env, ch_path("out"), NULL);
		}
#else
		r = run(argv, env, ch_path("out"), NULL);
#endif
		free(env);
	}
	cr_log_info("%s: %s, %.2f s", what, how(r.status, st, sizeof st),
		    r.secs);
	cr_assert(r.status == 0, "%s: %s after %.1f s\n--- output (tail) ---\n%s",
		  what, how(r.status, st, sizeof st), r.secs, ch_tail(r.out, TAIL));
	rp = read_report(report, r.pid);
	if (rp.found && !strcmp(rp.lib, "none"))
		cr_skip_test("%s exited 0 without loading libgc (%s%.*s%s): "
			     "nothing for the adapter to do",
			     what, *r.out ? "it said \"" : "no output",
			     (int)strcspn(r.out, "\n"), r.out,
			     *r.out ? "\"" : "");
	assert_adapter_ran(what, rp, backend, card, r.out);
	cr_log_info("%s: %lu collections, %lu bytes rescanned", what,
		    rp.collections, rp.rescanned);
	if (hold) {
		const char *h = strstr(r.out, "Sweep held back ");

		cr_assert(h, "%s: no block was held back (no \"Sweep held "
			     "back\" in GC_PRINT_STATS's log): the test did "
			     "not try it\n--- output (tail) ---\n%s",
			  what, ch_tail(r.out, TAIL));
		cr_log_info("%s: %.*s", what, (int)strcspn(h, "\n"), h);
	}
	free(r.out);
}

static void boehm_program(const char *prog, const char *backend, size_t card)
{
	boehm_program_hold(prog, backend, card, 0);
}

/* Boehm GC 8.2.2's TESTS with the adapter's configuration (Debian's,
 * --enable-cplusplus: test_cpp is the 17th). */
#define BOEHM_PROGRAMS(X)                                                    \
	X(cordtest)                                                          \
	X(gctest)                                                            \
	X(leaktest)                                                          \
	X(middletest)                                                        \
	X(smashtest)                                                         \
	X(hugetest)                                                          \
	X(realloc_test)                                                      \
	X(staticrootstest)                                                   \
	X(test_atomic_ops)                                                   \
	X(threadleaktest)                                                    \
	X(threadkey_test)                                                    \
	X(subthreadcreate_test)                                              \
	X(initsecondarythread_test)                                          \
	X(test_cpp)                                                          \
	X(disclaim_test)                                                     \
	X(disclaim_bench)                                                    \
	X(disclaim_weakmap_test)

#define PROGRAM_TEST(prog, tag, backend, card)                               \
	Test(boehm_suite, prog##_##tag##_##card)                             \
	{                                                                    \
		boehm_program(#prog, backend, card);                         \
	}
#ifdef BOEHM_KVM_ONLY
/* tests/test_boehm_suite_kvm, which run.sh runs under fgvm: gctest and the
 * threaded programs with the kvm backend (the VM's dirty log). */
#undef BOEHM_PROGRAMS
#define BOEHM_PROGRAMS(X)                                                    \
	X(gctest)                                                            \
	X(threadleaktest)                                                    \
	X(threadkey_test)                                                    \
	X(subthreadcreate_test)                                              \
	X(initsecondarythread_test)                                          \
	X(disclaim_test)
#define PROGRAM_TESTS(prog)                                                  \
	PROGRAM_TEST(prog, kvm, "kvm", 4096)
#else
/* FG_CARD unset: the adapter's default, auto. */
#define PROGRAM_TEST_AUTO(prog, tag, backend)                                \
	Test(boehm_suite, prog##_##tag##_auto)                               \
	{                                                                    \
		boehm_program(#prog, backend, 0);                            \
	}
#define PROGRAM_TESTS(prog)                                                  \
	PROGRAM_TEST_AUTO(prog, uffd_async, "uffd-async")                    \
	PROGRAM_TEST(prog, uffd_async, "uffd-async", 64)                     \
	PROGRAM_TEST(prog, uffd_async, "uffd-async", 4096)                   \
	PROGRAM_TEST(prog, uffd_sync, "uffd-sync", 64)                       \
	PROGRAM_TEST(prog, uffd_sync, "uffd-sync", 4096)                     \
	PROGRAM_TEST(prog, mprotect, "mprotect", 64)                         \
	PROGRAM_TEST(prog, mprotect, "mprotect", 4096)
#endif

BOEHM_PROGRAMS(PROGRAM_TESTS)

#ifndef BOEHM_KVM_ONLY

/* FG_BOEHM_HOLD: the sweep leaves blocks unswept for a collection, a
 * change to Boehm's heap itself; gctest checks its structures after
 * every collection (and holds blocks back in about 600 of them), and
 * test_cpp and disclaim_test exercise finalizers and reclaim-time
 * callbacks on the held blocks' kinds. */
#define HOLD_TEST(prog, tag, backend)                                        \
	Test(boehm_suite, prog##_##tag##_64_hold)                            \
	{                                                                    \
		boehm_program_hold(#prog, backend, 64, 32);                  \
	}
HOLD_TEST(gctest, uffd_async, "uffd-async")
HOLD_TEST(gctest, uffd_sync, "uffd-sync")
HOLD_TEST(test_cpp, uffd_async, "uffd-async")
HOLD_TEST(disclaim_test, uffd_async, "uffd-async")

/* The dynamic symbols a shared object defines, one per line, sorted, as
 * one string; NULL if nm failed. */
static char *defined_symbols(const char *so)
{
	char cmd[PATH_MAX + 128];
	char *out = NULL;
	size_t len = 0;
	FILE *p, *m = open_memstream(&out, &len);
	char line[1024];

	cr_assert(m);
	snprintf(cmd, sizeof cmd,
		 "nm -D --defined-only '%s' 2>/dev/null | awk 'NF >= 3 "
		 "{ sub(/@.*/, \"\", $3); print $3 }' | LC_ALL=C sort -u",
		 so);
	p = popen(cmd, "r");
	cr_assert(p, "popen nm: %s", strerror(errno));
	while (fgets(line, sizeof line, p))
		fputs(line, m);
	fclose(m);
	if (pclose(p) != 0 || len == 0) {
		free(out);
		return NULL;
	}
	return out;
}

static bool has_line(const char *list, const char *sym)
{
	size_t n = strlen(sym);

	for (const char *p = list; (p = strstr(p, sym)); p += n)
		if ((p == list || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

static char *soname(const char *so)
{
	char cmd[PATH_MAX + 128], line[512] = "";
	FILE *p;

	snprintf(cmd, sizeof cmd,
		 "objdump -p '%s' 2>/dev/null | awk '$1 == \"SONAME\" "
		 "{ print $2 }'",
		 so);
	p = popen(cmd, "r");
	cr_assert(p);
	if (!fgets(line, sizeof line, p))
		line[0] = 0;
	pclose(p);
	line[strcspn(line, "\n")] = 0;
	return strdup(line);
}

Test(boehm_suite, abi_symbols)
{
	const char *stock = getenv("FG_STOCK_LIBGC");
	char ours[PATH_MAX + 32], *want, *have, *missing = NULL, *name;
	size_t mlen = 0, nwant = 0, nmissing = 0;
	FILE *m;

	if (!stock || !*stock)
		stock = "/usr/lib/x86_64-linux-gnu/libgc.so.1";
	snprintf(ours, sizeof ours, "%s/libgc.so.1", lib_dir);
	if (!is_file(stock, R_OK))
		cr_skip_test("no stock libgc at %s (Debian: apt-get install "
			     "libgc1; or set FG_STOCK_LIBGC)",
			     stock);
	if (!is_file(ours, R_OK))
		cr_skip_test("no adapter library at %s (build it: "
			     "adapters/boehm/build.sh; or set FG_BOEHM_LIB)",
			     ours);
	want = defined_symbols(stock);
	cr_assert(want, "nm -D --defined-only %s failed (is binutils installed?)",
		  stock);
	have = defined_symbols(ours);
	cr_assert(have, "nm -D --defined-only %s failed", ours);
	m = open_memstream(&missing, &mlen);
	cr_assert(m);
	for (char *s = want, *e; *s; s = e + 1) {
		e = strchr(s, '\n');
		*e = 0; /* every line of defined_symbols() ends in \n */
		nwant++;
		if (!has_line(have, s)) {
			fprintf(m, " %s", s);
			nmissing++;
		}
	}
	fclose(m);
	cr_log_info("stock %s defines %zu symbols; %zu missing from %s", stock,
		    nwant, nmissing, ours);
	cr_assert_eq(nmissing, 0, "%zu of the %zu symbols of %s are not defined "
		     "by %s:%s",
		     nmissing, nwant, stock, ours, missing);
	cr_assert(nwant >= 200, "only %zu symbols read from %s", nwant, stock);
	for (const char *const *s = (const char *const[]){
		     "GC_fg_backend", "GC_fg_get_bytes_rescanned", NULL};
	     *s; s++)
		cr_assert(has_line(have, *s), "%s does not define %s", ours, *s);
	name = soname(ours);
	cr_assert_str_eq(name, "libgc.so.1", "soname of %s", ours);
	free(name);
	free(want);
	free(have);
	free(missing);
}

/* Guile: the path of guile-3.0 or guile in PATH (or FG_GUILE). */
static bool find_guile(char *out)
{
	const char *env = getenv("FG_GUILE"), *path = getenv("PATH");
	const char *names[] = {"guile-3.0", "guile", NULL};

	if (env && *env) {
		snprintf(out, PATH_MAX, "%s", env);
		return is_file(out, X_OK);
	}
	for (const char *const *n = names; *n; n++) {
		const char *p = path ? path : "/usr/bin:/bin";

		while (*p) {
			size_t len = strcspn(p, ":");

			snprintf(out, PATH_MAX, "%.*s/%s", (int)len, p, *n);
			if (len && is_file(out, X_OK))
				return true;
			p += len + (p[len] == ':');
		}
	}
	return false;
}

/* The libgc that gc-heavy.scm says was mapped, or "". */
static void mapped_libgc(const char *err, char *out, size_t len)
{
	const char *tag = "gc-heavy: mapped ", *p = strstr(err, tag);

	out[0] = 0;
	if (p) {
		p += strlen(tag);
		snprintf(out, len, "%.*s", (int)strcspn(p, "\n"), p);
	}
}

/* check: also FG_BOEHM_CHECK=abort (the adapter's oracle: every line
 * whose bytes changed between two retrievals read dirty).  hold:
 * FG_BOEHM_HOLD's value, 0 for none; then GC_PRINT_STATS=1 too, and
 * blocks must have been held back. */
static void guile(const char *backend, bool check, bool autocard,
		  unsigned hold)
{
	char guile_exe[PATH_MAX], scm[PATH_MAX], ours[PATH_MAX + 32];
	char ours_real[PATH_MAX], mapped[PATH_MAX], st[64];
	char env_backend[64], env_ldpath[PATH_MAX + 32];
	char env_preload[PATH_MAX + 32], env_report[PATH_MAX + 32];
	char env_hold[32];
	const char *report = ch_path("report");
	const char *scale = getenv("FG_BOEHM_GUILE_SCALE");
	struct report rp;
	struct run ref, r;

	if (!find_guile(guile_exe))
		cr_skip_test("Guile is not installed (Debian: apt-get install "
			     "guile-3.0; or set FG_GUILE)");
	snprintf(ours, sizeof ours, "%s/libgc.so.1", lib_dir);
	if (!is_file(ours, R_OK))
		cr_skip_test("no adapter library at %s (build it: "
			     "adapters/boehm/build.sh; or set FG_BOEHM_LIB)",
			     ours);
	ch_path_from_env(scm, "FG_BOEHM_SCM", "boehm/gc-heavy.scm");
	cr_assert(is_file(scm, R_OK), "gc-heavy.scm not found (%s; set "
		  "FG_BOEHM_SCM)", scm);
	ORC_REQUIRE_BACKEND_NAMED(backend);
	require_reporter();
	cr_assert(realpath(ours, ours_real), "realpath %s", ours);
	if (!scale || !*scale)
		scale = "1";

	{
		const char *argv[] = {guile_exe, "--no-auto-compile", "-s", scm,
				      scale, NULL};
		const char *set[] = {"GUILE_AUTO_COMPILE=0", NULL};
		const char *unset[] = {"GC_ENABLE_INCREMENTAL=",
				       "LD_LIBRARY_PATH=", "LD_PRELOAD=", NULL};
		char **env = ch_env(set, unset);

		ref = run(argv, env, ch_path("ref.out"), ch_path("ref.err"));
		free(env);
	}
	cr_log_info("guile on the stock libgc: %s, %.2f s",
		    how(ref.status, st, sizeof st), ref.secs);
	cr_assert(ref.status == 0, "guile on the stock libgc: %s\n--- stderr "
		  "(tail) ---\n%s",
		  how(ref.status, st, sizeof st), ch_tail(ref.err, TAIL));
	mapped_libgc(ref.err, mapped, sizeof mapped);
	cr_assert(mapped[0] && strcmp(mapped, ours_real) != 0,
		  "the reference run mapped \"%s\", not a stock libgc", mapped);

	snprintf(env_backend, sizeof env_backend, "FG_BACKEND=%s", backend);
	snprintf(env_ldpath, sizeof env_ldpath, "LD_LIBRARY_PATH=%s", lib_dir);
	snprintf(env_preload, sizeof env_preload, "LD_PRELOAD=%s", report_so);
	snprintf(env_report, sizeof env_report, "FG_BOEHM_REPORT=%s", report);
	snprintf(env_hold, sizeof env_hold, "FG_BOEHM_HOLD=%u", hold);
	{
		const char *argv[] = {guile_exe, "--no-auto-compile", "-s", scm,
				      scale, NULL};
		const char *set[16] = {"GUILE_AUTO_COMPILE=0",
				       "GC_ENABLE_INCREMENTAL=1",
				       env_backend,
				       autocard ? "FG_CARD=auto" : "FG_CARD=64",
				       "FG_QUIET=1",
				       env_ldpath,
				       env_preload,
				       env_report};
		size_t n = 8;
		char **env;

		if (autocard) /* A saved byte priced at 0.1 ns: gc-heavy then
			       * turns the twins off, and on again after the
			       * wait (at 6 ns they may stay on, and the
			       * switches go unexercised). */
			set[n++] = "FG_BOEHM_AUTO_PRICE=100";
		if (check)
			set[n++] = "FG_BOEHM_CHECK=abort";
		if (hold) {
			set[n++] = env_hold;
			set[n++] = "GC_PRINT_STATS=1";
		}
		set[n] = NULL;
		env = ch_env(set, NULL);

		unlink(report);
		r = run(argv, env, ch_path("fg.out"), ch_path("fg.err"));
		free(env);
	}
	cr_log_info("guile on the adapter (FG_BACKEND=%s FG_CARD=%s): %s, "
		    "%.2f s",
		    backend, autocard ? "auto" : "64",
		    how(r.status, st, sizeof st), r.secs);
	cr_assert(r.status == 0, "guile on the adapter (FG_BACKEND=%s): %s "
		  "after %.1f s\n--- stderr (tail) ---\n%s",
		  backend, how(r.status, st, sizeof st), r.secs, ch_tail(r.err, TAIL));
	mapped_libgc(r.err, mapped, sizeof mapped);
	cr_assert_str_eq(mapped, ours_real,
			 "guile mapped %s, not the adapter's libgc",
			 mapped[0] ? mapped : "no libgc.so");
	cr_assert_str_eq(r.out, ref.out,
			 "gc-heavy.scm printed different output on the "
			 "adapter (FG_BACKEND=%s)\n--- stock ---\n%s\n--- "
			 "adapter ---\n%s\n--- adapter stderr (tail) ---\n%s",
			 backend, ref.out, r.out, ch_tail(r.err, TAIL));
	rp = read_report(report, r.pid);
	assert_adapter_ran("guile gc-heavy.scm", rp, backend, 64, r.err);
	if (check) {
		const char *v = strstr(r.err, "FG_BOEHM_CHECK: ");
		unsigned long n = 0, missed = 1;

		cr_assert(v && sscanf(v, "FG_BOEHM_CHECK: %lu retrievals "
					 "checked, %lu changed",
				      &n, &missed) == 2,
			  "no FG_BOEHM_CHECK verdict on stderr\n--- stderr "
			  "(tail) ---\n%s",
			  ch_tail(r.err, TAIL));
		cr_assert(n >= 10 && missed == 0,
			  "FG_BOEHM_CHECK: %lu retrievals, %lu changed lines "
			  "not reported",
			  n, missed);
		cr_log_info("FG_BOEHM_CHECK: %lu retrievals checked, every "
			    "changed line reported",
			    n);
	}
	if (autocard) {
		const char *v = strstr(r.err, "FG_CARD=auto: twins turned off ");
		unsigned long off = 0, on = 0;

		cr_assert(v && sscanf(v, "FG_CARD=auto: twins turned off %lu "
					 "times, on again %lu",
				      &off, &on) == 2,
			  "no FG_CARD=auto summary on stderr (FG_BOEHM_CHECK "
			  "prints it)\n--- stderr (tail) ---\n%s",
			  ch_tail(r.err, TAIL));
		/* Both switches ran under the oracle. */
		cr_assert(off >= 1 && on >= 1,
			  "FG_CARD=auto turned the twins off %lu times and on "
			  "%lu times: the switches were not exercised",
			  off, on);
	}
	if (hold) {
		const char *h = strstr(r.err, "Sweep held back ");

		cr_assert(h, "FG_BOEHM_HOLD=%u: no block was held back (no "
			     "\"Sweep held back\" in GC_PRINT_STATS's log): "
			     "the test did not try it\n--- stderr (tail) "
			     "---\n%s",
			  hold, ch_tail(r.err, TAIL));
		cr_log_info("FG_BOEHM_HOLD=%u: %.*s", hold,
			    (int)strcspn(h, "\n"), h);
	}
	cr_log_info("guile on the adapter: %lu collections, %lu bytes "
		    "rescanned",
		    rp.collections, rp.rescanned);
	free(ref.out);
	free(ref.err);
	free(r.out);
	free(r.err);
}

Test(boehm_suite, guile_uffd_async) { guile("uffd-async", false, false, 0); }
Test(boehm_suite, guile_uffd_sync) { guile("uffd-sync", false, false, 0); }
Test(boehm_suite, guile_mprotect) { guile("mprotect", false, false, 0); }
Test(boehm_suite, guile_check_uffd_async)
{
	guile("uffd-async", true, false, 0);
}
Test(boehm_suite, guile_check_uffd_sync)
{
	guile("uffd-sync", true, false, 0);
}
/* FG_CARD=auto: twins turned off (gc-heavy.scm's do not pay) and on
 * again; the oracle checks every retrieval across the switches. */
Test(boehm_suite, guile_check_auto) { guile("uffd-async", true, true, 0); }
/* FG_BOEHM_HOLD: Guile's heap with blocks held back from the sweep (gc-
 * heavy.scm holds back about a thousand in each late collection): the
 * same output as on the stock libgc, and the oracle at every retrieval. */
Test(boehm_suite, guile_check_hold) { guile("uffd-async", true, false, 32); }

#endif /* BOEHM_KVM_ONLY */
