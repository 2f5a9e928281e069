/* child.c - running other programs from a test; see child.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* config.h defines it in the autotools build */
#endif
#include "child.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

char ch_dir[PATH_MAX];

void ch_beside_me(char *out, const char *rel)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);

	cr_assert(n > 0, "readlink /proc/self/exe: %s", strerror(errno));
	exe[n] = 0;
	snprintf(out, PATH_MAX, "%s/%s", dirname(exe), rel);
}

void ch_path_from_env(char *out, const char *var, const char *rel)
{
	const char *v = getenv(var);
	char tmp[PATH_MAX];

	if (v && *v)
		snprintf(tmp, sizeof tmp, "%s", v);
	else
		ch_beside_me(tmp, rel);
	/* Absolute if it exists: the programs run in another directory. */
	if (!realpath(tmp, out))
		snprintf(out, PATH_MAX, "%s", tmp);
}

void ch_mkdir(const char *name)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(ch_dir, sizeof ch_dir, "%s/fgvm-%s.XXXXXX",
		 tmp && *tmp ? tmp : "/tmp", name);
	cr_assert(mkdtemp(ch_dir), "mkdtemp %s: %s", ch_dir, strerror(errno));
}

void ch_rmdir(void)
{
	char cmd[PATH_MAX + 16];

	/* rm -rf only what ch_mkdir made. */
	if (ch_dir[0] && strstr(ch_dir, "/fgvm-")) {
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", ch_dir);
		if (system(cmd) != 0)
			cr_log_warn("could not remove %s", ch_dir);
	}
}

char *ch_path(const char *name)
{
	static char buf[8][PATH_MAX + 64];
	static unsigned k;
	char *p = buf[k++ % 8];

	snprintf(p, sizeof buf[0], "%.*s/%s", PATH_MAX - 1, ch_dir, name);
	return p;
}

/* Whether environment entry e is one set or unset replaces or removes. */
static bool dropped(const char *e, const char *const *set,
		    const char *const *unset)
{
	for (size_t j = 0; set[j]; j++)
		if (!strncmp(e, set[j], strcspn(set[j], "=") + 1))
			return true;
	for (size_t j = 0; unset && unset[j]; j++)
		if (!strncmp(e, unset[j], strlen(unset[j])))
			return true;
	return false;
}

char **ch_env(const char *const *set, const char *const *unset)
{
	size_t n = 0, k = 0;
	char **env;

	while (environ[n])
		n++;
	for (size_t i = 0; set[i]; i++)
		n++;
	env = calloc(n + 1, sizeof *env);
	cr_assert(env);
	for (size_t i = 0; environ[i]; i++)
		if (!dropped(environ[i], set, unset))
			env[k++] = environ[i];
	for (size_t i = 0; set[i]; i++)
		env[k++] = (char *)set[i];
	env[k] = NULL;
	return env;
}

/* In the child, between fork and exec. */
static void exec_child(const char *const *argv, char **env,
		       const struct ch_io *io)
{
	int in = open(io->in ? io->in : "/dev/null", O_RDONLY);
	int out = open(io->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int err = io->err ? open(io->err, O_WRONLY | O_CREAT | O_TRUNC, 0644)
			  : out;

	setpgid(0, 0);
	if (in < 0 || out < 0 || err < 0 || (io->dir && chdir(io->dir) != 0))
		_exit(126);
	dup2(in, 0);
	dup2(out, 1);
	dup2(err, 2);
	execve(argv[0], (char *const *)argv, env);
	dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

static double since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) +
	       (now.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Where each thread of pid is, on the test's log: its state, the system
 * call it is in and the kernel function it sleeps in.  For a run about
 * to be killed at its limit: a hang says where it hung. */
static void log_threads(pid_t pid)
{
	static const char *const file[] = {"stat", "syscall", "wchan"};
	char dir[64], path[64 + 256 + 16];
	struct dirent *d;
	DIR *dp;
	int n = 0;

	snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
	dp = opendir(dir);
	if (!dp) {
		cr_log_warn("pid %d at its limit: %s: %s", (int)pid, dir,
			    strerror(errno));
		return;
	}
	while ((d = readdir(dp)) && n < 64) {
		char *v[3];
		const char *st;

		if (d->d_name[0] == '.')
			continue;
		for (int i = 0; i < 3; i++) {
			snprintf(path, sizeof path, "%s/%s/%s", dir, d->d_name,
				 file[i]);
			v[i] = ch_slurp(path, NULL, false);
			v[i][strcspn(v[i], "\n")] = 0;
		}
		st = strrchr(v[0], ')');
		cr_log_warn("pid %d at its limit: thread %.*s state %c, "
			    "syscall %s, wchan %s",
			    (int)pid, st ? (int)(st + 1 - v[0]) : 0, v[0],
			    st && st[1] && st[2] ? st[2] : '?',
			    *v[1] ? v[1] : "?", *v[2] ? v[2] : "?");
		for (int i = 0; i < 3; i++)
			free(v[i]);
		n++;
	}
	closedir(dp);
}

struct ch_run ch_run(const char *const *argv, char **env,
		     const struct ch_io *io, int limit)
{
	struct timespec t0, nap = {0, 5000000};
	struct ch_run r = {0};
	pid_t pid;
	int st;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid = fork();
	cr_assert(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0)
		exec_child(argv, env, io);
	/* Both sides set the group: either may run first. */
	setpgid(pid, pid);
	r.pid = pid;
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);

		r.secs = since(&t0);
		if (w == pid) {
			r.status = st;
			break;
		}
		cr_assert(w == 0, "waitpid: %s", strerror(errno));
		if (r.secs > limit) {
			log_threads(pid);
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			r.status = -1;
			break;
		}
		nanosleep(&nap, NULL);
	}
	kill(-pid, SIGKILL);
	return r;
}

const char *ch_how(int status, int limit, char *buf, size_t len)
{
	if (status == -1)
		snprintf(buf, len, "killed after the %d s limit", limit);
	else if (WIFEXITED(status))
		snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(buf, len, "wait status %#x", status);
	return buf;
}

char *ch_slurp(const char *path, size_t *len, bool must)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0, r;

	cr_assert(f || !must, "open %s: %s", path, strerror(errno));
	if (!f) {
		if (len)
			*len = 0;
		return strdup("");
	}
	do {
		if (n + 65536 + 1 > cap) {
			cap = (n + 65536 + 1) * 2;
			buf = realloc(buf, cap);
			cr_assert(buf);
		}
		r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
	} while (r > 0);
	fclose(f);
	buf[n] = 0;
	if (len)
		*len = n;
	return buf;
}

const char *ch_tail(const char *s, size_t n)
{
	size_t len = strlen(s);

	return len > n ? s + len - n : s;
}
