/* env.c - every FG_* environment variable, in one table with one grammar
 * per type (fg.h).
 *
 * Invariants:
 *  - Every FG_* name the tree passes to getenv, and every suffix
 *    fga_config_env reads, has an entry here (tests/test_env.c scans the
 *    sources).
 *  - The toolkit, fgvm and the adapters read their variables through
 *    fg_env_get only, so a value means the same to all of them: FG_CARD=4k
 *    is 4096 to the tracker, to ALIAS and to every adapter.
 *  - Nothing here calls malloc: the ALIAS preload shim reads its settings
 *    while it is becoming malloc.
 * Test-harness variables (reader "tests") are listed so that `fgvm info`
 * knows them, but their readers are test programs and scripts.
 */
#include "fg_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ADAPTER "adapters (fga_config_env)"
#define TESTS "tests (make check)"

static const fg_env_var table[] = {
	/* The toolkit. */
	{"FG_BACKEND", FG_ENV_BACKEND, NULL,
	 "auto: the best the kernel has (fgvm info says which)",
	 "toolkit (fg_tracker_create), fgvm, adapters",
	 "force a tracking backend; one this machine lacks makes trackers "
	 "fail"},
	{"FG_CARD", FG_ENV_SIZE_AUTO, NULL,
	 "the page size; auto in the Boehm adapter",
	 "toolkit (fg_tracker_create, ALIAS), adapters (fga_create)",
	 "card size: a power of two from 64, or a page multiple; auto "
	 "(adapters only): 64-byte cards while twins pay, page cards "
	 "otherwise"},
	{"FG_PRECISION", FG_ENV_CHOICE, "page|diff", "page",
	 "toolkit (fg_tracker_create)",
	 "sub-page precision where fg_options leaves it at page: diff "
	 "compares written pages with twins"},
	{"FG_TWINS", FG_ENV_CHOICE, "hot|sticky|adaptive", "hot",
	 "toolkit (fg_tracker_create)",
	 "DIFF's twin policy where fg_options leaves it at hot (fg.h)"},
	{"FG_TWIN_FORM", FG_ENV_CHOICE, "copy|digest", "copy",
	 "toolkit (fg_tracker_create)",
	 "DIFF: what a twin is where fg_options does not ask for digests: "
	 "copy: the page (exact); digest: 8 bytes per 64-byte line, an "
	 "eighth of the memory, a changed line missed with probability "
	 "7/2^64 (fg.h, FG_TWIN_DIGEST)"},
	{"FG_TWIN_HUGE", FG_ENV_FLAG, NULL, "1",
	 "toolkit (fg_tracker_create)",
	 "DIFF: 1: under a cap that holds every tracked page, twins go on "
	 "transparent huge pages (fewer first-touch faults); 0: 4 KiB pages"},
	{"FG_EXEMPT_GROUPED", FG_ENV_FLAG, NULL, "1",
	 "toolkit (fg_tracker_create)",
	 "uffd-async with exempt pages: 1: one scan for the written pages, "
	 "then one re-protecting collection per group of them; 0: one per "
	 "run of watched pages between exempt ones"},
	{"FG_REPROTECT", FG_ENV_CHOICE, "scan|runs|auto", "scan",
	 "toolkit (fg_tracker_create)",
	 "uffd-async: how written pages are re-protected: scan: one "
	 "write-protecting PAGEMAP_SCAN (a TLB flush per 2 MiB holding "
	 "written pages); runs: a read-only scan, then a call per run of "
	 "written pages; auto (experimental): runs while a region's written "
	 "pages are sparse (2 runs or fewer per 2 MiB touched), scan "
	 "otherwise"},
	{"FG_QUIET", FG_ENV_FLAG, NULL, "0",
	 "toolkit (fg_tracker_create, fg_register)",
	 "1: no warning when auto-selection passes over a better backend or "
	 "a region is a shared file"},
	/* The ALIAS malloc shim. */
	{"FG_ALIAS_CAPACITY", FG_ENV_SIZE, NULL, "1G",
	 "libfgalias-preload.so",
	 "the ALIAS heap's size; past it glibc's malloc takes over"},
	{"FG_ALIAS_STATS", FG_ENV_FLAG, NULL, "0", "libfgalias-preload.so",
	 "1: a summary of the heap's work on stderr at exit"},
	{"FG_ALIAS_FORK", FG_ENV_CHOICE, "copy|share", "copy",
	 "libfgalias-preload.so",
	 "a forked child copies the heap, or shares it (safe only if "
	 "children never write inherited objects)"},
	/* The adapters: fga_config_env(c, PREFIX) reads PREFIX_<suffix>. */
	{"FG_<ADAPTER>_TWINS", FG_ENV_CHOICE, "sticky|adaptive|hot|none",
	 "sticky", ADAPTER,
	 "below page-sized cards: DIFF's twin policy, or none for page "
	 "precision"},
	{"FG_<ADAPTER>_TWIN_FORM", FG_ENV_CHOICE, "copy|digest", "digest",
	 "adapters (fga_config_env)",
	 "below page-sized cards: twins as line digests (an eighth of the "
	 "memory; the Boehm and Racket adapters' default) or page copies "
	 "(exact; fg.h, FG_TWIN_DIGEST)"},
	{"FG_<ADAPTER>_TWIN_CAP", FG_ENV_SIZE_PCT, NULL,
	 "100% with sticky, 10% with adaptive", ADAPTER,
	 "cap on the twins' memory, in bytes or percent of the heap"},
	{"FG_<ADAPTER>_EXEMPT", FG_ENV_FLAG, NULL, "1", ADAPTER,
	 "0: watch free and young heap blocks too"},
	{"FG_<ADAPTER>_PRECLEAN", FG_ENV_FLAG, NULL, "1", ADAPTER,
	 "0: retrieve dirty cards only in the pause, not also before it"},
	{"FG_<ADAPTER>_HOT", FG_ENV_COUNT, NULL, "0 (the adapter's own)",
	 ADAPTER,
	 "page cards: a block written at two retrievals in a row stays "
	 "unwatched, read whole, for N retrievals; 0: never"},
	{"FG_<ADAPTER>_CHECK", FG_ENV_CHOICE, "0|1|abort", "0", ADAPTER,
	 "an oracle: count changed lines read clean (1), or abort at the "
	 "first; slow"},
	{"FG_<ADAPTER>_AUTO_LOG", FG_ENV_FLAG, NULL, "0", ADAPTER,
	 "FG_CARD=auto: print each judgement"},
	{"FG_<ADAPTER>_HOLD", FG_ENV_COUNT, NULL, "0", ADAPTER,
	 "cards below a page, twins on: leave unswept a block of small "
	 "objects whose live objects overlap N of its 64 lines or more "
	 "(1-64; 0: never); fewer lines to rescan, more memory"},
	{"FG_<ADAPTER>_ROOTS", FG_ENV_FLAG, NULL, "1", ADAPTER,
	 "static roots (data segments, registered ranges) of 4 pages or "
	 "more tracked at page precision on uffd-async, so that a partial "
	 "collection scans only their written pages; 0: all of them every "
	 "time"},
	{"FG_<ADAPTER>_AUTO_PRICE", FG_ENV_COUNT, NULL, "6000", ADAPTER,
	 "FG_CARD=auto: what a byte not rescanned is worth against the "
	 "twins' cost, in picoseconds; lower turns twins off sooner"},
	{"FG_BOEHM_STATS", FG_ENV_FLAG, NULL, "0",
	 "adapters/boehm (libgc.so.1)",
	 "1: a summary of the adapter's work on stderr at exit"},
	{"FG_RACKET", FG_ENV_FLAG, NULL, "0: the stock mprotect barrier",
	 "adapters/racket (racket3m)",
	 "1: Racket BC's write barrier from the toolkit"},
	{"FG_RACKET_STATS", FG_ENV_FLAG, NULL, "0",
	 "adapters/racket (racket3m)",
	 "1: a summary of the adapter's work on stderr at exit"},
	{"FG_RACKET_ARRAY_CARD", FG_ENV_SIZE, NULL, "64",
	 "adapters/racket (racket3m)",
	 "card of big objects (vectors, hash-table arrays), with sticky "
	 "twins; 4k: page precision"},
	{"FG_RACKET_UNWATCH", FG_ENV_FLAG, NULL, "1",
	 "adapters/racket (racket3m)",
	 "0: watch every page written, also those stock leaves "
	 "un-protected"},
	{"FG_RACKET_WHOLE", FG_ENV_FLAG, NULL, "1",
	 "adapters/racket (racket3m)",
	 "0: a written 16 KiB page is not un-protected whole at the "
	 "collection (only its written 4 KiB pages are writable)"},
	{"FG_RACKET_ARRAY_MIN", FG_ENV_SIZE, NULL, "256k",
	 "adapters/racket (racket3m)",
	 "big objects from this size up get FG_RACKET_ARRAY_CARD's cards"},
	/* The tests and their runner. */
	{"FG_SEED", FG_ENV_COUNT, NULL, "random, printed by each test", TESTS,
	 "replay a random schedule"},
	{"FG_TEST_JOBS", FG_ENV_COUNT, NULL, "1", TESTS,
	 "tests/run.sh: Criterion jobs per binary"},
	{"FG_TEST_TIMEOUT", FG_ENV_COUNT, NULL, "600", TESTS,
	 "tests/run.sh: seconds per test binary"},
	{"FG_SANDBOX_TIMEOUT", FG_ENV_COUNT, NULL, "1800", TESTS,
	 "tests/run.sh: seconds per binary in the nested-KVM sandbox"},
	{"FG_TEST_UNANNOUNCED", FG_ENV_FLAG, NULL, "0", TESTS,
	 "1: leave pinned-page I/O unannounced, to show it missed"},
	{"FG_BOEHM_FULL", FG_ENV_FLAG, NULL, "0", TESTS,
	 "1: Boehm's own tests at full length"},
	{"FG_BOEHM_RUN_LIMIT", FG_ENV_COUNT, NULL, "the test's own", TESTS,
	 "seconds per Boehm test program"},
	{"FG_BOEHM_GUILE_SCALE", FG_ENV_COUNT, NULL, "the test's own", TESTS,
	 "the Guile workload's size"},
	{"FG_BOEHM_SELFTEST", FG_ENV_FLAG, NULL, "0", TESTS,
	 "1: run the card tests on Boehm's manual VDB (they must fail)"},
	{"FG_BOEHM_ALLOW_STOCK", FG_ENV_FLAG, NULL, "0", TESTS,
	 "1: run the card tests on a libgc without the adapter"},
	{"FG_BOEHM_REPORT", FG_ENV_TEXT, NULL, "none", TESTS,
	 "where the preloaded reporter writes its report"},
	{"FG_STOCK_LIBGC", FG_ENV_TEXT, NULL, "the system's libgc.so.1", TESTS,
	 "the stock libgc whose symbols ours must export"},
	{"FG_GUILE", FG_ENV_TEXT, NULL, "guile-3.0 on PATH", TESTS,
	 "the Guile to run the Boehm tests with"},
	{"FG_SRCDIR", FG_ENV_TEXT, NULL, "set by make check", TESTS,
	 "the source tree, for tests that read it"},
	{"FG_FGVM", FG_ENV_TEXT, NULL, "set by make check", TESTS,
	 "the fgvm binary under test"},
	{"FG_SANDBOX", FG_ENV_TEXT, NULL, "set by make check", TESTS,
	 "the nested-KVM sandbox runner"},
	{"FG_VM_PROBE", FG_ENV_TEXT, NULL, "set by make check", TESTS,
	 "a helper program of test_vm"},
	{"FG_VM_TRACK", FG_ENV_TEXT, NULL, "set by make check", TESTS,
	 "a helper program of test_vm"},
	{"FG_PRELOAD_SO", FG_ENV_TEXT, NULL, "set by make check", TESTS,
	 "the ALIAS shim under test"},
	{"FG_PRELOAD_PROBE", FG_ENV_TEXT, NULL, "set by make check", TESTS,
	 "a helper program of test_preload"},
	{"FG_INSTALL_ROOT", FG_ENV_TEXT, NULL, "set by make check", TESTS,
	 "where make check installed the tree test_install checks"},
	{"FG_INSTALL_LIBDIR", FG_ENV_TEXT, NULL, "set by make check", TESTS,
	 "the configured libdir"},
	{"FG_INSTALL_INCLUDEDIR", FG_ENV_TEXT, NULL, "set by make check", TESTS,
	 "the configured includedir"},
	{"FG_CC", FG_ENV_TEXT, NULL, "set by make check", TESTS,
	 "the compiler test_install builds a client with"},
	{"FG_BOEHM_BUILD", FG_ENV_TEXT, NULL, "set by make check", TESTS,
	 "the Boehm GC build tree"},
	{"FG_BOEHM_LIB", FG_ENV_TEXT, NULL, "set by make check", TESTS,
	 "the directory of the adapter's libgc.so.1"},
	{"FG_BOEHM_REPORT_SO", FG_ENV_TEXT, NULL, "set by make check", TESTS,
	 "the reporter preloaded into Boehm's programs"},
	{"FG_BOEHM_SCM", FG_ENV_TEXT, NULL, "set by make check", TESTS,
	 "the Guile program of the Boehm tests"},
	{"FG_RACKET_BIN", FG_ENV_TEXT, NULL, "the adapter's racket3m", TESTS,
	 "the racket3m the Racket tests run"},
	{"FG_RACKET_PROGS", FG_ENV_TEXT, NULL, "tests/racket", TESTS,
	 "the Racket tests' programs"},
};
#define NTABLE (sizeof table / sizeof *table)

