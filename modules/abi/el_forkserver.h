/* Fork-server mode of the native entry point (built with -DEDGELAB_FORKSERVER only: the
 * subprocess:forkserver rung).  Included by edgelab_main.c; every other build ignores it.
 *
 * A zygote: the process is started once, ahead and untimed (chrooted into the workload's
 * jail, as root where the lab is root), with fd 0 a SOCK_SEQPACKET unix socket to the lab.
 * It never runs the handler itself.  Per ask it forks one instance, which then serves frames
 * on its own pipes exactly as a spawned process does, with no exec and no loader:
 *
 *   ask    (lab -> server): struct el_fs_ask + SCM_RIGHTS [stdin, stdout, cgroup dir (opt.)]
 *   report (instance or server -> lab): struct el_fs_report, one per ask, echoing its seq
 *
 * The instance is cloned with CLONE_PARENT (the lab's own child: the lab waits for it and
 * reads its exit status as for any instance) and, given a cgroup directory, CLONE_INTO_CGROUP
 * (born in its own cgroup; stop kills that cgroup whole).  Before it reads its request it
 * takes a process group of its own, drops to uid/gid uid_base + its pid with no groups (when
 * uid_base is set), sets no_new_privs and RLIMIT_AS: what the in-process spawn does, minus the
 * chroot, which it inherits.  A failing step is reported (step code as the launcher's exit
 * codes, errno) and ends the instance with exit code 127.  EOF on the socket ends the server. */
#ifndef EL_FORKSERVER_H
#define EL_FORKSERVER_H

#if defined(__x86_64__)
enum { EL_FS_RECVMSG = 47, EL_FS_SENDMSG = 46, EL_FS_DUP3 = 292, EL_FS_SETPGID = 109,
       EL_FS_GETPID = 39, EL_FS_SETGROUPS = 116, EL_FS_SETRESUID = 117, EL_FS_SETRESGID = 119,
       EL_FS_PRCTL = 157, EL_FS_PRLIMIT64 = 302, EL_FS_CLOSE = 3, EL_FS_CLOCK_GETTIME = 228 };
#elif defined(__aarch64__)
enum { EL_FS_RECVMSG = 212, EL_FS_SENDMSG = 211, EL_FS_DUP3 = 24, EL_FS_SETPGID = 154,
       EL_FS_GETPID = 172, EL_FS_SETGROUPS = 159, EL_FS_SETRESUID = 147, EL_FS_SETRESGID = 149,
       EL_FS_PRCTL = 167, EL_FS_PRLIMIT64 = 261, EL_FS_CLOSE = 57, EL_FS_CLOCK_GETTIME = 113 };
#endif
enum { EL_FS_CLONE3 = 435, EL_FS_CLOSE_RANGE = 436 };
/* Step codes, as the launcher's exit codes (LAUNCHER_EXITS in edgelab/runtimes/isolation.py). */
enum { EL_FS_STEP_CGROUP = 121, EL_FS_STEP_SETUID = 123, EL_FS_STEP_NO_NEW_PRIVS = 124,
       EL_FS_STEP_RLIMIT = 126, EL_FS_STEP_FDS = 127, EL_FS_STEP_ASK = 128 };
enum { EL_FS_EXIT_CONTROL = 5 };

/* Mirrored by edgelab/runtimes/subprocess/forkserver.py (ASK, REPORT). */
struct el_fs_ask {
    uint64_t seq;
    uint64_t uid_base; /* 0: keep the server's uid */
    uint64_t as_limit; /* RLIMIT_AS in bytes, 0: keep */
};
struct el_fs_report {
    uint64_t seq;
    int32_t pid;   /* the instance's pid, 0 when none was made */
    int32_t step;  /* 0, or the EL_FS_STEP_* that failed */
    int32_t error; /* its errno */
    int32_t pad;
    uint64_t child_ns; /* CLOCK_MONOTONIC: the instance's first instruction after the fork */
    uint64_t ready_ns; /* CLOCK_MONOTONIC: its steps done, about to read its request */
};

struct el_fs_iovec {
    void *base;
    size_t len;
};
struct el_fs_msghdr {
    void *name;
    uint32_t namelen;
    struct el_fs_iovec *iov;
    size_t iovlen;
    void *control;
    size_t controllen;
    int flags;
};
#define EL_FS_CMSG_HDR 16u /* struct cmsghdr on LP64: size_t len, int level, int type */
#define EL_FS_MAX_FDS 3

static uint64_t el_fs_now(void) {
    long ts[2] = {0, 0};
    el_syscall6(EL_FS_CLOCK_GETTIME, 1 /* CLOCK_MONOTONIC */, (long)ts, 0, 0, 0, 0);
    return (uint64_t)ts[0] * 1000000000u + (uint64_t)ts[1];
}

static void el_fs_send(struct el_fs_report *report) {
    struct el_fs_iovec iov = {report, sizeof *report};
    struct el_fs_msghdr msg = {0, 0, &iov, 1, 0, 0, 0};
    el_syscall6(EL_FS_SENDMSG, 0, (long)&msg, 0x4000 /* MSG_NOSIGNAL */, 0, 0, 0);
}

__attribute__((noreturn)) static void el_fs_fail(struct el_fs_report *report, int step, long ret) {
    report->step = step;
    report->error = (int32_t)-ret;
    el_fs_send(report);
    el_sys_exit(127);
}

