/* test_install.c - the installed toolkit, as a runtime author gets it.
 *
 * make check installs the build into tests/install-root (make install
 * DESTDIR=...) and passes its place here (FG_INSTALL_ROOT, _LIBDIR,
 * _INCLUDEDIR; FG_CC the compiler).  Then:
 *
 *   pkgconfig    a small program compiles against the installed headers
 *                with pkg-config's flags for fgvm (#include <fg.h> and
 *                <fg_alias.h>), links with its libs and runs;
 *   hidden       a program that calls an internal (fg_fd_rehome) does
 *                not link;
 *   exports      libfgtk.so.0 exports exactly the functions the installed
 *                headers declare FG_API, and libfgalias-preload.so those
 *                and the malloc family, nothing else.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TIMEOUT 120

static const char *root, *libdir, *incdir, *cc;
static char tmp[] = "/tmp/fgvm-install-test.XXXXXX";

static void setup(void)
{
	root = getenv("FG_INSTALL_ROOT");
	libdir = getenv("FG_INSTALL_LIBDIR");
	incdir = getenv("FG_INSTALL_INCLUDEDIR");
	cc = getenv("FG_CC");
	if (!cc || !*cc)
		cc = "cc";
	if (!root || !libdir || !incdir)
		cr_skip_test("FG_INSTALL_ROOT, _LIBDIR or _INCLUDEDIR unset: "
			     "make check sets them after installing into "
			     "tests/install-root");
	cr_assert(access(root, F_OK) == 0,
		  "%s missing: make install DESTDIR=%s failed (see "
		  "tests/install.log)",
		  root, root);
	cr_assert(mkdtemp(tmp), "mkdtemp: %m");
}

static void teardown(void)
{
	char cmd[256];

	if (strcmp(tmp + strlen(tmp) - 6, "XXXXXX")) {
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
		(void)!system(cmd);
	}
}

/* Run cmd under sh; its output (stdout and stderr) in out; exit status. */
static int run(char *out, size_t outlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int run(char *out, size_t outlen, const char *fmt, ...)
{
	char cmd[4096];
	size_t n = 0;
	va_list ap;
	FILE *f;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
	f = popen(cmd, "r");
	cr_assert(f, "popen: %m");
	while (n + 1 < outlen && fgets(out + n, (int)(outlen - n), f))
		n += strlen(out + n);
	out[n] = 0;
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void write_file(const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof path, "%s/%s", tmp, name);
	f = fopen(path, "w");
	cr_assert(f, "%s: %m", path);
	fputs(text, f);
	fclose(f);
}

/* pkg-config's answer for fgvm, as installed under root. */
static void pkgconfig(const char *what, char *out, size_t outlen)
{
	int rc = run(out, outlen,
		     "PKG_CONFIG_PATH='%s%s/pkgconfig' PKG_CONFIG_LIBDIR= "
		     "PKG_CONFIG_SYSROOT_DIR='%s' pkg-config %s fgvm",
		     root, libdir, root, what);

	cr_assert_eq(rc, 0, "pkg-config %s fgvm: %s", what, out);
	out[strcspn(out, "\n")] = 0;
}

static const char prog[] =
	"#include <fg.h>\n"
	"#include <fg_alias.h>\n"
	"#include <stdio.h>\n"
	"int main(void)\n"
	"{\n"
	"	fg_tracker *t;\n"
	"	fg_iter it;\n"
	"	void *m;\n"
	"	if (fg_version() != FG_VERSION_MAJOR * 10000 +\n"
	"	    FG_VERSION_MINOR * 100 + FG_VERSION_PATCH)\n"
	"		return 2;\n"
	"	if (fg_tracker_create(NULL, &t) || fg_region_alloc(t, 1 << 16, &m))\n"
	"		return 3;\n"
	"	((char *)m)[100] = 1;\n"
	"	if (fg_collect(t, &it) < 1)\n"
	"		return 4;\n"
	"	printf(\"ok %s %s caps 0x%x\\n\", FG_VERSION_STRING,\n"
	"	       fg_backend_name(fg_tracker_backend(t)), fg_tracker_caps(t));\n"
	"	return fg_tracker_destroy(t) ? 5 : 0;\n"
	"}\n";

Test(install, pkgconfig, .init = setup, .fini = teardown, .timeout = TIMEOUT)
{
	char cflags[1024], libs[1024], out[4096];
	int rc;

	pkgconfig("--cflags", cflags, sizeof cflags);
	pkgconfig("--libs", libs, sizeof libs);
	cr_log_info("pkg-config fgvm: %s %s", cflags, libs);
	cr_assert(strstr(cflags, "/fgvm"), "Cflags without .../include/fgvm: "
					   "%s", cflags);
	write_file("prog.c", prog);
	rc = run(out, sizeof out,
		 "cd '%s' && %s -std=gnu11 -Wall -Wextra -Werror %s prog.c %s "
		 "-o prog",
		 tmp, cc, cflags, libs);
	cr_assert_eq(rc, 0, "compiling against the installed headers "
			    "failed:\n%s",
		     out);
	rc = run(out, sizeof out, "cd '%s' && FG_QUIET=1 LD_LIBRARY_PATH='%s%s' "
				  "./prog",
		 tmp, root, libdir);
	cr_assert_eq(rc, 0, "the program exited with %d: %s", rc, out);
	cr_assert(!strncmp(out, "ok ", 3), "the program said: %s", out);
	cr_log_info("%s", out);
}

Test(install, hidden, .init = setup, .fini = teardown, .timeout = TIMEOUT)
{
	char cflags[1024], libs[1024], out[4096];
	int rc;

	pkgconfig("--cflags", cflags, sizeof cflags);
	pkgconfig("--libs", libs, sizeof libs);
	write_file("internal.c", "int fg_fd_rehome(int fd);\n"
				 "int main(void) { return fg_fd_rehome(0); }\n");
	rc = run(out, sizeof out, "cd '%s' && %s %s internal.c %s -o internal",
		 tmp, cc, cflags, libs);
	cr_assert_neq(rc, 0, "a program calling the internal fg_fd_rehome "
			     "linked against the installed libfgtk");
	cr_assert(strstr(out, "fg_fd_rehome"),
		  "the link failed, but not for fg_fd_rehome:\n%s", out);
}

/* Whether name is in the space-separated list (" a b c "). */
static bool listed(const char *list, const char *name)
{
	char key[256];

	snprintf(key, sizeof key, " %s ", name);
	return strstr(list, key) != NULL;
}

/* The dynamic symbols a library defines, space-separated, in out. */
static void exports(const char *lib, char *out, size_t outlen)
{
	int rc = run(out, outlen,
		     "nm -D --defined-only '%s%s/%s' | awk '{ print $3 }' | "
		     "tr '\\n' ' '",
		     root, libdir, lib);

	cr_assert_eq(rc, 0, "nm -D %s: %s", lib, out);
}

Test(install, exports, .init = setup, .fini = teardown, .timeout = TIMEOUT)
{
	static char out[16384], api[sizeof out + 1] = " ", syms[16384];
	static const char *malloc_family[] = {
		"malloc", "free", "calloc", "realloc", "posix_memalign",
		"aligned_alloc", "memalign", "valloc", "pvalloc",
		"malloc_usable_size",
	};
	static const char *libs[] = {"libfgtk.so.0",
				     "libfgalias-preload.so"};
	size_t napi = 0;
	int rc;

	/* The functions the installed headers declare. */
	rc = run(out, sizeof out,
		 "sed -n 's/^FG_API [^(]*[ *]\\(fg_[a-z0-9_]*\\)(.*/\\1/p' "
		 "'%s%s'/fgvm/*.h | tr '\\n' ' '",
		 root, incdir);
	cr_assert_eq(rc, 0, "the installed headers: %s", out);
	snprintf(api + 1, sizeof api - 1, "%s", out);
	for (const char *p = api; *p; p++)
		napi += p[0] == ' ' && p[1] && p[1] != ' ';
	cr_assert_gt(napi, 40, "only %zu FG_API functions in the installed "
			       "headers",
		     napi);
	for (size_t i = 0; i < sizeof libs / sizeof *libs; i++) {
		bool shim = i == 1;
		char *save, *s;
		size_t n = 0;

		exports(libs[i], syms, sizeof syms);
		for (s = strtok_r(syms, " ", &save); s;
		     s = strtok_r(NULL, " ", &save)) {
			bool ok = listed(api, s);

			for (size_t k = 0; shim && !ok &&
					   k < sizeof malloc_family /
						       sizeof *malloc_family;
			     k++)
				ok = !strcmp(s, malloc_family[k]);
			cr_expect(ok, "%s exports %s, which no installed "
				      "header declares FG_API",
				  libs[i], s);
			n++;
		}
		cr_log_info("%s: %zu symbols exported", libs[i], n);
	}
	/* And libfgtk.so.0 has every one but the shim's own two. */
	exports(libs[0], syms, sizeof syms);
	memmove(syms + 1, syms, strlen(syms) + 1);
	syms[0] = ' ';
	for (char *save, *s = strtok_r(api, " ", &save); s;
	     s = strtok_r(NULL, " ", &save))
		cr_expect(!strncmp(s, "fg_alias_preload_", 17) ||
				  listed(syms, s),
			  "libfgtk.so.0 does not export %s", s);
}
