/* hello: the smallest useful handler, so its startup is the floor for every runtime. */
#include "edgelab.h"

int edgelab_handle_request(const uint8_t *req, size_t len, el_buf *out) {
    el_puts(out, "hello, ");
    if (len)
        el_put(out, req, len);
    else
        el_puts(out, "world");
    return EL_STATUS_OK;
}
