/* The Wasm host's hot path: one launch (Store, instantiate, first response) in one foreign call.
 *
 * Built by `zig cc` on first use (edgelab/build.py, ensure_wasm_hotpath) and loaded by
 * edgelab/runtimes/wasm/hotpath.py, whose ctypes structs mirror the ones here. Through ctypes a launch is about twenty foreign calls of
 * 0.4-0.9 us each, which is more than wasmtime's own work; here it is one call.
 *
 * Freestanding on purpose: no header, no libc, nothing linked. Every function it calls --
 * wasmtime's C API and the three libc functions it needs -- comes in through `el_api`, filled
 * by the host with the addresses of the very library objects the Python side already uses. So
 * the engine and InstancePre pointers it is handed are always of the same wasmtime, whatever
 * libc the Python interpreter runs on, and the build needs no wasmtime headers.
 *
 * Struct sizes and offsets of wasmtime's C API (instance, extern, value) come in as -D flags
 * read from the wheel's own ctypes definitions at build time, and are part of the cache key.
 *
 * Time is read with clock_gettime(CLOCK_MONOTONIC): the clock behind Python's
 * time.perf_counter_ns on Linux, so these stamps and the lab's are one time line.
 */

typedef unsigned char u8;
typedef int i32;
typedef unsigned int u32;
typedef long long i64;
typedef unsigned long long u64;
typedef unsigned long usize;

#ifndef EL_INSTANCE_BYTES
#error "build with -DEL_INSTANCE_BYTES, -DEL_EXTERN_BYTES, -DEL_EXTERN_OF, -DEL_VAL_BYTES"
#endif

#define EL_CLOCK_MONOTONIC 1
#define EL_EXPORTS 4 /* _initialize, edgelab_alloc, edgelab_handle, memory: in this order */

typedef struct {
    i64 tv_sec;
    i64 tv_nsec;
} el_timespec;

typedef union {
    i32 i32;
    i64 i64;
    u8 bytes[EL_VAL_BYTES];
} el_val;

/* The functions the host hands over; the order here is the order of the ctypes fields. */
typedef struct {
    void *(*store_new)(void *engine, void *data, void *finalizer);
    void *(*store_context)(void *store);
    void (*store_delete)(void *store);
    void (*store_limiter)(void *store, i64 memory, i64 table, i64 instances, i64 tables, i64 memories);
    void (*set_epoch_deadline)(void *ctx, u64 ticks);
    void *(*wasi_config_new)(void);
    _Bool (*wasi_config_set_argv)(void *config, usize argc, const char *const *argv);
    void *(*set_wasi)(void *ctx, void *config);
    void *(*pre_instantiate)(void *pre, void *ctx, void *instance, void **trap);
    _Bool (*export_get)(void *ctx, const void *instance, const char *name, usize len, void *item);
    void *(*call_unchecked)(void *ctx, const void *func, el_val *args, usize n, void **trap);
    u8 *(*memory_data)(void *ctx, const void *memory);
    usize (*memory_data_size)(void *ctx, const void *memory);
    int (*clock_gettime)(int clock, el_timespec *ts);
    void *(*memcpy)(void *dst, const void *src, usize n);
    void *(*realloc)(void *p, usize n);
    void *(*module_new)(void *engine, const u8 *wasm, usize len, void **module);
    void *(*module_deserialize)(void *engine, const u8 *bytes, usize len, void **module);
    void (*module_delete)(void *module);
    void *(*linker_instantiate)(void *linker, void *ctx, void *module, void *instance, void **trap);
    /* WASI commands (el_command): stdin bytes, captured stdout/stderr, grants, exit status. */
    void (*byte_vec_new)(void *vec, usize len, const u8 *data);
    void (*wasi_set_stdin_bytes)(void *config, void *vec);
    void (*wasi_set_stdout_custom)(void *config, long (*write)(void *, const u8 *, usize), void *data,
                                   void (*finalizer)(void *));
    void (*wasi_set_stderr_custom)(void *config, long (*write)(void *, const u8 *, usize), void *data,
                                   void (*finalizer)(void *));
    _Bool (*wasi_set_env)(void *config, usize n, const char *const *names, const char *const *values);
    _Bool (*wasi_preopen_dir)(void *config, const char *host, const char *guest, usize dir_perms,
                              usize file_perms);
    _Bool (*error_exit_status)(const void *error, int *status);
    void (*error_delete)(void *error);
    void (*wasi_config_delete)(void *config);
} el_api;