/* The prefixes adapters pass to fga_config_env.  A new adapter: a line. */
static const char *const prefixes[] = {"FG_BOEHM", "FG_RACKET"};
#define NPREFIXES (sizeof prefixes / sizeof *prefixes)

static const struct {
	const char *name, *grammar;
} types[FG_ENV_NTYPES] = {
	[FG_ENV_SIZE] = {"size", "a size (64, 4k, 2M, 1G)"},
	[FG_ENV_SIZE_AUTO] = {"size|auto", "a size (64, 4k, 2M, 1G) or auto"},
	[FG_ENV_SIZE_PCT] = {"size|N%",
			     "a size (64, 4k, 2M, 1G) or a percentage "
			     "(1% to 100%)"},
	[FG_ENV_CHOICE] = {"choice", "one of the entry's words"},
	[FG_ENV_FLAG] = {"flag", "a flag (1, yes, on, true; 0, no, off, "
				 "false)"},
	[FG_ENV_COUNT] = {"count", "a count (0, 1, 2, ...)"},
	[FG_ENV_TEXT] = {"text", "any text"},
	/* The names come from the registry (probe.c), not from here. */
	[FG_ENV_BACKEND] = {"backend", "a backend name or auto"},
};

const char *fg_env_grammar(fg_env_type type)
{
	return (unsigned)type < FG_ENV_NTYPES ? types[type].grammar : "?";
}

