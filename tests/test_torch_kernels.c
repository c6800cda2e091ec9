/* Agreement with PyTorch 1.13 / torchvision 0.14: conv2d, max pooling (ceil and floor mode), RoI max pooling, fully
 * connected, softmax cross-entropy and smooth L1, forward and backward, against golden outputs in
 * tests/fixtures/torch/ made by tools/torch_reference/make_fixtures.py (tests/fixtures/torch/README.md lists every
 * case and tensor). Each fixture file holds cases "c<i>.*"; META "cases" counts them.
 *
 * Tolerances. The references were computed in float64 from the float32 inputs and rounded once, so they are
 * within half an ulp of the exact results; what is left is our float32 rounding. Values are compared with relative
 * tolerance RTOL = 1e-4 plus an absolute tolerance of ATOL_ULPS = 16 float32 ulps (16 * 2^-23) of the largest
 * magnitude in the reference array: the rounding error of a float32 sum is set by the size of its partial sums,
 * which is that of the array's large entries, not by an entry that is near zero because its terms cancel (there a
 * relative test alone is meaningless). The largest error measured uses 5% of this tolerance (FRCNN_TEST_VERBOSE=1
 * prints every comparison's largest error and the fraction of the tolerance it uses).
 * Selections (max pooling, RoI pooling: values and argmax) are compared bit for bit, and so is every gradient
 * entry that receives at most two contributions, whose float32 sum is correctly rounded in any order. */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RTOL 1e-4
#define ATOL_ULPS 16.0

/* "c<i>.<field>": the name of a case's tensor or META key. */
static const char *key(char buf[64], int c, const char *field)
{
    snprintf(buf, 64, "c%d.%s", c, field);
    return buf;
}

/* "<kernel> c<i> (<the case's label>)", for messages. */
#define LABEL_CAP 128
static void case_label(tu_fixture *f, const char *kernel, int c, char label[LABEL_CAP])
{
    char k[64], name[64];
    tu_fixture_str(f, key(k, c, "label"), name, sizeof name);
    snprintf(label, LABEL_CAP, "%s c%d (%s)", kernel, c, name);
}

static void dims_of(const frcnn_tensor *t, int64_t d[4])
{
    for (int i = 0; i < 4; i++)
        d[i] = frcnn_tensor_dim(t, i);
}

static void expect_ok(frcnn_ctx *ctx, frcnn_status st, const char *label, const char *op)
{
    if (st != FRCNN_OK) {
        print_error("%s: %s failed: %s\n", label, op, frcnn_ctx_last_error(ctx));
        fail();
    }
}

/* With FRCNN_TEST_VERBOSE set, the largest absolute error and the largest fraction of the tolerance used. */
static void report(const char *label, const char *what, const float *got, const float *want, size_t n, double atol)
{
    if (!getenv("FRCNN_TEST_VERBOSE"))
        return;
    double max_abs = 0.0, max_used = 0.0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - (double)want[i]);
        double used = err == 0.0 ? 0.0 : err / (atol + RTOL * fabs((double)want[i]));
        max_abs = err > max_abs ? err : max_abs;
        max_used = used > max_used ? used : max_used;
    }
    print_message("  %-44s %-7s n %5zu  max abs error %.3g  tolerance used %.3f\n", label, what, n, max_abs,
                  max_used);
}

/* |got - want| <= atol + RTOL |want| everywhere, atol = ATOL_ULPS ulps of max |want|. */
static void check_close(const char *label, const char *what, const float *got, const float *want, size_t n)
{
    double scale = 0.0;
    for (size_t i = 0; i < n; i++)
        scale = fabs((double)want[i]) > scale ? fabs((double)want[i]) : scale;
    const double atol = ATOL_ULPS * FLT_EPSILON * scale;
    char name[160];
    snprintf(name, sizeof name, "%s: %s", label, what);
    report(label, what, got, want, n, atol);
    tu_assert_close(name, got, want, n, atol, RTOL);
}

static void check_tensor(const char *label, const char *what, const frcnn_tensor *got, const frcnn_tensor *want)
{
    assert_int_equal(frcnn_tensor_numel(got), frcnn_tensor_numel(want));
    check_close(label, what, frcnn_tensor_data(got), frcnn_tensor_data(want), frcnn_tensor_numel(got));
}

