/* Training checkpoints: a run interrupted after k steps, saved, rebuilt from scratch (also in a fresh process)
 * and loaded continues bit for bit as the uninterrupted run, for SGD and Adam with dropout, at the first step,
 * mid-epoch, at an epoch boundary and through several resumes in one epoch; strict loading refuses what does not
 * belong; weights-only loading reports, and refuses weights trained on differently normalised pixels; the box
 * convention and pool rounding survive a checkpoint. */
#include "testutil.h"

#include "../lib/train/ckpt_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { IMG_H = 96, IMG_W = 128, N_IMAGES = 3 };

static char tmpdir[64];

static frcnn_config tiny_config(void)
{
    frcnn_config c = tu_tiny_config(IMG_H, IMG_W, 32, 64);
    c.num_classes = 3;
    c.roi_targets.batch_size = 32;
    c.train_proposals.pre_nms_top_n = 600;
    c.train_proposals.post_nms_top_n = 100;
    c.test_proposals.post_nms_top_n = 50;
    return c; /* dropout stays 0.5: its masks must resume too */
}

/* The dataset: fixed images and boxes. */
typedef struct dataset {
    frcnn_tensor *image[N_IMAGES];
    float gt[N_IMAGES][8];
    int32_t labels[N_IMAGES][2];
} dataset;

static void make_dataset(frcnn_ctx *ctx, dataset *d)
{
    for (int i = 0; i < N_IMAGES; i++) {
        d->image[i] = tu_tensor(ctx, 4, 1, 3, IMG_H, IMG_W);
        tu_fill_uniform(frcnn_tensor_data(d->image[i]), frcnn_tensor_numel(d->image[i]), 50 + (uint64_t)i, -1.0f,
                        1.0f);
        const float g[8] = {5.0f + 3 * i, 8, 50.0f + 3 * i, 60, 60, 30.0f + 2 * i, 120, 90};
        memcpy(d->gt[i], g, sizeof g);
        d->labels[i][0] = 1;
        d->labels[i][1] = 2;
    }
}

static void dataset_free(dataset *d)
{
    for (int i = 0; i < N_IMAGES; i++)
        frcnn_tensor_free(d->image[i]);
}

/* Everything a training run owns. */
typedef struct run {
    frcnn_model *model;
    frcnn_optim *optim;
    frcnn_sampler *sampler;
    frcnn_lr_schedule schedule;
    frcnn_rng rng[2]; /* 0: training (sampling, dropout); 1: an extra stream, advanced every step */
    frcnn_train_state state;
} run;

static void run_init(frcnn_ctx *ctx, run *r, frcnn_optim_kind kind, uint64_t seed)
{
    memset(r, 0, sizeof *r);
    frcnn_config c = tiny_config();
    assert_int_equal(frcnn_model_create(ctx, &c, seed, &r->model), FRCNN_OK);
    frcnn_optim_params op = kind == FRCNN_OPTIM_SGD ? frcnn_optim_params_sgd() : frcnn_optim_params_adam();
    assert_int_equal(frcnn_optim_create(ctx, &op, r->model, &r->optim), FRCNN_OK);
    frcnn_sampler_params sp = frcnn_sampler_params_default();
    sp.seed = 11;
    sp.n_images = N_IMAGES;
    sp.flip = false;
    assert_int_equal(frcnn_sampler_create(ctx, &sp, &r->sampler), FRCNN_OK);
    r->schedule = frcnn_lr_schedule_paper();
    r->schedule.base_lr = kind == FRCNN_OPTIM_SGD ? 0.005f : 0.0005f;
    r->schedule.milestones[0] = 4; /* the rate changes during the test */
    frcnn_rng_seed(&r->rng[0], seed + 100);
    frcnn_rng_seed(&r->rng[1], seed + 200);
    r->state = (frcnn_train_state){r->model, r->optim, r->sampler, &r->schedule, 0, r->rng, 2, 0x1234, NULL};
}

static void run_free(run *r)
{
    frcnn_sampler_free(r->sampler);
    frcnn_optim_free(r->optim);
    frcnn_model_free(r->model);
}

