/* Linux syscall numbers and constants for the workloads that make raw syscalls through
 * el_syscall6 (the fault-injection workloads and probe).  Native builds only. */
#ifndef EL_LINUX_H
#define EL_LINUX_H

#ifndef __wasm__
#if defined(__x86_64__)
#define EL_SYS_CLOSE 3
#define EL_SYS_GETPID 39
#define EL_SYS_SOCKET 41
#define EL_SYS_CONNECT 42
#define EL_SYS_GETSOCKOPT 55
#define EL_SYS_CLONE 56
#define EL_SYS_KILL 62
#define EL_SYS_GETDENTS64 217
#define EL_SYS_OPENAT 257
#define EL_SYS_UNLINKAT 263
#define EL_SYS_PPOLL 271
#elif defined(__aarch64__)
#define EL_SYS_CLOSE 57
#define EL_SYS_GETPID 172
#define EL_SYS_SOCKET 198
#define EL_SYS_CONNECT 203
#define EL_SYS_GETSOCKOPT 209
#define EL_SYS_CLONE 220
#define EL_SYS_KILL 129
#define EL_SYS_GETDENTS64 61
#define EL_SYS_OPENAT 56
#define EL_SYS_UNLINKAT 35
#define EL_SYS_PPOLL 73
#endif

#define EL_AT_FDCWD (-100)
#define EL_O_RDONLY 0
#define EL_O_WRONLY 01
#define EL_O_CREAT 0100
#define EL_O_EXCL 0200
#define EL_O_DIRECTORY 0200000
#define EL_O_CLOEXEC 02000000
#define EL_SIGABRT 6
#define EL_SIGCHLD 17
#define EL_AF_INET 2
#define EL_SOCK_STREAM 1
#define EL_SOCK_NONBLOCK 04000
#define EL_SOL_SOCKET 1
#define EL_SO_ERROR 4
#define EL_POLLOUT 4
#define EL_EINPROGRESS 115
#define EL_ECONNREFUSED 111

/* fork(): clone with only SIGCHLD (aarch64 has no fork syscall). 0 in the child. */
static inline long el_fork(void) { return el_syscall6(EL_SYS_CLONE, EL_SIGCHLD, 0, 0, 0, 0, 0); }

/* Block forever: ppoll on no descriptors with no timeout (signals still end the process). */
static inline __attribute__((noreturn)) void el_block_forever(void) {
    for (;;) el_syscall6(EL_SYS_PPOLL, 0, 0, 0, 0, 0, 0);
}
#endif

#endif