/* A gradient scattered through argmax: bit-identical where count[i] <= 2 (one term, or a correctly rounded sum of
 * two), within the tolerance of check_close elsewhere. */
static void check_scattered(const char *label, const char *what, const float *got, const float *want,
                            const int32_t *count, size_t n)
{
    size_t exact = 0;
    for (size_t i = 0; i < n; i++) {
        if (count[i] > 2)
            continue;
        exact++;
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0) {
            print_error("%s: %s[%zu] receives %d contribution(s) and should be exact: %.9g vs %.9g\n", label, what,
                        i, (int)count[i], (double)got[i], (double)want[i]);
            fail();
        }
    }
    if (getenv("FRCNN_TEST_VERBOSE"))
        print_message("  %-44s %-7s %zu of %zu entries have at most 2 contributions: bit-identical\n", label, what,
                      exact, n);
    check_close(label, what, got, want, n);
}

static void check_argmax(const char *label, const int32_t *got, const int32_t *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (got[i] != want[i]) {
            print_error("%s: argmax[%zu] is %d, torch has %d\n", label, i, (int)got[i], (int)want[i]);
            fail();
        }
    }
}

/* Opens tests/fixtures/<file>, checks that it holds at least min_cases cases and runs each. */
typedef void (*case_fn)(frcnn_ctx *ctx, tu_fixture *f, int c);
static void for_each_case(const char *file, int min_cases, case_fn run)
{
    frcnn_ctx *ctx = tu_ctx();
    tu_fixture f;
    tu_fixture_open(&f, ctx, file);
    int cases = (int)tu_fixture_int(&f, "cases");
    assert_true(cases >= min_cases);
    for (int c = 0; c < cases; c++)
        run(ctx, &f, c);
    tu_fixture_close(&f);
    frcnn_ctx_free(ctx);
}

/* ----- conv2d ------------------------------------------------------------------------------------------------- */

