/* The core: version and status strings, the context (log, last error, threads), a caller-supplied allocator
 * (leak, size and alignment accounting, fault injection on every allocation), the arena, tensors, the RNG
 * (reference values, state round trip, distributions, draw counts) and the parallel loop. */
#include "testutil.h"

#include "internal.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

/* ---------------------------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------------------------- */

/* Clears the context's message, runs `call`, and fails unless it returned `want` and, when ctx is not NULL, left a
 * one-line message (kept for expect_message_has). */
#define EXPECT_ERROR(ctx, call, want)                                                                              \
    do {                                                                                                           \
        frcnn_ctx_clear_error(ctx);                                                                                \
        expect_error_((ctx), (call), (want), #call);                                                               \
    } while (0)

static void expect_error_(frcnn_ctx *ctx, frcnn_status got, frcnn_status want, const char *what)
{
    if (got != want) {
        print_error("%s: status %d (%s), expected %d (%s); last error \"%s\"\n", what, (int)got,
                    frcnn_status_str(got), (int)want, frcnn_status_str(want), frcnn_ctx_last_error(ctx));
        fail();
    }
    if (!ctx)
        return;
    const char *msg = frcnn_ctx_last_error(ctx);
    assert_non_null(msg);
    if (msg[0] == '\0') {
        print_error("%s: failed with %s but left no message\n", what, frcnn_status_str(got));
        fail();
    }
    assert_null(strchr(msg, '\n'));
}

/* Fails unless the context's message contains `part`. */
static void expect_message_has(frcnn_ctx *ctx, const char *part)
{
    const char *msg = frcnn_ctx_last_error(ctx);
    if (!strstr(msg, part)) {
        print_error("message \"%s\" does not mention \"%s\"\n", msg, part);
        fail();
    }
}

static bool aligned(const void *p, size_t align)
{
    return ((uintptr_t)p & (align - 1)) == 0;
}

/* A context with one thread and the system allocator. */
static frcnn_ctx *ctx_one_thread(void)
{
    frcnn_ctx_params p = frcnn_ctx_params_default();
    p.n_threads = 1;
    frcnn_ctx *ctx = NULL;
    assert_int_equal(frcnn_ctx_create(&p, &ctx), FRCNN_OK);
    return ctx;
}

/* The checking allocator is testutil's tu_alloc: every request must ask for the library's alignment. */
_Static_assert(TU_ALLOC_MIN_ALIGN == FRCNN__ALIGN, "tu_alloc checks for the library's alignment");

/* A context with one thread on the checking allocator. */
static frcnn_ctx *ca_ctx(tu_alloc_state *ca)
{
    frcnn_ctx_params p = frcnn_ctx_params_default();
    p.n_threads = 1;
    return tu_alloc_ctx(ca, &p);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Version and status
 * ------------------------------------------------------------------------------------------------------------- */

static void test_version(void **state)
{
    (void)state;
    assert_string_equal(frcnn_version(), FRCNN_VERSION_STRING);
    char expect[64];
    snprintf(expect, sizeof expect, "%d.%d.%d", FRCNN_VERSION_MAJOR, FRCNN_VERSION_MINOR, FRCNN_VERSION_PATCH);
    assert_string_equal(frcnn_version(), expect);
    assert_ptr_equal(frcnn_version(), frcnn_version()); /* static storage */
}

static void test_status_strings(void **state)
{
    (void)state;
    /* Values just outside the enum (kept inside its bit range, so the cast is well defined everywhere). */
    const char *unknown = frcnn_status_str((frcnn_status)(FRCNN_ERR_STATE - 1));
    assert_non_null(unknown);
    assert_true(unknown[0] != '\0');
    assert_string_equal(frcnn_status_str((frcnn_status)1), unknown);
    assert_string_equal(frcnn_status_str((frcnn_status)15), unknown);

    const int n = FRCNN_OK - FRCNN_ERR_STATE + 1;
    assert_int_equal(n, 14);
    const char *seen[14];
    for (int i = 0; i < n; i++) {
        frcnn_status s = (frcnn_status)(FRCNN_OK - i);
        const char *str = frcnn_status_str(s);
        assert_non_null(str);
        assert_true(str[0] != '\0');
        if (strcmp(str, unknown) == 0) {
            print_error("status %d has the fallback string \"%s\"\n", (int)s, str);
            fail();
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(str, seen[j]) == 0) {
                print_error("statuses %d and %d share the string \"%s\"\n", (int)s, -j, str);
                fail();
            }
        }
        seen[i] = str;
    }
    assert_string_equal(frcnn_status_str(FRCNN_OK), "ok");
}

/* ---------------------------------------------------------------------------------------------------------------
 * Context
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct log_capture {
    int lines;
    int per_level[4];
    void *user_seen;
    frcnn_log_level last_level;
    char last[256];
} log_capture;

static void capture_log(void *user, frcnn_log_level level, const char *line)
{
    log_capture *c = user;
    c->lines++;
    if ((int)level >= 0 && (int)level < 4)
        c->per_level[level]++;
    c->user_seen = user;
    c->last_level = level;
    snprintf(c->last, sizeof c->last, "%s", line);
}

static void test_ctx_create_and_defaults(void **state)
{
    (void)state;
    frcnn_ctx_params d = frcnn_ctx_params_default();
    assert_null(d.allocator);
    assert_null(d.log);
    assert_null(d.log_user);
    assert_int_equal(d.log_level, FRCNN_LOG_INFO);
    assert_int_equal(d.n_threads, 0);

    frcnn_ctx *a = NULL, *b = NULL;
    assert_int_equal(frcnn_ctx_create(NULL, &a), FRCNN_OK);
    assert_non_null(a);
    assert_int_equal(frcnn_ctx_create(&d, &b), FRCNN_OK);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    assert_string_equal(frcnn_ctx_last_error(a), "");
    assert_string_equal(frcnn_ctx_last_error(b), "");
    assert_true(frcnn_ctx_threads(a) >= 1);
    assert_true(frcnn_ctx_threads(b) >= 1);
    frcnn_ctx_free(a);
    frcnn_ctx_free(b);

    assert_int_equal(frcnn_ctx_create(NULL, NULL), FRCNN_ERR_INVALID_ARG);
    frcnn_ctx_free(NULL);
}

static void test_ctx_rejects_incomplete_allocator(void **state)
{
    (void)state;
    tu_alloc_state ca;
    tu_alloc_init(&ca, 0);
    frcnn_allocator no_free = tu_allocator(&ca), no_alloc = tu_allocator(&ca);
    no_free.free = NULL;
    no_alloc.alloc = NULL;
    frcnn_allocator neither = {NULL, NULL, NULL};
    const frcnn_allocator *bad[] = {&no_free, &no_alloc, &neither};
    for (size_t i = 0; i < 3; i++) {
        frcnn_ctx_params p = frcnn_ctx_params_default();
        p.allocator = bad[i];
        frcnn_ctx *ctx = (frcnn_ctx *)&ca; /* any non-NULL value: must be overwritten */
        assert_int_equal(frcnn_ctx_create(&p, &ctx), FRCNN_ERR_INVALID_ARG);
        assert_null(ctx);
    }
    assert_int_equal(ca.calls, 0);
}