static void train(frcnn_ctx *ctx, run *r, const dataset *d, int steps)
{
    for (int i = 0; i < steps; i++) {
        frcnn_sample s;
        assert_int_equal(frcnn_sampler_next(r->sampler, &s), FRCNN_OK);
        frcnn_input in = {d->image[s.image], 1.0f};
        frcnn_losses l;
        frcnn_model_zero_grad(r->model);
        frcnn_status st = frcnn_model_train_step(r->model, &in, d->gt[s.image], d->labels[s.image], 2, &r->rng[0], &l);
        if (st != FRCNN_OK)
            print_error("%s\n", frcnn_ctx_last_error(ctx));
        assert_int_equal(st, FRCNN_OK);
        assert_int_equal(frcnn_optim_step(r->optim, frcnn_lr_at(&r->schedule, (int64_t)r->state.iteration)),
                         FRCNN_OK);
        frcnn_rng_next_u64(&r->rng[1]);
        r->state.iteration++;
    }
}

static void save(frcnn_ctx *ctx, run *r, const char *name)
{
    frcnn_status st = frcnn_ckpt_save(ctx, tmpdir, name, &r->state);
    if (st != FRCNN_OK)
        print_error("%s\n", frcnn_ctx_last_error(ctx));
    assert_int_equal(st, FRCNN_OK);
}

static void load(frcnn_ctx *ctx, run *r, const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    frcnn_status st = frcnn_ckpt_load(ctx, path, &r->state, false);
    if (st != FRCNN_OK)
        print_error("%s\n", frcnn_ctx_last_error(ctx));
    assert_int_equal(st, FRCNN_OK);
}

/* Every parameter, every optimizer buffer, the counters, the sampler and the RNG streams: bit for bit. */
static void assert_same_run(const run *a, const run *b)
{
    for (size_t i = 0; i < frcnn_model_param_count(a->model); i++) {
        frcnn_param pa, pb;
        frcnn_model_param(a->model, i, &pa);
        frcnn_model_param(b->model, i, &pb);
        tu_assert_identical(pa.name, frcnn_tensor_data(pa.value), frcnn_tensor_data(pb.value),
                            frcnn_tensor_numel(pa.value));
    }
    assert_int_equal(frcnn_optim_state_count(a->optim), frcnn_optim_state_count(b->optim));
    for (size_t i = 0; i < frcnn_optim_state_count(a->optim); i++) {
        const char *name;
        frcnn_tensor *ta, *tb;
        frcnn_optim_state(a->optim, i, &name, &ta);
        frcnn_optim_state(b->optim, i, NULL, &tb);
        tu_assert_identical(name, frcnn_tensor_data(ta), frcnn_tensor_data(tb), frcnn_tensor_numel(ta));
    }
    assert_int_equal(frcnn_optim_steps(a->optim), frcnn_optim_steps(b->optim));
    assert_int_equal(a->state.iteration, b->state.iteration);
    frcnn_sampler_state sa = frcnn_sampler_get_state(a->sampler), sb = frcnn_sampler_get_state(b->sampler);
    assert_int_equal(sa.epoch, sb.epoch);
    assert_int_equal(sa.cursor, sb.cursor);
    assert_memory_equal(a->rng, b->rng, sizeof a->rng);
}

/* N steps straight against steps split at `cuts` (ascending), each cut a save + a run rebuilt from other seeds +
 * a load. */
static void check_resume(frcnn_optim_kind kind, const int *cuts, int n_cuts, int total)
{
    frcnn_ctx *ctx = tu_ctx();
    dataset d;
    make_dataset(ctx, &d);
    run straight, resumed;
    run_init(ctx, &straight, kind, 1);
    train(ctx, &straight, &d, total);

    run_init(ctx, &resumed, kind, 1);
    int done = 0;
    for (int c = 0; c < n_cuts; c++) {
        train(ctx, &resumed, &d, cuts[c] - done);
        done = cuts[c];
        save(ctx, &resumed, "cut.ckpt");
        run_free(&resumed);
        run_init(ctx, &resumed, kind, 999); /* different weights and streams: all must come from the file */
        load(ctx, &resumed, "cut.ckpt");
    }
    train(ctx, &resumed, &d, total - done);
    assert_same_run(&straight, &resumed);
    run_free(&straight);
    run_free(&resumed);
    dataset_free(&d);
    frcnn_ctx_free(ctx);
}

