/* test_vm.c - fgvm, the process-level VM, against native runs.
 *
 * Needs /dev/kvm: run.sh runs it on this machine's own, or inside the
 * nested-KVM sandbox (vm/sandbox/run) when there is none.  Each test runs
 * a program natively and under fgvm, in the same machine, and wants the
 * same bytes on stdout and the same exit status:
 *
 *   probe_<check>   tests/vm_probe: faults with si_addr, traps, sigaltstack,
 *                   FPU state across handlers, restarts, threads, signals
 *                   racing a blocking call, sigwait,
 *                   fork/exec/posix_spawn, mremap/brk/memfd, vDSO time,
 *                   CPUID, /proc/self/exe, kernel writes across pages
 *   exit_*          exit codes, deaths by signal
 *   ls, sort, sha256sum, python_threads, sh_pipeline, guile_gc
 *                   real programs (guile on the adapter's libgc with the
 *                   kvm backend, against stock libgc run natively)
 *   in_a_guest      the process really holds a kvm-vcpu descriptor
 *   track_writes    tests/vm_track: the kvm backend reports the writes the
 *                   VM and the kernel make for the program (I2)
 *   vmcall_fuzz     100,000 random vmcalls: no crash, nothing written
 *                   outside the program's writable memory
 *   err_*           fgvm's own errors: no /dev/kvm, no permission, not
 *                   found, not executable, unsupported (int $0x80)
 *
 * Where things are (check-local sets them; defaults beside this binary):
 *   FG_FGVM ../vm/fgvm, FG_VM_PROBE vm_probe, FG_VM_TRACK vm_track,
 *   FG_BOEHM_LIB ../adapters/boehm/lib, FG_BOEHM_SCM boehm/gc-heavy.scm.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"

#define LIMIT 600 /* seconds per program run (the sandbox is slow) */

static char fgvm[PATH_MAX], probe[PATH_MAX], track[PATH_MAX];


static void setup(void)
{
	ch_path_from_env(fgvm, "FG_FGVM", "../vm/fgvm");
	ch_path_from_env(probe, "FG_VM_PROBE", "vm_probe");
	ch_path_from_env(track, "FG_VM_TRACK", "vm_track");
	ch_mkdir("vm");
}

TestSuite(vm, .init = setup, .fini = ch_rmdir, .timeout = 3 * LIMIT);

struct out {
	int status;
	char *out, *err;
	double secs;
};

/* argv natively (under_vm false) or as fgvm -- argv, with set added to
 * the environment, in ch_dir. */
static struct out run1(const char *const *argv, bool under_vm,
		       const char *const *set)
{
	const char *full[64];
	const char *none[] = {NULL};
	int n = 0;
	char **env = ch_env(set ? set : none, NULL);
	const char *o = ch_path(under_vm ? "vm.out" : "native.out");
	const char *e = ch_path(under_vm ? "vm.err" : "native.err");
	struct ch_io io = {.dir = ch_dir, .out = o, .err = e};
	struct ch_run r;
	struct out res;

	if (under_vm) {
		full[n++] = fgvm;
		full[n++] = "--";
	}
	for (int i = 0; argv[i] && n < 62; i++)
		full[n++] = argv[i];
	full[n] = NULL;
	r = ch_run(full, env, &io, LIMIT);
	free(env);
	res.status = r.status;
	res.secs = r.secs;
	res.out = ch_slurp(o, NULL, false);
	res.err = ch_slurp(e, NULL, false);
	return res;
}

static const char *how(int st)
{
	static char buf[64];

	return ch_how(st, LIMIT, buf, sizeof buf);
}

/* The same output and status natively and under fgvm. */
static void same(const char *what, const char *const *argv,
		 const char *const *set_native, const char *const *set_vm)
{
	struct out n = run1(argv, false, set_native);
	struct out v = run1(argv, true, set_vm);
	char hn[64];

	snprintf(hn, sizeof hn, "%s", how(n.status));
	cr_log_info("%s: native %.2f s (%s), fgvm %.2f s (%s)", what, n.secs, hn, v.secs,
		    how(v.status));
	cr_assert(n.status != -1, "%s: the native run timed out", what);
	cr_assert_eq(v.status, n.status,
		     "%s: exit status under fgvm %s, native %s\n--- fgvm stderr ---\n%s",
		     what, how(v.status), hn, v.err);
	cr_assert_str_eq(v.out, n.out,
			 "%s: output differs\n--- native ---\n%s\n--- fgvm ---\n%s\n"
			 "--- fgvm stderr ---\n%s",
			 what, n.out, v.out, v.err);
	free(n.out);
	free(n.err);
	free(v.out);
	free(v.err);
}

