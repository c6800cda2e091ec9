/* Training checkpoints: what a run saves (configuration, parameters, optimizer, schedule, sampler, RNG streams,
 * counters, dataset fingerprint) and the strict restore, on the container of ckpt_io.c. Names in the file:
 * META keys "config.*", "optim.*", "sched.*", "sampler.*", "rng.*", "run.*", "classes.*"; tensors
 * "model.<parameter>" and "optim.<state buffer>". */
#include "ckpt_io.h"
#include "train_internal.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ----- the configuration as named fields ------------------------------------------------------------------- */

typedef struct config_field {
    const char *key;
    bool is_float;
    size_t offset;
    bool added; /* since format 1.0: files without it get 0, which is what they were trained with */
} config_field;

#define CI(key, member) {"config." key, false, offsetof(frcnn_config, member), false}
#define CF(key, member) {"config." key, true, offsetof(frcnn_config, member), false}
#define CI_ADDED(key, member) {"config." key, false, offsetof(frcnn_config, member), true}

static const config_field config_fields[] = {
    CI("backbone", backbone), CI("num_classes", num_classes), CI("short_side", short_side),
    CI("max_side", max_side), CF("pixel_means.0", pixel_means[0]), CF("pixel_means.1", pixel_means[1]),
    CF("pixel_means.2", pixel_means[2]), CF("pixel_stds.0", pixel_stds[0]), CF("pixel_stds.1", pixel_stds[1]),
    CF("pixel_stds.2", pixel_stds[2]), CI("frozen_convs", frozen_convs), CF("anchors.base_size", anchors.base_size),
    CI("anchors.n_ratios", anchors.n_ratios), CF("anchors.ratios.0", anchors.ratios[0]),
    CF("anchors.ratios.1", anchors.ratios[1]), CF("anchors.ratios.2", anchors.ratios[2]),
    CF("anchors.ratios.3", anchors.ratios[3]), CF("anchors.ratios.4", anchors.ratios[4]),
    CF("anchors.ratios.5", anchors.ratios[5]), CF("anchors.ratios.6", anchors.ratios[6]),
    CF("anchors.ratios.7", anchors.ratios[7]), CI("anchors.n_scales", anchors.n_scales),
    CF("anchors.scales.0", anchors.scales[0]), CF("anchors.scales.1", anchors.scales[1]),
    CF("anchors.scales.2", anchors.scales[2]), CF("anchors.scales.3", anchors.scales[3]),
    CF("anchors.scales.4", anchors.scales[4]), CF("anchors.scales.5", anchors.scales[5]),
    CF("anchors.scales.6", anchors.scales[6]), CF("anchors.scales.7", anchors.scales[7]),
    CI("feat_stride", feat_stride), CI("rpn_channels", rpn_channels),
    CF("rpn_targets.positive_iou", rpn_targets.positive_iou), CF("rpn_targets.negative_iou", rpn_targets.negative_iou),
    CI("rpn_targets.batch_size", rpn_targets.batch_size), CF("rpn_targets.fg_fraction", rpn_targets.fg_fraction),
    CI("rpn_targets.allowed_border", rpn_targets.allowed_border), CF("rpn_sigma", rpn_sigma),
    CI("train_proposals.pre_nms_top_n", train_proposals.pre_nms_top_n),
    CI("train_proposals.post_nms_top_n", train_proposals.post_nms_top_n),
    CF("train_proposals.nms_iou", train_proposals.nms_iou), CF("train_proposals.min_size", train_proposals.min_size),
    CI("test_proposals.pre_nms_top_n", test_proposals.pre_nms_top_n),
    CI("test_proposals.post_nms_top_n", test_proposals.post_nms_top_n),
    CF("test_proposals.nms_iou", test_proposals.nms_iou), CF("test_proposals.min_size", test_proposals.min_size),
    CI("roi_targets.batch_size", roi_targets.batch_size), CF("roi_targets.fg_fraction", roi_targets.fg_fraction),
    CF("roi_targets.fg_iou", roi_targets.fg_iou), CF("roi_targets.bg_iou_hi", roi_targets.bg_iou_hi),
    CF("roi_targets.bg_iou_lo", roi_targets.bg_iou_lo), CF("roi_targets.means.0", roi_targets.means[0]),
    CF("roi_targets.means.1", roi_targets.means[1]), CF("roi_targets.means.2", roi_targets.means[2]),
    CF("roi_targets.means.3", roi_targets.means[3]), CF("roi_targets.stds.0", roi_targets.stds[0]),
    CF("roi_targets.stds.1", roi_targets.stds[1]), CF("roi_targets.stds.2", roi_targets.stds[2]),
    CF("roi_targets.stds.3", roi_targets.stds[3]), CI("max_gt_boxes", max_gt_boxes), CI("pooled_size", pooled_size),
    CI("fc_channels", fc_channels), CF("dropout", dropout), CF("head_sigma", head_sigma),
    CF("score_threshold", score_threshold), CF("test_nms_iou", test_nms_iou), CI("max_detections", max_detections),
    CI_ADDED("norm_groups", norm_groups), CI_ADDED("box_convention", box_convention),
    CI_ADDED("pool_floor", pool_floor), CI_ADDED("roi_op", roi_op),
};

