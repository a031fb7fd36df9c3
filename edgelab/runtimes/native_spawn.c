/* edgelab native spawn: posix_spawn with the steps posix_spawn lacks, in one exec.
 *
 * Called from the lab through ctypes (a shared library, freestanding: no C library). Like
 * glibc's posix_spawn it uses clone3(CLONE_VM | CLONE_VFORK) on a stack of its own, so the
 * child shares the lab's memory without copying it and the calling thread waits until the
 * child has exec'd (or failed). Unlike posix_spawn it can also, before the exec:
 *   - be born in the instance's cgroup (CLONE_INTO_CGROUP: no migration, no RCU wait);
 *   - chroot into the workload's jail, drop to uid/gid uid_base + pid with no groups;
 *   - set PR_SET_NO_NEW_PRIVS and RLIMIT_AS.
 * It saves the separate launcher's exec and fork (launcher.c does the same steps, for where
 * this library cannot be used).
 *
 * The child never touches the lab's heap: it reads the request struct and the strings the
 * caller keeps alive, and writes only `failed_step`, `error` and the two timestamps there
 * (the steps' start and end: the lab shows them as the launch's drop-privileges phase). Signals: every signal
 * is blocked around the clone; in the child, caught signals are reset to the default (the
 * lab's handlers must never run in the child) before the caller's mask is restored, as
 * glibc's posix_spawn does. Ignored signals stay ignored across exec, as with posix_spawn.
 * A failing step ends the child with exit code 127 and names the step (the LAUNCHER_EXITS
 * codes) and errno in the struct; the caller reaps it. */
typedef unsigned long ul;

#if defined(__x86_64__)
enum { SYS_write = 1, SYS_openat = 257, SYS_close = 3, SYS_getpid = 39, SYS_chdir = 80,
       SYS_chroot = 161, SYS_setgroups = 116, SYS_setresuid = 117, SYS_setresgid = 119,
       SYS_prctl = 157, SYS_execve = 59, SYS_exit = 60, SYS_close_range = 436,
       SYS_prlimit64 = 302, SYS_clone3 = 435, SYS_setpgid = 109, SYS_dup3 = 292, SYS_fcntl = 72,
       SYS_rt_sigaction = 13, SYS_rt_sigprocmask = 14, SYS_wait4 = 61, SYS_clock_gettime = 228 };
static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
/* long el_clone3(struct clone_args *args, ul size, void (*fn)(void *), void *arg): in the
 * child (its own stack, from args) call fn(arg), which never returns. */
long el_clone3(void *args, ul size, void (*fn)(void *), void *arg);
__asm__(".text\n.global el_clone3\n.hidden el_clone3\n.type el_clone3,@function\nel_clone3:\n"
        "  mov %rdx, %r8\n  mov %rcx, %r9\n  mov $435, %eax\n  syscall\n"
        "  test %rax, %rax\n  jnz 1f\n"
        "  xor %ebp, %ebp\n  mov %r9, %rdi\n  call *%r8\n  hlt\n"
        "1:\n  ret\n");
#elif defined(__aarch64__)
enum { SYS_write = 64, SYS_openat = 56, SYS_close = 57, SYS_getpid = 172, SYS_chdir = 49,
       SYS_chroot = 51, SYS_setgroups = 159, SYS_setresuid = 147, SYS_setresgid = 149,
       SYS_prctl = 167, SYS_execve = 221, SYS_exit = 93, SYS_close_range = 436,
       SYS_prlimit64 = 261, SYS_clone3 = 435, SYS_setpgid = 154, SYS_dup3 = 24, SYS_fcntl = 25,
       SYS_rt_sigaction = 134, SYS_rt_sigprocmask = 135, SYS_wait4 = 260, SYS_clock_gettime = 113 };
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
long el_clone3(void *args, ul size, void (*fn)(void *), void *arg);
__asm__(".text\n.global el_clone3\n.hidden el_clone3\n.type el_clone3,%function\nel_clone3:\n"
        "  mov x8, #435\n  svc #0\n  cbnz x0, 1f\n"
        "  mov x29, #0\n  mov x0, x3\n  blr x2\n  brk #0\n"
        "1:\n  ret\n");
