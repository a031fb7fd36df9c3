/* forkbomb (hostile): fork() in a loop on its first request.
 *
 * Each child blocks forever (it does not fork again: the native runtime has no pids limit
 * when the lab runs as root, so the parent also stops at FORKBOMB_MAX children and then
 * blocks, leaving the runtime to kill the whole process group at the timeout).  When fork
 * fails (a container's pids limit) the parent answers status 2 "fork limit reached after N
 * processes (EAGAIN)" and its children stay until the instance is stopped.
 * Wasm has no fork at all: there the request is rejected, status 1 "fork is not available in Wasm". */
#include "edgelab.h"
#ifndef __wasm__
#include "el_linux.h"
#endif

#ifndef FORKBOMB_MAX
#define FORKBOMB_MAX 200
#endif

int edgelab_handle_request(const uint8_t *req, size_t len, el_buf *out) {
    (void)req;
    (void)len;
#ifdef __wasm__
    return el_reject(out, "fork is not available in Wasm");
#else
    uint64_t children = 0;
    for (;;) {
        if (children >= FORKBOMB_MAX) el_block_forever();
        long pid = el_fork();
        if (pid == 0) el_block_forever();
        if (pid < 0) {
            el_puts(out, "fork limit reached after ");
            el_put_u64(out, children);
            el_puts(out, pid == -11 ? " processes (EAGAIN)" : " processes (fork failed)");
            return EL_STATUS_INTERNAL;
        }
        children++;
    }
#endif
}
