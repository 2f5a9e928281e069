/*
 * kvm-probe.c -- what can KVM do on this machine, and what does it cost?
 *
 * A standalone probe for fgvm's planned process-level VM: it is carried (as a
 * static binary) to a machine whose hypervisor situation is unknown (bare
 * metal with VT-x/SVM, nested KVM, no /dev/kvm at all) and run once.
 *
 * Build:   gcc -O2 -static -Wall -Wextra -o /tmp/kvm-probe bench/kvm-probe.c
 * Run:     /tmp/kvm-probe            human-readable lines on stdout
 *          /tmp/kvm-probe --json     the same lines on stderr, and ONE JSON
 *                                    object on stdout
 *
 * What it reports:
 *  1. host facts: kernel, CPU model, CPU flags of interest (/proc/cpuinfo
 *     "flags" and "vmx flags"), CPUID hypervisor bit and vendor signature
 *     (leaf 0x40000000), kvm_intel / kvm_amd / kvm module parameters, whether
 *     the kvm_pvm module is loaded, whether /dev/kvm exists and opens O_RDWR;
 *  2. KVM_GET_API_VERSION and a list of KVM_CHECK_EXTENSION values;
 *  3. one VM with one vCPU in 16-bit real mode, guest code hand-assembled
 *     below:
 *       (a) exit round trip: `out 0x10, al; jmp` -- 20000 KVM_RUN calls each
 *           ending in KVM_EXIT_IO, mean and median ns;
 *       (b) dirty logging on a 128-page memslot (GPA 0x10000..0x90000, flag
 *           KVM_MEM_LOG_DIRTY_PAGES): the guest increments one byte in each
 *           page, then does `out 0x11, al`.  Measured: the first pass
 *           (first-touch faults; host pages untouched, and host pages
 *           pre-faulted), KVM_GET_DIRTY_LOG (dirty and clean), a pass after
 *           the log was read (dirty-logging write faults) and a pass with no
 *           faults (pages still writable), medians over 50 rounds;
 *       (c) dirty ring (KVM_CAP_DIRTY_LOG_RING[_ACQ_REL]) on a separate VM,
 *           when supported: entries harvested per pass, KVM_RESET_DIRTY_RINGS
 *           cost, pass cost;
 *  4. host comparison in the same run: clock_gettime overhead, one minor
 *     page fault (first write to a fresh anonymous page, median of 4096),
 *     getppid() (median).
 *
 * Robustness: every step reports success or failure (with errno) and the
 * probe goes on where that makes sense.  Each KVM test runs under a per-step
 * time limit (a POSIX timer whose signal interrupts KVM_RUN), and alarm(60)
 * is a last-resort watchdog for the whole run.
 *
 * Exit status: 0 when the probe ran to the end (whatever KVM could or could
 * not do: "no /dev/kvm" is a result, not an error); 2 for an internal error
 * (bad arguments, out of memory); 3 when the 60 s watchdog fired (what was
 * collected so far is still printed, and with --json a closed JSON object).
 *
 * All times are wall-clock ns from clock_gettime(CLOCK_MONOTONIC) around the
 * measured call; the timer's own overhead is reported (host.clock_ns).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

/* Constants newer than (or possibly missing from) the installed linux/kvm.h;
 * values are upstream's. */
#ifndef KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2
#define KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 168
#endif
#ifndef KVM_CAP_X86_USER_SPACE_MSR
#define KVM_CAP_X86_USER_SPACE_MSR 188
#endif
#ifndef KVM_CAP_DIRTY_LOG_RING
#define KVM_CAP_DIRTY_LOG_RING 192
#endif
#ifndef KVM_CAP_DIRTY_LOG_RING_ACQ_REL
#define KVM_CAP_DIRTY_LOG_RING_ACQ_REL 223
#endif
#ifndef KVM_CAP_VM_TYPES
#define KVM_CAP_VM_TYPES 235
#endif
#ifndef KVM_RESET_DIRTY_RINGS
#define KVM_RESET_DIRTY_RINGS _IO(KVMIO, 0xc7)
#endif
#ifndef KVM_EXIT_DIRTY_RING_FULL
#define KVM_EXIT_DIRTY_RING_FULL 31
#endif
#ifndef KVM_DIRTY_GFN_F_DIRTY
#define KVM_DIRTY_GFN_F_DIRTY 1u
#endif
#ifndef KVM_DIRTY_GFN_F_RESET
#define KVM_DIRTY_GFN_F_RESET 2u
#endif
/* x86's asm/kvm.h defines it as 64; linux/kvm.h falls back to 0 (= no ring). */
#ifndef KVM_DIRTY_LOG_PAGE_OFFSET
#define KVM_DIRTY_LOG_PAGE_OFFSET 0
#endif

/* Layout of struct kvm_dirty_gfn (upstream), kept local so that the probe
 * builds against headers that lack it. */
struct probe_dirty_gfn {
    uint32_t flags;
    uint32_t slot;   /* (address space id << 16) | slot id */
    uint64_t offset; /* page offset within the slot */
};

/* ------------------------------------------------------------------------ */
/* Guest: 16-bit real mode, CS = 0, code in the code slot at GPA 0..0x10000. */

#define CODE_GPA 0x0ull
#define CODE_SIZE 0x10000ull             /* 64 KiB, slot 0 */
#define DATA_GPA 0x10000ull              /* slot 1, dirty-logged */
#define DATA_PAGES 128u
#define DATA_SIZE ((uint64_t)DATA_PAGES * 4096u) /* 512 KiB: 0x10000..0x90000 */
#define ENTRY_EXITLOOP 0x1000u
#define ENTRY_DIRTY 0x1100u
#define PORT_EXIT 0x10u
#define PORT_PASS 0x11u
/* Three pages KVM needs for the real-mode TSS when VMX lacks "unrestricted
 * guest"; any GPA range outside the memslots (kvmtool's choice). */
#define TSS_ADDR 0xfffbd000ul

/* Loaded at GPA 0x1000 (CS:IP = 0000:1000). */
static const uint8_t guest_exitloop[] = {
    /* 1000 loop: */
    0xE6, PORT_EXIT, /*   out  0x10, al       ; KVM_EXIT_IO, port 0x10  */
    0xEB, 0xFC,      /*   jmp  short loop     ; rel8 -4 -> 0x1000       */
};

/* Loaded at GPA 0x1100 (CS:IP = 0000:1100).  One "pass" increments the
 * first byte of each of the 128 data pages (ES = 0x1000, 0x1100, ...,
 * 0x8F00, i.e. GPA 0x10000 + n * 0x1000) and exits with `out 0x11`; the
 * next KVM_RUN resumes at the `jmp` and starts the next pass.  After pass
 * k, every page's first byte is k (mod 256): the host checks this. */
static const uint8_t guest_dirty[] = {
    /* 1100 start: */
    0xB8, 0x00, 0x10,             /*   mov  ax, 0x1000   ; segment of GPA 0x10000  */
    0xB9, 0x80, 0x00,             /*   mov  cx, 128      ; pages                   */
    /* 1106 next: */
    0x8E, 0xC0,                   /*   mov  es, ax                                 */
    0x26, 0xFE, 0x06, 0x00, 0x00, /*   inc  byte [es:0x0000]                       */
    0x05, 0x00, 0x01,             /*   add  ax, 0x0100   ; +4 KiB                   */
    0xE2, 0xF4,                   /*   loop next         ; rel8 -12 -> 0x1106, uses CX */
    0xE6, PORT_PASS,              /*   out  0x11, al     ; KVM_EXIT_IO, port 0x11  */
    0xEB, 0xEA,                   /*   jmp  short start  ; rel8 -22 -> 0x1100      */
};

/* ------------------------------------------------------------------------ */
/* Output: human lines (stdout, or stderr with --json) and a JSON buffer.   */

static bool json_mode;
static FILE *hout;
static int hfd = 1;

static char jbuf[1 << 17];
static volatile size_t jlen;
static volatile int jdepth;
static volatile bool jcomma[32];
static volatile char jclose[32];
static bool jtrunc;

static const char *volatile cur_step = "start";

static void wr(int fd, const void *p, size_t n)
{
    while (n > 0) {
        ssize_t r = write(fd, p, n);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            return;
        }
        p = (const char *)p + r;
        n -= (size_t)r;
    }
}

static void jraw(const char *s, size_t n)
{
    if (jlen + n + 512 >= sizeof jbuf) { /* keep room for closing */
        jtrunc = true;
        return;
    }
    memcpy(jbuf + jlen, s, n);
    jlen += n;
}

static void jputs(const char *s) { jraw(s, strlen(s)); }

