/* membomb (hostile): allocates 1 MiB blocks and writes every byte of each, without end.
 *
 * Where allocation can fail (native under RLIMIT_AS, Wasm at its memory maximum) it frees
 * what it took and answers status 2 "out of memory after allocating N MiB"; where it cannot
 * (a container: brk succeeds, the cgroup's limit is met when the pages are touched) the
 * kernel's OOM killer ends it and the runtime reports the OOM kill. */
#include "edgelab.h"

#define CHUNK (1024u * 1024u)

typedef struct chunk {
    struct chunk *next;
} chunk;

int edgelab_handle_request(const uint8_t *req, size_t len, el_buf *out) {
    (void)req;
    (void)len;
    chunk *held = NULL;
    uint64_t mib = 0;
    for (;;) {
        chunk *c = malloc(CHUNK);
        if (!c) break;
        memset(c, 0xA5, CHUNK); /* touch every page: reserved memory is not used memory */
        c->next = held;
        held = c;
        mib++;
    }
    while (held) {
        chunk *next = held->next;
        free(held);
        held = next;
    }
    el_puts(out, "out of memory after allocating ");
    el_put_u64(out, mib);
    el_puts(out, " MiB");
    return EL_STATUS_INTERNAL;
}
