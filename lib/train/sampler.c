/* The training sampler: which (image, flip) each step takes. Epoch e's order is a pure function of (seed, e), so
 * the whole state is (epoch, cursor) and a resume, or any number of them, continues the exact sequence.
 *
 * An epoch is the list of entries k in [0, L), L = n_images * (flip ? 2 : 1): entry k is image k % n_images,
 * flipped when k >= n_images (all images plain, then all flipped). Its order comes from an frcnn_rng seeded with
 *
 *     frcnn_rng_seed(&rng, seed ^ (0x9E3779B97F4A7C15 * (e + 1)))     (uint64_t arithmetic, wrapping)
 *
 * (the SplitMix64 increment, so neighbouring epochs get unrelated streams and epoch e never replays epoch 0),
 * followed by
 *   - without grouping: frcnn_rng_shuffle over the entries in ascending order;
 *   - with group_by_aspect: the landscape entries (aspect >= 1) and the portrait ones, each in ascending order,
 *     are shuffled with that rng (landscape first), each cut into consecutive pairs (a group's odd last entry
 *     stays a unit of one), the units (landscape ones first, in order, then portrait ones) are shuffled with the
 *     same rng, and concatenated: so samples 2i and 2i+1 share orientation unless a unit of one shifts the
 *     pairing (py-faster-rcnn roi_data_layer/layer.py _shuffle_roidb_inds, ASPECT_GROUPING, here for pairs).
 * docs/determinism.md lists this as part of the determinism contract. */
#include "train_internal.h"

#include <math.h>
#include <string.h>

/* Multiplier that separates the epochs' seeds: 2^64 / golden ratio, SplitMix64's increment. */
#define EPOCH_MIX UINT64_C(0x9E3779B97F4A7C15)

struct frcnn_sampler {
    frcnn_ctx *ctx;
    uint64_t seed;
    uint32_t n_images;
    uint32_t length;        /* L: entries per epoch */
    bool flip;
    bool group_by_aspect;
    float *aspect;          /* (n_images) copy; NULL without grouping */
    uint32_t *order;        /* (L) the order of epoch `epoch`: entry codes k as described above */
    uint32_t *group;        /* (L) grouping scratch: landscape entries, then portrait; NULL without grouping */
    uint32_t *units;        /* (L / 2 + 2) grouping scratch: start offsets into group; NULL without grouping */
    uint64_t epoch;         /* the epoch whose order is in `order` */
    uint64_t cursor;        /* entries of it handed out, in [0, L]; L means "move on before the next one" */
};

frcnn_sampler_params frcnn_sampler_params_default(void)
{
    frcnn_sampler_params p;
    memset(&p, 0, sizeof p);
    p.seed = 0;
    p.n_images = 0;
    p.flip = true; /* the paper: every training image also horizontally flipped */
    p.group_by_aspect = false;
    p.aspect = NULL;
    return p;
}

/* Fills s->order with epoch e's order (see the file comment). Allocates nothing. */
static void compute_order(frcnn_sampler *s, uint64_t e)
{
    frcnn_rng rng;
    frcnn_rng_seed(&rng, s->seed ^ (EPOCH_MIX * (e + 1)));
    uint32_t n = s->n_images, len = s->length;
    if (!s->group_by_aspect) {
        for (uint32_t k = 0; k < len; k++)
            s->order[k] = k;
        frcnn_rng_shuffle(&rng, s->order, len);
    } else {
        uint32_t nl = 0, np = 0;
        for (uint32_t k = 0; k < len; k++)
            if (s->aspect[k % n] >= 1.0f)
                nl++;
        for (uint32_t k = 0, il = 0, ip = nl; k < len; k++) {
            if (s->aspect[k % n] >= 1.0f)
                s->group[il++] = k;
            else
                s->group[ip++] = k;
        }
        np = len - nl;
        frcnn_rng_shuffle(&rng, s->group, nl);
        frcnn_rng_shuffle(&rng, s->group + nl, np);
        size_t n_units = 0;
        for (uint32_t at = 0; at < nl; at += 2)
            s->units[n_units++] = at;
        for (uint32_t at = nl; at < len; at += 2)
            s->units[n_units++] = at;
        frcnn_rng_shuffle(&rng, s->units, n_units);
        uint32_t out = 0;
        for (size_t u = 0; u < n_units; u++) {
            uint32_t start = s->units[u], end = start < nl ? nl : len;
            uint32_t size = end - start < 2 ? end - start : 2;
            for (uint32_t j = 0; j < size; j++)
                s->order[out++] = s->group[start + j];
        }
    }
    s->epoch = e;
}