static void jstr(const char *s)
{
    jraw("\"", 1);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        char e[8];
        if (c == '"' || c == '\\') {
            e[0] = '\\';
            e[1] = (char)c;
            jraw(e, 2);
        } else if (c < 0x20 || c >= 0x7f) {
            snprintf(e, sizeof e, "\\u%04x", c);
            jraw(e, 6);
        } else {
            jraw((const char *)&c, 1);
        }
    }
    jraw("\"", 1);
}

static void jkey(const char *k)
{
    if (jcomma[jdepth])
        jraw(",", 1);
    jcomma[jdepth] = true;
    if (k) {
        jstr(k);
        jraw(":", 1);
    }
}

static void jopen(const char *k, char kind)
{
    jkey(k);
    jraw(kind == '{' ? "{" : "[", 1);
    if (jdepth < 31) {
        jdepth++;
        jcomma[jdepth] = false;
        jclose[jdepth] = kind == '{' ? '}' : ']';
    }
}
static void jobj(const char *k) { jopen(k, '{'); }
static void jarr(const char *k) { jopen(k, '['); }
static void jend(void)
{
    if (jdepth > 0) {
        char c = jclose[jdepth];
        jraw(&c, 1);
        jdepth--;
    }
}

static void jkv_str(const char *k, const char *v)
{
    jkey(k);
    if (v)
        jstr(v);
    else
        jputs("null");
}
static void jkv_int(const char *k, long long v)
{
    char b[32];
    jkey(k);
    snprintf(b, sizeof b, "%lld", v);
    jputs(b);
}
static void jkv_dbl(const char *k, double v)
{
    char b[48];
    jkey(k);
    if (v != v) {
        jputs("null");
        return;
    }
    snprintf(b, sizeof b, "%.1f", v);
    jputs(b);
}
static void jkv_bool(const char *k, bool v)
{
    jkey(k);
    jputs(v ? "true" : "false");
}
static void jkv_null(const char *k)
{
    jkey(k);
    jputs("null");
}

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(hout, fmt, ap);
    va_end(ap);
    fputc('\n', hout);
    fflush(hout);
}

static const char *ename(int e)
{
    const char *n = strerrorname_np(e);
    return n ? n : "E?";
}

/* An errno in JSON: the number, its name and its message. */
static void jkv_errno(int e)
{
    jkv_int("errno", e);
    jkv_str("errno_name", ename(e));
    jkv_str("error", strerror(e));
}

/* Failures, collected for the JSON "failures" array and the summary. */
#define MAX_FAIL 64
static struct {
    char step[96];
    int err; /* 0: no errno */
    char detail[400];
} fails[MAX_FAIL];
static int nfails;

static void fail(const char *step, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(const char *step, int err, const char *fmt, ...)
{
    char d[400] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d, sizeof d, fmt, ap);
        va_end(ap);
    }
    if (err)
        out("  FAIL %s: %s (%s)%s%s", step, ename(err), strerror(err), d[0] ? "; " : "", d);
    else
        out("  FAIL %s: %s", step, d);
    if (nfails < MAX_FAIL) {
        snprintf(fails[nfails].step, sizeof fails[nfails].step, "%s", step);
        fails[nfails].err = err;
        snprintf(fails[nfails].detail, sizeof fails[nfails].detail, "%s", d);
        nfails++;
    }
}

/* ------------------------------------------------------------------------ */
/* Watchdog and per-step time limit.                                        */

static volatile sig_atomic_t step_expired;
static timer_t step_timer;
static bool have_step_timer;

static void on_alarm(int sig)
{
    (void)sig;
    static const char m1[] = "watchdog: 60 s elapsed, giving up in step ";
    const char *s = cur_step;
    wr(hfd, m1, sizeof m1 - 1);
    wr(hfd, s, strlen(s));
    wr(hfd, "\n", 1);
    if (json_mode) {
        static const char m2[] = "\"watchdog_fired\":true,\"watchdog_step\":\"";
        int d = jdepth;
        bool comma = jcomma[d] || d > 1;
        wr(1, jbuf, jlen);
        for (; d > 1; d--)
            wr(1, (const void *)&jclose[d], 1);
        if (comma)
            wr(1, ",", 1);
        wr(1, m2, sizeof m2 - 1);
        wr(1, s, strlen(s)); /* step names are plain literals */
        wr(1, "\"}\n", 3);
    }
    _exit(3);
}

static void on_step_timer(int sig)
{
    (void)sig;
    step_expired = 1;
}

/* After `secs`, the timer fires every 100 ms: KVM_RUN returns EINTR as long
 * as a signal arrives while it runs, so a hung guest cannot outlive the step
 * even if one signal lands just before the ioctl. */
static void step_begin(const char *name, int secs)
{
    cur_step = name;
    step_expired = 0;
    if (have_step_timer) {
        struct itimerspec its = {.it_value = {secs, 0}, .it_interval = {0, 100000000}};
        timer_settime(step_timer, 0, &its, NULL);
    }
}

static void step_end(void)
{
    if (have_step_timer) {
        struct itimerspec its;
        memset(&its, 0, sizeof its);
        timer_settime(step_timer, 0, &its, NULL);
    }
    step_expired = 0;
}

/* ------------------------------------------------------------------------ */
/* Timing and statistics.                                                   */

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct stats {
    size_t n;
    double mean, median, min, p10, p90, max;
};

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static struct stats stats_d(const double *v, size_t n)
{
    struct stats s;
    double nan = __builtin_nan("");
    s.n = n;
    s.mean = s.median = s.min = s.p10 = s.p90 = s.max = nan;
    if (n == 0)
        return s;
    double *c = malloc(n * sizeof *c);
    if (!c) {
        fprintf(stderr, "kvm-probe: out of memory\n");
        exit(2);
    }
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        c[i] = v[i];
        sum += v[i];
    }
    qsort(c, n, sizeof *c, cmp_dbl);
    s.mean = sum / (double)n;
    s.median = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
    s.min = c[0];
    s.max = c[n - 1];
    s.p10 = c[(n - 1) / 10];
    s.p90 = c[(n - 1) * 9 / 10];
    free(c);
    return s;
}

static void jstats(const char *k, struct stats s)
{
    jobj(k);
    jkv_int("n", (long long)s.n);
    jkv_dbl("median", s.median);
    jkv_dbl("mean", s.mean);
    jkv_dbl("min", s.min);
    jkv_dbl("p10", s.p10);
    jkv_dbl("p90", s.p90);
    jkv_dbl("max", s.max);
    jend();
}

static const char *fmt_stats(char *b, size_t n, struct stats s)
{
    if (s.n == 0)
        snprintf(b, n, "no samples");
    else
        snprintf(b, n, "median %.0f ns, mean %.0f, min %.0f, p10 %.0f, p90 %.0f, max %.0f (n=%zu)",
                 s.median, s.mean, s.min, s.p10, s.p90, s.max, s.n);
    return b;
}

/* Anonymous memory for a guest data slot, never backed by transparent huge
 * pages (adjacent anonymous mappings merge, and a THP would turn 127 of the
 * 128 "first touch" faults into hits). */
static uint8_t *map_data(size_t len)
{
    uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED)
        (void)madvise(p, len, MADV_NOHUGEPAGE);
    return p;
}

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n, sz);
    if (!p) {
        fprintf(stderr, "kvm-probe: out of memory\n");
        exit(2);
    }
    return p;
}

/* ------------------------------------------------------------------------ */
/* 1. Host facts.                                                           */

static int read_small(const char *path, char *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t r = read(fd, buf, n - 1);
    int e = errno;
    close(fd);
    if (r < 0)
        return -e;
    buf[r] = 0;
    while (r > 0 && (buf[r - 1] == '\n' || buf[r - 1] == ' '))
        buf[--r] = 0;
    return 0;
}

static bool has_token(const char *line, const char *tok)
{
    size_t tl = strlen(tok);
    const char *p = line;
    while (p && *p) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *e = p;
        while (*e && *e != ' ' && *e != '\t' && *e != '\n')
            e++;
        if ((size_t)(e - p) == tl && memcmp(p, tok, tl) == 0)
            return true;
        p = *e ? e + 1 : e;
    }
    return false;
}

static char cpu_flags[8192], vmx_flags[4096];