#define N_CONFIG_FIELDS (sizeof config_fields / sizeof config_fields[0])

/* The field's value as a double (ints, enums and floats are exact in a double). */
static double field_get(const frcnn_config *c, const config_field *f)
{
    const char *base = (const char *)c + f->offset;
    if (f->is_float) {
        float v;
        memcpy(&v, base, sizeof v);
        return v;
    }
    int v;
    memcpy(&v, base, sizeof v);
    return v;
}

static void field_set(frcnn_config *c, const config_field *f, double value)
{
    char *base = (char *)c + f->offset;
    if (f->is_float) {
        float v = (float)value;
        memcpy(base, &v, sizeof v);
    } else {
        int v = (int)value;
        memcpy(base, &v, sizeof v);
    }
}

/* ----- saving ----------------------------------------------------------------------------------------------- */

uint64_t frcnn_fingerprint(const void *data, size_t len, uint64_t seed)
{
    uint64_t h = seed ? seed : 0xcbf29ce484222325ull; /* FNV-1a 64 offset basis */
    const unsigned char *p = data;
    for (size_t i = 0; p && i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static frcnn_status write_meta(frcnn_ctx *ctx, frcnn__ckpt_writer *w, const frcnn_train_state *s)
{
    const frcnn_config *c = frcnn_model_config(s->model);
    char key[64];
    frcnn_status st = frcnn__ckpt_begin_section(w, FRCNN__CKPT_META, FRCNN__CKPT_FLAG_REQUIRED);
    if (st == FRCNN_OK)
        st = frcnn__ckpt_kv_str(w, "run.library_version", frcnn_version());
    if (st == FRCNN_OK)
        st = frcnn__ckpt_kv_u64(w, "run.iteration", s->iteration);
    if (st == FRCNN_OK)
        st = frcnn__ckpt_kv_u64(w, "run.dataset_fingerprint", s->dataset_fingerprint);
    if (st == FRCNN_OK)
        st = frcnn__ckpt_kv_str(w, "run.blas_core", frcnn_blas_core());
    if (st == FRCNN_OK)
        st = frcnn__ckpt_kv_u64(w, "run.threads", (uint64_t)frcnn_ctx_threads(ctx));
    for (size_t i = 0; i < N_CONFIG_FIELDS && st == FRCNN_OK; i++)
        st = frcnn__ckpt_kv_f64(w, config_fields[i].key, field_get(c, &config_fields[i]));
    for (int i = 0; s->class_names && i < c->num_classes && st == FRCNN_OK; i++) {
        snprintf(key, sizeof key, "classes.%d", i);
        st = frcnn__ckpt_kv_str(w, key, s->class_names[i] ? s->class_names[i] : "");
    }
    if (s->optim && st == FRCNN_OK) {
        const frcnn_optim_params *p = frcnn_optim_get_params(s->optim);
        const double v[] = {p->momentum, p->weight_decay, p->bias_lr_mult, p->bias_decay_mult, p->beta1, p->beta2,
                            p->eps, p->clip_norm};
        const char *k[] = {"optim.momentum", "optim.weight_decay", "optim.bias_lr_mult", "optim.bias_decay_mult",
                           "optim.beta1", "optim.beta2", "optim.eps", "optim.clip_norm"};
        st = frcnn__ckpt_kv_u64(w, "optim.kind", (uint64_t)p->kind);
        if (st == FRCNN_OK)
            st = frcnn__ckpt_kv_u64(w, "optim.accumulate", (uint64_t)p->accumulate);
        if (st == FRCNN_OK)
            st = frcnn__ckpt_kv_u64(w, "optim.steps", frcnn_optim_steps(s->optim));
        for (size_t i = 0; i < sizeof v / sizeof v[0] && st == FRCNN_OK; i++)
            st = frcnn__ckpt_kv_f64(w, k[i], v[i]);
    }
    if (s->schedule && st == FRCNN_OK) {
        const frcnn_lr_schedule *l = s->schedule;
        st = frcnn__ckpt_kv_u64(w, "sched.kind", (uint64_t)l->kind);
        const double v[] = {l->base_lr, l->gamma, l->min_lr, l->warmup_factor};
        const char *k[] = {"sched.base_lr", "sched.gamma", "sched.min_lr", "sched.warmup_factor"};
        for (size_t i = 0; i < 4 && st == FRCNN_OK; i++)
            st = frcnn__ckpt_kv_f64(w, k[i], v[i]);
        if (st == FRCNN_OK)
            st = frcnn__ckpt_kv_i64(w, "sched.total_iters", l->total_iters);
        if (st == FRCNN_OK)
            st = frcnn__ckpt_kv_i64(w, "sched.warmup_iters", l->warmup_iters);
        if (st == FRCNN_OK)
            st = frcnn__ckpt_kv_i64(w, "sched.n_milestones", l->n_milestones);
        for (int i = 0; i < l->n_milestones && i < FRCNN_MAX_LR_MILESTONES && st == FRCNN_OK; i++) {
            snprintf(key, sizeof key, "sched.milestone.%d", i);
            st = frcnn__ckpt_kv_i64(w, key, l->milestones[i]);
        }
    }
    if (s->sampler && st == FRCNN_OK) {
        uint64_t seed;
        uint32_t n;
        bool flip, group;
        frcnn__sampler_describe(s->sampler, &seed, &n, &flip, &group);
        frcnn_sampler_state ss = frcnn_sampler_get_state(s->sampler);
        const uint64_t v[] = {seed, n, flip, group, ss.epoch, ss.cursor};
        const char *k[] = {"sampler.seed", "sampler.n_images", "sampler.flip", "sampler.group_by_aspect",
                           "sampler.epoch", "sampler.cursor"};
        for (size_t i = 0; i < 6 && st == FRCNN_OK; i++)
            st = frcnn__ckpt_kv_u64(w, k[i], v[i]);
    }
    if (st == FRCNN_OK)
        st = frcnn__ckpt_kv_u64(w, "rng.count", (uint64_t)s->n_rngs);
    for (size_t i = 0; i < s->n_rngs && st == FRCNN_OK; i++) {
        uint8_t bytes[FRCNN_RNG_STATE_BYTES];
        frcnn_rng_state_save(&s->rngs[i], bytes);
        snprintf(key, sizeof key, "rng.%zu", i);
        st = frcnn__ckpt_kv_bytes(w, key, bytes, sizeof bytes);
    }
    if (st == FRCNN_OK)
        st = frcnn__ckpt_end_section(w);
    return st;
}

static frcnn_status write_tensor(frcnn__ckpt_writer *w, const char *prefix, const char *name, const frcnn_tensor *t)
{
    char full[FRCNN__CKPT_MAX_NAME];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    return frcnn__ckpt_write_tensor_f32(w, full, frcnn_tensor_ndim(t), t->dims, frcnn_tensor_data(t));
}

/* Bytes of tensor data the file will hold, plus room for headers and metadata. */
static uint64_t expected_bytes(const frcnn_train_state *s)
{
    uint64_t bytes = (uint64_t)1 << 20;
    for (size_t i = 0; i < frcnn_model_param_count(s->model); i++) {
        frcnn_param p;
        frcnn_model_param(s->model, i, &p);
        bytes += frcnn_tensor_numel(p.value) * sizeof(float) + 256;
    }
    for (size_t i = 0; s->optim && i < frcnn_optim_state_count(s->optim); i++) {
        frcnn_tensor *t;
        frcnn_optim_state(s->optim, i, NULL, &t);
        bytes += frcnn_tensor_numel(t) * sizeof(float) + 256;
    }
    return bytes;
}

frcnn_status frcnn_ckpt_save(frcnn_ctx *ctx, const char *dir, const char *name, const frcnn_train_state *s)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!dir || !name || !s || !s->model || (s->n_rngs > 0 && !s->rngs))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "ckpt_save: %s is NULL",
                            !dir ? "dir" : !name ? "name" : !s ? "state" : !s->model ? "state.model" : "state.rngs");
    frcnn__ckpt_writer *w = NULL;
    frcnn_status st = frcnn__ckpt_writer_open(ctx, dir, name, expected_bytes(s), &w);
    if (st != FRCNN_OK)
        return st;
    st = write_meta(ctx, w, s);
    for (size_t i = 0; i < frcnn_model_param_count(s->model) && st == FRCNN_OK; i++) {
        frcnn_param p;
        frcnn_model_param(s->model, i, &p);
        st = write_tensor(w, "model.", p.name, p.value);
    }
    for (size_t i = 0; s->optim && i < frcnn_optim_state_count(s->optim) && st == FRCNN_OK; i++) {
        const char *state_name;
        frcnn_tensor *t;
        frcnn_optim_state(s->optim, i, &state_name, &t);
        st = write_tensor(w, "optim.", state_name, t);
    }
    if (st != FRCNN_OK) {
        frcnn__ckpt_writer_abort(w);
        return st;
    }
    return frcnn__ckpt_writer_finish(w);
}

