/* train_voc: trains Faster R-CNN on a Pascal VOC format dataset, on a machine that may vanish at any moment.
 * Running the same command again is the whole recovery procedure: it resumes from the newest checkpoint that
 * verifies and continues exactly as if it had never stopped (weights, optimizer moments, schedule, sampler position
 * and random streams are all in the checkpoint). See docs/training.md. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frcnn.h"
#include "options.h"
#include "storage.h"
#include "trainlog.h"

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void log_to_stderr(void *user, frcnn_log_level level, const char *line)
{
    (void)user;
    fprintf(stderr, "train_voc: %s%s\n", level >= FRCNN_LOG_WARN ? "warning: " : "", line);
}

/* Everything a run holds. */
typedef struct run {
    train_options opt;
    frcnn_ctx *ctx;
    frcnn_dataset *data;
    frcnn_config config;
    frcnn_model *model;
    frcnn_optim *optim;
    frcnn_sampler *sampler;
    frcnn_lr_schedule schedule;
    frcnn_rng rng;            /* anchor and RoI sampling, dropout */
    uint64_t iteration, total;
    const char **class_names; /* from --classes */
    char *class_text;
    trainlog log;
    char log_path[4096];
    uint64_t ckpt_bytes;      /* size of a checkpoint, for the free-space checks */
    bool resuming;            /* resume_from names the checkpoint to continue from (find_checkpoint) */
    char resume_from[4096];
} run;

static int fail(run *r, const char *what)
{
    fprintf(stderr, "train_voc: %s: %s\n", what, frcnn_ctx_last_error(r->ctx));
    return 1;
}

static frcnn_train_state state_of(run *r)
{
    frcnn_train_state s = {0};
    s.model = r->model;
    s.optim = r->optim;
    s.sampler = r->sampler;
    s.schedule = &r->schedule;
    s.iteration = r->iteration;
    s.rngs = &r->rng;
    s.n_rngs = 1;
    s.dataset_fingerprint = frcnn_dataset_fingerprint(r->data);
    s.class_names = frcnn_dataset_class_names(r->data);
    return s;
}

/* Reads --classes: one name per line, blank lines skipped. */
static bool read_class_file(run *r, frcnn_voc_params *vp)
{
    FILE *f = fopen(r->opt.classes_file, "r");
    if (!f) {
        fprintf(stderr, "train_voc: --classes '%s': %s\n", r->opt.classes_file, strerror(errno));
        return false;
    }
    const size_t cap = 1 << 16;
    r->class_text = calloc(cap + 1, 1);
    r->class_names = calloc(4096, sizeof *r->class_names);
    if (!r->class_text || !r->class_names) {
        fclose(f);
        fprintf(stderr, "train_voc: out of memory\n");
        return false;
    }
    size_t len = fread(r->class_text, 1, cap, f), n = 0;
    fclose(f);
    for (char *line = strtok(r->class_text, "\r\n"); line && n < 4096; line = strtok(NULL, "\r\n"))
        if (line[strspn(line, " \t")])
            r->class_names[n++] = line;
    if (len == cap || n == 0) {
        fprintf(stderr, "train_voc: --classes '%s': %s\n", r->opt.classes_file, n ? "too long" : "no names");
        return false;
    }
    vp->class_names = r->class_names;
    vp->n_classes = n;
    return true;
}

static int open_dataset(run *r)
{
    frcnn_voc_params vp = frcnn_voc_params_default();
    vp.root = r->opt.voc_root;
    vp.year = r->opt.year;
    vp.split = r->opt.split;
    vp.classes_from_annotations = r->opt.classes_from_annotations;
    if (r->opt.classes_file && !read_class_file(r, &vp))
        return 1;
    double t0 = now();
    if (frcnn_voc_open(r->ctx, &vp, &r->data) != FRCNN_OK)
        return fail(r, "dataset");
    size_t objects = 0;
    for (size_t i = 0; i < frcnn_dataset_size(r->data); i++) {
        frcnn_dataset_image im;
        frcnn_dataset_image_info(r->data, i, &im);
        objects += im.n_objects;
    }
    printf("dataset: %s split '%s': %zu images, %zu objects, %d classes (read in %.1f s)\n", r->opt.voc_root,
           r->opt.split, frcnn_dataset_size(r->data), objects, frcnn_dataset_num_classes(r->data) - 1, now() - t0);
    return 0;
}

/* Weights expect the pixel normalisation they were trained with (a converted torchvision backbone: ImageNet's) and
 * were trained in their box and pooling conventions (a converted torchvision detector: torchvision's), so with
 * --init-weights the model takes these from the file, or from the checkpoint the run will resume from: that one
 * was made the same way, and the initial weights file may be gone by then. */
