/* fg.h - the fgvm toolkit: fine-grained dirty tracking for garbage collectors.
 *
 * Glossary
 *   region   A page-aligned range of the caller's memory (anonymous, shared
 *            anonymous or memfd; on backends with FG_CAP_PRIVATE_FILE also
 *            a private mapping of a file, such as a shared library's data
 *            segment) whose writes a tracker watches.
 *   card     The unit of dirty information: a power of two from 64 bytes
 *            up, or a multiple of the page size above it.  Cards are aligned
 *            to absolute addresses, like a card table.
 *   epoch    The time between two collections of a tracker.
 *   backend  The mechanism that notices writes at page level (userfaultfd,
 *            mprotect, soft-dirty, KVM's dirty log under fgvm, or none).
 *
 * Results: every function that returns int returns 0 (or, where stated, a
 * count >= 0) on success and a negative value on failure, either -errno for
 * an error passed through from the system or -FG_E* (all >= FG_EBASE, so
 * they never collide with errno values).  fg_strerror() describes both, and
 * fg_last_error_detail() says what exactly was wrong in the calling thread's
 * last failed call.  Outputs go through pointer parameters.
 *
 * Soundness (the contract every backend is tested against): a card reported
 * clean by a collection was not written since the collection before it, by
 * the program, another thread, or the kernel on the program's behalf.  Every
 * write is reported by at least one collection that returns after the write
 * completes.  Memory the tracker cannot watch is reported dirty.  The
 * writes it covers are those made through the page tables of this
 * process's mappings of a region; the table below says which other writes
 * a backend sees by itself, and which the program must announce.
 *
 * Which writes each backend sees (async: uffd-async, sync: uffd-sync,
 * mp: mprotect, kvm: under fgvm; none reports everything always):
 *
 *   write                                       async sync  mp   kvm
 *   stores by any thread of this process         yes  yes  yes  yes
 *   system calls copying into the region         yes  yes  (1)  yes(2)
 *     (read, recv, pread, stat, ...)
 *   pinned-page I/O: io_uring fixed buffers,     no   no   no   no
 *     O_DIRECT, aio, vmsplice, RDMA
 *   /proc/self/mem, process_vm_writev (the       no   (3)  no   no
 *     kernel pins a page, then copies)
 *   memfd/shmem written through a descriptor     no   no   no   no
 *     (write, pwrite, splice, sendfile,
 *     copy_file_range) or a second mapping
 *   the file changed under a shared mapping:     no   no   no   no
 *     fallocate(PUNCH_HOLE, ZERO_RANGE),
 *     MADV_REMOVE, ftruncate down and up
 *   another process (shared mapping,             no   no   no   no
 *     process_vm_writev, /proc/PID/mem)
 *   MADV_DONTNEED of private anonymous memory    yes  yes  no   yes
 *   private file mappings (FG_CAP_PRIVATE_FILE:  no    -    -    -
 *     uffd-async, none): the file changed
 *     under pages not yet written, or
 *     MADV_DONTNEED/MADV_REMOVE bringing the
 *     file's bytes back
 *
 *   (1) fails with EFAULT on a protected page, unless fg_mark_dirty or
 *       fg_io_begin made it writable first (then seen).
 *   (2) fgvm reports what forwarded system calls wrote (vm/README.md).
 *   (3) fails with EIO on a protected page unless announced.
 *
 * Announce a "no": fg_mark_dirty after a write that is over when its call
 * returns (a pwrite into the memfd, a punched hole), or fg_io_begin before
 * and fg_io_end after I/O that completes later.  Then every backend
 * reports it.  Other processes must tell this one, which announces.  While
 * pages of a memfd region lie past the end of its file (ftruncate down),
 * no collection may run: with DIFF precision it reads them (SIGBUS).
 *
 * The mprotect backend also requires that the program leave the
 * protection of tracked memory alone (its own mprotect there, or an
 * mremap that grows a region in place, loses writes or crashes: unregister
 * first), and that no signal stack or thread stack lie in a region (the
 * kernel cannot write the signal frame).
 *
 * DIFF precision holds at most 1024 regions per tracker (fg_register:
 * -ENOSPC past that); the mprotect backend 4096 per process.
 *
 * Thread safety: all functions may be called from any thread; calls on one
 * tracker are serialised internally.  Mutator threads may write to tracked
 * memory at any time, including during fg_collect().
 */
#ifndef FG_H
#define FG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the public functions: the library is built with
 * -fvisibility=hidden, so nothing else is exported. */
#if defined(__GNUC__) && !defined(FG_API)
#define FG_API __attribute__((visibility("default")))
#elif !defined(FG_API)
#define FG_API
#endif

