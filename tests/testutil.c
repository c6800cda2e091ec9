/* Shared test helpers; see testutil.h. */
#include "testutil.h"

#include "../lib/train/ckpt_io.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void tu_assert_close(const char *what, const float *a, const float *b, size_t n, double atol, double rtol)
{
    size_t first_bad = n, worst = 0;
    double max_err = 0.0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)a[i] - (double)b[i]);
        if (isnan(a[i]) != isnan(b[i]))
            err = INFINITY;
        if (err > max_err) {
            max_err = err;
            worst = i;
        }
        if (first_bad == n && !(err <= atol + rtol * fabs((double)b[i])))
            first_bad = i;
    }
    if (first_bad < n) {
        print_error("%s: %zu elements, first mismatch at [%zu]: %.9g vs %.9g; max error %.3g at [%zu] "
                    "(%.9g vs %.9g); atol %.3g rtol %.3g\n",
                    what, n, first_bad, (double)a[first_bad], (double)b[first_bad], max_err, worst,
                    (double)a[worst], (double)b[worst], atol, rtol);
        fail();
    }
}

void tu_assert_identical(const char *what, const float *a, const float *b, size_t n)
{
    if (memcmp(a, b, n * sizeof(float)) != 0) {
        for (size_t i = 0; i < n; i++) {
            if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
                print_error("%s: not bit-identical at [%zu] of %zu: %.9g vs %.9g\n", what, i, n, (double)a[i],
                            (double)b[i]);
                break;
            }
        }
        fail();
    }
}

void tu_expect_error_msg(frcnn_ctx *ctx, frcnn_status got, frcnn_status want, const char *needle)
{
    const char *msg = frcnn_ctx_last_error(ctx);
    if (got != want) {
        print_error("status %d (%s), wanted %d (%s); message: %s\n", (int)got, frcnn_status_str(got), (int)want,
                    frcnn_status_str(want), msg);
        fail();
    }
    if (msg[0] == '\0') {
        print_error("status %d as wanted, but no message in the context\n", (int)got);
        fail();
    }
    if (needle && !strstr(msg, needle)) {
        print_error("message \"%s\" does not contain \"%s\"\n", msg, needle);
        fail();
    }
    frcnn_ctx_clear_error(ctx);
}

void tu_expect_error(frcnn_ctx *ctx, frcnn_status got, frcnn_status want)
{
    tu_expect_error_msg(ctx, got, want, NULL);
}

void tu_fill_uniform(float *a, size_t n, uint64_t seed, float lo, float hi)
{
    frcnn_rng rng;
    frcnn_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++)
        a[i] = lo + (hi - lo) * frcnn_rng_uniform(&rng);
}

frcnn_tensor *tu_tensor(frcnn_ctx *ctx, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    int64_t dims[4] = {d0, d1, d2, d3};
    frcnn_tensor *t = NULL;
    frcnn_status st = frcnn_tensor_create(ctx, ndim, dims, &t);
    if (st != FRCNN_OK) {
        print_error("tensor create: %s\n", frcnn_ctx_last_error(ctx));
        fail();
    }
    return t;
}

frcnn_tensor *tu_rois(frcnn_ctx *ctx, const float *rows, int r)
{
    frcnn_tensor *t = tu_tensor(ctx, 2, r, 5, 0, 0);
    memcpy(frcnn_tensor_data(t), rows, (size_t)r * 5 * sizeof(float));
    return t;
}

frcnn_ctx *tu_ctx(void)
{
    frcnn_ctx *ctx = NULL;
    assert_int_equal(frcnn_ctx_create(NULL, &ctx), FRCNN_OK);
    return ctx;
}

