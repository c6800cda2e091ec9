/* Tests of RoI align (lib/kernels/roi_align.c): hand-computed values on linear maps (where bilinear sampling is
 * exact and a bin's mean is the map's value at the bin centre), the sampling grid on a small non-linear map,
 * samples outside the map, a reference on random cases, finite-difference gradients, accumulation, bad arguments,
 * determinism across thread counts and a batch of several images. */
#include "testutil.h"

#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A workspace larger than any map in this file needs (checked by the kernel on every call). */
static float workspace[1 << 20];
#define align_forward(ctx, p, x, rois, y) frcnn_roi_align_forward(ctx, p, x, rois, y, workspace, sizeof workspace)
#define align_backward(ctx, p, rois, dy, dx) \
    frcnn_roi_align_backward(ctx, p, rois, dy, dx, workspace, sizeof workspace)

static frcnn_roi_align_params params(int ph, int pw, float scale, int ratio, bool aligned)
{
    frcnn_roi_align_params p;
    p.pooled_h = ph;
    p.pooled_w = pw;
    p.spatial_scale = scale;
    p.sampling_ratio = ratio;
    p.aligned = aligned;
    return p;
}

/* Fails unless every element of t has exactly the bits of v. */
static void assert_all_bits(const char *what, const frcnn_tensor *t, float v)
{
    const float *d = frcnn_tensor_data(t);
    for (size_t i = 0; i < frcnn_tensor_numel(t); i++) {
        if (memcmp(&d[i], &v, sizeof v) != 0) {
            print_error("%s: element %zu is %.9g, expected it untouched (%.9g)\n", what, i, (double)d[i], (double)v);
            fail();
        }
    }
}

/* Compares a float result with a double expectation (rounded to float). */
static void assert_close_d(const char *what, const float *got, const double *want, size_t n, double atol, double rtol)
{
    float *w = malloc((n ? n : 1) * sizeof *w);
    assert_non_null(w);
    for (size_t i = 0; i < n; i++)
        w[i] = (float)want[i];
    tu_assert_close(what, got, w, n, atol, rtol);
    free(w);
}

/* The ramp: x[b][c][h][w] = 1000 b + 100 c + 10 h + w, linear in (h, w) on every plane. */
enum { RN = 2, RC = 2, RH = 8, RW = 10 };

static frcnn_tensor *ramp(frcnn_ctx *ctx)
{
    frcnn_tensor *x = tu_tensor(ctx, 4, RN, RC, RH, RW);
    float *d = frcnn_tensor_data(x);
    for (int b = 0; b < RN; b++)
        for (int c = 0; c < RC; c++)
            for (int h = 0; h < RH; h++)
                for (int w = 0; w < RW; w++)
                    *d++ = (float)(1000 * b + 100 * c + 10 * h + w);
    return x;
}

/* ------------------------------------------------------------------------------------------------------------
 * A reference written from torchvision's roi_align_kernel.cpp: the sample positions in float exactly as
 * torchvision computes them for float tensors (so that the comparisons with -1, size - 1 and size agree), the
 * bilinear weights and the sums in double. */

typedef struct ref_geom {
    float sh, sw, bh, bw;
    int gh, gw;
    double count;
} ref_geom;

static ref_geom ref_geometry(const frcnn_roi_align_params *p, const float *roi)
{
    ref_geom g;
    const float off = p->aligned ? 0.5f : 0.0f, s = p->spatial_scale;
    g.sw = roi[1] * s - off;
    g.sh = roi[2] * s - off;
    float rw = roi[3] * s - off - g.sw, rh = roi[4] * s - off - g.sh;
    if (!p->aligned) {
        rw = rw > 1.0f ? rw : 1.0f;
        rh = rh > 1.0f ? rh : 1.0f;
    }
    g.bh = rh / (float)p->pooled_h;
    g.bw = rw / (float)p->pooled_w;
    g.gh = p->sampling_ratio > 0 ? p->sampling_ratio : (int)ceilf(rh / (float)p->pooled_h);
    g.gw = p->sampling_ratio > 0 ? p->sampling_ratio : (int)ceilf(rw / (float)p->pooled_w);
    long long cnt = (long long)g.gh * (long long)g.gw;
    g.count = cnt > 1 ? (double)cnt : 1.0;
    return g;
}

static float ref_pos(float start, float bin, int grid, int b, int i)
{
    return start + (float)b * bin + ((float)i + 0.5f) * bin / (float)grid;
}

typedef struct ref_tap {
    bool in;
    int lo, hi;
    double wlo, whi;
} ref_tap;

static ref_tap ref_axis(float pos, int size)
{
    ref_tap t = {false, 0, 0, 0.0, 0.0};
    if (pos < -1.0f || pos > (float)size)
        return t;
    double v = pos <= 0.0f ? 0.0 : (double)pos;
    int lo = (int)v;
    t.in = true;
    if (lo >= size - 1) {
        t.lo = t.hi = size - 1;
        v = (double)(size - 1);
    } else {
        t.lo = lo;
        t.hi = lo + 1;
    }
    t.whi = v - (double)t.lo;
    t.wlo = 1.0 - t.whi;
    return t;
}

/* y (r, c, ph, pw) in double; dx (n, c, h, w) += the gradient of sum(y * dy) when dy and dx are not NULL. */
static void ref_roi_align(const frcnn_roi_align_params *p, const float *x, int c, int h, int w, const float *rois,
                          int r, double *y, const float *dy, double *dx)
{
    const int ph = p->pooled_h, pw = p->pooled_w;
    for (int i = 0; i < r; i++) {
        const float *roi = rois + 5 * i;
        const int b = (int)roi[0];
        const ref_geom g = ref_geometry(p, roi);
        for (int ch = 0; ch < c; ch++) {
            const size_t plane = (((size_t)b * (size_t)c) + (size_t)ch) * (size_t)h * (size_t)w;
            for (int u = 0; u < ph; u++) {
                for (int v = 0; v < pw; v++) {
                    const size_t o = (((size_t)i * (size_t)c + (size_t)ch) * (size_t)ph + (size_t)u) * (size_t)pw +
                                     (size_t)v;
                    double sum = 0.0;
                    for (int iy = 0; iy < g.gh; iy++) {
                        ref_tap ty = ref_axis(ref_pos(g.sh, g.bh, g.gh, u, iy), h);
                        for (int ix = 0; ix < g.gw; ix++) {
                            ref_tap tx = ref_axis(ref_pos(g.sw, g.bw, g.gw, v, ix), w);
                            if (!ty.in || !tx.in)
                                continue;
                            const size_t q[4] = {(size_t)ty.lo * (size_t)w + (size_t)tx.lo,
                                                 (size_t)ty.lo * (size_t)w + (size_t)tx.hi,
                                                 (size_t)ty.hi * (size_t)w + (size_t)tx.lo,
                                                 (size_t)ty.hi * (size_t)w + (size_t)tx.hi};
                            const double wt[4] = {ty.wlo * tx.wlo, ty.wlo * tx.whi, ty.whi * tx.wlo,
                                                  ty.whi * tx.whi};
                            for (int k = 0; k < 4; k++) {
                                if (x)
                                    sum += wt[k] * (double)x[plane + q[k]];
                                if (dy && dx)
                                    dx[plane + q[k]] += wt[k] * (double)dy[o] / g.count;
                            }
                        }
                    }
                    if (y)
                        y[o] = sum / g.count;
                }
            }
        }
    }
}

/* Random RoIs in input pixels over an image of img_h x img_w: corners from -25% to 125% of the extent, some exact
 * halves, mostly well-formed, some reversed, some tiny (below a tenth of a feature cell at any scale used). */
static void random_rois(float *rois, int r, int n, float img_h, float img_w, uint64_t seed)
{
    frcnn_rng rng;
    frcnn_rng_seed(&rng, seed);
    for (int i = 0; i < r; i++) {
        float *q = rois + 5 * i;
        q[0] = (float)frcnn_rng_below(&rng, (uint64_t)n);
        for (int k = 0; k < 4; k++) {
            float extent = k % 2 == 0 ? img_w : img_h;
            q[1 + k] = -0.25f * extent + 1.5f * extent * frcnn_rng_uniform(&rng);
            if (frcnn_rng_below(&rng, 4) == 0)
                q[1 + k] = floorf(q[1 + k]) + 0.5f;
        }
        uint64_t kind = frcnn_rng_below(&rng, 8);
        if (kind == 0) { /* tiny */
            q[3] = q[1] + 0.05f * frcnn_rng_uniform(&rng);
            q[4] = q[2] + 0.05f * frcnn_rng_uniform(&rng);
        } else if (kind != 1) { /* well-formed; kind 1 stays as drawn, possibly reversed */
            float t;
            if (q[1] > q[3]) { t = q[1]; q[1] = q[3]; q[3] = t; }
            if (q[2] > q[4]) { t = q[2]; q[2] = q[4]; q[4] = t; }
        }
    }
}

/* ------------------------------------------------------------------------------------------------------------
 * 1. Defaults. */

