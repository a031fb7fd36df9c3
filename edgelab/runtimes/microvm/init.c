/* edgelab microvm init: PID 1 of the guest, between the kernel and the workload.
 *
 * The Debian cloud kernel has virtio-mmio and the virtio console as modules, so this init:
 *   1. loads /lib/edgelab/<name>.ko for virtio_ring, virtio, virtio_mmio and virtio_console in
 *      that order with finit_module, each with its parameters from the kernel command line
 *      (QEMU's microvm writes where its virtio-mmio transports are as virtio_mmio.device=...;
 *      the kernel hands such dotted parameters to modprobe, which this init stands in for, so
 *      it reads /proc/cmdline). A module missing from the archive (built in) is skipped;
 *   2. mounts devtmpfs on /dev, where the console port appears as /dev/vport0p1 once the
 *      driver has heard of it from the host (polled every 200 us, for up to 20 s);
 *   3. makes that port the workload's stdin and stdout: a virtio *serial port*, not a tty, so
 *      no line discipline touches a byte (no echo, no CR/LF mapping, no ^C): binary-safe as a pipe;
 *   4. sets RLIMIT_AS to edgelab.as_limit=<bytes> from the command line (the workload's
 *      memory_limit_mib, as the native launcher does), so an allocation past it fails in the
 *      workload ("out of memory") instead of the guest kernel's OOM killer taking PID 1;
 *   5. writes one ready byte (0x06) on it, which the host reads as the end of the boot phase;
 *   6. forks, and the child execs /workload with an empty environment. Not exec'd as PID 1
 *      itself: the kernel shields PID 1 from every signal it has no handler for, so a workload
 *      that raises SIGABRT would run on (and trap) instead of dying as it does in a process.
 *      PID 1 reaps until the workload is gone, writes "edgelab-init: wait status 0x..." to the
 *      serial console (the host's reason for a launch that failed) and exits: the kernel
 *      panics, panic=-1 reboots at once and QEMU's -no-reboot turns that into QEMU's exit.
 * Freestanding (no C library, raw syscalls), x86_64 only (the guest kernel is amd64).
 * A failing step writes one line to fd 2 (the serial console) and exits with its own code. */
typedef unsigned long ul;

enum { SYS_write = 1, SYS_close = 3, SYS_dup2 = 33, SYS_nanosleep = 35, SYS_execve = 59,
       SYS_exit_group = 231, SYS_mount = 165, SYS_read = 0, SYS_openat = 257, SYS_finit_module = 313, SYS_prlimit64 = 302, SYS_fork = 57, SYS_wait4 = 61 };
static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

#define AT_FDCWD (-100)
#define O_RDONLY 0
#define O_RDWR 02
#define O_CLOEXEC 02000000
#define READY_BYTE 0x06
#define RLIMIT_AS 9

static ul length(const char *s) {
    ul n = 0;
    while (s[n]) n++;
    return n;
}

__attribute__((noreturn)) static void fail(const char *why, int code) {
    sys6(SYS_write, 2, (long)"edgelab-init: ", 14, 0, 0, 0);
    sys6(SYS_write, 2, (long)why, (long)length(why), 0, 0, 0);
    sys6(SYS_write, 2, (long)"\n", 1, 0, 0, 0);
    for (;;) sys6(SYS_exit_group, code, 0, 0, 0, 0, 0);
}

