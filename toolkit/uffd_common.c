/* uffd_common.c - userfaultfd and PAGEMAP_SCAN calls shared by the two
 * userfaultfd backends.  Feature availability is asked of the running
 * kernel (UFFDIO_API answers EINVAL for features it does not know), never
 * inferred from the headers we were built with. */
#include "fg_compat.h"
#include "fg_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

static int open_uffd(int flags)
{
	int fd = (int)syscall(SYS_userfaultfd, flags);

	if (fd < 0 && errno == EPERM) {
		/* /dev/userfaultfd grants kernel-fault handling by file
		 * permissions instead of capabilities (Linux 6.1). */
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
			close(dev);
		}
		if (fd < 0)
			errno = EPERM;
	}
	return fg_fd_rehome(fd);
}

int fg_uffd_open(uint64_t features, bool kernel_faults, int *fd_out,
		 char *why, size_t whylen)
{
	int flags = O_CLOEXEC | O_NONBLOCK;
	struct uffdio_api api = {.api = UFFD_API, .features = features};
	int fd = open_uffd(flags);

	if (fd < 0 && errno == EPERM && !kernel_faults)
		fd = open_uffd(flags | UFFD_USER_MODE_ONLY);
	if (fd < 0) {
		int e = errno;

		if (e == ENOSYS)
			snprintf(why, whylen, "kernel built without userfaultfd");
		else if (e == EPERM)
			snprintf(why, whylen,
				 "userfaultfd not permitted: run as root, give "
				 "CAP_SYS_PTRACE, grant access to "
				 "/dev/userfaultfd, or set sysctl "
				 "vm.unprivileged_userfaultfd=1");
		else
			snprintf(why, whylen, "userfaultfd: %s", strerror(e));
		return -FG_EUNAVAIL;
	}
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		snprintf(why, whylen,
			 "kernel lacks userfaultfd features %#llx (%s): "
			 "write-protect needs Linux >= 5.7, unpopulated-page "
			 "protection 6.4, async mode 6.7",
			 (unsigned long long)features, strerror(errno));
		close(fd);
		return -FG_EUNAVAIL;
	}
	*fd_out = fd;
	return 0;
}

int fg_uffd_wp(int fd, uintptr_t start, uintptr_t end, bool protect,
	       bool wake)
{
	struct uffdio_writeprotect wp = {
		.range = {.start = start, .len = end - start},
		/* The kernel refuses DONTWAKE together with WP. */
		.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP
				: (wake ? 0 : UFFDIO_WRITEPROTECT_MODE_DONTWAKE),
	};

	for (;;) {
		if (ioctl(fd, UFFDIO_WRITEPROTECT, &wp) == 0)
			return 0;
		/* EAGAIN: the mm changed under us (mremap etc.); retry. */
		if (errno != EAGAIN)
			return -errno;
	}
}

int fg_uffd_register_wp(int fd, fg_region *r)
{
	struct uffdio_register reg = {
		.range = {.start = r->base, .len = r->len},
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	int rc;

	if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0) {
		if (errno == EBUSY)
			return fg_fail(-FG_EOVERLAP,
				       "[%#lx, +%zu) is already registered "
				       "with another userfaultfd",
				       (unsigned long)r->base, r->len);
		if (errno == EINVAL)
			return fg_fail(-FG_EMEMKIND,
				       "userfaultfd cannot write-protect "
				       "[%#lx, +%zu)",
				       (unsigned long)r->base, r->len);
		return fg_fail(-errno, "UFFDIO_REGISTER: %s", strerror(errno));
	}
	rc = fg_uffd_wp(fd, r->base, r->base + r->len, true, false);
	if (rc) {
		fg_uffd_unregister(fd, r);
		return fg_fail(rc, "UFFDIO_WRITEPROTECT: %s", strerror(-rc));
	}
	return 0;
}

int fg_uffd_unregister(int fd, fg_region *r)
{
	struct uffdio_range range = {.start = r->base, .len = r->len};

	return ioctl(fd, UFFDIO_UNREGISTER, &range) < 0 ? -errno : 0;
}

int fg_pagemap_written(int pagemap_fd, uintptr_t start, uintptr_t end,
		       bool wp, bool check_async, fg_runs *out)
{
	struct page_region vec[256];
	struct pm_scan_arg arg = {
		.size = sizeof arg,
		.flags = (wp ? PM_SCAN_WP_MATCHING : 0) |
			 (check_async ? PM_SCAN_CHECK_WPASYNC : 0),
		.start = start,
		.end = end,
		.vec = (uintptr_t)vec,
		.vec_len = sizeof vec / sizeof *vec,
		.category_mask = PAGE_IS_WRITTEN,
		.return_mask = PAGE_IS_WRITTEN,
	};

	/* The kernel fills vec in address order and stops early when it is
	 * full; walk_end says where to resume. */
	while (arg.start < end) {
		int n = ioctl(pagemap_fd, PAGEMAP_SCAN, &arg);

		if (n < 0) {
			if (errno == EPERM && check_async)
				return -FG_EUNMAPPED; /* a VMA not ours */
			return -errno;
		}
		for (int i = 0; i < n; i++) {
			int rc = fg_runs_push(out, vec[i].start, vec[i].end);

			if (rc)
				return rc;
		}
		if (arg.walk_end <= arg.start)
			break;
		arg.start = arg.walk_end;
	}
	return 0;
}