void tu_gradcheck(const char *what, tu_loss_fn loss, void *state, float *param, const float *analytic, size_t n,
                  float eps, double atol, double rtol)
{
    for (size_t i = 0; i < n; i++) {
        float saved = param[i];
        param[i] = saved + eps;
        double up = loss(state);
        param[i] = saved - eps;
        double down = loss(state);
        param[i] = saved;
        /* The step actually taken in float, not the nominal eps. */
        double h = (double)(saved + eps) - (double)(saved - eps);
        double numeric = (up - down) / h;
        double err = fabs(numeric - (double)analytic[i]);
        double scale = fmax(fabs(numeric), fabs((double)analytic[i]));
        if (!(err <= atol + rtol * scale)) {
            print_error("%s: gradient mismatch at [%zu] of %zu: numeric %.9g, analytic %.9g (error %.3g)\n", what,
                        i, n, numeric, (double)analytic[i], err);
            fail();
        }
    }
}

double tu_dot(const float *y, const float *r, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)y[i] * (double)r[i];
    return s;
}

int tu_make_tmpdir(char *dir, size_t cap, const char *what)
{
    if (snprintf(dir, cap, "/tmp/frcnn-%s-XXXXXX", what) >= (int)cap)
        return -1;
    return mkdtemp(dir) ? 0 : -1;
}

int tu_remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[1024];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            rc |= tu_remove_tree(path);
        else
            rc |= unlink(path);
    }
    closedir(d);
    return rc | rmdir(dir);
}

frcnn_config tu_tiny_config(int h, int w, int rpn_channels, int fc_channels)
{
    frcnn_config c = frcnn_config_small();
    c.num_classes = 4;
    c.short_side = h;
    c.max_side = w;
    c.anchors.n_scales = 3;
    c.anchors.scales[0] = 2;
    c.anchors.scales[1] = 4;
    c.anchors.scales[2] = 8;
    c.rpn_channels = rpn_channels;
    c.fc_channels = fc_channels;
    c.dropout = 0.5f; /* the small preset has none; tests keep the paper's so that its masks are exercised */
    c.roi_targets.batch_size = 64;
    c.train_proposals.pre_nms_top_n = 1000;
    c.train_proposals.post_nms_top_n = 200;
    c.test_proposals.pre_nms_top_n = 500;
    c.test_proposals.post_nms_top_n = 100;
    return c;
}

void tu_alloc_init(tu_alloc_state *s, size_t fail_at)
{
    /* The table needs no clearing: only live[0 .. live_blocks) is ever read. */
    s->calls = 0;
    s->fail_at = fail_at;
    s->failed = 0;
    s->frees = 0;
    s->max_request = 0;
    s->live_blocks = 0;
    s->live_bytes = 0;
    s->peak_blocks = 0;
}

void tu_alloc_fail_next(tu_alloc_state *s, size_t k)
{
    s->fail_at = k ? s->calls + k : 0;
}

static void *tu_alloc_alloc(void *user, size_t size, size_t align)
{
    tu_alloc_state *s = user;
    s->calls++;
    if (size > s->max_request)
        s->max_request = size;
    if (align < TU_ALLOC_MIN_ALIGN || align > 4096 || (align & (align - 1)) != 0) {
        print_error("allocator: call %zu asks for %zu bytes aligned to %zu (want a power of two in [%d, 4096])\n",
                    s->calls, size, align, TU_ALLOC_MIN_ALIGN);
        fail();
    }
    if (s->calls == s->fail_at) {
        s->failed++;
        return NULL;
    }
    if (s->live_blocks == TU_ALLOC_MAX_LIVE) {
        print_error("allocator: call %zu would make more than TU_ALLOC_MAX_LIVE = %d blocks live\n", s->calls,
                    TU_ALLOC_MAX_LIVE);
        fail();
    }
    void *p = NULL;
    if (posix_memalign(&p, align, size ? size : 1) != 0) {
        print_error("allocator: the C library has no %zu bytes for call %zu\n", size, s->calls);
        fail();
    }
    memset(p, 0xA5, size);
    s->live[s->live_blocks++] = (tu_alloc_block){p, size, s->calls};
    s->live_bytes += size;
    if (s->live_blocks > s->peak_blocks)
        s->peak_blocks = s->live_blocks;
    return p;
}