static int take_conventions(run *r)
{
    const char *from = r->resuming ? r->resume_from : r->opt.init_weights;
    frcnn_config c;
    if (frcnn_ckpt_read_config(r->ctx, from, &c) != FRCNN_OK)
        return fail(r, "--init-weights");
    memcpy(r->config.pixel_means, c.pixel_means, sizeof c.pixel_means);
    memcpy(r->config.pixel_stds, c.pixel_stds, sizeof c.pixel_stds);
    r->config.box_convention = c.box_convention;
    r->config.pool_floor = c.pool_floor;
    printf("from %s: pixel means (B, G, R) %g %g %g, stds %g %g %g; %s boxes; %s pooling\n", from,
           (double)c.pixel_means[0], (double)c.pixel_means[1], (double)c.pixel_means[2], (double)c.pixel_stds[0],
           (double)c.pixel_stds[1], (double)c.pixel_stds[2], frcnn_box_convention_name(c.box_convention),
           c.pool_floor ? "floor" : "ceil-mode");
    return 0;
}

/* Without --roi-op, a resumed run keeps the RoI op it was trained with: the small preset's default changed from
 * pooling to align, and a run started before must still resume with the same command. */
static int take_roi_op(run *r)
{
    frcnn_config c;
    if (frcnn_ckpt_read_config(r->ctx, r->resume_from, &c) != FRCNN_OK)
        return fail(r, "resume");
    r->config.roi_op = c.roi_op;
    return 0;
}

static int create_objects(run *r)
{
    r->config = options_config(&r->opt, frcnn_dataset_num_classes(r->data));
    if (r->opt.init_weights && take_conventions(r))
        return 1;
    if (r->resuming && !r->opt.roi_op && take_roi_op(r))
        return 1;
    if (frcnn_config_validate(r->ctx, &r->config) != FRCNN_OK)
        return fail(r, "configuration");
    if (frcnn_model_create(r->ctx, &r->config, r->opt.seed, &r->model) != FRCNN_OK)
        return fail(r, "model");
    frcnn_optim_params op = options_optim(&r->opt);
    if (frcnn_optim_create(r->ctx, &op, r->model, &r->optim) != FRCNN_OK)
        return fail(r, "optimizer");
    frcnn_sampler_params sp = frcnn_sampler_params_default();
    sp.seed = r->opt.seed;
    sp.n_images = (uint32_t)frcnn_dataset_size(r->data);
    sp.flip = !r->opt.no_flip;
    if (frcnn_sampler_create(r->ctx, &sp, &r->sampler) != FRCNN_OK)
        return fail(r, "sampler");
    r->total = (uint64_t)options_total_iters(&r->opt, frcnn_sampler_epoch_length(r->sampler));
    r->schedule = options_schedule(&r->opt, (int64_t)r->total);
    if (frcnn_lr_schedule_validate(r->ctx, &r->schedule) != FRCNN_OK)
        return fail(r, "learning-rate schedule");
    frcnn_rng_seed(&r->rng, r->opt.seed ^ 0x7472616e5f766f63ull); /* "tran_voc": a stream apart from the sampler's */
    /* What a checkpoint holds: every parameter and optimizer buffer (float32), and a margin for metadata. */
    uint64_t floats = 0;
    for (size_t i = 0; i < frcnn_model_param_count(r->model); i++) {
        frcnn_param p;
        if (frcnn_model_param(r->model, i, &p) == FRCNN_OK)
            floats += frcnn_tensor_numel(p.value);
    }
    for (size_t i = 0; i < frcnn_optim_state_count(r->optim); i++) {
        frcnn_tensor *t;
        const char *name;
        if (frcnn_optim_state(r->optim, i, &name, &t) == FRCNN_OK)
            floats += frcnn_tensor_numel(t);
    }
    r->ckpt_bytes = 4 * floats + (1 << 20);
    return 0;
}

/* Removes the prefix's checkpoints and the log, for --no-resume --overwrite. */
static int remove_old_run(run *r)
{
    int removed = 0;
    /* keep_last 1 with the newest deleted afterwards: the library's retention never deletes the newest. */
    char latest[4096];
    while (frcnn_ckpt_latest(r->ctx, r->opt.ckpt_dir, r->opt.prefix, latest, sizeof latest) == FRCNN_OK) {
        if (remove(latest) != 0) {
            fprintf(stderr, "train_voc: cannot remove '%s': %s\n", latest, strerror(errno));
            return 1;
        }
        removed++;
    }
    if (remove(r->log_path) == 0)
        printf("removed the old log %s\n", r->log_path);
    printf("--overwrite: removed %d old checkpoint%s from %s\n", removed, removed == 1 ? "" : "s", r->opt.ckpt_dir);
    return 0;
}

