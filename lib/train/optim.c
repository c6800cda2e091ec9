/* Optimizers: SGD with momentum as Caffe's SGDSolver (py-faster-rcnn's solver settings), Adam and AdamW, over the
 * trainable parameters of a model, with their state buffers exposed by name for checkpoints. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Elements per thread below which an update runs inline. */
#define OPTIM_MIN_PER_THREAD 65536

struct frcnn_optim {
    frcnn_ctx *ctx;
    frcnn_model *model;
    frcnn_optim_params params;
    size_t n_slots;        /* trainable parameters */
    size_t per;            /* state buffers per trainable parameter: 1 (SGD: momentum) or 2 (Adam: m, v) */
    size_t n_state;        /* n_slots * per, in parameter order: p0.adam_m, p0.adam_v, p1.adam_m, ... */
    size_t *slot_param;    /* (n_slots): the model's index of each trainable parameter, ascending */
    frcnn_tensor **state;  /* (n_state), NULL entries only while half-built */
    const char **names;    /* (n_state): point into name_buf */
    char *name_buf;        /* (name_bytes) */
    size_t name_bytes;
    size_t cap_slots, cap_state; /* element counts the arrays were allocated with (at least 1) */
    uint64_t steps;
};

const char *frcnn_optim_kind_name(frcnn_optim_kind kind)
{
    switch (kind) {
    case FRCNN_OPTIM_SGD: return "sgd";
    case FRCNN_OPTIM_ADAM: return "adam";
    case FRCNN_OPTIM_ADAMW: return "adamw";
    }
    return "unknown";
}

/* REFERENCE.md section 1 (py-faster-rcnn solver.prototxt, train.prototxt lr_mult/decay_mult of the biases). */
frcnn_optim_params frcnn_optim_params_sgd(void)
{
    frcnn_optim_params p;
    memset(&p, 0, sizeof p);
    p.kind = FRCNN_OPTIM_SGD;
    p.momentum = 0.9f;
    p.weight_decay = 0.0005f;
    p.bias_lr_mult = 2.0f;
    p.bias_decay_mult = 0.0f;
    p.beta1 = 0.9f;
    p.beta2 = 0.999f;
    p.eps = 1e-8f;
    p.clip_norm = 0.0f;
    p.accumulate = 1;
    return p;
}

/* Adam's usual moments (Kingma & Ba 2015) with the paper's decay and bias settings. */
frcnn_optim_params frcnn_optim_params_adam(void)
{
    frcnn_optim_params p = frcnn_optim_params_sgd();
    p.kind = FRCNN_OPTIM_ADAM;
    return p;
}

static bool in_unit(float x) /* [0, 1) */
{
    return isfinite(x) && x >= 0.0f && x < 1.0f;
}

static bool non_negative(float x)
{
    return isfinite(x) && x >= 0.0f;
}

static frcnn_status check_params(frcnn_ctx *ctx, const frcnn_optim_params *p)
{
    const char *bad = NULL;
    if (p->kind != FRCNN_OPTIM_SGD && p->kind != FRCNN_OPTIM_ADAM && p->kind != FRCNN_OPTIM_ADAMW)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "optim_create: unknown optimizer kind %d", (int)p->kind);
    if (!in_unit(p->momentum))
        bad = "momentum must be in [0, 1)";
    else if (!in_unit(p->beta1))
        bad = "beta1 must be in [0, 1)";
    else if (!in_unit(p->beta2))
        bad = "beta2 must be in [0, 1)";
    else if (!(isfinite(p->eps) && p->eps > 0.0f))
        bad = "eps must be finite and > 0";
    else if (!non_negative(p->weight_decay))
        bad = "weight_decay must be finite and >= 0";
    else if (!non_negative(p->bias_lr_mult))
        bad = "bias_lr_mult must be finite and >= 0";
    else if (!non_negative(p->bias_decay_mult))
        bad = "bias_decay_mult must be finite and >= 0";
    else if (!non_negative(p->clip_norm))
        bad = "clip_norm must be finite and >= 0";
    else if (p->accumulate < 1)
        bad = "accumulate must be >= 1";
    if (bad)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "optim_create: %s (momentum %g, beta1 %g, beta2 %g, eps %g, "
                            "weight_decay %g, bias_lr_mult %g, bias_decay_mult %g, clip_norm %g, accumulate %d)",
                            bad, (double)p->momentum, (double)p->beta1, (double)p->beta2, (double)p->eps,
                            (double)p->weight_decay, (double)p->bias_lr_mult, (double)p->bias_decay_mult,
                            (double)p->clip_norm, p->accumulate);
    return FRCNN_OK;
}

void frcnn_optim_free(frcnn_optim *optim)
{
    if (!optim)
        return;
    frcnn_ctx *ctx = optim->ctx;
    if (optim->state)
        for (size_t i = 0; i < optim->cap_state; i++)
            frcnn_tensor_free(optim->state[i]);
    frcnn__free(ctx, optim->state, optim->cap_state * sizeof *optim->state);
    frcnn__free(ctx, (void *)optim->names, optim->cap_state * sizeof *optim->names);
    frcnn__free(ctx, optim->name_buf, optim->name_bytes);
    frcnn__free(ctx, optim->slot_param, optim->cap_slots * sizeof *optim->slot_param);
    frcnn__free(ctx, optim, sizeof *optim);
}