/* ----- loading ---------------------------------------------------------------------------------------------- */

static frcnn_status mismatch(frcnn_ctx *ctx, const char *path, const char *what, double in_file, double here)
{
    return frcnn__error(ctx, FRCNN_ERR_MISMATCH, "%s: %s is %.9g in the checkpoint, %.9g here", path, what, in_file,
                        here);
}

/* A META value that must exist: a missing one means the file lacks a piece the caller asked to restore. */
static frcnn_status need_f64(frcnn__ckpt_reader *r, const char *key, double *v)
{
    frcnn_status st = frcnn__ckpt_get_f64(r, key, v);
    return st == FRCNN_ERR_NOT_FOUND ? FRCNN_ERR_MISMATCH : st;
}

static frcnn_status need_u64(frcnn__ckpt_reader *r, const char *key, uint64_t *v)
{
    frcnn_status st = frcnn__ckpt_get_u64(r, key, v);
    return st == FRCNN_ERR_NOT_FOUND ? FRCNN_ERR_MISMATCH : st;
}

/* A configuration field this library does not know changes what the model computes unless it holds the value 0
 * that every added field defaults to: such a file comes from a newer library and would be silently misread. */
static frcnn_status check_unknown_config(frcnn_ctx *ctx, frcnn__ckpt_reader *r, const char *path)
{
    for (size_t i = 0; i < frcnn__ckpt_kv_count(r); i++) {
        char key[FRCNN__CKPT_MAX_NAME + 1];
        double v;
        if (frcnn__ckpt_kv_key(r, i, key, sizeof key) != FRCNN_OK || strncmp(key, "config.", 7) != 0)
            continue;
        size_t f = 0;
        while (f < N_CONFIG_FIELDS && strcmp(config_fields[f].key, key) != 0)
            f++;
        if (f == N_CONFIG_FIELDS && (frcnn__ckpt_get_f64(r, key, &v) != FRCNN_OK || v != 0.0))
            return frcnn__error(ctx, FRCNN_ERR_VERSION,
                                "%s: configuration field '%s' is unknown to libfrcnn %s (the file comes from a newer "
                                "version)",
                                path, key, frcnn_version());
    }
    frcnn_ctx_clear_error(ctx);
    return FRCNN_OK;
}