/* Which checkpoint the run continues from: --resume, or the newest that verifies (every checksum is read, so this is
 * done once); none for a new run. --no-resume refuses existing checkpoints unless --overwrite deletes them. */
static int find_checkpoint(run *r)
{
    frcnn_status st = FRCNN_OK;
    if (r->opt.resume_path)
        snprintf(r->resume_from, sizeof r->resume_from, "%s", r->opt.resume_path);
    else
        st = frcnn_ckpt_latest(r->ctx, r->opt.ckpt_dir, r->opt.prefix, r->resume_from, sizeof r->resume_from);
    if (st != FRCNN_OK && st != FRCNN_ERR_NOT_FOUND)
        return fail(r, "checkpoints"); /* they exist but none verifies: never a silent fresh start */
    r->resuming = st == FRCNN_OK;
    if (r->resuming && r->opt.no_resume) {
        if (!r->opt.overwrite) {
            fprintf(stderr, "train_voc: --no-resume: %s holds checkpoints (newest %s). Run without --no-resume to "
                            "continue, choose another --ckpt-dir, or add --overwrite to delete them\n",
                    r->opt.ckpt_dir, r->resume_from);
            return 1;
        }
        if (remove_old_run(r))
            return 1;
        r->resuming = false;
    }
    return 0;
}

/* Resumes from find_checkpoint's checkpoint, or starts a new run (from --init-weights when given). */
static int resume_or_start(run *r)
{
    if (!r->resuming) {
        if (r->opt.init_weights) {
            frcnn_weights_report rep;
            if (frcnn_ckpt_load_weights(r->ctx, r->opt.init_weights, r->model, &rep) != FRCNN_OK)
                return fail(r, "--init-weights");
            printf("initial weights: %s: %zu tensors loaded, %zu missing, %zu unexpected, %zu mismatched%s%s\n",
                   r->opt.init_weights, rep.loaded, rep.missing, rep.unexpected, rep.mismatched,
                   rep.first_problem[0] ? "; first: " : "", rep.first_problem);
        }
        printf("starting a new run in %s\n", r->opt.ckpt_dir);
        return 0;
    }
    const char *path = r->resume_from;
    frcnn_train_state s = state_of(r);
    if (frcnn_ckpt_load(r->ctx, path, &s, r->opt.force_schedule) != FRCNN_OK)
        return fail(r, "resume");
    r->iteration = s.iteration;
    frcnn_sampler_state ss = frcnn_sampler_get_state(r->sampler);
    printf("resumed from %s: iteration %" PRIu64 ", epoch %" PRIu64 ", cursor %" PRIu64 "/%" PRIu64 ", lr %g\n",
           path, r->iteration, ss.epoch, ss.cursor, frcnn_sampler_epoch_length(r->sampler),
           frcnn_lr_at(&r->schedule, (int64_t)r->iteration));
    return 0;
}

/* Saves a checkpoint unless the disk is too full; a failed save warns loudly and training goes on. */
static bool save(run *r, const char *why)
{
    char name[256];
    frcnn_ckpt_name(r->ctx, r->opt.prefix, r->iteration, name, sizeof name);
    uint64_t free_bytes = storage_free_bytes(r->opt.ckpt_dir);
    if (free_bytes != UINT64_MAX && free_bytes < r->ckpt_bytes + (r->ckpt_bytes >> 3)) {
        fprintf(stderr, "train_voc: WARNING: not saving iteration %" PRIu64 ": %s has %.1f MB free, a checkpoint "
                        "needs %.1f MB. Training goes on; the last good checkpoint is kept.\n",
                r->iteration, r->opt.ckpt_dir, free_bytes / 1e6, r->ckpt_bytes / 1e6);
        return false;
    }
    trainlog_sync(&r->log);
    frcnn_train_state s = state_of(r);
    double t0 = now();
    if (frcnn_ckpt_save(r->ctx, r->opt.ckpt_dir, name, &s) != FRCNN_OK) {
        fprintf(stderr, "train_voc: WARNING: saving %s/%s failed: %s. Training goes on; the last good checkpoint is "
                        "kept.\n", r->opt.ckpt_dir, name, frcnn_ctx_last_error(r->ctx));
        return false;
    }
    int deleted = 0;
    if (frcnn_ckpt_retain(r->ctx, r->opt.ckpt_dir, r->opt.prefix, r->opt.keep, 0, &deleted) != FRCNN_OK)
        fprintf(stderr, "train_voc: warning: keeping the newest %d checkpoints: %s\n", r->opt.keep,
                frcnn_ctx_last_error(r->ctx));
    printf("saved %s/%s (%s, %.1f s)\n", r->opt.ckpt_dir, name, why, now() - t0);
    fflush(stdout);
    return true;
}

