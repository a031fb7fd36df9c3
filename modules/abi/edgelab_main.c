/* Entry points shared by every workload: the Wasm reactor exports, or the native
 * frame loop on stdin/stdout.  See modules/README.md for the ABI. */
#include "edgelab.h"

#define KEEP_BYTES (64u * 1024u) /* buffers above this are released between requests */

static el_buf out;

static void put_reason_limit(el_buf *b, size_t len) {
    el_puts(b, "request of ");
    el_put_u64(b, len);
    el_puts(b, " bytes exceeds this workload's limit of ");
    el_put_u64(b, (uint64_t)EDGELAB_MAX_REQUEST_BYTES);
    el_puts(b, " bytes");
}

/* Fill `out` with one answer (status at data[head-1], body after head); returns status. */
static int answer(const uint8_t *req, size_t len, size_t head) {
    el_buf_reset(&out, head);
    int status;
    if (len > (size_t)EDGELAB_MAX_REQUEST_BYTES) {
        put_reason_limit(&out, len);
        status = EL_STATUS_REJECTED;
    } else if (!req && len) {
        el_puts(&out, "out of memory for the request");
        status = EL_STATUS_INTERNAL;
    } else {
        status = edgelab_handle_request(req, len, &out);
        if (status < EL_STATUS_OK || status > EL_STATUS_INTERNAL) {
            el_buf_reset(&out, head);
            el_puts(&out, "workload returned an unknown status");
            status = EL_STATUS_INTERNAL;
        }
    }
    if (out.oom) {
        el_buf_trim(&out, 0);
        el_buf_reset(&out, head);
        el_puts(&out, "out of memory");
        status = EL_STATUS_INTERNAL;
    }
    return status;
}

#ifdef __wasm__

static uint8_t *req_buf;

extern void __wasm_call_ctors(void);

__attribute__((export_name("_initialize"))) void _initialize(void) {
    static int done;
    if (!done) {
        done = 1;
        __wasm_call_ctors();
    }
}

/* A buffer for the next request, or 0 if it cannot be had (for a request larger than the
 * workload's limit, too: the host then calls edgelab_handle(0, len) for the rejection). */
__attribute__((export_name("edgelab_alloc"))) int32_t edgelab_alloc(int32_t len) {
    el_buf_trim(&out, KEEP_BYTES);
    free(req_buf);
    req_buf = NULL;
    if (len < 0 || (uint32_t)len > (uint32_t)EDGELAB_MAX_REQUEST_BYTES) return 0;
    /* the small answer buffer first, so a large request sits at the heap top and the next
     * large one can reuse and extend the same space */
    el_buf_reset(&out, 1);
    req_buf = malloc(len ? (size_t)len : 1);
    return (int32_t)(uintptr_t)req_buf;
}

__attribute__((export_name("edgelab_handle"))) int64_t edgelab_handle(int32_t ptr, int32_t len) {
    size_t n = (size_t)(uint32_t)len;
    int status = answer((const uint8_t *)(uintptr_t)(uint32_t)ptr, n, 1);
    if (n > KEEP_BYTES) {
        free(req_buf);
        req_buf = NULL;
    }
    if (!out.data || out.len < 1) return 0;
    out.data[0] = (uint8_t)status;
    return (int64_t)(((uint64_t)(uintptr_t)out.data << 32) | (uint64_t)(uint32_t)out.len);
}

#else /* native: frames on stdin/stdout */

enum { EXIT_TRUNCATED = 3, EXIT_WRITE_FAILED = 4 };

/* Read up to n bytes, retrying short reads and EINTR; returns bytes read (< n only at EOF). */
static size_t read_full(uint8_t *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        long r = el_sys_read(0, buf + got, n - got);
        if (r == -4) continue; /* EINTR */
        if (r <= 0) break;
        got += (size_t)r;
    }
    return got;
}

