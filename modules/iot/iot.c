/* iot: summarise a batch of sensor readings.
 *
 * Request: text lines "sensor_id,value" separated by \n (a trailing \r is ignored, blank lines
 * are skipped).  sensor_id is 1-64 characters of A-Z a-z 0-9 _ . : -; value is a decimal with
 * an optional sign, at most 9 integer digits and at most 3 fractional digits (e.g. -12.5).
 * Response: one line per sensor, sorted by id (bytewise): "id count min max mean\n", numbers
 * with exactly 3 decimals.  All arithmetic is in integer thousandths; the mean is rounded half
 * away from zero, so every runtime prints the same bytes. */
#include "edgelab.h"

typedef struct {
    const uint8_t *id;
    uint32_t id_len;
    uint32_t count;
    int64_t min, max, sum;
} sensor;

typedef struct {
    sensor *items;
    size_t len, cap;
    uint32_t *slots; /* open addressing: index + 1, 0 is empty */
    size_t slot_cap;
} table;

static uint32_t hash_id(const uint8_t *p, size_t n) {
    uint32_t h = 2166136261u;
    while (n--) h = (h ^ *p++) * 16777619u;
    return h;
}

static int same_id(const sensor *s, const uint8_t *p, size_t n) {
    return s->id_len == n && memcmp(s->id, p, n) == 0;
}

static int table_grow(table *t) {
    size_t cap = t->slot_cap ? t->slot_cap * 2 : 64;
    uint32_t *slots = malloc(cap * sizeof *slots);
    if (!slots) return 0;
    memset(slots, 0, cap * sizeof *slots);
    for (size_t i = 0; i < t->len; i++) {
        size_t at = hash_id(t->items[i].id, t->items[i].id_len) & (cap - 1);
        while (slots[at]) at = (at + 1) & (cap - 1);
        slots[at] = (uint32_t)i + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->slot_cap = cap;
    return 1;
}

/* The sensor with this id, added if new; NULL when out of memory. */
static sensor *table_get(table *t, const uint8_t *id, size_t n) {
    if ((t->len + 1) * 2 > t->slot_cap && !table_grow(t)) return NULL;
    size_t at = hash_id(id, n) & (t->slot_cap - 1);
    while (t->slots[at]) {
        sensor *s = &t->items[t->slots[at] - 1];
        if (same_id(s, id, n)) return s;
        at = (at + 1) & (t->slot_cap - 1);
    }
    if (t->len == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        sensor *items = realloc(t->items, cap * sizeof *items);
        if (!items) return NULL;
        t->items = items;
        t->cap = cap;
    }
    sensor *s = &t->items[t->len];
    s->id = id;
    s->id_len = (uint32_t)n;
    s->count = 0;
    t->slots[at] = (uint32_t)++t->len;
    return s;
}

static int id_less(const sensor *a, const sensor *b) {
    uint32_t n = a->id_len < b->id_len ? a->id_len : b->id_len;
    int c = memcmp(a->id, b->id, n);
    return c ? c < 0 : a->id_len < b->id_len;
}

static void merge_sort(sensor *a, sensor *tmp, size_t n) {
    if (n < 2) return;
    size_t half = n / 2;
    merge_sort(a, tmp, half);
    merge_sort(a + half, tmp, n - half);
    size_t i = 0, j = half, k = 0;
    while (i < half && j < n) tmp[k++] = id_less(&a[j], &a[i]) ? a[j++] : a[i++];
    while (i < half) tmp[k++] = a[i++];
    while (j < n) tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

static int id_char(uint8_t c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '-';
}

/* Parse a decimal into thousandths; 0 if it is not one. */
static int parse_milli(const uint8_t *p, size_t n, int64_t *value) {
    size_t i = 0;
    int negative = 0;
    if (i < n && (p[i] == '-' || p[i] == '+')) negative = p[i++] == '-';
    int64_t whole = 0, frac = 0;
    size_t digits = 0, frac_digits = 0;
    while (i < n && p[i] >= '0' && p[i] <= '9') {
        if (++digits > 9) return 0;
        whole = whole * 10 + (p[i++] - '0');
    }
    if (!digits) return 0;
    if (i < n && p[i] == '.') {
        i++;
        while (i < n && p[i] >= '0' && p[i] <= '9') {
            if (++frac_digits > 3) return 0;
            frac = frac * 10 + (p[i++] - '0');
        }
        if (!frac_digits) return 0;
    }
    if (i != n) return 0;
    for (size_t k = frac_digits; k < 3; k++) frac *= 10;
    *value = (whole * 1000 + frac) * (negative ? -1 : 1);
    return 1;
}

static int reject_line(el_buf *out, size_t line, const char *why) {
    el_reject(out, "line ");
    el_put_u64(out, line);
    el_puts(out, why);
    return EL_STATUS_REJECTED;
}

static int summarise(const uint8_t *req, size_t len, el_buf *out, table *t) {
    size_t line = 0, pos = 0;
    while (pos < len) {
        size_t start = pos;
        while (pos < len && req[pos] != '\n') pos++;
        size_t end = pos++;
        line++;
        if (end > start && req[end - 1] == '\r') end--;
        if (end == start) continue;
        size_t comma = start;
        while (comma < end && req[comma] != ',') comma++;
        if (comma == end) return reject_line(out, line, ": expected sensor_id,value");
        size_t id_len = comma - start;
        if (id_len == 0 || id_len > 64) return reject_line(out, line, ": sensor id must be 1-64 characters");
        for (size_t i = start; i < comma; i++)
            if (!id_char(req[i]))
                return reject_line(out, line, ": sensor id may only use A-Z a-z 0-9 _ . : -");
        int64_t value;
        if (!parse_milli(req + comma + 1, end - comma - 1, &value))
            return reject_line(out, line,
                               ": value must be a decimal like -12.5 (at most 9 integer and 3 fractional digits)");
        sensor *s = table_get(t, req + start, id_len);
        if (!s) {
            el_reject(out, "out of memory");
            return EL_STATUS_INTERNAL;
        }
        if (!s->count || value < s->min) s->min = value;
        if (!s->count || value > s->max) s->max = value;
        s->sum = s->count ? s->sum + value : value;
        s->count++;
    }
    if (!t->len) return el_reject(out, "no readings: send lines of sensor_id,value");

    sensor *tmp = malloc(t->len * sizeof *tmp);
    if (!tmp) {
        el_reject(out, "out of memory");
        return EL_STATUS_INTERNAL;
    }
    merge_sort(t->items, tmp, t->len);
    free(tmp);
    for (size_t i = 0; i < t->len; i++) {
        const sensor *s = &t->items[i];
        int64_t mag = s->sum < 0 ? -s->sum : s->sum;
        int64_t mean = (mag * 2 + s->count) / (2 * (int64_t)s->count);
        el_put(out, s->id, s->id_len);
        el_putc(out, ' ');
        el_put_u64(out, s->count);
        el_putc(out, ' ');
        el_put_fixed(out, s->min, 3);
        el_putc(out, ' ');
        el_put_fixed(out, s->max, 3);
        el_putc(out, ' ');
        el_put_fixed(out, s->sum < 0 ? -mean : mean, 3);
        el_putc(out, '\n');
    }
    return EL_STATUS_OK;
}

int edgelab_handle_request(const uint8_t *req, size_t len, el_buf *out) {
    table t = {0};
    int status = summarise(req, len, out, &t);
    free(t.items);
    free(t.slots);
    return status;
}