/* Progress: averages over the last print_every iterations. */
typedef struct progress {
    double loss[5], t_window; /* sums since the last line, and when it was printed */
    int n;
} progress;

static void print_progress(run *r, progress *p)
{
    double dt = now() - p->t_window, per = dt / p->n, eta = per * (double)(r->total - r->iteration);
    frcnn_sampler_state ss = frcnn_sampler_get_state(r->sampler);
    printf("iter %" PRIu64 "/%" PRIu64 " epoch %" PRIu64 " | loss %.4f (rpn %.4f %.4f, head %.4f %.4f) | lr %.3g | "
           "%.3f s/iter | ETA %dh%02dm\n",
           r->iteration, r->total, ss.epoch, p->loss[0] / p->n, p->loss[1] / p->n, p->loss[2] / p->n,
           p->loss[3] / p->n, p->loss[4] / p->n, frcnn_lr_at(&r->schedule, (int64_t)r->iteration - 1), per,
           (int)(eta / 3600), (int)(eta / 60) % 60);
    fflush(stdout);
    memset(p->loss, 0, sizeof p->loss);
    p->n = 0;
    p->t_window = now();
}

/* One image: load, forward, backward. Returns 0, 1 on error, or 2 for an image skipped with a warning. */
static int train_image(run *r, frcnn_losses *sum)
{
    frcnn_sample s;
    if (frcnn_sampler_next(r->sampler, &s) != FRCNN_OK)
        return fail(r, "sampler");
    frcnn_tensor *image = NULL;
    float scale, gt[4 * 256];
    int32_t labels[256];
    size_t g;
    int cap = r->config.max_gt_boxes < 256 ? r->config.max_gt_boxes : 256;
    if (frcnn_dataset_load_sample(r->ctx, r->data, s.image, s.flip, r->opt.keep_difficult, &r->config, &image,
                                  &scale, gt, labels, (size_t)cap, &g) != FRCNN_OK) {
        if (!r->opt.skip_bad_images) {
            fprintf(stderr, "train_voc: %s\ntrain_voc: stopped at iteration %" PRIu64 " (the last checkpoint is "
                            "intact); fix or remove the image, or rerun with --skip-bad-images\n",
                    frcnn_ctx_last_error(r->ctx), r->iteration);
            return 1;
        }
        fprintf(stderr, "train_voc: warning: skipping: %s\n", frcnn_ctx_last_error(r->ctx));
        return 2;
    }
    frcnn_input in = {image, scale};
    frcnn_losses l;
    frcnn_status st = frcnn_model_train_step(r->model, &in, gt, labels, g, &r->rng, &l);
    frcnn_tensor_free(image);
    if (st != FRCNN_OK) {
        fail(r, "training step");
        if (st == FRCNN_ERR_NOT_FINITE)
            fprintf(stderr, "train_voc: the loss diverged at iteration %" PRIu64 "; nothing was saved after the last "
                            "checkpoint. Try a lower --lr or more --warmup (with --no-resume --overwrite)\n",
                    r->iteration);
        return 1;
    }
    sum->rpn_cls += l.rpn_cls;
    sum->rpn_box += l.rpn_box;
    sum->cls += l.cls;
    sum->box += l.box;
    sum->total += l.total;
    sum->rpn_fg += l.rpn_fg;
    sum->roi_fg += l.roi_fg;
    return 0;
}

