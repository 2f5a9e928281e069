/* test_env.c - the FG_* options table (toolkit/env.c) and its grammars.
 *
 *   grammar      a table of (type, value, what it parses to or the
 *                message it fails with), every type, good and bad.
 *   backend      every registered backend's name parses to its id.
 *   get          fg_env_get/fg_env_parse: unset and empty read as unset,
 *                a bad value names the variable, a name in no entry
 *                is -ENOENT, templates match any prefix.
 *   card_*       FG_CARD=4k is 4096 in the tracker, through the generic
 *                adapter (what the Boehm adapter uses), and ALIAS.
 *   template     fga_config_env with FG_BOEHM: FG_BOEHM_TWIN_CAP=25%
 *                caps at 25%, FG_BOEHM_TWINS=bogus keeps sticky and says
 *                so, FG_BOEHM_EXEMPT=no turns exemption off (the flag
 *                grammar, as everywhere).
 *   known        fg_env_known: exact names, templates with a known prefix,
 *                and the closest name for a typo (FG_CRAD: FG_CARD).
 *   complete     the source tree ($FG_SRCDIR, set by make check): every
 *                FG_* literal read by getenv, fg_env_get or
 *                ch_path_from_env, every suffix fga_config_env reads and
 *                every FG_* variable tests/run.sh reads has an entry; the
 *                toolkit, fgvm and the adapters call no getenv("FG_...").
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <errno.h>
#include <ftw.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fg.h"
#include "fg_alias.h"
#include "fga.h"

#define TIMEOUT 30

/* One row: s parsed as type (words for choices) gives the numbers, or
 * (bad) fails with a message containing msg. */
