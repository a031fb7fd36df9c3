/* Raw baseline for the Wasm runtime: a bare loop over wasmtime's C API, nothing of the lab.
 *
 * Built by benchmarks/wasm_raw.py with `zig cc` and linked against the wasmtime wheel's own
 * libwasmtime, so the Engine and InstancePre it is handed (made once, outside any timing,
 * with the host's Engine configuration) belong to the library it calls. Per iteration, timed
 * with clock_gettime(CLOCK_MONOTONIC), the clock of Python's perf_counter_ns: a fresh Store,
 * its limits, instantiate, the export lookups, _initialize, edgelab_alloc, writing the
 * request, edgelab_handle, and copying the response out. Deleting the Store is not timed.
 *
 * The same work, call for call, as a batch of the lab's hot path (el_launch_batch in
 * edgelab/runtimes/wasm/hotpath.c): the same clock reads (three: before the Store, after
 * _initialize, after the copy), the same bounds checks of linear memory, the same response
 * cap check, responses copied one after the other into one buffer, and the same `warm`
 * untimed launches first. What it leaves out is the lab: no IPC, no records, no Python.
 *
 * No wasmtime header ships in the wheel, so the few declarations needed are written here;
 * the struct sizes are those of wasmtime's C API (checked against the wheel by the caller).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

typedef struct { uint64_t store_id; size_t private_index; } instance_t;                 /* 16 */
typedef struct { uint8_t kind; uint8_t pad[7]; uint8_t of[24]; } extern_t;              /* 32 */
typedef union { int32_t i32; int64_t i64; uint8_t bytes[16]; } val_raw_t;              /* 16 */

void *wasmtime_store_new(void *engine, void *data, void (*finalizer)(void *));
void *wasmtime_store_context(void *store);
void wasmtime_store_delete(void *store);
void wasmtime_store_limiter(void *store, int64_t memory, int64_t table, int64_t instances,
                            int64_t tables, int64_t memories);
void wasmtime_context_set_epoch_deadline(void *ctx, uint64_t ticks);
void *wasi_config_new(void);
_Bool wasi_config_set_argv(void *config, size_t argc, const char *const argv[]);
void *wasmtime_context_set_wasi(void *ctx, void *config);
void *wasmtime_instance_pre_instantiate(void *pre, void *ctx, instance_t *out, void **trap);
_Bool wasmtime_instance_export_get(void *ctx, const instance_t *instance, const char *name,
                                   size_t len, extern_t *item);
void *wasmtime_func_call_unchecked(void *ctx, const void *func, val_raw_t *args, size_t n,
                                   void **trap);
uint8_t *wasmtime_memory_data(void *ctx, const void *memory);
size_t wasmtime_memory_data_size(void *ctx, const void *memory);
void *wasmtime_module_new(void *engine, const uint8_t *wasm, size_t len, void **module);
void *wasmtime_module_deserialize(void *engine, const uint8_t *bytes, size_t len, void **module);
void wasmtime_module_delete(void *module);
void *wasmtime_linker_instantiate(void *linker, void *ctx, void *module, instance_t *out,
                                  void **trap);

/* How each launch gets its module, as the hot path's el_call.mode: 0 instantiate `pre`
 * (wasm, wasm:mmap), 1 compile the .wasm (wasm:jit), 2 deserialize the precompiled bytes
 * (wasm:aot), then instantiate through the linker. */
typedef struct {
    int mode;
    void *linker;
    const uint8_t *bytes;
    size_t len;
} module_source;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint8_t response[1 << 22]; /* responses follow each other, as in the hot path */

size_t raw_sizes(size_t *instance, size_t *extern_, size_t *val) {
    *instance = sizeof(instance_t);
    *extern_ = sizeof(extern_t);
    *val = sizeof(val_raw_t);
    return offsetof(extern_t, of);
}