static void host_facts(void)
{
    struct utsname u;
    out("[host]");
    jobj("host");
    if (uname(&u) == 0) {
        out("  kernel: %s %s (%s)", u.sysname, u.release, u.machine);
        jkv_str("kernel_release", u.release);
        jkv_str("kernel_version", u.version);
        jkv_str("machine", u.machine);
    } else {
        fail("uname", errno, NULL);
    }

    /* /proc/cpuinfo, first processor only */
    char model[256] = "", vendor[64] = "";
    FILE *f = fopen("/proc/cpuinfo", "re");
    if (f) {
        char *line = NULL;
        size_t cap = 0;
        int nproc = 0;
        while (getline(&line, &cap, f) > 0) {
            char *colon = strchr(line, ':');
            if (!colon)
                continue;
            char *k = line, *ke = colon;
            while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t'))
                ke--;
            *ke = 0;
            char *v = colon + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t vl = strlen(v);
            while (vl > 0 && (v[vl - 1] == '\n' || v[vl - 1] == ' '))
                v[--vl] = 0;
            if (strcmp(k, "processor") == 0 && ++nproc > 1)
                break;
            if (strcmp(k, "model name") == 0)
                snprintf(model, sizeof model, "%s", v);
            else if (strcmp(k, "vendor_id") == 0)
                snprintf(vendor, sizeof vendor, "%s", v);
            else if (strcmp(k, "flags") == 0)
                snprintf(cpu_flags, sizeof cpu_flags, "%s", v);
            else if (strcmp(k, "vmx flags") == 0)
                snprintf(vmx_flags, sizeof vmx_flags, "%s", v);
        }
        free(line);
        fclose(f);
    } else {
        fail("open /proc/cpuinfo", errno, NULL);
    }
    out("  cpu: %s (vendor_id %s)", model[0] ? model : "?", vendor[0] ? vendor : "?");
    jkv_str("cpu_model", model);
    jkv_str("cpu_vendor_id", vendor);

    static const char *const interest[] = {
        "vmx", "svm", "hypervisor", "ept", "npt", "pml", "ept_ad", "vpid",
        "unrestricted_guest", "flexpriority", "nrip_save", "decodeassists",
        "avic", "v_vmsave_vmload", "constant_tsc", "nonstop_tsc",
    };
    char line[1024];
    size_t off = 0;
    jobj("cpu_flags");
    for (size_t i = 0; i < sizeof interest / sizeof *interest; i++) {
        bool in_flags = has_token(cpu_flags, interest[i]);
        bool in_vmx = has_token(vmx_flags, interest[i]);
        const char *where = in_flags ? "flags" : in_vmx ? "vmx flags" : NULL;
        off += (size_t)snprintf(line + off, sizeof line - off > 0 ? sizeof line - off : 0,
                                " %s=%s", interest[i], where ? (in_flags ? "yes" : "yes(vmx flags)") : "no");
        if (off >= sizeof line)
            off = sizeof line - 1;
        jkv_bool(interest[i], where != NULL);
    }
    jend();
    out("  cpuinfo flags:%s", line);
    if (vmx_flags[0]) {
        out("  cpuinfo vmx flags: %s", vmx_flags);
    }
    jkv_str("cpuinfo_vmx_flags", vmx_flags[0] ? vmx_flags : NULL);

    /* CPUID */
    unsigned a = 0, b = 0, c = 0, d = 0;
    char vend[13] = "";
    __cpuid(0, a, b, c, d);
    memcpy(vend, &b, 4);
    memcpy(vend + 4, &d, 4);
    memcpy(vend + 8, &c, 4);
    vend[12] = 0;
    __cpuid(1, a, b, c, d);
    bool hv = (c >> 31) & 1, cpuid_vmx = (c >> 5) & 1;
    bool cpuid_svm = false;
    unsigned maxext = __get_cpuid_max(0x80000000u, NULL);
    if (maxext >= 0x80000001u) {
        __cpuid(0x80000001u, a, b, c, d);
        cpuid_svm = (c >> 2) & 1;
    }
    jobj("cpuid");
    jkv_str("vendor", vend);
    jkv_bool("vmx", cpuid_vmx);
    jkv_bool("svm", cpuid_svm);
    jkv_bool("hypervisor_bit", hv);
    if (hv) {
        char hvs[13];
        __cpuid(0x40000000u, a, b, c, d);
        memcpy(hvs, &b, 4);
        memcpy(hvs + 4, &c, 4);
        memcpy(hvs + 8, &d, 4);
        hvs[12] = 0;
        /* printable copy */
        char pv[13];
        for (int i = 0; i < 13; i++)
            pv[i] = hvs[i] && (hvs[i] < 0x20 || hvs[i] > 0x7e) ? '?' : hvs[i];
        out("  cpuid: vendor %s, vmx=%d svm=%d, hypervisor bit=1, hypervisor vendor \"%s\" (max leaf 0x%x)",
            vend, cpuid_vmx, cpuid_svm, pv, a);
        jkv_str("hypervisor_vendor", pv);
        jkv_int("hypervisor_max_leaf", a);
    } else {
        out("  cpuid: vendor %s, vmx=%d svm=%d, hypervisor bit=0 (no hypervisor advertised)",
            vend, cpuid_vmx, cpuid_svm);
        jkv_null("hypervisor_vendor");
    }
    jend();

    /* module parameters */
    static const char *const params[] = {
        "/sys/module/kvm_intel/parameters/ept",
        "/sys/module/kvm_intel/parameters/pml",
        "/sys/module/kvm_intel/parameters/nested",
        "/sys/module/kvm_intel/parameters/unrestricted_guest",
        "/sys/module/kvm_intel/parameters/eptad",
        "/sys/module/kvm_amd/parameters/npt",
        "/sys/module/kvm_amd/parameters/nested",
        "/sys/module/kvm/parameters/tdp_mmu",
        "/sys/module/kvm/parameters/eager_page_split",
    };
    jobj("module_params");
    for (size_t i = 0; i < sizeof params / sizeof *params; i++) {
        char v[128];
        int r = read_small(params[i], v, sizeof v);
        const char *k = params[i] + strlen("/sys/module/");
        if (r == 0) {
            out("  %s = %s", params[i], v);
            jkv_str(k, v);
        } else if (r == -ENOENT) {
            out("  %s: absent", params[i]);
            jkv_null(k);
        } else {
            out("  %s: unreadable: %s", params[i], ename(-r));
            jkv_str(k, ename(-r));
        }
    }
    jend();
    static const char *const mods[] = {"kvm", "kvm_intel", "kvm_amd", "kvm_pvm"};
    jobj("modules");
    char ml[256];
    off = 0;
    for (size_t i = 0; i < sizeof mods / sizeof *mods; i++) {
        char p[64];
        struct stat st;
        snprintf(p, sizeof p, "/sys/module/%s", mods[i]);
        bool present = stat(p, &st) == 0;
        off += (size_t)snprintf(ml + off, sizeof ml - off, " %s=%s", mods[i], present ? "present" : "absent");
        jkv_bool(mods[i], present);
    }
    jend();
    out("  /sys/module:%s", ml);
    jend(); /* host */
}

/* ------------------------------------------------------------------------ */
/* 4. Host comparison.                                                      */

/* Times one byte written to each of n pages, every write alone (the timer
 * is in each sample); v is scratch for n samples. */
static struct stats time_page_writes(uint8_t *m, size_t pg, int n, uint8_t val, double *v)
{
    for (int i = 0; i < n; i++) {
        volatile uint8_t *p = m + (size_t)i * pg;
        uint64_t t0 = now_ns();
        *p = val;
        uint64_t t1 = now_ns();
        v[i] = (double)(t1 - t0);
    }
    return stats_d(v, (size_t)n);
}

static void host_compare(void)
{
    char b[256];
    step_begin("host-compare", 10);
    out("[host-compare]");
    jobj("host_compare");

    /* clock_gettime overhead */
    enum { NCLK = 20000 };
    double *v = xcalloc(NCLK, sizeof *v);
    for (int i = 0; i < NCLK; i++) {
        uint64_t t0 = now_ns(), t1 = now_ns();
        v[i] = (double)(t1 - t0);
    }
    struct stats sc = stats_d(v, NCLK);
    free(v);
    out("  clock_gettime(CLOCK_MONOTONIC) back-to-back: %s", fmt_stats(b, sizeof b, sc));
    jstats("clock_ns", sc);

    /* minor faults: first write to fresh anonymous pages */
    enum { NPF = 4096 };
    long pg = sysconf(_SC_PAGESIZE);
    size_t len = (size_t)NPF * (size_t)pg;
    uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        fail("host-compare: mmap 16 MiB", errno, NULL);
    } else {
        if (madvise(m, len, MADV_NOHUGEPAGE) != 0)
            out("  note: madvise(MADV_NOHUGEPAGE): %s", ename(errno));
        v = xcalloc(NPF, sizeof *v);
        struct stats sf = time_page_writes(m, (size_t)pg, NPF, 1, v);
        /* re-write the now-present pages: cost of a plain write + timer */
        struct stats sw = time_page_writes(m, (size_t)pg, NPF, 2, v);
        free(v);
        munmap(m, len);
        out("  minor page fault (first write, fresh anonymous 4 KiB page, incl. timer): %s",
            fmt_stats(b, sizeof b, sf));
        out("  same pages, second write (no fault, incl. timer): %s", fmt_stats(b, sizeof b, sw));
        jstats("minor_fault_ns", sf);
        jstats("present_write_ns", sw);
    }

    /* getppid(): batches of 100 calls */
    enum { NB = 400, PER = 100 };
    v = xcalloc(NB, sizeof *v);
    for (int i = 0; i < NB; i++) {
        uint64_t t0 = now_ns();
        for (int j = 0; j < PER; j++)
            (void)syscall(SYS_getppid);
        uint64_t t1 = now_ns();
        v[i] = (double)(t1 - t0) / PER;
    }
    struct stats sg = stats_d(v, NB);
    free(v);
    out("  getppid() syscall, per call (batches of %d): %s", PER, fmt_stats(b, sizeof b, sg));
    jstats("getppid_ns", sg);
    jend();
    step_end();
}