static void write_full(const uint8_t *buf, size_t n) {
    while (n) {
        long r = el_sys_write(1, buf, n);
        if (r == -4) continue;
        if (r <= 0) el_sys_exit(EXIT_WRITE_FAILED);
        buf += r;
        n -= (size_t)r;
    }
}

static int drain(size_t n) {
    uint8_t scratch[4096];
    while (n) {
        size_t chunk = n < sizeof scratch ? n : sizeof scratch;
        if (read_full(scratch, chunk) != chunk) return 0;
        n -= chunk;
    }
    return 1;
}

static void respond(int status) {
    static uint8_t fallback[5] = {0, 0, 0, 0, EL_STATUS_INTERNAL};
    if (!out.data || out.len < 5) {
        write_full(fallback, sizeof fallback);
        return;
    }
    uint32_t body = (uint32_t)(out.len - 5);
    out.data[0] = (uint8_t)body;
    out.data[1] = (uint8_t)(body >> 8);
    out.data[2] = (uint8_t)(body >> 16);
    out.data[3] = (uint8_t)(body >> 24);
    out.data[4] = (uint8_t)status;
    write_full(out.data, out.len);
}

static char *no_environ[1];
char **el_environ = no_environ;

/* Answer request frames on stdin until it ends. */
__attribute__((noreturn)) static void serve(void) {
    uint8_t *req = NULL;
    for (;;) {
        uint8_t hdr[4];
        size_t got = read_full(hdr, 4);
        if (got == 0) el_sys_exit(0);
        if (got < 4) el_sys_exit(EXIT_TRUNCATED);
        size_t n = (size_t)hdr[0] | (size_t)hdr[1] << 8 | (size_t)hdr[2] << 16 | (size_t)hdr[3] << 24;
        if (n > (size_t)EDGELAB_MAX_REQUEST_BYTES) {
            if (!drain(n)) el_sys_exit(EXIT_TRUNCATED);
            respond(answer(NULL, n, 5));
            continue;
        }
        req = malloc(n ? n : 1);
        if (!req) {
            if (!drain(n)) el_sys_exit(EXIT_TRUNCATED);
        } else if (read_full(req, n) != n) {
            el_sys_exit(EXIT_TRUNCATED);
        }
        respond(answer(req, n, 5));
        free(req);
        req = NULL;
        el_buf_trim(&out, KEEP_BYTES);
    }
}

#ifdef EDGELAB_FORKSERVER
#include "el_forkserver.h"
#endif

#ifdef EDGELAB_DYNAMIC
/* Linked against the system C library: its start files and dynamic loader run first. */
int main(int argc, char **argv, char **envp) {
    (void)argc;
    (void)argv;
    el_environ = envp;
    serve();
}
#else
/* `sp` is the stack pointer the kernel entered with: argc, argv[argc], NULL, envp..., NULL. */
__attribute__((noreturn, used)) void el_start_c(long *sp) {
    if (sp) el_environ = (char **)(sp + 1 + sp[0] + 1);
#ifdef EDGELAB_FORKSERVER
    el_forkserver(); /* returns only in a forked instance, its request pipes on fds 0 and 1 */
#endif
    serve();
}

/* The kernel enters here with argc/argv/envp on the stack; pass that stack pointer as the
 * first argument, align the stack and call into C. */
#if defined(__x86_64__)
__asm__(".text\n.global _start\n.type _start,@function\n_start:\n"
        "  xor %rbp, %rbp\n  mov %rsp, %rdi\n  and $-16, %rsp\n  call el_start_c\n  hlt\n");
#elif defined(__aarch64__)
__asm__(".text\n.global _start\n.type _start,%function\n_start:\n"
        "  mov x29, #0\n  mov x30, #0\n  mov x0, sp\n  and x1, x0, #-16\n  mov sp, x1\n  bl el_start_c\n  brk #0\n");
#endif
#endif /* EDGELAB_DYNAMIC */

#endif