static const struct row {
	fg_env_type type;
	const char *words, *s;
	int bad;
	unsigned long long num; /* bytes, pct, index or count */
	const char *msg;
} rows[] = {
	{FG_ENV_SIZE, NULL, "64", 0, 64, NULL},
	{FG_ENV_SIZE, NULL, "4k", 0, 4096, NULL},
	{FG_ENV_SIZE, NULL, "4K", 0, 4096, NULL},
	{FG_ENV_SIZE, NULL, "2M", 0, 2 << 20, NULL},
	{FG_ENV_SIZE, NULL, "1G", 0, 1ULL << 30, NULL},
	{FG_ENV_SIZE, NULL, "1g", 0, 1ULL << 30, NULL},
	{FG_ENV_SIZE, NULL, "0x40", 0, 64, NULL},
	{FG_ENV_SIZE, NULL, "4q", 1, 0, "4q: expected a size (64, 4k, 2M, 1G)"},
	{FG_ENV_SIZE, NULL, "0", 1, 0, "expected a size"},
	{FG_ENV_SIZE, NULL, "-1", 1, 0, "expected a size"},
	{FG_ENV_SIZE, NULL, " 64", 1, 0, "expected a size"},
	{FG_ENV_SIZE, NULL, "4kb", 1, 0, "expected a size"},
	{FG_ENV_SIZE, NULL, "1GiB", 1, 0, "expected a size"},
	{FG_ENV_SIZE, NULL, "auto", 1, 0, "expected a size"},
	{FG_ENV_SIZE, NULL, "17179869184G", 1, 0, "expected a size"},
	{FG_ENV_SIZE_AUTO, NULL, "auto", 0, 0, NULL},
	{FG_ENV_SIZE_AUTO, NULL, "AUTO", 0, 0, NULL},
	{FG_ENV_SIZE_AUTO, NULL, "4k", 0, 4096, NULL},
	{FG_ENV_SIZE_AUTO, NULL, "4q", 1, 0,
	 "4q: expected a size (64, 4k, 2M, 1G) or auto"},
	{FG_ENV_SIZE_PCT, NULL, "25%", 0, 25, NULL},
	{FG_ENV_SIZE_PCT, NULL, "100%", 0, 100, NULL},
	{FG_ENV_SIZE_PCT, NULL, "64M", 0, 64 << 20, NULL},
	{FG_ENV_SIZE_PCT, NULL, "0%", 1, 0, "or a percentage (1% to 100%)"},
	{FG_ENV_SIZE_PCT, NULL, "200%", 1, 0, "or a percentage"},
	{FG_ENV_SIZE_PCT, NULL, "%", 1, 0, "or a percentage"},
	{FG_ENV_SIZE_PCT, NULL, "10%%", 1, 0, "or a percentage"},
	{FG_ENV_SIZE_PCT, NULL, "0x10%", 1, 0, "or a percentage"},
	{FG_ENV_CHOICE, "page|diff", "page", 0, 0, NULL},
	{FG_ENV_CHOICE, "page|diff", "diff", 0, 1, NULL},
	{FG_ENV_CHOICE, "page|diff", "DIFF", 0, 1, NULL},
	{FG_ENV_CHOICE, "page|diff", "dif", 1, 0,
	 "dif: expected one of page, diff"},
	{FG_ENV_CHOICE, "page|diff", "yes", 1, 0, "expected one of page, diff"},
	{FG_ENV_CHOICE, "0|1|abort", "abort", 0, 2, NULL},
	{FG_ENV_CHOICE, "0|1|abort", "yes", 0, 1, NULL},
	{FG_ENV_CHOICE, "0|1|abort", "off", 0, 0, NULL},
	{FG_ENV_CHOICE, "0|1|abort", "2", 1, 0, "expected one of 0, 1, abort"},
	{FG_ENV_FLAG, NULL, "1", 0, 1, NULL},
	{FG_ENV_FLAG, NULL, "yes", 0, 1, NULL},
	{FG_ENV_FLAG, NULL, "On", 0, 1, NULL},
	{FG_ENV_FLAG, NULL, "TRUE", 0, 1, NULL},
	{FG_ENV_FLAG, NULL, "0", 0, 0, NULL},
	{FG_ENV_FLAG, NULL, "no", 0, 0, NULL},
	{FG_ENV_FLAG, NULL, "off", 0, 0, NULL},
	{FG_ENV_FLAG, NULL, "false", 0, 0, NULL},
	{FG_ENV_FLAG, NULL, "2", 1, 0,
	 "2: expected a flag (1, yes, on, true; 0, no, off, false)"},
	{FG_ENV_FLAG, NULL, "y", 1, 0, "expected a flag"},
	{FG_ENV_COUNT, NULL, "0", 0, 0, NULL},
	{FG_ENV_COUNT, NULL, "42", 0, 42, NULL},
	{FG_ENV_COUNT, NULL, "0x10", 0, 16, NULL},
	{FG_ENV_COUNT, NULL, "-3", 1, 0, "-3: expected a count"},
	{FG_ENV_COUNT, NULL, "4k", 1, 0, "expected a count"},
	{FG_ENV_COUNT, NULL, "99999999999999999999", 1, 0, "expected a count"},
	{FG_ENV_TEXT, NULL, "/any/path with blanks", 0, 0, NULL},
	{FG_ENV_BACKEND, NULL, "auto", 0, FG_BACKEND_AUTO, NULL},
	{FG_ENV_BACKEND, NULL, "none", 0, FG_BACKEND_NONE, NULL},
	{FG_ENV_BACKEND, NULL, "bogus", 1, 0,
	 "bogus: expected a backend (auto, uffd-async"},
};

static unsigned long long number(const fg_env_value *v)
{
	switch (v->type) {
	case FG_ENV_SIZE_PCT:
		return v->pct ? v->pct : v->bytes;
	case FG_ENV_CHOICE:
	case FG_ENV_FLAG:
	case FG_ENV_BACKEND:
		return v->index;
	case FG_ENV_COUNT:
		return v->count;
	default:
		return v->bytes;
	}
}