static void test_ctx_log(void **state)
{
    (void)state;
    log_capture cap;
    memset(&cap, 0, sizeof cap);
    frcnn_ctx_params p = frcnn_ctx_params_default();
    p.log = capture_log;
    p.log_user = &cap;
    p.log_level = FRCNN_LOG_WARN;
    frcnn_ctx *ctx = NULL;
    assert_int_equal(frcnn_ctx_create(&p, &ctx), FRCNN_OK);
    /* Create warns exactly when OpenBLAS runs a generic kernel on a CPU that has a faster one. */
    const char *better = frcnn_blas_suggested_core();
    if (better) {
        assert_int_equal(cap.lines, 1);
        assert_int_equal(cap.last_level, FRCNN_LOG_WARN);
        assert_non_null(strstr(cap.last, better));
        assert_non_null(strstr(cap.last, "OPENBLAS_CORETYPE"));
    } else {
        assert_int_equal(cap.lines, 0);
    }
    memset(&cap, 0, sizeof cap);

    frcnn_ctx_log(ctx, FRCNN_LOG_DEBUG, "debug %d", 1);
    frcnn_ctx_log(ctx, FRCNN_LOG_INFO, "info %d", 2);
    assert_int_equal(cap.lines, 0);
    frcnn_ctx_log(ctx, FRCNN_LOG_WARN, "warn %d %s", 3, "x");
    assert_int_equal(cap.lines, 1);
    assert_ptr_equal(cap.user_seen, &cap);
    assert_int_equal(cap.last_level, FRCNN_LOG_WARN);
    assert_string_equal(cap.last, "warn 3 x");
    frcnn_ctx_log(ctx, FRCNN_LOG_ERROR, "error %.1f", 4.5);
    assert_int_equal(cap.lines, 2);
    assert_int_equal(cap.last_level, FRCNN_LOG_ERROR);
    assert_string_equal(cap.last, "error 4.5");
    /* A long line is truncated, never overflows. */
    char longer[3000];
    memset(longer, 'z', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    frcnn_ctx_log(ctx, FRCNN_LOG_ERROR, "%s", longer);
    assert_int_equal(cap.lines, 3);
    assert_true(strlen(cap.last) > 0);
    frcnn_ctx_free(ctx);

    /* Level DEBUG passes every level. */
    memset(&cap, 0, sizeof cap);
    p.log_level = FRCNN_LOG_DEBUG;
    assert_int_equal(frcnn_ctx_create(&p, &ctx), FRCNN_OK);
    memset(&cap, 0, sizeof cap);
    frcnn_ctx_log(ctx, FRCNN_LOG_DEBUG, "a");
    frcnn_ctx_log(ctx, FRCNN_LOG_INFO, "b");
    frcnn_ctx_log(ctx, FRCNN_LOG_WARN, "c");
    frcnn_ctx_log(ctx, FRCNN_LOG_ERROR, "d");
    assert_int_equal(cap.lines, 4);
    for (int l = 0; l < 4; l++)
        assert_int_equal(cap.per_level[l], 1);
    frcnn_ctx_free(ctx);

    /* No callback: silent, and nothing crashes. */
    memset(&cap, 0, sizeof cap);
    p.log = NULL;
    assert_int_equal(frcnn_ctx_create(&p, &ctx), FRCNN_OK);
    frcnn_ctx_log(ctx, FRCNN_LOG_ERROR, "nobody hears %d", 5);
    assert_int_equal(cap.lines, 0);
    frcnn_ctx_free(ctx);
    frcnn_ctx_log(NULL, FRCNN_LOG_ERROR, "no context");
}

static void test_ctx_last_error(void **state)
{
    (void)state;
    frcnn_ctx *ctx = ctx_one_thread();
    assert_string_equal(frcnn_ctx_last_error(ctx), "");
    const char *before = frcnn_ctx_last_error(ctx);

    int64_t dims[2] = {3, -7};
    frcnn_tensor *t = NULL;
    assert_int_equal(frcnn_tensor_create(ctx, 2, dims, &t), FRCNN_ERR_INVALID_ARG);
    assert_null(t);
    const char *msg = frcnn_ctx_last_error(ctx);
    assert_true(msg[0] != '\0');
    assert_non_null(strstr(msg, "-7"));
    char saved[FRCNN__ERROR_LEN];
    snprintf(saved, sizeof saved, "%s", msg);

    /* A call that succeeds leaves the message of the last failure in place. */
    dims[1] = 7;
    assert_int_equal(frcnn_tensor_create(ctx, 2, dims, &t), FRCNN_OK);
    assert_string_equal(frcnn_ctx_last_error(ctx), saved);

    frcnn_ctx_clear_error(ctx);
    assert_string_equal(frcnn_ctx_last_error(ctx), "");
    assert_ptr_equal(frcnn_ctx_last_error(ctx), before); /* lives as long as the context */

    /* A second failure replaces the first message. */
    assert_int_equal(frcnn_tensor_reshape(ctx, t, 1, (int64_t[]){22}), FRCNN_ERR_SHAPE);
    assert_string_not_equal(frcnn_ctx_last_error(ctx), saved);
    assert_non_null(strstr(frcnn_ctx_last_error(ctx), "22"));

    frcnn_tensor_free(t);
    frcnn_ctx_free(ctx);

    assert_string_equal(frcnn_ctx_last_error(NULL), "");
    frcnn_ctx_clear_error(NULL);
}

static void test_ctx_threads(void **state)
{
    (void)state;
    frcnn_ctx_params p = frcnn_ctx_params_default();
    p.n_threads = 3;
    frcnn_ctx *ctx = NULL;
    assert_int_equal(frcnn_ctx_create(&p, &ctx), FRCNN_OK);
    assert_int_equal(frcnn_ctx_threads(ctx), 3);
    assert_int_equal(frcnn_ctx_set_threads(ctx, 2), FRCNN_OK);
    assert_int_equal(frcnn_ctx_threads(ctx), 2);
    assert_int_equal(frcnn_ctx_set_threads(ctx, 0), FRCNN_OK);
    assert_true(frcnn_ctx_threads(ctx) >= 1);
    assert_int_equal(frcnn_ctx_set_threads(ctx, -5), FRCNN_OK);
    assert_true(frcnn_ctx_threads(ctx) >= 1);
    assert_int_equal(frcnn_ctx_set_threads(ctx, 1), FRCNN_OK);
    assert_int_equal(frcnn_ctx_threads(ctx), 1);
    frcnn_ctx_free(ctx);

    p.n_threads = -1;
    assert_int_equal(frcnn_ctx_create(&p, &ctx), FRCNN_OK);
    assert_true(frcnn_ctx_threads(ctx) >= 1);
    frcnn_ctx_free(ctx);

    assert_int_equal(frcnn_ctx_set_threads(NULL, 2), FRCNN_ERR_INVALID_ARG);
    assert_true(frcnn_ctx_threads(NULL) >= 1);
}

static void test_blas_core(void **state)
{
    (void)state;
    const char *core = frcnn_blas_core();
    assert_non_null(core);
    assert_true(core[0] != '\0');
    const char *better = frcnn_blas_suggested_core();
    if (better)
        assert_true(better[0] != '\0');
}

/* ---------------------------------------------------------------------------------------------------------------
 * Caller-supplied allocator
 * ------------------------------------------------------------------------------------------------------------- */

static void test_allocator_accounting(void **state)
{
    (void)state;
    tu_alloc_state ca;
    tu_alloc_init(&ca, 0);
    frcnn_ctx *ctx = ca_ctx(&ca);
    assert_true(ca.live_blocks >= 1);
    assert_true(aligned(ctx, FRCNN__ALIGN));

    /* Owned tensor: header + data, zero-filled over the poisoned memory, 64-byte aligned. */
    size_t live0 = ca.live_blocks, bytes0 = ca.live_bytes;
    int64_t d[3] = {5, 7, 3};
    frcnn_tensor *t = NULL;
    assert_int_equal(frcnn_tensor_create(ctx, 3, d, &t), FRCNN_OK);
    assert_true(ca.live_bytes - bytes0 >= 105 * sizeof(float));
    assert_true(aligned(frcnn_tensor_data(t), FRCNN__ALIGN));
    for (size_t i = 0; i < 105; i++)
        assert_true(frcnn_tensor_data(t)[i] == 0.0f);

    /* A wrap allocates its header only: far less than the data it wraps. */
    enum { WRAP_N = 4096 };
    static float caller[WRAP_N];
    size_t bytes1 = ca.live_bytes;
    frcnn_tensor *w = NULL;
    assert_int_equal(frcnn_tensor_wrap(ctx, caller, 1, (int64_t[]){WRAP_N}, &w), FRCNN_OK);
    assert_true(ca.live_bytes > bytes1);
    assert_true(ca.live_bytes - bytes1 < WRAP_N * sizeof(float));

    /* Arena: reserved once; its tensors take nothing from the allocator, and freeing them returns nothing. */
    frcnn_arena *arena = NULL;
    assert_int_equal(frcnn_arena_create(ctx, 1 << 14, &arena), FRCNN_OK);
    assert_true(ca.live_bytes - bytes1 >= (1 << 14));
    size_t calls = ca.calls, frees = ca.frees;
    frcnn_tensor *at = NULL, *bt = NULL;
    assert_int_equal(frcnn_tensor_arena(arena, 2, (int64_t[]){8, 16}, &at), FRCNN_OK);
    assert_int_equal(frcnn_tensor_arena(arena, 4, (int64_t[]){1, 2, 3, 4}, &bt), FRCNN_OK);
    size_t used = frcnn_arena_used(arena);
    frcnn_tensor_free(at);
    frcnn_tensor_free(bt);
    assert_int_equal(ca.calls, calls);
    assert_int_equal(ca.frees, frees);
    assert_int_equal(frcnn_arena_used(arena), used);

    /* Reshape and copy move no memory through the allocator either. */
    assert_int_equal(frcnn_tensor_reshape(ctx, t, 2, (int64_t[]){15, 7}), FRCNN_OK);
    frcnn_tensor *t2 = NULL;
    assert_int_equal(frcnn_tensor_create(ctx, 1, (int64_t[]){105}, &t2), FRCNN_OK);
    calls = ca.calls;
    assert_int_equal(frcnn_tensor_copy(ctx, t2, t), FRCNN_OK);
    assert_int_equal(ca.calls, calls);

    frcnn_tensor_free(t);
    frcnn_tensor_free(t2);
    frcnn_tensor_free(w);
    frcnn_arena_free(arena);
    assert_int_equal(ca.live_blocks, live0);
    frcnn_ctx_free(ctx);

    tu_alloc_assert_clean(&ca);
    assert_int_equal(ca.frees, ca.calls);
    assert_true(ca.calls >= 7); /* ctx, 2 x (header + data), wrap header, arena header + block */
}

/* Everything the fault-injection sequence builds, freed by seq_free whatever got built. */
typedef struct seq_objs {
    frcnn_ctx *ctx;
    frcnn_tensor *owned, *wrapped, *in_arena[3];
    frcnn_arena *arena;
    float caller[24];
} seq_objs;

/* ctx create, tensor create, tensor wrap, arena create, arena tensors. Returns the first failure; *stage is the
 * step that failed (or 5). Every out pointer starts non-NULL so that a failure must reset it. */
static frcnn_status seq_run(tu_alloc_state *ca, seq_objs *o, int *stage)
{
    frcnn_allocator a = tu_allocator(ca);
    frcnn_ctx_params p = frcnn_ctx_params_default();
    p.allocator = &a;
    p.n_threads = 1;
    frcnn_tensor *poison = (frcnn_tensor *)o;
    frcnn_status st;

    *stage = 0;
    o->ctx = (frcnn_ctx *)o;
    if ((st = frcnn_ctx_create(&p, &o->ctx)) != FRCNN_OK)
        return st;
    *stage = 1;
    o->owned = poison;
    if ((st = frcnn_tensor_create(o->ctx, 3, (int64_t[]){2, 3, 4}, &o->owned)) != FRCNN_OK)
        return st;
    *stage = 2;
    o->wrapped = poison;
    if ((st = frcnn_tensor_wrap(o->ctx, o->caller, 2, (int64_t[]){4, 6}, &o->wrapped)) != FRCNN_OK)
        return st;
    *stage = 3;
    o->arena = (frcnn_arena *)o;
    if ((st = frcnn_arena_create(o->ctx, 4096, &o->arena)) != FRCNN_OK)
        return st;
    *stage = 4;
    for (int i = 0; i < 3; i++)
        if ((st = frcnn_tensor_arena(o->arena, 2, (int64_t[]){4, 8 + i}, &o->in_arena[i])) != FRCNN_OK)
            return st;
    *stage = 5;
    return FRCNN_OK;
}

static void seq_free(seq_objs *o)
{
    for (int i = 0; i < 3; i++)
        frcnn_tensor_free(o->in_arena[i]);
    frcnn_arena_free(o->arena);
    frcnn_tensor_free(o->wrapped);
    frcnn_tensor_free(o->owned);
    frcnn_ctx_free(o->ctx);
}

static void test_allocator_fault_injection(void **state)
{
    (void)state;
    /* A clean run first: how many allocations the sequence makes. */
    tu_alloc_state ca;
    tu_alloc_init(&ca, 0);
    seq_objs o;
    memset(&o, 0, sizeof o);
    int stage;
    assert_int_equal(seq_run(&ca, &o, &stage), FRCNN_OK);
    size_t total = ca.calls;
    seq_free(&o);
    tu_alloc_assert_clean(&ca);
    assert_true(total >= 6);

    int failures_per_stage[6] = {0};
    size_t n;
    for (n = 1; n < 1000; n++) {
        tu_alloc_init(&ca, n);
        memset(&o, 0, sizeof o);
        frcnn_status st = seq_run(&ca, &o, &stage);
        if (st == FRCNN_OK) {
            assert_int_equal(ca.failed, 0);
            assert_int_equal(stage, 5);
            seq_free(&o);
            tu_alloc_assert_clean(&ca);
            break;
        }
        if (st != FRCNN_ERR_NO_MEMORY || ca.failed != 1) {
            print_error("failing allocation %zu: stage %d returned %d (%s), %zu injected failures\n", n, stage,
                        (int)st, frcnn_status_str(st), ca.failed);
            fail();
        }
        failures_per_stage[stage]++;
        switch (stage) {
        case 0: assert_null(o.ctx); break;
        case 1: assert_null(o.owned); break;
        case 2: assert_null(o.wrapped); break;
        case 3: assert_null(o.arena); break;
        default: fail_msg("allocation failed in stage %d, which should not allocate", stage);
        }
        if (o.ctx) {
            const char *msg = frcnn_ctx_last_error(o.ctx);
            if (msg[0] == '\0') {
                print_error("failing allocation %zu (stage %d) left no message\n", n, stage);
                fail();
            }
        }
        seq_free(&o);
        if (ca.live_blocks != 0)
            print_error("failing allocation %zu (stage %d) leaked:\n", n, stage);
        tu_alloc_assert_clean(&ca);
    }
    /* Every allocation of the clean run was failed once, then the run completed. */
    assert_int_equal(n, total + 1);
    for (int s = 0; s < 4; s++)
        assert_true(failures_per_stage[s] >= 1);
    assert_int_equal(failures_per_stage[1], 2); /* header, data */
    assert_int_equal(failures_per_stage[2], 1); /* header only */
    assert_int_equal(failures_per_stage[3], 2); /* header, block */
}

/* ---------------------------------------------------------------------------------------------------------------
 * Arena
 * ------------------------------------------------------------------------------------------------------------- */

static void test_arena_basics(void **state)
{
    (void)state;
    frcnn_ctx *ctx = ctx_one_thread();
    frcnn_arena *arena = NULL;
    assert_int_equal(frcnn_arena_create(ctx, 1024, &arena), FRCNN_OK);
    assert_int_equal(frcnn_arena_capacity(arena), 1024);
    assert_int_equal(frcnn_arena_used(arena), 0);
    assert_int_equal(frcnn_arena_peak(arena), 0);
    assert_int_equal(frcnn_arena_mark(arena), 0);

    /* Every allocation 64-byte aligned, none overlapping. */
    const size_t sizes[] = {1, 3, 64, 100, 65};
    unsigned char *ptrs[5];
    size_t sum = 0;
    for (int i = 0; i < 5; i++) {
        void *p = NULL;
        assert_int_equal(frcnn_arena_alloc(arena, sizes[i], &p), FRCNN_OK);
        assert_non_null(p);
        assert_true(aligned(p, 64));
        ptrs[i] = p;
        memset(p, i + 1, sizes[i]);
        sum += sizes[i];
        assert_true(frcnn_arena_used(arena) >= sum);
        assert_int_equal(frcnn_arena_used(arena) % 64, 0);
        assert_int_equal(frcnn_arena_mark(arena), frcnn_arena_used(arena));
        assert_int_equal(frcnn_arena_peak(arena), frcnn_arena_used(arena));
    }
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
            if (i != j)
                assert_true(ptrs[i] + sizes[i] <= ptrs[j] || ptrs[j] + sizes[j] <= ptrs[i]);
    for (int i = 0; i < 5; i++)
        for (size_t k = 0; k < sizes[i]; k++)
            assert_int_equal(ptrs[i][k], i + 1);
    /* 1, 3, 64, 100, 65 bytes take 64 + 64 + 64 + 128 + 128. */
    assert_int_equal(frcnn_arena_used(arena), 448);

    /* mark / reset: memory after the mark is handed out again, the peak stays. */
    size_t mark = frcnn_arena_mark(arena);
    void *p = NULL, *q = NULL;
    assert_int_equal(frcnn_arena_alloc(arena, 200, &p), FRCNN_OK);
    assert_int_equal(frcnn_arena_used(arena), mark + 256);
    size_t peak = frcnn_arena_peak(arena);
    assert_int_equal(peak, mark + 256);
    frcnn_arena_reset(arena, mark);
    assert_int_equal(frcnn_arena_used(arena), mark);
    assert_int_equal(frcnn_arena_peak(arena), peak);
    assert_int_equal(frcnn_arena_alloc(arena, 10, &q), FRCNN_OK);
    assert_ptr_equal(p, q);

    /* A mark above the fill level is ignored. */
    size_t used = frcnn_arena_used(arena);
    frcnn_arena_reset(arena, used + 64);
    assert_int_equal(frcnn_arena_used(arena), used);
    frcnn_arena_reset(arena, SIZE_MAX);
    assert_int_equal(frcnn_arena_used(arena), used);

    /* Size 0 succeeds and takes at most one alignment unit. */
    void *z = NULL;
    assert_int_equal(frcnn_arena_alloc(arena, 0, &z), FRCNN_OK);
    assert_true(frcnn_arena_used(arena) - used <= 64);
    assert_true(aligned(z, 64));

    /* Reset to 0 empties it; the whole capacity fits exactly. */
    frcnn_arena_reset(arena, 0);
    assert_int_equal(frcnn_arena_used(arena), 0);
    assert_int_equal(frcnn_arena_alloc(arena, 1024, &p), FRCNN_OK);
    assert_int_equal(frcnn_arena_used(arena), 1024);
    memset(p, 0x3c, 1024); /* all of it is usable (AddressSanitizer checks the bounds) */
    assert_int_equal(frcnn_arena_peak(arena), 1024);
    assert_int_equal(frcnn_arena_capacity(arena), 1024);

    frcnn_arena_free(arena);
    frcnn_ctx_free(ctx);
}

static void test_arena_full_and_overflow(void **state)
{
    (void)state;
    frcnn_ctx *ctx = ctx_one_thread();
    frcnn_arena *arena = NULL;
    assert_int_equal(frcnn_arena_create(ctx, 1000, &arena), FRCNN_OK);
    size_t cap = frcnn_arena_capacity(arena);
    assert_true(cap >= 1000);
    assert_int_equal(cap % 64, 0);

    void *p = NULL;
    assert_int_equal(frcnn_arena_alloc(arena, 640, &p), FRCNN_OK);
    size_t used = frcnn_arena_used(arena);
    size_t peak = frcnn_arena_peak(arena);

    /* Full: NO_MEMORY, sizes in the message, arena unchanged. */
    void *q = p;
    EXPECT_ERROR(ctx, frcnn_arena_alloc(arena, cap, &q), FRCNN_ERR_NO_MEMORY);
    char num[32];
    snprintf(num, sizeof num, "%zu", cap);
    expect_message_has(ctx, num);
    snprintf(num, sizeof num, "%zu", used);
    expect_message_has(ctx, num);
    assert_null(q);
    assert_int_equal(frcnn_arena_used(arena), used);
    assert_int_equal(frcnn_arena_peak(arena), peak);
    /* Just too much: one byte past what is left. */
    EXPECT_ERROR(ctx, frcnn_arena_alloc(arena, cap - used + 1, &q), FRCNN_ERR_NO_MEMORY);
    assert_int_equal(frcnn_arena_used(arena), used);
    /* What is left still fits. */
    assert_int_equal(frcnn_arena_alloc(arena, cap - used, &q), FRCNN_OK);
    assert_int_equal(frcnn_arena_used(arena), cap);
    frcnn_arena_reset(arena, used);

    /* Overflowing requests. */
    EXPECT_ERROR(ctx, frcnn_arena_alloc(arena, SIZE_MAX, &q), FRCNN_ERR_OVERFLOW);
    assert_int_equal(frcnn_arena_used(arena), used);
    assert_int_not_equal(frcnn_arena_alloc(arena, SIZE_MAX - 63, &q), FRCNN_OK);
    assert_int_equal(frcnn_arena_used(arena), used);
    frcnn_arena *big = (frcnn_arena *)ctx;
    EXPECT_ERROR(ctx, frcnn_arena_create(ctx, SIZE_MAX, &big), FRCNN_ERR_OVERFLOW);
    assert_null(big);

    /* A zero-capacity arena: valid, and every non-empty request is refused. */
    frcnn_arena *empty = NULL;
    assert_int_equal(frcnn_arena_create(ctx, 0, &empty), FRCNN_OK);
    assert_int_equal(frcnn_arena_capacity(empty), 0);
    EXPECT_ERROR(ctx, frcnn_arena_alloc(empty, 1, &q), FRCNN_ERR_NO_MEMORY);
    assert_int_equal(frcnn_arena_used(empty), 0);
    /* Size 0 still succeeds (without pointer arithmetic on the missing block: clang's UBSan checks that). */
    assert_int_equal(frcnn_arena_alloc(empty, 0, &q), FRCNN_OK);
    assert_int_equal(frcnn_arena_used(empty), 0);
    frcnn_arena_free(empty);

    /* NULL handling. */
    assert_int_equal(frcnn_arena_create(NULL, 64, &empty), FRCNN_ERR_INVALID_ARG);
    EXPECT_ERROR(ctx, frcnn_arena_create(ctx, 64, NULL), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_arena_alloc(NULL, 64, &q), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_arena_alloc(arena, 64, NULL), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_arena_used(arena), used);
    assert_int_equal(frcnn_arena_mark(NULL), 0);
    assert_int_equal(frcnn_arena_used(NULL), 0);
    assert_int_equal(frcnn_arena_peak(NULL), 0);
    assert_int_equal(frcnn_arena_capacity(NULL), 0);
    frcnn_arena_reset(NULL, 0);
    frcnn_arena_free(NULL);

    frcnn_arena_free(arena);
    frcnn_ctx_free(ctx);
}

static void test_arena_tensors(void **state)
{
    (void)state;
    tu_alloc_state ca;
    tu_alloc_init(&ca, 0);
    frcnn_ctx *ctx = ca_ctx(&ca);
    frcnn_arena *arena = NULL;
    assert_int_equal(frcnn_arena_create(ctx, 4096, &arena), FRCNN_OK);
    size_t cap = frcnn_arena_capacity(arena);

    /* The block the arena reserved, as the allocator saw it: everything the arena hands out lies inside it. */
    unsigned char *base = NULL;
    for (size_t i = 0; i < ca.live_blocks; i++)
        if (ca.live[i].size == cap)
            base = ca.live[i].ptr;
    assert_non_null(base);

    size_t calls = ca.calls;
    frcnn_tensor *t = NULL;
    assert_int_equal(frcnn_tensor_arena(arena, 3, (int64_t[]){2, 5, 10}, &t), FRCNN_OK);
    assert_int_equal(ca.calls, calls);
    assert_int_equal(frcnn_tensor_ndim(t), 3);
    assert_int_equal(frcnn_tensor_numel(t), 100);
    assert_int_equal(frcnn_tensor_dim(t, 2), 10);
    float *data = frcnn_tensor_data(t);
    assert_true(aligned(data, 64));
    assert_true((unsigned char *)t >= base);
    assert_true((unsigned char *)t < base + cap);
    assert_true((unsigned char *)data >= base);
    assert_true((unsigned char *)(data + 100) <= base + cap);
    size_t used = frcnn_arena_used(arena);
    assert_true(used >= 100 * sizeof(float));
    frcnn_tensor_fill(t, 2.5f);
    frcnn_tensor_free(t); /* no-op */
    assert_int_equal(ca.frees, 0);
    assert_int_equal(frcnn_arena_used(arena), used);
    assert_true(data[99] == 2.5f);

    /* A failing frcnn_tensor_arena leaves the fill level where it was, even when the header fitted. */
    size_t room = cap - used;
    int64_t too_many = (int64_t)(room / sizeof(float)); /* data alone would fit; header + data do not */
    frcnn_tensor *u = t;
    EXPECT_ERROR(ctx, frcnn_tensor_arena(arena, 1, &too_many, &u), FRCNN_ERR_NO_MEMORY);
    assert_null(u);
    assert_int_equal(frcnn_arena_used(arena), used);
    EXPECT_ERROR(ctx, frcnn_tensor_arena(arena, 1, (int64_t[]){1 << 20}, &u), FRCNN_ERR_NO_MEMORY);
    assert_int_equal(frcnn_arena_used(arena), used);
    /* Bad dims: the arena's context gets the message. */
    EXPECT_ERROR(ctx, frcnn_tensor_arena(arena, 5, (int64_t[]){1, 1, 1, 1, 1}, &u), FRCNN_ERR_INVALID_ARG);
    EXPECT_ERROR(ctx, frcnn_tensor_arena(arena, 1, (int64_t[]){0}, &u), FRCNN_ERR_INVALID_ARG);
    EXPECT_ERROR(ctx, frcnn_tensor_arena(arena, 4, (int64_t[]){INT32_MAX, INT32_MAX, INT32_MAX, 4}, &u),
                 FRCNN_ERR_OVERFLOW);
    assert_int_equal(frcnn_arena_used(arena), used);
    assert_int_equal(frcnn_tensor_arena(NULL, 1, (int64_t[]){4}, &u), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_tensor_arena(arena, 1, (int64_t[]){4}, NULL), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_arena_used(arena), used);

    frcnn_arena_free(arena);
    frcnn_ctx_free(ctx);
    tu_alloc_assert_clean(&ca);
}

/* A training step: mark, take the activations, reset. The peak is reached in the first step and never grows, and
 * the steady state asks the allocator for nothing. */
static void test_arena_training_loop(void **state)
{
    (void)state;
    tu_alloc_state ca;
    tu_alloc_init(&ca, 0);
    frcnn_ctx *ctx = ca_ctx(&ca);
    frcnn_arena *arena = NULL;
    assert_int_equal(frcnn_arena_create(ctx, 1 << 16, &arena), FRCNN_OK);
    /* Long-lived data taken before the loop survives every reset. */
    frcnn_tensor *keep = NULL;
    assert_int_equal(frcnn_tensor_arena(arena, 1, (int64_t[]){16}, &keep), FRCNN_OK);
    frcnn_tensor_fill(keep, 7.0f);
    size_t base_used = frcnn_arena_used(arena);
    size_t calls = ca.calls;
    size_t first_peak = 0;
    float *first_ptr = NULL;
    for (int step = 0; step < 10; step++) {
        size_t mark = frcnn_arena_mark(arena);
        assert_int_equal(mark, base_used);
        frcnn_tensor *a = NULL, *b = NULL, *c = NULL;
        assert_int_equal(frcnn_tensor_arena(arena, 4, (int64_t[]){1, 3, 16, 16}, &a), FRCNN_OK);
        assert_int_equal(frcnn_tensor_arena(arena, 2, (int64_t[]){17, 9}, &b), FRCNN_OK);
        assert_int_equal(frcnn_tensor_arena(arena, 1, (int64_t[]){1000}, &c), FRCNN_OK);
        frcnn_tensor_fill(a, (float)step);
        frcnn_tensor_fill(b, (float)step);
        frcnn_tensor_fill(c, (float)step);
        if (step == 0) {
            first_peak = frcnn_arena_peak(arena);
            first_ptr = frcnn_tensor_data(a);
        }
        assert_int_equal(frcnn_arena_peak(arena), first_peak);
        assert_ptr_equal(frcnn_tensor_data(a), first_ptr); /* same addresses every step */
        frcnn_arena_reset(arena, mark);
        assert_int_equal(frcnn_arena_used(arena), base_used);
    }
    assert_int_equal(ca.calls, calls);
    assert_true(first_peak > base_used);
    for (int i = 0; i < 16; i++)
        assert_true(frcnn_tensor_data(keep)[i] == 7.0f);
    frcnn_arena_free(arena);
    frcnn_ctx_free(ctx);
    tu_alloc_assert_clean(&ca);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Tensors
 * ------------------------------------------------------------------------------------------------------------- */

static void test_tensor_create_and_accessors(void **state)
{
    (void)state;
    tu_alloc_state ca;
    tu_alloc_init(&ca, 0);
    frcnn_ctx *ctx = ca_ctx(&ca);
    for (int ndim = 1; ndim <= 4; ndim++) {
        int64_t dims[4] = {2, 3, 4, 5};
        size_t numel = 1;
        for (int i = 0; i < ndim; i++)
            numel *= (size_t)dims[i];
        frcnn_tensor *t = NULL;
        assert_int_equal(frcnn_tensor_create(ctx, ndim, dims, &t), FRCNN_OK);
        assert_non_null(t);
        assert_int_equal(frcnn_tensor_ndim(t), ndim);
        assert_int_equal(frcnn_tensor_numel(t), numel);
        for (int i = 0; i < ndim; i++)
            assert_int_equal(frcnn_tensor_dim(t, i), dims[i]);
        assert_int_equal(frcnn_tensor_dim(t, ndim), 0);
        assert_int_equal(frcnn_tensor_dim(t, 4), 0);
        assert_int_equal(frcnn_tensor_dim(t, -1), 0);
        assert_int_equal(frcnn_tensor_dim(t, INT32_MIN), 0);
        float *d = frcnn_tensor_data(t);
        assert_non_null(d);
        assert_true(aligned(d, 64));
        for (size_t i = 0; i < numel; i++) /* the allocator handed out 0xA5 bytes */
            assert_true(d[i] == 0.0f);
        frcnn_tensor_free(t);
    }
    /* The largest single dimension is accepted by the checks (allocation is what may fail). */
    size_t numel = 0;
    assert_int_equal(frcnn__check_dims(ctx, 1, (int64_t[]){INT32_MAX}, "t", &numel), FRCNN_OK);
    assert_int_equal(numel, (size_t)INT32_MAX);

    assert_int_equal(frcnn_tensor_ndim(NULL), 0);
    assert_int_equal(frcnn_tensor_numel(NULL), 0);
    assert_int_equal(frcnn_tensor_dim(NULL, 0), 0);
    assert_null(frcnn_tensor_data(NULL));
    frcnn_tensor_free(NULL);
    frcnn_ctx_free(ctx);
    tu_alloc_assert_clean(&ca);
}

static void test_tensor_invalid_dims(void **state)
{
    (void)state;
    tu_alloc_state ca;
    tu_alloc_init(&ca, 0);
    frcnn_ctx *ctx = ca_ctx(&ca);
    size_t calls = ca.calls;
    static const struct {
        int ndim;
        int64_t dims[5];
        frcnn_status want;
        const char *mention; /* part of the message, or NULL */
    } cases[] = {
        {0, {1}, FRCNN_ERR_INVALID_ARG, "0 dimensions"},
        {-1, {1}, FRCNN_ERR_INVALID_ARG, "-1 dimensions"},
        {5, {1, 1, 1, 1, 1}, FRCNN_ERR_INVALID_ARG, "5 dimensions"},
        {2, {3, 0}, FRCNN_ERR_INVALID_ARG, NULL},
        {1, {-4}, FRCNN_ERR_INVALID_ARG, "-4"},
        {3, {2, 2, INT64_MIN}, FRCNN_ERR_INVALID_ARG, NULL},
        {2, {(int64_t)INT32_MAX + 1, 1}, FRCNN_ERR_INVALID_ARG, "2147483648"},
        {1, {INT64_MAX}, FRCNN_ERR_INVALID_ARG, NULL},
        {4, {INT32_MAX, INT32_MAX, INT32_MAX, 4}, FRCNN_ERR_OVERFLOW, NULL},
        {3, {INT32_MAX, INT32_MAX, 4}, FRCNN_ERR_OVERFLOW, NULL}, /* fits in elements, not in bytes */
        {2, {INT32_MAX, INT32_MAX}, FRCNN_ERR_OVERFLOW, NULL},    /* more bytes than half the address space */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "tensor_create, case %zu", i);
        frcnn_tensor *t = (frcnn_tensor *)ctx; /* any non-NULL value: must be reset */
        frcnn_ctx_clear_error(ctx);
        expect_error_(ctx, frcnn_tensor_create(ctx, cases[i].ndim, cases[i].dims, &t), cases[i].want, what);
        assert_null(t);
        if (cases[i].mention)
            expect_message_has(ctx, cases[i].mention);
        float buf[4];
        snprintf(what, sizeof what, "tensor_wrap, case %zu", i);
        t = (frcnn_tensor *)ctx;
        frcnn_ctx_clear_error(ctx);
        expect_error_(ctx, frcnn_tensor_wrap(ctx, buf, cases[i].ndim, cases[i].dims, &t), cases[i].want, what);
        assert_null(t);
    }
    EXPECT_ERROR(ctx, frcnn_tensor_create(ctx, 2, NULL, &(frcnn_tensor *){NULL}), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(ca.calls, calls); /* nothing allocated for a rejected shape */
    frcnn_ctx_free(ctx);
    tu_alloc_assert_clean(&ca);
}

static void test_tensor_wrap(void **state)
{
    (void)state;
    tu_alloc_state ca;
    tu_alloc_init(&ca, 0);
    frcnn_ctx *ctx = ca_ctx(&ca);
    float buf[12];
    for (int i = 0; i < 12; i++)
        buf[i] = (float)i;
    frcnn_tensor *t = NULL;
    assert_int_equal(frcnn_tensor_wrap(ctx, buf, 2, (int64_t[]){3, 4}, &t), FRCNN_OK);
    assert_ptr_equal(frcnn_tensor_data(t), buf); /* no copy */
    assert_int_equal(frcnn_tensor_numel(t), 12);
    assert_int_equal(frcnn_tensor_dim(t, 0), 3);
    assert_int_equal(frcnn_tensor_dim(t, 1), 4);
    for (int i = 0; i < 12; i++) /* not zeroed either */
        assert_true(buf[i] == (float)i);
    frcnn_tensor_fill(t, -1.0f);
    for (int i = 0; i < 12; i++)
        assert_true(buf[i] == -1.0f);
    buf[5] = 9.0f;
    assert_true(frcnn_tensor_data(t)[5] == 9.0f);
    frcnn_tensor_free(t); /* header only: freeing buf (on the stack) would fail the test in the allocator */
    assert_true(buf[5] == 9.0f);

    frcnn_tensor *u = (frcnn_tensor *)ctx;
    EXPECT_ERROR(ctx, frcnn_tensor_wrap(ctx, NULL, 1, (int64_t[]){4}, &u), FRCNN_ERR_INVALID_ARG);
    assert_null(u);
    EXPECT_ERROR(ctx, frcnn_tensor_wrap(ctx, buf, 1, (int64_t[]){4}, NULL), FRCNN_ERR_INVALID_ARG);
    EXPECT_ERROR(ctx, frcnn_tensor_wrap(ctx, buf, 1, NULL, &u), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_tensor_wrap(NULL, buf, 1, (int64_t[]){4}, &u), FRCNN_ERR_INVALID_ARG);
    frcnn_ctx_free(ctx);
    tu_alloc_assert_clean(&ca);
}

static void test_tensor_reshape(void **state)
{
    (void)state;
    frcnn_ctx *ctx = ctx_one_thread();
    frcnn_tensor *t = tu_tensor(ctx, 4, 2, 3, 4, 5);
    float *data = frcnn_tensor_data(t);
    for (int i = 0; i < 120; i++)
        data[i] = (float)i;

    assert_int_equal(frcnn_tensor_reshape(ctx, t, 2, (int64_t[]){2, 60}), FRCNN_OK);
    assert_ptr_equal(frcnn_tensor_data(t), data);
    assert_int_equal(frcnn_tensor_ndim(t), 2);
    assert_int_equal(frcnn_tensor_dim(t, 0), 2);
    assert_int_equal(frcnn_tensor_dim(t, 1), 60);
    assert_int_equal(frcnn_tensor_dim(t, 2), 0);
    assert_int_equal(frcnn_tensor_numel(t), 120);
    for (int i = 0; i < 120; i++)
        assert_true(data[i] == (float)i);

    assert_int_equal(frcnn_tensor_reshape(ctx, t, 1, (int64_t[]){120}), FRCNN_OK);
    assert_int_equal(frcnn_tensor_ndim(t), 1);
    assert_int_equal(frcnn_tensor_reshape(ctx, t, 4, (int64_t[]){1, 1, 1, 120}), FRCNN_OK);
    assert_int_equal(frcnn_tensor_dim(t, 3), 120);

    /* A different count: SHAPE, and the tensor keeps its shape. */
    EXPECT_ERROR(ctx, frcnn_tensor_reshape(ctx, t, 2, (int64_t[]){11, 11}), FRCNN_ERR_SHAPE);
    expect_message_has(ctx, "121");
    expect_message_has(ctx, "120");
    assert_int_equal(frcnn_tensor_ndim(t), 4);
    assert_int_equal(frcnn_tensor_dim(t, 3), 120);
    assert_int_equal(frcnn_tensor_numel(t), 120);
    EXPECT_ERROR(ctx, frcnn_tensor_reshape(ctx, t, 1, (int64_t[]){119}), FRCNN_ERR_SHAPE);
    EXPECT_ERROR(ctx, frcnn_tensor_reshape(ctx, t, 5, (int64_t[]){1, 1, 1, 1, 120}), FRCNN_ERR_INVALID_ARG);
    EXPECT_ERROR(ctx, frcnn_tensor_reshape(ctx, t, 2, (int64_t[]){-2, -60}), FRCNN_ERR_INVALID_ARG);
    EXPECT_ERROR(ctx, frcnn_tensor_reshape(ctx, t, 1, NULL), FRCNN_ERR_INVALID_ARG);
    EXPECT_ERROR(ctx, frcnn_tensor_reshape(ctx, NULL, 1, (int64_t[]){120}), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_tensor_reshape(NULL, t, 1, (int64_t[]){120}), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_tensor_numel(t), 120);
    assert_int_equal(frcnn_tensor_dim(t, 3), 120);
    frcnn_tensor_free(t);
    frcnn_ctx_free(ctx);
}

static void test_tensor_fill_zero_copy(void **state)
{
    (void)state;
    frcnn_ctx *ctx = ctx_one_thread();
    frcnn_tensor *a = tu_tensor(ctx, 2, 2, 3, 0, 0);
    frcnn_tensor *b = tu_tensor(ctx, 1, 6, 0, 0, 0);
    frcnn_tensor *c = tu_tensor(ctx, 3, 1, 3, 2, 0);
    frcnn_tensor *odd = tu_tensor(ctx, 1, 7, 0, 0, 0);

    frcnn_tensor_fill(a, 1.25f);
    for (int i = 0; i < 6; i++)
        assert_true(frcnn_tensor_data(a)[i] == 1.25f);
    frcnn_tensor_zero(a);
    for (int i = 0; i < 6; i++)
        assert_true(frcnn_tensor_data(a)[i] == 0.0f);

    for (int i = 0; i < 6; i++)
        frcnn_tensor_data(a)[i] = (float)(i * i) - 3.5f;
    /* Different shapes, equal count. */
    assert_int_equal(frcnn_tensor_copy(ctx, b, a), FRCNN_OK);
    tu_assert_identical("copy (2,3) -> (6)", frcnn_tensor_data(b), frcnn_tensor_data(a), 6);
    assert_int_equal(frcnn_tensor_copy(ctx, c, b), FRCNN_OK);
    tu_assert_identical("copy (6) -> (1,3,2)", frcnn_tensor_data(c), frcnn_tensor_data(a), 6);
    assert_int_equal(frcnn_tensor_ndim(c), 3); /* shapes are untouched */
    assert_int_equal(frcnn_tensor_ndim(b), 1);
    assert_int_equal(frcnn_tensor_copy(ctx, a, a), FRCNN_OK);
    tu_assert_identical("copy onto itself", frcnn_tensor_data(a), frcnn_tensor_data(c), 6);

    /* Count mismatch: SHAPE, destination untouched. */
    frcnn_tensor_fill(odd, 8.0f);
    EXPECT_ERROR(ctx, frcnn_tensor_copy(ctx, odd, a), FRCNN_ERR_SHAPE);
    for (int i = 0; i < 7; i++)
        assert_true(frcnn_tensor_data(odd)[i] == 8.0f);
    EXPECT_ERROR(ctx, frcnn_tensor_copy(ctx, a, odd), FRCNN_ERR_SHAPE);
    tu_assert_identical("untouched", frcnn_tensor_data(a), frcnn_tensor_data(c), 6);

    /* NULL arguments never crash. */
    EXPECT_ERROR(ctx, frcnn_tensor_copy(ctx, NULL, a), FRCNN_ERR_INVALID_ARG);
    EXPECT_ERROR(ctx, frcnn_tensor_copy(ctx, a, NULL), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_tensor_copy(NULL, a, b), FRCNN_ERR_INVALID_ARG);
    frcnn_tensor_fill(NULL, 1.0f);
    frcnn_tensor_zero(NULL);
    EXPECT_ERROR(ctx, frcnn_tensor_create(ctx, 1, (int64_t[]){3}, NULL), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_tensor_create(NULL, 1, (int64_t[]){3}, &(frcnn_tensor *){NULL}), FRCNN_ERR_INVALID_ARG);

    frcnn_tensor_free(a);
    frcnn_tensor_free(b);
    frcnn_tensor_free(c);
    frcnn_tensor_free(odd);
    frcnn_ctx_free(ctx);
}

/* ---------------------------------------------------------------------------------------------------------------
 * RNG
 * ------------------------------------------------------------------------------------------------------------- */

/* Reference values, computed independently of this library with this Python (64-bit arithmetic by masking):
 *
 *   M = (1 << 64) - 1
 *   def splitmix64(x):                     # returns (new state, output)
 *       x = (x + 0x9e3779b97f4a7c15) & M
 *       z = ((x ^ (x >> 30)) * 0xbf58476d1ce4e5b9) & M
 *       z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M
 *       return x, z ^ (z >> 31)
 *   def rotl(x, k): return ((x << k) | (x >> (64 - k))) & M
 *   def seed(v):
 *       s = []
 *       for _ in range(4):
 *           v, z = splitmix64(v); s.append(z)
 *       return s
 *   def next_u64(s):                       # xoshiro256** (Blackman & Vigna, reference xoshiro256starstar.c)
 *       r = (rotl((s[1] * 5) & M, 7) * 9) & M
 *       t = (s[1] << 17) & M
 *       s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45)
 *       return r
 *   for v in (0, 42):
 *       s = seed(v); print(v, [hex(x) for x in s], [hex(next_u64(s)) for _ in range(4)])
 *
 * seed(0)[0] = 0xe220a8397b1dcdaf is the well-known first SplitMix64 output for state 0. What is built on the draws
 * is pinned from the same script (the sequence is part of the determinism contract):
 *   uniform: (r >> 40) / 2^24, the top 24 bits of each seed-0 output
 *   below(10): r % 10 (no seed-0 output is below the rejection threshold 2^64 mod 10 = 6)
 *   normal(0, 1), Box-Muller on two draws a, b:
 *       u1 = ((a >> 11) + 1) * 2.0**-53; u2 = (b >> 11) * 2.0**-53
 *       z = math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)      # rounded to float32 */
static void test_rng_reference_sequence(void **state)
{
    (void)state;
    static const uint64_t seed0_state[4] = {0xe220a8397b1dcdafull, 0x6e789e6aa1b965f4ull, 0x06c45d188009454full,
                                            0xf88bb8a8724c81ecull};
    static const uint64_t seed0_out[4] = {0x99ec5f36cb75f2b4ull, 0xbf6e1f784956452aull, 0x1a5f849d4933e6e0ull,
                                          0x6aa594f1262d2d2cull};
    static const uint64_t seed42_state[4] = {0xbdd732262feb6e95ull, 0x28efe333b266f103ull, 0x47526757130f9f52ull,
                                             0x581ce1ff0e4ae394ull};
    static const uint64_t seed42_out[4] = {0x15780b2e0c2ec716ull, 0x6104d9866d113a7eull, 0xae17533239e499a1ull,
                                           0xecb8ad4703b360a1ull};
    frcnn_rng r0, r42;
    frcnn_rng_seed(&r0, 0);
    frcnn_rng_seed(&r42, 42);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(r0.s[i], seed0_state[i]);
        assert_int_equal(r42.s[i], seed42_state[i]);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(frcnn_rng_next_u64(&r0), seed0_out[i]);
        assert_int_equal(frcnn_rng_next_u64(&r42), seed42_out[i]);
    }
    static const uint32_t seed0_top24[4] = {0x99ec5f, 0xbf6e1f, 0x1a5f84, 0x6aa594};
    static const uint64_t seed0_below10[4] = {0, 2, 8, 2};
    static const float seed0_normal[4] = {-0.01410679705f, -1.845895052f, 0.7881791592f, -1.280385613f};
    frcnn_rng_seed(&r0, 0);
    for (int i = 0; i < 4; i++)
        assert_true(frcnn_rng_uniform(&r0) == (float)seed0_top24[i] * 0x1.0p-24f);
    frcnn_rng_seed(&r0, 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(frcnn_rng_below(&r0, 10), seed0_below10[i]);
    frcnn_rng_seed(&r0, 0);
    float normal[4];
    for (int i = 0; i < 4; i++)
        normal[i] = frcnn_rng_normal(&r0, 0.0f, 1.0f);
    /* libm's log and cos may differ in the last bit between C libraries: compare closely, not bitwise. */
    tu_assert_close("normal(0, 1) from seed 0", normal, seed0_normal, 4, 1e-6, 1e-6);

    /* Same seed, same sequence; a different seed, a different one. */
    frcnn_rng a, b, c;
    frcnn_rng_seed(&a, 12345);
    frcnn_rng_seed(&b, 12345);
    frcnn_rng_seed(&c, 12346);
    int differ = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = frcnn_rng_next_u64(&a);
        assert_int_equal(x, frcnn_rng_next_u64(&b));
        differ += x != frcnn_rng_next_u64(&c);
    }
    assert_int_equal(differ, 1000);
    frcnn_rng_seed(NULL, 1); /* no crash */
}

static void test_rng_state_save_load(void **state)
{
    (void)state;
    frcnn_ctx *ctx = ctx_one_thread();
    /* Little-endian, s[0] first. */
    frcnn_rng known = {{0x0102030405060708ull, 0x1112131415161718ull, 0xa1a2a3a4a5a6a7a8ull, 0xf0e0d0c0b0a09080ull}};
    static const uint8_t known_bytes[FRCNN_RNG_STATE_BYTES] = {
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,
        0xa8, 0xa7, 0xa6, 0xa5, 0xa4, 0xa3, 0xa2, 0xa1, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0};
    uint8_t bytes[FRCNN_RNG_STATE_BYTES];
    memset(bytes, 0, sizeof bytes);
    frcnn_rng_state_save(&known, bytes);
    assert_memory_equal(bytes, known_bytes, sizeof bytes);
    frcnn_rng loaded;
    memset(&loaded, 0x5a, sizeof loaded);
    assert_int_equal(frcnn_rng_state_load(ctx, &loaded, known_bytes), FRCNN_OK);
    assert_memory_equal(loaded.s, known.s, sizeof known.s);

    /* Round trip mid-sequence: the restored generator continues identically. */
    frcnn_rng a;
    frcnn_rng_seed(&a, 7);
    for (int i = 0; i < 5; i++)
        frcnn_rng_next_u64(&a);
    frcnn_rng_state_save(&a, bytes);
    uint64_t expect[16];
    for (int i = 0; i < 16; i++)
        expect[i] = frcnn_rng_next_u64(&a);
    frcnn_rng b;
    frcnn_rng_seed(&b, 999);
    assert_int_equal(frcnn_rng_state_load(ctx, &b, bytes), FRCNN_OK);
    for (int i = 0; i < 16; i++)
        assert_int_equal(frcnn_rng_next_u64(&b), expect[i]);
    assert_string_equal(frcnn_ctx_last_error(ctx), "");

    /* All-zero state: FORMAT, generator untouched; with or without a context. */
    uint8_t zero[FRCNN_RNG_STATE_BYTES];
    memset(zero, 0, sizeof zero);
    frcnn_rng before = b;
    EXPECT_ERROR(ctx, frcnn_rng_state_load(ctx, &b, zero), FRCNN_ERR_FORMAT);
    assert_memory_equal(b.s, before.s, sizeof b.s);
    assert_int_equal(frcnn_rng_state_load(NULL, &b, zero), FRCNN_ERR_FORMAT);
    assert_memory_equal(b.s, before.s, sizeof b.s);
    /* A single set bit anywhere is a valid state. */
    zero[31] = 0x80;
    assert_int_equal(frcnn_rng_state_load(ctx, &b, zero), FRCNN_OK);
    assert_int_equal(b.s[3], 0x8000000000000000ull);
    assert_int_equal(b.s[0] | b.s[1] | b.s[2], 0);

    EXPECT_ERROR(ctx, frcnn_rng_state_load(ctx, NULL, bytes), FRCNN_ERR_INVALID_ARG);
    EXPECT_ERROR(ctx, frcnn_rng_state_load(ctx, &b, NULL), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_rng_state_load(NULL, NULL, bytes), FRCNN_ERR_INVALID_ARG);
    frcnn_ctx_free(ctx);
}

/* The multiplicative inverse of an odd number modulo 2^64 (Newton: each step doubles the correct low bits). */
static uint64_t inverse_odd(uint64_t a)
{
    uint64_t x = a; /* correct to 3 bits: a * a == 1 mod 8 */
    for (int i = 0; i < 5; i++)
        x *= 2 - a * x;
    return x;
}

/* A state whose next frcnn_rng_next_u64 is r: the output is rotl(s[1] * 5, 7) * 9, and 5 and 9 are odd. */
static void rng_force_next(frcnn_rng *rng, uint64_t r)
{
    uint64_t v = r * inverse_odd(9);
    v = (v >> 7) | (v << 57);
    rng->s[0] = 0x123456789abcdefull;
    rng->s[1] = v * inverse_odd(5);
    rng->s[2] = 0xfedcba9876543210ull;
    rng->s[3] = 0x0f0f0f0f0f0f0f0full;
}

static void test_rng_below(void **state)
{
    (void)state;
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 3);
    assert_int_equal(frcnn_rng_below(&rng, 0), 0);
    assert_int_equal(frcnn_rng_below(&rng, 1), 0);
    const uint64_t bounds[] = {2, 3, 7, 10, 1000, 1ull << 32, (1ull << 63) + 1, UINT64_MAX};
    for (size_t b = 0; b < sizeof bounds / sizeof bounds[0]; b++)
        for (int i = 0; i < 2000; i++)
            assert_true(frcnn_rng_below(&rng, bounds[b]) < bounds[b]);

    /* 10 buckets, 100k draws: a loose chi-square (9 degrees of freedom, 99.9th percentile 27.9). */
    frcnn_rng_seed(&rng, 11);
    size_t count[10] = {0};
    const int draws = 100000;
    for (int i = 0; i < draws; i++)
        count[frcnn_rng_below(&rng, 10)]++;
    double chi2 = 0.0;
    for (int k = 0; k < 10; k++) {
        double e = draws / 10.0, d = (double)count[k] - e;
        chi2 += d * d / e;
    }
    if (chi2 > 30.0) {
        print_error("rng_below(10): chi-square %.1f over 10 buckets\n", chi2);
        fail();
    }

    /* Unbiased where plain modulo is not: for bound 3 * 2^62, r % bound would put half of all draws in the lowest
     * third. */
    const uint64_t big = 3ull << 62;
    size_t thirds[3] = {0};
    frcnn_rng_seed(&rng, 12);
    for (int i = 0; i < 30000; i++) {
        uint64_t v = frcnn_rng_below(&rng, big);
        assert_true(v < big);
        thirds[v >> 62]++;
    }
    for (int k = 0; k < 3; k++)
        assert_true(thirds[k] > 9400 && thirds[k] < 10600);

    /* Rejection: a draw in the rejected low block [0, 2^64 mod bound) is skipped, and the next one used. */
    rng_force_next(&rng, 5);
    frcnn_rng probe = rng;
    assert_int_equal(frcnn_rng_next_u64(&probe), 5);
    uint64_t second = frcnn_rng_next_u64(&probe);
    assert_true(second >= (1ull << 62));
    assert_int_equal(frcnn_rng_below(&rng, big), second % big);
    assert_memory_equal(rng.s, probe.s, sizeof rng.s);
}

