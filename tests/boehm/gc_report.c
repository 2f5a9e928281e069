/* gc_report.c - LD_PRELOAD'ed into a program run by test_boehm_suite: at
 * exit, says which libgc the program ran on and whether the fgvm adapter
 * supplied its dirty bits.
 *
 * It appends one line to the file named by FG_BOEHM_REPORT:
 *   pid=N lib=adapter|stock incremental=0|1 backend=NAME|- card=N
 *   collections=N rescanned=N
 * "backend" is GC_fg_backend(), "-" when it returns NULL; lib=none: no
 * libgc in the process (a shell forked by the libtool wrapper, or a test
 * that does not use the collector).  test_boehm_suite reads only the line
 * of the pid it started (the wrapper execs the program: same pid).  Everything
 * is looked up with dlsym(), so the reporter also runs on stock libgc.
 *
 * The handler is registered with atexit() from a constructor, i.e. before
 * main and before the collector's own exit handlers, so it runs after
 * them: the adapter must still answer then (it has no exit handler that
 * tears the tracker down).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_DEFAULT */
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef const char *(*str_fn)(void);
typedef int (*int_fn)(void);
typedef unsigned long (*ulong_fn)(void);
typedef size_t (*size_fn)(void);

static void report(void)
{
	const char *path = getenv("FG_BOEHM_REPORT");
	int_fn is_incremental = (int_fn)dlsym(RTLD_DEFAULT,
					      "GC_is_incremental_mode");
	str_fn backend = (str_fn)dlsym(RTLD_DEFAULT, "GC_fg_backend");
	ulong_fn rescanned = (ulong_fn)dlsym(RTLD_DEFAULT,
					     "GC_fg_get_bytes_rescanned");
	size_fn card = (size_fn)dlsym(RTLD_DEFAULT, "GC_fg_get_card_size");
	size_fn gc_no = (size_fn)dlsym(RTLD_DEFAULT, "GC_get_gc_no");
	const char *b = NULL;
	char line[512];
	int fd, n;

	if (!path || !*path)
		return;
	if (backend)
		b = backend();
	n = snprintf(line, sizeof line,
		     "pid=%ld lib=%s incremental=%d backend=%s card=%zu "
		     "collections=%zu rescanned=%lu\n",
		     (long)getpid(),
		     !is_incremental ? "none" : backend ? "adapter" : "stock",
		     is_incremental ? is_incremental() : 0, b ? b : "-",
		     card ? card() : 0, gc_no ? gc_no() : 0,
		     rescanned ? rescanned() : 0);
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (write(fd, line, (size_t)n) != n)
		(void)0; /* the suite reports a missing line */
	close(fd);
}

__attribute__((constructor)) static void install(void)
{
	atexit(report);
}
