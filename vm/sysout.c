/* sysout.c - which guest memory a forwarded system call writes.
 *
 * Invariant I2: the kernel writes into guest memory on the program's
 * behalf (read(2), stat(2), recvmsg(2), ...) through the host's page
 * tables, which KVM's dirty log never sees.  After each forwarded call,
 * sysout_mark() reports what the call wrote, from this table.  A call
 * that is neither in the table nor known to write nothing is treated
 * conservatively: every tracked region that one of its arguments points
 * into is reported dirty whole.
 *
 * Before the call, sysout_check() refuses (-EFAULT, as the kernel would
 * for unmapped memory) output buffers that are not the program's
 * writable memory, so that a stray pointer cannot make the kernel write
 * into fgvm's own memory.
 */
#include "vmm.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>

enum kind {
	K_NONE,
	K_CONST,   /* p bytes */
	K_ARG,	   /* a[p] bytes */
	K_RET,	   /* ret bytes, at most a[p] */
	K_RETMUL,  /* ret * p bytes */
	K_ARGMUL,  /* a[p >> 8] * (p & 0xff) bytes */
	K_SOCKLEN, /* *(uint32_t *)a[p] bytes (after the call) */
	K_FDSET,   /* a[0] bits, rounded to 64 */
};

struct out {
	uint8_t arg, kind;
	uint16_t p;
};

struct spec {
	struct out o[3];
};

#define O(a, k, p) {(a), (k), (p)}
#define MUL(argi, size) (((argi) << 8) | (size))