static frcnn_status read_config_fields(frcnn_ctx *ctx, frcnn__ckpt_reader *r, const char *path, frcnn_config *c)
{
    frcnn_status unknown = check_unknown_config(ctx, r, path);
    if (unknown != FRCNN_OK)
        return unknown;
    for (size_t i = 0; i < N_CONFIG_FIELDS; i++) {
        double v;
        frcnn_status st = frcnn__ckpt_get_f64(r, config_fields[i].key, &v);
        if (st == FRCNN_ERR_NOT_FOUND && config_fields[i].added) {
            v = 0;
            st = FRCNN_OK;
        }
        if (st != FRCNN_OK)
            return frcnn__error(ctx, st == FRCNN_ERR_NOT_FOUND ? FRCNN_ERR_FORMAT : st, "%s: '%s' %s", path,
                                config_fields[i].key, st == FRCNN_ERR_NOT_FOUND ? "is missing" : "is unreadable");
        field_set(c, &config_fields[i], v);
    }
    return FRCNN_OK;
}

/* Opens and fully verifies a file. */
static frcnn_status open_verified(frcnn_ctx *ctx, const char *path, frcnn__ckpt_reader **r)
{
    frcnn_status st = frcnn__ckpt_reader_open(ctx, path, r);
    if (st == FRCNN_OK && (st = frcnn__ckpt_reader_verify_all(*r)) != FRCNN_OK) {
        frcnn__ckpt_reader_close(*r);
        *r = NULL;
    }
    return st;
}

frcnn_status frcnn_ckpt_read_config(frcnn_ctx *ctx, const char *path, frcnn_config *config)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!path || !config)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "ckpt_read_config: %s is NULL", path ? "config" : "path");
    frcnn__ckpt_reader *r;
    frcnn_status st = frcnn__ckpt_reader_open(ctx, path, &r);
    if (st != FRCNN_OK)
        return st;
    frcnn_config c = frcnn_config_vgg16();
    st = read_config_fields(ctx, r, path, &c);
    frcnn__ckpt_reader_close(r);
    if (st == FRCNN_OK && (st = frcnn_config_validate(ctx, &c)) == FRCNN_OK)
        *config = c;
    return st;
}

/* The tensor `prefix + name` must exist as f32 with t's shape. */
static frcnn_status check_tensor(frcnn_ctx *ctx, frcnn__ckpt_reader *r, const char *path, const char *prefix,
                                 const char *name, const frcnn_tensor *t)
{
    char full[FRCNN__CKPT_MAX_NAME];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    frcnn__ckpt_tensor_info info;
    frcnn_status st = frcnn__ckpt_tensor_find(r, full, &info);
    if (st == FRCNN_ERR_NOT_FOUND)
        return frcnn__error(ctx, FRCNN_ERR_MISMATCH, "%s: tensor '%s' is missing", path, full);
    if (st != FRCNN_OK)
        return st;
    bool same = info.dtype == FRCNN__DT_F32 && info.ndim == frcnn_tensor_ndim(t);
    for (int i = 0; same && i < info.ndim; i++)
        same = info.dims[i] == frcnn_tensor_dim(t, i);
    if (!same) {
        char want[96], got[96] = "(";
        frcnn__shape_str(t, want, sizeof want);
        for (int i = 0; i < info.ndim; i++) {
            size_t used = strlen(got);
            snprintf(got + used, sizeof got - used, "%s%lld", i ? ", " : "", (long long)info.dims[i]);
        }
        strncat(got, ")", sizeof got - strlen(got) - 1);
        return frcnn__error(ctx, FRCNN_ERR_MISMATCH, "%s: tensor '%s': shape %s%s in file, %s here", path, full, got,
                            info.dtype == FRCNN__DT_F32 ? "" : " (not float32)", want);
    }
    return FRCNN_OK;
}