static void test_params_default(void **state)
{
    (void)state;
    frcnn_roi_align_params p = frcnn_roi_align_params_default();
    assert_int_equal(p.pooled_h, 7);
    assert_int_equal(p.pooled_w, 7);
    assert_true(p.spatial_scale == 0.0625f);
    assert_int_equal(p.sampling_ratio, 2);
    assert_true(p.aligned);
}

/* ------------------------------------------------------------------------------------------------------------
 * 2. Hand-computed values on the ramp. A bin's samples are symmetric about its centre and bilinear interpolation
 * of a linear function is exact while every sample lies in [0, size - 1] on both axes, so each output is
 * 1000 b + 100 c + 10 cy + cx at the bin centre (cy, cx), whatever the number of samples. */

/* Corners (1,1)-(4,4), scale 1, not aligned, 2x2 bins, 2x2 samples: start 1, size 3, bin 1.5, samples at 1.375,
 * 2.125 (bin 0) and 2.875, 3.625 (bin 1); centres 1.75 and 3.25, so y = 10 * 1.75 + 1.75 = 19.25, 17.5 + 3.25 =
 * 20.75, 32.5 + 1.75 = 34.25, 35.75. Every weight and value is a short binary fraction: the result is exact. Image 1
 * channel 1 adds 1100. y starts as NaN, so every output must be written. */
static void test_linear_literal(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = ramp(ctx);
    const float rows[2 * 5] = {0, 1, 1, 4, 4, 1, 1, 1, 4, 4};
    frcnn_tensor *rois = tu_rois(ctx, rows, 2);
    frcnn_tensor *y = tu_tensor(ctx, 4, 2, RC, 2, 2);
    frcnn_tensor_fill(y, NAN);
    frcnn_roi_align_params p = params(2, 2, 1.0f, 2, false);
    assert_int_equal(align_forward(ctx, &p, x, rois, y), FRCNN_OK);
    const float want[2 * RC * 4] = {19.25f,   20.75f,   34.25f,   35.75f,   119.25f,  120.75f,  134.25f,  135.75f,
                                    1019.25f, 1020.75f, 1034.25f, 1035.75f, 1119.25f, 1120.75f, 1134.25f, 1135.75f};
    tu_assert_close("y", frcnn_tensor_data(y), want, 2 * RC * 4, 0.0, 0.0);
    frcnn_tensor_free(y);
    frcnn_tensor_free(rois);
    frcnn_tensor_free(x);
    frcnn_ctx_free(ctx);
}

typedef struct lin_case {
    float roi[5];
    int ph, pw;
    float scale;
    int ratio;
    bool aligned;
} lin_case;

/* Checks one case against the bin centres, computed in double from the RoI and the parameters; first checks (in
 * double) that every sample lies inside the map, where the map is linear. */
static void check_linear(const lin_case *k)
{
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = ramp(ctx);
    frcnn_tensor *rois = tu_rois(ctx, k->roi, 1);
    frcnn_tensor *y = tu_tensor(ctx, 4, 1, RC, k->ph, k->pw);
    frcnn_tensor_fill(y, NAN);
    frcnn_roi_align_params p = params(k->ph, k->pw, k->scale, k->ratio, k->aligned);
    assert_int_equal(align_forward(ctx, &p, x, rois, y), FRCNN_OK);

    const double off = k->aligned ? 0.5 : 0.0, s = (double)k->scale;
    const double sw = (double)k->roi[1] * s - off, sh = (double)k->roi[2] * s - off;
    double rw = (double)k->roi[3] * s - off - sw, rh = (double)k->roi[4] * s - off - sh;
    if (!k->aligned) {
        rw = fmax(rw, 1.0);
        rh = fmax(rh, 1.0);
    }
    const double bh = rh / k->ph, bw = rw / k->pw;
    const int gh = k->ratio > 0 ? k->ratio : (int)ceil(rh / k->ph);
    const int gw = k->ratio > 0 ? k->ratio : (int)ceil(rw / k->pw);
    assert_true(gh >= 1 && gw >= 1 && bh >= 0.0 && bw >= 0.0);
    const double y_first = sh + 0.5 * bh / gh, y_last = sh + (k->ph - 1) * bh + (gh - 0.5) * bh / gh;
    const double x_first = sw + 0.5 * bw / gw, x_last = sw + (k->pw - 1) * bw + (gw - 0.5) * bw / gw;
    assert_true(y_first >= 0.0 && y_last <= RH - 1 && x_first >= 0.0 && x_last <= RW - 1);

    double want[RC * 64];
    assert_true(RC * k->ph * k->pw <= RC * 64);
    for (int c = 0; c < RC; c++)
        for (int i = 0; i < k->ph; i++)
            for (int j = 0; j < k->pw; j++) {
                double cy = sh + (i + 0.5) * bh, cx = sw + (j + 0.5) * bw;
                want[(c * k->ph + i) * k->pw + j] = 1000.0 * k->roi[0] + 100.0 * c + 10.0 * cy + cx;
            }
    assert_close_d("y vs the ramp at the bin centres", frcnn_tensor_data(y), want, (size_t)(RC * k->ph * k->pw),
                   1e-3, 1e-6);
    frcnn_tensor_free(y);
    frcnn_tensor_free(rois);
    frcnn_tensor_free(x);
    frcnn_ctx_free(ctx);
}