/* Epochs are 3 images long: 1 = first step, 2 = mid-epoch, 3 and 6 = epoch boundaries. */
static void test_resume_sgd_first_step(void **state)
{
    (void)state;
    const int cuts[] = {1};
    check_resume(FRCNN_OPTIM_SGD, cuts, 1, 6);
}

static void test_resume_sgd_mid_epoch_and_boundary(void **state)
{
    (void)state;
    const int mid[] = {2}, boundary[] = {3};
    check_resume(FRCNN_OPTIM_SGD, mid, 1, 6);
    check_resume(FRCNN_OPTIM_SGD, boundary, 1, 6);
}

static void test_resume_several_times_in_one_epoch(void **state)
{
    (void)state;
    const int two[] = {4, 5}, three[] = {3, 4, 5};
    check_resume(FRCNN_OPTIM_SGD, two, 2, 7);
    check_resume(FRCNN_OPTIM_ADAM, three, 3, 7);
}

static void test_resume_adam(void **state)
{
    (void)state;
    const int cuts[] = {2, 4};
    check_resume(FRCNN_OPTIM_ADAM, cuts, 2, 6);
}

/* The first part runs in a child process that saves and exits; the parent loads what it left. */
static void test_resume_in_fresh_process(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    dataset d;
    make_dataset(ctx, &d);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        run r;
        run_init(ctx, &r, FRCNN_OPTIM_SGD, 1);
        train(ctx, &r, &d, 2);
        _exit(frcnn_ckpt_save(ctx, tmpdir, "child.ckpt", &r.state) == FRCNN_OK ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    run straight, resumed;
    run_init(ctx, &straight, FRCNN_OPTIM_SGD, 1);
    train(ctx, &straight, &d, 5);
    run_init(ctx, &resumed, FRCNN_OPTIM_SGD, 7);
    load(ctx, &resumed, "child.ckpt");
    assert_int_equal(resumed.state.iteration, 2);
    train(ctx, &resumed, &d, 3);
    assert_same_run(&straight, &resumed);
    run_free(&straight);
    run_free(&resumed);
    dataset_free(&d);
    frcnn_ctx_free(ctx);
}

static void test_strict_load_refuses(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    run r;
    run_init(ctx, &r, FRCNN_OPTIM_SGD, 1);
    save(ctx, &r, "strict.ckpt");
    char path[128];
    snprintf(path, sizeof path, "%s/strict.ckpt", tmpdir);

    /* another configuration */
    frcnn_config c = tiny_config();
    c.rpn_channels = 16;
    frcnn_model *other;
    assert_int_equal(frcnn_model_create(ctx, &c, 1, &other), FRCNN_OK);
    frcnn_train_state s = {other, NULL, NULL, NULL, 0, NULL, 0, 0x1234, NULL};
    tu_expect_error_msg(ctx, frcnn_ckpt_load(ctx, path, &s, false), FRCNN_ERR_MISMATCH, "config.rpn_channels");
    frcnn_model_free(other);

    /* another dataset: refused unless forced */
    run q;
    run_init(ctx, &q, FRCNN_OPTIM_SGD, 2);
    q.state.dataset_fingerprint = 0x9999;
    tu_expect_error_msg(ctx, frcnn_ckpt_load(ctx, path, &q.state, false), FRCNN_ERR_MISMATCH, "dataset");
    assert_int_equal(frcnn_ckpt_load(ctx, path, &q.state, true), FRCNN_OK);
    run_free(&q);

    /* another optimizer kind, and a different number of RNG streams */
    run_init(ctx, &q, FRCNN_OPTIM_ADAM, 2);
    tu_expect_error_msg(ctx, frcnn_ckpt_load(ctx, path, &q.state, false), FRCNN_ERR_MISMATCH, "optimizer");
    run_free(&q);
    run_init(ctx, &q, FRCNN_OPTIM_SGD, 2);
    q.state.n_rngs = 1;
    tu_expect_error_msg(ctx, frcnn_ckpt_load(ctx, path, &q.state, false), FRCNN_ERR_MISMATCH, "RNG");
    /* a changed schedule is refused too (a resumed run must not silently change its learning rate) */
    q.state.n_rngs = 2;
    q.schedule.base_lr = 0.1f;
    tu_expect_error_msg(ctx, frcnn_ckpt_load(ctx, path, &q.state, false), FRCNN_ERR_MISMATCH, "sched.base_lr");
    run_free(&q);

    /* a weights-only file has no optimizer to restore */
    frcnn_train_state weights_only = {r.model, NULL, NULL, NULL, 5, NULL, 0, 0, NULL};
    assert_int_equal(frcnn_ckpt_save(ctx, tmpdir, "weights.ckpt", &weights_only), FRCNN_OK);
    snprintf(path, sizeof path, "%s/weights.ckpt", tmpdir);
    run_init(ctx, &q, FRCNN_OPTIM_SGD, 2);
    q.state.dataset_fingerprint = 0;
    tu_expect_error_msg(ctx, frcnn_ckpt_load(ctx, path, &q.state, false), FRCNN_ERR_MISMATCH, "optimizer");
    run_free(&q);

    /* a flipped bit in tensor data: refused with a checksum error */
    snprintf(path, sizeof path, "%s/strict.ckpt", tmpdir);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, -100000, SEEK_END), 0);
    int byte = fgetc(f);
    assert_int_equal(fseek(f, -100000, SEEK_END), 0);
    fputc(byte ^ 0x10, f);
    fclose(f);
    run_init(ctx, &q, FRCNN_OPTIM_SGD, 2);
    tu_expect_error(ctx, frcnn_ckpt_load(ctx, path, &q.state, false), FRCNN_ERR_CHECKSUM);
    run_free(&q);

    /* a missing file */
    tu_expect_error(ctx, frcnn_ckpt_load(ctx, "/nonexistent/x.ckpt", &r.state, false), FRCNN_ERR_NOT_FOUND);
    run_free(&r);
    frcnn_ctx_free(ctx);
}