static int train(run *r)
{
    progress p = {0};
    p.t_window = now();
    double last_save = now();
    bool saved_now = false;
    while (r->iteration < r->total && !stop_signal) {
        double t0 = now();
        frcnn_losses sum = {0};
        frcnn_model_zero_grad(r->model);
        for (int k = 0; k < r->opt.accumulate;) {
            int rc = train_image(r, &sum);
            if (rc == 1)
                return 1;
            k += rc == 0;
        }
        float lr = frcnn_lr_at(&r->schedule, (int64_t)r->iteration);
        if (frcnn_optim_step(r->optim, lr) != FRCNN_OK)
            return fail(r, "optimizer step");
        r->iteration++;
        const float inv = 1.0f / (float)r->opt.accumulate;
        frcnn_losses mean = {sum.rpn_cls * inv, sum.rpn_box * inv, sum.cls * inv, sum.box * inv, sum.total * inv,
                             sum.rpn_fg, 0, sum.roi_fg, 0};
        frcnn_sampler_state ss = frcnn_sampler_get_state(r->sampler);
        trainlog_write(&r->log, r->iteration, ss.epoch, ss.cursor, lr, &mean, now() - t0);
        const double v[5] = {mean.total, mean.rpn_cls, mean.rpn_box, mean.cls, mean.box};
        for (int i = 0; i < 5; i++)
            p.loss[i] += v[i];
        if (++p.n == r->opt.print_every)
            print_progress(r, &p);
        saved_now = false;
        bool by_iters = r->opt.save_every && r->iteration % (uint64_t)r->opt.save_every == 0;
        bool by_time = r->opt.save_minutes > 0 && now() - last_save >= 60 * r->opt.save_minutes;
        if ((by_iters || by_time) && r->iteration < r->total) {
            save(r, by_iters ? "every --save-every iterations" : "every --save-minutes");
            last_save = now();
            saved_now = true;
        }
    }
    if (stop_signal) {
        printf("%s received at iteration %" PRIu64 "; saving and stopping\n", strsignal(stop_signal), r->iteration);
        if (!saved_now && !save(r, "on signal"))
            return 1;
        printf("stopped; run the same command again to continue\n");
        return 0;
    }
    if (!save(r, "end of training"))
        return 1;
    printf("training finished: %" PRIu64 " iterations; final checkpoint in %s\n", r->iteration, r->opt.ckpt_dir);
    return 0;
}

/* Room for the checkpoints kept plus the one being written. */
static void check_space(run *r)
{
    uint64_t free_bytes = storage_free_bytes(r->opt.ckpt_dir), need = r->ckpt_bytes * (uint64_t)(r->opt.keep + 1);
    if (free_bytes != UINT64_MAX && free_bytes < need)
        fprintf(stderr, "train_voc: WARNING: %s has %.1f MB free; keeping %d checkpoints of %.1f MB needs %.1f MB\n",
                r->opt.ckpt_dir, free_bytes / 1e6, r->opt.keep, r->ckpt_bytes / 1e6, need / 1e6);
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

static int run_main(run *r)
{
    if (!storage_check_dir(r->opt.ckpt_dir))
        return 1;
    storage_warn_if_ephemeral(r->opt.ckpt_dir);
    if (r->opt.log_path)
        snprintf(r->log_path, sizeof r->log_path, "%s", r->opt.log_path);
    else
        snprintf(r->log_path, sizeof r->log_path, "%s/%s-log.jsonl", r->opt.ckpt_dir, r->opt.prefix);
    if (find_checkpoint(r) || open_dataset(r) || create_objects(r) || resume_or_start(r))
        return 1;
    if (r->iteration >= r->total) {
        printf("training is already finished: iteration %" PRIu64 " of %" PRIu64 "; nothing to do\n", r->iteration,
               r->total);
        return 0;
    }
    check_space(r);
    if (!trainlog_open(&r->log, r->log_path, r->iteration))
        return 1;
    printf("training %s preset (RoI %s), %d classes, %s, %" PRIu64 " iterations (%.2f epochs of %" PRIu64 "), "
           "lr %g; log %s\n",
           frcnn_backbone_name(r->config.backbone), frcnn_roi_op_name(r->config.roi_op), r->config.num_classes - 1,
           r->opt.optim, r->total,
           (double)r->total * r->opt.accumulate / (double)frcnn_sampler_epoch_length(r->sampler),
           frcnn_sampler_epoch_length(r->sampler), r->schedule.base_lr, r->log_path);
    fflush(stdout);
    install_signals();
    return train(r);
}

int main(int argc, char **argv)
{
    run r;
    memset(&r, 0, sizeof r);
    int rc = options_parse(argc, argv, &r.opt);
    if (rc)
        return rc < 0 ? 2 : 0;
    frcnn_ctx_params cp = frcnn_ctx_params_default();
    cp.n_threads = r.opt.threads;
    cp.log = log_to_stderr;
    cp.log_level = FRCNN_LOG_WARN;
    if (frcnn_ctx_create(&cp, &r.ctx) != FRCNN_OK) {
        fprintf(stderr, "train_voc: cannot create a context\n");
        return 1;
    }
    rc = run_main(&r);
    trainlog_close(&r.log);
    frcnn_sampler_free(r.sampler);
    frcnn_optim_free(r.optim);
    frcnn_model_free(r.model);
    frcnn_dataset_free(r.data);
    frcnn_ctx_free(r.ctx);
    free(r.class_names);
    free(r.class_text);
    return rc;
}
