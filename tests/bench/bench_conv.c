/* Benchmark of conv2d forward and backward against a bare cblas_sgemm of the same GEMM shape, layer by layer
 * for the VGG16 backbone at 600x800 and the small 5-conv backbone at 320x416. Prints a table and appends
 * `name<TAB>value<TAB>unit` lines to the file named by argv[1] (default build/bench.tsv). */
#include "frcnn.h"

#include "bench_util.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct layer {
    const char *name;
    int cin, cout, h, w; /* 3x3 kernel, stride 1, padding 1: output h x w */
} layer;

static const layer vgg16[] = {
    {"conv1_1", 3, 64, 600, 800},    {"conv1_2", 64, 64, 600, 800},   {"conv2_1", 64, 128, 300, 400},
    {"conv2_2", 128, 128, 300, 400}, {"conv3_1", 128, 256, 150, 200}, {"conv3_2", 256, 256, 150, 200},
    {"conv3_3", 256, 256, 150, 200}, {"conv4_1", 256, 512, 75, 100},  {"conv4_2", 512, 512, 75, 100},
    {"conv4_3", 512, 512, 75, 100},  {"conv5_1", 512, 512, 38, 50},   {"conv5_2", 512, 512, 38, 50},
    {"conv5_3", 512, 512, 38, 50},
};

static const layer small[] = {
    {"conv1", 3, 32, 320, 416},  {"conv2", 32, 64, 160, 208},  {"conv3", 64, 128, 80, 104},
    {"conv4", 128, 256, 40, 52}, {"conv5", 256, 256, 20, 26},
};

static void die(frcnn_ctx *ctx, frcnn_status st, const char *what)
{
    fprintf(stderr, "bench_conv: %s: %s (%s)\n", what, frcnn_status_str(st), frcnn_ctx_last_error(ctx));
    exit(1);
}

static float *random_buffer(size_t n, unsigned seed)
{
    float *p = malloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "bench_conv: out of memory (%zu floats)\n", n);
        exit(1);
    }
    frcnn_rng rng;
    frcnn_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++)
        p[i] = frcnn_rng_uniform(&rng) - 0.5f;
    return p;
}

static frcnn_tensor *tensor(frcnn_ctx *ctx, int ndim, int64_t a, int64_t b, int64_t c, int64_t d)
{
    int64_t dims[4] = {a, b, c, d};
    frcnn_tensor *t;
    frcnn_status st = frcnn_tensor_create(ctx, ndim, dims, &t);
    if (st != FRCNN_OK)
        die(ctx, st, "tensor");
    float *p = frcnn_tensor_data(t);
    for (size_t i = 0; i < frcnn_tensor_numel(t); i++)
        p[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    return t;
}

typedef struct totals {
    double fwd, bwd, gemm_fwd, gemm_bwd, gflop;
    size_t max_ws;
} totals;

static FILE *tsv;

static void record(const char *net, const char *layer_name, const char *what, double value, const char *unit)
{
    fprintf(tsv, "conv_%s_%s_%s\t%.6g\t%s\n", net, layer_name, what, value, unit);
}

static void bench_layer(frcnn_ctx *ctx, const char *net, const layer *l, int reps, totals *t)
{
    frcnn_conv2d_params p = {1, 1, 1, 1};
    frcnn_tensor *x = tensor(ctx, 4, 1, l->cin, l->h, l->w), *dx = tensor(ctx, 4, 1, l->cin, l->h, l->w);
    frcnn_tensor *w = tensor(ctx, 4, l->cout, l->cin, 3, 3), *dw = tensor(ctx, 4, l->cout, l->cin, 3, 3);
    frcnn_tensor *b = tensor(ctx, 1, l->cout, 0, 0, 0), *db = tensor(ctx, 1, l->cout, 0, 0, 0);
    frcnn_tensor *y = tensor(ctx, 4, 1, l->cout, l->h, l->w), *dy = tensor(ctx, 4, 1, l->cout, l->h, l->w);
    int64_t xd[4] = {1, l->cin, l->h, l->w}, wd[4] = {l->cout, l->cin, 3, 3};
    size_t ws_bytes;
    frcnn_status st = frcnn_conv2d_workspace_bytes(ctx, &p, xd, wd, &ws_bytes);
    if (st != FRCNN_OK)
        die(ctx, st, "workspace");
    void *ws = malloc(ws_bytes);
    int m = l->cout, k = l->cin * 9, n = l->h * l->w;
    float *ga = random_buffer((size_t)m * (size_t)k, 1), *gb = random_buffer((size_t)k * (size_t)n, 2);
    float *gc = random_buffer((size_t)m * (size_t)n, 3);
    double tf[16], tb[16], gf[16], gbw[16];
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        if ((st = frcnn_conv2d_forward(ctx, &p, x, w, b, y, ws, ws_bytes)) != FRCNN_OK)
            die(ctx, st, "forward");
        double t1 = bench_now();
        if ((st = frcnn_conv2d_backward(ctx, &p, x, w, dy, dx, dw, db, ws, ws_bytes)) != FRCNN_OK)
            die(ctx, st, "backward");
        bench_openblas_threads(frcnn_ctx_threads(ctx));
        double t2 = bench_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, ga, k, gb, n, 0.0f, gc, n);
        double t3 = bench_now();
        /* the backward GEMMs: dW (m x k) += dY (m x n) col^T, and dcol (k x n) = W^T dY */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, k, n, 1.0f, gc, n, gb, n, 1.0f, ga, k);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, n, m, 1.0f, ga, k, gc, n, 0.0f, gb, n);
        double t4 = bench_now();
        bench_openblas_threads(1);
        tf[r] = t1 - t0;
        tb[r] = t2 - t1;
        gf[r] = t3 - t2;
        gbw[r] = t4 - t3;
    }
    double flop = 2.0 * m * (double)k * n;
    double f = bench_median(tf, reps), bw = bench_median(tb, reps), g = bench_median(gf, reps), gbm = bench_median(gbw, reps);
    printf("%-8s %-8s %5d %5d %4dx%-4d %8.1f %7.1f %7.1f %6.2f %8.1f %7.1f %7.1f %6.2f %8.1f\n", net, l->name,
           l->cin, l->cout, l->h, l->w, 1e3 * f, flop / f * 1e-9, flop / g * 1e-9, g / f, 1e3 * bw,
           2 * flop / bw * 1e-9, 2 * flop / gbm * 1e-9, gbm / bw, (double)ws_bytes / (1 << 20));
    record(net, l->name, "fwd_ms", 1e3 * f, "ms");
    record(net, l->name, "fwd_gflops", flop / f * 1e-9, "GFLOP/s");
    record(net, l->name, "fwd_sgemm_gflops", flop / g * 1e-9, "GFLOP/s");
    record(net, l->name, "fwd_ratio", g / f, "ratio");
    record(net, l->name, "bwd_ms", 1e3 * bw, "ms");
    record(net, l->name, "bwd_gflops", 2 * flop / bw * 1e-9, "GFLOP/s");
    record(net, l->name, "bwd_sgemm_gflops", 2 * flop / gbm * 1e-9, "GFLOP/s");
    record(net, l->name, "bwd_ratio", gbm / bw, "ratio");
    t->fwd += f;
    t->bwd += bw;
    t->gemm_fwd += g;
    t->gemm_bwd += gbm;
    t->gflop += flop * 1e-9;
    if (ws_bytes > t->max_ws)
        t->max_ws = ws_bytes;
    free(ga);
    free(gb);
    free(gc);
    free(ws);
    frcnn_tensor *all[] = {x, dx, w, dw, b, db, y, dy};
    for (int i = 0; i < 8; i++)
        frcnn_tensor_free(all[i]);
}

