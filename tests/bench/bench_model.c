/* Benchmark of a whole training step and a whole detection per preset (vgg16 at 600x800, small at 320x432),
 * against the floor set by OpenBLAS: 3 x forward GFLOP / sgemm GFLOP/s, the sgemm rate measured between the
 * timed steps (2048^3, median), so both see the same machine load. Each preset
 * runs in its own child process, holding a model and its SGD optimizer as a training process does, so its peak RSS
 * is a training's. A third line per preset gives a whole iteration: zeroing the gradients, the step and the
 * optimizer's update. Prints a table and appends
 * `name<TAB>value<TAB>unit` lines to argv[1] (default build/bench.tsv).
 *
 * It also splits each step into the time OpenBLAS takes for the library's products and the rest: this program
 * defines cblas_sgemm itself, so the statically linked library's calls reach it, and it times the calls on their
 * way to OpenBLAS's. The products alone, against the floor, show how far the shapes a step needs fall short of the
 * 2048^3 rate the floor assumes. */
#define _GNU_SOURCE /* RTLD_NEXT */
#include "frcnn.h"

#include "bench_util.h"

#include <cblas.h>
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void check(frcnn_ctx *ctx, frcnn_status st, const char *what)
{
    if (st != FRCNN_OK) {
        fprintf(stderr, "bench_model: %s: %s (%s)\n", what, frcnn_status_str(st), frcnn_ctx_last_error(ctx));
        exit(1);
    }
}

/* Wall seconds during which at least one of the library's sgemm calls ran, since the last reset: the blocks of one
 * product run at the same time on the context's threads, so the time from the first start to the last end. */
static double sgemm_seconds;
static pthread_mutex_t sgemm_mu = PTHREAD_MUTEX_INITIALIZER;
static int sgemm_active;
static double sgemm_since;