static void test_weights_only_and_config(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    run r;
    run_init(ctx, &r, FRCNN_OPTIM_SGD, 1);
    r.state.iteration = 40;
    save(ctx, &r, "full.ckpt");
    char path[128];
    snprintf(path, sizeof path, "%s/full.ckpt", tmpdir);

    frcnn_config c;
    assert_int_equal(frcnn_ckpt_read_config(ctx, path, &c), FRCNN_OK);
    frcnn_config want = tiny_config();
    assert_int_equal(c.rpn_channels, want.rpn_channels);
    assert_int_equal(c.num_classes, want.num_classes);
    assert_true(c.anchors.scales[1] == want.anchors.scales[1]);

    /* the same network: everything loads, no counters move */
    frcnn_model *m;
    assert_int_equal(frcnn_model_create(ctx, &c, 77, &m), FRCNN_OK);
    frcnn_weights_report rep;
    assert_int_equal(frcnn_ckpt_load_weights(ctx, path, m, &rep), FRCNN_OK);
    assert_int_equal(rep.loaded, frcnn_model_param_count(m));
    assert_int_equal(rep.missing + rep.unexpected + rep.mismatched, 0);
    frcnn_param a, b;
    frcnn_model_param(m, 3, &a);
    frcnn_model_param(r.model, 3, &b);
    tu_assert_identical(a.name, frcnn_tensor_data(a.value), frcnn_tensor_data(b.value), frcnn_tensor_numel(a.value));
    frcnn_model_free(m);

    /* more classes: the predictor does not fit, the rest does, and the report names it */
    c.num_classes = 5;
    assert_int_equal(frcnn_model_create(ctx, &c, 77, &m), FRCNN_OK);
    assert_int_equal(frcnn_ckpt_load_weights(ctx, path, m, &rep), FRCNN_OK);
    assert_int_equal(rep.mismatched, 4); /* cls_score and bbox_pred, weight and bias */
    assert_int_equal(rep.loaded, frcnn_model_param_count(m) - 4);
    assert_non_null(strstr(rep.first_problem, "roi_heads.box_predictor"));
    frcnn_model_free(m);
    run_free(&r);
    frcnn_ctx_free(ctx);
}

