/* vm_track.c - run under fgvm by tests/test_vm.c: the kvm backend sees the
 * writes that KVM's dirty log cannot (the VM's and the kernel's, on the
 * program's behalf), and the VM survives any vmcall arguments.
 *
 * usage: fgvm -- vm_track [writes|fuzz|all] [CALLS]
 * Prints one line per check ("ok ..." or "FAIL ..."), exits 0 if all
 * passed, 1 if one failed, 2 if it cannot run (not under fgvm).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "fg.h"
#include "fg_vmcall.h"

#define NPAGES 96

static long page;
static int failures;
static fg_tracker *t;
static uint8_t *reg;

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("%s ", ok ? "ok  " : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	if (!ok)
		failures++;
}

/* The pages of reg reported by a collection, as a bitmap. */
static void collect(uint64_t bits[2])
{
	int n;

	bits[0] = bits[1] = 0;
	n = fg_collect_bitmap(t, reg, NPAGES * page, bits, 128);
	if (n < 0) {
		check(false, "fg_collect_bitmap: %s", fg_strerror(n));
		exit(1);
	}
}

static bool has(const uint64_t bits[2], int pg)
{
	return bits[pg / 64] >> (pg % 64) & 1;
}

/* After what(), the pages [first, last] must be reported. */
static void expect(const char *what, int first, int last)
{
	uint64_t b[2];

	collect(b);
	for (int p = first; p <= last; p++)
		if (!has(b, p)) {
			check(false, "%s: page %d written by the kernel/VM but not "
				     "reported (bits %016" PRIx64 " %016" PRIx64 ")",
			      what, p, b[0], b[1]);
			return;
		}
	check(true, "%s: reported", what);
}

static void on_usr1(int sig)
{
	(void)sig;
}

static int thread_fn(void *arg)
{
	(void)arg;
	return 0;
}