static const struct spec table[] = {
	[SYS_read] = {{O(1, K_RET, 2)}},
	[SYS_pread64] = {{O(1, K_RET, 2)}},
	[SYS_recvfrom] = {{O(1, K_RET, 2), O(4, K_SOCKLEN, 5), O(5, K_CONST, 4)}},
	[SYS_getdents] = {{O(1, K_RET, 2)}},
	[SYS_getdents64] = {{O(1, K_RET, 2)}},
	[SYS_stat] = {{O(1, K_CONST, 144)}},
	[SYS_fstat] = {{O(1, K_CONST, 144)}},
	[SYS_lstat] = {{O(1, K_CONST, 144)}},
	[SYS_newfstatat] = {{O(2, K_CONST, 144)}},
	[SYS_statx] = {{O(4, K_CONST, 256)}},
	[SYS_statfs] = {{O(1, K_CONST, 120)}},
	[SYS_fstatfs] = {{O(1, K_CONST, 120)}},
	[SYS_uname] = {{O(0, K_CONST, 390)}},
	[SYS_sysinfo] = {{O(0, K_CONST, 112)}},
	[SYS_times] = {{O(0, K_CONST, 32)}},
	[SYS_getrusage] = {{O(1, K_CONST, 144)}},
	[SYS_gettimeofday] = {{O(0, K_CONST, 16), O(1, K_CONST, 8)}},
	[SYS_clock_gettime] = {{O(1, K_CONST, 16)}},
	[SYS_clock_getres] = {{O(1, K_CONST, 16)}},
	[SYS_time] = {{O(0, K_CONST, 8)}},
	[SYS_getrandom] = {{O(0, K_RET, 1)}},
	[SYS_pipe] = {{O(0, K_CONST, 8)}},
	[SYS_pipe2] = {{O(0, K_CONST, 8)}},
	[SYS_socketpair] = {{O(3, K_CONST, 8)}},
	[SYS_getcwd] = {{O(0, K_RET, 1)}},
	[SYS_readlink] = {{O(1, K_RET, 2)}},
	[SYS_readlinkat] = {{O(2, K_RET, 3)}},
	[SYS_accept] = {{O(1, K_SOCKLEN, 2), O(2, K_CONST, 4)}},
	[SYS_accept4] = {{O(1, K_SOCKLEN, 2), O(2, K_CONST, 4)}},
	[SYS_getsockname] = {{O(1, K_SOCKLEN, 2), O(2, K_CONST, 4)}},
	[SYS_getpeername] = {{O(1, K_SOCKLEN, 2), O(2, K_CONST, 4)}},
	[SYS_getsockopt] = {{O(3, K_SOCKLEN, 4), O(4, K_CONST, 4)}},
	[SYS_wait4] = {{O(1, K_CONST, 4), O(3, K_CONST, 144)}},
	[SYS_waitid] = {{O(2, K_CONST, 128), O(4, K_CONST, 144)}},
	[SYS_poll] = {{O(0, K_ARGMUL, MUL(1, 8))}},
	[SYS_ppoll] = {{O(0, K_ARGMUL, MUL(1, 8)), O(2, K_CONST, 16)}},
	[SYS_select] = {{O(1, K_FDSET, 0), O(2, K_FDSET, 0), O(3, K_FDSET, 0)}},
	[SYS_pselect6] = {{O(1, K_FDSET, 0), O(2, K_FDSET, 0), O(3, K_FDSET, 0)}},
	[SYS_epoll_wait] = {{O(1, K_RETMUL, 12)}},
	[SYS_epoll_pwait] = {{O(1, K_RETMUL, 12)}},
	[441] = {{O(1, K_RETMUL, 12)}}, /* epoll_pwait2 */
	[SYS_nanosleep] = {{O(1, K_CONST, 16)}},
	[SYS_clock_nanosleep] = {{O(3, K_CONST, 16)}},
	[SYS_getitimer] = {{O(1, K_CONST, 32)}},
	[SYS_setitimer] = {{O(2, K_CONST, 32)}},
	[SYS_timer_create] = {{O(2, K_CONST, 4)}},
	[SYS_timer_gettime] = {{O(1, K_CONST, 32)}},
	[SYS_timer_settime] = {{O(3, K_CONST, 32)}},
	[SYS_timerfd_gettime] = {{O(1, K_CONST, 32)}},
	[SYS_timerfd_settime] = {{O(3, K_CONST, 32)}},
	[SYS_rt_sigpending] = {{O(0, K_ARG, 1)}},
	[SYS_rt_sigtimedwait] = {{O(1, K_CONST, 128)}},
	[SYS_sched_getaffinity] = {{O(2, K_RET, 1)}},
	[SYS_sched_getparam] = {{O(1, K_CONST, 4)}},
	[SYS_sched_getattr] = {{O(1, K_ARG, 2)}},
	[SYS_sched_rr_get_interval] = {{O(1, K_CONST, 16)}},
	[SYS_getresuid] = {{O(0, K_CONST, 4), O(1, K_CONST, 4), O(2, K_CONST, 4)}},
	[SYS_getresgid] = {{O(0, K_CONST, 4), O(1, K_CONST, 4), O(2, K_CONST, 4)}},
	[SYS_getgroups] = {{O(1, K_RETMUL, 4)}},
	[SYS_getrlimit] = {{O(1, K_CONST, 16)}},
	[SYS_prlimit64] = {{O(3, K_CONST, 16)}},
	[SYS_capget] = {{O(1, K_CONST, 24)}},
	[SYS_get_robust_list] = {{O(1, K_CONST, 8), O(2, K_CONST, 8)}},
	[SYS_getxattr] = {{O(2, K_RET, 3)}},
	[SYS_lgetxattr] = {{O(2, K_RET, 3)}},
	[SYS_fgetxattr] = {{O(2, K_RET, 3)}},
	[SYS_listxattr] = {{O(1, K_RET, 2)}},
	[SYS_llistxattr] = {{O(1, K_RET, 2)}},
	[SYS_flistxattr] = {{O(1, K_RET, 2)}},
	[SYS_sendfile] = {{O(2, K_CONST, 8)}},
	[SYS_splice] = {{O(1, K_CONST, 8), O(3, K_CONST, 8)}},
	[SYS_copy_file_range] = {{O(1, K_CONST, 8), O(3, K_CONST, 8)}},
	[SYS_io_setup] = {{O(1, K_CONST, 8)}},
	[SYS_io_getevents] = {{O(3, K_RETMUL, 32)}},
	[SYS_io_pgetevents] = {{O(3, K_RETMUL, 32)}},
	[SYS_mq_timedreceive] = {{O(1, K_RET, 2), O(3, K_CONST, 4)}},
	[SYS_mq_getsetattr] = {{O(2, K_CONST, 64)}},
	[SYS_getcpu] = {{O(0, K_CONST, 4), O(1, K_CONST, 4)}},
	[SYS_syslog] = {{O(1, K_RET, 2)}},
	[SYS_ustat] = {{O(1, K_CONST, 32)}},
	[SYS_adjtimex] = {{O(0, K_CONST, 208)}},
	[SYS_clock_adjtime] = {{O(1, K_CONST, 208)}},
	[SYS_sendmmsg] = {{O(1, K_ARGMUL, MUL(2, 64))}},
	[SYS_move_pages] = {{O(4, K_ARGMUL, MUL(1, 4))}},
	[451] = {{O(2, K_CONST, 40)}}, /* cachestat */
};

#define NTABLE (sizeof table / sizeof *table)

/* Calls that write no memory of the program's (or only memory that is
 * the VM's business: those are intercepted before they get here). */