/* How a launch gets its module: the rungs of the ladder. */
enum {
    EL_MODE_PRE = 0,         /* instantiate `pre`, prepared once (wasm, wasm:mmap) */
    EL_MODE_COMPILE = 1,     /* compile `module_bytes` (.wasm) at every launch (wasm:jit) */
    EL_MODE_DESERIALIZE = 2, /* deserialize `module_bytes` (precompiled) at every launch (wasm:aot) */
};

/* Where a launch or request stopped; the host turns each into one line of text. */
enum {
    EL_OK = 0,
    EL_WASI = 1,         /* error: setting up the WASI context */
    EL_INSTANTIATE = 2,  /* error or trap */
    EL_NO_EXPORT = 3,    /* `detail` = index of the missing export */
    EL_INITIALIZE = 4,   /* error or trap in _initialize */
    EL_ALLOC = 5,        /* error or trap in edgelab_alloc */
    EL_ALLOC_RANGE = 6,  /* edgelab_alloc returned a buffer outside linear memory */
    EL_HANDLE = 7,       /* error or trap in edgelab_handle */
    EL_RESPONSE = 8,     /* edgelab_handle returned no response inside linear memory */
    EL_NO_MEMORY = 9,    /* the host could not allocate the response buffer */
    EL_TOO_LONG = 10,    /* the body is longer than max_response: nothing is copied */
    EL_MODULE = 11,      /* error compiling or deserializing the module */
};

/* One launch or request: the host fills the inputs, this file the outputs. */
typedef struct {
    /* in */
    void *engine;
    void *pre;
    i64 memory_limit;
    u64 deadline_ticks;
    const char *const *wasi_argv; /* NULL: the module imports no WASI, so it gets none */
    const u8 *request;
    usize request_len;
    usize max_response; /* the workload's response cap: a longer response fails the call */
    u8 *slot; /* the instance, then the four exports: EL_INSTANCE_BYTES + 4 * EL_EXTERN_BYTES */
    void *reuse_store; /* NULL: a fresh Store; else instantiate into this one (kept on failure) */
    void *linker;            /* modes COMPILE and DESERIALIZE: imports resolved per launch */
    const u8 *module_bytes;  /* modes COMPILE (.wasm) and DESERIALIZE (precompiled) */
    usize module_len;
    i32 mode;
    i32 pad0;
    /* out */
    void *store;
    void *ctx;
    void *error;
    void *trap;
    i32 stage;
    i32 detail;
    i64 t0; /* before the module (COMPILE, DESERIALIZE) or the Store exists */
    i64 tm; /* the module exists (t0 in mode PRE: nothing to make) */
    i64 t1; /* instantiated and _initialize has returned */
    i64 t2; /* the whole response is copied out of linear memory */
    const u8 *response; /* status byte, then the body; valid until the next call */
    usize response_len;
} el_call;

static el_api api;
static u8 *response_buf;
static usize response_cap;

static const char *const export_names[EL_EXPORTS] = {
    "_initialize", "edgelab_alloc", "edgelab_handle", "memory"};
static const usize export_lens[EL_EXPORTS] = {11, 13, 14, 6};

