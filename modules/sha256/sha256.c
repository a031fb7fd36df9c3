/* sha256: lowercase hex SHA-256 of exactly the request bytes (binary-safe). */
#include "edgelab.h"
#include "el_sha256.h"

int edgelab_handle_request(const uint8_t *req, size_t len, el_buf *out) {
    el_sha256 s;
    uint8_t digest[32];
    el_sha256_init(&s);
    el_sha256_update(&s, req, len);
    el_sha256_final(&s, digest);
    el_put_hex(out, digest, sizeof digest);
    return EL_STATUS_OK;
}
