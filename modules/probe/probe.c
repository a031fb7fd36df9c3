/* probe: tries what a sandbox should decide about and says, one line each, what happened,
 * with the real errno.  The answer differs across runtimes by design (that is the point), so
 * probe is kept out of the byte-identical tests (hostile = true in its manifest).
 *
 *   root=             getuid() == 0 (the line gives uid and gid either way)
 *   read_file=        open /etc/passwd and read from it
 *   read_shadow=      open /etc/shadow and read from it
 *   read_env=         the process environment holds at least one variable
 *   parent_env=       open /proc/<ppid>/environ and read from it (the lab's secrets)
 *   parent_mem=       open /proc/<ppid>/mem and pread at the parent's first mapping
 *   list_root=        open "/" and read its entries (getdents64)
 *   docker_socket=    connect an AF_UNIX socket to /var/run/docker.sock (root on the host)
 *   network=          socket(AF_INET, SOCK_STREAM) and a non-blocking connect to the target
 *   write_tmp=, write_dev_shm=, write_dev_mqueue=, write_root=
 *                     create <dir>/edgelab-probe-<pid>, write it, unlink it
 *   file_left=        create edgelab-left-<token> in the first of /tmp, /dev/shm, /dev/mqueue, /
 *                     that takes it and leave it there: the lab looks for it on the host after
 *                     the instance is gone (edgelab/capabilities.py decides the verdict)
 *
 * Each line is "<key>=allowed (<detail>)" or "<key>=denied (<why>: ERRNO)".  Network rule:
 * allowed when the connect succeeds, is refused (ECONNREFUSED: some network stack answered)
 * or is still in progress after 500 ms (a route exists and the SYN left); denied when socket()
 * fails or connect fails with anything else (ENETUNREACH, EHOSTUNREACH, EACCES, EPERM, ...).
 * The request is empty or names the target as "connect=A.B.C.D:PORT" (default 192.0.2.1:9,
 * TEST-NET-1) and the file's token as "left=TOKEN", space-separated.  `edgelab probe` points
 * it at a port it listens on, on the host's own non-loopback address (a loopback target would
 * only reach a container's private lo).
 *
 * A Wasm module built here imports nothing, so it cannot even ask: every line is
 * "<key>=denied (no import)". */
#include "edgelab.h"
#ifndef __wasm__
#include "el_linux.h"
#if defined(__x86_64__)
#define P_SYS_PREAD64 17
#define P_SYS_GETUID 102
#define P_SYS_GETGID 104
#define P_SYS_GETPPID 110
#elif defined(__aarch64__)
#define P_SYS_PREAD64 67
#define P_SYS_GETUID 174
#define P_SYS_GETGID 176
#define P_SYS_GETPPID 173
#endif
#define P_AF_UNIX 1
#define EL_ENOENT_ 2
#endif

static const char *const KEYS[] = {"root",       "read_file", "read_shadow",   "read_env",      "parent_env",
                                    "parent_mem", "list_root", "docker_socket", "network",       "write_tmp",
                                    "write_dev_shm", "write_dev_mqueue", "write_root", "file_left"};

static void line(el_buf *out, const char *key, int allowed) {
    el_puts(out, key);
    el_puts(out, allowed ? "=allowed (" : "=denied (");
}

#ifdef __wasm__

int edgelab_handle_request(const uint8_t *req, size_t len, el_buf *out) {
    (void)req;
    (void)len;
    for (unsigned i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++) {
        line(out, KEYS[i], 0);
        el_puts(out, "no import)\n");
    }
    return EL_STATUS_OK;
}

#else

static long sys(long nr, long a, long b, long c, long d) { return el_syscall6(nr, a, b, c, d, 0, 0); }