#else
#error "native_spawn: x86_64 or aarch64 only"
#endif

enum { STEP_CGROUP = 121, STEP_CHROOT = 122, STEP_SETUID = 123, STEP_NO_NEW_PRIVS = 124,
       STEP_EXEC = 125, STEP_RLIMIT = 126, STEP_FDS = 127 };
#define CLONE_VM 0x00000100UL
#define CLONE_VFORK 0x00004000UL
#define CLONE_INTO_CGROUP 0x200000000UL
#define SIGCHLD 17
#define PR_SET_NO_NEW_PRIVS 38
#define RLIMIT_AS 9
#define RLIMIT_NPROC 6
#define F_SETFD 2
#define SIG_BLOCK_ALL (~0UL)
#define SIG_SETMASK 2
#define SIG_DFL 0UL
#define SIG_IGN 1UL
#define NSIG 64

/* What one spawn does; mirrored by ctypes in edgelab/runtimes/isolation.py (SpawnRequest). */
struct el_spawn {
    int fds[3];        /* become the child's 0, 1, 2 */
    int cgroup_fd;     /* a cgroup directory to be born in, or -1 */
    const char *jail;  /* chroot here first, or NULL */
    const char *exe;   /* the path to exec (inside the jail if there is one) */
    char *const *argv; /* NULL-terminated */
    ul uid_base;       /* 0: keep the lab's uid; else uid = gid = uid_base + pid */
    ul as_limit;       /* RLIMIT_AS in bytes, or 0 */
    ul parent_mask;    /* the caller's signal mask, restored in the child before exec */
    int failed_step;   /* out: 0, or the STEP_* that failed */
    int error;         /* out: its errno */
    ul child_ns;       /* out: CLOCK_MONOTONIC when the child began its steps */
    ul exec_ns;        /* out: CLOCK_MONOTONIC just before its execve (the steps' end) */
    char *const *envp; /* NULL-terminated environment, or NULL: empty (the built-in workloads) */
    ul nproc_limit;    /* RLIMIT_NPROC, or 0: a person's command, whose uid is its own (a pids limit) */
};

/* CLOCK_MONOTONIC in ns, the clock of Python's perf_counter_ns (a syscall: no vDSO here). */
static ul monotonic_ns(void) {
    long ts[2] = {0, 0};
    sys6(SYS_clock_gettime, 1, (long)ts, 0, 0, 0, 0);
    return (ul)ts[0] * 1000000000UL + (ul)ts[1];
}

struct kernel_sigaction {
    ul handler;
    ul flags;
    ul restorer;
    ul mask;
};

__attribute__((noreturn)) static void fail(struct el_spawn *s, int step, long ret) {
    s->failed_step = step;
    s->error = (int)-ret;
    for (;;) sys6(SYS_exit, 127, 0, 0, 0, 0, 0);
}

