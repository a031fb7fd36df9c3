/* flood (hostile): announces a huge answer and streams it.
 *
 * Natively (subprocess and container) it writes a response header announcing N bytes itself,
 * then streams N bytes of 'x' to stdout in 64 KiB writes and exits when done (or when the
 * reader goes away).  N is the request as a decimal number (0..4294967295); any other request
 * (the default "flood") means 4294967295: a 4 GiB answer.  A lab that buffered whatever it is
 * sent would hold gigabytes; every runtime must stop reading at the workload's
 * max_response_bytes, kill the instance and fail the launch with "response exceeded 16 MiB".
 *
 * Wasm cannot stream: the answer is built in linear memory, whose maximum comes from
 * max_request_bytes (16 MiB here, so ~36 MiB of memory).  N bytes that fit are answered
 * (status 0: a request of 20000000 gives the Wasm runtime an answer past its 16 MiB cap to
 * refuse); the default 4 GiB does not fit: status 2 "out of memory". */
#include "edgelab.h"

#define FLOOD_DEFAULT_BYTES 4294967295ull
#define FLOOD_CHUNK 65536u

static uint64_t requested_bytes(const uint8_t *req, size_t len) {
    uint64_t n = 0;
    if (!len || len > 10) return FLOOD_DEFAULT_BYTES;
    for (size_t i = 0; i < len; i++) {
        if (req[i] < '0' || req[i] > '9') return FLOOD_DEFAULT_BYTES;
        n = n * 10 + (uint64_t)(req[i] - '0');
    }
    return n > FLOOD_DEFAULT_BYTES ? FLOOD_DEFAULT_BYTES : n;
}

int edgelab_handle_request(const uint8_t *req, size_t len, el_buf *out) {
    uint64_t n = requested_bytes(req, len);
#ifdef __wasm__
    uint8_t *dst = el_reserve(out, (size_t)n);
    if (!dst) return EL_STATUS_INTERNAL; /* out->oom is set: the answer becomes "out of memory" */
    memset(dst, 'x', (size_t)n);
    out->len += (size_t)n;
    return EL_STATUS_OK;
#else
    static uint8_t chunk[FLOOD_CHUNK];
    memset(chunk, 'x', sizeof chunk);
    uint8_t header[5] = {(uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24), EL_STATUS_OK};
    if (el_sys_write(1, header, sizeof header) != (long)sizeof header) el_sys_exit(4);
    while (n) {
        size_t step = n < FLOOD_CHUNK ? (size_t)n : FLOOD_CHUNK;
        long w = el_sys_write(1, chunk, step);
        if (w == -4) continue; /* EINTR */
        if (w <= 0) el_sys_exit(4); /* the reader is gone: EPIPE */
        n -= (uint64_t)w;
    }
    (void)out;
    el_sys_exit(0); /* the answer is out; returning would write a second frame */
#endif
}