static inline i64 now_ns(void) {
    el_timespec ts;
    api.clock_gettime(EL_CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline const void *extern_of(const u8 *slot, int index) {
    return slot + EL_INSTANCE_BYTES + (usize)index * EL_EXTERN_BYTES + EL_EXTERN_OF;
}

static inline int failed(el_call *c, int stage) {
    c->stage = stage;
    return stage;
}

/* Install the function table; returns the size of el_call so the host can check its layout. */
usize el_hotpath_init(const el_api *table) {
    api = *table;
    return sizeof(el_call);
}

/* One launch of el_launch_batch: where its response sits in the batch's response buffer. */
typedef struct {
    void *error;
    void *trap;
    i32 stage;
    i32 detail;
    i64 t0;
    i64 tm;
    i64 t1;
    i64 t2;
    usize response_at;
    usize response_len;
} el_launched;

/* Call export `index` of the instance in `slot`; on an error or trap, note them and return
 * `stage`, else EL_OK. */
static int call_export(el_call *c, void *ctx, const u8 *slot, int index, el_val *args, usize n,
                       int stage) {
    void *trap = 0;
    c->error = api.call_unchecked(ctx, extern_of(slot, index), args, n, &trap);
    if (c->error || trap) {
        c->trap = trap;
        return failed(c, stage);
    }
    return EL_OK;
}

/* alloc, write the request, handle, copy the response out (to the response buffer at
 * `at`): the ABI of modules/README.md. */
static int handle(el_call *c, void *ctx, const u8 *slot, usize at_offset) {
    el_val args[2];
    const void *memory = extern_of(slot, 3);
    u32 len = (u32)c->request_len;

    args[0].i64 = 0;
    args[0].i32 = (i32)len;
    if (call_export(c, ctx, slot, 1, args, 1, EL_ALLOC)) return c->stage;
    u32 pointer = (u32)args[0].i32;
    u8 *data = api.memory_data(ctx, memory);
    usize size = api.memory_data_size(ctx, memory);
    /* pointer 0: no buffer (too large, or out of memory). As the ABI says, handle(0, len)
     * then answers the rejection a native instance gives; the request bytes are not written. */
    if (pointer != 0) {
        if ((u64)pointer + len > size) return failed(c, EL_ALLOC_RANGE);
        if (len) api.memcpy(data + pointer, c->request, len);
    }
    args[0].i64 = 0;
    args[1].i64 = 0;
    args[0].i32 = (i32)pointer;
    args[1].i32 = (i32)len;
    if (call_export(c, ctx, slot, 2, args, 2, EL_HANDLE)) return c->stage;
    u64 packed = (u64)args[0].i64;
    u64 at = packed >> 32, n = packed & 0xFFFFFFFFu;
    data = api.memory_data(ctx, memory); /* the memory may have grown and moved */
    size = api.memory_data_size(ctx, memory);
    if (n == 0 || at + n > size) return failed(c, EL_RESPONSE);
    if (n - 1 > c->max_response) return failed(c, EL_TOO_LONG); /* the body, as natively */
    if (at_offset + n > response_cap) {
        usize want = at_offset + (usize)n;
        if (want < 2 * response_cap) want = 2 * response_cap;
        u8 *grown = api.realloc(response_buf, want);
        if (!grown) return failed(c, EL_NO_MEMORY);
        response_buf = grown;
        response_cap = want;
    }
    api.memcpy(response_buf + at_offset, data + at, (usize)n);
    c->response = response_buf;
    c->response_len = (usize)n;
    return EL_OK;
}

static void reset(el_call *c) {
    c->t0 = c->tm = c->t1 = c->t2 = 0;
    c->error = 0;
    c->trap = 0;
    c->stage = EL_OK;
    c->detail = 0;
    c->response = 0;
    c->response_len = 0;
}

/* A fresh Store, instantiate, _initialize, then the first request. On success the Store is
 * left in c->store (the host keeps or deletes it); on failure it is already deleted. */
static int launch_at(el_call *c, usize at_offset);

int el_launch(el_call *c) { return launch_at(c, 0); }

/* `n` launches back to back, each Store deleted as soon as its response is out (outside the
 * timing), as a burst of one runtime does. First `warm` launches just the same, untimed and
 * unreported (their responses are overwritten): a host woken by the lab's pipe starts on
 * cold caches, and its first launch takes ~10x the next; benchmarks/wasm_raw.c's loop warms
 * up the same way. A warm-up that fails is reported as the first record instead. Stops after
 * the first failure, which is then the last record. Responses follow each other in the
 * response buffer (c->response on return). Returns how many records were written. */
int el_launch_batch(el_call *c, int n, int warm, el_launched *out) {
    usize offset = 0;
    int done = 0;
    for (int w = 0; w < warm && n > 0; w++) {
        if (launch_at(c, 0) != EL_OK) {
            el_launched *r = &out[done++];
            r->error = c->error;
            r->trap = c->trap;
            r->stage = c->stage;
            r->detail = c->detail;
            r->t0 = r->tm = r->t1 = r->t2 = 0;
            r->response_at = 0;
            r->response_len = 0;
            c->response = response_buf;
            return done;
        }
        api.store_delete(c->store);
        c->store = 0;
        c->ctx = 0;
    }
    while (done < n) {
        el_launched *r = &out[done++];
        int stage = launch_at(c, offset);
        r->error = c->error;
        r->trap = c->trap;
        r->stage = stage;
        r->detail = c->detail;
        r->t0 = c->t0;
        r->tm = c->tm;
        r->t1 = c->t1;
        r->t2 = c->t2;
        r->response_at = offset;
        r->response_len = stage == EL_OK ? c->response_len : 0;
        if (stage != EL_OK) break;
        offset += c->response_len;
        api.store_delete(c->store);
        c->store = 0;
        c->ctx = 0;
    }
    c->response = response_buf;
    return done;
}

static int launch_at(el_call *c, usize at_offset) {
    void *trap = 0;
    reset(c);
    c->t0 = now_ns();
    void *module = 0;
    if (c->mode != EL_MODE_PRE) {
        if (c->mode == EL_MODE_COMPILE)
            c->error = api.module_new(c->engine, c->module_bytes, c->module_len, &module);
        else
            c->error = api.module_deserialize(c->engine, c->module_bytes, c->module_len, &module);
        if (c->error) {
            c->store = 0;
            c->ctx = 0;
            return failed(c, EL_MODULE);
        }
        c->tm = now_ns();
    } else {
        c->tm = c->t0;
    }
    void *store = c->reuse_store;
    int fresh = store == 0;
    if (fresh) store = api.store_new(c->engine, 0, 0);
    void *ctx = api.store_context(store);
    c->store = store;
    c->ctx = ctx;
    if (fresh && c->wasi_argv) {
        void *wasi = api.wasi_config_new(); /* deny by default: no env, preopens or stdio */
        api.wasi_config_set_argv(wasi, 1, c->wasi_argv);
        c->error = api.set_wasi(ctx, wasi);
        if (c->error) {
            failed(c, EL_WASI);
            if (module) api.module_delete(module);
            goto fail;
        }
    }
    if (fresh) api.store_limiter(store, c->memory_limit, -1, -1, -1, -1); /* per memory */
    api.set_epoch_deadline(ctx, c->deadline_ticks);
    if (module) {
        /* The instance keeps what it needs of the module alive in the Store. */
        c->error = api.linker_instantiate(c->linker, ctx, module, c->slot, &trap);
        api.module_delete(module);
    } else {
        c->error = api.pre_instantiate(c->pre, ctx, c->slot, &trap);
    }
    if (c->error || trap) {
        c->trap = trap;
        failed(c, EL_INSTANTIATE);
        goto fail;
    }
    for (int i = 0; i < EL_EXPORTS; i++) {
        u8 *item = c->slot + EL_INSTANCE_BYTES + (usize)i * EL_EXTERN_BYTES;
        if (!api.export_get(ctx, c->slot, export_names[i], export_lens[i], item)) {
            c->detail = i;
            failed(c, EL_NO_EXPORT);
            goto fail;
        }
    }
    el_val none[1];
    if (call_export(c, ctx, c->slot, 0, none, 0, EL_INITIALIZE)) goto fail;
    c->t1 = now_ns();
    if (handle(c, ctx, c->slot, at_offset) != EL_OK) goto fail;
    c->t2 = now_ns();
    return EL_OK;
fail:
    if (fresh) api.store_delete(store);
    c->store = 0;
    c->ctx = 0;
    return c->stage;
}

/* One more request to a resident instance (its Store and slot from an earlier launch). */
int el_request(el_call *c) {
    reset(c);
    c->t0 = now_ns();
    api.set_epoch_deadline(c->ctx, c->deadline_ticks);
    if (handle(c, c->ctx, c->slot, 0) != EL_OK) return c->stage;
    c->t2 = now_ns();
    return EL_OK;
}


/* -- WASI commands ------------------------------------------------------------------------
 * A person's own WASI preview 1 command (the "command" convention: the request on stdin, the
 * response on stdout, exit 0). One launch: a fresh Store, a fresh WASI context (argv[0], the
 * granted env and preopened directories only; stdin the request bytes; stdout and stderr
 * captured by the callbacks below), instantiate, _start. Stamps: t0 before the module or the
 * Store, tm the module made, tw the WASI context set, t1 instantiated, tf the first byte
 * written to stdout (0: none), t2 _start returned or proc_exit. */

enum {
    EL_START = 12, /* error or trap in _start (not an exit) */
    EL_EXIT = 13,  /* proc_exit with a non-zero status: `exit_code` */
};

#define EL_STDERR_KEEP 4096
#define EL_EFBIG 27

typedef struct {
    /* in */
    void *engine;
    void *pre;
    i64 memory_limit;
    u64 deadline_ticks;
    const char *const *argv;
    usize argc;
    const char *const *env_names;
    const char *const *env_values;
    usize envc;
    const char *const *dir_hosts;
    const char *const *dir_guests;
    usize dirc;
    const u8 *request;
    usize request_len;
    usize max_response; /* stdout beyond this fails the launch (nothing more is kept) */
    u8 *slot;           /* the instance, then the _start export */
    void *linker;
    const u8 *module_bytes;
    usize module_len;
    i32 mode;
    i32 run; /* 1: call _start; 0: instantiate and leave the instance waiting */
    /* out */
    void *store;
    void *ctx;
    void *error;
    void *trap;
    i32 stage;
    i32 exit_code;
    i64 t0;
    i64 tm;
    i64 tw;
    i64 t1;
    i64 tf;
    i64 t2;
    const u8 *out;
    usize out_len;
    const u8 *err;
    usize err_len;
    i32 too_long;
    i32 pad1;
} el_cmd;

static inline int cmd_failed(el_cmd *c, int stage) {
    c->stage = stage;
    return stage;
}

static u8 *out_buf;
static usize out_cap;
static u8 err_buf[EL_STDERR_KEEP];

/* stdout of the running command: stamp the first byte, keep up to max_response bytes; past
 * that the write fails (EFBIG) and the launch is failed however the guest reacts. */
static long cmd_stdout(void *data, const u8 *bytes, usize n) {
    el_cmd *c = (el_cmd *)data;
    if (n == 0) return 0;
    if (!c->tf) c->tf = now_ns();
    if (c->too_long || c->out_len + n > c->max_response) {
        c->too_long = 1;
        return -EL_EFBIG;
    }
    if (c->out_len + n > out_cap) {
        usize want = c->out_len + n;
        if (want < 2 * out_cap) want = 2 * out_cap;
        if (want < 4096) want = 4096;
        u8 *grown = api.realloc(out_buf, want);
        if (!grown) {
            c->too_long = 2;
            return -EL_EFBIG;
        }
        out_buf = grown;
        out_cap = want;
    }
    api.memcpy(out_buf + c->out_len, bytes, n);
    c->out_len += n;
    return (long)n;
}

/* stderr: the first EL_STDERR_KEEP bytes are kept (for the failure's one line), the rest
 * accepted and dropped. */
static long cmd_stderr(void *data, const u8 *bytes, usize n) {
    el_cmd *c = (el_cmd *)data;
    usize room = EL_STDERR_KEEP - c->err_len;
    usize take = n < room ? n : room;
    if (take) api.memcpy(err_buf + c->err_len, bytes, take);
    c->err_len += take;
    return (long)n;
}

usize el_command_size(void) { return sizeof(el_cmd); }

int el_command(el_cmd *c) {
    void *trap = 0;
    void *module = 0;
    c->store = c->ctx = c->error = c->trap = 0;
    c->stage = EL_OK;
    c->exit_code = 0;
    c->tm = c->tw = c->t1 = c->tf = c->t2 = 0;
    c->out = out_buf;
    c->out_len = 0;
    c->err = err_buf;
    c->err_len = 0;
    c->too_long = 0;
    c->t0 = now_ns();
    if (c->mode != EL_MODE_PRE) {
        if (c->mode == EL_MODE_COMPILE)
            c->error = api.module_new(c->engine, c->module_bytes, c->module_len, &module);
        else
            c->error = api.module_deserialize(c->engine, c->module_bytes, c->module_len, &module);
        if (c->error) return cmd_failed(c, EL_MODULE);
        c->tm = now_ns();
    } else {
        c->tm = c->t0;
    }
    void *store = api.store_new(c->engine, 0, 0);
    void *ctx = api.store_context(store);
    c->store = store;
    c->ctx = ctx;
    void *wasi = api.wasi_config_new(); /* deny by default: what is set here, nothing else */
    api.wasi_config_set_argv(wasi, c->argc, c->argv);
    if (c->envc) api.wasi_set_env(wasi, c->envc, c->env_names, c->env_values);
    for (usize i = 0; i < c->dirc; i++) {
        if (!api.wasi_preopen_dir(wasi, c->dir_hosts[i], c->dir_guests[i], 3, 3)) {
            api.wasi_config_delete(wasi);
            c->exit_code = (i32)i;
            cmd_failed(c, EL_WASI);
            goto fail;
        }
    }
    struct {
        usize size;
        u8 *data;
    } stdin_vec;
    api.byte_vec_new(&stdin_vec, c->request_len, c->request);
    api.wasi_set_stdin_bytes(wasi, &stdin_vec);
    api.wasi_set_stdout_custom(wasi, cmd_stdout, c, 0);
    api.wasi_set_stderr_custom(wasi, cmd_stderr, c, 0);
    c->error = api.set_wasi(ctx, wasi);
    if (c->error) {
        cmd_failed(c, EL_WASI);
        goto fail;
    }
    api.store_limiter(store, c->memory_limit, -1, -1, -1, -1);
    api.set_epoch_deadline(ctx, c->deadline_ticks);
    c->tw = now_ns();
    if (module) {
        c->error = api.linker_instantiate(c->linker, ctx, module, c->slot, &trap);
        api.module_delete(module);
        module = 0;
    } else {
        c->error = api.pre_instantiate(c->pre, ctx, c->slot, &trap);
    }
    if (c->error || trap) {
        c->trap = trap;
        cmd_failed(c, EL_INSTANTIATE);
        goto fail;
    }
    u8 *item = c->slot + EL_INSTANCE_BYTES;
    if (!api.export_get(ctx, c->slot, "_start", 6, item)) {
        cmd_failed(c, EL_NO_EXPORT);
        goto fail;
    }
    c->t1 = now_ns();
    if (!c->run) return EL_OK; /* waiting: instantiated with its WASI context, not started */
    el_val none[1];
    c->error = api.call_unchecked(ctx, extern_of(c->slot, 0), none, 0, &trap);
    c->t2 = now_ns();
    c->out = out_buf;
    if (c->error) {
        int status = 0;
        if (api.error_exit_status(c->error, &status)) {
            api.error_delete(c->error);
            c->error = 0;
            c->exit_code = status;
        }
    }
    /* Output past the cap is the failure, however the guest took its failed write: exited
     * with an error status, trapped, or (c->trap set) ran on into the deadline. */
    c->trap = trap;
    if (c->too_long) {
        cmd_failed(c, c->too_long == 2 ? EL_NO_MEMORY : EL_TOO_LONG);
        goto fail;
    }
    if (c->error || trap) {
        cmd_failed(c, EL_START);
        goto fail;
    }
    if (c->exit_code != 0) {
        cmd_failed(c, EL_EXIT);
        goto fail;
    }
    return EL_OK;
fail:
    if (module) api.module_delete(module);
    api.store_delete(store);
    c->store = 0;
    c->ctx = 0;
    c->out = out_buf;
    return c->stage;
}
