/* sys.c - the run-time support of sys.h: lock, formatting, messages. */
#include "sys.h"

#include <errno.h>
#include <linux/futex.h>
#include <string.h>

void vlock_take(vlock *l)
{
	int c = 0;

	if (atomic_compare_exchange_strong(&l->v, &c, 1))
		return;
	if (c != 2)
		c = atomic_exchange(&l->v, 2);
	while (c != 0) {
		vsys6(SYS_futex, (long)&l->v, FUTEX_WAIT_PRIVATE, 2, 0, 0, 0);
		c = atomic_exchange(&l->v, 2);
	}
}

void vlock_give(vlock *l)
{
	if (atomic_exchange(&l->v, 0) == 2)
		vsys6(SYS_futex, (long)&l->v, FUTEX_WAKE_PRIVATE, 1, 0, 0, 0);
}

struct out {
	char *p;
	size_t n, len;
};

static void put(struct out *o, char c)
{
	if (o->n + 1 < o->len)
		o->p[o->n] = c;
	o->n++;
}

static void put_num(struct out *o, unsigned long long v, unsigned base,
		    bool neg, int width, char pad)
{
	char tmp[24];
	int i = 0;

	do {
		tmp[i++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (neg)
		tmp[i++] = '-';
	while (width-- > i)
		put(o, pad);
	while (i)
		put(o, tmp[--i]);
}

size_t vfmt(char *buf, size_t len, const char *fmt, va_list ap)
{
	struct out o = {buf, 0, len};

	for (; *fmt; fmt++) {
		int lng = 0, width = 0;
		char pad = ' ';
		bool size = false;

		if (*fmt != '%') {
			put(&o, *fmt);
			continue;
		}
		fmt++;
		if (*fmt == '0')
			pad = '0', fmt++;
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l')
			lng++, fmt++;
		if (*fmt == 'z')
			size = true, fmt++;
		switch (*fmt) {
		case 'd':
		case 'i': {
			long long v = lng >= 2	 ? va_arg(ap, long long)
				      : lng || size ? va_arg(ap, long)
						    : va_arg(ap, int);
			put_num(&o, v < 0 ? -(unsigned long long)v : (unsigned long long)v,
				10, v < 0, width, pad);
			break;
		}
		case 'u':
		case 'x': {
			unsigned long long v =
				lng >= 2       ? va_arg(ap, unsigned long long)
				: lng || size ? va_arg(ap, unsigned long)
					      : va_arg(ap, unsigned);
			put_num(&o, v, *fmt == 'x' ? 16 : 10, false, width, pad);
			break;
		}
		case 'p':
			put(&o, '0');
			put(&o, 'x');
			put_num(&o, (uintptr_t)va_arg(ap, void *), 16, false, 0, ' ');
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);

			for (s = s ? s : "(null)"; *s; s++)
				put(&o, *s);
			break;
		}
		case 'c':
			put(&o, (char)va_arg(ap, int));
			break;
		case '%':
			put(&o, '%');
			break;
		default:
			put(&o, '?');
			if (!*fmt)
				fmt--;
		}
	}
	if (len)
		buf[o.n < len ? o.n : len - 1] = 0;
	return o.n;
}

size_t vsnfmt(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	n = vfmt(buf, len, fmt, ap);
	va_end(ap);
	return n;
}

void vwrite_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		long r = vsys3(SYS_write, fd, p, len);

		if (r == -EINTR)
			continue;
		if (r <= 0)
			return;
		p += r;
		len -= (size_t)r;
	}
}

static void vsay_ap(const char *fmt, va_list ap)
{
	char buf[1024];
	size_t n;

	memcpy(buf, "fgvm: ", 6);
	n = 6 + vfmt(buf + 6, sizeof buf - 7, fmt, ap);
	if (n > sizeof buf - 2)
		n = sizeof buf - 2;
	buf[n++] = '\n';
	vwrite_all(2, buf, n);
}

void vsay(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay_ap(fmt, ap);
	va_end(ap);
}

void vdie(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay_ap(fmt, ap);
	va_end(ap);
	for (;;)
		vsys1(SYS_exit_group, status);
}

const char *verrname(int e)
{
	static const struct {
		int e;
		const char *n;
	} names[] = {
		{EPERM, "EPERM"},   {ENOENT, "ENOENT"},	  {ESRCH, "ESRCH"},
		{EINTR, "EINTR"},   {EIO, "EIO"},	  {ENXIO, "ENXIO"},
		{E2BIG, "E2BIG"},   {ENOEXEC, "ENOEXEC"}, {EBADF, "EBADF"},
		{ECHILD, "ECHILD"}, {EAGAIN, "EAGAIN"},	  {ENOMEM, "ENOMEM"},
		{EACCES, "EACCES"}, {EFAULT, "EFAULT"},	  {EBUSY, "EBUSY"},
		{EEXIST, "EEXIST"}, {ENODEV, "ENODEV"},	  {ENOTDIR, "ENOTDIR"},
		{EISDIR, "EISDIR"}, {EINVAL, "EINVAL"},	  {ENFILE, "ENFILE"},
		{EMFILE, "EMFILE"}, {ENOTTY, "ENOTTY"},	  {ENOSPC, "ENOSPC"},
		{ERANGE, "ERANGE"}, {ENOSYS, "ENOSYS"},	  {ELOOP, "ELOOP"},
		{ENAMETOOLONG, "ENAMETOOLONG"},		  {EOPNOTSUPP, "EOPNOTSUPP"},
		{E2BIG, "E2BIG"},   {ETXTBSY, "ETXTBSY"}, {EOVERFLOW, "EOVERFLOW"},
	};

	for (size_t i = 0; i < sizeof names / sizeof *names; i++)
		if (names[i].e == e)
			return names[i].n;
	return "E?";
}