static void bench_net(frcnn_ctx *ctx, const char *net, const layer *layers, int count, int reps)
{
    totals t = {0, 0, 0, 0, 0, 0};
    for (int i = 0; i < count; i++)
        bench_layer(ctx, net, &layers[i], reps, &t);
    printf("%-8s %-8s %23.1f %7.1f %7.1f %6.2f %8.1f %7.1f %7.1f %6.2f %8.1f\n", net, "TOTAL", 1e3 * t.fwd,
           t.gflop / t.fwd, t.gflop / t.gemm_fwd, t.gemm_fwd / t.fwd, 1e3 * t.bwd, 2 * t.gflop / t.bwd,
           2 * t.gflop / t.gemm_bwd, t.gemm_bwd / t.bwd, (double)t.max_ws / (1 << 20));
    record(net, "total", "fwd_ms", 1e3 * t.fwd, "ms");
    record(net, "total", "fwd_ratio", t.gemm_fwd / t.fwd, "ratio");
    record(net, "total", "bwd_ms", 1e3 * t.bwd, "ms");
    record(net, "total", "bwd_ratio", t.gemm_bwd / t.bwd, "ratio");
    record(net, "total", "workspace_peak_mib", (double)t.max_ws / (1 << 20), "MiB");
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "build/bench.tsv";
    tsv = fopen(path, "a");
    if (!tsv) {
        perror(path);
        return 1;
    }
    frcnn_ctx *ctx;
    frcnn_status st = frcnn_ctx_create(NULL, &ctx);
    if (st != FRCNN_OK)
        return 1;
    int reps = getenv("FRCNN_BENCH_REPS") ? atoi(getenv("FRCNN_BENCH_REPS")) : 3;
    if (reps < 1 || reps > 16)
        reps = 3;
    printf("conv2d vs bare cblas_sgemm of the same GEMM (on OpenBLAS's threads), OpenBLAS kernel %s, %d threads, "
           "median of %d "
           "(ratio = sgemm time / ours)\n",
           frcnn_blas_core(), frcnn_ctx_threads(ctx), reps);
    printf("%-8s %-8s %5s %5s %9s %8s %7s %7s %6s %8s %7s %7s %6s %8s\n", "net", "layer", "cin", "cout", "out",
           "fwd ms", "GF/s", "sgemm", "ratio", "bwd ms", "GF/s", "sgemm", "ratio", "ws MiB");
    bench_net(ctx, "small", small, (int)(sizeof small / sizeof small[0]), reps + 2);
    bench_net(ctx, "vgg16", vgg16, (int)(sizeof vgg16 / sizeof vgg16[0]), reps);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak RSS of the benchmark process (includes the bare-sgemm operands): %.0f MiB\n", ru.ru_maxrss / 1024.0);
    fprintf(tsv, "conv_bench_peak_rss_mib\t%.1f\tMiB\n", ru.ru_maxrss / 1024.0);
    frcnn_ctx_free(ctx);
    fclose(tsv);
    return 0;
}
