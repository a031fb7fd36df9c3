/* probe: tries five things a sandbox should decide about and says, one line each, what
 * happened.  The answer differs across runtimes by design (that is the point), so probe is
 * kept out of the byte-identical tests (hostile = true in its manifest).
 *
 *   read_file=  open /etc/passwd and read from it
 *   read_env=   the process environment holds at least one variable
 *   list_root=  open "/" and read its entries (getdents64)
 *   network=    socket(AF_INET, SOCK_STREAM) and a non-blocking connect to the target
 *   write_file= create /tmp/edgelab-probe-<pid>, write it, unlink it
 *
 * Each line is "<key>=allowed (<detail>)" or "<key>=denied (<why>)".  Network rule: allowed
 * when the connect succeeds, is refused (ECONNREFUSED: some network stack answered) or is
 * still in progress after 500 ms (a route exists and the SYN left); denied when socket()
 * fails or connect fails with anything else (ENETUNREACH, EHOSTUNREACH, EACCES, EPERM, ...).
 * The request may name the target as "connect=A.B.C.D:PORT"; the default is 192.0.2.1:9
 * (TEST-NET-1).  The lab's `edgelab probe` points it at a port it listens on, on the host's
 * own non-loopback address (a loopback target would only reach a container's private lo).
 *
 * A Wasm module built here imports nothing, so it cannot even ask: every line is
 * "<key>=denied (no import)". */
#include "edgelab.h"
#ifndef __wasm__
#include "el_linux.h"
#endif

static const char *const KEYS[] = {"read_file", "read_env", "list_root", "network", "write_file"};

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
    } names[] = {{1, "EPERM"},         {2, "ENOENT"},        {11, "EAGAIN"},     {13, "EACCES"},
                 {20, "ENOTDIR"},      {24, "EMFILE"},       {30, "EROFS"},      {38, "ENOSYS"},
                 {97, "EAFNOSUPPORT"}, {101, "ENETUNREACH"}, {110, "ETIMEDOUT"}, {111, "ECONNREFUSED"},
                 {113, "EHOSTUNREACH"}};
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

static void probe_read_file(el_buf *out) {
    long fd = sys(EL_SYS_OPENAT, EL_AT_FDCWD, (long)"/etc/passwd", EL_O_RDONLY | EL_O_CLOEXEC, 0);
    if (fd < 0) return denied(out, "read_file", "open /etc/passwd", fd);
    char buf[512];
    long got = el_sys_read((int)fd, buf, sizeof buf);
    sys(EL_SYS_CLOSE, fd, 0, 0, 0);
    if (got < 0) return denied(out, "read_file", "read /etc/passwd", got);
    line(out, "read_file", 1);
    el_puts(out, "read ");
    el_put_i64(out, got);
    el_puts(out, " bytes of /etc/passwd)\n");
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

static void probe_write_file(el_buf *out) {
    char path[48] = "/tmp/edgelab-probe-";
    size_t at = strlen(path);
    uint64_t pid = (uint64_t)sys(EL_SYS_GETPID, 0, 0, 0, 0);
    char digits[20];
    size_t n = 0;
    do digits[n++] = (char)('0' + pid % 10), pid /= 10;
    while (pid);
    while (n) path[at++] = digits[--n];
    path[at] = 0;
    long fd = sys(EL_SYS_OPENAT, EL_AT_FDCWD, (long)path, EL_O_WRONLY | EL_O_CREAT | EL_O_EXCL | EL_O_CLOEXEC, 0600);
    if (fd < 0) return denied(out, "write_file", "create /tmp/edgelab-probe-<pid>", fd);
    long w = el_sys_write((int)fd, "probe\n", 6);
    sys(EL_SYS_CLOSE, fd, 0, 0, 0);
    sys(EL_SYS_UNLINKAT, EL_AT_FDCWD, (long)path, 0, 0);
    if (w < 0) return denied(out, "write_file", "write /tmp/edgelab-probe-<pid>", w);
    line(out, "write_file", 1);
    el_puts(out, "created, wrote and removed ");
    el_puts(out, path);
    el_puts(out, ")\n");
}

int edgelab_handle_request(const uint8_t *req, size_t len, el_buf *out) {
    uint32_t addr = 0xC0000201u; /* 192.0.2.1 */
    uint32_t port = 9;
    if (len && !parse_target(req, len, &addr, &port))
        return el_reject(out, "request must be empty or connect=A.B.C.D:PORT");
    probe_read_file(out);
    probe_read_env(out);
    probe_list_root(out);
    probe_network(out, addr, port);
    probe_write_file(out);
    (void)KEYS;
    return EL_STATUS_OK;
}

#endif
