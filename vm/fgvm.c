/* fgvm.c - the fgvm command.
 *
 * `fgvm info` says what this machine offers the toolkit: which tracking
 * backends work and why, which one auto-selection picks, and whether KVM
 * is usable.  Running a program under the process-level VM
 * (`fgvm -- PROG ARGS`) is not built yet; it fails with FGVM_EXIT_NOTIMPL.
 */
#include "fg.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/utsname.h>
#include <unistd.h>

enum {
	FGVM_EXIT_OK = 0,
	FGVM_EXIT_ERROR = 1,
	FGVM_EXIT_USAGE = 2,
	FGVM_EXIT_NOTIMPL = 64,
};

#ifndef KVM_PATH /* overridable to test the probe's error paths */
#define KVM_PATH "/dev/kvm"
#endif

static void usage(FILE *f)
{
	fputs("usage: fgvm info [--json]\n"
	      "       fgvm [options] -- PROG [ARGS...]\n"
	      "\n"
	      "  info         what this machine offers: tracking backends, the\n"
	      "               one auto-selection picks and why, and KVM\n"
	      "  --json       print info as one JSON object\n"
	      "  -- PROG ...  run PROG under the process-level VM (not implemented yet)\n"
	      "\n"
	      "options:\n"
	      "  -h, --help     this text\n"
	      "  -V, --version  print the version\n"
	      "\n"
	      "environment:\n"
	      "  FG_BACKEND     force a backend: auto",
	      f);
	for (int id = FG_BACKEND_UFFD_ASYNC; id < FG_BACKEND_COUNT; id++)
		fprintf(f, ", %s", fg_backend_name(id));
	fputs("\n"
	      "  FG_CARD        card size in bytes\n"
	      "\n"
	      "exit status:\n"
	      "  0   success\n"
	      "  1   error (a message says which)\n"
	      "  2   usage error\n"
	      "  64  not implemented yet\n",
	      f);
}

static int usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("fgvm: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n", stderr);
	usage(stderr);
	return FGVM_EXIT_USAGE;
}

static void lib_version(char *buf, size_t len)
{
	int v = fg_version();

	snprintf(buf, len, "%d.%d.%d", v / 10000, v / 100 % 100, v % 100);
}

/* What `info` reports, gathered once and printed as text or JSON. */
struct backend_info {
	const char *name;
	bool available;
	char why[256];
};

struct info {
	char lib_version[32];
	struct utsname uts;
	long page_size;
	struct backend_info backends[FG_BACKEND_COUNT];
	const char *forced;	/* FG_BACKEND, if set */
	const char *selected;	/* NULL if tracker creation failed */
	char selected_why[512];
	bool kvm_present;
	bool kvm_openable;
	int kvm_api;		/* -1 if unknown */
	char kvm_msg[256];	/* why not usable, or "" */
};

static void probe_kvm(struct info *in)
{
	int fd = open(KVM_PATH, O_RDWR | O_CLOEXEC);

	in->kvm_api = -1;
	if (fd < 0) {
		int e = errno;

		in->kvm_present = e != ENOENT && e != ENODEV && e != ENXIO;
		if (!in->kvm_present)
			snprintf(in->kvm_msg, sizeof in->kvm_msg,
				 "not present (no KVM on this machine, or the kvm module is not loaded)");
		else if (e == EACCES || e == EPERM)
			snprintf(in->kvm_msg, sizeof in->kvm_msg,
				 "%s (add your user to group kvm or run as root)",
				 strerror(e));
		else
			snprintf(in->kvm_msg, sizeof in->kvm_msg, "%s",
				 strerror(e));
		return;
	}
	in->kvm_present = in->kvm_openable = true;
	in->kvm_api = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (in->kvm_api < 0)
		snprintf(in->kvm_msg, sizeof in->kvm_msg,
			 "KVM_GET_API_VERSION: %s", strerror(errno));
	else if (in->kvm_api != KVM_API_VERSION)
		snprintf(in->kvm_msg, sizeof in->kvm_msg,
			 "API version %d, fgvm is built for %d", in->kvm_api,
			 KVM_API_VERSION);
	close(fd);
}

/* Returns false if something could not be found out. */
static bool gather(struct info *in)
{
	bool ok = true;
	fg_tracker *t;
	int err;

	memset(in, 0, sizeof *in);
	lib_version(in->lib_version, sizeof in->lib_version);
	if (uname(&in->uts) != 0)
		strcpy(in->uts.release, "?");
	in->page_size = sysconf(_SC_PAGESIZE);

	for (int id = FG_BACKEND_UFFD_ASYNC; id <= FG_BACKEND_NONE; id++) {
		struct backend_info *b = &in->backends[id];

		b->name = fg_backend_name(id);
		b->available = fg_backend_probe(id, b->why, sizeof b->why) == 0;
	}

	in->forced = getenv("FG_BACKEND");
	if (in->forced && !*in->forced)
		in->forced = NULL;
	err = fg_tracker_create(NULL, &t);
	if (err == 0) {
		in->selected = fg_backend_name(fg_tracker_backend(t));
		snprintf(in->selected_why, sizeof in->selected_why, "%s",
			 fg_tracker_why(t));
		fg_tracker_destroy(t);
	} else {
		const char *detail = fg_last_error_detail();

		snprintf(in->selected_why, sizeof in->selected_why, "%s%s%s",
			 fg_strerror(err), *detail ? ": " : "", detail);
		ok = false;
	}

	probe_kvm(in);
	return ok;
}