static void test_linear_cases(void **state)
{
    (void)state;
    const lin_case cases[] = {
        /* not aligned, scale 1, 2x2 samples: start (1, 1), size 3 */
        {{0, 1, 1, 4, 4}, 2, 2, 1.0f, 2, false},
        /* aligned, scale 1, one sample: start (x 1, y 2), size 7 x 4, bins 7/3 x 2 */
        {{1, 1.5f, 2.5f, 8.5f, 6.5f}, 2, 3, 1.0f, 1, true},
        /* aligned, scale 1/4, 2x2 samples: start (1, 0.5), size 6 x 5.5 */
        {{0, 6, 4, 30, 26}, 3, 3, 0.25f, 2, true},
        /* not aligned, scale 1/4, adaptive (0): start (1, 2), size 8 x 5, grid 3 x 4 */
        {{1, 4, 8, 36, 28}, 2, 2, 0.25f, 0, false},
        /* aligned, scale 1, adaptive (-1): start (0, 0), size 9 x 7, 7x7 bins, grid 1 x 2; the last samples land
         * near the map's last row */
        {{0, 0.5f, 0.5f, 9.5f, 7.5f}, 7, 7, 1.0f, -1, true},
        /* not aligned, scale 1, a single point forced to 1x1: start (2, 3) */
        {{1, 2, 3, 2, 3}, 2, 2, 1.0f, 1, false},
        /* aligned, scale 1/2, three samples a side: start (1, 2), size 7 x 4 */
        {{1, 3, 5, 17, 13}, 2, 2, 0.5f, 3, true},
        /* not aligned, scale 1/4, adaptive with a fractional grid: size 5.75 x 3.5 over 2x2 bins, grid 2 x 3 */
        {{0, 5, 6, 28, 20}, 2, 2, 0.25f, 0, false},
        /* aligned, scale 1, 2 samples, non-square bins */
        {{1, 0.5f, 0.5f, 9.9f, 7.9f}, 3, 5, 1.0f, 2, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_linear(&cases[i]);
}

/* One RoI, 1x1 bins, two channels: y must equal want[0], want[1]. */
static void check_single(frcnn_ctx *ctx, const frcnn_tensor *x, const float roi[5], frcnn_roi_align_params p,
                         const float want[2], double atol)
{
    frcnn_tensor *rois = tu_rois(ctx, roi, 1);
    frcnn_tensor *y = tu_tensor(ctx, 4, 1, 2, 1, 1);
    frcnn_tensor_fill(y, NAN);
    assert_int_equal(align_forward(ctx, &p, x, rois, y), FRCNN_OK);
    tu_assert_close("y", frcnn_tensor_data(y), want, 2, atol, 0.0);
    frcnn_tensor_free(y);
    frcnn_tensor_free(rois);
}

/* Malformed RoIs on the ramp (image 0), 1x1 bin:
 *   - not aligned, (5,4)-(1,0), 2 samples: size forced to 1x1 from (5, 4): samples x 5.25, 5.75, y 4.25, 4.75,
 *     centre (4.5, 5.5): 50.5.
 *   - aligned, same box: start (4.5, 3.5), size -4 x -4 (no clamp in aligned mode), samples x 3.5 and 1.5, y 2.5
 *     and 0.5, centre (1.5, 2.5): 17.5.
 *   - aligned, same box, adaptive: grid ceil(-4) = -4 a side, no sample: 0.
 *   - aligned, a point at (3.5, 2.5), 2 samples: all samples at (x 3, y 2): 23.
 *   - aligned, a point, adaptive: grid ceil(0) = 0: 0.
 *   - not aligned, a point at (3, 2), adaptive: size 1, grid 1, sample (x 3.5, y 2.5): 28.5. */
static void test_malformed_rois(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = ramp(ctx);
    const float rev[5] = {0, 5, 4, 1, 0}, pt_a[5] = {0, 3.5f, 2.5f, 3.5f, 2.5f}, pt[5] = {0, 3, 2, 3, 2};
    check_single(ctx, x, rev, params(1, 1, 1.0f, 2, false), (const float[2]){50.5f, 150.5f}, 0.0);
    check_single(ctx, x, rev, params(1, 1, 1.0f, 2, true), (const float[2]){17.5f, 117.5f}, 0.0);
    check_single(ctx, x, rev, params(1, 1, 1.0f, 0, true), (const float[2]){0.0f, 0.0f}, 0.0);
    check_single(ctx, x, pt_a, params(1, 1, 1.0f, 2, true), (const float[2]){23.0f, 123.0f}, 0.0);
    check_single(ctx, x, pt_a, params(1, 1, 1.0f, 0, true), (const float[2]){0.0f, 0.0f}, 0.0);
    check_single(ctx, x, pt, params(1, 1, 1.0f, 0, false), (const float[2]){28.5f, 128.5f}, 0.0);
    frcnn_tensor_free(x);
    frcnn_ctx_free(ctx);
}

/* The sampling grid, on a one-row map x = [1, 2, 4, 8] (1x1x1x4; a second channel holds 10x the first) and one
 * bin. With a single row, every sample whose y lies in [-1, 1] reads row 0 with weight 1, so only the columns
 * matter; a column at or beyond 3 reads x[3] = 8. Not aligned, scale 1, RoI x from 0 to 4 (bin 4), y 0 to 1:
 *   ratio 1: sample 2                    -> 4
 *   ratio 2: samples 1, 3                -> (2 + 8) / 2 = 5
 *   ratio 3: samples 2/3, 2, 10/3        -> (5/3 + 4 + 8) / 3 = 41/9
 *   ratio 0 (ceil(4/1) = 4 x ceil(1/1) = 1): samples 0.5, 1.5, 2.5, 3.5 -> (1.5 + 3 + 6 + 8) / 4 = 4.625
 *   ratio 4: the same columns over 4 rows -> 4.625
 * RoI x from 0 to 3.5, ratio -1: ceil(3.5) = 4 columns (not 3): 0.4375, 1.3125, 2.1875, 3.0625
 *   -> (1.4375 + 2.625 + 4.75 + 8) / 4 = 4.203125
 * RoI x 0..4, y 0..2.5, ratio 0: grid 3 rows x 4 columns; row samples 5/12 (inside), 1.25 and 25/12 (beyond the
 * height 1: no contribution, but counted): 18.5 / 12.
 * Aligned, RoI (0.5, 0.5)-(4.5, 1.5), ratio 2: start 0, size 4 x 1, same columns as ratio 2 above -> 5. */
static void test_sampling_grid(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = tu_tensor(ctx, 4, 1, 2, 1, 4);
    const float v[8] = {1, 2, 4, 8, 10, 20, 40, 80};
    memcpy(frcnn_tensor_data(x), v, sizeof v);
    const float a[5] = {0, 0, 0, 4, 1}, b[5] = {0, 0, 0, 3.5f, 1}, c[5] = {0, 0, 0, 4, 2.5f};
    const float d[5] = {0, 0.5f, 0.5f, 4.5f, 1.5f};
    const float r3 = (float)(41.0 / 9.0), r12 = (float)(18.5 / 12.0);
    check_single(ctx, x, a, params(1, 1, 1.0f, 1, false), (const float[2]){4.0f, 40.0f}, 0.0);
    check_single(ctx, x, a, params(1, 1, 1.0f, 2, false), (const float[2]){5.0f, 50.0f}, 0.0);
    check_single(ctx, x, a, params(1, 1, 1.0f, 3, false), (const float[2]){r3, 10.0f * r3}, 1e-5);
    check_single(ctx, x, a, params(1, 1, 1.0f, 0, false), (const float[2]){4.625f, 46.25f}, 0.0);
    check_single(ctx, x, a, params(1, 1, 1.0f, 4, false), (const float[2]){4.625f, 46.25f}, 0.0);
    check_single(ctx, x, b, params(1, 1, 1.0f, -1, false), (const float[2]){4.203125f, 42.03125f}, 1e-5);
    check_single(ctx, x, c, params(1, 1, 1.0f, 0, false), (const float[2]){r12, 10.0f * r12}, 1e-5);
    check_single(ctx, x, d, params(1, 1, 1.0f, 2, true), (const float[2]){5.0f, 50.0f}, 0.0);
    frcnn_tensor_free(x);
    frcnn_ctx_free(ctx);
}

/* ------------------------------------------------------------------------------------------------------------
 * 3. Samples outside the map, on a 3x4 map x = 100 + 10 h + w (so that 0 means "no contribution"). A sample below
 * -1 or beyond the size contributes 0; in [-1, 0] it reads index 0; at or beyond size - 1 the last index. */

enum { OH = 3, OW = 4 };

static frcnn_tensor *outside_map(frcnn_ctx *ctx)
{
    frcnn_tensor *x = tu_tensor(ctx, 4, 1, 1, OH, OW);
    float *d = frcnn_tensor_data(x);
    for (int h = 0; h < OH; h++)
        for (int w = 0; w < OW; w++)
            d[h * OW + w] = (float)(100 + 10 * h + w);
    return x;
}

/* Not aligned, scale 1, one sample per bin, RoI (-2,-2)-(5,4) in 6x7 bins of 1: samples y -1.5 (out), -0.5 (row
 * 0), 0.5, 1.5, 2.5 (row 2), 3.5 (out); x -1.5 (out), -0.5 (col 0), 0.5, 1.5, 2.5, 3.5 (col 3), 4.5 (out). Then
 * backward with dy = 1 against the reference. */
static void test_outside_grid(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = outside_map(ctx);
    const float row[5] = {0, -2, -2, 5, 4};
    frcnn_tensor *rois = tu_rois(ctx, row, 1);
    frcnn_tensor *y = tu_tensor(ctx, 4, 1, 1, 6, 7);
    frcnn_tensor_fill(y, NAN);
    frcnn_roi_align_params p = params(6, 7, 1.0f, 1, false);
    assert_int_equal(align_forward(ctx, &p, x, rois, y), FRCNN_OK);
    const float want[6 * 7] = {
        0, 0,   0,     0,     0,     0,   0, /* y -1.5 */
        0, 100, 100.5, 101.5, 102.5, 103, 0, /* y -0.5 -> 0 */
        0, 105, 105.5, 106.5, 107.5, 108, 0, /* y 0.5 */
        0, 115, 115.5, 116.5, 117.5, 118, 0, /* y 1.5 */
        0, 120, 120.5, 121.5, 122.5, 123, 0, /* y 2.5 -> 2 */
        0, 0,   0,     0,     0,     0,   0, /* y 3.5 */
    };
    tu_assert_close("y", frcnn_tensor_data(y), want, 6 * 7, 0.0, 0.0);

    /* backward, dy = 1: each in-map sample spreads weight 1 over its taps. Rows: -0.5 -> row 0 (1), 0.5 -> rows 0,
     * 1 (1/2 each), 1.5 -> rows 1, 2 (1/2 each), 2.5 -> row 2 (1): per-row totals 1.5, 1, 1.5. Columns likewise:
     * -0.5 -> 0, 0.5 -> 0 and 1, 1.5 -> 1 and 2, 2.5 -> 2 and 3, 3.5 -> 3: totals 1.5, 1, 1, 1.5. dx is the outer
     * product. */
    frcnn_tensor *dy = tu_tensor(ctx, 4, 1, 1, 6, 7);
    frcnn_tensor_fill(dy, 1.0f);
    frcnn_tensor *dx = tu_tensor(ctx, 4, 1, 1, OH, OW);
    assert_int_equal(align_backward(ctx, &p, rois, dy, dx), FRCNN_OK);
    const float rt[OH] = {1.5f, 1.0f, 1.5f}, ct[OW] = {1.5f, 1.0f, 1.0f, 1.5f};
    float want_dx[OH * OW];
    for (int h = 0; h < OH; h++)
        for (int w = 0; w < OW; w++)
            want_dx[h * OW + w] = rt[h] * ct[w];
    tu_assert_close("dx", frcnn_tensor_data(dx), want_dx, OH * OW, 0.0, 0.0);
    frcnn_tensor_free(dx);
    frcnn_tensor_free(dy);
    frcnn_tensor_free(y);
    frcnn_tensor_free(rois);
    frcnn_tensor_free(x);
    frcnn_ctx_free(ctx);
}

/* Single samples at the edges (not aligned, scale 1, 1x1 bin of size 1, one sample at the RoI centre):
 *   0: (x -1, y -1), exactly -1 on both axes: clamped to (0, 0): 100
 *   1: (x 4, y 3), exactly the size: the last column and row: 123
 *   2: (x 4.25, y 1): beyond the width: 0
 *   3: (x 1, y -1.25): below -1: 0
 *   4: (x -0.75, y 1.75): column 0; rows 1 and 2 weighted 1/4, 3/4: 100 + 17.5 = 117.5
 *   5: (x 3.25, y 2.75): beyond size - 1 on both: x[2][3] = 123
 * and backward with dy = 1, 2, 4, 8, 16, 32: dx[0][0] = 1, dx[2][3] = 2 + 32, dx[1][0] = 16/4, dx[2][0] = 12. */
static void test_outside_edges(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = outside_map(ctx);
    const float rows[6 * 5] = {
        0, -1.5f, -1.5f, -0.5f, -0.5f, /* 0 */
        0, 3.5f,  2.5f,  4.5f,  3.5f,  /* 1 */
        0, 3.75f, 0.5f,  4.75f, 1.5f,  /* 2 */
        0, 0.5f,  -1.75f, 1.5f, -0.75f, /* 3 */
        0, -1.25f, 1.25f, -0.25f, 2.25f, /* 4 */
        0, 2.75f, 2.25f, 3.75f, 3.25f, /* 5 */
    };
    frcnn_tensor *rois = tu_rois(ctx, rows, 6);
    frcnn_tensor *y = tu_tensor(ctx, 4, 6, 1, 1, 1);
    frcnn_tensor_fill(y, NAN);
    frcnn_roi_align_params p = params(1, 1, 1.0f, 1, false);
    assert_int_equal(align_forward(ctx, &p, x, rois, y), FRCNN_OK);
    const float want[6] = {100, 123, 0, 0, 117.5f, 123};
    tu_assert_close("y", frcnn_tensor_data(y), want, 6, 0.0, 0.0);

    frcnn_tensor *dy = tu_tensor(ctx, 4, 6, 1, 1, 1);
    for (int i = 0; i < 6; i++)
        frcnn_tensor_data(dy)[i] = (float)(1 << i);
    frcnn_tensor *dx = tu_tensor(ctx, 4, 1, 1, OH, OW);
    assert_int_equal(align_backward(ctx, &p, rois, dy, dx), FRCNN_OK);
    float want_dx[OH * OW] = {0};
    want_dx[0 * OW + 0] = 1;
    want_dx[2 * OW + 3] = 34;
    want_dx[1 * OW + 0] = 4;
    want_dx[2 * OW + 0] = 12;
    tu_assert_close("dx", frcnn_tensor_data(dx), want_dx, OH * OW, 0.0, 0.0);
    frcnn_tensor_free(dx);
    frcnn_tensor_free(dy);
    frcnn_tensor_free(y);
    frcnn_tensor_free(rois);
    frcnn_tensor_free(x);
    frcnn_ctx_free(ctx);
}

/* RoIs wholly outside give 0 and no gradient; a RoI much larger than the map averages over samples that are
 * mostly outside: (-4,-3)-(8,6), not aligned, 1x1 bin, 2x2 samples: x -1 (col 0) and 5 (out), y -0.75 (row 0) and
 * 3.75 (out): one sample reads x[0][0] = 100, the mean over 4 samples is 25; its gradient (dy 1) is 1/4 at [0][0]. */
static void test_outside_whole(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = outside_map(ctx);
    const float rows[5 * 5] = {
        0, 10, 10, 20, 20,   /* beyond the far corner */
        0, -20, -20, -5, -5, /* before the origin */
        0, -20, 0, -5, 3,    /* left of the map, rows inside */
        0, 0, 3.5f, 4, 10,   /* below the map (y from 3.5 up), columns inside */
        0, -4, -3, 8, 6,     /* around the whole map */
    };
    frcnn_tensor *rois = tu_rois(ctx, rows, 5);
    const frcnn_roi_align_params ps[3] = {params(1, 1, 1.0f, 2, false), params(1, 1, 1.0f, 2, true),
                                          params(1, 1, 1.0f, 0, true)};
    for (int k = 0; k < 3; k++) {
        frcnn_tensor *y = tu_tensor(ctx, 4, 5, 1, 1, 1);
        frcnn_tensor_fill(y, NAN);
        assert_int_equal(align_forward(ctx, &ps[k], x, rois, y), FRCNN_OK);
        const float zeros[4] = {0, 0, 0, 0};
        tu_assert_close("y of rois outside", frcnn_tensor_data(y), zeros, 4, 0.0, 0.0);
        if (k == 0)
            assert_true(frcnn_tensor_data(y)[4] == 25.0f);
        frcnn_tensor *dy = tu_tensor(ctx, 4, 5, 1, 1, 1);
        frcnn_tensor_fill(dy, 1.0f);
        frcnn_tensor *dx = tu_tensor(ctx, 4, 1, 1, OH, OW);
        frcnn_tensor *dx4 = tu_tensor(ctx, 4, 1, 1, OH, OW);
        assert_int_equal(align_backward(ctx, &ps[k], rois, dy, dx), FRCNN_OK);
        /* only the last RoI reaches the map: the first four alone leave dx at zero */
        frcnn_tensor *four = tu_rois(ctx, rows, 4);
        frcnn_tensor *dy4 = tu_tensor(ctx, 4, 4, 1, 1, 1);
        frcnn_tensor_fill(dy4, 1.0f);
        assert_int_equal(align_backward(ctx, &ps[k], four, dy4, dx4), FRCNN_OK);
        assert_all_bits("dx of rois outside", dx4, 0.0f);
        if (k == 0) {
            float want_dx[OH * OW] = {0};
            want_dx[0] = 0.25f;
            tu_assert_close("dx", frcnn_tensor_data(dx), want_dx, OH * OW, 0.0, 0.0);
        }
        frcnn_tensor_free(dy4);
        frcnn_tensor_free(four);
        frcnn_tensor_free(dx4);
        frcnn_tensor_free(dx);
        frcnn_tensor_free(dy);
        frcnn_tensor_free(y);
    }
    frcnn_tensor_free(rois);
    frcnn_tensor_free(x);
    frcnn_ctx_free(ctx);
}

/* ------------------------------------------------------------------------------------------------------------
 * Random cases against the reference, forward and backward, for several parameter sets: this is where a wrong
 * sample count or position shows on a non-linear map. */

static void compare_with_reference(int n, int c, int h, int w, int r, frcnn_roi_align_params p, uint64_t seed)
{
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = tu_tensor(ctx, 4, n, c, h, w);
    tu_fill_uniform(frcnn_tensor_data(x), frcnn_tensor_numel(x), seed, -5.0f, 5.0f);
    frcnn_tensor *rois = tu_tensor(ctx, 2, r, 5, 0, 0);
    random_rois(frcnn_tensor_data(rois), r, n, (float)h / p.spatial_scale, (float)w / p.spatial_scale, seed + 1);
    frcnn_tensor *y = tu_tensor(ctx, 4, r, c, p.pooled_h, p.pooled_w);
    frcnn_tensor_fill(y, NAN);
    const size_t m = frcnn_tensor_numel(y), nx = frcnn_tensor_numel(x);
    assert_int_equal(align_forward(ctx, &p, x, rois, y), FRCNN_OK);
    double *ref_y = calloc(m, sizeof *ref_y), *ref_dx = calloc(nx, sizeof *ref_dx);
    assert_non_null(ref_y);
    assert_non_null(ref_dx);
    frcnn_tensor *dy = tu_tensor(ctx, 4, r, c, p.pooled_h, p.pooled_w);
    tu_fill_uniform(frcnn_tensor_data(dy), m, seed + 2, -1.0f, 1.0f);
    ref_roi_align(&p, frcnn_tensor_data(x), c, h, w, frcnn_tensor_data(rois), r, ref_y, frcnn_tensor_data(dy),
                  ref_dx);
    assert_close_d("y vs reference", frcnn_tensor_data(y), ref_y, m, 1e-5, 1e-5);
    size_t zeros = 0;
    for (size_t i = 0; i < m; i++)
        zeros += ref_y[i] == 0.0;
    assert_true(zeros < m); /* not vacuous */
    frcnn_tensor *dx = tu_tensor(ctx, 4, n, c, h, w);
    assert_int_equal(align_backward(ctx, &p, rois, dy, dx), FRCNN_OK);
    assert_close_d("dx vs reference", frcnn_tensor_data(dx), ref_dx, nx, 1e-5, 1e-5);
    free(ref_dx);
    free(ref_y);
    frcnn_tensor_free(dx);
    frcnn_tensor_free(dy);
    frcnn_tensor_free(y);
    frcnn_tensor_free(rois);
    frcnn_tensor_free(x);
    frcnn_ctx_free(ctx);
}

static void test_reference_random(void **state)
{
    (void)state;
    compare_with_reference(2, 3, 13, 17, 200, params(7, 7, 1.0f / 16.0f, 2, true), 11);
    compare_with_reference(3, 2, 9, 11, 200, params(3, 5, 0.5f, 0, false), 12);
    compare_with_reference(1, 2, 5, 6, 200, params(4, 2, 1.0f, 1, true), 13);
    compare_with_reference(2, 1, 20, 3, 200, params(2, 3, 0.25f, -1, true), 14);
    compare_with_reference(2, 2, 10, 12, 200, params(5, 5, 0.125f, 3, false), 15);
    compare_with_reference(1, 2, 7, 9, 100, params(2, 2, 1.0f, 0, true), 16);
}

/* ------------------------------------------------------------------------------------------------------------
 * 4. Gradients: central differences of sum(y * dy) against backward. For fixed RoIs the op is linear in x, so
 * the differences are exact up to float rounding and the tolerance can be tight. */

typedef struct grad_state {
    frcnn_ctx *ctx;
    frcnn_roi_align_params p;
    frcnn_tensor *x, *rois, *y;
    const float *r; /* the loss is sum(y * r) */
} grad_state;

static double align_loss(void *arg)
{
    grad_state *s = arg;
    if (align_forward(s->ctx, &s->p, s->x, s->rois, s->y) != FRCNN_OK)
        return NAN;
    return tu_dot(frcnn_tensor_data(s->y), s->r, frcnn_tensor_numel(s->y));
}

enum { GN = 2, GC = 3, GH = 6, GW = 7, GR = 7 };

static void gradient_case(frcnn_roi_align_params p, uint64_t seed)
{
    frcnn_ctx *ctx = tu_ctx();
    grad_state s = {ctx, p, NULL, NULL, NULL, NULL};
    s.x = tu_tensor(ctx, 4, GN, GC, GH, GW);
    tu_fill_uniform(frcnn_tensor_data(s.x), frcnn_tensor_numel(s.x), seed, -1.0f, 1.0f);
    /* in input pixels; with scale 1/2 they cover half as many cells */
    const float rows[GR * 5] = {
        0, 0, 0, 7, 6,               /* the whole image (at scale 1) */
        1, 1.3f, 0.7f, 5.9f, 4.2f,   /* inside */
        1, -3, -2, 4, 3,             /* over the top-left border */
        0, 3, 2, 12, 10,             /* over the bottom-right border */
        0, 2.4f, 3.1f, 2.5f, 3.15f,  /* tiny */
        1, -20, -20, -10, -10,       /* wholly outside */
        0, 1, 1, 1, 1,               /* a point */
    };
    s.rois = tu_rois(ctx, rows, GR);
    s.y = tu_tensor(ctx, 4, GR, GC, p.pooled_h, p.pooled_w);
    const size_t m = frcnn_tensor_numel(s.y), nx = frcnn_tensor_numel(s.x);
    float *dy = malloc(m * sizeof *dy);
    assert_non_null(dy);
    tu_fill_uniform(dy, m, seed + 1, -1.0f, 1.0f);
    s.r = dy;
    frcnn_tensor *dyt = NULL;
    const int64_t dims[4] = {GR, GC, p.pooled_h, p.pooled_w};
    assert_int_equal(frcnn_tensor_wrap(ctx, dy, 4, dims, &dyt), FRCNN_OK);
    frcnn_tensor *dx = tu_tensor(ctx, 4, GN, GC, GH, GW);
    assert_int_equal(align_backward(ctx, &s.p, s.rois, dyt, dx), FRCNN_OK);
    const float *g = frcnn_tensor_data(dx);
    size_t nonzero = 0;
    for (size_t i = 0; i < nx; i++)
        nonzero += g[i] != 0.0f;
    assert_true(nonzero > nx / 4); /* the check is not vacuous */
    tu_gradcheck("roi_align dx", align_loss, &s, frcnn_tensor_data(s.x), g, nx, 1e-2f, 1e-4, 1e-3);
    frcnn_tensor_free(dx);
    frcnn_tensor_free(dyt);
    free(dy);
    frcnn_tensor_free(s.y);
    frcnn_tensor_free(s.rois);
    frcnn_tensor_free(s.x);
    frcnn_ctx_free(ctx);
}

static void test_gradient(void **state)
{
    (void)state;
    gradient_case(params(3, 2, 1.0f, 2, true), 21);
    gradient_case(params(2, 2, 1.0f, 0, false), 22);
    gradient_case(params(2, 3, 0.5f, 1, true), 23);
    gradient_case(params(3, 3, 1.0f, 3, false), 24);
}

/* ------------------------------------------------------------------------------------------------------------
 * 5. Backward accumulates into dx. */

static void test_backward_accumulates(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    enum { N = 1, C = 3, H = 9, W = 11, PH = 3, PW = 3 };
    const float rows[2 * 5] = {0, 1.5f, 0.5f, 6.2f, 5.3f, 0, -2, 4, 3, 12};
    frcnn_tensor *one = tu_rois(ctx, rows, 1);
    frcnn_tensor *two = tu_rois(ctx, rows, 2);
    const float same_rows[2 * 5] = {0, 1.5f, 0.5f, 6.2f, 5.3f, 0, 1.5f, 0.5f, 6.2f, 5.3f};
    frcnn_tensor *same = tu_rois(ctx, same_rows, 2);
    frcnn_roi_align_params p = params(PH, PW, 1.0f, 2, true);
    frcnn_tensor *dy2 = tu_tensor(ctx, 4, 2, C, PH, PW);
    tu_fill_uniform(frcnn_tensor_data(dy2), frcnn_tensor_numel(dy2), 41, -1.0f, 1.0f);
    const size_t nx = (size_t)N * C * H * W, per_roi = (size_t)C * PH * PW;

    /* into zeros, and into random initial values */
    frcnn_tensor *dxz = tu_tensor(ctx, 4, N, C, H, W), *dxa = tu_tensor(ctx, 4, N, C, H, W);
    float init[N * C * H * W];
    tu_fill_uniform(init, nx, 42, -3.0f, 3.0f);
    memcpy(frcnn_tensor_data(dxa), init, sizeof init);
    assert_int_equal(align_backward(ctx, &p, two, dy2, dxz), FRCNN_OK);
    assert_int_equal(align_backward(ctx, &p, two, dy2, dxa), FRCNN_OK);
    const float *g = frcnn_tensor_data(dxz), *a = frcnn_tensor_data(dxa);
    float want[N * C * H * W];
    size_t touched = 0, untouched = 0;
    for (size_t i = 0; i < nx; i++) {
        want[i] = init[i] + g[i];
        if (g[i] == 0.0f) { /* nothing added: the initial value exactly */
            untouched++;
            if (memcmp(&a[i], &init[i], sizeof(float)) != 0) {
                print_error("dx[%zu] received nothing but changed: %.9g -> %.9g\n", i, (double)init[i], (double)a[i]);
                fail();
            }
        } else {
            touched++;
        }
    }
    assert_true(touched > 0 && untouched > 0);
    /* each call sums its contributions from zero, then adds them: exactly init + the gradient into zeros */
    tu_assert_identical("dx from initial values", a, want, nx);

    /* a second call adds the same again */
    assert_int_equal(align_backward(ctx, &p, two, dy2, dxz), FRCNN_OK);
    float twice[N * C * H * W];
    frcnn_tensor *dxo = tu_tensor(ctx, 4, N, C, H, W);
    assert_int_equal(align_backward(ctx, &p, two, dy2, dxo), FRCNN_OK);
    for (size_t i = 0; i < nx; i++)
        twice[i] = 2.0f * frcnn_tensor_data(dxo)[i];
    tu_assert_close("dx after two calls", g, twice, nx, 1e-6, 1e-6);

    /* two identical RoIs in one call add what one RoI called twice adds (up to the order of the additions) */
    frcnn_tensor *dy1 = tu_tensor(ctx, 4, 1, C, PH, PW), *dys = tu_tensor(ctx, 4, 2, C, PH, PW);
    memcpy(frcnn_tensor_data(dy1), frcnn_tensor_data(dy2), per_roi * sizeof(float));
    memcpy(frcnn_tensor_data(dys), frcnn_tensor_data(dy2), per_roi * sizeof(float));
    memcpy(frcnn_tensor_data(dys) + per_roi, frcnn_tensor_data(dy2), per_roi * sizeof(float));
    frcnn_tensor *dxp = tu_tensor(ctx, 4, N, C, H, W), *dxq = tu_tensor(ctx, 4, N, C, H, W);
    assert_int_equal(align_backward(ctx, &p, one, dy1, dxp), FRCNN_OK);
    assert_int_equal(align_backward(ctx, &p, one, dy1, dxp), FRCNN_OK);
    assert_int_equal(align_backward(ctx, &p, same, dys, dxq), FRCNN_OK);
    tu_assert_close("one roi twice vs two identical rois", frcnn_tensor_data(dxp), frcnn_tensor_data(dxq), nx, 1e-6,
                    1e-6);

    frcnn_tensor *list[] = {dxp, dxq, dy1, dys, dxo, dxz, dxa, dy2, same, two, one};
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
        frcnn_tensor_free(list[i]);
    frcnn_ctx_free(ctx);
}

/* ------------------------------------------------------------------------------------------------------------
 * 6. Backward with dx NULL: FRCNN_OK, no message, nothing written; parameter errors are still reported. */

static void test_backward_null_dx(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const float rows[2 * 5] = {0, 1, 1, 4, 4, 1, 0, 0, 6, 5};
    frcnn_tensor *rois = tu_rois(ctx, rows, 2);
    frcnn_tensor *dy = tu_tensor(ctx, 4, 2, RC, 2, 2);
    tu_fill_uniform(frcnn_tensor_data(dy), frcnn_tensor_numel(dy), 51, -1.0f, 1.0f);
    float dy_before[2 * RC * 4];
    memcpy(dy_before, frcnn_tensor_data(dy), sizeof dy_before);
    frcnn_roi_align_params p = params(2, 2, 1.0f, 2, true);
    assert_int_equal(align_backward(ctx, &p, rois, dy, NULL), FRCNN_OK);
    assert_string_equal(frcnn_ctx_last_error(ctx), "");
    tu_assert_identical("dy", frcnn_tensor_data(dy), dy_before, 2 * RC * 4);
    tu_assert_identical("rois", frcnn_tensor_data(rois), rows, 2 * 5);
    frcnn_roi_align_params bad = params(0, 2, 1.0f, 2, true);
    tu_expect_error_msg(ctx, align_backward(ctx, &bad, rois, dy, NULL), FRCNN_ERR_INVALID_ARG,
                        "roi_align");
    tu_expect_error_msg(ctx, align_backward(ctx, &p, rois, NULL, NULL), FRCNN_ERR_INVALID_ARG,
                        "roi_align");
    assert_int_equal(align_backward(NULL, &p, rois, dy, NULL), FRCNN_ERR_INVALID_ARG);
    tu_assert_identical("dy", frcnn_tensor_data(dy), dy_before, 2 * RC * 4);
    frcnn_tensor_free(dy);
    frcnn_tensor_free(rois);
    frcnn_ctx_free(ctx);
}

/* ------------------------------------------------------------------------------------------------------------
 * 7. Bad arguments: the right status, a message naming roi_align (and the culprit), nothing written. */

static void expect_err(frcnn_ctx *ctx, frcnn_status got, frcnn_status want, const char *needle)
{
    const char *msg = frcnn_ctx_last_error(ctx);
    if (got == want && !strstr(msg, "roi_align")) {
        print_error("message \"%s\" does not mention roi_align\n", msg);
        fail();
    }
    tu_expect_error_msg(ctx, got, want, needle);
}

/* The workspace: its size is one image's map; NULL or smaller is refused before anything is written. Inputs that
 * would make torchvision's kernel misbehave are refused too: a scale that overflows the coordinates (NaN sample
 * positions), adaptive sampling of a huge RoI (an hours-long loop, an overflowing sample count), and a backward
 * without dx still checks the rois against dy. */
static void test_workspace_and_limits(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const int64_t dims[4] = {2, 3, 5, 7};
    size_t bytes = 0;
    assert_int_equal(frcnn_roi_align_workspace_bytes(ctx, dims, &bytes), FRCNN_OK);
    assert_int_equal(bytes, 3 * 5 * 7 * sizeof(float));
    const int64_t zero[4] = {1, 0, 5, 7}, huge[4] = {1, INT64_MAX / 2, INT64_MAX / 2, 4};
    expect_err(ctx, frcnn_roi_align_workspace_bytes(ctx, zero, &bytes), FRCNN_ERR_SHAPE, "dimension 1");
    expect_err(ctx, frcnn_roi_align_workspace_bytes(ctx, huge, &bytes), FRCNN_ERR_OVERFLOW, "overflows");

    frcnn_tensor *x = tu_tensor(ctx, 4, 2, 3, 5, 7), *dx = tu_tensor(ctx, 4, 2, 3, 5, 7);
    frcnn_tensor *y = tu_tensor(ctx, 4, 1, 3, 2, 2), *dy = tu_tensor(ctx, 4, 1, 3, 2, 2);
    tu_fill_uniform(frcnn_tensor_data(x), frcnn_tensor_numel(x), 5, -1.0f, 1.0f);
    tu_fill_uniform(frcnn_tensor_data(dy), frcnn_tensor_numel(dy), 6, -1.0f, 1.0f);
    frcnn_tensor_fill(y, 7.0f);
    const float row[5] = {1, 0.5f, 0.5f, 4.5f, 3.5f};
    frcnn_tensor *rois = tu_rois(ctx, row, 1);
    frcnn_roi_align_params p = params(2, 2, 1.0f, 2, true);
    float small[3 * 5 * 7 - 1];
    expect_err(ctx, frcnn_roi_align_forward(ctx, &p, x, rois, y, NULL, 0), FRCNN_ERR_INVALID_ARG, "workspace");
    expect_err(ctx, frcnn_roi_align_forward(ctx, &p, x, rois, y, small, sizeof small), FRCNN_ERR_INVALID_ARG,
               "workspace");
    expect_err(ctx, frcnn_roi_align_backward(ctx, &p, rois, dy, dx, small, sizeof small), FRCNN_ERR_INVALID_ARG,
               "workspace");
    assert_all_bits("y after refused calls", y, 7.0f);
    assert_all_bits("dx after refused calls", dx, 0.0f);
    /* exactly the size asked for is enough */
    float exact[3 * 5 * 7];
    assert_int_equal(frcnn_roi_align_forward(ctx, &p, x, rois, y, exact, sizeof exact), FRCNN_OK);
    assert_int_equal(frcnn_roi_align_backward(ctx, &p, rois, dy, dx, exact, sizeof exact), FRCNN_OK);

    frcnn_roi_align_params big_scale = params(2, 2, 1e38f, 2, false);
    expect_err(ctx, align_forward(ctx, &big_scale, x, rois, y), FRCNN_ERR_INVALID_ARG, "once scaled");
    expect_err(ctx, align_backward(ctx, &big_scale, rois, dy, dx), FRCNN_ERR_INVALID_ARG, "once scaled");
    const float wide[5] = {0, 0, 0, 46341, 46341};
    frcnn_tensor *wide_rois = tu_rois(ctx, wide, 1);
    frcnn_roi_align_params adaptive = params(2, 2, 1.0f, 0, false);
    expect_err(ctx, align_forward(ctx, &adaptive, x, wide_rois, y), FRCNN_ERR_INVALID_ARG, "samples a bin side");
    /* 256 samples a side (a RoI of 512 cells over 2 bins) is still allowed */
    const float edge[5] = {0, 0, 0, 512, 512};
    frcnn_tensor *edge_rois = tu_rois(ctx, edge, 1);
    assert_int_equal(align_forward(ctx, &adaptive, x, edge_rois, y), FRCNN_OK);

    /* backward without dx: the rois must still match dy */
    const float rows3[15] = {0, 1, 1, 2, 2, 0, 1, 1, 2, 2, 0, 1, 1, 2, 2};
    frcnn_tensor *three = tu_rois(ctx, rows3, 3);
    frcnn_tensor *four_cols = tu_tensor(ctx, 2, 1, 4, 0, 0);
    expect_err(ctx, align_backward(ctx, &p, three, dy, NULL), FRCNN_ERR_SHAPE, "rois");
    expect_err(ctx, align_backward(ctx, &p, four_cols, dy, NULL), FRCNN_ERR_SHAPE, "rois");
    expect_err(ctx, align_backward(ctx, &p, NULL, dy, NULL), FRCNN_ERR_INVALID_ARG, "rois");

    frcnn_tensor *all[] = {x, dx, y, dy, rois, wide_rois, edge_rois, three, four_cols};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        frcnn_tensor_free(all[i]);
    frcnn_ctx_free(ctx);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = ramp(ctx);
    const float rows[2 * 5] = {0, 1, 1, 4, 4, 1, 0, 0, 6, 5};
    frcnn_tensor *rois = tu_rois(ctx, rows, 2);
    frcnn_tensor *y = tu_tensor(ctx, 4, 2, RC, 2, 2);
    frcnn_tensor *dy = tu_tensor(ctx, 4, 2, RC, 2, 2);
    frcnn_tensor *dx = tu_tensor(ctx, 4, RN, RC, RH, RW);
    frcnn_tensor *x3 = tu_tensor(ctx, 3, RC, RH, RW, 0);
    frcnn_tensor *rois4 = tu_tensor(ctx, 2, 2, 4, 0, 0);
    frcnn_tensor *rois6 = tu_tensor(ctx, 2, 2, 6, 0, 0);
    frcnn_tensor *rois1 = tu_tensor(ctx, 1, 10, 0, 0, 0);
    frcnn_tensor *rois3 = tu_tensor(ctx, 3, 1, 2, 5, 0);
    frcnn_tensor *bad_out[] = {
        tu_tensor(ctx, 4, 3, RC, 2, 2),     /* wrong r */
        tu_tensor(ctx, 4, 2, RC + 1, 2, 2), /* wrong channels */
        tu_tensor(ctx, 4, 2, RC, 3, 2),     /* wrong pooled_h */
        tu_tensor(ctx, 4, 2, RC, 2, 3),     /* wrong pooled_w */
        tu_tensor(ctx, 3, 2, RC, 4, 0),     /* 3-D */
        tu_tensor(ctx, 4, 1, RC, 2, 2),     /* too few rois */
    };
    enum { NBAD = sizeof bad_out / sizeof bad_out[0] };
    frcnn_tensor *dx_c = tu_tensor(ctx, 4, RN, RC + 1, RH, RW); /* other channels than dy */
    frcnn_tensor *dx3 = tu_tensor(ctx, 3, RC, RH, RW, 0);
    frcnn_tensor *dx1 = tu_tensor(ctx, 4, 1, RC, RH, RW); /* row 1's image 1 does not exist */
    frcnn_tensor_fill(y, 7.0f);
    frcnn_tensor_fill(dy, 1.0f);
    frcnn_tensor_fill(dx, 3.0f);
    frcnn_tensor_fill(dx_c, 3.0f);
    frcnn_tensor_fill(dx3, 3.0f);
    frcnn_tensor_fill(dx1, 3.0f);
    for (int i = 0; i < NBAD; i++)
        frcnn_tensor_fill(bad_out[i], 7.0f);
    frcnn_roi_align_params p = params(2, 2, 1.0f, 2, true);

    /* NULL context */
    assert_int_equal(align_forward(NULL, &p, x, rois, y), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(align_backward(NULL, &p, rois, dy, dx), FRCNN_ERR_INVALID_ARG);

    /* NULL arguments and wrong ranks */
    expect_err(ctx, align_forward(ctx, NULL, x, rois, y), FRCNN_ERR_INVALID_ARG, "params");
    expect_err(ctx, align_backward(ctx, NULL, rois, dy, dx), FRCNN_ERR_INVALID_ARG, "params");
    expect_err(ctx, align_forward(ctx, &p, NULL, rois, y), FRCNN_ERR_INVALID_ARG, "x");
    expect_err(ctx, align_forward(ctx, &p, x, NULL, y), FRCNN_ERR_INVALID_ARG, "rois");
    expect_err(ctx, align_forward(ctx, &p, x, rois, NULL), FRCNN_ERR_INVALID_ARG, "y");
    expect_err(ctx, align_backward(ctx, &p, NULL, dy, dx), FRCNN_ERR_INVALID_ARG, "rois");
    expect_err(ctx, align_backward(ctx, &p, rois, NULL, dx), FRCNN_ERR_INVALID_ARG, "dy");
    expect_err(ctx, align_forward(ctx, &p, x3, rois, y), FRCNN_ERR_SHAPE, "x");

    /* parameters */
    const frcnn_roi_align_params bad[] = {
        params(0, 2, 1.0f, 2, true),      params(2, 0, 1.0f, 2, true),     params(-1, 2, 1.0f, 2, true),
        params(1025, 2, 1.0f, 2, true),   params(2, 1025, 1.0f, 2, true),  params(2, 2, 0.0f, 2, true),
        params(2, 2, -0.0f, 2, true),     params(2, 2, -0.5f, 2, true),    params(2, 2, NAN, 2, true),
        params(2, 2, INFINITY, 2, true),  params(2, 2, -INFINITY, 2, true), params(2, 2, 1.0f, 65, true),
        params(2, 2, 1.0f, 1000, false),  params(2, 2, 1.0f, INT_MAX, false),
    };
    const char *bad_needle[] = {"pooled", "pooled", "pooled", "pooled", "pooled", "spatial_scale", "spatial_scale",
                                "spatial_scale", "spatial_scale", "spatial_scale", "spatial_scale",
                                "sampling_ratio", "sampling_ratio", "sampling_ratio"};
    assert_int_equal(sizeof bad / sizeof bad[0], sizeof bad_needle / sizeof bad_needle[0]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect_err(ctx, align_forward(ctx, &bad[i], x, rois, y), FRCNN_ERR_INVALID_ARG, bad_needle[i]);
        expect_err(ctx, align_backward(ctx, &bad[i], rois, dy, dx), FRCNN_ERR_INVALID_ARG, bad_needle[i]);
    }

    /* rois not (r, 5) */
    frcnn_tensor *bad_rois[] = {rois4, rois6, rois1, rois3};
    for (size_t i = 0; i < sizeof bad_rois / sizeof bad_rois[0]; i++) {
        expect_err(ctx, align_forward(ctx, &p, x, bad_rois[i], y), FRCNN_ERR_SHAPE, "rois");
        expect_err(ctx, align_backward(ctx, &p, bad_rois[i], dy, dx), FRCNN_ERR_SHAPE, "rois");
    }

    /* bad rows (as row 1 after a good row 0) */
    const float bad_rows[][5] = {
        {-1, 0, 0, 1, 1},      {0.5f, 0, 0, 1, 1},     {2, 0, 0, 1, 1},         {NAN, 0, 0, 1, 1},
        {INFINITY, 0, 0, 1, 1}, {-INFINITY, 0, 0, 1, 1}, {1e30f, 0, 0, 1, 1},   {-0.25f, 0, 0, 1, 1},
        {0, NAN, 0, 1, 1},     {0, 0, NAN, 1, 1},      {0, 0, 0, NAN, 1},       {0, 0, 0, 1, NAN},
        {0, INFINITY, 0, 1, 1}, {0, 0, -INFINITY, 1, 1}, {0, 0, 0, INFINITY, 1}, {0, 0, 0, 1, -INFINITY},
        {0, 1e30f, 0, 1, 1},   {0, 0, 0, 1, -1e30f},   {0, 16777216.0f, 0, 1, 1}, {0, 0, 0, -16777216.0f, 1},
    };
    for (size_t i = 0; i < sizeof bad_rows / sizeof bad_rows[0]; i++) {
        float two[10];
        memcpy(two, rows, 5 * sizeof(float));
        memcpy(two + 5, bad_rows[i], 5 * sizeof(float));
        frcnn_tensor *br = tu_rois(ctx, two, 2);
        expect_err(ctx, align_forward(ctx, &p, x, br, y), FRCNN_ERR_INVALID_ARG, "row 1");
        expect_err(ctx, align_backward(ctx, &p, br, dy, dx), FRCNN_ERR_INVALID_ARG, "row 1");
        frcnn_tensor_free(br);
    }
    /* batch index 1 is out of range for a one-image dx */
    expect_err(ctx, align_backward(ctx, &p, rois, dy, dx1), FRCNN_ERR_INVALID_ARG, "row 1");

    /* y and dy of the wrong shape; dx of other channels or rank */
    for (int i = 0; i < NBAD; i++) {
        expect_err(ctx, align_forward(ctx, &p, x, rois, bad_out[i]), FRCNN_ERR_SHAPE, "y");
        expect_err(ctx, align_backward(ctx, &p, rois, bad_out[i], dx), FRCNN_ERR_SHAPE, "dy");
    }
    expect_err(ctx, align_backward(ctx, &p, rois, dy, dx_c), FRCNN_ERR_SHAPE, "channels");
    expect_err(ctx, align_backward(ctx, &p, rois, dy, dx3), FRCNN_ERR_SHAPE, "dx");

    /* nothing was written */
    assert_all_bits("y", y, 7.0f);
    assert_all_bits("dy", dy, 1.0f);
    assert_all_bits("dx", dx, 3.0f);
    assert_all_bits("dx with other channels", dx_c, 3.0f);
    assert_all_bits("3-D dx", dx3, 3.0f);
    assert_all_bits("one-image dx", dx1, 3.0f);
    for (int i = 0; i < NBAD; i++) {
        assert_all_bits("badly shaped y", bad_out[i], 7.0f);
    }

    /* the limits themselves are accepted: sampling ratio 64 and any ratio <= 0, coordinates just below 2^24 */
    const frcnn_roi_align_params ok[] = {params(2, 2, 1.0f, 64, false), params(2, 2, 1.0f, -100, true),
                                         params(2, 2, 1.0f, INT_MIN, true), params(2, 2, 1e-30f, 2, true)};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(align_forward(ctx, &ok[i], x, rois, y), FRCNN_OK);
        assert_int_equal(align_backward(ctx, &ok[i], rois, dy, dx), FRCNN_OK);
    }
    const float far_rows[2 * 5] = {0, -16777215.0f, 0, 16777215.0f, 1, 1, 0, -16777215.0f, 1, 16777215.0f};
    frcnn_tensor *far = tu_rois(ctx, far_rows, 2);
    assert_int_equal(align_forward(ctx, &p, x, far, y), FRCNN_OK);
    assert_int_equal(align_backward(ctx, &p, far, dy, dx), FRCNN_OK);
    assert_string_equal(frcnn_ctx_last_error(ctx), "");

    frcnn_tensor_free(far);
    for (int i = 0; i < NBAD; i++)
        frcnn_tensor_free(bad_out[i]);
    frcnn_tensor *list[] = {dx1, dx3, dx_c, rois3, rois1, rois6, rois4, x3, dx, dy, y, rois, x};
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
        frcnn_tensor_free(list[i]);
    frcnn_ctx_free(ctx);
}

/* ------------------------------------------------------------------------------------------------------------
 * 8. Determinism: 1, 2 and 4 threads give the same bits, forward (split over RoIs) and backward (split over
 * channels), and the single-thread result agrees with the reference. */

enum { DN = 2, DC = 64, DH = 12, DW = 15, DR = 64 };

static void run_once(int threads, float *y_out, float *dx_out, bool check_reference)
{
    frcnn_ctx *ctx = tu_ctx();
    assert_int_equal(frcnn_ctx_set_threads(ctx, threads), FRCNN_OK);
    assert_int_equal(frcnn_ctx_threads(ctx), threads);
    frcnn_tensor *x = tu_tensor(ctx, 4, DN, DC, DH, DW);
    tu_fill_uniform(frcnn_tensor_data(x), frcnn_tensor_numel(x), 61, -1.0f, 1.0f);
    frcnn_tensor *rois = tu_tensor(ctx, 2, DR, 5, 0, 0);
    random_rois(frcnn_tensor_data(rois), DR, DN, (float)DH * 16.0f, (float)DW * 16.0f, 62);
    frcnn_roi_align_params p = frcnn_roi_align_params_default();
    frcnn_tensor *y = tu_tensor(ctx, 4, DR, DC, 7, 7);
    assert_int_equal(align_forward(ctx, &p, x, rois, y), FRCNN_OK);
    frcnn_tensor *dy = tu_tensor(ctx, 4, DR, DC, 7, 7);
    tu_fill_uniform(frcnn_tensor_data(dy), frcnn_tensor_numel(dy), 63, -1.0f, 1.0f);
    frcnn_tensor *dx = tu_tensor(ctx, 4, DN, DC, DH, DW);
    assert_int_equal(align_backward(ctx, &p, rois, dy, dx), FRCNN_OK);
    memcpy(y_out, frcnn_tensor_data(y), frcnn_tensor_numel(y) * sizeof(float));
    memcpy(dx_out, frcnn_tensor_data(dx), frcnn_tensor_numel(dx) * sizeof(float));
    if (check_reference) {
        double *ry = calloc(frcnn_tensor_numel(y), sizeof *ry), *rdx = calloc(frcnn_tensor_numel(dx), sizeof *rdx);
        assert_non_null(ry);
        assert_non_null(rdx);
        ref_roi_align(&p, frcnn_tensor_data(x), DC, DH, DW, frcnn_tensor_data(rois), DR, ry, frcnn_tensor_data(dy),
                      rdx);
        assert_close_d("y vs reference", y_out, ry, frcnn_tensor_numel(y), 1e-5, 1e-5);
        assert_close_d("dx vs reference", dx_out, rdx, frcnn_tensor_numel(dx), 1e-5, 1e-5);
        free(rdx);
        free(ry);
    }
    frcnn_tensor_free(dx);
    frcnn_tensor_free(dy);
    frcnn_tensor_free(y);
    frcnn_tensor_free(rois);
    frcnn_tensor_free(x);
    frcnn_ctx_free(ctx);
}

static void test_determinism(void **state)
{
    (void)state;
    enum { NY = DR * DC * 49, NDX = DN * DC * DH * DW, RUNS = 4 };
    const int threads[RUNS] = {1, 1, 2, 4};
    float *y[RUNS], *dx[RUNS];
    for (int k = 0; k < RUNS; k++) {
        y[k] = malloc(NY * sizeof(float));
        dx[k] = malloc(NDX * sizeof(float));
        assert_non_null(y[k]);
        assert_non_null(dx[k]);
        run_once(threads[k], y[k], dx[k], k == 0);
    }
    tu_assert_identical("y, same call twice", y[0], y[1], NY);
    tu_assert_identical("dx, same call twice", dx[0], dx[1], NDX);
    tu_assert_identical("y, 1 vs 2 threads", y[0], y[2], NY);
    tu_assert_identical("dx, 1 vs 2 threads", dx[0], dx[2], NDX);
    tu_assert_identical("y, 1 vs 4 threads", y[0], y[3], NY);
    tu_assert_identical("dx, 1 vs 4 threads", dx[0], dx[3], NDX);
    for (int k = 0; k < RUNS; k++) {
        free(y[k]);
        free(dx[k]);
    }
}

/* ------------------------------------------------------------------------------------------------------------
 * 9. A batch of three images: a RoI of image b reads image b only and sends its gradient to image b only. Each
 * RoI row must give exactly what it gives on a one-image tensor holding image b alone. */

enum { BN = 3, BC = 2, BH = 5, BW = 6, BR = 4 };

static void test_batch(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const size_t plane = (size_t)BC * BH * BW, out = (size_t)BC * 2 * 3;
    frcnn_tensor *x = tu_tensor(ctx, 4, BN, BC, BH, BW);
    tu_fill_uniform(frcnn_tensor_data(x), frcnn_tensor_numel(x), 71, -2.0f, 2.0f);
    const float rows[BR * 5] = {
        1, 0.5f, 0.5f, 4.5f, 3.5f, /* inside */
        1, -2, 1, 3, 7,            /* over the border */
        1, 2, 2, 2.2f, 2.1f,       /* tiny */
        1, 0, 0, 6, 5,             /* the whole image */
    };
    frcnn_tensor *rois = tu_rois(ctx, rows, BR);
    frcnn_roi_align_params p = params(2, 3, 1.0f, 2, true);
    frcnn_tensor *y = tu_tensor(ctx, 4, BR, BC, 2, 3), *dy = tu_tensor(ctx, 4, BR, BC, 2, 3);
    tu_fill_uniform(frcnn_tensor_data(dy), frcnn_tensor_numel(dy), 72, -1.0f, 1.0f);
    assert_int_equal(align_forward(ctx, &p, x, rois, y), FRCNN_OK);
    frcnn_tensor *dx = tu_tensor(ctx, 4, BN, BC, BH, BW);
    assert_int_equal(align_backward(ctx, &p, rois, dy, dx), FRCNN_OK);

    /* image 1 alone, the same RoIs with batch index 0 */
    frcnn_tensor *x1 = tu_tensor(ctx, 4, 1, BC, BH, BW);
    memcpy(frcnn_tensor_data(x1), frcnn_tensor_data(x) + plane, plane * sizeof(float));
    float rows0[BR * 5];
    memcpy(rows0, rows, sizeof rows);
    for (int i = 0; i < BR; i++)
        rows0[5 * i] = 0;
    frcnn_tensor *rois0 = tu_rois(ctx, rows0, BR);
    frcnn_tensor *y1 = tu_tensor(ctx, 4, BR, BC, 2, 3), *dx1 = tu_tensor(ctx, 4, 1, BC, BH, BW);
    assert_int_equal(align_forward(ctx, &p, x1, rois0, y1), FRCNN_OK);
    assert_int_equal(align_backward(ctx, &p, rois0, dy, dx1), FRCNN_OK);
    tu_assert_identical("y of image 1 in the batch vs alone", frcnn_tensor_data(y), frcnn_tensor_data(y1),
                        BR * out);
    const float *d = frcnn_tensor_data(dx);
    tu_assert_identical("dx of image 1 in the batch vs alone", d + plane, frcnn_tensor_data(dx1), plane);
    for (size_t i = 0; i < plane; i++) {
        if (d[i] != 0.0f || d[2 * plane + i] != 0.0f) {
            print_error("dx of image 0 or 2 received a gradient at [%zu]: %.9g, %.9g\n", i, (double)d[i],
                        (double)d[2 * plane + i]);
            fail();
        }
    }
    size_t nonzero = 0;
    for (size_t i = 0; i < plane; i++)
        nonzero += d[plane + i] != 0.0f;
    assert_true(nonzero > plane / 2);

    /* images 0 and 2 are not read: NaN there changes nothing */
    float *xd = frcnn_tensor_data(x);
    for (size_t i = 0; i < plane; i++)
        xd[i] = xd[2 * plane + i] = NAN;
    frcnn_tensor_fill(y, 0.0f);
    assert_int_equal(align_forward(ctx, &p, x, rois, y), FRCNN_OK);
    tu_assert_identical("y with images 0 and 2 poisoned", frcnn_tensor_data(y), frcnn_tensor_data(y1), BR * out);

    /* mixed batch indices: row k of image b equals the same RoI on image b alone */
    tu_fill_uniform(xd, frcnn_tensor_numel(x), 73, -2.0f, 2.0f);
    const float batch_of[BR] = {2, 0, 1, 2};
    float mixed[BR * 5];
    memcpy(mixed, rows, sizeof rows);
    for (int i = 0; i < BR; i++)
        mixed[5 * i] = batch_of[i];
    frcnn_tensor *rm = tu_rois(ctx, mixed, BR);
    assert_int_equal(align_forward(ctx, &p, x, rm, y), FRCNN_OK);
    for (int i = 0; i < BR; i++) {
        memcpy(frcnn_tensor_data(x1), xd + (size_t)batch_of[i] * plane, plane * sizeof(float));
        assert_int_equal(align_forward(ctx, &p, x1, rois0, y1), FRCNN_OK);
        tu_assert_identical("y row of a mixed batch vs its image alone", frcnn_tensor_data(y) + (size_t)i * out,
                            frcnn_tensor_data(y1) + (size_t)i * out, out);
    }

    frcnn_tensor *list[] = {rm, y1, dx1, rois0, x1, dx, dy, y, rois, x};
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
        frcnn_tensor_free(list[i]);
    frcnn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_default),
        cmocka_unit_test(test_linear_literal),
        cmocka_unit_test(test_linear_cases),
        cmocka_unit_test(test_malformed_rois),
        cmocka_unit_test(test_sampling_grid),
        cmocka_unit_test(test_outside_grid),
        cmocka_unit_test(test_outside_edges),
        cmocka_unit_test(test_outside_whole),
        cmocka_unit_test(test_reference_random),
        cmocka_unit_test(test_gradient),
        cmocka_unit_test(test_backward_accumulates),
        cmocka_unit_test(test_backward_null_dx),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_workspace_and_limits),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