#define FG_VERSION_MAJOR 0
#define FG_VERSION_MINOR 12
#define FG_VERSION_PATCH 0
#define FG_VERSION_STRING "0.12.0"
/* ABI version, the soname's number (libfgtk.so.N).  Bumped when a function's
 * signature or a public struct's layout changes incompatibly; public structs
 * that may grow carry their own size as first member. */
#define FG_ABI_VERSION 0

/* Version of the library actually loaded: MAJOR*10000 + MINOR*100 + PATCH. */
FG_API int fg_version(void);

/* Toolkit error codes, returned negated. */
enum {
	FG_EBASE = 4096,
	FG_EUNALIGNED = FG_EBASE, /* address or length not page-aligned */
	FG_EZEROLEN,		  /* zero-length region */
	FG_EOVERLAP,		  /* overlaps a region already tracked */
	FG_EUNMAPPED,		  /* range not entirely mapped */
	FG_EMEMKIND,		  /* memory the backend cannot track */
	FG_ENOTREG,		  /* not a registered region */
	FG_EDESTROYED,		  /* tracker already destroyed */
	FG_EBADTRACKER,		  /* NULL or not a tracker */
	FG_ECARD,		  /* bad card size */
	FG_EUNAVAIL,		  /* backend unavailable on this machine */
	FG_EBACKENDNAME,	  /* unknown backend name */
	FG_ESTALE,		  /* iterator of an older collection */
	FG_EFORKED,		  /* not possible in a forked child */
	FG_EBITMAP,		  /* caller's bitmap too small */
	FG_ELAST
};

/* Message for a result code (negative or positive); never NULL. */
FG_API const char *fg_strerror(int err);

/* Details of the calling thread's last failure ("" if none). */
FG_API const char *fg_last_error_detail(void);

/* Page-level write tracking mechanisms. */
typedef enum fg_backend_id {
	FG_BACKEND_AUTO = 0,	/* probe the running kernel, pick the best */
	FG_BACKEND_UFFD_ASYNC,	/* "uffd-async": userfaultfd WP async + PAGEMAP_SCAN */
	FG_BACKEND_UFFD_SYNC,	/* "uffd-sync": userfaultfd WP, handler thread */
	FG_BACKEND_MPROTECT,	/* "mprotect": mprotect + SIGSEGV */
	FG_BACKEND_SOFTDIRTY,	/* "soft-dirty": clear_refs + pagemap bit 55 */
	FG_BACKEND_NONE,	/* "none": tracks nothing, reports all dirty */
	FG_BACKEND_KVM,		/* "kvm": KVM's dirty log, under fgvm only */
	FG_BACKEND_COUNT
} fg_backend_id;

/* A size as the FG_* variables spell it (FG_CARD, ...): a decimal, 0x hex
 * or 0 octal number, optionally followed by k or K (x1024), m or M
 * (x1024^2) or, since 0.5, g or G (x1024^3), nothing else, more than 0.
 * 0 and *out set, or -EINVAL (nothing written; fg_last_error_detail says
 * why).  No malloc. */
FG_API int fg_parse_size(const char *s, size_t *out);

/* Name of a backend ("uffd-async", ...), or "?" for an invalid id. */
FG_API const char *fg_backend_name(fg_backend_id id);

/* Parse a backend name (as printed by fg_backend_name; "auto" too). */
FG_API int fg_backend_from_name(const char *name, fg_backend_id *out);

/* The FG_* environment variables, since 0.5.  Every one the project reads
 * (toolkit, fgvm, adapters, tests) is an entry of one table (toolkit/env.c;
 * `fgvm info` lists it with the values set), and the toolkit, fgvm and the
 * adapters read theirs through fg_env_get: one type, one grammar,
 * everywhere.  The types and their grammars:
 *
 *   SIZE       fg_parse_size's: 64, 4k, 2M, 1G (0x hex and 0 octal too)
 *   SIZE_AUTO  a size, or "auto"
 *   SIZE_PCT   a size, or a percentage of something: "N%", 1% to 100%
 *   CHOICE     one of the entry's words, any case; where the words
 *              include 0 and 1 the flag's spellings of them work too
 *   FLAG       1, yes, on, true, or 0, no, off, false; any case
 *   COUNT      a number, 0 or more (decimal, 0x hex or 0 octal)
 *   TEXT       anything (a path, a command)
 *   BACKEND    a backend name as fg_backend_from_name takes it, or auto
 *
 * Set and empty is the same as unset.  Variables that an adapter names
 * after its own prefix are templates in the table ("FG_<ADAPTER>_TWINS")
 * and match PREFIX_TWINS for any PREFIX; fg_env_prefix lists the prefixes
 * the project knows (FG_BOEHM, ...).  None of these functions calls malloc
 * (getenv does not), so an allocator's initialisation may use them. */