static void conv2d_case(frcnn_ctx *ctx, tu_fixture *f, int c)
{
    char k[64], label[LABEL_CAP];
    case_label(f, "conv2d", c, label);
    frcnn_conv2d_params p = frcnn_conv2d_params_default();
    p.stride_h = (int)tu_fixture_int(f, key(k, c, "stride_h"));
    p.stride_w = (int)tu_fixture_int(f, key(k, c, "stride_w"));
    p.pad_h = (int)tu_fixture_int(f, key(k, c, "pad_h"));
    p.pad_w = (int)tu_fixture_int(f, key(k, c, "pad_w"));
    const bool has_bias = tu_fixture_int(f, key(k, c, "bias")) != 0;

    frcnn_tensor *x = tu_fixture_tensor(f, key(k, c, "x"), 4, NULL);
    int64_t xd[4], wd[4], yd[4];
    dims_of(x, xd);
    frcnn_tensor *w = tu_fixture_tensor(f, key(k, c, "w"), 4, (int64_t[]){-1, xd[1], -1, -1});
    dims_of(w, wd);
    frcnn_tensor *b = has_bias ? tu_fixture_tensor(f, key(k, c, "b"), 1, (int64_t[]){wd[0]}) : NULL;
    expect_ok(ctx, frcnn_conv2d_output_shape(ctx, &p, xd, wd, yd), label, "output shape");
    frcnn_tensor *y_ref = tu_fixture_tensor(f, key(k, c, "y"), 4, yd);
    frcnn_tensor *dy = tu_fixture_tensor(f, key(k, c, "dy"), 4, yd);
    frcnn_tensor *dx_ref = tu_fixture_tensor(f, key(k, c, "dx"), 4, xd);
    frcnn_tensor *dw_ref = tu_fixture_tensor(f, key(k, c, "dw"), 4, wd);
    frcnn_tensor *db_ref = has_bias ? tu_fixture_tensor(f, key(k, c, "db"), 1, (int64_t[]){wd[0]}) : NULL;

    size_t ws_bytes = 0;
    expect_ok(ctx, frcnn_conv2d_workspace_bytes(ctx, &p, xd, wd, &ws_bytes), label, "workspace size");
    void *ws = ws_bytes ? malloc(ws_bytes) : NULL;
    frcnn_tensor *y = tu_tensor(ctx, 4, yd[0], yd[1], yd[2], yd[3]);
    frcnn_tensor *dx = tu_tensor(ctx, 4, xd[0], xd[1], xd[2], xd[3]);
    frcnn_tensor *dw = tu_tensor(ctx, 4, wd[0], wd[1], wd[2], wd[3]);
    frcnn_tensor *db = has_bias ? tu_tensor(ctx, 1, wd[0], 0, 0, 0) : NULL;
    expect_ok(ctx, frcnn_conv2d_forward(ctx, &p, x, w, b, y, ws, ws_bytes), label, "forward");
    expect_ok(ctx, frcnn_conv2d_backward(ctx, &p, x, w, dy, dx, dw, db, ws, ws_bytes), label, "backward");

    check_tensor(label, "y", y, y_ref);
    check_tensor(label, "dx", dx, dx_ref);
    check_tensor(label, "dw", dw, dw_ref);
    if (has_bias)
        check_tensor(label, "db", db, db_ref);

    frcnn_tensor *all[] = {x, w, b, y_ref, dy, dx_ref, dw_ref, db_ref, y, dx, dw, db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        frcnn_tensor_free(all[i]);
    free(ws);
}

static void test_conv2d(void **state)
{
    (void)state;
    for_each_case("torch/conv2d.ckpt", 12, conv2d_case);
}

/* ----- max pooling -------------------------------------------------------------------------------------------- */

/* count[plane * plane_size + argmax[i]] += 1 over the (planes, out_size) argmax array; -1 entries skipped. */
static int32_t *scatter_counts(const int32_t *argmax, size_t planes, size_t out_size, size_t plane_size)
{
    int32_t *count = calloc(planes * plane_size, sizeof(int32_t));
    assert_non_null(count);
    for (size_t p = 0; p < planes; p++)
        for (size_t i = 0; i < out_size; i++) {
            int32_t a = argmax[p * out_size + i];
            if (a >= 0)
                count[p * plane_size + (size_t)a]++;
        }
    return count;
}

static void maxpool_case(frcnn_ctx *ctx, tu_fixture *f, int c)
{
    char k[64], label[LABEL_CAP];
    case_label(f, "maxpool", c, label);
    frcnn_maxpool_params p = frcnn_maxpool_params_default();
    p.kernel_h = p.kernel_w = (int)tu_fixture_int(f, key(k, c, "kernel"));
    p.stride_h = p.stride_w = (int)tu_fixture_int(f, key(k, c, "stride"));
    p.pad_h = p.pad_w = (int)tu_fixture_int(f, key(k, c, "pad"));
    p.ceil_mode = tu_fixture_int(f, key(k, c, "ceil_mode")) != 0;

    frcnn_tensor *x = tu_fixture_tensor(f, key(k, c, "x"), 4, NULL);
    int64_t xd[4], yd[4];
    dims_of(x, xd);
    /* Our output-size rule must give torch's shape: the fixture's y is loaded with it. */
    expect_ok(ctx, frcnn_maxpool_output_shape(ctx, &p, xd, yd), label, "output shape");
    frcnn_tensor *y_ref = tu_fixture_tensor(f, key(k, c, "y"), 4, yd);
    size_t ny = frcnn_tensor_numel(y_ref), nx = frcnn_tensor_numel(x);
    int64_t *idx_ref = tu_fixture_i64(f, key(k, c, "argmax"), 4, yd, NULL);
    frcnn_tensor *dy = tu_fixture_tensor(f, key(k, c, "dy"), 4, yd);
    frcnn_tensor *dx_ref = tu_fixture_tensor(f, key(k, c, "dx"), 4, xd);

    frcnn_tensor *y = tu_tensor(ctx, 4, yd[0], yd[1], yd[2], yd[3]);
    frcnn_tensor *dx = tu_tensor(ctx, 4, xd[0], xd[1], xd[2], xd[3]);
    int32_t *argmax = malloc(ny * sizeof(int32_t)), *argmax_ref = malloc(ny * sizeof(int32_t));
    assert_non_null(argmax);
    assert_non_null(argmax_ref);
    for (size_t i = 0; i < ny; i++) /* torch's indices are int64 flat positions in the (h, w) plane, like ours */
        argmax_ref[i] = (int32_t)idx_ref[i];
    expect_ok(ctx, frcnn_maxpool_forward(ctx, &p, x, y, argmax), label, "forward");
    expect_ok(ctx, frcnn_maxpool_backward(ctx, &p, dy, argmax, dx), label, "backward");

    char what[160];
    snprintf(what, sizeof what, "%s: y", label);
    tu_assert_identical(what, frcnn_tensor_data(y), frcnn_tensor_data(y_ref), ny);
    check_argmax(label, argmax, argmax_ref, ny);
    int32_t *count = scatter_counts(argmax_ref, (size_t)(xd[0] * xd[1]), (size_t)(yd[2] * yd[3]),
                                    (size_t)(xd[2] * xd[3]));
    check_scattered(label, "dx", frcnn_tensor_data(dx), frcnn_tensor_data(dx_ref), count, nx);

    frcnn_tensor *all[] = {x, y_ref, dy, dx_ref, y, dx};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        frcnn_tensor_free(all[i]);
    free(idx_ref);
    free(argmax);
    free(argmax_ref);
    free(count);
}

static void test_maxpool(void **state)
{
    (void)state;
    for_each_case("torch/maxpool.ckpt", 11, maxpool_case);
}

/* ----- RoI max pooling ---------------------------------------------------------------------------------------- */

static void roi_pool_case(frcnn_ctx *ctx, tu_fixture *f, int c)
{
    char k[64], label[LABEL_CAP];
    case_label(f, "roi_pool", c, label);
    frcnn_roi_pool_params p = frcnn_roi_pool_params_default();
    p.pooled_h = (int)tu_fixture_int(f, key(k, c, "pooled_h"));
    p.pooled_w = (int)tu_fixture_int(f, key(k, c, "pooled_w"));
    p.spatial_scale = (float)tu_fixture_real(f, key(k, c, "spatial_scale")); /* 1/16 or 1/8: exact */

    frcnn_tensor *x = tu_fixture_tensor(f, key(k, c, "x"), 4, NULL);
    frcnn_tensor *rois = tu_fixture_tensor(f, key(k, c, "rois"), 2, (int64_t[]){-1, 5});
    int64_t xd[4], r = frcnn_tensor_dim(rois, 0);
    dims_of(x, xd);
    const int64_t yd[4] = {r, xd[1], p.pooled_h, p.pooled_w};
    frcnn_tensor *y_ref = tu_fixture_tensor(f, key(k, c, "y"), 4, yd);
    int32_t *argmax_ref = tu_fixture_i32(f, key(k, c, "argmax"), 4, yd, NULL);
    frcnn_tensor *dy = tu_fixture_tensor(f, key(k, c, "dy"), 4, yd);
    frcnn_tensor *dx_ref = tu_fixture_tensor(f, key(k, c, "dx"), 4, xd);
    size_t ny = frcnn_tensor_numel(y_ref), nx = frcnn_tensor_numel(x);

    frcnn_tensor *y = tu_tensor(ctx, 4, yd[0], yd[1], yd[2], yd[3]);
    frcnn_tensor *dx = tu_tensor(ctx, 4, xd[0], xd[1], xd[2], xd[3]);
    int32_t *argmax = malloc(ny * sizeof(int32_t));
    assert_non_null(argmax);
    expect_ok(ctx, frcnn_roi_pool_forward(ctx, &p, x, rois, y, argmax), label, "forward");
    expect_ok(ctx, frcnn_roi_pool_backward(ctx, &p, rois, dy, argmax, dx), label, "backward");

    char what[160];
    snprintf(what, sizeof what, "%s: y", label);
    tu_assert_identical(what, frcnn_tensor_data(y), frcnn_tensor_data(y_ref), ny);
    check_argmax(label, argmax, argmax_ref, ny);

    /* Contributions per dx element: each RoI scatters into the planes of its batch image. */
    const size_t plane = (size_t)(xd[2] * xd[3]), out_plane = (size_t)(p.pooled_h * p.pooled_w);
    int32_t *count = calloc(nx, sizeof(int32_t));
    assert_non_null(count);
    const float *rd = frcnn_tensor_data(rois);
    for (int64_t i = 0; i < r; i++) {
        size_t b = (size_t)rd[5 * i];
        for (int64_t ch = 0; ch < xd[1]; ch++) {
            const int32_t *a = argmax_ref + ((size_t)i * (size_t)xd[1] + (size_t)ch) * out_plane;
            for (size_t o = 0; o < out_plane; o++)
                if (a[o] >= 0)
                    count[(b * (size_t)xd[1] + (size_t)ch) * plane + (size_t)a[o]]++;
        }
    }
    check_scattered(label, "dx", frcnn_tensor_data(dx), frcnn_tensor_data(dx_ref), count, nx);

    frcnn_tensor *all[] = {x, rois, y_ref, dy, dx_ref, y, dx};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        frcnn_tensor_free(all[i]);
    free(argmax_ref);
    free(argmax);
    free(count);
}

static void test_roi_pool(void **state)
{
    (void)state;
    for_each_case("torch/roi_pool.ckpt", 4, roi_pool_case);
}

/* ----- RoI align ---------------------------------------------------------------------------------------------- */

static void roi_align_case(frcnn_ctx *ctx, tu_fixture *f, int c)
{
    char k[64], label[LABEL_CAP];
    case_label(f, "roi_align", c, label);
    frcnn_roi_align_params p = frcnn_roi_align_params_default();
    p.pooled_h = (int)tu_fixture_int(f, key(k, c, "pooled_h"));
    p.pooled_w = (int)tu_fixture_int(f, key(k, c, "pooled_w"));
    p.spatial_scale = (float)tu_fixture_real(f, key(k, c, "spatial_scale")); /* 1/16 or 1/8: exact */
    p.sampling_ratio = (int)tu_fixture_int(f, key(k, c, "sampling_ratio"));
    p.aligned = tu_fixture_int(f, key(k, c, "aligned")) != 0;

    frcnn_tensor *x = tu_fixture_tensor(f, key(k, c, "x"), 4, NULL);
    frcnn_tensor *rois = tu_fixture_tensor(f, key(k, c, "rois"), 2, (int64_t[]){-1, 5});
    int64_t xd[4];
    dims_of(x, xd);
    const int64_t yd[4] = {frcnn_tensor_dim(rois, 0), xd[1], p.pooled_h, p.pooled_w};
    frcnn_tensor *y_ref = tu_fixture_tensor(f, key(k, c, "y"), 4, yd);
    frcnn_tensor *dy = tu_fixture_tensor(f, key(k, c, "dy"), 4, yd);
    frcnn_tensor *dx_ref = tu_fixture_tensor(f, key(k, c, "dx"), 4, xd);
    frcnn_tensor *y = tu_tensor(ctx, 4, yd[0], yd[1], yd[2], yd[3]);
    frcnn_tensor *dx = tu_tensor(ctx, 4, xd[0], xd[1], xd[2], xd[3]);
    size_t ws_bytes;
    expect_ok(ctx, frcnn_roi_align_workspace_bytes(ctx, xd, &ws_bytes), label, "workspace_bytes");
    void *ws = malloc(ws_bytes);
    assert_non_null(ws);
    expect_ok(ctx, frcnn_roi_align_forward(ctx, &p, x, rois, y, ws, ws_bytes), label, "forward");
    expect_ok(ctx, frcnn_roi_align_backward(ctx, &p, rois, dy, dx, ws, ws_bytes), label, "backward");
    free(ws);

    /* The same float operations in the same order as torchvision's kernel. */
    char what[160];
    snprintf(what, sizeof what, "%s: y", label);
    tu_assert_identical(what, frcnn_tensor_data(y), frcnn_tensor_data(y_ref), frcnn_tensor_numel(y));
    check_tensor(label, "dx", dx, dx_ref); /* the reference summed in float64 */

    frcnn_tensor *all[] = {x, rois, y_ref, dy, dx_ref, y, dx};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        frcnn_tensor_free(all[i]);
}

static void test_roi_align(void **state)
{
    (void)state;
    for_each_case("torch/roi_align.ckpt", 5, roi_align_case);
}

/* ----- fully connected ---------------------------------------------------------------------------------------- */

static void linear_case(frcnn_ctx *ctx, tu_fixture *f, int c)
{
    char k[64], label[LABEL_CAP];
    case_label(f, "linear", c, label);
    int64_t xd[TU_FIXTURE_MAX_DIMS];
    int xn = tu_fixture_shape(f, key(k, c, "x"), xd);
    frcnn_tensor *x = tu_fixture_tensor(f, key(k, c, "x"), xn, NULL);
    const int64_t n = xd[0], in = (int64_t)(frcnn_tensor_numel(x) / (size_t)n);
    frcnn_tensor *w = tu_fixture_tensor(f, key(k, c, "w"), 2, (int64_t[]){-1, in});
    const int64_t out = frcnn_tensor_dim(w, 0);
    frcnn_tensor *b = tu_fixture_tensor(f, key(k, c, "b"), 1, (int64_t[]){out});
    frcnn_tensor *dy = tu_fixture_tensor(f, key(k, c, "dy"), 2, (int64_t[]){n, out});
    frcnn_tensor *y_ref = tu_fixture_tensor(f, key(k, c, "y"), 2, (int64_t[]){n, out});
    /* torch's dx has x's shape: (n, ...) */
    frcnn_tensor *dx_ref = tu_fixture_tensor(f, key(k, c, "dx"), xn, xd);
    frcnn_tensor *dw_ref = tu_fixture_tensor(f, key(k, c, "dw"), 2, (int64_t[]){out, in});
    frcnn_tensor *db_ref = tu_fixture_tensor(f, key(k, c, "db"), 1, (int64_t[]){out});

    frcnn_tensor *y = tu_tensor(ctx, 2, n, out, 0, 0);
    frcnn_tensor *dx = NULL, *dw = tu_tensor(ctx, 2, out, in, 0, 0), *db = tu_tensor(ctx, 1, out, 0, 0, 0);
    assert_int_equal(frcnn_tensor_create(ctx, xn, xd, &dx), FRCNN_OK);
    expect_ok(ctx, frcnn_linear_forward(ctx, x, w, b, y), label, "forward");
    expect_ok(ctx, frcnn_linear_backward(ctx, x, w, dy, dx, dw, db), label, "backward");

    check_tensor(label, "y", y, y_ref);
    check_tensor(label, "dx", dx, dx_ref);
    check_tensor(label, "dw", dw, dw_ref);
    check_tensor(label, "db", db, db_ref);

    frcnn_tensor *all[] = {x, w, b, dy, y_ref, dx_ref, dw_ref, db_ref, y, dx, dw, db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        frcnn_tensor_free(all[i]);
}

static void test_linear(void **state)
{
    (void)state;
    for_each_case("torch/linear.ckpt", 3, linear_case);
}

/* ----- softmax cross-entropy ---------------------------------------------------------------------------------- */

static void softmax_xent_case(frcnn_ctx *ctx, tu_fixture *f, int c)
{
    char k[64], label[LABEL_CAP];
    case_label(f, "softmax_xent", c, label);
    const int32_t ignore = (int32_t)tu_fixture_int(f, "ignore_label");
    assert_int_equal(ignore, -1);
    const float dloss = (float)tu_fixture_real(f, key(k, c, "dloss"));
    frcnn_tensor *logits = tu_fixture_tensor(f, key(k, c, "logits"), 2, NULL);
    const int64_t n = frcnn_tensor_dim(logits, 0), kk = frcnn_tensor_dim(logits, 1);
    int32_t *labels = tu_fixture_i32(f, key(k, c, "labels"), 1, (int64_t[]){n}, NULL);
    frcnn_tensor *prob_ref = tu_fixture_tensor(f, key(k, c, "prob"), 2, (int64_t[]){n, kk});
    frcnn_tensor *dlogits_ref = tu_fixture_tensor(f, key(k, c, "dlogits"), 2, (int64_t[]){n, kk});
    float *loss_ref = tu_fixture_f32(f, key(k, c, "loss"), 0, NULL, NULL);

    frcnn_tensor *prob = tu_tensor(ctx, 2, n, kk, 0, 0), *dlogits = tu_tensor(ctx, 2, n, kk, 0, 0);
    float loss = -1.0f;
    expect_ok(ctx, frcnn_softmax_xent_forward(ctx, logits, labels, ignore, prob, &loss), label, "forward");
    expect_ok(ctx, frcnn_softmax_xent_backward(ctx, prob, labels, ignore, dloss, dlogits), label, "backward");

    check_tensor(label, "prob", prob, prob_ref);
    check_tensor(label, "dlogits", dlogits, dlogits_ref);
    if (isnan(*loss_ref)) {
        /* Every row ignored: torch's mean is 0/0 = NaN (with a zero gradient); ours is documented as 0. */
        if (getenv("FRCNN_TEST_VERBOSE"))
            print_message("  %-44s loss: torch NaN, ours %g (documented difference)\n", label, (double)loss);
        assert_true(loss == 0.0f);
    } else {
        check_close(label, "loss", &loss, loss_ref, 1);
    }

    frcnn_tensor *all[] = {logits, prob_ref, dlogits_ref, prob, dlogits};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        frcnn_tensor_free(all[i]);
    free(labels);
    free(loss_ref);
}

static void test_softmax_xent(void **state)
{
    (void)state;
    for_each_case("torch/softmax_xent.ckpt", 5, softmax_xent_case);
}

/* ----- smooth L1 ---------------------------------------------------------------------------------------------- */

static void smooth_l1_case(frcnn_ctx *ctx, tu_fixture *f, int c)
{
    char k[64], label[LABEL_CAP];
    case_label(f, "smooth_l1", c, label);
    frcnn_smooth_l1_params p = frcnn_smooth_l1_params_default();
    p.sigma = (float)tu_fixture_real(f, key(k, c, "sigma"));
    p.normalizer = (float)tu_fixture_real(f, key(k, c, "normalizer"));
    const float dloss = (float)tu_fixture_real(f, key(k, c, "dloss"));
    const bool weights = tu_fixture_int(f, key(k, c, "weights")) != 0;

    int64_t d[TU_FIXTURE_MAX_DIMS];
    int nd = tu_fixture_shape(f, key(k, c, "pred"), d);
    frcnn_tensor *pred = tu_fixture_tensor(f, key(k, c, "pred"), nd, NULL);
    frcnn_tensor *target = tu_fixture_tensor(f, key(k, c, "target"), nd, d);
    frcnn_tensor *inside = weights ? tu_fixture_tensor(f, key(k, c, "inside"), nd, d) : NULL;
    frcnn_tensor *outside = weights ? tu_fixture_tensor(f, key(k, c, "outside"), nd, d) : NULL;
    frcnn_tensor *dpred_ref = tu_fixture_tensor(f, key(k, c, "dpred"), nd, d);
    float *loss_ref = tu_fixture_f32(f, key(k, c, "loss"), 0, NULL, NULL);

    frcnn_tensor *dpred = NULL;
    assert_int_equal(frcnn_tensor_create(ctx, nd, d, &dpred), FRCNN_OK);
    float loss = -1.0f;
    expect_ok(ctx, frcnn_smooth_l1_forward(ctx, &p, pred, target, inside, outside, &loss), label, "forward");
    expect_ok(ctx, frcnn_smooth_l1_backward(ctx, &p, pred, target, inside, outside, dloss, dpred), label,
              "backward");

    check_close(label, "loss", &loss, loss_ref, 1);
    check_tensor(label, "dpred", dpred, dpred_ref);

    frcnn_tensor *all[] = {pred, target, inside, outside, dpred_ref, dpred};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        frcnn_tensor_free(all[i]);
    free(loss_ref);
}

static void test_smooth_l1(void **state)
{
    (void)state;
    for_each_case("torch/smooth_l1.ckpt", 4, smooth_l1_case);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_maxpool),
        cmocka_unit_test(test_roi_pool),
        cmocka_unit_test(test_roi_align),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_softmax_xent),
        cmocka_unit_test(test_smooth_l1),
    };
    return cmocka_run_group_tests_name("torch_kernels", tests, NULL, NULL);
}
