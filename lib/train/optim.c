/* Optimizers: SGD with momentum as Caffe's SGDSolver (py-faster-rcnn's solver settings), Adam and AdamW, over the
 * trainable parameters of a model, with their state buffers exposed by name for checkpoints. */
#include "internal.h"

#include <float.h>
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

/* x, or 0 when x is subnormal. Moments of weights whose gradients vanish (Adam drives such weights, and with weight
 * decay their gradients, towards 0) decay into subnormal numbers, which x86 computes with about 100 times the
 * latency: a 2000-step Adam run spent most of its last steps there (3.4 M of fc6's 12.8 M first moments were
 * subnormal). Flushing them, as a processor's flush-to-zero mode would, changes no update measurably. */
static inline float flush(float x)
{
    return fabsf(x) < FLT_MIN ? 0.0f : x;
}

static void update_range(void *arg, size_t begin, size_t end)
{
    const update_job *j = arg;
    /* Locals and restrict: stores through w or s0 could otherwise alias the job's fields and the other arrays,
     * which keeps the loops from vectorising. */
    float *restrict w = j->w, *restrict s0 = j->s0, *restrict s1 = j->s1;
    const float *restrict grad = j->grad;
    const float scale = j->inv_acc * j->clip, lr = j->lr, decay = j->decay;
    if (j->kind == FRCNN_OPTIM_SGD) {
        /* Caffe SGDSolver: diff += decay w; history = lr diff + momentum history; w -= history. */
        const float momentum = j->momentum;
        for (size_t i = begin; i < end; i++) {
            float g = grad[i] * scale + decay * w[i];
            float h = flush(lr * g + momentum * s0[i]);
            s0[i] = h;
            w[i] = flush(w[i] - h);
        }
        return;
    }
    const float b1 = j->beta1, b2 = j->beta2, ob1 = 1.0f - b1, ob2 = 1.0f - b2, bc1 = j->bc1, bc2 = j->bc2;
    const float eps = j->eps, wd = j->kind == FRCNN_OPTIM_ADAMW ? lr * decay : 0.0f;
    const float l2 = j->kind == FRCNN_OPTIM_ADAMW ? 0.0f : decay;
    for (size_t i = begin; i < end; i++) {
        float wi = w[i] - wd * w[i];
        float g = grad[i] * scale + l2 * w[i];
        float m = flush(b1 * s0[i] + ob1 * g), v = flush(b2 * s1[i] + ob2 * (g * g));
        s0[i] = m;
        s1[i] = v;
        w[i] = flush(wi - lr * (m / bc1) / (sqrtf(v / bc2) + eps));
    }
}

/* The index of the first element that is infinite or NaN, or n. A block is first tested for an exponent of all
 * ones with integer operations, which vectorise; only a block that has one is searched. */
static size_t first_non_finite(const float *g, size_t n)
{
    for (size_t b = 0; b < n; b += 4096) {
        size_t e = n - b < 4096 ? n : b + 4096;
        uint32_t bad = 0;
        for (size_t i = b; i < e; i++) {
            uint32_t u;
            memcpy(&u, &g[i], sizeof u);
            bad |= (u & 0x7f800000u) == 0x7f800000u;
        }
        if (bad)
            for (size_t i = b; i < e; i++)
                if (!isfinite(g[i]))
                    return i;
    }
    return n;
}

/* sum (g[i] inv_acc)^2 in double, in eight interleaved partial sums added in a fixed order: the result depends
 * only on the data (not on threads), and the sums do not wait on each other. */