void cblas_sgemm(const enum CBLAS_ORDER order, const enum CBLAS_TRANSPOSE ta, const enum CBLAS_TRANSPOSE tb,
                 const blasint m, const blasint n, const blasint k, const float alpha, const float *a,
                 const blasint lda, const float *b, const blasint ldb, const float beta, float *c, const blasint ldc)
{
    typedef void sgemm_fn(const enum CBLAS_ORDER, const enum CBLAS_TRANSPOSE, const enum CBLAS_TRANSPOSE,
                          const blasint, const blasint, const blasint, const float, const float *, const blasint,
                          const float *, const blasint, const float, float *, const blasint);
    static sgemm_fn *openblas;
    if (!openblas)
        *(void **)&openblas = dlsym(RTLD_NEXT, "cblas_sgemm");
    if (!openblas) {
        fprintf(stderr, "bench_model: OpenBLAS's cblas_sgemm not found (%s)\n", dlerror());
        exit(1);
    }
    pthread_mutex_lock(&sgemm_mu);
    if (sgemm_active++ == 0)
        sgemm_since = bench_now();
    pthread_mutex_unlock(&sgemm_mu);
    openblas(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    pthread_mutex_lock(&sgemm_mu);
    if (--sgemm_active == 0)
        sgemm_seconds += bench_now() - sgemm_since;
    pthread_mutex_unlock(&sgemm_mu);
}

/* Forward GFLOP of one image counted from the layer shapes (multiply-adds x 2), with `rois` RoIs in the head. */
static double forward_gflop(frcnn_model *m, int h, int w, int rois)
{
    const frcnn_config *c = frcnn_model_config(m);
    double flop = 0.0;
    int fh = h, fw = w, cin = 3;
    for (size_t i = 0; i < frcnn_model_param_count(m); i++) {
        frcnn_param p;
        frcnn_model_param(m, i, &p);
        if (p.is_bias || strncmp(p.name, "backbone.", 9) != 0)
            continue;
        int cout = (int)frcnn_tensor_dim(p.value, 0);
        flop += 2.0 * cout * cin * 9.0 * fh * fw;
        cin = cout;
        /* the stages before a pool: torchvision numbering leaves a gap of 3 after a pooled conv */
        frcnn_param next;
        char name[64];
        int idx = atoi(p.name + 18);
        snprintf(name, sizeof name, "backbone.features.%d.weight", idx + 3);
        if (frcnn_model_find_param(m, name, &next) == FRCNN_OK) {
            fh = (fh + 1) / 2;
            fw = (fw + 1) / 2;
        }
    }
    int a = c->anchors.n_ratios * c->anchors.n_scales;
    flop += 2.0 * c->rpn_channels * cin * 9.0 * fh * fw + 2.0 * 6 * a * c->rpn_channels * (double)fh * fw;
    double in6 = (double)cin * c->pooled_size * c->pooled_size;
    flop += 2.0 * rois * (in6 * c->fc_channels + (double)c->fc_channels * c->fc_channels +
                          (double)c->fc_channels * 5 * c->num_classes);
    return flop * 1e-9;
}

/* The RoIs the model's head gets for this input: every proposal (test values) in a detection; in a step, the RoIs
 * that target sampling takes from the proposals (training values) and the GT boxes, the RoI batch or fewer. */
static size_t head_rois(frcnn_ctx *ctx, frcnn_model *m, const frcnn_input *in, const float *gt, const int32_t *labels,
                        size_t g, bool train)
{
    const frcnn_config *c = frcnn_model_config(m);
    const frcnn_proposal_params *pp = train ? &c->train_proposals : &c->test_proposals;
    const frcnn_tensor *feature;
    frcnn_rpn_outputs rpn;
    check(ctx, frcnn_model_stage_begin(m, in, false), "stage begin");
    check(ctx, frcnn_model_backbone_forward(m, &feature), "backbone");
    check(ctx, frcnn_model_rpn_forward(m, &rpn), "RPN");
    size_t np_max = (size_t)pp->post_nms_top_n, batch = (size_t)c->roi_targets.batch_size;
    size_t width = 4 * (size_t)c->num_classes;
    float *fg = malloc(rpn.n * sizeof *fg), *props = malloc(np_max * 4 * sizeof *props);
    float *rois = malloc(batch * 4 * sizeof *rois), *targets = malloc(batch * width * sizeof *targets);
    float *inside_w = malloc(batch * width * sizeof *inside_w);
    int32_t *roi_labels = malloc(batch * sizeof *roi_labels);
    frcnn_arena *scratch;
    size_t scratch_bytes = frcnn_proposal_scratch_bytes(rpn.n) + (np_max + g) * (g + 4) * 4 + 4096;
    if (!fg || !props || !rois || !targets || !inside_w || !roi_labels ||
        frcnn_arena_create(ctx, scratch_bytes, &scratch) != FRCNN_OK) {
        fprintf(stderr, "bench_model: out of memory\n");
        exit(1);
    }
    const float *logits = frcnn_tensor_data(rpn.logits);
    for (size_t i = 0; i < rpn.n; i++)
        fg[i] = 1.0f / (1.0f + expf(logits[2 * i] - logits[2 * i + 1]));
    size_t n = 0;
    check(ctx, frcnn_proposals(ctx, scratch, pp, rpn.anchors, frcnn_tensor_data(rpn.deltas), fg, rpn.n,
                               (float)frcnn_tensor_dim(in->image, 2), (float)frcnn_tensor_dim(in->image, 3), in->scale,
                               props, NULL, &n),
          "proposals");
    if (train) {
        frcnn_rng rng; /* the count depends on the candidate counts only, not on the draws */
        frcnn_rng_seed(&rng, 0);
        size_t np = n;
        check(ctx, frcnn_roi_targets(ctx, scratch, &c->roi_targets, &rng, props, np, gt, labels, g, c->num_classes,
                                     rois, roi_labels, targets, inside_w, &n),
              "RoI targets");
    }
    frcnn_arena_free(scratch);
    free(roi_labels);
    free(inside_w);
    free(targets);
    free(rois);
    free(props);
    free(fg);
    return n;
}

/* One 2048^3 sgemm on OpenBLAS's own `threads` threads, in GFLOP/s. Called between the timed steps so that the
 * floor sees the same machine load, and run in a forked child so that its three 16 MB matrices stay out of this
 * process's peak RSS (the training's alone) and no idle OpenBLAS thread spins beside the next timed step. */
static double sgemm_gflops(int threads)
{
    int fd[2];
    if (pipe(fd) != 0) {
        perror("bench_model: pipe");
        exit(1);
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("bench_model: fork");
        exit(1);
    }
    if (pid == 0) {
        const int n = 2048;
        size_t nn = (size_t)n * (size_t)n;
        float *a = malloc(nn * sizeof(float)), *b = malloc(nn * sizeof(float)), *c = malloc(nn * sizeof(float));
        double gflops = 0.0;
        if (a && b && c) {
            for (size_t i = 0; i < nn; i++) {
                a[i] = (float)(i % 7) * 0.1f;
                b[i] = (float)(i % 5) * 0.1f;
                c[i] = 0.0f;
            }
            openblas_set_num_threads(threads);
            for (int rep = 0; rep < 2; rep++) { /* the first starts OpenBLAS's threads */
                double t0 = bench_now();
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
                gflops = 2.0 * n * (double)n * n / (bench_now() - t0) * 1e-9;
            }
        }
        _exit(write(fd[1], &gflops, sizeof gflops) == (ssize_t)sizeof gflops && gflops > 0.0 ? 0 : 1);
    }
    close(fd[1]);
    double gflops = 0.0;
    int status = 0;
    bool got = read(fd[0], &gflops, sizeof gflops) == (ssize_t)sizeof gflops;
    close(fd[0]);
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || !got) {
        fprintf(stderr, "bench_model: the sgemm child failed\n");
        exit(1);
    }
    return gflops;
}

