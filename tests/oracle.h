/* oracle.h - an independent oracle for the toolkit's soundness contract.
 *
 * The oracle never asks the library what was written.  It keeps the test's
 * own log of the bytes it wrote and a byte copy of every region taken when
 * the epoch began; at a collection, the truth is "lines the test wrote or
 * whose bytes changed", and every such line must lie in a reported card.
 * State is kept per 64-byte line (the smallest card), so one comparison
 * serves every card size, and card-level counts are derived from it.
 * With orc_region.changed_only set (DIFF precision) the truth is "lines
 * whose bytes changed" alone; the write log then only checks that nothing
 * but the test changed tracked memory.
 *
 * The oracle's functions do not use Criterion: results come back as counts
 * and first offenders, and the tests decide what to assert.  The two macros
 * below expand in a Criterion test file.
 *
 * After the oracle, at the end of this header, comes the machinery the
 * test files share (the "kit": writers, regions, trackers, collections,
 * fork): those functions assert with Criterion themselves, since oracle.c
 * is built into Criterion test binaries only.
 */
#ifndef FG_TEST_ORACLE_H
#define FG_TEST_ORACLE_H

#include "fg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One Criterion test per backend, suite::scn_<backend>, calling the
 * scenario function void scn(fg_backend_id). */
#define ORC_TEST_FOR(suite, scn, tag, id, secs)                              \
	Test(suite, scn##_##tag, .timeout = (secs))                          \
	{                                                                    \
		scn(id);                                                     \
	}
/* Built with ORC_KVM_ONLY (the tests/..._kvm binaries), they hold only the kvm
 * backend's tests: run.sh runs them under fgvm, in the sandbox when the
 * machine has no /dev/kvm of its own. */
#ifdef ORC_KVM_ONLY
#define ORC_PER_BACKEND(suite, scn, secs)                                    \
	ORC_TEST_FOR(suite, scn, kvm, FG_BACKEND_KVM, (secs) * 4)
#else
#define ORC_PER_BACKEND(suite, scn, secs)                                    \
	ORC_TEST_FOR(suite, scn, uffd_async, FG_BACKEND_UFFD_ASYNC, secs)    \
	ORC_TEST_FOR(suite, scn, uffd_sync, FG_BACKEND_UFFD_SYNC, secs)      \
	ORC_TEST_FOR(suite, scn, mprotect, FG_BACKEND_MPROTECT, secs)        \
	ORC_TEST_FOR(suite, scn, softdirty, FG_BACKEND_SOFTDIRTY, secs)      \
	ORC_TEST_FOR(suite, scn, none, FG_BACKEND_NONE, secs)
#endif

/* Skip the test, visibly and with the probe's reason, if the backend does
 * not work on this machine. */
#define ORC_REQUIRE_BACKEND(id)                                              \
	do {                                                                 \
		char why_[256] = "";                                         \
		if (fg_backend_probe((id), why_, sizeof why_) != 0)          \
			cr_skip_test("backend %s unavailable: %s",           \
				     fg_backend_name(id), why_);             \
	} while (0)

/* The same for a backend named as FG_BACKEND spells it ("uffd-async"). */
#define ORC_REQUIRE_BACKEND_NAMED(name)                                      \
	do {                                                                 \
		fg_backend_id idn_;                                          \
		cr_assert_eq(fg_backend_from_name((name), &idn_), 0,         \
			     "backend name %s", (name));                     \
		ORC_REQUIRE_BACKEND(idn_);                                   \
	} while (0)

/* Random numbers: xoshiro256** seeded through splitmix64. */
typedef struct orc_rng {
	uint64_t s[4];
} orc_rng;

/* The seed of a test: FG_SEED if set, else taken from the clock.  Always
 * printed on stderr as "TEST: seed=N (replay: FG_SEED=N)". */
uint64_t orc_seed(const char *test);
void orc_rng_init(orc_rng *r, uint64_t seed);
uint64_t orc_next(orc_rng *r);
uint64_t orc_below(orc_rng *r, uint64_t n); /* uniform in [0, n), n > 0 */

#define ORC_LINE 64

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

size_t orc_page(void);

typedef struct orc_region {
	uint8_t *base;
	size_t len;
	const char *kind;   /* "anon", "shared-anon", "memfd", ... */
	size_t nlines;
	uint8_t *snap;      /* bytes at epoch start */
	uint64_t *written;  /* lines the test wrote this epoch (its log) */
	uint64_t *changed;  /* lines whose bytes differ from snap */
	uint64_t *reported; /* lines covered by the last collection */
	/* Truth is "lines whose bytes changed" only, not "written or
	 * changed": with DIFF precision a line written back to its epoch-start
	 * bytes is legitimately reported clean.  false (the default from
	 * orc_region_init) keeps the original rule. */
	bool changed_only;
} orc_region;

/* Mapping helpers; NULL on failure (errno set).  at: NULL for anywhere,
 * else the address to map at (MAP_FIXED, e.g. from orc_reserve). */
void *orc_map_anon(size_t len, void *at);
void *orc_map_shared_anon(size_t len, void *at);
void *orc_map_memfd(size_t len, void *at); /* the mapping keeps the memfd */

/* An address range of len bytes at offset off from an align boundary,
 * reserved (PROT_NONE) for orc_map_*: with off from the seed, regions sit
 * the same way relative to large cards on every replay. */
void *orc_reserve(size_t len, size_t align, size_t off);

int orc_region_init(orc_region *r, void *base, size_t len, const char *kind);
void orc_region_fini(orc_region *r);

/* Start an epoch: copy every region's bytes and clear the logs. */
void orc_snapshot(orc_region *r, size_t n);

/* Record that the test wrote [addr, addr+len) (may span regions). */
void orc_log(orc_region *r, size_t n, const void *addr, size_t len);

/* The region holding addr, or NULL. */
orc_region *orc_find(orc_region *r, size_t n, const void *addr);

typedef enum orc_method { ORC_ITER, ORC_BITMAP, ORC_PEEK } orc_method;

/* Collect through fg_collect + the iterator (ORC_ITER), or region by region
 * through fg_collect_bitmap (ORC_BITMAP), or read without resetting
 * through fg_collect_flags(FG_COLLECT_PEEK) (ORC_PEEK, the iterator's
 * checks; the epoch goes on); fill every region's reported
 * lines.  The result's form is checked against fg.h: ranges in address
 * order, non-empty, card-aligned unless clipped at a region edge, each
 * within one region, maximal, the count equal to fg_collect's result; a
 * bitmap's size equal to fg_bitmap_bits, its tail past the region cleared,
 * fg_collect_bitmap's result equal to its popcount.  Returns the library's
 * result (< 0: error, *card untouched); a form violation is described in
 * form (form[0] != 0 then).  *card is the card size of the collection. */
int orc_collect(fg_tracker *t, orc_region *r, size_t n, orc_method m,
		size_t *card, char *form, size_t formlen);

typedef struct orc_result {
	uint64_t truth_lines;	 /* written or changed (changed_only: changed) */
	uint64_t missed_lines;	 /* truth lines not reported */
	const uint8_t *first_miss;
	uint64_t unlogged_lines; /* changed but never written by the test */
	const uint8_t *first_unlogged;
	uint64_t pages_reported, pages_changed, pages_truth, pages_fp;
	uint64_t cards_reported, cards_truth, cards_fp, cards_missed;
	uint64_t reported_lines; /* 64-byte lines in reported cards */
	uint64_t changed_bytes;	 /* bytes that differ from the snapshot */
} orc_result;

/* Compare the last collection with the truth, counting cards of size card
 * (absolute-aligned, clipped to the region). */
void orc_compare(orc_region *r, size_t n, size_t card, orc_result *res);

/* Whether any reported line lies in [addr, addr+len). */
bool orc_reported(orc_region *r, size_t n, const void *addr, size_t len);
/* Whether every line of [addr, addr+len) is reported. */
bool orc_reported_all(orc_region *r, size_t n, const void *addr, size_t len);

/* Expected result of a page-level backend after a quiet epoch: the cards
 * that overlap a page holding a truth line.  Counts reported cards outside
 * that set (*extra) and inside it but not reported (*missing). */
void orc_exact_pages(orc_region *r, size_t n, size_t card, uint64_t *extra,
		     uint64_t *missing);
/* orc_exact_pages, and the address of the first card wrong either way (0:
 * none) in *first. */
void orc_exact_pages_at(orc_region *r, size_t n, size_t card,
			uint64_t *extra, uint64_t *missing, uintptr_t *first);

/* ---- the kit ----------------------------------------------------------- */

/* Functions that assert (Criterion) take ctx: where the caller is, for the
 * message ("random_c64 uffd-async seed=N epoch 7"). */

/* Random bytes into [p, p+len). */
void orc_fill_random(orc_rng *g, void *p, size_t len);
/* src[i] differs from dst[i] for every i < len: each byte written changes. */
void orc_differing(orc_rng *g, uint8_t *src, const uint8_t *dst, size_t len);
uint64_t orc_now_ns(void); /* CLOCK_MONOTONIC */
void orc_spin_us(unsigned us);
/* Read every 8-byte word of each region (relaxed atomic loads) into out[i]. */
void orc_snap_words(const orc_region *r, size_t n, uint64_t **out);

static inline void orc_rep_movsb(void *dst, const void *src, size_t n)
{
	__asm__ volatile("rep movsb"
			 : "+D"(dst), "+S"(src), "+c"(n)
			 :
			 : "memory");
}

/* fg_backend_name, short for messages. */
const char *orc_bname(fg_backend_id id);

/* Under DIFF precision twins are taken only where the library can validate
 * them against the kernel's record (diff.c): eagerly for hot pages (and
 * sticky twins) where the backend has FG_CAP_COLLECT_TWINS (both uffd
 * backends), orc_twinning; and at the first write where it has
 * FG_CAP_HOOK_TWINS (uffd-sync: a hook and a per-page pagemap check),
 * orc_twin_hook.  mprotect and none have no such record: their written
 * pages read whole. */
bool orc_twinning(fg_backend_id id);
bool orc_twin_hook(fg_backend_id id);

/* a / b, 0 if b is 0: a precision. */
double orc_ratio(uint64_t a, uint64_t b);
/* The start of p's page. */
uint8_t *orc_page_of(const void *p);

/* A store the compiler may not assume aligned or of one type only. */
typedef uint64_t orc_u64_unaligned __attribute__((aligned(1), may_alias));

/* FG_OPTIONS_INIT with backend id, card size card and FG_OPT_NO_ENV (the
 * test chooses, not the environment). */
fg_options orc_options(fg_backend_id id, size_t card);
/* fg_tracker_create(o), which must succeed with the backend asked for. */
fg_tracker *orc_tracker(const fg_options *o);
/* orc_tracker of orc_options(id, card) with DIFF precision, a twin cap of
 * twin_cap bytes (0: the library's) and twin policy policy (FG_TWIN_*). */
fg_tracker *orc_diff_tracker(fg_backend_id id, size_t card, size_t twin_cap,
			     unsigned policy);
/* ORed into the policy of every orc_diff_tracker: 0 (twins are page
 * copies), or FG_TWIN_DIGEST in the *_digest scenarios. */
extern unsigned orc_twin_form;
/* Define scn_digest, scenario scn with FG_TWIN_DIGEST, for each backend
 * through per_backend (a test file's PER_BACKEND); skipped, with the
 * reason, where the backend takes no twins. */
#define ORC_DIGEST(per_backend, scn)                                          \
	static void scn##_digest(fg_backend_id id)                            \
	{                                                                     \
		if (!orc_twinning(id) && !orc_twin_hook(id))                  \
			cr_skip_test("no twins on %s: digests change nothing " \
				     "(" #scn " covers it)",                   \
				     orc_bname(id));                           \
		orc_twin_form = FG_TWIN_DIGEST;                               \
		scn(id);                                                      \
	}                                                                     \
	per_backend(scn##_digest)
/* fg_register of the region, which must succeed. */
void orc_reg(fg_tracker *t, orc_region *r);
/* fg_get_stats, which must succeed. */
fg_stats orc_stats(fg_tracker *t);

/* Three regions of the three trackable kinds (anon of 2 * scale bytes,
 * shared-anon and memfd of scale), each at a seed-chosen page offset from
 * a 64 KiB boundary, the first half of each filled with random bytes
 * before registration (populated and unpopulated pages); changed_only as
 * in orc_region. */
void orc_make_regions(orc_region r[3], orc_rng *g, size_t scale,
		      bool changed_only);
/* Unmap and finish n regions. */
void orc_free_regions(orc_region *r, size_t n);

/* Kernel writes: a system call copies bytes into tracked memory. */
typedef enum orc_kop {
	ORC_K_PIPE,  /* read(2) from a pipe */
	ORC_K_READ,  /* read(2) from a file */
	ORC_K_PREAD, /* pread(2) */
	ORC_K_RECV,  /* recv(2) from a socket */
	ORC_K_COUNT
} orc_kop;

extern const char *const orc_kname[ORC_K_COUNT];

#define ORC_KMAX (3 * 4096 + 512) /* the longest kernel write */

/* The pipe, socket pair and (unlinked) file kernel writes come through. */
typedef struct orc_kwriter {
	int pipefd[2], sock[2], file;
	/* Counts over the test. */
	uint64_t by[ORC_K_COUNT], marked, efault, partial_bytes;
	uint8_t src[ORC_KMAX], pre[ORC_KMAX];
} orc_kwriter;

/* What every single-threaded write schedule holds: the first member, b,
 * of a test's own schedule. */
typedef struct orc_sched {
	fg_tracker *t;
	fg_backend_id id; /* t's backend */
	orc_region *r;
	size_t n;
	orc_rng g;
	uint64_t seed;
	const char *test;
	unsigned epoch;
	orc_kwriter kw;
	uint8_t src[ORC_KMAX]; /* what a write stores: orc_differ */
	char ctx[160];	       /* orc_where */
} orc_sched;

/* Seeded with orc_seed(test), the kernel writer opened. */
void orc_sched_init(orc_sched *s, fg_tracker *t, orc_region *r, size_t n,
		    const char *test);
void orc_sched_fini(orc_sched *s);
/* orc_sched_init over three regions made by orc_make_regions (scale,
 * changed_only) and registered with t, and the first epoch begun. */
void orc_sched_start(orc_sched *s, fg_tracker *t, orc_region r[3],
		     size_t scale, bool changed_only, const char *test);
/* orc_sched_fini, fg_tracker_destroy of s->t (which must succeed) and
 * orc_free_regions of s's regions. */
void orc_sched_end(orc_sched *s);
/* "TEST BACKEND seed=N epoch E", for messages (in s->ctx). */
const char *orc_where(orc_sched *s);
/* A uniformly random byte of s's regions. */
uint8_t *orc_anywhere(orc_sched *s);
/* Fill s->src with len (<= ORC_KMAX) bytes that each differ from dst's. */
const uint8_t *orc_differ(orc_sched *s, const uint8_t *dst, size_t len);

/* One kernel write of len (<= ORC_KMAX) differing bytes at dst through m,
 * after fg_mark_dirty(dst, len) if mark.  The contract: it must succeed,
 * except on the mprotect backend without mark, where it may stop early
 * with EFAULT; what it changed before is then checked to be the data sent.
 * Every changed byte is logged with the oracle.  Returns the bytes the
 * call transferred. */
size_t orc_kernel_write(orc_sched *s, orc_kop m, bool mark, uint8_t *dst,
			size_t len);

/* orc_collect, which must succeed with a result of the right form, and
 * with card size want unless want is 0.  Returns the card size used. */
size_t orc_collect_ok(fg_tracker *t, orc_region *r, size_t n, orc_method m,
		      size_t want, const char *ctx);

/* orc_collect_ok, then orc_compare into res: no truth line missed, nothing
 * changed that the test did not write.  Returns the card size used.  The
 * next epoch is the caller's to begin (orc_snapshot). */
size_t orc_check(fg_tracker *t, orc_region *r, size_t n, orc_method m,
		 size_t want, const char *ctx, orc_result *res);

/* After concurrent writers stopped: collect until a collection comes back
 * empty (a fault handler may still be finishing a last fault), then 25
 * known 8-byte changes at random words of the regions and a collection at
 * card size want (0: any), which must report every changed line and
 * nothing unlogged, and: everything on the none backend; exactly the
 * changed lines if exact_lines; nothing more with ORC_QUIET_SOUND_ONLY;
 * else exactly the cards of the written pages.  Result in *res, card size in *card. */
#define ORC_QUIET_SOUND_ONLY 2 /* exact_lines: check soundness only */
void orc_quiet_epoch(fg_tracker *t, orc_region *r, size_t n, orc_rng *g,
		     size_t want, int exact_lines, const char *ctx,
		     orc_result *res, size_t *card);

/* fork with a child that waits for orc_release_child, then writes 64 lines
 * of anon (private memory: its writes to shared memory would reach the
 * parent), collects (which may fail with -FG_EFORKED only), writes,
 * destroys the tracker, writes again (untracked now: no fatal fault) and
 * exits 0, or with a code orc_wait_child explains.  In the parent: the
 * child's pid, *go the descriptor to release it with. */
pid_t orc_fork_child(fg_tracker *t, orc_region *anon, uint64_t seed, int *go);
void orc_release_child(int go);
/* The child must have exited 0. */
void orc_wait_child(pid_t pid, const char *ctx);

/* io_uring through the raw system calls (no liburing): a ring of 4
 * entries.  orc_uring_open returns 0, or -1 with the reason to skip the
 * test in why.  orc_uring_read_fixed: IORING_OP_READ_FIXED of len bytes at
 * file offset off into dst, inside registered buffer buf; returns the
 * completion's result. */
struct io_uring_sqe;
struct io_uring_cqe;
struct orc_uring {
	int fd;
	_Atomic unsigned *sq_tail, *cq_head, *cq_tail;
	unsigned *sq_mask, *sq_array, *cq_mask;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
};
int orc_uring_open(struct orc_uring *u, char *why, size_t whylen);
int orc_uring_read_fixed(struct orc_uring *u, int file, unsigned buf,
			 void *dst, size_t len, off_t off);
/* IORING_REGISTER_BUFFERS (pins the pages, for writing): 0 or -errno. */
struct iovec;
int orc_uring_register(struct orc_uring *u, const struct iovec *iov,
		       unsigned n);

#endif /* FG_TEST_ORACLE_H */