static bool writes_nothing(long nr)
{
	switch (nr) {
	case SYS_write: case SYS_open: case SYS_close: case SYS_lseek:
	case SYS_pwrite64: case SYS_writev: case SYS_pwritev: case 328: /* pwritev2 */
	case SYS_access: case SYS_sched_yield: case SYS_msync:
	case SYS_dup: case SYS_dup2: case SYS_pause: case SYS_alarm:
	case SYS_getpid: case SYS_socket: case SYS_connect: case SYS_sendto:
	case SYS_sendmsg: case SYS_shutdown: case SYS_bind: case SYS_listen:
	case SYS_setsockopt: case SYS_kill: case SYS_semget: case SYS_msgget:
	case SYS_msgsnd: case SYS_flock: case SYS_fsync: case SYS_fdatasync:
	case SYS_truncate: case SYS_ftruncate: case SYS_chdir: case SYS_fchdir:
	case SYS_rename: case SYS_mkdir: case SYS_rmdir: case SYS_creat:
	case SYS_link: case SYS_unlink: case SYS_symlink: case SYS_chmod:
	case SYS_fchmod: case SYS_chown: case SYS_fchown: case SYS_lchown:
	case SYS_umask: case SYS_getuid: case SYS_getgid:
	case SYS_setuid: case SYS_setgid: case SYS_geteuid: case SYS_getegid:
	case SYS_setpgid: case SYS_getppid: case SYS_getpgrp: case SYS_setsid:
	case SYS_setreuid: case SYS_setregid: case SYS_setgroups:
	case SYS_setresuid: case SYS_setresgid: case SYS_getpgid:
	case SYS_setfsuid: case SYS_setfsgid: case SYS_getsid:
	case SYS_capset: case SYS_rt_sigqueueinfo: case SYS_rt_sigsuspend:
	case SYS_utime: case SYS_mknod: case SYS_personality:
	case SYS_getpriority: case SYS_setpriority: case SYS_sched_setparam:
	case SYS_sched_setscheduler: case SYS_sched_getscheduler:
	case SYS_sched_get_priority_max: case SYS_sched_get_priority_min:
	case SYS_mlock: case SYS_munlock: case SYS_mlockall: case SYS_munlockall:
	case SYS_vhangup: case SYS_pivot_root: case SYS_chroot: case SYS_sync:
	case SYS_acct: case SYS_settimeofday: case SYS_mount: case SYS_umount2:
	case SYS_swapon: case SYS_swapoff: case SYS_reboot: case SYS_sethostname:
	case SYS_setdomainname: case SYS_gettid: case SYS_readahead:
	case SYS_setxattr: case SYS_lsetxattr: case SYS_fsetxattr:
	case SYS_removexattr: case SYS_lremovexattr: case SYS_fremovexattr:
	case SYS_tkill: case SYS_sched_setaffinity: case SYS_io_destroy:
	case SYS_io_submit: case SYS_io_cancel: case SYS_epoll_create:
	case SYS_semtimedop: case SYS_fadvise64: case SYS_timer_getoverrun:
	case SYS_timer_delete: case SYS_clock_settime: case SYS_exit_group:
	case SYS_epoll_ctl: case SYS_tgkill: case SYS_utimes: case SYS_mbind:
	case SYS_set_mempolicy: case SYS_mq_open: case SYS_mq_unlink:
	case SYS_mq_timedsend: case SYS_mq_notify: case SYS_kexec_load:
	case SYS_add_key: case SYS_request_key: case SYS_ioprio_set:
	case SYS_ioprio_get: case SYS_inotify_init: case SYS_inotify_add_watch:
	case SYS_inotify_rm_watch: case SYS_migrate_pages: case SYS_openat:
	case SYS_mkdirat: case SYS_mknodat: case SYS_fchownat: case SYS_futimesat:
	case SYS_unlinkat: case SYS_renameat: case SYS_linkat: case SYS_symlinkat:
	case SYS_fchmodat: case SYS_faccessat: case SYS_unshare:
	case SYS_set_robust_list: case SYS_tee: case SYS_sync_file_range:
	case SYS_utimensat: case SYS_signalfd: case SYS_timerfd_create:
	case SYS_eventfd: case SYS_fallocate: case SYS_signalfd4:
	case SYS_eventfd2: case SYS_epoll_create1: case SYS_dup3:
	case SYS_inotify_init1: case SYS_rt_tgsigqueueinfo:
	case SYS_perf_event_open: case SYS_fanotify_init: case SYS_fanotify_mark:
	case SYS_open_by_handle_at: case SYS_syncfs: case SYS_setns:
	case SYS_kcmp: case SYS_finit_module: case SYS_sched_setattr:
	case SYS_renameat2: case SYS_memfd_create: case SYS_kexec_file_load:
	case SYS_membarrier: case SYS_mlock2: case SYS_pkey_alloc:
	case SYS_pkey_free: case 434: /* pidfd_open */ case 424: /* pidfd_send_signal */
	case 436: /* close_range */ case 438: /* pidfd_getfd */ case 439: /* faccessat2 */
	case 437: /* openat2 */ case 440: /* process_madvise */
	case 444: /* landlock_create_ruleset */ case 445: case 446:
	case 447: /* memfd_secret */ case 448: /* process_mrelease */
	case 449: /* futex_waitv */ case 450: /* set_mempolicy_home_node */
	case 425: /* io_uring_setup */ case 427: /* io_uring_register */
	case 428: case 429: case 430: case 431: case 432: case 433: /* mount api */
	case 442: /* mount_setattr */ case 443: /* quotactl_fd */
	case SYS_shmget: case SYS_rt_sigreturn:
		return true;
	default:
		return false;
	}
}