/* Runs in a child: one preset, prints its row, appends its TSV lines. */
static void bench_preset(const char *name, frcnn_config cfg, int h, int w, int reps, const char *tsv_path)
{
    frcnn_ctx *ctx;
    check(NULL, frcnn_ctx_create(NULL, &ctx), "context");
    frcnn_model *m;
    check(ctx, frcnn_model_create(ctx, &cfg, 1, &m), "model");
    /* A training process holds the optimizer's state too (SGD's momentum, as train_voc): its peak RSS is the one
     * that counts, and a step's update is part of every iteration. */
    frcnn_optim *opt;
    frcnn_optim_params op = frcnn_optim_params_sgd();
    check(ctx, frcnn_optim_create(ctx, &op, m, &opt), "optimizer");
    int64_t dims[4] = {1, 3, h, w};
    frcnn_tensor *img;
    check(ctx, frcnn_tensor_create(ctx, 4, dims, &img), "image");
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 3);
    /* Unit noise as the prepared input. With random weights, VGG16's RPN keeps only about 24 proposals of an input
     * 50 times larger (its boxes degenerate), which left the head a fifth of a real step's work. */
    frcnn_rng_fill_normal(&rng, img, 0.0f, 1.0f);
    float gt[12] = {0.1f * w, 0.1f * h, 0.45f * w, 0.6f * h, 0.5f * w, 0.2f * h, 0.9f * w, 0.9f * h,
                    0.3f * w, 0.5f * h, 0.6f * w, 0.95f * h};
    int32_t labels[3] = {1, 5, 12};
    frcnn_input in = {img, 1.0f};
    frcnn_losses l;
    double ts[16], td[16], tg[16], ts_gemm[16], td_gemm[16], tz[16], tu[16];
    frcnn_detection dets[100];
    size_t n;
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        double z0 = bench_now();
        frcnn_model_zero_grad(m);
        sgemm_seconds = 0.0;
        double t0 = bench_now();
        check(ctx, frcnn_model_train_step(m, &in, gt, labels, 3, &rng, &l), "train step");
        double t1 = bench_now(), step_gemm = sgemm_seconds;
        check(ctx, frcnn_optim_step(opt, 1e-4f), "optimizer step");
        double u1 = bench_now();
        sgemm_seconds = 0.0;
        check(ctx, frcnn_model_detect(m, &in, dets, 100, &n), "detect");
        double t2 = bench_now(), det_gemm = sgemm_seconds;
        double g = sgemm_gflops(frcnn_ctx_threads(ctx));
        if (r >= 0) {
            ts[r] = t1 - t0;
            td[r] = t2 - u1;
            tg[r] = g;
            ts_gemm[r] = step_gemm;
            td_gemm[r] = det_gemm;
            tz[r] = t0 - z0;
            tu[r] = u1 - t1;
        }
    }
    double step = bench_median(ts, reps), det = bench_median(td, reps), gflops = bench_median(tg, reps);
    double step_gemm = bench_median(ts_gemm, reps), det_gemm = bench_median(td_gemm, reps);
    double zero = bench_median(tz, reps), update = bench_median(tu, reps);
    /* The floor counts the RoIs the head really gets. */
    size_t train_rois = head_rois(ctx, m, &in, gt, labels, 3, true);
    size_t det_rois = head_rois(ctx, m, &in, gt, labels, 3, false);
    double train_gf = forward_gflop(m, h, w, (int)train_rois);
    double det_gf = forward_gflop(m, h, w, (int)det_rois);
    double floor_step = 3.0 * train_gf / gflops, floor_det = det_gf / gflops;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss = ru.ru_maxrss / 1024.0;
    printf("%-6s %4dx%-4d %5zu %8.3f %7.1f %8.3f %6.2f %5zu %8.3f %7.1f %8.3f %6.2f %8.0f %8.0f\n", name, h, w,
           train_rois, step, 3 * train_gf, floor_step, step / floor_step, det_rois, det, det_gf, floor_det,
           det / floor_det, rss, gflops);
    printf("%-6s %9s %5s %8.3f %7s %8s %6.2f %5s %8.3f %7s %8s %6.2f   (sgemm calls alone)\n", "", "", "", step_gemm,
           "", "", step_gemm / floor_step, "", det_gemm, "", "", det_gemm / floor_det);
    printf("%-6s %9s %5s %8.3f   (a whole iteration: zero_grad %.3f s + step + SGD update %.3f s)\n", "", "", "",
           zero + step + update, zero, update);
    FILE *f = fopen(tsv_path, "a");
    if (f) {
        fprintf(f, "model_%s_train_rois\t%zu\tRoIs\n", name, train_rois);
        fprintf(f, "model_%s_detect_rois\t%zu\tRoIs\n", name, det_rois);
        fprintf(f, "model_%s_train_step_s\t%.4f\ts\n", name, step);
        fprintf(f, "model_%s_train_step_gflop\t%.2f\tGFLOP\n", name, 3 * train_gf);
        fprintf(f, "model_%s_train_floor_s\t%.4f\ts\n", name, floor_step);
        fprintf(f, "model_%s_train_step_over_floor\t%.3f\tratio\n", name, step / floor_step);
        fprintf(f, "model_%s_detect_s\t%.4f\ts\n", name, det);
        fprintf(f, "model_%s_detect_floor_s\t%.4f\ts\n", name, floor_det);
        fprintf(f, "model_%s_detect_over_floor\t%.3f\tratio\n", name, det / floor_det);
        fprintf(f, "model_%s_train_sgemm_s\t%.4f\ts\n", name, step_gemm);
        fprintf(f, "model_%s_train_sgemm_over_floor\t%.3f\tratio\n", name, step_gemm / floor_step);
        fprintf(f, "model_%s_detect_sgemm_s\t%.4f\ts\n", name, det_gemm);
        fprintf(f, "model_%s_detect_sgemm_over_floor\t%.3f\tratio\n", name, det_gemm / floor_det);
        fprintf(f, "model_%s_zero_grad_s\t%.4f\ts\n", name, zero);
        fprintf(f, "model_%s_sgd_update_s\t%.4f\ts\n", name, update);
        fprintf(f, "model_%s_train_iteration_s\t%.4f\ts\n", name, zero + step + update);
        fprintf(f, "model_%s_peak_rss_mib\t%.1f\tMiB\n", name, rss);
        fprintf(f, "model_%s_sgemm_gflops\t%.1f\tGFLOP/s\n", name, gflops);
        fclose(f);
    }
    frcnn_tensor_free(img);
    frcnn_optim_free(opt);
    frcnn_model_free(m);
    frcnn_ctx_free(ctx);
}

