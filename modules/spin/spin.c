/* spin (hostile): never answers; loops forever on the CPU from its first request.
 * Every runtime must end it at the workload's timeout: natively and in a container the
 * process (group) is killed, in Wasm the epoch deadline interrupts the guest. */
#include "edgelab.h"

int edgelab_handle_request(const uint8_t *req, size_t len, el_buf *out) {
    (void)req;
    (void)len;
    (void)out;
    volatile uint64_t spins = 0;
    for (;;) spins++;
}