#define PROBE(check)                                                         \
	Test(vm, probe_##check)                                              \
	{                                                                    \
		const char *argv[] = {probe, #check, NULL};                  \
		same("vm_probe " #check, argv, NULL, NULL);                  \
	}
PROBE(segv)
PROBE(traps)
PROBE(altstack)
PROBE(fpu)
PROBE(restart)
PROBE(threads)
PROBE(sigrace)
PROBE(sigwait)
PROBE(fork)
PROBE(mm)
PROBE(time)
PROBE(cpu)
PROBE(exe)
PROBE(iov)

Test(vm, exit_codes)
{
	const char *codes[] = {"exit=0", "exit=7", "exit=255", "segfault", "kill"};

	for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
		const char *argv[] = {probe, codes[i], NULL};

		same(codes[i], argv, NULL, NULL);
	}
}

/* A file of n pseudo-random lines. */
static const char *lines(const char *name, int n)
{
	const char *p = ch_path(name);
	FILE *f = fopen(p, "w");
	uint64_t s = 42;

	cr_assert(f);
	for (int i = 0; i < n; i++) {
		s = s * 6364136223846793005ULL + 1442695040888963407ULL;
		fprintf(f, "%llu line %d\n", (unsigned long long)(s >> 33), i);
	}
	fclose(f);
	return p;
}

Test(vm, ls)
{
	const char *argv[] = {"/bin/ls", "-l", "--time-style=+%s", ch_path("d"),
			      "/usr/bin/env", NULL};

	cr_assert_eq(mkdir(ch_path("d"), 0755), 0);
	lines("d/a.txt", 10);
	lines("d/b.txt", 1000);
	same("ls -l", argv, NULL, NULL);
}

Test(vm, sort)
{
	const char *argv[] = {"/usr/bin/sort", "-n", lines("in.txt", 50000), NULL};

	same("sort -n", argv, NULL, NULL);
}

Test(vm, sha256sum)
{
	const char *argv[] = {"/usr/bin/sha256sum", lines("x.txt", 20000),
			      lines("y.txt", 3), NULL};

	same("sha256sum", argv, NULL, NULL);
}

static const char *python(void)
{
	static const char *cands[] = {"/usr/bin/python3", "/usr/local/bin/python3"};

	for (size_t i = 0; i < 2; i++)
		if (access(cands[i], X_OK) == 0)
			return cands[i];
	cr_skip_test("no python3 in /usr/bin or /usr/local/bin (bootstrap installs it)");
	return NULL;
}

Test(vm, python_threads)
{
	const char *code =
		"import threading, hashlib\n"
		"out = [None] * 4\n"
		"def work(i):\n"
		"    h = hashlib.sha256()\n"
		"    for k in range(20000):\n"
		"        h.update(str(i * k).encode())\n"
		"    out[i] = (i, sum(range(i * 10000)), h.hexdigest()[:16])\n"
		"ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]\n"
		"[t.start() for t in ts]\n"
		"[t.join() for t in ts]\n"
		"print(threading.active_count(), out)\n";
	const char *argv[] = {python(), "-c", code, NULL};

	same("python3 with 4 threads", argv, NULL, NULL);
}

Test(vm, sh_pipeline)
{
	const char *argv[] = {"/bin/sh", "-c",
			      "seq 1 3000 | sort -r | head -n 5 | tr 0-9 a-j; "
			      "for i in 1 2 3; do echo $i; done | wc -l; "
			      "(sleep 0.1; echo sub) & wait; "
			      "/bin/sh -c 'exit 9'; echo inner $?; exit 3",
			      NULL};

	same("sh -c with a pipeline", argv, NULL, NULL);
}

Test(vm, guile_gc)
{
	char scm[PATH_MAX], lib[PATH_MAX], libenv[PATH_MAX + 32];
	const char *guile = access("/usr/bin/guile", X_OK) == 0	      ? "/usr/bin/guile"
			    : access("/usr/bin/guile-3.0", X_OK) == 0 ? "/usr/bin/guile-3.0"
								      : NULL;

	if (!guile)
		cr_skip_test("no guile (bootstrap installs guile-3.0)");
	ch_path_from_env(scm, "FG_BOEHM_SCM", "boehm/gc-heavy.scm");
	ch_path_from_env(lib, "FG_BOEHM_LIB", "../adapters/boehm/lib");
	snprintf(libenv, sizeof libenv, "LD_LIBRARY_PATH=%s", lib);
	{
		const char *argv[] = {guile, "--no-auto-compile", "-s", scm, NULL};
		/* Native: stock libgc.  fgvm: the adapter's, on the kvm backend
		 * (FG_BACKEND=kvm forces it: an unavailable kvm backend fails). */
		const char *set_vm[] = {libenv, "GC_ENABLE_INCREMENTAL=1", "FG_BACKEND=kvm",
					"FG_QUIET=1", NULL};
		struct stat st;
		char so[PATH_MAX + 16];

		snprintf(so, sizeof so, "%s/libgc.so.1", lib);
		if (stat(so, &st))
			cr_skip_test("the adapter's libgc is not built (%s)", so);
		same("guile gc-heavy.scm", argv, NULL, set_vm);
	}
}

Test(vm, in_a_guest)
{
	const char *code = "import os\n"
			   "fds = []\n"
			   "for f in os.listdir('/proc/self/fd'):\n"
			   "    try:\n"
			   "        fds.append(os.readlink('/proc/self/fd/' + f))\n"
			   "    except OSError:\n"
			   "        pass\n"
			   "print('vcpu' if any('kvm-vcpu' in f for f in fds) else 'none')\n";
	const char *argv[] = {python(), "-c", code, NULL};
	struct out n = run1(argv, false, NULL), v = run1(argv, true, NULL);

	cr_assert_str_eq(n.out, "none\n", "natively: %s", n.out);
	cr_assert_str_eq(v.out, "vcpu\n",
			 "under fgvm the process must hold a kvm-vcpu descriptor: %s%s",
			 v.out, v.err);
}

static void track_run(const char *what, const char *calls)
{
	const char *argv[] = {track, what, calls, NULL};
	struct out v = run1(argv, true, NULL);

	cr_log_info("%s", v.out);
	cr_assert_eq(v.status, 0, "vm_track %s: %s\n%s\n%s", what, how(v.status), v.out,
		     v.err);
	cr_assert(strstr(v.out, "0 failed"), "%s", v.out);
}

Test(vm, track_writes)
{
	track_run("writes", "0");
}

Test(vm, vmcall_fuzz)
{
	track_run("fuzz", "100000");
}

/* fgvm's own failures: status and the start of its message. */
static void fgvm_fails(const char *const *pre, const char *prog, int want,
		       const char *msg)
{
	const char *argv[16];
	int n = 0;
	struct out r;

	for (; pre && pre[n]; n++)
		argv[n] = pre[n];
	argv[n++] = fgvm;
	argv[n++] = "--";
	argv[n++] = prog;
	argv[n] = NULL;
	r = run1(argv, false, NULL);
	cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == want,
		  "%s: want exit status %d, got %s\n%s", prog, want, how(r.status), r.err);
	cr_assert(strstr(r.err, msg), "%s: the message should say \"%s\":\n%s", prog, msg,
		  r.err);
	cr_log_info("%s", r.err);
}

Test(vm, err_no_kvm)
{
	/* /dev with no kvm in it, in a mount namespace of its own. */
	const char *pre[] = {"/usr/bin/unshare", "-m", "-r", "/bin/sh", "-c",
			     "mount -t tmpfs none /dev && exec \"$0\" \"$@\"", NULL};

	/* root needs no user namespace (and cannot make one in a chroot,
	 * as in the sandbox). */
	if (geteuid() == 0)
		pre[2] = "-m";

	fgvm_fails(pre, "/bin/true", 121, "/dev/kvm: no such device");
}

Test(vm, err_kvm_permission)
{
	const char *pre[] = {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534",
			     "--clear-groups", NULL};
	struct stat st;

	if (geteuid() != 0)
		cr_skip_test("needs root, to run fgvm as another user");
	cr_assert_eq(stat("/dev/kvm", &st), 0);
	if (st.st_mode & 06)
		cr_skip_test("/dev/kvm is open to every user here (mode %o)",
			     st.st_mode & 0777);
	fgvm_fails(pre, "/bin/true", 122, "/dev/kvm: permission denied");
}

Test(vm, err_not_found)
{
	fgvm_fails(NULL, "/nonexistent/prog", 127, "No such file or directory");
	fgvm_fails(NULL, "no-such-command-anywhere", 127, "command not found");
}

Test(vm, err_not_executable)
{
	const char *p = ch_path("notelf");
	FILE *f = fopen(p, "w");

	fputs("this is text\n", f);
	fclose(f);
	chmod(p, 0755);
	fgvm_fails(NULL, p, 126, "not an ELF file");
}

Test(vm, err_unsupported)
{
	const char *argv[] = {probe, "int80", NULL};
	struct out r = run1(argv, true, NULL);

	cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 120,
		  "int $0x80 under fgvm: want exit status 120, got %s\n%s", how(r.status),
		  r.err);
	cr_assert(strstr(r.err, "32-bit system call"), "%s", r.err);
}