/* In the new instance: its steps, the report, then its pipes on fds 0 and 1. */
static void el_fs_instance(const struct el_fs_ask *ask, int in, int out_fd) {
    struct el_fs_report report = {ask->seq, 0, 0, 0, 0, el_fs_now(), 0};
    long r;
    long pid = el_syscall6(EL_FS_GETPID, 0, 0, 0, 0, 0, 0);
    report.pid = (int32_t)pid;
    if ((r = el_syscall6(EL_FS_SETPGID, 0, 0, 0, 0, 0, 0)) != 0) el_fs_fail(&report, EL_FS_STEP_FDS, r);
    if (ask->uid_base) {
        long id = (long)(ask->uid_base + (uint64_t)pid);
        if ((r = el_syscall6(EL_FS_SETGROUPS, 0, 0, 0, 0, 0, 0)) != 0) el_fs_fail(&report, EL_FS_STEP_SETUID, r);
        if ((r = el_syscall6(EL_FS_SETRESGID, id, id, id, 0, 0, 0)) != 0) el_fs_fail(&report, EL_FS_STEP_SETUID, r);
        if ((r = el_syscall6(EL_FS_SETRESUID, id, id, id, 0, 0, 0)) != 0) el_fs_fail(&report, EL_FS_STEP_SETUID, r);
    }
    if ((r = el_syscall6(EL_FS_PRCTL, 38 /* PR_SET_NO_NEW_PRIVS */, 1, 0, 0, 0, 0)) != 0)
        el_fs_fail(&report, EL_FS_STEP_NO_NEW_PRIVS, r);
    if (ask->as_limit) {
        uint64_t rlim[2] = {ask->as_limit, ask->as_limit};
        if ((r = el_syscall6(EL_FS_PRLIMIT64, 0, 9 /* RLIMIT_AS */, (long)rlim, 0, 0, 0)) != 0)
            el_fs_fail(&report, EL_FS_STEP_RLIMIT, r);
    }
    report.ready_ns = el_fs_now();
    el_fs_send(&report); /* fd 0 is still the lab's socket */
    if (el_syscall6(EL_FS_DUP3, in, 0, 0, 0, 0, 0) < 0 || el_syscall6(EL_FS_DUP3, out_fd, 1, 0, 0, 0, 0) < 0)
        el_sys_exit(127);
    el_syscall6(EL_FS_CLOSE_RANGE, 3, ~0L, 0, 0, 0, 0);
}

/* The server loop; returns only in a new instance. */
static void el_forkserver(void) {
    for (;;) {
        struct el_fs_ask ask;
        uint64_t control[(EL_FS_CMSG_HDR + 4 * EL_FS_MAX_FDS + 7) / 8];
        struct el_fs_iovec iov = {&ask, sizeof ask};
        struct el_fs_msghdr msg = {0, 0, &iov, 1, control, sizeof control, 0};
        long n = el_syscall6(EL_FS_RECVMSG, 0, (long)&msg, 0x40000000 /* MSG_CMSG_CLOEXEC */, 0, 0, 0);
        if (n == -4) continue; /* EINTR */
        if (n == 0) el_sys_exit(0); /* the lab closed its end: done */
        if (n < 0) el_sys_exit(EL_FS_EXIT_CONTROL);
        int fds[EL_FS_MAX_FDS] = {-1, -1, -1};
        int nfds = 0;
        if (msg.controllen >= EL_FS_CMSG_HDR) {
            const uint8_t *c = (const uint8_t *)control;
            size_t len = *(const size_t *)c;
            int level = *(const int *)(c + 8), type = *(const int *)(c + 12);
            if (level == 1 /* SOL_SOCKET */ && type == 1 /* SCM_RIGHTS */ && len > EL_FS_CMSG_HDR) {
                nfds = (int)((len - EL_FS_CMSG_HDR) / 4);
                if (nfds > EL_FS_MAX_FDS) nfds = EL_FS_MAX_FDS;
                for (int i = 0; i < nfds; i++) fds[i] = *(const int *)(c + EL_FS_CMSG_HDR + 4 * i);
            }
        }
        long pid = -22; /* EINVAL: a malformed ask (an ask without pipes proves the server serves) */
        int well_formed = n == (long)sizeof ask && nfds >= 2 && !(msg.flags & 0x8 /* MSG_CTRUNC */);
        if (well_formed) {
            int cgroup = nfds > 2 ? fds[2] : -1;
            /* struct clone_args up to .cgroup (88 bytes); exit_signal 0, as CLONE_PARENT wants
             * (the instance inherits the server's, SIGCHLD to the lab) */
            uint64_t args[11] = {0x00008000u /* CLONE_PARENT */ | (cgroup >= 0 ? 0x200000000u /* CLONE_INTO_CGROUP */ : 0),
                                 0, 0, 0, 0, 0, 0, 0, 0, 0, cgroup >= 0 ? (uint64_t)cgroup : 0};
            pid = el_syscall6(EL_FS_CLONE3, (long)args, sizeof args, 0, 0, 0, 0);
            if (pid == 0) {
                el_fs_instance(&ask, fds[0], fds[1]);
                return;
            }
        }
        for (int i = 0; i < nfds; i++) el_syscall6(EL_FS_CLOSE, fds[i], 0, 0, 0, 0, 0);
        if (pid < 0) {
            struct el_fs_report report = {n == (long)sizeof ask ? ask.seq : 0, 0,
                                          well_formed ? EL_FS_STEP_CGROUP : EL_FS_STEP_ASK, (int32_t)-pid, 0, 0, 0};
            el_fs_send(&report);
        }
    }
}

#endif
