/* mute (hostile): reads its first request and never answers.  Natively it blocks in the
 * kernel (ppoll on nothing, no CPU used); a Wasm guest cannot block without imports, so it
 * busy-waits instead.  Either way the lab must give up at the timeout. */
#include "edgelab.h"
#ifndef __wasm__
#include "el_linux.h"
#endif

int edgelab_handle_request(const uint8_t *req, size_t len, el_buf *out) {
    (void)req;
    (void)len;
    (void)out;
#ifdef __wasm__
    volatile uint64_t waits = 0;
    for (;;) waits++;
#else
    el_block_forever();
#endif
}
