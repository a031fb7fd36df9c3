/* edgelab launcher: the step between the lab and a native workload that posix_spawn cannot do.
 *
 *   launcher CGROUP_DIR UID_BASE JAIL AS_LIMIT EXE ARGV0   (the first four may be "-": skip)
 *
 * In this order, then exec, so the workload never runs one instruction outside its box:
 *   1. start the workload *inside* the instance's cgroup: clone3(CLONE_INTO_CGROUP |
 *      CLONE_PARENT), so the new process is born in CGROUP_DIR and is the lab's own child; the
 *      launcher writes its pid (4 bytes, native order) to fd 3 if open, and exits 0. Every
 *      process the workload starts, setsid or not, is in that cgroup, and the lab's stop kills
 *      the cgroup whole (cgroup.kill). Not a write to cgroup.procs: moving a process takes the
 *      cgroup threadgroup lock for writing, which waits for an RCU grace period whenever the
 *      last move was more than a few ms ago: ~12 ms per launch here, against ~0 when born in it;
 *      the new process then takes a process group of its own (setpgid);
 *   2. chroot(JAIL) + chdir("/"): JAIL holds only the workload's own binary (a root-owned
 *      directory, mode 0111), so none of the host's files, /proc, the Docker socket or a
 *      writable /tmp exist for the workload;
 *   3. setgroups(0) + setresgid + setresuid to UID_BASE + getpid(): a uid of its own per
 *      instance (no passwd entry, no home), so an instance can signal or ptrace no other;
 *   4. PR_SET_NO_NEW_PRIVS: no exec regains a privilege;
 *   5. RLIMIT_AS = AS_LIMIT bytes (here, not by the lab's prlimit after the spawn: once the uid
 *      has changed, a lab without CAP_SYS_RESOURCE may no longer set it: a race, measured);
 *   6. close every fd above 2, exec EXE (a path inside JAIL) with ARGV0 and an empty environment.
 *
 * Freestanding (no C library, raw syscalls), so the launcher costs one small static exec.
 * A failing step exits with its own code (LAUNCHER_EXIT_* in edgelab/runtimes/subprocess.py):
 * stderr is /dev/null and stdout belongs to the frame protocol. */
typedef unsigned long ul;

#if defined(__x86_64__)
enum { SYS_write = 1, SYS_openat = 257, SYS_close = 3, SYS_getpid = 39, SYS_chdir = 80,
       SYS_chroot = 161, SYS_setgroups = 116, SYS_setresuid = 117, SYS_setresgid = 119,
       SYS_prctl = 157, SYS_execve = 59, SYS_exit_group = 231, SYS_close_range = 436,
       SYS_prlimit64 = 302, SYS_clone3 = 435, SYS_setpgid = 109 };
static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#elif defined(__aarch64__)
enum { SYS_write = 64, SYS_openat = 56, SYS_close = 57, SYS_getpid = 172, SYS_chdir = 49,
       SYS_chroot = 51, SYS_setgroups = 159, SYS_setresuid = 147, SYS_setresgid = 149,
       SYS_prctl = 167, SYS_execve = 221, SYS_exit_group = 94, SYS_close_range = 436,
       SYS_prlimit64 = 261, SYS_clone3 = 435, SYS_setpgid = 154 };
static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
    return x0;
}
#else
#error "launcher: x86_64 or aarch64 only"
#endif

enum { EXIT_USAGE = 120, EXIT_CGROUP = 121, EXIT_CHROOT = 122, EXIT_SETUID = 123,
       EXIT_NO_NEW_PRIVS = 124, EXIT_EXEC = 125, EXIT_RLIMIT = 126 };
#define AT_FDCWD (-100)
#define O_RDONLY 0
#define O_DIRECTORY 0200000
#define O_CLOEXEC 02000000
#define CLONE_PARENT 0x00008000UL
#define CLONE_INTO_CGROUP 0x200000000UL
#define PR_SET_NO_NEW_PRIVS 38
#define RLIMIT_AS 9

__attribute__((noreturn)) static void die(int code) {
    for (;;) sys6(SYS_exit_group, code, 0, 0, 0, 0, 0);
}

static int skipped(const char *arg) { return arg[0] == '-' && arg[1] == 0; }