static void writes(void)
{
	int fds[2];
	char *p;
	uint64_t b[2];

	collect(b); /* start clean */
	collect(b);
	check(!b[0] && !b[1], "quiet region reads clean");

	/* read(2) from a pipe. */
	pipe(fds);
	write(fds[1], "kernel wrote this", 17);
	read(fds[0], reg + 3 * page + 100, 17);
	expect("read(2) from a pipe", 3, 3);

	/* pread across a page boundary. */
	{
		char path[] = "/tmp/vm_track.XXXXXX";
		int fd = mkstemp(path);
		char buf[6000];

		memset(buf, 'x', sizeof buf);
		write(fd, buf, sizeof buf);
		pread(fd, reg + 7 * page + page - 3000, sizeof buf, 0);
		expect("pread(2) across pages", 7, 8);
		{
			struct iovec iov[2] = {{reg + 21 * page, 10},
					       {reg + 22 * page + 5, 10}};

			preadv(fd, iov, 2, 0);
			expect("preadv(2) into two pages", 21, 22);
		}
		close(fd);
		unlink(path);
	}
	/* recvmsg into an iovec. */
	{
		int sv[2];
		struct iovec iov = {reg + 10 * page, 64};
		struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};

		socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
		send(sv[1], "datagram", 8, 0);
		recvmsg(sv[0], &m, 0);
		expect("recvmsg(2)", 10, 10);
		close(sv[0]);
		close(sv[1]);
	}
	getrandom(reg + 12 * page, 16, 0);
	expect("getrandom(2)", 12, 12);
	syscall(SYS_clock_gettime, CLOCK_MONOTONIC, (struct timespec *)(reg + 13 * page));
	expect("clock_gettime(2) as a system call", 13, 13);
	uname((struct utsname *)(reg + 14 * page));
	expect("uname(2)", 14, 14);
	fstat(0, (struct stat *)(reg + 15 * page));
	expect("fstat(2)", 15, 15);
	pipe2((int *)(reg + 16 * page), O_CLOEXEC);
	expect("pipe2(2)", 16, 16);
	/* Calls the VM answers itself. */
	syscall(SYS_rt_sigaction, SIGUSR2, NULL, reg + 17 * page, 8);
	expect("rt_sigaction's old action (the VM's)", 17, 17);
	syscall(SYS_sigaltstack, NULL, reg + 18 * page);
	expect("sigaltstack's old stack (the VM's)", 18, 18);
	readlink("/proc/self/exe", (char *)reg + 19 * page, 64);
	expect("readlink(/proc/self/exe) (the VM's)", 19, 19);
	syscall(SYS_arch_prctl, 0x1003 /* ARCH_GET_FS */, reg + 20 * page);
	expect("arch_prctl(ARCH_GET_FS) (the VM's)", 20, 20);

	/* A signal frame the VM writes on an alternate stack in the region. */
	{
		stack_t ss = {.ss_sp = reg + 30 * page, .ss_size = 4 * page};
		struct sigaction sa;
		uint64_t bb[2];
		bool any = false;

		sigaltstack(&ss, NULL);
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = on_usr1;
		sa.sa_flags = SA_ONSTACK;
		sigaction(SIGUSR1, &sa, NULL);
		collect(bb);
		raise(SIGUSR1);
		collect(bb);
		for (int pg = 30; pg < 34; pg++)
			any |= has(bb, pg);
		check(any, "signal frame on an alternate stack in the region: reported");
		ss.ss_flags = SS_DISABLE;
		sigaltstack(&ss, NULL);
	}
	/* A thread's CLONE_CHILD_CLEARTID word in the region: only the exit
	 * writes it (the VM does, for the kernel). */
	{
		static uint8_t stack[65536] __attribute__((aligned(16)));
		_Atomic int *ctid = (_Atomic int *)(reg + 81 * page);
		uint64_t bb[2];

		*ctid = 12345;
		collect(bb);
		clone(thread_fn, stack + sizeof stack,
		      CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
			      CLONE_SYSVSEM | CLONE_CHILD_CLEARTID,
		      NULL, NULL, NULL, ctid);
		while (*ctid)
			syscall(SYS_futex, ctid, FUTEX_WAIT, 12345, NULL, NULL, 0);
		collect(bb);
		check(has(bb, 81), "a thread's CLONE_CHILD_CLEARTID word cleared at its "
				   "exit: reported");
	}
	/* MADV_DONTNEED drops the contents: they change. */
	memset(reg + 5 * page, 0x5a, page);
	collect(b);
	madvise(reg + 5 * page, page, MADV_DONTNEED);
	expect("madvise(MADV_DONTNEED)", 5, 5);
	/* fg_mark_dirty: the program's own announcement. */
	fg_mark_dirty(t, reg + 60 * page, page);
	expect("fg_mark_dirty", 60, 60);
	p = (char *)reg;
	(void)p;
}

static uint64_t rnd_state = 0x9e3779b97f4a7c15;
static uint64_t rnd(void)
{
	uint64_t z = (rnd_state += 0x9e3779b97f4a7c15);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
	return z ^ (z >> 31);
}

/* Some address inside fgvm's own memory: a mapping the program cannot
 * touch (its /proc/self/maps entry names fgvm's binary). */
static uint64_t fgvm_address(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	uint64_t a = 0;

	while (f && fgets(line, sizeof line, f))
		if (strstr(line, "fgvm") && strstr(line, "rw")) {
			sscanf(line, "%" SCNx64, &a);
			break;
		}
	if (f)
		fclose(f);
	return a;
}