/* ------------------------------------------------------------------------ */
/* 2./3. KVM.                                                               */

static int kvm_fd = -1;
static int vcpu_mmap_size = -1;
static long cap_dirty_ring, cap_dirty_ring_acqrel, cap_set_tss;

struct vm {
    const char *name;
    int fd, vcpu;
    struct kvm_run *run;
    size_t run_size;
    uint8_t *code, *data;
    struct probe_dirty_gfn *ring;
    size_t ring_bytes;
    uint32_t ring_n, ring_fetch;
    bool io_pending; /* last exit was our OUT; KVM completes it on the next KVM_RUN */
};

static const char *exit_name(uint32_t r)
{
    switch (r) {
    case KVM_EXIT_UNKNOWN: return "UNKNOWN";
    case KVM_EXIT_EXCEPTION: return "EXCEPTION";
    case KVM_EXIT_IO: return "IO";
    case KVM_EXIT_HYPERCALL: return "HYPERCALL";
    case KVM_EXIT_DEBUG: return "DEBUG";
    case KVM_EXIT_HLT: return "HLT";
    case KVM_EXIT_MMIO: return "MMIO";
    case KVM_EXIT_IRQ_WINDOW_OPEN: return "IRQ_WINDOW_OPEN";
    case KVM_EXIT_SHUTDOWN: return "SHUTDOWN (triple fault)";
    case KVM_EXIT_FAIL_ENTRY: return "FAIL_ENTRY";
    case KVM_EXIT_INTR: return "INTR";
    case KVM_EXIT_SET_TPR: return "SET_TPR";
    case KVM_EXIT_TPR_ACCESS: return "TPR_ACCESS";
    case KVM_EXIT_NMI: return "NMI";
    case KVM_EXIT_INTERNAL_ERROR: return "INTERNAL_ERROR";
    case KVM_EXIT_SYSTEM_EVENT: return "SYSTEM_EVENT";
    case KVM_EXIT_X86_RDMSR: return "X86_RDMSR";
    case KVM_EXIT_X86_WRMSR: return "X86_WRMSR";
    case KVM_EXIT_DIRTY_RING_FULL: return "DIRTY_RING_FULL";
    default: return "?";
    }
}

static void describe_exit(struct vm *v, char *buf, size_t n)
{
    struct kvm_run *r = v->run;
    size_t o = 0;
#define APP(...)                                                              \
    do {                                                                      \
        if (o < n) {                                                          \
            int w_ = snprintf(buf + o, n - o, __VA_ARGS__);                   \
            if (w_ > 0)                                                       \
                o += (size_t)w_;                                              \
        }                                                                     \
    } while (0)
    APP("exit_reason=%u (%s)", r->exit_reason, exit_name(r->exit_reason));
    switch (r->exit_reason) {
    case KVM_EXIT_IO:
        APP(" io %s port=0x%x size=%u count=%u", r->io.direction == KVM_EXIT_IO_OUT ? "out" : "in",
            r->io.port, r->io.size, r->io.count);
        break;
    case KVM_EXIT_MMIO:
        APP(" mmio gpa=0x%llx len=%u write=%u", (unsigned long long)r->mmio.phys_addr, r->mmio.len,
            r->mmio.is_write);
        break;
    case KVM_EXIT_FAIL_ENTRY:
        APP(" hardware_entry_failure_reason=0x%llx cpu=%u",
            (unsigned long long)r->fail_entry.hardware_entry_failure_reason, r->fail_entry.cpu);
        break;
    case KVM_EXIT_INTERNAL_ERROR:
        APP(" suberror=%u ndata=%u", r->internal.suberror, r->internal.ndata);
        for (unsigned i = 0; i < r->internal.ndata && i < 16; i++)
            APP(" 0x%llx", (unsigned long long)r->internal.data[i]);
        break;
    case KVM_EXIT_EXCEPTION:
        APP(" exception=%u error_code=%u", r->ex.exception, r->ex.error_code);
        break;
    default:
        break;
    }
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    if (ioctl(v->vcpu, KVM_GET_REGS, &regs) == 0)
        APP("; rip=0x%llx rax=0x%llx rcx=0x%llx rflags=0x%llx", (unsigned long long)regs.rip,
            (unsigned long long)regs.rax, (unsigned long long)regs.rcx, (unsigned long long)regs.rflags);
    if (ioctl(v->vcpu, KVM_GET_SREGS, &sregs) == 0)
        APP("; cs=%04x/base 0x%llx es=%04x/base 0x%llx cr0=0x%llx", sregs.cs.selector,
            (unsigned long long)sregs.cs.base, sregs.es.selector, (unsigned long long)sregs.es.base,
            (unsigned long long)sregs.cr0);
#undef APP
}

/* Run until the guest does `out` to `port`; *ns = duration of that final
 * KVM_RUN.  Returns 0, or -1 after reporting a failure under `what`. */
static int run_until_out(struct vm *v, uint16_t port, uint64_t *ns, const char *what)
{
    for (int tries = 0; tries < 10000; tries++) {
        if (step_expired) {
            fail(what, 0, "step time limit reached (guest did not exit in time)");
            return -1;
        }
        uint64_t t0 = now_ns();
        int r = ioctl(v->vcpu, KVM_RUN, 0);
        uint64_t t1 = now_ns();
        if (r < 0) {
            int e = errno;
            if (e == EINTR || e == EAGAIN)
                continue;
            char d[400];
            describe_exit(v, d, sizeof d);
            fail(what, e, "KVM_RUN failed; kvm_run says %s", d);
            return -1;
        }
        struct kvm_run *run = v->run;
        if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_OUT &&
            run->io.port == port && run->io.size == 1 && run->io.count == 1) {
            *ns = t1 - t0;
            v->io_pending = true;
            return 0;
        }
        if (run->exit_reason == KVM_EXIT_INTR)
            continue;
        char d[400];
        describe_exit(v, d, sizeof d);
        fail(what, 0, "unexpected exit: %s", d);
        return -1;
    }
    fail(what, 0, "too many interrupted KVM_RUN calls");
    return -1;
}

static int set_entry(struct vm *v, uint64_t rip, const char *what)
{
    struct kvm_regs regs;
    if (v->io_pending) {
        /* api.rst: an exit's I/O is complete (and guest state consistent)
         * only after KVM_RUN is re-entered; immediate_exit completes it
         * without running guest code.  (Kernels that test immediate_exit
         * first leave the OUT pending; they check that RIP was changed
         * before skipping the instruction, so setting RIP is still safe.) */
        v->run->immediate_exit = 1;
        int r = ioctl(v->vcpu, KVM_RUN, 0);
        int e = errno;
        v->run->immediate_exit = 0;
        v->io_pending = false;
        if (!(r < 0 && e == EINTR))
            out("  note: KVM_RUN with immediate_exit=1 returned %d (%s), exit_reason %u", r,
                r < 0 ? ename(e) : "no error", v->run->exit_reason);
    }
    if (ioctl(v->vcpu, KVM_GET_REGS, &regs) < 0) {
        fail(what, errno, "KVM_GET_REGS");
        return -1;
    }
    regs.rip = rip;
    regs.rflags = 0x2; /* bit 1 is reserved, always 1; IF=0 */
    if (ioctl(v->vcpu, KVM_SET_REGS, &regs) < 0) {
        fail(what, errno, "KVM_SET_REGS");
        return -1;
    }
    return 0;
}

static int set_data_slot(struct vm *v, uint8_t *mem, uint64_t size)
{
    struct kvm_userspace_memory_region r;
    memset(&r, 0, sizeof r);
    r.slot = 1;
    r.flags = KVM_MEM_LOG_DIRTY_PAGES;
    r.guest_phys_addr = DATA_GPA;
    r.memory_size = size; /* 0 deletes the slot */
    r.userspace_addr = (uintptr_t)mem;
    return ioctl(v->fd, KVM_SET_USER_MEMORY_REGION, &r);
}