static int parse_ul(const char *s, ul *out) {
    ul v = 0;
    if (!*s) return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (~0UL) / 10 - 1) return 0;
        v = v * 10 + (ul)(*s - '0');
    }
    *out = v;
    return 1;
}

__attribute__((noreturn, used)) void launcher_main(long *sp) {
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    if (argc != 7) die(EXIT_USAGE);
    const char *cgroup = argv[1], *base_arg = argv[2], *jail = argv[3], *limit_arg = argv[4], *exe = argv[5];
    ul base = 0, limit = 0;
    if (!skipped(base_arg) && (!parse_ul(base_arg, &base) || base > 0xffffffffUL)) die(EXIT_USAGE);
    if (!skipped(limit_arg) && !parse_ul(limit_arg, &limit)) die(EXIT_USAGE);

    if (!skipped(cgroup)) {
        long fd = sys6(SYS_openat, AT_FDCWD, (long)cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, 0, 0);
        if (fd < 0) die(EXIT_CGROUP);
        /* struct clone_args up to .cgroup (CLONE_ARGS_SIZE_VER2, 88 bytes) */
        /* exit_signal 0: with CLONE_PARENT clone3 requires it; the child inherits ours (SIGCHLD) */
        unsigned long args[11] = {CLONE_PARENT | CLONE_INTO_CGROUP, 0, 0, 0, 0, 0, 0, 0, 0, 0, (ul)fd};
        long pid = sys6(SYS_clone3, (long)args, sizeof args, 0, 0, 0, 0);
        if (pid < 0) die(EXIT_CGROUP);
        if (pid > 0) {
            int report = (int)pid;
            sys6(SYS_write, 3, (long)&report, sizeof report, 0, 0, 0); /* fd 3 may be closed: fine */
            die(0);
        }
        if (sys6(SYS_setpgid, 0, 0, 0, 0, 0, 0) != 0) die(EXIT_CGROUP);
    }
    if (!skipped(jail)) {
        if (sys6(SYS_chroot, (long)jail, 0, 0, 0, 0, 0) != 0) die(EXIT_CHROOT);
        if (sys6(SYS_chdir, (long)"/", 0, 0, 0, 0, 0) != 0) die(EXIT_CHROOT);
    }
    if (!skipped(base_arg)) {
        ul id = base + (ul)sys6(SYS_getpid, 0, 0, 0, 0, 0, 0);
        if (id > 0xfffffffeUL) die(EXIT_USAGE);
        if (sys6(SYS_setgroups, 0, 0, 0, 0, 0, 0) != 0) die(EXIT_SETUID);
        if (sys6(SYS_setresgid, (long)id, (long)id, (long)id, 0, 0, 0) != 0) die(EXIT_SETUID);
        if (sys6(SYS_setresuid, (long)id, (long)id, (long)id, 0, 0, 0) != 0) die(EXIT_SETUID);
    }
    if (sys6(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0) != 0) die(EXIT_NO_NEW_PRIVS);
    if (!skipped(limit_arg)) {
        ul rlim[2] = {limit, limit};
        if (sys6(SYS_prlimit64, 0, RLIMIT_AS, (long)rlim, 0, 0, 0) != 0) die(EXIT_RLIMIT);
    }
    sys6(SYS_close_range, 3, ~0L, 0, 0, 0, 0); /* ENOSYS before Linux 5.9: the lab's fds are CLOEXEC anyway */
    static char *const no_env[1] = {0};
    char *child_argv[2] = {argv[6], 0};
    sys6(SYS_execve, (long)exe, (long)child_argv, (long)no_env, 0, 0, 0);
    die(EXIT_EXEC);
}

#if defined(__x86_64__)
__asm__(".text\n.global _start\n.type _start,@function\n_start:\n"
        "  xor %rbp, %rbp\n  mov %rsp, %rdi\n  and $-16, %rsp\n  call launcher_main\n  hlt\n");
#elif defined(__aarch64__)
__asm__(".text\n.global _start\n.type _start,%function\n_start:\n"
        "  mov x29, #0\n  mov x30, #0\n  mov x0, sp\n  and x1, x0, #-16\n  mov sp, x1\n  bl launcher_main\n  brk #0\n");
#endif
