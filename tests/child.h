/* child.h - running other programs from a test: a scratch directory, the
 * child's environment, a run under a time limit with its output in files,
 * and reading those files back.  Shared by the tests that run whole
 * programs (test_preload, test_boehm_suite).  The functions assert with
 * Criterion, so child.c is built into Criterion test binaries only.
 */
#ifndef FG_TEST_CHILD_H
#define FG_TEST_CHILD_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The test's scratch directory, made by ch_mkdir. */
extern char ch_dir[PATH_MAX];

/* A file next to this binary, relative ("../toolkit/.libs/x"), into out
 * (PATH_MAX bytes): the build tree, in or out of the source tree. */
void ch_beside_me(char *out, const char *rel);

/* A path from environment variable var, or else rel beside this binary
 * (ch_beside_me), made absolute if it exists, into out (PATH_MAX bytes). */
void ch_path_from_env(char *out, const char *var, const char *rel);

/* Make ch_dir, $TMPDIR/fgvm-NAME.XXXXXX (/tmp without TMPDIR). */
void ch_mkdir(const char *name);
/* Remove ch_dir and everything in it (a warning if that fails). */
void ch_rmdir(void);
/* A file in ch_dir; 8 names live at a time. */
char *ch_path(const char *name);

/* The environment for a child (caller frees the array, not the strings):
 * ours without the variables that set names (NAME=VALUE) or that unset
 * starts (NAME= or a prefix such as FG_ALIAS_), plus set.  Both
 * NULL-terminated; unset may be NULL. */
char **ch_env(const char *const *set, const char *const *unset);

/* Where a child's standard streams go. */
struct ch_io {
	const char *dir; /* working directory; NULL: ours */
	const char *in;	 /* stdin; NULL: /dev/null */
	const char *out; /* stdout, truncated */
	const char *err; /* stderr, truncated; NULL: with stdout */
};

struct ch_run {
	int status; /* wait status; -1: killed at the limit */
	pid_t pid;
	double secs;
};

/* Run argv (argv[0] a path, not looked up) with env in a process group of
 * its own, killed at limit seconds (first logging where each of its
 * threads was: state, system call, wchan); when it has exited, whatever
 * the group left behind (a forked child) is killed too.  An exec that fails is exit
 * status 127 with the reason on its stderr. */
struct ch_run ch_run(const char *const *argv, char **env,
		     const struct ch_io *io, int limit);

/* The last n bytes of s (all of it if shorter): a child's output in a
 * failure message. */
const char *ch_tail(const char *s, size_t n);

/* How a wait status (or -1 from ch_run, limit as given it) reads, in buf. */
const char *ch_how(int status, int limit, char *buf, size_t len);

/* The whole file, NUL-terminated (caller frees); its length in *len if
 * len.  A file that cannot be opened fails the test if must, else reads
 * as empty. */
char *ch_slurp(const char *path, size_t *len, bool must);

#endif /* FG_TEST_CHILD_H */