/* Every file tensor with this prefix must be one the state has: `expected` of them. */
static frcnn_status check_no_extra(frcnn_ctx *ctx, frcnn__ckpt_reader *r, const char *path, const char *prefix,
                                   size_t expected)
{
    size_t count = 0, plen = strlen(prefix);
    const char *extra = NULL;
    for (size_t i = 0; i < frcnn__ckpt_tensor_count(r); i++) {
        frcnn__ckpt_tensor_info info;
        frcnn_status st = frcnn__ckpt_tensor_at(r, i, &info);
        if (st != FRCNN_OK)
            return st;
        if (strncmp(info.name, prefix, plen) == 0) {
            count++;
            extra = info.name;
        }
    }
    if (count != expected)
        return frcnn__error(ctx, FRCNN_ERR_MISMATCH, "%s: %zu '%s' tensors in the file, %zu here (e.g. '%s')", path,
                            count, prefix, expected, extra ? extra : "none");
    return FRCNN_OK;
}

static frcnn_status check_config(frcnn_ctx *ctx, frcnn__ckpt_reader *r, const char *path, const frcnn_config *here)
{
    frcnn_config file = *here;
    frcnn_status st = read_config_fields(ctx, r, path, &file);
    for (size_t i = 0; i < N_CONFIG_FIELDS && st == FRCNN_OK; i++) {
        double a = field_get(&file, &config_fields[i]), b = field_get(here, &config_fields[i]);
        if (a != b)
            st = mismatch(ctx, path, config_fields[i].key, a, b);
    }
    return st;
}

static frcnn_status check_optim(frcnn_ctx *ctx, frcnn__ckpt_reader *r, const char *path, const frcnn_optim *o)
{
    const frcnn_optim_params *p = frcnn_optim_get_params(o);
    uint64_t kind, accumulate;
    if (need_u64(r, "optim.kind", &kind) != FRCNN_OK || need_u64(r, "optim.accumulate", &accumulate) != FRCNN_OK)
        return frcnn__error(ctx, FRCNN_ERR_MISMATCH, "%s: holds no optimizer state", path);
    if (kind != (uint64_t)p->kind)
        return frcnn__error(ctx, FRCNN_ERR_MISMATCH, "%s: optimizer is %s in the checkpoint, %s here", path,
                            frcnn_optim_kind_name((frcnn_optim_kind)kind), frcnn_optim_kind_name(p->kind));
    if (accumulate != (uint64_t)p->accumulate)
        return mismatch(ctx, path, "optim.accumulate", (double)accumulate, p->accumulate);
    const double here[] = {p->momentum, p->weight_decay, p->bias_lr_mult, p->bias_decay_mult, p->beta1, p->beta2,
                           p->eps, p->clip_norm};
    const char *k[] = {"optim.momentum", "optim.weight_decay", "optim.bias_lr_mult", "optim.bias_decay_mult",
                       "optim.beta1", "optim.beta2", "optim.eps", "optim.clip_norm"};
    for (size_t i = 0; i < sizeof here / sizeof here[0]; i++) {
        double v;
        frcnn_status st = need_f64(r, k[i], &v);
        if (st != FRCNN_OK)
            return frcnn__error(ctx, st, "%s: '%s' is missing", path, k[i]);
        if (v != (double)(float)here[i])
            return mismatch(ctx, path, k[i], v, here[i]);
    }
    for (size_t i = 0; i < frcnn_optim_state_count(o); i++) {
        const char *name;
        frcnn_tensor *t;
        frcnn_optim_state(o, i, &name, &t);
        frcnn_status st = check_tensor(ctx, r, path, "optim.", name, t);
        if (st != FRCNN_OK)
            return st;
    }
    return check_no_extra(ctx, r, path, "optim.", frcnn_optim_state_count(o));
}