/* Every parameter of the model, copied (free with free()). */
static float **snapshot(const frcnn_model *m)
{
    float **v = calloc(frcnn_model_param_count(m), sizeof *v);
    for (size_t i = 0; i < frcnn_model_param_count(m); i++) {
        frcnn_param p;
        frcnn_model_param(m, i, &p);
        size_t bytes = frcnn_tensor_numel(p.value) * sizeof(float);
        v[i] = malloc(bytes);
        memcpy(v[i], frcnn_tensor_data(p.value), bytes);
    }
    return v;
}

static void assert_params_are(const frcnn_model *m, float **v)
{
    for (size_t i = 0; i < frcnn_model_param_count(m); i++) {
        frcnn_param p;
        frcnn_model_param(m, i, &p);
        tu_assert_identical(p.name, frcnn_tensor_data(p.value), v[i], frcnn_tensor_numel(p.value));
        free(v[i]);
    }
    free(v);
}

/* Weights trained on pixels normalised otherwise are refused before anything is copied; the file's normalisation
 * can be read, and a model created with it loads them. */
static void test_weights_pixel_norm(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_config fc = tiny_config();
    const float means[3] = {103.5f, 116.25f, 0.5f}, stds[3] = {57.5f, 1.0f, 0.25f};
    memcpy(fc.pixel_means, means, sizeof means);
    memcpy(fc.pixel_stds, stds, sizeof stds);
    frcnn_model *src;
    assert_int_equal(frcnn_model_create(ctx, &fc, 1, &src), FRCNN_OK);
    frcnn_train_state weights = {src, NULL, NULL, NULL, 0, NULL, 0, 0, NULL};
    assert_int_equal(frcnn_ckpt_save(ctx, tmpdir, "norm.ckpt", &weights), FRCNN_OK);
    char path[128];
    snprintf(path, sizeof path, "%s/norm.ckpt", tmpdir);

    float got_means[3] = {0}, got_stds[3] = {0};
    assert_int_equal(frcnn_ckpt_read_pixel_norm(ctx, path, got_means, got_stds), FRCNN_OK);
    tu_assert_identical("pixel_means read back", got_means, means, 3);
    tu_assert_identical("pixel_stds read back", got_stds, stds, 3);
    tu_expect_error(ctx, frcnn_ckpt_read_pixel_norm(ctx, "/nonexistent/x.ckpt", got_means, got_stds),
                    FRCNN_ERR_NOT_FOUND);
    tu_expect_error(ctx, frcnn_ckpt_read_pixel_norm(ctx, path, NULL, got_stds), FRCNN_ERR_INVALID_ARG);

    /* Other means (the preset's), then other stds only: refused, nothing copied. */
    for (int k = 0; k < 2; k++) {
        frcnn_config c = fc, preset = tiny_config();
        if (k == 0)
            memcpy(c.pixel_means, preset.pixel_means, sizeof c.pixel_means);
        else
            c.pixel_stds[2] = 0.5f;
        frcnn_model *m;
        assert_int_equal(frcnn_model_create(ctx, &c, 2, &m), FRCNN_OK);
        float **before = snapshot(m);
        frcnn_weights_report rep;
        tu_expect_error_msg(ctx, frcnn_ckpt_load_weights(ctx, path, m, &rep), FRCNN_ERR_MISMATCH,
                            "frcnn_ckpt_read_pixel_norm");
        assert_params_are(m, before);
        frcnn_model_free(m);
    }

    /* The file's own normalisation: everything loads. */
    frcnn_model *m;
    assert_int_equal(frcnn_model_create(ctx, &fc, 2, &m), FRCNN_OK);
    frcnn_weights_report rep;
    assert_int_equal(frcnn_ckpt_load_weights(ctx, path, m, &rep), FRCNN_OK);
    assert_int_equal(rep.loaded, frcnn_model_param_count(m));
    assert_params_are(m, snapshot(src));
    frcnn_model_free(m);
    frcnn_model_free(src);
    frcnn_ctx_free(ctx);
}

