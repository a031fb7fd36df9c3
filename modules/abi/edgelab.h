/* edgelab workload ABI: the one function every workload implements, and the small
 * freestanding runtime it may use (memory, allocation, an output buffer, formatters).
 *
 * Workloads are built without a C library (-nostdlib -ffreestanding) for all three
 * artifacts, so the same code runs natively, in a FROM-scratch container and as a Wasm
 * module with no imports.  See modules/README.md for the wire format.
 */
#ifndef EDGELAB_H
#define EDGELAB_H

#include <stddef.h>
#include <stdint.h>

#ifndef EDGELAB_MAX_REQUEST_BYTES
#error "EDGELAB_MAX_REQUEST_BYTES must be defined (the build passes max_request_bytes)"
#endif

enum {
    EL_STATUS_OK = 0,       /* body is the answer */
    EL_STATUS_REJECTED = 1, /* body is one line saying why the request is invalid */
    EL_STATUS_INTERNAL = 2, /* body is one line naming the internal failure */
};

/* A growable byte buffer.  `head` bytes at the front are reserved for the frame header
 * (5 natively, 1 in Wasm); the body is data[head .. len). */
typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t head;
    int oom; /* set when an append could not grow the buffer; the answer becomes status 2 */
} el_buf;

/* The workload: answer `req` (len bytes, binary-safe, may be empty) by appending the body
 * to `out`, and return a status.  Return el_reject(out, "...") for an invalid request. */
int edgelab_handle_request(const uint8_t *req, size_t len, el_buf *out);

/* Output helpers (never fail loudly: on allocation failure they set out->oom). */
void el_put(el_buf *out, const void *bytes, size_t n);
void el_putc(el_buf *out, char c);
void el_puts(el_buf *out, const char *s);
void el_put_u64(el_buf *out, uint64_t v);
void el_put_i64(el_buf *out, int64_t v);
void el_put_hex(el_buf *out, const uint8_t *bytes, size_t n);
/* Fixed-point decimal: v / 10^decimals, e.g. el_put_fixed(out, -1500, 3) -> "-1.500". */
void el_put_fixed(el_buf *out, int64_t milli, unsigned decimals);
/* Drop any body written so far and write `reason` instead; returns EL_STATUS_REJECTED. */
int el_reject(el_buf *out, const char *reason);
/* Make room for n more bytes; returns a pointer to write them (then add n to len) or NULL. */
uint8_t *el_reserve(el_buf *out, size_t n);

/* Freestanding libc subset (implemented in edgelab_lib.c). */
void *malloc(size_t n);
void *realloc(void *p, size_t n);
void free(void *p);
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

#ifndef __wasm__
/* Raw Linux syscalls for the native entry point; negative returns are -errno. */
long el_sys_read(int fd, void *buf, size_t n);
long el_sys_write(int fd, const void *buf, size_t n);
__attribute__((noreturn)) void el_sys_exit(int code);
/* Any Linux syscall with up to six arguments (numbers in el_linux.h); -errno on failure.
 * Only the fault-injection and probe workloads use it. */
long el_syscall6(long nr, long a, long b, long c, long d, long e, long f);
/* The process's environment as the kernel passed it (NULL-terminated; never NULL). */
extern char **el_environ;
#endif

/* Used by edgelab_main.c. */
void el_buf_reset(el_buf *out, size_t head);
void el_buf_trim(el_buf *out, size_t keep_cap);

#endif