int main(int argc, char **argv)
{
    const char *tsv = argc > 1 ? argv[1] : "build/bench.tsv";
    int reps = getenv("FRCNN_BENCH_REPS") ? atoi(getenv("FRCNN_BENCH_REPS")) : 3;
    if (reps < 1 || reps > 16)
        reps = 3;
    printf("\nwhole model, OpenBLAS kernel %s, median of %d (floor = 3 x forward GFLOP / sgemm GFLOP/s; "
           "detection floor = forward GFLOP / sgemm GFLOP/s)\n",
           frcnn_blas_core(), reps);
    printf("%-6s %9s %5s %8s %7s %8s %6s %5s %8s %7s %8s %6s %8s %8s\n", "preset", "input", "RoIs", "step s",
           "GFLOP", "floor s", "ratio", "RoIs", "det s", "GFLOP", "floor s", "ratio", "RSS MiB", "sgemm");
    fflush(stdout);
    struct {
        const char *name;
        frcnn_config cfg;
        int h, w, reps;
    } presets[2] = {{"small", frcnn_config_small(), 320, 432, reps + 2}, {"vgg16", frcnn_config_vgg16(), 600, 800, reps}};
    const char *only = getenv("FRCNN_BENCH_PRESET"); /* e.g. "small": run one preset (for profiling) */
    for (int i = 0; i < 2; i++) {
        if (only && strcmp(only, presets[i].name) != 0)
            continue;
        pid_t pid = fork();
        if (pid == 0) {
            bench_preset(presets[i].name, presets[i].cfg, presets[i].h, presets[i].w, presets[i].reps, tsv);
            fflush(stdout);
            _exit(0);
        }
        int status = 0;
        if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "bench_model: preset %s failed\n", presets[i].name);
            return 1;
        }
    }
    return 0;
}