typedef enum fg_env_type {
	FG_ENV_SIZE,
	FG_ENV_SIZE_AUTO,
	FG_ENV_SIZE_PCT,
	FG_ENV_CHOICE,
	FG_ENV_FLAG,
	FG_ENV_COUNT,
	FG_ENV_TEXT,
	FG_ENV_BACKEND,
	FG_ENV_NTYPES
} fg_env_type;

/* One entry of the table.  The strings are static. */
typedef struct fg_env_var {
	const char *name;   /* "FG_CARD", or a template "FG_<ADAPTER>_TWINS" */
	fg_env_type type;
	const char *words;  /* FG_ENV_CHOICE: "page|diff"; else NULL */
	const char *dflt;   /* the default, in words */
	const char *reader; /* which component reads it */
	const char *help;   /* one line */
} fg_env_var;

/* A parsed value.  Its layout is fixed: a new type reuses these fields. */
typedef struct fg_env_value {
	fg_env_type type;
	const char *text;   /* the value as given (getenv's string); NULL if
			       unset */
	size_t bytes;	    /* SIZE, SIZE_AUTO, SIZE_PCT: the size; 0 for
			       "auto" or "N%" */
	unsigned pct;	    /* SIZE_PCT: the N of "N%", else 0 */
	unsigned index;	    /* CHOICE: the word's position among words;
			       FLAG: 0 or 1; BACKEND: the fg_backend_id */
	const char *word;   /* CHOICE, BACKEND: the canonical spelling */
	unsigned long long count; /* COUNT */
} fg_env_value;

/* Parse s by type's grammar (words: CHOICE's "a|b|c", else ignored).
 * 0 and *out filled, or -EINVAL with fg_last_error_detail saying what was
 * expected: "4q: expected a size (64, 4k, 2M, 1G) or auto". */
FG_API int fg_parse_value(fg_env_type type, const char *words, const char *s,
			  fg_env_value *out);

/* A type's grammar in words ("a size (64, 4k, 2M, 1G) or auto"), and its
 * short name ("size|auto"); "?" for an invalid type. */
FG_API const char *fg_env_grammar(fg_env_type type);
FG_API const char *fg_env_type_name(fg_env_type type);

/* The table: *count entries (count may be NULL). */
FG_API const fg_env_var *fg_env_table(size_t *count);

/* The adapter prefixes the project knows ("FG_BOEHM", ...), NULL past
 * the last. */
FG_API const char *fg_env_prefix(size_t i);

/* The entry that name is, exactly or through a template (any prefix);
 * NULL if none. */
FG_API const fg_env_var *fg_env_find(const char *name);

/* Whether name is a variable of the table: exact, or a template with a
 * known prefix.  1 if so; else 0, and suggest (len bytes, may be NULL)
 * holds the closest known name ("FG_CARD" for "FG_CRAD") or "". */
FG_API int fg_env_known(const char *name, char *suggest, size_t len);

/* Parse s as the value of variable name, by its entry's type.  0 for NULL
 * or "" (unset), 1 and *out filled when valid, -EINVAL when not
 * (fg_last_error_detail: "FG_CARD=4q: expected a size (64, 4k, 2M, 1G)
 * or auto"; out->text is then the bad value, nothing else is set),
 * -ENOENT when name is in no entry. */
FG_API int fg_env_parse(const char *name, const char *s, fg_env_value *out);

/* The same for the environment's value of name: how every FG_* variable
 * is read.  out->text points into the environment. */
FG_API int fg_env_get(const char *name, fg_env_value *out);

/* Whether a backend works on the running kernel (probed, not taken from
 * headers): 0 if usable, else -FG_EUNAVAIL, and why says why.  why may be
 * NULL.  Probes run once per process and are cached. */
FG_API int fg_backend_probe(fg_backend_id id, char *why, size_t whylen);

/* What a backend can do: a bit set, from fg_backend_caps() or
 * fg_tracker_caps().  Ask these instead of comparing backend ids: a new
 * backend then needs no change in its callers.  Since 0.5.
 *
 *   cap                 async sync  mp   sd  none kvm
 *   TRACKS               yes  yes  yes  yes   -   yes
 *   KERNEL_WRITES        yes  yes   -   yes  yes  yes
 *   PROTECTS              -   yes  yes   -    -    -
 *   SIGNAL_HANDLER        -    -   yes   -    -    -
 *   SPLITS_MAPPINGS       -    -   yes   -    -    -
 *   WRITE_HOOK            -   yes  yes   -    -    -
 *   HOOK_TWINS            -   yes   -    -    -    -
 *   COLLECT_TWINS        yes  yes   -    -    -    -
 *   EXEMPT               yes  yes  yes   -    -    -
 *   CONCURRENT           yes  yes  yes   -   yes  yes
 *   NEEDS_FGVM            -    -    -    -    -   yes
 *   PEEK                 yes  yes   -    -   yes   -
 *   PRIVATE_FILE         yes   -    -    -   yes   -
 *
 * (sd: soft-dirty.)
 */