__attribute__((noreturn, used)) void init_main(long *sp) {
    (void)sp;
    if (sys6(SYS_mount, (long)"proc", (long)"/proc", (long)"proc", 0, 0, 0) != 0) fail("cannot mount /proc", 119);
    static char cmdline[4096];
    long got = 0, fd = sys6(SYS_openat, AT_FDCWD, (long)"/proc/cmdline", O_RDONLY | O_CLOEXEC, 0, 0, 0);
    if (fd >= 0) {
        got = sys6(SYS_read, fd, (long)cmdline, sizeof cmdline - 1, 0, 0, 0);
        sys6(SYS_close, fd, 0, 0, 0, 0, 0);
    }
    cmdline[got > 0 ? got : 0] = 0;
    static const char *const modules[] = {"virtio_ring", "virtio", "virtio_mmio", "virtio_console"};
    for (ul m = 0; m < sizeof modules / sizeof modules[0]; m++) {
        char path[64], params[1024];
        ul n = 0, p = 0, name = length(modules[m]);
        const char *prefix = "/lib/edgelab/";
        for (const char *c = prefix; *c;) path[n++] = *c++;
        for (const char *c = modules[m]; *c;) path[n++] = *c++;
        path[n++] = '.', path[n++] = 'k', path[n++] = 'o', path[n] = 0;
        /* "name.key=value" words of the command line become "key=value key=value" */
        for (const char *w = cmdline; *w;) {
            while (*w == ' ' || *w == '\n') w++;
            const char *end = w;
            while (*end && *end != ' ' && *end != '\n') end++;
            int match = (ul)(end - w) > name + 1 && w[name] == '.';
            for (ul i = 0; match && i < name; i++) match = w[i] == modules[m][i];
            if (match && p + (ul)(end - w) - name + 1 < sizeof params) {
                if (p) params[p++] = ' ';
                for (const char *c = w + name + 1; c < end;) params[p++] = *c++;
            }
            w = end;
        }
        params[p] = 0;
        long module = sys6(SYS_openat, AT_FDCWD, (long)path, O_RDONLY | O_CLOEXEC, 0, 0, 0);
        if (module < 0) continue;
        long loaded = sys6(SYS_finit_module, module, (long)params, 0, 0, 0, 0);
        if (loaded != 0 && loaded != -17 /* EEXIST */) fail("cannot load a virtio module", 118);
        sys6(SYS_close, module, 0, 0, 0, 0, 0);
    }
    long mounted = sys6(SYS_mount, (long)"devtmpfs", (long)"/dev", (long)"devtmpfs", 0, 0, 0);
    if (mounted != 0 && mounted != -16 /* EBUSY: mounted already */) fail("cannot mount devtmpfs on /dev", 120);
    long port = -1;
    const long pause[2] = {0, 200000}; /* 200 us */
    for (int tries = 0; tries < 100000 && port < 0; tries++) {
        port = sys6(SYS_openat, AT_FDCWD, (long)"/dev/vport0p1", O_RDWR, 0, 0, 0);
        if (port < 0) sys6(SYS_nanosleep, (long)pause, 0, 0, 0, 0, 0);
    }
    if (port < 0) fail("no virtio console port /dev/vport0p1", 121);
    if (port != 0 && sys6(SYS_dup2, port, 0, 0, 0, 0, 0) != 0) fail("dup2 to stdin failed", 122);
    if (port != 1 && sys6(SYS_dup2, port, 1, 0, 0, 0, 0) != 1) fail("dup2 to stdout failed", 122);
    if (port > 1) sys6(SYS_close, port, 0, 0, 0, 0, 0);
    static const char as_key[] = "edgelab.as_limit=";
    for (const char *w = cmdline; *w; w++) {
        if (w != cmdline && w[-1] != ' ') continue;
        ul k = 0;
        while (as_key[k] && w[k] == as_key[k]) k++;
        if (as_key[k]) continue;
        ul limit = 0;
        for (const char *d = w + k; *d >= '0' && *d <= '9'; d++) limit = limit * 10 + (ul)(*d - '0');
        ul rlim[2] = {limit, limit};
        if (limit && sys6(SYS_prlimit64, 0, RLIMIT_AS, (long)rlim, 0, 0, 0) != 0) fail("cannot set RLIMIT_AS", 125);
    }
    const unsigned char ready = READY_BYTE;
    if (sys6(SYS_write, 1, (long)&ready, 1, 0, 0, 0) != 1) fail("cannot write the ready byte", 123);
    long child = sys6(SYS_fork, 0, 0, 0, 0, 0, 0);
    if (child < 0) fail("cannot fork the workload", 124);
    if (child == 0) {
        static char *const no_env[1] = {0};
        char *argv[2] = {"workload", 0};
        sys6(SYS_execve, (long)"/workload", (long)argv, (long)no_env, 0, 0, 0);
        fail("cannot exec /workload", 124);
    }
    sys6(SYS_close, 0, 0, 0, 0, 0, 0);
    sys6(SYS_close, 1, 0, 0, 0, 0, 0); /* the port's last writer is the workload now */
    int status = 0;
    for (;;) { /* orphans of the workload are PID 1's to reap too */
        int got = 0;
        long pid = sys6(SYS_wait4, -1, (long)&got, 0, 0, 0, 0);
        if (pid == child) { status = got; break; }
        if (pid < 0 && pid != -4 /* EINTR */) break;
    }
    char line[] = "wait status 0x00000000";
    for (int i = 0; i < 8; i++) line[21 - i] = "0123456789abcdef"[(status >> (4 * i)) & 15];
    fail(line, 0);
}

__asm__(".text\n.global _start\n.type _start,@function\n_start:\n"
        "  xor %rbp, %rbp\n  mov %rsp, %rdi\n  and $-16, %rsp\n  call init_main\n  hlt\n");