static void tu_alloc_free(void *user, void *ptr, size_t size)
{
    tu_alloc_state *s = user;
    s->frees++;
    for (size_t i = 0; i < s->live_blocks; i++) {
        if (s->live[i].ptr != ptr)
            continue;
        if (s->live[i].size != size) {
            print_error("allocator: block of %zu bytes (call %zu) freed with size %zu\n", s->live[i].size,
                        s->live[i].call, size);
            fail();
        }
        s->live_bytes -= s->live[i].size;
        s->live[i] = s->live[--s->live_blocks];
        free(ptr);
        return;
    }
    print_error("allocator: free of %p (size %zu), which it did not hand out or which was freed already\n", ptr,
                size);
    fail(); /* not ours: left alone */
}

frcnn_allocator tu_allocator(tu_alloc_state *s)
{
    return (frcnn_allocator){tu_alloc_alloc, tu_alloc_free, s};
}

frcnn_ctx *tu_alloc_ctx(tu_alloc_state *s, const frcnn_ctx_params *params)
{
    frcnn_allocator a = tu_allocator(s);
    frcnn_ctx_params p = params ? *params : frcnn_ctx_params_default();
    p.allocator = &a;
    frcnn_ctx *ctx = NULL;
    assert_int_equal(frcnn_ctx_create(&p, &ctx), FRCNN_OK);
    /* The allocator is copied at create: the struct it came from may go away (written through a volatile pointer
     * so that the compiler keeps the store). */
    frcnn_allocator *volatile gone = &a;
    memset(gone, 0, sizeof *gone);
    return ctx;
}

tu_alloc_mark tu_alloc_mark_now(const tu_alloc_state *s)
{
    return (tu_alloc_mark){s->calls, s->live_blocks, s->live_bytes};
}

void tu_alloc_assert_since(const tu_alloc_state *s, tu_alloc_mark m)
{
    /* Blocks live now were all allocated by m.calls, and as many as then: then they are the same blocks. */
    size_t newer = 0;
    for (size_t i = 0; i < s->live_blocks; i++)
        newer += s->live[i].call > m.calls;
    if (newer == 0 && s->live_blocks == m.live_blocks && s->live_bytes == m.live_bytes)
        return;
    print_error("allocator: %zu blocks (%zu bytes) live, %zu blocks (%zu bytes) expected; %zu allocated since\n",
                s->live_blocks, s->live_bytes, m.live_blocks, m.live_bytes, newer);
    size_t shown = 0;
    for (size_t i = 0; i < s->live_blocks && shown < 10; i++)
        if (s->live[i].call > m.calls) {
            print_error("  leaked: %zu bytes from call %zu\n", s->live[i].size, s->live[i].call);
            shown++;
        }
    fail();
}

void tu_alloc_assert_clean(const tu_alloc_state *s)
{
    tu_alloc_assert_since(s, (tu_alloc_mark){0, 0, 0});
}

/* ----- Golden fixtures ----------------------------------------------------------------------------------------- */


static const char *tu_dtype_name(uint32_t dtype)
{
    static const char *names[] = {"f32", "f64", "i32", "i64", "u8", "u64"};
    return dtype < sizeof names / sizeof names[0] ? names[dtype] : "unknown dtype";
}

/* "(d0, d1, ...)" into buf; a dims entry < 0 prints as "*". */
static void tu_dims_str(int ndim, const int64_t *dims, char *buf, size_t cap)
{
    size_t len = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < ndim && len < cap; i++) {
        if (dims && dims[i] < 0)
            len += (size_t)snprintf(buf + len, cap - len, "%s*", i ? ", " : "");
        else
            len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? ", " : "", dims ? (long long)dims[i] : 0LL);
    }
    if (len < cap)
        snprintf(buf + len, cap - len, ")");
}