static void test_rng_uniform(void **state)
{
    (void)state;
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 5);
    double sum = 0.0, sum2 = 0.0;
    float lo = 1.0f, hi = 0.0f;
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        frcnn_rng before = rng;
        float u = frcnn_rng_uniform(&rng);
        assert_true(u >= 0.0f && u < 1.0f);
        if (i < 100) { /* one draw per call */
            frcnn_rng_next_u64(&before);
            assert_memory_equal(before.s, rng.s, sizeof rng.s);
        }
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
        sum += u;
        sum2 += (double)u * u;
    }
    double mean = sum / n, var = sum2 / n - mean * mean;
    assert_true(fabs(mean - 0.5) < 0.005);
    assert_true(fabs(var - 1.0 / 12.0) < 0.002);
    assert_true(lo < 0.001f);
    assert_true(hi > 0.999f);

    /* The extremes of a draw: 0 gives 0, all ones stays below 1. */
    rng_force_next(&rng, 0);
    assert_true(frcnn_rng_uniform(&rng) == 0.0f);
    rng_force_next(&rng, UINT64_MAX);
    float top = frcnn_rng_uniform(&rng);
    assert_true(top < 1.0f);
    assert_true(top >= 1.0f - 0x1.0p-24f);
}

static void test_rng_normal(void **state)
{
    (void)state;
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 6);
    const float mean = 3.0f, stdv = 2.0f;
    const int n = 100000;
    double sum = 0.0, sum2 = 0.0;
    int within1 = 0;
    for (int i = 0; i < n; i++) {
        frcnn_rng before = rng;
        float v = frcnn_rng_normal(&rng, mean, stdv);
        assert_true(isfinite(v));
        if (i < 100) { /* exactly two draws per call */
            frcnn_rng_next_u64(&before);
            frcnn_rng_next_u64(&before);
            assert_memory_equal(before.s, rng.s, sizeof rng.s);
        }
        sum += v;
        sum2 += (double)v * v;
        within1 += fabs((double)v - mean) < stdv;
    }
    double m = sum / n, sd = sqrt(sum2 / n - m * m);
    if (fabs(m - mean) > 0.03 || fabs(sd - stdv) > 0.03 || fabs((double)within1 / n - 0.6827) > 0.01) {
        print_error("normal(3, 2): mean %.4f, std %.4f, %.4f within one std\n", m, sd, (double)within1 / n);
        fail();
    }
    /* std 0 gives the mean exactly; a zero first draw still gives a finite value. */
    assert_true(frcnn_rng_normal(&rng, -1.5f, 0.0f) == -1.5f);
    rng_force_next(&rng, 0);
    assert_true(isfinite(frcnn_rng_normal(&rng, 0.0f, 1.0f)));
    rng_force_next(&rng, UINT64_MAX);
    assert_true(isfinite(frcnn_rng_normal(&rng, 0.0f, 1.0f)));
}