static void put_errno(el_buf *out, long err) {
    static const struct {
        int code;
        const char *name;
    } names[] = {{1, "EPERM"},         {2, "ENOENT"},        {3, "ESRCH"},          {5, "EIO"},
                 {6, "ENXIO"},         {9, "EBADF"},         {11, "EAGAIN"},        {12, "ENOMEM"},
                 {13, "EACCES"},       {14, "EFAULT"},       {17, "EEXIST"},        {19, "ENODEV"},
                 {20, "ENOTDIR"},      {21, "EISDIR"},       {22, "EINVAL"},        {24, "EMFILE"},
                 {28, "ENOSPC"},       {30, "EROFS"},        {36, "ENAMETOOLONG"},  {38, "ENOSYS"},
                 {88, "ENOTSOCK"},     {95, "EOPNOTSUPP"},   {97, "EAFNOSUPPORT"},  {99, "EADDRNOTAVAIL"},
                 {101, "ENETUNREACH"}, {110, "ETIMEDOUT"},   {111, "ECONNREFUSED"}, {113, "EHOSTUNREACH"}};
    long code = -err;
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (names[i].code == code) {
            el_puts(out, names[i].name);
            return;
        }
    }
    el_puts(out, "errno ");
    el_put_i64(out, code);
}

static void denied(el_buf *out, const char *key, const char *what, long err) {
    line(out, key, 0);
    el_puts(out, what);
    el_puts(out, ": ");
    put_errno(out, err);
    el_puts(out, ")\n");
}

static void probe_read_env(el_buf *out) {
    uint64_t n = 0;
    for (char **e = el_environ; *e; e++) n++;
    line(out, "read_env", n > 0);
    if (!n) {
        el_puts(out, "the environment is empty)\n");
        return;
    }
    el_put_u64(out, n);
    el_puts(out, n == 1 ? " variable)\n" : " variables)\n");
}

static void probe_list_root(el_buf *out) {
    long fd = sys(EL_SYS_OPENAT, EL_AT_FDCWD, (long)"/", EL_O_RDONLY | EL_O_DIRECTORY | EL_O_CLOEXEC, 0);
    if (fd < 0) return denied(out, "list_root", "open /", fd);
    static uint8_t buf[4096];
    uint64_t entries = 0;
    for (;;) {
        long got = sys(EL_SYS_GETDENTS64, fd, (long)buf, sizeof buf, 0);
        if (got < 0) {
            sys(EL_SYS_CLOSE, fd, 0, 0, 0);
            return denied(out, "list_root", "getdents64 /", got);
        }
        if (got == 0) break;
        for (long off = 0; off < got;) {
            uint16_t reclen = (uint16_t)(buf[off + 16] | buf[off + 17] << 8);
            const char *name = (const char *)buf + off + 19;
            if (!(name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0)))) entries++;
            off += reclen ? reclen : got;
        }
    }
    sys(EL_SYS_CLOSE, fd, 0, 0, 0);
    line(out, "list_root", 1);
    el_put_u64(out, entries);
    el_puts(out, " entries)\n");
}

/* "connect=A.B.C.D:PORT" (surrounding whitespace allowed); 0 if malformed. */
static int parse_target(const uint8_t *req, size_t len, uint32_t *addr, uint32_t *port) {
    static const char prefix[] = "connect=";
    while (len && (req[len - 1] == '\n' || req[len - 1] == '\r' || req[len - 1] == ' ')) len--;
    while (len && (req[0] == ' ' || req[0] == '\n')) req++, len--;
    if (len < sizeof prefix - 1 || memcmp(req, prefix, sizeof prefix - 1) != 0) return 0;
    size_t i = sizeof prefix - 1;
    uint32_t a = 0;
    for (int part = 0; part < 5; part++) {
        uint32_t v = 0;
        size_t start = i;
        while (i < len && req[i] >= '0' && req[i] <= '9' && i - start < 5) v = v * 10 + (req[i++] - '0');
        if (i == start) return 0;
        if (part < 4) {
            if (v > 255 || i >= len || req[i] != (part < 3 ? '.' : ':')) return 0;
            a = a << 8 | v;
            i++;
        } else {
            if (v == 0 || v > 65535 || i != len) return 0;
            *port = v;
        }
    }
    *addr = a;
    return 1;
}

