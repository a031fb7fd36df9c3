/* crash (hostile): dies on purpose, as the request says.
 *
 *   "abort" -> native: kill(getpid(), SIGABRT), then a trap if that did not end it (as PID 1
 *              of a container it does not: see below); Wasm: __builtin_trap (unreachable)
 *   "segv"  -> native: a store to address 0 (SIGSEGV); Wasm: a store beyond linear memory
 *   "trap"  -> __builtin_trap: native SIGILL (x86_64 ud2) / SIGTRAP (aarch64 brk); Wasm trap
 * Anything else: status 1 "request must be abort, segv or trap". */
#include "edgelab.h"
#ifndef __wasm__
#include "el_linux.h"
#endif

#ifdef __wasm__
static volatile uintptr_t bad_address = 0xFFFFFFF0u; /* past any linear memory */
#else
static volatile uintptr_t bad_address = 0; /* NULL */
#endif

static int is(const uint8_t *req, size_t len, const char *word) {
    while (len && (req[len - 1] == '\n' || req[len - 1] == '\r' || req[len - 1] == ' ')) len--;
    size_t n = strlen(word);
    return len == n && memcmp(req, word, n) == 0;
}

int edgelab_handle_request(const uint8_t *req, size_t len, el_buf *out) {
    if (is(req, len, "abort")) {
#ifdef __wasm__
        __builtin_trap();
#else
        el_syscall6(EL_SYS_KILL, el_syscall6(EL_SYS_GETPID, 0, 0, 0, 0, 0, 0), EL_SIGABRT, 0, 0, 0, 0);
        /* Still here: we are PID 1 of a container's pid namespace, and the kernel drops the
         * signals a namespace's init sends itself unless it handles them.  Like libc's
         * abort(), fall back to a crash the kernel forces: a trap (SIGILL / SIGTRAP). */
        __builtin_trap();
#endif
    }
    if (is(req, len, "segv")) {
        *(volatile uint32_t *)bad_address = 1;
        el_puts(out, "a store to an invalid address did not fault");
        return EL_STATUS_INTERNAL;
    }
    if (is(req, len, "trap")) __builtin_trap();
    return el_reject(out, "request must be abort, segv or trap");
}