frcnn_status frcnn_sampler_create(frcnn_ctx *ctx, const frcnn_sampler_params *params, frcnn_sampler **out)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!out)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "sampler_create: out is NULL");
    *out = NULL;
    if (!params)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "sampler_create: params is NULL");
    if (params->n_images == 0)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "sampler_create: n_images is 0 (an empty dataset)");
    if (params->flip && params->n_images > UINT32_MAX / 2)
        return frcnn__error(ctx, FRCNN_ERR_OVERFLOW,
                            "sampler_create: n_images %u with flips gives more than %u samples per epoch",
                            (unsigned)params->n_images, (unsigned)UINT32_MAX);
    if (params->group_by_aspect) {
        if (!params->aspect)
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                                "sampler_create: group_by_aspect needs aspect (width / height per image), got NULL");
        for (uint32_t i = 0; i < params->n_images; i++) {
            float a = params->aspect[i];
            if (!isfinite(a) || !(a > 0.0f))
                return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                                    "sampler_create: aspect[%u] is %g; each must be finite and > 0 (width / height)",
                                    (unsigned)i, (double)a);
        }
    }

    frcnn_status st = FRCNN_OK;
    uint32_t len = params->flip ? params->n_images * 2 : params->n_images;
    size_t order_bytes = 0, aspect_bytes = 0, units_bytes = 0;
    if (!frcnn__mul_size(len, sizeof(uint32_t), &order_bytes) ||
        !frcnn__mul_size(params->n_images, sizeof(float), &aspect_bytes) ||
        !frcnn__mul_size((size_t)len / 2 + 2, sizeof(uint32_t), &units_bytes))
        return frcnn__error(ctx, FRCNN_ERR_OVERFLOW, "sampler_create: %u samples per epoch do not fit in memory",
                            (unsigned)len);
    frcnn_sampler *s = frcnn__alloc(ctx, sizeof *s);
    if (!s)
        return FRCNN_ERR_NO_MEMORY;
    memset(s, 0, sizeof *s);
    s->ctx = ctx;
    s->seed = params->seed;
    s->n_images = params->n_images;
    s->length = len;
    s->flip = params->flip;
    s->group_by_aspect = params->group_by_aspect;
    s->order = frcnn__alloc(ctx, order_bytes);
    if (!s->order) {
        st = FRCNN_ERR_NO_MEMORY;
        goto fail;
    }
    if (s->group_by_aspect) {
        s->aspect = frcnn__alloc(ctx, aspect_bytes);
        s->group = frcnn__alloc(ctx, order_bytes);
        s->units = frcnn__alloc(ctx, units_bytes);
        if (!s->aspect || !s->group || !s->units) {
            st = FRCNN_ERR_NO_MEMORY;
            goto fail;
        }
        memcpy(s->aspect, params->aspect, aspect_bytes);
    }
    compute_order(s, 0);
    s->cursor = 0;
    *out = s;
    return FRCNN_OK;
fail:
    frcnn_sampler_free(s);
    return st;
}

void frcnn_sampler_free(frcnn_sampler *sampler)
{
    if (!sampler)
        return;
    frcnn_ctx *ctx = sampler->ctx;
    size_t len = sampler->length;
    frcnn__free(ctx, sampler->units, (len / 2 + 2) * sizeof(uint32_t));
    frcnn__free(ctx, sampler->group, len * sizeof(uint32_t));
    frcnn__free(ctx, sampler->aspect, (size_t)sampler->n_images * sizeof(float));
    frcnn__free(ctx, sampler->order, len * sizeof(uint32_t));
    frcnn__free(ctx, sampler, sizeof *sampler);
}

uint64_t frcnn_sampler_epoch_length(const frcnn_sampler *sampler)
{
    return sampler ? sampler->length : 0;
}

frcnn_status frcnn_sampler_next(frcnn_sampler *sampler, frcnn_sample *out)
{
    if (!sampler)
        return FRCNN_ERR_INVALID_ARG;
    if (!out)
        return frcnn__error(sampler->ctx, FRCNN_ERR_INVALID_ARG, "sampler_next: out is NULL");
    if (sampler->cursor >= sampler->length) {
        if (sampler->epoch == UINT64_MAX)
            return frcnn__error(sampler->ctx, FRCNN_ERR_STATE, "sampler_next: the epoch counter is exhausted");
        compute_order(sampler, sampler->epoch + 1);
        sampler->cursor = 0;
    }
    uint32_t k = sampler->order[sampler->cursor];
    out->image = k % sampler->n_images;
    out->flip = k >= sampler->n_images;
    out->epoch = sampler->epoch;
    out->index = sampler->cursor;
    sampler->cursor++;
    return FRCNN_OK;
}

frcnn_sampler_state frcnn_sampler_get_state(const frcnn_sampler *sampler)
{
    frcnn_sampler_state st = {0, 0};
    if (!sampler)
        return st;
    if (sampler->cursor >= sampler->length && sampler->epoch < UINT64_MAX) {
        st.epoch = sampler->epoch + 1; /* the last sample of an epoch was handed out: the next is the next's first */
        st.cursor = 0;
    } else {
        st.epoch = sampler->epoch;
        st.cursor = sampler->cursor;
    }
    return st;
}

frcnn_status frcnn_sampler_set_state(frcnn_sampler *sampler, frcnn_sampler_state state)
{
    if (!sampler)
        return FRCNN_ERR_INVALID_ARG;
    if (state.cursor >= sampler->length)
        return frcnn__error(sampler->ctx, FRCNN_ERR_INVALID_ARG,
                            "sampler_set_state: cursor %llu is outside the epoch of %u samples (epoch %llu)",
                            (unsigned long long)state.cursor, (unsigned)sampler->length,
                            (unsigned long long)state.epoch);
    if (state.epoch != sampler->epoch)
        compute_order(sampler, state.epoch);
    sampler->cursor = state.cursor;
    return FRCNN_OK;
}

void frcnn__sampler_describe(const frcnn_sampler *s, uint64_t *seed, uint32_t *n_images, bool *flip,
                             bool *group_by_aspect)
{
    *seed = s->seed;
    *n_images = s->n_images;
    *flip = s->flip;
    *group_by_aspect = s->group_by_aspect;
}