frcnn_status frcnn_optim_create(frcnn_ctx *ctx, const frcnn_optim_params *params, frcnn_model *model,
                                frcnn_optim **out)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!out)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "optim_create: out is NULL");
    *out = NULL;
    if (!params || !model)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "optim_create: %s is NULL", params ? "model" : "params");
    frcnn_status st = check_params(ctx, params);
    if (st != FRCNN_OK)
        return st;

    static const char *const sgd_suffix[1] = {".momentum"};
    static const char *const adam_suffix[2] = {".adam_m", ".adam_v"};
    const size_t per = params->kind == FRCNN_OPTIM_SGD ? 1 : 2;
    const char *const *suffix = per == 1 ? sgd_suffix : adam_suffix;

    /* Count the trainable parameters and the bytes of their state names. */
    size_t n_params = frcnn_model_param_count(model), n_slots = 0, name_bytes = 0;
    for (size_t i = 0; i < n_params; i++) {
        frcnn_param p;
        st = frcnn_model_param(model, i, &p);
        if (st != FRCNN_OK)
            return st;
        if (!p.trainable)
            continue;
        n_slots++;
        for (size_t k = 0; k < per; k++)
            name_bytes += strlen(p.name) + strlen(suffix[k]) + 1;
    }

    frcnn_optim *o = frcnn__alloc(ctx, sizeof *o);
    if (!o)
        return FRCNN_ERR_NO_MEMORY;
    memset(o, 0, sizeof *o);
    o->ctx = ctx;
    o->model = model;
    o->params = *params;
    o->n_slots = n_slots;
    o->per = per;
    o->n_state = n_slots * per;
    /* Every array gets at least one element, so that a model without trainable parameters needs no special case. */
    o->cap_slots = n_slots ? n_slots : 1;
    o->cap_state = n_slots ? n_slots * per : 1;
    o->name_bytes = name_bytes ? name_bytes : 1;
    st = FRCNN_ERR_NO_MEMORY;
    o->slot_param = frcnn__alloc(ctx, o->cap_slots * sizeof *o->slot_param);
    o->state = frcnn__alloc(ctx, o->cap_state * sizeof *o->state);
    o->names = frcnn__alloc(ctx, o->cap_state * sizeof *o->names);
    o->name_buf = frcnn__alloc(ctx, o->name_bytes);
    if (o->state) /* before any failure: free walks it */
        for (size_t i = 0; i < o->cap_state; i++)
            o->state[i] = NULL;
    if (!o->slot_param || !o->state || !o->names || !o->name_buf)
        goto fail;
    for (size_t i = 0; i < o->cap_state; i++)
        o->names[i] = NULL;

    size_t slot = 0, s = 0, off = 0;
    for (size_t i = 0; i < n_params; i++) {
        frcnn_param p;
        st = frcnn_model_param(model, i, &p);
        if (st != FRCNN_OK)
            goto fail;
        if (!p.trainable)
            continue;
        o->slot_param[slot++] = i;
        for (size_t k = 0; k < per; k++, s++) {
            st = frcnn_tensor_create(ctx, p.value->ndim, p.value->dims, &o->state[s]);
            if (st != FRCNN_OK)
                goto fail;
            int len = snprintf(o->name_buf + off, name_bytes - off, "%s%s", p.name, suffix[k]);
            o->names[s] = o->name_buf + off;
            off += (size_t)len + 1;
        }
    }
    *out = o;
    return FRCNN_OK;

fail:
    frcnn_optim_free(o);
    return st;
}

const frcnn_optim_params *frcnn_optim_get_params(const frcnn_optim *optim)
{
    return optim ? &optim->params : NULL;
}

uint64_t frcnn_optim_steps(const frcnn_optim *optim)
{
    return optim ? optim->steps : 0;
}

void frcnn_optim_set_steps(frcnn_optim *optim, uint64_t steps)
{
    if (optim)
        optim->steps = steps;
}

size_t frcnn_optim_state_count(const frcnn_optim *optim)
{
    return optim ? optim->n_state : 0;
}

frcnn_status frcnn_optim_state(const frcnn_optim *optim, size_t i, const char **name, frcnn_tensor **buffer)
{
    if (!optim)
        return FRCNN_ERR_INVALID_ARG;
    size_t n = frcnn_optim_state_count(optim);
    if (i >= n)
        return frcnn__error(optim->ctx, FRCNN_ERR_INVALID_ARG, "optim_state: index %zu out of range [0, %zu)", i, n);
    if (name)
        *name = optim->names[i];
    if (buffer)
        *buffer = optim->state[i];
    return FRCNN_OK;
}

/* One parameter's update over an element range; every range writes only its own elements. */
typedef struct update_job {
    frcnn_optim_kind kind;
    float *w;          /* (n) weights, updated */
    const float *grad; /* (n) summed gradients, read only */
    float *s0, *s1;    /* (n) SGD: momentum, s1 NULL; Adam: m, v */
    float inv_acc;     /* 1 / accumulate */
    float clip;        /* clip_norm / norm, or 1 */
    float lr, decay;   /* local rate and decay */
    float momentum, beta1, beta2, eps;
    float bc1, bc2;    /* Adam's bias corrections 1 - beta^t */
} update_job;