/* box_convention and pool_floor are stored and read back; a strict load into a model of the other convention is
 * refused. */
static void test_config_conventions_round_trip(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_config c = tiny_config();
    c.box_convention = FRCNN_BOXES_CONTINUOUS;
    c.pool_floor = 1;
    frcnn_model *m;
    assert_int_equal(frcnn_model_create(ctx, &c, 1, &m), FRCNN_OK);
    frcnn_train_state weights = {m, NULL, NULL, NULL, 0, NULL, 0, 0, NULL};
    assert_int_equal(frcnn_ckpt_save(ctx, tmpdir, "conv.ckpt", &weights), FRCNN_OK);
    char path[128];
    snprintf(path, sizeof path, "%s/conv.ckpt", tmpdir);
    frcnn_config back;
    memset(&back, 0, sizeof back);
    assert_int_equal(frcnn_ckpt_read_config(ctx, path, &back), FRCNN_OK);
    assert_int_equal(back.box_convention, FRCNN_BOXES_CONTINUOUS);
    assert_int_equal(back.pool_floor, 1);

    frcnn_config other = c;
    other.box_convention = FRCNN_BOXES_INCLUSIVE;
    frcnn_model *o;
    assert_int_equal(frcnn_model_create(ctx, &other, 1, &o), FRCNN_OK);
    frcnn_train_state s = {o, NULL, NULL, NULL, 0, NULL, 0, 0, NULL};
    tu_expect_error_msg(ctx, frcnn_ckpt_load(ctx, path, &s, false), FRCNN_ERR_MISMATCH, "config.box_convention");
    frcnn_model_free(o);
    other = c;
    other.pool_floor = 0;
    assert_int_equal(frcnn_model_create(ctx, &other, 1, &o), FRCNN_OK);
    s.model = o;
    tu_expect_error_msg(ctx, frcnn_ckpt_load(ctx, path, &s, false), FRCNN_ERR_MISMATCH, "config.pool_floor");
    frcnn_model_free(o);

    /* The defaults (0, 0) read back as such. */
    frcnn_model_free(m);
    c = tiny_config();
    assert_int_equal(frcnn_model_create(ctx, &c, 1, &m), FRCNN_OK);
    weights.model = m;
    assert_int_equal(frcnn_ckpt_save(ctx, tmpdir, "conv0.ckpt", &weights), FRCNN_OK);
    snprintf(path, sizeof path, "%s/conv0.ckpt", tmpdir);
    back.box_convention = FRCNN_BOXES_CONTINUOUS;
    back.pool_floor = 1;
    assert_int_equal(frcnn_ckpt_read_config(ctx, path, &back), FRCNN_OK);
    assert_int_equal(back.box_convention, FRCNN_BOXES_INCLUSIVE);
    assert_int_equal(back.pool_floor, 0);
    frcnn_model_free(m);
    frcnn_ctx_free(ctx);
}

/* dir/name: the config.* keys of `from` and a field this library does not know, holding `value`. */
static void write_with_future_field(frcnn_ctx *ctx, const char *from, const char *name, double value)
{
    frcnn__ckpt_reader *r;
    frcnn__ckpt_writer *w;
    assert_int_equal(frcnn__ckpt_reader_open(ctx, from, &r), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_writer_open(ctx, tmpdir, name, 0, &w), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_begin_section(w, "META", FRCNN__CKPT_FLAG_REQUIRED), FRCNN_OK);
    for (size_t i = 0; i < frcnn__ckpt_kv_count(r); i++) {
        char key[FRCNN__CKPT_MAX_NAME + 1];
        double v;
        assert_int_equal(frcnn__ckpt_kv_key(r, i, key, sizeof key), FRCNN_OK);
        if (strncmp(key, "config.", 7) == 0 && frcnn__ckpt_get_f64(r, key, &v) == FRCNN_OK)
            assert_int_equal(frcnn__ckpt_kv_f64(w, key, v), FRCNN_OK);
    }
    assert_int_equal(frcnn__ckpt_kv_f64(w, "config.from_the_future", value), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_end_section(w), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_writer_finish(w), FRCNN_OK);
    frcnn__ckpt_reader_close(r);
}

