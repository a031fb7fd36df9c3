/* jwt: verify an HS256 JSON Web Token with the key compiled in (EDGELAB_JWT_KEY).
 *
 * A printable-ASCII request is a token and always gets a status-0 verdict: "valid sub=<sub>"
 * (or "valid (no sub)"), "invalid: malformed token", "invalid: alg is not HS256" or
 * "invalid: bad signature".  Only an empty request or one with bytes outside printable ASCII
 * (not a token at all) is rejected with status 1.  Surrounding whitespace is ignored.
 * Claims such as exp/nbf are NOT checked: there is no clock, so answers stay identical
 * across runtimes and runs. */
#include "edgelab.h"
#include "el_sha256.h"

#ifndef EDGELAB_JWT_KEY
#error "EDGELAB_JWT_KEY must be defined (manifest [defines])"
#endif

static const char key[] = EDGELAB_JWT_KEY;

typedef struct {
    const uint8_t *p;
    size_t len;
} span;

static void hmac_sha256(const uint8_t *msg, size_t len, uint8_t mac[32]) {
    uint8_t k[64], pad[64], inner[32];
    size_t key_len = sizeof key - 1;
    el_sha256 s;
    memset(k, 0, sizeof k);
    if (key_len > 64) {
        el_sha256_init(&s);
        el_sha256_update(&s, (const uint8_t *)key, key_len);
        el_sha256_final(&s, k);
    } else {
        memcpy(k, key, key_len);
    }
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x36;
    el_sha256_init(&s);
    el_sha256_update(&s, pad, 64);
    el_sha256_update(&s, msg, len);
    el_sha256_final(&s, inner);
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x5c;
    el_sha256_init(&s);
    el_sha256_update(&s, pad, 64);
    el_sha256_update(&s, inner, 32);
    el_sha256_final(&s, mac);
}