static void probe_network(el_buf *out, uint32_t addr, uint32_t port) {
    long fd = sys(EL_SYS_SOCKET, EL_AF_INET, EL_SOCK_STREAM | EL_SOCK_NONBLOCK, 0, 0);
    if (fd < 0) return denied(out, "network", "socket", fd);
    struct {
        uint16_t family;
        uint8_t port[2];
        uint8_t addr[4];
        uint8_t zero[8];
    } sa = {EL_AF_INET, {(uint8_t)(port >> 8), (uint8_t)port},
            {(uint8_t)(addr >> 24), (uint8_t)(addr >> 16), (uint8_t)(addr >> 8), (uint8_t)addr}, {0}};
    long r = sys(EL_SYS_CONNECT, fd, (long)&sa, sizeof sa, 0);
    if (r == -EL_EINPROGRESS) {
        struct {
            int fd;
            short events, revents;
        } pfd = {(int)fd, EL_POLLOUT, 0};
        struct {
            long sec, nsec;
        } wait = {0, 500000000L};
        long ready = sys(EL_SYS_PPOLL, (long)&pfd, 1, (long)&wait, 0);
        if (ready == 0) {
            sys(EL_SYS_CLOSE, fd, 0, 0, 0);
            line(out, "network", 1);
            el_puts(out, "connect in progress after 500 ms: a route exists)\n");
            return;
        }
        int soerr = 0;
        unsigned int optlen = sizeof soerr;
        el_syscall6(EL_SYS_GETSOCKOPT, fd, EL_SOL_SOCKET, EL_SO_ERROR, (long)&soerr, (long)&optlen, 0);
        r = -(long)soerr;
    }
    sys(EL_SYS_CLOSE, fd, 0, 0, 0);
    if (r == 0 || r == -EL_ECONNREFUSED) {
        line(out, "network", 1);
        el_puts(out, r == 0 ? "connected)\n" : "connect refused by a peer: ECONNREFUSED)\n");
        return;
    }
    denied(out, "network", "connect", r);
}

/* ---- who it is, what it can read of its parent, the Docker socket ---- */

/* path = prefix + decimal n + suffix, in buf (>= 64 bytes) */
static const char *path_with(char *buf, const char *prefix, uint64_t n, const char *suffix) {
    size_t at = 0;
    for (const char *p = prefix; *p; p++) buf[at++] = *p;
    char digits[20];
    size_t k = 0;
    do digits[k++] = (char)('0' + n % 10), n /= 10;
    while (n);
    while (k) buf[at++] = digits[--k];
    for (const char *p = suffix; *p; p++) buf[at++] = *p;
    buf[at] = 0;
    return buf;
}

static void probe_root(el_buf *out) {
    long uid = sys(P_SYS_GETUID, 0, 0, 0, 0), gid = sys(P_SYS_GETGID, 0, 0, 0, 0);
    line(out, "root", uid == 0);
    el_puts(out, "uid ");
    el_put_i64(out, uid);
    el_puts(out, ", gid ");
    el_put_i64(out, gid);
    el_puts(out, uid == 0 ? ": root)\n" : ")\n");
}

/* open + read `path`; "allowed (read N bytes of <what>)" or "denied (<step> <path>: ERRNO)" */
static void probe_read(el_buf *out, const char *key, const char *path, const char *what) {
    long fd = sys(EL_SYS_OPENAT, EL_AT_FDCWD, (long)path, EL_O_RDONLY | EL_O_CLOEXEC, 0);
    if (fd < 0) {
        line(out, key, 0);
        el_puts(out, "open ");
        el_puts(out, path);
        el_puts(out, ": ");
        put_errno(out, fd);
        el_puts(out, ")\n");
        return;
    }
    static char buf[4096];
    long got = el_sys_read((int)fd, buf, sizeof buf);
    sys(EL_SYS_CLOSE, fd, 0, 0, 0);
    if (got < 0) {
        line(out, key, 0);
        el_puts(out, "read ");
        el_puts(out, path);
        el_puts(out, ": ");
        put_errno(out, got);
        el_puts(out, ")\n");
        return;
    }
    line(out, key, 1);
    el_puts(out, "read ");
    el_put_i64(out, got);
    el_puts(out, " bytes of ");
    el_puts(out, what);
    el_puts(out, ")\n");
}