static uint64_t get_u32(uint64_t p)
{
	uint32_t v = 0;

	if (!p || guest_read(&v, p, 4) < 0)
		return 0;
	return v;
}

static void mark(uint64_t p, uint64_t len)
{
	if (p && len)
		host_wrote(p, len);
}

static void mark_iov(uint64_t iov, uint64_t cnt, int64_t bytes)
{
	for (uint64_t i = 0; i < cnt && i < 1024 && bytes > 0; i++) {
		struct iovec v;

		if (guest_read(&v, iov + i * sizeof v, sizeof v) < 0)
			return;
		if ((int64_t)v.iov_len > bytes)
			v.iov_len = (size_t)bytes;
		mark((uint64_t)v.iov_base, v.iov_len);
		bytes -= (int64_t)v.iov_len;
	}
}

static void mark_msghdr(uint64_t mp, int64_t bytes)
{
	struct msghdr m;

	if (guest_read(&m, mp, sizeof m) < 0)
		return;
	mark(mp, sizeof m);
	mark((uint64_t)m.msg_name, m.msg_namelen);
	mark((uint64_t)m.msg_control, m.msg_controllen);
	mark_iov((uint64_t)m.msg_iov, m.msg_iovlen, bytes);
}

static uint64_t out_len(const struct out *o, const uint64_t a[6], long ret,
			bool after)
{
	switch (o->kind) {
	case K_CONST:
		return o->p;
	case K_ARG:
		return a[o->p];
	case K_RET:
		return after ? (ret > 0 ? (uint64_t)ret : 0) : a[o->p];
	case K_RETMUL:
		return after ? (ret > 0 ? (uint64_t)ret * o->p : 0) : 0;
	case K_ARGMUL:
		return a[o->p >> 8] * (o->p & 0xff);
	case K_SOCKLEN:
		return after ? get_u32(a[o->p]) : 0;
	case K_FDSET:
		return ((a[0] + 63) / 64) * 8;
	default:
		return 0;
	}
}

long sysout_check(long nr, const uint64_t a[6])
{
	if (nr < 0 || (size_t)nr >= NTABLE)
		return 0;
	for (int i = 0; i < 3; i++) {
		const struct out *o = &table[nr].o[i];
		uint64_t p = a[o->arg], len;

		if (o->kind == K_NONE || !p)
			continue;
		len = out_len(o, a, 0, false);
		if (len && len < (1ULL << 32) && !guest_range_ok(&g_vm, p, len, PROT_WRITE))
			return -EFAULT;
	}
	return 0;
}

static void mark_unknown(const uint64_t a[6], int nargs)
{
	for (int i = 0; i < nargs; i++)
		track_host_write_unknown(&g_vm, a[i]);
}

static void mark_ioctl(const uint64_t a[6])
{
	unsigned long cmd = a[1];
	uint64_t arg = a[2];

	if (!arg)
		return;
	if (_IOC_DIR(cmd) & _IOC_READ) {
		mark(arg, _IOC_SIZE(cmd));
		return;
	}
	switch (cmd) {
	case 0x5401: /* TCGETS */
		mark(arg, 36);
		return;
	case 0x5413: /* TIOCGWINSZ */
		mark(arg, 8);
		return;
	case 0x541B: /* FIONREAD */
	case 0x5411: /* TIOCOUTQ */
	case 0x540F: /* TIOCGPGRP */
	case 0x5429: /* TIOCGSID */
	case 0x5424: /* TIOCGETD */
	case 0x5415: /* TIOCMGET */
		mark(arg, 4);
		return;
	case 0x5402: case 0x5403: case 0x5404: /* TCSETS* read memory */
	case 0x5414: /* TIOCSWINSZ */
	case 0x5421: /* FIONBIO */
	case 0x5451: case 0x5450: /* FIOCLEX, FIONCLEX */
	case 0x540E: case 0x5410: /* TIOCSCTTY, TIOCSPGRP */
	case 0x540B: case 0x540A: case 0x5409: /* TCFLSH, TCXONC, TCSBRK */
		return;
	default:
		mark_unknown(a, 3);
	}
}