/* Watches writes: a card can be reported clean ("none" reports all). */
#define FG_CAP_TRACKS 0x0001u
/* System calls that copy into tracked memory (read, recv, pread, stat,
 * ...) are reported without fg_mark_dirty first.  Without it they fail
 * (PROTECTS) unless announced: see the table at the top of this file. */
#define FG_CAP_KERNEL_WRITES 0x0002u
/* Some kernel writes into tracked memory fail until announced with
 * fg_mark_dirty or fg_io_begin: mprotect, any system call (EFAULT);
 * uffd-sync, /proc/self/mem and process_vm_writev (EIO, EFAULT). */
#define FG_CAP_PROTECTS 0x0004u
/* Installs a SIGSEGV handler while it tracks (mprotect): the program's
 * own handler must pass on faults it does not own, and no signal or
 * thread stack may lie in a region. */
#define FG_CAP_SIGNAL_HANDLER 0x0008u
/* Protection changes split the process's mappings: pages written and
 * pages not written alternating cost a mapping each (vm.max_map_count). */
#define FG_CAP_SPLITS_MAPPINGS 0x0010u
/* Calls fg_options.hook at a page's first write of an epoch (below). */
#define FG_CAP_WRITE_HOOK 0x0020u
/* DIFF precision: twins are taken at the first write, before it lands
 * (exact from the first epoch, no page copy at collection). */
#define FG_CAP_HOOK_TWINS 0x0040u
/* DIFF precision: twins taken at collection can be validated, so
 * FG_TWIN_HOT's eager twins, FG_TWIN_STICKY and FG_TWIN_ADAPTIVE take
 * effect (without it every policy is the same, and written pages without
 * a hook twin read whole). */
#define FG_CAP_COLLECT_TWINS 0x0080u
/* fg_set_exempt is honoured: exempt pages are left out of collections
 * (not reported, not re-protected); without it the hint is ignored. */
#define FG_CAP_EXEMPT 0x0100u
/* Available only in a program run under fgvm. */
#define FG_CAP_NEEDS_FGVM 0x0200u
/* Sound while other threads write tracked memory during fg_collect and
 * fg_register (soft-dirty is not: its read-and-clear is not atomic, so it
 * wants the world stopped around them). */
#define FG_CAP_CONCURRENT 0x0400u
/* fg_collect_flags(FG_COLLECT_PEEK) works: the backend can read what was
 * written without resetting it (since 0.6). */
#define FG_CAP_PEEK 0x0800u
/* fg_register takes private mappings of files too (a library's .data, a
 * file mapped MAP_PRIVATE and written), not only anonymous, shmem and
 * memfd memory; the other backends refuse them with -FG_EMEMKIND
 * (userfaultfd's synchronous write-protection cannot watch them).
 * Stores, and system calls copying into them, are seen as in anonymous
 * memory; what the file itself does is not (the table above).  Since
 * 0.12. */
#define FG_CAP_PRIVATE_FILE 0x1000u

/* The FG_CAP_* bits of a backend (FG_BACKEND_AUTO and invalid ids: 0),
 * whether or not it is available on this machine. */
FG_API unsigned fg_backend_caps(fg_backend_id id);

/* Called on the first write to a page in an epoch, before the write lands,
 * with the page's address.  Only backends with FG_CAP_WRITE_HOOK call it:
 * uffd-sync (from its handler thread) and mprotect (from the SIGSEGV
 * handler: must be async-signal-safe).  It must not call fg_* on the
 * same tracker. */
typedef void (*fg_write_hook)(void *page, void *arg);

/* Flags for fg_options.flags. */
#define FG_OPT_NO_ENV 0x1  /* ignore the FG_* environment variables */
#define FG_OPT_VERBOSE 0x2 /* print the backend choice on stderr */

/* Precision methods (fg_options.precision). */
#define FG_PRECISION_PAGE 0 /* a written page reports all its cards */
#define FG_PRECISION_DIFF 1 /* twin/diff: only cards whose bytes changed */

/* Twin policies under FG_PRECISION_DIFF (fg_options.twin_policy): which
 * written pages get a twin (a copy of the page at the epoch start) without
 * a first-write hook.  Where the backend cannot validate a twin taken at
 * collection (no FG_CAP_COLLECT_TWINS: mprotect, soft-dirty, none) all
 * are the same. */
#define FG_TWIN_HOT 0	 /* pages written in two consecutive epochs only
			    (then left writable: no faults, diffed at every
			    collection); others need the uffd-sync hook */