static frcnn_status check_schedule(frcnn_ctx *ctx, frcnn__ckpt_reader *r, const char *path,
                                   const frcnn_lr_schedule *l)
{
    uint64_t kind;
    if (need_u64(r, "sched.kind", &kind) != FRCNN_OK)
        return frcnn__error(ctx, FRCNN_ERR_MISMATCH, "%s: holds no learning-rate schedule", path);
    if (kind != (uint64_t)l->kind)
        return mismatch(ctx, path, "sched.kind", (double)kind, l->kind);
    const double here[] = {l->base_lr, l->gamma, l->min_lr, l->warmup_factor};
    const char *k[] = {"sched.base_lr", "sched.gamma", "sched.min_lr", "sched.warmup_factor"};
    for (size_t i = 0; i < 4; i++) {
        double v;
        if (need_f64(r, k[i], &v) != FRCNN_OK)
            return frcnn__error(ctx, FRCNN_ERR_FORMAT, "%s: '%s' is missing", path, k[i]);
        if (v != (double)(float)here[i])
            return mismatch(ctx, path, k[i], v, here[i]);
    }
    char key[64];
    int64_t n_here = l->n_milestones < FRCNN_MAX_LR_MILESTONES ? l->n_milestones : FRCNN_MAX_LR_MILESTONES;
    const int64_t ints[3] = {l->total_iters, l->warmup_iters, l->n_milestones};
    const char *ik[3] = {"sched.total_iters", "sched.warmup_iters", "sched.n_milestones"};
    for (int64_t i = 0; i < 3 + n_here; i++) {
        int64_t v, want = i < 3 ? ints[i] : l->milestones[i - 3];
        if (i >= 3)
            snprintf(key, sizeof key, "sched.milestone.%d", (int)(i - 3));
        const char *name = i < 3 ? ik[i] : key;
        if (frcnn__ckpt_get_i64(r, name, &v) != FRCNN_OK)
            return frcnn__error(ctx, FRCNN_ERR_FORMAT, "%s: '%s' is missing", path, name);
        if (v != want)
            return mismatch(ctx, path, name, (double)v, (double)want);
    }
    return FRCNN_OK;
}

static frcnn_status check_sampler(frcnn_ctx *ctx, frcnn__ckpt_reader *r, const char *path, const frcnn_sampler *s,
                                  frcnn_sampler_state *saved)
{
    uint64_t seed;
    uint32_t n;
    bool flip, group;
    frcnn__sampler_describe(s, &seed, &n, &flip, &group);
    const uint64_t here[] = {seed, n, flip, group};
    const char *k[] = {"sampler.seed", "sampler.n_images", "sampler.flip", "sampler.group_by_aspect"};
    for (size_t i = 0; i < 4; i++) {
        uint64_t v;
        if (need_u64(r, k[i], &v) != FRCNN_OK)
            return frcnn__error(ctx, FRCNN_ERR_MISMATCH, "%s: holds no sampler state", path);
        if (v != here[i])
            return mismatch(ctx, path, k[i], (double)v, (double)here[i]);
    }
    if (need_u64(r, "sampler.epoch", &saved->epoch) != FRCNN_OK ||
        need_u64(r, "sampler.cursor", &saved->cursor) != FRCNN_OK)
        return frcnn__error(ctx, FRCNN_ERR_FORMAT, "%s: sampler position missing", path);
    if (saved->cursor >= frcnn_sampler_epoch_length(s))
        return frcnn__error(ctx, FRCNN_ERR_FORMAT, "%s: sampler cursor %llu outside an epoch of %llu", path,
                            (unsigned long long)saved->cursor, (unsigned long long)frcnn_sampler_epoch_length(s));
    return FRCNN_OK;
}

static frcnn_status check_rngs(frcnn_ctx *ctx, frcnn__ckpt_reader *r, const char *path, size_t n,
                               frcnn_rng *restored)
{
    uint64_t count;
    if (need_u64(r, "rng.count", &count) != FRCNN_OK || count != n)
        return frcnn__error(ctx, FRCNN_ERR_MISMATCH, "%s: %llu RNG streams in the checkpoint, %zu here", path,
                            (unsigned long long)count, n);
    for (size_t i = 0; i < n; i++) {
        char key[32];
        uint8_t bytes[FRCNN_RNG_STATE_BYTES];
        size_t len = 0;
        snprintf(key, sizeof key, "rng.%zu", i);
        frcnn_status st = frcnn__ckpt_get_bytes(r, key, bytes, sizeof bytes, &len);
        if (st != FRCNN_OK || len != sizeof bytes)
            return frcnn__error(ctx, FRCNN_ERR_FORMAT, "%s: RNG stream %zu is missing or malformed", path, i);
        if ((st = frcnn_rng_state_load(ctx, &restored[i], bytes)) != FRCNN_OK)
            return st;
    }
    return FRCNN_OK;
}

static frcnn_status read_into(frcnn__ckpt_reader *r, const char *prefix, const char *name, frcnn_tensor *t)
{
    char full[FRCNN__CKPT_MAX_NAME];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    return frcnn__ckpt_read_tensor(r, full, frcnn_tensor_data(t), frcnn_tensor_numel(t) * sizeof(float));
}