static void vm_destroy(struct vm *v)
{
    if (v->ring && v->ring != MAP_FAILED)
        munmap(v->ring, v->ring_bytes);
    if (v->run && v->run != MAP_FAILED)
        munmap(v->run, v->run_size);
    if (v->vcpu >= 0)
        close(v->vcpu);
    if (v->fd >= 0)
        close(v->fd);
    if (v->code)
        munmap(v->code, CODE_SIZE);
    if (v->data)
        munmap(v->data, DATA_SIZE);
    memset(v, 0, sizeof *v);
    v->fd = v->vcpu = -1;
}

/* Create a VM (optionally with a dirty ring of ring_bytes, using ring_cap),
 * the two memslots, one vCPU in real mode at CS:IP 0000:entry.  Returns 0
 * or -1 (failures reported, everything created so far is released). */
static int vm_create(struct vm *v, const char *name, uint32_t ring_cap, size_t ring_bytes)
{
    char w[128];
    memset(v, 0, sizeof *v);
    v->name = name;
    v->fd = v->vcpu = -1;

    v->fd = ioctl(kvm_fd, KVM_CREATE_VM, 0UL);
    if (v->fd < 0) {
        snprintf(w, sizeof w, "%s: KVM_CREATE_VM", name);
        fail(w, errno, NULL);
        goto bad;
    }
    out("  %s: KVM_CREATE_VM ok (fd %d)", name, v->fd);

    if (cap_set_tss > 0) {
        /* Needed for real mode on VMX without unrestricted guest; a no-op
         * returning 0 on SVM and with unrestricted guest.  Must precede
         * KVM_CREATE_VCPU. */
        if (ioctl(v->fd, KVM_SET_TSS_ADDR, TSS_ADDR) < 0) {
            snprintf(w, sizeof w, "%s: KVM_SET_TSS_ADDR(0x%lx)", name, TSS_ADDR);
            fail(w, errno, "continuing; real mode may still work with unrestricted guest");
        }
    }

    if (ring_bytes) {
        struct kvm_enable_cap ec;
        memset(&ec, 0, sizeof ec);
        ec.cap = ring_cap;
        ec.args[0] = ring_bytes;
        if (ioctl(v->fd, KVM_ENABLE_CAP, &ec) < 0) {
            snprintf(w, sizeof w, "%s: KVM_ENABLE_CAP(%s, %zu bytes)", name,
                     ring_cap == KVM_CAP_DIRTY_LOG_RING_ACQ_REL ? "KVM_CAP_DIRTY_LOG_RING_ACQ_REL"
                                                                : "KVM_CAP_DIRTY_LOG_RING",
                     ring_bytes);
            fail(w, errno, NULL);
            goto bad;
        }
        out("  %s: KVM_ENABLE_CAP(%s, %zu bytes = %zu entries) ok", name,
            ring_cap == KVM_CAP_DIRTY_LOG_RING_ACQ_REL ? "DIRTY_LOG_RING_ACQ_REL" : "DIRTY_LOG_RING",
            ring_bytes, ring_bytes / sizeof(struct probe_dirty_gfn));
    }

    v->code = mmap(NULL, CODE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    v->data = map_data(DATA_SIZE);
    if (v->code == MAP_FAILED || v->data == MAP_FAILED) {
        int e = errno;
        if (v->code == MAP_FAILED)
            v->code = NULL;
        if (v->data == MAP_FAILED)
            v->data = NULL;
        snprintf(w, sizeof w, "%s: mmap guest memory", name);
        fail(w, e, NULL);
        goto bad;
    }
    memcpy(v->code + ENTRY_EXITLOOP, guest_exitloop, sizeof guest_exitloop);
    memcpy(v->code + ENTRY_DIRTY, guest_dirty, sizeof guest_dirty);
    /* data pages are left untouched on purpose: the first guest pass then
     * also pays the host's page allocation */

    struct kvm_userspace_memory_region r0;
    memset(&r0, 0, sizeof r0);
    r0.slot = 0;
    r0.flags = 0;
    r0.guest_phys_addr = CODE_GPA;
    r0.memory_size = CODE_SIZE;
    r0.userspace_addr = (uintptr_t)v->code;
    if (ioctl(v->fd, KVM_SET_USER_MEMORY_REGION, &r0) < 0) {
        snprintf(w, sizeof w, "%s: KVM_SET_USER_MEMORY_REGION slot 0 (code, GPA 0, 64 KiB)", name);
        fail(w, errno, NULL);
        goto bad;
    }
    if (set_data_slot(v, v->data, DATA_SIZE) < 0) {
        snprintf(w, sizeof w,
                 "%s: KVM_SET_USER_MEMORY_REGION slot 1 (data, GPA 0x10000, 512 KiB, LOG_DIRTY_PAGES)", name);
        fail(w, errno, NULL);
        goto bad;
    }

    v->vcpu = ioctl(v->fd, KVM_CREATE_VCPU, 0UL);
    if (v->vcpu < 0) {
        snprintf(w, sizeof w, "%s: KVM_CREATE_VCPU", name);
        fail(w, errno, NULL);
        goto bad;
    }
    v->run_size = (size_t)vcpu_mmap_size;
    v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu, 0);
    if (v->run == MAP_FAILED) {
        v->run = NULL;
        snprintf(w, sizeof w, "%s: mmap vcpu fd (kvm_run, %zu bytes)", name, v->run_size);
        fail(w, errno, NULL);
        goto bad;
    }
    if (ring_bytes) {
        long pg = sysconf(_SC_PAGESIZE);
        v->ring_bytes = ring_bytes;
        v->ring = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu,
                       (off_t)KVM_DIRTY_LOG_PAGE_OFFSET * pg);
        if (v->ring == MAP_FAILED) {
            v->ring = NULL;
            snprintf(w, sizeof w, "%s: mmap dirty ring (vcpu fd offset %d pages)", name,
                     (int)KVM_DIRTY_LOG_PAGE_OFFSET);
            fail(w, errno, NULL);
            goto bad;
        }
        v->ring_n = (uint32_t)(ring_bytes / sizeof(struct probe_dirty_gfn));
        v->ring_fetch = 0;
    }

    /* Real mode.  After KVM_CREATE_VCPU the vCPU is in its reset state
     * (CR0.PE = 0, CS = F000 base FFFF0000); keep the rest of that state and
     * point CS at 0.  Real-mode base must equal selector * 16 (KVM's vm86
     * fallback for VMX without unrestricted guest derives one from the
     * other), so DS/ES/SS are set consistently too. */
    struct kvm_sregs s;
    if (ioctl(v->vcpu, KVM_GET_SREGS, &s) < 0) {
        snprintf(w, sizeof w, "%s: KVM_GET_SREGS", name);
        fail(w, errno, NULL);
        goto bad;
    }
    s.cs.selector = 0;
    s.cs.base = 0;
    s.ds.selector = (uint16_t)(DATA_GPA >> 4);
    s.ds.base = DATA_GPA;
    s.es.selector = (uint16_t)(DATA_GPA >> 4);
    s.es.base = DATA_GPA;
    s.ss.selector = 0;
    s.ss.base = 0;
    if (ioctl(v->vcpu, KVM_SET_SREGS, &s) < 0) {
        snprintf(w, sizeof w, "%s: KVM_SET_SREGS", name);
        fail(w, errno, NULL);
        goto bad;
    }
    snprintf(w, sizeof w, "%s: set registers", name);
    if (set_entry(v, ENTRY_EXITLOOP, w) < 0)
        goto bad;
    out("  %s: memslots, vCPU (kvm_run mmap %d bytes), real-mode registers ok", name, vcpu_mmap_size);
    return 0;
bad:
    vm_destroy(v);
    return -1;
}

/* Pages whose first byte is not `expect`. */
static unsigned verify_data(const uint8_t *data, uint8_t expect)
{
    unsigned bad = 0;
    for (unsigned p = 0; p < DATA_PAGES; p++)
        if (data[(size_t)p * 4096] != expect)
            bad++;
    return bad;
}

static int get_dirty_log(struct vm *v, int *count, uint64_t *ns, const char *what)
{
    uint64_t bm[8]; /* KVM writes ALIGN(128 pages, 64) / 8 = 16 bytes */
    memset(bm, 0, sizeof bm);
    struct kvm_dirty_log dl;
    memset(&dl, 0, sizeof dl);
    dl.slot = 1;
    dl.dirty_bitmap = bm;
    uint64_t t0 = now_ns();
    int r = ioctl(v->fd, KVM_GET_DIRTY_LOG, &dl);
    uint64_t t1 = now_ns();
    if (r < 0) {
        fail(what, errno, "KVM_GET_DIRTY_LOG");
        return -1;
    }
    *ns = t1 - t0;
    *count = __builtin_popcountll(bm[0]) + __builtin_popcountll(bm[1]);
    return 0;
}

