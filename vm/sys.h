/* sys.h - what the VM's run-time code may call.
 *
 * Invariant (see vmm.h): once the program runs, every host thread of the
 * VM (the main thread included) executes the VM's code with no usable
 * C-library state: new threads are made with a raw clone and share the
 * main thread's TLS pointer, and the program's signals may interrupt the
 * VM anywhere.  So run-time code uses only what is here: raw system calls
 * (results are -errno, nothing touches errno), a futex lock, and message
 * output that formats into a stack buffer.  memcpy, memset, memcmp and
 * strlen from the C library are fine (no state); stdio, malloc, errno,
 * locale and anything that takes a lock are not.
 */
#ifndef FGVM_SYS_H
#define FGVM_SYS_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>

static inline long vsys6(long n, long a, long b, long c, long d, long e,
			 long f)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8),
			   "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

#define vsys0(n) vsys6((n), 0, 0, 0, 0, 0, 0)
#define vsys1(n, a) vsys6((n), (long)(a), 0, 0, 0, 0, 0)
#define vsys2(n, a, b) vsys6((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define vsys3(n, a, b, c) vsys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define vsys4(n, a, b, c, d)                                                  \
	vsys6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define vsys5(n, a, b, c, d, e)                                               \
	vsys6((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)

/* True for a raw result that is an error (-4095..-1). */
static inline bool vsys_err(long r)
{
	return (unsigned long)r >= -4095UL;
}

static inline long vmmap(void *addr, size_t len, int prot, int flags, int fd,
			 long off)
{
	return vsys6(SYS_mmap, (long)addr, (long)len, prot, flags, fd, off);
}

static inline int vgettid(void)
{
	return (int)vsys0(SYS_gettid);
}

static inline int vgetpid(void)
{
	return (int)vsys0(SYS_getpid);
}

/* A lock for run-time code: three-state futex mutex (Drepper).  Never
 * taken by a signal handler. */
typedef struct vlock {
	_Atomic int v;
} vlock;

void vlock_take(vlock *l);
void vlock_give(vlock *l);

/* Messages.  vfmt understands %s %d %i %u %ld %lu %lx %lld %llu %llx %zu
 * %zx %x %p %c %%, with an optional '0' and width for numbers; it never
 * allocates.  vsay prints "fgvm: " and the message (a newline added) on
 * fd 2; vdie also exits the process with the given status. */
size_t vfmt(char *buf, size_t len, const char *fmt, va_list ap);
size_t vsnfmt(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void vsay(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void vdie(int status, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Write all of buf to fd (retrying on EINTR and short writes). */
void vwrite_all(int fd, const void *buf, size_t len);

/* Name of an errno value ("ENOENT"), or "E?" for others. */
const char *verrname(int e);

#endif /* FGVM_SYS_H */