#define FG_TWIN_STICKY 1 /* also every other page reported written: a
			    twin per written page (a page copy, or the
			    compared twin updated in place), kept (page
			    still protected) until the page is written
			    again, however many epochs later; bounded by
			    twin_cap, past which the pages unwritten longest
			    lose theirs */
#define FG_TWIN_ADAPTIVE 2 /* sticky only where a twin should pay (since
			    0.4): a page gets one only if it was reported
			    before, within 6 epochs (not memory filled
			    once), and not for 8 epochs after a comparison
			    found more than three quarters of its 64-byte
			    lines changed (densely written pages read
			    whole, as at page precision); twins unused for
			    12 collections (64 once compared) are dropped,
			    and the cap evicts only twins unused for a
			    while.  Meant with a budget (twin_cap_pct 10) */
/* Since 0.8, ORed into any of the policies above: a twin is a 64-bit
 * digest of each 64-byte line (512 bytes a 4 KiB page) instead of a copy
 * of the page, so the same twin_cap holds eight times the twins.  The
 * digest is a polynomial in a secret random key over GF(2^64)
 * (toolkit/digest.c): a line whose bytes changed reads unchanged with
 * probability at most 7 in 2^64 per comparison, whatever the data (the
 * program never sees the key), and a change confined to one aligned
 * 8-byte word is always seen.  Copies (the default) are exact.  Needs
 * the PCLMULQDQ instruction (fg_tracker_create fails with -FG_EUNAVAIL
 * without it).  Where twin_policy leaves it unset, FG_TWIN_FORM=digest
 * sets it. */
#define FG_TWIN_DIGEST 0x100

typedef struct fg_options {
	size_t size;	       /* sizeof(fg_options) */
	fg_backend_id backend; /* FG_BACKEND_AUTO: FG_BACKEND or probing */
	size_t card_size;      /* 0: FG_CARD or the page size */
	unsigned flags;	       /* FG_OPT_* */
	fg_write_hook hook;    /* NULL: none */
	void *hook_arg;
	/* Since 0.2: */
	unsigned precision;    /* FG_PRECISION_*; PAGE: FG_PRECISION env */
	size_t twin_cap;       /* DIFF: bytes of twins at most; 0: see
				  twin_cap_pct.  Past it pages read whole. */
	/* Since 0.3: */
	unsigned twin_policy;  /* FG_TWIN_*; HOT: FG_TWINS env (hot, sticky,
				  adaptive); | FG_TWIN_DIGEST */
	/* Since 0.4: */
	unsigned twin_cap_pct; /* DIFF, twin_cap 0: the cap is this percent
				  of the tracked bytes (1..100; 0: 50) */
} fg_options;

#define FG_OPTIONS_INIT                                                       \
	{sizeof(fg_options), FG_BACKEND_AUTO, 0, 0, NULL, NULL,               \
	 FG_PRECISION_PAGE, 0, FG_TWIN_HOT, 0}

typedef struct fg_tracker fg_tracker;

/* Create a tracker.  opt may be NULL (all defaults).  A forced backend
 * (opt->backend or the FG_BACKEND environment variable) that the machine
 * lacks fails with -FG_EUNAVAIL; auto-selection never fails for want of a
 * backend ("none" is always available) and records why it chose; when it
 * passes over a better backend it says so once per process on stderr
 * (FG_QUIET=1 silences that).  FG_CARD sets the default card size.
 * *out is written only on success. */
FG_API int fg_tracker_create(const fg_options *opt, fg_tracker **out);

/* Unregister every region and release the tracker.  Later calls with the
 * same handle fail with -FG_EDESTROYED (the handle's few bytes are kept
 * for that; nothing else is). */
FG_API int fg_tracker_destroy(fg_tracker *t);

/* The backend a tracker uses, and why it was chosen (never NULL). */
FG_API fg_backend_id fg_tracker_backend(const fg_tracker *t);
FG_API const char *fg_tracker_why(const fg_tracker *t);

/* Since 0.5: the FG_CAP_* bits of the tracker's backend; 0 for a
 * destroyed or invalid handle. */
FG_API unsigned fg_tracker_caps(const fg_tracker *t);

/* Start tracking [addr, addr+len).  addr and len must be page-aligned,
 * len > 0, the range entirely mapped, writable, and anonymous, shared
 * anonymous or memfd/shmem memory, and not overlap a region already tracked
 * in this process.  The first collection reports the writes made after this
 * call returns. */
FG_API int fg_register(fg_tracker *t, void *addr, size_t len);

/* Stop tracking a region registered with exactly (addr, len). */
FG_API int fg_unregister(fg_tracker *t, void *addr, size_t len);

/* Map len bytes of fresh anonymous memory (rounded up to pages) and
 * register it; fg_region_free unregisters and unmaps it. */
FG_API int fg_region_alloc(fg_tracker *t, size_t len, void **out);
FG_API int fg_region_free(fg_tracker *t, void *addr, size_t len);