/* Everything is checked before anything is written; RNG states are staged in `rngs` (n_rngs entries). */
static frcnn_status load_checked(frcnn_ctx *ctx, frcnn__ckpt_reader *r, const char *path, frcnn_train_state *s,
                                 bool force, frcnn_rng *rngs)
{
    frcnn_model *m = s->model;
    frcnn_status st = check_config(ctx, r, path, frcnn_model_config(m));
    for (size_t i = 0; i < frcnn_model_param_count(m) && st == FRCNN_OK; i++) {
        frcnn_param p;
        frcnn_model_param(m, i, &p);
        st = check_tensor(ctx, r, path, "model.", p.name, p.value);
    }
    if (st == FRCNN_OK)
        st = check_no_extra(ctx, r, path, "model.", frcnn_model_param_count(m));
    if (st == FRCNN_OK && s->optim)
        st = check_optim(ctx, r, path, s->optim);
    frcnn_sampler_state saved = {0, 0};
    if (st == FRCNN_OK && s->sampler)
        st = check_sampler(ctx, r, path, s->sampler, &saved);
    if (st == FRCNN_OK)
        st = check_rngs(ctx, r, path, s->n_rngs, rngs);
    uint64_t fingerprint = 0, iteration = 0, steps = 0;
    if (st == FRCNN_OK && need_u64(r, "run.iteration", &iteration) != FRCNN_OK)
        st = frcnn__error(ctx, FRCNN_ERR_FORMAT, "%s: no iteration counter", path);
    if (st == FRCNN_OK && need_u64(r, "run.dataset_fingerprint", &fingerprint) == FRCNN_OK &&
        fingerprint != s->dataset_fingerprint && !force)
        st = frcnn__error(ctx, FRCNN_ERR_MISMATCH,
                          "%s: saved for a different dataset (fingerprint %016llx, this one %016llx); pass force to "
                          "continue anyway",
                          path, (unsigned long long)fingerprint, (unsigned long long)s->dataset_fingerprint);
    if (st == FRCNN_OK && s->schedule && !force)
        st = check_schedule(ctx, r, path, s->schedule);
    if (st == FRCNN_OK && s->optim && need_u64(r, "optim.steps", &steps) != FRCNN_OK)
        st = frcnn__error(ctx, FRCNN_ERR_FORMAT, "%s: no optimizer step count", path);
    if (st != FRCNN_OK)
        return st;

    /* The thread count (run.threads) changes no bits (docs/determinism.md); the kernel does. */
    char core[64] = "";
    if (frcnn__ckpt_get_str(r, "run.blas_core", core, sizeof core, NULL) == FRCNN_OK &&
        strcasecmp(core, frcnn_blas_core()) != 0)
        frcnn_ctx_log(ctx, FRCNN_LOG_WARN,
                      "%s was written with OpenBLAS kernel %s, this run uses %s: training continues correctly but "
                      "not bit for bit",
                      path, core, frcnn_blas_core());

    /* Write. */
    for (size_t i = 0; i < frcnn_model_param_count(m) && st == FRCNN_OK; i++) {
        frcnn_param p;
        frcnn_model_param(m, i, &p);
        st = read_into(r, "model.", p.name, p.value);
    }
    for (size_t i = 0; s->optim && i < frcnn_optim_state_count(s->optim) && st == FRCNN_OK; i++) {
        const char *name;
        frcnn_tensor *t;
        frcnn_optim_state(s->optim, i, &name, &t);
        st = read_into(r, "optim.", name, t);
    }
    if (st != FRCNN_OK)
        return st;
    if (s->optim)
        frcnn_optim_set_steps(s->optim, steps);
    if (s->sampler && (st = frcnn_sampler_set_state(s->sampler, saved)) != FRCNN_OK)
        return st;
    for (size_t i = 0; i < s->n_rngs; i++)
        s->rngs[i] = rngs[i];
    s->iteration = iteration;
    return FRCNN_OK;
}

#define MAX_RNG_STREAMS 64

frcnn_status frcnn_ckpt_load(frcnn_ctx *ctx, const char *path, frcnn_train_state *s, bool force)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!path || !s || !s->model || (s->n_rngs > 0 && !s->rngs))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "ckpt_load: %s is NULL",
                            !path ? "path" : !s ? "state" : !s->model ? "state.model" : "state.rngs");
    if (s->n_rngs > MAX_RNG_STREAMS)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "ckpt_load: %zu RNG streams, at most %d", s->n_rngs,
                            MAX_RNG_STREAMS);
    /* Opening checks the header, footer, section table, tensor headers and metadata (with its checksums); each
     * tensor's data checksum is checked as it is read, so the file is read once. */
    frcnn__ckpt_reader *r;
    frcnn_status st = frcnn__ckpt_reader_open(ctx, path, &r);
    if (st != FRCNN_OK)
        return st;
    frcnn_rng rngs[MAX_RNG_STREAMS];
    st = load_checked(ctx, r, path, s, force, rngs);
    frcnn__ckpt_reader_close(r);
    return st;
}

/* The pixel normalisation a file's weights were trained with (its config.pixel_means / pixel_stds). */
static frcnn_status read_pixel_norm(frcnn_ctx *ctx, frcnn__ckpt_reader *r, const char *path, float means[3],
                                    float stds[3])
{
    for (int i = 0; i < 6; i++) {
        char key[32];
        snprintf(key, sizeof key, "config.pixel_%s.%d", i < 3 ? "means" : "stds", i % 3);
        double v;
        frcnn_status st = frcnn__ckpt_get_f64(r, key, &v);
        if (st == FRCNN_ERR_NOT_FOUND)
            return frcnn__error(ctx, FRCNN_ERR_NOT_FOUND,
                                "%s does not say which pixel normalisation its weights expect ('%s' is missing)", path,
                                key);
        if (st != FRCNN_OK)
            return frcnn__error(ctx, st, "%s: '%s' is unreadable", path, key);
        (i < 3 ? means : stds)[i % 3] = (float)v;
    }
    return FRCNN_OK;
}

