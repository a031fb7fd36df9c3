/* The freestanding runtime under every workload: mem* functions, a small first-fit
 * allocator on top of brk (native) or memory.grow (Wasm), the output buffer and the
 * number formatters.  No C library is linked, so nothing here differs between targets
 * except where the heap comes from.  The dynamically linked native build (EDGELAB_DYNAMIC,
 * the subprocess:dynamic rung) takes mem*, strlen and the allocator from the system libc. */
#include "edgelab.h"

#ifndef EDGELAB_DYNAMIC /* linked against the system libc: its mem* and strlen */
/* ---- memory functions (the compiler may also emit calls to these) ---- */

void *memcpy(void *dst, const void *src, size_t n) {
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--) *d++ = *s++;
    return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (d == s || n == 0) return dst;
    if (d < s) {
        while (n--) *d++ = *s++;
    } else {
        d += n;
        s += n;
        while (n--) *--d = *--s;
    }
    return dst;
}

void *memset(void *dst, int c, size_t n) {
    uint8_t *d = dst;
    while (n--) *d++ = (uint8_t)c;
    return dst;
}

int memcmp(const void *a, const void *b, size_t n) {
    const uint8_t *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y) return *x < *y ? -1 : 1;
    return 0;
}

size_t strlen(const char *s) {
    const char *p = s;
    while (*p) p++;
    return (size_t)(p - s);
}

#endif /* EDGELAB_DYNAMIC */

/* ---- raw syscalls (native only) ---- */

#ifndef __wasm__
#if defined(__x86_64__)
#define SYS_READ 0
#define SYS_WRITE 1
#define SYS_BRK 12
#define SYS_EXIT_GROUP 231
static long el_syscall3(long nr, long a, long b, long c) {
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}
long el_syscall6(long nr, long a, long b, long c, long d, long e, long f) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#elif defined(__aarch64__)
#define SYS_READ 63
#define SYS_WRITE 64
#define SYS_BRK 214
#define SYS_EXIT_GROUP 94
static long el_syscall3(long nr, long a, long b, long c) {
    register long x8 __asm__("x8") = nr;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
    return x0;
}
long el_syscall6(long nr, long a, long b, long c, long d, long e, long f) {
    register long x8 __asm__("x8") = nr;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
    return x0;
}
#else
#error "native edgelab workloads support x86_64 and aarch64 Linux"
#endif

long el_sys_read(int fd, void *buf, size_t n) { return el_syscall3(SYS_READ, fd, (long)buf, (long)n); }
long el_sys_write(int fd, const void *buf, size_t n) { return el_syscall3(SYS_WRITE, fd, (long)buf, (long)n); }
void el_sys_exit(int code) {
    for (;;) el_syscall3(SYS_EXIT_GROUP, code, 0, 0);
}
#endif

#ifndef EDGELAB_DYNAMIC /* linked against the system libc: its malloc, realloc, free */
/* ---- heap: one contiguous region that grows (and, natively, shrinks) at its top ---- */

static uintptr_t heap_start, heap_top, heap_limit;

#ifdef __wasm__
extern unsigned char __heap_base;
static int heap_init(void) {
    heap_start = heap_top = ((uintptr_t)&__heap_base + 15) & ~(uintptr_t)15;
    heap_limit = (uintptr_t)__builtin_wasm_memory_size(0) * 65536u;
    return 1;
}
static int heap_set_top(uintptr_t want) {
    if (want > heap_limit) {
        uintptr_t pages = (want - heap_limit + 65535u) / 65536u;
        if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) return 0;
        heap_limit += pages * 65536u;
    }
    heap_top = want;
    return 1;
}
#else
static int heap_init(void) {
    uintptr_t cur = (uintptr_t)el_syscall3(SYS_BRK, 0, 0, 0);
    heap_start = heap_top = heap_limit = cur;
    return cur != 0 && cur < (uintptr_t)-4096;
}
static int heap_set_top(uintptr_t want) {
    /* brk in 64 KiB steps so small requests don't cost a syscall each */
    uintptr_t limit = (want + 65535u) & ~(uintptr_t)65535u;
    if (limit != heap_limit) {
        uintptr_t got = (uintptr_t)el_syscall3(SYS_BRK, (long)limit, 0, 0);
        if (got < want) return 0;
        heap_limit = got;
    }
    heap_top = want;
    return 1;
}
#endif

/* Blocks carry a 16-byte header (size of the whole block); free blocks are kept in an
 * address-ordered list and merged with their neighbours. */
typedef struct block {
    size_t size;
    struct block *next;
} block;

#define HDR 16u
#define MIN_BLOCK 32u
static block *free_list;

static size_t block_need(size_t n) {
    if (n > SIZE_MAX - HDR - 15u) return 0;
    size_t need = (n + HDR + 15u) & ~(size_t)15u;
    return need < MIN_BLOCK ? MIN_BLOCK : need;
}

static void free_list_remove(block *b) {
    block **pp = &free_list;
    while (*pp && *pp != b) pp = &(*pp)->next;
    if (*pp) *pp = b->next;
}