static void print_text(const struct info *in)
{
	printf("fgvm %s (libfgtk %s)\n", FG_VERSION_STRING, in->lib_version);
	printf("kernel: %s %s %s\n", in->uts.sysname, in->uts.release,
	       in->uts.machine);
	printf("page size: %ld\n", in->page_size);
	printf("backends:\n");
	for (int id = FG_BACKEND_UFFD_ASYNC; id <= FG_BACKEND_NONE; id++) {
		const struct backend_info *b = &in->backends[id];

		printf("  %-11s %-12s %s\n", b->name,
		       b->available ? "available" : "unavailable", b->why);
	}
	if (in->selected)
		printf("selected: %s (%s)\n", in->selected, in->selected_why);
	else
		printf("selected: failed%s%s%s: %s\n",
		       in->forced ? " (FG_BACKEND=" : "",
		       in->forced ? in->forced : "", in->forced ? ")" : "",
		       in->selected_why);
	if (in->kvm_api == KVM_API_VERSION)
		printf("kvm: %s: usable, API version %d\n", KVM_PATH,
		       in->kvm_api);
	else
		printf("kvm: %s: %s\n", KVM_PATH, in->kvm_msg);
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c == '\n')
			fputs("\\n", stdout);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void json_key_str(const char *key, const char *val, bool last)
{
	printf("\"%s\": ", key);
	if (val)
		json_str(val);
	else
		fputs("null", stdout);
	fputs(last ? "" : ", ", stdout);
}

static void print_json(const struct info *in)
{
	fputs("{", stdout);
	json_key_str("version", FG_VERSION_STRING, false);
	json_key_str("library_version", in->lib_version, false);
	printf("\"kernel\": {");
	json_key_str("sysname", in->uts.sysname, false);
	json_key_str("release", in->uts.release, false);
	json_key_str("machine", in->uts.machine, true);
	printf("}, \"page_size\": %ld, \"backends\": [", in->page_size);
	for (int id = FG_BACKEND_UFFD_ASYNC; id <= FG_BACKEND_NONE; id++) {
		const struct backend_info *b = &in->backends[id];

		fputs(id == FG_BACKEND_UFFD_ASYNC ? "{" : ", {", stdout);
		json_key_str("name", b->name, false);
		printf("\"available\": %s, ", b->available ? "true" : "false");
		json_key_str("why", b->why, true);
		fputs("}", stdout);
	}
	fputs("], \"selected\": {", stdout);
	json_key_str("backend", in->selected, false);
	json_key_str("forced", in->forced, false);
	json_key_str("why", in->selected_why, true);
	printf("}, \"kvm\": {\"path\": \"%s\", \"present\": %s, "
	       "\"openable\": %s, ",
	       KVM_PATH, in->kvm_present ? "true" : "false",
	       in->kvm_openable ? "true" : "false");
	if (in->kvm_api >= 0)
		printf("\"api_version\": %d, ", in->kvm_api);
	else
		fputs("\"api_version\": null, ", stdout);
	json_key_str("message", *in->kvm_msg ? in->kvm_msg : NULL, true);
	fputs("}}\n", stdout);
}

static int cmd_info(int argc, char **argv)
{
	bool json = false;
	struct info in;
	bool ok;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else
			return usage_error("info: unknown argument '%s'",
					   argv[i]);
	}
	ok = gather(&in);
	if (json)
		print_json(&in);
	else
		print_text(&in);
	if (fflush(stdout) != 0)
		return FGVM_EXIT_ERROR;
	return ok ? FGVM_EXIT_OK : FGVM_EXIT_ERROR;
}

int main(int argc, char **argv)
{
	const char *a = argc > 1 ? argv[1] : NULL;

	if (!a)
		return usage_error("no command given");
	if (strcmp(a, "info") == 0)
		return cmd_info(argc - 2, argv + 2);
	if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
		usage(stdout);
		return FGVM_EXIT_OK;
	}
	if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
		char lib[32];

		lib_version(lib, sizeof lib);
		printf("fgvm %s (libfgtk %s)\n", FG_VERSION_STRING, lib);
		return FGVM_EXIT_OK;
	}
	if (strcmp(a, "--") == 0) {
		if (argc < 3)
			return usage_error("no program given after --");
		fprintf(stderr, "fgvm: running programs under the VM is not "
				"implemented yet (see README)\n");
		return FGVM_EXIT_NOTIMPL;
	}
	if (a[0] == '-')
		return usage_error("unknown option '%s'", a);
	return usage_error("unknown command '%s' (to run a program: "
			   "fgvm -- PROG ARGS)", a);
}