const char *fg_env_type_name(fg_env_type type)
{
	return (unsigned)type < FG_ENV_NTYPES ? types[type].name : "?";
}

const fg_env_var *fg_env_table(size_t *count)
{
	if (count)
		*count = NTABLE;
	return table;
}

const char *fg_env_prefix(size_t i)
{
	return i < NPREFIXES ? prefixes[i] : NULL;
}

/* A number with strtoull's base 0 that starts with a digit (no sign, no
 * blank), up to *end. */
static int parse_number(const char *s, unsigned long long *v, char **end)
{
	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	*v = strtoull(s, end, 0);
	return errno ? -EINVAL : 0;
}

int fg_parse_size(const char *s, size_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (!s || !out)
		return fg_fail(-EINVAL, "fg_parse_size: NULL argument");
	if (parse_number(s, &v, &end))
		goto bad;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: break;
	}
	if (*end || v == 0 || v > (SIZE_MAX >> shift))
		goto bad;
	*out = (size_t)(v << shift);
	return 0;
bad:
	return fg_fail(-EINVAL, "%s: expected %s", s,
		       types[FG_ENV_SIZE].grammar);
}

static int parse_flag(const char *s, unsigned *out)
{
	static const char *const on[] = {"1", "yes", "on", "true"};
	static const char *const off[] = {"0", "no", "off", "false"};

	for (size_t i = 0; i < sizeof on / sizeof *on; i++) {
		if (!strcasecmp(s, on[i]) || !strcasecmp(s, off[i])) {
			*out = !strcasecmp(s, on[i]);
			return 0;
		}
	}
	return -EINVAL;
}

