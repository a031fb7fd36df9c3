/* escape (hostile): tries to outlive its instance, the way a daemon detaches.
 *
 * On its first request it forks; the child calls setsid (a new session and process group, so
 * a kill of the instance's process group misses it), forks again and exits; the grandchild,
 * reparented away from the workload, sleeps in a loop forever.  The workload then answers
 * status 0 "escaped: grandchild <pid>" (the pid as the workload sees it: in a container it is
 * the pid namespace's).  Everything the instance started must die with it: a cgroup per
 * instance (subprocess where the lab can create one, containers always), or the subreaper and
 * a sweep.  The grandchild keeps the workload's name (comm "escape-<arch>", argv[0] "escape"),
 * which is how tests find one left behind.
 *
 * Wasm cannot fork: there escape just answers status 0 "no fork in Wasm: nothing escaped". */
#include "edgelab.h"
#ifndef __wasm__
#include "el_linux.h"
#if defined(__x86_64__)
#define EL_SYS_PIPE2 293
#define EL_SYS_SETSID 112
#define EL_SYS_NANOSLEEP 35
#define EL_SYS_WAIT4 61
#elif defined(__aarch64__)
#define EL_SYS_PIPE2 59
#define EL_SYS_SETSID 157
#define EL_SYS_NANOSLEEP 101
#define EL_SYS_WAIT4 260
#endif
#endif

int edgelab_handle_request(const uint8_t *req, size_t len, el_buf *out) {
    (void)req;
    (void)len;
#ifdef __wasm__
    el_puts(out, "no fork in Wasm: nothing escaped");
    return EL_STATUS_OK;
#else
    int pipefd[2];
    if (el_syscall6(EL_SYS_PIPE2, (long)pipefd, 0, 0, 0, 0, 0) < 0) {
        el_puts(out, "pipe failed");
        return EL_STATUS_INTERNAL;
    }
    long child = el_fork();
    if (child < 0) {
        el_puts(out, "fork failed");
        return EL_STATUS_INTERNAL;
    }
    if (child == 0) {
        el_syscall6(EL_SYS_SETSID, 0, 0, 0, 0, 0, 0);
        long grandchild = el_fork();
        if (grandchild == 0) {
            el_syscall6(EL_SYS_CLOSE, pipefd[0], 0, 0, 0, 0, 0);
            el_syscall6(EL_SYS_CLOSE, pipefd[1], 0, 0, 0, 0, 0);
            el_syscall6(EL_SYS_CLOSE, 0, 0, 0, 0, 0, 0); /* hold none of the instance's pipes */
            el_syscall6(EL_SYS_CLOSE, 1, 0, 0, 0, 0, 0);
            el_syscall6(EL_SYS_CLOSE, 2, 0, 0, 0, 0, 0);
            for (;;) {
                struct {
                    long sec, nsec;
                } second = {1, 0};
                el_syscall6(EL_SYS_NANOSLEEP, (long)&second, 0, 0, 0, 0, 0);
            }
        }
        el_sys_write(pipefd[1], &grandchild, sizeof grandchild);
        el_sys_exit(0);
    }
    el_syscall6(EL_SYS_CLOSE, pipefd[1], 0, 0, 0, 0, 0);
    long grandchild = -1;
    long got = el_sys_read(pipefd[0], &grandchild, sizeof grandchild);
    el_syscall6(EL_SYS_CLOSE, pipefd[0], 0, 0, 0, 0, 0);
    el_syscall6(EL_SYS_WAIT4, child, 0, 0, 0, 0, 0); /* the middle process is done: reap it */
    if (got != (long)sizeof grandchild || grandchild <= 0) {
        el_puts(out, "second fork failed");
        return EL_STATUS_INTERNAL;
    }
    el_puts(out, "escaped: grandchild ");
    el_put_i64(out, grandchild);
    return EL_STATUS_OK;
#endif
}