Test(env, grammar, .timeout = TIMEOUT)
{
	for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
		const struct row *r = &rows[i];
		fg_env_value v = {.bytes = 12345};
		int rc = fg_parse_value(r->type, r->words, r->s, &v);

		if (r->bad) {
			cr_assert_eq(rc, -EINVAL, "%s \"%s\": %d, not -EINVAL",
				     fg_env_type_name(r->type), r->s, rc);
			cr_assert_eq(v.bytes, 12345, "a refused value was "
						     "written");
			cr_assert(strstr(fg_last_error_detail(), r->msg),
				  "%s \"%s\": message \"%s\" lacks \"%s\"",
				  fg_env_type_name(r->type), r->s,
				  fg_last_error_detail(), r->msg);
			continue;
		}
		cr_assert_eq(rc, 0, "%s \"%s\": %d (%s)",
			     fg_env_type_name(r->type), r->s, rc,
			     fg_last_error_detail());
		cr_assert_eq(v.type, r->type);
		cr_assert_eq(v.text, r->s);
		cr_assert_eq(number(&v), r->num, "%s \"%s\" gave %llu, not %llu",
			     fg_env_type_name(r->type), r->s, number(&v),
			     r->num);
	}
	/* A choice's word is the table's spelling, whatever the case. */
	{
		fg_env_value v;

		cr_assert_eq(fg_parse_value(FG_ENV_CHOICE, "page|diff", "DIFF",
					    &v),
			     0);
		cr_assert(!strncmp(v.word, "diff", 4));
	}
	cr_assert_eq(fg_parse_value(FG_ENV_NTYPES, NULL, "1", NULL), -EINVAL);
	cr_assert_eq(fg_parse_value(FG_ENV_CHOICE, NULL, "x", NULL), -EINVAL);
	for (int t = 0; t < FG_ENV_NTYPES; t++) {
		cr_assert_str_neq(fg_env_grammar(t), "?");
		cr_assert_str_neq(fg_env_type_name(t), "?");
	}
	cr_assert_str_eq(fg_env_grammar(FG_ENV_NTYPES), "?");
}

/* FG_BACKEND's words are the registry's, not a copy that can go stale. */
Test(env, backend, .timeout = TIMEOUT)
{
	for (int id = FG_BACKEND_AUTO + 1; id < FG_BACKEND_COUNT; id++) {
		fg_env_value v;

		cr_assert_eq(fg_env_parse("FG_BACKEND", fg_backend_name(id), &v),
			     1, "%s: %s", fg_backend_name(id),
			     fg_last_error_detail());
		cr_assert_eq(v.index, (unsigned)id);
		cr_assert_str_eq(v.word, fg_backend_name(id));
		cr_assert_eq(fg_env_parse("FG_BACKEND", "bogus", &v), -EINVAL);
		cr_assert(strstr(fg_last_error_detail(), fg_backend_name(id)),
			  "the message leaves %s out: %s", fg_backend_name(id),
			  fg_last_error_detail());
	}
}

Test(env, get, .timeout = TIMEOUT)
{
	fg_env_value v;

	unsetenv("FG_CARD");
	cr_assert_eq(fg_env_get("FG_CARD", &v), 0);
	setenv("FG_CARD", "", 1);
	cr_assert_eq(fg_env_get("FG_CARD", &v), 0, "empty is unset");
	setenv("FG_CARD", "4k", 1);
	cr_assert_eq(fg_env_get("FG_CARD", &v), 1);
	cr_assert_eq(v.bytes, 4096);
	cr_assert_str_eq(v.text, "4k");
	setenv("FG_CARD", "auto", 1);
	cr_assert_eq(fg_env_get("FG_CARD", &v), 1);
	cr_assert_eq(v.bytes, 0, "auto is bytes 0");
	setenv("FG_CARD", "4q", 1);
	cr_assert_eq(fg_env_get("FG_CARD", &v), -EINVAL);
	cr_assert_str_eq(fg_last_error_detail(),
			 "FG_CARD=4q: expected a size (64, 4k, 2M, 1G) or auto");
	cr_assert_str_eq(v.text, "4q", "the bad value is kept for messages");
	cr_assert_eq(fg_env_get("FG_NO_SUCH_THING", &v), -ENOENT);
	cr_assert(strstr(fg_last_error_detail(), "FG_NO_SUCH_THING"));
	cr_assert_eq(fg_env_get(NULL, &v), -ENOENT);
	/* Templates: any prefix, as fga_config_env passes it. */
	cr_assert_not_null(fg_env_find("FG_BOEHM_TWIN_CAP"));
	cr_assert_str_eq(fg_env_find("FG_MYVM_TWINS")->name,
			 "FG_<ADAPTER>_TWINS");
	cr_assert_str_eq(fg_env_find("FG_TWINS")->name, "FG_TWINS",
			 "an exact entry comes before a template");
	cr_assert_null(fg_env_find("_TWINS"), "a template needs a prefix");
	setenv("FGT_TWIN_CAP", "12%", 1);
	cr_assert_eq(fg_env_get("FGT_TWIN_CAP", &v), 1);
	cr_assert_eq(v.pct, 12);
	/* Every entry is complete, and its default parses where it is a
	 * plain value of its type. */
	{
		size_t n;
		const fg_env_var *t = fg_env_table(&n);

		cr_assert_gt(n, 10);
		for (size_t i = 0; i < n; i++) {
			cr_assert(t[i].name && t[i].dflt && t[i].reader &&
					  t[i].help && *t[i].help,
				  "entry %zu incomplete", i);
			cr_assert(!strncmp(t[i].name, "FG_", 3), "%s", t[i].name);
			cr_assert_eq(t[i].type == FG_ENV_CHOICE, !!t[i].words,
				     "%s: words go with choices", t[i].name);
			cr_assert_eq(fg_env_find(t[i].name), &t[i],
				     "%s is found as another entry", t[i].name);
		}
	}
	cr_assert_str_eq(fg_env_prefix(0), "FG_BOEHM");
}

