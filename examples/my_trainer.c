/* my_trainer: a training loop of your own on the public API, in the fewest lines that still survive a vanished
 * machine. Dataset, model, optimizer, schedule, sampler and one random stream; a checkpoint every SAVE_EVERY
 * iterations; on start, frcnn_ckpt_load continues from the newest checkpoint exactly where it stopped.
 *
 *   my_trainer VOC_ROOT CKPT_DIR [ITERATIONS]
 *
 * The VOC folder's classes are read from its annotations. examples/train_voc is the full-featured version of this. */
#include <stdio.h>
#include <stdlib.h>

#include "frcnn.h"

enum { SAVE_EVERY = 100, MAX_GT = 64 };

static frcnn_ctx *ctx;

static void check(frcnn_status st, const char *what)
{
    if (st != FRCNN_OK) {
        fprintf(stderr, "my_trainer: %s: %s\n", what, frcnn_ctx_last_error(ctx));
        exit(1);
    }
}

/* Everything that has to come back after a restart, in one struct the checkpoint functions understand. */
static frcnn_train_state make_state(frcnn_model *model, frcnn_optim *optim, frcnn_sampler *sampler,
                                    const frcnn_lr_schedule *schedule, frcnn_rng *rng, const frcnn_dataset *data)
{
    frcnn_train_state s = {0};
    s.model = model;
    s.optim = optim;
    s.sampler = sampler;
    s.schedule = schedule;
    s.rngs = rng;
    s.n_rngs = 1;
    s.dataset_fingerprint = frcnn_dataset_fingerprint(data);
    s.class_names = frcnn_dataset_class_names(data);
    return s;
}

static void save(frcnn_train_state *s, const char *dir)
{
    char name[128];
    check(frcnn_ckpt_name(ctx, "mine", s->iteration, name, sizeof name), "checkpoint name");
    check(frcnn_ckpt_save(ctx, dir, name, s), "save");
    check(frcnn_ckpt_retain(ctx, dir, "mine", 3, 0, NULL), "retain"); /* the newest 3 */
    printf("saved %s/%s\n", dir, name);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: my_trainer VOC_ROOT CKPT_DIR [ITERATIONS]\n");
        return 2;
    }
    const char *ckpt_dir = argv[2];
    const int64_t iterations = argc > 3 ? atoll(argv[3]) : 1000;
    check(frcnn_ctx_create(NULL, &ctx), "context");

    /* The data: a VOC-format folder, classes as found in its annotations. */
    frcnn_voc_params vp = frcnn_voc_params_default();
    vp.root = argv[1];
    vp.classes_from_annotations = true;
    frcnn_dataset *data;
    check(frcnn_voc_open(ctx, &vp, &data), "dataset");

    /* The model: the small preset with this dataset's classes; SGD; a cosine schedule with warm-up. */
    frcnn_config config = frcnn_config_small();
    config.num_classes = frcnn_dataset_num_classes(data);
    frcnn_model *model;
    check(frcnn_model_create(ctx, &config, 1, &model), "model");
    frcnn_optim_params op = frcnn_optim_params_sgd();
    frcnn_optim *optim;
    check(frcnn_optim_create(ctx, &op, model, &optim), "optimizer");
    frcnn_lr_schedule schedule = frcnn_lr_schedule_paper();
    schedule.kind = FRCNN_LR_COSINE;
    schedule.base_lr = 0.01f;
    schedule.total_iters = iterations;
    schedule.warmup_iters = 100;
    schedule.warmup_factor = 0.1f;

    /* The order of images (shuffled per epoch, with flips) and the random stream of the steps. */
    frcnn_sampler_params sp = frcnn_sampler_params_default();
    sp.seed = 1;
    sp.n_images = (uint32_t)frcnn_dataset_size(data);
    frcnn_sampler *sampler;
    check(frcnn_sampler_create(ctx, &sp, &sampler), "sampler");
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 2);

    /* Resume: the newest checkpoint that verifies restores every piece above and the iteration. */
    frcnn_train_state state = make_state(model, optim, sampler, &schedule, &rng, data);
    char path[4096];
    frcnn_status st = frcnn_ckpt_latest(ctx, ckpt_dir, "mine", path, sizeof path);
    if (st == FRCNN_OK) {
        check(frcnn_ckpt_load(ctx, path, &state, false), "resume");
        printf("resumed from %s at iteration %llu\n", path, (unsigned long long)state.iteration);
    } else if (st != FRCNN_ERR_NOT_FOUND) {
        check(st, "checkpoints"); /* there are some, but none verifies: stop rather than start over */
    }

    while ((int64_t)state.iteration < iterations) {
        frcnn_sample s;
        check(frcnn_sampler_next(sampler, &s), "sampler");
        frcnn_tensor *image;
        float scale, gt[4 * MAX_GT];
        int32_t labels[MAX_GT];
        size_t n_gt;
        check(frcnn_dataset_load_sample(ctx, data, s.image, s.flip, false, &config, &image, &scale, gt, labels,
                                        MAX_GT, &n_gt),
              "load");
        frcnn_input input = {image, scale};
        frcnn_losses losses;
        frcnn_model_zero_grad(model);
        check(frcnn_model_train_step(model, &input, gt, labels, n_gt, &rng, &losses), "step");
        frcnn_tensor_free(image);
        check(frcnn_optim_step(optim, frcnn_lr_at(&schedule, (int64_t)state.iteration)), "update");
        state.iteration++;
        if (state.iteration % 20 == 0)
            printf("iteration %llu loss %.4f\n", (unsigned long long)state.iteration, losses.total);
        if (state.iteration % SAVE_EVERY == 0 || (int64_t)state.iteration == iterations)
            save(&state, ckpt_dir);
    }

    frcnn_sampler_free(sampler);
    frcnn_optim_free(optim);
    frcnn_model_free(model);
    frcnn_dataset_free(data);
    frcnn_ctx_free(ctx);
    return 0;
}