void *malloc(size_t n) {
    size_t need = block_need(n);
    if (!need) return NULL;
    block **pp = &free_list;
    for (block *b = free_list; b; pp = &b->next, b = b->next) {
        if (b->size < need) continue;
        if (b->size - need >= MIN_BLOCK) {
            block *rest = (block *)((uint8_t *)b + need);
            rest->size = b->size - need;
            rest->next = b->next;
            *pp = rest;
            b->size = need;
        } else {
            *pp = b->next;
        }
        return (uint8_t *)b + HDR;
    }
    /* a free block touching the top of the heap is extended rather than left behind */
    block *last = NULL;
    for (block *b = free_list; b; b = b->next) last = b;
    if (last && (uintptr_t)last + last->size == heap_top) {
        if (!heap_set_top((uintptr_t)last + need)) return NULL;
        free_list_remove(last);
        last->size = need;
        return (uint8_t *)last + HDR;
    }
    if (!heap_start && !heap_init()) return NULL;
    uintptr_t at = (heap_top + 15u) & ~(uintptr_t)15u;
    if (at > UINTPTR_MAX - need || !heap_set_top(at + need)) return NULL;
    block *b = (block *)at;
    b->size = need;
    return (uint8_t *)b + HDR;
}

void free(void *p) {
    if (!p) return;
    block *b = (block *)((uint8_t *)p - HDR);
    block *prev = NULL, *next = free_list;
    while (next && next < b) {
        prev = next;
        next = next->next;
    }
    b->next = next;
    if (prev) prev->next = b; else free_list = b;
    if (next && (uint8_t *)b + b->size == (uint8_t *)next) {
        b->size += next->size;
        b->next = next->next;
    }
    if (prev && (uint8_t *)prev + prev->size == (uint8_t *)b) {
        prev->size += b->size;
        prev->next = b->next;
        b = prev;
    }
#ifndef __wasm__
    /* give a large free tail back to the kernel so a resident process stays small */
    if ((uintptr_t)b + b->size == heap_top && b->size >= 256u * 1024u) {
        free_list_remove(b);
        heap_set_top((uintptr_t)b);
    }
#endif
}

void *realloc(void *p, size_t n) {
    if (!p) return malloc(n);
    size_t need = block_need(n);
    if (!need) return NULL;
    block *b = (block *)((uint8_t *)p - HDR);
    if (b->size >= need) return p;
    uintptr_t end = (uintptr_t)b + b->size;
    if (end == heap_top) {
        if (!heap_set_top((uintptr_t)b + need)) return NULL;
        b->size = need;
        return p;
    }
    for (block *f = free_list; f; f = f->next) {
        if ((uintptr_t)f == end && b->size + f->size >= need) {
            free_list_remove(f);
            b->size += f->size;
            return p;
        }
    }
    void *q = malloc(n);
    if (!q) return NULL;
    memcpy(q, p, b->size - HDR);
    free(p);
    return q;
}

#endif /* EDGELAB_DYNAMIC */

/* ---- output buffer ---- */

void el_buf_reset(el_buf *out, size_t head) {
    out->len = 0;
    out->oom = 0;
    out->head = head;
    if (el_reserve(out, head)) out->len = head;
}

void el_buf_trim(el_buf *out, size_t keep_cap) {
    if (out->cap > keep_cap) {
        free(out->data);
        out->data = NULL;
        out->cap = out->len = 0;
    }
}

uint8_t *el_reserve(el_buf *out, size_t n) {
    if (out->oom) return NULL;
    if (n > SIZE_MAX / 2 - out->len) {
        out->oom = 1;
        return NULL;
    }
    if (out->len + n > out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 256;
        while (cap < out->len + n) cap *= 2;
        uint8_t *data = realloc(out->data, cap);
        if (!data) {
            out->oom = 1;
            return NULL;
        }
        out->data = data;
        out->cap = cap;
    }
    return out->data + out->len;
}

void el_put(el_buf *out, const void *bytes, size_t n) {
    uint8_t *dst = el_reserve(out, n);
    if (!dst) return;
    memcpy(dst, bytes, n);
    out->len += n;
}

void el_putc(el_buf *out, char c) { el_put(out, &c, 1); }

void el_puts(el_buf *out, const char *s) { el_put(out, s, strlen(s)); }

void el_put_u64(el_buf *out, uint64_t v) {
    char tmp[20];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    el_put(out, tmp + i, sizeof tmp - i);
}

void el_put_i64(el_buf *out, int64_t v) {
    if (v < 0) {
        el_putc(out, '-');
        el_put_u64(out, (uint64_t)0 - (uint64_t)v);
    } else {
        el_put_u64(out, (uint64_t)v);
    }
}

void el_put_hex(el_buf *out, const uint8_t *bytes, size_t n) {
    static const char digits[] = "0123456789abcdef";
    uint8_t *dst = el_reserve(out, n * 2);
    if (!dst) return;
    for (size_t i = 0; i < n; i++) {
        dst[2 * i] = (uint8_t)digits[bytes[i] >> 4];
        dst[2 * i + 1] = (uint8_t)digits[bytes[i] & 15];
    }
    out->len += n * 2;
}

void el_put_fixed(el_buf *out, int64_t value, unsigned decimals) {
    uint64_t mag = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
    uint64_t scale = 1;
    for (unsigned i = 0; i < decimals; i++) scale *= 10;
    if (value < 0) el_putc(out, '-');
    el_put_u64(out, mag / scale);
    if (!decimals) return;
    el_putc(out, '.');
    char tmp[20];
    uint64_t frac = mag % scale;
    for (unsigned i = decimals; i > 0; i--) {
        tmp[i - 1] = (char)('0' + frac % 10);
        frac /= 10;
    }
    el_put(out, tmp, decimals);
}

int el_reject(el_buf *out, const char *reason) {
    out->len = out->head <= out->cap ? out->head : 0;
    out->oom = 0;
    el_puts(out, reason);
    return EL_STATUS_REJECTED;
}