static fg_options none_options(void)
{
	fg_options o = FG_OPTIONS_INIT;

	o.backend = FG_BACKEND_NONE;
	return o;
}

Test(env, card_tracker, .timeout = TIMEOUT)
{
	fg_options o = none_options();
	fg_tracker *t;

	setenv("FG_CARD", "4k", 1);
	cr_assert_eq(fg_tracker_create(&o, &t), 0, "%s",
		     fg_last_error_detail());
	cr_assert_eq(fg_card_size(t), 4096, "FG_CARD=4k gave %zu",
		     fg_card_size(t));
	fg_tracker_destroy(t);
	setenv("FG_CARD", "4q", 1);
	cr_assert_eq(fg_tracker_create(&o, &t), -FG_ECARD);
	cr_assert(strstr(fg_last_error_detail(), "FG_CARD=4q: expected a size"),
		  "%s", fg_last_error_detail());
	setenv("FG_CARD", "auto", 1);
	cr_assert_eq(fg_tracker_create(&o, &t), -FG_ECARD);
	cr_assert(strstr(fg_last_error_detail(), "FG_CARD=auto: only the "
						 "adapters"),
		  "%s", fg_last_error_detail());
}

static fga *adapter(fga_config *c)
{
	fga *f = NULL;
	int rc;

	c->block = 4096;
	c->backend = "none";
	rc = fga_create(c, &f);
	cr_assert_eq(rc, 0, "fga_create: %d (%s)", rc, fga_last_error(NULL));
	return f;
}

/* The generic adapter, as the Boehm adapter drives it (card 0: FG_CARD). */
Test(env, card_adapter, .timeout = TIMEOUT)
{
	fga_config c = FGA_CONFIG_INIT;
	fga *f;

	setenv("FG_CARD", "4k", 1);
	c.card = 0;
	f = adapter(&c);
	cr_assert_eq(fga_card_size(f), 4096, "FG_CARD=4k through fga: %zu",
		     fga_card_size(f));
	fga_destroy(f);
	setenv("FG_CARD", "1k", 1);
	f = adapter(&c);
	cr_assert_eq(fga_card_size(f), 1024, "FG_CARD=1k through fga: %zu",
		     fga_card_size(f));
	fga_destroy(f);
	setenv("FG_CARD", "auto", 1);
	f = adapter(&c);
	cr_assert_eq(fga_card_size(f), 64, "FG_CARD=auto through fga: %zu",
		     fga_card_size(f));
	fga_destroy(f);
}

/* With neither the caller nor FG_CARD choosing, fga_config.card_default
 * does (the Boehm adapter's: auto); FG_CARD and the caller's card come
 * first, and a size set later ends auto's choice. */