static int b64url_value(uint8_t c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* Unpadded base64url into dst (room for len*3/4 bytes); returns decoded length or -1. */
static long b64url_decode(span in, uint8_t *dst) {
    if (in.len % 4 == 1) return -1;
    uint32_t acc = 0;
    int bits = 0;
    long n = 0;
    for (size_t i = 0; i < in.len; i++) {
        int v = b64url_value(in.p[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            dst[n++] = (uint8_t)(acc >> bits);
        }
    }
    return n;
}

/* ---- a small JSON reader: validates one object, remembers two top-level string values ---- */

typedef struct {
    const uint8_t *p, *end;
    const char *want[2];
    span found[2];
} json;

static void skip_ws(json *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\r' || *j->p == '\n')) j->p++;
}

/* A string at j->p; its raw contents (escapes undecoded) into *raw. */
static int read_string(json *j, span *raw) {
    if (j->p >= j->end || *j->p != '"') return 0;
    const uint8_t *start = ++j->p;
    while (j->p < j->end && *j->p != '"') {
        if (*j->p < 0x20) return 0;
        if (*j->p == '\\') {
            if (++j->p >= j->end) return 0;
            if (*j->p == 'u') {
                for (int i = 0; i < 4; i++) {
                    if (++j->p >= j->end) return 0;
                    uint8_t c = *j->p;
                    if (!((c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'f'))) return 0;
                }
            } else if (!(*j->p == '"' || *j->p == '\\' || *j->p == '/' || *j->p == 'b' || *j->p == 'f' ||
                         *j->p == 'n' || *j->p == 'r' || *j->p == 't')) {
                return 0;
            }
        }
        j->p++;
    }
    if (j->p >= j->end) return 0;
    raw->p = start;
    raw->len = (size_t)(j->p - start);
    j->p++;
    return 1;
}

static int read_value(json *j, int depth, int top);

static int read_container(json *j, int depth, int top) {
    uint8_t close = *j->p == '{' ? '}' : ']';
    int object = close == '}';
    j->p++;
    skip_ws(j);
    if (j->p < j->end && *j->p == close) return j->p++, 1;
    for (;;) {
        span name = {0, 0};
        skip_ws(j);
        if (object) {
            if (!read_string(j, &name)) return 0;
            skip_ws(j);
            if (j->p >= j->end || *j->p++ != ':') return 0;
            skip_ws(j);
        }
        const uint8_t *value_at = j->p;
        if (!read_value(j, depth + 1, 0)) return 0;
        if (object && top && *value_at == '"') {
            for (int i = 0; i < 2; i++) {
                size_t n = strlen(j->want[i]);
                if (name.len == n && memcmp(name.p, j->want[i], n) == 0) {
                    json sub = *j;
                    sub.p = value_at;
                    read_string(&sub, &j->found[i]);
                }
            }
        }
        skip_ws(j);
        if (j->p >= j->end) return 0;
        if (*j->p == ',') {
            j->p++;
            continue;
        }
        if (*j->p++ != close) return 0;
        return 1;
    }
}

static int read_literal(json *j, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0) return 0;
    j->p += n;
    return 1;
}

static int read_value(json *j, int depth, int top) {
    span ignored;
    if (depth > 32) return 0;
    skip_ws(j);
    if (j->p >= j->end) return 0;
    switch (*j->p) {
    case '{':
    case '[': return read_container(j, depth, top);
    case '"': return read_string(j, &ignored);
    case 't': return read_literal(j, "true");
    case 'f': return read_literal(j, "false");
    case 'n': return read_literal(j, "null");
    default: {
        int digits = 0;
        while (j->p < j->end && ((*j->p >= '0' && *j->p <= '9') || *j->p == '-' || *j->p == '+' ||
                                 *j->p == '.' || *j->p == 'e' || *j->p == 'E'))
            digits += *j->p >= '0' && *j->p <= '9', j->p++;
        return digits > 0;
    }
    }
}

/* The document must be exactly one JSON object. */
static int read_object(const uint8_t *p, size_t len, const char *want0, const char *want1, span found[2]) {
    json j = {p, p + len, {want0, want1}, {{0, 0}, {0, 0}}};
    skip_ws(&j);
    if (j.p >= j.end || *j.p != '{' || !read_value(&j, 0, 1)) return 0;
    skip_ws(&j);
    found[0] = j.found[0];
    found[1] = j.found[1];
    return j.p == j.end;
}

static int hex(uint8_t c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

/* Write a raw JSON string's value on one line: escapes decoded, control characters as '?'. */
static void put_json_string(el_buf *out, span s) {
    for (size_t i = 0; i < s.len; i++) {
        uint8_t c = s.p[i];
        if (c == '\\') {
            c = s.p[++i];
            if (c == 'u') {
                uint32_t cp = 0;
                for (int k = 0; k < 4; k++) cp = cp << 4 | (uint32_t)hex(s.p[++i]);
                if (cp < 0x20 || cp == 0x7f || (cp >= 0xd800 && cp <= 0xdfff)) {
                    el_putc(out, '?');
                } else if (cp < 0x80) {
                    el_putc(out, (char)cp);
                } else if (cp < 0x800) {
                    el_putc(out, (char)(0xc0 | cp >> 6));
                    el_putc(out, (char)(0x80 | (cp & 0x3f)));
                } else {
                    el_putc(out, (char)(0xe0 | cp >> 12));
                    el_putc(out, (char)(0x80 | ((cp >> 6) & 0x3f)));
                    el_putc(out, (char)(0x80 | (cp & 0x3f)));
                }
                continue;
            }
            if (c != '"' && c != '\\' && c != '/') c = '?';
        } else if (c == 0x7f) {
            c = '?';
        }
        el_putc(out, (char)c);
    }
}

static int verdict(el_buf *out, const char *text) {
    el_puts(out, text);
    return EL_STATUS_OK;
}

int edgelab_handle_request(const uint8_t *req, size_t len, el_buf *out) {
    while (len && (req[len - 1] == ' ' || req[len - 1] == '\t' || req[len - 1] == '\r' || req[len - 1] == '\n'))
        len--;
    while (len && (req[0] == ' ' || req[0] == '\t' || req[0] == '\r' || req[0] == '\n')) req++, len--;
    if (!len) return el_reject(out, "request must be a JWT (header.payload.signature), got nothing");
    for (size_t i = 0; i < len; i++)
        if (req[i] < 0x21 || req[i] > 0x7e)
            return el_reject(out, "request must be a JWT (header.payload.signature) in printable ASCII");

    span part[3];
    size_t start = 0, count = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || req[i] == '.') {
            if (count == 3) return verdict(out, "invalid: malformed token");
            part[count].p = req + start;
            part[count].len = i - start;
            count++;
            start = i + 1;
        }
    }
    if (count != 3) return verdict(out, "invalid: malformed token");

    uint8_t *decoded = malloc(len);
    if (!decoded) {
        el_reject(out, "out of memory");
        return EL_STATUS_INTERNAL;
    }
    uint8_t *header = decoded;
    long header_len = b64url_decode(part[0], header);
    uint8_t *payload = header + (header_len > 0 ? header_len : 0);
    long payload_len = b64url_decode(part[1], payload);
    uint8_t *sig = payload + (payload_len > 0 ? payload_len : 0);
    long sig_len = b64url_decode(part[2], sig);
    span header_fields[2], claims[2];
    int status;
    if (header_len <= 0 || payload_len <= 0 || sig_len < 0 ||
        !read_object(header, (size_t)header_len, "alg", "typ", header_fields) ||
        !read_object(payload, (size_t)payload_len, "sub", "sub", claims)) {
        status = verdict(out, "invalid: malformed token");
    } else if (header_fields[0].len != 5 || memcmp(header_fields[0].p, "HS256", 5) != 0) {
        status = verdict(out, "invalid: alg is not HS256");
    } else {
        uint8_t mac[32];
        hmac_sha256(req, (size_t)(part[2].p - 1 - req), mac);
        uint8_t diff = sig_len == 32 ? 0 : 1;
        for (int i = 0; i < 32 && sig_len == 32; i++) diff |= (uint8_t)(mac[i] ^ sig[i]);
        if (diff) {
            status = verdict(out, "invalid: bad signature");
        } else if (claims[0].p) {
            el_puts(out, "valid sub=");
            put_json_string(out, claims[0]);
            status = EL_STATUS_OK;
        } else {
            status = verdict(out, "valid (no sub)");
        }
    }
    free(decoded);
    return status;
}