static bool is_permutation_of_iota(const uint32_t *a, size_t n)
{
    bool seen[256] = {false};
    if (n > 256)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (a[i] >= n || seen[a[i]])
            return false;
        seen[a[i]] = true;
    }
    return true;
}

static void iota(uint32_t *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        a[i] = (uint32_t)i;
}

static void test_rng_shuffle(void **state)
{
    (void)state;
    enum { N = 100 };
    uint32_t a[N], b[N], ref[N];
    frcnn_rng r1, r2, r3;
    frcnn_rng_seed(&r1, 21);
    frcnn_rng_seed(&r2, 21);
    frcnn_rng_seed(&r3, 22);
    iota(a, N);
    iota(b, N);
    frcnn_rng_shuffle(&r1, a, N);
    frcnn_rng_shuffle(&r2, b, N);
    assert_true(is_permutation_of_iota(a, N));
    assert_memory_equal(a, b, sizeof a);
    iota(b, N);
    frcnn_rng_shuffle(&r3, b, N);
    assert_memory_not_equal(a, b, sizeof a);

    /* The documented draws: one below(i) per element from the end, i = n .. 2 (Fisher-Yates). */
    frcnn_rng_seed(&r1, 23);
    frcnn_rng_seed(&r2, 23);
    iota(a, N);
    iota(ref, N);
    frcnn_rng_shuffle(&r1, a, N);
    for (size_t i = N; i > 1; i--) {
        size_t j = (size_t)frcnn_rng_below(&r2, i);
        uint32_t t = ref[i - 1];
        ref[i - 1] = ref[j];
        ref[j] = t;
    }
    assert_memory_equal(a, ref, sizeof a);
    assert_memory_equal(r1.s, r2.s, sizeof r1.s);

    /* n = 0 and 1: nothing to do. */
    r2 = r1;
    frcnn_rng_shuffle(&r1, a, 0);
    a[0] = 77;
    frcnn_rng_shuffle(&r1, a, 1);
    assert_int_equal(a[0], 77);
    frcnn_rng_shuffle(&r1, NULL, 0);

    /* Every value lands in every position about equally often: chi-square over the 6 x 6 table (25 degrees of
     * freedom, 99.9th percentile 52.6). */
    enum { M = 6, TRIALS = 60000 };
    size_t table[M][M];
    memset(table, 0, sizeof table);
    frcnn_rng_seed(&r1, 24);
    for (int t = 0; t < TRIALS; t++) {
        uint32_t p[M];
        iota(p, M);
        frcnn_rng_shuffle(&r1, p, M);
        for (int i = 0; i < M; i++)
            table[i][p[i]]++;
    }
    double chi2 = 0.0, e = (double)TRIALS / M;
    for (int i = 0; i < M; i++)
        for (int v = 0; v < M; v++)
            chi2 += ((double)table[i][v] - e) * ((double)table[i][v] - e) / e;
    if (chi2 > 55.0) {
        print_error("shuffle: chi-square %.1f over positions x values\n", chi2);
        fail();
    }
}