static double sum_squares(const float *g, size_t n, float inv_acc)
{
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, tail = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) {
            double v = (double)(g[i + (size_t)k] * inv_acc);
            acc[k] += v * v;
        }
    for (; i < n; i++) {
        double v = (double)(g[i] * inv_acc);
        tail += v * v;
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

/* The gradients are checked (and their squares summed, with clipping) in slices of this many floats on all threads,
 * up to CHECK_SLICES_PER_PASS slices at a time. Each slice's sum is its own and the sums are added in slice order,
 * so the norm does not depend on the thread count. On one thread the pass over the small preset's 68 MB took 5-6 ms
 * a step (3% of train_voc's time), serial while the other core waited. */
#define CHECK_SLICE_FLOATS ((size_t)1 << 16)
#define CHECK_SLICES_PER_PASS 256

/* One pass over up to CHECK_SLICES_PER_PASS slices of one gradient, from slice `base` on. */
typedef struct check_job {
    const float *g;
    size_t n, base;
    float inv_acc;
    bool squares;                          /* sum squares (clipping) rather than search for a non-finite value */
    double sum[CHECK_SLICES_PER_PASS];     /* squares: each slice's sum of squares */
    size_t bad[CHECK_SLICES_PER_PASS];     /* search: each slice's first non-finite index in g, or n */
} check_job;

static void check_range(void *arg, size_t first, size_t end)
{
    check_job *j = arg;
    for (size_t i = first; i < end; i++) {
        size_t at = (j->base + i) * CHECK_SLICE_FLOATS, len = j->n - at < CHECK_SLICE_FLOATS ? j->n - at
                                                                                              : CHECK_SLICE_FLOATS;
        if (j->squares) {
            j->sum[i] = sum_squares(j->g + at, len, j->inv_acc);
        } else {
            size_t bad = first_non_finite(j->g + at, len);
            j->bad[i] = bad < len ? at + bad : j->n;
        }
    }
}

/* Checks one gradient: the index of its first non-finite element, or n. With `squares`, adds the sum of the squares
 * of g[i] inv_acc to *sq; a sum of squares in double is finite exactly when every element is, so the search then
 * runs only when it is not. */
static size_t check_gradient(frcnn_ctx *ctx, const float *g, size_t n, float inv_acc, bool squares, double *sq)
{
    check_job job;
    job.g = g;
    job.n = n;
    job.inv_acc = inv_acc;
    job.squares = squares;
    double part = 0.0;
    size_t slices = (n + CHECK_SLICE_FLOATS - 1) / CHECK_SLICE_FLOATS;
    for (job.base = 0; job.base < slices; job.base += CHECK_SLICES_PER_PASS) {
        size_t count = slices - job.base < CHECK_SLICES_PER_PASS ? slices - job.base : CHECK_SLICES_PER_PASS;
        frcnn__parallel_for(ctx, count, 1, check_range, &job);
        for (size_t i = 0; i < count; i++) {
            if (squares)
                part += job.sum[i];
            else if (job.bad[i] < n)
                return job.bad[i];
        }
    }
    *sq += part;
    return squares && !isfinite(part) ? first_non_finite(g, n) : n;
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

    /* Check every gradient before anything changes. With clipping, the norm's pass does it: a sum of squares in
     * double is finite exactly when every gradient is. */
    const float inv_acc = 1.0f / (float)p->accumulate; /* the mean over accumulated images (Caffe's Normalize) */
    double sq = 0.0;
    for (size_t s = 0; s < n_slots; s++) {
        frcnn_param prm;
        frcnn_status st = frcnn_model_param(optim->model, optim->slot_param[s], &prm);
        if (st != FRCNN_OK)
            return st;
        const float *g = prm.grad->data;
        size_t bad = check_gradient(ctx, g, prm.grad->numel, inv_acc, p->clip_norm > 0.0f, &sq);
        if (bad < prm.grad->numel)
            return frcnn__error(ctx, FRCNN_ERR_NOT_FINITE,
                                "optim_step: gradient of '%s' is %s at element %zu; no parameter was updated",
                                prm.name, isnan(g[bad]) ? "NaN" : "infinite", bad);
    }
    float clip = 1.0f;
    if (p->clip_norm > 0.0f) {
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