/* The position of word w among words "a|b|c" (any case), or -1; *at is
 * then the table's own spelling of it. */
static int word_index(const char *words, const char *w, const char **at)
{
	size_t n = strlen(w);
	int i = 0;

	for (const char *p = words; p; i++) {
		const char *bar = strchr(p, '|');
		size_t len = bar ? (size_t)(bar - p) : strlen(p);

		if (len == n && !strncasecmp(p, w, n)) {
			*at = p;
			return i;
		}
		p = bar ? bar + 1 : NULL;
	}
	return -1;
}

static int parse_choice(const char *words, const char *s, fg_env_value *v)
{
	int i = word_index(words, s, &v->word);
	unsigned flag;

	/* 0|1|abort: "yes" is 1 there as in any flag. */
	if (i < 0 && !parse_flag(s, &flag))
		i = word_index(words, flag ? "1" : "0", &v->word);
	if (i < 0)
		return -EINVAL;
	v->index = (unsigned)i;
	return 0;
}

/* "N%", N from 1 to 100 in decimal. */
static int parse_pct(const char *s, unsigned *out)
{
	size_t n = strlen(s), digits = strspn(s, "0123456789");
	unsigned long v;

	if (n < 2 || s[n - 1] != '%' || digits != n - 1 || digits > 3)
		return -EINVAL;
	v = strtoul(s, NULL, 10);
	if (v < 1 || v > 100)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

int fg_parse_value(fg_env_type type, const char *words, const char *s,
		   fg_env_value *out)
{
	fg_env_value v = {.type = type, .text = s};
	unsigned long long n = 0;
	char *end;
	int rc = -EINVAL;

	if (!s || !out || (unsigned)type >= FG_ENV_NTYPES ||
	    (type == FG_ENV_CHOICE && !words))
		return fg_fail(-EINVAL, "fg_parse_value: bad argument");
	switch (type) {
	case FG_ENV_SIZE_AUTO:
		if (!strcasecmp(s, "auto")) {
			rc = 0;
			break;
		}
		/* fall through */
	case FG_ENV_SIZE:
		rc = fg_parse_size(s, &v.bytes);
		break;
	case FG_ENV_SIZE_PCT:
		rc = strchr(s, '%') ? parse_pct(s, &v.pct)
				    : fg_parse_size(s, &v.bytes);
		break;
	case FG_ENV_CHOICE:
		rc = parse_choice(words, s, &v);
		break;
	case FG_ENV_FLAG:
		rc = parse_flag(s, &v.index);
		break;
	case FG_ENV_COUNT:
		rc = parse_number(s, &n, &end);
		if (!rc && *end)
			rc = -EINVAL;
		v.count = n;
		break;
	case FG_ENV_TEXT:
		rc = 0;
		break;
	case FG_ENV_BACKEND: {
		fg_backend_id id;

		rc = fg_backend_from_name(s, &id) ? -EINVAL : 0;
		v.index = (unsigned)id;
		v.word = rc ? NULL : id ? fg_backend_name(id) : "auto";
		break;
	}
	default:
		break;
	}
	if (rc) {
		char list[256];
		size_t i;

		if (type == FG_ENV_BACKEND) {
			i = (size_t)snprintf(list, sizeof list, "auto");
			for (int id = 1; id < FG_BACKEND_COUNT &&
					 i < sizeof list; id++)
				i += (size_t)snprintf(list + i, sizeof list - i,
						      ", %s",
						      fg_backend_name(id));
			return fg_fail(-EINVAL, "%s: expected a backend (%s)",
				       s, list);
		}
		if (type != FG_ENV_CHOICE)
			return fg_fail(-EINVAL, "%s: expected %s", s,
				       types[type].grammar);
		/* "one of sticky, adaptive, hot, none" */
		i = 0;
		for (const char *w = words; *w && i < sizeof list - 3; w++) {
			if (*w == '|')
				list[i++] = ',', list[i++] = ' ';
			else
				list[i++] = *w;
		}
		list[i] = 0;
		return fg_fail(-EINVAL, "%s: expected one of %s", s, list);
	}
	*out = v;
	return 0;
}

/* Whether name is template t ("FG_<ADAPTER>_TWINS") for some non-empty
 * prefix; *plen is then the prefix's length. */
static bool template_match(const char *t, const char *name, size_t *plen)
{
	const char *gt = strchr(t, '>');
	size_t n = strlen(name), tail;

	if (!strchr(t, '<') || !gt)
		return false;
	tail = strlen(gt + 1);
	if (n <= tail || strcmp(name + n - tail, gt + 1))
		return false;
	*plen = n - tail;
	return true;
}

const fg_env_var *fg_env_find(const char *name)
{
	size_t plen;

	if (!name)
		return NULL;
	for (size_t i = 0; i < NTABLE; i++)
		if (!strcmp(table[i].name, name))
			return &table[i];
	for (size_t i = 0; i < NTABLE; i++)
		if (template_match(table[i].name, name, &plen))
			return &table[i];
	return NULL;
}

/* Optimal string alignment distance (a swap of neighbours costs 1: FG_CRAD
 * is one step from FG_CARD); names longer than 63 bytes are far. */
static size_t distance(const char *a, const char *b)
{
	size_t n = strlen(a), m = strlen(b), d[3][64];

	if (n > 63 || m > 63)
		return SIZE_MAX;
	for (size_t j = 0; j <= m; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= n; i++) {
		size_t *r = d[i % 3], *p = d[(i - 1) % 3], *pp = d[(i + 1) % 3];

		r[0] = i;
		for (size_t j = 1; j <= m; j++) {
			size_t c = p[j - 1] + (a[i - 1] != b[j - 1]);

			if (p[j] + 1 < c)
				c = p[j] + 1;
			if (r[j - 1] + 1 < c)
				c = r[j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] &&
			    a[i - 2] == b[j - 1] && pp[j - 2] + 1 < c)
				c = pp[j - 2] + 1;
			r[j] = c;
		}
	}
	return d[n % 3][m];
}