Test(env, card_default, .timeout = TIMEOUT)
{
	fga_config c = FGA_CONFIG_INIT;
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	fga *f;

	unsetenv("FG_CARD");
	f = adapter(&c);
	cr_assert_eq(fga_card_size(f), ps, "no card_default: %zu",
		     fga_card_size(f));
	cr_assert_eq(fga_card_auto(f), 0);
	fga_destroy(f);

	c.card_default = FGA_CARD_AUTO;
	f = adapter(&c);
	cr_assert_eq(fga_card_size(f), 64, "card_default auto: %zu",
		     fga_card_size(f));
	cr_assert_eq(fga_card_auto(f), 1, "card_default auto: not auto");
	cr_assert_eq(fga_set_card_size(f, ps), 0, "%s", fga_last_error(f));
	cr_assert_eq(fga_card_auto(f), 0, "a size set: still auto");
	cr_assert_eq(fga_card_size(f), ps);
	fga_destroy(f);

	c.card_default = 256;
	f = adapter(&c);
	cr_assert_eq(fga_card_size(f), 256, "card_default 256: %zu",
		     fga_card_size(f));
	cr_assert_eq(fga_card_auto(f), 0);
	fga_destroy(f);

	c.card_default = FGA_CARD_AUTO;
	setenv("FG_CARD", "4k", 1);
	f = adapter(&c);
	cr_assert_eq(fga_card_size(f), 4096, "FG_CARD=4k over auto: %zu",
		     fga_card_size(f));
	cr_assert_eq(fga_card_auto(f), 0, "FG_CARD=4k over auto: auto");
	fga_destroy(f);
	unsetenv("FG_CARD");

	c.card = 128;
	f = adapter(&c);
	cr_assert_eq(fga_card_size(f), 128, "card 128 over auto: %zu",
		     fga_card_size(f));
	cr_assert_eq(fga_card_auto(f), 0, "card 128 over auto: auto");
	fga_destroy(f);
}

/* ALIAS takes its card size from FG_CARD through the tracker. */
Test(env, card_alias, .timeout = TIMEOUT)
{
	fg_alias_options o = FG_ALIAS_OPTIONS_INIT;
	fg_alias_heap *h;
	int rc;

	setenv("FG_CARD", "0x100", 1);
	setenv("FG_BACKEND", "none", 1);
	o.capacity = 1 << 20;
	rc = fg_alias_heap_create(&o, &h);
	if (rc == -FG_EUNAVAIL || rc == -ENOSYS)
		cr_skip_test("no ALIAS heap here: %s", fg_last_error_detail());
	cr_assert_eq(rc, 0, "%d: %s", rc, fg_last_error_detail());
	cr_assert_eq(fg_alias_card_size(h), 256, "FG_CARD=0x100: %zu",
		     fg_alias_card_size(h));
	fg_alias_heap_destroy(h);
}

static char errbuf[4096];

static const char *stderr_text(void)
{
	FILE *f = cr_get_redirected_stderr();
	size_t n;

	fflush(stderr);
	n = fread(errbuf, 1, sizeof errbuf - 1, f);
	errbuf[n] = 0;
	return errbuf;
}

