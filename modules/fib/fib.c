/* fib: the n-th Fibonacci number, computed iteratively in uint64 (fib(90) is the largest
 * asked for; fib(93) would be the last that fits). */
#include "edgelab.h"

#define FIB_MAX 90u
static const char reason[] = "n must be an integer 0..90";

static int is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

int edgelab_handle_request(const uint8_t *req, size_t len, el_buf *out) {
    size_t i = 0, end = len;
    while (i < end && is_space(req[i])) i++;
    while (end > i && is_space(req[end - 1])) end--;
    if (i == end) return el_reject(out, reason);
    uint32_t n = 0;
    for (; i < end; i++) {
        if (req[i] < '0' || req[i] > '9') return el_reject(out, reason);
        n = n * 10 + (req[i] - '0');
        if (n > FIB_MAX) return el_reject(out, reason);
    }
    uint64_t a = 0, b = 1;
    for (uint32_t k = 0; k < n; k++) {
        uint64_t next = a + b;
        a = b;
        b = next;
    }
    el_put_u64(out, a);
    return EL_STATUS_OK;
}