/* Card size.  A change takes effect at the next collection; no write is
 * lost around it (backends track pages, cards are derived). */
FG_API int fg_set_card_size(fg_tracker *t, size_t card);
FG_API size_t fg_card_size(const fg_tracker *t);

/* Since 0.4, DIFF precision: change the twin cap, as fg_options'
 * twin_cap and twin_cap_pct set it (bytes 0: pct of the tracked bytes;
 * pct 0: 50).  A cap under a page holds no twin: every written page then
 * reads whole, as at page precision.  Twins over the new cap are dropped
 * now (those taken by a hook or eagerly: when next compared).  -EINVAL
 * without DIFF precision or for pct over 100.  No malloc: a collector may
 * call it with its other threads stopped. */
FG_API int fg_set_twin_cap(fg_tracker *t, size_t bytes, unsigned pct);

/* Since 0.6, DIFF precision: what a collection does when the sticky
 * twins it wants do not fit under the cap.  FG_TWIN_FULL_EVICT (the
 * default) drops the twins of the pages left unwritten longest to make
 * room; FG_TWIN_FULL_DECLINE keeps the twins it has and gives the new
 * pages none (they read whole until a twin is dropped): a fixed sample,
 * to learn how many lines a program changes per page without copying
 * twins that the cap evicts before they are used.  Either is sound.
 * -EINVAL without DIFF precision or for another value.  No malloc. */
#define FG_TWIN_FULL_EVICT 0
#define FG_TWIN_FULL_DECLINE 1
FG_API int fg_set_twin_full(fg_tracker *t, unsigned how);

/* Treat [addr, addr+len) of a registered region as written: the next
 * collection reports every card of the pages it touches, whatever their
 * bytes (with DIFF precision too: they are not compared), and the range
 * is writable by the kernel without EFAULT until then (the mprotect
 * backend unprotects it).  Call before passing tracked memory to a system
 * call that writes into it, on a backend that needs it (the table below);
 * for I/O that may still write after the next collection, use
 * fg_io_begin.  Makes no allocation; not signal-safe (takes the lock). */
FG_API int fg_mark_dirty(fg_tracker *t, void *addr, size_t len);

/* The program is about to write [addr, addr+len) of a registered region
 * itself (a collector rebuilding a free list in a block it swept, filling
 * a buffer): un-protect its pages now, in one system call, instead of a
 * write fault on each (since 0.7).  The pages read as written at the next
 * collection, exactly as if each had faulted: with DIFF precision they are
 * compared with their twins where they have one, so lines whose bytes did
 * not change read clean - unlike fg_mark_dirty, which reports every card
 * of its pages.  The range is writable by the kernel without EFAULT until
 * then, as with fg_mark_dirty.  Writes after the next collection are
 * watched as usual (it re-protects the pages).  Writes that bypass the
 * page tables still need fg_mark_dirty or fg_io_begin.  A page not
 * written after all costs a comparison (or reads whole without a twin);
 * nothing is lost either way.  In a forked child whose backend cannot act
 * there, or in a lost region, the pages are reported whole.  Returns 0,
 * -FG_ENOTREG, or the backend's error; no allocation; takes the lock. */
FG_API int fg_expect_writes(fg_tracker *t, void *addr, size_t len);

/* I/O the tracker cannot see: announce it.  Some writes reach memory
 * without passing through the page tables that a backend watches: the
 * kernel pins pages first and writes later (io_uring fixed buffers and
 * O_DIRECT reads, aio, a process_vm_writev whose source faults or whose
 * destination spans more than one page - the first pages stay pinned while
 * a later one faults, so a collection can re-protect them before the copy
 * lands - RDMA, vmsplice), or writes through another path to the same
 * pages (memfd or shmem written through its descriptor or a second
 * mapping, another process, /proc/PID/mem), or changes the file behind a
 * shared mapping (fallocate FALLOC_FL_PUNCH_HOLE / ZERO_RANGE, madvise
 * MADV_REMOVE, an ftruncate that shrinks: the pages read as zeros, and a
 * uffd-wp'd page keeps its protection through the zap, as a PTE marker,
 * and through the refault).  fg.h's table "Which writes each backend sees"
 * below says which.  A change that is over when its call returns (a hole
 * punch, a truncation, a pwrite) needs only fg_mark_dirty of the range
 * after the call returns.  Bracket I/O that may write later with
 *
 *     int io = fg_io_begin(t, buf, len);   before the I/O is started
 *     ... the I/O runs; the program waits for its completion ...
 *     fg_io_end(t, io);                      after it completed
 *
 * Every collection while the range is in flight reports it dirty (its
 * cards, in every region it overlaps), and the first collection after
 * fg_io_end reports its pages once more, whole, so every byte the I/O
 * wrote is reported by a collection that returns after the write.  The
 * range need not be page-aligned nor lie in a region (only the parts in
 * regions, registered now or later, matter); ranges may overlap.
 * fg_io_begin also makes the pages kernel-writable (the mprotect backend
 * un-protects them, and keeps them so at collections while in flight).
 * fg_io_begin returns a handle >= 0, or -FG_EZEROLEN, -EINVAL (the range
 * wraps), -ENOSPC (65536 ranges in flight), -ENOMEM; it may allocate, so
 * not from a signal handler.  fg_io_end returns 0, or -EINVAL for a handle
 * not in flight on this tracker. */