void tu_fixture_open(tu_fixture *f, frcnn_ctx *ctx, const char *name)
{
    memset(f, 0, sizeof *f);
    f->ctx = ctx;
    if (snprintf(f->path, sizeof f->path, "tests/fixtures/%s", name) >= (int)sizeof f->path) {
        print_error("fixture name too long: %s\n", name);
        fail();
    }
    frcnn_status st = frcnn__ckpt_reader_open(ctx, f->path, &f->reader);
    if (st != FRCNN_OK) {
        print_error("fixture %s: cannot open (%s): %s\n(run the tests from the repository root; the fixtures are "
                    "committed, and made by the generators in tools/)\n",
                    f->path, frcnn_status_str(st), frcnn_ctx_last_error(ctx));
        fail();
    }
}

void tu_fixture_close(tu_fixture *f)
{
    frcnn__ckpt_reader_close(f->reader);
    f->reader = NULL;
}

bool tu_fixture_has(tu_fixture *f, const char *tensor)
{
    frcnn__ckpt_tensor_info info;
    frcnn_status st = frcnn__ckpt_tensor_find(f->reader, tensor, &info);
    frcnn_ctx_clear_error(f->ctx);
    return st == FRCNN_OK;
}

/* Finds the tensor and checks its dtype, ndim and the dims given (>= 0). */
static frcnn__ckpt_tensor_info tu_fixture_find(tu_fixture *f, const char *tensor, uint32_t dtype, int ndim,
                                               const int64_t *dims)
{
    frcnn__ckpt_tensor_info info;
    frcnn_status st = frcnn__ckpt_tensor_find(f->reader, tensor, &info);
    if (st != FRCNN_OK) {
        print_error("fixture %s: no tensor '%s' (%s)\n", f->path, tensor, frcnn_ctx_last_error(f->ctx));
        fail();
    }
    bool ok = info.dtype == dtype && info.ndim == ndim;
    for (int i = 0; ok && dims && i < ndim; i++)
        ok = dims[i] < 0 || dims[i] == info.dims[i];
    if (!ok) {
        char have[160], want[160];
        tu_dims_str(info.ndim, info.dims, have, sizeof have);
        if (dims)
            tu_dims_str(ndim, dims, want, sizeof want);
        else
            snprintf(want, sizeof want, "%d dimensions", ndim);
        print_error("fixture %s: tensor '%s' is %s %s, expected %s %s\n", f->path, tensor, tu_dtype_name(info.dtype),
                    have, tu_dtype_name(dtype), want);
        fail();
    }
    return info;
}

static void tu_fixture_read(tu_fixture *f, const char *tensor, void *buf, size_t bytes)
{
    frcnn_status st = frcnn__ckpt_read_tensor(f->reader, tensor, buf, bytes);
    if (st != FRCNN_OK) {
        print_error("fixture %s: reading tensor '%s' failed (%s): %s\n", f->path, tensor, frcnn_status_str(st),
                    frcnn_ctx_last_error(f->ctx));
        fail();
    }
}

int tu_fixture_shape(tu_fixture *f, const char *tensor, int64_t dims[TU_FIXTURE_MAX_DIMS])
{
    frcnn__ckpt_tensor_info info;
    if (frcnn__ckpt_tensor_find(f->reader, tensor, &info) != FRCNN_OK) {
        print_error("fixture %s: no tensor '%s' (%s)\n", f->path, tensor, frcnn_ctx_last_error(f->ctx));
        fail();
    }
    for (int i = 0; i < info.ndim; i++)
        dims[i] = info.dims[i];
    return info.ndim;
}

frcnn_tensor *tu_fixture_tensor(tu_fixture *f, const char *tensor, int ndim, const int64_t *dims)
{
    if (ndim < 1 || ndim > FRCNN_MAX_DIMS) {
        print_error("fixture %s: tensor '%s' asked with %d dimensions; a frcnn_tensor has 1 to %d\n", f->path, tensor,
                    ndim, FRCNN_MAX_DIMS);
        fail();
    }
    frcnn__ckpt_tensor_info info = tu_fixture_find(f, tensor, FRCNN__DT_F32, ndim, dims);
    frcnn_tensor *t = NULL;
    frcnn_status st = frcnn_tensor_create(f->ctx, ndim, info.dims, &t);
    if (st != FRCNN_OK) {
        print_error("fixture %s: tensor '%s': %s\n", f->path, tensor, frcnn_ctx_last_error(f->ctx));
        fail();
    }
    tu_fixture_read(f, tensor, frcnn_tensor_data(t), info.nbytes);
    return t;
}