/* Calls fn with every name a variable can have: exact entries, and each
 * template with each known prefix. */
static void each_name(void (*fn)(const char *name, void *arg), void *arg)
{
	char buf[128];

	for (size_t i = 0; i < NTABLE; i++) {
		const char *gt = strchr(table[i].name, '>');

		if (!strchr(table[i].name, '<') || !gt) {
			fn(table[i].name, arg);
			continue;
		}
		for (size_t k = 0; k < NPREFIXES; k++) {
			snprintf(buf, sizeof buf, "%s%s", prefixes[k], gt + 1);
			fn(buf, arg);
		}
	}
}

struct closest {
	const char *name;
	char *out;
	size_t len, best;
	bool known;
};

static void closest_one(const char *name, void *arg)
{
	struct closest *c = arg;
	size_t d = distance(c->name, name);

	if (d == 0)
		c->known = true;
	if (d < c->best) {
		c->best = d;
		if (c->out && c->len)
			snprintf(c->out, c->len, "%s", name);
	}
}

int fg_env_known(const char *name, char *suggest, size_t len)
{
	struct closest c = {name, suggest, len, SIZE_MAX, false};
	size_t n = name ? strlen(name) : 0;

	if (suggest && len)
		*suggest = 0;
	if (!name)
		return 0;
	each_name(closest_one, &c);
	if (c.known) {
		if (suggest && len)
			*suggest = 0;
		return 1;
	}
	/* Far from everything: no suggestion rather than a silly one. */
	if (c.best > 3 || c.best * 3 > n)
		if (suggest && len)
			*suggest = 0;
	return 0;
}

int fg_env_parse(const char *name, const char *s, fg_env_value *out)
{
	const fg_env_var *e = fg_env_find(name);
	int rc;

	if (!e)
		return fg_fail(-ENOENT, "%s: in no entry of the FG_* table "
					"(toolkit/env.c)",
			       name ? name : "(null)");
	if (!s || !*s)
		return 0;
	rc = fg_parse_value(e->type, e->words, s, out);
	if (rc && out)
		*out = (fg_env_value){.type = e->type, .text = s};
	if (rc) {
		/* The type's message, with the variable's name before it:
		 * "FG_CARD=4q: expected a size (64, 4k, 2M, 1G) or auto". */
		char why[256];

		snprintf(why, sizeof why, "%s", fg_last_error_detail());
		return fg_fail(rc, "%s=%s", name, why);
	}
	return 1;
}

int fg_env_get(const char *name, fg_env_value *out)
{
	return fg_env_parse(name, name ? getenv(name) : NULL, out);
}