FG_API int fg_io_begin(fg_tracker *t, void *addr, size_t len);
FG_API int fg_io_end(fg_tracker *t, int io);

/* A hint: the caller treats the pages of [addr, addr+len) (rounded out to
 * pages, within one registered region) as dirty at every collection, so
 * the tracker need not watch them: with exempt != 0 a backend that can
 * (FG_CAP_EXEMPT: uffd-async, uffd-sync, mprotect) leaves them out of
 * collections, neither reporting them nor re-protecting them, so that
 * writing them costs nothing (after one fault, where the backend faults);
 * others ignore the hint.  With exempt == 0 they are watched again from
 * the next collection on, which reports them if they were written
 * meanwhile (the caller must still treat them as dirty at that
 * collection: with DIFF precision the comparison may be with older
 * contents).  Returns 0, or -FG_ENOTREG, -ENOMEM. */
FG_API int fg_set_exempt(fg_tracker *t, void *addr, size_t len,
			 int exempt);

/* DIFF precision, since 0.9: the pages of [addr, addr+len) (rounded out to
 * pages, within one registered region) get no twin while twinless != 0,
 * for memory whose cards the caller never reads (a collector's blocks of
 * pointer-free objects).  They are watched as before; written, each reads
 * whole (every card), as at page precision, and no copy or digest of it
 * is taken, kept or compared.  A twin a page already holds is compared
 * at its next report and then dropped.  With twinless == 0 the pages may
 * get twins again from the next collection on.  Without DIFF, a no-op.
 * Sound either way: a page without a twin never reads clean when
 * written.  Returns 0, or -FG_ENOTREG, -ENOMEM. */
FG_API int fg_set_twinless(fg_tracker *t, void *addr, size_t len,
			   int twinless);

/* A dirty range: card-aligned, clipped to its region. */
typedef struct fg_range {
	void *addr;
	size_t len;
} fg_range;

/* Iterator over one collection's ranges; lives on the caller's stack. */
typedef struct fg_iter {
	fg_tracker *tracker;
	uint64_t gen;
	size_t pos;
} fg_iter;

/* Read and reset the dirty state of every region.  Returns the number of
 * dirty ranges (>= 0), in address order, maximal (adjacent dirty cards are
 * merged), readable through it until the next collection on this tracker.
 *
 * No malloc: fg_collect, fg_collect_flags, fg_iter_next, fg_mark_dirty,
 * fg_expect_writes and fg_set_exempt take their memory from mmap, never
 * from malloc, so a
 * collector may call them while its other threads are stopped (one of
 * them may hold malloc's lock).  tests/test_nomalloc.c checks it for
 * every backend, at page and DIFF precision.  They take the tracker's
 * lock: not from a signal handler. */
FG_API int fg_collect(fg_tracker *t, fg_iter *it);

/* Flags for fg_collect_flags(). */
/* Report every page written since the last collection whole, even with
 * FG_PRECISION_DIFF: a page whose bytes are back to their epoch-start
 * values is still reported.  A collector needs this for an epoch in which
 * it scanned objects while the program ran (incremental marking): DIFF
 * compares with the epoch start, not with what was scanned.  Twins are
 * still kept, so the next collection without the flag is precise again. */
#define FG_COLLECT_WHOLE_PAGES 0x1
/* Report what the next collection would report so far, without ending
 * the epoch: nothing is re-protected, no twin is taken, refreshed or
 * dropped, and forced ranges (fg_mark_dirty, I/O) stay forced, so the
 * next collection reports these ranges again, with whatever is written
 * meanwhile.  For a collector that reads the dirty set when its pause
 * starts and writes into the heap during it: peeking then and collecting
 * (and discarding the result) when the pause ends lets its own writes
 * land without a fault.  Needs FG_CAP_PEEK (else -ENOTSUP, nothing done);
 * with DIFF precision the ranges are compared with the twins as a
 * collection would.  A region found unmapped reads whole, and is left
 * for the next collection to drop.  Since 0.6. */