static void *tu_fixture_array(tu_fixture *f, const char *tensor, uint32_t dtype, int ndim, const int64_t *dims,
                              size_t *numel)
{
    frcnn__ckpt_tensor_info info = tu_fixture_find(f, tensor, dtype, ndim, dims);
    void *buf = malloc(info.nbytes ? info.nbytes : 1);
    assert_non_null(buf);
    tu_fixture_read(f, tensor, buf, info.nbytes);
    if (numel)
        *numel = info.numel;
    return buf;
}

float *tu_fixture_f32(tu_fixture *f, const char *tensor, int ndim, const int64_t *dims, size_t *numel)
{
    return tu_fixture_array(f, tensor, FRCNN__DT_F32, ndim, dims, numel);
}

int32_t *tu_fixture_i32(tu_fixture *f, const char *tensor, int ndim, const int64_t *dims, size_t *numel)
{
    return tu_fixture_array(f, tensor, FRCNN__DT_I32, ndim, dims, numel);
}

int64_t *tu_fixture_i64(tu_fixture *f, const char *tensor, int ndim, const int64_t *dims, size_t *numel)
{
    return tu_fixture_array(f, tensor, FRCNN__DT_I64, ndim, dims, numel);
}

double *tu_fixture_f64(tu_fixture *f, const char *tensor, int ndim, const int64_t *dims, size_t *numel)
{
    return tu_fixture_array(f, tensor, FRCNN__DT_F64, ndim, dims, numel);
}

/* Reads an integer key stored as i64 or u64: FRCNN_OK, or the status of the last attempt. */
static frcnn_status tu_fixture_get_int(tu_fixture *f, const char *key, int64_t *v)
{
    frcnn_status st = frcnn__ckpt_get_i64(f->reader, key, v);
    if (st == FRCNN_ERR_MISMATCH) {
        uint64_t u;
        frcnn_ctx_clear_error(f->ctx);
        st = frcnn__ckpt_get_u64(f->reader, key, &u);
        if (st == FRCNN_OK && u > (uint64_t)INT64_MAX) {
            print_error("fixture %s: META '%s' is %llu, beyond int64\n", f->path, key, (unsigned long long)u);
            fail();
        }
        *v = (int64_t)u;
    }
    return st;
}

int64_t tu_fixture_int(tu_fixture *f, const char *key)
{
    int64_t v = 0;
    frcnn_status st = tu_fixture_get_int(f, key, &v);
    if (st != FRCNN_OK) {
        print_error("fixture %s: no integer META '%s' (%s): %s\n", f->path, key, frcnn_status_str(st),
                    frcnn_ctx_last_error(f->ctx));
        fail();
    }
    return v;
}

double tu_fixture_real(tu_fixture *f, const char *key)
{
    double v = 0.0;
    frcnn_status st = frcnn__ckpt_get_f64(f->reader, key, &v);
    if (st == FRCNN_ERR_MISMATCH) {
        int64_t i = 0;
        frcnn_ctx_clear_error(f->ctx);
        st = tu_fixture_get_int(f, key, &i);
        v = (double)i;
    }
    if (st != FRCNN_OK) {
        print_error("fixture %s: no numeric META '%s' (%s): %s\n", f->path, key, frcnn_status_str(st),
                    frcnn_ctx_last_error(f->ctx));
        fail();
    }
    return v;
}

void tu_fixture_str(tu_fixture *f, const char *key, char *buf, size_t cap)
{
    frcnn_status st = frcnn__ckpt_get_str(f->reader, key, buf, cap, NULL);
    if (st != FRCNN_OK) {
        print_error("fixture %s: no string META '%s' fitting %zu bytes (%s): %s\n", f->path, key, cap,
                    frcnn_status_str(st), frcnn_ctx_last_error(f->ctx));
        fail();
    }
}