/* The parent's memory: the first mapping's start from /proc/<ppid>/maps, then pread of /proc/<ppid>/mem. */
static void probe_parent_mem(el_buf *out, long ppid) {
    char maps[64], mem[64];
    path_with(maps, "/proc/", (uint64_t)ppid, "/maps");
    path_with(mem, "/proc/", (uint64_t)ppid, "/mem");
    long fd = sys(EL_SYS_OPENAT, EL_AT_FDCWD, (long)mem, EL_O_RDONLY | EL_O_CLOEXEC, 0);
    if (fd < 0) return denied(out, "parent_mem", path_with(maps, "open /proc/", (uint64_t)ppid, "/mem"), fd);
    uint64_t addr = 0;
    long mfd = sys(EL_SYS_OPENAT, EL_AT_FDCWD, (long)maps, EL_O_RDONLY | EL_O_CLOEXEC, 0);
    if (mfd >= 0) {
        char text[64];
        long got = el_sys_read((int)mfd, text, sizeof text);
        sys(EL_SYS_CLOSE, mfd, 0, 0, 0);
        for (long i = 0; i < got && text[i] != '-'; i++) {
            char c = text[i];
            addr = addr << 4 | (uint64_t)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
        }
    }
    uint8_t bytes[16];
    long got = sys(P_SYS_PREAD64, fd, (long)bytes, sizeof bytes, (long)addr);
    sys(EL_SYS_CLOSE, fd, 0, 0, 0);
    if (got < 0) return denied(out, "parent_mem", path_with(maps, "pread /proc/", (uint64_t)ppid, "/mem"), got);
    line(out, "parent_mem", 1);
    el_puts(out, "read ");
    el_put_i64(out, got);
    el_puts(out, " bytes of the parent's memory)\n");
}

static void probe_docker_socket(el_buf *out) {
    long fd = sys(EL_SYS_SOCKET, P_AF_UNIX, EL_SOCK_STREAM, 0, 0);
    if (fd < 0) return denied(out, "docker_socket", "socket(AF_UNIX)", fd);
    struct {
        uint16_t family;
        char path[108];
    } sa = {P_AF_UNIX, "/var/run/docker.sock"};
    long r = sys(EL_SYS_CONNECT, fd, (long)&sa, sizeof sa, 0);
    sys(EL_SYS_CLOSE, fd, 0, 0, 0);
    if (r < 0) return denied(out, "docker_socket", "connect /var/run/docker.sock", r);
    line(out, "docker_socket", 1);
    el_puts(out, "connected to /var/run/docker.sock: root on the host)\n");
}

/* ---- writes: every writable-looking mount, and a file left for the lab to look for ---- */

static const struct {
    const char *key, *dir;
} WRITE_DIRS[] = {{"write_tmp", "/tmp"}, {"write_dev_shm", "/dev/shm"}, {"write_dev_mqueue", "/dev/mqueue"}, {"write_root", ""}};

/* create dir/name exclusively and write to it; 0 or -errno (`step` says which call failed) */
static long create_file(const char *dir, const char *name, char *path, const char **step) {
    size_t at = 0;
    for (const char *p = dir; *p; p++) path[at++] = *p;
    path[at++] = '/';
    for (const char *p = name; *p && at < 120; p++) path[at++] = *p;
    path[at] = 0;
    *step = "create";
    long fd = sys(EL_SYS_OPENAT, EL_AT_FDCWD, (long)path, EL_O_WRONLY | EL_O_CREAT | EL_O_EXCL | EL_O_CLOEXEC, 0600);
    if (fd < 0) return fd;
    long w = el_sys_write((int)fd, "probe\n", 6);
    sys(EL_SYS_CLOSE, fd, 0, 0, 0);
    *step = "write";
    return w < 0 ? w : 0;
}