Test(env, template, .timeout = TIMEOUT, .init = cr_redirect_stderr)
{
	fga_config c = FGA_CONFIG_INIT;

	setenv("FG_BOEHM_TWIN_CAP", "25%", 1);
	setenv("FG_BOEHM_TWINS", "bogus", 1);
	setenv("FG_BOEHM_EXEMPT", "no", 1);
	setenv("FG_BOEHM_PRECLEAN", "off", 1);
	setenv("FG_BOEHM_CHECK", "yes", 1);
	setenv("FG_BOEHM_AUTO_LOG", "true", 1);
	setenv("FG_BOEHM_AUTO_PRICE", "250", 1);
	setenv("FG_BOEHM_HOLD", "80", 1);
	c.name = "test";
	cr_assert_eq(fga_config_env(&c, "FG_BOEHM"), 0);
	cr_assert_eq(c.twin_cap_pct, 25);
	cr_assert_eq(c.twin_cap, 0);
	cr_assert_eq(c.twins, FGA_TWINS_STICKY, "a bad value keeps sticky");
	cr_assert_eq(c.exempt, 0, "FG_BOEHM_EXEMPT=no left exemption on");
	cr_assert_eq(c.preclean, 0, "FG_BOEHM_PRECLEAN=off left it on");
	cr_assert_eq(c.check, 1, "FG_BOEHM_CHECK=yes: %d", c.check);
	cr_assert_eq(c.auto_log, 1, "FG_BOEHM_AUTO_LOG=true: %d", c.auto_log);
	cr_assert_eq(c.auto_price_ps, 250, "FG_BOEHM_AUTO_PRICE=250: %u",
		     c.auto_price_ps);
	cr_assert_eq(c.hold, 64, "FG_BOEHM_HOLD=80: %u lines, not the 64 "
				 "a block has",
		     c.hold);
	cr_assert(strstr(stderr_text(),
			 "test: FG_BOEHM_TWINS=bogus: expected one of sticky, "
			 "adaptive, hot, none; sticky it is"),
		  "stderr: %s", errbuf);
	/* A bad flag: said, and the caller's value kept. */
	c = (fga_config)FGA_CONFIG_INIT;
	c.name = "test";
	setenv("FG_BOEHM_EXEMPT", "2", 1);
	setenv("FG_BOEHM_AUTO_PRICE", "6ns", 1);
	setenv("FG_BOEHM_HOLD", "-3", 1);
	c.auto_price_ps = 1234;
	c.hold = 32;
	cr_assert_eq(fga_config_env(&c, "FG_BOEHM"), 0);
	cr_assert_eq(c.exempt, 1);
	cr_assert_eq(c.auto_price_ps, 1234, "a bad price keeps the caller's");
	cr_assert_eq(c.hold, 32, "a bad FG_BOEHM_HOLD keeps the caller's");
	stderr_text();
	cr_assert(strstr(errbuf, "FG_BOEHM_EXEMPT=2: expected a flag"),
		  "stderr: %s", errbuf);
	cr_assert(strstr(errbuf, "FG_BOEHM_AUTO_PRICE=6ns: expected a count"),
		  "stderr: %s", errbuf);
	cr_assert(strstr(errbuf, "FG_BOEHM_HOLD=-3: expected a count"),
		  "stderr: %s", errbuf);
	unsetenv("FG_BOEHM_HOLD");
}

Test(env, known, .timeout = TIMEOUT)
{
	char s[64];

	cr_assert_eq(fg_env_known("FG_CARD", s, sizeof s), 1);
	cr_assert_str_eq(s, "");
	cr_assert_eq(fg_env_known("FG_BOEHM_TWINS", s, sizeof s), 1);
	cr_assert_eq(fg_env_known("FG_RACKET_CHECK", s, sizeof s), 1);
	cr_assert_eq(fg_env_known("FG_SEED", s, sizeof s), 1);
	cr_assert_eq(fg_env_known("FG_CRAD", s, sizeof s), 0);
	cr_assert_str_eq(s, "FG_CARD");
	cr_assert_eq(fg_env_known("FG_BOEHM_TWINZ", s, sizeof s), 0);
	cr_assert_str_eq(s, "FG_BOEHM_TWINS");
	cr_assert_eq(fg_env_known("FG_MYVM_TWINS", s, sizeof s), 0,
		     "a template with an unlisted prefix is not known");
	cr_assert_eq(fg_env_known("FG_SOMETHING_ELSE_ENTIRELY", s, sizeof s),
		     0);
	cr_assert_str_eq(s, "", "a far name got a suggestion: %s", s);
	cr_assert_eq(fg_env_known(NULL, s, sizeof s), 0);
}

/* ---- completeness: the sources against the table ------------------------- */

static regex_t re_read, re_suffix, re_shell;
static char missing[4096], direct[4096];
static int nread, nsuffix;

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0;

	if (!f)
		return NULL;
	if (getdelim(&buf, &len, 0, f) < 0) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

static void add(char *list, const char *what)
{
	size_t n = strlen(list);

	snprintf(list + n, 4096 - n, " %s", what);
}

/* Each match's group g is a variable (or, with kind 1, a suffix of
 * fga_config_env's, checked as FG_X_<suffix>). */