/* ---- 3a ---- */
static void test_exit_roundtrip(struct vm *v)
{
    enum { WARM = 200, N = 20000 };
    char b[256];
    uint64_t ns;
    step_begin("exit-roundtrip", 12);
    out("[kvm exit round trip] guest: `out 0x10, al; jmp` in real mode; %d KVM_RUN calls", N);
    jobj("exit_roundtrip");
    bool ok = set_entry(v, ENTRY_EXITLOOP, "exit-roundtrip: set rip") == 0;
    int done = 0;
    double *t = xcalloc(N, sizeof *t);
    for (int i = 0; ok && i < WARM; i++)
        if (run_until_out(v, PORT_EXIT, &ns, "exit-roundtrip: warm-up KVM_RUN") < 0)
            ok = false;
    if (ok)
        out("  first KVM_RUN returned KVM_EXIT_IO port 0x10: the guest runs");
    for (int i = 0; ok && i < N; i++) {
        if (run_until_out(v, PORT_EXIT, &ns, "exit-roundtrip: KVM_RUN") < 0)
            break;
        t[done++] = (double)ns;
    }
    struct stats s = stats_d(t, (size_t)done);
    free(t);
    jkv_bool("ok", ok && done == N);
    jstats("ns", s);
    if (done)
        out("  KVM_RUN -> KVM_EXIT_IO -> back, per exit: %s", fmt_stats(b, sizeof b, s));
    jend();
    step_end();
}

/* ---- 3b ---- */
static void test_dirty_log(struct vm *v)
{
    enum { ROUNDS = 50, FIRST = 10 };
    char b[256];
    uint64_t ns, gns;
    int cnt;
    uint8_t expect = 0;
    step_begin("dirty-log", 15);
    out("[kvm dirty log] slot 1: GPA 0x10000..0x90000, %u pages, KVM_MEM_LOG_DIRTY_PAGES; "
        "guest increments one byte per page, then `out 0x11`",
        DATA_PAGES);
    jobj("dirty_log");
    jkv_int("pages", DATA_PAGES);
    bool ok = set_entry(v, ENTRY_DIRTY, "dirty-log: set rip") == 0;

    /* first pass: first touch (host pages not yet allocated either) */
    uint64_t first = 0;
    int first_cnt = -1, clean_cnt = -1;
    uint64_t first_gdl = 0, first_clean = 0;
    if (ok && run_until_out(v, PORT_PASS, &first, "dirty-log: first pass") == 0) {
        expect++;
        unsigned bad = verify_data(v->data, expect);
        out("  first pass (first touch; host pages also untouched): %.0f ns = %.0f ns/page; data check: %s",
            (double)first, (double)first / DATA_PAGES, bad ? "MISMATCH" : "ok");
        if (bad)
            fail("dirty-log: first pass data check", 0, "%u of %u pages lack the guest's write", bad, DATA_PAGES);
        if (get_dirty_log(v, &first_cnt, &first_gdl, "dirty-log: first GET_DIRTY_LOG") == 0)
            out("  KVM_GET_DIRTY_LOG after first pass: %d dirty bits (expect %u), %.0f ns", first_cnt,
                DATA_PAGES, (double)first_gdl);
        if (get_dirty_log(v, &clean_cnt, &first_clean, "dirty-log: clean GET_DIRTY_LOG") == 0)
            out("  KVM_GET_DIRTY_LOG again (clean log): %d dirty bits (expect 0), %.0f ns", clean_cnt,
                (double)first_clean);
    } else {
        ok = false;
    }
    jkv_int("first_pass_ns", ok ? (long long)first : -1);
    jkv_int("first_getlog_bits", first_cnt);
    jkv_int("first_getlog_ns", (long long)first_gdl);
    jkv_int("clean_getlog_bits", clean_cnt);
    jkv_int("clean_getlog_ns", (long long)first_clean);

    /* rounds: pass A (after the log was read: dirty-logging write faults),
     * pass B (pages still writable: no faults), GET_DIRTY_LOG, clean GET */
    double *ta = xcalloc(ROUNDS, sizeof *ta), *tb = xcalloc(ROUNDS, sizeof *tb);
    double *tg = xcalloc(ROUNDS, sizeof *tg), *tc = xcalloc(ROUNDS, sizeof *tc);
    int n = 0, badcnt = 0, baddata = 0;
    for (int i = 0; ok && i < ROUNDS; i++) {
        uint64_t a, bb, g, c;
        int ca, cc;
        if (run_until_out(v, PORT_PASS, &a, "dirty-log: pass after GET_DIRTY_LOG") < 0)
            break;
        expect++;
        baddata += verify_data(v->data, expect) != 0;
        if (run_until_out(v, PORT_PASS, &bb, "dirty-log: pass without fault") < 0)
            break;
        expect++;
        baddata += verify_data(v->data, expect) != 0;
        if (get_dirty_log(v, &ca, &g, "dirty-log: GET_DIRTY_LOG") < 0)
            break;
        if (get_dirty_log(v, &cc, &c, "dirty-log: clean GET_DIRTY_LOG") < 0)
            break;
        badcnt += ca != (int)DATA_PAGES || cc != 0;
        ta[n] = (double)a;
        tb[n] = (double)bb;
        tg[n] = (double)g;
        tc[n] = (double)c;
        n++;
    }
    struct stats sa = stats_d(ta, (size_t)n), sb = stats_d(tb, (size_t)n);
    struct stats sg = stats_d(tg, (size_t)n), sc = stats_d(tc, (size_t)n);
    free(ta);
    free(tb);
    free(tg);
    free(tc);
    if (badcnt)
        fail("dirty-log: bit counts", 0, "%d of %d rounds did not report %u dirty then 0", badcnt, n, DATA_PAGES);
    if (baddata)
        fail("dirty-log: data check", 0, "%d passes left pages without the guest's write", baddata);
    double wp = n ? (sa.median - sb.median) / DATA_PAGES : __builtin_nan("");
    if (n) {
        out("  %d rounds:", n);
        out("    A: pass after GET_DIRTY_LOG (128 write-protect faults; with PML: D-bit logging): %s",
            fmt_stats(b, sizeof b, sa));
        out("    B: pass with pages still writable (no faults):                                 %s",
            fmt_stats(b, sizeof b, sb));
        out("    => per re-dirtied page: (median A - median B) / 128 = %.0f ns", wp);
        out("    KVM_GET_DIRTY_LOG, 128 dirty pages: %s", fmt_stats(b, sizeof b, sg));
        out("    KVM_GET_DIRTY_LOG, clean log:       %s", fmt_stats(b, sizeof b, sc));
        out("    bit counts %s, data checks %s", badcnt ? "WRONG" : "ok (128 then 0)", baddata ? "WRONG" : "ok");
    }
    jkv_int("rounds", n);
    jstats("pass_after_getlog_ns", sa);
    jstats("pass_nofault_ns", sb);
    jkv_dbl("wp_fault_per_page_ns", wp);
    jstats("getlog_dirty128_ns", sg);
    jstats("getlog_clean_ns", sc);
    jkv_int("rounds_bad_bitcount", badcnt);
    jkv_int("passes_bad_data", baddata);

    /* first-touch passes on a fresh slot: delete slot 1, map new memory
     * (untouched, or pre-faulted by the host), re-create the slot, one pass */
    double *fu = xcalloc(FIRST, sizeof *fu), *fp = xcalloc(FIRST, sizeof *fp);
    double *sdel = xcalloc(2 * FIRST, sizeof *sdel), *sadd = xcalloc(2 * FIRST, sizeof *sadd);
    int nu = 0, np = 0, nslot = 0, fbad = 0;
    for (int i = 0; ok && n == ROUNDS && i < 2 * FIRST && !step_expired; i++) {
        bool prefault = i % 2;
        uint8_t *nd = map_data(DATA_SIZE);
        if (nd == MAP_FAILED) {
            fail("dirty-log: mmap fresh data", errno, NULL);
            break;
        }
        if (prefault)
            memset(nd, 0, DATA_SIZE);
        uint64_t t0 = now_ns();
        int r = set_data_slot(v, v->data, 0);
        uint64_t t1 = now_ns();
        if (r < 0) {
            fail("dirty-log: delete slot 1 (memory_size 0)", errno, NULL);
            munmap(nd, DATA_SIZE);
            break;
        }
        munmap(v->data, DATA_SIZE);
        v->data = nd;
        uint64_t t2 = now_ns();
        r = set_data_slot(v, v->data, DATA_SIZE);
        uint64_t t3 = now_ns();
        if (r < 0) {
            fail("dirty-log: re-create slot 1", errno, NULL);
            ok = false;
            break;
        }
        sdel[nslot] = (double)(t1 - t0);
        sadd[nslot] = (double)(t3 - t2);
        nslot++;
        if (run_until_out(v, PORT_PASS, &ns, "dirty-log: first pass on fresh slot") < 0) {
            ok = false;
            break;
        }
        fbad += verify_data(v->data, 1) != 0;
        if (get_dirty_log(v, &cnt, &gns, "dirty-log: GET_DIRTY_LOG on fresh slot") == 0)
            fbad += cnt != (int)DATA_PAGES;
        if (prefault)
            fp[np++] = (double)ns;
        else
            fu[nu++] = (double)ns;
    }
    struct stats su = stats_d(fu, (size_t)nu), sp = stats_d(fp, (size_t)np);
    struct stats sd = stats_d(sdel, (size_t)nslot), ss = stats_d(sadd, (size_t)nslot);
    free(fu);
    free(fp);
    free(sdel);
    free(sadd);
    if (fbad)
        fail("dirty-log: fresh-slot checks", 0, "%d data/bit-count mismatches", fbad);
    double fu_pp = nu && n ? (su.median - sb.median) / DATA_PAGES : __builtin_nan("");
    double fp_pp = np && n ? (sp.median - sb.median) / DATA_PAGES : __builtin_nan("");
    if (nu || np) {
        out("  first pass on a fresh slot (%d + %d times):", nu, np);
        out("    host pages untouched (host page allocation + EPT/NPT/shadow fault): %s", fmt_stats(b, sizeof b, su));
        out("      => per page, minus the no-fault pass: %.0f ns", fu_pp);
        out("    host pages pre-faulted (EPT/NPT/shadow fault only):                 %s", fmt_stats(b, sizeof b, sp));
        out("      => per page, minus the no-fault pass: %.0f ns", fp_pp);
        out("    KVM_SET_USER_MEMORY_REGION delete slot: %s", fmt_stats(b, sizeof b, sd));
        out("    KVM_SET_USER_MEMORY_REGION create slot: %s", fmt_stats(b, sizeof b, ss));
    }
    jstats("fresh_slot_first_pass_untouched_ns", su);
    jkv_dbl("first_touch_untouched_per_page_ns", fu_pp);
    jstats("fresh_slot_first_pass_prefaulted_ns", sp);
    jkv_dbl("first_touch_prefaulted_per_page_ns", fp_pp);
    jstats("memslot_delete_ns", sd);
    jstats("memslot_create_ns", ss);
    jkv_int("fresh_slot_mismatches", fbad);
    jkv_bool("ok", ok && n == ROUNDS && !badcnt && !baddata && !fbad);
    jend();
    step_end();
}