__attribute__((noreturn)) static void child(void *arg) {
    struct el_spawn *s = arg;
    long r;
    s->child_ns = monotonic_ns(); /* the child shares the caller's memory (CLONE_VM) */
    /* the lab's signal handlers must not run here: reset the caught ones (the table is ours) */
    for (int sig = 1; sig <= NSIG; sig++) {
        if (sig == 9 || sig == 19) continue;
        struct kernel_sigaction old;
        if (sys6(SYS_rt_sigaction, sig, 0, (long)&old, 8, 0, 0) != 0) continue;
        if (old.handler != SIG_DFL && old.handler != SIG_IGN) {
            struct kernel_sigaction dfl = {SIG_DFL, 0, 0, 0};
            sys6(SYS_rt_sigaction, sig, (long)&dfl, 0, 8, 0, 0);
        }
    }
    for (int i = 0; i < 3; i++) {
        r = s->fds[i] == i ? sys6(SYS_fcntl, i, F_SETFD, 0, 0, 0, 0) : sys6(SYS_dup3, s->fds[i], i, 0, 0, 0, 0);
        if (r < 0) fail(s, STEP_FDS, r);
    }
    if ((r = sys6(SYS_setpgid, 0, 0, 0, 0, 0, 0)) != 0) fail(s, STEP_FDS, r);
    if (s->jail) {
        if ((r = sys6(SYS_chroot, (long)s->jail, 0, 0, 0, 0, 0)) != 0) fail(s, STEP_CHROOT, r);
        if ((r = sys6(SYS_chdir, (long)"/", 0, 0, 0, 0, 0)) != 0) fail(s, STEP_CHROOT, r);
    }
    if (s->uid_base) {
        ul id = s->uid_base + (ul)sys6(SYS_getpid, 0, 0, 0, 0, 0, 0);
        if ((r = sys6(SYS_setgroups, 0, 0, 0, 0, 0, 0)) != 0) fail(s, STEP_SETUID, r);
        if ((r = sys6(SYS_setresgid, (long)id, (long)id, (long)id, 0, 0, 0)) != 0) fail(s, STEP_SETUID, r);
        if ((r = sys6(SYS_setresuid, (long)id, (long)id, (long)id, 0, 0, 0)) != 0) fail(s, STEP_SETUID, r);
    }
    if ((r = sys6(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0)) != 0) fail(s, STEP_NO_NEW_PRIVS, r);
    if (s->as_limit) {
        ul rlim[2] = {s->as_limit, s->as_limit};
        if ((r = sys6(SYS_prlimit64, 0, RLIMIT_AS, (long)rlim, 0, 0, 0)) != 0) fail(s, STEP_RLIMIT, r);
    }
    if (s->nproc_limit) { /* counted per real uid: with a uid per instance, a per-instance pids cap */
        ul rlim[2] = {s->nproc_limit, s->nproc_limit};
        if ((r = sys6(SYS_prlimit64, 0, RLIMIT_NPROC, (long)rlim, 0, 0, 0)) != 0) fail(s, STEP_RLIMIT, r);
    }
    sys6(SYS_close_range, 3, ~0L, 0, 0, 0, 0); /* the lab's fds are CLOEXEC anyway */
    sys6(SYS_rt_sigprocmask, SIG_SETMASK, (long)&s->parent_mask, 0, 8, 0, 0);
    static char *const no_env[1] = {0};
    s->exec_ns = monotonic_ns();
    r = sys6(SYS_execve, (long)s->exe, (long)s->argv, (long)(s->envp ? s->envp : no_env), 0, 0, 0);
    fail(s, STEP_EXEC, r);
}

/* Spawn; returns the child's pid, or -1 with s->failed_step and s->error set (the failed
 * child is reaped here), or -errno of clone3 itself (s->failed_step 0). */
__attribute__((visibility("default"))) long el_spawn(struct el_spawn *s) {
    /* the child's stack: in this frame, which outlives the child's run (vfork) */
    char stack[32768] __attribute__((aligned(16)));
    ul all = SIG_BLOCK_ALL;
    s->failed_step = 0;
    s->error = 0;
    sys6(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, (long)&s->parent_mask, 8, 0, 0);
    ul args[11] = {CLONE_VM | CLONE_VFORK | (s->cgroup_fd >= 0 ? CLONE_INTO_CGROUP : 0), 0, 0, 0, SIGCHLD,
                   (ul)stack, sizeof stack, 0, 0, 0, s->cgroup_fd >= 0 ? (ul)s->cgroup_fd : 0};
    long pid = el_clone3(args, sizeof args, child, s);
    sys6(SYS_rt_sigprocmask, SIG_SETMASK, (long)&s->parent_mask, 0, 8, 0, 0);
    if (pid > 0 && s->failed_step) {
        int status;
        sys6(SYS_wait4, pid, (long)&status, 0, 0, 0, 0);
        return -1;
    }
    return pid;
}
