/* fgvm.c - the fgvm command.
 *
 * `fgvm info` says what this machine offers: which tracking backends work
 * and why, which one auto-selection picks, what kind of KVM there is and
 * which of its capabilities the VM uses, and every FG_* variable (the
 * toolkit's table, env.c) with the values set.  `fgvm -- PROG ARGS` runs
 * PROG in the process-level VM (vm.c and the files it names).
 */
#include "fg.h"
#include "vmm.h"
#include "fg_compat.h"

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
};

#ifndef KVM_PATH /* overridable to test the probe's error paths */
#define KVM_PATH "/dev/kvm"
#endif

extern char **environ;

static void usage(FILE *f)
{
	fputs("usage: fgvm info [--json]\n"
	      "       fgvm [options] -- PROG [ARGS...]\n"
	      "\n"
	      "  info         what this machine offers: tracking backends, the\n"
	      "               one auto-selection picks and why, KVM and its kind,\n"
	      "               and every FG_* environment variable: grammar,\n"
	      "               default, reader, help, the value set\n"
	      "  --json       print info as one JSON object\n"
	      "  -- PROG ...  run PROG (found on PATH) in the process-level VM: its\n"
	      "               code runs in a KVM guest, its writes are tracked by\n"
	      "               the kvm backend (FG_BACKEND=kvm, chosen automatically)\n"
	      "\n"
	      "options:\n"
	      "  -v, --verbose  say what the VM chose\n"
	      "  --trace        log every system call of PROG on stderr\n"
	      "  -h, --help     this text\n"
	      "  -V, --version  print the version\n"
	      "\n"
	      "environment: `fgvm info` lists every FG_* variable, e.g.\n"
	      "  FG_BACKEND     force a backend: auto",
	      f);
	for (int id = FG_BACKEND_UFFD_ASYNC; id < FG_BACKEND_COUNT; id++)
		fprintf(f, ", %s", fg_backend_name(id));
	fputs("\n"
	      "  FG_CARD        card size: 64, 4k, ... (a power of two or page\n"
	      "                 multiple)\n"
	      "\n"
	      "exit status of fgvm info and usage errors:\n"
	      "  0   success\n"
	      "  1   error (a message says which)\n"
	      "  2   usage error\n"
	      "exit status of fgvm -- PROG: PROG's own (128+N if signal N killed it),\n"
	      "or, when fgvm itself cannot go on (with a message):\n"
	      "  120 PROG did something the VM does not support\n"
	      "  121 no /dev/kvm on this machine\n"
	      "  122 /dev/kvm is not accessible (permissions)\n"
	      "  123 KVM lacks a capability the VM needs\n"
	      "  125 internal error in fgvm\n"
	      "  126 PROG cannot be executed (not an x86-64 ELF program, ...)\n"
	      "  127 PROG not found\n",
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
	char kvm_kind[128];
	struct {
		const char *name;
		long value;
	} caps[16];
	int ncaps;
};

/* The capabilities the VM uses (required ones first). */
static const struct {
	long cap;
	const char *name;
} kvm_caps[] = {
	{KVM_CAP_USER_MEMORY, "USER_MEMORY (required)"},
	{KVM_CAP_EXT_CPUID, "EXT_CPUID (required)"},
	{KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT (required)"},
	{KVM_CAP_NR_MEMSLOTS, "NR_MEMSLOTS"},
	{KVM_CAP_MAX_VCPUS, "MAX_VCPUS"},
	{KVM_CAP_SYNC_REGS, "SYNC_REGS"},
	{KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, "MANUAL_DIRTY_LOG_PROTECT2 (kvm backend)"},
	{KVM_CAP_DIRTY_LOG_RING, "DIRTY_LOG_RING"},
	{KVM_CAP_VCPU_ATTRIBUTES, "VCPU_ATTRIBUTES (TSC offset)"},
	{KVM_CAP_MEMORY_FAULT_INFO, "MEMORY_FAULT_INFO"},
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
	{
		int kind;

		kvm_detect_kind(&kind, in->kvm_kind, sizeof in->kvm_kind);
	}
	for (size_t i = 0; i < sizeof kvm_caps / sizeof *kvm_caps; i++) {
		in->caps[in->ncaps].name = kvm_caps[i].name;
		in->caps[in->ncaps++].value = ioctl(fd, KVM_CHECK_EXTENSION, kvm_caps[i].cap);
	}
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
	fg_env_value v;
	int err;

	memset(in, 0, sizeof *in);
	lib_version(in->lib_version, sizeof in->lib_version);
	if (uname(&in->uts) != 0)
		strcpy(in->uts.release, "?");
	in->page_size = sysconf(_SC_PAGESIZE);

	for (int id = FG_BACKEND_UFFD_ASYNC; id < FG_BACKEND_COUNT; id++) {
		struct backend_info *b = &in->backends[id];

		b->name = fg_backend_name(id);
		b->available = fg_backend_probe(id, b->why, sizeof b->why) == 0;
	}

	if (fg_env_get("FG_BACKEND", &v) != 0)
		in->forced = v.text; /* even a bad one: it is why we fail */
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

/* ---- the environment: the toolkit's table, and what is set ---------------- */

/* An entry's grammar: its words for choices, else its type's. */
static const char *grammar(const fg_env_var *e, char *buf, size_t len)
{
	size_t n;

	if (e->type == FG_ENV_CHOICE) {
		snprintf(buf, len, "one of %s", e->words);
	} else if (e->type == FG_ENV_BACKEND) {
		n = (size_t)snprintf(buf, len, "one of auto");
		for (int id = FG_BACKEND_UFFD_ASYNC; id < FG_BACKEND_COUNT &&
						     n < len; id++)
			n += (size_t)snprintf(buf + n, len - n, "|%s",
					      fg_backend_name(id));
	} else {
		snprintf(buf, len, "%s", fg_env_grammar(e->type));
	}
	return buf;
}

/* Calls fn for each variable of entry e that is set: the entry's own
 * name, or a template's with each known prefix. */
static void each_set(const fg_env_var *e,
		     void (*fn)(const char *name, const char *val,
				const char *err, bool first),
		     bool *first)
{
	const char *gt = strchr(e->name, '>');
	char name[128], err[512];
	fg_env_value v;
	const char *p;
	int rc;

	for (size_t i = 0; gt ? (p = fg_env_prefix(i)) != NULL : i == 0; i++) {
		if (gt)
			snprintf(name, sizeof name, "%s%s", p, gt + 1);
		else
			snprintf(name, sizeof name, "%s", e->name);
		rc = fg_env_get(name, &v);
		if (rc == 0)
			continue;
		snprintf(err, sizeof err, "%s", rc < 0 ? fg_last_error_detail() : "");
		fn(name, v.text, rc < 0 ? err : NULL, *first);
		*first = false;
	}
}

/* Calls fn for each FG_* variable in the environment that no entry
 * knows, with the closest known name ("" if none is close). */
static void each_unknown(void (*fn)(const char *name, const char *suggest,
				    bool adapter, bool first))
{
	char name[128], suggest[128];
	bool first = true;

	for (char **ep = environ; *ep; ep++) {
		size_t n = strcspn(*ep, "=");

		if (strncmp(*ep, "FG_", 3) || n >= sizeof name)
			continue;
		snprintf(name, sizeof name, "%.*s", (int)n, *ep);
		if (fg_env_known(name, suggest, sizeof suggest))
			continue;
		fn(name, suggest, fg_env_find(name) != NULL, first);
		first = false;
	}
}

static void text_set(const char *name, const char *val, const char *err,
		     bool first)
{
	(void)first;
	if (err) /* err says name=val */
		printf("      set, bad: %s; its reader keeps the default or "
		       "fails\n",
		       err);
	else
		printf("      set: %s=%s\n", name, val);
}

static void text_unknown(const char *name, const char *suggest, bool adapter,
			 bool first)
{
	(void)first;
	printf("  warning: %s is in no entry of the table", name);
	if (adapter)
		printf(" (an adapter's variable with an unlisted prefix?)");
	if (*suggest)
		printf("; did you mean %s?", suggest);
	putchar('\n');
}

static void print_env_text(void)
{
	size_t n;
	const fg_env_var *tab = fg_env_table(&n);
	char g[256];
	bool first = true;

	printf("environment (every FG_* variable; the table is "
	       "toolkit/env.c):\n");
	for (size_t i = 0; i < n; i++) {
		const fg_env_var *e = &tab[i];

		printf("  %s: %s\n", e->name, grammar(e, g, sizeof g));
		printf("      %s\n", e->help);
		printf("      default: %s; read by %s\n", e->dflt, e->reader);
		each_set(e, text_set, &first);
	}
	printf("  adapter prefixes (FG_<ADAPTER>):");
	for (size_t i = 0; fg_env_prefix(i); i++)
		printf(" %s", fg_env_prefix(i));
	putchar('\n');
	each_unknown(text_unknown);
}

static void print_text(const struct info *in)
{
	printf("fgvm %s (libfgtk %s)\n", FG_VERSION_STRING, in->lib_version);
	printf("kernel: %s %s %s\n", in->uts.sysname, in->uts.release,
	       in->uts.machine);
	printf("page size: %ld\n", in->page_size);
	printf("backends:\n");
	for (int id = FG_BACKEND_UFFD_ASYNC; id < FG_BACKEND_COUNT; id++) {
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
	if (in->kvm_api == KVM_API_VERSION) {
		printf("kvm: %s: usable, API version %d\n", KVM_PATH,
		       in->kvm_api);
		printf("hypervisor: %s\n", in->kvm_kind);
		printf("kvm capabilities:\n");
		for (int i = 0; i < in->ncaps; i++)
			printf("  %-44s %ld\n", in->caps[i].name, in->caps[i].value);
	} else {
		printf("kvm: %s: %s\n", KVM_PATH, in->kvm_msg);
	}
	print_env_text();
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

static void json_set(const char *name, const char *val, const char *err,
		     bool first)
{
	fputs(first ? "{" : ", {", stdout);
	json_key_str("name", name, false);
	json_key_str("value", val, false);
	printf("\"valid\": %s, ", err ? "false" : "true");
	json_key_str("error", err, true);
	fputs("}", stdout);
}

static void json_unknown(const char *name, const char *suggest, bool adapter,
			 bool first)
{
	fputs(first ? "{" : ", {", stdout);
	json_key_str("name", name, false);
	printf("\"adapter_template\": %s, ", adapter ? "true" : "false");
	json_key_str("suggest", *suggest ? suggest : NULL, true);
	fputs("}", stdout);
}

static void print_env_json(void)
{
	size_t n;
	const fg_env_var *tab = fg_env_table(&n);
	char g[256];
	bool first;

	fputs("\"environment\": {\"table\": \"toolkit/env.c\", "
	      "\"prefixes\": [",
	      stdout);
	for (size_t i = 0; fg_env_prefix(i); i++) {
		fputs(i ? ", " : "", stdout);
		json_str(fg_env_prefix(i));
	}
	fputs("], \"variables\": [", stdout);
	for (size_t i = 0; i < n; i++) {
		const fg_env_var *e = &tab[i];

		fputs(i ? ", {" : "{", stdout);
		json_key_str("name", e->name, false);
		json_key_str("type", fg_env_type_name(e->type), false);
		json_key_str("grammar", grammar(e, g, sizeof g), false);
		json_key_str("default", e->dflt, false);
		json_key_str("reader", e->reader, false);
		json_key_str("help", e->help, false);
		fputs("\"set\": [", stdout);
		first = true;
		each_set(e, json_set, &first);
		fputs("]}", stdout);
	}
	fputs("], \"unknown\": [", stdout);
	each_unknown(json_unknown);
	fputs("]}", stdout);
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
	for (int id = FG_BACKEND_UFFD_ASYNC; id < FG_BACKEND_COUNT; id++) {
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
	json_key_str("hypervisor", *in->kvm_kind ? in->kvm_kind : NULL, false);
	fputs("\"capabilities\": {", stdout);
	for (int i = 0; i < in->ncaps; i++)
		printf("%s\"%s\": %ld", i ? ", " : "", in->caps[i].name,
		       in->caps[i].value);
	fputs("}, ", stdout);
	json_key_str("message", *in->kvm_msg ? in->kvm_msg : NULL, true);
	fputs("}, ", stdout);
	print_env_json();
	fputs("}\n", stdout);
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

/* PROG as execvp(3) would find it. */
static int find_program(const char *prog, char *out, size_t len)
{
	const char *path = getenv("PATH");

	if (strchr(prog, '/')) {
		snprintf(out, len, "%s", prog);
		return access(out, F_OK) == 0 ? 0 : -errno;
	}
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		const char *end = strchr(path, ':');
		size_t n = end ? (size_t)(end - path) : strlen(path);

		snprintf(out, len, "%.*s%s%s", (int)n, path, n ? "/" : "", prog);
		if (access(out, X_OK) == 0)
			return 0;
		path += n + (end ? 1 : 0);
		if (!end)
			break;
	}
	return -ENOENT;
}

static int cmd_run(int argc, char **argv)
{
	static char *opts[8];
	static char path[4096];
	const char *exec_path = NULL;
	bool trace = false, verbose = false;
	int nopts = 0, i;

	for (i = 0; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--trace")) {
			trace = true;
			opts[nopts++] = argv[i];
		} else if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose")) {
			verbose = true;
			opts[nopts++] = argv[i];
		} else if (!strcmp(argv[i], "--exec") && i + 1 < argc) {
			exec_path = argv[++i];
		} else {
			return usage_error("unknown option '%s'", argv[i]);
		}
	}
	if (i >= argc || i + 1 >= argc)
		return usage_error("no program given after --");
	argv += i + 1;
	if (exec_path) {
		/* fgvm exec'ing itself for the program: the path, then the
		 * program's argv as it was given. */
		snprintf(path, sizeof path, "%s", exec_path);
	} else if (find_program(argv[0], path, sizeof path)) {
		fprintf(stderr, "fgvm: %s: %s\n", argv[0],
			strchr(argv[0], '/') ? "No such file or directory"
					     : "command not found");
		return FGVM_EXIT_NOTFOUND;
	}
	vm_start(path, argv, environ, opts, nopts, trace, verbose);
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
	if (a[0] == '-')
		return cmd_run(argc - 1, argv + 1);
	return usage_error("unknown command '%s' (to run a program: "
			   "fgvm -- PROG ARGS)", a);
}