/* ---- 3c ---- */
/* Harvest entries (acquire on flags, release on the reset mark, as the ACQ_REL
 * capability requires; also correct for the plain TSO variant). */
static uint32_t ring_harvest(struct vm *v, uint32_t *in_slot1, uint32_t *unique1)
{
    uint64_t seen[DATA_PAGES / 64] = {0};
    uint32_t n = 0;
    *in_slot1 = *unique1 = 0;
    for (uint32_t k = 0; k < v->ring_n; k++) {
        struct probe_dirty_gfn *e = &v->ring[v->ring_fetch % v->ring_n];
        uint32_t f = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
        if (!(f & KVM_DIRTY_GFN_F_DIRTY))
            break;
        if (e->slot == 1 && e->offset < DATA_PAGES) {
            (*in_slot1)++;
            uint64_t bit = 1ull << (e->offset % 64);
            if (!(seen[e->offset / 64] & bit)) {
                seen[e->offset / 64] |= bit;
                (*unique1)++;
            }
        }
        __atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
        v->ring_fetch++;
        n++;
    }
    return n;
}

static void test_dirty_ring(void)
{
    enum { ROUNDS = 50 };
    char b[256];
    out("[kvm dirty ring]");
    jobj("dirty_ring");
    long maxb = cap_dirty_ring > 0 ? cap_dirty_ring : cap_dirty_ring_acqrel;
    uint32_t cap = cap_dirty_ring > 0 ? KVM_CAP_DIRTY_LOG_RING : KVM_CAP_DIRTY_LOG_RING_ACQ_REL;
    if (maxb <= 0 || KVM_DIRTY_LOG_PAGE_OFFSET == 0) {
        out("  skipped: KVM_CAP_DIRTY_LOG_RING = %ld, _ACQ_REL = %ld", cap_dirty_ring, cap_dirty_ring_acqrel);
        jkv_bool("supported", false);
        jend();
        return;
    }
    jkv_bool("supported", true);
    /* 4096 entries: above the reserved entries (64 + PML's 512) */
    size_t bytes = 4096 * sizeof(struct probe_dirty_gfn);
    if ((long)bytes > maxb)
        bytes = (size_t)maxb;
    jkv_str("cap_used", cap == KVM_CAP_DIRTY_LOG_RING ? "KVM_CAP_DIRTY_LOG_RING" : "KVM_CAP_DIRTY_LOG_RING_ACQ_REL");
    jkv_int("ring_bytes", (long long)bytes);
    step_begin("dirty-ring", 10);
    struct vm v;
    if (vm_create(&v, "ring-vm", cap, bytes) < 0) {
        jkv_bool("ok", false);
        jend();
        step_end();
        return;
    }
    bool ok = set_entry(&v, ENTRY_DIRTY, "dirty-ring: set rip") == 0;
    uint64_t first = 0;
    uint32_t h1 = 0, s1 = 0, u1 = 0;
    int rr1 = -1;
    uint8_t expect = 0;
    if (ok && run_until_out(&v, PORT_PASS, &first, "dirty-ring: first pass") == 0) {
        expect++;
        h1 = ring_harvest(&v, &s1, &u1);
        rr1 = ioctl(v.fd, KVM_RESET_DIRTY_RINGS, 0UL);
        if (rr1 < 0)
            fail("dirty-ring: KVM_RESET_DIRTY_RINGS", errno, NULL);
        out("  first pass: %.0f ns; harvested %u entries (%u in the data slot, %u distinct pages; expect %u); "
            "KVM_RESET_DIRTY_RINGS -> %d",
            (double)first, h1, s1, u1, DATA_PAGES, rr1);
    } else {
        ok = false;
    }
    jkv_int("first_pass_ns", ok ? (long long)first : -1);
    jkv_int("first_harvested", h1);
    jkv_int("first_distinct_data_pages", u1);
    jkv_int("first_reset_ret", rr1);

    double *ta = xcalloc(ROUNDS, sizeof *ta), *tb = xcalloc(ROUNDS, sizeof *tb);
    double *th = xcalloc(ROUNDS, sizeof *th), *tr = xcalloc(ROUNDS, sizeof *tr);
    int n = 0, bad = 0;
    for (int i = 0; ok && i < ROUNDS; i++) {
        uint64_t a, bb;
        if (run_until_out(&v, PORT_PASS, &a, "dirty-ring: pass after reset") < 0)
            break;
        expect++;
        if (run_until_out(&v, PORT_PASS, &bb, "dirty-ring: pass without fault") < 0)
            break;
        expect++;
        uint32_t s, u;
        uint64_t t0 = now_ns();
        uint32_t h = ring_harvest(&v, &s, &u);
        uint64_t t1 = now_ns();
        int rr = ioctl(v.fd, KVM_RESET_DIRTY_RINGS, 0UL);
        uint64_t t2 = now_ns();
        if (rr < 0) {
            fail("dirty-ring: KVM_RESET_DIRTY_RINGS", errno, NULL);
            break;
        }
        bad += u != DATA_PAGES || verify_data(v.data, expect) != 0;
        ta[n] = (double)a;
        tb[n] = (double)bb;
        th[n] = (double)(t1 - t0);
        tr[n] = (double)(t2 - t1);
        n++;
        (void)h;
    }
    struct stats sa = stats_d(ta, (size_t)n), sb = stats_d(tb, (size_t)n);
    struct stats sh = stats_d(th, (size_t)n), sr = stats_d(tr, (size_t)n);
    free(ta);
    free(tb);
    free(th);
    free(tr);
    if (bad)
        fail("dirty-ring: checks", 0, "%d of %d rounds: not %u distinct pages harvested or data mismatch", bad, n,
             DATA_PAGES);
    double wp = n ? (sa.median - sb.median) / DATA_PAGES : __builtin_nan("");
    if (n) {
        out("  %d rounds:", n);
        out("    pass after KVM_RESET_DIRTY_RINGS (128 write faults + ring pushes): %s", fmt_stats(b, sizeof b, sa));
        out("    pass with pages still writable (no faults):                      %s", fmt_stats(b, sizeof b, sb));
        out("    => per fault: %.0f ns", wp);
        out("    harvest 128 entries (user space): %s", fmt_stats(b, sizeof b, sh));
        out("    KVM_RESET_DIRTY_RINGS (128 entries): %s", fmt_stats(b, sizeof b, sr));
        out("    checks %s", bad ? "WRONG" : "ok (128 distinct pages per round, data as expected)");
    }
    jkv_int("rounds", n);
    jstats("pass_after_reset_ns", sa);
    jstats("pass_nofault_ns", sb);
    jkv_dbl("fault_per_page_ns", wp);
    jstats("harvest_ns", sh);
    jstats("reset_ns", sr);
    jkv_int("rounds_bad", bad);
    jkv_bool("ok", ok && n == ROUNDS && !bad);
    jend();
    vm_destroy(&v);
    step_end();
}