static void update_range(void *arg, size_t begin, size_t end)
{
    const update_job *j = arg;
    float *w = j->w, *s0 = j->s0, *s1 = j->s1;
    const float *grad = j->grad;
    if (j->kind == FRCNN_OPTIM_SGD) {
        /* Caffe SGDSolver: diff += decay w; history = lr diff + momentum history; w -= history. */
        for (size_t i = begin; i < end; i++) {
            float g = grad[i] * j->inv_acc * j->clip;
            g += j->decay * w[i];
            s0[i] = j->lr * g + j->momentum * s0[i];
            w[i] -= s0[i];
        }
        return;
    }
    const float b1 = j->beta1, b2 = j->beta2, ob1 = 1.0f - b1, ob2 = 1.0f - b2;
    for (size_t i = begin; i < end; i++) {
        float g = grad[i] * j->inv_acc * j->clip;
        if (j->kind == FRCNN_OPTIM_ADAMW)
            w[i] -= j->lr * j->decay * w[i];
        else
            g += j->decay * w[i];
        s0[i] = b1 * s0[i] + ob1 * g;
        s1[i] = b2 * s1[i] + ob2 * (g * g);
        float mh = s0[i] / j->bc1, vh = s1[i] / j->bc2;
        w[i] -= j->lr * mh / (sqrtf(vh) + j->eps);
    }
}

frcnn_status frcnn_optim_step(frcnn_optim *optim, float lr)
{
    if (!optim)
        return FRCNN_ERR_INVALID_ARG;
    frcnn_ctx *ctx = optim->ctx;
    const frcnn_optim_params *p = &optim->params;
    if (!(isfinite(lr) && lr >= 0.0f))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "optim_step: learning rate %g must be finite and >= 0",
                            (double)lr);
    const size_t n_slots = optim->n_slots;

    /* Check every gradient before anything changes. */
    for (size_t s = 0; s < n_slots; s++) {
        frcnn_param prm;
        frcnn_status st = frcnn_model_param(optim->model, optim->slot_param[s], &prm);
        if (st != FRCNN_OK)
            return st;
        const float *g = prm.grad->data;
        for (size_t i = 0; i < prm.grad->numel; i++)
            if (!isfinite(g[i]))
                return frcnn__error(ctx, FRCNN_ERR_NOT_FINITE,
                                    "optim_step: gradient of '%s' is %s at element %zu; no parameter was updated",
                                    prm.name, isnan(g[i]) ? "NaN" : "infinite", i);
    }

    /* Gradient of the mean over the accumulated images (Caffe's Normalize: scale by 1 / iter_size). */
    const float inv_acc = 1.0f / (float)p->accumulate;
    float clip = 1.0f;
    if (p->clip_norm > 0.0f) {
        double sq = 0.0; /* in parameter order, so the result does not depend on threads */
        for (size_t s = 0; s < n_slots; s++) {
            frcnn_param prm;
            frcnn_model_param(optim->model, optim->slot_param[s], &prm);
            const float *g = prm.grad->data;
            for (size_t i = 0; i < prm.grad->numel; i++) {
                double gi = (double)(g[i] * inv_acc);
                sq += gi * gi;
            }
        }
        double norm = sqrt(sq);
        if (!isfinite(norm))
            return frcnn__error(ctx, FRCNN_ERR_NOT_FINITE, "optim_step: gradient norm overflows; no parameter "
                                "was updated");
        if (norm > (double)p->clip_norm)
            clip = (float)((double)p->clip_norm / norm);
    }

    update_job job;
    memset(&job, 0, sizeof job);
    job.kind = p->kind;
    job.inv_acc = inv_acc;
    job.clip = clip;
    job.momentum = p->momentum;
    job.beta1 = p->beta1;
    job.beta2 = p->beta2;
    job.eps = p->eps;
    if (p->kind != FRCNN_OPTIM_SGD) {
        double t = (double)(optim->steps + 1);
        job.bc1 = (float)(1.0 - pow((double)p->beta1, t));
        job.bc2 = (float)(1.0 - pow((double)p->beta2, t));
    }
    const size_t per = optim->per;
    for (size_t s = 0; s < n_slots; s++) {
        frcnn_param prm;
        frcnn_model_param(optim->model, optim->slot_param[s], &prm);
        job.w = prm.value->data;
        job.grad = prm.grad->data;
        job.s0 = optim->state[s * per]->data;
        job.s1 = per == 2 ? optim->state[s * per + 1]->data : NULL;
        job.lr = prm.is_bias ? lr * p->bias_lr_mult : lr;
        job.decay = prm.is_bias ? p->weight_decay * p->bias_decay_mult : p->weight_decay;
        frcnn__parallel_for(ctx, prm.value->numel, OPTIM_MIN_PER_THREAD, update_range, &job);
    }
    optim->steps++;
    return FRCNN_OK;
}
