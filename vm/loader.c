/* loader.c - put a program into the address space as execve(2) would:
 * its PT_LOAD segments (at a base of our choosing if it is PIE), its
 * interpreter (ld.so), "#!" scripts, a brk area after it, a stack with
 * argv, envp and the auxiliary vector.  Everything it maps is GUEST
 * memory (mm.c); nothing of fgvm's is visible to the program.
 */
#include "vmm.h"

#include <elf.h>
#include <stdlib.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/resource.h>

#define MAX_PHDRS 64

struct image {
	uint64_t base;	   /* load bias */
	uint64_t entry;	   /* absolute */
	uint64_t phdr;	   /* where the program headers are in memory */
	uint16_t phnum;
	uint64_t end;	   /* highest mapped address */
	bool brk_reserved; /* BRK_RESERVE bytes after end are ours already */
	char interp[4096]; /* PT_INTERP, or "" */
};

static int fail(char *err, size_t len, int code, const char *fmt, const char *a,
		const char *b)
{
	vsnfmt(err, len, fmt, a, b ? b : "");
	return code;
}

static long pread_all(int fd, void *buf, size_t len, long off)
{
	size_t got = 0;

	while (got < len) {
		long n = vsys4(SYS_pread64, fd, (char *)buf + got, len - got,
			       off + (long)got);

		if (n == -EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? n : (long)got;
		got += (size_t)n;
	}
	return (long)got;
}

static int map_image(struct vm *vm, const char *path, bool is_interp,
		     struct image *img, char *err, size_t errlen)
{
	Elf64_Ehdr eh;
	Elf64_Phdr ph[MAX_PHDRS];
	uint64_t lo = UINT64_MAX, hi = 0, bias = 0;
	long fd = vsys4(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
	int rc = 0;

	memset(img, 0, sizeof *img);
	if (fd < 0)
		return fail(err, errlen, fd == -ENOENT ? FGVM_EXIT_NOTFOUND : FGVM_EXIT_NOEXEC,
			    "%s: cannot open: %s", path, verrname((int)-fd));
	if (pread_all((int)fd, &eh, sizeof eh, 0) != sizeof eh ||
	    memcmp(eh.e_ident, ELFMAG, SELFMAG)) {
		rc = fail(err, errlen, FGVM_EXIT_NOEXEC, "%s: not an ELF file%s", path,
			  is_interp ? " (program interpreter)" : "");
		goto out;
	}
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64) {
		rc = fail(err, errlen, FGVM_EXIT_NOEXEC,
			  "%s: not an x86-64 program (fgvm runs 64-bit x86 programs "
			  "only)%s",
			  path, "");
		goto out;
	}
	if ((eh.e_type != ET_EXEC && eh.e_type != ET_DYN) ||
	    eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 ||
	    eh.e_phnum > MAX_PHDRS ||
	    pread_all((int)fd, ph, eh.e_phnum * sizeof *ph, (long)eh.e_phoff) !=
		    (long)(eh.e_phnum * sizeof *ph)) {
		rc = fail(err, errlen, FGVM_EXIT_NOEXEC, "%s: unsupported ELF file%s",
			  path, "");
		goto out;
	}
	for (int i = 0; i < eh.e_phnum; i++) {
		if (ph[i].p_type == PT_LOAD) {
			if (ph[i].p_vaddr < lo)
				lo = ph[i].p_vaddr;
			if (ph[i].p_vaddr + ph[i].p_memsz > hi)
				hi = ph[i].p_vaddr + ph[i].p_memsz;
		} else if (ph[i].p_type == PT_INTERP && !is_interp) {
			size_t n = ph[i].p_filesz < sizeof img->interp - 1
					   ? ph[i].p_filesz
					   : sizeof img->interp - 1;

			if (pread_all((int)fd, img->interp, n, (long)ph[i].p_offset) !=
			    (long)n) {
				rc = fail(err, errlen, FGVM_EXIT_NOEXEC,
					  "%s: cannot read PT_INTERP%s", path, "");
				goto out;
			}
			img->interp[n] = 0;
		}
	}
	if (lo >= hi) {
		rc = fail(err, errlen, FGVM_EXIT_NOEXEC, "%s: nothing to load%s", path, "");
		goto out;
	}
	lo = align_down(lo, PAGE_SIZE);
	hi = align_up(hi, PAGE_SIZE);
	if (eh.e_type == ET_DYN) {
		/* Reserve the whole span, then place segments in it; the
		 * program's brk area is reserved right after it. */
		long r = mm_mmap(vm, 0, hi - lo + (is_interp ? 0 : BRK_RESERVE), PROT_NONE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		if (vsys_err(r)) {
			rc = fail(err, errlen, FGVM_EXIT_INTERNAL,
				  "%s: no room for the program: %s", path, verrname((int)-r));
			goto out;
		}
		bias = (uint64_t)r - lo;
	}
	for (int i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr *p = &ph[i];
		uint64_t start, fend, mend, off;
		int prot = 0, flags = MAP_PRIVATE | MAP_FIXED;
		long r;

		if (p->p_type != PT_LOAD || !p->p_memsz)
			continue;
		prot |= (p->p_flags & PF_R) ? PROT_READ : 0;
		prot |= (p->p_flags & PF_W) ? PROT_WRITE : 0;
		prot |= (p->p_flags & PF_X) ? PROT_EXEC : 0;
		if (eh.e_type == ET_EXEC)
			flags = MAP_PRIVATE | MAP_FIXED_NOREPLACE;
		start = align_down(bias + p->p_vaddr, PAGE_SIZE);
		off = p->p_offset - (bias + p->p_vaddr - start);
		fend = bias + p->p_vaddr + p->p_filesz;
		mend = align_up(bias + p->p_vaddr + p->p_memsz, PAGE_SIZE);
		if (p->p_filesz) {
			r = mm_mmap(vm, start, fend - start,
				    prot | (p->p_memsz > p->p_filesz ? PROT_WRITE : 0),
				    flags, (int)fd, (long)off);
			if (vsys_err(r)) {
				rc = fail(err, errlen, FGVM_EXIT_NOEXEC,
					  "%s: cannot map a segment: %s (is the address taken by "
					  "fgvm itself?)",
					  path, verrname((int)-r));
				goto out;
			}
			/* The rest of the last file page belongs to .bss. */
			if (p->p_memsz > p->p_filesz && (fend & (PAGE_SIZE - 1)))
				memset((void *)fend, 0,
				       PAGE_SIZE - (fend & (PAGE_SIZE - 1)));
			if (p->p_memsz > p->p_filesz && !(prot & PROT_WRITE))
				mm_mprotect(vm, start, align_up(fend, PAGE_SIZE) - start, prot);
			start = align_up(fend, PAGE_SIZE);
		}
		if (mend > start) {
			r = mm_mmap(vm, start, mend - start, prot,
				    flags | MAP_ANONYMOUS, -1, 0);
			if (vsys_err(r)) {
				rc = fail(err, errlen, FGVM_EXIT_NOEXEC,
					  "%s: cannot map .bss: %s", path, verrname((int)-r));
				goto out;
			}
		}
		if (mend > img->end)
			img->end = mend;
	}
	img->base = bias;
	img->brk_reserved = eh.e_type == ET_DYN && !is_interp;
	img->entry = bias + eh.e_entry;
	img->phnum = eh.e_phnum;
	for (int i = 0; i < eh.e_phnum; i++)
		if (ph[i].p_type == PT_PHDR)
			img->phdr = bias + ph[i].p_vaddr;
	if (!img->phdr)
		for (int i = 0; i < eh.e_phnum; i++)
			if (ph[i].p_type == PT_LOAD && ph[i].p_offset <= eh.e_phoff &&
			    eh.e_phoff < ph[i].p_offset + ph[i].p_filesz)
				img->phdr = bias + ph[i].p_vaddr + eh.e_phoff - ph[i].p_offset;
out:
	vsys1(SYS_close, fd);
	return rc;
}

/* "#!interp [arg]": the interpreter and its one optional argument. */
static int read_shebang(const char *path, char *interp, size_t ilen, char *arg,
			size_t alen)
{
	char line[256];
	long fd = vsys4(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
	long n;
	char *p, *e;

	if (fd < 0)
		return 0;
	n = pread_all((int)fd, line, sizeof line - 1, 0);
	vsys1(SYS_close, fd);
	if (n < 2 || line[0] != '#' || line[1] != '!')
		return 0;
	line[n] = 0;
	if ((e = strchr(line, '\n')))
		*e = 0;
	for (p = line + 2; *p == ' ' || *p == '\t'; p++)
		;
	for (e = p; *e && *e != ' ' && *e != '\t'; e++)
		;
	if (e == p || (size_t)(e - p) >= ilen)
		return -1;
	memcpy(interp, p, (size_t)(e - p));
	interp[e - p] = 0;
	for (p = e; *p == ' ' || *p == '\t'; p++)
		;
	for (e = p + strlen(p); e > p && (e[-1] == ' ' || e[-1] == '\t'); e--)
		;
	*e = 0;
	if (strlen(p) >= alen)
		return -1;
	memcpy(arg, p, strlen(p) + 1);
	return 1;
}

static uint64_t stack_size(void)
{
	struct rlimit rl;

	if (vsys2(SYS_getrlimit, RLIMIT_STACK, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur > (64UL << 20))
		return 8UL << 20;
	if (rl.rlim_cur < (128UL << 10))
		return 128UL << 10;
	return align_up(rl.rlim_cur, PAGE_SIZE);
}

static uint8_t *put_str(uint8_t *sp, const char *s)
{
	size_t n = strlen(s) + 1;

	sp -= n;
	memcpy(sp, s, n);
	return sp;
}

int load_program(struct vm *vm, const char *path, char *const argv[],
		 char *const envp[], struct load_result *out, char *err,
		 size_t errlen)
{
	static struct image prog, interp;
	static char sh_interp[256], sh_arg[256];
	static char real_path[4096];
	const char *execfn = path;
	char *const *args = argv;
	char *sargv[4];
	int argc = 0, envc = 0, nargs_extra = 0, rc;
	uint64_t ssz, sbase, sp8;
	uint8_t *sp;
	uint64_t *w;
	long r;

	/* Scripts: the interpreter, then the script's path. */
	vsnfmt(real_path, sizeof real_path, "%s", path);
	for (int depth = 0;; depth++) {
		int s = read_shebang(real_path, sh_interp, sizeof sh_interp, sh_arg,
				     sizeof sh_arg);

		if (s < 0)
			return fail(err, errlen, FGVM_EXIT_NOEXEC,
				    "%s: bad \"#!\" line%s", real_path, "");
		if (s == 0)
			break;
		if (depth >= 4)
			return fail(err, errlen, FGVM_EXIT_NOEXEC,
				    "%s: too many levels of \"#!\" interpreters%s", path, "");
		nargs_extra = 0;
		sargv[nargs_extra++] = sh_interp;
		if (sh_arg[0])
			sargv[nargs_extra++] = sh_arg;
		sargv[nargs_extra++] = (char *)path;
		vsnfmt(real_path, sizeof real_path, "%s", sh_interp);
	}
	/* /proc/self/exe names the file itself: absolute, links resolved
	 * (glibc's static dl_origin insists on an absolute path). */
	if (!realpath(real_path, vm->exe_path))
		vsnfmt(vm->exe_path, sizeof vm->exe_path, "%s", real_path);

	rc = map_image(vm, real_path, false, &prog, err, errlen);
	if (rc)
		return rc;
	if (prog.interp[0]) {
		rc = map_image(vm, prog.interp, true, &interp, err, errlen);
		if (rc)
			return rc;
	}
	mm_brk_init(vm, align_up(prog.end, PAGE_SIZE), prog.brk_reserved);

	/* The stack, with a guard page below it. */
	ssz = stack_size();
	r = mm_mmap(vm, 0, ssz + PAGE_SIZE, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vsys_err(r))
		return fail(err, errlen, FGVM_EXIT_INTERNAL, "no memory for the stack%s%s",
			    "", "");
	sbase = (uint64_t)r;
	mm_mprotect(vm, sbase, PAGE_SIZE, PROT_NONE);

	/* Strings at the top. */
	sp = (uint8_t *)(sbase + ssz + PAGE_SIZE);
	sp -= 16;
	{
		uint8_t *rnd = sp;

		if (vsys3(SYS_getrandom, rnd, 16, 0) != 16)
			memset(rnd, 0x5a, 16);
	}
	sp = put_str(sp, "x86_64");
	{
		uint8_t *plat = sp, *rnd = sp + 7, *efn;
		static uint64_t argp[65536], envpp[65536];

		sp = put_str(sp, execfn);
		efn = sp;
		if (nargs_extra) {
			for (int i = 0; i < nargs_extra; i++) {
				sp = put_str(sp, sargv[i]);
				argp[argc++] = (uint64_t)sp;
			}
			for (int i = 1; args[0] && args[i]; i++) {
				if (argc >= 65535)
					return fail(err, errlen, FGVM_EXIT_NOEXEC,
						    "too many arguments%s%s", "", "");
				sp = put_str(sp, args[i]);
				argp[argc++] = (uint64_t)sp;
			}
		} else {
			for (int i = 0; args[i]; i++) {
				if (argc >= 65535)
					return fail(err, errlen, FGVM_EXIT_NOEXEC,
						    "too many arguments%s%s", "", "");
				sp = put_str(sp, args[i]);
				argp[argc++] = (uint64_t)sp;
			}
		}
		for (int i = 0; envp[i]; i++) {
			if (envc >= 65535)
				return fail(err, errlen, FGVM_EXIT_NOEXEC,
					    "environment too large%s%s", "", "");
			sp = put_str(sp, envp[i]);
			envpp[envc++] = (uint64_t)sp;
		}
		if ((uint64_t)sp < sbase + PAGE_SIZE + (64UL << 10))
			return fail(err, errlen, FGVM_EXIT_NOEXEC,
				    "arguments and environment do not fit the stack%s%s", "", "");

		/* Pointers below, 16-byte aligned at argc. */
		{
			uint64_t aux[64];
			int na = 0;
			size_t words;

#define AUX(k, v) (aux[na++] = (k), aux[na++] = (uint64_t)(v))
			if (vm->vdso_base)
				AUX(AT_SYSINFO_EHDR, vm->vdso_base);
			AUX(AT_MINSIGSTKSZ, getauxval(AT_MINSIGSTKSZ) ? getauxval(AT_MINSIGSTKSZ)
								     : 2048);
			AUX(AT_HWCAP, getauxval(AT_HWCAP));
			AUX(AT_PAGESZ, PAGE_SIZE);
			AUX(AT_CLKTCK, getauxval(AT_CLKTCK) ? getauxval(AT_CLKTCK) : 100);
			AUX(AT_PHDR, prog.phdr);
			AUX(AT_PHENT, sizeof(Elf64_Phdr));
			AUX(AT_PHNUM, prog.phnum);
			AUX(AT_BASE, prog.interp[0] ? interp.base : 0);
			AUX(AT_FLAGS, 0);
			AUX(AT_ENTRY, prog.entry);
			AUX(AT_UID, vsys0(SYS_getuid));
			AUX(AT_EUID, vsys0(SYS_geteuid));
			AUX(AT_GID, vsys0(SYS_getgid));
			AUX(AT_EGID, vsys0(SYS_getegid));
			AUX(AT_SECURE, 0);
			AUX(AT_RANDOM, rnd);
			AUX(AT_HWCAP2, getauxval(AT_HWCAP2));
			AUX(AT_EXECFN, efn);
			AUX(AT_PLATFORM, plat);
			AUX(AT_NULL, 0);
#undef AUX
			words = 1 + (size_t)argc + 1 + (size_t)envc + 1 + (size_t)na;
			sp8 = align_down((uint64_t)sp - words * 8, 16);
			w = (uint64_t *)sp8;
			*w++ = (uint64_t)argc;
			memcpy(w, argp, (size_t)argc * 8);
			w += argc;
			*w++ = 0;
			memcpy(w, envpp, (size_t)envc * 8);
			w += envc;
			*w++ = 0;
			memcpy(w, aux, (size_t)na * 8);
		}
	}
	out->entry = prog.interp[0] ? interp.entry : prog.entry;
	out->sp = sp8;
	return 0;
}