void sysout_mark(long nr, const uint64_t a[6], long ret)
{
	if (!atomic_load_explicit(&g_vm.ntracked, memory_order_acquire))
		return;
	if (vsys_err(ret) && nr != SYS_ioctl)
		return; /* a failed call writes nothing we rely on */
	switch (nr) {
	case SYS_readv:
	case SYS_preadv:
	case 327: /* preadv2 */
		mark_iov(a[1], a[2], ret);
		return;
	case SYS_process_vm_readv:
		mark_iov(a[1], a[2], ret);
		return;
	case SYS_process_vm_writev:
		if ((int)a[0] == vgetpid())
			mark_iov(a[3], a[4], ret);
		return;
	case SYS_vmsplice:
		mark_iov(a[1], a[2], ret);
		return;
	case SYS_recvmsg:
		mark_msghdr(a[1], ret);
		return;
	case SYS_recvmmsg:
		for (long i = 0; i < ret; i++) {
			uint64_t mp = a[1] + (uint64_t)i * 64;

			mark_msghdr(mp, (int64_t)get_u32(mp + 56));
			mark(mp + 56, 4);
		}
		return;
	case SYS_ioctl:
		if (!vsys_err(ret))
			mark_ioctl(a);
		return;
	case SYS_futex: {
		int op = (int)a[1] & FUTEX_CMD_MASK;

		if (op == FUTEX_LOCK_PI || op == FUTEX_UNLOCK_PI ||
		    op == FUTEX_TRYLOCK_PI || op == FUTEX_WAIT_REQUEUE_PI ||
		    op == FUTEX_CMP_REQUEUE_PI || op == 13 /* LOCK_PI2 */)
			mark(a[0], 4);
		if (op == FUTEX_WAKE_OP)
			mark(a[4], 4);
		if (op == FUTEX_CMP_REQUEUE_PI || op == FUTEX_WAIT_REQUEUE_PI)
			mark(a[4], 4);
		return;
	}
	case SYS_fcntl:
		if (a[1] == 5 /* F_GETLK */ || a[1] == 36 /* F_OFD_GETLK */)
			mark(a[2], 32);
		else if (a[1] == 16 /* F_GETOWN_EX */)
			mark(a[2], 8);
		return;
	case SYS_prctl:
		if (a[0] == 16 /* PR_GET_NAME */)
			mark(a[1], 16);
		else if (a[0] == 2 || a[0] == 37 || a[0] == 10 || a[0] == 12 ||
			 a[0] == 18 || a[0] == 19 || a[0] == 25)
			mark(a[1], 4);
		else if (a[0] == 40 /* PR_GET_TID_ADDRESS */)
			mark(a[1], 8);
		return;
	case SYS_shmctl:
		if (a[1] == 2 || a[1] == 13 || a[1] == 15 || a[1] == 3 || a[1] == 14)
			mark(a[2], 112);
		return;
	case SYS_msgctl:
		if (a[1] == 2 || a[1] == 11 || a[1] == 12 || a[1] == 3)
			mark(a[2], 120);
		return;
	case SYS_msgrcv:
		if (ret >= 0)
			mark(a[1], 8 + (uint64_t)ret);
		return;
	case SYS_mincore:
		mark(a[2], (a[1] + PAGE_SIZE - 1) / PAGE_SIZE);
		return;
	case SYS_get_mempolicy:
		mark(a[0], 4);
		mark(a[1], (a[2] + 7) / 8);
		return;
	default:
		break;
	}
	if (nr >= 0 && (size_t)nr < NTABLE &&
	    (table[nr].o[0].kind != K_NONE)) {
		for (int i = 0; i < 3; i++) {
			const struct out *o = &table[nr].o[i];

			if (o->kind != K_NONE)
				mark(a[o->arg], out_len(o, a, ret, true));
		}
		return;
	}
	if (!writes_nothing(nr))
		mark_unknown(a, 6);
}