/* One launch as the hot path's launch_at does it; returns 0 or -1. Its stamps in t[0..2]. */
static int launch(void *engine, void *pre, const module_source *source, int wasi,
                  int64_t memory_limit, const uint8_t *request, size_t len, size_t max_response,
                  size_t *offset, int64_t t[3], void **out) {
    static const char *const argv[] = {"raw"};
    instance_t instance;
    extern_t exports[4];
    val_raw_t args[2];
    void *trap = NULL;
    void *module = NULL;
    *out = NULL;
    t[0] = now_ns();
    if (source->mode == 1 &&
        wasmtime_module_new(engine, source->bytes, source->len, &module))
        return -1;
    if (source->mode == 2 &&
        wasmtime_module_deserialize(engine, source->bytes, source->len, &module))
        return -1;
    void *store = wasmtime_store_new(engine, NULL, NULL);
    void *ctx = wasmtime_store_context(store);
    *out = store;
    if (wasi) {
        void *config = wasi_config_new();
        wasi_config_set_argv(config, 1, argv);
        if (wasmtime_context_set_wasi(ctx, config)) return -1;
    }
    wasmtime_store_limiter(store, memory_limit, -1, -1, -1, -1);
    wasmtime_context_set_epoch_deadline(ctx, 1u << 30);
    if (module) {
        void *err = wasmtime_linker_instantiate(source->linker, ctx, module, &instance, &trap);
        wasmtime_module_delete(module);
        if (err || trap) return -1;
    } else if (wasmtime_instance_pre_instantiate(pre, ctx, &instance, &trap) || trap) {
        return -1;
    }
    if (!wasmtime_instance_export_get(ctx, &instance, "_initialize", 11, &exports[0]) ||
        !wasmtime_instance_export_get(ctx, &instance, "edgelab_alloc", 13, &exports[1]) ||
        !wasmtime_instance_export_get(ctx, &instance, "edgelab_handle", 14, &exports[2]) ||
        !wasmtime_instance_export_get(ctx, &instance, "memory", 6, &exports[3]))
        return -1;
    if (wasmtime_func_call_unchecked(ctx, exports[0].of, args, 0, &trap) || trap) return -1;
    t[1] = now_ns();
    args[0].i64 = 0;
    args[0].i32 = (int32_t)len;
    if (wasmtime_func_call_unchecked(ctx, exports[1].of, args, 1, &trap) || trap) return -1;
    uint32_t pointer = (uint32_t)args[0].i32;
    uint8_t *data = wasmtime_memory_data(ctx, exports[3].of);
    size_t size = wasmtime_memory_data_size(ctx, exports[3].of);
    if (pointer != 0) {
        if ((uint64_t)pointer + len > size) return -1;
        if (len) memcpy(data + pointer, request, len);
    }
    args[0].i64 = 0;
    args[1].i64 = 0;
    args[0].i32 = (int32_t)pointer;
    args[1].i32 = (int32_t)len;
    if (wasmtime_func_call_unchecked(ctx, exports[2].of, args, 2, &trap) || trap) return -1;
    uint64_t packed = (uint64_t)args[0].i64;
    uint64_t at = packed >> 32, got = packed & 0xFFFFFFFFu;
    data = wasmtime_memory_data(ctx, exports[3].of);
    size = wasmtime_memory_data_size(ctx, exports[3].of);
    if (got == 0 || at + got > size || got > max_response) return -1;
    if (*offset + got > sizeof response) *offset = 0;
    memcpy(response + *offset, data + at, got);
    *offset += got;
    t[2] = now_ns();
    return 0;
}

/* `warm` untimed launches, then n cold starts; timings[i] in ns. Returns 0, or -(i + 1) if
 * iteration i failed. */
int raw_loop_source(void *engine, void *pre, const module_source *source, int wasi,
                    int64_t memory_limit, const uint8_t *request, size_t len, int n, int warm,
                    int64_t *timings) {
    size_t offset = 0;
    int64_t t[3];
    void *store = NULL;
    for (int i = -warm; i < n; i++) {
        int failed = launch(engine, pre, source, wasi, memory_limit, request, len, 16u << 20,
                            &offset, t, &store);
        if (store) wasmtime_store_delete(store);
        if (failed) return -(i + warm + 1);
        if (i >= 0) timings[i] = t[2] - t[0];
    }
    return 0;
}

/* raw_loop_source with the module prepared once (`pre`): the wasm and wasm:mmap rungs. */
int raw_loop(void *engine, void *pre, int wasi, int64_t memory_limit, const uint8_t *request,
             size_t len, int n, int warm, int64_t *timings) {
    static const module_source prepared = {0, NULL, NULL, 0};
    return raw_loop_source(engine, pre, &prepared, wasi, memory_limit, request, len, n, warm,
                           timings);
}