static void probe_writes(el_buf *out, long pid) {
    char name[48], path[128];
    path_with(name, "edgelab-probe-", (uint64_t)pid, "");
    for (unsigned i = 0; i < sizeof WRITE_DIRS / sizeof WRITE_DIRS[0]; i++) {
        const char *step;
        long r = create_file(WRITE_DIRS[i].dir, name, path, &step);
        if (r == 0 || (r < 0 && step[0] == 'w')) sys(EL_SYS_UNLINKAT, EL_AT_FDCWD, (long)path, 0, 0);
        line(out, WRITE_DIRS[i].key, r == 0);
        el_puts(out, r == 0 ? "created, wrote and removed " : step);
        if (r != 0) el_putc(out, ' ');
        el_puts(out, path);
        if (r != 0) {
            el_puts(out, ": ");
            put_errno(out, r);
        }
        el_puts(out, ")\n");
    }
}

/* Leaves edgelab-left-<token> in the first directory that takes it; the lab looks for it on
 * the host after the instance is gone (a file the probe wrote is not proof that it stays). */
static void probe_file_left(el_buf *out, const char *token) {
    char name[64], path[128];
    size_t at = 0;
    for (const char *p = "edgelab-left-"; *p; p++) name[at++] = *p;
    for (const char *p = token; *p && at < sizeof name - 1; p++) name[at++] = *p;
    name[at] = 0;
    long last = -EL_ENOENT_;
    for (unsigned i = 0; i < sizeof WRITE_DIRS / sizeof WRITE_DIRS[0]; i++) {
        const char *step;
        long r = create_file(WRITE_DIRS[i].dir, name, path, &step);
        if (r == 0) {
            line(out, "file_left", 1);
            el_puts(out, "left ");
            el_puts(out, path);
            el_puts(out, ")\n");
            return;
        }
        if (step[0] == 'w') sys(EL_SYS_UNLINKAT, EL_AT_FDCWD, (long)path, 0, 0);
        last = r;
    }
    denied(out, "file_left", "create edgelab-left-<token> in /tmp, /dev/shm, /dev/mqueue and /", last);
}

/* The request: empty, or space-separated "connect=A.B.C.D:PORT" and "left=TOKEN" (TOKEN:
 * 1-32 of [0-9a-z]); anything else is rejected. */
static int parse_request(const uint8_t *req, size_t len, uint32_t *addr, uint32_t *port, char *token) {
    size_t i = 0;
    while (i < len) {
        while (i < len && (req[i] == ' ' || req[i] == '\n' || req[i] == '\r')) i++;
        size_t start = i;
        while (i < len && req[i] != ' ' && req[i] != '\n' && req[i] != '\r') i++;
        if (i == start) break;
        if (i - start > 5 && memcmp(req + start, "left=", 5) == 0) {
            size_t n = i - start - 5;
            if (n > 32) return 0;
            for (size_t k = 0; k < n; k++) {
                uint8_t c = req[start + 5 + k];
                if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z'))) return 0;
                token[k] = (char)c;
            }
            token[n] = 0;
        } else if (!parse_target(req + start, i - start, addr, port)) {
            return 0;
        }
    }
    return 1;
}

int edgelab_handle_request(const uint8_t *req, size_t len, el_buf *out) {
    uint32_t addr = 0xC0000201u; /* 192.0.2.1 */
    uint32_t port = 9;
    char token[33] = "0";
    if (!parse_request(req, len, &addr, &port, token))
        return el_reject(out, "request must be empty or connect=A.B.C.D:PORT and/or left=TOKEN");
    long pid = sys(EL_SYS_GETPID, 0, 0, 0, 0);
    long ppid = sys(P_SYS_GETPPID, 0, 0, 0, 0);
    char path[64];
    probe_root(out);
    probe_read(out, "read_file", "/etc/passwd", "/etc/passwd");
    probe_read(out, "read_shadow", "/etc/shadow", "/etc/shadow");
    probe_read_env(out);
    probe_read(out, "parent_env", path_with(path, "/proc/", (uint64_t)ppid, "/environ"), "the parent's environment");
    probe_parent_mem(out, ppid);
    probe_list_root(out);
    probe_docker_socket(out);
    probe_network(out, addr, port);
    probe_writes(out, pid);
    probe_file_left(out, token);
    (void)KEYS;
    return EL_STATUS_OK;
}

#endif