#define FG_COLLECT_PEEK 0x2
/* With a collection that follows an FG_COLLECT_PEEK at once (no other
 * collection between them) and whose ranges the caller does not need:
 * a region in which that peek found nothing to report, and which no call
 * has named since (fg_mark_dirty, fg_expect_writes, fg_set_exempt,
 * fg_set_twinless, fg_io_begin/fg_io_end, fg_collect_bitmap, a card size
 * or twin cap change), is left as it is, with no system call: what was
 * written there after the peek is reported by the next collection
 * instead of this one (later, never lost).  Regions with DIFF twins are
 * collected as usual.  For the collector of FG_COLLECT_PEEK, which writes
 * in its pause into what the peek reported (or what it names first):
 * most of a large heap is clean at a minor collection, and each region
 * left alone saves a scan and a mapping check.  Ignored with
 * FG_COLLECT_PEEK, or after anything but a peek.  Since 0.10. */
#define FG_COLLECT_AFTER_PEEK 0x4

/* fg_collect() with FG_COLLECT_* flags (since 0.3). */
FG_API int fg_collect_flags(fg_tracker *t, fg_iter *it, unsigned flags);

/* Next range: 1 and *r filled, 0 at the end, -FG_ESTALE if the tracker
 * collected again since the iterator was filled. */
FG_API int fg_iter_next(fg_iter *it, fg_range *r);
/* Up to max next ranges into r[0..]: the number filled, 0 at the end,
 * -FG_ESTALE as fg_iter_next (nothing filled), -EINVAL for a NULL
 * iterator, or r NULL with max > 0.  The same ranges as that many
 * fg_iter_next calls, for one lock: a collection at 64-byte cards can
 * report a hundred thousand ranges.  No malloc.  Since 0.11. */
FG_API int fg_iter_next_n(fg_iter *it, fg_range *r, size_t max);

/* Read and reset the region registered at exactly (addr, len) into a
 * caller bitmap: bit i (bits[i / 64] >> (i % 64)) is the card
 * starting at align_down(addr, card) + i * card.  nbits must be at least
 * fg_bitmap_bits(t, addr, len); bits past the region are cleared.
 * Returns the number of dirty cards. */
FG_API int fg_collect_bitmap(fg_tracker *t, void *addr, size_t len,
			     uint64_t *bits, size_t nbits);
FG_API size_t fg_bitmap_bits(const fg_tracker *t, const void *addr, size_t len);

typedef struct fg_stats {
	size_t size;		  /* sizeof(fg_stats), set by the caller */
	fg_backend_id backend;
	uint64_t regions;	  /* registered now */
	uint64_t tracked_bytes;	  /* registered now */
	uint64_t collections;
	uint64_t faults;	  /* first-write faults; uffd-async: inferred,
				     one per page reported written */
	uint64_t hook_calls;
	uint64_t dirty_pages;	  /* pages reported, all collections */
	uint64_t last_dirty_pages; /* pages reported by the last one */
	uint64_t collect_ns_total;
	uint64_t collect_ns_last;
	uint64_t collect_ns_max;
	uint64_t regions_lost;	  /* unmapped/remapped while registered */
	/* DIFF precision (0 otherwise), since 0.2: */
	uint64_t twins_hook;	  /* twins taken at a first write */
	uint64_t twins_eager;	  /* twins taken at collection (hot pages) */
	uint64_t twins_invalid;	  /* eager twins dropped: written meanwhile */
	uint64_t pages_diffed;	  /* written pages compared with a twin */
	uint64_t pages_whole;	  /* written pages without one: all cards */
	uint64_t twin_bytes;	  /* twins held now */
	uint64_t diff_ns;	  /* time spent comparing (since 0.4: and
				     taking twins at collection) */
	/* Since 0.4 (FG_TWIN_STICKY, FG_TWIN_ADAPTIVE): */
	uint64_t twins_sticky;	  /* sticky twins taken (page copies) */
	uint64_t twins_refreshed; /* twins updated in place at a comparison */
	uint64_t twins_declined;  /* adaptive: pages not twinned */
	uint64_t twins_evicted;	  /* dropped for the cap */
	uint64_t twins_aged;	  /* adaptive: dropped unused */
	uint64_t twin_cap_bytes;  /* the cap now */
	/* Since 0.6: */
	uint64_t peeks;		  /* FG_COLLECT_PEEK calls (not counted in
				     collections or the times above) */
	uint64_t lines_changed;	  /* DIFF: 64-byte lines found changed on
				     the pages compared (pages_diffed) */
	/* Since 0.8: */
	uint64_t take_ns;	  /* DIFF: of diff_ns, the time taking twins
				     at collection (and validating them) */
	/* Since 0.10: */
	uint64_t peek_skipped;	  /* regions FG_COLLECT_AFTER_PEEK left
				     alone (no system call) */
} fg_stats;

FG_API int fg_get_stats(fg_tracker *t, fg_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* FG_H */