static void each_match(regex_t *re, int g, const char *text,
		       const char *path, int kind)
{
	regmatch_t m[3];
	char name[128], what[512];

	for (const char *p = text; !regexec(re, p, 3, m, 0); p += m[0].rm_eo) {
		snprintf(name, sizeof name, "%s%.*s", kind == 1 ? "FG_X_" : "",
			 (int)(m[g].rm_eo - m[g].rm_so), p + m[g].rm_so);
		if (kind == 1)
			nsuffix++;
		else
			nread++;
		if (!fg_env_find(name)) {
			snprintf(what, sizeof what, "%s(%s)", name, path);
			add(missing, what);
		}
	}
}

static int visit(const char *path, const struct stat *st, int type,
		 struct FTW *ftw)
{
	const char *base = path + ftw->base;
	size_t n = strlen(path);
	char *text;

	(void)st;
	if (type == FTW_D && (!strcmp(base, ".git") || !strcmp(base, "build") ||
			      !strcmp(base, "install-root") ||
			      !strcmp(base, ".libs") || !strcmp(base, ".deps") ||
			      !strcmp(base, "results")))
		return FTW_SKIP_SUBTREE;
	if (type != FTW_F)
		return FTW_CONTINUE;
	/* This file reads names in no entry on purpose. */
	if (!strcmp(base, "test_env.c"))
		return FTW_CONTINUE;
	if (n > 2 && (!strcmp(path + n - 2, ".c") || !strcmp(path + n - 2, ".h"))) {
		text = slurp(path);
		if (!text)
			return FTW_CONTINUE;
		each_match(&re_read, 2, text, path, 0);
		if (strstr(path, "adapters/generic/fga.c"))
			each_match(&re_suffix, 2, text, path, 1);
		/* Components ask the table; tests and benchmarks may not
		 * link the toolkit. */
		if ((strstr(path, "/toolkit/") || strstr(path, "/vm/") ||
		     strstr(path, "/adapters/")) &&
		    strstr(text, "getenv(\"FG_"))
			add(direct, path);
		free(text);
	} else if (n > 3 && !strcmp(path + n - 3, ".sh") &&
		   strstr(path, "/tests/")) {
		text = slurp(path);
		if (text)
			each_match(&re_shell, 1, text, path, 0);
		free(text);
	}
	return FTW_CONTINUE;
}

Test(env, complete, .timeout = 120)
{
	const char *src = getenv("FG_SRCDIR");
	static const char *const dirs[] = {"toolkit", "vm", "adapters", "tests",
					   "bench"};
	char path[4096];

	if (!src || !*src)
		cr_skip_test("FG_SRCDIR is not set (make check sets it to the "
			     "source tree): the sources cannot be scanned");
	/* getenv("FG_X"), fg_env_get("FG_X", ...),
	 * ch_path_from_env(out, "FG_X", ...) */
	cr_assert_eq(regcomp(&re_read,
			     "(getenv|fg_env_get|ch_path_from_env)\\([^;)]*\""
			     "(FG_[A-Z0-9_]+)\"",
			     REG_EXTENDED),
		     0);
	/* fga.c: env(c, prefix, "TWINS", ...), or before the table
	 * ENV("TWINS") */
	cr_assert_eq(regcomp(&re_suffix, "(prefix, |ENV\\()\"([A-Z0-9_]+)\"",
			     REG_EXTENDED),
		     0);
	/* tests/run.sh: ${FG_X:-...} or $FG_X */
	cr_assert_eq(regcomp(&re_shell, "\\$\\{?(FG_[A-Z0-9_]+)",
			     REG_EXTENDED),
		     0);
	for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
		snprintf(path, sizeof path, "%s/%s", src, dirs[i]);
		cr_assert_eq(nftw(path, visit, 16, FTW_PHYS | FTW_ACTIONRETVAL),
			     0, "%s: %s", path, strerror(errno));
	}
	cr_log_info("%s: %d reads of FG_* variables, %d fga_config_env "
		    "suffixes",
		    src, nread, nsuffix);
	cr_assert_gt(nread, 20, "the scan found too little: is %s the source "
				"tree?",
		     src);
	cr_assert_geq(nsuffix, 6, "fga_config_env's suffixes not found");
	cr_assert_str_eq(missing, "", "in no entry of toolkit/env.c:%s",
			 missing);
	cr_assert_str_eq(direct, "", "getenv(\"FG_...\") instead of "
				      "fg_env_get in:%s",
			 direct);
}
