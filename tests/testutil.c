/* Shared test helpers; see testutil.h. */
#include "testutil.h"

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