/* A configuration field of a newer library is refused unless it holds its default 0 (what this library computes). */
static void test_unknown_config_field(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_config c = tiny_config();
    frcnn_model *m;
    assert_int_equal(frcnn_model_create(ctx, &c, 1, &m), FRCNN_OK);
    frcnn_train_state weights = {m, NULL, NULL, NULL, 0, NULL, 0, 0, NULL};
    assert_int_equal(frcnn_ckpt_save(ctx, tmpdir, "known.ckpt", &weights), FRCNN_OK);
    char known[128], path[128];
    snprintf(known, sizeof known, "%s/known.ckpt", tmpdir);
    frcnn_config back;
    write_with_future_field(ctx, known, "future0.ckpt", 0.0);
    snprintf(path, sizeof path, "%s/future0.ckpt", tmpdir);
    assert_int_equal(frcnn_ckpt_read_config(ctx, path, &back), FRCNN_OK);
    write_with_future_field(ctx, known, "future1.ckpt", 2.0);
    snprintf(path, sizeof path, "%s/future1.ckpt", tmpdir);
    tu_expect_error_msg(ctx, frcnn_ckpt_read_config(ctx, path, &back), FRCNN_ERR_VERSION, "config.from_the_future");
    frcnn_model_free(m);
    frcnn_ctx_free(ctx);
}

/* True while a save is in progress in dir (its NAME.tmp exists). */
static bool tmp_exists(const char *dir)
{
    DIR *d = opendir(dir);
    bool found = false;
    struct dirent *e;
    while (d && !found && (e = readdir(d)) != NULL)
        found = strstr(e->d_name, ".tmp") != NULL;
    if (d)
        closedir(d);
    return found;
}

/* The child of the kill test: resume from the newest checkpoint that verifies (or start when there is none),
 * then train, saving after every step and keeping the two newest, until `total` steps; exit 0 when done. */
static void killable_trainer(const char *dir, int total)
{
    frcnn_ctx *ctx;
    if (frcnn_ctx_create(NULL, &ctx) != FRCNN_OK)
        _exit(2);
    dataset d;
    make_dataset(ctx, &d);
    run r;
    run_init(ctx, &r, FRCNN_OPTIM_SGD, 1);
    char path[256], name[64];
    frcnn_status st = frcnn_ckpt_latest(ctx, dir, "run", path, sizeof path);
    if (st == FRCNN_OK)
        st = frcnn_ckpt_load(ctx, path, &r.state, false);
    else if (st == FRCNN_ERR_NOT_FOUND)
        st = FRCNN_OK; /* nothing saved yet: a true first start */
    if (st != FRCNN_OK) {
        fprintf(stderr, "kill test child: %s\n", frcnn_ctx_last_error(ctx));
        _exit(3);
    }
    while ((int)r.state.iteration < total) {
        train(ctx, &r, &d, 1);
        if (frcnn_ckpt_name(ctx, "run", r.state.iteration, name, sizeof name) != FRCNN_OK ||
            frcnn_ckpt_save(ctx, dir, name, &r.state) != FRCNN_OK ||
            frcnn_ckpt_retain(ctx, dir, "run", 2, 0, NULL) != FRCNN_OK) {
            fprintf(stderr, "kill test child: %s\n", frcnn_ctx_last_error(ctx));
            _exit(4);
        }
    }
    _exit(0);
}

/* A trainer killed with SIGKILL at random moments (mid-step, mid-save, mid-retention), restarted each time with
 * the same command, ends with weights identical to a run never interrupted. */