static void kvm_section(void)
{
    out("[kvm]");
    jobj("kvm");
    struct stat st;
    jobj("dev_kvm");
    if (stat("/dev/kvm", &st) != 0) {
        int e = errno;
        out("no /dev/kvm: stat(\"/dev/kvm\"): %s (%s)", ename(e), strerror(e));
        jkv_bool("exists", false);
        jkv_bool("open_ok", false);
        jkv_errno(e);
        jend();
        jkv_bool("usable", false);
        jend();
        return;
    }
    jkv_bool("exists", true);
    char mode[16];
    snprintf(mode, sizeof mode, "%04o", (unsigned)(st.st_mode & 07777));
    jkv_str("mode", mode);
    jkv_bool("is_char_device", S_ISCHR(st.st_mode));
    jkv_int("major", major(st.st_rdev));
    jkv_int("minor", minor(st.st_rdev));
    kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm_fd < 0) {
        int e = errno;
        out("no /dev/kvm: open(\"/dev/kvm\", O_RDWR): %s (%s) (the node exists: mode %s, %s %u:%u, uid %u gid %u)",
            ename(e), strerror(e), mode, S_ISCHR(st.st_mode) ? "char" : "not a char device", major(st.st_rdev),
            minor(st.st_rdev), st.st_uid, st.st_gid);
        jkv_bool("open_ok", false);
        jkv_errno(e);
        jend();
        jkv_bool("usable", false);
        jend();
        return;
    }
    out("  /dev/kvm: opened O_RDWR (mode %s, char %u:%u)", mode, major(st.st_rdev), minor(st.st_rdev));
    jkv_bool("open_ok", true);
    jend();

    int api = ioctl(kvm_fd, KVM_GET_API_VERSION, 0UL);
    if (api < 0)
        fail("KVM_GET_API_VERSION", errno, NULL);
    else
        out("  KVM_GET_API_VERSION = %d%s", api, api == 12 ? "" : " (expected 12!)");
    jkv_int("api_version", api);

    static const struct {
        const char *name;
        long cap;
    } caps[] = {
        {"KVM_CAP_NR_MEMSLOTS", KVM_CAP_NR_MEMSLOTS},
        {"KVM_CAP_MAX_VCPUS", KVM_CAP_MAX_VCPUS},
        {"KVM_CAP_USER_MEMORY", KVM_CAP_USER_MEMORY},
        {"KVM_CAP_SET_TSS_ADDR", KVM_CAP_SET_TSS_ADDR},
        {"KVM_CAP_DIRTY_LOG_RING", KVM_CAP_DIRTY_LOG_RING},
        {"KVM_CAP_DIRTY_LOG_RING_ACQ_REL", KVM_CAP_DIRTY_LOG_RING_ACQ_REL},
        {"KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2},
        {"KVM_CAP_X86_USER_SPACE_MSR", KVM_CAP_X86_USER_SPACE_MSR},
        {"KVM_CAP_VM_TYPES", KVM_CAP_VM_TYPES},
    };
    jobj("caps");
    for (size_t i = 0; i < sizeof caps / sizeof *caps; i++) {
        int r = ioctl(kvm_fd, KVM_CHECK_EXTENSION, caps[i].cap);
        if (r < 0) {
            int e = errno;
            out("  KVM_CHECK_EXTENSION(%s = %ld): error %s", caps[i].name, caps[i].cap, ename(e));
            jkv_null(caps[i].name);
            continue;
        }
        const char *note = "";
        if (caps[i].cap == KVM_CAP_DIRTY_LOG_RING || caps[i].cap == KVM_CAP_DIRTY_LOG_RING_ACQ_REL)
            note = r ? " (max ring bytes)" : " (unsupported)";
        else if (caps[i].cap == KVM_CAP_VM_TYPES)
            note = " (bitmask of VM types; bit 0 = default)";
        else if (caps[i].cap == KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)
            note = " (supported flags)";
        else if (caps[i].cap == KVM_CAP_X86_USER_SPACE_MSR)
            note = " (supported exit reasons mask)";
        out("  KVM_CHECK_EXTENSION(%s) = %d (0x%x)%s", caps[i].name, r, (unsigned)r, note);
        jkv_int(caps[i].name, r);
        if (caps[i].cap == KVM_CAP_DIRTY_LOG_RING)
            cap_dirty_ring = r;
        if (caps[i].cap == KVM_CAP_DIRTY_LOG_RING_ACQ_REL)
            cap_dirty_ring_acqrel = r;
        if (caps[i].cap == KVM_CAP_SET_TSS_ADDR)
            cap_set_tss = r;
    }
    jend();

    vcpu_mmap_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0UL);
    if (vcpu_mmap_size < 0)
        fail("KVM_GET_VCPU_MMAP_SIZE", errno, NULL);
    else
        out("  KVM_GET_VCPU_MMAP_SIZE = %d", vcpu_mmap_size);
    jkv_int("vcpu_mmap_size", vcpu_mmap_size);

    if (api != 12 || vcpu_mmap_size < (int)sizeof(struct kvm_run)) {
        out("  not creating a VM: API version %d, vcpu mmap size %d", api, vcpu_mmap_size);
        jkv_bool("usable", false);
        jend();
        return;
    }

    step_begin("vm-create", 5);
    struct vm v;
    out("[kvm vm]");
    int r = vm_create(&v, "vm", 0, 0);
    step_end();
    jkv_bool("vm_created", r == 0);
    if (r == 0) {
        test_exit_roundtrip(&v);
        test_dirty_log(&v);
        vm_destroy(&v);
    }
    test_dirty_ring();
    jkv_bool("usable", r == 0);
    jend();
}

/* ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json_mode = true;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: %s [--json]\n"
                   "  Probes host virtualization facts and /dev/kvm; measures KVM exit, dirty-logging and\n"
                   "  host page-fault costs.  --json: human lines go to stderr, one JSON object to stdout.\n"
                   "  Exit status: 0 done (even without KVM), 2 internal error, 3 watchdog (60 s).\n",
                   argv[0]);
            return 0;
        } else {
            fprintf(stderr, "kvm-probe: unknown argument '%s' (try --help)\n", argv[i]);
            return 2;
        }
    }
    hout = json_mode ? stderr : stdout;
    hfd = json_mode ? 2 : 1;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    sa.sa_handler = on_step_timer;
    sa.sa_flags = SA_RESTART; /* KVM_RUN still returns EINTR */
    sigaction(SIGUSR1, &sa, NULL);
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGUSR1;
    have_step_timer = timer_create(CLOCK_MONOTONIC, &sev, &step_timer) == 0;
    alarm(60);

    jdepth = 0;
    jobj(NULL);
    jkv_str("tool", "kvm-probe");
    jkv_int("format_version", 1);
    out("kvm-probe (format 1)");
    if (!have_step_timer)
        out("  note: timer_create failed (%s): no per-step time limit, only the 60 s watchdog", ename(errno));

    cur_step = "host-facts";
    host_facts();
    host_compare(); /* before KVM, so that it survives a KVM hang */
    cur_step = "kvm";
    kvm_section();
    cur_step = "end";

    out("[summary]");
    jarr("failures");
    for (int i = 0; i < nfails; i++) {
        jobj(NULL);
        jkv_str("step", fails[i].step);
        if (fails[i].err)
            jkv_errno(fails[i].err);
        jkv_str("detail", fails[i].detail);
        jend();
    }
    jend();
    if (nfails == 0)
        out("  no step failed");
    else
        out("  %d step(s) failed (see FAIL lines above)", nfails);
    jkv_bool("watchdog_fired", false);
    jend();
    alarm(0);
    if (json_mode) {
        if (jtrunc)
            fprintf(stderr, "kvm-probe: JSON buffer overflow, JSON output truncated\n");
        fwrite(jbuf, 1, jlen, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        if (jtrunc)
            return 2;
    }
    return 0;
}
