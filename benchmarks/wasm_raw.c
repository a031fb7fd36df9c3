/* Raw baseline for the Wasm runtime: a bare loop over wasmtime's C API, nothing of the lab.
 *
 * Built by benchmarks/wasm_raw.py with `zig cc` and linked against the wasmtime wheel's own
 * libwasmtime, so the Engine and InstancePre it is handed (made once, outside any timing,
 * with the host's Engine configuration) belong to the library it calls. Per iteration, timed
 * with clock_gettime(CLOCK_MONOTONIC), the clock of Python's perf_counter_ns: a fresh Store,
 * its limits, instantiate, the export lookups, _initialize, edgelab_alloc, writing the
 * request, edgelab_handle, and copying the response out. Deleting the Store is not timed.
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

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint8_t response[1 << 16];

size_t raw_sizes(size_t *instance, size_t *extern_, size_t *val) {
    *instance = sizeof(instance_t);
    *extern_ = sizeof(extern_t);
    *val = sizeof(val_raw_t);
    return offsetof(extern_t, of);
}

/* n cold starts; timings[i] in ns. Returns 0, or -(i + 1) if iteration i failed. */
int raw_loop(void *engine, void *pre, int wasi, int64_t memory_limit, const uint8_t *request,
             size_t len, int n, int64_t *timings) {
    static const char *const argv[] = {"raw"};
    for (int i = 0; i < n; i++) {
        instance_t instance;
        extern_t exports[4];
        val_raw_t args[2];
        void *trap = NULL;
        int64_t started = now_ns();
        void *store = wasmtime_store_new(engine, NULL, NULL);
        void *ctx = wasmtime_store_context(store);
        if (wasi) {
            void *config = wasi_config_new();
            wasi_config_set_argv(config, 1, argv);
            if (wasmtime_context_set_wasi(ctx, config)) return -(i + 1);
        }
        wasmtime_store_limiter(store, memory_limit, -1, -1, -1, -1);
        wasmtime_context_set_epoch_deadline(ctx, 1u << 30);
        if (wasmtime_instance_pre_instantiate(pre, ctx, &instance, &trap) || trap) return -(i + 1);
        if (!wasmtime_instance_export_get(ctx, &instance, "_initialize", 11, &exports[0]) ||
            !wasmtime_instance_export_get(ctx, &instance, "edgelab_alloc", 13, &exports[1]) ||
            !wasmtime_instance_export_get(ctx, &instance, "edgelab_handle", 14, &exports[2]) ||
            !wasmtime_instance_export_get(ctx, &instance, "memory", 6, &exports[3]))
            return -(i + 1);
        if (wasmtime_func_call_unchecked(ctx, exports[0].of, args, 0, &trap) || trap) return -(i + 1);
        args[0].i64 = 0;
        args[0].i32 = (int32_t)len;
        if (wasmtime_func_call_unchecked(ctx, exports[1].of, args, 1, &trap) || trap) return -(i + 1);
        uint32_t pointer = (uint32_t)args[0].i32;
        memcpy(wasmtime_memory_data(ctx, exports[3].of) + pointer, request, len);
        args[0].i64 = 0;
        args[1].i64 = 0;
        args[0].i32 = (int32_t)pointer;
        args[1].i32 = (int32_t)len;
        if (wasmtime_func_call_unchecked(ctx, exports[2].of, args, 2, &trap) || trap) return -(i + 1);
        uint64_t packed = (uint64_t)args[0].i64;
        size_t got = packed & 0xFFFFFFFFu;
        if (got == 0 || got > sizeof response) return -(i + 1);
        memcpy(response, wasmtime_memory_data(ctx, exports[3].of) + (packed >> 32), got);
        timings[i] = now_ns() - started;
        wasmtime_store_delete(store);
    }
    return 0;
}