static void test_killed_many_times(void **state)
{
    (void)state;
    enum { TOTAL = 12 };
    char dir[128];
    snprintf(dir, sizeof dir, "%s/kill", tmpdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    frcnn_rng timing;
    frcnn_rng_seed(&timing, 2026);
    int kills = 0, kills_in_save = 0, finished = 0, resumes_from_progress = 0;
    uint64_t last_saved = 0;
    frcnn_ctx *probe = tu_ctx();
    for (int attempt = 0; attempt < 200 && !finished; attempt++) {
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            killable_trainer(dir, TOTAL);
        int status = 0;
        if (attempt % 2 == 1) {
            /* odd attempts: kill it the moment a save is under way (a .tmp exists) */
            for (int poll = 0; poll < 3000 && !tmp_exists(dir) && waitpid(pid, &status, WNOHANG) == 0; poll++) {
                struct timespec tick = {0, 200000L};
                nanosleep(&tick, NULL);
            }
            if (tmp_exists(dir) && kill(pid, SIGKILL) == 0) {
                kills_in_save++;
                assert_int_equal(waitpid(pid, &status, 0), pid);
                kills++;
                continue;
            }
        } else {
            /* even attempts: let it live 100..500 ms (start-up takes about 100), then kill it */
            long ms = 100 + (long)frcnn_rng_below(&timing, 401);
            struct timespec nap = {ms / 1000, (ms % 1000) * 1000000L};
            nanosleep(&nap, NULL);
        }
        if (waitpid(pid, &status, WNOHANG) == 0) {
            kill(pid, SIGKILL);
            assert_int_equal(waitpid(pid, &status, 0), pid);
            kills++;
            /* whatever the kill interrupted, the newest complete checkpoint is found */
            char path[256];
            frcnn_ckpt_info info;
            if (frcnn_ckpt_latest(probe, dir, "run", path, sizeof path) == FRCNN_OK &&
                frcnn_ckpt_info_read(probe, path, &info) == FRCNN_OK) {
                assert_true(info.verified);
                assert_true(info.iteration >= last_saved);
                resumes_from_progress += info.iteration > last_saved && last_saved > 0;
                last_saved = info.iteration;
            }
            continue;
        }
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) != 0)
            print_error("child exited with %d\n", WEXITSTATUS(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        finished = 1;
    }
    if (!finished) {
        /* the random budget ran out: finish without interruption */
        pid_t pid = fork();
        if (pid == 0)
            killable_trainer(dir, TOTAL);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    print_message("kill test: %d kills (%d during a save), %d restarts that had made progress since the previous one\n",
                  kills, kills_in_save, resumes_from_progress);
    assert_true(kills >= 2);
    assert_true(kills_in_save >= 1);
    assert_true(resumes_from_progress >= 1);
    frcnn_ctx_free(probe);

    frcnn_ctx *ctx = tu_ctx();
    dataset d;
    make_dataset(ctx, &d);
    run straight, resumed;
    run_init(ctx, &straight, FRCNN_OPTIM_SGD, 1);
    train(ctx, &straight, &d, TOTAL);
    run_init(ctx, &resumed, FRCNN_OPTIM_SGD, 5);
    char path[256];
    assert_int_equal(frcnn_ckpt_latest(ctx, dir, "run", path, sizeof path), FRCNN_OK);
    assert_int_equal(frcnn_ckpt_load(ctx, path, &resumed.state, false), FRCNN_OK);
    assert_int_equal(resumed.state.iteration, TOTAL);
    assert_same_run(&straight, &resumed);
    run_free(&straight);
    run_free(&resumed);
    dataset_free(&d);
    frcnn_ctx_free(ctx);
}

static int setup(void **state)
{
    (void)state;
    return tu_make_tmpdir(tmpdir, sizeof tmpdir, "ckpt");
}

static int teardown(void **state)
{
    (void)state;
    return tu_remove_tree(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_sgd_first_step),
        cmocka_unit_test(test_resume_sgd_mid_epoch_and_boundary),
        cmocka_unit_test(test_resume_several_times_in_one_epoch),
        cmocka_unit_test(test_resume_adam),
        cmocka_unit_test(test_resume_in_fresh_process),
        cmocka_unit_test(test_strict_load_refuses),
        cmocka_unit_test(test_weights_only_and_config),
        cmocka_unit_test(test_weights_pixel_norm),
        cmocka_unit_test(test_config_conventions_round_trip),
        cmocka_unit_test(test_unknown_config_field),
        cmocka_unit_test(test_killed_many_times),
    };
    return cmocka_run_group_tests_name("ckpt", tests, setup, teardown);
}