frcnn_status frcnn_ckpt_read_pixel_norm(frcnn_ctx *ctx, const char *path, float means[3], float stds[3])
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!path || !means || !stds)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "ckpt_read_pixel_norm: an argument is NULL");
    frcnn__ckpt_reader *r;
    frcnn_status st = frcnn__ckpt_reader_open(ctx, path, &r);
    if (st != FRCNN_OK)
        return st;
    st = read_pixel_norm(ctx, r, path, means, stds);
    frcnn__ckpt_reader_close(r);
    return st;
}

/* Weights trained on differently normalised pixels load without error and then compute garbage: refuse them. */
static frcnn_status check_pixel_norm(frcnn_ctx *ctx, frcnn__ckpt_reader *r, const char *path, const frcnn_model *m)
{
    float means[3], stds[3];
    frcnn_status st = read_pixel_norm(ctx, r, path, means, stds);
    if (st != FRCNN_OK)
        return st == FRCNN_ERR_NOT_FOUND ? FRCNN_ERR_MISMATCH : st;
    const frcnn_config *c = frcnn_model_config(m);
    for (int i = 0; i < 3; i++)
        if (means[i] != c->pixel_means[i] || stds[i] != c->pixel_stds[i])
            return frcnn__error(ctx, FRCNN_ERR_MISMATCH,
                                "%s: its weights expect pixels normalised with means (B, G, R) (%g, %g, %g) and stds "
                                "(%g, %g, %g), this model uses (%g, %g, %g) and (%g, %g, %g); create the model with "
                                "the file's (frcnn_ckpt_read_pixel_norm)",
                                path, (double)means[0], (double)means[1], (double)means[2], (double)stds[0],
                                (double)stds[1], (double)stds[2], (double)c->pixel_means[0],
                                (double)c->pixel_means[1], (double)c->pixel_means[2], (double)c->pixel_stds[0],
                                (double)c->pixel_stds[1], (double)c->pixel_stds[2]);
    return FRCNN_OK;
}

frcnn_status frcnn_ckpt_load_weights(frcnn_ctx *ctx, const char *path, frcnn_model *m, frcnn_weights_report *report)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!path || !m)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "ckpt_load_weights: %s is NULL", path ? "model" : "path");
    frcnn_weights_report rep;
    memset(&rep, 0, sizeof rep);
    if (report)
        *report = rep;
    frcnn__ckpt_reader *r;
    frcnn_status st = open_verified(ctx, path, &r);
    if (st != FRCNN_OK)
        return st;
    if ((st = check_pixel_norm(ctx, r, path, m)) != FRCNN_OK) {
        frcnn__ckpt_reader_close(r);
        return st;
    }
    size_t in_file = 0;
    for (size_t i = 0; i < frcnn__ckpt_tensor_count(r) && st == FRCNN_OK; i++) {
        frcnn__ckpt_tensor_info info;
        st = frcnn__ckpt_tensor_at(r, i, &info);
        if (st != FRCNN_OK || strncmp(info.name, "model.", 6) != 0)
            continue;
        in_file++;
        frcnn_param p;
        if (frcnn_model_find_param(m, info.name + 6, &p) != FRCNN_OK) {
            rep.unexpected++;
            if (!rep.first_problem[0])
                snprintf(rep.first_problem, sizeof rep.first_problem, "unexpected: %s", info.name + 6);
        }
    }
    frcnn_ctx_clear_error(ctx);
    for (size_t i = 0; i < frcnn_model_param_count(m) && st == FRCNN_OK; i++) {
        frcnn_param p;
        frcnn_model_param(m, i, &p);
        frcnn_status c = check_tensor(ctx, r, path, "model.", p.name, p.value);
        if (c == FRCNN_OK) {
            st = read_into(r, "model.", p.name, p.value);
            rep.loaded++;
            continue;
        }
        frcnn__ckpt_tensor_info info;
        char full[FRCNN__CKPT_MAX_NAME];
        snprintf(full, sizeof full, "model.%s", p.name);
        bool exists = frcnn__ckpt_tensor_find(r, full, &info) == FRCNN_OK;
        if (exists)
            rep.mismatched++;
        else
            rep.missing++;
        if (!rep.first_problem[0])
            snprintf(rep.first_problem, sizeof rep.first_problem, "%s: %s", exists ? "mismatched" : "missing",
                     p.name);
    }
    frcnn__ckpt_reader_close(r);
    if (st == FRCNN_OK)
        frcnn_ctx_clear_error(ctx);
    if (report)
        *report = rep;
    if (st == FRCNN_OK && rep.loaded == 0)
        st = frcnn__error(ctx, FRCNN_ERR_MISMATCH, "%s: none of its %zu weights fits this model (%s)", path, in_file,
                          rep.first_problem[0] ? rep.first_problem : "no model weights in the file");
    return st;
}