static void fuzz(long calls)
{
	uint64_t host = fgvm_address();
	uint8_t *ro = mmap(NULL, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *rw = mmap(NULL, 16 * page, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t before[64], after[64];
	long ids[64];
	int nids = 0;
	long ok = 0, err = 0, badro = 0, badhost = 0;
	uint64_t pool[16];

	check(host != 0, "found fgvm's own memory in /proc/self/maps at %#" PRIx64, host);
	memcpy(before, ro, sizeof before);
	pool[0] = 0;
	pool[1] = (uint64_t)rw;
	pool[2] = (uint64_t)rw + 1;
	pool[3] = (uint64_t)ro;
	pool[4] = host;
	pool[5] = host + page;
	pool[6] = UINT64_MAX;
	pool[7] = 1ULL << 62;
	pool[8] = 0x7ffffffff000;
	pool[9] = page;
	pool[10] = 16 * page;
	pool[11] = (uint64_t)-page;
	pool[12] = (uint64_t)reg;
	pool[13] = 8;
	pool[14] = 0xffff800000000000;
	pool[15] = (uint64_t)rw + 8 * page;
	for (long i = 0; i < calls; i++) {
		long op = (long)(rnd() % 8) - 1;
		uint64_t a[4];
		long r;

		for (int k = 0; k < 4; k++)
			a[k] = rnd() % 4 == 0 ? rnd() : pool[rnd() % 16];
		if (op == FG_VMCALL_UNREGISTER || op == FG_VMCALL_COLLECT)
			if (nids && rnd() % 2)
				a[0] = (uint64_t)ids[rnd() % nids];
		r = fg_vmcall(op, (long)a[0], (long)a[1], (long)a[2], (long)a[3]);
		if (op == FG_VMCALL_REGISTER && r >= 0) {
			/* It must be the program's writable memory. */
			if (a[0] == (uint64_t)ro || (host && a[0] >= host - 16 * page &&
						       a[0] < host + 64 * page))
				badhost++;
			if (nids < 64)
				ids[nids++] = r;
			else
				fg_vmcall(FG_VMCALL_UNREGISTER, r, 0, 0, 0);
		}
		if (op == FG_VMCALL_COLLECT && r >= 0 &&
		    (a[1] == (uint64_t)ro || a[1] == host || a[1] == host + page))
			badro++;
		if (r >= 0)
			ok++;
		else
			err++;
	}
	memcpy(after, ro, sizeof after);
	check(!memcmp(before, after, sizeof after),
	      "a read-only page passed as a bitmap was not written");
	check(!badro, "no collection wrote into read-only or fgvm memory (%ld did)",
	      badro);
	check(!badhost, "no region was registered over read-only or fgvm memory "
			"(%ld were)",
	      badhost);
	for (int i = 0; i < nids; i++)
		fg_vmcall(FG_VMCALL_UNREGISTER, ids[i], 0, 0, 0);
	check(true, "fuzz: %ld random vmcalls, %ld succeeded, %ld refused, the VM "
		    "is still here",
	      calls, ok, err);
	/* And it still works. */
	{
		long id = fg_vmcall(FG_VMCALL_REGISTER, (long)rw, 16 * page, 0, 0);
		uint64_t bits = 0;
		long n;

		rw[3 * page] = 1;
		n = fg_vmcall(FG_VMCALL_COLLECT, id, (long)&bits, 8, 0);
		check(id >= 0 && n >= 1 && (bits & 8),
		      "after the fuzz: register %ld, collect %ld, bits %#" PRIx64, id, n,
		      bits);
		fg_vmcall(FG_VMCALL_UNREGISTER, id, 0, 0, 0);
	}
}

int main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "all";
	long calls = argc > 2 ? atol(argv[2]) : 100000;
	fg_options o = FG_OPTIONS_INIT;
	char why[256];
	int rc;

	page = sysconf(_SC_PAGESIZE);
	if (fg_backend_probe(FG_BACKEND_KVM, why, sizeof why)) {
		printf("vm_track: the kvm backend is unavailable: %s\n", why);
		return 2;
	}
	o.backend = FG_BACKEND_KVM;
	rc = fg_tracker_create(&o, &t);
	if (rc == 0)
		rc = fg_region_alloc(t, NPAGES * page, (void **)&reg);
	if (rc) {
		printf("vm_track: %s: %s\n", fg_strerror(rc), fg_last_error_detail());
		return 2;
	}
	printf("vm_track: %s\n", why);
	if (!strcmp(what, "writes") || !strcmp(what, "all"))
		writes();
	if (!strcmp(what, "fuzz") || !strcmp(what, "all")) {
		fuzz(calls);
		/* The fuzz's collections may write their bitmaps anywhere in
		 * the program's own writable memory (allowed: only fgvm's and
		 * read-only memory are off limits), malloc's and the
		 * toolkit's included: end here, without freeing anything. */
		printf("vm_track: %d failed\n", failures);
		fflush(stdout);
		_exit(failures ? 1 : 0);
	}
	fg_tracker_destroy(t);
	printf("vm_track: %d failed\n", failures);
	return failures ? 1 : 0;
}