static void test_rng_choose(void **state)
{
    (void)state;
    enum { N = 20 };
    uint32_t a[N], ref[N];
    frcnn_rng r1, r2;

    /* k of n: a[0..k) are distinct members, and the whole array is still a permutation. */
    frcnn_rng_seed(&r1, 31);
    frcnn_rng_seed(&r2, 31);
    iota(a, N);
    frcnn_rng_choose(&r1, a, N, 5);
    assert_true(is_permutation_of_iota(a, N));
    /* The documented draws: k below(n - i) calls (partial Fisher-Yates). */
    iota(ref, N);
    for (size_t i = 0; i < 5; i++) {
        size_t j = i + (size_t)frcnn_rng_below(&r2, N - i);
        uint32_t t = ref[i];
        ref[i] = ref[j];
        ref[j] = t;
    }
    assert_memory_equal(a, ref, sizeof a);
    assert_memory_equal(r1.s, r2.s, sizeof r1.s);

    /* k > n is k = n: the same draws and the same result. */
    frcnn_rng_seed(&r1, 32);
    frcnn_rng_seed(&r2, 32);
    iota(a, N);
    iota(ref, N);
    frcnn_rng_choose(&r1, a, N, N + 7);
    frcnn_rng_choose(&r2, ref, N, N);
    assert_true(is_permutation_of_iota(a, N));
    assert_memory_equal(a, ref, sizeof a);
    assert_memory_equal(r1.s, r2.s, sizeof r1.s);
    frcnn_rng_choose(&r1, a, N, SIZE_MAX);
    assert_true(is_permutation_of_iota(a, N));

    /* k = 0: array and generator unchanged. */
    iota(a, N);
    r2 = r1;
    frcnn_rng_choose(&r1, a, N, 0);
    iota(ref, N);
    assert_memory_equal(a, ref, sizeof a);
    assert_memory_equal(r1.s, r2.s, sizeof r1.s);
    frcnn_rng_choose(&r1, NULL, 0, 3);

    /* Works on any set, not just 0..n-1, and each member is picked with probability k / n. */
    enum { M = 8, K = 3, TRIALS = 40000 };
    size_t picked[M] = {0};
    frcnn_rng_seed(&r1, 33);
    for (int t = 0; t < TRIALS; t++) {
        uint32_t set[M];
        for (int i = 0; i < M; i++)
            set[i] = 1000u + 10u * (uint32_t)i;
        frcnn_rng_choose(&r1, set, M, K);
        for (int i = 0; i < K; i++) {
            assert_true(set[i] >= 1000u && set[i] < 1000u + 10u * M && set[i] % 10 == 0);
            for (int j = 0; j < i; j++)
                assert_int_not_equal(set[i], set[j]);
            picked[(set[i] - 1000u) / 10]++;
        }
    }
    for (int i = 0; i < M; i++) {
        double p = (double)picked[i] / TRIALS;
        if (fabs(p - (double)K / M) > 0.012) {
            print_error("choose(%d of %d): member %d picked with frequency %.4f\n", K, M, i, p);
            fail();
        }
    }
}

