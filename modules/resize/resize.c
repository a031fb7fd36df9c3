/* resize: halve a binary PGM (P5, grey) or PPM (P6, RGB) image with maxval 255 by a 2x2 box
 * filter.  An odd width or height keeps its last column/row, averaged over the pixels that
 * exist, so the answer is ceil(w/2) x ceil(h/2) in the same format, with the header written
 * as "P5\n<w> <h>\n255\n".  Comments in the request header are allowed; the raster must be
 * exactly w*h*channels bytes. */
#include "edgelab.h"

static int is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; }

/* Skip whitespace and comments; at least one separator is required before a field. */
static int skip_separator(const uint8_t *p, size_t len, size_t *pos) {
    size_t start = *pos;
    while (*pos < len) {
        if (is_space(p[*pos])) {
            (*pos)++;
        } else if (p[*pos] == '#') {
            while (*pos < len && p[*pos] != '\n') (*pos)++;
        } else {
            break;
        }
    }
    return *pos > start;
}

static int read_number(const uint8_t *p, size_t len, size_t *pos, uint32_t *value) {
    size_t digits = 0;
    uint32_t v = 0;
    while (*pos < len && p[*pos] >= '0' && p[*pos] <= '9') {
        if (++digits > 5) return 0;
        v = v * 10 + (uint32_t)(p[(*pos)++] - '0');
    }
    *value = v;
    return digits > 0;
}

int edgelab_handle_request(const uint8_t *req, size_t len, el_buf *out) {
    if (len < 2 || req[0] != 'P' || (req[1] != '5' && req[1] != '6'))
        return el_reject(out, "not a binary PGM/PPM image: expected magic P5 or P6");
    uint32_t channels = req[1] == '6' ? 3 : 1;
    size_t pos = 2;
    uint32_t width, height, maxval;
    if (!skip_separator(req, len, &pos) || !read_number(req, len, &pos, &width) ||
        !skip_separator(req, len, &pos) || !read_number(req, len, &pos, &height) ||
        !skip_separator(req, len, &pos) || !read_number(req, len, &pos, &maxval) || pos >= len ||
        !is_space(req[pos]))
        return el_reject(out, "bad PNM header: expected width, height and maxval (decimal, <= 99999)");
    pos++; /* exactly one whitespace byte ends the header */
    if (width == 0 || height == 0) return el_reject(out, "image width and height must be at least 1");
    if (maxval != 255) return el_reject(out, "maxval must be 255 (8-bit images only)");
    uint64_t raster = (uint64_t)width * height * channels;
    uint64_t have = len - pos;
    if (have < raster) return el_reject(out, "image data is shorter than width x height x channels");
    if (have > raster) return el_reject(out, "unexpected bytes after the image data");

    uint32_t ow = (width + 1) / 2, oh = (height + 1) / 2;
    el_puts(out, channels == 3 ? "P6\n" : "P5\n");
    el_put_u64(out, ow);
    el_putc(out, ' ');
    el_put_u64(out, oh);
    el_puts(out, "\n255\n");
    uint8_t *dst = el_reserve(out, (size_t)ow * oh * channels);
    if (!dst) return EL_STATUS_INTERNAL;
    const uint8_t *src = req + pos;
    size_t stride = (size_t)width * channels;
    for (uint32_t y = 0; y < oh; y++) {
        uint32_t y0 = 2 * y, rows = y0 + 1 < height ? 2 : 1;
        for (uint32_t x = 0; x < ow; x++) {
            uint32_t x0 = 2 * x, cols = x0 + 1 < width ? 2 : 1, n = rows * cols;
            for (uint32_t c = 0; c < channels; c++) {
                uint32_t sum = 0;
                for (uint32_t dy = 0; dy < rows; dy++)
                    for (uint32_t dx = 0; dx < cols; dx++)
                        sum += src[(y0 + dy) * stride + (size_t)(x0 + dx) * channels + c];
                *dst++ = (uint8_t)((sum + n / 2) / n);
            }
        }
    }
    out->len += (size_t)ow * oh * channels;
    return EL_STATUS_OK;
}