static void test_rng_fill_normal(void **state)
{
    (void)state;
    frcnn_ctx *ctx = ctx_one_thread();
    frcnn_tensor *t = tu_tensor(ctx, 3, 3, 5, 7, 0);
    frcnn_rng r1, r2;
    frcnn_rng_seed(&r1, 41);
    frcnn_rng_seed(&r2, 41);
    frcnn_rng_fill_normal(&r1, t, 0.5f, 0.01f);
    float expect[105];
    for (int i = 0; i < 105; i++)
        expect[i] = frcnn_rng_normal(&r2, 0.5f, 0.01f);
    tu_assert_identical("fill_normal vs normal in element order", frcnn_tensor_data(t), expect, 105);
    assert_memory_equal(r1.s, r2.s, sizeof r1.s);
    frcnn_rng_fill_normal(&r1, NULL, 0.0f, 1.0f);
    frcnn_rng_fill_normal(NULL, t, 0.0f, 1.0f);
    assert_memory_equal(r1.s, r2.s, sizeof r1.s);
    frcnn_tensor_free(t);
    frcnn_ctx_free(ctx);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Parallel loop
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct pf_state {
    size_t n;
    unsigned char *hits;   /* how often each index was visited */
    size_t *owner;         /* begin of the range that visited it */
    unsigned char *on_caller; /* visited by the calling thread */
    pthread_t caller;
    volatile int bad_range; /* a range outside [0, n) (written only on failure) */
} pf_state;

static void pf_body(void *arg, size_t begin, size_t end)
{
    pf_state *s = arg;
    if (begin >= end || end > s->n) {
        s->bad_range = 1;
        return;
    }
    bool caller = pthread_equal(pthread_self(), s->caller) != 0;
    for (size_t i = begin; i < end; i++) {
        s->hits[i]++;
        s->owner[i] = begin;
        s->on_caller[i] = caller;
    }
}

static void pf_count_calls(void *arg, size_t begin, size_t end)
{
    (void)begin;
    (void)end;
    (*(int *)arg)++;
}

/* Adds 1 to every element of its range. */
static void pool_add_one(void *arg, size_t begin, size_t end)
{
    int *a = arg;
    for (size_t i = begin; i < end; i++)
        a[i]++;
}

/* The persistent workers: thousands of loops back to back, thread-count changes in between, and a forked child
 * using the parent's context (its workers do not exist there; the loop must still cover the range). */
static void test_parallel_pool(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    enum { N = 257 };
    int a[N];
    memset(a, 0, sizeof a);
    const int threads[] = {2, 3, 1, 8, 2};
    int loops = 0;
    for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
        assert_int_equal(frcnn_ctx_set_threads(ctx, threads[t]), FRCNN_OK);
        for (int i = 0; i < 2000; i++, loops++)
            frcnn__parallel_for(ctx, N, 1, pool_add_one, a);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(a[i], loops);

    assert_int_equal(frcnn_ctx_set_threads(ctx, 2), FRCNN_OK);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int b[N];
        memset(b, 0, sizeof b);
        frcnn__parallel_for(ctx, N, 1, pool_add_one, b);
        for (int i = 0; i < N; i++)
            if (b[i] != 1)
                _exit(1);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    frcnn_ctx_free(ctx);
}

static void test_parallel_for(void **state)
{
    (void)state;
    static const size_t sizes[] = {0, 1, 7, 1000};
    static const int threads[] = {1, 2, 3, 8};
    static const size_t min_per[] = {0, 1, 3, 100, 2000};
    enum { MAX_N = 1000 };
    static unsigned char hits[MAX_N], on_caller[MAX_N];
    static size_t owner[MAX_N];
    frcnn_ctx *ctx = ctx_one_thread();
    for (size_t ti = 0; ti < sizeof threads / sizeof threads[0]; ti++) {
        assert_int_equal(frcnn_ctx_set_threads(ctx, threads[ti]), FRCNN_OK);
        for (size_t ni = 0; ni < sizeof sizes / sizeof sizes[0]; ni++) {
            for (size_t mi = 0; mi < sizeof min_per / sizeof min_per[0]; mi++) {
                size_t n = sizes[ni], m = min_per[mi];
                int nthreads = threads[ti];
                if (n == 0) {
                    int calls = 0;
                    frcnn__parallel_for(ctx, 0, m, pf_count_calls, &calls);
                    assert_int_equal(calls, 0);
                    continue;
                }
                memset(hits, 0, sizeof hits);
                memset(on_caller, 0, sizeof on_caller);
                for (size_t i = 0; i < MAX_N; i++)
                    owner[i] = SIZE_MAX;
                pf_state s = {n, hits, owner, on_caller, pthread_self(), 0};
                frcnn__parallel_for(ctx, n, m, pf_body, &s);
                assert_int_equal(s.bad_range, 0);
                for (size_t i = 0; i < n; i++) {
                    if (hits[i] != 1) {
                        print_error("n %zu, %d threads, min %zu: index %zu visited %d times\n", n, nthreads, m, i,
                                    hits[i]);
                        fail();
                    }
                }
                for (size_t i = n; i < MAX_N; i++)
                    assert_int_equal(hits[i], 0);
                /* Contiguous ranges, one per thread (fewer when each would get under min_per_thread), the
                 * calling thread taking the first. */
                size_t ranges = 0, min_len = SIZE_MAX;
                for (size_t i = 0; i < n;) {
                    size_t j = i;
                    assert_int_equal(owner[i], i);
                    while (j < n && owner[j] == i)
                        j++;
                    ranges++;
                    min_len = j - i < min_len ? j - i : min_len;
                    i = j;
                }
                size_t mm = m < 1 ? 1 : m;
                size_t want = (size_t)nthreads < n / mm ? (size_t)nthreads : n / mm;
                if (want < 1)
                    want = 1;
                if (ranges != want) {
                    print_error("n %zu, %d threads, min %zu: %zu ranges, expected %zu\n", n, nthreads, m, ranges,
                                want);
                    fail();
                }
                if (ranges > 1)
                    assert_true(min_len >= mm);
                assert_int_equal(on_caller[0], 1);
            }
        }
    }
    /* No context: one range on the caller. */
    memset(hits, 0, sizeof hits);
    pf_state s = {MAX_N, hits, owner, on_caller, pthread_self(), 0};
    frcnn__parallel_for(NULL, MAX_N, 1, pf_body, &s);
    for (size_t i = 0; i < MAX_N; i++) {
        assert_int_equal(hits[i], 1);
        assert_int_equal(owner[i], 0);
        assert_int_equal(on_caller[i], 1);
    }
    frcnn_ctx_free(ctx);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Checked arithmetic
 * ------------------------------------------------------------------------------------------------------------- */

static void test_checked_arithmetic(void **state)
{
    (void)state;
    size_t out = 12345;
    assert_true(frcnn__mul_size(0, SIZE_MAX, &out));
    assert_int_equal(out, 0);
    assert_true(frcnn__mul_size(SIZE_MAX, 1, &out));
    assert_int_equal(out, SIZE_MAX);
    out = 7;
    assert_false(frcnn__mul_size(SIZE_MAX / 2 + 1, 2, &out));
    assert_int_equal(out, 7);
    assert_true(frcnn__mul_size((size_t)1 << 31, (size_t)1 << 31, &out));
    assert_true(frcnn__add_size(SIZE_MAX - 1, 1, &out));
    assert_int_equal(out, SIZE_MAX);
    out = 7;
    assert_false(frcnn__add_size(SIZE_MAX, 1, &out));
    assert_false(frcnn__add_size(1, SIZE_MAX, &out));
    assert_int_equal(out, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_status_strings),
        cmocka_unit_test(test_ctx_create_and_defaults),
        cmocka_unit_test(test_ctx_rejects_incomplete_allocator),
        cmocka_unit_test(test_ctx_log),
        cmocka_unit_test(test_ctx_last_error),
        cmocka_unit_test(test_ctx_threads),
        cmocka_unit_test(test_blas_core),
        cmocka_unit_test(test_allocator_accounting),
        cmocka_unit_test(test_allocator_fault_injection),
        cmocka_unit_test(test_arena_basics),
        cmocka_unit_test(test_arena_full_and_overflow),
        cmocka_unit_test(test_arena_tensors),
        cmocka_unit_test(test_arena_training_loop),
        cmocka_unit_test(test_tensor_create_and_accessors),
        cmocka_unit_test(test_tensor_invalid_dims),
        cmocka_unit_test(test_tensor_wrap),
        cmocka_unit_test(test_tensor_reshape),
        cmocka_unit_test(test_tensor_fill_zero_copy),
        cmocka_unit_test(test_rng_reference_sequence),
        cmocka_unit_test(test_rng_state_save_load),
        cmocka_unit_test(test_rng_below),
        cmocka_unit_test(test_rng_uniform),
        cmocka_unit_test(test_rng_normal),
        cmocka_unit_test(test_rng_shuffle),
        cmocka_unit_test(test_rng_choose),
        cmocka_unit_test(test_rng_fill_normal),
        cmocka_unit_test(test_parallel_for),
        cmocka_unit_test(test_parallel_pool),
        cmocka_unit_test(test_checked_arithmetic),
    };
    return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
